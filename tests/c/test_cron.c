/*
 * Tests for cron expressions (src/sched/cron.c): parsing, refusals with
 * their messages, and next fire times in UTC and in real zones.
 *
 * The expected instants were worked out by hand from the calendar and each
 * zone's published rules, and checked against Python's zoneinfo; none comes
 * from the code under test.  Rows in zones other than UTC need the system's
 * zone files (/usr/share/zoneinfo or $TZDIR) and are skipped without them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/cron.h"
#include "sched/tz.h"

/* "2026-03-29T01:00:00Z" as unix seconds, by libc's timegm, not by sched/. */
static int64_t iso(const char *s)
{
	struct tm tm = { 0 };
	char z = 0;

	if (sscanf(s, "%d-%d-%dT%d:%d:%d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &z) != 7 || z != 'Z')
		fail_msg("bad ISO time in the test: %s", s);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

static void fmt_iso(int64_t t, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == -1) {
		snprintf(out, n, "-1");
		return;
	}
	gmtime_r(&tt, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static sk_cron parse_ok(const char *expr)
{
	char err[256] = "";
	sk_cron c;

	if (sk_cron_parse(expr, &c, err, sizeof(err)) < 0)
		fail_msg("'%s' refused: %s", expr, err);
	return c;
}

/* ---- next fire times ---------------------------------------------------------- */

struct next_case {
	const char *expr, *zone, *after, *next; /* next NULL: none (-1) */
};

static const struct next_case next_cases[] = {
	/* Minutes: every, one value, lists, ranges, steps, a/n, a mix. */
	{ "* * * * *", "UTC", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z" },
	{ "* * * * *", "UTC", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z" },
	{ "5 * * * *", "UTC", "2026-01-01T00:05:00Z", "2026-01-01T01:05:00Z" },
	{ "0,30 * * * *", "UTC", "2026-01-01T00:10:00Z", "2026-01-01T00:30:00Z" },
	{ "10-12 * * * *", "UTC", "2026-01-01T00:12:00Z", "2026-01-01T01:10:00Z" },
	{ "*/15 * * * *", "UTC", "2026-01-01T00:46:00Z", "2026-01-01T01:00:00Z" },
	{ "10-50/20 * * * *", "UTC", "2026-01-01T00:31:00Z", "2026-01-01T00:50:00Z" },
	{ "50/5 * * * *", "UTC", "2026-01-01T00:56:00Z", "2026-01-01T01:50:00Z" },
	{ "1,5-7,*/20 * * * *", "UTC", "2026-01-01T00:07:00Z", "2026-01-01T00:20:00Z" },
	{ "\t 0  */6\t* *  * ", "UTC", "2026-01-01T06:00:00Z", "2026-01-01T12:00:00Z" },
	{ "0 9-17/4 * * *", "UTC", "2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z" },
	{ "0 0 * * *", "UTC", "2026-01-01T23:59:59Z", "2026-01-02T00:00:00Z" },
	/* Names, any case, in ranges and lists; 0 and 7 are Sunday. */
	{ "0 0 1 JAN *", "UTC", "2026-03-01T00:00:00Z", "2027-01-01T00:00:00Z" },
	{ "0 0 1 jan-Mar *", "UTC", "2026-02-15T00:00:00Z", "2026-03-01T00:00:00Z" },
	{ "0 12 * * MON-FRI", "UTC", "2026-01-02T12:00:00Z", "2026-01-05T12:00:00Z" },
	{ "0 12 * * sat,SUN", "UTC", "2026-01-02T12:00:00Z", "2026-01-03T12:00:00Z" },
	{ "0 0 * * 7", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z" },
	{ "0 0 * * 0", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z" },
	{ "0 0 * * 6-7", "UTC", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z" },
	{ "0 0 * * */2", "UTC", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z" },
	{ "0 0 * * 1/2", "UTC", "2026-01-02T00:00:00Z", "2026-01-05T00:00:00Z" },
	/* Day of month OR day of week when both are restricted... */
	{ "0 0 1,15 * MON", "UTC", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z" },
	{ "0 0 13 * FRI", "UTC", "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z" },
	{ "0 0 13 * FRI", "UTC", "2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z" },
	/* ...and AND when one begins with '*': '*' alone leaves the other to decide. */
	{ "0 0 13 * *", "UTC", "2026-02-01T00:00:00Z", "2026-02-13T00:00:00Z" },
	{ "0 0 * * FRI", "UTC", "2026-02-06T00:00:00Z", "2026-02-13T00:00:00Z" },
	{ "0 0 */2 * MON", "UTC", "2026-02-01T00:00:00Z", "2026-02-09T00:00:00Z" },
	{ "0 0 1 * */3", "UTC", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z" },
	/* Aliases. */
	{ "@yearly", "UTC", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z" },
	{ "@annually", "UTC", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z" },
	{ "@monthly", "UTC", "2026-01-31T12:00:00Z", "2026-02-01T00:00:00Z" },
	{ "@weekly", "UTC", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z" },
	{ "@daily", "UTC", "2026-01-01T23:59:59Z", "2026-01-02T00:00:00Z" },
	{ " @midnight ", "UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z" },
	{ "@HOURLY", "UTC", "2026-01-01T00:59:00Z", "2026-01-01T01:00:00Z" },
	/* Month ends, leap years (2100 is not one), year rollover, the epoch. */
	{ "0 0 31 * *", "UTC", "2026-04-01T00:00:00Z", "2026-05-31T00:00:00Z" },
	{ "0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z" },
	{ "0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z" },
	{ "0 0 1 1 *", "UTC", "2026-12-31T23:59:00Z", "2027-01-01T00:00:00Z" },
	{ "59 23 31 12 *", "UTC", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z" },
	{ "0 0 1 1 *", "UTC", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z" },
	{ "0 0 * * *", NULL, "2099-12-31T12:00:00Z", "2100-01-01T00:00:00Z" },
	/* Dates that never come. */
	{ "0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", NULL },
	{ "0 0 31 4,6,9,11 *", "Europe/Paris", "2026-01-01T00:00:00Z", NULL },
	/* Fixed offsets away from UTC. */
	{ "0 9 * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T03:30:00Z" },
	{ "*/45 * * * *", "Asia/Kolkata", "2026-01-01T00:00:00Z", "2026-01-01T00:15:00Z" },
	{ "0 0 * * *", "Etc/UTC", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z" },
	/* Europe/Paris: CET (+1), CEST (+2) from 2026-03-29 01:00Z to 2026-10-25 01:00Z. */
	{ "0 12 * * *", "Europe/Paris", "2026-01-01T00:00:00Z", "2026-01-01T11:00:00Z" },
	{ "0 12 * * *", "Europe/Paris", "2026-07-01T00:00:00Z", "2026-07-01T10:00:00Z" },
	/* Spring forward: 02:30 does not exist; a fixed hour fires at 03:00 CEST. */
	{ "30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z" },
	{ "30 2 * * *", "Europe/Paris", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z" },
	{ "* 2 * * *", "Europe/Paris", "2026-03-29T00:59:00Z", "2026-03-29T01:00:00Z" },
	{ "* 2 * * *", "Europe/Paris", "2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z" },
	{ "0 3 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z" },
	/* ...and with a '*' hour the missing times are skipped. */
	{ "*/15 * * * *", "Europe/Paris", "2026-03-29T00:45:00Z", "2026-03-29T01:00:00Z" },
	{ "0 */2 * * *", "Europe/Paris", "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z" },
	/* Fall back: 02:30 happens twice; a fixed hour fires in the first only. */
	{ "30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z" },
	{ "30 2 * * *", "Europe/Paris", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z" },
	{ "30 2 * * *", "Europe/Paris", "2026-10-25T01:15:00Z", "2026-10-26T01:30:00Z" },
	{ "0 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z", "2026-10-25T00:00:00Z" },
	/* ...and with a '*' hour in both: every 15 minutes of real time. */
	{ "*/15 * * * *", "Europe/Paris", "2026-10-25T00:45:00Z", "2026-10-25T01:00:00Z" },
	{ "*/15 * * * *", "Europe/Paris", "2026-10-25T01:00:00Z", "2026-10-25T01:15:00Z" },
	/* Beyond the table of transitions (2037): the footer's rule. */
	{ "0 12 1 7 *", "Europe/Paris", "2090-01-01T00:00:00Z", "2090-07-01T10:00:00Z" },
	{ "30 2 * * *", "Europe/Paris", "2090-03-25T12:00:00Z", "2090-03-26T01:00:00Z" },
	/* America/New_York: EDT from 2026-03-08 07:00Z to 2026-11-01 06:00Z. */
	{ "30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T07:00:00Z" },
	{ "30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", "2026-11-01T05:30:00Z" },
	{ "30 1 * * *", "America/New_York", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z" },
	{ "0 * * * *", "America/New_York", "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z" },
	{ "0 9 * * MON-FRI", "America/New_York", "2026-03-06T15:00:00Z", "2026-03-09T13:00:00Z" },
	/* Australia/Lord_Howe: +11 in summer, +10:30 from 2026-04-04 15:00Z
	 * (02:00 -> 01:30), +11 again from 2026-10-03 15:30Z (02:00 -> 02:30). */
	{ "0 12 * * *", "Australia/Lord_Howe", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z" },
	{ "0 12 * * *", "Australia/Lord_Howe", "2026-07-01T00:00:00Z", "2026-07-01T01:30:00Z" },
	{ "45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00:00Z", "2026-04-04T14:45:00Z" },
	{ "45 1 * * *", "Australia/Lord_Howe", "2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z" },
	{ "*/15 * * * *", "Australia/Lord_Howe", "2026-04-04T14:45:00Z", "2026-04-04T15:00:00Z" },
	{ "*/15 * * * *", "Australia/Lord_Howe", "2026-04-04T15:00:00Z", "2026-04-04T15:15:00Z" },
	{ "15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", "2026-10-03T15:30:00Z" },
	{ "*/30 * * * *", "Australia/Lord_Howe", "2026-10-03T15:20:00Z", "2026-10-03T15:30:00Z" },
	{ "*/20 * * * *", "Australia/Lord_Howe", "2026-10-03T15:20:00Z", "2026-10-03T15:40:00Z" },
};

static sk_tz *zone(const char *name, bool *missing)
{
	char err[256];
	sk_tz *tz;

	if (!name)
		return NULL;
	if (sk_tz_load(name, &tz, err, sizeof(err)) < 0) {
		*missing = true;
		return NULL;
	}
	return tz;
}

static bool is_utc(const char *zone)
{
	return !zone || !strcmp(zone, "UTC");
}

static void run_next_cases(bool utc)
{
	bool missing = false;
	int ran = 0;

	for (size_t i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
		const struct next_case *k = &next_cases[i];
		char want[32], got[32];
		sk_cron c;
		sk_tz *tz;
		int64_t next;

		if (is_utc(k->zone) != utc)
			continue;
		tz = zone(k->zone, &missing);
		if (missing)
			break;
		c = parse_ok(k->expr);
		next = sk_cron_next(&c, tz, iso(k->after));
		fmt_iso(k->next ? iso(k->next) : -1, want, sizeof(want));
		fmt_iso(next, got, sizeof(got));
		if (strcmp(want, got))
			fail_msg("'%s' in %s after %s: want %s, got %s", k->expr,
				 k->zone ? k->zone : "NULL", k->after, want, got);
		sk_tz_free(tz);
		ran++;
	}
	if (missing)
		skip(); /* no zone files here */
	assert_true(ran >= 20);
}

static void test_next_utc(void **state)
{
	run_next_cases(true);
}

static void test_next_zones(void **state)
{
	run_next_cases(false);
}

/* ---- refusals ----------------------------------------------------------------- */

static const struct {
	const char *expr, *says;
} bad_cases[] = {
	{ "61 * * * *", "cron: minute field '61': value out of range 0-59" },
	{ "* 24 * * *", "hour field '24': value out of range 0-23" },
	{ "* * 0 * *", "day-of-month field '0': value out of range 1-31" },
	{ "* * 1,32 * *", "day-of-month field '1,32': value out of range 1-31" },
	{ "* * * 13 *", "month field '13': value out of range 1-12" },
	{ "* * * * 8", "day-of-week field '8': value out of range 0-7" },
	{ "99999999999 * * * *", "value out of range 0-59" },
	{ "*/0 * * * *", "minute field '*/0': step 0 out of range 1-60" },
	{ "* * * * 1-7/0", "step 0 out of range" },
	{ "*/61 * * * *", "step 61 out of range 1-60" },
	{ "*/ * * * *", "step must be a number" },
	{ "*/x * * * *", "step must be a number" },
	{ "5-1 * * * *", "minute field '5-1': range 5-1 is reversed" },
	{ "* * * * FRI-MON", "range 5-1 is reversed" },
	{ "1,,2 * * * *", "minute field '1,,2': empty list item" },
	{ "1, * * * *", "empty list item" },
	{ ",1 * * * *", "empty list item" },
	{ "* * * *", "cron: expected 5 fields, got 4 in '* * * *'" },
	{ "* * * * * *", "expected 5 fields, got 6" },
	{ "* * * * * root /bin/true", "expected 5 fields, got 7" },
	{ "", "empty expression" },
	{ " \t ", "empty expression" },
	{ "@reboot", "@reboot is not supported" },
	{ "@fortnightly", "unknown alias '@fortnightly'" },
	{ "@every 5m", "unknown alias '@every'" },
	{ "@daily x", "unexpected 'x' after @daily" },
	{ "1x * * * *", "minute field '1x': unexpected character 'x'" },
	{ "*x * * * *", "unexpected character 'x'" },
	{ "1-2-3 * * * *", "unexpected character '-'" },
	{ "-1 * * * *", "unexpected character '-'" },
	{ "* * * * *\n", "unexpected character '?'" },
	{ "abc * * * *", "minute field 'abc': 'abc' is not a number" },
	{ "* * * FOO *", "month field 'FOO': unknown name 'FOO'" },
	{ "* * * JAN-MON *", "unknown name 'MON'" },
	{ "* * * * MONDAY", "unknown name 'MONDAY'" },
	{ "* * * * MON-", "a value is missing" },
};

static void test_refusals(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		char err[256] = "";
		sk_cron c;

		if (sk_cron_parse(bad_cases[i].expr, &c, err, sizeof(err)) == 0)
			fail_msg("'%s' accepted", bad_cases[i].expr);
		if (!strstr(err, bad_cases[i].says))
			fail_msg("'%s': message '%s' lacks '%s'", bad_cases[i].expr, err,
				 bad_cases[i].says);
	}
}

static void test_refusal_edges(void **state)
{
	char long_expr[300], err[256] = "", tiny[8];
	sk_cron c;

	/* 256 bytes is fine, 257 is not, even when all of it is blanks. */
	memset(long_expr, ' ', sizeof(long_expr));
	memcpy(long_expr, "* * * * *", 9);
	long_expr[256] = 0;
	assert_int_equal(sk_cron_parse(long_expr, &c, err, sizeof(err)), 0);
	long_expr[256] = ' ';
	long_expr[257] = 0;
	assert_int_equal(sk_cron_parse(long_expr, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than 256 bytes"));
	assert_int_equal(sk_cron_parse(NULL, &c, err, sizeof(err)), -1);
	/* No room for the message, or a short one: still refused, still terminated. */
	assert_int_equal(sk_cron_parse("61 * * * *", &c, NULL, 0), -1);
	assert_int_equal(sk_cron_parse("61 * * * *", &c, tiny, sizeof(tiny)), -1);
	assert_string_equal(tiny, "cron: m");
	/* Bytes that are not printable are not echoed. */
	assert_int_equal(sk_cron_parse("\x01\xff * * * *", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "'?" "?'")); /* split: no trigraph */
}

/* ---- what the parser builds ------------------------------------------------------- */

static void test_parse_bits(void **state)
{
	sk_cron c = parse_ok("0-59/20,7 1,2-4 */10 FEB-apr/2 5-7");

	assert_true(c.minute == ((1ull << 0) | (1ull << 7) | (1ull << 20) | (1ull << 40)));
	assert_int_equal(c.hour, 0x1e);
	assert_int_equal(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
	assert_int_equal(c.month, (1u << 2) | (1u << 4));
	assert_int_equal(c.dow, 0x61); /* FRI, SAT, SUN (7) */
	assert_false(c.hour_star);
	assert_true(c.dom_star);
	assert_false(c.dow_star);
	c = parse_ok("* */2 * * *");
	assert_true(c.minute == (1ull << 60) - 1);
	assert_int_equal(c.hour, 0x555555);
	assert_true(c.hour_star);
	assert_true(c.dow_star);
	assert_int_equal(c.dow, 0x7f);
	c = parse_ok("@weekly");
	assert_int_equal(c.dow, 1);
	assert_false(c.dow_star);
	assert_true(c.dom_star);
	c = parse_ok("0 0 * * 0-7");
	assert_int_equal(c.dow, 0x7f);
	/* A struct with empty sets (not from the parser) never fires. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(sk_cron_next(&c, NULL, 0), -1);
}

/* ---- properties over random schedules and instants ----------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* A random item for a field of values lo..hi, steps up to max_step. */
static void rnd_item(char *out, size_t n, int lo, int hi, int max_step)
{
	int a = lo + (int)rnd((uint32_t)(hi - lo + 1)), b = a + (int)rnd((uint32_t)(hi - a + 1));
	int step = 1 + (int)rnd((uint32_t)max_step);

	switch (rnd(6)) {
	case 0: snprintf(out, n, "*"); break;
	case 1: snprintf(out, n, "*/%d", step); break;
	case 2: snprintf(out, n, "%d", a); break;
	case 3: snprintf(out, n, "%d-%d", a, b); break;
	case 4: snprintf(out, n, "%d-%d/%d", a, b, step); break;
	default: snprintf(out, n, "%d,%d", a, b); break;
	}
}

static void test_next_properties(void **state)
{
	static const char *const zones[] = { NULL, "Europe/Paris", "America/New_York",
					     "Australia/Lord_Howe", "Asia/Kolkata" };
	static const int lo[5] = { 0, 0, 1, 1, 0 }, hi[5] = { 59, 23, 31, 12, 7 };
	static const int max_step[5] = { 60, 24, 31, 12, 7 };
	sk_tz *tz[5] = { NULL };
	bool have_zones = true;
	int fired = 0;

	for (size_t z = 1; z < 5; z++)
		if (sk_tz_load(zones[z], &tz[z], NULL, 0) < 0)
			have_zones = false;
	for (int i = 0; i < 4000; i++) {
		char expr[200], item[5][32];
		size_t z = have_zones ? rnd(5) : 0;
		/* 1970 to 2100 */
		int64_t after = (int64_t)rnd(4102444800u), next, again;
		sk_cron c;

		for (int f = 0; f < 5; f++)
			rnd_item(item[f], sizeof(item[f]), lo[f], hi[f], max_step[f]);
		snprintf(expr, sizeof(expr), "%s %s %s %s %s", item[0], item[1], item[2], item[3],
			 item[4]);
		c = parse_ok(expr);
		next = sk_cron_next(&c, tz[z], after);
		if (next == -1)
			continue; /* e.g. only the 31st of February */
		fired++;
		if (next <= after || next % 60 != 0)
			fail_msg("'%s' in %s after %lld: %lld", expr, sk_tz_name(tz[z]),
				 (long long)after, (long long)next);
		again = sk_cron_next(&c, tz[z], next - 1);
		if (again != next)
			fail_msg("'%s' in %s: next(%lld) = %lld but next(%lld) = %lld", expr,
				 sk_tz_name(tz[z]), (long long)after, (long long)next,
				 (long long)next - 1, (long long)again);
		/* Nothing fires in between: from a random point in (after, next). */
		again = sk_cron_next(&c, tz[z], after + (int64_t)rnd((uint32_t)(next - after)));
		assert_true(again == next);
	}
	assert_true(fired > 2000);
	for (size_t z = 1; z < 5; z++)
		sk_tz_free(tz[z]);
}

/* The worst case, a schedule that never fires, scans 8 years by skipping: fast. */
static void test_next_speed(void **state)
{
	sk_cron c = parse_ok("0 0 30 2 *");
	struct timespec t0, t1;
	sk_tz *paris = NULL;
	double secs;

	sk_tz_load("Europe/Paris", &paris, NULL, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(sk_cron_next(&c, paris, iso("2026-01-01T00:00:00Z") + i * 86400), -1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Stepping minute by minute would take seconds per call; even ASan stays far below. */
	if (secs > 2.0)
		fail_msg("200 searches took %.3f s", secs);
	sk_tz_free(paris);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_next_utc),
		cmocka_unit_test(test_next_zones),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_refusal_edges),
		cmocka_unit_test(test_parse_bits),
		cmocka_unit_test(test_next_properties),
		cmocka_unit_test(test_next_speed),
	};

	return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
