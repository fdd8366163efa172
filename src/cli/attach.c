#include "cli/attach.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/term.h"
#include "util/xalloc.h"

#define INPUT_HIGH_WATER (256 * 1024)

typedef struct pump {
	int sock;
	bool stdin_open;   /* still reading stdin */
	bool shut_pending; /* stdin ended: shut the socket's write side once out drains */
	bool stdout_gone;  /* stdout closed: drop the process's output */
	sk_buf out;        /* stdin bytes not yet sent */
} pump;

void attach_resize(client *c, const char *process_id)
{
	_cleanup_free_ char *path = client_path("/v1/processes/", process_id, "/resize");
	int rows, cols;
	json_t *body;

	if (!term_winsize(STDIN_FILENO, &rows, &cols) && !term_winsize(STDOUT_FILENO, &rows, &cols))
		return;
	body = json_pack("{s:i,s:i}", "rows", rows, "cols", cols);
	client_call(c, "POST", path, body, NULL, NULL);
	json_decref(body);
}

static void write_stdout(pump *p, const char *data, size_t len)
{
	while (len && !p->stdout_gone) {
		ssize_t n = write(STDOUT_FILENO, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p->stdout_gone = true;
			break;
		}
		data += n;
		len -= (size_t)n;
	}
}

static void end_input(pump *p)
{
	p->stdin_open = false;
	if (p->out.len)
		p->shut_pending = true;
	else
		shutdown(p->sock, SHUT_WR);
}

static void flush_input(pump *p)
{
	while (p->out.len) {
		ssize_t n = send(p->sock, p->out.base, p->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			/* The server no longer takes input; its output may still come. */
			sk_buf_reset(&p->out);
			p->stdin_open = p->shut_pending = false;
			return;
		}
		sk_buf_consume(&p->out, (size_t)n);
	}
	if (p->shut_pending) {
		shutdown(p->sock, SHUT_WR);
		p->shut_pending = false;
	}
}

static void read_stdin(pump *p)
{
	char buf[16384];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		end_input(p);
		return;
	}
	sk_buf_add(&p->out, buf, (size_t)n);
	flush_input(p);
}

/* Returns false once the server has closed the pipe. */
static bool read_sock(pump *p, sk_error *err)
{
	char buf[65536];
	ssize_t n = recv(p->sock, buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return true;
	if (n < 0 && errno != ECONNRESET) {
		sk_error_errno(err, errno, "reading from the attached process");
		return false;
	}
	if (n <= 0)
		return false;
	write_stdout(p, buf, (size_t)n);
	return true;
}

/* Returns a signal that should end the attach, or 0. */
static int read_signals(int sigfd, client *c, const char *process_id, bool tty)
{
	unsigned char sigs[64];
	ssize_t n;
	int end = 0;

	while ((n = read(sigfd, sigs, sizeof(sigs))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (sigs[i] == SIGWINCH && tty)
				attach_resize(c, process_id);
			else if (sigs[i] != SIGWINCH)
				end = sigs[i];
		}
	return end;
}

static int pump_run(pump *p, int sigfd, client *c, const char *process_id, bool tty,
		    int *signo, sk_error *err)
{
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = p->sock, .events = POLLIN | (p->out.len ? POLLOUT : 0) },
			{ .fd = p->stdin_open && p->out.len < INPUT_HIGH_WATER ? STDIN_FILENO : -1,
			  .events = POLLIN },
			{ .fd = sigfd, .events = POLLIN },
		};

		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return sk_error_errno(err, errno, "poll");
		}
		if (pfd[2].revents && (*signo = read_signals(sigfd, c, process_id, tty)))
			return 0;
		if (pfd[0].revents & POLLOUT)
			flush_input(p);
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
			read_stdin(p);
		else if (pfd[1].revents & POLLNVAL)
			end_input(p);
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			sk_error rerr = { 0 };

			if (!read_sock(p, &rerr)) {
				if (rerr.msg[0] && err)
					*err = rerr;
				return rerr.msg[0] ? -1 : 0;
			}
		}
	}
}

static int wait_process(client *c, const char *process_id, attach_result *res, sk_error *err)
{
	_cleanup_free_ char *path = client_path("/v1/processes/", process_id, "/wait");
	json_t *j = NULL, *rc;

	if (client_call(c, "GET", path, NULL, &j, err) < 0)
		return sk_error_prefix(err, "cannot learn how process %s ended", process_id);
	rc = json_object_get(j, "returncode");
	res->returncode = json_is_integer(rc) ? (int)json_integer_value(rc) : 1;
	res->oom = json_is_true(json_object_get(j, "oom"));
	res->timed_out = json_is_true(json_object_get(j, "timed_out"));
	res->terminated = json_is_true(json_object_get(j, "terminated"));
	json_decref(j);
	return 0;
}

int attach_run(client *c, const char *process_id, bool tty, attach_result *res, sk_error *err)
{
	_cleanup_free_ char *path = client_path("/v1/processes/", process_id, "/attach");
	pump p = { .sock = -1, .stdin_open = true, .out = SK_BUF_INIT };
	sk_buf pending;
	int sigfd, rc;

	memset(res, 0, sizeof(*res));
	sigfd = term_signals_open(err);
	if (sigfd < 0)
		return -1;
	if (client_upgrade(c, path, "skiff-attach", &p.sock, &pending, err) < 0)
		return sk_error_prefix(err, "cannot attach to process %s", process_id);
	if (tty && isatty(STDIN_FILENO) && term_raw_enter(STDIN_FILENO, err) < 0) {
		close(p.sock);
		sk_buf_release(&pending);
		return -1;
	}
	write_stdout(&p, pending.base, pending.len);
	sk_buf_release(&pending);
	rc = pump_run(&p, sigfd, c, process_id, tty, &res->signo, err);
	term_restore();
	close(p.sock);
	sk_buf_release(&p.out);
	if (rc < 0 || res->signo)
		return rc;
	return wait_process(c, process_id, res, err);
}
