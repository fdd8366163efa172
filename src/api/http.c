/*
 * HTTP/1.1 server.  Incoming bytes are parsed eagerly into complete requests
 * kept in a per-connection queue; only the head of the queue is handed to the
 * handler, so pipelined requests are answered in order.  Responses are copied
 * into write requests (uv_write), so handlers never keep buffers alive.
 */
#include "api/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/utf8.h"
#include "util/xalloc.h"

#define MAX_BODY (1ull << 30)
#define MAX_HEAD (64 * 1024)
#define DRAIN_LOW (256 * 1024)

enum req_state { REQ_PARSING, REQ_QUEUED, REQ_PENDING, REQ_STREAMING, REQ_RAW, REQ_DONE };

struct http_server {
	uv_pipe_t listener;
	uv_loop_t *loop;
	http_handler_fn handler;
	void *data;
	http_conn *conns;
	bool closing;
};

struct http_conn {
	uv_pipe_t handle;
	http_server *srv;
	http_conn *prev, *next;
	http_parser parser;
	http_req *parsing;
	http_req *head, *tail;
	sk_buf url, hname, hval;
	bool in_value;
	size_t head_bytes;
	bool dispatching, closing, raw, upgraded;
	bool shutting;       /* closing once queued writes are out: answer nothing more */
	sk_buf rawpending;
	size_t queued;
};

typedef struct write_req {
	uv_write_t w;
	http_conn *conn;
	size_t len;
	char data[];
} write_req;

static http_parser_settings settings;

static void conn_close(http_conn *c);
static void conn_dispatch(http_conn *c);

static void req_free(http_req *r)
{
	free(r->path);
	free(r->query);
	free(r->authorization);
	free(r->upgrade);
	sk_buf_release(&r->body);
	sk_buf_release(&r->resp_headers);
	free(r);
}

/* ---- writing ---- */

static void on_write(uv_write_t *w, int status)
{
	write_req *wr = (write_req *)w;
	http_conn *c = wr->conn;
	http_req *h;

	c->queued -= wr->len;
	free(wr);
	if (status < 0 || c->closing)
		return;
	h = c->head;
	if (h && (h->state == REQ_STREAMING || h->state == REQ_RAW) && h->on_drain &&
	    c->queued < DRAIN_LOW)
		h->on_drain(h, h->owner);
}

static void conn_write(http_conn *c, const void *data, size_t len)
{
	write_req *wr;
	uv_buf_t b;

	if (c->closing || !len)
		return;
	wr = xmalloc(sizeof(*wr) + len);
	wr->conn = c;
	wr->len = len;
	memcpy(wr->data, data, len);
	b = uv_buf_init(wr->data, (unsigned)len);
	c->queued += len;
	/*
	 * uv_write fails only once the handle is shut down for writing (or
	 * closing), and then the close is already on its way.  Closing here would
	 * free the request that the caller is still answering.
	 */
	if (uv_write(&wr->w, (uv_stream_t *)&c->handle, &b, 1, on_write) < 0) {
		c->queued -= len;
		free(wr);
	}
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
	http_conn *c = s->data;

	free(s);
	conn_close(c);
}

/* Closes once every queued write has gone out. */
static void conn_close_after_writes(http_conn *c)
{
	uv_shutdown_t *s;

	if (c->closing || c->shutting)
		return;
	c->shutting = true;
	s = xmalloc(sizeof(*s));
	s->data = c;
	if (uv_shutdown(s, (uv_stream_t *)&c->handle, on_shutdown) < 0) {
		free(s);
		conn_close(c);
	}
}

static const char *reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	}
	return "Unknown";
}

/* The head request is answered: free it and move on to the next one. */
static void req_finish(http_req *r)
{
	http_conn *c = r->conn;
	bool keep = r->keep_alive;

	r->state = REQ_DONE;
	c->head = r->next;
	if (!c->head)
		c->tail = NULL;
	req_free(r);
	if (!keep) {
		conn_close_after_writes(c);
		return;
	}
	if (!c->dispatching)
		conn_dispatch(c);
}

void http_add_header(http_req *r, const char *name, const char *value)
{
	sk_buf_addf(&r->resp_headers, "%s: %s\r\n", name, value);
}

void http_respond(http_req *r, int status, const char *ctype, const void *body, size_t len)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_addf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
		    status, reason(status), ctype, len, r->resp_headers.len ? r->resp_headers.base : "",
		    r->keep_alive ? "" : "Connection: close\r\n");
	/* Small answers go out in one write; big bodies are not copied twice. */
	if (len <= 16384) {
		sk_buf_add(&b, body, len);
		conn_write(r->conn, b.base, b.len);
	} else {
		conn_write(r->conn, b.base, b.len);
		conn_write(r->conn, body, len);
	}
	sk_buf_release(&b);
	req_finish(r);
}

void http_respond_json(http_req *r, int status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	http_respond(r, status, "application/json", s, strlen(s));
	free(s);
}

int http_status_for(enum sk_error_kind kind)
{
	switch (kind) {
	case SK_ERR_INVALID: return 400;
	case SK_ERR_NOT_FOUND: return 404;
	case SK_ERR_CONFLICT: return 409;
	case SK_ERR_RESOURCES: return 422;
	case SK_ERR_UNAVAILABLE: return 503;
	case SK_ERR_INTERNAL: break;
	}
	return 500;
}

/*
 * Messages quote request bytes (paths, ids) and may be cut anywhere by the
 * size of sk_error.msg, but JSON strings must be UTF-8 (json_pack fails on
 * anything else): each byte that does not start a valid sequence becomes '?'.
 */
static void utf8_scrub(char *s)
{
	size_t len = strlen(s);

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 :
			   c >= 0xf0 && c < 0xf5 ? 4 : 0;
		unsigned cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
		bool ok = n && i + n <= len;

		for (size_t k = 1; ok && k < n; k++) {
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
			cp = cp << 6 | ((unsigned char)s[i + k] & 0x3f);
		}
		if (ok && n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
			ok = false;
		if (ok && n == 4 && (cp < 0x10000 || cp > 0x10ffff))
			ok = false;
		i += ok ? n : 1;
		if (!ok)
			s[i - 1] = '?';
	}
}

void http_respond_error(http_req *r, const sk_error *err)
{
	char msg[sizeof(err->msg)];

	snprintf(msg, sizeof(msg), "%s", err->msg);
	utf8_scrub(msg);
	http_respond_json(r, http_status_for(err->kind),
			  json_pack("{s:{s:s,s:s}}", "error", "code", sk_error_kind_name(err->kind),
				    "message", msg));
}

void http_respond_errorf(http_req *r, enum sk_error_kind kind, const char *fmt, ...)
{
	sk_error err = { 0 };
	va_list ap;

	err.kind = kind;
	va_start(ap, fmt);
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	http_respond_error(r, &err);
}

void http_stream_start(http_req *r, int status, const char *ctype)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_addf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n%s%s\r\n",
		    status, reason(status), ctype, r->resp_headers.len ? r->resp_headers.base : "",
		    r->keep_alive ? "" : "Connection: close\r\n");
	conn_write(r->conn, b.base, b.len);
	sk_buf_release(&b);
	r->state = REQ_STREAMING;
}

void http_stream_write(http_req *r, const void *data, size_t len)
{
	sk_buf b = SK_BUF_INIT;

	if (!len)
		return;
	sk_buf_addf(&b, "%zx\r\n", len);
	sk_buf_add(&b, data, len);
	sk_buf_add(&b, "\r\n", 2);
	conn_write(r->conn, b.base, b.len);
	sk_buf_release(&b);
}

void http_stream_json(http_req *r, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	size_t n = strlen(s);

	json_decref(j);
	s = xrealloc(s, n + 2);
	s[n] = '\n';
	http_stream_write(r, s, n + 1);
	free(s);
}

size_t http_queued(const http_req *r)
{
	return r->conn->queued;
}

void http_stream_end(http_req *r)
{
	conn_write(r->conn, "0\r\n\r\n", 5);
	req_finish(r);
}

void http_set_owner(http_req *r, void *owner, http_abort_fn on_abort, http_drain_fn on_drain)
{
	r->owner = owner;
	r->on_abort = on_abort;
	r->on_drain = on_drain;
}

/* ---- upgrade to a raw pipe ---- */

void http_upgrade(http_req *r, const char *proto, http_raw_read_fn on_raw)
{
	http_conn *c = r->conn;
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n",
			 proto);

	conn_write(c, head, (size_t)n);
	r->state = REQ_RAW;
	r->on_raw = on_raw;
	c->raw = true;
	if (c->rawpending.len) {
		sk_buf pend = c->rawpending;

		sk_buf_init(&c->rawpending);
		on_raw(r, r->owner, pend.base, pend.len);
		sk_buf_release(&pend);
	}
}

void http_raw_write(http_req *r, const void *data, size_t len)
{
	conn_write(r->conn, data, len);
}

void http_raw_close(http_req *r)
{
	http_conn *c = r->conn;

	r->state = REQ_DONE;
	/* Requests parsed after an upgrade the parser did not see (an Upgrade header
	 * without `Connection: upgrade`) wait behind r and will never be answered. */
	for (http_req *q = r->next, *next; q; q = next) {
		next = q->next;
		req_free(q);
	}
	c->head = NULL;
	c->tail = NULL;
	req_free(r);
	conn_close_after_writes(c);
}

/* ---- parsing ---- */

static http_req *cur(http_parser *p)
{
	return ((http_conn *)p->data)->parsing;
}

static int on_message_begin(http_parser *p)
{
	http_conn *c = p->data;
	http_req *r = xcalloc(1, sizeof(*r));

	r->conn = c;
	r->state = REQ_PARSING;
	c->parsing = r;
	sk_buf_reset(&c->url);
	sk_buf_reset(&c->hname);
	sk_buf_reset(&c->hval);
	c->in_value = false;
	c->head_bytes = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;

	if ((c->head_bytes += len) > MAX_HEAD)
		return -1;
	sk_buf_add(&c->url, at, len);
	return 0;
}

static void header_done(http_conn *c)
{
	http_req *r = c->parsing;

	if (!c->hname.len)
		return;
	if (!strcasecmp(c->hname.base, "authorization")) {
		free(r->authorization);
		r->authorization = xstrdup(c->hval.base ? c->hval.base : "");
	} else if (!strcasecmp(c->hname.base, "upgrade")) {
		free(r->upgrade);
		r->upgrade = xstrdup(c->hval.base ? c->hval.base : "");
	}
	sk_buf_reset(&c->hname);
	sk_buf_reset(&c->hval);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;

	if ((c->head_bytes += len) > MAX_HEAD)
		return -1;
	if (c->in_value) {
		header_done(c);
		c->in_value = false;
	}
	sk_buf_add(&c->hname, at, len);
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	http_conn *c = p->data;

	if ((c->head_bytes += len) > MAX_HEAD)
		return -1;
	c->in_value = true;
	sk_buf_add(&c->hval, at, len);
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	http_conn *c = p->data;

	header_done(c);
	if (p->content_length != ULLONG_MAX && p->content_length > MAX_BODY)
		return -1;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	http_req *r = cur(p);

	if (r->body.len + len > MAX_BODY)
		return -1;
	sk_buf_add(&r->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	http_conn *c = p->data;
	http_req *r = c->parsing;
	const char *url = c->url.base ? c->url.base : "/";
	const char *q = strchr(url, '?');

	c->parsing = NULL;
	r->method = p->method;
	r->keep_alive = http_should_keep_alive(p);
	r->path = q ? xstrndup(url, (size_t)(q - url)) : xstrdup(url);
	r->query = q ? xstrdup(q + 1) : NULL;
	r->state = REQ_QUEUED;
	if (c->tail)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	return 0;
}

static void conn_dispatch(http_conn *c)
{
	c->dispatching = true;
	while (c->head && c->head->state == REQ_QUEUED && !c->closing && !c->shutting) {
		c->head->state = REQ_PENDING;
		c->srv->handler(c->head, c->srv->data);
	}
	c->dispatching = false;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = xmalloc(65536);
	buf->len = 65536;
}

static void reject(http_conn *c, int status, const char *msg)
{
	char body[256], out[512];
	int len, n;

	/* An answer cut into a response stream under way would garble it: hang up. */
	if (c->head && c->head->state == REQ_STREAMING) {
		conn_close(c);
		return;
	}
	len = snprintf(body, sizeof(body),
		       "{\"error\":{\"code\":\"invalid_argument\",\"message\":\"%s\"}}", msg);
	n = snprintf(out, sizeof(out),
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
		     "Content-Length: %d\r\n\r\n%s",
		     status, reason(status), len, body);
	conn_write(c, out, (size_t)n);
	conn_close_after_writes(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	http_conn *c = s->data;
	size_t n;

	if (nread < 0) {
		free(buf->base);
		if (c->raw && c->head && c->head->on_raw && nread == UV_EOF) {
			uv_read_stop(s);
			c->head->on_raw(c->head, c->head->owner, NULL, 0);
			return;
		}
		conn_close(c);
		return;
	}
	if (c->raw) {
		if (c->head && c->head->on_raw && nread > 0)
			c->head->on_raw(c->head, c->head->owner, buf->base, (size_t)nread);
		free(buf->base);
		return;
	}
	if (c->upgraded) {
		/* Bytes for the new protocol before the handler accepted it. */
		sk_buf_add(&c->rawpending, buf->base, (size_t)nread);
		free(buf->base);
		return;
	}
	n = http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
	if (c->parser.upgrade) {
		c->upgraded = true;
		sk_buf_add(&c->rawpending, buf->base + n, (size_t)nread - n);
	} else if (n != (size_t)nread || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
		free(buf->base);
		reject(c, 400, http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
		return;
	}
	free(buf->base);
	if (!c->dispatching)
		conn_dispatch(c);
}

static void on_closed(uv_handle_t *h)
{
	http_conn *c = h->data;

	sk_buf_release(&c->url);
	sk_buf_release(&c->hname);
	sk_buf_release(&c->hval);
	sk_buf_release(&c->rawpending);
	free(c);
}

static void conn_close(http_conn *c)
{
	http_req *r, *next;

	if (c->closing)
		return;
	c->closing = true;
	for (r = c->head; r; r = next) {
		next = r->next;
		if ((r->state == REQ_PENDING || r->state == REQ_STREAMING || r->state == REQ_RAW) &&
		    r->on_abort)
			r->on_abort(r, r->owner);
		req_free(r);
	}
	c->head = c->tail = NULL;
	if (c->parsing) {
		req_free(c->parsing);
		c->parsing = NULL;
	}
	if (c->srv) { /* NULL once http_server_close let go of c */
		if (c->prev)
			c->prev->next = c->next;
		else
			c->srv->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
	}
	/* At shutdown the server may have closed every handle already (uv_walk). */
	if (!uv_is_closing((uv_handle_t *)&c->handle))
		uv_close((uv_handle_t *)&c->handle, on_closed);
}

static void on_connection(uv_stream_t *l, int status)
{
	http_server *srv = l->data;
	http_conn *c;

	if (status < 0)
		return;
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	uv_pipe_init(srv->loop, &c->handle, 0);
	c->handle.data = c;
	if (uv_accept(l, (uv_stream_t *)&c->handle) < 0) {
		uv_close((uv_handle_t *)&c->handle, on_closed);
		return;
	}
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
}

int http_server_listen_unix(uv_loop_t *loop, const char *path, http_handler_fn handler,
			    void *data, http_server **out, sk_error *err)
{
	http_server *srv = xcalloc(1, sizeof(*srv));
	mode_t old;
	int rc;

	settings.on_message_begin = on_message_begin;
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_message_complete;

	srv->loop = loop;
	srv->handler = handler;
	srv->data = data;
	uv_pipe_init(loop, &srv->listener, 0);
	srv->listener.data = srv;
	unlink(path);
	/* The socket is born owner-only: no window where others can connect. */
	old = umask(0077);
	rc = uv_pipe_bind(&srv->listener, path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&srv->listener, 256, on_connection);
	if (rc < 0) {
		uv_close((uv_handle_t *)&srv->listener, (uv_close_cb)free);
		return sk_error_set(err, SK_ERR_INTERNAL, "cannot listen on %s: %s", path,
				    uv_strerror(rc));
	}
	chmod(path, 0600);
	*out = srv;
	return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
	free(h->data);
}

void http_server_close(http_server *srv)
{
	srv->closing = true;
	/* Connections with nothing in flight close once their answers are sent. */
	for (http_conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		if (!c->head)
			conn_close_after_writes(c);
	}
	for (http_conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		if (c->head)
			conn_close(c);
	}
	/* Those still sending outlive srv, which is freed with the listener. */
	for (http_conn *c = srv->conns, *next; c; c = next) {
		next = c->next;
		c->srv = NULL;
		c->prev = c->next = NULL;
	}
	srv->conns = NULL;
	uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

/* ---- query strings ---- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

const char *http_query_get(const http_req *r, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = r->query;

	while (p && *p) {
		const char *end = strchr(p, '&');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n >= klen && !strncmp(p, key, klen) && (n == klen || p[klen] == '=')) {
			const char *v = n == klen ? p + n : p + klen + 1;
			size_t o = 0;

			for (; v < p + n && o + 1 < outlen; v++) {
				if (*v == '%' && v + 2 < p + n + 1 && hexval(v[1]) >= 0 &&
				    hexval(v[2]) >= 0) {
					out[o++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
					v += 2;
				} else {
					out[o++] = *v == '+' ? ' ' : *v;
				}
			}
			out[o] = 0;
			return out;
		}
		p = end ? end + 1 : NULL;
	}
	return NULL;
}
