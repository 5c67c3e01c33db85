/*
 * `popbridge add ADDRESS --to IMAP-URL`: set up an account in one step, as
 * a mail client's account wizard does.  (--to gmail-api: into Gmail through
 * its API instead, with a token command; see add_gmail.c.)  The order of operations is what
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
#include "add_int.h"

const char add_usage[] =
    "usage: popbridge [-c FILE] add ADDRESS --to IMAP-URL|gmail-api "
    "[--imap-user U]\n"
    "           [--mailbox M] [--name NAME] [--pop3 POP3-URL] "
    "[--pop3-user U]\n"
    "           [--ca-file F] [--pop3-password-file F] "
    "[--imap-password-file F]\n"
    "           [--pop3-auth M] [--imap-auth M] [--pop3-token-command C]\n"
    "           [--imap-token-command C | --oauth2-token-command C]\n"
    "           [--keep | --delete] [--owner USER]\n"
    "           [--state-dir D] [--allow-plaintext] [--save-untested]\n";

/* ---- step 1: the command line, the config, names and places ---- */

enum { O_NAME = 256, O_TO, O_MAILBOX, O_IMAP_USER, O_POP3_USER,
	O_POP3, O_CA, O_POP3_PW, O_IMAP_PW, O_STATE, O_PLAIN, O_HELP,
	O_OWNER, O_UNTESTED, O_KEEP, O_DELETE, O_POP3_AUTH, O_IMAP_AUTH,
	O_POP3_TOKEN, O_IMAP_TOKEN, O_OAUTH2_TOKEN };

/* One option of getopt_long's into a: 0 to go on, else add_args'
 * answer (-1 after --help, or an exit code). */
static int
add_option(struct add *a, int ch)
{
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
	case O_IMAP_TOKEN:
	case O_OAUTH2_TOKEN:
		/* Two names for the destination's token command:
		 * --oauth2-token-command reads better for Gmail. */
		if (a->token_opt[1] != NULL &&
		    strcmp(a->token_opt[1], optarg) != 0) {
			fprintf(stderr, "popbridge: add: one token "
			    "command for the destination (--imap-token-"
			    "command or --oauth2-token-command)\n");
			return EX_USAGE;
		}
		a->token_opt[1] = optarg;
		break;
	case O_HELP:
		fputs(add_usage, stdout);
		return -1;
	default:
		fputs(add_usage, stderr);
		return EX_USAGE;
	}
	return 0;
}

/* What the options leave to check: one ADDRESS, --to, the methods. */
static int
add_args_check(struct add *a, int argc, char **argv)
{
	int	 i;

	if (argc - optind != 1) {
		fprintf(stderr, "popbridge: add: %s\n", argc - optind == 0 ?
		    "give the ADDRESS of the POP3 mailbox" : "one ADDRESS only");
		fputs(add_usage, stderr);
		return EX_USAGE;
	}
	a->address = argv[optind];
	if (a->to == NULL) {
		fprintf(stderr, "popbridge: add: give the IMAP account the mail "
		    "goes to: --to imaps://HOST[:PORT], or --to gmail-api for "
		    "Gmail through its API\n");
		fputs(add_usage, stderr);
		return EX_USAGE;
	}
	if (a->mailbox == NULL)
		a->mailbox = "INBOX";
	for (i = 0; i < 2; i++)
		if (a->auth_opt[i] != NULL && !auth_ok(a->auth_opt[i])) {
			fprintf(stderr, "popbridge: add: --%s-auth: one of "
			    "auto, plain, login, any, xoauth2, oauthbearer\n",
			    i == 0 ? "pop3" : "imap");
			return EX_USAGE;
		}
	return 0;
}

/* The command line into a: 0 to go on, -1 after --help, else the exit
 * code. */
static int
add_args(struct add *a, int argc, char **argv)
{
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
		{ "oauth2-token-command", required_argument, NULL,
		    O_OAUTH2_TOKEN },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 }
	};
	int	 ch, code;

	/* 0, not 1: GNU getopt then starts afresh and lets options follow
	 * ADDRESS (main's own getopt stops at the first word). */
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if ((code = add_option(a, ch)) != 0)
			return code;
	return add_args_check(a, argc, argv);
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

/* --to and --mailbox for an IMAP server. */
static enum result
imap_target(struct add *a, char **cause)
{
	const char	*why;
	struct endpoint	*ep = &a->imap;
	char		 clean[300];

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
	if ((why = account_valid_mailbox(a->mailbox, false)) != NULL)
		return ufail(a, cause, "--mailbox \"%s\" %s", log_clean(clean,
		    sizeof clean, a->mailbox, strlen(a->mailbox)), why);
	ep->mailbox = xstrdup(a->mailbox);
	return RES_OK;
}

/* --to, --mailbox, --imap-user and --ca-file. */
static enum result
add_target(struct add *a, char **cause)
{
	char		 real[PATH_MAX];
	struct endpoint	*ep = &a->imap;
	enum result	 r;

	ep->imap = true;
	r = add_gmail_is(a->to) ? add_gmail_target(a, cause) :
	    imap_target(a, cause);
	if (r != RES_OK)
		return r;
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
		/* Google's own API is checked against the system's CAs: a
		 * --ca-file for a private POP3 server would refuse it. */
		if (!a->gmail || a->gmail_base != NULL)
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
	free(a->gmail_base);
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
			    "check %s\n", i == 0 ? "POP3" : a->gmail ?
			    "Gmail API" : "IMAP", a->config, a->name, i == 1 &&
			    a->gmail ? GMAIL_README : OAUTH2_README, next, cfg,
			    cfg[0] != '\0' ? " " : "", a->name);
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
