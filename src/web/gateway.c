/*
 * The web gateway (see gateway.h and docs/protocol.md, "Web requests").
 *
 * A connection (gw_conn) parses one request at a time with wparse; the
 * request (gw_req) is routed to an endpoint function, checked (method,
 * proxy auth), queued on the function, and dispatched to one of its
 * containers as a stream: a `wreq` frame, then `wbody` frames under the
 * container's window.  The container answers with `wres`/`wdata` frames that
 * are written to the client as they come; the gateway acknowledges written
 * bytes with `wack`, so a slow client holds at most one window of a
 * response.  Pipelined requests wait in the connection's input buffer until
 * the response before them is complete.  A WebSocket handshake becomes a
 * stream too; once the container accepts it, wslay speaks RFC 6455 on the
 * connection and whole messages travel as `wsmsg` frames.
 *
 * A request lives while any of its owners holds it: the connection (until
 * its response is complete or the client is gone), the function's queue, a
 * container's open streams, or a parked result (a request that passed the
 * redirect time, answered 303 with a URL to poll: docs/api.md).
 */
#include "web/gateway.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "server/fn_internal.h"
#include "store/store.h"
#include "util/base64.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/sha1.h"
#include "util/utf8.h"
#include "util/xalloc.h"
#include "web/wparse.h"

#define WINDOW (1u << 20)         /* per-stream flow-control window, both ways */
#define PEND_MAX (1u << 20)       /* request body held per request before reading stops */
#define IN_MAX (1u << 20)         /* unparsed (pipelined) bytes held per connection */
#define PREFETCH 8                /* extra streams a fast function's container may hold */
#define PREFETCH_BELOW 0.002      /* ... when it answers in under this many seconds */
#define WS_MAX_MSG (16u << 20)
#define RESULT_MAX (256u << 20)   /* a parked response held for polling */
#define RESULT_KEEP 600.0         /* seconds a finished parked response is kept */

typedef struct gw_conn gw_conn;
typedef struct gw_result gw_result;

struct gateway {
	fn_server *fs;
	uv_loop_t *loop;
	uv_tcp_t listener;
	int port;
	char *url_base;        /* http://HOST:PORT */
	char *domain;
	gw_conn *conns;
	gw_result *results;
	size_t queue_max;      /* requests waiting per function before 503 */
	double redirect_after; /* seconds without a response before 303 */
	uv_timer_t sweep;
	char date[48];
	time_t date_at;
	int open_handles;
	bool closing;
};

struct gw_req {
	gateway *gw;
	gw_conn *conn;          /* the client's connection, while it waits for this */
	fn_function *fn;
	fn_container *fc;       /* while the stream is open in a container */
	uint32_t id;
	bool queued, local, head_req;
	bool body_done, end_sent, sent_continue;
	bool resp_started, resp_done, chunked, close_delim;
	bool ws, ws_open, aborted;
	unsigned writes;        /* client writes in flight that name it, and holds */
	sk_buf pend;            /* request body not yet sent to the container */
	uint64_t rwin;          /* request bytes the container still takes */
	char *root;             /* "/app/label" */
	char *rest;             /* path below it, with the query */
	double t_queued, t_dispatch;
	uv_timer_t *timer;      /* the redirect clock */
	gw_result *result;      /* parked: the response goes here */
	gw_req *qnext;          /* in the function's queue */
	gw_req *snext;          /* in the container's streams */
};

struct gw_result {
	char id[24];
	gw_req *req;            /* while it still runs */
	int status;
	sk_buf head;            /* "name: value\r\n" lines */
	sk_buf body;
	bool done, failed;
	double done_at;
	gw_conn *waiter;        /* a poll waiting for it */
	gw_result *next;
};

struct gw_conn {
	uv_tcp_t h;
	gateway *gw;
	wp_parser p;
	sk_buf in;              /* read, not yet parsed */
	gw_req *req;            /* the request being answered */
	bool reading, closing, close_after, dead, parsing;
	size_t writes;          /* uv_writes in flight */
	char peer[64];
	int peer_port;
	/* WebSocket */
	wslay_event_context_ptr ws;
	sk_buf ws_in;
	size_t ws_in_off;
	sk_buf ws_out;
	uint64_t ws_unacked;    /* container bytes queued to wslay, not yet written */
	uv_timer_t *poll_timer; /* a result poll waiting */
	gw_result *polling;
	gw_conn *next, *prev;
};

typedef struct cwrite {
	uv_write_t w;
	gw_conn *conn;
	gw_req *req;            /* ack its container for ack bytes once written */
	uint32_t ack;
	uint32_t req_id;
	fn_container *fc;
	size_t len;
	char data[];
} cwrite;

static void conn_close(gw_conn *c);
static void conn_parse(gw_conn *c);
static void conn_next(gw_conn *c);
static void req_flush_body(gw_req *r);
static void req_maybe_free(gw_req *r);
static void stream_close(gw_req *r);
static void result_finish(gw_result *res, bool failed);

/* ---- small helpers --------------------------------------------------------------------------- */

static const char *status_text(int s)
{
	switch (s) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Status";
	}
}

static const char *http_date(gateway *gw)
{
	time_t now = time(NULL);

	if (now != gw->date_at) {
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(gw->date, sizeof(gw->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		gw->date_at = now;
	}
	return gw->date;
}

static bool valid_utf8(const char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = sk_utf8_seq(s + i, len - i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

/* Appends s as a JSON string (s is valid UTF-8). */
static void json_str(sk_buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	sk_buf_add(b, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			char e[2] = { '\\', (char)ch };
			sk_buf_add(b, e, 2);
		} else if (ch < 0x20 || ch == 0x7f) {
			char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
			sk_buf_add(b, e, 6);
		} else {
			size_t j = i;
			while (j < len && (unsigned char)s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' &&
			       s[j] != 0x7f)
				j++;
			sk_buf_add(b, s + i, j - i);
			i = j - 1;
		}
	}
	sk_buf_add(b, "\"", 1);
}

static bool is_hop_header(const char *n)
{
	return !strcasecmp(n, "connection") || !strcasecmp(n, "keep-alive") ||
	       !strcasecmp(n, "transfer-encoding") || !strcasecmp(n, "upgrade") ||
	       !strcasecmp(n, "proxy-connection") || !strcasecmp(n, "te") ||
	       !strcasecmp(n, "trailer");
}

static bool header_safe(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

/* ---- writing to clients ---------------------------------------------------------------------- */

static void write_done(uv_write_t *w, int status)
{
	cwrite *cw = (cwrite *)w;
	gw_conn *c = cw->conn;

	c->writes--;
	/* The client took these bytes: the container may send as many more. */
	if (status == 0 && cw->ack && cw->req && cw->req->fc == cw->fc && cw->fc && cw->fc->w &&
	    cw->req->id == cw->req_id) {
		char h[80];
		int n = snprintf(h, sizeof(h), "{\"t\":\"wack\",\"id\":%u,\"n\":%u}", cw->req_id,
				 cw->ack);
		worker_send_corked(cw->fc->w, h, (size_t)n, NULL, 0);
	}
	if (cw->req) {
		gw_req *r = cw->req;
		cw->req = NULL;
		r->writes--;
		req_maybe_free(r);
	}
	free(cw);
	if (c->dead)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->close_after && !c->writes && (!c->req || c->req->resp_done))
		conn_close(c);
}

/*
 * Writes len bytes to the client; ack of them are response body bytes of r
 * to acknowledge to its container once written.
 */
static void conn_write(gw_conn *c, const void *data, size_t len, gw_req *r, uint32_t ack)
{
	cwrite *cw;
	uv_buf_t b;

	if (c->dead || c->closing || !len)
		return;
	cw = xmalloc(sizeof(*cw) + len);
	memcpy(cw->data, data, len);
	cw->conn = c;
	cw->len = len;
	cw->ack = ack;
	cw->req = NULL;
	cw->fc = NULL;
	cw->req_id = 0;
	if (r && ack) {
		cw->req = r;
		cw->fc = r->fc;
		cw->req_id = r->id;
		r->writes++;
	}
	/* Keep r alive until the write is done (req_maybe_free checks writes via conn). */
	b = uv_buf_init(cw->data, (unsigned)len);
	c->writes++;
	if (uv_write(&cw->w, (uv_stream_t *)&c->h, &b, 1, write_done) < 0) {
		c->writes--;
		free(cw);
		conn_close(c);
	}
}

/* A whole response made here: status, extra header lines, a body. */
static void conn_respond(gw_conn *c, gw_req *r, int status, const char *headers,
			 const char *ctype, const char *body, size_t blen)
{
	sk_buf b = SK_BUF_INIT;
	bool head = r && r->head_req;

	if (r && !r->body_done)
		c->close_after = true; /* the rest of its body is not read */
	if (r && !c->p.keep_alive)
		c->close_after = true;
	sk_buf_addf(&b, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: skiff\r\n", status,
		    status_text(status), http_date(c->gw));
	if (headers)
		sk_buf_adds(&b, headers);
	if (body)
		sk_buf_addf(&b, "content-type: %s\r\ncontent-length: %zu\r\n", ctype, blen);
	else
		sk_buf_adds(&b, "content-length: 0\r\n");
	if (c->close_after)
		sk_buf_adds(&b, "connection: close\r\n");
	sk_buf_adds(&b, "\r\n");
	if (body && !head)
		sk_buf_add(&b, body, blen);
	conn_write(c, b.base, b.len, NULL, 0);
	sk_buf_release(&b);
	if (r) {
		r->resp_started = r->resp_done = true;
		if (r->body_done)
			conn_next(c);
	}
}

static void conn_error(gw_conn *c, gw_req *r, int status, const char *msg)
{
	_cleanup_free_ char *body = xasprintf("%s\n", msg);
	const char *extra = status == 503 ? "retry-after: 1\r\n" : NULL;

	conn_respond(c, r, status, extra, "text/plain; charset=utf-8", body, strlen(body));
}

/* ---- requests ------------------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static void req_free(gw_req *r)
{
	sk_buf_release(&r->pend);
	free(r->root);
	free(r->rest);
	if (r->timer && !uv_is_closing((uv_handle_t *)r->timer))
		uv_close((uv_handle_t *)r->timer, timer_closed);
	r->timer = NULL; /* closed by the loop's final walk at shutdown: left to it */
	free(r);
}

/* Whether any cwrite still points at r (writes to its connection in flight). */
static void req_maybe_free(gw_req *r)
{
	if (r->conn || r->queued || r->fc || r->result || r->writes)
		return;
	/* Writes in flight name r; they call back here when done. */
	req_free(r);
}

static void queue_remove(gw_req *r)
{
	fn_web *w = r->fn && r->fn->web ? r->fn->web : NULL;

	if (!r->queued || !w)
		return;
	for (gw_req **pp = &w->qhead; *pp; pp = &(*pp)->qnext)
		if (*pp == r) {
			*pp = r->qnext;
			if (w->qtail == r) {
				w->qtail = NULL;
				for (gw_req *x = w->qhead; x; x = x->qnext)
					w->qtail = x;
			}
			break;
		}
	r->qnext = NULL;
	r->queued = false;
	w->queued--;
}

static void send_frame(gw_req *r, const char *hdr, size_t hl, const void *body, size_t len)
{
	if (r->fc && r->fc->w)
		worker_send_corked(r->fc->w, hdr, hl, body, len);
}

static void send_simple(gw_req *r, const char *type)
{
	char h[64];
	int n = snprintf(h, sizeof(h), "{\"t\":\"%s\",\"id\":%u}", type, r->id);

	send_frame(r, h, (size_t)n, NULL, 0);
}

/* The client is gone (or the gateway gave up): tell the container. */
static void req_abort(gw_req *r)
{
	if (r->aborted)
		return;
	r->aborted = true;
	if (r->fc)
		send_simple(r, "wabort");
}

/* ---- the connection's side ------------------------------------------------------------------- */

static void conn_resume(gw_conn *c);

static void req_flush_body(gw_req *r)
{
	char h[80];
	int n;

	if (!r->fc || r->end_sent || r->ws)
		return;
	while (r->pend.len && r->rwin) {
		size_t take = r->pend.len < r->rwin ? r->pend.len : (size_t)r->rwin;
		if (take > (256u << 10))
			take = 256u << 10;
		bool end = r->body_done && take == r->pend.len;
		n = snprintf(h, sizeof(h), "{\"t\":\"wbody\",\"id\":%u,\"end\":%s}", r->id,
			     end ? "true" : "false");
		send_frame(r, h, (size_t)n, r->pend.base, take);
		sk_buf_consume(&r->pend, take);
		r->rwin -= take;
		if (end)
			r->end_sent = true;
	}
	if (!r->pend.len && r->body_done && !r->end_sent) {
		n = snprintf(h, sizeof(h), "{\"t\":\"wbody\",\"id\":%u,\"end\":true}", r->id);
		send_frame(r, h, (size_t)n, NULL, 0);
		r->end_sent = true;
	}
	if (r->conn && r->conn->req == r && r->pend.len < PEND_MAX / 2)
		conn_resume(r->conn);
}

/* Routes "/app/label/rest" (or Host app--label.domain); NULL when nothing is there. */
static fn_function *route(gateway *gw, wp_parser *p, char **root, char **rest)
{
	const char *url = p->url.base, *app = NULL, *label = NULL;
	size_t al = 0, ll = 0;
	const char *after = NULL;
	fn_function *best = NULL;
	double best_at = -1;

	if (gw->domain && p->host) {
		const char *h = p->host, *dd = strstr(h, "--");
		size_t hl = strcspn(h, ":"), dl = strlen(gw->domain);
		if (dd && hl > dl + 1 && h[hl - dl - 1] == '.' &&
		    !strncasecmp(h + hl - dl, gw->domain, dl) && dd < h + hl - dl - 1) {
			app = h;
			al = (size_t)(dd - h);
			label = dd + 2;
			ll = (size_t)(h + hl - dl - 1 - label);
			after = url;
		}
	}
	if (!app) {
		if (url[0] != '/')
			return NULL;
		app = url + 1;
		al = strcspn(app, "/?");
		if (app[al] != '/')
			return NULL;
		label = app + al + 1;
		ll = strcspn(label, "/?");
		after = label + ll;
	}
	if (!al || !ll)
		return NULL;
	for (fn_app *a = gw->fs->apps; a; a = a->next) {
		if (a->stopped || strlen(a->name) != al || strncmp(a->name, app, al))
			continue;
		for (fn_function *fn = a->functions; fn; fn = fn->next)
			if (fn->web && !fn->retired && strlen(fn->web->label) == ll &&
			    !strncmp(fn->web->label, label, ll) && a->created_at > best_at) {
				best = fn;
				best_at = a->created_at;
			}
	}
	if (!best)
		return NULL;
	*root = xasprintf("/%.*s/%.*s", (int)al, app, (int)ll, label);
	*rest = *after == '/' ? xstrdup(after) : xasprintf("/%s", after);
	return best;
}

static bool auth_ok(gateway *gw, wp_parser *p)
{
	const char *id = wp_header(p, "skiff-key"), *secret = wp_header(p, "skiff-secret");

	if (!id || !secret) {
		id = wp_header(p, "modal-key");
		secret = wp_header(p, "modal-secret");
	}
	if (!id || !secret)
		return false;
	return store_token_check(gw->fs->s->store, id, secret) == 1;
}

static void redirect_fire(uv_timer_t *t);

static const char NOT_FOUND[] = "{\"detail\":\"Not Found\"}";
static const char NOT_ALLOWED[] = "{\"detail\":\"Method Not Allowed\"}";
static const char UNAUTHORIZED[] = "{\"detail\":\"Missing or invalid Skiff-Key/Skiff-Secret "
				   "headers (make a token with `skiff token create`)\"}";

static int on_head(wp_parser *p)
{
	gw_conn *c = p->data;
	gateway *gw = c->gw;
	gw_req *r = xcalloc(1, sizeof(*r));
	fn_function *fn;

	r->gw = gw;
	r->conn = c;
	r->head_req = !strcmp(p->method, "HEAD");
	r->body_done = !p->chunked && !(p->has_length && p->content_length);
	c->req = r;
	if (!strcmp(p->url.base, "/__skiff/health") || !strncmp(p->url.base, "/__skiff/health?", 16)) {
		r->local = true;
		conn_respond(c, r, 200, NULL, "text/plain; charset=utf-8", "ok\n", 3);
		return 0;
	}
	if (!strncmp(p->url.base, "/__skiff/result/", 16)) {
		r->local = true;
		return 0; /* answered at the end of the request (see on_end) */
	}
	fn = route(gw, p, &r->root, &r->rest);
	if (!fn) {
		r->local = true;
		conn_respond(c, r, 404, NULL, "application/json", NOT_FOUND, strlen(NOT_FOUND));
		return 0;
	}
	r->fn = fn;
	if (!valid_utf8(p->url.base, p->url.len) || !valid_utf8(p->hbuf.base, p->hbuf.len)) {
		r->local = true;
		conn_error(c, r, 400, "the request line and headers must be UTF-8");
		return 0;
	}
	if (fn->web->requires_auth && !auth_ok(gw, p)) {
		r->local = true;
		conn_respond(c, r, 401,
			     "www-authenticate: Skiff-Key\r\n", "application/json",
			     UNAUTHORIZED, strlen(UNAUTHORIZED));
		return 0;
	}
	if (fn->web->kind == WEB_FUNCTION) {
		bool same = !strcmp(p->method, fn->web->method) ||
			    (r->head_req && !strcmp(fn->web->method, "GET"));
		if (!strcmp(p->method, "OPTIONS") && strcmp(fn->web->method, "OPTIONS") &&
		    wp_header(p, "access-control-request-method")) {
			/* A CORS preflight: endpoints allow any origin (as Modal's do). */
			_cleanup_free_ char *hdrs = xasprintf(
				"access-control-allow-origin: *\r\n"
				"access-control-allow-methods: %s, OPTIONS\r\n"
				"access-control-allow-headers: %s\r\n"
				"access-control-max-age: 600\r\n",
				fn->web->method,
				header_safe(wp_header(p, "access-control-request-headers") ?: "*")
					? (wp_header(p, "access-control-request-headers") ?: "*")
					: "*");
			r->local = true;
			conn_respond(c, r, 204, hdrs, NULL, NULL, 0);
			return 0;
		}
		if (!same && !p->upgrade_ws) {
			_cleanup_free_ char *allow = xasprintf("allow: %s\r\n", fn->web->method);
			r->local = true;
			conn_respond(c, r, 405, allow, "application/json", NOT_ALLOWED,
				     strlen(NOT_ALLOWED));
			return 0;
		}
	}
	if (p->upgrade_ws)
		r->ws = true;
	if (fn->broken) {
		r->local = true;
		conn_error(c, r, 503,
			   "this endpoint cannot start: its function failed to load "
			   "(see `skiff app logs`)");
		return 0;
	}
	if (fn->web->queued >= gw->queue_max) {
		r->local = true;
		conn_error(c, r, 503, "this endpoint is at capacity; retry shortly");
		return 0;
	}
	r->queued = true;
	r->t_queued = sk_wall_time();
	if (fn->web->qtail)
		fn->web->qtail->qnext = r;
	else
		fn->web->qhead = r;
	fn->web->qtail = r;
	fn->web->queued++;
	if (gw->redirect_after > 0 && !r->ws) {
		r->timer = xmalloc(sizeof(*r->timer));
		uv_timer_init(gw->loop, r->timer);
		r->timer->data = r;
		uv_timer_start(r->timer, redirect_fire, (uint64_t)(gw->redirect_after * 1000), 0);
	}
	/* The body may still be coming: dispatch now, it streams behind. */
	function_pump(fn);
	return 0;
}

static int on_body(wp_parser *p, const char *data, size_t len)
{
	gw_conn *c = p->data;
	gw_req *r = c->req;

	if (!r || r->local || r->aborted)
		return 0;
	sk_buf_add(&r->pend, data, len);
	req_flush_body(r);
	return 0;
}

static void result_serve(gw_conn *c, gw_req *r);

static int on_end(wp_parser *p)
{
	gw_conn *c = p->data;
	gw_req *r = c->req;

	if (!r)
		return 0;
	r->body_done = true;
	if (r->local) {
		if (!r->resp_started && !strncmp(p->url.base, "/__skiff/result/", 16))
			result_serve(c, r);
		return 0;
	}
	req_flush_body(r);
	return 0;
}

static const wp_callbacks callbacks = { on_head, on_body, on_end };

/* The request may be answered: on to the next one on this connection (see conn_parse). */
static void conn_next(gw_conn *c)
{
	conn_parse(c);
}

static void ws_start(gw_conn *c, gw_req *r);
static void ws_feed(gw_conn *c);

/*
 * Parses what was read, one request at a time: a request whose response is
 * complete is let go and the next one parsed.  Parser callbacks may answer
 * (conn_next); the guard keeps that from parsing again inside the parser.
 */
static void conn_parse(gw_conn *c)
{
	if (c->parsing)
		return;
	c->parsing = true;
	while (!c->dead && !c->closing && !c->ws) {
		gw_req *r = c->req;
		if (r && r->resp_done && r->body_done) {
			c->req = NULL;
			r->conn = NULL;
			if (r->timer)
				uv_timer_stop(r->timer);
			req_maybe_free(r);
			if (c->close_after) {
				if (!c->writes)
					conn_close(c);
				break;
			}
			wp_next(&c->p);
			continue;
		}
		if (!c->in.len)
			break;
		if (r && (r->body_done || r->pend.len >= PEND_MAX))
			break; /* waits for its response, or for the container to take its body */
		if (r && r->resp_done && c->close_after)
			break; /* answered early; the connection closes */
		size_t n = wp_feed(&c->p, c->in.base, c->in.len);
		sk_buf_consume(&c->in, n);
		if (c->p.error_status) {
			/* Bad input: answer it and close; other connections are not touched. */
			gw_req *cur = c->req;
			c->close_after = true;
			if (cur && cur->resp_started) {
				conn_close(c);
				return;
			}
			if (cur) {
				cur->body_done = true;
				if (cur->queued)
					queue_remove(cur);
				if (cur->fc)
					req_abort(cur);
			}
			conn_error(c, cur, c->p.error_status, c->p.error);
			c->parsing = false;
			if (!c->dead && !c->writes)
				conn_close(c);
			return;
		}
		if (!n && !c->p.msg_done)
			break;
	}
	c->parsing = false;
	if (c->dead)
		return;
	if (!c->dead && !c->closing && !c->ws && !c->reading && c->in.len < IN_MAX &&
	    (!c->req || c->req->pend.len < PEND_MAX))
		conn_resume(c);
	else if (c->reading && (c->in.len >= IN_MAX || (c->req && c->req->pend.len >= PEND_MAX))) {
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	gw_conn *c = h->data;
	sk_buf *b = c->ws ? &c->ws_in : &c->in;

	(void)suggested;
	sk_buf_grow(b, 65536);
	buf->base = b->base + b->len;
	buf->len = b->cap - b->len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	gw_conn *c = s->data;

	(void)buf;
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (c->ws) {
		c->ws_in.len += (size_t)n;
		ws_feed(c);
		return;
	}
	c->in.len += (size_t)n;
	conn_parse(c);
}

static void conn_resume(gw_conn *c)
{
	if (c->reading || c->dead || c->closing)
		return;
	if (c->in.len >= IN_MAX || (c->req && c->req->pend.len >= PEND_MAX))
		return;
	if (uv_read_start((uv_stream_t *)&c->h, alloc_cb, on_read) == 0)
		c->reading = true;
	if (c->in.len && !c->ws)
		conn_parse(c);
}

static void conn_closed(uv_handle_t *h)
{
	gw_conn *c = h->data;

	wp_release(&c->p);
	sk_buf_release(&c->in);
	sk_buf_release(&c->ws_in);
	sk_buf_release(&c->ws_out);
	if (c->ws)
		wslay_event_context_free(c->ws);
	free(c);
}

static void poll_timer_closed(uv_handle_t *h)
{
	free(h);
}

static void conn_close(gw_conn *c)
{
	gateway *gw = c->gw;
	gw_req *r = c->req;

	if (c->dead)
		return;
	c->dead = true;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		gw->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->polling) {
		c->polling->waiter = NULL;
		c->polling = NULL;
	}
	if (c->poll_timer && !uv_is_closing((uv_handle_t *)c->poll_timer))
		uv_close((uv_handle_t *)c->poll_timer, poll_timer_closed);
	c->poll_timer = NULL;
	if (r) {
		c->req = NULL;
		r->conn = NULL;
		if (r->queued)
			queue_remove(r);
		if (r->fc)
			req_abort(r);
		req_maybe_free(r);
	}
	uv_close((uv_handle_t *)&c->h, conn_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
	gateway *gw = server->data;
	gw_conn *c;
	struct sockaddr_storage sa;
	int sl = sizeof(sa);

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	c->gw = gw;
	uv_tcp_init(gw->loop, &c->h);
	c->h.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->h) < 0) {
		uv_close((uv_handle_t *)&c->h, conn_closed);
		return;
	}
	uv_tcp_nodelay(&c->h, 1);
	if (uv_tcp_getpeername(&c->h, (struct sockaddr *)&sa, &sl) == 0) {
		if (sa.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&sa;
			uv_ip4_name(in, c->peer, sizeof(c->peer));
			c->peer_port = ntohs(in->sin_port);
		} else if (sa.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&sa;
			uv_ip6_name(in6, c->peer, sizeof(c->peer));
			c->peer_port = ntohs(in6->sin6_port);
		}
	}
	wp_init(&c->p, &callbacks, c);
	c->next = gw->conns;
	if (gw->conns)
		gw->conns->prev = c;
	gw->conns = c;
	conn_resume(c);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static int stream_limit(const fn_function *fn)
{
	int lim = fn->max_inputs > 0 ? fn->max_inputs : 1;

	if (fn->web->avg_s > 0 && fn->web->avg_s < PREFETCH_BELOW && fn->web->kind == WEB_FUNCTION)
		lim += PREFETCH;
	return lim;
}

static fn_container *pick_container(fn_function *fn)
{
	fn_container *best = NULL;
	int lim = stream_limit(fn);

	for (fn_container *fc = fn->containers; fc; fc = fc->next) {
		if (fc->state != FC_READY || !fc->w || fc->killed_for_idle || fc->killed_for_timeout ||
		    fc->web_open >= lim)
			continue;
		if (!best || fc->web_open < best->web_open)
			best = fc;
	}
	return best;
}

static void send_wreq(gw_req *r)
{
	gw_conn *c = r->conn;
	wp_parser *p = &c->p;
	sk_buf h = SK_BUF_INIT;
	size_t pos = 0, first;
	const char *n, *v;
	bool end;

	first = r->ws ? 0 : (r->pend.len < r->rwin ? r->pend.len : (size_t)r->rwin);
	end = r->ws || (r->body_done && first == r->pend.len);
	sk_buf_addf(&h, "{\"t\":\"wreq\",\"id\":%u,\"m\":\"%s\",\"p\":", r->id, p->method);
	json_str(&h, r->rest, strlen(r->rest));
	sk_buf_adds(&h, ",\"root\":");
	json_str(&h, r->root, strlen(r->root));
	sk_buf_adds(&h, ",\"h\":[");
	for (bool comma = false; wp_header_next(p, &pos, &n, &v); comma = true) {
		if (comma)
			sk_buf_add(&h, ",", 1);
		sk_buf_add(&h, "[", 1);
		json_str(&h, n, strlen(n));
		sk_buf_add(&h, ",", 1);
		json_str(&h, v, strlen(v));
		sk_buf_add(&h, "]", 1);
	}
	sk_buf_addf(&h, "],\"end\":%s,\"ws\":%s,\"client\":[", end ? "true" : "false",
		    r->ws ? "true" : "false");
	json_str(&h, c->peer, strlen(c->peer));
	sk_buf_addf(&h, ",%d],\"scheme\":\"http\",\"http_version\":\"1.%u\"}", c->peer_port,
		    p->http_minor);
	send_frame(r, h.base, h.len, r->pend.base, first);
	sk_buf_release(&h);
	sk_buf_consume(&r->pend, first);
	r->rwin -= first;
	if (end)
		r->end_sent = true;
	if (p->expect_continue && !r->body_done && !r->sent_continue) {
		r->sent_continue = true;
		conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0);
	}
}

void web_pump(fn_function *fn)
{
	fn_web *w = fn->web;

	if (!w)
		return;
	while (w->qhead) {
		fn_container *fc = pick_container(fn);
		gw_req *r = w->qhead;
		if (!fc)
			break;
		w->qhead = r->qnext;
		if (!w->qhead)
			w->qtail = NULL;
		w->queued--;
		r->queued = false;
		r->qnext = NULL;
		if (!r->conn) { /* the client left while it waited */
			req_maybe_free(r);
			continue;
		}
		r->fc = fc;
		if (!fc->first_input_at)
			fc->first_input_at = sk_wall_time();
		r->id = ++fc->web_next_id;
		r->rwin = WINDOW;
		r->t_dispatch = sk_wall_time();
		r->snext = fc->streams;
		fc->streams = r;
		fc->web_open++;
		send_wreq(r);
	}
}

double web_oldest_queued(const fn_function *fn)
{
	return fn->web && fn->web->qhead ? fn->web->qhead->t_queued : 0;
}

size_t web_queued(const fn_function *fn)
{
	return fn->web ? fn->web->queued : 0;
}

size_t web_demand(const fn_function *fn)
{
	size_t n = 0;

	if (!fn->web)
		return 0;
	for (fn_container *fc = fn->containers; fc; fc = fc->next)
		n += (size_t)fc->web_open;
	return n + fn->web->queued;
}

/* The stream is over in its container: its slot is free. */
static void stream_close(gw_req *r)
{
	fn_container *fc = r->fc;
	fn_function *fn = r->fn;

	if (!fc)
		return;
	for (gw_req **pp = &fc->streams; *pp; pp = &(*pp)->snext)
		if (*pp == r) {
			*pp = r->snext;
			break;
		}
	r->snext = NULL;
	r->fc = NULL;
	fc->web_open--;
	fc->inputs_served++;
	if (!fc->web_open)
		fc->idle_since = sk_wall_time();
	if (fn && fn->web && !r->ws) {
		double s = sk_wall_time() - r->t_dispatch;
		fn->web->avg_s = fn->web->avg_s > 0 ? 0.9 * fn->web->avg_s + 0.1 * s : s;
	}
}

static gw_req *stream_find(fn_container *fc, uint32_t id)
{
	for (gw_req *r = fc->streams; r; r = r->snext)
		if (r->id == id)
			return r;
	return NULL;
}

/* ---- responses ------------------------------------------------------------------------------- */

static void resp_body(gw_req *r, const unsigned char *data, size_t len, bool end)
{
	gw_conn *c = r->conn;

	if (r->result) {
		gw_result *res = r->result;
		if (res->body.len + len > RESULT_MAX) {
			res->failed = true;
		} else {
			sk_buf_add(&res->body, data, len);
		}
		if (!end && len && r->fc && r->fc->w) {
			char h[80];
			int n = snprintf(h, sizeof(h), "{\"t\":\"wack\",\"id\":%u,\"n\":%zu}", r->id, len);
			worker_send_corked(r->fc->w, h, (size_t)n, NULL, 0);
		}
		if (end)
			result_finish(res, res->failed);
		return;
	}
	if (!c)
		return;
	if (len && !r->head_req) {
		if (r->chunked) {
			char pre[24];
			int n = snprintf(pre, sizeof(pre), "%zx\r\n", len);
			sk_buf b = SK_BUF_INIT;
			sk_buf_add(&b, pre, (size_t)n);
			sk_buf_add(&b, data, len);
			sk_buf_add(&b, "\r\n", 2);
			conn_write(c, b.base, b.len, end ? NULL : r, end ? 0 : (uint32_t)len);
			sk_buf_release(&b);
		} else {
			conn_write(c, data, len, end ? NULL : r, end ? 0 : (uint32_t)len);
		}
	} else if (len && !end && r->fc && r->fc->w) {
		/* HEAD: nothing is written; the bytes count as taken. */
		char h[80];
		int n = snprintf(h, sizeof(h), "{\"t\":\"wack\",\"id\":%u,\"n\":%zu}", r->id, len);
		worker_send_corked(r->fc->w, h, (size_t)n, NULL, 0);
	}
}

static void resp_finish(gw_req *r)
{
	gw_conn *c = r->conn;

	if (r->resp_done)
		return;
	r->resp_done = true;
	if (!c)
		return;
	if (r->chunked && !r->head_req && !r->close_delim)
		conn_write(c, "0\r\n\r\n", 5, NULL, 0);
	if (r->close_delim)
		c->close_after = true;
	if (!r->body_done)
		c->close_after = true;
	conn_next(c);
	if (c->close_after && !c->writes && !c->dead)
		conn_close(c);
}

static void on_wres(gw_req *r, json_t *hdr, const unsigned char *body, size_t len)
{
	gw_conn *c = r->conn;
	int status = (int)json_integer_value(json_object_get(hdr, "s"));
	json_t *hs = json_object_get(hdr, "h");
	bool end = json_is_true(json_object_get(hdr, "end"));
	bool has_cl = false, no_body;
	sk_buf b = SK_BUF_INIT;
	size_t i;
	json_t *pair;

	if (status < 100 || status > 999)
		status = 502;
	no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
	if (r->resp_started && !r->result)
		return;
	r->resp_started = true;
	if (r->timer)
		uv_timer_stop(r->timer);
	if (r->result) {
		gw_result *res = r->result;
		res->status = status;
		json_array_foreach(hs, i, pair) {
			const char *n = json_string_value(json_array_get(pair, 0));
			const char *v = json_string_value(json_array_get(pair, 1));
			if (n && v && !is_hop_header(n) && strcasecmp(n, "content-length") &&
			    header_safe(n) && header_safe(v))
				sk_buf_addf(&res->head, "%s: %s\r\n", n, v);
		}
		resp_body(r, body, len, end);
		return;
	}
	if (!c)
		return;
	sk_buf_addf(&b, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: skiff\r\n", status, status_text(status),
		    http_date(c->gw));
	json_array_foreach(hs, i, pair) {
		const char *n = json_string_value(json_array_get(pair, 0));
		const char *v = json_string_value(json_array_get(pair, 1));
		if (!n || !v || is_hop_header(n) || !header_safe(n) || !header_safe(v) || !*n)
			continue;
		if (!strcasecmp(n, "content-length")) {
			if (end || no_body)
				continue;
			has_cl = true;
		}
		sk_buf_addf(&b, "%s: %s\r\n", n, v);
	}
	if (!c->p.keep_alive)
		c->close_after = true;
	if (no_body) {
		/* no length */
	} else if (end) {
		sk_buf_addf(&b, "content-length: %zu\r\n", len);
	} else if (!has_cl) {
		if (c->p.http_minor >= 1 && !r->head_req)
			r->chunked = true;
		else if (!r->head_req)
			r->close_delim = true, c->close_after = true;
	}
	if (r->chunked)
		sk_buf_adds(&b, "transfer-encoding: chunked\r\n");
	if (c->close_after || !r->body_done)
		sk_buf_adds(&b, "connection: close\r\n");
	sk_buf_adds(&b, "\r\n");
	if (end) {
		if (!r->head_req && !no_body)
			sk_buf_add(&b, body, len);
		conn_write(c, b.base, b.len, NULL, 0);
		sk_buf_release(&b);
		resp_finish(r);
		return;
	}
	conn_write(c, b.base, b.len, NULL, 0);
	sk_buf_release(&b);
	if (len)
		resp_body(r, body, len, false);
}

/* A stream ended inside the container without a (complete) response. */
static void stream_lost(gw_req *r, int status, const char *msg)
{
	gw_conn *c = r->conn;

	if (r->result) {
		result_finish(r->result, true);
		return;
	}
	if (!c)
		return;
	if (r->ws && r->ws_open) {
		conn_close(c);
		return;
	}
	if (!r->resp_started) {
		r->body_done = true; /* nothing more of it is read */
		c->close_after = c->close_after || !c->p.msg_done;
		conn_error(c, r, status, msg);
	} else if (!r->resp_done) {
		conn_close(c); /* cut: the client sees a truncated response */
	}
}

/* ---- WebSocket ------------------------------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
			  void *data)
{
	gw_conn *c = data;
	size_t avail = c->ws_in.len - c->ws_in_off;

	(void)flags;
	if (!avail) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (len > avail)
		len = avail;
	memcpy(buf, c->ws_in.base + c->ws_in_off, len);
	c->ws_in_off += len;
	return (ssize_t)len;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
			  void *user)
{
	gw_conn *c = user;

	(void)ctx;
	(void)flags;
	sk_buf_add(&c->ws_out, data, len);
	return (ssize_t)len;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
		      void *user)
{
	gw_conn *c = user;
	gw_req *r = c->req;
	char h[160];
	int n;

	(void)ctx;
	if (!r || !r->fc)
		return;
	if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
		if (a->opcode == WSLAY_TEXT_FRAME && !valid_utf8((const char *)a->msg, a->msg_length)) {
			wslay_event_queue_close(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, NULL, 0);
			return;
		}
		n = snprintf(h, sizeof(h), "{\"t\":\"wsmsg\",\"id\":%u,\"bin\":%s}", r->id,
			     a->opcode == WSLAY_BINARY_FRAME ? "true" : "false");
		send_frame(r, h, (size_t)n, a->msg, a->msg_length);
		r->rwin = r->rwin > a->msg_length ? r->rwin - a->msg_length : 0;
	} else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
		n = snprintf(h, sizeof(h), "{\"t\":\"wsclose\",\"id\":%u,\"code\":%u,\"reason\":\"\"}",
			     r->id, a->status_code ? a->status_code : 1005);
		send_frame(r, h, (size_t)n, NULL, 0);
	}
}

/* Writes what wslay produced; closes when both sides are done. */
static void ws_flush(gw_conn *c)
{
	gw_req *r = c->req;

	if (c->dead)
		return;
	if (wslay_event_send(c->ws) < 0) {
		conn_close(c);
		return;
	}
	if (c->ws_out.len) {
		uint32_t ack = (uint32_t)c->ws_unacked;
		c->ws_unacked = 0;
		conn_write(c, c->ws_out.base, c->ws_out.len, ack ? r : NULL, ack);
		sk_buf_reset(&c->ws_out);
	}
	if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
		c->close_after = true;
		if (r && r->fc)
			req_abort(r);
		if (!c->writes)
			conn_close(c);
	}
}

static void ws_feed(gw_conn *c)
{
	gw_req *r = c->req;

	if (!c->ws || c->dead)
		return;
	if (wslay_event_recv(c->ws) < 0) {
		conn_close(c);
		return;
	}
	sk_buf_consume(&c->ws_in, c->ws_in_off);
	c->ws_in_off = 0;
	/* The container's window for client messages: stop reading while it is full. */
	if (r && r->rwin == 0 && c->reading) {
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	}
	if (!c->dead)
		ws_flush(c);
}

static void ws_resume(gw_conn *c)
{
	if (c->reading || c->dead)
		return;
	if (uv_read_start((uv_stream_t *)&c->h, alloc_cb, on_read) == 0)
		c->reading = true;
}

static void ws_start(gw_conn *c, gw_req *r)
{
	struct wslay_event_callbacks cb = { ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL,
					    ws_msg_cb };
	if (wslay_event_context_server_init(&c->ws, &cb, c) != 0) {
		conn_close(c);
		return;
	}
	wslay_event_config_set_max_recv_msg_length(c->ws, WS_MAX_MSG);
	r->ws_open = true;
	/* Bytes that came after the handshake belong to the WebSocket. */
	sk_buf_add(&c->ws_in, c->in.base, c->in.len);
	sk_buf_reset(&c->in);
}

static void on_wsacc(gw_req *r, json_t *hdr)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	gw_conn *c = r->conn;
	json_t *hs = json_object_get(hdr, "h"), *pair;
	sk_buf b = SK_BUF_INIT;
	char key[64], acc[40];
	uint8_t dig[20];
	size_t i;

	if (!c || !r->ws || r->resp_started)
		return;
	r->resp_started = true;
	if (r->timer)
		uv_timer_stop(r->timer);
	snprintf(key, sizeof(key), "%s%s", c->p.ws_key, guid);
	sha1(key, strlen(key), dig);
	sk_base64_encode(dig, 20, acc);
	sk_buf_addf(&b, "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
			"connection: Upgrade\r\nsec-websocket-accept: %s\r\n", acc);
	json_array_foreach(hs, i, pair) {
		const char *n = json_string_value(json_array_get(pair, 0));
		const char *v = json_string_value(json_array_get(pair, 1));
		if (n && v && !is_hop_header(n) && header_safe(n) && header_safe(v) &&
		    strcasecmp(n, "sec-websocket-accept"))
			sk_buf_addf(&b, "%s: %s\r\n", n, v);
	}
	sk_buf_adds(&b, "\r\n");
	conn_write(c, b.base, b.len, NULL, 0);
	sk_buf_release(&b);
	ws_start(c, r);
	if (!c->dead) {
		ws_feed(c);
		ws_resume(c);
	}
}

/* ---- frames from containers ------------------------------------------------------------------ */

void web_container_frame(fn_container *fc, const char *t, json_t *hdr, const unsigned char *body,
			 size_t len)
{
	json_int_t id = json_integer_value(json_object_get(hdr, "id"));
	gw_req *r = stream_find(fc, (uint32_t)id);
	bool end = json_is_true(json_object_get(hdr, "end"));
	fn_function *fn = fc->fn;

	if (!r)
		return; /* a stream the gateway already closed */
	if (!strcmp(t, "wres")) {
		if (r->aborted && !r->result)
			goto maybe_end;
		on_wres(r, hdr, body, len);
		if (end)
			goto stream_end;
		return;
	} else if (!strcmp(t, "wdata")) {
		if (!r->resp_started || r->aborted)
			goto maybe_end;
		resp_body(r, body, len, end);
		if (end) {
			if (!r->result)
				resp_finish(r);
			goto stream_end;
		}
		return;
	} else if (!strcmp(t, "wrack")) {
		json_int_t n = json_integer_value(json_object_get(hdr, "n"));
		if (n > 0)
			r->rwin += (uint64_t)n;
		if (r->ws_open && r->conn && r->rwin)
			ws_resume(r->conn);
		else
			req_flush_body(r);
		return;
	} else if (!strcmp(t, "wsacc")) {
		on_wsacc(r, hdr);
		return;
	} else if (!strcmp(t, "wsmsg")) {
		gw_conn *c = r->conn;
		if (c && c->ws && !c->dead) {
			struct wslay_event_msg m = {
				json_is_true(json_object_get(hdr, "bin")) ? WSLAY_BINARY_FRAME
									  : WSLAY_TEXT_FRAME,
				body, len
			};
			if (wslay_event_queue_msg(c->ws, &m) == 0) {
				c->ws_unacked += len;
				ws_flush(c);
			}
		}
		return;
	} else if (!strcmp(t, "wsclose")) {
		gw_conn *c = r->conn;
		if (c && c->ws && !c->dead) {
			const char *reason = json_string_value(json_object_get(hdr, "reason"));
			json_int_t code = json_integer_value(json_object_get(hdr, "code"));
			wslay_event_queue_close(c->ws, code ? (uint16_t)code : 1000,
						(const uint8_t *)(reason ? reason : ""),
						reason ? strlen(reason) : 0);
			ws_flush(c);
		} else if (c && r->ws && !r->resp_started) {
			r->body_done = true;
			conn_error(c, r, 403, "the endpoint refused the WebSocket");
		}
		return;
	} else if (!strcmp(t, "wend")) {
		goto maybe_end;
	}
	return;

maybe_end:
	if (strcmp(t, "wend") && !end)
		return;
	if (!r->resp_done && !r->result) {
		if (r->ws && r->ws_open && r->conn && r->conn->ws && !r->conn->dead) {
			gw_conn *c = r->conn;
			wslay_event_queue_close(c->ws, 1000, NULL, 0);
			ws_flush(c);
			c->close_after = true;
			r->resp_done = true;
			if (!c->writes)
				conn_close(c);
		} else {
			stream_lost(r, 502, "the endpoint ended the request without a complete response "
					    "(see `skiff app logs`)");
		}
	} else if (r->result && !r->result->done) {
		result_finish(r->result, true);
	}
stream_end:
	stream_close(r);
	req_maybe_free(r);
	function_pump(fn);
}

double web_oldest_request(const fn_container *fc)
{
	double now = sk_wall_time(), age = 0;

	for (gw_req *r = fc->streams; r; r = r->snext)
		if (!r->ws && now - r->t_dispatch > age)
			age = now - r->t_dispatch;
	return age;
}

void web_container_gone(fn_container *fc)
{
	while (fc->streams) {
		gw_req *r = fc->streams;
		bool oom = fc->rc && fc->rc->oom;
		_cleanup_free_ char *msg = NULL;
		r->writes++; /* held: answering may let its connection move on and free it */
		stream_close(r);
		if (fc->killed_for_timeout) {
			msg = xasprintf("the endpoint timed out after %d s (the function's timeout)",
					fc->fn->timeout);
			stream_lost(r, 504, msg);
		} else {
			stream_lost(r, oom ? 500 : 502,
				    oom ? "the endpoint's container ran out of memory (see `skiff app "
					  "logs`)"
					: "the endpoint's container stopped while serving this request "
					  "(see `skiff app logs`)");
		}
		r->writes--;
		req_maybe_free(r);
	}
}

void web_function_stop(fn_function *fn, const char *why)
{
	fn_web *w = fn->web;

	if (!w)
		return;
	while (w->qhead) {
		gw_req *r = w->qhead;
		queue_remove(r);
		r->writes++; /* held while answering (see web_container_gone) */
		if (r->conn && !r->resp_started) {
			_cleanup_free_ char *msg = xasprintf("this endpoint is not available: %s", why);
			r->body_done = true;
			conn_error(r->conn, r, 503, msg);
		}
		r->writes--;
		req_maybe_free(r);
	}
}

void web_function_move(fn_function *from, fn_function *to)
{
	fn_web *w = from->web;

	if (!w)
		return;
	if (!to->web) {
		web_function_stop(from, "the endpoint is not in the app's deployed version any more");
		return;
	}
	while (w->qhead) {
		gw_req *r = w->qhead;
		w->qhead = r->qnext;
		w->queued--;
		r->qnext = NULL;
		r->fn = to;
		if (to->web->qtail)
			to->web->qtail->qnext = r;
		else
			to->web->qhead = r;
		to->web->qtail = r;
		to->web->queued++;
	}
	w->qtail = NULL;
}

/* ---- long requests: 303 to a result URL ------------------------------------------------------ */

static void result_respond(gw_conn *c, gw_req *r, gw_result *res)
{
	sk_buf b = SK_BUF_INIT;

	if (res->failed) {
		conn_error(c, r, 502, "the request failed before it produced a complete response");
		return;
	}
	if (!c->p.keep_alive)
		c->close_after = true;
	sk_buf_addf(&b, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: skiff\r\n", res->status,
		    status_text(res->status), http_date(c->gw));
	sk_buf_add(&b, res->head.base, res->head.len);
	sk_buf_addf(&b, "content-length: %zu\r\n%s\r\n", res->body.len,
		    c->close_after ? "connection: close\r\n" : "");
	if (!r->head_req)
		sk_buf_add(&b, res->body.base, res->body.len);
	conn_write(c, b.base, b.len, NULL, 0);
	sk_buf_release(&b);
	r->resp_started = r->resp_done = true;
	conn_next(c);
}

static void result_free(gateway *gw, gw_result *res)
{
	for (gw_result **pp = &gw->results; *pp; pp = &(*pp)->next)
		if (*pp == res) {
			*pp = res->next;
			break;
		}
	sk_buf_release(&res->head);
	sk_buf_release(&res->body);
	free(res);
}

static void result_finish(gw_result *res, bool failed)
{
	gw_req *r = res->req;
	gw_conn *c = res->waiter;

	if (res->done)
		return;
	res->done = true;
	res->failed = res->failed || failed;
	res->done_at = sk_wall_time();
	if (r) {
		r->result = NULL;
		res->req = NULL;
		req_maybe_free(r);
	}
	if (c) {
		gw_req *cr = c->req;
		res->waiter = NULL;
		c->polling = NULL;
		if (c->poll_timer) {
			uv_close((uv_handle_t *)c->poll_timer, poll_timer_closed);
			c->poll_timer = NULL;
		}
		if (cr) {
			result_respond(c, cr, res);
			result_free(c->gw, res);
		}
	}
}

static void send_303(gw_conn *c, gw_req *r, const char *id)
{
	_cleanup_free_ char *loc = xasprintf("location: /__skiff/result/%s\r\n", id);

	conn_respond(c, r, 303, loc, NULL, NULL, 0);
}

static void poll_fire(uv_timer_t *t)
{
	gw_conn *c = t->data;
	gw_result *res = c->polling;

	if (res) {
		res->waiter = NULL;
		c->polling = NULL;
		if (c->req)
			send_303(c, c->req, res->id);
	}
	uv_close((uv_handle_t *)t, poll_timer_closed);
	c->poll_timer = NULL;
}

static void result_serve(gw_conn *c, gw_req *r)
{
	gateway *gw = c->gw;
	const char *id = c->p.url.base + 16;
	size_t il = strcspn(id, "?/");
	gw_result *res = NULL;

	for (gw_result *x = gw->results; x; x = x->next)
		if (strlen(x->id) == il && !strncmp(x->id, id, il))
			res = x;
	if (!res) {
		conn_error(c, r, 404, "no such result (results are kept 10 minutes, and served once)");
		return;
	}
	if (res->done) {
		result_respond(c, r, res);
		result_free(gw, res);
		return;
	}
	if (res->waiter) {
		conn_error(c, r, 409, "another client is already waiting for this result");
		return;
	}
	res->waiter = c;
	c->polling = res;
	c->poll_timer = xmalloc(sizeof(*c->poll_timer));
	uv_timer_init(gw->loop, c->poll_timer);
	c->poll_timer->data = c;
	uv_timer_start(c->poll_timer, poll_fire, (uint64_t)(gw->redirect_after * 1000), 0);
}

/* A request got no response within redirect_after: 303 to a result URL, keep it running. */
static void redirect_fire(uv_timer_t *t)
{
	gw_req *r = t->data;
	gw_conn *c = r->conn;
	gateway *gw = r->gw;
	gw_result *res;
	unsigned char rnd[8];

	if (!c || r->resp_started || r->ws || r->result)
		return;
	if (!r->body_done || !r->fc) {
		/* Still uploading, or still waiting for a container: look again later. */
		uv_timer_start(t, redirect_fire, (uint64_t)(gw->redirect_after * 1000), 0);
		return;
	}
	res = xcalloc(1, sizeof(*res));
	if (getentropy(rnd, sizeof(rnd)) < 0)
		memset(rnd, 0, sizeof(rnd));
	snprintf(res->id, sizeof(res->id), "wr-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	res->req = r;
	res->next = gw->results;
	gw->results = res;
	r->result = res;
	/* The connection moves on; the request keeps running for the result. */
	c->req = NULL;
	r->conn = NULL;
	{
		/* Answer on c with a stand-in request so conn_next sees a finished one. */
		gw_req *s = xcalloc(1, sizeof(*s));
		s->gw = gw;
		s->conn = c;
		s->body_done = true;
		s->head_req = r->head_req;
		c->req = s;
		send_303(c, s, res->id);
	}
}

static void sweep_fire(uv_timer_t *t)
{
	gateway *gw = t->data;
	double now = sk_wall_time();

	for (gw_result *res = gw->results, *next; res; res = next) {
		next = res->next;
		if (res->done && !res->waiter && now - res->done_at > RESULT_KEEP)
			result_free(gw, res);
	}
}

/* ---- the listener ---------------------------------------------------------------------------- */

static void gw_free_cb(uv_handle_t *h);

/* Whether something listens on the address already (a plain bind, as libuv would do it). */
static bool port_taken(const struct sockaddr_storage *sa)
{
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	bool taken;

	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	taken = bind(fd, (const struct sockaddr *)sa,
		     sa->ss_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6)) < 0 &&
		errno == EADDRINUSE;
	close(fd);
	return taken;
}

int gateway_open(fn_server *fs, const gw_opts *o, gateway **out, sk_error *err)
{
	gateway *gw = xcalloc(1, sizeof(*gw));
	struct sockaddr_storage sa;
	const char *host = o->host && *o->host ? o->host : "127.0.0.1";
	const char *qm = getenv("SKIFF_WEB_QUEUE_MAX");
	const char *ra = getenv("SKIFF_WEB_REDIRECT_AFTER");
	int rc, port = o->port, sl = sizeof(sa);

	gw->fs = fs;
	gw->loop = fs->loop;
	gw->queue_max = qm && atol(qm) > 0 ? (size_t)atol(qm) : 2000;
	gw->redirect_after = ra && atof(ra) > 0 ? atof(ra) : 150;
	gw->domain = o->domain && *o->domain ? xstrdup(o->domain) : NULL;
	if (strchr(host, ':'))
		rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&sa);
	else
		rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&sa);
	if (rc < 0) {
		free(gw->domain);
		free(gw);
		return sk_error_set(err, SK_ERR_INVALID, "--web-host %s is not an IP address", host);
	}
	if (!o->port_given && port_taken(&sa)) {
		/* The default port is taken: any free one will do (the URLs say which).
		 * Asked before the listener exists: a libuv handle cannot be made again
		 * while its close is pending. */
		log_warn("web: port %d is in use; serving web endpoints on a free port instead "
			 "(choose one with --web-port)",
			 port);
		if (sa.ss_family == AF_INET)
			((struct sockaddr_in *)&sa)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&sa)->sin6_port = 0;
	}
	uv_tcp_init(gw->loop, &gw->listener);
	gw->listener.data = gw;
	rc = uv_tcp_bind(&gw->listener, (struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&gw->listener, 1024, on_connection);
	if (rc < 0) {
		/* gw goes with the handle, once it is closed. */
		gw->open_handles = 1;
		uv_close((uv_handle_t *)&gw->listener, gw_free_cb);
		return sk_error_set(err, SK_ERR_INVALID,
				    "cannot serve web endpoints on %s:%d: %s%s", host, port,
				    uv_strerror(rc),
				    rc == UV_EADDRINUSE ? " (choose another with --web-port, or 0 for "
							  "any free port)"
							: "");
	}
	uv_tcp_getsockname(&gw->listener, (struct sockaddr *)&sa, &sl);
	gw->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
						 : ((struct sockaddr_in6 *)&sa)->sin6_port);
	{
		const char *uh = o->url_host && *o->url_host ? o->url_host
				 : (!strcmp(host, "0.0.0.0") || !strcmp(host, "::")) ? "127.0.0.1"
											: host;
		gw->url_base = strchr(uh, ':') ? xasprintf("http://[%s]:%d", uh, gw->port)
					       : xasprintf("http://%s:%d", uh, gw->port);
	}
	uv_timer_init(gw->loop, &gw->sweep);
	gw->sweep.data = gw;
	uv_timer_start(&gw->sweep, sweep_fire, 30000, 30000);
	uv_unref((uv_handle_t *)&gw->sweep);
	log_info("web endpoints on %s (listening on %s:%d)", gw->url_base, host, gw->port);
	*out = gw;
	return 0;
}

int gateway_port(const gateway *gw)
{
	return gw->port;
}

char *gateway_url(const gateway *gw, const char *app, const char *label)
{
	if (gw->domain) {
		const char *colon = strrchr(gw->url_base, ':');
		return xasprintf("http://%s--%s.%s%s", app, label, gw->domain, colon ? colon : "");
	}
	return xasprintf("%s/%s/%s", gw->url_base, app, label);
}

static void gw_free_cb(uv_handle_t *h)
{
	gateway *gw = h->data;

	if (--gw->open_handles)
		return;
	while (gw->results)
		result_free(gw, gw->results);
	free(gw->url_base);
	free(gw->domain);
	free(gw);
}

void gateway_close(gateway *gw)
{
	if (!gw || gw->closing)
		return;
	gw->closing = true;
	while (gw->conns)
		conn_close(gw->conns);
	gw->open_handles = 2;
	uv_close((uv_handle_t *)&gw->listener, gw_free_cb);
	uv_close((uv_handle_t *)&gw->sweep, gw_free_cb);
}
