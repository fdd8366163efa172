/*
 * A small HTTP/1.1 server on libuv and http-parser: keep-alive, pipelined
 * requests answered in order, whole responses, chunked streams with
 * back-pressure, and connection upgrades to raw byte pipes.
 *
 * Thread: everything here runs on the event-loop thread.
 *
 * Lifetime of a request: the server creates an http_req when a message is
 * complete and hands it to the handler.  The request lives until its response
 * ends (http_respond*, http_stream_end, or the raw pipe closes) or until the
 * client goes away first; in the second case the owner's abort callback runs,
 * and the request is freed right after.  Bodies are bounded (1 GiB).
 */
#ifndef SK_HTTP_H
#define SK_HTTP_H

#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "util/buf.h"
#include "util/error.h"

typedef struct http_server http_server;
typedef struct http_conn http_conn;
typedef struct http_req http_req;

typedef void (*http_handler_fn)(http_req *req, void *data);
/* The client went away before the response ended; req is freed after this. */
typedef void (*http_abort_fn)(http_req *req, void *owner);
/* A stream's unsent output fell below the low-water mark: write more. */
typedef void (*http_drain_fn)(http_req *req, void *owner);
/* Raw bytes after an upgrade; len == 0 means the client shut its write side. */
typedef void (*http_raw_read_fn)(http_req *req, void *owner, const char *data, size_t len);

struct http_req {
	enum http_method method;
	char *path;          /* the URL path, without the query */
	char *query;         /* after '?', or NULL */
	sk_buf body;
	char *authorization; /* Authorization header, or NULL */
	char *upgrade;       /* Upgrade header when the client asked to upgrade, or NULL */
	sk_buf resp_headers; /* extra response header lines (http_add_header) */
	http_conn *conn;     /* private */
	void *owner;
	http_abort_fn on_abort;
	http_drain_fn on_drain;
	http_raw_read_fn on_raw;
	int state;           /* private */
	bool keep_alive;     /* private */
	http_req *next;      /* private: pipelined requests waiting their turn */
};

int http_server_listen_unix(uv_loop_t *loop, const char *path, http_handler_fn handler,
			    void *data, http_server **out, sk_error *err);
/* Stops listening and closes every connection (aborting their requests). */
void http_server_close(http_server *srv);

/* Copies the value of query parameter key into out; returns NULL when absent. */
const char *http_query_get(const http_req *req, const char *key, char *out, size_t outlen);

void http_set_owner(http_req *req, void *owner, http_abort_fn on_abort, http_drain_fn on_drain);

/* Adds "name: value" to the response's head; call before http_respond/http_stream_start. */
void http_add_header(http_req *req, const char *name, const char *value);
void http_respond(http_req *req, int status, const char *ctype, const void *body, size_t len);
/* Sends j as the body and drops the caller's reference. */
void http_respond_json(http_req *req, int status, json_t *j);
void http_respond_error(http_req *req, const sk_error *err);
void http_respond_errorf(http_req *req, enum sk_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int http_status_for(enum sk_error_kind kind);

void http_stream_start(http_req *req, int status, const char *ctype);
void http_stream_write(http_req *req, const void *data, size_t len);
/* One NDJSON line from j (reference dropped). */
void http_stream_json(http_req *req, json_t *j);
/* Bytes accepted by http_stream_write / http_raw_write but not yet sent. */
size_t http_queued(const http_req *req);
void http_stream_end(http_req *req);

/* Answers 101 and turns the connection into a raw byte pipe. */
void http_upgrade(http_req *req, const char *proto, http_raw_read_fn on_raw);
void http_raw_write(http_req *req, const void *data, size_t len);
/* Closes the pipe once queued bytes are sent; req is freed (no abort call). */
void http_raw_close(http_req *req);

#endif
