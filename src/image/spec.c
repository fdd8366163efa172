/*
 * Image specs: parsing a request's JSON, the normalised text, and the id.
 *
 * The id hashes the normalised spec text, so what the text holds decides
 * which specs share an image.  Fields at their defaults are left out of the
 * text rather than written empty: adding a field then keeps the id of every
 * spec that does not use it, and the images already built stay valid.
 */
#include "image/image-internal.h"

#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/sha256.h"
#include "util/xalloc.h"

#define KNOWN_BASE "debian_slim"
#define KNOWN_PYTHON "3.11"
#define KNOWN_FIELDS "apt_packages, base, python_version"
#define APT_MAX 256     /* packages in one spec */
#define APT_NAME_MAX 128 /* bytes in one package name */

static const char *json_kind(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: break;
	}
	return "null";
}

/*
 * Debian policy 5.6.7: lower-case letters, digits, '+', '-' and '.', at
 * least two characters, starting with a letter or digit.  Checking it here
 * also keeps commas out of debootstrap's --include list and dashes off the
 * front of an argument.
 */
static bool valid_package(const char *s, size_t len)
{
	if (len < 2 || len > APT_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '+' && c != '-' && c != '.')))
			return false;
	}
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks every name before keeping any, so a failure leaves nothing to free. */
static int parse_apt(const json_t *a, image_spec *out, sk_error *err)
{
	size_t n = json_array_size(a), kept = 0;

	if (!json_is_array(a))
		return sk_error_set(err, SK_ERR_INVALID,
				    "apt_packages must be a list of Debian package names, not %s",
				    json_kind(a));
	if (n > APT_MAX)
		return sk_error_set(err, SK_ERR_INVALID,
				    "apt_packages lists %zu packages; at most %d are allowed", n,
				    APT_MAX);
	for (size_t i = 0; i < n; i++) {
		const json_t *p = json_array_get(a, i);
		if (!json_is_string(p))
			return sk_error_set(err, SK_ERR_INVALID,
					    "apt_packages[%zu] must be a package name (a string), not %s",
					    i, json_kind(p));
		if (!valid_package(json_string_value(p), json_string_length(p)))
			return sk_error_set(err, SK_ERR_INVALID,
					    "invalid Debian package name \"%.64s\" in apt_packages: "
					    "names are 2-%d characters of a-z, 0-9, '+', '-' and '.', "
					    "starting with a letter or digit", json_string_value(p),
					    APT_NAME_MAX);
	}
	if (!n)
		return 0;
	out->apt_packages = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out->apt_packages[i] = xstrdup(json_string_value(json_array_get(a, i)));
	qsort(out->apt_packages, n, sizeof(char *), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (kept && !strcmp(out->apt_packages[kept - 1], out->apt_packages[i]))
			free(out->apt_packages[i]);
		else
			out->apt_packages[kept++] = out->apt_packages[i];
	}
	out->n_apt_packages = kept;
	return 0;
}

int image_spec_parse(const json_t *j, image_spec *out, sk_error *err)
{
	const json_t *base, *py, *apt;
	const char *key;
	size_t klen;
	json_t *v;

	*out = (image_spec){ 0 };
	if (!json_is_object(j))
		return sk_error_set(err, SK_ERR_INVALID, "an image spec must be a JSON object, not %s",
				    json_kind(j));
	json_object_keylen_foreach((json_t *)j, key, klen, v) {
		if (klen != strlen(key) ||
		    (strcmp(key, "base") && strcmp(key, "python_version") &&
		     strcmp(key, "apt_packages")))
			return sk_error_set(err, SK_ERR_INVALID,
					    "unknown image spec field \"%.64s\" (known: " KNOWN_FIELDS ")",
					    key);
	}
	base = json_object_get(j, "base");
	if (!base)
		return sk_error_set(err, SK_ERR_INVALID,
				    "image spec has no base (known bases: " KNOWN_BASE ")");
	if (!json_is_string(base))
		return sk_error_set(err, SK_ERR_INVALID,
				    "image base must be a string, not %s (known bases: " KNOWN_BASE ")",
				    json_kind(base));
	if (strcmp(json_string_value(base), KNOWN_BASE))
		return sk_error_set(err, SK_ERR_INVALID,
				    "unknown image base \"%.64s\" (known bases: " KNOWN_BASE ")",
				    json_string_value(base));
	py = json_object_get(j, "python_version");
	if (py && !json_is_null(py)) {
		if (!json_is_string(py))
			return sk_error_set(err, SK_ERR_INVALID,
					    "python_version must be a string such as \"" KNOWN_PYTHON
					    "\" or null, not %s", json_kind(py));
		if (strcmp(json_string_value(py), KNOWN_PYTHON))
			return sk_error_set(err, SK_ERR_INVALID,
					    "python_version \"%.64s\" is not available: Debian " IMAGE_SUITE
					    " ships Python " KNOWN_PYTHON " only (use python_version=\""
					    KNOWN_PYTHON "\" or leave it out)", json_string_value(py));
	}
	apt = json_object_get(j, "apt_packages");
	if (apt && !json_is_null(apt) && parse_apt(apt, out, err) < 0)
		return -1;
	out->base = xstrdup(KNOWN_BASE);
	out->python_version = xstrdup(KNOWN_PYTHON);
	return 0;
}

void image_spec_release(image_spec *s)
{
	free(s->base);
	free(s->python_version);
	for (size_t i = 0; i < s->n_apt_packages; i++)
		free(s->apt_packages[i]);
	free(s->apt_packages);
	*s = (image_spec){ 0 };
}

void image_spec_copy(image_spec *dst, const image_spec *src)
{
	dst->base = xstrdup(src->base);
	dst->python_version = xstrdup(src->python_version);
	dst->n_apt_packages = src->n_apt_packages;
	dst->apt_packages = NULL;
	if (src->n_apt_packages) {
		dst->apt_packages = xcalloc(src->n_apt_packages, sizeof(char *));
		for (size_t i = 0; i < src->n_apt_packages; i++)
			dst->apt_packages[i] = xstrdup(src->apt_packages[i]);
	}
}

char *image_spec_json(const image_spec *s)
{
	json_t *j = json_pack("{s:s, s:s}", "base", s->base, "python_version", s->python_version);
	char *text;

	if (!j)
		abort(); /* only when out of memory or given NULL strings */
	if (s->n_apt_packages) {
		json_t *a = json_array();
		for (size_t i = 0; i < s->n_apt_packages; i++)
			json_array_append_new(a, json_string(s->apt_packages[i]));
		json_object_set_new(j, "apt_packages", a);
	}
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	if (!text)
		abort();
	return text;
}

char *image_spec_id(const image_spec *s, const char *mirror)
{
	_cleanup_free_ char *spec = image_spec_json(s);
	sk_buf b = SK_BUF_INIT;
	char hex[65];

	sk_buf_addf(&b, "%s\n%s\n%s", spec, mirror, IMAGE_SUITE);
	sha256_hex(b.base, b.len, hex);
	sk_buf_release(&b);
	return xasprintf("im-%s", hex);
}

char *image_spec_include_arg(const image_spec *s)
{
	sk_buf b = SK_BUF_INIT;

	sk_buf_addf(&b, "--include=python3");
	for (size_t i = 0; i < s->n_apt_packages; i++)
		if (strcmp(s->apt_packages[i], "python3"))
			sk_buf_addf(&b, ",%s", s->apt_packages[i]);
	return sk_buf_detach(&b, NULL);
}
