/*
 * The numbers behind the metrics (metrics.c): an account's pair of POP3
 * mailbox and destination, read from its ledger read-only and without
 * the lock, as `status` reads it (ledger_status.c), so that the daemon's
 * page and `status --prometheus` under cron say the same.
 *
 * Messages and bytes imported are the rows the ledger holds as imported,
 * not a sum over runs: a run killed mid-way records no run row, yet what
 * it stored is there, and this is what the mailbox holds.  Polls, their
 * results and their durations come from the run rows; the ledger keeps
 * every one, so the counters only grow.  A run's duration is known to the
 * second (its start and end as the ledger records them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bridge.h"
#include "ledger_read.h"

const long ledger_bucket_le[LEDGER_BUCKETS] = {
	1, 2, 5, 10, 30, 60, 120, 300, 600, 1800
};

/* The first row's integer columns of a statement about dest (?1) and
 * arg (?2); a column that is NULL is 0. */
static int
query(sqlite3 *db, const char *sql, sqlite3_int64 dest, sqlite3_int64 arg,
    uint64_t *out, int ncols)
{
	sqlite3_stmt	*s;
	int		 rc, i;

	if ((rc = ledger_prepare_dest(db, sql, dest, &s)) != SQLITE_OK)
		return rc;
	if (sqlite3_bind_parameter_count(s) > 1)
		sqlite3_bind_int64(s, 2, arg);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW)
		for (i = 0; i < ncols && i < sqlite3_column_count(s); i++)
			out[i] = (uint64_t)sqlite3_column_int64(s, i);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int
read_polls(sqlite3 *db, sqlite3_int64 dest, struct ledger_metrics *m)
{
	sqlite3_stmt	*s;
	int		 rc, res;

	rc = ledger_prepare_dest(db, "SELECT result, count(*), sum(failed) "
	    "FROM run WHERE dest = ?1 GROUP BY result", dest, &s);
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		res = sqlite3_column_int(s, 0);
		if (res < RES_OK || res > RES_CONFIG)
			continue;
		m->polls[res] += (uint64_t)sqlite3_column_int64(s, 1);
		m->messages_failed += (uint64_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* How many runs took at most each bucket's seconds, in one pass. */
static int
read_durations(sqlite3 *db, sqlite3_int64 dest, struct ledger_metrics *m)
{
	uint64_t	 v[LEDGER_BUCKETS + 1];
	char		*sql, *t;
	size_t		 i;
	int		 rc;

	sql = xstrdup("SELECT sum(max(finished - started, 0))");
	for (i = 0; i < LEDGER_BUCKETS; i++) {
		t = xprintf("%s, sum(finished - started <= %ld)", sql,
		    ledger_bucket_le[i]);
		free(sql);
		sql = t;
	}
	t = xprintf("%s FROM run WHERE dest = ?1", sql);
	free(sql);
	memset(v, 0, sizeof v);
	rc = query(db, t, dest, 0, v, LEDGER_BUCKETS + 1);
	free(t);
	m->seconds = v[0];
	memcpy(m->buckets, v + 1, sizeof m->buckets);
	return rc;
}

static int
read_all(sqlite3 *db, sqlite3_int64 dest, time_t today,
    struct ledger_metrics *m)
{
	uint64_t	 v[2] = { 0, 0 };
	int		 rc;

	if ((rc = query(db, "SELECT count(*), sum(size) FROM msg WHERE "
	    "dest = ?1 AND state = 2", dest, 0, v, 2)) != SQLITE_OK)
		return rc;
	m->imported = v[0];
	m->imported_bytes = v[1];
	/* A ledger no run has upgraded yet has no imported_at: none today. */
	if (query(db, "SELECT count(*) FROM msg WHERE dest = ?1 AND state = 2 "
	    "AND imported_at >= ?2", dest, (sqlite3_int64)today,
	    &m->imported_today, 1) != SQLITE_OK)
		m->imported_today = 0;
	v[0] = 0;
	if ((rc = query(db, "SELECT max(finished) FROM run WHERE dest = ?1 AND "
	    "result IN (0, 1)", dest, 0, v, 1)) != SQLITE_OK)
		return rc;
	m->last_success = (time_t)v[0];
	if ((rc = read_polls(db, dest, m)) != SQLITE_OK)
		return rc;
	return read_durations(db, dest, m);
}

struct metrics_arg {
	time_t			 today;
	struct ledger_metrics	*m;
};

static int
read_metrics(sqlite3 *db, sqlite3_int64 dest, const struct account *ac,
    void *arg)
{
	struct metrics_arg *ma = arg;

	(void)ac;
	return read_all(db, dest, ma->today, ma->m);
}

enum result
ledger_read_metrics(const char *state_dir, const struct account *ac,
    time_t today, struct ledger_metrics *m, char **cause)
{
	struct metrics_arg ma = { today, m };
	enum result	 r;

	memset(m, 0, sizeof *m);
	/* As for `status`: a ledger without its tables yet is no error. */
	if ((r = ledger_read_pair(state_dir, ac, read_metrics, &ma, cause)) !=
	    RES_OK)
		memset(m, 0, sizeof *m);
	return r;
}
