/*
 * sk_error: the one error type threaded through every call that can fail.
 *
 * A function that can fail returns a negative value and fills *err with an
 * errno (0 when the failure is not a system call's) and a message written for
 * a person.  Each layer may prefix context with sk_error_prefix().  Library
 * code never prints; only the API and CLI edges turn errors into words.
 *
 * A NULL err is allowed everywhere: the details are then dropped.
 */
#ifndef SK_ERROR_H
#define SK_ERROR_H

#include <stdarg.h>

/* Kinds map onto HTTP status codes at the API edge. */
enum sk_error_kind {
	SK_ERR_INTERNAL = 0, /* 500 */
	SK_ERR_INVALID,      /* 400: the request was wrong */
	SK_ERR_NOT_FOUND,    /* 404 */
	SK_ERR_CONFLICT,     /* 409 */
	SK_ERR_RESOURCES,    /* 422: asks for more than this node has */
	SK_ERR_UNAVAILABLE,  /* 503 */
};

typedef struct sk_error {
	int errnum;
	enum sk_error_kind kind;
	char msg[512];
} sk_error;

/* Fills err; returns -1 so that `return sk_error_set(...)` reads well. */
int sk_error_set(sk_error *err, enum sk_error_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Like sk_error_set, appending ": strerror(errnum)". */
int sk_error_errno(sk_error *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prefixes "context: " to the message already there. */
int sk_error_prefix(sk_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sk_error_clear(sk_error *err);
const char *sk_error_kind_name(enum sk_error_kind kind);

#endif
