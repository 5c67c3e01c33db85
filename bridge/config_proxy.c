/*
 * An endpoint's proxy: the "proxy" key checked at load, and for `check`
 * which proxy a connection goes through, the key's or the one libcurl
 * takes from the environment (ALL_PROXY, pop3s_proxy, ...) unless
 * NO_PROXY exempts the host.  net.c hands the key to libcurl.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "config_int.h"

/*
 * A proxy: "" (none, not even the environment's), or
 * http://, socks5:// or socks5h:// [USER[:PASSWORD]@]HOST[:PORT][/].
 * NULL if fine, else why not (a phrase).  The user and password may hold
 * anything but control bytes, up to the last '@' (as config_url_redact
 * reads a URL).
 */
const char *
config_proxy_check(const char *v)
{
	static const char *const schemes[] = { "http://", "socks5://",
		"socks5h://" };
	const char	*p = NULL, *at, *h, *e;
	size_t		 i, n;
	long		 port;

	if (*v == '\0')
		return NULL;
	for (h = v; *h != '\0'; h++)
		if ((unsigned char)*h < 0x20 || *h == 0x7f)
			return "holds a control character";
	for (i = 0; i < sizeof schemes / sizeof schemes[0] && p == NULL; i++)
		if (strncasecmp(v, schemes[i], strlen(schemes[i])) == 0)
			p = v + strlen(schemes[i]);
	if (p == NULL)
		return "must start with http://, socks5:// or socks5h://";
	if ((at = strrchr(p, '@')) != NULL && at == p)
		return "has an '@' with no user before it";
	h = at != NULL ? at + 1 : p;
	if (*h == '[') {
		if ((e = strchr(h, ']')) == NULL || e == h + 1)
			return "has an unclosed [ or an empty IPv6 address";
		for (n = 1; h + n < e; n++)
			if (!isxdigit((unsigned char)h[n]) && h[n] != ':' &&
			    h[n] != '.')
				return "has a bad IPv6 address";
		e++;
	} else {
		for (e = h; isalnum((unsigned char)*e) || *e == '.' ||
		    *e == '-' || *e == '_'; e++)
			;
		if (e == h)
			return "has no host";
	}
	if (*e == ':') {
		n = strspn(e + 1, "0123456789");
		for (port = 0, i = 1; i <= n && port <= 65535; i++)
			port = port * 10 + (e[i] - '0');
		if (n == 0 || port < 1 || port > 65535)
			return "has a bad port";
		e += 1 + n;
	}
	if (*e == '/')
		e++;
	if (*e != '\0')
		return "may hold only [USER[:PASSWORD]@]HOST[:PORT] after the "
		    "scheme";
	return NULL;
}

/*
 * The proxy libcurl takes from the environment for a URL scheme when the
 * config names none, as libcurl looks for it: scheme_proxy, SCHEME_PROXY,
 * all_proxy, ALL_PROXY.  NULL if none; *name says which variable.
 */
const char *
config_env_proxy(const char *scheme, const char **name)
{
	static char	 var[4][32];
	const char	*v;
	size_t		 i, j;

	snprintf(var[0], sizeof var[0], "%s_proxy", scheme);
	snprintf(var[1], sizeof var[1], "%s_PROXY", scheme);
	for (j = 0; var[1][j] != '\0'; j++)
		var[1][j] = (char)toupper((unsigned char)var[1][j]);
	snprintf(var[2], sizeof var[2], "all_proxy");
	snprintf(var[3], sizeof var[3], "ALL_PROXY");
	for (i = 0; i < 4; i++)
		if ((v = getenv(var[i])) != NULL && v[0] != '\0') {
			*name = var[i];
			return v;
		}
	return NULL;
}

/* Does NO_PROXY (or no_proxy) exempt host, as libcurl reads it ("*",
 * or names that are the host or a domain above it)? */
static bool
no_proxy_for(const char *host)
{
	const char	*v = getenv("no_proxy"), *p, *e;
	size_t		 n, hl = strlen(host);

	if (v == NULL || *v == '\0')
		v = getenv("NO_PROXY");
	if (v == NULL)
		return false;
	for (p = v; *p != '\0'; p = *e != '\0' ? e + 1 : e) {
		p += strspn(p, " \t");
		e = p + strcspn(p, ",");
		n = (size_t)(e - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n > 0 && *p == '.') {
			p++;
			n--;
		}
		if ((n == 1 && *p == '*') || (n > 0 && ((n == hl &&
		    strncasecmp(p, host, n) == 0) || (hl > n &&
		    host[hl - n - 1] == '.' && strncasecmp(host + hl - n, p,
		    n) == 0))))
			return true;
	}
	return false;
}

char *
config_proxy_note(const struct endpoint *ep)
{
	const char	*proto = ep->imap ? "imap" : "pop3", *name, *v;
	char		 scheme[8], *shown, *note;

	snprintf(scheme, sizeof scheme, "%s%s", proto, ep->tls ==
	    TLS_IMPLICIT ? "s" : "");
	if (ep->proxy != NULL && ep->proxy[0] != '\0') {
		shown = config_url_redact(ep->proxy);
		note = xprintf("%s: through the proxy %s (the \"proxy\" key)",
		    proto, shown);
		free(shown);
		return note;
	}
	if ((v = config_env_proxy(scheme, &name)) == NULL)
		return NULL;
	shown = config_url_redact(v);
	if (ep->proxy != NULL)
		note = xprintf("%s: directly: proxy = \"\" (the environment's "
		    "%s=%s is not used)", proto, name, shown);
	else if (no_proxy_for(ep->host))
		note = xprintf("%s: directly: NO_PROXY names %s (the "
		    "environment's %s=%s is not used)", proto, ep->host, name,
		    shown);
	else
		note = xprintf("%s: through the environment's proxy %s=%s (no "
		    "\"proxy\" key; proxy = \"\" connects directly)", proto,
		    name, shown);
	free(shown);
	return note;
}
