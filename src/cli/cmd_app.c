/* `skiff app list|stop|logs`: the apps this server runs (docs/api.md, "Apps and functions"). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/applog.h"
#include "cli/fmt.h"
#include "cli/table.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

static const char usage_app[] =
	"Usage: skiff app list|stop|logs ...\n"
	"\n"
	"The apps this skiff server runs (skiff run makes an ephemeral one).\n"
	"\n"
	"  skiff app list [--json]            apps, running and stopped\n"
	"  skiff app stop APP...              stop apps (by id or name)\n"
	"  skiff app logs APP [--follow]      an app's container output\n"
	"\n"
	"Run 'skiff app VERB --help' for more.\n";

static const char usage_list[] =
	"Usage: skiff app list [--json]\n"
	"\n"
	"Lists the server's apps, newest first.\n"
	"\n"
	"      --json   print the server's JSON list of apps instead of a table\n";

static const char usage_stop[] =
	"Usage: skiff app stop APP...\n"
	"\n"
	"Stops apps, given by id (ap-...) or name: their containers are killed and\n"
	"their unfinished function calls fail.  Stopping a stopped app is a no-op.\n";

static const char usage_logs[] =
	"Usage: skiff app logs APP [--follow] [--json]\n"
	"\n"
	"Prints an app's container output as \"[function] line\" (with a short\n"
	"container id once a function has run in several containers).\n"
	"\n"
	"  -f, --follow   keep printing new output until the app stops\n"
	"      --json     print the server's NDJSON records as they are\n";

struct opts { bool json, follow; };

/* Parses options anywhere among the operands; returns the index of the first operand. */
static int parse_opts(int argc, char **argv, const char *usage, const char *shortopts,
		      const struct option *longopts, struct opts *o)
{
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == 'h')
			cli_help(usage);
		if (c == '?')
			cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
		if (c == 'j')
			o->json = true;
		else if (c == 'f')
			o->follow = true;
	}
	return optind;
}

static void print_table(json_t *list)
{
	static const char *const head[] = { "ID", "NAME", "STATE", "AGE", "FUNCTIONS" };
	double now = sk_wall_time();
	sk_buf out = SK_BUF_INIT;
	table t;
	size_t i;
	json_t *app;

	table_init(&t, ARRAY_SIZE(head), head);
	json_array_foreach(list, i, app) {
		json_t *fns = json_object_get(app, "functions"), *f;
		const char *state = json_string_value(json_object_get(app, "state"));
		sk_buf names = SK_BUF_INIT;
		_cleanup_free_ char *shown_state = NULL;
		const char *row[ARRAY_SIZE(head)];
		char age[16];
		size_t k;

		json_array_foreach(fns, k, f) {
			if (k)
				sk_buf_adds(&names, ",");
			sk_buf_adds(&names, json_string_value(f) ? json_string_value(f) : "?");
		}
		shown_state = xasprintf("%s%s", state ? state : "?",
					json_is_true(json_object_get(app, "detached")) ? " (detached)" :
					json_is_false(json_object_get(app, "ephemeral")) ? " (persistent)" :
					"");
		fmt_age(now - json_number_value(json_object_get(app, "created_at")), age, sizeof(age));
		row[0] = json_string_value(json_object_get(app, "app_id"));
		row[1] = json_string_value(json_object_get(app, "name"));
		row[2] = shown_state;
		row[3] = age;
		row[4] = names.len ? names.base : NULL;
		table_add(&t, row);
		sk_buf_release(&names);
	}
	table_render(&t, &out);
	cli_write_all(STDOUT_FILENO, out.base, out.len);
	sk_buf_release(&out);
	table_release(&t);
}

static int by_created_desc(const void *a, const void *b)
{
	double x = json_number_value(json_object_get(*(json_t *const *)a, "created_at"));
	double y = json_number_value(json_object_get(*(json_t *const *)b, "created_at"));

	return (x < y) - (x > y);
}

/* The list sorted newest first, whatever order the server keeps. */
static json_t *newest_first(json_t *list)
{
	size_t n = json_array_size(list);
	_cleanup_free_ json_t **items = xcalloc(n ? n : 1, sizeof(json_t *));
	json_t *sorted = json_array();

	for (size_t i = 0; i < n; i++)
		items[i] = json_array_get(list, i);
	qsort(items, n, sizeof(json_t *), by_created_desc);
	for (size_t i = 0; i < n; i++)
		json_array_append(sorted, items[i]);
	return sorted;
}

static int app_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	json_t *j = NULL, *list, *rev;
	sk_error err;
	client c;

	if (parse_opts(argc, argv, usage_list, "h", longopts, &o) != argc)
		cli_usage_error(usage_list, "unexpected argument '%s'", argv[optind]);
	cli_connect(&c);
	if (client_call(&c, "GET", "/v1/apps", NULL, &j, &err) < 0)
		cli_fail(&err);
	list = json_object_get(j, "apps");
	if (!json_is_array(list))
		cli_die("the server's answer to GET /v1/apps has no \"apps\" list");
	rev = newest_first(list);
	if (o.json) {
		_cleanup_free_ char *text = json_dumps(rev, JSON_INDENT(2));

		printf("%s\n", text);
	} else {
		print_table(rev);
	}
	json_decref(rev);
	json_decref(j);
	client_release(&c);
	return 0;
}

static int app_stop(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	struct opts o = { 0 };
	int i = parse_opts(argc, argv, usage_stop, "h", longopts, &o);

	if (i >= argc)
		cli_usage_error(usage_stop, "which app? Give its id or name");
	return cli_post_each("/v1/apps/", "/stop", argv + i, argc - i);
}

struct logs_ctx {
	applog log;
	sk_buf line;
	bool stdout_gone;
};

static int logs_json(json_t *rec, void *arg, sk_error *err)
{
	struct logs_ctx *x = arg;
	bool to_stderr;

	sk_buf_reset(&x->line);
	to_stderr = applog_format(&x->log, rec, &x->line);
	fflush(stdout);
	if (cli_write_all(to_stderr ? STDERR_FILENO : STDOUT_FILENO, x->line.base, x->line.len))
		return 0;
	x->stdout_gone = true;
	return sk_error_set(err, SK_ERR_INTERNAL, "output closed");
}

static int logs_bytes(const char *data, size_t len, void *arg, sk_error *err)
{
	if (cli_write_all(STDOUT_FILENO, data, len))
		return 0;
	*(bool *)arg = true;
	return sk_error_set(err, SK_ERR_INTERNAL, "stdout closed");
}

static int app_logs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	_cleanup_free_ char *path = NULL;
	struct opts o = { 0 };
	struct logs_ctx x = { .line = SK_BUF_INIT };
	sk_error err;
	client c;
	int i, rc;

	i = parse_opts(argc, argv, usage_logs, "fh", longopts, &o);
	if (i >= argc)
		cli_usage_error(usage_logs, "which app? Give its id or name");
	if (i + 1 < argc)
		cli_usage_error(usage_logs, "unexpected argument '%s'", argv[i + 1]);
	path = client_path("/v1/apps/", argv[i], o.follow ? "/logs?follow=1" : "/logs");
	applog_init(&x.log);
	cli_connect(&c);
	if (o.json)
		rc = client_stream(&c, "GET", path, NULL, logs_bytes, &x.stdout_gone, &err);
	else
		rc = client_ndjson(&c, "GET", path, NULL, logs_json, &x, &err);
	if (rc < 0 && !x.stdout_gone)
		cli_fail(&err);
	applog_release(&x.log);
	sk_buf_release(&x.line);
	client_release(&c);
	return 0;
}

int cmd_app(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "list", app_list }, { "ls", app_list }, { "stop", app_stop }, { "logs", app_logs },
	};

	if (argc < 2)
		cli_usage_error(usage_app, "which app verb? list, stop or logs");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		cli_help(usage_app);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_usage_error(usage_app, "unknown app verb '%s'", argv[1]);
}
