#include "util/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/xalloc.h"

int sk_mkdir_p(const char *path, mode_t mode, sk_error *err)
{
	_cleanup_free_ char *p = NULL;

	if (!path || !*path)
		return sk_error_set(err, SK_ERR_INVALID, "cannot create a folder with an empty path");
	p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, mode) < 0 && errno != EEXIST)
			return sk_error_errno(err, errno, "cannot create %s", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return sk_error_errno(err, errno, "cannot create %s", p);
	return 0;
}

/* Depth-first removal relative to a directory fd; refuses to cross mounts. */
static int rm_at(int dfd, const char *name, dev_t dev, bool top, sk_error *err)
{
	struct stat st;
	struct statx stx;
	int fd;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "stat %s", name);
	if (!S_ISDIR(st.st_mode)) {
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			return sk_error_errno(err, errno, "unlink %s", name);
		return 0;
	}
	/* A bind mount of the same device has the same st_dev: ask statx too. */
	if (st.st_dev != dev ||
	    (!top && statx(dfd, name, AT_SYMLINK_NOFOLLOW, 0, &stx) == 0 &&
	     (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	     (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)))
		return sk_error_set(err, SK_ERR_INTERNAL, "%s is a mount point; not removing", name);
	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return sk_error_errno(err, errno, "open %s", name);
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return sk_error_errno(err, errno, "opendir %s", name);
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (rm_at(dirfd(d), de->d_name, dev, false, err) < 0)
			rc = -1;
	}
	closedir(d);
	if (rc < 0)
		return rc;
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return sk_error_errno(err, errno, "rmdir %s", name);
	return 0;
}

int sk_rm_rf(const char *path, sk_error *err)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "stat %s", path);
	return rm_at(AT_FDCWD, path, st.st_dev, true, err);
}

/* Copies the extended attributes of the directory sfd onto dfd. */
static int copy_xattrs(int sfd, int dfd, const char *shown, sk_error *err)
{
	char names[4096], value[4096];
	ssize_t n = flistxattr(sfd, names, sizeof(names));

	if (n < 0)
		return errno == ENOTSUP ? 0 : sk_error_errno(err, errno, "listxattr %s", shown);
	for (char *k = names; k < names + n; k += strlen(k) + 1) {
		ssize_t v = fgetxattr(sfd, k, value, sizeof(value));
		if (v < 0 || fsetxattr(dfd, k, value, (size_t)v, 0) < 0)
			return sk_error_errno(err, errno, "copying %s of %s", k, shown);
	}
	return 0;
}

/* The directory sfd's entries into the (new, empty) directory dfd. */
static int link_dir(int sfd, int dfd, const char *shown, sk_error *err)
{
	DIR *d = fdopendir(dup(sfd));
	struct dirent *de;
	int rc = 0;

	if (!d)
		return sk_error_errno(err, errno, "opendir %s", shown);
	while (rc == 0 && (de = readdir(d))) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(sfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = sk_error_errno(err, errno, "stat %s/%s", shown, de->d_name);
			break;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (linkat(sfd, de->d_name, dfd, de->d_name, 0) < 0)
				rc = sk_error_errno(err, errno, "link %s/%s", shown, de->d_name);
			continue;
		}
		_cleanup_free_ char *sub = xasprintf("%s/%s", shown, de->d_name);
		int s2 = -1, d2 = -1;
		if (mkdirat(dfd, de->d_name, 0700) < 0 ||
		    (s2 = openat(sfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    (d2 = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			rc = sk_error_errno(err, errno, "copying the folder %s", sub);
		} else {
			rc = link_dir(s2, d2, sub, err);
			if (rc == 0)
				rc = copy_xattrs(s2, d2, sub, err);
			if (rc == 0 && (fchown(d2, st.st_uid, st.st_gid) < 0 ||
					fchmod(d2, st.st_mode & 07777) < 0 ||
					futimens(d2, (struct timespec[]){ st.st_atim, st.st_mtim }) < 0))
				rc = sk_error_errno(err, errno, "setting the attributes of %s", sub);
		}
		if (s2 >= 0)
			close(s2);
		if (d2 >= 0)
			close(d2);
	}
	closedir(d);
	return rc;
}

int sk_link_tree(const char *src, const char *dst, sk_error *err)
{
	_cleanup_close_ int sfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_close_ int dfd = -1;
	struct stat st;

	if (sfd < 0 || fstat(sfd, &st) < 0)
		return sk_error_errno(err, errno, "cannot open %s", src);
	if (mkdir(dst, 0700) < 0)
		return sk_error_errno(err, errno, "cannot make %s", dst);
	dfd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return sk_error_errno(err, errno, "cannot open %s", dst);
	if (link_dir(sfd, dfd, src, err) < 0 || copy_xattrs(sfd, dfd, src, err) < 0)
		return -1;
	if (fchown(dfd, st.st_uid, st.st_gid) < 0 || fchmod(dfd, st.st_mode & 07777) < 0 ||
	    futimens(dfd, (struct timespec[]){ st.st_atim, st.st_mtim }) < 0)
		return sk_error_errno(err, errno, "setting the attributes of %s", dst);
	return 0;
}

int sk_write_file(const char *path, const void *data, size_t len, mode_t mode, sk_error *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, getpid());
	_cleanup_close_ int fd = -1;
	const char *p = data;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return sk_error_errno(err, errno, "cannot write %s", tmp);
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			unlink(tmp);
			return sk_error_errno(err, errno, "cannot write %s", tmp);
		}
		p += n;
		len -= (size_t)n;
	}
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return sk_error_errno(err, errno, "cannot rename %s", tmp);
	}
	return 0;
}

int sk_read_file(const char *path, char **out, size_t *len, sk_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	sk_buf b = SK_BUF_INIT;
	char chunk[8192];
	ssize_t n;

	if (fd < 0)
		return sk_error_errno(err, errno, "cannot read %s", path);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			sk_buf_release(&b);
			return sk_error_errno(err, errno, "cannot read %s", path);
		}
		sk_buf_add(&b, chunk, (size_t)n);
	}
	*out = sk_buf_detach(&b, len);
	return 0;
}

unsigned long long sk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

double sk_wall_time(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sk_random_hex(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];

	if (n > sizeof(raw))
		n = sizeof(raw);
	if (getrandom(raw, n, 0) != (ssize_t)n)
		abort();
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[2 * n] = 0;
}
