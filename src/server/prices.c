/*
 * Price table: defaults, and an operator's prices.json over them.  See
 * prices.h for the file's shape.
 */
#include "server/prices.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>

#include "util/fsutil.h"
#include "util/xalloc.h"

/*
 * Modal's list prices per second (modal.com/pricing, 2026), in USD.  "A100"
 * is the 40 GB card; "any" bills as the cheapest GPU, which is what Modal
 * may hand out for it.
 */
#define DEFAULT_CPU_CORE_SECOND 0.0000131
#define DEFAULT_MEMORY_GIB_SECOND 0.00000222

static const struct {
	const char *type;
	double second;
} default_gpus[] = {
	{ "B200", 0.001736 },   { "H200", 0.001261 }, { "H100", 0.001097 },
	{ "A100-80GB", 0.000694 }, { "A100-40GB", 0.000583 }, { "A100", 0.000583 },
	{ "L40S", 0.000542 },   { "A10G", 0.000306 }, { "A10", 0.000306 },
	{ "L4", 0.000222 },     { "T4", 0.000164 },   { "any", 0.000164 },
};

static void set_gpu(prices *p, const char *type, double second)
{
	for (size_t i = 0; i < p->n_gpu; i++)
		if (!strcasecmp(p->gpu[i].type, type)) {
			p->gpu[i].second = second;
			return;
		}
	p->gpu = xrealloc(p->gpu, (p->n_gpu + 1) * sizeof(*p->gpu));
	p->gpu[p->n_gpu].type = xstrdup(type);
	p->gpu[p->n_gpu++].second = second;
}

void prices_init(prices *p)
{
	memset(p, 0, sizeof(*p));
	p->cpu_core_second = DEFAULT_CPU_CORE_SECOND;
	p->memory_gib_second = DEFAULT_MEMORY_GIB_SECOND;
	for (size_t i = 0; i < ARRAY_SIZE(default_gpus); i++)
		set_gpu(p, default_gpus[i].type, default_gpus[i].second);
}

void prices_release(prices *p)
{
	for (size_t i = 0; i < p->n_gpu; i++)
		free(p->gpu[i].type);
	free(p->gpu);
	memset(p, 0, sizeof(*p));
}

/* A price: a finite number >= 0. */
static int price_of(const json_t *v, const char *what, double *out, sk_error *err)
{
	double d = json_number_value(v);

	if (!json_is_number(v) || !isfinite(d) || d < 0)
		return sk_error_set(err, SK_ERR_INVALID,
				    "%s must be a number of USD >= 0, e.g. 0.0000131", what);
	*out = d;
	return 0;
}

static int parse_gpus(prices *p, const json_t *o, sk_error *err)
{
	const char *type;
	json_t *v;
	double d = 0;

	if (!json_is_object(o))
		return sk_error_set(err, SK_ERR_INVALID,
				    "gpu_second must be an object of GPU type to USD per second, "
				    "e.g. {\"H100\": 0.001097}");
	json_object_foreach((json_t *)o, type, v) {
		_cleanup_free_ char *what = xasprintf("gpu_second[\"%s\"]", type);

		if (!*type)
			return sk_error_set(err, SK_ERR_INVALID, "gpu_second has an empty GPU type");
		if (price_of(v, what, &d, err) < 0)
			return -1;
		set_gpu(p, type, d);
	}
	return 0;
}

int prices_parse(prices *p, const char *text, size_t len, sk_error *err)
{
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr), *v;
	const char *key;
	int rc = 0;

	if (!j)
		return sk_error_set(err, SK_ERR_INVALID, "not JSON: %s at line %d, column %d",
				    jerr.text, jerr.line, jerr.column);
	if (!json_is_object(j)) {
		json_decref(j);
		return sk_error_set(err, SK_ERR_INVALID, "the prices must be a JSON object");
	}
	json_object_foreach(j, key, v) {
		if (!strcmp(key, "cpu_core_second"))
			rc = price_of(v, key, &p->cpu_core_second, err);
		else if (!strcmp(key, "memory_gib_second"))
			rc = price_of(v, key, &p->memory_gib_second, err);
		else if (!strcmp(key, "gpu_second"))
			rc = parse_gpus(p, v, err);
		else if (strcmp(key, "currency") || !json_is_string(v) ||
			 strcmp(json_string_value(v), "USD"))
			rc = sk_error_set(err, SK_ERR_INVALID,
					  "unknown key \"%s\" (known: cpu_core_second, "
					  "memory_gib_second, gpu_second)", key);
		if (rc < 0)
			break;
	}
	json_decref(j);
	if (rc == 0)
		p->from_file = true;
	return rc;
}

int prices_load(prices *p, const char *path, sk_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	sk_error e;

	prices_init(p);
	if (sk_read_file(path, &text, &len, &e) < 0) {
		if (e.errnum == ENOENT)
			return 0;
		if (err)
			*err = e;
		prices_release(p);
		return -1;
	}
	if (prices_parse(p, text, len, err) < 0) {
		prices_release(p);
		return sk_error_prefix(err, "%s", path);
	}
	return 0;
}

double prices_gpu_second(const prices *p, const char *type)
{
	size_t n = type ? strcspn(type, "!") : 0;

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < p->n_gpu; i++) {
			const char *t = p->gpu[i].type;

			if (pass == 0 ? n && strlen(t) == n && !strncasecmp(t, type, n)
				      : !strcasecmp(t, "any"))
				return p->gpu[i].second;
		}
	}
	return 0;
}

json_t *prices_json(const prices *p)
{
	json_t *gpus = json_object();

	for (size_t i = 0; i < p->n_gpu; i++)
		json_object_set_new(gpus, p->gpu[i].type, json_real(p->gpu[i].second));
	return json_pack("{s:f, s:f, s:o, s:s}", "cpu_core_second", p->cpu_core_second,
			 "memory_gib_second", p->memory_gib_second, "gpu_second", gpus, "currency",
			 "USD");
}
