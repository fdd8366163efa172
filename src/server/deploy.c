/*
 * Deployed apps (issue 7): `skiff deploy` makes a persistent app whose
 * functions, classes, endpoints and schedules stay up after the command
 * exits and come back after the server restarts.
 *
 * A deploy (POST /v1/deployments) carries the functions' registrations (the
 * bodies of POST /v1/functions), the classes' templates, and a snapshot of
 * the user's code.  The code is written under $SKIFF_HOME/code/<digest>/ and
 * the registrations point there, so that a version runs the code it was
 * deployed with whatever happens to the user's files later (and a rollback
 * runs the old code).  The manifest -- registrations plus class templates --
 * is kept per version in the store; its SHA-256 says whether a deploy
 * changes anything.
 *
 * Versions: a function keeps its id across versions (fu- + a hash of the
 * app's id and its name).  A new version registers new functions; each
 * function of the version before is retired into its successor
 * (function_retire): queued work moves over, its containers finish what they
 * hold and go.  rolling: the new version's containers start at once.
 * recreate: they start once no container of the old version is left.
 *
 * Durability: a deployed app's spawned calls and scheduled runs are written
 * to durable_calls before they are answered, with their result when it is
 * final; at start the server registers every deployed app's version in
 * force again, puts back the calls that had not finished (they run again)
 * and the results not yet expired (FunctionCall.get() still finds them).
 * Calls of other kinds (.remote(), .map(), web requests) belong to a
 * connection that a restart breaks: their callers are told by the error.
 *
 * Schedules: Period and Cron (src/sched/cron.c) of deployed functions fire
 * as spawned calls of their function with no arguments.  The last run of
 * each is kept; after the server was down, a run that was missed fires once
 * at start, not once per missed slot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sched/cron.h"
#include "server/fn_internal.h"
#include "store/store_deploy.h"
#include "util/base64.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#define CODE_MAX_BYTES (256ull << 20)
#define CODE_MAX_FILES 10000
#define VERSIONS_KEPT 1000

struct fn_schedule {
	bool cron;
	double period;           /* seconds, Period */
	sk_cron c;
	sk_tz *tz;
	char *desc;              /* "every 2s" or "cron '0 3 * * *' (Europe/Paris)" */
	fn_blob *input;          /* the pickled no-argument input chunk */
	double next_at, last_run;
	uv_timer_t timer;
	bool armed;
};

static sk_store *store_of(fn_server *fs)
{
	return fs->s->store;
}

/* "fu-" + 16 hex of SHA-256(app_id "/" name). */
static void stable_id(const char *prefix, const char *app_id, const char *name, char out[20])
{
	_cleanup_free_ char *k = xasprintf("%s/%s", app_id, name);
	char hex[65];

	sha256_hex(k, strlen(k), hex);
	snprintf(out, 20, "%s%.16s", prefix, hex);
}

static bool valid_app_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') && !strchr("-_.", s[i]))
			return false;
	return true;
}

static fn_app *deployed_app(fn_server *fs, const char *name)
{
	for (fn_app *a = fs->apps; a; a = a->next)
		if (a->deployed && !a->stopped && !strcmp(a->name, name))
			return a;
	return NULL;
}

static fn_function *live_function(fn_app *a, const char *name)
{
	for (fn_function *fn = a->functions; fn; fn = fn->next)
		if (!fn->retired && !strcmp(fn->name, name))
			return fn;
	return NULL;
}

/* ---- code snapshots ------------------------------------------------------------------------ */

static bool safe_rel(const char *p)
{
	if (!*p || *p == '/' || strlen(p) > 1024)
		return false;
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n;
		if (*s == '/')
			s++;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Writes one code snapshot ({"mount_dir", "files": {rel: base64}}) under
 * $SKIFF_HOME/code/<digest> (once: the name is its content) and returns that
 * directory.
 */
static char *code_write(fn_server *fs, json_t *code, sk_error *err)
{
	json_t *files = json_object_get(code, "files"), *v;
	const char **keys;
	size_t n = json_object_size(files), i = 0, total = 0;
	const char *k;
	sha256_ctx h;
	uint8_t dg[32];
	char hex[65];
	char *dir = NULL, *tmp = NULL;

	if (!json_is_object(files) || n > CODE_MAX_FILES) {
		sk_error_set(err, SK_ERR_INVALID, "code.files must be an object of at most %d files",
			     CODE_MAX_FILES);
		return NULL;
	}
	keys = xcalloc(n + 1, sizeof(*keys));
	json_object_foreach(files, k, v) {
		if (!safe_rel(k) || !json_is_string(v)) {
			sk_error_set(err, SK_ERR_INVALID,
				     "code.files: '%s' must be a relative path (no '..') to base64 text",
				     k);
			free(keys);
			return NULL;
		}
		keys[i++] = k;
	}
	/* Sorted, so that the digest does not depend on the JSON's order. */
	qsort(keys, n, sizeof(*keys), cmp_str);
	sha256_init(&h);
	for (i = 0; i < n; i++) {
		const char *b64 = json_string_value(json_object_get(files, keys[i]));
		sha256_update(&h, keys[i], strlen(keys[i]) + 1);
		sha256_update(&h, b64, strlen(b64) + 1);
		total += strlen(b64) * 3 / 4;
	}
	sha256_final(&h, dg);
	sha256_to_hex(dg, hex);
	if (total > CODE_MAX_BYTES) {
		sk_error_set(err, SK_ERR_INVALID,
			     "the app's code is %zu MiB; at most %llu MiB is deployed (keep data out "
			     "of the app's package, or add it to the image)",
			     total >> 20, CODE_MAX_BYTES >> 20);
		free(keys);
		return NULL;
	}
	dir = xasprintf("%s/code/%.32s", fs->s->home, hex);
	if (access(dir, F_OK) == 0) {
		free(keys);
		return dir;
	}
	tmp = xasprintf("%s/code/.tmp-%.32s-%d", fs->s->home, hex, (int)getpid());
	sk_rm_rf(tmp, NULL);
	for (i = 0; i < n; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s", tmp, keys[i]);
		_cleanup_free_ char *data = NULL;
		size_t len;
		char *slash = strrchr(path, '/');

		*slash = 0;
		if (sk_mkdir_p(path, 0755, err) < 0)
			goto fail;
		*slash = '/';
		if (sk_base64_decode(json_string_value(json_object_get(files, keys[i])), &data, &len) <
		    0) {
			sk_error_set(err, SK_ERR_INVALID, "code.files: '%s' is not valid base64", keys[i]);
			goto fail;
		}
		if (sk_write_file(path, data, len, 0644, err) < 0)
			goto fail;
	}
	if (n == 0 && sk_mkdir_p(tmp, 0755, err) < 0)
		goto fail;
	chmod(tmp, 0755);
	if (rename(tmp, dir) < 0 && errno != ENOTEMPTY && errno != EEXIST) {
		sk_error_set(err, SK_ERR_INTERNAL, "keeping the app's code in %s: %s", dir,
			     strerror(errno));
		goto fail;
	}
	sk_rm_rf(tmp, NULL);
	free(tmp);
	free(keys);
	return dir;
fail:
	sk_rm_rf(tmp, NULL);
	free(tmp);
	free(dir);
	free(keys);
	return NULL;
}

/* Points a registration's mount_dir (and file) at the snapshot of that directory. */
static void rebase(json_t *body, const char *from, const char *to)
{
	const char *md = json_string_value(json_object_get(body, "mount_dir"));
	const char *file = json_string_value(json_object_get(body, "file"));
	size_t fl = strlen(from);

	if (!md || strcmp(md, from))
		return;
	if (file && !strncmp(file, from, fl) && file[fl] == '/')
		json_object_set_new(body, "file", json_sprintf("%s%s", to, file + fl));
	json_object_set_new(body, "mount_dir", json_string(to));
}

/*
 * The manifest of a deploy: {"functions": [...], "classes": [...]} with code
 * paths rewritten to their snapshots.  Also checks the shapes.
 */
static json_t *manifest_of(fn_server *fs, json_t *b, sk_error *err)
{
	json_t *fns = json_object_get(b, "functions"), *classes = json_object_get(b, "classes");
	json_t *code = json_object_get(b, "code"), *m, *x;
	size_t i, j;

	if (!json_is_array(fns) || (classes && !json_is_array(classes)) ||
	    (code && !json_is_array(code))) {
		sk_error_set(err, SK_ERR_INVALID,
			     "a deploy needs functions (a list of registrations), and classes and "
			     "code as lists when given");
		return NULL;
	}
	m = json_pack("{s:o, s:o}", "functions", json_deep_copy(fns), "classes",
		      classes ? json_deep_copy(classes) : json_array());
	json_array_foreach(json_object_get(m, "functions"), i, x)
		if (!json_is_object(x) || !json_is_string(json_object_get(x, "name"))) {
			sk_error_set(err, SK_ERR_INVALID, "functions[%zu] must be an object with a name",
				     i);
			goto fail;
		}
	json_array_foreach(json_object_get(m, "classes"), i, x)
		if (!json_is_object(x) || !json_is_string(json_object_get(x, "name")) ||
		    !json_is_object(json_object_get(x, "template"))) {
			sk_error_set(err, SK_ERR_INVALID,
				     "classes[%zu] must be an object with a name and a template", i);
			goto fail;
		}
	json_array_foreach(code, i, x) {
		const char *md = json_string_value(json_object_get(x, "mount_dir"));
		_cleanup_free_ char *dir = NULL;
		json_t *f;

		if (!md || *md != '/') {
			sk_error_set(err, SK_ERR_INVALID, "code[%zu].mount_dir must be an absolute path",
				     i);
			goto fail;
		}
		if (!(dir = code_write(fs, x, err)))
			goto fail;
		json_array_foreach(json_object_get(m, "functions"), j, f)
			rebase(f, md, dir);
		json_array_foreach(json_object_get(m, "classes"), j, f)
			rebase(json_object_get(f, "template"), md, dir);
	}
	return m;
fail:
	json_decref(m);
	return NULL;
}

static void digest_of(json_t *manifest, char out[65])
{
	char *s = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);

	sha256_hex(s, strlen(s), out);
	free(s);
}

/* ---- schedules ------------------------------------------------------------------------------- */

static void schedule_fire(uv_timer_t *t);

static double schedule_after(struct fn_schedule *sc, double t)
{
	if (!sc->cron)
		return t + sc->period;
	int64_t n = sk_cron_next(&sc->c, sc->tz, (int64_t)floor(t));
	return n < 0 ? 0 : (double)n;
}

static void schedule_arm(fn_function *fn)
{
	struct fn_schedule *sc = fn->sched;
	double ms;

	if (!sc || !sc->next_at || fn->retired || fn->app->stopped)
		return;
	ms = (sc->next_at - sk_wall_time()) * 1000;
	/* Long waits are cut up, so that a changed wall clock is noticed. */
	if (ms > 60000)
		ms = 60000;
	uv_timer_start(&sc->timer, schedule_fire, ms > 0 ? (uint64_t)ms : 0, 0);
	sc->armed = true;
}

/* Starts a spawned, durable call of fn with its no-argument input. */
static fn_call *schedule_run(fn_function *fn)
{
	struct fn_schedule *sc = fn->sched;
	fn_call *call = call_new(fn, CALL_SPAWN);
	sk_error err;
	char line[160];

	call->last = true;
	if (deploy_call_accepted(call, sc->input->base, sc->input->len, &err) < 0)
		log_warn("%s: keeping a scheduled run: %s", fn->name, err.msg);
	/* Nobody fetches a scheduled run's result: it is freed when it expires. */
	call->delivered = true;
	snprintf(line, sizeof(line), "skiff: scheduled run %s (%s)", call->id, sc->desc);
	app_log_line(fn->app, fn->name, "-", 2, line, strlen(line));
	function_enqueue(fn, call, 0, 1, sc->input, 0, sc->input->len);
	function_pump(fn);
	return call;
}

static void schedule_fire(uv_timer_t *t)
{
	fn_function *fn = t->data;
	struct fn_schedule *sc = fn->sched;
	double now = sk_wall_time();
	sk_error err;

	sc->armed = false;
	if (fn->retired || fn->app->stopped)
		return;
	if (now + 0.0005 < sc->next_at) {
		schedule_arm(fn);
		return;
	}
	sc->last_run = sc->next_at;
	if (store_schedule_set(store_of(fn->fs), fn->app->name, fn->name, sc->last_run, &err) < 0)
		log_warn("%s: %s", fn->name, err.msg);
	schedule_run(fn);
	sc->next_at = schedule_after(sc, sc->next_at > now - 1 ? sc->next_at : now);
	if (sc->next_at && sc->next_at <= now)
		sc->next_at = schedule_after(sc, now);
	schedule_arm(fn);
}

/* Parses a registration's "schedule" ({"period": s} or {"cron", "timezone"}). */
static int schedule_parse(fn_function *fn, json_t *d, sk_error *err)
{
	json_t *j = json_object_get(d, "schedule"), *in = json_object_get(d, "schedule_input");
	struct fn_schedule *sc;
	char msg[256];
	char *raw = NULL;
	size_t len;

	if (!j || json_is_null(j))
		return 0;
	if (!json_is_object(j) || !json_is_string(in) ||
	    sk_base64_decode(json_string_value(in), &raw, &len) < 0)
		return sk_error_set(err, SK_ERR_INVALID,
				    "%s: schedule must be {\"period\": seconds} or {\"cron\": "
				    "\"m h dom mon dow\", \"timezone\": name}, with schedule_input "
				    "(base64)",
				    fn->name);
	sc = xcalloc(1, sizeof(*sc));
	sc->input = blob_new(raw, len);
	if (json_is_number(json_object_get(j, "period"))) {
		sc->period = json_number_value(json_object_get(j, "period"));
		if (!(sc->period >= 1)) {
			sk_error_set(err, SK_ERR_INVALID,
				     "%s: a Period must be at least 1 second, got %g s", fn->name,
				     sc->period);
			goto fail;
		}
		if (sc->period == floor(sc->period))
			sc->desc = xasprintf("every %.0fs", sc->period);
		else
			sc->desc = xasprintf("every %gs", sc->period);
	} else if (json_is_string(json_object_get(j, "cron"))) {
		const char *expr = json_string_value(json_object_get(j, "cron"));
		const char *tz = json_string_value(json_object_get(j, "timezone"));
		sc->cron = true;
		if (sk_cron_parse(expr, &sc->c, msg, sizeof(msg)) < 0) {
			sk_error_set(err, SK_ERR_INVALID, "%s: %s", fn->name, msg);
			goto fail;
		}
		if (sk_tz_load(tz && *tz ? tz : "UTC", &sc->tz, msg, sizeof(msg)) < 0) {
			sk_error_set(err, SK_ERR_INVALID, "%s: %s", fn->name, msg);
			goto fail;
		}
		sc->desc = xasprintf("cron '%s' (%s)", expr, tz && *tz ? tz : "UTC");
	} else {
		sk_error_set(err, SK_ERR_INVALID, "%s: schedule needs period or cron", fn->name);
		goto fail;
	}
	uv_timer_init(fn->fs->loop, &sc->timer);
	sc->timer.data = fn;
	fn->sched = sc;
	return 0;
fail:
	blob_unref(sc->input);
	sk_tz_free(sc->tz);
	free(sc->desc);
	free(sc);
	return -1;
}

/*
 * The first run.  At a deploy (as Modal does): a Period one period from
 * now -- a redeploy resets it -- and a Cron at its next slot.  At a restart
 * of the server: a Period one period after its last run, a Cron at its next
 * slot after the last run; a run that fell due while the server was down
 * fires once, now, not once per missed slot.
 */
static void schedule_start(fn_function *fn, bool restoring)
{
	struct fn_schedule *sc = fn->sched;
	double now = sk_wall_time(), last = 0;
	int have;
	sk_error err;

	if (!sc)
		return;
	have = store_schedule_last(store_of(fn->fs), fn->app->name, fn->name, &last, &err);
	if (have < 0)
		log_warn("%s: %s", fn->name, err.msg);
	sc->last_run = have > 0 ? last : 0;
	if (!restoring)
		have = 0; /* a deploy starts the schedule afresh */
	sc->next_at = schedule_after(sc, have > 0 ? last : now);
	if (have > 0 && sc->next_at && sc->next_at <= now) {
		log_info("app %s: %s missed its run of %.0f while the server was down; it runs now",
			 fn->app->name, fn->name, sc->next_at);
		sc->next_at = now;
	}
	if (!sc->next_at)
		log_warn("app %s: %s's schedule (%s) never fires", fn->app->name, fn->name, sc->desc);
	schedule_arm(fn);
}

void schedule_stop(fn_function *fn)
{
	if (fn->sched)
		uv_timer_stop(&fn->sched->timer);
}

void schedule_free(fn_function *fn)
{
	struct fn_schedule *sc = fn->sched;

	if (!sc)
		return;
	/* The timer is stopped (retired or stopped) or the loop is gone. */
	blob_unref(sc->input);
	sk_tz_free(sc->tz);
	free(sc->desc);
	free(sc);
	fn->sched = NULL;
}

/* ---- applying a version ------------------------------------------------------------------------ */

/*
 * A function registered for a version that failed: off the list, never
 * started.  Its timers are the loop's, so it is freed with the app.
 */
static void discard(fn_function *fn)
{
	fn_app *a = fn->app;

	for (fn_function **pp = &a->functions; *pp; pp = &(*pp)->next)
		if (*pp == fn) {
			*pp = fn->next;
			break;
		}
	fn->retired = true;
	fn->next = a->retired;
	a->retired = fn;
}

/* Registers one function of a deployed app under its stable id (not started yet). */
static fn_function *register_one(fn_app *a, json_t *body, sk_error *err)
{
	char id[20];
	fn_function *fn;
	json_t *d = json_deep_copy(body);

	json_object_set_new(d, "app_id", json_string(a->id));
	stable_id("fu-", a->id, json_string_value(json_object_get(d, "name")), id);
	if (function_register(a->fs, d, id, &fn, err) < 0) {
		json_decref(d);
		return NULL;
	}
	json_decref(d);
	if (schedule_parse(fn, body, err) < 0) {
		discard(fn);
		return NULL;
	}
	return fn;
}

static json_t *class_of(json_t *manifest, const char *name)
{
	json_t *c;
	size_t i;

	json_array_foreach(json_object_get(manifest, "classes"), i, c)
		if (!strcmp(json_string_value(json_object_get(c, "name")), name))
			return c;
	return NULL;
}

/* A class pool's registration: the class's template with its name and parameters. */
static json_t *pool_body(json_t *cls, const char *pool, const char *params)
{
	json_t *b = json_deep_copy(json_object_get(cls, "template")), *ci;

	json_object_set_new(b, "name", json_string(pool));
	ci = json_object_get(b, "cls");
	if (!json_is_object(ci)) {
		ci = json_object();
		json_object_set_new(b, "cls", ci);
	}
	if (params)
		json_object_set_new(ci, "params", json_string(params));
	json_object_set_new(b, "class_name", json_string(json_string_value(json_object_get(cls, "name"))));
	return b;
}

/*
 * Makes `manifest` the app's version in force: registers every function of
 * it (and the pools of its classes that run now), then retires the old
 * ones into them.  Nothing changes when a registration fails.
 */
static int apply(fn_app *a, json_t *manifest, bool recreate, bool restoring, sk_error *err)
{
	fn_function *old_head = a->functions, **olds = NULL, **news = NULL;
	size_t n_old = 0, n_new = 0, i;
	json_t *f, *c;

	/* The app's functions before this version (the list is prepended to). */
	for (fn_function *fn = old_head; fn; fn = fn->next)
		if (!fn->retired)
			n_old++;
	olds = xcalloc(n_old + 1, sizeof(*olds));
	n_old = 0;
	for (fn_function *fn = old_head; fn; fn = fn->next)
		if (!fn->retired)
			olds[n_old++] = fn;

	json_array_foreach(json_object_get(manifest, "functions"), i, f) {
		if (!register_one(a, f, err))
			goto undo;
	}
	/* Classes: the pool without parameters, and the pools the old version had. */
	json_array_foreach(json_object_get(manifest, "classes"), i, c) {
		const char *cname = json_string_value(json_object_get(c, "name"));
		const char *dflt = json_string_value(json_object_get(c, "default_pool"));
		if (dflt) {
			json_t *b = pool_body(c, dflt, NULL);
			fn_function *fn = register_one(a, b, err);
			json_decref(b);
			if (!fn)
				goto undo;
		}
		for (size_t k = 0; k < n_old; k++) {
			const char *cn = json_string_value(json_object_get(olds[k]->def, "class_name"));
			json_t *ci = json_object_get(olds[k]->def, "cls");
			bool have = false;
			if (!cn || strcmp(cn, cname))
				continue;
			for (fn_function *x = a->functions; x != old_head && !have; x = x->next)
				have = !strcmp(x->name, olds[k]->name);
			if (have)
				continue;
			json_t *b = pool_body(c, olds[k]->name,
					      json_string_value(json_object_get(ci, "params")));
			fn_function *fn = register_one(a, b, err);
			json_decref(b);
			if (!fn)
				goto undo;
		}
	}
	/* Every new function is in (an array: retiring unlinks old ones from the list). */
	for (fn_function *x = a->functions; x != old_head; x = x->next)
		n_new++;
	news = xcalloc(n_new + 1, sizeof(*news));
	n_new = 0;
	for (fn_function *x = a->functions; x != old_head; x = x->next)
		news[n_new++] = x;
	/* The old ones go. */
	for (size_t k = 0; k < n_old; k++) {
		fn_function *succ = NULL;
		for (size_t m = 0; m < n_new && !succ; m++)
			if (!strcmp(news[m]->name, olds[k]->name))
				succ = news[m];
		int had = 0;
		for (fn_container *fc = olds[k]->containers; fc; fc = fc->next)
			had += fc->state == FC_STARTING || (fc->state == FC_READY && !fc->killed_for_idle);
		if (succ)
			succ->recreate = recreate && olds[k]->containers;
		function_retire(olds[k], succ);
		/* rolling: as many new containers as the old version had up, starting now. */
		if (succ && !succ->recreate)
			function_prewarm(succ, had);
	}
	for (size_t m = 0; m < n_new; m++) {
		schedule_start(news[m], restoring);
		function_pump(news[m]);
	}
	json_decref(a->manifest);
	a->manifest = json_incref(manifest);
	free(olds);
	free(news);
	return 0;
undo:
	while (a->functions != old_head)
		discard(a->functions);
	free(olds);
	return -1;
}

/* The in-memory app for deployment name, made when missing (the id is the store's). */
static fn_app *app_for(fn_server *fs, const char *name, sk_error *err)
{
	fn_app *a = deployed_app(fs, name);
	store_app row;
	int rc;

	if (a)
		return a;
	rc = store_app_lookup(store_of(fs), name, true, &row, NULL, err);
	if (rc < 0)
		return NULL;
	a = app_create(fs, name, row.app_id, false, false);
	a->deployed = true;
	store_app_release(&row);
	return a;
}

/* The JSON of a deployed app's functions: {name: {function_id, web_url?, schedule?, next_run?}}. */
static json_t *functions_json(fn_app *a)
{
	json_t *o = json_object();

	for (fn_function *fn = a->functions; fn; fn = fn->next) {
		json_t *j;
		if (fn->retired || json_object_get(o, fn->name))
			continue;
		j = json_pack("{s:s}", "function_id", fn->id);
		if (fn->web)
			json_object_set_new(j, "web_url", json_string(fn->web->url));
		if (fn->sched) {
			json_object_set_new(j, "schedule", json_string(fn->sched->desc));
			json_object_set_new(j, "next_run", fn->sched->next_at ? json_real(fn->sched->next_at)
									    : json_null());
		}
		json_object_set_new(o, fn->name, j);
	}
	return o;
}

/* Registers version `version` (manifest) of app name and records it. */
static fn_app *deploy_version(fn_server *fs, const char *name, json_t *manifest, int version,
			      const char *tag, const char *strategy, int rollback_of, sk_error *err)
{
	fn_app *a = app_for(fs, name, err);
	bool fresh;
	char digest[65];
	double now = sk_wall_time();
	store_deployment d;
	int have;

	if (!a)
		return NULL;
	fresh = !a->functions && !a->version;
	if (apply(a, manifest, !strcmp(strategy, "recreate"), false, err) < 0) {
		if (fresh) /* an app made for a deploy that failed: as if never made */
			app_discard(a);
		return NULL;
	}
	digest_of(manifest, digest);
	store_version v = { .name = (char *)name, .version = version, .tag = (char *)tag,
			    .strategy = (char *)strategy, .digest = digest,
			    .manifest = json_dumps(manifest, JSON_COMPACT),
			    .rollback_of = rollback_of, .created_at = now };
	have = store_deployment_get(store_of(fs), name, &d, NULL);
	if (store_version_put(store_of(fs), &v, err) < 0) {
		free(v.manifest);
		return NULL;
	}
	free(v.manifest);
	store_deployment nd = { .name = (char *)name, .app_id = a->id, .state = "deployed",
				.version = version, .created_at = have > 0 ? d.created_at : now,
				.updated_at = now };
	if (have > 0)
		store_deployment_release(&d);
	if (store_deployment_put(store_of(fs), &nd, err) < 0)
		return NULL;
	a->version = version;
	free(a->tag);
	a->tag = tag ? xstrdup(tag) : NULL;
	a->updated_at = now;
	log_info("app %s: version %d deployed (%s%s%s)", name, version, strategy,
		 rollback_of ? ", a rollback" : "", tag ? ", tagged" : "");
	return a;
}

static json_t *deploy_answer(fn_app *a, bool unchanged)
{
	return json_pack("{s:s, s:s, s:i, s:b, s:o}", "app_id", a->id, "name", a->name, "version",
			 a->version, "unchanged", unchanged, "functions", functions_json(a));
}

static json_t *body_object(http_req *req)
{
	json_error_t jerr;
	json_t *j = json_loadb(req->body.base ? req->body.base : "", req->body.len, 0, &jerr);

	if (!req->body.len)
		return json_decref(j), json_object();
	if (!json_is_object(j)) {
		json_decref(j);
		http_respond_errorf(req, SK_ERR_INVALID, "request body must be a JSON object (%s)",
				    jerr.text);
		return NULL;
	}
	return j;
}

static void h_deploy(fn_server *fs, http_req *req)
{
	json_t *b = body_object(req), *manifest = NULL;
	const char *name, *tag, *strategy;
	char digest[65];
	store_deployment d;
	store_version cur;
	fn_app *a;
	sk_error err;
	int have, version;

	if (!b)
		return;
	name = json_string_value(json_object_get(b, "name"));
	tag = json_string_value(json_object_get(b, "tag"));
	strategy = json_string_value(json_object_get(b, "strategy"));
	if (!strategy)
		strategy = "rolling";
	if (!valid_app_name(name)) {
		http_respond_errorf(req, SK_ERR_INVALID,
				    "an app name for deploy is 1 to 64 letters, digits, '-', '_' or '.' "
				    "(it is part of its URLs)");
		goto out;
	}
	if (strcmp(strategy, "rolling") && strcmp(strategy, "recreate")) {
		http_respond_errorf(req, SK_ERR_INVALID, "strategy must be rolling or recreate, not '%s'",
				    strategy);
		goto out;
	}
	if (tag && strlen(tag) > 128) {
		http_respond_errorf(req, SK_ERR_INVALID, "a tag is at most 128 characters");
		goto out;
	}
	if (!(manifest = manifest_of(fs, b, &err))) {
		http_respond_error(req, &err);
		goto out;
	}
	digest_of(manifest, digest);
	have = store_deployment_get(store_of(fs), name, &d, &err);
	if (have < 0) {
		http_respond_error(req, &err);
		goto out;
	}
	a = deployed_app(fs, name);
	if (have > 0 && a && !strcmp(d.state, "deployed") &&
	    store_version_get(store_of(fs), name, d.version, &cur, NULL) > 0) {
		bool same = !strcmp(cur.digest, digest);
		store_version_release(&cur);
		if (same && !json_is_true(json_object_get(b, "force"))) {
			store_deployment_release(&d);
			log_info("app %s: deploy of an unchanged app (version %d stays)", name,
				 a->version);
			http_respond_json(req, 200, deploy_answer(a, true));
			goto out;
		}
	}
	if (have > 0)
		store_deployment_release(&d);
	version = store_version_latest(store_of(fs), name) + 1;
	if (!(a = deploy_version(fs, name, manifest, version, tag, strategy, 0, &err))) {
		http_respond_error(req, &err);
		goto out;
	}
	http_respond_json(req, 201, deploy_answer(a, false));
out:
	json_decref(manifest);
	json_decref(b);
}

static void h_history(fn_server *fs, http_req *req, const char *name)
{
	store_version *vs;
	store_deployment d;
	size_t n;
	sk_error err;
	json_t *arr;
	int have = store_deployment_get(store_of(fs), name, &d, &err);

	if (have <= 0) {
		if (have < 0)
			http_respond_error(req, &err);
		else
			http_respond_errorf(req, SK_ERR_NOT_FOUND,
					    "app %s was never deployed on this server (`skiff deploy`)",
					    name);
		return;
	}
	if (store_version_list(store_of(fs), name, true, &vs, &n, &err) < 0) {
		store_deployment_release(&d);
		http_respond_error(req, &err);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_loads(vs[i].manifest, 0, NULL), *names = json_array(), *f;
		size_t k;
		json_array_foreach(json_object_get(m, "functions"), k, f)
			json_array_append(names, json_object_get(f, "name"));
		json_array_foreach(json_object_get(m, "classes"), k, f)
			json_array_append(names, json_object_get(f, "name"));
		json_decref(m);
		json_array_append_new(
			arr, json_pack("{s:i, s:o, s:s, s:f, s:o, s:o, s:b}", "version", vs[i].version,
				       "tag", vs[i].tag ? json_string(vs[i].tag) : json_null(), "strategy",
				       vs[i].strategy, "created_at", vs[i].created_at, "functions", names,
				       "rollback_of",
				       vs[i].rollback_of ? json_integer(vs[i].rollback_of) : json_null(),
				       "current", vs[i].version == d.version));
	}
	http_respond_json(req, 200,
			  json_pack("{s:s, s:s, s:o}", "name", name, "state", d.state, "versions", arr));
	store_versions_free(vs, n);
	store_deployment_release(&d);
}

static void h_rollback(fn_server *fs, http_req *req, const char *name)
{
	json_t *b = body_object(req), *manifest;
	store_deployment d;
	store_version v;
	sk_error err;
	int have, target, version;
	fn_app *a;

	if (!b)
		return;
	have = store_deployment_get(store_of(fs), name, &d, &err);
	if (have <= 0) {
		if (have < 0)
			http_respond_error(req, &err);
		else
			http_respond_errorf(req, SK_ERR_NOT_FOUND,
					    "app %s was never deployed on this server", name);
		json_decref(b);
		return;
	}
	target = json_is_integer(json_object_get(b, "version"))
			 ? (int)json_integer_value(json_object_get(b, "version"))
			 : d.version - 1;
	json_decref(b);
	if (target < 1 || store_version_get(store_of(fs), name, target, &v, &err) <= 0) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND,
				    "app %s has no version %d (see `skiff app history %s`)", name,
				    target, name);
		store_deployment_release(&d);
		return;
	}
	store_deployment_release(&d);
	manifest = json_loads(v.manifest, 0, NULL);
	version = store_version_latest(store_of(fs), name) + 1;
	a = manifest ? deploy_version(fs, name, manifest, version, v.tag, "rolling", target, &err)
		     : NULL;
	if (!manifest)
		sk_error_set(&err, SK_ERR_INTERNAL, "version %d's manifest cannot be read", target);
	if (!a)
		http_respond_error(req, &err);
	else
		http_respond_json(req, 200,
				  json_pack("{s:s, s:i, s:i, s:o}", "name", name, "version", version,
					    "rolled_back_to", target, "functions", functions_json(a)));
	json_decref(manifest);
	store_version_release(&v);
}

/* GET /v1/apps/<app>/functions/<name>: what Function/Cls.from_name needs. */
static void h_lookup_function(fn_server *fs, http_req *req, const char *app, const char *name)
{
	fn_app *a = deployed_app(fs, app) ?: app_find(fs, app);
	fn_function *fn;
	json_t *c;

	if (!a || a->stopped) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND,
				    "no app %s is deployed or running on this server (`skiff app "
				    "list`)",
				    app);
		return;
	}
	if (a->manifest && (c = class_of(a->manifest, name))) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:O, s:O}", "kind", "class", "app_id", a->id,
				      "name", name, "methods",
				      json_object_get(c, "methods") ?: json_null(), "params",
				      json_object_get(c, "params") ?: json_null());
		http_respond_json(req, 200, j);
		return;
	}
	if (!(fn = live_function(a, name))) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "app %s has no function %s", app, name);
		return;
	}
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b}", "kind", "function", "app_id", a->id,
			      "name", fn->name, "function_id", fn->id, "is_generator",
			      fn->is_generator);
	if (fn->web)
		json_object_set_new(j, "web_url", json_string(fn->web->url));
	http_respond_json(req, 200, j);
}

/* POST /v1/apps/<app>/classes/<cls>/instances {"pool", "params"}: a deployed class's pool. */
static void h_class_instance(fn_server *fs, http_req *req, const char *app, const char *cname)
{
	fn_app *a = deployed_app(fs, app);
	json_t *b = body_object(req), *c;
	const char *pool, *params;
	fn_function *fn;
	sk_error err;

	if (!b)
		return;
	pool = json_string_value(json_object_get(b, "pool"));
	params = json_string_value(json_object_get(b, "params"));
	if (!a || !a->manifest || !(c = class_of(a->manifest, cname))) {
		http_respond_errorf(req, SK_ERR_NOT_FOUND, "no deployed app %s with a class %s", app,
				    cname);
	} else if (!pool || !params || strncmp(pool, cname, strlen(cname))) {
		http_respond_errorf(req, SK_ERR_INVALID,
				    "an instance needs pool (the class's name, then its parameters' "
				    "hash) and params (base64)");
	} else if ((fn = live_function(a, pool))) {
		http_respond_json(req, 200, json_pack("{s:s}", "function_id", fn->id));
	} else {
		json_t *pb = pool_body(c, pool, params);
		fn = register_one(a, pb, &err);
		json_decref(pb);
		if (!fn) {
			http_respond_error(req, &err);
		} else {
			http_respond_json(req, 201, json_pack("{s:s}", "function_id", fn->id));
			function_pump(fn);
		}
	}
	json_decref(b);
}

bool deploy_api_handle(fn_server *fs, http_req *req, char **parts, size_t n)
{
	const char *what = parts[1];

	if (!strcmp(what, "deployments") && n == 2 && req->method == HTTP_POST)
		return h_deploy(fs, req), true;
	if (strcmp(what, "apps") || n < 4)
		return false;
	if (n == 4 && !strcmp(parts[3], "history") && req->method == HTTP_GET)
		return h_history(fs, req, parts[2]), true;
	if (n == 4 && !strcmp(parts[3], "rollback") && req->method == HTTP_POST)
		return h_rollback(fs, req, parts[2]), true;
	return false;
}

bool fn_api_handle_long(fn_server *fs, http_req *req, char **parts, size_t n)
{
	if (n == 5 && !strcmp(parts[1], "apps") && !strcmp(parts[3], "functions") &&
	    req->method == HTTP_GET)
		return h_lookup_function(fs, req, parts[2], parts[4]), true;
	if (n == 6 && !strcmp(parts[1], "apps") && !strcmp(parts[3], "classes") &&
	    !strcmp(parts[5], "instances") && req->method == HTTP_POST)
		return h_class_instance(fs, req, parts[2], parts[4]), true;
	return false;
}

/* ---- durable calls ------------------------------------------------------------------------------ */

int deploy_call_accepted(fn_call *call, const void *payload, size_t len, sk_error *err)
{
	fn_function *fn = call->fn;

	if (store_dcall_put(store_of(fn->fs), call->id, fn->app->name, fn->name, payload, len,
			    call->created_at, err) < 0)
		return -1;
	call->durable = true;
	return 0;
}

void deploy_call_done(fn_call *call)
{
	fn_server *fs = call->fn->fs;
	sk_error err;

	/* Failed because the server is going down: it runs again after the restart. */
	if (fs->stopping && call->result_status == ST_SYSTEM_ERROR)
		return;
	if (store_dcall_done(store_of(fs), call->id, call->result_status, call->result.base,
			     call->result.len, call->done_at ? call->done_at : sk_wall_time(), &err) < 0)
		log_warn("call %s: %s", call->id, err.msg);
}

void deploy_tick(fn_server *fs)
{
	sk_error err;

	if (store_dcall_expire(store_of(fs), sk_wall_time() - 3600, &err) < 0)
		log_warn("%s", err.msg);
}

/* ---- stop, list ---------------------------------------------------------------------------------- */

void deploy_app_stopped(fn_app *a)
{
	fn_server *fs;
	store_deployment d;
	sk_error err;

	if (!a->deployed)
		goto timers;
	fs = a->fs;
	/* A server going down stops its apps; they stay deployed. */
	if (fs->stopping)
		goto timers;
	if (store_deployment_get(store_of(fs), a->name, &d, &err) > 0) {
		free(d.state);
		d.state = xstrdup("stopped");
		d.updated_at = sk_wall_time();
		if (store_deployment_put(store_of(fs), &d, &err) < 0)
			log_warn("app %s: %s", a->name, err.msg);
		store_deployment_release(&d);
	}
timers:
	for (fn_function *fn = a->functions; fn; fn = fn->next)
		schedule_stop(fn);
}

void deploy_app_json(fn_app *a, json_t *j)
{
	json_t *urls = json_object(), *scheds = json_object();
	double next = 0;

	json_object_set_new(j, "deployed", json_boolean(a->deployed));
	json_object_set_new(j, "version", a->deployed ? json_integer(a->version) : json_null());
	json_object_set_new(j, "tag", a->tag ? json_string(a->tag) : json_null());
	json_object_set_new(j, "updated_at", a->deployed ? json_real(a->updated_at) : json_null());
	for (fn_function *fn = a->functions; fn; fn = fn->next) {
		if (fn->retired)
			continue;
		if (fn->web && !json_object_get(urls, fn->name))
			json_object_set_new(urls, fn->name, json_string(fn->web->url));
		if (fn->sched && !json_object_get(scheds, fn->name)) {
			struct fn_schedule *sc = fn->sched;
			bool on = !a->stopped && sc->next_at;
			json_object_set_new(
				scheds, fn->name,
				json_pack("{s:s, s:o, s:o}", "schedule", sc->desc, "next_run",
					  on ? json_real(sc->next_at) : json_null(), "last_run",
					  sc->last_run ? json_real(sc->last_run) : json_null()));
			if (on && (!next || sc->next_at < next))
				next = sc->next_at;
		}
	}
	json_object_set_new(j, "web_urls", urls);
	json_object_set_new(j, "schedules", scheds);
	json_object_set_new(j, "next_run", next ? json_real(next) : json_null());
}

void deploy_list_stopped(fn_server *fs, json_t *arr)
{
	store_deployment *ds;
	size_t n;
	sk_error err;

	if (store_deployment_list(store_of(fs), &ds, &n, &err) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		bool listed = false;
		for (fn_app *a = fs->apps; a && !listed; a = a->next)
			listed = a->deployed && !strcmp(a->name, ds[i].name);
		if (listed)
			continue;
		json_array_append_new(
			arr, json_pack("{s:s, s:s, s:s, s:b, s:b, s:f, s:[], s:{}, s:b, s:i, s:n, s:f, "
				       "s:{}, s:{}, s:n}",
				       "app_id", ds[i].app_id, "name", ds[i].name, "state", ds[i].state,
				       "ephemeral", 0, "detached", 0, "created_at", ds[i].created_at,
				       "functions", "function_ids", "deployed", 1, "version",
				       ds[i].version, "tag", "updated_at", ds[i].updated_at, "web_urls",
				       "schedules", "next_run"));
	}
	store_deployments_free(ds, n);
}

/* ---- restart ------------------------------------------------------------------------------------- */

static void restore_calls(fn_server *fs)
{
	store_dcall *cs;
	size_t n, again = 0, kept = 0, lost = 0;
	sk_error err;

	if (store_dcall_list(store_of(fs), &cs, &n, &err) < 0) {
		log_warn("restoring accepted inputs: %s", err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		store_dcall *r = &cs[i];
		fn_app *a = deployed_app(fs, r->app_name);
		fn_function *fn = a ? live_function(a, r->function) : NULL;
		fn_call *call;

		if (!fn && !r->done) {
			_cleanup_free_ char *js = system_error_json(
				"stopped", "its app was stopped or no longer has this function");
			store_dcall_done(store_of(fs), r->call_id, ST_SYSTEM_ERROR, js, strlen(js),
					 sk_wall_time(), NULL);
			lost++;
			continue;
		}
		if (!fn)
			continue; /* a result nobody can reach any more: it expires */
		call = call_new(fn, CALL_SPAWN);
		snprintf(call->id, sizeof(call->id), "%s", r->call_id);
		call->created_at = r->created_at;
		call->durable = true;
		call->last = true;
		if (r->done) {
			call_grow(call, 1);
			call->final[0] = 1;
			call->n_final = call->total = 1;
			sk_buf_add(&call->result, r->result, r->result_len);
			call->result_status = (uint8_t)r->status;
			call->has_result = call->complete = true;
			call->done_at = r->done_at;
			kept++;
		} else {
			fn_blob *blob = blob_new(r->payload, r->payload_len);
			r->payload = NULL;
			function_enqueue(fn, call, 0, 1, blob, 0, blob->len);
			blob_unref(blob);
			again++;
		}
	}
	store_dcalls_free(cs, n);
	if (again || kept || lost)
		log_info("deployed apps: %zu accepted inputs run again, %zu results kept, %zu failed "
			 "(their function is gone)",
			 again, kept, lost);
}

void deploy_restore(fn_server *fs)
{
	store_deployment *ds;
	size_t n;
	sk_error err;

	if (store_deployment_list(store_of(fs), &ds, &n, &err) < 0) {
		log_warn("restoring deployed apps: %s", err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		store_version v;
		json_t *m;
		fn_app *a;

		if (strcmp(ds[i].state, "deployed"))
			continue;
		if (store_version_get(store_of(fs), ds[i].name, ds[i].version, &v, &err) <= 0) {
			log_warn("app %s: version %d is missing from the store", ds[i].name,
				 ds[i].version);
			continue;
		}
		m = json_loads(v.manifest, 0, NULL);
		a = app_create(fs, ds[i].name, ds[i].app_id, false, false);
		a->deployed = true;
		if (!m || apply(a, m, false, true, &err) < 0) {
			log_warn("app %s: version %d cannot be brought back: %s", ds[i].name,
				 ds[i].version, m ? err.msg : "its manifest is not JSON");
			app_stop(a, "it could not be brought back after a restart");
		} else {
			a->version = ds[i].version;
			a->tag = v.tag ? xstrdup(v.tag) : NULL;
			a->updated_at = ds[i].updated_at;
			a->created_at = ds[i].created_at;
			log_info("app %s: version %d back after the restart", a->name, a->version);
		}
		json_decref(m);
		store_version_release(&v);
	}
	store_deployments_free(ds, n);
	restore_calls(fs);
	for (fn_app *a = fs->apps; a; a = a->next)
		for (fn_function *fn = a->functions; fn; fn = fn->next)
			function_pump(fn);
}

const char *fn_image_user(fn_server *fs, const char *image_id)
{
	for (fn_app *a = fs->apps; a; a = a->next)
		if (a->deployed && !a->stopped)
			for (fn_function *fn = a->functions; fn; fn = fn->next)
				if (!strcmp(fn->image_id, image_id))
					return a->name;
	return NULL;
}
