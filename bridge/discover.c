/*
 * Server discovery for `popbridge add`: where is the POP3 server of an
 * address?  Four sources are asked in this order and the first answer wins,
 * as a mail client's account wizard does:
 *
 *   1. the provider presets (config/providers.conf, installed to
 *      PREFIX/share/popbridge/): no network, and right for the big POP3-only
 *      providers whose autoconfig documents are missing or list IMAP only;
 *   2. the provider's own autoconfig document (Thunderbird's
 *      config-v1.1.xml) at autoconfig.DOMAIN and DOMAIN/.well-known;
 *   3. the Mozilla ISPDB, which holds such documents for many providers;
 *   4. DNS SRV records (RFC 6186): _pop3s._tcp.DOMAIN, then _pop3._tcp.
 *
 * Everything fetched is untrusted.  Documents are bounded (DOC_MAX) and
 * parsed by libxml2 with no network access and no DTD at all, so there are
 * no entities to expand; DNS answers are walked by a bounded parser.  Every
 * value taken from them (host, port, user name) is checked before use,
 * because it ends up in the config file and in a login.  HTTP fetches must
 * be HTTPS, redirects included; plain http:// is allowed only to this
 * machine, for the tests' local server.
 *
 * This file holds the order; what the sources share (address, URL and
 * template checks) is in discover_util.c, which they and this file call
 * down to.  Each source has a file of its own: discover_preset.c,
 * discover_autoconfig.c (2 and 3, fetched by discover_http.c) and
 * discover_srv.c.  The parsers of the preset file, the autoconfig document
 * and the DNS answer are pure functions, tested in
 * tests/unit/discover_test.c.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "discover_int.h"

/* ---- can a host name be found at all? ---- */

enum dns_result
discover_host_check(const char *host, char **why)
{
	struct addrinfo	 hints, *res = NULL;
	int		 rc;

	*why = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (res != NULL)
		freeaddrinfo(res);
	switch (rc) {
	case 0:
		return DNS_OK;
	case EAI_NONAME:
	case EAI_NODATA:
		/* A name server answered: there is no such name. */
		*why = xprintf("the host name %s does not resolve (DNS: no "
		    "such host; is it spelt right?)", host);
		return DNS_NO_SUCH_HOST;
	case EAI_AGAIN:
		*why = xprintf("no answer from the DNS resolver for %s (is "
		    "this machine online?)", host);
		return DNS_NO_ANSWER;
	case EAI_FAIL:
		*why = xprintf("the DNS resolver refused or failed the query "
		    "for %s", host);
		return DNS_NO_ANSWER;
	default:
		*why = xprintf("the host name %s cannot be looked up: %s", host,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return DNS_NO_ANSWER;
	}
}

/* ---- all four, in order ---- */

static void
tried_add(char **tried, char **details, const char *what, char *note)
{
	char	*t, *dt;

	t = xprintf("%s%s%s", *tried, **tried != '\0' ? ", " : "", what);
	dt = xprintf("%s%s%s: %s", *details, **details != '\0' ? "; " : "",
	    what, note != NULL ? note : "nothing");
	free(*tried);
	free(*details);
	free(note);
	*tried = t;
	*details = dt;
}

enum result
discover_pop3(const char *address, struct discovery *d, char **cause)
{
	char		*tried = xstrdup(""), *details = xstrdup("");
	char		*note = NULL, *domain, *p;
	bool		 found = false;
	enum result	 r;

	memset(d, 0, sizeof *d);
	if (!discover_address_valid(address)) {
		free(tried);
		free(details);
		return fail(cause, RES_CONFIG, "\"%s\" is not an address I can "
		    "look up", address);
	}
	domain = xstrdup(strchr(address, '@') + 1);
	for (p = domain; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if ((r = discover_from_presets(address, d, &found, &note, cause)) !=
	    RES_OK)
		goto out;
	if (found && d->host == NULL) {
		/* iCloud: IMAP only.  "Not found" would send the user
		 * looking for a server that does not exist. */
		r = fail(cause, RES_CONFIG, "%s; popbridge fetches mail by POP3 "
		    "only, so it cannot fetch %s (from %s)", d->hint, address,
		    d->source);
		goto out;
	}
	if (found)
		goto out;
	tried_add(&tried, &details, "presets", note);
	note = NULL;
	if ((r = discover_from_autoconfig(address, domain, d, &found, &note,
	    cause)) != RES_OK || found)
		goto out;
	tried_add(&tried, &details, "autoconfig", note);
	note = NULL;
	if (discover_from_ispdb(address, domain, d, &note))
		goto out;
	tried_add(&tried, &details, "ISPDB", note);
	note = NULL;
	if (discover_from_srv(address, domain, d, &note))
		goto out;
	tried_add(&tried, &details, "DNS SRV", note);
	note = NULL;
	r = fail(cause, RES_TEMP, "could not find the POP3 server for %s; "
	    "tried: %s (%s); give it with --pop3 pop3s://HOST[:PORT]", domain,
	    tried, details);
out:
	free(note);
	free(tried);
	free(details);
	free(domain);
	if (r != RES_OK)
		discover_free(d);
	return r;
}
