/*
 * sk_cron: standard five-field cron expressions and their next fire time in
 * a time zone.  The exact semantics (day-of-month/day-of-week, daylight
 * saving) are set out at the top of cron.c.
 *
 * An sk_cron is a plain value: no allocation, no ownership, usable from any
 * thread.  Errors: sk_cron_parse returns -1 and, when err is not NULL, writes
 * a NUL-terminated message for a person (errlen bytes at most).
 */
#ifndef SK_SCHED_CRON_H
#define SK_SCHED_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/tz.h"

/* Longest expression accepted, in bytes. */
#define SK_CRON_MAX_LEN 256

/* One bit per allowed value. */
typedef struct sk_cron {
	uint64_t minute; /* bits 0-59 */
	uint32_t hour;   /* bits 0-23 */
	uint32_t dom;    /* bits 1-31 */
	uint16_t month;  /* bits 1-12 */
	uint8_t dow;     /* bits 0-6, 0 = Sunday (7 is folded onto 0) */
	/* The field began with '*' (including "*" followed by a step). */
	bool dom_star, dow_star, hour_star;
} sk_cron;

/*
 * Parses "minute hour day-of-month month day-of-week", or an alias: @yearly
 * (@annually), @monthly, @weekly, @daily (@midnight), @hourly.  Each field is
 * a list of "*", "n", "a-b", "*" or "a-b" or "a" with "/step"; months and days
 * of the week also by name (JAN-DEC, SUN-SAT, any case).  Errors name the
 * field: "cron: minute field '61': value out of range 0-59".
 */
int sk_cron_parse(const char *expr, sk_cron *out, char *err, size_t errlen);

/*
 * The first instant strictly after `after` (UTC seconds) at which c fires
 * in zone tz (NULL: UTC), or -1 when it does not fire within the next 8
 * years (e.g. "0 0 30 2 *") or `after` lies outside years 1-9999.  Fire
 * times are whole minutes of wall-clock time in tz.
 */
int64_t sk_cron_next(const sk_cron *c, const sk_tz *tz, int64_t after);

#endif
