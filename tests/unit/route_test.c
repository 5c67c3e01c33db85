// link: bridge/route.c bridge/route_text.c bridge/codec.c bridge/config_route.c bridge/config.c bridge/account_valid.c bridge/config_keys.c bridge/config_endpoint.c bridge/config_gmail.c bridge/config_url.c bridge/config_proxy.c bridge/config_secfile.c bridge/config_read.c bridge/config_secret.c bridge/config_listen.c bridge/ident.c bridge/imap_parse.c
// pkg: libconfig
/*
 * bridge/route.c and bridge/config_route.c (issue 16): real config text
 * through config_load, then route_decide on real header bytes.  Rules
 * (spam flags, a glob, a List-Id regex, case, RFC 2047 subjects, sizes,
 * first match, keep, "deliver", recipients), multidrop (three people and
 * an unknown address, two recipients in one Envelope-To, a forwarded
 * message's older Delivered-To, a catch-all's own Delivered-To, To/Cc
 * only when asked, a rule without "to", one copy per place), the targets
 * worked out at load, headers that are broken on purpose, the routing
 * examples of bridge.conf.sample, and every config error with its line.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>

#include "bridge.h"
#include "route.h"
#define TESTLIB_CONFIG
#include "testlib.h"

/* The line of text on which needle first stands. */
static int
line_of(const char *text, const char *needle)
{
	const char	*at = strstr(text, needle), *p;
	int		 line = 1;

	if (at == NULL)
		return -1;
	for (p = text; p < at; p++)
		if (*p == '\n')
			line++;
	return line;
}

/* A string literal and its length, NUL bytes in it included. */
#define BYTES(s)	(s), sizeof (s) - 1

#define POP(u)	"pop3 = { url = \"pop3s://pop.example.org\"; user = \"" u \
		"\"; password = \"pw\"; };\n"
#define IMAP	"imap = { url = \"imaps://imap.example.org\"; user = \"me\"; " \
		"password = \"pw2\"; };\n"

/* ---- rules ---- */

static const char rules_conf[] =
	"accounts = (\n"
	" {\n"
	"  name = \"home\";\n"
	"  " POP("home")
	"  " IMAP
	"  destinations = (\n"
	"    { name = \"work\"; url = \"imaps://imap.work.example\"; "
	"user = \"me@work.example\"; password = \"pw3\"; "
	"mailbox = \"Inbox/Work\"; }\n"
	"  );\n"
	"  rules = (\n"
	"    { header = \"X-Spam-Flag\"; is = \"YES\"; mailbox = \"Junk\"; },\n"
	"    { header = \"X-Spam-Status\"; glob = \"Yes*\"; "
	"mailbox = \"Junk\"; flags = [ \"$Junk\" ]; },\n"
	"    { header = \"List-Id\"; "
	"regex = \"<debian-devel\\\\.lists\\\\.debian\\\\.org>\"; "
	"mailbox = \"Lists/debian-devel\"; flags = [ \"$List\" ]; },\n"
	"    { header = \"Subject\"; is = \"Grüße aus Köln\"; "
	"mailbox = \"Family\"; },\n"
	"    { size_over = \"20M\"; action = \"keep\"; },\n"
	"    { recipient_glob = \"*@work.example\"; to = \"work\"; },\n"
	"    { size_under = 100; mailbox = \"Tiny\"; flags = [ ]; },\n"
	"    { header = \"X-Case\"; is = \"Exact\"; case = \"sensitive\"; "
	"mailbox = \"Case\"; },\n"
	"    { header = \"X-Deliver\"; is = \"yes\"; action = \"deliver\"; },\n"
	"    { header = \"X-Deliver\"; glob = \"*\"; mailbox = \"Never\"; },\n"
	"    { header = \"X-Price\"; is = \"5 €\"; mailbox = \"Euro\"; },\n"
	"    { recipient = \"Boss@Example.ORG\"; mailbox = \"Boss\"; "
	"flags = [ \"\\\\Flagged\" ]; }\n"
	"  );\n"
	" }\n"
	");\n";

/* The picks as "dest/mailbox {flags}" joined by " + ", or "keep". */
static const char *
picks(const struct account *ac, const struct route_out *out)
{
	static char	 buf[1024];
	const struct target *t;
	size_t		 i, o = 0;

	if (out->keep)
		return out->n == 0 ? "keep" : "keep with picks";
	buf[0] = '\0';
	for (i = 0; i < out->n && o < sizeof buf; i++) {
		if (out->picks[i].target >= ac->routing->ntargets)
			return "a pick out of range";
		t = &ac->routing->targets[out->picks[i].target];
		o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s/%s%s%s%s",
		    i > 0 ? " + " : "", route_dest_name(ac, t->dest),
		    t->mailbox,
		    out->picks[i].flags != NULL ? " {" : "",
		    out->picks[i].flags != NULL ? out->picks[i].flags : "",
		    out->picks[i].flags != NULL ? "}" : "");
	}
	return buf;
}

/* route_decide on exactly len bytes (an exact-size copy: a read past
 * them is AddressSanitizer's to see); "why" is checked to be clean. */
static void
decide_n(const struct account *ac, const char *hdr, size_t len, uint64_t size,
    struct route_out *out)
{
	char	*copy = xmalloc(len > 0 ? len : 1);
	size_t	 i, wl;

	memcpy(copy, hdr, len);
	route_decide(ac, copy, len, size, out);
	free(copy);
	wl = strnlen(out->why, sizeof out->why);
	CHECK(wl > 0 && wl < sizeof out->why, "why: %zu bytes", wl);
	for (i = 0; i < wl; i++)
		if ((unsigned char)out->why[i] < 0x20 ||
		    (unsigned char)out->why[i] >= 0x7f) {
			CHECK(0, "why holds byte 0x%02x: %s",
			    (unsigned char)out->why[i], unit_sesc(out->why));
			break;
		}
	CHECK(out->keep ? out->n == 0 : out->n >= 1 && out->n <=
	    ROUTE_PICKS_MAX, "keep %d with %zu picks", out->keep, out->n);
}

static void
decide(const struct account *ac, const char *hdr, uint64_t size,
    struct route_out *out)
{
	decide_n(ac, hdr, strlen(hdr), size, out);
}

static struct config *
load_text(const char *what, const char *text)
{
	return load_config(what, "route.conf", text, 0600);
}

struct rcase {
	const char	*name;
	const char	*hdr;
	uint64_t	 size;
	const char	*want;		/* picks() */
	int		 rule;		/* from 1; 0: none */
	const char	*why;		/* a part of it, "": not checked */
};

static const struct rcase rule_cases[] = {
	{ "spam flag", "From: a@b.example\r\nX-Spam-Flag: YES\r\n"
	    "Subject: hi\r\n\r\n", 5000, "imap/Junk", 1,
	    "X-Spam-Flag is \"YES\"" },
	{ "spam flag: any case, padded", "x-spam-flag:    yes  \r\n\r\n",
	    5000, "imap/Junk", 1, "" },
	{ "spam flag: obsolete space before the colon",
	    "X-Spam-Flag : YES\r\n\r\n", 5000, "imap/Junk", 1, "" },
	{ "spam flag NO", "X-Spam-Flag: NO\r\n\r\n", 5000, "imap/INBOX", 0,
	    "no rule matched" },
	{ "exact means the whole value", "X-Spam-Flag: YES!\r\n\r\n", 5000,
	    "imap/INBOX", 0, "" },
	{ "the second instance of a header counts",
	    "X-Spam-Flag: NO\r\nX-Spam-Flag: YES\r\n\r\n", 5000, "imap/Junk",
	    1, "" },
	{ "spam status glob, folded",
	    "X-Spam-Status: Yes, score=7.1 required=5.0\r\n"
	    "\ttests=BAYES_99,HTML_MESSAGE autolearn=spam\r\n\r\n", 5000,
	    "imap/Junk {$Junk}", 2, "X-Spam-Status glob \"Yes*\"" },
	{ "spam status No", "X-Spam-Status: No, score=0.1\r\n\r\n", 5000,
	    "imap/INBOX", 0, "" },
	{ "list id regex",
	    "List-Id: Debian Development <debian-devel.lists.debian.org>\r\n"
	    "\r\n", 5000, "imap/Lists/debian-devel {$List}", 3,
	    "List-Id regex" },
	{ "list id regex: the dot is a dot",
	    "List-Id: <debian-develXlists.debian.org>\r\n\r\n", 5000,
	    "imap/INBOX", 0, "" },
	{ "list id regex ignores case",
	    "LIST-ID: <Debian-Devel.Lists.Debian.Org>\r\n\r\n", 5000,
	    "imap/Lists/debian-devel {$List}", 3, "" },
	{ "first match wins",
	    "List-Id: <debian-devel.lists.debian.org>\r\nX-Spam-Flag: YES\r\n"
	    "\r\n", 5000, "imap/Junk", 1, "rule 1 (line 10)" },
	{ "subject in ISO-8859-1 Q",
	    "Subject: =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n\r\n", 5000,
	    "imap/Family", 4, "" },
	{ "subject in UTF-8 B, two words, folded",
	    "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"
	    " =?utf-8?q?_aus_K=C3=B6ln?=\r\n\r\n", 5000, "imap/Family", 4, "" },
	{ "subject in plain UTF-8", "Subject: Grüße aus Köln\r\n\r\n", 5000,
	    "imap/Family", 4, "" },
	{ "subject: a word with a language (RFC 2231)",
	    "Subject: =?iso-8859-1*de?Q?Gr=FC=DFe?= aus =?iso-8859-1?Q?K=F6ln?="
	    "\r\n\r\n", 5000, "imap/Family", 4, "" },
	{ "subject: an unknown charset stays as it is",
	    "Subject: =?koi8-r?Q?Gr=FC=DFe_aus_K=F6ln?=\r\n\r\n", 5000,
	    "imap/INBOX", 0, "" },
	{ "windows-1252 euro", "X-Price: =?windows-1252?Q?5_=80?=\r\n\r\n",
	    5000, "imap/Euro", 11, "" },
	{ "iso-8859-15 euro", "X-Price: =?ISO-8859-15?B?NSCk?=\r\n\r\n", 5000,
	    "imap/Euro", 11, "" },
	{ "iso-8859-1 0xa4 is no euro",
	    "X-Price: =?ISO-8859-1?B?NSCk?=\r\n\r\n", 5000, "imap/INBOX", 0,
	    "" },
	{ "size over 20M: keep", "Subject: big\r\n\r\n", 25000000, "keep", 5,
	    "size 25.0 MB over 20.0 MB" },
	{ "exactly 20M is not over", "Subject: big\r\n\r\n", 20000000,
	    "imap/INBOX", 0, "" },
	{ "spam before size", "X-Spam-Flag: YES\r\n\r\n", 25000000,
	    "imap/Junk", 1, "" },
	{ "recipient glob to another destination",
	    "To: Me <me@work.example>\r\n\r\n", 5000, "work/Inbox/Work", 6,
	    "recipient me@work.example glob \"*@work.example\"" },
	{ "recipient in Cc, a group, comments, quotes, case",
	    "To: x@y.example\r\nCc: team: a@x.example, (the boss) "
	    "\"Me, really\" <ME@Work.Example>;\r\n\r\n", 5000,
	    "work/Inbox/Work", 6, "" },
	{ "recipient in the envelope",
	    "Delivered-To: me@work.example\r\nTo: list@lists.example\r\n\r\n",
	    5000, "work/Inbox/Work", 6, "" },
	{ "a display name is no address",
	    "To: \"me@work.example\" <me@home.example>\r\n\r\n", 5000,
	    "imap/INBOX", 0, "" },
	{ "size under 100, no flags", "X: y\r\n\r\n", 99, "imap/Tiny {}", 7,
	    "size 99 B under 100 B" },
	{ "case sensitive: no", "X-Case: exact\r\n\r\n", 5000, "imap/INBOX",
	    0, "" },
	{ "case sensitive: yes", "X-Case: Exact\r\n\r\n", 5000, "imap/Case",
	    8, "" },
	{ "deliver: as usual, later rules not tried",
	    "X-Deliver: yes\r\n\r\n", 5000, "imap/INBOX", 9, "rule 9" },
	{ "the rule after it", "X-Deliver: no\r\n\r\n", 5000, "imap/Never",
	    10, "" },
	{ "recipient exact ignores case", "To: boss@example.org\r\n\r\n",
	    5000, "imap/Boss {\\Flagged}", 12, "" },
	{ "no blank line, cut short", "X-Spam-Flag: YES", 5000, "imap/Junk",
	    1, "" },
	{ "the body is not the header", "Subject: x\r\n\r\nX-Spam-Flag: YES"
	    "\r\n", 5000, "imap/INBOX", 0, "" },
	{ "LF line ends", "Subject: x\nX-Spam-Flag: YES\n\n", 5000,
	    "imap/Junk", 1, "" },
	{ "a continuation is part of the value",
	    "X-Spam-Flag: NO\r\n YES\r\n\r\n", 5000, "imap/INBOX", 0, "" },
};

static void
test_rules(const void *arg)
{
	struct config		*cf = load_text("rules", rules_conf);
	const struct account	*ac;
	const struct routing	*rt;
	const struct rcase	*c;
	struct route_out	 out;
	size_t			 i, t;
	int			 line;
	char			*w;

	(void)arg;
	if (cf == NULL)
		return;
	ac = &cf->accounts[0];
	rt = ac->routing;
	CHECK(rt != NULL && rt->ndests == 1 && rt->nrules == 12 &&
	    rt->md == NULL, "routing loaded");
	if (rt == NULL || rt->nrules != 12) {
		config_free(cf);
		return;
	}
	/* The places: INBOX, Junk (twice in the rules, once here),
	 * Lists/debian-devel, Family, work's Inbox/Work, Tiny, Case, Never,
	 * Euro, Boss. */
	CHECK(rt->ntargets == 10, "%zu targets", rt->ntargets);
	CHECK(rt->targets[0].dest == 0 &&
	    strcmp(rt->targets[0].mailbox, "INBOX") == 0, "target 0");
	CHECK(routing_target(rt, 0, "inbox") == 0, "INBOX in any case");
	t = routing_target(rt, 1, "Inbox/Work");
	CHECK(t != ROUTE_NONE && route_endpoint(ac, t) == &rt->dests[0].ep &&
	    strcmp(route_endpoint(ac, t)->user, "me@work.example") == 0,
	    "work's endpoint");
	CHECK(route_endpoint(ac, 0) == &ac->imap, "imap's endpoint");
	CHECK_STR(route_dest_name(ac, 1), "work", "dest name");
	CHECK_STR(route_dest_name(ac, 0), "imap", "dest 0's name");
	CHECK_STR(route_dest_mailbox(ac, 1), "Inbox/Work", "dest mailbox");
	CHECK(rt->rules[1].flags != NULL &&
	    strcmp(rt->rules[1].flags, "$Junk") == 0 &&
	    rt->rules[0].flags == NULL && rt->rules[6].flags != NULL &&
	    rt->rules[6].flags[0] == '\0', "rule flags");
	CHECK(rt->rules[4].test == TEST_SIZE_OVER &&
	    rt->rules[4].size == 20000000 && rt->rules[4].keep, "size rule");
	for (i = 0; i < NELEM(rule_cases); i++) {
		c = &rule_cases[i];
		decide(ac, c->hdr, c->size, &out);
		CHECK_STR(picks(ac, &out), c->want, c->name);
		CHECK(out.rule == c->rule - 1, "%s: rule %d, want %d (%s)",
		    c->name, out.rule + 1, c->rule, out.why);
		if (c->why[0] != '\0')
			CHECK(strstr(out.why, c->why) != NULL, "%s: why %s",
			    c->name, unit_sesc(out.why));
		if (c->rule > 0) {
			line = line_of(rules_conf, "  rules = (") + c->rule;
			w = xprintf("rule %d (line %d): ", c->rule, line);
			CHECK(strncmp(out.why, w, strlen(w)) == 0,
			    "%s: why %s, want %s...", c->name,
			    unit_sesc(out.why), w);
			free(w);
		}
	}
	config_free(cf);
}

/* ---- multidrop ---- */

static const char family_conf[] =
	"accounts = (\n"
	" {\n"
	"  name = \"family\";\n"
	"  " POP("catchall")
	"  " IMAP
	"  keep = false;\n"
	"  destinations = (\n"
	"    { name = \"anna\"; url = \"imaps://imap.example.org\"; "
	"user = \"anna\"; password = \"a\"; },\n"
	"    { name = \"bob\"; url = \"imaps://imap.example.org\"; "
	"user = \"bob\"; password = \"b\"; },\n"
	"    { name = \"carol\"; url = \"imaps://imap.other.example\"; "
	"user = \"carol@other.example\"; password = \"c\"; "
	"mailbox = \"Family\"; }\n"
	"  );\n"
	"  rules = (\n"
	"    { header = \"X-Spam-Flag\"; is = \"YES\"; mailbox = \"Junk\"; },\n"
	"    { header = \"X-Flag-Only\"; is = \"yes\";\n"
	"      flags = [ \"$Seen\" ]; },\n"
	"    { header = \"List-Id\"; glob = \"*<house.family.example>\"; "
	"to = \"imap\"; mailbox = \"House\"; }\n"
	"  );\n"
	"  multidrop = {\n"
	"    map = (\n"
	"      { address = \"anna@family.example\"; to = \"anna\"; },\n"
	"      { address = \"annie@family.example\"; to = \"anna\"; },\n"
	"      { glob = \"bob*@family.example\"; to = \"bob\"; },\n"
	"      { regex = \"^carol(\\\\+.*)?@family\\\\.example$\"; "
	"to = \"carol\"; },\n"
	"      { address = \"shared@family.example\"; to = \"imap\"; "
	"mailbox = \"Shared\"; }\n"
	"    );\n"
	"    default = \"imap\";\n"
	"  };\n"
	" },\n"
	" {\n"
	"  name = \"lists\";\n"
	"  " POP("lists")
	"  " IMAP
	"  multidrop = {\n"
	"    headers = [ \"X-Original-To\" ];\n"
	"    to_cc = true;\n"
	"    map = ( { address = \"anna@family.example\";\n"
	"              mailbox = \"Anna\"; },\n"
	"            { address = \"bob@family.example\";\n"
	"              mailbox = \"Bob\"; } );\n"
	"    default = \"keep\";\n"
	"  };\n"
	" }\n"
	");\n";

static const struct rcase family_cases[] = {
	{ "anna", "Delivered-To: anna@family.example\r\nTo: Anna "
	    "<anna@family.example>\r\n\r\n", 5000, "anna/INBOX", 0,
	    "multidrop: Delivered-To anna@family.example" },
	{ "bob, plus address", "Delivered-To: bob+shop@family.example\r\n\r\n",
	    5000, "bob/INBOX", 0, "" },
	{ "carol, own mailbox", "Delivered-To: CAROL+x@Family.Example\r\n\r\n",
	    5000, "carol/Family", 0, "" },
	{ "shared, the account's imap",
	    "Delivered-To: shared@family.example\r\n\r\n", 5000, "imap/Shared",
	    0, "" },
	{ "unknown: the default",
	    "Delivered-To: dave@family.example\r\nTo: dave@family.example\r\n"
	    "\r\n", 5000, "imap/INBOX", 0,
	    "multidrop: no recipient mapped: default imap" },
	{ "two recipients in one Envelope-To",
	    "Envelope-To: anna@family.example, bob@family.example\r\n\r\n",
	    5000, "anna/INBOX + bob/INBOX", 0,
	    "multidrop: Envelope-To anna@family.example, bob@family.example" },
	{ "two addresses of one person: one copy",
	    "Envelope-To: anna@family.example, annie@family.example\r\n\r\n",
	    5000, "anna/INBOX", 0, "" },
	{ "mapped and unmapped: the mapped",
	    "Envelope-To: dave@family.example, bob@family.example\r\n\r\n",
	    5000, "bob/INBOX", 0, "" },
	{ "forwarded: only the topmost Delivered-To",
	    "Delivered-To: bob@family.example\r\n"
	    "Received: from relay by mx; Thu, 4 Dec 2026 10:00:00 +0000\r\n"
	    "Delivered-To: anna@family.example\r\n\r\n", 5000, "bob/INBOX", 0,
	    "Delivered-To bob@family.example" },
	{ "the catch-all's own Delivered-To: X-Original-To decides",
	    "Delivered-To: family-catchall@isp.example\r\n"
	    "X-Original-To: carol@family.example\r\n\r\n", 5000, "carol/Family",
	    0, "multidrop: X-Original-To carol@family.example" },
	{ "Delivered-To before X-Original-To",
	    "X-Original-To: carol@family.example\r\n"
	    "Delivered-To: anna@family.example\r\n\r\n", 5000, "anna/INBOX", 0,
	    "" },
	{ "X-Envelope-To in angle brackets",
	    "X-Envelope-To: <bob@family.example>\r\n\r\n", 5000, "bob/INBOX",
	    0, "" },
	{ "To and Cc are not read without to_cc",
	    "To: anna@family.example\r\nCc: bob@family.example\r\n\r\n", 5000,
	    "imap/INBOX", 0, "default imap" },
	{ "spam for two: each one's Junk",
	    "X-Spam-Flag: YES\r\nEnvelope-To: anna@family.example,\r\n"
	    " carol@family.example\r\n\r\n", 5000, "anna/Junk + carol/Junk", 1,
	    "X-Spam-Flag is \"YES\"; multidrop: Envelope-To" },
	{ "spam for nobody known: the default's Junk",
	    "X-Spam-Flag: YES\r\nDelivered-To: eve@family.example\r\n\r\n",
	    5000, "imap/Junk", 1, "" },
	{ "spam for shared: its own Junk", "X-Spam-Flag: YES\r\n"
	    "Delivered-To: shared@family.example\r\n\r\n", 5000, "imap/Junk", 1,
	    "" },
	{ "flags only: the multidrop places with the rule's flags",
	    "X-Flag-Only: yes\r\nEnvelope-To: carol@family.example, "
	    "anna@family.example\r\n\r\n", 5000,
	    "carol/Family {$Seen} + anna/INBOX {$Seen}", 2, "" },
	{ "a rule with \"to\" overrides multidrop",
	    "List-Id: House <house.family.example>\r\n"
	    "Delivered-To: anna@family.example\r\n\r\n", 5000, "imap/House", 3,
	    "" },
};

static const struct rcase lists_cases[] = {
	{ "to_cc: To", "To: Anna <anna@family.example>\r\n\r\n", 5000,
	    "imap/Anna", 0, "multidrop: To/Cc anna@family.example" },
	{ "to_cc: To and Cc, every instance",
	    "To: list@lists.example\r\nCc: bob@family.example\r\n"
	    "Cc: anna@family.example\r\n\r\n", 5000, "imap/Bob + imap/Anna",
	    0, "" },
	{ "to_cc: the envelope header first",
	    "X-Original-To: bob@family.example\r\nTo: anna@family.example\r\n"
	    "\r\n", 5000, "imap/Bob", 0, "multidrop: X-Original-To" },
	{ "only the configured headers",
	    "Delivered-To: anna@family.example\r\n\r\n", 5000, "keep", 0,
	    "default keep" },
	{ "nothing mapped: keep", "To: list@lists.example\r\n\r\n", 5000,
	    "keep", 0, "" },
};

static void
run_cases(const struct account *ac, const struct rcase *cases, size_t n)
{
	const struct rcase	*c;
	struct route_out	 out;
	size_t			 i;

	for (i = 0; i < n; i++) {
		c = &cases[i];
		decide(ac, c->hdr, c->size, &out);
		CHECK_STR(picks(ac, &out), c->want, c->name);
		CHECK(out.rule == c->rule - 1, "%s: rule %d, want %d (%s)",
		    c->name, out.rule + 1, c->rule, out.why);
		if (c->why[0] != '\0')
			CHECK(strstr(out.why, c->why) != NULL, "%s: why %s",
			    c->name, unit_sesc(out.why));
	}
}

static void
test_multidrop(const void *arg)
{
	struct config		*cf = load_text("family", family_conf);
	const struct account	*ac, *lists;
	const struct routing	*rt;
	static const struct {
		size_t		 dest;
		const char	*mailbox;
	} want[] = {
		{ 0, "INBOX" }, { 1, "INBOX" }, { 2, "INBOX" }, { 3, "Family" },
		{ 0, "Shared" }, { 0, "Junk" }, { 1, "Junk" }, { 2, "Junk" },
		{ 3, "Junk" }, { 0, "House" },
	};
	size_t			 i;

	(void)arg;
	if (cf == NULL)
		return;
	ac = &cf->accounts[0];
	lists = &cf->accounts[1];
	rt = ac->routing;
	CHECK(rt != NULL && rt->md != NULL && rt->md->nheaders == 4 &&
	    strcmp(rt->md->headers[0], "Delivered-To") == 0 &&
	    strcmp(rt->md->headers[3], "X-Envelope-To") == 0 &&
	    rt->md->nmap == 5 && !rt->md->to_cc && !rt->md->default_keep &&
	    rt->md->default_dest == 0, "multidrop loaded");
	if (rt == NULL || rt->md == NULL) {
		config_free(cf);
		return;
	}
	/* Every place, once: INBOX of each, carol's Family, Shared; the
	 * spam rule's Junk at each destination step 2 can pick; House. */
	CHECK(rt->ntargets == NELEM(want), "%zu targets, want %zu",
	    rt->ntargets, NELEM(want));
	for (i = 0; i < NELEM(want); i++)
		CHECK(routing_target(rt, want[i].dest, want[i].mailbox) !=
		    ROUTE_NONE, "no target %zu/%s", want[i].dest,
		    want[i].mailbox);
	run_cases(ac, family_cases, NELEM(family_cases));
	CHECK(lists->routing != NULL && lists->routing->md != NULL &&
	    lists->routing->md->to_cc && lists->routing->md->default_keep &&
	    lists->routing->md->nheaders == 1 && lists->routing->ntargets == 3,
	    "lists loaded");
	if (lists->routing != NULL)
		run_cases(lists, lists_cases, NELEM(lists_cases));
	config_free(cf);
}

/* An account without routing keys has no routing and pays nothing. */
static void
test_no_routing(const void *arg)
{
	struct config		*cf = load_text("plain", "accounts = ( { "
	    "name = \"plain\"; " POP("p") IMAP "} );\n");
	struct route_out	 out;

	(void)arg;
	if (cf == NULL)
		return;
	CHECK(cf->accounts[0].routing == NULL, "routing without keys");
	decide(&cf->accounts[0], "X-Spam-Flag: YES\r\n\r\n", 1, &out);
	CHECK(out.n == 1 && out.picks[0].target == 0 &&
	    out.picks[0].flags == NULL && !out.keep && out.rule == -1,
	    "no routing: target 0");
	CHECK(route_endpoint(&cf->accounts[0], 0) == &cf->accounts[0].imap,
	    "endpoint");
	CHECK_STR(route_dest_name(&cf->accounts[0], 0), "imap", "name");
	config_free(cf);

	/* A last rule without a test takes the rest. */
	cf = load_text("catch-all rule", "accounts = ( { name = \"r\"; "
	    POP("r") IMAP "rules = ( { header = \"X\"; is = \"y\"; "
	    "mailbox = \"A\"; },\n { mailbox = \"Rest\"; } ); } );\n");
	if (cf == NULL)
		return;
	decide(&cf->accounts[0], "X: z\r\n\r\n", 1, &out);
	CHECK_STR(picks(&cf->accounts[0], &out), "imap/Rest", "the rest");
	CHECK_STR(out.why, "rule 2 (line 4): every message", "why");
	decide(&cf->accounts[0], "X: Y\r\n\r\n", 1, &out);
	CHECK_STR(picks(&cf->accounts[0], &out), "imap/A", "rule 1");
	config_free(cf);
}

/* ---- broken headers ---- */

/* Nasty header bytes: none may crash, read outside, or leak. */
static void
test_malformed(const void *arg)
{
	static const struct {
		const char	*name;
		const char	*hdr;
		size_t		 len;
	} cases[] = {
		{ "empty", BYTES("") },
		{ "one byte", BYTES("X") },
		{ "a colon alone", BYTES(":") },
		{ "no colon", BYTES("this is no header\r\nnor this\r\n\r\n") },
		{ "continuation first", BYTES(" X-Spam-Flag: YES\r\n\r\n") },
		{ "cut mid-name", BYTES("Delivered-T") },
		{ "cut after the colon", BYTES("Delivered-To:") },
		{ "cut mid-address", BYTES("Delivered-To: anna@fam") },
		{ "cut in a CRLF", BYTES("To: a@b\r") },
		{ "unterminated quote",
		    BYTES("To: \"anna@family.example\r\n\r\n") },
		{ "unterminated comment",
		    BYTES("To: (anna@family.example <x@y>\r\n\r\n") },
		{ "nested comments",
		    BYTES("To: ((((((((((((a))))))))))) b@c\r\n") },
		{ "unterminated angle",
		    BYTES("Envelope-To: <anna@family.example\r\n") },
		{ "angle in angle", BYTES("To: <<<a@b>>>, "
		    "<@r1,@r2:bob@family.example>\r\n") },
		{ "backslash at the end", BYTES("To: \"a\\") },
		{ "comment backslash at the end", BYTES("To: (a\\") },
		{ "unterminated encoded-word",
		    BYTES("Subject: =?UTF-8?B?R3LDvMOf\r\n") },
		{ "encoded-word without text",
		    BYTES("Subject: =?UTF-8?Q?\?=\r\n") },
		{ "bad base64", BYTES("Subject: =?UTF-8?B?***?=\r\n") },
		{ "base64 padding in the middle",
		    BYTES("Subject: =?UTF-8?B?QQ==QQ==?=") },
		{ "encoded-word storm",
		    BYTES("Subject: =?=?=?=?=?=?=?=?=?=?a?Q?=?=?=\r\n") },
		{ "question marks", BYTES("Subject: ?\?\?=?\?\?=?=?\r\n") },
		{ "Q at the end", BYTES("Subject: =?utf-8?q?a=") },
		{ "Q hex cut", BYTES("Subject: =?utf-8?q?a=C?=") },
		{ "NUL in a name", BYTES("X-Spam\0-Flag: YES\r\n\r\n") },
		{ "NUL in a value", BYTES("X-Spam-Flag: YE\0S\r\n\r\n") },
		{ "NUL in an address",
		    BYTES("Delivered-To: anna\0@family.example\r\n") },
		{ "NULs only", BYTES("\0\0\0\0\0\0\0\0") },
		{ "8-bit bytes",
		    BYTES("To: \xff\xfe@\x80\x81\r\nSubject: \xc3\r\n") },
		{ "group without end",
		    BYTES("To: family: a@b.example, c@d.example") },
		{ "empty group", BYTES("To: undisclosed-recipients:;\r\n") },
		{ "commas only", BYTES("To: ,,,,,,,;;;;;:::::\r\n") },
		{ "at signs only", BYTES("To: @@@@@ @ @\r\n") },
		{ "bare CR lines", BYTES("X-Spam-Flag: YES\rTo: a@b\r\r\r") },
	};
	struct config		*cf = load_text("family", family_conf);
	struct config		*cf2 = load_text("rules", rules_conf);
	struct route_out	 out;
	char			*big;
	size_t			 i, len, o;

	(void)arg;
	if (cf == NULL || cf2 == NULL) {
		config_free(cf);
		config_free(cf2);
		return;
	}
	for (i = 0; i < NELEM(cases); i++) {
		len = cases[i].len;
		decide_n(&cf->accounts[0], cases[i].hdr, len, 100, &out);
		decide_n(&cf->accounts[1], cases[i].hdr, len, 100, &out);
		decide_n(&cf2->accounts[0], cases[i].hdr, len, 100, &out);
		CHECK(out.rule >= -1 && out.rule < 12, "%s: rule %d",
		    cases[i].name, out.rule);
	}
	/* A NUL in a value is dropped, not an end. */
	decide_n(&cf2->accounts[0], BYTES("X-Spam-Flag: YES\0\r\n\r\n"), 100,
	    &out);
	CHECK_STR(picks(&cf2->accounts[0], &out), "imap/Junk", "NUL after YES");

	/* A 10k-long line, then the flag: still read. */
	big = xmalloc(200000);
	o = (size_t)sprintf(big, "X-Long: ");
	memset(big + o, 'a', 10000);
	o += 10000;
	o += (size_t)sprintf(big + o, "\r\nX-Spam-Flag: YES\r\n\r\n");
	decide_n(&cf2->accounts[0], big, o, 100, &out);
	CHECK_STR(picks(&cf2->accounts[0], &out), "imap/Junk", "after 10k");

	/* A value longer than ROUTE_VALUE_MAX is cut, not overrun. */
	o = (size_t)sprintf(big, "Subject: ");
	memset(big + o, 'b', 100000);
	o += 100000;
	decide_n(&cf2->accounts[0], big, o, 100, &out);
	o = (size_t)sprintf(big, "To: ");
	for (i = 0; i < 5000; i++)
		o += (size_t)sprintf(big + o, "u%zu@family.example, ", i);
	decide_n(&cf->accounts[0], big, o, 100, &out);
	CHECK_STR(picks(&cf->accounts[0], &out), "imap/INBOX", "a long To");
	o = (size_t)sprintf(big, "Envelope-To: ");
	for (i = 0; i < 600; i++)
		o += (size_t)sprintf(big + o, "bob%zu@family.example, ", i);
	o += (size_t)sprintf(big + o, "anna@family.example\r\n\r\n");
	decide_n(&cf->accounts[0], big, o, 100, &out);
	CHECK_STR(picks(&cf->accounts[0], &out), "bob/INBOX",
	    "600 addresses: one place");

	/* More lines than ROUTE_LINES_MAX: what lies beyond is not read. */
	o = 0;
	for (i = 0; i < ROUTE_LINES_MAX + 10; i++)
		o += (size_t)sprintf(big + o, "To: a%zu@b.example\r\n", i);
	o += (size_t)sprintf(big + o, "X-Spam-Flag: YES\r\n\r\n");
	decide_n(&cf2->accounts[0], big, o, 100, &out);
	CHECK_STR(picks(&cf2->accounts[0], &out), "imap/INBOX",
	    "beyond the lines looked at");

	/* 40 recipients, each its own place: capped at ROUTE_PICKS_MAX, and
	 * one "why" of at most 255 bytes. */
	o = (size_t)sprintf(big, "X-Spam-Flag: YES\r\nEnvelope-To: ");
	for (i = 0; i < 40; i++)
		o += (size_t)sprintf(big + o, "%s%s@family.example", i > 0 ?
		    ", " : "", i % 3 == 0 ? "anna" : i % 3 == 1 ? "bob" :
		    "carol");
	o += (size_t)sprintf(big + o, "\r\n\r\n");
	decide_n(&cf->accounts[0], big, o, 100, &out);
	CHECK_STR(picks(&cf->accounts[0], &out),
	    "anna/Junk + bob/Junk + carol/Junk", "many recipients");
	CHECK(strlen(out.why) <= 255 && strcmp(out.why + strlen(out.why) - 3,
	    "...") == 0, "long why cut: %s", out.why);

	/* Random bytes, with header-like pieces among them. */
	srandom(16);
	for (i = 0; i < 3000; i++) {
		static const char *const bits[] = { "To: ", "Cc: ",
			"Delivered-To: ", "Envelope-To: ", "X-Spam-Flag: ",
			"Subject: ", "=?utf-8?b?", "=?iso-8859-1?q?", "?=",
			"\r\n", "\r\n ", "\"", "(", ")", "<", ">", "@", ",",
			";", ":", "anna@family.example", "bob", "\\", "YES",
			"\0", "\xff", "=", "_", " " };
		size_t	 j, k, nb = (size_t)random() % 40;

		o = 0;
		for (j = 0; j < nb; j++) {
			k = (size_t)random() % NELEM(bits);
			len = bits[k][0] == '\0' ? 1 : strlen(bits[k]);
			memcpy(big + o, bits[k], len);
			o += len;
		}
		decide_n(&cf->accounts[(i & 1)], big, o, (uint64_t)random(),
		    &out);
		decide_n(&cf2->accounts[0], big, o, (uint64_t)random(), &out);
	}
	free(big);
	config_free(cf);
	config_free(cf2);
}

/* ---- bridge.conf.sample ---- */

/*
 * The sample's routing examples are comments between "#>" lines; with
 * the "# " taken off (and the password files made in tmpdir) they load.
 */
static void
test_sample(const void *arg)
{
	struct config	*cf = NULL;
	FILE		*f = fopen("bridge.conf.sample", "r");
	char		 line[1024], *text = xstrdup(""), *p, *next, *path;
	char		*cause = NULL, *q, *e, *name;
	bool		 in = false;
	int		 blocks = 0, npw = 0;
	size_t		 i, nrouted = 0;
	enum result	 r;

	(void)arg;
	CHECK(f != NULL, "bridge.conf.sample: %s", strerror(errno));
	if (f == NULL) {
		free(text);
		return;
	}
	while (fgets(line, sizeof line, f) != NULL) {
		p = line + strspn(line, " ");
		if (strncmp(p, "#>", 2) == 0) {
			in = !in;
			blocks += in;
			next = xprintf("%s\n", text);
		} else if (in && strncmp(p, "# ", 2) == 0)
			next = xprintf("%s%.*s%s", text, (int)(p - line), line,
			    p + 2);
		else if (in && strncmp(p, "#\n", 2) == 0)
			next = xprintf("%s\n", text);
		else
			next = xprintf("%s%s", text, line);
		free(text);
		text = next;
	}
	fclose(f);
	CHECK(blocks >= 2 && !in, "sample: %d example blocks", blocks);
	/* Each password_file becomes one in tmpdir. */
	for (q = text; (q = strstr(q, "password_file = \"")) != NULL; ) {
		q += strlen("password_file = \"");
		if ((e = strchr(q, '"')) == NULL)
			break;
		name = xprintf("sample%d.pass", npw++);
		free(write_file(name, "secret\n", 0600));
		next = xprintf("%.*s%s/%s%s", (int)(q - text), text, tmpdir,
		    name, e);
		q = next + (q - text) + strlen(tmpdir) + 1 + strlen(name);
		free(text);
		text = next;
		free(name);
	}
	path = write_file("sample.conf", text, 0600);
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_OK, "the sample with its examples: %d %s", r,
	    unit_sesc(cause));
	for (i = 0; cf != NULL && i < cf->naccounts; i++)
		nrouted += cf->accounts[i].routing != NULL;
	CHECK(cf == NULL || nrouted >= 2, "%zu accounts with routing",
	    nrouted);
	config_free(cf);
	free(cause);
	free(path);
	free(text);
}

/* ---- broken configs ---- */

#define ACC(extra)							\
	"accounts = (\n"						\
	" {\n"								\
	"  name = \"fam\";\n"						\
	"  " POP("fam")							\
	"  " IMAP							\
	extra								\
	" }\n"								\
	");\n"
#define DEST(n)	"{ name = \"" n "\"; url = \"imaps://imap.example.org\"; " \
		"user = \"" n "\"; password = \"p\"; }"
#define RULES(r)	"  rules = (\n" r "\n  );\n"

struct ecase {
	const char	*name;
	const char	*text;
	enum result	 want;
	int		 line;
	const char	*has;		/* a part of the cause */
};

static const struct ecase error_cases[] = {
	{ "unknown rule key", ACC(RULES("{ header = \"X\"; is = \"y\"; "
	    "mailbox = \"J\"; colour = \"red\"; }")), RES_CONFIG, 7,
	    "account \"fam\": rule 1: unknown key \"colour\"" },
	{ "a rule with no test and no action", ACC(RULES("{ }")), RES_CONFIG,
	    7, "rule 1: the rule does nothing" },
	{ "a test and no action", ACC(RULES("{ header = \"X\"; is = \"y\"; }")),
	    RES_CONFIG, 7, "the rule does nothing" },
	{ "two tests", ACC(RULES("{ header = \"X\"; is = \"y\";\n"
	    "  size_over = 5; mailbox = \"J\"; }")), RES_CONFIG, 8,
	    "\"header\" and \"size_over\": a rule has one test" },
	{ "two recipient tests", ACC(RULES("{ recipient = \"a@b\"; "
	    "recipient_glob = \"*@b\"; mailbox = \"J\"; }")), RES_CONFIG, 7,
	    "a rule has one test" },
	{ "two pattern kinds", ACC(RULES("{ header = \"X\"; is = \"y\";\n"
	    "glob = \"y*\"; mailbox = \"J\"; }")), RES_CONFIG, 8,
	    "\"is\" and \"glob\": give one of" },
	{ "a pattern without a header", ACC(RULES("{ glob = \"y*\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"glob\" goes with "
	    "\"header\"" },
	{ "a header without a pattern", ACC(RULES("{ header = \"X\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"header\" needs what to "
	    "match" },
	{ "a bad header name", ACC(RULES("{ header = \"X Spam\"; is = \"y\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "is no header name" },
	{ "an unknown to", ACC(RULES("\n{ header = \"X\"; is = \"y\"; "
	    "to = \"nobody\"; }")), RES_CONFIG, 8, "\"to\" \"nobody\": no "
	    "destination has that name" },
	{ "a bad regex", ACC(RULES("{ header = \"X\"; regex = \"a(b\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"regex\" \"a(b\" is no "
	    "regular expression (POSIX extended): Unmatched" },
	{ "a bad recipient regex", ACC(RULES("{ recipient_regex = \"[a\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "no regular expression" },
	{ "an empty pattern", ACC(RULES("{ header = \"X\"; is = \"\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"is\" is empty" },
	{ "an empty recipient", ACC(RULES("{ recipient = \"\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"recipient\" is empty" },
	{ "bad flags", ACC(RULES("{ header = \"X\"; is = \"y\";\n"
	    "flags = [ \"bad flag\" ]; }")), RES_CONFIG, 8, "\"flags\" must be "
	    "IMAP flags" },
	{ "a control character in a mailbox", ACC(RULES("{ header = \"X\"; "
	    "is = \"y\"; mailbox = \"Ju\\nnk\"; }")), RES_CONFIG, 7,
	    "rule 1: \"mailbox\"" },
	{ "keep with a mailbox", ACC(RULES("{ size_over = 5; "
	    "action = \"keep\"; mailbox = \"J\"; }")), RES_CONFIG, 7,
	    "it takes no \"to\", \"mailbox\" or \"flags\"" },
	{ "an unknown action", ACC(RULES("{ size_over = 5; "
	    "action = \"drop\"; }")), RES_CONFIG, 7, "\"action\" must be "
	    "\"keep\"" },
	{ "a bad case", ACC(RULES("{ header = \"X\"; is = \"y\"; "
	    "case = \"yes\"; mailbox = \"J\"; }")), RES_CONFIG, 7, "\"case\" "
	    "must be \"sensitive\"" },
	{ "case without a pattern", ACC(RULES("{ size_over = 5; "
	    "case = \"sensitive\"; mailbox = \"J\"; }")), RES_CONFIG, 7,
	    "\"case\" goes with a pattern" },
	{ "a bad size", ACC(RULES("{ size_over = \"20X\"; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"size_over\" must be a "
	    "size" },
	{ "a zero size", ACC(RULES("{ size_under = 0; mailbox = \"J\"; }")),
	    RES_CONFIG, 7, "\"size_under\" must be a size" },
	{ "a size as a bool", ACC(RULES("{ size_under = true; "
	    "mailbox = \"J\"; }")), RES_CONFIG, 7, "\"size_under\" must be a "
	    "size (\"20M\") or bytes" },
	{ "a rule that is no group", ACC(RULES("\"x\"")), RES_CONFIG, 8,
	    "each rule must be a group" },
	{ "a duplicate destination", ACC("  destinations = (\n" DEST("a")
	    ",\n" DEST("a") "\n  );\n"), RES_CONFIG, 8,
	    "destination \"a\": a destination of that name is defined twice" },
	{ "a destination called imap", ACC("  destinations = ( " DEST("imap")
	    " );\n"), RES_CONFIG, 6, "is not \"imap\"" },
	{ "a destination called keep", ACC("  destinations = ( " DEST("keep")
	    " );\n"), RES_CONFIG, 6, "or \"keep\"" },
	{ "a destination with a bad name", ACC("  destinations = ( "
	    DEST("an na") " );\n"), RES_CONFIG, 6, "may have only letters" },
	{ "a destination without a name", ACC("  destinations = (\n"
	    "{ url = \"imaps://x.example\"; user = \"u\"; password = \"p\"; "
	    "} );\n"), RES_CONFIG, 7, "destination 1: missing \"name\"" },
	{ "a destination without a url", ACC("  destinations = (\n"
	    "{ name = \"a\"; user = \"u\"; password = \"p\"; } );\n"),
	    RES_CONFIG, 7, "destination \"a\": missing \"url\"" },
	{ "an unknown destination key", ACC("  destinations = (\n"
	    "{ name = \"a\"; url = \"imaps://x.example\"; user = \"u\";\n"
	    " password = \"p\"; port = 993; } );\n"), RES_CONFIG, 8,
	    "destination \"a\": unknown key \"port\"" },
	{ "a destination password with a line break", ACC("  destinations = ("
	    "\n{ name = \"a\"; url = \"imaps://x.example\"; user = \"u\";\n"
	    " password = \"p\\nq\"; } );\n"), RES_CONFIG, 8,
	    "\"password\" holds a line break" },
	{ "a destination with two secrets", ACC("  destinations = (\n"
	    "{ name = \"a\"; url = \"imaps://x.example\"; user = \"u\"; "
	    "password = \"p\"; password_command = \"echo p\"; } );\n"),
	    RES_CONFIG, 7, "give exactly one of" },
	{ "a destination's mailbox", ACC("  destinations = (\n"
	    "{ name = \"a\"; url = \"imaps://x.example\"; user = \"u\";\n"
	    " password = \"p\"; mailbox = \"~x\"; } );\n"), RES_CONFIG, 8,
	    "destination \"a\": \"mailbox\"" },
	{ "a multidrop map without entries", ACC("  multidrop = {\n"
	    "    map = ( );\n  };\n"), RES_CONFIG, 7, "multidrop: \"map\" must "
	    "list" },
	{ "a multidrop without a map",
	    ACC("  multidrop = { to_cc = true; };\n"), RES_CONFIG, 6,
	    "\"map\" must list" },
	{ "an unknown multidrop key", ACC("  multidrop = { map = ( { "
	    "address = \"a@b\"; to = \"imap\"; } );\n envelope = \"x\"; };\n"),
	    RES_CONFIG, 7, "multidrop: unknown key \"envelope\"" },
	{ "a map entry with two patterns", ACC("  multidrop = { map = (\n"
	    "{ address = \"a@b\"; glob = \"*@b\"; to = \"imap\"; } ); };\n"),
	    RES_CONFIG, 7, "map entry 1: \"address\" and \"glob\"" },
	{ "a map entry without a pattern", ACC("  multidrop = { map = (\n"
	    "{ to = \"imap\"; } ); };\n"), RES_CONFIG, 7, "map entry 1: give "
	    "the recipient" },
	{ "a map entry going nowhere", ACC("  multidrop = { map = (\n"
	    "{ address = \"a@b\"; } ); };\n"), RES_CONFIG, 7, "give where its "
	    "mail goes" },
	{ "a map entry to nobody", ACC("  multidrop = { map = (\n"
	    "{ address = \"a@b\"; to = \"zed\"; } ); };\n"), RES_CONFIG, 7,
	    "\"to\" \"zed\": no destination" },
	{ "a map entry with a bad regex", ACC("  multidrop = { map = (\n"
	    "{ regex = \"*a\"; to = \"imap\"; } ); };\n"), RES_CONFIG, 7,
	    "no regular expression" },
	{ "a map entry with an empty address", ACC("  multidrop = { map = (\n"
	    "{ address = \"\"; to = \"imap\"; } ); };\n"), RES_CONFIG, 7,
	    "\"address\" is empty" },
	{ "an unknown default", ACC("  multidrop = { map = ( { "
	    "address = \"a@b\"; to = \"imap\"; } );\n default = \"zed\"; };\n"),
	    RES_CONFIG, 7, "\"default\" \"zed\": no destination" },
	{ "bad multidrop headers", ACC("  multidrop = {\n headers = [ "
	    "\"Delivered To\" ];\n map = ( { address = \"a@b\"; to = \"imap\"; "
	    "} ); };\n"), RES_CONFIG, 7, "\"headers\" must be header names" },
	{ "no multidrop headers", ACC("  multidrop = {\n headers = [ ];\n"
	    " map = ( { address = \"a@b\"; to = \"imap\"; } ); };\n"),
	    RES_CONFIG, 7, "\"headers\" must name 1 to 16" },
	{ "a header twice", ACC("  multidrop = {\n headers = [ "
	    "\"Delivered-To\", \"delivered-to\" ];\n map = ( { address = "
	    "\"a@b\"; to = \"imap\"; } ); };\n"), RES_CONFIG, 7, "names "
	    "delivered-to twice" },
	{ "to_cc as a string", ACC("  multidrop = { map = ( { "
	    "address = \"a@b\"; to = \"imap\"; } );\n to_cc = \"yes\"; };\n"),
	    RES_CONFIG, 7, "\"to_cc\" must be true or false" },
};

/* Caught by config.c's account keys, which name no account. */
static const struct ecase account_key_cases[] = {
	{ "rules as a group", ACC("  rules = { };\n"), RES_CONFIG, 6,
	    "account: \"rules\" must be a list" },
	{ "multidrop as a list", ACC("  multidrop = ( );\n"), RES_CONFIG, 6,
	    "account: \"multidrop\" must be a group" },
	{ "destinations as a string", ACC("  destinations = \"anna\";\n"),
	    RES_CONFIG, 6, "account: \"destinations\" must be a list" },
};

static void
run_errors(const struct ecase *cases, size_t n, bool named)
{
	const struct ecase *c;
	struct config	*cf;
	char		*path, *cause, *prefix;
	enum result	 r;
	size_t		 i;

	for (i = 0; i < n; i++) {
		c = &cases[i];
		path = write_file("broken.conf", c->text, 0600);
		cause = NULL;
		cf = NULL;
		r = config_load(path, &cf, &cause);
		CHECK(r == c->want && cf == NULL, "%s: config_load = %d, "
		    "want %d (cause %s)", c->name, r, c->want,
		    unit_sesc(cause));
		if (r == RES_OK) {
			config_free(cf);
			free(path);
			continue;
		}
		prefix = xprintf("%s:%d: ", path, c->line);
		CHECK(cause != NULL && strncmp(cause, prefix, strlen(prefix)) ==
		    0, "%s: cause %s does not start with \"%s\"", c->name,
		    unit_sesc(cause), prefix);
		CHECK(cause != NULL && strstr(cause, c->has) != NULL,
		    "%s: cause %s does not say \"%s\"", c->name,
		    unit_sesc(cause), c->has);
		CHECK(!named || (cause != NULL && strstr(cause,
		    "account \"fam\"") != NULL), "%s: cause %s names no "
		    "account", c->name, unit_sesc(cause));
		free(prefix);
		free(cause);
		free(path);
	}
}

static void
test_errors(const void *arg)
{
	(void)arg;
	run_errors(error_cases, NELEM(error_cases), true);
	run_errors(account_key_cases, NELEM(account_key_cases), false);
}

/* More places than ROUTE_TARGETS_MAX; a password file others can read;
 * an inline destination password in a file others can read. */
static void
test_limits(const void *arg)
{
	struct config	*cf = NULL;
	char		*rules = xstrdup(""), *next, *text, *path;
	char		*cause = NULL;
	char		*pw, *pw2 = NULL;
	enum result	 r;
	int		 i;

	(void)arg;
	for (i = 0; i < ROUTE_TARGETS_MAX; i++) {
		next = xprintf("%s%s{ header = \"X\"; is = \"%d\"; "
		    "mailbox = \"M%d\"; }", rules, i > 0 ? ",\n" : "", i, i);
		free(rules);
		rules = next;
	}
	next = xprintf(RULES("%s"), rules);
	text = xprintf(ACC("%s"), next);
	free(next);
	path = write_file("many.conf", text, 0600);
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_CONFIG && cause != NULL && strstr(cause,
	    "more than 256 places") != NULL && strstr(cause, ":2: account "
	    "\"fam\"") != NULL, "too many targets: %d %s", r,
	    unit_sesc(cause));
	config_free(cf);
	cf = NULL;
	free(cause);
	cause = NULL;
	free(path);
	free(text);
	free(rules);

	pw = write_file("anna.imap", "secret\n", 0644);
	text = xprintf(ACC("  destinations = ( { name = \"anna\"; url = "
	    "\"imaps://x.example\"; user = \"anna\";\n password_file = "
	    "\"anna.imap\"; } );\n"));
	path = write_file("pwfile.conf", text, 0600);
	r = config_load(path, &cf, &cause);
	if (r == RES_OK) {
		/* A loader that leaves password files to the login: the
		 * login refuses it, as it refuses the imap block's. */
		free(cause);
		cause = NULL;
		r = config_secret(&cf->accounts[0].routing->dests[0].ep, &pw2,
		    &cause);
		secret_free(pw2);
		config_free(cf);
		cf = NULL;
		CHECK(r == RES_AUTH && cause != NULL && strstr(cause,
		    "can be read by others") != NULL, "destination password "
		    "file 0644, at login: %d %s", r, unit_sesc(cause));
	} else
		CHECK(r == RES_AUTH && cause != NULL && strstr(cause, ":7: "
		    "account \"fam\": destination \"anna\": password_file") !=
		    NULL && strstr(cause, "can be read by others") != NULL,
		    "destination password file 0644: %d %s", r,
		    unit_sesc(cause));
	free(cause);
	cause = NULL;
	chmod(pw, 0600);
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_OK && cf != NULL && cf->accounts[0].routing != NULL &&
	    strcmp(cf->accounts[0].routing->dests[0].ep.password_file, pw) ==
	    0, "destination password file 0600, relative: %d %s", r,
	    unit_sesc(cause));
	config_free(cf);
	cf = NULL;
	free(cause);
	cause = NULL;
	free(path);
	free(text);
	free(pw);

	/* Routing only in a 0644 file, the secrets elsewhere: fine; a
	 * destination's inline password makes the file a secret. */
	text = xprintf("accounts = ( { name = \"fam\";\n"
	    "  pop3 = { url = \"pop3s://pop.example.org\"; user = \"u\"; "
	    "password_command = \"echo p\"; };\n"
	    "  imap = { url = \"imaps://imap.example.org\"; user = \"u\"; "
	    "password_command = \"echo p\"; };\n"
	    "  destinations = ( { name = \"anna\"; url = "
	    "\"imaps://x.example\"; user = \"anna\"; %s } );\n"
	    "} );\n", "password_command = \"echo p\";");
	path = write_file("inline.conf", text, 0644);
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_OK, "no inline password, 0644: %d %s", r,
	    unit_sesc(cause));
	config_free(cf);
	cf = NULL;
	free(cause);
	cause = NULL;
	free(path);
	free(text);
	text = xprintf("accounts = ( { name = \"fam\";\n"
	    "  pop3 = { url = \"pop3s://pop.example.org\"; user = \"u\"; "
	    "password_command = \"echo p\"; };\n"
	    "  imap = { url = \"imaps://imap.example.org\"; user = \"u\"; "
	    "password_command = \"echo p\"; };\n"
	    "  destinations = ( { name = \"anna\"; url = "
	    "\"imaps://x.example\"; user = \"anna\"; %s } );\n"
	    "} );\n", "password = \"p\";");
	path = write_file("inline.conf", text, 0644);
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_AUTH && cause != NULL && strstr(cause, "chmod 600") !=
	    NULL, "inline destination password, 0644: %d %s", r,
	    unit_sesc(cause));
	config_free(cf);
	free(cause);
	free(path);
	free(text);
}

int
main(void)
{
	tmp_make("route");
	UNIT_ISOLATED("rules", test_rules, NULL);
	UNIT_ISOLATED("multidrop", test_multidrop, NULL);
	UNIT_ISOLATED("no routing", test_no_routing, NULL);
	UNIT_ISOLATED("malformed headers", test_malformed, NULL);
	UNIT_ISOLATED("bridge.conf.sample", test_sample, NULL);
	UNIT_ISOLATED("broken configs", test_errors, NULL);
	UNIT_ISOLATED("limits and secrets", test_limits, NULL);
	return tmp_end();
}
