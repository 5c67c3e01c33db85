/*
 * What config.c shares with config_route.c (an account's routing keys),
 * and with no other file.  The loader's state stays opaque; libconfig's
 * types stay in the two files that read the config.
 */
#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include <libconfig.h>

struct loader;

/* config.c */
/* "file:line: message" (the file and line of setting s) into the
 * loader's cause; returns RES_CONFIG. */
enum result	 cfail(struct loader *, const config_setting_t *,
		     const char *, ...) PRINTFLIKE(3, 4);
/*
 * An endpoint group, checked and loaded as the account's pop3 or imap
 * block is (url, secrets and their file permissions, tls, auth, pin,
 * proxy; mailbox for IMAP, default INBOX).  named: an IMAP group that
 * also holds a "name" (required; a destination's, read by the caller).
 * where starts every message: "account \"home\": destination \"anna\": ".
 */
enum result	 load_endpoint_at(struct loader *, const config_setting_t *,
		     struct endpoint *, bool, bool, const char *);

/* config_route.c */
/* The account's destinations, rules and multidrop (account group a):
 * ac->routing, NULL if it has none of them.  Called once ac's imap
 * block and flags are loaded; what it set is freed by config_free. */
enum result	 config_route_load(struct loader *, const config_setting_t *,
		     struct account *);

/* config_listen.c */
/* listen, listen_token_file (relative to dir) and listen_token_command
 * of the top level root into cf, checked; freed by config_free. */
enum result	 config_listen_load(struct loader *, const config_setting_t *,
		     const char *, struct config *);

#endif
