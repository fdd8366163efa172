/*
 * Functions: registration, the input queue of each function, dispatch of
 * input chunks to containers (they pull: docs/protocol.md), scaling the
 * containers up to the function's cap, retries, and what happens when a
 * container dies holding inputs.
 */
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/fn_internal.h"
#include "server/builds.h"
#include "web/gateway.h"
#include "server/usage.h"
#include "util/base64.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

#define MAX_DEATHS 3         /* a chunk whose containers die this often fails its input */
#define HINT_TARGET_S 0.02   /* chunk_hint aims at this much work per chunk */

/* ---- chunks and the queue --------------------------------------------------------------- */

void chunk_free(fn_chunk *ch)
{
	fn_call *call = ch->call;

	blob_unref(ch->blob);
	free(ch);
	call->refs--;
	call_maybe_free(call);
}

static void queue_push(fn_function *fn, fn_chunk *ch, bool front)
{
	ch->next = NULL;
	ch->queued_at = sk_wall_time();
	if (front) {
		ch->next = fn->qhead;
		fn->qhead = ch;
		if (!fn->qtail)
			fn->qtail = ch;
	} else {
		if (fn->qtail)
			fn->qtail->next = ch;
		else
			fn->qhead = ch;
		fn->qtail = ch;
	}
	fn->backlog += ch->count;
	fn->queued++;
}

static fn_chunk *queue_pop(fn_function *fn)
{
	fn_chunk *ch = fn->qhead;

	if (!ch)
		return NULL;
	fn->qhead = ch->next;
	if (!fn->qhead)
		fn->qtail = NULL;
	ch->next = NULL;
	fn->backlog -= ch->count;
	fn->queued--;
	return ch;
}

static size_t queue_chunks(const fn_function *fn)
{
	return fn->queued;
}

/* Fails every input of ch that has no final output yet. */
static void chunk_fail(fn_chunk *ch, const char *kind, const char *message)
{
	_cleanup_free_ char *js = system_error_json(kind, message);

	for (uint32_t i = 0; i < ch->count; i++) {
		uint32_t idx = ch->start + i;
		if (ch->call->kind == CALL_GEN || idx >= ch->call->final_cap || !ch->call->final[idx])
			call_output(ch->call, idx, ST_SYSTEM_ERROR, js, strlen(js));
	}
}

void function_enqueue(fn_function *fn, fn_call *call, uint32_t start, uint32_t count, fn_blob *blob,
		      size_t off, size_t len)
{
	fn_chunk *ch = xcalloc(1, sizeof(*ch));

	while (fn->retired && fn->successor)
		fn = fn->successor;

	ch->call = call;
	ch->start = start;
	ch->count = count;
	ch->blob = blob_ref(blob);
	ch->off = off;
	ch->len = len;
	call->refs++;
	if (call->total < start + count)
		call->total = start + count;
	call_grow(call, call->total);
	if (fn->broken || fn->app->stopped || call->cancelled || fn->retired) {
		chunk_fail(ch, fn->broken ? "import" : call->cancelled ? "cancelled" : "stopped",
			   fn->broken ? fn->broken
			   : call->cancelled ? "the function call was cancelled"
			   : fn->retired ? "the function is not in the app's deployed version any more"
					 : "the app has stopped");
		chunk_free(ch);
		return;
	}
	queue_push(fn, ch, false);
}

/* ---- retries ------------------------------------------------------------------------------- */

static void retry_fire(uv_timer_t *t);

static void retry_arm(fn_function *fn)
{
	double first = 0;

	for (fn_chunk *ch = fn->delayed; ch; ch = ch->next)
		if (!first || ch->due < first)
			first = ch->due;
	uv_timer_stop(&fn->retry_timer);
	if (first) {
		double ms = (first - sk_wall_time()) * 1000;
		uv_timer_start(&fn->retry_timer, retry_fire, ms > 0 ? (uint64_t)ms : 0, 0);
	}
}

static void retry_fire(uv_timer_t *t)
{
	fn_function *fn = t->data;
	double now = sk_wall_time() + 0.001;
	fn_chunk **pp = &fn->delayed;

	while (*pp) {
		fn_chunk *ch = *pp;
		if (ch->due <= now) {
			*pp = ch->next;
			queue_push(fn, ch, false);
		} else {
			pp = &ch->next;
		}
	}
	retry_arm(fn);
	function_pump(fn);
}

/* Schedules input idx again from its status-5 record; false when out of retries. */
static bool retry_input(fn_function *fn, fn_call *call, uint32_t idx, uint32_t retry,
			const unsigned char *args, size_t len)
{
	fn_chunk *ch;
	double delay;
	char *copy;

	if ((int)retry >= fn->max_retries || call->cancelled || fn->app->stopped)
		return false;
	delay = fn->initial_delay * pow(fn->backoff, retry);
	if (delay > fn->max_delay)
		delay = fn->max_delay;
	copy = xmalloc(len ? len : 1);
	memcpy(copy, args, len);
	ch = xcalloc(1, sizeof(*ch));
	ch->call = call;
	ch->start = idx;
	ch->count = 1;
	ch->retry = retry + 1;
	ch->blob = blob_new(copy, len);
	ch->len = len;
	ch->due = sk_wall_time() + delay;
	call->refs++;
	ch->next = fn->delayed;
	fn->delayed = ch;
	log_info("%s: input %s[%u] failed; retry %u of %d in %.2f s", fn->name, call->id, idx,
		 retry + 1, fn->max_retries, delay);
	retry_arm(fn);
	return true;
}

uint32_t function_chunk_hint(const fn_function *fn)
{
	double h;

	if (fn->avg_s <= 0)
		return 16;
	h = HINT_TARGET_S / fn->avg_s;
	return h < 1 ? 1 : h > 10000 ? 10000 : (uint32_t)h;
}

/* ---- containers ------------------------------------------------------------------------------ */

void output_lines(fn_function *fn, const char *container, sk_buf line[2], int fd,
		  const char *data, size_t len)
{
	sk_buf *b = &line[fd == 2];
	const char *nl;

	if (!fn->app || fn->app->stopped)
		return;
	while (len) {
		nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) + 1 : len;
		sk_buf_add(b, data, n);
		data += n;
		len -= n;
		if (nl || b->len > 16384) {
			app_log_line(fn->app, fn->name, container, fd, b->base, b->len);
			sk_buf_reset(b);
		}
	}
}

void output_lines_end(fn_function *fn, const char *container, sk_buf line[2])
{
	for (int i = 0; i < 2; i++) {
		if (line[i].len && fn && fn->app && !fn->app->stopped)
			app_log_line(fn->app, fn->name, container, i ? 2 : 1, line[i].base,
				     line[i].len);
		sk_buf_release(&line[i]);
	}
}

static void container_output(rt_container *c, int fd, const char *data, size_t len)
{
	fn_container *fc = c->user;

	output_lines(fc->fn, fc->id, fc->line, fd, data, len);
}

void container_ids(char id[20], char token[33])
{
	memcpy(id, "ct-", 3);
	sk_random_hex(id + 3, 8);
	sk_random_hex(token, 16);
}

char **container_env(fn_function *fn, const fn_container *fc)
{
	size_t n = 0, k = 0;
	char **env;

	while (fn->env && fn->env[n])
		n++;
	env = xcalloc(n + 14, sizeof(char *));
	env[k++] = xstrdup("SKIFF_WORKER_SOCKET=/skiff/run/worker.sock");
	env[k++] = xasprintf("SKIFF_CONTAINER_ID=%s", fc->id);
	env[k++] = xasprintf("SKIFF_CONTAINER_TOKEN=%s", fc->token);
	env[k++] = xstrdup("SKIFF_SERVER=unix:/skiff/run/api.sock");
	env[k++] = xasprintf("SKIFF_APP_ID=%s", fn->app->id);
	env[k++] = xasprintf("SKIFF_FUNCTION_ID=%s", fn->id);
	env[k++] = xstrdup("PYTHONUNBUFFERED=1");
	env[k++] = xstrdup("PYTHONDONTWRITEBYTECODE=1");
	size_t pp = k;
	env[k++] = xstrdup("PYTHONPATH=/skiff/sdk:/skiff/app:/skiff/extra");
	if (fc->n_gpus) {
		sk_buf ids = SK_BUF_INIT;
		for (int i = 0; i < fc->n_gpus; i++)
			sk_buf_addf(&ids, "%s%d", i ? "," : "", fn->fs->s->gpus[fc->gpus[i]].index);
		env[k++] = xasprintf("CUDA_VISIBLE_DEVICES=%s", ids.base);
		env[k++] = xasprintf("NVIDIA_VISIBLE_DEVICES=%s", ids.base);
		sk_buf_release(&ids);
	}
	for (size_t i = 0; i < n; i++) {
		/* The runtime's own module roots stay first on an image's or a user's PYTHONPATH. */
		if (!strncmp(fn->env[i], "PYTHONPATH=", 11)) {
			free(env[pp]);
			env[pp] = xasprintf(
				"PYTHONPATH=/skiff/sdk:/skiff/app:/skiff/extra:%s", fn->env[i] + 11);
			continue;
		}
		env[k++] = xstrdup(fn->env[i]);
	}
	return env;
}

static void gpus_release(skiff_server *s, fn_container *fc)
{
	for (int i = 0; i < fc->n_gpus; i++)
		s->gpu_owner[fc->gpus[i]][0] = 0;
	fc->n_gpus = 0;
}

/*
 * What a container with real GPUs needs from the host, bound read-only at the
 * same paths: its /dev/nvidia<N> nodes, the control and UVM nodes, and the
 * driver's user-space libraries and nvidia-smi.  Fake GPUs need nothing.
 */
static char **gpu_host_paths(skiff_server *s, fn_container *fc, size_t *n)
{
	static const char *const always[] = { "/dev/nvidiactl", "/dev/nvidia-uvm",
					      "/dev/nvidia-uvm-tools", "/usr/bin/nvidia-smi" };
	static const char *const libs[] = { "/usr/lib/x86_64-linux-gnu/libcuda.so*",
					    "/usr/lib/x86_64-linux-gnu/libnvidia-*.so*",
					    "/usr/lib64/libcuda.so*", "/usr/lib64/libnvidia-*.so*" };
	char **v = NULL;
	bool real = false;
	glob_t g;

	*n = 0;
	for (int i = 0; i < fc->n_gpus; i++) {
		gpu_dev *d = &s->gpus[fc->gpus[i]];
		if (d->fake)
			continue;
		real = true;
		v = xrealloc(v, (*n + 1) * sizeof(char *));
		v[(*n)++] = xasprintf("/dev/nvidia%d", d->index);
	}
	if (!real)
		return v;
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		if (access(always[i], F_OK) == 0) {
			v = xrealloc(v, (*n + 1) * sizeof(char *));
			v[(*n)++] = xstrdup(always[i]);
		}
	for (size_t i = 0; i < ARRAY_SIZE(libs); i++) {
		if (glob(libs[i], 0, NULL, &g) != 0)
			continue;
		for (size_t j = 0; j < g.gl_pathc; j++) {
			v = xrealloc(v, (*n + 1) * sizeof(char *));
			v[(*n)++] = xstrdup(g.gl_pathv[j]);
		}
		globfree(&g);
	}
	return v;
}

static void send_init(fn_container *fc);

/* fc (its runtime container up, started or taken warm) is fn's from now: listed, metered. */
static void container_started(fn_function *fn, fn_container *fc)
{
	skiff_server *s = fn->fs->s;

	fc->rc->user = fc;
	fc->rc->on_output = container_output;
	api_record_container(s, fc->rc);
	usage_started(s, fc->rc,
		      &(usage_info){ .kind = "function", .app_id = fn->app->id,
				     .app_name = fn->app->name, .function = fn->name,
				     .cpu_request = fn->cpu, .memory_request = fn->memory });
	fc->next = fn->containers;
	fn->containers = fc;
	fn->n_containers++;
	fn->n_starting++;
	fn->n_started_total++;
}

static void container_start(fn_function *fn)
{
	fn_server *fs = fn->fs;
	fn_container *fc = xcalloc(1, sizeof(*fc));
	static const char *const argv[] = { "python3", "-m", "skiff._container", NULL };
	oci_mount *mounts = xcalloc(fn->n_mounts + 2, sizeof(oci_mount));
	char **env;
	rt_spec spec = { 0 };
	sk_error err;

	container_ids(fc->id, fc->token);
	fc->fn = fn;
	fc->state = FC_STARTING;
	fc->started_at = fc->last_frame = sk_wall_time();
	/* Placement: since the work at the head of the queue (the oldest) asked for a
	 * container; not a walk of the queue, which may hold a whole map. */
	fc->demand_at = fc->started_at;
	if (fn->qhead && fn->qhead->queued_at && fn->qhead->queued_at < fc->demand_at)
		fc->demand_at = fn->qhead->queued_at;
	if (web_oldest_queued(fn) && web_oldest_queued(fn) < fc->demand_at)
		fc->demand_at = web_oldest_queued(fn);
	if (snap_take(fn, fc)) {
		/* A fork of the function's template (made now if there was none; or
		 * its spare, forked ahead, which needs only its init frame). */
		free(mounts);
		container_started(fn, fc);
		if (fc->w) {
			fc->attach_at = sk_wall_time();
			send_init(fc);
		}
		log_info("%s: container %s from snapshot template %s (%d running)", fn->name, fc->id,
			 fc->tpl_id, fn->n_containers);
		return;
	}
	if (pool_take(fn, fc)) {
		/* A warm container: its interpreter is up; it gets the function now. */
		free(mounts);
		container_started(fn, fc);
		fc->attach_at = sk_wall_time();
		send_init(fc);
		log_info("%s: took warm container %s (%d running)", fn->name, fc->id,
			 fn->n_containers);
		return;
	}
	/* GPUs: the first free ones of the type asked for. */
	for (size_t i = 0; i < fs->s->n_gpus && fc->n_gpus < fn->gpu_count; i++)
		if (!fs->s->gpu_owner[i][0] && gpu_matches(fn->gpu_type, fs->s->gpus[i].type)) {
			snprintf(fs->s->gpu_owner[i], sizeof(fs->s->gpu_owner[i]), "%s", fc->id);
			fc->gpus[fc->n_gpus++] = (int)i;
		}
	size_t n_gpu_mounts = 0;
	_cleanup_free_ char **gpu_paths = gpu_host_paths(fs->s, fc, &n_gpu_mounts);
	mounts = xrealloc(mounts, (fn->n_mounts + 2 + n_gpu_mounts) * sizeof(oci_mount));
	memcpy(mounts, fn->mounts, fn->n_mounts * sizeof(oci_mount));
	mounts[fn->n_mounts] = (oci_mount){ fs->worker_sock, "/skiff/run/worker.sock", false, false };
	mounts[fn->n_mounts + 1] = (oci_mount){ fs->api_sock, "/skiff/run/api.sock", false, false };
	for (size_t i = 0; i < n_gpu_mounts; i++)
		mounts[fn->n_mounts + 2 + i] = (oci_mount){ gpu_paths[i], gpu_paths[i], true, false };
	env = container_env(fn, fc);
	spec.id = fc->id;
	spec.image_id = fn->image_id;
	spec.lower = fn->rootfs;
	spec.argv = argv;
	spec.env = (const char *const *)env;
	spec.workdir = fn->workdir ? fn->workdir : "/skiff/app";
	spec.cpu = fn->cpu;
	spec.memory = fn->memory;
	spec.timeout = 86400;
	/* A web_server's port is its own: each container gets a network namespace
	 * (loopback only) so that its replicas and the gateway never collide. */
	spec.block_network = fn->block_network || (fn->web && fn->web->kind == WEB_SERVER);
	spec.mounts = mounts;
	spec.n_mounts = fn->n_mounts + 2 + n_gpu_mounts;
	spec.gpu_devices = n_gpu_mounts > 0;
	if (rt_container_start(fs->s->rt, &spec, &fc->rc, &err) < 0) {
		gpus_release(fs->s, fc);
		log_error("%s: cannot start a container: %s", fn->name, err.msg);
		free(fn->broken);
		fn->broken = xasprintf("cannot start a container for %s: %s", fn->name, err.msg);
		free(fc);
	} else {
		container_started(fn, fc);
		log_info("%s: started container %s (%d running)", fn->name, fc->id, fn->n_containers);
	}
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	free(mounts);
	for (size_t i = 0; i < n_gpu_mounts; i++)
		free(gpu_paths[i]);
	if (fn->broken) {
		/* Nothing can run: fail what waits. */
		while (fn->qhead) {
			fn_chunk *ch = queue_pop(fn);
			chunk_fail(ch, "crash", fn->broken);
			chunk_free(ch);
		}
	}
}

/*
 * Queued work counts for scaling up once it has waited this long for the
 * containers already up (all of it counts when none is): a burst that the
 * running containers clear in a few milliseconds starts no new ones.
 */
#define SCALE_WAIT 0.02
/*
 * A container without a cpu request reserves no CPU (it shares the cores, as
 * Modal's default request is a soft 0.125); without a memory request it is
 * counted for 128 MiB.  Requests reserve: what does not fit waits.
 */
#define DEFAULT_CPU 0.0
#define DEFAULT_MEMORY 128

/* The most containers of fn this machine could ever hold, and max_containers. */
static int container_cap(const fn_function *fn)
{
	const skiff_server *s = fn->fs->s;
	long long per_mem = fn->memory > 0 ? fn->memory : DEFAULT_MEMORY;
	int cap = fn->cpu > 0 ? (int)floor((s->cpus - s->reserve_cpu) / fn->cpu + 1e-9) : 100000;

	if ((s->memory_mib - s->reserve_memory) / per_mem < cap)
		cap = (int)((s->memory_mib - s->reserve_memory) / per_mem);
	if (fn->gpu_count) {
		int n = 0;
		for (size_t i = 0; i < s->n_gpus; i++)
			n += gpu_matches(fn->gpu_type, s->gpus[i].type);
		if (n / fn->gpu_count < cap)
			cap = n / fn->gpu_count;
	}
	if (cap < 1)
		cap = 1;
	if (fn->max_containers > 0 && fn->max_containers < cap)
		cap = fn->max_containers;
	return cap;
}

/* Whether one more container of fn fits in what running containers leave free. */
static bool fits_now(const fn_function *fn)
{
	skiff_server *s = fn->fs->s;
	double cpu = 0;
	long long mem = 0;

	for (rt_container *c = rt_containers(s->rt); c; c = c->next) {
		if (c->state != RT_RUNNING)
			continue;
		cpu += c->cpu > 0 ? c->cpu : DEFAULT_CPU;
		mem += c->memory > 0 ? c->memory : DEFAULT_MEMORY;
	}
	cpu += fn->cpu > 0 ? fn->cpu : DEFAULT_CPU;
	mem += fn->memory > 0 ? fn->memory : DEFAULT_MEMORY;
	if (fn->gpu_count) {
		int free_gpus = 0;
		for (size_t i = 0; i < s->n_gpus; i++)
			free_gpus += !s->gpu_owner[i][0] && gpu_matches(fn->gpu_type, s->gpus[i].type);
		if (free_gpus < fn->gpu_count)
			return false;
	}
	return cpu <= s->cpus - s->reserve_cpu + 1e-9 && mem <= s->memory_mib - s->reserve_memory;
}

json_t *cold_start_json(const fn_container *fc)
{
	json_t *j;

	if (!fc->ready_at)
		return NULL;
	j = json_pack("{s:f, s:f, s:b}", "placement_ms", (fc->started_at - fc->demand_at) * 1000,
		      "ready_ms", (fc->ready_at - fc->started_at) * 1000, "warm", fc->pooled);
	if (fc->snap && fc->forked && fc->py_t0 > 0) {
		/* A fork of the template: preparing its root and box, the fork asked
		 * for (waiting for the template when it was being made), the child's
		 * namespaces and root; then its hello, its snap=False hooks. */
		json_object_set_new(j, "snapshot", json_true());
		json_object_set_new(j, "spare", json_boolean(fc->spare));
		json_object_set_new(j, "template", json_string(fc->tpl_id));
		json_object_set_new(j, "prepare_ms", json_real((fc->fork_at - fc->started_at) * 1000));
		json_object_set_new(j, "fork_ms", json_real((fc->py_t0 - fc->fork_at) * 1000));
		json_object_set_new(j, "setup_ms", json_real(fc->setup_ms));
		json_object_set_new(j, "attach_ms", json_real((fc->attach_at - fc->py_t0) * 1000));
		json_object_set_new(j, "import_ms", json_real(0));
		json_object_set_new(j, "enter_ms", json_real(fc->enter_ms));
		json_object_set_new(j, "first_input_ms",
				    fc->first_input_at
					    ? json_real((fc->first_input_at - fc->started_at) * 1000)
					    : json_null());
		return j;
	}
	if (fc->py_t0 > 0) {
		/* runc create and start, exec, and the interpreter's own start (a warm
		 * container: taking it, mounting the code, the init frame's way). */
		json_object_set_new(j, "runtime_ms", json_real((fc->py_t0 - fc->started_at) * 1000));
		/* From our first line to the worker socket: the SDK's runtime loaded
		 * (a warm container had it loaded already). */
		json_object_set_new(j, "interpreter_ms",
				    json_real(fc->pooled ? 0 : (fc->attach_at - fc->py_t0) * 1000));
		json_object_set_new(j, "import_ms", json_real(fc->import_ms));
		json_object_set_new(j, "enter_ms", json_real(fc->enter_ms));
	}
	json_object_set_new(j, "first_input_ms",
			    fc->first_input_at ? json_real((fc->first_input_at - fc->started_at) * 1000)
					       : json_null());
	return j;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return x < y ? -1 : x > y;
}

void cold_start_stats(const fn_function *fn, double *median, double *p90)
{
	size_t n = fn->cold_starts < 64 ? (size_t)fn->cold_starts : 64;
	float v[64];

	*median = *p90 = 0;
	if (!n)
		return;
	memcpy(v, fn->cold_ms, n * sizeof(float));
	qsort(v, n, sizeof(float), cmp_float);
	*median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	*p90 = v[(size_t)((double)(n - 1) * 0.9 + 0.5)];
}

static void send_chunk(fn_container *fc, fn_chunk *ch)
{
	if (!fc->first_input_at)
		fc->first_input_at = sk_wall_time();
	json_t *hdr = json_pack("{s:s, s:s, s:I, s:I, s:I}", "t", "input", "call", ch->call->id,
				"start", (json_int_t)ch->start, "count", (json_int_t)ch->count, "retry",
				(json_int_t)ch->retry);

	if (ch->requeued) {
		json_t *skip = json_array();
		for (uint32_t i = 0; i < ch->count; i++) {
			uint32_t idx = ch->start + i;
			if (idx < ch->call->final_cap && ch->call->final[idx])
				json_array_append_new(skip, json_integer(idx));
		}
		json_object_set_new(hdr, "skip", skip);
	}
	ch->next = fc->leases;
	fc->leases = ch;
	fc->n_leases++;
	fc->want--;
	ch->lease_at = sk_wall_time();
	if (fc->n_leases == 1)
		fc->last_frame = ch->lease_at;
	fc->fn->running += ch->count;
	worker_send(fc->w, hdr, ch->blob, ch->blob->base + ch->off, ch->len);
}

/*
 * How many containers may compute at once: a function that keeps a core
 * busy gains nothing from more busy containers than the machine has cores
 * (they only take turns), while one that mostly waits (I/O, sleep) may have
 * many.  Unlimited until measured, and when it asked for cpu explicitly.
 */
static int busy_limit(const fn_function *fn)
{
	int lim;

	if (fn->cpu > 0 || fn->cpu_frac < 0.3)
		return 1 << 30;
	lim = (int)floor(fn->fs->s->cpus / fn->cpu_frac + 0.5);
	return lim < 1 ? 1 : lim;
}

static int busy_containers(const fn_function *fn)
{
	int n = 0;

	for (fn_container *fc = fn->containers; fc; fc = fc->next)
		n += fc->n_leases > 0;
	return n;
}

static bool can_take(const fn_container *fc)
{
	return !fc->fn->retired && fc->state == FC_READY && fc->w && !fc->killed_for_idle && !fc->killed_for_timeout &&
	       fc->want > 0 && fc->n_leases < fc->fn->max_inputs;
}

static size_t leased_chunks(const fn_function *fn)
{
	size_t n = 0;

	for (fn_container *fc = fn->containers; fc; fc = fc->next)
		n += (size_t)fc->n_leases;
	return n;
}

/* Containers not on their way out. */
static int active_containers(const fn_function *fn)
{
	int n = 0;

	for (fn_container *fc = fn->containers; fc; fc = fc->next)
		n += fc->state == FC_STARTING || (fc->state == FC_READY && !fc->killed_for_idle);
	return n;
}

/*
 * How many containers the function wants now: enough for the chunks waiting
 * and running at target_inputs each — unless what waits is so little work
 * (by the measured time per input) that the containers up already finish it
 * sooner than a new one could start — plus buffer_containers while busy,
 * at least min_containers, at most the cap.
 */
/*
 * Queued chunks that have waited SCALE_WAIT, counted up to limit (more
 * cannot change the answer, and a long queue is not walked on every event);
 * with next_due, the whole queue is walked for when the next one will count.
 */
static size_t waited_chunks(const fn_function *fn, size_t limit, double *next_due)
{
	double now = sk_wall_time();
	size_t n = 0;

	for (fn_chunk *ch = fn->qhead; ch && (next_due || n < limit); ch = ch->next) {
		if (now - ch->queued_at >= SCALE_WAIT)
			n++;
		else if (next_due && (!*next_due || ch->queued_at + SCALE_WAIT < *next_due))
			*next_due = ch->queued_at + SCALE_WAIT;
	}
	return n;
}

int function_wanted(const fn_function *fn)
{
	int up = active_containers(fn);
	int per = fn->target_inputs > 0 ? fn->target_inputs : fn->max_inputs;
	size_t limit = (size_t)container_cap(fn) * (size_t)per;
	size_t queued = up ? waited_chunks(fn, limit, NULL) : queue_chunks(fn);
	size_t work = queued + leased_chunks(fn) + web_demand(fn);
	int want = (int)((work + (size_t)per - 1) / (size_t)per);
	double start_s = fn->cold_starts ? fn->cold_start_ms_sum / fn->cold_starts / 1000 : 0.2;

	if (fn->avg_s > 0 && up > 0 && want > up) {
		double queued_s = (double)fn->backlog * fn->avg_s / up;
		if (queued_s < start_s)
			want = up;
	}
	/* Web requests: the same test, by the measured time per request. */
	if (fn->web && fn->web->avg_s > 0 && up > 0 && want > up &&
	    (double)web_queued(fn) * fn->web->avg_s / up < start_s)
		want = up;
	if (want > busy_limit(fn))
		want = busy_limit(fn);
	if (work > 0)
		want += fn->buffer_containers;
	if (want < fn->min_containers)
		want = fn->min_containers;
	if (want > container_cap(fn))
		want = container_cap(fn);
	return want;
}

static void scale_fire(uv_timer_t *t)
{
	function_pump(t->data);
}

void function_pump(fn_function *fn)
{
	int want, up;
	double due = 0;

	if (fn->app->stopped)
		return;
	if (fn->retired) {
		/* Its containers finish what they hold, then go. */
		for (fn_container *fc = fn->containers; fc; fc = fc->next)
			if (fc->state == FC_READY && !fc->n_leases && !fc->web_open)
				container_stop(fc, fn->exit_grace);
			else if (fc->state == FC_STARTING)
				container_stop(fc, 0);
		if (!fn->containers)
			function_reap(fn);
		return;
	}
	if (fn->recreate) {
		/* recreate: no container of this version while an older one runs. */
		for (fn_function *o = fn->app->functions; o; o = o->next)
			if (o->retired && o->containers && !strcmp(o->name, fn->name))
				return;
		fn->recreate = false;
	}
	web_pump(fn);
	int busy = busy_containers(fn), limit = busy_limit(fn);

	for (fn_container *fc = fn->containers; fc && fn->qhead; fc = fc->next) {
		if (!fc->n_leases && busy >= limit)
			continue;
		busy += can_take(fc) && !fc->n_leases;
		while (fn->qhead && can_take(fc))
			send_chunk(fc, queue_pop(fn));
	}
	if (fn->broken)
		return;
	/* Work still waiting: look again when it has waited long enough to count. */
	if (fn->qhead && !uv_is_active((uv_handle_t *)&fn->scale_timer)) {
		waited_chunks(fn, 0, &due);
		if (due) {
			double ms = (due - sk_wall_time()) * 1000 + 1;
			uv_timer_start(&fn->scale_timer, scale_fire, ms > 0 ? (uint64_t)ms : 1, 0);
		}
	}
	want = function_wanted(fn);
	up = active_containers(fn);
	fn->waiting_capacity = false;
	while (up < want && !fn->broken) {
		if (!fits_now(fn)) {
			fn->waiting_capacity = true;
			break;
		}
		container_start(fn);
		up++;
	}
}

void function_prewarm(fn_function *fn, int n)
{
	int up = active_containers(fn);

	if (n > container_cap(fn))
		n = container_cap(fn);
	while (up < n && !fn->broken && !fn->app->stopped && !fn->recreate && fits_now(fn)) {
		container_start(fn);
		up++;
	}
}

/* Asks a container to finish what it holds, run its exit hooks and go. */
void container_stop(fn_container *fc, double grace)
{
	if (fc->state == FC_DEAD || fc->state == FC_STOPPING || !fc->rc)
		return;
	fc->stop_requested = true;
	if (!fc->w || fc->state == FC_STARTING || grace <= 0) {
		if (fc->state == FC_READY)
			fc->state = FC_STOPPING;
		rt_container_kill(fc->rc);
		return;
	}
	fc->state = FC_STOPPING;
	fc->stop_at = sk_wall_time() + grace;
	worker_send(fc->w, json_pack("{s:s}", "t", "stop"), NULL, NULL, 0);
}

/* Fails the function's queued and delayed chunks as "stopped", and its queued web requests. */
static void fail_waiting(fn_function *fn, const char *msg)
{
	while (fn->qhead) {
		fn_chunk *ch = queue_pop(fn);
		chunk_fail(ch, "stopped", msg);
		chunk_free(ch);
	}
	while (fn->delayed) {
		fn_chunk *ch = fn->delayed;
		fn->delayed = ch->next;
		chunk_fail(ch, "stopped", msg);
		chunk_free(ch);
	}
	web_function_stop(fn, msg);
}

void function_stop(fn_function *fn, const char *why)
{
	_cleanup_free_ char *msg = xasprintf("the app has stopped (%s)", why);

	fail_waiting(fn, msg);
	uv_timer_stop(&fn->retry_timer);
	uv_timer_stop(&fn->scale_timer);
	snap_drop(fn, true);
	for (fn_container *fc = fn->containers; fc; fc = fc->next) {
		for (fn_chunk *ch = fc->leases; ch; ch = ch->next)
			chunk_fail(ch, "stopped", msg);
		/* Idle ones get to run their exit hooks; busy ones are stopped now. */
		container_stop(fc, fc->n_leases || fc->web_open ? 0 : fn->exit_grace);
	}
	for (fn_call *c = fn->fs->calls; c; c = c->next)
		if (c->fn == fn && !c->complete)
			call_fail_all(c, "stopped", msg);
}

fn_function *function_find(fn_server *fs, const char *id)
{
	for (fn_app *a = fs->apps; a; a = a->next)
		for (fn_function *fn = a->functions; fn; fn = fn->next)
			if (!fn->retired && !strcmp(fn->id, id))
				return fn;
	return NULL;
}

void function_retire(fn_function *fn, fn_function *succ)
{
	fn->retired = true;
	fn->successor = succ;
	schedule_stop(fn);
	snap_drop(fn, false); /* once its forks have finished what they hold */
	uv_timer_stop(&fn->retry_timer);
	uv_timer_stop(&fn->scale_timer);
	/* Older versions that sent their work here now send it on. */
	for (fn_function *o = fn->app->functions; o; o = o->next)
		if (o->retired && o->successor == fn)
			o->successor = succ;
	if (succ) {
		while (fn->qhead) {
			fn_chunk *ch = queue_pop(fn);
			queue_push(succ, ch, false);
		}
		while (fn->delayed) {
			fn_chunk *ch = fn->delayed;
			fn->delayed = ch->next;
			ch->next = succ->delayed;
			succ->delayed = ch;
		}
		if (succ->delayed)
			retry_arm(succ);
		for (fn_call *c = fn->fs->calls; c; c = c->next)
			if (c->fn == fn)
				c->fn = succ;
		web_function_move(fn, succ);
	} else {
		fail_waiting(fn, "the function is not in the app's deployed version any more");
	}
	log_info("app %s: %s %s retired%s", fn->app->name, fn->name, fn->id,
		 fn->containers ? "; its containers finish what they hold" : "");
	function_pump(fn);
}

void function_reap(fn_function *fn)
{
	fn_app *a = fn->app;

	for (fn_function **pp = &a->functions; *pp; pp = &(*pp)->next)
		if (*pp == fn) {
			*pp = fn->next;
			fn->next = a->retired;
			a->retired = fn;
			break;
		}
	/* recreate: the next version may start now. */
	for (fn_function *o = a->functions; o; o = o->next)
		if (o->recreate && !strcmp(o->name, fn->name))
			function_pump(o);
}

/* ---- the worker protocol ---------------------------------------------------------------------- */

/* The init frame: the function's header, and for a warm container its env and folder. */
static void send_init(fn_container *fc)
{
	fn_function *fn = fc->fn;
	json_error_t jerr;
	json_t *hdr = json_loads(fn->init_hdr, 0, &jerr);

	if (fc->pooled) {
		char **env = container_env(fn, fc);
		json_t *e = json_array();
		for (size_t i = 0; env[i]; i++) {
			json_array_append_new(e, json_string(env[i]));
			free(env[i]);
		}
		free(env);
		json_object_set_new(hdr, "warm",
				    json_pack("{s:o, s:s}", "env", e, "workdir",
					      fn->workdir ? fn->workdir : "/skiff/app"));
	}
	worker_send(fc->w, hdr, NULL, fn->pickled, fn->pickled ? fn->pickled_len : 0);
}

void container_attach(fn_server *fs, worker *w, const char *id, const char *token)
{
	if (snap_attach(fs, w, id, token) || pool_attach(fs, w, id, token))
		return;
	for (fn_app *a = fs->apps; a; a = a->next)
		for (fn_function *fn = a->functions; fn; fn = fn->next)
			for (fn_container *fc = fn->containers; fc; fc = fc->next) {
				if (strcmp(fc->id, id) || fc->w || fc->state != FC_STARTING)
					continue;
				if (strcmp(fc->token, token))
					break;
				if (fc->snap && !snap_adopt(fc, w)) {
					rt_container_kill(fc->rc);
					break;
				}
				fc->w = w;
				w->fc = fc;
				if (!fc->snap) {
					fc->attach_at = sk_wall_time();
					send_init(fc);
				} /* else container_adopted, once it is in its box */
				return;
			}
	log_warn("worker: a connection said hello as an unknown container %s; closing it", id);
	worker_close(w);
}

void container_adopted(fn_container *fc)
{
	fc->attach_at = sk_wall_time();
	send_init(fc);
}

/* The chunk of call starting at start that fc holds, unlinked; NULL if none. */
static fn_chunk *lease_take(fn_container *fc, const char *call_id, uint32_t start)
{
	for (fn_chunk **pp = &fc->leases; *pp; pp = &(*pp)->next) {
		fn_chunk *ch = *pp;
		if (ch->start == start && !strcmp(ch->call->id, call_id)) {
			*pp = ch->next;
			ch->next = NULL;
			fc->n_leases--;
			return ch;
		}
	}
	return NULL;
}

/* The held chunk of call that holds input idx. */
static fn_chunk *lease_of(fn_container *fc, const fn_call *call, uint32_t idx)
{
	for (fn_chunk *ch = fc->leases; ch; ch = ch->next)
		if (ch->call == call && idx >= ch->start && idx - ch->start < ch->count)
			return ch;
	return NULL;
}

/* busy: the seconds the container says it spent on the chunk (< 0: unknown). */
static void lease_done(fn_container *fc, fn_chunk *ch, double busy)
{
	fn_function *fn = fc->fn;

	if (busy < 0)
		busy = sk_wall_time() - ch->lease_at;
	fn->w_time = 0.7 * fn->w_time + busy;
	fn->w_count = 0.7 * fn->w_count + ch->count;
	fn->avg_s = fn->w_count > 0 ? fn->w_time / fn->w_count : 0;
	if (fn->avg_s <= 0)
		fn->avg_s = 1e-9;
	/* How much of its time the function computes: CPU time over busy time. */
	if (fc->rc && busy >= 0.0005) {
		long long ns = cg_box_cpu_usage_ns(&fn->fs->s->cg, &fc->rc->box);
		if (ns > 0 && fc->cpu_ns_last > 0 && ns >= fc->cpu_ns_last) {
			double frac = (double)(ns - fc->cpu_ns_last) / 1e9 / busy;
			if (frac > 64)
				frac = 64;
			fn->cpu_frac = fn->cpu_frac > 0 ? 0.7 * fn->cpu_frac + 0.3 * frac : frac;
		}
		if (ns > 0)
			fc->cpu_ns_last = ns;
	} else if (fc->rc && !fc->cpu_ns_last) {
		fc->cpu_ns_last = cg_box_cpu_usage_ns(&fn->fs->s->cg, &fc->rc->box);
	}
	fn->running -= ch->count;
	fc->inputs_served += ch->count;
	if (fc->rc)
		usage_update(fn->fs->s, fc->rc, fc->inputs_served);
	if (!fc->n_leases)
		fc->idle_since = sk_wall_time();
	chunk_free(ch);
}

static void handle_outputs(fn_container *fc, const char *call_id, const unsigned char *p,
			   size_t len)
{
	fn_function *fn = fc->fn;
	fn_call *call = NULL;

	for (fn_chunk *ch = fc->leases; ch && !call; ch = ch->next)
		if (!strcmp(ch->call->id, call_id))
			call = ch->call;
	if (!call)
		call = call_find(fn->fs, call_id);
	if (!call)
		return; /* cancelled and gone */
	call->refs++;
	while (len >= 9) {
		uint32_t idx = get_u32(p), n = get_u32(p + 5);
		uint8_t status = p[4];

		if (n > len - 9)
			break;
		const unsigned char *payload = p + 9;
		p += 9 + n;
		len -= 9 + n;
		if (status == ST_RETRY_ARGS)
			continue;
		if (status == ST_BATCH_OK) {
			if (n >= 4)
				call_output_batch(call, idx, get_u32(payload), payload, n);
			continue;
		}
		bool retryable = status == ST_USER_ERROR || status == ST_SYSTEM_ERROR;
		/* A failed input with its arguments right behind may be retried. */
		if (retryable && call->kind != CALL_GEN && len >= 9 && get_u32(p) == idx &&
		    p[4] == ST_RETRY_ARGS && get_u32(p + 5) <= len - 9) {
			uint32_t an = get_u32(p + 5);
			fn_chunk *held = lease_of(fc, call, idx);
			uint32_t retry = held ? held->retry : 0;
			if (retry_input(fn, call, idx, retry, p + 9, an)) {
				p += 9 + an;
				len -= 9 + an;
				continue;
			}
		}
		call_output(call, idx, status, payload, n);
	}
	call->refs--;
	call_maybe_free(call);
}

void function_broken(fn_function *fn, const char *why)
{
	if (fn->broken)
		return;
	fn->broken = xstrdup(why);
	while (fn->qhead) {
		fn_chunk *ch = queue_pop(fn);
		chunk_fail(ch, "import", fn->broken);
		chunk_free(ch);
	}
	web_function_stop(fn, "its function failed to load; see `skiff app logs`");
}

void container_frame(fn_container *fc, json_t *hdr, const unsigned char *body, size_t len)
{
	fn_function *fn = fc->fn;
	const char *t = json_string_value(json_object_get(hdr, "t"));

	fc->last_frame = sk_wall_time();
	if (!t)
		return;
	if (t[0] == 'w' && t[1] != 'a') { /* web frames (not "want") */
		web_container_frame(fc, t, hdr, body, len);
		return;
	}
	if (!strcmp(t, "ready")) {
		if (fc->state == FC_STARTING) {
			fc->state = FC_READY;
			fc->ready_at = fc->idle_since = sk_wall_time();
			if (fc->snap)
				snap_refill(fn);
			fn->n_starting--;
			fn->cold_ms[fn->cold_starts % 64] = (float)((fc->ready_at - fc->started_at) * 1000);
			fn->cold_starts++;
			fn->cold_start_ms_sum += (fc->ready_at - fc->started_at) * 1000;
			if (fc->py_t0 > 0 && fc->snap)
				log_info("%s: container %s ready in %.1f ms (snapshot: placement %.1f, "
					 "prepare %.1f, fork %.1f, setup %.1f, attach %.1f, enter %.1f)",
					 fn->name, fc->id, (fc->ready_at - fc->started_at) * 1000,
					 (fc->started_at - fc->demand_at) * 1000,
					 (fc->fork_at - fc->started_at) * 1000,
					 (fc->py_t0 - fc->fork_at) * 1000, fc->setup_ms,
					 (fc->attach_at - fc->py_t0) * 1000, fc->enter_ms);
			else if (fc->py_t0 > 0 && fc->pooled)
				log_info("%s: container %s ready in %.1f ms (warm: placement %.1f, "
					 "taking it %.1f, import %.1f, enter %.1f)",
					 fn->name, fc->id, (fc->ready_at - fc->started_at) * 1000,
					 (fc->started_at - fc->demand_at) * 1000,
					 (fc->py_t0 - fc->started_at) * 1000, fc->import_ms, fc->enter_ms);
			else if (fc->py_t0 > 0)
				log_info("%s: container %s ready in %.0f ms (placement %.1f, runtime "
					 "and interpreter start %.1f, runtime load %.1f, import %.1f, "
					 "enter %.1f)",
					 fn->name, fc->id, (fc->ready_at - fc->started_at) * 1000,
					 (fc->started_at - fc->demand_at) * 1000,
					 (fc->py_t0 - fc->started_at) * 1000,
					 (fc->attach_at - fc->py_t0) * 1000, fc->import_ms, fc->enter_ms);
			else
				log_info("%s: container %s ready in %.0f ms", fn->name, fc->id,
					 (fc->ready_at - fc->started_at) * 1000);
		}
	} else if (!strcmp(t, "startup")) {
		json_t *x;
		if ((x = json_object_get(hdr, "t0")) && json_is_number(x) && !fc->spare)
			fc->py_t0 = json_number_value(x); /* a spare's is when it was forked */
		if ((x = json_object_get(hdr, "import_ms")) && json_is_number(x))
			fc->import_ms = json_number_value(x);
		if ((x = json_object_get(hdr, "enter_ms")) && json_is_number(x))
			fc->enter_ms = json_number_value(x);
		if ((x = json_object_get(hdr, "setup_ms")) && json_is_number(x) && !fc->spare)
			fc->setup_ms = json_number_value(x);
	} else if (!strcmp(t, "import_error")) {
		const char *msg = json_string_value(json_object_get(hdr, "message"));
		if (!fn->broken)
			log_warn("%s: import failed in container %s; its inputs fail", fn->name, fc->id);
		function_broken(fn, msg ? msg : "the function's module failed to import");
	} else if (!strcmp(t, "want")) {
		json_int_t n = json_integer_value(json_object_get(hdr, "n"));
		fc->want += n > 0 ? (int)n : 1;
	} else if (!strcmp(t, "output")) {
		const char *call = json_string_value(json_object_get(hdr, "call"));
		if (call)
			handle_outputs(fc, call, body, len);
		return; /* outputs alone never free a container's capacity */
	} else if (!strcmp(t, "done")) {
		json_t *busy = json_object_get(hdr, "busy");
		const char *call = json_string_value(json_object_get(hdr, "call"));
		fn_chunk *ch = call ? lease_take(fc, call, (uint32_t)json_integer_value(
							   json_object_get(hdr, "start")))
				    : NULL;
		if (ch)
			lease_done(fc, ch, json_is_number(busy) ? json_number_value(busy) : -1);
		if (fc->state == FC_STOPPING)
			return;
	}
	function_pump(fn);
}

/* ---- a container's end ------------------------------------------------------------------------- */

char *output_tail(rt_container *c)
{
	size_t n = c->log.data.len, keep = n > 1500 ? 1500 : n;

	return xstrndup(c->log.data.base ? c->log.data.base + n - keep : "", keep);
}

bool fn_container_exited(fn_server *fs, rt_container *c)
{
	fn_container *fc;
	fn_function *fn;

	if (!fs || strncmp(c->id, "ct-", 3))
		return false;
	if (snap_exited(fs, c)) /* a snapshot template (its user is its snap_tpl) */
		return true;
	if (!(fc = c->user))
		return pool_exited(fs, c);
	fn = fc->fn;
	usage_ended(fs->s, c, fc->inputs_served);
	gpus_release(fs->s, fc);
	output_lines_end(fn, fc->id, fc->line);
	if (fc->state == FC_STARTING)
		fn->n_starting--;
	if (fc->state == FC_STARTING && !fn->broken && !fn->app->stopped && !fc->stop_requested) {
		_cleanup_free_ char *tail = output_tail(c);
		fn->broken = xasprintf("the container of %s exited with %d%s before the function was "
				       "ready; its last output:\n%s",
				       fn->name, c->returncode, c->oom ? " (out of memory)" : "", tail);
		log_warn("%s: container %s exited before it was ready", fn->name, fc->id);
		while (fn->qhead) {
			fn_chunk *ch = queue_pop(fn);
			chunk_fail(ch, "import", fn->broken);
			chunk_free(ch);
		}
		web_function_stop(fn, "its container exited before it was ready; see `skiff app logs`");
	}
	fc->state = FC_DEAD;
	web_container_gone(fc);
	while (fc->leases) {
		fn_chunk *ch = fc->leases;
		fn_call *call = ch->call;
		uint32_t first = UINT32_MAX;

		fc->leases = ch->next;
		ch->next = NULL;
		fc->n_leases--;
		fn->running -= ch->count;
		for (uint32_t i = 0; i < ch->count; i++) {
			uint32_t idx = ch->start + i;
			if (call->kind == CALL_GEN ? !call->n_final : !call->final[idx]) {
				first = idx;
				break;
			}
		}
		if (first == UINT32_MAX || fn->app->stopped || call->cancelled) {
			chunk_free(ch);
			continue;
		}
		if (c->oom || fc->killed_for_timeout || ++ch->deaths >= MAX_DEATHS ||
		    (call->kind == CALL_GEN && call->items)) {
			_cleanup_free_ char *msg = NULL;
			const char *kind;
			if (c->oom) {
				kind = "oom";
				msg = xasprintf("%s ran out of memory (memory=%lld MiB) and was killed",
						fn->name, fn->memory);
			} else if (fc->killed_for_timeout) {
				kind = "timeout";
				msg = xasprintf("%s timed out after %d s", fn->name, fn->timeout);
			} else {
				kind = "crash";
				msg = xasprintf("the container running %s exited with %d while running "
						"this input",
						fn->name, c->returncode);
			}
			_cleanup_free_ char *js = system_error_json(kind, msg);
			call_output(call, first, ST_SYSTEM_ERROR, js, strlen(js));
		} else {
			log_warn("%s: container %s died holding %s[%u..]; its inputs go back to the "
				 "queue",
				 fn->name, fc->id, call->id, first);
		}
		/* The rest of the chunk runs again, skipping the inputs already answered. */
		bool left = false;
		for (uint32_t i = 0; i < ch->count && !left; i++)
			left = call->kind == CALL_GEN ? !call->n_final : !call->final[ch->start + i];
		fn_function *to = fn;
		while (to->retired && to->successor)
			to = to->successor;
		if (left && to->retired) {
			chunk_fail(ch, "stopped",
				   "the function is not in the app's deployed version any more");
			chunk_free(ch);
		} else if (left) {
			ch->requeued = true;
			queue_push(to, ch, true);
			if (to != fn)
				function_pump(to);
		} else {
			chunk_free(ch);
		}
	}
	if (fc->w) {
		fc->w->fc = NULL;
		worker_close(fc->w);
		fc->w = NULL;
	}
	for (fn_container **pp = &fn->containers; *pp; pp = &(*pp)->next)
		if (*pp == fc) {
			*pp = fc->next;
			break;
		}
	fn->n_containers--;
	c->user = NULL;
	pool_release_dir(fc->pool_dir);
	free(fc->pool_dir);
	free(fc);
	function_pump(fn);
	return true;
}

json_t *fn_container_json(fn_server *fs, rt_container *c)
{
	fn_container *fc;
	static const char *const names[] = { "starting", "idle", "stopping", "stopped" };
	const char *status;

	if (!fs || strncmp(c->id, "ct-", 3) || c->state != RT_RUNNING)
		return NULL;
	json_t *tj = snap_container_json(fs, c); /* a snapshot template */
	if (tj)
		return tj;
	if (!(fc = c->user))
		return pool_container_json(fs, c);
	status = fc->state == FC_READY && fc->n_leases ? "busy" : names[fc->state];
	long long cpu_ns = cg_box_cpu_usage_ns(&fs->s->cg, &c->box);

	json_t *cs = cold_start_json(fc);

	return json_pack("{s:s, s:s, s:s, s:I, s:f, s:I, s:I, s:i, s:f, s:o}", "function",
			 fc->fn->name, "app_name", fc->fn->app->name, "status", status,
			 "inputs_served", (json_int_t)fc->inputs_served, "age_s",
			 sk_wall_time() - fc->started_at, "memory_bytes",
			 (json_int_t)cg_box_peak_memory(&fs->s->cg, &c->box), "running_inputs",
			 (json_int_t)fc->n_leases, "max_inputs", fc->fn->max_inputs, "cpu_used_s",
			 cpu_ns > 0 ? (double)cpu_ns / 1e9 : 0.0, "cold_start", cs ? cs : json_null());
}

/* ---- registration ------------------------------------------------------------------------------ */

static int abs_dir(const json_t *j, const char *what, bool dir, sk_error *err)
{
	struct stat st;
	const char *p = json_string_value(j);

	if (!p || p[0] != '/')
		return sk_error_set(err, SK_ERR_INVALID, "%s must be an absolute path", what);
	if (stat(p, &st) < 0 || (dir && !S_ISDIR(st.st_mode)))
		return sk_error_set(err, SK_ERR_INVALID, "%s %s is not a folder on the server", what, p);
	return 0;
}

/* min/max/buffer_containers and scaledown_window from j (absent: unchanged). */
int autoscaler_parse(fn_function *fn, const json_t *j, sk_error *err)
{
	int mn = fn->min_containers, mx = fn->max_containers, buf = fn->buffer_containers;
	double sd = fn->scaledown_window;
	json_t *x;

	if ((x = json_object_get(j, "min_containers")) && !json_is_null(x)) {
		if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1000)
			return sk_error_set(err, SK_ERR_INVALID, "min_containers must be 0 to 1000");
		mn = (int)json_integer_value(x);
	}
	if ((x = json_object_get(j, "max_containers"))) {
		if (json_is_null(x))
			mx = 0;
		else if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > 10000)
			return sk_error_set(err, SK_ERR_INVALID, "max_containers must be 1 to 10000");
		else
			mx = (int)json_integer_value(x);
	}
	if ((x = json_object_get(j, "buffer_containers")) && !json_is_null(x)) {
		if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1000)
			return sk_error_set(err, SK_ERR_INVALID, "buffer_containers must be 0 to 1000");
		buf = (int)json_integer_value(x);
	}
	if ((x = json_object_get(j, "scaledown_window")) && !json_is_null(x)) {
		if (!json_is_number(x) || json_number_value(x) < 2 || json_number_value(x) > 86400)
			return sk_error_set(err, SK_ERR_INVALID,
					    "scaledown_window must be 2 to 86400 seconds");
		sd = json_number_value(x);
	}
	if (mx > 0 && mn > mx)
		return sk_error_set(err, SK_ERR_INVALID,
				    "min_containers (%d) is more than max_containers (%d)", mn, mx);
	fn->min_containers = mn;
	fn->max_containers = mx;
	fn->buffer_containers = buf;
	fn->scaledown_window = sd;
	return 0;
}

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');

	return s && s[1] ? s + 1 : p;
}

/* The "web" object of a function definition (docs/api.md). */
static int web_parse(fn_function *fn, const json_t *j, sk_error *err)
{
	static const char *const kinds[] = { "function", "asgi", "wsgi", "server" };
	static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD",
					       "OPTIONS" };
	const char *kind = json_string_value(json_object_get(j, "kind"));
	const char *method = json_string_value(json_object_get(j, "method"));
	const char *label = json_string_value(json_object_get(j, "label"));
	fn_web *w = xcalloc(1, sizeof(*w));
	size_t i;

	fn->web = w;
	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		if (kind && !strcmp(kind, kinds[i]))
			break;
	if (i == ARRAY_SIZE(kinds))
		return sk_error_set(err, SK_ERR_INVALID,
				    "web.kind must be function, asgi, wsgi or server");
	w->kind = (enum web_kind)i;
	snprintf(w->method, sizeof(w->method), "%s", method ? method : "GET");
	for (i = 0; i < ARRAY_SIZE(methods); i++)
		if (!strcmp(w->method, methods[i]))
			break;
	if (i == ARRAY_SIZE(methods))
		return sk_error_set(err, SK_ERR_INVALID,
				    "web.method must be one of GET POST PUT PATCH DELETE HEAD OPTIONS");
	if (label) {
		size_t n = strlen(label);
		bool ok = n > 0 && n < sizeof(w->label) && label[0] != '-' && label[n - 1] != '-';
		for (i = 0; ok && i < n; i++)
			ok = (label[i] >= 'a' && label[i] <= 'z') || (label[i] >= '0' && label[i] <= '9') ||
			     label[i] == '-';
		if (!ok)
			return sk_error_set(err, SK_ERR_INVALID,
					    "web label \"%s\" must be 1-63 of a-z, 0-9 and -, not "
					    "starting or ending with -",
					    label);
		snprintf(w->label, sizeof(w->label), "%s", label);
	} else {
		size_t n = 0;
		for (const char *c = fn->name; *c && n < sizeof(w->label) - 1; c++)
			w->label[n++] = *c == '_' || *c == '.' ? '-'
					: (*c >= 'A' && *c <= 'Z') ? (char)(*c - 'A' + 'a') : *c;
		w->label[n] = 0;
	}
	for (fn_function *o = fn->app->functions; o; o = o->next)
		if (o->web && !strcmp(o->web->label, w->label) && strcmp(o->name, fn->name))
			return sk_error_set(err, SK_ERR_CONFLICT,
					    "web label \"%s\" is already used by %s in app %s",
					    w->label, o->name, fn->app->name);
	w->requires_auth = json_is_true(json_object_get(j, "requires_proxy_auth"));
	w->docs = json_is_true(json_object_get(j, "docs"));
	w->url = fn->fs->gw ? gateway_url(fn->fs->gw, fn->app->name, w->label) : NULL;
	if (!w->url)
		w->url = xasprintf("/%s/%s", fn->app->name, w->label);
	return 0;
}

int function_register(fn_server *fs, json_t *d, const char *id, fn_function **out, sk_error *err)
{
	const char *app_id = json_string_value(json_object_get(d, "app_id"));
	const char *name = json_string_value(json_object_get(d, "name"));
	const char *image_id = json_string_value(json_object_get(d, "image_id"));
	const char *qualname = json_string_value(json_object_get(d, "qualname"));
	const char *module = json_string_value(json_object_get(d, "module"));
	json_t *x, *retries = json_object_get(d, "retries"), *extra = json_object_get(d, "extra_dirs");
	fn_app *app;
	fn_function *fn;
	char *rootfs;
	size_t n_extra = json_is_array(extra) ? json_array_size(extra) : 0;

	if (!app_id || !(app = app_find(fs, app_id)) || strcmp(app->id, app_id))
		return sk_error_set(err, SK_ERR_NOT_FOUND, "no running app %s", app_id ? app_id : "(none)");
	if (app->stopped)
		return sk_error_set(err, SK_ERR_CONFLICT, "app %s has stopped", app_id);
	if (!name || !*name || strlen(name) > 128)
		return sk_error_set(err, SK_ERR_INVALID, "name must be a non-empty string");
	if (!qualname || !module)
		return sk_error_set(err, SK_ERR_INVALID, "module and qualname are required");
	if (!image_id || !(rootfs = image_rootfs(fs->s->images, image_id)))
		return sk_error_set(err, SK_ERR_NOT_FOUND, "image %s not found; build it first",
				    image_id ? image_id : "(none)");
	if (abs_dir(json_object_get(d, "sdk_dir"), "sdk_dir", true, err) < 0 ||
	    abs_dir(json_object_get(d, "mount_dir"), "mount_dir", true, err) < 0) {
		free(rootfs);
		return -1;
	}
	for (size_t i = 0; i < n_extra; i++)
		if (abs_dir(json_array_get(extra, i), "extra_dirs[]", true, err) < 0) {
			free(rootfs);
			return -1;
		}

	fn = xcalloc(1, sizeof(*fn));
	if (id && strlen(id) < sizeof(fn->id)) {
		strcpy(fn->id, id);
	} else {
		memcpy(fn->id, "fu-", 3);
		sk_random_hex(fn->id + 3, 8);
	}
	fn->def = json_deep_copy(d);
	fn->fs = fs;
	fn->app = app;
	fn->name = xstrdup(name);
	fn->image_id = xstrdup(image_id);
	fn->rootfs = rootfs;
	fn->timeout = 300;
	fn->backoff = 2.0;
	fn->initial_delay = 1.0;
	fn->max_delay = 60.0;
	x = json_object_get(d, "cpu");
	if (json_is_number(x)) {
		fn->cpu = json_number_value(x);
		if (!(fn->cpu > 0) || fn->cpu > fs->s->cpus) {
			sk_error_set(err, fn->cpu > 0 ? SK_ERR_RESOURCES : SK_ERR_INVALID,
				     "cpu=%g: ask for more than 0 and at most this machine's %d CPUs",
				     fn->cpu, fs->s->cpus);
			goto fail;
		}
	}
	x = json_object_get(d, "memory");
	if (json_is_integer(x)) {
		fn->memory = json_integer_value(x);
		if (fn->memory < 16 || fn->memory > fs->s->memory_mib) {
			sk_error_set(err, fn->memory > 0 ? SK_ERR_RESOURCES : SK_ERR_INVALID,
				     "memory=%lld MiB: ask for 16 MiB to this machine's %lld MiB",
				     fn->memory, fs->s->memory_mib);
			goto fail;
		}
	}
	x = json_object_get(d, "timeout");
	if (json_is_integer(x)) {
		fn->timeout = (int)json_integer_value(x);
		if (fn->timeout <= 0 || fn->timeout > 86400) {
			sk_error_set(err, SK_ERR_INVALID, "timeout must be 1 to 86400 seconds");
			goto fail;
		}
	}
	fn->max_inputs = 1;
	fn->scaledown_window = fs->scaledown_window;
	fn->exit_grace = 10;
	if (autoscaler_parse(fn, d, err) < 0)
		goto fail;
	x = json_object_get(d, "max_inputs");
	if (json_is_integer(x)) {
		fn->max_inputs = (int)json_integer_value(x);
		if (fn->max_inputs < 1 || fn->max_inputs > 1000) {
			sk_error_set(err, SK_ERR_INVALID, "max_inputs must be 1 to 1000");
			goto fail;
		}
	}
	x = json_object_get(d, "target_inputs");
	if (json_is_integer(x)) {
		fn->target_inputs = (int)json_integer_value(x);
		if (fn->target_inputs < 1 || fn->target_inputs > fn->max_inputs) {
			sk_error_set(err, SK_ERR_INVALID, "target_inputs must be 1 to max_inputs (%d)",
				     fn->max_inputs);
			goto fail;
		}
	}
	x = json_object_get(d, "exit_grace");
	if (json_is_number(x))
		fn->exit_grace = json_number_value(x) < 0 ? 0 : json_number_value(x);
	x = json_object_get(d, "gpu");
	if (x && !json_is_null(x) && !(json_is_string(x) && !*json_string_value(x))) {
		size_t have = 0;
		if (!json_is_string(x)) {
			sk_error_set(err, SK_ERR_INVALID, "gpu must be a string such as \"H100\" or "
							  "\"A100-80GB:2\"");
			goto fail;
		}
		if (gpu_parse_request(json_string_value(x), fn->gpu_type, sizeof(fn->gpu_type),
				      &fn->gpu_count, err) < 0)
			goto fail;
		for (size_t i = 0; i < fs->s->n_gpus; i++)
			have += gpu_matches(fn->gpu_type, fs->s->gpus[i].type);
		if (have < (size_t)fn->gpu_count) {
			if (!fs->s->n_gpus)
				sk_error_set(err, SK_ERR_RESOURCES,
					     "gpu=%s: this machine has no GPU (no /dev/nvidiactl, or "
					     "nvidia-smi lists none); run the function without gpu= or "
					     "on a server with GPUs",
					     json_string_value(x));
			else
				sk_error_set(err, SK_ERR_RESOURCES,
					     "gpu=%s: this machine has %zu GPU(s) of that type (%zu in "
					     "all, first %s); ask for fewer or another type",
					     json_string_value(x), have, fs->s->n_gpus,
					     fs->s->gpus[0].type);
			goto fail;
		}
	}
	if (json_is_object(retries)) {
		fn->max_retries = (int)json_integer_value(json_object_get(retries, "max_retries"));
		if (json_is_number(json_object_get(retries, "backoff_coefficient")))
			fn->backoff = json_number_value(json_object_get(retries, "backoff_coefficient"));
		if (json_is_number(json_object_get(retries, "initial_delay")))
			fn->initial_delay = json_number_value(json_object_get(retries, "initial_delay"));
		if (json_is_number(json_object_get(retries, "max_delay")))
			fn->max_delay = json_number_value(json_object_get(retries, "max_delay"));
		if (fn->max_retries < 0 || fn->max_retries > 10 || fn->backoff < 1 ||
		    fn->backoff > 10 || fn->initial_delay < 0 || fn->max_delay < 0) {
			sk_error_set(err, SK_ERR_INVALID,
				     "retries: max_retries 0..10, backoff_coefficient 1..10, delays >= 0");
			goto fail;
		}
	}
	fn->is_generator = json_is_true(json_object_get(d, "is_generator"));
	fn->block_network = json_is_true(json_object_get(d, "block_network"));
	fn->snapshot = json_is_true(json_object_get(d, "enable_memory_snapshot"));
	x = json_object_get(d, "env");
	fn->env = xcalloc(json_object_size(x) + 1, sizeof(char *));
	{
		const char *k;
		json_t *v;
		size_t n = 0;
		json_object_foreach(x, k, v) {
			if (json_is_string(v) && *k && !strchr(k, '='))
				fn->env[n++] = xasprintf("%s=%s", k, json_string_value(v));
		}
	}
	fn->env = builds_image_env(fs->s, image_id, fn->env);
	fn->workdir = builds_image_workdir(fs->s, image_id);
	{
		oci_mount *um = NULL;
		size_t n_um = 0;
		if (builds_parse_mounts(json_object_get(d, "mounts"), &um, &n_um, err) < 0)
			goto fail;
		fn->mounts = xcalloc(2 + n_extra + n_um, sizeof(oci_mount));
		for (size_t i = 0; i < n_um; i++)
			fn->mounts[fn->n_mounts++] = um[i];
		free(um);
	}
	fn->mounts[fn->n_mounts++] = (oci_mount){
		xstrdup(json_string_value(json_object_get(d, "sdk_dir"))), xstrdup("/skiff/sdk"), true, false };
	fn->mounts[fn->n_mounts++] = (oci_mount){
		xstrdup(json_string_value(json_object_get(d, "mount_dir"))), xstrdup("/skiff/app"), true, false };
	for (size_t i = 0; i < n_extra; i++) {
		const char *p = json_string_value(json_array_get(extra, i));
		fn->mounts[fn->n_mounts++] =
			(oci_mount){ xstrdup(p), xasprintf("/skiff/extra/%s", basename_of(p)), true, false };
	}
	x = json_object_get(d, "pickled_function");
	if (json_is_true(json_object_get(d, "serialized"))) {
		if (!json_is_string(x)) {
			sk_error_set(err, SK_ERR_INVALID, "serialized functions need pickled_function");
			goto fail;
		}
		if (sk_base64_decode(json_string_value(x), &fn->pickled, &fn->pickled_len) < 0) {
			sk_error_set(err, SK_ERR_INVALID, "pickled_function is not valid base64");
			goto fail;
		}
	}
	if (json_is_object(x = json_object_get(d, "web")) && web_parse(fn, x, err) < 0)
		goto fail;
	{
		const char *file = json_string_value(json_object_get(d, "file"));
		const char *mount_dir = json_string_value(json_object_get(d, "mount_dir"));
		_cleanup_free_ char *cfile = NULL;
		size_t md = strlen(mount_dir);

		/* The file as the container sees it, under /skiff/app. */
		if (file && !strncmp(file, mount_dir, md) && file[md] == '/')
			cfile = xasprintf("/skiff/app%s", file + md);
		json_t *init = json_pack("{s:s, s:s, s:o, s:s, s:b, s:b, s:i, s:s, s:s, s:i, s:f}", "t",
					 "init", "module", module, "file",
					 cfile ? json_string(cfile) : json_null(), "qualname", qualname,
					 "serialized", fn->pickled != NULL, "is_generator",
					 fn->is_generator, "timeout", fn->timeout, "function_name", name,
					 "app_name", app->name, "max_inputs", fn->max_inputs,
					 "exit_grace", fn->exit_grace);
		json_t *batch = json_object_get(d, "batch"), *cls = json_object_get(d, "cls");
		json_object_set(init, "batch", json_is_object(batch) ? batch : json_null());
		json_object_set(init, "cls", json_is_object(cls) ? cls : json_null());
		json_t *et = json_object_get(d, "enter_timeout");
		if (json_is_number(et) && json_number_value(et) > 0)
			json_object_set(init, "enter_timeout", et);
		if (fn->web) {
			json_t *w = json_deep_copy(json_object_get(d, "web"));
			static const char *const kinds[] = { "function", "asgi", "wsgi", "server" };
			json_object_set_new(w, "kind", json_string(kinds[fn->web->kind]));
			json_object_set_new(w, "label", json_string(fn->web->label));
			json_object_set_new(w, "method", json_string(fn->web->method));
			json_object_set_new(w, "url", json_string(fn->web->url));
			json_object_set_new(init, "web", w);
		}
		fn->init_hdr = json_dumps(init, JSON_COMPACT);
		json_decref(init);
	}
	uv_timer_init(fs->loop, &fn->retry_timer);
	fn->retry_timer.data = fn;
	uv_timer_init(fs->loop, &fn->scale_timer);
	fn->scale_timer.data = fn;
	fn->next = app->functions;
	app->functions = fn;
	log_info("app %s: function %s registered as %s (cpu %g, memory %lld MiB, timeout %d s, "
		 "retries %d)",
		 app->name, name, fn->id, fn->cpu, fn->memory, fn->timeout, fn->max_retries);
	*out = fn;
	pool_fill(fn); /* a warm container of its image, for its first cold start */
	return 0;
fail:
	function_free(fn);
	return -1;
}
