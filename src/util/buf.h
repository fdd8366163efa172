/*
 * sk_buf: a growable byte buffer, always NUL-terminated past its length so
 * that text can be handed to C string functions; bytes may contain NULs.
 * Lifecycle: sk_buf_init / sk_buf_release (frees the bytes, keeps the struct).
 */
#ifndef SK_BUF_H
#define SK_BUF_H

#include <stddef.h>

typedef struct sk_buf {
	char *base;
	size_t len;
	size_t cap;
} sk_buf;

#define SK_BUF_INIT { NULL, 0, 0 }

void sk_buf_init(sk_buf *b);
void sk_buf_release(sk_buf *b);
void sk_buf_grow(sk_buf *b, size_t extra);
void sk_buf_add(sk_buf *b, const void *data, size_t len);
void sk_buf_adds(sk_buf *b, const char *s);
void sk_buf_addf(sk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void sk_buf_consume(sk_buf *b, size_t n);
void sk_buf_reset(sk_buf *b);
/* Returns the bytes (caller frees) and leaves b empty. */
char *sk_buf_detach(sk_buf *b, size_t *len);

/* A view of bytes owned elsewhere, typically straight off the network. */
typedef struct sk_slice {
	const char *base;
	size_t len;
} sk_slice;

int sk_slice_eq(sk_slice s, const char *lit);

#endif
