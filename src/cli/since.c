#include "cli/since.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
	char unit;
	double seconds;
} units[] = { { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 7 * 86400 } };

/* "30m", "1.5h": 1 with *out set, 0 when text is not an age. */
static int parse_age(const char *text, double now, double *out)
{
	char *end;
	double v;

	if (!isdigit((unsigned char)text[0]) && text[0] != '.')
		return 0;
	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || !end[0] || end[1] || !isfinite(v))
		return 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (*end == units[i].unit) {
			*out = now - v * units[i].seconds;
			return 1;
		}
	return 0;
}

/* Exactly n digits at *p, as a number; advances *p. */
static int digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/* YYYY-MM-DD[(T| )HH:MM[:SS]][Z]: 1 with *out set, 0 when not a date, -1 when a bad one. */
static int parse_date(const char *text, double *out)
{
	const char *p = text;
	struct tm tm = { 0 };
	bool utc = false;
	time_t t;
	int y, mo, d, h = 0, mi = 0, s = 0;

	if (digits(&p, 4, &y) < 0 || *p != '-')
		return 0;
	p++;
	if (digits(&p, 2, &mo) < 0 || *p++ != '-' || digits(&p, 2, &d) < 0)
		return -1;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (digits(&p, 2, &h) < 0 || *p++ != ':' || digits(&p, 2, &mi) < 0)
			return -1;
		if (*p == ':' && (p++, digits(&p, 2, &s) < 0))
			return -1;
	}
	if (*p == 'Z') {
		utc = true;
		p++;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	tm.tm_isdst = -1;
	t = utc ? timegm(&tm) : mktime(&tm);
	/* mktime normalises Feb 30 into March: a date that moved was not a date. */
	if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return -1;
	*out = (double)t;
	return 1;
}

int since_parse(const char *text, double now, double *out, sk_error *err)
{
	char *end;
	double v;
	int rc;

	if (!text || !*text)
		return sk_error_set(err, SK_ERR_INVALID, "--since needs a time");
	if ((rc = parse_date(text, out)) != 0) {
		if (rc > 0)
			return 0;
		return sk_error_set(err, SK_ERR_INVALID,
				    "'%s' is not a valid date: use YYYY-MM-DD, optionally with "
				    "THH:MM[:SS] (local time; Z for UTC)", text);
	}
	if (parse_age(text, now, out))
		return 0;
	errno = 0;
	v = strtod(text, &end);
	if (!errno && end != text && !*end && isfinite(v) && v >= 0 && isdigit((unsigned char)*text)) {
		*out = v;
		return 0;
	}
	return sk_error_set(err, SK_ERR_INVALID,
			    "cannot read '%s' as a time: give unix seconds (1764300000), a date "
			    "(2026-11-28 or 2026-11-28T10:00) or an age (30m, 2h, 7d)", text);
}
