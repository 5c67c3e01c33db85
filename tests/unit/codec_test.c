// link: bridge/codec.c
/*
 * bridge/codec.c: hex digits and base64 as the web form, the routing
 * headers and Gmail's replies read them.  Each case: the bytes out, where
 * decoding stopped, whether a lone letter was left, and the bound kept.
 */
#include "bridge.h"
#include "unit.h"

static void
test_hex(void)
{
	static const char digits[] = "0123456789abcdefABCDEF";
	unsigned int	 c;
	int		 want;
	const char	*at;

	for (c = 0; c < 256; c++) {
		at = c != 0 ? strchr(digits, (int)c) : NULL;
		want = at == NULL ? -1 : at - digits < 16 ? (int)(at - digits) :
		    (int)(at - digits) - 6;
		CHECK(hex_digit((unsigned char)c) == want,
		    "hex_digit(0x%02x) = %d, want %d", c,
		    hex_digit((unsigned char)c), want);
	}
}

static const struct {
	const char	*in;
	bool		 url;
	size_t		 outsz;
	long		 want;		/* length, or -1 */
	const char	*bytes;		/* the first `want` bytes out */
	size_t		 used;
	bool		 lone;
} b64_cases[] = {
	{ "", false, 8, 0, "", 0, false },
	{ "YWJj", false, 8, 3, "abc", 4, false },
	{ "YWI=", false, 8, 2, "ab", 3, false },
	{ "YQ==", false, 8, 1, "a", 2, false },
	{ "YQ", false, 8, 1, "a", 2, false },		/* no padding */
	{ "YWJjZ", false, 8, 3, "abc", 5, true },	/* a lone letter */
	{ "YQ==YWJj", false, 8, 1, "a", 2, false },	/* stops at "=" */
	{ "dXNlcjp0b2s=", false, 16, 8, "user:tok", 11, false },
	{ "+/+/", false, 8, 3, "\xfb\xff\xbf", 4, false },
	{ "-_-_", false, 8, -1, NULL, 0, false },	/* url letters */
	{ "-_-_", true, 8, 3, "\xfb\xff\xbf", 4, false },
	{ "+/+/", true, 8, 3, "\xfb\xff\xbf", 4, false },	/* both */
	{ "YW Jj", false, 8, -1, NULL, 0, false },	/* a blank */
	{ "YW\x80Jj", false, 8, -1, NULL, 0, false },
	{ "YWJj", false, 3, 3, "abc", 4, false },	/* exactly room */
	{ "YWJj", false, 2, -1, NULL, 0, false },	/* no room */
	{ "YWJj", false, 0, -1, NULL, 0, false },
	{ "AAAA", false, 8, 3, "\0\0\0", 4, false },	/* NUL bytes out */
};

static void
test_b64(void)
{
	unsigned char	 out[17];
	struct b64_end	 e;
	size_t		 i;
	long		 n;

	for (i = 0; i < NELEM(b64_cases); i++) {
		memset(out, 0xa5, sizeof out);
		e.used = 999;
		e.lone = false;
		n = b64_decode(b64_cases[i].in, strlen(b64_cases[i].in),
		    b64_cases[i].url, out, b64_cases[i].outsz, &e);
		CHECK(n == b64_cases[i].want, "case %zu %s: %ld, want %ld", i,
		    b64_cases[i].in, n, b64_cases[i].want);
		CHECK(out[b64_cases[i].outsz] == 0xa5, "case %zu: wrote past "
		    "the room given", i);
		if (n < 0 || b64_cases[i].want < 0)
			continue;
		CHECK_MEM((const char *)out, (size_t)n, b64_cases[i].bytes,
		    (size_t)b64_cases[i].want, b64_cases[i].in);
		CHECK(e.used == b64_cases[i].used, "case %zu: used %zu, want "
		    "%zu", i, e.used, b64_cases[i].used);
		CHECK(e.lone == b64_cases[i].lone, "case %zu: lone %d", i,
		    (int)e.lone);
	}
}

/* Only the n bytes given are read: a letter after them does not count. */
static void
test_b64_bounded(void)
{
	unsigned char	 out[8];
	struct b64_end	 e;
	long		 n;

	n = b64_decode("YWJjZGVm", 4, false, out, sizeof out, &e);
	CHECK(n == 3 && e.used == 4 && !e.lone && memcmp(out, "abc", 3) == 0,
	    "the first 4 of 8 letters: %ld, used %zu", n, e.used);
}

int
main(void)
{
	test_hex();
	test_b64();
	test_b64_bounded();
	return UNIT_END();
}
