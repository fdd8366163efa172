/*
 * libFuzzer target for cron expressions (src/sched/cron.c): the input,
 * NUL-terminated, is parsed; a refusal must come with a printable message,
 * and a schedule that parses is asked for its next fire time from a few
 * instants (ordinary ones and ones next to the 2026 daylight-saving changes)
 * in UTC and in Europe/Paris (skipped where zone files are missing).
 * Checks: the answer is -1 or a whole minute after the instant, and asking
 * again from one second before it gives it again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/cron.h"
#include "sched/tz.h"
#include "util/xalloc.h"

static const sk_tz *zones[2];
static size_t n_zones;

static void load_zones(void)
{
	sk_tz *paris;

	if (n_zones)
		return;
	zones[n_zones++] = NULL; /* UTC */
	if (sk_tz_load("Europe/Paris", &paris, NULL, 0) == 0)
		zones[n_zones++] = paris; /* kept for the whole run */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t afters[] = {
		-1, 0, 951782400 /* 2000-02-29 */, 1774745940 /* Paris gap, 2026-03-29 00:59 */,
		1792889940 /* Paris repeat, 2026-10-25 00:59 */, 4102444799 /* 2099-12-31 */,
	};
	char *text = xmalloc(size + 1), err[256] = "";
	sk_cron c;

	load_zones();
	memcpy(text, data, size);
	text[size] = 0;
	if (sk_cron_parse(text, &c, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		for (const char *p = err; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();
		free(text);
		return 0;
	}
	for (size_t z = 0; z < n_zones; z++)
		for (size_t i = 0; i < sizeof(afters) / sizeof(afters[0]); i++) {
			int64_t next = sk_cron_next(&c, zones[z], afters[i]);

			if (next == -1)
				continue;
			if (next <= afters[i] || next % 60 != 0)
				abort();
			if (sk_cron_next(&c, zones[z], next - 1) != next)
				abort();
		}
	free(text);
	return 0;
}
