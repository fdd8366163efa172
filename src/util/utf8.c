#include "util/utf8.h"

size_t sk_utf8_seq(const char *s, size_t len)
{
	unsigned char c = (unsigned char)s[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c < 0xe0 ? 2 : c >= 0xe0 && c < 0xf0 ? 3 :
		   c >= 0xf0 && c < 0xf5 ? 4 : 0;
	unsigned cp = n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;

	if (!n || n > len)
		return 0;
	for (size_t k = 1; k < n; k++) {
		if (((unsigned char)s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | ((unsigned char)s[k] & 0x3f);
	}
	if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		return 0;
	if (n == 4 && (cp < 0x10000 || cp > 0x10ffff))
		return 0;
	return n;
}
