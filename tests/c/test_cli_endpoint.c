/* Unit tests for SKIFF_SERVER parsing (src/cli/endpoint.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cli/endpoint.h"

static void test_unix(void **state)
{
	endpoint ep;
	sk_error err;

	(void)state;
	assert_int_equal(endpoint_parse("unix:/tmp/x/skiff.sock", &ep, &err), 0);
	assert_int_equal(ep.kind, ENDPOINT_UNIX);
	assert_string_equal(ep.path, "/tmp/x/skiff.sock");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("unix:///run/skiff.sock", &ep, &err), 0);
	assert_string_equal(ep.path, "/run/skiff.sock");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("unix:rel.sock", &ep, &err), 0);
	assert_string_equal(ep.path, "rel.sock");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("unix:", &ep, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);
}

static void test_http(void **state)
{
	endpoint ep;
	sk_error err;

	(void)state;
	assert_int_equal(endpoint_parse("http://127.0.0.1:7000", &ep, &err), 0);
	assert_int_equal(ep.kind, ENDPOINT_TCP);
	assert_string_equal(ep.host, "127.0.0.1");
	assert_string_equal(ep.port, "7000");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("http://node-1.example.com:80/", &ep, &err), 0);
	assert_string_equal(ep.host, "node-1.example.com");
	assert_string_equal(ep.port, "80");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("http://localhost", &ep, &err), 0);
	assert_string_equal(ep.port, "80");
	endpoint_release(&ep);

	assert_int_equal(endpoint_parse("http://[::1]:8443", &ep, &err), 0);
	assert_string_equal(ep.host, "::1");
	assert_string_equal(ep.port, "8443");
	endpoint_release(&ep);
}

static void test_bad(void **state)
{
	static const char *const bad[] = {
		"", "localhost:80", "tcp://h:1", "http://", "http://:80", "http://h:", "http://h:0",
		"http://h:65536", "http://h:8x", "http://h:80/v1", "http://u@h:80", "http://[::1",
		"http://[::1]x", "http://::1:80", "http://[]:80",
	};
	endpoint ep;
	sk_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (endpoint_parse(bad[i], &ep, &err) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_int_equal(err.kind, SK_ERR_INVALID);
		assert_non_null(strstr(err.msg, "SKIFF_SERVER"));
	}
	assert_int_equal(endpoint_parse("https://h:443", &ep, &err), -1);
	assert_non_null(strstr(err.msg, "https"));
}

static void test_default(void **state)
{
	endpoint ep;

	(void)state;
	endpoint_default("/home/u/.skiff", &ep);
	assert_int_equal(ep.kind, ENDPOINT_UNIX);
	assert_string_equal(ep.path, "/home/u/.skiff/skiff.sock");
	endpoint_release(&ep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_default),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
