/*
 * What every source of accounts checks alike: the config (config.c),
 * `add`, a batch's CSV rows and migrate's command line.  The rule is here,
 * once; each source says where the fault is in its own words (a config
 * key and its line, a CSV column, an option), since only it knows.
 */
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "gmail.h"

/*
 * The destination's mailbox: for IMAP in UTF-8 or modified UTF-7
 * (imap_quote_mailbox encodes it for the wire, so what it refuses is
 * refused where the account is read, not at every run); for the Gmail
 * API, INBOX or a label name Gmail takes.
 */
const char *
account_valid_mailbox(const char *mailbox, bool gmail)
{
	if (gmail)
		return strcasecmp(mailbox, "INBOX") == 0 ? NULL :
		    config_gmail_label_check(mailbox);
	return imap_mailbox_check(mailbox);
}

/*
 * Can v go to a server as (part of) a protocol line?  No CR or LF: they
 * would end the line (USER, LOGIN, AUTHENTICATE) and what follows would
 * be a command of its own.  (A NUL cannot be in a C string; where one can
 * come, from a file, a command or a CSV field, it is refused as read.)
 * Its name is config.c's, where it was: config_secret.c, migrate.c and
 * the batch rows check secrets with it as they are read.
 */
bool
config_value_ok(const char *v)
{
	return strpbrk(v, "\r\n") == NULL;
}

/*
 * An endpoint's login as filled in: a user, and no CR or LF in the user
 * or the password, since each goes to the server in a protocol line
 * (USER, LOGIN, AUTHENTICATE) and a line break would end it and start a
 * command of its own.  False with *f (key "user" or "password", and why
 * as a phrase after it) on the first fault.
 */
bool
account_valid_login(const struct endpoint *ep, struct account_fault *f)
{
	f->empty = false;
	if (ep->user == NULL || ep->user[0] == '\0') {
		f->key = "user";
		f->why = "is empty";
		f->empty = true;
		return false;
	}
	f->why = "holds a line break (CR or LF)";
	if (!config_value_ok(ep->user)) {
		f->key = "user";
		return false;
	}
	if (ep->password != NULL && !config_value_ok(ep->password)) {
		f->key = "password";
		return false;
	}
	return true;
}
