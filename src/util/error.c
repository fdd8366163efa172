#include "util/error.h"

#include <stdio.h>
#include <errno.h>
#include <string.h>

static void vset(sk_error *err, const char *fmt, va_list ap)
{
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int sk_error_set(sk_error *err, enum sk_error_kind kind, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	err->errnum = 0;
	err->kind = kind;
	va_start(ap, fmt);
	vset(err, fmt, ap);
	va_end(ap);
	return -1;
}

int sk_error_errno(sk_error *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err)
		return -1;
	err->errnum = errnum;
	err->kind = errnum == ENOENT ? SK_ERR_NOT_FOUND : SK_ERR_INTERNAL;
	va_start(ap, fmt);
	vset(err, fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
	return -1;
}

int sk_error_prefix(sk_error *err, const char *fmt, ...)
{
	char old[sizeof(err->msg)];
	va_list ap;
	size_t n;

	if (!err)
		return -1;
	memcpy(old, err->msg, sizeof(old));
	va_start(ap, fmt);
	vset(err, fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", old);
	return -1;
}

void sk_error_clear(sk_error *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

const char *sk_error_kind_name(enum sk_error_kind kind)
{
	switch (kind) {
	case SK_ERR_INVALID: return "invalid_argument";
	case SK_ERR_NOT_FOUND: return "not_found";
	case SK_ERR_CONFLICT: return "conflict";
	case SK_ERR_RESOURCES: return "resource_exhausted";
	case SK_ERR_UNAVAILABLE: return "unavailable";
	case SK_ERR_INTERNAL: break;
	}
	return "internal";
}
