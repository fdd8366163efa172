/* Unit tests for the CLI's HTTP response parser (src/cli/response.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cli/response.h"
#include "util/buf.h"

static int collect(const char *data, size_t len, void *arg)
{
	sk_buf_add(arg, data, len);
	return 0;
}

static int stop_at_once(const char *data, size_t len, void *arg)
{
	(void)data, (void)len, (void)arg;
	return -1;
}

static void test_content_length_keeps_rest(void **state)
{
	const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 204";
	response r;
	sk_error err;
	ssize_t n;

	(void)state;
	response_init(&r, NULL, NULL);
	n = response_feed(&r, in, strlen(in), &err);
	assert_int_equal(n, strlen(in) - strlen("HTTP/1.1 204"));
	assert_true(r.complete);
	assert_true(r.keep_alive);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, 2);
	assert_memory_equal(r.body.base, "{}", 2);
	response_release(&r);
}

/* A chunked stream fed one byte at a time reaches on_body without the framing. */
static void test_chunked_bytewise(void **state)
{
	const char *in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			 "3\r\nabc\r\n5\r\nde\nfg\r\n0\r\n\r\n";
	sk_buf got = SK_BUF_INIT;
	response r;
	sk_error err;

	(void)state;
	response_init(&r, collect, &got);
	for (size_t i = 0; i < strlen(in); i++) {
		assert_false(r.complete);
		assert_int_equal(response_feed(&r, in + i, 1, &err), 1);
	}
	assert_true(r.complete);
	assert_int_equal(got.len, 8);
	assert_memory_equal(got.base, "abcde\nfg", 8);
	assert_int_equal(r.body.len, 0);
	sk_buf_release(&got);
	response_release(&r);
}

/* Error bodies are gathered even when a stream callback is set. */
static void test_error_body_gathered(void **state)
{
	const char *in = "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!";
	sk_buf got = SK_BUF_INIT;
	response r;
	sk_error err;

	(void)state;
	response_init(&r, collect, &got);
	assert_int_equal(response_feed(&r, in, strlen(in), &err), strlen(in));
	assert_true(r.complete);
	assert_int_equal(r.status, 404);
	assert_int_equal(got.len, 0);
	assert_string_equal(r.body.base, "nope!");
	sk_buf_release(&got);
	response_release(&r);
}

static void test_upgrade_leaves_raw_bytes(void **state)
{
	const char *in = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
			 "Upgrade: skiff-attach\r\n\r\nRAW\r\nbytes";
	response r;
	sk_error err;
	ssize_t n;

	(void)state;
	response_init(&r, NULL, NULL);
	n = response_feed(&r, in, strlen(in), &err);
	assert_true(r.complete);
	assert_int_equal(r.status, 101);
	assert_false(r.keep_alive);
	assert_string_equal(in + n, "RAW\r\nbytes");
	response_release(&r);
}

/* A 101 without the upgrade headers still ends after its head. */
static void test_bare_101(void **state)
{
	const char *in = "HTTP/1.1 101 Switching Protocols\r\n\r\nxyz";
	response r;
	sk_error err;
	ssize_t n;

	(void)state;
	response_init(&r, NULL, NULL);
	n = response_feed(&r, in, strlen(in), &err);
	assert_true(r.complete);
	assert_string_equal(in + n, "xyz");
	response_release(&r);
}

static void test_body_until_eof(void **state)
{
	const char *in = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
	response r;
	sk_error err;

	(void)state;
	response_init(&r, NULL, NULL);
	assert_int_equal(response_feed(&r, in, strlen(in), &err), strlen(in));
	assert_false(r.complete);
	assert_int_equal(response_feed(&r, NULL, 0, &err), 0);
	assert_true(r.complete);
	assert_false(r.keep_alive);
	assert_string_equal(r.body.base, "hello");
	response_release(&r);
}

static void test_truncated(void **state)
{
	const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel";
	response r;
	sk_error err;

	(void)state;
	response_init(&r, NULL, NULL);
	assert_int_equal(response_feed(&r, in, strlen(in), &err), strlen(in));
	assert_int_equal(response_feed(&r, NULL, 0, &err), -1);
	assert_non_null(strstr(err.msg, "closed"));
	response_release(&r);
}

static void test_garbage_and_stop(void **state)
{
	const char *in = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
	response r;
	sk_error err;

	(void)state;
	response_init(&r, NULL, NULL);
	assert_int_equal(response_feed(&r, "SMTP ready\r\n", 12, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	response_release(&r);

	response_init(&r, stop_at_once, NULL);
	assert_int_equal(response_feed(&r, in, strlen(in), &err), -1);
	assert_true(r.stopped);
	response_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length_keeps_rest),
		cmocka_unit_test(test_chunked_bytewise),
		cmocka_unit_test(test_error_body_gathered),
		cmocka_unit_test(test_upgrade_leaves_raw_bytes),
		cmocka_unit_test(test_bare_101),
		cmocka_unit_test(test_body_until_eof),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_garbage_and_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
