/*
 * Tests for runtime/oci: the config.json of a container and its "process"
 * object: namespaces, CPU quota, capabilities and privileges, masked and
 * read-only paths, mounts (/etc binds, extra binds), terminal settings,
 * environment defaults and the working directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/oci.h"
#include "util/xalloc.h"

static const char *const argv_sh[] = { "/bin/sh", "-c", "echo hi", NULL };

/* The default capability set of Docker and containerd (no CAP_SYS_ADMIN and the like). */
static const char *const runtime_default_caps[] = {
	"CAP_CHOWN",	  "CAP_DAC_OVERRIDE", "CAP_FSETID",	      "CAP_FOWNER",
	"CAP_MKNOD",	  "CAP_NET_RAW",      "CAP_SETGID",	      "CAP_SETUID",
	"CAP_SETFCAP",	  "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
	"CAP_KILL",	  "CAP_AUDIT_WRITE",
};

static oci_spec base_spec(void)
{
	oci_spec s = { 0 };

	s.argv = argv_sh;
	return s;
}

static json_t *config(const oci_spec *s)
{
	json_t *c = oci_config(s);
	char *text;

	assert_non_null(c);
	/* Whatever is built must also print: runc reads it from a file. */
	text = json_dumps(c, JSON_COMPACT);
	assert_non_null(text);
	free(text);
	return c;
}

static bool array_has(const json_t *a, const char *s)
{
	size_t i;
	json_t *v;

	assert_true(json_is_array(a));
	json_array_foreach(a, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return true;
	return false;
}

static const char *str_at(const json_t *j, const char *key)
{
	const json_t *v = json_object_get(j, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static json_t *path(json_t *j, const char *a, const char *b)
{
	json_t *v = json_object_get(j, a);

	return b ? json_object_get(v, b) : v;
}

static json_t *find_mount(json_t *c, const char *dest)
{
	size_t i;
	json_t *m;

	json_array_foreach(json_object_get(c, "mounts"), i, m)
		if (!strcmp(str_at(m, "destination"), dest))
			return m;
	return NULL;
}

static bool has_namespace(json_t *c, const char *type)
{
	size_t i;
	json_t *ns;

	json_array_foreach(path(c, "linux", "namespaces"), i, ns)
		if (!strcmp(str_at(ns, "type"), type))
			return true;
	return false;
}

static void test_namespaces(void **state)
{
	static const char *const always[] = { "pid", "mount", "uts", "ipc", "cgroup" };
	oci_spec s = base_spec();
	json_t *c;

	c = config(&s);
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		assert_true(has_namespace(c, always[i]));
	assert_false(has_namespace(c, "network"));
	assert_false(has_namespace(c, "user"));
	assert_int_equal(json_array_size(path(c, "linux", "namespaces")), 5);
	json_decref(c);

	s.block_network = true;
	c = config(&s);
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		assert_true(has_namespace(c, always[i]));
	assert_true(has_namespace(c, "network"));
	assert_int_equal(json_array_size(path(c, "linux", "namespaces")), 6);
	json_decref(c);
}

static void test_cpu_quota(void **state)
{
	oci_spec s = base_spec();
	json_t *c, *res;

	s.cpu = 0.5;
	c = config(&s);
	res = path(c, "linux", "resources");
	assert_int_equal(json_integer_value(path(res, "cpu", "quota")), 50000);
	assert_int_equal(json_integer_value(path(res, "cpu", "period")), 100000);
	assert_int_equal(json_integer_value(path(res, "pids", "limit")), 32768);
	json_decref(c);

	s.cpu = 2;
	c = config(&s);
	assert_int_equal(json_integer_value(path(path(c, "linux", "resources"), "cpu", "quota")),
			 200000);
	json_decref(c);

	/* A tiny share still gets the kernel's minimum quota of 1 ms. */
	s.cpu = 0.001;
	c = config(&s);
	assert_int_equal(json_integer_value(path(path(c, "linux", "resources"), "cpu", "quota")),
			 1000);
	json_decref(c);

	s.cpu = 0;
	c = config(&s);
	res = path(c, "linux", "resources");
	assert_non_null(res);
	assert_null(json_object_get(res, "cpu"));
	assert_non_null(json_object_get(res, "pids"));
	json_decref(c);
}

static void test_capabilities_and_privileges(void **state)
{
	static const char *const sets[] = { "bounding", "effective", "permitted" };
	static const char *const never[] = { "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
					     "CAP_NET_ADMIN", "CAP_SYS_RAWIO", "CAP_SYS_BOOT" };
	oci_spec s = base_spec();
	json_t *c = config(&s), *proc = json_object_get(c, "process");

	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		json_t *a = path(proc, "capabilities", sets[i]);

		assert_int_equal(json_array_size(a), ARRAY_SIZE(runtime_default_caps));
		for (size_t k = 0; k < ARRAY_SIZE(runtime_default_caps); k++)
			assert_true(array_has(a, runtime_default_caps[k]));
		for (size_t k = 0; k < ARRAY_SIZE(never); k++)
			assert_false(array_has(a, never[k]));
	}
	/* Sets a process cannot regain are not handed out at all. */
	assert_null(path(proc, "capabilities", "inheritable"));
	assert_null(path(proc, "capabilities", "ambient"));
	assert_true(json_is_true(json_object_get(proc, "noNewPrivileges")));
	assert_int_equal(json_integer_value(path(proc, "user", "uid")), 0);
	assert_int_equal(json_integer_value(path(proc, "user", "gid")), 0);
	json_decref(c);
}

static void test_masked_and_readonly_paths(void **state)
{
	static const char *const masked[] = { "/proc/kcore", "/proc/keys", "/proc/timer_list",
					      "/proc/sched_debug", "/proc/acpi", "/proc/scsi",
					      "/sys/firmware" };
	static const char *const readonly[] = { "/proc/sys", "/proc/sysrq-trigger", "/proc/bus",
						"/proc/fs", "/proc/irq" };
	oci_spec s = base_spec();
	json_t *c = config(&s);

	for (size_t i = 0; i < ARRAY_SIZE(masked); i++)
		assert_true(array_has(path(c, "linux", "maskedPaths"), masked[i]));
	for (size_t i = 0; i < ARRAY_SIZE(readonly); i++)
		assert_true(array_has(path(c, "linux", "readonlyPaths"), readonly[i]));
	json_decref(c);
}

static void test_standard_mounts(void **state)
{
	oci_spec s = base_spec();
	json_t *c = config(&s), *m;

	m = find_mount(c, "/proc");
	assert_non_null(m);
	assert_string_equal(str_at(m, "type"), "proc");
	m = find_mount(c, "/sys");
	assert_non_null(m);
	assert_true(array_has(json_object_get(m, "options"), "ro"));
	m = find_mount(c, "/sys/fs/cgroup");
	assert_non_null(m);
	assert_true(array_has(json_object_get(m, "options"), "ro"));
	m = find_mount(c, "/dev/pts");
	assert_non_null(m);
	assert_true(array_has(json_object_get(m, "options"), "newinstance"));
	assert_true(array_has(json_object_get(m, "options"), "gid=5"));
	assert_non_null(find_mount(c, "/dev"));
	assert_non_null(find_mount(c, "/dev/shm"));
	assert_non_null(find_mount(c, "/dev/mqueue"));
	assert_non_null(find_mount(c, "/tmp"));

	assert_string_equal(str_at(c, "ociVersion"), "1.0.2");
	assert_string_equal(str_at(json_object_get(c, "root"), "path"), "rootfs");
	assert_true(json_is_false(path(c, "root", "readonly")));
	assert_string_equal(str_at(c, "hostname"), "skiff");
	assert_null(path(c, "linux", "cgroupsPath"));
	json_decref(c);

	s.hostname = "sb-1234";
	s.cgroups_path = "/skiff/x/sb-1234/ctr";
	c = config(&s);
	assert_string_equal(str_at(c, "hostname"), "sb-1234");
	assert_string_equal(json_string_value(path(c, "linux", "cgroupsPath")), "/skiff/x/sb-1234/ctr");
	json_decref(c);
}

static void test_etc_binds(void **state)
{
	static const char *const names[] = { "hostname", "hosts", "resolv.conf" };
	oci_spec s = base_spec();
	json_t *c = config(&s), *m;
	size_t i;

	json_array_foreach(json_object_get(c, "mounts"), i, m)
		assert_true(strncmp(str_at(m, "destination"), "/etc/", 5));
	json_decref(c);

	s.etc_dir = "/var/lib/skiff/sb-1/etc";
	c = config(&s);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *dest = xasprintf("/etc/%s", names[i]);
		_cleanup_free_ char *src = xasprintf("/var/lib/skiff/sb-1/etc/%s", names[i]);

		m = find_mount(c, dest);
		assert_non_null(m);
		assert_string_equal(str_at(m, "type"), "bind");
		assert_string_equal(str_at(m, "source"), src);
		assert_true(array_has(json_object_get(m, "options"), "rbind"));
		assert_true(array_has(json_object_get(m, "options"), "ro"));
	}
	json_decref(c);
}

static void test_extra_mounts(void **state)
{
	const oci_mount mounts[] = {
		{ .source = "/srv/data", .destination = "/data", .readonly = true },
		{ .source = "/srv/cache", .destination = "/root/.cache", .readonly = false },
	};
	oci_spec s = base_spec();
	json_t *c, *m;

	s.mounts = mounts;
	s.n_mounts = ARRAY_SIZE(mounts);
	c = config(&s);
	m = find_mount(c, "/data");
	assert_non_null(m);
	assert_string_equal(str_at(m, "type"), "bind");
	assert_string_equal(str_at(m, "source"), "/srv/data");
	assert_true(array_has(json_object_get(m, "options"), "ro"));
	assert_true(array_has(json_object_get(m, "options"), "nosuid"));
	m = find_mount(c, "/root/.cache");
	assert_non_null(m);
	assert_false(array_has(json_object_get(m, "options"), "ro"));
	assert_true(array_has(json_object_get(m, "options"), "nodev"));
	json_decref(c);
}

static void test_terminal(void **state)
{
	oci_spec s = base_spec();
	json_t *p;

	p = oci_process(&s);
	assert_true(json_is_false(json_object_get(p, "terminal")));
	assert_null(json_object_get(p, "consoleSize"));
	assert_false(array_has(json_object_get(p, "env"), "TERM=xterm-256color"));
	json_decref(p);

	s.tty = true;
	s.rows = 24;
	s.cols = 80;
	p = oci_process(&s);
	assert_true(json_is_true(json_object_get(p, "terminal")));
	assert_int_equal(json_integer_value(path(p, "consoleSize", "height")), 24);
	assert_int_equal(json_integer_value(path(p, "consoleSize", "width")), 80);
	assert_true(array_has(json_object_get(p, "env"), "TERM=xterm-256color"));
	json_decref(p);

	/* No size known: no consoleSize. */
	s.rows = 0;
	p = oci_process(&s);
	assert_true(json_is_true(json_object_get(p, "terminal")));
	assert_null(json_object_get(p, "consoleSize"));
	json_decref(p);
}

static void test_env_defaults(void **state)
{
	const char *const given[] = { "PATH=/opt/bin", "FOO=1", "PATHOLOGY=yes", NULL };
	const char *const with_term[] = { "TERM=dumb", "HOME=/home/u", NULL };
	oci_spec s = base_spec();
	json_t *p, *env;

	p = oci_process(&s);
	env = json_object_get(p, "env");
	assert_int_equal(json_array_size(env), 2);
	assert_true(array_has(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	assert_true(array_has(env, "HOME=/root"));
	json_decref(p);

	/* A given PATH wins (PATHOLOGY is not PATH); HOME is still defaulted. */
	s.env = given;
	p = oci_process(&s);
	env = json_object_get(p, "env");
	assert_int_equal(json_array_size(env), 4);
	assert_true(array_has(env, "PATH=/opt/bin"));
	assert_true(array_has(env, "FOO=1"));
	assert_true(array_has(env, "PATHOLOGY=yes"));
	assert_true(array_has(env, "HOME=/root"));
	json_decref(p);

	/* With a terminal, a given TERM wins too. */
	s.env = with_term;
	s.tty = true;
	p = oci_process(&s);
	env = json_object_get(p, "env");
	assert_int_equal(json_array_size(env), 3);
	assert_true(array_has(env, "TERM=dumb"));
	assert_false(array_has(env, "TERM=xterm-256color"));
	assert_true(array_has(env, "HOME=/home/u"));
	assert_false(array_has(env, "HOME=/root"));
	json_decref(p);
}

static void test_args_and_cwd(void **state)
{
	oci_spec s = base_spec();
	json_t *p, *args;

	p = oci_process(&s);
	assert_string_equal(str_at(p, "cwd"), "/");
	args = json_object_get(p, "args");
	assert_int_equal(json_array_size(args), 3);
	assert_string_equal(json_string_value(json_array_get(args, 0)), "/bin/sh");
	assert_string_equal(json_string_value(json_array_get(args, 2)), "echo hi");
	json_decref(p);

	s.cwd = "/workspace";
	p = oci_process(&s);
	assert_string_equal(str_at(p, "cwd"), "/workspace");
	json_decref(p);
}

/* The config's process is exactly what oci_process gives for `runc exec`. */
static void test_process_matches_config(void **state)
{
	const char *const env[] = { "A=b", NULL };
	oci_spec s = base_spec();
	json_t *c, *p;

	s.env = env;
	s.tty = true;
	s.rows = 50;
	s.cols = 132;
	s.cwd = "/tmp";
	c = config(&s);
	p = oci_process(&s);
	assert_true(json_equal(json_object_get(c, "process"), p));
	json_decref(p);
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_namespaces),
		cmocka_unit_test(test_cpu_quota),
		cmocka_unit_test(test_capabilities_and_privileges),
		cmocka_unit_test(test_masked_and_readonly_paths),
		cmocka_unit_test(test_standard_mounts),
		cmocka_unit_test(test_etc_binds),
		cmocka_unit_test(test_extra_mounts),
		cmocka_unit_test(test_terminal),
		cmocka_unit_test(test_env_defaults),
		cmocka_unit_test(test_args_and_cwd),
		cmocka_unit_test(test_process_matches_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
