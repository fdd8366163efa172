/*
 * `skiff token create|list|delete`: the proxy-auth tokens that web endpoints
 * with requires_proxy_auth=True demand (docs/api.md, "Proxy auth tokens").
 * A token's secret is shown once, by create; the server keeps only its hash.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/fmt.h"
#include "cli/table.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

static const char usage_token[] =
	"Usage: skiff token create|list|delete ...\n"
	"\n"
	"Proxy-auth tokens: web endpoints with requires_proxy_auth=True answer only\n"
	"requests that carry a token as the headers Skiff-Key and Skiff-Secret.\n"
	"\n"
	"  skiff token create [--name N] [--json]   a new token (its secret is shown once)\n"
	"  skiff token list [--json]                tokens, newest first (no secrets)\n"
	"  skiff token delete ID...                 revoke tokens\n"
	"\n"
	"Run 'skiff token VERB --help' for more.\n";

static const char usage_create[] =
	"Usage: skiff token create [--name N] [--json]\n"
	"\n"
	"Creates a token and prints its id and secret.  The secret is not stored\n"
	"anywhere it can be read back: keep it now.\n"
	"\n"
	"      --name N   a label for the token (shown by 'skiff token list')\n"
	"      --json     print {\"token_id\": ..., \"token_secret\": ...} only\n";

static const char usage_list[] =
	"Usage: skiff token list [--json]\n"
	"\n"
	"Lists the server's proxy-auth tokens, newest first, without their secrets.\n"
	"\n"
	"      --json   print the server's JSON list instead of a table\n";

static const char usage_delete[] =
	"Usage: skiff token delete ID...\n"
	"\n"
	"Deletes tokens (wk-...): requests carrying them are refused from now on.\n";

struct opts {
	bool json;
	const char *name;
};

/* Parses options anywhere among the operands; returns the index of the first operand. */
static int parse_opts(int argc, char **argv, const char *usage, const struct option *longopts,
		      struct opts *o)
{
	int c;

	optind = 0;
	opterr = 0;
	/* A leading ':' makes a missing value ':' and leaves '?' to unknown options. */
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c == 'h')
			cli_help(usage);
		else if (c == 'j')
			o->json = true;
		else if (c == 'n')
			o->name = optarg;
		else if (c == ':')
			cli_usage_error(usage, "option '%s' needs a value", argv[optind - 1]);
		else
			cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
	}
	return optind;
}

static void print_json(json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));

	printf("%s\n", text);
}

static int token_create(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	json_t *body, *j = NULL;
	const char *id, *secret;
	sk_error err;
	client c;

	if (parse_opts(argc, argv, usage_create, longopts, &o) != argc)
		cli_usage_error(usage_create, "unexpected argument '%s'", argv[optind]);
	if (o.name && !*o.name)
		cli_usage_error(usage_create, "--name needs a non-empty name");
	body = o.name ? json_pack("{s:s}", "name", o.name) : json_object();
	cli_connect(&c);
	if (client_call(&c, "POST", "/v1/tokens", body, &j, &err) < 0)
		cli_fail(&err);
	json_decref(body);
	id = json_string_value(json_object_get(j, "token_id"));
	secret = json_string_value(json_object_get(j, "token_secret"));
	if (!id || !secret)
		cli_die("the server's answer to POST /v1/tokens has no token_id and token_secret");
	if (o.json) {
		print_json(j);
	} else {
		printf("Token ID:     %s\nToken secret: %s\n", id, secret);
		printf("The secret is shown only now.  Send them as headers Skiff-Key: %s and "
		       "Skiff-Secret: %s\n", id, secret);
	}
	json_decref(j);
	client_release(&c);
	return 0;
}

static void print_table(json_t *list)
{
	static const char *const head[] = { "ID", "NAME", "AGE" };
	double now = sk_wall_time();
	sk_buf out = SK_BUF_INIT;
	json_t *t;
	table tab;
	size_t i;

	table_init(&tab, ARRAY_SIZE(head), head);
	json_array_foreach(list, i, t) {
		char age[16];
		const char *row[ARRAY_SIZE(head)] = {
			json_string_value(json_object_get(t, "token_id")),
			json_string_value(json_object_get(t, "name")),
			age,
		};

		fmt_age(now - json_number_value(json_object_get(t, "created_at")), age,
			sizeof(age));
		table_add(&tab, row);
	}
	table_render(&tab, &out);
	cli_write_all(STDOUT_FILENO, out.base, out.len);
	sk_buf_release(&out);
	table_release(&tab);
}

static int token_list(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct opts o = { 0 };
	json_t *j = NULL, *list;
	sk_error err;
	client c;

	if (parse_opts(argc, argv, usage_list, longopts, &o) != argc)
		cli_usage_error(usage_list, "unexpected argument '%s'", argv[optind]);
	cli_connect(&c);
	if (client_call(&c, "GET", "/v1/tokens", NULL, &j, &err) < 0)
		cli_fail(&err);
	list = json_object_get(j, "tokens");
	if (!json_is_array(list))
		cli_die("the server's answer to GET /v1/tokens has no \"tokens\" list");
	if (o.json)
		print_json(list);
	else
		print_table(list);
	json_decref(j);
	client_release(&c);
	return 0;
}

static int token_delete(int argc, char **argv)
{
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' }, { 0 } };
	struct opts o = { 0 };
	int i = parse_opts(argc, argv, usage_delete, longopts, &o), status = 0;
	client c;

	if (i >= argc)
		cli_usage_error(usage_delete, "which token? Give its id (wk-...)");
	cli_connect(&c);
	for (; i < argc; i++) {
		_cleanup_free_ char *path = client_path("/v1/tokens/", argv[i], "");
		sk_error err;

		if (client_call(&c, "DELETE", path, NULL, NULL, &err) < 0) {
			fprintf(stderr, "skiff: %s\n", err.msg);
			status = 1;
		} else {
			printf("Deleted %s\n", argv[i]);
		}
	}
	client_release(&c);
	return status;
}

int cmd_token(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "create", token_create }, { "list", token_list }, { "ls", token_list },
		{ "delete", token_delete }, { "rm", token_delete },
	};

	if (argc < 2)
		cli_usage_error(usage_token, "which token verb? create, list or delete");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		cli_help(usage_token);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_usage_error(usage_token, "unknown token verb '%s'", argv[1]);
}
