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
			p = q + 1;
			if (p >= end)
				return false;
			/* literal8 (RFC 3516), for a message with NUL bytes */
			if (*p == '~' && p + 1 < end && p[1] == '{')
				p++;
			if (*p == '{') {
				const char *r;

				for (r = ++p; r < end &&
				    isdigit((unsigned char)*r); r++)
					;
				if (r + 3 > end || r[0] != '}' ||
				    r[1] != '\r' || r[2] != '\n' ||
				    !imap_parse_number(p, (size_t)(r - p), &v) ||
				    v > (uint64_t)(end - (r + 3)))
					return false;
				f->body = r + 3;
				f->bodylen = (size_t)v;
				p = r + 3 + v;
			} else if (*p == '"') {
				const char *r;

				/*
				 * A quoted body is taken as it stands; one with
				 * an escape would need decoding: refused.
				 */
				for (r = ++p; r < end && *r != '"'; r++)
					if (*r == '\\' || *r == '\r' ||
					    *r == '\n')
						return false;
				if (r >= end)
					return false;
				f->body = p;
				f->bodylen = (size_t)(r - p);
				p = r + 1;
			} else if ((p = skip_value(p, end)) == NULL)
				return false;
			f->have_body = f->body != NULL;
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
