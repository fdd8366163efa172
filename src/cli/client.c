/*
 * The request loop: one request at a time on a keep-alive connection.  A
 * reused connection may have been closed by the server while idle; when a
 * request on it gets no byte of answer, it is sent once more on a fresh
 * connection (the server cannot have acted on a request it never read).
 */
#include "cli/client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/autostart.h"
#include "cli/cli.h"
#include "cli/connect.h"
#include "cli/response.h"
#include "server/server.h"
#include "util/xalloc.h"


int client_init_from_env(client *c, sk_error *err)
{
	const char *spec = getenv("SKIFF_SERVER");
	const char *token = getenv("SKIFF_TOKEN");
	endpoint def;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	sk_buf_init(&c->rbuf);
	c->home = server_default_home();
	endpoint_default(c->home, &def);
	if (spec && *spec) {
		if (endpoint_parse(spec, &c->ep, err) < 0) {
			endpoint_release(&def);
			client_release(c);
			return -1;
		}
		/* SKIFF_SERVER naming the default socket still means "the embedded default". */
		c->may_autostart = c->ep.kind == ENDPOINT_UNIX && !strcmp(c->ep.path, def.path);
		endpoint_release(&def);
	} else {
		c->ep = def;
		c->may_autostart = true;
	}
	if (token && *token)
		c->token = xstrdup(token);
	return 0;
}

void client_release(client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	endpoint_release(&c->ep);
	free(c->token);
	free(c->home);
	c->token = c->home = NULL;
	sk_buf_release(&c->rbuf);
}

static void drop_conn(client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	sk_buf_reset(&c->rbuf);
}

static int open_conn(client *c, sk_error *err)
{
	sk_error cerr;
	int fd;

	fd = connect_endpoint(&c->ep, c->timeout_ms, &cerr);
	if (fd < 0 && c->may_autostart && (cerr.errnum == ENOENT || cerr.errnum == ECONNREFUSED))
		fd = autostart_server(c, err);
	else if (fd < 0 && c->ep.kind == ENDPOINT_UNIX &&
		 (cerr.errnum == ENOENT || cerr.errnum == ECONNREFUSED))
		sk_error_set(err, SK_ERR_UNAVAILABLE,
			     "no skiff server answers at unix:%s (%s); start one with `skiff server`, "
			     "or unset SKIFF_SERVER to use the embedded default",
			     c->ep.path, strerror(cerr.errnum));
	else if (fd < 0 && err)
		*err = cerr;
	if (fd < 0)
		return -1;
	c->fd = fd;
	sk_buf_reset(&c->rbuf);
	return 0;
}

char *client_path(const char *before, const char *id, const char *after)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_adds(&b, before);
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
			sk_buf_add(&b, p, 1);
		else
			sk_buf_addf(&b, "%%%02X", *p);
	}
	sk_buf_adds(&b, after);
	return sk_buf_detach(&b, NULL);
}

static void build_request(client *c, sk_buf *out, const char *method, const char *path,
			  const char *body, const char *upgrade)
{
	size_t blen = body ? strlen(body) : 0;

	sk_buf_addf(out, "%s %s HTTP/1.1\r\n", method, path);
	if (c->ep.kind == ENDPOINT_TCP)
		sk_buf_addf(out, strchr(c->ep.host, ':') ? "Host: [%s]:%s\r\n" : "Host: %s:%s\r\n",
			    c->ep.host, c->ep.port);
	else
		sk_buf_adds(out, "Host: localhost\r\n");
	sk_buf_adds(out, "User-Agent: skiff-cli/" SKIFF_VERSION "\r\n");
	if (c->ep.kind == ENDPOINT_TCP && c->token)
		sk_buf_addf(out, "Authorization: Bearer %s\r\n", c->token);
	if (body)
		sk_buf_adds(out, "Content-Type: application/json\r\n");
	sk_buf_addf(out, "Content-Length: %zu\r\n", blen);
	if (upgrade)
		sk_buf_addf(out, "Connection: Upgrade\r\nUpgrade: %s\r\n", upgrade);
	sk_buf_adds(out, "\r\n");
	if (body)
		sk_buf_add(out, body, blen);
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

enum { TRY_OK = 0, TRY_FAIL = -1, TRY_AGAIN = -2 };

/* Reads one response into r; keeps the bytes after it in c->rbuf. */
static int read_response(client *c, response *r, bool reused, sk_error *err)
{
	char buf[65536];
	bool got_any = false;
	sk_error ferr;
	ssize_t used;

	if (c->rbuf.len) {
		got_any = true;
		used = response_feed(r, c->rbuf.base, c->rbuf.len, &ferr);
		if (used < 0)
			goto feed_failed;
		sk_buf_consume(&c->rbuf, (size_t)used);
	}
	while (!r->complete) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && !got_any && reused && (errno == ECONNRESET || errno == EPIPE))
			return TRY_AGAIN;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return sk_error_set(err, SK_ERR_UNAVAILABLE,
						    "the skiff server did not answer in time");
			return sk_error_errno(err, errno, "reading from the skiff server");
		}
		if (n == 0 && !got_any && reused)
			return TRY_AGAIN;
		got_any = true;
		used = response_feed(r, buf, (size_t)n, &ferr);
		if (used < 0)
			goto feed_failed;
		if (r->complete)
			sk_buf_add(&c->rbuf, buf + used, (size_t)n - (size_t)used);
	}
	return TRY_OK;
feed_failed:
	/* A stopped stream's err was filled by the caller's callback. */
	if (!r->stopped && err)
		*err = ferr;
	return TRY_FAIL;
}

static int do_request(client *c, const char *method, const char *path, json_t *body,
		      const char *upgrade, response *r, sk_error *err)
{
	_cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	sk_buf req = SK_BUF_INIT;
	int rc = TRY_FAIL;

	build_request(c, &req, method, path, text, upgrade);
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = c->fd >= 0;

		if (!reused && open_conn(c, err) < 0)
			break;
		if (send_all(c->fd, req.base, req.len) < 0) {
			int e = errno;

			drop_conn(c);
			if (reused && (e == EPIPE || e == ECONNRESET))
				continue;
			sk_error_errno(err, e, "sending to the skiff server");
			break;
		}
		rc = read_response(c, r, reused, err);
		if (rc != TRY_AGAIN)
			break;
		drop_conn(c);
		response_release(r);
		response_init(r, r->on_body, r->arg);
		rc = TRY_FAIL;
	}
	sk_buf_release(&req);
	if (rc != TRY_OK || !r->keep_alive) {
		if (!(rc == TRY_OK && r->status == 101))
			drop_conn(c);
	}
	return rc == TRY_OK ? 0 : -1;
}

static enum sk_error_kind kind_for_code(const char *code, int status)
{
	static const struct { const char *code; enum sk_error_kind kind; } map[] = {
		{ "invalid_argument", SK_ERR_INVALID }, { "not_found", SK_ERR_NOT_FOUND },
		{ "conflict", SK_ERR_CONFLICT },        { "resource_exhausted", SK_ERR_RESOURCES },
		{ "unavailable", SK_ERR_UNAVAILABLE },
	};

	for (size_t i = 0; code && i < ARRAY_SIZE(map); i++)
		if (!strcmp(code, map[i].code))
			return map[i].kind;
	switch (status) {
	case 400: return SK_ERR_INVALID;
	case 404: return SK_ERR_NOT_FOUND;
	case 409: return SK_ERR_CONFLICT;
	case 422: return SK_ERR_RESOURCES;
	case 503: return SK_ERR_UNAVAILABLE;
	}
	return SK_ERR_INTERNAL;
}

/* Turns a non-2xx answer into err, with the server's own words where it gave some. */
static int status_error(const response *r, sk_error *err)
{
	json_t *j = r->body.len ? json_loadb(r->body.base, r->body.len, 0, NULL) : NULL;
	json_t *e = json_object_get(j, "error");
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));

	if (msg)
		sk_error_set(err, kind_for_code(code, r->status), "%s", msg);
	else
		sk_error_set(err, kind_for_code(NULL, r->status),
			     "the skiff server answered HTTP %d%s%.200s", r->status,
			     r->body.len ? ": " : "", r->body.len ? r->body.base : "");
	json_decref(j);
	return -1;
}

int client_call(client *c, const char *method, const char *path, json_t *body, json_t **out,
		sk_error *err)
{
	json_error_t jerr;
	response r;
	json_t *j = NULL;
	int rc = -1;

	if (out)
		*out = NULL;
	response_init(&r, NULL, NULL);
	if (do_request(c, method, path, body, NULL, &r, err) < 0)
		goto out;
	if (r.status / 100 != 2) {
		status_error(&r, err);
		goto out;
	}
	if (r.body.len) {
		j = json_loadb(r.body.base, r.body.len, 0, &jerr);
		if (!j) {
			sk_error_set(err, SK_ERR_INTERNAL, "the skiff server sent bad JSON for %s %s: %s",
				     method, path, jerr.text);
			goto out;
		}
	}
	if (out)
		*out = j;
	else
		json_decref(j);
	rc = 0;
out:
	response_release(&r);
	return rc;
}

struct stream_ctx {
	client_bytes_fn fn;
	void *arg;
	sk_error *err;
};

static int stream_body(const char *data, size_t len, void *arg)
{
	struct stream_ctx *s = arg;

	return s->fn(data, len, s->arg, s->err);
}

int client_stream(client *c, const char *method, const char *path, json_t *body,
		  client_bytes_fn fn, void *arg, sk_error *err)
{
	sk_error scratch;
	struct stream_ctx s = { fn, arg, err ? err : &scratch };
	response r;
	int rc;

	response_init(&r, stream_body, &s);
	rc = do_request(c, method, path, body, NULL, &r, s.err);
	if (rc == 0 && r.status / 100 != 2)
		rc = status_error(&r, err);
	response_release(&r);
	return rc;
}

struct ndjson_ctx {
	client_json_fn fn;
	void *arg;
	sk_buf line;
};

static int ndjson_line(struct ndjson_ctx *n, const char *p, size_t len, sk_error *err)
{
	json_error_t jerr;
	json_t *j;
	int rc;

	while (len && (p[len - 1] == '\r' || p[len - 1] == ' '))
		len--;
	if (!len)
		return 0;
	j = json_loadb(p, len, 0, &jerr);
	if (!j)
		return sk_error_set(err, SK_ERR_INTERNAL, "the skiff server sent a bad NDJSON line: %s",
				    jerr.text);
	rc = n->fn(j, n->arg, err);
	json_decref(j);
	return rc;
}

static int ndjson_bytes(const char *data, size_t len, void *arg, sk_error *err)
{
	struct ndjson_ctx *n = arg;
	const char *nl;

	while ((nl = memchr(data, '\n', len))) {
		size_t part = (size_t)(nl - data);
		int rc;

		if (n->line.len) {
			sk_buf_add(&n->line, data, part);
			rc = ndjson_line(n, n->line.base, n->line.len, err);
			sk_buf_reset(&n->line);
		} else {
			rc = ndjson_line(n, data, part, err);
		}
		if (rc < 0)
			return -1;
		data += part + 1;
		len -= part + 1;
	}
	sk_buf_add(&n->line, data, len);
	return 0;
}

int client_ndjson(client *c, const char *method, const char *path, json_t *body,
		  client_json_fn fn, void *arg, sk_error *err)
{
	struct ndjson_ctx n = { fn, arg, SK_BUF_INIT };
	int rc;

	rc = client_stream(c, method, path, body, ndjson_bytes, &n, err);
	if (rc == 0 && n.line.len)
		rc = ndjson_line(&n, n.line.base, n.line.len, err);
	sk_buf_release(&n.line);
	return rc;
}

int client_upgrade(client *c, const char *path, const char *proto, int *fd, sk_buf *pending,
		   sk_error *err)
{
	response r;
	int rc = -1;

	*fd = -1;
	sk_buf_init(pending);
	response_init(&r, NULL, NULL);
	if (do_request(c, "POST", path, NULL, proto, &r, err) < 0)
		goto out;
	if (r.status != 101) {
		if (r.status / 100 == 2)
			sk_error_set(err, SK_ERR_INTERNAL,
				     "the skiff server answered HTTP %d instead of upgrading %s",
				     r.status, path);
		else
			status_error(&r, err);
		goto out;
	}
	*fd = c->fd;
	c->fd = -1;
	*pending = c->rbuf;
	sk_buf_init(&c->rbuf);
	rc = 0;
out:
	response_release(&r);
	return rc;
}
