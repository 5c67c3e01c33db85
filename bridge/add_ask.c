/*
 * `add`, step 3: the IMAP user, the login methods, both passwords (or an
 * OAuth2 token command) and keep or delete, from the options, the
 * environment or the terminal (Enter takes the default shown).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "add_int.h"

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
enum result
add_can_ask(struct add *a, bool pop3, char **cause)
{
	if (tty_available())
		return RES_OK;
	if (!pop3 && a->imap_user == NULL)
		return ufail(a, cause, "give --imap-user%s (there is no "
		    "terminal to ask on)", a->gmail ? " (the Gmail address)" :
		    "");
	if (pop3 && !auth_is_oauth2(a->auth_opt[0] != NULL ? a->auth_opt[0] :
	    a->auth_found) && a->pop3_pwfile == NULL &&
	    getenv("POPBRIDGE_POP3_PASSWORD") == NULL)
		return ufail(a, cause, "give the POP3 password with "
		    "--pop3-password-file or POPBRIDGE_POP3_PASSWORD (there is "
		    "no terminal to ask on)");
	if (!pop3 && !a->gmail && !auth_is_oauth2(a->auth_opt[1]) &&
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
	const char	*why;
	enum result	 r;
	bool		 gmail = i == 1 && a->gmail;

	if (a->token_opt[i] != NULL)
		cmd = xstrdup(a->token_opt[i]);
	else if (a->interactive) {
		q = xprintf("%s: a command that prints a fresh OAuth2 access "
		    "token for %s%s (Enter: a placeholder, to fill in later)",
		    i == 0 ? "POP3" : gmail ? "Gmail API" : "IMAP", ep->user,
		    gmail ? ", scopes gmail.insert and gmail.readonly, or "
		    "gmail.modify" : "");
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
	if (cmd != NULL && (why = add_gmail_token_like(cmd)) != NULL) {
		free(cmd);
		return ufail(a, cause, "the token command %s", why);
	}
	if (cmd == NULL) {
		a->placeholder[i] = true;
		/* The name only (name_ok: safe in single quotes), not
		 * the config's path, which could hold a quote. */
		cmd = xprintf("echo 'popbridge: set oauth2_token_command of "
		    "account %s to a command that prints an access token (see "
		    "README.md, %s)' >&2; exit 1", a->name, gmail ? "Gmail" :
		    "OAuth2");
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

enum result
add_ask(struct add *a, char **cause)
{
	char		*q, *user;
	enum result	 r;
	bool		 keep;

	if (a->imap_user != NULL)
		a->imap.user = xstrdup(a->imap_user);
	else if (a->gmail) {
		/* No default: the address is the POP3 mailbox's. */
		r = tty_ask_default("Gmail address the mail goes to", NULL,
		    &user, cause);
		if (r != RES_OK)
			return r;
		if (!text_ok(user, VALUE_MAX)) {
			free(user);
			return ufail(a, cause, "the Gmail address is empty or "
			    "too long");
		}
		a->imap.user = user;
	} else {
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
	if (r != RES_OK || (!a->gmail &&
	    (r = ask_auth(a, 1, &a->imap, cause)) != RES_OK))
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
