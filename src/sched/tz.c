/*
 * TZif reading (RFC 8536) and the POSIX TZ rules of its footer.
 *
 * A zone keeps, per transition, only the instant and the offset that starts
 * there: the cron engine asks nothing but "what is the wall clock at t" and
 * "when does that next change".  Instants after the last transition follow
 * the footer's rule, computed year by year on demand, so that a slim file
 * (transitions only up to the last rule change) and a fat one (up to 2037)
 * give the same answers, and 2090 works in both.
 *
 * Everything from the file is checked before use: counts against the bytes
 * there are, type indices against the types, transitions for order, offsets
 * for range (RFC 8536's -89999..93599), so that the arithmetic below can
 * neither overflow nor index out of bounds.
 */
#include "sched/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/xalloc.h"

#define TZ_NAME_MAX 255
#define TZIF_MAX_SIZE (1 << 20)
/* Rules are evaluated for instants within +-2^50 s (35 million years) only. */
#define RULE_T_MAX ((int64_t)1 << 50)
#define OFF_MIN (-89999)
#define OFF_MAX 93599

enum rdate_kind { RDATE_JULIAN, RDATE_ZERO, RDATE_MONTH };

/* One end of a DST period: "Jn", "n" or "Mm.w.d", and a time of day. */
struct rdate {
	enum rdate_kind kind;
	int n;       /* Jn: 1-365; n: 0-365 */
	int m, w, d; /* Mm.w.d */
	int32_t secs; /* local time of day, -167h..167h */
};

/* A POSIX TZ string, offsets east of UTC (the string's are west). */
struct posix_tz {
	int32_t std_off, dst_off;
	bool has_dst;
	struct rdate start, end; /* into DST (std time), out of it (DST time) */
};

struct sk_tz {
	char *name;
	size_t n_trans;
	int64_t *trans;     /* strictly ascending UTC instants */
	int32_t *trans_off; /* offset from trans[i] on */
	int32_t first_off;  /* before trans[0]: time type 0 */
	bool has_footer;    /* a non-empty TZ string: it rules after the last transition */
	struct posix_tz rule;
};

int sk_sched_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* ---- calendar ------------------------------------------------------------ */

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t sk_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

void sk_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	days += 719468;
	int64_t era = (days >= 0 ? days : days - 146096) / 146097;
	unsigned doe = (unsigned)(days - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

unsigned sk_weekday(int64_t days)
{
	/* 1970-01-01 was a Thursday. */
	return (unsigned)(((days + 4) % 7 + 7) % 7);
}

static bool is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

unsigned sk_days_in_month(int64_t y, unsigned m)
{
	static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[(m - 1) % 12];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* ---- POSIX TZ rules --------------------------------------------------------- */

/* The UTC instant of d in year y, when off_before is the offset until then. */
static int64_t rdate_when(const struct rdate *d, int64_t y, int32_t off_before)
{
	int64_t jan1 = sk_days_from_civil(y, 1, 1), day;

	switch (d->kind) {
	case RDATE_JULIAN: /* Feb 29 is never counted */
		day = jan1 + d->n - 1 + (is_leap(y) && d->n >= 60);
		break;
	case RDATE_ZERO:
		day = jan1 + d->n;
		break;
	default: {
		int64_t first = sk_days_from_civil(y, (unsigned)d->m, 1);
		int md = ((int)d->d - (int)sk_weekday(first) + 7) % 7 + (d->w - 1) * 7;

		if (md >= (int)sk_days_in_month(y, (unsigned)d->m)) /* w == 5: the last one */
			md -= 7;
		day = first + md;
	}
	}
	return day * 86400 + d->secs - off_before;
}

static int64_t clamp_t(int64_t t)
{
	return t > RULE_T_MAX ? RULE_T_MAX : t < -RULE_T_MAX ? -RULE_T_MAX : t;
}

static int64_t rule_year(const struct posix_tz *r, int64_t t)
{
	int64_t y;
	unsigned m, d;

	sk_civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
	return y;
}

/*
 * The offset at t: the state set by the latest DST start or end at or before
 * t, among the years around t's.  Looking at several years copes with rules
 * whose periods wrap the new year (the southern hemisphere) or whose times
 * run past the end of a day (RFC 8536's "J365/25").
 */
static int32_t rule_offset(const struct posix_tz *r, int64_t t)
{
	int64_t y0, best = INT64_MIN;
	bool dst = false;

	if (!r->has_dst)
		return r->std_off;
	t = clamp_t(t);
	y0 = rule_year(r, t);
	for (int64_t y = y0 - 2; y <= y0 + 1; y++) {
		int64_t s = rdate_when(&r->start, y, r->std_off);
		int64_t e = rdate_when(&r->end, y, r->dst_off);

		if (s <= t && s >= best) {
			best = s;
			dst = true;
		}
		if (e <= t && e >= best) {
			best = e;
			dst = false;
		}
	}
	return dst ? r->dst_off : r->std_off;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The first rule event after t that moves the offset away from cur. */
static int64_t rule_next_change(const struct posix_tz *r, int64_t t, int32_t cur)
{
	int64_t ev[8], y0;
	size_t n = 0;

	if (!r->has_dst || t >= RULE_T_MAX)
		return INT64_MAX;
	t = clamp_t(t);
	y0 = rule_year(r, t);
	for (int64_t y = y0 - 1; y <= y0 + 2; y++) {
		ev[n++] = rdate_when(&r->start, y, r->std_off);
		ev[n++] = rdate_when(&r->end, y, r->dst_off);
	}
	qsort(ev, n, sizeof(ev[0]), cmp_i64);
	for (size_t i = 0; i < n; i++)
		if (ev[i] > t && rule_offset(r, ev[i]) != cur)
			return ev[i];
	return INT64_MAX;
}

/* A cursor over the TZ string, which is not NUL-terminated in the file. */
struct tzs {
	const unsigned char *p, *end;
};

static int tzs_peek(const struct tzs *s)
{
	return s->p < s->end ? *s->p : -1;
}

static bool is_alpha(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* "CET" or "<+0530>": at least three characters either way. */
static bool tzs_name(struct tzs *s)
{
	int n = 0;

	if (tzs_peek(s) == '<') {
		s->p++;
		while (s->p < s->end && *s->p != '>') {
			int c = *s->p++;

			if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-')
				return false;
			n++;
		}
		if (tzs_peek(s) != '>')
			return false;
		s->p++;
	} else {
		while (is_alpha(tzs_peek(s))) {
			s->p++;
			n++;
		}
	}
	return n >= 3;
}

static bool tzs_num(struct tzs *s, int max_digits, int max, int *out)
{
	int v = 0, n = 0;

	while (n < max_digits && is_digit(tzs_peek(s))) {
		v = v * 10 + (*s->p++ - '0');
		n++;
	}
	if (n == 0 || v > max || is_digit(tzs_peek(s)))
		return false;
	*out = v;
	return true;
}

/* [+-]hh[:mm[:ss]], hours up to max_h, as signed seconds. */
static bool tzs_hms(struct tzs *s, int max_h, int32_t *out)
{
	int sign = 1, h, m = 0, sec = 0;

	if (tzs_peek(s) == '+' || tzs_peek(s) == '-')
		sign = *s->p++ == '-' ? -1 : 1;
	if (!tzs_num(s, 3, max_h, &h))
		return false;
	if (tzs_peek(s) == ':') {
		s->p++;
		if (!tzs_num(s, 2, 59, &m))
			return false;
		if (tzs_peek(s) == ':') {
			s->p++;
			if (!tzs_num(s, 2, 59, &sec))
				return false;
		}
	}
	*out = sign * (h * 3600 + m * 60 + sec);
	return true;
}

/* ",date[/time]" */
static bool tzs_rdate(struct tzs *s, struct rdate *d)
{
	if (tzs_peek(s) != ',')
		return false;
	s->p++;
	if (tzs_peek(s) == 'J') {
		s->p++;
		d->kind = RDATE_JULIAN;
		if (!tzs_num(s, 3, 365, &d->n) || d->n < 1)
			return false;
	} else if (tzs_peek(s) == 'M') {
		s->p++;
		d->kind = RDATE_MONTH;
		if (!tzs_num(s, 2, 12, &d->m) || d->m < 1 || tzs_peek(s) != '.')
			return false;
		s->p++;
		if (!tzs_num(s, 1, 5, &d->w) || d->w < 1 || tzs_peek(s) != '.')
			return false;
		s->p++;
		if (!tzs_num(s, 1, 6, &d->d))
			return false;
	} else {
		d->kind = RDATE_ZERO;
		if (!tzs_num(s, 3, 365, &d->n))
			return false;
	}
	d->secs = 2 * 3600;
	if (tzs_peek(s) == '/') {
		s->p++;
		/* RFC 8536 3.3.1: -167 through 167 hours. */
		if (!tzs_hms(s, 167, &d->secs))
			return false;
	}
	return true;
}

/* std offset [dst [offset] ,start[/time],end[/time]] */
static bool posix_tz_parse(const unsigned char *p, size_t len, struct posix_tz *r)
{
	struct tzs s = { p, p + len };
	int32_t west;

	memset(r, 0, sizeof(*r));
	if (!tzs_name(&s) || !tzs_hms(&s, 24, &west))
		return false;
	r->std_off = -west;
	if (s.p == s.end)
		return true;
	if (!tzs_name(&s))
		return false;
	r->has_dst = true;
	r->dst_off = r->std_off + 3600;
	if (tzs_peek(&s) != ',') {
		if (!tzs_hms(&s, 24, &west))
			return false;
		r->dst_off = -west;
	}
	/* A DST name needs a rule: POSIX leaves the default to the implementation. */
	return tzs_rdate(&s, &r->start) && tzs_rdate(&s, &r->end) && s.p == s.end;
}

/* ---- TZif ------------------------------------------------------------------- */

struct tzif_hdr {
	int version; /* 0, or '2' and later */
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int tzif_header(const unsigned char *d, size_t len, size_t pos, struct tzif_hdr *h,
		       char *err, size_t errlen)
{
	d += pos;
	if (len - pos >= 4 && memcmp(d, "TZif", 4) != 0)
		return sk_sched_errf(err, errlen, "not a TZif file (bad magic)");
	if (len - pos < 44)
		return sk_sched_errf(err, errlen, "truncated TZif header");
	if (d[4] != 0 && (d[4] < '2' || d[4] > '9'))
		return sk_sched_errf(err, errlen, "unknown TZif version 0x%02x", d[4]);
	h->version = d[4];
	h->isutcnt = be32(d + 20);
	h->isstdcnt = be32(d + 24);
	h->leapcnt = be32(d + 28);
	h->timecnt = be32(d + 32);
	h->typecnt = be32(d + 36);
	h->charcnt = be32(d + 40);
	return 0;
}

/* Bytes in the data block after a header; tsize is 4 (v1) or 8. */
static uint64_t tzif_body_size(const struct tzif_hdr *h, unsigned tsize)
{
	return (uint64_t)h->timecnt * (tsize + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
	       (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

static int tzif_body(const unsigned char *d, const struct tzif_hdr *h, unsigned tsize,
		     sk_tz *tz, char *err, size_t errlen)
{
	const unsigned char *times = d, *idx = d + (size_t)h->timecnt * tsize;
	const unsigned char *types = idx + h->timecnt;
	_cleanup_free_ int32_t *offs = NULL;

	if (h->typecnt == 0 || h->charcnt == 0)
		return sk_sched_errf(err, errlen, "TZif data without time types or designations");
	if ((h->isutcnt && h->isutcnt != h->typecnt) || (h->isstdcnt && h->isstdcnt != h->typecnt))
		return sk_sched_errf(err, errlen, "TZif indicator counts differ from the type count");
	offs = xmalloc(h->typecnt * sizeof(*offs));
	for (uint32_t i = 0; i < h->typecnt; i++) {
		const unsigned char *t = types + (size_t)i * 6;
		int32_t off = (int32_t)be32(t);

		if (off < OFF_MIN || off > OFF_MAX)
			return sk_sched_errf(err, errlen, "TZif offset %d out of range", (int)off);
		if (t[4] > 1 || t[5] >= h->charcnt)
			return sk_sched_errf(err, errlen, "bad TZif time type %u", (unsigned)i);
		offs[i] = off;
	}
	tz->first_off = offs[0];
	tz->n_trans = h->timecnt;
	tz->trans = xmalloc(((size_t)h->timecnt + 1) * sizeof(*tz->trans));
	tz->trans_off = xmalloc(((size_t)h->timecnt + 1) * sizeof(*tz->trans_off));
	for (uint32_t i = 0; i < h->timecnt; i++) {
		const unsigned char *t = times + (size_t)i * tsize;

		tz->trans[i] = tsize == 8 ? be64(t) : (int32_t)be32(t);
		if (i && tz->trans[i] <= tz->trans[i - 1])
			return sk_sched_errf(err, errlen, "TZif transitions out of order");
		if (idx[i] >= h->typecnt)
			return sk_sched_errf(err, errlen, "TZif transition type %u out of range", idx[i]);
		tz->trans_off[i] = offs[idx[i]];
	}
	return 0;
}

/* "\nTZ string\n" after the v2+ body. */
static int tzif_footer(const unsigned char *d, size_t len, size_t pos, sk_tz *tz,
		       char *err, size_t errlen)
{
	const unsigned char *nl;
	char shown[65];
	size_t n;

	if (pos >= len || d[pos] != '\n')
		return sk_sched_errf(err, errlen, "TZif footer missing");
	pos++;
	nl = memchr(d + pos, '\n', len - pos);
	if (!nl)
		return sk_sched_errf(err, errlen, "TZif footer not terminated");
	if (nl == d + pos)
		return 0; /* empty: the last transition's type rules forever */
	if (!posix_tz_parse(d + pos, (size_t)(nl - (d + pos)), &tz->rule)) {
		for (n = 0; n < sizeof(shown) - 1 && d + pos + n < nl; n++)
			shown[n] = d[pos + n] >= 0x20 && d[pos + n] < 0x7f ? (char)d[pos + n] : '?';
		shown[n] = 0;
		return sk_sched_errf(err, errlen, "bad TZ string '%s' in TZif footer", shown);
	}
	tz->has_footer = true;
	return 0;
}

int sk_tz_parse(const unsigned char *data, size_t len, sk_tz **out, char *err, size_t errlen)
{
	struct tzif_hdr h;
	size_t pos = 0;
	uint64_t body;
	sk_tz *tz;

	*out = NULL;
	if (!data)
		return sk_sched_errf(err, errlen, "truncated TZif header");
	if (tzif_header(data, len, pos, &h, err, errlen) < 0)
		return -1;
	body = tzif_body_size(&h, 4);
	if (body > len - 44)
		return sk_sched_errf(err, errlen, "truncated TZif data (counts past the end)");
	pos = 44;
	if (h.version) {
		/* Skip the 32-bit block: the second header and its 64-bit body supersede it. */
		pos += (size_t)body;
		if (tzif_header(data, len, pos, &h, err, errlen) < 0)
			return -1;
		if (!h.version)
			return sk_sched_errf(err, errlen, "TZif second header has version 0");
		pos += 44;
		body = tzif_body_size(&h, 8);
		if (body > len - pos)
			return sk_sched_errf(err, errlen, "truncated TZif data (counts past the end)");
	}
	tz = xcalloc(1, sizeof(*tz));
	tz->name = xstrdup("");
	if (tzif_body(data + pos, &h, h.version ? 8 : 4, tz, err, errlen) < 0 ||
	    (h.version && tzif_footer(data, len, pos + (size_t)body, tz, err, errlen) < 0)) {
		sk_tz_free(tz);
		return -1;
	}
	*out = tz;
	return 0;
}

/* ---- loading by name ---------------------------------------------------------- */

static sk_tz *tz_utc(const char *name)
{
	sk_tz *tz = xcalloc(1, sizeof(*tz));

	tz->name = xstrdup(name);
	return tz;
}

/* Names as they may appear in messages: printable ASCII, at most 64 bytes. */
static void printable(const char *s, char *out, size_t n)
{
	size_t i = 0;

	for (; s[i] && i + 1 < n && i < 64; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	out[i] = 0;
}

static int check_name(const char *name, char *err, size_t errlen)
{
	char shown[80];

	printable(name, shown, sizeof(shown));
	if (strlen(name) > TZ_NAME_MAX)
		return sk_sched_errf(err, errlen, "invalid time zone name '%s...': too long", shown);
	if (name[0] == '/')
		return sk_sched_errf(err, errlen, "invalid time zone name '%s': absolute paths are not allowed",
			       shown);
	if (strstr(name, ".."))
		return sk_sched_errf(err, errlen, "invalid time zone name '%s': '..' is not allowed", shown);
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (!is_alpha(c) && !is_digit(c) && !strchr("_+-/", c))
			return sk_sched_errf(err, errlen,
				       "invalid time zone name '%s': character 0x%02x is not allowed",
				       shown, c);
	}
	return 0;
}

/* Reads a whole regular file of at most TZIF_MAX_SIZE bytes; -1 with errno. */
static int read_small_file(const char *path, unsigned char **out, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	unsigned char *buf;
	struct stat st;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	if (st.st_size > TZIF_MAX_SIZE) {
		errno = EFBIG;
		return -1;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = n < 0 ? errno : EIO;

			free(buf);
			errno = e;
			return -1;
		}
		got += (size_t)n;
	}
	*out = buf;
	*len = got;
	return 0;
}

int sk_tz_load(const char *name, sk_tz **out, char *err, size_t errlen)
{
	const char *dir = getenv("TZDIR");
	_cleanup_free_ unsigned char *data = NULL;
	_cleanup_free_ char *path = NULL;
	char msg[256];
	size_t len;

	*out = NULL;
	if (!name || !*name || !strcmp(name, "UTC")) {
		*out = tz_utc("UTC");
		return 0;
	}
	if (check_name(name, err, errlen) < 0)
		return -1;
	if (!dir || !*dir)
		dir = "/usr/share/zoneinfo";
	path = xasprintf("%s/%s", dir, name);
	if (read_small_file(path, &data, &len) < 0) {
		if (errno == ENOENT && !strcmp(name, "Etc/UTC")) {
			*out = tz_utc(name);
			return 0;
		}
		if (errno == ENOENT || errno == ENOTDIR)
			return sk_sched_errf(err, errlen, "unknown time zone '%s' (no such file in %s)", name,
				       dir);
		if (errno == EISDIR)
			return sk_sched_errf(err, errlen, "unknown time zone '%s' (%s is a directory)", name,
				       path);
		return sk_sched_errf(err, errlen, "time zone '%s': cannot read %s: %s", name, path,
			       strerror(errno));
	}
	if (sk_tz_parse(data, len, out, msg, sizeof(msg)) < 0)
		return sk_sched_errf(err, errlen, "time zone '%s': %s: %s", name, path, msg);
	free((*out)->name);
	(*out)->name = xstrdup(name);
	return 0;
}

void sk_tz_free(sk_tz *tz)
{
	if (!tz)
		return;
	free(tz->name);
	free(tz->trans);
	free(tz->trans_off);
	free(tz);
}

const char *sk_tz_name(const sk_tz *tz)
{
	return tz ? tz->name : "UTC";
}

/* The footer's rule governs t. */
static bool in_footer(const sk_tz *tz, int64_t t)
{
	return tz->has_footer && (tz->n_trans == 0 || t > tz->trans[tz->n_trans - 1]);
}

/* The index of the first transition after t (n_trans when none). */
static size_t trans_after(const sk_tz *tz, int64_t t)
{
	size_t lo = 0, hi = tz->n_trans;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->trans[mid] <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int32_t sk_tz_offset(const sk_tz *tz, int64_t t)
{
	size_t i;

	if (!tz)
		return 0;
	if (in_footer(tz, t))
		return rule_offset(&tz->rule, t);
	i = trans_after(tz, t);
	return i == 0 ? tz->first_off : tz->trans_off[i - 1];
}

int64_t sk_tz_next_change(const sk_tz *tz, int64_t t)
{
	int32_t cur = sk_tz_offset(tz, t);
	int64_t last;

	if (!tz)
		return INT64_MAX;
	for (size_t i = trans_after(tz, t); i < tz->n_trans; i++)
		if (tz->trans_off[i] != cur)
			return tz->trans[i];
	if (!tz->has_footer)
		return INT64_MAX;
	if (tz->n_trans) {
		last = tz->trans[tz->n_trans - 1];
		if (last == INT64_MAX)
			return INT64_MAX;
		/* Where the table hands over to a rule that disagrees with its end. */
		if (t <= last && rule_offset(&tz->rule, last + 1) != cur)
			return last + 1;
		if (t < last)
			t = last;
	}
	return rule_next_change(&tz->rule, t, cur);
}
