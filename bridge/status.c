/*
 * `popbridge status [--json] [ACCOUNT...]`: per account, the last poll and
 * its result, the counts, the messages refused with their reasons and, when
 * a daemon runs, the next poll.  It reads the ledgers without locking them
 * and the daemon's state file, so it works while the daemon polls.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "bridge.h"

struct daemon_entry {
	time_t		 next;
	bool		 found;
};


static void
iso_time(time_t t, char *buf, size_t sz)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The daemon's next poll for an account, from its state file. */
static struct daemon_entry
daemon_next(const struct config *cf, const char *name)
{
	struct daemon_entry de = { 0, false };
	char		*path, line[512], *tab;
	FILE		*f;

	if (!daemon_running(cf->pid_file))
		return de;
	path = daemon_state_path(cf);
	if ((f = fopen(path, "r")) != NULL) {
		while (fgets(line, sizeof line, f) != NULL) {
			if ((tab = strchr(line, '\t')) == NULL)
				continue;
			*tab = '\0';
			if (strcmp(line, name) == 0) {
				de.next = (time_t)strtoll(tab + 1, NULL, 10);
				de.found = true;
			}
		}
		fclose(f);
	}
	free(path);
	return de;
}

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void
json_str(const char *s)
{
	if (s == NULL) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
json_time(bool have, time_t t)
{
	char	 buf[32];

	if (!have) {
		fputs("null", stdout);
		return;
	}
	iso_time(t, buf, sizeof buf);
	json_str(buf);
}

static void
print_json(const struct account *ac, const struct ledger_status *ls,
    const struct daemon_entry *de, bool daemon, bool first,
    const char *ledger_error)
{
	size_t	 i;

	printf("%s\n    {\"name\": ", first ? "" : ",");
	json_str(ac->name);
	printf(", \"ledger_error\": ");
	json_str(ledger_error);
	printf(", \"last_poll\": ");
	json_time(ls->ever_run, ls->last_poll);
	printf(", \"last_result\": ");
	json_str(ls->ever_run ? result_words(ls->last_result) : NULL);
	printf(", \"last_error\": ");
	json_str(ls->last_error);
	printf(", \"imported_last_run\": %u, \"imported_total\": %llu, "
	    "\"on_server\": %u, \"waiting\": %u, \"failed\": %zu, "
	    "\"set_aside\": %u, \"failures\": [", ls->imported_last,
	    (unsigned long long)ls->imported_total, ls->on_server, ls->waiting,
	    ls->nfailures, ls->set_aside);
	for (i = 0; i < ls->nfailures; i++) {
		const struct ledger_failure *f = &ls->failures[i];
		bool aside = f->hold_until > time(NULL);

		printf("%s{\"uidl\": ", i == 0 ? "" : ", ");
		json_str(f->uidl);
		printf(", \"error\": ");
		json_str(f->error);
		printf(", \"date\": ");
		json_str(f->date);
		printf(", \"from\": ");
		json_str(f->from);
		printf(", \"subject\": ");
		json_str(f->subject);
		printf(", \"attempts\": %u, \"set_aside\": %s, "
		    "\"retry_after\": ", f->attempts, aside ? "true" : "false");
		json_time(aside, f->hold_until);
		putchar('}');
	}
	printf("], \"next_poll\": ");
	json_time(de->found, de->next);
	printf(", \"daemon\": %s}", daemon ? "true" : "false");
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
print_text(const struct account *ac, const struct ledger_status *ls,
    const struct daemon_entry *de, const char *ledger_error)
{
	char	 when[32];
	size_t	 i;

	/* An unreadable ledger says nothing about the polls: no "never". */
	if (ledger_error != NULL)
		printf("%s: the ledger cannot be read: %s\n", ac->name,
		    ledger_error);
	else if (!ls->ever_run)
		printf("%s: never polled\n", ac->name);
	else {
		iso_time(ls->last_poll, when, sizeof when);
		printf("%s: last poll %s: %s; %u imported then, %llu in "
		    "all; %u on the server, %u waiting, %zu failed\n", ac->name,
		    when, result_words(ls->last_result), ls->imported_last,
		    (unsigned long long)ls->imported_total, ls->on_server,
		    ls->waiting, ls->nfailures);
		if (ls->last_error != NULL)
			printf("  last error: %s\n", ls->last_error);
	}
	for (i = 0; i < ls->nfailures; i++)
		print_failure(&ls->failures[i]);
	if (de->found) {
		iso_time(de->next, when, sizeof when);
		printf("  next poll %s\n", when);
	}
}

int
cmd_status(struct globals *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 }
	};
	struct config		*cf;
	struct ledger_status	 ls;
	struct daemon_entry	 de;
	const struct account	*ac;
	bool			 json = false, daemon;
	char			*cause = NULL;
	enum result		 r, worst = RES_OK;
	int			 ch, i, n;
	size_t			 j, shown = 0;

	while ((ch = getopt_long(argc, argv, "j", longopts, NULL)) != -1) {
		if (ch != 'j') {
			fprintf(stderr, "usage: popbridge [-c FILE] status "
			    "[--json] [ACCOUNT...]\n");
			return EX_USAGE;
		}
		json = true;
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
	if (json)
		printf("{\"accounts\": [");
	n = argc > 0 ? argc : (int)cf->naccounts;
	for (j = 0; j < (size_t)n; j++) {
		ac = argc > 0 ? config_find(cf, argv[j]) : &cf->accounts[j];
		r = ledger_read_status(cf->state_dir, ac, &ls, &cause);
		worst = result_worst(worst, r);
		/*
		 * A last poll that failed makes status fail too, with that
		 * poll's class (65, 75, 77, 78): monitoring and systemd
		 * timers see it.
		 */
		if (r == RES_OK && ls.ever_run && ls.last_result >= RES_OK &&
		    ls.last_result <= RES_CONFIG)
			worst = result_worst(worst,
			    (enum result)ls.last_result);
		de = daemon_next(cf, ac->name);
		if (json)
			print_json(ac, &ls, &de, daemon, shown == 0, cause);
		else
			print_text(ac, &ls, &de, cause);
		free(cause);
		cause = NULL;
		shown++;
		ledger_status_free(&ls);
	}
	if (json)
		printf("\n  ]}\n");
	else if (daemon)
		printf("a daemon is running (%s)\n", cf->pid_file);
	config_free(cf);
	return result_exit_code(worst);
}
