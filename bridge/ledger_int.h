/*
 * What ledger.c (opening, schema, transactions, runs), ledger_msg.c (the
 * rows of messages) and ledger_watch.c (attempts and removals) share: the
 * handle and its prepared statements.  Private to those three files; only
 * they include sqlite3.h.
 */
#ifndef LEDGER_INT_H
#define LEDGER_INT_H

#include <sqlite3.h>

enum {
	ST_FIND,
	ST_NEW,
	ST_INTENT,
	ST_ATTEMPT,
	ST_STORED,
	ST_DROP_ATTEMPT,
	ST_REFUSED,
	ST_STATE,
	ST_DELETED,
	ST_OWNER,
	ST_ATTEMPTS,
	ST_ADVANCE,
	ST_PENDING,
	ST_REMOVALS,
	ST_REMOVAL_ADD,
	ST_REMOVAL_DONE,
	ST_IMPORTED_IN,
	ST_HASH_ROWS,
	ST_LIVE,
	ST_RUN,
	ST_ROUTED,
	ST_FORGET,
	ST_DONE_IN,
	ST_ORPHANS,
	ST_COUNT
};

/* The columns row_read reads, in its order. */
#define MSG_COLS "id, uidl, pop_size, size, hash, state, uidvalidity, uid, " \
	"fails, hold_until, deleted, imported_at, unrouted"

struct ledger {
	sqlite3		*db;
	sqlite3_stmt	*st[ST_COUNT];
	char		*path;
	char		*source;
	int64_t		 dest;		/* dest.id of this run's destination */
	int		 lockfd;
};

/* A failure of the database, with the file's name and SQLite's words. */
enum result	 ledger_fail(struct ledger *, char **, const char *);
/* A statement reset, ?1 bound to the destination (or to a msg row id). */
sqlite3_stmt	*ledger_stmt(struct ledger *, int);
sqlite3_stmt	*ledger_stmt_row(struct ledger *, int, int64_t);
/* Step a statement that returns no row. */
enum result	 ledger_step(struct ledger *, sqlite3_stmt *, const char *,
		     char **);
void		 ledger_bind_text(sqlite3_stmt *, int, const char *);
void		 ledger_copy_col(sqlite3_stmt *, int, char *, size_t);
/* The attempt answered: its row goes (0: none). */
enum result	 ledger_drop_attempt(struct ledger *, int64_t, char **);

#endif
