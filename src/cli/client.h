/*
 * client: the CLI's blocking HTTP/1.1 client for the skiff API (docs/api.md).
 *
 * One client holds one keep-alive connection, opened on first use and
 * reopened when the server has closed it.  Requests carry a JSON body or
 * none; answers are whole JSON documents, byte streams or NDJSON streams
 * (chunked), or a 101 upgrade that turns the connection into a raw pipe.
 *
 * Every call returns 0, or -1 with err filled: for a 4xx/5xx answer, err's
 * kind and message are the server's {"error": {"code", "message"}}, ready to
 * be shown to a person as they are.
 *
 * The embedded default: when the endpoint is the default unix socket and
 * nobody answers there, the client starts `skiff server` in the background
 * (see autostart.h) and tells the user once on stderr.
 *
 * Thread: single-threaded; a client is used by one thread.
 */
#ifndef SK_CLI_CLIENT_H
#define SK_CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cli/endpoint.h"
#include "util/buf.h"
#include "util/error.h"

typedef struct client {
	endpoint ep;
	char *token;        /* bearer token for TCP endpoints, or NULL */
	char *home;         /* SKIFF_HOME, where an embedded server lives */
	bool may_autostart; /* ep is the default socket: start a server if none answers */
	int timeout_ms;     /* per read/write on new connections; 0: wait forever */
	int fd;             /* the keep-alive connection, or -1 */
	sk_buf rbuf;        /* bytes read past the previous response */
} client;

/* From SKIFF_SERVER, SKIFF_TOKEN and SKIFF_HOME; release with client_release. */
int client_init_from_env(client *c, sk_error *err);
void client_release(client *c);

/* Sends method path with body (may be NULL; not consumed); *out gets the
 * answer's JSON (NULL for an empty body; caller decrefs).  out may be NULL. */
int client_call(client *c, const char *method, const char *path, json_t *body, json_t **out,
		sk_error *err);

/* Body bytes of a 2xx stream as they arrive.  Return -1 with err filled to
 * stop; the call then returns -1 with that err and drops the connection. */
typedef int (*client_bytes_fn)(const char *data, size_t len, void *arg, sk_error *err);
int client_stream(client *c, const char *method, const char *path, json_t *body,
		  client_bytes_fn fn, void *arg, sk_error *err);

/* Each object of an NDJSON stream (borrowed: valid during the call). */
typedef int (*client_json_fn)(json_t *obj, void *arg, sk_error *err);
int client_ndjson(client *c, const char *method, const char *path, json_t *body,
		  client_json_fn fn, void *arg, sk_error *err);

/*
 * POSTs to path with `Connection: Upgrade` and `Upgrade: proto`, expects 101,
 * and hands over the connection: *fd (caller closes) and the bytes already
 * read past the 101 in *pending (caller releases).  The client opens a new
 * connection for its next request.
 */
int client_upgrade(client *c, const char *path, const char *proto, int *fd, sk_buf *pending,
		   sk_error *err);

/* "/v1/x/<id>/y": paths with one id, escaped so that odd ids stay one segment. */
char *client_path(const char *fmt_before, const char *id, const char *after);

#endif
