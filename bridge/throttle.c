/*
 * Is a server's refusal "slow down" rather than "failed", and how long does
 * the server ask us to wait?  Pure functions of the server's words, so the
 * connection and protocol code (net.c, net_io.c, pop3.c, imap.c) read them
 * alike, and so they can be tested from a table
 * (tests/unit/throttle_test.c).  What they find travels as fields (struct
 * throttle), never as text to search again: the code that reads the
 * server's words notes it here, the worker puts it in its report
 * (worker.c), and the batch and the daemon rest as long as it says.
 *
 * Providers say it in many ways: RFC 5530 codes (NO [LIMIT], [INUSE],
 * [UNAVAILABLE]), RFC 2449 / 3206 POP3 codes ([IN-USE], [SYS/TEMP],
 * [LOGIN-DELAY]), or only words ("too many connections", "throttled",
 * "try again in 30 seconds").  The hint is free text from the network: it
 * is read with a bounded parse, and a value nobody would mean is ignored.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

#define HINT_DIGITS	9	/* more is absurd, and could overflow */

/* Server words that mean "slow down", not "failed". */
bool
throttle_is(const char *text)
{
	static const char *const words[] = { "[LIMIT]", "throttl",
		"too many", "[SYS/TEMP]", "[IN-USE]", "[UNAVAILABLE]",
		"try again later", "rate limit", "[INUSE]", "[LOGIN-DELAY]" };
	size_t	 i;

	for (i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strcasestr(text, words[i]) != NULL)
			return true;
	return false;
}

/*
 * A refused login: RES_TEMP when the server says "not now", RES_AUTH when
 * it says "wrong credentials" or nothing clear.  Response codes decide
 * first; then "temporary"; then words of throttling, unless they also
 * speak of failed or invalid logins ("Too many invalid login attempts" is
 * about the password: retrying it would only lock the account).
 */
enum result
throttle_login(const char *line)
{
	static const char *const temp[] = { "[LOGIN-DELAY]", "[IN-USE]",
		"[SYS/TEMP]", "[UNAVAILABLE]", "[LIMIT]", "[INUSE]" };
	static const char *const auth[] = { "[AUTH]", "[AUTHENTICATIONFAILED]",
		"[AUTHORIZATIONFAILED]", "[EXPIRED]", "[SYS/PERM]" };
	static const char *const words[] = { "throttl", "too many",
		"rate limit", "try again", "retry after", "retry in" };
	static const char *const bad[] = { "fail", "invalid", "incorrect",
		"wrong", "denied" };
	size_t	 i;

	for (i = 0; i < sizeof temp / sizeof temp[0]; i++)
		if (strcasestr(line, temp[i]) != NULL)
			return RES_TEMP;
	for (i = 0; i < sizeof auth / sizeof auth[0]; i++)
		if (strcasestr(line, auth[i]) != NULL)
			return RES_AUTH;
	if (strcasestr(line, "temporar") != NULL)
		return RES_TEMP;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (strcasestr(line, bad[i]) != NULL)
			return RES_AUTH;
	for (i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strcasestr(line, words[i]) != NULL)
			return RES_TEMP;
	return RES_AUTH;
}

/* Does s begin with word w (any case), followed by no letter? */
static size_t
word_at(const char *s, const char *w)
{
	size_t	 n = strlen(w);

	if (strncasecmp(s, w, n) != 0 || isalpha((unsigned char)s[n]))
		return 0;
	return n;
}

static const char *
skip_spaces(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/*
 * "N[.N] unit" at s: the seconds it names; -1 if there is no time here, -2
 * if it is absurd (more than a day).  No unit (the end of the text or
 * punctuation after the number) is seconds, as in Retry-After; a word that
 * is no unit of time ("5 messages") is no time.
 */
static long
hint_value(const char *s)
{
	static const struct {
		const char	*word;
		long		 mult;
	} units[] = {
		{ "seconds", 1 }, { "second", 1 }, { "secs", 1 }, { "sec", 1 },
		{ "s", 1 }, { "minutes", 60 }, { "minute", 60 }, { "mins", 60 },
		{ "min", 60 }, { "m", 60 }, { "hours", 3600 }, { "hour", 3600 },
		{ "hrs", 3600 }, { "hr", 3600 }, { "h", 3600 }
	};
	long	 v = 0, mult = 1;
	size_t	 i, digits = 0;
	bool	 frac = false;

	while (isdigit((unsigned char)*s)) {
		if (++digits > HINT_DIGITS)
			return -2;
		v = v * 10 + (*s++ - '0');
	}
	if (digits == 0)
		return -1;
	if (*s == '.' && isdigit((unsigned char)s[1])) {
		for (s++; isdigit((unsigned char)*s); s++)
			frac = frac || *s != '0';
		v += frac;		/* 1.5 s: wait 2, never less */
	}
	s = skip_spaces(s);
	if (isalpha((unsigned char)*s)) {
		for (i = 0; i < sizeof units / sizeof units[0]; i++)
			if (word_at(s, units[i].word) > 0)
				break;
		if (i == sizeof units / sizeof units[0])
			return -1;
		mult = units[i].mult;
	}
	/* v < 10^9 fits any long; checked before the product is made. */
	if (v > THROTTLE_HINT_ABSURD / mult)
		return -2;
	return v * mult;
}

/*
 * The server's "try again in 30 seconds", "retry after 2 s", "please wait
 * 5 minutes": true and *secs_r (1 .. THROTTLE_HINT_MAX) when the text asks
 * for a wait; false when it does not, or asks for more than a day (no
 * server means that; the caller's own backoff is better).
 */
bool
throttle_hint(const char *text, long *secs_r)
{
	static const char *const lead[] = { "try again in", "try again after",
		"again in", "again after", "retry in", "retry after",
		"retry-after:", "back in", "wait" };
	static const char *const filler[] = { "about", "at least", "another",
		"for", "approximately" };
	const char	*s, *p;
	size_t		 i, j, n, rounds;
	long		 v;

	if (text == NULL)
		return false;
	for (s = text; *s != '\0'; s++) {
		/* A lead phrase starts a word: "await" is no "wait". */
		if (s > text && isalpha((unsigned char)s[-1]))
			continue;
		for (i = 0; i < sizeof lead / sizeof lead[0]; i++) {
			n = strlen(lead[i]);
			if (strncasecmp(s, lead[i], n) != 0 ||
			    isalpha((unsigned char)s[n]))
				continue;
			p = skip_spaces(s + n);
			for (rounds = 0; rounds < 3; rounds++) {
				for (j = 0; j < sizeof filler /
				    sizeof filler[0]; j++)
					if ((n = word_at(p, filler[j])) > 0)
						break;
				if (j == sizeof filler / sizeof filler[0])
					break;
				p = skip_spaces(p + n);
			}
			/* An absurd hint (-2) is ignored, not cut down. */
			if ((v = hint_value(p)) == -2)
				return false;
			if (v < 0)
				continue;
			if (v < 1)
				v = 1;
			if (v > THROTTLE_HINT_MAX)
				v = THROTTLE_HINT_MAX;
			*secs_r = v;
			return true;
		}
	}
	return false;
}

/* The server's words as fields: "slow down"?  For how long? */
void
throttle_read(const char *words, bool imap, struct throttle *t)
{
	memset(t, 0, sizeof *t);
	t->imap = imap;
	if (words == NULL)
		return;
	if (!throttle_hint(words, &t->retry_after))
		t->retry_after = 0;
	t->throttled = t->retry_after > 0 || throttle_is(words);
}

/*
 * The "slow down"s heard in this process's run, newest last, each with
 * the sentence it made (its cause).  A run goes on after some failures (a
 * destination down, a message refused), and wraps or keeps a cause for
 * later ("destination bob:INBOX: ..."), so what counts at its end is the
 * refusal whose sentence is part of the run's final cause.  One run per
 * process (the worker's child); bounded, the oldest dropped; locked, as
 * an IMAP login may go on in a thread of its own (prelogin.c).
 */
#define NOTES_MAX	8
#define NOTE_CAUSE_MAX	512

static struct {
	struct throttle	 t;
	char		 cause[NOTE_CAUSE_MAX];
} notes[NOTES_MAX];
static size_t	 nnotes;
static pthread_mutex_t notes_lock = PTHREAD_MUTEX_INITIALIZER;

void
throttle_note(const struct throttle *t, char **cause)
{
	if (!t->throttled || cause == NULL || *cause == NULL ||
	    **cause == '\0')
		return;
	pthread_mutex_lock(&notes_lock);
	if (nnotes == NOTES_MAX) {
		memmove(&notes[0], &notes[1], (NOTES_MAX - 1) * sizeof notes[0]);
		nnotes--;
	}
	notes[nnotes].t = *t;
	/* A prefix cut at the bound still identifies the sentence. */
	snprintf(notes[nnotes].cause, sizeof notes[nnotes].cause, "%s",
	    *cause);
	nnotes++;
	pthread_mutex_unlock(&notes_lock);
}

void
throttle_heard(const char *words, bool imap, char **cause)
{
	struct throttle	 t;

	throttle_read(words, imap, &t);
	throttle_note(&t, cause);
}

bool
throttle_take(const char *cause, struct throttle *t)
{
	size_t	 i;

	memset(t, 0, sizeof *t);
	pthread_mutex_lock(&notes_lock);
	for (i = nnotes; cause != NULL && i > 0; i--)
		if (strstr(cause, notes[i - 1].cause) != NULL) {
			*t = notes[i - 1].t;
			break;
		}
	nnotes = 0;
	pthread_mutex_unlock(&notes_lock);
	return t->throttled;
}
