/*
 * The gateway's HTTP/1.1 request parser: http-parser underneath, with the
 * gateway's limits and the facts it routes on collected as the bytes go by.
 * It owns no sockets, so it is driven (and fuzzed) with plain buffers.
 *
 * wp_feed() parses until the end of one request and stops there: the caller
 * answers it and calls wp_next() before feeding the bytes that follow
 * (pipelined requests).  Body bytes are handed to on_body as they are parsed
 * and never kept.
 */
#ifndef SK_WEB_WPARSE_H
#define SK_WEB_WPARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define WP_MAX_HEAD (64 * 1024)  /* request line + headers, bytes: past it, 431 */
#define WP_MAX_HEADERS 128       /* header lines: past it, 431 */

typedef struct wp_parser wp_parser;

typedef struct wp_callbacks {
	/* The head is complete (wp_parser's head fields are set).  Return -1 to stop. */
	int (*on_head)(wp_parser *p);
	int (*on_body)(wp_parser *p, const char *data, size_t len);
	/* The whole request is in (after its body). */
	int (*on_end)(wp_parser *p);
} wp_callbacks;

struct wp_parser {
	http_parser hp;
	const wp_callbacks *cb;
	void *data;
	/* The head, valid from on_head until wp_next. */
	sk_buf url;              /* NUL-terminated */
	sk_buf hbuf;             /* "name\0value\0" pairs, names lower-cased */
	size_t n_headers;
	const char *method;      /* "GET", ... */
	unsigned http_minor;
	bool keep_alive, chunked, expect_continue, upgrade_ws;
	uint64_t content_length; /* when has_length */
	bool has_length;
	const char *host, *ws_key, *origin; /* into hbuf, or NULL */
	/* Parse state. */
	size_t head_bytes;
	bool in_value, head_done, msg_done;
	int error_status;        /* 400 / 431 / 413 / 501 when the input is bad; 0 otherwise */
	const char *error;       /* what was wrong, for the 4xx body */
};

void wp_init(wp_parser *p, const wp_callbacks *cb, void *data);
void wp_release(wp_parser *p);
/*
 * Parses data; returns the bytes consumed.  It stops early at the end of a
 * request (p->msg_done), after an upgrade head, on an error (p->error_status
 * set), or when a callback returned -1.
 */
size_t wp_feed(wp_parser *p, const char *data, size_t len);
/* Ready for the next request on the same connection. */
void wp_next(wp_parser *p);
/* The value of header name (lower case), or NULL; the n-th with index. */
const char *wp_header(const wp_parser *p, const char *name);

/* Iterates headers: start with *pos = 0; returns false at the end. */
bool wp_header_next(const wp_parser *p, size_t *pos, const char **name, const char **value);

#endif
