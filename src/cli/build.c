#include "cli/build.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/fmt.h"
#include "cli/term.h"
#include "util/fsutil.h"
#include "util/xalloc.h"

typedef struct build_ctx {
	bool tty;           /* stderr is a terminal */
	bool shown;         /* a progress line is on screen (tty) */
	bool any_progress;
	char *image_id;
	bool cached;
} build_ctx;

static void show_progress(build_ctx *b, const char *line)
{
	int rows, cols = 80;

	if (!b->any_progress)
		fprintf(stderr, "skiff: building the image; this takes a while the first time\n");
	b->any_progress = true;
	if (!b->tty) {
		fprintf(stderr, "%s\n", line);
		return;
	}
	term_winsize(STDERR_FILENO, &rows, &cols);
	{
		_cleanup_free_ char *cut = fmt_truncate(line, cols > 20 ? (size_t)cols - 9 : 11);

		/* Control bytes in build output would break the one-line display. */
		for (char *p = cut; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
		fprintf(stderr, "\r\033[K  build: %s", cut);
	}
	b->shown = true;
	fflush(stderr);
}

static void clear_progress(build_ctx *b)
{
	if (b->shown)
		fprintf(stderr, "\r\033[K");
	b->shown = false;
}

static int on_line(json_t *obj, void *arg, sk_error *err)
{
	build_ctx *b = arg;
	const char *progress = json_string_value(json_object_get(obj, "progress"));
	const char *id = json_string_value(json_object_get(obj, "image_id"));
	json_t *e = json_object_get(obj, "error");

	if (progress) {
		show_progress(b, progress);
		return 0;
	}
	if (id) {
		free(b->image_id);
		b->image_id = xstrdup(id);
		b->cached = json_is_true(json_object_get(obj, "cached"));
		return 0;
	}
	if (e) {
		const char *msg = json_string_value(json_object_get(e, "message"));

		return sk_error_set(err, SK_ERR_INTERNAL, "the image build failed: %s",
				    msg ? msg : "(no message)");
	}
	return 0;
}

int build_image(client *c, const char *base, const char *python_version, char **image_id,
		sk_error *err)
{
	build_ctx b = { .tty = isatty(STDERR_FILENO) };
	json_t *spec = json_pack("{s:s,s:s?}", "base", base, "python_version", python_version);
	double start = sk_wall_time();
	int rc;

	rc = client_ndjson(c, "POST", "/v1/images", spec, on_line, &b, err);
	json_decref(spec);
	clear_progress(&b);
	if (rc == 0 && !b.image_id)
		rc = sk_error_set(err, SK_ERR_INTERNAL,
				  "the image build stream ended without an image_id");
	if (rc < 0) {
		free(b.image_id);
		return -1;
	}
	if (b.any_progress)
		fprintf(stderr, "skiff: image %s ready after %.0f s\n", b.image_id,
			sk_wall_time() - start);
	*image_id = b.image_id;
	return 0;
}
