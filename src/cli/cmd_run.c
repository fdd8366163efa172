/*
 * `skiff run FILE[::NAME] [ARGS]`: the Python SDK does the work
 * (`python3 -m skiff._run`, sdk/python/skiff/_run.py), since running an app
 * means importing the user's Python program.  This verb only finds the SDK
 * and execs python3 on it with the same arguments.
 *
 * The SDK that belongs to this binary comes first on PYTHONPATH: the
 * installed one at $(PREFIX)/lib/skiff/python when the binary is
 * $(PREFIX)/bin/skiff, or the checkout's sdk/python when it is build/skiff.
 * Without either, python3 must find the skiff package by itself.
 * SKIFF_BIN is set to this binary (unless set), so that the SDK starts this
 * very server when none answers.  $SKIFF_PYTHON overrides python3.
 */
#include "cli/cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/xalloc.h"

/* The SDK directory next to the binary (holding skiff/_run.py), or NULL. */
static char *sdk_dir_near(const char *exe)
{
	static const char *const rel[] = { "../lib/skiff/python", "../sdk/python" };
	_cleanup_free_ char *copy = xstrdup(exe);
	const char *dir = dirname(copy);

	for (size_t i = 0; i < ARRAY_SIZE(rel); i++) {
		_cleanup_free_ char *probe = xasprintf("%s/%s/skiff/_run.py", dir, rel[i]);
		char real[PATH_MAX];

		if (access(probe, R_OK) == 0) {
			_cleanup_free_ char *sdk = xasprintf("%s/%s", dir, rel[i]);

			return realpath(sdk, real) ? xstrdup(real) : xstrdup(sdk);
		}
	}
	return NULL;
}

static void prepend_pythonpath(const char *dir)
{
	const char *old = getenv("PYTHONPATH");
	_cleanup_free_ char *val = old && *old ? xasprintf("%s:%s", dir, old) : xstrdup(dir);

	setenv("PYTHONPATH", val, 1);
}

int cmd_run(int argc, char **argv)
{
	const char *python = getenv("SKIFF_PYTHON");
	char exe[PATH_MAX];
	ssize_t n;
	char **args;

	if (!python || !*python)
		python = "python3";
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		_cleanup_free_ char *sdk = NULL;

		exe[n] = '\0';
		sdk = sdk_dir_near(exe);
		if (sdk)
			prepend_pythonpath(sdk);
		setenv("SKIFF_BIN", exe, 0);
	}
	args = xcalloc((size_t)argc + 4, sizeof(char *));
	args[0] = (char *)python;
	args[1] = "-m";
	args[2] = !strcmp(argv[0], "serve")    ? "skiff._serve"
		  : !strcmp(argv[0], "deploy") ? "skiff._deploy"
					       : "skiff._run";
	for (int i = 1; i < argc; i++)
		args[2 + i] = argv[i];
	fflush(NULL);
	execvp(python, args);
	cli_die("cannot run %s: %s (skiff run needs Python 3 with the skiff SDK; set "
		"SKIFF_PYTHON to use another interpreter)", python, strerror(errno));
}
