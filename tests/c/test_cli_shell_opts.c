/* Unit tests for `skiff shell` option parsing (src/cli/shell_opts.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cli/shell_opts.h"

#define PARSE(o, err, ...)                                                             \
	({                                                                             \
		char *argv_[] = { "shell", __VA_ARGS__, NULL };                          \
		shell_opts_parse((int)(sizeof(argv_) / sizeof(argv_[0])) - 1, argv_, o, err); \
	})

static void test_defaults(void **state)
{
	char *argv[] = { "shell", NULL };
	shell_opts o;
	sk_error err;

	(void)state;
	assert_int_equal(shell_opts_parse(1, argv, &o, &err), 0);
	assert_string_equal(o.image, "debian_slim");
	assert_null(o.python_version);
	assert_null(o.cmd);
	assert_true(o.cpu == 0);
	assert_int_equal(o.memory, 0);
	assert_int_equal(o.timeout, SHELL_DEFAULT_TIMEOUT);
	assert_false(o.help);
}

static void test_all(void **state)
{
	shell_opts o;
	sk_error err;

	(void)state;
	assert_int_equal(PARSE(&o, &err, "--image", "debian_slim", "--python-version=3.11", "--cpu",
			       "0.5", "--memory", "512", "--timeout", "60", "--cmd", "echo hi"),
			 0);
	assert_string_equal(o.python_version, "3.11");
	assert_true(o.cpu == 0.5);
	assert_int_equal(o.memory, 512);
	assert_int_equal(o.timeout, 60);
	assert_string_equal(o.cmd, "echo hi");
	assert_int_equal(PARSE(&o, &err, "--help"), 0);
	assert_true(o.help);
}

static void test_errors(void **state)
{
	shell_opts o;
	sk_error err;

	(void)state;
	assert_int_equal(PARSE(&o, &err, "--cpu", "0"), -1);
	assert_non_null(strstr(err.msg, "--cpu"));
	assert_int_equal(PARSE(&o, &err, "--cpu", "nan"), -1);
	assert_int_equal(PARSE(&o, &err, "--cpu", "1x"), -1);
	assert_int_equal(PARSE(&o, &err, "--memory", "-5"), -1);
	assert_non_null(strstr(err.msg, "--memory"));
	assert_int_equal(PARSE(&o, &err, "--memory", "1.5"), -1);
	assert_int_equal(PARSE(&o, &err, "--timeout", "86401"), -1);
	assert_int_equal(PARSE(&o, &err, "--timeout"), -1);
	assert_non_null(strstr(err.msg, "needs a value"));
	assert_int_equal(PARSE(&o, &err, "--frob"), -1);
	assert_non_null(strstr(err.msg, "unknown option '--frob'"));
	assert_int_equal(PARSE(&o, &err, "ls"), -1);
	assert_non_null(strstr(err.msg, "--cmd"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_all),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
