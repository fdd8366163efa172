/*
 * Memory snapshots (issue 8, part 1): `enable_memory_snapshot=True`.
 *
 * The first cold start of such a function starts its template: a container
 * of the function's image whose runtime imports the module and runs the
 * class's `@enter(snap=True)` hooks once, then waits.  Every cold start after
 * that is a fork of the template's process (copy-on-write: the import and the
 * snap hooks are not run again), made a container of its own:
 *
 *   1. here: a new container is prepared (rt_container_prepare): its root, an
 *      overlay of the template's upper folder over the image (what the snap
 *      hooks wrote is there), mounted under the template's shared folder so
 *      that it appears inside the template at /skiff/snap/roots/<id>; its
 *      cgroup box with the function's memory=; FIFOs for its stdout and
 *      stderr at /skiff/snap/io/<id>.1 and .2;
 *   2. the template is sent {"t":"fork", id, token, root, io}; it forks, and
 *      the child (skiff/_snapshot.py) takes new user, mount, pid, IPC and UTS
 *      namespaces, binds what a container has (/proc, /sys, /dev, the code,
 *      the sockets) into its root, mounts its own /tmp, /dev/shm and
 *      /dev/mqueue, and pivots into the root; it is born pid 1 of its
 *      own pid namespace (the template unshares one before each fork, from
 *      a user and pid namespace of its own; skiff/_snapshot.py);
 *   3. the child says hello on the worker socket with the new container's id
 *      and token; its host pid (SO_PEERCRED) is moved into the box (memory,
 *      cpu= as a CFS quota) and watched through a pidfd (rt_container_adopt);
 *      from then on it is a container like any other: it gets the init
 *      frame, runs the snap=False hooks, and takes inputs.
 *
 * A template serves one function version: a deploy with changed code, image
 * or options registers a new function, which gets a new template.  It is
 * dropped after SKIFF_SNAPSHOT_IDLE seconds without a cold start (600), when
 * the host runs short of memory (MemAvailable below SKIFF_SNAPSHOT_MIN_FREE_MIB,
 * default a tenth of the memory), the least recently used first -- but never
 * while a fork of it runs: its forks live in pid namespaces below its own,
 * which the kernel empties when it goes.  Templates are listed by
 * `skiff container list` (status "template") and metered as containers.
 *
 * Not snapshotted (a normal cold start instead): GPU functions, block_network
 * and web_server (their network namespace would be the template's, shared by
 * its forks).  What a snap hook leaves that a fork cannot have (threads, open
 * sockets, an initialized GPU) is reported by the SDK (docs/api.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/fn_internal.h"
#include "server/usage.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

/* A fork made ahead of demand, adopted and connected, waiting for its init frame. */
typedef struct snap_spare {
	char id[20], token[33];
	rt_container *rc;       /* NULL: none */
	worker *w;              /* once it said hello */
	bool ready;             /* ... and is in its box: it can be taken */
	double asked_at;        /* when the template was asked for it */
} snap_spare;

typedef struct snap_tpl {
	char id[20], token[33];
	fn_function *fn;
	rt_container *rc;       /* NULL once it ended (kept while its spare ends) */
	worker *w;
	bool ready, dropping;
	snap_spare spare;
	sk_buf line[2];         /* its partial output lines */
	char *dir;              /* $SKIFF_HOME/containers/<id>.snap: roots/, io/ */
	char *files;            /* the forks' top layer: what the template wrote */
	char *frozen;           /* $SKIFF_HOME/containers/<id>.frozen, when made */
	double created_at, ready_at, last_used;
	double import_ms, enter_ms;
	uint64_t forks;
	struct snap_tpl *next;
} snap_tpl;

/* A fork that has not said hello this long after it was asked for is killed. */
#define HELLO_DEADLINE 30.0

static bool spare_wanted(void)
{
	const char *v = getenv("SKIFF_SNAPSHOT_SPARE");
	return !v || !*v || atoi(v) > 0;
}

static double idle_s(void)
{
	const char *v = getenv("SKIFF_SNAPSHOT_IDLE");
	return v && atof(v) > 0 ? atof(v) : 600;
}

static bool eligible(const fn_function *fn)
{
	return fn->snapshot && !fn->snap_off && !fn->gpu_count && !fn->block_network &&
	       !(fn->web && fn->web->kind == WEB_SERVER);
}

/* Forks of t still up (or on their way). */
static int live_forks(const snap_tpl *t)
{
	int n = 0;

	if (!t->fn)
		return 0;
	for (fn_container *fc = t->fn->containers; fc; fc = fc->next)
		n += fc->snap && fc->state != FC_DEAD && !strcmp(fc->tpl_id, t->id);
	return n;
}

static void tpl_output(rt_container *c, int fd, const char *data, size_t len)
{
	snap_tpl *t = c->user;

	if (t && t->fn)
		output_lines(t->fn, t->id, t->line, fd, data, len);
}

static snap_tpl *tpl_start(fn_function *fn)
{
	fn_server *fs = fn->fs;
	static const char *const argv[] = { "python3", "-m", "skiff._container", NULL };
	snap_tpl *t = xcalloc(1, sizeof(*t));
	fn_container who = { 0 };
	oci_mount *mounts = xcalloc(fn->n_mounts + 3, sizeof(oci_mount));
	_cleanup_free_ char *roots = NULL, *io = NULL;
	char **env = NULL;
	rt_spec spec = { 0 };
	sk_error err;

	container_ids(t->id, t->token);
	t->fn = fn;
	t->dir = xasprintf("%s/containers/%s.snap", fs->s->home, t->id);
	roots = xasprintf("%s/roots", t->dir);
	io = xasprintf("%s/io", t->dir);
	if (pool_shared_dir(t->dir, &err) < 0 || sk_mkdir_p(roots, 0755, &err) < 0 ||
	    sk_mkdir_p(io, 0755, &err) < 0) {
		log_warn("%s: memory snapshot: %s; starting containers instead", fn->name, err.msg);
		goto fail;
	}
	memcpy(who.id, t->id, sizeof(who.id));
	memcpy(who.token, t->token, sizeof(who.token));
	env = container_env(fn, &who);
	memcpy(mounts, fn->mounts, fn->n_mounts * sizeof(oci_mount));
	mounts[fn->n_mounts] = (oci_mount){ fs->worker_sock, "/skiff/run/worker.sock", false, false };
	mounts[fn->n_mounts + 1] = (oci_mount){ fs->api_sock, "/skiff/run/api.sock", false, false };
	mounts[fn->n_mounts + 2] = (oci_mount){ t->dir, "/skiff/snap", false, true };
	spec.id = t->id;
	spec.image_id = fn->image_id;
	spec.lower = fn->rootfs;
	spec.argv = argv;
	spec.env = (const char *const *)env;
	spec.workdir = fn->workdir ? fn->workdir : "/skiff/app";
	spec.memory = fn->memory;
	spec.timeout = 86400 * 365;
	spec.mounts = mounts;
	spec.n_mounts = fn->n_mounts + 3;
	/* Its forks see its /proc: only what each may ptrace (itself). */
	spec.hidepid = true;
	if (rt_container_start(fs->s->rt, &spec, &t->rc, &err) < 0) {
		log_warn("%s: memory snapshot: cannot start its template: %s; starting containers "
			 "instead",
			 fn->name, err.msg);
		goto fail;
	}
	t->rc->user = t;
	t->rc->on_output = tpl_output;
	t->created_at = t->last_used = sk_wall_time();
	api_record_container(fs->s, t->rc);
	usage_started(fs->s, t->rc,
		      &(usage_info){ .kind = "snapshot", .app_id = fn->app->id,
				     .app_name = fn->app->name, .function = fn->name,
				     .memory_request = fn->memory });
	t->next = fs->snaps;
	fs->snaps = t;
	fn->tpl = t;
	log_info("%s: started snapshot template %s", fn->name, t->id);
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	free(mounts);
	return t;
fail:
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
	free(mounts);
	rt_umount_below(t->dir);
	sk_rm_rf(t->dir, NULL);
	free(t->dir);
	free(t);
	fn->snap_off = true;
	return NULL;
}

/* A fork's layers: what the template wrote (the snap hooks' files) over the image. */
static char *root_layers(const snap_tpl *t)
{
	return xasprintf("%s:%s", t->files, t->fn->rootfs);
}

static void send_fork(snap_tpl *t, const char *id, const char *token)
{
	_cleanup_free_ char *root = xasprintf("/skiff/snap/roots/%s", id);
	_cleanup_free_ char *io = xasprintf("/skiff/snap/io/%s", id);

	t->forks++;
	worker_send(t->w,
		    json_pack("{s:s, s:s, s:s, s:s, s:s}", "t", "fork", "id", id, "token", token,
			      "root", root, "io", io),
		    NULL, NULL, 0);
}

typedef struct prime_job {
	uv_work_t req;
	const cg_host *cg;
	cg_box box;
} prime_job;

static void prime_work(uv_work_t *req)
{
	prime_job *j = req->data;

	cg_box_prime(j->cg, &j->box);
}

static void prime_after(uv_work_t *req, int status)
{
	prime_job *j = req->data;

	(void)status;
	free(j->box.rel);
	free(j);
}

static void fork_fc(snap_tpl *t, fn_container *fc)
{
	prime_job *j;
	sk_error err;

	if (!fc->rc->root_mounted) { /* prepared while the template was being made */
		_cleanup_free_ char *lower = root_layers(t);
		if (rt_container_mount_root(fc->rc, lower, &err) < 0) {
			log_warn("%s: memory snapshot: %s; starting containers instead", fc->fn->name,
				 err.msg);
			fc->fn->snap_off = true;
			fc->stop_requested = true; /* not the function's failure: it starts anew */
			rt_container_kill(fc->rc);
			return;
		}
	}
	j = xcalloc(1, sizeof(*j));
	fc->forked = true;
	fc->fork_at = sk_wall_time();
	send_fork(t, fc->id, fc->token);
	/* While the template forks and the child sets itself up, the kernel's
	 * cgroup lock gets ready for the fork's move into its box (cg_box_prime). */
	j->req.data = j;
	j->cg = &fc->fn->fs->s->cg;
	j->box.rel = xstrdup(t->rc->box.rel);
	j->box.oom_efd = -1;
	if (uv_queue_work(fc->fn->fs->loop, &j->req, prime_work, prime_after) < 0) {
		free(j->box.rel);
		free(j);
	}
}

/* The container a fork of t will be: its root, box and FIFOs (rt_container_prepare). */
static rt_container *prepare(snap_tpl *t, const char *id)
{
	fn_function *fn = t->fn;
	skiff_server *s = fn->fs->s;
	rt_spec spec = { 0 };
	rt_container *rc;
	sk_error err;
	_cleanup_free_ char *root = xasprintf("%s/roots/%s", t->dir, id);
	_cleanup_free_ char *io = xasprintf("%s/io", t->dir);
	_cleanup_free_ char *lower = t->files ? root_layers(t) : NULL;

	spec.id = id;
	spec.image_id = fn->image_id;
	spec.lower = lower; /* NULL while the template is not ready: mounted at the fork */
	spec.root_at = root;
	spec.fifo_dir = io;
	spec.cpu = fn->cpu;
	spec.memory = fn->memory;
	spec.timeout = 86400;
	if (rt_container_prepare(s->rt, &spec, &rc, &err) < 0) {
		/* Likely to fail again (a host whose overlayfs refuses the layers,
		 * say): containers from now on, and one warning. */
		log_warn("%s: memory snapshot: %s; starting containers instead", fn->name, err.msg);
		fn->snap_off = true;
		snap_drop(fn, false);
		return NULL;
	}
	return rc;
}

/* One fork of t made ahead of demand (SKIFF_SNAPSHOT_SPARE), when it has none. */
static void spare_fill(snap_tpl *t)
{
	snap_spare *sp = &t->spare;

	if (!spare_wanted() || sp->rc || !t->ready || !t->w || t->dropping || !t->fn ||
	    t->fn->broken || t->fn->snap_off || t->fn->retired || t->fn->app->stopped)
		return;
	container_ids(sp->id, sp->token);
	if (!(sp->rc = prepare(t, sp->id)))
		return;
	api_record_container(t->fn->fs->s, sp->rc); /* listed, "warm" (snap_container_json) */
	sp->asked_at = sk_wall_time();
	send_fork(t, sp->id, sp->token);
}

void snap_refill(fn_function *fn)
{
	if (fn->tpl && fn->tpl->rc)
		spare_fill(fn->tpl);
}

/* The pid of the process at the other end of w. */
static int peer_pid(worker *w)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&w->h, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
		return -1;
	return cred.pid;
}

/* Takes t's spare for fc: already adopted and connected; it needs its init frame. */
static bool spare_take(snap_tpl *t, fn_container *fc)
{
	snap_spare *sp = &t->spare;

	if (!sp->rc || !sp->w || !sp->ready || sp->rc->state != RT_RUNNING)
		return false;
	memcpy(fc->id, sp->id, sizeof(fc->id));
	memcpy(fc->token, sp->token, sizeof(fc->token));
	fc->rc = sp->rc;
	fc->w = sp->w;
	sp->w->fc = fc;
	fc->forked = fc->spare = true;
	fc->fork_at = fc->py_t0 = sk_wall_time();
	memset(sp, 0, sizeof(*sp));
	return true;
}

bool snap_take(fn_function *fn, fn_container *fc)
{
	snap_tpl *t = fn->tpl;

	if (!eligible(fn))
		return false;
	if (!t && !(t = tpl_start(fn)))
		return false;
	t->last_used = sk_wall_time();
	if (!spare_take(t, fc) && !(fc->rc = prepare(t, fc->id)))
		return false;
	fc->snap = true;
	memcpy(fc->tpl_id, t->id, sizeof(fc->tpl_id));
	if (fc->w)
		return true; /* the spare: the caller sends its init frame */
	if (t->ready && t->w)
		fork_fc(t, fc);
	return true;
}

static void spare_adopted(rt_container *c, bool ok, void *data)
{
	fn_server *fs = data;

	for (snap_tpl *t = fs->snaps; t; t = t->next)
		if (t->spare.rc == c)
			t->spare.ready = ok;
}

bool snap_attach(fn_server *fs, worker *w, const char *id, const char *token)
{
	snap_tpl *t;
	json_error_t jerr;
	json_t *hdr;

	for (t = fs->snaps; t && strcmp(t->id, id); t = t->next)
		if (t->spare.rc && !strcmp(t->spare.id, id)) {
			/* A spare fork: adopted now, its init frame when a cold start takes it. */
			snap_spare *sp = &t->spare;
			sk_error err;
			int pid = peer_pid(w);
			if (strcmp(sp->token, token) || sp->w || pid < 0 ||
			    rt_container_adopt(sp->rc, pid, spare_adopted, fs, &err) < 0) {
				log_warn("snapshot template %s: its spare fork %s was refused", t->id, id);
				rt_container_kill(sp->rc);
				worker_close(w);
				return true;
			}
			sp->w = w;
			return true;
		}
	if (!t)
		return false;
	if (strcmp(t->token, token) || t->w || !t->fn || !t->rc) {
		worker_close(w);
		return true;
	}
	t->w = w;
	w->tpl = t;
	hdr = json_loads(t->fn->init_hdr, 0, &jerr);
	json_object_set_new(hdr, "template", json_true());
	worker_send(w, hdr, NULL, t->fn->pickled, t->fn->pickled ? t->fn->pickled_len : 0);
	return true;
}

static void fork_adopted(rt_container *c, bool ok, void *data)
{
	fn_container *fc = c->user;

	(void)data;
	if (ok && fc && fc->w && fc->state == FC_STARTING)
		container_adopted(fc);
}

bool snap_adopt(fn_container *fc, worker *w)
{
	int pid = peer_pid(w);
	sk_error err;

	if (pid < 0) {
		log_warn("%s: fork %s: cannot tell its process (%s)", fc->fn->name, fc->id,
			 strerror(errno));
		return false;
	}
	if (rt_container_adopt(fc->rc, pid, fork_adopted, NULL, &err) < 0) {
		log_warn("%s: fork %s: %s", fc->fn->name, fc->id, err.msg);
		return false;
	}
	return true;
}

/* The forks that wait for t (not sent yet, or not arrived): they end now. */
static void kill_waiting(snap_tpl *t)
{
	if (!t->fn)
		return;
	for (fn_container *fc = t->fn->containers; fc; fc = fc->next)
		if (fc->snap && fc->state == FC_STARTING && fc->rc && fc->rc->awaiting &&
		    !strcmp(fc->tpl_id, t->id)) {
			fc->stop_requested = true; /* its end is not the function's failure */
			rt_container_kill(fc->rc);
		}
}

static void tpl_failed(snap_tpl *t, const char *why)
{
	fn_function *fn = t->fn;

	if (!fn)
		return;
	function_broken(fn, why);
	kill_waiting(t);
}

/*
 * The forks' top layer: a copy of the template's upper folder made of hard
 * links (sk_link_tree, no data copied), taken once it is ready.  Its upper
 * itself would do, but overlayfs warns in the kernel log at each fork's
 * mount that a lower layer is another mount's upper (and refuses it with
 * index=on).  The template writes nothing after it is ready.
 */
static void freeze(snap_tpl *t)
{
	skiff_server *s = t->fn->fs->s;
	_cleanup_free_ char *upper = xasprintf("%s/containers/%s/upper", s->home, t->id);
	char *frozen = xasprintf("%s/containers/%s.frozen", s->home, t->id);
	sk_error err;

	if (sk_link_tree(upper, frozen, &err) == 0) {
		t->frozen = frozen;
		t->files = xstrdup(frozen);
		return;
	}
	log_warn("%s: snapshot template %s: %s; its forks use its upper folder itself",
		 t->fn->name, t->id, err.msg);
	sk_rm_rf(frozen, NULL);
	free(frozen);
	t->files = xstrdup(upper);
}

void snap_frame(snap_tpl *t, json_t *hdr)
{
	const char *type = json_string_value(json_object_get(hdr, "t"));
	fn_function *fn = t->fn;
	json_t *x;

	if (!type || !fn)
		return;
	if (!strcmp(type, "template_ready")) {
		freeze(t);
		t->ready = true;
		t->ready_at = sk_wall_time();
		if ((x = json_object_get(hdr, "import_ms")) && json_is_number(x))
			t->import_ms = json_number_value(x);
		if ((x = json_object_get(hdr, "enter_ms")) && json_is_number(x))
			t->enter_ms = json_number_value(x);
		log_info("%s: snapshot template %s ready in %.0f ms (import %.1f, snap hooks %.1f)",
			 fn->name, t->id, (t->ready_at - t->created_at) * 1000, t->import_ms,
			 t->enter_ms);
		for (fn_container *fc = fn->containers; fc; fc = fc->next)
			if (fc->snap && !fc->forked && fc->state == FC_STARTING &&
			    !strcmp(fc->tpl_id, t->id))
				fork_fc(t, fc);
		spare_fill(t);
	} else if (!strcmp(type, "import_error")) {
		const char *msg = json_string_value(json_object_get(hdr, "message"));
		log_warn("%s: import failed in snapshot template %s; its inputs fail", fn->name,
			 t->id);
		tpl_failed(t, msg ? msg : "the function's module failed to import");
	} else if (!strcmp(type, "fork_failed")) {
		const char *id = json_string_value(json_object_get(hdr, "id"));
		const char *msg = json_string_value(json_object_get(hdr, "message"));
		/* The kernel or the image would not have it: containers from now on. */
		log_warn("%s: memory snapshot: the template could not start container %s (%s); "
			 "starting containers instead",
			 fn->name, id ? id : "?", msg ? msg : "no reason given");
		fn->snap_off = true;
		kill_waiting(t);
		snap_drop(fn, false);
	}
}

bool snap_spare_worker_gone(fn_server *fs, worker *w)
{
	for (snap_tpl *t = fs->snaps; t; t = t->next)
		if (t->spare.w == w) {
			t->spare.w = NULL;
			if (t->spare.rc)
				rt_container_kill(t->spare.rc);
			return true;
		}
	return false;
}

void snap_worker_gone(snap_tpl *t)
{
	t->w = NULL;
	if (t->rc && t->rc->state == RT_RUNNING)
		rt_container_kill(t->rc);
}

static void tpl_free(fn_server *fs, snap_tpl *t)
{
	for (snap_tpl **pp = &fs->snaps; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	rt_umount_below(t->dir);
	sk_rm_rf(t->dir, NULL);
	if (t->frozen)
		sk_rm_rf(t->frozen, NULL);
	free(t->frozen);
	free(t->files);
	free(t->dir);
	free(t);
}

bool snap_exited(fn_server *fs, rt_container *c)
{
	snap_tpl *t = NULL;

	for (t = fs->snaps; t; t = t->next)
		if (t->spare.rc == c) {
			/* A spare fork that no cold start took. */
			if (t->spare.w) {
				t->spare.w->fc = NULL;
				worker_close(t->spare.w);
			}
			memset(&t->spare, 0, sizeof(t->spare));
			if (!t->rc)
				tpl_free(fs, t); /* the template went first */
			return true;
		}
	for (t = fs->snaps; t && t->rc != c; t = t->next)
		;
	if (!t)
		return false;
	usage_ended(fs->s, c, 0);
	if (t->w) {
		t->w->tpl = NULL;
		worker_close(t->w);
		t->w = NULL;
	}
	if (t->fn && t->fn->tpl == t)
		t->fn->tpl = NULL;
	output_lines_end(t->fn, t->id, t->line);
	if (!t->ready && !t->dropping && t->fn && !t->fn->app->stopped) {
		_cleanup_free_ char *tail = output_tail(c);
		_cleanup_free_ char *why = xasprintf(
			"the snapshot template of %s exited with %d%s before it was ready; its last "
			"output:\n%s",
			t->fn->name, c->returncode, c->oom ? " (out of memory)" : "", tail);
		tpl_failed(t, why);
	}
	kill_waiting(t);
	c->user = NULL;
	t->rc = NULL;
	log_info("snapshot template %s%s%s ended after %llu forks", t->id, t->fn ? " of " : "",
		 t->fn ? t->fn->name : "", (unsigned long long)t->forks);
	if (t->spare.rc) {
		rt_container_kill(t->spare.rc); /* freed once it has ended too */
		return true;
	}
	tpl_free(fs, t);
	return true;
}

json_t *snap_container_json(fn_server *fs, rt_container *c)
{
	for (snap_tpl *t = fs->snaps; t; t = t->next)
		if (t->spare.rc == c && c->state == RT_RUNNING)
			return json_pack("{s:s, s:s, s:f, s:I}", "status", t->spare.ready ? "warm" : "starting",
					 "spare_of", t->id, "age_s", sk_wall_time() - c->created_at,
					 "memory_bytes",
					 (json_int_t)cg_box_peak_memory(&fs->s->cg, &c->box));
	for (snap_tpl *t = fs->snaps; t; t = t->next)
		if (t->rc == c)
			return json_pack("{s:s, s:s?, s:s?, s:s, s:f, s:I, s:I, s:I}", "status",
					 t->ready ? "template" : "starting", "function",
					 t->fn ? t->fn->name : NULL, "app_name",
					 t->fn ? t->fn->app->name : NULL, "snapshot_of",
					 t->fn ? t->fn->id : "", "age_s", sk_wall_time() - t->created_at,
					 "memory_bytes",
					 (json_int_t)cg_box_peak_memory(&fs->s->cg, &c->box), "forks",
					 (json_int_t)t->forks, "running_forks", (json_int_t)live_forks(t));
	return NULL;
}

static void tpl_kill(snap_tpl *t, const char *why)
{
	if (t->dropping)
		return;
	t->dropping = true;
	if (t->fn) {
		log_info("%s: dropping snapshot template %s (%s)", t->fn->name, t->id, why);
		if (t->fn->tpl == t)
			t->fn->tpl = NULL;
	}
	kill_waiting(t);
	if (t->spare.rc)
		rt_container_kill(t->spare.rc);
	if (t->rc && t->rc->state == RT_RUNNING)
		rt_container_kill(t->rc);
}

void snap_drop(fn_function *fn, bool now)
{
	snap_tpl *t = fn->tpl;

	if (!t)
		return;
	fn->tpl = NULL; /* the next cold start makes a new one */
	if (now || !live_forks(t))
		tpl_kill(t, "its function has stopped or changed");
	/* else snap_tick drops it once its forks are gone */
}

void snap_forget(fn_function *fn)
{
	for (snap_tpl *t = fn->fs->snaps; t; t = t->next)
		if (t->fn == fn)
			t->fn = NULL;
}

/* MemAvailable and MemTotal (MiB) from /proc/meminfo; false when unknown. */
static bool meminfo(long long *avail, long long *total)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[128];
	long long kb;

	*avail = *total = -1;
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
			*avail = kb / 1024;
		else if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
			*total = kb / 1024;
	}
	fclose(f);
	return *avail >= 0 && *total > 0;
}

void snap_tick(fn_server *fs)
{
	double now = sk_wall_time();
	long long avail, total;

	/* Forks asked for that never said hello (the child died on its way). */
	for (snap_tpl *t = fs->snaps; t; t = t->next) {
		if (t->spare.rc && t->spare.rc->awaiting && t->spare.asked_at &&
		    now - t->spare.asked_at > HELLO_DEADLINE)
			rt_container_kill(t->spare.rc);
		for (fn_container *fc = t->fn ? t->fn->containers : NULL; fc; fc = fc->next)
			if (fc->snap && fc->forked && fc->rc && fc->rc->awaiting &&
			    !strcmp(fc->tpl_id, t->id) && now - fc->fork_at > HELLO_DEADLINE) {
				log_warn("%s: fork %s of template %s did not connect within %.0f s",
					 t->fn->name, fc->id, t->id, HELLO_DEADLINE);
				rt_container_kill(fc->rc);
			}
	}
	for (snap_tpl *t = fs->snaps; t; t = t->next) {
		if (t->rc && !t->dropping && t->fn && t->fn->tpl == t)
			spare_fill(t); /* after a cold start took it */
		if (!t->rc || t->dropping || live_forks(t))
			continue;
		if (!t->fn || t->fn->tpl != t)
			tpl_kill(t, "replaced");
		else if (now - t->last_used > idle_s())
			tpl_kill(t, "idle");
	}
	if (!meminfo(&avail, &total))
		return;
	const char *v = getenv("SKIFF_SNAPSHOT_MIN_FREE_MIB");
	long long floor_mib = v && *v ? atoll(v) : total / 10;
	if (avail >= floor_mib)
		return;
	/* Short of memory: the least recently used template that no fork needs. */
	snap_tpl *lru = NULL;
	for (snap_tpl *t = fs->snaps; t; t = t->next)
		if (t->rc && !t->dropping && !live_forks(t) && (!lru || t->last_used < lru->last_used))
			lru = t;
	if (lru)
		tpl_kill(lru, "the host is short of memory");
}
