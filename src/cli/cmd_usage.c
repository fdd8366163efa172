/* `skiff usage`: what containers used, per app and function, and what it costs (docs/api.md, "Usage"). */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/since.h"
#include "cli/table.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

static const char usage_usage[] =
	"Usage: skiff usage [--app APP] [--since T] [--json]\n"
	"\n"
	"Totals what containers used, per app and function: containers, their\n"
	"seconds, CPU (billed: the larger of the request and what was used), memory\n"
	"(the request), GPU seconds, inputs served, and the cost from the server's\n"
	"price table ($SKIFF_HOME/prices.json; default: Modal's list prices).\n"
	"\n"
	"      --app APP   only this app (its name or id)\n"
	"      --since T   only since T: unix seconds, a date (2026-11-28,\n"
	"                  2026-11-28T10:00; local time, Z for UTC) or an age\n"
	"                  (30m, 2h, 7d); default: everything recorded\n"
	"      --json      print the server's JSON answer instead of a table\n";

/* Seconds for people: "42.0s", "12.5m", "3.2h". */
static void fmt_secs(double s, char *out, size_t n)
{
	if (s < 120)
		snprintf(out, n, "%.1fs", s);
	else if (s < 2 * 3600)
		snprintf(out, n, "%.1fm", s / 60);
	else
		snprintf(out, n, "%.1fh", s / 3600);
}

/* Dollars with the digits that matter for small sums. */
static void fmt_cost(double usd, char *out, size_t n)
{
	snprintf(out, n, usd >= 1 ? "$%.2f" : usd >= 0.01 ? "$%.4f" : "$%.6f", usd);
}

static double num(const json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void print_table(json_t *answer)
{
	static const char *const head[] = { "APP", "FUNCTION", "KIND", "CONTAINERS", "TIME",
					    "CPU", "CPU USED", "MEMORY", "GPU", "INPUTS", "COST" };
	json_t *rows = json_object_get(answer, "rows"), *r;
	double since = num(answer, "since");
	sk_buf out = SK_BUF_INIT;
	size_t i;
	table t;

	table_init(&t, ARRAY_SIZE(head), head);
	json_array_foreach(rows, i, r) {
		char n[24], secs[24], cpu[24], used[24], mem[24], gpu[48], inputs[24], cost[24];
		const char *app = str(r, "app_name") ? str(r, "app_name") : str(r, "app_id");
		const char *row[ARRAY_SIZE(head)] = { app, str(r, "function"), str(r, "kind"), n,
						      secs, cpu, used, mem, gpu, inputs, cost };

		snprintf(n, sizeof(n), "%lld", (long long)num(r, "containers"));
		fmt_secs(num(r, "container_seconds"), secs, sizeof(secs));
		snprintf(cpu, sizeof(cpu), "%.1f core-s", num(r, "cpu_seconds"));
		snprintf(used, sizeof(used), "%.1f core-s", num(r, "cpu_used_seconds"));
		snprintf(mem, sizeof(mem), "%.1f GiB-s", num(r, "memory_gib_seconds"));
		if (num(r, "gpu_seconds") > 0)
			snprintf(gpu, sizeof(gpu), "%.1f s %s", num(r, "gpu_seconds"),
				 str(r, "gpu_type") ? str(r, "gpu_type") : "");
		else
			snprintf(gpu, sizeof(gpu), "-");
		snprintf(inputs, sizeof(inputs), "%lld", (long long)num(r, "inputs"));
		fmt_cost(num(r, "cost"), cost, sizeof(cost));
		table_add(&t, row);
	}
	if (json_array_size(rows)) {
		table_render(&t, &out);
		sk_buf_adds(&out, "\n");
	}
	{
		char cost[24], when[64] = "";
		time_t s = (time_t)since;

		fmt_cost(num(answer, "total_cost"), cost, sizeof(cost));
		if (since > 0)
			strftime(when, sizeof(when), " since %Y-%m-%d %H:%M:%S %Z", localtime(&s));
		sk_buf_addf(&out, "%sTotal: %s%s (prices: %s)\n",
			    json_array_size(rows) ? "" : "No usage recorded.\n", cost, when,
			    str(answer, "prices_file") ? str(answer, "prices_file")
						       : "Modal's list prices, the default");
	}
	cli_write_all(STDOUT_FILENO, out.base, out.len);
	sk_buf_release(&out);
	table_release(&t);
}

int cmd_usage(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "app", required_argument, NULL, 'a' },
		{ "since", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *app = NULL, *since_text = NULL;
	_cleanup_free_ char *path = NULL;
	bool json = false;
	double since = 0;
	json_t *j = NULL;
	sk_error err;
	client c;
	int o;

	optind = 0;
	opterr = 0;
	/* A leading ':' makes a missing value ':' and leaves '?' to unknown options. */
	while ((o = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (o == 'h')
			cli_help(usage_usage);
		else if (o == 'a')
			app = optarg;
		else if (o == 's')
			since_text = optarg;
		else if (o == 'j')
			json = true;
		else if (o == ':')
			cli_usage_error(usage_usage, "option '%s' needs a value", argv[optind - 1]);
		else
			cli_usage_error(usage_usage, "unknown option '%s'", argv[optind - 1]);
	}
	if (optind < argc)
		cli_usage_error(usage_usage, "unexpected argument '%s'", argv[optind]);
	if (app && !*app)
		cli_usage_error(usage_usage, "--app needs an app name or id");
	if (since_text && since_parse(since_text, sk_wall_time(), &since, &err) < 0)
		cli_usage_error(usage_usage, "%s", err.msg);
	path = client_path("/v1/usage?app=", app ? app : "", "");
	if (since_text) {
		char *with = xasprintf("%s&since=%.3f", path, since < 0 ? 0 : since);
		free(path);
		path = with;
	}
	cli_connect(&c);
	if (client_call(&c, "GET", path, NULL, &j, &err) < 0)
		cli_fail(&err);
	if (!json_is_array(json_object_get(j, "rows")))
		cli_die("the server's answer to GET /v1/usage has no \"rows\" list");
	if (json) {
		_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));

		printf("%s\n", text);
	} else {
		print_table(j);
	}
	json_decref(j);
	client_release(&c);
	return 0;
}
