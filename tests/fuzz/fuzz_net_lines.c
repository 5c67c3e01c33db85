// link: bridge/net_io.c bridge/imap_parse.c bridge/throttle.c
// pkg: libcurl openssl
// max_len: 20000
/*
 * What net.c reads of the login: the server lines libcurl saw (greeting,
 * CAPA or CAPABILITY, the login's replies) and the certificate's names.
 * net.c is included whole (below), so its static readers are called as
 * they are: header_cb (through conn_memory, a line at a time, as libcurl
 * calls it), greeting_ok, login_line_next, offers_plain,
 * conn_offers_starttls, last_server_line, server_line, cert_dns_names and
 * conn_error, which turns a failed login into the cause a user reads.
 *
 * Input: byte 0: bit 0 IMAP (else POP3), bit 1 OAuth2, bits 2-3 the TLS
 * mode, bits 4-7 which libcurl error the login ended with; byte 1: which
 * of libcurl's error texts; byte 2: the certificate's subject length s;
 * then s bytes of subject CN, one byte n, n bytes of subjectAltName
 * entries (each a length byte and the name's bytes: any bytes, NUL and
 * control bytes included, as a certificate can hold them), then the
 * login transcript.
 *
 * Checks: a first line that is no greeting fails (and only then), with a
 * printable cause; the login lines are the transcript, cut at 16383 bytes;
 * login_line_next walks them exactly as a reference splitter does (LF
 * ends a line, one CR before it dropped, nothing read past the NUL);
 * offers_plain, conn_offers_starttls, last_server_line and server_line
 * agree with references; the certificate's DNS names come out cleaned,
 * joined and bounded exactly as a reference does it, and its subject as
 * X509_NAME_oneline gives it (what `check` prints) is printable; every
 * cause conn_error gives is printable, bounded, of a class the caller
 * knows, RES_AUTH only for a refused login, and holds no password.
 */
#include "../../bridge/net.c"

#include <openssl/x509v3.h>

#include "fuzz.h"

#define PASSWORD	"Pw-fuzz-7f3a"

static const CURLcode codes[16] = {
	CURLE_LOGIN_DENIED, CURLE_USE_SSL_FAILED,
	CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
	CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_OPERATION_TIMEDOUT,
	CURLE_SSL_CONNECT_ERROR, CURLE_COULDNT_CONNECT,
	CURLE_WEIRD_SERVER_REPLY, CURLE_LOGIN_DENIED, CURLE_RECV_ERROR,
	CURLE_GOT_NOTHING, CURLE_PEER_FAILED_VERIFICATION,
	CURLE_COULDNT_RESOLVE_HOST, CURLE_SEND_ERROR, CURLE_WRITE_ERROR,
};

/* What libcurl and OpenSSL write into the error buffer. */
static const char *const errbufs[8] = {
	"",
	"SSL: no alternative certificate subject name matches target host "
	    "name 'pop.example.net'",
	"SSL certificate problem: certificate has expired",
	"SSL certificate problem: self-signed certificate",
	"SSL certificate problem: unable to get local issuer certificate",
	"error:0A00010B:SSL routines::wrong version number",
	"SSL: certificate subject name 'mail.example.org' does not match "
	    "target host name 'pop.example.net'",
	"Login denied",
};

/* login_line_next by the book: LF ends a line, one CR before it goes. */
static void
check_lines(const char *lines)
{
	const char	*pos = lines, *s, *ref = lines, *e;
	size_t		 n, rn;

	for (;;) {
		s = login_line_next(&pos, &n);
		if (*ref == '\0') {
			FUZZ_CHECK(s == NULL, "a line after the end");
			return;
		}
		e = strchr(ref, '\n');
		rn = e != NULL ? (size_t)(e - ref) : strlen(ref);
		FUZZ_CHECK(s == ref, "line at %td, reference at %td",
		    s - lines, ref - lines);
		if (rn > 0 && ref[rn - 1] == '\r')
			rn--;
		FUZZ_CHECK(n == rn && memchr(s, '\n', n) == NULL, "line at "
		    "%td: %zu bytes, reference %zu", s - lines, n, rn);
		ref = e != NULL ? e + 1 : ref + strlen(ref);
		FUZZ_CHECK(pos == ref, "next line at %td, reference %td",
		    pos - lines, ref - lines);
	}
}

/* Words starting in caps as imap_has_cap reads them (fuzz_imap). */
static bool
ref_has_cap(const char *caps, const char *name)
{
	size_t	 n = strlen(name), i;

	for (i = 0; caps[i] != '\0'; i++)
		if (caps[i] != ' ' && (i == 0 || caps[i - 1] == ' ') &&
		    strncasecmp(caps + i, name, n) == 0 &&
		    (caps[i + n] == ' ' || caps[i + n] == '\0' ||
		    caps[i + n] == ']'))
			return true;
	return false;
}

static void
check_offers(struct conn *c, bool imap)
{
	const char	*s = c->login_lines, *e;
	char		 line[512];
	size_t		 n;
	bool		 plain = false, stls = false;

	for (; *s != '\0'; s = *e == '\n' ? e + 1 : e) {
		e = s + strcspn(s, "\n");
		n = (size_t)(e - s);
		if (n > 0 && s[n - 1] == '\r')
			n--;
		snprintf(line, sizeof line, "%.*s", (int)n, s);
		if (imap ? strcasestr(line, "CAPABILITY") != NULL &&
		    strcasestr(line, "AUTH=PLAIN") != NULL : n >= 4 &&
		    strncmp(s, "SASL", 4) == 0 && ref_has_cap(line, "PLAIN"))
			plain = true;
		if (strcasecmp(line, "STLS") == 0 || (strcasestr(line,
		    "CAPABILITY") != NULL && ref_has_cap(line, "STARTTLS")))
			stls = true;
	}
	FUZZ_CHECK(offers_plain(c->login_lines, imap) == plain, "PLAIN");
	FUZZ_CHECK(conn_offers_starttls(c) == stls, "STARTTLS");
}

static void
check_server_lines(struct conn *c)
{
	char	 out[300], want[300];
	size_t	 end = c->login_len, start;
	const char *p;
	bool	 found;

	last_server_line(c, out, sizeof out);
	while (end > 0 && strchr("\r\n", c->login_lines[end - 1]) != NULL &&
	    c->login_lines[end - 1] != '\0')
		end--;
	for (start = end; start > 0 && c->login_lines[start - 1] != '\n';
	    start--)
		;
	log_clean(want, sizeof want, c->login_lines + start, end - start);
	FUZZ_CHECK(strcmp(out, want) == 0 && fuzz_printable(out, strlen(out)),
	    "last line \"%s\", reference \"%s\"", out, want);

	/* The first line that starts with "* BYE " (any case). */
	found = server_line(c, "* BYE ", out, sizeof out);
	want[0] = '\0';
	for (p = c->login_lines; *p != '\0'; p += strcspn(p, "\n"),
	    p += *p == '\n') {
		size_t n = strcspn(p, "\n");

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= 6 && strncasecmp(p, "* BYE ", 6) == 0) {
			log_clean(want, sizeof want, p + 6, n - 6);
			break;
		}
	}
	FUZZ_CHECK(found == (*p != '\0') && (!found || (strcmp(out, want) ==
	    0 && fuzz_printable(out, strlen(out)))), "BYE \"%s\", reference "
	    "\"%s\"", found ? out : "(none)", want);
}

/* A certificate whose subject CN and DNS names are the input's bytes. */
static X509 *
make_cert(const uint8_t *cn, size_t cnlen, const uint8_t *names,
    size_t nameslen)
{
	X509		*x = X509_new();
	GENERAL_NAMES	*gens = sk_GENERAL_NAME_new_null();
	size_t		 i, k;

	X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName,
	    V_ASN1_UTF8STRING, cn, (int)cnlen, -1, 0);
	for (i = 0; i < nameslen; i += k) {
		GENERAL_NAME	*gn = GENERAL_NAME_new();
		ASN1_IA5STRING	*ia5 = ASN1_IA5STRING_new();

		k = names[i++];
		if (k > nameslen - i)
			k = nameslen - i;
		ASN1_STRING_set(ia5, names + i, (int)k);
		/* Now and then an e-mail name, which is no DNS name. */
		GENERAL_NAME_set0_value(gn, k > 0 && names[i] == '@' ?
		    GEN_EMAIL : GEN_DNS, ia5);
		sk_GENERAL_NAME_push(gens, gn);
	}
	if (sk_GENERAL_NAME_num(gens) > 0)
		X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0);
	GENERAL_NAMES_free(gens);
	return x;
}

static void
check_cert(struct conn *c, X509 *x)
{
	GENERAL_NAMES	*gens;
	char		 want[sizeof c->cert_names], clean[128];
	size_t		 len = 0;
	int		 i;

	cert_dns_names(x, c->cert_names, sizeof c->cert_names);
	want[0] = '\0';
	if ((gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL)) !=
	    NULL) {
		for (i = 0; i < sk_GENERAL_NAME_num(gens) && len + 4 <
		    sizeof want; i++) {
			const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);

			if (gn->type != GEN_DNS)
				continue;
			log_clean(clean, sizeof clean, (const char *)
			    ASN1_STRING_get0_data(gn->d.dNSName), (size_t)
			    ASN1_STRING_length(gn->d.dNSName));
			len += (size_t)snprintf(want + len, sizeof want - len,
			    "%s%s", len > 0 ? ", " : "", clean);
		}
		GENERAL_NAMES_free(gens);
	}
	FUZZ_CHECK(strlen(c->cert_names) < sizeof c->cert_names &&
	    fuzz_printable(c->cert_names, strlen(c->cert_names)) &&
	    strcmp(c->cert_names, want) == 0, "names \"%s\", reference \"%s\"",
	    c->cert_names, want);
	/* The subject, as tls_info_cb keeps it for `check`. */
	X509_NAME_oneline(X509_get_subject_name(x), c->cert_subject,
	    sizeof c->cert_subject);
	FUZZ_CHECK(fuzz_printable(c->cert_subject, strlen(c->cert_subject)),
	    "subject \"%s\"", c->cert_subject);
}

static void
check_error(struct conn *c, CURLcode rc, const struct endpoint *ep,
    const uint8_t *server, size_t serverlen)
{
	char		*cause = NULL;
	enum result	 r;

	r = conn_error(c, rc, ep, &cause);
	FUZZ_CHECK(r == RES_TEMP || r == RES_CONFIG || (r == RES_AUTH &&
	    rc == CURLE_LOGIN_DENIED), "conn_error %d: result %d (%s)",
	    (int)rc, (int)r, cause);
	FUZZ_CHECK(cause != NULL && strlen(cause) < 2048 &&
	    fuzz_printable(cause, strlen(cause)), "cause \"%s\"", cause);
	/*
	 * The password never reaches a cause, unless the server sent those
	 * bytes itself: in its login lines or in its certificate's names,
	 * which the cause quotes (both are the server's to choose).
	 */
	FUZZ_CHECK(strstr(cause, PASSWORD) == NULL || memmem(server, serverlen,
	    PASSWORD, strlen(PASSWORD)) != NULL, "the password in \"%s\"",
	    cause);
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct endpoint	 ep;
	struct conn	*c;
	X509		*x;
	const uint8_t	*cn, *names, *server;
	size_t		 serverlen;
	char		*cause = NULL, *lines;
	const char	*proto, *login;
	size_t		 cnlen, nameslen, loginlen, n1;
	unsigned	 b0, b1;
	bool		 imap, greets;
	enum result	 r;

	if (len < 4)
		return 0;
	/* All that the server chose: certificate names and login lines. */
	server = data + 3;
	serverlen = len - 3;
	b0 = data[0];
	b1 = data[1];
	imap = b0 & 1;
	proto = imap ? "imap" : "pop3";
	memset(&ep, 0, sizeof ep);
	ep.imap = imap;
	ep.host = (char *)"pop.example.net";
	ep.port = imap ? 143 : 110;
	ep.user = (char *)"max@example.net";
	ep.password = (char *)PASSWORD;
	ep.oauth2 = (b0 & 2) != 0;
	ep.tls = (enum tls_mode)(((b0 >> 2) & 3) % 3);
	cnlen = data[2] < len - 3 ? data[2] : len - 3;
	cn = data + 3;
	data += 3 + cnlen;
	len -= 3 + cnlen;
	nameslen = len > 0 ? data[0] : 0;
	if (nameslen > (len > 0 ? len - 1 : 0))
		nameslen = len > 0 ? len - 1 : 0;
	names = data + 1;
	login = (const char *)(len > 0 ? data + 1 + nameslen : data);
	loginlen = len > 0 ? len - 1 - nameslen : 0;

	r = conn_memory(proto, login, loginlen, "", 0, NULL, &c, &cause);
	/* greeting_ok on the first line, as header_cb is called with it. */
	n1 = memchr(login, '\n', loginlen) != NULL ? (size_t)((const char *)
	    memchr(login, '\n', loginlen) - login) + 1 : loginlen;
	greets = loginlen == 0 || greeting_ok(proto, login, n1);
	/* The reference greeting: +OK / -ERR, or * OK / * PREAUTH / * BYE. */
	FUZZ_CHECK(greets == (loginlen == 0 || (imap ? (loginlen >= 4 &&
	    strncasecmp(login, "* OK", 4) == 0) || (loginlen >= 9 &&
	    strncasecmp(login, "* PREAUTH", 9) == 0) || (loginlen >= 5 &&
	    strncasecmp(login, "* BYE", 5) == 0) : (loginlen >= 3 &&
	    memcmp(login, "+OK", 3) == 0) || (loginlen >= 4 &&
	    memcmp(login, "-ERR", 4) == 0))), "greeting_ok");
	FUZZ_CHECK((r == RES_OK) == greets, "conn_memory %d, greets %d",
	    (int)r, greets);
	if (r != RES_OK) {
		FUZZ_CHECK(c == NULL && cause != NULL && strstr(cause,
		    "does not greet") != NULL && fuzz_printable(cause,
		    strlen(cause)), "bad greeting: %s", cause);
		free(cause);
		return 0;
	}
	lines = fuzz_str(login, loginlen < LOGIN_LINES_MAX - 1 ? loginlen :
	    LOGIN_LINES_MAX - 1);
	FUZZ_CHECK(strcmp(c->login_lines, lines) == 0 && c->login_len ==
	    (loginlen < LOGIN_LINES_MAX - 1 ? loginlen : LOGIN_LINES_MAX - 1),
	    "login lines");
	free(lines);
	check_lines(c->login_lines);
	check_offers(c, imap);
	check_server_lines(c);

	x = make_cert(cn, cnlen, names, nameslen);
	check_cert(c, x);
	X509_free(x);

	snprintf(c->errbuf, sizeof c->errbuf, "%s", errbufs[b1 & 7]);
	check_error(c, codes[(b0 >> 4) & 15], &ep, server, serverlen);
	/* A bad greeting as conn_memory saw none: conn_error's first case. */
	c->bad_greeting = true;
	check_error(c, CURLE_WRITE_ERROR, &ep, server, serverlen);
	conn_close(c);
	return 0;
}
