/*
 * What each listed message needs in this run, decided from the POP3
 * listing and the ledger before anything is fetched.
 *
 * A message is known by its UIDL, and the ledger row of that UIDL says
 * what became of it, when the answer is plain: one message on the server
 * with that UIDL, one row that is not gone, the same LIST size, and no
 * DELE of it whose outcome is unknown.  Otherwise its content decides
 * (PA_VERIFY: fetched, hashed and matched against the rows in transfer.c):
 *
 *   - repeated UIDLs (popa3d makes them from a few headers);
 *   - a UIDL whose message was deleted (DEL_DONE) and that a new message
 *     carries now: no live row, so it is new, and its content must differ
 *     from the gone one's (else the server did not delete it after all);
 *   - a row whose DELE was sent but whose QUIT never answered (DEL_SENT):
 *     the message on the server is that one, or a new one with its UIDL;
 *   - a LIST size that differs from the row's.
 *
 * Rows whose UIDL is no longer listed are marked gone first, so that a
 * UIDL a server reuses later never names an imported message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "run.h"

/* The listing's UIDLs, sorted, to count and look up. */
struct uidls {
	const char	**v;
	size_t		  n;
};

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static size_t
uidl_count(const struct uidls *u, const char *uidl)
{
	const char	**hit, **lo, **hi;

	hit = bsearch(&uidl, u->v, u->n, sizeof *u->v, cmp_str);
	if (hit == NULL)
		return 0;
	for (lo = hit; lo > u->v && strcmp(lo[-1], uidl) == 0; lo--)
		;
	for (hi = hit; hi + 1 < u->v + u->n && strcmp(hi[1], uidl) == 0; hi++)
		;
	return (size_t)(hi - lo) + 1;
}

static bool
listed(void *arg, const char *uidl)
{
	return uidl_count(arg, uidl) > 0;
}

/*
 * May this imported message go from the server now?  With keep = false,
 * yes; with keep = true and delete_after, once it was imported that many
 * days ago (so that a phone's POP3 client still sees it for a while, and
 * a small free mailbox does not fill up); and either way only once every
 * other destination of this POP3 mailbox has it too.
 */
enum result
plan_may_delete(struct run *rn, const struct ledger_msg *m, bool *yes,
    char **cause)
{
	size_t		 i;
	enum result	 r;

	*yes = !rn->ac->keep || (rn->ac->delete_after > 0 &&
	    m->imported_at > 0 && time(NULL) - m->imported_at >=
	    (time_t)rn->ac->delete_after * 86400);
	for (i = 0; i < rn->nsiblings && *yes; i++)
		if ((r = ledger_done_in(rn->l, rn->siblings[i].dests,
		    rn->siblings[i].n, m->uidl, m->hash, yes, cause)) != RES_OK)
			return r;
	return RES_OK;
}

/* The plain case: one message, one live row that answers for it. */
static enum result
plan_known(struct run *rn, const struct ledger_msg *m, struct plan *pl,
    char **cause)
{
	bool	 may;

	pl->row = m->id;
	switch (m->state) {
	case LEDGER_IMPORTED:
		if (plan_may_delete(rn, m, &may, cause) !=
		    RES_OK)
			return RES_TEMP;
		pl->act = may ? PA_DELE : PA_SKIP;
		break;
	case LEDGER_FAILED:
		pl->act = m->hold_until > time(NULL) ? PA_HELD : PA_IMPORT;
		break;
	case LEDGER_KEPT:
		pl->act = PA_KEPT;
		break;
	default:		/* to import; pending ones settle first */
		pl->act = PA_IMPORT;
		break;
	}
	return RES_OK;
}

/*
 * The live row that answers plainly for a message listed mult times under
 * its UIDL, or NULL: then *verify says whether its content must decide
 * (else it is new).
 */
static const struct ledger_msg *
plain_row(const struct ledger_msg *rows, size_t n, size_t mult,
    uint64_t size, bool *verify)
{
	const struct ledger_msg	*live = NULL;
	size_t			 k, nlive = 0;

	for (k = 0; k < n; k++)
		if (rows[k].deleted != DEL_DONE) {
			nlive++;
			live = &rows[k];
		}
	*verify = false;
	if (mult != 1 || nlive > 1 || (nlive == 1 &&
	    (live->deleted == DEL_SENT ||
	    (live->pop_size != 0 && live->pop_size != size)))) {
		*verify = true;
		return NULL;
	}
	return live;		/* NULL if none: a new message */
}

/* What message i needs in the current leg (rn->leg, the ledger on it). */
static enum result
plan_one(struct run *rn, const struct uidls *u, unsigned int i,
    char **cause)
{
	const struct pop3_msg	*pm = &rn->msgs[i];
	const struct ledger_msg	*live;
	struct plan		*pl = &rn->leg->plan[i];
	struct ledger_msg	*rows;
	size_t			 n;
	bool			 verify;
	enum result		 r;

	if ((r = ledger_find(rn->l, pm->uidl, &rows, &n, cause)) != RES_OK)
		return r;
	pl->row = 0;
	pl->unique = uidl_count(u, pm->uidl) == 1;
	live = plain_row(rows, n, uidl_count(u, pm->uidl), pm->size, &verify);
	if (live != NULL)
		r = plan_known(rn, live, pl, cause);
	else		/* new ones: transfer.c checks the gone rows too */
		pl->act = verify ? PA_VERIFY : PA_IMPORT;
	free(rows);
	return r;
}

/*
 * What message i needs, all legs together.  A message some leg has a row
 * for was routed in an earlier run: the legs with rows are its legs (a leg
 * without one was not chosen, or did not exist then).  One with no row in
 * any leg is new: it is fetched and routed.  Where content must decide in
 * any leg, it decides for all.
 */
static void
plan_combine(struct run *rn, unsigned int i)
{
	struct plan	*pl = &rn->plan[i];
	bool		 routed = false, verify = false, import = false;
	bool		 held = false, kept = false, dele = true;
	size_t		 k;

	for (k = 0; k < rn->nlegs; k++) {
		const struct plan *p = &rn->legs[k].plan[i];

		verify = verify || p->act == PA_VERIFY;
		if (p->row == 0)
			continue;
		routed = true;
		import = import || p->act == PA_IMPORT;
		held = held || p->act == PA_HELD;
		kept = kept || p->act == PA_KEPT;
		dele = dele && p->act == PA_DELE;
	}
	pl->unique = rn->legs[0].plan[i].unique;
	pl->row = rn->legs[0].plan[i].row;
	if (verify)
		pl->act = PA_VERIFY;
	else if (!routed || import)
		pl->act = PA_IMPORT;
	else if (held)
		pl->act = PA_HELD;
	else if (kept)
		pl->act = PA_KEPT;
	else
		pl->act = dele ? PA_DELE : PA_SKIP;
	/* Over max_size (fetchmail's limit): not fetched, left where it is. */
	if ((pl->act == PA_IMPORT || pl->act == PA_VERIFY) &&
	    rn->ac->max_size > 0 && rn->msgs[i].size >
	    (uint64_t)rn->ac->max_size)
		pl->act = PA_BIG;
}

char **
plan_known_dests(const struct run *rn, size_t *n)
{
	char		**v;
	size_t		  k, i, cap = rn->nlegs;

	for (i = 0; i < rn->nsiblings; i++)
		cap += rn->siblings[i].n;
	v = xcalloc(cap + 1, sizeof *v);
	*n = 0;
	for (k = 0; k < rn->nlegs; k++)
		v[(*n)++] = rn->legs[k].dest;
	for (i = 0; i < rn->nsiblings; i++)
		for (k = 0; k < rn->siblings[i].n; k++)
			v[(*n)++] = rn->siblings[i].dests[k];
	return v;
}

/*
 * A message routed in an earlier run to a destination that is no longer
 * one of the account's (renamed: a new host name for the same server; or
 * removed) and has not arrived there: the legs it has rows in are not the
 * whole of its route.  It is fetched and routed again by the rules as
 * they are now, beside the legs that have it (transfer_route.c), and is
 * not deleted before that.
 */
static enum result
plan_orphans(struct run *rn, char **cause)
{
	char		**known;
	size_t		  nknown, n, k;
	unsigned int	  i;
	bool		  rows;
	enum result	  r = RES_OK;

	known = plan_known_dests(rn, &nknown);
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++) {
		rn->plan[i].orphan = false;
		for (k = 0, rows = false; k < rn->nlegs; k++)
			rows = rows || rn->legs[k].plan[i].row != 0;
		if (!rows)
			continue;	/* new: it is routed anyway */
		r = ledger_orphans(rn->l, known, nknown, rn->msgs[i].uidl,
		    NULL, NULL, 0, &n, cause);
		if (r != RES_OK || n == 0)
			continue;
		plan_combine(rn, i);
		if (rn->plan[i].act == PA_BIG)
			continue;
		rn->plan[i].orphan = true;
		rn->plan[i].act = PA_VERIFY;	/* its content finds its rows */
		log_info("%s: message %u (UIDL %s) was routed to a destination "
		    "the config no longer has: it is routed again", rn->ac->name,
		    rn->msgs[i].num, rn->msgs[i].uidl);
	}
	free(known);
	return r;
}

static void
uidls_make(struct uidls *u, const struct pop3_msg *msgs, unsigned int n)
{
	unsigned int	 i;

	u->n = n;
	u->v = xcalloc(n + 1, sizeof *u->v);
	for (i = 0; i < n; i++)
		u->v[i] = msgs[i].uidl;
	qsort(u->v, u->n, sizeof *u->v, cmp_str);
}

/*
 * For `check` and dry runs, on a read-only ledger (or none): how many
 * listed messages are not known to be imported, and their sizes.
 */
enum result
plan_count(struct ledger *l, const struct pop3_msg *msgs, unsigned int n,
    unsigned int *todo, uint64_t *bytes, bool *todo_of, char **cause)
{
	const struct ledger_msg	*live;
	struct ledger_msg	*rows = NULL;
	struct uidls		 u;
	size_t			 nrows = 0;
	unsigned int		 i;
	bool			 verify, done;
	enum result		 r = RES_OK;

	*todo = 0;
	*bytes = 0;
	uidls_make(&u, msgs, n);
	for (i = 0; i < n && r == RES_OK; i++) {
		if (l != NULL && (r = ledger_find(l, msgs[i].uidl, &rows,
		    &nrows, cause)) != RES_OK)
			break;
		live = plain_row(rows, nrows, uidl_count(&u, msgs[i].uidl),
		    msgs[i].size, &verify);
		done = live != NULL && live->state == LEDGER_IMPORTED;
		if (todo_of != NULL)
			todo_of[i] = !done;
		if (!done) {
			(*todo)++;
			*bytes += msgs[i].size;
		}
		free(rows);
		rows = NULL;
		nrows = 0;
	}
	free(u.v);
	return r;
}

enum result
plan_make(struct run *rn, bool *need_imap, char **cause)
{
	struct uidls	 u;
	unsigned int	 i;
	size_t		 k;
	enum result	 r;

	*need_imap = false;
	rn->st->fresh = rn->st->set_aside = rn->st->too_big = 0;
	rn->st->too_old = rn->st->kept = 0;
	rn->st->waiting = rn->nmsgs;
	uidls_make(&u, rn->msgs, rn->nmsgs);
	free(rn->plan);
	rn->plan = xcalloc(rn->nmsgs + 1, sizeof *rn->plan);
	if ((r = ledger_begin(rn->l, cause)) != RES_OK)
		goto out;
	r = ledger_mark_gone(rn->l, listed, &u, cause);
	for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
		struct leg *g = &rn->legs[k];

		free(g->plan);
		g->plan = xcalloc(rn->nmsgs + 1, sizeof *g->plan);
		leg_enter(rn, g);
		for (i = 0; i < rn->nmsgs && r == RES_OK; i++)
			r = plan_one(rn, &u, i, cause);
	}
	leg_enter(rn, &rn->legs[0]);
	if (r == RES_OK && rn->ac->routing != NULL)
		r = plan_orphans(rn, cause);
	for (i = 0; i < rn->nmsgs && r == RES_OK; i++) {
		if (!rn->plan[i].orphan)
			plan_combine(rn, i);
		switch (rn->plan[i].act) {
		case PA_IMPORT:
			rn->st->fresh++;
			*need_imap = true;
			break;
		case PA_VERIFY:		/* new only if its content says so */
			*need_imap = true;
			break;
		case PA_HELD:
			rn->st->set_aside++;
			break;
		case PA_BIG:
			rn->st->too_big++;
			break;
		case PA_KEPT:
			rn->st->kept++;
			break;
		default:
			break;
		}
	}
	if (r == RES_OK)
		r = ledger_commit(rn->l, cause);
	else
		ledger_rollback(rn->l);
out:
	free(u.v);
	return r;
}

struct since_ctx {
	struct run	*rn;
	unsigned int	*idx;		/* the messages asked about */
};

static void
on_header(void *arg, size_t i, const char *hdr, size_t len)
{
	struct since_ctx *sc = arg;
	struct run	*rn = sc->rn;
	time_t		 t;
	int		 tz;

	/* No header (no TOP) or no date: not known to be old, imported. */
	if (len == 0 || !msg_date(hdr, len, &t, &tz) || t >= rn->ac->since)
		return;
	rn->plan[sc->idx[i]].act = PA_OLD;
	rn->st->fresh--;
	rn->st->too_old++;
}

/*
 * migrate --since: the messages to import whose Date (else newest
 * Received) is before it stay on the server.  Their headers come from TOP
 * n 0, so old mail is never downloaded.
 */
enum result
plan_since(struct run *rn, char **cause)
{
	struct since_ctx sc = { rn, NULL };
	unsigned int	*nums, i;
	size_t		 n = 0;
	enum result	 r;

	if (rn->ac->since == 0)
		return RES_OK;
	sc.idx = xcalloc(rn->nmsgs + 1, sizeof *sc.idx);
	nums = xcalloc(rn->nmsgs + 1, sizeof *nums);
	for (i = 0; i < rn->nmsgs; i++)
		if (rn->plan[i].act == PA_IMPORT) {
			sc.idx[n] = i;
			nums[n++] = rn->msgs[i].num;
		}
	r = pop3_headers(rn->p, nums, n, on_header, &sc, cause);
	free(nums);
	free(sc.idx);
	return r;
}
