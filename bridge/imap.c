/*
 * The IMAP side (RFC 3501 / 9051): after libcurl has logged in, learn the
 * capabilities, open the target mailbox, APPEND messages with their flags
 * and INTERNALDATE, and find messages again after a crash.  Extensions are
 * used where the server offers them: LITERAL+ / LITERAL- (RFC 7888) to save
 * a round trip, UIDPLUS (RFC 4315) to learn where a message went,
 * APPENDLIMIT (RFC 7889) to skip what the server would refuse anyway.
 *
 * Replies are read as whole responses with their literals inline, up to a
 * ceiling: popbridge never asks for anything large.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "imap_int.h"


/* Append to the current response buffer, within the ceiling. */
static enum result
resp_add(struct imap *im, const char *p, size_t n, char **cause)
{
	if (im->resplen + n + 1 > IMAP_RESP_MAX)
		return fail(cause, RES_TEMP, "imap: %s: a reply larger than %d "
		    "bytes", im->host, IMAP_RESP_MAX);
	if (im->resplen + n + 1 > im->respcap) {
		im->respcap = (im->resplen + n + 1) * 2;
		if (im->respcap > IMAP_RESP_MAX)
			im->respcap = IMAP_RESP_MAX;
		im->resp = xrealloc(im->resp, im->respcap);
	}
	memcpy(im->resp + im->resplen, p, n);
	im->resplen += n;
	im->resp[im->resplen] = '\0';
	return RES_OK;
}

/* The literal length announced at the end of a line, or -1. */
static long long
line_literal(const char *line, size_t len, uint64_t max)
{
	size_t		 i;
	uint64_t	 n;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	for (i = len - 1; i > 0 && line[i - 1] != '{'; i--)
		;
	if (i == 0 || !imap_parse_number(line + i, len - 1 - i, &n) ||
	    n > max)
		return -1;
	return (long long)n;
}

/* Read one response: a line and the literals it announces, inline. */
enum result
imap_read(struct imap *im, char **cause)
{
	char		*line, clean[300];
	const char	*p;
	size_t		 len, avail;
	long long	 lit;
	enum result	 r;

	im->resplen = 0;
	for (;;) {
		if ((r = conn_getline(im->c, &line, &len, IMAP_LINE_MAX,
		    cause)) != RES_OK) {
			im->dead = true;
			return r;
		}
		if (im->resplen == 0)
			log_trace("%s: imap: S: %s", im->account,
			    log_clean(clean, sizeof clean, line, len));
		if ((r = resp_add(im, line, len, cause)) != RES_OK)
			return r;
		/* A literal being hashed may be as large as a message. */
		if ((lit = line_literal(line, len, im->lit_sink != NULL ?
		    UINT32_MAX : IMAP_RESP_MAX)) < 0)
			return RES_OK;
		if ((r = resp_add(im, "\r\n", 2, cause)) != RES_OK)
			return r;
		while (lit > 0) {
			if ((r = conn_peek(im->c, &p, &avail, cause)) != RES_OK) {
				im->dead = true;
				return r;
			}
			if ((long long)avail > lit)
				avail = (size_t)lit;
			/* A message body being hashed is not kept. */
			if (im->lit_sink != NULL)
				im->lit_sink(im->lit_arg, p, avail);
			else if ((r = resp_add(im, p, avail, cause)) != RES_OK)
				return r;
			conn_consume(im->c, avail);
			lit -= (long long)avail;
		}
	}
}

enum result
imap_send(struct imap *im, const char *cmd, char *tag, size_t tagsz,
    char **cause)
{
	char		*line;
	enum result	 r;

	snprintf(tag, tagsz, "p%u", ++im->tag);
	log_trace("%s: imap: C: %s %s", im->account, tag, cmd);
	line = xprintf("%s %s\r\n", tag, cmd);
	r = conn_write(im->c, line, strlen(line), cause);
	free(line);
	if (r != RES_OK)
		im->dead = true;
	return r;
}

/* The number of tag "pN" at the start of a response. */
bool
imap_resp_tag(const char *resp, unsigned int *num)
{
	uint64_t	 v;
	size_t		 n;

	if (resp[0] != 'p')
		return false;
	n = strspn(resp + 1, "0123456789");
	if (n == 0 || resp[1 + n] != ' ' ||
	    !imap_parse_number(resp + 1, n, &v) || v > UINT32_MAX)
		return false;
	*num = (unsigned int)v;
	return true;
}

/* Is tag a batch's, sent and not yet answered? */
bool
imap_tag_pending(const struct imap *im, unsigned int tag)
{
	size_t	 i;

	/* A reply set aside answers it: a second one is out of step, and
	 * setting it aside too would let a server fill memory. */
	for (i = 0; i < im->nstash; i++)
		if (im->stash[i].tag == tag)
			return false;
	for (i = 0; i < im->npend; i++)
		if (tag >= im->pend[i].lo && tag <= im->pend[i].hi)
			return true;
	return false;
}

/* Set the current response aside: it answers tag, of a batch on the wire. */
void
imap_stash(struct imap *im, unsigned int tag)
{
	im->stash = xrealloc(im->stash, (im->nstash + 1) * sizeof *im->stash);
	im->stash[im->nstash].tag = tag;
	im->stash[im->nstash++].resp = xstrdup(im->resp);
}

static void
stash_free(struct imap *im)
{
	size_t	 i;

	for (i = 0; i < im->nstash; i++)
		free(im->stash[i].resp);
	free(im->stash);
	im->stash = NULL;
	im->nstash = 0;
}

/*
 * The next tagged reply to one of the tags lo..hi, into im->resp, and its
 * tag in *num; untagged responses go to fn on the way.  Replies may come
 * in any order (RFC 3501 2.2.2): one to another batch still on the wire is
 * set aside until that batch is read.
 */
static enum result
imap_take(struct imap *im, unsigned int lo, unsigned int hi, untagged_fn fn,
    void *arg, unsigned int *num, char **cause)
{
	char		 clean[300];
	size_t		 i;
	enum result	 r;

	for (i = 0; i < im->nstash; i++) {
		struct stashed st = im->stash[i];

		if (st.tag < lo || st.tag > hi)
			continue;
		im->stash[i] = im->stash[--im->nstash];
		im->resplen = 0;
		r = resp_add(im, st.resp, strlen(st.resp), cause);
		free(st.resp);
		*num = st.tag;
		return r;
	}
	for (;;) {
		if ((r = imap_read(im, cause)) != RES_OK) {
			if (im->bye[0] != '\0') {
				free(*cause);
				*cause = xprintf("imap: %s: the server ended "
				    "the session: %s", im->host, im->bye);
				throttle_heard(im->bye, true, cause);
			}
			return r;
		}
		if (strncmp(im->resp, "* ", 2) == 0) {
			struct imap_reply ur;

			/* The BYE's words with its response code: a code such
			 * as [UNAVAILABLE] is what says "not now". */
			if (imap_parse_status(im->resp + 2, &ur) &&
			    ur.status == IMAP_BYE) {
				const char *t = im->resp + 5;

				t += strspn(t, " ");
				log_clean(im->bye, sizeof im->bye, t, strlen(t));
			}
			if (fn != NULL)
				fn(im, arg);
			continue;
		}
		if (imap_resp_tag(im->resp, num)) {
			if (*num >= lo && *num <= hi)
				return RES_OK;
			if (imap_tag_pending(im, *num)) {
				imap_stash(im, *num);
				continue;
			}
		}
		im->dead = true;
		if (im->resp[0] == '+')
			return fail(cause, RES_TEMP, "imap: %s: unexpected "
			    "continuation request", im->host);
		/* A reply to a command never sent: the session is confused. */
		return fail(cause, RES_TEMP, "imap: %s: unexpected reply: %s",
		    im->host, log_clean(clean, sizeof clean, im->resp,
		    im->resplen));
	}
}

/* imap_take, and the reply's status into *rep. */
enum result
imap_take_status(struct imap *im, unsigned int lo, unsigned int hi,
    untagged_fn fn, void *arg, unsigned int *num, struct imap_reply *rep,
    char **cause)
{
	char		 clean[300];
	const char	*p;
	enum result	 r;

	if ((r = imap_take(im, lo, hi, fn, arg, num, cause)) != RES_OK)
		return r;
	p = im->resp + strcspn(im->resp, " ");
	if (*p != ' ' || !imap_parse_status(p + 1, rep) ||
	    rep->status > IMAP_BAD) {
		im->dead = true;
		return fail(cause, RES_TEMP, "imap: %s: malformed reply: %s",
		    im->host, log_clean(clean, sizeof clean, im->resp,
		    im->resplen));
	}
	return RES_OK;
}

/*
 * Read responses until the tagged one, handing untagged ones to fn.
 * Returns RES_OK with the tagged reply in *rep, whatever its status.
 */
enum result
imap_wait(struct imap *im, const char *tag, untagged_fn fn, void *arg,
    struct imap_reply *rep, char **cause)
{
	unsigned int	 want, num;
	char		 buf[24];

	snprintf(buf, sizeof buf, "%s ", tag);
	if (!imap_resp_tag(buf, &want))
		return fail(cause, RES_TEMP, "imap: bad tag %s", tag);
	return imap_take_status(im, want, want, fn, arg, &num, rep, cause);
}

enum result
imap_command(struct imap *im, const char *cmd, untagged_fn fn, void *arg,
    struct imap_reply *rep, char **cause)
{
	char		 tag[16];
	enum result	 r;

	if ((r = imap_send(im, cmd, tag, sizeof tag, cause)) != RES_OK)
		return r;
	return imap_wait(im, tag, fn, arg, rep, cause);
}

/* A reply that is not OK, as a sentence for *cause. */
enum result
imap_refused(struct imap *im, const char *what, struct imap_reply *rep,
    enum result r, char **cause)
{
	char	 clean[300], code[sizeof rep->code + 4], words[400];

	/* The code too is the server's: any byte but a space or "]". */
	log_clean(code, sizeof code, rep->code, strlen(rep->code));
	log_clean(clean, sizeof clean, rep->text, strlen(rep->text));
	snprintf(words, sizeof words, "%s%s%s%s", rep->code[0] != '\0' ?
	    "[" : "", code, rep->code[0] != '\0' ? "] " : "", clean);
	r = fail(cause, r, "imap: %s: %s refused: %s", im->host, what, words);
	throttle_heard(words, true, cause);
	return r;
}

static void
caps_set(struct imap *im, const char *caps)
{
	const char	*p;
	uint64_t	 v;

	im->caps.literal_plus = imap_has_cap(caps, "LITERAL+");
	im->caps.literal_minus = imap_has_cap(caps, "LITERAL-");
	im->caps.multiappend = imap_has_cap(caps, "MULTIAPPEND");
	im->caps.uidplus = imap_has_cap(caps, "UIDPLUS");
	im->caps.binary = imap_has_cap(caps, "BINARY");
	im->caps.namespace = imap_has_cap(caps, "NAMESPACE");
	im->caps.appendlimit = 0;
	for (p = caps; (p = strcasestr(p, "APPENDLIMIT=")) != NULL; p += 12) {
		const char *q = p + 12;
		size_t n = strspn(q, "0123456789");

		/* Cyrus 3.6 says APPENDLIMIT=4294967295 for "no limit". */
		if ((p == caps || p[-1] == ' ') && imap_parse_number(q, n, &v) &&
		    v < UINT32_MAX)
			im->caps.appendlimit = v;
	}
}

static void
on_capability(struct imap *im, void *arg)
{
	(void)arg;
	if (strncasecmp(im->resp, "* CAPABILITY ", 13) == 0)
		caps_set(im, im->resp + 13);
}

/*
 * The capabilities after login, where the login already gave them: in
 * its tagged OK ("A002 OK [CAPABILITY IMAP4rev1 ... UIDPLUS] Logged in":
 * Cyrus), or in an untagged CAPABILITY between the login command and its
 * OK (Dovecot 2.3).  Then no CAPABILITY round trip.  Those before the
 * login differ (no MULTIAPPEND, no UIDPLUS on Dovecot), so only lines
 * after the last but one tagged reply count.
 */
static bool
caps_from_login(struct imap *im)
{
	const char	*pos = conn_login_lines(im->c), *s, *last = NULL;
	const char	*pending = NULL, *cand = NULL;	/* untagged lists */
	size_t		 n, lastn = 0, pendn = 0, candn = 0;
	struct imap_reply rep;
	char		*line, *caps = NULL;

	while ((s = login_line_next(&pos, &n)) != NULL) {
		if (n > 13 && strncasecmp(s, "* CAPABILITY ", 13) == 0) {
			pending = s + 13;
			pendn = n - 13;
		} else if (s[0] != '*' && s[0] != '+') {
			/* A tagged reply: what came since it is the step's. */
			cand = pending;
			candn = pendn;
			pending = NULL;
			last = s;
			lastn = n;
		}
	}
	if (last == NULL)
		return false;
	line = xstrndup(last, lastn);
	s = line + strcspn(line, " ");
	if (*s == ' ' && imap_parse_status(s + 1, &rep) &&
	    rep.status == IMAP_OK) {
		if (strcmp(rep.code, "CAPABILITY") == 0)
			caps = xstrndup(rep.code_arg, rep.code_arglen);
		else if (cand != NULL)
			caps = xstrndup(cand, candn);
	}
	free(line);
	if (caps == NULL)
		return false;
	caps_set(im, caps);
	log_trace("%s: imap: capabilities from the login: %s", im->account,
	    caps);
	free(caps);
	return true;
}

enum result
imap_open(const struct endpoint *ep, const char *secret, const char *account,
    long timeout, struct imap **imp, char **cause)
{
	struct conn	*c;
	enum result	 r;

	*imp = NULL;
	if ((r = conn_open(ep, secret, account, timeout, &c, cause)) !=
	    RES_OK)
		return r;
	return imap_open_conn(c, account, ep->host, imp, cause);
}

/* The session on a logged-in connection: conn_open's, or conn_memory's. */
enum result
imap_open_conn(struct conn *c, const char *account, const char *host,
    struct imap **imp, char **cause)
{
	struct imap	*im;
	struct imap_reply rep;
	enum result	 r;

	*imp = NULL;
	im = xcalloc(1, sizeof *im);
	im->c = c;
	im->account = xstrdup(account);
	im->host = xstrdup(host);
	if (caps_from_login(im)) {
		*imp = im;
		return RES_OK;
	}
	/* Capabilities change at login (Dovecot adds UIDPLUS, MULTIAPPEND). */
	if ((r = imap_command(im, "CAPABILITY", on_capability, NULL, &rep,
	    cause)) != RES_OK || (rep.status != IMAP_OK &&
	    (r = imap_refused(im, "CAPABILITY", &rep, RES_TEMP, cause)) != RES_OK)) {
		imap_logout(im);
		return r;
	}
	*imp = im;
	return RES_OK;
}

const struct imap_caps *
imap_caps(struct imap *im)
{
	return &im->caps;
}

struct conn *
imap_conn(struct imap *im)
{
	return im->c;
}

/* "* OK [UIDNEXT n]", "* OK [UIDVALIDITY n]", "* n EXISTS" */
static void
on_select(struct imap *im, void *arg)
{
	struct imap_mbox *st = arg;
	struct imap_reply ur;
	uint64_t	 v;
	const char	*p = im->resp + 2;
	size_t		 n = strspn(p, "0123456789");

	if (n > 0 && strcasecmp(p + n, " EXISTS") == 0 &&
	    imap_parse_number(p, n, &v) && v <= UINT32_MAX) {
		st->messages = (uint32_t)v;
		return;
	}
	if (!imap_parse_status(p, &ur) || ur.status != IMAP_OK ||
	    !imap_parse_number(ur.code_arg, ur.code_arglen, &v) ||
	    v > UINT32_MAX)
		return;
	if (strcmp(ur.code, "UIDNEXT") == 0)
		st->uidnext = (uint32_t)v;
	else if (strcmp(ur.code, "UIDVALIDITY") == 0)
		st->uidvalidity = (uint32_t)v;
}

/* "VERB "mailbox"[ rest]": the mailbox quoted, or a config error. */
static enum result
imap_mailbox_command(struct imap *im, const char *verb, const char *mailbox,
    const char *rest, untagged_fn fn, void *arg, struct imap_reply *rep,
    char **cause)
{
	const char	*why;
	char		*q, *cmd, clean[300];
	enum result	 r;

	/* On the wire in modified UTF-7 (RFC 3501 5.1.3); the ledger and the
	 * log keep the name as configured. */
	if ((q = imap_quote_mailbox(mailbox, &why)) == NULL)
		return fail(cause, RES_CONFIG, "imap: mailbox \"%s\" %s",
		    log_clean(clean, sizeof clean, mailbox, strlen(mailbox)),
		    why);
	cmd = xprintf("%s %s%s", verb, q, rest);
	r = imap_command(im, cmd, fn, arg, rep, cause);
	free(cmd);
	free(q);
	return r;
}

/*
 * "Not now" (RFC 5530 NO [LIMIT], [UNAVAILABLE], [INUSE], or a provider's
 * "too many ...") is no missing mailbox: creating it would be wrong, and
 * the server's words must reach the batch, which rests the host and tries
 * again.
 */
static bool
not_now(const struct imap_reply *rep)
{
	return rep->status != IMAP_OK && (strcmp(rep->code, "LIMIT") == 0 ||
	    strcmp(rep->code, "UNAVAILABLE") == 0 ||
	    strcmp(rep->code, "INUSE") == 0 || throttle_is(rep->text));
}

/*
 * SELECT, read-write: popbridge selects the mailbox only to find and
 * remove its own duplicates (settle.c), which needs STORE and EXPUNGE.
 * Courier-IMAP 5.0 refuses an APPEND into the mailbox held read-only
 * ("Current box is selected READ-ONLY"), so EXAMINE is never used.
 */
enum result
imap_select(struct imap *im, const char *mailbox, struct imap_mbox *st,
    char **cause)
{
	struct imap_reply rep;
	enum result	 r;

	memset(st, 0, sizeof *st);
	r = imap_mailbox_command(im, "SELECT", mailbox, "", on_select, st,
	    &rep, cause);
	if (r != RES_OK)
		return r;
	if (not_now(&rep))
		return imap_refused(im, "SELECT", &rep, RES_TEMP, cause);
	if (rep.status != IMAP_OK)
		return imap_refused(im, "SELECT", &rep, RES_TEMP, cause);
	st->exists = true;
	return RES_OK;
}

/* "* STATUS name (MESSAGES n UIDNEXT n UIDVALIDITY n)" */
static void
on_status(struct imap *im, void *arg)
{
	struct imap_mbox *st = arg;
	const char	*p;
	uint64_t	 v;
	size_t		 n;

	if (strncasecmp(im->resp, "* STATUS ", 9) != 0 ||
	    (p = strrchr(im->resp, '(')) == NULL)
		return;
	for (p++; *p != '\0' && *p != ')';) {
		const char *name = p;
		size_t nlen = strcspn(p, " )");

		p += nlen;
		if (*p != ' ')
			break;
		p++;
		n = strspn(p, "0123456789");
		if (imap_parse_number(p, n, &v) && v <= UINT32_MAX) {
			if (nlen == 8 && strncasecmp(name, "MESSAGES", 8) == 0)
				st->messages = (uint32_t)v;
			else if (nlen == 7 &&
			    strncasecmp(name, "UIDNEXT", 7) == 0)
				st->uidnext = (uint32_t)v;
			else if (nlen == 11 &&
			    strncasecmp(name, "UIDVALIDITY", 11) == 0)
				st->uidvalidity = (uint32_t)v;
		}
		p += n;
		while (*p == ' ')
			p++;
	}
}

enum result
imap_status(struct imap *im, const char *mailbox, struct imap_mbox *st,
    char **cause)
{
	struct imap_reply rep;
	enum result	 r;

	memset(st, 0, sizeof *st);
	r = imap_mailbox_command(im, "STATUS", mailbox,
	    " (MESSAGES UIDNEXT UIDVALIDITY)", on_status, st, &rep, cause);
	if (r != RES_OK)
		return r;
	if (not_now(&rep))
		return imap_refused(im, "STATUS", &rep, RES_TEMP, cause);
	/* Cyrus 3.6 and Courier 5.0 answer a missing mailbox with a NO
	 * without [NONEXISTENT]: any NO is "does not exist" here, and the
	 * CREATE that follows says what is really wrong. */
	st->exists = rep.status == IMAP_OK;
	return RES_OK;
}

enum result
imap_create(struct imap *im, const char *mailbox, char **cause)
{
	struct imap_reply rep;
	enum result	 r;

	if ((r = imap_mailbox_command(im, "CREATE", mailbox, "", NULL, NULL,
	    &rep, cause)) != RES_OK)
		return r;
	/* [ALREADYEXISTS]: someone else made it in the meantime; fine. */
	if (rep.status != IMAP_OK && strcmp(rep.code, "ALREADYEXISTS") != 0) {
		/* A name the server will never take is the config's fault
		 * (Cyrus 3.6: "Invalid mailbox name" for the other separator). */
		if (strcmp(rep.code, "CANNOT") == 0 ||
		    strcasestr(rep.text, "invalid mailbox name") != NULL) {
			char *why = NULL;

			imap_refused(im, "CREATE", &rep, RES_CONFIG, &why);
			/* The separator hint only where one could be at fault. */
			r = fail(cause, RES_CONFIG, "%s%s", why,
			    strpbrk(mailbox, "./") != NULL ? " (check the "
			    "server's hierarchy separator: \".\" or \"/\")" : "");
			free(why);
			return r;
		}
		return imap_refused(im, "CREATE", &rep, RES_TEMP, cause);
	}
	log_info("%s: imap: created mailbox %s", im->account, mailbox);
	return RES_OK;
}

struct ns_ctx {
	char		*prefix;
	size_t		 psz;
	char		*sep;
};

static void
on_namespace(struct imap *im, void *arg)
{
	struct ns_ctx	*nc = arg;

	if (strncasecmp(im->resp, "* NAMESPACE ", 12) == 0 &&
	    !imap_parse_namespace(im->resp + 12, nc->prefix, nc->psz, nc->sep))
		nc->prefix[0] = '\0';
}

/*
 * The personal namespace's prefix (RFC 2342): "" where the server has no
 * NAMESPACE or puts personal mailboxes at the top (Dovecot), "INBOX."
 * on Courier-IMAP 5.0.
 */
static enum result
imap_namespace(struct imap *im, char *prefix, size_t psz, char *sep,
    char **cause)
{
	struct ns_ctx	 nc = { prefix, psz, sep };
	struct imap_reply rep;
	enum result	 r;

	prefix[0] = '\0';
	*sep = '\0';
	if (!im->caps.namespace)
		return RES_OK;
	if ((r = imap_command(im, "NAMESPACE", on_namespace, &nc, &rep,
	    cause)) != RES_OK)
		return r;
	if (rep.status != IMAP_OK)
		prefix[0] = '\0';
	im->sep = *sep;
	return RES_OK;
}

char
imap_separator(const struct imap *im)
{
	return im->sep;
}

/*
 * The configured mailbox as the server names it, into *placed (malloc'd).
 * A name relative to the personal namespace goes under its prefix:
 * Courier-IMAP 5.0 keeps every personal mailbox under "INBOX.", where
 * "Archive" is "INBOX.Archive".  INBOX, and a name that already starts
 * with the prefix, stay as written; for INBOX no NAMESPACE is asked.
 */
enum result
imap_place(struct imap *im, const char *mailbox, char **placed, char **cause)
{
	char		 prefix[128], sep;
	enum result	 r;

	*placed = NULL;
	if (strcasecmp(mailbox, "INBOX") != 0 && (r = imap_namespace(im,
	    prefix, sizeof prefix, &sep, cause)) != RES_OK)
		return r;
	if (strcasecmp(mailbox, "INBOX") == 0 || prefix[0] == '\0' ||
	    strncmp(mailbox, prefix, strlen(prefix)) == 0)
		*placed = xstrdup(mailbox);
	else
		*placed = xprintf("%s%s", prefix, mailbox);
	return RES_OK;
}

void
imap_logout(struct imap *im)
{
	struct imap_reply rep;
	char		*cause = NULL;

	if (im == NULL)
		return;
	if (im->c != NULL && !im->dead && !conn_dead(im->c))
		(void)imap_command(im, "LOGOUT", NULL, NULL, &rep, &cause);
	free(cause);
	conn_close(im->c);
	stash_free(im);
	free(im->resp);
	free(im->account);
	free(im->host);
	free(im);
}
