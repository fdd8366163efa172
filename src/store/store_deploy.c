/* Deployments, versions, schedules and durable calls (store_deploy.h; migration 4 in store.c). */
#include "store/store_deploy.h"

#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

static int fail(sqlite3 *db, sk_error *err, const char *what)
{
	return sk_error_set(err, SK_ERR_INTERNAL, "%s: %s", what, sqlite3_errmsg(db));
}

static sqlite3_stmt *prep(sk_store *st, const char *sql, sk_error *err)
{
	sqlite3_stmt *s = NULL;

	if (sqlite3_prepare_v2(store_sqlite(st), sql, -1, &s, NULL) != SQLITE_OK) {
		fail(store_sqlite(st), err, "preparing a query");
		sqlite3_finalize(s);
		return NULL;
	}
	return s;
}

static char *col_str(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? xstrdup((const char *)t) : NULL;
}

static void *col_blob(sqlite3_stmt *s, int i, size_t *len)
{
	const void *b = sqlite3_column_blob(s, i);
	size_t n = (size_t)sqlite3_column_bytes(s, i);
	void *p = xmalloc(n + 1);

	if (n)
		memcpy(p, b, n);
	((char *)p)[n] = 0;
	*len = n;
	return p;
}

/* Runs a statement that returns no rows, then finalizes it. */
static int run(sk_store *st, sqlite3_stmt *s, sk_error *err, const char *what)
{
	int rc = sqlite3_step(s);

	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return fail(store_sqlite(st), err, what);
	return 0;
}

/* ---- deployments ------------------------------------------------------------------------ */

static void deployment_row(sqlite3_stmt *s, store_deployment *d)
{
	d->name = col_str(s, 0);
	d->app_id = col_str(s, 1);
	d->state = col_str(s, 2);
	d->version = sqlite3_column_int(s, 3);
	d->created_at = sqlite3_column_double(s, 4);
	d->updated_at = sqlite3_column_double(s, 5);
}

#define DEPLOYMENT_COLS "name, app_id, state, version, created_at, updated_at"

int store_deployment_get(sk_store *st, const char *name, store_deployment *out, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT " DEPLOYMENT_COLS " FROM deployments WHERE name = ?1", err);
	int rc;

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		deployment_row(s, out);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : fail(store_sqlite(st), err, "reading a deployment");
}

int store_deployment_list(sk_store *st, store_deployment **out, size_t *n, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT " DEPLOYMENT_COLS " FROM deployments ORDER BY name", err);
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		deployment_row(s, &(*out)[(*n)++]);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		store_deployments_free(*out, *n);
		*out = NULL;
		*n = 0;
		return fail(store_sqlite(st), err, "listing deployments");
	}
	return 0;
}

int store_deployment_put(sk_store *st, const store_deployment *d, sk_error *err)
{
	sqlite3_stmt *s = prep(st,
			       "INSERT INTO deployments(" DEPLOYMENT_COLS ") VALUES (?1,?2,?3,?4,?5,?6) "
			       "ON CONFLICT(name) DO UPDATE SET app_id = ?2, state = ?3, version = ?4, "
			       "updated_at = ?6",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, d->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, d->app_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, d->state, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 4, d->version);
	sqlite3_bind_double(s, 5, d->created_at);
	sqlite3_bind_double(s, 6, d->updated_at);
	return run(st, s, err, "saving a deployment");
}

void store_deployment_release(store_deployment *d)
{
	free(d->name);
	free(d->app_id);
	free(d->state);
	memset(d, 0, sizeof(*d));
}

void store_deployments_free(store_deployment *ds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_deployment_release(&ds[i]);
	free(ds);
}

/* ---- versions ----------------------------------------------------------------------------- */

#define VERSION_COLS "name, version, tag, strategy, digest, rollback_of, created_at, manifest"

static void version_row(sqlite3_stmt *s, store_version *v, bool manifest)
{
	v->name = col_str(s, 0);
	v->version = sqlite3_column_int(s, 1);
	v->tag = col_str(s, 2);
	v->strategy = col_str(s, 3);
	v->digest = col_str(s, 4);
	v->rollback_of = sqlite3_column_int(s, 5);
	v->created_at = sqlite3_column_double(s, 6);
	v->manifest = manifest ? col_str(s, 7) : NULL;
}

int store_version_put(sk_store *st, const store_version *v, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "INSERT INTO deployment_versions(" VERSION_COLS
				   ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, v->name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 2, v->version);
	if (v->tag)
		sqlite3_bind_text(s, 3, v->tag, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 4, v->strategy, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 5, v->digest, -1, SQLITE_TRANSIENT);
	if (v->rollback_of)
		sqlite3_bind_int(s, 6, v->rollback_of);
	sqlite3_bind_double(s, 7, v->created_at);
	sqlite3_bind_text(s, 8, v->manifest, -1, SQLITE_TRANSIENT);
	return run(st, s, err, "saving a deployment version");
}

int store_version_get(sk_store *st, const char *name, int version, store_version *out,
		      sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT " VERSION_COLS
				   " FROM deployment_versions WHERE name = ?1 AND version = ?2",
			       err);
	int rc;

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 2, version);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		version_row(s, out, true);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : fail(store_sqlite(st), err, "reading a deployment version");
}

int store_version_list(sk_store *st, const char *name, bool manifests, store_version **out,
		       size_t *n, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT " VERSION_COLS " FROM deployment_versions WHERE name = ?1 "
				   "ORDER BY version DESC",
			       err);
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		version_row(s, &(*out)[(*n)++], manifests);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		store_versions_free(*out, *n);
		*out = NULL;
		*n = 0;
		return fail(store_sqlite(st), err, "listing deployment versions");
	}
	return 0;
}

int store_version_latest(sk_store *st, const char *name)
{
	sqlite3_stmt *s = prep(st, "SELECT coalesce(max(version), 0) FROM deployment_versions "
				   "WHERE name = ?1",
			       NULL);
	int v = 0;

	if (!s)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

void store_version_release(store_version *v)
{
	free(v->name);
	free(v->tag);
	free(v->strategy);
	free(v->digest);
	free(v->manifest);
	memset(v, 0, sizeof(*v));
}

void store_versions_free(store_version *vs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_version_release(&vs[i]);
	free(vs);
}

/* ---- schedules ---------------------------------------------------------------------------- */

int store_schedule_last(sk_store *st, const char *app, const char *function, double *last,
			sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT last_run FROM schedules WHERE app_name = ?1 AND "
				   "function = ?2",
			       err);
	int rc;

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, app, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, function, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*last = sqlite3_column_double(s, 0);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : fail(store_sqlite(st), err, "reading a schedule");
}

int store_schedule_set(sk_store *st, const char *app, const char *function, double last,
		       sk_error *err)
{
	sqlite3_stmt *s = prep(st, "INSERT INTO schedules(app_name, function, last_run) "
				   "VALUES (?1,?2,?3) ON CONFLICT(app_name, function) "
				   "DO UPDATE SET last_run = ?3",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, app, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, function, -1, SQLITE_TRANSIENT);
	sqlite3_bind_double(s, 3, last);
	return run(st, s, err, "saving a schedule's last run");
}

/* ---- durable calls ------------------------------------------------------------------------- */

int store_dcall_put(sk_store *st, const char *call_id, const char *app, const char *function,
		    const void *payload, size_t len, double now, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "INSERT OR REPLACE INTO durable_calls(call_id, app_name, function, "
				   "payload, created_at) VALUES (?1,?2,?3,?4,?5)",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, call_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, app, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, function, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob64(s, 4, payload ? payload : "", len, SQLITE_TRANSIENT);
	sqlite3_bind_double(s, 5, now);
	return run(st, s, err, "saving an accepted input");
}

int store_dcall_done(sk_store *st, const char *call_id, int status, const void *result, size_t len,
		     double now, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "UPDATE durable_calls SET status = ?2, result = ?3, done_at = ?4 "
				   "WHERE call_id = ?1",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, call_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 2, status);
	sqlite3_bind_blob64(s, 3, result ? result : "", len, SQLITE_TRANSIENT);
	sqlite3_bind_double(s, 4, now);
	return run(st, s, err, "saving a result");
}

int store_dcall_delete(sk_store *st, const char *call_id, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "DELETE FROM durable_calls WHERE call_id = ?1", err);

	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, call_id, -1, SQLITE_TRANSIENT);
	return run(st, s, err, "deleting a call");
}

int store_dcall_expire(sk_store *st, double before, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "DELETE FROM durable_calls WHERE done_at IS NOT NULL AND "
				   "done_at < ?1",
			       err);

	if (!s)
		return -1;
	sqlite3_bind_double(s, 1, before);
	return run(st, s, err, "expiring calls");
}

int store_dcall_list(sk_store *st, store_dcall **out, size_t *n, sk_error *err)
{
	sqlite3_stmt *s = prep(st, "SELECT call_id, app_name, function, payload, status, result, "
				   "created_at, done_at FROM durable_calls ORDER BY created_at",
			       err);
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		store_dcall *c;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		c = &(*out)[(*n)++];
		memset(c, 0, sizeof(*c));
		c->call_id = col_str(s, 0);
		c->app_name = col_str(s, 1);
		c->function = col_str(s, 2);
		c->payload = col_blob(s, 3, &c->payload_len);
		c->done = sqlite3_column_type(s, 4) != SQLITE_NULL;
		c->status = sqlite3_column_int(s, 4);
		if (c->done)
			c->result = col_blob(s, 5, &c->result_len);
		c->created_at = sqlite3_column_double(s, 6);
		c->done_at = sqlite3_column_double(s, 7);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		store_dcalls_free(*out, *n);
		*out = NULL;
		*n = 0;
		return fail(store_sqlite(st), err, "listing accepted inputs");
	}
	return 0;
}

void store_dcalls_free(store_dcall *cs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(cs[i].call_id);
		free(cs[i].app_name);
		free(cs[i].function);
		free(cs[i].payload);
		free(cs[i].result);
	}
	free(cs);
}
