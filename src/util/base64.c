#include "util/base64.h"

#include <string.h>

#include "util/xalloc.h"

static int val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int sk_base64_decode(const char *s, char **out, size_t *len)
{
	size_t n = strlen(s), k = 0;
	unsigned acc = 0;
	int bits = 0;
	char *buf;

	while (n && s[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return -1;
	buf = xmalloc(n * 3 / 4 + 1);
	for (size_t i = 0; i < n; i++) {
		int v = val((unsigned char)s[i]);
		if (v < 0) {
			free(buf);
			return -1;
		}
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[k++] = (char)(acc >> bits & 0xff);
		}
	}
	*out = buf;
	*len = k;
	return 0;
}

void sk_base64_encode(const void *data, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	size_t i = 0;

	for (; i + 2 < len; i += 3) {
		*out++ = tab[p[i] >> 2];
		*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		*out++ = tab[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		*out++ = tab[p[i + 2] & 63];
	}
	if (i < len) {
		*out++ = tab[p[i] >> 2];
		if (i + 1 < len) {
			*out++ = tab[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			*out++ = tab[(p[i + 1] & 15) << 2];
		} else {
			*out++ = tab[(p[i] & 3) << 4];
			*out++ = '=';
		}
		*out++ = '=';
	}
	*out = 0;
}
