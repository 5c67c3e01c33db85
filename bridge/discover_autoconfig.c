/*
 * Discovery's second and third sources: the provider's own autoconfig
 * document (Thunderbird's config-v1.1.xml) at autoconfig.DOMAIN and
 * DOMAIN/.well-known, and the Mozilla ISPDB, which holds such documents
 * for many providers.  The document is untrusted: libxml2 parses it with
 * no network access and no DTD at all, so there are no entities to
 * expand, and every value taken from it is checked before use.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "bridge.h"
#include "discover_int.h"

#define ISPDB_URL	"https://autoconfig.thunderbird.net/v1.1/"

static bool
name_is(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE &&
	    strcmp((const char *)n->name, name) == 0;
}

/*
 * The text of an element: its own text and CDATA children only (no
 * entity references are followed), trimmed; NULL if longer than
 * VALUE_MAX.
 */
static char *
elem_text(const xmlNode *e)
{
	const xmlNode	*c;
	char		 buf[VALUE_MAX + 1];
	size_t		 o = 0, n, s;

	for (c = e->children; c != NULL; c = c->next) {
		if ((c->type != XML_TEXT_NODE &&
		    c->type != XML_CDATA_SECTION_NODE) || c->content == NULL)
			continue;
		n = strlen((const char *)c->content);
		if (n > VALUE_MAX - o)
			return NULL;
		memcpy(buf + o, c->content, n);
		o += n;
	}
	while (o > 0 && isspace((unsigned char)buf[o - 1]))
		o--;
	buf[o] = '\0';
	s = strspn(buf, " \t\r\n");
	return xstrdup(buf + s);
}

/* The first child element called name, or NULL. */
static const xmlNode *
child(const xmlNode *e, const char *name)
{
	const xmlNode	*c;

	for (c = e->children; c != NULL; c = c->next)
		if (name_is(c, name))
			return c;
	return NULL;
}

/*
 * How popbridge logs in where the server wants this: 0 with a password
 * (or no <authentication> listed at all), 1 with an OAuth2 token (the
 * provider takes nothing else: Outlook.com, Hotmail), -1 not at all
 * (NTLM, GSSAPI, client certificates).
 */
static int
auth_kind(const xmlNode *srv)
{
	static const char *const ok[] = { "password-cleartext",
		"password-encrypted", "plain", "secure" };
	const xmlNode	*c;
	char		*t;
	bool		 listed = false, usable = false, oauth2 = false;
	size_t		 i;

	for (c = srv->children; c != NULL && !usable; c = c->next) {
		if (!name_is(c, "authentication"))
			continue;
		listed = true;
		if ((t = elem_text(c)) == NULL)
			continue;
		for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
			if (strcasecmp(t, ok[i]) == 0)
				usable = true;
		if (strcasecmp(t, "OAuth2") == 0)
			oauth2 = true;
		free(t);
	}
	if (!listed || usable)
		return 0;
	return oauth2 ? 1 : -1;
}

struct server {
	int		 rank;		/* 0 best: SSL, STARTTLS, plain; then
					 * the same with OAuth2 only */
	bool		 oauth2;	/* it takes an OAuth2 token only */
	char		*host;
	int		 port;
	enum tls_mode	 tls;
	char		*user;
};

static void
server_free(struct server *s)
{
	free(s->host);
	free(s->user);
	memset(s, 0, sizeof *s);
	s->rank = 99;
}

/* One <incomingServer>: checked and expanded into s, or a reason. */
static bool
server_read(const xmlNode *srv, const char *address, bool imap,
    struct server *s, const char **why)
{
	const xmlNode	*e;
	char		*t = NULL, *end;
	long		 port;

	server_free(s);
	s->tls = TLS_NONE;
	if ((e = child(srv, "socketType")) != NULL) {
		if ((t = elem_text(e)) == NULL) {
			*why = "an unknown socketType";
			return false;
		}
		if (strcasecmp(t, "SSL") == 0)
			s->tls = TLS_IMPLICIT;
		else if (strcasecmp(t, "STARTTLS") == 0)
			s->tls = TLS_STARTTLS;
		else if (strcasecmp(t, "plain") != 0) {
			free(t);
			*why = "an unknown socketType";
			return false;
		}
	}
	free(t);
	t = NULL;		/* freed again below if there is no hostname */
	s->rank = s->tls == TLS_IMPLICIT ? 0 : s->tls == TLS_STARTTLS ? 1 : 2;
	if ((e = child(srv, "hostname")) == NULL || (t = elem_text(e)) ==
	    NULL || (s->host = discover_expand(t, address)) == NULL ||
	    !discover_host_valid(s->host)) {
		free(t);
		*why = "a missing or bad hostname";
		return false;
	}
	free(t);
	s->port = imap ? (s->tls == TLS_IMPLICIT ? 993 : 143) :
	    (s->tls == TLS_IMPLICIT ? 995 : 110);
	if ((e = child(srv, "port")) != NULL && (t = elem_text(e)) != NULL) {
		errno = 0;
		port = strtol(t, &end, 10);
		if (!isdigit((unsigned char)t[0]) || *end != '\0' ||
		    errno != 0 || port < 1 || port > 65535) {
			free(t);
			*why = "a bad port";
			return false;
		}
		s->port = (int)port;
		free(t);
	}
	t = NULL;
	if ((e = child(srv, "username")) != NULL && (t = elem_text(e)) !=
	    NULL && t[0] != '\0')
		s->user = discover_expand(t, address);
	else
		s->user = xstrdup(address);
	free(t);
	if (s->user == NULL) {
		*why = "a bad user name (an unknown placeholder?)";
		return false;
	}
	/* A password login is better; OAuth2 only, popbridge can do too,
	 * with a command that prints a token. */
	switch (auth_kind(srv)) {
	case -1:
		*why = "neither a password nor an OAuth2 login";
		return false;
	case 1:
		s->oauth2 = true;
		s->rank += 10;
		break;
	}
	return true;
}

/* The best server of one type in the document: SSL, then STARTTLS. */
static void
best_server(const xmlNode *root, const char *address, bool imap,
    struct server *best, const char **why)
{
	const xmlNode	*prov, *srv;
	struct server	 s;
	xmlChar		*type;
	bool		 match;

	memset(&s, 0, sizeof s);
	memset(best, 0, sizeof *best);
	best->rank = 99;
	for (prov = root->children; prov != NULL; prov = prov->next) {
		if (!name_is(prov, "emailProvider"))
			continue;
		for (srv = prov->children; srv != NULL; srv = srv->next) {
			if (!name_is(srv, "incomingServer"))
				continue;
			type = xmlGetNoNsProp(srv, (const xmlChar *)"type");
			match = type != NULL && strcmp((const char *)type,
			    imap ? "imap" : "pop3") == 0;
			xmlFree(type);
			if (!match)
				continue;
			if (server_read(srv, address, imap, &s, why) &&
			    s.rank < best->rank) {
				server_free(best);
				*best = s;
				memset(&s, 0, sizeof s);
			}
			server_free(&s);
		}
	}
}

enum result
discover_parse_autoconfig(const char *xml, size_t len, const char *address,
    struct discovery *d, char **cause)
{
	xmlDoc		*doc;
	const xmlNode	*root;
	struct server	 pop, imap;
	const char	*why = NULL, *iwhy = NULL;
	enum result	 r = RES_OK;

	memset(d, 0, sizeof *d);
	if (len > DOC_MAX)
		return fail(cause, RES_TEMP, "larger than %d bytes", DOC_MAX);
	/*
	 * No XML_PARSE_NOENT (entities stay unexpanded), no DTDLOAD or
	 * DTDATTR, NONET, and not HUGE, so libxml2's own limits on depth
	 * and text size hold.  A document with any DTD is refused outright:
	 * autoconfig documents have none, and a DTD is where entity bombs
	 * and external references live.
	 */
	doc = xmlReadMemory(xml, (int)len, "config-v1.1.xml", NULL,
	    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (doc == NULL)
		return fail(cause, RES_TEMP, "not well-formed XML");
	if (doc->intSubset != NULL || doc->extSubset != NULL) {
		xmlFreeDoc(doc);
		return fail(cause, RES_TEMP, "has a DTD (refused)");
	}
	if ((root = xmlDocGetRootElement(doc)) == NULL ||
	    !name_is(root, "clientConfig")) {
		xmlFreeDoc(doc);
		return fail(cause, RES_TEMP, "not a clientConfig document");
	}
	best_server(root, address, false, &pop, &why);
	best_server(root, address, true, &imap, &iwhy);
	xmlFreeDoc(doc);
	if (pop.host == NULL) {
		if (why == NULL && imap.host != NULL)
			r = fail(cause, RES_TEMP, "lists no usable POP3 server: "
			    "IMAP only (the provider may offer no POP3)");
		else
			r = fail(cause, RES_TEMP, "lists no usable POP3 server%s%s",
			    why != NULL ? ": one has " : "", why != NULL ? why :
			    "");
		goto out;
	}
	if (pop.oauth2)
		d->auth = xstrdup("xoauth2");
	d->host = pop.host;
	d->port = pop.port;
	d->tls = pop.tls;
	d->user = pop.user;
	memset(&pop, 0, sizeof pop);
	if (imap.host != NULL)
		d->imap = xprintf("%s://%s:%d", imap.tls == TLS_IMPLICIT ?
		    "imaps" : "imap", imap.host, imap.port);
out:
	server_free(&pop);
	server_free(&imap);
	return r;
}

/* Fetch url and parse it; true with *d filled, else a note. */
static bool
from_document(const char *url, const char *what, const char *address,
    struct discovery *d, char **note)
{
	char		*body = NULL, *why = NULL, clean[300];
	size_t		 len = 0;

	if (!discover_http_get(url, &body, &len, &why)) {
		*note = xprintf("%s: %s", log_clean(clean, sizeof clean, url,
		    strlen(url)), why != NULL ? why : "no document");
		free(why);
		return false;
	}
	if (discover_parse_autoconfig(body, len, address, d, &why) != RES_OK) {
		free(body);
		*note = xprintf("%s: %s", log_clean(clean, sizeof clean, url,
		    strlen(url)), why);
		free(why);
		return false;
	}
	free(body);
	d->source = xprintf("%s %s", what, log_clean(clean, sizeof clean, url,
	    strlen(url)));
	return true;
}

/*
 * $POPBRIDGE_AUTOCONFIG_URL with %d the domain, %e the address (URL
 * escaped) and %% a percent sign; NULL if it has another % sequence.
 */
static char *
autoconfig_template(const char *tmpl, const char *domain, const char *esc)
{
	char	*out = xstrdup(""), *next;
	const char *p, *with;

	for (p = tmpl; *p != '\0'; p++) {
		if (*p != '%') {
			next = xprintf("%s%c", out, *p);
		} else {
			p++;
			if (*p == 'd')
				with = domain;
			else if (*p == 'e')
				with = esc;
			else if (*p == '%')
				with = "%";
			else {
				free(out);
				return NULL;
			}
			next = xprintf("%s%s", out, with);
		}
		free(out);
		out = next;
	}
	return out;
}

enum result
discover_from_autoconfig(const char *address, const char *domain,
    struct discovery *d, bool *found, char **note, char **cause)
{
	const char	*tmpl = getenv("POPBRIDGE_AUTOCONFIG_URL");
	char		*esc, *urls[2] = { NULL, NULL }, *why, *joined;
	int		 i;

	*found = false;
	if ((esc = curl_easy_escape(NULL, address, 0)) == NULL)
		fatal("curl_easy_escape failed");
	if (tmpl != NULL) {
		if ((urls[0] = autoconfig_template(tmpl, domain, esc)) ==
		    NULL) {
			curl_free(esc);
			return fail(cause, RES_CONFIG, "POPBRIDGE_AUTOCONFIG_URL: "
			    "only %%d (domain), %%e (address) and %%%% may "
			    "follow a %%");
		}
	} else {
		urls[0] = xprintf("https://autoconfig.%s/mail/config-v1.1.xml"
		    "?emailaddress=%s", domain, esc);
		urls[1] = xprintf("https://%s/.well-known/autoconfig/mail/"
		    "config-v1.1.xml", domain);
	}
	curl_free(esc);
	*note = NULL;
	for (i = 0; i < 2 && urls[i] != NULL && !*found; i++) {
		why = NULL;
		*found = from_document(urls[i], "the autoconfig document",
		    address, d, &why);
		if (!*found) {
			joined = xprintf("%s%s%s", *note != NULL ? *note : "",
			    *note != NULL ? "; " : "", why);
			free(*note);
			free(why);
			*note = joined;
		}
	}
	free(urls[0]);
	free(urls[1]);
	return RES_OK;
}

bool
discover_from_ispdb(const char *address, const char *domain,
    struct discovery *d, char **note)
{
	const char	*base = getenv("POPBRIDGE_ISPDB_URL");
	char		*url;
	bool		 found;

	url = xprintf("%s%s", base != NULL ? base : ISPDB_URL, domain);
	found = from_document(url, "the Mozilla ISPDB", address, d, note);
	free(url);
	return found;
}
