/*
 * `skiff app list|stop|logs|history|rollback`: the apps this server runs,
 * ephemeral and deployed (docs/api.md, "Apps and functions").  A deployed
 * app keeps its versions; a rollback deploys an earlier one again as a new
 * version, so the history only grows.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/applog.h"
#include "cli/fmt.h"
#include "cli/since.h"
#include "cli/table.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

static const char usage_app[] =
	"Usage: skiff app list|stop|logs|history|rollback ...\n"
	"\n"
	"The apps this skiff server runs: ephemeral ones (skiff run) and deployed\n"
	"ones (skiff deploy), which keep a history of versions.\n"
	"\n"
	"  skiff app list [--json]              apps, running, deployed and stopped\n"
	"  skiff app stop APP...                stop apps (by id or name)\n"
	"  skiff app logs APP [--follow]        an app's container output\n"
	"  skiff app history APP [--json]       a deployed app's versions\n"
	"  skiff app rollback APP [VERSION]     deploy an earlier version again\n"
	"\n"
	"Run 'skiff app VERB --help' for more.\n";

static const char usage_list[] =
	"Usage: skiff app list [--json]\n"
	"\n"
	"Lists the server's apps, newest first: their state (a deployed app's with\n"
	"its tag), deployed version, web endpoint URLs and the next scheduled run\n"
	"of any of their functions.\n"
	"\n"
	"      --json   print the server's JSON list of apps instead of a table\n";

static const char usage_stop[] =
	"Usage: skiff app stop APP...\n"
	"\n"
	"Stops apps, given by id (ap-...) or name: their containers are killed and\n"
	"their unfinished function calls fail.  Stopping a stopped app is a no-op.\n"
	"A deployed app stays stopped, across server restarts too: its schedules\n"
	"and web endpoints stay off until it is deployed again.\n";

static const char usage_logs[] =
	"Usage: skiff app logs APP [--function F] [--since T] [--follow] [--json]\n"
	"\n"
	"Prints an app's container output as \"[function] line\" (with a short\n"
	"container id once a function has run in several containers).\n"
	"\n"
	"      --function F   only function F's output (for a class, its instances' too)\n"
	"      --since T      only output since T: unix seconds, a date (2026-11-28,\n"
	"                     2026-11-28T10:00, local time unless it ends in Z) or an\n"
	"                     age (30s, 10m, 2h, 1d)\n"
	"  -f, --follow       keep printing new output until the app stops\n"
	"      --json         print the server's NDJSON records instead, one a line\n";

static const char usage_history[] =
	"Usage: skiff app history APP [--json]\n"
	"\n"
	"Lists a deployed app's versions, newest first; '*' marks the one running.\n"
	"\n"
	"      --json   print the server's JSON answer instead of a table\n";

static const char usage_rollback[] =
	"Usage: skiff app rollback APP [VERSION] [--json]\n"
	"\n"
	"Deploys an earlier version of an app again, as a new version: VERSION\n"
	"(3 or v3, see 'skiff app history APP'), or else the version before the\n"
	"current one.\n"
	"\n"
	"      --json   print the server's JSON answer instead of a sentence\n";

struct opts {
	bool json, follow;
	const char *function, *since;
};

/* Parses options anywhere among the operands; returns the index of the first operand.
 * shortopts starts with ':' so that a missing value reads ':', not '?'. */
static int parse_opts(int argc, char **argv, const char *usage, const char *shortopts,
		      const struct option *longopts, struct opts *o)
{
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == 'h')
			cli_help(usage);
		else if (c == ':')
			cli_usage_error(usage, "option '%s' needs a value", argv[optind - 1]);
		else if (c == '?')
			cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
		else if (c == 'j')
			o->json = true;
		else if (c == 'f')
			o->follow = true;
		else if (c == 'F')
			o->function = optarg;
		else if (c == 's')
			o->since = optarg;
	}
	return optind;
}

/* Parses options as parse_opts does; returns the one operand: an app's id or name. */
static const char *parse_app(int argc, char **argv, const char *usage, const char *shortopts,
			     const struct option *longopts, struct opts *o)
{
	int i = parse_opts(argc, argv, usage, shortopts, longopts, o);

	if (i >= argc)
		cli_usage_error(usage, "which app? Give its id or name");
	if (i + 1 < argc)
		cli_usage_error(usage, "unexpected argument '%s'", argv[i + 1]);
	return argv[i];
}

static void print_json(json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));

	printf("%s\n", text);
}

static void print_table(table *t)
{
	sk_buf out = SK_BUF_INIT;

	table_render(t, &out);
	cli_write_all(STDOUT_FILENO, out.base, out.len);
	sk_buf_release(&out);
	table_release(t);
}

/* The strings of a JSON list, or the string values of an object, joined by
 * commas into out (reset first); NULL when there are none, for a "-" cell. */
static const char *join(json_t *j, sk_buf *out)
{
	const char *key;
	json_t *v;
	size_t i;

	sk_buf_reset(out);
	json_array_foreach(j, i, v)
		sk_buf_addf(out, "%s%s", out->len ? "," : "", json_string_value(v) ?: "?");
	json_object_foreach(j, key, v)
		if (json_string_value(v))
			sk_buf_addf(out, "%s%s", out->len ? "," : "", json_string_value(v));
	return out->len ? out->base : NULL;
}

/* "v3" for a JSON integer, else NULL. */
static const char *version_text(json_t *v, char *out, size_t n)
{
	if (!json_is_integer(v))
		return NULL;
	snprintf(out, n, "v%lld", (long long)json_integer_value(v));
	return out;
}

/* "in 42s" for a time still to come, "due" for one past, NULL for none. */
static const char *next_run_text(json_t *t, double now, char *out, size_t n)
{
	char age[16];

	if (!json_is_number(t))
		return NULL;
	if (json_number_value(t) <= now)
		return "due";
	fmt_age(json_number_value(t) - now, age, sizeof(age));
	snprintf(out, n, "in %s", age);
	return out;
}

/* "running (detached)", "deployed (tag v2)", "stopped"... */
static char *state_text(json_t *app)
{
	const char *state = json_string_value(json_object_get(app, "state"));
	const char *tag = json_string_value(json_object_get(app, "tag"));
	bool deployed = json_is_true(json_object_get(app, "deployed"));

	if (json_is_true(json_object_get(app, "detached")))
		return xasprintf("%s (detached)", state ?: "?");
	if (deployed && tag && *tag)
		return xasprintf("%s (tag %s)", state ?: "?", tag);
	/* Servers from before deployments had versions say only this. */
	if (!deployed && json_is_false(json_object_get(app, "ephemeral")))
		return xasprintf("%s (persistent)", state ?: "?");
	return xstrdup(state ?: "?");
}

static void print_apps(json_t *list)
{
	static const char *const head[] = { "ID", "NAME", "STATE", "VERSION",
					    "AGE", "FUNCTIONS", "URLS", "NEXT RUN" };
	sk_buf fns = SK_BUF_INIT, urls = SK_BUF_INIT;
	double now = sk_wall_time();
	json_t *app;
	table t;
	size_t i;

	table_init(&t, ARRAY_SIZE(head), head);
	json_array_foreach(list, i, app) {
		_cleanup_free_ char *state = state_text(app);
		char version[24], age[16], next[24];
		const char *row[ARRAY_SIZE(head)] = {
			json_string_value(json_object_get(app, "app_id")),
			json_string_value(json_object_get(app, "name")),
			state,
			version_text(json_object_get(app, "version"), version, sizeof(version)),
			age,
			join(json_object_get(app, "functions"), &fns),
			join(json_object_get(app, "web_urls"), &urls),
			next_run_text(json_object_get(app, "next_run"), now, next, sizeof(next)),
		};

		fmt_age(now - json_number_value(json_object_get(app, "created_at")), age, sizeof(age));
		table_add(&t, row);
	}
	print_table(&t);
	sk_buf_release(&fns);
	sk_buf_release(&urls);
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

	if (parse_opts(argc, argv, usage_list, ":h", longopts, &o) != argc)
		cli_usage_error(usage_list, "unexpected argument '%s'", argv[optind]);
	cli_connect(&c);
	if (client_call(&c, "GET", "/v1/apps", NULL, &j, &err) < 0)
		cli_fail(&err);
	list = json_object_get(j, "apps");
	if (!json_is_array(list))
		cli_die("the server's answer to GET /v1/apps has no \"apps\" list");
	rev = newest_first(list);
	if (o.json)
		print_json(rev);
	else
		print_apps(rev);
	json_decref(rev);
	json_decref(j);
	client_release(&c);
	return 0;
}

static int app_stop(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	struct opts o = { 0 };
	int i = parse_opts(argc, argv, usage_stop, ":h", longopts, &o);

	if (i >= argc)
		cli_usage_error(usage_stop, "which app? Give its id or name");
	return cli_post_each("/v1/apps/", "/stop", argv + i, argc - i);
}

static void print_history(json_t *versions)
{
	static const char *const head[] = { "VERSION", "CURRENT", "CREATED", "STRATEGY",
					    "TAG", "FUNCTIONS", "NOTE" };
	double now = sk_wall_time();
	sk_buf fns = SK_BUF_INIT;
	json_t *v;
	table t;
	size_t i;

	table_init(&t, ARRAY_SIZE(head), head);
	json_array_foreach(versions, i, v) {
		char version[24], age[16], created[24], of[24], note[40];
		const char *row[ARRAY_SIZE(head)] = {
			version_text(json_object_get(v, "version"), version, sizeof(version)),
			json_is_true(json_object_get(v, "current")) ? "*" : "",
			created,
			json_string_value(json_object_get(v, "strategy")),
			json_string_value(json_object_get(v, "tag")),
			join(json_object_get(v, "functions"), &fns),
			NULL,
		};

		fmt_age(now - json_number_value(json_object_get(v, "created_at")), age, sizeof(age));
		snprintf(created, sizeof(created), "%s ago", age);
		if (version_text(json_object_get(v, "rollback_of"), of, sizeof(of))) {
			snprintf(note, sizeof(note), "rollback to %s", of);
			row[6] = note;
		}
		table_add(&t, row);
	}
	print_table(&t);
	sk_buf_release(&fns);
}

static int app_history(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	const char *app = parse_app(argc, argv, usage_history, ":h", longopts, &o);
	_cleanup_free_ char *path = client_path("/v1/apps/", app, "/history");
	json_t *j = NULL;
	sk_error err;
	client c;

	cli_connect(&c);
	if (client_call(&c, "GET", path, NULL, &j, &err) < 0)
		cli_fail(&err);
	if (!json_is_array(json_object_get(j, "versions")))
		cli_die("the server's answer to GET %s has no \"versions\" list", path);
	if (o.json)
		print_json(j);
	else
		print_history(json_object_get(j, "versions"));
	json_decref(j);
	client_release(&c);
	return 0;
}

/* "3" or "v3": a version number, at least 1; false for anything else. */
static bool parse_version(const char *s, json_int_t *out)
{
	char *end;
	long long v;

	if (*s == 'v' || *s == 'V')
		s++;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < 1)
		return false;
	*out = v;
	return true;
}

static int app_rollback(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	int i = parse_opts(argc, argv, usage_rollback, ":h", longopts, &o);
	_cleanup_free_ char *path = NULL;
	json_t *body, *j = NULL;
	json_int_t version = 0;
	const char *name;
	sk_error err;
	client c;

	if (i >= argc)
		cli_usage_error(usage_rollback, "which app? Give its name");
	if (i + 2 < argc)
		cli_usage_error(usage_rollback, "unexpected argument '%s'", argv[i + 2]);
	if (i + 1 < argc && !parse_version(argv[i + 1], &version))
		cli_usage_error(usage_rollback, "'%s' is not a version (give 3 or v3)", argv[i + 1]);
	path = client_path("/v1/apps/", argv[i], "/rollback");
	body = version ? json_pack("{s:I}", "version", version) : json_object();
	cli_connect(&c);
	if (client_call(&c, "POST", path, body, &j, &err) < 0)
		cli_fail(&err);
	if (o.json) {
		print_json(j);
	} else {
		char to[24], now[24];

		name = json_string_value(json_object_get(j, "name"));
		fprintf(stderr, "skiff: rolled %s back to %s (now %s)\n", name ?: argv[i],
			version_text(json_object_get(j, "rolled_back_to"), to, sizeof(to)) ?: "?",
			version_text(json_object_get(j, "version"), now, sizeof(now)) ?: "?");
	}
	json_decref(body);
	json_decref(j);
	client_release(&c);
	return 0;
}

struct logs_ctx {
	applog log;
	applog_filter filter;
	bool json;
	sk_buf line;
	bool stdout_gone;
};

/* One record of the log stream: dropped, printed for a person, or printed
 * back as NDJSON (compact, as the server writes it). */
static int logs_record(json_t *rec, void *arg, sk_error *err)
{
	struct logs_ctx *x = arg;
	bool to_stderr = false;

	if (!applog_keep(&x->filter, rec))
		return 0;
	sk_buf_reset(&x->line);
	if (x->json) {
		_cleanup_free_ char *text = json_dumps(rec, JSON_COMPACT);

		sk_buf_addf(&x->line, "%s\n", text);
	} else {
		to_stderr = applog_format(&x->log, rec, &x->line);
		fflush(stdout);
	}
	if (cli_write_all(to_stderr ? STDERR_FILENO : STDOUT_FILENO, x->line.base, x->line.len))
		return 0;
	x->stdout_gone = true;
	return sk_error_set(err, SK_ERR_INTERNAL, "output closed");
}

static int app_logs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "function", required_argument, NULL, 'F' },
		{ "since", required_argument, NULL, 's' },
		{ "follow", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	const char *app = parse_app(argc, argv, usage_logs, ":fh", longopts, &o);
	_cleanup_free_ char *path = client_path("/v1/apps/", app, o.follow ? "/logs?follow=1" : "/logs");
	struct logs_ctx x = { .json = o.json, .line = SK_BUF_INIT };
	sk_error err;
	client c;

	if (o.function && !*o.function)
		cli_usage_error(usage_logs, "--function needs a function's name");
	if (o.since && since_parse(o.since, sk_wall_time(), &x.filter.since, &err) < 0)
		cli_usage_error(usage_logs, "%s", err.msg);
	x.filter.function = o.function;
	applog_init(&x.log);
	cli_connect(&c);
	if (client_ndjson(&c, "GET", path, NULL, logs_record, &x, &err) < 0 && !x.stdout_gone)
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
		{ "history", app_history }, { "rollback", app_rollback },
	};

	if (argc < 2)
		cli_usage_error(usage_app, "which app verb? list, stop, logs, history or rollback");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		cli_help(usage_app);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_usage_error(usage_app, "unknown app verb '%s'", argv[1]);
}
