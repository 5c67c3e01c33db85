/*
 * What discovery's files share, and `add` uses too: the checks of an
 * address, a host name and a server URL, the autoconfig templates'
 * placeholders, and freeing a discovery.  The base of discover.c and its
 * sources (discover_preset.c, discover_autoconfig.c, discover_srv.c), so
 * that the sources call down to it and never back up to discover.c.
 * Everything here is pure (no network), tested in tests/unit/discover_test.c.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "discover_int.h"

/* ---- names and URLs ---- */

/* A DNS name (or IPv4 literal): letters, digits, '-' in dot-separated
 * labels of 1-63 bytes, at most 253 in all. */
bool
discover_host_valid(const char *h)
{
	size_t	 n = strlen(h), label = 0, i;

	if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
		return false;
	for (i = 0; i < n; i++) {
		if (h[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)h[i]) || h[i] == '-') {
			if (++label > 63 || (label == 1 && h[i] == '-'))
				return false;
		} else
			return false;
	}
	/* A single trailing dot (the DNS root) is tolerated. */
	return label > 0 || (n > 1 && h[n - 1] == '.');
}

bool
discover_address_valid(const char *a)
{
	const char	*at = strchr(a, '@'), *p;

	if (at == NULL || strchr(at + 1, '@') != NULL || at == a ||
	    at - a > 64 || at[1] == '\0')
		return false;
	/* Printable ASCII without the characters that need quoting. */
	for (p = a; p < at; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
		    strchr("\"\\()<>,;:[]", *p) != NULL)
			return false;
	return discover_host_valid(at + 1) && at[strlen(at) - 1] != '.';
}

/* The bracketed IPv6 literal of a URL: hex digits, ':' and '.'. */
static bool
v6_valid(const char *h, size_t n)
{
	size_t	 i;

	if (n == 0 || n > 45)
		return false;
	for (i = 0; i < n; i++)
		if (!isxdigit((unsigned char)h[i]) && h[i] != ':' &&
		    h[i] != '.')
			return false;
	return true;
}

bool
discover_parse_url(const char *url, bool imap, char **host, int *port,
    enum tls_mode *tls)
{
	const char	*proto = imap ? "imap" : "pop3", *h, *end;
	char		*hs, *pend;
	size_t		 plen = 4, hlen;
	long		 pn;

	*host = NULL;
	if (strncmp(url, proto, plen) != 0)
		return false;
	if (strncmp(url + plen, "s://", 4) == 0) {
		*tls = TLS_IMPLICIT;
		*port = imap ? 993 : 995;
		h = url + plen + 4;
	} else if (strncmp(url + plen, "://", 3) == 0) {
		*tls = TLS_STARTTLS;
		*port = imap ? 143 : 110;
		h = url + plen + 3;
	} else
		return false;
	if (*h == '[') {
		if ((end = strchr(h, ']')) == NULL || !v6_valid(h + 1,
		    (size_t)(end - h - 1)))
			return false;
		end++;
	} else
		end = h + strcspn(h, ":/");
	hlen = (size_t)(end - h);
	hs = xstrndup(h, hlen);
	if (*h != '[' && !discover_host_valid(hs)) {
		free(hs);
		return false;
	}
	if (*end == ':') {
		errno = 0;
		pn = strtol(end + 1, &pend, 10);
		if (errno != 0 || pend == end + 1 || !isdigit((unsigned char)
		    end[1]) || pn < 1 || pn > 65535) {
			free(hs);
			return false;
		}
		*port = (int)pn;
		end = pend;
	}
	if (*end == '/')
		end++;
	if (*end != '\0') {
		free(hs);
		return false;
	}
	*host = hs;
	return true;
}

void
discover_free(struct discovery *d)
{
	free(d->host);
	free(d->user);
	free(d->imap);
	free(d->source);
	free(d->auth);
	free(d->hint);
	memset(d, 0, sizeof *d);
}

/*
 * A template from a document or a preset with the placeholders of the
 * autoconfig format replaced; NULL if it holds another placeholder, a
 * control byte, or comes out longer than VALUE_MAX.
 */
char *
discover_expand(const char *tmpl, const char *address)
{
	static const char *const names[] = { "%EMAILADDRESS%",
		"%EMAILLOCALPART%", "%EMAILDOMAIN%" };
	const char	*at = strchr(address, '@'), *p, *with[3];
	size_t		 wlen[3], o = 0, i;
	char		 out[VALUE_MAX + 1];

	with[0] = address;
	wlen[0] = strlen(address);
	with[1] = address;
	wlen[1] = (size_t)(at - address);
	with[2] = at + 1;
	wlen[2] = strlen(at + 1);
	for (p = tmpl; *p != '\0'; ) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return NULL;
		if (*p != '%') {
			if (o >= VALUE_MAX)
				return NULL;
			out[o++] = *p++;
			continue;
		}
		for (i = 0; i < 3; i++)
			if (strncmp(p, names[i], strlen(names[i])) == 0)
				break;
		if (i == 3 || wlen[i] > VALUE_MAX - o)
			return NULL;
		memcpy(out + o, with[i], wlen[i]);
		o += wlen[i];
		p += strlen(names[i]);
	}
	out[o] = '\0';
	return o == 0 ? NULL : xstrdup(out);
}
