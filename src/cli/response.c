#include "cli/response.h"

#include <string.h>

static int on_headers_complete(http_parser *p)
{
	response *r = p->data;

	r->status = (int)p->status_code;
	r->headers_done = true;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	response *r = p->data;

	if (r->on_body && r->status / 100 == 2) {
		if (r->on_body(at, len, r->arg) < 0) {
			r->stopped = true;
			return -1;
		}
		return 0;
	}
	sk_buf_add(&r->body, at, len);
	return 0;
}

/*
 * Pausing here makes http_parser_execute return right after this response,
 * leaving the following bytes to the caller.
 */
static int on_message_complete(http_parser *p)
{
	response *r = p->data;

	r->complete = true;
	r->keep_alive = http_should_keep_alive(p) && r->status != 101;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void response_init(response *r, response_body_fn fn, void *arg)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
	sk_buf_init(&r->body);
	r->on_body = fn;
	r->arg = arg;
}

void response_release(response *r)
{
	sk_buf_release(&r->body);
}

ssize_t response_feed(response *r, const char *data, size_t len, sk_error *err)
{
	enum http_errno e;
	size_t n;

	if (r->complete)
		return 0;
	n = http_parser_execute(&r->parser, &settings, data, len);
	e = HTTP_PARSER_ERRNO(&r->parser);
	if (r->stopped)
		return sk_error_set(err, SK_ERR_INTERNAL, "stopped");
	if (r->complete)
		return (ssize_t)n;
	if (len == 0)
		return sk_error_set(err, SK_ERR_UNAVAILABLE,
				    "the server closed the connection before the response ended");
	if (e != HPE_OK)
		return sk_error_set(err, SK_ERR_INTERNAL, "malformed response from the server: %s",
				    http_errno_description(e));
	return (ssize_t)n;
}
