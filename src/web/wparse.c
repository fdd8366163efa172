/* The gateway's request parser (see wparse.h). */
#include "web/wparse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static http_parser_settings settings;

static wp_parser *P(http_parser *hp)
{
	return hp->data;
}

static int fail(wp_parser *p, int status, const char *why)
{
	if (!p->error_status) {
		p->error_status = status;
		p->error = why;
	}
	return -1;
}

/* Also refuses NUL bytes: the head is kept as NUL-separated strings, and a NUL
 * inside a value would split it into forged headers. */
static int count_head(wp_parser *p, const char *at, size_t len)
{
	if (memchr(at, 0, len))
		return fail(p, 400, "a NUL byte in the request line or headers");
	p->head_bytes += len;
	if (p->head_bytes > WP_MAX_HEAD)
		return fail(p, 431, "the request's headers are too large (limit 64 KiB)");
	return 0;
}

static int on_message_begin(http_parser *hp)
{
	wp_parser *p = P(hp);

	sk_buf_reset(&p->url);
	sk_buf_reset(&p->hbuf);
	p->n_headers = 0;
	p->head_bytes = 0;
	p->in_value = p->head_done = p->msg_done = false;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	wp_parser *p = P(hp);

	if (count_head(p, at, len) < 0)
		return -1;
	sk_buf_add(&p->url, at, len);
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	wp_parser *p = P(hp);

	if (count_head(p, at, len) < 0)
		return -1;
	if (p->in_value || !p->n_headers) {
		if (p->n_headers)
			sk_buf_add(&p->hbuf, "", 1); /* ends the last value */
		if (++p->n_headers > WP_MAX_HEADERS)
			return fail(p, 431, "the request has too many headers (limit 128)");
		p->in_value = false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = (char)tolower((unsigned char)at[i]);
		sk_buf_add(&p->hbuf, &c, 1);
	}
	return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	wp_parser *p = P(hp);

	if (count_head(p, at, len) < 0)
		return -1;
	if (!p->in_value) {
		sk_buf_add(&p->hbuf, "", 1); /* ends the name */
		p->in_value = true;
	}
	sk_buf_add(&p->hbuf, at, len);
	return 0;
}

bool wp_header_next(const wp_parser *p, size_t *pos, const char **name, const char **value)
{
	size_t n;

	if (!p->hbuf.base || *pos >= p->hbuf.len)
		return false;
	*name = p->hbuf.base + *pos;
	n = strlen(*name) + 1;
	if (*pos + n >= p->hbuf.len)
		return false;
	*value = *name + n;
	*pos += n + strlen(*value) + 1;
	return true;
}

const char *wp_header(const wp_parser *p, const char *name)
{
	size_t pos = 0;
	const char *n, *v;

	while (wp_header_next(p, &pos, &n, &v))
		if (!strcmp(n, name))
			return v;
	return NULL;
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static bool has_token(const char *v, const char *token)
{
	size_t tl = strlen(token);

	while (v && *v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		size_t n = strcspn(v, ",");
		size_t m = n;
		while (m && (v[m - 1] == ' ' || v[m - 1] == '\t'))
			m--;
		if (m == tl && !strncasecmp(v, token, tl))
			return true;
		v += n;
	}
	return false;
}

static int on_headers_complete(http_parser *hp)
{
	wp_parser *p = P(hp);
	const char *te, *up, *conn, *exp, *ver;

	if (p->n_headers) /* ends the last value (or a name without one, and its empty value) */
		sk_buf_add(&p->hbuf, "\0", p->in_value ? 1 : 2);
	sk_buf_add(&p->url, "", 1);
	p->url.len--;
	p->head_done = true;
	p->method = http_method_str((enum http_method)hp->method);
	p->http_minor = hp->http_minor;
	p->keep_alive = http_should_keep_alive(hp);
	te = wp_header(p, "transfer-encoding");
	p->chunked = (hp->flags & F_CHUNKED) != 0;
	if (te && !p->chunked)
		return fail(p, 501, "unsupported transfer-encoding (only chunked is)");
	p->has_length = (hp->flags & F_CONTENTLENGTH) != 0 && !p->chunked;
	p->content_length = p->has_length ? hp->content_length : 0;
	if (p->has_length && p->content_length > (4ull << 30))
		return fail(p, 413, "the request body is larger than 4 GiB");
	exp = wp_header(p, "expect");
	p->expect_continue = exp && !strcasecmp(exp, "100-continue");
	p->host = wp_header(p, "host");
	p->origin = wp_header(p, "origin");
	up = wp_header(p, "upgrade");
	conn = wp_header(p, "connection");
	ver = wp_header(p, "sec-websocket-version");
	p->ws_key = wp_header(p, "sec-websocket-key");
	p->upgrade_ws = up && has_token(up, "websocket") && conn && has_token(conn, "upgrade");
	if (hp->method == HTTP_CONNECT)
		return fail(p, 405, "CONNECT is not supported");
	if (p->upgrade_ws) {
		if (hp->method != HTTP_GET || !p->ws_key || strlen(p->ws_key) != 24 || !ver ||
		    strcmp(ver, "13") || p->chunked || p->content_length)
			return fail(p, 400, "a bad WebSocket handshake (RFC 6455: GET, "
					    "Sec-WebSocket-Key, Sec-WebSocket-Version: 13)");
	} else if (hp->upgrade && (p->chunked || p->content_length)) {
		return fail(p, 400, "an Upgrade other than websocket with a body is not supported");
	}
	if (hp->http_major != 1)
		return fail(p, 505, "only HTTP/1.x is supported");
	if (p->url.len == 0 || (p->url.base[0] != '/' && p->url.base[0] != '*'))
		return fail(p, 400, "the request target must be a path");
	if (p->cb->on_head && p->cb->on_head(p) < 0)
		return -1;
	/* HEAD requests have no body to parse in responses; for requests the
	 * parser goes by Content-Length/chunked either way. */
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	wp_parser *p = P(hp);

	if (p->cb->on_body && p->cb->on_body(p, at, len) < 0)
		return -1;
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	wp_parser *p = P(hp);

	p->msg_done = true;
	if (p->cb->on_end && p->cb->on_end(p) < 0)
		return -1;
	http_parser_pause(hp, 1);
	return 0;
}

static void settings_init(void)
{
	if (settings.on_message_begin)
		return;
	settings.on_message_begin = on_message_begin;
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_message_complete;
}

void wp_init(wp_parser *p, const wp_callbacks *cb, void *data)
{
	settings_init();
	memset(p, 0, sizeof(*p));
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	p->cb = cb;
	p->data = data;
}

void wp_release(wp_parser *p)
{
	sk_buf_release(&p->url);
	sk_buf_release(&p->hbuf);
}

size_t wp_feed(wp_parser *p, const char *data, size_t len)
{
	size_t n;
	enum http_errno e;

	if (p->error_status || p->msg_done || !len)
		return 0;
	n = http_parser_execute(&p->hp, &settings, data, len);
	e = HTTP_PARSER_ERRNO(&p->hp);
	if (e == HPE_PAUSED)
		return n;
	if (p->hp.upgrade && p->msg_done)
		return n;
	if (e != HPE_OK && !p->error_status) {
		if (e == HPE_HEADER_OVERFLOW)
			fail(p, 431, "the request's headers are too large");
		else if (e == HPE_INVALID_CHUNK_SIZE)
			fail(p, 400, "invalid chunked encoding");
		else
			fail(p, 400, http_errno_description(e));
	}
	return n;
}

void wp_next(wp_parser *p)
{
	http_parser_pause(&p->hp, 0);
	if (p->hp.upgrade) {
		/* Only reached for upgrades the gateway ignored (no body). */
		http_parser_init(&p->hp, HTTP_REQUEST);
		p->hp.data = p;
	}
	p->msg_done = p->head_done = false;
}
