/*
 * One account run: the ordered steps from the POP3 listing to QUIT.
 *
 * The order of operations is the design (it is what makes "nothing lost,
 * nothing twice" hold when the process is killed at any instant, and when
 * the server commits a killed run's APPEND later):
 *
 *   1. lock the ledger of the POP3 mailbox; list the messages (UIDL, LIST);
 *   2. plan (plan.c): what each message needs, from its row for this
 *      destination; rows of messages no longer listed are marked gone;
 *   3. if anything needs IMAP: STATUS the mailbox (CREATE it if missing);
 *      settle (settle.c) what interrupted runs left: pending rows take the
 *      copy their APPEND made or go again, copies a killed run's APPEND
 *      committed late are removed, recorded removals are redone; on first
 *      contact with the destination, learn what is there (adopt.c);
 *   4. in batches (transfer.c): RETR, normalise and hash; record each
 *      intent (row pending, attempt with size, hash, UID bound) durably;
 *      APPEND; record imported durably, with DEL_SENT where the message
 *      may go; only then DELE;
 *   5. if a killed run's APPEND was found young, look once more (settle);
 *   6. QUIT, which is when the POP3 server commits the DELEs; then DEL_DONE.
 *
 * A message is deleted only if the ledger says IMPORTED for this
 * destination (and every other destination of this POP3 mailbox), which is
 * written only after the IMAP server's OK or after its copy was found.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "route.h"
#include "prelogin.h"
#include "run.h"

/* The ident_dest spellings of every leg of an account. */
char **
account_dests(const struct account *ac, size_t *n)
{
	const struct routing *rt = ac->routing;
	char		**v;
	size_t		  k;

	if (rt == NULL) {
		*n = 1;
		v = xcalloc(1, sizeof *v);
		v[0] = ident_dest(&ac->imap);
		return v;
	}
	*n = rt->ntargets;
	v = xcalloc(rt->ntargets, sizeof *v);
	for (k = 0; k < rt->ntargets; k++)
		v[k] = ident_dest_in(route_endpoint(ac, k),
		    rt->targets[k].mailbox);
	return v;
}

/* The account's legs: its route targets, or its imap block alone. */
static enum result
legs_make(struct run *rn, char **cause)
{
	const struct routing *rt = rn->ac->routing;
	char		**dests;
	size_t		  k, n;
	enum result	  r = RES_OK;

	dests = account_dests(rn->ac, &n);
	rn->legs = xcalloc(n, sizeof *rn->legs);
	rn->nlegs = n;
	for (k = 0; k < n; k++) {
		struct leg *g = &rn->legs[k];

		g->target = k;
		g->ep = rt != NULL ? route_endpoint(rn->ac, k) : &rn->ac->imap;
		g->want = rt != NULL ? rt->targets[k].mailbox :
		    rn->ac->imap.mailbox;
		g->dest = dests[k];
		g->label = rt != NULL ? xprintf("%s:%s", route_dest_name(rn->ac,
		    rt->targets[k].dest), g->want != NULL ? g->want : "INBOX") :
		    xstrdup(g->want != NULL ? g->want : "INBOX");
		if (r == RES_OK)
			r = ledger_dest(rn->l, g->dest, &g->dest_id, cause);
	}
	free(dests);
	if (r == RES_OK)
		leg_enter(rn, &rn->legs[0]);
	return r;
}

/* Other accounts of the config that read this POP3 mailbox. */
static void
find_siblings(struct run *rn)
{
	char		*src = ident_source(&rn->ac->pop3), *s;
	size_t		 i;

	for (i = 0; i < rn->cf->naccounts; i++) {
		const struct account *o = &rn->cf->accounts[i];
		struct sibling	*sb;

		if (o == rn->ac)
			continue;
		s = ident_source(&o->pop3);
		if (strcmp(s, src) == 0) {
			rn->siblings = xrealloc(rn->siblings,
			    (rn->nsiblings + 1) * sizeof *rn->siblings);
			sb = &rn->siblings[rn->nsiblings++];
			sb->dests = account_dests(o, &sb->n);
		}
		free(s);
	}
	free(src);
}

/*
 * What became of the DELEs of this run: with QUIT answered, the answered
 * ones are committed and the others were not made; with no QUIT sent,
 * none was made (RFC 1939 6: deletions happen only in the UPDATE state).
 * A QUIT sent and not answered leaves them DEL_SENT: unknown.
 */
static void
record_deles(struct run *rn, bool quit_sent, bool quit_ok)
{
	struct ledger_msg m;
	char		*why = NULL;
	unsigned int	 done = 0;
	size_t		 i;
	enum result	 r;

	if (rn->ndele == 0 || (quit_sent && !quit_ok) ||
	    (r = ledger_begin(rn->l, &why)) != RES_OK)
		goto out;
	for (i = 0; i < rn->ndele && r == RES_OK; i++) {
		bool gone = quit_ok && rn->dele[i].answered;
		size_t k;

		for (k = 0; k < rn->dele[i].nrows && r == RES_OK; k++) {
			memset(&m, 0, sizeof m);
			m.id = rn->dele[i].rows[k];
			r = ledger_deleted(rn->l, &m, gone ? DEL_DONE : DEL_NO,
			    &why);
		}
		done += gone;
	}
	if (r == RES_OK && (r = ledger_commit(rn->l, &why)) == RES_OK)
		rn->st->deleted += done;
	else if (r != RES_OK)
		ledger_rollback(rn->l);
out:
	if (why != NULL) {
		log_warn("%s: %s", rn->ac->name, why);
		free(why);
	}
}

static void
finish_pop3(struct run *rn)
{
	char	*why = NULL;
	bool	 sent;

	/* Replies to pipelined commands come before QUIT's. */
	if (!conn_dead(pop3_conn(rn->p)) && transfer_drain(rn, &why) !=
	    RES_OK) {
		free(why);
		why = NULL;
	}
	sent = !conn_dead(pop3_conn(rn->p));
	if (pop3_quit(rn->p, &why) != RES_OK) {
		if (rn->ndele > 0)
			log_warn("%s: %s (the %zu deletions will be made next "
			    "run)", rn->ac->name, why, rn->ndele);
		free(why);
		rn->p = NULL;
		record_deles(rn, sent, false);
		return;
	}
	rn->p = NULL;
	record_deles(rn, true, true);
}

/*
 * Every account run ends by a deadline, so that a server that trickles a
 * byte at a time cannot hold a cron run, a daemon's poll or a batch slot
 * for ever: a base (the config's "deadline", default DEADLINE_BASE), and
 * once the listing says how much mail is to move, time for it at a slow
 * line's DEADLINE_RATE bytes a second.
 */
#define DEADLINE_BASE	900
#define DEADLINE_RATE	20000

static double
deadline_base(const struct run *rn)
{
	return rn->ac->deadline > 0 ? (double)rn->ac->deadline :
	    rn->cf->deadline > 0 ? (double)rn->cf->deadline : DEADLINE_BASE;
}

static void
deadline_for_mail(struct run *rn)
{
	uint64_t	 bytes = 0;
	unsigned int	 i;
	double		 rate = DEADLINE_RATE;

	/* migrate --limit-rate below the slow line: at half the cap. */
	if (pace_rate() > 0 && pace_rate() / 2 < rate)
		rate = pace_rate() / 2;
	for (i = 0; i < rn->nmsgs; i++)
		if (rn->plan[i].act == PA_IMPORT || rn->plan[i].act == PA_VERIFY)
			bytes += rn->msgs[i].size;
	net_deadline_extend((double)bytes / rate);
}

/* Which legs have attempts or removals to settle; *any if one has. */
static enum result
legs_ghosts(struct run *rn, bool *any, char **cause)
{
	size_t		 k;
	enum result	 r = RES_OK;

	*any = false;
	for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
		/* A Gmail leg settles a message when it is fetched again
		 * (transfer_gmail.c), not before. */
		if (rn->legs[k].ep->gmail != NULL) {
			rn->legs[k].settled = true;
			continue;
		}
		leg_enter(rn, &rn->legs[k]);
		r = settle_needed(rn, &rn->legs[k].ghosts, cause);
		*any = *any || rn->legs[k].ghosts;
	}
	leg_enter(rn, &rn->legs[0]);
	return r;
}

/* Each leg's first contact still to make?  (Its scan is adopt.c's.) */
static enum result
legs_first(struct run *rn, char **cause)
{
	bool		 done;
	size_t		 k;
	enum result	 r = RES_OK;

	for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
		leg_enter(rn, &rn->legs[k]);
		r = ledger_adopted(rn->l, &done, cause);
		rn->legs[k].first = !done;
	}
	leg_enter(rn, &rn->legs[0]);
	return r;
}

/* Settle each leg with ghosts (killed runs' APPENDs, removals). */
static enum result
legs_settle(struct run *rn, bool again, char **cause)
{
	size_t		 k;
	enum result	 r = RES_OK;

	for (k = 0; k < rn->nlegs && r == RES_OK; k++) {
		struct leg *g = &rn->legs[k];

		if (again ? !g->settled : !g->ghosts)
			continue;
		leg_enter(rn, g);
		r = again ? settle_again(rn, cause) : settle(rn, cause);
	}
	leg_enter(rn, &rn->legs[0]);
	return r;
}

/* After a run that went through every message: first contacts made. */
static enum result
legs_adopted(struct run *rn, char **cause)
{
	size_t		 k;
	enum result	 r = RES_OK;

	for (k = 0; k < rn->nlegs && r == RES_OK; k++)
		if (rn->legs[k].adopt != NULL || (rn->legs[k].gm != NULL &&
		    rn->legs[k].first)) {
			leg_enter(rn, &rn->legs[k]);
			r = ledger_set_adopted(rn->l, cause);
		}
	leg_enter(rn, &rn->legs[0]);
	return r;
}

/* Steps 2 to 5: plan, settle, adopt, transfer, settle again. */
static enum result
run_messages(struct run *rn, char **cause)
{
	bool		 need, ghosts;
	enum result	 r;

	if ((r = plan_make(rn, &need, cause)) != RES_OK ||
	    (r = legs_ghosts(rn, &ghosts, cause)) != RES_OK ||
	    (r = legs_first(rn, cause)) != RES_OK)
		return r;
	deadline_for_mail(rn);
	if (need || ghosts) {
		/* One leg: its login first, as before any mail moves. */
		if (rn->nlegs == 1 && rn->legs[0].ep->gmail == NULL &&
		    (r = run_imap(rn, false, cause)) != RES_OK)
			return r;
		/* Settling changes rows: plan again with what it found. */
		if (ghosts && ((r = legs_settle(rn, false, cause)) != RES_OK ||
		    (r = plan_make(rn, &need, cause)) != RES_OK))
			return r;
		if ((r = plan_since(rn, cause)) != RES_OK)
			return r;
		if (need && rn->nlegs == 1 && rn->legs[0].first &&
		    rn->legs[0].ep->gmail == NULL &&
		    (r = adopt_load(rn, cause)) != RES_OK)
			return r;
	}
	r = transfer_all(rn, cause);
	if (r == RES_OK || r == RES_MSG) {
		char *why = NULL;
		enum result r2;

		/* A first contact that went through every message is done. */
		if ((r2 = legs_adopted(rn, &why)) != RES_OK ||
		    (r2 = legs_settle(rn, true, &why)) != RES_OK) {
			free(*cause);
			*cause = why;
			return r2;
		}
	}
	return r;
}

/*
 * tls = "none" means no TLS at all, even where the server offers STARTTLS
 * (for a test server or a network one trusts): said loudly by `run` and
 * `check` alike.
 */
void
account_plaintext_warning(const struct account *ac)
{
	if (ac->pop3.tls == TLS_NONE || ac->imap.tls == TLS_NONE)
		log_warn("%s: warning: %s without TLS (tls = \"none\"): the "
		    "password and mail cross the network in clear", ac->name,
		    ac->pop3.tls == TLS_NONE ? (ac->imap.tls == TLS_NONE ?
		    "POP3 and IMAP" : "POP3") : "IMAP");
}

/* The messages over max_size, left on the server: a line, the first few. */
static void
log_too_big(const struct run *rn)
{
	char		 s1[32], s2[32], *list = xstrdup(""), *t;
	unsigned int	 i, shown = 0;

	for (i = 0; i < rn->nmsgs && shown < 5; i++) {
		if (rn->plan[i].act != PA_BIG)
			continue;
		t = xprintf("%s%smessage %u (UIDL %s, %s)", list, shown > 0 ?
		    ", " : "", rn->msgs[i].num, rn->msgs[i].uidl,
		    log_size(rn->msgs[i].size, s1, sizeof s1));
		free(list);
		list = t;
		shown++;
	}
	log_info("%s: %u message%s over max_size (%s) left on the POP3 server: "
	    "%s%s", rn->ac->name, rn->st->too_big, rn->st->too_big == 1 ? "" :
	    "s", log_size((uint64_t)rn->ac->max_size, s2, sizeof s2), list,
	    rn->st->too_big > shown ? ", ..." : "");
	free(list);
}

/* What the run passed over, and why: said once at its end. */
static void
log_skipped(struct run *rn)
{
	const struct account	*ac = rn->ac;
	const struct run_stats	*st = rn->st;

	if (st->adopted > 0)
		log_info("%s: %u message%s already in %s (same Message-ID, size "
		    "and content): not imported again", ac->name, st->adopted,
		    st->adopted == 1 ? "" : "s", ac->imap.mailbox);
	if (st->too_big > 0)
		log_too_big(rn);
	if (st->too_old > 0)
		log_info("%s: %u message%s dated before --since left on the POP3 "
		    "server", ac->name, st->too_old, st->too_old == 1 ? "" : "s");
	if (st->set_aside > 0)
		log_info("%s: %u message%s set aside after failing in several "
		    "runs (see `popbridge status`; `popbridge retry %s` tries "
		    "them now)", ac->name, st->set_aside, st->set_aside == 1 ?
		    "" : "s", ac->name);
}

static void
run_free(struct run *rn)
{
	size_t	 i;

	prelogin_free(rn->pre);
	pop3_free(rn->p);
	sessions_close(rn);
	transfer_free(rn);
	for (i = 0; i < rn->nlegs; i++) {
		adopt_free(rn->legs[i].adopt);
		gmail_leg_free(&rn->legs[i]);
		free(rn->legs[i].dest);
		free(rn->legs[i].label);
		free(rn->legs[i].mailbox);
		free(rn->legs[i].wire);
		free(rn->legs[i].plan);
		free(rn->legs[i].down_why);
	}
	free(rn->legs);
	for (i = 0; i < rn->nsiblings; i++) {
		size_t k;

		for (k = 0; k < rn->siblings[i].n; k++)
			free(rn->siblings[i].dests[k]);
		free(rn->siblings[i].dests);
	}
	free(rn->siblings);
	for (i = 0; i < rn->ndele; i++)
		free(rn->dele[i].rows);
	free(rn->dele);
	free(rn->msgs);
	free(rn->plan);
	free(rn->claimed);
}

enum result
account_run(const struct config *cf, const struct account *ac,
    const struct run_opts *opts, struct run_stats *st, char **cause)
{
	static const struct run_opts none = { NULL, NULL, NULL };

	struct run	 rn;
	char		*path, *source, *dest, *why = NULL;
	bool		 standin;
	enum result	 r;

	memset(&rn, 0, sizeof rn);
	memset(st, 0, sizeof *st);
	log_set_account(ac->name);
	rn.cf = cf;
	rn.ac = ac;
	rn.opts = opts != NULL ? opts : &none;
	rn.st = st;
	rn.started = now_seconds();
	rn.began = time(NULL);
	find_siblings(&rn);
	net_deadline(deadline_base(&rn));

	account_plaintext_warning(ac);
	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	dest = ident_dest(&ac->imap);
	r = ledger_open(cf->state_dir, path, source, dest, &rn.l, cause);
	free(path);
	free(source);
	free(dest);
	if (r != RES_OK || (r = legs_make(&rn, cause)) != RES_OK)
		goto done;
	/* Mail likely: log in to IMAP beside POP3, not after it. */
	if (rn.nlegs == 1 && rn.legs[0].ep->gmail == NULL &&
	    ledger_expects_mail(rn.l, ac->name))
		rn.pre = prelogin_start(rn.legs[0].ep, ac->name, cf->timeout);
	if ((r = login_pop3(&ac->pop3, ac->name, cf->timeout, &rn.p, cause)) !=
	    RES_OK ||
	    (r = pop3_scan(rn.p, &rn.msgs, &rn.nmsgs, &standin, cause)) != RES_OK)
		goto done;
	if (standin)
		log_debug("%s: pop3: no UIDL; messages are known by header "
		    "hashes", ac->name);
	r = run_messages(&rn, cause);
	/*
	 * QUIT when the POP3 link is sound; after a failure elsewhere the
	 * DELEs sent so far still stand for imported messages, so QUIT is
	 * safe then too.  Over quota, nothing is deleted (no QUIT).
	 */
	if (rn.p != NULL && !rn.hold_deletes && !rn.pop3_dead &&
	    (r == RES_OK || r == RES_MSG || r == RES_TEMP))
		finish_pop3(&rn);
	else
		record_deles(&rn, false, false);
	log_skipped(&rn);
done:
	net_deadline(0);
	st->seconds = now_seconds() - rn.started;
	if (rn.l != NULL) {
		if (rn.nlegs > 0)
			leg_enter(&rn, &rn.legs[0]);
		if (ledger_run_record(rn.l, ac->name, rn.began, r, st,
		    r == RES_OK ? NULL : *cause, &why) != RES_OK) {
			log_warn("%s: %s", ac->name, why);
			free(why);
		}
	}
	run_free(&rn);
	ledger_close(rn.l);
	return r;
}
