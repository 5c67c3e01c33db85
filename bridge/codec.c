/*
 * The byte codecs that more than one parser reads: hex digits (a form's
 * %XX, a Q encoded-word's =XX) and base64 (RFC 4648: an Authorization
 * header's Basic, a B encoded-word, a Gmail message's raw base64url).
 * Pure and bounded; each caller decides how strict to be about padding,
 * since a browser's header, a sender's header and Google's JSON differ.
 */
#include <stdbool.h>
#include <stddef.h>

#include "bridge.h"

int
hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
b64_digit(unsigned char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || (url && c == '-'))
		return 62;
	if (c == '/' || (url && c == '_'))
		return 63;
	return -1;
}

long
b64_decode(const char *p, size_t n, bool url, unsigned char *out,
    size_t outsz, struct b64_end *end)
{
	unsigned long	 acc = 0;
	size_t		 i, o = 0;
	unsigned int	 bits = 0;
	int		 v;

	for (i = 0; i < n && p[i] != '='; i++) {
		if ((v = b64_digit((unsigned char)p[i], url)) < 0)
			return -1;
		acc = (acc << 6 | (unsigned long)v) & 0xffffff;
		if ((bits += 6) >= 8) {
			bits -= 8;
			if (o >= outsz)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	end->used = i;
	/* Six bits left: one letter of a group alone, which no byte makes. */
	end->lone = bits >= 6;
	return (long)o;
}
