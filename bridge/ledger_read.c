/*
 * An account's ledger read from outside a run: read-only and without the
 * lock, so that `status`, the metrics and the web page work while a
 * daemon or cron run writes (WAL lets a reader see the last committed
 * state).  What is read is the caller's (ledger_status.c,
 * ledger_metrics.c); opening, finding the destination and telling a
 * ledger not made yet from a broken one are here, once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bridge.h"
#include "ledger_read.h"

int
ledger_prepare_dest(sqlite3 *db, const char *sql, sqlite3_int64 dest,
    sqlite3_stmt **s)
{
	int	 rc;

	if ((rc = sqlite3_prepare_v2(db, sql, -1, s, NULL)) == SQLITE_OK)
		sqlite3_bind_int64(*s, 1, dest);
	return rc;
}

sqlite3_int64
ledger_find_dest(sqlite3 *db, const char *name, int *rc)
{
	sqlite3_stmt	*s;
	sqlite3_int64	 id = 0;

	*rc = sqlite3_prepare_v2(db, "SELECT id FROM dest WHERE name = ?1", -1,
	    &s, NULL);
	if (*rc != SQLITE_OK)
		return 0;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	*rc = sqlite3_step(s);
	if (*rc == SQLITE_ROW)
		id = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	*rc = *rc == SQLITE_ROW || *rc == SQLITE_DONE ? SQLITE_OK : *rc;
	return id;
}

enum result
ledger_read_pair(const char *state_dir, const struct account *ac,
    ledger_reader fn, void *arg, char **cause)
{
	sqlite3		*db = NULL;
	sqlite3_int64	 dest;
	char		*path, *name;
	enum result	 r = RES_OK;
	int		 rc;

	path = ledger_path(state_dir, ac);
	name = ident_dest(&ac->imap);
	if (access(path, F_OK) == -1)
		goto out;		/* never polled */
	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 5000);
		dest = ledger_find_dest(db, name, &rc);
		if (rc == SQLITE_OK && dest != 0)
			rc = fn(db, dest, ac, arg);
	}
	/*
	 * A ledger made before any run has no tables yet, one of version 1
	 * none of version 2 until a run upgrades it: not an error.  Anything
	 * else is, and `status` says so instead of "never polled".
	 */
	if (rc != SQLITE_OK && strstr(sqlite3_errmsg(db), "no such table") ==
	    NULL)
		r = fail(cause, RES_TEMP, "ledger %s: %s", path,
		    sqlite3_errmsg(db));
	sqlite3_close(db);
out:
	free(name);
	free(path);
	return r;
}
