/*
 * Moving messages from POP3 to IMAP, in batches, without waiting for a
 * round trip where the protocols allow it:
 *
 *   - POP3 commands go through a queue of expected replies.  With
 *     PIPELINING (RFC 2449) the RETRs of the next batch are sent before the
 *     current batch is appended, so the POP3 server works while the IMAP
 *     server stores; without it, each command waits for its reply.
 *   - A batch's intents are recorded in one ledger transaction, the batch
 *     is APPENDed as one MULTIAPPEND (RFC 3502) or as pipelined LITERAL+
 *     APPENDs (RFC 7888), and the outcomes are recorded in one transaction:
 *     two syncs to disk a batch, not two a message.
 *   - While the IMAP server stores one batch, the next is read from POP3,
 *     recorded and sent; only then is the first one's reply read.  So a
 *     batch is always on its way and neither server waits for the other
 *     or for a round trip.  The intents of both batches are on disk before
 *     either is sent.
 *   - DELEs follow the batch's "imported" commit, never precede it.
 *
 * Memory is bounded: a batch holds at most BATCH_MAX messages and about
 * BATCH_BYTES of them, and each keeps at most SLOT_MEM bytes in memory
 * (the rest goes to a temporary file); three batches are held at most
 * (being stored, being read, asked for).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "run.h"

#define BATCH_MAX	32
#define BATCH_BYTES	(8 * 1024 * 1024)
#define SLOT_MEM	(128 * 1024)
#define NGROUPS		3		/* stored, read, asked for */
#define NSLOTS		(NGROUPS * BATCH_MAX)

enum slot_state { SL_FREE, SL_SENT, SL_FETCHED, SL_FAILED };

struct slot {
	unsigned int	 msg;		/* index into run.msgs */
	enum slot_state	 state;
	struct spool	 sp;
	struct msg_norm	 norm;
	char		*why;		/* SL_FAILED: the reason */
	time_t		 date;
	int		 tz;
};

enum pq_kind { PQ_RETR, PQ_DELE };

struct pq_entry {
	enum pq_kind	 kind;
	unsigned int	 msg;
	int		 slot;		/* PQ_RETR only */
};

struct popq {
	struct pq_entry	*e;
	size_t		 head, tail, cap;
};

/* One batch: todo[from..to) in a group of slots. */
struct batch {
	size_t		 from, to;
	struct slot	*b;
	struct append_item *items;	/* BATCH_MAX of them */
	size_t		 nitems;
	struct append_batch *ab;	/* sent, replies not yet read */
};

/* How a run's batches ended so far. */
struct outcome {
	bool		 overquota;
	char		*quota_why;
};

static enum result
spool_sink(void *arg, const char *p, size_t n, char **cause)
{
	return spool_write(arg, p, n, cause);
}

static enum result
slot_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct slot	*s = arg;

	return msg_norm_feed(&s->norm, p, n, spool_sink, &s->sp, cause);
}

static void
local_now(time_t *t, int *tz)
{
	struct tm	 tm;

	*t = time(NULL);
	localtime_r(t, &tm);
	*tz = (int)(tm.tm_gmtoff / 60);
}

/* ---- the queue of POP3 replies ---- */

/* Read the reply at the head of the queue. */
static enum result
pq_pop(struct run *rn, char **cause)
{
	struct popq	*q = rn->q;
	struct pq_entry	 e = q->e[q->head];
	const struct pop3_msg *m = &rn->msgs[e.msg];
	char		*why = NULL;
	enum result	 r;

	q->head++;
	if (e.kind == PQ_DELE) {
		r = pop3_dele_read(rn->p, m->num, &why);
		if (r == RES_OK) {
			rn->dele = xrealloc(rn->dele, (rn->ndele + 1) *
			    sizeof *rn->dele);
			rn->dele[rn->ndele++] = m->num;
		} else if (r == RES_MSG) {
			log_warn("%s: %s", rn->ac->name, why);
			r = RES_OK;
		} else {
			free(*cause);
			*cause = why;
			return r;
		}
		free(why);
		return r;
	}

	struct slot *s = &rn->slots[e.slot];

	spool_reset(&s->sp);
	msg_norm_init(&s->norm);
	r = pop3_retr_read(rn->p, m->num, m->size, slot_sink, s, &why);
	if (r == RES_OK)
		r = msg_norm_finish(&s->norm, spool_sink, &s->sp, &why);
	if (r == RES_MSG) {
		/* -ERR to RETR: this message only; it stays on the server. */
		s->state = SL_FAILED;
		s->why = why;
		return RES_OK;
	}
	if (r != RES_OK) {
		free(*cause);
		*cause = why;
		return r;
	}
	s->state = SL_FETCHED;
	return RES_OK;
}

/* Send a command and queue its reply; without PIPELINING, read it now. */
static enum result
pq_push(struct run *rn, enum pq_kind kind, unsigned int msg, int slot,
    char **cause)
{
	struct popq	*q = rn->q;
	enum result	 r;

	if (q->head == q->tail)
		q->head = q->tail = 0;
	if (q->tail == q->cap) {
		q->cap = q->cap == 0 ? 2 * NSLOTS : q->cap * 2;
		q->e = xrealloc(q->e, q->cap * sizeof *q->e);
	}
	r = kind == PQ_RETR ? pop3_retr_send(rn->p, rn->msgs[msg].num, cause) :
	    pop3_dele_send(rn->p, rn->msgs[msg].num, cause);
	if (r != RES_OK)
		return r;
	q->e[q->tail].kind = kind;
	q->e[q->tail].msg = msg;
	q->e[q->tail].slot = slot;
	q->tail++;
	if (!pop3_caps(rn->p)->pipelining)
		return pq_pop(rn, cause);
	return RES_OK;
}

enum result
transfer_drain(struct run *rn, char **cause)
{
	enum result	 r;

	while (rn->q != NULL && rn->q->head < rn->q->tail)
		if ((r = pq_pop(rn, cause)) != RES_OK)
			return r;
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

/* Ask for the next batch of todo[*next..]; *next moves past it. */
static enum result
request_batch(struct run *rn, const unsigned int *todo, size_t ntodo,
    size_t *next, struct batch *bt, char **cause)
{
	enum result	 r;
	size_t		 i;

	bt->from = *next;
	bt->to = batch_end(rn, todo, ntodo, *next);
	*next = bt->to;
	for (i = bt->from; i < bt->to; i++) {
		struct slot *s = &bt->b[i - bt->from];

		s->msg = todo[i];
		s->state = SL_SENT;
		free(s->why);
		s->why = NULL;
		if ((r = pq_push(rn, PQ_RETR, todo[i],
		    (int)(s - rn->slots), cause)) != RES_OK)
			return r;
	}
	return RES_OK;
}

static void
message_failed(struct run *rn, const struct pop3_msg *m, const char *why)
{
	rn->st->failed++;
	log_warn("%s: message %u (UIDL %s, %llu bytes) not imported: %s",
	    rn->ac->name, m->num, m->uidl, (unsigned long long)m->size, why);
}

/* Date, size limit: ready the fetched messages for the APPEND. */
static void
prepare(struct run *rn, struct slot *s)
{
	const struct imap_caps *caps = imap_caps(rn->im);
	size_t		 hlen;

	if (s->state != SL_FETCHED)
		return;
	if ((hlen = msg_header_end(s->sp.mem, s->sp.memlen)) == 0)
		hlen = s->sp.memlen;
	if (!msg_date(s->sp.mem, hlen, &s->date, &s->tz))
		local_now(&s->date, &s->tz);
	/*
	 * NUL bytes cannot travel in an ordinary IMAP literal; with BINARY
	 * (RFC 3516) they go as literal8, without it the message stays on
	 * the POP3 server.
	 */
	if (s->norm.nuls > 0 && !caps->binary) {
		s->state = SL_FAILED;
		s->why = xprintf("it has %llu NUL bytes and the IMAP server "
		    "offers no BINARY extension to store them",
		    (unsigned long long)s->norm.nuls);
		return;
	}
	if (caps->appendlimit != 0 && s->sp.size > caps->appendlimit) {
		s->state = SL_FAILED;
		s->why = xprintf("%llu bytes is over the IMAP server's "
		    "APPENDLIMIT of %llu", (unsigned long long)s->sp.size,
		    (unsigned long long)caps->appendlimit);
	}
}

/* Record the intents (and the failures found so far) in one commit. */
static enum result
record_intents(struct run *rn, struct slot *b, size_t n, char **cause)
{
	struct ledger_pending	 in;
	enum result		 r = RES_OK;
	size_t			 i;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		const struct pop3_msg *m = &rn->msgs[b[i].msg];

		if (b[i].state == SL_FAILED) {
			message_failed(rn, m, b[i].why);
			r = ledger_failed(rn->l, m->uidl, b[i].why, cause);
			continue;
		}
		memset(&in, 0, sizeof in);
		snprintf(in.uidl, sizeof in.uidl, "%s", m->uidl);
		in.size = b[i].sp.size;
		hash_hex(b[i].sp.mem, b[i].sp.memlen < PREFIX_LEN ?
		    b[i].sp.memlen : PREFIX_LEN, in.hash);
		in.uidvalidity = rn->mb.uidvalidity;
		in.lo_uid = rn->lo_uid;
		r = ledger_intent(rn->l, &in, cause);
	}
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

/* Record the intents and send the batch; its replies are read later. */
static enum result
send_batch(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 i, n = bt->to - bt->from, k = 0;
	enum result	 r;

	for (i = 0; i < n; i++)
		prepare(rn, &bt->b[i]);
	if ((r = record_intents(rn, bt->b, n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s->state != SL_FETCHED)
			continue;
		bt->items[k].sp = &s->sp;
		bt->items[k].date = s->date;
		bt->items[k].tz = s->tz;
		bt->items[k].binary = s->norm.nuls > 0;
		k++;
	}
	bt->nitems = k;
	return imap_append_send(rn->im, rn->ac->imap.mailbox, rn->ac->flags,
	    bt->items, k, &bt->ab, cause);
}

/* Read a batch's replies; a missing mailbox is made once a run. */
static enum result
recv_batch(struct run *rn, struct batch *bt, char **cause)
{
	bool		 create = false;
	size_t		 i;
	enum result	 r;

	r = imap_append_recv(rn->im, bt->ab, cause);
	bt->ab = NULL;
	if (r != RES_OK)
		return r;
	for (i = 0; i < bt->nitems; i++)
		create = create || bt->items[i].res.outcome == APPEND_TRYCREATE;
	if (!create)
		return RES_OK;
	/* The next batch, already sent, is refused too and comes here. */
	if (!rn->created && (r = imap_create(rn->im, rn->ac->imap.mailbox,
	    cause)) != RES_OK)
		return r;
	rn->created = true;
	/* Nothing was stored (TRYCREATE): append them all again. */
	return imap_append_many(rn->im, rn->ac->imap.mailbox, rn->ac->flags,
	    bt->items, bt->nitems, cause);
}

/* Record what became of each message, in one commit. */
static enum result
record_outcomes(struct run *rn, struct batch *bt, struct outcome *oc,
    char **cause)
{
	struct slot	*b = bt->b;
	size_t		 i, k = 0, n = bt->to - bt->from;
	enum result	 r;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		const struct pop3_msg *m = &rn->msgs[b[i].msg];
		struct append_item *it;

		if (b[i].state != SL_FETCHED)
			continue;
		it = &bt->items[k++];
		switch (it->res.outcome) {
		case APPEND_STORED:
			if (it->res.uid != 0) {
				if (it->res.uidvalidity != 0)
					rn->mb.uidvalidity =
					    it->res.uidvalidity;
				if (it->res.uid >= rn->lo_uid)
					rn->lo_uid = it->res.uid + 1;
			}
			r = ledger_imported(rn->l, m->uidl, rn->mb.uidvalidity,
			    it->res.uid, cause);
			rn->st->imported++;
			rn->st->bytes += b[i].sp.size;
			log_debug("%s: message %u (UIDL %s) imported, %llu "
			    "bytes", rn->ac->name, m->num, m->uidl,
			    (unsigned long long)b[i].sp.size);
			break;
		case APPEND_OVERQUOTA:
			/* NO: nothing stored.  It stays for a later run. */
			oc->overquota = true;
			if (oc->quota_why == NULL && it->why != NULL)
				oc->quota_why = xstrdup(it->why);
			b[i].state = SL_FREE;
			r = ledger_forget(rn->l, m->uidl, cause);
			break;
		default:
			b[i].state = SL_FAILED;
			message_failed(rn, m, it->why != NULL ? it->why :
			    "refused");
			r = ledger_failed(rn->l, m->uidl, it->why != NULL ?
			    it->why : "refused", cause);
			break;
		}
	}
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

/* A sent batch: its replies, its outcomes on disk, then its DELEs. */
static enum result
finish_batch(struct run *rn, struct batch *bt, struct outcome *oc,
    char **cause)
{
	size_t		 i, n = bt->to - bt->from;
	enum result	 r;

	if ((r = recv_batch(rn, bt, cause)) != RES_OK ||
	    (r = record_outcomes(rn, bt, oc, cause)) != RES_OK)
		return r;
	/*
	 * Imported is on disk: only now may the POP3 copies go.  Over quota,
	 * nothing is deleted this run (no QUIT): the user will want to make
	 * room and may look for the mail where it was.
	 */
	for (i = 0; i < n && !rn->ac->keep && !oc->overquota; i++)
		if (bt->b[i].state == SL_FETCHED && (r = pq_push(rn, PQ_DELE,
		    bt->b[i].msg, -1, cause)) != RES_OK)
			return r;
	for (i = 0; i < n; i++)
		rn->st->done_bytes += rn->msgs[bt->b[i].msg].size;
	rn->st->done += (unsigned int)n;
	if (account_progress != NULL)
		account_progress(rn->st);
	return RES_OK;
}

/* Read the batch's messages (and the replies queued before them). */
static enum result
read_batch(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 n = bt->to - bt->from;
	enum result	 r = RES_OK;

	while (r == RES_OK && rn->q->head < rn->q->tail &&
	    bt->b[n - 1].state == SL_SENT)
		r = pq_pop(rn, cause);
	return r;
}

enum result
transfer_all(struct run *rn, char **cause)
{
	enum ledger_state st;
	struct append_item items[NGROUPS][BATCH_MAX];
	struct batch	 bt[NGROUPS], *cur = NULL, *prev = NULL, *after;
	struct outcome	 oc = { false, NULL };
	unsigned int	*todo;
	size_t		 ntodo = 0, next = 0, i, j;
	bool		 deleted, pipelining;
	enum result	 r = RES_OK;

	memset(items, 0, sizeof items);
	memset(bt, 0, sizeof bt);
	rn->q = xcalloc(1, sizeof *rn->q);
	rn->slots = xcalloc(NSLOTS, sizeof *rn->slots);
	for (i = 0; i < NSLOTS; i++)
		spool_init(&rn->slots[i].sp, SLOT_MEM, rn->cf->state_dir);
	for (i = 0; i < NGROUPS; i++) {
		bt[i].b = &rn->slots[i * BATCH_MAX];
		bt[i].items = items[i];
	}
	pipelining = pop3_caps(rn->p)->pipelining;

	/* What to import, and what was imported and may now go. */
	todo = xcalloc(rn->nmsgs + 1, sizeof *todo);
	r = ledger_begin_read(rn->l, cause);
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++) {
		if ((r = ledger_state(rn->l, rn->msgs[i].uidl, &st, &deleted,
		    cause)) != RES_OK)
			break;
		if (st == LEDGER_NONE || st == LEDGER_FAILED) {
			todo[ntodo++] = (unsigned int)i;
			rn->st->todo_bytes += rn->msgs[i].size;
		}
		else if (st == LEDGER_IMPORTED && !rn->ac->keep)
			r = pq_push(rn, PQ_DELE, (unsigned int)i, -1, cause);
	}
	if (r == RES_OK)
		r = ledger_commit(rn->l, cause);
	else
		ledger_rollback(rn->l);
	rn->st->todo = (unsigned int)ntodo;

	/*
	 * Each turn: read batch k (asked for before), ask for k + 1, send k,
	 * then read the replies to k - 1, which the IMAP server stored while
	 * k was read.  Without PIPELINING, k + 1 is read (one command at a
	 * time) while the server stores k.
	 */
	if (r == RES_OK && ntodo > 0) {
		cur = &bt[0];
		r = request_batch(rn, todo, ntodo, &next, cur, cause);
	}
	while (r == RES_OK && cur != NULL) {
		if ((r = read_batch(rn, cur, cause)) != RES_OK)
			break;
		if (account_stop)
			break;
		after = next < ntodo ? &bt[(cur - bt + 1) % NGROUPS] : NULL;
		if (after != NULL && pipelining && (r = request_batch(rn, todo,
		    ntodo, &next, after, cause)) != RES_OK)
			break;
		if ((r = send_batch(rn, cur, cause)) != RES_OK)
			break;
		if (prev != NULL && (r = finish_batch(rn, prev, &oc,
		    cause)) != RES_OK)
			break;
		prev = cur;
		cur = NULL;
		if (oc.overquota)
			break;
		if (after != NULL && !pipelining && (r = request_batch(rn,
		    todo, ntodo, &next, after, cause)) != RES_OK)
			break;
		cur = after;
	}
	if (r == RES_OK && prev != NULL)
		r = finish_batch(rn, prev, &oc, cause);
	for (i = 0; i < NGROUPS; i++) {
		imap_append_abandon(bt[i].ab);
		for (j = 0; j < BATCH_MAX; j++)
			free(items[i][j].why);
	}
	free(todo);
	if (r == RES_OK && oc.overquota) {
		rn->hold_deletes = true;
		r = fail(cause, RES_TEMP, "%s", oc.quota_why != NULL ?
		    oc.quota_why : "imap: over quota");
	}
	free(oc.quota_why);
	if (r != RES_OK)
		return r;
	if (account_stop && rn->st->done < ntodo)
		log_info("%s: stopping: asked to (%u of %zu new messages done)",
		    rn->ac->name, rn->st->done, ntodo);
	if ((r = transfer_drain(rn, cause)) != RES_OK)
		return r;
	if (rn->st->failed > 0)
		return fail(cause, RES_MSG, "%u message%s not imported (kept on "
		    "the POP3 server, tried again next run)", rn->st->failed,
		    rn->st->failed == 1 ? "" : "s");
	return RES_OK;
}

void
transfer_free(struct run *rn)
{
	size_t	 i;

	if (rn->slots != NULL)
		for (i = 0; i < NSLOTS; i++) {
			spool_free(&rn->slots[i].sp);
			free(rn->slots[i].why);
		}
	free(rn->slots);
	if (rn->q != NULL)
		free(rn->q->e);
	free(rn->q);
	rn->slots = NULL;
	rn->q = NULL;
}
