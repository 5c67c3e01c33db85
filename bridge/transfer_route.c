/*
 * Where a fetched message goes (issue 16): which row of each leg it is
 * (its content decides), and then the legs of an earlier run's route, or
 * the rules' choice for one never routed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transfer_int.h"

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

void
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
 * Which row of leg k this message is.  Fetched whole, its content decides:
 * the row of its UIDL with the same hash, else one that never saw its
 * content (it failed before it was fetched) with the same LIST size, else
 * none (a new message: a new UIDL, or a UIDL reused for other content).
 * Not fetched whole (it failed on the way), the row the leg's plan named,
 * else such a row without content.
 */
static enum result
identify(struct run *rn, struct slot *s, size_t k, char **cause)
{
	const struct pop3_msg	*pm = &rn->msgs[s->msg];
	struct leg		*g = &rn->legs[k];
	struct slot_leg		*sl = &s->lg[k];
	struct ledger_msg	*rows, *hit = NULL;
	bool			 whole = s->state == SL_FETCHED;
	size_t			 n, i;
	enum result		 r;

	leg_enter(rn, g);
	if ((r = ledger_find(rn->l, pm->uidl, &rows, &n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && hit == NULL; i++)
		if (whole ? strcmp(rows[i].hash, s->hex) == 0 &&
		    !claimed(rn, rows[i].id) : rows[i].id == g->plan[s->msg].row)
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
	memset(&sl->row, 0, sizeof sl->row);
	snprintf(sl->row.uidl, sizeof sl->row.uidl, "%s", pm->uidl);
	sl->hit = hit != NULL;
	if (hit != NULL)
		sl->row = *hit;
	sl->row.pop_size = pm->size;
	if (whole) {
		sl->row.size = s->sp.size;
		memcpy(sl->row.hash, s->hex, sizeof sl->row.hash);
	}
	free(rows);
	return RES_OK;
}

/* A fetched message in a leg whose row it has: what that row says. */
static enum leg_state
from_row(const struct ledger_msg *m)
{
	switch (m->state) {
	case LEDGER_IMPORTED:
		return LG_KNOWN;
	case LEDGER_KEPT:
		return LG_KEPT;
	case LEDGER_FAILED:
		return m->hold_until > time(NULL) ? LG_HELD : LG_APPEND;
	default:
		return LG_APPEND;
	}
}

/*
 * Where a message fetched whole goes.  Rows of earlier runs decide if it
 * has any (it was routed then: the legs with rows are its legs, whatever
 * the rules say now); else the rules (route_decide), and without routing
 * the one leg.  A row that a failure made before the message could be
 * routed (unrouted, in the first leg) is taken if the first leg is chosen
 * and dropped if not.
 */
static void
route_whole(struct run *rn, struct slot *s, const struct route_out *ro)
{
	size_t		 k, i, routed = 0;

	for (k = 0; k < rn->nlegs; k++)
		routed += s->lg[k].hit && !s->lg[k].row.unrouted;
	for (k = 0; k < rn->nlegs; k++) {
		struct slot_leg *sl = &s->lg[k];

		sl->st = LG_NONE;
		sl->forget = false;
		if (routed > 0 && rn->plan[s->msg].orphan) {
			/* Its old route is gone: the legs that have it,
			 * and the rules' choice beside them. */
			if (sl->hit && !sl->row.unrouted)
				sl->st = from_row(&sl->row);
			else if (ro->keep && k == 0)
				sl->st = LG_KEPT;
			for (i = 0; i < ro->n && sl->st == LG_NONE; i++)
				if (ro->picks[i].target == k)
					sl->st = from_row(&sl->row);
		} else if (routed > 0) {
			if (sl->hit && !sl->row.unrouted)
				sl->st = from_row(&sl->row);
		} else if (rn->ac->routing == NULL)
			sl->st = from_row(&sl->row);
		else if (ro->keep)
			sl->st = k == 0 ? LG_KEPT : LG_NONE;
		else
			for (i = 0; i < ro->n; i++)
				if (ro->picks[i].target == k)
					sl->st = from_row(&sl->row);
		if (sl->st == LG_NONE && sl->hit && sl->row.unrouted)
			sl->forget = true;
		/* A rule's flags, for the legs it names. */
		for (i = 0; i < ro->n; i++)
			if (ro->picks[i].target == k)
				sl->flags = ro->picks[i].flags;
	}
	if (routed == 0 && rn->ac->routing != NULL)
		log_debug("%s: message %u (UIDL %s): %s", rn->ac->name,
		    rn->msgs[s->msg].num, rn->msgs[s->msg].uidl, ro->why);
}

/*
 * A message not fetched whole fails in the legs it has rows in (those
 * that have it already keep it); one never routed fails in the first leg,
 * in a row marked unrouted, so that its failures count and it is set
 * aside if it keeps failing.
 */
static void
route_failed(struct run *rn, struct slot *s)
{
	size_t		 k, hits = 0;

	for (k = 0; k < rn->nlegs; k++) {
		struct slot_leg *sl = &s->lg[k];

		sl->st = LG_NONE;
		sl->forget = false;
		if (!sl->hit)
			continue;
		hits++;
		sl->st = sl->row.state == LEDGER_IMPORTED ? LG_KNOWN :
		    LG_FAILED;
	}
	if (hits == 0) {
		s->lg[0].st = LG_FAILED;
		s->lg[0].row.unrouted = rn->ac->routing != NULL;
	}
	for (k = 0; k < rn->nlegs; k++)
		if (s->lg[k].st == LG_FAILED) {
			free(s->lg[k].why);
			s->lg[k].why = xstrdup(s->why != NULL ? s->why :
			    "failed");
		}
}

/* The rows of each leg, and where the message goes. */
enum result
classify(struct run *rn, struct slot *s, char **cause)
{
	struct route_out ro;
	size_t		 k;
	enum result	 r;

	/* What arrived of its header names it for a person. */
	msg_info_read(s->sp.mem, slot_header(s), &s->info);
	for (k = 0; k < rn->nlegs; k++) {
		s->lg[k].flags = NULL;
		if ((r = identify(rn, s, k, cause)) != RES_OK)
			return r;
	}
	if (s->state != SL_FETCHED) {
		route_failed(rn, s);
		return RES_OK;
	}
	memset(&ro, 0, sizeof ro);
	ro.rule = -1;
	if (rn->ac->routing != NULL)
		route_decide(rn->ac, s->sp.mem, slot_header(s), s->sp.size,
		    &ro);
	route_whole(rn, s, &ro);
	return RES_OK;
}

/* Is it to import somewhere and imported nowhere yet? */
bool
slot_new(const struct run *rn, const struct slot *s)
{
	size_t	 k;
	bool	 todo = false;

	for (k = 0; k < rn->nlegs; k++) {
		if (s->lg[k].st == LG_KNOWN)
			return false;
		todo = todo || s->lg[k].st == LG_APPEND ||
		    s->lg[k].st == LG_FAILED;
	}
	return todo;
}
