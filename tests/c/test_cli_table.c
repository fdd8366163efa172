/* Unit tests for the CLI's tables and short texts (src/cli/table.c, fmt.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/fmt.h"
#include "cli/table.h"

static void test_table(void **state)
{
	static const char *const head[] = { "ID", "STATE", "COMMAND" };
	static const char *const r1[] = { "sb-1", "running", "sleep infinity" };
	static const char *const r2[] = { "sb-22222", NULL, "caf\xc3\xa9" };
	sk_buf out = SK_BUF_INIT;
	table t;

	(void)state;
	table_init(&t, 3, head);
	table_add(&t, r1);
	table_add(&t, r2);
	table_render(&t, &out);
	assert_string_equal(out.base, "ID        STATE    COMMAND\n"
				      "sb-1      running  sleep infinity\n"
				      "sb-22222  -        caf\xc3\xa9\n");
	sk_buf_release(&out);
	table_release(&t);
}

/* Widths count characters: a multi-byte cell pads like its visible length. */
static void test_table_utf8(void **state)
{
	static const char *const head[] = { "A", "B" };
	static const char *const r1[] = { "\xc3\xa9\xc3\xa9", "x" };
	sk_buf out = SK_BUF_INIT;
	table t;

	(void)state;
	table_init(&t, 2, head);
	table_add(&t, r1);
	table_render(&t, &out);
	assert_string_equal(out.base, "A   B\n\xc3\xa9\xc3\xa9  x\n");
	sk_buf_release(&out);
	table_release(&t);
}

static void test_age(void **state)
{
	char b[16];

	(void)state;
	fmt_age(-3, b, sizeof(b));
	assert_string_equal(b, "0s");
	fmt_age(59.9, b, sizeof(b));
	assert_string_equal(b, "59s");
	fmt_age(60, b, sizeof(b));
	assert_string_equal(b, "1m");
	fmt_age(7199, b, sizeof(b));
	assert_string_equal(b, "1h");
	fmt_age(86400 * 3 + 5, b, sizeof(b));
	assert_string_equal(b, "3d");
}

static void test_argv(void **state)
{
	json_t *a = json_pack("[s,s,s,s]", "sh", "-c", "echo 'hi' there", "");
	char *s = fmt_argv(a);

	(void)state;
	assert_string_equal(s, "sh -c 'echo '\\''hi'\\'' there' ''");
	free(s);
	json_decref(a);
	a = json_array();
	s = fmt_argv(a);
	assert_string_equal(s, "");
	free(s);
	json_decref(a);
}

static void test_truncate(void **state)
{
	char *s;

	(void)state;
	s = fmt_truncate("short", 10);
	assert_string_equal(s, "short");
	free(s);
	s = fmt_truncate("exactly10!", 10);
	assert_string_equal(s, "exactly10!");
	free(s);
	s = fmt_truncate("python3 -m http.server", 10);
	assert_string_equal(s, "python3...");
	free(s);
	s = fmt_truncate("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 4);
	assert_string_equal(s, "\xc3\xa9...");
	free(s);
	s = fmt_truncate("abcdef", 2);
	assert_string_equal(s, "..");
	free(s);
}

static void test_numbers(void **state)
{
	json_t *v;
	char b[24];

	(void)state;
	fmt_cpu(json_null(), b, sizeof(b));
	assert_string_equal(b, "-");
	v = json_real(0.5);
	fmt_cpu(v, b, sizeof(b));
	assert_string_equal(b, "0.5");
	json_decref(v);
	v = json_integer(2);
	fmt_cpu(v, b, sizeof(b));
	assert_string_equal(b, "2");
	json_decref(v);
	fmt_mib(NULL, b, sizeof(b));
	assert_string_equal(b, "-");
	v = json_integer(256);
	fmt_mib(v, b, sizeof(b));
	assert_string_equal(b, "256MiB");
	json_decref(v);
	v = json_integer(8192);
	fmt_mib(v, b, sizeof(b));
	assert_string_equal(b, "8GiB");
	json_decref(v);
	v = json_integer(1536);
	fmt_mib(v, b, sizeof(b));
	assert_string_equal(b, "1.5GiB");
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_table_utf8),
		cmocka_unit_test(test_age),
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_truncate),
		cmocka_unit_test(test_numbers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
