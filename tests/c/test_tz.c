/*
 * Tests for time zones (src/sched/tz.c): offsets in real zones, POSIX TZ
 * footer rules (RFC 8536, extensions included) in TZif files built here,
 * zone names refused, and malformed TZif data refused without crashing.
 *
 * Tests of installed zones skip where /usr/share/zoneinfo is missing; the
 * rest needs nothing from the system.  Expected offsets and instants come
 * from the zones' published rules, worked out by hand (and checked against
 * Python's zoneinfo for the installed zones).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sched/tz.h"

/* "2026-03-29T01:00:00Z" as unix seconds, by libc's timegm. */
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

/* Loads an installed zone, or skips the test where there are none. */
static sk_tz *installed(const char *name)
{
	char err[256];
	sk_tz *tz;

	unsetenv("TZDIR");
	if (access("/usr/share/zoneinfo/Europe/Paris", R_OK) != 0)
		skip();
	if (sk_tz_load(name, &tz, err, sizeof(err)) < 0)
		fail_msg("%s: %s", name, err);
	assert_string_equal(sk_tz_name(tz), name);
	return tz;
}

struct off_case {
	const char *at;
	int32_t off;
};

static void check_offsets(const sk_tz *tz, const struct off_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int32_t got = sk_tz_offset(tz, iso(c[i].at));

		if (got != c[i].off)
			fail_msg("%s at %s: want %d, got %d", sk_tz_name(tz), c[i].at, (int)c[i].off,
				 (int)got);
	}
}

#define CHECK_OFFSETS(tz, ...)                                              \
	do {                                                                \
		static const struct off_case c_[] = { __VA_ARGS__ };        \
		check_offsets(tz, c_, sizeof(c_) / sizeof(c_[0]));          \
	} while (0)

/* ---- installed zones ---------------------------------------------------------- */

static void test_paris(void **state)
{
	sk_tz *tz = installed("Europe/Paris");

	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 3600 }, { "2026-07-15T12:00:00Z", 7200 },
		      { "2026-03-29T00:59:59Z", 3600 }, { "2026-03-29T01:00:00Z", 7200 },
		      { "2026-10-25T00:59:59Z", 7200 }, { "2026-10-25T01:00:00Z", 3600 },
		      /* 1900: Paris mean time, +0:09:21, before the first transition */
		      { "1900-01-01T00:00:00Z", 561 },
		      /* past the last transition in the file (2037): the footer's rule */
		      { "2090-01-15T12:00:00Z", 3600 }, { "2090-07-15T12:00:00Z", 7200 },
		      { "2090-03-26T00:59:59Z", 3600 }, { "2090-03-26T01:00:00Z", 7200 },
		      { "2090-10-29T00:59:59Z", 7200 }, { "2090-10-29T01:00:00Z", 3600 });
	assert_true(sk_tz_next_change(tz, iso("2026-01-01T00:00:00Z")) == iso("2026-03-29T01:00:00Z"));
	assert_true(sk_tz_next_change(tz, iso("2026-03-29T01:00:00Z")) == iso("2026-10-25T01:00:00Z"));
	assert_true(sk_tz_next_change(tz, iso("2090-01-01T00:00:00Z")) == iso("2090-03-26T01:00:00Z"));
	assert_true(sk_tz_next_change(tz, iso("2090-03-26T00:59:59Z")) == iso("2090-03-26T01:00:00Z"));
	assert_true(sk_tz_next_change(tz, iso("2090-03-26T01:00:00Z")) == iso("2090-10-29T01:00:00Z"));
	/* Across the hand-over from the table to the rule. */
	assert_true(sk_tz_next_change(tz, iso("2037-11-01T00:00:00Z")) == iso("2038-03-28T01:00:00Z"));
	sk_tz_free(tz);
}

static void test_new_york(void **state)
{
	sk_tz *tz = installed("America/New_York");

	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", -18000 }, { "2026-07-15T12:00:00Z", -14400 },
		      { "2026-03-08T06:59:59Z", -18000 }, { "2026-03-08T07:00:00Z", -14400 },
		      { "2026-11-01T05:59:59Z", -14400 }, { "2026-11-01T06:00:00Z", -18000 },
		      { "2090-07-04T12:00:00Z", -14400 }, { "2090-12-25T12:00:00Z", -18000 });
	sk_tz_free(tz);
}

static void test_kolkata(void **state)
{
	sk_tz *tz = installed("Asia/Kolkata");

	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 19800 }, { "2026-07-15T12:00:00Z", 19800 },
		      { "2090-07-15T12:00:00Z", 19800 });
	assert_true(sk_tz_next_change(tz, iso("2026-01-01T00:00:00Z")) == INT64_MAX);
	sk_tz_free(tz);
}

static void test_lord_howe(void **state)
{
	sk_tz *tz = installed("Australia/Lord_Howe");

	/* +11 in the southern summer, +10:30 in winter: a half-hour change. */
	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 39600 }, { "2026-07-15T12:00:00Z", 37800 },
		      { "2026-04-04T14:59:59Z", 39600 }, { "2026-04-04T15:00:00Z", 37800 },
		      { "2026-10-03T15:29:59Z", 37800 }, { "2026-10-03T15:30:00Z", 39600 },
		      { "2090-01-15T12:00:00Z", 39600 }, { "2090-07-15T12:00:00Z", 37800 });
	sk_tz_free(tz);
}

static void test_utc(void **state)
{
	char err[256];
	sk_tz *tz;

	assert_int_equal(sk_tz_offset(NULL, 0), 0);
	assert_string_equal(sk_tz_name(NULL), "UTC");
	assert_true(sk_tz_next_change(NULL, 0) == INT64_MAX);
	static const char *const names[] = { NULL, "", "UTC" };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(sk_tz_load(names[i], &tz, err, sizeof(err)), 0);
		assert_string_equal(sk_tz_name(tz), "UTC");
		assert_int_equal(sk_tz_offset(tz, iso("2026-07-01T00:00:00Z")), 0);
		assert_true(sk_tz_next_change(tz, INT64_MIN) == INT64_MAX);
		sk_tz_free(tz);
	}
	sk_tz_free(NULL);
}

/* ---- names ---------------------------------------------------------------------- */

static void bad_name(const char *name, const char *says)
{
	char err[256] = "";
	sk_tz *tz = (sk_tz *)1;

	assert_int_equal(sk_tz_load(name, &tz, err, sizeof(err)), -1);
	assert_null(tz);
	if (!strstr(err, says))
		fail_msg("'%s': message '%s' lacks '%s'", name, err, says);
}

static void test_bad_names(void **state)
{
	char long_name[300];

	unsetenv("TZDIR");
	bad_name("../etc/passwd", "invalid time zone name '../etc/passwd': '..' is not allowed");
	bad_name("Europe/../../etc/passwd", "'..' is not allowed");
	bad_name("/etc/localtime", "absolute paths are not allowed");
	bad_name("Nowhere/City",
		 "unknown time zone 'Nowhere/City' (no such file in /usr/share/zoneinfo)");
	bad_name("Europe/Pariss", "unknown time zone 'Europe/Pariss'");
	bad_name("Europe/Paris ", "character 0x20 is not allowed");
	bad_name("Europe\\Paris", "character 0x5c is not allowed");
	bad_name("zone.tab", "character 0x2e is not allowed");
	bad_name("Europe/Paris\n", "'Europe/Paris?'");
	memset(long_name, 'A', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = 0;
	bad_name(long_name, "too long");
	if (access("/usr/share/zoneinfo/Europe", X_OK) == 0)
		bad_name("Europe", "is a directory");
	/* A NULL err is fine. */
	sk_tz *tz;
	assert_int_equal(sk_tz_load("../x", &tz, NULL, 0), -1);
}

/* ---- TZif files built here -------------------------------------------------------- */

struct tzif_spec {
	int version; /* 0 or '2', '3', '4' */
	size_t n;
	const int64_t *times;
	const uint8_t *idx;
	size_t ntypes;
	const int32_t *offs;
	size_t nleap;
	const char *footer; /* v2+: without its newlines */
};

static size_t put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	return 4;
}

static size_t put_block(unsigned char *p, const struct tzif_spec *s, int version, unsigned tsize)
{
	size_t o = 0;

	memcpy(p, "TZif", 4);
	p[4] = (unsigned char)version;
	memset(p + 5, 0, 15);
	o = 20;
	o += put32(p + o, (uint32_t)s->ntypes); /* isutcnt */
	o += put32(p + o, (uint32_t)s->ntypes); /* isstdcnt */
	o += put32(p + o, (uint32_t)s->nleap);
	o += put32(p + o, (uint32_t)s->n);
	o += put32(p + o, (uint32_t)s->ntypes);
	o += put32(p + o, 4); /* charcnt: "ABC\0" */
	for (size_t i = 0; i < s->n; i++) {
		if (tsize == 8)
			o += put32(p + o, (uint32_t)((uint64_t)s->times[i] >> 32));
		o += put32(p + o, (uint32_t)s->times[i]);
	}
	for (size_t i = 0; i < s->n; i++)
		p[o++] = s->idx[i];
	for (size_t i = 0; i < s->ntypes; i++) {
		o += put32(p + o, (uint32_t)s->offs[i]);
		p[o++] = 0;
		p[o++] = 0;
	}
	memcpy(p + o, "ABC", 4);
	o += 4;
	for (size_t i = 0; i < s->nleap; i++) {
		if (tsize == 8)
			o += put32(p + o, 0);
		o += put32(p + o, (uint32_t)(78796800 + i * 15768000));
		o += put32(p + o, (uint32_t)(i + 1));
	}
	memset(p + o, 0, 2 * s->ntypes); /* isstd, isut */
	return o + 2 * s->ntypes;
}

/* Writes the file into out (room for 4096 bytes); returns its length. */
static size_t make_tzif(unsigned char *out, const struct tzif_spec *s)
{
	size_t o = put_block(out, s, s->version, 4);

	if (!s->version)
		return o;
	o += put_block(out + o, s, s->version, 8);
	o += (size_t)snprintf((char *)out + o, 4096 - o, "\n%s\n", s->footer ? s->footer : "");
	return o;
}

static sk_tz *parse_ok(const unsigned char *data, size_t len)
{
	char err[256] = "";
	sk_tz *tz = NULL;

	if (sk_tz_parse(data, len, &tz, err, sizeof(err)) < 0)
		fail_msg("refused: %s", err);
	assert_non_null(tz);
	assert_string_equal(sk_tz_name(tz), "");
	return tz;
}

/* A zone with no transitions at all, only a footer. */
static sk_tz *footer_zone(const char *footer)
{
	static const int32_t offs[] = { 0 };
	struct tzif_spec s = { .version = '3', .ntypes = 1, .offs = offs, .footer = footer };
	unsigned char buf[4096];

	return parse_ok(buf, make_tzif(buf, &s));
}

static void test_footer_rules(void **state)
{
	sk_tz *tz;

	/* Mm.w.d, default 02:00; the rule covers all time when there are no transitions. */
	tz = footer_zone("EST5EDT,M3.2.0,M11.1.0");
	CHECK_OFFSETS(tz, { "2026-03-08T06:59:59Z", -18000 }, { "2026-03-08T07:00:00Z", -14400 },
		      { "2026-11-01T05:59:59Z", -14400 }, { "2026-11-01T06:00:00Z", -18000 },
		      { "1970-06-01T00:00:00Z", -14400 }, { "2200-01-01T00:00:00Z", -18000 });
	assert_true(sk_tz_next_change(tz, iso("2026-11-01T06:00:00Z")) == iso("2027-03-14T07:00:00Z"));
	/* Far outside any year of interest: no overflow, an answer. */
	assert_int_equal(sk_tz_offset(tz, INT64_MAX), sk_tz_offset(tz, INT64_MAX));
	assert_int_equal(sk_tz_offset(tz, INT64_MIN), sk_tz_offset(tz, INT64_MIN));
	assert_true(sk_tz_next_change(tz, INT64_MAX - 1) == INT64_MAX);
	assert_true(sk_tz_next_change(tz, INT64_MIN) > INT64_MIN);
	sk_tz_free(tz);

	/* Jn: Feb 29 never counted, J60 is March 1 in any year; J300 is Oct 27. */
	tz = footer_zone("XXX3YYY,J60/2,J300/2");
	CHECK_OFFSETS(tz, { "2028-03-01T04:59:59Z", -10800 }, { "2028-03-01T05:00:00Z", -7200 },
		      { "2028-10-27T03:59:59Z", -7200 }, { "2028-10-27T04:00:00Z", -10800 },
		      { "2027-03-01T05:00:00Z", -7200 });
	sk_tz_free(tz);

	/* n: zero-based, Feb 29 counted: day 59 is Feb 29 in 2028, March 1 in 2027. */
	tz = footer_zone("XXX3YYY,59,299");
	CHECK_OFFSETS(tz, { "2028-02-29T04:59:59Z", -10800 }, { "2028-02-29T05:00:00Z", -7200 },
		      { "2027-02-28T12:00:00Z", -10800 }, { "2027-03-01T05:00:00Z", -7200 },
		      { "2028-10-26T03:59:59Z", -7200 }, { "2028-10-26T04:00:00Z", -10800 });
	sk_tz_free(tz);

	/* RFC 8536 extensions: negative times (America/Nuuk)... */
	tz = footer_zone("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
	CHECK_OFFSETS(tz, { "2026-03-29T00:59:59Z", -7200 }, { "2026-03-29T01:00:00Z", -3600 },
		      { "2026-10-25T00:59:59Z", -3600 }, { "2026-10-25T01:00:00Z", -7200 });
	sk_tz_free(tz);
	/* ...times past 24:00 (Asia/Jerusalem: Thursday 26:00 is Friday 02:00)... */
	tz = footer_zone("IST-2IDT,M3.4.4/26,M10.5.0");
	CHECK_OFFSETS(tz, { "2026-03-26T23:59:59Z", 7200 }, { "2026-03-27T00:00:00Z", 10800 },
		      { "2026-10-24T22:59:59Z", 10800 }, { "2026-10-24T23:00:00Z", 7200 });
	sk_tz_free(tz);
	/* ...and the extremes, +-167 hours. */
	tz = footer_zone("XXX3YYY,M3.1.0/167,M11.1.0/-167");
	CHECK_OFFSETS(tz, { "2026-03-08T01:59:59Z", -10800 }, { "2026-03-08T02:00:00Z", -7200 },
		      { "2026-10-25T02:59:59Z", -7200 }, { "2026-10-25T03:00:00Z", -10800 });
	sk_tz_free(tz);

	/* DST all year (RFC 8536 3.3.1's example): never changes. */
	tz = footer_zone("EST5EDT,0/0,J365/25");
	CHECK_OFFSETS(tz, { "2026-01-01T00:00:00Z", -14400 }, { "2026-01-01T05:00:00Z", -14400 },
		      { "2026-07-01T00:00:00Z", -14400 }, { "2026-12-31T23:59:59Z", -14400 },
		      { "2028-02-29T12:00:00Z", -14400 });
	assert_true(sk_tz_next_change(tz, iso("2026-01-01T00:00:00Z")) == INT64_MAX);
	sk_tz_free(tz);

	/* Southern hemisphere, half an hour, quoted names (Lord Howe). */
	tz = footer_zone("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 39600 }, { "2026-07-15T12:00:00Z", 37800 },
		      { "2026-04-04T14:59:59Z", 39600 }, { "2026-04-04T15:00:00Z", 37800 },
		      { "2026-10-03T15:29:59Z", 37800 }, { "2026-10-03T15:30:00Z", 39600 },
		      { "2026-12-31T13:00:00Z", 39600 }, { "2026-12-31T13:30:00Z", 39600 });
	sk_tz_free(tz);

	/* "Negative DST" (Europe/Dublin): the second offset is the winter one. */
	tz = footer_zone("IST-1GMT0,M10.5.0,M3.5.0/1");
	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 0 }, { "2026-07-15T12:00:00Z", 3600 },
		      { "2026-03-29T00:59:59Z", 0 }, { "2026-03-29T01:00:00Z", 3600 },
		      { "2026-10-25T00:59:59Z", 3600 }, { "2026-10-25T01:00:00Z", 0 });
	sk_tz_free(tz);

	/* No DST: a constant, with seconds. */
	tz = footer_zone("<+0530>-5:30:15");
	CHECK_OFFSETS(tz, { "2026-01-15T12:00:00Z", 19815 });
	sk_tz_free(tz);
}

static void test_tables(void **state)
{
	static const int64_t t1[] = { 1000000000, 1100000000 };
	static const uint8_t i1[] = { 1, 0 };
	static const int32_t o1[] = { 0, 3600 };
	unsigned char buf[4096];
	sk_tz *tz;

	/* Version 1: 32-bit times, no footer; the last type rules forever. */
	struct tzif_spec v1 = { 0, 2, t1, i1, 2, o1, 2, NULL };
	tz = parse_ok(buf, make_tzif(buf, &v1));
	assert_int_equal(sk_tz_offset(tz, 0), 0);
	assert_int_equal(sk_tz_offset(tz, 999999999), 0);
	assert_int_equal(sk_tz_offset(tz, 1000000000), 3600);
	assert_int_equal(sk_tz_offset(tz, 1099999999), 3600);
	assert_int_equal(sk_tz_offset(tz, 1100000000), 0);
	assert_int_equal(sk_tz_offset(tz, 4000000000), 0);
	assert_true(sk_tz_next_change(tz, 0) == 1000000000);
	assert_true(sk_tz_next_change(tz, 1000000000) == 1100000000);
	assert_true(sk_tz_next_change(tz, 1100000000) == INT64_MAX);
	sk_tz_free(tz);

	/* Version 2 with leap records and 64-bit times beyond 2038; then a footer
	 * that disagrees with the last transition takes over one second after it. */
	static const int64_t t2[] = { -5000000000, 5000000000 };
	static const uint8_t i2[] = { 1, 0 };
	static const int32_t o2[] = { 0, -3600 };
	struct tzif_spec v2 = { '2', 2, t2, i2, 2, o2, 3, "AAA-5" };
	tz = parse_ok(buf, make_tzif(buf, &v2));
	assert_int_equal(sk_tz_offset(tz, -5000000001), 0);
	assert_int_equal(sk_tz_offset(tz, -5000000000), -3600);
	assert_int_equal(sk_tz_offset(tz, 4999999999), -3600);
	assert_int_equal(sk_tz_offset(tz, 5000000000), 0);
	assert_int_equal(sk_tz_offset(tz, 5000000001), 18000);
	assert_true(sk_tz_next_change(tz, 0) == 5000000000);
	assert_true(sk_tz_next_change(tz, 5000000000) == 5000000001);
	assert_true(sk_tz_next_change(tz, 5000000001) == INT64_MAX);
	sk_tz_free(tz);

	/* An empty footer: the last type rules forever. */
	v2.footer = "";
	tz = parse_ok(buf, make_tzif(buf, &v2));
	assert_int_equal(sk_tz_offset(tz, 6000000000), 0);
	sk_tz_free(tz);

	/* Transitions that change only the DST flag or name are not changes. */
	static const int64_t t3[] = { 100, 200, 300 };
	static const uint8_t i3[] = { 1, 2, 0 };
	static const int32_t o3[] = { 0, 3600, 3600 };
	struct tzif_spec v3 = { '2', 3, t3, i3, 3, o3, 0, "" };
	tz = parse_ok(buf, make_tzif(buf, &v3));
	assert_true(sk_tz_next_change(tz, 0) == 100);
	assert_true(sk_tz_next_change(tz, 100) == 300);
	sk_tz_free(tz);
}

/* ---- malformed TZif ------------------------------------------------------------- */

static void bad_tzif(const unsigned char *data, size_t len, const char *says)
{
	/* An exact-size copy, so that ASan sees any read past the end. */
	unsigned char *copy = malloc(len ? len : 1);
	char err[256] = "";
	sk_tz *tz = (sk_tz *)1;

	memcpy(copy, data, len);
	assert_int_equal(sk_tz_parse(copy, len, &tz, err, sizeof(err)), -1);
	assert_null(tz);
	if (!strstr(err, says))
		fail_msg("message '%s' lacks '%s'", err, says);
	free(copy);
}

static void test_malformed(void **state)
{
	static const int64_t t[] = { 100, 200 };
	static const uint8_t idx[] = { 1, 0 };
	static const int32_t offs[] = { 0, 3600 };
	struct tzif_spec s = { '2', 2, t, idx, 2, offs, 0, "CET-1" };
	unsigned char good[4096], b[4096];
	size_t len = make_tzif(good, &s), v1len = 44 + 2 * 5 + 2 * 6 + 4 + 2 * 2;
	sk_tz *tz;

	tz = parse_ok(good, len);
	sk_tz_free(tz);

	bad_tzif(good, 0, "truncated TZif header");
	bad_tzif(good, 10, "truncated TZif header");
	bad_tzif(good, 43, "truncated TZif header");
	assert_int_equal(sk_tz_parse(NULL, 0, &tz, NULL, 0), -1);
	memcpy(b, good, len);
	b[2] = 'x';
	bad_tzif(b, len, "bad magic");
	memcpy(b, good, len);
	b[4] = '1';
	bad_tzif(b, len, "unknown TZif version");
	/* Counts past the end, in the first header and in the second. */
	memcpy(b, good, len);
	put32(b + 32, 0xffffffff);
	bad_tzif(b, len, "counts past the end");
	memcpy(b, good, len);
	put32(b + 40, 0x7fffffff);
	bad_tzif(b, len, "counts past the end");
	memcpy(b, good, len);
	put32(b + v1len + 32, 1000);
	bad_tzif(b, len, "counts past the end");
	memcpy(b, good, len);
	put32(b + v1len + 28, 0xffffffff);
	bad_tzif(b, len, "counts past the end");
	bad_tzif(good, v1len, "truncated TZif header");
	memcpy(b, good, len);
	b[v1len + 4] = 0;
	bad_tzif(b, len, "second header has version 0");
	/* Contents: type index, order, offset range, flags, designation index, counts. */
	size_t body = v1len + 44;
	memcpy(b, good, len);
	b[body + 16] = 2;
	bad_tzif(b, len, "transition type 2 out of range");
	memcpy(b, good, len);
	memcpy(b + body + 8, b + body, 8);
	bad_tzif(b, len, "out of order");
	memcpy(b, good, len);
	put32(b + body + 18, 0x80000000);
	bad_tzif(b, len, "offset");
	memcpy(b, good, len);
	put32(b + body + 18, 93600);
	bad_tzif(b, len, "offset 93600 out of range");
	memcpy(b, good, len);
	b[body + 18 + 4] = 2;
	bad_tzif(b, len, "bad TZif time type 0");
	memcpy(b, good, len);
	b[body + 18 + 5] = 4;
	bad_tzif(b, len, "bad TZif time type 0");
	memcpy(b, good, len);
	put32(b + v1len + 20, 1);
	bad_tzif(b, len, "indicator counts");
	/* typecnt 0 in the 64-bit header: lengths shrink accordingly, then refused. */
	struct tzif_spec none = { '2', 0, NULL, NULL, 0, NULL, 0, "" };
	size_t nlen = make_tzif(b, &none);
	bad_tzif(b, nlen, "without time types");
	/* The footer: missing, unterminated, unreadable. */
	bad_tzif(good, len - 7, "footer missing");
	bad_tzif(good, len - 1, "not terminated");
	memcpy(b, good, len);
	b[len - 7] = 'x';
	bad_tzif(b, len, "footer missing");
	static const char *const footers[] = {
		"EST5EDT",                       /* DST without a rule */
		"A5",                            /* name too short */
		"EST",                           /* no offset */
		"EST25",                         /* offset past 24 hours */
		"<AB>5",                         /* quoted name too short */
		"<EST5",                         /* unterminated quote */
		"<E$T>5",                        /* bad character in a quoted name */
		"EST5EDT,M13.1.0,M11.1.0",       /* month 13 */
		"EST5EDT,M3.6.0,M11.1.0",        /* week 6 */
		"EST5EDT,M3.2.7,M11.1.0",        /* day 7 */
		"EST5EDT,M3.2.0",                /* no end */
		"EST5EDT,J0,J365",               /* J0 */
		"EST5EDT,366,0",                 /* day 366 */
		"EST5EDT,M3.2.0/168,M11.1.0",    /* 168 hours */
		"EST5EDT,M3.2.0/2:60,M11.1.0",   /* 60 minutes */
		"EST5EDT,M3.2.0,M11.1.0junk",    /* trailing junk */
		"EST5EDT4:00:00:00,M3.2.0,M11.1.0",
		"EST5\001EDT,M3.2.0,M11.1.0",
	};
	for (size_t i = 0; i < sizeof(footers) / sizeof(footers[0]); i++) {
		s.footer = footers[i];
		nlen = make_tzif(b, &s);
		bad_tzif(b, nlen, "bad TZ string");
	}
}

/* Every proper prefix of a real file is refused, and nothing is read past it. */
static void test_truncations(void **state)
{
	FILE *f = fopen("/usr/share/zoneinfo/Europe/Paris", "rb");
	unsigned char data[16384];
	size_t len;
	sk_tz *tz;

	if (!f)
		skip();
	len = fread(data, 1, sizeof(data), f);
	fclose(f);
	assert_true(len > 44 && len < sizeof(data));
	tz = parse_ok(data, len);
	assert_int_equal(sk_tz_offset(tz, iso("2026-07-15T12:00:00Z")), 7200);
	sk_tz_free(tz);
	for (size_t n = 0; n < len; n++) {
		unsigned char *copy = malloc(n ? n : 1);

		memcpy(copy, data, n);
		assert_int_equal(sk_tz_parse(copy, n, &tz, NULL, 0), -1);
		free(copy);
	}
}

/* ---- $TZDIR ------------------------------------------------------------------------ */

static void test_tzdir(void **state)
{
	static const int32_t offs[] = { 0 };
	struct tzif_spec s = { '2', 0, NULL, NULL, 1, offs, 0, "CET-1CEST,M3.5.0,M10.5.0/3" };
	char dir[] = "/tmp/test_tz.XXXXXX", path[256], err[512];
	unsigned char buf[4096];
	size_t len = make_tzif(buf, &s);
	sk_tz *tz;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/My", dir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/My/Zone", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
	snprintf(path, sizeof(path), "%s/My/Bad", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	fputs("# not a zone\n", f);
	fclose(f);
	setenv("TZDIR", dir, 1);

	assert_int_equal(sk_tz_load("My/Zone", &tz, err, sizeof(err)), 0);
	assert_string_equal(sk_tz_name(tz), "My/Zone");
	assert_int_equal(sk_tz_offset(tz, iso("2026-07-15T12:00:00Z")), 7200);
	sk_tz_free(tz);
	assert_int_equal(sk_tz_load("My/Bad", &tz, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "time zone 'My/Bad': "));
	assert_non_null(strstr(err, "not a TZif file (bad magic)"));
	assert_int_equal(sk_tz_load("My/Zone/x", &tz, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown time zone 'My/Zone/x' (no such file in /tmp/test_tz."));
	/* Etc/UTC needs no file. */
	assert_int_equal(sk_tz_load("Etc/UTC", &tz, err, sizeof(err)), 0);
	assert_string_equal(sk_tz_name(tz), "Etc/UTC");
	assert_int_equal(sk_tz_offset(tz, 1800000000), 0);
	sk_tz_free(tz);

	unsetenv("TZDIR");
	snprintf(path, sizeof(path), "%s/My/Zone", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/My/Bad", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/My", dir);
	rmdir(path);
	rmdir(dir);
}

/* ---- the calendar ------------------------------------------------------------------ */

static void test_calendar(void **state)
{
	int64_t y;
	unsigned m, d;

	assert_true(sk_days_from_civil(1970, 1, 1) == 0);
	assert_true(sk_days_from_civil(2000, 3, 1) == 11017);
	assert_true(sk_days_from_civil(1969, 12, 31) == -1);
	assert_true(sk_days_from_civil(2100, 3, 1) - sk_days_from_civil(2100, 2, 28) == 1);
	assert_int_equal(sk_weekday(0), 4);  /* Thursday */
	assert_int_equal(sk_weekday(-1), 3); /* Wednesday */
	assert_int_equal(sk_weekday(-7), 4);
	assert_int_equal(sk_weekday(-8), 3);
	assert_int_equal(sk_days_in_month(2028, 2), 29);
	assert_int_equal(sk_days_in_month(2100, 2), 28);
	assert_int_equal(sk_days_in_month(2000, 2), 29);
	/* Round trips over 1 to 9999, checked against timegm. */
	for (int64_t days = -719162; days < 2932897; days += 997) {
		struct tm tm = { 0 };

		sk_civil_from_days(days, &y, &m, &d);
		tm.tm_year = (int)y - 1900;
		tm.tm_mon = (int)m - 1;
		tm.tm_mday = (int)d;
		assert_true((int64_t)timegm(&tm) == days * 86400);
		assert_true(sk_days_from_civil(y, m, d) == days);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paris),
		cmocka_unit_test(test_new_york),
		cmocka_unit_test(test_kolkata),
		cmocka_unit_test(test_lord_howe),
		cmocka_unit_test(test_utc),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_footer_rules),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_tzdir),
		cmocka_unit_test(test_calendar),
	};

	return cmocka_run_group_tests_name("tz", tests, NULL, NULL);
}
