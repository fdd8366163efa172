/*
 * Tests for src/store: schema migrations, WAL, apps, images, containers, usage,
 * proxy-auth tokens.
 * Each test gets a fresh folder under /tmp (mkdtemp), removed afterwards; the
 * tests look at the file through a second, plain sqlite3 connection where
 * they check what store.c promises about the file itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store/store.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

struct fixture {
	char dir[64];
	char *db;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/skiff-test-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	f->db = xasprintf("%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	sk_error err;
	int rc = sk_rm_rf(f->dir, &err);

	free(f->db);
	free(f);
	return rc;
}

static sk_store *open_ok(const char *path)
{
	sk_store *st = NULL;
	sk_error err = { 0 };

	if (store_open(path, &st, &err) < 0)
		fail_msg("store_open: %s", err.msg);
	return st;
}

/* Runs a one-value query on a second connection; returns its text (caller frees). */
static char *peek(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char *out = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		out = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return out;
}

static void poke(const char *path, const char *sql)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* ---- open and migrations --------------------------------------------------- */

static void test_fresh_open(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	_cleanup_free_ char *n = NULL, *tables = NULL, *idx = NULL;

	assert_int_equal(store_schema_version(st), 4);
	n = peek(f->db, "SELECT count(*) || ':' || max(version) FROM schema_migrations");
	assert_string_equal(n, "4:4");
	tables = peek(f->db, "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master"
			     " WHERE type = 'table' ORDER BY name)");
	assert_string_equal(tables, "apps,containers,deployment_versions,deployments,durable_calls,images,schedules,"
				    "schema_migrations,usage,web_tokens");
	idx = peek(f->db, "SELECT group_concat(m.name || '=' || c.name, ',') FROM sqlite_master AS m,"
			  " pragma_index_info(m.name) AS c"
			  " WHERE m.type = 'index' AND m.tbl_name = 'containers' AND m.sql IS NOT NULL");
	assert_string_equal(idx, "containers_state_created=state,containers_state_created=created_at");
	store_close(st);
}

static void test_reopen_idempotent(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	store_app a = { 0 };
	bool created;
	_cleanup_free_ char *applied1 = NULL, *applied2 = NULL, *n = NULL;

	assert_int_equal(store_app_lookup(st, "keep", true, &a, &created, NULL), 0);
	assert_true(created);
	store_close(st);
	applied1 = peek(f->db, "SELECT printf('%.6f', applied_at) FROM schema_migrations");

	st = open_ok(f->db);
	assert_int_equal(store_schema_version(st), 4);
	n = peek(f->db, "SELECT count(*) FROM schema_migrations");
	assert_string_equal(n, "4");
	applied2 = peek(f->db, "SELECT printf('%.6f', applied_at) FROM schema_migrations");
	assert_string_equal(applied1, applied2); /* not reapplied */

	store_app b = { 0 };
	assert_int_equal(store_app_lookup(st, "keep", false, &b, &created, NULL), 0);
	assert_false(created);
	assert_string_equal(a.app_id, b.app_id);
	store_app_release(&a);
	store_app_release(&b);
	store_close(st);
}

/*
 * A database as a server with only migration 1 left it (the schema copied
 * from that release, with rows in it): opening it applies migration 2 and
 * keeps every row.
 */
static void test_migrate_from_v1(void **state)
{
	struct fixture *f = *state;
	sk_store *st;
	store_app a = { 0 };
	store_container c = { 0 };
	_cleanup_free_ char *n = NULL, *applied1 = NULL, *cols = NULL;
	sk_error err = { 0 };

	poke(f->db, "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at REAL);"
		    "CREATE TABLE apps (app_id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
		    "  created_at REAL NOT NULL);"
		    "CREATE TABLE images (image_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL,"
		    "  base TEXT NOT NULL, python_version TEXT,"
		    "  size_bytes INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);"
		    "CREATE TABLE containers (container_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
		    "  app_id TEXT, image_id TEXT, cmd_json TEXT, state TEXT NOT NULL,"
		    "  cpu REAL NOT NULL DEFAULT 0, memory INTEGER NOT NULL DEFAULT 0,"
		    "  timeout INTEGER NOT NULL DEFAULT 0, returncode INTEGER NULL,"
		    "  oom INTEGER NOT NULL DEFAULT 0, timed_out INTEGER NOT NULL DEFAULT 0,"
		    "  terminated INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,"
		    "  ended_at REAL);"
		    "CREATE INDEX containers_state_created ON containers(state, created_at);"
		    "INSERT INTO schema_migrations VALUES (1, 1234.5);"
		    "INSERT INTO apps VALUES ('ap-0000000000000001', 'old', 10);"
		    "INSERT INTO containers(container_id, kind, app_id, image_id, cmd_json, state,"
		    "  returncode, created_at, ended_at) VALUES ('sb-old', 'sandbox',"
		    "  'ap-0000000000000001', 'im-x', '[]', 'exited', 0, 100, 150);");
	st = open_ok(f->db);
	assert_int_equal(store_schema_version(st), 4);
	n = peek(f->db, "SELECT group_concat(version, ',') FROM schema_migrations");
	assert_string_equal(n, "1,2,3,4");
	applied1 = peek(f->db, "SELECT applied_at FROM schema_migrations WHERE version = 1");
	assert_string_equal(applied1, "1234.5"); /* 1 is not applied again */
	cols = peek(f->db, "SELECT group_concat(name, ',') FROM pragma_table_info('usage')");
	assert_string_equal(cols, "container_id,kind,app_id,app_name,function,started_at,"
				  "updated_at,ended_at,cpu_request,memory_request,gpus,gpu_type,"
				  "cpu_used_s,memory_peak_bytes,inputs");
	assert_int_equal(store_app_lookup(st, "old", false, &a, NULL, &err), 0);
	assert_string_equal(a.app_id, "ap-0000000000000001");
	assert_int_equal(store_container_get(st, "sb-old", &c, &err), 0);
	assert_true(c.ended_at == 150);
	store_container_release(&c);
	store_app_release(&a);
	store_close(st);
}

static void test_wal_mode(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	_cleanup_free_ char *mode = peek(f->db, "PRAGMA journal_mode");

	/* WAL is a property of the file: a second connection sees it. */
	assert_string_equal(mode, "wal");
	store_close(st);
}

static void test_not_a_database(void **state)
{
	struct fixture *f = *state;
	sk_store *st = NULL;
	sk_error err = { 0 };
	char junk[8192];
	_cleanup_free_ char *back = NULL;
	size_t len;

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = "not a database, just text\n"[i % 26];
	assert_int_equal(sk_write_file(f->db, junk, sizeof(junk), 0644, &err), 0);
	assert_int_equal(store_open(f->db, &st, &err), -1);
	assert_null(st);
	assert_non_null(strstr(err.msg, f->db));
	assert_non_null(strstr(err.msg, "not a database"));
	assert_non_null(strstr(err.msg, "move it aside"));
	/* The file is left as it was. */
	assert_int_equal(sk_read_file(f->db, &back, &len, &err), 0);
	assert_int_equal(len, sizeof(junk));
	assert_memory_equal(back, junk, sizeof(junk));
}

static void test_newer_schema(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	sk_error err = { 0 };

	store_close(st);
	poke(f->db, "INSERT INTO schema_migrations(version, applied_at) VALUES (99, 0)");
	st = NULL;
	assert_int_equal(store_open(f->db, &st, &err), -1);
	assert_null(st);
	assert_non_null(strstr(err.msg, "schema version 99"));
	assert_non_null(strstr(err.msg, "upgrade skiff"));
}

static void test_open_missing_dir(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *path = xasprintf("%s/no/such/dir/state.db", f->dir);
	sk_store *st = NULL;
	sk_error err = { 0 };

	assert_int_equal(store_open(path, &st, &err), -1);
	assert_null(st);
	assert_non_null(strstr(err.msg, "unable to open"));
}

/* ---- apps ------------------------------------------------------------------ */

static void test_app_lookup(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	store_app a = { 0 }, b = { 0 }, c = { 0 };
	sk_error err = { 0 };
	bool created = true;
	double before = sk_wall_time();

	assert_int_equal(store_app_lookup(st, "foo", false, &a, &created, &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);
	assert_string_equal(err.msg,
			    "app \"foo\" not found (create it with create_if_missing=True)");
	assert_false(created);

	assert_int_equal(store_app_lookup(st, "foo", true, &a, &created, &err), 0);
	assert_true(created);
	assert_string_equal(a.name, "foo");
	assert_int_equal(strlen(a.app_id), 19);
	assert_memory_equal(a.app_id, "ap-", 3);
	assert_int_equal(strspn(a.app_id + 3, "0123456789abcdef"), 16);
	assert_true(a.created_at >= before - 1 && a.created_at <= sk_wall_time() + 1);

	/* Existing: found, with or without create, not created again. */
	assert_int_equal(store_app_lookup(st, "foo", true, &b, &created, &err), 0);
	assert_false(created);
	assert_string_equal(b.app_id, a.app_id);
	store_app_release(&b);
	assert_int_equal(store_app_lookup(st, "foo", false, &b, NULL, &err), 0);
	assert_string_equal(b.app_id, a.app_id);

	assert_int_equal(store_app_get(st, a.app_id, &c, &err), 0);
	assert_string_equal(c.name, "foo");
	store_app_release(&c);
	assert_int_equal(store_app_get(st, "ap-0000000000000000", &c, &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);

	assert_int_equal(store_app_lookup(st, "", true, &c, &created, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);

	/* A name with SQL in it is only data. */
	assert_int_equal(store_app_lookup(st, "x'); DROP TABLE apps; --", true, &c, &created,
					  &err), 0);
	assert_true(created);
	assert_string_equal(c.name, "x'); DROP TABLE apps; --");
	store_app_release(&c);

	store_app_release(&a);
	store_app_release(&b);
	assert_null(a.app_id); /* release leaves the record empty */
	store_close(st);
}

/* ---- images ---------------------------------------------------------------- */

static void test_images(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	store_image old = { .image_id = "im-old", .spec_json = "{\"base\":\"debian_slim\"}",
			    .base = "debian_slim", .python_version = NULL, .size_bytes = 1,
			    .created_at = 1000.0 };
	store_image new = { .image_id = "im-new", .spec_json = "{}", .base = "debian_slim",
			    .python_version = "3.11", .size_bytes = 5LL << 32,
			    .created_at = 2000.5 };
	store_image got = { 0 }, *list = NULL;
	size_t n = 99;
	sk_error err = { 0 };

	assert_int_equal(store_image_list(st, &list, &n, &err), 0);
	assert_int_equal(n, 0);
	store_images_free(list, n);

	assert_int_equal(store_image_put(st, &old, &err), 0);
	assert_int_equal(store_image_put(st, &new, &err), 0);

	assert_int_equal(store_image_get(st, "im-new", &got, &err), 0);
	assert_string_equal(got.image_id, "im-new");
	assert_string_equal(got.spec_json, "{}");
	assert_string_equal(got.base, "debian_slim");
	assert_string_equal(got.python_version, "3.11");
	assert_true(got.size_bytes == 5LL << 32);
	assert_true(got.created_at == 2000.5);
	store_image_release(&got);

	assert_int_equal(store_image_get(st, "im-old", &got, &err), 0);
	assert_null(got.python_version);
	store_image_release(&got);

	assert_int_equal(store_image_list(st, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].image_id, "im-new"); /* newest first */
	assert_string_equal(list[1].image_id, "im-old");
	store_images_free(list, n);

	/* Put again replaces the row. */
	old.size_bytes = 42;
	old.created_at = 3000.0;
	assert_int_equal(store_image_put(st, &old, &err), 0);
	assert_int_equal(store_image_list(st, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].image_id, "im-old");
	assert_int_equal(list[0].size_bytes, 42);
	store_images_free(list, n);

	assert_int_equal(store_image_delete(st, "im-old", &err), 0);
	assert_int_equal(store_image_get(st, "im-old", &got, &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "im-old"));
	assert_int_equal(store_image_delete(st, "im-old", &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);

	assert_int_equal(store_image_list(st, &list, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].image_id, "im-new");
	store_images_free(list, n);
	store_close(st);
}

/* ---- containers ------------------------------------------------------------ */

static store_container mk(const char *id, const char *state, double created)
{
	return (store_container){ .container_id = (char *)id, .kind = "sandbox",
				  .app_id = NULL, .image_id = "im-x",
				  .cmd_json = "[\"sleep\",\"9\"]", .state = (char *)state,
				  .cpu = 0.5, .memory = 256, .timeout = 300,
				  .created_at = created };
}

static void test_containers(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	store_container a = mk("sb-a", "running", 100), b = mk("sb-b", "exited", 200),
			c = mk("sb-c", "running", 300), got = { 0 }, *list = NULL;
	size_t n;
	sk_error err = { 0 };
	double before;

	a.app_id = "ap-0123456789abcdef";
	b.has_returncode = true;
	b.returncode = 137;
	b.oom = true;
	b.ended_at = 250.25;
	assert_int_equal(store_container_put(st, &a, &err), 0);
	assert_int_equal(store_container_put(st, &b, &err), 0);
	assert_int_equal(store_container_put(st, &c, &err), 0);

	assert_int_equal(store_container_get(st, "sb-a", &got, &err), 0);
	assert_string_equal(got.container_id, "sb-a");
	assert_string_equal(got.kind, "sandbox");
	assert_string_equal(got.app_id, "ap-0123456789abcdef");
	assert_string_equal(got.image_id, "im-x");
	assert_string_equal(got.cmd_json, "[\"sleep\",\"9\"]");
	assert_string_equal(got.state, "running");
	assert_true(got.cpu == 0.5);
	assert_int_equal(got.memory, 256);
	assert_int_equal(got.timeout, 300);
	assert_false(got.has_returncode);
	assert_false(got.oom || got.timed_out || got.terminated);
	assert_true(got.created_at == 100);
	assert_true(got.ended_at == 0);
	store_container_release(&got);

	assert_int_equal(store_container_get(st, "sb-b", &got, &err), 0);
	assert_null(got.app_id);
	assert_true(got.has_returncode);
	assert_int_equal(got.returncode, 137);
	assert_true(got.oom);
	assert_false(got.timed_out);
	assert_true(got.ended_at == 250.25);
	store_container_release(&got);

	assert_int_equal(store_container_get(st, "sb-zz", &got, &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);

	assert_int_equal(store_container_list(st, true, &list, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list[0].container_id, "sb-c");
	assert_string_equal(list[1].container_id, "sb-b");
	assert_string_equal(list[2].container_id, "sb-a");
	store_containers_free(list, n);

	assert_int_equal(store_container_list(st, false, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].container_id, "sb-c");
	assert_string_equal(list[1].container_id, "sb-a");
	store_containers_free(list, n);

	/* Put replaces every field, returncode included. */
	c.state = "exited";
	c.has_returncode = true;
	c.returncode = 0;
	c.ended_at = 310;
	assert_int_equal(store_container_put(st, &c, &err), 0);
	assert_int_equal(store_container_get(st, "sb-c", &got, &err), 0);
	assert_string_equal(got.state, "exited");
	assert_true(got.has_returncode);
	assert_int_equal(got.returncode, 0);
	store_container_release(&got);
	c.state = "running";
	c.has_returncode = false;
	c.ended_at = 0;
	assert_int_equal(store_container_put(st, &c, &err), 0);

	/* Crash recovery: both running rows become exited, terminated, no returncode. */
	before = sk_wall_time();
	assert_int_equal(store_container_mark_lost(st, &err), 2);
	assert_int_equal(store_container_list(st, false, &list, &n, &err), 0);
	assert_int_equal(n, 0);
	store_containers_free(list, n);
	assert_int_equal(store_container_get(st, "sb-a", &got, &err), 0);
	assert_string_equal(got.state, "exited");
	assert_false(got.has_returncode);
	assert_true(got.terminated);
	assert_true(got.ended_at >= before - 1);
	store_container_release(&got);
	/* The exited one is untouched. */
	assert_int_equal(store_container_get(st, "sb-b", &got, &err), 0);
	assert_int_equal(got.returncode, 137);
	assert_false(got.terminated);
	assert_true(got.ended_at == 250.25);
	store_container_release(&got);
	assert_int_equal(store_container_mark_lost(st, &err), 0);
	store_close(st);
}

/* ---- usage ----------------------------------------------------------------- */

static store_usage urow(const char *id, const char *app, const char *fn, double start,
			double updated, double end)
{
	return (store_usage){ .container_id = id, .kind = fn ? "function" : "sandbox",
			      .app_id = app ? "ap-1" : NULL, .app_name = app, .function = fn,
			      .started_at = start, .updated_at = updated, .ended_at = end,
			      .cpu_request = 0.5, .memory_request = 2048 };
}

static const store_usage_total *find_total(const store_usage_total *ts, size_t n,
					   const char *fn)
{
	for (size_t i = 0; i < n; i++)
		if ((fn == NULL) == (ts[i].function == NULL) &&
		    (!fn || !strcmp(ts[i].function, fn)))
			return &ts[i];
	fail_msg("no total for function %s", fn ? fn : "(none)");
	return NULL;
}

#define assert_near(a, b) assert_true(fabs((double)(a) - (double)(b)) < 1e-6)

static void test_usage(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	store_usage_total *ts = NULL;
	const store_usage_total *t;
	size_t n = 99;
	sk_error err = { 0 };
	/* f1: two ended containers, 10 s and 20 s; f2: one running since 100,
	 * last updated at 130; a sandbox of no app, ended. */
	store_usage a = urow("ct-a", "demo", "f1", 100, 110, 110);
	store_usage b = urow("ct-b", "demo", "f1", 120, 140, 140);
	store_usage c = urow("ct-c", "demo", "f2", 100, 130, 0);
	store_usage d = urow("sb-d", NULL, NULL, 50, 60, 60);

	assert_int_equal(store_usage_totals(st, NULL, 0, 1000, &ts, &n, &err), 0);
	assert_int_equal(n, 0);
	store_usage_totals_free(ts, n);

	a.cpu_used_s = 2;   /* below its request: 0.5 x 10 s = 5 core-seconds billed */
	a.inputs = 3;
	b.cpu_used_s = 30;  /* above: 30 billed */
	b.inputs = 4;
	b.gpus = 2;
	b.gpu_type = "H100";
	c.memory_peak_bytes = 1 << 20;
	assert_int_equal(store_usage_put(st, &a, &err), 0);
	assert_int_equal(store_usage_put(st, &b, &err), 0);
	assert_int_equal(store_usage_put(st, &c, &err), 0);
	assert_int_equal(store_usage_put(st, &d, &err), 0);

	/* A rewrite with smaller used values (a failed cgroup read) keeps the larger. */
	c.memory_peak_bytes = 0;
	c.cpu_used_s = 0;
	assert_int_equal(store_usage_put(st, &c, &err), 0);
	{
		_cleanup_free_ char *peak = peek(f->db, "SELECT memory_peak_bytes || ':' ||"
						 " (ended_at IS NULL) FROM usage WHERE container_id = 'ct-c'");
		assert_string_equal(peak, "1048576:1");
	}

	assert_int_equal(store_usage_totals(st, NULL, 0, 1000, &ts, &n, &err), 0);
	/* f1 splits by GPU type (b has H100s, a none); sandboxes sort first (NULL app). */
	assert_int_equal(n, 4);
	assert_null(ts[0].app_name);
	assert_string_equal(ts[0].kind, "sandbox");
	assert_int_equal(ts[0].containers, 1);
	assert_near(ts[0].container_seconds, 10);
	assert_near(ts[0].cpu_seconds, 5);
	assert_near(ts[0].memory_gib_seconds, 20);
	for (size_t i = 1; i < n; i++) {
		assert_string_equal(ts[i].app_name, "demo");
		assert_string_equal(ts[i].app_id, "ap-1");
	}
	t = &ts[1]; /* f1, no GPU */
	assert_string_equal(t->function, "f1");
	assert_null(t->gpu_type);
	assert_near(t->container_seconds, 10);
	assert_near(t->cpu_seconds, 5);
	assert_near(t->cpu_used_seconds, 2);
	assert_int_equal(t->inputs, 3);
	t = &ts[2]; /* f1 on H100s */
	assert_string_equal(t->gpu_type, "H100");
	assert_near(t->container_seconds, 20);
	assert_near(t->cpu_seconds, 30);
	assert_near(t->gpu_seconds, 40);
	assert_int_equal(t->inputs, 4);
	t = &ts[3]; /* f2: running, counted to its last update */
	assert_string_equal(t->function, "f2");
	assert_near(t->container_seconds, 30);
	store_usage_totals_free(ts, n);

	/* A window: since 105, now 125.  a: 105..110 (5 s); b: 120..125 (5 s of its 20,
	 * so a quarter of its CPU); c: 105..125; d is before the window. */
	assert_int_equal(store_usage_totals(st, "demo", 105, 125, &ts, &n, &err), 0);
	assert_int_equal(n, 3);
	t = find_total(ts, n, "f2");
	assert_near(t->container_seconds, 20);
	assert_near(ts[0].container_seconds, 5);
	assert_near(ts[0].cpu_seconds, 2.5);
	assert_near(ts[0].cpu_used_seconds, 1);
	assert_near(ts[1].container_seconds, 5);
	assert_near(ts[1].cpu_used_seconds, 7.5);
	assert_near(ts[1].cpu_seconds, 7.5);
	assert_near(ts[1].gpu_seconds, 10);
	store_usage_totals_free(ts, n);

	/* By app id too; an unknown app has no rows; the window after everything
	 * keeps only what has not ended. */
	assert_int_equal(store_usage_totals(st, "ap-1", 0, 1000, &ts, &n, &err), 0);
	assert_int_equal(n, 3);
	store_usage_totals_free(ts, n);
	assert_int_equal(store_usage_totals(st, "nope", 0, 1000, &ts, &n, &err), 0);
	assert_int_equal(n, 0);
	store_usage_totals_free(ts, n);
	assert_int_equal(store_usage_totals(st, NULL, 500, 1000, &ts, &n, &err), 0);
	assert_int_equal(n, 0); /* c's last update (130) is before 500 */
	store_usage_totals_free(ts, n);

	/* The end: ended_at replaces the open end, and survives a reopen. */
	c.ended_at = 131;
	c.updated_at = 131;
	assert_int_equal(store_usage_put(st, &c, &err), 0);
	store_close(st);
	st = open_ok(f->db);
	assert_int_equal(store_usage_totals(st, "demo", 0, 1000, &ts, &n, &err), 0);
	t = find_total(ts, n, "f2");
	assert_near(t->container_seconds, 31);
	store_usage_totals_free(ts, n);
	store_close(st);
}

/* ---- proxy-auth tokens ----------------------------------------------------- */

/*
 * A database as a server at schema 2 left it (the schema copied from that
 * release, with a row in it): opening it applies migration 3 only.
 */
static void test_migrate_from_v2(void **state)
{
	struct fixture *f = *state;
	sk_store *st;
	store_app a = { 0 };
	_cleanup_free_ char *n = NULL, *applied2 = NULL, *cols = NULL;
	sk_error err = { 0 };

	poke(f->db, "CREATE TABLE schema_migrations(version INTEGER PRIMARY KEY, applied_at REAL);"
		    "CREATE TABLE apps (app_id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
		    "  created_at REAL NOT NULL);"
		    "CREATE TABLE images (image_id TEXT PRIMARY KEY, spec_json TEXT NOT NULL,"
		    "  base TEXT NOT NULL, python_version TEXT,"
		    "  size_bytes INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);"
		    "CREATE TABLE containers (container_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
		    "  app_id TEXT, image_id TEXT, cmd_json TEXT, state TEXT NOT NULL,"
		    "  cpu REAL NOT NULL DEFAULT 0, memory INTEGER NOT NULL DEFAULT 0,"
		    "  timeout INTEGER NOT NULL DEFAULT 0, returncode INTEGER NULL,"
		    "  oom INTEGER NOT NULL DEFAULT 0, timed_out INTEGER NOT NULL DEFAULT 0,"
		    "  terminated INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,"
		    "  ended_at REAL);"
		    "CREATE INDEX containers_state_created ON containers(state, created_at);"
		    "CREATE TABLE usage (container_id TEXT PRIMARY KEY, kind TEXT NOT NULL,"
		    "  app_id TEXT, app_name TEXT, function TEXT, started_at REAL NOT NULL,"
		    "  updated_at REAL NOT NULL, ended_at REAL,"
		    "  cpu_request REAL NOT NULL DEFAULT 0, memory_request INTEGER NOT NULL DEFAULT 0,"
		    "  gpus INTEGER NOT NULL DEFAULT 0, gpu_type TEXT,"
		    "  cpu_used_s REAL NOT NULL DEFAULT 0,"
		    "  memory_peak_bytes INTEGER NOT NULL DEFAULT 0,"
		    "  inputs INTEGER NOT NULL DEFAULT 0);"
		    "CREATE INDEX usage_app ON usage(app_name, app_id);"
		    "INSERT INTO schema_migrations VALUES (1, 1234.5), (2, 2345.5);"
		    "INSERT INTO apps VALUES ('ap-0000000000000002', 'old', 10);");
	st = open_ok(f->db);
	assert_int_equal(store_schema_version(st), 4);
	n = peek(f->db, "SELECT group_concat(version, ',') FROM schema_migrations");
	assert_string_equal(n, "1,2,3,4");
	applied2 = peek(f->db, "SELECT applied_at FROM schema_migrations WHERE version = 2");
	assert_string_equal(applied2, "2345.5");
	cols = peek(f->db, "SELECT group_concat(name, ',') FROM pragma_table_info('web_tokens')");
	assert_string_equal(cols, "token_id,secret_sha256,created_at,name");
	assert_int_equal(store_app_lookup(st, "old", false, &a, NULL, &err), 0);
	assert_string_equal(a.app_id, "ap-0000000000000002");
	store_app_release(&a);
	store_close(st);
}

static bool all_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	return strspn(s, "0123456789abcdef") == n;
}

static void test_tokens(void **state)
{
	struct fixture *f = *state;
	sk_store *st = open_ok(f->db);
	sk_error err = { 0 };
	_cleanup_free_ char *id = NULL, *secret = NULL, *id2 = NULL, *secret2 = NULL;
	_cleanup_free_ char *stored = NULL, *sql = NULL, *wrong = NULL, *dump = NULL;
	store_token *ts = NULL;
	size_t n = 0;

	assert_int_equal(store_token_create(st, "ci", &id, &secret, &err), 0);
	assert_int_equal(strncmp(id, "wk-", 3), 0);
	assert_true(all_hex(id + 3, 16));
	assert_int_equal(strncmp(secret, "ws-", 3), 0);
	assert_true(all_hex(secret + 3, 32));
	assert_int_equal(store_token_create(st, NULL, &id2, &secret2, &err), 0);
	assert_string_not_equal(id, id2);
	assert_string_not_equal(secret, secret2);

	assert_int_equal(store_token_check(st, id, secret), 1);
	assert_int_equal(store_token_check(st, id2, secret2), 1);
	/* The wrong secret, another token's secret, a prefix, an unknown id. */
	wrong = xstrdup(secret);
	wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == '0' ? '1' : '0';
	assert_int_equal(store_token_check(st, id, wrong), 0);
	assert_int_equal(store_token_check(st, id, secret2), 0);
	assert_int_equal(store_token_check(st, id, ""), 0);
	assert_int_equal(store_token_check(st, "wk-0000000000000000", secret), 0);
	assert_int_equal(store_token_check(st, NULL, secret), 0);
	assert_int_equal(store_token_check(st, id, NULL), 0);

	/* The file holds the digest, never the secret. */
	sql = xasprintf("SELECT secret_sha256 FROM web_tokens WHERE token_id = '%s'", id);
	stored = peek(f->db, sql);
	assert_true(all_hex(stored, 64));
	dump = peek(f->db, "SELECT group_concat(token_id || secret_sha256 || coalesce(name, ''))"
			   " FROM web_tokens");
	assert_null(strstr(dump, secret + 3));
	assert_null(strstr(dump, secret2 + 3));

	/* Newest first; a name is kept, a missing one stays NULL. */
	assert_int_equal(store_token_list(st, &ts, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ts[0].token_id, id2);
	assert_null(ts[0].name);
	assert_string_equal(ts[1].token_id, id);
	assert_string_equal(ts[1].name, "ci");
	assert_true(ts[1].created_at > 1e9);
	store_tokens_free(ts, n);

	/* Survives a reopen; deleting ends it, and a second delete is NOT_FOUND. */
	store_close(st);
	st = open_ok(f->db);
	assert_int_equal(store_token_check(st, id, secret), 1);
	assert_int_equal(store_token_delete(st, id, &err), 0);
	assert_int_equal(store_token_check(st, id, secret), 0);
	assert_int_equal(store_token_check(st, id2, secret2), 1);
	assert_int_equal(store_token_delete(st, id, &err), -1);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, id));
	assert_int_equal(store_token_list(st, &ts, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ts[0].token_id, id2);
	store_tokens_free(ts, n);
	store_close(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_missing_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_app_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_containers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
	};

	return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
