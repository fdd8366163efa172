/*
 * libFuzzer target for the CLI's HTTP response parser (src/cli/response.c),
 * driven the way the client (src/cli/client.c) drives it: bytes arrive in
 * pieces, a complete response leaves what follows to the next response on the
 * same keep-alive connection, and the end of the input is the server closing
 * the connection (a feed of 0 bytes).
 *
 * Byte 0 sets the piece size (low 6 bits, 0 = everything at once), whether
 * 2xx bodies go to a callback (bit 6), and whether that callback stops after
 * a few bytes (bit 7).  The rest is what the server sent.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/response.h"
#include "util/buf.h"

#define MAX_RESPONSES 16

typedef struct body_ctx {
	size_t seen;
	bool stop;
} body_ctx;

static int on_body(const char *data, size_t len, void *arg)
{
	body_ctx *b = arg;

	if (!len)
		abort(); /* http-parser never hands out empty body pieces */
	b->seen += len;
	return b->stop && b->seen > 16 ? -1 : 0;
}

/* One response: leftover bytes first, then pieces of the input.  False when the connection is done. */
static bool one_response(response *r, sk_buf *rest, const uint8_t *data, size_t size,
			 size_t *off, size_t piece)
{
	sk_error err;
	ssize_t used;

	if (rest->len) {
		used = response_feed(r, rest->base, rest->len, &err);
		if (used < 0)
			return false;
		if ((size_t)used > rest->len)
			abort();
		sk_buf_consume(rest, (size_t)used);
	}
	while (!r->complete) {
		size_t n = size - *off < piece ? size - *off : piece;

		used = response_feed(r, (const char *)data + *off, n, &err);
		if (used < 0)
			return false;
		if ((size_t)used > n || (!r->complete && (size_t)used != n))
			abort();
		if (r->complete)
			sk_buf_add(rest, data + *off + used, n - (size_t)used);
		*off += n;
		if (!n)
			break;
	}
	return r->complete && r->keep_alive && r->status != 101;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sk_buf rest = SK_BUF_INIT;
	body_ctx ctx = { 0 };
	size_t piece, off = 0;
	bool stream, more = true;

	if (!size)
		return 0;
	piece = data[0] & 0x3f ? data[0] & 0x3f : size;
	stream = data[0] & 0x40;
	ctx.stop = data[0] & 0x80;
	data++, size--;

	for (int i = 0; i < MAX_RESPONSES && more; i++) {
		response r;

		response_init(&r, stream ? on_body : NULL, &ctx);
		more = one_response(&r, &rest, data, size, &off, piece);
		if (r.complete && !r.headers_done)
			abort();
		if (stream && r.status / 100 == 2 && r.body.len)
			abort(); /* 2xx bodies belong to the callback */
		response_release(&r);
	}
	sk_buf_release(&rest);
	return 0;
}
