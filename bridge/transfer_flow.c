/*
 * The transfer's window (issue 15): how many batches are asked for from
 * POP3 ahead of the one being read, and how many are on the IMAP wire
 * unanswered, decided as the run goes; and the loop that moves them
 * (transfer_all).  A batch's own steps are transfer.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"

/*
 * The batches in flight, oldest first.  Asked: RETRs sent and not read
 * yet; their bytes are on the wire or still in the POP3 server, not in
 * memory here, so asking ahead costs a slot each and nothing else.
 * Sent: APPENDs written and not answered yet; their messages stay in
 * memory (a TRYCREATE sends them again).
 *
 * How far ahead to ask is sized by what the run measures: the bytes
 * asked for and not read are kept above twice what arrives in one round
 * trip (STAT's, at the start) at the rate seen so far, so the POP3 link
 * never waits for the next RETR; on loopback that is one batch, at
 * 100 ms and 40 MB/s some 8 MB.  Replies are read when they have come,
 * not when the next batch is sent: a batch is finished once its replies
 * are there, or when its slots or memory are wanted (SENT_MAX,
 * SENT_MEM).  Each leg's link stays full too, then, and no wait stands
 * between one batch and the next but the one the data itself takes.
 */
struct flow {
	struct batch	*asked[NGROUPS], *sent[NGROUPS], *spare[NGROUPS];
	size_t		 nasked, nsent, nspare;
	double		 started;	/* the first batch asked for */
	uint64_t	 bytes;		/* LIST bytes read since */
	double		 rtt;
	bool		 pipelining;
};

static struct batch *
take(struct batch **list, size_t *n)
{
	struct batch	*bt = list[0];

	memmove(list, list + 1, --*n * sizeof *list);
	return bt;
}

/* How many bytes to keep asked for ahead of the one being read. */
static uint64_t
ahead_window(const struct flow *fl)
{
	double	 took = now_seconds() - fl->started, w;

	if (fl->bytes == 0 || took <= 0)
		return 0;
	w = 2.0 * (double)fl->bytes / took * fl->rtt;
	return w >= (double)AHEAD_MAX ? AHEAD_MAX : (uint64_t)w;
}

static uint64_t
asked_bytes(const struct flow *fl)
{
	uint64_t	 n = 0;
	size_t		 i;

	for (i = 0; i < fl->nasked; i++)
		n += fl->asked[i]->bytes;
	return n;
}

/* The batches asked for on a POP3 link that broke: none of them was read
 * (they stay on the server); *broke keeps the reason for the run's end. */
static void
abandon(struct run *rn, struct flow *fl, char *why, char **broke)
{
	size_t	 i;

	rn->pop3_dead = true;
	if (*broke == NULL)
		*broke = why;
	else
		free(why);
	while (fl->nasked > 0) {
		struct batch *bt = take(fl->asked, &fl->nasked);

		for (i = 0; i < bt->to - bt->from; i++)
			bt->b[i].state = SL_FREE;
		fl->spare[fl->nspare++] = bt;
	}
	rn->q->head = rn->q->tail;
}

/*
 * Ask for more while the window has room (at least one batch ahead).
 * A link that breaks while asked (a write fails before a read notices)
 * leaves the batches asked for on the server; the one read still goes on.
 */
static enum result
ask_ahead(struct run *rn, struct flow *fl, const unsigned int *todo,
    size_t ntodo, size_t *next, char **broke, char **cause)
{
	enum result	 r;

	while (*next < ntodo && *broke == NULL && !run_stopping(rn) &&
	    fl->nspare > 0 && fl->nasked < NGROUPS / 2 &&
	    (fl->nasked == 0 || asked_bytes(fl) < ahead_window(fl))) {
		struct batch *bt = take(fl->spare, &fl->nspare);

		if (fl->started == 0)
			fl->started = now_seconds();
		fl->asked[fl->nasked++] = bt;
		if ((r = request_batch(rn, todo, ntodo, next, bt, cause)) !=
		    RES_OK) {
			if (r != RES_TEMP)
				return r;
			abandon(rn, fl, *cause, broke);
			*cause = NULL;
		}
	}
	return RES_OK;
}

/* Have leg k's replies to the oldest batch sent begun to come? */
static bool
replies_here(const struct run *rn, const struct batch *bt)
{
	size_t	 k;

	for (k = 0; k < rn->nlegs; k++)
		if (bt->lb[k].sent && rn->legs[k].ss != NULL &&
		    !imap_append_ready(rn->legs[k].ss->im, bt->lb[k].ab))
			return false;
	return true;
}

static size_t
sent_memory(const struct run *rn, const struct flow *fl)
{
	size_t	 i, j, n = 0;

	(void)rn;
	for (i = 0; i < fl->nsent; i++)
		for (j = 0; j < fl->sent[i]->to - fl->sent[i]->from; j++)
			n += fl->sent[i]->b[j].sp.memcap;
	return n;
}

/* The oldest batch sent: its replies read, recorded, its DELEs sent, its
 * memory given back. */
static enum result
finish_oldest(struct run *rn, struct flow *fl, struct outcome *oc,
    char **cause)
{
	struct batch	*bt = take(fl->sent, &fl->nsent);
	size_t		 i;
	enum result	 r;

	r = finish_batch(rn, bt, oc, cause);
	for (i = 0; i < bt->to - bt->from; i++)
		spool_trim(&bt->b[i].sp);
	fl->spare[fl->nspare++] = bt;
	return r;
}

/* Finish what has been answered, and what must make room. */
static enum result
finish_ready(struct run *rn, struct flow *fl, struct outcome *oc,
    char **cause)
{
	enum result	 r;

	while (fl->nsent > 0 && (fl->nspare == 0 || fl->nsent > SENT_MAX ||
	    sent_memory(rn, fl) > SENT_MEM || replies_here(rn, fl->sent[0])))
		if ((r = finish_oldest(rn, fl, oc, cause)) != RES_OK)
			return r;
	return RES_OK;
}

/* One batch: read it, ask for more, send it, finish what is answered. */
static enum result
transfer_turn(struct run *rn, struct flow *fl, const unsigned int *todo,
    size_t ntodo, size_t *next, struct outcome *oc, char **broke,
    char **cause)
{
	struct batch	*cur = take(fl->asked, &fl->nasked);
	enum result	 r;

	if ((r = read_batch(rn, cur, cause)) != RES_OK) {
		if (r != RES_TEMP || rn->q->broke == -1) {
			fl->spare[fl->nspare++] = cur;
			return r;
		}
		salvage(rn, cur, *cause, broke);
		*cause = NULL;
		abandon(rn, fl, NULL, broke);
	}
	fl->bytes += cur->bytes;
	if (fl->pipelining && (r = ask_ahead(rn, fl, todo, ntodo, next,
	    broke, cause)) != RES_OK) {
		fl->spare[fl->nspare++] = cur;
		return r;
	}
	fl->sent[fl->nsent++] = cur;
	if ((r = send_batch(rn, cur, cause)) != RES_OK ||
	    (r = finish_ready(rn, fl, oc, cause)) != RES_OK)
		return r;
	/* Without PIPELINING the next is read, a command at a time, while
	 * the IMAP server stores this one. */
	if (!fl->pipelining && fl->nasked == 0 && legs_any_up(rn))
		r = ask_ahead(rn, fl, todo, ntodo, next, broke, cause);
	return r;
}

enum result
transfer_all(struct run *rn, char **cause)
{
	struct batch	 bt[NGROUPS];
	struct flow	 fl;
	struct outcome	 oc = { false, NULL };
	unsigned int	*todo;
	size_t		 ntodo = 0, next = 0, i;
	char		*broke = NULL;
	enum result	 r;

	memset(bt, 0, sizeof bt);
	memset(&fl, 0, sizeof fl);
	transfer_init(rn, bt);
	for (i = 0; i < NGROUPS; i++)
		fl.spare[fl.nspare++] = &bt[i];
	fl.pipelining = pop3_caps(rn->p)->pipelining;
	fl.rtt = pop3_rtt(rn->p);
	todo = xcalloc(rn->nmsgs + 1, sizeof *todo);
	r = transfer_plan(rn, todo, &ntodo, cause);
	if (r == RES_OK)
		r = ask_ahead(rn, &fl, todo, ntodo, &next, &broke, cause);
	/*
	 * Every leg full or down: the rest waits for a later run.  Asked to
	 * stop: what was sent is finished, what was asked for ahead is read
	 * and left (transfer_end), and the rest waits for the next run.
	 */
	while (r == RES_OK && fl.nasked > 0 && legs_any_up(rn) &&
	    !run_stopping(rn))
		r = transfer_turn(rn, &fl, todo, ntodo, &next, &oc, &broke,
		    cause);
	while (r == RES_OK && fl.nsent > 0)
		r = finish_oldest(rn, &fl, &oc, cause);
	batches_free(rn, bt);
	free(todo);
	if (r == RES_OK)
		r = transfer_end(rn, &oc, broke, ntodo, cause);
	else
		free(broke);
	free(oc.quota_why);
	return r;
}

