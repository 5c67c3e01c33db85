/*
 * The one spelling of each end of an import, for everything that must
 * decide "is this the same mailbox?": the ledger's file name and its
 * destination key, batch shards and duplicate rows, two accounts of one
 * config reading one POP3 mailbox.
 *
 * A POP3 mailbox is a user at a host; an IMAP destination is a user at a
 * host and a mailbox.  The scheme and port are left out on purpose:
 * pop3://host:110 with STARTTLS and pop3s://host:995 reach the same
 * mailbox, and moving from one to the other must not import everything
 * again.  Host names and the domain of a user name that is an address are
 * case-insensitive, so they are lower-cased; the local part of a user name
 * is kept as written (some servers tell "Max" from "max").  INBOX is
 * case-insensitive (RFC 3501 5.1); other mailbox names are not, and are
 * spelled as they go on the wire (modified UTF-7).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

/* user@host, the host and the user's domain lower-cased. */
static char *
user_at_host(const struct endpoint *ep)
{
	char	*id, *p, *at;

	id = xprintf("%s@%s", ep->user != NULL ? ep->user : "",
	    ep->host != NULL ? ep->host : "");
	/* The host is after the last "@"; the user's domain before it. */
	at = strrchr(id, '@');
	for (p = at; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	*at = '\0';
	if ((p = strrchr(id, '@')) != NULL)
		for (; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	*at = '@';
	return id;
}

char *
ident_source(const struct endpoint *pop3)
{
	return user_at_host(pop3);
}

char *
ident_dest(const struct endpoint *imap)
{
	return ident_dest_in(imap, imap->mailbox);
}

/* The same for another mailbox of that login (a routed account's leg). */
char *
ident_dest_in(const struct endpoint *imap, const char *mailbox)
{
	const char	*mb = mailbox != NULL ? mailbox : "INBOX";
	char		*uh, *id, *wire = NULL;

	uh = user_at_host(imap);
	if (strcasecmp(mb, "INBOX") == 0)
		mb = "INBOX";
	/* "Entwürfe" and "Entw&APw-rfe" are one mailbox: its wire form. */
	else if (imap_mailbox_encode(mb, &wire) == NULL)
		mb = wire;
	id = xprintf("%s/%s", uh, mb);
	free(wire);
	free(uh);
	return id;
}
