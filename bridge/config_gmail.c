/*
 * A destination that is Gmail through its API (issue 17):
 *
 *   destinations = ( {
 *       name = "gmail";
 *       url = "gmail-api:";            # or "gmail-api:https://HOST:PORT"
 *       user = "you@gmail.com";         # for messages; the token decides
 *       oauth2_token_command = "...";   # gmail.insert + gmail.readonly, or gmail.modify
 *       mailbox = "INBOX";              # a label; INBOX is the inbox
 *       labels = [ "From GMX" ];        # on every message too
 *       inbox = true;                   # false: skip the inbox (archive)
 *       unread = true;                  # false: imported as read
 *       never_mark_spam = false;        # true: no spam classification
 *   } );
 *
 * These are the options Gmail's own "Check mail from other accounts" had
 * (label incoming messages, skip the inbox), plus the API's neverMarkSpam.
 * A rule's mailbox for such a destination is a label too.  A label name
 * nests with "/" as in Gmail ("Lists/linux"); missing ones are created
 * at the first run (gmail_labels).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "config_gmail.h"

const char *const config_gmail_keys[] = { "labels", "inbox", "unread",
	"never_mark_spam", NULL };

/* Labels Gmail makes itself and that no import may carry. */
static const char *const reserved[] = { "SENT", "DRAFT", "DRAFTS", "CHAT",
	"CHATS", "ALL MAIL", NULL };

bool
config_gmail_is(const char *url)
{
	return url != NULL && strncasecmp(url, "gmail-api:", 10) == 0;
}

const char *
config_gmail_url(const char *url, char **base)
{
	const char	*b;
	size_t		 i;

	*base = NULL;
	if (!config_gmail_is(url))
		return "does not start with gmail-api:";
	b = url + 10;
	if (*b == '\0')
		return NULL;
	if (strncasecmp(b, "https://", 8) != 0 || b[8] == '\0')
		return "must be gmail-api: or gmail-api:https://HOST[:PORT]";
	for (i = 8; b[i] != '\0'; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= 'A' &&
		    b[i] <= 'Z') || (b[i] >= '0' && b[i] <= '9') ||
		    strchr(".-:[]", b[i]) != NULL))
			return "must be gmail-api:https://HOST[:PORT] with "
			    "nothing after the port";
	if (i > 200)
		return "is too long";
	*base = xstrdup(b);
	return NULL;
}

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates. */
static bool
utf8_valid(const unsigned char *s)
{
	unsigned int	 c;
	int		 n, i;

	while (*s != '\0') {
		if (*s < 0x80) {
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf)
			n = 1, c = *s & 0x1f;
		else if (*s >= 0xe0 && *s <= 0xef)
			n = 2, c = *s & 0x0f;
		else if (*s >= 0xf0 && *s <= 0xf4)
			n = 3, c = *s & 0x07;
		else
			return false;
		for (i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (s[i] & 0x3f);
		}
		if ((n == 2 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
		    (n == 3 && (c < 0x10000 || c > 0x10ffff)))
			return false;
		s += n + 1;
	}
	return true;
}

const char *
config_gmail_label_check(const char *name)
{
	const char	*p;
	size_t		 i, n = strlen(name);

	if (n == 0)
		return "is empty";
	if (n > GMAIL_LABEL_NAME_MAX)
		return "is too long (225 bytes at most)";
	if (!utf8_valid((const unsigned char *)name))
		return "is not UTF-8";
	for (p = name; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "holds a control character";
	if (name[0] == ' ' || name[n - 1] == ' ')
		return "starts or ends with a space";
	if (name[0] == '/' || name[n - 1] == '/' || strstr(name, "//") != NULL)
		return "has an empty level (\"A/B\" nests B in A)";
	for (i = 0; reserved[i] != NULL; i++)
		if (strcasecmp(name, reserved[i]) == 0)
			return "is a label Gmail keeps for itself";
	return NULL;
}

size_t
config_gmail_label_names(const struct gmail_dest *gd, const char *mailbox,
    const char **out, size_t max)
{
	size_t	 n = 0, i, j;
	const char *cand;

	for (i = 0; i < 2 + gd->nlabels && n < max; i++) {
		if (i == 0)
			cand = gd->inbox ? "INBOX" : NULL;
		else if (i == 1)
			cand = mailbox != NULL && strcasecmp(mailbox, "INBOX") !=
			    0 ? mailbox : NULL;
		else
			cand = gd->labels[i - 2];
		if (cand == NULL)
			continue;
		for (j = 0; j < n; j++)
			if (strcasecmp(out[j], cand) == 0)
				break;
		if (j == n)
			out[n++] = cand;
	}
	return n;
}

static enum result
load_bool(struct loader *ld, const config_setting_t *g, const char *key,
    const char *where, bool *v)
{
	const config_setting_t	*s = config_setting_get_member(g, key);

	if (s == NULL)
		return RES_OK;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfail(ld, s, "%s\"%s\" must be true or false", where, key);
	*v = config_setting_get_bool(s) != 0;
	return RES_OK;
}

enum result
config_gmail_load(struct loader *ld, const config_setting_t *g,
    const char *where, struct gmail_dest *gd)
{
	const config_setting_t	*s, *e;
	const char		*url, *why, *name;
	int			 i, n;
	enum result		 r;

	memset(gd, 0, sizeof *gd);
	gd->inbox = true;
	gd->unread = true;
	s = config_setting_get_member(g, "url");
	if (s == NULL || (url = config_setting_get_string(s)) == NULL)
		return cfail(ld, g, "%s\"url\" is missing", where);
	if ((why = config_gmail_url(url, &gd->base)) != NULL)
		return cfail(ld, s, "%s\"url\" %s", where, why);
	if ((r = load_bool(ld, g, "inbox", where, &gd->inbox)) != RES_OK ||
	    (r = load_bool(ld, g, "unread", where, &gd->unread)) != RES_OK ||
	    (r = load_bool(ld, g, "never_mark_spam", where,
	    &gd->never_mark_spam)) != RES_OK)
		return r;
	if ((s = config_setting_get_member(g, "labels")) == NULL)
		return RES_OK;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST)
		return cfail(ld, s, "%s\"labels\" must be an array [ ... ] of "
		    "label names", where);
	n = config_setting_length(s);
	if (n > GMAIL_LABELS_MAX - 3)
		return cfail(ld, s, "%smore than %d labels", where,
		    GMAIL_LABELS_MAX - 3);
	gd->labels = xcalloc((size_t)n + 1, sizeof *gd->labels);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return cfail(ld, e, "%s\"labels\" must hold strings",
			    where);
		name = config_setting_get_string(e);
		if ((why = config_gmail_label_check(name)) != NULL)
			return cfail(ld, e, "%sthe label \"%.100s\" %s", where,
			    name, why);
		gd->labels[gd->nlabels++] = xstrdup(name);
	}
	return RES_OK;
}

void
config_gmail_free(struct gmail_dest *gd)
{
	size_t	 i;

	if (gd == NULL)
		return;
	for (i = 0; i < gd->nlabels; i++)
		free(gd->labels[i]);
	free(gd->labels);
	free(gd->base);
	memset(gd, 0, sizeof *gd);
}

/* The keys of a gmail-api: group: an endpoint's without passwords or
 * TLS choices (it is always HTTPS), and the Gmail ones. */
static const char *const endpoint_keys[] = { "name", "url", "user",
	"oauth2_token_command", "auth", "ca_file", "pin", "proxy", "mailbox",
	"labels", "inbox", "unread", "never_mark_spam", NULL };

static char *
opt_string(const config_setting_t *g, const char *key)
{
	const char	*v;

	return config_setting_lookup_string(g, key, &v) == CONFIG_TRUE ?
	    xstrdup(v) : NULL;
}

/* The host of "https://HOST[:PORT]" (or Google's), for messages and the
 * ledger's name of the destination. */
static void
base_host(struct endpoint *ep, const char *base)
{
	const char	*h = base != NULL ? base + 8 : "gmail.googleapis.com";
	size_t		 n = strcspn(h, ":/");

	if (h[0] == '[')
		n = strcspn(h, "]") + 1;
	ep->host = xstrndup(h, n);
	ep->port = h[n] == ':' ? atoi(h + n + 1) : 443;
}

enum result
config_gmail_endpoint(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool named, const char *where)
{
	const config_setting_t	*m;
	const char		*key, *why;
	char			*p;
	unsigned int		 i;
	size_t			 k;

	for (i = 0; (m = config_setting_get_elem(g, i)) != NULL; i++) {
		key = config_setting_name(m);
		for (k = 0; endpoint_keys[k] != NULL; k++)
			if (strcmp(key, endpoint_keys[k]) == 0)
				break;
		if (endpoint_keys[k] == NULL || (!named &&
		    strcmp(key, "name") == 0))
			return cfail(ld, m, "%s\"%s\" is no key of a gmail-api: "
			    "destination (it signs in with "
			    "\"oauth2_token_command\" only, over HTTPS)", where,
			    key);
	}
	ep->imap = true;
	ep->tls = TLS_IMPLICIT;
	ep->line = config_setting_source_line(g);
	ep->url = opt_string(g, "url");
	ep->user = opt_string(g, "user");
	ep->oauth2_token_command = opt_string(g, "oauth2_token_command");
	ep->auth = xstrdup("oauthbearer");
	ep->oauth2 = true;
	ep->pin = opt_string(g, "pin");
	ep->proxy = opt_string(g, "proxy");
	ep->mailbox = opt_string(g, "mailbox");
	if ((p = opt_string(g, "ca_file")) != NULL && p[0] != '/' &&
	    ld->dir != NULL) {
		ep->ca_file = xprintf("%s/%s", ld->dir, p);
		free(p);
	} else
		ep->ca_file = p;
	/* A line break in a value would start a header of its own. */
	if (ep->user == NULL || ep->user[0] == '\0' ||
	    strpbrk(ep->user, "\r\n") != NULL)
		return cfail(ld, g, "%s\"user\" (the Gmail address) is missing "
		    "or empty", where);
	if (ep->oauth2_token_command == NULL)
		return cfail(ld, g, "%sa gmail-api: destination takes "
		    "\"oauth2_token_command\" (a command printing a fresh "
		    "access token with the scopes gmail.insert and gmail.readonly, "
		    "or gmail.modify: the search that settles a lost reply and "
		    "finds mail already in Gmail needs to read)",
		    where);
	if (ep->proxy != NULL && (why = config_proxy_check(ep->proxy)) != NULL)
		return cfail(ld, config_setting_get_member(g, "proxy"),
		    "%s\"proxy\" %s (\"\" for none)", where, why);
	/* The label is checked by the caller, as every account's mailbox
	 * is (account_valid_mailbox). */
	if (ep->mailbox == NULL)
		ep->mailbox = xstrdup("INBOX");
	ep->gmail = xcalloc(1, sizeof *ep->gmail);
	if (config_gmail_load(ld, g, where, ep->gmail) != RES_OK)
		return RES_CONFIG;
	base_host(ep, ep->gmail->base);
	return RES_OK;
}
