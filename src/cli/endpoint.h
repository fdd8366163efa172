/*
 * endpoint: where the CLI finds the daemon, parsed from SKIFF_SERVER.
 *
 *   unix:PATH          a unix socket (the default is unix:$SKIFF_HOME/skiff.sock)
 *   http://HOST:PORT   TCP; requests then carry Authorization: Bearer $SKIFF_TOKEN
 *
 * HOST may be a name, an IPv4 address or a bracketed IPv6 address; PORT
 * defaults to 80; a trailing "/" is allowed.  Pure string work, no I/O.
 */
#ifndef SK_CLI_ENDPOINT_H
#define SK_CLI_ENDPOINT_H

#include "util/error.h"

enum endpoint_kind { ENDPOINT_UNIX, ENDPOINT_TCP };

typedef struct endpoint {
	enum endpoint_kind kind;
	char *path; /* ENDPOINT_UNIX: the socket path */
	char *host; /* ENDPOINT_TCP: without brackets */
	char *port; /* ENDPOINT_TCP: digits */
} endpoint;

/* Fills *ep (owned by the caller: endpoint_release) or returns -1 with err. */
int endpoint_parse(const char *spec, endpoint *ep, sk_error *err);
/* The default: unix:<home>/skiff.sock. */
void endpoint_default(const char *home, endpoint *ep);
void endpoint_release(endpoint *ep);

#endif
