/*
 * connect: opens stream sockets to an endpoint (blocking, O_CLOEXEC).
 *
 * Unix socket paths longer than sun_path fit are reached through
 * /proc/self/fd/<dirfd>/<name>.  TCP connections get TCP_NODELAY.
 * timeout_ms > 0 bounds each later read and write on the socket
 * (SO_RCVTIMEO/SO_SNDTIMEO); 0 leaves them blocking.
 */
#ifndef SK_CLI_CONNECT_H
#define SK_CLI_CONNECT_H

#include "cli/endpoint.h"
#include "util/error.h"

/* Returns the fd, or -1 with err (err->errnum is ENOENT or ECONNREFUSED when
 * nothing listens on a unix socket). */
int connect_endpoint(const endpoint *ep, int timeout_ms, sk_error *err);

#endif
