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
 *
 * Here: the command, its options, reading FILE into jobs; a row to an
 * account in batch_row.c, running the jobs in batch_run.c, the report in
 * batch_report.c.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "bridge.h"
#include "batch_int.h"

#define CSV_MAX_BYTES	(64 * 1024 * 1024)

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

/* The header row: the column of each name into col, and how many. */
static enum result
load_header(struct batch *b, struct csv *c, int *col, size_t *ncols,
    char **cause)
{
	struct csv_row	 row;
	const char	*err;
	int		 got;

	if ((got = csv_next(c, &row, &err)) != 1)
		return fail(cause, RES_CONFIG, "%s:%d: %s", b->file, row.line,
		    got == 0 ? "empty file" : err);
	*ncols = row.n;
	/* err, if any, is a column's name: not in the row. */
	err = batch_header_columns(&row, col);
	csv_row_free(&row);
	if (err != NULL)
		return fail(cause, RES_CONFIG, "%s:1: the header row has no "
		    "column %s", b->file, err);
	return RES_OK;
}

/* The report's five columns of a row; free *url0 and *url2 after. */
static void
row_report_cols(const int *col, const struct csv_row *row,
    const char **cols, char **url0, char **url2)
{
	static const int which[5] = { C_POP3_URL, C_POP3_USER, C_IMAP_URL,
		C_IMAP_USER, C_MAILBOX };
	size_t	 i;
	int	 k;

	for (i = 0; i < 5; i++) {
		k = which[i];
		cols[i] = col[k] >= 0 && (size_t)col[k] < row->n ?
		    row->f[col[k]] : "";
	}
	/* A password typed into a URL must not reach the report. */
	*url0 = config_url_redact(cols[0]);
	*url2 = config_url_redact(cols[2]);
	cols[0] = *url0;
	cols[2] = *url2;
}

/* A row that cannot run: counted, logged and reported. */
static void
row_invalid(struct batch *b, int line, const char *const *cols,
    const char *err)
{
	b->invalid++;
	log_warn("%s:%d: row skipped: %s", b->file, line, err);
	batch_report_row(b, line, cols, "invalid", NULL, "", 0, err);
}

/* A data row: an account of this shard to run (in b->cf.accounts), one
 * reported invalid, or nothing (another shard's, finished before).  The
 * row is freed. */
static void
load_row(struct batch *b, const int *col, size_t ncols, struct csv_row *row,
    size_t *cap)
{
	struct account	 ac;
	const char	*cols[5], *err;
	char		*url0, *url2, why[512];

	memset(&ac, 0, sizeof ac);
	/* The shard is the POP3 mailbox's, valid row or not. */
	err = batch_row_account(b, col, row, &ac, why, sizeof why);
	if (!batch_in_shard(b, &ac)) {
		account_free(&ac);
		csv_row_free(row);
		return;
	}
	row_report_cols(col, row, cols, &url0, &url2);
	if (err == NULL && row->n > ncols)
		err = "more fields than the header row has";
	if (err == NULL)
		err = batch_row_check(b, &ac, why, sizeof why);
	if (err != NULL)
		row_invalid(b, row->line, cols, err);
	free(url0);
	free(url2);
	if (err != NULL || (b->retry_failed && finished_before(b, &ac))) {
		account_free(&ac);
		csv_row_free(row);
		return;
	}
	if (b->cf.naccounts == *cap) {
		*cap = *cap == 0 ? 64 : *cap * 2;
		b->cf.accounts = xrealloc(b->cf.accounts,
		    *cap * sizeof *b->cf.accounts);
	}
	b->cf.accounts[b->cf.naccounts++] = ac;
	csv_row_free(row);
}

/* Read FILE: valid rows become jobs, invalid ones are reported. */
static enum result
load_rows(struct batch *b, char **cause)
{
	static const char *const none[5] = { "", "", "", "", "" };
	struct csv	 c;
	struct csv_row	 row;
	const char	*err;
	char		*data;
	int		 col[C_COUNT], got;
	size_t		 i, cap = 0, ncols = 0, len;
	enum result	 r;

	if ((r = file_read(b->file, CSV_MAX_BYTES, &data, &len, NULL,
	    cause)) != RES_OK)
		return r;
	csv_init(&c, data, len);
	if ((r = load_header(b, &c, col, &ncols, cause)) != RES_OK) {
		free(data);
		return r;
	}
	while ((got = csv_next(&c, &row, &err)) != 0) {
		if (got == 1)
			load_row(b, col, ncols, &row, &cap);
		/* An unreadable row belongs to no shard: shard 0 says. */
		else if (b->shard_n <= 1 || b->shard_k == 0)
			row_invalid(b, row.line, none, err);
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

/* --jobs, --per-host, --timeout: a whole number in [lo, hi]. */
static bool
option_number(const char *arg, long lo, long hi, long *v)
{
	char	*end;

	*v = strtol(arg, &end, 10);
	if (*end != '\0' || *v < lo || *v > hi) {
		fprintf(stderr, "popbridge: batch: bad number \"%s\"\n", arg);
		return false;
	}
	return true;
}

/* --secrets-env-prefix: a name's start, letters, digits, _ (a NAME_ at
 * least). */
static bool
env_prefix_add(struct batch *b, const char *prefix)
{
	if (prefix[0] == '\0' || strspn(prefix,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_") != strlen(prefix)) {
		fprintf(stderr, "popbridge: batch: --secrets-env-prefix takes "
		    "the start of a variable name (letters, digits, _)\n");
		return false;
	}
	b->env_prefixes = xrealloc(b->env_prefixes, (b->nenv_prefixes + 1) *
	    sizeof *b->env_prefixes);
	b->env_prefixes[b->nenv_prefixes++] = prefix;
	return true;
}

enum { O_JOBS = 256, O_PER_HOST, O_REPORT, O_RETRY, O_DRY, O_SHARD, O_CA,
	O_STATE, O_TIMEOUT, O_SECRETS_DIR, O_ENV_PREFIX, O_TRUST };

/* One option into b; false (said on stderr) if it is wrong. */
static bool
batch_option(struct batch *b, int ch, char *arg)
{
	long	 v;

	switch (ch) {
	case O_JOBS:
	case O_PER_HOST:
	case O_TIMEOUT:
		if (!option_number(arg, ch == O_TIMEOUT ? 5 : 1,
		    ch == O_TIMEOUT ? 3600 : 256, &v))
			return false;
		if (ch == O_JOBS)
			b->cf.jobs = v;
		else if (ch == O_PER_HOST)
			b->per_host = v;
		else
			b->cf.timeout = v;
		break;
	case O_REPORT:
		b->report = arg;
		break;
	case O_RETRY:
		b->retry_failed = true;
		break;
	case O_DRY:
		b->dry_run = true;
		break;
	case O_SHARD:
		if (!shard_parse(arg, &b->shard_k, &b->shard_n)) {
			fprintf(stderr, "popbridge: batch: --shard takes "
			    "K/N with 0 <= K < N\n");
			return false;
		}
		break;
	case O_CA:
		b->ca_file = arg;
		break;
	case O_SECRETS_DIR:
		if (!secrets_dir_add(b, arg))
			return false;
		break;
	case O_ENV_PREFIX:
		if (!env_prefix_add(b, arg))
			return false;
		break;
	case O_TRUST:
		b->trust_csv = true;
		break;
	case O_STATE:
		if (arg[0] != '/') {
			fprintf(stderr, "popbridge: batch: --state-dir "
			    "must be an absolute path\n");
			return false;
		}
		free(b->cf.state_dir);
		b->cf.state_dir = xstrdup(arg);
		break;
	default:
		fputs(batch_usage, stderr);
		return false;
	}
	return true;
}

static int
batch_args(struct batch *b, int argc, char **argv)
{
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
	int	 ch;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (!batch_option(b, ch, optarg))
			return EX_USAGE;
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

/* --dry-run: each account's dry run instead of its run. */
static void
dry_run(struct batch *b)
{
	char		*cause = NULL;
	enum result	 r;
	size_t		 i;

	for (i = 0; i < b->njobs; i++) {
		r = account_dry_run(&b->cf, b->jobs[i].ac, &cause);
		if (r != RES_OK) {
			log_warn("%s: %s", b->jobs[i].ac->name, cause);
			free(cause);
			cause = NULL;
		}
		b->jobs[i].state = J_DONE;
		b->jobs[i].rep.r = r;
	}
}

static void
batch_free(struct batch *b)
{
	size_t	 i;

	if (b->rep != NULL)
		fclose(b->rep);
	for (i = 0; i < b->njobs; i++) {
		free(b->jobs[i].rep.cause);
		free(b->jobs[i].source);
	}
	for (i = 0; i < b->nkeys; i++) {
		free(b->keys[i].source);
		free(b->keys[i].dest);
	}
	free(b->keys);
	for (i = 0; i < b->nsecret_dirs; i++)
		free(b->secret_dirs[i]);
	free(b->secret_dirs);
	free(b->env_prefixes);
	for (i = 0; i < b->cf.naccounts; i++)
		account_free(&b->cf.accounts[i]);
	for (i = 0; i < b->nhosts; i++)
		free(b->hosts[i].name);
	free(b->hosts);
	free(b->jobs);
	free(b->cf.accounts);
	free(b->cf.state_dir);
	free(b->cf.path);
	if (b->sigpipe[0] != -1) {
		close(b->sigpipe[0]);
		close(b->sigpipe[1]);
	}
}

int
cmd_batch(struct globals *g, int argc, char **argv)
{
	struct batch	 b;
	static const int sigs[] = { SIGINT, SIGTERM, SIGCHLD };
	char		*cause = NULL;
	enum result	 r;
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
		batch_report_header(&b);
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
		dry_run(&b);
		code = exit_code(&b);
		goto out;
	}
	sigpipe_open(b.sigpipe, sigs, sizeof sigs / sizeof sigs[0]);
	b.tty = isatty(STDERR_FILENO);
	b.started = now_seconds();
	batch_run_jobs(&b);
	code = exit_code(&b);
	if (batch_count_state(&b, J_DONE) < b.njobs || code == EX_TEMPFAIL)
		log_info("batch: run it again (with --retry-failed for just the "
		    "unfinished accounts); nothing is imported twice");
out:
	free(cause);
	batch_free(&b);
	return code;
}
