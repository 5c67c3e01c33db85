/*
 * Moving messages from POP3 to IMAP, in batches, without waiting for a
 * round trip where the protocols allow it:
 *
 *   - POP3 commands go through a queue of expected replies.  With
 *     PIPELINING (RFC 2449) the RETRs of the batches ahead are sent before
 *     the current batch is appended, as many as the measured round trip
 *     and rate want, so the POP3 server works while the IMAP server
 *     stores; without it, each command waits for its reply.
 *   - Each message is normalised and hashed (SHA-256 of all of it) as it
 *     is spooled; that content is what it is known by from then on.
 *   - A batch's intents are recorded in one ledger transaction (each row
 *     pending, each APPEND an attempt with size, hash and UID bound), the
 *     batch is APPENDed as one MULTIAPPEND (RFC 3502) or as pipelined
 *     LITERAL+ APPENDs (RFC 7888), and the outcomes are recorded in one
 *     transaction: two syncs to disk a batch, not two a message.
 *   - While the IMAP server stores one batch, the next is read from POP3,
 *     recorded and sent; replies are read once they have come.  A
 *     batch's intents are on disk before it is sent, its outcomes before
 *     its DELEs: the wire never waits for a commit of another batch.
 *   - A message is marked DEL_SENT in the same commit that records it
 *     imported, and its DELE follows that commit, never precedes it.
 *   - One bad message never holds up the others: a message the server
 *     refuses, or that the POP3 link breaks on, is recorded failed with its
 *     reason and set aside after failing in several runs; the messages
 *     fetched whole before a broken link are still imported.
 *
 * With routing (route.h), a message is fetched once and goes to each leg
 * (a destination's mailbox) it is routed to: each leg has its rows, its
 * intents and its APPENDs, on the leg's own IMAP session, and a message is
 * deleted only once every leg it went to has it.  An account without
 * routing has one leg, and this is the whole story.
 *
 * Memory is bounded: a batch holds at most BATCH_MAX messages and about
 * BATCH_BYTES of them, and each keeps at most SLOT_MEM bytes in memory
 * (the rest goes to a temporary file); what is held is the batch being
 * read and those sent and not answered, up to SENT_MEM (transfer_flow.c
 * says how many are in flight).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"

static void
local_now(time_t *t, int *tz)
{
	struct tm	 tm;

	*t = time(NULL);
	localtime_r(t, &tm);
	*tz = (int)(tm.tm_gmtoff / 60);
}

/* ---- the queue of POP3 replies ---- */

/* ---- legs that cannot take mail in this run ---- */

/*
 * A leg's server failed (login refused, connection lost): with other legs
 * to serve, its messages wait for a later run (their rows say where they
 * go) and the others go on; the run ends with the leg's failure.  Every
 * leg on the same session is down with it.  An account with one leg has
 * nothing to go on with: the failure ends the run at once, as it always
 * did.  RES_OK: go on; else the run ends with r.
 */
static enum result
leg_down(struct run *rn, struct leg *g, enum result r, char **cause)
{
	struct session	*ss = g->ss;
	size_t		 k, up = 0;

	if (rn->nlegs == 1)
		return r;
	for (k = 0; k < rn->nlegs; k++) {
		struct leg *o = &rn->legs[k];

		if (o == g || (ss != NULL && o->ss == ss)) {
			if (o->down == RES_OK) {
				o->down = r;
				o->down_why = xstrdup(*cause != NULL ?
				    *cause : "failed");
			}
		}
		up += o->down == RES_OK && !o->full;
	}
	log_warn("%s: destination %s: %s; its messages wait for a later "
	    "run", rn->ac->name, g->label, *cause != NULL ? *cause : "failed");
	if (up == 0)
		return r;
	free(*cause);
	*cause = NULL;
	return RES_OK;
}

/*
 * A Gmail leg that stopped in the middle of a batch (a daily limit, the
 * token refused): the batch's outcomes are recorded all the same (some
 * were imported), the leg takes nothing more this run, and the run ends
 * with its failure (legs_result).
 */
static enum result
gmail_stopped(struct run *rn, struct leg *g, enum result r, char **cause)
{
	if (g->down == RES_OK) {
		g->down = r;
		g->down_why = xstrdup(*cause != NULL ? *cause : "failed");
	}
	if (rn->nlegs > 1)
		log_warn("%s: destination %s: %s; its messages wait for a "
		    "later run", rn->ac->name, g->label, g->down_why);
	free(*cause);
	*cause = NULL;
	return RES_OK;
}

/* Can this leg take mail in this run? */
static bool
leg_up(const struct leg *g)
{
	return g->down == RES_OK && !g->full;
}

/* ---- deciding what a fetched message is ---- */

static void
leg_fail(struct slot_leg *sl, char *why)
{
	sl->st = LG_FAILED;
	free(sl->why);
	sl->why = why;
}

/* Ready a message for a leg's APPEND: what that server takes. */
static void
prepare(struct leg *g, struct slot *s, struct slot_leg *sl)
{
	const struct imap_caps *caps;

	if (leg_is_gmail(g)) {
		gmail_leg_prepare(s, sl);
		return;
	}
	caps = imap_caps(g->ss->im);

	/*
	 * NUL bytes cannot travel in an ordinary IMAP literal; with BINARY
	 * (RFC 3516) they go as literal8, without it the message stays on
	 * the POP3 server.
	 */
	if (s->norm.nuls > 0 && !caps->binary)
		leg_fail(sl, xprintf("it has %llu NUL bytes and the IMAP server "
		    "offers no BINARY extension to store them",
		    (unsigned long long)s->norm.nuls));
	else if (caps->appendlimit != 0 && s->sp.size > caps->appendlimit)
		leg_fail(sl, xprintf("%llu bytes is over the IMAP server's "
		    "APPENDLIMIT of %llu", (unsigned long long)s->sp.size,
		    (unsigned long long)caps->appendlimit));
}

/* First contact: the batch's messages already in a leg are adopted. */
static enum result
adopt_slots(struct run *rn, struct leg *g, size_t k, struct slot *b,
    size_t n, char **cause)
{
	struct adopt_query *q;
	size_t		 i, m = 0;
	enum result	 r;

	if (g->adopt == NULL)
		return RES_OK;
	leg_enter(rn, g);
	q = xcalloc(n + 1, sizeof *q);
	for (i = 0; i < n; i++) {
		if (b[i].lg[k].st != LG_APPEND)
			continue;
		q[m].size = b[i].sp.size;
		msg_message_id(b[i].sp.mem, slot_header(&b[i]), q[m].msgid,
		    sizeof q[m].msgid);
		q[m++].hex = b[i].hex;
	}
	r = adopt_batch(rn, q, m, cause);
	for (i = 0, m = 0; i < n && r == RES_OK; i++) {
		if (b[i].lg[k].st != LG_APPEND)
			continue;
		if ((b[i].lg[k].adopted = q[m++].uid) != 0)
			b[i].lg[k].st = LG_KNOWN;
	}
	free(q);
	return r;
}

/*
 * A leg about to get its first message of this run: log in, STATUS (and
 * CREATE) its mailbox, and on first contact learn what is there.  A
 * failure of its server puts it down (leg_down).
 */
static enum result
leg_ready(struct run *rn, struct leg *g, char **cause)
{
	enum result	 r;

	if (!leg_up(g) || (g->opened && (!g->first || g->adopt != NULL ||
	    leg_is_gmail(g))))
		return RES_OK;
	if (leg_is_gmail(g)) {
		if ((r = gmail_leg_open(rn, g, cause)) != RES_OK)
			return leg_down(rn, g, r, cause);
		return RES_OK;
	}
	if ((r = leg_imap(rn, g, false, cause)) != RES_OK)
		return leg_down(rn, g, r, cause);
	if (g->first && g->adopt == NULL) {
		leg_enter(rn, g);
		if ((r = adopt_load(rn, cause)) != RES_OK)
			return leg_down(rn, g, r, cause);
	}
	return RES_OK;
}

/* ---- batches ---- */

/* The next batch of todo[from..]: its end index. */
static size_t
batch_end(struct run *rn, const unsigned int *todo, size_t ntodo,
    size_t from)
{
	uint64_t	 bytes = 0;
	size_t		 i;

	for (i = from; i < ntodo && i - from < BATCH_MAX; i++) {
		bytes += rn->msgs[todo[i]].size;
		if (i > from && bytes > BATCH_BYTES)
			break;
	}
	return i;
}

static void
slot_clear(struct run *rn, struct slot *s)
{
	size_t	 k;

	s->dele = s->marked = false;
	memset(&s->info, 0, sizeof s->info);
	free(s->why);
	s->why = NULL;
	for (k = 0; k < rn->nlegs; k++) {
		free(s->lg[k].why);
		memset(&s->lg[k], 0, sizeof s->lg[k]);
	}
}

/* Ask for the next batch of todo[*next..]; *next moves past it. */
enum result
request_batch(struct run *rn, const unsigned int *todo, size_t ntodo,
    size_t *next, struct batch *bt, char **cause)
{
	enum result	 r;
	size_t		 i;

	bt->from = *next;
	bt->to = batch_end(rn, todo, ntodo, *next);
	*next = bt->to;
	bt->bytes = 0;
	for (i = bt->from; i < bt->to; i++) {
		struct slot *s = &bt->b[i - bt->from];

		bt->bytes += rn->msgs[todo[i]].size;
		s->msg = todo[i];
		s->state = SL_SENT;
		slot_clear(rn, s);
		if ((r = pq_push(rn, PQ_RETR, todo[i], (int)(s - rn->slots), 0,
		    cause)) != RES_OK)
			return r;
	}
	return RES_OK;
}

/* Does any message of the batch go to leg k? */
static bool
leg_wanted(const struct batch *bt, size_t k)
{
	size_t	 i;

	for (i = 0; i < bt->to - bt->from; i++)
		if (bt->b[i].lg != NULL && bt->b[i].lg[k].st == LG_APPEND &&
		    (bt->b[i].state == SL_FETCHED))
			return true;
	return false;
}

/* Each leg of the batch opened, its first contact's copies adopted, and
 * each message made ready for its server (or waiting, if the leg is
 * down). */
static enum result
ready_legs(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 i, k, n = bt->to - bt->from;
	enum result	 r;

	for (k = 0; k < rn->nlegs; k++) {
		struct leg *g = &rn->legs[k];

		if (!leg_wanted(bt, k))
			continue;
		if ((r = leg_ready(rn, g, cause)) != RES_OK)
			return r;
		if (leg_up(g) && leg_is_gmail(g))
			r = gmail_leg_find(rn, g, k, bt->b, n, cause);
		else if (leg_up(g))
			r = adopt_slots(rn, g, k, bt->b, n, cause);
		if (r != RES_OK && (r = leg_down(rn, g, r, cause)) != RES_OK)
			return r;
		for (i = 0; i < n; i++) {
			struct slot_leg *sl = &bt->b[i].lg[k];

			if (bt->b[i].state != SL_FETCHED ||
			    sl->st != LG_APPEND)
				continue;
			if (!leg_up(g))
				sl->st = LG_WAIT;
			else
				prepare(g, &bt->b[i], sl);
		}
	}
	return RES_OK;
}

/* Send leg k's APPENDs of the batch. */
static enum result
send_leg(struct run *rn, struct batch *bt, size_t k, char **cause)
{
	struct leg	 *g = &rn->legs[k];
	struct leg_batch *lb = &bt->lb[k];
	size_t		  i, n = bt->to - bt->from;
	enum result	  r;

	lb->n = 0;
	lb->sent = false;
	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s->state != SL_FETCHED || s->lg[k].st != LG_APPEND)
			continue;
		lb->items[lb->n].sp = &s->sp;
		lb->items[lb->n].date = s->date;
		lb->items[lb->n].tz = s->tz;
		lb->items[lb->n].binary = s->norm.nuls > 0;
		lb->items[lb->n].flags = s->lg[k].flags;
		lb->items[lb->n].res.outcome = APPEND_UNKNOWN;
		lb->slot[lb->n++] = i;
	}
	if (lb->n == 0)
		return RES_OK;
	if (leg_is_gmail(g)) {
		/* Done at once; its outcomes are recorded as replies are. */
		if ((r = gmail_leg_send(rn, g, lb, bt->b, cause)) != RES_OK)
			return gmail_stopped(rn, g, r, cause);
		return RES_OK;
	}
	r = imap_append_send(g->ss->im, g->wire, rn->ac->flags, lb->items,
	    lb->n, &lb->ab, cause);
	if (r != RES_OK)
		return leg_down(rn, g, r, cause);
	lb->sent = true;
	return RES_OK;
}

/* Decide, record the intents and send the batch; replies are read later. */
enum result
send_batch(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 i, k, n = bt->to - bt->from;
	enum result	 r;

	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s->state != SL_FETCHED && s->state != SL_FAILED)
			continue;
		if ((r = classify(rn, s, cause)) != RES_OK)
			return r;
		if (s->state == SL_FETCHED &&
		    !msg_date(s->sp.mem, slot_header(s), &s->date, &s->tz))
			local_now(&s->date, &s->tz);
		/* Content said it is new (or failed as a new one). */
		if (rn->plan[s->msg].act == PA_VERIFY && slot_new(rn, s))
			rn->st->fresh++;
	}
	if ((r = ready_legs(rn, bt, cause)) != RES_OK ||
	    (r = record_intents(rn, bt->b, n, cause)) != RES_OK ||
	    (r = push_deles(rn, bt->b, n, cause)) != RES_OK)
		return r;
	for (k = 0; k < rn->nlegs; k++)
		if ((r = send_leg(rn, bt, k, cause)) != RES_OK)
			return r;
	return RES_OK;
}

/* Read leg k's replies to the batch; a missing mailbox is made once. */
static enum result
recv_leg(struct run *rn, struct batch *bt, size_t k, char **cause)
{
	struct leg	 *g = &rn->legs[k];
	struct leg_batch *lb = &bt->lb[k];
	bool		  create = false;
	size_t		  i;
	enum result	  r;

	if (!lb->sent)
		return RES_OK;
	lb->sent = false;
	r = imap_append_recv(g->ss->im, lb->ab, cause);
	lb->ab = NULL;
	if (r != RES_OK)
		return r;
	for (i = 0; i < lb->n; i++)
		create = create || lb->items[i].res.outcome == APPEND_TRYCREATE;
	if (!create)
		return RES_OK;
	/* The next batch, already sent, is refused too and comes here. */
	if (!g->created && (r = imap_create(g->ss->im, g->mailbox,
	    cause)) != RES_OK)
		return r;
	g->created = true;
	/* Nothing was stored (TRYCREATE): append them all again. */
	return imap_append_many(g->ss->im, g->wire, rn->ac->flags,
	    lb->items, lb->n, cause);
}

/* The server's answer to one message's APPEND into leg k, recorded. */
static enum result
record_outcome(struct run *rn, size_t k, struct slot *s,
    struct append_item *it, struct outcome *oc, char **cause)
{
	struct leg	*g = &rn->legs[k];
	struct slot_leg	*sl = &s->lg[k];
	uint32_t	 v = g->mb.uidvalidity;
	enum result	 r;

	leg_enter(rn, g);
	switch (it->res.outcome) {
	case APPEND_STORED:
		if (it->res.uid != 0) {
			if (it->res.uidvalidity != 0)
				v = g->mb.uidvalidity = it->res.uidvalidity;
			if (it->res.uid >= g->lo_uid)
				g->lo_uid = it->res.uid + 1;
		}
		if ((r = ledger_stored(rn->l, &sl->row, sl->attempt, v,
		    it->res.uid, cause)) != RES_OK)
			return r;
		sl->st = LG_KNOWN;
		rn->st->imported++;
		rn->st->bytes += s->sp.size;
		log_debug("%s: message %u (UIDL %s) imported%s%s, %llu bytes",
		    rn->ac->name, rn->msgs[s->msg].num, sl->row.uidl,
		    rn->nlegs > 1 ? " into " : "", rn->nlegs > 1 ? g->label : "",
		    (unsigned long long)s->sp.size);
		return RES_OK;
	case APPEND_OVERQUOTA:
		/* NO: nothing stored.  It stays for a later run. */
		oc->overquota = true;
		g->full = true;
		if (oc->quota_why == NULL && it->why != NULL)
			oc->quota_why = xstrdup(it->why);
		sl->st = LG_WAIT;
		return ledger_unsent(rn->l, &sl->row, sl->attempt, cause);
	case APPEND_LATER:
		/* Certainly not stored (a Gmail limit): a later run. */
		sl->st = LG_WAIT;
		return ledger_unsent(rn->l, &sl->row, sl->attempt, cause);
	default:
		leg_fail(sl, xstrdup(it->why != NULL ? it->why : "refused"));
		if ((r = ledger_failed(rn->l, &sl->row, sl->attempt, sl->why,
		    &s->info, cause)) == RES_OK)
			message_failed(rn, s, k);
		return r;
	}
}

/* Record what became of each message, in one commit. */
static enum result
record_outcomes(struct run *rn, struct batch *bt, struct outcome *oc,
    char **cause)
{
	size_t		 i, k, n = bt->to - bt->from;
	enum result	 r;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
		struct leg_batch *lb = &bt->lb[k];

		for (i = 0; i < lb->n && r == RES_OK; i++)
			if (lb->items[i].res.outcome != APPEND_UNKNOWN)
				r = record_outcome(rn, k, &bt->b[lb->slot[i]],
				    &lb->items[i], oc, cause);
		lb->n = 0;
	}
	for (i = 0; i < n && r == RES_OK; i++)
		if (bt->b[i].state == SL_FETCHED)
			r = mark_dele(rn, &bt->b[i], cause);
	leg_enter(rn, &rn->legs[0]);
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

/* A sent batch: its replies, its outcomes on disk, then its DELEs. */
enum result
finish_batch(struct run *rn, struct batch *bt, struct outcome *oc,
    char **cause)
{
	size_t		 i, k, n = bt->to - bt->from;
	enum result	 r;

	for (k = 0; k < rn->nlegs; k++) {
		if ((r = recv_leg(rn, bt, k, cause)) == RES_OK)
			continue;
		/* The leg's link failed: its outcomes stay unknown (the
		 * intents are on disk; the next run settles them). */
		for (i = 0; i < bt->lb[k].n; i++)
			bt->lb[k].items[i].res.outcome = APPEND_UNKNOWN;
		if ((r = leg_down(rn, &rn->legs[k], r, cause)) != RES_OK)
			return r;
	}
	if ((r = record_outcomes(rn, bt, oc, cause)) != RES_OK)
		return r;
	/*
	 * Imported is on disk: only now may the POP3 copies go.  Over quota,
	 * nothing is deleted this run (no QUIT): the user will want to make
	 * room and may look for the mail where it was.
	 */
	if (!oc->overquota && (r = push_deles(rn, bt->b, n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n; i++)
		if (bt->b[i].state != SL_FREE)
			rn->st->done_bytes += rn->msgs[bt->b[i].msg].size;
	rn->st->done += (unsigned int)n;
	if (rn->opts->progress != NULL)
		rn->opts->progress(rn->opts->progress_arg, rn->st);
	return RES_OK;
}

/* Read the batch's messages (and the replies queued before them). */
enum result
read_batch(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 n = bt->to - bt->from;
	enum result	 r = RES_OK;

	while (r == RES_OK && rn->q->head < rn->q->tail &&
	    bt->b[n - 1].state == SL_SENT)
		r = pq_pop(rn, cause);
	return r;
}

/*
 * The POP3 link broke while bt was read: the messages fetched whole go on
 * to IMAP; the one it broke on failed (set aside if it keeps doing that);
 * the rest were not tried.  *broke keeps the reason for the run's end.
 */
void
salvage(struct run *rn, struct batch *bt, char *why, char **broke)
{
	size_t	 i, n = bt->to - bt->from;

	rn->pop3_dead = true;
	*broke = why;
	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s - rn->slots == rn->q->broke)
			slot_fail(s, xprintf("the POP3 connection broke while "
			    "it was read (%s)", why));
		else if (s->state == SL_SENT)
			s->state = SL_FREE;
	}
	/* The broken one's partial header names it in the report. */
	rn->q->head = rn->q->tail;
}

/* The messages the plan wants fetched, and the DELEs it wants now. */
enum result
transfer_plan(struct run *rn, unsigned int *todo, size_t *ntodo,
    char **cause)
{
	struct ledger_msg m;
	int64_t		 rows[ROUTE_TARGETS_MAX];
	unsigned int	 i;
	size_t		 k, nr;
	enum result	 r = RES_OK;
	bool		 any = false;

	*ntodo = 0;
	for (i = 0; i < rn->nmsgs; i++)
		if (rn->plan[i].act == PA_IMPORT || rn->plan[i].act == PA_VERIFY) {
			todo[(*ntodo)++] = i;
			rn->st->todo_bytes += rn->msgs[i].size;
		} else if (rn->plan[i].act == PA_DELE)
			any = true;
	rn->st->todo = (unsigned int)*ntodo;
	if (!any)
		return RES_OK;
	/* Imported in an earlier run: DEL_SENT on disk, then the DELEs. */
	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++) {
		if (rn->plan[i].act != PA_DELE)
			continue;
		for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
			memset(&m, 0, sizeof m);
			if ((m.id = rn->legs[k].plan[i].row) != 0)
				r = ledger_deleted(rn->l, &m, DEL_SENT, cause);
		}
	}
	if (r != RES_OK || (r = ledger_commit(rn->l, cause)) != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++) {
		if (rn->plan[i].act != PA_DELE)
			continue;
		for (k = 0, nr = 0; k < rn->nlegs; k++)
			if (rn->legs[k].plan[i].row != 0)
				rows[nr++] = rn->legs[k].plan[i].row;
		r = pq_push(rn, PQ_DELE, i, -1, dele_marked(rn, i, rows, nr),
		    cause);
	}
	return r;
}

void
transfer_init(struct run *rn, struct batch *bt)
{
	size_t	 i;

	rn->q = xcalloc(1, sizeof *rn->q);
	rn->q->broke = -1;
	rn->slots = xcalloc(NSLOTS, sizeof *rn->slots);
	for (i = 0; i < NSLOTS; i++) {
		spool_init(&rn->slots[i].sp, SLOT_MEM, rn->cf->state_dir);
		rn->slots[i].lg = xcalloc(rn->nlegs, sizeof *rn->slots[i].lg);
	}
	for (i = 0; i < NGROUPS; i++) {
		bt[i].b = &rn->slots[i * BATCH_MAX];
		bt[i].lb = xcalloc(rn->nlegs, sizeof *bt[i].lb);
	}
}

/* The legs' outstanding batches forgotten, their buffers freed. */
void
batches_free(struct run *rn, struct batch *bt)
{
	size_t	 i, j, k;

	for (i = 0; i < NGROUPS; i++) {
		for (k = 0; k < rn->nlegs && bt[i].lb != NULL; k++) {
			imap_append_abandon(bt[i].lb[k].ab);
			for (j = 0; j < BATCH_MAX; j++)
				free(bt[i].lb[k].items[j].why);
		}
		free(bt[i].lb);
	}
}

/* The worst failure of a leg that went down, for the run's end. */
static enum result
legs_result(struct run *rn, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 k;

	for (k = 0; k < rn->nlegs; k++) {
		struct leg *g = &rn->legs[k];

		if (g->down == RES_OK || (r != RES_OK &&
		    result_worst(r, g->down) == r))
			continue;
		r = g->down;
		free(*cause);
		*cause = xprintf("destination %s: %s", g->label, g->down_why);
	}
	return r;
}

/* How the run ends, once every batch sent has been answered. */
enum result
transfer_end(struct run *rn, struct outcome *oc, char *broke, size_t ntodo,
    char **cause)
{
	enum result	 r;

	if (broke != NULL) {
		free(*cause);
		*cause = broke;
		return RES_TEMP;
	}
	if (oc->overquota) {
		rn->hold_deletes = true;
		return fail(cause, RES_TEMP, "%s", oc->quota_why != NULL ?
		    oc->quota_why : "imap: over quota");
	}
	if (run_stopping(rn) && rn->st->done < ntodo) {
		log_info("%s: stopping: asked to (%u of %zu new messages done)",
		    rn->ac->name, rn->st->done, ntodo);
		if ((r = transfer_drain(rn, cause)) != RES_OK)
			return r;
		return fail(cause, RES_TEMP, "stopping on request after the "
		    "batch in flight: %zu of %zu new messages to go; the next "
		    "run goes on", ntodo - rn->st->done, ntodo);
	}
	if ((r = transfer_drain(rn, cause)) != RES_OK)
		return r;
	if ((r = legs_result(rn, cause)) != RES_OK)
		return r;
	if (rn->st->failed > 0)
		return fail(cause, RES_MSG, "%u message%s not imported (kept on "
		    "the POP3 server, tried again next run)", rn->st->failed,
		    rn->st->failed == 1 ? "" : "s");
	return RES_OK;
}

/* May the transfer go on to another batch? */
bool
legs_any_up(const struct run *rn)
{
	size_t	 k;

	for (k = 0; k < rn->nlegs; k++)
		if (leg_up(&rn->legs[k]))
			return true;
	return false;
}

void
transfer_free(struct run *rn)
{
	size_t	 i, k;

	if (rn->slots != NULL)
		for (i = 0; i < NSLOTS; i++) {
			spool_free(&rn->slots[i].sp);
			free(rn->slots[i].why);
			for (k = 0; k < rn->nlegs; k++)
				free(rn->slots[i].lg[k].why);
			free(rn->slots[i].lg);
			if (rn->slots[i].h != NULL)
				hash_final(rn->slots[i].h, rn->slots[i].hex);
		}
	free(rn->slots);
	if (rn->q != NULL)
		free(rn->q->e);
	free(rn->q);
	rn->slots = NULL;
	rn->q = NULL;
}
