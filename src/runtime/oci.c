#include "runtime/oci.h"

#include <stdio.h>
#include <string.h>

#include "util/xalloc.h"

static const char *const default_caps[] = {
	"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",      "CAP_FOWNER",
	"CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",      "CAP_SETUID",
	"CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
	"CAP_KILL",    "CAP_AUDIT_WRITE",
};

static const char *const masked_paths[] = {
	"/proc/acpi",	     "/proc/asound",	 "/proc/kcore",	     "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi",	     "/sys/firmware",	 "/sys/devices/virtual/powercap",
};

static const char *const readonly_paths[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static json_t *strv(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; n ? i < n : v[i] != NULL; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static bool env_has(const char *const *env, const char *key)
{
	size_t n = strlen(key);

	for (size_t i = 0; env && env[i]; i++)
		if (!strncmp(env[i], key, n) && env[i][n] == '=')
			return true;
	return false;
}

json_t *oci_process(const oci_spec *s)
{
	json_t *env = json_array(), *caps = strv(default_caps, ARRAY_SIZE(default_caps));
	json_t *p;

	if (!env_has(s->env, "PATH"))
		json_array_append_new(
			env, json_string("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	if (!env_has(s->env, "HOME"))
		json_array_append_new(env, json_string("HOME=/root"));
	if (s->tty && !env_has(s->env, "TERM"))
		json_array_append_new(env, json_string("TERM=xterm-256color"));
	for (size_t i = 0; s->env && s->env[i]; i++)
		json_array_append_new(env, json_string(s->env[i]));
	p = json_pack("{s:b, s:{s:i, s:i}, s:o, s:o, s:s, s:{s:O, s:O, s:O}, s:b}",
		      "terminal", s->tty, "user", "uid", (int)s->uid, "gid", (int)s->gid, "args", strv(s->argv, 0), "env",
		      env, "cwd", s->cwd ? s->cwd : "/", "capabilities", "bounding", caps,
		      "effective", caps, "permitted", caps, "noNewPrivileges", 1);
	json_decref(caps);
	if (s->tty && s->rows && s->cols)
		json_object_set_new(p, "consoleSize",
				    json_pack("{s:i, s:i}", "height", (int)s->rows, "width", (int)s->cols));
	return p;
}

static json_t *mount(const char *dest, const char *type, const char *src, const char *opts)
{
	json_t *m = json_pack("{s:s, s:s, s:s}", "destination", dest, "type", type, "source", src);
	json_t *o = json_array();
	_cleanup_free_ char *copy = xstrdup(opts);
	char *save = NULL;

	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(o, json_string(t));
	json_object_set_new(m, "options", o);
	return m;
}

static json_t *bind_etc(const char *etc_dir, const char *name)
{
	_cleanup_free_ char *src = xasprintf("%s/%s", etc_dir, name);
	_cleanup_free_ char *dst = xasprintf("/etc/%s", name);

	return mount(dst, "bind", src, "rbind,rprivate,ro");
}

/* The character major of nvidia-uvm from /proc/devices, or -1. */
static int nvidia_uvm_major(void)
{
	FILE *f = fopen("/proc/devices", "re");
	char line[128], name[64];
	int major, found = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%d %63s", &major, name) == 2 && !strcmp(name, "nvidia-uvm"))
			found = major;
	fclose(f);
	return found;
}

json_t *oci_config(const oci_spec *s)
{
	json_t *mounts = json_array(), *ns = json_array(), *lin, *res;

	json_array_append_new(mounts, mount("/proc", "proc", "proc",
					    /* gid=: a group no process has (root's, the
					     * default, would see every process) */
					    s->hidepid ? "nosuid,noexec,nodev,hidepid=2,gid=2147483000"
						       : "nosuid,noexec,nodev"));
	json_array_append_new(mounts, mount("/dev", "tmpfs", "tmpfs",
					    "nosuid,strictatime,mode=755,size=65536k"));
	json_array_append_new(mounts, mount("/dev/pts", "devpts", "devpts",
					    "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"));
	json_array_append_new(mounts,
			      mount("/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=65536k"));
	json_array_append_new(mounts, mount("/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev"));
	json_array_append_new(mounts, mount("/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro"));
	json_array_append_new(mounts, mount("/sys/fs/cgroup", "cgroup", "cgroup",
					    "nosuid,noexec,nodev,relatime,ro"));
	json_array_append_new(mounts, mount("/tmp", "tmpfs", "tmpfs", "nosuid,nodev,mode=1777"));
	if (s->etc_dir) {
		json_array_append_new(mounts, bind_etc(s->etc_dir, "hostname"));
		json_array_append_new(mounts, bind_etc(s->etc_dir, "hosts"));
		json_array_append_new(mounts, bind_etc(s->etc_dir, "resolv.conf"));
	}

	for (size_t i = 0; i < s->n_mounts; i++)
		json_array_append_new(
			mounts, mount(s->mounts[i].destination, "bind", s->mounts[i].source,
				      s->mounts[i].slave ? (s->mounts[i].readonly
								    ? "rbind,rslave,ro,nosuid,nodev"
								    : "rbind,rslave,nosuid,nodev")
				      : s->mounts[i].readonly ? "rbind,rprivate,ro,nosuid,nodev"
							      : "rbind,rprivate,nosuid,nodev"));

	json_array_append_new(ns, json_pack("{s:s}", "type", "pid"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "mount"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "uts"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "ipc"));
	json_array_append_new(ns, json_pack("{s:s}", "type", "cgroup"));
	if (s->block_network)
		json_array_append_new(ns, json_pack("{s:s}", "type", "network"));

	res = json_pack("{s:[{s:b, s:s}]}", "devices", "allow", 0, "access", "rwm");
	if (s->gpu_devices) {
		/* 195: nvidia, nvidiactl; nvidia-uvm's major is dynamic (/proc/devices). */
		json_t *devs = json_object_get(res, "devices");
		json_array_append_new(devs, json_pack("{s:b, s:s, s:i, s:s}", "allow", 1, "type", "c",
						      "major", 195, "access", "rwm"));
		int uvm = nvidia_uvm_major();
		if (uvm > 0)
			json_array_append_new(devs, json_pack("{s:b, s:s, s:i, s:s}", "allow", 1, "type",
							      "c", "major", uvm, "access", "rwm"));
	}
	if (s->cpu > 0) {
		long long period = 100000, quota = (long long)(s->cpu * (double)period + 0.5);

		if (quota < 1000)
			quota = 1000;
		json_object_set_new(res, "cpu",
				    json_pack("{s:I, s:I}", "quota", (json_int_t)quota, "period",
					      (json_int_t)period));
	}
	json_object_set_new(res, "pids", json_pack("{s:i}", "limit", 32768));

	lin = json_pack("{s:o, s:o, s:o, s:o}", "namespaces", ns, "resources", res, "maskedPaths",
			  strv(masked_paths, ARRAY_SIZE(masked_paths)), "readonlyPaths",
			  strv(readonly_paths, ARRAY_SIZE(readonly_paths)));
	if (s->cgroups_path)
		json_object_set_new(lin, "cgroupsPath", json_string(s->cgroups_path));

	return json_pack("{s:s, s:o, s:{s:s, s:b}, s:s, s:o, s:o}", "ociVersion", "1.0.2",
			 "process", oci_process(s), "root", "path", "rootfs", "readonly", 0,
			 "hostname", s->hostname ? s->hostname : "skiff", "mounts", mounts, "linux", lin);
}
