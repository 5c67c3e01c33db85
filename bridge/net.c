/*
 * The network side shared by POP3 and IMAP.  libcurl does what it does
 * well -- TCP, TLS or STARTTLS, certificate checks, SASL login -- in
 * CONNECT_ONLY mode, and then hands us the logged-in connection; popbridge
 * speaks the protocol itself over curl_easy_send/recv (the README's
 * "libcurl 7.88, measured" says why: curl's own transfers mark every
 * upload \Seen, cannot set INTERNALDATE and accept truncated RETRs).
 *
 * Secrets: the caller resolves the password or token (config_secret, as
 * late as it can: a token command's token is fresh for each login) and
 * hands it to conn_open, which gives it to libcurl and nothing else, and
 * has libcurl forget it once the login is over; the caller wipes its own
 * copy.  This file knows sockets, TLS and SASL, not where secrets live.
 * curl's verbose output is never shown as is; the trace callback below
 * drops every line the client sends during login, since SASL lines are
 * base64 of the password.
 *
 * This file opens (and closes) the connection and keeps what the login
 * told: the server's lines, the TLS facts for `check`, a failure as the
 * cause a user reads.  Bytes over the open connection are net_io.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "bridge.h"
#include "net_int.h"

static bool	ssl_is_openssl;
static int	ssl_ex_index = -1;	/* our slot in curl's SSL_CTX */

/*
 * libcurl keeps its own copies of the password or token and frees them
 * without wiping them.  Its memory goes through these: every block it
 * frees is zeroed first, so no secret is left in freed memory.
 */
static void
zfree(void *p)
{
	if (p != NULL) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

static void *
zrealloc(void *p, size_t n)
{
	void	*q;
	size_t	 old;

	if (p == NULL)
		return malloc(n);
	if ((q = malloc(n == 0 ? 1 : n)) == NULL)
		return NULL;
	old = malloc_usable_size(p);
	memcpy(q, p, old < n ? old : n);
	zfree(p);
	return q;
}

void
net_init(void)
{
	const curl_version_info_data *vi;

	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, zfree, zrealloc,
	    strdup, calloc) != CURLE_OK)
		fatal("libcurl cannot be initialised");
	vi = curl_version_info(CURLVERSION_NOW);
	ssl_is_openssl = vi->ssl_version != NULL &&
	    strstr(vi->ssl_version, "OpenSSL") != NULL;
	if (ssl_is_openssl)
		ssl_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
		    NULL);
}

void
net_cleanup(void)
{
	curl_global_cleanup();
}

static bool
greeting_ok(const char *proto, const char *line, size_t len)
{
	if (strcmp(proto, "pop3") == 0)
		return (len >= 3 && strncmp(line, "+OK", 3) == 0) ||
		    (len >= 4 && strncmp(line, "-ERR", 4) == 0);
	return (len >= 4 && strncasecmp(line, "* OK", 4) == 0) ||
	    (len >= 9 && strncasecmp(line, "* PREAUTH", 9) == 0) ||
	    (len >= 5 && strncasecmp(line, "* BYE", 5) == 0);
}

/* Server lines seen while curl logs in: the greeting and capabilities. */
static size_t
header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct conn	*c = arg;
	size_t		 len = size * n, take;

	/*
	 * A first line that is no greeting would leave curl waiting for one
	 * until its timeout; stop at once instead (returning less than len
	 * makes curl give up).
	 */
	if (c->login_len == 0 && !greeting_ok(c->proto, data, len)) {
		c->bad_greeting = true;
		log_clean(c->login_lines, sizeof c->login_lines, data, len);
		c->login_len = strlen(c->login_lines);
		return 0;
	}
	take = len;
	if (take > LOGIN_LINES_MAX - 1 - c->login_len)
		take = LOGIN_LINES_MAX - 1 - c->login_len;
	memcpy(c->login_lines + c->login_len, data, take);
	c->login_len += take;
	c->login_lines[c->login_len] = '\0';
	return len;
}

/*
 * The -vv trace of what curl does.  Only curl's own notes and the server's
 * lines are shown; everything the client sends during login is hidden,
 * because SASL PLAIN, LOGIN and XOAUTH2 lines are base64 of the secret.
 */
static int
debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
	struct conn	*c = arg;
	char		 clean[512];

	(void)h;
	switch (type) {
	case CURLINFO_TEXT:
		log_trace("%s: %s: * %s", c->account, c->proto,
		    log_clean(clean, sizeof clean, data, size));
		break;
	case CURLINFO_HEADER_IN:
		log_trace("%s: %s: S: %s", c->account, c->proto,
		    log_clean(clean, sizeof clean, data, size));
		break;
	case CURLINFO_HEADER_OUT:
		log_trace("%s: %s: C: (login exchange, not shown)",
		    c->account, c->proto);
		break;
	default:
		break;
	}
	return 0;
}

/* The last server line curl saw: usually the reason for a refusal. */
static void
last_server_line(struct conn *c, char *out, size_t outsz)
{
	size_t	 end = c->login_len, start;

	while (end > 0 && (c->login_lines[end - 1] == '\n' ||
	    c->login_lines[end - 1] == '\r'))
		end--;
	start = end;
	while (start > 0 && c->login_lines[start - 1] != '\n')
		start--;
	log_clean(out, outsz, c->login_lines + start, end - start);
}

/*
 * The next line of a login transcript at *pos, without its CR LF, in
 * *len; NULL at the end.  *pos moves past it.
 */
const char *
login_line_next(const char **pos, size_t *len)
{
	const char	*s = *pos, *e;

	if (*s == '\0')
		return NULL;
	if ((e = strchr(s, '\n')) == NULL)
		e = s + strlen(s);
	*pos = *e == '\0' ? e : e + 1;
	*len = (size_t)(e - s);
	if (*len > 0 && s[*len - 1] == '\r')
		(*len)--;
	return s;
}

/*
 * The first server line curl saw that begins with prefix (any case), with
 * the prefix cut off; false if there is none.  An IMAP server may say
 * "* BYE" in its greeting or in the middle of the login, and curl then
 * reports only a weird reply or a lost connection, not the server's words.
 */
static bool
server_line(struct conn *c, const char *prefix, char *out, size_t outsz)
{
	const char	*pos = c->login_lines, *s;
	size_t		 n = strlen(prefix), len;

	while ((s = login_line_next(&pos, &len)) != NULL)
		if (len >= n && strncasecmp(s, prefix, n) == 0) {
			log_clean(out, outsz, s + n, len - n);
			return true;
		}
	return false;
}

/*
 * TLS facts for `check`.  With CONNECT_ONLY, libcurl 7.88 no longer hands
 * out the SSL pointer once the login is done (CURLINFO_TLS_SSL_PTR gives
 * NULL internals), so they are caught when the handshake finishes, through
 * an info callback on the SSL_CTX that curl lets us adjust.
 */
/* The certificate's DNS names (subjectAltName), for a mismatch message. */
static void
cert_dns_names(X509 *cert, char *out, size_t outsz)
{
	GENERAL_NAMES	*names;
	int		 i, n;
	size_t		 len = 0;

	out[0] = '\0';
	if ((names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
	    NULL)) == NULL)
		return;
	n = sk_GENERAL_NAME_num(names);
	for (i = 0; i < n && len + 4 < outsz; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		const unsigned char *d;
		char clean[128];
		int dl;

		if (gn->type != GEN_DNS)
			continue;
		d = ASN1_STRING_get0_data(gn->d.dNSName);
		dl = ASN1_STRING_length(gn->d.dNSName);
		log_clean(clean, sizeof clean, (const char *)d, (size_t)dl);
		len += (size_t)snprintf(out + len, outsz - len, "%s%s",
		    len > 0 ? ", " : "", clean);
	}
	if (len >= outsz)
		out[outsz - 1] = '\0';
	GENERAL_NAMES_free(names);
}

static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
	struct conn	*c;
	X509		*cert;

	(void)ret;
	if ((where & SSL_CB_HANDSHAKE_DONE) == 0 ||
	    (c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ssl_ex_index)) ==
	    NULL)
		return;
	c->ssl = (SSL *)ssl;
	snprintf(c->tls_version, sizeof c->tls_version, "%s",
	    SSL_get_version(ssl));
	if ((cert = SSL_get1_peer_certificate(ssl)) != NULL) {
		X509_NAME_oneline(X509_get_subject_name(cert), c->cert_subject,
		    sizeof c->cert_subject);
		cert_dns_names(cert, c->cert_names, sizeof c->cert_names);
		X509_free(cert);
	}
}

static CURLcode
ssl_ctx_cb(CURL *h, void *sslctx, void *arg)
{
	(void)h;
	if (ssl_ex_index != -1) {
		SSL_CTX_set_ex_data(sslctx, ssl_ex_index, arg);
		SSL_CTX_set_info_callback(sslctx, tls_info_cb);
	}
	return CURLE_OK;
}

/* "AUTH=..." for CURLOPT_LOGIN_OPTIONS, or NULL for curl's own choice. */
static const char *
login_options(const struct endpoint *ep, bool fallback)
{
	if (ep->auth == NULL || strcmp(ep->auth, "auto") == 0)
		return fallback ? NULL : "AUTH=PLAIN";
	if (strcmp(ep->auth, "plain") == 0)
		return "AUTH=PLAIN";
	if (strcmp(ep->auth, "login") == 0)
		return "AUTH=LOGIN";
	if (strcmp(ep->auth, "xoauth2") == 0)
		return "AUTH=XOAUTH2";
	if (strcmp(ep->auth, "oauthbearer") == 0)
		return "AUTH=OAUTHBEARER";
	return NULL;			/* "any" */
}

/* What to do about a certificate curl refused, from OpenSSL's words. */
static const char *
cert_hint(const char *err)
{
	if (strcasestr(err, "expired") != NULL)
		return "the server's certificate has expired: it must be "
		    "renewed on the server";
	if (strcasestr(err, "not yet valid") != NULL)
		return "the certificate is not valid yet: check this machine's "
		    "clock";
	if (strcasestr(err, "self-signed") != NULL ||
	    strcasestr(err, "self signed") != NULL ||
	    strcasestr(err, "local issuer") != NULL ||
	    strcasestr(err, "unknown ca") != NULL)
		return "it is not signed by a CA this machine trusts: set "
		    "ca_file to the CA that signed it (for a self-signed "
		    "certificate, to the certificate itself)";
	return "set ca_file to the CA that signed it";
}

/*
 * A server that turns the connection away says why: an IMAP BYE (in the
 * greeting or during the login: "* BYE [UNAVAILABLE] Too many
 * connections, try again in 30 seconds"), a POP3 greeting of -ERR.  curl
 * only says it got a weird reply; the server's words go into the cause,
 * and a "slow down" with its hint is noted for the batch (throttle.c).  A
 * BYE beside a
 * refused login counts only if it says "not now": a wrong password stays
 * a refused login.  true with *r and the cause when the server said so.
 */
static bool
server_refused(struct conn *c, CURLcode rc, const struct endpoint *ep,
    char **cause, enum result *r)
{
	char	 text[300];

	if (ep->imap && server_line(c, "* BYE ", text, sizeof text) &&
	    (rc != CURLE_LOGIN_DENIED || throttle_login(text) == RES_TEMP)) {
		*r = fail(cause, RES_TEMP, "imap: %s: the server ended the "
		    "session: %s", c->host, text);
		throttle_heard(text, true, cause);
		return true;
	}
	if (!ep->imap && strncmp(c->login_lines, "-ERR", 4) == 0 &&
	    server_line(c, "-ERR", text, sizeof text)) {
		*r = fail(cause, RES_TEMP, "pop3: %s: the server turned the "
		    "connection away: %s", c->host, text[0] == ' ' ? text + 1 :
		    text);
		throttle_heard(text, false, cause);
		return true;
	}
	return false;
}

/* A refused login, with the server's last line: "not now", or no. */
static enum result
login_refused(struct conn *c, const struct endpoint *ep, char *line,
    size_t linesz, char **cause)
{
	struct throttle	 t;
	enum result	 r;

	/*
	 * RFC 2449 / 3206 / 5530 response codes and words that say "not
	 * now", not "wrong password" (Cyrus 3.6 with popminpoll: -ERR
	 * [LOGIN-DELAY]; providers: NO [LIMIT], "too many connections").
	 * Such a refusal is a "slow down" even without the words for it
	 * ("temporary failure").
	 */
	if (throttle_login(line) == RES_TEMP) {
		r = fail(cause, RES_TEMP, "%s: %s cannot take the login for "
		    "%s now: %s", c->proto, c->host, ep->user, line);
		throttle_read(line, ep->imap, &t);
		t.throttled = true;
		throttle_note(&t, cause);
		return r;
	}
	/* A SASL error challenge ("+ base64") says nothing readable. */
	if (line[0] == '+')
		snprintf(line, linesz, "%s refused",
		    ep->oauth2 ? "the token was" : "the credentials were");
	return fail(cause, RES_AUTH, "%s: %s refused the login for %s%s%s",
	    c->proto, c->host, ep->user, line[0] != '\0' ? ": " : "", line);
}

/* curl's own words, where nothing more useful is known. */
static enum result
curl_failed(struct conn *c, CURLcode rc, char **cause)
{
	return fail(cause, RES_TEMP, "%s: %s: %s%s%s", c->proto, c->host,
	    curl_easy_strerror(rc), c->errbuf[0] != '\0' ? ": " : "",
	    c->errbuf);
}

/* TLS went wrong: no STARTTLS, a certificate or key not accepted, the
 * CA file, plaintext where TLS was expected. */
static enum result
tls_refused(struct conn *c, CURLcode rc, const struct endpoint *ep,
    char **cause)
{
	switch (rc) {
	case CURLE_USE_SSL_FAILED:
		/* A server that lacks STARTTLS will not grow it: the config
		 * must change. */
		return fail(cause, RES_CONFIG, "%s: %s does not offer STARTTLS; "
		    "no credentials were sent (use %ss:// if it offers TLS "
		    "on its own port, or tls = \"none\" to allow plaintext)",
		    c->proto, c->host, c->proto);
	case CURLE_PEER_FAILED_VERIFICATION:
		/* The host name check comes after the handshake, so the
		 * certificate's names are known then. */
		if (strcasestr(c->errbuf, "subject name") != NULL ||
		    strcasestr(c->errbuf, "no alternative") != NULL ||
		    strcasestr(c->errbuf, "does not match") != NULL)
			return fail(cause, RES_TEMP, "%s: the TLS certificate "
			    "of %s is for another host name%s%s%s: use a name it is "
			    "for in the url (or fix the server's certificate)",
			    c->proto, c->host, c->cert_names[0] != '\0' ?
			    " (" : "", c->cert_names, c->cert_names[0] !=
			    '\0' ? ")" : "");
		return fail(cause, RES_TEMP, "%s: TLS certificate of %s not "
		    "accepted: %s (%s)", c->proto, c->host, c->errbuf[0] !=
		    '\0' ? c->errbuf : curl_easy_strerror(rc),
		    cert_hint(c->errbuf));
	case CURLE_SSL_CACERT_BADFILE:
		return fail(cause, RES_CONFIG, "%s: ca_file %s cannot be read "
		    "as a PEM file of CA certificates", c->proto,
		    ep->ca_file != NULL ? ep->ca_file : "(none)");
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return fail(cause, RES_TEMP, "%s: the public key of %s does not "
		    "match \"pin\" (the server has a new key, or this is not "
		    "the server you pinned; check, then update the pin)",
		    c->proto, c->host);
	default:
		/* OpenSSL took the server's plaintext greeting for a record. */
		if (rc == CURLE_SSL_CONNECT_ERROR &&
		    strcasestr(c->errbuf, "wrong version number") != NULL)
			return fail(cause, RES_CONFIG, "%s: %s:%d answers in "
			    "plaintext, not TLS: use %s:// (STARTTLS) for that "
			    "port, or the server's TLS port with %ss://",
			    c->proto, c->host, ep->port, c->proto, c->proto);
		return curl_failed(c, rc, cause);
	}
}

/* A failed login (libcurl's rc) as the cause a user reads. */
static enum result
conn_error(struct conn *c, CURLcode rc, const struct endpoint *ep,
    char **cause)
{
	char		 line[300];
	enum result	 r;

	last_server_line(c, line, sizeof line);
	if (c->bad_greeting) {
		r = fail(cause, RES_TEMP, "%s: %s does not greet as a %s "
		    "server: \"%s\"", c->proto, c->host, ep->imap ? "IMAP" :
		    "POP3", line);
		throttle_heard(line, ep->imap, cause);
		return r;
	}
	if (server_refused(c, rc, ep, cause, &r))
		return r;
	switch (rc) {
	case CURLE_LOGIN_DENIED:
		return login_refused(c, ep, line, sizeof line, cause);
	case CURLE_USE_SSL_FAILED:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CONNECT_ERROR:
		return tls_refused(c, rc, ep, cause);
	case CURLE_OPERATION_TIMEDOUT:
		/* Silence from the first byte: a port that waits for a TLS
		 * handshake says nothing to a plaintext client. */
		if (c->login_len == 0 && ep->tls != TLS_IMPLICIT)
			return fail(cause, RES_TEMP, "%s: %s:%d: timed out after "
			    "%ld s without a greeting (if that port speaks TLS "
			    "from the first byte, as 995 and 993 do, use %ss://)",
			    c->proto, c->host, ep->port, c->timeout, c->proto);
		return fail(cause, RES_TEMP, "%s: %s: timed out after %ld s",
		    c->proto, c->host, c->timeout);
	default:
		return curl_failed(c, rc, cause);
	}
}

/* Who logs in, and how: the user, the password or token, the mechanism. */
static void
login_credentials(struct conn *c, const struct endpoint *ep,
    const char *secret, bool fallback)
{
	const char	*opts;

	curl_easy_setopt(c->h, CURLOPT_USERNAME, ep->user);
	/*
	 * A token goes as a bearer, with the mechanism named (with a password
	 * too, curl would pick another).  SASL-IR stays off: Microsoft's POP3
	 * wants the two-step AUTH XOAUTH2 exchange.
	 */
	if (ep->oauth2)
		curl_easy_setopt(c->h, CURLOPT_XOAUTH2_BEARER, secret);
	else
		curl_easy_setopt(c->h, CURLOPT_PASSWORD, secret);
	/* IMAP (RFC 4959) takes the first SASL response with AUTHENTICATE:
	 * one round trip less.  Not for POP3: Microsoft's refuses it. */
	if (ep->imap)
		curl_easy_setopt(c->h, CURLOPT_SASL_IR, 1L);
	if ((opts = login_options(ep, fallback)) != NULL)
		curl_easy_setopt(c->h, CURLOPT_LOGIN_OPTIONS, opts);
}

/* The way there: TLS and its checks, the proxy, the timeouts. */
static void
login_transport(struct conn *c, const struct endpoint *ep)
{
	double	left;

	if (ep->pin != NULL)
		curl_easy_setopt(c->h, CURLOPT_PINNEDPUBLICKEY, ep->pin);
	/* Never CURLUSESSL_TRY: it logs in in clear when STARTTLS is absent. */
	curl_easy_setopt(c->h, CURLOPT_USE_SSL, ep->tls == TLS_NONE ?
	    (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL);
	curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ep->ca_file != NULL)
		curl_easy_setopt(c->h, CURLOPT_CAINFO, ep->ca_file);
	/*
	 * The config's proxy ("" for none), else libcurl's from the
	 * environment (ALL_PROXY ...).  POP3 and IMAP go through an HTTP
	 * proxy as a CONNECT tunnel, whose reply is no server line.
	 */
	if (ep->proxy != NULL)
		curl_easy_setopt(c->h, CURLOPT_PROXY, ep->proxy);
	curl_easy_setopt(c->h, CURLOPT_HTTPPROXYTUNNEL, 1L);
	curl_easy_setopt(c->h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, c->timeout);
	/* The whole login within the account's deadline too. */
	if ((left = net_deadline_left()) < NET_NO_DEADLINE)
		curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, left > 1 ?
		    (long)(left * 1000) : 1L);
	curl_easy_setopt(c->h, CURLOPT_SERVER_RESPONSE_TIMEOUT, c->timeout);
	if (ssl_is_openssl && ep->tls != TLS_NONE) {
		curl_easy_setopt(c->h, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
		curl_easy_setopt(c->h, CURLOPT_SSL_CTX_DATA, c);
	}
}

/*
 * A new easy handle for one login attempt, every option set: what
 * curl_easy_perform (or a multi handle) then runs.  curl keeps its own
 * copy of the secret until conn_performed.
 */
static void
conn_prepare(struct conn *c, const struct endpoint *ep, const char *secret,
    bool fallback)
{
	char		*url;
	const char	*scheme;

	if (ep->imap)
		scheme = ep->tls == TLS_IMPLICIT ? "imaps" : "imap";
	else
		scheme = ep->tls == TLS_IMPLICIT ? "pop3s" : "pop3";
	/* An IPv6 literal goes back into brackets. */
	url = xprintf(strchr(ep->host, ':') != NULL ? "%s://[%s]:%d/" :
	    "%s://%s:%d/", scheme, ep->host, ep->port);

	if (c->h != NULL)
		curl_easy_cleanup(c->h);
	if ((c->h = curl_easy_init()) == NULL)
		fatal("curl_easy_init failed");
	c->login_len = 0;
	c->login_lines[0] = '\0';
	c->bad_greeting = false;
	c->errbuf[0] = '\0';
	curl_easy_setopt(c->h, CURLOPT_URL, url);	/* curl copies it */
	free(url);
	curl_easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, scheme);
	curl_easy_setopt(c->h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
	login_credentials(c, ep, secret, fallback);
	login_transport(c, ep);
	curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
	if (log_enabled(LOG_LVL_TRACE)) {
		curl_easy_setopt(c->h, CURLOPT_DEBUGFUNCTION, debug_cb);
		curl_easy_setopt(c->h, CURLOPT_DEBUGDATA, c);
		curl_easy_setopt(c->h, CURLOPT_VERBOSE, 1L);
	}
	strcpy(c->tls_version, "none");
	c->cert_subject[0] = '\0';
	c->cert_names[0] = '\0';
}

/* The login attempt has run: curl forgets the secret at once. */
static void
conn_performed(struct conn *c)
{
	curl_easy_setopt(c->h, CURLOPT_PASSWORD, "");
	curl_easy_setopt(c->h, CURLOPT_XOAUTH2_BEARER, "");
	/* From here on the trace is popbridge's own, line by line. */
	curl_easy_setopt(c->h, CURLOPT_VERBOSE, 0L);
}

static CURLcode
conn_login(struct conn *c, const struct endpoint *ep, const char *secret,
    bool fallback)
{
	CURLcode	 rc;

	conn_prepare(c, ep, secret, fallback);
	rc = curl_easy_perform(c->h);
	conn_performed(c);
	return rc;
}

/*
 * Did the server announce SASL PLAIN (POP3 CAPA "SASL ... PLAIN", IMAP
 * "AUTH=PLAIN" in a capability list)?  Old POP3 servers know USER/PASS
 * only; Courier-IMAP 5.0 over imap:// without TLS lists no AUTH= at all
 * and takes LOGIN.
 */
static bool
offers_plain(const char *lines, bool imap)
{
	const char	*pos = lines, *s;
	char		 line[512];
	size_t		 n;

	while ((s = login_line_next(&pos, &n)) != NULL) {
		snprintf(line, sizeof line, "%.*s", (int)n, s);
		if (imap ? strcasestr(line, "CAPABILITY") != NULL &&
		    strcasestr(line, "AUTH=PLAIN") != NULL :
		    n >= 4 && strncmp(s, "SASL", 4) == 0 &&
		    imap_has_cap(line, "PLAIN"))
			return true;
	}
	return false;
}

/* Did the server offer STARTTLS (POP3 "STLS", IMAP "STARTTLS")? */
bool
conn_offers_starttls(struct conn *c)
{
	const char	*pos = c->login_lines, *s;
	char		 line[512];
	size_t		 n;

	while ((s = login_line_next(&pos, &n)) != NULL) {
		snprintf(line, sizeof line, "%.*s", (int)n, s);
		if (strcasecmp(line, "STLS") == 0 ||
		    (strcasestr(line, "CAPABILITY") != NULL &&
		    imap_has_cap(line, "STARTTLS")))
			return true;
	}
	return false;
}

static struct conn *
conn_new(const struct endpoint *ep, const char *account, long timeout)
{
	struct conn	*c;

	c = xcalloc(1, sizeof *c);
	c->proto = ep->imap ? "imap" : "pop3";
	c->host = xstrdup(ep->host);
	c->account = xstrdup(account);
	c->timeout = timeout;
	c->sock = CURL_SOCKET_BAD;
	return c;
}

/*
 * After the login: the connection ready for conn_read and conn_write, or
 * the failure as a user reads it (and the connection closed).
 */
static enum result
conn_finish(struct conn *c, CURLcode rc, const struct endpoint *ep,
    struct conn **cp, char **cause)
{
	curl_socket_t	 sock;
	enum result	 r;

	if (rc != CURLE_OK) {
		r = conn_error(c, rc, ep, cause);
		conn_close(c);
		return r;
	}
	if (curl_easy_getinfo(c->h, CURLINFO_ACTIVESOCKET, &sock) !=
	    CURLE_OK || sock == CURL_SOCKET_BAD) {
		conn_close(c);
		return fail(cause, RES_TEMP, "%s: %s: no connection after login",
		    ep->imap ? "imap" : "pop3", ep->host);
	}
	c->sock = sock;
	/*
	 * From here on only conn_fill reads, and it always reads before it
	 * waits: OpenSSL may now read what the socket holds rather than a
	 * record header and then its body (Dovecot's records are about
	 * 4 KB: two recv calls each otherwise).  Not during the login,
	 * where libcurl waits for the socket before it reads.
	 */
	if (c->ssl != NULL)
		SSL_set_read_ahead(c->ssl, 1);
	*cp = c;
	return RES_OK;
}

/*
 * Connect and log in with secret (the password, or the OAuth2 token for
 * xoauth2 and oauthbearer), which the caller resolved and wipes.
 */
enum result
conn_open(const struct endpoint *ep, const char *secret, const char *account,
    long timeout, struct conn **cp, char **cause)
{
	struct conn	*c;
	CURLcode	 rc;

	*cp = NULL;
	c = conn_new(ep, account, timeout);
	rc = conn_login(c, ep, secret, false);
	/*
	 * A server without SASL PLAIN (old POP3 servers know only
	 * USER/PASS; IMAP servers may take LOGIN only): with AUTH=PLAIN curl
	 * would give up, so let curl choose instead.
	 */
	if (rc == CURLE_LOGIN_DENIED && (ep->auth == NULL ||
	    strcmp(ep->auth, "auto") == 0) &&
	    !offers_plain(c->login_lines, ep->imap)) {
		log_debug("%s: %s: %s offers no SASL PLAIN; trying the "
		    "server's other methods", account, c->proto, c->host);
		rc = conn_login(c, ep, secret, true);
	}
	return conn_finish(c, rc, ep, cp, cause);
}


const char *
conn_login_lines(struct conn *c)
{
	return c->login_lines;
}

const char *
conn_tls_version(struct conn *c)
{
	return c->tls_version;
}

const char *
conn_cert_subject(struct conn *c)
{
	return c->cert_subject;
}

/*
 * A connection to a scripted server, for tests and fuzzing (tests/fuzz):
 * the login lines are handed over one line at a time as libcurl hands
 * them to header_cb (a first line that is no greeting fails as a login
 * would); then reads give in[0 .. inlen) and, at its end, "connection
 * closed".  The poll of conn_wait goes to /dev/null, which is always
 * ready.  in must outlive the connection.
 */
enum result
conn_memory(const char *proto, const char *login, size_t loginlen,
    const void *in, size_t inlen, const struct conn_memory_io *io,
    struct conn **cp, char **cause)
{
	struct conn	*c;
	struct endpoint	 ep;
	char		*copy;
	size_t		 at, n;
	enum result	 r;

	*cp = NULL;
	c = xcalloc(1, sizeof *c);
	c->proto = strcmp(proto, "imap") == 0 ? "imap" : "pop3";
	c->host = xstrdup("memory");
	c->account = xstrdup("memory");
	c->timeout = 1;
	c->memory = true;
	c->in = in;
	c->inlen = inlen;
	if (io != NULL)
		c->io = *io;
	strcpy(c->tls_version, "none");
	if ((c->sock = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		r = fail(cause, RES_TEMP, "/dev/null: %s", strerror(errno));
		conn_close(c);
		return r;
	}
	copy = xmalloc(loginlen + 1);
	memcpy(copy, login, loginlen);
	for (at = 0; at < loginlen; at += n) {
		const char *nl = memchr(copy + at, '\n', loginlen - at);

		n = nl != NULL ? (size_t)(nl - (copy + at)) + 1 : loginlen - at;
		if (header_cb(copy + at, 1, n, c) != n) {
			free(copy);
			memset(&ep, 0, sizeof ep);
			ep.imap = strcmp(c->proto, "imap") == 0;
			ep.host = c->host;
			ep.user = c->account;
			r = conn_error(c, CURLE_WRITE_ERROR, &ep, cause);
			conn_close(c);
			return r;
		}
	}
	free(copy);
	*cp = c;
	return RES_OK;
}

void
conn_close(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->memory && c->sock != CURL_SOCKET_BAD)
		close(c->sock);
	if (c->h != NULL)
		curl_easy_cleanup(c->h);
	free(c->host);
	free(c->account);
	free(c);
}
