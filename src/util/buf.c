#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/xalloc.h"

void sk_buf_init(sk_buf *b)
{
	b->base = NULL;
	b->len = b->cap = 0;
}

void sk_buf_release(sk_buf *b)
{
	free(b->base);
	sk_buf_init(b);
}

void sk_buf_grow(sk_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	if (need < b->cap * 2)
		need = b->cap * 2;
	if (need < 64)
		need = 64;
	b->base = xrealloc(b->base, need);
	b->cap = need;
}

void sk_buf_add(sk_buf *b, const void *data, size_t len)
{
	sk_buf_grow(b, len);
	if (len)
		memcpy(b->base + b->len, data, len);
	b->len += len;
	b->base[b->len] = 0;
}

void sk_buf_adds(sk_buf *b, const char *s)
{
	sk_buf_add(b, s, strlen(s));
}

void sk_buf_addf(sk_buf *b, const char *fmt, ...)
{
	va_list ap, ap2;
	int n;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n > 0) {
		sk_buf_grow(b, (size_t)n);
		vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap2);
		b->len += (size_t)n;
	}
	va_end(ap2);
}

void sk_buf_consume(sk_buf *b, size_t n)
{
	if (n >= b->len) {
		sk_buf_reset(b);
		return;
	}
	memmove(b->base, b->base + n, b->len - n);
	b->len -= n;
	b->base[b->len] = 0;
}

void sk_buf_reset(sk_buf *b)
{
	b->len = 0;
	if (b->base)
		b->base[0] = 0;
}

char *sk_buf_detach(sk_buf *b, size_t *len)
{
	char *p;

	if (!b->base)
		sk_buf_grow(b, 0), b->base[0] = 0;
	p = b->base;
	if (len)
		*len = b->len;
	sk_buf_init(b);
	return p;
}

int sk_slice_eq(sk_slice s, const char *lit)
{
	size_t n = strlen(lit);

	return s.len == n && memcmp(s.base, lit, n) == 0;
}
