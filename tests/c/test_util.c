/*
 * Tests for src/util: sk_buf, sk_error, xalloc and the file-system helpers.
 * The mount-crossing test of sk_rm_rf needs root; it runs in a private mount
 * namespace where it can, so that a crash never leaves a mount behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

/* ---- sk_buf ---------------------------------------------------------------- */

static void test_buf_add(void **state)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_add(&b, "", 0);
	assert_non_null(b.base);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.base[0], 0);
	sk_buf_add(&b, "ab\0cd", 5); /* bytes may hold NULs */
	assert_int_equal(b.len, 5);
	assert_memory_equal(b.base, "ab\0cd", 5);
	assert_int_equal(b.base[5], 0);
	sk_buf_adds(&b, "ef");
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.base, "ab\0cdef", 8);
	/* Growth far past the first allocation keeps the contents. */
	for (int i = 0; i < 1000; i++)
		sk_buf_adds(&b, "0123456789");
	assert_int_equal(b.len, 10007);
	assert_true(b.cap > b.len);
	assert_memory_equal(b.base + 7 + 9990, "0123456789", 11);
	sk_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.base, "");
	sk_buf_release(&b);
	assert_null(b.base);
	assert_int_equal(b.cap, 0);
	sk_buf_reset(&b); /* on an empty buffer: no crash */
}

static void test_buf_addf(void **state)
{
	sk_buf b;
	char big[300];

	sk_buf_init(&b);
	sk_buf_addf(&b, "%d-%s", 42, "x");
	assert_string_equal(b.base, "42-x");
	assert_int_equal(b.len, 4);
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	sk_buf_addf(&b, "[%s]", big); /* longer than the buffer's spare room */
	assert_int_equal(b.len, 4 + 2 + 299);
	assert_int_equal(b.base[b.len], 0);
	assert_int_equal(b.base[5], 'z');
	assert_int_equal(b.base[b.len - 1], ']');
	sk_buf_addf(&b, "%s", "");
	assert_int_equal(b.len, 305);
	sk_buf_release(&b);
}

static void test_buf_consume(void **state)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_adds(&b, "hello world");
	sk_buf_consume(&b, 6);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.base, "world");
	sk_buf_consume(&b, 0);
	assert_string_equal(b.base, "world");
	sk_buf_consume(&b, 100); /* more than there is: empties */
	assert_int_equal(b.len, 0);
	assert_string_equal(b.base, "");
	sk_buf_adds(&b, "again");
	assert_string_equal(b.base, "again");
	sk_buf_release(&b);
}

static void test_buf_detach(void **state)
{
	sk_buf b = SK_BUF_INIT;
	size_t len = 99;
	char *p;

	/* Detaching an empty buffer still hands out a (empty) string. */
	p = sk_buf_detach(&b, &len);
	assert_non_null(p);
	assert_int_equal(len, 0);
	assert_string_equal(p, "");
	free(p);

	sk_buf_adds(&b, "owned");
	p = sk_buf_detach(&b, &len);
	assert_int_equal(len, 5);
	assert_string_equal(p, "owned");
	assert_null(b.base);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	free(p);
	sk_buf_adds(&b, "x");
	p = sk_buf_detach(&b, NULL);
	assert_string_equal(p, "x");
	free(p);
}

static void test_slice(void **state)
{
	sk_slice s = { "GET /x", 3 };

	assert_true(sk_slice_eq(s, "GET"));
	assert_false(sk_slice_eq(s, "GE"));
	assert_false(sk_slice_eq(s, "GET "));
	assert_true(sk_slice_eq((sk_slice){ "", 0 }, ""));
}

/* ---- sk_error ------------------------------------------------------------- */

static void test_error_set(void **state)
{
	sk_error err;

	sk_error_clear(&err);
	assert_int_equal(err.errnum, 0);
	assert_string_equal(err.msg, "");
	assert_int_equal(sk_error_set(&err, SK_ERR_INVALID, "bad %s %d", "field", 3), -1);
	assert_int_equal(err.kind, SK_ERR_INVALID);
	assert_int_equal(err.errnum, 0);
	assert_string_equal(err.msg, "bad field 3");
	assert_string_equal(sk_error_kind_name(err.kind), "invalid_argument");
	assert_string_equal(sk_error_kind_name(SK_ERR_INTERNAL), "internal");
	assert_string_equal(sk_error_kind_name(SK_ERR_NOT_FOUND), "not_found");
	assert_string_equal(sk_error_kind_name(SK_ERR_CONFLICT), "conflict");
	assert_string_equal(sk_error_kind_name(SK_ERR_RESOURCES), "resource_exhausted");
	assert_string_equal(sk_error_kind_name(SK_ERR_UNAVAILABLE), "unavailable");
}

static void test_error_errno(void **state)
{
	sk_error err;
	_cleanup_free_ char *want = NULL;

	assert_int_equal(sk_error_errno(&err, ENOENT, "open %s", "/x"), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);
	want = xasprintf("open /x: %s", strerror(ENOENT));
	assert_string_equal(err.msg, want);
	sk_error_errno(&err, EACCES, "write");
	assert_int_equal(err.kind, SK_ERR_INTERNAL);
	assert_int_equal(err.errnum, EACCES);
}

static void test_error_prefix(void **state)
{
	sk_error err;
	char longer[2000];

	sk_error_set(&err, SK_ERR_CONFLICT, "name taken");
	assert_int_equal(sk_error_prefix(&err, "creating %s", "app"), -1);
	assert_string_equal(err.msg, "creating app: name taken");
	sk_error_prefix(&err, "deploy");
	assert_string_equal(err.msg, "deploy: creating app: name taken");
	assert_int_equal(err.kind, SK_ERR_CONFLICT); /* the kind survives context */

	/* Messages longer than the buffer are cut, never overflow. */
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = 0;
	sk_error_set(&err, SK_ERR_INTERNAL, "%s", longer);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	sk_error_prefix(&err, "%s", longer);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	sk_error_errno(&err, EIO, "%s", longer);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
}

static void test_error_null(void **state)
{
	assert_int_equal(sk_error_set(NULL, SK_ERR_INVALID, "x"), -1);
	assert_int_equal(sk_error_errno(NULL, EIO, "x"), -1);
	assert_int_equal(sk_error_prefix(NULL, "x"), -1);
	sk_error_clear(NULL);
}

/* ---- xalloc ------------------------------------------------------------------ */

static void test_xalloc(void **state)
{
	_cleanup_free_ char *a = xasprintf("%s=%d", "n", 7);
	_cleanup_free_ char *b = xstrndup("abcdef", 3);
	_cleanup_free_ char *c = NULL;
	char *owner = xstrdup("moved");

	assert_string_equal(a, "n=7");
	assert_string_equal(b, "abc");
	c = steal_ptr(&owner);
	assert_null(owner);
	assert_string_equal(c, "moved");
	free(xmalloc(0));
	free(xcalloc(0, 0));
}

/* ---- fsutil ---------------------------------------------------------------- */

static char *tmpdir(void)
{
	char *t = xstrdup("/tmp/sk-utiltest-XXXXXX");

	assert_non_null(mkdtemp(t));
	return t;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void test_mkdir_p(void **state)
{
	_cleanup_free_ char *t = tmpdir();
	_cleanup_free_ char *deep = xasprintf("%s/a/b//c/d", t);
	_cleanup_free_ char *file = xasprintf("%s/f", t);
	_cleanup_free_ char *under_file = xasprintf("%s/f/x", t);
	struct stat st;
	sk_error err;

	assert_int_equal(sk_mkdir_p(deep, 0750, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(sk_mkdir_p(deep, 0750, &err), 0); /* already there */
	assert_int_equal(sk_write_file(file, "x", 1, 0644, &err), 0);
	assert_int_equal(sk_mkdir_p(under_file, 0755, &err), -1);
	assert_int_equal(err.errnum, ENOTDIR);
	assert_int_equal(sk_mkdir_p(file, 0755, NULL), 0); /* EEXIST, as for mkdir -p */
	assert_int_equal(sk_rm_rf(t, &err), 0);
}

static void test_write_read(void **state)
{
	_cleanup_free_ char *t = tmpdir();
	_cleanup_free_ char *p = xasprintf("%s/data", t);
	_cleanup_free_ char *tmp = xasprintf("%s/data.tmp.%d", t, (int)getpid());
	_cleanup_free_ char *missing = xasprintf("%s/nope/data", t);
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	sk_error err;
	static char big[100000];

	umask(022);
	assert_int_equal(sk_write_file(p, "one\0two", 7, 0640, &err), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_false(exists(tmp));
	assert_int_equal(sk_read_file(p, &text, &len, &err), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(text, "one\0two", 8); /* NUL-terminated past len */
	free(text);

	/* Overwrite replaces the whole file; an empty file reads as "". */
	assert_int_equal(sk_write_file(p, "", 0, 0640, &err), 0);
	assert_int_equal(sk_read_file(p, &text, &len, &err), 0);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);

	/* More than one read() chunk. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	assert_int_equal(sk_write_file(p, big, sizeof(big), 0600, &err), 0);
	assert_int_equal(sk_read_file(p, &text, &len, &err), 0);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(text, big, sizeof(big));
	free(text);

	assert_int_equal(sk_write_file(missing, "x", 1, 0644, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(sk_read_file(missing, &text, &len, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(err.kind, SK_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "nope/data"));
	assert_int_equal(sk_read_file(t, &text, &len, &err), -1); /* a directory */
	assert_int_equal(err.errnum, EISDIR);
	assert_int_equal(sk_rm_rf(t, &err), 0);
}

static void test_rm_rf(void **state)
{
	_cleanup_free_ char *t = tmpdir();
	_cleanup_free_ char *outside = tmpdir();
	_cleanup_free_ char *keep = xasprintf("%s/keep", outside);
	_cleanup_free_ char *tree = xasprintf("%s/tree", t);
	_cleanup_free_ char *deep = xasprintf("%s/tree/a/b/c", t);
	_cleanup_free_ char *f = xasprintf("%s/tree/a/b/c/f", t);
	_cleanup_free_ char *link = xasprintf("%s/tree/a/link", t);
	_cleanup_free_ char *file_link = xasprintf("%s/tree/flink", t);
	sk_error err;

	assert_int_equal(sk_mkdir_p(deep, 0755, &err), 0);
	assert_int_equal(sk_write_file(f, "x", 1, 0644, &err), 0);
	assert_int_equal(sk_write_file(keep, "k", 1, 0644, &err), 0);
	/* Symlinks are removed, never followed. */
	assert_int_equal(symlink(outside, link), 0);
	assert_int_equal(symlink(keep, file_link), 0);
	assert_int_equal(sk_rm_rf(tree, &err), 0);
	assert_false(exists(tree));
	assert_true(exists(keep));
	assert_int_equal(sk_rm_rf(tree, &err), 0); /* missing is fine */

	/* A plain file. */
	assert_int_equal(sk_rm_rf(keep, &err), 0);
	assert_false(exists(keep));
	assert_int_equal(sk_rm_rf(outside, &err), 0);
	assert_int_equal(sk_rm_rf(t, &err), 0);
	assert_false(exists(t));
}

/*
 * A mount inside the tree (think of a volume mounted into a container root)
 * must stop sk_rm_rf: it refuses, and what the mount shows survives.  Two
 * kinds: a tmpfs (another device, so st_dev differs) and a bind mount of a
 * directory on the same file system (same st_dev: the case that matters for
 * volumes bound from the host's disk).
 */
static void rm_rf_stops_at_mount(bool bind)
{
	_cleanup_free_ char *t = NULL, *src = NULL, *tree = NULL, *mnt = NULL;
	_cleanup_free_ char *keep = NULL, *shown = NULL, *other = NULL;
	sk_error err;
	int rc, urc;

	if (geteuid() != 0)
		skip();
	/* Private namespace where possible: the mount dies with the process. */
	if (unshare(CLONE_NEWNS) == 0)
		assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	t = tmpdir();
	src = xasprintf("%s/src", t);
	tree = xasprintf("%s/tree", t);
	mnt = xasprintf("%s/tree/sub/mnt", t);
	shown = xasprintf("%s/keep", mnt);
	other = xasprintf("%s/tree/other", t);
	assert_int_equal(sk_mkdir_p(src, 0755, &err), 0);
	assert_int_equal(sk_mkdir_p(mnt, 0755, &err), 0);
	assert_int_equal(sk_write_file(other, "o", 1, 0644, &err), 0);
	if (bind) {
		keep = xasprintf("%s/keep", src);
		assert_int_equal(sk_write_file(keep, "k", 1, 0644, &err), 0);
		rc = mount(src, mnt, NULL, MS_BIND, NULL);
	} else {
		keep = xstrdup(shown);
		rc = mount("skiff-test", mnt, "tmpfs", 0, "size=1m");
		if (rc == 0)
			assert_int_equal(sk_write_file(keep, "k", 1, 0644, &err), 0);
	}
	if (rc < 0) {
		sk_rm_rf(t, NULL);
		skip(); /* no CAP_SYS_ADMIN (e.g. in an unprivileged container) */
	}
	assert_true(exists(shown));

	rc = sk_rm_rf(tree, &err);
	if (!bind)
		assert_true(exists(keep)); /* checked before the tmpfs goes away */
	urc = umount2(mnt, MNT_DETACH); /* before any other assertion can bail out */
	assert_int_equal(urc, 0);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err.msg, "mount point"));
	if (bind)
		assert_true(exists(keep));
	assert_true(exists(mnt));
	assert_false(exists(other)); /* the rest of the tree still went */

	assert_int_equal(sk_rm_rf(tree, &err), 0);
	assert_false(exists(tree));
	assert_int_equal(sk_rm_rf(t, &err), 0);
}

static void test_rm_rf_tmpfs_mount(void **state)
{
	rm_rf_stops_at_mount(false);
}

static void test_rm_rf_bind_mount(void **state)
{
	rm_rf_stops_at_mount(true);
}

static bool all_hex(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

/* An overlayfs upper folder's kinds of entries, linked into a new tree. */
static void test_link_tree(void **state)
{
	char tmp[] = "/tmp/sk-linktree-XXXXXX";
	_cleanup_free_ char *src = NULL, *dst = NULL, *p = NULL, *q = NULL;
	struct stat a, b;
	char val[16];
	sk_error err;

	assert_non_null(mkdtemp(tmp));
	src = xasprintf("%s/src", tmp);
	dst = xasprintf("%s/dst", tmp);
	p = xasprintf("%s/etc/app", src);
	assert_int_equal(sk_mkdir_p(p, 0755, &err), 0);
	free(p);
	p = xasprintf("%s/etc/app/conf", src);
	assert_int_equal(sk_write_file(p, "x=1\n", 4, 0640, &err), 0);
	free(p);
	p = xasprintf("%s/etc/link", src);
	assert_int_equal(symlink("app/conf", p), 0);
	free(p);
	p = xasprintf("%s/etc/app", src);
	assert_int_equal(chmod(p, 0710), 0);
	bool xattrs = setxattr(p, "user.skiff", "y", 1, 0) == 0; /* tmpfs: maybe not */
	bool root = geteuid() == 0;
	if (root) { /* an overlayfs whiteout: a 0:0 character device */
		free(p);
		p = xasprintf("%s/etc/gone", src);
		assert_int_equal(mknod(p, S_IFCHR | 0000, makedev(0, 0)), 0);
	}

	assert_int_equal(sk_link_tree(src, dst, &err), 0);
	free(p);
	p = xasprintf("%s/etc/app/conf", src);
	q = xasprintf("%s/etc/app/conf", dst);
	assert_int_equal(stat(p, &a), 0);
	assert_int_equal(stat(q, &b), 0);
	assert_true(a.st_ino == b.st_ino && b.st_nlink == 2); /* a link: no data copied */
	free(q);
	q = xasprintf("%s/etc/link", dst);
	assert_int_equal(lstat(q, &b), 0);
	assert_true(S_ISLNK(b.st_mode));
	free(p), free(q);
	p = xasprintf("%s/etc/app", src);
	q = xasprintf("%s/etc/app", dst);
	assert_int_equal(stat(p, &a), 0);
	assert_int_equal(stat(q, &b), 0);
	assert_true(a.st_ino != b.st_ino);                     /* folders are new... */
	assert_int_equal(b.st_mode & 07777, 0710);             /* ...with src's mode */
	assert_int_equal(b.st_mtim.tv_sec, a.st_mtim.tv_sec);
	if (xattrs) {
		assert_int_equal(getxattr(q, "user.skiff", val, sizeof(val)), 1);
		assert_int_equal(val[0], 'y');
	}
	if (root) {
		free(q);
		q = xasprintf("%s/etc/gone", dst);
		assert_int_equal(lstat(q, &b), 0);
		assert_true(S_ISCHR(b.st_mode) && b.st_rdev == makedev(0, 0));
	}
	/* dst must be new. */
	assert_int_equal(sk_link_tree(src, dst, &err), -1);
	assert_int_equal(sk_rm_rf(tmp, &err), 0);
}

static void test_random_hex(void **state)
{
	char a[33], b[33], c[1], big[129 + 16];

	sk_random_hex(a, 16);
	sk_random_hex(b, 16);
	assert_int_equal(strlen(a), 32);
	assert_true(all_hex(a));
	assert_string_not_equal(a, b);
	sk_random_hex(c, 0);
	assert_string_equal(c, "");
	/* Asking for more than 64 bytes gives 64 (128 digits). */
	sk_random_hex(big, 70);
	assert_int_equal(strlen(big), 128);
	assert_true(all_hex(big));
}

static void test_clock(void **state)
{
	unsigned long long t0 = sk_now_ns(), t1 = sk_now_ns();

	assert_true(t1 >= t0);
	assert_true(sk_wall_time() > 1.6e9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_add),
		cmocka_unit_test(test_link_tree),
		cmocka_unit_test(test_buf_addf),
		cmocka_unit_test(test_buf_consume),
		cmocka_unit_test(test_buf_detach),
		cmocka_unit_test(test_slice),
		cmocka_unit_test(test_error_set),
		cmocka_unit_test(test_error_errno),
		cmocka_unit_test(test_error_prefix),
		cmocka_unit_test(test_error_null),
		cmocka_unit_test(test_xalloc),
		cmocka_unit_test(test_mkdir_p),
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_rm_rf),
		cmocka_unit_test(test_rm_rf_tmpfs_mount),
		cmocka_unit_test(test_rm_rf_bind_mount),
		cmocka_unit_test(test_random_hex),
		cmocka_unit_test(test_clock),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
