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

#define IMAP_LINE_MAX	(64 * 1024 - 1)
#define IMAP_RESP_MAX	(1024 * 1024)
#define IMAP_PEND_MAX	4	/* batches of APPENDs on the wire at once */

/* The tags of a batch of APPENDs sent and not yet answered. */
struct pend {
	unsigned int	 lo, hi;
};

/* A tagged reply that came before the one being waited for. */
struct stashed {
	unsigned int	 tag;
	char		*resp;
};

struct imap {
	struct conn	*c;
	char		*account;
	char		*host;
	unsigned int	 tag;
	struct imap_caps caps;
	char		*resp;		/* the current response */
	size_t		 resplen, respcap;
	char		 bye[256];	/* the server's BYE text, if any */
	bool		 dead;		/* the link failed: no LOGOUT */
	struct pend	 pend[IMAP_PEND_MAX];
	size_t		 npend;
	struct stashed	*stash;
	size_t		 nstash;
};

typedef void	(*untagged_fn)(struct imap *, void *);

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
line_literal(const char *line, size_t len)
{
	size_t		 i;
	uint64_t	 n;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	for (i = len - 1; i > 0 && line[i - 1] != '{'; i--)
		;
	if (i == 0 || !imap_parse_number(line + i, len - 1 - i, &n) ||
	    n > IMAP_RESP_MAX)
		return -1;
	return (long long)n;
}

/* Read one response: a line and the literals it announces, inline. */
static enum result
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
		if ((lit = line_literal(line, len)) < 0)
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
			if ((r = resp_add(im, p, avail, cause)) != RES_OK)
				return r;
			conn_consume(im->c, avail);
			lit -= (long long)avail;
		}
	}
}

static enum result
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
static bool
resp_tag(const char *resp, unsigned int *num)
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
static bool
pending(const struct imap *im, unsigned int tag)
{
	size_t	 i;

	for (i = 0; i < im->npend; i++)
		if (tag >= im->pend[i].lo && tag <= im->pend[i].hi)
			return true;
	return false;
}

/* Set the current response aside: it answers tag, of a batch on the wire. */
static void
stash_add(struct imap *im, unsigned int tag)
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
		if (resp_tag(im->resp, num)) {
			if (*num >= lo && *num <= hi)
				return RES_OK;
			if (pending(im, *num)) {
				stash_add(im, *num);
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
static enum result
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
static enum result
imap_wait(struct imap *im, const char *tag, untagged_fn fn, void *arg,
    struct imap_reply *rep, char **cause)
{
	unsigned int	 want, num;
	char		 buf[24];

	snprintf(buf, sizeof buf, "%s ", tag);
	if (!resp_tag(buf, &want))
		return fail(cause, RES_TEMP, "imap: bad tag %s", tag);
	return imap_take_status(im, want, want, fn, arg, &num, rep, cause);
}

static enum result
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
static enum result
imap_refused(struct imap *im, const char *what, struct imap_reply *rep,
    enum result r, char **cause)
{
	char	 clean[300];

	return fail(cause, r, "imap: %s: %s refused: %s%s%s%s", im->host,
	    what, rep->code[0] != '\0' ? "[" : "", rep->code,
	    rep->code[0] != '\0' ? "] " : "",
	    log_clean(clean, sizeof clean, rep->text, strlen(rep->text)));
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

enum result
imap_open(const struct endpoint *ep, const char *account, long timeout,
    struct imap **imp, char **cause)
{
	struct imap	*im;
	struct conn	*c;
	struct imap_reply rep;
	enum result	 r;

	*imp = NULL;
	if ((r = conn_open(ep, account, timeout, &c, cause)) != RES_OK)
		return r;
	im = xcalloc(1, sizeof *im);
	im->c = c;
	im->account = xstrdup(account);
	im->host = xstrdup(ep->host);
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
	    !imap_parse_number(ur.code_arg, strlen(ur.code_arg), &v) ||
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
	char		*q, *cmd;
	enum result	 r;

	if ((q = imap_quote(mailbox)) == NULL)
		return fail(cause, RES_CONFIG, "imap: mailbox name \"%s\" needs "
		    "modified UTF-7", mailbox);
	cmd = xprintf("%s %s%s", verb, q, rest);
	r = imap_command(im, cmd, fn, arg, rep, cause);
	free(cmd);
	free(q);
	return r;
}

/* EXAMINE: read-only, so nothing (not even \Recent) changes. */
enum result
imap_select(struct imap *im, const char *mailbox, struct imap_mbox *st,
    char **cause)
{
	struct imap_reply rep;
	enum result	 r;

	memset(st, 0, sizeof *st);
	r = imap_mailbox_command(im, "EXAMINE", mailbox, "", on_select, st,
	    &rep, cause);
	if (r != RES_OK)
		return r;
	/*
	 * "Not now" (RFC 5530 NO [LIMIT], [UNAVAILABLE], [INUSE], or a
	 * provider's "too many ...") is no missing mailbox: creating it would
	 * be wrong, and the server's words must reach the batch, which rests
	 * the host and tries again.
	 */
	if (rep.status != IMAP_OK && (strcmp(rep.code, "LIMIT") == 0 ||
	    strcmp(rep.code, "UNAVAILABLE") == 0 ||
	    strcmp(rep.code, "INUSE") == 0 || throttle_is(rep.text)))
		return imap_refused(im, "EXAMINE", &rep, RES_TEMP, cause);
	if (rep.status != IMAP_OK) {
		st->exists = false;
		return RES_OK;
	}
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
	if (r == RES_OK)
		st->exists = rep.status == IMAP_OK;
	return r;
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
			r = fail(cause, RES_CONFIG, "%s (check the server's "
			    "hierarchy separator: \".\" or \"/\")", why);
			free(why);
			return r;
		}
		return imap_refused(im, "CREATE", &rep, RES_TEMP, cause);
	}
	log_info("%s: imap: created mailbox %s", im->account, mailbox);
	return RES_OK;
}

static enum result
send_spool_bytes(struct imap *im, struct spool *sp, char **cause)
{
	char		 buf[65536];
	uint64_t	 off = 0;
	ssize_t		 n;
	enum result	 r;

	while (off < sp->size) {
		if ((n = spool_pread(sp, buf, sizeof buf, off)) <= 0)
			return fail(cause, RES_TEMP, "cannot read back a spooled "
			    "message");
		if ((r = conn_write(im->c, buf, (size_t)n, cause)) != RES_OK) {
			im->dead = true;
			return r;
		}
		off += (uint64_t)n;
	}
	return RES_OK;
}

/* A message literal and the CRLF that ends the command. */
static enum result
send_spool(struct imap *im, struct spool *sp, char **cause)
{
	enum result	 r;

	if ((r = send_spool_bytes(im, sp, cause)) == RES_OK &&
	    (r = conn_write(im->c, "\r\n", 2, cause)) != RES_OK)
		im->dead = true;
	return r;
}

static bool
is_quota(const struct imap_reply *rep)
{
	return strcmp(rep->code, "OVERQUOTA") == 0 ||
	    (rep->code[0] == '\0' && strcasestr(rep->text, "quota") != NULL);
}

static void
set_outcome(struct imap *im, struct imap_reply *rep,
    struct append_result *ar, char **why)
{
	if (rep->status == IMAP_OK) {
		ar->outcome = APPEND_STORED;
		if (strcmp(rep->code, "APPENDUID") == 0)
			(void)imap_parse_appenduid(rep->code_arg,
			    &ar->uidvalidity, &ar->uid);
		return;
	}
	if (strcmp(rep->code, "TRYCREATE") == 0)
		ar->outcome = APPEND_TRYCREATE;
	else if (is_quota(rep))
		ar->outcome = APPEND_OVERQUOTA;
	else
		ar->outcome = APPEND_REFUSED;
	imap_refused(im, "APPEND", rep, RES_MSG, why);
}

enum result
imap_append(struct imap *im, const char *mailbox, const char *flags,
    time_t date, int tzoff, struct spool *sp, struct append_result *ar,
    char **cause)
{
	struct imap_reply rep;
	char		 tag[16], datestr[40], *q, *cmd, clean[300];
	bool		 nonsync;
	enum result	 r;

	memset(ar, 0, sizeof *ar);
	if ((q = imap_quote(mailbox)) == NULL)
		return fail(cause, RES_CONFIG, "imap: mailbox name \"%s\" needs "
		    "modified UTF-7", mailbox);
	date_imap(date, tzoff, datestr, sizeof datestr);
	/* RFC 7888: LITERAL- allows non-synchronising literals to 4096. */
	nonsync = im->caps.literal_plus ||
	    (im->caps.literal_minus && sp->size <= 4096);
	cmd = xprintf("APPEND %s (%s) \"%s\" {%llu%s}", q, flags, datestr,
	    (unsigned long long)sp->size, nonsync ? "+" : "");
	free(q);
	r = imap_send(im, cmd, tag, sizeof tag, cause);
	free(cmd);
	if (r != RES_OK)
		return r;
	/*
	 * Wait for "+", or a refusal before the data is sent.  Untagged data
	 * (EXISTS) may come first, and replies to a batch still on the wire,
	 * which are set aside for it.
	 */
	while (!nonsync) {
		size_t taglen = strlen(tag);
		unsigned int num;

		if ((r = imap_read(im, cause)) != RES_OK)
			return r;
		if (im->resp[0] == '+')
			break;
		if (strncmp(im->resp, "* ", 2) == 0)
			continue;
		if (resp_tag(im->resp, &num) && pending(im, num)) {
			stash_add(im, num);
			continue;
		}
		if (strncmp(im->resp, tag, taglen) != 0 ||
		    im->resp[taglen] != ' ' ||
		    !imap_parse_status(im->resp + taglen + 1, &rep)) {
			im->dead = true;
			return fail(cause, RES_TEMP, "imap: %s: unexpected "
			    "reply to APPEND: %s", im->host,
			    log_clean(clean, sizeof clean, im->resp,
			    im->resplen));
		}
		goto refused;
	}
	if ((r = send_spool(im, sp, cause)) != RES_OK ||
	    (r = imap_wait(im, tag, NULL, NULL, &rep, cause)) != RES_OK)
		return r;
refused:
	set_outcome(im, &rep, ar, cause);
	return RES_OK;
}

/* " (flags) "date" {size+}" + CRLF: one message's part of an APPEND. */
static char *
append_part(const char *flags, const struct append_item *it)
{
	char	 datestr[40];

	date_imap(it->date, it->tz, datestr, sizeof datestr);
	return xprintf(" (%s) \"%s\" %s{%llu+}\r\n", flags, datestr,
	    it->binary ? "~" : "", (unsigned long long)it->sp->size);
}

/* A batch of APPENDs: how it went on the wire, and its first tag. */
enum ab_mode { AB_ONE_BY_ONE, AB_MULTI, AB_PIPELINED };

struct append_batch {
	enum ab_mode	 mode;
	char		*q;		/* the mailbox, quoted */
	const char	*mailbox, *flags;
	struct append_item *items;
	size_t		 n;
	unsigned int	 tag;		/* MULTI: its tag; PIPELINED: the first */
};

static void
pend_add(struct imap *im, unsigned int lo, unsigned int hi)
{
	/* imap_append_send refuses a batch beyond IMAP_PEND_MAX. */
	im->pend[im->npend].lo = lo;
	im->pend[im->npend++].hi = hi;
}

static void
pend_del(struct imap *im, unsigned int lo)
{
	size_t	 i;

	for (i = 0; i < im->npend; i++)
		if (im->pend[i].lo == lo) {
			im->pend[i] = im->pend[--im->npend];
			return;
		}
}

/* MULTIAPPEND: all messages in one command, one transaction. */
static enum result
multi_send(struct imap *im, struct append_batch *ab, char **cause)
{
	char		*line;
	size_t		 i;
	enum result	 r;

	ab->tag = ++im->tag;
	log_trace("%s: imap: C: p%u APPEND %s ... (%zu messages)", im->account,
	    ab->tag, ab->q, ab->n);
	line = xprintf("p%u APPEND %s", ab->tag, ab->q);
	r = conn_write(im->c, line, strlen(line), cause);
	free(line);
	for (i = 0; i < ab->n && r == RES_OK; i++) {
		line = append_part(ab->flags, &ab->items[i]);
		r = conn_write(im->c, line, strlen(line), cause);
		free(line);
		/* The next message's part follows the literal at once; only
		 * the command as a whole ends with CRLF. */
		if (r == RES_OK)
			r = send_spool_bytes(im, ab->items[i].sp, cause);
	}
	if (r == RES_OK)
		r = conn_write(im->c, "\r\n", 2, cause);
	if (r != RES_OK)
		im->dead = true;
	else
		pend_add(im, ab->tag, ab->tag);
	return r;
}

static enum result
multi_recv(struct imap *im, struct append_batch *ab, bool *done,
    char **cause)
{
	struct append_item *items = ab->items;
	struct imap_reply rep;
	uint32_t	*uids;
	unsigned int	 num;
	char		*why = NULL;
	size_t		 i, n = ab->n;
	enum result	 r;

	*done = false;
	r = imap_take_status(im, ab->tag, ab->tag, NULL, NULL, &num, &rep,
	    cause);
	pend_del(im, ab->tag);
	if (r != RES_OK)
		return r;
	if (rep.status == IMAP_OK) {
		uids = xcalloc(n, sizeof *uids);
		if (strcmp(rep.code, "APPENDUID") == 0) {
			const char *sp = strchr(rep.code_arg, ' ');
			uint64_t v;

			if (sp != NULL && imap_parse_number(rep.code_arg,
			    (size_t)(sp - rep.code_arg), &v) && v > 0 &&
			    v <= UINT32_MAX &&
			    imap_parse_uidset(sp + 1, uids, n) == n)
				for (i = 0; i < n; i++) {
					items[i].res.uidvalidity = (uint32_t)v;
					items[i].res.uid = uids[i];
				}
		}
		for (i = 0; i < n; i++)
			items[i].res.outcome = APPEND_STORED;
		free(uids);
		*done = true;
		return RES_OK;
	}
	/* All or nothing (RFC 3502): nothing was stored. */
	set_outcome(im, &rep, &items[0].res, &why);
	/*
	 * One of them was refused, or together they do not fit the quota
	 * (Cyrus 3.6 refuses the whole MULTIAPPEND): one by one, so that
	 * what fits is stored and only the culprit stays behind.
	 */
	if (items[0].res.outcome == APPEND_REFUSED ||
	    items[0].res.outcome == APPEND_OVERQUOTA) {
		log_debug("%s: imap: MULTIAPPEND of %zu refused (%s); one at a "
		    "time", im->account, n, why);
		free(why);
		memset(&items[0].res, 0, sizeof items[0].res);
		return RES_OK;
	}
	for (i = 0; i < n; i++) {
		items[i].res.outcome = items[0].res.outcome;
		items[i].why = xstrdup(why);
	}
	free(why);
	*done = true;
	return RES_OK;
}

/* Several APPENDs sent back to back with LITERAL+, replies read after. */
static enum result
pipelined_send(struct imap *im, struct append_batch *ab, char **cause)
{
	char		*line, *part;
	size_t		 i;
	enum result	 r = RES_OK;

	ab->tag = im->tag + 1;
	for (i = 0; i < ab->n && r == RES_OK; i++) {
		part = append_part(ab->flags, &ab->items[i]);
		line = xprintf("p%u APPEND %s%s", ++im->tag, ab->q, part);
		log_trace("%s: imap: C: %.*s", im->account,
		    (int)strcspn(line, "\r"), line);
		r = conn_write(im->c, line, strlen(line), cause);
		free(line);
		free(part);
		if (r == RES_OK)
			r = send_spool_bytes(im, ab->items[i].sp, cause);
		if (r == RES_OK)
			r = conn_write(im->c, "\r\n", 2, cause);
	}
	if (r != RES_OK)
		im->dead = true;
	else
		pend_add(im, ab->tag, ab->tag + (unsigned int)ab->n - 1);
	return r;
}

static enum result
pipelined_recv(struct imap *im, struct append_batch *ab, char **cause)
{
	unsigned int	 hi = ab->tag + (unsigned int)ab->n - 1, num;
	bool		*done;
	size_t		 left, i;
	enum result	 r = RES_OK;

	/* Dovecot answers a BAD before the OKs of earlier commands. */
	done = xcalloc(ab->n, sizeof *done);
	for (left = ab->n; left > 0 && r == RES_OK; left--) {
		struct imap_reply rep;

		if ((r = imap_take_status(im, ab->tag, hi, NULL, NULL, &num,
		    &rep, cause)) != RES_OK)
			break;
		i = num - ab->tag;
		if (done[i]) {
			char clean[300];

			im->dead = true;
			r = fail(cause, RES_TEMP, "imap: %s: a second reply to "
			    "one APPEND: %s", im->host, log_clean(clean,
			    sizeof clean, im->resp, im->resplen));
			break;
		}
		set_outcome(im, &rep, &ab->items[i].res, &ab->items[i].why);
		done[i] = true;
	}
	pend_del(im, ab->tag);
	free(done);
	return r;
}

/* Without LITERAL+: one APPEND at a time, each waiting for its "+". */
static enum result
one_by_one(struct imap *im, struct append_batch *ab, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 i;

	for (i = 0; i < ab->n && r == RES_OK; i++) {
		struct append_item *it = &ab->items[i];
		char *why = NULL;

		/* A refusal is the item's; a broken link the caller's. */
		r = imap_append(im, ab->mailbox, ab->flags, it->date, it->tz,
		    it->sp, &it->res, &why);
		if (r == RES_OK)
			it->why = why;
		else {
			free(*cause);
			*cause = why;
		}
	}
	return r;
}

enum result
imap_append_send(struct imap *im, const char *mailbox, const char *flags,
    struct append_item *items, size_t n, struct append_batch **abp,
    char **cause)
{
	struct append_batch *ab;
	bool		 small = true;
	size_t		 i;
	enum result	 r = RES_OK;

	*abp = NULL;
	for (i = 0; i < n; i++) {
		memset(&items[i].res, 0, sizeof items[i].res);
		free(items[i].why);
		items[i].why = NULL;
		small = small && items[i].sp->size <= 4096;
	}
	if (im->npend == IMAP_PEND_MAX)
		return fail(cause, RES_TEMP, "imap: too many APPENDs on the "
		    "wire");
	ab = xcalloc(1, sizeof *ab);
	if ((ab->q = imap_quote(mailbox)) == NULL) {
		free(ab);
		return fail(cause, RES_CONFIG, "imap: mailbox name \"%s\" needs "
		    "modified UTF-7", mailbox);
	}
	ab->mailbox = mailbox;
	ab->flags = flags;
	ab->items = items;
	ab->n = n;
	/* literal8 is sent here only as a non-synchronising literal. */
	for (i = 0; i < n; i++)
		if (items[i].binary && !im->caps.literal_plus && !small) {
			imap_append_abandon(ab);
			return fail(cause, RES_TEMP, "imap: %s: a message with NUL "
			    "bytes needs LITERAL+ as well as BINARY", im->host);
		}
	if (n > 1 && im->caps.multiappend && im->caps.literal_plus) {
		ab->mode = AB_MULTI;
		r = multi_send(im, ab, cause);
	} else if (n > 0 && (im->caps.literal_plus ||
	    (im->caps.literal_minus && small))) {
		ab->mode = AB_PIPELINED;
		r = pipelined_send(im, ab, cause);
	} else
		ab->mode = AB_ONE_BY_ONE;	/* all of it in _recv */
	if (r != RES_OK) {
		imap_append_abandon(ab);
		return r;
	}
	*abp = ab;
	return RES_OK;
}

enum result
imap_append_recv(struct imap *im, struct append_batch *ab, char **cause)
{
	bool		 done = true;
	enum result	 r;

	switch (ab->mode) {
	case AB_MULTI:
		r = multi_recv(im, ab, &done, cause);
		/* Refused as a whole: one message a command, to learn which. */
		if (r == RES_OK && !done &&
		    (r = pipelined_send(im, ab, cause)) == RES_OK)
			r = pipelined_recv(im, ab, cause);
		break;
	case AB_PIPELINED:
		r = pipelined_recv(im, ab, cause);
		break;
	default:
		r = one_by_one(im, ab, cause);
		break;
	}
	imap_append_abandon(ab);
	return r;
}

void
imap_append_abandon(struct append_batch *ab)
{
	if (ab == NULL)
		return;
	free(ab->q);
	free(ab);
}

enum result
imap_append_many(struct imap *im, const char *mailbox, const char *flags,
    struct append_item *items, size_t n, char **cause)
{
	struct append_batch *ab;
	enum result	 r;

	if ((r = imap_append_send(im, mailbox, flags, items, n, &ab,
	    cause)) != RES_OK)
		return r;
	return imap_append_recv(im, ab, cause);
}

struct fetch_ctx {
	uint32_t	 lo;
	imap_fetch_cb	 cb;
	void		*arg;
};

static void
on_fetch(struct imap *im, void *arg)
{
	struct fetch_ctx *fc = arg;
	struct imap_fetch f;

	if (!imap_parse_fetch(im->resp, im->resplen, &f) || f.uid == 0 ||
	    !f.have_size || f.uid < fc->lo)
		return;
	fc->cb(fc->arg, f.uid, f.size, f.have_body ? f.body : "",
	    f.have_body ? f.bodylen : 0);
}

enum result
imap_fetch_prefix(struct imap *im, uint32_t lo, size_t prefix,
    imap_fetch_cb cb, void *arg, char **cause)
{
	struct imap_reply rep;
	struct fetch_ctx fc = { lo == 0 ? 1 : lo, cb, arg };
	char		*cmd;
	enum result	 r;

	/* "lo:*" also names the last message when lo is past it; on_fetch
	 * drops UIDs below lo. */
	cmd = xprintf("UID FETCH %u:* (UID RFC822.SIZE BODY.PEEK[]<0.%zu>)",
	    fc.lo, prefix);
	r = imap_command(im, cmd, on_fetch, &fc, &rep, cause);
	free(cmd);
	if (r != RES_OK)
		return r;
	if (rep.status != IMAP_OK)
		return imap_refused(im, "UID FETCH", &rep, RES_TEMP, cause);
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
