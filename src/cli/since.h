/*
 * since: the times `skiff usage --since T` accepts, for people.
 *   - unix seconds: 1764300000 (or with a fraction);
 *   - a date or a date and time, local time unless it ends in Z:
 *     2026-11-28, 2026-11-28T10:00, 2026-11-28 10:00:30, 2026-11-28T10:00Z;
 *   - an age: a number and a unit, s, m, h, d or w (30m, 2d, 1.5h), meaning
 *     that long before now.
 * Pure functions (the local time zone aside).
 */
#ifndef SK_CLI_SINCE_H
#define SK_CLI_SINCE_H

#include "util/error.h"

/* *out = the time text means, in unix seconds; now is for ages. */
int since_parse(const char *text, double now, double *out, sk_error *err);

#endif
