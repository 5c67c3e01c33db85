// link: bridge/ledger.c bridge/ledger_msg.c bridge/ledger_watch.c bridge/ledger_status.c bridge/ledger_read.c bridge/ident.c bridge/hash.c bridge/file.c bridge/imap_parse.c
// pkg: sqlite3 libcrypto
/*
 * bridge/ledger.c and bridge/ledger_status.c (schema version 2) in a
 * temporary state_dir: ledger_path; rows per destination; what intents
 * become (stored, failed and set aside, unsent, never answered) and the
 * attempts they leave; the lookups; rows gone from the server; removals;
 * the first contact flag; `retry`; what `status` reads; the upgrade from
 * version 1; transactions; the lock; a bad state_dir.
 *
 * SQLite is used directly only to build a version 1 file and to look at
 * what the API does not show (user_version, tables, msg.error).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>

#include <sqlite3.h>

#include "bridge.h"
#include "testlib.h"

#define HOUR	3600

#define OK(call, what) do {						\
	char *ok_cause = NULL;						\
	enum result ok_r = (call);					\
	CHECK(ok_r == RES_OK, "%s = %d (%s)", (what), ok_r,		\
	    unit_sesc(ok_cause));					\
	free(ok_cause);							\
} while (0)

/* An account reading user@host into alice@imap.example.org/mailbox. */
static struct account *
account_new(const char *user, const char *host, int port,
    const char *mailbox)
{
	struct account	*ac = xcalloc(1, sizeof *ac);

	ac->name = xstrdup("test");
	ac->pop3.user = xstrdup(user);
	ac->pop3.host = xstrdup(host);
	ac->pop3.port = port;
	ac->imap.imap = true;
	ac->imap.user = xstrdup("alice");
	ac->imap.host = xstrdup("imap.example.org");
	ac->imap.port = 993;
	ac->imap.mailbox = mailbox != NULL ? xstrdup(mailbox) : NULL;
	return ac;
}

static void
account_free(struct account *ac)
{
	free(ac->name);
	free(ac->pop3.user);
	free(ac->pop3.host);
	free(ac->imap.user);
	free(ac->imap.host);
	free(ac->imap.mailbox);
	free(ac);
}

/* The ident_dest spelling of alice's mailbox. */
static char *
dest_name(const char *mailbox)
{
	struct account	*ac = account_new("alice", "pop.example.org", 995,
	    mailbox);
	char		*d = ident_dest(&ac->imap);

	account_free(ac);
	return d;
}

/* ---- raw SQLite, for what the API does not show ---- */

static bool
sql_exec(const char *path, const char *sql)
{
	sqlite3	*db = NULL;
	char	*err = NULL;
	bool	 ok;

	ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE, NULL) == SQLITE_OK &&
	    sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK;
	CHECK(ok, "sqlite3 on %s: %s", path, err != NULL ? err :
	    sqlite3_errmsg(db));
	sqlite3_free(err);
	sqlite3_close(db);
	return ok;
}

/* The first column of the first row as text (malloc'd), or NULL. */
static char *
sql_text(const char *path, const char *sql)
{
	sqlite3		*db = NULL;
	sqlite3_stmt	*s = NULL;
	char		*v = NULL;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
	    SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &s, NULL) ==
	    SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
	    sqlite3_column_text(s, 0) != NULL)
		v = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* The same as a number; -1 if there is none. */
static long long
sql_int(const char *path, const char *sql)
{
	char		*v = sql_text(path, sql);
	long long	 n = v != NULL ? strtoll(v, NULL, 10) : -1;

	free(v);
	return n;
}

/* ---- a ledger in the temporary directory ---- */

struct fixture {
	char		*state_dir;
	char		*path;
	char		*source;
	struct ledger	*l;
};

/* alice@pop.example.org's ledger under tmpdir/sub, not open yet. */
static void
fx_init(struct fixture *fx, const char *sub)
{
	struct account	*ac = account_new("alice", "pop.example.org", 995,
	    NULL);

	memset(fx, 0, sizeof *fx);
	fx->state_dir = xprintf("%s/%s/state", tmpdir, sub);
	fx->path = ledger_path(fx->state_dir, ac);
	fx->source = ledger_source(ac);
	account_free(ac);
}

/* (Re)open the ledger for the destination of mailbox. */
static bool
fx_open(struct fixture *fx, const char *mailbox)
{
	char		*dest = dest_name(mailbox), *cause = NULL;
	enum result	 r;

	ledger_close(fx->l);
	fx->l = NULL;
	r = ledger_open(fx->state_dir, fx->path, fx->source, dest, &fx->l,
	    &cause);
	CHECK(r == RES_OK && fx->l != NULL, "ledger_open for %s = %d (%s)",
	    dest, r, unit_sesc(cause));
	free(cause);
	free(dest);
	return r == RES_OK && fx->l != NULL;
}

static void
fx_close(struct fixture *fx)
{
	ledger_close(fx->l);
	fx->l = NULL;
}

static void
fx_free(struct fixture *fx)
{
	ledger_close(fx->l);
	free(fx->state_dir);
	free(fx->path);
	free(fx->source);
	memset(fx, 0, sizeof *fx);
}

/* A message not in the ledger yet; hash h repeated, none if h is 0. */
static struct ledger_msg
msg_new(const char *uidl, uint64_t size, char h)
{
	struct ledger_msg m;

	memset(&m, 0, sizeof m);
	snprintf(m.uidl, sizeof m.uidl, "%s", uidl);
	m.pop_size = size;
	m.size = size + 2;
	if (h != '\0') {
		memset(m.hash, h, 64);
		m.hash[64] = '\0';
	}
	return m;
}

static bool
hash_is(const char *hash, char h)
{
	return strlen(hash) == 64 && strspn(hash, (char []){ h, '\0' }) == 64;
}

/* How many rows uidl has; the newest in *last if not NULL. */
static size_t
rows_of(struct ledger *l, const char *uidl, struct ledger_msg *last)
{
	struct ledger_msg *rows = NULL;
	size_t		 n = 0;
	char		*cause = NULL;
	enum result	 r;

	r = ledger_find(l, uidl, &rows, &n, &cause);
	CHECK(r == RES_OK, "ledger_find(%s) = %d (%s)", unit_sesc(uidl), r,
	    unit_sesc(cause));
	if (last != NULL) {
		memset(last, 0, sizeof *last);
		if (n > 0)
			*last = rows[n - 1];
	}
	free(rows);
	free(cause);
	return n;
}

static int64_t
intent(struct ledger *l, struct ledger_msg *m, uint32_t uv, uint32_t lo)
{
	int64_t	 a = 0;

	OK(ledger_intent(l, m, NULL, uv, lo, &a, &ok_cause), m->uidl);
	return a;
}

/* Intent, then the server's OK with APPENDUID uv/uid. */
static void
import(struct ledger *l, struct ledger_msg *m, uint32_t uv, uint32_t uid)
{
	int64_t	 a = intent(l, m, uv, uid);

	OK(ledger_stored(l, m, a, uv, uid, &ok_cause), m->uidl);
}

/* Intent and refusal, times times. */
static void
refuse(struct ledger *l, struct ledger_msg *m, unsigned int times,
    const char *why)
{
	unsigned int	 i;

	for (i = 0; i < times; i++) {
		int64_t a = intent(l, m, 1, 1);

		OK(ledger_failed(l, m, a, why, NULL, &ok_cause), m->uidl);
	}
}

static void
set_deleted(struct ledger *l, struct ledger_msg *m, int how)
{
	OK(ledger_deleted(l, m, how, &ok_cause), m->uidl);
}

static struct ledger_attempt *
attempts(struct ledger *l, size_t *n)
{
	struct ledger_attempt *list = NULL;

	*n = 0;
	OK(ledger_attempts(l, &list, n, &ok_cause), "ledger_attempts");
	return list;
}

static size_t
attempt_count(struct ledger *l)
{
	size_t	 n;

	free(attempts(l, &n));
	return n;
}

static size_t
pending_count(struct ledger *l)
{
	struct ledger_msg *rows = NULL;
	size_t		 n = 0;

	OK(ledger_pending(l, &rows, &n, &ok_cause), "ledger_pending");
	free(rows);
	return n;
}

static int64_t
owner(struct ledger *l, uint32_t uv, uint32_t uid)
{
	int64_t	 id = -1;

	OK(ledger_uid_owner(l, uv, uid, &id, &ok_cause), "ledger_uid_owner");
	return id;
}

static bool
adopted(struct ledger *l)
{
	bool	 yes = false;

	OK(ledger_adopted(l, &yes, &ok_cause), "ledger_adopted");
	return yes;
}

/* hold_until is 0 for rest 0, else now + rest for a now in [t0, t1]. */
static bool
held_for(time_t hold, long rest, time_t t0, time_t t1)
{
	if (rest == 0)
		return hold == 0;
	return hold >= t0 + rest && hold <= t1 + rest;
}

/* ---- ledger_path ---- */

static void
test_path(const void *arg)
{
	struct account	*a = account_new("alice", "pop.example.org", 995,
	    NULL);
	struct account	*b;
	char		*p1, *p2, *q, *prefix, *base;
	size_t		 i;
	static const struct {
		const char	*user, *host;
		int		 port;
	} others[] = {
		{ "bob", "pop.example.org", 995 },
		{ "Alice", "pop.example.org", 995 },
		{ "alice", "pop2.example.org", 995 },
		{ "alice@pop.example.org", "pop.example.org", 995 },
		{ "alice/x", "pop.example.org", 995 },
		{ "alice_x", "pop.example.org", 995 },
	};

	(void)arg;
	p1 = ledger_path("/var/lib/popbridge", a);
	p2 = ledger_path("/var/lib/popbridge", a);
	CHECK_STR(p1, p2, "ledger_path is stable");
	CHECK(strncmp(p1, "/var/lib/popbridge/", 19) == 0 &&
	    strchr(p1 + 19, '/') == NULL, "ledger_path %s is not directly in "
	    "the state_dir", p1);
	CHECK(strlen(p1) > 3 && strcmp(p1 + strlen(p1) - 3, ".db") == 0,
	    "ledger_path %s does not end in .db", p1);
	CHECK(strstr(p1, "alice") != NULL && strstr(p1, "pop.example.org") !=
	    NULL, "ledger_path %s does not name the mailbox", p1);
	free(p2);

	/* Neither the account's name nor its destination matters. */
	free(a->name);
	a->name = xstrdup("renamed");
	free(a->imap.mailbox);
	a->imap.mailbox = xstrdup("Archive");
	p2 = ledger_path("/var/lib/popbridge", a);
	CHECK_STR(p2, p1, "ledger_path after renaming the account");
	free(p2);

	/*
	 * The same mailbox on another port (pop3:// instead of pop3s://) or
	 * with the host in other letters keeps its ledger: nothing is
	 * imported again.
	 */
	b = account_new("alice", "POP.Example.ORG", 110, NULL);
	q = ledger_path("/var/lib/popbridge", b);
	CHECK_STR(q, p1, "ledger_path on port 110, host in capitals");
	free(q);
	account_free(b);

	p2 = ledger_path("/srv/state", a);
	CHECK(strncmp(p2, "/srv/state/", 11) == 0 && strcmp(p2 + 11, p1 + 19)
	    == 0, "ledger_path with another state_dir: %s", p2);
	free(p2);

	for (i = 0; i < NELEM(others); i++) {
		b = account_new(others[i].user, others[i].host,
		    others[i].port, NULL);
		q = ledger_path("/var/lib/popbridge", b);
		CHECK(strcmp(q, p1) != 0, "ledger_path for %s@%s:%d is the "
		    "same as alice's", others[i].user, others[i].host,
		    others[i].port);
		CHECK(strchr(q + 19, '/') == NULL, "ledger_path %s escapes the "
		    "state_dir", q);
		free(q);
		account_free(b);
	}

	/* A hostile, long user name: one safe file name, not too long. */
	b = account_new("../../etc/passwd\n\"'; DROP TABLE msg;--"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "pop.example.org", 995, NULL);
	q = ledger_path("/s", b);
	prefix = "/s/";
	base = q + strlen(prefix);
	CHECK(strncmp(q, prefix, strlen(prefix)) == 0 &&
	    strchr(base, '/') == NULL && strchr(base, '\n') == NULL &&
	    strchr(base, '\'') == NULL && strchr(base, ' ') == NULL &&
	    strlen(base) <= 200,
	    "ledger_path for a hostile user: %s", unit_sesc(q));
	free(q);
	account_free(b);

	free(p1);
	account_free(a);
}

/* ---- rows per destination ---- */

static void
test_dest_rows(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	struct stat	 st;

	(void)arg;
	fx_init(&fx, "dest");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(stat(fx.state_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 077) == 0, "state_dir %s not made private (mode "
	    "%o)", fx.state_dir, (unsigned)st.st_mode);
	CHECK(stat(fx.path, &st) == 0, "ledger file %s not made", fx.path);

	m = msg_new("u1", 100, 'a');
	import(fx.l, &m, 7, 1);
	m = msg_new("both", 200, 'a');
	import(fx.l, &m, 7, 2);
	m = msg_new("waiting", 300, 'a');
	(void)intent(fx.l, &m, 7, 3);
	CHECK(rows_of(fx.l, "u1", &got) == 1 && got.state ==
	    LEDGER_IMPORTED && got.uidvalidity == 7 && got.uid == 1,
	    "u1 in INBOX: state %d uid %u", got.state, got.uid);

	/* Another destination of the same file knows none of it. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	CHECK(rows_of(fx.l, "u1", NULL) == 0, "u1, imported into INBOX, is "
	    "known in Archive");
	CHECK(owner(fx.l, 7, 1) == 0, "Archive owns INBOX's UID 7/1");
	CHECK(pending_count(fx.l) == 0, "Archive lists INBOX's pending row");
	CHECK(attempt_count(fx.l) == 0, "Archive lists INBOX's attempt");
	m = msg_new("both", 200, 'b');
	import(fx.l, &m, 9, 1);
	CHECK(rows_of(fx.l, "both", &got) == 1 && got.uidvalidity == 9 &&
	    hash_is(got.hash, 'b'), "both in Archive: uv %u", got.uidvalidity);

	/* And INBOX's rows are as they were. */
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(rows_of(fx.l, "both", &got) == 1 && got.uidvalidity == 7 &&
	    got.uid == 2 && hash_is(got.hash, 'a'), "both in INBOX changed by "
	    "Archive: uv %u uid %u", got.uidvalidity, got.uid);
	CHECK(pending_count(fx.l) == 1 && attempt_count(fx.l) == 1,
	    "INBOX lost its pending row or attempt");
	CHECK(owner(fx.l, 9, 1) == 0, "INBOX owns Archive's UID 9/1");
out:
	fx_free(&fx);
}

/* ledger_imported_in: is the message in a sibling destination? */
static void
test_imported_in(const void *arg)
{
	/* hash: 0 for NULL, '-' for "", else 64 of it. */
	static const struct {
		const char	*mailbox, *uidl;
		char		 hash;
		bool		 want;
	} cases[] = {
		{ "Other", "same", 'a', true },
		{ "Other", "same", 'b', false },	/* other content */
		{ "Other", "same", 0, true },		/* ours unknown */
		{ "Other", "same", '-', true },
		{ "Other", "nohash", 'b', true },	/* theirs unknown */
		{ "Other", "sent", 'a', true },		/* DELE sent only */
		{ "Other", "failed", 'a', false },
		{ "Other", "failed", 0, false },
		{ "Other", "pending", 'a', false },
		{ "Other", "todo", 0, false },
		{ "Other", "gone", 'a', false },	/* DEL_DONE */
		{ "Other", "gone", 0, false },
		{ "Other", "reused", 'c', true },	/* the new row */
		{ "Other", "reused", 'a', false },	/* the gone one */
		{ "Other", "unknown", 0, false },
		{ "Other", "SAME", 'a', false },
		{ "Nowhere", "same", 0, false },
		{ "INBOX", "same", 'a', false },	/* not in INBOX */
		{ "INBOX", "mine", 'm', true },
		{ "inbox", "mine", 'm', true },		/* ident_dest: INBOX */
		{ "Archive", "mine", 'm', false },
	};
	struct fixture	 fx;
	struct ledger_msg m;
	char		 hash[65], *dest;
	size_t		 i;
	bool		 yes;

	(void)arg;
	fx_init(&fx, "imported_in");
	if (!fx_open(&fx, "Other"))
		goto out;
	m = msg_new("same", 10, 'a');
	import(fx.l, &m, 1, 1);
	m = msg_new("nohash", 10, 0);
	OK(ledger_new(fx.l, &m, &ok_cause), "nohash");
	OK(ledger_stored(fx.l, &m, 0, 1, 2, &ok_cause), "nohash");
	m = msg_new("sent", 10, 'a');
	import(fx.l, &m, 1, 3);
	set_deleted(fx.l, &m, DEL_SENT);
	m = msg_new("failed", 10, 'a');
	refuse(fx.l, &m, 1, "no");
	m = msg_new("pending", 10, 'a');
	(void)intent(fx.l, &m, 1, 4);
	m = msg_new("todo", 10, 0);
	OK(ledger_new(fx.l, &m, &ok_cause), "todo");
	m = msg_new("gone", 10, 'a');
	import(fx.l, &m, 1, 5);
	set_deleted(fx.l, &m, DEL_DONE);
	m = msg_new("reused", 10, 'a');
	import(fx.l, &m, 1, 6);
	set_deleted(fx.l, &m, DEL_DONE);
	m = msg_new("reused", 10, 'c');
	import(fx.l, &m, 1, 7);

	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("mine", 10, 'm');
	import(fx.l, &m, 1, 1);
	for (i = 0; i < NELEM(cases); i++) {
		const char *h = NULL;

		if (cases[i].hash == '-')
			h = "";
		else if (cases[i].hash != 0) {
			memset(hash, cases[i].hash, 64);
			hash[64] = '\0';
			h = hash;
		}
		dest = dest_name(cases[i].mailbox);
		yes = !cases[i].want;
		OK(ledger_imported_in(fx.l, dest, cases[i].uidl, h, &yes,
		    &ok_cause), "ledger_imported_in");
		CHECK(yes == cases[i].want, "imported_in(%s, %s, hash %c) = "
		    "%d, want %d", dest, cases[i].uidl, cases[i].hash ?
		    cases[i].hash : '0', yes, cases[i].want);
		free(dest);
	}
out:
	fx_free(&fx);
}

/* ---- what an intent becomes ---- */

static void
test_stored_unsent(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	struct ledger_attempt *list;
	int64_t		 a;
	size_t		 n;
	time_t		 t0, t1;

	(void)arg;
	fx_init(&fx, "stored");
	if (!fx_open(&fx, "INBOX"))
		goto out;

	/* The intent: a pending row and an attempt with what went out. */
	m = msg_new("s", 500, 's');
	t0 = time(NULL);
	a = intent(fx.l, &m, 40, 100);
	t1 = time(NULL);
	CHECK(a > 0 && m.id > 0 && m.state == LEDGER_PENDING, "after intent: "
	    "attempt %lld id %lld state %d", (long long)a, (long long)m.id,
	    m.state);
	CHECK(rows_of(fx.l, "s", &got) == 1 && got.id == m.id &&
	    got.state == LEDGER_PENDING && got.pop_size == 500 &&
	    got.size == 502 && hash_is(got.hash, 's') && got.deleted ==
	    DEL_NO, "pending row: state %d pop_size %llu size %llu",
	    got.state, (unsigned long long)got.pop_size,
	    (unsigned long long)got.size);
	CHECK(pending_count(fx.l) == 1, "intent not listed as pending");
	list = attempts(fx.l, &n);
	CHECK(n == 1 && list[0].id == a && list[0].msg == m.id &&
	    list[0].size == 502 && hash_is(list[0].hash, 's') &&
	    list[0].uidvalidity == 40 && list[0].lo_uid == 100 &&
	    list[0].created >= t0 && list[0].created <= t1,
	    "attempt listed wrong (%zu)", n);
	free(list);

	/* -> stored: the attempt answered, the UID recorded and owned. */
	OK(ledger_stored(fx.l, &m, a, 40, 123, &ok_cause), "stored");
	CHECK(m.state == LEDGER_IMPORTED && m.uid == 123, "stored in memory: "
	    "state %d uid %u", m.state, m.uid);
	CHECK(rows_of(fx.l, "s", &got) == 1 && got.state == LEDGER_IMPORTED &&
	    got.uidvalidity == 40 && got.uid == 123 && got.fails == 0 &&
	    got.hold_until == 0, "stored row: state %d uv %u uid %u",
	    got.state, got.uidvalidity, got.uid);
	CHECK(attempt_count(fx.l) == 0, "attempt kept after the OK");
	CHECK(pending_count(fx.l) == 0, "stored row still pending");
	CHECK(owner(fx.l, 40, 123) == m.id, "UID 40/123 not owned by s");

	/* Stored without APPENDUID: imported, no UID, owning none. */
	m = msg_new("nouid", 5, 'n');
	import(fx.l, &m, 40, 0);
	CHECK(rows_of(fx.l, "nouid", &got) == 1 && got.state ==
	    LEDGER_IMPORTED && got.uid == 0, "nouid: state %d uid %u",
	    got.state, got.uid);
	CHECK(owner(fx.l, 40, 0) == 0, "UID 0 owned");

	/* -> unsent (over quota): to import again, the attempt dropped. */
	m = msg_new("q", 50, 'q');
	a = intent(fx.l, &m, 40, 130);
	OK(ledger_unsent(fx.l, &m, a, &ok_cause), "unsent");
	CHECK(m.state == LEDGER_TODO, "unsent in memory: state %d", m.state);
	CHECK(rows_of(fx.l, "q", &got) == 1 && got.state == LEDGER_TODO &&
	    got.uid == 0 && got.fails == 0, "unsent row: state %d fails %u",
	    got.state, got.fails);
	CHECK(attempt_count(fx.l) == 0, "attempt kept after unsent");
	CHECK(pending_count(fx.l) == 0, "unsent row still pending");

	/* A failed row, then stored: the failures in a row start again. */
	m = msg_new("late", 50, 'l');
	refuse(fx.l, &m, 3, "busy");
	import(fx.l, &m, 40, 140);
	CHECK(rows_of(fx.l, "late", &got) == 1 && got.state ==
	    LEDGER_IMPORTED && got.fails == 0 && got.hold_until == 0,
	    "failed then stored: fails %u hold %lld", got.fails,
	    (long long)got.hold_until);
out:
	fx_free(&fx);
}

/* Failed runs in a row, and when the message is set aside. */
static void
test_failed_hold(const void *arg)
{
	static const struct {
		unsigned int	 fails;
		long		 rest;
	} holds[] = {
		{ 1, 0 },
		{ 2, 0 },
		{ 3, 2 * HOUR },
		{ 4, 8 * HOUR },
		{ 5, 24 * HOUR },
		{ 6, 24 * HOUR },
		{ 7, 24 * HOUR },
	};
	struct fixture	 fx;
	struct ledger_msg m, w, got;
	struct ledger_attempt *list;
	int64_t		 a, aw;
	size_t		 i, n;
	time_t		 t0, t1;
	char		*err;

	(void)arg;
	fx_init(&fx, "hold");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	/* An unanswered attempt of another message, which must stay. */
	w = msg_new("w", 1, 'w');
	aw = intent(fx.l, &w, 3, 3);

	m = msg_new("f", 10, 'f');
	for (i = 0; i < NELEM(holds); i++) {
		a = intent(fx.l, &m, 3, 10 + (uint32_t)i);
		t0 = time(NULL);
		OK(ledger_failed(fx.l, &m, a, "refused", NULL, &ok_cause),
		    "failed");
		t1 = time(NULL);
		CHECK(m.state == LEDGER_FAILED && m.fails == holds[i].fails &&
		    held_for(m.hold_until, holds[i].rest, t0, t1),
		    "failure %zu in memory: fails %u hold %+lld", i + 1,
		    m.fails, (long long)(m.hold_until - t0));
		CHECK(rows_of(fx.l, "f", &got) == 1 && got.state ==
		    LEDGER_FAILED && got.fails == holds[i].fails &&
		    got.hold_until == m.hold_until, "failure %zu stored: "
		    "state %d fails %u hold %+lld, want fails %u hold %+ld",
		    i + 1, got.state, got.fails,
		    (long long)(got.hold_until - t0), holds[i].fails,
		    holds[i].rest);
		list = attempts(fx.l, &n);
		CHECK(n == 1 && list[0].id == aw, "after failure %zu: %zu "
		    "attempts, want only w's", i + 1, n);
		free(list);
	}
	err = sql_text(fx.path, "SELECT error FROM msg WHERE uidl = 'f'");
	CHECK_STR(err, "refused", "the failure's reason");
	free(err);

	/* Failed with no APPEND sent (attempt 0): w's attempt stays. */
	m = msg_new("g", 10, 'g');
	OK(ledger_new(fx.l, &m, &ok_cause), "g");
	OK(ledger_failed(fx.l, &m, 0, "RETR failed", NULL, &ok_cause), "g");
	CHECK(attempt_count(fx.l) == 1, "failure without an attempt dropped "
	    "another's");
out:
	fx_free(&fx);
}

/*
 * A message refused before any intent was recorded (RETR -ERR, over the
 * APPENDLIMIT: ledger_failed straight away) must be FAILED, or the run
 * cannot tell that it failed.
 */
static void
test_failed_without_intent(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	char		*err;

	(void)arg;
	fx_init(&fx, "failed");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("fresh", 70, 0);
	OK(ledger_failed(fx.l, &m, 0, "-ERR no such message", NULL,
	    &ok_cause), "failed without intent");
	CHECK(m.id > 0 && m.state == LEDGER_FAILED && m.fails == 1 &&
	    m.hold_until == 0, "in memory: id %lld state %d fails %u",
	    (long long)m.id, m.state, m.fails);
	CHECK(rows_of(fx.l, "fresh", &got) == 1 && got.id == m.id &&
	    got.state == LEDGER_FAILED && got.fails == 1 && got.pop_size == 70,
	    "ledger_failed on a UIDL with no row: state %d fails %u, want "
	    "FAILED, 1", got.state, got.fails);
	CHECK(attempt_count(fx.l) == 0, "an attempt without an intent");
	err = sql_text(fx.path, "SELECT error FROM msg WHERE uidl = 'fresh'");
	CHECK_STR(err, "-ERR no such message", "the failure's reason");
	free(err);
out:
	fx_free(&fx);
}

/* Intents never answered stay as watches; advance and retire them. */
static void
test_attempts(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, other, got;
	struct ledger_attempt *list;
	int64_t		 a1, a2, a3;
	size_t		 n;

	(void)arg;
	fx_init(&fx, "attempts");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("w", 700, 'w');
	a1 = intent(fx.l, &m, 40, 200);
	/* A second run sends it again before the first answer is known. */
	a2 = intent(fx.l, &m, 41, 300);
	other = msg_new("x", 800, 'x');
	a3 = intent(fx.l, &other, 41, 301);
	CHECK(rows_of(fx.l, "w", &got) == 1 && got.state == LEDGER_PENDING,
	    "two intents made two rows or no pending one");
	list = attempts(fx.l, &n);
	CHECK(n == 3, "%zu attempts, want 3", n);
	if (n == 3) {
		CHECK(list[0].id == a1 && list[0].msg == m.id &&
		    list[0].size == 702 && hash_is(list[0].hash, 'w') &&
		    list[0].uidvalidity == 40 && list[0].lo_uid == 200,
		    "first attempt: uv %u lo %u", list[0].uidvalidity,
		    list[0].lo_uid);
		CHECK(list[1].id == a2 && list[1].msg == m.id &&
		    list[1].uidvalidity == 41 && list[1].lo_uid == 300,
		    "second attempt: uv %u lo %u", list[1].uidvalidity,
		    list[1].lo_uid);
		CHECK(list[2].id == a3 && list[2].msg == other.id &&
		    list[2].size == 802 && hash_is(list[2].hash, 'x'),
		    "third attempt wrong");
	}
	free(list);

	/* advance: only the one attempt moves. */
	OK(ledger_attempt_advance(fx.l, a1, 42, 250, &ok_cause), "advance");
	list = attempts(fx.l, &n);
	CHECK(n == 3 && list[0].id == a1 && list[0].uidvalidity == 42 &&
	    list[0].lo_uid == 250 && list[1].uidvalidity == 41 &&
	    list[1].lo_uid == 300 && list[2].lo_uid == 301,
	    "after advance: %zu attempts", n);
	free(list);

	/* retire: the watch ends; the row stays as it is. */
	OK(ledger_attempt_retire(fx.l, a1, &ok_cause), "retire");
	list = attempts(fx.l, &n);
	CHECK(n == 2 && list[0].id == a2 && list[1].id == a3,
	    "after retire: %zu attempts", n);
	free(list);
	CHECK(rows_of(fx.l, "w", &got) == 1 && got.state == LEDGER_PENDING,
	    "retire changed the row: state %d", got.state);

	/* The watches outlive the process's handle. */
	if (!fx_open(&fx, "INBOX"))
		goto out;
	list = attempts(fx.l, &n);
	CHECK(n == 2 && list[0].id == a2 && list[0].lo_uid == 300,
	    "after reopen: %zu attempts", n);
	free(list);
	CHECK(pending_count(fx.l) == 2, "pending rows lost on reopen");
	OK(ledger_attempt_retire(fx.l, a2, &ok_cause), "retire");
	OK(ledger_attempt_retire(fx.l, a3, &ok_cause), "retire");
	CHECK(attempt_count(fx.l) == 0, "attempts left after retiring all");
out:
	fx_free(&fx);
}

/* ---- lookups ---- */

static void
test_lookups(const void *arg)
{
	/* Which row owns a copy: index into ids[], 0 for none. */
	static const struct {
		uint32_t	 uv, uid;
		int		 want;
	} owners[] = {
		{ 5, 10, 1 },		/* imported, then gone from POP3 */
		{ 5, 11, 2 },
		{ 5, 12, 0 },		/* pending */
		{ 5, 13, 0 },		/* failed */
		{ 5, 14, 0 },		/* to import */
		{ 6, 11, 0 },		/* another UIDVALIDITY */
		{ 5, 0, 0 },
		{ 5, 99, 0 },
	};
	struct fixture	 fx;
	struct ledger_msg m1, m2, m3, m4, *rows = NULL;
	int64_t		 ids[3];
	char		 hash[65];
	size_t		 i, n = 0;

	(void)arg;
	fx_init(&fx, "lookups");
	if (!fx_open(&fx, "INBOX"))
		goto out;

	/* find: every row of a UIDL, oldest first, gone ones too. */
	m1 = msg_new("r", 10, 'h');
	import(fx.l, &m1, 5, 10);
	set_deleted(fx.l, &m1, DEL_SENT);
	CHECK(rows_of(fx.l, "r", &m4) == 1 && m4.deleted == DEL_SENT,
	    "DEL_SENT not recorded: %d", m4.deleted);
	set_deleted(fx.l, &m1, DEL_DONE);
	m2 = msg_new("r", 11, 0);	/* the UIDL reused */
	OK(ledger_new(fx.l, &m2, &ok_cause), "new r");
	CHECK(m2.id > m1.id && m2.state == LEDGER_TODO, "ledger_new: id %lld "
	    "state %d", (long long)m2.id, m2.state);
	OK(ledger_find(fx.l, "r", &rows, &n, &ok_cause), "find r");
	CHECK(n == 2, "find r: %zu rows, want 2", n);
	if (n == 2) {
		CHECK(rows[0].id == m1.id && rows[0].state == LEDGER_IMPORTED &&
		    rows[0].deleted == DEL_DONE && rows[0].uid == 10 &&
		    hash_is(rows[0].hash, 'h') &&
		    strcmp(rows[0].uidl, "r") == 0,
		    "find r, first row: id %lld state %d deleted %d",
		    (long long)rows[0].id, rows[0].state, rows[0].deleted);
		CHECK(rows[1].id == m2.id && rows[1].state == LEDGER_TODO &&
		    rows[1].deleted == DEL_NO && rows[1].hash[0] == '\0' &&
		    rows[1].pop_size == 11 && rows[1].uid == 0,
		    "find r, second row: id %lld state %d",
		    (long long)rows[1].id, rows[1].state);
	}
	free(rows);
	CHECK(rows_of(fx.l, "R", NULL) == 0 && rows_of(fx.l, "", NULL) == 0,
	    "find matched another UIDL");

	/* with_hash: every row with this content, oldest first. */
	m3 = msg_new("x", 10, 'h');
	(void)intent(fx.l, &m3, 5, 12);
	memset(hash, 'h', 64);
	hash[64] = '\0';
	OK(ledger_with_hash(fx.l, hash, &rows, &n, &ok_cause), "with_hash");
	CHECK(n == 2 && rows[0].id == m1.id && rows[1].id == m3.id,
	    "with_hash h: %zu rows", n);
	free(rows);
	memset(hash, 'z', 64);
	OK(ledger_with_hash(fx.l, hash, &rows, &n, &ok_cause), "with_hash");
	CHECK(n == 0, "with_hash z: %zu rows", n);
	free(rows);

	/* pending: PENDING rows only. */
	OK(ledger_pending(fx.l, &rows, &n, &ok_cause), "pending");
	CHECK(n == 1 && rows[0].id == m3.id && rows[0].state ==
	    LEDGER_PENDING, "pending: %zu rows", n);
	free(rows);

	/* set_state, as settling finds things. */
	OK(ledger_set_state(fx.l, &m2, LEDGER_IMPORTED, 5, 11, &ok_cause),
	    "set_state");
	CHECK(rows_of(fx.l, "r", &m4) == 2 && m4.id == m2.id &&
	    m4.state == LEDGER_IMPORTED && m4.uidvalidity == 5 && m4.uid == 11,
	    "set_state IMPORTED: state %d uid %u", m4.state, m4.uid);
	OK(ledger_set_state(fx.l, &m3, LEDGER_IMPORTED, 5, 12, &ok_cause),
	    "set_state");
	CHECK(pending_count(fx.l) == 0, "IMPORTED row still pending");
	CHECK(owner(fx.l, 5, 12) == m3.id, "set_state IMPORTED owns no UID");
	OK(ledger_set_state(fx.l, &m3, LEDGER_PENDING, 5, 12, &ok_cause),
	    "set_state");
	CHECK(pending_count(fx.l) == 1, "PENDING row not pending");
	m4 = msg_new("y", 10, 0);
	OK(ledger_new(fx.l, &m4, &ok_cause), "new y");
	OK(ledger_set_state(fx.l, &m4, LEDGER_FAILED, 5, 13, &ok_cause),
	    "set_state");
	m4 = msg_new("z", 10, 0);
	OK(ledger_new(fx.l, &m4, &ok_cause), "new z");
	OK(ledger_set_state(fx.l, &m4, LEDGER_TODO, 5, 14, &ok_cause),
	    "set_state");

	/* uid_owner: only IMPORTED rows own a UID. */
	ids[0] = 0;
	ids[1] = m1.id;
	ids[2] = m2.id;
	for (i = 0; i < NELEM(owners); i++) {
		int64_t got = owner(fx.l, owners[i].uv, owners[i].uid);

		CHECK(got == ids[owners[i].want], "uid_owner(%u, %u) = %lld, "
		    "want %lld", owners[i].uv, owners[i].uid, (long long)got,
		    (long long)ids[owners[i].want]);
	}

	/* Per destination: the same UID in Archive is Archive's. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	CHECK(owner(fx.l, 5, 11) == 0, "Archive owns INBOX's 5/11");
	m4 = msg_new("a", 10, 'h');
	import(fx.l, &m4, 5, 11);
	CHECK(owner(fx.l, 5, 11) == m4.id, "Archive's 5/11 not its own");
	OK(ledger_with_hash(fx.l, hash, &rows, &n, &ok_cause), "with_hash");
	free(rows);
	memset(hash, 'h', 64);
	OK(ledger_with_hash(fx.l, hash, &rows, &n, &ok_cause), "with_hash");
	CHECK(n == 1 && rows[0].id == m4.id, "with_hash in Archive: %zu rows "
	    "(INBOX's seen?)", n);
	free(rows);
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(owner(fx.l, 5, 11) == m2.id, "INBOX's 5/11 taken by Archive");
out:
	fx_free(&fx);
}

/* ---- rows gone from the server ---- */

static const struct {
	const char	*uidl;
	int		 before;	/* DEL_* */
	bool		 listed;
	int		 after;
} gone_cases[] = {
	{ "kept", DEL_NO, true, DEL_NO },
	{ "kept-sent", DEL_SENT, true, DEL_SENT },
	{ "vanished", DEL_NO, false, DEL_DONE },
	{ "vanished-sent", DEL_SENT, false, DEL_DONE },
	{ "already", DEL_DONE, false, DEL_DONE },
	{ "already-listed", DEL_DONE, true, DEL_DONE },
	{ "odd'uidl%", DEL_NO, false, DEL_DONE },
	{ "odd'uidl_", DEL_NO, true, DEL_NO },
};

struct listed_arg {
	unsigned int	 calls;
	unsigned int	 bad;		/* asked about a UIDL not listed here */
};

static bool
gone_listed(void *arg, const char *uidl)
{
	struct listed_arg *la = arg;
	size_t		 i;

	la->calls++;
	for (i = 0; i < NELEM(gone_cases); i++)
		if (strcmp(gone_cases[i].uidl, uidl) == 0)
			return gone_cases[i].listed;
	la->bad++;
	return true;
}

static void
test_mark_gone(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	struct listed_arg la = { 0, 0 };
	size_t		 i;

	(void)arg;
	fx_init(&fx, "gone");
	/* Archive has a row of each UIDL too: INBOX's listing marks them. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	for (i = 0; i < NELEM(gone_cases); i++) {
		m = msg_new(gone_cases[i].uidl, 10, 'a');
		import(fx.l, &m, 1, (uint32_t)i + 1);
	}
	if (!fx_open(&fx, "INBOX"))
		goto out;
	for (i = 0; i < NELEM(gone_cases); i++) {
		m = msg_new(gone_cases[i].uidl, 10, 'a');
		switch (i % 3) {
		case 0:
			import(fx.l, &m, 1, (uint32_t)i + 1);
			break;
		case 1:
			refuse(fx.l, &m, 1, "no");
			break;
		default:
			OK(ledger_new(fx.l, &m, &ok_cause), m.uidl);
			break;
		}
		if (gone_cases[i].before != DEL_NO)
			set_deleted(fx.l, &m, gone_cases[i].before);
	}
	OK(ledger_mark_gone(fx.l, gone_listed, &la, &ok_cause), "mark_gone");
	CHECK(la.bad == 0, "listed() asked about %u unknown UIDLs", la.bad);
	CHECK(la.calls >= 1, "listed() never called");
	for (i = 0; i < NELEM(gone_cases); i++) {
		CHECK(rows_of(fx.l, gone_cases[i].uidl, &got) == 1 &&
		    got.deleted == gone_cases[i].after, "%s: deleted %d, want "
		    "%d", gone_cases[i].uidl, got.deleted,
		    gone_cases[i].after);
		CHECK(got.state == (i % 3 == 0 ? LEDGER_IMPORTED : i % 3 == 1 ?
		    LEDGER_FAILED : LEDGER_TODO), "%s: state changed to %d",
		    gone_cases[i].uidl, got.state);
	}
	/*
	 * The listing is the POP3 mailbox's, so a UIDL gone from it is gone
	 * for every destination: a sibling's row must not answer for a UIDL
	 * the server hands out again later.
	 */
	if (!fx_open(&fx, "Archive"))
		goto out;
	for (i = 0; i < NELEM(gone_cases); i++)
		CHECK(rows_of(fx.l, gone_cases[i].uidl, &got) == 1 &&
		    got.deleted == (gone_cases[i].listed ? DEL_NO : DEL_DONE),
		    "Archive's %s: deleted %d after INBOX's listing, want %d",
		    gone_cases[i].uidl, got.deleted, gone_cases[i].listed ?
		    DEL_NO : DEL_DONE);
out:
	fx_free(&fx);
}

/* ---- removals ---- */

static bool
has_removal(const struct ledger_removal *list, size_t n, uint32_t uv,
    uint32_t uid)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (list[i].uidvalidity == uv && list[i].uid == uid)
			return true;
	return false;
}

static void
test_removals(const void *arg)
{
	struct fixture	 fx;
	struct ledger_removal *list = NULL;
	size_t		 n = 0;

	(void)arg;
	fx_init(&fx, "removals");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 0, "new ledger lists %zu removals", n);
	free(list);
	OK(ledger_removal_add(fx.l, 1, 5, &ok_cause), "add 1/5");
	OK(ledger_removal_add(fx.l, 1, 6, &ok_cause), "add 1/6");
	OK(ledger_removal_add(fx.l, 2, 5, &ok_cause), "add 2/5");
	OK(ledger_removal_add(fx.l, 1, 5, &ok_cause), "add 1/5 again");
	OK(ledger_removal_add(fx.l, 4294967295u, 4294967295u, &ok_cause),
	    "add largest");
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 4 && has_removal(list, n, 1, 5) && has_removal(list, n, 1,
	    6) && has_removal(list, n, 2, 5) && has_removal(list, n,
	    4294967295u, 4294967295u), "after adding: %zu removals, want 4",
	    n);
	free(list);

	OK(ledger_removal_done(fx.l, 1, 5, &ok_cause), "done 1/5");
	OK(ledger_removal_done(fx.l, 9, 9, &ok_cause), "done unknown");
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 3 && !has_removal(list, n, 1, 5) && has_removal(list, n, 1,
	    6) && has_removal(list, n, 2, 5), "after done: %zu removals", n);
	free(list);

	/* Another destination has its own, and INBOX's outlive reopening. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 0, "Archive lists %zu of INBOX's removals", n);
	free(list);
	OK(ledger_removal_add(fx.l, 1, 6, &ok_cause), "Archive add 1/6");
	OK(ledger_removal_done(fx.l, 1, 6, &ok_cause), "Archive done 1/6");
	OK(ledger_removal_done(fx.l, 2, 5, &ok_cause), "Archive done 2/5");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 3 && has_removal(list, n, 1, 6) && has_removal(list, n, 2,
	    5), "INBOX's removals after Archive's: %zu", n);
	free(list);
out:
	fx_free(&fx);
}

/* ---- the first contact scan ---- */

static void
test_adopted(const void *arg)
{
	struct fixture	 fx;

	(void)arg;
	fx_init(&fx, "adopted");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(!adopted(fx.l), "a new destination is adopted");
	OK(ledger_set_adopted(fx.l, &ok_cause), "set_adopted");
	CHECK(adopted(fx.l), "set_adopted did not stick");
	OK(ledger_set_adopted(fx.l, &ok_cause), "set_adopted twice");
	if (!fx_open(&fx, "Archive"))
		goto out;
	CHECK(!adopted(fx.l), "Archive adopted by INBOX's scan");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(adopted(fx.l), "INBOX's scan lost on reopen");
	if (!fx_open(&fx, "Archive"))
		goto out;
	OK(ledger_set_adopted(fx.l, &ok_cause), "set_adopted");
	CHECK(adopted(fx.l), "Archive's set_adopted did not stick");
out:
	fx_free(&fx);
}

/* ---- retry ---- */

static time_t
hold_of(struct ledger *l, const char *uidl)
{
	struct ledger_msg got;

	return rows_of(l, uidl, &got) > 0 ? got.hold_until : -1;
}

static void
test_release(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	unsigned int	 n;
	time_t		 now;

	(void)arg;
	fx_init(&fx, "release");
	if (!fx_open(&fx, "Archive"))
		goto out;
	m = msg_new("f1", 10, 'a');
	refuse(fx.l, &m, 3, "no");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("f1", 10, 'a');
	refuse(fx.l, &m, 3, "no");
	m = msg_new("f2", 10, 'b');
	refuse(fx.l, &m, 4, "no");
	m = msg_new("f3", 10, 'c');
	refuse(fx.l, &m, 1, "no");
	m = msg_new("i1", 10, 'd');
	import(fx.l, &m, 1, 1);
	m = msg_new("g1", 10, 'e');
	refuse(fx.l, &m, 3, "no");
	set_deleted(fx.l, &m, DEL_DONE);
	now = time(NULL);
	CHECK(hold_of(fx.l, "f1") > now && hold_of(fx.l, "f2") > now &&
	    hold_of(fx.l, "g1") > now && hold_of(fx.l, "f3") == 0,
	    "set-up: holds not as expected");

	/* One UIDL. */
	n = 99;
	OK(ledger_release(fx.l, "f1", &n, &ok_cause), "release f1");
	CHECK(n == 1, "release f1 released %u", n);
	CHECK(rows_of(fx.l, "f1", &got) == 1 && got.hold_until == 0 &&
	    got.state == LEDGER_FAILED && got.fails == 3, "f1 after release: "
	    "hold %lld state %d fails %u", (long long)got.hold_until,
	    got.state, got.fails);
	CHECK(hold_of(fx.l, "f2") > now, "release f1 released f2");
	CHECK(hold_of(fx.l, "g1") > now, "release f1 released g1");

	/* Nothing to release: unknown, imported, gone. */
	n = 99;
	OK(ledger_release(fx.l, "nope", &n, &ok_cause), "release unknown");
	CHECK(n == 0, "release of an unknown UIDL released %u", n);
	n = 99;
	OK(ledger_release(fx.l, "i1", &n, &ok_cause), "release imported");
	CHECK(n == 0, "release of an imported UIDL released %u", n);
	n = 99;
	OK(ledger_release(fx.l, "g1", &n, &ok_cause), "release gone");
	CHECK(n == 0 && hold_of(fx.l, "g1") > now, "release of a gone UIDL "
	    "released %u", n);

	/* All of this destination's (the count: see test_release_count). */
	n = 0;
	OK(ledger_release(fx.l, NULL, &n, &ok_cause), "release all");
	CHECK(n >= 1, "release all released %u", n);
	CHECK(hold_of(fx.l, "f2") == 0 && hold_of(fx.l, "f1") == 0 &&
	    hold_of(fx.l, "f3") == 0, "release all left a hold");
	CHECK(hold_of(fx.l, "g1") > now, "release all released a gone row");

	/* The failures in a row stay counted: one more sets it aside. */
	m = msg_new("f1", 10, 'a');
	CHECK(rows_of(fx.l, "f1", &m) == 1, "f1 lost");
	refuse(fx.l, &m, 1, "no again");
	CHECK(rows_of(fx.l, "f1", &got) == 1 && got.fails == 4 &&
	    got.hold_until >= now + 8 * HOUR, "f1 failing after release: "
	    "fails %u hold %+lld", got.fails, (long long)(got.hold_until -
	    now));

	/* Archive's f1 was not touched; its own release is its own. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	CHECK(hold_of(fx.l, "f1") > now, "INBOX's release freed Archive's f1");
	n = 0;
	OK(ledger_release(fx.l, NULL, &n, &ok_cause), "Archive release");
	CHECK(n == 1 && hold_of(fx.l, "f1") == 0, "Archive release: %u", n);
out:
	fx_free(&fx);
}

/*
 * SUSPECTED BUG (ledger.c, ledger_release): the count `retry` prints as
 * "N messages set aside will be tried again" is sqlite3_changes() of an
 * UPDATE that matches every FAILED row of the destination (deleted < 2),
 * whether it was set aside (hold_until in the future) or not.  Messages
 * that failed once or twice (never set aside) and one released already
 * are counted with the one really set aside: 4, not 1.  `status` counts
 * set_aside as hold_until > now; the two disagree.  Possible fix: add
 * "AND hold_until > 0" (or > now) to the UPDATE's WHERE.
 */
static void
test_release_count(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m;
	struct ledger_status ls;
	struct account	*ac = account_new("alice", "pop.example.org", 995,
	    NULL);
	unsigned int	 n = 0, dummy;

	(void)arg;
	fx_init(&fx, "release_count");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("held", 10, 'a');
	refuse(fx.l, &m, 3, "no");
	m = msg_new("once", 10, 'b');
	refuse(fx.l, &m, 1, "no");
	m = msg_new("twice", 10, 'c');
	refuse(fx.l, &m, 2, "no");
	m = msg_new("released", 10, 'd');
	refuse(fx.l, &m, 3, "no");
	OK(ledger_release(fx.l, "released", &dummy, &ok_cause), "release");
	OK(ledger_read_status(fx.state_dir, ac, &ls, &ok_cause), "status");
	CHECK(ls.set_aside == 1, "status: %u set aside, want 1", ls.set_aside);
	ledger_status_free(&ls);
	OK(ledger_release(fx.l, NULL, &n, &ok_cause), "release all");
	CHECK(n == 1, "ledger_release(all) reports %u released; only 1 "
	    "message was set aside (the others failed too few times or were "
	    "released already)", n);
out:
	fx_free(&fx);
	account_free(ac);
}

/* ---- status ---- */

static const struct ledger_failure *
failure_of(const struct ledger_status *ls, const char *uidl)
{
	size_t	 i;

	for (i = 0; i < ls->nfailures; i++)
		if (strcmp(ls->failures[i].uidl, uidl) == 0)
			return &ls->failures[i];
	return NULL;
}

static void
test_status(const void *arg)
{
	struct fixture	 fx;
	struct account	*inbox, *archive, *drafts;
	struct ledger_status ls;
	struct ledger_msg m;
	const struct ledger_failure *f;
	struct msg_info	 info;
	struct run_stats rs;
	int64_t		 a;
	time_t		 now = time(NULL);
	char		*cause = NULL;
	enum result	 r;

	(void)arg;
	inbox = account_new("alice", "pop.example.org", 995, NULL);
	archive = account_new("alice", "pop.example.org", 995, "Archive");
	drafts = account_new("alice", "pop.example.org", 995, "Drafts");
	fx_init(&fx, "status");

	/* No file: never run, no error. */
	ls.ever_run = true;
	r = ledger_read_status(fx.state_dir, inbox, &ls, &cause);
	CHECK(r == RES_OK && !ls.ever_run && ls.imported_total == 0 &&
	    ls.nfailures == 0 && ls.last_error == NULL, "status without a "
	    "ledger = %d (%s) ever_run %d", r, unit_sesc(cause), ls.ever_run);
	free(cause);
	cause = NULL;
	ledger_status_free(&ls);

	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("i1", 10, 'a');
	import(fx.l, &m, 1, 1);
	m = msg_new("i2", 10, 'b');
	import(fx.l, &m, 1, 2);
	m = msg_new("i3", 10, 'c');
	import(fx.l, &m, 1, 3);
	set_deleted(fx.l, &m, DEL_DONE);	/* still imported */
	/* What the intent knew of the message is kept on failure. */
	memset(&info, 0, sizeof info);
	snprintf(info.date, sizeof info.date, "Mon, 1 Jan 2024 10:00:00 +0000");
	snprintf(info.from, sizeof info.from, "Bob <bob@example.org>");
	snprintf(info.subject, sizeof info.subject, "Hello");
	m = msg_new("f1", 10, 'd');
	OK(ledger_intent(fx.l, &m, &info, 1, 4, &a, &ok_cause), "intent f1");
	OK(ledger_failed(fx.l, &m, a, "too big", NULL, &ok_cause), "f1");
	/* Failed three times, without an APPEND: set aside. */
	snprintf(info.subject, sizeof info.subject, "Report");
	m = msg_new("f2", 10, 'e');
	OK(ledger_failed(fx.l, &m, 0, "refused", &info, &ok_cause), "f2");
	OK(ledger_failed(fx.l, &m, 0, "refused", NULL, &ok_cause), "f2");
	OK(ledger_failed(fx.l, &m, 0, "refused: [LIMIT]", NULL, &ok_cause),
	    "f2");
	m = msg_new("f3", 10, 0);
	OK(ledger_failed(fx.l, &m, 0, "cut off", NULL, &ok_cause), "f3");
	m = msg_new("g1", 10, 0);
	OK(ledger_failed(fx.l, &m, 0, "gone", NULL, &ok_cause), "g1");
	set_deleted(fx.l, &m, DEL_DONE);	/* not a failure to show */

	memset(&rs, 0, sizeof rs);
	rs.waiting = 9;
	OK(ledger_run_record(fx.l, "alice", now - 100, RES_OK, &rs, NULL,
	    &ok_cause), "run 1");
	rs.waiting = 7;
	rs.fresh = 4;
	rs.imported = 3;
	rs.failed = 1;
	rs.set_aside = 1;
	OK(ledger_run_record(fx.l, "alice", now - 10, RES_MSG, &rs,
	    "1 message not imported", &ok_cause), "run 2");

	/* Read while the ledger is open (WAL), as `status` beside a run. */
	OK(ledger_read_status(fx.state_dir, inbox, &ls, &ok_cause), "status");
	CHECK(ls.ever_run && ls.last_poll == now - 10 &&
	    ls.last_result == RES_MSG && ls.imported_last == 3 &&
	    ls.on_server == 7 && ls.waiting == 1, "INBOX last run: ever %d "
	    "poll %+lld result %d imported %u on_server %u waiting %u",
	    ls.ever_run, (long long)(ls.last_poll - now), ls.last_result,
	    ls.imported_last, ls.on_server, ls.waiting);
	CHECK_STR(ls.last_error, "1 message not imported", "INBOX last error");
	CHECK(ls.imported_total == 3, "INBOX imported_total %llu, want 3",
	    (unsigned long long)ls.imported_total);
	CHECK(ls.nfailures == 3 && ls.set_aside == 1, "INBOX: %zu failures "
	    "(want 3), %u set aside (want 1)", ls.nfailures, ls.set_aside);
	CHECK(failure_of(&ls, "g1") == NULL, "a gone failure is shown");
	if ((f = failure_of(&ls, "f1")) != NULL) {
		CHECK_STR(f->error, "too big", "f1 error");
		CHECK_STR(f->date, "Mon, 1 Jan 2024 10:00:00 +0000", "f1 date");
		CHECK_STR(f->from, "Bob <bob@example.org>", "f1 from");
		CHECK_STR(f->subject, "Hello", "f1 subject");
		CHECK(f->attempts == 1 && f->hold_until == 0, "f1: attempts "
		    "%u hold %lld", f->attempts, (long long)f->hold_until);
	} else
		CHECK(0, "f1 not among the failures");
	if ((f = failure_of(&ls, "f2")) != NULL) {
		CHECK_STR(f->error, "refused: [LIMIT]", "f2 error");
		CHECK_STR(f->subject, "Report", "f2 subject (from a failure)");
		CHECK(f->attempts == 3 && f->hold_until >= now + 2 * HOUR &&
		    f->hold_until <= time(NULL) + 2 * HOUR, "f2: attempts %u "
		    "hold %+lld", f->attempts,
		    (long long)(f->hold_until - now));
	} else
		CHECK(0, "f2 not among the failures");
	if ((f = failure_of(&ls, "f3")) != NULL) {
		CHECK_STR(f->error, "cut off", "f3 error");
		CHECK(f->date == NULL && f->from == NULL && f->subject == NULL,
		    "f3: headers made up");
		CHECK(f->attempts == 1 && f->hold_until == 0, "f3: attempts "
		    "%u", f->attempts);
	} else
		CHECK(0, "f3 not among the failures");
	ledger_status_free(&ls);

	/* A run's uncommitted batch is not seen; its commit is. */
	OK(ledger_begin(fx.l, &ok_cause), "begin");
	m = msg_new("i4", 10, 'f');
	import(fx.l, &m, 1, 5);
	OK(ledger_read_status(fx.state_dir, inbox, &ls, &ok_cause), "status");
	CHECK(ls.imported_total == 3, "status sees an uncommitted import: "
	    "%llu", (unsigned long long)ls.imported_total);
	ledger_status_free(&ls);
	OK(ledger_commit(fx.l, &ok_cause), "commit");
	OK(ledger_read_status(fx.state_dir, inbox, &ls, &ok_cause), "status");
	CHECK(ls.imported_total == 4, "status misses a committed import: "
	    "%llu", (unsigned long long)ls.imported_total);
	ledger_status_free(&ls);

	/* Archive: its own counts and runs. */
	if (!fx_open(&fx, "Archive"))
		goto out;
	m = msg_new("i1", 10, 'a');
	import(fx.l, &m, 2, 1);
	memset(&rs, 0, sizeof rs);
	rs.waiting = 9;
	rs.fresh = 1;
	rs.imported = 1;
	OK(ledger_run_record(fx.l, "alice-archive", now - 50, RES_OK, &rs,
	    NULL, &ok_cause), "Archive run");
	fx_close(&fx);

	OK(ledger_read_status(fx.state_dir, archive, &ls, &ok_cause),
	    "status");
	CHECK(ls.ever_run && ls.last_poll == now - 50 && ls.last_result ==
	    RES_OK && ls.last_error == NULL && ls.imported_last == 1 &&
	    ls.imported_total == 1 && ls.nfailures == 0 && ls.set_aside == 0,
	    "Archive: poll %+lld total %llu failures %zu",
	    (long long)(ls.last_poll - now),
	    (unsigned long long)ls.imported_total, ls.nfailures);
	ledger_status_free(&ls);

	/* After close, INBOX's is as it was. */
	OK(ledger_read_status(fx.state_dir, inbox, &ls, &ok_cause), "status");
	CHECK(ls.ever_run && ls.last_poll == now - 10 && ls.imported_total ==
	    4 && ls.nfailures == 3, "INBOX after close: poll %+lld total %llu",
	    (long long)(ls.last_poll - now),
	    (unsigned long long)ls.imported_total);
	ledger_status_free(&ls);

	/* A destination the ledger does not know: never run. */
	ls.ever_run = true;
	r = ledger_read_status(fx.state_dir, drafts, &ls, &cause);
	CHECK(r == RES_OK && !ls.ever_run && ls.imported_total == 0,
	    "unknown destination = %d (%s), ever_run %d", r,
	    unit_sesc(cause), ls.ever_run);
	free(cause);
	ledger_status_free(&ls);
out:
	fx_free(&fx);
	account_free(inbox);
	account_free(archive);
	account_free(drafts);
}

/* A ledger that is not one: an error, not "never run". */
static void
test_status_corrupt(const void *arg)
{
	static const struct {
		const char	*name;
		size_t		 len;		/* bytes of garbage */
		bool		 error;
	} cases[] = {
		{ "garbage4k", 4096, true },
		{ "garbage100k", 100000, true },
		{ "garbage200", 200, true },
		{ "empty", 0, false },		/* made, never written */
	};
	struct account	*ac = account_new("alice", "pop.example.org", 995,
	    NULL);
	struct ledger_status ls;
	struct ledger	*l;
	char		*dir, *path, *dest, *cause;
	unsigned int	 seed = 12345;
	size_t		 i, j;
	FILE		*fp;
	enum result	 r;

	(void)arg;
	dest = ident_dest(&ac->imap);
	for (i = 0; i < NELEM(cases); i++) {
		dir = xprintf("%s/corrupt-%s", tmpdir, cases[i].name);
		path = ledger_path(dir, ac);
		cause = NULL;
		if (mkdir(dir, 0700) == -1 || (fp = fopen(path, "w")) ==
		    NULL) {
			CHECK(0, "cannot make %s: %s", path, strerror(errno));
			goto next;
		}
		for (j = 0; j < cases[i].len; j++) {
			seed = seed * 1103515245u + 12345u;
			fputc((int)(seed >> 16) & 0xff, fp);
		}
		fclose(fp);
		memset(&ls, 0, sizeof ls);
		r = ledger_read_status(dir, ac, &ls, &cause);
		if (cases[i].error)
			CHECK(r != RES_OK && cause != NULL && !ls.ever_run,
			    "%s: status = %d (%s), want an error",
			    cases[i].name, r, unit_sesc(cause));
		else
			CHECK(r == RES_OK && !ls.ever_run, "%s: status = %d "
			    "(%s), want never run", cases[i].name, r,
			    unit_sesc(cause));
		ledger_status_free(&ls);
		free(cause);
		cause = NULL;

		/* A run on it fails and says why; an empty file just fills. */
		l = NULL;
		r = ledger_open(dir, path, "alice@pop.example.org", dest, &l,
		    &cause);
		if (cases[i].error)
			CHECK(r == RES_TEMP && l == NULL && cause != NULL &&
			    strstr(cause, "not a database") != NULL,
			    "%s: ledger_open = %d (%s)", cases[i].name, r,
			    unit_sesc(cause));
		else
			CHECK(r == RES_OK && l != NULL, "%s: ledger_open = %d "
			    "(%s)", cases[i].name, r, unit_sesc(cause));
		ledger_close(l);
next:
		free(cause);
		free(path);
		free(dir);
	}
	free(dest);
	account_free(ac);
}

/* ---- the upgrade from version 1 ---- */

static const char v1_schema[] =
    "PRAGMA journal_mode = WAL;"
    "CREATE TABLE message ("
    " source TEXT NOT NULL,"
    " uidl TEXT NOT NULL,"
    " state INTEGER NOT NULL,"
    " size INTEGER NOT NULL DEFAULT 0,"
    " hash TEXT,"
    " uidvalidity INTEGER,"
    " lo_uid INTEGER,"
    " uid INTEGER,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " error TEXT,"
    " deleted INTEGER NOT NULL DEFAULT 0,"
    " first_seen INTEGER NOT NULL,"
    " updated INTEGER NOT NULL,"
    " PRIMARY KEY (source, uidl)) WITHOUT ROWID;"
    "CREATE INDEX message_state ON message (source, state);"
    "CREATE INDEX message_uid ON message (uidvalidity, uid);"
    "CREATE TABLE run ("
    " id INTEGER PRIMARY KEY,"
    " account TEXT NOT NULL,"
    " started INTEGER NOT NULL,"
    " finished INTEGER NOT NULL,"
    " result INTEGER NOT NULL,"
    " waiting INTEGER, fresh INTEGER, imported INTEGER, failed INTEGER,"
    " deleted INTEGER, bytes INTEGER, error TEXT);"
    "PRAGMA user_version = 1;";

/* A version 1 row and what it must become. */
static const struct {
	const char	*uidl;
	int		 state;		/* 1 pending, 2 imported, 3 failed */
	long long	 uid;		/* -1 for NULL */
	const char	*error;
	int		 deleted;
	enum ledger_state want_state;
	int		 want_deleted;
	unsigned int	 want_fails;
} v1_rows[] = {
	{ "imp", 2, 17, NULL, 0, LEDGER_IMPORTED, DEL_NO, 0 },
	{ "imp-gone", 2, 18, NULL, 1, LEDGER_IMPORTED, DEL_DONE, 0 },
	{ "imp-nouid", 2, -1, NULL, 0, LEDGER_IMPORTED, DEL_NO, 0 },
	{ "fail", 3, -1, "too big", 0, LEDGER_FAILED, DEL_NO, 1 },
	{ "fail-gone", 3, -1, "refused", 1, LEDGER_FAILED, DEL_DONE, 1 },
	{ "pend", 1, -1, NULL, 0, LEDGER_TODO, DEL_NO, 0 },
	{ "it's", 2, 19, NULL, 0, LEDGER_IMPORTED, DEL_NO, 0 },
};

/* Write a version 1 ledger at path; with_pending: include "pend". */
static bool
v1_make(const char *path, const char *source, bool with_pending)
{
	char	*sql, *q, *rows = xstrdup("");
	size_t	 i;
	bool	 ok;

	for (i = 0; i < NELEM(v1_rows); i++) {
		char *uid, *err;

		if (v1_rows[i].state == 1 && !with_pending)
			continue;
		uid = v1_rows[i].uid < 0 ? xstrdup("NULL") :
		    xprintf("%lld", v1_rows[i].uid);
		err = v1_rows[i].error == NULL ? xstrdup("NULL") :
		    sqlite3_mprintf("%Q", v1_rows[i].error);
		q = sqlite3_mprintf("INSERT INTO message (source, uidl, state, "
		    "size, hash, uidvalidity, lo_uid, uid, attempts, error, "
		    "deleted, first_seen, updated) VALUES (%Q, %Q, %d, %d, "
		    "'%064d', 99, 10, %s, 1, %s, %d, 1000, 1001);", source,
		    v1_rows[i].uidl, v1_rows[i].state, 100 + (int)i, 7, uid,
		    err, v1_rows[i].deleted);
		sql = xprintf("%s%s", rows, q);
		free(rows);
		rows = sql;
		sqlite3_free(q);
		free(uid);
		if (v1_rows[i].error == NULL)
			free(err);
		else
			sqlite3_free(err);
	}
	sql = xprintf("%s%s INSERT INTO run (account, started, finished, "
	    "result, waiting, fresh, imported, failed, deleted, bytes, error) "
	    "VALUES ('alice', 1000, 1010, 1, 5, 2, 1, 1, 0, 300, "
	    "'1 message not imported');", v1_schema, rows);
	ok = sql_exec(path, sql);
	free(sql);
	free(rows);
	return ok;
}

/* Make fx's state_dir and its parent. */
static void
fx_mkdir(const struct fixture *fx)
{
	char	*parent = xstrdup(fx->state_dir);

	*strrchr(parent, '/') = '\0';
	(void)mkdir(parent, 0700);
	(void)mkdir(fx->state_dir, 0700);
	free(parent);
}

static void
test_upgrade_v1(const void *arg)
{
	static const struct {
		const char	*sub;
		bool		 with_pending;
	} files[] = {
		{ "v1-pending", true },
		{ "v1-settled", false },
	};
	struct account	*ac = account_new("alice", "pop.example.org", 995,
	    NULL);
	struct fixture	 fx;
	struct ledger_msg got;
	struct ledger_status ls;
	const struct ledger_failure *f;
	struct ledger	*ro;
	char		*dest = dest_name(NULL), *sql, *err;
	size_t		 i, k;
	bool		 pend;

	(void)arg;
	for (k = 0; k < NELEM(files); k++) {
		pend = files[k].with_pending;
		fx_init(&fx, files[k].sub);
		fx_mkdir(&fx);
		if (!v1_make(fx.path, fx.source, pend))
			goto next;
		/* Before a run upgrades it: never run, nothing known. */
		ls.ever_run = true;
		OK(ledger_read_status(fx.state_dir, ac, &ls, &ok_cause),
		    "status of a version 1 file");
		CHECK(!ls.ever_run, "%s: status reads a version 1 file",
		    files[k].sub);
		ledger_status_free(&ls);
		ro = (struct ledger *)&fx;
		OK(ledger_open_readonly(fx.path, fx.source, dest, &ro,
		    &ok_cause), "read-only open of a version 1 file");
		CHECK(ro == NULL, "%s: a read-only handle on version 1",
		    files[k].sub);
		ledger_close(ro);
		if (!fx_open(&fx, NULL))
			goto next;
		for (i = 0; i < NELEM(v1_rows); i++) {
			if (v1_rows[i].state == 1 && !pend) {
				CHECK(rows_of(fx.l, v1_rows[i].uidl, NULL) == 0,
				    "%s: %s made up", files[k].sub,
				    v1_rows[i].uidl);
				continue;
			}
			CHECK(rows_of(fx.l, v1_rows[i].uidl, &got) == 1 &&
			    got.state == v1_rows[i].want_state &&
			    got.deleted == v1_rows[i].want_deleted &&
			    got.fails == v1_rows[i].want_fails &&
			    got.uid == (v1_rows[i].uid < 0 ? 0 :
			    (uint32_t)v1_rows[i].uid) &&
			    got.uidvalidity == 99 && got.hash[0] == '\0' &&
			    got.size == 100 + i && got.hold_until == 0,
			    "%s: %s became state %d deleted %d fails %u uid %u "
			    "uv %u size %llu hash %s",
			    files[k].sub, v1_rows[i].uidl, got.state,
			    got.deleted, got.fails, got.uid, got.uidvalidity,
			    (unsigned long long)got.size, unit_sesc(got.hash));
		}
		CHECK(pending_count(fx.l) == 0 && attempt_count(fx.l) == 0,
		    "%s: a version 1 intent left a pending row or attempt",
		    files[k].sub);
		CHECK(owner(fx.l, 99, 17) != 0 && owner(fx.l, 99, 18) != 0,
		    "%s: imported rows own no UID", files[k].sub);
		CHECK(adopted(fx.l) == !pend, "%s: adopted %d, want %d",
		    files[k].sub, adopted(fx.l), !pend);

		/* The failure keeps its reason; the run is this pair's. */
		OK(ledger_read_status(fx.state_dir, ac, &ls, &ok_cause),
		    "status");
		CHECK(ls.ever_run && ls.last_poll == 1000 && ls.last_result ==
		    RES_MSG && ls.imported_last == 1 && ls.on_server == 5,
		    "%s: the version 1 run: ever %d poll %lld result %d",
		    files[k].sub, ls.ever_run, (long long)ls.last_poll,
		    ls.last_result);
		CHECK_STR(ls.last_error, "1 message not imported",
		    "version 1 run error");
		CHECK(ls.imported_total == 4, "%s: imported_total %llu, want 4",
		    files[k].sub, (unsigned long long)ls.imported_total);
		f = failure_of(&ls, "fail");
		CHECK(f != NULL && strcmp(f->error, "too big") == 0 &&
		    f->attempts == 1 && f->hold_until == 0, "%s: failure "
		    "\"fail\" lost or changed", files[k].sub);
		CHECK(failure_of(&ls, "fail-gone") == NULL && ls.nfailures == 1,
		    "%s: %zu failures, want 1", files[k].sub, ls.nfailures);
		ledger_status_free(&ls);
		fx_close(&fx);

		/* The file: version 2, the old table gone. */
		CHECK(sql_int(fx.path, "PRAGMA user_version") == 2,
		    "%s: user_version %lld", files[k].sub,
		    sql_int(fx.path, "PRAGMA user_version"));
		CHECK(sql_int(fx.path, "SELECT count(*) FROM sqlite_master "
		    "WHERE name = 'message'") == 0, "%s: table message left",
		    files[k].sub);
		sql = sqlite3_mprintf("SELECT adopted FROM dest WHERE "
		    "name = %Q", dest);
		CHECK(sql_int(fx.path, sql) == (pend ? 0 : 1),
		    "%s: dest.adopted %lld", files[k].sub,
		    sql_int(fx.path, sql));
		sqlite3_free(sql);
		err = sql_text(fx.path, "SELECT error FROM msg WHERE uidl = "
		    "'fail-gone'");
		CHECK_STR(err, "refused", "a gone failure's reason");
		free(err);
		CHECK(sql_int(fx.path, "SELECT count(*) FROM run WHERE dest IS "
		    "NULL") == 0, "%s: a run without a destination",
		    files[k].sub);

		/* Another destination gets none of it; no second upgrade. */
		if (!fx_open(&fx, "Archive"))
			goto next;
		CHECK(rows_of(fx.l, "imp", NULL) == 0 && !adopted(fx.l),
		    "%s: Archive got the version 1 rows", files[k].sub);
		if (!fx_open(&fx, "INBOX"))
			goto next;
		CHECK(rows_of(fx.l, "imp", NULL) == 1 && rows_of(fx.l, "fail",
		    NULL) == 1 && adopted(fx.l) == !pend, "%s: reopening "
		    "changed the upgraded rows", files[k].sub);
next:
		fx_free(&fx);
	}
	free(dest);
	account_free(ac);
}

/*
 * SUSPECTED BUG (ledger.c, ledger_setup and ledger_open): when a set-up
 * statement fails after BEGIN IMMEDIATE, ledger_setup runs ROLLBACK
 * before ledger_open reads sqlite3_errmsg(), so the cause says "set-up:
 * not an error" instead of what went wrong.  Shown with a version 1 file
 * that has no table "run" (version 1 made "message" first and "run" in a
 * later statement of the same exec, each committed alone): the ALTER
 * TABLE run fails.  Such a file is also never upgraded (every run fails);
 * version 1 itself would have made the missing table at its next open.
 */
static void
test_setup_cause(const void *arg)
{
	struct fixture	 fx;
	char		*dest = dest_name(NULL), *cause = NULL;
	struct ledger	*l = NULL;
	enum result	 r;

	(void)arg;
	fx_init(&fx, "v1-norun");
	fx_mkdir(&fx);
	if (!sql_exec(fx.path, "CREATE TABLE message (source TEXT NOT NULL, "
	    "uidl TEXT NOT NULL, state INTEGER NOT NULL, size INTEGER NOT NULL "
	    "DEFAULT 0, hash TEXT, uidvalidity INTEGER, lo_uid INTEGER, "
	    "uid INTEGER, attempts INTEGER NOT NULL DEFAULT 0, error TEXT, "
	    "deleted INTEGER NOT NULL DEFAULT 0, first_seen INTEGER NOT NULL, "
	    "updated INTEGER NOT NULL, PRIMARY KEY (source, uidl)) "
	    "WITHOUT ROWID; INSERT INTO message (source, uidl, state, "
	    "first_seen, updated) VALUES ('x', 'u', 2, 1, 1);"))
		goto out;
	r = ledger_open(fx.state_dir, fx.path, fx.source, dest, &l, &cause);
	if (r == RES_OK)
		CHECK(rows_of(l, "u", NULL) == 1, "upgraded without its row");
	else
		CHECK(cause != NULL && strstr(cause, "not an error") == NULL &&
		    strstr(cause, "run") != NULL, "ledger_open = %d; the "
		    "cause does not say what failed: %s", r, unit_sesc(cause));
	ledger_close(l);
out:
	free(cause);
	free(dest);
	fx_free(&fx);
}

/* ---- transactions ---- */

static void
test_transactions(const void *arg)
{
	struct fixture	 fx;
	struct ledger_msg m, got;
	struct ledger_removal *list = NULL;
	size_t		 n = 0;

	(void)arg;
	fx_init(&fx, "txn");
	if (!fx_open(&fx, "INBOX"))
		goto out;

	/* Rolled back: nothing of it stays. */
	OK(ledger_begin(fx.l, &ok_cause), "begin");
	m = msg_new("t1", 10, 'a');
	(void)intent(fx.l, &m, 1, 1);
	OK(ledger_removal_add(fx.l, 1, 1, &ok_cause), "removal");
	OK(ledger_set_adopted(fx.l, &ok_cause), "set_adopted");
	CHECK(rows_of(fx.l, "t1", NULL) == 1 && attempt_count(fx.l) == 1 &&
	    adopted(fx.l), "changes not seen inside the transaction");
	ledger_rollback(fx.l);
	CHECK(rows_of(fx.l, "t1", NULL) == 0, "t1 kept after rollback");
	CHECK(attempt_count(fx.l) == 0, "attempt kept after rollback");
	CHECK(!adopted(fx.l), "adopted kept after rollback");
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 0, "%zu removals kept after rollback", n);
	free(list);

	/* Committed: all of it, across close and reopen. */
	OK(ledger_begin(fx.l, &ok_cause), "begin");
	m = msg_new("t2", 10, 'b');
	import(fx.l, &m, 1, 2);
	m = msg_new("t1", 10, 'a');
	(void)intent(fx.l, &m, 1, 3);
	OK(ledger_removal_add(fx.l, 1, 2, &ok_cause), "removal");
	OK(ledger_set_adopted(fx.l, &ok_cause), "set_adopted");
	OK(ledger_commit(fx.l, &ok_cause), "commit");
	OK(ledger_begin_read(fx.l, &ok_cause), "begin_read");
	CHECK(rows_of(fx.l, "t2", NULL) == 1, "t2 not seen in a read");
	OK(ledger_commit(fx.l, &ok_cause), "commit read");
	/* And without a transaction, each change alone. */
	m = msg_new("t3", 10, 0);
	OK(ledger_new(fx.l, &m, &ok_cause), "t3");

	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(rows_of(fx.l, "t2", &got) == 1 && got.state == LEDGER_IMPORTED &&
	    got.uid == 2, "t2 after reopen: state %d uid %u", got.state,
	    got.uid);
	CHECK(rows_of(fx.l, "t1", &got) == 1 && got.state == LEDGER_PENDING,
	    "t1 after reopen: %d", got.state);
	CHECK(rows_of(fx.l, "t3", &got) == 1 && got.state == LEDGER_TODO,
	    "t3 after reopen: %d", got.state);
	CHECK(attempt_count(fx.l) == 1 && adopted(fx.l), "attempt or adopted "
	    "lost on reopen");
	OK(ledger_removals(fx.l, &list, &n, &ok_cause), "removals");
	CHECK(n == 1 && list[0].uidvalidity == 1 && list[0].uid == 2,
	    "%zu removals after reopen", n);
	free(list);
out:
	fx_free(&fx);
}

/* ---- the lock, and persistence ---- */

/* In a child: can it open the ledger now?  0 refused, 1 opened. */
static int
child_open(const struct fixture *fx, const char *dest)
{
	struct ledger	*l = NULL;
	char		*cause = NULL;
	enum result	 r;
	int		 status;
	pid_t		 pid;

	fflush(stdout);
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		r = ledger_open(fx->state_dir, fx->path, fx->source, dest, &l,
		    &cause);
		_exit(r == RES_TEMP && l == NULL && cause != NULL ? 0 :
		    r == RES_OK ? 1 : 2);
	}
	if (waitpid(pid, &status, 0) == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void
test_lock_and_persist(const void *arg)
{
	struct fixture	 fx, fx2;
	struct ledger	*l2;
	struct ledger_msg m, a, b, c, got;
	struct ledger_attempt *list;
	char		*dest = dest_name(NULL), *other = dest_name("Archive");
	char		*cause = NULL, byte;
	int		 up[2], down[2], status;
	size_t		 n;
	pid_t		 pid;
	enum result	 r;

	(void)arg;
	fx_init(&fx, "lock");
	fx_init(&fx2, "lock2");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	a = msg_new("a", 10, '1');
	(void)intent(fx.l, &a, 5, 6);
	b = msg_new("b", 20, '2');
	import(fx.l, &b, 5, 9);
	set_deleted(fx.l, &b, DEL_SENT);
	c = msg_new("c", 30, '3');
	refuse(fx.l, &c, 1, "no");

	/* A second holder in this process, for either destination. */
	l2 = (struct ledger *)&cause;
	r = ledger_open(fx.state_dir, fx.path, fx.source, dest, &l2, &cause);
	CHECK(r == RES_TEMP, "second ledger_open = %d, want RES_TEMP", r);
	CHECK(l2 == NULL, "second ledger_open left a handle");
	CHECK(cause != NULL && *cause != '\0', "second ledger_open: no cause");
	if (r == RES_OK)
		ledger_close(l2);
	free(cause);
	cause = NULL;
	l2 = NULL;
	r = ledger_open(fx.state_dir, fx.path, fx.source, other, &l2, &cause);
	CHECK(r == RES_TEMP && l2 == NULL, "open for Archive while INBOX "
	    "holds the file = %d", r);
	if (r == RES_OK)
		ledger_close(l2);
	free(cause);
	cause = NULL;

	/* Another process, while this one holds it. */
	CHECK(child_open(&fx, dest) == 0, "another process opened a held "
	    "ledger");
	CHECK(rows_of(fx.l, "a", &got) == 1 && got.state == LEDGER_PENDING,
	    "first holder broken by the second open");

	/* This process, while another holds it, until that one ends. */
	fx_close(&fx);
	if (pipe(up) == -1 || pipe(down) == -1) {
		CHECK(0, "pipe: %s", strerror(errno));
		goto out;
	}
	fflush(stdout);
	if ((pid = fork()) == 0) {
		l2 = NULL;
		r = ledger_open(fx.state_dir, fx.path, fx.source, dest, &l2,
		    &cause);
		byte = r == RES_OK ? 'y' : 'n';
		if (write(up[1], &byte, 1) != 1 || read(down[0], &byte, 1) != 1)
			_exit(3);
		ledger_close(l2);
		_exit(0);
	}
	CHECK(pid > 0 && read(up[0], &byte, 1) == 1 && byte == 'y',
	    "the other process could not open the ledger");
	l2 = NULL;
	r = ledger_open(fx.state_dir, fx.path, fx.source, dest, &l2, &cause);
	CHECK(r == RES_TEMP && l2 == NULL, "open while another process holds "
	    "it = %d", r);
	if (r == RES_OK)
		ledger_close(l2);
	free(cause);
	cause = NULL;
	byte = 'x';
	CHECK(write(down[1], &byte, 1) == 1, "cannot tell the child");
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0, "the child failed");
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);

	/* Free again; everything is still there. */
	if (!fx_open(&fx, "INBOX"))
		goto out;
	CHECK(rows_of(fx.l, "a", &got) == 1 && got.state == LEDGER_PENDING &&
	    got.id == a.id && got.pop_size == 10 && hash_is(got.hash, '1'),
	    "a after reopen: state %d", got.state);
	CHECK(rows_of(fx.l, "b", &got) == 1 && got.state == LEDGER_IMPORTED &&
	    got.deleted == DEL_SENT && got.uid == 9, "b after reopen: state "
	    "%d deleted %d", got.state, got.deleted);
	CHECK(rows_of(fx.l, "c", &got) == 1 && got.state == LEDGER_FAILED &&
	    got.fails == 1, "c after reopen: state %d", got.state);
	CHECK(owner(fx.l, 5, 9) == b.id, "UID 5/9 not owned after reopen");
	list = attempts(fx.l, &n);
	CHECK(n == 1 && list[0].msg == a.id && list[0].uidvalidity == 5 &&
	    list[0].lo_uid == 6, "attempts after reopen: %zu", n);
	free(list);
	m = msg_new("d", 1, 0);
	OK(ledger_new(fx.l, &m, &ok_cause), "a write after reopen");

	/* A different ledger (another mailbox) is not locked by this one. */
	CHECK(fx_open(&fx2, "INBOX"), "another ledger while one is open");
out:
	free(cause);
	free(dest);
	free(other);
	fx_free(&fx2);
	fx_free(&fx);
}

/* For a dry run: read-only, unlocked, NULL where nothing is known. */
static void
test_readonly(const void *arg)
{
	struct fixture	 fx;
	struct ledger	*ro;
	struct ledger_msg m;
	char		*dest = dest_name(NULL), *other = dest_name("Drafts");

	(void)arg;
	fx_init(&fx, "readonly");
	ro = (struct ledger *)&fx;
	OK(ledger_open_readonly(fx.path, fx.source, dest, &ro, &ok_cause),
	    "readonly, no file");
	CHECK(ro == NULL, "a handle on a ledger that does not exist");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	m = msg_new("r", 10, 'a');
	import(fx.l, &m, 1, 1);
	/* While the writer holds the lock. */
	OK(ledger_open_readonly(fx.path, fx.source, dest, &ro, &ok_cause),
	    "readonly");
	CHECK(ro != NULL && rows_of(ro, "r", NULL) == 1, "read-only handle "
	    "does not see r");
	ledger_close(ro);
	ro = (struct ledger *)&fx;
	OK(ledger_open_readonly(fx.path, fx.source, other, &ro, &ok_cause),
	    "readonly, unknown destination");
	CHECK(ro == NULL, "a handle for an unknown destination");
	ledger_close(ro);
out:
	free(dest);
	free(other);
	fx_free(&fx);
}

/* A state_dir that cannot be made is a temporary failure. */
static void
test_bad_state_dir(const void *arg)
{
	struct ledger	*l = (struct ledger *)&l;
	char		*file, *dir, *path, *cause = NULL;
	FILE		*f;
	enum result	 r;

	(void)arg;
	file = xprintf("%s/plain-file", tmpdir);
	if ((f = fopen(file, "w")) != NULL)
		fclose(f);
	dir = xprintf("%s/sub", file);
	path = xprintf("%s/x.db", dir);
	r = ledger_open(dir, path, "src", "alice@imap.example.org/INBOX", &l,
	    &cause);
	CHECK(r == RES_TEMP && l == NULL, "state_dir under a file: %d", r);
	CHECK(cause != NULL && strstr(cause, dir) != NULL,
	    "state_dir under a file: cause %s", unit_sesc(cause));
	free(cause);
	free(path);
	free(dir);
	free(file);
}

/* UIDLs are data, whatever their bytes; many rows list fully. */
static void
test_odd_uidls(const void *arg)
{
	static const char *const uidls[] = {
		"'; DROP TABLE msg; --",
		"%_*?",
		"%",
		"_",
		"\"quoted\"",
		"0123456789012345678901234567890123456789012345678901234567"
		    "890123456789",		/* UIDL_MAX */
		"!",
		"~",
		"UIDL",
		"uidl",
	};
	struct fixture	 fx;
	struct ledger_msg m, got, *rows = NULL;
	char		 u[32];
	size_t		 i, n = 0;

	(void)arg;
	fx_init(&fx, "odd");
	if (!fx_open(&fx, "INBOX"))
		goto out;
	for (i = 0; i < NELEM(uidls); i++) {
		m = msg_new(uidls[i], i, 'f');
		(void)intent(fx.l, &m, 1, (uint32_t)i);
	}
	for (i = 0; i < 40; i++) {
		snprintf(u, sizeof u, "many-%zu", i);
		m = msg_new(u, 4000000000ULL + i, '0');
		(void)intent(fx.l, &m, 4294967295u, 4294967295u);
	}
	OK(ledger_pending(fx.l, &rows, &n, &ok_cause), "pending");
	CHECK(n == NELEM(uidls) + 40, "pending list has %zu rows, want %zu",
	    n, NELEM(uidls) + 40);
	free(rows);
	for (i = 0; i < NELEM(uidls); i++)
		CHECK(rows_of(fx.l, uidls[i], &got) == 1 &&
		    strcmp(got.uidl, uidls[i]) == 0 && got.pop_size == i &&
		    got.state == LEDGER_PENDING, "UIDL %s not kept as it is",
		    unit_sesc(uidls[i]));
	CHECK(attempt_count(fx.l) == NELEM(uidls) + 40, "attempts lost");
	CHECK(rows_of(fx.l, "many-39", &got) == 1 &&
	    got.pop_size == 4000000039ULL && got.size == 4000000041ULL,
	    "large sizes not kept: %llu", (unsigned long long)got.pop_size);
	{
		struct ledger_attempt *list = attempts(fx.l, &n);

		CHECK(n > 0 && list[n - 1].uidvalidity == 4294967295u &&
		    list[n - 1].lo_uid == 4294967295u &&
		    list[n - 1].size == 4000000041ULL, "large attempt numbers "
		    "not kept");
		free(list);
	}
	m = got;
	OK(ledger_stored(fx.l, &m, 0, 4294967295u, 4294967295u, &ok_cause),
	    "stored with the largest UID");
	CHECK(owner(fx.l, 4294967295u, 4294967295u) == m.id,
	    "largest UID not owned");
	CHECK(rows_of(fx.l, "many-39", &got) == 1 && got.uid == 4294967295u &&
	    got.uidvalidity == 4294967295u, "largest UID read back as %u/%u",
	    got.uidvalidity, got.uid);
out:
	fx_free(&fx);
}

int
main(void)
{
	tmp_make("ledger");
	UNIT_ISOLATED("ledger_path", test_path, NULL);
	UNIT_ISOLATED("rows per destination", test_dest_rows, NULL);
	UNIT_ISOLATED("ledger_imported_in", test_imported_in, NULL);
	UNIT_ISOLATED("intent -> stored, unsent", test_stored_unsent, NULL);
	UNIT_ISOLATED("intent -> failed, set aside", test_failed_hold, NULL);
	UNIT_ISOLATED("ledger_failed without intent",
	    test_failed_without_intent, NULL);
	UNIT_ISOLATED("attempts", test_attempts, NULL);
	UNIT_ISOLATED("lookups", test_lookups, NULL);
	UNIT_ISOLATED("ledger_mark_gone", test_mark_gone, NULL);
	UNIT_ISOLATED("removals", test_removals, NULL);
	UNIT_ISOLATED("adopted", test_adopted, NULL);
	UNIT_ISOLATED("ledger_release", test_release, NULL);
	UNIT_ISOLATED("ledger_release counts the set-aside only", test_release_count, NULL);
	UNIT_ISOLATED("ledger_read_status", test_status, NULL);
	UNIT_ISOLATED("ledger_read_status on a corrupt file",
	    test_status_corrupt, NULL);
	UNIT_ISOLATED("upgrade from version 1", test_upgrade_v1, NULL);
	UNIT_ISOLATED("a version 1 file without run upgrades", test_setup_cause, NULL);
	UNIT_ISOLATED("transactions", test_transactions, NULL);
	UNIT_ISOLATED("ledger lock and persistence", test_lock_and_persist,
	    NULL);
	UNIT_ISOLATED("ledger_open_readonly", test_readonly, NULL);
	UNIT_ISOLATED("bad state_dir", test_bad_state_dir, NULL);
	UNIT_ISOLATED("odd UIDLs", test_odd_uidls, NULL);
	return tmp_end();
}
