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
 *   - DELEs follow the batch's "imported" commit, never precede it.
 *
 * Memory is bounded: a batch holds at most BATCH_MAX messages and about
 * BATCH_BYTES of them, and each keeps at most SLOT_MEM bytes in memory
 * (the rest goes to a temporary file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "run.h"

#define BATCH_MAX	32
#define BATCH_BYTES	(8 * 1024 * 1024)
#define SLOT_MEM	(128 * 1024)
#define NSLOTS		(2 * BATCH_MAX)	/* this batch and the next */

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

/* Ask for the batch's messages (slots base .. base + n). */
static enum result
request_batch(struct run *rn, const unsigned int *todo, size_t from,
    size_t to, int base, char **cause)
{
	enum result	 r;
	size_t		 i;

	for (i = from; i < to; i++) {
		struct slot *s = &rn->slots[base + (int)(i - from)];

		s->msg = todo[i];
		s->state = SL_SENT;
		free(s->why);
		s->why = NULL;
		if ((r = pq_push(rn, PQ_RETR, todo[i], base + (int)(i - from),
		    cause)) != RES_OK)
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

/* APPEND the fetched slots; a missing mailbox is made once. */
static enum result
append_batch(struct run *rn, struct slot *b, size_t n,
    struct append_item *items, size_t *nitems, char **cause)
{
	size_t		 i, k = 0;
	bool		 create = false;
	enum result	 r;

	for (i = 0; i < n; i++) {
		if (b[i].state != SL_FETCHED)
			continue;
		items[k].sp = &b[i].sp;
		items[k].date = b[i].date;
		items[k].tz = b[i].tz;
		items[k].binary = b[i].norm.nuls > 0;
		k++;
	}
	*nitems = k;
	if ((r = imap_append_many(rn->im, rn->ac->imap.mailbox, rn->ac->flags,
	    items, k, cause)) != RES_OK)
		return r;
	for (i = 0; i < k; i++)
		create = create || items[i].res.outcome == APPEND_TRYCREATE;
	if (!create)
		return RES_OK;
	if ((r = imap_create(rn->im, rn->ac->imap.mailbox, cause)) != RES_OK)
		return r;
	/* Nothing was stored (TRYCREATE): append them all again. */
	return imap_append_many(rn->im, rn->ac->imap.mailbox, rn->ac->flags,
	    items, k, cause);
}

/* Record what became of each message, in one commit. */
static enum result
record_outcomes(struct run *rn, struct slot *b, size_t n,
    struct append_item *items, bool *overquota, char **quota_why,
    char **cause)
{
	enum result	 r;
	size_t		 i, k = 0;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		const struct pop3_msg *m = &rn->msgs[b[i].msg];
		struct append_item *it;

		if (b[i].state != SL_FETCHED)
			continue;
		it = &items[k++];
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
			*overquota = true;
			if (*quota_why == NULL && it->why != NULL)
				*quota_why = xstrdup(it->why);
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

/* One batch: read it, ask for the next, record, append, record, DELE. */
static enum result
run_batch(struct run *rn, struct slot *b, size_t n,
    struct append_item *items, char **cause)
{
	size_t		 i, nitems;
	bool		 overquota = false;
	char		*quota_why = NULL;
	enum result	 r;

	if ((r = record_intents(rn, b, n, cause)) != RES_OK ||
	    (r = append_batch(rn, b, n, items, &nitems, cause)) != RES_OK ||
	    (r = record_outcomes(rn, b, n, items, &overquota, &quota_why,
	    cause)) != RES_OK) {
		free(quota_why);
		return r;
	}
	if (overquota) {
		/*
		 * Delete nothing this run (no QUIT): the user will want to
		 * make room and may look for the mail where it was.
		 */
		rn->hold_deletes = true;
		fail(cause, RES_TEMP, "%s", quota_why != NULL ? quota_why :
		    "imap: over quota");
		free(quota_why);
		return RES_TEMP;
	}
	/* Imported is on disk: only now may the POP3 copies go. */
	for (i = 0; i < n && !rn->ac->keep; i++)
		if (b[i].state == SL_FETCHED && (r = pq_push(rn, PQ_DELE,
		    b[i].msg, -1, cause)) != RES_OK)
			return r;
	return RES_OK;
}

enum result
transfer_all(struct run *rn, char **cause)
{
	enum ledger_state st;
	struct append_item items[BATCH_MAX];
	unsigned int	*todo;
	size_t		 ntodo = 0, from, to, next_to, i;
	int		 half = 0;
	bool		 deleted, pipelining;
	enum result	 r = RES_OK;

	memset(items, 0, sizeof items);
	rn->q = xcalloc(1, sizeof *rn->q);
	rn->slots = xcalloc(NSLOTS, sizeof *rn->slots);
	for (i = 0; i < NSLOTS; i++)
		spool_init(&rn->slots[i].sp, SLOT_MEM, rn->cf->state_dir);
	pipelining = pop3_caps(rn->p)->pipelining;

	/* What to import, and what was imported and may now go. */
	todo = xcalloc(rn->nmsgs + 1, sizeof *todo);
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

	rn->st->todo = (unsigned int)ntodo;
	from = 0;
	to = ntodo > 0 ? batch_end(rn, todo, ntodo, 0) : 0;
	if (r == RES_OK && ntodo > 0)
		r = request_batch(rn, todo, from, to, 0, cause);
	while (r == RES_OK && from < ntodo) {
		struct slot *b = &rn->slots[half * BATCH_MAX];
		size_t n = to - from;

		/* Read this batch's messages (and any replies before). */
		while (r == RES_OK && rn->q->head < rn->q->tail &&
		    b[n - 1].state == SL_SENT)
			r = pq_pop(rn, cause);
		if (r != RES_OK)
			break;
		/* Ask for the next batch now, to overlap with the APPEND. */
		next_to = to < ntodo ? batch_end(rn, todo, ntodo, to) : to;
		if (pipelining && next_to > to && !account_stop &&
		    (r = request_batch(rn, todo, to, next_to,
		    (1 - half) * BATCH_MAX, cause)) != RES_OK)
			break;
		for (i = 0; i < n; i++)
			prepare(rn, &b[i]);
		if ((r = run_batch(rn, b, n, items, cause)) != RES_OK)
			break;
		for (i = 0; i < n; i++)
			rn->st->done_bytes += rn->msgs[b[i].msg].size;
		rn->st->done += (unsigned int)n;
		if (account_progress != NULL)
			account_progress(rn->st);
		from = to;
		to = next_to;
		half = 1 - half;
		if (account_stop) {
			log_info("%s: stopping: asked to (%zu of %zu new "
			    "messages done)", rn->ac->name, from, ntodo);
			break;
		}
		if (!pipelining && from < ntodo &&
		    (r = request_batch(rn, todo, from, to, half * BATCH_MAX,
		    cause)) != RES_OK)
			break;
	}
	for (i = 0; i < BATCH_MAX; i++)
		free(items[i].why);
	free(todo);
	if (r != RES_OK)
		return r;
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
