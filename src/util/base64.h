/* Standard base64 (RFC 4648) decoding. */
#ifndef SK_BASE64_H
#define SK_BASE64_H

#include <stddef.h>

/* Decodes s (padding optional, no whitespace) into a fresh buffer; -1 when invalid. */
int sk_base64_decode(const char *s, char **out, size_t *len);

#endif
