/*
 * Image builds with steps (see builds.h and docs/api.md).
 *
 * A job walks the steps in order.  Each step's layer id is the sha256 of
 * its parent's id and the step's canonical JSON; a layer already on disk is
 * used as it is ("CACHED").  Otherwise the step runs:
 *   - env/workdir/entrypoint/cmd/user: a layer with an empty diff and the new
 *     config;
 *   - copy: `cp -a` of the host path into the new layer's diff;
 *   - run: a build container ("bd-<hex>") of the image so far runs the
 *     commands under `sh -e`; on exit 0 the runtime moves the container's
 *     overlay upper folder (exactly what the commands changed, whiteouts
 *     included) into the new layer.
 * A layer is assembled in layers/.tmp-<id>-<rand> and renamed into place, so
 * a failed or interrupted step leaves nothing behind; two builds of the same
 * layer race harmlessly (the second rename finds the first's layer).
 */
#include "server/builds.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"
#include "server/internal.h"
#include "util/buf.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#define TAIL_LINES 20
#define STEP_TIMEOUT 3600

struct build_job {
	skiff_server *s;
	json_t *spec;
	json_t *steps;          /* borrowed from spec; may be NULL */
	size_t n, i;
	char base_id[80];
	char cur_id[80];
	json_t *config;
	build_msg_fn msg;
	build_done_fn done;
	void *ctx;
	image_waiter *w;
	bool gone, all_cached, finished;
	int holds;              /* builds_start is still on the stack */
	rt_container *c;
	char *tmp;              /* the layer being made */
	char lid[80];
	char *last_cmd;         /* the command a run step was at */
	sk_buf line;            /* a partial output line */
	char *tail[TAIL_LINES];
	size_t n_tail;
	double t0;
	/* a host process (cp, the OCI importer) */
	uv_process_t proc;
	uv_pipe_t out;
	int handles;
	int64_t proc_status;
	void (*proc_done)(build_job *job, int status);
	sk_buf proc_out;        /* its whole stdout (the importer's JSON is the last line) */
	char *import_tmp;
	build_job *next;
};

static build_job *jobs;

/* ---- small helpers -------------------------------------------------------------------------- */

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Folders inside layers are seen by every user of the image: not 0700. */
static int mkdir_public(const char *path, sk_error *err)
{
	mode_t old = umask(022);
	int rc = sk_mkdir_p(path, 0755, err);

	umask(old);
	return rc;
}

static char *layers_dir(skiff_server *s)
{
	return xasprintf("%s/layers", image_store_dir(s->images));
}

static char *sq(const char *s)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_add(&b, "'", 1);
	for (; *s; s++) {
		if (*s == '\'')
			sk_buf_adds(&b, "'\\''");
		else
			sk_buf_add(&b, s, 1);
	}
	sk_buf_add(&b, "'", 1);
	return sk_buf_detach(&b, NULL);
}

static void emit(build_job *job, json_t *m)
{
	if (job->gone || !job->msg) {
		json_decref(m);
		return;
	}
	job->msg(job->ctx, m);
}

static void emit_line(build_job *job, const char *text)
{
	free(job->tail[job->n_tail % TAIL_LINES]);
	job->tail[job->n_tail % TAIL_LINES] = xstrdup(text);
	job->n_tail++;
	if (!strncmp(text, "+ ", 2)) {
		free(job->last_cmd);
		job->last_cmd = xstrdup(text + 2);
	}
	if (job->base_id[0])
		emit(job, json_pack("{s:s, s:I}", "progress", text, "step", (json_int_t)job->i + 1));
	else
		emit(job, json_pack("{s:s}", "progress", text)); /* the base's own output */
}

static void feed_output(build_job *job, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		if (ch == '\n' || ch == '\r') {
			if (job->line.len) {
				sk_buf_add(&job->line, "", 1);
				/* Lines become JSON strings: keep only valid text. */
				for (size_t k = 0; k + 1 < job->line.len; k++)
					if ((unsigned char)job->line.base[k] < 0x20 && job->line.base[k] != '\t')
						job->line.base[k] = '?';
				json_t *j = json_string(job->line.base);
				if (!j) { /* not UTF-8 */
					for (size_t k = 0; k + 1 < job->line.len; k++)
						if ((unsigned char)job->line.base[k] >= 0x80)
							job->line.base[k] = '?';
				}
				json_decref(j);
				emit_line(job, job->line.base);
				sk_buf_reset(&job->line);
			}
			continue;
		}
		if (job->line.len < 4000)
			sk_buf_add(&job->line, &ch, 1);
	}
}

/*
 * The last lines of a step's output for its error message, which has room
 * for about 512 bytes in all: the newest lines win, long ones are cut.
 */
static char *tail_text(build_job *job)
{
	sk_buf b = SK_BUF_INIT;
	size_t n = job->n_tail < TAIL_LINES ? job->n_tail : TAIL_LINES, budget = 280, first;

	first = job->n_tail;
	while (first > job->n_tail - n) {
		size_t l = strlen(job->tail[(first - 1) % TAIL_LINES]);
		if (l > 160)
			l = 160;
		if (l + 1 > budget)
			break;
		budget -= l + 1;
		first--;
	}
	for (size_t k = first; k < job->n_tail; k++)
		sk_buf_addf(&b, "%.160s\n", job->tail[k % TAIL_LINES]);
	if (!b.len)
		sk_buf_adds(&b, "(no output)\n");
	return sk_buf_detach(&b, NULL);
}

static const char *step_label(json_t *step)
{
	const char *l = json_string_value(json_object_get(step, "label"));
	return l ? l : json_string_value(json_object_get(step, "op"));
}

static json_t *default_config(void)
{
	return json_pack("{s:[], s:n, s:n, s:n, s:n}", "env", "workdir", "entrypoint", "cmd", "user");
}

static json_t *load_config(skiff_server *s, const char *id)
{
	_cleanup_free_ char *text = image_config(s->images, id);
	json_error_t e;
	json_t *c = text ? json_loads(text, 0, &e) : NULL;

	return json_is_object(c) ? c : (json_decref(c), default_config());
}

/* ---- the end ----------------------------------------------------------------------------------- */

static void job_free(build_job *job)
{
	for (build_job **pp = &jobs; *pp; pp = &(*pp)->next)
		if (*pp == job) {
			*pp = job->next;
			break;
		}
	json_decref(job->spec);
	json_decref(job->config);
	free(job->tmp);
	free(job->last_cmd);
	free(job->import_tmp);
	sk_buf_release(&job->line);
	sk_buf_release(&job->proc_out);
	for (size_t k = 0; k < TAIL_LINES; k++)
		free(job->tail[k]);
	free(job);
}

/* Frees a finished job once nothing (a container, a child process, a caller) holds it. */
static void maybe_free(build_job *job)
{
	if (job->finished && !job->c && !job->handles && !job->holds)
		job_free(job);
}

static long long tree_bytes(const char *dir);
static json_t *chain_of(skiff_server *s, const char *id);

/* What an image's steps add: the sizes of its layers' diffs (not its base). */
static long long layers_bytes(skiff_server *s, const char *id)
{
	json_t *c = chain_of(s, id), *x;
	long long total = 0;
	size_t i;

	json_array_foreach(c, i, x) {
		_cleanup_free_ char *d = xasprintf("%s/layers/%s/diff", image_store_dir(s->images),
						   json_string_value(x));
		if (is_dir(d))
			total += tree_bytes(d);
	}
	json_decref(c);
	return total;
}

static void put_row(build_job *job)
{
	const char *base = json_string_value(json_object_get(job->spec, "base"));
	json_t *kept = json_deep_copy(job->spec), *st, *v;
	size_t i;
	const char *k;

	/* Step env may hold secrets: the store keeps their names only. */
	json_array_foreach(json_object_get(kept, "steps"), i, st)
		json_object_foreach(json_object_get(st, "env"), k, v)
			json_object_set_new(json_object_get(st, "env"), k, json_string("(hidden)"));
	_cleanup_free_ char *spec_json = json_dumps(kept, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(kept);
	store_image row = {
		.image_id = job->cur_id,
		.spec_json = spec_json,
		.base = (char *)(base ? base : "debian_slim"),
		.python_version = "3.11",
		.size_bytes = layers_bytes(job->s, job->cur_id),
		.created_at = sk_wall_time(),
	};
	sk_error err;

	if (store_image_put(job->s->store, &row, &err) < 0)
		log_warn("image %s: cannot record it: %s", job->cur_id, err.msg);
}

static void finish(build_job *job, const sk_error *err)
{
	if (job->finished)
		return;
	job->finished = true;
	if (job->tmp) {
		sk_rm_rf(job->tmp, NULL);
		free(job->tmp);
		job->tmp = NULL;
	}
	if (!err && job->n)
		put_row(job);
	if (!job->gone && job->done)
		job->done(job->ctx, err ? NULL : job->cur_id, job->all_cached, err);
	maybe_free(job);
}

static void fail(build_job *job, enum sk_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(build_job *job, enum sk_error_kind kind, const char *fmt, ...)
{
	sk_error err;
	va_list ap;

	err.kind = kind;
	va_start(ap, fmt);
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	finish(job, &err);
}

/* ---- layers ------------------------------------------------------------------------------------ */

static void run_next(build_job *job);

static char *layer_path(build_job *job, const char *lid)
{
	_cleanup_free_ char *d = layers_dir(job->s);
	return xasprintf("%s/%s", d, lid);
}

/* A fresh folder for the layer being made (its diff/ is made by the step). */
static int layer_tmp(build_job *job, sk_error *err)
{
	_cleanup_free_ char *d = layers_dir(job->s);
	char rnd[17] = { 0 };

	sk_random_hex(rnd, 8);
	rnd[16] = 0;
	free(job->tmp);
	job->tmp = xasprintf("%s/.tmp-%s-%s", d, job->lid + 3, rnd);
	return sk_mkdir_p(job->tmp, 0755, err);
}

/* The layer in job->tmp is complete: its parent and config, then into place. */
static void layer_commit(build_job *job)
{
	_cleanup_free_ char *parent = xasprintf("%s/parent", job->tmp);
	_cleanup_free_ char *cfg = xasprintf("%s/config.json", job->tmp);
	_cleanup_free_ char *diff = xasprintf("%s/diff", job->tmp);
	_cleanup_free_ char *final = layer_path(job, job->lid);
	_cleanup_free_ char *cj = json_dumps(job->config, JSON_COMPACT | JSON_SORT_KEYS);
	sk_error err;

	if ((!is_dir(diff) && mkdir_public(diff, &err) < 0) ||
	    sk_write_file(parent, job->cur_id, strlen(job->cur_id), 0644, &err) < 0 ||
	    sk_write_file(cfg, cj, strlen(cj), 0644, &err) < 0) {
		fail(job, SK_ERR_INTERNAL, "step %zu (%s): cannot save its layer: %s", job->i + 1,
		     step_label(json_array_get(job->steps, job->i)), err.msg);
		return;
	}
	if (rename(job->tmp, final) < 0) {
		if (!is_dir(final)) {
			fail(job, SK_ERR_INTERNAL, "step %zu: cannot save its layer in %s: %s",
			     job->i + 1, final, strerror(errno));
			return;
		}
		sk_rm_rf(job->tmp, NULL); /* another build made the same layer first */
	}
	free(job->tmp);
	job->tmp = NULL;
	snprintf(job->cur_id, sizeof(job->cur_id), "%s", job->lid);
	job->i++;
	run_next(job);
}

/* ---- host processes (cp, the OCI importer) ---------------------------------------------------- */

static void proc_closed(uv_handle_t *h)
{
	build_job *job = h->data;

	if (--job->handles)
		return;
	if (job->proc_done) {
		void (*f)(build_job *, int) = job->proc_done;
		job->proc_done = NULL;
		job->handles++; /* holds the job while f runs (it may finish it, or spawn again) */
		f(job, (int)job->proc_status);
		job->handles--;
	}
	maybe_free(job);
}

static void proc_exit(uv_process_t *p, int64_t status, int sig)
{
	build_job *job = p->data;

	job->proc_status = sig ? 128 + sig : status;
	uv_close((uv_handle_t *)p, proc_closed);
}

static void proc_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	build_job *job = h->data;

	(void)hint;
	sk_buf_grow(&job->proc_out, 65536);
	buf->base = job->proc_out.base + job->proc_out.len;
	buf->len = job->proc_out.cap - job->proc_out.len - 1;
}

static void proc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	build_job *job = st->data;

	if (n < 0) {
		uv_close((uv_handle_t *)st, proc_closed);
		return;
	}
	(void)buf;
	feed_output(job, job->proc_out.base + job->proc_out.len, (size_t)n);
	job->proc_out.len += (size_t)n;
}

static int spawn(build_job *job, char **argv, char **env, void (*done)(build_job *, int),
		 sk_error *err)
{
	uv_process_options_t o = { 0 };
	uv_stdio_container_t io[3];
	int rc;

	sk_buf_reset(&job->proc_out);
	uv_pipe_init(job->s->loop, &job->out, 0);
	job->out.data = job;
	io[0].flags = UV_IGNORE;
	io[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	io[1].data.stream = (uv_stream_t *)&job->out;
	io[2].flags = UV_INHERIT_FD; /* stderr: the server's log */
	io[2].data.fd = 2;
	/* Through sh, so that the program's stderr joins its stdout (error messages
	 * reach the client): sh -c 'exec "$0" "$@" 2>&1' PROGRAM ARGS... */
	size_t n = 0;
	while (argv[n])
		n++;
	char **wrapped = xcalloc(n + 4, sizeof(char *));
	wrapped[0] = "/bin/sh";
	wrapped[1] = "-c";
	wrapped[2] = "exec \"$0\" \"$@\" 2>&1";
	for (size_t i = 0; i < n; i++)
		wrapped[3 + i] = argv[i];
	o.file = wrapped[0];
	o.args = wrapped;
	o.env = env;
	o.stdio = io;
	o.stdio_count = 3;
	o.exit_cb = proc_exit;
	job->proc.data = job;
	rc = uv_spawn(job->s->loop, &job->proc, &o);
	free(wrapped);
	if (rc < 0) {
		uv_close((uv_handle_t *)&job->out, NULL);
		return sk_error_set(err, SK_ERR_INTERNAL, "cannot run %s: %s", argv[0], uv_strerror(rc));
	}
	job->handles += 2;
	job->proc_done = done;
	uv_read_start((uv_stream_t *)&job->out, proc_alloc, proc_read);
	return 0;
}

/* ---- steps ------------------------------------------------------------------------------------- */

static void copy_done(build_job *job, int status)
{
	if (job->finished)
		return;
	if (status != 0) {
		_cleanup_free_ char *tail = tail_text(job);
		fail(job, SK_ERR_INVALID, "step %zu (%s): copying failed (cp exited with %d); last "
					  "lines:\n%s",
		     job->i + 1, step_label(json_array_get(job->steps, job->i)), status, tail);
		return;
	}
	layer_commit(job);
}

static void step_copy(build_job *job, json_t *step)
{
	const char *src = json_string_value(json_object_get(step, "source"));
	const char *dst = json_string_value(json_object_get(step, "target"));
	struct stat st;
	sk_error err;
	_cleanup_free_ char *target = NULL, *parent = NULL, *from = NULL;

	if (stat(src, &st) < 0) {
		fail(job, SK_ERR_INVALID, "step %zu (%s): %s does not exist on the server's machine",
		     job->i + 1, step_label(step), src);
		return;
	}
	if (layer_tmp(job, &err) < 0) {
		finish(job, &err);
		return;
	}
	target = xasprintf("%s/diff%s", job->tmp, dst);
	if (S_ISDIR(st.st_mode)) {
		if (mkdir_public(target, &err) < 0) {
			finish(job, &err);
			return;
		}
		from = xasprintf("%s/.", src);
	} else {
		parent = xstrdup(target);
		*strrchr(parent, '/') = 0;
		if (mkdir_public(parent, &err) < 0) {
			finish(job, &err);
			return;
		}
		from = xstrdup(src);
	}
	char *argv[] = { "/bin/cp", "-a", "--", from, target, NULL };
	if (spawn(job, argv, NULL, copy_done, &err) < 0)
		finish(job, &err);
}

/*
 * A USER of the image config as uid/gid: numbers ("1000", "1000:1000"), or a
 * name looked up in the top-most etc/passwd (and etc/group) of the chain.
 */
static int resolve_user(const char *chain, const char *user, unsigned *uid, unsigned *gid,
			sk_error *err)
{
	_cleanup_free_ char *copy = xstrdup(user), *layers = xstrdup(chain);
	char *gpart = strchr(copy, ':'), *save = NULL, *end;
	unsigned long u;

	*uid = *gid = 0;
	if (gpart)
		*gpart++ = 0;
	u = strtoul(copy, &end, 10);
	if (*copy && !*end) {
		*uid = *gid = (unsigned)u;
	} else {
		bool found = false;
		for (char *l = strtok_r(layers, ":", &save); l && !found; l = strtok_r(NULL, ":", &save)) {
			_cleanup_free_ char *pw = xasprintf("%s/etc/passwd", l), *text = NULL;
			size_t n;
			if (sk_read_file(pw, &text, &n, NULL) < 0)
				continue;
			for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
				char name[256];
				unsigned a, b;
				if (sscanf(line, "%255[^:]:%*[^:]:%u:%u:", name, &a, &b) == 3 &&
				    !strcmp(name, copy)) {
					*uid = a;
					*gid = b;
					found = true;
					break;
				}
			}
			break; /* the top-most passwd decides */
		}
		if (!found)
			return sk_error_set(err, SK_ERR_INVALID,
					    "USER %s: no such user in the image's /etc/passwd", copy);
	}
	if (gpart) {
		u = strtoul(gpart, &end, 10);
		if (!*gpart || *end)
			return sk_error_set(err, SK_ERR_INVALID,
					    "USER %s: give the group as a number", user);
		*gid = (unsigned)u;
	}
	return 0;
}

static void on_build_output(rt_container *c, int fd, const char *data, size_t len)
{
	build_job *job = c->user;

	(void)fd;
	if (job)
		feed_output(job, data, len);
}

static void step_run(build_job *job, json_t *step)
{
	json_t *cmds = json_object_get(step, "commands"), *x, *env = json_object_get(step, "env");
	json_t *mounts = json_object_get(step, "mounts");
	_cleanup_free_ char *lower = image_rootfs(job->s->images, job->cur_id);
	_cleanup_free_ char *save = NULL;
	sk_buf script = SK_BUF_INIT;
	char **envv;
	oci_mount *mv;
	size_t i, n_env = 0, n_m = json_array_size(mounts);
	char id[20] = "bd-";
	const char *k;
	sk_error err;
	rt_container *c;

	if (!lower) {
		fail(job, SK_ERR_INTERNAL, "image %s has no root file system", job->cur_id);
		return;
	}
	if (layer_tmp(job, &err) < 0) {
		finish(job, &err);
		return;
	}
	save = xasprintf("%s/diff", job->tmp);
	sk_buf_adds(&script, "set -e\n");
	json_array_foreach(cmds, i, x) {
		_cleanup_free_ char *echo = xasprintf("+ %s", json_string_value(x));
		_cleanup_free_ char *q = sq(echo);
		sk_buf_addf(&script, "printf '%%s\\n' %s\n%s\n", q, json_string_value(x));
	}
	envv = xcalloc(json_array_size(json_object_get(job->config, "env")) + json_object_size(env) + 2,
		       sizeof(char *));
	json_array_foreach(json_object_get(job->config, "env"), i, x) {
		const char *e = json_string_value(x);
		const char *eq = e ? strchr(e, '=') : NULL;
		if (!eq)
			continue;
		_cleanup_free_ char *key = xstrndup(e, (size_t)(eq - e));
		if (!json_object_get(env, key))
			envv[n_env++] = xstrdup(e);
	}
	json_object_foreach(env, k, x)
		if (json_is_string(x))
			envv[n_env++] = xasprintf("%s=%s", k, json_string_value(x));
	bool has_path = false;
	for (i = 0; i < n_env; i++)
		has_path = has_path || !strncmp(envv[i], "PATH=", 5);
	if (!has_path)
		envv[n_env++] = xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	mv = xcalloc(n_m + 1, sizeof(*mv));
	json_array_foreach(mounts, i, x) {
		mv[i].source = json_string_value(json_object_get(x, "source"));
		mv[i].destination = json_string_value(json_object_get(x, "target"));
		mv[i].readonly = true;
	}
	sk_random_hex(id + 3, 8);
	id[19] = 0;
	unsigned uid = 0, gid = 0;
	const char *user = json_string_value(json_object_get(job->config, "user"));
	if (user && resolve_user(lower, user, &uid, &gid, &err) < 0) {
		fail(job, SK_ERR_INVALID, "step %zu (%s): %s", job->i + 1, step_label(step), err.msg);
		goto out;
	}
	const char *argv[] = { "/bin/sh", "-c", script.base, NULL };
	rt_spec spec = {
		.id = id,
		.image_id = job->cur_id,
		.lower = lower,
		.argv = argv,
		.env = (const char *const *)envv,
		.workdir = json_string_value(json_object_get(job->config, "workdir")),
		.timeout = STEP_TIMEOUT,
		.mounts = mv,
		.n_mounts = n_m,
		.hostname = "skiff-build",
		.uid = uid,
		.gid = gid,
		.save_upper = save,
	};
	if (rt_container_start(job->s->rt, &spec, &c, &err) < 0) {
		fail(job, err.kind, "step %zu (%s): cannot start its build container: %s", job->i + 1,
		     step_label(step), err.msg);
	} else {
		c->user = job;
		c->on_output = on_build_output;
		job->c = c;
	}
out:
	for (i = 0; i < n_env; i++)
		free(envv[i]);
	free(envv);
	free(mv);
	sk_buf_release(&script);
}

bool builds_container_exited(skiff_server *s, rt_container *c)
{
	build_job *job;

	if (strncmp(c->id, "bd-", 3))
		return false;
	job = c->user;
	c->user = NULL;
	if (!job)
		return true;
	job->c = NULL;
	if (job->line.len)
		feed_output(job, "\n", 1);
	if (job->finished) {
		maybe_free(job);
		return true;
	}
	if (!c->upper_saved) {
		_cleanup_free_ char *tail = tail_text(job);
		json_t *step = json_array_get(job->steps, job->i);
		const char *why = c->oom ? " (out of memory)" : c->timed_out ? " (timed out)" : "";
		if (c->returncode == 0 && !c->oom && !c->timed_out)
			fail(job, SK_ERR_INTERNAL, "step %zu (%s): its changes could not be kept (see the "
						   "server's log)",
			     job->i + 1, step_label(step));
		else
			fail(job, SK_ERR_INVALID, "step %zu (%.60s): `%.100s` exited with %d%s; last "
						  "lines:\n%s",
			     job->i + 1, step_label(step), job->last_cmd ? job->last_cmd : "/bin/sh",
			     c->returncode, why, tail);
		return true;
	}
	layer_commit(job);
	return true;
}

static void apply_config(build_job *job, json_t *step)
{
	const char *op = json_string_value(json_object_get(step, "op"));
	json_t *cfg = json_deep_copy(job->config);

	if (!strcmp(op, "env")) {
		json_t *env = json_object_get(cfg, "env"), *v;
		const char *k;
		json_object_foreach(json_object_get(step, "vars"), k, v) {
			size_t kl = strlen(k), i;
			json_t *e;
			/* Replace an earlier value of the same name. */
			for (i = 0; i < json_array_size(env); i++) {
				e = json_array_get(env, i);
				const char *es = json_string_value(e);
				if (es && !strncmp(es, k, kl) && es[kl] == '=') {
					json_array_remove(env, i);
					break;
				}
			}
			json_array_append_new(env, json_sprintf("%s=%s", k, json_string_value(v)));
		}
	} else if (!strcmp(op, "workdir")) {
		json_object_set(cfg, "workdir", json_object_get(step, "path"));
	} else if (!strcmp(op, "entrypoint") || !strcmp(op, "cmd")) {
		json_object_set(cfg, op, json_object_get(step, "argv"));
	} else if (!strcmp(op, "user")) {
		json_object_set(cfg, "user", json_object_get(step, "user"));
	}
	json_decref(job->config);
	job->config = cfg;
}

static void run_next(build_job *job)
{
	sk_error err;

	while (!job->finished && job->i < job->n) {
		json_t *step = json_array_get(job->steps, job->i), *canon = json_deep_copy(step);
		const char *op = json_string_value(json_object_get(step, "op"));
		_cleanup_free_ char *text = NULL, *path = NULL, *hdr = NULL;
		char hex[65];
		sha256_ctx h;
		uint8_t dig[32];

		json_object_del(canon, "label");
		/* Content, not where it came from: a moved project keeps its layers. */
		if (json_is_string(json_object_get(step, "content_hash"))) {
			json_t *m;
			size_t k;
			json_object_del(canon, "source");
			json_array_foreach(json_object_get(canon, "mounts"), k, m)
				json_object_del(m, "source");
		}
		if (json_is_true(json_object_get(step, "force"))) {
			char rnd[33] = { 0 };
			sk_random_hex(rnd, 16);
			rnd[32] = 0;
			json_object_set_new(canon, "nonce", json_string(rnd));
		}
		text = json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(canon);
		sha256_init(&h);
		sha256_update(&h, job->cur_id, strlen(job->cur_id));
		sha256_update(&h, "\n", 1);
		sha256_update(&h, text, strlen(text));
		sha256_final(&h, dig);
		for (int k = 0; k < 32; k++)
			snprintf(hex + 2 * k, 3, "%02x", dig[k]);
		snprintf(job->lid, sizeof(job->lid), "im-%s", hex);
		path = layer_path(job, job->lid);
		hdr = xasprintf("=> [%zu/%zu] %s", job->i + 1, job->n, step_label(step));
		job->t0 = sk_wall_time();
		if (is_dir(path)) {
			emit(job, json_pack("{s:s, s:I, s:b}", "progress", hdr, "step",
					    (json_int_t)job->i + 1, "cached", 1));
			json_decref(job->config);
			job->config = load_config(job->s, job->lid);
			snprintf(job->cur_id, sizeof(job->cur_id), "%s", job->lid);
			job->i++;
			continue;
		}
		job->all_cached = false;
		job->n_tail = 0;
		free(job->last_cmd);
		job->last_cmd = NULL;
		emit(job, json_pack("{s:s, s:I, s:b}", "progress", hdr, "step", (json_int_t)job->i + 1,
				    "cached", 0));
		if (!strcmp(op, "run")) {
			step_run(job, step);
		} else if (!strcmp(op, "copy")) {
			step_copy(job, step);
		} else {
			apply_config(job, step);
			if (layer_tmp(job, &err) < 0) {
				finish(job, &err);
				return;
			}
			layer_commit(job);
		}
		return;
	}
	if (!job->finished)
		finish(job, NULL);
}

/* ---- bases ------------------------------------------------------------------------------------- */

static void base_ready(build_job *job, const char *base_id)
{
	char id[80];

	snprintf(id, sizeof(id), "%s", base_id); /* base_id may be job->base_id itself */
	snprintf(job->base_id, sizeof(job->base_id), "%s", id);
	snprintf(job->cur_id, sizeof(job->cur_id), "%s", id);
	json_decref(job->config);
	job->config = load_config(job->s, base_id);
	run_next(job);
}

static void base_progress(void *ctx, const char *line)
{
	build_job *job = ctx;

	emit(job, json_pack("{s:s}", "progress", line));
}

static void base_done(void *ctx, const char *image_id, bool cached, const sk_error *err)
{
	build_job *job = ctx;

	job->w = NULL;
	if (!cached)
		job->all_cached = false;
	if (err) {
		finish(job, err);
		return;
	}
	base_ready(job, image_id);
}

static char *id_of(const char *what, const char *text)
{
	char hex[65];

	sha256_hex(text, strlen(text), hex);
	(void)what;
	return xasprintf("im-%s", hex);
}

static void scratch_base(build_job *job)
{
	_cleanup_free_ char *id = id_of("scratch", "skiff-scratch-v1");
	_cleanup_free_ char *root = xasprintf("%s/%s/rootfs", image_store_dir(job->s->images), id);
	sk_error err;

	if (!is_dir(root) && mkdir_public(root, &err) < 0) {
		finish(job, &err);
		return;
	}
	base_ready(job, id);
}

/* The SDK's folder, for `python3 -m skiff._oci_import` (next to this binary). */
static char *sdk_dir(void)
{
	static const char *const rel[] = { "../lib/skiff/python", "../sdk/python" };
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return NULL;
	exe[n] = 0;
	*strrchr(exe, '/') = 0;
	for (size_t i = 0; i < 2; i++) {
		char *p = xasprintf("%s/%s", exe, rel[i]);
		_cleanup_free_ char *probe = xasprintf("%s/skiff/_oci_import.py", p);
		if (access(probe, R_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

static char **import_env(void)
{
	_cleanup_free_ char *sdk = sdk_dir();
	char **env = xcalloc(4, sizeof(char *));

	env[0] = xasprintf("PYTHONPATH=%s", sdk ? sdk : "");
	env[1] = xstrdup("PATH=/usr/local/bin:/usr/bin:/bin");
	env[2] = xstrdup("PYTHONDONTWRITEBYTECODE=1");
	return env;
}

static void free_env(char **env)
{
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
}

static json_t *last_json_line(sk_buf *b)
{
	json_error_t e;
	char *end, *start;

	sk_buf_add(b, "", 1);
	end = b->base + strlen(b->base);
	while (end > b->base && (end[-1] == '\n' || end[-1] == ' '))
		*--end = 0;
	start = strrchr(b->base, '\n');
	start = start ? start + 1 : b->base;
	return json_loads(start, 0, &e);
}

static void import_done(build_job *job, int status)
{
	json_t *j = last_json_line(&job->proc_out);
	_cleanup_free_ char *cfg = NULL, *cfgpath = NULL, *final = NULL;
	sk_error err;

	if (job->finished) {
		json_decref(j);
		return;
	}
	if (status != 0 || !json_is_object(j)) {
		_cleanup_free_ char *tail = tail_text(job);
		json_decref(j);
		sk_rm_rf(job->import_tmp, NULL);
		fail(job, SK_ERR_INVALID, "importing the OCI image failed (exit %d):\n%s", status, tail);
		return;
	}
	final = xasprintf("%s/%s", image_store_dir(job->s->images), job->base_id);
	cfg = json_dumps(json_object_get(j, "config"), JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	cfgpath = xasprintf("%s/config.json", job->import_tmp);
	if (sk_write_file(cfgpath, cfg ? cfg : "{}", cfg ? strlen(cfg) : 2, 0644, &err) < 0) {
		sk_rm_rf(job->import_tmp, NULL);
		finish(job, &err);
		return;
	}
	if (rename(job->import_tmp, final) < 0 && !is_dir(final)) {
		sk_rm_rf(job->import_tmp, NULL);
		fail(job, SK_ERR_INTERNAL, "cannot keep the imported image: %s", strerror(errno));
		return;
	}
	sk_rm_rf(job->import_tmp, NULL);
	{
		store_image row = { .image_id = job->base_id, .spec_json = "{\"base\":\"oci\"}",
				    .base = "oci", .python_version = NULL, .size_bytes = 0,
				    .created_at = sk_wall_time() };
		store_image_put(job->s->store, &row, &err);
	}
	base_ready(job, job->base_id);
}

static void digest_done(build_job *job, int status)
{
	json_t *j = last_json_line(&job->proc_out);
	const char *digest = json_string_value(json_object_get(j, "digest"));
	const char *path = json_string_value(json_object_get(job->spec, "path"));
	_cleanup_free_ char *key = NULL, *id = NULL, *root = NULL, *dest = NULL;
	char **env;
	sk_error err;

	if (job->finished) {
		json_decref(j);
		return;
	}
	if (status != 0 || !digest) {
		_cleanup_free_ char *tail = tail_text(job);
		json_decref(j);
		fail(job, SK_ERR_INVALID, "%s is not an OCI image this server can read:\n%s", path, tail);
		return;
	}
	key = xasprintf("oci:%s", digest);
	json_decref(j);
	id = id_of("oci", key);
	snprintf(job->base_id, sizeof(job->base_id), "%s", id);
	root = xasprintf("%s/%s/rootfs", image_store_dir(job->s->images), id);
	if (is_dir(root)) {
		base_ready(job, id);
		return;
	}
	job->all_cached = false;
	free(job->import_tmp);
	{
		char rnd[17] = { 0 };
		sk_random_hex(rnd, 8);
		job->import_tmp = xasprintf("%s/.tmp-%s-%s", image_store_dir(job->s->images), id + 3, rnd);
	}
	dest = xasprintf("%s/rootfs", job->import_tmp);
	if (mkdir_public(dest, &err) < 0) {
		finish(job, &err);
		return;
	}
	emit(job, json_pack("{s:s, s:I}", "progress", "importing the OCI image", "step", (json_int_t)0));
	env = import_env();
	char *argv[] = { "/usr/bin/python3", "-m", "skiff._oci_import", (char *)path, dest, NULL };
	if (spawn(job, argv, env, import_done, &err) < 0)
		finish(job, &err);
	free_env(env);
}

static void oci_base(build_job *job)
{
	const char *path = json_string_value(json_object_get(job->spec, "path"));
	char **env = import_env();
	sk_error err;
	char *argv[] = { "/usr/bin/python3", "-m", "skiff._oci_import", "--digest", (char *)path, NULL };

	if (spawn(job, argv, env, digest_done, &err) < 0)
		finish(job, &err);
	free_env(env);
}

/* ---- validation -------------------------------------------------------------------------------- */

static bool abs_path(const json_t *j)
{
	const char *p = json_string_value(j);
	return p && p[0] == '/' && !strstr(p, "/../") && strcmp(p + strlen(p) - (strlen(p) >= 3 ? 3 : 0), "/..");
}

static int check_steps(json_t *steps, sk_error *err)
{
	size_t i;
	json_t *st;

	if (steps && !json_is_array(steps))
		return sk_error_set(err, SK_ERR_INVALID, "steps must be a list");
	if (json_array_size(steps) > 100)
		return sk_error_set(err, SK_ERR_INVALID,
				    "an image has at most 100 steps (overlayfs stacks its layers)");
	json_array_foreach(steps, i, st) {
		const char *op = json_string_value(json_object_get(st, "op"));
		if (!json_is_object(st) || !op)
			return sk_error_set(err, SK_ERR_INVALID, "step %zu: needs an \"op\"", i + 1);
		if (!strcmp(op, "run")) {
			json_t *c = json_object_get(st, "commands"), *x, *m;
			size_t k;
			if (!json_is_array(c) || !json_array_size(c))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (run): commands must be a non-empty list",
						    i + 1);
			json_array_foreach(c, k, x)
				if (!json_is_string(x))
					return sk_error_set(err, SK_ERR_INVALID,
							    "step %zu (run): commands must be strings",
							    i + 1);
			json_array_foreach(json_object_get(st, "mounts"), k, m)
				if (!abs_path(json_object_get(m, "source")) ||
				    !abs_path(json_object_get(m, "target")))
					return sk_error_set(err, SK_ERR_INVALID,
							    "step %zu (run): mounts need absolute "
							    "source and target paths",
							    i + 1);
		} else if (!strcmp(op, "copy")) {
			if (!abs_path(json_object_get(st, "source")) ||
			    !abs_path(json_object_get(st, "target")))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (copy): source and target must be "
						    "absolute paths",
						    i + 1);
		} else if (!strcmp(op, "env")) {
			json_t *v;
			const char *k;
			if (!json_is_object(json_object_get(st, "vars")))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (env): vars must be an object", i + 1);
			json_object_foreach(json_object_get(st, "vars"), k, v)
				if (!json_is_string(v) || !*k || strchr(k, '='))
					return sk_error_set(err, SK_ERR_INVALID,
							    "step %zu (env): \"%.64s\" must be a name "
							    "with a string value",
							    i + 1, k);
		} else if (!strcmp(op, "workdir")) {
			if (!abs_path(json_object_get(st, "path")))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (workdir): path must be absolute", i + 1);
		} else if (!strcmp(op, "entrypoint") || !strcmp(op, "cmd")) {
			json_t *a = json_object_get(st, "argv"), *x;
			size_t k;
			if (!json_is_array(a) && !json_is_null(a))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (%s): argv must be a list of strings",
						    i + 1, op);
			json_array_foreach(a, k, x)
				if (!json_is_string(x))
					return sk_error_set(err, SK_ERR_INVALID,
							    "step %zu (%s): argv must be strings", i + 1,
							    op);
		} else if (!strcmp(op, "user")) {
			if (!json_is_string(json_object_get(st, "user")))
				return sk_error_set(err, SK_ERR_INVALID,
						    "step %zu (user): user must be a string", i + 1);
		} else {
			return sk_error_set(err, SK_ERR_INVALID,
					    "step %zu: unknown op \"%.32s\" (known: run, copy, env, "
					    "workdir, entrypoint, cmd, user)",
					    i + 1, op);
		}
	}
	return 0;
}

int builds_check(const json_t *spec, sk_error *err)
{
	const char *base = json_string_value(json_object_get(spec, "base"));
	image_spec ispec;

	if (check_steps(json_object_get(spec, "steps"), err) < 0)
		return -1;
	if (base && (!strcmp(base, "oci") || !strcmp(base, "scratch")))
		return 0;
	json_t *b = json_deep_copy(spec);
	json_object_del(b, "steps");
	int rc = image_spec_parse(b, &ispec, err);
	json_decref(b);
	if (rc == 0)
		image_spec_release(&ispec);
	return rc;
}

int builds_start(skiff_server *s, json_t *spec, build_msg_fn msg, build_done_fn done, void *ctx,
		 build_job **out, sk_error *err)
{
	const char *base = json_string_value(json_object_get(spec, "base"));
	json_t *steps = json_object_get(spec, "steps");
	build_job *job;
	image_spec ispec;

	if (out)
		*out = NULL;
	if (check_steps(steps, err) < 0)
		return -1;
	if (base && !strcmp(base, "oci")) {
		const char *path = json_string_value(json_object_get(spec, "path"));
		struct stat st;
		if (!path || path[0] != '/')
			return sk_error_set(err, SK_ERR_INVALID,
					    "an oci base needs \"path\": the absolute path of an OCI "
					    "image layout or archive on the server's machine");
		if (stat(path, &st) < 0)
			return sk_error_set(err, SK_ERR_INVALID,
					    "%s does not exist on the server's machine (registry pulls "
					    "need a network this machine does not reach: save the image "
					    "to an OCI layout or archive first)",
					    path);
	} else if (!base || strcmp(base, "scratch")) {
		json_t *b = json_deep_copy(spec);
		json_object_del(b, "steps");
		int rc = image_spec_parse(b, &ispec, err);
		json_decref(b);
		if (rc < 0)
			return -1;
	}
	job = xcalloc(1, sizeof(*job));
	job->s = s;
	job->spec = json_incref(spec);
	job->steps = steps;
	job->n = json_array_size(steps);
	job->msg = msg;
	job->done = done;
	job->ctx = ctx;
	job->all_cached = true;
	job->config = default_config();
	job->next = jobs;
	jobs = job;
	if (out)
		*out = job;
	job->holds++;
	if (base && !strcmp(base, "scratch")) {
		scratch_base(job);
	} else if (base && !strcmp(base, "oci")) {
		oci_base(job);
	} else {
		image_waiter *w = NULL;
		if (image_ensure(s->images, &ispec, base_progress, base_done, job, &w, err) < 0)
			finish(job, err);
		else if (!job->finished && job->i == 0 && !job->base_id[0])
			job->w = w;
		image_spec_release(&ispec);
	}
	job->holds--;
	if (job->finished && out)
		*out = NULL; /* done already: nothing for the caller to detach */
	maybe_free(job);
	return 0;
}

void builds_detach(build_job *job)
{
	job->gone = true;
	if (job->w) {
		image_waiter_cancel(job->w);
		job->w = NULL;
		/* The base build goes on for others; this job has nothing left to do. */
		if (!job->finished) {
			job->finished = true;
			maybe_free(job);
		}
	}
}

/* ---- listing and pruning ----------------------------------------------------------------------- */

/* The ids of an image's layers, top first, ending with its base. */
static json_t *chain_of(skiff_server *s, const char *id)
{
	json_t *a = json_array();
	char cur[80];

	snprintf(cur, sizeof(cur), "%s", id);
	for (int depth = 0; depth < 200; depth++) {
		_cleanup_free_ char *pf = xasprintf("%s/layers/%s/parent", image_store_dir(s->images),
						    cur);
		_cleanup_free_ char *parent = NULL;
		size_t n;
		json_array_append_new(a, json_string(cur));
		if (sk_read_file(pf, &parent, &n, NULL) < 0)
			break;
		parent[strcspn(parent, "\n")] = 0;
		snprintf(cur, sizeof(cur), "%s", parent);
	}
	return a;
}

void builds_image_info(skiff_server *s, const char *image_id, const char *spec_json, json_t *row)
{
	json_error_t e;
	json_t *spec = spec_json ? json_loads(spec_json, 0, &e) : NULL;
	_cleanup_free_ char *cfg = image_config(s->images, image_id);
	json_t *cj = cfg ? json_loads(cfg, 0, &e) : NULL;

	json_object_set_new(row, "steps", json_integer((json_int_t)json_array_size(
							 json_object_get(spec, "steps"))));
	json_object_set_new(row, "layers", chain_of(s, image_id));
	json_object_set_new(row, "config", cj ? cj : json_null());
	json_decref(spec);
}

static long long du_total;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	du_total += (long long)st->st_blocks * 512;
	return 0;
}

static long long tree_bytes(const char *dir)
{
	du_total = 0;
	nftw(dir, du_one, 32, FTW_PHYS | FTW_MOUNT);
	return du_total;
}

static void keep_chain(skiff_server *s, json_t *keep, const char *id)
{
	json_t *c = chain_of(s, id), *x;
	size_t i;

	json_array_foreach(c, i, x)
		json_object_set_new(keep, json_string_value(x), json_true());
	json_decref(c);
}

json_t *builds_prune(skiff_server *s)
{
	json_t *keep = json_object(), *removed = json_array();
	store_image *ims = NULL;
	size_t n = 0;
	sk_error err;
	long long freed = 0;
	const char *dirs[2];
	_cleanup_free_ char *ld = xasprintf("%s/layers", image_store_dir(s->images));
	DIR *d;
	struct dirent *de;

	if (store_image_list(s->store, &ims, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			keep_chain(s, keep, ims[i].image_id);
		store_images_free(ims, n);
	}
	for (rt_container *c = rt_containers(s->rt); c; c = c->next)
		if (c->state == RT_RUNNING && c->image_id)
			keep_chain(s, keep, c->image_id);
	for (build_job *j = jobs; j; j = j->next)
		if (j->cur_id[0])
			keep_chain(s, keep, j->cur_id);
	dirs[0] = ld;
	dirs[1] = image_store_dir(s->images);
	for (int k = 0; k < 2; k++) {
		if (!(d = opendir(dirs[k])))
			continue;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, "im-", 3) || json_object_get(keep, de->d_name))
				continue;
			_cleanup_free_ char *p = xasprintf("%s/%s", dirs[k], de->d_name);
			if (!is_dir(p))
				continue;
			freed += tree_bytes(p);
			if (sk_rm_rf(p, &err) == 0)
				json_array_append_new(removed, json_string(de->d_name));
			else
				log_warn("image prune: %s", err.msg);
		}
		closedir(d);
	}
	json_decref(keep);
	log_info("image prune: removed %zu layers and images, %lld bytes", json_array_size(removed),
		 freed);
	return json_pack("{s:o, s:I}", "removed_layers", removed, "freed_bytes", (json_int_t)freed);
}

/* ---- what containers take from an image ------------------------------------------------------- */

char **builds_image_env(skiff_server *s, const char *image_id, char **own)
{
	json_t *cfg = load_config(s, image_id), *x;
	json_t *ienv = json_object_get(cfg, "env");
	size_t n_own = 0, n = 0, i;
	char **out;

	while (own && own[n_own])
		n_own++;
	out = xcalloc(json_array_size(ienv) + n_own + 1, sizeof(char *));
	json_array_foreach(ienv, i, x) {
		const char *e = json_string_value(x), *eq = e ? strchr(e, '=') : NULL;
		bool mine = false;
		if (!eq)
			continue;
		for (size_t k = 0; k < n_own && !mine; k++)
			mine = !strncmp(own[k], e, (size_t)(eq - e) + 1);
		if (!mine)
			out[n++] = xstrdup(e);
	}
	for (size_t k = 0; k < n_own; k++)
		out[n++] = own[k];
	free(own);
	json_decref(cfg);
	return out;
}

char *builds_image_workdir(skiff_server *s, const char *image_id)
{
	json_t *cfg = load_config(s, image_id);
	const char *w = json_string_value(json_object_get(cfg, "workdir"));
	char *out = w ? xstrdup(w) : NULL;

	json_decref(cfg);
	return out;
}

int builds_parse_mounts(const json_t *j, oci_mount **out, size_t *n, sk_error *err)
{
	size_t i;
	json_t *m;
	struct stat st;

	*out = NULL;
	*n = 0;
	if (!j || json_is_null(j))
		return 0;
	if (!json_is_array(j) || json_array_size(j) > 256)
		return sk_error_set(err, SK_ERR_INVALID, "mounts must be a list (at most 256)");
	json_array_foreach(j, i, m) {
		const char *src = json_string_value(json_object_get(m, "source"));
		if (!abs_path(json_object_get(m, "source")) || !abs_path(json_object_get(m, "target")))
			return sk_error_set(err, SK_ERR_INVALID,
					    "mounts[%zu]: source and target must be absolute paths", i);
		if (stat(src, &st) < 0)
			return sk_error_set(err, SK_ERR_INVALID,
					    "mounts[%zu]: %s does not exist on the server's machine", i,
					    src);
	}
	*out = xcalloc(json_array_size(j) + 1, sizeof(oci_mount));
	json_array_foreach(j, i, m) {
		(*out)[i].source = xstrdup(json_string_value(json_object_get(m, "source")));
		(*out)[i].destination = xstrdup(json_string_value(json_object_get(m, "target")));
		(*out)[i].readonly = !json_is_false(json_object_get(m, "readonly"));
	}
	*n = json_array_size(j);
	return 0;
}
