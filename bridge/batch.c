/*
 * `popbridge batch FILE`: import hundreds or thousands of accounts listed
 * in a CSV file, in parallel, without overloading either server.
 *
 * Each valid row becomes an account with its own ledger under the batch's
 * state directory, so an interrupted batch run again continues where it
 * stopped and imports nothing twice.  Accounts run as workers (worker.c),
 * at most --jobs at once and at most --per-host against any one server.  A
 * server that throttles (NO [LIMIT], "too many connections", [IN-USE],
 * [SYS/TEMP], a BYE with a backoff hint ...; throttle.c knows the words)
 * is not a failure: that host rests, as long as the server asked ("try
 * again in 30 seconds") or else 5 s doubling with each throttle in a row,
 * while other hosts go on, and the account is tried again, THROTTLE_TRIES
 * times in all.  Rows with errors are reported by line and skipped.
 *
 * "Is this the same mailbox?" is asked of the canonical spelling (ident.c),
 * never of the URL as written: pop3s://host:995, pop3s://HOST:995/ and
 * pop3://host name one mailbox.  --shard K/N takes only the accounts whose
 * POP3 mailbox hashes into shard K, so N machines can share one CSV with no
 * coordination and no overlap, and rows for one mailbox meet in one shard,
 * where they are checked against each other and run one after the other.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "bridge.h"

#define CSV_MAX_BYTES	(64 * 1024 * 1024)
#define THROTTLE_TRIES	6		/* attempts of a throttled account */
#define SHOW_EVERY	10.0		/* seconds between lines off a tty */

static const char batch_usage[] =
    "usage: popbridge batch FILE [--jobs N] [--per-host N] [--report OUT]\n"
    "           [--retry-failed] [--dry-run] [--shard K/N] [--ca-file F]\n"
    "           [--state-dir D] [--timeout S] [--secrets-dir D]\n"
    "           [--secrets-env-prefix P] [--trust-csv]\n"
    "FILE: CSV with a header row: pop3_url,pop3_user,pop3_password,imap_url,"
    "\n      imap_user,imap_password,mailbox,keep (optional: pop3_ca_file,\n"
    "      imap_ca_file, flags).  A password may be file:PATH (under a\n"
    "      --secrets-dir) or env:NAME (NAME starting with a\n"
    "      --secrets-env-prefix); --trust-csv lifts both limits.\n";

static const char *const columns[] = { "pop3_url", "pop3_user",
	"pop3_password", "imap_url", "imap_user", "imap_password", "mailbox",
	"keep", "pop3_ca_file", "imap_ca_file", "flags" };
enum { C_POP3_URL, C_POP3_USER, C_POP3_PW, C_IMAP_URL, C_IMAP_USER,
	C_IMAP_PW, C_MAILBOX, C_KEEP, C_POP3_CA, C_IMAP_CA, C_FLAGS,
	C_COUNT, C_REQUIRED = C_KEEP + 1 };

enum job_state { J_WAITING, J_RUNNING, J_DONE, J_SKIPPED };

struct job {
	struct account	*ac;		/* in cf.accounts */
	char		*source;	/* ident_source of its POP3 mailbox */
	int		 line;
	enum job_state	 state;
	struct worker	 w;
	unsigned int	 tries;
	double		 not_before;	/* now_seconds() */
	struct worker_report rep;
	double		 started;
};

/* A valid row of this shard, for finding rows that clash with it. */
struct row_key {
	char		*source;	/* ident_source */
	char		*dest;		/* ident_dest */
	bool		 keep;
	int		 line;
};

struct host {
	char		*name;
	unsigned int	 running;
	unsigned int	 throttles;	/* in a row */
	double		 not_before;	/* resting until (now_seconds) */
};

struct batch {
	struct config	 cf;
	const char	*file;
	long		 per_host;
	const char	*report;
	bool		 retry_failed, dry_run, tty;
	unsigned long	 shard_k, shard_n;
	char		*ca_file;
	char		**secret_dirs;	/* --secrets-dir, resolved */
	size_t		 nsecret_dirs;
	const char	**env_prefixes;	/* --secrets-env-prefix */
	size_t		 nenv_prefixes;
	bool		 trust_csv;	/* file: and env: name anything */
	struct job	*jobs;
	size_t		 njobs;
	struct host	*hosts;
	size_t		 nhosts;
	struct row_key	*keys;
	size_t		 nkeys, keycap;
	unsigned int	 invalid;
	FILE		*rep;		/* the --report file */
	double		 started, last_shown;
	int		 sigpipe[2];
	bool		 stopping;
};

/* ---- the report ---- */

/* A CSV field, quoted when it must be. */
static void
csv_put(FILE *f, const char *s, bool last)
{
	if (s == NULL)
		s = "";
	if (strpbrk(s, ",\"\r\n") != NULL) {
		fputc('"', f);
		for (; *s != '\0'; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else
		fputs(s, f);
	fputc(last ? '\n' : ',', f);
}

static void
report_header(struct batch *b)
{
	if (b->rep == NULL)
		return;
	fputs("line,pop3_url,pop3_user,imap_url,imap_user,mailbox,status,"
	    "imported,bytes,skipped,skipped_reasons,seconds,error\n", b->rep);
}

static void
report_row(struct batch *b, int line, const char *const *cols,
    const char *status, const struct run_stats *st, const char *skipped,
    double secs, const char *error)
{
	char	 num[4][32];

	if (b->rep == NULL)
		return;
	snprintf(num[0], sizeof num[0], "%d", line);
	snprintf(num[1], sizeof num[1], "%u", st != NULL ? st->imported : 0);
	snprintf(num[2], sizeof num[2], "%llu", st != NULL ?
	    (unsigned long long)st->bytes : 0ULL);
	snprintf(num[3], sizeof num[3], "%u", st != NULL ? st->failed : 0);
	csv_put(b->rep, num[0], false);
	csv_put(b->rep, cols[0], false);
	csv_put(b->rep, cols[1], false);
	csv_put(b->rep, cols[2], false);
	csv_put(b->rep, cols[3], false);
	csv_put(b->rep, cols[4], false);
	csv_put(b->rep, status, false);
	csv_put(b->rep, num[1], false);
	csv_put(b->rep, num[2], false);
	csv_put(b->rep, num[3], false);
	csv_put(b->rep, skipped, false);
	snprintf(num[0], sizeof num[0], "%.1f", secs);
	csv_put(b->rep, num[0], false);
	csv_put(b->rep, error, true);
	fflush(b->rep);
}

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
	if (user[0] == '\0')
		return imap ? "empty imap_user" : "empty pop3_user";
	/* A CR or LF (a quoted field may hold them) would end the login's
	 * protocol line and start a command of the CSV author's. */
	if (!config_value_ok(user))
		return imap ? "imap_user holds a line break (CR or LF)" :
		    "pop3_user holds a line break (CR or LF)";
	ep->user = xstrdup(user);
	if ((err = row_secret(b, ep, pw, why, whysz)) != NULL)
		return err;
	if (ep->password != NULL && !config_value_ok(ep->password))
		return imap ? "imap_password holds a line break (CR or LF)" :
		    "pop3_password holds a line break (CR or LF)";
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
static const char *
row_account(struct batch *b, const int *col, struct csv_row *row,
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
	if ((err = imap_mailbox_check(ac->imap.mailbox)) != NULL) {
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
static const char *
header_columns(const struct csv_row *header, int *col)
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
	if ((err = header_columns(header, col)) != NULL) {
		snprintf(why, whysz, "the header row has no column %s", err);
		return why;
	}
	if ((err = row_account(&b, col, row, ac, why, whysz)) == NULL &&
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
static bool
in_shard(const struct batch *b, const struct account *ac)
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
static const char *
row_check(struct batch *b, const struct account *ac, char *why,
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

/* Did this account's last run finish (everything imported)? */
static bool
finished_before(struct batch *b, const struct account *ac)
{
	struct ledger_status ls;
	char		*cause = NULL;
	bool		 done = false;

	if (ledger_read_status(b->cf.state_dir, ac, &ls, &cause) == RES_OK) {
		done = ls.ever_run && ls.last_result == RES_OK &&
		    ls.waiting == 0;
		ledger_status_free(&ls);
	}
	free(cause);
	return done;
}

static void
account_free(struct account *ac)
{
	config_endpoint_free(&ac->pop3);
	config_endpoint_free(&ac->imap);
	free(ac->name);
	free(ac->flags);
	memset(ac, 0, sizeof *ac);
}

/* Read FILE: valid rows become jobs, invalid ones are reported. */
static enum result
load_rows(struct batch *b, char **cause)
{
	struct csv	 c;
	struct csv_row	 row;
	const char	*err;
	char		*data, why[512];
	int		 col[C_COUNT], got;
	size_t		 i, cap = 0, ncols, len;
	enum result	 r;

	if ((r = file_read(b->file, CSV_MAX_BYTES, &data, &len, NULL,
	    cause)) != RES_OK)
		return r;
	csv_init(&c, data, len);
	if ((got = csv_next(&c, &row, &err)) != 1) {
		free(data);
		return fail(cause, RES_CONFIG, "%s:%d: %s", b->file, row.line,
		    got == 0 ? "empty file" : err);
	}
	ncols = row.n;
	if ((err = header_columns(&row, col)) != NULL) {
		csv_row_free(&row);
		free(data);
		return fail(cause, RES_CONFIG, "%s:1: the header row has no "
		    "column %s", b->file, err);
	}
	csv_row_free(&row);

	while ((got = csv_next(&c, &row, &err)) != 0) {
		struct account	 ac;
		static const char *none[5] = { "", "", "", "", "" };
		const char	*cols[5];
		char		*url0, *url2;

		memset(&ac, 0, sizeof ac);
		if (got == -1) {
			/* An unreadable row belongs to no shard: shard 0 says. */
			if (b->shard_n > 1 && b->shard_k != 0)
				continue;
			b->invalid++;
			log_warn("%s:%d: row skipped: %s", b->file, row.line,
			    err);
			report_row(b, row.line, none, "invalid", NULL, "", 0,
			    err);
			continue;
		}
		/* The shard is the POP3 mailbox's, valid row or not. */
		err = row_account(b, col, &row, &ac, why, sizeof why);
		if (!in_shard(b, &ac)) {
			account_free(&ac);
			csv_row_free(&row);
			continue;
		}
		for (i = 0; i < 5; i++) {
			int k = i == 0 ? C_POP3_URL : i == 1 ? C_POP3_USER :
			    i == 2 ? C_IMAP_URL : i == 3 ? C_IMAP_USER :
			    C_MAILBOX;

			cols[i] = col[k] >= 0 && (size_t)col[k] < row.n ?
			    row.f[col[k]] : "";
		}
		/* A password typed into a URL must not reach the report. */
		url0 = config_url_redact(cols[0]);
		url2 = config_url_redact(cols[2]);
		cols[0] = url0;
		cols[2] = url2;
		if (err == NULL && row.n > ncols)
			err = "more fields than the header row has";
		if (err == NULL)
			err = row_check(b, &ac, why, sizeof why);
		if (err != NULL) {
			b->invalid++;
			log_warn("%s:%d: row skipped: %s", b->file, row.line,
			    err);
			report_row(b, row.line, cols, "invalid", NULL, "", 0,
			    err);
			account_free(&ac);
			csv_row_free(&row);
			free(url0);
			free(url2);
			continue;
		}
		free(url0);
		free(url2);
		if (b->retry_failed && finished_before(b, &ac)) {
			account_free(&ac);
			csv_row_free(&row);
			continue;
		}
		if (b->cf.naccounts == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			b->cf.accounts = xrealloc(b->cf.accounts,
			    cap * sizeof *b->cf.accounts);
		}
		b->cf.accounts[b->cf.naccounts++] = ac;
		csv_row_free(&row);
	}
	free(data);
	b->jobs = xcalloc(b->cf.naccounts + 1, sizeof *b->jobs);
	b->njobs = b->cf.naccounts;
	for (i = 0; i < b->njobs; i++) {
		b->jobs[i].ac = &b->cf.accounts[i];
		b->jobs[i].source = ident_source(&b->cf.accounts[i].pop3);
		b->jobs[i].line = b->cf.accounts[i].line;
		b->jobs[i].w.fd = -1;
	}
	return RES_OK;
}

/* ---- scheduling ---- */

static struct host *
host_of(struct batch *b, const char *name)
{
	size_t	 i;

	for (i = 0; i < b->nhosts; i++)
		if (strcasecmp(b->hosts[i].name, name) == 0)
			return &b->hosts[i];
	b->hosts = xrealloc(b->hosts, (b->nhosts + 1) * sizeof *b->hosts);
	memset(&b->hosts[b->nhosts], 0, sizeof *b->hosts);
	b->hosts[b->nhosts].name = xstrdup(name);
	return &b->hosts[b->nhosts++];
}

static size_t
count_state(const struct batch *b, enum job_state st)
{
	size_t	 i, n = 0;

	for (i = 0; i < b->njobs; i++)
		n += b->jobs[i].state == st;
	return n;
}

static void
show(struct batch *b, bool final)
{
	double		 now = now_seconds(), el = now - b->started, rate, eta;
	unsigned long long msgs = 0, bytes = 0;
	size_t		 i, done = 0, failed = 0, running;
	long		 left;

	if (!final && now - b->last_shown < (b->tty ? 0.5 : SHOW_EVERY))
		return;
	b->last_shown = now;
	for (i = 0; i < b->njobs; i++) {
		if (b->jobs[i].state != J_DONE)
			continue;
		done++;
		failed += b->jobs[i].rep.r != RES_OK &&
		    b->jobs[i].rep.r != RES_MSG;
		msgs += b->jobs[i].rep.st.imported;
		bytes += b->jobs[i].rep.st.bytes;
	}
	running = count_state(b, J_RUNNING);
	rate = el > 0 ? msgs / el : 0;
	eta = done > 0 ? el / done * (b->njobs - done) : 0;
	left = (long)(eta + 0.5);
	if (b->tty && !final) {
		fprintf(stderr, "\rbatch: %zu/%zu done, %zu running, %zu failed; "
		    "%llu messages, %.1f MB, %.0f/s; %ld:%02ld left  ", done,
		    b->njobs, running, failed, msgs, bytes / 1e6, rate,
		    left / 60, left % 60);
		fflush(stderr);
		log_bar_drawn(true);
		return;
	}
	log_info("batch: %zu/%zu accounts done, %zu running, %zu failed; %llu "
	    "messages, %.1f MB, %.0f messages/s%s", done, b->njobs, running,
	    failed, msgs, bytes / 1e6, rate, final ? "" : "");
}

/* The reasons messages of this account were refused, joined. */
static char *
skipped_reasons(struct batch *b, const struct account *ac)
{
	struct ledger_status ls;
	char		*out, *t, *cause = NULL;
	size_t		 i;

	out = xstrdup("");
	if (ledger_read_status(b->cf.state_dir, ac, &ls, &cause) == RES_OK) {
		for (i = 0; i < ls.nfailures && i < 20; i++) {
			char *one = ledger_failure_text(&ls.failures[i]);

			t = xprintf("%s%s%s", out, i > 0 ? "; " : "", one);
			free(one);
			free(out);
			out = t;
		}
		ledger_status_free(&ls);
	}
	free(cause);
	return out;
}

static void
job_done(struct batch *b, struct job *j, int status)
{
	struct host	*hp = host_of(b, j->ac->pop3.host);
	struct host	*hi = host_of(b, j->ac->imap.host);
	const char	*cols[5], *word;
	char		*skipped, *url0, *url2;
	long		 delay = 0;
	bool		 asked;

	worker_finish(&j->w, status, &j->rep);
	hp->running--;
	if (hi != hp)
		hi->running--;
	/*
	 * A refused message (RES_MSG) is never throttling, even [LIMIT].  A
	 * backoff hint ("try again in 30 seconds", in a BYE, NO or -ERR) makes
	 * a temporary failure throttling too, and says how long to rest.
	 */
	asked = j->rep.r == RES_TEMP && throttle_hint(j->rep.cause, &delay);
	if (j->rep.r == RES_TEMP && (asked || throttle_is(j->rep.cause)) &&
	    j->tries < THROTTLE_TRIES && !b->stopping) {
		/* Slow down on the server that said it, then try again. */
		struct host *h = strncmp(j->rep.cause, "imap:", 5) == 0 ?
		    hi : hp;

		if (!asked)
			delay = 5L << (h->throttles < 6 ? h->throttles : 6);
		h->throttles++;
		h->not_before = now_seconds() + (double)delay;
		if (asked)
			log_info("%s: throttled by %s; again in %ld s (server "
			    "asked: %s)", j->ac->name, h->name, delay,
			    j->rep.cause);
		else
			log_info("%s: throttled by %s; again in %ld s (%s)",
			    j->ac->name, h->name, delay, j->rep.cause);
		j->state = J_WAITING;
		j->not_before = h->not_before;
		free(j->rep.cause);
		j->rep.cause = NULL;
		return;
	}
	if (j->rep.r == RES_OK) {
		hp->throttles = 0;
		hi->throttles = 0;
	}
	j->state = J_DONE;
	word = j->rep.r == RES_OK ? "ok" : j->rep.r == RES_MSG ? "partial" :
	    b->stopping ? "partial" : "failed";
	if (j->rep.r != RES_OK && j->rep.cause[0] != '\0')
		log_warn("%s: %s", j->ac->name, j->rep.cause);
	/* Every URL printed goes through config_url_redact (these loaded,
	 * so they hold no '@', but one rule is easier to keep). */
	url0 = config_url_redact(j->ac->pop3.url);
	url2 = config_url_redact(j->ac->imap.url);
	cols[0] = url0;
	cols[1] = j->ac->pop3.user;
	cols[2] = url2;
	cols[3] = j->ac->imap.user;
	cols[4] = j->ac->imap.mailbox;
	skipped = j->rep.st.failed > 0 ? skipped_reasons(b, j->ac) :
	    xstrdup("");
	report_row(b, j->line, cols, word, &j->rep.st, skipped,
	    now_seconds() - j->started, j->rep.r == RES_OK ? "" :
	    j->rep.cause);
	free(skipped);
	free(url0);
	free(url2);
}

static void
reap(struct batch *b)
{
	pid_t	 pid;
	int	 status;
	size_t	 i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (i = 0; i < b->njobs; i++)
			if (b->jobs[i].state == J_RUNNING &&
			    b->jobs[i].w.pid == pid) {
				job_done(b, &b->jobs[i], status);
				break;
			}
}

/*
 * Is a run on this job's POP3 mailbox under way (another row, another
 * destination)?  Then it waits: the mailbox's ledger is locked for the whole
 * run, and starting now would only end in "another popbridge process is
 * working on this mailbox".  The end of that run wakes start_jobs again.
 */
static bool
source_busy(const struct batch *b, const struct job *j)
{
	size_t	 i;

	for (i = 0; i < b->njobs; i++)
		if (b->jobs[i].state == J_RUNNING &&
		    strcmp(b->jobs[i].source, j->source) == 0)
			return true;
	return false;
}

/*
 * Start what may start; the milliseconds until something might (at most a
 * second: a rest that ends is noticed in time, to the millisecond, so a
 * server that asked for N seconds gets no fewer).
 */
static int
start_jobs(struct batch *b)
{
	double	 now = now_seconds(), next = now + 1.0, ready;
	size_t	 i, running = count_state(b, J_RUNNING);
	char	*cause = NULL;

	for (i = 0; i < b->njobs && running < (size_t)b->cf.jobs &&
	    !b->stopping; i++) {
		struct job *j = &b->jobs[i];
		struct host *hp, *hi;

		if (j->state != J_WAITING)
			continue;
		hp = host_of(b, j->ac->pop3.host);
		hi = host_of(b, j->ac->imap.host);
		ready = j->not_before;
		if (hp->not_before > ready)
			ready = hp->not_before;
		if (hi->not_before > ready)
			ready = hi->not_before;
		if (ready > now) {
			if (ready < next)
				next = ready;
			continue;
		}
		/* One account is one connection to each server it uses. */
		if (hp->running >= (unsigned long)b->per_host ||
		    hi->running + (hi != hp) > (unsigned long)b->per_host ||
		    source_busy(b, j))
			continue;
		j->tries++;
		j->started = now_seconds();
		if (worker_start(&b->cf, j->ac, b->sigpipe, 2, &j->w, &cause) !=
		    RES_OK) {
			log_warn("%s: %s", j->ac->name, cause);
			free(cause);
			cause = NULL;
			return 1000;
		}
		j->state = J_RUNNING;
		hp->running++;
		if (hi != hp)
			hi->running++;
		running++;
	}
	return (int)((next - now) * 1000.0) + 1;
}

static void
handle_signals(struct batch *b)
{
	unsigned char	 c;
	size_t		 i;

	while (read(b->sigpipe[0], &c, 1) == 1)
		if ((c == SIGINT || c == SIGTERM) && !b->stopping) {
			b->stopping = true;
			log_info("batch: stopping: the running accounts finish "
			    "their batch in flight");
			for (i = 0; i < b->njobs; i++)
				if (b->jobs[i].state == J_RUNNING)
					kill(b->jobs[i].w.pid, SIGTERM);
		}
}

static void
run_jobs(struct batch *b)
{
	struct pollfd	 pfd;
	int		 wait;

	for (;;) {
		reap(b);
		if (count_state(b, J_RUNNING) == 0 &&
		    (b->stopping || count_state(b, J_WAITING) == 0))
			break;
		wait = start_jobs(b);
		show(b, false);
		pfd.fd = b->sigpipe[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, wait) > 0)
			handle_signals(b);
	}
	show(b, true);
}

/* A number of 1-9 digits and nothing else (no sign, blank or 0x). */
static bool
shard_number(const char *s, size_t len, unsigned long *v)
{
	size_t	 i;

	if (len == 0 || len > 9)
		return false;
	*v = 0;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		*v = *v * 10 + (unsigned long)(s[i] - '0');
	}
	return true;
}

/*
 * K/N exactly, 0 <= K < N: "1/2/3" or "1/2x" is a typo, and taking it as
 * 1/2 would run a shard the admin did not ask for (and overlap another).
 */
static bool
shard_parse(const char *s, unsigned long *k, unsigned long *n)
{
	const char	*slash = strchr(s, '/');

	return slash != NULL && shard_number(s, (size_t)(slash - s), k) &&
	    shard_number(slash + 1, strlen(slash + 1), n) && *n > 0 && *k < *n;
}

/* --secrets-dir: an existing folder, kept with its links resolved. */
static bool
secrets_dir_add(struct batch *b, const char *dir)
{
	char		 real[PATH_MAX];
	struct stat	 st;

	if (realpath(dir, real) == NULL) {
		fprintf(stderr, "popbridge: batch: --secrets-dir %s: %s\n", dir,
		    strerror(errno));
		return false;
	}
	if (stat(real, &st) == -1 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "popbridge: batch: --secrets-dir %s: not a "
		    "folder\n", dir);
		return false;
	}
	b->secret_dirs = xrealloc(b->secret_dirs, (b->nsecret_dirs + 1) *
	    sizeof *b->secret_dirs);
	b->secret_dirs[b->nsecret_dirs++] = xstrdup(real);
	return true;
}

static int
batch_args(struct batch *b, int argc, char **argv)
{
	enum { O_JOBS = 256, O_PER_HOST, O_REPORT, O_RETRY, O_DRY, O_SHARD,
		O_CA, O_STATE, O_TIMEOUT, O_SECRETS_DIR, O_ENV_PREFIX, O_TRUST };
	static const struct option opts[] = {
		{ "jobs", required_argument, NULL, O_JOBS },
		{ "per-host", required_argument, NULL, O_PER_HOST },
		{ "report", required_argument, NULL, O_REPORT },
		{ "retry-failed", no_argument, NULL, O_RETRY },
		{ "dry-run", no_argument, NULL, O_DRY },
		{ "shard", required_argument, NULL, O_SHARD },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "secrets-dir", required_argument, NULL, O_SECRETS_DIR },
		{ "secrets-env-prefix", required_argument, NULL, O_ENV_PREFIX },
		{ "trust-csv", no_argument, NULL, O_TRUST },
		{ NULL, 0, NULL, 0 }
	};
	char	*end;
	long	 v;
	int	 ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case O_JOBS:
		case O_PER_HOST:
		case O_TIMEOUT:
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > (ch == O_TIMEOUT ?
			    3600 : 256) || (ch == O_TIMEOUT && v < 5)) {
				fprintf(stderr, "popbridge: batch: bad number "
				    "\"%s\"\n", optarg);
				return EX_USAGE;
			}
			if (ch == O_JOBS)
				b->cf.jobs = v;
			else if (ch == O_PER_HOST)
				b->per_host = v;
			else
				b->cf.timeout = v;
			break;
		case O_REPORT:
			b->report = optarg;
			break;
		case O_RETRY:
			b->retry_failed = true;
			break;
		case O_DRY:
			b->dry_run = true;
			break;
		case O_SHARD:
			if (!shard_parse(optarg, &b->shard_k, &b->shard_n)) {
				fprintf(stderr, "popbridge: batch: --shard takes "
				    "K/N with 0 <= K < N\n");
				return EX_USAGE;
			}
			break;
		case O_CA:
			b->ca_file = optarg;
			break;
		case O_SECRETS_DIR:
			if (!secrets_dir_add(b, optarg))
				return EX_USAGE;
			break;
		case O_ENV_PREFIX:
			/* A name's start: letters, digits, _ (a NAME_ at least). */
			if (optarg[0] == '\0' || strspn(optarg,
			    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			    "0123456789_") != strlen(optarg)) {
				fprintf(stderr, "popbridge: batch: "
				    "--secrets-env-prefix takes the start of a "
				    "variable name (letters, digits, _)\n");
				return EX_USAGE;
			}
			b->env_prefixes = xrealloc(b->env_prefixes,
			    (b->nenv_prefixes + 1) * sizeof *b->env_prefixes);
			b->env_prefixes[b->nenv_prefixes++] = optarg;
			break;
		case O_TRUST:
			b->trust_csv = true;
			break;
		case O_STATE:
			if (optarg[0] != '/') {
				fprintf(stderr, "popbridge: batch: --state-dir "
				    "must be an absolute path\n");
				return EX_USAGE;
			}
			free(b->cf.state_dir);
			b->cf.state_dir = xstrdup(optarg);
			break;
		default:
			fputs(batch_usage, stderr);
			return EX_USAGE;
		}
	}
	if (argc - optind != 1) {
		fputs(batch_usage, stderr);
		return EX_USAGE;
	}
	b->file = argv[optind];
	return -1;
}

static int
exit_code(struct batch *b)
{
	size_t	 i;
	bool	 failed = false;

	for (i = 0; i < b->njobs; i++)
		failed = failed || b->jobs[i].state != J_DONE ||
		    (b->jobs[i].rep.r != RES_OK && b->jobs[i].rep.r != RES_MSG);
	if (b->invalid > 0)
		return EX_DATAERR;
	return failed ? EX_TEMPFAIL : EX_OK;
}

int
cmd_batch(struct globals *g, int argc, char **argv)
{
	struct batch	 b;
	static const int sigs[] = { SIGINT, SIGTERM, SIGCHLD };
	char		*cause = NULL;
	enum result	 r;
	size_t		 i;
	int		 code;

	log_open(true, g->verbose);
	memset(&b, 0, sizeof b);
	b.cf.path = xstrdup("(batch)");
	b.cf.timeout = 120;
	b.cf.jobs = 8;
	b.per_host = 4;
	b.sigpipe[0] = b.sigpipe[1] = -1;
	if ((code = batch_args(&b, argc, argv)) >= 0)
		goto out;
	/* Where `run`, the daemon and `migrate` keep theirs: what one of
	 * them imported, the batch does not import again. */
	if (b.cf.state_dir == NULL &&
	    (r = config_state_dir(g, &b.cf.state_dir, &cause)) != RES_OK) {
		log_warn("batch: %s", cause);
		code = result_exit_code(r);
		goto out;
	}
	if (b.report != NULL) {
		if ((b.rep = fopen(b.report, "w")) == NULL) {
			log_warn("batch: %s: %s", b.report, strerror(errno));
			code = EX_CANTCREAT;
			goto out;
		}
		report_header(&b);
	}
	if ((r = load_rows(&b, &cause)) != RES_OK) {
		log_warn("batch: %s", cause);
		code = result_exit_code(r);
		goto out;
	}
	log_info("batch: %zu account%s to run%s, %u invalid row%s; ledgers in "
	    "%s", b.njobs, b.njobs == 1 ? "" : "s", b.shard_n > 1 ?
	    " in this shard" : "", b.invalid, b.invalid == 1 ? "" : "s",
	    b.cf.state_dir);
	if (b.dry_run) {
		for (i = 0; i < b.njobs; i++) {
			r = account_dry_run(&b.cf, b.jobs[i].ac, &cause);
			if (r != RES_OK) {
				log_warn("%s: %s", b.jobs[i].ac->name, cause);
				free(cause);
				cause = NULL;
			}
			b.jobs[i].state = J_DONE;
			b.jobs[i].rep.r = r;
		}
		code = exit_code(&b);
		goto out;
	}
	sigpipe_open(b.sigpipe, sigs, sizeof sigs / sizeof sigs[0]);
	b.tty = isatty(STDERR_FILENO);
	b.started = now_seconds();
	run_jobs(&b);
	code = exit_code(&b);
	if (count_state(&b, J_DONE) < b.njobs || code == EX_TEMPFAIL)
		log_info("batch: run it again (with --retry-failed for just the "
		    "unfinished accounts); nothing is imported twice");
out:
	free(cause);
	if (b.rep != NULL)
		fclose(b.rep);
	for (i = 0; i < b.njobs; i++) {
		free(b.jobs[i].rep.cause);
		free(b.jobs[i].source);
	}
	for (i = 0; i < b.nkeys; i++) {
		free(b.keys[i].source);
		free(b.keys[i].dest);
	}
	free(b.keys);
	for (i = 0; i < b.nsecret_dirs; i++)
		free(b.secret_dirs[i]);
	free(b.secret_dirs);
	free(b.env_prefixes);
	for (i = 0; i < b.cf.naccounts; i++)
		account_free(&b.cf.accounts[i]);
	for (i = 0; i < b.nhosts; i++)
		free(b.hosts[i].name);
	free(b.hosts);
	free(b.jobs);
	free(b.cf.accounts);
	free(b.cf.state_dir);
	free(b.cf.path);
	if (b.sigpipe[0] != -1) {
		close(b.sigpipe[0]);
		close(b.sigpipe[1]);
	}
	return code;
}
