#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/xalloc.h"

void cli_fail(const sk_error *err)
{
	fflush(stdout);
	fprintf(stderr, "skiff: %s\n", err->msg[0] ? err->msg : "failed (no details)");
	exit(1);
}

void cli_die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("skiff: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* The first line of a usage text is its synopsis. */
static void print_synopsis(FILE *f, const char *usage)
{
	const char *nl = strchr(usage, '\n');

	fprintf(f, "%.*s\n", nl ? (int)(nl - usage) : (int)strlen(usage), usage);
}

void cli_usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("skiff: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_synopsis(stderr, usage);
	exit(2);
}

void cli_help(const char *usage)
{
	fputs(usage, stdout);
	exit(fflush(stdout) == 0 ? 0 : 1);
}

void cli_connect(client *c)
{
	sk_error err;

	if (client_init_from_env(c, &err) < 0)
		cli_fail(&err);
}

bool cli_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

int cli_post_each(const char *before, const char *after, char **ids, int n)
{
	int status = 0;
	client c;

	cli_connect(&c);
	for (int i = 0; i < n; i++) {
		_cleanup_free_ char *path = client_path(before, ids[i], after);
		sk_error err;

		if (client_call(&c, "POST", path, NULL, NULL, &err) < 0) {
			fprintf(stderr, "skiff: %s\n", err.msg);
			status = 1;
		}
	}
	client_release(&c);
	return status;
}
