/*
 * popbridge's command line: global options and a table of subcommands.
 * Result classes become sysexits(3) exit codes in result.c.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "bridge.h"
#include "route.h"

struct command {
	const char	*name;
	const char	*usage;
	int		(*fn)(struct globals *, int, char **);
	const char	*help;		/* the whole --help text, or NULL */
};

static int	cmd_run(struct globals *, int, char **);
static int	cmd_check(struct globals *, int, char **);
static int	cmd_retry(struct globals *, int, char **);

static const struct command commands[] = {
	{ "run", "run [--force] [--dry-run] [ACCOUNT...]", cmd_run, NULL },
	{ "check", "check [-n] [ACCOUNT...]", cmd_check, NULL },
	{ "daemon", "daemon [-f]", cmd_daemon, NULL },
	{ "status", "status [--json] [ACCOUNT...]", cmd_status, NULL },
	{ "retry", "retry ACCOUNT [UIDL]", cmd_retry, NULL },
	{ "add", "add ADDRESS --to IMAP-URL [--imap-user U] [--mailbox M] "
	    "[--name NAME] [...]", cmd_add, add_usage },
	{ "migrate", "migrate POP3-URL IMAP-URL[/MAILBOX] --user-pop U "
	    "--user-imap U [...]", cmd_migrate, migrate_usage },
	{ "batch", "batch FILE [--jobs N] [--per-host N] [--report OUT] "
	    "[--retry-failed] [--dry-run] [--shard K/N] [...]", cmd_batch, NULL },
};

static void
usage_to(FILE *f)
{
	size_t	 i;

	fprintf(f, "usage: popbridge [-v] [-c FILE] COMMAND\n");
	for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "       popbridge [-v] [-c FILE] %s\n",
		    commands[i].usage);
	fprintf(f, "       popbridge -V\n");
}

static void
usage(void)
{
	usage_to(stderr);
}

/* --help, asked for: the answer goes to stdout, and it is no error. */
static bool
wants_help(const char *arg)
{
	return arg != NULL && (strcmp(arg, "--help") == 0 ||
	    strcmp(arg, "-h") == 0 || strcmp(arg, "help") == 0);
}

static struct config *
load_config(struct globals *g, int *exitcode)
{
	struct config	*cf;
	char		*cause = NULL;
	enum result	 r;

	if ((r = config_load(g->config, &cf, &cause)) != RES_OK) {
		log_warn("%s", cause);
		free(cause);
		*exitcode = result_exit_code(r);
		return NULL;
	}
	/* The daemon hands state_dir to `user`: root's runs may use it too. */
	file_trust_user(cf->user);
	return cf;
}

/* The accounts named on the command line, or all; NULL if one is unknown. */
static const struct account **
pick_accounts(const struct config *cf, int argc, char **argv, size_t *n)
{
	const struct account	**list;
	int			  i;
	size_t			  j;

	list = xcalloc(cf->naccounts + (size_t)argc + 1, sizeof *list);
	*n = 0;
	if (argc == 0) {
		for (j = 0; j < cf->naccounts; j++)
			list[(*n)++] = &cf->accounts[j];
		return list;
	}
	for (i = 0; i < argc; i++) {
		if ((list[*n] = config_find(cf, argv[i])) == NULL) {
			log_warn("%s: no account \"%s\"", cf->path, argv[i]);
			free(list);
			return NULL;
		}
		(*n)++;
	}
	return list;
}

/* check -n: what a routed account's config says, in one line. */
static void
routing_summary(const struct account *ac)
{
	const struct routing *rt = ac->routing;
	size_t		 k;

	if (rt == NULL)
		return;
	printf("%s: %zu rule%s%s; destinations: imap", ac->name, rt->nrules,
	    rt->nrules == 1 ? "" : "s", rt->md != NULL ? ", multidrop" : "");
	for (k = 0; k < rt->ndests; k++)
		printf(", %s", rt->dests[k].name);
	printf("\n");
}

static void
log_summary(const struct account *ac, const struct run_stats *st)
{
	char	 kept[64] = "";

	if (st->kept > 0)
		snprintf(kept, sizeof kept, "; %u kept on the POP3 server by a "
		    "rule", st->kept);
	log_info("%s: %u new, %u imported, %u failed, %u deleted, %.1f MB in "
	    "%.1f s%s", ac->name, st->fresh, st->imported, st->failed,
	    st->deleted, (double)st->bytes / 1e6, st->seconds, kept);
}

/*
 * Under cron, a wrong password must not be tried at the provider every
 * five minutes (providers lock an account for that): after a refused
 * login, `run` rests the account, 10 minutes doubling with each refusal
 * in a row up to 6 hours, as the daemon does, unless the config or a
 * password file changed since (a fixed password is tried at once) or
 * --force says so.  One line says when it tries again.
 */
#define REFUSAL_REST	600
#define REFUSAL_MAX	(6 * 3600)

static bool
changed_since(const char *path, time_t t)
{
	struct stat	 sb;

	return path != NULL && stat(path, &sb) == 0 && sb.st_mtime > t;
}

static bool
resting(const struct config *cf, const struct account *ac)
{
	struct ledger_status ls;
	char		*cause = NULL, when[32];
	time_t		 until;
	long		 rest = REFUSAL_REST;
	unsigned int	 k;
	bool		 rests = false;

	if (ledger_read_status(cf->state_dir, ac, &ls, &cause) != RES_OK) {
		free(cause);
		return false;
	}
	for (k = 1; k < ls.auth_refusals && rest < REFUSAL_MAX; k++)
		rest *= 2;
	if (rest > REFUSAL_MAX)
		rest = REFUSAL_MAX;
	until = ls.last_refusal + rest;
	if (ls.auth_refusals > 0 && time(NULL) < until &&
	    !changed_since(cf->path, ls.last_refusal) &&
	    !changed_since(ac->pop3.password_file, ls.last_refusal) &&
	    !changed_since(ac->imap.password_file, ls.last_refusal)) {
		strftime(when, sizeof when, "%H:%M", localtime(&until));
		log_warn("%s: the login was refused %u time%s in a row (%s); "
		    "not tried again before %s: fix the password (a changed "
		    "config or password file is tried at once) or run "
		    "`popbridge run --force %s`", ac->name, ls.auth_refusals,
		    ls.auth_refusals == 1 ? "" : "s", ls.last_error != NULL ?
		    ls.last_error : "refused", when, ac->name);
		rests = true;
	}
	ledger_status_free(&ls);
	return rests;
}

static int
cmd_run(struct globals *g, int argc, char **argv)
{
	struct config		 *cf;
	const struct account	**list;
	const struct run_opts	  ro = { &stop_requested, NULL, NULL };
	struct run_stats	  st;
	enum result		  r, worst = RES_OK;
	char			 *cause;
	size_t			  i, n;
	int			  ch, code;
	time_t			  started;
	bool			  force = false, dry = false;
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};

	while ((ch = getopt_long(argc, argv, "fn", opts, NULL)) != -1) {
		if (ch == 'f')
			force = true;
		else if (ch == 'n')
			dry = true;
		else {
			usage();
			return EX_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if ((cf = load_config(g, &code)) == NULL)
		return code;
	if ((list = pick_accounts(cf, argc, argv, &n)) == NULL) {
		config_free(cf);
		return EX_USAGE;
	}
	stop_on_signals(true);
	/* --dry-run: what would be imported and where it would go; no
	 * change on either server or in the ledger. */
	for (i = 0; dry && i < n && !stop_requested; i++) {
		cause = NULL;
		if ((r = account_dry_run(cf, list[i], &cause)) != RES_OK &&
		    cause != NULL)
			log_warn("%s: %s", list[i]->name, cause);
		free(cause);
		worst = result_worst(worst, r);
	}
	for (i = dry ? n : 0; i < n && !stop_requested; i++) {
		if (!force && resting(cf, list[i])) {
			worst = result_worst(worst, RES_AUTH);
			continue;
		}
		cause = NULL;
		started = time(NULL);
		r = account_run(cf, list[i], &ro, &st, &cause);
		if (r != RES_OK && cause != NULL)
			log_warn("%s: %s", list[i]->name, cause);
		log_summary(list[i], &st);
		free(cause);
		/* Turned failing, or working again: tell a person (once). */
		worker_notify(cf, list[i], started);
		worst = result_worst(worst, r);
	}
	/* Stopped before every account had its turn: not finished. */
	if (i < n)
		worst = result_worst(worst, RES_TEMP);
	free(list);
	config_free(cf);
	return result_exit_code(worst);
}

/* retry in each leg of a routed account (one leg without routing). */
static enum result
retry_legs(struct ledger *l, const struct account *ac, const char *uidl,
    unsigned int *n, unsigned int *kept, char **cause)
{
	char		**dests;
	size_t		  nd, k;
	int64_t		  id;
	unsigned int	  c;
	enum result	  r = RES_OK;

	*n = *kept = 0;
	dests = account_dests(ac, &nd);
	for (k = 0; k < nd && r == RES_OK; k++) {
		if ((r = ledger_dest(l, dests[k], &id, cause)) != RES_OK)
			break;
		ledger_use(l, id);
		if ((r = ledger_release(l, uidl, &c, cause)) == RES_OK)
			*n += c;
		if (r == RES_OK && (r = ledger_unkeep(l, uidl, &c, cause)) ==
		    RES_OK)
			*kept += c;
	}
	for (k = 0; k < nd; k++)
		free(dests[k]);
	free(dests);
	return r;
}

/*
 * `retry ACCOUNT [UIDL]`: messages set aside after failing in several runs
 * are tried again at the next run (all of the account's, or the one), and
 * those a routing rule kept on the POP3 server are routed again.
 */
static int
cmd_retry(struct globals *g, int argc, char **argv)
{
	const struct account	*ac;
	struct config		*cf;
	struct ledger		*l = NULL;
	char			*path, *source, *dest, *cause = NULL;
	unsigned int		 n = 0, kept = 0;
	enum result		 r;
	int			 code;

	if (argc < 2 || argc > 3 || argv[1][0] == '-') {
		fprintf(stderr, "usage: popbridge [-c FILE] retry ACCOUNT "
		    "[UIDL]\n");
		return argc == 2 && strcmp(argv[1], "--help") == 0 ? EX_OK :
		    EX_USAGE;
	}
	if ((cf = load_config(g, &code)) == NULL)
		return code;
	if ((ac = config_find(cf, argv[1])) == NULL) {
		log_warn("%s: no account \"%s\"", cf->path, argv[1]);
		config_free(cf);
		return EX_USAGE;
	}
	path = ledger_path(cf->state_dir, ac);
	source = ledger_source(ac);
	dest = ident_dest(&ac->imap);
	r = ledger_open(cf->state_dir, path, source, dest, &l, &cause);
	if (r == RES_OK)
		r = retry_legs(l, ac, argc == 3 ? argv[2] : NULL, &n, &kept,
		    &cause);
	if (r == RES_OK) {
		printf("%s: %u message%s set aside will be tried again at the "
		    "next run\n", ac->name, n, n == 1 ? "" : "s");
		if (kept > 0)
			printf("%s: %u message%s kept on the POP3 server by a "
			    "rule will be routed again at the next run\n",
			    ac->name, kept, kept == 1 ? "" : "s");
	} else
		log_warn("%s: %s", ac->name, cause);
	ledger_close(l);
	free(cause);
	free(path);
	free(source);
	free(dest);
	config_free(cf);
	return result_exit_code(r);
}

static int
cmd_check(struct globals *g, int argc, char **argv)
{
	struct config		 *cf;
	const struct account	**list;
	enum result		  r, worst = RES_OK;
	bool			  config_only = false;
	char			 *cause;
	size_t			  i, n;
	int			  ch, code;

	while ((ch = getopt(argc, argv, "n")) != -1) {
		if (ch != 'n') {
			usage();
			return EX_USAGE;
		}
		config_only = true;
	}
	argc -= optind;
	argv += optind;
	if ((cf = load_config(g, &code)) == NULL)
		return code;
	if ((list = pick_accounts(cf, argc, argv, &n)) == NULL) {
		config_free(cf);
		return EX_USAGE;
	}
	if (config_only) {
		for (i = 0; i < n; i++)
			routing_summary(list[i]);
		printf("configuration OK\n");
		free(list);
		config_free(cf);
		return EX_OK;
	}
	for (i = 0; i < n; i++) {
		cause = NULL;
		r = account_check(cf, list[i], &cause);
		free(cause);
		worst = result_worst(worst, r);
	}
	free(list);
	config_free(cf);
	return result_exit_code(worst);
}

/*
 * SQLite keeps the WAL index of a ledger in a shared mapping of its -shm
 * file; if that file can no longer be written (a file system remounted
 * read-only, an immutable flag), touching it raises SIGBUS.  End as a
 * temporary failure with a word, not a silent crash; the ledger settles
 * it next run, as after kill -9.
 */
static void
on_sigbus(int sig)
{
	static const char pre[] = "popbridge: ";
	static const char msg[] = ": the ledger's shared memory file cannot "
	    "be written (read-only or full state_dir); stopped\n";
	struct iovec	 iov[3];

	(void)sig;
	iov[0].iov_base = (void *)pre;
	iov[0].iov_len = sizeof pre - 1;
	iov[1].iov_base = (void *)log_account();
	iov[1].iov_len = strlen(log_account());
	iov[2].iov_base = (void *)msg;
	iov[2].iov_len = sizeof msg - 1;
	if (writev(STDERR_FILENO, iov, 3) == -1) {
		/* nothing more to do */
	}
	_exit(EX_TEMPFAIL);
}

/*
 * Every command holds passwords in memory (the config's, a password file's,
 * the ones `add` asks for), so none may leave a core dump for whoever can
 * read it: RLIMIT_CORE 0, hard as well so that nothing raises it again, and
 * not dumpable, which also keeps other processes of the same user from
 * attaching with ptrace or reading /proc/PID/mem.  Children inherit both;
 * exec resets "dumpable" (a password_command is its own program) and so
 * does a change of uid (to fs.suid_dumpable): the daemon says it again
 * after it drops root.
 */
static void
no_core_dumps(void)
{
	const struct rlimit none = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &none) == -1 ||
	    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("cannot turn core dumps off: %s", strerror(errno));
}

int
main(int argc, char **argv)
{
	struct globals	 g = { DEFAULT_CONFIG, false, 0 };
	size_t		 i;
	int		 ch, code;

	no_core_dumps();
	/* Files popbridge makes (ledger, spool) are private. */
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGBUS, on_sigbus);
	if (argc > 1 && (wants_help(argv[1]) ||
	    strcmp(argv[1], "--version") == 0)) {
		if (argv[1][2] == 'v')
			printf("popbridge %s\n", POPBRIDGE_VERSION);
		else
			usage_to(stdout);
		return EX_OK;
	}
	while ((ch = getopt(argc, argv, "+c:vVh")) != -1) {
		switch (ch) {
		case 'c':
			g.config = optarg;
			g.config_given = true;
			break;
		case 'v':
			g.verbose++;
			break;
		case 'V':
			printf("popbridge %s\n", POPBRIDGE_VERSION);
			return EX_OK;
		case 'h':
			usage_to(stdout);
			return EX_OK;
		default:
			usage();
			return EX_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage();
		return EX_USAGE;
	}
	log_open(g.verbose > 0 || isatty(STDERR_FILENO), g.verbose);
	for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[0], commands[i].name) != 0)
			continue;
		/* Every command answers --help the same way, with exit 0. */
		if (argc > 1 && wants_help(argv[1]) &&
		    strcmp(argv[1], "help") != 0) {
			if (commands[i].help != NULL)
				fputs(commands[i].help, stdout);
			else
				printf("usage: popbridge [-v] [-c FILE] %s\n",
				    commands[i].usage);
			printf("See popbridge(1).\n");
			return EX_OK;
		}
		/* 0, not 1: glibc then forgets the "+" (stop at the first
		 * non-option) of the global options and permutes again. */
		optind = 0;
		net_init();
		code = commands[i].fn(&g, argc, argv);
		net_cleanup();
		return code;
	}
	fprintf(stderr, "popbridge: unknown command \"%s\"\n", argv[0]);
	usage();
	return EX_USAGE;
}
