/*
 * Containers: OCI bundles run by an OCI runtime binary (runc, crun, runsc).
 *
 * Each container lives in $SKIFF_HOME/containers/<id>/:
 *   rootfs/  an overlayfs mount: lower = the image's rootfs, upper/work below
 *   upper/, work/, etc/ (hostname, hosts, resolv.conf), config.json
 * and in a cgroup box (cgroup.h).  The main process is `RUNTIME run` in the
 * foreground, so the runtime's exit is the container's exit; exec'd
 * processes are `RUNTIME exec`.  Output is captured per stream (rt_stream)
 * and, for the main process, also appended to $SKIFF_HOME/logs/<id>.log.
 *
 * When the main process ends: the OOM flag is read from the box, then the
 * box is destroyed (killing any leftovers), the rootfs unmounted and the
 * bundle removed; then waiters and the on_exit callback run.
 *
 * Thread: the event-loop thread only.
 */
#ifndef SK_CONTAINER_H
#define SK_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "runtime/cgroup.h"
#include "runtime/oci.h"
#include "runtime/stream.h"
#include "util/buf.h"
#include "util/error.h"

typedef struct rt rt;
typedef struct rt_container rt_container;
typedef struct rt_proc rt_proc;
typedef struct rt_waiter rt_waiter;

struct rt_waiter {
	void (*fn)(rt_waiter *w, rt_proc *p);
	void *ctx;
	rt_waiter *next; /* private */
};

struct rt_proc {
	char *id;            /* "<container id>" for the main process, "<id>.e<N>" for execs */
	rt_container *c;
	bool tty;
	rt_stream out, err;  /* with a tty, err stays empty */
	bool done;
	int returncode;      /* valid when done: exit status, or 128 + signal */
	bool stdin_closed;
	double started_at;
	/* private */
	uv_process_t process;
	uv_pipe_t in, outp, errp;
	int open_handles;
	bool exited;
	bool spawned;        /* false while an exec waits for its container to be created */
	char **pending_argv; /* the runtime command line of a waiting exec */
	unsigned rows, cols;
	sk_buf pending_in;   /* stdin written before the spawn */
	bool pending_eof;
	rt_waiter *waiters;
	uv_poll_t pidpoll;   /* adopted containers: readable when the process has ended */
	int pidfd;
	rt_proc *next;
};

enum rt_state { RT_RUNNING, RT_EXITED };

struct rt_container {
	char *id;
	char *image_id;
	enum rt_state state;
	bool oom, timed_out, terminated;
	int returncode;      /* valid when exited */
	double created_at, ended_at;
	double cpu;          /* 0 = no limit */
	long long memory;    /* MiB, 0 = no limit */
	int timeout;         /* seconds */
	long long peak_memory;
	long long cpu_used_ns;  /* CPU time its processes used; read as it ends, like peak_memory */
	rt_proc *main;
	rt_proc *execs;      /* newest first */
	unsigned n_exec;
	rt_stream log;       /* the main process's stdout and stderr, interleaved */
	void *user;          /* the owner's data (e.g. the API's sandbox record) */
	/* Called with each piece of the main process's output (fd 1 or 2), if set. */
	void (*on_output)(rt_container *c, int fd, const char *data, size_t len);
	/* private */
	rt *rt;
	cg_box box;
	char *dir;
	int log_fd;
	uv_timer_t timer;
	uv_timer_t ready_timer; /* polls for the runtime's state while execs wait */
	bool ready_timer_on;
	bool ready;             /* the runtime has created the container */
	bool cleaned;
	char *save_upper;
	bool upper_saved;       /* save_upper now holds the upper folder */
	bool adopted;           /* made by rt_container_prepare: no runtime process */
	bool awaiting;          /* ... and its process not handed over yet */
	bool adopting;          /* ... handed over, still moving into its box */
	char *root_at;          /* adopted: where its root is mounted */
	bool root_mounted;      /* ... and it is */
	char *fifo[2];          /* adopted: its stdout and stderr FIFOs */
	int fifo_hold[2];       /* write ends kept until it is adopted (no early EOF) */
	rt_container *next;
};

typedef void (*rt_exit_fn)(rt_container *c, void *data);

/*
 * Sets up the runtime: folders under home, and recovery of what a previous
 * server left (containers still running, mounts, runtime state, cgroups).
 * runtime_path is the OCI runtime binary; on_exit runs after each container
 * has ended and been cleaned up.
 */
int rt_open(uv_loop_t *loop, const char *home, const cg_host *cg, const char *runtime_path,
	    rt_exit_fn on_exit, void *data, rt **out, sk_error *err);
/* Stops every container and calls done once all are cleaned up; then frees rt. */
void rt_shutdown(rt *r, void (*done)(void *data), void *data);
size_t rt_running(const rt *r);
/*
 * Frees the output kept in memory for containers that ended more than
 * older_than seconds ago (their logs stay on disk).
 */
void rt_prune(rt *r, double older_than);

typedef struct rt_spec {
	const char *id;
	const char *image_id;
	const char *lower;                /* the image's rootfs */
	const char *const *argv;          /* NULL-terminated, non-empty */
	const char *const *env;           /* "K=V", NULL-terminated, may be NULL */
	const char *workdir;              /* absolute or NULL */
	double cpu;
	long long memory;                 /* MiB */
	int timeout;                      /* seconds, > 0 */
	bool block_network;
	bool tty;
	unsigned rows, cols;
	const oci_mount *mounts;          /* extra bind mounts */
	size_t n_mounts;
	const char *hostname;             /* NULL: the id */
	bool gpu_devices;                 /* allow the NVIDIA device nodes bound in */
	unsigned uid, gid;                /* the main process's user (0: root) */
	const char *save_upper;           /* image builds: on exit 0, the overlay's upper
					   * folder (what the command changed) moves here */
	bool hidepid;                     /* /proc shows only what one may ptrace */
	const char *root_at;              /* rt_container_prepare: mount its root here */
	const char *fifo_dir;             /* rt_container_prepare: <fifo_dir>/<id>.1 and .2 */
} rt_spec;

/*
 * Looks for argv[0] in the image (a path, or a name on PATH, taken from env
 * when it sets PATH).  SK_ERR_INVALID when it is not there.  lower may be a
 * ':'-joined chain of layers (found in any of them counts).
 */
int rt_check_command(const char *lower, const char *cmd, const char *const *env, sk_error *err);

int rt_container_start(rt *r, const rt_spec *spec, rt_container **out, sk_error *err);
/*
 * A container whose process is made by someone else -- a fork of a snapshot
 * template (server/snapshot.c) -- and handed over with rt_container_adopt:
 * its root (an overlay of spec->lower, upper and work in its own folder) is
 * mounted at spec->root_at, its box is made with spec->memory, and its
 * stdout and stderr are the FIFOs <fifo_dir>/<id>.1 and .2 (read like a
 * runtime's pipes, into its log and on_output).  Until adopted it ends when
 * killed (at once), or after spec->timeout.  Exec is refused.  With
 * spec->lower NULL its root is mounted later, by rt_container_mount_root.
 */
int rt_container_prepare(rt *r, const rt_spec *spec, rt_container **out, sk_error *err);
int rt_container_mount_root(rt_container *c, const char *lower, sk_error *err);
typedef void (*rt_adopted_fn)(rt_container *c, bool ok, void *data);
/*
 * Hands the container its process: the container ends when pid (a host pid)
 * does (a pidfd), and pid moves into the box with the spec's cpu quota.  The
 * move runs on libuv's thread pool (a cgroup v1 migration waits for an RCU
 * grace period, ~10 ms, which the loop should not); done runs on the loop
 * thread after it -- ok false when it failed (the container is then being
 * killed) or the container is being killed anyway -- unless the container
 * ended first.  Its exit status is not known (0, or 137 when it was killed or
 * ran out of memory).  The spec's timeout starts now.
 */
int rt_container_adopt(rt_container *c, int pid, rt_adopted_fn done, void *data, sk_error *err);
rt_container *rt_container_find(rt *r, const char *id);
/* Every container this server ran, newest first (a NULL-terminated walk via ->next). */
rt_container *rt_containers(rt *r);
/* Kills the container (terminated = true unless it already ended). */
void rt_container_kill(rt_container *c);

int rt_exec(rt_container *c, const char *const *argv, const char *const *env, const char *workdir,
	    bool tty, unsigned rows, unsigned cols, rt_proc **out, sk_error *err);
/* The main process or an exec process, by id. */
rt_proc *rt_proc_find(rt *r, const char *proc_id);

/* Writes to the process's stdin; eof closes it after the bytes. */
int rt_proc_write(rt_proc *p, const void *data, size_t len, bool eof, sk_error *err);
int rt_proc_resize(rt_proc *p, unsigned rows, unsigned cols, sk_error *err);
/* w->fn runs once when p is done (right away if it is). */
void rt_proc_wait(rt_proc *p, rt_waiter *w);
void rt_proc_unwait(rt_proc *p, rt_waiter *w);

/* Unmounts everything mounted at or below dir (the host's view), deepest first. */
void rt_umount_below(const char *dir);

#endif
