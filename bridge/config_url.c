/*
 * The URLs of pop3 and imap: parsed (config_parse_url, for the config, for
 * `migrate` and for `batch`) and shown with any user and password hidden
 * (config_url_redact), for messages that quote them.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

/*
 * A URL fit to print: what stands between "scheme://" (or the start, if
 * there is no scheme) and the last '@' of the whole string becomes "***".
 * Not the '@' before the first '/', '?' or '#': a password may hold any
 * of them ("max:Pa/ss#w0rd?x@host"), so where the authority ends cannot
 * be known, but the userinfo never goes past the last '@'.  Malloc'd.
 */
char *
config_url_redact(const char *url)
{
	const char	*at = strrchr(url, '@'), *start = url;
	char		*out, *p;
	size_t		 n;

	if (at == NULL)
		out = xstrdup(url);
	else {
		/* A scheme: letters, digits, "+-." (RFC 3986 3.1), "://". */
		n = strspn(url, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
		if (n > 0 && strncmp(url + n, "://", 3) == 0 &&
		    url + n + 3 <= at)
			start = url + n + 3;
		out = xprintf("%.*s***%s", (int)(start - url), url, at);
	}
	/* A url from a CSV file must not forge a log line either. */
	for (p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return out;
}

/* config_parse_url with the URL as it may be shown. */
static enum result
parse_url_shown(struct endpoint *ep, const char *shown, char **why)
{
	const char	*u = ep->url, *host, *end, *p;
	const char	*plain = ep->imap ? "imap" : "pop3";
	size_t		 plen = strlen(plain), hlen, ndig;
	long		 port;

	/* No user or password in a url: no host name, port or path (none is
	 * allowed) holds an '@', so any '@' means one. */
	if (strchr(u, '@') != NULL)
		return fail(why, RES_CONFIG, "url \"%s\": put the user name in "
		    "\"user\" and the secret in \"password\" (or "
		    "password_file), not in the url", shown);
	if (strncmp(u, plain, plen) == 0 && u[plen] == 's' &&
	    strncmp(u + plen + 1, "://", 3) == 0) {
		ep->tls = TLS_IMPLICIT;
		host = u + plen + 4;
		ep->port = ep->imap ? 993 : 995;
	} else if (strncmp(u, plain, plen) == 0 &&
	    strncmp(u + plen, "://", 3) == 0) {
		ep->tls = TLS_STARTTLS;
		host = u + plen + 3;
		ep->port = ep->imap ? 143 : 110;
	} else
		return fail(why, RES_CONFIG, "url \"%s\" must start with %s:// "
		    "or %ss://", shown, plain, plain);
	if (*host == '[') {
		if ((end = strchr(host, ']')) == NULL)
			return fail(why, RES_CONFIG, "url \"%s\": unclosed [",
			    shown);
		hlen = (size_t)(end - host - 1);
		host++;
		end++;
	} else {
		end = host + strcspn(host, ":/@?#");
		hlen = (size_t)(end - host);
	}
	if (hlen == 0)
		return fail(why, RES_CONFIG, "url \"%s\" has no host", shown);
	for (p = host; p < host + hlen; p++)
		if (!isalnum((unsigned char)*p) && strchr(".-_:", *p) == NULL)
			return fail(why, RES_CONFIG, "url \"%s\": bad character in "
			    "the host name", shown);
	if (*end == ':') {
		/* Digits only: strtol would take " +993" as well. */
		ndig = strspn(end + 1, "0123456789");
		port = 0;
		for (p = end + 1; p < end + 1 + ndig && port <= 65535; p++)
			port = port * 10 + (*p - '0');
		if (ndig == 0 || port < 1 || port > 65535)
			return fail(why, RES_CONFIG, "url \"%s\": bad port",
			    shown);
		ep->port = (int)port;
		end += 1 + ndig;
	}
	/* The well-known ports say which scheme they need. */
	if (ep->tls == TLS_STARTTLS && ep->port == (ep->imap ? 993 : 995))
		return fail(why, RES_CONFIG, "url: port %d speaks TLS from the "
		    "first byte: write %ss://", ep->port, plain);
	if (ep->tls == TLS_IMPLICIT && ep->port == (ep->imap ? 143 : 110))
		return fail(why, RES_CONFIG, "url: port %d starts in plaintext "
		    "(STARTTLS): write %s://", ep->port, plain);
	if (*end == '/')
		end++;
	if (*end != '\0')
		return fail(why, RES_CONFIG, "url \"%s\": nothing may follow "
		    "the host and port%s", shown, ep->imap ?
		    " (the folder goes in \"mailbox\")" : "");
	free(ep->host);
	ep->host = xstrndup(host, hlen);
	return RES_OK;
}

/*
 * scheme://host[:port][/] with the schemes the endpoint allows (ep->url and
 * ep->imap set): fills host, port and tls.  Shared with `migrate` and
 * `batch`, which take their URLs from the command line and a CSV file.  A
 * message quotes the url only as config_url_redact shows it.
 */
enum result
config_parse_url(struct endpoint *ep, char **why)
{
	char		*shown = config_url_redact(ep->url);
	enum result	 r;

	r = parse_url_shown(ep, shown, why);
	free(shown);
	return r;
}
