/*
 * An endpoint group of the config: an account's pop3 or imap block, or a
 * destination of its routing (config_route.c), loaded and checked alike
 * (url, user and one way to the secret, the secret files' permissions,
 * tls, auth, pin, proxy; the mailbox of an IMAP one), and freed.  Also
 * the IMAP flags a block or a rule sets.  Called by config.c and
 * config_route.c; calls down to config_keys.c, config_gmail.c (a
 * gmail-api: destination) and config_secfile.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libconfig.h>

#include "bridge.h"
#include "config_int.h"
#include "config_gmail.h"

/* Both blocks take the same keys; "mailbox" is the IMAP block's alone;
 * a destination (config_route.c) is an IMAP block with a "name". */
static const struct config_key endpoint_keys[] = {
	{ "name", CK_STR, NULL, true },
	{ "mailbox", CK_STR, NULL, false },
	{ "url", CK_STR, NULL, true },
	{ "user", CK_STR, NULL, true },
	{ "password", CK_STR, NULL, false },
	{ "password_file", CK_STR, NULL, false },
	{ "password_command", CK_STR, NULL, false },
	{ "ca_file", CK_STR, NULL, false },
	{ "tls", CK_STR, NULL, false },
	{ "auth", CK_STR, NULL, false },
	{ "oauth2_token_command", CK_STR, NULL, false },
	{ "pin", CK_STR, NULL, false },
	{ "proxy", CK_STR, NULL, false },
	{ NULL, 0, NULL, false }
};
#define pop3_keys	(endpoint_keys + 2)
#define imap_keys	(endpoint_keys + 1)
#define dest_keys	endpoint_keys

/* A path relative to the config file's folder. */
static char *
get_path(struct loader *ld, const config_setting_t *group, const char *name)
{
	char	*v = config_get_string(group, name), *p;

	if (v == NULL || v[0] == '/')
		return v;
	p = xprintf("%s/%s", ld->dir, v);
	free(v);
	return p;
}

static enum result
parse_url(struct loader *ld, const config_setting_t *s, struct endpoint *ep,
    const char *where)
{
	char		*why = NULL;
	enum result	 r;

	if ((r = config_parse_url(ep, &why)) != RES_OK) {
		cfail(ld, s, "%s%s", where, why);
		free(why);
	}
	return r;
}

/*
 * sha256//BASE64 of exactly 32 bytes, several joined by ";" (curl's
 * syntax): 43 base64 letters, the last of them with its two low bits
 * clear, then "=".
 */
static bool
pin_valid(const char *pin)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
	    "qrstuvwxyz0123456789+/";
	const char	*p = pin, *at;

	for (;;) {
		if (strncmp(p, "sha256//", 8) != 0)
			return false;
		p += 8;
		if (strspn(p, b64) != 43 || p[43] != '=' ||
		    (at = strchr(b64, p[42])) == NULL || (at - b64) % 4 != 0)
			return false;
		p += 44;
		if (*p == '\0')
			return true;
		if (*p++ != ';')
			return false;
	}
}

/* An endpoint's login: the user and exactly one way to its secret. */
static enum result
endpoint_login(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, const char *where)
{
	struct account_fault f;
	int		 nsecrets;
	enum result	 r;

	if (!account_valid_login(ep, &f))
		return cfail(ld, config_setting_get_member(g, f.key),
		    "%s\"%s\" %s", where, f.key, f.why);
	nsecrets = (ep->password != NULL) + (ep->password_file != NULL) +
	    (ep->password_command != NULL);
	if (ep->oauth2) {
		/* A token is short-lived: it comes fresh from a command. */
		if (ep->oauth2_token_command == NULL || nsecrets != 0)
			return cfail(ld, g, "%sauth = \"%s\" takes "
			    "\"oauth2_token_command\" (a command printing a "
			    "fresh access token) and no password", where,
			    ep->auth);
	} else if (ep->oauth2_token_command != NULL)
		return cfail(ld, config_setting_get_member(g,
		    "oauth2_token_command"), "%s\"oauth2_token_command\" goes "
		    "with auth = \"xoauth2\" or \"oauthbearer\"", where);
	else if (nsecrets != 1)
		return cfail(ld, g, "%sgive exactly one of \"password\", "
		    "\"password_file\" or \"password_command\"", where);
	if (ep->password != NULL)
		secfile_note(ld, config_setting_get_member(g, "password"));
	if (ep->password_file != NULL && ld->check_secrets &&
	    (r = secfile_check(ld, config_setting_get_member(g,
	    "password_file"), where, ep->password_file)) != RES_OK)
		return r;
	return RES_OK;
}

/* How it connects: pin, proxy, tls = "none", auth. */
static enum result
endpoint_transport(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool imap, const char *where)
{
	const char	*tls, *auth, *why;
	config_setting_t *s;
	enum result	 r;

	if (ep->pin != NULL && !pin_valid(ep->pin))
		return cfail(ld, config_setting_get_member(g, "pin"),
		    "%s\"pin\" must be sha256//BASE64 (several joined with "
		    "\";\"), e.g. from: openssl x509 -pubkey -noout -in "
		    "cert.pem | openssl pkey -pubin -outform der | openssl "
		    "dgst -sha256 -binary | base64", where);
	if (ep->proxy != NULL && (why = config_proxy_check(ep->proxy)) != NULL) {
		char *shown = config_url_redact(ep->proxy);

		r = cfail(ld, config_setting_get_member(g, "proxy"), "%s\"proxy\" "
		    "\"%s\" %s (\"\" for none)", where, shown, why);
		free(shown);
		return r;
	}
	if (config_setting_lookup_string(g, "tls", &tls) == CONFIG_TRUE) {
		s = config_setting_get_member(g, "tls");
		if (strcmp(tls, "none") != 0)
			return cfail(ld, s, "%s\"tls\" may only be \"none\" "
			    "(TLS is otherwise always required)", where);
		if (ep->tls == TLS_IMPLICIT)
			return cfail(ld, s, "%stls = \"none\" contradicts the "
			    "url's %ss:// (TLS from the first byte)", where,
			    imap ? "imap" : "pop3");
		ep->tls = TLS_NONE;
	}
	if (config_setting_lookup_string(g, "auth", &auth) == CONFIG_TRUE &&
	    strcmp(auth, "auto") != 0 && strcmp(auth, "plain") != 0 &&
	    strcmp(auth, "login") != 0 && strcmp(auth, "any") != 0 &&
	    !ep->oauth2)
		return cfail(ld, config_setting_get_member(g, "auth"),
		    "%s\"auth\" must be \"auto\", \"plain\", \"login\", "
		    "\"any\", \"xoauth2\" or \"oauthbearer\"", where);
	return RES_OK;
}

/* The destination's mailbox, as every source of accounts checks it: an
 * IMAP mailbox, or a label of the Gmail API. */
static enum result
endpoint_mailbox(struct loader *ld, const config_setting_t *g,
    const struct endpoint *ep, const char *where)
{
	const char	*why;

	if ((why = account_valid_mailbox(ep->mailbox, ep->gmail != NULL)) ==
	    NULL)
		return RES_OK;
	return cfail(ld, config_setting_get_member(g, "mailbox"),
	    "%s\"mailbox\" %s%s", where, ep->gmail != NULL ?
	    "(a label here) " : "", why);
}

enum result
load_endpoint_at(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool imap, bool named, const char *where)
{
	enum result	 r;

	/* The Gmail API (issue 17): HTTPS and a token, no IMAP keys. */
	if (imap && config_setting_get_member(g, "url") != NULL &&
	    config_gmail_is(config_setting_get_string(
	    config_setting_get_member(g, "url"))))
		return (r = config_gmail_endpoint(ld, g, ep, named, where)) !=
		    RES_OK ? r : endpoint_mailbox(ld, g, ep, where);
	if ((r = config_check_keys(ld, g, named ? dest_keys : imap ? imap_keys :
	    pop3_keys, where)) != RES_OK)
		return r;
	ep->imap = imap;
	ep->line = config_setting_source_line(g);
	ep->url = config_get_string(g, "url");
	ep->user = config_get_string(g, "user");
	ep->password = config_get_string(g, "password");
	ep->password_file = get_path(ld, g, "password_file");
	ep->password_command = config_get_string(g, "password_command");
	ep->ca_file = get_path(ld, g, "ca_file");
	ep->auth = config_get_string(g, "auth");
	ep->oauth2_token_command = config_get_string(g,
	    "oauth2_token_command");
	ep->pin = config_get_string(g, "pin");
	ep->proxy = config_get_string(g, "proxy");
	ep->oauth2 = ep->auth != NULL && (strcmp(ep->auth, "xoauth2") == 0 ||
	    strcmp(ep->auth, "oauthbearer") == 0);
	if ((r = parse_url(ld, config_setting_get_member(g, "url"), ep,
	    where)) != RES_OK || (r = endpoint_login(ld, g, ep, where)) !=
	    RES_OK || (r = endpoint_transport(ld, g, ep, imap, where)) !=
	    RES_OK)
		return r;
	if (imap) {
		ep->mailbox = config_get_string(g, "mailbox");
		if (ep->mailbox == NULL)
			ep->mailbox = xstrdup("INBOX");
		return endpoint_mailbox(ld, g, ep, where);
	}
	return RES_OK;
}

/* Append flag f to the space-separated *flags; false if f is no flag. */
bool
config_flags_add(char **flags, const char *f)
{
	char	*joined;

	if (!config_flag_valid(f))
		return false;
	joined = xprintf("%s%s%s", *flags, (*flags)[0] != '\0' ? " " : "", f);
	free(*flags);
	*flags = joined;
	return true;
}

/* IMAP system flags, or keywords (atoms). */
bool
config_flag_valid(const char *f)
{
	static const char *const system[] = { "\\Seen", "\\Answered",
		"\\Flagged", "\\Deleted", "\\Draft" };
	size_t	 i;

	for (i = 0; i < sizeof system / sizeof system[0]; i++)
		if (strcasecmp(f, system[i]) == 0)
			return true;
	if (*f == '\0' || strlen(f) > 64)
		return false;
	for (; *f != '\0'; f++)
		if ((unsigned char)*f <= 0x20 || (unsigned char)*f >= 0x7f ||
		    strchr("(){%*\"\\]", *f) != NULL)
			return false;
	return true;
}

void
config_endpoint_free(struct endpoint *ep)
{
	free(ep->url);
	free(ep->host);
	free(ep->user);
	secret_free(ep->password);
	free(ep->password_file);
	free(ep->password_command);
	free(ep->ca_file);
	free(ep->auth);
	free(ep->oauth2_token_command);
	free(ep->pin);
	secret_free(ep->proxy);		/* it may hold a proxy password */
	free(ep->mailbox);
	config_gmail_free(ep->gmail);
	free(ep->gmail);
}
