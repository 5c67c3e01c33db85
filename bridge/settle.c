/*
 * Settling what interrupted runs left behind.
 *
 * Before each APPEND, the ledger records an attempt: the message's row,
 * the size and SHA-256 of what is sent, the mailbox's UIDVALIDITY and a
 * UID bound (any copy it makes has a UID at least that).  A run that reads
 * the server's answer drops the attempt with the outcome.  A killed run
 * leaves it, and then nothing proves the APPEND will not take effect: the
 * server executes what it received, after the client is gone (Dovecot was
 * seen committing a killed run's MULTIAPPEND 0.1-0.3 s after the SIGKILL,
 * after the next run had already looked), and over a real network queued
 * bytes can arrive later still.  So an attempt is not forgotten when its
 * copy is not found: it is kept as a watch, for GHOST_WINDOW, and every
 * run that meets the mailbox in that time looks above its bound again.
 *
 * The rule, at each look (settle), for the copies above the bounds whose
 * size and whole content equal an attempt's and that no ledger row owns:
 *
 *   1. a pending row (its run was killed) takes such a copy: imported;
 *      without one it is to be imported again;
 *   2. any other such copy goes to a row of that content that needs one
 *      (not imported, or its copy unknown or gone): nothing is appended
 *      twice and nothing is left without a copy;
 *   3. the rest are duplicates (the row that answers for the message owns
 *      a copy that exists): recorded in the ledger first, then removed
 *      with UID STORE +FLAGS.SILENT (\Deleted) and UID EXPUNGE of exactly
 *      those UIDs (RFC 4315), never a plain EXPUNGE or CLOSE, which would
 *      also take the user's own deleted mail.  A crash redoes recorded
 *      removals at the next look.  A server without UIDPLUS has no UID
 *      EXPUNGE: the duplicates stay flagged \Deleted for the user's client
 *      to expunge (the README says so).
 *
 * A look advances each attempt's bound past the highest UID it saw (a
 * later commit gets a higher UID: RFC 3501 2.3.1.1), so a watch costs one
 * FETCH of the sizes of the newest messages.  A look that starts
 * GHOST_WINDOW after the attempt was made retires it: TCP gives up
 * retransmitting within about fifteen minutes (Linux tcp_retries2), and
 * the server executes what it received long before that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge.h"
#include "run.h"

#define GHOST_WINDOW	3600	/* an attempt is watched this long (s) */
#define GHOST_RECENT	120	/* a run that finds one this young ... */
#define GHOST_QUIET	5	/* ... looks again once it has run this long */

struct cand {
	uint32_t	 uid;
	uint64_t	 size;
	char		 hex[65];
	bool		 taken;
};

struct scan {
	struct run		*rn;
	struct ledger_attempt	*att;
	size_t			 natt;
	uint32_t		 v;		/* the mailbox's UIDVALIDITY */
	uint32_t		 lo;		/* the FETCH bound */
	uint32_t		*seen;		/* UIDs >= lo */
	size_t			 nseen, seencap;
	struct cand		*c;
	size_t			 nc;
	uint32_t		*dups;
	size_t			 ndups;
	size_t			 found, again;
};

/* Could attempt a have made the copy uid? */
static bool
att_covers(const struct scan *sc, const struct ledger_attempt *a,
    uint32_t uid)
{
	return a->uidvalidity != sc->v || uid >= a->lo_uid;
}

static void
on_size(void *arg, uint32_t uid, uint64_t size, const char *body, size_t len)
{
	struct scan	*sc = arg;
	size_t		 i;

	(void)body;
	(void)len;
	if (sc->nseen == sc->seencap) {
		sc->seencap = sc->seencap == 0 ? 64 : sc->seencap * 2;
		sc->seen = xrealloc(sc->seen, sc->seencap * sizeof *sc->seen);
	}
	sc->seen[sc->nseen++] = uid;
	for (i = 0; i < sc->natt; i++)
		if (sc->att[i].size == size && att_covers(sc, &sc->att[i], uid))
			break;
	if (i == sc->natt)
		return;
	sc->c = xrealloc(sc->c, (sc->nc + 1) * sizeof *sc->c);
	memset(&sc->c[sc->nc], 0, sizeof sc->c[sc->nc]);
	sc->c[sc->nc].uid = uid;
	sc->c[sc->nc++].size = size;
}

static int
cmp_uid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Does the mailbox hold uid? */
static enum result
uid_there(struct scan *sc, uint32_t uid, bool *yes, char **cause)
{
	if (uid >= sc->lo) {
		*yes = bsearch(&uid, sc->seen, sc->nseen, sizeof *sc->seen,
		    cmp_uid) != NULL;
		return RES_OK;
	}
	return imap_uid_exists(run_im(sc->rn), uid, yes, cause);
}

/* The candidates' contents, in one FETCH; copies some row owns are no
 * candidates. */
static enum result
hash_candidates(struct scan *sc, char **cause)
{
	struct run	*rn = sc->rn;
	struct uid_hash	*uh;
	int64_t		 owner;
	size_t		 i, k = 0, nu = 0;
	enum result	 r = RES_OK;

	qsort(sc->seen, sc->nseen, sizeof *sc->seen, cmp_uid);
	uh = xcalloc(sc->nc + 1, sizeof *uh);
	for (i = 0; i < sc->nc && r == RES_OK; i++) {
		r = ledger_uid_owner(rn->l, sc->v, sc->c[i].uid, &owner, cause);
		if (owner == 0)
			uh[nu++].uid = sc->c[i].uid;
	}
	if (r == RES_OK)
		r = imap_hash_uids(run_im(rn), uh, nu, cause);
	for (i = 0; i < nu && r == RES_OK; i++) {
		size_t j;

		for (j = 0; j < sc->nc && sc->c[j].uid != uh[i].uid; j++)
			;
		if (!uh[i].found || uh[i].size != sc->c[j].size)
			continue;
		memcpy(sc->c[j].hex, uh[i].hex, sizeof sc->c[j].hex);
		sc->c[k++] = sc->c[j];
	}
	free(uh);
	sc->nc = r == RES_OK ? k : 0;
	return r;
}

/* An untaken candidate with this content that attempt a may have made. */
static struct cand *
cand_for(struct scan *sc, const struct ledger_attempt *a)
{
	size_t	 i;

	for (i = 0; i < sc->nc; i++)
		if (!sc->c[i].taken && sc->c[i].size == a->size &&
		    strcmp(sc->c[i].hex, a->hash) == 0 &&
		    att_covers(sc, a, sc->c[i].uid))
			return &sc->c[i];
	return NULL;
}

/* Rule 1: each pending row takes a copy its attempts made, or goes again. */
static enum result
settle_pending(struct scan *sc, char **cause)
{
	struct run		*rn = sc->rn;
	struct ledger_msg	*p;
	struct cand		*c;
	size_t			 np, i, j;
	enum result		 r;

	if ((r = ledger_pending(rn->l, &p, &np, cause)) != RES_OK)
		return r;
	for (i = 0; i < np && r == RES_OK; i++) {
		for (c = NULL, j = 0; j < sc->natt && c == NULL; j++)
			if (sc->att[j].msg == p[i].id)
				c = cand_for(sc, &sc->att[j]);
		if (c != NULL) {
			c->taken = true;
			sc->found++;
			r = ledger_set_state(rn->l, &p[i], LEDGER_IMPORTED, sc->v,
			    c->uid, cause);
		} else {
			sc->again++;
			r = ledger_set_state(rn->l, &p[i], LEDGER_TODO, 0, 0,
			    cause);
		}
	}
	free(p);
	return r;
}

/* Rules 2 and 3 for one copy c of content hash. */
static enum result
settle_copy(struct scan *sc, struct cand *c, char **cause)
{
	struct run		*rn = sc->rn;
	struct ledger_msg	*rows;
	size_t			 n, i;
	bool			 there;
	enum result		 r;

	if ((r = ledger_with_hash(rn->l, c->hex, &rows, &n, cause)) != RES_OK)
		return r;
	for (i = 0; i < n && r == RES_OK; i++) {
		struct ledger_msg *m = &rows[i];

		there = false;
		if (m->state == LEDGER_IMPORTED && m->uid != 0 &&
		    m->uidvalidity == sc->v &&
		    (r = uid_there(sc, m->uid, &there, cause)) != RES_OK)
			break;
		if (there)
			continue;
		/* This row needs a copy: it takes this one. */
		c->taken = true;
		r = ledger_set_state(rn->l, m, LEDGER_IMPORTED, sc->v, c->uid,
		    cause);
		break;
	}
	if (r == RES_OK && !c->taken && n > 0) {
		sc->dups = xrealloc(sc->dups, (sc->ndups + 1) *
		    sizeof *sc->dups);
		sc->dups[sc->ndups++] = c->uid;
		r = ledger_removal_add(rn->l, sc->v, c->uid, cause);
	}
	free(rows);
	return r;
}

/* Advance each watch past what was seen; retire the old ones. */
static enum result
settle_watches(struct scan *sc, time_t began, char **cause)
{
	uint32_t	 next = sc->nseen > 0 ? sc->seen[sc->nseen - 1] + 1 : 0;
	size_t		 i;
	enum result	 r = RES_OK;

	for (i = 0; i < sc->natt && r == RES_OK; i++) {
		struct ledger_attempt *a = &sc->att[i];

		if (began >= a->created + GHOST_WINDOW)
			r = ledger_attempt_retire(sc->rn->l, a->id, cause);
		else if (a->uidvalidity != sc->v || next > a->lo_uid)
			r = ledger_attempt_advance(sc->rn->l, a->id, sc->v,
			    next > sc->lo ? next : sc->lo, cause);
	}
	return r;
}

/* Redo every recorded removal in this mailbox, then forget them. */
static enum result
settle_removals(struct run *rn, char **cause)
{
	struct ledger_removal	*rm;
	uint32_t		*uids;
	size_t			 n, i, k = 0;
	bool			 expunged;
	enum result		 r;

	if ((r = ledger_removals(rn->l, &rm, &n, cause)) != RES_OK || n == 0)
		return r;
	uids = xcalloc(n, sizeof *uids);
	for (i = 0; i < n; i++)
		if (rm[i].uidvalidity == rn->leg->mb.uidvalidity)
			uids[k++] = rm[i].uid;
	qsort(uids, k, sizeof *uids, cmp_uid);
	r = imap_remove_uids(run_im(rn), uids, k, &expunged, cause);
	if (r == RES_OK && k > 0) {
		rn->st->removed += (unsigned int)k;
		log_info("%s: %s %zu duplicate%s that an interrupted run's "
		    "APPEND stored late%s", rn->ac->name, expunged ?
		    "removed" : "flagged \\Deleted", k, k == 1 ? "" : "s",
		    expunged ? "" : " (the server has no UIDPLUS to expunge "
		    "them alone; your mail client will)");
	}
	/* Removals in another UIDVALIDITY name nothing any more. */
	if (r == RES_OK && (r = ledger_begin(rn->l, cause)) == RES_OK) {
		for (i = 0; i < n && r == RES_OK; i++)
			r = ledger_removal_done(rn->l, rm[i].uidvalidity,
			    rm[i].uid, cause);
		r = r == RES_OK ? ledger_commit(rn->l, cause) :
		    (ledger_rollback(rn->l), r);
	}
	free(uids);
	free(rm);
	return r;
}

enum result
settle_needed(struct run *rn, bool *yes, char **cause)
{
	struct ledger_attempt	*att;
	struct ledger_removal	*rm;
	size_t			 na, nr;
	enum result		 r;

	*yes = false;
	if ((r = ledger_attempts(rn->l, &att, &na, cause)) != RES_OK)
		return r;
	if ((r = ledger_removals(rn->l, &rm, &nr, cause)) == RES_OK)
		*yes = na > 0 || nr > 0;
	free(att);
	free(rm);
	return r;
}

static void
scan_free(struct scan *sc)
{
	free(sc->att);
	free(sc->seen);
	free(sc->c);
	free(sc->dups);
}

/* Look above the watches' bounds, apply the rules, record it all. */
static enum result
settle_scan(struct scan *sc, time_t began, char **cause)
{
	struct run	*rn = sc->rn;
	size_t		 i;
	enum result	 r;

	sc->lo = UINT32_MAX;
	for (i = 0; i < sc->natt; i++) {
		/* A changed UIDVALIDITY voids the bound: look at it all. */
		uint32_t b = sc->att[i].uidvalidity != sc->v ? 1 :
		    sc->att[i].lo_uid;

		if (b < sc->lo)
			sc->lo = b;
		if (sc->att[i].created + GHOST_RECENT >= rn->began)
			rn->leg->settled = true;
	}
	if ((r = imap_list_sizes(run_im(rn), sc->lo, on_size, sc, cause)) !=
	    RES_OK || (r = hash_candidates(sc, cause)) != RES_OK ||
	    (r = ledger_begin(rn->l, cause)) != RES_OK)
		return r;
	r = settle_pending(sc, cause);
	for (i = 0; i < sc->nc && r == RES_OK; i++) {
		size_t j;

		if (sc->c[i].taken)
			continue;
		/* Only copies an attempt may have made are ours to judge. */
		for (j = 0; j < sc->natt; j++)
			if (sc->c[i].size == sc->att[j].size &&
			    strcmp(sc->c[i].hex, sc->att[j].hash) == 0 &&
			    att_covers(sc, &sc->att[j], sc->c[i].uid))
				break;
		if (j < sc->natt)
			r = settle_copy(sc, &sc->c[i], cause);
	}
	if (r == RES_OK)
		r = settle_watches(sc, began, cause);
	if (r != RES_OK) {
		ledger_rollback(rn->l);
		return r;
	}
	return ledger_commit(rn->l, cause);
}

enum result
settle(struct run *rn, char **cause)
{
	struct scan	 sc;
	time_t		 began = time(NULL);
	enum result	 r;

	memset(&sc, 0, sizeof sc);
	sc.rn = rn;
	if ((r = ledger_attempts(rn->l, &sc.att, &sc.natt, cause)) != RES_OK)
		return r;
	if (sc.natt == 0)
		goto removals;
	if ((r = run_imap(rn, true, cause)) != RES_OK)
		goto out;
	sc.v = rn->leg->mb.uidvalidity;
	if ((r = settle_scan(&sc, began, cause)) != RES_OK)
		goto out;
	if (sc.found + sc.again > 0)
		log_info("%s: settled %zu interrupted import%s: %zu already in "
		    "%s, %zu to import again", rn->ac->name, sc.found + sc.again,
		    sc.found + sc.again == 1 ? "" : "s", sc.found,
		    rn->leg->mailbox, sc.again);
removals:
	if ((r = run_imap(rn, true, cause)) == RES_OK)
		r = settle_removals(rn, cause);
out:
	scan_free(&sc);
	return r;
}

enum result
settle_again(struct run *rn, char **cause)
{
	struct timespec	 ts;
	double		 wait;
	bool		 need;
	enum result	 r;

	if (!rn->leg->settled || rn->leg->ss == NULL || run_stopping(rn))
		return RES_OK;
	/*
	 * A killed run was found at the start and its APPEND may still be on
	 * its way: give it until GHOST_QUIET after this run began, then look
	 * once more, so that a one-off migration ends clean.  Later runs look
	 * again anyway while the watch lasts.
	 */
	wait = rn->started + GHOST_QUIET - now_seconds();
	if (wait > 0) {
		ts.tv_sec = (time_t)wait;
		ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
		while (nanosleep(&ts, &ts) == -1 && !run_stopping(rn))
			;
	}
	if ((r = settle_needed(rn, &need, cause)) != RES_OK || !need)
		return r;
	rn->leg->settled = false;
	return settle(rn, cause);
}
