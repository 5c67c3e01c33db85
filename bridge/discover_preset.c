/*
 * Discovery's first source: the provider presets (config/providers.conf,
 * installed to PREFIX/share/popbridge/), read with no network at all.
 * The file is ours, so its parser is strict: a line that does not follow
 * the format is an error with FILE:LINE.
 */
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bridge.h"
#include "discover_int.h"

#define PRESETS_MAX	(1024 * 1024)	/* bytes of the preset file */
#define PRESET_LINE_MAX	1024
#define PRESETS_NAME	"providers.conf"

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
	if (!discover_host_valid(f[0]) || strchr(f[0], '.') == NULL)
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

enum result
discover_from_presets(const char *address, struct discovery *d, bool *found,
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
