/*
 * `check` and --dry-run: log in to both sides, list, compare with the
 * ledger and report; change nothing.  Neither locks the ledger (it is read
 * with ledger_open_readonly) and neither sends DELE, so both may run while
 * a run or the daemon holds the account.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "route.h"
#include "run.h"

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
 * account's destination, read from the ledger without locking it.  No
 * state_dir (add's login test of an account not yet saved): no ledger,
 * every message is to import.
 */
static enum result
count_todo(const struct config *cf, const struct account *ac,
    const struct pop3_msg *msgs, unsigned int n, unsigned int *todo,
    uint64_t *bytes, bool *todo_of, char **cause)
{
	struct ledger	*l = NULL;
	char		*path, *source, *dest;
	enum result	 r = RES_OK;

	if (cf->state_dir != NULL) {
		path = ledger_path(cf->state_dir, ac);
		source = ledger_source(ac);
		dest = ident_dest(&ac->imap);
		r = ledger_open_readonly(path, source, dest, &l, cause);
		free(path);
		free(source);
		free(dest);
	}
	if (r == RES_OK)
		r = plan_count(l, msgs, n, todo, bytes, todo_of, cause);
	if (r == RES_OK && l != NULL && ac->routing != NULL)
		r = count_routed(ac, l, msgs, n, todo, bytes, todo_of, cause);
	ledger_close(l);
	return r;
}

/* check's POP3 line: TLS, capabilities, messages and what is to import. */
enum result
check_pop3_line(const struct config *cf, const struct account *ac,
    char **cause)
{
	struct pop3		*p = NULL;
	struct pop3_msg		*msgs = NULL;
	const struct pop3_caps	*pc;
	unsigned int		 count = 0, todo = 0;
	uint64_t		 bytes = 0;
	char			*why = NULL;
	bool			 standin, *todo_of = NULL;
	enum result		 r;

	r = login_pop3(&ac->pop3, ac->name, cf->timeout, &p, cause);
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
enum result
check_imap_line(const struct config *cf, const struct account *ac,
    const char *label, const struct endpoint *ep, char **cause)
{
	struct imap		*im = NULL;
	struct imap_mbox	 mb;
	const struct imap_caps	*ic;
	char			*placed = NULL, limit[32];
	enum result		 r;

	if (ep->gmail != NULL)
		return check_gmail(ac, label, ep, cause);
	r = login_imap(ep, ac->name, cf->timeout, &im, cause);
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

	account_plaintext_warning(ac);
	/* Through a proxy (the config's, or the environment's)? */
	for (k = 0; k < 2; k++)
		if ((note = config_proxy_note(via[k])) != NULL) {
			printf("%s: %s\n", ac->name, note);
			free(note);
		}
	worst = check_pop3_line(cf, ac, cause);
	/* Every destination logs in, with the account's imap first. */
	for (k = 0; k <= (rt != NULL ? rt->ndests : 0); k++) {
		if (k == 0)
			snprintf(label, sizeof label, "imap");
		else
			snprintf(label, sizeof label, "destination %s: imap",
			    rt->dests[k - 1].name);
		r = check_imap_line(cf, ac, label, k == 0 ? &ac->imap :
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
	if ((r = login_imap(&ac->imap, ac->name, cf->timeout, &im, cause)) ==
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

	if ((r = login_pop3(&ac->pop3, ac->name, cf->timeout, &p, cause)) !=
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
