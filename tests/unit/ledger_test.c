// link: bridge/ledger.c bridge/hash.c
// pkg: sqlite3 libcrypto
/*
 * bridge/ledger.c in a temporary state_dir: the message states and their
 * moves, the pending list, claimed UIDs, the lock against a second
 * holder, persistence across close and reopen, and ledger_path.
 */
#include <sys/stat.h>

#include <errno.h>

#include "bridge.h"
#include "unit.h"

static char	 tmpdir[256];

static struct account *
account_new(const char *user, const char *host, int port)
{
	struct account	*ac = xcalloc(1, sizeof *ac);

	ac->name = xstrdup("test");
	ac->pop3.user = xstrdup(user);
	ac->pop3.host = xstrdup(host);
	ac->pop3.port = port;
	return ac;
}

static void
account_free(struct account *ac)
{
	free(ac->name);
	free(ac->pop3.user);
	free(ac->pop3.host);
	free(ac);
}

/* ---- ledger_path ---- */

static void
test_path(const void *arg)
{
	struct account	*a = account_new("alice", "pop.example.org", 995);
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

	/* The account's name does not matter, only the POP3 mailbox. */
	free(a->name);
	a->name = xstrdup("renamed");
	p2 = ledger_path("/var/lib/popbridge", a);
	CHECK_STR(p2, p1, "ledger_path after renaming the account");
	free(p2);

	/*
	 * The same mailbox on another port (pop3:// instead of pop3s://) or
	 * with the host in other letters keeps its ledger: nothing is
	 * imported again.
	 */
	b = account_new("alice", "POP.Example.ORG", 110);
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
		    others[i].port);
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
	b = account_new("../../etc/passwd\n\"'; DROP TABLE message;--"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	    "pop.example.org", 995);
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

/* ---- the ledger itself ---- */

struct fixture {
	char		*state_dir;
	char		*path;
	struct ledger	*l;
};

static enum result
open_ledger(struct fixture *fx, const char *sub, const char *source,
    char **cause)
{
	struct account	*ac = account_new("alice", "pop.example.org", 995);
	enum result	 r;

	fx->state_dir = xprintf("%s/%s/state", tmpdir, sub);
	fx->path = ledger_path(fx->state_dir, ac);
	account_free(ac);
	r = ledger_open(fx->state_dir, fx->path, source, &fx->l, cause);
	return r;
}

static void
fixture_free(struct fixture *fx)
{
	ledger_close(fx->l);
	free(fx->state_dir);
	free(fx->path);
	memset(fx, 0, sizeof *fx);
}

static enum ledger_state
state_of(struct ledger *l, const char *uidl, bool *deleted)
{
	enum ledger_state st = (enum ledger_state)99;
	bool		 del = true;
	char		*cause = NULL;
	enum result	 r;

	r = ledger_state(l, uidl, &st, &del, &cause);
	CHECK(r == RES_OK, "ledger_state(%s) = %d (%s)", uidl, r,
	    unit_sesc(cause));
	free(cause);
	if (deleted != NULL)
		*deleted = del;
	return st;
}

static struct ledger_pending
pending(const char *uidl, uint64_t size, char c, uint32_t uv, uint32_t lo)
{
	struct ledger_pending p;

	memset(&p, 0, sizeof p);
	snprintf(p.uidl, sizeof p.uidl, "%s", uidl);
	p.size = size;
	memset(p.hash, c, 64);
	p.hash[64] = '\0';
	p.uidvalidity = uv;
	p.lo_uid = lo;
	return p;
}

#define OK(call, what) do {						\
	char *ok_cause = NULL;						\
	enum result ok_r = (call);					\
	CHECK(ok_r == RES_OK, "%s = %d (%s)", (what), ok_r,		\
	    unit_sesc(ok_cause));					\
	free(ok_cause);							\
} while (0)

/* Find uidl in the pending list; NULL if absent. */
static const struct ledger_pending *
find_pending(const struct ledger_pending *list, size_t n, const char *uidl)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(list[i].uidl, uidl) == 0)
			return &list[i];
	return NULL;
}

static void
test_states(const void *arg)
{
	struct fixture	 fx;
	struct ledger_pending p, *list = NULL;
	const struct ledger_pending *q;
	struct stat	 st;
	size_t		 n = 0;
	bool		 deleted, claimed;
	char		*cause = NULL;
	enum result	 r;

	(void)arg;
	memset(&fx, 0, sizeof fx);
	r = open_ledger(&fx, "states", "pop3s://alice@pop.example.org", &cause);
	CHECK(r == RES_OK && fx.l != NULL, "ledger_open = %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;
	if (r != RES_OK)
		goto out;
	CHECK(stat(fx.state_dir, &st) == 0 && S_ISDIR(st.st_mode) &&
	    (st.st_mode & 077) == 0, "state_dir %s not made private (mode "
	    "%o)", fx.state_dir, (unsigned)st.st_mode);
	CHECK(stat(fx.path, &st) == 0, "ledger file %s not made", fx.path);

	/* NONE. */
	CHECK(state_of(fx.l, "u1", &deleted) == LEDGER_NONE && !deleted,
	    "new UIDL: not NONE");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "empty list");
	CHECK(n == 0, "empty ledger lists %zu pending", n);
	free(list);

	/* NONE -> PENDING, listed with its fields. */
	p = pending("u1", 1234, 'a', 77, 40);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent u1");
	p = pending("u2", 99, 'b', 77, 41);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent u2");
	CHECK(state_of(fx.l, "u1", &deleted) == LEDGER_PENDING && !deleted,
	    "u1 not PENDING after intent");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	CHECK(n == 2, "pending list has %zu rows, want 2", n);
	q = find_pending(list, n, "u1");
	CHECK(q != NULL && q->size == 1234 && q->uidvalidity == 77 &&
	    q->lo_uid == 40 && strlen(q->hash) == 64 &&
	    strspn(q->hash, "a") == 64, "u1 listed wrong: size %llu uv %u "
	    "lo %u hash %s", q ? (unsigned long long)q->size : 0ULL,
	    q ? q->uidvalidity : 0, q ? q->lo_uid : 0,
	    q ? unit_sesc(q->hash) : "-");
	q = find_pending(list, n, "u2");
	CHECK(q != NULL && q->size == 99 && q->lo_uid == 41 &&
	    strspn(q->hash, "b") == 64, "u2 listed wrong");
	free(list);

	/* PENDING -> IMPORTED; its UID is claimed, no other. */
	OK(ledger_imported(fx.l, "u1", 77, 45, &ok_cause), "imported u1");
	CHECK(state_of(fx.l, "u1", NULL) == LEDGER_IMPORTED,
	    "u1 not IMPORTED");
	OK(ledger_uid_claimed(fx.l, 77, 45, &claimed, &ok_cause), "claimed");
	CHECK(claimed, "UID 45 of 77 not claimed");
	OK(ledger_uid_claimed(fx.l, 77, 46, &claimed, &ok_cause), "claimed");
	CHECK(!claimed, "UID 46 of 77 claimed");
	OK(ledger_uid_claimed(fx.l, 78, 45, &claimed, &ok_cause), "claimed");
	CHECK(!claimed, "UID 45 of UIDVALIDITY 78 claimed");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	CHECK(n == 1 && find_pending(list, n, "u2") != NULL,
	    "after import, pending list has %zu rows", n);
	free(list);

	/* A PENDING UID is not claimed: only imported messages own one. */
	OK(ledger_uid_claimed(fx.l, 77, 41, &claimed, &ok_cause), "claimed");
	CHECK(!claimed, "lo_uid of a pending message claimed");

	/* Imported without APPENDUID: no UID, nothing claimed. */
	p = pending("u3", 5, 'c', 77, 50);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent u3");
	OK(ledger_imported(fx.l, "u3", 77, 0, &ok_cause), "imported u3");
	CHECK(state_of(fx.l, "u3", NULL) == LEDGER_IMPORTED,
	    "u3 not IMPORTED");
	OK(ledger_uid_claimed(fx.l, 77, 0, &claimed, &ok_cause), "claimed");
	CHECK(!claimed, "UID 0 claimed");

	/* PENDING -> FAILED; not pending any more. */
	OK(ledger_failed(fx.l, "u2", "too big", &ok_cause), "failed u2");
	CHECK(state_of(fx.l, "u2", NULL) == LEDGER_FAILED, "u2 not FAILED");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	CHECK(n == 0, "after failure, pending list has %zu rows", n);
	free(list);

	/* FAILED -> PENDING again when it is retried. */
	p = pending("u2", 99, 'd', 77, 60);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent u2 again");
	CHECK(state_of(fx.l, "u2", NULL) == LEDGER_PENDING,
	    "retried u2 not PENDING");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	q = find_pending(list, n, "u2");
	CHECK(n == 1 && q != NULL && q->lo_uid == 60 &&
	    strspn(q->hash, "d") == 64, "retried u2 listed with old fields");
	free(list);

	/* forget drops PENDING rows only. */
	OK(ledger_forget(fx.l, "u2", &ok_cause), "forget u2");
	CHECK(state_of(fx.l, "u2", NULL) == LEDGER_NONE,
	    "forgotten u2 not NONE");
	OK(ledger_forget(fx.l, "u1", &ok_cause), "forget imported u1");
	CHECK(state_of(fx.l, "u1", NULL) == LEDGER_IMPORTED,
	    "forget removed an IMPORTED row");
	p = pending("u4", 5, 'e', 77, 70);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent u4");
	OK(ledger_failed(fx.l, "u4", "refused", &ok_cause), "failed u4");
	OK(ledger_forget(fx.l, "u4", &ok_cause), "forget failed u4");
	CHECK(state_of(fx.l, "u4", NULL) == LEDGER_FAILED,
	    "forget removed a FAILED row");
	OK(ledger_forget(fx.l, "never-seen", &ok_cause), "forget unknown");

	/* deleted: a flag beside the state. */
	OK(ledger_deleted(fx.l, "u1", &ok_cause), "deleted u1");
	CHECK(state_of(fx.l, "u1", &deleted) == LEDGER_IMPORTED && deleted,
	    "u1 after deletion: not IMPORTED and deleted");
	CHECK(state_of(fx.l, "u3", &deleted) == LEDGER_IMPORTED && !deleted,
	    "u3 marked deleted");

	/* A run record. */
	{
		struct run_stats rs = { 3, 2, 1, 1, 0, 4096, 1.5 };

		OK(ledger_run_record(fx.l, "alice", time(NULL) - 5, RES_MSG,
		    &rs, "1 message not imported", &ok_cause), "run record");
		OK(ledger_run_record(fx.l, "alice", time(NULL), RES_OK, &rs,
		    NULL, &ok_cause), "run record without error");
	}
out:
	fixture_free(&fx);
}

/*
 * A message refused before any intent was recorded (RETR -ERR, over the
 * APPENDLIMIT: account.c calls ledger_failed straight away) must be FAILED,
 * or the run cannot tell that it failed.
 */
static void
test_failed_without_intent(const void *arg)
{
	struct fixture	 fx;
	char		*cause = NULL;
	enum result	 r;

	(void)arg;
	memset(&fx, 0, sizeof fx);
	r = open_ledger(&fx, "failed", "src", &cause);
	CHECK(r == RES_OK, "ledger_open = %d (%s)", r, unit_sesc(cause));
	free(cause);
	if (r != RES_OK)
		goto out;
	OK(ledger_failed(fx.l, "fresh", "-ERR no such message", &ok_cause),
	    "failed without intent");
	CHECK(state_of(fx.l, "fresh", NULL) == LEDGER_FAILED,
	    "ledger_failed on a UIDL with no row: state %d, want FAILED (%d)",
	    state_of(fx.l, "fresh", NULL), LEDGER_FAILED);
out:
	fixture_free(&fx);
}

/* UIDLs are data, whatever their bytes; many rows list fully. */
static void
test_odd_uidls(const void *arg)
{
	static const char *const uidls[] = {
		"'; DROP TABLE message; --",
		"%_*?",
		"\"quoted\"",
		"0123456789012345678901234567890123456789012345678901234567"
		    "890123456789",
		"!",
		"~",
		"UIDL",
		"uidl",
	};
	struct fixture	 fx;
	struct ledger_pending p, *list = NULL;
	char		 u[32], *cause = NULL;
	size_t		 i, n = 0;
	enum result	 r;

	(void)arg;
	memset(&fx, 0, sizeof fx);
	r = open_ledger(&fx, "odd", "src", &cause);
	CHECK(r == RES_OK, "ledger_open = %d (%s)", r, unit_sesc(cause));
	free(cause);
	if (r != RES_OK)
		goto out;
	for (i = 0; i < NELEM(uidls); i++) {
		p = pending(uidls[i], i, 'f', 1, (uint32_t)i);
		OK(ledger_intent(fx.l, &p, &ok_cause), uidls[i]);
	}
	for (i = 0; i < 40; i++) {
		snprintf(u, sizeof u, "many-%zu", i);
		p = pending(u, 4000000000ULL + i, '0', 4294967295u,
		    4294967295u);
		OK(ledger_intent(fx.l, &p, &ok_cause), u);
	}
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	CHECK(n == NELEM(uidls) + 40, "pending list has %zu rows, want %zu",
	    n, NELEM(uidls) + 40);
	for (i = 0; i < NELEM(uidls); i++)
		CHECK(find_pending(list, n, uidls[i]) != NULL &&
		    state_of(fx.l, uidls[i], NULL) == LEDGER_PENDING,
		    "UIDL %s not kept as it is", unit_sesc(uidls[i]));
	CHECK(state_of(fx.l, "uidl", NULL) == LEDGER_PENDING &&
	    find_pending(list, n, "UIDL") != NULL, "UIDL case lost");
	{
		const struct ledger_pending *q = find_pending(list, n,
		    "many-39");

		CHECK(q != NULL && q->size == 4000000039ULL &&
		    q->uidvalidity == 4294967295u && q->lo_uid == 4294967295u,
		    "large numbers not kept: size %llu uv %u lo %u",
		    q ? (unsigned long long)q->size : 0ULL,
		    q ? q->uidvalidity : 0, q ? q->lo_uid : 0);
	}
	free(list);
	OK(ledger_imported(fx.l, "many-1", 4294967295u, 4294967295u,
	    &ok_cause), "imported with the largest UID");
	{
		bool claimed = false;

		OK(ledger_uid_claimed(fx.l, 4294967295u, 4294967295u, &claimed,
		    &ok_cause), "claimed");
		CHECK(claimed, "largest UID not claimed");
	}
out:
	fixture_free(&fx);
}

/* One holder at a time; the data outlives the process's handle. */
static void
test_lock_and_persist(const void *arg)
{
	struct fixture	 fx, fx2;
	struct ledger	*l2 = NULL;
	struct ledger_pending p, *list = NULL;
	char		*cause = NULL;
	size_t		 n = 0;
	bool		 deleted, claimed;
	enum result	 r;

	(void)arg;
	memset(&fx, 0, sizeof fx);
	memset(&fx2, 0, sizeof fx2);
	r = open_ledger(&fx, "lock", "src", &cause);
	CHECK(r == RES_OK, "ledger_open = %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;
	if (r != RES_OK)
		goto out;

	p = pending("a", 10, '1', 5, 6);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent a");
	p = pending("b", 20, '2', 5, 7);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent b");
	OK(ledger_imported(fx.l, "b", 5, 9, &ok_cause), "imported b");
	OK(ledger_deleted(fx.l, "b", &ok_cause), "deleted b");
	p = pending("c", 30, '3', 5, 8);
	OK(ledger_intent(fx.l, &p, &ok_cause), "intent c");
	OK(ledger_failed(fx.l, "c", "no", &ok_cause), "failed c");

	/* A second holder while the first has it open. */
	l2 = (struct ledger *)&cause;
	r = ledger_open(fx.state_dir, fx.path, "src", &l2, &cause);
	CHECK(r == RES_TEMP, "second ledger_open = %d, want RES_TEMP", r);
	CHECK(l2 == NULL, "second ledger_open left a handle");
	CHECK(cause != NULL && *cause != '\0', "second ledger_open: no cause");
	if (r == RES_OK)
		ledger_close(l2);
	free(cause);
	cause = NULL;

	/* The first is unharmed. */
	CHECK(state_of(fx.l, "a", NULL) == LEDGER_PENDING,
	    "first holder broken by the second open");

	/* Close, reopen: everything is still there, and the lock is free. */
	ledger_close(fx.l);
	fx.l = NULL;
	r = ledger_open(fx.state_dir, fx.path, "src", &fx.l, &cause);
	CHECK(r == RES_OK, "reopen = %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;
	if (r != RES_OK)
		goto out;
	CHECK(state_of(fx.l, "a", NULL) == LEDGER_PENDING, "a lost");
	CHECK(state_of(fx.l, "b", &deleted) == LEDGER_IMPORTED && deleted,
	    "b lost");
	CHECK(state_of(fx.l, "c", NULL) == LEDGER_FAILED, "c lost");
	OK(ledger_uid_claimed(fx.l, 5, 9, &claimed, &ok_cause), "claimed");
	CHECK(claimed, "UID 9 not claimed after reopen");
	OK(ledger_pending_list(fx.l, &list, &n, &ok_cause), "pending list");
	CHECK(n == 1 && strcmp(list[0].uidl, "a") == 0 && list[0].size == 10 &&
	    list[0].uidvalidity == 5 && list[0].lo_uid == 6 &&
	    strspn(list[0].hash, "1") == 64, "pending list after reopen: %zu "
	    "rows", n);
	free(list);
	list = NULL;
	ledger_close(fx.l);
	fx.l = NULL;

	/* Another source id in the same file sees none of it. */
	r = ledger_open(fx.state_dir, fx.path, "other", &fx.l, &cause);
	CHECK(r == RES_OK, "open with another source = %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;
	if (r == RES_OK) {
		CHECK(state_of(fx.l, "a", NULL) == LEDGER_NONE &&
		    state_of(fx.l, "b", NULL) == LEDGER_NONE,
		    "another source sees this source's rows");
		OK(ledger_uid_claimed(fx.l, 5, 9, &claimed, &ok_cause),
		    "claimed");
		CHECK(!claimed, "another source sees a claimed UID");
		OK(ledger_pending_list(fx.l, &list, &n, &ok_cause),
		    "pending list");
		CHECK(n == 0, "another source lists %zu pending", n);
		free(list);
	}

	/* A different ledger (another mailbox) is not locked by this one. */
	r = open_ledger(&fx2, "lock2", "src", &cause);
	CHECK(r == RES_OK, "another ledger while one is open = %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;
out:
	fixture_free(&fx2);
	fixture_free(&fx);
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
	r = ledger_open(dir, path, "src", &l, &cause);
	CHECK(r == RES_TEMP && l == NULL, "state_dir under a file: %d", r);
	CHECK(cause != NULL, "state_dir under a file: no cause");
	free(cause);
	free(path);
	free(dir);
	free(file);
}

int
main(void)
{
	const char	*t = getenv("TMPDIR");
	char		*rm;
	int		 rc;

	snprintf(tmpdir, sizeof tmpdir, "%s/popbridge-ledger-XXXXXX",
	    t != NULL && *t != '\0' ? t : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		printf("mkdtemp %s: %s\n", tmpdir, strerror(errno));
		return 2;
	}
	UNIT_ISOLATED("ledger_path", test_path, NULL);
	UNIT_ISOLATED("ledger states", test_states, NULL);
	UNIT_ISOLATED("ledger_failed without intent",
	    test_failed_without_intent, NULL);
	UNIT_ISOLATED("odd UIDLs", test_odd_uidls, NULL);
	UNIT_ISOLATED("ledger lock and persistence", test_lock_and_persist,
	    NULL);
	UNIT_ISOLATED("bad state_dir", test_bad_state_dir, NULL);
	rc = UNIT_END();
	rm = xprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		printf("cannot remove %s\n", tmpdir);
	free(rm);
	return rc;
}
