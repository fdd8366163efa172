/*
 * Functions: apps, functions, calls, input queues, function containers and
 * the worker protocol.  See functions.h, docs/api.md and docs/protocol.md.
 */
#include "server/functions.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/fn_internal.h"
#include "web/gateway.h"
#include "server/usage.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/utf8.h"
#include "util/xalloc.h"

/* ---- blobs ----------------------------------------------------------------------- */

fn_blob *blob_new(char *base, size_t len)
{
	fn_blob *b = xmalloc(sizeof(*b));

	b->refs = 1;
	b->base = base;
	b->len = len;
	return b;
}

fn_blob *blob_ref(fn_blob *b)
{
	b->refs++;
	return b;
}

void blob_unref(fn_blob *b)
{
	if (b && --b->refs == 0) {
		free(b->base);
		free(b);
	}
}

/* ---- little-endian helpers ---------------------------------------------------------- */

uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* Appends one output record. */
void add_record(sk_buf *b, uint32_t idx, uint8_t status, const void *payload, size_t len)
{
	unsigned char h[9];

	put_u32(h, idx);
	h[4] = status;
	put_u32(h + 5, (uint32_t)len);
	sk_buf_add(b, h, sizeof(h));
	sk_buf_add(b, payload, len);
}

/* A status-2 record's JSON payload. */
char *system_error_json(const char *kind, const char *message)
{
	json_t *j = json_pack("{s:s, s:s}", "kind", kind, "message", message);
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	return s;
}

/* ---- UTF-8 for log lines ------------------------------------------------------------- */

/* Copies len bytes into valid UTF-8, replacing bad bytes (and NULs) with U+FFFD. */
static char *utf8_clean(const char *s, size_t len)
{
	sk_buf b = SK_BUF_INIT;

	for (size_t i = 0; i < len;) {
		size_t n = sk_utf8_seq(s + i, len - i);

		if (n && s[i]) {
			sk_buf_add(&b, s + i, n);
			i += n;
		} else {
			sk_buf_add(&b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	sk_buf_add(&b, "", 0);
	return sk_buf_detach(&b, NULL);
}

/* ---- apps ---------------------------------------------------------------------------- */

fn_app *app_find(fn_server *fs, const char *id_or_name)
{
	fn_app *byname = NULL;

	for (fn_app *a = fs->apps; a; a = a->next) {
		if (!strcmp(a->id, id_or_name))
			return a;
		/* The newest running app of that name wins, then the newest stopped one. */
		if (!strcmp(a->name, id_or_name) && (!byname || (byname->stopped && !a->stopped)))
			byname = a;
	}
	return byname;
}

bool fn_app_exists(fn_server *fs, const char *app_id)
{
	fn_app *a = app_find(fs, app_id);

	return a && !a->stopped && !strcmp(a->id, app_id);
}

fn_app *app_create(fn_server *fs, const char *name, const char *id, bool ephemeral, bool detached)
{
	fn_app *a = xcalloc(1, sizeof(*a));
	_cleanup_free_ char *path = NULL;

	if (id && strlen(id) < sizeof(a->id)) {
		strcpy(a->id, id);
	} else {
		memcpy(a->id, "ap-", 3);
		sk_random_hex(a->id + 3, 8);
	}
	a->name = xstrdup(name);
	a->fs = fs;
	a->ephemeral = ephemeral;
	a->detached = detached;
	a->created_at = a->last_hb = sk_wall_time();
	rt_stream_init(&a->log);
	a->log.cap = fs->app_log_max;
	path = xasprintf("%s/%s.ndjson", fs->app_logs_dir, a->id);
	/* An app that ran before (a deployed one, after a restart): its lines so far. */
	for (int old = 1; old >= 0; old--) {
		_cleanup_free_ char *p = old ? xasprintf("%s.1", path) : xstrdup(path);
		char *data = NULL;
		size_t len = 0;
		if (sk_read_file(p, &data, &len, NULL) == 0 && len)
			rt_stream_write(&a->log, data, len);
		free(data);
	}
	a->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	a->log_bytes = a->log_fd >= 0 ? (size_t)lseek(a->log_fd, 0, SEEK_END) : 0;
	a->next = fs->apps;
	fs->apps = a;
	log_info("app %s (%s): created%s", a->id, a->name,
		 ephemeral ? (detached ? " (ephemeral, detached)" : " (ephemeral)") : "");
	return a;
}

void app_log_line(fn_app *a, const char *function, const char *container, int fd,
		  const char *text, size_t len)
{
	_cleanup_free_ char *clean = utf8_clean(text, len);
	json_t *j = json_pack("{s:f, s:s, s:s, s:s, s:s}", "ts", sk_wall_time(), "function", function,
			      "container", container, "stream", fd == 2 ? "stderr" : "stdout",
			      "text", clean);
	char *s = json_dumps(j, JSON_COMPACT);
	size_t n = strlen(s);

	json_decref(j);
	s = xrealloc(s, n + 2);
	s[n++] = '\n';
	s[n] = 0;
	rt_stream_write(&a->log, s, n);
	if (a->log_fd >= 0 && write(a->log_fd, s, n) < 0) {
		close(a->log_fd);
		a->log_fd = -1;
	}
	/* The bound: past half of it the file becomes <id>.ndjson.1 (the one before goes). */
	a->log_bytes += n;
	if (a->log_fd >= 0 && a->log_bytes > a->fs->app_log_max / 2) {
		_cleanup_free_ char *path = xasprintf("%s/%s.ndjson", a->fs->app_logs_dir, a->id);
		_cleanup_free_ char *old = xasprintf("%s.1", path);
		close(a->log_fd);
		rename(path, old);
		a->log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
		a->log_bytes = 0;
	}
	free(s);
}

/* ---- calls ----------------------------------------------------------------------------- */

fn_call *call_new(fn_function *fn, enum call_kind kind)
{
	fn_call *c = xcalloc(1, sizeof(*c));

	memcpy(c->id, "fc-", 3);
	sk_random_hex(c->id + 3, 8);
	c->fn = fn;
	c->kind = kind;
	c->created_at = sk_wall_time();
	c->next = fn->fs->calls;
	fn->fs->calls = c;
	return c;
}

fn_call *call_find(fn_server *fs, const char *id)
{
	for (fn_call *c = fs->calls; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

static void call_unlink(fn_call *call)
{
	for (fn_call **pp = &call->fn->fs->calls; *pp; pp = &(*pp)->next)
		if (*pp == call) {
			*pp = call->next;
			break;
		}
}

/* Frees the call once nothing refers to it and its outputs are gone. */
void call_maybe_free(fn_call *call)
{
	bool finished = call->delivered || (call->kind == CALL_REMOTE && call->complete && !call->remote_req);

	if (call->refs || call->poll || call->remote_req || call->waiters || !finished)
		return;
	if (call->kind == CALL_SPAWN && !call->expired)
		return; /* kept for .get() until it expires */
	call_unlink(call);
	free(call->final);
	sk_buf_release(&call->out);
	sk_buf_release(&call->result);
	free(call);
}

void call_grow(fn_call *call, uint32_t total)
{
	if (total <= call->final_cap)
		return;
	size_t cap = call->final_cap ? call->final_cap : 64;
	while (cap < total)
		cap *= 2;
	call->final = xrealloc(call->final, cap);
	memset(call->final + call->final_cap, 0, cap - call->final_cap);
	call->final_cap = (uint32_t)cap;
}

static void poll_answer(fn_call *call);
static void waiters_answer(fn_call *call);

static void check_complete(fn_call *call)
{
	if (call->complete)
		return;
	if (call->kind == CALL_GEN ? call->n_final > 0 : (call->last && call->n_final >= call->total))
		call->complete = true;
	if (call->complete)
		call->done_at = sk_wall_time();
}

/* Hands a final (or generator item) output to whoever waits for it. */
void call_output(fn_call *call, uint32_t idx, uint8_t status, const void *payload, size_t len)
{
	if (status == ST_GEN_ITEM) {
		if (call->n_final)
			return;
		idx = call->items++;
	} else if (call->kind == CALL_GEN) {
		if (call->n_final)
			return;
		call->n_final = 1;
		idx = call->items;
	} else {
		call_grow(call, idx + 1);
		if (call->final[idx])
			return; /* a redelivered input's second answer */
		call->final[idx] = 1;
		call->n_final++;
	}
	switch (call->kind) {
	case CALL_REMOTE:
		if (call->remote_req) {
			char st[8];
			http_set_owner(call->remote_req, NULL, NULL, NULL);
			snprintf(st, sizeof(st), "%u", status);
			http_add_header(call->remote_req, "Skiff-Status", st);
			http_respond(call->remote_req, 200, "application/octet-stream", payload, len);
			call->remote_req = NULL;
		}
		check_complete(call);
		call_maybe_free(call);
		return;
	case CALL_SPAWN:
		sk_buf_reset(&call->result);
		sk_buf_add(&call->result, payload, len);
		call->result_status = status;
		call->has_result = true;
		check_complete(call);
		if (call->durable)
			deploy_call_done(call);
		waiters_answer(call);
		return;
	case CALL_MAP:
	case CALL_GEN:
		add_record(&call->out, idx, status, payload, len);
		check_complete(call);
		poll_answer(call);
		return;
	}
}

void call_set_last(fn_call *call)
{
	call->last = true;
	check_complete(call);
	poll_answer(call);
}

void call_output_batch(fn_call *call, uint32_t idx, uint32_t count, const void *payload, size_t len)
{
	if (call->kind != CALL_MAP || count == 0 || (uint64_t)idx + count > (1u << 31))
		return;
	call_grow(call, idx + count);
	for (uint32_t i = 0; i < count; i++)
		if (call->final[idx + i])
			return; /* a redelivered chunk's second answer */
	memset(call->final + idx, 1, count);
	call->n_final += count;
	add_record(&call->out, idx, ST_BATCH_OK, payload, len);
	check_complete(call);
	poll_answer(call);
}

/* Every unfinished input of the call ends with a system error. */
void call_fail_all(fn_call *call, const char *kind, const char *message)
{
	_cleanup_free_ char *js = system_error_json(kind, message);

	if (call->kind == CALL_GEN) {
		if (!call->n_final)
			call_output(call, 0, ST_SYSTEM_ERROR, js, strlen(js));
		return;
	}
	call->last = true;
	if (call->total == 0 && call->kind != CALL_MAP)
		call->total = 1;
	call_grow(call, call->total);
	for (uint32_t i = 0; i < call->total; i++)
		if (!call->final[i])
			call_output(call, i, ST_SYSTEM_ERROR, js, strlen(js));
	check_complete(call);
	poll_answer(call);
}

/* ---- long polls --------------------------------------------------------------------- */

static void poll_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void poll_clear(fn_call *call)
{
	if (call->poll_timer) {
		uv_timer_stop(call->poll_timer);
		uv_close((uv_handle_t *)call->poll_timer, poll_timer_closed);
		call->poll_timer = NULL;
	}
	call->poll = NULL;
}

/* Answers the parked outputs poll when there is something to say. */
static void poll_answer(fn_call *call)
{
	http_req *req = call->poll;
	size_t len;
	char *body;

	if (!req || (!call->out.len && !call->complete))
		return;
	poll_clear(call);
	http_set_owner(req, NULL, NULL, NULL);
	if (call->complete) {
		http_add_header(req, "Skiff-Call-Done", "1");
		call->delivered = true;
	}
	body = sk_buf_detach(&call->out, &len);
	http_respond(req, 200, "application/octet-stream", body ? body : "", len);
	free(body);
	call_maybe_free(call);
}

static void poll_timeout(uv_timer_t *t)
{
	fn_call *call = t->data;
	http_req *req = call->poll;

	poll_clear(call);
	http_set_owner(req, NULL, NULL, NULL);
	http_respond(req, 200, "application/octet-stream", "", 0);
	call_maybe_free(call);
}

static void poll_abort(http_req *req, void *owner)
{
	fn_call *call = owner;

	poll_clear(call);
	call_maybe_free(call);
}

void call_poll(fn_call *call, http_req *req, double timeout)
{
	if (call->poll) {
		/* A newer poll replaces an older one, which gets an empty answer. */
		http_req *old = call->poll;
		poll_clear(call);
		http_set_owner(old, NULL, NULL, NULL);
		http_respond(old, 200, "application/octet-stream", "", 0);
	}
	call->poll = req;
	if (call->out.len || call->complete || timeout <= 0) {
		if (!call->out.len && !call->complete) {
			call->poll = NULL;
			http_respond(req, 200, "application/octet-stream", "", 0);
			return;
		}
		poll_answer(call);
		return;
	}
	http_set_owner(req, call, poll_abort, NULL);
	call->poll_timer = xmalloc(sizeof(uv_timer_t));
	uv_timer_init(call->fn->fs->loop, call->poll_timer);
	call->poll_timer->data = call;
	uv_timer_start(call->poll_timer, poll_timeout, (uint64_t)(timeout * 1000), 0);
}

/* ---- result waiters (spawned calls) --------------------------------------------------- */

static void waiter_closed(uv_handle_t *h)
{
	free(h->data);
}

static void waiter_remove(fn_call *call, result_waiter *w)
{
	for (result_waiter **pp = &call->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void respond_result(fn_call *call, http_req *req)
{
	char st[8];

	snprintf(st, sizeof(st), "%u", call->result_status);
	http_add_header(req, "Skiff-Status", st);
	http_respond(req, 200, "application/octet-stream", call->result.base ? call->result.base : "",
		     call->result.len);
}

static void waiters_answer(fn_call *call)
{
	while (call->waiters) {
		result_waiter *w = call->waiters;
		http_req *req = w->req;

		waiter_remove(call, w);
		http_set_owner(req, NULL, NULL, NULL);
		respond_result(call, req);
	}
	call_maybe_free(call);
}

static void waiter_timeout(uv_timer_t *t)
{
	result_waiter *w = t->data;
	fn_call *call = w->call;
	http_req *req = w->req;

	waiter_remove(call, w);
	http_set_owner(req, NULL, NULL, NULL);
	http_add_header(req, "Skiff-Status", "pending");
	http_respond_json(req, 202, json_object());
	call_maybe_free(call);
}

static void waiter_abort(http_req *req, void *owner)
{
	result_waiter *w = owner;
	fn_call *call = w->call;

	waiter_remove(call, w);
	call_maybe_free(call);
}

void call_result(fn_call *call, http_req *req, double timeout)
{
	result_waiter *w;

	if (call->has_result) {
		respond_result(call, req);
		return;
	}
	if (timeout <= 0) {
		http_add_header(req, "Skiff-Status", "pending");
		http_respond_json(req, 202, json_object());
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->req = req;
	w->call = call;
	uv_timer_init(call->fn->fs->loop, &w->timer);
	w->timer.data = w;
	uv_timer_start(&w->timer, waiter_timeout, (uint64_t)(timeout * 1000), 0);
	w->next = call->waiters;
	call->waiters = w;
	http_set_owner(req, w, waiter_abort, NULL);
}

/* ---- cancel, stop --------------------------------------------------------------------- */

static void drop_chunks_of(fn_chunk **head, fn_chunk **tail, fn_call *call, uint64_t *backlog,
			   size_t *queued)
{
	fn_chunk *prev = NULL;

	for (fn_chunk *ch = *head, *next; ch; ch = next) {
		next = ch->next;
		if (call && ch->call != call) {
			prev = ch;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			*head = next;
		if (tail && *tail == ch)
			*tail = prev;
		if (backlog)
			*backlog -= ch->count;
		if (queued)
			(*queued)--;
		chunk_free(ch);
	}
}

void call_cancel(fn_call *call)
{
	fn_function *fn = call->fn;

	if (call->cancelled || call->complete)
		return;
	call->cancelled = true;
	call->refs++; /* keep it while its chunks go */
	drop_chunks_of(&fn->qhead, &fn->qtail, call, &fn->backlog, &fn->queued);
	drop_chunks_of(&fn->delayed, NULL, call, NULL, NULL);
	for (fn_container *fc = fn->containers; fc; fc = fc->next)
		for (fn_chunk *ch = fc->leases; ch; ch = ch->next)
			if (ch->call == call && fc->rc) {
				fc->stop_requested = true;
				rt_container_kill(fc->rc);
				break;
			}
	call_fail_all(call, "cancelled", "the function call was cancelled");
	call->refs--;
	call_maybe_free(call);
}

void app_stop(fn_app *a, const char *why)
{
	if (a->stopped)
		return;
	a->stopped = true;
	log_info("app %s (%s): stopping (%s)", a->id, a->name, why);
	deploy_app_stopped(a);
	for (fn_function *fn = a->functions; fn; fn = fn->next)
		function_stop(fn, why);
	rt_stream_close(&a->log);
	if (a->log_fd >= 0) {
		close(a->log_fd);
		a->log_fd = -1;
	}
}

void app_discard(fn_app *a)
{
	fn_server *fs = a->fs;
	_cleanup_free_ char *path = xasprintf("%s/%s.ndjson", fs->app_logs_dir, a->id);

	app_stop(a, "discarded");
	for (fn_app **pp = &fs->apps; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	a->next = fs->discarded;
	fs->discarded = a;
	if (a->log.data.len == 0)
		unlink(path);
}

/* ---- the server part --------------------------------------------------------------------- */

static void tick(uv_timer_t *t)
{
	fn_server *fs = t->data;
	double now = sk_wall_time();

	for (fn_app *a = fs->apps; a; a = a->next) {
		if (a->stopped) {
			/* Containers asked to stop that outstay their grace are killed. */
			for (fn_function *fn = a->functions; fn; fn = fn->next)
				for (fn_container *fc = fn->containers; fc; fc = fc->next)
					if (fc->state == FC_STOPPING && fc->rc && now > fc->stop_at &&
					    !fc->killed_for_timeout) {
						fc->killed_for_timeout = true;
						rt_container_kill(fc->rc);
					}
			continue;
		}
		if (a->ephemeral && !a->detached && now - a->last_hb > fs->heartbeat_timeout) {
			app_stop(a, "its client stopped sending heartbeats");
			continue;
		}
		for (fn_function *fn = a->functions; fn; fn = fn->next) {
			/* An older version's function keeps nothing idle. */
			int keep = fn->retired ? 0 : function_wanted(fn), up = 0;

			for (fn_container *fc = fn->containers; fc; fc = fc->next)
				up += fc->state == FC_STARTING ||
				      (fc->state == FC_READY && !fc->killed_for_idle);
			for (fn_container *fc = fn->containers; fc; fc = fc->next) {
				if (fc->state == FC_DEAD || !fc->rc)
					continue;
				if (fc->state == FC_STOPPING && now > fc->stop_at &&
				    !fc->killed_for_timeout) {
					fc->killed_for_timeout = fc->n_leases > 0;
					rt_container_kill(fc->rc);
				} else if (fc->n_leases && now - fc->last_frame > fn->timeout + 10 &&
					   !fc->killed_for_timeout) {
					log_warn("container %s (%s): silent for %.0f s with an input; "
						 "stopping it",
						 fc->id, fn->name, now - fc->last_frame);
					fc->killed_for_timeout = true;
					fc->stop_requested = true;
					rt_container_kill(fc->rc);
				} else if (fc->web_open && fn->timeout > 0 && !fc->killed_for_timeout &&
					   web_oldest_request(fc) > fn->timeout) {
					/* A web request past the function's timeout: as for inputs,
					 * its container goes, and the request gets a 504. */
					log_warn("container %s (%s): a web request has run %.0f s, past "
						 "the function's timeout; stopping it",
						 fc->id, fn->name, web_oldest_request(fc));
					fc->killed_for_timeout = true;
					fc->stop_requested = true;
					rt_container_kill(fc->rc);
				} else if (fc->state == FC_READY && !fc->n_leases && !fc->web_open &&
					   up > keep &&
					   (fn->retired || now - fc->idle_since > fn->scaledown_window) &&
					   !fc->killed_for_idle) {
					fc->killed_for_idle = true;
					up--;
					container_stop(fc, fn->exit_grace);
				}
			}
			/* min_containers, buffer_containers, and work waiting for room. */
			if (!fn->retired && (up < keep || fn->waiting_capacity))
				function_pump(fn);
		}
	}
	if (++fs->ticks % 5 == 0)
		usage_tick(fs->s);
	if (fs->ticks % 60 == 0)
		deploy_tick(fs);
	if (fs->ticks % 5 == 0 && !fs->stopping)
		pool_tick(fs);
	if (fs->ticks % 5 == 0)
		snap_tick(fs);
	/* Output of containers that ended 10 minutes ago is on disk only. */
	if (fs->s->rt)
		rt_prune(fs->s->rt, 600);
	/* Results nobody fetched (and spawned calls' kept results) expire an hour
	 * after their call is done. */
	for (fn_call *c = fs->calls, *next; c; c = next) {
		next = c->next;
		if (c->complete && now - c->done_at > 3600 && !c->poll && !c->waiters) {
			c->expired = c->delivered = true;
			call_maybe_free(c);
		}
	}
}

int fn_server_open(skiff_server *s, fn_server **out, sk_error *err)
{
	fn_server *fs = xcalloc(1, sizeof(*fs));
	const char *hb = getenv("SKIFF_HEARTBEAT_TIMEOUT");
	const char *sd = getenv("SKIFF_SCALEDOWN_WINDOW");

	fs->s = s;
	fs->loop = s->loop;
	fs->worker_sock = xasprintf("%s/run/worker.sock", s->home);
	fs->api_sock = xasprintf("%s/skiff.sock", s->home);
	fs->app_logs_dir = xasprintf("%s/logs/apps", s->home);
	fs->heartbeat_timeout = s->heartbeat_timeout > 0 ? s->heartbeat_timeout : 30;
	if (hb && atof(hb) > 0)
		fs->heartbeat_timeout = atof(hb);
	fs->scaledown_window = sd && atof(sd) > 0 ? atof(sd) : 60;
	{
		/* An app's log is kept up to this many bytes, on disk and in memory. */
		const char *lm = getenv("SKIFF_APP_LOG_MAX");
		double mib = lm && atof(lm) > 0 ? atof(lm) : 16;
		fs->app_log_max = (size_t)(mib * 1048576);
		if (fs->app_log_max < 4096)
			fs->app_log_max = 4096;
	}
	if (sk_mkdir_p(fs->app_logs_dir, 0700, err) < 0 || worker_listen(fs, err) < 0) {
		free(fs->worker_sock);
		free(fs->api_sock);
		free(fs->app_logs_dir);
		free(fs);
		return -1;
	}
	uv_timer_init(fs->loop, &fs->tick);
	fs->tick.data = fs;
	uv_timer_init(fs->loop, &fs->pool_timer);
	fs->pool_timer.data = fs;
	uv_timer_start(&fs->tick, tick, 1000, 1000);
	*out = fs;
	return 0;
}

void fn_server_stop(fn_server *fs)
{
	fs->stopping = true;
	for (fn_app *a = fs->apps; a; a = a->next)
		app_stop(a, "the server is stopping");
	uv_timer_stop(&fs->tick);
	uv_timer_stop(&fs->pool_timer);
	worker_close_all(fs);
}

void function_free(fn_function *fn)
{
	for (size_t i = 0; fn->env && fn->env[i]; i++)
		free(fn->env[i]);
	free(fn->env);
	free(fn->workdir);
	for (size_t i = 0; i < fn->n_mounts; i++) {
		free((char *)fn->mounts[i].source);
		free((char *)fn->mounts[i].destination);
	}
	free(fn->mounts);
	free(fn->name);
	free(fn->image_id);
	free(fn->rootfs);
	free(fn->init_hdr);
	free(fn->pickled);
	free(fn->broken);
	json_decref(fn->def);
	schedule_free(fn);
	snap_forget(fn);
	if (fn->web)
		free(fn->web->url);
	free(fn->web);
	free(fn);
}

/* After the loop has stopped: frees what is left. */
void fn_server_free(fn_server *fs)
{
	while (fs->calls) {
		fn_call *c = fs->calls;
		fs->calls = c->next;
		free(c->final);
		sk_buf_release(&c->out);
		sk_buf_release(&c->result);
		free(c);
	}
	/* The discarded ones too (their functions' timers were the loop's). */
	while (fs->discarded) {
		fn_app *a = fs->discarded;
		fs->discarded = a->next;
		a->next = fs->apps;
		fs->apps = a;
	}
	while (fs->apps) {
		fn_app *a = fs->apps;
		fs->apps = a->next;
		/* Live functions, then older versions' (deploy.c). */
		fn_function **lists[] = { &a->functions, &a->retired };
		for (size_t l = 0; l < 2; l++)
			for (fn_function **list = lists[l]; *list;) {
				fn_function *fn = *list;
				*list = fn->next;
				while (fn->containers) {
					fn_container *fc = fn->containers;
					fn->containers = fc->next;
					sk_buf_release(&fc->line[0]);
					sk_buf_release(&fc->line[1]);
					free(fc->pool_dir);
					free(fc);
				}
				function_free(fn);
			}
		json_decref(a->manifest);
		free(a->tag);
		rt_stream_release(&a->log);
		if (a->log_fd >= 0)
			close(a->log_fd);
		free(a->name);
		free(a);
	}
	pool_free(fs);
	free(fs->worker_sock);
	free(fs->api_sock);
	free(fs->app_logs_dir);
	free(fs);
}
