/*
 * `popbridge add ADDRESS --to gmail-api`: the account's destination is
 * Gmail through its API (issue 17), not an IMAP server.  What differs
 * from IMAP: the URL is "gmail-api:" (or, for tests and proxies of the
 * API, "gmail-api:https://HOST[:PORT]"), the mailbox is a label, and the
 * only sign-in is a command that prints a fresh access token, never a
 * token or a password: a token lasts an hour, and popbridge runs for
 * longer.  The login test runs that command and asks the API one
 * read-only question, so a command that fails, or prints a token Gmail
 * refuses or one without the scope to look messages up (which settling a
 * killed run needs), stops add before anything is written.  No label is
 * created here: the first run does that.
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "add_int.h"
#include "gmail.h"

/* Asked for, so that no such message can exist. */
#define PROBE_ID	"<popbridge-add-login-test@invalid>"
/* How long add waits for rate limits, at most. */
#define PROBE_WAIT	30

bool
add_gmail_is(const char *to)
{
	return strcasecmp(to, "gmail-api") == 0 || config_gmail_is(to);
}

/* The host and port of the API, for the lines add prints and for DNS. */
static void
api_host(struct endpoint *ep, const char *base)
{
	const char	*h = base != NULL ? base + 8 : "gmail.googleapis.com";
	size_t		 n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":");

	ep->host = xstrndup(h, n);
	ep->port = h[n] == ':' ? atoi(h + n + 1) : 443;
}

enum result
add_gmail_target(struct add *a, char **cause)
{
	struct endpoint	*ep = &a->imap;
	const char	*why;
	char		 clean[300];

	/* "gmail-api" alone is how people will type it. */
	ep->url = strcasecmp(a->to, "gmail-api") == 0 ? xstrdup("gmail-api:") :
	    xstrdup(a->to);
	if (!text_ok(ep->url, 300) ||
	    (why = config_gmail_url(ep->url, &a->gmail_base)) != NULL)
		return ufail(a, cause, "--to \"%s\": want gmail-api, or "
		    "gmail-api:https://HOST[:PORT] for another server of the "
		    "API", log_clean(clean, sizeof clean, a->to,
		    strlen(a->to)));
	memcpy(ep->url, "gmail-api:", 10);	/* as config files spell it */
	a->gmail = true;
	ep->imap = true;
	ep->tls = TLS_IMPLICIT;
	ep->oauth2 = true;
	api_host(ep, a->gmail_base);
	if ((why = account_valid_mailbox(a->mailbox, true)) != NULL)
		return ufail(a, cause, "--mailbox \"%s\" (a Gmail label here) %s",
		    log_clean(clean, sizeof clean, a->mailbox,
		    strlen(a->mailbox)), why);
	ep->mailbox = xstrdup(a->mailbox);
	if (a->auth_opt[1] != NULL || a->imap_pwfile != NULL)
		return ufail(a, cause, "--to gmail-api signs in with a token "
		    "command only (--oauth2-token-command), not --imap-auth or "
		    "--imap-password-file");
	return RES_OK;
}

/*
 * Google's access tokens start "ya29.", its refresh tokens "1//": pasted
 * where a command belongs, the token would land in the config and stop
 * working within the hour.
 */
const char *
add_gmail_token_like(const char *cmd)
{
	if (strncmp(cmd, "ya29.", 5) == 0 || strncmp(cmd, "1//", 3) == 0)
		return "looks like a token itself, not a command that prints "
		    "one (a token expires within the hour; a command such as "
		    "\"popbridge-gmail-token token --file FILE\" prints a fresh one "
		    "each time)";
	return NULL;
}

void
add_gmail_login(struct add *a, long timeout, struct side *sd, char **cause)
{
	struct gmail_opts o;
	struct gmail	*g = NULL;
	struct gmail_probe pr;
	char		**ids = NULL;
	size_t		 n = 0;
	const char	*side = add_side_name(a, &a->imap);

	if (a->placeholder[1]) {
		sd->skipped = true;
		printf("%s: %s %s:%d: not tested: no OAuth2 token command yet\n",
		    a->name, side, a->imap.host, a->imap.port);
		return;
	}
	if (!add_try_dns(a, &a->imap, sd, cause))
		return;
	memset(&o, 0, sizeof o);
	o.ep = &a->imap;
	o.base = a->gmail_base;
	o.account = a->name;
	o.timeout = timeout;
	o.units_per_sec = -1;		/* one request */
	o.max_wait = PROBE_WAIT;
	o.deadline = now_seconds() + (double)timeout;
	/* The token command runs here: one that fails, or prints nothing,
	 * is the set-up's fault, as a refused password would be. */
	if ((sd->r = gmail_open(&o, &g, cause)) != RES_OK) {
		sd->token_cmd = true;
		if (sd->r != RES_CONFIG)
			sd->r = RES_AUTH;
		printf("%s: %s %s:%d: FAILED: %s\n", a->name, side,
		    a->imap.host, a->imap.port, *cause);
		return;
	}
	/* messages.list for a Message-ID no message has: read-only, 5
	 * quota units, and it needs the scope that settling a killed run
	 * needs (gmail.readonly or gmail.modify). */
	memset(&pr, 0, sizeof pr);
	pr.message_id = PROBE_ID;
	sd->r = gmail_find(g, &pr, &ids, &n, cause);
	gmail_ids_free(ids, n);
	gmail_close(g);
	if (sd->r == RES_MSG)
		sd->r = RES_CONFIG;	/* a 400: not the server we think */
	if (sd->r != RES_OK) {
		printf("%s: %s %s:%d: FAILED: %s\n", a->name, side,
		    a->imap.host, a->imap.port, *cause);
		return;
	}
	if (strcasecmp(a->imap.mailbox, "INBOX") == 0)
		printf("%s: %s %s:%d: the token command works and Gmail takes "
		    "its token; mail for %s goes to the inbox\n", a->name, side,
		    a->imap.host, a->imap.port, a->imap.user);
	else
		printf("%s: %s %s:%d: the token command works and Gmail takes "
		    "its token; mail for %s gets the label %s (made at the "
		    "first run if missing)\n", a->name, side, a->imap.host,
		    a->imap.port, a->imap.user, a->imap.mailbox);
}
