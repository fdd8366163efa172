#include "runtime/container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/oci.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

#define KILL_RETRY_MS 200

struct rt {
	uv_loop_t *loop;
	const cg_host *cg;
	char *runtime;
	char *containers_dir, *logs_dir, *state_dir;
	rt_exit_fn on_exit;
	void *data;
	rt_container *containers;
	size_t live_procs;      /* processes whose handles are not all closed */
	bool shutting_down;
	void (*shutdown_done)(void *data);
	void *shutdown_data;
};

extern char **environ;

static void proc_free(rt_proc *p);

/* Frees a container and its processes (their handles must be closed). */
static void container_free(rt_container *c)
{
	for (rt_proc *p = c->execs, *next; p; p = next) {
		next = p->next;
		proc_free(p);
	}
	if (c->main)
		proc_free(c->main);
	rt_stream_release(&c->log);
	free(c->id);
	free(c->image_id);
	free(c->save_upper);
	free(c->root_at);
	free(c->fifo[0]);
	free(c->fifo[1]);
	free(c->dir);
	free(c);
}

/* ---- helpers ------------------------------------------------------------ */

/* Runs a short command synchronously (recovery only), output discarded. */
static int run_sync(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status = -1;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0)
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	posix_spawn_file_actions_destroy(&fa);
	return status;
}

static bool under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == 0);
}

/* Unmounts everything mounted at or below dir, deepest first. */
void rt_umount_below(const char *dir)
{
	_cleanup_free_ char *text = NULL;
	char **found = NULL;
	size_t n = 0, len;

	if (sk_read_file("/proc/self/mountinfo", &text, &len, NULL) < 0)
		return;
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char mnt[4096];
		size_t j = 0;
		const char *p = line;

		for (int f = 0; f < 4 && p; f++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		/* Unescape \040 and friends. */
		while (*p && *p != ' ' && j + 1 < sizeof(mnt)) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
				mnt[j++] = (char)(((p[1] - '0') << 6) | ((p[2] - '0') << 3) | (p[3] - '0'));
				p += 4;
			} else {
				mnt[j++] = *p++;
			}
		}
		mnt[j] = 0;
		if (under(mnt, dir)) {
			found = xrealloc(found, (n + 1) * sizeof(char *));
			found[n++] = xstrdup(mnt);
		}
	}
	while (n--) {
		if (umount2(found[n], 0) < 0 && umount2(found[n], MNT_DETACH) < 0)
			log_warn("cannot unmount %s: %s", found[n], strerror(errno));
		free(found[n]);
	}
	free(found);
}

static void recover(rt *r)
{
	DIR *d;
	struct dirent *de;
	sk_error err;
	int n = 0;

	rt_umount_below(r->containers_dir);
	d = opendir(r->state_dir);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *argv[] = { r->runtime, "--root", r->state_dir, "delete", "--force",
				 de->d_name, NULL };
		run_sync(argv);
		_cleanup_free_ char *p = xasprintf("%s/%s", r->state_dir, de->d_name);
		sk_rm_rf(p, NULL);
		n++;
	}
	if (d)
		closedir(d);
	rt_umount_below(r->containers_dir);
	d = opendir(r->containers_dir);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", r->containers_dir, de->d_name);
		if (sk_rm_rf(p, &err) < 0)
			log_warn("cannot remove %s: %s", p, err.msg);
		else
			n++;
	}
	if (d)
		closedir(d);
	int boxes = cg_sweep(r->cg, &err);
	if (boxes < 0)
		log_warn("cgroup cleanup: %s", err.msg);
	if (n || boxes > 0)
		log_info("cleaned up after a previous server: %d container folders, %d cgroups", n,
			 boxes > 0 ? boxes : 0);
}

int rt_open(uv_loop_t *loop, const char *home, const cg_host *cg, const char *runtime_path,
	    rt_exit_fn on_exit, void *data, rt **out, sk_error *err)
{
	rt *r = xcalloc(1, sizeof(*r));

	r->loop = loop;
	r->cg = cg;
	r->runtime = xstrdup(runtime_path);
	r->containers_dir = xasprintf("%s/containers", home);
	r->logs_dir = xasprintf("%s/logs", home);
	r->state_dir = xasprintf("%s/run/runtime", home);
	r->on_exit = on_exit;
	r->data = data;
	if (sk_mkdir_p(r->containers_dir, 0700, err) < 0 || sk_mkdir_p(r->logs_dir, 0700, err) < 0 ||
	    sk_mkdir_p(r->state_dir, 0700, err) < 0) {
		free(r->runtime);
		free(r->containers_dir);
		free(r->logs_dir);
		free(r->state_dir);
		free(r);
		return -1;
	}
	recover(r);
	*out = r;
	return 0;
}

size_t rt_running(const rt *r)
{
	size_t n = 0;

	for (rt_container *c = r->containers; c; c = c->next)
		n += c->state == RT_RUNNING;
	return n;
}

static void prune_proc(rt_proc *p)
{
	rt_stream_drop(&p->out);
	rt_stream_drop(&p->err);
}

void rt_prune(rt *r, double older_than)
{
	double now = sk_wall_time();

	for (rt_container *c = r->containers; c; c = c->next) {
		if (c->state != RT_EXITED || now - c->ended_at < older_than)
			continue;
		prune_proc(c->main);
		for (rt_proc *p = c->execs; p; p = p->next)
			if (p->done || p->exited)
				prune_proc(p);
		rt_stream_drop(&c->log);
	}
}

rt_container *rt_containers(rt *r)
{
	return r->containers;
}

rt_container *rt_container_find(rt *r, const char *id)
{
	for (rt_container *c = r->containers; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

rt_proc *rt_proc_find(rt *r, const char *proc_id)
{
	const char *dot = strstr(proc_id, ".e");
	_cleanup_free_ char *cid = dot ? xstrndup(proc_id, (size_t)(dot - proc_id)) : xstrdup(proc_id);
	rt_container *c = rt_container_find(r, cid);

	if (!c)
		return NULL;
	if (!dot)
		return c->main;
	for (rt_proc *p = c->execs; p; p = p->next)
		if (!strcmp(p->id, proc_id))
			return p;
	return NULL;
}

/* ---- processes ------------------------------------------------------------ */

static void maybe_shutdown_done(rt *r)
{
	void (*done)(void *);

	if (!r->shutting_down || r->live_procs || rt_running(r))
		return;
	done = r->shutdown_done;
	r->shutdown_done = NULL;
	if (!done)
		return;
	/* Free everything: no handle is open any more. */
	while (r->containers) {
		rt_container *c = r->containers;
		r->containers = c->next;
		container_free(c);
	}
	void *data = r->shutdown_data;
	free(r->runtime);
	free(r->containers_dir);
	free(r->logs_dir);
	free(r->state_dir);
	free(r);
	done(data);
}

static void proc_handle_released(rt_proc *p)
{
	rt *r = p->c->rt;

	if (--p->open_handles == 0) {
		r->live_procs--;
		maybe_shutdown_done(r);
	}
}

static void handle_closed(uv_handle_t *h)
{
	proc_handle_released(h->data);
}

static void proc_free(rt_proc *p)
{
	for (size_t i = 0; p->pending_argv && p->pending_argv[i]; i++)
		free(p->pending_argv[i]);
	free(p->pending_argv);
	sk_buf_release(&p->pending_in);
	rt_stream_release(&p->out);
	rt_stream_release(&p->err);
	free(p->id);
	free(p);
}

/* A process that never started: its handles close, then it goes. */
static void orphan_closed(uv_handle_t *h)
{
	rt_proc *p = h->data;

	if (--p->open_handles == 0)
		proc_free(p);
}

static void proc_close_handle(rt_proc *p, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, handle_closed);
}

static void proc_notify_done(rt_proc *p)
{
	rt_waiter *w;

	p->done = true;
	while ((w = p->waiters)) {
		p->waiters = w->next;
		w->next = NULL;
		w->fn(w, p);
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char slab[65536];

	(void)h;
	(void)suggested;
	buf->base = slab;
	buf->len = sizeof(slab);
}

static void got_output(rt_proc *p, rt_stream *s, const char *data, size_t len)
{
	rt_container *c = p->c;

	rt_stream_write(s, data, len);
	if (p == c->main) {
		rt_stream_write(&c->log, data, len);
		if (c->on_output)
			c->on_output(c, s == &p->err ? 2 : 1, data, len);
		if (c->log_fd >= 0 && write(c->log_fd, data, len) < 0) {
			log_warn("container %s: cannot write its log: %s", c->id, strerror(errno));
			close(c->log_fd);
			c->log_fd = -1;
		}
	}
}

static void stream_ended(rt_proc *p, uv_stream_t *h, rt_stream *s)
{
	rt_container *c = p->c;

	uv_read_stop(h);
	rt_stream_close(s);
	if (p->tty)
		p->stdin_closed = true;
	proc_close_handle(p, (uv_handle_t *)h);
	if (p == c->main && p->out.eof && p->err.eof)
		rt_stream_close(&c->log);
}

static void read_out(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
	rt_proc *p = h->data;

	if (n > 0)
		got_output(p, &p->out, buf->base, (size_t)n);
	else if (n < 0) /* EOF, or EIO from a pty master once the runtime is gone */
		stream_ended(p, h, &p->out);
}

static void read_err(uv_stream_t *h, ssize_t n, const uv_buf_t *buf)
{
	rt_proc *p = h->data;

	if (n > 0)
		got_output(p, &p->err, buf->base, (size_t)n);
	else if (n < 0)
		stream_ended(p, h, &p->err);
}

static void container_ended(rt_container *c);
static void start_pending(rt_container *c);

static void proc_exited(uv_process_t *h, int64_t status, int sig)
{
	rt_proc *p = h->data;
	rt_container *c = p->c;

	p->exited = true;
	p->returncode = sig ? 128 + sig : (int)status;
	proc_close_handle(p, (uv_handle_t *)h);
	if (!p->tty) {
		/* Nobody reads stdin any more; a pty master closes at its EOF instead. */
		p->stdin_closed = true;
		proc_close_handle(p, (uv_handle_t *)&p->in);
	}
	if (p == c->main) {
		container_ended(c);
	} else {
		proc_notify_done(p);
	}
}

static rt_proc *proc_new(rt_container *c, char *id, bool tty)
{
	rt_proc *p = xcalloc(1, sizeof(*p));

	p->id = id;
	p->c = c;
	p->tty = tty;
	p->started_at = sk_wall_time();
	rt_stream_init(&p->out);
	rt_stream_init(&p->err);
	return p;
}

/* Spawns argv as p, with pipes or a pty as its stdio. */
static int proc_spawn(rt *r, rt_proc *p, char **argv, unsigned rows, unsigned cols,
		      sk_error *err)
{
	uv_process_options_t opt = { 0 };
	uv_stdio_container_t stdio[3];
	int master = -1, slave = -1, rc;

	uv_pipe_init(r->loop, &p->in, 0);
	p->in.data = p;
	if (p->tty) {
		struct winsize ws = { .ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80 };

		if (openpty(&master, &slave, NULL, NULL, &ws) < 0) {
			p->open_handles = 1;
			uv_close((uv_handle_t *)&p->in, orphan_closed);
			return sk_error_errno(err, errno, "cannot allocate a terminal");
		}
		fcntl(master, F_SETFD, FD_CLOEXEC);
		for (int i = 0; i < 3; i++) {
			stdio[i].flags = UV_INHERIT_FD;
			stdio[i].data.fd = slave;
		}
	} else {
		uv_pipe_init(r->loop, &p->outp, 0);
		uv_pipe_init(r->loop, &p->errp, 0);
		p->outp.data = p->errp.data = p;
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&p->in;
		stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[1].data.stream = (uv_stream_t *)&p->outp;
		stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
		stdio[2].data.stream = (uv_stream_t *)&p->errp;
	}
	opt.file = argv[0];
	opt.args = argv;
	opt.exit_cb = proc_exited;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.flags = UV_PROCESS_DETACHED;
	p->process.data = p;
	rc = uv_spawn(r->loop, &p->process, &opt);
	if (slave >= 0)
		close(slave);
	if (rc < 0) {
		if (master >= 0)
			close(master);
		p->open_handles = p->tty ? 2 : 4;
		uv_close((uv_handle_t *)&p->in, orphan_closed);
		if (!p->tty) {
			uv_close((uv_handle_t *)&p->outp, orphan_closed);
			uv_close((uv_handle_t *)&p->errp, orphan_closed);
		}
		/* A failed uv_spawn still leaves the process handle to close. */
		uv_close((uv_handle_t *)&p->process, orphan_closed);
		return sk_error_set(err, SK_ERR_INTERNAL, "cannot start %s: %s", argv[0],
				    uv_strerror(rc));
	}
	r->live_procs++;
	p->spawned = true;
	p->open_handles = 1; /* the process */
	if (p->tty) {
		uv_pipe_open(&p->in, master);
		p->open_handles++;
		uv_read_start((uv_stream_t *)&p->in, alloc_cb, read_out);
		rt_stream_close(&p->err);
	} else {
		p->open_handles += 3;
		uv_read_start((uv_stream_t *)&p->outp, alloc_cb, read_out);
		uv_read_start((uv_stream_t *)&p->errp, alloc_cb, read_err);
	}
	return 0;
}

typedef struct write_req {
	uv_write_t w;
	uv_shutdown_t s;
	rt_proc *p;
	char *data;
} write_req;

static void write_done(uv_write_t *w, int status)
{
	write_req *wr = (write_req *)w;

	(void)status; /* the process may have gone; its exit is reported elsewhere */
	free(wr->data);
	free(wr);
}

static void shutdown_done(uv_shutdown_t *s, int status)
{
	(void)status;
	free(s);
}

int rt_proc_write(rt_proc *p, const void *data, size_t len, bool eof, sk_error *err)
{
	uv_stream_t *in = (uv_stream_t *)&p->in;

	if (!p->spawned && !p->exited) {
		if (p->pending_eof)
			return sk_error_set(err, SK_ERR_CONFLICT, "stdin of %s is closed", p->id);
		sk_buf_add(&p->pending_in, data, len);
		p->pending_eof = eof;
		return 0;
	}
	if (p->stdin_closed || p->exited || uv_is_closing((uv_handle_t *)in))
		return sk_error_set(err, SK_ERR_CONFLICT, "stdin of %s is closed%s", p->id,
				    p->exited ? " (the process has exited)" : "");
	if (len) {
		write_req *wr = xcalloc(1, sizeof(*wr));
		uv_buf_t b;

		wr->data = xmalloc(len);
		memcpy(wr->data, data, len);
		b = uv_buf_init(wr->data, (unsigned)len);
		if (uv_write(&wr->w, in, &b, 1, write_done) < 0) {
			free(wr->data);
			free(wr);
			return sk_error_set(err, SK_ERR_CONFLICT, "stdin of %s is closed", p->id);
		}
	}
	if (eof) {
		if (p->tty) {
			/* A terminal has no half-close: send the EOF character. */
			static char eot[] = "\x04";
			write_req *wr = xcalloc(1, sizeof(*wr));
			uv_buf_t b = uv_buf_init(xstrdup(eot), 1);

			wr->data = b.base;
			if (uv_write(&wr->w, in, &b, 1, write_done) < 0) {
				free(wr->data);
				free(wr);
			}
		} else {
			uv_shutdown_t *s = xcalloc(1, sizeof(*s));

			if (uv_shutdown(s, in, shutdown_done) < 0)
				free(s);
			p->stdin_closed = true;
		}
	}
	return 0;
}

int rt_proc_resize(rt_proc *p, unsigned rows, unsigned cols, sk_error *err)
{
	struct winsize ws = { .ws_row = rows, .ws_col = cols };
	uv_os_fd_t fd;

	if (!p->tty)
		return sk_error_set(err, SK_ERR_INVALID, "%s has no terminal to resize", p->id);
	if (!rows || !cols || rows > 10000 || cols > 10000)
		return sk_error_set(err, SK_ERR_INVALID, "rows and cols must be 1..10000");
	if (!p->spawned && !p->exited) {
		p->rows = rows;
		p->cols = cols;
		return 0;
	}
	if (p->exited || uv_fileno((uv_handle_t *)&p->in, &fd) < 0)
		return sk_error_set(err, SK_ERR_CONFLICT, "%s has exited", p->id);
	if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
		return sk_error_errno(err, errno, "cannot resize the terminal of %s", p->id);
	/* The runtime copies its terminal's size into the container's on SIGWINCH. */
	uv_process_kill(&p->process, SIGWINCH);
	return 0;
}

void rt_proc_wait(rt_proc *p, rt_waiter *w)
{
	if (p->done) {
		w->fn(w, p);
		return;
	}
	w->next = p->waiters;
	p->waiters = w;
}

void rt_proc_unwait(rt_proc *p, rt_waiter *w)
{
	for (rt_waiter **pp = &p->waiters; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			w->next = NULL;
			return;
		}
}

/* ---- containers ----------------------------------------------------------- */

static void timer_closed(uv_handle_t *h)
{
	proc_handle_released(((rt_container *)h->data)->main);
}

static void adopted_ended(rt_container *c, int returncode);

static void kill_tick(uv_timer_t *t)
{
	rt_container *c = t->data;

	if (c->state == RT_RUNNING && c->awaiting) {
		adopted_ended(c, 137); /* no process yet: nothing to wait for */
	} else if (c->state == RT_RUNNING) {
		cg_box_kill(c->rt->cg, &c->box);
		/* An adopted one may not be in its box yet. */
		if (c->adopted && c->main && c->main->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, c->main->pidfd, SIGKILL, NULL, 0);
	}
}

static void start_killing(rt_container *c)
{
	uv_timer_stop(&c->timer);
	uv_timer_start(&c->timer, kill_tick, 0, KILL_RETRY_MS);
}

static void timeout_fired(uv_timer_t *t)
{
	rt_container *c = t->data;

	if (c->state != RT_RUNNING)
		return;
	c->timed_out = true;
	log_info("container %s: timed out after %d s", c->id, c->timeout);
	start_killing(c);
}

void rt_container_kill(rt_container *c)
{
	if (c->state != RT_RUNNING)
		return;
	if (!c->timed_out)
		c->terminated = true;
	start_killing(c);
}

/* Tears down what a container holds on the host; safe to call twice. */
static void container_cleanup(rt_container *c)
{
	rt *r = c->rt;
	sk_error err;
	_cleanup_free_ char *rootfs = NULL, *state = NULL;

	if (c->cleaned)
		return;
	c->cleaned = true;
	if (c->box.rel) {
		c->oom = c->oom || cg_box_oom(r->cg, &c->box);
		c->peak_memory = cg_box_peak_memory(r->cg, &c->box);
		c->cpu_used_ns = cg_box_cpu_usage_ns(r->cg, &c->box);
		if (cg_box_destroy(r->cg, &c->box, &err) < 0)
			log_warn("container %s: %s", c->id, err.msg);
	}
	rootfs = xasprintf("%s/rootfs", c->dir);
	rt_umount_below(c->dir);
	if (c->root_at) {
		rt_umount_below(c->root_at);
		rmdir(c->root_at);
	}
	for (int i = 0; i < 2; i++) {
		if (!c->adopted)
			break;
		if (c->fifo[i])
			unlink(c->fifo[i]);
		if (c->fifo_hold[i] >= 0)
			close(c->fifo_hold[i]);
		c->fifo_hold[i] = -1;
	}
	if (c->save_upper && c->main && c->main->exited && c->main->returncode == 0 && !c->oom &&
	    !c->timed_out && !c->terminated) {
		_cleanup_free_ char *upper = xasprintf("%s/upper", c->dir);
		if (rename(upper, c->save_upper) == 0)
			c->upper_saved = true;
		else
			log_warn("container %s: cannot keep its changes in %s: %s", c->id,
				 c->save_upper, strerror(errno));
	}
	if (sk_rm_rf(c->dir, &err) < 0)
		log_warn("container %s: %s", c->id, err.msg);
	state = xasprintf("%s/%s", r->state_dir, c->id);
	sk_rm_rf(state, NULL);
}

static void container_ended(rt_container *c)
{
	rt_proc *p = c->main;

	uv_timer_stop(&c->timer);
	if (!uv_is_closing((uv_handle_t *)&c->timer)) {
		p->open_handles++;
		uv_close((uv_handle_t *)&c->timer, timer_closed);
	}
	if (!uv_is_closing((uv_handle_t *)&c->ready_timer)) {
		uv_timer_stop(&c->ready_timer);
		c->ready_timer_on = false;
		p->open_handles++;
		uv_close((uv_handle_t *)&c->ready_timer, timer_closed);
	}
	container_cleanup(c);
	c->state = RT_EXITED;
	start_pending(c); /* fails execs still waiting */
	c->ended_at = sk_wall_time();
	c->returncode = p->returncode;
	if (c->oom && c->returncode != 137 && c->returncode == 0)
		c->returncode = 137;
	if (c->log_fd >= 0) {
		close(c->log_fd);
		c->log_fd = -1;
	}
	log_info("container %s: exited with %d%s%s%s", c->id, c->returncode,
		 c->oom ? " (out of memory)" : "", c->timed_out ? " (timed out)" : "",
		 c->terminated ? " (terminated)" : "");
	/* Exec processes die with the container; their runtimes report it. */
	proc_notify_done(p);
	if (c->rt->on_exit)
		c->rt->on_exit(c, c->rt->data);
	maybe_shutdown_done(c->rt);
}

static int write_etc(const char *dir, const char *hostname, sk_error *err)
{
	_cleanup_free_ char *etc = xasprintf("%s/etc", dir);
	_cleanup_free_ char *hn = xasprintf("%s/hostname", etc);
	_cleanup_free_ char *hosts = xasprintf("%s/hosts", etc);
	_cleanup_free_ char *resolv = xasprintf("%s/resolv.conf", etc);
	_cleanup_free_ char *hn_text = xasprintf("%s\n", hostname);
	_cleanup_free_ char *hosts_text = xasprintf(
		"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n",
		hostname);
	_cleanup_free_ char *host_resolv = NULL;
	size_t len = 0;

	if (sk_mkdir_p(etc, 0755, err) < 0)
		return -1;
	if (sk_read_file("/etc/resolv.conf", &host_resolv, &len, NULL) < 0) {
		host_resolv = xstrdup("");
		len = 0;
	}
	if (sk_write_file(hn, hn_text, strlen(hn_text), 0644, err) < 0 ||
	    sk_write_file(hosts, hosts_text, strlen(hosts_text), 0644, err) < 0 ||
	    sk_write_file(resolv, host_resolv, len, 0644, err) < 0)
		return -1;
	/* Readable by the container's other users (apt's _apt resolves names too),
	 * whatever the server's umask. */
	chmod(hn, 0644);
	chmod(hosts, 0644);
	chmod(resolv, 0644);
	return 0;
}

/* Resolves path inside root (symlinks included) and checks it is an executable file. */
static bool exists_in_root(int rootfd, const char *path)
{
	struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT };
	struct stat st;
	int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));

	if (fd < 0)
		return false;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
	close(fd);
	return ok;
}

static int check_one(const char *lower, const char *cmd, const char *const *env, sk_error *err);

int rt_check_command(const char *lower, const char *cmd, const char *const *env, sk_error *err)
{
	_cleanup_free_ char *copy = NULL;
	char *save = NULL;
	int rc = -1;

	if (!strchr(lower, ':'))
		return check_one(lower, cmd, env, err);
	copy = xstrdup(lower);
	for (char *l = strtok_r(copy, ":", &save); l; l = strtok_r(NULL, ":", &save))
		if ((rc = check_one(l, cmd, env, err)) == 0)
			return 0;
	return rc;
}

static int check_one(const char *lower, const char *cmd, const char *const *env, sk_error *err)
{
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	_cleanup_close_ int rootfd = open(lower, O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *copy = NULL;
	char *save = NULL;

	if (rootfd < 0)
		return sk_error_errno(err, errno, "cannot open the image's root %s", lower);
	if (!*cmd)
		return sk_error_set(err, SK_ERR_INVALID, "the command is an empty string");
	if (strchr(cmd, '/')) {
		if (cmd[0] != '/' || exists_in_root(rootfd, cmd))
			return 0; /* relative paths depend on the working directory */
		return sk_error_set(err, SK_ERR_INVALID,
				    "command not found: %s does not exist in the image (or is not "
				    "an executable file)", cmd);
	}
	for (size_t i = 0; env && env[i]; i++)
		if (!strncmp(env[i], "PATH=", 5))
			path = env[i] + 5;
	copy = xstrdup(path);
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *full = xasprintf("%s/%s", dir, cmd);
		if (exists_in_root(rootfd, full))
			return 0;
	}
	return sk_error_set(err, SK_ERR_INVALID,
			    "command not found: \"%s\" is not in the image's PATH (%s); install it "
			    "in the image or give its full path",
			    cmd, path);
}

/* The overlay of lower with dir/upper and dir/work, at root_at (NULL: dir/rootfs). */
static int mount_overlay(const char *dir, const char *lower, const char *root_at, sk_error *err)
{
	_cleanup_free_ char *upper = xasprintf("%s/upper", dir);
	_cleanup_free_ char *work = xasprintf("%s/work", dir);
	_cleanup_free_ char *root = root_at ? xstrdup(root_at) : xasprintf("%s/rootfs", dir);
	_cleanup_free_ char *opts = NULL;

	if (sk_mkdir_p(upper, 0755, err) < 0 || sk_mkdir_p(work, 0700, err) < 0 ||
	    sk_mkdir_p(root, 0755, err) < 0)
		return -1;
	/* The upper's root is the merged root's: it must not keep the server's umask
	 * (and an image build keeps it as a layer). */
	chmod(upper, 0755);
	opts = xasprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
	if (mount("overlay", root, "overlay", MS_NODEV, opts) < 0)
		return sk_error_errno(err, errno, "cannot mount the container's root (overlayfs) at %s",
				      root);
	return 0;
}

/* c's process is up (or prepared for): its timers start and it is listed. */
static void container_running(rt *r, rt_container *c, int timeout)
{
	uv_timer_init(r->loop, &c->timer);
	c->timer.data = c;
	uv_timer_init(r->loop, &c->ready_timer);
	c->ready_timer.data = c;
	uv_timer_start(&c->timer, timeout_fired, (uint64_t)timeout * 1000, 0);
	c->next = r->containers;
	r->containers = c;
}

/* A container record for s, running from now, with nothing made on the host yet. */
static rt_container *container_new(rt *r, const rt_spec *s)
{
	rt_container *c = xcalloc(1, sizeof(*c));

	c->rt = r;
	c->id = xstrdup(s->id);
	c->image_id = xstrdup(s->image_id);
	c->state = RT_RUNNING;
	c->created_at = sk_wall_time();
	c->cpu = s->cpu;
	c->memory = s->memory;
	c->timeout = s->timeout;
	c->log_fd = -1;
	c->box.oom_efd = -1;
	c->dir = xasprintf("%s/%s", r->containers_dir, s->id);
	rt_stream_init(&c->log);
	return c;
}

int rt_container_start(rt *r, const rt_spec *s, rt_container **out, sk_error *err)
{
	rt_container *c;
	_cleanup_free_ char *etc = NULL, *cfg = NULL, *logpath = NULL;
	json_t *config;
	oci_spec os = { 0 };

	if (r->shutting_down)
		return sk_error_set(err, SK_ERR_UNAVAILABLE, "the server is shutting down");
	c = container_new(r, s);
	c->save_upper = s->save_upper ? xstrdup(s->save_upper) : NULL;
	c->main = proc_new(c, xstrdup(s->id), s->tty);

	if (sk_mkdir_p(c->dir, 0700, err) < 0 || write_etc(c->dir, s->hostname ? s->hostname : s->id, err) < 0 ||
	    mount_overlay(c->dir, s->lower, NULL, err) < 0)
		goto fail;
	if (cg_box_create(r->cg, s->id, s->memory * 1024 * 1024, &c->box, err) < 0)
		goto fail;
	etc = xasprintf("%s/etc", c->dir);
	os.argv = s->argv;
	os.uid = s->uid;
	os.gid = s->gid;
	os.env = s->env;
	os.cwd = s->workdir;
	os.hostname = s->hostname ? s->hostname : s->id;
	os.mounts = s->mounts;
	os.n_mounts = s->n_mounts;
	os.gpu_devices = s->gpu_devices;
	os.hidepid = s->hidepid;
	os.cgroups_path = c->box.ctr_path;
	os.cpu = s->cpu;
	os.block_network = s->block_network;
	os.tty = s->tty;
	os.rows = s->rows;
	os.cols = s->cols;
	os.etc_dir = etc;
	config = oci_config(&os);
	cfg = xasprintf("%s/config.json", c->dir);
	if (json_dump_file(config, cfg, JSON_COMPACT) < 0) {
		json_decref(config);
		sk_error_errno(err, errno, "cannot write %s", cfg);
		goto fail;
	}
	json_decref(config);
	logpath = xasprintf("%s/%s.log", r->logs_dir, s->id);
	c->log_fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	char *argv[] = { r->runtime, "--root", r->state_dir, "run", "--bundle", c->dir, c->id, NULL };
	if (proc_spawn(r, c->main, argv, s->rows, s->cols, err) < 0) {
		c->main = NULL; /* freed once its handles have closed */
		goto fail;
	}
	container_running(r, c, s->timeout);
	*out = c;
	return 0;
fail:
	container_cleanup(c);
	if (c->log_fd >= 0)
		close(c->log_fd);
	container_free(c);
	return -1;
}

/* ---- adopted containers (forks of snapshot templates) ------------------------ */

static void adopted_ended(rt_container *c, int returncode)
{
	rt_proc *p = c->main;

	if (p->exited)
		return;
	p->exited = true;
	p->returncode = returncode;
	if (!c->awaiting) {
		uv_poll_stop(&p->pidpoll);
		proc_close_handle(p, (uv_handle_t *)&p->pidpoll);
		close(p->pidfd);
		p->pidfd = -1;
	}
	c->awaiting = false;
	p->stdin_closed = true;
	proc_close_handle(p, (uv_handle_t *)&p->in);
	/* Output still in the FIFOs is read until their EOF, as a runtime's pipes are. */
	for (int i = 0; i < 2; i++)
		if (c->fifo_hold[i] >= 0) {
			close(c->fifo_hold[i]);
			c->fifo_hold[i] = -1;
		}
	container_ended(c);
}

static void pid_ended(uv_poll_t *h, int status, int events)
{
	rt_proc *p = h->data;
	rt_container *c = p->c;

	(void)status;
	(void)events;
	adopted_ended(c, c->oom || cg_box_oom(c->rt->cg, &c->box) || c->terminated || c->timed_out
				 ? 137
				 : 0);
}

static int open_fifo(rt_container *c, const char *dir, int i, int *rfd, sk_error *err)
{
	c->fifo[i] = xasprintf("%s/%s.%d", dir, c->id, i + 1);
	unlink(c->fifo[i]);
	if (mkfifo(c->fifo[i], 0600) < 0)
		return sk_error_errno(err, errno, "cannot make %s", c->fifo[i]);
	*rfd = open(c->fifo[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (*rfd < 0)
		return sk_error_errno(err, errno, "cannot open %s", c->fifo[i]);
	c->fifo_hold[i] = open(c->fifo[i], O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (c->fifo_hold[i] < 0) {
		close(*rfd);
		*rfd = -1;
		return sk_error_errno(err, errno, "cannot open %s", c->fifo[i]);
	}
	return 0;
}

int rt_container_prepare(rt *r, const rt_spec *s, rt_container **out, sk_error *err)
{
	rt_container *c;
	rt_proc *p;
	int rfd[2] = { -1, -1 };
	_cleanup_free_ char *logpath = NULL;

	if (r->shutting_down)
		return sk_error_set(err, SK_ERR_UNAVAILABLE, "the server is shutting down");
	c = container_new(r, s);
	c->fifo_hold[0] = c->fifo_hold[1] = -1;
	c->adopted = c->awaiting = true;
	c->root_at = xstrdup(s->root_at);
	if (sk_mkdir_p(c->dir, 0700, err) < 0 || sk_mkdir_p(s->root_at, 0755, err) < 0 ||
	    (s->lower && rt_container_mount_root(c, s->lower, err) < 0) ||
	    cg_box_create(r->cg, s->id, s->memory * 1024 * 1024, &c->box, err) < 0 ||
	    open_fifo(c, s->fifo_dir, 0, &rfd[0], err) < 0 ||
	    open_fifo(c, s->fifo_dir, 1, &rfd[1], err) < 0) {
		for (int i = 0; i < 2; i++)
			if (rfd[i] >= 0)
				close(rfd[i]);
		container_cleanup(c);
		container_free(c);
		return -1;
	}
	logpath = xasprintf("%s/%s.log", r->logs_dir, s->id);
	c->log_fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	c->main = p = proc_new(c, xstrdup(s->id), false);
	p->pidfd = -1;
	uv_pipe_init(r->loop, &p->in, 0);
	uv_pipe_init(r->loop, &p->outp, 0);
	uv_pipe_init(r->loop, &p->errp, 0);
	p->in.data = p->outp.data = p->errp.data = p;
	uv_pipe_open(&p->outp, rfd[0]);
	uv_pipe_open(&p->errp, rfd[1]);
	uv_read_start((uv_stream_t *)&p->outp, alloc_cb, read_out);
	uv_read_start((uv_stream_t *)&p->errp, alloc_cb, read_err);
	p->spawned = true;
	p->open_handles = 3;
	r->live_procs++;
	container_running(r, c, s->timeout);
	*out = c;
	return 0;
}

typedef struct adopt_job {
	uv_work_t req;
	rt_container *c;
	const cg_host *cg;
	cg_box box;             /* a copy of the container's (its own rel) */
	int pid;
	double cpu;
	int rc;
	sk_error err;
	rt_adopted_fn done;
	void *data;
} adopt_job;

static void adopt_work(uv_work_t *req)
{
	adopt_job *j = req->data;

	j->rc = cg_box_attach(j->cg, &j->box, j->pid, j->cpu, &j->err);
}

static void adopt_after(uv_work_t *req, int status)
{
	adopt_job *j = req->data;
	rt_container *c = j->c;
	rt *r = c->rt;
	bool ok = status == 0 && j->rc == 0;

	c->adopting = false;
	if (c->state == RT_RUNNING) {
		if (!ok) {
			log_warn("container %s: %s", c->id,
				 status ? uv_strerror(status) : j->err.msg);
			rt_container_kill(c);
		}
		j->done(c, ok && !c->terminated && !c->timed_out, j->data);
	}
	if (c->cleaned) {
		/* It ended while it was being moved: the move may have made its
		 * groups again after they were removed (v1: mkdir in each hierarchy). */
		cg_box_destroy(j->cg, &j->box, NULL);
	} else {
		free(j->box.rel);
	}
	free(j);
	r->live_procs--;
	maybe_shutdown_done(r);
}

int rt_container_mount_root(rt_container *c, const char *lower, sk_error *err)
{
	if (!c->adopted || c->root_mounted)
		return sk_error_set(err, SK_ERR_CONFLICT, "container %s has its root", c->id);
	if (mount_overlay(c->dir, lower, c->root_at, err) < 0)
		return -1;
	c->root_mounted = true;
	return 0;
}

int rt_container_adopt(rt_container *c, int pid, rt_adopted_fn done, void *data, sk_error *err)
{
	rt_proc *p = c->main;
	adopt_job *j;
	int fd;

	if (!c->adopted || !c->awaiting || c->state != RT_RUNNING)
		return sk_error_set(err, SK_ERR_CONFLICT, "container %s is not waiting for a process",
				    c->id);
	fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return sk_error_errno(err, errno, "pidfd_open %d", pid);
	j = xcalloc(1, sizeof(*j));
	j->req.data = j;
	j->c = c;
	j->cg = c->rt->cg;
	j->box.rel = xstrdup(c->box.rel);
	j->box.oom_efd = -1;
	j->pid = pid;
	j->cpu = c->cpu;
	j->done = done;
	j->data = data;
	if (uv_queue_work(c->rt->loop, &j->req, adopt_work, adopt_after) < 0) {
		free(j->box.rel);
		free(j);
		close(fd);
		return sk_error_set(err, SK_ERR_INTERNAL, "cannot queue the move of %d into its box",
				    pid);
	}
	c->rt->live_procs++; /* the job: shutdown waits for it */
	c->adopting = true;
	p->pidfd = fd;
	uv_poll_init(c->rt->loop, &p->pidpoll, fd);
	p->pidpoll.data = p;
	uv_poll_start(&p->pidpoll, UV_READABLE, pid_ended);
	p->open_handles++;
	c->awaiting = false;
	for (int i = 0; i < 2; i++) {
		close(c->fifo_hold[i]);
		c->fifo_hold[i] = -1;
	}
	uv_timer_stop(&c->timer);
	uv_timer_start(&c->timer, timeout_fired, (uint64_t)c->timeout * 1000, 0);
	return 0;
}

static bool container_ready(rt_container *c)
{
	_cleanup_free_ char *state = NULL;
	struct stat st;

	if (!c->ready) {
		state = xasprintf("%s/%s/state.json", c->rt->state_dir, c->id);
		c->ready = stat(state, &st) == 0;
	}
	return c->ready;
}

/* Starts the execs that waited for the container (or fails them if it is gone). */
static void start_pending(rt_container *c)
{
	sk_error err;

	for (rt_proc *p = c->execs; p; p = p->next) {
		if (p->spawned || p->exited || !p->pending_argv)
			continue;
		if (c->state == RT_RUNNING &&
		    proc_spawn(c->rt, p, p->pending_argv, p->rows, p->cols, &err) == 0) {
			if (p->pending_in.len || p->pending_eof) {
				sk_buf b = p->pending_in;
				sk_buf_init(&p->pending_in);
				rt_proc_write(p, b.base, b.len, p->pending_eof, NULL);
				sk_buf_release(&b);
			}
			continue;
		}
		if (c->state == RT_RUNNING)
			rt_stream_write(&p->err, err.msg, strlen(err.msg));
		else
			rt_stream_write(&p->err, "the sandbox ended before the process could start\n",
					strlen("the sandbox ended before the process could start\n"));
		p->exited = true;
		p->returncode = 126;
		rt_stream_close(&p->out);
		rt_stream_close(&p->err);
		proc_notify_done(p);
	}
}

static void ready_poll(uv_timer_t *t)
{
	rt_container *c = t->data;

	if (c->state == RT_RUNNING && !container_ready(c))
		return;
	uv_timer_stop(t);
	c->ready_timer_on = false;
	start_pending(c);
}

int rt_exec(rt_container *c, const char *const *argv, const char *const *env, const char *workdir,
	    bool tty, unsigned rows, unsigned cols, rt_proc **out, sk_error *err)
{
	rt *r = c->rt;
	rt_proc *p;
	char **args;
	size_t n = 0, na = 0, ne = 0;

	if (c->state != RT_RUNNING)
		return sk_error_set(err, SK_ERR_CONFLICT, "sandbox %s is no longer running", c->id);
	if (c->adopted)
		return sk_error_set(err, SK_ERR_INVALID,
				    "container %s was started from a memory snapshot: it has no "
				    "runtime to exec in",
				    c->id);
	while (argv[na])
		na++;
	while (env && env[ne])
		ne++;
	args = xcalloc(8 + 2 * ne + na + 1, sizeof(char *));
	args[n++] = r->runtime;
	args[n++] = "--root";
	args[n++] = r->state_dir;
	args[n++] = "exec";
	if (tty)
		args[n++] = "--tty";
	if (workdir) {
		args[n++] = "--cwd";
		args[n++] = (char *)workdir;
	}
	for (size_t i = 0; i < ne; i++) {
		args[n++] = "--env";
		args[n++] = (char *)env[i];
	}
	args[n++] = c->id;
	for (size_t i = 0; i < na; i++)
		args[n++] = (char *)argv[i];
	args[n] = NULL;
	p = proc_new(c, xasprintf("%s.e%u", c->id, ++c->n_exec), tty);
	p->rows = rows;
	p->cols = cols;
	if (container_ready(c)) {
		if (proc_spawn(r, p, args, rows, cols, err) < 0) {
			free(args); /* p is freed once its handles have closed */
			return -1;
		}
		free(args);
	} else {
		/* `runtime exec` fails before `runtime run` has created the container. */
		p->pending_argv = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			p->pending_argv[i] = xstrdup(args[i]);
		free(args);
		if (!c->ready_timer_on) {
			c->ready_timer_on = true;
			uv_timer_start(&c->ready_timer, ready_poll, 2, 2);
		}
	}
	p->next = c->execs;
	c->execs = p;
	*out = p;
	return 0;
}

void rt_shutdown(rt *r, void (*done)(void *data), void *data)
{
	r->shutting_down = true;
	r->shutdown_done = done;
	r->shutdown_data = data;
	for (rt_container *c = r->containers; c; c = c->next)
		rt_container_kill(c);
	maybe_shutdown_done(r);
}
