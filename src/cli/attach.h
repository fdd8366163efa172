/*
 * attach: joins the local terminal (or pipes) to a process in a container,
 * as `skiff shell` and `skiff container exec` do.
 *
 * POST /v1/processes/<id>/attach upgrades the connection to a raw pipe;
 * this module pumps stdin to it and its bytes to stdout with poll() until the
 * server closes it, then asks GET /v1/processes/<id>/wait how the process
 * ended.  Stdin's EOF becomes a write shutdown of the socket.  With a tty the
 * local terminal is raw while attached, and window size changes are sent as
 * POST /v1/processes/<id>/resize.
 *
 * Input bound for the socket is buffered, so that a process that does not
 * read its stdin never stops its output from being shown.
 */
#ifndef SK_CLI_ATTACH_H
#define SK_CLI_ATTACH_H

#include <stdbool.h>

#include "cli/client.h"
#include "util/error.h"

typedef struct attach_result {
	int signo;       /* a signal (SIGINT, SIGTERM, ...) ended the attach early; 0 if not */
	int returncode;  /* the process's exit status, or 128+signal; valid when !signo */
	bool oom, timed_out, terminated;
} attach_result;

int attach_run(client *c, const char *process_id, bool tty, attach_result *res, sk_error *err);

/* Sends the local terminal's size for process_id; errors are ignored. */
void attach_resize(client *c, const char *process_id);

#endif
