/*
 * applog: an app's log records (GET /v1/apps/<id>/logs, one JSON object per
 * line of container output) as lines for a person: "[square] text".
 *
 * While one container of a function has printed, its lines carry the
 * function's name alone; once a second container of that function prints,
 * lines carry a short container id too ("[square ct-1a2b] text"), so that
 * the containers can be told apart.  The Python SDK's skiff run prints the
 * same way (sdk/python/skiff/_logs.py).
 *
 * applog_keep is the filter of `skiff app logs --function F --since T`,
 * applied here because the server sends an app's whole log.
 *
 * Thread: single-threaded; one applog per stream being printed.
 */
#ifndef SK_CLI_APPLOG_H
#define SK_CLI_APPLOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

typedef struct applog {
	/* The containers seen per function, in order: pairs of owned strings. */
	char **fn;
	char **ct;
	size_t n, cap;
} applog;

void applog_init(applog *l);
void applog_release(applog *l);

/*
 * Appends rec's text to out, each of its lines prefixed "[label] " and ended
 * with a newline.  Returns true when the record came from stderr.  Records
 * without the expected fields print what they have ("app" for no function).
 */
bool applog_format(applog *l, const json_t *rec, sk_buf *out);

typedef struct applog_filter {
	/* Keep only this function's records (borrowed), or NULL for all.  A
	 * function matches itself and the pools named after it: "Model" matches
	 * "Model" and "Model(size=2)", not "ModelB" nor "Model.run". */
	const char *function;
	/* Keep records with ts >= since (unix seconds).  At 0, records without a
	 * ts are kept too; above, they are dropped, being of unknown age. */
	double since;
} applog_filter;

/* Whether rec passes f. */
bool applog_keep(const applog_filter *f, const json_t *rec);

#endif
