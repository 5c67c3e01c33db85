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
 * "why" quotes from the header is cleaned to printable ASCII.  Here: the
 * header's fields, the tests and the decision; the text of a value
 * (encoded-words, address lists) is read in route_text.c.
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
		if (route_addr_each(sc->raw, len, &rc->left, rcpt_one, rc))
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
		route_decode_words(sc->raw, len, sc->text, sizeof sc->text);
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
		route_addr_each(sc->raw, len, &left, md_one, mm);
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
			route_addr_each(sc->raw, len, &left, md_one, mm);
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

