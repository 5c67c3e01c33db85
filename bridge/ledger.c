/*
 * The ledger: one SQLite file per POP3 mailbox, recording what became of
 * each of its messages in each IMAP destination.  It is what makes
 * "exactly once" hold across crashes, so it is opened with durable settings
 * (WAL, synchronous=FULL: every commit is on disk before the call returns).
 *
 * Tables (schema version 2):
 *
 *   dest     one row per IMAP destination (its ident_dest spelling), so
 *            that two accounts reading one POP3 mailbox into two places,
 *            and `run`, the daemon, `migrate` and `batch` on one pair, all
 *            share what they know;
 *   msg      one row per message and destination: its UIDL, its LIST size,
 *            its size and SHA-256 as stored (the whole normalised message),
 *            its state (to import, pending, imported, failed), the IMAP UID
 *            that holds it, failures in a row and when it is tried again,
 *            whether its DELE was sent or committed;
 *   attempt  one row per APPEND sent whose reply was not read: size, hash,
 *            the UID bound and the time.  A run that reads the reply drops
 *            the row with the outcome; a killed run leaves it, and it stays
 *            as a watch: the server may still commit that APPEND later
 *            (settle.c);
 *   removal  a duplicate copy about to be removed, recorded before the
 *            STORE and EXPUNGE so that a crash redoes them;
 *   run      one row per account run, for `status`.
 *
 * The file is held under an exclusive lock for the whole run, so two
 * popbridge processes never work on the same POP3 mailbox at once.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "ledger_int.h"

#define LEDGER_SCHEMA_VERSION	2




static const char *const stmt_sql[ST_COUNT] = {
	[ST_FIND] = "SELECT " MSG_COLS " FROM msg WHERE dest = ?1 AND "
	    "uidl = ?2 ORDER BY id",
	[ST_NEW] = "INSERT INTO msg (dest, uidl, pop_size, size, hash, state, "
	    "first_seen, updated, unrouted) VALUES (?1, ?2, ?3, 0, NULL, 0, "
	    "?4, ?4, ?5)",
	[ST_INTENT] = "UPDATE msg SET state = 1, pop_size = ?2, size = ?3, "
	    "hash = ?4, hdr_date = coalesce(?5, hdr_date), "
	    "hdr_from = coalesce(?6, hdr_from), "
	    "hdr_subject = coalesce(?7, hdr_subject), deleted = 0, "
	    "updated = ?8, unrouted = 0 WHERE id = ?1",
	[ST_ATTEMPT] = "INSERT INTO attempt (dest, msg, size, hash, "
	    "uidvalidity, lo_uid, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_STORED] = "UPDATE msg SET state = 2, uidvalidity = ?2, uid = ?3, "
	    "fails = 0, error = NULL, hold_until = 0, updated = ?4, "
	    "imported_at = coalesce(imported_at, ?4), unrouted = 0 WHERE id = ?1",
	[ST_DROP_ATTEMPT] = "DELETE FROM attempt WHERE id = ?1",
	[ST_REFUSED] = "UPDATE msg SET state = 3, fails = fails + 1, "
	    "error = ?2, hold_until = ?3, pop_size = ?4, "
	    "hdr_date = coalesce(?5, hdr_date), "
	    "hdr_from = coalesce(?6, hdr_from), "
	    "hdr_subject = coalesce(?7, hdr_subject), updated = ?8, "
	    "unrouted = ?9 WHERE id = ?1",
	[ST_STATE] = "UPDATE msg SET state = ?2, uidvalidity = ?3, uid = ?4, "
	    "updated = ?5, imported_at = CASE ?2 WHEN 2 THEN "
	    "coalesce(imported_at, ?5) ELSE imported_at END WHERE id = ?1",
	[ST_DELETED] = "UPDATE msg SET deleted = ?2, updated = ?3 WHERE id = ?1",
	[ST_OWNER] = "SELECT id FROM msg WHERE dest = ?1 AND uidvalidity = ?2 "
	    "AND uid = ?3 AND state = 2",
	[ST_ATTEMPTS] = "SELECT id, msg, size, hash, uidvalidity, lo_uid, "
	    "created FROM attempt WHERE dest = ?1 ORDER BY id",
	[ST_ADVANCE] = "UPDATE attempt SET uidvalidity = ?2, lo_uid = ?3 "
	    "WHERE id = ?1",
	[ST_PENDING] = "SELECT " MSG_COLS " FROM msg WHERE dest = ?1 AND "
	    "state = 1 ORDER BY id",
	[ST_REMOVALS] = "SELECT uidvalidity, uid FROM removal WHERE dest = ?1",
	[ST_REMOVAL_ADD] = "INSERT OR IGNORE INTO removal (dest, uidvalidity, "
	    "uid, created) VALUES (?1, ?2, ?3, ?4)",
	[ST_REMOVAL_DONE] = "DELETE FROM removal WHERE dest = ?1 AND "
	    "uidvalidity = ?2 AND uid = ?3",
	[ST_IMPORTED_IN] = "SELECT hash FROM msg JOIN dest ON msg.dest = "
	    "dest.id WHERE dest.name = ?1 AND msg.uidl = ?2 AND msg.state = 2 "
	    "AND msg.deleted < 2",
	[ST_HASH_ROWS] = "SELECT " MSG_COLS " FROM msg WHERE dest = ?1 AND "
	    "hash = ?2 ORDER BY id",
	/* Every destination's: the listing is the POP3 mailbox's. */
	[ST_LIVE] = "SELECT id, uidl FROM msg WHERE ?1 IS NOT NULL AND "
	    "deleted < 2",
	[ST_RUN] = "INSERT INTO run (dest, account, started, finished, result, "
	    "waiting, fresh, imported, failed, deleted, bytes, error, "
	    "set_aside) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
	    "?12, ?13)",
	[ST_ROUTED] = "UPDATE msg SET state = ?9, pop_size = ?2, size = ?3, "
	    "hash = ?4, hdr_date = coalesce(?5, hdr_date), "
	    "hdr_from = coalesce(?6, hdr_from), "
	    "hdr_subject = coalesce(?7, hdr_subject), deleted = 0, "
	    "updated = ?8, unrouted = 0 WHERE id = ?1",
	[ST_FORGET] = "DELETE FROM msg WHERE id = ?1",
	/* Another account's legs: by name, as its config spells them. */
	[ST_DONE_IN] = "SELECT msg.state, msg.hash FROM msg JOIN dest ON "
	    "msg.dest = dest.id WHERE dest.name = ?1 AND msg.uidl = ?2 AND "
	    "msg.deleted < 2",
	/* A message's rows that route it somewhere it has not arrived. */
	[ST_ORPHANS] = "SELECT msg.id, dest.name, msg.hash FROM msg JOIN "
	    "dest ON msg.dest = dest.id WHERE msg.uidl = ?1 AND msg.state IN "
	    "(0, 3, 4) AND msg.deleted < 2 AND msg.unrouted = 0",
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS dest ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " adopted INTEGER NOT NULL DEFAULT 0);"	/* first-contact scan done */
    "CREATE TABLE IF NOT EXISTS msg ("
    " id INTEGER PRIMARY KEY,"
    " dest INTEGER NOT NULL,"
    " uidl TEXT NOT NULL,"
    " pop_size INTEGER NOT NULL DEFAULT 0,"	/* LIST size; 0 unknown */
    " size INTEGER NOT NULL DEFAULT 0,"		/* as stored */
    " hash TEXT,"			/* SHA-256 of all of it, as stored */
    " state INTEGER NOT NULL,"		/* 0 to import, 1 pending, */
					/* 2 imported, 3 failed */
    " uidvalidity INTEGER,"
    " uid INTEGER,"			/* the copy it owns, or NULL */
    " fails INTEGER NOT NULL DEFAULT 0,"	/* failed runs in a row */
    " error TEXT,"
    " hold_until INTEGER NOT NULL DEFAULT 0,"	/* set aside until */
    " deleted INTEGER NOT NULL DEFAULT 0,"	/* 1 DELE sent, 2 committed */
    " hdr_date TEXT, hdr_from TEXT, hdr_subject TEXT,"
    " first_seen INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " imported_at INTEGER,"		/* for delete_after */
    /* 1: made by a failure before the message was routed (route.h),
     * in the first leg; no leg is its own yet. */
    " unrouted INTEGER);"
    "CREATE INDEX IF NOT EXISTS msg_uidl ON msg (dest, uidl);"
    "CREATE INDEX IF NOT EXISTS msg_uid ON msg (dest, uidvalidity, uid);"
    "CREATE INDEX IF NOT EXISTS msg_state ON msg (dest, state);"
    "CREATE INDEX IF NOT EXISTS msg_hash ON msg (dest, hash);"
    "CREATE TABLE IF NOT EXISTS attempt ("
    " id INTEGER PRIMARY KEY,"
    " dest INTEGER NOT NULL,"
    " msg INTEGER NOT NULL,"
    " size INTEGER NOT NULL,"
    " hash TEXT NOT NULL,"
    " uidvalidity INTEGER NOT NULL,"
    " lo_uid INTEGER NOT NULL,"		/* a copy it made has a UID >= */
    " created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS attempt_dest ON attempt (dest);"
    "CREATE TABLE IF NOT EXISTS removal ("
    " dest INTEGER NOT NULL,"
    " uidvalidity INTEGER NOT NULL,"
    " uid INTEGER NOT NULL,"
    " created INTEGER NOT NULL,"
    " PRIMARY KEY (dest, uidvalidity, uid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS run ("
    " id INTEGER PRIMARY KEY,"
    " dest INTEGER,"
    " account TEXT NOT NULL,"
    " started INTEGER NOT NULL,"
    " finished INTEGER NOT NULL,"
    " result INTEGER NOT NULL,"
    " waiting INTEGER, fresh INTEGER, imported INTEGER, failed INTEGER,"
    " deleted INTEGER, bytes INTEGER, error TEXT, set_aside INTEGER);";

/*
 * Version 1 kept one table "message" keyed by (source, uidl), for one
 * destination, with a hash of the first 8 KiB only.  Its rows become the
 * opening account's destination's; its hashes are dropped (they are not
 * comparable).  An intent it left pending is forgotten, and the first
 * contact scan (adopt.c) runs for the destination instead: that finds the
 * copy by Message-ID, size and content if the APPEND took effect.
 */
static const char upgrade_v1[] =
    "INSERT INTO msg (dest, uidl, pop_size, size, hash, state, uidvalidity,"
    " uid, fails, error, deleted, first_seen, updated, imported_at)"
    " SELECT ?1, uidl, 0, size, NULL, CASE state WHEN 1 THEN 0 ELSE state"
    " END, uidvalidity, uid, CASE state WHEN 3 THEN 1 ELSE 0 END, error,"
    " CASE deleted WHEN 0 THEN 0 ELSE 2 END, first_seen, updated,"
    " CASE state WHEN 2 THEN updated END"
    " FROM message;"
    "UPDATE dest SET adopted = NOT EXISTS (SELECT 1 FROM message"
    " WHERE state = 1) WHERE id = ?1;"
    "DROP TABLE message;"
    "UPDATE run SET dest = ?1 WHERE dest IS NULL;";


enum result
ledger_fail(struct ledger *l, char **cause, const char *what)
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
	char		*lockpath = xprintf("%s.lock", l->path);
	enum result	 r;

	/* Never through a link planted in state_dir (file.c). */
	r = file_open(lockpath, O_RDWR | O_CREAT, 0600, &l->lockfd, cause);
	free(lockpath);
	if (r != RES_OK)
		return r;
	if (flock(l->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			return fail(cause, RES_TEMP, "another popbridge process "
			    "is working on this mailbox; skipped");
		return fail(cause, RES_TEMP, "cannot lock %s: %s", l->path,
		    strerror(errno));
	}
	return RES_OK;
}

static bool
table_exists(sqlite3 *db, const char *name)
{
	sqlite3_stmt	*s;
	bool		 yes = false;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE "
	    "type = 'table' AND name = ?1", -1, &s, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	yes = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return yes;
}

/*
 * Is the column there?  Added to a version 2 file made before it existed
 * (msg.imported_at, the time a message was imported, for delete_after;
 * msg.unrouted; a version 1 file gets them with the upgrade's CREATE),
 * then filled by fill.  False only if it cannot be.
 */
static bool
column_exists(sqlite3 *db, const char *table, const char *column,
    const char *fill)
{
	sqlite3_stmt	*s;
	char		*sql;
	bool		 yes = false;

	sql = xprintf("SELECT 1 FROM pragma_table_info('%s') WHERE name = "
	    "'%s'", table, column);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		yes = sqlite3_step(s) == SQLITE_ROW;
		sqlite3_finalize(s);
	}
	free(sql);
	if (yes)
		return true;
	sql = xprintf("ALTER TABLE %s ADD COLUMN %s INTEGER", table, column);
	yes = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
	free(sql);
	return yes && (fill == NULL || sqlite3_exec(db, fill, NULL, NULL,
	    NULL) == SQLITE_OK);
}

/* The id of destination name, made if new; *fresh if it was. */
static int
dest_id(sqlite3 *db, const char *name, int64_t *id)
{
	sqlite3_stmt	*s;
	int		 rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO dest (name) VALUES (?1) "
	    "ON CONFLICT (name) DO NOTHING", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE || sqlite3_prepare_v2(db, "SELECT id FROM dest "
	    "WHERE name = ?1", -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*id = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : -1;
}

/*
 * Schema, upgrade and this destination's row, in one transaction; on
 * failure *why says what failed (the ROLLBACK would clear SQLite's own
 * message).
 */
static int
ledger_setup(struct ledger *l, const char *dest, char **why)
{
	sqlite3_stmt	*s;
	const char	*tail;
	bool		 v1;
	int		 rc;

	if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return -1;
	v1 = table_exists(l->db, "message");
	/* A version 1 file killed between its CREATEs may lack "run". */
	if (v1 && table_exists(l->db, "run") && sqlite3_exec(l->db, "ALTER "
	    "TABLE run ADD COLUMN dest INTEGER; ALTER TABLE run ADD COLUMN "
	    "set_aside INTEGER;", NULL, NULL, NULL) != SQLITE_OK)
		goto bad;
	if (sqlite3_exec(l->db, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    /* Imported before it was recorded: as of the row's last change. */
	    !column_exists(l->db, "msg", "imported_at", "UPDATE msg SET "
	    "imported_at = updated WHERE state = 2") ||
	    !column_exists(l->db, "msg", "unrouted", NULL) ||
	    dest_id(l->db, dest, &l->dest) == -1)
		goto bad;
	for (tail = upgrade_v1; v1 && *tail != '\0';) {
		if (sqlite3_prepare_v2(l->db, tail, -1, &s, &tail) != SQLITE_OK)
			goto bad;
		if (s == NULL)
			break;
		sqlite3_bind_int64(s, 1, l->dest);
		rc = sqlite3_step(s);
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE)
			goto bad;
	}
	if (v1)
		log_info("ledger %s: upgraded to version 2", l->path);
	if (sqlite3_exec(l->db, "PRAGMA user_version = 2; COMMIT", NULL, NULL,
	    NULL) != SQLITE_OK)
		goto bad;
	return 0;
bad:
	*why = xstrdup(sqlite3_errmsg(l->db));
	(void)sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

enum result
ledger_open(const char *state_dir, const char *path, const char *source,
    const char *dest, struct ledger **lp, char **cause)
{
	struct ledger	*l;
	enum result	 r;
	char		*why = NULL;
	int		 i;

	*lp = NULL;
	if (mkdir_p(state_dir) == -1)
		return fail(cause, RES_TEMP, "cannot make state_dir %s: %s",
		    state_dir, strerror(errno));
	/* Root may run this: only in a folder nobody else can write to. */
	if ((r = file_dir_safe(state_dir, "state_dir", cause)) != RES_OK)
		return r;
	l = xcalloc(1, sizeof *l);
	l->path = xstrdup(path);
	l->source = xstrdup(source);
	l->lockfd = -1;
	if ((r = ledger_lock(l, cause)) != RES_OK ||
	    (r = file_check(path, "ledger", cause)) != RES_OK)
		goto bad;
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
	    NULL) != SQLITE_OK) {
		r = ledger_fail(l, cause, "open");
		goto bad;
	}
	sqlite3_busy_timeout(l->db, 10000);
	/* Durable: each commit is synced before it returns. */
	if (sqlite3_exec(l->db, "PRAGMA journal_mode = WAL;"
	    "PRAGMA synchronous = FULL;", NULL, NULL, NULL) != SQLITE_OK) {
		r = ledger_fail(l, cause, "set-up");
		goto bad;
	}
	if (ledger_setup(l, dest, &why) == -1) {
		r = fail(cause, RES_TEMP, "ledger %s: set-up: %s", l->path, why);
		free(why);
		goto bad;
	}
	for (i = 0; i < ST_COUNT; i++)
		if (sqlite3_prepare_v3(l->db, stmt_sql[i], -1,
		    SQLITE_PREPARE_PERSISTENT, &l->st[i], NULL) != SQLITE_OK) {
			r = ledger_fail(l, cause, "prepare");
			goto bad;
		}
	*lp = l;
	return RES_OK;
bad:
	ledger_close(l);
	return r;
}

/*
 * For a dry run and `check`: the ledger as it is, read-only and unlocked,
 * or *lp NULL if there is none yet (or it has no such destination).  Only
 * ledger_find and ledger_done_in work on it.
 */
enum result
ledger_open_readonly(const char *path, const char *source, const char *dest,
    struct ledger **lp, char **cause)
{
	struct ledger	*l;
	sqlite3_stmt	*s;
	int		 rc;

	*lp = NULL;
	if (access(path, F_OK) == -1)
		return RES_OK;
	l = xcalloc(1, sizeof *l);
	l->path = xstrdup(path);
	l->source = xstrdup(source);
	l->lockfd = -1;
	if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK)
		goto bad;
	sqlite3_busy_timeout(l->db, 5000);
	if (!table_exists(l->db, "dest")) {
		/* Made by an older version: a run upgrades it first. */
		ledger_close(l);
		return RES_OK;
	}
	if (sqlite3_prepare_v2(l->db, "SELECT id FROM dest WHERE name = ?1",
	    -1, &s, NULL) != SQLITE_OK)
		goto bad;
	sqlite3_bind_text(s, 1, dest, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		l->dest = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW) {
		ledger_close(l);
		return rc == SQLITE_DONE ? RES_OK : fail(cause, RES_TEMP,
		    "ledger %s: cannot read it", path);
	}
	if (sqlite3_prepare_v2(l->db, stmt_sql[ST_FIND], -1, &l->st[ST_FIND],
	    NULL) != SQLITE_OK)
		goto bad;
	/* And ledger_done_in, for a routed account's other destinations. */
	if (sqlite3_prepare_v2(l->db, stmt_sql[ST_DONE_IN], -1,
	    &l->st[ST_DONE_IN], NULL) != SQLITE_OK)
		goto bad;
	*lp = l;
	return RES_OK;
bad:
	{
		enum result r = ledger_fail(l, cause, "open");

		ledger_close(l);
		return r;
	}
}

/* The destination the handle's statements are about from now on. */
void
ledger_use(struct ledger *l, int64_t dest)
{
	l->dest = dest;
}

/* The id of a destination (a leg of a routed account), made if new. */
enum result
ledger_dest(struct ledger *l, const char *name, int64_t *id, char **cause)
{
	if (dest_id(l->db, name, id) == -1)
		return ledger_fail(l, cause, "record destination");
	return RES_OK;
}

/* Reset a statement and bind ?1 to this destination. */
sqlite3_stmt *
ledger_stmt(struct ledger *l, int which)
{
	sqlite3_stmt	*s = l->st[which];

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_int64(s, 1, l->dest);
	return s;
}

/* A statement about one msg row: ?1 is its id. */
sqlite3_stmt *
ledger_stmt_row(struct ledger *l, int which, int64_t id)
{
	sqlite3_stmt	*s = ledger_stmt(l, which);

	sqlite3_bind_int64(s, 1, id);
	return s;
}

enum result
ledger_step(struct ledger *l, sqlite3_stmt *s, const char *what, char **cause)
{
	int	 rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return ledger_fail(l, cause, what);
	return RES_OK;
}

void
ledger_bind_text(sqlite3_stmt *s, int i, const char *t)
{
	if (t != NULL && t[0] != '\0')
		sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

void
ledger_copy_col(sqlite3_stmt *s, int col, char *dst, size_t sz)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(dst, sz, "%s", t != NULL ? (const char *)t : "");
}

/* Has the first contact scan of this destination been done? */
enum result
ledger_adopted(struct ledger *l, bool *yes, char **cause)
{
	sqlite3_stmt	*s;
	int		 rc;

	if (sqlite3_prepare_v2(l->db, "SELECT adopted FROM dest WHERE id = ?1",
	    -1, &s, NULL) != SQLITE_OK)
		return ledger_fail(l, cause, "read");
	sqlite3_bind_int64(s, 1, l->dest);
	rc = sqlite3_step(s);
	*yes = rc == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return ledger_fail(l, cause, "read");
	return RES_OK;
}

/*
 * Is mail likely this run?  Yes unless the account's last run here found
 * nothing new and left nothing waiting (a household's quiet poll): the
 * run then logs in to IMAP beside POP3 rather than after it.  A wrong
 * guess costs a login, or the time one takes.
 */
bool
ledger_expects_mail(struct ledger *l, const char *account)
{
	sqlite3_stmt	*s;
	bool		 yes = true;

	/* "waiting" counts what keep = true leaves: no sign of new mail. */
	if (sqlite3_prepare_v2(l->db, "SELECT fresh, failed, result FROM run "
	    "WHERE account = ?1 ORDER BY id DESC LIMIT 1", -1, &s, NULL) !=
	    SQLITE_OK)
		return true;
	sqlite3_bind_text(s, 1, account, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		yes = sqlite3_column_int64(s, 0) != 0 ||
		    sqlite3_column_int64(s, 1) != 0 ||
		    sqlite3_column_int(s, 2) != RES_OK;
	sqlite3_finalize(s);
	return yes;
}

enum result
ledger_set_adopted(struct ledger *l, char **cause)
{
	char	*sql;
	int	 rc;

	sql = xprintf("UPDATE dest SET adopted = 1 WHERE id = %lld",
	    (long long)l->dest);
	rc = sqlite3_exec(l->db, sql, NULL, NULL, NULL);
	free(sql);
	if (rc != SQLITE_OK)
		return ledger_fail(l, cause, "record first contact");
	return RES_OK;
}

enum result
ledger_run_record(struct ledger *l, const char *account, time_t started,
    enum result result, const struct run_stats *st, const char *error,
    char **cause)
{
	sqlite3_stmt	*s = ledger_stmt(l, ST_RUN);

	sqlite3_bind_text(s, 2, account, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)started);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	sqlite3_bind_int(s, 5, (int)result);
	sqlite3_bind_int64(s, 6, st->waiting);
	sqlite3_bind_int64(s, 7, st->fresh);
	sqlite3_bind_int64(s, 8, st->imported);
	sqlite3_bind_int64(s, 9, st->failed);
	sqlite3_bind_int64(s, 10, st->deleted);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)st->bytes);
	if (error != NULL)
		sqlite3_bind_text(s, 12, error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 13, st->set_aside);
	return ledger_step(l, s, "record run", cause);
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
 * One transaction around many changes: one sync to disk for a whole batch
 * of intents or outcomes instead of one per message.
 */
enum result
ledger_begin(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return ledger_fail(l, cause, "begin");
	return RES_OK;
}

/* A read transaction: many lookups under one lock, not one each. */
enum result
ledger_begin_read(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return ledger_fail(l, cause, "begin");
	return RES_OK;
}

enum result
ledger_commit(struct ledger *l, char **cause)
{
	if (sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		enum result r = ledger_fail(l, cause, "commit");

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

/* One retry statement on this destination's rows (?2: the UIDL or all). */
static enum result
retry_rows(struct ledger *l, const char *sql, const char *uidl,
    unsigned int *n, char **cause)
{
	sqlite3_stmt	*s;
	int		 rc;

	if (sqlite3_prepare_v2(l->db, sql, -1, &s, NULL) != SQLITE_OK)
		return ledger_fail(l, cause, "retry");
	sqlite3_bind_int64(s, 1, l->dest);
	ledger_bind_text(s, 2, uidl);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return ledger_fail(l, cause, "retry");
	*n = (unsigned int)sqlite3_changes(l->db);
	return RES_OK;
}

/*
 * `popbridge retry`: the set-aside messages of this destination (or the one
 * with this UIDL) are tried again at the next run.  Their failures in a row
 * stay counted: one more failure sets them aside again at once.
 */
enum result
ledger_release(struct ledger *l, const char *uidl, unsigned int *n,
    char **cause)
{
	return retry_rows(l, "UPDATE msg SET hold_until = 0 WHERE dest = ?1 "
	    "AND state = 3 AND deleted < 2 AND hold_until > 0 AND "
	    "(?2 IS NULL OR uidl = ?2)", uidl, n, cause);
}

/*
 * And the messages a routing rule kept on the POP3 server (state 4,
 * LEDGER_KEPT): their rows go, so the next run routes them again by the
 * rules as they are then (a rule changed since).  Nothing of them was
 * imported, so nothing can double.
 */
enum result
ledger_unkeep(struct ledger *l, const char *uidl, unsigned int *n,
    char **cause)
{
	return retry_rows(l, "DELETE FROM msg WHERE dest = ?1 AND state = 4 "
	    "AND (?2 IS NULL OR uidl = ?2)", uidl, n, cause);
}
