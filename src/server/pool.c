/*
 * Warm containers (issue 8, part 2): for each image that functions use, one
 * container (SKIFF_WARM_POOL, default 1) is kept started ahead of demand, its
 * interpreter up and the SDK imported, not yet any function's.  A cold start
 * of a function on that image takes one instead of starting a container:
 * what makes it that function's is done from the host in about a
 * millisecond, then the runtime imports the user's module as usual.
 *
 * What is specialised, and how:
 *   - the code: the warm container's /skiff/app and /skiff/extra are bind
 *     mounts of host folders (under $SKIFF_HOME/containers/<id>.pool/) made
 *     shared on the host and rslave in the container; the function's folders
 *     are mounted onto them on the host (open_tree + move_mount, read-only)
 *     and appear inside by propagation;
 *   - memory= becomes the limit of the container's cgroup box;
 *   - the function's environment and working folder come in the init frame,
 *     set before the user's module is imported;
 *   - metering and listing start when it is taken (the warm time is not billed).
 * A taken container is the function's for good: it is never given back, so
 * no state passes from one function to another.
 *
 * Not pooled (a normal start): GPUs, cpu= (a CFS quota set at creation),
 * block_network and web_server (a network namespace of its own), the image's
 * copy=False files (mounts at arbitrary paths), and PYTHON* variables in the
 * function's env (read at interpreter start).
 *
 * Bounds: at most SKIFF_WARM_POOL_MAX warm containers in all (default 4): at
 * the bound, an image used less recently gives its place to one used more
 * recently (refills go most recent first);
 * a pool whose image no function used for SKIFF_WARM_POOL_IDLE seconds (600)
 * is emptied.  SKIFF_WARM_POOL=0 turns pools off.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/builds.h"
#include "server/fn_internal.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

typedef struct pool_ct {
	char id[20], token[33];
	char *image_id, *sdk_dir, *dir; /* dir: the host folders' parent */
	rt_container *rc;
	worker *w;                      /* once it said hello */
	bool evicted;                   /* killed to make room for another image's */
	double created_at;
	struct pool_ct *next;
} pool_ct;

typedef struct pool_key {
	char *image_id, *rootfs, *sdk_dir;
	double last_used;
	struct pool_key *next;
} pool_key;

static void pool_ct_free(pool_ct *p)
{
	free(p->image_id);
	free(p->sdk_dir);
	free(p->dir);
	free(p);
}

static int per_image(void)
{
	const char *v = getenv("SKIFF_WARM_POOL");
	return v && *v ? atoi(v) : 1;
}

static int total_max(void)
{
	const char *v = getenv("SKIFF_WARM_POOL_MAX");
	return v && *v ? atoi(v) : 4;
}

static double idle_s(void)
{
	const char *v = getenv("SKIFF_WARM_POOL_IDLE");
	return v && atof(v) > 0 ? atof(v) : 600;
}

static const char *mount_src(const fn_function *fn, const char *dest)
{
	for (size_t i = 0; i < fn->n_mounts; i++)
		if (!strcmp(fn->mounts[i].destination, dest))
			return fn->mounts[i].source;
	return NULL;
}

/* Whether a cold start of fn can take a warm container (see the top). */
static bool eligible(const fn_function *fn)
{
	if (per_image() <= 0 || fn->gpu_count || fn->cpu > 0 || fn->block_network ||
	    (fn->web && fn->web->kind == WEB_SERVER) || !mount_src(fn, "/skiff/sdk"))
		return false;
	for (size_t i = 0; i < fn->n_mounts; i++) {
		const char *d = fn->mounts[i].destination;
		if (strcmp(d, "/skiff/sdk") && strcmp(d, "/skiff/app") &&
		    strncmp(d, "/skiff/extra/", 13))
			return false;
	}
	for (size_t i = 0; fn->env && fn->env[i]; i++)
		if (!strncmp(fn->env[i], "PYTHON", 6))
			return false;
	return true;
}

static bool same_key(const char *image_id, const char *sdk, const char *i2, const char *s2)
{
	return !strcmp(image_id, i2) && !strcmp(sdk, s2);
}

static int count(fn_server *fs, const char *image_id, const char *sdk)
{
	int n = 0;

	for (pool_ct *p = fs->pool; p; p = p->next)
		n += !p->evicted && (!image_id || same_key(image_id, sdk, p->image_id, p->sdk_dir));
	return n;
}

static pool_key *key_of(fn_server *fs, const pool_ct *p)
{
	for (pool_key *k = fs->pool_keys; k; k = k->next)
		if (same_key(p->image_id, p->sdk_dir, k->image_id, k->sdk_dir))
			return k;
	return NULL;
}

/* Kills the warm container of the image used least recently (not k's): room for k's. */
static bool evict_for(fn_server *fs, const pool_key *k)
{
	pool_ct *victim = NULL;
	double victim_used = 0;

	for (pool_ct *p = fs->pool; p; p = p->next) {
		pool_key *pk = key_of(fs, p);
		double used = pk ? pk->last_used : 0;
		if (p->evicted || pk == k)
			continue;
		if (!victim || used < victim_used) {
			victim = p;
			victim_used = used;
		}
	}
	if (!victim || victim_used >= k->last_used)
		return false;
	victim->evicted = true;
	if (victim->rc)
		rt_container_kill(victim->rc);
	return true;
}

/* A host folder made a shared mount point, so that mounts on it reach its rslave copies. */
int pool_shared_dir(const char *d, sk_error *err)
{
	if (sk_mkdir_p(d, 0755, err) < 0)
		return -1;
	if (mount(d, d, NULL, MS_BIND, NULL) < 0 || mount(NULL, d, NULL, MS_SHARED, NULL) < 0)
		return sk_error_errno(err, errno, "making %s a shared mount", d);
	return 0;
}

static void pool_start(fn_server *fs, pool_key *k)
{
	static const char *const argv[] = { "python3", "-m", "skiff._container", NULL };
	pool_ct *p = xcalloc(1, sizeof(*p));
	_cleanup_free_ char *app = NULL, *extra = NULL;
	char **env = xcalloc(16, sizeof(char *));
	size_t n = 0;
	rt_spec spec = { 0 };
	sk_error err;

	container_ids(p->id, p->token);
	p->image_id = xstrdup(k->image_id);
	p->sdk_dir = xstrdup(k->sdk_dir);
	p->dir = xasprintf("%s/containers/%s.pool", fs->s->home, p->id);
	app = xasprintf("%s/app", p->dir);
	extra = xasprintf("%s/extra", p->dir);
	if (pool_shared_dir(app, &err) < 0 || pool_shared_dir(extra, &err) < 0) {
		log_warn("warm pool: %s", err.msg);
		goto fail;
	}
	env[n++] = xstrdup("SKIFF_WORKER_SOCKET=/skiff/run/worker.sock");
	env[n++] = xasprintf("SKIFF_CONTAINER_ID=%s", p->id);
	env[n++] = xasprintf("SKIFF_CONTAINER_TOKEN=%s", p->token);
	env[n++] = xstrdup("SKIFF_SERVER=unix:/skiff/run/api.sock");
	env[n++] = xstrdup("SKIFF_WARM=1");
	env[n++] = xstrdup("PYTHONUNBUFFERED=1");
	env[n++] = xstrdup("PYTHONDONTWRITEBYTECODE=1");
	env[n++] = xstrdup("PYTHONPATH=/skiff/sdk:/skiff/app:/skiff/extra");
	env = builds_image_env(fs->s, k->image_id, env);
	oci_mount mounts[] = {
		{ k->sdk_dir, "/skiff/sdk", true, false },
		{ app, "/skiff/app", true, true },
		{ extra, "/skiff/extra", true, true },
		{ fs->worker_sock, "/skiff/run/worker.sock", false, false },
		{ fs->api_sock, "/skiff/run/api.sock", false, false },
	};
	spec.id = p->id;
	spec.image_id = k->image_id;
	spec.lower = k->rootfs;
	spec.argv = argv;
	spec.env = (const char *const *)env;
	spec.workdir = "/";
	spec.timeout = 86400;
	spec.mounts = mounts;
	spec.n_mounts = sizeof(mounts) / sizeof(mounts[0]);
	if (rt_container_start(fs->s->rt, &spec, &p->rc, &err) < 0) {
		log_warn("warm pool: cannot start a container of %s: %s", k->image_id, err.msg);
		goto fail;
	}
	p->created_at = sk_wall_time();
	p->next = fs->pool;
	fs->pool = p;
	api_record_container(fs->s, p->rc); /* listed as "warm" (pool_container_json) */
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	return;
fail:
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
	pool_release_dir(p->dir);
	pool_ct_free(p);
}

/*
 * Up to per_image() warm containers for k.  At the bound (with evict), k
 * takes the place of an image used less recently than it: never the other
 * way round, so that two images cannot push each other out in turn.
 */
static void fill_key(fn_server *fs, pool_key *k, bool evict)
{
	while (count(fs, k->image_id, k->sdk_dir) < per_image()) {
		int before = count(fs, NULL, NULL);
		if (before >= total_max() && !(evict && evict_for(fs, k)))
			break;
		pool_start(fs, k);
		if (count(fs, NULL, NULL) <= before - (before >= total_max()))
			break; /* it could not start: try again at the next tick */
	}
}

void pool_fill(fn_function *fn)
{
	fn_server *fs = fn->fs;
	const char *sdk = mount_src(fn, "/skiff/sdk");
	pool_key *k;

	if (!eligible(fn) || fs->stopping)
		return;
	for (k = fs->pool_keys; k; k = k->next)
		if (same_key(fn->image_id, sdk, k->image_id, k->sdk_dir))
			break;
	if (!k) {
		k = xcalloc(1, sizeof(*k));
		k->image_id = xstrdup(fn->image_id);
		k->rootfs = xstrdup(fn->rootfs);
		k->sdk_dir = xstrdup(sdk);
		k->next = fs->pool_keys;
		fs->pool_keys = k;
	}
	k->last_used = sk_wall_time();
	fill_key(fs, k, true);
}

static int by_recent_use(const void *a, const void *b)
{
	double x = (*(pool_key *const *)a)->last_used, y = (*(pool_key *const *)b)->last_used;

	return x > y ? -1 : x < y;
}

/* Refills the pools of images used lately, the most recent first (it may push out older ones). */
static void refill_fire(uv_timer_t *t)
{
	fn_server *fs = t->data;
	pool_key *keys[64];
	size_t n = 0;

	for (pool_key *k = fs->pool_keys; k && n < 64; k = k->next)
		if (sk_wall_time() - k->last_used < idle_s())
			keys[n++] = k;
	qsort(keys, n, sizeof(keys[0]), by_recent_use);
	for (size_t i = 0; i < n; i++)
		fill_key(fs, keys[i], true);
}

/* Mounts src (read-only) onto the shared host folder dst: it appears in the container. */
static int mount_onto(const char *src, const char *dst, sk_error *err)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
					       MOUNT_ATTR_NODEV };
	int fd = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);

	if (fd < 0)
		return sk_error_errno(err, errno, "open_tree %s", src);
	if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0 ||
	    move_mount(fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		int e = errno;
		close(fd);
		return sk_error_errno(err, e, "mounting %s on %s", src, dst);
	}
	close(fd);
	return 0;
}

static void unlink_ct(fn_server *fs, pool_ct *p)
{
	for (pool_ct **pp = &fs->pool; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			return;
		}
}

bool pool_take(fn_function *fn, fn_container *fc)
{
	fn_server *fs = fn->fs;
	const char *sdk = mount_src(fn, "/skiff/sdk");
	pool_ct *p;
	sk_error err;

	if (!eligible(fn))
		return false;
	for (p = fs->pool; p; p = p->next)
		if (p->w && !p->evicted && p->rc && p->rc->state == RT_RUNNING &&
		    same_key(fn->image_id, sdk, p->image_id, p->sdk_dir))
			break;
	if (!p) {
		pool_fill(fn); /* for the next one */
		return false;
	}
	for (size_t i = 0; i < fn->n_mounts; i++) {
		const char *d = fn->mounts[i].destination;
		_cleanup_free_ char *dst = NULL;
		if (!strcmp(d, "/skiff/sdk"))
			continue;
		if (!strcmp(d, "/skiff/app")) {
			dst = xasprintf("%s/app", p->dir);
		} else {
			dst = xasprintf("%s/extra/%s", p->dir, d + 13);
			mkdir(dst, 0755);
		}
		if (mount_onto(fn->mounts[i].source, dst, &err) < 0) {
			log_warn("warm pool: %s; starting a container instead", err.msg);
			/* It may have some of this function's code now: no one else's. */
			p->evicted = true;
			rt_container_kill(p->rc);
			return false;
		}
	}
	if (fn->memory > 0 &&
	    cg_box_set_memory(&fs->s->cg, &p->rc->box, fn->memory * 1048576, &err) < 0) {
		log_warn("warm pool: %s; starting a container instead", err.msg);
		p->evicted = true;
		rt_container_kill(p->rc); /* it has the function's code now: not for another */
		return false;
	}
	unlink_ct(fs, p);
	memcpy(fc->id, p->id, sizeof(fc->id));
	memcpy(fc->token, p->token, sizeof(fc->token));
	fc->rc = p->rc;
	fc->w = p->w;
	p->w->fc = fc;
	fc->pool_dir = p->dir; /* fc's now */
	fc->pooled = true;
	p->dir = NULL;
	pool_ct_free(p);
	for (pool_key *k = fs->pool_keys; k; k = k->next)
		if (same_key(fn->image_id, sdk, k->image_id, k->sdk_dir))
			k->last_used = sk_wall_time();
	/* Another one for the next cold start, once this one has had the CPU. */
	if (!uv_is_active((uv_handle_t *)&fs->pool_timer))
		uv_timer_start(&fs->pool_timer, refill_fire, 150, 0);
	return true;
}

bool pool_attach(fn_server *fs, worker *w, const char *id, const char *token)
{
	for (pool_ct *p = fs->pool; p; p = p->next)
		if (!strcmp(p->id, id)) {
			if (strcmp(p->token, token) || p->w)
				return false;
			p->w = w;
			return true;
		}
	return false;
}

void pool_worker_gone(fn_server *fs, worker *w)
{
	for (pool_ct *p = fs->pool; p; p = p->next)
		if (p->w == w) {
			p->w = NULL;
			if (p->rc)
				rt_container_kill(p->rc);
		}
}

void pool_release_dir(const char *dir)
{
	if (!dir)
		return;
	rt_umount_below(dir);
	sk_rm_rf(dir, NULL);
}

bool pool_exited(fn_server *fs, rt_container *c)
{
	for (pool_ct *p = fs->pool; p; p = p->next)
		if (p->rc == c) {
			unlink_ct(fs, p);
			if (p->w) {
				p->w->fc = NULL;
				worker_close(p->w);
			}
			pool_release_dir(p->dir);
			log_info("warm pool: container %s of %s ended", p->id, p->image_id);
			pool_ct_free(p);
			return true;
		}
	return false;
}

void pool_tick(fn_server *fs)
{
	double now = sk_wall_time();

	for (pool_ct *p = fs->pool; p; p = p->next) {
		pool_key *k = fs->pool_keys;
		while (k && !same_key(p->image_id, p->sdk_dir, k->image_id, k->sdk_dir))
			k = k->next;
		if (!k || now - k->last_used > idle_s()) {
			if (p->rc && p->rc->state == RT_RUNNING)
				rt_container_kill(p->rc);
		}
	}
	refill_fire(&fs->pool_timer);
}

json_t *pool_container_json(fn_server *fs, rt_container *c)
{
	for (pool_ct *p = fs->pool; p; p = p->next)
		if (p->rc == c)
			return json_pack("{s:s, s:s, s:f, s:I}", "status", p->w ? "warm" : "starting",
					 "warm_pool", p->image_id, "age_s", sk_wall_time() - p->created_at,
					 "memory_bytes",
					 (json_int_t)cg_box_peak_memory(&fs->s->cg, &c->box));
	return NULL;
}

void pool_free(fn_server *fs)
{
	while (fs->pool) {
		pool_ct *p = fs->pool;
		fs->pool = p->next;
		pool_release_dir(p->dir);
		pool_ct_free(p);
	}
	while (fs->pool_keys) {
		pool_key *k = fs->pool_keys;
		fs->pool_keys = k->next;
		free(k->image_id);
		free(k->rootfs);
		free(k->sdk_dir);
		free(k);
	}
}
