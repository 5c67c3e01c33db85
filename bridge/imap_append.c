/*
 * APPEND (RFC 3501 6.3.11) in batches, three ways: one MULTIAPPEND (RFC
 * 3502) where offered, else pipelined with LITERAL+ (RFC 7888), else one
 * at a time waiting for each "+".  A batch goes out in _send and its
 * replies are read in _recv, so that the next batch can be read from POP3
 * while the server stores this one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "imap_int.h"

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
	/*
	 * Gmail's IMAP takes about 500 MB of uploads a day, then answers
	 * "[ALERT] Account exceeded command or bandwidth limits" (and may
	 * lock IMAP out for a day): not this message's fault, so the account
	 * stops for the run like over quota, nothing deleted, and tries
	 * again later; the reason is the server's, in the run's error.
	 */
	return strcmp(rep->code, "OVERQUOTA") == 0 ||
	    (rep->code[0] == '\0' && strcasestr(rep->text, "quota") != NULL) ||
	    strcasestr(rep->text, "exceeded command or bandwidth") != NULL;
}

static void
set_outcome(struct imap *im, struct imap_reply *rep,
    struct append_result *ar, char **why)
{
	if (rep->status == IMAP_OK) {
		ar->outcome = APPEND_STORED;
		if (strcmp(rep->code, "APPENDUID") == 0) {
			char *arg = xstrndup(rep->code_arg, rep->code_arglen);

			(void)imap_parse_appenduid(arg, &ar->uidvalidity,
			    &ar->uid);
			free(arg);
		}
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

/*
 * ` "dd-Mon-yyyy hh:mm:ss +zzzz"`, the APPEND's date-time argument, or
 * nothing for a date before 1970: Courier-IMAP 5.0 keeps INTERNALDATE as
 * a file time and answers such a date with "Error in IMAP command" (so the
 * message would never go), and Dovecot 2.3 stores 13-Dec-1901.  Such a
 * Date is bogus anyway; the server's own time stands instead.
 */
static void
date_arg(time_t date, int tz, char *buf, size_t sz)
{
	char	 d[32];

	if (date < 0) {
		buf[0] = '\0';
		return;
	}
	date_imap(date, tz, d, sizeof d);
	snprintf(buf, sz, " \"%s\"", d);
}

/* " (flags) "date" {size+}" + CRLF: one message's part of an APPEND. */
static char *
append_part(const char *flags, const struct append_item *it)
{
	char	 datestr[48];

	date_arg(it->date, it->tz, datestr, sizeof datestr);
	return xprintf(" (%s)%s %s{%llu+}\r\n", flags, datestr,
	    it->binary ? "~" : "", (unsigned long long)it->sp->size);
}

/* A batch of APPENDs: how it went on the wire, and its first tag. */
enum ab_mode { AB_ONE_BY_ONE, AB_MULTI, AB_PIPELINED };

struct append_batch {
	enum ab_mode	 mode;
	const char	*q;		/* the mailbox, quoted: the caller's */
	const char	*flags;
	struct append_item *items;
	size_t		 n;
	unsigned int	 tag;		/* MULTI: its tag; PIPELINED: the first */
};

/* An item's own flags (a routing rule's), else the batch's. */
static const char *
item_flags(const struct append_batch *ab, const struct append_item *it)
{
	return it->flags != NULL ? it->flags : ab->flags;
}

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
		line = append_part(item_flags(ab, &ab->items[i]),
		    &ab->items[i]);
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
			/* The whole uid-set, however long (never cut). */
			char *arg = xstrndup(rep.code_arg, rep.code_arglen);
			const char *sp = strchr(arg, ' ');
			uint64_t v;

			if (sp != NULL && imap_parse_number(arg,
			    (size_t)(sp - arg), &v) && v > 0 &&
			    v <= UINT32_MAX &&
			    imap_parse_uidset(sp + 1, uids, n) == n)
				for (i = 0; i < n; i++) {
					items[i].res.uidvalidity = (uint32_t)v;
					items[i].res.uid = uids[i];
				}
			free(arg);
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
		part = append_part(item_flags(ab, &ab->items[i]),
		    &ab->items[i]);
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

/* The command line of item i (tag first + i), without its literal. */
static enum result
sync_line(struct imap *im, struct append_batch *ab, size_t i, bool *nonsync,
    char **cause)
{
	struct append_item *it = &ab->items[i];
	char		*part, *line;
	enum result	 r;

	/* RFC 7888: LITERAL- allows non-synchronising literals to 4096. */
	*nonsync = im->caps.literal_plus ||
	    (im->caps.literal_minus && it->sp->size <= 4096);
	part = append_part(item_flags(ab, it), it);
	if (!*nonsync)		/* "{n+}\r\n" becomes "{n}\r\n" */
		memmove(part + strlen(part) - 4, part + strlen(part) - 3, 4);
	line = xprintf("p%u APPEND %s%s", ab->tag + (unsigned int)i, ab->q,
	    part);
	log_trace("%s: imap: C: %.*s", im->account, (int)strcspn(line, "\r"),
	    line);
	r = conn_write(im->c, line, strlen(line), cause);
	free(line);
	free(part);
	if (r != RES_OK)
		im->dead = true;
	return r;
}

/*
 * Wait for the "+" to item i's literal; a tagged reply to one of the
 * batch's commands sent so far is recorded on the way (for item i itself:
 * refused before its literal, *plus false; an OK to it would answer a
 * message never sent).  Replies to another batch still on the wire are
 * set aside for it; untagged data is skipped.
 */
static enum result
sync_wait_plus(struct imap *im, struct append_batch *ab, size_t i,
    bool *done, bool *plus, char **cause)
{
	struct imap_reply rep;
	unsigned int	 num;
	char		 clean[300];
	const char	*p;
	enum result	 r;

	*plus = false;
	for (;;) {
		if ((r = imap_read(im, cause)) != RES_OK)
			return r;
		if (im->resp[0] == '+') {
			*plus = true;
			return RES_OK;
		}
		if (strncmp(im->resp, "* ", 2) == 0)
			continue;
		if (imap_resp_tag(im->resp, &num) && num >= ab->tag &&
		    num <= ab->tag + i && !done[num - ab->tag] &&
		    (p = strchr(im->resp, ' ')) != NULL &&
		    imap_parse_status(p + 1, &rep) &&
		    (num - ab->tag < i || rep.status != IMAP_OK)) {
			set_outcome(im, &rep, &ab->items[num - ab->tag].res,
			    &ab->items[num - ab->tag].why);
			done[num - ab->tag] = true;
			if (num - ab->tag == i)
				return RES_OK;
			continue;
		}
		if (imap_resp_tag(im->resp, &num) && imap_tag_pending(im, num)) {
			imap_stash(im, num);
			continue;
		}
		im->dead = true;
		return fail(cause, RES_TEMP, "imap: %s: unexpected reply to "
		    "APPEND: %s", im->host, log_clean(clean, sizeof clean,
		    im->resp, im->resplen));
	}
}

/*
 * Without LITERAL+ (Gmail, Courier-IMAP): each APPEND waits for "+"
 * before its literal.  The next APPEND's command line goes out right after
 * the previous literal, without waiting for that APPEND's OK: the server
 * answers it and then sends the next "+", so a message costs one round
 * trip, not two.  A refusal in place of "+" ends that APPEND only.
 */
static enum result
sync_pipelined(struct imap *im, struct append_batch *ab, char **cause)
{
	struct imap_reply rep;
	unsigned int	 num;
	bool		*done, nonsync, plus;
	size_t		 i, left;
	enum result	 r;

	ab->tag = im->tag + 1;
	im->tag += (unsigned int)ab->n;
	done = xcalloc(ab->n + 1, sizeof *done);
	r = ab->n > 0 ? sync_line(im, ab, 0, &nonsync, cause) : RES_OK;
	for (i = 0; i < ab->n && r == RES_OK; i++) {
		plus = nonsync;
		if (!nonsync && (r = sync_wait_plus(im, ab, i, done, &plus,
		    cause)) != RES_OK)
			break;
		if (plus && (r = send_spool(im, ab->items[i].sp, cause)) !=
		    RES_OK)
			break;
		if (i + 1 < ab->n)
			r = sync_line(im, ab, i + 1, &nonsync, cause);
	}
	for (left = 0, i = 0; i < ab->n; i++)
		left += !done[i];
	while (r == RES_OK && left > 0) {
		if ((r = imap_take_status(im, ab->tag, ab->tag +
		    (unsigned int)ab->n - 1, NULL, NULL, &num, &rep, cause)) !=
		    RES_OK)
			break;
		if (done[num - ab->tag])
			continue;
		set_outcome(im, &rep, &ab->items[num - ab->tag].res,
		    &ab->items[num - ab->tag].why);
		done[num - ab->tag] = true;
		left--;
	}
	free(done);
	return r;
}

enum result
imap_append_send(struct imap *im, const char *wire, const char *flags,
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
	ab->q = wire;
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
		r = sync_pipelined(im, ab, cause);
		break;
	}
	imap_append_abandon(ab);
	return r;
}

/*
 * Is it time to read the batch's replies: have they begun to come?  A
 * batch sent one at a time goes out only in _recv (each APPEND waits for
 * its "+"), so it is always due: waiting would leave the link idle.
 */
bool
imap_append_ready(struct imap *im, const struct append_batch *ab)
{
	return ab == NULL || ab->mode == AB_ONE_BY_ONE || conn_ready(im->c);
}

void
imap_append_abandon(struct append_batch *ab)
{
	if (ab == NULL)
		return;
	free(ab);
}

enum result
imap_append_many(struct imap *im, const char *wire, const char *flags,
    struct append_item *items, size_t n, char **cause)
{
	struct append_batch *ab;
	enum result	 r;

	if ((r = imap_append_send(im, wire, flags, items, n, &ab,
	    cause)) != RES_OK)
		return r;
	return imap_append_recv(im, ab, cause);
}
