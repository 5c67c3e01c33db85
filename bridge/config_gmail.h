/*
 * The config side of a Gmail API destination (config_gmail.c), for the
 * files that read the config (config.c, config_route.c) and no other.
 */
#ifndef CONFIG_GMAIL_H
#define CONFIG_GMAIL_H

#include "config_int.h"
#include "gmail.h"

/* The keys a "gmail-api:" destination takes beyond an IMAP one's; the
 * endpoint's key check must let them through for such a group. */
extern const char *const config_gmail_keys[];

/*
 * A destination group g whose url is "gmail-api:...": its own keys into
 * gd (labels, inbox, unread, never_mark_spam) and the base URL from url.
 * The endpoint keys (user, oauth2_token_command, ca_file, pin, proxy,
 * mailbox) are the endpoint loader's.  where starts every message, as for
 * load_endpoint_at.  What it set is freed by config_gmail_free.
 */
enum result	 config_gmail_load(struct loader *, const config_setting_t *,
		     const char *, struct gmail_dest *);

/*
 * A whole "gmail-api:" group, the account's imap block or a destination
 * (named: it holds a "name"), into ep with ep->gmail set; load_endpoint_at
 * hands such a group here.  Passwords and TLS keys are refused.
 */
enum result	 config_gmail_endpoint(struct loader *, const config_setting_t *,
		     struct endpoint *, bool, const char *);

#endif
