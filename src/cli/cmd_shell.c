/*
 * `skiff shell`: an interactive shell (or a one-off command) in a fresh
 * sandbox.  Builds the image if needed, creates the sandbox, attaches this
 * terminal to it, and terminates the sandbox when the shell ends, whichever
 * way it ends.
 */
#include "cli/cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/attach.h"
#include "cli/build.h"
#include "cli/shell_opts.h"
#include "cli/term.h"
#include "util/xalloc.h"

static const char usage_shell[] =
	"Usage: skiff shell [--image debian_slim] [--python-version V] [--cpu N] [--memory MiB] "
	"[--timeout S] [--cmd CMD]\n"
	"\n"
	"Starts a shell in a new sandbox, attached to this terminal.  The sandbox is\n"
	"terminated when the shell exits; skiff exits with the shell's exit status.\n"
	"Without a terminal on stdin, the shell reads its commands from stdin:\n"
	"  echo 'echo hi' | skiff shell\n"
	"\n"
	"  --image NAME            image base (default: debian_slim)\n"
	"  --python-version V      Python version of the image (debian_slim: 3.11)\n"
	"  --cpu N                 CPU cores (may be fractional, such as 0.5)\n"
	"  --memory MiB            memory limit in MiB\n"
	"  --timeout S             seconds before the sandbox is stopped (default: 3600)\n"
	"  --cmd CMD               run `sh -c CMD` instead of /bin/bash\n";

static json_t *sandbox_spec(const shell_opts *o, const char *image_id, bool tty)
{
	const char *term = getenv("TERM");
	json_t *spec = json_object();
	int rows = 24, cols = 80;

	json_object_set_new(spec, "image_id", json_string(image_id));
	json_object_set_new(spec, "cmd", o->cmd ? json_pack("[s,s,s]", "sh", "-c", o->cmd)
						: json_pack("[s]", "/bin/bash"));
	json_object_set_new(spec, "cpu", o->cpu > 0 ? json_real(o->cpu) : json_null());
	json_object_set_new(spec, "memory", o->memory > 0 ? json_integer(o->memory) : json_null());
	json_object_set_new(spec, "timeout", json_integer(o->timeout));
	json_object_set_new(spec, "tty", json_boolean(tty));
	if (tty) {
		term_winsize(STDIN_FILENO, &rows, &cols);
		json_object_set_new(spec, "rows", json_integer(rows));
		json_object_set_new(spec, "cols", json_integer(cols));
		if (term && *term)
			json_object_set_new(spec, "env", json_pack("{s:s}", "TERM", term));
	}
	return spec;
}

static void terminate(client *c, const char *sandbox_id)
{
	_cleanup_free_ char *path = client_path("/v1/sandboxes/", sandbox_id, "/terminate");
	sk_error err;

	if (client_call(c, "POST", path, NULL, NULL, &err) < 0)
		fprintf(stderr, "skiff: could not terminate sandbox %s: %s\n", sandbox_id, err.msg);
}

static void explain_end(const attach_result *res, const shell_opts *o)
{
	if (res->oom)
		fprintf(stderr, "skiff: the shell ran out of memory%s\n",
			o->memory ? " (raise --memory)" : "");
	else if (res->timed_out)
		fprintf(stderr, "skiff: the sandbox reached its timeout of %ld s (see --timeout)\n",
			o->timeout);
}

int cmd_shell(int argc, char **argv)
{
	_cleanup_free_ char *image_id = NULL;
	bool tty = isatty(STDIN_FILENO);
	json_t *spec, *j = NULL;
	const char *sandbox_id;
	attach_result res;
	shell_opts o;
	sk_error err;
	client c;

	if (shell_opts_parse(argc, argv, &o, &err) < 0)
		cli_usage_error(usage_shell, "%s", err.msg);
	if (o.help)
		cli_help(usage_shell);
	cli_connect(&c);
	if (build_image(&c, o.image, o.python_version, &image_id, &err) < 0)
		cli_fail(&err);
	/* From here on a signal must not leave the sandbox behind. */
	if (term_signals_open(&err) < 0)
		cli_fail(&err);
	spec = sandbox_spec(&o, image_id, tty);
	if (client_call(&c, "POST", "/v1/sandboxes", spec, &j, &err) < 0)
		cli_fail(&err);
	json_decref(spec);
	sandbox_id = json_string_value(json_object_get(j, "sandbox_id"));
	if (!sandbox_id)
		cli_die("the server's answer to POST /v1/sandboxes has no sandbox_id");
	if (attach_run(&c, sandbox_id, tty, &res, &err) < 0) {
		terminate(&c, sandbox_id);
		cli_fail(&err);
	}
	terminate(&c, sandbox_id);
	json_decref(j);
	client_release(&c);
	if (res.signo)
		return 128 + res.signo;
	explain_end(&res, &o);
	return res.returncode & 0xff;
}
