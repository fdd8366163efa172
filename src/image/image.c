/*
 * Images: specs, ids, and builds with debootstrap.  See image.h for the
 * layout under $SKIFF_HOME/images.
 *
 * A build is one child process (debootstrap, in a process group of its own
 * so that a kill reaches whatever it started) whose stdout and stderr share
 * one pipe, so that its lines keep their order.  Once the child is reaped and
 * the pipe has ended, the rest -- trimming apt's caches, measuring the tree,
 * the rename, or removing a failed tree -- touches hundreds of megabytes and
 * runs on the thread pool (uv_queue_work); the loop thread then records the
 * row and tells the waiters.
 *
 * Callbacks may cancel waiters, start other builds or close the store, so a
 * waiter is only marked gone while a build walks its list, and is freed by
 * sweep() once no walk is in progress; a build lives until its after-work
 * step, and the store until its last build is freed (pending).
 */
#include "image/image.h"
#include "image/image-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fsutil.h"
#include "util/utf8.h"
#include "util/xalloc.h"

#define SUITE IMAGE_SUITE
#define DEFAULT_MIRROR "http://deb.debian.org/debian"
#define TAIL_LINES 30     /* output lines kept for the error of a failed build */
#define LINE_MAX_LEN 1024 /* longer output is cut into several lines */

struct image_waiter {
	struct build *b;
	struct image_waiter *next;
	image_progress_fn progress;
	image_done_fn done;
	void *ctx;
	bool gone; /* cancelled or told the end: no more callbacks */
};

/* One debootstrap run and everyone waiting for it.  Thread: the loop, except
 * the fields the finalize step reads or writes on the thread pool (marked). */
struct build {
	image_store *is;
	struct build *next;
	bool listed; /* in is->builds, so new requests join it */
	char *id;
	char *spec_json;
	image_spec spec;
	char *tmp_dir;   /* pool reads */
	char *final_dir; /* pool reads */

	uv_process_t proc;
	uv_pipe_t out;
	int open_handles;
	int pid;
	bool exited;
	int64_t exit_status;
	int term_signal;
	bool aborted;          /* the store is closing: waiters already told */
	const char *io_failure; /* set when the output could not be read */
	char readbuf[16384];
	sk_buf partial;                 /* the unfinished last line */
	char *tail[TAIL_LINES];          /* ring of the last lines */
	size_t tail_next, tail_n;

	image_waiter *waiters;
	int walking; /* > 0 while callbacks run over waiters */

	uv_work_t work;
	bool work_discard;    /* pool reads: remove the tree whatever happened */
	bool ok;              /* pool writes: the image is in place */
	long long size_bytes; /* pool writes */
	sk_error work_err;    /* pool writes */
};

struct image_store {
	uv_loop_t *loop;
	char *images_dir;
	sk_store *db;
	char *mirror;
	struct build *builds;
	size_t pending; /* builds not yet freed */
	bool closing, close_fired;
	void (*close_done)(void *data);
	void *close_data;
};

/* Ids come from requests and become directory names: only "im-" + 64 hex. */
static bool valid_id(const char *id)
{
	if (strncmp(id, "im-", 3) || strlen(id) != 67)
		return false;
	for (const char *p = id + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* ---- the mirror -------------------------------------------------------- */

static bool is_http(const char *uri)
{
	return !strncmp(uri, "http://", 7) || !strncmp(uri, "https://", 8);
}

static char *mirror_dup(const char *uri)
{
	char *m = xstrdup(uri);
	size_t n = strlen(m);

	while (n > 8 && m[n - 1] == '/')
		m[--n] = 0;
	return m;
}

/* What a deb822 stanza has said so far. */
struct stanza {
	bool deb, disabled, bookworm;
	char *uri;
};

static void stanza_field(struct stanza *st, const char *field, char *value)
{
	char *save = NULL;

	for (char *t = strtok_r(value, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (!strcasecmp(field, "Types") && !strcmp(t, "deb"))
			st->deb = true;
		else if (!strcasecmp(field, "URIs") && !st->uri && is_http(t))
			st->uri = xstrdup(t);
		else if (!strcasecmp(field, "Suites") && !strcmp(t, SUITE))
			st->bookworm = true;
		else if (!strcasecmp(field, "Enabled") && !strcasecmp(t, "no"))
			st->disabled = true;
	}
}

/* Ends a stanza; keeps its URI in *found when it is the first that fits. */
static void stanza_end(struct stanza *st, char **found)
{
	if (!*found && st->deb && !st->disabled && st->bookworm && st->uri)
		*found = mirror_dup(st->uri);
	free(st->uri);
	memset(st, 0, sizeof(*st));
}

/* "deb [options] URI SUITE COMPONENTS..." */
static void one_line(char *line, char **found)
{
	char *save = NULL, *t, *uri;

	strtok_r(line, " \t", &save); /* "deb" */
	t = strtok_r(NULL, " \t", &save);
	if (t && t[0] == '[') {
		while (t && t[strlen(t) - 1] != ']')
			t = strtok_r(NULL, " \t", &save);
		if (t)
			t = strtok_r(NULL, " \t", &save);
	}
	uri = t;
	t = uri ? strtok_r(NULL, " \t", &save) : NULL;
	if (!*found && uri && t && is_http(uri) && !strcmp(t, SUITE))
		*found = mirror_dup(uri);
}

char *image_parse_mirror(const char *text)
{
	_cleanup_free_ char *copy = xstrdup(text);
	char field[64] = "";
	struct stanza st = { 0 };
	char *found = NULL, *line, *rest = copy;

	while ((line = strsep(&rest, "\n"))) {
		size_t n = strlen(line);
		char *colon;

		while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = 0;
		if (!n) {
			stanza_end(&st, &found);
			field[0] = 0;
		} else if (line[0] == '#') {
			continue;
		} else if (!strncmp(line, "deb", 3) && (line[3] == ' ' || line[3] == '\t')) {
			one_line(line, &found);
		} else if (line[0] == ' ' || line[0] == '\t') {
			if (field[0]) /* a continuation line of the field above */
				stanza_field(&st, field, line);
		} else if ((colon = strchr(line, ':'))) {
			*colon = 0;
			snprintf(field, sizeof(field), "%s", line);
			stanza_field(&st, field, colon + 1);
		}
	}
	stanza_end(&st, &found);
	return found;
}

static char *machine_mirror(void)
{
	static const char *const files[] = {
		"/etc/apt/sources.list.d/debian.sources",
		"/etc/apt/sources.list",
	};
	const char *env = getenv("SKIFF_DEBIAN_MIRROR");

	if (env && *env)
		return mirror_dup(env);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *text = NULL;
		char *m;

		if (sk_read_file(files[i], &text, NULL, NULL) < 0)
			continue;
		if ((m = image_parse_mirror(text)))
			return m;
	}
	return xstrdup(DEFAULT_MIRROR);
}

/* ---- file-system work (also on the thread pool) -------------------------- */

/*
 * A killed debootstrap leaves proc and sys mounted inside its target, and
 * sk_rm_rf refuses to cross mounts: detach everything below dir first,
 * deepest first, a few passes for mounts stacked on one point.
 */
static void unmount_under(const char *dir)
{
	size_t dlen = strlen(dir);

	for (int pass = 0; pass < 8; pass++) {
		_cleanup_free_ char *text = NULL;
		char *line, *rest;
		int found = 0;

		if (sk_read_file("/proc/self/mountinfo", &text, NULL, NULL) < 0)
			return;
		rest = text;
		while ((line = strsep(&rest, "\n"))) {
			char point[4096];
			size_t n = 0;
			char *p = line;

			/* The fifth field is the mount point, with octal escapes. */
			for (int f = 0; f < 4 && p; f++)
				p = strchr(p, ' ') ? strchr(p, ' ') + 1 : NULL;
			if (!p)
				continue;
			for (; *p && *p != ' ' && n + 1 < sizeof(point); p++) {
				if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
					point[n++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
					p += 3;
				} else {
					point[n++] = *p;
				}
			}
			point[n] = 0;
			if (n > dlen && !strncmp(point, dir, dlen) && point[dlen] == '/' &&
			    umount2(point, MNT_DETACH) == 0)
				found++;
		}
		if (!found)
			return;
	}
}

/* True when process pid's command line mentions text (a build's folder). */
static bool cmdline_mentions(pid_t pid, const char *text)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int)pid);
	_cleanup_free_ char *cmd = NULL;
	size_t len = 0;

	if (sk_read_file(path, &cmd, &len, NULL) < 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	return strstr(cmd, text) != NULL;
}

/*
 * A build a crashed server left running: its builder.pid names the process
 * group leader; kill the group if the leader is still that build.
 */
static void stop_orphan_build(const char *dir)
{
	_cleanup_free_ char *pidfile = xasprintf("%s/builder.pid", dir);
	_cleanup_free_ char *text = NULL;
	size_t len;
	long pid;

	if (sk_read_file(pidfile, &text, &len, NULL) < 0)
		return;
	pid = strtol(text, NULL, 10);
	if (pid <= 1 || !cmdline_mentions((pid_t)pid, dir))
		return;
	kill(-(pid_t)pid, SIGKILL);
	for (int i = 0; i < 100 && kill(-(pid_t)pid, 0) == 0; i++)
		usleep(10000);
}

static void remove_tree(const char *dir)
{
	stop_orphan_build(dir);
	unmount_under(dir);
	sk_rm_rf(dir, NULL);
}

static __thread long long du_total;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (flag != FTW_NS)
		du_total += (long long)st->st_blocks * 512;
	return 0;
}

/* Disk usage of a tree, like du -sx (hard links count each time). */
static long long tree_size(const char *dir)
{
	du_total = 0;
	nftw(dir, du_one, 32, FTW_PHYS | FTW_MOUNT);
	return du_total;
}

/* Removes entries of dir whose names end in suffix ("" for all but dot files). */
static void remove_entries(const char *dir, const char *suffix)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	size_t slen = strlen(suffix);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return;
	if (!(d = fdopendir(fd))) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		_cleanup_free_ char *path = NULL;

		if (de->d_name[0] == '.' || n < slen || strcmp(de->d_name + n - slen, suffix))
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		sk_rm_rf(path, NULL);
	}
	closedir(d);
}

/* The success path: seal the tree and move it into place. */
static int finish_tree(struct build *b, sk_error *err)
{
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", b->tmp_dir);
	_cleanup_free_ char *python = xasprintf("%s/usr/bin/python3", rootfs);
	_cleanup_free_ char *debs = xasprintf("%s/var/cache/apt/archives", rootfs);
	_cleanup_free_ char *lists = xasprintf("%s/var/lib/apt/lists", rootfs);
	_cleanup_free_ char *spec = xasprintf("%s/spec.json", b->tmp_dir);
	struct stat st;

	if (lstat(python, &st) < 0)
		return sk_error_set(err, SK_ERR_INTERNAL,
				    "debootstrap succeeded but the tree has no usr/bin/python3");
	remove_entries(debs, ".deb");
	remove_entries(lists, "");
	if (sk_write_file(spec, b->spec_json, strlen(b->spec_json), 0644, err) < 0)
		return -1;
	b->size_bytes = tree_size(rootfs);
	/* A folder without a rootfs is the wreck of an earlier failure. */
	if (sk_rm_rf(b->final_dir, err) < 0)
		return -1;
	if (rename(b->tmp_dir, b->final_dir) < 0)
		return sk_error_errno(err, errno, "cannot rename %s to %s", b->tmp_dir,
				      b->final_dir);
	return 0;
}

static void finalize_work(uv_work_t *req)
{
	struct build *b = req->data;

	b->ok = false;
	if (!b->work_discard && finish_tree(b, &b->work_err) == 0) {
		b->ok = true;
		return;
	}
	remove_tree(b->tmp_dir);
}

/* ---- builds ------------------------------------------------------------ */

static void maybe_close_done(image_store *is);

/* Frees the waiters that are gone, unless callbacks are running over them. */
static void sweep(struct build *b)
{
	image_waiter **pp = &b->waiters;

	if (b->walking)
		return;
	while (*pp) {
		image_waiter *w = *pp;

		if (w->gone) {
			*pp = w->next;
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

static void notify_done(struct build *b, const sk_error *err)
{
	b->walking++;
	for (image_waiter *w = b->waiters; w; w = w->next) {
		if (w->gone)
			continue;
		w->gone = true;
		w->done(w->ctx, b->id, false, err);
	}
	b->walking--;
	sweep(b);
}

static void build_free(struct build *b)
{
	for (size_t i = 0; i < TAIL_LINES; i++)
		free(b->tail[i]);
	sk_buf_release(&b->partial);
	b->walking = 0;
	for (image_waiter *w = b->waiters; w; w = w->next)
		w->gone = true;
	sweep(b);
	image_spec_release(&b->spec);
	free(b->id);
	free(b->spec_json);
	free(b->tmp_dir);
	free(b->final_dir);
	free(b);
}

static void unlist(struct build *b)
{
	if (!b->listed)
		return;
	for (struct build **pp = &b->is->builds; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	b->listed = false;
}

/*
 * Makes output safe to hand on as text (JSON strings in the API): control
 * characters and bytes that are not UTF-8 become '?'.
 */
static void sanitize(char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = sk_utf8_seq(s + i, len - i);

		if (!n || (n == 1 && ((c < 0x20 && c != '\t') || c == 0x7f)))
			s[i++] = '?';
		else
			i += n;
	}
}

static void emit_line(struct build *b)
{
	char *line;

	if (!b->partial.len)
		return;
	sanitize(b->partial.base, b->partial.len);
	line = sk_buf_detach(&b->partial, NULL);
	free(b->tail[b->tail_next]);
	b->tail[b->tail_next] = line;
	b->tail_next = (b->tail_next + 1) % TAIL_LINES;
	if (b->tail_n < TAIL_LINES)
		b->tail_n++;
	b->walking++;
	for (image_waiter *w = b->waiters; w; w = w->next)
		if (!w->gone && w->progress)
			w->progress(w->ctx, line);
	b->walking--;
	sweep(b);
}

static void feed(struct build *b, const char *p, size_t n)
{
	while (n) {
		size_t room = LINE_MAX_LEN - b->partial.len;
		size_t k = 0;

		while (k < n && k < room && p[k] != '\n' && p[k] != '\r')
			k++;
		sk_buf_add(&b->partial, p, k);
		if (k < n && (p[k] == '\n' || p[k] == '\r')) {
			emit_line(b);
			k++;
		} else if (b->partial.len >= LINE_MAX_LEN) {
			emit_line(b);
		}
		p += k;
		n -= k;
	}
}

/*
 * "image build failed: WHAT; last output:\n" and as many of the last lines
 * as fit in an sk_error, newest kept; a line too long alone keeps its end.
 */
static void build_error(const struct build *b, const char *what, sk_error *err)
{
	char head[320]; /* what is at most 255 */
	size_t avail, used = 0, first = 0, n = b->tail_n;

	if (!n) {
		sk_error_set(err, SK_ERR_INTERNAL, "image build failed: %s (it printed nothing)", what);
		return;
	}
	snprintf(head, sizeof(head), "image build failed: %s; last output:\n", what);
	avail = sizeof(err->msg) - 1 - strlen(head);
	/* Count back from the newest line while the lines still fit. */
	for (size_t i = 0; i < n; i++) {
		const char *l = b->tail[(b->tail_next + TAIL_LINES - 1 - i) % TAIL_LINES];
		size_t need = strlen(l) + (i ? 1 : 0);

		if (used + need > avail)
			break;
		used += need;
		first = i + 1;
	}
	sk_error_set(err, SK_ERR_INTERNAL, "%s", head);
	if (!first) {
		const char *l = b->tail[(b->tail_next + TAIL_LINES - 1) % TAIL_LINES];
		const char *cut = l + strlen(l) - avail;

		while (((unsigned char)*cut & 0xc0) == 0x80) /* not inside a UTF-8 sequence */
			cut++;
		strcat(err->msg, cut);
		return;
	}
	for (size_t i = first; i-- > 0;) {
		strcat(err->msg, b->tail[(b->tail_next + TAIL_LINES - 1 - i) % TAIL_LINES]);
		if (i)
			strcat(err->msg, "\n");
	}
}

static int put_row(image_store *is, const char *id, const image_spec *spec,
		   const char *spec_json, long long size, sk_error *err)
{
	store_image row = {
		.image_id = (char *)id,
		.spec_json = (char *)spec_json,
		.base = spec->base,
		.python_version = spec->python_version,
		.size_bytes = size,
		.created_at = sk_wall_time(),
	};

	if (!is->db)
		return 0;
	if (store_image_put(is->db, &row, err) < 0)
		return sk_error_prefix(err, "cannot record image %s", id);
	return 0;
}

/* What went wrong with a build that did not produce an image. */
static void failure_what(const struct build *b, char *what, size_t size)
{
	if (b->work_err.msg[0])
		snprintf(what, size, "%.200s", b->work_err.msg);
	else if (b->io_failure)
		snprintf(what, size, "%s", b->io_failure);
	else if (b->term_signal)
		snprintf(what, size, "debootstrap was killed by signal %d (%s)", b->term_signal,
			 strsignal(b->term_signal));
	else
		snprintf(what, size, "debootstrap exited with status %lld",
			 (long long)b->exit_status);
}

static void finalize_after(uv_work_t *req, int status)
{
	struct build *b = req->data;
	image_store *is = b->is;
	char what[256];
	sk_error err;
	bool recorded;

	unlist(b);
	recorded = b->ok && put_row(is, b->id, &b->spec, b->spec_json, b->size_bytes, &err) == 0;
	if (b->aborted) {
		/* The waiters heard "shutting down" already. */
	} else if (recorded) {
		notify_done(b, NULL);
	} else if (b->ok) {
		/* Built but not recorded: the next request for it records it. */
		notify_done(b, &err);
	} else {
		failure_what(b, what, sizeof(what));
		build_error(b, what, &err);
		notify_done(b, &err);
	}
	build_free(b);
	is->pending--;
	maybe_close_done(is);
}

static void on_handle_close(uv_handle_t *h)
{
	struct build *b = h->data;

	if (--b->open_handles)
		return;
	b->work_discard = b->aborted || b->io_failure || b->term_signal || b->exit_status;
	b->work.data = b;
	uv_queue_work(b->is->loop, &b->work, finalize_work, finalize_after);
}

static void on_child_exit(uv_process_t *proc, int64_t status, int sig)
{
	struct build *b = proc->data;

	b->exited = true;
	b->exit_status = status;
	b->term_signal = sig;
	/* Whatever debootstrap left running would keep the pipe open and write
	 * into a tree about to be sealed. */
	kill(-b->pid, SIGKILL);
	uv_close((uv_handle_t *)proc, on_handle_close);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct build *b = h->data;

	*buf = uv_buf_init(b->readbuf, sizeof(b->readbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct build *b = s->data;

	if (n > 0) {
		feed(b, buf->base, (size_t)n);
		return;
	}
	if (n == 0)
		return;
	emit_line(b);
	uv_read_stop(s);
	uv_close((uv_handle_t *)s, on_handle_close);
}

static void on_orphan_close(uv_handle_t *h)
{
	struct build *b = h->data;
	image_store *is = b->is;

	build_free(b);
	is->pending--;
	maybe_close_done(is);
}

static char *find_debootstrap(void)
{
	const char *env = getenv("SKIFF_DEBOOTSTRAP");
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = NULL;
	char *save = NULL;

	if (env && *env)
		return xstrdup(env);
	if (access("/usr/sbin/debootstrap", X_OK) == 0)
		return xstrdup("/usr/sbin/debootstrap");
	dirs = xstrdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/debootstrap", d);

		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

static struct build *build_start(image_store *is, const char *id, const image_spec *spec,
				 sk_error *err)
{
	_cleanup_free_ char *prog = find_debootstrap();
	_cleanup_free_ char *rootfs = NULL, *include = NULL;
	uv_process_options_t opt = { 0 };
	uv_stdio_container_t stdio[3];
	uv_file fds[2];
	struct build *b;
	char rnd[17];
	int r;

	if (!prog) {
		sk_error_set(err, SK_ERR_UNAVAILABLE,
			     "cannot build images: debootstrap is not installed (looked in /usr/sbin "
			     "and on PATH); install it with apt-get install debootstrap");
		return NULL;
	}
	b = xcalloc(1, sizeof(*b));
	b->is = is;
	b->id = xstrdup(id);
	b->spec_json = image_spec_json(spec);
	image_spec_copy(&b->spec, spec);
	sk_random_hex(rnd, 8);
	b->tmp_dir = xasprintf("%s/.tmp-%s-%s", is->images_dir, id, rnd);
	b->final_dir = xasprintf("%s/%s", is->images_dir, id);
	rootfs = xasprintf("%s/rootfs", b->tmp_dir);
	if (mkdir(b->tmp_dir, 0755) < 0) {
		sk_error_errno(err, errno, "cannot create %s", b->tmp_dir);
		build_free(b);
		return NULL;
	}
	if ((r = uv_pipe(fds, UV_NONBLOCK_PIPE, 0)) < 0) {
		sk_error_set(err, SK_ERR_INTERNAL, "cannot make a pipe: %s", uv_strerror(r));
		rmdir(b->tmp_dir);
		build_free(b);
		return NULL;
	}
	include = image_spec_include_arg(spec);
	char *args[] = { prog, "--variant=minbase", include, SUITE, rootfs, is->mirror, NULL };
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
	stdio[1].data.fd = stdio[2].data.fd = fds[1];
	opt.file = prog;
	opt.args = args;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = on_child_exit;
	opt.flags = UV_PROCESS_DETACHED; /* its own process group, for kill(-pid) */
	b->proc.data = b;
	r = uv_spawn(is->loop, &b->proc, &opt);
	close(fds[1]);
	is->pending++;
	if (r < 0) {
		sk_error_set(err, r == UV_ENOENT || r == UV_EACCES ? SK_ERR_UNAVAILABLE : SK_ERR_INTERNAL,
			     "cannot run %s: %s%s", prog, uv_strerror(r),
			     r == UV_ENOENT ? " (install it with apt-get install debootstrap)" : "");
		close(fds[0]);
		rmdir(b->tmp_dir);
		/* A handle that failed to spawn is still open in the loop. */
		uv_close((uv_handle_t *)&b->proc, on_orphan_close);
		return NULL;
	}
	b->pid = b->proc.pid;
	b->open_handles = 2;
	{
		/* So that a server started after a crash can stop this build. */
		_cleanup_free_ char *pidfile = xasprintf("%s/builder.pid", b->tmp_dir);
		char pidtext[32];
		snprintf(pidtext, sizeof(pidtext), "%d\n", (int)b->pid);
		sk_write_file(pidfile, pidtext, strlen(pidtext), 0600, NULL);
	}
	uv_pipe_init(is->loop, &b->out, 0);
	b->out.data = b;
	if ((r = uv_pipe_open(&b->out, fds[0])) < 0)
		close(fds[0]);
	if (r < 0 || uv_read_start((uv_stream_t *)&b->out, on_alloc, on_read) < 0) {
		b->io_failure = "cannot read debootstrap's output";
		kill(-b->pid, SIGKILL);
		uv_close((uv_handle_t *)&b->out, on_handle_close);
	}
	b->listed = true;
	b->next = is->builds;
	is->builds = b;
	return b;
}

/* ---- the store --------------------------------------------------------- */

int image_store_open(uv_loop_t *loop, const char *home, sk_store *db, image_store **out,
		     sk_error *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/images", home);
	image_store *is;
	struct dirent *de;
	DIR *d;

	if (sk_mkdir_p(dir, 0755, err) < 0)
		return sk_error_prefix(err, "cannot open the image store");
	/* Leftovers of builds a previous server did not finish.  One that cannot
	 * be removed is left: it costs space, not correctness. */
	if (!(d = opendir(dir)))
		return sk_error_errno(err, errno, "cannot open the image store %s", dir);
	while ((de = readdir(d))) {
		_cleanup_free_ char *p = NULL;

		if (strncmp(de->d_name, ".tmp-", 5))
			continue;
		p = xasprintf("%s/%s", dir, de->d_name);
		remove_tree(p);
	}
	closedir(d);
	is = xcalloc(1, sizeof(*is));
	is->loop = loop;
	is->images_dir = steal_ptr(&dir);
	is->db = db;
	is->mirror = machine_mirror();
	*out = is;
	return 0;
}

static void maybe_close_done(image_store *is)
{
	void (*done)(void *data) = is->close_done;
	void *data = is->close_data;

	if (!is->closing || is->pending || is->close_fired)
		return;
	is->close_fired = true;
	free(is->images_dir);
	free(is->mirror);
	free(is);
	if (done)
		done(data);
}

void image_store_close(image_store *is, void (*done)(void *data), void *data)
{
	struct build *list = is->builds;
	sk_error err;

	if (is->closing)
		return;
	is->closing = true;
	is->close_done = done;
	is->close_data = data;
	is->builds = NULL;
	is->pending++; /* keeps is alive through the callbacks below */
	sk_error_set(&err, SK_ERR_UNAVAILABLE, "server is shutting down");
	for (struct build *b = list; b; b = b->next) {
		b->listed = false;
		b->aborted = true;
		if (!b->exited)
			kill(-b->pid, SIGKILL);
	}
	for (struct build *b = list; b; b = b->next)
		notify_done(b, &err);
	is->pending--;
	maybe_close_done(is);
}

const char *image_store_mirror(const image_store *is)
{
	return is->mirror;
}

const char *image_store_dir(const image_store *is)
{
	return is->images_dir;
}

static bool is_dir(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * A base image's rootfs, or for a layer (images/layers/<id>), the chain of
 * its diff folders and its parents' down to the base's rootfs, joined with
 * ':' top first: overlayfs's lowerdir.
 */
char *image_rootfs(const image_store *is, const char *image_id)
{
	sk_buf chain = SK_BUF_INIT;
	char cur[80];
	char *p;

	if (!valid_id(image_id))
		return NULL;
	p = xasprintf("%s/%s/rootfs", is->images_dir, image_id);
	if (is_dir(p))
		return p;
	free(p);
	snprintf(cur, sizeof(cur), "%s", image_id);
	for (int depth = 0; depth < 200; depth++) {
		_cleanup_free_ char *diff = xasprintf("%s/layers/%s/diff", is->images_dir, cur);
		_cleanup_free_ char *base = xasprintf("%s/%s/rootfs", is->images_dir, cur);
		_cleanup_free_ char *pf = NULL, *parent = NULL;
		size_t n = 0;

		if (is_dir(base)) {
			sk_buf_adds(&chain, base);
			return sk_buf_detach(&chain, NULL);
		}
		if (!is_dir(diff))
			break;
		sk_buf_addf(&chain, "%s:", diff);
		pf = xasprintf("%s/layers/%s/parent", is->images_dir, cur);
		if (sk_read_file(pf, &parent, &n, NULL) < 0)
			break;
		parent[strcspn(parent, "\n")] = 0;
		if (!valid_id(parent))
			break;
		snprintf(cur, sizeof(cur), "%s", parent);
	}
	sk_buf_release(&chain);
	return NULL;
}

char *image_config(const image_store *is, const char *image_id)
{
	char *text = NULL;
	size_t n;
	_cleanup_free_ char *a = NULL, *b = NULL;

	if (!valid_id(image_id))
		return NULL;
	a = xasprintf("%s/layers/%s/config.json", is->images_dir, image_id);
	b = xasprintf("%s/%s/config.json", is->images_dir, image_id);
	if (sk_read_file(a, &text, &n, NULL) == 0 || sk_read_file(b, &text, &n, NULL) == 0)
		return text;
	return NULL;
}

/* A built image whose row is missing (the database was reset) gets it back. */
static int ensure_row(image_store *is, const char *id, const image_spec *spec,
		      const char *rootfs, sk_error *err)
{
	_cleanup_free_ char *spec_json = NULL;
	store_image row;
	sk_error e;

	if (!is->db)
		return 0;
	if (store_image_get(is->db, id, &row, &e) == 0) {
		store_image_release(&row);
		return 0;
	}
	if (e.kind != SK_ERR_NOT_FOUND) {
		if (err)
			*err = e;
		return sk_error_prefix(err, "cannot look up image %s", id);
	}
	spec_json = image_spec_json(spec);
	return put_row(is, id, spec, spec_json, tree_size(rootfs), err);
}

int image_ensure(image_store *is, const image_spec *spec, image_progress_fn progress,
		 image_done_fn done, void *ctx, image_waiter **out, sk_error *err)
{
	_cleanup_free_ char *id = NULL;
	struct build *b;
	image_waiter *w, **pp;

	if (out)
		*out = NULL;
	if (is->closing)
		return sk_error_set(err, SK_ERR_UNAVAILABLE, "server is shutting down");
	id = image_spec_id(spec, is->mirror);
	for (b = is->builds; b && strcmp(b->id, id); b = b->next)
		;
	if (!b) {
		_cleanup_free_ char *rootfs = image_rootfs(is, id);

		if (rootfs) {
			if (ensure_row(is, id, spec, rootfs, err) < 0)
				return -1;
			done(ctx, id, true, NULL);
			return 0;
		}
		if (!(b = build_start(is, id, spec, err)))
			return sk_error_prefix(err, "cannot build image %s", id);
	}
	w = xcalloc(1, sizeof(*w));
	w->b = b;
	w->progress = progress;
	w->done = done;
	w->ctx = ctx;
	for (pp = &b->waiters; *pp; pp = &(*pp)->next)
		;
	*pp = w;
	if (out)
		*out = w;
	return 0;
}

void image_waiter_cancel(image_waiter *w)
{
	if (!w || w->gone)
		return;
	w->gone = true;
	sweep(w->b);
}
