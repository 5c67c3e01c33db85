// link: bridge/throttle.c
// max_len: 4096
/*
 * throttle.c: does a server's refusal mean "slow down", and how long does
 * it ask us to wait?  The words are the server's (a BYE, a NO, an -ERR),
 * read by the batch and by the login code.  Input: byte 0 (below), then
 * text.
 *
 * On the text as it is (a C string of exactly its size): throttle_login
 * is RES_TEMP or RES_AUTH, and RES_TEMP whenever an RFC 2449 / 3206 /
 * 5530 "not now" code is in it; a hint is 1 .. THROTTLE_HINT_MAX
 * seconds; throttle_is holds for the text inside any other text (byte 0
 * says where it is cut into prefix and rest: prefix + text + rest).
 *
 * A hint built from the input must be read exactly: "NO [LIMIT] " then a
 * lead phrase ("try again in", "retry-after:", "wait" ... byte 0's low
 * bits), 0-4 fillers ("about", "at least" ...; more than three end the
 * search), a number of 1-11 digits with or without a fraction, and a unit
 * or none, from the text's first bytes.  The expected seconds are
 * computed here: the number times the unit, a fraction rounding up, more
 * than nine digits or more than a day ignored, cut to 1 .. 900.
 *
 * As fields (throttle_read): throttled exactly when there is a hint or
 * words of throttling, retry_after the hint or 0.  A "slow down" noted
 * with the text as its sentence is what a report takes from any text
 * holding it (prefix + text + rest), and from nothing else once taken.
 */
#include "bridge.h"
#include "fuzz.h"

static const char *const leads[] = { "try again in", "try again after",
	"again in", "again after", "retry in", "retry after", "retry-after:",
	"back in", "wait" };
static const char *const fillers[] = { "about", "at least", "another",
	"for", "approximately" };
static const struct {
	const char	*word;
	long		 mult;
} units[] = {
	{ "seconds", 1 }, { "second", 1 }, { "secs", 1 }, { "sec", 1 },
	{ "s", 1 }, { "minutes", 60 }, { "minute", 60 }, { "mins", 60 },
	{ "min", 60 }, { "m", 60 }, { "hours", 3600 }, { "hour", 3600 },
	{ "hrs", 3600 }, { "hr", 3600 }, { "h", 3600 }, { "", 1 },
	{ ".", 1 }, { ", please", 1 }, { "messages", 0 }, { "Sekunden", 0 },
};

static void
check_text(const char *s)
{
	static const char *const temp[] = { "[LOGIN-DELAY]", "[IN-USE]",
		"[SYS/TEMP]", "[UNAVAILABLE]", "[LIMIT]", "[INUSE]" };
	enum result	 r = throttle_login(s);
	struct throttle	 t;
	long		 v = -1;
	size_t		 i;

	FUZZ_CHECK(r == RES_TEMP || r == RES_AUTH, "throttle_login %d", (int)r);
	for (i = 0; i < sizeof temp / sizeof temp[0]; i++)
		if (strcasestr(s, temp[i]) != NULL)
			FUZZ_CHECK(r == RES_TEMP, "%s: not temporary", temp[i]);
	if (throttle_hint(s, &v))
		FUZZ_CHECK(v >= 1 && v <= THROTTLE_HINT_MAX, "hint %ld", v);
	else
		FUZZ_CHECK(v == -1, "no hint, yet %ld", v);
	throttle_read(s, true, &t);
	FUZZ_CHECK(t.imap && t.retry_after == (v == -1 ? 0 : v) &&
	    t.throttled == (v != -1 || throttle_is(s)), "read: %d %ld vs %ld",
	    t.throttled, t.retry_after, v);
}

/* "NO [LIMIT] <lead> <fillers> <number> <unit>" from the input. */
static void
check_built(unsigned ctl, const uint8_t *data, size_t len)
{
	char		 text[512], num[32];
	const char	*lead = leads[ctl % (sizeof leads / sizeof leads[0])];
	size_t		 nf, digits, i, u, o, f0;
	bool		 frac = false, fracnz = false, want;
	long		 v = 0, got = -1, expect = 0;
	uint64_t	 n = 0;

	if (len < 4)
		return;
	nf = data[0] % 5;
	f0 = data[0] / 5;
	digits = 1 + data[1] % 11;
	u = data[2] % (sizeof units / sizeof units[0]);
	frac = data[3] & 1;
	data += 4;
	len -= 4;
	o = (size_t)snprintf(text, sizeof text, "NO [LIMIT] %s", lead);
	for (i = 0; i < nf; i++)
		o += (size_t)snprintf(text + o, sizeof text - o, " %s",
		    fillers[(f0 + i) % 5]);
	for (i = 0; i < digits; i++) {
		num[i] = (char)('0' + (i < len ? data[i] : i) % 10);
		n = n * 10 + (uint64_t)(num[i] - '0');
	}
	num[digits] = '\0';
	o += (size_t)snprintf(text + o, sizeof text - o, " %s", num);
	if (frac) {
		char f = (char)('0' + (len > 12 ? data[12] : 5) % 10);

		fracnz = f != '0';
		o += (size_t)snprintf(text + o, sizeof text - o, ".%c", f);
	}
	snprintf(text + o, sizeof text - o, "%s%s", units[u].word[0] != '\0' &&
	    units[u].word[0] != '.' && units[u].word[0] != ',' ? " " : "",
	    units[u].word);

	/* What a careful reader makes of it. */
	want = nf <= 3 && units[u].mult != 0 && digits <= 9;
	if (want) {
		v = (long)n + fracnz;
		if (v > THROTTLE_HINT_ABSURD / units[u].mult)
			want = false;
		else {
			expect = v * units[u].mult;
			if (expect < 1)
				expect = 1;
			if (expect > THROTTLE_HINT_MAX)
				expect = THROTTLE_HINT_MAX;
		}
	}
	FUZZ_CHECK(throttle_hint(text, &got) == want && (!want || got ==
	    expect), "\"%s\": hint %ld, expected %s %ld", text, got,
	    want ? "" : "none", expect);
	FUZZ_CHECK(throttle_is(text), "\"%s\" is no throttling", text);
	FUZZ_CHECK(throttle_login(text) == RES_TEMP, "\"%s\" not temporary",
	    text);
}

/* A "slow down" noted with sentence s: taken from whole (which holds s),
 * never twice. */
static void
check_notes(char *s, const char *whole)
{
	struct throttle	 t, got;

	throttle_read(s, false, &t);
	throttle_note(&t, &s);
	FUZZ_CHECK(throttle_take(whole, &got) == (t.throttled && s[0] != '\0'),
	    "\"%s\": noted %d, taken %d", s, t.throttled, got.throttled);
	FUZZ_CHECK(!got.throttled || got.retry_after == t.retry_after,
	    "taken %ld, noted %ld", got.retry_after, t.retry_after);
	FUZZ_CHECK(!throttle_take(whole, &got), "taken twice");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char	*s, *pre, *whole;
	size_t	 cut;
	unsigned ctl;
	long	 v;

	if (len == 0)
		return 0;
	ctl = data[0];
	data++;
	len--;
	s = fuzz_str(data, len);
	check_text(s);
	FUZZ_CHECK(!throttle_hint(NULL, &v), "a hint in NULL");

	/* Words of throttling stay so inside other words. */
	cut = strlen(s) > 0 ? ctl % (strlen(s) + 1) : 0;
	pre = fuzz_str(s, cut);
	whole = malloc(strlen(s) * 2 + 1);
	sprintf(whole, "%s%s%s", pre, s, s + cut);
	if (throttle_is(s))
		FUZZ_CHECK(throttle_is(whole), "\"%s\" in \"%s\"", s, whole);
	check_text(whole);
	check_notes(s, whole);
	free(whole);
	free(pre);
	free(s);

	check_built(ctl, data, len);
	return 0;
}
