/*
 * Host cgroup detection and the per-container cgroup ("box") that Skiff owns.
 *
 * Layout: every container gets <base>/<id> (base = "skiff/<instance>", where
 * instance is derived from SKIFF_HOME so two servers never share a subtree).
 * Skiff sets the memory limit on the box itself; the OCI runtime is told to use
 * <base>/<id>/ctr as the container's cgroup and sets CPU and pids limits there.
 * Keeping the memory limit one level up is what makes out-of-memory kills
 * observable after the runtime has deleted its own cgroup:
 *   - v1: an eventfd registered on the box's memory.oom_control through
 *     cgroup.event_control fires when the box is under OOM (the OOM kill itself
 *     is only counted in the victim's cgroup, which the runtime removes);
 *   - v2: the box's memory.events is hierarchical, so its oom_kill counts kills
 *     in ctr too.
 *
 * Thread: called from the event-loop thread only (all calls are short syscalls).
 */
#ifndef SK_CGROUP_H
#define SK_CGROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

enum cg_mode {
	CG_MODE_V1,     /* only v1 hierarchies */
	CG_MODE_HYBRID, /* v1 controllers plus a v2 mount without controllers (this machine) */
	CG_MODE_V2,     /* pure unified hierarchy */
};

typedef struct cg_host {
	enum cg_mode mode;
	char *unified;      /* v2 mount point (also in hybrid mode), or NULL */
	char **v1_mounts;   /* every v1 hierarchy's mount point, incl. name=systemd */
	size_t n_v1;
	char *memory_v1;    /* the v1 memory hierarchy's mount point, or NULL */
	char *cpuacct_v1;   /* the v1 hierarchy with cpuacct (often "cpu,cpuacct"), or NULL */
	char *base;         /* "skiff/<instance>", relative to each hierarchy root */
} cg_host;

/*
 * Parses mountinfo text (the format of /proc/self/mountinfo) into h; h->base is
 * set to "skiff/<instance>".  Fails when no usable cgroup mount is found.
 */
int cg_parse_mountinfo(const char *mountinfo, const char *instance, cg_host *h, sk_error *err);
/* Reads /proc/self/mountinfo and calls cg_parse_mountinfo. */
int cg_detect(const char *instance, cg_host *h, sk_error *err);
void cg_host_release(cg_host *h);
/* "v1", "v1-hybrid" or "v2". */
const char *cg_mode_name(enum cg_mode mode);

typedef struct cg_box {
	char *rel;       /* "<base>/<id>" */
	char *ctr_path;  /* "/<base>/<id>/ctr": the OCI cgroupsPath */
	int oom_efd;     /* v1 only: eventfd armed on the box's memory.oom_control, or -1 */
} cg_box;

/*
 * Creates the box for container id with a memory limit in bytes (0 = none),
 * in the memory hierarchy (v1) or the unified one (v2, with the memory, cpu and
 * pids controllers enabled down the path), and arms OOM detection.
 */
int cg_box_create(const cg_host *h, const char *id, long long memory_bytes, cg_box *box,
		  sk_error *err);
/* Sets the box's memory limit (0 = none) on a box that exists (a warm container's). */
int cg_box_set_memory(const cg_host *h, const cg_box *box, long long memory_bytes, sk_error *err);
/*
 * Moves pid (and its threads) into the box, for a process that no OCI runtime
 * started (a fork of a snapshot template): into <base>/<id> of the v1
 * memory, cpu, cpuacct and pids hierarchies (it stays in its template's
 * devices, cpuset, freezer... groups), or <base>/<id>/ctr on v2 (the box's
 * own controllers are enabled for its children, so it holds no process
 * itself; runc's device filter of the template's group does not follow it),
 * with a CFS quota of cpu cores when cpu > 0 and the pids limit runtimes set.
 * Only the memory box (v2: ctr) must accept it; the others are best effort.
 */
int cg_box_attach(const cg_host *h, const cg_box *box, int pid, double cpu, sk_error *err);
/*
 * Makes the next cg_box_attach cheap (any box's): moves one of this box's
 * processes into the group it is already in.  That takes the kernel's cgroup
 * threadgroup lock for writing, whose RCU sync then stays entered for about a
 * grace period: a real move within ~10 ms does not wait for a grace period of
 * its own (~10-15 ms here).  For the thread pool; blocks for a grace period.
 */
void cg_box_prime(const cg_host *h, const cg_box *box);
/* True when a process in the box was killed for running out of memory. */
bool cg_box_oom(const cg_host *h, const cg_box *box);
/* Peak memory use of the box in bytes (0 when unknown). */
long long cg_box_peak_memory(const cg_host *h, const cg_box *box);
/*
 * CPU time used by the box's processes so far, in nanoseconds (0 when
 * unknown).  v2: usage_usec of the box's cpu.stat.  v1: cpuacct.usage of
 * <base>/<id> in the cpuacct hierarchy, which the runtime creates as the
 * parent of its ctr and which keeps counting what ctr used after the runtime
 * removes ctr; of <base>/<id>/ctr when only that is there.  Read it before
 * cg_box_destroy.
 */
long long cg_box_cpu_usage_ns(const cg_host *h, const cg_box *box);
/* Sends SIGKILL to every process in the box now (does not wait). */
void cg_box_kill(const cg_host *h, const cg_box *box);
/*
 * Kills whatever is still in the box and removes <base>/<id> (and ctr below
 * it) from every hierarchy, v1 and unified.  Frees the box's fields.
 */
int cg_box_destroy(const cg_host *h, cg_box *box, sk_error *err);
/*
 * Crash recovery: kills every process under <base> and removes every cgroup
 * below it in every hierarchy.  Returns the number of boxes removed, or -1.
 */
int cg_sweep(const cg_host *h, sk_error *err);

#endif
