#include "runtime/gpu.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/xalloc.h"

static const char *const known[] = { "T4",   "L4",	"A10G", "A100", "A100-40GB", "A100-80GB",
				     "L40S", "H100", "H200", "B200", "ANY" };

void gpu_type_of(const char *product, char *type, size_t len)
{
	char up[128];
	size_t i;

	for (i = 0; product[i] && i + 1 < sizeof(up); i++)
		up[i] = (char)toupper((unsigned char)product[i]);
	up[i] = 0;
	if (strstr(up, "B200"))
		snprintf(type, len, "B200");
	else if (strstr(up, "H200"))
		snprintf(type, len, "H200");
	else if (strstr(up, "H100"))
		snprintf(type, len, "H100");
	else if (strstr(up, "A100"))
		snprintf(type, len, strstr(up, "80GB") ? "A100-80GB" : "A100-40GB");
	else if (strstr(up, "L40S"))
		snprintf(type, len, "L40S");
	else if (strstr(up, "A10G") || strstr(up, "A10"))
		snprintf(type, len, "A10G");
	else if (strstr(up, "L4"))
		snprintf(type, len, "L4");
	else if (strstr(up, "T4"))
		snprintf(type, len, "T4");
	else {
		/* Unknown: keep the product name without "NVIDIA ". */
		const char *p = !strncmp(up, "NVIDIA ", 7) ? up + 7 : up;
		snprintf(type, len, "%s", p);
	}
}

int gpu_parse_smi(const char *text, gpu_dev **out, size_t *n, sk_error *err)
{
	gpu_dev *v = NULL;
	size_t k = 0;
	const char *line = text;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		_cleanup_free_ char *l = xstrndup(line, len);
		char *comma = strchr(l, ',');

		line = nl ? nl + 1 : NULL;
		if (!comma)
			continue;
		*comma = 0;
		char *end;
		long idx = strtol(l, &end, 10);
		if (end == l || idx < 0 || idx > 1023)
			continue;
		const char *name = comma + 1;
		while (*name == ' ')
			name++;
		v = xrealloc(v, (k + 1) * sizeof(*v));
		memset(&v[k], 0, sizeof(v[k]));
		v[k].index = (int)idx;
		gpu_type_of(name, v[k].type, sizeof(v[k].type));
		k++;
	}
	(void)err;
	*out = v;
	*n = k;
	return 0;
}

int gpu_detect(gpu_dev **out, size_t *n, sk_error *err)
{
	char buf[4096];
	size_t len = 0;
	FILE *f;

	*out = NULL;
	*n = 0;
	if (access("/dev/nvidiactl", F_OK) < 0)
		return 0;
	f = popen("nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null", "r");
	if (!f)
		return sk_error_errno(err, errno, "cannot run nvidia-smi");
	len = fread(buf, 1, sizeof(buf) - 1, f);
	buf[len] = 0;
	if (pclose(f) != 0)
		return sk_error_set(err, SK_ERR_INTERNAL,
				    "/dev/nvidiactl exists but nvidia-smi failed: is the driver loaded?");
	return gpu_parse_smi(buf, out, n, err);
}

static int parse_one(const char *s, size_t len, char *type, size_t tlen, int *count, sk_error *err)
{
	char up[64];
	const char *colon;
	size_t tl;

	if (!len || len >= sizeof(up))
		return sk_error_set(err, SK_ERR_INVALID, "empty or too long GPU request");
	for (size_t i = 0; i < len; i++)
		up[i] = (char)toupper((unsigned char)s[i]);
	up[len] = 0;
	colon = strchr(up, ':');
	tl = colon ? (size_t)(colon - up) : len;
	*count = 1;
	if (colon) {
		char *end;
		long c = strtol(colon + 1, &end, 10);
		if (end == colon + 1 || *end || c < 1 || c > 64)
			return sk_error_set(err, SK_ERR_INVALID,
					    "gpu=\"%.*s\": the count after ':' must be 1 to 64",
					    (int)len, s);
		*count = (int)c;
	}
	up[tl] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (!strcmp(up, known[i])) {
			snprintf(type, tlen, "%s", up);
			return 0;
		}
	return sk_error_set(err, SK_ERR_INVALID,
			    "gpu=\"%.*s\": unknown GPU type %s (known: T4, L4, A10G, A100, A100-40GB, "
			    "A100-80GB, L40S, H100, H200, B200, any)",
			    (int)len, s, up);
}

int gpu_parse_request(const char *s, char *type, size_t len, int *count, sk_error *err)
{
	return parse_one(s, strlen(s), type, len, count, err);
}

int gpu_parse_fake(const char *spec, gpu_dev **out, size_t *n, sk_error *err)
{
	gpu_dev *v = NULL;
	size_t k = 0;
	const char *p = spec;

	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char type[32];
		int count;

		if (parse_one(p, len, type, sizeof(type), &count, err) < 0 || !strcmp(type, "ANY")) {
			free(v);
			if (!strcmp(type, "ANY"))
				sk_error_set(err, SK_ERR_INVALID, "--fake-gpus needs GPU types, not any");
			return sk_error_prefix(err, "--fake-gpus %s", spec);
		}
		for (int i = 0; i < count; i++) {
			v = xrealloc(v, (k + 1) * sizeof(*v));
			memset(&v[k], 0, sizeof(v[k]));
			v[k].index = (int)k;
			v[k].fake = true;
			snprintf(v[k].type, sizeof(v[k].type), "%s", !strcmp(type, "A100") ? "A100-40GB" : type);
			k++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	*out = v;
	*n = k;
	return 0;
}

bool gpu_matches(const char *want, const char *have)
{
	if (!strcmp(want, "ANY") || !strcmp(want, have))
		return true;
	/* Modal's "A100" is the 40 GB one; either A100 serves it here. */
	return !strcmp(want, "A100") && !strncmp(have, "A100", 4);
}
