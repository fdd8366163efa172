/* shell_opts: the options of `skiff shell`, parsed without side effects. */
#ifndef SK_CLI_SHELL_OPTS_H
#define SK_CLI_SHELL_OPTS_H

#include <stdbool.h>

#include "util/error.h"

#define SHELL_DEFAULT_TIMEOUT 3600

typedef struct shell_opts {
	const char *image;          /* an image base, "debian_slim" by default */
	const char *python_version; /* NULL: the image's default */
	double cpu;                 /* cores; 0: the server's default */
	long memory;                /* MiB; 0: the server's default */
	long timeout;               /* seconds */
	const char *cmd;            /* run `sh -c CMD` instead of bash, or NULL */
	bool help;
} shell_opts;

/* argv[0] is "shell"; strings point into argv.  Returns 0, or -1 with err. */
int shell_opts_parse(int argc, char **argv, shell_opts *o, sk_error *err);

#endif
