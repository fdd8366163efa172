/*
 * `skiff server`: sets up SKIFF_HOME, takes its lock, detects the host,
 * recovers from a previous crash, serves the API on the unix socket, and on
 * SIGTERM/SIGINT stops every container and leaves nothing behind.
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "server/fn_internal.h"
#include "server/functions.h"
#include "server/internal.h"
#include "server/usage.h"
#include "util/buf.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/sha256.h"
#include "util/xalloc.h"
#include "web/gateway.h"

char *server_default_home(void)
{
	const char *h = getenv("SKIFF_HOME");
	struct passwd *pw;

	if (h && *h)
		return xstrdup(h);
	h = getenv("HOME");
	if ((!h || !*h) && (pw = getpwuid(getuid())))
		h = pw->pw_dir;
	return xasprintf("%s/.skiff", h && *h ? h : "/root");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: skiff server [--home DIR] [--runtime runc|crun|runsc] "
		   "[--log-level debug|info|warn|error] [--heartbeat-timeout SECONDS]\n"
		   "       [--reserve CPUS[,MEMORY_MIB]] [--fake-gpus TYPE:N,...]\n"
		   "       [--web-port PORT] [--web-host ADDR] [--web-domain DOMAIN]\n"
		   "Web endpoints are served on --web-host (default 127.0.0.1) port --web-port\n"
		   "(default 8000; 0 = any free port) at /<app>/<label>, and with --web-domain\n"
		   "also at Host <app>--<label>.<domain>.\n"
		   "Runs the Skiff server in the foreground; SIGTERM or Ctrl-C stops it.\n");
}

static char *find_binary(const char *name)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *copy = xstrdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	char *save = NULL;
	static const char *const extra[] = { "/usr/local/sbin", "/usr/sbin", "/sbin" };

	for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *p = xasprintf("%s/%s", d, name);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	for (size_t i = 0; i < ARRAY_SIZE(extra); i++) {
		char *p = xasprintf("%s/%s", extra[i], name);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

/* crun on pure cgroup v2, runc on v1/hybrid (crun needs v2 for its limits there). */
static int pick_runtime(skiff_server *s, const char *asked, sk_error *err)
{
	const char *first = s->cg.mode == CG_MODE_V2 ? "crun" : "runc";
	const char *second = s->cg.mode == CG_MODE_V2 ? "runc" : "crun";

	if (asked) {
		if (strcmp(asked, "runc") && strcmp(asked, "crun") && strcmp(asked, "runsc"))
			return sk_error_set(err, SK_ERR_INVALID,
					    "unknown runtime \"%s\": use runc, crun or runsc", asked);
		s->runtime_path = find_binary(asked);
		if (!s->runtime_path)
			return sk_error_set(err, SK_ERR_INVALID,
					    "runtime %s is not installed (not on PATH)%s", asked,
					    strcmp(asked, "runsc") ? "; run scripts/install-deps.sh"
								    : "; install gVisor's runsc");
		s->runtime_name = !strcmp(asked, "runc") ? "runc" : !strcmp(asked, "crun") ? "crun" : "runsc";
		return 0;
	}
	if ((s->runtime_path = find_binary(first))) {
		s->runtime_name = first;
		return 0;
	}
	if ((s->runtime_path = find_binary(second))) {
		log_warn("%s is not installed; using %s instead", first, second);
		s->runtime_name = second;
		return 0;
	}
	return sk_error_set(err, SK_ERR_INVALID,
			    "no OCI runtime found (runc or crun); run scripts/install-deps.sh");
}

/* ---- lock --------------------------------------------------------------------------- */

static int take_lock(const char *home, int *fd_out, sk_error *err)
{
	_cleanup_free_ char *path = xasprintf("%s/server.lock", home);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	char buf[32] = "";

	if (fd < 0)
		return sk_error_errno(err, errno, "cannot open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = 0;
		buf[strcspn(buf, "\n")] = 0;
		close(fd);
		return sk_error_set(err, SK_ERR_CONFLICT,
				    "another skiff server (pid %s) is already running with "
				    "SKIFF_HOME=%s; stop it first, or give this one another --home",
				    *buf ? buf : "?", home);
	}
	snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, strlen(buf), 0) < 0)
		log_warn("cannot write %s: %s", path, strerror(errno));
	*fd_out = fd;
	return 0;
}

/* ---- stop --------------------------------------------------------------------------- */

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Once the runtime and the image store are both closed, the rest can go. */
static void maybe_stopped(skiff_server *s)
{
	if (s->rt || s->images)
		return;
	log_info("stopped");
	uv_walk(s->loop, close_walk, NULL);
}

static void images_closed(void *data)
{
	skiff_server *s = data;

	s->images = NULL;
	maybe_stopped(s);
}

static void runtime_stopped(void *data)
{
	skiff_server *s = data;

	s->rt = NULL;
	maybe_stopped(s);
}

static void stop(skiff_server *s, int signum)
{
	image_store *images = s->images;

	if (s->stopping) {
		log_warn("still stopping: waiting for %zu containers", s->rt ? rt_running(s->rt) : 0);
		return;
	}
	s->stopping = true;
	log_info("%s: stopping %zu running containers", strsignal(signum), rt_running(s->rt));
	uv_signal_stop(&s->sigterm);
	/* Builds in flight end their streams with an error before connections close. */
	image_store_close(images, images_closed, s);
	if (s->fns->gw)
		gateway_close(s->fns->gw);
	s->fns->gw = NULL;
	fn_server_stop(s->fns);
	http_server_close(s->http);
	s->http = NULL;
	rt_shutdown(s->rt, runtime_stopped, s);
}

static void on_signal(uv_signal_t *h, int signum)
{
	stop(h->data, signum);
}

/* ---- main --------------------------------------------------------------------------- */

static long long machine_memory_mib(void)
{
	struct sysinfo si;

	if (sysinfo(&si) < 0)
		return 0;
	return (long long)si.totalram * si.mem_unit / (1024 * 1024);
}

int server_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "home", required_argument, NULL, 'H' },
		{ "runtime", required_argument, NULL, 'r' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "heartbeat-timeout", required_argument, NULL, 'b' },
		{ "fake-gpus", required_argument, NULL, 'g' },
		{ "reserve", required_argument, NULL, 'R' },
		{ "web-port", required_argument, NULL, 'P' },
		{ "web-host", required_argument, NULL, 'W' },
		{ "web-domain", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	skiff_server srv = { 0 }, *s = &srv;
	_cleanup_free_ char *home_arg = NULL, *sock = NULL, *dbpath = NULL;
	const char *runtime = NULL, *fake_gpus = NULL;
	char real[PATH_MAX], hash[65];
	int c, lock_fd = -1, rc = 1;
	sk_error err;
	gw_opts web = { .host = "127.0.0.1", .port = 8000 };

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'H':
			free(home_arg);
			home_arg = xstrdup(optarg);
			break;
		case 'r':
			runtime = optarg;
			break;
		case 'l':
			if (!strcmp(optarg, "debug"))
				sk_log_set_level(SK_LOG_DEBUG);
			else if (!strcmp(optarg, "info"))
				sk_log_set_level(SK_LOG_INFO);
			else if (!strcmp(optarg, "warn"))
				sk_log_set_level(SK_LOG_WARN);
			else if (!strcmp(optarg, "error"))
				sk_log_set_level(SK_LOG_ERROR);
			else {
				fprintf(stderr, "skiff server: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'b':
			s->heartbeat_timeout = atof(optarg);
			if (!(s->heartbeat_timeout > 0)) {
				fprintf(stderr, "skiff server: --heartbeat-timeout needs seconds > 0\n");
				return 2;
			}
			break;
		case 'g':
			fake_gpus = optarg;
			break;
		case 'R': {
			char *end;
			s->reserve_cpu = strtod(optarg, &end);
			if (*end == ',')
				s->reserve_memory = strtoll(end + 1, &end, 10);
			if (*end || s->reserve_cpu < 0 || s->reserve_memory < 0) {
				fprintf(stderr, "skiff server: --reserve takes CPUS[,MEMORY_MIB], "
						"e.g. 0.5,1024\n");
				return 2;
			}
			break;
		}
		case 'P': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 0 || v > 65535) {
				fprintf(stderr, "skiff server: --web-port takes a port 0..65535\n");
				return 2;
			}
			web.port = (int)v;
			web.port_given = true;
			break;
		}
		case 'W':
			web.host = optarg;
			break;
		case 'D':
			web.domain = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "skiff server: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "skiff server: needs root (it creates containers, mounts and cgroups); "
				"run it with sudo\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	s->home = home_arg ? xstrdup(home_arg) : server_default_home();
	if (sk_mkdir_p(s->home, 0700, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out;
	}
	if (!realpath(s->home, real)) {
		fprintf(stderr, "skiff server: %s: %s\n", s->home, strerror(errno));
		goto out;
	}
	free(s->home);
	s->home = xstrdup(real);
	if (take_lock(s->home, &lock_fd, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out;
	}
	sha256_hex(s->home, strlen(s->home), hash);
	s->instance = xstrndup(hash, 12);
	if (cg_detect(s->instance, &s->cg, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out;
	}
	if (pick_runtime(s, runtime, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out;
	}
	s->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	s->memory_mib = machine_memory_mib();
	if (s->reserve_cpu >= s->cpus || s->reserve_memory >= s->memory_mib) {
		fprintf(stderr, "skiff server: --reserve %g,%lld leaves nothing of this machine's %d "
				"CPUs and %lld MiB\n",
			s->reserve_cpu, s->reserve_memory, s->cpus, s->memory_mib);
		goto out;
	}
	if ((fake_gpus ? gpu_parse_fake(fake_gpus, &s->gpus, &s->n_gpus, &err)
		       : gpu_detect(&s->gpus, &s->n_gpus, &err)) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out;
	}
	s->gpu_owner = xcalloc(s->n_gpus + 1, sizeof(*s->gpu_owner));
	log_info("skiff server %s starting: home %s, pid %d", SKIFF_SERVER_VERSION, s->home,
		 (int)getpid());
	log_info("detected: cgroup %s (cgroups under %s), OCI runtime %s (%s), %d CPUs, %lld MiB memory",
		 cg_mode_name(s->cg.mode), s->cg.base, s->runtime_name, s->runtime_path, s->cpus,
		 s->memory_mib);
	{
		sk_buf g = SK_BUF_INIT;
		for (size_t i = 0; i < s->n_gpus; i++)
			sk_buf_addf(&g, "%s%d:%s", i ? ", " : "", s->gpus[i].index, s->gpus[i].type);
		log_info("GPUs: %s%s; reserved for the server: %g CPUs, %lld MiB",
			 s->n_gpus ? g.base : "none", fake_gpus ? " (fake, --fake-gpus)" : "",
			 s->reserve_cpu, s->reserve_memory);
		sk_buf_release(&g);
	}

	s->loop = xmalloc(sizeof(uv_loop_t));
	uv_loop_init(s->loop);
	dbpath = xasprintf("%s/state.db", s->home);
	if (store_open(dbpath, &s->store, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	int lost = store_container_mark_lost(s->store, &err);
	if (lost > 0)
		log_info("%d containers were running when the server last stopped; marked ended", lost);
	if (rt_open(s->loop, s->home, &s->cg, s->runtime_path, api_container_exited, s, &s->rt,
		    &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	if (image_store_open(s->loop, s->home, s->store, &s->images, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	log_info("images: Debian bookworm from %s", image_store_mirror(s->images));
	if (fn_server_open(s, &s->fns, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	if (gateway_open(s->fns, &web, &s->fns->gw, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	deploy_restore(s->fns);
	sock = xasprintf("%s/skiff.sock", s->home);
	unlink(sock); /* stale: the lock says no server owns it */
	if (http_server_listen_unix(s->loop, sock, api_handle, s, &s->http, &err) < 0) {
		fprintf(stderr, "skiff server: %s\n", err.msg);
		goto out_loop;
	}
	uv_signal_init(s->loop, &s->sigterm);
	uv_signal_init(s->loop, &s->sigint);
	s->sigterm.data = s->sigint.data = s;
	uv_signal_start(&s->sigterm, on_signal, SIGTERM);
	uv_signal_start(&s->sigint, on_signal, SIGINT);
	log_info("listening on unix:%s", sock);

	uv_run(s->loop, UV_RUN_DEFAULT);
	rc = 0;
	unlink(sock);
out_loop:
	if (rc != 0) {
		/* Failed during start: close what was opened. */
		if (s->images)
			image_store_close(s->images, NULL, NULL);
		if (s->rt)
			rt_shutdown(s->rt, NULL, NULL);
		uv_walk(s->loop, close_walk, NULL);
		uv_run(s->loop, UV_RUN_DEFAULT);
	}
	if (s->fns)
		fn_server_free(s->fns);
	usage_release(s);
	if (uv_loop_close(s->loop) != 0)
		log_warn("event loop closed with handles still open");
	free(s->loop);
	if (s->store)
		store_close(s->store);
out:
	cg_host_release(&s->cg);
	free(s->runtime_path);
	free(s->instance);
	free(s->gpus);
	free(s->gpu_owner);
	free(s->home);
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}
