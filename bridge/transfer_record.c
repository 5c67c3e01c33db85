/*
 * What a transfer records before it sends: each leg's intent (or what is
 * known, failed, waiting or kept) in one commit, the DEL_SENT marks with
 * it, and the DELEs only after that commit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"

void
message_failed(struct run *rn, const struct slot *s, size_t k)
{
	const struct pop3_msg *m = &rn->msgs[s->msg];
	const struct slot_leg *sl = &s->lg[k];
	char		 where[300];

	rn->st->failed++;
	where[0] = '\0';
	if (rn->nlegs > 1)
		snprintf(where, sizeof where, " into %s", rn->legs[k].label);
	log_warn("%s: message %u (UIDL %s, %llu bytes%s%s%s%s) not imported%s: "
	    "%s", rn->ac->name, m->num, m->uidl, (unsigned long long)m->size,
	    s->info.from[0] != '\0' ? ", from " : "", s->info.from,
	    s->info.subject[0] != '\0' ? ", subject " : "", s->info.subject,
	    where, sl->why != NULL ? sl->why : "refused");
	if (sl->row.hold_until > time(NULL)) {
		char when[32];
		struct tm tm;

		localtime_r(&sl->row.hold_until, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
		log_warn("%s: message %u (UIDL %s) failed in %u runs in a row; "
		    "set aside until %s (or `popbridge retry %s`)",
		    rn->ac->name, m->num, m->uidl, sl->row.fails, when,
		    rn->ac->name);
	}
}

/*
 * Mark the message to go from the server, if it may: every leg it went to
 * has it (and none keeps it back), and the account's keep, delete_after
 * and siblings allow it.  Its rows are DEL_SENT together; s->dele says.
 */
enum result
mark_dele(struct run *rn, struct slot *s, char **cause)
{
	int64_t		 rows[ROUTE_TARGETS_MAX];
	size_t		 k, n = 0;
	bool		 may = true;
	enum result	 r;

	s->dele = false;
	if (rn->pop3_dead || s->marked)
		return RES_OK;
	for (k = 0; k < rn->nlegs; k++) {
		const struct slot_leg *sl = &s->lg[k];

		if (sl->st == LG_NONE)
			continue;
		if (sl->st != LG_KNOWN || sl->row.state != LEDGER_IMPORTED)
			return RES_OK;
		if ((r = plan_may_delete(rn, &sl->row, &may, cause)) !=
		    RES_OK || !may)
			return r;
		rows[n++] = sl->row.id;
	}
	if (n == 0)
		return RES_OK;
	for (k = 0; k < rn->nlegs; k++)
		if (s->lg[k].st == LG_KNOWN && (r = ledger_deleted(rn->l,
		    &s->lg[k].row, DEL_SENT, cause)) != RES_OK)
			return r;
	s->dele = s->marked = true;
	s->dele_ix = dele_marked(rn, s->msg, rows, n);
	return RES_OK;
}

/* A message in a leg's mailbox already: record what was found. */
static enum result
record_known(struct run *rn, struct leg *g, struct slot *s,
    struct slot_leg *sl, char **cause)
{
	enum result	 r;

	if (sl->row.id == 0 && (r = ledger_new(rn->l, &sl->row, cause)) !=
	    RES_OK)
		return r;
	if (sl->adopted != 0) {
		rn->st->adopted++;
		log_debug("%s: message %u (UIDL %s) is in %s already as UID "
		    "%u: adopted", rn->ac->name, rn->msgs[s->msg].num,
		    sl->row.uidl, g->mailbox, sl->adopted);
		uint32_t v = sl->adopted_v != 0 ? sl->adopted_v :
		    g->mb.uidvalidity;

		if ((r = ledger_intent(rn->l, &sl->row, &s->info, v,
		    sl->adopted, &sl->attempt, cause)) != RES_OK)
			return r;
		if ((r = ledger_stored(rn->l, &sl->row, sl->attempt, v,
		    sl->adopted, cause)) != RES_OK)
			return r;
	} else if (sl->row.deleted != DEL_NO &&
	    (r = ledger_deleted(rn->l, &sl->row, DEL_NO, cause)) != RES_OK)
		return r;	/* it was not deleted after all */
	return RES_OK;
}

/* One message's rows in one leg, for the intents' commit. */
static enum result
record_leg(struct run *rn, struct slot *s, size_t k, bool *held,
    char **cause)
{
	struct leg	*g = &rn->legs[k];
	struct slot_leg	*sl = &s->lg[k];
	enum result	 r = RES_OK;

	leg_enter(rn, g);
	if (sl->forget && (r = ledger_forget(rn->l, sl->row.id, cause)) !=
	    RES_OK)
		return r;
	switch (sl->st) {
	case LG_FAILED:
		r = ledger_failed(rn->l, &sl->row, 0, sl->why, &s->info,
		    cause);
		if (r == RES_OK)
			message_failed(rn, s, k);
		break;
	case LG_KNOWN:
		r = record_known(rn, g, s, sl, cause);
		break;
	case LG_HELD:
		*held = true;
		break;
	case LG_APPEND:
		r = ledger_intent(rn->l, &sl->row, &s->info, g->mb.uidvalidity,
		    g->lo_uid, &sl->attempt, cause);
		break;
	case LG_WAIT:
		/* Routed here, not sent: the row keeps the route. */
		if (sl->row.id == 0 || sl->row.unrouted)
			r = ledger_routed(rn->l, &sl->row, LEDGER_TODO,
			    &s->info, cause);
		break;
	case LG_KEPT:
		if (sl->row.state != LEDGER_KEPT)
			r = ledger_routed(rn->l, &sl->row, LEDGER_KEPT,
			    &s->info, cause);
		rn->st->kept++;
		break;
	default:
		break;
	}
	/* A row made here answers for its message too. */
	if (r == RES_OK)
		claim(rn, sl->row.id);
	return r;
}

/*
 * A message routed again (its old route named a destination the config
 * no longer has): the rows of that route go in the commit that records
 * its new one, so it is routed again once only.
 */
static enum result
forget_orphans(struct run *rn, struct slot *s, char **cause)
{
	int64_t		 ids[ROUTE_TARGETS_MAX];
	char		**known;
	size_t		 nknown, n, i;
	enum result	 r;

	known = plan_known_dests(rn, &nknown);
	r = ledger_orphans(rn->l, known, nknown, rn->msgs[s->msg].uidl,
	    s->hex, ids, ROUTE_TARGETS_MAX, &n, cause);
	for (i = 0; r == RES_OK && i < n && i < ROUTE_TARGETS_MAX; i++)
		r = ledger_forget(rn->l, ids[i], cause);
	free(known);
	return r;
}

/* Record the intents (and what is known and failed) in one commit. */
enum result
record_intents(struct run *rn, struct slot *b, size_t n, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 i, k;
	bool		 held;

	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		struct slot *s = &b[i];

		if (s->state != SL_FETCHED && s->state != SL_FAILED)
			continue;
		held = false;
		if (s->state == SL_FETCHED && rn->plan[s->msg].orphan)
			r = forget_orphans(rn, s, cause);
		for (k = 0; k < rn->nlegs && r == RES_OK; k++)
			r = record_leg(rn, s, k, &held, cause);
		if (held)
			rn->st->set_aside++;
		if (r == RES_OK)
			r = mark_dele(rn, s, cause);
	}
	leg_enter(rn, &rn->legs[0]);
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

/* DELE the slots marked for it (their DEL_SENT is on disk). */
enum result
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
