/*
 * response: an HTTP/1.1 response parser for the CLI's client, on http-parser.
 *
 * Bytes are fed as they come off the socket; the parser stops at the end of
 * one response, so that the caller keeps whatever follows (the next response
 * on a keep-alive connection, or raw bytes after a 101 upgrade).
 *
 * Body bytes of a 2xx response go to on_body when one is set (chunked
 * transfer coding already removed); all other bodies, and 2xx bodies without
 * on_body, are gathered in body.
 */
#ifndef SK_CLI_RESPONSE_H
#define SK_CLI_RESPONSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"
#include "util/error.h"

/* Returns 0 to go on, or -1 to stop reading (the response is then abandoned). */
typedef int (*response_body_fn)(const char *data, size_t len, void *arg);

typedef struct response {
	http_parser parser;
	int status;          /* once headers_done */
	bool headers_done;
	bool complete;       /* the whole response has been read */
	bool stopped;        /* on_body asked to stop */
	bool keep_alive;     /* the connection may carry another request */
	sk_buf body;
	response_body_fn on_body;
	void *arg;
} response;

void response_init(response *r, response_body_fn on_body, void *arg);
void response_release(response *r);

/*
 * Parses up to len bytes; len == 0 means the peer closed the connection.
 * Returns how many bytes belong to this response (less than len once it is
 * complete), or -1 with err on malformed input, a connection closed before
 * the end, or an on_body stop (err then says "stopped").
 */
ssize_t response_feed(response *r, const char *data, size_t len, sk_error *err);

#endif
