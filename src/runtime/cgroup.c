/*
 * Cgroup boxes: see cgroup.h for the layout and why the memory limit sits one
 * level above the OCI runtime's own cgroup.
 *
 * Every hierarchy root comes from the parsed mountinfo and every path below it
 * is built from cg_host, so nothing here assumes /sys/fs/cgroup; the unit tests
 * point a host at a temporary tree to exercise the file logic.
 */
#include "runtime/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

/* Bounds for waiting on the kernel while tearing boxes down. */
#define KILL_ROUNDS 100       /* x KILL_WAIT_MS: about a second for processes to exit */
#define KILL_WAIT_MS 10
#define RMDIR_TRIES 50        /* x RMDIR_WAIT_MS: EBUSY lingers briefly after exit */
#define RMDIR_WAIT_MS 4
#define NAME_MAX_LEN 128

static const char *const v2_wanted[] = { "memory", "cpu", "pids" };

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * Instance names and container ids become directory names in every hierarchy,
 * so only a conservative alphabet is accepted: no '/', no leading dot, nothing
 * that a shell or the cgroup parsers of other tools might trip over.
 */
static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > NAME_MAX_LEN || s[0] == '.')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

/* ---- mountinfo ---------------------------------------------------------- */

/* Mount points escape space, tab, newline and backslash as \ooo. */
static char *unescape_mount_point(const char *s)
{
	char *out = xmalloc(strlen(s) + 1), *o = out;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
	return out;
}

static bool has_token(const char *list, const char *tok)
{
	size_t n = strlen(tok);

	for (const char *p = list; p; p = strchr(p, ',')) {
		if (*p == ',')
			p++;
		if (!strncmp(p, tok, n) && (p[n] == ',' || p[n] == 0))
			return true;
	}
	return false;
}

/*
 * One mountinfo line: id parent maj:min root mount-point options [optional
 * fields...] - fstype source super-options.  A hierarchy mounted twice (same
 * maj:min) is taken once, at its first mount point.
 */
static void parse_line(char *line, cg_host *h, sk_buf *seen)
{
	char *f[64];
	size_t n = 0, dash;
	char *p = line, *tok;
	_cleanup_free_ char *devkey = NULL;

	while (n < ARRAY_SIZE(f) && (tok = strsep(&p, " ")))
		f[n++] = tok;
	for (dash = 6; dash < n && strcmp(f[dash], "-"); dash++)
		;
	if (n < 7 || dash + 3 >= n)
		return;
	const char *fstype = f[dash + 1], *superopts = f[dash + 3];
	bool v2 = !strcmp(fstype, "cgroup2");

	if (!v2 && strcmp(fstype, "cgroup"))
		return;
	devkey = xasprintf("|%s|", f[2]);
	if (strstr(seen->base ? seen->base : "", devkey) || (v2 && h->unified))
		return;
	sk_buf_adds(seen, devkey);
	if (v2) {
		h->unified = unescape_mount_point(f[4]);
		return;
	}
	h->v1_mounts = xrealloc(h->v1_mounts, (h->n_v1 + 1) * sizeof(char *));
	h->v1_mounts[h->n_v1] = unescape_mount_point(f[4]);
	if (!h->memory_v1 && has_token(superopts, "memory"))
		h->memory_v1 = xstrdup(h->v1_mounts[h->n_v1]);
	if (!h->cpuacct_v1 && has_token(superopts, "cpuacct"))
		h->cpuacct_v1 = xstrdup(h->v1_mounts[h->n_v1]);
	h->n_v1++;
}

/*
 * The mode follows where the memory controller lives, since that is the one
 * hierarchy Skiff writes limits into: a v1 memory hierarchy means v1 (or hybrid
 * when a cgroup2 mount sits beside it); otherwise a cgroup2 mount means v2,
 * even if a lone name=systemd v1 hierarchy is also mounted (it is still
 * listed in v1_mounts so that leftovers there are cleaned up).
 */
int cg_parse_mountinfo(const char *mountinfo, const char *instance, cg_host *h, sk_error *err)
{
	_cleanup_free_ char *text = xstrdup(mountinfo);
	sk_buf seen = SK_BUF_INIT;
	char *p = text, *line;

	memset(h, 0, sizeof(*h));
	if (!valid_name(instance))
		return sk_error_set(err, SK_ERR_INVALID, "invalid cgroup instance name '%s'",
				    instance);
	while ((line = strsep(&p, "\n")))
		if (*line)
			parse_line(line, h, &seen);
	sk_buf_release(&seen);
	if (h->memory_v1)
		h->mode = h->unified ? CG_MODE_HYBRID : CG_MODE_V1;
	else if (h->unified)
		h->mode = CG_MODE_V2;
	else {
		bool any = h->n_v1 > 0;
		cg_host_release(h);
		return sk_error_set(err, SK_ERR_UNAVAILABLE, "%s",
				    any ? "no cgroup v1 memory hierarchy and no cgroup2 mount"
					: "no cgroup file system is mounted");
	}
	h->base = xasprintf("skiff/%s", instance);
	return 0;
}

int cg_detect(const char *instance, cg_host *h, sk_error *err)
{
	_cleanup_free_ char *text = NULL;

	memset(h, 0, sizeof(*h));
	if (sk_read_file("/proc/self/mountinfo", &text, NULL, err) < 0)
		return -1;
	if (cg_parse_mountinfo(text, instance, h, err) < 0)
		return sk_error_prefix(err, "detecting cgroups");
	return 0;
}

void cg_host_release(cg_host *h)
{
	free(h->unified);
	free_strv(h->v1_mounts, h->n_v1);
	free(h->memory_v1);
	free(h->cpuacct_v1);
	free(h->base);
	memset(h, 0, sizeof(*h));
}

const char *cg_mode_name(enum cg_mode mode)
{
	switch (mode) {
	case CG_MODE_V1: return "v1";
	case CG_MODE_HYBRID: return "v1-hybrid";
	case CG_MODE_V2: break;
	}
	return "v2";
}

/* ---- small file helpers -------------------------------------------------- */

/* Writes val to dir/file; -1 with errno set (ENOENT: the file is absent). */
static int write_at(int dfd, const char *file, const char *val)
{
	_cleanup_close_ int fd = openat(dfd, file, O_WRONLY | O_TRUNC | O_CLOEXEC);
	size_t len = strlen(val);

	if (fd < 0)
		return -1;
	if (write(fd, val, len) != (ssize_t)len)
		return -1;
	return 0;
}

static int write_file(const char *dir, const char *file, const char *val)
{
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return dfd < 0 ? -1 : write_at(dfd, file, val);
}

/* Reads a small control file; NULL with errno set on failure. */
static char *read_at(int dfd, const char *file)
{
	_cleanup_close_ int fd = openat(dfd, file, O_RDONLY | O_CLOEXEC);
	sk_buf b = SK_BUF_INIT;
	char chunk[4096];
	ssize_t n;

	if (fd < 0)
		return NULL;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			sk_buf_release(&b);
			errno = e;
			return NULL;
		}
		sk_buf_add(&b, chunk, (size_t)n);
	}
	return sk_buf_detach(&b, NULL);
}

static char *read_file(const char *dir, const char *file)
{
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return dfd < 0 ? NULL : read_at(dfd, file);
}

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ' || p[-1] == '\n') &&
		    (p[n] == ' ' || p[n] == '\n' || p[n] == 0))
			return true;
	return false;
}

/* Names of the subdirectories (child cgroups) of dfd. */
static char **list_subdirs(int dfd, size_t *n)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **v = NULL;
	struct dirent *de;
	DIR *d;

	*n = 0;
	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (de->d_type != DT_DIR &&
		    (de->d_type != DT_UNKNOWN ||
		     fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)))
			continue;
		v = xrealloc(v, (*n + 1) * sizeof(char *));
		v[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	return v;
}

/* ---- killing and removal -------------------------------------------------- */

static pid_t *read_pids(int dfd, size_t *n)
{
	_cleanup_free_ char *text = read_at(dfd, "cgroup.procs");
	pid_t *v = NULL;
	char *p = text, *end;

	*n = 0;
	while (p && *p) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		if (pid > 0) {
			v = xrealloc(v, (*n + 1) * sizeof(pid_t));
			v[(*n)++] = (pid_t)pid;
		}
		p = end;
	}
	return v;
}

/*
 * SIGKILLs the processes of one cgroup; returns how many were listed.  A pid
 * read from cgroup.procs may be reused by an unrelated process before kill()
 * reaches it, so each pid is pinned with a pidfd first and signalled only if
 * it is still listed afterwards: then the pidfd's process is the listed one.
 */
static size_t kill_procs_at(int dfd)
{
	size_t n, m;
	_cleanup_free_ pid_t *pids = read_pids(dfd, &n);
	_cleanup_free_ pid_t *again = NULL;
	_cleanup_free_ int *pfd = NULL;

	if (!n)
		return 0;
	pfd = xmalloc(n * sizeof(int));
	for (size_t i = 0; i < n; i++) {
		pfd[i] = (int)syscall(SYS_pidfd_open, pids[i], 0);
		if (pfd[i] < 0 && errno == ENOSYS)
			kill(pids[i], SIGKILL); /* pre-5.3 kernel: best effort */
	}
	again = read_pids(dfd, &m);
	for (size_t i = 0; i < n; i++) {
		if (pfd[i] < 0)
			continue;
		for (size_t j = 0; j < m; j++)
			if (again[j] == pids[i]) {
				syscall(SYS_pidfd_send_signal, pfd[i], SIGKILL, NULL, 0);
				break;
			}
		close(pfd[i]);
	}
	return n;
}

/* One round over a tree: signals (or just counts) what is left in it. */
static size_t kill_round(int dfd, bool signal)
{
	size_t n_sub, total;
	char **sub = list_subdirs(dfd, &n_sub);

	if (signal) {
		total = kill_procs_at(dfd);
	} else {
		free(read_pids(dfd, &total));
	}
	for (size_t i = 0; i < n_sub; i++) {
		_cleanup_close_ int fd = openat(dfd, sub[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			total += kill_round(fd, signal);
	}
	free_strv(sub, n_sub);
	return total;
}

/*
 * Kills every process in the tree at dfd and waits (bounded) until none is
 * listed.  cgroup.kill (v2, Linux 5.14+) kills the whole subtree atomically,
 * even against a fork bomb; elsewhere the tree is walked and signalled pid by
 * pid until a round finds it empty.
 */
static void kill_tree(int dfd)
{
	bool use_kill = write_at(dfd, "cgroup.kill", "1") == 0;

	for (int round = 0; round < KILL_ROUNDS; round++) {
		if (kill_round(dfd, !use_kill) == 0)
			return;
		sleep_ms(KILL_WAIT_MS);
	}
}

static int rmdir_retry(int pfd, const char *name)
{
	for (int i = 0; i < RMDIR_TRIES; i++) {
		if (unlinkat(pfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -1;
		sleep_ms(RMDIR_WAIT_MS);
	}
	return -1;
}

/* Removes the cgroup pfd/name and every cgroup below it, deepest first. */
static int rmdir_tree(int pfd, const char *name, const char *shown, sk_error *err)
{
	_cleanup_close_ int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	size_t n_sub;
	char **sub;
	int rc = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "cannot open %s", shown);
	sub = list_subdirs(fd, &n_sub);
	for (size_t i = 0; i < n_sub; i++) {
		_cleanup_free_ char *child = xasprintf("%s/%s", shown, sub[i]);
		if (rmdir_tree(fd, sub[i], child, rc < 0 ? NULL : err) < 0)
			rc = -1;
	}
	free_strv(sub, n_sub);
	if (rc < 0)
		return rc;
	if (rmdir_retry(pfd, name) < 0)
		return sk_error_errno(err, errno, "cannot remove cgroup %s", shown);
	return 0;
}

/*
 * Every hierarchy that may hold a copy of Skiff's tree: the runtime creates
 * its cgroupsPath in all v1 hierarchies and in the unified one.
 */
static size_t hierarchies(const cg_host *h, const char **roots)
{
	size_t n = 0;

	if (h->unified)
		roots[n++] = h->unified;
	for (size_t i = 0; i < h->n_v1; i++)
		roots[n++] = h->v1_mounts[i];
	return n;
}

/* Kills and removes root/rel (and below) in one hierarchy. */
static int remove_in(const char *root, const char *rel, sk_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", root, rel);
	_cleanup_free_ char *parent = xstrdup(path);
	char *slash = strrchr(parent, '/');
	_cleanup_close_ int pfd = -1, fd = -1;

	*slash = 0;
	pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (pfd < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "cannot open %s", parent);
	fd = openat(pfd, slash + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "cannot open %s", path);
	kill_tree(fd);
	return rmdir_tree(pfd, slash + 1, path, err);
}

/* ---- boxes ---------------------------------------------------------------- */

/* The one hierarchy where Skiff creates boxes and sets their limits. */
static const char *box_root(const cg_host *h)
{
	return h->mode == CG_MODE_V2 ? h->unified : h->memory_v1;
}

/*
 * Enables memory, cpu and pids for the children of dir, as far as dir has
 * them: one write first (all or nothing in the kernel), then one at a time so
 * that a controller that cannot be enabled does not block the others.  A
 * missing memory controller shows up later, as a missing memory.max.
 */
static void enable_controllers(const char *dir)
{
	_cleanup_free_ char *avail = read_file(dir, "cgroup.controllers");
	_cleanup_free_ char *on = read_file(dir, "cgroup.subtree_control");
	sk_buf want = SK_BUF_INIT;

	for (size_t i = 0; i < ARRAY_SIZE(v2_wanted); i++)
		if (avail && has_word(avail, v2_wanted[i]) && !(on && has_word(on, v2_wanted[i])))
			sk_buf_addf(&want, "%s+%s", want.len ? " " : "", v2_wanted[i]);
	if (want.len && write_file(dir, "cgroup.subtree_control", want.base) < 0) {
		for (size_t i = 0; i < ARRAY_SIZE(v2_wanted); i++) {
			_cleanup_free_ char *one = xasprintf("+%s", v2_wanted[i]);
			if (strstr(want.base, one))
				write_file(dir, "cgroup.subtree_control", one);
		}
	}
	sk_buf_release(&want);
}

static int mkdir_cg(const char *path, bool must_be_new, sk_error *err)
{
	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno == EEXIST && !must_be_new)
		return 0;
	if (errno == EEXIST)
		return sk_error_set(err, SK_ERR_CONFLICT, "cgroup %s already exists", path);
	return sk_error_errno(err, errno, "cannot create cgroup %s", path);
}

static int set_limit_v1(const char *dir, long long bytes, sk_error *err)
{
	char val[32];
	_cleanup_free_ char *hier = read_file(dir, "memory.use_hierarchy");

	/* Without hierarchy (only on old kernels) ctr's usage would escape the box. */
	if (hier && atoi(hier) == 0 && write_file(dir, "memory.use_hierarchy", "1") < 0)
		return sk_error_errno(err, errno, "cannot enable memory.use_hierarchy in %s", dir);
	if (bytes <= 0)
		return 0;
	snprintf(val, sizeof(val), "%lld", bytes);
	if (write_file(dir, "memory.limit_in_bytes", val) < 0)
		return sk_error_errno(err, errno, "cannot set memory.limit_in_bytes in %s", dir);
	/* Present only with swap accounting; must not be below the memory limit. */
	if (write_file(dir, "memory.memsw.limit_in_bytes", val) < 0 && errno != ENOENT)
		return sk_error_errno(err, errno, "cannot set memory.memsw.limit_in_bytes in %s",
				      dir);
	return 0;
}

static int set_limit_v2(const char *dir, long long bytes, sk_error *err)
{
	char val[32];

	if (bytes <= 0)
		return 0;
	snprintf(val, sizeof(val), "%lld", bytes);
	if (write_file(dir, "memory.max", val) < 0) {
		if (errno == ENOENT)
			return sk_error_set(err, SK_ERR_UNAVAILABLE,
					    "the memory controller is not enabled for %s "
					    "(check cgroup.subtree_control of its parents)", dir);
		return sk_error_errno(err, errno, "cannot set memory.max in %s", dir);
	}
	if (write_file(dir, "memory.swap.max", "0") < 0 && errno != ENOENT)
		return sk_error_errno(err, errno, "cannot set memory.swap.max in %s", dir);
	return 0;
}

/*
 * v1: memory.oom_control notifications go to every eventfd registered on the
 * cgroup whose limit was hit, which is the box even when the victim lives in
 * ctr.  The registration keeps the eventfd, not the control file, so that fd
 * is closed at once.
 */
static int arm_oom_v1(const char *dir, int *efd_out, sk_error *err)
{
	_cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	_cleanup_close_ int dfd = -1, ofd = -1;
	char line[64];

	if (efd < 0)
		return sk_error_errno(err, errno, "eventfd");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		ofd = openat(dfd, "memory.oom_control", O_RDONLY | O_CLOEXEC);
	if (ofd < 0)
		return sk_error_errno(err, errno, "cannot open memory.oom_control in %s", dir);
	snprintf(line, sizeof(line), "%d %d", efd, ofd);
	if (write_at(dfd, "cgroup.event_control", line) < 0)
		return sk_error_errno(err, errno, "cannot watch memory.oom_control in %s", dir);
	*efd_out = efd;
	efd = -1;
	return 0;
}

int cg_box_create(const cg_host *h, const char *id, long long memory_bytes, cg_box *box,
		  sk_error *err)
{
	const char *root = box_root(h);
	_cleanup_free_ char *top = NULL, *inst = NULL, *dir = NULL;
	int rc;

	box->rel = box->ctr_path = NULL;
	box->oom_efd = -1;
	if (!valid_name(id))
		return sk_error_set(err, SK_ERR_INVALID, "invalid container id '%s'", id);
	if (memory_bytes < 0)
		return sk_error_set(err, SK_ERR_INVALID, "negative memory limit");
	top = xasprintf("%s/skiff", root);
	inst = xasprintf("%s/%s", root, h->base);
	dir = xasprintf("%s/%s/%s", root, h->base, id);
	if (h->mode == CG_MODE_V2)
		enable_controllers(root); /* best effort: the host's root may refuse */
	if (mkdir_cg(top, false, err) < 0 || mkdir_cg(inst, false, err) < 0)
		return sk_error_prefix(err, "creating box %s", id);
	if (h->mode == CG_MODE_V2) {
		enable_controllers(top);
		enable_controllers(inst);
	}
	if (mkdir_cg(dir, true, err) < 0)
		return sk_error_prefix(err, "creating box %s", id);
	if (h->mode == CG_MODE_V2) {
		enable_controllers(dir);
		rc = set_limit_v2(dir, memory_bytes, err);
	} else {
		rc = set_limit_v1(dir, memory_bytes, err);
		if (rc == 0)
			rc = arm_oom_v1(dir, &box->oom_efd, err);
	}
	if (rc < 0) {
		rmdir(dir);
		return sk_error_prefix(err, "creating box %s", id);
	}
	box->rel = xasprintf("%s/%s", h->base, id);
	box->ctr_path = xasprintf("/%s/ctr", box->rel);
	return 0;
}

int cg_box_set_memory(const cg_host *h, const cg_box *box, long long memory_bytes, sk_error *err)
{
	_cleanup_free_ char *dir = NULL;

	if (!box->rel)
		return sk_error_set(err, SK_ERR_INVALID, "no box");
	dir = xasprintf("%s/%s", box_root(h), box->rel);
	return h->mode == CG_MODE_V2 ? set_limit_v2(dir, memory_bytes, err)
				     : set_limit_v1(dir, memory_bytes, err);
}

/* Writes the CFS quota for cpu cores into dir (v1 or v2 files, whichever it has). */
static void set_cpu(const char *dir, double cpu)
{
	long long period = 100000, quota = (long long)(cpu * (double)period + 0.5);
	char val[64];

	if (quota < 1000)
		quota = 1000;
	snprintf(val, sizeof(val), "%lld %lld", quota, period);
	if (write_file(dir, "cpu.max", val) == 0)
		return;
	snprintf(val, sizeof(val), "%lld", period);
	write_file(dir, "cpu.cfs_period_us", val);
	snprintf(val, sizeof(val), "%lld", quota);
	write_file(dir, "cpu.cfs_quota_us", val);
}

void cg_box_prime(const cg_host *h, const cg_box *box)
{
	_cleanup_free_ char *dir = NULL, *procs = NULL;
	char val[32];
	int pid;

	if (!box->rel)
		return;
	dir = xasprintf("%s/%s/ctr", box_root(h), box->rel);
	procs = read_file(dir, "cgroup.procs");
	if (!procs || (pid = atoi(procs)) <= 0)
		return;
	snprintf(val, sizeof(val), "%d", pid);
	write_file(dir, "cgroup.procs", val);
}

/* Whether a v1 hierarchy (its mount point) has cpu, cpuacct or pids. */
static bool v1_needed(const char *mount_point)
{
	const char *base = strrchr(mount_point, '/');
	_cleanup_free_ char *copy = xstrdup(base ? base + 1 : mount_point);
	char *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (!strcmp(t, "cpu") || !strcmp(t, "cpuacct") || !strcmp(t, "pids"))
			return true;
	return false;
}

int cg_box_attach(const cg_host *h, const cg_box *box, int pid, double cpu, sk_error *err)
{
	const char *roots[h->n_v1 + 1];
	size_t n = hierarchies(h, roots);
	const char *main_root = box_root(h);
	char val[32];

	if (!box->rel)
		return sk_error_set(err, SK_ERR_INVALID, "no box");
	snprintf(val, sizeof(val), "%d", pid);
	for (size_t i = 0; i < n; i++) {
		bool is_main = !strcmp(roots[i], main_root);
		/* v1: only what limits and meters it (memory, cpu, pids); it stays in
		 * its template's devices, freezer, cpuset... groups (runc's), and
		 * each move costs the kernel a grace period. */
		if (!is_main && h->mode != CG_MODE_V2 && !v1_needed(roots[i]))
			continue;
		_cleanup_free_ char *inst = xasprintf("%s/%s", roots[i], h->base);
		_cleanup_free_ char *dir = xasprintf("%s/%s%s", roots[i], box->rel,
						     h->mode == CG_MODE_V2 ? "/ctr" : "");
		if (!is_main) {
			_cleanup_free_ char *top = xasprintf("%s/skiff", roots[i]);
			_cleanup_free_ char *boxdir = xasprintf("%s/%s", roots[i], box->rel);
			mkdir(top, 0755);
			mkdir(inst, 0755);
			mkdir(boxdir, 0755);
		}
		if (h->mode == CG_MODE_V2 && mkdir_cg(dir, false, err) < 0)
			return sk_error_prefix(err, "moving process %d into its box", pid);
		if (cpu > 0)
			set_cpu(dir, cpu);
		write_file(dir, "pids.max", "32768");
		if (write_file(dir, "cgroup.procs", val) < 0 && is_main)
			return sk_error_errno(err, errno, "cannot move process %d into cgroup %s", pid,
					      dir);
	}
	return 0;
}

static char *box_file(const cg_host *h, const cg_box *box, const char *file)
{
	_cleanup_free_ char *dir = NULL;

	if (!box->rel)
		return NULL;
	dir = xasprintf("%s/%s", box_root(h), box->rel);
	return read_file(dir, file);
}

void cg_box_kill(const cg_host *h, const cg_box *box)
{
	_cleanup_free_ char *dir = NULL;
	_cleanup_close_ int fd = -1;

	if (!box->rel)
		return;
	dir = xasprintf("%s/%s", box_root(h), box->rel);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write_at(fd, "cgroup.kill", "1") < 0)
		kill_round(fd, true);
}

/* Value of "key N" in a flat-keyed file such as memory.events, or -1. */
static long long keyed_value(const char *text, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, n) && p[n] == ' ')
			return strtoll(p + n + 1, NULL, 10);
	return -1;
}

/*
 * v1 polls instead of reading the eventfd so that asking twice gives the same
 * answer.  Must be asked before cg_box_destroy: removing the box also signals
 * the eventfd.
 */
bool cg_box_oom(const cg_host *h, const cg_box *box)
{
	if (h->mode != CG_MODE_V2) {
		struct pollfd pfd = { box->oom_efd, POLLIN, 0 };

		return box->oom_efd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
	}
	_cleanup_free_ char *events = box_file(h, box, "memory.events");
	return events && keyed_value(events, "oom_kill") > 0;
}

long long cg_box_peak_memory(const cg_host *h, const cg_box *box)
{
	_cleanup_free_ char *text = box_file(h, box, h->mode == CG_MODE_V2 ? "memory.peak"
									   : "memory.max_usage_in_bytes");
	long long v = text ? strtoll(text, NULL, 10) : 0;

	return v > 0 ? v : 0;
}

/* A control file's leading number, or -1 when it cannot be read. */
static long long read_number(const char *root, const char *rel, const char *file)
{
	_cleanup_free_ char *dir = xasprintf("%s/%s", root, rel);
	_cleanup_free_ char *text = read_file(dir, file);
	char *end;
	long long v;

	if (!text)
		return -1;
	v = strtoll(text, &end, 10);
	return end == text ? -1 : v;
}

/*
 * v1 charges CPU time to a cgroup and to each of its ancestors, so the box's
 * own counter already holds ctr's; the larger of the two covers a box that
 * the runtime has not created in the cpuacct hierarchy.
 */
long long cg_box_cpu_usage_ns(const cg_host *h, const cg_box *box)
{
	_cleanup_free_ char *ctr = NULL;
	long long own, inner;

	if (!box->rel)
		return 0;
	if (h->mode == CG_MODE_V2) {
		_cleanup_free_ char *stat = box_file(h, box, "cpu.stat");
		long long us = stat ? keyed_value(stat, "usage_usec") : -1;

		return us > 0 ? us * 1000 : 0;
	}
	if (!h->cpuacct_v1)
		return 0;
	ctr = xasprintf("%s/ctr", box->rel);
	own = read_number(h->cpuacct_v1, box->rel, "cpuacct.usage");
	inner = read_number(h->cpuacct_v1, ctr, "cpuacct.usage");
	own = own > inner ? own : inner;
	return own > 0 ? own : 0;
}

int cg_box_destroy(const cg_host *h, cg_box *box, sk_error *err)
{
	const char *roots[h->n_v1 + 1];
	size_t n = hierarchies(h, roots);
	int rc = 0;

	if (box->rel) {
		for (size_t i = 0; i < n; i++)
			if (remove_in(roots[i], box->rel, rc < 0 ? NULL : err) < 0)
				rc = -1;
	}
	if (box->oom_efd >= 0)
		close(box->oom_efd);
	box->oom_efd = -1;
	free(box->rel);
	free(box->ctr_path);
	box->rel = box->ctr_path = NULL;
	return rc;
}

/* Adds name to the set v (of n) unless it is there; counts distinct boxes. */
static void add_unique(char ***v, size_t *n, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i], name))
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof(char *));
	(*v)[(*n)++] = xstrdup(name);
}

static int sweep_in(const char *root, const char *base, char ***names, size_t *n_names,
		    sk_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", root, base);
	_cleanup_free_ char *top = xasprintf("%s/skiff", root);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	size_t n_sub;
	char **sub;

	if (fd < 0)
		return errno == ENOENT ? 0 : sk_error_errno(err, errno, "cannot open %s", path);
	sub = list_subdirs(fd, &n_sub);
	for (size_t i = 0; i < n_sub; i++)
		add_unique(names, n_names, sub[i]);
	free_strv(sub, n_sub);
	if (remove_in(root, base, err) < 0)
		return -1;
	/* Other instances may share "skiff": leave it when it is not empty. */
	if (rmdir(top) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EBUSY)
		return sk_error_errno(err, errno, "cannot remove cgroup %s", top);
	return 0;
}

int cg_sweep(const cg_host *h, sk_error *err)
{
	const char *roots[h->n_v1 + 1];
	size_t n = hierarchies(h, roots), n_names = 0;
	char **names = NULL;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		if (sweep_in(roots[i], h->base, &names, &n_names, rc < 0 ? NULL : err) < 0)
			rc = -1;
	free_strv(names, n_names);
	return rc < 0 ? sk_error_prefix(err, "sweeping cgroups under %s", h->base)
		      : (int)n_names;
}
