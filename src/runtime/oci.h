/*
 * The OCI runtime-spec config.json of a Skiff container.
 *
 * Namespaces: pid, mount, uts, ipc, and network when block_network (only
 * loopback inside).  Without block_network the container shares the host's
 * network, as Modal's containers reach the internet by default.  Mounts:
 * proc, a tmpfs /dev with devpts/shm/mqueue, sysfs and cgroup read-only, and
 * the bundle's own hostname/hosts/resolv.conf bound over /etc.  The
 * runtime's default capability set, no new privileges, the usual masked and
 * read-only /proc and /sys paths.  CPU is limited by CFS quota on the
 * container's cgroup; memory is limited one level up, on the box (cgroup.h).
 */
#ifndef SK_OCI_H
#define SK_OCI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct oci_mount {
	const char *source;      /* host path (file or folder) */
	const char *destination; /* path in the container */
	bool readonly;
	bool slave;              /* mounts made later on the host's source appear inside (rslave) */
} oci_mount;

typedef struct oci_spec {
	unsigned uid, gid;       /* the process's user (0: root) */
	const char *const *argv; /* NULL-terminated */
	const char *const *env;  /* "K=V", NULL-terminated; PATH/HOME/TERM defaults added */
	const char *cwd;         /* absolute; NULL = "/" */
	const char *hostname;
	const char *cgroups_path;
	double cpu;              /* cores; 0 = no limit */
	bool block_network;
	bool tty;
	unsigned rows, cols;
	const char *etc_dir;     /* host folder holding hostname, hosts, resolv.conf to bind */
	const oci_mount *mounts; /* extra bind mounts */
	size_t n_mounts;
	bool gpu_devices;        /* devices cgroup: allow NVIDIA's character devices */
	bool hidepid;            /* /proc shows only the processes one may ptrace (hidepid=2) */
} oci_spec;

/* The config.json object for a bundle whose root is "rootfs". */
json_t *oci_config(const oci_spec *s);
/* The "process" object alone, for `runc exec --process`. */
json_t *oci_process(const oci_spec *s);

#endif
