/*
 * The IMAP side of an account run, opened once a leg needs it: log in
 * (one session per destination, shared by its legs), find the leg's
 * mailbox as the server names it (under the personal namespace), STATUS
 * it (UIDNEXT, UIDVALIDITY) and CREATE it if missing; SELECT it,
 * read-write, only where settling or first contact must look inside.
 * Shared by account.c, settle.c, adopt.c and transfer.c, which each may be
 * first to need it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "route.h"
#include "prelogin.h"
#include "run.h"

/* The leg's mailbox as the server names it (imap_place), logged if it
 * differs. */
static enum result
place_mailbox(struct run *rn, struct leg *g, char **cause)
{
	enum result	 r;

	if ((r = imap_place(g->ss->im, g->want, &g->mailbox, cause)) != RES_OK)
		return r;
	if (strcmp(g->mailbox, g->want) != 0)
		log_info("%s: imap: %s keeps personal mailboxes under its "
		    "namespace: mailbox %s is %s there", rn->ac->name,
		    g->ep->host, g->want, g->mailbox);
	return RES_OK;
}

/*
 * The session for a leg: the one of its destination, or, for a leg whose
 * first contact keeps its mailbox selected during the transfer, one of its
 * own.
 */
static enum result
leg_session(struct run *rn, struct leg *g, char **cause)
{
	const struct routing *rt = rn->ac->routing;
	size_t		 dest = rt != NULL ? rt->targets[g->target].dest : 0;
	struct session	*ss = NULL;
	size_t		 i;
	enum result	 r;

	for (i = 0; i < rn->nss && ss == NULL && !g->first; i++)
		if (rn->ss[i]->dest == dest && !rn->ss[i]->own)
			ss = rn->ss[i];
	if (ss == NULL) {
		ss = xcalloc(1, sizeof *ss);
		ss->ep = g->ep;
		ss->dest = dest;
		ss->own = g->first;
		/* Logged in beside POP3 already (prelogin.c), or now. */
		if (prelogin_for(rn->pre, g->ep))
			r = prelogin_take(rn->pre, g->ep, &ss->im, cause);
		else
			r = login_imap(g->ep, rn->ac->name, rn->cf->timeout,
			    &ss->im, cause);
		if (r != RES_OK) {
			free(ss);
			return r;
		}
		rn->ss = xrealloc(rn->ss, (rn->nss + 1) * sizeof *rn->ss);
		rn->ss[rn->nss++] = ss;
	}
	g->ss = ss;
	return place_mailbox(rn, g, cause);
}

/* The leg's mailbox as APPEND names it on the wire. */
static enum result
leg_wire(struct leg *g, char **cause)
{
	const char	*why;
	char		 clean[300];

	if ((g->wire = imap_quote_mailbox(g->mailbox, &why)) == NULL)
		return fail(cause, RES_CONFIG, "imap: mailbox \"%s\" %s",
		    log_clean(clean, sizeof clean, g->mailbox,
		    strlen(g->mailbox)), why);
	return RES_OK;
}

enum result
leg_imap(struct run *rn, struct leg *g, bool select, char **cause)
{
	struct imap_mbox sel;
	enum result	 r;

	if (g->ss == NULL && (r = leg_session(rn, g, cause)) != RES_OK)
		return r;
	if (!g->opened) {
		g->opened = true;
		if ((r = imap_status(g->ss->im, g->mailbox, &g->mb, cause)) !=
		    RES_OK)
			return r;
		if (!g->mb.exists) {
			if ((r = imap_create(g->ss->im, g->mailbox, cause)) !=
			    RES_OK || (r = imap_status(g->ss->im, g->mailbox,
			    &g->mb, cause)) != RES_OK)
				return r;
			g->created = true;
			if (!g->mb.exists)
				return fail(cause, RES_TEMP, "imap: cannot open "
				    "mailbox %s", g->mailbox);
		}
		g->lo_uid = g->mb.uidnext;
		/* Quoted (modified UTF-7) once, not for every batch. */
		if ((r = leg_wire(g, cause)) != RES_OK)
			return r;
	}
	if (select && g->ss->selected != g) {
		if ((r = imap_select(g->ss->im, g->mailbox, &sel, cause)) !=
		    RES_OK)
			return r;
		/* STATUS said the rest (Courier 5.0's SELECT has no UIDNEXT). */
		if (sel.uidvalidity != 0)
			g->mb.uidvalidity = sel.uidvalidity;
		g->mb.messages = sel.messages;
		g->ss->selected = g;
	}
	return RES_OK;
}

enum result
run_imap(struct run *rn, bool select, char **cause)
{
	return leg_imap(rn, rn->leg, select, cause);
}

/* The IMAP connection of the current leg (opened by run_imap). */
struct imap *
run_im(const struct run *rn)
{
	return rn->leg->ss != NULL ? rn->leg->ss->im : NULL;
}

void
sessions_close(struct run *rn)
{
	size_t	 i;

	for (i = 0; i < rn->nss; i++) {
		imap_logout(rn->ss[i]->im);
		free(rn->ss[i]);
	}
	free(rn->ss);
	rn->ss = NULL;
	rn->nss = 0;
}
