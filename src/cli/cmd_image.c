/*
 * `skiff image list|rm|prune`: the image store and its layer cache
 * (docs/api.md, "Image build steps and the layer cache").  rm takes full ids
 * or unique prefixes (as docker does); its layers stay until a prune, which
 * keeps whatever running containers use.
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

static const char usage_image[] =
	"Usage: skiff image list|rm|prune ...\n"
	"\n"
	"  skiff image list [--json]     images on the server, newest first\n"
	"  skiff image rm ID...          forget images (full ids or unique prefixes)\n"
	"  skiff image prune [--json]    remove layers no image and no running container uses\n";

static const char usage_list[] = "Usage: skiff image list [--json]\n";
static const char usage_rm[] = "Usage: skiff image rm ID...\n"
			       "\n"
			       "Forgets images; their layers are removed by the next 'skiff image prune'\n"
			       "unless other images or running containers use them.\n";
static const char usage_prune[] = "Usage: skiff image prune [--json]\n";

static bool parse_json_flag(int argc, char **argv, const char *usage, int *first)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	int c;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (c == 'h')
			cli_help(usage);
		else if (c == 'j')
			json = true;
		else
			cli_usage_error(usage, "unknown option '%s'", argv[optind - 1]);
	}
	*first = optind;
	return json;
}

static void print_json(json_t *j)
{
	_cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));

	printf("%s\n", text);
}

static json_t *fetch_list(client *c)
{
	json_t *j = NULL, *list;
	sk_error err;

	if (client_call(c, "GET", "/v1/images", NULL, &j, &err) < 0)
		cli_fail(&err);
	list = json_incref(json_object_get(j, "images"));
	json_decref(j);
	if (!json_is_array(list))
		cli_die("the server's answer to GET /v1/images has no \"images\" list");
	return list;
}

static void human(double bytes, char *out, size_t n)
{
	if (bytes >= 1 << 30)
		snprintf(out, n, "%.1f GiB", bytes / (1 << 30));
	else if (bytes >= 1 << 20)
		snprintf(out, n, "%.1f MiB", bytes / (1 << 20));
	else if (bytes > 0)
		snprintf(out, n, "%.0f KiB", bytes / 1024);
	else
		snprintf(out, n, "-");
}

static int image_list(int argc, char **argv)
{
	static const char *const head[] = { "IMAGE", "BASE", "STEPS", "SIZE", "AGE" };
	int first;
	bool json = parse_json_flag(argc, argv, usage_list, &first);
	double now = sk_wall_time();
	sk_buf out = SK_BUF_INIT;
	json_t *list, *im;
	table tab;
	size_t i;
	client c;

	if (first != argc)
		cli_usage_error(usage_list, "unexpected argument '%s'", argv[first]);
	cli_connect(&c);
	list = fetch_list(&c);
	if (json) {
		print_json(list);
	} else {
		table_init(&tab, ARRAY_SIZE(head), head);
		json_array_foreach(list, i, im) {
			char id[20], steps[16], size[24], age[16];
			const char *row[ARRAY_SIZE(head)] = { id, json_string_value(json_object_get(im, "base")),
							     steps, size, age };
			snprintf(id, sizeof(id), "%.15s", json_string_value(json_object_get(im, "image_id")));
			snprintf(steps, sizeof(steps), "%lld",
				 (long long)json_integer_value(json_object_get(im, "steps")));
			human((double)json_integer_value(json_object_get(im, "size_bytes")), size,
			      sizeof(size));
			fmt_age(now - json_number_value(json_object_get(im, "created_at")), age,
				sizeof(age));
			table_add(&tab, row);
		}
		table_render(&tab, &out);
		cli_write_all(STDOUT_FILENO, out.base, out.len);
		sk_buf_release(&out);
		table_release(&tab);
	}
	json_decref(list);
	client_release(&c);
	return 0;
}

/* The one image id that starts with prefix, or NULL (why goes to stderr). */
static char *resolve(json_t *list, const char *prefix)
{
	const char *found = NULL;
	size_t i, n = 0, pl = strlen(prefix);
	json_t *im;

	json_array_foreach(list, i, im) {
		const char *id = json_string_value(json_object_get(im, "image_id"));
		if (!id)
			continue;
		if (!strcmp(id, prefix))
			return xstrdup(id);
		if (!strncmp(id, prefix, pl) || (strncmp(prefix, "im-", 3) && !strncmp(id + 3, prefix, pl))) {
			found = id;
			n++;
		}
	}
	if (n == 1)
		return xstrdup(found);
	fprintf(stderr, "skiff: %s: %s\n", prefix,
		n ? "more than one image starts with that; give more of the id"
		  : "no such image (see 'skiff image list')");
	return NULL;
}

static int image_rm(int argc, char **argv)
{
	int i, status = 0;
	json_t *list;
	client c;

	parse_json_flag(argc, argv, usage_rm, &i);
	if (i >= argc)
		cli_usage_error(usage_rm, "which image? Give its id (im-...) or a unique prefix");
	cli_connect(&c);
	list = fetch_list(&c);
	for (; i < argc; i++) {
		_cleanup_free_ char *id = resolve(list, argv[i]);
		_cleanup_free_ char *path = NULL;
		sk_error err;

		if (!id) {
			status = 1;
			continue;
		}
		path = client_path("/v1/images/", id, "");
		if (client_call(&c, "DELETE", path, NULL, NULL, &err) < 0) {
			fprintf(stderr, "skiff: %s\n", err.msg);
			status = 1;
		} else {
			printf("Removed %s\n", id);
		}
	}
	json_decref(list);
	client_release(&c);
	return status;
}

static int image_prune(int argc, char **argv)
{
	int first;
	bool json = parse_json_flag(argc, argv, usage_prune, &first);
	json_t *j = NULL;
	sk_error err;
	client c;

	if (first != argc)
		cli_usage_error(usage_prune, "unexpected argument '%s'", argv[first]);
	cli_connect(&c);
	if (client_call(&c, "POST", "/v1/images/prune", NULL, &j, &err) < 0)
		cli_fail(&err);
	if (json) {
		print_json(j);
	} else {
		char freed[24];
		human((double)json_integer_value(json_object_get(j, "freed_bytes")), freed,
		      sizeof(freed));
		printf("Removed %zu layers, freed %s\n",
		       json_array_size(json_object_get(j, "removed_layers")), freed);
	}
	json_decref(j);
	client_release(&c);
	return 0;
}

int cmd_image(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} verbs[] = {
		{ "list", image_list }, { "ls", image_list }, { "rm", image_rm },
		{ "remove", image_rm }, { "prune", image_prune },
	};

	if (argc < 2)
		cli_usage_error(usage_image, "which image verb? list, rm or prune");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		cli_help(usage_image);
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	cli_usage_error(usage_image, "unknown image verb '%s'", argv[1]);
}
