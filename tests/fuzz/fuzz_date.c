// link: bridge/date.c
// max_len: 256
/*
 * date_parse on the input (an exact-size buffer, no NUL), and:
 *  - an accepted date round-trips: date_imap gives "dd-Mon-yyyy hh:mm:ss
 *    +zzzz", which date_parse reads back to the same instant and offset,
 *    and which formats again to the same text;
 *  - date_imap(t, 0) agrees with the C library's gmtime_r;
 *  - a date built from the input's first bytes (any day, month, year
 *    1900-9999, time, zone) is accepted exactly when the day exists, at
 *    the instant timegm() gives.
 */
#include <time.h>

#include "bridge.h"
#include "fuzz.h"

static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static void
check_utc(time_t t)
{
	struct tm	 tm;
	char		 lib[64], ours[27];

	/* Beyond year 9999 "yyyy" has no room: the bridge formats a date
	 * in its own zone only, where the year is 1900-9999. */
	if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999)
		return;
	snprintf(lib, sizeof lib, "%02d-%s-%04d %02d:%02d:%02d +0000",
	    tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	date_imap(t, 0, ours, sizeof ours);
	FUZZ_CHECK(strcmp(lib, ours) == 0, "date_imap(%lld, 0) = \"%s\", "
	    "gmtime_r says \"%s\"", (long long)t, ours, lib);
}

static void
round_trip(time_t t, int tz, const char *src, size_t srclen)
{
	char	 imap[27], again[27], small[9];
	time_t	 t2 = 0;
	int	 tz2 = 0;

	FUZZ_CHECK(tz >= -5999 && tz <= 5999, "zone %+d minutes", tz);
	date_imap(t, tz, imap, sizeof imap);
	if (strlen(imap) != 26 || imap[2] != '-' || imap[6] != '-' ||
	    imap[11] != ' ' || imap[20] != ' ') {
		fuzz_dump("date", src, srclen);
		FUZZ_CHECK(0, "date_imap gave \"%s\"", imap);
	}
	if (!date_parse(imap, 26, &t2, &tz2) || t2 != t || tz2 != tz) {
		fuzz_dump("date", src, srclen);
		FUZZ_CHECK(0, "\"%s\" (%lld %+d) parses back to %lld %+d",
		    imap, (long long)t, tz, (long long)t2, tz2);
	}
	date_imap(t2, tz2, again, sizeof again);
	FUZZ_CHECK(strcmp(imap, again) == 0, "\"%s\" formats again as "
	    "\"%s\"", imap, again);
	/* A short buffer is cut, not overrun. */
	date_imap(t, tz, small, sizeof small);
	FUZZ_CHECK(strlen(small) == sizeof small - 1, "short buffer");
	check_utc(t);
}

static bool
leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* A well-formed date from 8 input bytes, checked against timegm(). */
static void
built_date(const uint8_t *b)
{
	static const int dim[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30,
		31 };
	int	 year = 1900 + (b[0] | b[1] << 8) % 8100, m = b[2] % 12;
	int	 day = 1 + b[3] % 31, hour = b[4] % 24, min = b[5] % 60;
	int	 sec = b[6] % 61, zh = b[7] % 100, zm = (b[7] * 7 + b[6]) % 60;
	int	 tz = (b[2] & 0x80 ? -1 : 1) * (zh * 60 + zm), tz2;
	bool	 exists = day <= dim[m] + (m == 1 && leap(year));
	char	 s[64];
	struct tm tm;
	time_t	 want, t;
	bool	 ok;

	snprintf(s, sizeof s, "Mon, %d %s %04d %02d:%02d:%02d %c%02d%02d", day,
	    mon[m], year, hour, min, sec, tz < 0 ? '-' : '+', zh, zm);
	ok = date_parse(s, strlen(s), &t, &tz2);
	FUZZ_CHECK(ok == exists, "\"%s\": %s", s, ok ? "accepted" :
	    "refused");
	if (!ok)
		return;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = year - 1900;
	tm.tm_mon = m;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec == 60 ? 59 : sec;	/* IMAP has no leap second */
	want = timegm(&tm) - tz * 60;
	FUZZ_CHECK(t == want && tz2 == (tz == 0 ? 0 : tz), "\"%s\": %lld %+d, "
	    "timegm says %lld %+d", s, (long long)t, tz2, (long long)want, tz);
	round_trip(t, tz2, s, strlen(s));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char	*s = fuzz_dup(data, len);
	time_t	 t;
	int	 tz;

	if (date_parse(s, len, &t, &tz))
		round_trip(t, tz, s, len);
	free(s);
	if (len >= 8)
		built_date(data);
	return 0;
}
