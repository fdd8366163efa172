/*
 * autostart: the embedded default.  When the default unix socket does not
 * answer, the CLI starts `skiff server` in the background for this
 * SKIFF_HOME and waits for it to be healthy, so that `skiff shell` works
 * on a fresh machine with nothing else set up.
 *
 * The server runs in its own session (setsid), stdin /dev/null, stdout and
 * stderr appended to $SKIFF_HOME/server.log, no other fds inherited.  A lock
 * file ($SKIFF_HOME/cli-autostart.lock) keeps concurrent CLIs from starting
 * two servers.  The user is told once, on stderr.
 */
#ifndef SK_CLI_AUTOSTART_H
#define SK_CLI_AUTOSTART_H

#include <sys/types.h>

#include "cli/client.h"
#include "util/error.h"

/* Waits for the server this long to answer GET /v1/health. */
#define AUTOSTART_WAIT_MS 10000

/* Starts a server (unless one answers by now) and returns a connected fd to
 * it, or -1 with err. */
int autostart_server(client *c, sk_error *err);

/* Forks and execs `/proc/self/exe server`, detached as above. */
int autostart_spawn(const char *home, pid_t *pid, sk_error *err);

#endif
