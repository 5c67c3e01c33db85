// link: bridge/discover.c bridge/discover_util.c bridge/discover_preset.c bridge/discover_autoconfig.c bridge/discover_http.c bridge/discover_srv.c bridge/file.c bridge/bounded.c
// pkg: libcurl libxml-2.0
/*
 * bridge/discover*.c, the pure parts: address and URL checks; the preset
 * file (the shipped config/providers.conf must parse, and a table of broken
 * lines must fail with FILE:LINE); autoconfig documents, good ones and a
 * table of hostile ones (entity bombs, external entities, over the size
 * ceiling, deep nesting, values of the wrong kind); and DNS SRV answers
 * built byte by byte, including truncated and looping ones.  Nothing here
 * touches the network.
 */
#include <time.h>

#include <arpa/nameser.h>

#include <libxml/parser.h>

#include "bridge.h"
#include "unit.h"

#define ADDR	"max.muster@example.org"

/* ---- addresses and URLs ---- */

static void
test_addresses(void)
{
	static const struct { const char *a; bool ok; } cases[] = {
		{ "max@gmx.de", true },
		{ "max.muster+tag@sub.example.org", true },
		{ "x@localhost", true },
		{ "o'brien@example.ie", true },
		{ "", false },
		{ "max", false },
		{ "@gmx.de", false },
		{ "max@", false },
		{ "a@b@c.de", false },
		{ "max muster@gmx.de", false },
		{ "max\"@gmx.de", false },
		{ "max@gmx..de", false },
		{ "max@-gmx.de", false },
		{ "max@gmx.de.", false },
		{ "max@gmx_de.de", false },
		{ "max@gm x.de", false },
		{ "max@b\xc3\xbc" "cher.de", false },	/* write it xn-- */
		{ "max@xn--bcher-kva.de", true },
		{ "max\n@gmx.de", false },
		{ "12345678901234567890123456789012345678901234567890"
		    "123456789012345@x.de", false },	/* local part 65 */
	};
	size_t	 i;

	for (i = 0; i < NELEM(cases); i++)
		CHECK(discover_address_valid(cases[i].a) == cases[i].ok,
		    "address %s: want %s", unit_sesc(cases[i].a),
		    cases[i].ok ? "valid" : "refused");
}

static void
test_urls(void)
{
	static const struct {
		const char	*url;
		bool		 imap, ok;
		const char	*host;
		int		 port;
		enum tls_mode	 tls;
	} cases[] = {
		{ "pop3s://pop.gmx.net", false, true, "pop.gmx.net", 995,
		    TLS_IMPLICIT },
		{ "pop3://pop.gmx.net", false, true, "pop.gmx.net", 110,
		    TLS_STARTTLS },
		{ "pop3s://localhost:12345/", false, true, "localhost", 12345,
		    TLS_IMPLICIT },
		{ "imaps://imap.example.org", true, true, "imap.example.org",
		    993, TLS_IMPLICIT },
		{ "imap://10.0.0.1:1143", true, true, "10.0.0.1", 1143,
		    TLS_STARTTLS },
		{ "imaps://[::1]:993", true, true, "[::1]", 993, TLS_IMPLICIT },
		{ "imaps://pop.gmx.net", false, false, NULL, 0, 0 },
		{ "pop3s://x", true, false, NULL, 0, 0 },
		{ "POP3S://x", false, false, NULL, 0, 0 },
		{ "https://x", false, false, NULL, 0, 0 },
		{ "pop3s://", false, false, NULL, 0, 0 },
		{ "pop3s://host:0", false, false, NULL, 0, 0 },
		{ "pop3s://host:65536", false, false, NULL, 0, 0 },
		{ "pop3s://host:-1", false, false, NULL, 0, 0 },
		{ "pop3s://host:+5", false, false, NULL, 0, 0 },
		{ "pop3s://host:", false, false, NULL, 0, 0 },
		{ "pop3s://host/INBOX", false, false, NULL, 0, 0 },
		{ "pop3s://user@host", false, false, NULL, 0, 0 },
		{ "pop3s://ho st", false, false, NULL, 0, 0 },
		{ "pop3s://host\";x", false, false, NULL, 0, 0 },
		{ "imaps://[::1", true, false, NULL, 0, 0 },
		{ "imaps://[zz::1]", true, false, NULL, 0, 0 },
	};
	enum tls_mode	 tls;
	char		*host;
	int		 port;
	size_t		 i;
	bool		 ok;

	for (i = 0; i < NELEM(cases); i++) {
		port = 0;
		ok = discover_parse_url(cases[i].url, cases[i].imap, &host,
		    &port, &tls);
		CHECK(ok == cases[i].ok, "url %s: want %s", cases[i].url,
		    cases[i].ok ? "valid" : "refused");
		if (ok && cases[i].ok) {
			CHECK_STR(host, cases[i].host, cases[i].url);
			CHECK(port == cases[i].port && tls == cases[i].tls,
			    "url %s: port %d tls %d", cases[i].url, port,
			    (int)tls);
		}
		CHECK(ok || host == NULL, "url %s: host left set",
		    cases[i].url);
		free(host);
	}
}

/* ---- the preset file ---- */

static char *
slurp(const char *path, size_t *len)
{
	FILE	*f = fopen(path, "r");
	char	*buf;
	long	 n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = xmalloc((size_t)n + 1);
	*len = fread(buf, 1, (size_t)n, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static void
test_shipped_presets(void)
{
	static const struct {
		const char	*address, *host;
		int		 port;
	} want[] = {
		{ "max@gmx.de", "pop.gmx.net", 995 },
		{ "max@GMX.AT", "pop.gmx.net", 995 },
		{ "max@gmx.ch", "pop.gmx.net", 995 },
		{ "max@gmx.net", "pop.gmx.net", 995 },
		{ "max@web.de", "pop3.web.de", 995 },
		{ "max@t-online.de", "securepop.t-online.de", 995 },
		{ "max@freenet.de", "mx.freenet.de", 995 },
		{ "max@online.de", "pop.1und1.de", 995 },
		{ "max@outlook.com", "outlook.office365.com", 995 },
		{ "max@hotmail.com", "outlook.office365.com", 995 },
		{ "max@yahoo.com", "pop.mail.yahoo.com", 995 },
		{ "max@aol.com", "pop.aol.com", 995 },
		{ "max@posteo.de", "posteo.de", 995 },
		{ "max@mailbox.org", "pop3.mailbox.org", 995 },
		{ "max@example.org", NULL, 0 },
	};
	const char	*file = "config/providers.conf";
	struct discovery d;
	char		*text, *cause = NULL;
	size_t		 len, i;
	bool		 found;
	enum result	 r;

	if ((text = slurp(file, &len)) == NULL) {
		CHECK(0, "cannot read %s", file);
		return;
	}
	for (i = 0; i < NELEM(want); i++) {
		r = discover_parse_presets(text, len, file, want[i].address, &d,
		    &found, &cause);
		CHECK(r == RES_OK, "%s: %s", file, cause != NULL ? cause : "");
		CHECK(found == (want[i].host != NULL), "%s: %s",
		    want[i].address, found ? "found" : "not found");
		if (found && want[i].host != NULL) {
			CHECK_STR(d.host, want[i].host, want[i].address);
			CHECK(d.port == want[i].port && d.tls == TLS_IMPLICIT,
			    "%s: port %d tls %d", want[i].address, d.port,
			    (int)d.tls);
			CHECK_STR(d.user, want[i].address, "preset user");
			CHECK(d.imap != NULL && strncmp(d.imap, "imaps://", 8)
			    == 0, "%s: imap %s", want[i].address,
			    unit_sesc(d.imap));
			CHECK(d.source != NULL && strstr(d.source,
			    "providers.conf:") != NULL, "source %s",
			    unit_sesc(d.source));
		}
		if (found)
			discover_free(&d);
		free(cause);
		cause = NULL;
	}
	free(text);
}

static void
test_preset_lines(void)
{
	static const struct {
		const char	*text;
		enum result	 r;
		bool		 found;
		const char	*host;		/* or the start of the cause */
		int		 port;
		enum tls_mode	 tls;
	} cases[] = {
		{ "example.org pop3s://localhost:1995 - Test\n", RES_OK, true,
		    "localhost", 1995, TLS_IMPLICIT },
		{ "# comment\n\n   \t\nEXAMPLE.org\tpop3://p.example.org\t"
		    "imap://i.example.org  Test Mail  # trailing\r\n", RES_OK,
		    true, "p.example.org", 110, TLS_STARTTLS },
		{ "example.org pop3s://first - A\nexample.org pop3s://second "
		    "- B\n", RES_OK, true, "first", 995, TLS_IMPLICIT },
		{ "other.org pop3s://x - A\n", RES_OK, false, NULL, 0, 0 },
		{ "", RES_OK, false, NULL, 0, 0 },
		{ "example.org pop3s://x - A", RES_OK, true, "x", 995,
		    TLS_IMPLICIT },
		/* Broken lines fail wherever they are, with FILE:LINE. */
		{ "example.org pop3s://x -\n", RES_CONFIG, false, "t.conf:1:",
		    0, 0 },
		{ "example.org pop3s://x\n", RES_CONFIG, false, "t.conf:1:", 0,
		    0 },
		{ "\nexample.org http://x - A\n", RES_CONFIG, false,
		    "t.conf:2:", 0, 0 },
		{ "example.org pop3s://x:99999 - A\n", RES_CONFIG, false,
		    "t.conf:1:", 0, 0 },
		{ "example.org pop3s://x imaps://y:0 A\n", RES_CONFIG, false,
		    "t.conf:1:", 0, 0 },
		{ "example.org pop3s://x pop3s://y A\n", RES_CONFIG, false,
		    "t.conf:1:", 0, 0 },
		{ "exa_mple.org pop3s://x - A\n", RES_CONFIG, false,
		    "t.conf:1:", 0, 0 },
		{ "localhost pop3s://x - A\n", RES_CONFIG, false, "t.conf:1:",
		    0, 0 },
		{ "example.org pop3s://x - A\nbad line\n", RES_CONFIG, false,
		    "t.conf:2:", 0, 0 },
		{ "example.org pop3s://x - A\nnul\0here pop3s://x - A\n",
		    RES_CONFIG, false, "t.conf:2:", 0, 0 },
	};
	struct discovery d;
	char		*cause = NULL, *long_line;
	size_t		 i, len;
	bool		 found;
	enum result	 r;

	for (i = 0; i < NELEM(cases); i++) {
		len = strlen(cases[i].text);
		if (i == NELEM(cases) - 1)	/* the one with a NUL */
			len = sizeof "example.org pop3s://x - A\nnul\0here "
			    "pop3s://x - A\n" - 1;
		memset(&d, 0, sizeof d);
		r = discover_parse_presets(cases[i].text, len, "t.conf",
		    ADDR, &d, &found, &cause);
		CHECK(r == cases[i].r, "preset case %zu: result %d", i, (int)r);
		CHECK(found == cases[i].found, "preset case %zu: found %d", i,
		    (int)found);
		if (r == RES_OK && found) {
			CHECK_STR(d.host, cases[i].host, "preset host");
			CHECK(d.port == cases[i].port && d.tls == cases[i].tls,
			    "preset case %zu: port %d tls %d", i, d.port,
			    (int)d.tls);
			CHECK_STR(d.user, ADDR, "preset user");
			discover_free(&d);
		} else if (r != RES_OK)
			CHECK(cause != NULL && strncmp(cause, cases[i].host,
			    strlen(cases[i].host)) == 0, "preset case %zu: "
			    "cause %s", i, unit_sesc(cause));
		free(cause);
		cause = NULL;
	}
	/* A line over the ceiling. */
	long_line = xmalloc(5000);
	memset(long_line, 'a', 4999);
	long_line[4999] = '\0';
	r = discover_parse_presets(long_line, 4999, "t.conf", ADDR, &d, &found,
	    &cause);
	CHECK(r == RES_CONFIG && !found, "a 5000-byte line is refused");
	free(cause);
	free(long_line);
}

/* ---- autoconfig documents ---- */

#define DOC_HEAD "<?xml version=\"1.0\"?>\n<clientConfig version=\"1.1\">" \
	"<emailProvider id=\"example.org\">"
#define DOC_TAIL "</emailProvider></clientConfig>\n"
#define SRV(type, host, port, sock, user)				\
	"<incomingServer type=\"" type "\"><hostname>" host "</hostname>" \
	"<port>" port "</port><socketType>" sock "</socketType>"	\
	"<username>" user "</username>"					\
	"<authentication>password-cleartext</authentication>"		\
	"</incomingServer>"

struct acase {
	const char	*name;
	const char	*xml;
	enum result	 r;
	const char	*host;		/* or a part of the cause */
	int		 port;
	enum tls_mode	 tls;
	const char	*user;
	const char	*imap;
};

static const struct acase ac_cases[] = {
	{ "one SSL server", DOC_HEAD SRV("pop3", "pop.example.org", "995",
	    "SSL", "%EMAILADDRESS%") DOC_TAIL, RES_OK, "pop.example.org", 995,
	    TLS_IMPLICIT, ADDR, NULL },
	{ "placeholders", DOC_HEAD SRV("pop3", "pop.%EMAILDOMAIN%", "1995",
	    "SSL", "%EMAILLOCALPART%") DOC_TAIL, RES_OK, "pop.example.org",
	    1995, TLS_IMPLICIT, "max.muster", NULL },
	{ "SSL beats an earlier STARTTLS and plain", DOC_HEAD
	    SRV("pop3", "plain.example.org", "110", "plain", "u")
	    SRV("pop3", "starttls.example.org", "110", "STARTTLS", "u")
	    SRV("pop3", "ssl.example.org", "995", "SSL", "u")
	    SRV("pop3", "ssl2.example.org", "995", "SSL", "u") DOC_TAIL,
	    RES_OK, "ssl.example.org", 995, TLS_IMPLICIT, "u", NULL },
	{ "STARTTLS beats plain", DOC_HEAD
	    SRV("pop3", "plain.example.org", "110", "plain", "u")
	    SRV("pop3", "starttls.example.org", "110", "starttls", "u")
	    DOC_TAIL, RES_OK, "starttls.example.org", 110, TLS_STARTTLS, "u",
	    NULL },
	{ "plain only", DOC_HEAD SRV("pop3", "plain.example.org", "110",
	    "plain", "u") DOC_TAIL, RES_OK, "plain.example.org", 110, TLS_NONE,
	    "u", NULL },
	{ "IMAP for information", DOC_HEAD SRV("imap", "imap.example.org",
	    "993", "SSL", "u") SRV("pop3", "pop.example.org", "995", "SSL",
	    "u") DOC_TAIL, RES_OK, "pop.example.org", 995, TLS_IMPLICIT, "u",
	    "imaps://imap.example.org:993" },
	{ "defaults: no port, no user", DOC_HEAD "<incomingServer type=\"pop3\">"
	    "<hostname> pop.example.org\n</hostname><socketType>SSL"
	    "</socketType></incomingServer>" DOC_TAIL, RES_OK,
	    "pop.example.org", 995, TLS_IMPLICIT, ADDR, NULL },
	{ "CDATA and character references", DOC_HEAD "<incomingServer "
	    "type=\"pop3\"><hostname><![CDATA[pop.example.org]]></hostname>"
	    "<socketType>SSL</socketType><username>a&#38;b</username>"
	    "</incomingServer>" DOC_TAIL, RES_OK, "pop.example.org", 995,
	    TLS_IMPLICIT, "a&b", NULL },
	{ "OAuth2-only server skipped", DOC_HEAD "<incomingServer type=\"pop3\">"
	    "<hostname>oauth.example.org</hostname><socketType>SSL"
	    "</socketType><authentication>OAuth2</authentication>"
	    "</incomingServer>" SRV("pop3", "pw.example.org", "110",
	    "STARTTLS", "u") DOC_TAIL, RES_OK, "pw.example.org", 110,
	    TLS_STARTTLS, "u", NULL },
	/* Refused. */
	{ "IMAP only", DOC_HEAD SRV("imap", "imap.example.org", "993", "SSL",
	    "u") DOC_TAIL, RES_TEMP, "no usable POP3", 0, 0, NULL, NULL },
	{ "neither password nor OAuth2", DOC_HEAD "<incomingServer type="
	    "\"pop3\"><hostname>x.example.org</hostname><authentication>NTLM"
	    "</authentication></incomingServer>" DOC_TAIL, RES_TEMP,
	    "neither a password nor an OAuth2", 0, 0, NULL, NULL },
	{ "port out of range", DOC_HEAD SRV("pop3", "x.example.org", "99999",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "bad port", 0, 0, NULL, NULL },
	{ "port not a number", DOC_HEAD SRV("pop3", "x.example.org", "995x",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "bad port", 0, 0, NULL, NULL },
	{ "port negative", DOC_HEAD SRV("pop3", "x.example.org", "-995",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "bad port", 0, 0, NULL, NULL },
	{ "host with a space", DOC_HEAD SRV("pop3", "x example.org", "995",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "hostname", 0, 0, NULL, NULL },
	{ "host with a quote", DOC_HEAD SRV("pop3", "x\";.example.org", "995",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "hostname", 0, 0, NULL, NULL },
	{ "host missing", DOC_HEAD "<incomingServer type=\"pop3\"><port>995"
	    "</port></incomingServer>" DOC_TAIL, RES_TEMP, "hostname", 0, 0,
	    NULL, NULL },
	{ "unknown placeholder", DOC_HEAD SRV("pop3", "x.example.org", "995",
	    "SSL", "%REALNAME%") DOC_TAIL, RES_TEMP, "placeholder", 0, 0, NULL,
	    NULL },
	{ "user with a line break", DOC_HEAD SRV("pop3", "x.example.org",
	    "995", "SSL", "a&#10;b") DOC_TAIL, RES_TEMP, "user name", 0, 0,
	    NULL, NULL },
	{ "unknown socketType", DOC_HEAD SRV("pop3", "x.example.org", "995",
	    "ROT13", "u") DOC_TAIL, RES_TEMP, "socketType", 0, 0, NULL, NULL },
	{ "type in upper case", DOC_HEAD SRV("POP3", "x.example.org", "995",
	    "SSL", "u") DOC_TAIL, RES_TEMP, "no usable POP3", 0, 0, NULL,
	    NULL },
	{ "server outside emailProvider", "<clientConfig>" SRV("pop3",
	    "x.example.org", "995", "SSL", "u") "</clientConfig>", RES_TEMP,
	    "no usable POP3", 0, 0, NULL, NULL },
	{ "wrong root", "<html><body>404</body></html>", RES_TEMP,
	    "not a clientConfig", 0, 0, NULL, NULL },
	{ "not XML", "HTTP/1.1 200 OK\r\n\r\nhello", RES_TEMP, "well-formed",
	    0, 0, NULL, NULL },
	{ "unclosed", DOC_HEAD, RES_TEMP, "well-formed", 0, 0, NULL, NULL },
	{ "empty", "", RES_TEMP, "well-formed", 0, 0, NULL, NULL },
	{ "external entity", "<?xml version=\"1.0\"?><!DOCTYPE clientConfig ["
	    "<!ENTITY x SYSTEM \"file:///etc/passwd\">]><clientConfig>"
	    "<emailProvider><incomingServer type=\"pop3\"><hostname>&x;"
	    "</hostname></incomingServer></emailProvider></clientConfig>",
	    RES_TEMP, "DTD", 0, 0, NULL, NULL },
	{ "external DTD", "<?xml version=\"1.0\"?><!DOCTYPE clientConfig "
	    "SYSTEM \"http://127.0.0.1:9/x.dtd\"><clientConfig/>", RES_TEMP,
	    "DTD", 0, 0, NULL, NULL },
	{ "harmless internal entity", "<?xml version=\"1.0\"?><!DOCTYPE "
	    "clientConfig [<!ENTITY h \"pop.example.org\">]><clientConfig>"
	    "<emailProvider><incomingServer type=\"pop3\"><hostname>&h;"
	    "</hostname></incomingServer></emailProvider></clientConfig>",
	    RES_TEMP, "DTD", 0, 0, NULL, NULL },
	{ "undeclared entity", DOC_HEAD "<incomingServer type=\"pop3\">"
	    "<hostname>&nope;</hostname></incomingServer>" DOC_TAIL, RES_TEMP,
	    "", 0, 0, NULL, NULL },
};

static void
check_autoconfig(const char *name, const char *xml, size_t len,
    const struct acase *c)
{
	struct discovery d;
	char		*cause = NULL;
	enum result	 r;

	r = discover_parse_autoconfig(xml, len, ADDR, &d, &cause);
	CHECK(r == c->r, "%s: result %d, want %d (%s)", name, (int)r,
	    (int)c->r, unit_sesc(cause));
	if (r == RES_OK && c->r == RES_OK) {
		CHECK_STR(d.host, c->host, name);
		CHECK(d.port == c->port && d.tls == c->tls,
		    "%s: port %d tls %d", name, d.port, (int)d.tls);
		CHECK_STR(d.user, c->user, name);
		CHECK_STR(d.imap, c->imap, name);
	} else if (r != RES_OK)
		CHECK(cause != NULL && strstr(cause, c->host) != NULL,
		    "%s: cause %s lacks %s", name, unit_sesc(cause), c->host);
	if (r == RES_OK)
		discover_free(&d);
	free(cause);
}

static void
test_autoconfig_table(void)
{
	size_t	 i;

	for (i = 0; i < NELEM(ac_cases); i++)
		check_autoconfig(ac_cases[i].name, ac_cases[i].xml,
		    strlen(ac_cases[i].xml), &ac_cases[i]);
}

/* The classic billion laughs: ten levels of ten references. */
static void
test_entity_bomb(const void *unused)
{
	static const struct acase c = { "entity bomb", NULL, RES_TEMP, "", 0,
		0, NULL, NULL };

	(void)unused;
	char		*xml = xstrdup("<?xml version=\"1.0\"?>\n"
			    "<!DOCTYPE clientConfig [\n<!ENTITY l0 \"lol\">\n");
	char		*next;
	struct timespec	 t0, t1;
	int		 i, j;

	for (i = 1; i <= 10; i++) {
		next = xprintf("%s<!ENTITY l%d \"", xml, i);
		free(xml);
		xml = next;
		for (j = 0; j < 10; j++) {
			next = xprintf("%s&l%d;", xml, i - 1);
			free(xml);
			xml = next;
		}
		next = xprintf("%s\">\n", xml);
		free(xml);
		xml = next;
	}
	next = xprintf("%s]>\n<clientConfig><emailProvider><incomingServer "
	    "type=\"pop3\"><hostname>&l10;</hostname></incomingServer>"
	    "</emailProvider></clientConfig>\n", xml);
	free(xml);
	xml = next;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	check_autoconfig(c.name, xml, strlen(xml), &c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(t1.tv_sec - t0.tv_sec < 5, "the entity bomb took %lds",
	    (long)(t1.tv_sec - t0.tv_sec));
	free(xml);
}

static void
test_big_documents(const void *unused)
{
	static const struct acase over = { "over 1 MiB", NULL, RES_TEMP,
		"larger than", 0, 0, NULL, NULL };
	static const struct acase deep = { "10000 levels deep", NULL, RES_TEMP,
		"", 0, 0, NULL, NULL };
	static const struct acase many = { "thousands of servers", NULL, RES_OK,
		"pop.example.org", 995, TLS_IMPLICIT, "u", NULL };
	static const struct acase longhost = { "a 300-byte host name", NULL,
		RES_TEMP, "hostname", 0, 0, NULL, NULL };
	static const char srv[] = SRV("pop3", "x.example.org", "110",
	    "STARTTLS", "u");
	size_t	 n = 1024 * 1024 + 1, i, o;
	char	*xml = xmalloc(n + 1), *p;

	(void)unused;
	memset(xml, ' ', n);
	xml[n] = '\0';
	memcpy(xml, "<clientConfig>", 14);
	check_autoconfig(over.name, xml, n, &over);
	free(xml);

	xml = xmalloc(10000 * 7 + 100);
	for (i = 0, o = 0; i < 10000; i++)
		o += (size_t)sprintf(xml + o, "<a>");
	for (i = 0; i < 10000; i++)
		o += (size_t)sprintf(xml + o, "</a>");
	check_autoconfig(deep.name, xml, o, &deep);
	free(xml);

	/* Under the ceiling, many candidates: the SSL one at the end wins. */
	xml = xmalloc(20000 * sizeof srv + 4096);
	o = (size_t)sprintf(xml, "%s", DOC_HEAD);
	for (i = 0; i < 20000 && o < 1000 * 1000; i++)
		o += (size_t)sprintf(xml + o, "%s", srv);
	o += (size_t)sprintf(xml + o, "%s%s", SRV("pop3", "pop.example.org",
	    "995", "SSL", "u"), DOC_TAIL);
	check_autoconfig(many.name, xml, o, &many);
	free(xml);

	p = xmalloc(301);
	memset(p, 'h', 300);
	p[300] = '\0';
	xml = xprintf("%s<incomingServer type=\"pop3\"><hostname>%s.org"
	    "</hostname></incomingServer>%s", DOC_HEAD, p, DOC_TAIL);
	check_autoconfig(longhost.name, xml, strlen(xml), &longhost);
	free(xml);
	free(p);
}

/* ---- DNS SRV answers ---- */

struct pkt {
	unsigned char	 b[2048];
	size_t		 n;
};

static void
put16(struct pkt *p, unsigned int v)
{
	p->b[p->n++] = (unsigned char)(v >> 8);
	p->b[p->n++] = (unsigned char)v;
}

static void
put_name(struct pkt *p, const char *name)
{
	const char	*dot;
	size_t		 len;

	while (*name != '\0') {
		dot = strchr(name, '.');
		len = dot != NULL ? (size_t)(dot - name) : strlen(name);
		p->b[p->n++] = (unsigned char)len;
		memcpy(p->b + p->n, name, len);
		p->n += len;
		name += len + (dot != NULL);
	}
	p->b[p->n++] = 0;
}

static void
header(struct pkt *p, unsigned int rcode, unsigned int an)
{
	p->n = 0;
	put16(p, 0x1234);
	put16(p, 0x8180 | rcode);
	put16(p, 1);
	put16(p, an);
	put16(p, 0);
	put16(p, 0);
	put_name(p, "_pop3s._tcp.example.org");
	put16(p, ns_t_srv);
	put16(p, ns_c_in);
}

/* An answer record; target NULL writes a compression pointer to the
 * question name (offset 12). */
static void
answer(struct pkt *p, unsigned int type, unsigned int prio,
    unsigned int weight, unsigned int port, const char *target)
{
	size_t	 rdlen_at;

	p->b[p->n++] = 0xc0;		/* owner: pointer to the question */
	p->b[p->n++] = 12;
	put16(p, type);
	put16(p, ns_c_in);
	put16(p, 0);
	put16(p, 300);
	rdlen_at = p->n;
	put16(p, 0);
	if (type == ns_t_srv) {
		put16(p, prio);
		put16(p, weight);
		put16(p, port);
	}
	if (target != NULL)
		put_name(p, target);
	else {
		p->b[p->n++] = 0xc0;
		p->b[p->n++] = 12;
	}
	p->b[rdlen_at] = (unsigned char)((p->n - rdlen_at - 2) >> 8);
	p->b[rdlen_at + 1] = (unsigned char)(p->n - rdlen_at - 2);
}

static void
check_srv(const char *name, const struct pkt *p, int want, const char *host,
    int port)
{
	char	 got[256] = "";
	int	 gport = 0, r;

	r = discover_parse_srv(p->b, p->n, got, sizeof got, &gport);
	CHECK(r == want, "%s: %d, want %d", name, r, want);
	if (r == 1 && want == 1) {
		CHECK_STR(got, host, name);
		CHECK(gport == port, "%s: port %d, want %d", name, gport, port);
	}
}

static void
test_srv(void)
{
	struct pkt	 p;
	size_t		 i;

	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 1, 995, "pop.example.org");
	check_srv("one record", &p, 1, "pop.example.org", 995);

	header(&p, 0, 3);
	answer(&p, ns_t_srv, 20, 1, 1995, "backup.example.org");
	answer(&p, ns_t_srv, 10, 1, 995, "light.example.org");
	answer(&p, ns_t_srv, 10, 5, 996, "heavy.example.org");
	check_srv("lowest priority, then highest weight", &p, 1,
	    "heavy.example.org", 996);

	header(&p, 0, 2);
	answer(&p, ns_t_cname, 0, 0, 0, "alias.example.org");
	answer(&p, ns_t_srv, 0, 0, 995, "pop.example.org");
	check_srv("a CNAME before it is skipped", &p, 1, "pop.example.org",
	    995);

	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 0, 0, "");
	check_srv("target . : not offered", &p, 0, NULL, 0);

	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 0, 0, "pop.example.org");
	check_srv("port 0", &p, 0, NULL, 0);

	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 0, 995, "bad_host\";.example.org");
	check_srv("bad target name", &p, 0, NULL, 0);

	header(&p, 3, 0);
	check_srv("NXDOMAIN", &p, 0, NULL, 0);

	header(&p, 0, 0);
	check_srv("no answers", &p, 0, NULL, 0);

	/* Cut anywhere: never a read past the end (ASan watches). */
	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 1, 995, "pop.example.org");
	for (i = 0; i < p.n; i++) {
		unsigned char	*copy = xmalloc(i + 1);
		char		 host[256];
		int		 port, r;

		memcpy(copy, p.b, i);
		r = discover_parse_srv(copy, i, host, sizeof host, &port);
		CHECK(r == -1, "cut at %zu: %d, want -1", i, r);
		free(copy);
	}

	/* More answers announced than present. */
	header(&p, 0, 5);
	answer(&p, ns_t_srv, 0, 1, 995, "pop.example.org");
	check_srv("answer count too high", &p, -1, NULL, 0);

	/* rdlength beyond the end. */
	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 1, 995, "pop.example.org");
	p.b[p.n - 17 - 2 - 6 + 0] = 0x7f;	/* high byte of rdlength */
	check_srv("rdlength too long", &p, -1, NULL, 0);

	/* A compression pointer to itself in the target. */
	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 1, 995, NULL);
	p.b[p.n - 1] = (unsigned char)(p.n - 2);
	check_srv("pointer loop", &p, -1, NULL, 0);

	/* A target name whose rdlength says it is shorter than it is. */
	header(&p, 0, 1);
	answer(&p, ns_t_srv, 0, 1, 995, "pop.example.org");
	p.b[p.n - 17 - 6 - 1] = 8;		/* rdlength low byte */
	check_srv("target runs past rdlength", &p, -1, NULL, 0);
}

/*
 * What the presets and documents say beyond the server (issue 13): a
 * POP3 server that takes OAuth2 only (auth "xoauth2"), a preset's hint, a
 * provider without POP3, and the shipped file's lines for them.
 */
static void
test_auth_hints(void)
{
	static const char oauth_doc[] = DOC_HEAD "<incomingServer type="
	    "\"pop3\"><hostname>x.example.org</hostname><socketType>SSL"
	    "</socketType><authentication>OAuth2</authentication>"
	    "</incomingServer>" DOC_TAIL;
	static const char presets[] =
	    "other.org - imaps://imap.other.org Other\n"
	    "example.org pop3s://p.example.org - Test | auth=oauth2 | "
	    "hint=switch POP3 on first\n";
	static const struct {
		const char	*address, *host, *auth, *hint;
	} shipped[] = {
		{ "max@outlook.com", "outlook.office365.com", "xoauth2", NULL },
		{ "max@hotmail.de", "outlook.office365.com", "xoauth2", NULL },
		{ "max@live.com", "outlook.office365.com", "xoauth2", NULL },
		{ "max@gmx.net", "pop.gmx.net", NULL, "POP3" },
		{ "max@web.de", "pop3.web.de", NULL, "POP3" },
		{ "max@icloud.com", NULL, NULL, "iCloud offers no POP3" },
		{ "max@me.com", NULL, NULL, "iCloud offers no POP3" },
	};
	struct discovery d;
	char		*cause = NULL, *text;
	size_t		 len, i;
	bool		 found;
	enum result	 r;

	r = discover_parse_autoconfig(oauth_doc, strlen(oauth_doc), ADDR, &d,
	    &cause);
	CHECK(r == RES_OK, "OAuth2 only: %d (%s)", (int)r, unit_sesc(cause));
	if (r == RES_OK) {
		CHECK_STR(d.host, "x.example.org", "OAuth2-only host");
		CHECK_STR(d.auth, "xoauth2", "OAuth2-only auth");
		discover_free(&d);
	}
	free(cause);
	cause = NULL;

	memset(&d, 0, sizeof d);
	r = discover_parse_presets(presets, strlen(presets), "t.conf", ADDR, &d,
	    &found, &cause);
	CHECK(r == RES_OK && found, "preset options: %d (%s)", (int)r,
	    unit_sesc(cause));
	if (r == RES_OK && found) {
		CHECK_STR(d.auth, "xoauth2", "preset auth=oauth2");
		CHECK_STR(d.hint, "switch POP3 on first", "preset hint");
		discover_free(&d);
	}
	r = discover_parse_presets(presets, strlen(presets), "t.conf",
	    "max@other.org", &d, &found, &cause);
	CHECK(r == RES_OK && found && d.host == NULL && d.hint != NULL &&
	    strstr(d.hint, "Other offers no POP3 (only IMAP, at "
	    "imaps://imap.other.org)") != NULL, "no POP3: %s",
	    unit_sesc(found ? d.hint : cause));
	if (r == RES_OK && found)
		discover_free(&d);
	text = "example.org pop3s://x - A | auth=plain\n";
	r = discover_parse_presets(text, strlen(text), "t.conf", ADDR, &d,
	    &found, &cause);
	CHECK(r == RES_CONFIG && cause != NULL && strncmp(cause, "t.conf:1:",
	    9) == 0, "an unknown option: %d %s", (int)r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	if ((text = slurp("config/providers.conf", &len)) == NULL) {
		CHECK(0, "cannot read config/providers.conf");
		return;
	}
	for (i = 0; i < NELEM(shipped); i++) {
		memset(&d, 0, sizeof d);
		r = discover_parse_presets(text, len, "providers.conf",
		    shipped[i].address, &d, &found, &cause);
		CHECK(r == RES_OK && found, "%s: %d (%s)", shipped[i].address,
		    (int)r, unit_sesc(cause));
		if (r != RES_OK || !found)
			continue;
		CHECK_STR(d.host, shipped[i].host, shipped[i].address);
		CHECK_STR(d.auth, shipped[i].auth, shipped[i].address);
		CHECK(shipped[i].hint == NULL ? d.hint == NULL : d.hint != NULL &&
		    strstr(d.hint, shipped[i].hint) != NULL, "%s: hint %s",
		    shipped[i].address, unit_sesc(d.hint));
		discover_free(&d);
	}
	free(text);
}

int
main(void)
{
	test_addresses();
	test_urls();
	test_shipped_presets();
	test_preset_lines();
	test_autoconfig_table();
	test_auth_hints();
	/* In a child each: a crash in libxml2 fails that case only. */
	UNIT_ISOLATED("entity bomb", test_entity_bomb, NULL);
	UNIT_ISOLATED("big documents", test_big_documents, NULL);
	test_srv();
	xmlCleanupParser();
	return UNIT_END();
}
