/*
 * sk_tz: IANA time zones read from TZif files (RFC 8536), for the cron engine.
 *
 * A zone is an immutable table of UTC instants at which the offset from UTC
 * changes, plus the POSIX TZ rule from the file's footer for instants after
 * the last of them.  Nothing here reads the process's TZ or calls
 * localtime(): a zone is whatever file was loaded, so that two zones can be
 * used side by side and from any thread once loaded.
 *
 * Lifecycle: sk_tz_load or sk_tz_parse hand out a zone the caller owns;
 * sk_tz_free releases it.  A NULL zone means UTC everywhere below.
 *
 * Errors: functions that can fail return -1 and, when err is not NULL, write
 * a NUL-terminated message for a person into err (errlen bytes at most).
 */
#ifndef SK_SCHED_TZ_H
#define SK_SCHED_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct sk_tz sk_tz;

/* Writes a message into err (errlen bytes at most, when err is not NULL); returns -1.
 * Shared by tz.c and cron.c. */
int sk_sched_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Loads a zone by IANA name ("Europe/Paris", "Etc/UTC") from $TZDIR, or
 * /usr/share/zoneinfo when TZDIR is unset or empty.  NULL, "" and "UTC" give
 * UTC without reading a file (as does "Etc/UTC" when no file has it), so
 * that UTC works where no zone data is installed.  Names with "..", absolute
 * paths and characters outside [A-Za-z0-9_+-/] are refused before any file
 * is opened.
 */
int sk_tz_load(const char *name, sk_tz **out, char *err, size_t errlen);

/*
 * Parses the bytes of a TZif file: version 1, or 2 and later, where the
 * 64-bit body and the POSIX TZ footer are used.  Never reads past len;
 * malformed data gives -1.  Leap-second records ("right/" zones) are
 * skipped: their offsets are right, their transition instants off by the
 * leap seconds so far.  sk_tz_name() of such a zone is "".
 */
int sk_tz_parse(const unsigned char *data, size_t len, sk_tz **out, char *err, size_t errlen);

void sk_tz_free(sk_tz *tz);

/* The name the zone was loaded by; "UTC" for NULL. */
const char *sk_tz_name(const sk_tz *tz);

/* Seconds east of UTC in effect at the UTC instant t (0 for NULL). */
int32_t sk_tz_offset(const sk_tz *tz, int64_t t);

/*
 * The first UTC instant after t at which the offset differs from the one at
 * t, or INT64_MAX when it never changes again.  Changes of abbreviation or
 * of the DST flag alone are not changes: only the wall clock matters here.
 */
int64_t sk_tz_next_change(const sk_tz *tz, int64_t t);

/*
 * Proleptic Gregorian calendar arithmetic (valid far beyond any year a zone
 * or a cron schedule needs).  Days count from 1970-01-01; month 1-12.
 */
int64_t sk_days_from_civil(int64_t y, unsigned m, unsigned d);
void sk_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* 0 = Sunday. */
unsigned sk_weekday(int64_t days);
unsigned sk_days_in_month(int64_t y, unsigned m);

#endif
