/*
 * The HTTP API of docs/api.md: routes, request validation, and the glue
 * between HTTP requests and containers, images and the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "server/functions.h"
#include "server/builds.h"
#include "server/internal.h"
#include "server/usage.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

#define STREAM_HIGH_WATER (256u << 10)
#define STREAM_CHUNK (64u << 10)
#define MAX_TIMEOUT 86400

/* What the API keeps beside a running container. */
typedef struct sandbox {
	char *app_id;
	char *cmd_json;
} sandbox;

/* ---- small helpers ----------------------------------------------------------- */

static bool valid_id(const char *s)
{
	if (!*s || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* Parses the body as a JSON object; answers 400 and returns NULL when it is not. */
static json_t *body_object(http_req *req, bool empty_ok)
{
	json_error_t jerr;
	json_t *j;

	if (req->body.len == 0 && empty_ok)
		return json_object();
	j = json_loadb(req->body.base ? req->body.base : "", req->body.len, 0, &jerr);
	if (!j) {
		http_respond_errorf(req, SK_ERR_INVALID,
				    "request body is not valid JSON (%s, line %d column %d)", jerr.text,
				    jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		http_respond_errorf(req, SK_ERR_INVALID, "request body must be a JSON object");
		return NULL;
	}
	return j;
}

/* A NULL-terminated array of strings from a JSON array of strings; NULL + err if not. */
static char **str_list(const json_t *a, const char *what, sk_error *err)
{
	char **v;
	size_t i;
	json_t *x;

	if (!json_is_array(a)) {
		sk_error_set(err, SK_ERR_INVALID, "%s must be a list of strings", what);
		return NULL;
	}
	v = xcalloc(json_array_size(a) + 1, sizeof(char *));
	json_array_foreach(a, i, x) {
		if (!json_is_string(x)) {
			for (size_t k = 0; k < i; k++)
				free(v[k]);
			free(v);
			sk_error_set(err, SK_ERR_INVALID, "%s[%zu] must be a string", what, i);
			return NULL;
		}
		v[i] = xstrdup(json_string_value(x));
	}
	return v;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* "K=V" strings from a JSON object of strings (null values are skipped). */
static char **env_list(const json_t *o, sk_error *err)
{
	char **v;
	size_t n = 0;
	const char *k;
	json_t *x;

	if (!o || json_is_null(o))
		return xcalloc(1, sizeof(char *));
	if (!json_is_object(o)) {
		sk_error_set(err, SK_ERR_INVALID, "env must be an object of strings");
		return NULL;
	}
	v = xcalloc(json_object_size(o) + 1, sizeof(char *));
	json_object_foreach((json_t *)o, k, x) {
		if (json_is_null(x))
			continue;
		if (!*k || strchr(k, '=') || !json_is_string(x)) {
			strv_free(v);
			sk_error_set(err, SK_ERR_INVALID,
				     !json_is_string(x) ? "env value of \"%s\" must be a string"
							: "env name \"%s\" is not valid (empty or has '=')",
				     k);
			return NULL;
		}
		v[n++] = xasprintf("%s=%s", k, json_string_value(x));
	}
	return v;
}

static json_t *opt_string(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* ---- health and apps ------------------------------------------------------------ */

static void h_health(skiff_server *s, http_req *req)
{
	json_t *gpus = json_array();

	for (size_t i = 0; i < s->n_gpus; i++)
		json_array_append_new(gpus, json_pack("{s:i, s:s, s:b, s:o}", "index", s->gpus[i].index,
						      "type", s->gpus[i].type, "fake", s->gpus[i].fake,
						      "used_by",
						      s->gpu_owner[i][0] ? json_string(s->gpu_owner[i])
									 : json_null()));
	http_respond_json(req, 200,
			  json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:I, s:i, s:o, s:o}", "version",
				    SKIFF_SERVER_VERSION, "pid", (int)getpid(), "skiff_home", s->home,
				    "cgroup", cg_mode_name(s->cg.mode), "runtime", s->runtime_name,
				    "cpus", s->cpus, "memory_mib", (json_int_t)s->memory_mib,
				    "running", (int)rt_running(s->rt), "gpus", gpus,
				    "reserve", json_pack("{s:f, s:I}", "cpu", s->reserve_cpu, "memory_mib",
							  (json_int_t)s->reserve_memory)));
}

static void h_app_lookup(skiff_server *s, http_req *req)
{
	json_t *b = body_object(req, false), *name, *create;
	store_app app;
	bool created = false;
	sk_error err;

	if (!b)
		return;
	name = json_object_get(b, "name");
	create = json_object_get(b, "create_if_missing");
	if (!json_is_string(name) || !*json_string_value(name)) {
		http_respond_errorf(req, SK_ERR_INVALID, "name must be a non-empty string");
	} else if (strlen(json_string_value(name)) > 64) {
		http_respond_errorf(req, SK_ERR_INVALID, "app names are at most 64 characters");
	} else if (store_app_lookup(s->store, json_string_value(name), json_is_true(create), &app,
				    &created, &err) < 0) {
		http_respond_error(req, &err);
	} else {
		http_respond_json(req, 200,
				  json_pack("{s:s, s:s, s:b}", "app_id", app.app_id, "name", app.name,
					    "created", created));
		store_app_release(&app);
	}
	json_decref(b);
}

/* ---- images ---------------------------------------------------------------------- */

typedef struct image_req {
	http_req *req;
	build_job *job;
	bool in_start, finished;
} image_req;

static void image_msg(void *ctx, json_t *m)
{
	image_req *ir = ctx;

	http_stream_json(ir->req, m);
}

static void image_done(void *ctx, const char *image_id, bool cached, const sk_error *err)
{
	image_req *ir = ctx;

	if (err)
		http_stream_json(ir->req, json_pack("{s:{s:s, s:s}}", "error", "code",
						    sk_error_kind_name(err->kind), "message", err->msg));
	else
		http_stream_json(ir->req,
				 json_pack("{s:s, s:b}", "image_id", image_id, "cached", cached));
	http_stream_end(ir->req);
	ir->finished = true;
	ir->job = NULL;
	if (!ir->in_start)
		free(ir);
}

static void image_abort(http_req *req, void *owner)
{
	image_req *ir = owner;

	if (ir->job)
		builds_detach(ir->job);
	free(ir);
}

static void h_image_build(skiff_server *s, http_req *req)
{
	json_t *b = body_object(req, false);
	image_req *ir;
	build_job *job = NULL;
	sk_error err;

	if (!b)
		return;
	if (builds_check(b, &err) < 0) {
		json_decref(b);
		http_respond_error(req, &err);
		return;
	}
	ir = xcalloc(1, sizeof(*ir));
	ir->req = req;
	ir->in_start = true;
	http_stream_start(req, 200, "application/x-ndjson");
	if (builds_start(s, b, image_msg, image_done, ir, &job, &err) < 0) {
		json_decref(b);
		ir->in_start = false;
		image_done(ir, NULL, false, &err);
		return;
	}
	json_decref(b);
	ir->in_start = false;
	if (ir->finished) {
		free(ir);
		return;
	}
	ir->job = job;
	http_set_owner(req, ir, image_abort, NULL);
}

static void h_image_list(skiff_server *s, http_req *req)
{
	store_image *ims;
	size_t n;
	sk_error err;
	json_t *a;

	if (store_image_list(s->store, &ims, &n, &err) < 0) {
		http_respond_error(req, &err);
		return;
	}
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *root = image_rootfs(s->images, ims[i].image_id);
		json_array_append_new(
			a, json_pack("{s:s, s:s, s:o, s:I, s:f, s:o}", "image_id", ims[i].image_id,
				     "base", ims[i].base ? ims[i].base : "", "python_version",
				     opt_string(ims[i].python_version), "size_bytes",
				     (json_int_t)ims[i].size_bytes, "created_at", ims[i].created_at,
				     "rootfs", opt_string(root)));
		builds_image_info(s, ims[i].image_id, ims[i].spec_json,
				  json_array_get(a, json_array_size(a) - 1));
	}
	store_images_free(ims, n);
	http_respond_json(req, 200, json_pack("{s:o}", "images", a));
}

/* ---- sandboxes ------------------------------------------------------------------- */

static void record_from(rt_container *c, store_container *rec)
{
	bool is_fn = !strncmp(c->id, "ct-", 3);
	sandbox *sb = is_fn ? NULL : c->user;

	memset(rec, 0, sizeof(*rec));
	rec->container_id = c->id;
	rec->kind = is_fn ? "function" : "sandbox";
	rec->app_id = sb ? sb->app_id : NULL;
	rec->image_id = c->image_id;
	rec->cmd_json = sb ? sb->cmd_json : is_fn ? "[\"python3\",\"-m\",\"skiff._container\"]" : "[]";
	rec->state = c->state == RT_RUNNING ? "running" : "exited";
	rec->cpu = c->cpu;
	rec->memory = c->memory;
	rec->timeout = c->timeout;
	rec->has_returncode = c->state == RT_EXITED;
	rec->returncode = c->returncode;
	rec->oom = c->oom;
	rec->timed_out = c->timed_out;
	rec->terminated = c->terminated;
	rec->created_at = c->created_at;
	rec->ended_at = c->ended_at;
}

void api_record_container(skiff_server *s, rt_container *c)
{
	store_container rec;
	sk_error err;

	record_from(c, &rec);
	if (store_container_put(s->store, &rec, &err) < 0)
		log_error("container %s: cannot record it: %s", c->id, err.msg);
}

void api_container_exited(rt_container *c, void *data)
{
	skiff_server *s = data;
	sandbox *sb;

	if (builds_container_exited(s, c))
		return;
	api_record_container(s, c);
	if (fn_container_exited(s->fns, c))
		return;
	usage_ended(s, c, 0);
	/* The store has the sandbox's last record: its app and command can go. */
	sb = c->user;
	c->user = NULL;
	if (sb) {
		free(sb->app_id);
		free(sb->cmd_json);
		free(sb);
	}
}

static json_t *sandbox_json(skiff_server *s, const store_container *r)
{
	json_error_t jerr;
	json_t *cmd = json_loads(r->cmd_json ? r->cmd_json : "[]", 0, &jerr);
	json_t *app_name = json_null();
	rt_container *c = rt_container_find(s->rt, r->container_id);

	if (r->app_id) {
		store_app a;
		if (store_app_get(s->store, r->app_id, &a, NULL) == 0) {
			json_decref(app_name);
			app_name = json_string(a.name);
			store_app_release(&a);
		}
	}
	json_t *out = json_pack("{s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:o, s:b, s:b, s:b, s:f, s:o, s:o, "
			 "s:o, s:i, s:o}",
			 "sandbox_id", r->container_id, "container_id", r->container_id, "app_id",
			 opt_string(r->app_id), "app_name", app_name, "image_id",
			 r->image_id ? r->image_id : "", "cmd", cmd ? cmd : json_array(), "state",
			 r->state, "returncode",
			 r->has_returncode ? json_integer(r->returncode) : json_null(), "oom", r->oom,
			 "timed_out", r->timed_out, "terminated", r->terminated, "created_at",
			 r->created_at, "ended_at",
			 r->ended_at > 0 ? json_real(r->ended_at) : json_null(), "cpu",
			 r->cpu > 0 ? json_real(r->cpu) : json_null(), "memory",
			 r->memory > 0 ? json_integer(r->memory) : json_null(), "timeout", r->timeout,
			 "pid", c && c->state == RT_RUNNING && c->main->process.pid > 0
					? json_integer(c->main->process.pid)
					: json_null());
	json_t *live = c ? fn_container_json(s->fns, c) : NULL;

	if (live) {
		json_object_update(out, live);
		json_decref(live);
	}
	return out;
}

static void h_sandbox_create(skiff_server *s, http_req *req)
{
	json_t *b = body_object(req, false), *x;
	sk_error err;
	char **cmd = NULL, **env = NULL;
	_cleanup_free_ char *rootfs = NULL;
	const char *image_id, *app_id = NULL, *workdir = NULL;
	char *image_workdir = NULL;
	oci_mount *mounts = NULL;
	size_t n_mounts = 0;
	double cpu = 0;
	long long memory = 0;
	json_int_t timeout = 300, rows = 24, cols = 80;
	char id[3 + 16 + 1] = "sb-";
	rt_spec spec = { 0 };
	rt_container *c;
	sandbox *sb;
	store_container rec;
	store_app app;

	if (!b)
		return;
	x = json_object_get(b, "image_id");
	if (!json_is_string(x)) {
		http_respond_errorf(req, SK_ERR_INVALID,
				    "image_id must be an image id (build one with POST /v1/images)");
		goto out;
	}
	image_id = json_string_value(x);
	rootfs = valid_id(image_id) ? image_rootfs(s->images, image_id) : NULL;
	if (!rootfs) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND,
				    "image %s not found on this server; build it first "
				    "(skiff.Image.debian_slim(), or POST /v1/images)",
				    image_id);
		goto out;
	}
	x = json_object_get(b, "app_id");
	if (x && !json_is_null(x)) {
		if (!json_is_string(x)) {
			http_respond_errorf(req, SK_ERR_INVALID, "app_id must be a string or null");
			goto out;
		}
		app_id = json_string_value(x);
		if (fn_app_exists(s->fns, app_id)) {
			/* an app of `skiff run` */
		} else if (store_app_get(s->store, app_id, &app, &err) < 0) {
			http_respond_error(req, &err);
			goto out;
		} else {
			store_app_release(&app);
		}
	}
	x = json_object_get(b, "cmd");
	if (x && !json_is_null(x) && json_array_size(x) > 0) {
		if (!(cmd = str_list(x, "cmd", &err))) {
			http_respond_error(req, &err);
			goto out;
		}
	} else if (x && !json_is_null(x) && !json_is_array(x)) {
		http_respond_errorf(req, SK_ERR_INVALID, "cmd must be a list of strings");
		goto out;
	} else {
		cmd = xcalloc(3, sizeof(char *));
		cmd[0] = xstrdup("sleep");
		cmd[1] = xstrdup("infinity");
	}
	x = json_object_get(b, "cpu");
	if (x && !json_is_null(x)) {
		if (!json_is_number(x) || !(json_number_value(x) > 0) ||
		    !isfinite(json_number_value(x))) {
			_cleanup_free_ char *t = json_dumps(x, JSON_ENCODE_ANY);
			http_respond_errorf(req, SK_ERR_INVALID,
					    "cpu must be a number of cores > 0, got %s", t);
			goto out;
		}
		cpu = json_number_value(x);
		if (cpu > s->cpus) {
			http_respond_errorf(req, SK_ERR_RESOURCES,
					    "cpu=%g is more than this machine has (%d CPUs); ask for at "
					    "most %d",
					    cpu, s->cpus, s->cpus);
			goto out;
		}
	}
	x = json_object_get(b, "memory");
	if (x && !json_is_null(x)) {
		if (!json_is_integer(x) || json_integer_value(x) <= 0) {
			_cleanup_free_ char *t = json_dumps(x, JSON_ENCODE_ANY);
			http_respond_errorf(req, SK_ERR_INVALID,
					    "memory must be a whole number of MiB > 0, got %s", t);
			goto out;
		}
		memory = json_integer_value(x);
		if (memory > s->memory_mib) {
			http_respond_errorf(req, SK_ERR_RESOURCES,
					    "memory=%lld MiB is more than this machine has (%lld MiB)",
					    memory, s->memory_mib);
			goto out;
		}
		if (memory < 8) {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "memory=%lld MiB is too little to start a container; ask for "
					    "at least 8",
					    memory);
			goto out;
		}
	}
	x = json_object_get(b, "timeout");
	if (x && !json_is_null(x)) {
		if (!json_is_integer(x) || json_integer_value(x) <= 0 ||
		    json_integer_value(x) > MAX_TIMEOUT) {
			_cleanup_free_ char *t = json_dumps(x, JSON_ENCODE_ANY);
			http_respond_errorf(req, SK_ERR_INVALID,
					    "timeout must be a whole number of seconds from 1 to %d, "
					    "got %s",
					    MAX_TIMEOUT, t);
			goto out;
		}
		timeout = json_integer_value(x);
	}
	x = json_object_get(b, "workdir");
	if (x && !json_is_null(x)) {
		if (!json_is_string(x) || json_string_value(x)[0] != '/') {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "workdir must be an absolute path (starting with /)");
			goto out;
		}
		workdir = json_string_value(x);
	}
	if (!(env = env_list(json_object_get(b, "env"), &err))) {
		http_respond_error(req, &err);
		goto out;
	}
	x = json_object_get(b, "rows");
	if (json_is_integer(x) && json_integer_value(x) > 0 && json_integer_value(x) < 10000)
		rows = json_integer_value(x);
	x = json_object_get(b, "cols");
	if (json_is_integer(x) && json_integer_value(x) > 0 && json_integer_value(x) < 10000)
		cols = json_integer_value(x);
	env = builds_image_env(s, image_id, env);
	if (!workdir)
		workdir = image_workdir = builds_image_workdir(s, image_id);
	if (builds_parse_mounts(json_object_get(b, "mounts"), &mounts, &n_mounts, &err) < 0) {
		http_respond_error(req, &err);
		goto out;
	}
	if (rt_check_command(rootfs, cmd[0], (const char *const *)env, &err) < 0) {
		http_respond_error(req, &err);
		goto out;
	}

	sk_random_hex(id + 3, 8);
	spec.id = id;
	spec.image_id = image_id;
	spec.lower = rootfs;
	spec.argv = (const char *const *)cmd;
	spec.env = (const char *const *)env;
	spec.workdir = workdir;
	spec.cpu = cpu;
	spec.memory = memory;
	spec.timeout = (int)timeout;
	spec.block_network = json_is_true(json_object_get(b, "block_network"));
	spec.tty = json_is_true(json_object_get(b, "tty"));
	spec.rows = (unsigned)rows;
	spec.cols = (unsigned)cols;
	spec.mounts = mounts;
	spec.n_mounts = n_mounts;
	if (rt_container_start(s->rt, &spec, &c, &err) < 0) {
		log_error("sandbox %s: cannot start: %s", id, err.msg);
		http_respond_error(req, &err);
		goto out;
	}
	sb = xcalloc(1, sizeof(*sb));
	sb->app_id = app_id ? xstrdup(app_id) : NULL;
	{
		json_t *cj = json_array();
		for (size_t i = 0; cmd[i]; i++)
			json_array_append_new(cj, json_string(cmd[i]));
		sb->cmd_json = json_dumps(cj, JSON_COMPACT);
		json_decref(cj);
	}
	c->user = sb;
	usage_started(s, c,
		      &(usage_info){ .kind = "sandbox", .app_id = app_id, .cpu_request = cpu,
				     .memory_request = memory });
	record_from(c, &rec);
	if (store_container_put(s->store, &rec, &err) < 0)
		log_error("sandbox %s: cannot record it: %s", id, err.msg);
	log_info("sandbox %s: started %s (image %.15s, cpu %g, memory %lld MiB, timeout %d s)", id,
		 cmd[0], image_id, cpu, memory, (int)timeout);
	http_respond_json(req, 201, json_pack("{s:s}", "sandbox_id", id));
out:
	strv_free(cmd);
	strv_free(env);
	free(image_workdir);
	for (size_t i = 0; i < n_mounts; i++) {
		free((char *)mounts[i].source);
		free((char *)mounts[i].destination);
	}
	free(mounts);
	json_decref(b);
}

static int find_record(skiff_server *s, const char *id, store_container *rec, http_req *req)
{
	sk_error err;

	if (!valid_id(id) || store_container_get(s->store, id, rec, &err) < 0) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "no sandbox or container %s on this server",
				    id);
		return -1;
	}
	return 0;
}

static void h_sandbox_get(skiff_server *s, http_req *req, const char *id)
{
	store_container rec;

	if (find_record(s, id, &rec, req) < 0)
		return;
	http_respond_json(req, 200, sandbox_json(s, &rec));
	store_container_release(&rec);
}

static void h_sandbox_list(skiff_server *s, http_req *req, const char *key)
{
	char buf[64], app[140];
	bool all = http_query_get(req, "all", buf, sizeof(buf)) && strcmp(buf, "0");
	const char *app_id = http_query_get(req, "app_id", app, sizeof(app));
	store_container *cs;
	size_t n;
	sk_error err;
	json_t *a = json_array();

	if (store_container_list(s->store, all, &cs, &n, &err) < 0) {
		json_decref(a);
		http_respond_error(req, &err);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (app_id && (!cs[i].app_id || strcmp(cs[i].app_id, app_id)))
			continue;
		json_array_append_new(a, sandbox_json(s, &cs[i]));
	}
	store_containers_free(cs, n);
	http_respond_json(req, 200, json_pack("{s:o}", key, a));
}

static void h_sandbox_terminate(skiff_server *s, http_req *req, const char *id)
{
	store_container rec;
	rt_container *c = valid_id(id) ? rt_container_find(s->rt, id) : NULL;

	if (!c) {
		if (find_record(s, id, &rec, req) < 0)
			return;
		store_container_release(&rec);
	} else if (c->state == RT_RUNNING) {
		log_info("sandbox %s: terminated by request", id);
		rt_container_kill(c);
	}
	http_respond_json(req, 200, json_object());
}

static void h_sandbox_exec(skiff_server *s, http_req *req, const char *id)
{
	rt_container *c = valid_id(id) ? rt_container_find(s->rt, id) : NULL;
	json_t *b, *x;
	char **cmd = NULL, **env = NULL;
	const char *workdir = NULL;
	rt_proc *p;
	sk_error err;

	if (!c) {
		store_container rec;
		if (find_record(s, id, &rec, req) < 0)
			return;
		store_container_release(&rec);
		http_respond_errorf(req, SK_ERR_CONFLICT, "sandbox %s is no longer running", id);
		return;
	}
	if (!(b = body_object(req, false)))
		return;
	x = json_object_get(b, "cmd");
	if (!json_is_array(x) || json_array_size(x) == 0) {
		http_respond_errorf(req, SK_ERR_INVALID, "cmd must be a non-empty list of strings");
		goto out;
	}
	if (!(cmd = str_list(x, "cmd", &err)) || !(env = env_list(json_object_get(b, "env"), &err))) {
		http_respond_error(req, &err);
		goto out;
	}
	x = json_object_get(b, "workdir");
	if (x && !json_is_null(x)) {
		if (!json_is_string(x) || json_string_value(x)[0] != '/') {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "workdir must be an absolute path (starting with /)");
			goto out;
		}
		workdir = json_string_value(x);
	}
	if (c->state != RT_RUNNING) {
		http_respond_errorf(req, SK_ERR_CONFLICT, "sandbox %s is no longer running", id);
		goto out;
	}
	if (rt_exec(c, (const char *const *)cmd, (const char *const *)env, workdir,
		    json_is_true(json_object_get(b, "tty")), 24, 80, &p, &err) < 0) {
		http_respond_error(req, &err);
		goto out;
	}
	http_respond_json(req, 201, json_pack("{s:s}", "process_id", p->id));
out:
	strv_free(cmd);
	strv_free(env);
	json_decref(b);
}

/* ---- process output ---------------------------------------------------------------- */

typedef struct out_stream {
	rt_reader r;
	http_req *req;
	bool snapshot;      /* stop at `until` instead of following */
	size_t until;
} out_stream;

static void out_pump(out_stream *o)
{
	const char *d;
	size_t n;

	while (http_queued(o->req) < STREAM_HIGH_WATER &&
	       (d = rt_reader_peek(&o->r, STREAM_CHUNK, &n))) {
		if (o->snapshot && o->r.pos + n > o->until)
			n = o->until > o->r.pos ? o->until - o->r.pos : 0;
		if (!n)
			break;
		http_stream_write(o->req, d, n);
		o->r.pos += n;
	}
	if (rt_reader_done(&o->r) || (o->snapshot && o->r.pos >= o->until)) {
		rt_reader_detach(&o->r);
		http_stream_end(o->req);
		free(o);
	}
}

static void out_notify(rt_reader *r)
{
	out_pump(r->ctx);
}

static void out_drain(http_req *req, void *owner)
{
	out_pump(owner);
}

static void out_abort(http_req *req, void *owner)
{
	out_stream *o = owner;

	rt_reader_detach(&o->r);
	free(o);
}

void api_stream_out(http_req *req, rt_stream *st, size_t offset, bool snapshot)
{
	out_stream *o = xcalloc(1, sizeof(*o));

	o->req = req;
	o->snapshot = snapshot;
	o->until = rt_stream_end(st);
	http_stream_start(req, 200, "application/octet-stream");
	http_set_owner(req, o, out_abort, out_drain);
	rt_reader_attach(&o->r, st, offset, out_notify, o);
	out_pump(o);
}

static rt_proc *find_proc(skiff_server *s, http_req *req, const char *id)
{
	rt_proc *p = valid_id(id) ? rt_proc_find(s->rt, id) : NULL;
	store_container rec;
	sk_error err;

	if (p)
		return p;
	if (valid_id(id) && !strstr(id, ".e") && store_container_get(s->store, id, &rec, &err) == 0) {
		store_container_release(&rec);
		http_respond_errorf(req, SK_ERR_NOT_FOUND,
				    "the process %s ran before the server restarted; its output is "
				    "in `skiff container logs %s`",
				    id, id);
	} else {
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "no process %s on this server", id);
	}
	return NULL;
}

static void h_proc_output(skiff_server *s, http_req *req, const char *id, bool err_stream)
{
	rt_proc *p = find_proc(s, req, id);
	char buf[32];
	size_t offset = 0;

	if (!p)
		return;
	if (http_query_get(req, "offset", buf, sizeof(buf))) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(buf, &end, 10);
		if (errno || *end || end == buf) {
			http_respond_errorf(req, SK_ERR_INVALID, "offset must be a byte count >= 0");
			return;
		}
		offset = (size_t)v;
	}
	api_stream_out(req, err_stream ? &p->err : &p->out, offset, false);
}

static void h_proc_stdin(skiff_server *s, http_req *req, const char *id)
{
	rt_proc *p = find_proc(s, req, id);
	char buf[16];
	bool eof = http_query_get(req, "eof", buf, sizeof(buf)) && strcmp(buf, "0");
	sk_error err;

	if (!p)
		return;
	if (rt_proc_write(p, req->body.base, req->body.len, eof, &err) < 0)
		http_respond_error(req, &err);
	else
		http_respond_json(req, 200, json_object());
}

static void h_proc_resize(skiff_server *s, http_req *req, const char *id)
{
	rt_proc *p = find_proc(s, req, id);
	json_t *b;
	sk_error err;

	if (!p || !(b = body_object(req, false)))
		return;
	if (!json_is_integer(json_object_get(b, "rows")) || !json_is_integer(json_object_get(b, "cols")))
		http_respond_errorf(req, SK_ERR_INVALID, "rows and cols must be integers");
	else if (rt_proc_resize(p, (unsigned)json_integer_value(json_object_get(b, "rows")),
				(unsigned)json_integer_value(json_object_get(b, "cols")), &err) < 0)
		http_respond_error(req, &err);
	else
		http_respond_json(req, 200, json_object());
	json_decref(b);
}

static json_t *wait_json(rt_proc *p)
{
	rt_container *c = p->c;
	bool is_main = p == c->main;

	if (!p->done)
		return json_pack("{s:b, s:n, s:b, s:b, s:b}", "done", 0, "returncode", "oom", 0,
				 "timed_out", 0, "terminated", 0);
	return json_pack("{s:b, s:i, s:b, s:b, s:b}", "done", 1, "returncode",
			 is_main ? c->returncode : p->returncode, "oom", is_main && c->oom,
			 "timed_out", is_main && c->timed_out, "terminated",
			 is_main && c->terminated);
}

typedef struct wait_req {
	rt_waiter w;
	http_req *req;
	rt_proc *p;
	uv_timer_t timer;
	bool timer_on;
} wait_req;

static void wait_free(uv_handle_t *h)
{
	free(h->data);
}

static void wait_finish(wait_req *wr)
{
	if (wr->timer_on) {
		uv_timer_stop(&wr->timer);
		uv_close((uv_handle_t *)&wr->timer, wait_free);
	} else {
		free(wr);
	}
}

static void wait_done(rt_waiter *w, rt_proc *p)
{
	wait_req *wr = w->ctx;

	http_respond_json(wr->req, 200, wait_json(p));
	wait_finish(wr);
}

static void wait_timeout(uv_timer_t *t)
{
	wait_req *wr = t->data;

	rt_proc_unwait(wr->p, &wr->w);
	http_respond_json(wr->req, 200, wait_json(wr->p));
	wait_finish(wr);
}

static void wait_abort(http_req *req, void *owner)
{
	wait_req *wr = owner;

	rt_proc_unwait(wr->p, &wr->w);
	wait_finish(wr);
}

static void h_proc_wait(skiff_server *s, http_req *req, const char *id)
{
	rt_proc *p = find_proc(s, req, id);
	char buf[32];
	double timeout = -1;
	wait_req *wr;

	if (!p)
		return;
	if (http_query_get(req, "timeout", buf, sizeof(buf))) {
		char *end;
		timeout = strtod(buf, &end);
		if (*end || end == buf || !(timeout >= 0) || timeout > 86400) {
			http_respond_errorf(req, SK_ERR_INVALID, "timeout must be seconds from 0 to 86400");
			return;
		}
	}
	if (p->done || timeout == 0) {
		http_respond_json(req, 200, wait_json(p));
		return;
	}
	wr = xcalloc(1, sizeof(*wr));
	wr->req = req;
	wr->p = p;
	wr->w.fn = wait_done;
	wr->w.ctx = wr;
	if (timeout > 0) {
		uv_timer_init(s->loop, &wr->timer);
		wr->timer.data = wr;
		wr->timer_on = true;
		uv_timer_start(&wr->timer, wait_timeout, (uint64_t)(timeout * 1000), 0);
	}
	http_set_owner(req, wr, wait_abort, NULL);
	rt_proc_wait(p, &wr->w);
}

/* ---- attach ---------------------------------------------------------------------- */

typedef struct attach {
	http_req *req;
	rt_proc *p;
	rt_reader out, err;
	rt_waiter w;
	bool proc_done;
} attach;

static void attach_pump(attach *a)
{
	rt_reader *rs[2] = { &a->out, &a->err };
	const char *d;
	size_t n;

	for (int i = 0; i < 2; i++)
		while (rs[i]->stream && http_queued(a->req) < STREAM_HIGH_WATER &&
		       (d = rt_reader_peek(rs[i], STREAM_CHUNK, &n))) {
			http_raw_write(a->req, d, n);
			rs[i]->pos += n;
		}
	if (a->proc_done && rt_reader_done(&a->out) && rt_reader_done(&a->err)) {
		rt_reader_detach(&a->out);
		rt_reader_detach(&a->err);
		http_raw_close(a->req);
		free(a);
	}
}

static void attach_notify(rt_reader *r)
{
	attach_pump(r->ctx);
}

static void attach_drain(http_req *req, void *owner)
{
	attach_pump(owner);
}

static void attach_done(rt_waiter *w, rt_proc *p)
{
	attach *a = w->ctx;

	a->proc_done = true;
	attach_pump(a);
}

static void attach_abort(http_req *req, void *owner)
{
	attach *a = owner;

	rt_reader_detach(&a->out);
	rt_reader_detach(&a->err);
	if (!a->proc_done)
		rt_proc_unwait(a->p, &a->w);
	free(a);
}

static void attach_input(http_req *req, void *owner, const char *data, size_t len)
{
	attach *a = owner;

	/* Input to a process that has gone nowhere is dropped, as a terminal would. */
	rt_proc_write(a->p, data, len, len == 0, NULL);
}

static void h_proc_attach(skiff_server *s, http_req *req, const char *id)
{
	rt_proc *p = find_proc(s, req, id);
	attach *a;

	if (!p)
		return;
	if (!req->upgrade || strcasecmp(req->upgrade, "skiff-attach")) {
		http_respond_errorf(req, SK_ERR_INVALID,
				    "attach needs `Connection: Upgrade` and `Upgrade: skiff-attach`");
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->req = req;
	a->p = p;
	a->w.fn = attach_done;
	a->w.ctx = a;
	http_set_owner(req, a, attach_abort, attach_drain);
	http_upgrade(req, "skiff-attach", attach_input);
	rt_reader_attach(&a->out, &p->out, 0, attach_notify, a);
	rt_reader_attach(&a->err, &p->err, 0, attach_notify, a);
	rt_proc_wait(p, &a->w); /* may finish the attach right away */
}

/* ---- containers (CLI view) --------------------------------------------------------- */

static void h_container_list(skiff_server *s, http_req *req)
{
	h_sandbox_list(s, req, "containers");
}

static void h_container_logs(skiff_server *s, http_req *req, const char *id)
{
	char buf[16];
	bool follow = http_query_get(req, "follow", buf, sizeof(buf)) && strcmp(buf, "0");
	rt_container *c = valid_id(id) ? rt_container_find(s->rt, id) : NULL;
	store_container rec;
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t len = 0;
	sk_error err;

	if (c) {
		api_stream_out(req, &c->log, 0, !follow);
		return;
	}
	if (find_record(s, id, &rec, req) < 0)
		return;
	store_container_release(&rec);
	path = xasprintf("%s/logs/%s.log", s->home, id);
	if (sk_read_file(path, &text, &len, &err) < 0 && errno != ENOENT) {
		http_respond_error(req, &err);
		return;
	}
	http_respond(req, 200, "application/octet-stream", text ? text : "", text ? len : 0);
}

/* ---- routing --------------------------------------------------------------------- */

static bool is(const http_req *req, enum http_method m)
{
	return req->method == m;
}

void api_handle(http_req *req, void *data)
{
	skiff_server *s = data;
	char *parts[6] = { 0 };
	size_t n = 0;
	_cleanup_free_ char *copy = xstrdup(req->path);
	char *save = NULL;

	for (char *t = strtok_r(copy, "/", &save); t && n < ARRAY_SIZE(parts);
	     t = strtok_r(NULL, "/", &save))
		parts[n++] = t;
	if (n < 2 || strcmp(parts[0], "v1"))
		goto not_found;
	const char *what = parts[1], *id = n > 2 ? parts[2] : NULL, *verb = n > 3 ? parts[3] : NULL;

	if (n > 4) {
		if (s->fns && fn_api_handle_long(s->fns, req, parts, n))
			return;
		goto not_found;
	}
	if (s->fns && strcmp(what, "health") && !(n == 3 && !strcmp(what, "apps") && !strcmp(id, "lookup")) &&
	    fn_api_handle(s->fns, req, parts, n))
		return;
	if (usage_api_handle(s, req, parts, n) || tokens_api_handle(s, req, parts, n))
		return;
	if (!strcmp(what, "health") && n == 2 && is(req, HTTP_GET))
		return h_health(s, req);
	if (!strcmp(what, "apps") && n == 3 && !strcmp(id, "lookup") && is(req, HTTP_POST))
		return h_app_lookup(s, req);
	if (!strcmp(what, "images") && n == 2) {
		if (is(req, HTTP_POST))
			return h_image_build(s, req);
		if (is(req, HTTP_GET))
			return h_image_list(s, req);
	}
	if (!strcmp(what, "images") && n == 3 && !strcmp(id, "prune") && is(req, HTTP_POST))
		return http_respond_json(req, 200, builds_prune(s));
	if (!strcmp(what, "images") && n == 3 && is(req, HTTP_DELETE)) {
		sk_error err;
		const char *user = s->fns && valid_id(id) ? fn_image_user(s->fns, id) : NULL;
		if (user)
			return http_respond_errorf(req, SK_ERR_CONFLICT,
						   "image %s is used by the deployed app %s; stop the "
						   "app (skiff app stop %s) before removing it",
						   id, user, user);
		if (!valid_id(id) || store_image_delete(s->store, id, &err) < 0)
			return http_respond_errorf(req, SK_ERR_NOT_FOUND, "no image %s on this server",
						   id);
		return http_respond_json(req, 200, json_pack("{s:s}", "deleted", id));
	}
	if (!strcmp(what, "sandboxes")) {
		if (n == 2 && is(req, HTTP_POST))
			return h_sandbox_create(s, req);
		if (n == 2 && is(req, HTTP_GET))
			return h_sandbox_list(s, req, "sandboxes");
		if (n == 3 && is(req, HTTP_GET))
			return h_sandbox_get(s, req, id);
		if (n == 4 && !strcmp(verb, "terminate") && is(req, HTTP_POST))
			return h_sandbox_terminate(s, req, id);
		if (n == 4 && !strcmp(verb, "exec") && is(req, HTTP_POST))
			return h_sandbox_exec(s, req, id);
	}
	if (!strcmp(what, "processes") && n == 4) {
		if (!strcmp(verb, "stdout") && is(req, HTTP_GET))
			return h_proc_output(s, req, id, false);
		if (!strcmp(verb, "stderr") && is(req, HTTP_GET))
			return h_proc_output(s, req, id, true);
		if (!strcmp(verb, "stdin") && is(req, HTTP_POST))
			return h_proc_stdin(s, req, id);
		if (!strcmp(verb, "wait") && is(req, HTTP_GET))
			return h_proc_wait(s, req, id);
		if (!strcmp(verb, "resize") && is(req, HTTP_POST))
			return h_proc_resize(s, req, id);
		if (!strcmp(verb, "attach") && is(req, HTTP_POST))
			return h_proc_attach(s, req, id);
	}
	if (!strcmp(what, "containers")) {
		if (n == 2 && is(req, HTTP_GET))
			return h_container_list(s, req);
		if (n == 4 && !strcmp(verb, "stop") && is(req, HTTP_POST))
			return h_sandbox_terminate(s, req, id);
		if (n == 4 && !strcmp(verb, "logs") && is(req, HTTP_GET))
			return h_container_logs(s, req, id);
	}
not_found:
	http_respond_errorf(req, SK_ERR_NOT_FOUND, "no such endpoint: %s %s (see docs/api.md)",
			    http_method_str(req->method), req->path);
}
