/*
 * Discovery's last source: DNS SRV records (RFC 6186), _pop3s._tcp.DOMAIN
 * and then _pop3._tcp.DOMAIN.  The answer comes off the network, so it is
 * walked by a bounded parser, and a target outside the domain is named as
 * such: plain DNS can be spoofed.
 */
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "discover_int.h"

#define DNS_ANSWER_MAX	4096

static unsigned int
get16(const unsigned char *p)
{
	return (unsigned int)p[0] << 8 | p[1];
}

int
discover_parse_srv(const unsigned char *msg, size_t len, char *host,
    size_t hostsz, int *port)
{
	const unsigned char *p = msg + 12, *eom = msg + len;
	unsigned int	 qd, an, type, rdlen, prio, weight, sport;
	unsigned int	 best_prio = 0x10000, best_weight = 0;
	char		 name[NS_MAXDNAME];
	int		 n, found = 0;

	if (len < 12 || len > 65535)
		return -1;
	if ((msg[3] & 0x0f) != 0)
		return 0;		/* NXDOMAIN and friends: no record */
	qd = get16(msg + 4);
	an = get16(msg + 6);
	for (; qd > 0; qd--) {
		if ((n = dn_skipname(p, eom)) < 0 || eom - (p + n) < 4)
			return -1;
		p += n + 4;
	}
	for (; an > 0; an--) {
		if ((n = dn_skipname(p, eom)) < 0 || eom - (p + n) < 10)
			return -1;
		p += n;
		type = get16(p);
		rdlen = get16(p + 8);
		p += 10;
		if ((size_t)(eom - p) < rdlen)
			return -1;
		if (type == ns_t_srv) {
			if (rdlen < 7)
				return -1;
			prio = get16(p);
			weight = get16(p + 2);
			sport = get16(p + 4);
			n = dn_expand(msg, eom, p + 6, name, sizeof name);
			if (n < 0 || (unsigned int)n > rdlen - 6)
				return -1;
			/* "." says the service is not offered (RFC 2782). */
			if (name[0] != '\0' && strcmp(name, ".") != 0 &&
			    sport != 0 && discover_host_valid(name) &&
			    strlen(name) < hostsz && (prio < best_prio ||
			    (prio == best_prio && weight > best_weight))) {
				best_prio = prio;
				best_weight = weight;
				snprintf(host, hostsz, "%s", name);
				*port = (int)sport;
				found = 1;
			}
		}
		p += rdlen;
	}
	return found;
}

/* Is host the domain or under it?  RFC 6186, 6: a target elsewhere needs
 * the user's confirmation, since plain DNS can be spoofed. */
static bool
in_domain(const char *host, const char *domain)
{
	size_t	 h = strlen(host), d = strlen(domain);

	return strcasecmp(host, domain) == 0 || (h > d + 1 &&
	    host[h - d - 1] == '.' && strcasecmp(host + h - d, domain) == 0);
}

/*
 * Why a DNS query got no record, from the resolver's h_errno: "no record"
 * only when a name server said so; a resolver that could not be reached
 * or did not answer is another matter (no network, a dead resolver).
 */
static const char *
dns_why(int herr)
{
	switch (herr) {
	case HOST_NOT_FOUND:
	case NO_DATA:
		return "no such record";
	case TRY_AGAIN:
		return "no answer from the resolver (is this machine online?)";
	case NO_RECOVERY:
		return "the resolver refused or failed the query";
	default:
		return "the resolver could not be asked";
	}
}

/* One SRV name; true with d filled, else a note. */
static bool
srv_query(const char *service, const char *domain, enum tls_mode tls,
    const char *address, struct discovery *d, char **note)
{
	struct __res_state st;
	unsigned char	 answer[DNS_ANSWER_MAX];
	char		*name, host[NS_MAXDNAME];
	int		 n, port = 0, got, herr;

	name = xprintf("%s.%s", service, domain);
	memset(&st, 0, sizeof st);
	if (res_ninit(&st) == -1) {
		*note = xstrdup("no resolver");
		free(name);
		return false;
	}
	/* Short waits: this is the last resort, and a user is waiting. */
	st.retrans = 2;
	st.retry = 2;
	log_debug("add: DNS SRV %s", name);
	n = res_nquery(&st, name, ns_c_in, ns_t_srv, answer, sizeof answer);
	herr = st.res_h_errno;
	res_nclose(&st);
	got = n > 0 ? discover_parse_srv(answer, (size_t)n, host, sizeof host,
	    &port) : 0;
	if (got == 1) {
		if (host[strlen(host) - 1] == '.')
			host[strlen(host) - 1] = '\0';
		d->host = xstrdup(host);
		d->port = port;
		d->tls = tls;
		d->user = xstrdup(address);
		d->source = xprintf("the DNS SRV record %s%s", name,
		    in_domain(d->host, domain) ? "" : " (it points outside the "
		    "domain, and DNS answers are not authenticated: make sure "
		    "this is your provider's server)");
	} else
		*note = xprintf("%s: %s", name, got < 0 ? "malformed answer" :
		    n > 0 ? "no record" : dns_why(herr));
	free(name);
	return got == 1;
}

bool
discover_from_srv(const char *address, const char *domain,
    struct discovery *d, char **note)
{
	const char	*env = getenv("POPBRIDGE_SRV");
	char		*n1 = NULL, *n2 = NULL;

	if (env != NULL && strcmp(env, "0") == 0) {
		*note = xstrdup("skipped, POPBRIDGE_SRV=0");
		return false;
	}
	if (srv_query("_pop3s._tcp", domain, TLS_IMPLICIT, address, d, &n1))
		return true;
	if (srv_query("_pop3._tcp", domain, TLS_STARTTLS, address, d, &n2)) {
		free(n1);
		return true;
	}
	*note = xprintf("%s; %s", n1, n2);
	free(n1);
	free(n2);
	return false;
}
