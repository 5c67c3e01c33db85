/*
 * The ledger's rows of messages: one per message and destination, known
 * by UIDL and, once fetched, by content; an intent (pending, with an
 * attempt), its outcome (imported in a UID, failed and maybe set aside,
 * to import again), DELE sent and committed, rows gone from the server,
 * which row owns a copy, and whether another destination has a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "ledger_int.h"

/* Set aside after this many failed runs in a row; then these rests. */
#define HOLD_AFTER	3
static const long hold_rest[] = { 2 * 3600, 8 * 3600, 24 * 3600 };

/* A msg row from the MSG_COLS columns of s. */
static void
row_read(sqlite3_stmt *s, struct ledger_msg *m)
{
	memset(m, 0, sizeof *m);
	m->id = sqlite3_column_int64(s, 0);
	ledger_copy_col(s, 1, m->uidl, sizeof m->uidl);
	m->pop_size = (uint64_t)sqlite3_column_int64(s, 2);
	m->size = (uint64_t)sqlite3_column_int64(s, 3);
	ledger_copy_col(s, 4, m->hash, sizeof m->hash);
	m->state = (enum ledger_state)sqlite3_column_int(s, 5);
	m->uidvalidity = (uint32_t)sqlite3_column_int64(s, 6);
	m->uid = (uint32_t)sqlite3_column_int64(s, 7);
	m->fails = (unsigned int)sqlite3_column_int(s, 8);
	m->hold_until = (time_t)sqlite3_column_int64(s, 9);
	m->deleted = sqlite3_column_int(s, 10);
	m->imported_at = (time_t)sqlite3_column_int64(s, 11);
	m->unrouted = sqlite3_column_int(s, 12) != 0;
}

/* Every row of a query of MSG_COLS into a growing array. */
static enum result
rows_collect(struct ledger *l, sqlite3_stmt *s, struct ledger_msg **rows,
    size_t *n, char **cause)
{
	size_t	 cap = 0;
	int	 rc;

	*rows = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			*rows = xrealloc(*rows, cap * sizeof **rows);
		}
		row_read(s, &(*rows)[(*n)++]);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(*rows);
		*rows = NULL;
		*n = 0;
		return ledger_fail(l, cause, "read");
	}
	return RES_OK;
}

enum result
ledger_find(struct ledger *l, const char *uidl, struct ledger_msg **rows,
    size_t *n, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_FIND);

	sqlite3_bind_text(s, 2, uidl, -1, SQLITE_TRANSIENT);
	return rows_collect(l, s, rows, n, cause);
}

enum result
ledger_with_hash(struct ledger *l, const char *hash, struct ledger_msg **rows,
    size_t *n, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_HASH_ROWS);

	sqlite3_bind_text(s, 2, hash, -1, SQLITE_TRANSIENT);
	return rows_collect(l, s, rows, n, cause);
}

enum result
ledger_pending(struct ledger *l, struct ledger_msg **rows, size_t *n,
    char **cause)
{
	return rows_collect(l, ledger_stmt(l, ST_PENDING), rows, n, cause);
}

/* A row for a message seen for the first time; m->id is set. */
enum result
ledger_new(struct ledger *l, struct ledger_msg *m, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_NEW);
	enum result	 r;

	sqlite3_bind_text(s, 2, m->uidl, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m->pop_size);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	sqlite3_bind_int(s, 5, m->unrouted);
	if ((r = ledger_step(l, s, "record message", cause)) != RES_OK)
		return r;
	m->id = sqlite3_last_insert_rowid(l->db);
	m->state = LEDGER_TODO;
	return RES_OK;
}

static void
bind_info(sqlite3_stmt *s, int first, const struct msg_info *in)
{
	ledger_bind_text(s, first, in != NULL ? in->date : NULL);
	ledger_bind_text(s, first + 1, in != NULL ? in->from : NULL);
	ledger_bind_text(s, first + 2, in != NULL ? in->subject : NULL);
}

/*
 * The intent, before the APPEND is sent: the row pending with the size and
 * hash of what goes out, and an attempt row that stays if the reply is
 * never read.
 */
enum result
ledger_intent(struct ledger *l, struct ledger_msg *m,
    const struct msg_info *info, uint32_t uidvalidity, uint32_t lo_uid,
    int64_t *attempt, char **cause)
{
	sqlite3_stmt	*s;
	enum result	 r;

	if (m->id == 0 && (r = ledger_new(l, m, cause)) != RES_OK)
		return r;
	s = ledger_stmt_row(l, ST_INTENT, m->id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)m->pop_size);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m->size);
	sqlite3_bind_text(s, 4, m->hash, -1, SQLITE_TRANSIENT);
	bind_info(s, 5, info);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)time(NULL));
	if ((r = ledger_step(l, s, "record intent", cause)) != RES_OK)
		return r;
	m->state = LEDGER_PENDING;
	m->deleted = DEL_NO;
	m->unrouted = false;
	s = ledger_stmt(l, ST_ATTEMPT);
	sqlite3_bind_int64(s, 2, m->id);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m->size);
	sqlite3_bind_text(s, 4, m->hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 5, uidvalidity);
	sqlite3_bind_int64(s, 6, lo_uid);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)time(NULL));
	if ((r = ledger_step(l, s, "record intent", cause)) != RES_OK)
		return r;
	*attempt = sqlite3_last_insert_rowid(l->db);
	return RES_OK;
}

/*
 * Routing chose this leg for the message, and it is not appended now (the
 * leg is down or over quota: LEDGER_TODO), or a rule keeps the message on
 * the POP3 server (LEDGER_KEPT, in the first leg).  Either way the row
 * records the decision with the content it was made on, so that later
 * runs follow it: the first delivers it, the second neither downloads it
 * again nor deletes it.
 */
enum result
ledger_routed(struct ledger *l, struct ledger_msg *m, enum ledger_state state,
    const struct msg_info *info, char **cause)
{
	sqlite3_stmt	*s;
	enum result	 r;

	if (m->id == 0 && (r = ledger_new(l, m, cause)) != RES_OK)
		return r;
	s = ledger_stmt_row(l, ST_ROUTED, m->id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)m->pop_size);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m->size);
	sqlite3_bind_text(s, 4, m->hash, -1, SQLITE_TRANSIENT);
	bind_info(s, 5, info);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)time(NULL));
	sqlite3_bind_int(s, 9, (int)state);
	if ((r = ledger_step(l, s, "record route", cause)) != RES_OK)
		return r;
	m->state = state;
	m->deleted = DEL_NO;
	m->unrouted = false;
	return RES_OK;
}

/*
 * A row with no content that a failure made before its message was routed
 * (the default leg's), now that the message goes elsewhere: it answered
 * for nothing that was ever sent.
 */
enum result
ledger_forget(struct ledger *l, int64_t id, char **cause)
{
	return ledger_step(l, ledger_stmt_row(l, ST_FORGET, id),
	    "forget a row", cause);
}

/* The server said OK: imported, in the copy with this UID (0 unknown). */
enum result
ledger_stored(struct ledger *l, struct ledger_msg *m, int64_t attempt,
    uint32_t uidvalidity, uint32_t uid, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt_row(l, ST_STORED, m->id);
	enum result	 r;

	sqlite3_bind_int64(s, 2, uidvalidity);
	if (uid != 0)
		sqlite3_bind_int64(s, 3, uid);
	else
		sqlite3_bind_null(s, 3);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	if ((r = ledger_step(l, s, "record import", cause)) != RES_OK)
		return r;
	m->state = LEDGER_IMPORTED;
	m->uidvalidity = uidvalidity;
	m->uid = uid;
	return ledger_drop_attempt(l, attempt, cause);
}

/* A rest before the next try once a message has failed often enough. */
static time_t
hold_for(unsigned int fails, time_t now)
{
	size_t	 i;

	if (fails < HOLD_AFTER)
		return 0;
	i = fails - HOLD_AFTER;
	if (i >= sizeof hold_rest / sizeof hold_rest[0])
		i = sizeof hold_rest / sizeof hold_rest[0] - 1;
	return now + hold_rest[i];
}

/*
 * This message failed in this run (refused, cut off, too big): one more
 * failure in a row, set aside for a while after HOLD_AFTER.  The attempt,
 * if one was sent, got its answer (a NO stores nothing).
 */
enum result
ledger_failed(struct ledger *l, struct ledger_msg *m, int64_t attempt,
    const char *reason, const struct msg_info *info, char **cause)
{
	sqlite3_stmt	*s;
	time_t		 now = time(NULL);
	enum result	 r;

	if (m->id == 0 && (r = ledger_new(l, m, cause)) != RES_OK)
		return r;
	m->fails++;
	m->hold_until = hold_for(m->fails, now);
	m->state = LEDGER_FAILED;
	s = ledger_stmt_row(l, ST_REFUSED, m->id);
	sqlite3_bind_text(s, 2, reason, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m->hold_until);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)m->pop_size);
	bind_info(s, 5, info);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)now);
	sqlite3_bind_int(s, 9, m->unrouted);
	if ((r = ledger_step(l, s, "record failure", cause)) != RES_OK)
		return r;
	return ledger_drop_attempt(l, attempt, cause);
}

/* The row's state (and its copy, for IMPORTED) as settling found it. */
enum result
ledger_set_state(struct ledger *l, struct ledger_msg *m,
    enum ledger_state state, uint32_t uidvalidity, uint32_t uid,
    char **cause)
{
	sqlite3_stmt	*s = ledger_stmt_row(l, ST_STATE, m->id);
	enum result	 r;

	sqlite3_bind_int(s, 2, (int)state);
	sqlite3_bind_int64(s, 3, uidvalidity);
	if (uid != 0)
		sqlite3_bind_int64(s, 4, uid);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
	if ((r = ledger_step(l, s, "record state", cause)) != RES_OK)
		return r;
	m->state = state;
	m->uidvalidity = uidvalidity;
	m->uid = uid;
	return RES_OK;
}

/* Over quota: nothing stored; it goes again in a later run. */
enum result
ledger_unsent(struct ledger *l, struct ledger_msg *m, int64_t attempt,
    char **cause)
{
	enum result	 r;

	if ((r = ledger_set_state(l, m, LEDGER_TODO, 0, 0, cause)) != RES_OK)
		return r;
	return ledger_drop_attempt(l, attempt, cause);
}

/* DEL_SENT before a DELE goes out, DEL_DONE once QUIT committed it. */
enum result
ledger_deleted(struct ledger *l, struct ledger_msg *m, int how, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt_row(l, ST_DELETED, m->id);
	enum result	 r;

	sqlite3_bind_int(s, 2, how);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)time(NULL));
	if ((r = ledger_step(l, s, "record deletion", cause)) == RES_OK)
		m->deleted = how;
	return r;
}

/*
 * Rows whose UIDL the server no longer lists are gone from it (deleted by
 * this program or another client): DEL_DONE, so that a later message that
 * reuses the UIDL is not taken for them.  listed() says if a UIDL is
 * listed.  The rows of every destination: they name messages of one POP3
 * mailbox, and a sibling's row must not answer for a UIDL reused later.
 */
enum result
ledger_mark_gone(struct ledger *l, bool (*listed)(void *, const char *),
    void *arg, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_LIVE);
	int64_t		*gone = NULL;
	size_t		 ngone = 0, i;
	enum result	 r = RES_OK;
	int		 rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *u = sqlite3_column_text(s, 1);

		if (u != NULL && listed(arg, (const char *)u))
			continue;
		gone = xrealloc(gone, (ngone + 1) * sizeof *gone);
		gone[ngone++] = sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(gone);
		return ledger_fail(l, cause, "read");
	}
	for (i = 0; i < ngone && r == RES_OK; i++) {
		struct ledger_msg m = { .id = gone[i] };

		r = ledger_deleted(l, &m, DEL_DONE, cause);
	}
	free(gone);
	return r;
}

/* The row that owns the copy uidvalidity/uid, or *id 0. */
enum result
ledger_uid_owner(struct ledger *l, uint32_t uidvalidity, uint32_t uid,
    int64_t *id, char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_OWNER);
	int		 rc;

	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, uid);
	rc = sqlite3_step(s);
	*id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return ledger_fail(l, cause, "read");
	return RES_OK;
}

/*
 * Is the message uidl (with this hash, if both are known) imported into
 * another destination of the same POP3 mailbox?  For deleting a message
 * that several accounts import.
 */
enum result
ledger_imported_in(struct ledger *l, const char *dest, const char *uidl,
    const char *hash, bool *yes, char **cause)
{
	sqlite3_stmt	*s = l->st[ST_IMPORTED_IN];
	int		 rc;

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, dest, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, uidl, -1, SQLITE_TRANSIENT);
	*yes = false;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *h = sqlite3_column_text(s, 0);

		if (h == NULL || hash == NULL || hash[0] == '\0' ||
		    strcmp((const char *)h, hash) == 0) {
			*yes = true;
			break;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return ledger_fail(l, cause, "read");
	return RES_OK;
}

/*
 * Is the message uidl (with this hash) done in the legs named, another
 * account's that reads the same POP3 mailbox: routed there (a row in one
 * of them at least) and every row of it imported?  A row still to import,
 * pending, failed or kept by a rule says no; rows of other content under
 * a reused UIDL do not count.
 */
enum result
ledger_done_in(struct ledger *l, char *const *dests, size_t n,
    const char *uidl, const char *hash, bool *yes, char **cause)
{
	sqlite3_stmt	*s = l->st[ST_DONE_IN];
	size_t		 i, imported = 0, other = 0;
	int		 rc = SQLITE_DONE;

	for (i = 0; i < n && other == 0; i++) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		sqlite3_bind_text(s, 1, dests[i], -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(s, 2, uidl, -1, SQLITE_TRANSIENT);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const unsigned char *h = sqlite3_column_text(s, 1);
			bool same = h == NULL || h[0] == '\0' || hash == NULL ||
			    hash[0] == '\0' || strcmp((const char *)h, hash) == 0;

			if (!same)
				continue;
			if (sqlite3_column_int(s, 0) == LEDGER_IMPORTED)
				imported++;
			else
				other++;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return ledger_fail(l, cause, "read");
	}
	*yes = imported > 0 && other == 0;
	return RES_OK;
}

/*
 * The rows of a message (of this content, if hash) in destinations that
 * are none of `known` (the account's legs and its siblings'), that route
 * it to a place it has not arrived: a destination renamed or removed from
 * the config since.  Their ids into ids[max]; *n says how many there are.
 */
enum result
ledger_orphans(struct ledger *l, char *const *known, size_t nknown,
    const char *uidl, const char *hash, int64_t *ids, size_t max, size_t *n,
    char **cause)
{
	sqlite3_stmt	*s = l->st[ST_ORPHANS];
	size_t		 i;
	int		 rc;

	*n = 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, uidl, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 1);
		const char *h = (const char *)sqlite3_column_text(s, 2);

		for (i = 0; i < nknown; i++)
			if (name != NULL && strcmp(known[i], name) == 0)
				break;
		if (i < nknown || (hash != NULL && hash[0] != '\0' &&
		    h != NULL && h[0] != '\0' && strcmp(h, hash) != 0))
			continue;
		if (*n < max)
			ids[*n] = sqlite3_column_int64(s, 0);
		(*n)++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return ledger_fail(l, cause, "read");
	return RES_OK;
}
