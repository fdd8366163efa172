/*
 * Tests for server/usage and server/prices: metering driven by hand-made
 * containers (the fields usage.c reads: id, created_at, ended_at, state, cpu,
 * memory, box, cpu_used_ns, peak_memory) in a minimal server with a real
 * store in a temporary home and a fake cgroup2 tree for the boxes' counters.
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
#include <sys/stat.h>
#include <unistd.h>

#include "server/internal.h"
#include "server/prices.h"
#include "server/usage.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

#define GiB (1024.0 * 1024 * 1024)

struct fixture {
	char dir[64];
	char *db, *prices, *boxes;
	skiff_server s;
};

static void put(const char *dir, const char *file, const char *text)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, file);
	sk_error err;

	assert_int_equal(sk_write_file(p, text, strlen(text), 0644, &err), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	_cleanup_free_ char *mi = NULL;
	sk_error err;

	strcpy(f->dir, "/tmp/skiff-test-usage-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->s.home = xstrdup(f->dir);
	f->db = xasprintf("%s/state.db", f->dir);
	f->prices = xasprintf("%s/prices.json", f->dir);
	mi = xasprintf("30 1 0:26 / %s/cg rw - cgroup2 cgroup2 rw\n", f->dir);
	if (cg_parse_mountinfo(mi, "t", &f->s.cg, &err) < 0 ||
	    store_open(f->db, &f->s.store, &err) < 0)
		return -1;
	f->boxes = xasprintf("%s/cg/skiff/t", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = sk_rm_rf(f->dir, NULL);

	usage_release(&f->s);
	store_close(f->s.store);
	cg_host_release(&f->s.cg);
	free(f->s.home);
	free(f->db);
	free(f->prices);
	free(f->boxes);
	free(f);
	return rc;
}

/* A running container started `age` seconds ago, with a box in the fake tree. */
static rt_container *mk(struct fixture *f, const char *id, double age)
{
	rt_container *c = xcalloc(1, sizeof(*c));
	_cleanup_free_ char *dir = xasprintf("%s/%s", f->boxes, id);
	sk_error err;

	c->id = xstrdup(id);
	c->state = RT_RUNNING;
	c->created_at = sk_wall_time() - age;
	c->box.rel = xasprintf("skiff/t/%s", id);
	c->box.ctr_path = xasprintf("/skiff/t/%s/ctr", id);
	c->box.oom_efd = -1;
	assert_int_equal(sk_mkdir_p(dir, 0755, &err), 0);
	return c;
}

/* What the runtime does at the end: counters read, box gone, state exited. */
static void end(rt_container *c, double ago, long long cpu_ns)
{
	c->cpu_used_ns = cpu_ns;
	c->state = RT_EXITED;
	c->ended_at = sk_wall_time() - ago;
	free(c->box.rel);
	free(c->box.ctr_path);
	c->box.rel = c->box.ctr_path = NULL;
}

static void rm(rt_container *c)
{
	free(c->id);
	free(c->box.rel);
	free(c->box.ctr_path);
	free(c);
}

static void counters(struct fixture *f, const char *id, long long usec, long long peak)
{
	_cleanup_free_ char *dir = xasprintf("%s/%s", f->boxes, id);
	_cleanup_free_ char *stat = xasprintf("usage_usec %lld\nuser_usec 0\n", usec);
	_cleanup_free_ char *mem = xasprintf("%lld\n", peak);

	put(dir, "cpu.stat", stat);
	put(dir, "memory.peak", mem);
}

static json_t *report(struct fixture *f, const char *app, double since)
{
	sk_error err = { 0 };
	json_t *j = usage_report(&f->s, app, since, &err);

	if (!j)
		fail_msg("usage_report: %s", err.msg);
	return j;
}

static double num(const json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_number(v))
		fail_msg("no number \"%s\"", key);
	return json_number_value(v);
}

/* The one row of kind/function (function NULL: a sandbox). */
static json_t *row(json_t *rep, const char *function)
{
	json_t *r;
	size_t i;

	json_array_foreach(json_object_get(rep, "rows"), i, r) {
		const char *fn = json_string_value(json_object_get(r, "function"));
		if ((!fn && !function) || (fn && function && !strcmp(fn, function)))
			return r;
	}
	fail_msg("no row for %s", function ? function : "sandboxes");
	return NULL;
}

#define assert_near(a, b, eps) \
	assert_true(fabs((double)(a) - (double)(b)) <= (eps))

/* ---- metering ------------------------------------------------------------------ */

static void test_sandbox_and_function(void **state)
{
	struct fixture *f = *state;
	rt_container *sb = mk(f, "sb-1", 10), *ct = mk(f, "ct-1", 5);
	usage_info fn = { .kind = "function", .app_id = "ap-1", .app_name = "demo",
			  .function = "square", .cpu_request = 1.0, .memory_request = 1024,
			  .gpus = 1, .gpu_type = "H100" };
	json_t *rep, *r;
	double cost;

	counters(f, "sb-1", 2000000, 50 << 20); /* 2 s of CPU: more than 0.125 x 10 s */
	usage_started(&f->s, sb, NULL);         /* all from the container: a sandbox */
	usage_started(&f->s, ct, &fn);
	usage_update(&f->s, ct, 3);

	rep = report(f, NULL, 0);
	assert_int_equal(json_array_size(json_object_get(rep, "rows")), 2);
	r = row(rep, NULL);
	assert_string_equal(json_string_value(json_object_get(r, "kind")), "sandbox");
	assert_true(json_is_null(json_object_get(r, "app_name")));
	assert_int_equal(num(r, "containers"), 1);
	assert_near(num(r, "container_seconds"), 10, 0.5);
	assert_near(num(r, "cpu_used_seconds"), 2, 0.01);
	assert_near(num(r, "cpu_seconds"), 2, 0.01); /* used, above the request */
	assert_near(num(r, "memory_gib_seconds"), 10 * 128 / 1024.0, 0.1);
	assert_near(num(r, "gpu_seconds"), 0, 0);
	r = row(rep, "square");
	assert_string_equal(json_string_value(json_object_get(r, "app_name")), "demo");
	assert_string_equal(json_string_value(json_object_get(r, "app_id")), "ap-1");
	assert_string_equal(json_string_value(json_object_get(r, "gpu_type")), "H100");
	assert_int_equal(num(r, "inputs"), 3);
	assert_near(num(r, "container_seconds"), 5, 0.5);
	json_decref(rep);

	/* It ends 1 s ago after 4 s, 4 s of CPU read at the end, 7 inputs. */
	ct->created_at = sk_wall_time() - 5;
	end(ct, 1, 4000000000LL);
	usage_ended(&f->s, ct, 7);
	rep = report(f, "demo", 0);
	assert_int_equal(json_array_size(json_object_get(rep, "rows")), 1);
	r = row(rep, "square");
	assert_near(num(r, "container_seconds"), 4, 0.01);
	assert_near(num(r, "cpu_seconds"), 4, 0.01);
	assert_near(num(r, "cpu_used_seconds"), 4, 0.01);
	assert_near(num(r, "memory_gib_seconds"), 4, 0.01);
	assert_near(num(r, "gpu_seconds"), 4, 0.01);
	assert_int_equal(num(r, "inputs"), 7);
	cost = 4 * 0.0000131 + 4 * 0.00000222 + 4 * 0.001097;
	assert_near(num(r, "cost"), cost, 1e-9);
	assert_near(num(rep, "total_cost"), cost, 1e-9);
	assert_true(json_is_null(json_object_get(rep, "prices_file")));
	assert_near(num(json_object_get(rep, "prices"), "cpu_core_second"), 0.0000131, 1e-12);
	json_decref(rep);

	/* By app id, and a window: since 2 s ago only its last second counts. */
	rep = report(f, "ap-1", sk_wall_time() - 2);
	r = row(rep, "square");
	assert_near(num(r, "container_seconds"), 1, 0.05);
	assert_near(num(r, "gpu_seconds"), 1, 0.05);
	json_decref(rep);
	rep = report(f, "nope", 0);
	assert_int_equal(json_array_size(json_object_get(rep, "rows")), 0);
	assert_near(num(rep, "total_cost"), 0, 0);
	json_decref(rep);

	/* Updates after the end are ignored; the sandbox is still metered. */
	usage_update(&f->s, ct, 99);
	rep = report(f, "demo", 0);
	assert_int_equal(num(row(rep, "square"), "inputs"), 7);
	json_decref(rep);
	assert_non_null(f->s.usage);
	rm(ct);
	end(sb, 0, 3000000000LL);
	usage_ended(&f->s, sb, 0);
	assert_null(f->s.usage);
	rm(sb);
}

/* A container that ends without usage_ended is closed by the next tick. */
static void test_tick_closes_forgotten(void **state)
{
	struct fixture *f = *state;
	rt_container *c = mk(f, "ct-2", 3);
	json_t *rep;

	usage_started(&f->s, c, &(usage_info){ .app_name = "a", .function = "g" });
	usage_update(&f->s, c, 2);
	counters(f, "ct-2", 500000, 1 << 20);
	usage_tick(&f->s);
	assert_non_null(f->s.usage);
	end(c, 0, 0); /* the box's last counters were lost: the tick's stay */
	usage_tick(&f->s);
	assert_null(f->s.usage);
	rep = report(f, "a", 0);
	assert_near(num(row(rep, "g"), "container_seconds"), 3, 0.1);
	assert_near(num(row(rep, "g"), "cpu_used_seconds"), 0.5, 0.01);
	assert_int_equal(num(row(rep, "g"), "inputs"), 2);
	assert_string_equal(json_string_value(json_object_get(row(rep, "g"), "kind")),
			    "function"); /* from the ct- id */
	json_decref(rep);
	rm(c);
}

/* The store keeps usage across a restart; a container lost in a crash counts
 * to its last write. */
static void test_survives_restart(void **state)
{
	struct fixture *f = *state;
	rt_container *done = mk(f, "ct-3", 6), *lost = mk(f, "ct-4", 8);
	usage_info info = { .app_name = "keep", .function = "h", .memory_request = 2048 };
	sk_error err;
	json_t *rep;

	usage_started(&f->s, done, &info);
	usage_started(&f->s, lost, &info);
	end(done, 0, 0);
	usage_ended(&f->s, done, 1);
	usage_tick(&f->s); /* lost's last write: about now */
	/* The "crash": the server forgets what it tracked and its store. */
	usage_release(&f->s);
	store_close(f->s.store);
	assert_int_equal(store_open(f->db, &f->s.store, &err), 0);
	rm(done);
	rm(lost);

	rep = report(f, "keep", 0);
	assert_int_equal(num(row(rep, "h"), "containers"), 2);
	assert_near(num(row(rep, "h"), "container_seconds"), 14, 0.5);
	assert_near(num(row(rep, "h"), "memory_gib_seconds"), 28, 1);
	json_decref(rep);
	/* Time passing does not grow the lost one. */
	rep = report(f, "keep", 0);
	assert_near(num(row(rep, "h"), "container_seconds"), 14, 0.5);
	json_decref(rep);
}

/* The sandbox's app name comes from the store's apps when only its id is given. */
static void test_app_name_from_store(void **state)
{
	struct fixture *f = *state;
	rt_container *c = mk(f, "sb-5", 1);
	store_app a;
	json_t *rep;

	assert_int_equal(store_app_lookup(f->s.store, "named", true, &a, NULL, NULL), 0);
	c->cpu = 2;
	usage_started(&f->s, c, &(usage_info){ .kind = "sandbox", .app_id = a.app_id });
	rep = report(f, "named", 0);
	assert_string_equal(json_string_value(json_object_get(row(rep, NULL), "app_id")),
			    a.app_id);
	/* Billed on its CPU limit (2 cores), not the 0.125 default. */
	assert_near(num(row(rep, NULL), "cpu_seconds"), 2 * num(row(rep, NULL),
								   "container_seconds"), 0.01);
	json_decref(rep);
	store_app_release(&a);
	end(c, 0, 0);
	usage_ended(&f->s, c, 0);
	rm(c);
}

/* ---- prices -------------------------------------------------------------------- */

static void test_prices_file(void **state)
{
	struct fixture *f = *state;
	rt_container *c = mk(f, "ct-6", 10);
	sk_error err = { 0 };
	json_t *rep;

	usage_started(&f->s, c, &(usage_info){ .app_name = "p", .function = "k",
					       .cpu_request = 1, .memory_request = 1024,
					       .gpus = 2, .gpu_type = "NEWGPU" });
	end(c, 0, 0);
	c->ended_at = c->created_at + 10;
	usage_ended(&f->s, c, 0);
	rm(c);

	put(f->dir, "prices.json", "{\"cpu_core_second\": 1, \"memory_gib_second\": 0.5,"
				   " \"gpu_second\": {\"newgpu\": 100}}");
	rep = report(f, "p", 0);
	/* 10 core-s x 1 + 10 GiB-s x 0.5 + 20 GPU-s x 100 */
	assert_near(num(row(rep, "k"), "cost"), 10 + 5 + 2000, 1e-6);
	assert_string_equal(json_string_value(json_object_get(rep, "prices_file")), f->prices);
	json_decref(rep);

	/* Broken files: an error that names the file and what is wrong; no crash. */
	put(f->dir, "prices.json", "{\"cpu_core_second\": 1,\n \"memory_gib_second\": }");
	assert_null(usage_report(&f->s, NULL, 0, &err));
	assert_int_equal(err.kind, SK_ERR_INTERNAL);
	assert_non_null(strstr(err.msg, f->prices));
	assert_non_null(strstr(err.msg, "line 2"));
	assert_non_null(strstr(err.msg, "remove it"));
	put(f->dir, "prices.json", "{\"cpu_per_second\": 1}");
	assert_null(usage_report(&f->s, NULL, 0, &err));
	assert_non_null(strstr(err.msg, "unknown key \"cpu_per_second\""));
	put(f->dir, "prices.json", "{\"gpu_second\": {\"H100\": -1}}");
	assert_null(usage_report(&f->s, NULL, 0, &err));
	assert_non_null(strstr(err.msg, "gpu_second[\"H100\"]"));
	put(f->dir, "prices.json", "[1]");
	assert_null(usage_report(&f->s, NULL, 0, &err));
	assert_non_null(strstr(err.msg, "JSON object"));
	/* Unreadable (a folder): an error too, and nothing leaks. */
	assert_int_equal(unlink(f->prices), 0);
	assert_int_equal(mkdir(f->prices, 0755), 0);
	assert_null(usage_report(&f->s, NULL, 0, &err));
	assert_non_null(strstr(err.msg, f->prices));
	assert_int_equal(rmdir(f->prices), 0);
	json_decref(report(f, NULL, 0)); /* and without one, the defaults again */
}

/* prices_parse on a string literal. */
#define parse(p, lit, err) prices_parse(p, lit, strlen(lit), err)

static void test_prices_lookup(void **state)
{
	prices p;
	sk_error err;
	json_t *j;

	prices_init(&p);
	assert_false(p.from_file);
	assert_near(prices_gpu_second(&p, "H100"), 0.001097, 1e-12);
	assert_near(prices_gpu_second(&p, "h100!"), 0.001097, 1e-12);
	assert_near(prices_gpu_second(&p, "A100-80GB"), 0.000694, 1e-12);
	assert_near(prices_gpu_second(&p, "A100"), 0.000583, 1e-12);
	assert_near(prices_gpu_second(&p, "T4"), 0.000164, 1e-12);
	assert_near(prices_gpu_second(&p, "L4"), 0.000222, 1e-12);
	assert_near(prices_gpu_second(&p, "any"), 0.000164, 1e-12);
	assert_near(prices_gpu_second(&p, "unheard-of"), 0.000164, 1e-12); /* as "any" */
	assert_near(prices_gpu_second(&p, NULL), 0.000164, 1e-12);
	assert_int_equal(parse(&p, "{\"gpu_second\": {\"any\": 0.5, \"X\": 2},"
					  " \"currency\": \"USD\"}", &err), 0);
	assert_true(p.from_file);
	assert_near(prices_gpu_second(&p, "x"), 2, 0);
	assert_near(prices_gpu_second(&p, "unheard-of"), 0.5, 0);
	assert_near(p.cpu_core_second, 0.0000131, 1e-12); /* untouched */
	j = prices_json(&p);
	assert_near(num(json_object_get(j, "gpu_second"), "X"), 2, 0);
	assert_string_equal(json_string_value(json_object_get(j, "currency")), "USD");
	json_decref(j);
	assert_int_equal(parse(&p, "{\"currency\": \"EUR\"}", &err), -1);
	assert_int_equal(parse(&p, "{\"gpu_second\": 3}", &err), -1);
	assert_int_equal(parse(&p, "{\"gpu_second\": {\"\": 3}}", &err), -1);
	assert_int_equal(parse(&p, "{\"cpu_core_second\": \"1\"}", &err), -1);
	prices_release(&p);
	assert_int_equal(prices_load(&p, "/nonexistent/prices.json", &err), 0);
	assert_false(p.from_file);
	prices_release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_and_function, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tick_closes_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_app_name_from_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prices_file, setup, teardown),
		cmocka_unit_test(test_prices_lookup),
	};

	return cmocka_run_group_tests_name("usage", tests, NULL, NULL);
}
