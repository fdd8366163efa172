/* Unit tests for `skiff usage --since` times (src/cli/since.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/since.h"

#define NOW 1800000000.0

static double ok(const char *text)
{
	sk_error err = { 0 };
	double t = -1;

	if (since_parse(text, NOW, &t, &err) < 0)
		fail_msg("'%s': %s", text, err.msg);
	return t;
}

static void bad(const char *text, const char *says)
{
	sk_error err = { 0 };
	double t = -1;

	assert_int_equal(since_parse(text, NOW, &t, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);
	if (!strstr(err.msg, says))
		fail_msg("'%s': message '%s' lacks '%s'", text, err.msg, says);
}

static void test_unix_seconds(void **state)
{
	(void)state;
	assert_true(ok("1764300000") == 1764300000.0);
	assert_true(ok("1764300000.5") == 1764300000.5);
	assert_true(ok("0") == 0);
	assert_true(ok("2026") == 2026); /* no dash: seconds, not a year */
}

static void test_ages(void **state)
{
	(void)state;
	assert_true(ok("30s") == NOW - 30);
	assert_true(ok("30m") == NOW - 1800);
	assert_true(ok("1h") == NOW - 3600);
	assert_true(ok("1.5h") == NOW - 5400);
	assert_true(ok("2d") == NOW - 172800);
	assert_true(ok("1w") == NOW - 604800);
}

/* Dates read in local time; TZ is set to a fixed zone for the test. */
static void test_dates(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	assert_true(ok("2026-11-28") == 1795824000.0);
	assert_true(ok("2026-11-28T10:00") == 1795824000.0 + 36000);
	assert_true(ok("2026-11-28 10:00:30") == 1795824000.0 + 36030);
	assert_true(ok("2026-11-28T10:00Z") == 1795824000.0 + 36000);
	setenv("TZ", "CET-1", 1); /* UTC+1, no summer time */
	tzset();
	assert_true(ok("2026-11-28T10:00") == 1795824000.0 + 36000 - 3600);
	assert_true(ok("2026-11-28T10:00Z") == 1795824000.0 + 36000); /* Z: still UTC */
	unsetenv("TZ");
	tzset();
}

static void test_errors(void **state)
{
	(void)state;
	bad("", "needs a time");
	bad("yesterday", "cannot read 'yesterday'");
	bad("2h ago", "cannot read");
	bad("5x", "cannot read");
	bad("-5", "cannot read");
	bad("1e400", "cannot read");
	bad("2026-13-01", "not a valid date");
	bad("2026-02-30", "not a valid date");
	bad("2026-11-28T25:00", "not a valid date");
	bad("2026-11-28T10", "not a valid date");
	bad("2026-11-28junk", "not a valid date");
	bad("2026-1-1", "not a valid date");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unix_seconds),
		cmocka_unit_test(test_ages),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests_name("cli_since", tests, NULL, NULL);
}
