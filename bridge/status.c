/*
 * `popbridge status [--json | --prometheus] [ACCOUNT...]`: per account,
 * the last poll and its result, the counts, the messages refused with
 * their reasons and, when a daemon runs, the next poll.  It reads the
 * ledgers without locking them and the daemon's state file, so it works
 * while the daemon polls.
 *
 * What it reads of an account is a view (struct account_view), which the
 * daemon's web page, /status.json and /metrics read the same way
 * (http.c): the page says what `status` says, and /status.json is what
 * `status --json` prints.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "bridge.h"

static void
iso_time(time_t t, char *buf, size_t sz)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * The account's line in the daemon's state file (daemon.c write_state):
 * name, next poll, failures in a row, whether a poll runs.
 */
static void
daemon_entry(const struct config *cf, const char *name,
    struct daemon_entry *de)
{
	char		*path, line[512], *f[4], *p;
	size_t		 n;
	FILE		*fp;

	memset(de, 0, sizeof *de);
	if (!daemon_running(cf->pid_file))
		return;
	path = daemon_state_path(cf);
	if ((fp = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof line, fp) != NULL) {
			line[strcspn(line, "\n")] = '\0';
			for (n = 0, p = line; n < 4 && p != NULL; n++)
				f[n] = strsep(&p, "\t");
			if (n < 2 || strcmp(f[0], name) != 0)
				continue;
			de->next = (time_t)strtoll(f[1], NULL, 10);
			de->failures = n > 2 ? (unsigned int)strtoul(f[2],
			    NULL, 10) : 0;
			de->polling = n > 3 && strcmp(f[3], "1") == 0;
			de->found = true;
		}
		fclose(fp);
	}
	free(path);
}

/* s with each `from` replaced by `to`; s freed. */
static char *
replace(char *s, const char *from, const char *to)
{
	char	*at, *out;
	size_t	 off = 0;

	if (from == NULL || *from == '\0')
		return s;
	while ((at = strstr(s + off, from)) != NULL) {
		out = xprintf("%.*s%s%s", (int)(at - s), s, to,
		    at + strlen(from));
		off = (size_t)(at - s) + strlen(to);
		free(s);
		s = out;
	}
	return s;
}

/* The word after each `key` (a path, as the loader and the secret
 * readers write it: "password_file /etc/x: ...") hidden. */
static char *
hide_after(char *s, const char *key)
{
	char	*at, *out;
	size_t	 off = 0, n;

	while ((at = strstr(s + off, key)) != NULL) {
		at += strlen(key);
		n = strcspn(at, " ");
		/* "/etc/x:" ends a phrase: the colon stays. */
		if (n > 0 && (at[n - 1] == ':' || at[n - 1] == ',' ||
		    at[n - 1] == ';' || at[n - 1] == ')'))
			n--;
		out = xprintf("%.*s(hidden)%s", (int)(at - s), s, at + n);
		off = (size_t)(at - s) + 8;
		free(s);
		s = out;
	}
	return s;
}

/*
 * The JSON and the web page go further than the terminal (a monitoring
 * system, a browser): a password file's or the token file's path in an
 * error ("password_file /etc/popbridge/home.pop3 can be read by others")
 * is hidden, by the words before it and by the paths the config names.
 */
static void
redact(const struct config *cf, char **s)
{
	size_t	 i;

	if (*s == NULL)
		return;
	*s = hide_after(*s, "password_file ");
	*s = hide_after(*s, "listen_token_file ");
	*s = replace(*s, cf->listen_token_file, "(hidden)");
	for (i = 0; i < cf->naccounts; i++) {
		*s = replace(*s, cf->accounts[i].pop3.password_file,
		    "(hidden)");
		*s = replace(*s, cf->accounts[i].imap.password_file,
		    "(hidden)");
	}
}

void
status_view(const struct config *cf, const struct account *ac, bool metrics,
    bool hide, struct account_view *v)
{
	char	*cause = NULL;
	size_t	 i;

	memset(v, 0, sizeof *v);
	v->ac = ac;
	if (ledger_read_status(cf->state_dir, ac, &v->ls, &cause) != RES_OK)
		v->ledger_error = cause;
	else if (metrics && ledger_read_metrics(cf->state_dir, ac,
	    status_today(), &v->lm, &cause) != RES_OK)
		v->ledger_error = cause;
	else
		v->have_metrics = metrics;
	daemon_entry(cf, ac->name, &v->de);
	if (!hide)
		return;
	redact(cf, &v->ledger_error);
	redact(cf, &v->ls.last_error);
	for (i = 0; i < v->ls.nfailures; i++)
		redact(cf, &v->ls.failures[i].error);
}

void
status_view_free(struct account_view *v)
{
	ledger_status_free(&v->ls);
	free(v->ledger_error);
	memset(v, 0, sizeof *v);
}

time_t
status_today(void)
{
	time_t		 now = time(NULL);
	struct tm	 tm;

	localtime_r(&now, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

enum result
status_worst(const struct account_view *v, size_t n)
{
	enum result	 worst = RES_OK;
	size_t		 i;

	for (i = 0; i < n; i++) {
		if (v[i].ledger_error != NULL) {
			worst = result_worst(worst, RES_TEMP);
			continue;
		}
		/*
		 * A last poll that failed makes status fail too, with that
		 * poll's class (65, 75, 77, 78): monitoring and systemd
		 * timers see it.
		 */
		if (v[i].ls.ever_run && v[i].ls.last_result >= RES_OK &&
		    v[i].ls.last_result <= RES_CONFIG)
			worst = result_worst(worst,
			    (enum result)v[i].ls.last_result);
	}
	return worst;
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void
json_str(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("null", f);
		return;
	}
	putc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			putc(c, f);
	}
	putc('"', f);
}

static void
json_time(FILE *f, bool have, time_t t)
{
	char	 buf[32];

	if (!have) {
		fputs("null", f);
		return;
	}
	iso_time(t, buf, sizeof buf);
	json_str(f, buf);
}

static void
json_failure(FILE *fp, const struct ledger_failure *f, bool first)
{
	bool	 aside = f->hold_until > time(NULL);

	fprintf(fp, "%s{\"uidl\": ", first ? "" : ", ");
	json_str(fp, f->uidl);
	fprintf(fp, ", \"error\": ");
	json_str(fp, f->error);
	fprintf(fp, ", \"date\": ");
	json_str(fp, f->date);
	fprintf(fp, ", \"from\": ");
	json_str(fp, f->from);
	fprintf(fp, ", \"subject\": ");
	json_str(fp, f->subject);
	fprintf(fp, ", \"attempts\": %u, \"set_aside\": %s, \"retry_after\": ",
	    f->attempts, aside ? "true" : "false");
	json_time(fp, aside, f->hold_until);
	putc('}', fp);
}

static void
json_account(FILE *f, const struct account_view *v, bool daemon, bool first)
{
	const struct ledger_status *ls = &v->ls;
	size_t	 i;

	fprintf(f, "%s\n    {\"name\": ", first ? "" : ",");
	json_str(f, v->ac->name);
	fprintf(f, ", \"ledger_error\": ");
	json_str(f, v->ledger_error);
	fprintf(f, ", \"last_poll\": ");
	json_time(f, ls->ever_run, ls->last_poll);
	fprintf(f, ", \"last_result\": ");
	json_str(f, ls->ever_run ? result_words(ls->last_result) : NULL);
	fprintf(f, ", \"last_error\": ");
	json_str(f, ls->last_error);
	fprintf(f, ", \"imported_last_run\": %u, \"imported_total\": %llu, "
	    "\"on_server\": %u, \"waiting\": %u, \"failed\": %zu, "
	    "\"set_aside\": %u, \"failures\": [", ls->imported_last,
	    (unsigned long long)ls->imported_total, ls->on_server, ls->waiting,
	    ls->nfailures, ls->set_aside);
	for (i = 0; i < ls->nfailures; i++)
		json_failure(f, &ls->failures[i], i == 0);
	/* A routed account's targets (issue 16); none without routing. */
	fprintf(f, "], \"destinations\": [");
	for (i = 0; i < ls->ndests; i++) {
		fprintf(f, "%s{\"name\": ", i == 0 ? "" : ", ");
		json_str(f, ls->dests[i].name);
		fprintf(f, ", \"imported\": %u, \"kept\": %u, \"failed\": %u}",
		    ls->dests[i].imported, ls->dests[i].kept,
		    ls->dests[i].failed);
	}
	fprintf(f, "], \"next_poll\": ");
	json_time(f, v->de.found, v->de.next);
	fprintf(f, ", \"daemon\": %s}", daemon ? "true" : "false");
}

void
status_json(FILE *f, const struct account_view *v, size_t n, bool daemon)
{
	size_t	 i;

	fprintf(f, "{\"accounts\": [");
	for (i = 0; i < n; i++)
		json_account(f, &v[i], daemon, i == 0);
	fprintf(f, "\n  ]}\n");
}

static void
print_failure(const struct ledger_failure *f)
{
	char	*text = ledger_failure_text(f);

	if (f->hold_until > time(NULL))
		printf("  set aside after failing %u times (`popbridge retry` "
		    "tries it now): %s\n", f->attempts, text);
	else
		printf("  not imported (failed %u time%s): %s\n", f->attempts,
		    f->attempts == 1 ? "" : "s", text);
	free(text);
}

static void
print_text(const struct account_view *v)
{
	const struct ledger_status *ls = &v->ls;
	const char	*name = v->ac->name;
	char		 when[32];
	size_t		 i;

	/* An unreadable ledger says nothing about the polls: no "never". */
	if (v->ledger_error != NULL)
		printf("%s: the ledger cannot be read: %s\n", name,
		    v->ledger_error);
	else if (!ls->ever_run)
		printf("%s: never polled\n", name);
	else {
		iso_time(ls->last_poll, when, sizeof when);
		printf("%s: last poll %s: %s; %u imported then, %llu in "
		    "all; %u on the server, %u waiting, %zu failed\n", name,
		    when, result_words(ls->last_result), ls->imported_last,
		    (unsigned long long)ls->imported_total, ls->on_server,
		    ls->waiting, ls->nfailures);
		if (ls->last_error != NULL)
			printf("  last error: %s\n", ls->last_error);
	}
	for (i = 0; i < ls->ndests; i++)
		printf("  to %s: %u imported, %u kept on the POP3 server, "
		    "%u failed\n", ls->dests[i].name, ls->dests[i].imported,
		    ls->dests[i].kept, ls->dests[i].failed);
	for (i = 0; i < ls->nfailures; i++)
		print_failure(&ls->failures[i]);
	if (v->de.found) {
		iso_time(v->de.next, when, sizeof when);
		printf("  next poll %s\n", when);
	}
}

static int
status_usage(void)
{
	fprintf(stderr, "usage: popbridge [-c FILE] status [--json | "
	    "--prometheus] [ACCOUNT...]\n");
	return EX_USAGE;
}

int
cmd_status(struct globals *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 }
	};
	struct config		*cf;
	struct account_view	*v;
	bool			 daemon;
	char			*cause = NULL;
	enum result		 r;
	int			 ch, i, mode = 0;
	size_t			 j, n;

	while ((ch = getopt_long(argc, argv, "jp", longopts, NULL)) != -1) {
		if ((ch != 'j' && ch != 'p') || (mode != 0 && mode != ch))
			return status_usage();
		mode = ch;
	}
	argc -= optind;
	argv += optind;
	if ((r = config_load(g->config, &cf, &cause)) != RES_OK) {
		log_warn("%s", cause);
		free(cause);
		return result_exit_code(r);
	}
	for (i = 0; i < argc; i++)
		if (config_find(cf, argv[i]) == NULL) {
			log_warn("%s: no account \"%s\"", cf->path, argv[i]);
			config_free(cf);
			return EX_USAGE;
		}
	daemon = daemon_running(cf->pid_file);
	n = argc > 0 ? (size_t)argc : cf->naccounts;
	v = xcalloc(n + 1, sizeof *v);
	for (j = 0; j < n; j++)
		status_view(cf, argc > 0 ? config_find(cf, argv[j]) :
		    &cf->accounts[j], mode == 'p', mode != 0, &v[j]);
	if (mode == 'j')
		status_json(stdout, v, n, daemon);
	else if (mode == 'p')
		metrics_write(stdout, v, n, daemon);
	else {
		for (j = 0; j < n; j++)
			print_text(&v[j]);
		if (daemon)
			printf("a daemon is running (%s)\n", cf->pid_file);
	}
	/*
	 * The metrics say how each account fares; a textfile collector's
	 * `status --prometheus > f.tmp && mv f.tmp f` must not keep the old
	 * file just when an account fails.
	 */
	r = mode == 'p' ? RES_OK : status_worst(v, n);
	for (j = 0; j < n; j++)
		status_view_free(&v[j]);
	free(v);
	config_free(cf);
	return result_exit_code(r);
}
