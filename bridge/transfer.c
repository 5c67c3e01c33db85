/*
 * Moving messages from POP3 to IMAP, in batches, without waiting for a
 * round trip where the protocols allow it:
 *
 *   - POP3 commands go through a queue of expected replies.  With
 *     PIPELINING (RFC 2449) the RETRs of the next batch are sent before the
 *     current batch is appended, so the POP3 server works while the IMAP
 *     server stores; without it, each command waits for its reply.
 *   - Each message is normalised and hashed (SHA-256 of all of it) as it
 *     is spooled; that content is what it is known by from then on.
 *   - A batch's intents are recorded in one ledger transaction (each row
 *     pending, each APPEND an attempt with size, hash and UID bound), the
 *     batch is APPENDed as one MULTIAPPEND (RFC 3502) or as pipelined
 *     LITERAL+ APPENDs (RFC 7888), and the outcomes are recorded in one
 *     transaction: two syncs to disk a batch, not two a message.
 *   - While the IMAP server stores one batch, the next is read from POP3,
 *     recorded and sent; only then is the first one's reply read.  The
 *     intents of both batches are on disk before either is sent.
 *   - A message is marked DEL_SENT in the same commit that records it
 *     imported, and its DELE follows that commit, never precedes it.
 *   - One bad message never holds up the others: a message the server
 *     refuses, or that the POP3 link breaks on, is recorded failed with its
 *     reason and set aside after failing in several runs; the messages
 *     fetched whole before a broken link are still imported.
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

enum slot_state {
	SL_FREE,
	SL_SENT,	/* RETR sent */
	SL_FETCHED,	/* whole, to be appended */
	SL_FAILED,	/* why says why; stays on the server */
	SL_KNOWN,	/* in the mailbox already (imported or adopted) */
	SL_HELD,	/* the row is set aside */
};

struct slot {
	unsigned int	 msg;		/* index into run.msgs */
	enum slot_state	 state;
	struct spool	 sp;
	struct msg_norm	 norm;
	struct hash	*h;		/* of the normalised bytes */
	char		 hex[65];
	struct ledger_msg row;		/* the row it is known by */
	int64_t		 attempt;	/* its APPEND's attempt row */
	uint32_t	 adopted;	/* SL_KNOWN: a copy found, its UID */
	bool		 dele;		/* DEL_SENT recorded: DELE it */
	size_t		 dele_ix;	/* its run.dele entry */
	char		*why;		/* SL_FAILED: the reason */
	struct msg_info	 info;
	time_t		 date;
	int		 tz;
};

enum pq_kind { PQ_RETR, PQ_DELE };

struct pq_entry {
	enum pq_kind	 kind;
	bool		 sent;		/* without PIPELINING: when it is read */
	unsigned int	 msg;
	int		 slot;		/* PQ_RETR only */
	size_t		 ix;		/* PQ_DELE only: its run.dele entry */
};

struct popq {
	struct pq_entry	*e;
	size_t		 head, tail, cap;
	int		 broke;		/* the slot whose RETR broke, or -1 */
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
slot_out(void *arg, const char *p, size_t n, char **cause)
{
	struct slot	*s = arg;

	hash_update_message(s->h, p, n);
	return spool_write(&s->sp, p, n, cause);
}

static enum result
slot_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct slot	*s = arg;

	return msg_norm_feed(&s->norm, p, n, slot_out, s, cause);
}

static void
local_now(time_t *t, int *tz)
{
	struct tm	 tm;

	*t = time(NULL);
	localtime_r(t, &tm);
	*tz = (int)(tm.tm_gmtoff / 60);
}

/* The header section held in memory (or what arrived of it). */
static size_t
slot_header(const struct slot *s)
{
	size_t	 hlen = msg_header_end(s->sp.mem, s->sp.memlen);

	return hlen != 0 ? hlen : s->sp.memlen;
}

static void
slot_fail(struct slot *s, char *why)
{
	s->state = SL_FAILED;
	free(s->why);
	s->why = why;
}

/* ---- the queue of POP3 replies ---- */

/* A row marked DEL_SENT in this run; account.c settles it after QUIT. */
static size_t
dele_marked(struct run *rn, unsigned int msg, int64_t row)
{
	rn->dele = xrealloc(rn->dele, (rn->ndele + 1) * sizeof *rn->dele);
	rn->dele[rn->ndele].msg = msg;
	rn->dele[rn->ndele].row = row;
	rn->dele[rn->ndele].answered = false;
	return rn->ndele++;
}

/* Read the reply at the head of the queue. */
static enum result
pq_pop(struct run *rn, char **cause)
{
	struct popq	*q = rn->q;
	struct pq_entry	 e = q->e[q->head];
	const struct pop3_msg *m = &rn->msgs[e.msg];
	struct slot	*s;
	char		*why = NULL;
	enum result	 r;

	q->head++;
	/* Without PIPELINING a command goes out only when its reply is due. */
	if (!e.sent && (r = e.kind == PQ_RETR ? pop3_retr_send(rn->p, m->num,
	    cause) : pop3_dele_send(rn->p, m->num, cause)) != RES_OK) {
		if (e.kind == PQ_RETR)
			q->broke = e.slot;
		return r;
	}
	if (e.kind == PQ_DELE) {
		r = pop3_dele_read(rn->p, m->num, &why);
		if (r == RES_OK)
			rn->dele[e.ix].answered = true;
		else if (r == RES_MSG) {
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
	s = &rn->slots[e.slot];
	spool_reset(&s->sp);
	msg_norm_init(&s->norm);
	s->h = hash_new();
	r = pop3_retr_read(rn->p, m->num, m->size, slot_sink, s, &why);
	if (r == RES_OK)
		r = msg_norm_finish(&s->norm, slot_out, s, &why);
	hash_final(s->h, s->hex);
	s->h = NULL;
	if (r == RES_MSG) {
		/* -ERR to RETR: this message only; it stays on the server. */
		slot_fail(s, why);
		return RES_OK;
	}
	if (r != RES_OK) {
		/* The link broke on this message (cut, stall, overlong). */
		q->broke = e.slot;
		free(*cause);
		*cause = why;
		return r;
	}
	s->state = SL_FETCHED;
	/* A message far from its LIST size is worth a word: Courier POP3
	 * 1.0 served a wrapper of 989 bytes for a LIST size of 255 until
	 * UTF8 was enabled. */
	if (s->sp.size > 2 * m->size + 1024 || 2 * s->sp.size + 1024 < m->size)
		log_warn("%s: message %u (UIDL %s): RETR gave %llu bytes, LIST "
		    "said %llu", rn->ac->name, m->num, m->uidl,
		    (unsigned long long)s->sp.size, (unsigned long long)m->size);
	return RES_OK;
}

/*
 * Queue a command; with PIPELINING it is sent now and its reply read
 * later, in order; without, it is sent when its reply is due (pq_pop).
 */
static enum result
pq_push(struct run *rn, enum pq_kind kind, unsigned int msg, int slot,
    size_t ix, char **cause)
{
	struct popq	*q = rn->q;
	struct pq_entry	*e;
	enum result	 r = RES_OK;

	if (q->head == q->tail)
		q->head = q->tail = 0;
	if (q->tail == q->cap) {
		q->cap = q->cap == 0 ? 2 * NSLOTS : q->cap * 2;
		q->e = xrealloc(q->e, q->cap * sizeof *q->e);
	}
	e = &q->e[q->tail];
	e->kind = kind;
	e->msg = msg;
	e->slot = slot;
	e->ix = ix;
	e->sent = pop3_caps(rn->p)->pipelining;
	if (e->sent)
		r = kind == PQ_RETR ? pop3_retr_send(rn->p, rn->msgs[msg].num,
		    cause) : pop3_dele_send(rn->p, rn->msgs[msg].num, cause);
	if (r == RES_OK)
		q->tail++;
	return r;
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

/* ---- deciding what a fetched message is ---- */

/* Ready a fetched message for the APPEND: its date, what the server takes. */
static void
prepare(struct run *rn, struct slot *s)
{
	const struct imap_caps *caps = imap_caps(rn->im);

	if (!msg_date(s->sp.mem, slot_header(s), &s->date, &s->tz))
		local_now(&s->date, &s->tz);
	/*
	 * NUL bytes cannot travel in an ordinary IMAP literal; with BINARY
	 * (RFC 3516) they go as literal8, without it the message stays on
	 * the POP3 server.
	 */
	if (s->norm.nuls > 0 && !caps->binary)
		slot_fail(s, xprintf("it has %llu NUL bytes and the IMAP server "
		    "offers no BINARY extension to store them",
		    (unsigned long long)s->norm.nuls));
	else if (caps->appendlimit != 0 && s->sp.size > caps->appendlimit)
		slot_fail(s, xprintf("%llu bytes is over the IMAP server's "
		    "APPENDLIMIT of %llu", (unsigned long long)s->sp.size,
		    (unsigned long long)caps->appendlimit));
}

/*
 * The rows that answer for a message of this run, so that two messages
 * alike (one UIDL, one content) never share a row.  A set of row ids, open
 * addressing: a run may hold tens of thousands.
 */
static bool
claimed(const struct run *rn, int64_t id)
{
	size_t	 i;

	if (rn->claimcap == 0)
		return false;
	for (i = (size_t)id & (rn->claimcap - 1); rn->claimed[i] != 0;
	    i = (i + 1) & (rn->claimcap - 1))
		if (rn->claimed[i] == id)
			return true;
	return false;
}

static void
claim(struct run *rn, int64_t id)
{
	int64_t	*old = rn->claimed;
	size_t	 oldcap = rn->claimcap, i, j;

	if (id == 0 || claimed(rn, id))
		return;
	if ((rn->nclaimed + 1) * 2 > rn->claimcap) {
		rn->claimcap = oldcap == 0 ? 64 : oldcap * 2;
		rn->claimed = xcalloc(rn->claimcap, sizeof *rn->claimed);
		rn->nclaimed = 0;
		for (j = 0; j < oldcap; j++)
			if (old[j] != 0)
				claim(rn, old[j]);
		free(old);
	}
	for (i = (size_t)id & (rn->claimcap - 1); rn->claimed[i] != 0;
	    i = (i + 1) & (rn->claimcap - 1))
		;
	rn->claimed[i] = id;
	rn->nclaimed++;
}

/*
 * The message is its UIDL's only one on the server and has this content:
 * the rows of that UIDL that are not it (other content, or none known and
 * another size) are messages gone from the server.  A reused UIDL leaves
 * such a row; marked gone, it no longer makes the UIDL ambiguous.
 */
static enum result
others_gone(struct run *rn, struct ledger_msg *rows, size_t n,
    const struct ledger_msg *hit, char **cause)
{
	size_t		 i;
	enum result	 r = RES_OK;

	for (i = 0; i < n && r == RES_OK; i++)
		if (&rows[i] != hit && rows[i].deleted != DEL_DONE)
			r = ledger_deleted(rn->l, &rows[i], DEL_DONE, cause);
	return r;
}

/*
 * Which row this message is.  Fetched whole, its content decides: the row
 * of its UIDL with the same hash, else one that never saw its content
 * (it failed before it was fetched) with the same LIST size, else none (a
 * new message: a new UIDL, or a UIDL reused for other content).  Not
 * fetched whole (it failed on the way), the row the plan named, else such
 * a row without content.
 */
static enum result
identify(struct run *rn, struct slot *s, char **cause)
{
	const struct pop3_msg	*pm = &rn->msgs[s->msg];
	struct ledger_msg	*rows, *hit = NULL;
	bool			 whole = s->state != SL_FAILED;
	size_t			 n, i;
	enum result		 r;

	if ((r = ledger_find(rn->l, pm->uidl, &rows, &n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && hit == NULL; i++)
		if (whole ? strcmp(rows[i].hash, s->hex) == 0 &&
		    !claimed(rn, rows[i].id) : rows[i].id == rn->plan[s->msg].row)
			hit = &rows[i];
	for (i = 0; i < n && hit == NULL; i++)
		if ((rows[i].hash[0] == '\0' || !whole) &&
		    rows[i].state != LEDGER_IMPORTED &&
		    rows[i].deleted != DEL_DONE &&
		    rows[i].pop_size == pm->size && !claimed(rn, rows[i].id))
			hit = &rows[i];
	if (hit != NULL)
		claim(rn, hit->id);
	if (whole && rn->plan[s->msg].unique &&
	    (r = others_gone(rn, rows, n, hit, cause)) != RES_OK) {
		free(rows);
		return r;
	}
	memset(&s->row, 0, sizeof s->row);
	snprintf(s->row.uidl, sizeof s->row.uidl, "%s", pm->uidl);
	if (hit != NULL)
		s->row = *hit;
	s->row.pop_size = pm->size;
	if (whole) {
		s->row.size = s->sp.size;
		memcpy(s->row.hash, s->hex, sizeof s->row.hash);
	}
	free(rows);
	return RES_OK;
}

/* A fetched message: in the mailbox already, set aside, or to append. */
static enum result
classify(struct run *rn, struct slot *s, char **cause)
{
	enum result	 r;

	msg_info_read(s->sp.mem, slot_header(s), &s->info);
	if ((r = identify(rn, s, cause)) != RES_OK)
		return r;
	if (s->row.state == LEDGER_IMPORTED) {
		s->state = SL_KNOWN;
		return RES_OK;
	}
	if (s->row.state == LEDGER_FAILED && s->row.hold_until > time(NULL)) {
		s->state = SL_HELD;
		return RES_OK;
	}
	return RES_OK;
}

/* First contact: the batch's messages already in the mailbox are adopted. */
static enum result
adopt_slots(struct run *rn, struct slot *b, size_t n, char **cause)
{
	struct adopt_query *q;
	size_t		 i, k = 0;
	enum result	 r;

	if (rn->adopt == NULL)
		return RES_OK;
	q = xcalloc(n + 1, sizeof *q);
	for (i = 0; i < n; i++) {
		if (b[i].state != SL_FETCHED)
			continue;
		q[k].size = b[i].sp.size;
		msg_message_id(b[i].sp.mem, slot_header(&b[i]), q[k].msgid,
		    sizeof q[k].msgid);
		q[k++].hex = b[i].hex;
	}
	r = adopt_batch(rn, q, k, cause);
	for (i = 0, k = 0; i < n && r == RES_OK; i++) {
		if (b[i].state != SL_FETCHED)
			continue;
		if ((b[i].adopted = q[k++].uid) != 0)
			b[i].state = SL_KNOWN;
	}
	free(q);
	return r;
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
		s->adopted = 0;
		s->attempt = 0;
		s->dele = false;
		s->row.id = 0;
		memset(&s->info, 0, sizeof s->info);
		free(s->why);
		s->why = NULL;
		if ((r = pq_push(rn, PQ_RETR, todo[i], (int)(s - rn->slots), 0,
		    cause)) != RES_OK)
			return r;
	}
	return RES_OK;
}

static void
message_failed(struct run *rn, const struct slot *s)
{
	const struct pop3_msg *m = &rn->msgs[s->msg];

	rn->st->failed++;
	log_warn("%s: message %u (UIDL %s, %llu bytes%s%s%s%s) not imported: "
	    "%s", rn->ac->name, m->num, m->uidl, (unsigned long long)m->size,
	    s->info.from[0] != '\0' ? ", from " : "", s->info.from,
	    s->info.subject[0] != '\0' ? ", subject " : "", s->info.subject,
	    s->why != NULL ? s->why : "refused");
	if (s->row.hold_until > time(NULL)) {
		char when[32];
		struct tm tm;

		localtime_r(&s->row.hold_until, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
		log_warn("%s: message %u (UIDL %s) failed in %u runs in a row; "
		    "set aside until %s (or `popbridge retry %s`)",
		    rn->ac->name, m->num, m->uidl, s->row.fails, when,
		    rn->ac->name);
	}
}

/* Mark the message to go from the server, if it may; s->dele says. */
static enum result
mark_dele(struct run *rn, struct slot *s, char **cause)
{
	bool		 may;
	enum result	 r;

	s->dele = false;
	if (rn->pop3_dead)
		return RES_OK;
	if ((r = plan_may_delete(rn, &s->row, &may, cause)) != RES_OK || !may)
		return r;
	if ((r = ledger_deleted(rn->l, &s->row, DEL_SENT, cause)) == RES_OK) {
		s->dele = true;
		s->dele_ix = dele_marked(rn, s->msg, s->row.id);
	}
	return r;
}

/* A slot in the mailbox already: record what was found. */
static enum result
record_known(struct run *rn, struct slot *s, char **cause)
{
	enum result	 r;

	if (s->row.id == 0 && (r = ledger_new(rn->l, &s->row, cause)) != RES_OK)
		return r;
	if (s->adopted != 0) {
		rn->st->adopted++;
		log_debug("%s: message %u (UIDL %s) is in %s already as UID "
		    "%u: adopted", rn->ac->name, rn->msgs[s->msg].num,
		    s->row.uidl, rn->mailbox, s->adopted);
		if ((r = ledger_intent(rn->l, &s->row, &s->info,
		    rn->mb.uidvalidity, s->adopted, &s->attempt, cause)) !=
		    RES_OK)
			return r;
		if ((r = ledger_stored(rn->l, &s->row, s->attempt,
		    rn->mb.uidvalidity, s->adopted, cause)) != RES_OK)
			return r;
	} else if (s->row.deleted != DEL_NO &&
	    (r = ledger_deleted(rn->l, &s->row, DEL_NO, cause)) != RES_OK)
		return r;	/* it was not deleted after all */
	return mark_dele(rn, s, cause);
}

/* Record the intents (and what is known and failed) in one commit. */
static enum result
record_intents(struct run *rn, struct slot *b, size_t n, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 i;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		struct slot *s = &b[i];

		switch (s->state) {
		case SL_FAILED:
			r = ledger_failed(rn->l, &s->row, 0, s->why, &s->info,
			    cause);
			if (r == RES_OK)
				message_failed(rn, s);
			break;
		case SL_KNOWN:
			r = record_known(rn, s, cause);
			break;
		case SL_HELD:
			rn->st->set_aside++;
			break;
		case SL_FETCHED:
			r = ledger_intent(rn->l, &s->row, &s->info,
			    rn->mb.uidvalidity, rn->lo_uid, &s->attempt, cause);
			break;
		default:
			break;
		}
		/* A row made here answers for its message too. */
		if (r == RES_OK)
			claim(rn, s->row.id);
	}
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

/* DELE the slots marked for it (their DEL_SENT is on disk). */
static enum result
push_deles(struct run *rn, struct slot *b, size_t n, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 i;

	for (i = 0; i < n && r == RES_OK && !rn->pop3_dead; i++)
		if (b[i].dele) {
			b[i].dele = false;	/* once */
			r = pq_push(rn, PQ_DELE, b[i].msg, -1, b[i].dele_ix,
			    cause);
		}
	return r;
}

/* Decide, record the intents and send the batch; replies are read later. */
static enum result
send_batch(struct run *rn, struct batch *bt, char **cause)
{
	size_t		 i, n = bt->to - bt->from, k = 0;
	enum result	 r;

	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s->state == SL_FETCHED)
			r = classify(rn, s, cause);
		else if (s->state == SL_FAILED) {
			/* What arrived of its header names it for a person. */
			msg_info_read(s->sp.mem, slot_header(s), &s->info);
			r = identify(rn, s, cause);
		} else
			continue;
		if (r != RES_OK)
			return r;
	}
	if ((r = adopt_slots(rn, bt->b, n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n; i++) {
		struct slot *s = &bt->b[i];

		if (s->state == SL_FETCHED)
			prepare(rn, s);
		/* Content said it is new (or failed as a new one). */
		if (rn->plan[s->msg].act == PA_VERIFY &&
		    (s->state == SL_FETCHED || s->state == SL_FAILED))
			rn->st->fresh++;
	}
	if ((r = record_intents(rn, bt->b, n, cause)) != RES_OK ||
	    (r = push_deles(rn, bt->b, n, cause)) != RES_OK)
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
	return imap_append_send(rn->im, rn->mailbox, rn->ac->flags,
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
	if (!rn->created && (r = imap_create(rn->im, rn->mailbox,
	    cause)) != RES_OK)
		return r;
	rn->created = true;
	/* Nothing was stored (TRYCREATE): append them all again. */
	return imap_append_many(rn->im, rn->mailbox, rn->ac->flags,
	    bt->items, bt->nitems, cause);
}

/* The server's answer to one message's APPEND, recorded. */
static enum result
record_outcome(struct run *rn, struct slot *s, struct append_item *it,
    struct outcome *oc, char **cause)
{
	uint32_t	 v = rn->mb.uidvalidity;
	enum result	 r;

	switch (it->res.outcome) {
	case APPEND_STORED:
		if (it->res.uid != 0) {
			if (it->res.uidvalidity != 0)
				v = rn->mb.uidvalidity = it->res.uidvalidity;
			if (it->res.uid >= rn->lo_uid)
				rn->lo_uid = it->res.uid + 1;
		}
		if ((r = ledger_stored(rn->l, &s->row, s->attempt, v,
		    it->res.uid, cause)) != RES_OK)
			return r;
		rn->st->imported++;
		rn->st->bytes += s->sp.size;
		log_debug("%s: message %u (UIDL %s) imported, %llu bytes",
		    rn->ac->name, rn->msgs[s->msg].num, s->row.uidl,
		    (unsigned long long)s->sp.size);
		return mark_dele(rn, s, cause);
	case APPEND_OVERQUOTA:
		/* NO: nothing stored.  It stays for a later run. */
		oc->overquota = true;
		if (oc->quota_why == NULL && it->why != NULL)
			oc->quota_why = xstrdup(it->why);
		s->state = SL_FREE;
		return ledger_unsent(rn->l, &s->row, s->attempt, cause);
	default:
		slot_fail(s, xstrdup(it->why != NULL ? it->why : "refused"));
		if ((r = ledger_failed(rn->l, &s->row, s->attempt, s->why,
		    &s->info, cause)) == RES_OK)
			message_failed(rn, s);
		return r;
	}
}

/* Record what became of each message, in one commit. */
static enum result
record_outcomes(struct run *rn, struct batch *bt, struct outcome *oc,
    char **cause)
{
	size_t		 i, k = 0, n = bt->to - bt->from;
	enum result	 r;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++)
		if (bt->b[i].state == SL_FETCHED)
			r = record_outcome(rn, &bt->b[i], &bt->items[k++], oc,
			    cause);
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

/*
 * The POP3 link broke while bt was read: the messages fetched whole go on
 * to IMAP; the one it broke on failed (set aside if it keeps doing that);
 * the rest were not tried.  *broke keeps the reason for the run's end.
 */
static void
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
static enum result
transfer_plan(struct run *rn, unsigned int *todo, size_t *ntodo,
    char **cause)
{
	struct ledger_msg m;
	unsigned int	 i;
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
		memset(&m, 0, sizeof m);
		m.id = rn->plan[i].row;
		r = ledger_deleted(rn->l, &m, DEL_SENT, cause);
	}
	if (r != RES_OK || (r = ledger_commit(rn->l, cause)) != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++)
		if (rn->plan[i].act == PA_DELE)
			r = pq_push(rn, PQ_DELE, i, -1, dele_marked(rn, i,
			    rn->plan[i].row), cause);
	return r;
}

static void
transfer_init(struct run *rn, struct batch *bt,
    struct append_item (*items)[BATCH_MAX])
{
	size_t	 i;

	rn->q = xcalloc(1, sizeof *rn->q);
	rn->q->broke = -1;
	rn->slots = xcalloc(NSLOTS, sizeof *rn->slots);
	for (i = 0; i < NSLOTS; i++)
		spool_init(&rn->slots[i].sp, SLOT_MEM, rn->cf->state_dir);
	for (i = 0; i < NGROUPS; i++) {
		bt[i].b = &rn->slots[i * BATCH_MAX];
		bt[i].items = items[i];
	}
}

/* How the run ends, once every batch sent has been answered. */
static enum result
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
	if (rn->st->failed > 0)
		return fail(cause, RES_MSG, "%u message%s not imported (kept on "
		    "the POP3 server, tried again next run)", rn->st->failed,
		    rn->st->failed == 1 ? "" : "s");
	return RES_OK;
}

enum result
transfer_all(struct run *rn, char **cause)
{
	struct append_item items[NGROUPS][BATCH_MAX];
	struct batch	 bt[NGROUPS], *cur = NULL, *prev = NULL, *after;
	struct outcome	 oc = { false, NULL };
	unsigned int	*todo;
	size_t		 ntodo = 0, next = 0, i, j;
	char		*broke = NULL;
	bool		 pipelining;
	enum result	 r;

	memset(items, 0, sizeof items);
	memset(bt, 0, sizeof bt);
	transfer_init(rn, bt, items);
	pipelining = pop3_caps(rn->p)->pipelining;
	todo = xcalloc(rn->nmsgs + 1, sizeof *todo);
	r = transfer_plan(rn, todo, &ntodo, cause);

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
		if ((r = read_batch(rn, cur, cause)) != RES_OK) {
			if (r != RES_TEMP || rn->q->broke == -1)
				break;
			salvage(rn, cur, *cause, &broke);
			*cause = NULL;
			r = RES_OK;
		}
		after = next < ntodo && broke == NULL && !run_stopping(rn) ?
		    &bt[(cur - bt + 1) % NGROUPS] : NULL;
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
	if (r == RES_OK)
		r = transfer_end(rn, &oc, broke, ntodo, cause);
	else
		free(broke);
	free(oc.quota_why);
	return r;
}

void
transfer_free(struct run *rn)
{
	size_t	 i;

	if (rn->slots != NULL)
		for (i = 0; i < NSLOTS; i++) {
			spool_free(&rn->slots[i].sp);
			free(rn->slots[i].why);
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
