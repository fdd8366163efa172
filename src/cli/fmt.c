#include "cli/fmt.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/buf.h"
#include "util/xalloc.h"

void fmt_age(double seconds, char *out, size_t n)
{
	static const struct { double secs; char unit; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' },
	};

	if (seconds < 0)
		seconds = 0;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (seconds >= units[i].secs) {
			snprintf(out, n, "%lld%c", (long long)(seconds / units[i].secs), units[i].unit);
			return;
		}
	snprintf(out, n, "%llds", (long long)seconds);
}

static bool plain_word(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "-_./:=@%+,", *s) && (unsigned char)*s < 0x80)
			return false;
	return true;
}

char *fmt_argv(const json_t *argv)
{
	sk_buf b = SK_BUF_INIT;
	size_t i;
	json_t *v;

	sk_buf_adds(&b, "");
	json_array_foreach(argv, i, v) {
		const char *s = json_string_value(v);

		if (i)
			sk_buf_add(&b, " ", 1);
		if (!s)
			s = "?";
		if (plain_word(s)) {
			sk_buf_adds(&b, s);
			continue;
		}
		sk_buf_add(&b, "'", 1);
		for (; *s; s++) {
			if (*s == '\'')
				sk_buf_adds(&b, "'\\''");
			else if (*s == '\n')
				sk_buf_adds(&b, "\\n");
			else
				sk_buf_add(&b, s, 1);
		}
		sk_buf_add(&b, "'", 1);
	}
	return sk_buf_detach(&b, NULL);
}

char *fmt_truncate(const char *s, size_t max)
{
	size_t chars = 0, cut = 0;

	for (const char *p = s; *p; p++) {
		if (((unsigned char)*p & 0xC0) == 0x80)
			continue;
		if (chars == (max > 3 ? max - 3 : 0))
			cut = (size_t)(p - s);
		chars++;
	}
	if (chars <= max)
		return xstrdup(s);
	if (max <= 3)
		return xstrndup("...", max);
	return xasprintf("%.*s...", (int)cut, s);
}

void fmt_cpu(const json_t *cpu, char *out, size_t n)
{
	if (!json_is_number(cpu))
		snprintf(out, n, "-");
	else
		snprintf(out, n, "%g", json_number_value(cpu));
}

void fmt_mib(const json_t *mib, char *out, size_t n)
{
	double v = json_number_value(mib);

	if (!json_is_number(mib))
		snprintf(out, n, "-");
	else if (v >= 1024)
		snprintf(out, n, "%gGiB", (double)(long long)(v / 1024 * 10) / 10);
	else
		snprintf(out, n, "%gMiB", v);
}
