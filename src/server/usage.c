/*
 * Metering: one row per container in the store's usage table, written when
 * the container starts, on every usage_update and usage_tick while it runs,
 * and once more when it ends.  A crash loses at most what happened since the
 * last write: the row's updated_at then bounds the container's life.
 *
 * The rows hold what billing needs and no more: the requests as billed (the
 * defaults filled in), CPU time used and peak memory read from the
 * container's cgroup box, GPUs, inputs served.  Totals and prices are worked
 * out when asked (GET /v1/usage), so a changed prices.json applies to past
 * usage too: it is a price list, not an invoice.
 *
 * Billing follows Modal's rules, simplified to what a per-container total
 * allows: CPU is billed on the larger of the request and the CPU time used
 * (per container, over its life); memory on the request; each GPU for every
 * second the container lives.
 */
#include "server/usage.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"
#include "server/prices.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

/* usage_update rewrites a row at most this often (it may come with every input). */
#define UPDATE_EVERY_S 1.0

/* What a container is billed for when it asked for nothing (Modal's defaults). */
#define DEFAULT_CPU_REQUEST 0.125
#define DEFAULT_MEMORY_MIB 128

/* A running container being metered; owned by the server's list (s->usage). */
struct usage_track {
	rt_container *c;          /* valid while tracked: usage_ended comes before it is freed */
	char *kind, *app_id, *app_name, *function, *gpu_type;
	double cpu_request;       /* cores, as billed */
	long long memory_request; /* MiB, as billed */
	int gpus;
	uint64_t inputs;
	double cpu_used_s;        /* the largest seen */
	long long peak;           /* bytes, the largest seen */
	double written_at;        /* the row's last write */
	struct usage_track *next;
};

static void track_free(struct usage_track *t)
{
	free(t->kind);
	free(t->app_id);
	free(t->app_name);
	free(t->function);
	free(t->gpu_type);
	free(t);
}

static struct usage_track **find(skiff_server *s, const rt_container *c)
{
	struct usage_track **pp = &s->usage;

	while (*pp && (*pp)->c != c)
		pp = &(*pp)->next;
	return pp;
}

static char *dup_or_null(const char *v)
{
	return v && *v ? xstrdup(v) : NULL;
}

/* The app's name from the store when only its id is known (sandboxes). */
static char *app_name_of(skiff_server *s, const char *app_id)
{
	store_app a;
	char *name;

	if (!app_id || store_app_get(s->store, app_id, &a, NULL) < 0)
		return NULL;
	name = steal_ptr(&a.name);
	store_app_release(&a);
	return name;
}

/*
 * info NULL, or fields left 0, fall back on what the container itself says:
 * its kind from its id ("ct-" for function containers), its CPU and memory
 * limits as the requests.
 */
static void set_info(skiff_server *s, struct usage_track *t, const rt_container *c,
		     const usage_info *info)
{
	const usage_info none = { 0 };

	if (!info)
		info = &none;
	free(t->kind), free(t->app_id), free(t->app_name), free(t->function), free(t->gpu_type);
	t->kind = xstrdup(info->kind ? info->kind : !strncmp(c->id, "ct-", 3) ? "function"
										  : "sandbox");
	t->app_id = dup_or_null(info->app_id);
	t->app_name = info->app_name ? dup_or_null(info->app_name) : app_name_of(s, info->app_id);
	t->function = dup_or_null(info->function);
	t->gpu_type = info->gpus > 0 ? dup_or_null(info->gpu_type) : NULL;
	t->cpu_request = info->cpu_request > 0 ? info->cpu_request
			 : c->cpu > 0	       ? c->cpu
					       : DEFAULT_CPU_REQUEST;
	t->memory_request = info->memory_request > 0 ? info->memory_request
			    : c->memory > 0	     ? c->memory
						     : DEFAULT_MEMORY_MIB;
	t->gpus = info->gpus > 0 ? info->gpus : 0;
}

/* Reads the box's counters while it exists; they only grow. */
static void sample(skiff_server *s, struct usage_track *t)
{
	rt_container *c = t->c;
	double cpu;
	long long peak;

	if (c->box.rel) {
		cpu = (double)cg_box_cpu_usage_ns(&s->cg, &c->box) / 1e9;
		peak = cg_box_peak_memory(&s->cg, &c->box);
	} else {
		/* Gone: what the runtime read just before removing it. */
		cpu = (double)c->cpu_used_ns / 1e9;
		peak = c->peak_memory;
	}
	if (cpu > t->cpu_used_s)
		t->cpu_used_s = cpu;
	if (peak > t->peak)
		t->peak = peak;
}

static void write_row(skiff_server *s, struct usage_track *t, double ended_at)
{
	rt_container *c = t->c;
	double now = sk_wall_time();
	store_usage u = {
		.container_id = c->id,
		.kind = t->kind,
		.app_id = t->app_id,
		.app_name = t->app_name,
		.function = t->function,
		.started_at = c->created_at > 0 ? c->created_at : now,
		.updated_at = ended_at > 0 ? ended_at : now,
		.ended_at = ended_at,
		.cpu_request = t->cpu_request,
		.memory_request = t->memory_request,
		.gpus = t->gpus,
		.gpu_type = t->gpu_type,
		.cpu_used_s = t->cpu_used_s,
		.memory_peak_bytes = t->peak,
		.inputs = (long long)t->inputs,
	};
	sk_error err;

	t->written_at = now;
	if (store_usage_put(s->store, &u, &err) < 0)
		log_error("container %s: cannot record its usage: %s", c->id, err.msg);
}

/* Writes the last row of the tracked *pp and forgets it. */
static void finish(skiff_server *s, struct usage_track **pp)
{
	struct usage_track *t = *pp;
	rt_container *c = t->c;

	sample(s, t);
	if (c->cpu_used_ns / 1e9 > t->cpu_used_s)
		t->cpu_used_s = (double)c->cpu_used_ns / 1e9;
	if (c->peak_memory > t->peak)
		t->peak = c->peak_memory;
	write_row(s, t, c->ended_at > 0 ? c->ended_at : sk_wall_time());
	*pp = t->next;
	track_free(t);
}

void usage_started(skiff_server *s, rt_container *c, const usage_info *info)
{
	struct usage_track **pp = find(s, c), *t = *pp;

	if (!t) {
		t = xcalloc(1, sizeof(*t));
		t->c = c;
		*pp = t;
	}
	set_info(s, t, c, info);
	sample(s, t);
	write_row(s, t, 0);
}

void usage_update(skiff_server *s, rt_container *c, uint64_t inputs)
{
	struct usage_track *t = *find(s, c);

	if (!t)
		return;
	if (inputs > t->inputs)
		t->inputs = inputs;
	/* Its end is written by usage_ended (or the next tick). */
	if (c->state != RT_RUNNING || sk_wall_time() - t->written_at < UPDATE_EVERY_S)
		return;
	sample(s, t);
	write_row(s, t, 0);
}

void usage_ended(skiff_server *s, rt_container *c, uint64_t inputs)
{
	struct usage_track **pp = find(s, c);

	if (!*pp) {
		log_debug("container %s: ended without being metered", c->id);
		return;
	}
	if (inputs > (*pp)->inputs)
		(*pp)->inputs = inputs;
	finish(s, pp);
}

/*
 * A container that ended without usage_ended (a path that forgot to call it)
 * is finished here, with the inputs last reported, so that it does not stay
 * open until the next restart.
 */
void usage_tick(skiff_server *s)
{
	struct usage_track **pp = &s->usage;

	while (*pp) {
		struct usage_track *t = *pp;

		if (t->c->state != RT_RUNNING) {
			finish(s, pp);
			continue;
		}
		sample(s, t);
		write_row(s, t, 0);
		pp = &t->next;
	}
}

void usage_release(skiff_server *s)
{
	while (s->usage) {
		struct usage_track *t = s->usage;

		s->usage = t->next;
		track_free(t);
	}
}

/* ---- GET /v1/usage ----------------------------------------------------------- */

static json_t *opt_str(const char *v)
{
	return v ? json_string(v) : json_null();
}

static json_t *row_json(const store_usage_total *t, const prices *p, double *cost)
{
	*cost = t->cpu_seconds * p->cpu_core_second +
		t->memory_gib_seconds * p->memory_gib_second +
		t->gpu_seconds * prices_gpu_second(p, t->gpu_type);
	return json_pack("{s:o, s:o, s:o, s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:o, s:I, s:f}",
			 "app_name", opt_str(t->app_name), "app_id", opt_str(t->app_id),
			 "function", opt_str(t->function), "kind", t->kind ? t->kind : "sandbox",
			 "containers", (json_int_t)t->containers, "container_seconds",
			 t->container_seconds, "cpu_seconds", t->cpu_seconds, "cpu_used_seconds",
			 t->cpu_used_seconds, "memory_gib_seconds", t->memory_gib_seconds,
			 "gpu_seconds", t->gpu_seconds, "gpu_type", opt_str(t->gpu_type), "inputs",
			 (json_int_t)t->inputs, "cost", *cost);
}

static int parse_since(const char *text, double *out, sk_error *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (end == text || *end || errno || !isfinite(v) || v < 0)
		return sk_error_set(err, SK_ERR_INVALID,
				    "since must be a time in unix seconds, e.g. since=1764300000 "
				    "(got \"%s\"); `skiff usage --since` also takes 2026-11-28 or 2h",
				    text);
	*out = v;
	return 0;
}

json_t *usage_report(skiff_server *s, const char *app, double since, sk_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/prices.json", s->home);
	store_usage_total *ts = NULL;
	double now = sk_wall_time(), total = 0, cost;
	json_t *rows;
	size_t n = 0;
	prices p;

	if (app && !*app)
		app = NULL;
	if (prices_load(&p, path, err) < 0) {
		sk_error_prefix(err, "the price table is unusable (fix it, or remove it to use "
				     "the default prices)");
		if (err)
			err->kind = SK_ERR_INTERNAL;
		return NULL;
	}
	usage_tick(s); /* running containers count up to now */
	if (store_usage_totals(s->store, app, since, now, &ts, &n, err) < 0) {
		prices_release(&p);
		return NULL;
	}
	rows = json_array();
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(rows, row_json(&ts[i], &p, &cost));
		total += cost;
	}
	store_usage_totals_free(ts, n);
	json_t *out = json_pack("{s:f, s:f, s:o, s:o, s:f, s:o, s:o}", "since", since, "now", now,
				"app", opt_str(app), "rows", rows, "total_cost", total, "prices",
				prices_json(&p), "prices_file",
				p.from_file ? json_string(path) : json_null());
	prices_release(&p);
	return out;
}

bool usage_api_handle(skiff_server *s, http_req *req, char **parts, size_t n)
{
	char app[256], since_text[64];
	double since = 0;
	json_t *out;
	sk_error err;

	if (n != 2 || strcmp(parts[1], "usage") || req->method != HTTP_GET)
		return false;
	if (http_query_get(req, "since", since_text, sizeof(since_text)) &&
	    parse_since(since_text, &since, &err) < 0) {
		http_respond_error(req, &err);
		return true;
	}
	out = usage_report(s, http_query_get(req, "app", app, sizeof(app)), since, &err);
	if (out)
		http_respond_json(req, 200, out);
	else
		http_respond_error(req, &err);
	return true;
}
