/*
 * The IMAP side of an account run, opened once it is needed: log in, find
 * the mailbox as the server names it (under the personal namespace),
 * STATUS it (UIDNEXT, UIDVALIDITY) and CREATE it if missing; SELECT it,
 * read-write, only where settling or first contact must look inside.
 * Shared by account.c, settle.c and adopt.c, which each may be first to
 * need it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "run.h"

/* The configured mailbox as the server names it (imap_place), logged if
 * it differs. */
static enum result
place_mailbox(struct run *rn, char **cause)
{
	enum result	 r;

	if ((r = imap_place(rn->im, rn->ac->imap.mailbox, &rn->mailbox,
	    cause)) != RES_OK)
		return r;
	if (strcmp(rn->mailbox, rn->ac->imap.mailbox) != 0)
		log_info("%s: imap: %s keeps personal mailboxes under its "
		    "namespace: mailbox %s is %s there", rn->ac->name,
		    rn->ac->imap.host, rn->ac->imap.mailbox, rn->mailbox);
	return RES_OK;
}

enum result
run_imap(struct run *rn, bool select, char **cause)
{
	const char	*mailbox;
	struct imap_mbox sel;
	enum result	 r;

	if (rn->im == NULL) {
		if ((r = imap_open(&rn->ac->imap, rn->ac->name, rn->cf->timeout,
		    &rn->im, cause)) != RES_OK ||
		    (r = place_mailbox(rn, cause)) != RES_OK)
			return r;
	}
	mailbox = rn->mailbox;
	if (!rn->opened) {
		rn->opened = true;
		if ((r = imap_status(rn->im, mailbox, &rn->mb, cause)) != RES_OK)
			return r;
		if (!rn->mb.exists) {
			if ((r = imap_create(rn->im, mailbox, cause)) != RES_OK ||
			    (r = imap_status(rn->im, mailbox, &rn->mb, cause)) !=
			    RES_OK)
				return r;
			rn->created = true;
			if (!rn->mb.exists)
				return fail(cause, RES_TEMP, "imap: cannot open "
				    "mailbox %s", mailbox);
		}
		rn->lo_uid = rn->mb.uidnext;
	}
	if (select && !rn->selected) {
		if ((r = imap_select(rn->im, mailbox, &sel, cause)) != RES_OK)
			return r;
		/* STATUS said the rest (Courier 5.0's SELECT has no UIDNEXT). */
		if (sel.uidvalidity != 0)
			rn->mb.uidvalidity = sel.uidvalidity;
		rn->mb.messages = sel.messages;
		rn->selected = true;
	}
	return RES_OK;
}

