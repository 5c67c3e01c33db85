// link: bridge/route.c bridge/route_text.c bridge/codec.c
// max_len: 8192
/*
 * route.c: route_decide on a header section from the input, for an
 * account with a rule of every kind and a multidrop map (built here, as
 * config_route.c would build it).  Input: byte 0 and 1 (the size: byte 0
 * says how many bits of byte 1 shift it), then the header bytes, given as
 * an exact-size copy so that a read past them is AddressSanitizer's.
 *
 * Every decision: "why" is NUL-terminated within its 256 bytes and
 * printable ASCII; keep has no picks, else 1 .. ROUTE_PICKS_MAX picks of
 * valid, distinct targets; the rule is -1 or one of the rules; the same
 * input decides the same twice; and what follows the blank line is never
 * read: the header with "\r\n\r\n" after it decides as the header with a
 * spam flag and a family address after that blank line.
 */
#include <regex.h>

#include "bridge.h"
#include "route.h"
#include "fuzz.h"

static struct account	 ac;
static struct routing	 rt;

static void
pattern(struct pattern *p, enum match_kind kind, const char *text, bool cs)
{
	p->kind = kind;
	p->text = (char *)text;
	p->case_sensitive = cs;
	if (kind == MATCH_REGEX && regcomp(&p->re, text, REG_EXTENDED |
	    REG_NOSUB | (cs ? 0 : REG_ICASE)) != 0)
		abort();
}

static void
target(size_t dest, const char *mailbox)
{
	static struct target	 t[16];

	t[rt.ntargets].dest = dest;
	t[rt.ntargets].mailbox = (char *)mailbox;
	rt.targets = t;
	rt.ntargets++;
}

static void
setup(void)
{
	static struct destination	 dests[2];
	static struct rule		 rules[6];
	static struct recipient_map	 map[3];
	static struct multidrop		 md;
	static char *headers[] = { "Delivered-To", "X-Original-To",
		"Envelope-To", "X-Envelope-To" };

	ac.name = "fuzz";
	ac.imap.mailbox = "INBOX";
	ac.flags = "";
	ac.routing = &rt;
	dests[0].name = "anna";
	dests[0].ep.mailbox = "INBOX";
	dests[1].name = "bob";
	dests[1].ep.mailbox = "INBOX";
	rt.dests = dests;
	rt.ndests = 2;

	rules[0].test = TEST_HEADER;
	rules[0].header = "X-Spam-Flag";
	pattern(&rules[0].pat, MATCH_EXACT, "YES", false);
	rules[0].mailbox = "Junk";
	rules[1].test = TEST_HEADER;
	rules[1].header = "Subject";
	pattern(&rules[1].pat, MATCH_REGEX, "^(re|fwd): urgent", false);
	rules[1].has_dest = true;
	rules[1].dest = 2;
	rules[1].mailbox = "Urgent";
	rules[2].test = TEST_HEADER;
	rules[2].header = "List-Id";
	pattern(&rules[2].pat, MATCH_GLOB, "*<list.example>", false);
	rules[2].mailbox = "Lists";
	rules[2].flags = "$List";
	rules[3].test = TEST_SIZE_OVER;
	rules[3].size = 1000000;
	rules[3].keep = true;
	rules[4].test = TEST_RECIPIENT;
	pattern(&rules[4].pat, MATCH_REGEX, "^boss@", true);
	rules[4].has_dest = true;
	rules[4].dest = 0;
	rules[4].mailbox = "Boss";
	rules[5].test = TEST_SIZE_UNDER;
	rules[5].size = 10;
	rules[5].flags = "";
	rt.rules = rules;
	rt.nrules = 6;

	pattern(&map[0].pat, MATCH_EXACT, "anna@family.example", false);
	map[0].dest = 1;
	pattern(&map[1].pat, MATCH_GLOB, "bob*@family.example", false);
	map[1].dest = 2;
	pattern(&map[2].pat, MATCH_REGEX, "^carol", false);
	map[2].dest = 0;
	map[2].mailbox = "Carol";
	md.headers = headers;
	md.nheaders = 4;
	md.to_cc = true;
	md.map = map;
	md.nmap = 3;
	rt.md = &md;

	target(0, "INBOX");
	target(1, "INBOX");
	target(2, "INBOX");
	target(0, "Carol");
	target(1, "Junk");
	target(2, "Junk");
	target(0, "Junk");
	target(2, "Urgent");
	target(0, "Lists");
	target(0, "Boss");
}

static void
check_out(const struct route_out *o, const uint8_t *in, size_t len)
{
	size_t	 i, j, wl = strnlen(o->why, sizeof o->why);

	if (wl == sizeof o->why) {
		fuzz_dump("header", in, len);
		FUZZ_CHECK(0, "why not NUL-terminated");
	}
	for (i = 0; i < wl; i++)
		FUZZ_CHECK((unsigned char)o->why[i] >= 0x20 &&
		    (unsigned char)o->why[i] < 0x7f, "why byte 0x%02x",
		    (unsigned char)o->why[i]);
	FUZZ_CHECK(wl > 0, "no why");
	if (o->keep)
		FUZZ_CHECK(o->n == 0, "keep with %zu picks", o->n);
	else
		FUZZ_CHECK(o->n >= 1 && o->n <= ROUTE_PICKS_MAX, "%zu picks",
		    o->n);
	for (i = 0; i < o->n; i++) {
		FUZZ_CHECK(o->picks[i].target < rt.ntargets, "target %zu",
		    o->picks[i].target);
		for (j = 0; j < i; j++)
			FUZZ_CHECK(o->picks[i].target != o->picks[j].target,
			    "target %zu twice", o->picks[i].target);
	}
	FUZZ_CHECK(o->rule >= -1 && o->rule < (int)rt.nrules, "rule %d",
	    o->rule);
}

static bool
same(const struct route_out *a, const struct route_out *b)
{
	size_t	 i;

	if (a->keep != b->keep || a->n != b->n || a->rule != b->rule ||
	    strcmp(a->why, b->why) != 0)
		return false;
	for (i = 0; i < a->n; i++)
		if (a->picks[i].target != b->picks[i].target ||
		    a->picks[i].flags != b->picks[i].flags)
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const char tail[] = "\r\n\r\n";
	static const char body[] = "\r\n\r\nX-Spam-Flag: YES\r\n"
	    "Delivered-To: anna@family.example\r\nTo: boss@x.example\r\n";
	static bool		 ready;
	struct route_out	 o1, o2;
	uint64_t		 size;
	char			*h, *a, *b;

	if (!ready) {
		setup();
		ready = true;
	}
	if (len < 2)
		return 0;
	size = (uint64_t)data[1] << (data[0] % 24);
	data += 2;
	len -= 2;

	h = fuzz_dup(data, len);
	route_decide(&ac, h, len, size, &o1);
	check_out(&o1, data, len);
	route_decide(&ac, h, len, size, &o2);
	FUZZ_CHECK(same(&o1, &o2), "not the same twice: %s / %s", o1.why,
	    o2.why);
	free(h);

	/* Nothing after the blank line is read. */
	a = malloc(len + sizeof tail - 1);
	b = malloc(len + sizeof body - 1);
	if (a == NULL || b == NULL)
		abort();
	memcpy(a, data, len);
	memcpy(a + len, tail, sizeof tail - 1);
	memcpy(b, data, len);
	memcpy(b + len, body, sizeof body - 1);
	route_decide(&ac, a, len + sizeof tail - 1, size, &o1);
	route_decide(&ac, b, len + sizeof body - 1, size, &o2);
	check_out(&o1, data, len);
	if (!same(&o1, &o2)) {
		fuzz_dump("header", data, len);
		FUZZ_CHECK(0, "the body was read: %s / %s", o1.why, o2.why);
	}
	free(a);
	free(b);
	return 0;
}
