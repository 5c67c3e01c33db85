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
 * The parsers of the preset file, the autoconfig document and the DNS
 * answer are pure functions, tested in tests/unit/discover_test.c.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "bridge.h"

#define DOC_MAX		(1024 * 1024)	/* bytes of a fetched document */
#define PRESETS_MAX	(1024 * 1024)	/* bytes of the preset file */
#define PRESET_LINE_MAX	1024
#define VALUE_MAX	255		/* a host or user name from outside */
#define REDIRECTS_MAX	3
#define HTTP_CONNECT_S	10L
#define HTTP_TOTAL_S	20L
#define DNS_ANSWER_MAX	4096
#define ISPDB_URL	"https://autoconfig.thunderbird.net/v1.1/"
#define PRESETS_NAME	"providers.conf"

/* ---- names and URLs ---- */

/* A DNS name (or IPv4 literal): letters, digits, '-' in dot-separated
 * labels of 1-63 bytes, at most 253 in all. */
static bool
host_valid(const char *h)
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
	return host_valid(at + 1) && at[strlen(at) - 1] != '.';
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
	if (*h != '[' && !host_valid(hs)) {
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
static char *
expand(const char *tmpl, const char *address)
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

/* ---- 1. provider presets ---- */

/*
 * The options after a preset's provider name, each after a "|":
 * "auth=oauth2" (no password login: OAuth2 only) and "hint=TEXT" (advice
 * shown when the login is refused).  false with *why for anything else.
 */
static bool
preset_options(char *opts, char **auth, char **hint, const char **why)
{
	char	*o, *save = NULL, *e;

	for (o = strtok_r(opts, "|", &save); o != NULL;
	    o = strtok_r(NULL, "|", &save)) {
		o += strspn(o, " \t");
		for (e = o + strlen(o); e > o && (e[-1] == ' ' || e[-1] == '\t');
		    e--)
			;
		*e = '\0';
		if (strcmp(o, "auth=oauth2") == 0) {
			free(*auth);
			*auth = xstrdup("xoauth2");
		} else if (strncmp(o, "hint=", 5) == 0 && o[5] != '\0') {
			free(*hint);
			*hint = xstrdup(o + 5);
		} else {
			*why = "an option after \"|\" must be auth=oauth2 or "
			    "hint=TEXT";
			return false;
		}
	}
	return true;
}

/*
 * One line of the preset file, comment already cut off:
 *	DOMAIN  POP3-URL|-  IMAP-URL|-  PROVIDER NAME [| OPTION]...
 * RES_OK with *found when DOMAIN is the address's; RES_CONFIG for a line
 * that does not follow the format (the file is ours: strict is right).
 * A POP3-URL of "-" says the provider offers no POP3 at all: found, with
 * no host, and why in d->hint.
 */
static enum result
preset_line(char *line, const char *file, int lineno, const char *address,
    struct discovery *d, bool *found, char **cause)
{
	const char	*domain = strchr(address, '@') + 1, *why = NULL;
	char		*f[3], *rest, *save = NULL, *host = NULL, *ihost = NULL;
	char		*opts, *auth = NULL, *hint = NULL;
	int		 port = 0, iport, i;
	enum tls_mode	 tls = TLS_IMPLICIT, itls;

	for (i = 0; i < 3; i++)
		if ((f[i] = strtok_r(i == 0 ? line : NULL, " \t", &save)) ==
		    NULL)
			break;
	if (i == 0)
		return RES_OK;		/* blank */
	rest = save != NULL ? save + strspn(save, " \t") : NULL;
	if (i < 3 || rest == NULL || *rest == '\0' || *rest == '|')
		return fail(cause, RES_CONFIG, "%s:%d: want \"DOMAIN POP3-URL|- "
		    "IMAP-URL|- PROVIDER [| OPTION]...\"", file, lineno);
	if ((opts = strchr(rest, '|')) != NULL)
		*opts++ = '\0';
	while (rest[strlen(rest) - 1] == ' ' || rest[strlen(rest) - 1] == '\t')
		rest[strlen(rest) - 1] = '\0';
	if (!host_valid(f[0]) || strchr(f[0], '.') == NULL)
		return fail(cause, RES_CONFIG, "%s:%d: bad domain \"%s\"", file,
		    lineno, f[0]);
	if (strcmp(f[1], "-") != 0 &&
	    !discover_parse_url(f[1], false, &host, &port, &tls))
		return fail(cause, RES_CONFIG, "%s:%d: bad POP3 URL \"%s\" "
		    "(pop3s://HOST[:PORT], pop3://HOST[:PORT] for STARTTLS, or "
		    "- for none)", file, lineno, f[1]);
	if (strcmp(f[2], "-") != 0 &&
	    !discover_parse_url(f[2], true, &ihost, &iport, &itls)) {
		free(host);
		return fail(cause, RES_CONFIG, "%s:%d: bad IMAP URL \"%s\" "
		    "(imaps://HOST[:PORT], imap://HOST[:PORT] or -)", file,
		    lineno, f[2]);
	}
	free(ihost);
	if (opts != NULL && !preset_options(opts, &auth, &hint, &why)) {
		free(host);
		free(auth);
		free(hint);
		return fail(cause, RES_CONFIG, "%s:%d: %s", file, lineno, why);
	}
	if (*found || strcasecmp(f[0], domain) != 0) {
		free(host);
		free(auth);
		free(hint);
		return RES_OK;
	}
	*found = true;
	d->host = host;
	d->port = port;
	d->tls = tls;
	d->user = xstrdup(address);
	d->imap = strcmp(f[2], "-") != 0 ? xstrdup(f[2]) : NULL;
	d->auth = auth;
	if (host == NULL) {
		/* No POP3: that is what the user must hear, not "not found". */
		d->hint = xprintf("%s offers no POP3%s%s%s%s", rest,
		    d->imap != NULL ? " (only IMAP, at " : "", d->imap != NULL ?
		    d->imap : "", d->imap != NULL ? ")" : "", hint != NULL ?
		    "; " : "");
		if (hint != NULL) {
			char *both = xprintf("%s%s", d->hint, hint);

			free(d->hint);
			d->hint = both;
			free(hint);
		}
	} else
		d->hint = hint;
	d->source = xprintf("the provider presets (%s, %s:%d)", rest, file,
	    lineno);
	return RES_OK;
}

enum result
discover_parse_presets(const char *text, size_t len, const char *file,
    const char *address, struct discovery *d, bool *found, char **cause)
{
	const char	*line = text, *end = text + len, *nl;
	char		 buf[PRESET_LINE_MAX + 1];
	size_t		 n;
	int		 lineno = 0;
	enum result	 r;

	*found = false;
	while (line < end) {
		nl = memchr(line, '\n', (size_t)(end - line));
		n = (size_t)((nl != NULL ? nl : end) - line);
		lineno++;
		if (n > PRESET_LINE_MAX || memchr(line, '\0', n) != NULL) {
			if (*found)
				discover_free(d);
			*found = false;
			return fail(cause, RES_CONFIG, "%s:%d: line too long or "
			    "not text", file, lineno);
		}
		memcpy(buf, line, n);
		buf[n] = '\0';
		buf[strcspn(buf, "#\r")] = '\0';
		if ((r = preset_line(buf, file, lineno, address, d, found,
		    cause)) != RES_OK) {
			if (*found)
				discover_free(d);
			*found = false;
			return r;
		}
		line = nl != NULL ? nl + 1 : end;
	}
	return RES_OK;
}

/*
 * Where the preset file is: $POPBRIDGE_PROVIDERS; else next to the
 * program, as installed (BIN/../share/popbridge/) or in the source tree
 * (bridge/../config/), which works for any PREFIX and DESTDIR without
 * baking a path in; else POPBRIDGE_DATADIR if the build defines it.
 * NULL if there is none (or "" in the environment: presets off).
 */
static char *
presets_path(bool *explicit)
{
	const char	*env = getenv("POPBRIDGE_PROVIDERS");
	char		 exe[PATH_MAX], real[PATH_MAX], *dir, *p;
	ssize_t		 n;
	int		 i;

	*explicit = env != NULL;
	if (env != NULL)
		return env[0] != '\0' ? xstrdup(env) : NULL;
	if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) > 0) {
		exe[n] = '\0';
		dir = dirname(exe);
		for (i = 0; i < 2; i++) {
			p = xprintf("%s/%s/%s", dir, i == 0 ?
			    "../share/popbridge" : "../config", PRESETS_NAME);
			if (access(p, R_OK) == 0 && realpath(p, real) != NULL) {
				free(p);
				return xstrdup(real);
			}
			free(p);
		}
	}
#ifdef POPBRIDGE_DATADIR
	p = xprintf("%s/%s", POPBRIDGE_DATADIR, PRESETS_NAME);
	if (access(p, R_OK) == 0)
		return p;
	free(p);
#endif
	return NULL;
}

static enum result
from_presets(const char *address, struct discovery *d, bool *found,
    char **note, char **cause)
{
	char		*path, *text, *why = NULL;
	bool		 explicit;
	size_t		 len;
	enum result	 r;

	*found = false;
	if ((path = presets_path(&explicit)) == NULL) {
		*note = xstrdup(explicit ? "switched off" : "no preset file");
		return RES_OK;
	}
	log_debug("add: presets: %s", path);
	if ((r = file_read(path, PRESETS_MAX, &text, &len, NULL, &why)) !=
	    RES_OK) {
		r = fail(cause, r, "preset file %s", why);
		free(why);
		free(path);
		return r;
	}
	r = discover_parse_presets(text, len, path, address, d, found, cause);
	if (r == RES_OK && !*found)
		*note = xprintf("no entry in %s", path);
	free(text);
	free(path);
	return r;
}

/* ---- 2 and 3: autoconfig documents over HTTPS ---- */

struct body {
	char		*buf;
	size_t		 len;
	bool		 over;
};

static size_t
body_write(char *p, size_t size, size_t n, void *arg)
{
	struct body	*b = arg;
	size_t		 len = size * n;

	if (len > DOC_MAX - b->len) {
		b->over = true;
		return 0;		/* curl stops with CURLE_WRITE_ERROR */
	}
	b->buf = xrealloc(b->buf, b->len + len + 1);
	memcpy(b->buf + b->len, p, len);
	b->len += len;
	b->buf[b->len] = '\0';
	return len;
}

static bool
host_loopback(const char *h)
{
	struct in_addr	 a4;

	if (strcasecmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0 ||
	    strcmp(h, "::1") == 0)
		return true;
	return inet_pton(AF_INET, h, &a4) == 1 &&
	    (ntohl(a4.s_addr) >> 24) == 127;
}

/* https:// anywhere; http:// only to this machine (the tests' server). */
static bool
url_allowed(const char *url)
{
	CURLU		*u;
	char		*scheme = NULL, *host = NULL;
	bool		 ok = false;

	if ((u = curl_url()) == NULL)
		fatal("curl_url failed");
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = strcasecmp(scheme, "https") == 0 ||
		    (strcasecmp(scheme, "http") == 0 && host_loopback(host));
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

/*
 * One GET without following redirects (they are checked and followed by
 * http_get).  true with the body on 200; else a short note in *why.
 */
static bool
http_once(const char *url, struct body *b, char **next, char **why)
{
	char		 err[CURL_ERROR_SIZE] = "", clean[CURL_ERROR_SIZE];
	char		*loc = NULL;
	long		 code = 0;
	CURL		*h;
	CURLcode	 rc;

	*next = NULL;
	if ((h = curl_easy_init()) == NULL)
		fatal("curl_easy_init failed");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_TOTAL_S);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DOC_MAX);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "popbridge/" POPBRIDGE_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK && code >= 300 && code < 400 &&
	    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK &&
	    loc != NULL)
		*next = xstrdup(loc);
	curl_easy_cleanup(h);
	if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
		*why = xprintf("larger than %d bytes", DOC_MAX);
	else if (rc != CURLE_OK)
		*why = xstrdup(log_clean(clean, sizeof clean, err[0] != '\0' ?
		    err : curl_easy_strerror(rc), strlen(err[0] != '\0' ? err :
		    curl_easy_strerror(rc))));
	else if (*next == NULL && code != 200)
		*why = xprintf("HTTP %ld", code);
	else if (*next == NULL && b->len == 0)
		/* 200 with no body: body_write was never called. */
		*why = xstrdup("an empty reply (HTTP 200, no body)");
	else
		return *next == NULL;
	return false;
}

/* GET url (following at most REDIRECTS_MAX checked redirects). */
static bool
http_get(const char *url, char **body, size_t *len, char **why)
{
	struct body	 b;
	char		*cur = xstrdup(url), *next;
	char		 clean[300];
	int		 hops;

	*body = NULL;
	*why = NULL;
	for (hops = 0; ; hops++) {
		if (!url_allowed(cur)) {
			*why = xprintf("refused %s (only https://, or "
			    "http:// to this machine)", log_clean(clean,
			    sizeof clean, cur, strlen(cur)));
			break;
		}
		log_debug("add: GET %s", log_clean(clean, sizeof clean, cur,
		    strlen(cur)));
		memset(&b, 0, sizeof b);
		if (http_once(cur, &b, &next, why)) {
			*body = b.buf;
			*len = b.len;
			break;
		}
		free(b.buf);
		if (next == NULL)
			break;
		free(cur);
		cur = next;
		if (hops + 1 > REDIRECTS_MAX) {
			*why = xprintf("more than %d redirects", REDIRECTS_MAX);
			break;
		}
	}
	free(cur);
	return *body != NULL;
}

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
	    NULL || (s->host = expand(t, address)) == NULL ||
	    !host_valid(s->host)) {
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
		s->user = expand(t, address);
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

	if (!http_get(url, &body, &len, &why)) {
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

static enum result
from_autoconfig(const char *address, const char *domain, struct discovery *d,
    bool *found, char **note, char **cause)
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

static bool
from_ispdb(const char *address, const char *domain, struct discovery *d,
    char **note)
{
	const char	*base = getenv("POPBRIDGE_ISPDB_URL");
	char		*url;
	bool		 found;

	url = xprintf("%s%s", base != NULL ? base : ISPDB_URL, domain);
	found = from_document(url, "the Mozilla ISPDB", address, d, note);
	free(url);
	return found;
}

/* ---- 4. DNS SRV (RFC 6186) ---- */

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
			    sport != 0 && host_valid(name) &&
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

static bool
from_srv(const char *address, const char *domain, struct discovery *d,
    char **note)
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
	if ((r = from_presets(address, d, &found, &note, cause)) != RES_OK)
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
	if ((r = from_autoconfig(address, domain, d, &found, &note, cause)) !=
	    RES_OK || found)
		goto out;
	tried_add(&tried, &details, "autoconfig", note);
	note = NULL;
	if (from_ispdb(address, domain, d, &note))
		goto out;
	tried_add(&tried, &details, "ISPDB", note);
	note = NULL;
	if (from_srv(address, domain, d, &note))
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
