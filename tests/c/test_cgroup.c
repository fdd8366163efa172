/*
 * Tests for runtime/cgroup: mountinfo parsing from samples, the v2 file logic
 * against a temporary tree made to look like a cgroup2 mount, and (as root,
 * with a writable memory hierarchy; skipped otherwise) real boxes: an OOM kill
 * is seen after the runtime's own cgroup is gone, leftovers are killed and no
 * directory stays behind in any hierarchy.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/cgroup.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

#define MiB (1024LL * 1024)

/* ---- mountinfo samples ---------------------------------------------------- */

/* CentOS 7 style: combined cpu,cpuacct; a second mount of the memory hierarchy
 * (same 0:26) is skipped; an escaped mount point; a short garbage line. */
static const char v1_sample[] =
	"18 62 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw,seclabel\n"
	"25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755\n"
	"26 25 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup "
	"cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd\n"
	"29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - "
	"cgroup cgroup rw,cpuacct,cpu\n"
	"30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup "
	"cgroup rw,memory\n"
	"31 25 0:27 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup "
	"cgroup rw,pids\n"
	"32 25 0:26 / /mnt/memory\\040again rw,relatime - cgroup cgroup rw,memory\n"
	"33 25 0:28 / /mnt/my\\040cg rw,relatime - cgroup cgroup rw,noprefix,cpuset\n"
	"garbage line\n";

/* This machine (Debian 12, kernel 6.18): v1 controllers plus an empty cgroup2. */
static const char hybrid_sample[] =
	"22 1 259:1 / / rw,relatime - ext4 /dev/root rw\n"
	"31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
	"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	"33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
	"34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
	"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	"36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
	"37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
	"38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
	"39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
	"40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
	"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

/* Debian 12 / Ubuntu 22.04 default: pure v2 (a second cgroup2 mount is ignored). */
static const char v2_sample[] =
	"22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw,discard\n"
	"26 22 0:24 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
	"30 26 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 "
	"cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	"99 22 0:26 /system.slice /run/other rw - cgroup2 cgroup2 rw\n";

static void test_parse_v1(void **state)
{
	cg_host h;
	sk_error err;

	assert_int_equal(cg_parse_mountinfo(v1_sample, "inst1", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_V1);
	assert_string_equal(cg_mode_name(h.mode), "v1");
	assert_null(h.unified);
	assert_int_equal(h.n_v1, 5);
	assert_string_equal(h.v1_mounts[0], "/sys/fs/cgroup/systemd");
	assert_string_equal(h.v1_mounts[1], "/sys/fs/cgroup/cpu,cpuacct");
	assert_string_equal(h.v1_mounts[2], "/sys/fs/cgroup/memory");
	assert_string_equal(h.v1_mounts[3], "/sys/fs/cgroup/pids");
	assert_string_equal(h.v1_mounts[4], "/mnt/my cg");
	assert_string_equal(h.memory_v1, "/sys/fs/cgroup/memory");
	assert_string_equal(h.cpuacct_v1, "/sys/fs/cgroup/cpu,cpuacct");
	assert_string_equal(h.base, "skiff/inst1");
	cg_host_release(&h);
	assert_null(h.base);
}

static void test_parse_hybrid(void **state)
{
	cg_host h;
	sk_error err;
	static const char *const names[] = { "cpu", "cpuacct", "cpuset", "memory", "devices",
					     "freezer", "blkio", "pids", "systemd" };

	assert_int_equal(cg_parse_mountinfo(hybrid_sample, "test", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_HYBRID);
	assert_string_equal(cg_mode_name(h.mode), "v1-hybrid");
	assert_string_equal(h.unified, "/sys/fs/cgroup/unified");
	assert_string_equal(h.memory_v1, "/sys/fs/cgroup/memory");
	assert_string_equal(h.cpuacct_v1, "/sys/fs/cgroup/cpuacct");
	assert_int_equal(h.n_v1, ARRAY_SIZE(names));
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		_cleanup_free_ char *want = xasprintf("/sys/fs/cgroup/%s", names[i]);
		assert_string_equal(h.v1_mounts[i], want);
	}
	assert_string_equal(h.base, "skiff/test");
	cg_host_release(&h);
}

static void test_parse_v2(void **state)
{
	cg_host h;
	sk_error err;
	_cleanup_free_ char *with_systemd = NULL;

	assert_int_equal(cg_parse_mountinfo(v2_sample, "a.b-c_1", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_V2);
	assert_string_equal(cg_mode_name(h.mode), "v2");
	assert_string_equal(h.unified, "/sys/fs/cgroup");
	assert_int_equal(h.n_v1, 0);
	assert_null(h.memory_v1);
	assert_null(h.cpuacct_v1);
	assert_string_equal(h.base, "skiff/a.b-c_1");
	cg_host_release(&h);

	/* A lone name=systemd v1 hierarchy next to a full cgroup2: still v2, and the
	 * v1 hierarchy is listed so that its leftovers get cleaned. */
	with_systemd = xasprintf("%s%s", v2_sample,
				 "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup "
				 "rw,name=systemd\n");
	assert_int_equal(cg_parse_mountinfo(with_systemd, "x", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_V2);
	assert_int_equal(h.n_v1, 1);
	assert_null(h.memory_v1);
	cg_host_release(&h);
}

static void test_parse_errors(void **state)
{
	cg_host h;
	sk_error err;

	sk_error_clear(&err);
	assert_int_equal(cg_parse_mountinfo("22 1 259:1 / / rw - ext4 /dev/root rw\n", "i", &h,
					    &err), -1);
	assert_int_equal(err.kind, SK_ERR_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "no cgroup"));
	assert_null(h.base);
	assert_int_equal(cg_parse_mountinfo("", "i", &h, &err), -1);
	/* Only name=systemd: nowhere to put a memory limit. */
	assert_int_equal(cg_parse_mountinfo("40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup "
					    "cgroup rw,name=systemd\n", "i", &h, &err), -1);
	assert_int_equal(h.n_v1, 0);
	assert_int_equal(cg_parse_mountinfo(v2_sample, "a/b", &h, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);
	assert_int_equal(cg_parse_mountinfo(v2_sample, "..", &h, &err), -1);
	assert_int_equal(cg_parse_mountinfo(v2_sample, "", &h, &err), -1);
	assert_int_equal(cg_parse_mountinfo("", "i", &h, NULL), -1);
}

static void test_detect(void **state)
{
	cg_host h;
	sk_error err;

	if (cg_detect("detect", &h, &err) < 0)
		skip(); /* no cgroup file system here */
	assert_non_null(h.mode == CG_MODE_V2 ? h.unified : h.memory_v1);
	cg_host_release(&h);
}

/* ---- v2 file logic on a fake tree ----------------------------------------- */

static void put(const char *dir, const char *file, const char *text)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, file);
	sk_error err;

	assert_int_equal(sk_write_file(p, text, strlen(text), 0644, &err), 0);
}

static void drop(const char *dir, const char *file)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, file);

	assert_int_equal(unlink(p), 0);
}

static char *get(const char *dir, const char *file)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, file);
	char *text = NULL;

	assert_int_equal(sk_read_file(p, &text, NULL, NULL), 0);
	return text;
}

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void test_fake_v2(void **state)
{
	char tmp[] = "/tmp/sk-cgtest-XXXXXX";
	_cleanup_free_ char *cg = NULL, *top = NULL, *inst = NULL, *mi = NULL, *box = NULL;
	cg_host h;
	cg_box b, b2;
	sk_error err;

	assert_non_null(mkdtemp(tmp));
	cg = xasprintf("%s/cg", tmp);
	top = xasprintf("%s/skiff", cg);
	inst = xasprintf("%s/t", top);
	assert_int_equal(sk_mkdir_p(inst, 0755, &err), 0);
	put(cg, "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
	put(cg, "cgroup.subtree_control", "cpu\n");
	put(top, "cgroup.controllers", "cpu io memory pids\n");
	put(top, "cgroup.subtree_control", "");
	put(inst, "cgroup.controllers", "cpu pids\n"); /* memory not offered here */
	put(inst, "cgroup.subtree_control", "");
	mi = xasprintf("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
		       "30 1 0:26 / %s rw,nosuid - cgroup2 cgroup2 rw\n", cg);
	assert_int_equal(cg_parse_mountinfo(mi, "t", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_V2);
	assert_string_equal(h.unified, cg);

	assert_int_equal(cg_box_create(&h, "box1", 0, &b, &err), 0);
	assert_string_equal(b.rel, "skiff/t/box1");
	assert_string_equal(b.ctr_path, "/skiff/t/box1/ctr");
	assert_int_equal(b.oom_efd, -1);
	box = xasprintf("%s/box1", inst);
	assert_true(exists(box));
	{
		_cleanup_free_ char *a = get(cg, "cgroup.subtree_control");
		_cleanup_free_ char *c = get(top, "cgroup.subtree_control");
		_cleanup_free_ char *d = get(inst, "cgroup.subtree_control");
		assert_string_equal(a, "+memory +pids"); /* cpu was already on */
		assert_string_equal(c, "+memory +cpu +pids");
		assert_string_equal(d, "+cpu +pids");
	}

	/* Out-of-memory and peak come from the box's hierarchical files. */
	assert_false(cg_box_oom(&h, &b));
	assert_int_equal(cg_box_peak_memory(&h, &b), 0);
	put(box, "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n");
	assert_false(cg_box_oom(&h, &b));
	put(box, "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\noom_group_kill 0\n");
	assert_true(cg_box_oom(&h, &b));
	assert_true(cg_box_oom(&h, &b));
	put(box, "memory.peak", "123456789\n");
	assert_int_equal(cg_box_peak_memory(&h, &b), 123456789);

	/* CPU used: usage_usec of the box's cpu.stat (hierarchical, ctr included). */
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 0);
	put(box, "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 1500000);
	drop(box, "cpu.stat");

	/* Same id again: a conflict, and the existing box is left alone. */
	assert_int_equal(cg_box_create(&h, "box1", 0, &b2, &err), -1);
	assert_int_equal(err.kind, SK_ERR_CONFLICT);
	assert_null(b2.rel);
	assert_true(exists(box));
	assert_int_equal(cg_box_create(&h, "../x", 0, &b2, &err), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);

	/* A process no runtime started (a snapshot's fork) goes into box/ctr (the
	 * box itself has controllers on for its children), with its cpu quota. */
	{
		_cleanup_free_ char *ctr = xasprintf("%s/ctr", box);
		assert_int_equal(sk_mkdir_p(ctr, 0755, &err), 0);
		put(ctr, "cgroup.procs", "");
		put(ctr, "cpu.max", "max 100000\n");
		put(ctr, "pids.max", "max\n");
		assert_int_equal(cg_box_attach(&h, &b, 4242, 0.5, &err), 0);
		_cleanup_free_ char *procs = get(ctr, "cgroup.procs");
		_cleanup_free_ char *cpu = get(ctr, "cpu.max");
		_cleanup_free_ char *pids = get(ctr, "pids.max");
		assert_string_equal(procs, "4242");
		assert_string_equal(cpu, "50000 100000");
		assert_string_equal(pids, "32768");
		/* Priming moves the first process of ctr into ctr again. */
		put(ctr, "cgroup.procs", "77\n88\n");
		cg_box_prime(&h, &b);
		_cleanup_free_ char *again = get(ctr, "cgroup.procs");
		assert_string_equal(again, "77");
		drop(ctr, "cgroup.procs");
		drop(ctr, "cpu.max");
		drop(ctr, "pids.max");
		assert_int_equal(rmdir(ctr), 0);
	}

	/* Destroy removes the box and what the runtime left below it. */
	drop(box, "memory.events");
	drop(box, "memory.peak");
	{
		_cleanup_free_ char *ctr = xasprintf("%s/ctr/sub", box);
		assert_int_equal(sk_mkdir_p(ctr, 0755, &err), 0);
	}
	assert_int_equal(cg_box_destroy(&h, &b, &err), 0);
	assert_null(b.rel);
	assert_false(exists(box));
	assert_int_equal(cg_box_destroy(&h, &b, &err), 0); /* idempotent */

	/* A limit where memory.max does not exist: a clear error, nothing left. */
	assert_int_equal(cg_box_create(&h, "box3", 32 * MiB, &b2, &err), -1);
	assert_int_equal(err.kind, SK_ERR_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "memory controller"));
	{
		_cleanup_free_ char *p = xasprintf("%s/box3", inst);
		assert_false(exists(p));
	}

	/* Sweep: two boxes after a "crash"; base goes, shared "skiff" stays. */
	assert_int_equal(cg_box_create(&h, "s1", 0, &b, &err), 0);
	assert_int_equal(cg_box_create(&h, "s2", 0, &b2, &err), 0);
	{
		_cleanup_free_ char *ctr = xasprintf("%s/s1/ctr", inst);
		assert_int_equal(mkdir(ctr, 0755), 0);
	}
	free(b.rel), free(b.ctr_path), free(b2.rel), free(b2.ctr_path);
	/* Real cgroup directories hold only kernel files, which rmdir ignores. */
	drop(inst, "cgroup.controllers");
	drop(inst, "cgroup.subtree_control");
	assert_int_equal(cg_sweep(&h, &err), 2);
	assert_false(exists(inst));
	assert_true(exists(top));
	assert_int_equal(cg_sweep(&h, &err), 0);

	cg_host_release(&h);
	assert_int_equal(sk_rm_rf(tmp, &err), 0);
}

/* v1: CPU time comes from the cpuacct hierarchy, which is not the box's own. */
static void test_fake_v1_cpu(void **state)
{
	char tmp[] = "/tmp/sk-cgtest-XXXXXX";
	_cleanup_free_ char *mi = NULL, *acct = NULL, *ctr = NULL;
	cg_host h;
	cg_box b = { .rel = "skiff/t/box1", .ctr_path = "/skiff/t/box1/ctr", .oom_efd = -1 };
	cg_box none = { .rel = NULL, .oom_efd = -1 };
	sk_error err;

	assert_non_null(mkdtemp(tmp));
	mi = xasprintf("30 1 0:26 / %s/memory rw - cgroup cgroup rw,memory\n"
		       "31 1 0:27 / %s/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n", tmp, tmp);
	assert_int_equal(cg_parse_mountinfo(mi, "t", &h, &err), 0);
	assert_int_equal(h.mode, CG_MODE_V1);
	acct = xasprintf("%s/cpu,cpuacct/skiff/t/box1", tmp);
	ctr = xasprintf("%s/ctr", acct);
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 0); /* nothing there yet */
	assert_int_equal(cg_box_cpu_usage_ns(&h, &none), 0);
	assert_int_equal(sk_mkdir_p(ctr, 0755, &err), 0);
	put(ctr, "cpuacct.usage", "700\n");
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 700); /* only ctr has a counter */
	put(acct, "cpuacct.usage", "900\n");
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 900); /* the box's includes ctr's */
	drop(ctr, "cpuacct.usage");
	assert_int_equal(rmdir(ctr), 0); /* the runtime removed ctr: the box still counts */
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 900);
	put(acct, "cpuacct.usage", "garbage\n");
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 0);

	/* No cpuacct hierarchy at all: unknown. */
	cg_host_release(&h);
	mi = (free(mi), xasprintf("30 1 0:26 / %s/memory rw - cgroup cgroup rw,memory\n", tmp));
	assert_int_equal(cg_parse_mountinfo(mi, "t", &h, &err), 0);
	assert_null(h.cpuacct_v1);
	assert_int_equal(cg_box_cpu_usage_ns(&h, &b), 0);
	cg_host_release(&h);
	assert_int_equal(sk_rm_rf(tmp, &err), 0);
}

/* ---- real boxes (root only) ----------------------------------------------- */

static cg_host real;
static bool real_ok;
/* Children that may outlive a failed assertion; teardown kills them. */
static pid_t children[16];
static size_t n_children;

static void track(pid_t pid)
{
	if (n_children < ARRAY_SIZE(children))
		children[n_children++] = pid;
}

/* waitpid for a tracked child, forgetting it. */
static void reap(pid_t pid, int *status)
{
	assert_int_equal(waitpid(pid, status, 0), pid);
	for (size_t i = 0; i < n_children; i++)
		if (children[i] == pid)
			children[i] = 0;
}

static int real_setup(void **state)
{
	_cleanup_free_ char *inst = xasprintf("test-%d", (int)getpid());
	const char *root;

	real_ok = false;
	if (geteuid() != 0 || cg_detect(inst, &real, NULL) < 0)
		return 0;
	root = real.mode == CG_MODE_V2 ? real.unified : real.memory_v1;
	if (access(root, W_OK) < 0)
		return 0;
	if (real.mode == CG_MODE_V2) {
		_cleanup_free_ char *p = xasprintf("%s/cgroup.controllers", root);
		_cleanup_free_ char *c = NULL;
		if (sk_read_file(p, &c, NULL, NULL) < 0 || !strstr(c, "memory"))
			return 0;
	}
	real_ok = true;
	return 0;
}

static int real_teardown(void **state)
{
	for (size_t i = 0; i < n_children; i++)
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
		}
	if (real_ok)
		cg_sweep(&real, NULL);
	cg_host_release(&real);
	return 0;
}

static const char *real_roots(size_t i)
{
	if (real.unified && i == 0)
		return real.unified;
	i -= real.unified ? 1 : 0;
	return i < real.n_v1 ? real.v1_mounts[i] : NULL;
}

/* What runc does with cgroupsPath: mkdir -p in every hierarchy. */
static void runc_mkdirs(const cg_box *b)
{
	const char *root;
	sk_error err;

	for (size_t i = 0; (root = real_roots(i)); i++) {
		_cleanup_free_ char *p = xasprintf("%s%s", root, b->ctr_path);
		assert_int_equal(sk_mkdir_p(p, 0755, &err), 0);
	}
}

/* ...and removes only the leaf when the container ends. */
static void runc_rmdirs(const cg_box *b)
{
	const char *root;

	for (size_t i = 0; (root = real_roots(i)); i++) {
		_cleanup_free_ char *p = xasprintf("%s%s", root, b->ctr_path);
		assert_true(rmdir(p) == 0 || errno == ENOENT);
	}
}

static void assert_gone(const char *rel)
{
	const char *root;

	for (size_t i = 0; (root = real_roots(i)); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
		if (exists(p))
			fail_msg("%s is still there", p);
	}
}

/* In the child: joins ctr in the memory hierarchy (v1) or the unified one, and
 * in hybrid mode in the unified one too when also_unified. */
static int join_ctr(const cg_box *b, bool also_unified)
{
	const char *roots[2] = { real.mode == CG_MODE_V2 ? real.unified : real.memory_v1,
				 real.mode == CG_MODE_HYBRID && also_unified ? real.unified : NULL };

	for (size_t i = 0; i < 2 && roots[i]; i++) {
		char path[4096];
		int fd;

		snprintf(path, sizeof(path), "%s%s/cgroup.procs", roots[i], b->ctr_path);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			return -1;
		close(fd);
	}
	return 0;
}

/* Forks a child in ctr that allocates and touches bytes, then exits 0. */
static pid_t spawn_alloc(const cg_box *b, size_t bytes)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		char *p;

		if (join_ctr(b, true) < 0)
			_exit(100);
		p = malloc(bytes);
		if (!p)
			_exit(101);
		for (size_t i = 0; i < bytes; i += 4096)
			p[i] = 1;
		_exit(p[bytes / 2] == 1 ? 0 : 102);
	}
	track(pid);
	return pid;
}

/* Forks a child that joins ctr and sleeps; returns once it has joined. */
static pid_t spawn_sleeper(const cg_box *b, bool also_unified)
{
	int fds[2];
	char c = 0;
	pid_t pid;

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		c = join_ctr(b, also_unified) == 0 ? 'y' : 'n';
		if (write(fds[1], &c, 1) != 1)
			_exit(1);
		alarm(60); /* never outlive a test run that went wrong */
		for (;;)
			pause();
	}
	track(pid);
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	close(fds[0]);
	assert_int_equal(c, 'y');
	return pid;
}

static void test_real_oom(void **state)
{
	cg_box b;
	sk_error err;
	int status;
	_cleanup_free_ char *rel = NULL;

	if (!real_ok)
		skip();
	assert_int_equal(cg_box_create(&real, "oom", 32 * MiB, &b, &err), 0);
	rel = xstrdup(b.rel);
	runc_mkdirs(&b);
	pid_t pid = spawn_alloc(&b, 256 * MiB);
	reap(pid, &status);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_true(cg_box_oom(&real, &b));
	if (real.mode != CG_MODE_V2)
		assert_true(cg_box_peak_memory(&real, &b) >= 16 * MiB);
	runc_rmdirs(&b);
	assert_true(cg_box_oom(&real, &b)); /* still known with ctr gone */
	assert_int_equal(cg_box_destroy(&real, &b, &err), 0);
	assert_null(b.rel);
	assert_int_equal(b.oom_efd, -1);
	assert_gone(rel);
}

static void test_real_no_oom(void **state)
{
	cg_box b;
	sk_error err;
	int status;
	_cleanup_free_ char *rel = NULL;

	if (!real_ok)
		skip();
	assert_int_equal(cg_box_create(&real, "fine", 32 * MiB, &b, &err), 0);
	rel = xstrdup(b.rel);
	runc_mkdirs(&b);
	pid_t pid = spawn_alloc(&b, 1 * MiB);
	reap(pid, &status);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_false(cg_box_oom(&real, &b));
	runc_rmdirs(&b);
	assert_false(cg_box_oom(&real, &b));
	assert_int_equal(cg_box_destroy(&real, &b, &err), 0);
	assert_gone(rel);
}

/* The cgroup where the runtime would account CPU: ctr in cpuacct (v1) or unified (v2). */
static char *cpu_ctr(const cg_box *b)
{
	const char *root = real.mode == CG_MODE_V2 ? real.unified : real.cpuacct_v1;

	return root ? xasprintf("%s%s", root, b->ctr_path) : NULL;
}

/* Forks a child that joins ctr's CPU cgroup, burns about ms of CPU, and exits. */
static pid_t spawn_burner(const cg_box *b, long ms)
{
	_cleanup_free_ char *dir = cpu_ctr(b);
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		char path[4096];
		struct timespec t0, t;
		int fd;

		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1)
			_exit(100);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
		do
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
		while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
		_exit(0);
	}
	track(pid);
	return pid;
}

static void test_real_cpu_usage(void **state)
{
	cg_box b;
	sk_error err;
	int status;
	_cleanup_free_ char *dir = NULL;
	long long used;

	if (!real_ok || (real.mode != CG_MODE_V2 && !real.cpuacct_v1))
		skip();
	assert_int_equal(cg_box_create(&real, "cpu", 0, &b, &err), 0);
	runc_mkdirs(&b);
	assert_true(cg_box_cpu_usage_ns(&real, &b) < 50 * 1000000LL);
	pid_t pid = spawn_burner(&b, 200);
	reap(pid, &status);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	used = cg_box_cpu_usage_ns(&real, &b);
	assert_true(used >= 190 * 1000000LL);
	assert_true(used < 5000 * 1000000LL);
	/* With ctr gone (the runtime removes it at the end) the box still knows. */
	runc_rmdirs(&b);
	dir = cpu_ctr(&b);
	assert_false(exists(dir));
	assert_true(cg_box_cpu_usage_ns(&real, &b) >= used);
	assert_int_equal(cg_box_destroy(&real, &b, &err), 0);
}

static void test_real_destroy_kills(void **state)
{
	cg_box b;
	sk_error err;
	int status;
	_cleanup_free_ char *rel = NULL;

	if (!real_ok)
		skip();
	assert_int_equal(cg_box_create(&real, "live", 0, &b, &err), 0);
	rel = xstrdup(b.rel);
	runc_mkdirs(&b);
	pid_t pid = spawn_sleeper(&b, true);
	assert_int_equal(cg_box_destroy(&real, &b, &err), 0);
	reap(pid, &status);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_gone(rel);
}

/* The line of /proc/<pid>/cgroup for the hierarchy whose controllers include ctl ("" for v2). */
static char *cgroup_of(pid_t pid, const char *ctl)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/cgroup", (int)pid);
	_cleanup_free_ char *text = NULL;
	char *save = NULL;

	if (sk_read_file(path, &text, NULL, NULL) < 0)
		return NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = 0;
		_cleanup_free_ char *ctls = xstrdup(c1 + 1);
		char *s2 = NULL;
		for (char *t = strtok_r(ctls, ",", &s2); t; t = strtok_r(NULL, ",", &s2))
			if (!strcmp(t, ctl))
				return xstrdup(c2 + 1);
		if (!*ctl && !c1[1])
			return xstrdup(c2 + 1);
	}
	return NULL;
}

/* A process no runtime started (a snapshot's fork) moved into a box: it is held
 * to the box's memory limit, gets the cpu quota, and stays in the groups the
 * box does not manage (v1 devices). */
static void test_real_attach(void **state)
{
	cg_box b;
	sk_error err;
	int status, fds[2];
	char c = 0;
	pid_t pid;

	if (!real_ok)
		skip();
	assert_int_equal(cg_box_create(&real, "adopt", 32 * MiB, &b, &err), 0);
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* waits to be moved, then allocates past the limit */
		if (read(fds[0], &c, 1) != 1)
			_exit(100);
		char *p = malloc(256 * MiB);
		for (size_t i = 0; p && i < 256 * MiB; i += 4096)
			p[i] = 1;
		_exit(0);
	}
	track(pid);
	close(fds[0]);
	_cleanup_free_ char *devices_before = cgroup_of(pid, "devices");
	assert_int_equal(cg_box_attach(&real, &b, pid, 0.5, &err), 0);
	/* Priming (a no-op move of a process of the box's ctr) leaves it where it is. */
	if (real.mode == CG_MODE_V2)
		cg_box_prime(&real, &b);
	_cleanup_free_ char *mem = cgroup_of(pid, real.mode == CG_MODE_V2 ? "" : "memory");
	_cleanup_free_ char *want = xasprintf("/%s%s", b.rel, real.mode == CG_MODE_V2 ? "/ctr" : "");
	assert_non_null(mem);
	assert_string_equal(mem, want);
	if (real.mode != CG_MODE_V2) {
		_cleanup_free_ char *devices_after = cgroup_of(pid, "devices");
		if (devices_before)
			assert_string_equal(devices_after, devices_before);
		_cleanup_free_ char *cpu = cgroup_of(pid, "cpu");
		if (cpu)
			assert_string_equal(cpu, want);
	}
	assert_int_equal(write(fds[1], "go", 1), 1);
	close(fds[1]);
	reap(pid, &status);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_true(cg_box_oom(&real, &b));
	assert_int_equal(cg_box_destroy(&real, &b, &err), 0);
}

static void test_real_sweep(void **state)
{
	cg_box b1, b2;
	sk_error err;
	int status;

	if (!real_ok)
		skip();
	assert_int_equal(cg_box_create(&real, "crash1", 64 * MiB, &b1, &err), 0);
	assert_int_equal(cg_box_create(&real, "crash2", 0, &b2, &err), 0);
	runc_mkdirs(&b1);
	/* Only in the box's own hierarchy: on hybrid hosts this takes the
	 * pid-by-pid path, since the unified ctr is empty. */
	pid_t pid = spawn_sleeper(&b1, false);
	/* The "crash": the server forgets both boxes without destroying them. */
	if (b1.oom_efd >= 0)
		close(b1.oom_efd);
	if (b2.oom_efd >= 0)
		close(b2.oom_efd);
	free(b1.rel), free(b1.ctr_path), free(b2.rel), free(b2.ctr_path);

	assert_int_equal(cg_sweep(&real, &err), 2);
	reap(pid, &status);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_gone(real.base);
	assert_int_equal(cg_sweep(&real, &err), 0);
}

int main(void)
{
	const struct CMUnitTest parse[] = {
		cmocka_unit_test(test_parse_v1),
		cmocka_unit_test(test_parse_hybrid),
		cmocka_unit_test(test_parse_v2),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_fake_v2),
		cmocka_unit_test(test_fake_v1_cpu),
	};
	const struct CMUnitTest real_tests[] = {
		cmocka_unit_test(test_real_oom),
		cmocka_unit_test(test_real_no_oom),
		cmocka_unit_test(test_real_cpu_usage),
		cmocka_unit_test(test_real_destroy_kills),
		cmocka_unit_test(test_real_attach),
		cmocka_unit_test(test_real_sweep),
	};
	int rc = cmocka_run_group_tests_name("cgroup_parse", parse, NULL, NULL);

	return rc | cmocka_run_group_tests_name("cgroup_real", real_tests, real_setup,
						 real_teardown);
}
