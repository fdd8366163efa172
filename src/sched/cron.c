/*
 * Cron schedules: what an expression means and when it next fires.
 *
 * Syntax.  Five fields separated by spaces or tabs: minute (0-59), hour
 * (0-23), day of month (1-31), month (1-12 or JAN-DEC) and day of week (0-7
 * or SUN-SAT; 0 and 7 are both Sunday).  Names are any case.  Each field is
 * a comma-separated list of items, each one of
 *     *       every value of the field
 *     n       that value
 *     a-b     a through b, a <= b (names too: MON-FRI, JAN-MAR)
 * optionally followed by a step "/s" (1 <= s <= the number of values in the
 * field): every s-th value of the item, from its start.  A step may also
 * follow a single value, "a/s", meaning a through the field's last value.
 * For the day of week "*" (with or without a step) and "a/s" stop at
 * Saturday, so "*" with step 2 is SUN,TUE,THU,SAT.  Instead of five fields:
 * @yearly and @annually (0 0 1 1 *), @monthly (0 0 1 * *), @weekly
 * (0 0 * * 0), @daily and @midnight (0 0 * * *), @hourly (0 * * * *).
 * @reboot is refused.  Expressions are at most 256 bytes.
 *
 * Day of month and day of week (Vixie cron's rule).  When both fields are
 * restricted -- neither begins with '*' -- a day matches if either field
 * matches: "0 0 1,15 * MON" fires on the 1st, on the 15th and on every
 * Monday.  When one of them begins with '*' a day must match both, so a plain
 * '*' leaves the other field alone to decide ("0 0 * * MON": Mondays; "0 0
 * 13 * *": the 13th), and a stepped '*' narrows it (day of month '*' step 2
 * with MON: Mondays that fall on an odd date).
 *
 * Time zones.  The fields match the wall clock of the schedule's zone (UTC
 * when none is given), and fire times are whole minutes of that clock.  A
 * "fixed-hour" schedule is one whose hour field does not begin with '*'.
 *   - Spring forward (a gap: 02:00-02:59 does not exist in Europe/Paris on
 *     2026-03-29).  A fixed-hour schedule due in the gap fires once, at the
 *     first instant after it (03:00 local), however many of its times fell
 *     in the gap.  Other schedules skip the times that do not exist: an
 *     every-15-minutes job fires at 01:45 and then at 03:00.
 *   - Fall back (a repeat: 02:00-02:59 happens twice in Europe/Paris on
 *     2026-10-25).  A fixed-hour schedule fires once, in the first
 *     occurrence only.  Other schedules fire in both: an every-15-minutes job
 *     keeps firing every 15 minutes of real time through the repeated hour.
 * The same holds for any offset change, whatever its size (Lord Howe
 * Island's half-hour DST, a zone skipping a whole day).
 *
 * Horizon.  sk_cron_next looks 8 years ahead, enough for any date that
 * exists at all (February 29 across 2100); an expression that never
 * matches a real date ("0 0 30 2 *") gives -1.
 *
 * How the search goes: the time line is cut into spans of constant UTC
 * offset (sk_tz_next_change); within a span local time is UTC plus a
 * constant, so the first matching local minute is found by skipping whole
 * months, days and hours that cannot match, never minute by minute.  The
 * rules above then decide only what happens at each span's start.
 */
#include "sched/cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define HORIZON ((int64_t)8 * 366 * 86400)
#define AFTER_MIN INT64_C(-62135596800) /* 0001-01-01T00:00:00Z */
#define AFTER_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
/* How far before `after` the search starts, to see an offset change just before it. */
#define LOOKBACK ((int64_t)2 * 86400)


/* ---- parsing ------------------------------------------------------------- */

static const char *const month_names[] = { "JAN", "FEB", "MAR", "APR", "MAY", "JUN",
					   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC" };
static const char *const dow_names[] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

struct field_def {
	const char *name;
	int min, max;
	int star_max; /* where '*' and "a/s" stop */
	const char *const *names; /* for min, min + 1, ... */
	int n_names;
};

static const struct field_def field_defs[5] = {
	{ "minute", 0, 59, 59, NULL, 0 },
	{ "hour", 0, 23, 23, NULL, 0 },
	{ "day-of-month", 1, 31, 31, NULL, 0 },
	{ "month", 1, 12, 12, month_names, 12 },
	{ "day-of-week", 0, 7, 6, dow_names, 7 },
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static char upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Text for messages: printable ASCII only, so that they are safe in JSON and logs. */
static void shown(const char *s, size_t len, char *out, size_t n)
{
	size_t i = 0;

	for (; i < len && i + 1 < n; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	out[i] = 0;
}

/* The parse of one field: its text for messages, and where the error goes. */
struct fparse {
	const struct field_def *def;
	const char *p, *end;
	char text[SK_CRON_MAX_LEN + 1];
	char *err;
	size_t errlen;
};

static int field_fail(struct fparse *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int field_fail(struct fparse *f, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return sk_sched_errf(f->err, f->errlen, "cron: %s field '%s': %s", f->def->name, f->text, what);
}

/* A number or, where the field has them, a name. */
static int parse_value(struct fparse *f, int *out)
{
	const struct field_def *d = f->def;
	const char *start = f->p;
	char word[8];
	int v = 0;

	if (f->p < f->end && is_alpha(*f->p)) {
		while (f->p < f->end && is_alpha(*f->p))
			f->p++;
		shown(start, (size_t)(f->p - start), word, sizeof(word));
		for (int i = 0; i < d->n_names && f->p - start == 3; i++)
			if (upper(start[0]) == d->names[i][0] && upper(start[1]) == d->names[i][1] &&
			    upper(start[2]) == d->names[i][2]) {
				*out = d->min + i;
				return 0;
			}
		if (!d->n_names)
			return field_fail(f, "'%s%s' is not a number", word,
					  f->p - start >= (ptrdiff_t)sizeof(word) ? "..." : "");
		return field_fail(f, "unknown name '%s%s'", word,
				  f->p - start >= (ptrdiff_t)sizeof(word) ? "..." : "");
	}
	if (f->p >= f->end || !is_digit(*f->p)) {
		if (f->p >= f->end)
			return field_fail(f, "a value is missing");
		return field_fail(f, "unexpected character '%c'",
				  *f->p >= 0x20 && *f->p < 0x7f ? *f->p : '?');
	}
	while (f->p < f->end && is_digit(*f->p)) {
		if (v < 100000)
			v = v * 10 + (*f->p - '0');
		f->p++;
	}
	if (v < d->min || v > d->max)
		return field_fail(f, "value out of range %d-%d", d->min, d->max);
	*out = v;
	return 0;
}

/* One list item, "*", "a" or "a-b", each with an optional "/step", into *bits. */
static int parse_item(struct fparse *f, uint64_t *bits)
{
	const struct field_def *d = f->def;
	int lo, hi, step = 1;
	bool single = false;

	if (f->p < f->end && *f->p == '*') {
		f->p++;
		lo = d->min;
		hi = d->star_max;
	} else {
		if (parse_value(f, &lo) < 0)
			return -1;
		hi = lo;
		single = true;
		if (f->p < f->end && *f->p == '-') {
			f->p++;
			if (parse_value(f, &hi) < 0)
				return -1;
			single = false;
			if (hi < lo)
				return field_fail(f, "range %d-%d is reversed", lo, hi);
		}
	}
	if (f->p < f->end && *f->p == '/') {
		int span = d->star_max - d->min + 1;

		f->p++;
		if (f->p >= f->end || !is_digit(*f->p))
			return field_fail(f, "step must be a number");
		step = 0;
		while (f->p < f->end && is_digit(*f->p)) {
			if (step < 100000)
				step = step * 10 + (*f->p - '0');
			f->p++;
		}
		if (step < 1 || step > span)
			return field_fail(f, "step %d out of range 1-%d", step, span);
		if (single && hi < d->star_max)
			hi = d->star_max;
	}
	if (f->p < f->end && *f->p != ',')
		return field_fail(f, "unexpected character '%c'",
				  *f->p >= 0x20 && *f->p < 0x7f ? *f->p : '?');
	for (int v = lo; v <= hi; v += step)
		*bits |= (uint64_t)1 << v;
	return 0;
}

static int parse_field(const struct field_def *d, const char *s, size_t len, uint64_t *bits,
		       bool *star, char *err, size_t errlen)
{
	struct fparse f = { .def = d, .p = s, .end = s + len, .err = err, .errlen = errlen };

	shown(s, len, f.text, sizeof(f.text));
	*bits = 0;
	*star = len > 0 && s[0] == '*';
	for (;;) {
		if (f.p == f.end || *f.p == ',')
			return field_fail(&f, "empty list item");
		if (parse_item(&f, bits) < 0)
			return -1;
		if (f.p == f.end)
			return 0;
		f.p++; /* the ',' */
	}
}

static const struct {
	const char *name;
	const char *expr;
} aliases[] = {
	{ "@yearly", "0 0 1 1 *" },   { "@annually", "0 0 1 1 *" }, { "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" },   { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

static int parse_alias(const char *s, size_t len, sk_cron *out, char *err, size_t errlen)
{
	char text[SK_CRON_MAX_LEN + 1], rest[SK_CRON_MAX_LEN + 1];
	const char *expr = NULL;
	size_t n = 0, r;

	while (n < len && !is_blank(s[n]))
		n++;
	shown(s, n, text, sizeof(text));
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (!strcasecmp(text, aliases[i].name))
			expr = aliases[i].expr;
	if (!strcasecmp(text, "@reboot"))
		return sk_sched_errf(err, errlen, "cron: @reboot is not supported");
	if (!expr)
		return sk_sched_errf(err, errlen,
				 "cron: unknown alias '%s' (known: @yearly @annually @monthly @weekly "
				 "@daily @midnight @hourly)",
				 text);
	if (n < len) {
		for (r = n; r < len && is_blank(s[r]); r++)
			;
		shown(s + r, len - r, rest, sizeof(rest));
		return sk_sched_errf(err, errlen, "cron: unexpected '%s' after %s", rest, text);
	}
	return sk_cron_parse(expr, out, err, errlen);
}

int sk_cron_parse(const char *expr, sk_cron *out, char *err, size_t errlen)
{
	const char *start[5], *s, *e;
	size_t len[5], n = 0;
	uint64_t bits[5];
	bool star[5];
	char text[SK_CRON_MAX_LEN + 1];

	memset(out, 0, sizeof(*out));
	if (!expr)
		return sk_sched_errf(err, errlen, "cron: no expression");
	if (strnlen(expr, SK_CRON_MAX_LEN + 1) > SK_CRON_MAX_LEN)
		return sk_sched_errf(err, errlen, "cron: expression longer than %d bytes",
				 SK_CRON_MAX_LEN);
	s = expr;
	e = expr + strlen(expr);
	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	if (s == e)
		return sk_sched_errf(err, errlen, "cron: empty expression");
	if (*s == '@')
		return parse_alias(s, (size_t)(e - s), out, err, errlen);
	for (const char *p = s; p < e; n++) {
		const char *f = p;

		while (p < e && !is_blank(*p))
			p++;
		if (n < 5) {
			start[n] = f;
			len[n] = (size_t)(p - f);
		}
		while (p < e && is_blank(*p))
			p++;
	}
	if (n != 5) {
		shown(s, (size_t)(e - s), text, sizeof(text));
		return sk_sched_errf(err, errlen, "cron: expected 5 fields, got %zu in '%s'", n, text);
	}
	for (int i = 0; i < 5; i++)
		if (parse_field(&field_defs[i], start[i], len[i], &bits[i], &star[i], err, errlen) < 0)
			return -1;
	out->minute = bits[0];
	out->hour = (uint32_t)bits[1];
	out->dom = (uint32_t)bits[2];
	out->month = (uint16_t)bits[3];
	out->dow = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 is Sunday too */
	out->hour_star = star[1];
	out->dom_star = star[2];
	out->dow_star = star[4];
	return 0;
}

/* ---- the next fire time -------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The lowest set bit of bits at or above from, or -1. */
static int next_bit(uint64_t bits, int from)
{
	if (from >= 64)
		return -1;
	bits &= ~(uint64_t)0 << from;
	return bits ? __builtin_ctzll(bits) : -1;
}

static bool day_matches(const sk_cron *c, int64_t days, unsigned mday)
{
	bool dom = c->dom >> mday & 1, dow = c->dow >> sk_weekday(days) & 1;

	return c->dom_star || c->dow_star ? dom && dow : dom || dow;
}

/*
 * The first whole minute m of local time, lo <= m < hi, that c matches.
 * Each step lands on the next month, day, hour or minute that may match,
 * so a search over years takes a few thousand steps at most.
 */
static bool first_match(const sk_cron *c, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t t = -floor_div(-lo, 60) * 60;

	while (t < hi) {
		int64_t days = floor_div(t, 86400), y;
		int sod = (int)(t - days * 86400), h = sod / 3600, m = sod % 3600 / 60, nh, nm;
		unsigned mon, mday;

		sk_civil_from_days(days, &y, &mon, &mday);
		if (!(c->month >> mon & 1)) {
			int next = next_bit(c->month, (int)mon + 1);

			if (next < 0) {
				y++;
				next = next_bit(c->month, 1);
			}
			t = sk_days_from_civil(y, (unsigned)next, 1) * 86400;
			continue;
		}
		if (!day_matches(c, days, mday)) {
			t = (days + 1) * 86400;
			continue;
		}
		nh = next_bit(c->hour, h);
		if (nh < 0) {
			t = (days + 1) * 86400;
			continue;
		}
		if (nh != h) {
			t = days * 86400 + nh * 3600;
			continue;
		}
		nm = next_bit(c->minute, m);
		if (nm < 0) {
			t = days * 86400 + (h + 1) * 3600;
			continue;
		}
		t = days * 86400 + h * 3600 + nm * 60;
		if (t >= hi)
			return false;
		*out = t;
		return true;
	}
	return false;
}

int64_t sk_cron_next(const sk_cron *cron, const sk_tz *tz, int64_t after)
{
	sk_cron c = *cron;
	int64_t limit, a, local;
	int32_t prev_off = 0;
	bool fixed_hour = !c.hour_star, at_change = false;

	/* Only the bits that name values: the struct may come from elsewhere than the parser. */
	c.minute &= ((uint64_t)1 << 60) - 1;
	c.hour &= (1u << 24) - 1;
	c.dom &= 0xfffffffeu;
	c.month &= 0x1ffe;
	c.dow &= 0x7f;
	if (!c.minute || !c.hour || !c.dom || !c.month || !c.dow)
		return -1;
	if (after < AFTER_MIN || after > AFTER_MAX)
		return -1;
	limit = after + HORIZON;
	/*
	 * Span by span of constant offset [a, b).  The first span starts a little
	 * before `after` and is not treated as following a change; each later one
	 * starts at an offset change, where the daylight-saving rules apply.
	 */
	for (a = after - LOOKBACK; a <= limit;) {
		int32_t off = sk_tz_offset(tz, a);
		int64_t b = sk_tz_next_change(tz, a), lo, hi;

		if (at_change && fixed_hour && off > prev_off &&
		    first_match(&c, a + prev_off, a + off, &local)) {
			/* Due in the gap: the first whole minute after it. */
			local = -floor_div(-(a + off), 60) * 60;
			if (local - off > after && local - off < b && local - off <= limit)
				return local - off;
		}
		lo = (a > after ? a : after + 1) + off;
		if (at_change && fixed_hour && off < prev_off && lo < a + prev_off)
			lo = a + prev_off; /* the repeat: fired in the first occurrence */
		hi = (b > limit ? limit + 1 : b) + off;
		if (first_match(&c, lo, hi, &local))
			return local - off;
		if (b > limit)
			break;
		prev_off = off;
		a = b;
		at_change = true;
	}
	return -1;
}
