/*
 * `popbridge add ADDRESS --to IMAP-URL`: set up an account in one step, as
 * a mail client's account wizard does.  The order of operations is what
 * keeps a failed attempt from leaving anything behind:
 *
 *   1. check everything that needs no network: the command line, the
 *      existing config (it must load: we never build on a broken file),
 *      the account name, where the files will go and that we may write
 *      there;
 *   2. find the POP3 server (discover.c) unless --pop3 names it;
 *   3. get the IMAP user, the login methods, both passwords (or, where
 *      the provider takes OAuth2 only, a command that prints a token) and
 *      keep or delete (options, environment, or the terminal: Enter takes
 *      the default shown in brackets; passwords without echo);
 *   4. log in to both servers as `check` does.  If either refuses, stop:
 *      nothing has been written.  If a login could not be tried at all
 *      (no network, a server down: RES_TEMP), stop too, unless
 *      --save-untested (or a "yes" on the terminal) says to save the
 *      account untested, which it then says;
 *   5. write each secret to its own 0600 file (temp file, fsync, rename),
 *      owned by the user that will run popbridge (see add_owner), in a
 *      folder that user can enter;
 *   6. insert the account's text into the config, keeping the user's
 *      comments and layout (libconfig's writer would drop them), write the
 *      result to a temp file next to it, prove that it loads with
 *      config_load (which checks the secret files as `check -n` does) and
 *      holds the new account, and only then rename it over the old one.
 *      Any failure from 5 on removes the secret files again.
 *
 * Passwords live in memory only as long as needed and are wiped with
 * secret_free; they are never printed or logged.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"

#define SECRET_MAX	4096		/* as config.c reads them back */
#define VALUE_MAX	255		/* a user name, a mailbox */
#define CONFIG_MAX	(4 * 1024 * 1024)
#define LOGIN_TIMEOUT	60		/* seconds, when no config says */
#define DEFAULT_STATE	"/var/lib/popbridge"
#define UNIT_NAME	"popbridge.service"
#define UNIT_MAX	(64 * 1024)
#define OAUTH2_README	"README.md, section \"OAuth2 (Outlook.com, Hotmail)\""

const char add_usage[] =
    "usage: popbridge [-c FILE] add ADDRESS --to IMAP-URL [--imap-user U]\n"
    "           [--mailbox M] [--name NAME] [--pop3 POP3-URL] "
    "[--pop3-user U]\n"
    "           [--ca-file F] [--pop3-password-file F] "
    "[--imap-password-file F]\n"
    "           [--pop3-auth M] [--imap-auth M] [--pop3-token-command C]\n"
    "           [--imap-token-command C] [--keep | --delete] "
    "[--owner USER]\n"
    "           [--state-dir D] [--allow-plaintext] [--save-untested]\n";

/* One side's login test, for the summary. */
struct side {
	bool		 skipped;	/* not tried: no token command yet */
	enum result	 r;
	enum dns_result	 dns;		/* DNS_OK unless the name failed */
};

struct add {
	/* the command line */
	const char	*address;
	const char	*name_opt, *to, *mailbox, *imap_user, *pop3_user;
	const char	*pop3_url, *ca_opt, *pop3_pwfile, *imap_pwfile;
	const char	*state_dir, *owner_opt;
	const char	*auth_opt[2], *token_opt[2];	/* pop3, imap */
	int		 keep_opt;	/* -1 not given, 0 --delete, 1 --keep */
	bool		 allow_plain;
	bool		 save_untested;
	bool		 usage;		/* the failure is the command line's */
	bool		 interactive;	/* stdin a terminal: ask what has a
					 * default, too */

	/* Who runs popbridge and so must read the files (add_owner). */
	char		 owner[64];
	uid_t		 owner_uid;
	gid_t		 owner_gid;
	const char	*owner_why;
	bool		 chown_config;	/* the config goes to the owner too */
	bool		 user_key;	/* a new config says user = owner */
	char		*unit_note;	/* the unit's user who does not exist */

	char		*config;	/* the config file, symlinks resolved */
	bool		 exists;
	struct stat	 st;		/* of the existing config */
	struct config	*cf;		/* the existing config, or NULL */
	char		*text;		/* its bytes */
	size_t		 textlen;
	char		*secrets;	/* the folder of the secret files */
	char		*name;
	char		*ca;		/* --ca-file, absolute */
	char		*source;	/* where the POP3 server came from */
	struct endpoint	 pop3, imap;	/* for the logins, secrets inside */
	char		*files[2];	/* secret files written so far */
	bool		 made_dir;
	char		*group;		/* the account's text in the config */
	char		*hint;		/* the preset's advice on a refusal */
	const char	*auth_found;	/* POP3 takes only this (OAuth2) */
	bool		 keep;
	bool		 placeholder[2];	/* token command still to be set */
	char		*untested;	/* why it was saved untested, or NULL */
};

/* A failure of the command line (exit 64), with its cause. */
static enum result
ufail(struct add *a, char **cause, const char *fmt, ...) PRINTFLIKE(3, 4);

static enum result
ufail(struct add *a, char **cause, const char *fmt, ...)
{
	va_list	 ap;

	a->usage = true;
	free(*cause);
	va_start(ap, fmt);
	*cause = xvprintf(fmt, ap);
	va_end(ap);
	return RES_CONFIG;
}

/* Text that can go into a config string and a log line. */
static bool
text_ok(const char *s, size_t max)
{
	size_t	 n = strlen(s), i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* The same rule as config.c's account names. */
static bool
name_ok(const char *n)
{
	if (*n == '\0' || strlen(n) > 64)
		return false;
	for (; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && *n != '.' && *n != '_' &&
		    *n != '-' && *n != '+' && *n != '@')
			return false;
	return true;
}

/* The login methods of config.c's "auth". */
static bool
auth_ok(const char *m)
{
	static const char *const ok[] = { "auto", "plain", "login", "any",
		"xoauth2", "oauthbearer" };
	size_t	 i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(m, ok[i]) == 0)
			return true;
	return false;
}

static bool
auth_is_oauth2(const char *m)
{
	return m != NULL && (strcmp(m, "xoauth2") == 0 ||
	    strcmp(m, "oauthbearer") == 0);
}

/* ---- step 1: the command line, the config, names and places ---- */

static int
add_args(struct add *a, int argc, char **argv)
{
	enum { O_NAME = 256, O_TO, O_MAILBOX, O_IMAP_USER, O_POP3_USER,
		O_POP3, O_CA, O_POP3_PW, O_IMAP_PW, O_STATE, O_PLAIN, O_HELP,
		O_OWNER, O_UNTESTED, O_KEEP, O_DELETE, O_POP3_AUTH, O_IMAP_AUTH,
		O_POP3_TOKEN, O_IMAP_TOKEN };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, O_NAME },
		{ "to", required_argument, NULL, O_TO },
		{ "mailbox", required_argument, NULL, O_MAILBOX },
		{ "imap-user", required_argument, NULL, O_IMAP_USER },
		{ "pop3-user", required_argument, NULL, O_POP3_USER },
		{ "pop3", required_argument, NULL, O_POP3 },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "pop3-password-file", required_argument, NULL, O_POP3_PW },
		{ "imap-password-file", required_argument, NULL, O_IMAP_PW },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "allow-plaintext", no_argument, NULL, O_PLAIN },
		{ "owner", required_argument, NULL, O_OWNER },
		{ "save-untested", no_argument, NULL, O_UNTESTED },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "delete", no_argument, NULL, O_DELETE },
		{ "pop3-auth", required_argument, NULL, O_POP3_AUTH },
		{ "imap-auth", required_argument, NULL, O_IMAP_AUTH },
		{ "pop3-token-command", required_argument, NULL, O_POP3_TOKEN },
		{ "imap-token-command", required_argument, NULL, O_IMAP_TOKEN },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 }
	};
	int	 ch;

	/* 0, not 1: GNU getopt then starts afresh and lets options follow
	 * ADDRESS (main's own getopt stops at the first word). */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case O_NAME: a->name_opt = optarg; break;
		case O_TO: a->to = optarg; break;
		case O_MAILBOX: a->mailbox = optarg; break;
		case O_IMAP_USER: a->imap_user = optarg; break;
		case O_POP3_USER: a->pop3_user = optarg; break;
		case O_POP3: a->pop3_url = optarg; break;
		case O_CA: a->ca_opt = optarg; break;
		case O_POP3_PW: a->pop3_pwfile = optarg; break;
		case O_IMAP_PW: a->imap_pwfile = optarg; break;
		case O_STATE: a->state_dir = optarg; break;
		case O_PLAIN: a->allow_plain = true; break;
		case O_OWNER: a->owner_opt = optarg; break;
		case O_UNTESTED: a->save_untested = true; break;
		case O_KEEP:
		case O_DELETE:
			if (a->keep_opt != -1 && a->keep_opt != (ch == O_KEEP)) {
				fprintf(stderr, "popbridge: add: --keep or "
				    "--delete, not both\n");
				return EX_USAGE;
			}
			a->keep_opt = ch == O_KEEP;
			break;
		case O_POP3_AUTH: a->auth_opt[0] = optarg; break;
		case O_IMAP_AUTH: a->auth_opt[1] = optarg; break;
		case O_POP3_TOKEN: a->token_opt[0] = optarg; break;
		case O_IMAP_TOKEN: a->token_opt[1] = optarg; break;
		case O_HELP:
			fputs(add_usage, stdout);
			return -1;
		default:
			fputs(add_usage, stderr);
			return EX_USAGE;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "popbridge: add: %s\n", argc - optind == 0 ?
		    "give the ADDRESS of the POP3 mailbox" : "one ADDRESS only");
		fputs(add_usage, stderr);
		return EX_USAGE;
	}
	a->address = argv[optind];
	if (a->to == NULL) {
		fprintf(stderr, "popbridge: add: give the IMAP account the mail "
		    "goes to: --to imaps://HOST[:PORT]\n");
		fputs(add_usage, stderr);
		return EX_USAGE;
	}
	if (a->mailbox == NULL)
		a->mailbox = "INBOX";
	for (ch = 0; ch < 2; ch++)
		if (a->auth_opt[ch] != NULL && !auth_ok(a->auth_opt[ch])) {
			fprintf(stderr, "popbridge: add: --%s-auth: one of "
			    "auto, plain, login, any, xoauth2, oauthbearer\n",
			    ch == 0 ? "pop3" : "imap");
			return EX_USAGE;
		}
	return 0;
}

/* The whole config into memory, bounded; its stat tells a change. */
static enum result
read_config_text(struct add *a, char **cause)
{
	enum result	 r;

	if ((r = file_read(a->config, CONFIG_MAX, &a->text, &a->textlen,
	    &a->st, cause)) != RES_OK)
		return r;
	if (memchr(a->text, '\0', a->textlen) != NULL)
		return fail(cause, RES_CONFIG, "%s: not a text file", a->config);
	return RES_OK;
}

/*
 * Which file: -c, symlinks resolved (rename must replace the target, not
 * the link).  An existing config must load as it is; an empty or missing
 * one is started from scratch.
 */
static enum result
add_config(struct add *a, const char *path, char **cause)
{
	char		 real[PATH_MAX], *tmp, *dir, *base;
	enum result	 r;

	if (realpath(path, real) != NULL) {
		a->config = xstrdup(real);
		a->exists = true;
	} else if (errno == ENOENT) {
		tmp = xstrdup(path);
		dir = dirname(tmp);
		if (realpath(dir, real) == NULL) {
			r = fail(cause, RES_CONFIG, "%s: folder %s: %s", path,
			    dir, strerror(errno));
			free(tmp);
			return r;
		}
		free(tmp);
		tmp = xstrdup(path);
		base = basename(tmp);
		a->config = xprintf("%s/%s", strcmp(real, "/") == 0 ? "" : real,
		    base);
		free(tmp);
	} else
		return fail(cause, RES_CONFIG, "%s: %s", path, strerror(errno));
	if (!a->exists)
		return RES_OK;
	if ((r = read_config_text(a, cause)) != RES_OK)
		return r;
	if (a->textlen == 0)
		return RES_OK;
	if ((r = config_load(a->config, &a->cf, cause)) != RES_OK) {
		tmp = xprintf("%s (fix it first; nothing was changed)", *cause);
		free(*cause);
		*cause = tmp;
	}
	return r;
}

/* Secrets go to CONFIG-without-.conf/ ("/etc/popbridge.conf" ->
 * "/etc/popbridge/", as in the README), else CONFIG.secrets/. */
static char *
secrets_dir(const char *config)
{
	size_t	 n = strlen(config);
	const char *base = strrchr(config, '/') + 1;

	if (n > 5 && strcmp(config + n - 5, ".conf") == 0 &&
	    strlen(base) > 5)
		return xstrndup(config, n - 5);
	return xprintf("%s.secrets", config);
}

/* May we create files next to the config and in the secrets folder?
 * Asked now, so a permission problem shows before any login. */
static enum result
add_where(struct add *a, char **cause)
{
	struct stat	 st;
	char		*tmp = xstrdup(a->config), *dir = dirname(tmp);
	enum result	 r = RES_OK;

	a->secrets = secrets_dir(a->config);
	if (access(dir, W_OK | X_OK) == -1)
		r = fail(cause, RES_CONFIG, "cannot write in %s: %s", dir,
		    strerror(errno));
	else if (stat(a->secrets, &st) == 0 && (!S_ISDIR(st.st_mode) ||
	    access(a->secrets, W_OK | X_OK) == -1))
		r = fail(cause, RES_CONFIG, "%s: %s", a->secrets,
		    S_ISDIR(st.st_mode) ? strerror(errno) :
		    "exists and is not a folder");
	else if (!text_ok(a->secrets, PATH_MAX) || !text_ok(a->config,
	    PATH_MAX))
		r = fail(cause, RES_CONFIG, "%s: control characters in the "
		    "path", a->config);
	free(tmp);
	return r;
}

static bool
secret_exists(const struct add *a, const char *name)
{
	char	*p;
	bool	 yes;
	int	 i;

	for (i = 0, yes = false; i < 2 && !yes; i++) {
		p = xprintf("%s/%s.%s", a->secrets, name, i ? "imap" : "pop3");
		yes = access(p, F_OK) == 0;
		free(p);
	}
	return yes;
}

/* ---- who runs popbridge: the files must be readable by that user ---- */

/* The User= of a systemd unit's [Service] section, into user; false if
 * the file cannot be read or says none. */
static bool
unit_user_of(const char *path, char *user, size_t sz)
{
	char		*text = NULL, *why = NULL, *line, *save = NULL, *v;
	size_t		 len, n;
	bool		 service = false, found = false;

	if (file_read(path, UNIT_MAX, &text, &len, NULL, &why) != RES_OK) {
		free(why);
		return false;
	}
	for (line = strtok_r(text, "\n", &save); line != NULL && !found;
	    line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		if (line[0] == '[')
			service = strncmp(line, "[Service]", 9) == 0;
		else if (service && strncmp(line, "User=", 5) == 0) {
			v = line + 5;
			n = strcspn(v, " \t\r#;");
			if (n > 0 && n < sz) {
				memcpy(user, v, n);
				user[n] = '\0';
				found = name_ok(user);
			}
		}
	}
	free(text);
	return found;
}

/*
 * The systemd unit that will run the daemon: $POPBRIDGE_UNIT (""
 * switches this off), the one systemd loads (/etc/systemd/system, then
 * the packaged place), else the one shipped beside the program
 * (PREFIX/share/popbridge/, or config/ in the source tree), as for the
 * presets.  Its User= into user, its path into *where (malloc'd).
 */
static bool
unit_user(char *user, size_t sz, char **where)
{
	static const char *const sys[] = { "/etc/systemd/system/" UNIT_NAME,
		"/usr/local/lib/systemd/system/" UNIT_NAME,
		"/lib/systemd/system/" UNIT_NAME };
	const char	*env = getenv("POPBRIDGE_UNIT");
	char		 exe[PATH_MAX], *p, *dir;
	ssize_t		 n;
	size_t		 i;

	*where = NULL;
	if (env != NULL) {
		if (env[0] == '\0' || !unit_user_of(env, user, sz))
			return false;
		*where = xstrdup(env);
		return true;
	}
	for (i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (unit_user_of(sys[i], user, sz)) {
			*where = xstrdup(sys[i]);
			return true;
		}
	if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
		return false;
	exe[n] = '\0';
	dir = dirname(exe);
	for (i = 0; i < 2; i++) {
		p = xprintf("%s/%s/%s", dir, i == 0 ? "../share/popbridge" :
		    "../config", UNIT_NAME);
		if (unit_user_of(p, user, sz)) {
			*where = p;
			return true;
		}
		free(p);
	}
	return false;
}

static bool
owner_set(struct add *a, const char *name, const char *why)
{
	struct passwd	*pw;

	if ((pw = getpwnam(name)) == NULL)
		return false;
	snprintf(a->owner, sizeof a->owner, "%s", pw->pw_name);
	a->owner_uid = pw->pw_uid;
	a->owner_gid = pw->pw_gid;
	a->owner_why = why;
	return true;
}

/*
 * Who will run popbridge, and so must be able to read the config and the
 * secret files: the systemd unit runs the daemon as its User= (shipped:
 * popbridge), which cannot read root's 0600 files.  In this order:
 *
 *   - --owner USER (it must agree with an existing config's `user`); an
 *     existing config goes to USER too, who must read it;
 *   - the existing config's owner, unless root;
 *   - the existing config's `user` (a daemon started as root becomes it);
 *   - for a new config, the unit's User=, if that user exists;
 *   - else whoever runs `add`.
 *
 * What add writes then passes config.c's check of the password files
 * (runner_lookup: who can read the config).  A new config of someone
 * else's says `user` too.  Only root can give files away; anyone else
 * writes their own.
 */
static enum result
add_owner(struct add *a, char **cause)
{
	struct passwd	*pw;
	char		 unit[64], *where = NULL;
	bool		 fresh = !a->exists || a->textlen == 0;

	if ((pw = getpwuid(geteuid())) == NULL)
		return fail(cause, RES_CONFIG, "who am I? (uid %lu has no "
		    "name)", (unsigned long)geteuid());
	snprintf(a->owner, sizeof a->owner, "%s", pw->pw_name);
	a->owner_uid = pw->pw_uid;
	a->owner_gid = pw->pw_gid;
	a->owner_why = "you";
	if (a->owner_opt != NULL && getpwnam(a->owner_opt) == NULL)
		return ufail(a, cause, "--owner %s: no such user", a->owner_opt);
	if (geteuid() != 0) {
		if (a->owner_opt != NULL && strcmp(a->owner_opt, a->owner) != 0)
			return ufail(a, cause, "--owner %s: only root can give "
			    "files to another user", a->owner_opt);
		return RES_OK;
	}
	if (a->owner_opt != NULL) {
		if (a->cf != NULL && a->cf->user != NULL &&
		    strcmp(a->owner_opt, a->cf->user) != 0)
			return ufail(a, cause, "--owner %s, but %s says user = "
			    "\"%s\": that user runs popbridge and must read "
			    "the files", a->owner_opt, a->config, a->cf->user);
		(void)owner_set(a, a->owner_opt, "--owner");
		/* It runs popbridge: it must read the config as well. */
		a->chown_config = !fresh && a->st.st_uid != a->owner_uid;
		a->user_key = fresh && a->owner_uid != 0;
		return RES_OK;
	}
	if (!fresh) {
		if (a->st.st_uid != 0 && (pw = getpwuid(a->st.st_uid)) != NULL)
			(void)owner_set(a, pw->pw_name, "the config's owner");
		else if (a->cf != NULL && a->cf->user != NULL &&
		    !owner_set(a, a->cf->user, "the config's \"user\""))
			return fail(cause, RES_CONFIG, "%s: user \"%s\": no "
			    "such user", a->config, a->cf->user);
		return RES_OK;
	}
	if (unit_user(unit, sizeof unit, &where)) {
		if (owner_set(a, unit, "the systemd unit's User="))
			a->user_key = a->owner_uid != 0;
		else
			a->unit_note = xprintf("note: %s runs popbridge as %s, "
			    "who does not exist here: the files go to root, "
			    "which the unit cannot read.  Create the user first "
			    "(useradd --system --home-dir /var/lib/popbridge "
			    "--shell /usr/sbin/nologin %s) and add again, or "
			    "give --owner", where, unit, unit);
	}
	free(where);
	return RES_OK;
}

/* --name, or the address made valid and unique (among the accounts and
 * the secret files left in the folder). */
static enum result
add_name(struct add *a, char **cause)
{
	char		 base[61], *p;
	int		 i;

	if (a->name_opt != NULL) {
		if (!name_ok(a->name_opt))
			return ufail(a, cause, "--name \"%s\": letters, digits "
			    "and ._-+@ only, at most 64", a->name_opt);
		if (a->cf != NULL && config_find(a->cf, a->name_opt) != NULL)
			return ufail(a, cause, "%s already has an account "
			    "\"%s\"; choose another --name", a->config,
			    a->name_opt);
		if (secret_exists(a, a->name_opt))
			return ufail(a, cause, "%s/%s.pop3 or .imap exists "
			    "already; remove it or choose another --name",
			    a->secrets, a->name_opt);
		a->name = xstrdup(a->name_opt);
		return RES_OK;
	}
	snprintf(base, sizeof base, "%s", a->address);
	for (p = base; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr("._-+@", *p) == NULL)
			*p = '_';
	a->name = xstrdup(base);
	for (i = 2; (a->cf != NULL && config_find(a->cf, a->name) != NULL) ||
	    secret_exists(a, a->name); i++) {
		free(a->name);
		if (i > 99)
			return ufail(a, cause, "no free account name for %s; "
			    "give one with --name", a->address);
		a->name = xprintf("%s-%d", base, i);
	}
	return RES_OK;
}

/* A URL option that cannot be read; the URL as config_url_redact shows
 * it, with its control characters replaced. */
static enum result
url_fail(struct add *a, char **cause, const char *opt, const char *url,
    const char *scheme)
{
	char		*shown = config_url_redact(url), clean[320];
	enum result	 r;

	r = ufail(a, cause, "%s \"%s\": want %ss://HOST[:PORT] or "
	    "%s://HOST[:PORT] (STARTTLS)", opt, log_clean(clean, sizeof clean,
	    shown, strlen(shown)), scheme, scheme);
	free(shown);
	return r;
}

/* --to, --mailbox, --imap-user and --ca-file. */
static enum result
add_target(struct add *a, char **cause)
{
	char		 real[PATH_MAX];
	const char	*why;
	struct endpoint	*ep = &a->imap;

	ep->imap = true;
	/* Any '@': a user or password, whatever else is wrong with the url
	 * (a password may hold '/' or '#'); never echoed. */
	if (strchr(a->to, '@') != NULL)
		return ufail(a, cause, "--to: give the user with --imap-user, "
		    "not in the URL");
	if (!text_ok(a->to, 300) || !discover_parse_url(a->to, true,
	    &ep->host, &ep->port, &ep->tls))
		return url_fail(a, cause, "--to", a->to, "imap");
	ep->url = xstrdup(a->to);
	/* As config.c wants it: UTF-8, or modified UTF-7 (in ASCII). */
	if ((why = imap_mailbox_check(a->mailbox)) != NULL) {
		char clean[300];

		return ufail(a, cause, "--mailbox \"%s\" %s", log_clean(clean,
		    sizeof clean, a->mailbox, strlen(a->mailbox)), why);
	}
	ep->mailbox = xstrdup(a->mailbox);
	if (a->imap_user != NULL && !text_ok(a->imap_user, VALUE_MAX))
		return ufail(a, cause, "--imap-user: empty, too long or with "
		    "control characters");
	if (a->ca_opt != NULL) {
		if (realpath(a->ca_opt, real) == NULL ||
		    access(real, R_OK) == -1)
			return ufail(a, cause, "--ca-file %s: %s", a->ca_opt,
			    strerror(errno));
		if (!text_ok(real, PATH_MAX))
			return ufail(a, cause, "--ca-file: control characters "
			    "in the path");
		a->ca = xstrdup(real);
		ep->ca_file = xstrdup(real);
		a->pop3.ca_file = xstrdup(real);
	}
	if (a->state_dir != NULL && (a->state_dir[0] != '/' ||
	    !text_ok(a->state_dir, PATH_MAX)))
		return ufail(a, cause, "--state-dir must be an absolute path");
	if (a->state_dir != NULL && a->cf != NULL &&
	    strcmp(a->state_dir, a->cf->state_dir) != 0)
		log_warn("add: --state-dir is for a new config only; %s keeps "
		    "state_dir \"%s\"", a->config, a->cf->state_dir);
	return RES_OK;
}

/* ---- step 2: the POP3 server ---- */

static char *
url_of(bool imap, const char *host, int port, enum tls_mode tls)
{
	const char	*proto = imap ? "imap" : "pop3";
	int		 dflt = tls == TLS_IMPLICIT ? (imap ? 993 : 995) :
			    (imap ? 143 : 110);

	if (port == dflt)
		return xprintf("%s%s://%s", proto, tls == TLS_IMPLICIT ?
		    "s" : "", host);
	return xprintf("%s%s://%s:%d", proto, tls == TLS_IMPLICIT ? "s" : "",
	    host, port);
}

static enum result
add_source(struct add *a, char **cause)
{
	struct discovery d;
	struct endpoint	*ep = &a->pop3;
	enum result	 r;

	memset(&d, 0, sizeof d);
	if (a->pop3_url != NULL) {
		if (strchr(a->pop3_url, '@') != NULL)
			return ufail(a, cause, "--pop3: give the user with "
			    "--pop3-user, not in the URL");
		if (!text_ok(a->pop3_url, 300) ||
		    !discover_parse_url(a->pop3_url, false, &d.host, &d.port,
		    &d.tls))
			return url_fail(a, cause, "--pop3", a->pop3_url, "pop3");
		if (d.tls == TLS_STARTTLS && a->allow_plain)
			d.tls = TLS_NONE;
		d.user = xstrdup(a->address);
		d.source = xstrdup("the command line (--pop3)");
	} else {
		if ((r = discover_pop3(a->address, &d, cause)) != RES_OK)
			return r;
		if (d.tls == TLS_NONE && !a->allow_plain) {
			printf("note: %s lists POP3 only without TLS; trying "
			    "STARTTLS anyway (--allow-plaintext would log in "
			    "in clear)\n", d.source);
			d.tls = TLS_STARTTLS;
		}
	}
	ep->imap = false;
	ep->host = d.host;
	ep->port = d.port;
	ep->tls = d.tls;
	d.host = NULL;
	ep->url = url_of(false, ep->host, ep->port, ep->tls);
	if (a->pop3_user != NULL) {
		if (!text_ok(a->pop3_user, VALUE_MAX)) {
			discover_free(&d);
			return ufail(a, cause, "--pop3-user: empty, too long or "
			    "with control characters");
		}
		ep->user = xstrdup(a->pop3_user);
	} else {
		ep->user = d.user;
		d.user = NULL;
	}
	a->source = d.source;
	d.source = NULL;
	a->hint = d.hint;
	d.hint = NULL;
	printf("%s: POP3 server %s, user %s (from %s)\n", a->name, ep->url,
	    ep->user, a->source);
	/* The provider takes a token, not a password (Outlook.com): a
	 * password login would be refused at every poll. */
	if (d.auth != NULL) {
		a->auth_found = "xoauth2";
		printf("%s: %s takes only OAuth2 for POP3, no password (so says "
		    "%s): setting up auth = \"xoauth2\" with an "
		    "oauth2_token_command, a command that prints a fresh access "
		    "token; how to get one: %s\n", a->name, strchr(a->address,
		    '@') + 1, a->source, OAUTH2_README);
	}
	if (d.imap != NULL)
		printf("%s: the provider's own IMAP server is %s\n", a->name,
		    d.imap);
	if (ep->tls == TLS_NONE)
		printf("%s: warning: POP3 without TLS: the password and mail "
		    "cross the network in clear\n", a->name);
	discover_free(&d);
	return RES_OK;
}

/* Is this POP3 mailbox fetched by an account already?  Two accounts would
 * share one ledger (it is keyed by user@host), and the second would see
 * everything as imported. */
static enum result
add_unique_mailbox(struct add *a, char **cause)
{
	const struct account *ac;
	size_t		 i;

	for (i = 0; a->cf != NULL && i < a->cf->naccounts; i++) {
		ac = &a->cf->accounts[i];
		if (strcasecmp(ac->pop3.host, a->pop3.host) == 0 &&
		    strcmp(ac->pop3.user, a->pop3.user) == 0)
			return ufail(a, cause, "account \"%s\" in %s already "
			    "fetches %s from %s", ac->name, a->config,
			    a->pop3.user, a->pop3.host);
	}
	return RES_OK;
}

/* ---- step 3: user name and passwords ---- */

/* The first line of a file named on the command line, bounded. */
static enum result
secret_from_file(struct add *a, const char *path, char **secret,
    char **cause)
{
	char		 buf[SECRET_MAX + 2];
	ssize_t		 n;
	size_t		 got = 0;
	int		 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return ufail(a, cause, "%s: %s", path, strerror(errno));
	while (got < sizeof buf - 1 &&
	    (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	buf[got] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	*secret = strlen(buf) <= SECRET_MAX ? xstrdup(buf) : NULL;
	explicit_bzero(buf, sizeof buf);
	if (*secret == NULL)
		return ufail(a, cause, "%s: the first line is too long", path);
	return RES_OK;
}

/*
 * One password: --X-password-file, else $POPBRIDGE_X_PASSWORD, else asked
 * on the terminal.  It must fit on one line (password_file holds one).
 */
static enum result
add_secret(struct add *a, const char *what, const char *file,
    const char *env, const struct endpoint *ep, char **secret, char **cause)
{
	const char	*v = getenv(env);
	char		*prompt;
	enum result	 r;

	*secret = NULL;
	if (file != NULL)
		r = secret_from_file(a, file, secret, cause);
	else if (v != NULL) {
		*secret = xstrdup(v);
		r = RES_OK;
	} else {
		prompt = xprintf("%s password for %s at %s: ", what, ep->user,
		    ep->host);
		r = tty_ask(prompt, false, secret, cause);
		free(prompt);
	}
	if (r != RES_OK)
		return r;
	if (**secret == '\0' || strlen(*secret) > SECRET_MAX ||
	    strpbrk(*secret, "\r\n") != NULL) {
		secret_free(*secret);
		*secret = NULL;
		return ufail(a, cause, "the %s password is empty, too long or "
		    "more than one line", what);
	}
	return RES_OK;
}

/* Can every question be answered?  Asked before any network use, but
 * for the POP3 password: whether one is needed (or an OAuth2 token
 * instead) may only be known once the POP3 server is found. */
static enum result
add_can_ask(struct add *a, bool pop3, char **cause)
{
	if (tty_available())
		return RES_OK;
	if (!pop3 && a->imap_user == NULL)
		return ufail(a, cause, "give --imap-user (there is no terminal "
		    "to ask on)");
	if (pop3 && !auth_is_oauth2(a->auth_opt[0] != NULL ? a->auth_opt[0] :
	    a->auth_found) && a->pop3_pwfile == NULL &&
	    getenv("POPBRIDGE_POP3_PASSWORD") == NULL)
		return ufail(a, cause, "give the POP3 password with "
		    "--pop3-password-file or POPBRIDGE_POP3_PASSWORD (there is "
		    "no terminal to ask on)");
	if (!pop3 && !auth_is_oauth2(a->auth_opt[1]) &&
	    a->imap_pwfile == NULL && getenv("POPBRIDGE_IMAP_PASSWORD") ==
	    NULL)
		return ufail(a, cause, "give the IMAP password with "
		    "--imap-password-file or POPBRIDGE_IMAP_PASSWORD (there is "
		    "no terminal to ask on)");
	return RES_OK;
}

/* The login method of one side: --X-auth, else asked (Enter: the
 * default, automatic or what the provider takes), else the default. */
static enum result
ask_auth(struct add *a, int i, struct endpoint *ep, char **cause)
{
	const char	*dflt = i == 0 && a->auth_found != NULL ?
			    a->auth_found : "auto";
	char		*q, *m = NULL;
	enum result	 r;
	int		 tries;

	if (a->auth_opt[i] != NULL)
		m = xstrdup(a->auth_opt[i]);
	else if (a->interactive) {
		q = xprintf("%s login method for %s at %s (auto, plain, login, "
		    "any, xoauth2, oauthbearer)", i == 0 ? "POP3" : "IMAP",
		    ep->user, ep->host);
		for (tries = 0; tries < 3; tries++) {
			free(m);
			if ((r = tty_ask_default(q, dflt, &m, cause)) != RES_OK) {
				free(q);
				return r;
			}
			if (auth_ok(m))
				break;
		}
		free(q);
		if (tries == 3) {
			free(m);
			return ufail(a, cause, "no login method given");
		}
	} else
		m = xstrdup(dflt);
	if (strcmp(m, "auto") == 0)
		free(m);
	else {
		ep->auth = m;
		ep->oauth2 = auth_is_oauth2(m);
	}
	return RES_OK;
}

/*
 * The command that prints an OAuth2 token: --X-token-command, else asked,
 * else a placeholder that fails with a word on what to do: the account
 * is set up all the same, its login untested, and the message says so.
 */
static enum result
ask_token(struct add *a, int i, struct endpoint *ep, char **cause)
{
	char		*q, *cmd = NULL;
	enum result	 r;

	if (a->token_opt[i] != NULL)
		cmd = xstrdup(a->token_opt[i]);
	else if (a->interactive) {
		q = xprintf("%s: a command that prints a fresh OAuth2 access "
		    "token for %s (Enter: a placeholder, to fill in later)",
		    i == 0 ? "POP3" : "IMAP", ep->user);
		r = tty_ask_default(q, NULL, &cmd, cause);
		free(q);
		if (r != RES_OK)
			return r;
	}
	if (cmd != NULL && cmd[0] == '\0') {
		free(cmd);
		cmd = NULL;
	}
	if (cmd != NULL && !text_ok(cmd, 1000)) {
		free(cmd);
		return ufail(a, cause, "the token command is too long or holds "
		    "a control character");
	}
	if (cmd == NULL) {
		a->placeholder[i] = true;
		/* The name only (name_ok: safe in single quotes), not
		 * the config's path, which could hold a quote. */
		cmd = xprintf("echo 'popbridge: set oauth2_token_command of "
		    "account %s to a command that prints an access token (see "
		    "README.md, OAuth2)' >&2; exit 1", a->name);
	}
	ep->oauth2_token_command = cmd;
	return RES_OK;
}

/* A password: asked again when the answer is empty (Enter has no
 * default to take here). */
static enum result
ask_password(struct add *a, const char *what, const char *file,
    const char *env, const struct endpoint *ep, char **secret, char **cause)
{
	enum result	 r;
	int		 tries;

	for (tries = 0; ; tries++) {
		r = add_secret(a, what, file, env, ep, secret, cause);
		if (r == RES_OK || file != NULL || getenv(env) != NULL ||
		    tries == 2 || !a->usage)
			return r;
		printf("(empty: type the password, or Ctrl-C to stop)\n");
		fflush(stdout);
		a->usage = false;
	}
}

static enum result
add_ask(struct add *a, char **cause)
{
	char		*q, *user;
	enum result	 r;
	bool		 keep;

	if (a->imap_user != NULL)
		a->imap.user = xstrdup(a->imap_user);
	else {
		/* Mail clients take the address for the user name: a
		 * default that is often right, and Enter takes it. */
		q = xprintf("IMAP user name at %s", a->imap.host);
		r = tty_ask_default(q, a->address, &user, cause);
		free(q);
		if (r != RES_OK)
			return r;
		if (!text_ok(user, VALUE_MAX)) {
			free(user);
			return ufail(a, cause, "the IMAP user name is empty or "
			    "too long");
		}
		a->imap.user = user;
	}
	if ((r = ask_auth(a, 0, &a->pop3, cause)) != RES_OK)
		return r;
	if (a->pop3.oauth2)
		r = ask_token(a, 0, &a->pop3, cause);
	else
		r = ask_password(a, "POP3", a->pop3_pwfile,
		    "POPBRIDGE_POP3_PASSWORD", &a->pop3, &a->pop3.password,
		    cause);
	if (r != RES_OK || (r = ask_auth(a, 1, &a->imap, cause)) != RES_OK)
		return r;
	if (a->imap.oauth2)
		r = ask_token(a, 1, &a->imap, cause);
	else
		r = ask_password(a, "IMAP", a->imap_pwfile,
		    "POPBRIDGE_IMAP_PASSWORD", &a->imap, &a->imap.password,
		    cause);
	if (r != RES_OK)
		return r;
	a->keep = a->keep_opt != 0;
	if (a->keep_opt == -1 && a->interactive) {
		if ((r = tty_yes_no("Keep a copy of each message on the POP3 "
		    "server (no: delete it there once it is imported)?", true,
		    &keep, cause)) != RES_OK)
			return r;
		a->keep = keep;
	}
	return RES_OK;
}

/* ---- step 4: log in to both, as `check` does ---- */

/*
 * Can the server's name be found?  Asked before the login, so that a
 * name that does not exist, or a resolver that does not answer (no
 * network), is called that instead of a failed login.  Not through a
 * proxy from the environment: that one looks the name up itself.
 */
static bool
try_dns(struct add *a, const struct endpoint *ep, struct side *sd,
    char **cause)
{
	char		 scheme[8], *why = NULL;
	const char	*var;

	snprintf(scheme, sizeof scheme, "%s%s", ep->imap ? "imap" : "pop3",
	    ep->tls == TLS_IMPLICIT ? "s" : "");
	/* An address needs no lookup; a proxy looks names up itself. */
	if (ep->host[0] == '[' || strchr(ep->host, ':') != NULL ||
	    config_env_proxy(scheme, &var) != NULL)
		return true;
	if ((sd->dns = discover_host_check(ep->host, &why)) == DNS_OK)
		return true;
	printf("%s: %s %s:%d: FAILED: %s\n", a->name, ep->imap ? "imap" :
	    "pop3", ep->host, ep->port, why);
	free(*cause);
	*cause = why;
	sd->r = RES_TEMP;
	return false;
}

static void
try_pop3(struct add *a, long timeout, struct side *sd, char **cause)
{
	struct pop3	*p = NULL;
	unsigned int	 count;
	uint64_t	 size;
	char		*why = NULL, clean[400];

	if (a->placeholder[0]) {
		sd->skipped = true;
		printf("%s: pop3 %s:%d: not tested: no OAuth2 token command "
		    "yet\n", a->name, a->pop3.host, a->pop3.port);
		return;
	}
	if (!try_dns(a, &a->pop3, sd, cause))
		return;
	sd->r = pop3_open(&a->pop3, a->name, timeout, &p, cause);
	if (sd->r == RES_OK)
		sd->r = pop3_stat(p, &count, &size, cause);
	if (sd->r != RES_OK) {
		printf("%s: pop3 %s:%d: FAILED: %s\n", a->name, a->pop3.host,
		    a->pop3.port, *cause);
		/* GMX, WEB.DE: POP3 off until switched on in the web mailer. */
		if (sd->r == RES_AUTH && a->hint != NULL)
			printf("%s: hint: %s\n", a->name, log_clean(clean,
			    sizeof clean, a->hint, strlen(a->hint)));
		pop3_free(p);
		return;
	}
	printf("%s: pop3 %s:%d: %s%s%s; %u message%s, %.1f kB waiting\n",
	    a->name, a->pop3.host, a->pop3.port, conn_tls_version(pop3_conn(p)),
	    conn_cert_subject(pop3_conn(p))[0] != '\0' ? ", certificate " : "",
	    conn_cert_subject(pop3_conn(p)), count, count == 1 ? "" : "s",
	    (double)size / 1000.0);
	/* QUIT with no DELE sent commits nothing. */
	(void)pop3_quit(p, &why);
	free(why);
}

static void
try_imap(struct add *a, long timeout, struct side *sd, char **cause)
{
	struct imap	*im = NULL;
	struct imap_mbox mb;

	if (a->placeholder[1]) {
		sd->skipped = true;
		printf("%s: imap %s:%d: not tested: no OAuth2 token command "
		    "yet\n", a->name, a->imap.host, a->imap.port);
		return;
	}
	if (!try_dns(a, &a->imap, sd, cause))
		return;
	sd->r = imap_open(&a->imap, a->name, timeout, &im, cause);
	if (sd->r == RES_OK)
		sd->r = imap_status(im, a->imap.mailbox, &mb, cause);
	if (sd->r != RES_OK) {
		printf("%s: imap %s:%d: FAILED: %s\n", a->name, a->imap.host,
		    a->imap.port, *cause);
		imap_logout(im);
		return;
	}
	printf("%s: imap %s:%d: %s%s%s; mailbox %s %s\n", a->name,
	    a->imap.host, a->imap.port, conn_tls_version(imap_conn(im)),
	    conn_cert_subject(imap_conn(im))[0] != '\0' ? ", certificate " : "",
	    conn_cert_subject(imap_conn(im)), a->imap.mailbox, mb.exists ?
	    "exists" : "does not exist (it will be created)");
	imap_logout(im);
}

/* What went wrong on one side, in a few words for the summary (the
 * side's cause for the rest: the server's or libcurl's words). */
static char *
side_words(const struct add *a, const struct side *sd, bool imap,
    const char *cause)
{
	const struct endpoint *ep = imap ? &a->imap : &a->pop3;
	const char	*proto = imap ? "IMAP" : "POP3";
	char		 clean[400];

	if (sd->dns == DNS_NO_SUCH_HOST)
		return xprintf("the %s server's host name %s does not resolve "
		    "(DNS: no such host)", proto, ep->host);
	if (sd->dns == DNS_NO_ANSWER)
		return xprintf("the DNS resolver gave no answer for the %s "
		    "server %s (is this machine online?)", proto, ep->host);
	switch (sd->r) {
	case RES_AUTH:
		if (!imap && a->hint != NULL)
			return xprintf("the POP3 login was refused (%s)",
			    log_clean(clean, sizeof clean, a->hint,
			    strlen(a->hint)));
		return xprintf("the %s login was refused", proto);
	case RES_CONFIG:
		return xprintf("the %s server cannot be used as set up", proto);
	default:
		return xprintf("the %s login could not be tested (%.160s)",
		    proto, cause != NULL ? log_clean(clean, sizeof clean, cause,
		    strlen(cause)) : "no reason given");
	}
}

/* May this outcome be saved untested?  Only when a login could not be
 * tried (no network, a server down), never when it was refused or the
 * name does not exist. */
static bool
side_untestable(const struct side *sd)
{
	return sd->skipped || sd->r == RES_OK || (sd->r == RES_TEMP &&
	    sd->dns != DNS_NO_SUCH_HOST);
}

/*
 * Both, so one attempt shows every problem; the worse result counts.  A
 * login that could not be tried may be saved untested, if the user says
 * so (--save-untested, or yes on the terminal).
 */
static enum result
add_logins(struct add *a, char **cause)
{
	long		 timeout = a->cf != NULL ? a->cf->timeout : LOGIN_TIMEOUT;
	struct side	 sd[2];
	char		*c[2] = { NULL, NULL }, *w[2] = { NULL, NULL }, *what, *q;
	enum result	 r;
	bool		 save;
	int		 i;

	memset(sd, 0, sizeof sd);
	try_pop3(a, timeout, &sd[0], &c[0]);
	try_imap(a, timeout, &sd[1], &c[1]);
	for (i = 0; i < 2; i++)
		if (sd[i].r != RES_OK)
			w[i] = side_words(a, &sd[i], i == 1, c[i]);
	free(c[0]);
	free(c[1]);
	r = result_worst(sd[0].r, sd[1].r);
	if (r == RES_OK)
		return RES_OK;
	what = xprintf("%s%s%s", w[0] != NULL ? w[0] : "", w[0] != NULL &&
	    w[1] != NULL ? ", and " : "", w[1] != NULL ? w[1] : "");
	free(w[0]);
	free(w[1]);
	save = false;
	if (side_untestable(&sd[0]) && side_untestable(&sd[1])) {
		if (a->save_untested)
			save = true;
		else if (a->interactive) {
			q = xprintf("%s.  Save the account anyway, untested?",
			    what);
			fflush(stdout);
			if (tty_yes_no(q, false, &save, cause) != RES_OK)
				save = false;
			free(q);
		}
		if (save) {
			a->untested = what;
			return RES_OK;
		}
		free(*cause);
		*cause = xprintf("nothing was written: %s; --save-untested "
		    "saves it all the same, untested", what);
	} else {
		free(*cause);
		*cause = xprintf("nothing was written: %s", what);
	}
	free(what);
	return r;
}

/* ---- step 5: files, written atomically (file.c) ---- */

/* The owner as file_tmp_write takes it (for root; others own theirs). */
static struct stat
owner_stat(const struct add *a)
{
	struct stat	 st;

	memset(&st, 0, sizeof st);
	st.st_uid = a->owner_uid;
	st.st_gid = a->owner_gid;
	return st;
}

static enum result
write_secret(struct add *a, int i, const char *secret, char **cause)
{
	struct stat	 like = owner_stat(a);
	char		*path, *data, *tmp;
	enum result	 r;

	path = xprintf("%s/%s.%s", a->secrets, a->name, i ? "imap" : "pop3");
	data = xprintf("%s\n", secret);
	r = file_tmp_write(path, data, strlen(data), 0600, &like, &tmp, cause);
	secret_free(data);
	if (r == RES_OK)
		r = file_tmp_commit(tmp, path, true, cause);
	if (r == RES_OK)
		a->files[i] = path;
	else
		free(path);
	return r;
}

/*
 * The secrets folder, 0700, and the user that runs popbridge must be
 * able to enter it: made for that user, or (root's from an earlier add)
 * handed to it.
 */
static enum result
secrets_folder(struct add *a, char **cause)
{
	struct stat	 st;

	if (mkdir(a->secrets, 0700) == 0) {
		a->made_dir = true;
		file_sync_dir(a->secrets);
	} else if (errno != EEXIST)
		return fail(cause, RES_CONFIG, "cannot make %s: %s", a->secrets,
		    strerror(errno));
	if (geteuid() != 0 || a->owner_uid == 0)
		return RES_OK;
	if (lstat(a->secrets, &st) == -1 || !S_ISDIR(st.st_mode))
		return fail(cause, RES_CONFIG, "%s is not a folder", a->secrets);
	if (st.st_uid == a->owner_uid)
		return RES_OK;
	if (chown(a->secrets, a->owner_uid, a->owner_gid) == -1)
		return fail(cause, RES_CONFIG, "cannot give %s to %s: %s",
		    a->secrets, a->owner, strerror(errno));
	if (!a->made_dir)
		printf("%s: %s now belongs to %s (%s), who runs popbridge\n",
		    a->name, a->secrets, a->owner, a->owner_why);
	return RES_OK;
}

static enum result
add_secret_files(struct add *a, char **cause)
{
	enum result	 r;

	if (a->pop3.password == NULL && a->imap.password == NULL)
		return RES_OK;		/* OAuth2 on both sides: no files */
	if ((r = secrets_folder(a, cause)) != RES_OK)
		return r;
	if (a->pop3.password != NULL &&
	    (r = write_secret(a, 0, a->pop3.password, cause)) != RES_OK)
		return r;
	if (a->imap.password != NULL)
		return write_secret(a, 1, a->imap.password, cause);
	return RES_OK;
}

/* Undo step 5 after a later failure. */
static void
remove_secret_files(struct add *a)
{
	int	 i;

	for (i = 0; i < 2; i++)
		if (a->files[i] != NULL) {
			unlink(a->files[i]);
			free(a->files[i]);
			a->files[i] = NULL;
		}
	if (a->made_dir)
		rmdir(a->secrets);
}

/* ---- step 6: the account's text, inserted into the config ---- */

static void
append(char **buf, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
append(char **buf, const char *fmt, ...)
{
	va_list	 ap;
	char	*more, *both;

	va_start(ap, fmt);
	more = xvprintf(fmt, ap);
	va_end(ap);
	both = xprintf("%s%s", *buf != NULL ? *buf : "", more);
	free(more);
	free(*buf);
	*buf = both;
}

/* A libconfig string; s has no control characters (text_ok). */
static char *
lc_quote(const char *s)
{
	size_t	 n = strlen(s), i, o = 0;
	char	*q = xmalloc(2 * n + 3);

	q[o++] = '"';
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			q[o++] = '\\';
		q[o++] = s[i];
	}
	q[o++] = '"';
	q[o] = '\0';
	return q;
}

static void
append_key(char **buf, const char *indent, const char *key, const char *v)
{
	char	*q = lc_quote(v);

	append(buf, "%s%s = %s;\n", indent, key, q);
	free(q);
}

static void
append_endpoint(char **buf, const struct endpoint *ep, const char *file,
    bool placeholder)
{
	append(buf, "    %s = {\n", ep->imap ? "imap" : "pop3");
	append_key(buf, "      ", "url", ep->url);
	append_key(buf, "      ", "user", ep->user);
	if (ep->auth != NULL)
		append_key(buf, "      ", "auth", ep->auth);
	if (ep->oauth2) {
		if (placeholder)
			append(buf, "      # A PLACEHOLDER: put here a command "
			    "that prints a fresh OAuth2\n      # access token "
			    "(%s).\n", OAUTH2_README);
		append_key(buf, "      ", "oauth2_token_command",
		    ep->oauth2_token_command);
	} else
		append_key(buf, "      ", "password_file", file);
	if (ep->ca_file != NULL)
		append_key(buf, "      ", "ca_file", ep->ca_file);
	if (ep->tls == TLS_NONE)
		append_key(buf, "      ", "tls", "none");
	if (ep->imap)
		append_key(buf, "      ", "mailbox", ep->mailbox);
	append(buf, "    };\n");
}

static void
add_group(struct add *a)
{
	char		 day[16], note[400];
	time_t		 now = time(NULL);
	struct tm	 tm;
	size_t		 i;

	localtime_r(&now, &tm);
	strftime(day, sizeof day, "%Y-%m-%d", &tm);
	/* A comment runs to the end of the line: no line breaks in it. */
	snprintf(note, sizeof note, "%s", a->source);
	for (i = 0; note[i] != '\0'; i++)
		if ((unsigned char)note[i] < 0x20 || note[i] == 0x7f)
			note[i] = '?';
	append(&a->group, "  {\n    # added by \"popbridge add\" on %s; POP3 "
	    "server from\n    # %s\n", day, note);
	if (a->untested != NULL) {
		snprintf(note, sizeof note, "%s", a->untested);
		for (i = 0; note[i] != '\0'; i++)
			if ((unsigned char)note[i] < 0x20 || note[i] == 0x7f)
				note[i] = '?';
		append(&a->group, "    # NOT TESTED when added: %s\n", note);
	}
	append_key(&a->group, "    ", "name", a->name);
	append_endpoint(&a->group, &a->pop3, a->files[0], a->placeholder[0]);
	append_endpoint(&a->group, &a->imap, a->files[1], a->placeholder[1]);
	if (a->keep)
		append(&a->group, "    keep = true;    # false: delete from the "
		    "POP3 server once imported\n  }");
	else
		append(&a->group, "    keep = false;   # true: leave a copy on "
		    "the POP3 server\n  }");
}

/* Skip blanks and comments (#, //, slash-star) from t[i]. */
static size_t
lc_skip(const char *t, size_t n, size_t i)
{
	const char	*e;

	while (i < n) {
		if (isspace((unsigned char)t[i]))
			i++;
		else if (t[i] == '#' || (t[i] == '/' && i + 1 < n &&
		    t[i + 1] == '/'))
			while (i < n && t[i] != '\n')
				i++;
		else if (t[i] == '/' && i + 1 < n && t[i + 1] == '*') {
			e = memmem(t + i + 2, n - i - 2, "*/", 2);
			i = e != NULL ? (size_t)(e - t) + 2 : n;
		} else
			break;
	}
	return i;
}

/* Just after the string that starts at t[i] == '"'. */
static size_t
lc_string(const char *t, size_t n, size_t i)
{
	for (i++; i < n && t[i] != '"'; i++)
		if (t[i] == '\\')
			i++;
	return i < n ? i + 1 : n;
}

struct lc_list {
	size_t		 open, close;	/* the brackets */
	size_t		 last;		/* just after the last element */
	bool		 empty;
};

/* The end of the list whose bracket is t[open]. */
static bool
lc_list_end(const char *t, size_t n, size_t open, struct lc_list *l)
{
	size_t	 i = open + 1;
	int	 depth = 1;

	l->open = open;
	l->last = open + 1;
	l->empty = true;
	while ((i = lc_skip(t, n, i)) < n) {
		if (t[i] == '"') {
			i = lc_string(t, n, i);
		} else {
			if (t[i] == '{' || t[i] == '(' || t[i] == '[')
				depth++;
			else if ((t[i] == '}' || t[i] == ')' || t[i] == ']') &&
			    --depth == 0) {
				l->close = i;
				return true;
			}
			i++;
		}
		l->last = i;
		l->empty = false;
	}
	return false;
}

static bool
lc_ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '*';
}

/*
 * The top-level "accounts = ( ... )" of a libconfig text: a scanner that
 * knows strings and the three kinds of comment, so a ")" or "accounts" in
 * either is not taken for syntax.
 */
static bool
lc_find_accounts(const char *t, size_t n, struct lc_list *l, bool *include)
{
	size_t	 i = 0, j, k;
	int	 depth = 0;

	*include = false;
	while ((i = lc_skip(t, n, i)) < n) {
		if (t[i] == '"') {
			i = lc_string(t, n, i);
			continue;
		}
		if (t[i] == '{' || t[i] == '(' || t[i] == '[')
			depth++;
		else if (t[i] == '}' || t[i] == ')' || t[i] == ']')
			depth--;
		else if (t[i] == '@' && depth == 0)
			*include = true;
		else if (depth == 0 && (isalpha((unsigned char)t[i]) ||
		    t[i] == '*')) {
			for (j = i; j < n && lc_ident_char(t[j]); j++)
				;
			if (j - i == 8 && memcmp(t + i, "accounts", 8) == 0 &&
			    (k = lc_skip(t, n, j)) < n &&
			    (t[k] == '=' || t[k] == ':') &&
			    (k = lc_skip(t, n, k + 1)) < n &&
			    (t[k] == '(' || t[k] == '['))
				return lc_list_end(t, n, k, l);
			i = j;
			continue;
		}
		i++;
	}
	return false;
}

/* The config text with the group added as the list's last element. */
static enum result
lc_insert(const char *t, size_t n, const char *file, const char *group,
    char **out, size_t *outlen, char **cause)
{
	struct lc_list	 l;
	size_t		 ls, at;
	bool		 include, own_line;
	char		*s;

	if (!lc_find_accounts(t, n, &l, &include))
		return fail(cause, RES_CONFIG, "%s: no \"accounts = ( ... );\" "
		    "list found%s; add the account by hand", file, include ?
		    " (is it in an @include file?)" : "");
	/* An empty "[ ]" passes for a list; a group needs "( )". */
	if (t[l.open] == '[' && !l.empty)
		return fail(cause, RES_CONFIG, "%s: \"accounts\" must be a "
		    "list ( ... )", file);
	/* Does the closing bracket start its own line?  Insert above it. */
	for (ls = l.close; ls > l.last && (t[ls - 1] == ' ' ||
	    t[ls - 1] == '\t'); ls--)
		;
	own_line = ls > l.last && t[ls - 1] == '\n';
	at = own_line ? ls : l.close;
	/* Up to the last element, a comma, up to "at", the group, the rest. */
	s = xstrndup(t, l.last);
	if (t[l.open] == '[')
		s[l.open] = '(';
	append(&s, "%s%.*s%s%s\n", l.empty ? "" : ",", (int)(at - l.last),
	    t + l.last, own_line ? "" : "\n", group);
	append(&s, "%s%.*s", t[l.close] == ']' ? ")" : "",
	    (int)(n - l.close - (t[l.close] == ']' ? 1 : 0)),
	    t + l.close + (t[l.close] == ']' ? 1 : 0));
	*out = s;
	*outlen = strlen(s);
	return RES_OK;
}

/* The text of a new config file, before the account goes in. */
static char *
new_config_text(const struct add *a)
{
	char	*sd = lc_quote(a->state_dir != NULL ? a->state_dir :
		    DEFAULT_STATE), *user = NULL, *t;

	/* Not root's: the files are this user's (add_owner), a daemon
	 * started as root becomes it, and check -n asks whether it can
	 * read them. */
	if (a->user_key) {
		t = lc_quote(a->owner);
		user = xprintf("# The user that runs popbridge (%s): it reads "
		    "the password files.\nuser = %s;\n\n", a->owner_why, t);
		free(t);
	}
	t = xprintf("# popbridge configuration (libconfig syntax), started by "
	    "\"popbridge add\".\n# Every key is in popbridge.conf(5); check "
	    "the file with \"popbridge check -n\".\n\n# Where the ledgers "
	    "live (what was imported from each mailbox).\nstate_dir = %s;\n\n"
	    "%saccounts = (\n);\n", sd, user != NULL ? user : "");
	free(sd);
	free(user);
	return t;
}

/* Did the config change since we read it?  Then do not overwrite it. */
static bool
config_changed(const struct add *a)
{
	struct stat	 st;

	if (!a->exists)
		return false;
	return stat(a->config, &st) == -1 || st.st_ino != a->st.st_ino ||
	    st.st_size != a->st.st_size ||
	    st.st_mtim.tv_sec != a->st.st_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != a->st.st_mtim.tv_nsec;
}

/* Does the file at path load, with the new account and all the old? */
static enum result
config_proves(const struct add *a, const char *path, char **cause)
{
	struct config	*cf;
	enum result	 r;
	size_t		 before = a->cf != NULL ? a->cf->naccounts : 0;

	if ((r = config_load(path, &cf, cause)) != RES_OK)
		return r;
	if (config_find(cf, a->name) == NULL || cf->naccounts != before + 1)
		r = fail(cause, RES_CONFIG, "the account did not land in the "
		    "accounts list");
	config_free(cf);
	return r;
}

static enum result
add_to_config(struct add *a, char **cause)
{
	char		*base, *text = NULL, *tmp, *why = NULL;
	size_t		 len = 0;
	mode_t		 mode = a->exists ? a->st.st_mode & 07777 : 0600;
	struct stat	 like;
	enum result	 r;

	base = a->textlen > 0 ? xstrdup(a->text) : new_config_text(a);
	r = lc_insert(base, strlen(base), a->config, a->group, &text, &len,
	    cause);
	free(base);
	if (r != RES_OK)
		return r;
	/* A new config is the owner's (add_owner), as is an existing one
	 * that --owner gives to another user; else it keeps its owner. */
	like = owner_stat(a);
	r = file_tmp_write(a->config, text, len, mode, a->exists &&
	    !a->chown_config ? &a->st : &like, &tmp, cause);
	free(text);
	if (r != RES_OK)
		return r;
	if ((r = config_proves(a, tmp, &why)) != RES_OK) {
		unlink(tmp);
		free(tmp);
		r = fail(cause, RES_CONFIG, "the new config would not load, so "
		    "%s is unchanged: %s", a->config, why);
		free(why);
		return r;
	}
	if (config_changed(a)) {
		unlink(tmp);
		free(tmp);
		return fail(cause, RES_TEMP, "%s changed while popbridge add "
		    "ran; it is unchanged, try again", a->config);
	}
	if ((r = file_tmp_commit(tmp, a->config, !a->exists, cause)) != RES_OK)
		return r;
	/* Proof in place; should it fail after all, put the old text back. */
	if ((r = config_proves(a, a->config, &why)) != RES_OK) {
		if (a->exists && file_tmp_write(a->config, a->text, a->textlen,
		    mode, &a->st, &tmp, cause) == RES_OK)
			(void)file_tmp_commit(tmp, a->config, false, cause);
		else if (!a->exists)
			unlink(a->config);
		r = fail(cause, r, "%s would not load; the old one is back: %s",
		    a->config, why);
		free(why);
	}
	return r;
}

/* ---- the command ---- */

static void
endpoint_clear(struct endpoint *ep)
{
	free(ep->url);
	free(ep->host);
	free(ep->user);
	secret_free(ep->password);
	free(ep->ca_file);
	free(ep->auth);
	free(ep->oauth2_token_command);
	free(ep->mailbox);
	memset(ep, 0, sizeof *ep);
}

static void
add_free(struct add *a)
{
	int	 i;

	config_free(a->cf);
	free(a->config);
	free(a->text);
	free(a->secrets);
	free(a->name);
	free(a->ca);
	free(a->source);
	endpoint_clear(&a->pop3);
	endpoint_clear(&a->imap);
	for (i = 0; i < 2; i++)
		free(a->files[i]);
	free(a->group);
	free(a->hint);
	free(a->untested);
	free(a->unit_note);
}

static void
add_report(const struct add *a, const struct globals *g)
{
	const char	*next = strcmp(g->config, DEFAULT_CONFIG) == 0 ? "" : "-c ";
	const char	*cfg = strcmp(g->config, DEFAULT_CONFIG) == 0 ? "" :
			    a->config;
	int		 i;

	printf("added account \"%s\" to %s:\n%s\n", a->name, a->config,
	    a->group);
	for (i = 0; i < 2; i++)
		if (a->files[i] != NULL)
			printf("%s password in %s (mode 600, owner %s, who "
			    "runs popbridge: %s)\n", i == 0 ? "POP3" : "IMAP",
			    a->files[i], a->owner, a->owner_why);
	if (a->chown_config)
		printf("%s now belongs to %s (--owner), who runs popbridge\n",
		    a->config, a->owner);
	for (i = 0; i < 2; i++)
		if (a->placeholder[i])
			printf("NOT DONE YET: the %s login needs an OAuth2 token: "
			    "%s holds a placeholder oauth2_token_command for "
			    "\"%s\"; replace it with a command that prints a "
			    "fresh access token (%s), then run popbridge %s%s%s"
			    "check %s\n", i == 0 ? "POP3" : "IMAP", a->config,
			    a->name, OAUTH2_README, next, cfg, cfg[0] != '\0' ?
			    " " : "", a->name);
	if (a->untested != NULL)
		printf("SAVED UNTESTED: %s; once the servers can be reached: "
		    "popbridge %s%s%scheck %s\n", a->untested, next, cfg,
		    cfg[0] != '\0' ? " " : "", a->name);
	else if (!a->placeholder[0] && !a->placeholder[1])
		printf("next: popbridge %s%s%scheck %s\n", next, cfg,
		    cfg[0] != '\0' ? " " : "", a->name);
	if (a->unit_note != NULL)
		printf("%s\n", a->unit_note);
}

int
cmd_add(struct globals *g, int argc, char **argv)
{
	struct add	 a;
	char		*cause = NULL;
	enum result	 r;
	int		 code;

	memset(&a, 0, sizeof a);
	a.keep_opt = -1;
	if ((code = add_args(&a, argc, argv)) != 0)
		return code == -1 ? EX_OK : code;
	if (!discover_address_valid(a.address)) {
		fprintf(stderr, "popbridge: add: \"%s\" is not a mail address "
		    "(local@domain, ASCII; write an international domain in "
		    "its xn-- form)\n", a.address);
		return EX_USAGE;
	}
	/* Questions with a default only when someone is there to press
	 * Enter: a script with a terminal but its stdin elsewhere gets the
	 * defaults. */
	a.interactive = isatty(STDIN_FILENO) && tty_available();
	if ((r = add_config(&a, g->config, &cause)) == RES_OK &&
	    (r = add_where(&a, &cause)) == RES_OK &&
	    (r = add_target(&a, &cause)) == RES_OK &&
	    (r = add_owner(&a, &cause)) == RES_OK &&
	    (r = add_name(&a, &cause)) == RES_OK &&
	    (r = add_can_ask(&a, false, &cause)) == RES_OK &&
	    (r = add_source(&a, &cause)) == RES_OK &&
	    (r = add_can_ask(&a, true, &cause)) == RES_OK &&
	    (r = add_unique_mailbox(&a, &cause)) == RES_OK &&
	    (r = add_ask(&a, &cause)) == RES_OK &&
	    (r = add_logins(&a, &cause)) == RES_OK) {
		fflush(stdout);
		if ((r = add_secret_files(&a, &cause)) == RES_OK) {
			add_group(&a);
			r = add_to_config(&a, &cause);
		}
		if (r != RES_OK)
			remove_secret_files(&a);
	}
	if (r == RES_OK)
		add_report(&a, g);
	else {
		fflush(stdout);
		log_warn("add: %s", cause);
	}
	code = a.usage ? EX_USAGE : result_exit_code(r);
	free(cause);
	add_free(&a);
	return code;
}
