/*
 * Tests for src/store/store_deploy.c: deployments and their versions, the
 * last runs of schedules, and durable calls -- each written, read back
 * through a reopened store (what a server restart sees), changed, expired.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_deploy.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

struct fixture {
	char dir[64];
	char *db;
	sk_store *st;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	sk_error err;

	strcpy(f->dir, "/tmp/skiff-test-deploy-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->db = xasprintf("%s/state.db", f->dir);
	if (store_open(f->db, &f->st, &err) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc;

	store_close(f->st);
	rc = sk_rm_rf(f->dir, NULL);
	free(f->db);
	free(f);
	return rc;
}

/* Closes and reopens the store, as a restarted server does. */
static void reopen(struct fixture *f)
{
	sk_error err;

	store_close(f->st);
	assert_int_equal(store_open(f->db, &f->st, &err), 0);
}

static void test_deployments(void **state)
{
	struct fixture *f = *state;
	store_deployment d = { .name = "web", .app_id = "ap-1", .state = "deployed", .version = 1,
			       .created_at = 100, .updated_at = 100 };
	store_deployment got, *all;
	size_t n;
	sk_error err;

	assert_int_equal(store_deployment_get(f->st, "web", &got, &err), 0);
	assert_int_equal(store_deployment_put(f->st, &d, &err), 0);
	d.version = 2;
	d.updated_at = 200;
	d.created_at = 999; /* an update keeps the first created_at */
	assert_int_equal(store_deployment_put(f->st, &d, &err), 0);
	reopen(f);
	assert_int_equal(store_deployment_get(f->st, "web", &got, &err), 1);
	assert_string_equal(got.app_id, "ap-1");
	assert_string_equal(got.state, "deployed");
	assert_int_equal(got.version, 2);
	assert_true(got.created_at == 100 && got.updated_at == 200);
	store_deployment_release(&got);
	d.name = "batch";
	d.state = "stopped";
	assert_int_equal(store_deployment_put(f->st, &d, &err), 0);
	assert_int_equal(store_deployment_list(f->st, &all, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(all[0].name, "batch");
	assert_string_equal(all[0].state, "stopped");
	assert_string_equal(all[1].name, "web");
	store_deployments_free(all, n);
}

static void test_versions(void **state)
{
	struct fixture *f = *state;
	store_version v = { .name = "web", .version = 1, .strategy = "rolling", .digest = "aa",
			    .manifest = "{\"functions\":[]}", .created_at = 10 };
	store_version got, *vs;
	size_t n;
	sk_error err;

	assert_int_equal(store_version_latest(f->st, "web"), 0);
	assert_int_equal(store_version_put(f->st, &v, &err), 0);
	v.version = 2;
	v.tag = "v2";
	v.digest = "bb";
	v.strategy = "recreate";
	assert_int_equal(store_version_put(f->st, &v, &err), 0);
	v.version = 3;
	v.tag = NULL;
	v.rollback_of = 1;
	assert_int_equal(store_version_put(f->st, &v, &err), 0);
	/* A version number is written once. */
	assert_int_equal(store_version_put(f->st, &v, &err), -1);
	reopen(f);
	assert_int_equal(store_version_latest(f->st, "web"), 3);
	assert_int_equal(store_version_latest(f->st, "other"), 0);
	assert_int_equal(store_version_get(f->st, "web", 2, &got, &err), 1);
	assert_string_equal(got.tag, "v2");
	assert_string_equal(got.strategy, "recreate");
	assert_string_equal(got.digest, "bb");
	assert_string_equal(got.manifest, "{\"functions\":[]}");
	assert_int_equal(got.rollback_of, 0);
	store_version_release(&got);
	assert_int_equal(store_version_get(f->st, "web", 9, &got, &err), 0);
	assert_int_equal(store_version_list(f->st, "web", false, &vs, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(vs[0].version, 3); /* newest first */
	assert_int_equal(vs[0].rollback_of, 1);
	assert_null(vs[0].tag);
	assert_null(vs[0].manifest);
	assert_int_equal(vs[2].version, 1);
	store_versions_free(vs, n);
}

static void test_schedules(void **state)
{
	struct fixture *f = *state;
	double last = 0;
	sk_error err;

	assert_int_equal(store_schedule_last(f->st, "web", "tick", &last, &err), 0);
	assert_int_equal(store_schedule_set(f->st, "web", "tick", 1000.5, &err), 0);
	assert_int_equal(store_schedule_set(f->st, "web", "tick", 2000.25, &err), 0);
	assert_int_equal(store_schedule_set(f->st, "web", "other", 5, &err), 0);
	reopen(f);
	assert_int_equal(store_schedule_last(f->st, "web", "tick", &last, &err), 1);
	assert_true(last == 2000.25);
}

static void test_durable_calls(void **state)
{
	struct fixture *f = *state;
	store_dcall *cs;
	size_t n;
	sk_error err;
	const char payload[] = { 'a', 0, 'b' }; /* binary, with a NUL */

	assert_int_equal(store_dcall_put(f->st, "fc-1", "web", "work", payload, 3, 10, &err), 0);
	assert_int_equal(store_dcall_put(f->st, "fc-2", "web", "work", "x", 1, 11, &err), 0);
	assert_int_equal(store_dcall_put(f->st, "fc-3", "web", "work", "y", 1, 12, &err), 0);
	assert_int_equal(store_dcall_done(f->st, "fc-2", 0, "ok\0!", 4, 20, &err), 0);
	assert_int_equal(store_dcall_done(f->st, "fc-3", 2, "err", 3, 5000, &err), 0);
	reopen(f);
	assert_int_equal(store_dcall_list(f->st, &cs, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(cs[0].call_id, "fc-1"); /* in the order they came */
	assert_false(cs[0].done);
	assert_int_equal(cs[0].payload_len, 3);
	assert_memory_equal(cs[0].payload, payload, 3);
	assert_true(cs[1].done);
	assert_int_equal(cs[1].status, 0);
	assert_int_equal(cs[1].result_len, 4);
	assert_memory_equal(cs[1].result, "ok\0!", 4);
	assert_int_equal(cs[2].status, 2);
	store_dcalls_free(cs, n);
	/* Expiry drops only what finished before the instant. */
	assert_int_equal(store_dcall_expire(f->st, 100, &err), 0);
	assert_int_equal(store_dcall_list(f->st, &cs, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(cs[0].call_id, "fc-1");
	assert_string_equal(cs[1].call_id, "fc-3");
	store_dcalls_free(cs, n);
	assert_int_equal(store_dcall_delete(f->st, "fc-1", &err), 0);
	assert_int_equal(store_dcall_list(f->st, &cs, &n, &err), 0);
	assert_int_equal(n, 1);
	store_dcalls_free(cs, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deployments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schedules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durable_calls, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
