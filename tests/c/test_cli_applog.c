/* Unit tests for app log lines as the CLI prints and filters them (src/cli/applog.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/applog.h"

/* Formats one record into a fresh string; *to_stderr gets where it goes. */
static char *fmt(applog *l, const char *fn, const char *ct, const char *stream, const char *text,
		 bool *to_stderr)
{
	json_t *rec = json_pack("{s:f, s:s, s:s, s:s, s:s}", "ts", 1.0, "function", fn, "container",
				ct, "stream", stream, "text", text);
	sk_buf out = SK_BUF_INIT;
	size_t len;

	*to_stderr = applog_format(l, rec, &out);
	json_decref(rec);
	sk_buf_add(&out, "", 0);
	return sk_buf_detach(&out, &len);
}

static void expect(applog *l, const char *fn, const char *ct, const char *stream,
		   const char *text, const char *want, bool want_stderr)
{
	bool to_stderr;
	char *got = fmt(l, fn, ct, stream, text, &to_stderr);

	assert_string_equal(got, want);
	assert_int_equal(to_stderr, want_stderr);
	free(got);
}

/* A second container of a function makes its lines carry short container ids. */
static void test_container_suffix(void **state)
{
	const char *a = "ct-aaaa000011112222", *b = "ct-bbbb000011112222";
	applog l;

	(void)state;
	applog_init(&l);
	expect(&l, "square", a, "stdout", "one\n", "[square] one\n", false);
	expect(&l, "square", a, "stdout", "two\n", "[square] two\n", false);
	expect(&l, "other", b, "stdout", "x\n", "[other] x\n", false);
	expect(&l, "square", b, "stderr", "three\n", "[square ct-bbbb] three\n", true);
	expect(&l, "square", a, "stdout", "four\n", "[square ct-aaaa] four\n", false);
	expect(&l, "other", b, "stdout", "y\n", "[other] y\n", false);
	applog_release(&l);
}

/* Fragments get a newline; several lines each get the prefix. */
static void test_lines(void **state)
{
	applog l;

	(void)state;
	applog_init(&l);
	expect(&l, "f", "ct-1", "stdout", "no newline", "[f] no newline\n", false);
	expect(&l, "f", "ct-1", "stdout", "a\nb\n", "[f] a\n[f] b\n", false);
	expect(&l, "f", "ct-1", "stdout", "", "[f] \n", false);
	applog_release(&l);
}

/* A record missing fields prints what it has. */
static void test_missing_fields(void **state)
{
	json_t *rec = json_pack("{s:s}", "text", "bare\n");
	sk_buf out = SK_BUF_INIT;
	applog l;

	(void)state;
	applog_init(&l);
	assert_false(applog_format(&l, rec, &out));
	assert_string_equal(out.base, "[app] bare\n");
	sk_buf_release(&out);
	json_decref(rec);
	applog_release(&l);
}

static bool keep(const char *function, double since, const char *rec_json)
{
	applog_filter f = { .function = function, .since = since };
	json_t *rec = json_loads(rec_json, 0, NULL);
	bool kept;

	assert_non_null(rec);
	kept = applog_keep(&f, rec);
	json_decref(rec);
	return kept;
}

/* No filter keeps everything, records missing fields too. */
static void test_keep_all(void **state)
{
	(void)state;
	assert_true(keep(NULL, 0, "{\"ts\": 5.0, \"function\": \"f\", \"text\": \"x\"}"));
	assert_true(keep(NULL, 0, "{\"text\": \"bare\"}"));
	assert_true(keep(NULL, 0, "{}"));
}

/* --function F: F itself and the pools of class F ("F(...)"), nothing else. */
static void test_keep_function(void **state)
{
	(void)state;
	assert_true(keep("square", 0, "{\"function\": \"square\"}"));
	assert_false(keep("square", 0, "{\"function\": \"squares\"}"));
	assert_false(keep("square", 0, "{\"function\": \"squ\"}"));
	assert_false(keep("square", 0, "{\"function\": \"other\"}"));
	assert_true(keep("Model", 0, "{\"function\": \"Model(size=2)\"}"));
	assert_true(keep("Model", 0, "{\"function\": \"Model()\"}"));
	assert_false(keep("Model", 0, "{\"function\": \"ModelB\"}"));
	assert_false(keep("Model", 0, "{\"function\": \"Model.run\"}"));
	assert_true(keep("Model(size=2)", 0, "{\"function\": \"Model(size=2)\"}"));
	assert_false(keep("Model(size=2)", 0, "{\"function\": \"Model(size=3)\"}"));
	/* No function, or not a string: not F's. */
	assert_false(keep("square", 0, "{\"text\": \"x\"}"));
	assert_false(keep("square", 0, "{\"function\": 3}"));
}

/* --since T: ts >= T; a record of unknown age is dropped. */
static void test_keep_since(void **state)
{
	(void)state;
	assert_true(keep(NULL, 100, "{\"ts\": 100.0}"));
	assert_true(keep(NULL, 100, "{\"ts\": 100.5}"));
	assert_true(keep(NULL, 100, "{\"ts\": 200}"));
	assert_false(keep(NULL, 100, "{\"ts\": 99.999}"));
	assert_false(keep(NULL, 100, "{\"text\": \"no ts\"}"));
	assert_false(keep(NULL, 100, "{\"ts\": \"100\"}"));
	/* Both at once. */
	assert_true(keep("f", 100, "{\"ts\": 150.0, \"function\": \"f\"}"));
	assert_false(keep("f", 100, "{\"ts\": 50.0, \"function\": \"f\"}"));
	assert_false(keep("f", 100, "{\"ts\": 150.0, \"function\": \"g\"}"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_container_suffix),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_missing_fields),
		cmocka_unit_test(test_keep_all),
		cmocka_unit_test(test_keep_function),
		cmocka_unit_test(test_keep_since),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
