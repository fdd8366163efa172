/* `skiff container list|logs|exec|stop`: the containers this server runs. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/attach.h"
#include "cli/fmt.h"
#include "cli/table.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

static const char usage_container[] =
	"Usage: skiff container list|logs|exec|stop ...\n"
	"\n"
	"The containers this skiff server runs.\n"
	"\n"
	"  skiff container list [--all] [--json]   running containers (--all: exited ones too)\n"
	"  skiff container logs ID [--follow]      a container's output\n"
	"  skiff container exec ID -- CMD...       run a command in a running container\n"
	"  skiff container stop ID...              stop containers\n"
	"\n"
	"Run 'skiff container VERB --help' for more.\n";

static const char usage_list[] =
	"Usage: skiff container list [--all] [--json]\n"
	"\n"
	"Lists running containers, newest first.\n"
	"\n"
	"  -a, --all    also containers that have exited\n"
	"      --json   print the server's JSON list of containers instead of a table\n";

static const char usage_logs[] =
	"Usage: skiff container logs ID [--follow]\n"
	"\n"
	"Prints a container's output (its main process's stdout and stderr as written).\n"
	"\n"
	"  -f, --follow   keep printing new output until the container ends\n";

static const char usage_exec[] =
	"Usage: skiff container exec ID -- CMD [ARG...]\n"
	"\n"
	"Runs CMD in a running container, attached to this terminal (with a tty when\n"
	"stdin is a terminal), and exits with CMD's exit status.\n";

static const char usage_stop[] =
	"Usage: skiff container stop ID...\n"
	"\n"
	"Stops containers (a no-op for those that have already exited).\n";

/*
 * Parses only --help (and the given long options) in the common way;
 * returns the index of the first operand.  A leading "+" stops at the first
 * operand, so that exec's command keeps its own options.
 */
static int parse_opts(int argc, char **argv, const char *usage, const char *shortopts,
		      const struct option *longopts, void (*on_opt)(int, void *), void *arg)
{
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == 'h')
			cli_help(usage);
		if (c == '?')
			cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
		on_opt(c, arg);
	}
	return optind;
}

struct list_opts { bool all, json; };

static void list_opt(int c, void *arg)
{
	struct list_opts *o = arg;

	if (c == 'a')
		o->all = true;
	else if (c == 'j')
		o->json = true;
}

static char *state_text(json_t *ct)
{
	const char *state = json_string_value(json_object_get(ct, "state"));
	json_t *rc = json_object_get(ct, "returncode");
	bool oom = json_is_true(json_object_get(ct, "oom"));

	if (!state)
		state = "?";
	if (!json_is_integer(rc))
		return xasprintf("%s%s", state, oom ? " (oom)" : "");
	return xasprintf("%s (%lld%s)", state, (long long)json_integer_value(rc), oom ? ", oom" : "");
}

static void print_table(json_t *list)
{
	static const char *const head[] = { "ID",  "APP",      "FUNCTION", "STATE",
					    "AGE", "INPUTS",   "CPU",      "CPU USED",
					    "MEMORY", "MEM USED", "COMMAND" };
	bool tty = isatty(STDOUT_FILENO);
	double now = sk_wall_time();
	sk_buf out = SK_BUF_INIT;
	table t;
	size_t i;
	json_t *ct;

	table_init(&t, ARRAY_SIZE(head), head);
	json_array_foreach(list, i, ct) {
		/* A running function container says what it is doing: busy, idle... */
		const char *status = json_string_value(json_object_get(ct, "status"));
		_cleanup_free_ char *state = status ? xstrdup(status) : state_text(ct);
		_cleanup_free_ char *cmd = fmt_argv(json_object_get(ct, "cmd"));
		_cleanup_free_ char *shown = tty ? fmt_truncate(cmd, 40) : xstrdup(cmd);
		json_t *served = json_object_get(ct, "inputs_served");
		json_t *used = json_object_get(ct, "memory_bytes");
		json_t *cpu_used = json_object_get(ct, "cpu_used_s");
		char age[16], cpu[16], mem[24], inputs[24] = "", used_s[24] = "", cpu_s[24] = "";
		const char *row[ARRAY_SIZE(head)];

		fmt_age(now - json_number_value(json_object_get(ct, "created_at")), age, sizeof(age));
		fmt_cpu(json_object_get(ct, "cpu"), cpu, sizeof(cpu));
		fmt_mib(json_object_get(ct, "memory"), mem, sizeof(mem));
		if (json_is_integer(served))
			snprintf(inputs, sizeof(inputs), "%lld", (long long)json_integer_value(served));
		if (json_is_number(cpu_used))
			snprintf(cpu_s, sizeof(cpu_s), "%.1fs", json_number_value(cpu_used));
		if (json_is_integer(used) && json_integer_value(used) > 0)
			snprintf(used_s, sizeof(used_s), "%.0f MiB",
				 (double)json_integer_value(used) / (1024.0 * 1024.0));
		row[0] = json_string_value(json_object_get(ct, "container_id"));
		row[1] = json_string_value(json_object_get(ct, "app_name"));
		row[2] = json_string_value(json_object_get(ct, "function"));
		row[3] = state;
		row[4] = age;
		row[5] = inputs[0] ? inputs : NULL;
		row[6] = cpu;
		row[7] = cpu_s[0] ? cpu_s : NULL;
		row[8] = mem;
		row[9] = used_s[0] ? used_s : NULL;
		row[10] = shown[0] ? shown : NULL;
		table_add(&t, row);
	}
	table_render(&t, &out);
	cli_write_all(STDOUT_FILENO, out.base, out.len);
	sk_buf_release(&out);
	table_release(&t);
}

static int container_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct list_opts o = { 0 };
	json_t *j = NULL, *list;
	sk_error err;
	client c;

	if (parse_opts(argc, argv, usage_list, "+ah", longopts, list_opt, &o) != argc)
		cli_usage_error(usage_list, "unexpected argument '%s'", argv[optind]);
	cli_connect(&c);
	if (client_call(&c, "GET", o.all ? "/v1/containers?all=1" : "/v1/containers", NULL, &j,
			&err) < 0)
		cli_fail(&err);
	list = json_object_get(j, "containers");
	if (!json_is_array(list))
		cli_die("the server's answer to GET /v1/containers has no \"containers\" list");
	if (o.json) {
		_cleanup_free_ char *text = json_dumps(list, JSON_INDENT(2));

		printf("%s\n", text);
	} else {
		print_table(list);
	}
	json_decref(j);
	client_release(&c);
	return 0;
}

static int logs_bytes(const char *data, size_t len, void *arg, sk_error *err)
{
	if (cli_write_all(STDOUT_FILENO, data, len))
		return 0;
	*(bool *)arg = true;
	return sk_error_set(err, SK_ERR_INTERNAL, "stdout closed");
}

static void logs_opt(int c, void *arg)
{
	if (c == 'f')
		*(bool *)arg = true;
}

static int container_logs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_free_ char *path = NULL;
	bool follow = false, stdout_gone = false;
	sk_error err;
	client c;
	int i;

	/* Options may follow the ID: `skiff container logs ID -f`. */
	i = parse_opts(argc, argv, usage_logs, "fh", longopts, logs_opt, &follow);
	if (i >= argc)
		cli_usage_error(usage_logs, "which container? Give its ID");
	if (i + 1 < argc)
		cli_usage_error(usage_logs, "unexpected argument '%s'", argv[i + 1]);
	path = client_path("/v1/containers/", argv[i], follow ? "/logs?follow=1" : "/logs");
	cli_connect(&c);
	if (client_stream(&c, "GET", path, NULL, logs_bytes, &stdout_gone, &err) < 0 &&
	    !stdout_gone)
		cli_fail(&err);
	client_release(&c);
	return 0;
}

static void no_opt(int c, void *arg)
{
}

static int container_stop(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	int i = parse_opts(argc, argv, usage_stop, "h", longopts, no_opt, NULL);

	if (i >= argc)
		cli_usage_error(usage_stop, "which container? Give its ID");
	return cli_post_each("/v1/containers/", "/stop", argv + i, argc - i);
}

static int container_exec(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	_cleanup_free_ char *path = NULL;
	int i = parse_opts(argc, argv, usage_exec, "+h", longopts, no_opt, NULL);
	bool tty = isatty(STDIN_FILENO);
	json_t *cmd, *body, *j = NULL;
	const char *id, *process_id;
	attach_result res;
	sk_error err;
	client c;

	if (i >= argc)
		cli_usage_error(usage_exec, "which container? Give its ID");
	id = argv[i++];
	if (i < argc && !strcmp(argv[i], "--"))
		i++;
	if (i >= argc)
		cli_usage_error(usage_exec, "what should run? Give a command after '--'");
	cmd = json_array();
	for (; i < argc; i++)
		json_array_append_new(cmd, json_string(argv[i]));
	body = json_pack("{s:o,s:b}", "cmd", cmd, "tty", tty);
	path = client_path("/v1/sandboxes/", id, "/exec");
	cli_connect(&c);
	if (client_call(&c, "POST", path, body, &j, &err) < 0)
		cli_fail(&err);
	json_decref(body);
	process_id = json_string_value(json_object_get(j, "process_id"));
	if (!process_id)
		cli_die("the server's answer to exec has no process_id");
	if (tty)
		attach_resize(&c, process_id);
	if (attach_run(&c, process_id, tty, &res, &err) < 0)
		cli_fail(&err);
	json_decref(j);
	client_release(&c);
	return res.signo ? 128 + res.signo : res.returncode & 0xff;
}

int cmd_container(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "list", container_list }, { "ls", container_list },  { "logs", container_logs },
		{ "exec", container_exec }, { "stop", container_stop },
	};

	if (argc < 2)
		cli_usage_error(usage_container, "which container verb? list, logs, exec or stop");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		cli_help(usage_container);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_usage_error(usage_container, "unknown container verb '%s'", argv[1]);
}
