#include "cli/applog.h"

#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

void applog_init(applog *l)
{
	memset(l, 0, sizeof(*l));
}

void applog_release(applog *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->fn[i]);
		free(l->ct[i]);
	}
	free(l->fn);
	free(l->ct);
	applog_init(l);
}

/* Records (fn, ct) as seen; returns how many containers fn has printed from. */
static size_t note_container(applog *l, const char *fn, const char *ct)
{
	size_t count = 0;
	bool seen = false;

	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->fn[i], fn))
			continue;
		count++;
		if (!strcmp(l->ct[i], ct))
			seen = true;
	}
	if (seen || !*ct)
		return count;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 8;
		l->fn = xrealloc(l->fn, l->cap * sizeof(char *));
		l->ct = xrealloc(l->ct, l->cap * sizeof(char *));
	}
	l->fn[l->n] = xstrdup(fn);
	l->ct[l->n] = xstrdup(ct);
	l->n++;
	return count + 1;
}

bool applog_format(applog *l, const json_t *rec, sk_buf *out)
{
	const char *fn = json_string_value(json_object_get(rec, "function"));
	const char *ct = json_string_value(json_object_get(rec, "container"));
	const char *stream = json_string_value(json_object_get(rec, "stream"));
	json_t *jtext = json_object_get(rec, "text");
	const char *text = json_string_value(jtext);
	size_t len = text ? json_string_length(jtext) : 0;
	_cleanup_free_ char *label = NULL;

	if (!fn || !*fn)
		fn = "app";
	if (!ct)
		ct = "";
	if (note_container(l, fn, ct) > 1)
		/* "ct-" and 4 hex digits tell containers apart without filling the line. */
		label = xasprintf("%s %.*s", fn, !strncmp(ct, "ct-", 3) ? 7 : 8, ct);
	else
		label = xstrdup(fn);
	do {
		const char *nl = text ? memchr(text, '\n', len) : NULL;
		size_t n = nl ? (size_t)(nl - text) : len;

		sk_buf_addf(out, "[%s] ", label);
		sk_buf_add(out, text ? text : "", n);
		sk_buf_add(out, "\n", 1);
		if (!nl)
			break;
		text = nl + 1;
		len -= n + 1;
	} while (len);
	return stream && !strcmp(stream, "stderr");
}

bool applog_keep(const applog_filter *f, const json_t *rec)
{
	const char *fn = json_string_value(json_object_get(rec, "function"));
	json_t *ts = json_object_get(rec, "ts");

	if (f->function) {
		size_t n = strlen(f->function);

		if (!fn || strncmp(fn, f->function, n) || (fn[n] && fn[n] != '('))
			return false;
	}
	if (f->since > 0 && (!json_is_number(ts) || json_number_value(ts) < f->since))
		return false;
	return true;
}
