/*
 * Metering (issue 4): every container's life, recorded in the store while
 * it runs (at start, every few seconds, and at its end, so a crash loses at
 * most a few seconds), totalled per app and function by GET /v1/usage and
 * `skiff usage`, priced from $SKIFF_HOME/prices.json (default: Modal's
 * public per-second prices).
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_USAGE_H
#define SK_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "api/http.h"
#include "runtime/container.h"

typedef struct skiff_server skiff_server;

typedef struct usage_info {
	const char *kind;        /* "function" | "sandbox" */
	const char *app_id;      /* or NULL */
	const char *app_name;    /* or NULL */
	const char *function;    /* function name, or NULL for sandboxes */
	double cpu_request;      /* cores; 0 = none given (billed as 0.125) */
	long long memory_request;/* MiB; 0 = none given (billed as 128) */
	int gpus;
	const char *gpu_type;    /* e.g. "H100", or NULL */
} usage_info;

/*
 * A container started (c->id, c->created_at); info is copied.  info may be
 * NULL, and its NULL/0 fields fall back on the container: the kind on its id
 * ("ct-": function), the requests on its cpu/memory limits, the app's name on
 * the store's apps (by app_id).
 */
void usage_started(skiff_server *s, rt_container *c, const usage_info *info);
/*
 * Refreshes the running container's row (CPU used, peak memory, inputs served:
 * the container's total so far).  Cheap to call per input: the row is
 * rewritten at most once a second; the count is kept in memory in between.
 */
void usage_update(skiff_server *s, rt_container *c, uint64_t inputs);
/* The container ended (c->ended_at set): its final row. */
void usage_ended(skiff_server *s, rt_container *c, uint64_t inputs);
/*
 * Every few seconds: refreshes the rows of all running containers it knows
 * (one store write each), and finishes any that ended without usage_ended.
 */
void usage_tick(skiff_server *s);
/* Forgets every tracked container without writing (server teardown). */
void usage_release(skiff_server *s);
/*
 * The answer of GET /v1/usage (docs/api.md): totals since `since` (unix
 * seconds, 0: all) for app (id or name; NULL: all), priced from
 * $SKIFF_HOME/prices.json.  NULL with err filled when the store or the
 * price file fails (an unusable price file: SK_ERR_INTERNAL naming it).
 */
json_t *usage_report(skiff_server *s, const char *app, double since, sk_error *err);
/* GET /v1/usage; true when it handled the request. */
bool usage_api_handle(skiff_server *s, http_req *req, char **parts, size_t n);

#endif
