/*
 * Pure parsers for IMAP server replies (RFC 3501 / 9051): status
 * responses with their response codes, APPENDUID (RFC 4315), capability
 * lists, numbers.  Server text is untrusted: every field is bounded and a
 * reply that does not fit the grammar is rejected, not guessed at.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

static const struct {
	const char		*word;
	enum imap_status	 status;
} status_words[] = {
	{ "OK", IMAP_OK }, { "NO", IMAP_NO }, { "BAD", IMAP_BAD },
	{ "BYE", IMAP_BYE }, { "PREAUTH", IMAP_PREAUTH },
};

/* s is what follows "TAG " or "* ": "OK [CODE args] text". */
bool
imap_parse_status(const char *s, struct imap_reply *r)
{
	const char	*p, *q;
	size_t		 i, n;

	memset(r, 0, sizeof *r);
	r->status = IMAP_UNKNOWN;
	r->text = "";
	r->code_arg = "";
	for (p = s; isalpha((unsigned char)*p); p++)
		;
	n = (size_t)(p - s);
	for (i = 0; i < sizeof status_words / sizeof status_words[0]; i++)
		if (strlen(status_words[i].word) == n &&
		    strncasecmp(s, status_words[i].word, n) == 0)
			r->status = status_words[i].status;
	if (r->status == IMAP_UNKNOWN || (*p != ' ' && *p != '\0'))
		return false;
	while (*p == ' ')
		p++;
	if (*p == '[') {
		p++;
		for (q = p; *q != '\0' && *q != ']' && *q != ' '; q++)
			;
		n = (size_t)(q - p);
		if (n == 0 || n >= sizeof r->code)
			return false;
		for (i = 0; i < n; i++)
			r->code[i] = (char)toupper((unsigned char)p[i]);
		r->code[n] = '\0';
		p = q;
		if (*p == ' ')
			p++;
		for (q = p; *q != '\0' && *q != ']'; q++)
			;
		if (*q != ']')
			return false;
		/* Into s, whole: a long uid-set (APPENDUID of a batch whose
		 * UIDs are not contiguous) must not be cut. */
		r->code_arg = p;
		r->code_arglen = (size_t)(q - p);
		p = q + 1;
		while (*p == ' ')
			p++;
	}
	r->text = p;
	return true;
}

bool
imap_parse_number(const char *p, size_t len, uint64_t *v)
{
	uint64_t	 n = 0;
	size_t		 i;

	if (len == 0 || len > 19)
		return false;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)p[i]))
			return false;
		n = n * 10 + (uint64_t)(p[i] - '0');
	}
	*v = n;
	return true;
}

/* "uidvalidity uid" or "uidvalidity first:last"; the first UID is kept. */
bool
imap_parse_appenduid(const char *arg, uint32_t *uidvalidity, uint32_t *uid)
{
	const char	*p = arg, *q;
	uint64_t	 v, u;

	for (q = p; isdigit((unsigned char)*q); q++)
		;
	if (*q != ' ' || !imap_parse_number(p, (size_t)(q - p), &v) ||
	    v == 0 || v > UINT32_MAX)
		return false;
	p = q + 1;
	for (q = p; isdigit((unsigned char)*q); q++)
		;
	if ((*q != '\0' && *q != ':' && *q != ',') ||
	    !imap_parse_number(p, (size_t)(q - p), &u) || u == 0 ||
	    u > UINT32_MAX)
		return false;
	*uidvalidity = (uint32_t)v;
	*uid = (uint32_t)u;
	return true;
}

/*
 * The uid-set of an APPENDUID after a MULTIAPPEND ("4:6,9"), expanded in
 * order into uids[max].  Returns how many, or 0 if it does not parse or
 * holds more than max.  RFC 4315 lists the UIDs in the order appended.
 */
size_t
imap_parse_uidset(const char *set, uint32_t *uids, size_t max)
{
	const char	*p = set, *q;
	uint64_t	 a, b, u;
	size_t		 n = 0;

	for (;;) {
		for (q = p; isdigit((unsigned char)*q); q++)
			;
		if (!imap_parse_number(p, (size_t)(q - p), &a) || a == 0 ||
		    a > UINT32_MAX)
			return 0;
		b = a;
		if (*q == ':') {
			p = q + 1;
			for (q = p; isdigit((unsigned char)*q); q++)
				;
			if (!imap_parse_number(p, (size_t)(q - p), &b) ||
			    b == 0 || b > UINT32_MAX)
				return 0;
		}
		if (b < a) {
			uint64_t t = a;

			a = b;
			b = t;
		}
		if (b - a >= max - n)
			return 0;
		for (u = a; u <= b; u++)
			uids[n++] = (uint32_t)u;
		if (*q == '\0')
			return n;
		if (*q != ',')
			return 0;
		p = q + 1;
	}
}

/* Is name one of the space-separated words of caps (case-insensitive)? */
bool
imap_has_cap(const char *caps, const char *name)
{
	size_t	 n = strlen(name);
	const char *p = caps;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (strncasecmp(p, name, n) == 0 &&
		    (p[n] == ' ' || p[n] == '\0' || p[n] == ']'))
			return true;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	return false;
}

char *
imap_quote(const char *s)
{
	char	*q, *o;

	o = q = xmalloc(strlen(s) * 2 + 3);
	*o++ = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		/* 8-bit names need modified UTF-7 (RFC 3501 5.1.3). */
		if (c < 0x20 || c >= 0x7f) {
			free(q);
			return NULL;
		}
		if (c == '"' || c == '\\')
			*o++ = '\\';
		*o++ = (char)c;
	}
	*o++ = '"';
	*o = '\0';
	return q;
}

/* ---- mailbox names: UTF-8 or modified UTF-7 (RFC 3501 5.1.3) ---- */

static const char mb64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* A control character: C0, DEL or C1 (U+0080-U+009F). */
static bool
cp_control(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/* UTF-8 into code points, strictly: no overlong form, no surrogate, none
 * above U+10FFFF.  cps has room for strlen(s). */
static bool
utf8_decode(const char *s, uint32_t *cps, size_t *n)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t	 cp, min;
	int		 more, i;

	*n = 0;
	while (*p != '\0') {
		if (*p < 0x80) {
			cps[(*n)++] = *p++;
			continue;
		}
		if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			more = 1;
			min = 0x80;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			more = 2;
			min = 0x800;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			more = 3;
			min = 0x10000;
		} else
			return false;
		for (i = 1; i <= more; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		cps[(*n)++] = cp;
		p += more + 1;
	}
	return true;
}

/*
 * Modified UTF-7 into code points: "&-" is "&", "&...-" modified base64 of
 * UTF-16 with no padding bits set and no character left over, no printable
 * ASCII inside (it must stand for itself), surrogates in pairs.  Adjacent
 * shifts ("&AOQ-&AOQ-") pass here; the round trip in imap_mailbox_encode
 * refuses them, as Dovecot does.  cps has room for strlen(s).
 */
static bool
mutf7_decode(const char *s, uint32_t *cps, size_t *n)
{
	const char	*p = s, *v;
	uint32_t	 bits, unit, high;
	int		 nbits;
	bool		 any;

	*n = 0;
	while (*p != '\0') {
		if (*p != '&') {
			cps[(*n)++] = (unsigned char)*p++;
			continue;
		}
		if (*++p == '-') {
			cps[(*n)++] = '&';
			p++;
			continue;
		}
		bits = 0;
		nbits = 0;
		high = 0;
		any = false;
		for (; *p != '-'; p++) {
			if (*p == '\0' || (v = strchr(mb64, *p)) == NULL)
				return false;
			bits = (bits << 6 | (uint32_t)(v - mb64)) & 0x3fffff;
			if ((nbits += 6) < 16)
				continue;
			nbits -= 16;
			unit = bits >> nbits & 0xffff;
			any = true;
			if (high != 0) {
				if (unit < 0xdc00 || unit > 0xdfff)
					return false;
				cps[(*n)++] = 0x10000 + ((high - 0xd800) << 10) +
				    (unit - 0xdc00);
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff)
				high = unit;
			else if ((unit >= 0xdc00 && unit <= 0xdfff) ||
			    (unit >= 0x20 && unit <= 0x7e))
				return false;
			else
				cps[(*n)++] = unit;
		}
		p++;
		if (!any || high != 0 || nbits >= 6 ||
		    (bits & ((1U << nbits) - 1)) != 0)
			return false;
	}
	return true;
}

/* Code points into modified UTF-7: printable ASCII stands for itself, "&"
 * is "&-", every other run is "&" modified base64 of its UTF-16 "-". */
static char *
mutf7_encode(const uint32_t *cps, size_t n)
{
	char		*out = xmalloc(8 * n + 1), *o = out;
	uint32_t	 bits = 0, u[2];
	size_t		 i, k, nu;
	int		 nbits = 0;
	bool		 shifted = false;

	for (i = 0; i < n; i++) {
		if (cps[i] >= 0x20 && cps[i] <= 0x7e) {
			if (shifted) {
				if (nbits > 0)
					*o++ = mb64[bits << (6 - nbits) & 0x3f];
				*o++ = '-';
				shifted = false;
				nbits = 0;
			}
			*o++ = (char)cps[i];
			if (cps[i] == '&')
				*o++ = '-';
			continue;
		}
		if (!shifted) {
			*o++ = '&';
			shifted = true;
			bits = 0;
		}
		nu = 1;
		u[0] = cps[i];
		if (cps[i] >= 0x10000) {
			u[0] = 0xd800 + ((cps[i] - 0x10000) >> 10);
			u[1] = 0xdc00 + ((cps[i] - 0x10000) & 0x3ff);
			nu = 2;
		}
		for (k = 0; k < nu; k++) {
			bits = (bits << 16 | u[k]) & 0x3fffff;
			for (nbits += 16; nbits >= 6; nbits -= 6)
				*o++ = mb64[bits >> (nbits - 6) & 0x3f];
		}
	}
	if (shifted) {
		if (nbits > 0)
			*o++ = mb64[bits << (6 - nbits) & 0x3f];
		*o++ = '-';
	}
	*o = '\0';
	return out;
}

/*
 * The configured name in UTF-8 or modified UTF-7 into *wire (malloc'd):
 * NULL, or why it cannot be a mailbox name.
 */
static const char *
mailbox_wire(const char *name, char **wire)
{
	size_t		 len = strlen(name), n, i;
	uint32_t	*cps = xcalloc(len + 1, sizeof *cps);
	const unsigned char *p;
	bool		 ascii = true;

	*wire = NULL;
	for (p = (const unsigned char *)name; *p != '\0'; p++)
		ascii = ascii && *p < 0x80;
	if (ascii && strchr(name, '&') != NULL) {
		/* ASCII: modified UTF-7 already, passed through as written,
		 * if it is exactly what encoding its meaning would give. */
		if (!mutf7_decode(name, cps, &n) ||
		    strcmp(*wire = mutf7_encode(cps, n), name) != 0) {
			free(*wire);
			*wire = NULL;
			free(cps);
			return "is not valid modified UTF-7 (RFC 3501 5.1.3): an "
			    "ASCII name is read as modified UTF-7, so write a "
			    "literal \"&\" as \"&-\" (or write the name in UTF-8)";
		}
	} else if (!utf8_decode(name, cps, &n)) {
		free(cps);
		return "is not valid UTF-8";
	} else
		*wire = mutf7_encode(cps, n);
	for (i = 0; i < n && !cp_control(cps[i]); i++)
		;
	free(cps);
	if (i == n)
		return NULL;
	free(*wire);
	*wire = NULL;
	return "holds a control character";
}

/*
 * A mailbox name as configured, made ready for the wire (RFC 3501 5.1.3):
 * NULL with *wire (malloc'd), or why it is no name to use, as a phrase
 * after the name ("is empty").
 *
 * A name with any byte above 0x7f is UTF-8 and is encoded here: "Entwürfe"
 * is "Entw&APw-rfe" on the wire, and an "&" in it is the letter ("&-").  A
 * name in plain ASCII is sent as written, so a name already in modified
 * UTF-7 keeps working ("Entw&APw-rfe" stays that mailbox), and an "&" in
 * it must begin valid modified UTF-7 ("R&-D" for "R&D").  The rules are
 * Dovecot's and the RFC's: not empty, no control character, at most
 * IMAP_MAILBOX_MAX bytes as sent, no hierarchy separator at the end
 * ("INBOX.", which Dovecot takes as INBOX and then cannot STATUS), no "~"
 * at the start (Dovecot refuses it; UW-IMAP reads a home folder).
 */
const char *
imap_mailbox_encode(const char *name, char **wire)
{
	const char	*why;
	size_t		 len = strlen(name), i;

	*wire = NULL;
	if (len == 0)
		return "is empty";
	for (i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return "holds a control character";
	if (name[0] == '~')
		return "begins with \"~\" (servers read it as a home folder; "
		    "Dovecot refuses it)";
	if (name[len - 1] == '.' || name[len - 1] == '/')
		return "ends with a hierarchy separator (\".\" or \"/\")";
	if ((why = mailbox_wire(name, wire)) != NULL)
		return why;
	if (strlen(*wire) > IMAP_MAILBOX_MAX) {
		free(*wire);
		*wire = NULL;
		return "is longer than 255 bytes (as sent, in modified UTF-7)";
	}
	return NULL;
}

const char *
imap_mailbox_check(const char *name)
{
	const char	*why;
	char		*wire;

	why = imap_mailbox_encode(name, &wire);
	free(wire);
	return why;
}

char *
imap_quote_mailbox(const char *name, const char **why)
{
	char	*wire, *q;

	if ((*why = imap_mailbox_encode(name, &wire)) != NULL)
		return NULL;
	q = imap_quote(wire);
	free(wire);
	if (q == NULL)
		*why = "cannot be quoted";
	return q;
}

/* Skip one IMAP value: atom, number, quoted, literal, NIL or a list. */
static const char *
skip_value(const char *p, const char *end)
{
	int	 depth = 0;

	do {
		if (p >= end)
			return NULL;
		if (*p == '(') {
			depth++;
			p++;
		} else if (*p == ')') {
			if (depth == 0)
				return NULL;
			depth--;
			p++;
		} else if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (p >= end)
				return NULL;
			p++;
		} else if (*p == '{') {
			uint64_t n;
			const char *q;

			for (q = ++p; q < end && isdigit((unsigned char)*q); q++)
				;
			if (q + 3 > end || q[0] != '}' || q[1] != '\r' ||
			    q[2] != '\n' || !imap_parse_number(p, (size_t)(q - p),
			    &n) || n > (uint64_t)(end - (q + 3)))
				return NULL;
			p = q + 3 + n;
		} else if (*p == ' ') {
			p++;
			continue;
		} else {
			while (p < end && *p != ' ' && *p != '(' && *p != ')')
				p++;
		}
		while (depth > 0 && p < end && *p == ' ')
			p++;
	} while (depth > 0);
	return p;
}

/* A number value at p; the end of it, or NULL. */
static const char *
fetch_number(const char *p, const char *end, uint64_t *v)
{
	const char	*q;

	for (q = p; q < end && isdigit((unsigned char)*q); q++)
		;
	if (!imap_parse_number(p, (size_t)(q - p), v))
		return NULL;
	return q;
}

/*
 * The value of a BODY[...] item at p into f: a literal (or literal8), a
 * quoted string without escapes, or NIL (no body); after it, or NULL.
 */
static const char *
fetch_body(const char *p, const char *end, struct imap_fetch *f)
{
	const char	*r;
	uint64_t	 v;

	if (p >= end)
		return NULL;
	/* literal8 (RFC 3516), for a message with NUL bytes */
	if (*p == '~' && p + 1 < end && p[1] == '{')
		p++;
	if (*p == '{') {
		for (r = ++p; r < end && isdigit((unsigned char)*r); r++)
			;
		if (r + 3 > end || r[0] != '}' || r[1] != '\r' ||
		    r[2] != '\n' || !imap_parse_number(p, (size_t)(r - p), &v) ||
		    v > (uint64_t)(end - (r + 3)))
			return NULL;
		f->body = r + 3;
		f->bodylen = (size_t)v;
		p = r + 3 + v;
	} else if (*p == '"') {
		/*
		 * A quoted body is taken as it stands; one with an escape
		 * would need decoding: refused.
		 */
		for (r = ++p; r < end && *r != '"'; r++)
			if (*r == '\\' || *r == '\r' || *r == '\n')
				return NULL;
		if (r >= end)
			return NULL;
		f->body = p;
		f->bodylen = (size_t)(r - p);
		p = r + 1;
	} else if ((p = skip_value(p, end)) == NULL)
		return NULL;
	f->have_body = f->body != NULL;
	return p;
}

/*
 * "* n FETCH (UID u RFC822.SIZE s BODY[...]<0> {len}CRLF bytes)" as read with
 * its literals inline.  Items may come in any order; unknown ones are
 * skipped.  body points into resp.
 */
bool
imap_parse_fetch(const char *resp, size_t len, struct imap_fetch *f)
{
	const char	*p = resp, *end = resp + len, *q;
	uint64_t	 v;

	memset(f, 0, sizeof *f);
	if (len < 2 || p[0] != '*' || p[1] != ' ')
		return false;
	p += 2;
	if ((p = fetch_number(p, end, &v)) == NULL || v == 0)
		return false;
	if (end - p < 8 || strncasecmp(p, " FETCH (", 8) != 0)
		return false;
	p += 8;
	for (;;) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			return false;
		if (*p == ')')
			break;
		for (q = p; q < end && *q != ' ' && *q != '(' && *q != ')'; q++)
			if (*q == '[')	/* BODY[HEADER.FIELDS (A B)]<0> */
				while (q + 1 < end && *q != ']')
					q++;
		if (q >= end || *q != ' ')
			return false;
		if ((size_t)(q - p) == 3 && strncasecmp(p, "UID", 3) == 0) {
			if ((p = fetch_number(q + 1, end, &v)) == NULL ||
			    v == 0 || v > UINT32_MAX)
				return false;
			f->uid = (uint32_t)v;
		} else if ((size_t)(q - p) == 11 &&
		    strncasecmp(p, "RFC822.SIZE", 11) == 0) {
			if ((p = fetch_number(q + 1, end, &f->size)) == NULL)
				return false;
			f->have_size = true;
		} else if (((size_t)(q - p) >= 6 &&
		    strncasecmp(p, "BODY[]", 6) == 0) || ((size_t)(q - p) >=
		    19 && strncasecmp(p, "BODY[HEADER.FIELDS ", 19) == 0)) {
			/* BODY[], or BODY[HEADER.FIELDS (MESSAGE-ID)] for the
			 * first contact scan: the one section asked for. */
			if ((p = fetch_body(q + 1, end, f)) == NULL)
				return false;
		} else if ((p = skip_value(q + 1, end)) == NULL)
			return false;
	}
	return true;
}

/* A quoted string at *p into out (escapes undone); *p moves past it. */
static bool
parse_quoted(const char **p, char *out, size_t outsz)
{
	const char	*s = *p;
	size_t		 o = 0;

	if (*s++ != '"')
		return false;
	for (; *s != '"'; s++) {
		if (*s == '\0' || *s == '\r' || *s == '\n')
			return false;
		if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
			s++;
		if (o + 1 >= outsz)
			return false;
		out[o++] = *s;
	}
	out[o] = '\0';
	*p = s + 1;
	return true;
}

/*
 * The first personal namespace of a NAMESPACE response (RFC 2342), the
 * text after "* NAMESPACE ": `(("INBOX." ".")) NIL NIL` gives prefix
 * "INBOX." and separator '.' (0 for NIL).  False if there is no personal
 * namespace or the reply cannot be read.
 */
bool
imap_parse_namespace(const char *s, char *prefix, size_t psz, char *sep)
{
	char	 d[8];

	*sep = '\0';
	prefix[0] = '\0';
	s += strspn(s, " ");
	if (strncmp(s, "((", 2) != 0)
		return false;
	s += 2;
	if (!parse_quoted(&s, prefix, psz) || *s++ != ' ')
		return false;
	if (strncasecmp(s, "NIL", 3) == 0)
		s += 3;
	else if (!parse_quoted(&s, d, sizeof d) || strlen(d) != 1)
		return false;
	else
		*sep = d[0];
	/* Extensions may follow the pair before its ")". */
	return *s == ')' || *s == ' ';
}
