// link: bridge/throttle.c
/*
 * bridge/throttle.c: the backoff hint in a server's words (the phrasings
 * providers use, the nasty ones: no unit, a unit that is no unit of time,
 * fractions, huge numbers, digits without end), which refusals are
 * throttling, and which refused logins are "not now" rather than "wrong
 * password"; the words as fields, and the refusal a run's report takes.
 */
#include "bridge.h"
#include "unit.h"

struct hcase {
	const char	*text;
	bool		 found;
	long		 secs;
};

static const struct hcase hint_cases[] = {
	/* What providers say. */
	{ "[UNAVAILABLE] Too many connections, try again in 2 seconds", true,
	    2 },
	{ "imap: 127.0.0.1: the server ended the session: [UNAVAILABLE] "
	    "Too many connections, try again in 30 seconds", true, 30 },
	{ "retry after 2 s", true, 2 },
	{ "Try again in 5 minutes.", true, 300 },
	{ "TRY AGAIN IN 1 SECOND", true, 1 },
	{ "throttled; retry in 45s", true, 45 },
	{ "rate limited, please wait 10 seconds", true, 10 },
	{ "please wait for 3 sec and reconnect", true, 3 },
	{ "come back in 1 min", true, 60 },
	{ "try again in about 20 seconds", true, 20 },
	{ "try again after at least 7 secs", true, 7 },
	{ "Retry-After: 12", true, 12 },
	{ "try again in 4, thanks", true, 4 },
	{ "try again in 4", true, 4 },
	{ "try again in 1 hour", true, 900 },	/* capped at 15 min */
	{ "try again in 16 minutes", true, 900 },
	{ "try again in 15 minutes", true, 900 },
	{ "try again in 14 mins", true, 840 },
	{ "try again in 0 seconds", true, 1 },	/* at least 1 s */
	{ "try again in 1.5 seconds", true, 2 },	/* never less */
	{ "try again in 2.0 seconds", true, 2 },
	{ "try again in 3.", true, 3 },
	{ "wait 5 messages then 6 seconds", false, 0 },
	{ "wait 5 messages; try again in 6 seconds", true, 6 },
	/* No hint at all. */
	{ "", false, 0 },
	{ "[LIMIT] Too many connections", false, 0 },
	{ "try again later", false, 0 },
	{ "try again in a minute", false, 0 },
	{ "try again in a few seconds", false, 0 },
	{ "await 5 seconds", false, 0 },		/* no "wait" word */
	{ "try again in 5 days", false, 0 },	/* no unit of time known */
	{ "try again in 5 mailboxes", false, 0 },
	{ "try again in 5minutesX", false, 0 },
	{ "again", false, 0 },
	{ "try again in", false, 0 },
	{ "try again in -5 seconds", false, 0 },
	{ "try again in seconds", false, 0 },
	{ "imap: localhost:993: connection refused", false, 0 },
	/* Absurd: ignored, the caller's backoff instead. */
	{ "try again in 86401 seconds", false, 0 },
	{ "try again in 1441 minutes", false, 0 },
	{ "try again in 25 hours", false, 0 },
	{ "try again in 999999999 seconds", false, 0 },
	{ "try again in 1000000000 seconds", false, 0 },	/* 10 digits */
	{ "try again in 1000000000 seconds; retry in 5 s", false, 0 },
	{ "try again in 99999999999999999999999999 seconds", false, 0 },
	{ "try again in 9223372036854775808 s", false, 0 },
	/* A day exactly is not absurd: capped. */
	{ "try again in 86400 seconds", true, 900 },
	{ "try again in 24 hours", true, 900 },
};

static void
test_hints(const void *arg)
{
	size_t	 i;
	long	 secs;
	bool	 found;

	(void)arg;
	for (i = 0; i < sizeof hint_cases / sizeof hint_cases[0]; i++) {
		const struct hcase *c = &hint_cases[i];

		secs = -99;
		found = throttle_hint(c->text, &secs);
		CHECK(found == c->found, "hint %s: found %d, want %d",
		    unit_sesc(c->text), found, c->found);
		if (c->found && found)
			CHECK(secs == c->secs, "hint %s: %ld s, want %ld",
			    unit_sesc(c->text), secs, c->secs);
		if (!c->found)
			CHECK(secs == -99, "hint %s: *secs_r set on false",
			    unit_sesc(c->text));
	}
	CHECK(!throttle_hint(NULL, &secs), "hint of NULL");
}

/* Long and unterminated-looking inputs stay inside their bytes. */
static void
test_hint_long(const void *arg)
{
	char	*s;
	long	 secs = 0;
	size_t	 n = 100000;

	(void)arg;
	s = xmalloc(n + 1);
	memset(s, '9', n);
	memcpy(s, "try again in ", 13);
	s[n] = '\0';
	CHECK(!throttle_hint(s, &secs), "100 kB of digits is no hint");
	memset(s, ' ', n);
	memcpy(s, "wait", 4);
	s[n] = '\0';
	CHECK(!throttle_hint(s, &secs), "100 kB of spaces is no hint");
	memcpy(s + n - 20, "retry in 3 seconds", 18);
	CHECK(throttle_hint(s, &secs) && secs == 3, "a hint after 100 kB");
	free(s);
}

struct tcase {
	const char	*text;
	bool		 throttle;
};

static const struct tcase is_cases[] = {
	{ "imap: h: APPEND refused: [LIMIT] too many", true },
	{ "imap: h: the server ended the session: Throttled", true },
	{ "pop3: h cannot take the login for u now: -ERR [IN-USE] x", true },
	{ "-ERR [SYS/TEMP] busy", true },
	{ "* BYE [UNAVAILABLE] busy", true },
	{ "NO [INUSE] mailbox in use", true },
	{ "rate limit exceeded", true },
	{ "Please try again later", true },
	{ "too many simultaneous connections", true },
	{ "imap: h: connection lost: Connection reset by peer", false },
	{ "pop3: h refused the login for u: -ERR [AUTH] failed", false },
	{ "", false },
};

static void
test_is(const void *arg)
{
	size_t	 i;

	(void)arg;
	for (i = 0; i < sizeof is_cases / sizeof is_cases[0]; i++)
		CHECK(throttle_is(is_cases[i].text) == is_cases[i].throttle,
		    "throttle_is(\"%s\") != %d", is_cases[i].text,
		    is_cases[i].throttle);
}

struct lcase {
	const char	*line;
	enum result	 r;
};

static const struct lcase login_cases[] = {
	/* "Not now." */
	{ "-ERR [IN-USE] too many connections", RES_TEMP },
	{ "-ERR [SYS/TEMP] throttled", RES_TEMP },
	{ "-ERR [LOGIN-DELAY] Logins must be at least 0 minute apart",
	    RES_TEMP },
	{ "A002 NO [LIMIT] Too many simultaneous logins", RES_TEMP },
	{ "A002 NO [UNAVAILABLE] Temporary authentication failure", RES_TEMP },
	{ "A002 NO [INUSE] Mailbox in use", RES_TEMP },
	{ "-ERR too many connections from your IP, try again in 30 seconds",
	    RES_TEMP },
	{ "A2 NO Login throttled", RES_TEMP },
	{ "-ERR rate limit exceeded", RES_TEMP },
	{ "-ERR try again later", RES_TEMP },
	{ "-ERR Temporary authentication failure", RES_TEMP },
	{ "A1 NO Server temporarily unavailable", RES_TEMP },
	/* "Wrong credentials", or nothing clear: not retried. */
	{ "-ERR [AUTH] Authentication failed.", RES_AUTH },
	{ "A002 NO [AUTHENTICATIONFAILED] Authentication failed.", RES_AUTH },
	{ "A002 NO [AUTHENTICATIONFAILED] Too many failures", RES_AUTH },
	{ "-ERR Too many invalid login attempts, try again later", RES_AUTH },
	{ "-ERR Too many failed logins", RES_AUTH },
	{ "A1 NO [SYS/PERM] try again later", RES_AUTH },
	{ "-ERR [AUTH] Too many login attempts", RES_AUTH },
	{ "-ERR Authentication failed", RES_AUTH },
	{ "A002 NO Login denied", RES_AUTH },
	{ "-ERR", RES_AUTH },
	{ "", RES_AUTH },
};

static void
test_login(const void *arg)
{
	size_t	 i;

	(void)arg;
	for (i = 0; i < sizeof login_cases / sizeof login_cases[0]; i++)
		CHECK(throttle_login(login_cases[i].line) == login_cases[i].r,
		    "throttle_login(\"%s\") != %d", login_cases[i].line,
		    (int)login_cases[i].r);
}

/* The server's words as fields; a throttled run's report finds the
 * refusal that ended it, wrapped or not, and no other. */
static void
test_read_note_take(const void *arg)
{
	struct throttle	 t;
	char		*cause, *other, *wrapped;
	int		 i;

	(void)arg;
	throttle_read("[UNAVAILABLE] busy, try again in 2 seconds", true, &t);
	CHECK(t.throttled && t.imap && t.retry_after == 2, "read: %d %d %ld",
	    t.throttled, t.imap, t.retry_after);
	throttle_read("[LIMIT] too many", false, &t);
	CHECK(t.throttled && !t.imap && t.retry_after == 0, "no hint: %ld",
	    t.retry_after);
	throttle_read("please wait 10 s", false, &t);
	CHECK(t.throttled && t.retry_after == 10, "a hint alone throttles");
	throttle_read("Mailbox does not exist", true, &t);
	CHECK(!t.throttled && t.retry_after == 0, "no throttle");
	throttle_read(NULL, true, &t);
	CHECK(!t.throttled, "NULL words");

	cause = xstrdup("imap: h: STATUS refused: [LIMIT] retry in 5 s");
	throttle_heard("[LIMIT] retry in 5 s", true, &cause);
	other = xstrdup("pop3: h: connection lost");
	throttle_heard("connection lost", false, &other);
	wrapped = xprintf("destination bob:INBOX: %s", cause);
	CHECK(throttle_take(wrapped, &t) && t.imap && t.retry_after == 5,
	    "the wrapped refusal not found");
	CHECK(!throttle_take(wrapped, &t), "the notes outlive a take");
	throttle_heard("[LIMIT] retry in 5 s", true, &cause);
	CHECK(!throttle_take(other, &t) && !t.throttled && t.retry_after == 0,
	    "another failure taken as the refusal");
	throttle_heard("[LIMIT] retry in 5 s", true, &cause);
	CHECK(!throttle_take(NULL, &t), "a NULL cause");
	throttle_heard("[LIMIT] retry in 5 s", true, NULL);

	/* More notes than kept: the newest stay. */
	for (i = 0; i < 20; i++) {
		free(other);
		other = xprintf("pop3: h: -ERR [SYS/TEMP] busy %d, retry in "
		    "%d s", i, i + 1);
		throttle_heard(other, false, &other);
	}
	CHECK(throttle_take(other, &t) && t.retry_after == 20 && !t.imap,
	    "the newest note lost: %ld", t.retry_after);
	free(cause);
	free(other);
	free(wrapped);
}

int
main(void)
{
	UNIT_ISOLATED("throttle_hint", test_hints, NULL);
	UNIT_ISOLATED("throttle_hint, long input", test_hint_long, NULL);
	UNIT_ISOLATED("throttle_is", test_is, NULL);
	UNIT_ISOLATED("throttle_login", test_login, NULL);
	UNIT_ISOLATED("throttle_read, _note, _take", test_read_note_take,
	    NULL);
	return UNIT_END();
}
