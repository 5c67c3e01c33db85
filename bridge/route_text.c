/*
 * The text of a header's values as routing reads it (route.c): RFC 2047
 * encoded-words decoded to UTF-8, and the addresses of an address list
 * (RFC 5322 3.4).  Pure and bounded: the bytes come from whoever sent
 * the message, so every output has a fixed size, an encoded-word longer
 * than EWORD_MAX bytes is left as it is and an address longer than
 * ROUTE_ADDR_MAX is skipped.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "route.h"

#define EWORD_MAX	1024	/* bytes of an encoded-word's text */

/* ---- RFC 2047 encoded-words ---- */

enum charset { CS_NONE, CS_ASIS, CS_LATIN1, CS_LATIN9, CS_CP1252 };

/* Bytes out, bounded; a character is written whole or not at all. */
struct sink {
	char		*p;
	size_t		 n, max;
};

static void
sink_byte(struct sink *s, unsigned char c)
{
	if (c != '\0' && s->n < s->max)
		s->p[s->n++] = (char)c;
}

static void
sink_cp(struct sink *s, unsigned int cp)
{
	if (cp < 0x80)
		sink_byte(s, (unsigned char)cp);
	else if (cp < 0x800) {
		if (s->n + 2 > s->max)
			return;
		s->p[s->n++] = (char)(0xc0 | cp >> 6);
		s->p[s->n++] = (char)(0x80 | (cp & 0x3f));
	} else {
		if (s->n + 3 > s->max)
			return;
		s->p[s->n++] = (char)(0xe0 | cp >> 12);
		s->p[s->n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s->p[s->n++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* A charset we turn into UTF-8 (or take as it is); its RFC 2231
 * language ("*de") is not part of the name. */
static enum charset
charset_of(const char *name, size_t len)
{
	static const struct {
		const char	*name;
		enum charset	 cs;
	} names[] = {
		{ "utf-8", CS_ASIS }, { "utf8", CS_ASIS },
		{ "us-ascii", CS_ASIS }, { "ascii", CS_ASIS },
		{ "iso-8859-1", CS_LATIN1 }, { "iso8859-1", CS_LATIN1 },
		{ "iso_8859-1", CS_LATIN1 }, { "latin1", CS_LATIN1 },
		{ "iso-8859-15", CS_LATIN9 }, { "iso8859-15", CS_LATIN9 },
		{ "iso_8859-15", CS_LATIN9 }, { "latin-9", CS_LATIN9 },
		{ "latin9", CS_LATIN9 },
		{ "windows-1252", CS_CP1252 }, { "cp1252", CS_CP1252 },
		{ "x-cp1252", CS_CP1252 },
	};
	const char	*star = memchr(name, '*', len);
	size_t		 i;

	if (star != NULL)
		len = (size_t)(star - name);
	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i].name) == len &&
		    strncasecmp(names[i].name, name, len) == 0)
			return names[i].cs;
	return CS_NONE;
}

/* A byte of one of the 8-bit charsets as a code point. */
static unsigned int
charset_cp(enum charset cs, unsigned char c)
{
	/* Windows-1252's 0x80-0x9f; its five holes stay C1 controls, as
	 * the WHATWG encoding standard maps them. */
	static const unsigned short cp1252[32] = {
		0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
		0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f,
		0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
		0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
	};

	if (cs == CS_CP1252 && c >= 0x80 && c < 0xa0)
		return cp1252[c - 0x80];
	if (cs == CS_LATIN9) {
		/* The eight places where ISO-8859-15 differs from -1. */
		switch (c) {
		case 0xa4: return 0x20ac;
		case 0xa6: return 0x0160;
		case 0xa8: return 0x0161;
		case 0xb4: return 0x017d;
		case 0xb8: return 0x017e;
		case 0xbc: return 0x0152;
		case 0xbd: return 0x0153;
		case 0xbe: return 0x0178;
		default: break;
		}
	}
	return c;
}

/* An encoded-word's text (B or Q) into out; its length, or -1 if it is
 * not valid base64 (then the word stays as it is). */
static long
eword_bytes(char enc, const char *t, size_t n, unsigned char *out)
{
	struct b64_end	 e;
	size_t		 i, o = 0;
	int		 h, l;

	/* Padding, or whatever follows it, ends the text. */
	if (enc == 'b' || enc == 'B')
		return b64_decode(t, n, false, out, n, &e);
	for (i = 0; i < n; i++) {
		if (t[i] == '_')
			out[o++] = ' ';
		else if (t[i] == '=' && i + 2 < n &&
		    (h = hex_digit((unsigned char)t[i + 1])) >= 0 &&
		    (l = hex_digit((unsigned char)t[i + 2])) >= 0) {
			out[o++] = (unsigned char)(h << 4 | l);
			i += 2;
		} else
			out[o++] = (unsigned char)t[i];
	}
	return (long)o;
}

/*
 * Is there an encoded-word "=?charset?B|Q?text?=" at in[i]?  Then its
 * parts and the index after it.  The text holds no '?' and no space
 * (RFC 2047 2); a longer one than EWORD_MAX is taken as none.
 */
static bool
eword_at(const char *in, size_t n, size_t i, size_t *cs, size_t *cslen,
    char *enc, size_t *t, size_t *tlen, size_t *after)
{
	size_t	 j = i + 2, k;

	if (i + 1 >= n || in[i] != '=' || in[i + 1] != '?')
		return false;
	while (j < n && in[j] != '?' && j - (i + 2) < 64 &&
	    (unsigned char)in[j] > ' ' && (unsigned char)in[j] < 0x7f)
		j++;
	if (j == i + 2 || j + 2 >= n || in[j] != '?' || in[j + 2] != '?' ||
	    strchr("BbQq", in[j + 1]) == NULL || in[j + 1] == '\0')
		return false;
	*cs = i + 2;
	*cslen = j - (i + 2);
	*enc = in[j + 1];
	for (k = j + 3; k < n && k - (j + 3) <= EWORD_MAX; k++) {
		if (in[k] == '?') {
			if (k + 1 < n && in[k + 1] == '=') {
				*t = j + 3;
				*tlen = k - (j + 3);
				*after = k + 2;
				return *tlen <= EWORD_MAX;
			}
			return false;
		}
		if (in[k] == ' ' || in[k] == '\t')
			return false;
	}
	return false;
}

/*
 * Decode the encoded-words of a value (RFC 2047) into out (a C string),
 * so that a rule sees what a person sees: UTF-8, US-ASCII, ISO-8859-1,
 * ISO-8859-15 and Windows-1252 become UTF-8; a word in another charset,
 * or one that is not valid, stays as it is.  Space between two
 * encoded-words is dropped (RFC 2047 6.2).  NUL bytes are dropped.  We
 * decode them wherever they are, not only where RFC 2047 allows them:
 * a rule tests text, and a sender who hides "YES" in an encoded-word
 * where none may stand gains nothing by it.
 */
size_t
route_decode_words(const char *in, size_t n, char *out, size_t outsz)
{
	unsigned char	 bytes[EWORD_MAX];
	struct sink	 s = { out, 0, outsz - 1 };
	size_t		 i = 0, cs, cslen, t, tlen, after, k, ws_mark = 0;
	enum charset	 c;
	bool		 after_word = false;
	long		 nb;
	char		 enc;

	while (i < n) {
		if (eword_at(in, n, i, &cs, &cslen, &enc, &t, &tlen, &after) &&
		    (c = charset_of(in + cs, cslen)) != CS_NONE &&
		    (nb = eword_bytes(enc, in + t, tlen, bytes)) >= 0) {
			if (after_word)
				s.n = ws_mark;
			for (k = 0; k < (size_t)nb; k++) {
				if (c == CS_ASIS || bytes[k] < 0x80)
					sink_byte(&s, bytes[k]);
				else
					sink_cp(&s, charset_cp(c, bytes[k]));
			}
			after_word = true;
			ws_mark = s.n;
			i = after;
			continue;
		}
		if (in[i] != ' ' && in[i] != '\t')
			after_word = false;
		sink_byte(&s, (unsigned char)in[i]);
		i++;
	}
	out[s.n] = '\0';
	return s.n;
}

/* ---- addresses ---- */

/* One mailbox of an address list as it is read. */
struct seg {
	char		 bare[ROUTE_ADDR_MAX + 1];	/* outside <> */
	size_t		 nbare;
	char		 angle[ROUTE_ADDR_MAX + 1];	/* inside <> */
	size_t		 nangle;
	bool		 too_long, in_angle, have_angle;
};

static void
seg_put(struct seg *sg, char c)
{
	char	*b = sg->in_angle ? sg->angle : sg->bare;
	size_t	*n = sg->in_angle ? &sg->nangle : &sg->nbare;

	if (*n < ROUTE_ADDR_MAX)
		b[(*n)++] = c;
	else
		sg->too_long = true;
}

/* A space between words (one, and none at the start). */
static void
seg_gap(struct seg *sg)
{
	const char	*b = sg->in_angle ? sg->angle : sg->bare;
	size_t		 n = sg->in_angle ? sg->nangle : sg->nbare;

	if (n > 0 && b[n - 1] != ' ')
		seg_put(sg, ' ');
}

/*
 * The addr-spec in a mailbox's words: spaces next to '@' or '.' go
 * (the obsolete "anna @ family.example"), and of what is left the last
 * word with an '@' is taken ("Anna anna@family.example", a display name
 * without the angle brackets).  Into out; false if there is none.
 */
static bool
seg_addr(const char *w, size_t n, char *out)
{
	char	 tmp[ROUTE_ADDR_MAX + 1] = "";
	size_t	 i, o = 0, start, end, at;

	for (i = 0; i < n; i++) {
		if (w[i] == ' ' && ((o > 0 && (tmp[o - 1] == '@' ||
		    tmp[o - 1] == '.' || tmp[o - 1] == ' ')) || (i + 1 < n &&
		    (w[i + 1] == '@' || w[i + 1] == '.'))))
			continue;
		tmp[o++] = w[i];
	}
	while (o > 0 && tmp[o - 1] == ' ')
		o--;
	/* The last word holding an '@': tmp[start, end). */
	for (end = o;; end = start - 1) {
		for (start = end; start > 0 && tmp[start - 1] != ' '; start--)
			;
		if (memchr(tmp + start, '@', end - start) != NULL)
			break;
		if (start == 0)
			return false;
	}
	/* local@domain: the last '@' (a quoted local part may hold one),
	 * something on both sides, nothing unprintable. */
	for (at = end; at > start && tmp[at - 1] != '@'; at--)
		;
	if (at <= start + 1 || at >= end)
		return false;
	for (i = start; i < end; i++)
		if ((unsigned char)tmp[i] < 0x21 || tmp[i] == 0x7f)
			return false;
	memcpy(out, tmp + start, end - start);
	out[end - start] = '\0';
	return true;
}

/* The mailbox read so far, to cb (if *left allows one more); the
 * segment starts again. */
static bool
seg_emit(struct seg *sg, bool (*cb)(void *, const char *), void *arg,
    size_t *left)
{
	char	 addr[ROUTE_ADDR_MAX + 1];
	bool	 ok, stop = false;

	if (sg->have_angle)
		ok = seg_addr(sg->angle, sg->nangle, addr);
	else
		ok = seg_addr(sg->bare, sg->nbare, addr);
	if (ok && !sg->too_long && *left > 0) {
		(*left)--;
		stop = cb(arg, addr);
	}
	memset(sg, 0, sizeof *sg);
	return stop;
}

/*
 * Each addr-spec of an address list (RFC 5322 3.4), read defensively:
 * display names, quoted strings, comments (nested), angle addresses with
 * or without an obsolete route ("<@relay:anna@x>"), groups ("family:
 * anna@x, bob@x;"), bare addresses; what is not local@domain is skipped.
 * No encoded-word is decoded: in a display name one could hold a comma
 * or an '@'.  cb gets each address, as long as *left (counted down) lets
 * it, and returns true to stop; then so does route_addr_each.
 */
bool
route_addr_each(const char *v, size_t n, size_t *left,
    bool (*cb)(void *, const char *), void *arg)
{
	struct seg	 sg;
	size_t		 i, depth;
	bool		 stop = false;
	char		 c;

	memset(&sg, 0, sizeof sg);
	for (i = 0; i < n && !stop && *left > 0; i++) {
		c = v[i];
		if (c == '(') {
			/* A comment, nested, with quoted pairs: a space. */
			for (depth = 1, i++; i < n && depth > 0; i++)
				if (v[i] == '\\')
					i++;
				else if (v[i] == '(')
					depth++;
				else if (v[i] == ')')
					depth--;
			i--;
			seg_gap(&sg);
		} else if (c == '"') {
			/* A quoted string: part of the word it is in. */
			seg_put(&sg, c);
			for (i++; i < n && v[i] != '"'; i++) {
				if (v[i] == '\\' && i + 1 < n)
					seg_put(&sg, v[i++]);
				seg_put(&sg, v[i]);
			}
			seg_put(&sg, '"');
		} else if (c == '<') {
			sg.in_angle = sg.have_angle = true;
			sg.nangle = 0;
		} else if (c == '>') {
			sg.in_angle = false;
			seg_gap(&sg);
		} else if (c == ':' && sg.in_angle)
			sg.nangle = 0;		/* an obsolete route's end */
		else if (c == ':')
			sg.nbare = 0;		/* a group's name */
		else if ((c == ',' && !sg.in_angle) || c == ';')
			stop = seg_emit(&sg, cb, arg, left);
		else if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			seg_gap(&sg);
		else if (c != ',')
			seg_put(&sg, c);
	}
	if (!stop)
		stop = seg_emit(&sg, cb, arg, left);
	return stop;
}

