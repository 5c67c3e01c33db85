/*
 * What the ledger tells a person: `status` reads the last run, the counts
 * and the messages that failed or were set aside, for one account's pair
 * of POP3 mailbox and IMAP destination, read-only and without the lock, so
 * that it works while a daemon or cron run writes (WAL lets a reader see
 * the last committed state).  `retry` takes the lock and lets set-aside
 * messages be tried again at the next run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bridge.h"
#include "ledger_read.h"
#include "route.h"

static char *
col_dup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	return t != NULL ? xstrdup((const char *)t) : NULL;
}

static void
failure_add(struct ledger_status *ls, sqlite3_stmt *s, size_t *cap)
{
	struct ledger_failure	*f;
	const unsigned char	*t;

	if (ls->nfailures == *cap) {
		*cap = *cap == 0 ? 8 : *cap * 2;
		ls->failures = xrealloc(ls->failures, *cap * sizeof *ls->failures);
	}
	f = &ls->failures[ls->nfailures++];
	memset(f, 0, sizeof *f);
	t = sqlite3_column_text(s, 0);
	snprintf(f->uidl, sizeof f->uidl, "%s", t != NULL ? (const char *)t :
	    "");
	f->error = col_dup(s, 1);
	if (f->error == NULL)
		f->error = xstrdup("");
	f->date = col_dup(s, 2);
	f->from = col_dup(s, 3);
	f->subject = col_dup(s, 4);
	f->attempts = (unsigned int)sqlite3_column_int(s, 5);
	f->hold_until = (time_t)sqlite3_column_int64(s, 6);
	if (f->hold_until > time(NULL))
		ls->set_aside++;
}

/* The messages failed at dest and still on the server, oldest first. */
static int
read_failures(sqlite3 *db, sqlite3_int64 dest, struct ledger_status *ls,
    size_t *cap)
{
	sqlite3_stmt	*s;
	int		 rc;

	rc = ledger_prepare_dest(db, "SELECT uidl, error, hdr_date, hdr_from, "
	    "hdr_subject, fails, hold_until FROM msg WHERE dest = ?1 AND "
	    "state = 3 AND deleted < 2 ORDER BY updated", dest, &s);
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		failure_add(ls, s, cap);
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * The last runs, newest first, as far back as a lasting failure needs: for
 * `run`'s rest after refused logins and for telling a person when an
 * account turns failing or recovers (worker_notify).
 */
#define HISTORY_MAX	64
#define LASTING_RUNS	3		/* temporary failures in a row, */
#define LASTING_SECS	(30 * 60)	/* or for this long, whichever first */

struct run_row {
	int		 result;	/* enum result */
	time_t		 started;
	char		*error;
};

static bool
run_failed(int result)
{
	return result == RES_TEMP || result == RES_AUTH || result == RES_CONFIG;
}

/* How many runs from rows[i] on failed, in a row. */
static size_t
streak(const struct run_row *rows, size_t n, size_t i)
{
	size_t	 k = 0;

	while (i + k < n && run_failed(rows[i + k].result))
		k++;
	return k;
}

/*
 * Do these n failed runs in a row (newest first) make a lasting failure,
 * one a person should hear of?  A refused login or a config error at once:
 * neither goes away by itself.  A temporary one (the network, a server
 * down, a provider's hiccup) after 3 polls in a row or when the failures
 * have lasted 30 minutes, whichever comes first: a household wants no mail
 * for each blip, and under cron every 5 minutes 3 polls are 10 minutes.
 */
static bool
lasting(const struct run_row *rows, size_t n)
{
	size_t	 i;

	if (n == 0)
		return false;
	if (n >= LASTING_RUNS || rows[0].started - rows[n - 1].started >=
	    LASTING_SECS)
		return true;
	for (i = 0; i < n; i++)
		if (rows[i].result != RES_TEMP)
			return true;
	return false;
}

/*
 * What the last run changed: the account turned failing (its failures in
 * a row became lasting just now), or recovered (it worked after lasting
 * failures).  Decided from the ledger alone, so the daemon, cron runs and
 * a restarted daemon agree, and each change is told once.
 */
static void
health(struct ledger_status *ls, const struct run_row *rows, size_t n)
{
	size_t	 now = streak(rows, n, 0), before;

	ls->fails_in_row = (unsigned int)now;
	if (now > 0)
		ls->failing_since = rows[now - 1].started;
	if (n == 0)
		return;
	if (now > 0 && lasting(rows, now) && !lasting(rows + 1, now - 1)) {
		ls->change = LEDGER_FAILING;
		ls->change_since = ls->failing_since;
		ls->change_fails = (unsigned int)now;
		ls->change_error = xstrdup(rows[0].error != NULL ?
		    rows[0].error : "");
	} else if (now == 0 && (before = streak(rows, n, 1)) > 0 &&
	    lasting(rows + 1, before)) {
		ls->change = LEDGER_RECOVERED;
		ls->change_since = rows[before].started;
		ls->change_fails = (unsigned int)before;
		ls->change_error = xstrdup(rows[1].error != NULL ?
		    rows[1].error : "");
	}
}

static int
read_history(sqlite3 *db, sqlite3_int64 dest, struct ledger_status *ls)
{
	struct run_row	 rows[HISTORY_MAX];
	sqlite3_stmt	*s;
	size_t		 n = 0, i;
	int		 rc;

	rc = ledger_prepare_dest(db, "SELECT result, started, error FROM run "
	    "WHERE dest = ?1 ORDER BY id DESC LIMIT 64", dest, &s);
	if (rc != SQLITE_OK)
		return rc;
	while (n < HISTORY_MAX && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		rows[n].result = sqlite3_column_int(s, 0);
		rows[n].started = (time_t)sqlite3_column_int64(s, 1);
		rows[n].error = col_dup(s, 2);
		n++;
	}
	sqlite3_finalize(s);
	/* The refused logins in a row up to the last run, for `run`'s rest. */
	for (i = 0; i < n && rows[i].result == RES_AUTH; i++)
		if (ls->auth_refusals++ == 0)
			ls->last_refusal = rows[i].started;
	health(ls, rows, n);
	for (i = 0; i < n; i++)
		free(rows[i].error);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int
read_pair(sqlite3 *db, sqlite3_int64 dest, struct ledger_status *ls)
{
	sqlite3_stmt	*s = NULL;
	size_t		 cap = 0;
	int		 rc;

	rc = ledger_prepare_dest(db, "SELECT started, result, error, imported, "
	    "waiting, fresh FROM run WHERE dest = ?1 ORDER BY id DESC LIMIT 1",
	    dest, &s);
	if (rc != SQLITE_OK)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW) {
		ls->ever_run = true;
		ls->last_poll = (time_t)sqlite3_column_int64(s, 0);
		ls->last_result = sqlite3_column_int(s, 1);
		ls->last_error = col_dup(s, 2);
		ls->imported_last = (unsigned int)sqlite3_column_int(s, 3);
		ls->on_server = (unsigned int)sqlite3_column_int(s, 4);
		ls->waiting = (unsigned int)(sqlite3_column_int(s, 5) -
		    sqlite3_column_int(s, 3));
	}
	sqlite3_finalize(s);
	rc = read_history(db, dest, ls);
	if (rc != SQLITE_OK)
		return rc;
	rc = ledger_prepare_dest(db, "SELECT count(*) FROM msg WHERE dest = ?1 "
	    "AND state = 2", dest, &s);
	if (rc != SQLITE_OK)
		return rc;
	if (sqlite3_step(s) == SQLITE_ROW)
		ls->imported_total = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return read_failures(db, dest, ls, &cap);
}

/*
 * A routed account (issue 16) keeps a ledger destination per target: its
 * messages imported, kept on the POP3 server and failed there, and each
 * target's failures beside the account's own.
 */
static int
read_targets(sqlite3 *db, const struct account *ac, struct ledger_status *ls)
{
	const struct routing *rt = ac->routing;
	struct ledger_dest_count *dc;
	sqlite3_stmt	*s;
	sqlite3_int64	 dest;
	size_t		 k, cap = ls->nfailures;
	char		*name;
	int		 rc = SQLITE_OK;

	ls->dests = xcalloc(rt->ntargets, sizeof *ls->dests);
	for (k = 0; k < rt->ntargets && rc == SQLITE_OK; k++) {
		/* route_dest_name() and route_endpoint() by hand: the
		 * ledger links without the router. */
		size_t d = rt->targets[k].dest;

		dc = &ls->dests[ls->ndests++];
		dc->name = xprintf("%s:%s", d == 0 ? "imap" :
		    rt->dests[d - 1].name, rt->targets[k].mailbox != NULL ?
		    rt->targets[k].mailbox : "INBOX");
		name = ident_dest_in(d == 0 ? &ac->imap : &rt->dests[d - 1].ep,
		    rt->targets[k].mailbox);
		dest = ledger_find_dest(db, name, &rc);
		free(name);
		if (rc != SQLITE_OK || dest == 0)
			continue;
		/* Imported stays imported once POP3 lost it; the rest
		 * counts while the message is there. */
		rc = ledger_prepare_dest(db, "SELECT state, count(*), "
		    "sum(deleted < 2) FROM msg WHERE dest = ?1 GROUP BY state",
		    dest, &s);
		if (rc != SQLITE_OK)
			break;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			unsigned int all = (unsigned int)sqlite3_column_int(s, 1),
			    there = (unsigned int)sqlite3_column_int(s, 2);

			switch (sqlite3_column_int(s, 0)) {
			case LEDGER_IMPORTED:
				dc->imported = all;
				break;
			case LEDGER_FAILED:
				dc->failed = there;
				break;
			case LEDGER_KEPT:
				dc->kept = there;
				break;
			default:
				break;
			}
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			break;
		rc = SQLITE_OK;
		if (k == 0)
			continue;	/* read_pair had the account's own */
		ls->imported_total += dc->imported;
		rc = read_failures(db, dest, ls, &cap);
	}
	return rc;
}

static int
read_status(sqlite3 *db, sqlite3_int64 dest, const struct account *ac,
    void *arg)
{
	struct ledger_status *ls = arg;
	int		 rc;

	rc = read_pair(db, dest, ls);
	if (rc == SQLITE_OK && ac->routing != NULL)
		rc = read_targets(db, ac, ls);
	return rc;
}

enum result
ledger_read_status(const char *state_dir, const struct account *ac,
    struct ledger_status *ls, char **cause)
{
	enum result	 r;

	memset(ls, 0, sizeof *ls);
	if ((r = ledger_read_pair(state_dir, ac, read_status, ls, cause)) !=
	    RES_OK)
		ledger_status_free(ls);
	return r;
}

void
ledger_status_free(struct ledger_status *ls)
{
	size_t	 i;

	for (i = 0; i < ls->nfailures; i++) {
		free(ls->failures[i].error);
		free(ls->failures[i].date);
		free(ls->failures[i].from);
		free(ls->failures[i].subject);
	}
	free(ls->failures);
	for (i = 0; i < ls->ndests; i++)
		free(ls->dests[i].name);
	free(ls->dests);
	free(ls->last_error);
	free(ls->change_error);
	memset(ls, 0, sizeof *ls);
}

/*
 * A failed message as a person finds it: `Mon, 1 Jan 2024 ..., from a@b,
 * "Subject" (UIDL u): why`, and when it is tried again if it is set aside.
 * For `status`, the batch report and migrate's closing report.
 */
char *
ledger_failure_text(const struct ledger_failure *f)
{
	char	 when[32];
	struct tm tm;

	when[0] = '\0';
	if (f->hold_until > time(NULL)) {
		gmtime_r(&f->hold_until, &tm);
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	return xprintf("%s%s%s%s%s%s%s(UIDL %s): %s%s%s%s", f->date != NULL ?
	    f->date : "", f->date != NULL ? ", " : "", f->from != NULL ?
	    "from " : "", f->from != NULL ? f->from : "", f->from != NULL ?
	    ", " : "", f->subject != NULL ? f->subject : "",
	    f->subject != NULL ? " " : "", f->uidl, f->error,
	    when[0] != '\0' ? " (set aside until " : "", when,
	    when[0] != '\0' ? ")" : "");
}
