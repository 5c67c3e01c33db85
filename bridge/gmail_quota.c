/*
 * The Gmail destination's pure helpers, apart so that they can be tested
 * alone (tests/unit/gmail_test.c): words for an import's outcome, and
 * when Google's daily quota starts again.
 *
 * Google's per-day quotas start again at midnight Pacific time, which
 * follows the US daylight saving rules (since 2007: from the second
 * Sunday of March to the first Sunday of November, at 2:00 local).  It is
 * computed here rather than through TZ=America/Los_Angeles and
 * localtime(), which would change the process's time zone under the rest
 * of the program (and its log's timestamps).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bridge.h"
#include "gmail_int.h"

const char *
gmail_status_name(enum gmail_status s)
{
	switch (s) {
	case GMAIL_IMPORTED:
		return "imported";
	case GMAIL_UNKNOWN:
		return "unknown";
	case GMAIL_RETRY_AFTER:
		return "retry-after";
	case GMAIL_DAILY_LIMIT:
		return "daily-limit";
	case GMAIL_TOO_BIG:
		return "too-big";
	case GMAIL_REFUSED:
		return "refused";
	case GMAIL_NOT_DONE:
		return "not-done";
	}
	return "?";
}

const char *
gmail_when(time_t t)
{
	static char	 buf[64];
	struct tm	 tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M %Z", &tm) == 0)
		snprintf(buf, sizeof buf, "%lld", (long long)t);
	return buf;
}

/* The day of the week (0 Sunday) of a civil date, and its time_t. */
static time_t
civil(int y, int mon, int d, int h, int *wday)
{
	struct tm	 tm;
	time_t		 t;

	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = d;
	tm.tm_hour = h;
	t = timegm(&tm);
	if (wday != NULL)
		*wday = (int)(((t / 86400) % 7 + 4 + 7) % 7);	/* 1970-01-01: Thu */
	return t;
}

/* Is UTC time t within US daylight saving time (2007 rules)? */
static bool
us_dst(time_t t)
{
	struct tm	 tm;
	int		 wday;
	time_t		 start, end;

	gmtime_r(&t, &tm);
	/* Second Sunday of March, 2:00 PST = 10:00 UTC. */
	civil(tm.tm_year + 1900, 2, 1, 0, &wday);
	start = civil(tm.tm_year + 1900, 2, 1 + (7 - wday) % 7 + 7, 10, NULL);
	/* First Sunday of November, 2:00 PDT = 9:00 UTC. */
	civil(tm.tm_year + 1900, 10, 1, 0, &wday);
	end = civil(tm.tm_year + 1900, 10, 1 + (7 - wday) % 7, 9, NULL);
	return t >= start && t < end;
}

time_t
gmail_quota_reset(time_t t)
{
	long	 off = us_dst(t) ? -7 * 3600 : -8 * 3600;
	time_t	 local = t + off, midnight;

	midnight = (local / 86400 + 1) * 86400;
	/* The offset at midnight (a change happens at 2:00, not at 0:00). */
	off = us_dst(midnight - off) ? -7 * 3600 : -8 * 3600;
	return midnight - off;
}
