/*
 * RFC 5322 dates in, IMAP date-time out.  Pure functions: no time zone
 * database, no locale, no global state, so they can be fuzzed and tested
 * from a table.  The parser is lenient where real mail is sloppy (missing
 * comma or seconds, obsolete zone names, two-digit years, comments) and
 * strict about ranges.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

struct dscan {
	const char	*p;
	const char	*end;
};

/* Skip white space, line breaks and (nested) comments. */
static void
skip_cfws(struct dscan *s)
{
	int	 depth = 0;

	while (s->p < s->end) {
		char c = *s->p;

		if (depth > 0) {
			if (c == '\\' && s->p + 1 < s->end)
				s->p++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			s->p++;
		} else if (c == '(') {
			depth = 1;
			s->p++;
		} else if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			s->p++;
		else
			break;
	}
}

static size_t
scan_alpha(struct dscan *s, char *out, size_t outsz)
{
	size_t	 n = 0;

	skip_cfws(s);
	while (s->p < s->end && isalpha((unsigned char)*s->p)) {
		if (n + 1 < outsz)
			out[n] = *s->p;
		n++;
		s->p++;
	}
	out[n < outsz ? n : outsz - 1] = '\0';
	return n;
}

/* Up to maxdigits digits; -1 if there are none. */
static int
scan_num(struct dscan *s, int maxdigits, int *ndigits)
{
	int	 v = 0, n = 0;

	skip_cfws(s);
	while (s->p < s->end && isdigit((unsigned char)*s->p)) {
		if (n == maxdigits)
			return -1;
		v = v * 10 + (*s->p - '0');
		n++;
		s->p++;
	}
	if (ndigits != NULL)
		*ndigits = n;
	return n == 0 ? -1 : v;
}

static bool
scan_char(struct dscan *s, char c)
{
	skip_cfws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May",
	"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static int
month_index(const char *name)
{
	int	 i;

	if (strlen(name) < 3)
		return -1;
	for (i = 0; i < 12; i++)
		if (strncasecmp(name, months[i], 3) == 0)
			return i;
	return -1;
}

static bool
is_day_name(const char *name)
{
	static const char *const days[] = { "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat", "Sun" };
	size_t	 i;

	for (i = 0; i < 7; i++)
		if (strncasecmp(name, days[i], 3) == 0)
			return true;
	return false;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static long long
days_from_civil(long long y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(long long z, int *y, int *m, int *d)
{
	long long era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static int
days_in_month(int y, int m)
{
	static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
		30, 31 };
	bool	 leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dim[m - 1];
}

/* Obsolete zone names of RFC 5322 4.3; unknown ones mean -0000. */
static int
zone_name_offset(const char *name)
{
	static const struct { const char *n; int off; } zones[] = {
		{ "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 },
		{ "EST", -300 }, { "EDT", -240 }, { "CST", -360 },
		{ "CDT", -300 }, { "MST", -420 }, { "MDT", -360 },
		{ "PST", -480 }, { "PDT", -420 },
	};
	size_t	 i;

	for (i = 0; i < sizeof zones / sizeof zones[0]; i++)
		if (strcasecmp(name, zones[i].n) == 0)
			return zones[i].off;
	return 0;
}

bool
date_parse(const char *str, size_t len, time_t *t_r, int *tzoff_r)
{
	struct dscan	 s = { str, str + len };
	char		 word[16];
	int		 day, mon, year, hour, min, sec = 0, nd, tz = 0;
	const char	*save;

	/* [ day-of-week "," ] */
	save = s.p;
	if (scan_alpha(&s, word, sizeof word) > 0) {
		if (!is_day_name(word))
			return false;
		(void)scan_char(&s, ',');
	} else
		s.p = save;

	if ((day = scan_num(&s, 2, NULL)) < 1)
		return false;
	(void)scan_char(&s, '-');	/* "25-Nov-2026" is seen in the wild */
	if (scan_alpha(&s, word, sizeof word) == 0 ||
	    (mon = month_index(word)) < 0)
		return false;
	(void)scan_char(&s, '-');
	if ((year = scan_num(&s, 4, &nd)) < 0)
		return false;
	if (nd == 2)
		year += year < 50 ? 2000 : 1900;
	else if (nd == 3)
		year += 1900;
	if ((hour = scan_num(&s, 2, NULL)) < 0 || !scan_char(&s, ':') ||
	    (min = scan_num(&s, 2, NULL)) < 0)
		return false;
	if (scan_char(&s, ':') && (sec = scan_num(&s, 2, NULL)) < 0)
		return false;

	skip_cfws(&s);
	if (s.p < s.end && (*s.p == '+' || *s.p == '-')) {
		int sign = *s.p == '-' ? -1 : 1, hhmm;

		s.p++;
		if (s.p >= s.end || !isdigit((unsigned char)*s.p))
			return false;
		if ((hhmm = scan_num(&s, 4, &nd)) < 0 || nd != 4 ||
		    hhmm % 100 > 59)
			return false;
		tz = sign * ((hhmm / 100) * 60 + hhmm % 100);
	} else if (scan_alpha(&s, word, sizeof word) > 0)
		tz = zone_name_offset(word);

	if (year < 1900 || year > 9999 || day > days_in_month(year, mon + 1) ||
	    hour > 23 || min > 59 || sec > 60)
		return false;
	if (sec == 60)
		sec = 59;	/* a leap second; IMAP has no room for it */

	*t_r = (time_t)(days_from_civil(year, mon + 1, day) * 86400LL +
	    hour * 3600 + min * 60 + sec - tz * 60LL);
	*tzoff_r = tz;
	return true;
}

void
date_imap(time_t t, int tzoff, char *buf, size_t bufsz)
{
	long long	 local = (long long)t + tzoff * 60LL, days, rem;
	int		 y, m, d, a = tzoff < 0 ? -tzoff : tzoff;

	days = local / 86400;
	rem = local % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	civil_from_days(days, &y, &m, &d);
	snprintf(buf, bufsz, "%02d-%s-%04d %02d:%02d:%02d %c%02d%02d", d,
	    months[m - 1], y, (int)(rem / 3600), (int)(rem / 60 % 60),
	    (int)(rem % 60), tzoff < 0 ? '-' : '+', a / 60, a % 60);
}
