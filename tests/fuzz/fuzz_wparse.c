/*
 * libFuzzer target for the gateway's request parser (src/web/wparse.c).
 *
 * Byte 0 chooses how the rest is cut into feeds (all at once, or pieces of
 * 1..16 bytes), so requests, headers and chunked bodies straddle feeds as
 * they straddle reads.  After each request the parser is reset with wp_next,
 * as the gateway does for pipelined requests.  Checks: the bytes consumed
 * never exceed what was fed; the head fields are consistent (url NUL-ended,
 * every header pair inside the buffer, lower-case names); body bytes never
 * exceed a Content-Length; an error status is one the gateway answers with.
 */
#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/wparse.h"

static uint64_t body_seen;
static int heads;

static int on_head(wp_parser *p)
{
	size_t pos = 0;
	const char *n, *v;

	heads++;
	body_seen = 0;
	assert(p->url.base && p->url.base[p->url.len] == 0);
	assert(p->method);
	while (wp_header_next(p, &pos, &n, &v)) {
		assert(n >= p->hbuf.base && v + strlen(v) < p->hbuf.base + p->hbuf.len);
		for (const char *c = n; *c; c++)
			assert(!isupper((unsigned char)*c));
	}
	if (p->upgrade_ws)
		assert(p->ws_key && strlen(p->ws_key) == 24);
	return 0;
}

static int on_body(wp_parser *p, const char *data, size_t len)
{
	body_seen += len;
	if (p->has_length)
		assert(body_seen <= p->content_length);
	assert(!p->chunked || !p->has_length);
	(void)data;
	return 0;
}

static int on_end(wp_parser *p)
{
	if (p->has_length)
		assert(body_seen == p->content_length);
	return 0;
}

static const wp_callbacks cb = { on_head, on_body, on_end };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wp_parser p;
	size_t piece, off = 0;

	if (size < 1)
		return 0;
	piece = data[0] < 128 ? (size_t)-1 : (size_t)(data[0] % 16) + 1;
	data++;
	size--;
	wp_init(&p, &cb, NULL);
	heads = 0;
	/* The gateway keeps unparsed bytes and feeds them again: so does this. */
	while (off < size) {
		size_t end = piece == (size_t)-1 || size - off < piece ? size : off + piece;
		size_t have = end - off, n = wp_feed(&p, (const char *)data + off, have);
		assert(n <= have);
		if (p.error_status) {
			int s = p.error_status;
			assert(s == 400 || s == 405 || s == 413 || s == 431 || s == 501 || s == 505);
			assert(p.error && *p.error);
			break;
		}
		off += n;
		if (p.msg_done) {
			if (p.hp.upgrade && p.upgrade_ws)
				break; /* the rest is WebSocket data */
			wp_next(&p);
			continue;
		}
		if (n < have && !p.msg_done)
			break; /* stopped without a reason: must not loop */
		if (n == 0)
			break;
	}
	wp_release(&p);
	return 0;
}
