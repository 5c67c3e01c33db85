/*
 * `popbridge migrate POP3-URL IMAP-URL[/MAILBOX]`: move a whole POP3
 * mailbox into IMAP in one go, with no config file.
 *
 * It builds a one-account configuration from the command line and runs
 * the same account run as `run`, so the crash safety is the same, and it
 * keeps its ledger where `run` and the daemon keep theirs (the state_dir
 * of the config, -c or the default file, else /var/lib/popbridge for
 * root, $XDG_STATE_HOME/popbridge for others): the same command run again
 * resumes, and polling the mailbox afterwards imports nothing twice.
 * Ctrl-C, SIGTERM or SIGHUP stops after the batch in flight.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "bridge.h"

#define PROGRESS_EVERY	5.0	/* seconds between lines off a terminal */

const char migrate_usage[] =
    "usage: popbridge migrate POP3-URL IMAP-URL[/MAILBOX] --user-pop U "
    "--user-imap U\n"
    "           [--keep | --delete] [--flags F] [--dry-run] [--ca-file F]\n"
    "           [--password-command-pop CMD] [--password-command-imap CMD]\n"
    "           [--state-dir D] [--timeout S] [--since YYYY-MM-DD]\n"
    "           [--limit-rate BYTES/S]\n"
    "Passwords: --password-command-*, else $POPBRIDGE_POP3_PASSWORD and\n"
    "$POPBRIDGE_IMAP_PASSWORD, else a prompt on the terminal.\n";

struct migrate {
	struct config	 cf;
	struct account	 ac;
	bool		 dry_run;
	double		 rate;		/* --limit-rate, bytes a second */
	double		 started;
	double		 last_shown;
	bool		 tty;
};


static void
fmt_eta(double secs, char *buf, size_t sz)
{
	long	 s = secs < 0 ? 0 : (long)(secs + 0.5);

	if (s >= 3600)
		snprintf(buf, sz, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60,
		    s % 60);
	else
		snprintf(buf, sz, "%ld:%02ld", s / 60, s % 60);
}

/* A bar on a terminal; a line every few seconds elsewhere. */
static void
show_progress(void *arg, const struct run_stats *st)
{
	struct migrate	*m = arg;
	double		 now = now_seconds(), el = now - m->started;
	double		 frac, rate, eta;
	char		 bar[31], etas[32];
	size_t		 i, fill;

	if (st->todo == 0)
		return;
	if (!m->tty && now - m->last_shown < PROGRESS_EVERY &&
	    st->done < st->todo)
		return;
	m->last_shown = now;
	frac = st->todo_bytes > 0 ? (double)st->done_bytes /
	    (double)st->todo_bytes : (double)st->done / st->todo;
	rate = el > 0 ? st->done / el : 0;
	eta = frac > 0 ? el / frac - el : 0;
	fmt_eta(eta, etas, sizeof etas);
	if (m->tty) {
		fill = (size_t)(frac * 30 + 0.5);
		for (i = 0; i < 30; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %u/%u messages  %.1f/%.1f MB  %.0f/s  "
		    "%s left ", bar, st->done, st->todo,
		    (double)st->done_bytes / 1e6,
		    (double)st->todo_bytes / 1e6, rate, etas);
		if (st->done == st->todo)
			fputc('\n', stderr);
		fflush(stderr);
		log_bar_drawn(st->done < st->todo);
	} else
		log_info("migrate: %u/%u messages, %.1f/%.1f MB, %.0f "
		    "messages/s, %s left", st->done, st->todo,
		    (double)st->done_bytes / 1e6,
		    (double)st->todo_bytes / 1e6, rate, etas);
}

/* Percent-decoding for the mailbox part of an IMAP URL; NULL if it
 * decodes to a NUL byte, which would cut the name short unseen. */
static char *
url_decode(const char *s)
{
	char	*out = xmalloc(strlen(s) + 1), *o = out;
	unsigned int c;

	for (; *s != '\0'; s++) {
		if (*s == '%' && isxdigit((unsigned char)s[1]) &&
		    isxdigit((unsigned char)s[2]) && sscanf(s + 1, "%2x", &c) ==
		    1) {
			if (c == 0) {
				free(out);
				return NULL;
			}
			*o++ = (char)c;
			s += 2;
		} else
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

/* The secret from a command, the environment, or the terminal. */
static enum result
get_secret(struct endpoint *ep, const char *cmd, const char *env,
    const char *what, char **cause)
{
	const char	*v;
	char		*prompt;
	enum result	 r;

	if (cmd != NULL) {
		ep->password_command = xstrdup(cmd);
		return RES_OK;
	}
	if ((v = getenv(env)) != NULL && v[0] != '\0') {
		if (!config_value_ok(v))
			return fail(cause, RES_CONFIG, "%s holds a line break (CR "
			    "or LF)", env);
		ep->password = xstrdup(v);
		return RES_OK;
	}
	if (!tty_available())
		return fail(cause, RES_CONFIG, "no %s password: set %s, use "
		    "--password-command-%s, or run on a terminal", what, env,
		    ep->imap ? "imap" : "pop");
	prompt = xprintf("%s password for %s at %s: ", what, ep->user,
	    ep->host);
	r = tty_ask(prompt, false, &ep->password, cause);
	free(prompt);
	return r;
}

static int
migrate_fail(struct migrate *m, enum result r, const char *fmt, ...)
    PRINTFLIKE(3, 4);

static int
migrate_fail(struct migrate *m, enum result r, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	(void)m;
	va_start(ap, fmt);
	msg = xvprintf(fmt, ap);
	va_end(ap);
	log_warn("migrate: %s", msg);
	free(msg);
	return r == RES_CONFIG ? EX_USAGE : result_exit_code(r);
}

enum { O_USER_POP = 256, O_USER_IMAP, O_KEEP, O_DELETE, O_FLAGS, O_DRY, O_CA,
	O_PCMD_POP, O_PCMD_IMAP, O_STATE, O_TIMEOUT, O_SINCE, O_RATE };

/* --since YYYY-MM-DD: midnight UTC of that day. */
static bool
parse_day(const char *s, time_t *t)
{
	struct tm	 tm;
	char		*end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%Y-%m-%d", &tm);
	if (end == NULL || *end != '\0' || tm.tm_year < 70)
		return false;
	*t = timegm(&tm);
	return true;
}

/* --limit-rate N[k|M]: bytes a second, at least 1 kB/s. */
static bool
parse_rate(const char *s, double *rate)
{
	char		*end;
	unsigned long	 v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || v > 1000UL * 1000 * 1000)	/* a GB/s is no cap */
		return false;
	if (*end == 'k' || *end == 'K')
		*rate = (double)v * 1000, end++;
	else if (*end == 'm' || *end == 'M')
		*rate = (double)v * 1000 * 1000, end++;
	else
		*rate = (double)v;
	return *end == '\0' && *rate >= 1000;
}

/* --flags: IMAP flags and keywords, separated by commas or blanks. */
static int
migrate_flags(struct migrate *m, const char *arg)
{
	char	*copy = xstrdup(arg), *tok, *save;
	int	 code = -1;

	for (tok = strtok_r(copy, ", ", &save); tok != NULL && code == -1;
	    tok = strtok_r(NULL, ", ", &save))
		/* tok points into copy: report it before copy goes. */
		if (!config_flags_add(&m->ac.flags, tok))
			code = migrate_fail(m, RES_CONFIG, "--flags: \"%.64s\" "
			    "is not an IMAP flag or keyword", tok);
	free(copy);
	return code;
}

/* One option into m; an exit code, or -1 to go on. */
static int
migrate_option(struct migrate *m, int ch, const char **pcmd,
    const char **icmd, int *nkeep)
{
	struct account	*ac = &m->ac;
	char		*end;
	long		 t;

	switch (ch) {
	case O_USER_POP:
		ac->pop3.user = xstrdup(optarg);
		return -1;
	case O_USER_IMAP:
		ac->imap.user = xstrdup(optarg);
		return -1;
	case O_KEEP:
	case O_DELETE:
		ac->keep = ch == O_KEEP;
		(*nkeep)++;
		return -1;
	case O_FLAGS:
		return migrate_flags(m, optarg);
	case O_DRY:
		m->dry_run = true;
		return -1;
	case O_CA:
		ac->pop3.ca_file = xstrdup(optarg);
		ac->imap.ca_file = xstrdup(optarg);
		return -1;
	case O_PCMD_POP:
		*pcmd = optarg;
		return -1;
	case O_PCMD_IMAP:
		*icmd = optarg;
		return -1;
	case O_STATE:
		if (optarg[0] != '/')
			return migrate_fail(m, RES_CONFIG,
			    "--state-dir must be an absolute path");
		m->cf.state_dir = xstrdup(optarg);
		return -1;
	case O_TIMEOUT:
		t = strtol(optarg, &end, 10);
		if (*end != '\0' || t < 5 || t > 3600)
			return migrate_fail(m, RES_CONFIG,
			    "--timeout must be 5 to 3600 seconds");
		m->cf.timeout = t;
		return -1;
	case O_SINCE:
		if (!parse_day(optarg, &ac->since))
			return migrate_fail(m, RES_CONFIG, "--since takes a day "
			    "as YYYY-MM-DD (1970 or later)");
		return -1;
	case O_RATE:
		if (!parse_rate(optarg, &m->rate))
			return migrate_fail(m, RES_CONFIG, "--limit-rate takes "
			    "bytes a second, at least 1000 (e.g. 500k, 2M)");
		return -1;
	default:
		fputs(migrate_usage, stderr);
		return EX_USAGE;
	}
}

/* POP3-URL and IMAP-URL[/MAILBOX] into m's account; -1 to go on. */
static int
migrate_urls(struct migrate *m, const char *pop3, const char *imap)
{
	struct account	*ac = &m->ac;
	const char	*urls[2] = { pop3, imap }, *bad;
	char		*why = NULL, *slash;
	int		 i, code;

	/*
	 * The logins are --user-pop and --user-imap.  Refused before the
	 * mailbox is split off: in "imaps://max:pa/ss@host" the '/' of the
	 * password would start the mailbox.  An '@' in a mailbox name is
	 * written %40.
	 */
	for (i = 0; i < 2; i++)
		if (strchr(urls[i], '@') != NULL) {
			char *shown = config_url_redact(urls[i]);

			code = migrate_fail(m, RES_CONFIG, "%s \"%s\": no user "
			    "or password in the url (the logins are --user-pop "
			    "and --user-imap; write an '@' in the mailbox as "
			    "%%40)", i == 0 ? "POP3-URL" : "IMAP-URL", shown);
			free(shown);
			return code;
		}
	ac->pop3.url = xstrdup(pop3);
	/* IMAP-URL[/MAILBOX]: the part after the host is the mailbox. */
	ac->imap.url = xstrdup(imap);
	ac->imap.imap = true;
	slash = strstr(ac->imap.url, "://");
	if (slash != NULL && (slash = strchr(slash + 3, '/')) != NULL &&
	    slash[1] != '\0') {
		ac->imap.mailbox = url_decode(slash + 1);
		slash[1] = '\0';
	} else
		ac->imap.mailbox = xstrdup("INBOX");
	if (config_parse_url(&ac->pop3, &why) != RES_OK ||
	    config_parse_url(&ac->imap, &why) != RES_OK) {
		code = migrate_fail(m, RES_CONFIG, "%s", why);
		free(why);
		return code;
	}
	/* UTF-8 (%C3%BC or as typed) or modified UTF-7, as in a config. */
	if (ac->imap.mailbox == NULL)
		return migrate_fail(m, RES_CONFIG, "IMAP-URL: the mailbox holds "
		    "%%00, a NUL byte");
	if ((bad = account_valid_mailbox(ac->imap.mailbox, false)) != NULL) {
		char clean[300];

		return migrate_fail(m, RES_CONFIG, "mailbox \"%s\" %s",
		    log_clean(clean, sizeof clean, ac->imap.mailbox,
		    strlen(ac->imap.mailbox)), bad);
	}
	return -1;
}

/* Parse the command line into m; an exit code, or -1 to go on. */
static int
migrate_args(struct migrate *m, int argc, char **argv, const char **pcmd,
    const char **icmd)
{
	static const struct option opts[] = {
		{ "user-pop", required_argument, NULL, O_USER_POP },
		{ "user-imap", required_argument, NULL, O_USER_IMAP },
		{ "keep", no_argument, NULL, O_KEEP },
		{ "delete", no_argument, NULL, O_DELETE },
		{ "flags", required_argument, NULL, O_FLAGS },
		{ "dry-run", no_argument, NULL, O_DRY },
		{ "ca-file", required_argument, NULL, O_CA },
		{ "password-command-pop", required_argument, NULL, O_PCMD_POP },
		{ "password-command-imap", required_argument, NULL,
		    O_PCMD_IMAP },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "since", required_argument, NULL, O_SINCE },
		{ "limit-rate", required_argument, NULL, O_RATE },
		{ NULL, 0, NULL, 0 }
	};
	struct account	*ac = &m->ac;
	struct account_fault f;
	int		 ch, code, nkeep = 0;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if ((code = migrate_option(m, ch, pcmd, icmd, &nkeep)) != -1)
			return code;
	if (argc - optind != 2 || nkeep > 1) {
		fputs(migrate_usage, stderr);
		return EX_USAGE;
	}
	if (ac->pop3.user == NULL || ac->imap.user == NULL)
		return migrate_fail(m, RES_CONFIG, "--user-pop and --user-imap "
		    "name the two logins");
	/* As every source of accounts checks a login (no secret yet: that
	 * is read later, by get_secret). */
	if (!account_valid_login(&ac->pop3, &f))
		return migrate_fail(m, RES_CONFIG, "--user-pop %s", f.why);
	if (!account_valid_login(&ac->imap, &f))
		return migrate_fail(m, RES_CONFIG, "--user-imap %s", f.why);
	return migrate_urls(m, argv[optind], argv[optind + 1]);
}

/* The closing report: counts, rate and every message not imported. */
static void
report(struct migrate *m, const struct run_stats *st, enum result r)
{
	struct ledger_status ls;
	char		*cause = NULL;
	size_t		 i;

	log_info("migrate: %u to import, %u imported, %u failed, %u deleted, "
	    "%.1f MB in %.1f s (%.0f messages/s, %.2f MB/s)", st->todo,
	    st->imported, st->failed, st->deleted, (double)st->bytes / 1e6,
	    st->seconds, st->seconds > 0 ? st->imported / st->seconds : 0,
	    st->seconds > 0 ? (double)st->bytes / 1e6 / st->seconds : 0);
	if (ledger_read_status(m->cf.state_dir, &m->ac, &ls, &cause) ==
	    RES_OK) {
		for (i = 0; i < ls.nfailures; i++) {
			char *one = ledger_failure_text(&ls.failures[i]);

			log_info("migrate: not imported: %s", one);
			free(one);
		}
		ledger_status_free(&ls);
	}
	free(cause);
	if (r == RES_MSG)
		log_info("migrate: the messages not imported stay on the POP3 "
		    "server; the same command tries them again");
	else if (stop_requested || r == RES_TEMP || st->done < st->todo)
		log_info("migrate: run the same command again to resume; "
		    "nothing is imported twice");
}

int
cmd_migrate(struct globals *g, int argc, char **argv)
{
	struct migrate	 m;
	struct run_opts	 opts;
	struct run_stats st;
	const char	*pcmd = NULL, *icmd = NULL;
	char		*cause = NULL;
	enum result	 r;
	int		 code;

	/* An interactive tool: progress and the report go to stderr. */
	log_open(true, g->verbose);
	memset(&m, 0, sizeof m);
	m.cf.path = xstrdup("(command line)");
	m.cf.timeout = 120;
	m.cf.jobs = 1;
	m.ac.name = xstrdup("migrate");
	m.ac.keep = true;
	m.ac.flags = xstrdup("");
	if ((code = migrate_args(&m, argc, argv, &pcmd, &icmd)) >= 0)
		goto out;
	/* The ledger `run` and the daemon use, so that a migration and the
	 * polling after it (or before it) never import a message twice. */
	if (m.cf.state_dir == NULL &&
	    (r = config_state_dir(g, &m.cf.state_dir, &cause)) != RES_OK) {
		code = migrate_fail(&m, r, "%s", cause);
		goto out;
	}
	m.cf.accounts = &m.ac;
	m.cf.naccounts = 1;
	if ((r = get_secret(&m.ac.pop3, pcmd, "POPBRIDGE_POP3_PASSWORD",
	    "POP3", &cause)) != RES_OK ||
	    (r = get_secret(&m.ac.imap, icmd, "POPBRIDGE_IMAP_PASSWORD",
	    "IMAP", &cause)) != RES_OK) {
		code = migrate_fail(&m, r, "%s", cause);
		goto out;
	}
	if (m.dry_run) {
		r = account_dry_run(&m.cf, &m.ac, &cause);
		if (r != RES_OK)
			log_warn("migrate: %s", cause);
		code = result_exit_code(r);
		goto out;
	}

	stop_on_signals(true);
	pace_set(m.rate);
	m.tty = isatty(STDERR_FILENO);
	m.started = m.last_shown = now_seconds();
	opts.stop = &stop_requested;
	opts.progress = show_progress;
	opts.progress_arg = &m;
	log_info("migrate: %s@%s -> %s@%s/%s (%s); ledger in %s",
	    m.ac.pop3.user, m.ac.pop3.host, m.ac.imap.user, m.ac.imap.host,
	    m.ac.imap.mailbox, m.ac.keep ? "keeping the POP3 copies" :
	    "deleting each POP3 copy once imported", m.cf.state_dir);
	r = account_run(&m.cf, &m.ac, &opts, &st, &cause);
	if (m.tty && st.todo > 0 && st.done < st.todo)
		fputc('\n', stderr);
	if (r != RES_OK && cause != NULL)
		log_warn("migrate: %s", cause);
	report(&m, &st, r);
	/* Stopped before the end: a script must see it did not finish. */
	if (r == RES_OK && st.done < st.todo)
		r = RES_TEMP;
	code = result_exit_code(r);
out:
	free(cause);
	m.cf.accounts = NULL;
	m.cf.naccounts = 0;
	config_endpoint_free(&m.ac.pop3);
	config_endpoint_free(&m.ac.imap);
	free(m.ac.name);
	free(m.ac.flags);
	free(m.cf.path);
	free(m.cf.state_dir);
	return code;
}
