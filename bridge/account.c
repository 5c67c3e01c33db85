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
static void
plaintext_warning(const struct account *ac)
{
	if (ac->pop3.tls == TLS_NONE || ac->imap.tls == TLS_NONE)
		log_warn("%s: warning: %s without TLS (tls = \"none\"): the "
		    "password and mail cross the network in clear", ac->name,
		    ac->pop3.tls == TLS_NONE ? (ac->imap.tls == TLS_NONE ?
		    "POP3 and IMAP" : "POP3") : "IMAP");
}

/* check's word on a plaintext connection whose server offered TLS. */
static void
starttls_hint(const struct account *ac, const struct endpoint *ep,
    struct conn *c)
{
	if (ep->tls == TLS_NONE && conn_offers_starttls(c))
		printf("%s: %s %s:%d offers STARTTLS, and tls = \"none\" keeps "
		    "it from being used: remove that line to encrypt\n",
		    ac->name, ep->imap ? "imap" : "pop3", ep->host, ep->port);
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

static void
run_free(struct run *rn)
{
	size_t	 i;

	pop3_free(rn->p);
	sessions_close(rn);
	transfer_free(rn);
	for (i = 0; i < rn->nlegs; i++) {
		adopt_free(rn->legs[i].adopt);
		gmail_leg_free(&rn->legs[i]);
		free(rn->legs[i].dest);
		free(rn->legs[i].label);
		free(rn->legs[i].mailbox);
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

	plaintext_warning(ac);
	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	dest = ident_dest(&ac->imap);
	r = ledger_open(cf->state_dir, path, source, dest, &rn.l, cause);
	free(path);
	free(source);
	free(dest);
	if (r != RES_OK || (r = legs_make(&rn, cause)) != RES_OK)
		goto done;
	if ((r = pop3_open(&ac->pop3, ac->name, cf->timeout, &rn.p, cause)) !=
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
	if (st->adopted > 0)
		log_info("%s: %u message%s already in %s (same Message-ID, size "
		    "and content): not imported again", ac->name, st->adopted,
		    st->adopted == 1 ? "" : "s", ac->imap.mailbox);
	if (st->too_big > 0)
		log_too_big(&rn);
	if (st->too_old > 0)
		log_info("%s: %u message%s dated before --since left on the POP3 "
		    "server", ac->name, st->too_old, st->too_old == 1 ? "" : "s");
	if (st->set_aside > 0)
		log_info("%s: %u message%s set aside after failing in several "
		    "runs (see `popbridge status`; `popbridge retry %s` tries "
		    "them now)", ac->name, st->set_aside, st->set_aside == 1 ?
		    "" : "s", ac->name);
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

/*
 * A routed message has rows in the destinations it went to, not always
 * in the account's own: it is done when it is imported in some and
 * waits in none.
 */
static enum result
count_routed(const struct account *ac, struct ledger *l,
    const struct pop3_msg *msgs, unsigned int n, unsigned int *todo,
    uint64_t *bytes, bool *todo_of, char **cause)
{
	char		**dests;
	size_t		  nd, k;
	unsigned int	  i;
	bool		  done;
	enum result	  r = RES_OK;

	dests = account_dests(ac, &nd);
	*todo = 0;
	*bytes = 0;
	for (i = 0; i < n && r == RES_OK; i++) {
		r = ledger_done_in(l, dests, nd, msgs[i].uidl, NULL, &done,
		    cause);
		if (todo_of != NULL)
			todo_of[i] = !done;
		if (!done) {
			(*todo)++;
			*bytes += msgs[i].size;
		}
	}
	for (k = 0; k < nd; k++)
		free(dests[k]);
	free(dests);
	return r;
}

/*
 * For check and dry runs: the listed messages not yet imported into this
 * account's destination, read from the ledger without locking it.
 */
static enum result
count_todo(const struct config *cf, const struct account *ac,
    const struct pop3_msg *msgs, unsigned int n, unsigned int *todo,
    uint64_t *bytes, bool *todo_of, char **cause)
{
	struct ledger	*l = NULL;
	char		*path, *source, *dest;
	enum result	 r;

	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	dest = ident_dest(&ac->imap);
	r = ledger_open_readonly(path, source, dest, &l, cause);
	free(path);
	free(source);
	free(dest);
	if (r == RES_OK)
		r = plan_count(l, msgs, n, todo, bytes, todo_of, cause);
	if (r == RES_OK && l != NULL && ac->routing != NULL)
		r = count_routed(ac, l, msgs, n, todo, bytes, todo_of, cause);
	ledger_close(l);
	return r;
}

/* check's POP3 line: TLS, capabilities, messages and what is to import. */
static enum result
check_pop3(const struct config *cf, const struct account *ac, char **cause)
{
	struct pop3		*p = NULL;
	struct pop3_msg		*msgs = NULL;
	const struct pop3_caps	*pc;
	unsigned int		 count = 0, todo = 0;
	uint64_t		 bytes = 0;
	char			*why = NULL;
	bool			 standin, *todo_of = NULL;
	enum result		 r;

	r = pop3_open(&ac->pop3, ac->name, cf->timeout, &p, cause);
	if (r == RES_OK)
		r = pop3_scan(p, &msgs, &count, &standin, cause);
	if (r == RES_OK) {
		todo_of = xcalloc(count + 1, sizeof *todo_of);
		r = count_todo(cf, ac, msgs, count, &todo, &bytes, todo_of,
		    cause);
	}
	if (r != RES_OK)
		printf("%s: pop3 %s:%d: FAILED: %s\n", ac->name, ac->pop3.host,
		    ac->pop3.port, *cause);
	else {
		pc = pop3_caps(p);
		printf("%s: pop3 %s:%d: %s%s%s; UIDL %s, PIPELINING %s; "
		    "%u message%s on the server, %u to import (%.1f kB)\n",
		    ac->name, ac->pop3.host, ac->pop3.port,
		    conn_tls_version(pop3_conn(p)),
		    conn_cert_subject(pop3_conn(p))[0] != '\0' ?
		    ", certificate " : "", conn_cert_subject(pop3_conn(p)),
		    standin ? "no (header hashes stand in)" : "yes",
		    pc->pipelining ? "yes" : "no", count, count == 1 ? "" : "s",
		    todo, (double)bytes / 1000.0);
		starttls_hint(ac, &ac->pop3, pop3_conn(p));
		/* The first 20 one by one; a dry run shows them all. */
		if ((r = route_show(ac, p, msgs, count, todo_of, 20, cause)) !=
		    RES_OK)
			printf("%s: pop3 %s:%d: FAILED: %s\n", ac->name,
			    ac->pop3.host, ac->pop3.port, *cause);
	}
	/* QUIT with no DELE sent: nothing changes on the server. */
	if (p != NULL && !conn_dead(pop3_conn(p))) {
		(void)pop3_quit(p, &why);
		p = NULL;
		free(why);
	}
	pop3_free(p);
	free(todo_of);
	free(msgs);
	return r;
}

/* check's line for a Gmail API destination: its token command works.
 * Nothing is asked of the API (labels are made at the first import). */
static enum result
check_gmail(const struct account *ac, const char *label,
    const struct endpoint *ep, char **cause)
{
	char		*token = NULL;
	enum result	 r;

	if ((r = config_secret(ep, &token, cause)) != RES_OK) {
		printf("%s: %s Gmail API %s: FAILED: %s\n", ac->name, label,
		    ep->host, *cause);
		return r;
	}
	secret_free(token);
	printf("%s: %s Gmail API %s: %s; the token command gave a token; "
	    "label %s\n", ac->name, label, ep->host, ep->user, ep->mailbox);
	return RES_OK;
}

/* check's line for an IMAP destination: login, capabilities, mailbox. */
static enum result
check_imap(const struct config *cf, const struct account *ac,
    const char *label, const struct endpoint *ep, char **cause)
{
	struct imap		*im = NULL;
	struct imap_mbox	 mb;
	const struct imap_caps	*ic;
	char			*placed = NULL, limit[32];
	enum result		 r;

	if (ep->gmail != NULL)
		return check_gmail(ac, label, ep, cause);
	r = imap_open(ep, ac->name, cf->timeout, &im, cause);
	if (r == RES_OK)
		r = imap_place(im, ep->mailbox, &placed, cause);
	if (r == RES_OK)
		r = imap_status(im, placed, &mb, cause);
	if (r != RES_OK) {
		printf("%s: %s %s:%d: FAILED: %s\n", ac->name, label, ep->host,
		    ep->port, *cause);
		goto out;
	}
	ic = imap_caps(im);
	if (ic->appendlimit != 0)
		snprintf(limit, sizeof limit, "%llu",
		    (unsigned long long)ic->appendlimit);
	else
		strcpy(limit, "none");
	printf("%s: %s %s:%d: %s%s%s; LITERAL+ %s, MULTIAPPEND %s, "
	    "UIDPLUS %s, APPENDLIMIT %s; mailbox %s %s\n", ac->name, label,
	    ep->host, ep->port, conn_tls_version(imap_conn(im)),
	    conn_cert_subject(imap_conn(im))[0] != '\0' ?
	    ", certificate " : "", conn_cert_subject(imap_conn(im)),
	    ic->literal_plus ? "yes" : "no",
	    ic->multiappend ? "yes" : "no", ic->uidplus ? "yes" : "no",
	    limit, placed, mb.exists ?
	    "exists" : "does not exist (it will be created)");
	starttls_hint(ac, ep, imap_conn(im));
out:
	imap_logout(im);
	free(placed);
	return r;
}

enum result
account_check(const struct config *cf, const struct account *ac,
    char **cause)
{
	const struct routing	*rt = ac->routing;
	char			*why = NULL, *note, label[128];
	enum result		 r, worst;
	const struct endpoint	*via[2] = { &ac->pop3, &ac->imap };
	size_t			 k;

	plaintext_warning(ac);
	/* Through a proxy (the config's, or the environment's)? */
	for (k = 0; k < 2; k++)
		if ((note = config_proxy_note(via[k])) != NULL) {
			printf("%s: %s\n", ac->name, note);
			free(note);
		}
	worst = check_pop3(cf, ac, cause);
	/* Every destination logs in, with the account's imap first. */
	for (k = 0; k <= (rt != NULL ? rt->ndests : 0); k++) {
		if (k == 0)
			snprintf(label, sizeof label, "imap");
		else
			snprintf(label, sizeof label, "destination %s: imap",
			    rt->dests[k - 1].name);
		r = check_imap(cf, ac, label, k == 0 ? &ac->imap :
		    &rt->dests[k - 1].ep, &why);
		if (r != RES_OK) {
			worst = result_worst(worst, r);
			free(*cause);
			*cause = why;
			why = NULL;
		}
		free(why);
		why = NULL;
	}
	return worst;
}

static int
cmp_size_desc(const void *a, const void *b)
{
	const struct pop3_msg *x = a, *y = b;

	return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

/* Could a missing mailbox be made as named?  A "/" in its name on a
 * server whose separator is "." (Dovecot's and Cyrus' default) is refused
 * by CREATE ("Invalid mailbox name"); a "." on a "/" server is only a
 * character of the name. */
static bool
sep_ok(const struct imap *im, const char *mailbox)
{
	return imap_separator(im) != '.' || strchr(mailbox, '/') == NULL;
}

/* The dry run's report, from the listing and what is to import. */
static void
dry_report(const struct account *ac, const char *mailbox, struct imap *im,
    const struct imap_mbox *mb, const struct pop3_msg *msgs, unsigned int n,
    const bool *todo_of)
{
	struct pop3_msg	*fresh;
	unsigned int	 nfresh = 0, i, over = 0;
	uint64_t	 total = 0, fresh_bytes = 0, limit;
	char		 s1[32], s2[32];

	fresh = xcalloc(n + 1, sizeof *fresh);
	for (i = 0; i < n; i++) {
		total += msgs[i].size;
		if (todo_of[i]) {
			fresh[nfresh++] = msgs[i];
			fresh_bytes += msgs[i].size;
		}
	}
	limit = imap_caps(im)->appendlimit;
	printf("%s: POP3 %s: %u messages, %s; %u to import, %s\n", ac->name,
	    ac->pop3.host, n, log_size(total, s1, sizeof s1), nfresh,
	    log_size(fresh_bytes, s2, sizeof s2));
	printf("%s: IMAP %s: mailbox %s %s; MULTIAPPEND %s, LITERAL+ %s, "
	    "APPENDLIMIT %s\n", ac->name, ac->imap.host, mailbox,
	    mb->exists ? "exists" : !sep_ok(im, mailbox) ? "does not exist, "
	    "and cannot be created with that name: the server's hierarchy "
	    "separator is \".\", not \"/\"" : "will be created",
	    imap_caps(im)->multiappend ? "yes" : "no",
	    imap_caps(im)->literal_plus ? "yes" : "no",
	    limit != 0 ? log_size(limit, s1, sizeof s1) : "none");
	qsort(fresh, nfresh, sizeof *fresh, cmp_size_desc);
	for (i = 0; i < nfresh && i < 5; i++)
		printf("%s:   largest: message %u (UIDL %s), %s\n", ac->name,
		    fresh[i].num, fresh[i].uidl, log_size(fresh[i].size, s1,
		    sizeof s1));
	for (i = 0; limit != 0 && i < nfresh; i++)
		if (fresh[i].size > limit) {
			over++;
			printf("%s:   over APPENDLIMIT: message %u (UIDL %s), "
			    "%s\n", ac->name, fresh[i].num, fresh[i].uidl,
			    log_size(fresh[i].size, s1, sizeof s1));
		}
	if (limit != 0)
		printf("%s: %u message%s over the server's APPENDLIMIT\n",
		    ac->name, over, over == 1 ? "" : "s");
	free(fresh);
}

/* The dry run's IMAP side: the mailbox, what the server takes. */
static enum result
dry_imap(const struct config *cf, const struct account *ac,
    const struct pop3_msg *msgs, unsigned int n, const bool *todo_of,
    char **cause)
{
	struct imap		*im = NULL;
	struct imap_mbox	 mb;
	char			*placed = NULL;
	unsigned int		 i, todo = 0;
	enum result		 r;

	if (ac->imap.gmail != NULL) {
		for (i = 0; i < n; i++)
			todo += todo_of[i];
		printf("%s: POP3 %s: %u messages; %u to import into the Gmail "
		    "API at %s for %s\n", ac->name, ac->pop3.host, n, todo,
		    ac->imap.host, ac->imap.user);
		return RES_OK;
	}
	if ((r = imap_open(&ac->imap, ac->name, cf->timeout, &im, cause)) ==
	    RES_OK && (r = imap_place(im, ac->imap.mailbox, &placed,
	    cause)) == RES_OK && (r = imap_status(im, placed, &mb, cause)) ==
	    RES_OK)
		dry_report(ac, placed, im, &mb, msgs, n, todo_of);
	imap_logout(im);
	free(placed);
	return r;
}

/* --dry-run: what a run would import, and what the server would refuse. */
enum result
account_dry_run(const struct config *cf, const struct account *ac,
    char **cause)
{
	struct pop3		*p = NULL;
	struct pop3_msg		*msgs = NULL;
	unsigned int		 n = 0, todo;
	uint64_t		 bytes;
	bool			 standin, *todo_of = NULL;
	char			*why = NULL;
	enum result		 r;

	if ((r = pop3_open(&ac->pop3, ac->name, cf->timeout, &p, cause)) !=
	    RES_OK || (r = pop3_scan(p, &msgs, &n, &standin, cause)) !=
	    RES_OK)
		goto out;
	todo_of = xcalloc(n + 1, sizeof *todo_of);
	if ((r = count_todo(cf, ac, msgs, n, &todo, &bytes, todo_of, cause)) !=
	    RES_OK || (r = dry_imap(cf, ac, msgs, n, todo_of, cause)) !=
	    RES_OK)
		goto out;
	if ((r = route_show(ac, p, msgs, n, todo_of, 100000, cause)) ==
	    RES_OK)
		printf("%s: dry run: nothing was changed\n", ac->name);
out:
	/* QUIT with no DELE sent: nothing changes on the server. */
	if (p != NULL && !conn_dead(pop3_conn(p)))
		(void)pop3_quit(p, &why);
	else
		pop3_free(p);
	free(why);
	free(todo_of);
	free(msgs);
	return r;
}
