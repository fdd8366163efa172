/* UTF-8 validation, shared by everything that turns bytes into JSON strings. */
#ifndef SK_UTF8_H
#define SK_UTF8_H

#include <stddef.h>

/*
 * The length (1 to 4) of the well-formed UTF-8 sequence that s starts with,
 * or 0 when it does not start with one (overlong forms, surrogates, code
 * points past U+10FFFF and truncated sequences are not well-formed).  A NUL
 * byte is a sequence of length 1.  len must be at least 1.
 */
size_t sk_utf8_seq(const char *s, size_t len);

#endif
