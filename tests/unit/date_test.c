// link: bridge/date.c
/*
 * bridge/date.c: date_parse on RFC 5322 dates (and what real mail sends),
 * date_imap formatting, and date_parse(date_imap(t, tz)) == (t, tz).
 * Expected instants come from glibc's timegm, not from date.c's own
 * calendar arithmetic.
 */
#include <time.h>

#include "bridge.h"
#include "unit.h"

struct pcase {
	const char	*in;
	bool		 ok;
	int		 y, mon, d, h, min, s;	/* local wall clock */
	int		 tz;			/* minutes east of UTC */
};

#define BAD(s)	{ s, false, 0, 0, 0, 0, 0, 0, 0 }

static const struct pcase parse_cases[] = {
	/* The RFC 5322 form and its optional parts. */
	{ "Wed, 25 Nov 2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	{ "25 Nov 2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30, 60 },
	{ "Wed 25 Nov 2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	{ "Wed,25 Nov 2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	{ "Wed, 25 Nov 2026 10:20 +0100", true, 2026, 11, 25, 10, 20, 0,
	    60 },
	{ "wed, 25 nov 2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	{ "Wed, 5 Nov 2026 01:02:03 -0000", true, 2026, 11, 5, 1, 2, 3, 0 },
	{ "Wed, 05 Nov 2026 01:02:03 +0000", true, 2026, 11, 5, 1, 2, 3, 0 },
	{ "  Wed, 25 Nov 2026 10:20:30 +0100  ", true, 2026, 11, 25, 10, 20,
	    30, 60 },
	{ "Wed, 25 Nov 2026 10:20:30 +0100\r\n", true, 2026, 11, 25, 10, 20,
	    30, 60 },
	{ "Wed, 25 Nov 2026\r\n 10:20:30 +0100", true, 2026, 11, 25, 10, 20,
	    30, 60 },
	{ "Wed, 25 Nov 2026 10:20:30+0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	/* Comments, anywhere, nested, with quoted parentheses. */
	{ "Wed, 25 Nov 2026 10:20:30 +0100 (CET)", true, 2026, 11, 25, 10,
	    20, 30, 60 },
	{ "Wed, 25 Nov 2026 10:20:30 (CET)", true, 2026, 11, 25, 10, 20, 30,
	    0 },
	{ "(x) Wed, (y) 25 (z) Nov (a) 2026 (b) 10:20:30 (c) +0100 (d)", true,
	    2026, 11, 25, 10, 20, 30, 60 },
	{ "Wed, 25 Nov 2026 10:20:30 +0100 (a (nested) \\) comment)", true,
	    2026, 11, 25, 10, 20, 30, 60 },
	/* Numeric zones. */
	{ "1 Jan 2024 00:00:00 -0800", true, 2024, 1, 1, 0, 0, 0, -480 },
	{ "1 Jan 2024 00:00:00 +0530", true, 2024, 1, 1, 0, 0, 0, 330 },
	{ "1 Jan 2024 00:00:00 -0930", true, 2024, 1, 1, 0, 0, 0, -570 },
	{ "1 Jan 2024 00:00:00 +1400", true, 2024, 1, 1, 0, 0, 0, 840 },
	{ "1 Jan 2024 00:00:00 -1200", true, 2024, 1, 1, 0, 0, 0, -720 },
	{ "1 Jan 2024 00:00:00 +2359", true, 2024, 1, 1, 0, 0, 0, 1439 },
	{ "1 Jan 2024 00:00:00 -0001", true, 2024, 1, 1, 0, 0, 0, -1 },
	{ "1 Jan 2024 00:00:00", true, 2024, 1, 1, 0, 0, 0, 0 },
	/* Obsolete zone names (RFC 5322 4.3); unknown ones are -0000. */
	{ "1 Jan 2024 12:00:00 GMT", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 UT", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 UTC", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 Z", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 EST", true, 2024, 1, 1, 12, 0, 0, -300 },
	{ "1 Jan 2024 12:00:00 EDT", true, 2024, 1, 1, 12, 0, 0, -240 },
	{ "1 Jan 2024 12:00:00 CST", true, 2024, 1, 1, 12, 0, 0, -360 },
	{ "1 Jan 2024 12:00:00 CDT", true, 2024, 1, 1, 12, 0, 0, -300 },
	{ "1 Jan 2024 12:00:00 MST", true, 2024, 1, 1, 12, 0, 0, -420 },
	{ "1 Jan 2024 12:00:00 MDT", true, 2024, 1, 1, 12, 0, 0, -360 },
	{ "1 Jan 2024 12:00:00 PST", true, 2024, 1, 1, 12, 0, 0, -480 },
	{ "1 Jan 2024 12:00:00 PDT", true, 2024, 1, 1, 12, 0, 0, -420 },
	{ "1 Jan 2024 12:00:00 pdt", true, 2024, 1, 1, 12, 0, 0, -420 },
	{ "1 Jan 2024 12:00:00 CET", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 A", true, 2024, 1, 1, 12, 0, 0, 0 },
	{ "1 Jan 2024 12:00:00 XYZ", true, 2024, 1, 1, 12, 0, 0, 0 },
	/* Two- and three-digit years (RFC 5322 4.3). */
	{ "1 Jan 24 00:00:00 +0000", true, 2024, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 00 00:00:00 +0000", true, 2000, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 49 00:00:00 +0000", true, 2049, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 50 00:00:00 +0000", true, 1950, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 99 00:00:00 +0000", true, 1999, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 124 00:00:00 +0000", true, 2024, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 100 00:00:00 +0000", true, 2000, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 070 00:00:00 +0000", true, 1970, 1, 1, 0, 0, 0, 0 },
	/* Dashed, as some software writes it. */
	{ "25-Nov-2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30, 60 },
	{ "Wed, 25-Nov-2026 10:20:30 +0100", true, 2026, 11, 25, 10, 20, 30,
	    60 },
	/* Calendar edges. */
	{ "Thu, 29 Feb 2024 12:00:00 +0000", true, 2024, 2, 29, 12, 0, 0, 0 },
	{ "Tue, 29 Feb 2000 12:00:00 +0000", true, 2000, 2, 29, 12, 0, 0, 0 },
	{ "31 Dec 1999 23:59:59 +0000", true, 1999, 12, 31, 23, 59, 59, 0 },
	{ "1 Jan 1970 00:00:00 +0000", true, 1970, 1, 1, 0, 0, 0, 0 },
	{ "1 Jan 1970 00:00:00 +0100", true, 1970, 1, 1, 0, 0, 0, 60 },
	{ "31 Dec 1969 23:59:59 +0000", true, 1969, 12, 31, 23, 59, 59, 0 },
	{ "1 Jan 1900 00:00:00 +0000", true, 1900, 1, 1, 0, 0, 0, 0 },
	{ "31 Dec 9999 23:59:59 +0000", true, 9999, 12, 31, 23, 59, 59, 0 },
	{ "30 Apr 2024 23:59:59 +0000", true, 2024, 4, 30, 23, 59, 59, 0 },
	{ "31 Dec 2024 00:00:00 +0000", true, 2024, 12, 31, 0, 0, 0, 0 },
	/* A leap second has no IMAP form: 23:59:59. */
	{ "Thu, 30 Jun 2016 23:59:60 +0000", true, 2016, 6, 30, 23, 59, 59,
	    0 },

	/* Invalid. */
	BAD(""),
	BAD("   "),
	BAD("(only a comment)"),
	BAD("garbage"),
	BAD("Wed,"),
	BAD("Wed, "),
	BAD("Foo, 1 Jan 2024 10:00:00 +0000"),
	BAD("0 Jan 2024 10:00:00 +0000"),
	BAD("32 Jan 2024 10:00:00 +0000"),
	BAD("123 Jan 2024 10:00:00 +0000"),
	BAD("30 Feb 2024 10:00:00 +0000"),
	BAD("29 Feb 2023 10:00:00 +0000"),
	BAD("29 Feb 1900 10:00:00 +0000"),
	BAD("31 Apr 2024 10:00:00 +0000"),
	BAD("31 Nov 2024 10:00:00 +0000"),
	BAD("1 Foo 2024 10:00:00 +0000"),
	BAD("1 2024 10:00:00 +0000"),
	BAD("1 Jan 1899 10:00:00 +0000"),
	BAD("1 Jan 10000 10:00:00 +0000"),
	BAD("1 Jan 5 10:00:00 +0000"),
	BAD("1 Jan 2024 24:00:00 +0000"),
	BAD("1 Jan 2024 23:60:00 +0000"),
	BAD("1 Jan 2024 23:59:61 +0000"),
	BAD("1 Jan 2024 100:00:00 +0000"),
	BAD("1 Jan 2024 10:000:00 +0000"),
	BAD("1 Jan 2024 10:00:00 +0060"),
	BAD("1 Jan 2024 10:00:00 -0099"),
	BAD("1 Jan 2024 10:00:00 +100"),
	BAD("1 Jan 2024 10:00:00 +01000"),
	BAD("1 Jan 2024 10:00:00 +"),
	BAD("1 Jan 2024 10:00:00 -"),
	BAD("1 Jan 2024 10:00:00 +abcd"),
	BAD("1 Jan 2024 10:00:00 + 0100"),
	BAD("1 Jan 2024"),
	BAD("1 Jan 2024 10"),
	BAD("1 Jan 2024 10:"),
	BAD("1 Jan 2024 10:00:"),
	BAD("1 Jan 2024 10.00.00"),
	BAD("Jan 1 2024 10:00:00 +0000"),
	BAD("Mon Jan  1 10:00:00 2024"),
	BAD("2024-01-01T10:00:00Z"),
	BAD("2024-01-01 10:00:00"),
};

static void
test_parse(const void *arg)
{
	const struct pcase *c;
	struct tm	 tm;
	size_t		 i, len;
	time_t		 t, want;
	int		 tz;
	bool		 ok;
	char		*copy;

	(void)arg;
	for (i = 0; i < NELEM(parse_cases); i++) {
		c = &parse_cases[i];
		len = strlen(c->in);
		/* Not NUL-terminated: the parser must stop at len. */
		copy = xmalloc(len + 1);
		memcpy(copy, c->in, len);
		t = 0;
		tz = 99999;
		ok = date_parse(copy, len, &t, &tz);
		free(copy);
		CHECK(ok == c->ok, "date_parse(\"%s\") returned %s", c->in,
		    ok ? "true" : "false");
		if (!ok || !c->ok)
			continue;
		memset(&tm, 0, sizeof tm);
		tm.tm_year = c->y - 1900;
		tm.tm_mon = c->mon - 1;
		tm.tm_mday = c->d;
		tm.tm_hour = c->h;
		tm.tm_min = c->min;
		tm.tm_sec = c->s;
		want = timegm(&tm) - (time_t)c->tz * 60;
		CHECK(t == want && tz == c->tz, "date_parse(\"%s\") = %lld %d, "
		    "want %lld %d", c->in, (long long)t, tz, (long long)want,
		    c->tz);
	}
}

/* The parser reads only len bytes: a date cut short is not complete. */
static void
test_parse_len(const void *arg)
{
	const char	*full = "Wed, 25 Nov 2026 10:20:30 +0100";
	time_t		 t;
	int		 tz;

	(void)arg;
	CHECK(!date_parse(full, 16, &t, &tz), "date_parse of \"%.16s\" "
	    "(no time) succeeded", full);
	CHECK(date_parse(full, 22, &t, &tz) && tz == 0,
	    "date_parse of \"%.22s\" (no zone) failed or tz %d", full, tz);
	CHECK(date_parse(full, 29, &t, &tz) == false,
	    "date_parse of \"%.29s\" (zone cut to 2 digits) succeeded", full);
	CHECK(!date_parse("", 0, &t, &tz), "date_parse of 0 bytes");
}

struct icase {
	long long	 t;
	int		 tz;
	const char	*want;
};

static const struct icase imap_cases[] = {
	{ 0, 0, "01-Jan-1970 00:00:00 +0000" },
	{ 0, 60, "01-Jan-1970 01:00:00 +0100" },
	{ 0, -60, "31-Dec-1969 23:00:00 -0100" },
	{ -1, 0, "31-Dec-1969 23:59:59 +0000" },
	{ -86400, 0, "31-Dec-1969 00:00:00 +0000" },
	{ -86401, 0, "30-Dec-1969 23:59:59 +0000" },
	{ -86399, -1, "30-Dec-1969 23:59:01 -0001" },
	{ 1704099600, 60, "01-Jan-2024 10:00:00 +0100" },
	{ 1704067199, 60, "01-Jan-2024 00:59:59 +0100" },
	{ 1704067200, -1, "31-Dec-2023 23:59:00 -0001" },
	{ 1704067200, -570, "31-Dec-2023 14:30:00 -0930" },
	{ 1704067200, 330, "01-Jan-2024 05:30:00 +0530" },
	{ 1704067200, 840, "01-Jan-2024 14:00:00 +1400" },
	{ 1704067200, -720, "31-Dec-2023 12:00:00 -1200" },
	{ 951782400, 0, "29-Feb-2000 00:00:00 +0000" },
	{ 1709208000, 0, "29-Feb-2024 12:00:00 +0000" },
	{ 1764066030, 60, "25-Nov-2025 11:20:30 +0100" },
	{ -2208988800LL, 0, "01-Jan-1900 00:00:00 +0000" },
	{ -2203891200LL, 0, "01-Mar-1900 00:00:00 +0000" },
	{ 253402300799LL, 0, "31-Dec-9999 23:59:59 +0000" },
	{ 4107542400LL, 0, "01-Mar-2100 00:00:00 +0000" },
	{ 4107542399LL, 0, "28-Feb-2100 23:59:59 +0000" },
};

static void
test_imap(const void *arg)
{
	size_t	 i;
	char	*buf;

	(void)arg;
	for (i = 0; i < NELEM(imap_cases); i++) {
		/* Exactly the 27 bytes the header promises are enough. */
		buf = xmalloc(27);
		date_imap((time_t)imap_cases[i].t, imap_cases[i].tz, buf, 27);
		CHECK_STR(buf, imap_cases[i].want, "date_imap");
		free(buf);
	}
}

static void
roundtrip_one(long long t, int tz, unsigned long *bad, char *first,
    size_t firstsz)
{
	char	 buf[64];
	time_t	 t2 = 0;
	int	 tz2 = 0;

	date_imap((time_t)t, tz, buf, sizeof buf);
	if (strlen(buf) != 26 || !date_parse(buf, strlen(buf), &t2, &tz2) ||
	    (long long)t2 != t || tz2 != tz) {
		if ((*bad)++ == 0)
			snprintf(first, firstsz, "t=%lld tz=%d -> \"%s\" -> "
			    "t=%lld tz=%d", t, tz, buf, (long long)t2, tz2);
	}
}

static void
test_roundtrip(const void *arg)
{
	static const int zones[] = { 0, 1, -1, 59, -59, 60, -60, 90, -90,
		330, 345, -570, 525, 720, -720, 780, 840, -600, 1439, -1439 };
	/* 1900-01-02 and 9999-12-30, so the local date stays in range. */
	const long long lo = -2208902400LL, hi = 253402128000LL;
	unsigned long long seed = 42;
	unsigned long	 bad = 0, n = 0;
	char		 first[256] = "";
	long long	 t;
	size_t		 z;
	int		 i;

	(void)arg;
	for (i = 0; i < 200000; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		t = lo + (long long)((seed >> 11) % (unsigned long long)(hi -
		    lo));
		roundtrip_one(t, zones[(seed >> 3) % NELEM(zones)], &bad, first,
		    sizeof first);
		n++;
	}
	/* Around 1970, 29 Feb 2000 and 28 Feb 2100 (no leap day). */
	for (t = -3 * 86400; t <= 3 * 86400; t += 1799)
		for (z = 0; z < NELEM(zones); z++, n++)
			roundtrip_one(t, zones[z], &bad, first, sizeof first);
	for (t = 951696000LL; t < 951955200LL; t += 3600)	/* 28 Feb 2000 on */
		for (z = 0; z < NELEM(zones); z++, n++)
			roundtrip_one(t, zones[z], &bad, first, sizeof first);
	for (t = 4107456000LL; t < 4107456000LL + 2 * 86400; t += 61)
		for (z = 0; z < NELEM(zones); z++, n++)
			roundtrip_one(t, zones[z], &bad, first, sizeof first);
	CHECK(bad == 0, "round trip: %lu of %lu wrong, first: %s", bad, n,
	    first);
}

int
main(void)
{
	UNIT_ISOLATED("date_parse", test_parse, NULL);
	UNIT_ISOLATED("date_parse length", test_parse_len, NULL);
	UNIT_ISOLATED("date_imap", test_imap, NULL);
	UNIT_ISOLATED("date round trip", test_roundtrip, NULL);
	return UNIT_END();
}
