/*
 * The metrics in Prometheus' text exposition format (version 0.0.4), for
 * the daemon's /metrics and for `status --prometheus` (node_exporter's
 * textfile collector, for those who poll from cron or a timer).  Both
 * print the same views (status.c), so a scrape and the file agree.
 *
 * Names follow Prometheus' conventions: the popbridge_ prefix, base units
 * (seconds, bytes), _total on counters, one label `account`, and a
 * metric's samples together under one HELP and TYPE.  Counters come from
 * the ledger, which keeps them across restarts; an account whose ledger
 * cannot be read has only popbridge_ledger_readable 0.
 */
#include <stdio.h>
#include <string.h>

#include "bridge.h"

struct family {
	const char	*name;
	const char	*type;		/* "counter", "gauge" */
	const char	*help;
	/* The sample of an account; false: none for it. */
	bool		(*value)(const struct account_view *, double *);
};

static bool
v_imported(const struct account_view *v, double *x)
{
	*x = (double)v->lm.imported;
	return true;
}

static bool
v_bytes(const struct account_view *v, double *x)
{
	*x = (double)v->lm.imported_bytes;
	return true;
}

static bool
v_today(const struct account_view *v, double *x)
{
	*x = (double)v->lm.imported_today;
	return true;
}

static bool
v_msg_failures(const struct account_view *v, double *x)
{
	*x = (double)v->lm.messages_failed;
	return true;
}

static bool
v_waiting(const struct account_view *v, double *x)
{
	*x = v->ls.waiting;
	return true;
}

static bool
v_set_aside(const struct account_view *v, double *x)
{
	*x = v->ls.set_aside;
	return true;
}

static bool
v_failed(const struct account_view *v, double *x)
{
	*x = (double)v->ls.nfailures;
	return true;
}

static bool
v_last_success(const struct account_view *v, double *x)
{
	*x = (double)v->lm.last_success;
	return true;
}

static bool
v_last_poll(const struct account_view *v, double *x)
{
	*x = v->ls.ever_run ? (double)v->ls.last_poll : 0;
	return true;
}

static bool
v_in_row(const struct account_view *v, double *x)
{
	*x = v->ls.fails_in_row;
	return true;
}

static bool
v_failing_since(const struct account_view *v, double *x)
{
	*x = v->ls.fails_in_row > 0 ? (double)v->ls.failing_since : 0;
	return true;
}

static bool
v_next_poll(const struct account_view *v, double *x)
{
	*x = (double)v->de.next;
	return v->de.found;
}

static const struct family families[] = {
	{ "popbridge_messages_imported_total", "counter",
	  "Messages popbridge stored in the account's IMAP mailbox.",
	  v_imported },
	{ "popbridge_imported_bytes_total", "counter",
	  "Bytes of those messages, as stored.", v_bytes },
	{ "popbridge_messages_imported_today", "gauge",
	  "Messages stored since local midnight.", v_today },
	{ "popbridge_message_failures_total", "counter",
	  "Times a message failed in a poll (refused, cut off, too big).",
	  v_msg_failures },
	{ "popbridge_messages_waiting", "gauge",
	  "Messages on the POP3 server not imported yet, at the last poll.",
	  v_waiting },
	{ "popbridge_messages_set_aside", "gauge",
	  "Messages set aside after failing three polls in a row.",
	  v_set_aside },
	{ "popbridge_messages_failed", "gauge",
	  "Messages whose last attempt failed, set aside or not.", v_failed },
	{ "popbridge_last_success_timestamp_seconds", "gauge",
	  "When the last poll that worked ended (0: none has).",
	  v_last_success },
	{ "popbridge_last_poll_timestamp_seconds", "gauge",
	  "When the last poll started (0: never polled).", v_last_poll },
	{ "popbridge_consecutive_failed_polls", "gauge",
	  "Polls that failed in a row up to the last one.", v_in_row },
	{ "popbridge_failing_since_timestamp_seconds", "gauge",
	  "When the failing polls in a row began (0: the last poll worked).",
	  v_failing_since },
	{ "popbridge_next_poll_timestamp_seconds", "gauge",
	  "When the daemon polls next.", v_next_poll },
};

/* Poll results as label values: the words of result_words, in snake case. */
static const char *const result_label[RES_CONFIG + 1] = {
	"ok", "failed_messages", "temporary_failure",
	"authentication_failure", "configuration_error"
};

/* A label value: backslash, double quote and line feed escaped. */
static void
label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			putc(*s, f);
	}
}

static void
head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
sample(FILE *f, const char *name, const char *account, const char *more,
    double x)
{
	fprintf(f, "%s{account=\"", name);
	label(f, account);
	fprintf(f, "\"%s} %.17g\n", more, x);
}

static void
write_family(FILE *f, const struct family *fm, const struct account_view *v,
    size_t n)
{
	double	 x;
	size_t	 i;
	bool	 any = false;

	for (i = 0; i < n; i++) {
		if (!v[i].have_metrics || !fm->value(&v[i], &x))
			continue;
		if (!any)
			head(f, fm->name, fm->type, fm->help);
		any = true;
		sample(f, fm->name, v[i].ac->name, "", x);
	}
}

static void
write_polls(FILE *f, const struct account_view *v, size_t n)
{
	char	 more[64];
	size_t	 i;
	int	 r;

	head(f, "popbridge_polls_total", "counter", "Polls, by their result.");
	for (i = 0; i < n; i++)
		for (r = RES_OK; r <= RES_CONFIG && v[i].have_metrics; r++) {
			snprintf(more, sizeof more, ",result=\"%s\"",
			    result_label[r]);
			sample(f, "popbridge_polls_total", v[i].ac->name, more,
			    (double)v[i].lm.polls[r]);
		}
}

static void
write_durations(FILE *f, const struct account_view *v, size_t n)
{
	const char	*h = "popbridge_poll_duration_seconds";
	char		 name[64], more[32];
	uint64_t	 count;
	size_t		 i, b;
	int		 r;

	head(f, h, "histogram", "How long polls took, to the second.");
	for (i = 0; i < n; i++) {
		if (!v[i].have_metrics)
			continue;
		snprintf(name, sizeof name, "%s_bucket", h);
		for (b = 0; b < LEDGER_BUCKETS; b++) {
			snprintf(more, sizeof more, ",le=\"%ld\"",
			    ledger_bucket_le[b]);
			sample(f, name, v[i].ac->name, more,
			    (double)v[i].lm.buckets[b]);
		}
		for (count = 0, r = RES_OK; r <= RES_CONFIG; r++)
			count += v[i].lm.polls[r];
		sample(f, name, v[i].ac->name, ",le=\"+Inf\"", (double)count);
		snprintf(name, sizeof name, "%s_sum", h);
		sample(f, name, v[i].ac->name, "", (double)v[i].lm.seconds);
		snprintf(name, sizeof name, "%s_count", h);
		sample(f, name, v[i].ac->name, "", (double)count);
	}
}

void
metrics_write(FILE *f, const struct account_view *v, size_t n, bool daemon)
{
	size_t	 i;

	head(f, "popbridge_up", "gauge", "1: popbridge wrote these metrics.");
	fprintf(f, "popbridge_up 1\n");
	head(f, "popbridge_daemon_running", "gauge",
	    "1: a popbridge daemon polls with this config.");
	fprintf(f, "popbridge_daemon_running %d\n", daemon ? 1 : 0);
	head(f, "popbridge_ledger_readable", "gauge",
	    "1: the account's ledger could be read; 0: its other metrics are "
	    "missing.");
	for (i = 0; i < n; i++)
		sample(f, "popbridge_ledger_readable", v[i].ac->name, "",
		    v[i].have_metrics ? 1 : 0);
	for (i = 0; i < sizeof families / sizeof families[0]; i++)
		write_family(f, &families[i], v, n);
	write_polls(f, v, n);
	write_durations(f, v, n);
}
