/*
 * The price table that turns metered usage into money (issue 4): USD per
 * physical core-second of CPU, per GiB-second of memory, and per second of
 * each GPU type.  The defaults are Modal's public per-second list prices;
 * an operator overrides any of them in $SKIFF_HOME/prices.json:
 *
 *   {"cpu_core_second": 0.0000131, "memory_gib_second": 0.00000222,
 *    "gpu_second": {"H100": 0.001097, "MY-GPU": 0.0005}}
 *
 * Every key is optional; gpu_second entries replace or add to the default
 * ones.  Unknown keys and negative or non-numeric prices are errors (a typo
 * must not silently bill at the default).
 *
 * Thread: any; a prices value is owned by its caller.
 */
#ifndef SK_PRICES_H
#define SK_PRICES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef struct prices_gpu {
	char *type;     /* as Modal spells it: "H100", "A100-80GB", "any" */
	double second;
} prices_gpu;

typedef struct prices {
	double cpu_core_second;
	double memory_gib_second;
	prices_gpu *gpu;
	size_t n_gpu;
	bool from_file;  /* some price came from a file */
} prices;

/* The defaults. */
void prices_init(prices *p);
void prices_release(prices *p);
/*
 * Applies the JSON text of a price file (len bytes) on top of p; what is
 * wrong is said with its line and column.
 */
int prices_parse(prices *p, const char *text, size_t len, sk_error *err);
/*
 * The defaults, then path applied when it exists (a missing file is not an
 * error).  On failure err names the file, and p holds nothing to release.
 */
int prices_load(prices *p, const char *path, sk_error *err);
/*
 * USD per second of one GPU of type (case-insensitive; a trailing "!", Modal's
 * "no automatic upgrade", is ignored).  Unknown types and NULL cost what
 * "any" costs.
 */
double prices_gpu_second(const prices *p, const char *type);
/* {"cpu_core_second", "memory_gib_second", "gpu_second": {...}, "currency": "USD"}. */
json_t *prices_json(const prices *p);

#endif
