/*
 * The ledger: one SQLite file per POP3 mailbox, recording what became of
 * each message (by UIDL).  It is what makes "exactly once" hold across
 * crashes, so it is opened with durable settings (WAL, synchronous=FULL:
 * every commit is on disk before the call returns) and every state change
 * is its own transaction.
 *
 * A message moves NONE -> PENDING (intent, before APPEND) -> IMPORTED (after
 * the server's OK), or -> FAILED (refused, tried again later).  A PENDING
 * row found at the start of a run is an APPEND whose outcome is unknown; the
 * run looks for it in the mailbox (its size and a hash of its first bytes)
 * before anything else happens.
 *
 * The file is held under an exclusive lock for the whole run, so two
 * popbridge processes never work on the same mailbox at once.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "bridge.h"

#define LEDGER_SCHEMA_VERSION	1

enum {
	ST_GET,
	ST_INTENT,
	ST_IMPORTED,
	ST_FAILED,
	ST_FORGET,
	ST_DELETED,
	ST_PENDING,
	ST_CLAIMED,
	ST_RUN,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_GET] = "SELECT state, deleted FROM message WHERE source = ?1 "
	    "AND uidl = ?2",
	[ST_INTENT] = "INSERT INTO message (source, uidl, state, size, hash, "
	    "uidvalidity, lo_uid, attempts, first_seen, updated) VALUES "
	    "(?1, ?2, 1, ?3, ?4, ?5, ?6, 1, ?7, ?7) "
	    "ON CONFLICT (source, uidl) DO UPDATE SET state = 1, size = ?3, "
	    "hash = ?4, uidvalidity = ?5, lo_uid = ?6, "
	    "attempts = attempts + 1, updated = ?7",
	[ST_IMPORTED] = "UPDATE message SET state = 2, uidvalidity = ?3, "
	    "uid = ?4, error = NULL, updated = ?5 WHERE source = ?1 AND "
	    "uidl = ?2",
	[ST_FAILED] = "INSERT INTO message (source, uidl, state, error, "
	    "attempts, first_seen, updated) VALUES (?1, ?2, 3, ?3, 1, ?4, ?4) "
	    "ON CONFLICT (source, uidl) DO UPDATE SET state = 3, error = ?3, "
	    "updated = ?4",
	[ST_FORGET] = "DELETE FROM message WHERE source = ?1 AND uidl = ?2 "
	    "AND state = 1",
	[ST_DELETED] = "UPDATE message SET deleted = 1, updated = ?3 WHERE "
	    "source = ?1 AND uidl = ?2",
	[ST_PENDING] = "SELECT uidl, size, hash, uidvalidity, lo_uid FROM "
	    "message WHERE source = ?1 AND state = 1",
	[ST_CLAIMED] = "SELECT 1 FROM message WHERE source = ?1 AND state = 2 "
	    "AND uidvalidity = ?2 AND uid = ?3",
	[ST_RUN] = "INSERT INTO run (account, started, finished, result, "
	    "waiting, fresh, imported, failed, deleted, bytes, error) VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS message ("
    " source TEXT NOT NULL,"
    " uidl TEXT NOT NULL,"
    " state INTEGER NOT NULL,"		/* 1 pending, 2 imported, 3 failed */
    " size INTEGER NOT NULL DEFAULT 0,"
    " hash TEXT,"			/* SHA-256 of the first 8 KiB */
    " uidvalidity INTEGER,"
    " lo_uid INTEGER,"			/* the IMAP UID is at least this */
    " uid INTEGER,"			/* from APPENDUID, or NULL */
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " error TEXT,"
    " deleted INTEGER NOT NULL DEFAULT 0,"
    " first_seen INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " PRIMARY KEY (source, uidl)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS message_state ON message (source, state);"
    "CREATE INDEX IF NOT EXISTS message_uid ON message (uidvalidity, uid);"
    "CREATE TABLE IF NOT EXISTS run ("
    " id INTEGER PRIMARY KEY,"
    " account TEXT NOT NULL,"
    " started INTEGER NOT NULL,"
    " finished INTEGER NOT NULL,"
    " result INTEGER NOT NULL,"
    " waiting INTEGER, fresh INTEGER, imported INTEGER, failed INTEGER,"
    " deleted INTEGER, bytes INTEGER, error TEXT);";

struct ledger {
	sqlite3		*db;
	sqlite3_stmt	*st[ST_COUNT];
	char		*path;
	char		*source;
	int		 lockfd;
};

static enum result
lfail(struct ledger *l, char **cause, const char *what)
{
	int	 code = sqlite3_errcode(l->db);

	return fail(cause, RES_TEMP, "ledger %s: %s: %s%s", l->path, what,
	    sqlite3_errmsg(l->db), code == SQLITE_FULL ? " (disk full)" :
	    code == SQLITE_READONLY ? " (read-only)" : "");
}

/* Make dir and its parents, private to this user. */
static int
mkdir_p(const char *dir)
{
	char	*p, *d = xstrdup(dir);
	int	 rc = 0;

	for (p = d + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(d, 0700) == -1 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (rc == 0 && mkdir(d, 0700) == -1 && errno != EEXIST)
		rc = -1;
	free(d);
	return rc;
}

/* The POP3 mailbox a ledger belongs to, in its one spelling (ident.c). */
char *
ledger_source(const struct account *ac)
{
	return ident_source(&ac->pop3);
}

char *
ledger_path(const char *state_dir, const struct account *ac)
{
	char	*id, *name, *p, *path, hex[65];

	/*
	 * Named after the POP3 mailbox, not the account, so that renaming an
	 * account does not import everything again.
	 */
	id = ledger_source(ac);
	hash_hex(id, strlen(id), hex);
	name = xstrdup(id);
	for (p = name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("@.-_", *p) != NULL))
			*p = '_';
	if (strlen(name) > 100)
		name[100] = '\0';
	path = xprintf("%s/%s-%.8s.db", state_dir, name, hex);
	free(name);
	free(id);
	return path;
}

static enum result
ledger_lock(struct ledger *l, char **cause)
{
	char	*lockpath = xprintf("%s.lock", l->path);

	l->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->lockfd == -1) {
		enum result r = fail(cause, RES_TEMP, "cannot open %s: %s",
		    lockpath, strerror(errno));

		free(lockpath);
		return r;
	}
	free(lockpath);
	if (flock(l->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			return fail(cause, RES_TEMP, "another popbridge process "
			    "is working on this mailbox; skipped");
		return fail(cause, RES_TEMP, "cannot lock %s: %s", l->path,
		    strerror(errno));
	}
	return RES_OK;
}

enum result
ledger_open(const char *state_dir, const char *path, const char *source,
    struct ledger **lp, char **cause)
{
	struct ledger	*l;
	enum result	 r;
	int		 i;

	*lp = NULL;
	if (mkdir_p(state_dir) == -1)
		return fail(cause, RES_TEMP, "cannot make state_dir %s: %s",
		    state_dir, strerror(errno));
	l = xcalloc(1, sizeof *l);
	l->path = xstrdup(path);
	l->source = xstrdup(source);
	l->lockfd = -1;
	if ((r = ledger_lock(l, cause)) != RES_OK)
		goto bad;
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		r = lfail(l, cause, "open");
		goto bad;
	}
	sqlite3_busy_timeout(l->db, 10000);
	/* Durable: each commit is synced before it returns. */
	if (sqlite3_exec(l->db, "PRAGMA journal_mode = WAL;"
	    "PRAGMA synchronous = FULL;", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(l->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(l->db, "PRAGMA user_version = "
	    "1", NULL, NULL, NULL) != SQLITE_OK) {
		r = lfail(l, cause, "set-up");
		goto bad;
	}
	for (i = 0; i < ST_COUNT; i++)
		if (sqlite3_prepare_v3(l->db, stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &l->st[i], NULL) != SQLITE_OK) {
			r = lfail(l, cause, "prepare");
			goto bad;
		}
	*lp = l;
	return RES_OK;
bad:
	ledger_close(l);
	return r;
}

/*
 * For a dry run: the ledger as it is, read-only and unlocked, or *lp NULL
 * if there is none yet.  Only ledger_state works on it.
 */
enum result
ledger_open_readonly(const char *path, const char *source, struct ledger **lp,
    char **cause)
{
	struct ledger	*l;

	*lp = NULL;
	if (access(path, F_OK) == -1)
		return RES_OK;
	l = xcalloc(1, sizeof *l);
	l->path = xstrdup(path);
	l->source = xstrdup(source);
	l->lockfd = -1;
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK || sqlite3_prepare_v2(l->db, stmt_sql[ST_GET], -1,
	    &l->st[ST_GET], NULL) != SQLITE_OK) {
		enum result r = lfail(l, cause, "open");

		ledger_close(l);
		return r;
	}
	sqlite3_busy_timeout(l->db, 5000);
	*lp = l;
	return RES_OK;
}

/* Bind source and uidl, the first two parameters of most statements. */
static sqlite3_stmt *
stmt(struct ledger *l, int which, const char *uidl)
{
	sqlite3_stmt	*s = l->st[which];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, l->source, -1, SQLITE_STATIC);
	if (uidl != NULL)
		sqlite3_bind_text(s, 2, uidl, -1, SQLITE_TRANSIENT);
	return s;
}

static enum result
step_done(struct ledger *l, sqlite3_stmt *s, const char *what, char **cause)
{
	int	 rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return lfail(l, cause, what);
	return RES_OK;
}

enum result
ledger_state(struct ledger *l, const char *uidl, enum ledger_state *state,
    bool *deleted, char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_GET, uidl);
	int		 rc = sqlite3_step(s);

	*state = LEDGER_NONE;
	*deleted = false;
	if (rc == SQLITE_ROW) {
		*state = (enum ledger_state)sqlite3_column_int(s, 0);
		*deleted = sqlite3_column_int(s, 1) != 0;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return lfail(l, cause, "read");
	return RES_OK;
}

enum result
ledger_intent(struct ledger *l, const struct ledger_pending *p, char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_INTENT, p->uidl);

	sqlite3_bind_int64(s, 3, (sqlite3_int64)p->size);
	sqlite3_bind_text(s, 4, p->hash, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 5, p->uidvalidity);
	sqlite3_bind_int64(s, 6, p->lo_uid);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)time(NULL));
	return step_done(l, s, "record intent", cause);
}

enum result
ledger_imported(struct ledger *l, const char *uidl, uint32_t uidvalidity,
    uint32_t uid, char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_IMPORTED, uidl);

	sqlite3_bind_int64(s, 3, uidvalidity);
	if (uid != 0)
		sqlite3_bind_int64(s, 4, uid);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
	return step_done(l, s, "record import", cause);
}

enum result
ledger_failed(struct ledger *l, const char *uidl, const char *reason,
    char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_FAILED, uidl);

	sqlite3_bind_text(s, 3, reason, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	return step_done(l, s, "record failure", cause);
}

enum result
ledger_forget(struct ledger *l, const char *uidl, char **cause)
{
	return step_done(l, stmt(l, ST_FORGET, uidl), "forget intent", cause);
}

enum result
ledger_deleted(struct ledger *l, const char *uidl, char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_DELETED, uidl);

	sqlite3_bind_int64(s, 3, (sqlite3_int64)time(NULL));
	return step_done(l, s, "record deletion", cause);
}

enum result
ledger_pending_list(struct ledger *l, struct ledger_pending **list,
    size_t *n, char **cause)
{
	sqlite3_stmt		*s = stmt(l, ST_PENDING, NULL);
	struct ledger_pending	*p;
	size_t			 cap = 0;
	const unsigned char	*t;
	int			 rc;

	*list = NULL;
	*n = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			*list = xrealloc(*list, cap * sizeof **list);
		}
		p = &(*list)[(*n)++];
		memset(p, 0, sizeof *p);
		if ((t = sqlite3_column_text(s, 0)) != NULL)
			snprintf(p->uidl, sizeof p->uidl, "%s", t);
		p->size = (uint64_t)sqlite3_column_int64(s, 1);
		if ((t = sqlite3_column_text(s, 2)) != NULL)
			snprintf(p->hash, sizeof p->hash, "%s", t);
		p->uidvalidity = (uint32_t)sqlite3_column_int64(s, 3);
		p->lo_uid = (uint32_t)sqlite3_column_int64(s, 4);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(*list);
		*list = NULL;
		*n = 0;
		return lfail(l, cause, "read intents");
	}
	return RES_OK;
}

enum result
ledger_uid_claimed(struct ledger *l, uint32_t uidvalidity, uint32_t uid,
    bool *claimed, char **cause)
{
	sqlite3_stmt	*s = stmt(l, ST_CLAIMED, NULL);
	int		 rc;

	sqlite3_bind_int64(s, 2, uidvalidity);
	sqlite3_bind_int64(s, 3, uid);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	*claimed = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return lfail(l, cause, "read");
	return RES_OK;
}

enum result
ledger_run_record(struct ledger *l, const char *account, time_t started,
    enum result result, const struct run_stats *st, const char *error,
    char **cause)
{
	sqlite3_stmt	*s = l->st[ST_RUN];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, account, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)started);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)time(NULL));
	sqlite3_bind_int(s, 4, (int)result);
	sqlite3_bind_int64(s, 5, st->waiting);
	sqlite3_bind_int64(s, 6, st->fresh);
	sqlite3_bind_int64(s, 7, st->imported);
	sqlite3_bind_int64(s, 8, st->failed);
	sqlite3_bind_int64(s, 9, st->deleted);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)st->bytes);
	if (error != NULL)
		sqlite3_bind_text(s, 11, error, -1, SQLITE_TRANSIENT);
	return step_done(l, s, "record run", cause);
}

void
ledger_close(struct ledger *l)
{
	int	 i;

	if (l == NULL)
		return;
	for (i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(l->st[i]);
	if (l->db != NULL)
		sqlite3_close(l->db);
	if (l->lockfd != -1)
		close(l->lockfd);	/* releases the lock */
	free(l->path);
	free(l->source);
	free(l);
}

/*
 * For `status`: the last run and the message counts, read-only and
 * without the lock, so that it works while a daemon or cron run writes
 * (WAL lets a reader see the last committed state).
 */
enum result
ledger_read_status(const char *path, const char *source,
    struct ledger_status *ls, char **cause)
{
	sqlite3		*db = NULL;
	sqlite3_stmt	*s = NULL;
	const unsigned char *t;
	size_t		 cap = 0;
	enum result	 r = RES_OK;

	memset(ls, 0, sizeof *ls);
	if (access(path, F_OK) == -1)
		return RES_OK;		/* never polled */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		r = fail(cause, RES_TEMP, "ledger %s: %s", path,
		    sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_prepare_v2(db, "SELECT started, result, error, imported, "
	    "waiting, fresh FROM run ORDER BY id DESC LIMIT 1", -1, &s,
	    NULL) != SQLITE_OK)
		goto sqlfail;
	if (sqlite3_step(s) == SQLITE_ROW) {
		ls->ever_run = true;
		ls->last_poll = (time_t)sqlite3_column_int64(s, 0);
		ls->last_result = sqlite3_column_int(s, 1);
		if ((t = sqlite3_column_text(s, 2)) != NULL)
			ls->last_error = xstrdup((const char *)t);
		ls->imported_last = (unsigned int)sqlite3_column_int(s, 3);
		ls->on_server = (unsigned int)sqlite3_column_int(s, 4);
		ls->waiting = (unsigned int)(sqlite3_column_int(s, 5) -
		    sqlite3_column_int(s, 3));
	}
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM message WHERE "
	    "source = ?1 AND state = 2", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		ls->imported_total = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (sqlite3_prepare_v2(db, "SELECT uidl, error FROM message WHERE "
	    "source = ?1 AND state = 3 ORDER BY updated", -1, &s, NULL) !=
	    SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(s, 1, source, -1, SQLITE_STATIC);
	while (sqlite3_step(s) == SQLITE_ROW) {
		struct ledger_failure *f;

		if (ls->nfailures == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			ls->failures = xrealloc(ls->failures,
			    cap * sizeof *ls->failures);
		}
		f = &ls->failures[ls->nfailures++];
		t = sqlite3_column_text(s, 0);
		snprintf(f->uidl, sizeof f->uidl, "%s", t != NULL ?
		    (const char *)t : "");
		t = sqlite3_column_text(s, 1);
		f->error = xstrdup(t != NULL ? (const char *)t : "");
	}
	sqlite3_finalize(s);
	s = NULL;
	goto out;
sqlfail:
	/* A ledger made before any run has no tables yet: not an error. */
	if (strstr(sqlite3_errmsg(db), "no such table") == NULL)
		r = fail(cause, RES_TEMP, "ledger %s: %s", path,
		    sqlite3_errmsg(db));
out:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return r;
}

void
ledger_status_free(struct ledger_status *ls)
{
	size_t	 i;

	for (i = 0; i < ls->nfailures; i++)
		free(ls->failures[i].error);
	free(ls->failures);
	free(ls->last_error);
	memset(ls, 0, sizeof *ls);
}

/*
 * One transaction around many changes: one sync to disk for a whole batch
 * of intents or outcomes instead of one per message.
 */
enum result
ledger_begin(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return lfail(l, cause, "begin");
	return RES_OK;
}

/* A read transaction: many lookups under one lock, not one each. */
enum result
ledger_begin_read(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return lfail(l, cause, "begin");
	return RES_OK;
}

enum result
ledger_commit(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		enum result r = lfail(l, cause, "commit");

		(void)sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	return RES_OK;
}

void
ledger_rollback(struct ledger *l)
{
	(void)sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}
