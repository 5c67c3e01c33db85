/*
 * The configuration file (libconfig syntax), validated strictly against a
 * table of keys: unknown keys, wrong types, missing required keys and bad
 * values are errors reported as "file:line: message", the file being the
 * one that holds the error (the main file or one it @includes).
 *
 * Secrets are read only when a connection needs them (config_secret),
 * never at load time; but what can be known about them without reading
 * them is checked at load, so that `check -n` says what `run` would meet:
 * a file that holds a password (the main file or an included one) must
 * not be readable by others, and every password_file must exist, be
 * readable by its owner only, and be readable by the user that runs
 * popbridge (runner_lookup: the systemd unit's user cannot read root's
 * files).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "bridge.h"
#include "config_int.h"
#include "route.h"

#define SECRET_MAX	4096
#define GROUPS_MAX	256		/* of the user that runs popbridge */
#define ERR_KEEP	4096		/* bytes of a command's stderr kept */
#define ERR_LINES	3		/* lines of it shown */
#define ERR_LINE_MAX	200		/* bytes of each shown */

enum ktype { K_STRING, K_INT, K_BOOL, K_GROUP, K_LIST, K_ARRAY };

struct key {
	const char	*name;
	enum ktype	 type;
	bool		 required;
};

static const struct key top_keys[] = {
	{ "state_dir", K_STRING, false },
	{ "timeout", K_INT, false },
	{ "deadline", K_INT, false },
	{ "interval", K_INT, false },
	{ "jobs", K_INT, false },
	{ "max_backoff", K_INT, false },
	{ "user", K_STRING, false },
	{ "pid_file", K_STRING, false },
	{ "notify_command", K_STRING, false },
	{ "listen", K_STRING, false },		/* the web page (web.c) */
	{ "listen_token_file", K_STRING, false },
	{ "listen_token_command", K_STRING, false },
	{ "accounts", K_LIST, true },
	{ NULL, 0, false }
};
static const struct key account_keys[] = {
	{ "name", K_STRING, true },
	{ "pop3", K_GROUP, true },
	{ "imap", K_GROUP, true },
	{ "keep", K_BOOL, false },
	{ "flags", K_ARRAY, false },
	{ "interval", K_INT, false },
	{ "deadline", K_INT, false },
	{ "delete_after", K_INT, false },
	{ "max_size", K_INT, false },
	{ "notify_command", K_STRING, false },
	{ "destinations", K_LIST, false },	/* config_route.c */
	{ "rules", K_LIST, false },
	{ "multidrop", K_GROUP, false },
	{ NULL, 0, false }
};
/* Both blocks take the same keys; "mailbox" is the IMAP block's alone;
 * a destination (config_route.c) is an IMAP block with a "name". */
static const struct key endpoint_keys[] = {
	{ "name", K_STRING, true },
	{ "mailbox", K_STRING, false },
	{ "url", K_STRING, true },
	{ "user", K_STRING, true },
	{ "password", K_STRING, false },
	{ "password_file", K_STRING, false },
	{ "password_command", K_STRING, false },
	{ "ca_file", K_STRING, false },
	{ "tls", K_STRING, false },
	{ "auth", K_STRING, false },
	{ "oauth2_token_command", K_STRING, false },
	{ "pin", K_STRING, false },
	{ "proxy", K_STRING, false },
	{ NULL, 0, false }
};
#define pop3_keys	(endpoint_keys + 2)
#define imap_keys	(endpoint_keys + 1)
#define dest_keys	endpoint_keys

static const char *const ktype_names[] = { "a string", "an integer",
	"true or false", "a group { ... }", "a list ( ... )",
	"an array [ ... ]" };

struct loader {
	const char	*file;		/* the main file, as named */
	char		*dir;		/* relative paths start here */
	const char	*read_as;	/* the name libconfig was given for it */
	char		*cause;
	char		**pw_files;	/* files holding a password (malloc'd) */
	size_t		 npw_files;
	char		**acct_files;	/* the file of each account */
	size_t		 naccts;
	char		*read_base;	/* read_as, when it is ours */
	bool		 check_secrets;	/* password files, for `check -n` */
	/* Who reads the password files (runner_lookup), looked up at the
	 * first password_file. */
	const config_setting_t *user_key;
	uid_t		 owner;		/* of the config file */
	mode_t		 cmode;
	bool		 runner_known;
	struct passwd	 runner;	/* pw_name, pw_uid, pw_gid */
	char		 runner_name[64];
	const char	*runner_why;	/* "the config's user", ... */
	gid_t		 groups[GROUPS_MAX];
	int		 ngroups;
};

/*
 * The file a setting comes from, fit to print (malloc'd).  libconfig 1.5
 * records an included file's name as written in the @include; it opened
 * it from the main file's folder (read_config), so that is where a
 * relative one is.
 */
static char *
source_file(const struct loader *ld, const char *f)
{
	if (f == NULL || strcmp(f, ld->read_as) == 0)
		return xstrdup(ld->file);
	if (f[0] == '/')
		return xstrdup(f);
	return xprintf("%s/%s", ld->dir, f);
}

static char *
setting_file(const struct loader *ld, const config_setting_t *s)
{
	return source_file(ld, s != NULL ? config_setting_source_file(s) :
	    NULL);
}

enum result
cfail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
    PRINTFLIKE(3, 4);

/* "file:line: message" into ld->cause, with class r. */
static enum result
vcfail(struct loader *ld, enum result r, const char *file, int line,
    const char *fmt, va_list ap) PRINTFLIKE(5, 0);

static enum result
vcfail(struct loader *ld, enum result r, const char *file, int line,
    const char *fmt, va_list ap)
{
	char	*msg = xvprintf(fmt, ap);

	free(ld->cause);
	ld->cause = xprintf("%s:%d: %s", file, line, msg);
	free(msg);
	return r;
}

enum result
cfail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	va_list		 ap;
	char		*file = setting_file(ld, s);
	enum result	 r;

	va_start(ap, fmt);
	r = vcfail(ld, RES_CONFIG, file, s != NULL ?
	    config_setting_source_line(s) : 0, fmt, ap);
	va_end(ap);
	free(file);
	return r;
}

/* The same with another class (RES_AUTH: a secret others can read). */
static enum result
cfail_as(struct loader *ld, enum result r, const config_setting_t *s,
    const char *fmt, ...) PRINTFLIKE(4, 5);

static enum result
cfail_as(struct loader *ld, enum result r, const config_setting_t *s,
    const char *fmt, ...)
{
	va_list		 ap;
	char		*file = setting_file(ld, s);

	va_start(ap, fmt);
	r = vcfail(ld, r, file, s != NULL ? config_setting_source_line(s) : 0,
	    fmt, ap);
	va_end(ap);
	free(file);
	return r;
}

static bool
type_matches(const config_setting_t *s, enum ktype t)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return t == K_STRING;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return t == K_INT;
	case CONFIG_TYPE_BOOL:
		return t == K_BOOL;
	case CONFIG_TYPE_GROUP:
		return t == K_GROUP;
	case CONFIG_TYPE_LIST:
		return t == K_LIST;
	case CONFIG_TYPE_ARRAY:
		/* An empty list "( )" and an array "[ ]" are alike. */
		return t == K_ARRAY || t == K_LIST;
	default:
		return false;
	}
}

/* Every member of group is in keys with the right type; required ones are
 * there. */
static enum result
check_keys(struct loader *ld, const config_setting_t *group,
    const struct key *keys, const char *where)
{
	const config_setting_t	*s;
	const struct key	*k;
	int			 i, n = config_setting_length(group);

	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(group, (unsigned int)i);
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, config_setting_name(s)) == 0)
				break;
		if (k->name == NULL)
			return cfail(ld, s, "%sunknown key \"%s\"", where,
			    config_setting_name(s));
		if (!type_matches(s, k->type))
			return cfail(ld, s, "%s\"%s\" must be %s", where, k->name,
			    ktype_names[k->type]);
	}
	for (k = keys; k->name != NULL; k++)
		if (k->required && config_setting_get_member(group, k->name) ==
		    NULL)
			return cfail(ld, group, "%smissing \"%s\"", where,
			    k->name);
	return RES_OK;
}

/* An optional integer member within [lo, hi]; *v keeps its default. */
static enum result
get_bounded(struct loader *ld, const config_setting_t *group,
    const char *name, long lo, long hi, const char *where, long *v)
{
	config_setting_t	*s = config_setting_get_member(group, name);
	long long		 n;

	if (s == NULL)
		return RES_OK;
	n = config_setting_get_int64(s);
	if (n < lo || n > hi)
		return cfail(ld, s, "%s\"%s\" must be %ld to %ld", where, name,
		    lo, hi);
	*v = (long)n;
	return RES_OK;
}

/* max_size: bytes, at least 1 KiB (a smaller limit is a typo). */
static enum result
get_max_size(struct loader *ld, const config_setting_t *group,
    const char *where, long long *v)
{
	config_setting_t	*s = config_setting_get_member(group,
				    "max_size");
	long long		 n;

	if (s == NULL)
		return RES_OK;
	n = config_setting_get_int64(s);
	if (n < 1024)
		return cfail(ld, s, "%s\"max_size\" must be at least 1024 "
		    "(bytes)", where);
	*v = n;
	return RES_OK;
}

static char *
get_string(const config_setting_t *group, const char *name)
{
	const char	*v;

	if (config_setting_lookup_string(group, name, &v) == CONFIG_TRUE)
		return xstrdup(v);
	return NULL;
}

/* A path relative to the config file's folder. */
static char *
get_path(struct loader *ld, const config_setting_t *group, const char *name)
{
	char	*v = get_string(group, name), *p;

	if (v == NULL || v[0] == '/')
		return v;
	p = xprintf("%s/%s", ld->dir, v);
	free(v);
	return p;
}

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

static enum result
parse_url(struct loader *ld, const config_setting_t *s, struct endpoint *ep,
    const char *where)
{
	char		*why = NULL;
	enum result	 r;

	if ((r = config_parse_url(ep, &why)) != RES_OK) {
		cfail(ld, s, "%s%s", where, why);
		free(why);
	}
	return r;
}

/*
 * sha256//BASE64 of exactly 32 bytes, several joined by ";" (curl's
 * syntax): 43 base64 letters, the last of them with its two low bits
 * clear, then "=".
 */
static bool
pin_valid(const char *pin)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
	    "qrstuvwxyz0123456789+/";
	const char	*p = pin, *at;

	for (;;) {
		if (strncmp(p, "sha256//", 8) != 0)
			return false;
		p += 8;
		if (strspn(p, b64) != 43 || p[43] != '=' ||
		    (at = strchr(b64, p[42])) == NULL || (at - b64) % 4 != 0)
			return false;
		p += 44;
		if (*p == '\0')
			return true;
		if (*p++ != ';')
			return false;
	}
}

/*
 * Can v go to a server as (part of) a protocol line?  No CR or LF: they
 * would end the line (USER, LOGIN, AUTHENTICATE) and what follows would
 * be a command of its own.  (A NUL cannot be in a C string; where one can
 * come, from a file, a command or a CSV field, it is refused as read.)
 */
bool
config_value_ok(const char *v)
{
	return strpbrk(v, "\r\n") == NULL;
}

/*
 * A proxy: "" (none, not even the environment's), or
 * http://, socks5:// or socks5h:// [USER[:PASSWORD]@]HOST[:PORT][/].
 * NULL if fine, else why not (a phrase).  The user and password may hold
 * anything but control bytes, up to the last '@' (as config_url_redact
 * reads a URL).
 */
static const char *
proxy_check(const char *v)
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

/* ---- password files: there, private, and readable by the runner ---- */

/*
 * Who runs popbridge with this config, and so reads its password files:
 * someone who can read the config.
 *
 *   - A config of another user's is that user's to run: the systemd
 *     unit's User= (installed with -o popbridge, or written by `add`).
 *   - One of root's that only root can read is run by root: a daemon
 *     started as root reads the password files before it becomes `user`
 *     (and its reloads go through a helper that stayed root).
 *   - One of root's that others can read may be run by the unit as well:
 *     by its `user`, if it names one, else by root.
 *
 * RES_CONFIG if `user` names no one.
 */
static enum result
runner_lookup(struct loader *ld)
{
	struct passwd	*pw = NULL;
	const char	*name;
	int		 n = GROUPS_MAX;

	if (ld->runner_known)
		return RES_OK;
	if (ld->owner != 0) {
		ld->runner_why = "the config file's owner";
		if ((pw = getpwuid(ld->owner)) == NULL) {
			/* An owner with no name: only its uid counts. */
			ld->runner.pw_uid = ld->owner;
			ld->runner.pw_gid = (gid_t)-1;
			snprintf(ld->runner_name, sizeof ld->runner_name,
			    "uid %lu", (unsigned long)ld->owner);
			ld->runner.pw_name = ld->runner_name;
			ld->ngroups = 0;
			ld->runner_known = true;
			return RES_OK;
		}
	} else if ((ld->cmode & 044) != 0 && ld->user_key != NULL) {
		name = config_setting_get_string(ld->user_key);
		if ((pw = getpwnam(name)) == NULL)
			return cfail(ld, ld->user_key, "\"user\" \"%s\": no "
			    "such user (it reads the password files and runs "
			    "the daemon)", name);
		ld->runner_why = "the config's \"user\"; the config can be "
		    "read by others";
	} else {
		ld->runner.pw_uid = 0;
		ld->runner_why = "root, the only one who can read the config";
		snprintf(ld->runner_name, sizeof ld->runner_name, "root");
		ld->runner.pw_name = ld->runner_name;
		ld->runner_known = true;
		return RES_OK;
	}
	snprintf(ld->runner_name, sizeof ld->runner_name, "%s", pw->pw_name);
	ld->runner.pw_name = ld->runner_name;
	ld->runner.pw_uid = pw->pw_uid;
	ld->runner.pw_gid = pw->pw_gid;
	if (pw->pw_uid != 0 && getgrouplist(ld->runner_name, pw->pw_gid,
	    ld->groups, &n) == -1)
		n = GROUPS_MAX;		/* more than that: the first ones */
	ld->ngroups = pw->pw_uid != 0 ? n : 0;
	ld->runner_known = true;
	return RES_OK;
}

/* May the runner do `bit` (S_IXUSR: search, S_IRUSR: read) on st? */
static bool
runner_may(const struct loader *ld, const struct stat *st, mode_t bit)
{
	int	 i;

	if (ld->runner.pw_uid == 0)
		return true;
	if (st->st_uid == ld->runner.pw_uid)
		return (st->st_mode & bit) != 0;
	for (i = 0; i < ld->ngroups; i++)
		if (st->st_gid == ld->groups[i])
			return (st->st_mode & (bit >> 3)) != 0;
	if (st->st_gid == ld->runner.pw_gid)
		return (st->st_mode & (bit >> 3)) != 0;
	return (st->st_mode & (bit >> 6)) != 0;
}

static const char *
owner_name(uid_t uid, char *buf, size_t sz)
{
	struct passwd	*pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, sz, "%s", pw->pw_name);
	else
		snprintf(buf, sz, "uid %lu", (unsigned long)uid);
	return buf;
}

/*
 * Can the runner reach and read the file at real (symbolic links
 * resolved): search every folder from / down, then read it?  Mode bits
 * only (no ACLs).  A folder we cannot look at ourselves (EACCES: we are
 * neither root nor the runner) is taken as fine: we cannot tell.
 */
static enum result
runner_reads(struct loader *ld, const config_setting_t *s, const char *where,
    const char *path, const char *real)
{
	struct stat	 st;
	char		*dir, *slash, who[64];
	enum result	 r = RES_OK;

	/* The file first: its owner is the usual mistake (root's, from a
	 * root shell), then every folder above it. */
	if (stat(real, &st) == 0 && !runner_may(ld, &st, S_IRUSR))
		return cfail_as(ld, RES_AUTH, s, "%spassword_file %s cannot be "
		    "read by %s (%s, who runs popbridge): it belongs to %s "
		    "(mode %04o); fix: chown %s %s", where, path,
		    ld->runner_name, ld->runner_why, owner_name(st.st_uid, who,
		    sizeof who), (unsigned int)(st.st_mode & 07777),
		    ld->runner_name, path);
	dir = xstrdup(real);
	for (slash = dir; r == RES_OK && (slash = strchr(slash + 1, '/')) !=
	    NULL; ) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && !runner_may(ld, &st, S_IXUSR))
			r = cfail_as(ld, RES_AUTH, s, "%spassword_file %s cannot "
			    "be read by %s (%s, who runs popbridge): the "
			    "folder %s (owner %s, mode %04o) is closed to them; "
			    "fix: chown %s %s", where, path, ld->runner_name,
			    ld->runner_why, dir, owner_name(st.st_uid, who,
			    sizeof who), (unsigned int)(st.st_mode & 07777),
			    ld->runner_name, dir);
		*slash = '/';
	}
	free(dir);
	return r;
}

/*
 * A password_file as `run` will open it: it exists, is a regular file
 * that only its owner can read (as secret_from_file insists), and the
 * user that runs popbridge can read it.  When we cannot look (not root,
 * not the runner, a folder closed to us), we say nothing: the runner
 * will see for itself.
 */
static enum result
check_password_file(struct loader *ld, const config_setting_t *s,
    const char *where, const char *path)
{
	struct stat	 st;
	char		 real[PATH_MAX];
	enum result	 r;

	if (stat(path, &st) == -1) {
		if (errno == EACCES && geteuid() != 0)
			return RES_OK;
		return cfail(ld, s, "%spassword_file %s: %s", where, path,
		    strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return cfail(ld, s, "%spassword_file %s is not a regular file",
		    where, path);
	if ((st.st_mode & 077) != 0)
		return cfail_as(ld, RES_AUTH, s, "%spassword_file %s can be read "
		    "by others (mode %04o); refusing to use it (fix: chmod 600 "
		    "%s)", where, path, (unsigned int)(st.st_mode & 07777),
		    path);
	if ((r = runner_lookup(ld)) != RES_OK)
		return r;
	if (ld->runner.pw_uid == 0)
		return RES_OK;
	if (ld->runner.pw_uid == geteuid() && geteuid() != 0) {
		/* The runner is us: ask the kernel (ACLs included). */
		if (faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) == -1)
			return cfail_as(ld, RES_AUTH, s, "%spassword_file %s: %s",
			    where, path, strerror(errno));
		return RES_OK;
	}
	if (realpath(path, real) == NULL)
		return RES_OK;		/* stat worked: a race; run will see */
	return runner_reads(ld, s, where, path, real);
}

/* Remember the file that holds an inline password (once). */
static void
note_password_file(struct loader *ld, const config_setting_t *s)
{
	char	*f = setting_file(ld, s);
	size_t	 i;

	for (i = 0; i < ld->npw_files; i++)
		if (strcmp(ld->pw_files[i], f) == 0) {
			free(f);
			return;
		}
	ld->pw_files = xrealloc(ld->pw_files, (ld->npw_files + 1) *
	    sizeof *ld->pw_files);
	ld->pw_files[ld->npw_files++] = f;
}

enum result
load_endpoint_at(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool imap, bool named, const char *where)
{
	const char	*tls, *auth, *why;
	config_setting_t *s;
	int		 nsecrets;
	enum result	 r;

	if ((r = check_keys(ld, g, named ? dest_keys : imap ? imap_keys :
	    pop3_keys, where)) != RES_OK)
		return r;
	ep->imap = imap;
	ep->line = config_setting_source_line(g);
	ep->url = get_string(g, "url");
	ep->user = get_string(g, "user");
	ep->password = get_string(g, "password");
	ep->password_file = get_path(ld, g, "password_file");
	ep->password_command = get_string(g, "password_command");
	ep->ca_file = get_path(ld, g, "ca_file");
	ep->auth = get_string(g, "auth");
	ep->oauth2_token_command = get_string(g, "oauth2_token_command");
	ep->pin = get_string(g, "pin");
	ep->proxy = get_string(g, "proxy");
	ep->oauth2 = ep->auth != NULL && (strcmp(ep->auth, "xoauth2") == 0 ||
	    strcmp(ep->auth, "oauthbearer") == 0);
	if ((r = parse_url(ld, config_setting_get_member(g, "url"), ep,
	    where)) != RES_OK)
		return r;
	if (ep->user[0] == '\0')
		return cfail(ld, config_setting_get_member(g, "user"),
		    "%s\"user\" is empty", where);
	/* A value sent to the server is one line of the protocol: a CR or
	 * LF in it would end that line and start a command of its own. */
	if (!config_value_ok(ep->user))
		return cfail(ld, config_setting_get_member(g, "user"),
		    "%s\"user\" holds a line break (CR or LF)", where);
	if (ep->password != NULL && !config_value_ok(ep->password))
		return cfail(ld, config_setting_get_member(g, "password"),
		    "%s\"password\" holds a line break (CR or LF)", where);
	nsecrets = (ep->password != NULL) + (ep->password_file != NULL) +
	    (ep->password_command != NULL);
	if (ep->oauth2) {
		/* A token is short-lived: it comes fresh from a command. */
		if (ep->oauth2_token_command == NULL || nsecrets != 0)
			return cfail(ld, g, "%sauth = \"%s\" takes "
			    "\"oauth2_token_command\" (a command printing a "
			    "fresh access token) and no password", where,
			    ep->auth);
	} else if (ep->oauth2_token_command != NULL)
		return cfail(ld, config_setting_get_member(g,
		    "oauth2_token_command"), "%s\"oauth2_token_command\" goes "
		    "with auth = \"xoauth2\" or \"oauthbearer\"", where);
	else if (nsecrets != 1)
		return cfail(ld, g, "%sgive exactly one of \"password\", "
		    "\"password_file\" or \"password_command\"", where);
	if (ep->pin != NULL && !pin_valid(ep->pin))
		return cfail(ld, config_setting_get_member(g, "pin"),
		    "%s\"pin\" must be sha256//BASE64 (several joined with "
		    "\";\"), e.g. from: openssl x509 -pubkey -noout -in "
		    "cert.pem | openssl pkey -pubin -outform der | openssl "
		    "dgst -sha256 -binary | base64", where);
	if (ep->proxy != NULL && (why = proxy_check(ep->proxy)) != NULL) {
		char *shown = config_url_redact(ep->proxy);

		r = cfail(ld, config_setting_get_member(g, "proxy"), "%s\"proxy\" "
		    "\"%s\" %s (\"\" for none)", where, shown, why);
		free(shown);
		return r;
	}
	if (ep->password != NULL)
		note_password_file(ld, config_setting_get_member(g, "password"));
	if (ep->password_file != NULL && ld->check_secrets &&
	    (r = check_password_file(ld, config_setting_get_member(g,
	    "password_file"), where, ep->password_file)) != RES_OK)
		return r;
	if (config_setting_lookup_string(g, "tls", &tls) == CONFIG_TRUE) {
		s = config_setting_get_member(g, "tls");
		if (strcmp(tls, "none") != 0)
			return cfail(ld, s, "%s\"tls\" may only be \"none\" "
			    "(TLS is otherwise always required)", where);
		if (ep->tls == TLS_IMPLICIT)
			return cfail(ld, s, "%stls = \"none\" contradicts the "
			    "url's %ss:// (TLS from the first byte)", where,
			    imap ? "imap" : "pop3");
		ep->tls = TLS_NONE;
	}
	if (config_setting_lookup_string(g, "auth", &auth) == CONFIG_TRUE &&
	    strcmp(auth, "auto") != 0 && strcmp(auth, "plain") != 0 &&
	    strcmp(auth, "login") != 0 && strcmp(auth, "any") != 0 &&
	    !ep->oauth2)
		return cfail(ld, config_setting_get_member(g, "auth"),
		    "%s\"auth\" must be \"auto\", \"plain\", \"login\", "
		    "\"any\", \"xoauth2\" or \"oauthbearer\"", where);
	if (imap) {
		ep->mailbox = get_string(g, "mailbox");
		if (ep->mailbox == NULL)
			ep->mailbox = xstrdup("INBOX");
		/* In UTF-8 or modified UTF-7; imap_quote_mailbox encodes it
		 * for the wire, so what it refuses is refused here, at load,
		 * not at every run. */
		if ((why = imap_mailbox_check(ep->mailbox)) != NULL)
			return cfail(ld, config_setting_get_member(g, "mailbox"),
			    "%s\"mailbox\" %s", where, why);
	}
	return RES_OK;
}

/* An account's pop3 or imap block. */
static enum result
load_endpoint(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool imap, const char *acct)
{
	char	 where[160];

	snprintf(where, sizeof where, "account \"%s\": %s: ", acct,
	    imap ? "imap" : "pop3");
	return load_endpoint_at(ld, g, ep, imap, false, where);
}

/* Append flag f to the space-separated *flags; false if f is no flag. */
bool
config_flags_add(char **flags, const char *f)
{
	char	*joined;

	if (!config_flag_valid(f))
		return false;
	joined = xprintf("%s%s%s", *flags, (*flags)[0] != '\0' ? " " : "", f);
	free(*flags);
	*flags = joined;
	return true;
}

/* IMAP system flags, or keywords (atoms). */
bool
config_flag_valid(const char *f)
{
	static const char *const system[] = { "\\Seen", "\\Answered",
		"\\Flagged", "\\Deleted", "\\Draft" };
	size_t	 i;

	for (i = 0; i < sizeof system / sizeof system[0]; i++)
		if (strcasecmp(f, system[i]) == 0)
			return true;
	if (*f == '\0' || strlen(f) > 64)
		return false;
	for (; *f != '\0'; f++)
		if ((unsigned char)*f <= 0x20 || (unsigned char)*f >= 0x7f ||
		    strchr("(){%*\"\\]", *f) != NULL)
			return false;
	return true;
}

static bool
name_valid(const char *n)
{
	if (*n == '\0' || strlen(n) > 64)
		return false;
	for (; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && strchr("._-+@", *n) == NULL)
			return false;
	return true;
}

static enum result
load_account(struct loader *ld, struct config *cf, const config_setting_t *a,
    struct account *ac)
{
	config_setting_t *flags, *f;
	char		 where[100];
	int		 keep, i, n;
	size_t		 j;
	enum result	 r;

	ac->line = config_setting_source_line(a);
	if (config_setting_type(a) != CONFIG_TYPE_GROUP)
		return cfail(ld, a, "each account must be a group { ... }");
	if ((r = check_keys(ld, a, account_keys, "account: ")) != RES_OK)
		return r;
	ac->name = get_string(a, "name");
	if (!name_valid(ac->name))
		return cfail(ld, config_setting_get_member(a, "name"),
		    "account name \"%s\" may have only letters, digits and "
		    "._-+@ (at most 64)", ac->name);
	/* ac is the last of the cf->naccounts loaded so far. */
	for (j = 0; j + 1 < cf->naccounts; j++)
		if (strcmp(cf->accounts[j].name, ac->name) == 0)
			return cfail(ld, a, "account \"%s\" is defined twice",
			    ac->name);
	snprintf(where, sizeof where, "account \"%s\": ", ac->name);
	if ((r = load_endpoint(ld, config_setting_get_member(a, "pop3"),
	    &ac->pop3, false, ac->name)) != RES_OK ||
	    (r = load_endpoint(ld, config_setting_get_member(a, "imap"),
	    &ac->imap, true, ac->name)) != RES_OK)
		return r;
	ac->interval = cf->interval;
	ac->deadline = cf->deadline;
	/* The account's own, else the top-level one; "" for none. */
	if ((ac->notify_command = get_string(a, "notify_command")) == NULL &&
	    cf->notify_command != NULL)
		ac->notify_command = xstrdup(cf->notify_command);
	if (ac->notify_command != NULL && ac->notify_command[0] == '\0') {
		free(ac->notify_command);
		ac->notify_command = NULL;
	}
	if ((r = get_bounded(ld, a, "interval", 60, 7 * 86400, where,
	    &ac->interval)) != RES_OK ||
	    (r = get_bounded(ld, a, "deadline", 10, 7 * 86400, where,
	    &ac->deadline)) != RES_OK ||
	    (r = get_bounded(ld, a, "delete_after", 1, 3650, where,
	    &ac->delete_after)) != RES_OK ||
	    (r = get_max_size(ld, a, where, &ac->max_size)) != RES_OK)
		return r;
	ac->keep = true;
	if (config_setting_lookup_bool(a, "keep", &keep) == CONFIG_TRUE)
		ac->keep = keep != 0;
	if (ac->delete_after > 0 && !ac->keep)
		return cfail(ld, config_setting_get_member(a, "delete_after"),
		    "%s\"delete_after\" keeps mail on the POP3 server for a "
		    "while: it needs keep = true (keep = false deletes at once)",
		    where);
	ac->flags = xstrdup("");
	if ((flags = config_setting_get_member(a, "flags")) != NULL) {
		n = config_setting_length(flags);
		for (i = 0; i < n; i++) {
			f = config_setting_get_elem(flags, (unsigned int)i);
			if (config_setting_type(f) != CONFIG_TYPE_STRING ||
			    !config_flags_add(&ac->flags,
			    config_setting_get_string(f)))
				return cfail(ld, flags, "%s\"flags\" must be "
				    "IMAP flags such as \"\\\\Seen\" or "
				    "keywords", where);
		}
	}
	/* Last: destinations, rules and multidrop use the imap block. */
	return config_route_load(ld, a, ac);
}

/*
 * Every file that holds a password (the main file, or one it @includes)
 * must be readable by its owner only: the same rule wherever the
 * password is written.
 */
static enum result
check_permissions(struct loader *ld)
{
	struct stat	 st;
	size_t		 i;

	for (i = 0; i < ld->npw_files; i++) {
		if (stat(ld->pw_files[i], &st) == -1 || (st.st_mode & 077) == 0)
			continue;
		free(ld->cause);
		ld->cause = xprintf("%s holds a password and others can read "
		    "it (mode %04o); refusing to use it (fix: chmod 600 %s)",
		    ld->pw_files[i], (unsigned int)(st.st_mode & 07777),
		    ld->pw_files[i]);
		return RES_AUTH;
	}
	return RES_OK;
}

/* An error at an account's line (the file that holds the account). */
static enum result
lfail_at(struct loader *ld, size_t acct, int line, const char *fmt, ...)
    PRINTFLIKE(4, 5);

static enum result
lfail_at(struct loader *ld, size_t acct, int line, const char *fmt, ...)
{
	va_list		 ap;
	enum result	 r;

	va_start(ap, fmt);
	r = vcfail(ld, RES_CONFIG, ld->acct_files[acct], line, fmt, ap);
	va_end(ap);
	return r;
}

/* "line 7", or "line 7 of FILE" when the account is in another file. */
static char *
acct_where(const struct loader *ld, size_t acct, int line)
{
	if (strcmp(ld->acct_files[acct], ld->file) == 0)
		return xprintf("line %d", line);
	return xprintf("line %d of %s", line, ld->acct_files[acct]);
}

/*
 * Accounts that read one POP3 mailbox (ident.c's spelling) into different
 * destinations work together: a message goes from the server only once
 * every one of them has it.  That needs one answer to "keep": one account
 * keeping the mail and another deleting it would take it from under the
 * first.  (The same mailbox into the same destination twice is harmless:
 * they share one ledger row per message, and the second finds it done.)
 */
static enum result
check_shared(struct loader *ld, const struct config *cf)
{
	const struct account *a, *b;
	char		*sa, *sb;
	size_t		 i, j;
	enum result	 r = RES_OK;

	for (i = 0; i < cf->naccounts && r == RES_OK; i++) {
		a = &cf->accounts[i];
		sa = ident_source(&a->pop3);
		for (j = 0; j < i && r == RES_OK; j++) {
			b = &cf->accounts[j];
			sb = ident_source(&b->pop3);
			if (strcmp(sa, sb) == 0 && (a->keep != b->keep ||
			    a->delete_after != b->delete_after)) {
				char *wa = acct_where(ld, i, a->line);
				char *wb = acct_where(ld, j, b->line);

				r = lfail_at(ld, i, a->line, "accounts \"%s\" (%s) "
				    "and \"%s\" (%s) read the same POP3 "
				    "mailbox %s, but keep or delete_after differ: "
				    "one would delete what the other still needs; "
				    "give both the same", b->name, wb,
				    a->name, wa, sa);
				free(wa);
				free(wb);
			}
			free(sb);
		}
		free(sa);
	}
	return r;
}

/*
 * The name an "@include" names, from the line that holds it (libconfig
 * 1.5 says only "cannot open include file"); "" if it cannot be found.
 */
static void
include_name(const char *file, int line, char *out, size_t outsz)
{
	char	 buf[1024], *q, *e;
	size_t	 n = 0;
	FILE	*f;
	int	 c, at = 1;

	out[0] = '\0';
	if ((f = fopen(file, "re")) == NULL)
		return;
	while (at < line && (c = getc(f)) != EOF)
		if (c == '\n')
			at++;
	while (n < sizeof buf - 1 && (c = getc(f)) != EOF && c != '\n')
		buf[n++] = (char)c;
	buf[n] = '\0';
	fclose(f);
	if ((q = strstr(buf, "@include")) != NULL &&
	    (q = strchr(q, '"')) != NULL && (e = strchr(q + 1, '"')) != NULL)
		log_clean(out, outsz, q + 1, (size_t)(e - q - 1));
}

/*
 * Read the file (or the copy of it open as fd, if not -1) and what it
 * @includes.  libconfig 1.5 (Debian 12) opens an included file by the
 * name as written, from the working folder; config_set_include_dir would
 * prefix every name with a folder, absolute ones too, which breaks them.
 * So the file is read from its own folder: a relative @include (in an
 * included file as well) starts at the folder of the main file, as
 * relative paths of settings do, wherever popbridge was started.  Its
 * errors name the file that holds them.
 */
static enum result
read_config(config_t *cfg, struct loader *ld, int fd, char **cause)
{
	char		*tmp, *base, *file, inc[200];
	FILE		*f = NULL;
	int		 here, rc, e, copy = -1;
	enum result	 r;

	tmp = xstrdup(ld->file);
	base = xstrdup(basename(tmp));
	free(tmp);
	/* A copy is read from its start: the descriptor may be shared with
	 * the one who wrote it, its offset at the end. */
	if (fd != -1 && ((copy = dup(fd)) == -1 || (f = fdopen(copy, "re")) ==
	    NULL || fseeko(f, 0, SEEK_SET) == -1)) {
		e = errno;
		if (f != NULL)
			fclose(f);
		else if (copy != -1)
			close(copy);
		free(base);
		return fail(cause, RES_CONFIG, "%s: cannot read: %s", ld->file,
		    strerror(e));
	}
	here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (here != -1 && chdir(ld->dir) == 0) {
		ld->read_as = base;
		rc = f != NULL ? config_read(cfg, f) : config_read_file(cfg,
		    base);
		e = errno;
		if (fchdir(here) == -1)
			fatal("cannot return to the working folder: %s",
			    strerror(errno));
	} else {
		ld->read_as = ld->file;
		rc = f != NULL ? config_read(cfg, f) : config_read_file(cfg,
		    ld->file);
		e = errno;
	}
	if (f != NULL)
		fclose(f);
	if (here != -1)
		close(here);
	if (rc == CONFIG_TRUE) {
		/* read_as must live as long as the settings' file names are
		 * compared with it: until config_load returns. */
		ld->read_base = base;
		return RES_OK;
	}
	if (config_error_type(cfg) == CONFIG_ERR_FILE_IO)
		r = fail(cause, RES_CONFIG, "%s: cannot read: %s", ld->file,
		    strerror(e));
	else {
		file = source_file(ld, config_error_file(cfg));
		inc[0] = '\0';
		if (strcmp(config_error_text(cfg), "cannot open include file") ==
		    0)
			include_name(file, config_error_line(cfg), inc,
			    sizeof inc);
		if (inc[0] != '\0')
			r = fail(cause, RES_CONFIG, "%s:%d: cannot open include "
			    "file %s%s%s", file, config_error_line(cfg),
			    inc[0] == '/' ? "" : ld->dir, inc[0] == '/' ? "" :
			    "/", inc);
		else
			r = fail(cause, RES_CONFIG, "%s:%d: %s", file,
			    config_error_line(cfg), config_error_text(cfg));
		free(file);
	}
	free(base);
	ld->read_as = NULL;
	return r;
}

static void
loader_free(struct loader *ld)
{
	size_t	 i;

	for (i = 0; i < ld->npw_files; i++)
		free(ld->pw_files[i]);
	free(ld->pw_files);
	for (i = 0; i < ld->naccts; i++)
		free(ld->acct_files[i]);
	free(ld->acct_files);
	free(ld->read_base);
	free(ld->dir);
}

/*
 * The config at path, or its copy open as fd (-1: none).  check_secrets:
 * check the password files as `run` will read them (check_password_file).
 */
static enum result
load(const char *path, int fd, bool check_secrets, struct config **cfp,
    char **cause)
{
	config_t	 cfg;
	struct loader	 ld;
	struct config	*cf;
	config_setting_t *root, *accts, *a;
	struct stat	 st;
	const char	*sd;
	char		*tmp;
	int		 i, n;
	enum result	 r = RES_OK;

	*cfp = NULL;
	memset(&ld, 0, sizeof ld);
	ld.file = path;
	ld.check_secrets = check_secrets;
	tmp = xstrdup(path);
	ld.dir = xstrdup(dirname(tmp));
	free(tmp);
	config_init(&cfg);
	if ((r = read_config(&cfg, &ld, fd, cause)) != RES_OK) {
		config_destroy(&cfg);
		loader_free(&ld);
		return r;
	}
	cf = xcalloc(1, sizeof *cf);
	cf->path = xstrdup(path);
	cf->timeout = 120;
	root = config_root_setting(&cfg);
	if ((r = check_keys(&ld, root, top_keys, "")) != RES_OK)
		goto out;
	if (config_lookup_string(&cfg, "state_dir", &sd) == CONFIG_TRUE) {
		if (sd[0] != '/') {
			r = cfail(&ld, config_lookup(&cfg, "state_dir"),
			    "\"state_dir\" must be an absolute path");
			goto out;
		}
		cf->state_dir = xstrdup(sd);
	} else
		cf->state_dir = config_default_state_dir();
	cf->interval = 300;
	cf->jobs = 4;
	cf->max_backoff = 3600;
	if ((r = get_bounded(&ld, root, "timeout", 5, 3600, "",
	    &cf->timeout)) != RES_OK ||
	    (r = get_bounded(&ld, root, "deadline", 10, 7 * 86400, "",
	    &cf->deadline)) != RES_OK ||
	    (r = get_bounded(&ld, root, "interval", 60, 7 * 86400, "",
	    &cf->interval)) != RES_OK ||
	    (r = get_bounded(&ld, root, "jobs", 1, 64, "", &cf->jobs)) !=
	    RES_OK ||
	    (r = get_bounded(&ld, root, "max_backoff", 60, 7 * 86400, "",
	    &cf->max_backoff)) != RES_OK)
		goto out;
	cf->user = get_string(root, "user");
	cf->notify_command = get_string(root, "notify_command");
	if ((r = config_listen_load(&ld, root, ld.dir, cf)) != RES_OK)
		goto out;
	if ((cf->pid_file = get_string(root, "pid_file")) == NULL)
		cf->pid_file = xprintf("%s/popbridge.pid", cf->state_dir);
	else if (cf->pid_file[0] != '/') {
		r = cfail(&ld, config_lookup(&cfg, "pid_file"),
		    "\"pid_file\" must be an absolute path");
		goto out;
	}
	/* Who will read the password files (runner_lookup). */
	ld.user_key = config_lookup(&cfg, "user");
	if (stat(path, &st) == 0) {
		ld.owner = st.st_uid;
		ld.cmode = st.st_mode;
	} else
		ld.owner = geteuid();
	accts = config_lookup(&cfg, "accounts");
	n = config_setting_length(accts);
	cf->accounts = xcalloc((size_t)n + 1, sizeof *cf->accounts);
	ld.acct_files = xcalloc((size_t)n + 1, sizeof *ld.acct_files);
	for (i = 0; i < n; i++) {
		a = config_setting_get_elem(accts, (unsigned int)i);
		ld.acct_files[ld.naccts++] = setting_file(&ld, a);
		cf->naccounts++;
		r = load_account(&ld, cf, a, &cf->accounts[i]);
		if (r != RES_OK)
			goto out;
	}
	if ((r = check_shared(&ld, cf)) != RES_OK)
		goto out;
	r = check_permissions(&ld);
out:
	config_destroy(&cfg);
	if (r != RES_OK) {
		free(*cause);
		*cause = ld.cause;
		ld.cause = NULL;
		config_free(cf);
	} else
		*cfp = cf;
	free(ld.cause);
	loader_free(&ld);
	return r;
}

enum result
config_load(const char *path, struct config **cfp, char **cause)
{
	return load(path, -1, true, cfp, cause);
}

enum result
config_load_fd(int fd, const char *path, struct config **cfp, char **cause)
{
	return load(path, fd, false, cfp, cause);
}

void
config_endpoint_free(struct endpoint *ep)
{
	free(ep->url);
	free(ep->host);
	free(ep->user);
	secret_free(ep->password);
	free(ep->password_file);
	free(ep->password_command);
	free(ep->ca_file);
	free(ep->auth);
	free(ep->oauth2_token_command);
	free(ep->pin);
	secret_free(ep->proxy);		/* it may hold a proxy password */
	free(ep->mailbox);
}

void
config_free(struct config *cf)
{
	size_t	 i;

	if (cf == NULL)
		return;
	for (i = 0; i < cf->naccounts; i++) {
		config_endpoint_free(&cf->accounts[i].pop3);
		config_endpoint_free(&cf->accounts[i].imap);
		free(cf->accounts[i].name);
		free(cf->accounts[i].flags);
		free(cf->accounts[i].notify_command);
		routing_free(cf->accounts[i].routing);
	}
	free(cf->accounts);
	free(cf->state_dir);
	free(cf->user);
	free(cf->pid_file);
	free(cf->notify_command);
	free(cf->listen);
	free(cf->listen_token_file);
	free(cf->listen_token_command);
	free(cf->path);
	free(cf);
}

const struct account *
config_find(const struct config *cf, const char *name)
{
	size_t	 i;

	for (i = 0; i < cf->naccounts; i++)
		if (strcmp(cf->accounts[i].name, name) == 0)
			return &cf->accounts[i];
	return NULL;
}

/*
 * The first line of a stream without its LF or CR LF: *secret, malloc'd
 * ("" if the line is empty or there is none), or NULL and *bad saying why
 * it cannot be sent as it is (a NUL or a lone CR in it, or too long).  A
 * secret is sent whole or not at all: cut at the NUL, or the CR ending
 * the protocol line early, it would fail the login at best.
 */
static void
first_line(FILE *f, char **secret, const char **bad)
{
	char	*buf = xcalloc(1, SECRET_MAX + 2);
	size_t	 n = 0;
	int	 c;

	*bad = NULL;
	while ((c = getc(f)) != EOF && c != '\n') {
		if (n == SECRET_MAX + 1) {
			*bad = "its first line is longer than 4096 bytes";
			break;
		}
		buf[n++] = (char)c;
	}
	if (*bad == NULL && n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (*bad == NULL && n > SECRET_MAX)
		*bad = "its first line is longer than 4096 bytes";
	else if (*bad == NULL && memchr(buf, '\0', n) != NULL)
		*bad = "its first line holds a NUL byte";
	else if (*bad == NULL && memchr(buf, '\r', n) != NULL)
		*bad = "its first line holds a CR";
	if (*bad != NULL) {
		explicit_bzero(buf, SECRET_MAX + 2);
		free(buf);
		buf = NULL;
	}
	*secret = buf;
}

static enum result
secret_from_file(const struct endpoint *ep, char **secret, char **cause)
{
	struct stat	 st;
	const char	*bad;
	FILE		*f;
	int		 fd;

	if ((fd = open(ep->password_file, O_RDONLY | O_CLOEXEC)) == -1)
		return fail(cause, RES_CONFIG, "password_file %s: %s",
		    ep->password_file, strerror(errno));
	if (fstat(fd, &st) == -1 || (st.st_mode & 077) != 0) {
		close(fd);
		return fail(cause, RES_AUTH, "password_file %s can be read by "
		    "others; refusing to use it (fix: chmod 600 %s)",
		    ep->password_file, ep->password_file);
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return fail(cause, RES_TEMP, "password_file %s: %s",
		    ep->password_file, strerror(errno));
	}
	first_line(f, secret, &bad);
	fclose(f);
	if (bad != NULL)
		return fail(cause, RES_CONFIG, "password_file %s: %s; refusing "
		    "to send it", ep->password_file, bad);
	if (**secret == '\0') {
		secret_free(*secret);
		*secret = NULL;
		return fail(cause, RES_CONFIG, "password_file %s is empty",
		    ep->password_file);
	}
	return RES_OK;
}

/* What a command printed: its stdout's first line (the secret, up to
 * the bound) and the start of its stderr (for a failure's message). */
struct cmd_out {
	char		 line[SECRET_MAX + 2];
	size_t		 nline;
	bool		 line_done;	/* its LF seen, or the bound reached */
	char		 err[ERR_KEEP + 1];
	size_t		 nerr;
};

/* The command's fd onto the child's target fd, close-on-exec cleared. */
static void
child_fd(int fd, int target)
{
	if (fd == target)
		(void)fcntl(fd, F_SETFD, 0);
	else if (dup2(fd, target) == -1)
		_exit(127);
}

/*
 * Take what arrives on the two pipes until both are closed: the first
 * line of stdout and the first ERR_KEEP bytes of stderr are kept, the rest
 * read and dropped (a command must not die of SIGPIPE, nor block on a
 * full pipe while we wait for the other one).
 */
static void
cmd_read(int ofd, int efd, struct cmd_out *o)
{
	struct pollfd	 pfd[2];
	char		 buf[4096];
	ssize_t		 n;
	size_t		 take, i;
	int		 open_fds = 2, k;

	pfd[0].fd = ofd;
	pfd[1].fd = efd;
	pfd[0].events = pfd[1].events = POLLIN;
	while (open_fds > 0) {
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (k = 0; k < 2; k++) {
			if (pfd[k].fd == -1 || pfd[k].revents == 0)
				continue;
			n = read(pfd[k].fd, buf, sizeof buf);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[k].fd = -1;
				open_fds--;
				continue;
			}
			if (k == 1) {
				take = (size_t)n < ERR_KEEP - o->nerr ?
				    (size_t)n : ERR_KEEP - o->nerr;
				memcpy(o->err + o->nerr, buf, take);
				o->nerr += take;
				continue;
			}
			for (i = 0; i < (size_t)n && !o->line_done; i++) {
				o->line[o->nline++] = buf[i];
				if (buf[i] == '\n' || o->nline == sizeof o->line)
					o->line_done = true;
			}
		}
		explicit_bzero(buf, sizeof buf);
	}
	o->err[o->nerr] = '\0';
}

/*
 * The command's stderr, fit for a message: its first ERR_LINES lines,
 * each cut to ERR_LINE_MAX and cleaned of control bytes, joined by " | ".
 * The secret is its stdout: never shown; should stderr hold it as well
 * (a "set -x" trace, a helper that echoes), it is shown as "***".
 */
static char *
cmd_stderr(struct cmd_out *o, const char *secret)
{
	char		 clean[ERR_LINE_MAX + 1], *out = xstrdup(""), *next;
	char		*p, *e, *hit;
	size_t		 slen = secret != NULL ? strlen(secret) : 0, n;
	int		 lines = 0, more = 0;

	if (slen > 0)
		while ((hit = memmem(o->err, o->nerr, secret, slen)) != NULL) {
			memmove(hit + 3, hit + slen, o->nerr - (size_t)(hit -
			    o->err) - slen + 1);
			memcpy(hit, "***", 3);
			o->nerr -= slen - 3;
		}
	for (p = o->err; p < o->err + o->nerr; p = e + (*e != '\0')) {
		e = p + strcspn(p, "\n");
		n = (size_t)(e - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		if (lines == ERR_LINES) {
			more++;
			continue;
		}
		log_clean(clean, sizeof clean, p, n);
		next = xprintf("%s%s%s", out, lines > 0 ? " | " : "", clean);
		free(out);
		out = next;
		lines++;
	}
	if (more > 0) {
		next = xprintf("%s | (%d more line%s)", out, more, more == 1 ?
		    "" : "s");
		free(out);
		out = next;
	}
	explicit_bzero(o->err, sizeof o->err);
	return out;
}

/*
 * Run cmd with sh -c, as popen would, but with its stderr captured too:
 * a helper that fails says why there ("gpg: decryption failed"), and that
 * belongs in the failure's message.  *status as from waitpid, -1 if the
 * command could not be run.
 */
static enum result
cmd_run(const char *cmd, const char *what, struct cmd_out *o, int *status,
    char **cause)
{
	int	 out[2] = { -1, -1 }, err[2] = { -1, -1 }, e;
	pid_t	 pid;

	memset(o, 0, sizeof *o);
	*status = -1;
	fflush(NULL);
	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1 ||
	    (pid = fork()) == -1) {
		e = errno;
		if (out[0] != -1) {
			close(out[0]);
			close(out[1]);
		}
		if (err[0] != -1) {
			close(err[0]);
			close(err[1]);
		}
		return fail(cause, RES_TEMP, "%s: %s", what, strerror(e));
	}
	if (pid == 0) {
		child_fd(out[1], STDOUT_FILENO);
		child_fd(err[1], STDERR_FILENO);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	cmd_read(out[0], err[0], o);
	close(out[0]);
	close(err[0]);
	while (waitpid(pid, status, 0) == -1)
		if (errno != EINTR) {
			*status = -1;
			break;
		}
	return RES_OK;
}

static enum result
secret_from_command(const char *cmd, const char *what, char **secret,
    char **cause)
{
	const char	*bad, *kind = strncmp(what, "oauth2", 6) == 0 ? "token" :
			    "password";
	struct cmd_out	*o = xcalloc(1, sizeof *o);
	char		*raw, *why;
	FILE		*f;
	int		 status;
	enum result	 r;

	*secret = NULL;
	if ((r = cmd_run(cmd, what, o, &status, cause)) != RES_OK) {
		free(o);
		return r;
	}
	/* The first line's checks are those of a password_file's. */
	bad = "it printed nothing";
	if (o->nline == 0)
		*secret = xstrdup("");
	else if ((f = fmemopen(o->line, o->nline, "r")) != NULL) {
		first_line(f, secret, &bad);
		fclose(f);
	}
	/* Its raw first line, to keep it out of what stderr shows. */
	raw = xstrndup(o->line, strcspn(o->line, "\r\n"));
	explicit_bzero(o->line, sizeof o->line);
	if (*secret == NULL) {
		r = fail(cause, RES_CONFIG, "%s printed a %s that cannot be "
		    "sent: %s", what, kind, bad);
		goto out;
	}
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    **secret != '\0') {
		r = RES_OK;
		goto out;
	}
	secret_free(*secret);
	*secret = NULL;
	why = cmd_stderr(o, raw);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		r = fail(cause, RES_TEMP, "%s failed (exit %d)%s%s", what,
		    WEXITSTATUS(status), why[0] != '\0' ? ": " : "", why);
	else if (status != -1 && WIFSIGNALED(status))
		r = fail(cause, RES_TEMP, "%s was killed by signal %d%s%s", what,
		    WTERMSIG(status), why[0] != '\0' ? ": " : "", why);
	else
		r = fail(cause, RES_TEMP, "%s printed no %s%s%s", what, kind,
		    why[0] != '\0' ? ": " : "", why);
	free(why);
out:
	secret_free(raw);
	explicit_bzero(o, sizeof *o);
	free(o);
	return r;
}

enum result
config_secret(const struct endpoint *ep, char **secret, char **cause)
{
	*secret = NULL;
	/* Checked at load as well; migrate and batch fill it themselves. */
	if (ep->password != NULL) {
		if (!config_value_ok(ep->password))
			return fail(cause, RES_CONFIG, "the password holds a "
			    "line break (CR or LF); refusing to send it");
		*secret = xstrdup(ep->password);
		return RES_OK;
	}
	if (ep->password_file != NULL)
		return secret_from_file(ep, secret, cause);
	if (ep->oauth2_token_command != NULL)
		return secret_from_command(ep->oauth2_token_command,
		    "oauth2_token_command", secret, cause);
	return secret_from_command(ep->password_command, "password_command",
	    secret, cause);
}

char *
config_default_state_dir(void)
{
	const char	*xdg = getenv("XDG_STATE_HOME"), *home;

	if (xdg != NULL && xdg[0] == '/')
		return xprintf("%s/popbridge", xdg);
	if (geteuid() == 0)
		return xstrdup("/var/lib/popbridge");
	if ((home = getenv("HOME")) == NULL || home[0] != '/')
		return xstrdup("/var/lib/popbridge");
	return xprintf("%s/.local/state/popbridge", home);
}

/*
 * One place for what all commands know: `migrate` and `batch` keep their
 * ledgers where `run` and the daemon do, so that a mailbox migrated first
 * and then polled (or the other way round) is not imported twice.
 */
enum result
config_state_dir(const struct globals *g, char **dir, char **cause)
{
	struct config	*cf;
	char		*why = NULL;
	enum result	 r;

	*dir = NULL;
	if (!g->config_given && access(g->config, R_OK) == -1) {
		*dir = config_default_state_dir();
		return RES_OK;
	}
	/* Only state_dir is wanted: a password file another command would
	 * refuse is no reason to keep ledgers elsewhere. */
	if ((r = load(g->config, -1, false, &cf, &why)) != RES_OK) {
		if (g->config_given) {
			free(*cause);
			*cause = why;
			return r;
		}
		log_warn("%s (its state_dir is not used; give -c or "
		    "--state-dir)", why);
		free(why);
		*dir = config_default_state_dir();
		return RES_OK;
	}
	*dir = xstrdup(cf->state_dir);
	config_free(cf);
	return RES_OK;
}
