/*
 * `popbridge batch`: a CSV row to an account, and whether it may run: its
 * passwords (file: and env: held to --secrets-dir and
 * --secrets-env-prefix), its two endpoints, its shard, and rows that
 * clash with it.  batch_row() is the mapping on its own, for the fuzz
 * target.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bridge.h"
#include "batch_int.h"

static const char *const columns[] = { "pop3_url", "pop3_user",
	"pop3_password", "imap_url", "imap_user", "imap_password", "mailbox",
	"keep", "pop3_ca_file", "imap_ca_file", "flags" };

/* ---- rows to accounts ---- */

/*
 * Where a row's password may come from.  A CSV file often comes from
 * someone else, and a file: or env: field is read by this process and sent
 * as the password to whatever server the row names: unchecked, a row could
 * send the first line of any file this process can read, or
 * $AWS_SECRET_ACCESS_KEY, to a stranger's server.  So file: names a file
 * under a --secrets-dir folder (symbolic links resolved first), env: a
 * variable whose name starts with a --secrets-env-prefix, and either one
 * anything only with --trust-csv.  A refusal names the column and the
 * path or variable, never what it holds.
 */

/* Is real (resolved) inside one of the --secrets-dir folders? */
static bool
in_secrets_dir(const struct batch *b, const char *real)
{
	size_t	 i, n;

	for (i = 0; i < b->nsecret_dirs; i++) {
		n = strlen(b->secret_dirs[i]);
		if (strncmp(real, b->secret_dirs[i], n) != 0)
			continue;
		/* "/" is a folder too; "/srv/secrets2" is not in "/srv/secrets". */
		if (n == 1 ? real[1] != '\0' : real[n] == '/' && real[n + 1] != '\0')
			return true;
	}
	return false;
}

static const char *
row_secret_file(const struct batch *b, struct endpoint *ep, const char *col,
    const char *path, char *why, size_t whysz)
{
	char	 real[PATH_MAX], clean[200];

	if (path[0] == '\0') {
		snprintf(why, whysz, "%s: empty file: path", col);
		return why;
	}
	if (b->trust_csv) {
		ep->password_file = xstrdup(path);
		return NULL;
	}
	log_clean(clean, sizeof clean, path, strlen(path));
	if (b->nsecret_dirs == 0)
		snprintf(why, whysz, "%s: file:%s refused: a CSV row may name a "
		    "password file only under a --secrets-dir folder (or give "
		    "--trust-csv)", col, clean);
	else if (realpath(path, real) == NULL)
		snprintf(why, whysz, "%s: file:%s: %s", col, clean,
		    strerror(errno));
	else if (!in_secrets_dir(b, real))
		snprintf(why, whysz, "%s: file:%s refused: not under a "
		    "--secrets-dir folder (symbolic links resolved)", col, clean);
	else {
		/* The resolved path: what was checked is what is read. */
		ep->password_file = xstrdup(real);
		return NULL;
	}
	return why;
}

static const char *
row_secret_env(const struct batch *b, struct endpoint *ep, const char *col,
    const char *name, char *why, size_t whysz)
{
	const char	*e;
	size_t		 i, n = strlen(name);

	if (n == 0 || n > 128 || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789_") != n ||
	    (name[0] >= '0' && name[0] <= '9')) {
		snprintf(why, whysz, "%s: env: wants a variable name (letters, "
		    "digits, _)", col);
		return why;
	}
	for (i = 0; !b->trust_csv && i < b->nenv_prefixes; i++)
		if (strncmp(name, b->env_prefixes[i],
		    strlen(b->env_prefixes[i])) == 0)
			break;
	if (!b->trust_csv && i == b->nenv_prefixes) {
		snprintf(why, whysz, "%s: env:%s refused: %s", col, name,
		    b->nenv_prefixes == 0 ? "a CSV row may name an environment "
		    "variable only with a --secrets-env-prefix (or give "
		    "--trust-csv)" : "its name has no --secrets-env-prefix");
		return why;
	}
	if ((e = getenv(name)) == NULL || e[0] == '\0') {
		snprintf(why, whysz, "%s: environment variable %s is not set", col,
		    name);
		return why;
	}
	ep->password = xstrdup(e);
	return NULL;
}

/* "file:PATH", "env:NAME" or the secret itself. */
static const char *
row_secret(const struct batch *b, struct endpoint *ep, const char *v,
    char *why, size_t whysz)
{
	const char	*col = ep->imap ? "imap_password" : "pop3_password";

	if (strncmp(v, "file:", 5) == 0)
		return row_secret_file(b, ep, col, v + 5, why, whysz);
	if (strncmp(v, "env:", 4) == 0)
		return row_secret_env(b, ep, col, v + 4, why, whysz);
	if (v[0] == '\0') {
		snprintf(why, whysz, "%s: empty password", col);
		return why;
	}
	ep->password = xstrdup(v);
	return NULL;
}

/* The login as every source checks it (account_valid_login), in the
 * columns' words: "empty imap_user", "pop3_password holds a line break".
 * (A quoted field may hold a CR or LF: it would end the login's protocol
 * line and start a command of the CSV author's.) */
static const char *
row_login(const struct endpoint *ep, char *why, size_t whysz)
{
	struct account_fault	 f;
	const char		*side = ep->imap ? "imap" : "pop3";

	if (account_valid_login(ep, &f))
		return NULL;
	if (f.empty)
		snprintf(why, whysz, "empty %s_%s", side, f.key);
	else
		snprintf(why, whysz, "%s_%s %s", side, f.key, f.why);
	return why;
}

static const char *
row_endpoint(struct batch *b, struct endpoint *ep, bool imap,
    const char *url, const char *user, const char *pw, const char *ca,
    char *why, size_t whysz)
{
	char		*cause = NULL;
	const char	*err;

	ep->imap = imap;
	ep->url = xstrdup(url);
	if (config_parse_url(ep, &cause) != RES_OK) {
		snprintf(why, whysz, "%s: %s", imap ? "imap_url" : "pop3_url",
		    cause);
		free(cause);
		return why;
	}
	ep->user = xstrdup(user);
	/* The user before the secret is read, the secret once it is. */
	if ((err = row_login(ep, why, whysz)) != NULL ||
	    (err = row_secret(b, ep, pw, why, whysz)) != NULL ||
	    (err = row_login(ep, why, whysz)) != NULL)
		return err;
	if (ca != NULL && ca[0] != '\0')
		ep->ca_file = xstrdup(ca);
	else if (b->ca_file != NULL)
		ep->ca_file = xstrdup(b->ca_file);
	return NULL;
}

/* A name for logs: letters, digits and ._-+@ of user@host. */
static char *
row_name(const struct account *ac)
{
	char	*n = xprintf("%s@%s", ac->pop3.user, ac->pop3.host), *p;

	for (p = n; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._-+@", *p) != NULL))
			*p = '_';
	return n;
}

/* Fill ac from a row; NULL, or why the row is invalid. */
const char *
batch_row_account(struct batch *b, const int *col, struct csv_row *row,
    struct account *ac, char *why, size_t whysz)
{
	const char	*v[C_COUNT], *err;
	char		*copy, *tok, *save;
	size_t		 i;

	for (i = 0; i < C_COUNT; i++)
		v[i] = col[i] >= 0 && (size_t)col[i] < row->n ?
		    row->f[col[i]] : NULL;
	for (i = 0; i < C_REQUIRED; i++)
		if (v[i] == NULL && i != C_MAILBOX && i != C_KEEP) {
			snprintf(why, whysz, "no %s", columns[i]);
			return why;
		}
	if ((err = row_endpoint(b, &ac->pop3, false, v[C_POP3_URL],
	    v[C_POP3_USER], v[C_POP3_PW], v[C_POP3_CA], why, whysz)) != NULL ||
	    (err = row_endpoint(b, &ac->imap, true, v[C_IMAP_URL],
	    v[C_IMAP_USER], v[C_IMAP_PW], v[C_IMAP_CA], why, whysz)) != NULL)
		return err;
	ac->imap.mailbox = xstrdup(v[C_MAILBOX] != NULL &&
	    v[C_MAILBOX][0] != '\0' ? v[C_MAILBOX] : "INBOX");
	/* UTF-8 or modified UTF-7, as in the config (imap_mailbox_encode). */
	if ((err = account_valid_mailbox(ac->imap.mailbox, false)) != NULL) {
		snprintf(why, whysz, "mailbox %s", err);
		return why;
	}
	ac->keep = true;
	if (v[C_KEEP] != NULL && v[C_KEEP][0] != '\0') {
		if (strcasecmp(v[C_KEEP], "false") == 0 ||
		    strcasecmp(v[C_KEEP], "no") == 0 ||
		    strcmp(v[C_KEEP], "0") == 0)
			ac->keep = false;
		else if (strcasecmp(v[C_KEEP], "true") != 0 &&
		    strcasecmp(v[C_KEEP], "yes") != 0 &&
		    strcmp(v[C_KEEP], "1") != 0)
			return "keep must be true or false";
	}
	ac->flags = xstrdup("");
	if (v[C_FLAGS] != NULL) {
		copy = xstrdup(v[C_FLAGS]);
		for (tok = strtok_r(copy, ", ", &save); tok != NULL;
		    tok = strtok_r(NULL, ", ", &save))
			if (!config_flags_add(&ac->flags, tok)) {
				snprintf(why, whysz, "flags: \"%.64s\" is not an "
				    "IMAP flag", tok);
				free(copy);
				return why;
			}
		free(copy);
	}
	ac->interval = 300;
	ac->name = row_name(ac);
	ac->line = row->line;
	return NULL;
}

/* The column of each name in the header row; NULL, or a required one
 * that is missing. */
const char *
batch_header_columns(const struct csv_row *header, int *col)
{
	size_t	 i, j;

	for (i = 0; i < C_COUNT; i++)
		col[i] = -1;
	for (j = 0; j < header->n; j++)
		for (i = 0; i < C_COUNT; i++)
			if (strcmp(header->f[j], columns[i]) == 0)
				col[i] = (int)j;
	for (i = 0; i < C_REQUIRED; i++)
		if (col[i] == -1 && i != C_MAILBOX && i != C_KEEP)
			return columns[i];
	return NULL;
}

/*
 * One data row as load_rows maps it, for tests/fuzz: the columns from the
 * header row; secrets_dir (resolved, or NULL) and env_prefix (or NULL) as
 * one --secrets-dir and --secrets-env-prefix, trust_csv as --trust-csv.
 * NULL with *ac filled, or why not; either way the caller frees what *ac
 * holds (config_endpoint_free, name, flags).
 */
const char *
batch_row(const struct csv_row *header, struct csv_row *row,
    const char *secrets_dir, const char *env_prefix, bool trust_csv,
    struct account *ac, char *why, size_t whysz)
{
	struct batch	 b;
	char		*dir = (char *)secrets_dir;
	const char	*err;
	int		 col[C_COUNT];

	memset(&b, 0, sizeof b);
	memset(ac, 0, sizeof *ac);
	b.secret_dirs = &dir;
	b.nsecret_dirs = secrets_dir != NULL;
	b.env_prefixes = &env_prefix;
	b.nenv_prefixes = env_prefix != NULL;
	b.trust_csv = trust_csv;
	if ((err = batch_header_columns(header, col)) != NULL) {
		snprintf(why, whysz, "the header row has no column %s", err);
		return why;
	}
	if ((err = batch_row_account(&b, col, row, ac, why, whysz)) == NULL &&
	    row->n > header->n)
		err = "more fields than the header row has";
	return err;
}

/*
 * Shard K of N by a stable hash of the POP3 mailbox in its one spelling, so
 * that every row naming one mailbox falls into one shard however its URL is
 * written: in two shards it would be imported twice, once by each.  A row
 * without a readable POP3 mailbox (its URL or user is bad) belongs to shard
 * 0, which reports it; any other row, valid or not, to exactly one shard.
 */
bool
batch_in_shard(const struct batch *b, const struct account *ac)
{
	char		*key, hex[65];
	uint64_t	 h = 0;
	int		 i;

	if (b->shard_n <= 1)
		return true;
	/* row_endpoint sets the user only once the URL has parsed. */
	if (ac->pop3.user == NULL)
		return b->shard_k == 0;
	key = ident_source(&ac->pop3);
	hash_hex(key, strlen(key), hex);
	free(key);
	for (i = 0; i < 16; i++)
		h = h * 16 + (uint64_t)(hex[i] <= '9' ? hex[i] - '0' :
		    hex[i] - 'a' + 10);
	return h % b->shard_n == b->shard_k;
}

/*
 * Does ac clash with an earlier valid row?  The same POP3 mailbox into the
 * same destination would import every message twice.  Into two destinations
 * is allowed: both rows use the mailbox's one ledger and start_jobs runs
 * them one after the other; but keep must be true in both, since the row
 * with keep = false would delete what the other still needs.  Rows that
 * name one mailbox are always in one shard, so this shard's rows suffice.
 */
static const char *
row_clash(const struct batch *b, const char *source, const char *dest,
    bool keep, char *why, size_t whysz)
{
	const struct row_key *k;
	size_t		 i;

	for (i = 0; i < b->nkeys; i++) {
		k = &b->keys[i];
		if (strcmp(k->source, source) != 0)
			continue;
		if (strcmp(k->dest, dest) == 0)
			snprintf(why, whysz, "the same POP3 mailbox and IMAP "
			    "destination as line %d", k->line);
		else if (k->keep != keep)
			snprintf(why, whysz, "keep differs from line %d for the "
			    "same POP3 mailbox", k->line);
		else if (!keep)
			snprintf(why, whysz, "keep = false, and line %d imports "
			    "the same POP3 mailbox elsewhere: each would delete "
			    "what the other still needs", k->line);
		else
			continue;
		return why;
	}
	return NULL;
}

/* Check a valid row against the earlier ones; remember it if it passes. */
const char *
batch_row_check(struct batch *b, const struct account *ac, char *why,
    size_t whysz)
{
	struct row_key	 k;
	const char	*err;

	k.source = ident_source(&ac->pop3);
	k.dest = ident_dest(&ac->imap);
	k.keep = ac->keep;
	k.line = ac->line;
	if ((err = row_clash(b, k.source, k.dest, k.keep, why, whysz)) !=
	    NULL) {
		free(k.source);
		free(k.dest);
		return err;
	}
	if (b->nkeys == b->keycap) {
		b->keycap = b->keycap == 0 ? 64 : b->keycap * 2;
		b->keys = xrealloc(b->keys, b->keycap * sizeof *b->keys);
	}
	b->keys[b->nkeys++] = k;
	return NULL;
}
