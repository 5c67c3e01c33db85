/*
 * The ledger's watches (settle.c): an attempt is an APPEND sent whose
 * reply was never read, with the size, hash and UID bound of what went
 * out; a removal is a duplicate about to be removed, recorded first so
 * that a crash redoes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "ledger_int.h"

enum result
ledger_drop_attempt(struct ledger *l, int64_t attempt, char **cause)
{
	if (attempt == 0)
		return RES_OK;
	return ledger_step(l, ledger_stmt_row(l, ST_DROP_ATTEMPT, attempt),
	    "drop attempt", cause);
}

enum result
ledger_attempts(struct ledger *l, struct ledger_attempt **list, size_t *n,
    char **cause)
{
	sqlite3_stmt		*s = ledger_stmt(l, ST_ATTEMPTS);
	struct ledger_attempt	*a;
	size_t			 cap = 0;
	int			 rc;

	*list = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			*list = xrealloc(*list, cap * sizeof **list);
		}
		a = &(*list)[(*n)++];
		memset(a, 0, sizeof *a);
		a->id = sqlite3_column_int64(s, 0);
		a->msg = sqlite3_column_int64(s, 1);
		a->size = (uint64_t)sqlite3_column_int64(s, 2);
		ledger_copy_col(s, 3, a->hash, sizeof a->hash);
		a->uidvalidity = (uint32_t)sqlite3_column_int64(s, 4);
		a->lo_uid = (uint32_t)sqlite3_column_int64(s, 5);
		a->created = (time_t)sqlite3_column_int64(s, 6);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(*list);
		*list = NULL;
		*n = 0;
		return ledger_fail(l, cause, "read attempts");
	}
	return RES_OK;
}

/* Everything below lo_uid has been looked at: only look above it now. */
enum result
ledger_attempt_advance(struct ledger *l, int64_t id, uint32_t uidvalidity,
    uint32_t lo_uid, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt_row(l, ST_ADVANCE, id);

	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, lo_uid);
	return ledger_step(l, s, "record attempt", cause);
}

enum result
ledger_attempt_retire(struct ledger *l, int64_t id, char **cause)
{
	return ledger_drop_attempt(l, id, cause);
}

enum result
ledger_removals(struct ledger *l, struct ledger_removal **list, size_t *n,
    char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_REMOVALS);
	int		 rc;

	*list = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		*list = xrealloc(*list, (*n + 1) * sizeof **list);
		(*list)[*n].uidvalidity = (uint32_t)sqlite3_column_int64(s, 0);
		(*list)[(*n)++].uid = (uint32_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(*list);
		*list = NULL;
		*n = 0;
		return ledger_fail(l, cause, "read removals");
	}
	return RES_OK;
}

enum result
ledger_removal_add(struct ledger *l, uint32_t uidvalidity, uint32_t uid,
    char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_REMOVAL_ADD);

	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, uid);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	return ledger_step(l, s, "record removal", cause);
}

enum result
ledger_removal_done(struct ledger *l, uint32_t uidvalidity, uint32_t uid,
    char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_REMOVAL_DONE);

	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, uid);
	return ledger_step(l, s, "record removal", cause);
}
