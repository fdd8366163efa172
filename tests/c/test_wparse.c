/*
 * Tests for the gateway's request parser (src/web/wparse.c) and the small
 * pieces the WebSocket handshake needs (util/sha1, sk_base64_encode): heads,
 * bodies by length and chunked, pipelining with wp_next, the limits (431),
 * bad input (400/413/501/505), WebSocket handshakes, and RFC 6455's example
 * Sec-WebSocket-Accept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/base64.h"
#include "util/buf.h"
#include "util/sha1.h"
#include "web/wparse.h"

typedef struct seen {
	int heads, ends;
	sk_buf body;
	char url[256];
	char method[16];
} seen;

static int on_head(wp_parser *p)
{
	seen *s = p->data;
	s->heads++;
	snprintf(s->url, sizeof(s->url), "%s", p->url.base);
	snprintf(s->method, sizeof(s->method), "%s", p->method);
	return 0;
}

static int on_body(wp_parser *p, const char *d, size_t n)
{
	sk_buf_add(&((seen *)p->data)->body, d, n);
	return 0;
}

static int on_end(wp_parser *p)
{
	((seen *)p->data)->ends++;
	return 0;
}

static const wp_callbacks cb = { on_head, on_body, on_end };

/* Feeds all of s, in pieces of step bytes, resetting after each request. */
static void feed(wp_parser *p, const char *s, size_t len, size_t step)
{
	size_t off = 0;
	sk_buf pending = SK_BUF_INIT;

	while (off < len || pending.len) {
		size_t take = len - off < step ? len - off : step;
		sk_buf_add(&pending, s + off, take);
		off += take;
		size_t n = wp_feed(p, pending.base, pending.len);
		sk_buf_consume(&pending, n);
		if (p->error_status)
			break;
		if (p->msg_done) {
			wp_next(p);
			continue;
		}
		if (off == len && !n)
			break;
	}
	sk_buf_release(&pending);
}

static void test_get_head(void **state)
{
	wp_parser p;
	seen s = { 0 };
	const char *req = "GET /app/fn/x?a=1&b=2 HTTP/1.1\r\nHost: Example\r\nX-Two: a\r\n"
			  "x-two: b\r\nOrigin: http://o\r\n\r\n";

	wp_init(&p, &cb, &s);
	size_t n = wp_feed(&p, req, strlen(req));
	assert_int_equal(n, strlen(req));
	assert_true(p.msg_done);
	assert_int_equal(s.heads, 1);
	assert_string_equal(s.url, "/app/fn/x?a=1&b=2");
	assert_string_equal(s.method, "GET");
	assert_string_equal(wp_header(&p, "host"), "Example");
	assert_string_equal(p.host, "Example");
	assert_string_equal(p.origin, "http://o");
	assert_true(p.keep_alive);
	/* Repeated names are kept, in order, lower-cased. */
	size_t pos = 0, twos = 0;
	const char *name, *value;
	while (wp_header_next(&p, &pos, &name, &value))
		if (!strcmp(name, "x-two"))
			assert_string_equal(value, twos++ ? "b" : "a");
	assert_int_equal(twos, 2);
	wp_release(&p);
	sk_buf_release(&s.body);
}

static void test_bodies_and_pipelining(void **state)
{
	const char *req = "POST /a/b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
			  "POST /a/b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
			  "GET /c/d HTTP/1.1\r\n\r\n";

	for (size_t step = 1; step <= strlen(req); step += step < 8 ? 1 : 13) {
		wp_parser p;
		seen s = { 0 };
		wp_init(&p, &cb, &s);
		feed(&p, req, strlen(req), step);
		assert_int_equal(p.error_status, 0);
		assert_int_equal(s.heads, 3);
		assert_int_equal(s.ends, 3);
		assert_int_equal(s.body.len, 10);
		assert_memory_equal(s.body.base, "helloabcde", 10);
		assert_string_equal(s.url, "/c/d");
		wp_release(&p);
		sk_buf_release(&s.body);
	}
}

static void test_flags(void **state)
{
	wp_parser p;
	seen s = { 0 };
	const char *req = "PUT /a/b HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";

	wp_init(&p, &cb, &s);
	wp_feed(&p, req, strlen(req));
	assert_true(p.head_done);
	assert_false(p.msg_done);
	assert_true(p.expect_continue);
	assert_true(p.has_length);
	assert_int_equal(p.content_length, 3);
	assert_false(p.keep_alive);
	assert_int_equal(p.http_minor, 0);
	wp_release(&p);
	sk_buf_release(&s.body);
}

static int status_of(const char *req, size_t len)
{
	wp_parser p;
	seen s = { 0 };
	int st;

	wp_init(&p, &cb, &s);
	feed(&p, req, len, len);
	st = p.error_status;
	if (st)
		assert_non_null(p.error);
	wp_release(&p);
	sk_buf_release(&s.body);
	return st;
}

static void test_errors(void **state)
{
	static char big[70000];
	int n;

	assert_int_equal(status_of("GARBAGE\r\n\r\n", 11), 400);
	assert_int_equal(status_of("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 51),
			 400);
	n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
	memset(big + n, 'a', 66000);
	memcpy(big + n + 66000, "\r\n\r\n", 4);
	assert_int_equal(status_of(big, (size_t)n + 66004), 431);
	/* 129 headers */
	sk_buf b = SK_BUF_INIT;
	sk_buf_adds(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 129; i++)
		sk_buf_addf(&b, "h%d: v\r\n", i);
	sk_buf_adds(&b, "\r\n");
	assert_int_equal(status_of(b.base, b.len), 431);
	sk_buf_release(&b);
	assert_int_equal(status_of("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 30), 400);
	assert_int_equal(status_of("POST / HTTP/1.1\r\nContent-Length: 5000000000\r\n\r\n", 47), 413);
	assert_int_equal(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 44), 501);
	assert_int_equal(status_of("CONNECT a:1 HTTP/1.1\r\n\r\n", 24), 405);
}

static void test_websocket(void **state)
{
	wp_parser p;
	seen s = { 0 };
	const char *ok = "GET /a/b HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
			 "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\n\r\n\x81\x80";
	size_t head = strlen(ok) - 2, n;

	wp_init(&p, &cb, &s);
	n = wp_feed(&p, ok, strlen(ok));
	assert_int_equal(n, head); /* the frame bytes after the head are not HTTP */
	assert_true(p.upgrade_ws);
	assert_true(p.msg_done);
	assert_string_equal(p.ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
	wp_release(&p);
	assert_int_equal(status_of("GET /a/b HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
				   "Sec-WebSocket-Version: 13\r\n\r\n", 89),
			 400);
	sk_buf_release(&s.body);
}

static void test_accept_key(void **state)
{
	/* RFC 6455 section 1.3's example. */
	const char *in = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	uint8_t d[20];
	char out[40];

	sha1(in, strlen(in), d);
	sk_base64_encode(d, 20, out);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	sha1("abc", 3, d);
	assert_int_equal(d[0], 0xa9);
	assert_int_equal(d[19], 0x9d);
	sk_base64_encode("f", 1, out);
	assert_string_equal(out, "Zg==");
	sk_base64_encode("fo", 2, out);
	assert_string_equal(out, "Zm8=");
	sk_base64_encode("foobar", 6, out);
	assert_string_equal(out, "Zm9vYmFy");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_head),
		cmocka_unit_test(test_bodies_and_pipelining),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_websocket),
		cmocka_unit_test(test_accept_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
