/*
 * users.messages.import: each message as the raw RFC 5322 bytes, never
 * re-encoded, with its labels and the options that make Gmail treat it
 * as mail that arrived (internalDateSource=dateHeader: the date shown is
 * the message's Date; neverMarkSpam only where the user asks).
 *
 * Up to GMAIL_SIMPLE_MAX a message goes in one multipart/related request
 * (metadata, then the message).  Larger ones go as a resumable upload: a
 * POST with the metadata opens a session (nothing is imported yet), then
 * one PUT carries the bytes.  Above GMAIL_IMPORT_MAX nothing is sent.
 *
 * The order of operations is the promise: a request whose whole body went
 * out may have been done even if no reply came (GMAIL_UNKNOWN: the engine
 * settles it with gmail_find); a request whose body did not all go out,
 * or that got a refusal, was not (the message can be imported again).
 * Rate limits are retried inside gmail_run, because a 429 or 503 is
 * Google saying it did nothing; 500, 502 and 504 are not retried here:
 * a gateway's error says nothing about whether the import behind it ran.
 */
#include <sys/random.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "bridge.h"
#include "gmail_int.h"

#define IMPORT_PATH	"/upload/gmail/v1/users/me/messages/import"

struct job {
	struct gmail_item *it;
	struct gmail_req rq;
	char		*head, *tail;	/* multipart framing, or metadata */
	bool		 resumable;
	bool		 opened;	/* resumable: the session exists */
	bool		 decided;	/* its item's status is set */
};

static char *
import_url(struct gmail *g, const char *type, bool never_spam)
{
	/* processForCalendar stays false (its default): an invitation in
	 * old mail must not put events in the calendar. */
	return xprintf("%s" IMPORT_PATH "?uploadType=%s&internalDateSource="
	    "dateHeader&neverMarkSpam=%s", gmail_base(g), type,
	    never_spam ? "true" : "false");
}

/* A boundary no message is likely to hold: 128 random bits in hex. */
static void
boundary(char *out, size_t outsz)
{
	unsigned char	 rnd[16];
	size_t		 i, n;

	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		fatal("getrandom failed");
	n = (size_t)snprintf(out, outsz, "popbridge_");
	for (i = 0; i < sizeof rnd && n + 3 <= outsz; i++)
		n += (size_t)snprintf(out + n, outsz - n, "%02x", rnd[i]);
}

static void
job_multipart(struct gmail *g, struct job *j, const char *meta)
{
	char	 b[64];

	boundary(b, sizeof b);
	j->head = xprintf("--%s\r\nContent-Type: application/json; "
	    "charset=UTF-8\r\n\r\n%s\r\n--%s\r\nContent-Type: message/rfc822"
	    "\r\n\r\n", b, meta, b);
	j->tail = xprintf("\r\n--%s--\r\n", b);
	gmail_req_init(&j->rq, g, "POST", import_url(g, "multipart",
	    j->it->never_spam), COST_IMPORT);
	j->rq.ctype = xprintf("multipart/related; boundary=%s", b);
	j->rq.has_body = true;
	j->rq.body.head = j->head;
	j->rq.body.headlen = strlen(j->head);
	j->rq.body.msg = &j->it->src;
	j->rq.body.tail = j->tail;
	j->rq.body.taillen = strlen(j->tail);
}

/* The resumable upload's first step: the metadata, and the size to come. */
static void
job_open(struct gmail *g, struct job *j, const char *meta)
{
	j->head = xstrdup(meta);
	gmail_req_init(&j->rq, g, "POST", import_url(g, "resumable",
	    j->it->never_spam), COST_IMPORT);
	j->rq.ctype = xstrdup("application/json; charset=UTF-8");
	j->rq.extra[0] = xstrdup("X-Upload-Content-Type: message/rfc822");
	j->rq.extra[1] = xprintf("X-Upload-Content-Length: %llu",
	    (unsigned long long)gmail_src_size(&j->it->src));
	j->rq.has_body = true;
	j->rq.body.head = j->head;
	j->rq.body.headlen = strlen(j->head);
}

/*
 * The second step: the bytes, to the session's URL.  It must be on the
 * base URL's host: the token goes with it, and a reply (or a proxy) that
 * names another host must not get it.
 */
static bool
job_upload(struct gmail *g, struct job *j)
{
	const char	*loc = j->rq.location, *base = gmail_base(g);
	size_t		 n = strlen(base);
	char		*url;

	if (loc == NULL || strncasecmp(loc, base, n) != 0 || loc[n] != '/')
		return false;
	url = xstrdup(loc);
	gmail_req_free(&j->rq);
	gmail_req_init(&j->rq, g, "PUT", url, 0);
	j->rq.ctype = xstrdup("message/rfc822");
	j->rq.has_body = true;
	j->rq.body.msg = &j->it->src;
	j->opened = true;
	return true;
}

static void
set_why(struct gmail_item *it, const char *fmt, ...) PRINTFLIKE(2, 3);
static void
set_why(struct gmail_item *it, const char *fmt, ...)
{
	va_list	 ap;

	free(it->why);
	va_start(ap, fmt);
	it->why = xvprintf(fmt, ap);
	va_end(ap);
}

/* A request that ended without a reply to read: the link, rate, token. */
static enum result
job_cut(struct gmail *g, struct job *j, char **cause)
{
	struct gmail_item *it = j->it;
	struct gmail_req *rq = &j->rq;

	switch (rq->end) {
	case END_LINK:
	case END_DEADLINE:
		/* The whole body out: it may have been done. */
		it->status = rq->body_sent && (!j->resumable || j->opened) ?
		    GMAIL_UNKNOWN : GMAIL_NOT_DONE;
		set_why(it, "%s", rq->end == END_LINK ? rq->why :
		    "the deadline passed");
		break;
	case END_RATE:
		it->status = GMAIL_RETRY_AFTER;
		it->retry_after = rq->retry_after;
		set_why(it, "rate limited (HTTP %ld)", rq->status);
		break;
	case END_HALTED:
		if (g->daily) {
			it->status = GMAIL_DAILY_LIMIT;
			it->until = g->daily_until;
			set_why(it, "not sent: the daily limit is reached");
			return fail(cause, RES_TEMP, "gmail: import: the daily "
			    "limit is reached; more after %s",
			    gmail_when(it->until));
		}
		it->status = GMAIL_NOT_DONE;
		break;
	case END_AUTH:
	case END_REPLY:
		it->status = GMAIL_NOT_DONE;
		break;
	}
	return gmail_req_result(rq, "import", cause);
}

/* An error reply: its item's fate, and the call's. */
static enum result
job_refused(struct gmail *g, struct job *j, char **cause)
{
	struct gmail_item *it = j->it;
	struct gmail_req *rq = &j->rq;
	char		 reason[64], msg[200];
	enum result	 r;

	gmail_json_error(rq->reply, rq->replylen, reason, sizeof reason, msg,
	    sizeof msg);
	if (rq->status == 403 && strcmp(reason, "dailyLimitExceeded") == 0) {
		it->status = GMAIL_DAILY_LIMIT;
		it->until = g->daily_until;
		set_why(it, "the daily limit is reached: %s", msg);
		return fail(cause, RES_TEMP, "gmail: import: the daily limit "
		    "is reached; more after %s", gmail_when(it->until));
	}
	if (rq->status == 413) {
		it->status = GMAIL_TOO_BIG;
		set_why(it, "too large for Gmail (HTTP 413%s%s)",
		    msg[0] != '\0' ? ": " : "", msg);
		return RES_OK;
	}
	if (rq->status >= 500) {
		it->status = rq->status == 503 ? GMAIL_NOT_DONE : GMAIL_UNKNOWN;
		it->retry_after = rq->retry_after > 0 ? rq->retry_after : 0;
		set_why(it, "server error %ld%s%s", rq->status,
		    msg[0] != '\0' ? ": " : "", msg);
		return gmail_req_result(rq, "import", cause);
	}
	r = gmail_req_result(rq, "import", cause);
	if (r == RES_MSG || r == RES_TEMP) {
		/* This message's (400 invalid, 409 ...): set it aside. */
		it->status = GMAIL_REFUSED;
		set_why(it, "HTTP %ld%s%s%s%s", rq->status,
		    reason[0] != '\0' ? " " : "", reason,
		    msg[0] != '\0' ? ": " : "", msg);
		free(*cause);
		*cause = NULL;
		return RES_OK;
	}
	it->status = GMAIL_NOT_DONE;
	return r;
}

/* What a finished request made of its item, and for the call. */
static enum result
job_outcome(struct gmail *g, struct job *j, char **cause)
{
	struct gmail_item *it = j->it;
	struct gmail_req *rq = &j->rq;

	it->http = (int)rq->status;
	if (rq->end != END_REPLY)
		return job_cut(g, j, cause);
	if (rq->status < 200 || rq->status >= 300)
		return job_refused(g, j, cause);
	if (gmail_json_id(rq->reply, rq->replylen, it->id, sizeof it->id)) {
		it->status = GMAIL_IMPORTED;
		return RES_OK;
	}
	it->status = GMAIL_UNKNOWN;
	set_why(it, "HTTP %ld without a message id", rq->status);
	return fail(cause, RES_TEMP, "gmail: import: HTTP %ld without a "
	    "message id", rq->status);
}

/* Keep the worse result, and the cause of the first of the worst. */
static void
worse(enum result *r, char **cause, enum result ri, char **ci)
{
	if (ri != RES_OK && (*cause == NULL ||
	    (result_worst(*r, ri) == ri && ri != *r))) {
		free(*cause);
		*cause = *ci;
		*ci = NULL;
	}
	*r = result_worst(*r, ri);
	free(*ci);
	*ci = NULL;
}

/* Check one item and build its first request: false if decided without. */
static bool
job_prepare(struct gmail *g, struct job *j, struct gmail_item *it)
{
	char		*meta;
	uint64_t	 size;

	j->it = it;
	it->status = GMAIL_NOT_DONE;
	it->id[0] = '\0';
	it->retry_after = 0;
	it->until = 0;
	it->http = 0;
	size = gmail_src_size(&it->src);
	if (size > GMAIL_IMPORT_MAX) {
		it->status = GMAIL_TOO_BIG;
		set_why(it, "%llu bytes: over the %llu bytes Gmail's import "
		    "takes", (unsigned long long)size,
		    (unsigned long long)GMAIL_IMPORT_MAX);
		return false;
	}
	if (it->nlabels > GMAIL_LABELS_MAX || (meta =
	    gmail_json_import_meta(it->label_ids, it->nlabels,
	    it->unread)) == NULL) {
		it->status = GMAIL_REFUSED;
		set_why(it, "its labels cannot be sent (too many, or not "
		    "UTF-8)");
		return false;
	}
	j->resumable = size > GMAIL_SIMPLE_MAX;
	if (j->resumable)
		job_open(g, j, meta);
	else
		job_multipart(g, j, meta);
	free(meta);
	return true;
}

/* Resumable uploads: the bytes, to each session opened.  The count. */
static size_t
jobs_upload(struct gmail *g, struct job *jobs, size_t n,
    struct gmail_req **rqs, enum result *r, char **cause)
{
	struct job	*j;
	char		*ci = NULL;
	size_t		 i, nrq = 0;

	for (i = 0; i < n; i++) {
		j = &jobs[i];
		if (!j->resumable || j->rq.url == NULL ||
		    j->rq.end != END_REPLY || j->rq.status < 200 ||
		    j->rq.status >= 300)
			continue;
		if (job_upload(g, j))
			rqs[nrq++] = &j->rq;
		else {
			j->it->status = GMAIL_NOT_DONE;
			j->decided = true;
			set_why(j->it, "no upload session on %s", gmail_base(g));
			worse(r, cause, fail(&ci, RES_TEMP, "gmail: import: "
			    "the reply opened no upload session on %s",
			    gmail_base(g)), &ci);
		}
	}
	return nrq;
}

enum result
gmail_import(struct gmail *g, struct gmail_item *items, size_t n,
    char **cause)
{
	struct job	*jobs;
	struct gmail_req **rqs;
	size_t		 i, nrq;
	enum result	 r = RES_OK, ri;
	char		*ci = NULL;

	jobs = xcalloc(n + 1, sizeof *jobs);
	rqs = xcalloc(n + 1, sizeof *rqs);
	for (i = 0, nrq = 0; i < n; i++)
		if (job_prepare(g, &jobs[i], &items[i]))
			rqs[nrq++] = &jobs[i].rq;
	gmail_run(g, rqs, nrq);
	if ((nrq = jobs_upload(g, jobs, n, rqs, &r, cause)) > 0)
		gmail_run(g, rqs, nrq);

	for (i = 0; i < n; i++) {
		if (jobs[i].rq.url == NULL)
			continue;		/* decided without a request */
		if (!jobs[i].decided) {
			ri = job_outcome(g, &jobs[i], &ci);
			worse(&r, cause, ri, &ci);
		}
		log_debug("%s: gmail: import: %s%s%s", gmail_account(g),
		    gmail_status_name(jobs[i].it->status),
		    jobs[i].it->id[0] != '\0' ? " " : "", jobs[i].it->id);
		gmail_req_free(&jobs[i].rq);
		free(jobs[i].head);
		free(jobs[i].tail);
	}
	free(rqs);
	free(jobs);
	return r;
}

void
gmail_items_clear(struct gmail_item *items, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(items[i].why);
		items[i].why = NULL;
	}
}
