/*
 * Is a server's refusal "slow down" rather than "failed", and how long does
 * the server ask us to wait?  Pure functions of the server's words, so the
 * batch (batch_run.c) and the login code (net.c) agree, and so they can be
 * tested from a table (tests/unit/throttle_test.c).
 *
 * Providers say it in many ways: RFC 5530 codes (NO [LIMIT], [INUSE],
 * [UNAVAILABLE]), RFC 2449 / 3206 POP3 codes ([IN-USE], [SYS/TEMP],
 * [LOGIN-DELAY]), or only words ("too many connections", "throttled",
 * "try again in 30 seconds").  The hint is free text from the network: it
 * is read with a bounded parse, and a value nobody would mean is ignored.
 */
#include <ctype.h>
#include <stdbool.h>
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
		"try again later", "rate limit", "[INUSE]", "[LOGIN-DELAY]",
		"cannot take the login" };
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
