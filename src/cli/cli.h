/*
 * cli: the command level of `skiff`.  Verbs live in cmd_*.c; they turn
 * sk_errors into words on stderr and exit codes here, and nowhere below:
 * 0 success, 1 a failure (the server's message or ours), 2 a usage error or
 * a verb that is not implemented yet; attached processes pass their own
 * exit status through.
 */
#ifndef SK_CLI_CLI_H
#define SK_CLI_CLI_H

#include <stdbool.h>

#include "cli/client.h"
#include "util/error.h"

#define SKIFF_VERSION "0.1.0"

/* Verbs: argv[0] is the verb's own name. */
int cmd_container(int argc, char **argv);
int cmd_shell(int argc, char **argv);
/* skiff run: execs `python3 -m skiff._run` (the SDK runs the user's program). */
int cmd_run(int argc, char **argv);
/* skiff app list|stop|logs|history|rollback. */
int cmd_app(int argc, char **argv);
/* skiff usage [--app A] [--since T] [--json]. */
int cmd_usage(int argc, char **argv);
/* skiff token create|list|delete: proxy-auth tokens for web endpoints. */
int cmd_token(int argc, char **argv);
int cmd_image(int argc, char **argv);
/* deploy, serve: handed to the Python SDK's CLI where it is installed. */
int cmd_python(int argc, char **argv);
int cmd_not_implemented(int argc, char **argv);

/* "skiff: <message>" on stderr, then exit(1). */
_Noreturn void cli_fail(const sk_error *err);
_Noreturn void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "skiff: <message>", the verb's usage line and a pointer to --help; exit(2). */
_Noreturn void cli_usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The usage text on stdout, exit(0). */
_Noreturn void cli_help(const char *usage);
/* A client for SKIFF_SERVER, or exit(1) with why not. */
void cli_connect(client *c);
/*
 * POSTs <before><id><after> for each id, saying on stderr which failed and
 * why; 0 when all succeeded, else 1.  (`skiff app stop`, `container stop`.)
 */
int cli_post_each(const char *before, const char *after, char **ids, int n);
/* Writes all of data to fd; false once fd is closed or broken. */
bool cli_write_all(int fd, const void *data, size_t len);

#endif
