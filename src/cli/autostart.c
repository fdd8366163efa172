#include "cli/autostart.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/connect.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

#define PROBE_TIMEOUT_MS 2000

static void close_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	for (long fd = lowfd, max = sysconf(_SC_OPEN_MAX); fd < (max > 0 ? max : 1024); fd++)
		close((int)fd);
}

/* In the child, between fork and exec: only plain system calls. */
static _Noreturn void child_exec(int nullfd, int logfd)
{
	char *argv[] = { "skiff", "server", NULL };
	static const int sigs[] = { SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH, SIGCHLD };
	sigset_t none;

	setsid();
	/* Above 2 first, so that dup2 below cannot clobber one with the other. */
	nullfd = fcntl(nullfd, F_DUPFD_CLOEXEC, 10);
	logfd = fcntl(logfd, F_DUPFD_CLOEXEC, 10);
	if (nullfd < 0 || logfd < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 ||
	    dup2(logfd, 2) < 0)
		_exit(127);
	close_from(3);
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv("/proc/self/exe", argv);
	dprintf(2, "skiff: cannot run /proc/self/exe server: %s\n", strerror(errno));
	_exit(127);
}

int autostart_spawn(const char *home, pid_t *pid, sk_error *err)
{
	_cleanup_free_ char *log = xasprintf("%s/server.log", home);
	_cleanup_close_ int logfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	_cleanup_close_ int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t p;

	if (logfd < 0)
		return sk_error_errno(err, errno, "cannot open %s", log);
	if (nullfd < 0)
		return sk_error_errno(err, errno, "cannot open /dev/null");
	fflush(NULL);
	p = fork();
	if (p < 0)
		return sk_error_errno(err, errno, "fork");
	if (p == 0)
		child_exec(nullfd, logfd);
	*pid = p;
	return 0;
}

/* The log's last lines written after offset, for an error message. */
static char *log_tail(const char *log, off_t offset)
{
	_cleanup_free_ char *text = NULL;
	size_t len, start;
	int lines = 0;

	if (sk_read_file(log, &text, &len, NULL) < 0 || (size_t)offset >= len)
		return xstrdup("");
	while (len > (size_t)offset && (text[len - 1] == '\n' || text[len - 1] == ' '))
		len--;
	for (start = len; start > (size_t)offset; start--)
		if (text[start - 1] == '\n' && ++lines == 3)
			break;
	return xstrndup(text + start, len - start);
}

/* One GET /v1/health on a fresh connection, bounded by PROBE_TIMEOUT_MS. */
static bool healthy(client *c)
{
	client probe = { .ep = c->ep, .timeout_ms = PROBE_TIMEOUT_MS };
	bool ok;

	probe.fd = connect_endpoint(&c->ep, PROBE_TIMEOUT_MS, NULL);
	if (probe.fd < 0)
		return false;
	sk_buf_init(&probe.rbuf);
	ok = client_call(&probe, "GET", "/v1/health", NULL, NULL, NULL) == 0;
	if (probe.fd >= 0)
		close(probe.fd);
	sk_buf_release(&probe.rbuf);
	return ok;
}

static int wait_healthy(client *c, pid_t pid, const char *log, off_t log_start, sk_error *err)
{
	unsigned long long deadline = sk_now_ns() + AUTOSTART_WAIT_MS * 1000000ull;
	struct timespec pause = { 0, 50 * 1000000 };
	int status;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			_cleanup_free_ char *tail = log_tail(log, log_start);

			return sk_error_set(err, SK_ERR_UNAVAILABLE,
					    "the background skiff server exited (%s %d) before it "
					    "answered; its log %s ends with:\n%s",
					    WIFEXITED(status) ? "status" : "signal",
					    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
					    log, tail);
		}
		if (healthy(c))
			return 0;
		if (sk_now_ns() > deadline)
			return sk_error_set(err, SK_ERR_UNAVAILABLE,
					    "the background skiff server (pid %d) did not answer within "
					    "%d s; see %s",
					    (int)pid, AUTOSTART_WAIT_MS / 1000, log);
		nanosleep(&pause, NULL);
	}
}

int autostart_server(client *c, sk_error *err)
{
	_cleanup_free_ char *lockpath = xasprintf("%s/cli-autostart.lock", c->home);
	_cleanup_free_ char *log = xasprintf("%s/server.log", c->home);
	_cleanup_close_ int lock = -1;
	struct stat st;
	off_t log_start;
	pid_t pid;
	int fd;

	if (sk_mkdir_p(c->home, 0700, err) < 0)
		return sk_error_prefix(err, "cannot create SKIFF_HOME");
	lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock < 0)
		return sk_error_errno(err, errno, "cannot open %s", lockpath);
	while (flock(lock, LOCK_EX) < 0)
		if (errno != EINTR)
			return sk_error_errno(err, errno, "cannot lock %s", lockpath);
	/* Another CLI may have started one while this one waited for the lock. */
	fd = connect_endpoint(&c->ep, c->timeout_ms, NULL);
	if (fd >= 0)
		return fd;
	log_start = stat(log, &st) == 0 ? st.st_size : 0;
	if (autostart_spawn(c->home, &pid, err) < 0)
		return sk_error_prefix(err, "cannot start a skiff server");
	if (wait_healthy(c, pid, log, log_start, err) < 0)
		return -1;
	fprintf(stderr, "skiff: started a server in the background (SKIFF_HOME=%s, log: %s)\n",
		c->home, log);
	fd = connect_endpoint(&c->ep, c->timeout_ms, err);
	return fd;
}
