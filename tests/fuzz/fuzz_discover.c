// link: bridge/discover.c bridge/discover_util.c bridge/discover_preset.c bridge/discover_autoconfig.c bridge/discover_http.c bridge/discover_srv.c bridge/file.c bridge/bounded.c
// pkg: libcurl libxml-2.0
// max_len: 16384
/*
 * discover.c's parsers of what `popbridge add` fetches: a provider's
 * autoconfig document (XML, from HTTPS or the ISPDB), a DNS SRV answer
 * (bytes off the network), and the preset file.  Input: byte 0 (bits 0-1:
 * which parser, bits 2-3: which address, bits 4-7 with byte 1: room for
 * the SRV target), then the document, the answer, or the file.
 *
 *	0  discover_parse_autoconfig on the bytes as a document
 *	1  discover_parse_srv on the bytes as a DNS message
 *	2  discover_parse_srv on a DNS answer built from the bytes: SRV
 *	   records with priorities, weights, ports and target names (some
 *	   compressed, some "."), which must give exactly the record a
 *	   reference picks (lowest priority, then highest weight, the first
 *	   of equals; port 0, ".", an invalid or too long name skipped)
 *	3  discover_parse_presets on the bytes as the preset file
 *
 * What comes out goes into a config file and a login, so: a host is a DNS
 * name (labels of 1-63 letters, digits and "-", 253 bytes at most), a
 * port 1-65535, a user name at most 255 bytes without control bytes or an
 * unexpanded placeholder, an IMAP URL one discover_parse_url takes; a
 * refusal has a cause and leaves nothing behind; an SRV target fits the
 * room given (an exact-size buffer) and nothing is read outside the
 * message.  No leaks.
 */
#include <arpa/nameser.h>

#include <ctype.h>

#include <libxml/parser.h>

#include "bridge.h"
#include "fuzz.h"

int	LLVMFuzzerInitialize(int *, char ***);

static const char *const addresses[4] = { "max@example.net",
	"anna.b+tag@mail.example.org", "x@a.example", "jo%EMAILDOMAIN%@example.com" };

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	xmlInitParser();
	return 0;
}

/* A DNS name as discover.c wants one (a single trailing dot is fine). */
static bool
ref_host(const char *h)
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
	return true;
}

static void
check_found(const struct discovery *d, const char *address)
{
	const char	*p;
	char		*h = NULL;
	int		 port;
	enum tls_mode	 tls;

	FUZZ_CHECK(d->host != NULL && ref_host(d->host), "host \"%s\"",
	    d->host != NULL ? d->host : "NULL");
	FUZZ_CHECK(d->port >= 1 && d->port <= 65535, "port %d", d->port);
	FUZZ_CHECK(d->tls == TLS_IMPLICIT || d->tls == TLS_STARTTLS ||
	    d->tls == TLS_NONE, "tls %d", (int)d->tls);
	FUZZ_CHECK(d->user != NULL && d->user[0] != '\0' &&
	    strlen(d->user) <= 255, "user");
	for (p = d->user; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f,
		    "a control byte in the user \"%s\"", d->user);
	/* Placeholders expanded, none left (the address may hold one). */
	FUZZ_CHECK(strstr(address, "%EMAIL") != NULL ||
	    strstr(d->user, "%EMAIL") == NULL, "user \"%s\"", d->user);
	if (d->imap != NULL) {
		FUZZ_CHECK(discover_parse_url(d->imap, true, &h, &port, &tls) &&
		    ref_host(h), "IMAP \"%s\"", d->imap);
		free(h);
	}
}

static void
do_autoconfig(const uint8_t *data, size_t len, const char *address)
{
	struct discovery d;
	char		*xml = fuzz_dup(data, len), *cause = NULL;
	enum result	 r;

	r = discover_parse_autoconfig(xml, len, address, &d, &cause);
	if (r == RES_OK) {
		FUZZ_CHECK(cause == NULL, "OK with a cause");
		check_found(&d, address);
		FUZZ_CHECK(d.source == NULL, "a source");
	} else {
		FUZZ_CHECK(r == RES_TEMP && cause != NULL && cause[0] != '\0' &&
		    d.host == NULL && d.user == NULL && d.imap == NULL,
		    "refused: %d %s", (int)r, cause != NULL ? cause : "NULL");
		FUZZ_CHECK(fuzz_printable(cause, strlen(cause)), "cause \"%s\"",
		    cause);
	}
	discover_free(&d);
	free(cause);
	free(xml);
}

/* discover_parse_srv on exactly these bytes, into exactly hostsz. */
static int
srv(const uint8_t *msg, size_t len, size_t hostsz, char **host, int *port)
{
	unsigned char	*m = (unsigned char *)fuzz_dup(msg, len);
	int		 got;

	*host = malloc(hostsz);
	memset(*host, 'Z', hostsz);
	*port = -1;
	got = discover_parse_srv(m, len, *host, hostsz, port);
	FUZZ_CHECK(got >= -1 && got <= 1, "discover_parse_srv %d", got);
	if (got == 1)
		FUZZ_CHECK(memchr(*host, '\0', hostsz) != NULL &&
		    ref_host(*host) && *port >= 1 && *port <= 65535,
		    "target \"%.*s\" port %d", (int)hostsz, *host, *port);
	free(m);
	return got;
}

static void
do_srv_raw(const uint8_t *data, size_t len, size_t hostsz)
{
	char	*host;
	int	 port;

	(void)srv(data, len, hostsz, &host, &port);
	free(host);
}

/* A DNS answer of SRV records from the input, and the one to pick. */
static void
do_srv_built(const uint8_t *data, size_t len, size_t hostsz)
{
	unsigned char	 msg[4096];
	char		 names[16][300], *host;
	unsigned int	 prio[16], weight[16], sport[16];
	size_t		 o, i, k, nrec, l, nl;
	int		 port, got, best = -1, want;
	unsigned int	 rcode;

	if (len < 2)
		return;
	rcode = data[0] % 5 == 0 ? data[0] % 6 : 0;
	nrec = data[1] % 9;
	data += 2;
	len -= 2;
	memset(msg, 0, 12);
	msg[2] = 0x81;
	msg[3] = (unsigned char)(0x80 | rcode);
	msg[5] = 1;
	msg[7] = (unsigned char)nrec;
	o = 12;
	/* The question: _pop3s._tcp.example.net, type SRV, class IN. */
	memcpy(msg + o, "\x06_pop3s\x04_tcp\x07" "example\x03net\x00", 25);
	o += 25;
	memcpy(msg + o, "\x00\x21\x00\x01", 4);
	o += 4;
	for (i = 0; i < nrec; i++) {
		size_t rdlen_at;

		prio[i] = len > 0 ? data[0] % 3 : 0;
		weight[i] = len > 1 ? data[1] : 0;
		sport[i] = len > 2 ? (unsigned int)(data[2] % 4 == 0 ? 0 :
		    data[2] * 7u) : 995;
		nl = len > 3 ? data[3] % 5 : 1;
		k = 4;
		names[i][0] = '\0';
		memcpy(msg + o, "\xc0\x0c", 2);		/* the owner: the question */
		o += 2;
		memcpy(msg + o, "\x00\x21\x00\x01\x00\x00\x0e\x10", 8);
		o += 8;
		rdlen_at = o;
		o += 2;
		msg[o++] = (unsigned char)(prio[i] >> 8);
		msg[o++] = (unsigned char)prio[i];
		msg[o++] = (unsigned char)(weight[i] >> 8);
		msg[o++] = (unsigned char)weight[i];
		msg[o++] = (unsigned char)(sport[i] >> 8);
		msg[o++] = (unsigned char)sport[i];
		/* nl labels of the input's bytes as letters, digits, "-". */
		for (l = 0; l < nl && o + 70 < sizeof msg; l++) {
			size_t ll = k < len ? data[k] % 64 : 3, j;
			char	*nm = names[i] + strlen(names[i]);

			/* A name fits 255 bytes on the wire (RFC 1035), with
			 * ".example.net" after it. */
			if (strlen(names[i]) + ll + 2 > 253 - 12)
				break;
			k++;
			if (ll == 0)
				ll = 1;
			msg[o++] = (unsigned char)ll;
			if (l > 0)
				*nm++ = '.';
			for (j = 0; j < ll; j++) {
				uint8_t b = k < len ? data[k++] : 'a';
				char c = "abcdefghijklmnopqrstuvwxyz0123456789-"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[b % 63];

				msg[o++] = (unsigned char)c;
				*nm++ = c;
			}
			*nm = '\0';
		}
		/* Half the time the name ends in the question's domain. */
		if (len > 4 && (data[4] & 1) && nl > 0) {
			memcpy(msg + o, "\xc0\x18", 2);	/* -> example.net */
			o += 2;
			strcat(names[i], ".example.net");
		} else
			msg[o++] = 0;
		msg[rdlen_at] = (unsigned char)((o - rdlen_at - 2) >> 8);
		msg[rdlen_at + 1] = (unsigned char)(o - rdlen_at - 2);
		if (k > len)
			k = len;
		data += k;
		len -= k;
		if (o + 400 > sizeof msg) {
			nrec = i + 1;
			msg[7] = (unsigned char)nrec;
			break;
		}
	}
	/* The reference's pick. */
	for (i = 0; i < nrec; i++) {
		if (names[i][0] == '\0' || sport[i] == 0 ||
		    !ref_host(names[i]) || strlen(names[i]) >= hostsz)
			continue;
		if (best < 0 || prio[i] < prio[best] || (prio[i] == prio[best] &&
		    weight[i] > weight[best]))
			best = (int)i;
	}
	want = rcode != 0 ? 0 : best >= 0;
	got = srv(msg, o, hostsz, &host, &port);
	FUZZ_CHECK(got == want, "found %d, reference %d", got, want);
	if (got == 1)
		FUZZ_CHECK(strcmp(host, names[best]) == 0 && port ==
		    (int)sport[best], "%s:%d, reference %s:%u", host, port,
		    names[best], sport[best]);
	free(host);
}

static void
do_presets(const uint8_t *data, size_t len, const char *address)
{
	struct discovery d;
	char		*text = fuzz_dup(data, len), *cause = NULL;
	bool		 found = true;
	enum result	 r;

	memset(&d, 0, sizeof d);
	r = discover_parse_presets(text, len, "providers.conf", address, &d,
	    &found, &cause);
	if (r == RES_OK) {
		FUZZ_CHECK(cause == NULL, "OK with a cause");
		if (found) {
			check_found(&d, address);
			FUZZ_CHECK(strcmp(d.user, address) == 0 &&
			    d.source != NULL && strstr(d.source,
			    "providers.conf:") != NULL, "preset user or source");
		} else
			FUZZ_CHECK(d.host == NULL, "a host not found");
	} else {
		FUZZ_CHECK(r == RES_CONFIG && cause != NULL && !found &&
		    d.host == NULL && strncmp(cause, "providers.conf:", 15) ==
		    0, "refused: %d %s", (int)r, cause != NULL ? cause : "NULL");
	}
	discover_free(&d);
	free(cause);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	const char	*address;
	size_t		 hostsz;

	if (len < 2)
		return 0;
	address = addresses[(data[0] >> 2) & 3];
	hostsz = 1 + ((size_t)(data[0] >> 4) << 8 | data[1]) % 1025;
	switch (data[0] & 3) {
	case 0:
		do_autoconfig(data + 2, len - 2, address);
		break;
	case 1:
		do_srv_raw(data + 2, len - 2, hostsz);
		break;
	case 2:
		do_srv_built(data + 2, len - 2, hostsz);
		break;
	default:
		do_presets(data + 2, len - 2, address);
		break;
	}
	return 0;
}
