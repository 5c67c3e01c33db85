/*
 * `add`, steps 5 and 6: the secret files, written atomically for the
 * user that runs popbridge, and the account's text inserted into the
 * config with the user's comments and layout kept, proven by config_load
 * before it replaces the old file.
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

enum result
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
void
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

/*
 * A gmail-api: block holds only what config_gmail_endpoint takes: no
 * password, no tls, no auth (a token is its one way in), and the mailbox
 * is a label.
 */
static void
append_gmail(char **buf, const struct endpoint *ep, bool placeholder)
{
	append(buf, "    imap = {    # Gmail through its API, not IMAP\n");
	append_key(buf, "      ", "url", ep->url);
	append_key(buf, "      ", "user", ep->user);
	if (placeholder)
		append(buf, "      # A PLACEHOLDER: put here a command that "
		    "prints a fresh OAuth2\n      # access token (%s).\n",
		    GMAIL_README);
	append_key(buf, "      ", "oauth2_token_command",
	    ep->oauth2_token_command);
	if (ep->ca_file != NULL)
		append_key(buf, "      ", "ca_file", ep->ca_file);
	append_key(buf, "      ", "mailbox", ep->mailbox);
	append(buf, "    };\n");
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

void
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
	if (a->gmail)
		append_gmail(&a->group, &a->imap, a->placeholder[1]);
	else
		append_endpoint(&a->group, &a->imap, a->files[1],
		    a->placeholder[1]);
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

enum result
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
