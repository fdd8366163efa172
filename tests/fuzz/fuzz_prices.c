/*
 * libFuzzer target for the operator's price table (prices_parse in
 * src/server/prices.c) and `skiff usage --since` times (since_parse in
 * src/cli/since.c): any input is refused with a message or yields prices
 * that are finite and >= 0, and a GPU lookup that is one of them.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/since.h"
#include "server/prices.h"
#include "util/xalloc.h"

static void check(double v)
{
	if (!isfinite(v) || v < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1);
	sk_error err = { 0 };
	double t;
	prices p;

	memcpy(text, data, size);
	text[size] = 0;
	prices_init(&p);
	if (prices_parse(&p, text, size, &err) < 0) {
		if (!err.msg[0])
			abort();
	}
	check(p.cpu_core_second);
	check(p.memory_gib_second);
	for (size_t i = 0; i < p.n_gpu; i++) {
		check(p.gpu[i].second);
		if (prices_gpu_second(&p, p.gpu[i].type) < 0)
			abort();
	}
	check(prices_gpu_second(&p, text));
	json_decref(prices_json(&p));
	prices_release(&p);
	if (since_parse(text, 1800000000.0, &t, &err) == 0 && isnan(t))
		abort();
	free(text);
	return 0;
}
