/* fmt: short texts for people, for tables and messages.  Pure functions. */
#ifndef SK_CLI_FMT_H
#define SK_CLI_FMT_H

#include <jansson.h>
#include <stddef.h>

/* "42s", "5m", "3h", "2d" (rounded down; negative ages read "0s"). */
void fmt_age(double seconds, char *out, size_t n);
/* A JSON list of strings as a shell would read it: words with blanks or
 * quotes in single quotes.  Caller frees. */
char *fmt_argv(const json_t *argv);
/* s cut to at most max characters (UTF-8 aware), ending in "..." when cut.
 * Caller frees. */
char *fmt_truncate(const char *s, size_t max);
/* Cores: "0.5", "2", or "-" for a JSON null. */
void fmt_cpu(const json_t *cpu, char *out, size_t n);
/* Memory in MiB: "256MiB", "8GiB", "1.5GiB", or "-" for a JSON null. */
void fmt_mib(const json_t *mib, char *out, size_t n);

#endif
