/*
 * One account run: the ordered steps from the POP3 listing to QUIT.
 *
 * The order of operations is the design (it is what makes "nothing lost,
 * nothing twice" hold when the process is killed at any instant):
 *
 *   1. lock the ledger; list the POP3 messages (UIDL, sizes);
 *   2. settle every PENDING intent left by an earlier run: look for the
 *      message in the IMAP mailbox (UIDs from the recorded lower bound,
 *      same size, same hash of the first 8 KiB); found -> IMPORTED, not
 *      found -> forgotten, so it is imported again below;
 *   3. for each batch of new messages (transfer.c): RETR and normalise
 *      into spools; record the intents durably; APPEND; record IMPORTED
 *      durably; only then DELE (keep = false);
 *   4. QUIT, which is when the POP3 server commits the DELEs.
 *
 * A message is deleted only if the ledger says IMPORTED, which is written
 * only after the IMAP server's OK.  A crash between APPEND OK and the
 * ledger write leaves a PENDING row, which step 2 resolves.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

#include "run.h"

/* Set by a signal handler: finish the batch in flight, then stop. */
volatile sig_atomic_t	account_stop;
/* The account being run, for a message from a signal handler. */
char			account_current[72];
void			(*account_progress)(const struct run_stats *);

/* ---- step 2: settle intents left by an interrupted run ---- */

struct settle {
	struct ledger_pending	*pend;
	size_t			 npend;
	uint32_t		*match;		/* UID found for pend[i], or 0 */
	uint32_t		 uidvalidity;
	struct ledger		*l;
};

static void
settle_candidate(void *arg, uint32_t uid, uint64_t size, const char *prefix,
    size_t plen)
{
	struct settle	*se = arg;
	char		 hex[65];
	bool		 hashed = false, claimed;
	size_t		 i, j;
	char		*cause = NULL;

	for (i = 0; i < se->npend; i++) {
		struct ledger_pending *p = &se->pend[i];

		if (se->match[i] != 0 || p->size != size ||
		    (p->uidvalidity == se->uidvalidity && uid < p->lo_uid))
			continue;
		if (!hashed) {
			hash_hex(prefix, plen, hex);
			hashed = true;
			/* A UID already owned by an imported message is out. */
			if (ledger_uid_claimed(se->l, se->uidvalidity, uid,
			    &claimed, &cause) != RES_OK || claimed) {
				free(cause);
				return;
			}
			for (j = 0; j < se->npend; j++)
				if (se->match[j] == uid)
					return;
		}
		if (strcmp(hex, p->hash) == 0) {
			se->match[i] = uid;
			return;
		}
	}
}

static enum result
settle_intents(struct run *rn, char **cause)
{
	struct settle	 se;
	uint32_t	 lo = UINT32_MAX;
	size_t		 i, found = 0;
	enum result	 r;

	memset(&se, 0, sizeof se);
	if ((r = ledger_pending_list(rn->l, &se.pend, &se.npend, cause)) !=
	    RES_OK || se.npend == 0)
		return r;
	se.match = xcalloc(se.npend, sizeof *se.match);
	se.uidvalidity = rn->mb.uidvalidity;
	se.l = rn->l;
	for (i = 0; i < se.npend; i++) {
		/* A changed UIDVALIDITY voids the bound: search it all. */
		uint32_t b = se.pend[i].uidvalidity == rn->mb.uidvalidity ?
		    se.pend[i].lo_uid : 1;

		if (b < lo)
			lo = b;
	}
	if (rn->mb.messages > 0)
		r = imap_fetch_prefix(rn->im, lo, PREFIX_LEN, settle_candidate,
		    &se, cause);
	for (i = 0; i < se.npend && r == RES_OK; i++) {
		if (se.match[i] != 0) {
			found++;
			r = ledger_imported(rn->l, se.pend[i].uidl,
			    rn->mb.uidvalidity, se.match[i], cause);
		} else
			r = ledger_forget(rn->l, se.pend[i].uidl, cause);
	}
	if (r == RES_OK)
		log_info("%s: settled %zu interrupted import%s: %zu already in "
		    "%s, %zu to import again", rn->ac->name, se.npend,
		    se.npend == 1 ? "" : "s", found, rn->ac->imap.mailbox,
		    se.npend - found);
	free(se.match);
	free(se.pend);
	return r;
}

static enum result
open_mailbox(struct run *rn, char **cause)
{
	enum result	 r;

	if ((r = imap_open(&rn->ac->imap, rn->ac->name, rn->cf->timeout,
	    &rn->im, cause)) != RES_OK)
		return r;
	if ((r = imap_select(rn->im, rn->ac->imap.mailbox, &rn->mb, cause)) !=
	    RES_OK)
		return r;
	if (!rn->mb.exists) {
		if ((r = imap_create(rn->im, rn->ac->imap.mailbox, cause)) !=
		    RES_OK ||
		    (r = imap_select(rn->im, rn->ac->imap.mailbox, &rn->mb,
		    cause)) != RES_OK)
			return r;
		if (!rn->mb.exists)
			return fail(cause, RES_TEMP, "imap: cannot open mailbox "
			    "%s", rn->ac->imap.mailbox);
	}
	rn->lo_uid = rn->mb.uidnext;
	return RES_OK;
}

/* Does any message need the IMAP side (new, failed or pending)? */
static enum result
need_imap(struct run *rn, bool *need, char **cause)
{
	enum ledger_state st;
	bool		 deleted;
	unsigned int	 i;
	enum result	 r;

	*need = false;
	if ((r = ledger_begin_read(rn->l, cause)) != RES_OK)
		return r;
	for (i = 0; i < rn->nmsgs; i++) {
		if ((r = ledger_state(rn->l, rn->msgs[i].uidl, &st, &deleted,
		    cause)) != RES_OK) {
			ledger_rollback(rn->l);
			return r;
		}
		if (st != LEDGER_IMPORTED) {
			rn->st->fresh++;
			*need = true;
		}
	}
	if ((r = ledger_commit(rn->l, cause)) != RES_OK)
		return r;
	if (!*need) {
		struct ledger_pending *pend;
		size_t npend;

		if ((r = ledger_pending_list(rn->l, &pend, &npend, cause)) !=
		    RES_OK)
			return r;
		free(pend);
		*need = npend > 0;
	}
	return RES_OK;
}

static enum result
run_messages(struct run *rn, char **cause)
{
	bool		 need;
	enum result	 r;

	if ((r = need_imap(rn, &need, cause)) != RES_OK)
		return r;
	if (need && ((r = open_mailbox(rn, cause)) != RES_OK ||
	    (r = settle_intents(rn, cause)) != RES_OK))
		return r;
	if (!need && rn->ac->keep)
		return RES_OK;		/* nothing to import or delete */
	return transfer_all(rn, cause);
}

static void
finish_pop3(struct run *rn)
{
	char	*why = NULL;
	size_t	 i;

	if (rn->p == NULL)
		return;
	/* Replies to pipelined commands come before QUIT's. */
	if (!conn_dead(pop3_conn(rn->p)) && transfer_drain(rn, &why) !=
	    RES_OK) {
		free(why);
		why = NULL;
	}
	if (pop3_quit(rn->p, &why) != RES_OK) {
		if (rn->ndele > 0)
			log_warn("%s: %s (the %zu deletions will be made next "
			    "run)", rn->ac->name, why, rn->ndele);
		free(why);
		rn->p = NULL;
		return;
	}
	rn->p = NULL;
	/* QUIT succeeded: the server has committed the deletions. */
	for (i = 0; i < rn->ndele; i++) {
		const struct pop3_msg *m = &rn->msgs[rn->dele[i] - 1];

		if (ledger_deleted(rn->l, m->uidl, &why) != RES_OK) {
			log_warn("%s: %s", rn->ac->name, why);
			free(why);
			why = NULL;
			break;
		}
		rn->st->deleted++;
	}
}

enum result
account_run(const struct config *cf, const struct account *ac,
    struct run_stats *st, char **cause)
{
	struct run	 rn;
	char		*path, *source, *why = NULL;
	time_t		 started = time(NULL);
	double		 t0 = now_seconds();
	bool		 standin;
	enum result	 r;

	memset(&rn, 0, sizeof rn);
	memset(st, 0, sizeof *st);
	snprintf(account_current, sizeof account_current, "%s", ac->name);
	rn.cf = cf;
	rn.ac = ac;
	rn.st = st;

	if (ac->pop3.tls == TLS_NONE || ac->imap.tls == TLS_NONE)
		log_warn("%s: warning: %s without TLS: the password and mail "
		    "cross the network in clear", ac->name, ac->pop3.tls == TLS_NONE ?
		    (ac->imap.tls == TLS_NONE ? "POP3 and IMAP" : "POP3") :
		    "IMAP");
	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	r = ledger_open(cf->state_dir, path, source, &rn.l, cause);
	free(path);
	free(source);
	if (r != RES_OK)
		goto done;
	if ((r = pop3_open(&ac->pop3, ac->name, cf->timeout, &rn.p, cause)) !=
	    RES_OK ||
	    (r = pop3_scan(rn.p, &rn.msgs, &rn.nmsgs, &standin, cause)) != RES_OK)
		goto done;
	st->waiting = rn.nmsgs;
	if (standin)
		log_debug("%s: pop3: no UIDL; messages are known by header "
		    "hashes", ac->name);
	r = run_messages(&rn, cause);
	/*
	 * QUIT only when nothing went wrong with the link; after a failure
	 * mid-way the DELEs sent so far still stand for imported messages,
	 * so QUIT is safe then too, unless the connection is gone.
	 */
	if (!rn.hold_deletes && (r == RES_OK || r == RES_MSG || r == RES_TEMP))
		finish_pop3(&rn);
done:
	pop3_free(rn.p);
	imap_logout(rn.im);
	st->seconds = now_seconds() - t0;
	if (rn.l != NULL) {
		if (ledger_run_record(rn.l, ac->name, started, r, st,
		    r == RES_OK ? NULL : *cause, &why) != RES_OK) {
			log_warn("%s: %s", ac->name, why);
			free(why);
		}
		ledger_close(rn.l);
	}
	transfer_free(&rn);
	free(rn.dele);
	free(rn.msgs);
	return r;
}

enum result
account_check(const struct config *cf, const struct account *ac,
    char **cause)
{
	struct pop3		*p = NULL;
	struct imap		*im = NULL;
	struct imap_mbox	 mb;
	const struct pop3_caps	*pc;
	const struct imap_caps	*ic;
	unsigned int		 count;
	uint64_t		 size;
	char			*why = NULL;
	enum result		 r, worst = RES_OK;

	r = pop3_open(&ac->pop3, ac->name, cf->timeout, &p, &why);
	if (r == RES_OK)
		r = pop3_stat(p, &count, &size, &why);
	if (r != RES_OK) {
		printf("%s: pop3 %s:%d: FAILED: %s\n", ac->name, ac->pop3.host,
		    ac->pop3.port, why);
		worst = r;
		free(*cause);
		*cause = why;
		why = NULL;
	} else {
		pc = pop3_caps(p);
		printf("%s: pop3 %s:%d: %s%s%s; UIDL %s, PIPELINING %s; "
		    "%u message%s, %.1f kB waiting\n", ac->name, ac->pop3.host,
		    ac->pop3.port, conn_tls_version(pop3_conn(p)),
		    conn_cert_subject(pop3_conn(p))[0] != '\0' ?
		    ", certificate " : "", conn_cert_subject(pop3_conn(p)),
		    pc->uidl ? "yes" : "no (header hashes stand in)",
		    pc->pipelining ? "yes" : "no", count, count == 1 ? "" : "s",
		    (double)size / 1000.0);
		(void)pop3_quit(p, &why);
		p = NULL;
		free(why);
		why = NULL;
	}
	pop3_free(p);

	r = imap_open(&ac->imap, ac->name, cf->timeout, &im, &why);
	if (r == RES_OK)
		r = imap_status(im, ac->imap.mailbox, &mb, &why);
	if (r != RES_OK) {
		printf("%s: imap %s:%d: FAILED: %s\n", ac->name, ac->imap.host,
		    ac->imap.port, why);
		worst = result_worst(worst, r);
		free(*cause);
		*cause = why;
		why = NULL;
	} else {
		char limit[32];

		ic = imap_caps(im);
		if (ic->appendlimit != 0)
			snprintf(limit, sizeof limit, "%llu",
			    (unsigned long long)ic->appendlimit);
		else
			strcpy(limit, "none");
		printf("%s: imap %s:%d: %s%s%s; LITERAL+ %s, MULTIAPPEND %s, "
		    "UIDPLUS %s, APPENDLIMIT %s; mailbox %s %s\n", ac->name,
		    ac->imap.host, ac->imap.port, conn_tls_version(imap_conn(im)),
		    conn_cert_subject(imap_conn(im))[0] != '\0' ?
		    ", certificate " : "", conn_cert_subject(imap_conn(im)),
		    ic->literal_plus ? "yes" : "no",
		    ic->multiappend ? "yes" : "no", ic->uidplus ? "yes" : "no",
		    limit, ac->imap.mailbox, mb.exists ?
		    "exists" : "does not exist (it will be created)");
	}
	imap_logout(im);
	free(why);
	return worst;
}

static int
cmp_size_desc(const void *a, const void *b)
{
	const struct pop3_msg *x = a, *y = b;

	return x->size < y->size ? 1 : x->size > y->size ? -1 : 0;
}

/* --dry-run: what a run would import, and what the server would refuse. */
enum result
account_dry_run(const struct config *cf, const struct account *ac,
    char **cause)
{
	struct pop3		*p = NULL;
	struct imap		*im = NULL;
	struct ledger		*l = NULL;
	struct pop3_msg		*msgs = NULL, *fresh;
	struct imap_mbox	 mb;
	enum ledger_state	 st;
	unsigned int		 n = 0, nfresh = 0, i, over = 0;
	uint64_t		 total = 0, fresh_bytes = 0, limit;
	char			*path, *source, s1[32], s2[32];
	bool			 standin, deleted;
	enum result		 r;

	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	r = ledger_open_readonly(path, source, &l, cause);
	free(path);
	free(source);
	if (r != RES_OK)
		return r;
	if ((r = pop3_open(&ac->pop3, ac->name, cf->timeout, &p, cause)) !=
	    RES_OK || (r = pop3_scan(p, &msgs, &n, &standin, cause)) !=
	    RES_OK || (r = imap_open(&ac->imap, ac->name, cf->timeout, &im,
	    cause)) != RES_OK || (r = imap_status(im, ac->imap.mailbox, &mb,
	    cause)) != RES_OK)
		goto out;
	fresh = xcalloc(n + 1, sizeof *fresh);
	for (i = 0; i < n && r == RES_OK; i++) {
		total += msgs[i].size;
		st = LEDGER_NONE;
		if (l != NULL)
			r = ledger_state(l, msgs[i].uidl, &st, &deleted, cause);
		if (st != LEDGER_IMPORTED) {
			fresh[nfresh++] = msgs[i];
			fresh_bytes += msgs[i].size;
		}
	}
	limit = imap_caps(im)->appendlimit;
	printf("%s: POP3 %s: %u messages, %s; %u to import, %s\n", ac->name,
	    ac->pop3.host, n, log_size(total, s1, sizeof s1), nfresh,
	    log_size(fresh_bytes, s2, sizeof s2));
	printf("%s: IMAP %s: mailbox %s %s; MULTIAPPEND %s, LITERAL+ %s, "
	    "APPENDLIMIT %s\n", ac->name, ac->imap.host, ac->imap.mailbox,
	    mb.exists ? "exists" : "will be created",
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
	printf("%s: dry run: nothing was changed\n", ac->name);
	free(fresh);
out:
	/* QUIT with no DELE sent: nothing changes on the server. */
	if (p != NULL && !conn_dead(pop3_conn(p))) {
		char *why = NULL;

		(void)pop3_quit(p, &why);
		free(why);
		p = NULL;
	}
	pop3_free(p);
	imap_logout(im);
	ledger_close(l);
	free(msgs);
	return r;
}
