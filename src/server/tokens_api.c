/*
 * The routes of proxy-auth tokens (issue 5, docs/api.md): create, list and
 * delete the tokens that web endpoints with requires_proxy_auth demand as
 * the headers Skiff-Key and Skiff-Secret.
 *
 * A secret leaves the server once, in the reply to POST /v1/tokens; the
 * store keeps only its SHA-256, and nothing here logs it.
 */
#include <string.h>

#include "server/internal.h"
#include "util/xalloc.h"

#define MAX_TOKEN_NAME 128

static json_t *token_json(const store_token *t)
{
	return json_pack("{s:s, s:o, s:f}", "token_id", t->token_id, "name",
			 t->name ? json_string(t->name) : json_null(), "created_at", t->created_at);
}

/* The optional name in the body {"name": ...}; an empty body has none. */
static int body_name(http_req *req, json_t **body, const char **name, sk_error *err)
{
	json_error_t jerr;
	json_t *n;

	*body = NULL;
	*name = NULL;
	if (req->body.len == 0)
		return 0;
	*body = json_loadb(req->body.base, req->body.len, 0, &jerr);
	if (!*body)
		return sk_error_set(err, SK_ERR_INVALID,
				    "request body is not valid JSON (%s, line %d column %d)",
				    jerr.text, jerr.line, jerr.column);
	if (!json_is_object(*body))
		return sk_error_set(err, SK_ERR_INVALID, "request body must be a JSON object");
	n = json_object_get(*body, "name");
	if (!n || json_is_null(n))
		return 0;
	if (!json_is_string(n))
		return sk_error_set(err, SK_ERR_INVALID, "\"name\" must be a string");
	if (json_string_length(n) == 0 || json_string_length(n) > MAX_TOKEN_NAME)
		return sk_error_set(err, SK_ERR_INVALID, "\"name\" must be 1 to %d bytes long",
				    MAX_TOKEN_NAME);
	*name = json_string_value(n);
	return 0;
}

static void h_token_create(skiff_server *s, http_req *req)
{
	json_t *body;
	const char *name;
	_cleanup_free_ char *id = NULL, *secret = NULL;
	sk_error err;

	if (body_name(req, &body, &name, &err) < 0 ||
	    store_token_create(s->store, name, &id, &secret, &err) < 0) {
		json_decref(body);
		http_respond_error(req, &err);
		return;
	}
	json_decref(body);
	http_respond_json(req, 201, json_pack("{s:s, s:s}", "token_id", id, "token_secret", secret));
	explicit_bzero(secret, strlen(secret));
}

static void h_token_list(skiff_server *s, http_req *req)
{
	store_token *ts = NULL;
	size_t n = 0;
	json_t *arr;
	sk_error err;

	if (store_token_list(s->store, &ts, &n, &err) < 0) {
		http_respond_error(req, &err);
		return;
	}
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, token_json(&ts[i]));
	store_tokens_free(ts, n);
	http_respond_json(req, 200, json_pack("{s:o}", "tokens", arr));
}

static void h_token_delete(skiff_server *s, http_req *req, const char *id)
{
	sk_error err;

	if (store_token_delete(s->store, id, &err) < 0) {
		http_respond_error(req, &err);
		return;
	}
	http_respond_json(req, 200, json_pack("{s:s}", "deleted", id));
}

bool tokens_api_handle(skiff_server *s, http_req *req, char **parts, size_t n)
{
	if (n < 2 || strcmp(parts[1], "tokens"))
		return false;
	if (n == 2 && req->method == HTTP_POST)
		h_token_create(s, req);
	else if (n == 2 && req->method == HTTP_GET)
		h_token_list(s, req);
	else if (n == 3 && req->method == HTTP_DELETE)
		h_token_delete(s, req, parts[2]);
	else
		return false;
	return true;
}
