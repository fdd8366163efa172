/*
 * libFuzzer target for the HTTP server (src/api/http.c), end to end.
 *
 * Once per process: a libuv loop and a server on a socket in a temporary
 * folder, with a handler that behaves like the real API's routes do: small
 * JSON answers, error answers, query lookups, chunked streams (at once, later,
 * large with back-pressure, and never ending), answers given a few loop turns
 * later, requests never answered, and upgrades to raw pipes (at once and
 * later) that echo what they get.
 *
 * Per input: byte 0 chooses how the rest is cut into writes (all at once, or
 * pieces of 1..64 bytes, or of 256-byte multiples), so that requests, headers
 * and bodies straddle reads and the loop turns between the pieces.  The rest
 * (up to 64 KiB) goes to the server over a fresh client connection, the loop
 * runs until things are quiet, the client shuts its write side, reads to EOF
 * and closes.  The loop then runs until the server has closed and freed the
 * connection: a connection left open is reported as a leak (abort).  Byte 0
 * = 0xff instead closes the whole server (http_server_close) while the client
 * is still connected, with whatever is in flight and answers the client has
 * not read yet, and starts it again.
 *
 * The bytes the server sent are checked to be well-framed HTTP responses (up
 * to a 101 and the raw pipe after it), unless a response stream of this input
 * was cut short by the client going away, which legitimately truncates it.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/http.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define INPUT_CAP (64 * 1024)
#define MAX_PIECES 256
#define BIG_TOTAL (512 * 1024)
#define BIG_CHUNK (64 * 1024)
#define BIG_HIGH (256 * 1024)

static uv_loop_t loop;
static http_server *srv;
static char sock_dir[64], sock_path[108];
static uv_timer_t tick;
static int baseline_handles;

/* What this input did that the output check must know about. */
static bool stream_cut;

/* ---- the handler ---------------------------------------------------------- */

enum pend_kind { P_JSON, P_STREAM, P_BIG, P_HANG, P_STREAM_HANG, P_ATTACH, P_RAW };

/* A request answered later (or never): owned by the handler until it ends. */
typedef struct pend {
	http_req *req;
	enum pend_kind kind;
	unsigned ticks; /* loop turns to wait */
	size_t left;    /* P_BIG: bytes still to stream */
	bool listed;
	struct pend *prev, *next;
} pend;

static pend *pend_head;

static void pend_list(pend *p)
{
	p->listed = true;
	p->prev = NULL;
	p->next = pend_head;
	if (pend_head)
		pend_head->prev = p;
	pend_head = p;
}

static void pend_unlist(pend *p)
{
	if (!p->listed)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		pend_head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->listed = false;
}

/* Lets go of req: no more callbacks for p, which is freed. */
static http_req *pend_drop(pend *p)
{
	http_req *req = p->req;

	pend_unlist(p);
	http_set_owner(req, NULL, NULL, NULL);
	free(p);
	return req;
}

static void on_abort(http_req *req, void *owner)
{
	pend *p = owner;

	if (p->kind == P_STREAM || p->kind == P_BIG || p->kind == P_STREAM_HANG)
		stream_cut = true;
	pend_unlist(p);
	free(p);
}

static void big_pump(pend *p)
{
	static char chunk[BIG_CHUNK];

	while (p->left && http_queued(p->req) < BIG_HIGH) {
		size_t n = p->left < BIG_CHUNK ? p->left : BIG_CHUNK;

		memset(chunk, 'a' + (int)(p->left % 26), n);
		http_stream_write(p->req, chunk, n);
		p->left -= n;
	}
	if (!p->left)
		http_stream_end(pend_drop(p));
}

static void on_drain(http_req *req, void *owner)
{
	pend *p = owner;

	if (p->kind == P_BIG)
		big_pump(p);
}

static void on_raw(http_req *req, void *owner, const char *data, size_t len)
{
	/* An EOT byte or the client's EOF closes the pipe; anything else echoes. */
	if (len)
		http_raw_write(req, data, len);
	if (!len || memchr(data, 4, len))
		http_raw_close(pend_drop(owner));
}

static void upgrade(pend *p)
{
	p->kind = P_RAW;
	http_upgrade(p->req, "skiff-attach", on_raw);
}

static void finish(pend *p)
{
	http_req *req;

	switch (p->kind) {
	case P_JSON:
		req = pend_drop(p);
		http_respond_json(req, 200, json_pack("{s:b}", "later", 1));
		break;
	case P_STREAM:
		req = pend_drop(p);
		http_stream_json(req, json_pack("{s:b}", "later", 1));
		http_stream_end(req);
		break;
	case P_ATTACH:
		pend_unlist(p);
		upgrade(p);
		break;
	default:
		pend_unlist(p);
		break;
	}
}

/*
 * Every listed request waits its ticks out, then is answered.  Answering runs
 * the handler for the next request in the pipeline, which may list more (they
 * wait at least one tick) or abort others (which unlists them), so the list is
 * searched afresh after each answer.
 */
static void on_tick(uv_timer_t *t)
{
	pend *p;

	for (p = pend_head; p; p = p->next)
		if (p->ticks)
			p->ticks--;
	for (;;) {
		for (p = pend_head; p && p->ticks; p = p->next)
			;
		if (!p)
			break;
		finish(p);
	}
	if (pend_head)
		uv_timer_start(t, on_tick, 0, 0);
}

static pend *pend_new(http_req *req, enum pend_kind kind)
{
	pend *p = xcalloc(1, sizeof(*p));
	char buf[8];

	p->req = req;
	p->kind = kind;
	p->ticks = 1;
	if (http_query_get(req, "t", buf, sizeof(buf)))
		p->ticks = 1 + (unsigned)(strtoul(buf, NULL, 10) % 8);
	http_set_owner(req, p, on_abort, on_drain);
	return p;
}

static void defer(pend *p)
{
	pend_list(p);
	uv_timer_start(&tick, on_tick, 0, 0);
}

/* Values are bytes (percent-decoding can make anything): answer with lengths. */
static void answer_query(http_req *req)
{
	char small[4], big[256], one[1];
	const char *a = http_query_get(req, "a", small, sizeof(small));
	const char *b = http_query_get(req, "follow", big, sizeof(big));
	const char *c = http_query_get(req, "", one, sizeof(one));

	http_respond_json(req, 200, json_pack("{s:i, s:i, s:b}", "a", a ? (int)strlen(a) : -1,
					      "follow", b ? (int)strlen(b) : -1, "empty", c != NULL));
}

static void handler(http_req *req, void *data)
{
	const char *path = req->path;

	if (!strcmp(path, "/stream")) {
		http_stream_start(req, 200, "application/x-ndjson");
		http_stream_json(req, json_pack("{s:s, s:I}", "path", path,
						"body", (json_int_t)req->body.len));
		http_stream_write(req, req->body.base, req->body.len);
		http_stream_end(req);
	} else if (!strcmp(path, "/stream/later")) {
		http_stream_start(req, 200, "application/x-ndjson");
		defer(pend_new(req, P_STREAM));
	} else if (!strcmp(path, "/stream/big")) {
		pend *p = pend_new(req, P_BIG);

		p->left = BIG_TOTAL;
		http_stream_start(req, 200, "application/octet-stream");
		big_pump(p);
	} else if (!strcmp(path, "/stream/hang")) {
		http_stream_start(req, 200, "application/octet-stream");
		http_stream_write(req, "partial", 7);
		pend_new(req, P_STREAM_HANG);
	} else if (!strcmp(path, "/later")) {
		defer(pend_new(req, P_JSON));
	} else if (!strcmp(path, "/hang")) {
		pend_new(req, P_HANG);
	} else if (!strcmp(path, "/attach") || !strcmp(path, "/attach/later")) {
		/* As the API does: the Upgrade header alone decides. */
		if (!req->upgrade || strcasecmp(req->upgrade, "skiff-attach")) {
			http_respond_errorf(req, SK_ERR_INVALID,
					    "attach needs `Connection: Upgrade` and `Upgrade: skiff-attach`");
			return;
		}
		pend *p = pend_new(req, P_ATTACH);

		if (!strcmp(path, "/attach"))
			upgrade(p);
		else
			defer(p);
	} else if (!strcmp(path, "/query")) {
		answer_query(req);
	} else if (!strncmp(path, "/error/", 7)) {
		http_respond_errorf(req, (enum sk_error_kind)(strlen(path) % 6), "no such thing: %s",
				    path + 7);
	} else if (!strcmp(path, "/empty")) {
		http_respond(req, 200, "text/plain", "", 0);
	} else {
		http_respond_json(req, 200,
				  json_pack("{s:s, s:I, s:I, s:b, s:b}", "method",
					    http_method_str(req->method), "path_len",
					    (json_int_t)strlen(path), "body",
					    (json_int_t)req->body.len, "auth", req->authorization != NULL,
					    "upgrade", req->upgrade != NULL));
	}
}

/* ---- the driver ----------------------------------------------------------- */

static void count_handle(uv_handle_t *h, void *arg)
{
	(*(int *)arg)++;
}

static int live_handles(void)
{
	int n = 0;

	uv_walk(&loop, count_handle, &n);
	return n;
}

static void start_server(void)
{
	sk_error err;

	if (http_server_listen_unix(&loop, sock_path, handler, NULL, &srv, &err) < 0) {
		fprintf(stderr, "fuzz_http: %s\n", err.msg);
		abort();
	}
}

static void remove_socket(void)
{
	unlink(sock_path);
	rmdir(sock_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(sock_dir, sizeof(sock_dir), "/tmp/skiff-fuzz-http-XXXXXX");
	if (!mkdtemp(sock_dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/s", sock_dir);
	atexit(remove_socket);
	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	start_server();
	baseline_handles = live_handles();
	return 0;
}

/* Reads what is there; returns 1 at EOF or a reset, else 0. */
static int drain(int fd, sk_buf *out, bool *progress)
{
	char buf[65536];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n > 0) {
			sk_buf_add(out, buf, (size_t)n);
			*progress = true;
			continue;
		}
		if (n == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : 1;
	}
}

/* One loop turn, then whatever the server sent. */
static int turn(int fd, sk_buf *out, bool *progress)
{
	uv_run(&loop, UV_RUN_NOWAIT);
	return drain(fd, out, progress);
}

/* Turns until nothing moves for a few turns in a row (or a bound). */
static void settle(int fd, sk_buf *out)
{
	for (int quiet = 0, i = 0; quiet < 4 && i < 2000; i++) {
		bool progress = false;

		turn(fd, out, &progress);
		quiet = progress || pend_head ? 0 : quiet + 1;
	}
}

/*
 * Closes the server under the open connection, before the client has read
 * what it was sent, then reads everything and listens again.
 */
static void restart_server(int fd, sk_buf *out)
{
	bool progress;
	int i;

	for (i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	http_server_close(srv);
	for (i = 0; i < 2000 && live_handles() > baseline_handles - 1; i++)
		turn(fd, out, &progress);
	if (live_handles() > baseline_handles - 1 || pend_head) {
		fprintf(stderr, "fuzz_http: http_server_close left a connection or request open\n");
		abort();
	}
	start_server();
}

static void send_all(int fd, const uint8_t *p, size_t n, sk_buf *out)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		bool progress;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && errno == EAGAIN) {
			turn(fd, out, &progress);
		} else {
			return; /* the server hung up: the rest goes nowhere */
		}
	}
}

static size_t piece_size(uint8_t k, size_t len)
{
	size_t piece = k == 0 || k == 0xff ? len : k <= 64 ? k : (size_t)(k - 64) * 256;

	if (piece && len / piece >= MAX_PIECES)
		piece = len / MAX_PIECES + 1;
	return piece ? piece : 1;
}

/* The server's bytes must be whole responses, up to a 101 and the raw pipe. */
static int on_done(http_parser *p)
{
	return 0;
}

static void check_output(const sk_buf *out)
{
	http_parser_settings s = { .on_message_complete = on_done };
	http_parser p;
	size_t n;

	if (stream_cut)
		return;
	http_parser_init(&p, HTTP_RESPONSE);
	n = http_parser_execute(&p, &s, out->base ? out->base : "", out->len);
	if (p.upgrade)
		return;
	if (HTTP_PARSER_ERRNO(&p) == HPE_OK && n == out->len)
		http_parser_execute(&p, &s, NULL, 0);
	if (HTTP_PARSER_ERRNO(&p) != HPE_OK) {
		fprintf(stderr, "fuzz_http: the server sent malformed HTTP (%s) at byte %zu of %zu:\n",
			http_errno_description(HTTP_PARSER_ERRNO(&p)), n, out->len);
		fwrite(out->base, 1, out->len < 4096 ? out->len : 4096, stderr);
		fputc('\n', stderr);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	sk_buf out = SK_BUF_INIT;
	size_t piece;
	bool progress, restart;
	int fd, i;

	if (!size)
		return 0;
	piece = piece_size(data[0], size - 1);
	restart = data[0] == 0xff;
	data++, size--;
	if (size > INPUT_CAP)
		size = INPUT_CAP;
	stream_cut = false;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		abort();
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("fuzz_http: connect");
		abort();
	}
	turn(fd, &out, &progress); /* the server accepts: each piece is a read of its own */
	for (size_t off = 0; off < size; off += piece) {
		send_all(fd, data + off, size - off < piece ? size - off : piece, &out);
		turn(fd, &out, &progress);
	}
	if (restart)
		restart_server(fd, &out);
	else
		settle(fd, &out);
	shutdown(fd, SHUT_WR);
	for (i = 0; i < 2000 && !turn(fd, &out, &progress); i++)
		;
	close(fd);
	for (i = 0; i < 2000 && live_handles() > baseline_handles; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (live_handles() > baseline_handles || pend_head) {
		fprintf(stderr, "fuzz_http: the server kept a connection (or a request) open "
				"after the client closed\n");
		abort();
	}
	uv_timer_stop(&tick);
	if (getenv("FUZZ_HTTP_SHOW")) /* to see what the server answered to an input */
		fwrite(out.base ? out.base : "", 1, out.len, stderr);
	check_output(&out);
	sk_buf_release(&out);
	return 0;
}
