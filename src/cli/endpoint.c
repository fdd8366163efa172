#include "cli/endpoint.h"

#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

static int parse_unix(const char *spec, const char *rest, endpoint *ep, sk_error *err)
{
	if (!strncmp(rest, "//", 2))
		rest += 2;
	if (!*rest)
		return sk_error_set(err, SK_ERR_INVALID,
				    "SKIFF_SERVER '%s' names no socket path (write unix:/path/to/skiff.sock)",
				    spec);
	ep->kind = ENDPOINT_UNIX;
	ep->path = xstrdup(rest);
	return 0;
}

static int parse_port(const char *spec, const char *p, size_t n, endpoint *ep, sk_error *err)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			goto bad;
		v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v == 0 || v > 65535)
		goto bad;
	ep->port = xstrndup(p, n);
	return 0;
bad:
	return sk_error_set(err, SK_ERR_INVALID, "SKIFF_SERVER '%s' has a bad port '%.*s'", spec,
			    (int)n, p);
}

static int parse_http(const char *spec, const char *rest, endpoint *ep, sk_error *err)
{
	size_t len = strlen(rest);
	const char *host, *colon;
	size_t hostlen;

	while (len && rest[len - 1] == '/')
		len--;
	if (memchr(rest, '/', len) || memchr(rest, '@', len) || memchr(rest, '?', len))
		return sk_error_set(err, SK_ERR_INVALID,
				    "SKIFF_SERVER '%s' must be http://HOST:PORT, with no path", spec);
	if (len && rest[0] == '[') {
		const char *close = memchr(rest, ']', len);

		if (!close || close == rest + 1)
			goto bad_host;
		host = rest + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1 < rest + len ? close + 1 : NULL;
		if (colon && *colon != ':')
			goto bad_host;
	} else {
		host = rest;
		colon = memchr(rest, ':', len);
		hostlen = colon ? (size_t)(colon - rest) : len;
		if (colon && memchr(colon + 1, ':', len - (size_t)(colon + 1 - rest)))
			goto bad_host;
	}
	if (hostlen == 0)
		goto bad_host;
	ep->kind = ENDPOINT_TCP;
	if (colon) {
		if (parse_port(spec, colon + 1, len - (size_t)(colon + 1 - rest), ep, err) < 0)
			return -1;
	} else {
		ep->port = xstrdup("80");
	}
	ep->host = xstrndup(host, hostlen);
	return 0;
bad_host:
	return sk_error_set(err, SK_ERR_INVALID,
			    "SKIFF_SERVER '%s' has no usable host (write http://HOST:PORT)", spec);
}

int endpoint_parse(const char *spec, endpoint *ep, sk_error *err)
{
	memset(ep, 0, sizeof(*ep));
	if (!strncmp(spec, "unix:", 5))
		return parse_unix(spec, spec + 5, ep, err);
	if (!strncmp(spec, "http://", 7))
		return parse_http(spec, spec + 7, ep, err);
	if (!strncmp(spec, "https://", 8))
		return sk_error_set(err, SK_ERR_INVALID,
				    "SKIFF_SERVER '%s': https is not supported; use http://HOST:PORT "
				    "(over a tunnel where the network is not trusted)",
				    spec);
	return sk_error_set(err, SK_ERR_INVALID,
			    "SKIFF_SERVER '%s' is neither unix:PATH nor http://HOST:PORT", spec);
}

void endpoint_default(const char *home, endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->kind = ENDPOINT_UNIX;
	ep->path = xasprintf("%s/skiff.sock", home);
}

void endpoint_release(endpoint *ep)
{
	free(ep->path);
	free(ep->host);
	free(ep->port);
	memset(ep, 0, sizeof(*ep));
}
