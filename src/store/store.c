/*
 * Skiff's durable state on SQLite.
 *
 * Every query is a prepared statement with bound parameters, prepared once
 * (on first use) and kept for the life of the connection: the statements are
 * few and hot, and re-parsing SQL on every call would cost more than running
 * it.  A statement is reset and its bindings cleared as it goes out of scope
 * (the stmt_done cleanup), so the text bound from a caller's strings
 * (SQLITE_STATIC) is never read after the call returns.
 */
#include "store/store.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "util/fsutil.h"
#include "util/sha256.h"
#include "util/xalloc.h"

/*
 * Schema migrations, applied in order at open; migrations[i] is version i+1.
 * Never edit one that has shipped: add the next.  No foreign keys yet: a
 * container's row is history and must outlive its app's and image's rows.
 */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE apps ("
	"  app_id TEXT PRIMARY KEY,"
	"  name TEXT UNIQUE NOT NULL,"
	"  created_at REAL NOT NULL);"
	"CREATE TABLE images ("
	"  image_id TEXT PRIMARY KEY,"
	"  spec_json TEXT NOT NULL,"
	"  base TEXT NOT NULL,"
	"  python_version TEXT,"
	"  size_bytes INTEGER NOT NULL DEFAULT 0,"
	"  created_at REAL NOT NULL);"
	"CREATE TABLE containers ("
	"  container_id TEXT PRIMARY KEY,"
	"  kind TEXT NOT NULL,"
	"  app_id TEXT,"
	"  image_id TEXT,"
	"  cmd_json TEXT,"
	"  state TEXT NOT NULL,"
	"  cpu REAL NOT NULL DEFAULT 0,"
	"  memory INTEGER NOT NULL DEFAULT 0,"
	"  timeout INTEGER NOT NULL DEFAULT 0,"
	"  returncode INTEGER NULL,"
	"  oom INTEGER NOT NULL DEFAULT 0,"
	"  timed_out INTEGER NOT NULL DEFAULT 0,"
	"  terminated INTEGER NOT NULL DEFAULT 0,"
	"  created_at REAL NOT NULL,"
	"  ended_at REAL);"
	"CREATE INDEX containers_state_created ON containers(state, created_at);",
	/*
	 * 2: metering (issue 4).  One row per container, rewritten while it
	 * runs; cpu_request and memory_request are what is billed (the request,
	 * or the default when none was given).  ended_at stays NULL while the
	 * container runs, and after a crash: updated_at then bounds its life.
	 */
	"CREATE TABLE usage ("
	"  container_id TEXT PRIMARY KEY,"
	"  kind TEXT NOT NULL,"
	"  app_id TEXT,"
	"  app_name TEXT,"
	"  function TEXT,"
	"  started_at REAL NOT NULL,"
	"  updated_at REAL NOT NULL,"
	"  ended_at REAL,"
	"  cpu_request REAL NOT NULL DEFAULT 0,"
	"  memory_request INTEGER NOT NULL DEFAULT 0,"
	"  gpus INTEGER NOT NULL DEFAULT 0,"
	"  gpu_type TEXT,"
	"  cpu_used_s REAL NOT NULL DEFAULT 0,"
	"  memory_peak_bytes INTEGER NOT NULL DEFAULT 0,"
	"  inputs INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX usage_app ON usage(app_name, app_id);",
	/*
	 * 3: proxy-auth tokens for web endpoints (issue 5).  Only the SHA-256
	 * of a secret is kept: the secret is shown once, at creation.
	 */
	"CREATE TABLE web_tokens ("
	"  token_id TEXT PRIMARY KEY,"
	"  secret_sha256 TEXT NOT NULL,"
	"  created_at REAL NOT NULL,"
	"  name TEXT);",
	/*
	 * 4: deployed apps (issue 7).  deployments holds each deployed app's
	 * version in force; deployment_versions every version's manifest (the
	 * functions' registrations, code snapshots named by content); schedules
	 * when each scheduled function last ran; durable_calls the spawned
	 * inputs of deployed functions (and scheduled runs) until their result
	 * has been kept an hour, so that a server restart loses none.
	 */
	"CREATE TABLE deployments ("
	"  name TEXT PRIMARY KEY,"
	"  app_id TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  created_at REAL NOT NULL,"
	"  updated_at REAL NOT NULL);"
	"CREATE TABLE deployment_versions ("
	"  name TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  tag TEXT,"
	"  strategy TEXT NOT NULL,"
	"  digest TEXT NOT NULL,"
	"  manifest TEXT NOT NULL,"
	"  rollback_of INTEGER,"
	"  created_at REAL NOT NULL,"
	"  PRIMARY KEY (name, version));"
	"CREATE TABLE schedules ("
	"  app_name TEXT NOT NULL,"
	"  function TEXT NOT NULL,"
	"  last_run REAL NOT NULL,"
	"  PRIMARY KEY (app_name, function));"
	"CREATE TABLE durable_calls ("
	"  call_id TEXT PRIMARY KEY,"
	"  app_name TEXT NOT NULL,"
	"  function TEXT NOT NULL,"
	"  payload BLOB NOT NULL,"
	"  status INTEGER,"
	"  result BLOB,"
	"  created_at REAL NOT NULL,"
	"  done_at REAL);",
};


enum query {
	Q_MIGRATION_APPLIED,
	Q_MIGRATION_RECORD,
	Q_APP_BY_NAME,
	Q_APP_BY_ID,
	Q_APP_INSERT,
	Q_IMAGE_PUT,
	Q_IMAGE_GET,
	Q_IMAGE_LIST,
	Q_IMAGE_DELETE,
	Q_CONTAINER_PUT,
	Q_CONTAINER_GET,
	Q_CONTAINER_LIST_ALL,
	Q_CONTAINER_LIST_RUNNING,
	Q_CONTAINER_MARK_LOST,
	Q_USAGE_PUT,
	Q_USAGE_TOTALS,
	Q_TOKEN_INSERT,
	Q_TOKEN_SECRET,
	Q_TOKEN_LIST,
	Q_TOKEN_DELETE,
	Q__COUNT,
};

#define IMAGE_COLS "image_id, spec_json, base, python_version, size_bytes, created_at"
#define CONTAINER_COLS                                                                    \
	"container_id, kind, app_id, image_id, cmd_json, state, cpu, memory, timeout, "   \
	"returncode, oom, timed_out, terminated, created_at, ended_at"

#define USAGE_COLS                                                                        \
	"container_id, kind, app_id, app_name, function, started_at, updated_at, ended_at, "  \
	"cpu_request, memory_request, gpus, gpu_type, cpu_used_s, memory_peak_bytes, inputs"

/*
 * Usage totals over the window [?2, ?3] (since, now) for the app ?1 (id or
 * name; NULL: every app).  A container's seconds in the window run from
 * max(started_at, since) to min(ended_at, or updated_at while it has no end,
 * now).  The CPU it used is known for its whole life only, so the share that
 * falls in the window is pro-rated by time; billed CPU is, per container, the
 * larger of its request over those seconds and that share.  Inputs are those
 * of every container that overlaps the window, whole.
 */
#define USAGE_TOTALS_SQL                                                                      \
	"SELECT app_id, max(app_name), function, kind, gpu_type, count(*), sum(secs),"        \
	" sum(max(cpu_request * secs, cpu_used_s * frac)), sum(cpu_used_s * frac),"          \
	" sum(memory_request / 1024.0 * secs), sum(gpus * secs), sum(inputs)"               \
	" FROM (SELECT *, max(0, stop - max(started_at, ?2)) AS secs,"                       \
	"   CASE WHEN last > started_at"                                                     \
	"     THEN min(1.0, max(0, stop - max(started_at, ?2)) / (last - started_at))"       \
	"     ELSE 1.0 END AS frac"                                                          \
	"   FROM (SELECT *, coalesce(ended_at, updated_at) AS last,"                         \
	"       min(coalesce(ended_at, updated_at), ?3) AS stop FROM usage"                  \
	"     WHERE (?1 IS NULL OR app_id = ?1 OR app_name = ?1))"                           \
	"   WHERE stop >= ?2)"                                                               \
	" GROUP BY app_id, function, kind, gpu_type"                                         \
	" ORDER BY max(app_name), app_id, kind, function, gpu_type"

/* rowid breaks ties between equal created_at: the later insert is newer. */
static const char *const queries[Q__COUNT] = {
	[Q_MIGRATION_APPLIED] = "SELECT 1 FROM schema_migrations WHERE version = ?1",
	[Q_MIGRATION_RECORD] = "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)",
	[Q_APP_BY_NAME] = "SELECT app_id, name, created_at FROM apps WHERE name = ?1",
	[Q_APP_BY_ID] = "SELECT app_id, name, created_at FROM apps WHERE app_id = ?1",
	[Q_APP_INSERT] = "INSERT INTO apps(app_id, name, created_at) VALUES (?1, ?2, ?3)"
			 " ON CONFLICT(name) DO NOTHING",
	[Q_IMAGE_PUT] = "INSERT INTO images(" IMAGE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
			" ON CONFLICT(image_id) DO UPDATE SET spec_json = excluded.spec_json,"
			" base = excluded.base, python_version = excluded.python_version,"
			" size_bytes = excluded.size_bytes, created_at = excluded.created_at",
	[Q_IMAGE_GET] = "SELECT " IMAGE_COLS " FROM images WHERE image_id = ?1",
	[Q_IMAGE_LIST] = "SELECT " IMAGE_COLS " FROM images ORDER BY created_at DESC, rowid DESC",
	[Q_IMAGE_DELETE] = "DELETE FROM images WHERE image_id = ?1",
	[Q_CONTAINER_PUT] =
		"INSERT INTO containers(" CONTAINER_COLS ") VALUES"
		" (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
		" ON CONFLICT(container_id) DO UPDATE SET kind = excluded.kind,"
		" app_id = excluded.app_id, image_id = excluded.image_id,"
		" cmd_json = excluded.cmd_json, state = excluded.state, cpu = excluded.cpu,"
		" memory = excluded.memory, timeout = excluded.timeout,"
		" returncode = excluded.returncode, oom = excluded.oom,"
		" timed_out = excluded.timed_out, terminated = excluded.terminated,"
		" created_at = excluded.created_at, ended_at = excluded.ended_at",
	[Q_CONTAINER_GET] = "SELECT " CONTAINER_COLS " FROM containers WHERE container_id = ?1",
	[Q_CONTAINER_LIST_ALL] =
		"SELECT " CONTAINER_COLS " FROM containers ORDER BY created_at DESC, rowid DESC",
	[Q_CONTAINER_LIST_RUNNING] = "SELECT " CONTAINER_COLS " FROM containers"
				     " WHERE state = 'running' ORDER BY created_at DESC, rowid DESC",
	[Q_CONTAINER_MARK_LOST] = "UPDATE containers SET state = 'exited', returncode = NULL,"
				  " terminated = 1, ended_at = ?1 WHERE state = 'running'",
	/* What was used only grows: a failed cgroup read (0) never lowers it. */
	[Q_USAGE_PUT] =
		"INSERT INTO usage(" USAGE_COLS ") VALUES"
		" (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
		" ON CONFLICT(container_id) DO UPDATE SET kind = excluded.kind,"
		" app_id = excluded.app_id, app_name = excluded.app_name,"
		" function = excluded.function, started_at = excluded.started_at,"
		" updated_at = excluded.updated_at, ended_at = excluded.ended_at,"
		" cpu_request = excluded.cpu_request, memory_request = excluded.memory_request,"
		" gpus = excluded.gpus, gpu_type = excluded.gpu_type,"
		" cpu_used_s = max(cpu_used_s, excluded.cpu_used_s),"
		" memory_peak_bytes = max(memory_peak_bytes, excluded.memory_peak_bytes),"
		" inputs = max(inputs, excluded.inputs)",
	[Q_USAGE_TOTALS] = USAGE_TOTALS_SQL,
	[Q_TOKEN_INSERT] = "INSERT INTO web_tokens(token_id, secret_sha256, created_at, name)"
			   " VALUES (?1, ?2, ?3, ?4)",
	[Q_TOKEN_SECRET] = "SELECT secret_sha256 FROM web_tokens WHERE token_id = ?1",
	[Q_TOKEN_LIST] = "SELECT token_id, name, created_at FROM web_tokens"
			 " ORDER BY created_at DESC, rowid DESC",
	[Q_TOKEN_DELETE] = "DELETE FROM web_tokens WHERE token_id = ?1",
};

struct sk_store {
	sqlite3 *db;
	int version;
	sqlite3_stmt *stmts[Q__COUNT];
};

/* Fills err with "context: <SQLite's message>", the kind following SQLite's code. */
static int __attribute__((format(printf, 3, 4)))
db_fail(sqlite3 *db, sk_error *err, const char *fmt, ...)
{
	enum sk_error_kind kind = SK_ERR_INTERNAL;
	char ctx[256];
	va_list ap;

	if (!err)
		return -1;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	switch (sqlite3_errcode(db) & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		kind = SK_ERR_UNAVAILABLE;
		break;
	case SQLITE_CONSTRAINT:
		kind = SK_ERR_CONFLICT;
		break;
	}
	sk_error_set(err, kind, "%s: %s", ctx, sqlite3_errmsg(db));
	err->errnum = sqlite3_system_errno(db);
	return -1;
}

/* The prepared statement for q, ready for binding; NULL with *err filled. */
static sqlite3_stmt *stmt(sk_store *st, enum query q, sk_error *err)
{
	if (!st->stmts[q] && sqlite3_prepare_v3(st->db, queries[q], -1, SQLITE_PREPARE_PERSISTENT,
						&st->stmts[q], NULL) != SQLITE_OK) {
		db_fail(st->db, err, "preparing a query");
		return NULL;
	}
	return st->stmts[q];
}

static void stmt_done(sqlite3_stmt **s)
{
	if (*s) {
		sqlite3_reset(*s);
		sqlite3_clear_bindings(*s);
	}
}

#define _cleanup_stmt_ _cleanup_(stmt_done)

/* Binders returning SQLITE_OK (0), so that a row's bindings chain with ||. */
static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
	return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static int bind_int(sqlite3_stmt *s, int i, long long v) { return sqlite3_bind_int64(s, i, v); }
static int bind_real(sqlite3_stmt *s, int i, double v) { return sqlite3_bind_double(s, i, v); }

static char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? xstrdup((const char *)t) : NULL;
}

/* Open and migrate ---------------------------------------------------- */

static int exec(sk_store *st, const char *sql, sk_error *err)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st->db, err, "%s", sql);
	return 0;
}

static int set_wal(sk_store *st, sk_error *err)
{
	sqlite3_stmt *s = NULL;
	const char *mode;
	int rc = -1;

	/* journal_mode answers with the mode now in force, which may not be WAL. */
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		db_fail(st->db, err, "setting journal_mode=WAL");
		goto out;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	if (mode && (!strcmp(mode, "wal") || !strcmp(mode, "memory")))
		rc = 0;
	else
		sk_error_set(err, SK_ERR_INTERNAL,
			     "cannot put the database in WAL mode (it stays in %s mode); keep it on "
			     "a local file system", mode ? mode : "an unknown");
out:
	sqlite3_finalize(s);
	return rc;
}

static int read_version(sk_store *st, int *version, sk_error *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(st->db, "SELECT coalesce(max(version), 0) FROM schema_migrations",
			       -1, &s, NULL) != SQLITE_OK)
		return db_fail(st->db, err, "reading the schema version");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*version = sqlite3_column_int(s, 0);
	else
		db_fail(st->db, err, "reading the schema version");
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : -1;
}

/* 1 when migration v is recorded, 0 when not, -1 on error. */
static int migration_applied(sk_store *st, int v, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_MIGRATION_APPLIED, err);
	int rc;

	if (!s)
		return -1;
	if (bind_int(s, 1, v) || ((rc = sqlite3_step(s)) != SQLITE_ROW && rc != SQLITE_DONE))
		return db_fail(st->db, err, "reading schema_migrations");
	return rc == SQLITE_ROW;
}

static int record_migration(sk_store *st, int v, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_MIGRATION_RECORD, err);

	if (!s)
		return -1;
	if (bind_int(s, 1, v) || bind_real(s, 2, sk_wall_time()) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "recording schema migration %d", v);
	return 0;
}

/*
 * Applies migration v in its own transaction.  BEGIN IMMEDIATE takes the
 * write lock first, and the check for v is made under it, so two servers
 * opening one file at once cannot both apply v.
 */
static int apply_migration(sk_store *st, int v, sk_error *err)
{
	int applied;

	if (exec(st, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	applied = migration_applied(st, v, err);
	if (applied < 0)
		goto fail;
	if (!applied) {
		if (sqlite3_exec(st->db, migrations[v - 1], NULL, NULL, NULL) != SQLITE_OK) {
			db_fail(st->db, err, "applying schema migration %d", v);
			goto fail;
		}
		if (record_migration(st, v, err) < 0)
			goto fail;
	}
	if (exec(st, "COMMIT", err) < 0)
		goto fail;
	return 0;
fail:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int migrate(sk_store *st, sk_error *err)
{
	const int known = (int)ARRAY_SIZE(migrations);
	int have = 0;

	if (exec(st, "CREATE TABLE IF NOT EXISTS schema_migrations("
		     "version INTEGER PRIMARY KEY, applied_at REAL)", err) < 0 ||
	    read_version(st, &have, err) < 0)
		return -1;
	if (have > known)
		return sk_error_set(err, SK_ERR_INTERNAL,
				    "the database has schema version %d, but this skiff knows only "
				    "versions up to %d: upgrade skiff, or move the file aside to start "
				    "with empty state", have, known);
	for (int v = 1; v <= known; v++)
		if (apply_migration(st, v, err) < 0)
			return -1;
	st->version = known;
	return 0;
}

static int setup(sk_store *st, sk_error *err)
{
	sqlite3_busy_timeout(st->db, 5000);
	if (set_wal(st, err) < 0 || exec(st, "PRAGMA synchronous=NORMAL", err) < 0 ||
	    exec(st, "PRAGMA foreign_keys=ON", err) < 0)
		return -1;
	return migrate(st, err);
}

int store_open(const char *path, sk_store **out, sk_error *err)
{
	sk_store *st = xcalloc(1, sizeof(*st));
	int code;

	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		if (!st->db) /* SQLite could not even allocate its handle */
			sk_error_set(err, SK_ERR_INTERNAL, "opening %s: out of memory", path);
		else
			db_fail(st->db, err, "opening %s", path);
		goto fail;
	}
	if (setup(st, err) < 0) {
		/* The file was there but is not ours to read: say what to do. */
		code = sqlite3_errcode(st->db) & 0xff;
		if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
			sk_error_set(err, SK_ERR_INTERNAL,
				     "%s is not a usable SQLite database (%s): move it aside, and "
				     "skiff creates a fresh one", path, sqlite3_errmsg(st->db));
		else
			sk_error_prefix(err, "opening %s", path);
		goto fail;
	}
	*out = st;
	return 0;
fail:
	store_close(st);
	return -1;
}

void store_close(sk_store *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(st->stmts); i++)
		sqlite3_finalize(st->stmts[i]);
	sqlite3_close(st->db);
	free(st);
}

int store_schema_version(sk_store *st)
{
	return st->version;
}

/* Apps ------------------------------------------------------------------ */

/* Reads one app row by the key in ?1; 1 when found, 0 when not, -1 on error. */
static int app_fetch(sk_store *st, enum query q, const char *key, store_app *out, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, q, err);
	int rc;

	if (!s)
		return -1;
	if (bind_text(s, 1, key))
		return db_fail(st->db, err, "looking up app %s", key);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_fail(st->db, err, "looking up app %s", key);
	out->app_id = col_text(s, 0);
	out->name = col_text(s, 1);
	out->created_at = sqlite3_column_double(s, 2);
	return 1;
}

static int app_insert(sk_store *st, const char *id, const char *name, bool *inserted,
		      sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_APP_INSERT, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, id) || bind_text(s, 2, name) || bind_real(s, 3, sk_wall_time()) ||
	    sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "creating app \"%s\"", name);
	*inserted = sqlite3_changes(st->db) > 0;
	return 0;
}

int store_app_lookup(sk_store *st, const char *name, bool create, store_app *out, bool *created,
		     sk_error *err)
{
	char id[3 + 16 + 1] = "ap-";
	int found;
	bool inserted = false;

	if (created)
		*created = false;
	if (!name || !*name)
		return sk_error_set(err, SK_ERR_INVALID, "an app needs a name");
	found = app_fetch(st, Q_APP_BY_NAME, name, out, err);
	if (found != 0)
		return found < 0 ? -1 : 0;
	if (!create)
		return sk_error_set(err, SK_ERR_NOT_FOUND,
				    "app \"%s\" not found (create it with create_if_missing=True)",
				    name);
	/*
	 * Another process sharing the file may create the same name between our
	 * SELECT and INSERT; ON CONFLICT(name) DO NOTHING lets it win, and the
	 * re-select below returns whichever row is there.
	 */
	sk_random_hex(id + 3, 8);
	if (app_insert(st, id, name, &inserted, err) < 0)
		return -1;
	found = app_fetch(st, Q_APP_BY_NAME, name, out, err);
	if (found == 0)
		return sk_error_set(err, SK_ERR_INTERNAL, "app \"%s\" vanished just after creation",
				    name);
	if (found < 0)
		return -1;
	if (created)
		*created = inserted;
	return 0;
}

int store_app_get(sk_store *st, const char *app_id, store_app *out, sk_error *err)
{
	int found = app_fetch(st, Q_APP_BY_ID, app_id, out, err);

	if (found == 0)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "app %s not found", app_id);
	return found < 0 ? -1 : 0;
}

void store_app_release(store_app *a)
{
	free(a->app_id);
	free(a->name);
	memset(a, 0, sizeof(*a));
}

/* Images ---------------------------------------------------------------- */

static void image_read(sqlite3_stmt *s, store_image *im)
{
	im->image_id = col_text(s, 0);
	im->spec_json = col_text(s, 1);
	im->base = col_text(s, 2);
	im->python_version = col_text(s, 3);
	im->size_bytes = sqlite3_column_int64(s, 4);
	im->created_at = sqlite3_column_double(s, 5);
}

int store_image_put(sk_store *st, const store_image *im, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_IMAGE_PUT, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, im->image_id) || bind_text(s, 2, im->spec_json) ||
	    bind_text(s, 3, im->base) || bind_text(s, 4, im->python_version) ||
	    bind_int(s, 5, im->size_bytes) || bind_real(s, 6, im->created_at) ||
	    sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "saving image %s", im->image_id);
	return 0;
}

int store_image_get(sk_store *st, const char *image_id, store_image *out, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_IMAGE_GET, err);
	int rc;

	if (!s)
		return -1;
	if (bind_text(s, 1, image_id))
		return db_fail(st->db, err, "looking up image %s", image_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "image %s not found", image_id);
	if (rc != SQLITE_ROW)
		return db_fail(st->db, err, "looking up image %s", image_id);
	image_read(s, out);
	return 0;
}

int store_image_list(sk_store *st, store_image **out, size_t *n, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_IMAGE_LIST, err);
	store_image *ims = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			ims = xrealloc(ims, cap * sizeof(*ims));
		}
		image_read(s, &ims[len++]);
	}
	if (rc != SQLITE_DONE) {
		store_images_free(ims, len);
		return db_fail(st->db, err, "listing images");
	}
	*out = ims;
	*n = len;
	return 0;
}

int store_image_delete(sk_store *st, const char *image_id, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_IMAGE_DELETE, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, image_id) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "deleting image %s", image_id);
	if (sqlite3_changes(st->db) == 0)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "image %s not found", image_id);
	return 0;
}

void store_image_release(store_image *im)
{
	free(im->image_id);
	free(im->spec_json);
	free(im->base);
	free(im->python_version);
	memset(im, 0, sizeof(*im));
}

void store_images_free(store_image *ims, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_image_release(&ims[i]);
	free(ims);
}

/* Containers ------------------------------------------------------------ */

static void container_read(sqlite3_stmt *s, store_container *c)
{
	c->container_id = col_text(s, 0);
	c->kind = col_text(s, 1);
	c->app_id = col_text(s, 2);
	c->image_id = col_text(s, 3);
	c->cmd_json = col_text(s, 4);
	c->state = col_text(s, 5);
	c->cpu = sqlite3_column_double(s, 6);
	c->memory = sqlite3_column_int64(s, 7);
	c->timeout = sqlite3_column_int(s, 8);
	c->has_returncode = sqlite3_column_type(s, 9) != SQLITE_NULL;
	c->returncode = c->has_returncode ? sqlite3_column_int(s, 9) : 0;
	c->oom = sqlite3_column_int(s, 10);
	c->timed_out = sqlite3_column_int(s, 11);
	c->terminated = sqlite3_column_int(s, 12);
	c->created_at = sqlite3_column_double(s, 13);
	c->ended_at = sqlite3_column_double(s, 14); /* NULL reads as 0 */
}

int store_container_put(sk_store *st, const store_container *c, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_CONTAINER_PUT, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, c->container_id) || bind_text(s, 2, c->kind) ||
	    bind_text(s, 3, c->app_id) || bind_text(s, 4, c->image_id) ||
	    bind_text(s, 5, c->cmd_json) || bind_text(s, 6, c->state) || bind_real(s, 7, c->cpu) ||
	    bind_int(s, 8, c->memory) || bind_int(s, 9, c->timeout) ||
	    (c->has_returncode ? bind_int(s, 10, c->returncode) : sqlite3_bind_null(s, 10)) ||
	    bind_int(s, 11, c->oom) || bind_int(s, 12, c->timed_out) ||
	    bind_int(s, 13, c->terminated) || bind_real(s, 14, c->created_at) ||
	    (c->ended_at ? bind_real(s, 15, c->ended_at) : sqlite3_bind_null(s, 15)) ||
	    sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "saving container %s", c->container_id);
	return 0;
}

int store_container_get(sk_store *st, const char *container_id, store_container *out,
			sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_CONTAINER_GET, err);
	int rc;

	if (!s)
		return -1;
	if (bind_text(s, 1, container_id))
		return db_fail(st->db, err, "looking up container %s", container_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "container %s not found", container_id);
	if (rc != SQLITE_ROW)
		return db_fail(st->db, err, "looking up container %s", container_id);
	container_read(s, out);
	return 0;
}

int store_container_list(sk_store *st, bool all, store_container **out, size_t *n,
			 sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s =
		stmt(st, all ? Q_CONTAINER_LIST_ALL : Q_CONTAINER_LIST_RUNNING, err);
	store_container *cs = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			cs = xrealloc(cs, cap * sizeof(*cs));
		}
		container_read(s, &cs[len++]);
	}
	if (rc != SQLITE_DONE) {
		store_containers_free(cs, len);
		return db_fail(st->db, err, "listing containers");
	}
	*out = cs;
	*n = len;
	return 0;
}

int store_container_mark_lost(sk_store *st, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_CONTAINER_MARK_LOST, err);

	if (!s)
		return -1;
	if (bind_real(s, 1, sk_wall_time()) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "marking lost containers");
	return sqlite3_changes(st->db);
}

void store_container_release(store_container *c)
{
	free(c->container_id);
	free(c->kind);
	free(c->app_id);
	free(c->image_id);
	free(c->cmd_json);
	free(c->state);
	memset(c, 0, sizeof(*c));
}

void store_containers_free(store_container *cs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_container_release(&cs[i]);
	free(cs);
}

/* Usage ------------------------------------------------------------------ */

int store_usage_put(sk_store *st, const store_usage *u, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_USAGE_PUT, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, u->container_id) || bind_text(s, 2, u->kind) ||
	    bind_text(s, 3, u->app_id) || bind_text(s, 4, u->app_name) ||
	    bind_text(s, 5, u->function) || bind_real(s, 6, u->started_at) ||
	    bind_real(s, 7, u->updated_at) ||
	    (u->ended_at ? bind_real(s, 8, u->ended_at) : sqlite3_bind_null(s, 8)) ||
	    bind_real(s, 9, u->cpu_request) || bind_int(s, 10, u->memory_request) ||
	    bind_int(s, 11, u->gpus) || bind_text(s, 12, u->gpu_type) ||
	    bind_real(s, 13, u->cpu_used_s) || bind_int(s, 14, u->memory_peak_bytes) ||
	    bind_int(s, 15, u->inputs) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "saving the usage of container %s", u->container_id);
	return 0;
}

static void usage_total_read(sqlite3_stmt *s, store_usage_total *t)
{
	t->app_id = col_text(s, 0);
	t->app_name = col_text(s, 1);
	t->function = col_text(s, 2);
	t->kind = col_text(s, 3);
	t->gpu_type = col_text(s, 4);
	t->containers = sqlite3_column_int64(s, 5);
	t->container_seconds = sqlite3_column_double(s, 6);
	t->cpu_seconds = sqlite3_column_double(s, 7);
	t->cpu_used_seconds = sqlite3_column_double(s, 8);
	t->memory_gib_seconds = sqlite3_column_double(s, 9);
	t->gpu_seconds = sqlite3_column_double(s, 10);
	t->inputs = sqlite3_column_int64(s, 11);
}

int store_usage_totals(sk_store *st, const char *app, double since, double now,
		       store_usage_total **out, size_t *n, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_USAGE_TOTALS, err);
	store_usage_total *ts = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	if (bind_text(s, 1, app) || bind_real(s, 2, since) || bind_real(s, 3, now))
		return db_fail(st->db, err, "totalling usage");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			ts = xrealloc(ts, cap * sizeof(*ts));
		}
		usage_total_read(s, &ts[len++]);
	}
	if (rc != SQLITE_DONE) {
		store_usage_totals_free(ts, len);
		return db_fail(st->db, err, "totalling usage");
	}
	*out = ts;
	*n = len;
	return 0;
}

void store_usage_totals_free(store_usage_total *ts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ts[i].app_id);
		free(ts[i].app_name);
		free(ts[i].function);
		free(ts[i].kind);
		free(ts[i].gpu_type);
	}
	free(ts);
}

/* Proxy-auth tokens ----------------------------------------------------- */

int store_token_create(sk_store *st, const char *name, char **id_out, char **secret_out,
		       sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_TOKEN_INSERT, err);
	char id[3 + 16 + 1] = "wk-", secret[3 + 32 + 1] = "ws-", hash[65];

	if (!s)
		return -1;
	sk_random_hex(id + 3, 8);
	sk_random_hex(secret + 3, 16);
	sha256_hex(secret, strlen(secret), hash);
	if (bind_text(s, 1, id) || bind_text(s, 2, hash) || bind_real(s, 3, sk_wall_time()) ||
	    bind_text(s, 4, name) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "creating a token");
	*id_out = xstrdup(id);
	*secret_out = xstrdup(secret);
	return 0;
}

/*
 * The comparison takes the same time wherever the digests differ, so that a
 * caller timing requests learns nothing about the stored digest.  An unknown
 * id still hashes the secret: the reply takes about as long either way.
 */
int store_token_check(sk_store *st, const char *id, const char *secret)
{
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	const unsigned char *want;
	char hash[65];
	uint8_t diff = 0;
	int rc;

	if (!id || !secret)
		return 0;
	s = stmt(st, Q_TOKEN_SECRET, NULL);
	if (!s || bind_text(s, 1, id))
		return -1;
	sha256_hex(secret, strlen(secret), hash);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return -1;
	want = sqlite3_column_text(s, 0);
	if (!want || sqlite3_column_bytes(s, 0) != 64)
		return 0;
	for (size_t i = 0; i < 64; i++)
		diff |= (uint8_t)(want[i] ^ (unsigned char)hash[i]);
	return diff == 0;
}

int store_token_list(sk_store *st, store_token **out, size_t *n, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_TOKEN_LIST, err);
	store_token *ts = NULL;
	size_t len = 0, cap = 0;
	int rc;

	if (!s)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? 2 * cap : 8;
			ts = xrealloc(ts, cap * sizeof(*ts));
		}
		ts[len].token_id = col_text(s, 0);
		ts[len].name = col_text(s, 1);
		ts[len].created_at = sqlite3_column_double(s, 2);
		len++;
	}
	if (rc != SQLITE_DONE) {
		store_tokens_free(ts, len);
		return db_fail(st->db, err, "listing tokens");
	}
	*out = ts;
	*n = len;
	return 0;
}

int store_token_delete(sk_store *st, const char *id, sk_error *err)
{
	_cleanup_stmt_ sqlite3_stmt *s = stmt(st, Q_TOKEN_DELETE, err);

	if (!s)
		return -1;
	if (bind_text(s, 1, id) || sqlite3_step(s) != SQLITE_DONE)
		return db_fail(st->db, err, "deleting token %s", id);
	if (sqlite3_changes(st->db) == 0)
		return sk_error_set(err, SK_ERR_NOT_FOUND, "token %s not found", id);
	return 0;
}

void store_tokens_free(store_token *ts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ts[i].token_id);
		free(ts[i].name);
	}
	free(ts);
}

sqlite3 *store_sqlite(sk_store *st)
{
	return st->db;
}
