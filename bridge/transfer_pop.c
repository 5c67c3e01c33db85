/*
 * The queue of POP3 replies of a transfer: with PIPELINING (RFC 2449) the
 * RETRs of the next batch and the DELEs of the last go out at once and
 * their replies are read in order; without it, each command waits for its
 * reply.  A RETR's bytes are normalised and hashed as they are spooled.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"

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

void
slot_fail(struct slot *s, char *why)
{
	s->state = SL_FAILED;
	free(s->why);
	s->why = why;
}

/* Rows marked DEL_SENT in this run (one message's, one per leg it went
 * to); account.c settles them after QUIT. */
size_t
dele_marked(struct run *rn, unsigned int msg, const int64_t *rows, size_t n)
{
	struct dele	*d;

	rn->dele = xrealloc(rn->dele, (rn->ndele + 1) * sizeof *rn->dele);
	d = &rn->dele[rn->ndele];
	d->msg = msg;
	d->rows = xcalloc(n + 1, sizeof *d->rows);
	memcpy(d->rows, rows, n * sizeof *rows);
	d->nrows = n;
	d->answered = false;
	return rn->ndele++;
}

/* Read the reply at the head of the queue. */
enum result
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
enum result
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
