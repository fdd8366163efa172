/* Standard base64 (RFC 4648). */
#ifndef SK_BASE64_H
#define SK_BASE64_H

#include <stddef.h>

/* Decodes s (padding optional, no whitespace) into a fresh buffer; -1 when invalid. */
int sk_base64_decode(const char *s, char **out, size_t *len);

/* Encodes len bytes into out (room for 4 * ((len + 2) / 3) + 1 bytes, NUL-terminated). */
void sk_base64_encode(const void *data, size_t len, char *out);

#endif
