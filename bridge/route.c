/*
 * Routing (issue 16): where one message goes, decided from its header
 * section and its size, in the order route.h gives: the rules, first
 * match wins; then multidrop; else the account's imap mailbox.  Pure:
 * bytes in, a decision out, no I/O; it never fails, since a header that
 * cannot be read simply matches nothing.
 *
 * The header bytes come from whoever sent the message, so everything
 * here is bounded: at most ROUTE_LINES_MAX lines are looked at, a value
 * at most ROUTE_VALUE_MAX bytes (unfolded), at most ROUTE_INSTANCES_MAX
 * instances of one header per test, ROUTE_ADDRS_MAX addresses per test;
 * memory is a few allocations of a fixed size per message, and what
 * "why" quotes from the header is cleaned to printable ASCII.
 *
 * Multidrop (a family's catch-all POP3 mailbox) follows fetchmail's
 * lessons.  The envelope recipient, the address the mail was delivered
 * to, is not in To or Cc: a Bcc recipient is in neither, a mailing list's
 * To is the list, and a family member in Cc gets a copy of their own (the
 * provider keeps one per recipient), so reading Cc would hand them this
 * one too.  The receiving server records the recipient in a header
 * (Delivered-To, X-Original-To, Envelope-To, X-Envelope-To), and only the
 * topmost instance of each is this delivery's: mail that was forwarded
 * carries the older hops' Delivered-To further down (the person's other
 * address), and that must not route it.  To and Cc are a last resort a
 * user turns on.
 */
#include <fnmatch.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "route.h"

/* The envelope headers when multidrop names none (also what a recipient
 * rule reads without multidrop). */
static const char *const default_envelope[] = { "Delivered-To",
	"X-Original-To", "Envelope-To", "X-Envelope-To" };

#define NENVELOPE	(sizeof default_envelope / sizeof default_envelope[0])
#define EWORD_MAX	1024	/* bytes of an encoded-word's text */

/* A field of the header: offsets into it. */
struct field {
	size_t		 name, nlen;
	size_t		 val, vlen;	/* up to the end of its last line */
};

/* One message's scratch: the fields, then a value as it is read. */
struct scratch {
	const struct routing *rt;
	const struct account *ac;
	const char	*hdr;
	struct field	 f[ROUTE_LINES_MAX];
	size_t		 n;
	char		 raw[ROUTE_VALUE_MAX + 1];	/* unfolded */
	char		 text[ROUTE_VALUE_MAX + 1];	/* words decoded */
};

/* ---- the header's fields ---- */

/*
 * Index the fields up to the blank line (or the end, for a header cut
 * short).  A line that starts with a space or tab continues the field
 * before it; a line without a colon is no field (an mbox "From " line,
 * garbage), and lines that continue it are skipped with it.  "Name :"
 * (RFC 5322's obsolete syntax) is Name.
 */
static void
index_fields(struct scratch *sc, const char *hdr, size_t hlen)
{
	const char	*nl, *colon;
	size_t		 pos = 0, end, next, nlen, lines = 0;
	bool		 open = false;

	sc->hdr = hdr;
	sc->n = 0;
	while (pos < hlen && lines++ < ROUTE_LINES_MAX) {
		nl = memchr(hdr + pos, '\n', hlen - pos);
		next = nl != NULL ? (size_t)(nl - hdr) + 1 : hlen;
		end = nl != NULL ? (size_t)(nl - hdr) : hlen;
		if (end > pos && hdr[end - 1] == '\r')
			end--;
		if (end == pos)
			break;		/* the blank line: the body follows */
		if (hdr[pos] == ' ' || hdr[pos] == '\t') {
			if (open)
				sc->f[sc->n - 1].vlen = next -
				    sc->f[sc->n - 1].val;
			pos = next;
			continue;
		}
		open = false;
		colon = memchr(hdr + pos, ':', end - pos);
		if (colon != NULL && sc->n < ROUTE_LINES_MAX) {
			nlen = (size_t)(colon - (hdr + pos));
			while (nlen > 0 && (hdr[pos + nlen - 1] == ' ' ||
			    hdr[pos + nlen - 1] == '\t'))
				nlen--;
			if (nlen > 0) {
				sc->f[sc->n].name = pos;
				sc->f[sc->n].nlen = nlen;
				sc->f[sc->n].val = (size_t)(colon - hdr) + 1;
				sc->f[sc->n].vlen = next - sc->f[sc->n].val;
				sc->n++;
				open = true;
			}
		}
		pos = next;
	}
}

/* Is the field called name (in any case)? */
static bool
field_is(const struct scratch *sc, const struct field *f, const char *name)
{
	return f->nlen == strlen(name) &&
	    strncasecmp(sc->hdr + f->name, name, f->nlen) == 0;
}

/* The first (topmost: the newest hop's) field called name, or NULL. */
static const struct field *
field_first(const struct scratch *sc, const char *name)
{
	size_t	 i;

	for (i = 0; i < sc->n; i++)
		if (field_is(sc, &sc->f[i], name))
			return &sc->f[i];
	return NULL;
}

/*
 * A field's value into sc->raw: unfolded (every CR and LF dropped: the
 * space or tab that began a continuation line stays), NUL bytes dropped
 * (a C string must hold it), trimmed, cut at ROUTE_VALUE_MAX bytes.
 */
static size_t
unfold(struct scratch *sc, const struct field *f)
{
	const char	*v = sc->hdr + f->val;
	size_t		 i, o = 0;

	for (i = 0; i < f->vlen && o < ROUTE_VALUE_MAX; i++) {
		if (v[i] == '\r' || v[i] == '\n' || v[i] == '\0')
			continue;
		if (o == 0 && (v[i] == ' ' || v[i] == '\t'))
			continue;
		sc->raw[o++] = v[i];
	}
	while (o > 0 && (sc->raw[o - 1] == ' ' || sc->raw[o - 1] == '\t'))
		o--;
	sc->raw[o] = '\0';
	return o;
}

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

static int
b64_value(unsigned char c)
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

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* An encoded-word's text (B or Q) into out; its length, or -1 if it is
 * not valid base64 (then the word stays as it is). */
static long
eword_bytes(char enc, const char *t, size_t n, unsigned char *out)
{
	size_t		 i, o = 0;
	unsigned int	 acc = 0;
	int		 bits = 0, v, h, l;

	if (enc == 'b' || enc == 'B') {
		for (i = 0; i < n; i++) {
			if (t[i] == '=')
				break;		/* padding: the end */
			if ((v = b64_value((unsigned char)t[i])) < 0)
				return -1;
			acc = (acc << 6 | (unsigned int)v) & 0xffffff;
			if ((bits += 6) >= 8) {
				bits -= 8;
				out[o++] = (unsigned char)(acc >> bits);
			}
		}
		return (long)o;
	}
	for (i = 0; i < n; i++) {
		if (t[i] == '_')
			out[o++] = ' ';
		else if (t[i] == '=' && i + 2 < n &&
		    (h = hex_value((unsigned char)t[i + 1])) >= 0 &&
		    (l = hex_value((unsigned char)t[i + 2])) >= 0) {
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
static size_t
decode_words(const char *in, size_t n, char *out, size_t outsz)
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

/* ---- patterns ---- */

/* Does s (a C string) match?  Exact and glob match the whole of it. */
static bool
pattern_match(const struct pattern *p, const char *s)
{
	switch (p->kind) {
	case MATCH_EXACT:
		return p->case_sensitive ? strcmp(p->text, s) == 0 :
		    strcasecmp(p->text, s) == 0;
	case MATCH_GLOB:
		return fnmatch(p->text, s, p->case_sensitive ? 0 :
		    FNM_CASEFOLD) == 0;
	case MATCH_REGEX:
		return regexec(&p->re, s, 0, NULL, 0) == 0;
	}
	return false;
}

static const char *
pattern_word(const struct pattern *p)
{
	switch (p->kind) {
	case MATCH_EXACT:
		return "is";
	case MATCH_GLOB:
		return "glob";
	case MATCH_REGEX:
		return "regex";
	}
	return "?";
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
 * it, and returns true to stop; then so does addr_each.
 */
static bool
addr_each(const char *v, size_t n, size_t *left,
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

/* ---- the decision ---- */

/* "why", bounded: text from a header or the config, cleaned to
 * printable ASCII; cut with "..." when it does not fit. */
static void
why_cat(struct route_out *out, const char *s)
{
	size_t	 o = strlen(out->why);

	for (; *s != '\0'; s++) {
		if (o + 1 >= sizeof out->why) {
			memcpy(out->why + sizeof out->why - 4, "...", 4);
			return;
		}
		out->why[o++] = (unsigned char)*s < 0x20 ||
		    (unsigned char)*s >= 0x7f ? '?' : *s;
	}
	out->why[o] = '\0';
}

static void
why_catf(struct route_out *out, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
why_catf(struct route_out *out, const char *fmt, ...)
{
	char	 buf[sizeof out->why];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	why_cat(out, buf);
}

/* A pick of a target (once: the same target twice is one copy). */
static void
add_pick(struct route_out *out, size_t t, const char *flags)
{
	size_t	 i;

	if (t == ROUTE_NONE)
		return;
	for (i = 0; i < out->n; i++)
		if (out->picks[i].target == t)
			return;
	if (out->n < ROUTE_PICKS_MAX) {
		out->picks[out->n].target = t;
		out->picks[out->n].flags = flags;
		out->n++;
	}
}

/* The target for a destination and a mailbox (NULL: its own).  Every
 * pair route_decide can make was made a target at load (config_route.c);
 * should one be missing all the same, the account's imap takes the mail
 * rather than nobody. */
static size_t
pick_target(const struct scratch *sc, size_t dest, const char *mailbox)
{
	size_t	 t;

	if (mailbox == NULL)
		mailbox = route_dest_mailbox(sc->ac, dest);
	t = routing_target(sc->rt, dest, mailbox);
	return t != ROUTE_NONE ? t : 0;
}

/* A recipient rule's test, and the address it matched. */
struct rcpt_test {
	const struct pattern *pat;
	size_t		 left;		/* addresses it may still look at */
	char		 hit[ROUTE_ADDR_MAX + 1];
};

static bool
rcpt_one(void *arg, const char *addr)
{
	struct rcpt_test *rc = arg;

	if (!pattern_match(rc->pat, addr))
		return false;
	snprintf(rc->hit, sizeof rc->hit, "%s", addr);
	return true;
}

/* Do the addresses of the field called name (every instance, or the
 * topmost only) hold one that matches? */
static bool
rcpt_in(struct scratch *sc, const char *name, bool topmost,
    struct rcpt_test *rc)
{
	size_t	 i, tried = 0, len;

	for (i = 0; i < sc->n && tried < ROUTE_INSTANCES_MAX; i++) {
		if (!field_is(sc, &sc->f[i], name))
			continue;
		tried++;
		len = unfold(sc, &sc->f[i]);
		if (addr_each(sc->raw, len, &rc->left, rcpt_one, rc))
			return true;
		if (topmost)
			break;
	}
	return false;
}

/* Any recipient: this delivery's envelope (the topmost instance of each
 * envelope header), then To and Cc (each instance), ROUTE_ADDRS_MAX
 * addresses in all: the envelope first, so that a To of a thousand
 * addresses cannot hide it. */
static bool
test_recipient(struct scratch *sc, const struct rule *r,
    struct rcpt_test *rc)
{
	const struct multidrop *md = sc->rt->md;
	size_t		 i, n = md != NULL ? md->nheaders : NENVELOPE;

	rc->pat = &r->pat;
	rc->left = ROUTE_ADDRS_MAX;
	rc->hit[0] = '\0';
	for (i = 0; i < n; i++)
		if (rcpt_in(sc, md != NULL ? md->headers[i] :
		    default_envelope[i], true, rc))
			return true;
	return rcpt_in(sc, "To", false, rc) || rcpt_in(sc, "Cc", false, rc);
}

/* A header rule: any instance of the header, decoded, matches. */
static bool
test_header(struct scratch *sc, const struct rule *r)
{
	size_t	 i, tried = 0, len;

	for (i = 0; i < sc->n && tried < ROUTE_INSTANCES_MAX; i++) {
		if (!field_is(sc, &sc->f[i], r->header))
			continue;
		tried++;
		len = unfold(sc, &sc->f[i]);
		decode_words(sc->raw, len, sc->text, sizeof sc->text);
		if (pattern_match(&r->pat, sc->text))
			return true;
	}
	return false;
}

/* Does rule r match?  Then "why" says so. */
static bool
rule_matches(struct scratch *sc, const struct rule *r, size_t i,
    uint64_t size, struct route_out *out)
{
	struct rcpt_test *rc;
	char		 a[32], b[32];
	bool		 m = false;

	switch (r->test) {
	case TEST_HEADER:
		if ((m = test_header(sc, r)))
			why_catf(out, "rule %zu (line %d): %s %s \"%s\"", i + 1,
			    r->line, r->header, pattern_word(&r->pat),
			    r->pat.text);
		break;
	case TEST_RECIPIENT:
		rc = xcalloc(1, sizeof *rc);
		if ((m = test_recipient(sc, r, rc))) {
			why_catf(out, "rule %zu (line %d): recipient ", i + 1,
			    r->line);
			why_cat(out, rc->hit);
			why_catf(out, " %s \"%s\"", pattern_word(&r->pat),
			    r->pat.text);
		}
		free(rc);
		break;
	case TEST_SIZE_OVER:
	case TEST_SIZE_UNDER:
		m = r->test == TEST_SIZE_OVER ? size > r->size :
		    size < r->size;
		if (m)
			why_catf(out, "rule %zu (line %d): size %s %s %s",
			    i + 1, r->line, log_size(size, a, sizeof a),
			    r->test == TEST_SIZE_OVER ? "over" : "under",
			    log_size(r->size, b, sizeof b));
		break;
	case TEST_ALWAYS:
		m = true;
		why_catf(out, "rule %zu (line %d): every message", i + 1,
		    r->line);
		break;
	}
	return m;
}

/* The multidrop map: the first entry that matches an address decides
 * for it. */
struct md_map {
	struct scratch	*sc;
	struct route_out *out;
	const char	*mailbox;	/* a rule's, else the entry's */
	const char	*flags;
	size_t		 mapped;	/* addresses mapped */
	char		 list[sizeof ((struct route_out *)0)->why];
};

static bool
md_one(void *arg, const char *addr)
{
	struct md_map		*mm = arg;
	const struct multidrop	*md = mm->sc->rt->md;
	const struct recipient_map *e;
	size_t			 i, o;

	for (i = 0; i < md->nmap; i++) {
		e = &md->map[i];
		if (!pattern_match(&e->pat, addr))
			continue;
		add_pick(mm->out, pick_target(mm->sc, e->dest, mm->mailbox !=
		    NULL ? mm->mailbox : e->mailbox), mm->flags);
		o = strlen(mm->list);
		snprintf(mm->list + o, sizeof mm->list - o, "%s%s",
		    mm->mapped > 0 ? ", " : "", addr);
		mm->mapped++;
		break;
	}
	return false;
}

/*
 * Step 2: where the message goes without a rule (or with a rule that
 * names no destination: then with the rule's mailbox and flags).
 * Multidrop: the first envelope header (its topmost instance) with an
 * address the map takes decides; the places of all its mapped addresses
 * are the picks (an address the map does not take is dropped, as
 * fetchmail drops a recipient it cannot deliver to locally when another
 * one is).  Then To and Cc if asked; then the default.
 */
static void
step2(struct scratch *sc, const char *mailbox, const char *flags,
    struct route_out *out)
{
	const struct multidrop	*md = sc->rt->md;
	const struct field	*f;
	struct md_map		*mm;
	size_t			 i, len, left, tried = 0;

	if (md == NULL) {
		add_pick(out, pick_target(sc, 0, mailbox), flags);
		return;
	}
	mm = xcalloc(1, sizeof *mm);
	mm->sc = sc;
	mm->out = out;
	mm->mailbox = mailbox;
	mm->flags = flags;
	for (i = 0; i < md->nheaders && out->n == 0; i++) {
		if ((f = field_first(sc, md->headers[i])) == NULL)
			continue;
		len = unfold(sc, f);
		mm->mapped = 0;
		mm->list[0] = '\0';
		left = ROUTE_ADDRS_MAX;
		addr_each(sc->raw, len, &left, md_one, mm);
		if (out->n > 0) {
			why_catf(out, "multidrop: %s ", md->headers[i]);
			why_cat(out, mm->list);
		}
	}
	if (out->n == 0 && md->to_cc) {
		mm->mapped = 0;
		mm->list[0] = '\0';
		left = ROUTE_ADDRS_MAX;
		for (i = 0; i < sc->n && left > 0 &&
		    tried < 2 * ROUTE_INSTANCES_MAX; i++) {
			if (!field_is(sc, &sc->f[i], "To") &&
			    !field_is(sc, &sc->f[i], "Cc"))
				continue;
			tried++;
			len = unfold(sc, &sc->f[i]);
			addr_each(sc->raw, len, &left, md_one, mm);
		}
		if (out->n > 0) {
			why_cat(out, "multidrop: To/Cc ");
			why_cat(out, mm->list);
		}
	}
	if (out->n == 0) {
		why_cat(out, "multidrop: no recipient mapped: default ");
		if (md->default_keep) {
			out->keep = true;
			why_cat(out, "keep");
		} else {
			add_pick(out, pick_target(sc, md->default_dest,
			    mailbox), flags);
			why_cat(out, route_dest_name(sc->ac, md->default_dest));
		}
	}
	free(mm);
}

void
route_decide(const struct account *ac, const char *hdr, size_t hlen,
    uint64_t size, struct route_out *out)
{
	const struct routing	*rt = ac->routing;
	const struct rule	*r;
	struct scratch		*sc;
	size_t			 i;

	memset(out, 0, sizeof *out);
	out->rule = -1;
	if (rt == NULL) {
		/* No routing: nothing to read, nothing to pay. */
		add_pick(out, 0, NULL);
		why_cat(out, "no rule matched");
		return;
	}
	sc = xmalloc(sizeof *sc);
	sc->rt = rt;
	sc->ac = ac;
	index_fields(sc, hdr, hlen);
	for (i = 0; i < rt->nrules; i++) {
		r = &rt->rules[i];
		if (!rule_matches(sc, r, i, size, out))
			continue;
		out->rule = (int)i;
		if (r->keep)
			out->keep = true;
		else if (r->has_dest)
			add_pick(out, pick_target(sc, r->dest, r->mailbox),
			    r->flags);
		else {
			if (rt->md != NULL)
				why_cat(out, "; ");
			step2(sc, r->mailbox, r->flags, out);
		}
		break;
	}
	if (out->rule == -1) {
		if (rt->md == NULL)
			why_cat(out, "no rule matched");
		step2(sc, NULL, NULL, out);
	}
	if (out->keep)
		out->n = 0;
	free(sc);
}

/* ---- the config's side ---- */

const char *
route_dest_mailbox(const struct account *ac, size_t dest)
{
	const struct routing	*rt = ac->routing;

	if (dest == 0 || rt == NULL || dest > rt->ndests)
		return ac->imap.mailbox;
	return rt->dests[dest - 1].ep.mailbox;
}

bool
route_same_mailbox(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || (strcasecmp(a, "INBOX") == 0 &&
	    strcasecmp(b, "INBOX") == 0);
}

size_t
routing_target(const struct routing *rt, size_t dest, const char *mailbox)
{
	size_t	 i;

	if (rt == NULL)
		return dest == 0 ? 0 : ROUTE_NONE;
	for (i = 0; i < rt->ntargets; i++)
		if (rt->targets[i].dest == dest &&
		    route_same_mailbox(rt->targets[i].mailbox, mailbox))
			return i;
	return ROUTE_NONE;
}

const struct endpoint *
route_endpoint(const struct account *ac, size_t t)
{
	const struct routing	*rt = ac->routing;
	size_t			 dest;

	if (rt == NULL || t >= rt->ntargets)
		return &ac->imap;
	dest = rt->targets[t].dest;
	if (dest == 0 || dest > rt->ndests)
		return &ac->imap;
	return &rt->dests[dest - 1].ep;
}

const char *
route_dest_name(const struct account *ac, size_t dest)
{
	const struct routing	*rt = ac->routing;

	if (dest == 0 || rt == NULL || dest > rt->ndests)
		return "imap";
	return rt->dests[dest - 1].name;
}

static void
pattern_free(struct pattern *p)
{
	if (p->kind == MATCH_REGEX && p->text != NULL)
		regfree(&p->re);
	free(p->text);
}

void
routing_free(struct routing *rt)
{
	size_t	 i;

	if (rt == NULL)
		return;
	for (i = 0; i < rt->ndests; i++) {
		free(rt->dests[i].name);
		config_endpoint_free(&rt->dests[i].ep);
	}
	free(rt->dests);
	for (i = 0; i < rt->nrules; i++) {
		free(rt->rules[i].header);
		pattern_free(&rt->rules[i].pat);
		free(rt->rules[i].mailbox);
		free(rt->rules[i].flags);
	}
	free(rt->rules);
	if (rt->md != NULL) {
		for (i = 0; i < rt->md->nheaders; i++)
			free(rt->md->headers[i]);
		free(rt->md->headers);
		for (i = 0; i < rt->md->nmap; i++) {
			pattern_free(&rt->md->map[i].pat);
			free(rt->md->map[i].mailbox);
		}
		free(rt->md->map);
		free(rt->md);
	}
	for (i = 0; i < rt->ntargets; i++)
		free(rt->targets[i].mailbox);
	free(rt->targets);
	free(rt);
}
