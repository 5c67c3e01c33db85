/*
 * A leg whose destination is the Gmail API (issue 17, gmail.c) instead of
 * an IMAP server.  The engine around it is the same: the intent is
 * recorded before the request, the outcome after it, and a message goes
 * from the POP3 server only when every leg it was routed to has it.  What
 * differs:
 *
 *   - no session, no mailbox: a handle (gmail_open) and label ids
 *     (gmail_labels), made when the leg gets its first message of a run;
 *   - no settling before the transfer: a row left pending by a run that
 *     died between request and reply is resolved when its message is
 *     fetched again, by asking the API (gmail_find: rfc822msgid and the
 *     date window, compared by content).  Found, it is adopted; not found
 *     and the request younger than GMAIL_SEARCH_LAG (search lags behind
 *     an import), it waits for a later run; else it is imported again.
 *     The same search adopts on first contact, so mail that Gmail's own
 *     fetcher imported before is not imported twice;
 *   - Gmail's message id (16 hex digits) is kept in the row's
 *     uidvalidity (high 32 bits) and uid (low 32 bits), so the ledger's
 *     "one row owns one copy" check serves it unchanged;
 *   - a daily limit or a rate limit longer than the call may wait stops
 *     the leg for this run (its messages wait, the run ends temporary).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"
#include "gmail.h"

bool
leg_is_gmail(const struct leg *g)
{
	return g->ep->gmail != NULL;
}

enum result
gmail_leg_open(struct run *rn, struct leg *g, char **cause)
{
	const char	*names[GMAIL_LABELS_MAX];
	struct gmail_opts o;
	size_t		 n;
	enum result	 r;

	if (g->gm != NULL)
		return RES_OK;
	memset(&o, 0, sizeof o);
	o.ep = g->ep;
	o.base = g->ep->gmail->base;
	o.account = rn->ac->name;
	o.timeout = rn->cf->timeout;
	if ((r = gmail_open(&o, &g->gm, cause)) != RES_OK)
		return r;
	n = config_gmail_label_names(g->ep->gmail, g->want, names,
	    GMAIL_LABELS_MAX);
	g->label_ids = xcalloc(n + 1, sizeof *g->label_ids);
	g->nlabel_ids = n;
	if ((r = gmail_labels(g->gm, names, n, g->label_ids, cause)) !=
	    RES_OK)
		return r;
	g->opened = true;
	return RES_OK;
}

void
gmail_leg_free(struct leg *g)
{
	size_t	 i;

	for (i = 0; i < g->nlabel_ids; i++)
		free(g->label_ids[i]);
	free(g->label_ids);
	g->label_ids = NULL;
	g->nlabel_ids = 0;
	gmail_close(g->gm);
	g->gm = NULL;
}

/* Gmail's id as the row's copy, and back. */
static bool
id_split(const char *id, uint32_t *hi, uint32_t *lo)
{
	char		*end;
	uint64_t	 v = strtoull(id, &end, 16);

	if (end == id || *end != '\0')
		return false;
	*hi = (uint32_t)(v >> 32);
	*lo = (uint32_t)v;
	/* uid 0 means "no copy known" to the ledger. */
	return *lo != 0 || *hi != 0;
}

/* When the newest request for this row went out; 0 if none is known. */
static time_t
last_request(const struct ledger_attempt *a, size_t n, int64_t row)
{
	time_t	 t = 0;
	size_t	 i;

	for (i = 0; i < n; i++)
		if (a[i].msg == row && a[i].created > t)
			t = a[i].created;
	return t;
}

/* One message: is it in Gmail already (and no other row's copy)? */
static enum result
find_one(struct run *rn, struct leg *g, struct slot *s, struct slot_leg *sl,
    const struct ledger_attempt *a, size_t na, char **cause)
{
	struct gmail_probe p;
	char		 msgid[512], **ids = NULL;
	size_t		 n = 0, i;
	uint32_t	 hi, lo;
	int64_t		 owner;
	time_t		 sent;
	enum result	 r;

	memset(&p, 0, sizeof p);
	msg_message_id(s->sp.mem, slot_header(s), msgid, sizeof msgid);
	p.message_id = msgid;
	p.date = s->date;
	p.size = s->sp.size;
	p.sha256 = s->hex;
	p.src.sp = &s->sp;
	if ((r = gmail_find(g->gm, &p, &ids, &n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && sl->st == LG_APPEND; i++) {
		if (!id_split(ids[i], &hi, &lo))
			continue;
		if ((r = ledger_uid_owner(rn->l, hi, lo, &owner, cause)) !=
		    RES_OK)
			break;
		if (owner != 0 && owner != sl->row.id)
			continue;	/* another message's copy */
		sl->st = LG_KNOWN;
		sl->adopted = lo;
		sl->adopted_v = hi;
	}
	gmail_ids_free(ids, n);
	if (r != RES_OK || sl->st != LG_APPEND ||
	    sl->row.state != LEDGER_PENDING)
		return r;
	/* Not found: a request of moments ago may not be searchable yet. */
	sent = last_request(a, na, sl->row.id);
	if (sent != 0 && time(NULL) - sent < GMAIL_SEARCH_LAG) {
		sl->st = LG_WAIT;
		log_info("%s: message %u (UIDL %s): its import into %s a moment "
		    "ago is not found yet; it is looked for again next run",
		    rn->ac->name, rn->msgs[s->msg].num, sl->row.uidl, g->label);
	}
	return RES_OK;
}

/*
 * Before the intents: the batch's messages that a killed run may have
 * imported (their row pending), or that may be there from before (first
 * contact), are looked for.
 */
enum result
gmail_leg_find(struct run *rn, struct leg *g, size_t k, struct slot *b,
    size_t n, char **cause)
{
	struct ledger_attempt *a = NULL;
	size_t		 na = 0, i;
	enum result	 r = RES_OK;
	bool		 any = false;

	for (i = 0; i < n && !any; i++)
		any = b[i].state == SL_FETCHED && b[i].lg[k].st == LG_APPEND &&
		    (g->first || b[i].lg[k].row.state == LEDGER_PENDING);
	if (!any)
		return RES_OK;
	leg_enter(rn, g);
	if ((r = ledger_attempts(rn->l, &a, &na, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		struct slot_leg *sl = &b[i].lg[k];

		if (b[i].state == SL_FETCHED && sl->st == LG_APPEND &&
		    (g->first || sl->row.state == LEDGER_PENDING))
			r = find_one(rn, g, &b[i], sl, a, na, cause);
	}
	free(a);
	return r;
}

/* What the API takes: the message's size. */
void
gmail_leg_prepare(struct slot *s, struct slot_leg *sl)
{
	if (s->sp.size > GMAIL_IMPORT_MAX) {
		sl->st = LG_FAILED;
		free(sl->why);
		sl->why = xprintf("%llu bytes is over the Gmail API's limit of "
		    "%llu", (unsigned long long)s->sp.size,
		    (unsigned long long)GMAIL_IMPORT_MAX);
	}
}

/* One import's status as an APPEND's outcome, for record_outcome. */
static void
outcome_of(struct leg *g, struct gmail_item *gi, struct append_item *it)
{
	uint32_t	 hi, lo;

	free(it->why);
	it->why = gi->why != NULL ? xstrdup(gi->why) : NULL;
	switch (gi->status) {
	case GMAIL_IMPORTED:
		if (id_split(gi->id, &hi, &lo)) {
			it->res.outcome = APPEND_STORED;
			it->res.uidvalidity = hi;
			it->res.uid = lo;
		} else		/* an id we cannot keep: settle it later */
			it->res.outcome = APPEND_UNKNOWN;
		break;
	case GMAIL_UNKNOWN:
		it->res.outcome = APPEND_UNKNOWN;
		break;
	case GMAIL_TOO_BIG:
	case GMAIL_REFUSED:
		it->res.outcome = APPEND_REFUSED;
		break;
	case GMAIL_DAILY_LIMIT:
	case GMAIL_RETRY_AFTER:
	case GMAIL_NOT_DONE:
	default:
		/* Certainly not imported: it waits, the leg stops. */
		it->res.outcome = APPEND_LATER;
		g->full = true;
		break;
	}
}

/*
 * The batch's imports into leg k, done at once (libcurl multi, a few in
 * flight): their outcomes are read by record_outcomes as an APPEND's are.
 */
enum result
gmail_leg_send(struct run *rn, struct leg *g, struct leg_batch *lb,
    struct slot *b, char **cause)
{
	struct gmail_item *gi;
	size_t		 i, unknown = 0;
	enum result	 r;

	gi = xcalloc(lb->n + 1, sizeof *gi);
	for (i = 0; i < lb->n; i++) {
		gi[i].src.sp = &b[lb->slot[i]].sp;
		gi[i].label_ids = (const char *const *)g->label_ids;
		gi[i].nlabels = g->nlabel_ids;
		gi[i].unread = g->ep->gmail->unread;
		gi[i].never_spam = g->ep->gmail->never_mark_spam;
	}
	r = gmail_import(g->gm, gi, lb->n, cause);
	for (i = 0; i < lb->n; i++) {
		outcome_of(g, &gi[i], &lb->items[i]);
		unknown += gi[i].status == GMAIL_UNKNOWN;
	}
	/* Imports whose replies were lost stay pending on POP3: the run is
	 * not done, and the next one looks for them first. */
	if (r == RES_OK && unknown > 0)
		r = fail(cause, RES_TEMP, "gmail: the replies to %zu import%s "
		    "were lost; the next run looks for %s in Gmail before "
		    "importing again", unknown, unknown == 1 ? "" : "s",
		    unknown == 1 ? "it" : "them");
	gmail_items_clear(gi, lb->n);
	free(gi);
	return r;
}
