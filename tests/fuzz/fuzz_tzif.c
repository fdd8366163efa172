/*
 * libFuzzer target for TZif data (sk_tz_parse in src/sched/tz.c): raw bytes
 * are parsed; a refusal must leave no zone and a message.  A zone that
 * parses is asked for offsets at instants across (and far outside) the
 * years that matter, and for the next change after each.  Checks: offsets
 * within RFC 8536's range; a change is later than the instant, the offset
 * really differs there and holds until then.  Then a cron schedule is run
 * in the zone, to see that odd zones neither hang nor crash the search.
 */
#include <stdint.h>
#include <stdlib.h>

#include "sched/cron.h"
#include "sched/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int64_t ts[] = {
		INT64_MIN, -62135596800, -2208988800, -1, 0, 1000000000, 1774746000,
		2147483648, 4102444800, 253402300799, INT64_MAX - 1,
	};
	char err[256] = "";
	sk_tz *tz = NULL;
	sk_cron c;

	if (sk_tz_parse(data, size, &tz, err, sizeof(err)) < 0) {
		if (tz || !err[0])
			abort();
		return 0;
	}
	for (size_t i = 0; i < sizeof(ts) / sizeof(ts[0]); i++) {
		int32_t off = sk_tz_offset(tz, ts[i]);
		int64_t next = sk_tz_next_change(tz, ts[i]);

		if (off < -89999 || off > 93599 || next <= ts[i])
			abort();
		if (next != INT64_MAX &&
		    (sk_tz_offset(tz, next) == off || sk_tz_offset(tz, next - 1) != off))
			abort();
	}
	if (sk_cron_parse("*/7 3 * * *", &c, NULL, 0) < 0)
		abort();
	for (size_t i = 1; i + 2 < sizeof(ts) / sizeof(ts[0]); i++) {
		int64_t next = sk_cron_next(&c, tz, ts[i]);

		if (next != -1 && next <= ts[i])
			abort();
	}
	sk_tz_free(tz);
	return 0;
}
