/* The HTTP API of apps, functions and calls (docs/api.md, "Apps and functions"). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "server/fn_internal.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

static json_t *body_json(http_req *req, bool empty_ok)
{
	json_error_t jerr;
	json_t *j;

	if (!req->body.len && empty_ok)
		return json_object();
	j = json_loadb(req->body.base ? req->body.base : "", req->body.len, 0, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		http_respond_errorf(req, SK_ERR_INVALID, "request body must be a JSON object (%s)",
				    jerr.text);
		return NULL;
	}
	return j;
}

static double query_seconds(http_req *req, const char *key, double dflt)
{
	char buf[32], *end;
	double v;

	if (!http_query_get(req, key, buf, sizeof(buf)))
		return dflt;
	v = strtod(buf, &end);
	if (*end || end == buf || !(v >= 0))
		return dflt;
	return v > 3600 ? 3600 : v;
}

static bool query_flag(http_req *req, const char *key)
{
	char buf[16];

	return http_query_get(req, key, buf, sizeof(buf)) && strcmp(buf, "0") && strcmp(buf, "false");
}

/* ---- apps ----------------------------------------------------------------------------- */

static json_t *app_json(fn_app *a)
{
	json_t *fns = json_array(), *ids = json_object();

	/* Newest registration first: a name registered again maps to its latest id. */
	for (fn_function *fn = a->functions; fn; fn = fn->next) {
		if (!json_object_get(ids, fn->name)) {
			json_array_append_new(fns, json_string(fn->name));
			json_object_set_new(ids, fn->name, json_string(fn->id));
		}
	}
	json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:b, s:f, s:o, s:o}", "app_id", a->id, "name",
			      a->name, "state", a->stopped ? "stopped" : a->deployed ? "deployed" : "running",
			      "ephemeral", a->ephemeral, "detached", a->detached, "created_at",
			      a->created_at, "functions", fns, "function_ids", ids);
	deploy_app_json(a, j);
	return j;
}

static void h_app_create(fn_server *fs, http_req *req)
{
	json_t *b = body_json(req, false);
	const char *name;
	fn_app *a;

	if (!b)
		return;
	name = json_string_value(json_object_get(b, "name"));
	if (!name || !*name || strlen(name) > 64) {
		http_respond_errorf(req, SK_ERR_INVALID, "name must be a string of 1 to 64 characters");
	} else {
		a = app_create(fs, name, NULL, !json_is_false(json_object_get(b, "ephemeral")),
			       json_is_true(json_object_get(b, "detach")));
		http_respond_json(req, 201, json_pack("{s:s, s:s}", "app_id", a->id, "name", a->name));
	}
	json_decref(b);
}

static void h_app_list(fn_server *fs, http_req *req)
{
	json_t *arr = json_array();

	for (fn_app *a = fs->apps; a; a = a->next) {
		/* A deployed app stopped and deployed again: its newest run only. */
		bool newer = false;
		for (fn_app *b = fs->apps; b != a && !newer; b = b->next)
			newer = a->deployed && b->deployed && !strcmp(a->name, b->name);
		if (!newer)
			json_array_append_new(arr, app_json(a));
	}
	deploy_list_stopped(fs, arr);
	http_respond_json(req, 200, json_pack("{s:o}", "apps", arr));
}

static fn_app *app_or_404(fn_server *fs, http_req *req, const char *id)
{
	fn_app *a = app_find(fs, id);

	if (!a)
		http_respond_errorf(req, SK_ERR_NOT_FOUND,
				    "no app %s on this server (see `skiff app list`)", id);
	return a;
}

/* ---- functions -------------------------------------------------------------------------- */

static fn_function *fn_or_404(fn_server *fs, http_req *req, const char *id)
{
	fn_function *fn = function_find(fs, id);

	if (!fn)
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "no function %s on this server", id);
	else if (fn->app->stopped) {
		http_respond_errorf(req, SK_ERR_CONFLICT, "the app of %s (%s) has stopped", fn->name,
				    fn->app->name);
		return NULL;
	}
	return fn;
}

static void h_function_create(fn_server *fs, http_req *req)
{
	json_t *b = body_json(req, false);
	fn_function *fn;
	sk_error err;

	if (!b)
		return;
	if (json_is_string(json_object_get(b, "app_id")) &&
	    app_find(fs, json_string_value(json_object_get(b, "app_id"))) &&
	    app_find(fs, json_string_value(json_object_get(b, "app_id")))->deployed) {
		http_respond_errorf(req, SK_ERR_CONFLICT,
				    "%s is a deployed app: change it with `skiff deploy`",
				    json_string_value(json_object_get(b, "app_id")));
	} else if (function_register(fs, b, NULL, &fn, &err) < 0) {
		http_respond_error(req, &err);
	} else {
		json_t *j = json_pack("{s:s}", "function_id", fn->id);
		if (fn->web)
			json_object_set_new(j, "web_url", json_string(fn->web->url));
		http_respond_json(req, 201, j);
		function_pump(fn); /* min_containers start now */
	}
	json_decref(b);
}

static void h_function_get(fn_server *fs, http_req *req, const char *id)
{
	fn_function *fn = function_find(fs, id);
	int idle = 0, busy = 0, starting = 0;

	if (!fn) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "no function %s on this server", id);
		return;
	}
	for (fn_container *fc = fn->containers; fc; fc = fc->next) {
		if (fc->state == FC_STARTING)
			starting++;
		else if (fc->state == FC_READY)
			fc->n_leases ? busy++ : idle++;
	}
	json_t *j = json_pack(
		"{s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:i, s:i, s:b, s:I, s:o, s:o, s:o}", "function_id",
		fn->id, "app_id", fn->app->id, "name", fn->name, "backlog", (json_int_t)fn->backlog,
		"running_inputs", (json_int_t)fn->running, "containers", fn->n_containers, "idle", idle,
		"busy", busy, "starting", starting, "waiting_for_capacity", fn->waiting_capacity,
		"cold_starts", (json_int_t)fn->cold_starts, "cold_start_avg_ms",
		fn->cold_starts ? json_real(fn->cold_start_ms_sum / fn->cold_starts) : json_null(),
		"avg_ms", fn->avg_s > 0 ? json_real(fn->avg_s * 1000) : json_null(), "broken",
		fn->broken ? json_string(fn->broken) : json_null());
	if (fn->web)
		json_object_set_new(j, "web_url", json_string(fn->web->url));
	{
		double med, p90;
		cold_start_stats(fn, &med, &p90);
		json_object_set_new(j, "cold_start_median_ms", fn->cold_starts ? json_real(med) : json_null());
		json_object_set_new(j, "cold_start_p90_ms", fn->cold_starts ? json_real(p90) : json_null());
	}
	json_object_set_new(j, "autoscaler",
			    json_pack("{s:i, s:o, s:i, s:f}", "min_containers", fn->min_containers,
				      "max_containers",
				      fn->max_containers ? json_integer(fn->max_containers) : json_null(),
				      "buffer_containers", fn->buffer_containers, "scaledown_window",
				      fn->scaledown_window));
	http_respond_json(req, 200, j);
}

static void h_function_autoscaler(fn_server *fs, http_req *req, fn_function *fn)
{
	json_t *b = body_json(req, false);
	sk_error err;

	if (!b)
		return;
	if (autoscaler_parse(fn, b, &err) < 0) {
		http_respond_error(req, &err);
	} else {
		log_info("%s: autoscaler now min %d, max %d, buffer %d, scaledown %.0f s", fn->name,
			 fn->min_containers, fn->max_containers, fn->buffer_containers,
			 fn->scaledown_window);
		http_respond_json(req, 200, json_object());
		function_pump(fn);
	}
	json_decref(b);
}

/* Takes the request body as a blob (no copy). */
static fn_blob *take_body(http_req *req)
{
	size_t len;
	char *base = sk_buf_detach(&req->body, &len);

	return blob_new(base ? base : xstrdup(""), len);
}

static void remote_abort(http_req *req, void *owner)
{
	fn_call *call = owner;

	/* The caller went away (Ctrl-C): nobody wants the answer. */
	call->remote_req = NULL;
	if (call->cancelled || call->complete)
		call_maybe_free(call);
	else
		call_cancel(call); /* frees it when nothing else refers to it */
}

static void h_function_call(fn_server *fs, http_req *req, fn_function *fn, bool spawn)
{
	fn_call *call = call_new(fn, spawn ? CALL_SPAWN : CALL_REMOTE);
	fn_blob *blob;

	if (!req->body.len) {
		http_respond_errorf(req, SK_ERR_INVALID, "the body must be a pickled input chunk");
		call->delivered = call->expired = true;
		call_maybe_free(call);
		return;
	}
	blob = take_body(req);
	call->last = true;
	if (spawn && fn->app->deployed) {
		sk_error err;
		if (deploy_call_accepted(call, blob->base, blob->len, &err) < 0) {
			http_respond_error(req, &err);
			blob_unref(blob);
			call->delivered = call->expired = true;
			call_maybe_free(call);
			return;
		}
	}
	if (spawn) {
		http_respond_json(req, 201, json_pack("{s:s}", "function_call_id", call->id));
	} else {
		call->remote_req = req;
		http_set_owner(req, call, remote_abort, NULL);
	}
	function_enqueue(fn, call, 0, 1, blob, 0, blob->len);
	blob_unref(blob);
	function_pump(fn);
}

static void h_function_map(fn_server *fs, http_req *req, fn_function *fn)
{
	json_t *b = body_json(req, true);
	fn_call *call;

	if (!b)
		return;
	call = call_new(fn, json_is_true(json_object_get(b, "generator")) ? CALL_GEN : CALL_MAP);
	json_decref(b);
	http_respond_json(req, 201,
			  json_pack("{s:s, s:I}", "function_call_id", call->id, "chunk_hint",
				    (json_int_t)function_chunk_hint(fn)));
}

/* ---- calls ------------------------------------------------------------------------------ */

static void h_call_inputs(fn_server *fs, http_req *req, fn_call *call)
{
	fn_function *fn = call->fn;
	const unsigned char *p = (const unsigned char *)req->body.base;
	size_t len = req->body.len, off = 0, accepted = 0;
	fn_blob *blob;

	if (call->kind == CALL_REMOTE || call->kind == CALL_SPAWN) {
		http_respond_errorf(req, SK_ERR_CONFLICT, "%s takes no more inputs", call->id);
		return;
	}
	if (call->last) {
		http_respond_errorf(req, SK_ERR_CONFLICT,
				    "%s already had its last inputs (last=1 was sent)", call->id);
		return;
	}
	/* Check every frame before queueing any. */
	while (off < len) {
		if (len - off < 12) {
			http_respond_errorf(req, SK_ERR_INVALID, "truncated input frame at byte %zu", off);
			return;
		}
		uint32_t start = get_u32(p + off), count = get_u32(p + off + 4), n = get_u32(p + off + 8);
		if (count == 0 || (uint64_t)start + count > (1u << 31) || n > len - off - 12) {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "bad input frame at byte %zu (start %u, count %u, %u bytes)", off,
					    start, count, n);
			return;
		}
		if (call->kind == CALL_GEN && (start != 0 || count != 1 || call->total)) {
			http_respond_errorf(req, SK_ERR_INVALID, "a generator call takes exactly one input");
			return;
		}
		off += 12 + n;
	}
	blob = take_body(req);
	p = (const unsigned char *)blob->base;
	call->refs++;
	for (off = 0; off < len;) {
		uint32_t start = get_u32(p + off), count = get_u32(p + off + 4), n = get_u32(p + off + 8);
		function_enqueue(fn, call, start, count, blob, off + 12, n);
		accepted += count;
		off += 12 + n;
	}
	blob_unref(blob);
	if (query_flag(req, "last"))
		call_set_last(call);
	call->refs--;
	http_respond_json(req, 200,
			  json_pack("{s:I, s:I}", "accepted", (json_int_t)accepted, "chunk_hint",
				    (json_int_t)function_chunk_hint(fn)));
	function_pump(fn);
	call_maybe_free(call);
}

/* ---- routing ----------------------------------------------------------------------------- */

static bool is(const http_req *req, enum http_method m)
{
	return req->method == m;
}

bool fn_api_handle(fn_server *fs, http_req *req, char **parts, size_t n)
{
	const char *what = parts[1], *id = n > 2 ? parts[2] : NULL, *verb = n > 3 ? parts[3] : NULL;

	if (deploy_api_handle(fs, req, parts, n))
		return true;
	if (!strcmp(what, "apps")) {
		if (n == 2 && is(req, HTTP_POST))
			return h_app_create(fs, req), true;
		if (n == 2 && is(req, HTTP_GET))
			return h_app_list(fs, req), true;
		if (n == 3 && is(req, HTTP_GET)) {
			fn_app *a = app_or_404(fs, req, id);
			if (a)
				http_respond_json(req, 200, app_json(a));
			return true;
		}
		if (n == 4 && !strcmp(verb, "heartbeat") && is(req, HTTP_POST)) {
			fn_app *a = app_or_404(fs, req, id);
			if (a && a->stopped)
				http_respond_errorf(req, SK_ERR_CONFLICT, "app %s has stopped", id);
			else if (a) {
				a->last_hb = sk_wall_time();
				http_respond_json(req, 200, json_object());
			}
			return true;
		}
		if (n == 4 && !strcmp(verb, "stop") && is(req, HTTP_POST)) {
			fn_app *a = app_or_404(fs, req, id);
			if (a) {
				app_stop(a, "asked by its client");
				http_respond_json(req, 200, json_object());
			}
			return true;
		}
		if (n == 4 && !strcmp(verb, "logs") && is(req, HTTP_GET)) {
			fn_app *a = app_or_404(fs, req, id);
			if (a)
				api_stream_out(req, &a->log, 0, !query_flag(req, "follow"));
			return true;
		}
		return false;
	}
	if (!strcmp(what, "functions")) {
		fn_function *fn;
		if (n == 2 && is(req, HTTP_POST))
			return h_function_create(fs, req), true;
		if (n == 3 && is(req, HTTP_GET))
			return h_function_get(fs, req, id), true;
		if (n != 4 || !is(req, HTTP_POST))
			return false;
		if (strcmp(verb, "remote") && strcmp(verb, "spawn") && strcmp(verb, "map") &&
		    strcmp(verb, "autoscaler"))
			return false;
		if (!(fn = fn_or_404(fs, req, id)))
			return true;
		if (fn->web && strcmp(verb, "autoscaler")) {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "%s is a web endpoint: request it over HTTP at %s", fn->name,
					    fn->web->url);
			return true;
		}
		if (!strcmp(verb, "autoscaler"))
			h_function_autoscaler(fs, req, fn);
		else if (!strcmp(verb, "map"))
			h_function_map(fs, req, fn);
		else
			h_function_call(fs, req, fn, !strcmp(verb, "spawn"));
		return true;
	}
	if (!strcmp(what, "calls") && n == 4) {
		fn_call *call = call_find(fs, id);
		if (!call) {
			http_respond_errorf(req, SK_ERR_NOT_FOUND,
					    "no function call %s on this server (finished calls are "
					    "kept for an hour after they end)",
					    id);
			return true;
		}
		if (!strcmp(verb, "inputs") && is(req, HTTP_POST))
			h_call_inputs(fs, req, call);
		else if (!strcmp(verb, "outputs") && is(req, HTTP_GET)) {
			if (call->kind != CALL_MAP && call->kind != CALL_GEN)
				http_respond_errorf(req, SK_ERR_INVALID,
						    "%s is not a map call; use /result", id);
			else
				call_poll(call, req, query_seconds(req, "timeout", 30));
		} else if (!strcmp(verb, "result") && is(req, HTTP_GET)) {
			if (call->kind != CALL_SPAWN)
				http_respond_errorf(req, SK_ERR_INVALID,
						    "%s is not a spawned call; use /outputs", id);
			else
				call_result(call, req, query_seconds(req, "timeout", 0));
		} else if (!strcmp(verb, "cancel") && is(req, HTTP_POST)) {
			call_cancel(call);
			http_respond_json(req, 200, json_object());
		} else {
			return false;
		}
		return true;
	}
	return false;
}
