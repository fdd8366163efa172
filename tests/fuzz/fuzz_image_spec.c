/*
 * libFuzzer target for image specs and Debian sources (src/image/image.c):
 * the input as JSON through image_spec_parse, and a spec that parses must
 * print (image_spec_json) as JSON that parses to the same spec and id
 * (image_spec_id); the input as text through image_parse_mirror, whose
 * answer must be an http(s) URI without trailing slashes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"
#include "util/xalloc.h"

static void check_spec(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL), *again;
	image_spec spec, spec2;
	char *text, *id, *id2;
	sk_error err;

	if (!j)
		return;
	if (image_spec_parse(j, &spec, &err) < 0) {
		json_decref(j);
		return;
	}
	json_decref(j);
	text = image_spec_json(&spec);
	id = image_spec_id(&spec, "http://deb.debian.org/debian");
	again = json_loads(text, 0, NULL);
	if (!again || image_spec_parse(again, &spec2, &err) < 0)
		abort();
	id2 = image_spec_id(&spec2, "http://deb.debian.org/debian");
	if (strcmp(id, id2) || strncmp(id, "im-", 3) || strlen(id) != 67)
		abort();
	json_decref(again);
	image_spec_release(&spec2);
	image_spec_release(&spec);
	free(id2);
	free(id);
	free(text);
}

static void check_mirror(const uint8_t *data, size_t size)
{
	char *text = xmalloc(size + 1), *m;
	size_t n;

	memcpy(text, data, size);
	text[size] = 0;
	m = image_parse_mirror(text);
	if (m) {
		n = strlen(m);
		if (strncmp(m, "http://", 7) && strncmp(m, "https://", 8))
			abort();
		if (n > 8 && m[n - 1] == '/')
			abort();
		free(m);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_spec(data, size);
	check_mirror(data, size);
	return 0;
}
