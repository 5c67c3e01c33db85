// link: bridge/imap_parse.c
// max_len: 4096
/*
 * The IMAP reply parsers.  Input: byte 0 is the room given to
 * imap_parse_uidset (0-255 UIDs); the rest is server text.
 *
 *  - imap_parse_fetch on exactly the bytes, no NUL after them (a malloc
 *    of exactly that size, as imap.c holds a response with its literals
 *    inline): never reads outside, and a body it returns lies inside;
 *  - a FETCH response built here from the input (UID, size, body as a
 *    literal or quoted, items in any order, unknown items between) is
 *    parsed back to exactly what went in;
 *  - the C-string parsers (imap_parse_status, imap_parse_appenduid,
 *    imap_parse_uidset, imap_has_cap, imap_quote) on a string of exactly
 *    len + 1 bytes: bounded fields, results that agree with references.
 */
#include <ctype.h>
#include <strings.h>

#include "bridge.h"
#include "fuzz.h"

static void
check_fetch(const char *data, size_t len)
{
	struct imap_fetch f;
	char	*buf = fuzz_dup(data, len);

	if (imap_parse_fetch(buf, len, &f)) {
		FUZZ_CHECK(len >= 2 && buf[0] == '*', "accepted without \"* \"");
		FUZZ_CHECK(f.have_body == (f.body != NULL), "have_body %d, "
		    "body %p", f.have_body, (const void *)f.body);
		if (f.body != NULL)
			FUZZ_CHECK(f.body >= buf && f.body <= buf + len &&
			    f.bodylen <= (size_t)(buf + len - f.body),
			    "body [%td, +%zu) outside the %zu bytes",
			    f.body - buf, f.bodylen, len);
	}
	free(buf);
}

/* A well-formed FETCH response from the input; it must parse back. */
static void
built_fetch(const uint8_t *d, size_t len)
{
	static const char *const junk[] = { "FLAGS (\\Seen $Junk)",
		"INTERNALDATE \"25-Nov-2026 10:20:30 +0100\"",
		"BODY[TEXT] {7}\r\nDate:\r\n",
		"ENVELOPE (NIL \"s\" ((\"a\" NIL \"b\" \"c\")) NIL)",
		"MODSEQ (12345)", "X-GM-LABELS (\"\\\\Inbox\" {3}\r\n)x))" };
	struct imap_fetch f;
	uint32_t uid;
	uint64_t size;
	char	*resp, *p, *body;
	size_t	 blen, cap, i;
	unsigned order, quoted;
	bool	 ok;

	if (len < 13)
		return;
	memcpy(&uid, d, 4);
	memcpy(&size, d + 4, 8);
	uid = uid == 0 ? 1 : uid;
	size %= 10000000000000000000ULL;	/* 19 digits at most */
	order = d[12] % 6;
	body = (char *)d + 13;
	blen = len - 13;
	/* A quoted body may not hold a quote, backslash, CR or LF. */
	quoted = (d[12] & 0x80) && memchr(body, '"', blen) == NULL &&
	    memchr(body, '\\', blen) == NULL && memchr(body, '\r', blen) ==
	    NULL && memchr(body, '\n', blen) == NULL;

	cap = blen + 512;
	resp = p = malloc(cap);
	p += sprintf(p, "* %u FETCH (", 1 + d[0] % 200);
	for (i = 0; i < 3; i++) {
		unsigned item = (order + i * (1 + (order & 1))) % 3;

		if (d[1] & (1u << i))
			p += sprintf(p, "%s ", junk[(d[2] + i) % 6]);
		if (item == 0)
			p += sprintf(p, "UID %u ", uid);
		else if (item == 1)
			p += sprintf(p, "RFC822.SIZE %llu ",
			    (unsigned long long)size);
		else {
			p += sprintf(p, quoted ? "BODY[]<0> \"" :
			    "BODY[]<0> {%zu}\r\n", blen);
			memcpy(p, body, blen);
			p += blen;
			p += sprintf(p, quoted ? "\" " : " ");
		}
	}
	p[-1] = ')';
	/* Exact size again: nothing after the closing parenthesis. */
	blen = (size_t)(p - resp);
	p = fuzz_dup(resp, blen);
	ok = imap_parse_fetch(p, blen, &f);
	if (!ok || f.uid != uid || !f.have_size || f.size != size ||
	    !f.have_body || f.bodylen != len - 13 ||
	    memcmp(f.body, d + 13, len - 13) != 0) {
		fuzz_dump("response", p, blen);
		FUZZ_CHECK(0, "parsed %d: uid %u size %llu body %d/%zu", ok,
		    f.uid, (unsigned long long)f.size, f.have_body, f.bodylen);
	}
	free(p);
	free(resp);
}

static void
check_status(const char *s, size_t len)
{
	struct imap_reply r;
	size_t	 i;

	if (!imap_parse_status(s, &r))
		return;
	FUZZ_CHECK(r.status != IMAP_UNKNOWN, "accepted, status unknown");
	FUZZ_CHECK(r.text >= s && r.text <= s + len, "text outside the line");
	FUZZ_CHECK(memchr(r.code, '\0', sizeof r.code) != NULL,
	    "code not terminated");
	FUZZ_CHECK(r.code_arglen == 0 || (r.code_arg >= s &&
	    r.code_arg + r.code_arglen <= s + len), "code argument outside "
	    "the line");
	for (i = 0; r.code[i] != '\0'; i++)
		FUZZ_CHECK(!islower((unsigned char)r.code[i]) &&
		    r.code[i] != ' ' && r.code[i] != ']', "code \"%s\"",
		    r.code);
	if (r.code_arglen > 0)
		FUZZ_CHECK(memchr(r.code_arg, ']', r.code_arglen) == NULL,
		    "code argument runs past its \"]\"");
}

/* The uid-set grammar: sequence of n or n:m, comma-separated, each number
 * 1..2^32-1 in at most 19 digits; expanded in order, at most max UIDs. */
static size_t
ref_uidset(const char *s, uint32_t *uids, size_t max)
{
	size_t	 n = 0, k;
	uint64_t a, b, u, lo, hi;
	char	*e;

	for (;;) {
		k = strspn(s, "0123456789");
		if (k == 0 || k > 19)
			return 0;
		a = strtoull(s, &e, 10);
		s += k;
		b = a;
		if (*s == ':') {
			s++;
			k = strspn(s, "0123456789");
			if (k == 0 || k > 19)
				return 0;
			b = strtoull(s, &e, 10);
			s += k;
		}
		if (a == 0 || b == 0 || a > UINT32_MAX || b > UINT32_MAX)
			return 0;
		lo = a < b ? a : b;
		hi = a < b ? b : a;
		if (hi - lo + 1 > max - n)
			return 0;
		for (u = lo; u <= hi; u++)
			uids[n++] = (uint32_t)u;
		if (*s == '\0')
			return n;
		if (*s++ != ',')
			return 0;
	}
}

/* "uidvalidity uid[...]": two numbers 1..2^32-1 of 1-19 digits, one
 * space between, then the end, ':' or ','. */
static bool
ref_appenduid(const char *s, uint32_t *v, uint32_t *u)
{
	size_t	 k = strspn(s, "0123456789"), k2;
	uint64_t a, b;

	if (k == 0 || k > 19 || s[k] != ' ')
		return false;
	k2 = strspn(s + k + 1, "0123456789");
	if (k2 == 0 || k2 > 19 || strchr(":,", s[k + 1 + k2]) == NULL)
		return false;	/* strchr finds the NUL too */
	a = strtoull(s, NULL, 10);
	b = strtoull(s + k + 1, NULL, 10);
	if (a == 0 || b == 0 || a > UINT32_MAX || b > UINT32_MAX)
		return false;
	*v = (uint32_t)a;
	*u = (uint32_t)b;
	return true;
}

static void
check_uids(const char *s, size_t max)
{
	uint32_t want[256], *got, v, u, rv, ru;
	size_t	 n, rn;
	bool	 ok, rok;

	/* Exactly max slots: ASan sees a write past them. */
	got = malloc(max * sizeof *got);
	n = imap_parse_uidset(s, got, max);
	FUZZ_CHECK(n <= max, "%zu UIDs in room for %zu", n, max);
	rn = ref_uidset(s, want, max);
	FUZZ_CHECK(n == rn && (n == 0 || memcmp(got, want, n * sizeof *got)
	    == 0), "imap_parse_uidset(\"%s\", %zu): %zu UIDs, reference %zu",
	    s, max, n, rn);
	free(got);

	ok = imap_parse_appenduid(s, &v, &u);
	rok = ref_appenduid(s, &rv, &ru);
	FUZZ_CHECK(ok == rok && (!ok || (v == rv && u == ru)),
	    "imap_parse_appenduid(\"%s\"): %d %u %u, reference %d %u %u", s,
	    ok, ok ? v : 0, ok ? u : 0, rok, rok ? rv : 0, rok ? ru : 0);
}

/* Word starts in caps, as the capability list is read. */
static bool
ref_has_cap(const char *caps, const char *name)
{
	size_t	 n = strlen(name), i;

	for (i = 0; caps[i] != '\0'; i++)
		if (caps[i] != ' ' && (i == 0 || caps[i - 1] == ' ') &&
		    strncasecmp(caps + i, name, n) == 0 &&
		    (caps[i + n] == ' ' || caps[i + n] == '\0' ||
		    caps[i + n] == ']'))
			return true;
	return false;
}

static void
check_caps_quote(const char *s, size_t len)
{
	const char *nl = strchr(s, '\n');
	char	*caps, *name, *q;
	size_t	 i, o;

	if (nl != NULL) {
		caps = fuzz_str(s, (size_t)(nl - s));
		name = fuzz_str(nl + 1, strlen(nl + 1));
		/* Names are constants such as "LITERAL+": no space, not "". */
		if (name[0] != '\0' && strchr(name, ' ') == NULL)
			FUZZ_CHECK(imap_has_cap(caps, name) ==
			    ref_has_cap(caps, name), "imap_has_cap(\"%s\", "
			    "\"%s\")", caps, name);
		free(name);
		free(caps);
	}

	q = imap_quote(s);
	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			break;
	FUZZ_CHECK((q != NULL) == (s[i] == '\0'), "imap_quote(\"%s\") %s",
	    s, q != NULL ? "quoted" : "refused");
	if (q == NULL)
		return;
	FUZZ_CHECK(q[0] == '"' && strlen(q) >= 2 && q[strlen(q) - 1] == '"',
	    "quoted \"%s\"", q);
	for (i = 1, o = 0; i + 1 < strlen(q); i++, o++) {
		if (q[i] == '\\')
			i++;
		else
			FUZZ_CHECK(q[i] != '"', "unescaped quote in %s", q);
		FUZZ_CHECK(q[i] == s[o], "%s does not quote %s", q, s);
	}
	FUZZ_CHECK(s[o] == '\0', "%s does not quote all of %s", q, s);
	free(q);
	(void)len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	size_t	 max;
	char	*s;

	if (len == 0)
		return 0;
	max = data[0];
	data++;
	len--;

	check_fetch((const char *)data, len);
	built_fetch(data, len);

	s = fuzz_str(data, len);
	check_status(s, strlen(s));
	check_uids(s, max);
	check_caps_quote(s, strlen(s));
	free(s);
	return 0;
}
