// link: bridge/gmail_quota.c bridge/config_gmail.c bridge/config_proxy.c bridge/config_url.c
// pkg: libconfig
/*
 * The Gmail destination's pure parts: when Google's daily quota starts
 * again (expected instants from Python's zoneinfo, America/Los_Angeles,
 * across both daylight saving changes), the "gmail-api:" URL, label
 * names, and the labels a message gets from its mailbox and options.
 */
#include "bridge.h"
#include "config_gmail.h"
#include "unit.h"

/* config_gmail_load's error path is not tested here: a stand-in. */
enum result
cfail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	(void)ld;
	(void)s;
	(void)fmt;
	return RES_CONFIG;
}

static const struct { long long t, want; } resets[] = {
	{ 1705320000, 1705392000 },	/* Jan 15 04:00 PST -> Jan 16 */
	{ 1719817199, 1719817200 },	/* Jun 30 23:59:59 PDT -> Jul 1 */
	{ 1719817200, 1719903600 },	/* Jul 1 00:00 PDT -> Jul 2 */
	{ 1709985600, 1710057600 },	/* Mar 9 (PST) -> Mar 10 00:00 PST */
	{ 1710072000, 1710140400 },	/* Mar 10 (PDT) -> Mar 11 00:00 PDT */
	{ 1730548800, 1730617200 },	/* Nov 2 (PDT) -> Nov 3 00:00 PDT */
	{ 1730635200, 1730707200 },	/* Nov 3 (PST) -> Nov 4 00:00 PST */
	{ 1704065400, 1704096000 },	/* Dec 31 UTC, Dec 31 PST -> Jan 1 */
};

static const struct { const char *url, *base; bool ok; } urls[] = {
	{ "gmail-api:", NULL, true },
	{ "GMAIL-API:", NULL, true },
	{ "gmail-api:https://127.0.0.1:8443", "https://127.0.0.1:8443", true },
	{ "gmail-api:https://gmail.googleapis.com", "https://gmail.googleapis.com",
	  true },
	{ "gmail-api:http://127.0.0.1:80", NULL, false },	/* no TLS */
	{ "gmail-api:https://h/path", NULL, false },
	{ "gmail-api:https://user@h", NULL, false },
	{ "gmail-api:https://", NULL, false },
	{ "imaps://imap.gmail.com", NULL, false },
};

static const struct { const char *name; bool ok; } names[] = {
	{ "INBOX", true }, { "From GMX", true }, { "Lists/linux", true },
	{ "A/B/C", true }, { "Gr\xc3\xbc\xc3\x9f" "e", true },
	{ "", false }, { "/A", false }, { "A/", false }, { "A//B", false },
	{ " A", false }, { "A ", false }, { "a\tb", false }, { "a\nb", false },
	{ "\xc3(", false }, { "\xed\xa0\x80", false },	/* bad UTF-8 */
	{ "SENT", false }, { "draft", false },
};

int
main(void)
{
	struct gmail_dest gd;
	const char	*out[8], *why;
	char		*base, *labels[] = { "Family", "Lists/linux" };
	size_t		 i, n;

	(void)unit_isolated;
	for (i = 0; i < sizeof resets / sizeof resets[0]; i++)
		CHECK(gmail_quota_reset((time_t)resets[i].t) ==
		    (time_t)resets[i].want, "reset after %lld: %lld, want %lld",
		    resets[i].t, (long long)gmail_quota_reset(resets[i].t),
		    resets[i].want);

	for (i = 0; i < sizeof urls / sizeof urls[0]; i++) {
		why = config_gmail_url(urls[i].url, &base);
		CHECK((why == NULL) == urls[i].ok, "%s: %s", urls[i].url,
		    why != NULL ? why : "accepted");
		if (why == NULL)
			CHECK_STR(base, urls[i].base, urls[i].url);
		free(base);
	}

	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		why = config_gmail_label_check(names[i].name);
		CHECK((why == NULL) == names[i].ok, "label %zu \"%s\": %s", i,
		    names[i].name, why != NULL ? why : "accepted");
	}

	/* Labels of a message: INBOX if inbox, the mailbox unless INBOX,
	 * the configured ones, each once. */
	memset(&gd, 0, sizeof gd);
	gd.labels = labels;
	gd.nlabels = 2;
	gd.inbox = true;
	n = config_gmail_label_names(&gd, "INBOX", out, 8);
	CHECK(n == 3 && strcmp(out[0], "INBOX") == 0 &&
	    strcmp(out[1], "Family") == 0, "inbox: %zu", n);
	n = config_gmail_label_names(&gd, "lists/linux", out, 8);
	CHECK(n == 3 && strcmp(out[1], "lists/linux") == 0 &&
	    strcmp(out[2], "Family") == 0, "a label twice, other case: %zu", n);
	gd.inbox = false;
	n = config_gmail_label_names(&gd, "INBOX", out, 8);
	CHECK(n == 2 && strcmp(out[0], "Family") == 0, "skip the inbox: %zu",
	    n);
	n = config_gmail_label_names(&gd, "Work", out, 2);
	CHECK(n == 2, "at most max: %zu", n);

	CHECK_STR(gmail_status_name(GMAIL_DAILY_LIMIT), "daily-limit", "name");
	return UNIT_END();
}
