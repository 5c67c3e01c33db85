/*
 * An account's routing keys (issue 16), read from its config group into
 * struct routing (route.h): "destinations" (more IMAP accounts, each
 * loaded exactly as the account's own imap block is, secrets and their
 * checks included), "rules" (first match wins) and "multidrop" (a
 * catch-all POP3 mailbox delivered by envelope recipient).  Validated as
 * strictly as the rest of the file: unknown keys, wrong types, a rule
 * with two tests or two patterns, a bad regular expression, a name no
 * destination has, are errors with the file and line.
 *
 * Every place a message can go is worked out here, once: the targets.
 * route_decide only picks among them, and the engine knows them all
 * before the first message (one ledger destination each).
 */
#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "config_int.h"
#include "route.h"

#define SIZE_MAX_BYTES	(1ULL << 40)	/* a size test beyond 1 TiB: a typo */

/* The routing keys (config_keys.c checks a group against them). */
#define K_STR(n)	{ n, CK_STR, NULL, false }
static const struct config_key rule_keys[] = {
	K_STR("header"), K_STR("is"), K_STR("glob"), K_STR("regex"),
	K_STR("recipient"), K_STR("recipient_glob"), K_STR("recipient_regex"),
	{ "size_over", CK_STR | CK_INT, "a size (\"20M\") or bytes", false },
	{ "size_under", CK_STR | CK_INT, "a size (\"20M\") or bytes", false },
	K_STR("case"), K_STR("to"), K_STR("mailbox"),
	{ "flags", CK_ARRAY | CK_LIST, "an array [ ... ] of flags", false },
	K_STR("action"),
	{ NULL, 0, NULL, false }
};
static const struct config_key multidrop_keys[] = {
	{ "headers", CK_ARRAY | CK_LIST, "an array [ ... ] of header names",
	    false },
	{ "to_cc", CK_BOOL, "true or false", false },
	{ "map", CK_LIST, "a list ( ... ) of groups", false },
	K_STR("default"),
	{ NULL, 0, NULL, false }
};
static const struct config_key map_keys[] = {
	K_STR("address"), K_STR("glob"), K_STR("regex"), K_STR("case"),
	K_STR("to"), K_STR("mailbox"),
	{ NULL, 0, NULL, false }
};

/* The envelope headers multidrop reads when "headers" is not given. */
static const char *const default_headers[] = { "Delivered-To",
	"X-Original-To", "Envelope-To", "X-Envelope-To" };

static const char *
member_string(const config_setting_t *g, const char *name)
{
	const char	*v;

	if (config_setting_lookup_string(g, name, &v) == CONFIG_TRUE)
		return v;
	return NULL;
}

/* A destination's name, as an account's: letters, digits, ._-+@. */
static bool
dest_name_valid(const char *n)
{
	if (*n == '\0' || strlen(n) > 64)
		return false;
	for (; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && strchr("._-+@", *n) == NULL)
			return false;
	return true;
}

/* A header field name (RFC 5322 2.2): printable ASCII, no colon. */
static bool
header_name_valid(const char *n)
{
	if (*n == '\0' || strlen(n) > 100)
		return false;
	for (; *n != '\0'; n++)
		if ((unsigned char)*n <= 0x20 || (unsigned char)*n >= 0x7f ||
		    *n == ':')
			return false;
	return true;
}

/* "to": "imap" (the account's own imap block) or a destination. */
static enum result
lookup_dest(struct loader *ld, const config_setting_t *s,
    const struct routing *rt, const char *where, size_t *dest)
{
	const char	*name = config_setting_get_string(s);
	size_t		 i;

	if (strcmp(name, "imap") == 0) {
		*dest = 0;
		return RES_OK;
	}
	for (i = 0; i < rt->ndests; i++)
		if (strcmp(rt->dests[i].name, name) == 0) {
			*dest = i + 1;
			return RES_OK;
		}
	return cfail(ld, s, "%s\"%s\" \"%s\": no destination has that name "
	    "(\"imap\" is the account's own imap block; others are named in "
	    "\"destinations\")", where, config_setting_name(s), name);
}

/* A mailbox key: checked as the imap block's is, malloc'd into *mb. */
static enum result
load_mailbox(struct loader *ld, const config_setting_t *g, const char *where,
    char **mb)
{
	const config_setting_t	*s = config_setting_get_member(g, "mailbox");
	const char		*why;

	*mb = NULL;
	if (s == NULL)
		return RES_OK;
	if ((why = account_valid_mailbox(config_setting_get_string(s),
	    false)) != NULL)
		return cfail(ld, s, "%s\"mailbox\" %s", where, why);
	*mb = xstrdup(config_setting_get_string(s));
	return RES_OK;
}

/*
 * A pattern from key s (kind), with "case" from group g: exact and glob
 * compare the whole value, a regex (POSIX extended) finds itself
 * anywhere in it, as grep does; all ignore ASCII case unless case =
 * "sensitive".
 */
static enum result
load_pattern(struct loader *ld, const config_setting_t *g,
    const config_setting_t *s, enum match_kind kind, const char *where,
    struct pattern *p)
{
	const config_setting_t	*cs = config_setting_get_member(g, "case");
	const char		*text = config_setting_get_string(s), *c;
	char			 err[200];
	int			 rc;

	p->case_sensitive = false;
	if (cs != NULL) {
		c = config_setting_get_string(cs);
		if (strcmp(c, "sensitive") == 0)
			p->case_sensitive = true;
		else if (strcmp(c, "insensitive") != 0)
			return cfail(ld, cs, "%s\"case\" must be "
			    "\"sensitive\" or \"insensitive\" (the default)",
			    where);
	}
	if (*text == '\0')
		return cfail(ld, s, "%s\"%s\" is empty", where,
		    config_setting_name(s));
	if (kind == MATCH_REGEX) {
		rc = regcomp(&p->re, text, REG_EXTENDED | REG_NOSUB |
		    (p->case_sensitive ? 0 : REG_ICASE));
		if (rc != 0) {
			regerror(rc, &p->re, err, sizeof err);
			return cfail(ld, s, "%s\"%s\" \"%s\" is no regular "
			    "expression (POSIX extended): %s", where,
			    config_setting_name(s), text, err);
		}
	}
	/* Set only now: routing_free frees a regex that has text. */
	p->kind = kind;
	p->text = xstrdup(text);
	return RES_OK;
}

/*
 * A size: a number of bytes, or a string "20M": k, M, G are 1000,
 * 1000^2, 1000^3 bytes, as popbridge prints sizes ("20.0 MB"); KiB,
 * MiB, GiB 1024, 1024^2, 1024^3; "kB", "MB", "GB" and a lone "B" too.
 */
static bool
parse_size(const char *s, uint64_t *v)
{
	static const struct {
		const char	*unit;
		uint64_t	 mult;
	} units[] = {
		{ "", 1 }, { "B", 1 }, { "k", 1000 }, { "K", 1000 },
		{ "kB", 1000 }, { "KB", 1000 }, { "M", 1000000 },
		{ "MB", 1000000 }, { "G", 1000000000 }, { "GB", 1000000000 },
		{ "KiB", 1024 }, { "MiB", 1024 * 1024 },
		{ "GiB", 1024 * 1024 * 1024 },
	};
	uint64_t	 n = 0;
	size_t		 i;

	if (!isdigit((unsigned char)*s))
		return false;
	for (; isdigit((unsigned char)*s); s++) {
		if (n > SIZE_MAX_BYTES)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	for (i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(s, units[i].unit) == 0) {
			if (n > SIZE_MAX_BYTES / units[i].mult)
				return false;
			*v = n * units[i].mult;
			return *v >= 1 && *v <= SIZE_MAX_BYTES;
		}
	return false;
}

static enum result
load_size(struct loader *ld, const config_setting_t *s, const char *where,
    uint64_t *v)
{
	long long	 n;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (parse_size(config_setting_get_string(s), v))
			return RES_OK;
	} else if ((n = config_setting_get_int64(s)) >= 1 &&
	    (uint64_t)n <= SIZE_MAX_BYTES) {
		*v = (uint64_t)n;
		return RES_OK;
	}
	return cfail(ld, s, "%s\"%s\" must be a size of at least one byte: "
	    "bytes, or a string such as \"500k\", \"20M\", \"1G\" (1000s) or "
	    "\"20MiB\" (1024s)", where, config_setting_name(s));
}

/* ---- destinations ---- */

static enum result
load_dests(struct loader *ld, const config_setting_t *list,
    struct account *ac)
{
	struct routing		*rt = ac->routing;
	const config_setting_t	*g;
	const char		*name;
	char			 where[200];
	size_t			 i, j, n = (size_t)config_setting_length(list);
	enum result		 r;

	if (n > ROUTE_DESTS_MAX)
		return cfail(ld, list, "account \"%s\": more than %d "
		    "destinations", ac->name, ROUTE_DESTS_MAX);
	rt->dests = xcalloc(n + 1, sizeof *rt->dests);
	for (i = 0; i < n; i++) {
		g = config_setting_get_elem(list, (unsigned int)i);
		name = config_setting_type(g) == CONFIG_TYPE_GROUP ?
		    member_string(g, "name") : NULL;
		if (name != NULL)
			snprintf(where, sizeof where, "account \"%s\": "
			    "destination \"%s\": ", ac->name, name);
		else
			snprintf(where, sizeof where, "account \"%s\": "
			    "destination %zu: ", ac->name, i + 1);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return cfail(ld, g, "%seach destination must be a "
			    "group { name = ...; url = ...; ... }", where);
		/* Counted first: config_free frees what was loaded. */
		rt->ndests++;
		if ((r = load_endpoint_at(ld, g, &rt->dests[i].ep, true, true,
		    where)) != RES_OK)
			return r;
		rt->dests[i].name = xstrdup(name);
		if (!dest_name_valid(name) || strcasecmp(name, "imap") == 0 ||
		    strcasecmp(name, "keep") == 0)
			return cfail(ld, config_setting_get_member(g, "name"),
			    "%sa destination's name may have only letters, "
			    "digits and ._-+@ (at most 64), and is not "
			    "\"imap\" (the account's own imap block) or "
			    "\"keep\"", where);
		for (j = 0; j < i; j++)
			if (strcmp(rt->dests[j].name, name) == 0)
				return cfail(ld, g, "%sa destination of that "
				    "name is defined twice", where);
	}
	return RES_OK;
}

/* ---- multidrop ---- */

/* One map entry: an address (exact), a glob or a regex, to a place. */
static enum result
load_map_entry(struct loader *ld, const config_setting_t *g,
    struct account *ac, size_t idx, struct recipient_map *e)
{
	static const struct {
		const char	*key;
		enum match_kind	 kind;
	} kinds[] = { { "address", MATCH_EXACT }, { "glob", MATCH_GLOB },
		{ "regex", MATCH_REGEX } };
	const config_setting_t	*s, *pat = NULL, *to;
	char			 where[200];
	enum match_kind		 kind = MATCH_EXACT;
	size_t			 i;
	enum result		 r;

	snprintf(where, sizeof where, "account \"%s\": multidrop: map entry "
	    "%zu: ", ac->name, idx + 1);
	e->line = config_setting_source_line(g);
	if (config_setting_type(g) != CONFIG_TYPE_GROUP)
		return cfail(ld, g, "%seach map entry must be a group "
		    "{ address = ...; to = ...; }", where);
	if ((r = config_check_keys(ld, g, map_keys, where)) != RES_OK)
		return r;
	for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		if ((s = config_setting_get_member(g, kinds[i].key)) == NULL)
			continue;
		if (pat != NULL)
			return cfail(ld, s, "%s\"%s\" and \"%s\": give one of "
			    "\"address\", \"glob\" or \"regex\"", where,
			    config_setting_name(pat), kinds[i].key);
		pat = s;
		kind = kinds[i].kind;
	}
	if (pat == NULL)
		return cfail(ld, g, "%sgive the recipient: \"address\", "
		    "\"glob\" or \"regex\"", where);
	if ((r = load_pattern(ld, g, pat, kind, where, &e->pat)) != RES_OK)
		return r;
	to = config_setting_get_member(g, "to");
	if (to == NULL && config_setting_get_member(g, "mailbox") == NULL)
		return cfail(ld, g, "%sgive where its mail goes: \"to\" (a "
		    "destination, or \"imap\"), \"mailbox\", or both", where);
	e->dest = 0;
	if (to != NULL && (r = lookup_dest(ld, to, ac->routing, where,
	    &e->dest)) != RES_OK)
		return r;
	return load_mailbox(ld, g, where, &e->mailbox);
}

static enum result
load_headers(struct loader *ld, const config_setting_t *g,
    struct multidrop *md, const char *where)
{
	const config_setting_t	*list = config_setting_get_member(g, "headers");
	const config_setting_t	*h;
	const char		*name;
	size_t			 i, j, n;

	n = list != NULL ? (size_t)config_setting_length(list) :
	    sizeof default_headers / sizeof default_headers[0];
	if (list != NULL && (n == 0 || n > ROUTE_HEADERS_MAX))
		return cfail(ld, list, "%s\"headers\" must name 1 to %d "
		    "envelope headers", where, ROUTE_HEADERS_MAX);
	md->headers = xcalloc(n, sizeof *md->headers);
	for (i = 0; i < n; i++) {
		if (list == NULL) {
			md->headers[md->nheaders++] =
			    xstrdup(default_headers[i]);
			continue;
		}
		h = config_setting_get_elem(list, (unsigned int)i);
		if (config_setting_type(h) != CONFIG_TYPE_STRING ||
		    !header_name_valid(name = config_setting_get_string(h)))
			return cfail(ld, list, "%s\"headers\" must be header "
			    "names such as \"Delivered-To\"", where);
		for (j = 0; j < md->nheaders; j++)
			if (strcasecmp(md->headers[j], name) == 0)
				return cfail(ld, list, "%s\"headers\" names %s "
				    "twice", where, name);
		md->headers[md->nheaders++] = xstrdup(name);
	}
	return RES_OK;
}

static enum result
load_multidrop(struct loader *ld, const config_setting_t *g,
    struct account *ac)
{
	struct routing		*rt = ac->routing;
	struct multidrop	*md;
	const config_setting_t	*map, *def;
	const char		*d;
	char			 where[120];
	int			 to_cc;
	size_t			 i, n;
	enum result		 r;

	snprintf(where, sizeof where, "account \"%s\": multidrop: ", ac->name);
	rt->md = md = xcalloc(1, sizeof *md);
	md->line = config_setting_source_line(g);
	if ((r = config_check_keys(ld, g, multidrop_keys, where)) != RES_OK ||
	    (r = load_headers(ld, g, md, where)) != RES_OK)
		return r;
	if (config_setting_lookup_bool(g, "to_cc", &to_cc) == CONFIG_TRUE)
		md->to_cc = to_cc != 0;
	map = config_setting_get_member(g, "map");
	if (map == NULL || (n = (size_t)config_setting_length(map)) == 0)
		return cfail(ld, map != NULL ? map : g, "%s\"map\" must list "
		    "the recipients: ( { address = \"anna@example.org\"; to = "
		    "\"anna\"; }, ... )", where);
	if (n > ROUTE_MAP_MAX)
		return cfail(ld, map, "%s\"map\" has more than %d entries",
		    where, ROUTE_MAP_MAX);
	md->map = xcalloc(n, sizeof *md->map);
	for (i = 0; i < n; i++) {
		md->nmap++;
		if ((r = load_map_entry(ld, config_setting_get_elem(map,
		    (unsigned int)i), ac, i, &md->map[i])) != RES_OK)
			return r;
	}
	/* The unmapped: "keep" them on the POP3 server, or a destination;
	 * the account's own imap block when not said. */
	if ((def = config_setting_get_member(g, "default")) != NULL) {
		d = config_setting_get_string(def);
		if (strcmp(d, "keep") == 0)
			md->default_keep = true;
		else if ((r = lookup_dest(ld, def, rt, where,
		    &md->default_dest)) != RES_OK)
			return r;
	}
	return RES_OK;
}

/* ---- rules ---- */

/* The rule's test: none (every message), or exactly one. */
static enum result
load_test(struct loader *ld, const config_setting_t *g, struct rule *ru,
    const char *where)
{
	static const struct {
		const char	*key;
		enum rule_test	 test;
		enum match_kind	 kind;
	} tests[] = {
		{ "header", TEST_HEADER, MATCH_EXACT },
		{ "recipient", TEST_RECIPIENT, MATCH_EXACT },
		{ "recipient_glob", TEST_RECIPIENT, MATCH_GLOB },
		{ "recipient_regex", TEST_RECIPIENT, MATCH_REGEX },
		{ "size_over", TEST_SIZE_OVER, MATCH_EXACT },
		{ "size_under", TEST_SIZE_UNDER, MATCH_EXACT },
	};
	static const struct {
		const char	*key;
		enum match_kind	 kind;
	} pats[] = { { "is", MATCH_EXACT }, { "glob", MATCH_GLOB },
		{ "regex", MATCH_REGEX } };
	const config_setting_t	*s, *test = NULL, *pat = NULL;
	enum match_kind		 kind = MATCH_EXACT;
	size_t			 i;

	ru->test = TEST_ALWAYS;
	for (i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		if ((s = config_setting_get_member(g, tests[i].key)) == NULL)
			continue;
		if (test != NULL)
			return cfail(ld, s, "%s\"%s\" and \"%s\": a rule has "
			    "one test (write two rules)", where,
			    config_setting_name(test), tests[i].key);
		test = s;
		ru->test = tests[i].test;
		kind = tests[i].kind;
	}
	for (i = 0; i < sizeof pats / sizeof pats[0]; i++) {
		if ((s = config_setting_get_member(g, pats[i].key)) == NULL)
			continue;
		if (pat != NULL)
			return cfail(ld, s, "%s\"%s\" and \"%s\": give one of "
			    "\"is\", \"glob\" or \"regex\"", where,
			    config_setting_name(pat), pats[i].key);
		if (ru->test != TEST_HEADER)
			return cfail(ld, s, "%s\"%s\" goes with \"header\" (a "
			    "recipient is matched by \"recipient\", "
			    "\"recipient_glob\" or \"recipient_regex\")", where,
			    pats[i].key);
		pat = s;
		kind = pats[i].kind;
	}
	s = config_setting_get_member(g, "case");
	if (s != NULL && ru->test != TEST_HEADER && ru->test != TEST_RECIPIENT)
		return cfail(ld, s, "%s\"case\" goes with a pattern (header or "
		    "recipient)", where);
	switch (ru->test) {
	case TEST_HEADER:
		ru->header = xstrdup(config_setting_get_string(test));
		if (!header_name_valid(ru->header))
			return cfail(ld, test, "%s\"header\" \"%s\" is no "
			    "header name (printable ASCII, no space or colon)",
			    where, ru->header);
		if (pat == NULL)
			return cfail(ld, test, "%s\"header\" needs what to "
			    "match: \"is\", \"glob\" or \"regex\"", where);
		return load_pattern(ld, g, pat, kind, where, &ru->pat);
	case TEST_RECIPIENT:
		return load_pattern(ld, g, test, kind, where, &ru->pat);
	case TEST_SIZE_OVER:
	case TEST_SIZE_UNDER:
		return load_size(ld, test, where, &ru->size);
	case TEST_ALWAYS:
		break;
	}
	return RES_OK;
}

/* What the rule does: to, mailbox, flags, or action = "keep" or
 * "deliver" (as if no rule had matched; later rules are not tried). */
static enum result
load_action(struct loader *ld, const config_setting_t *g, struct account *ac,
    struct rule *ru, const char *where)
{
	const config_setting_t	*to = config_setting_get_member(g, "to");
	const config_setting_t	*flags = config_setting_get_member(g, "flags");
	const config_setting_t	*act = config_setting_get_member(g, "action");
	const config_setting_t	*f;
	const char		*a = act != NULL ?
				    config_setting_get_string(act) : NULL;
	int			 i, n;
	enum result		 r;

	if (a != NULL && strcmp(a, "keep") != 0 && strcmp(a, "deliver") != 0)
		return cfail(ld, act, "%s\"action\" must be \"keep\" (the "
		    "message stays on the POP3 server) or \"deliver\"", where);
	ru->keep = a != NULL && strcmp(a, "keep") == 0;
	if (ru->keep && (to != NULL || flags != NULL ||
	    config_setting_get_member(g, "mailbox") != NULL))
		return cfail(ld, act, "%saction = \"keep\" leaves the message "
		    "on the POP3 server: it takes no \"to\", \"mailbox\" or "
		    "\"flags\"", where);
	if (a == NULL && to == NULL && flags == NULL &&
	    config_setting_get_member(g, "mailbox") == NULL)
		return cfail(ld, g, "%sthe rule does nothing: give \"to\", "
		    "\"mailbox\", \"flags\", or action = \"keep\" (or "
		    "\"deliver\" to deliver as usual and try no later rule)",
		    where);
	if (to != NULL) {
		ru->has_dest = true;
		if ((r = lookup_dest(ld, to, ac->routing, where, &ru->dest)) !=
		    RES_OK)
			return r;
	}
	if ((r = load_mailbox(ld, g, where, &ru->mailbox)) != RES_OK)
		return r;
	if (flags != NULL) {
		ru->flags = xstrdup("");
		n = config_setting_length(flags);
		for (i = 0; i < n; i++) {
			f = config_setting_get_elem(flags, (unsigned int)i);
			if (config_setting_type(f) != CONFIG_TYPE_STRING ||
			    !config_flags_add(&ru->flags,
			    config_setting_get_string(f)))
				return cfail(ld, flags, "%s\"flags\" must be "
				    "IMAP flags such as \"\\\\Seen\" or "
				    "keywords such as \"$Junk\"", where);
		}
	}
	return RES_OK;
}

static enum result
load_rules(struct loader *ld, const config_setting_t *list,
    struct account *ac)
{
	struct routing		*rt = ac->routing;
	const config_setting_t	*g;
	struct rule		*ru;
	char			 where[120];
	size_t			 i, n = (size_t)config_setting_length(list);
	enum result		 r;

	if (n > ROUTE_RULES_MAX)
		return cfail(ld, list, "account \"%s\": more than %d rules",
		    ac->name, ROUTE_RULES_MAX);
	rt->rules = xcalloc(n + 1, sizeof *rt->rules);
	for (i = 0; i < n; i++) {
		g = config_setting_get_elem(list, (unsigned int)i);
		ru = &rt->rules[rt->nrules++];
		ru->line = config_setting_source_line(g);
		snprintf(where, sizeof where, "account \"%s\": rule %zu: ",
		    ac->name, i + 1);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return cfail(ld, g, "%seach rule must be a group "
			    "{ header = ...; is = ...; mailbox = ...; }",
			    where);
		if ((r = config_check_keys(ld, g, rule_keys, where)) != RES_OK ||
		    (r = load_test(ld, g, ru, where)) != RES_OK ||
		    (r = load_action(ld, g, ac, ru, where)) != RES_OK)
			return r;
	}
	return RES_OK;
}

/* ---- targets ---- */

/* (dest, mailbox or the destination's own) as a target, once. */
static enum result
add_target(struct loader *ld, const config_setting_t *at, struct account *ac,
    size_t dest, const char *mailbox)
{
	struct routing	*rt = ac->routing;

	if (mailbox == NULL)
		mailbox = route_dest_mailbox(ac, dest);
	if (routing_target(rt, dest, mailbox) != ROUTE_NONE)
		return RES_OK;
	if (rt->ntargets == ROUTE_TARGETS_MAX)
		return cfail(ld, at, "account \"%s\": more than %d places "
		    "(a destination and a mailbox there) to deliver to",
		    ac->name, ROUTE_TARGETS_MAX);
	rt->targets = xrealloc(rt->targets, (rt->ntargets + 1) *
	    sizeof *rt->targets);
	rt->targets[rt->ntargets].dest = dest;
	rt->targets[rt->ntargets].mailbox = xstrdup(mailbox);
	rt->ntargets++;
	return RES_OK;
}

/*
 * Every (destination, mailbox) route_decide can pick: [0] the account's
 * imap and mailbox; each rule's; each map entry's and the default's; and
 * for a rule without "to" but with a mailbox, that mailbox at every
 * destination step 2 can pick (each map entry's, the default's; the
 * account's imap without multidrop).
 */
static enum result
make_targets(struct loader *ld, const config_setting_t *a,
    struct account *ac)
{
	const struct routing	*rt = ac->routing;
	const struct multidrop	*md = rt->md;
	const struct rule	*ru;
	size_t			 i, j;
	enum result		 r = RES_OK;

	if ((r = add_target(ld, a, ac, 0, NULL)) != RES_OK)
		return r;
	for (i = 0; md != NULL && i < md->nmap && r == RES_OK; i++)
		r = add_target(ld, a, ac, md->map[i].dest, md->map[i].mailbox);
	if (r == RES_OK && md != NULL && !md->default_keep)
		r = add_target(ld, a, ac, md->default_dest, NULL);
	for (i = 0; i < rt->nrules && r == RES_OK; i++) {
		ru = &rt->rules[i];
		if (ru->keep)
			continue;
		if (ru->has_dest)
			r = add_target(ld, a, ac, ru->dest, ru->mailbox);
		else if (ru->mailbox == NULL)
			continue;	/* step 2's own targets */
		else if (md == NULL)
			r = add_target(ld, a, ac, 0, ru->mailbox);
		else {
			for (j = 0; j < md->nmap && r == RES_OK; j++)
				r = add_target(ld, a, ac, md->map[j].dest,
				    ru->mailbox);
			if (r == RES_OK && !md->default_keep)
				r = add_target(ld, a, ac, md->default_dest,
				    ru->mailbox);
		}
	}
	return r;
}

enum result
config_route_load(struct loader *ld, const config_setting_t *a,
    struct account *ac)
{
	const config_setting_t	*dests, *rules, *md;
	enum result		 r;

	dests = config_setting_get_member(a, "destinations");
	rules = config_setting_get_member(a, "rules");
	md = config_setting_get_member(a, "multidrop");
	ac->routing = NULL;
	if (dests == NULL && rules == NULL && md == NULL)
		return RES_OK;		/* no routing: it costs nothing */
	ac->routing = xcalloc(1, sizeof *ac->routing);
	/* Destinations first: rules and the map name them.  Multidrop
	 * before the rules' targets: a rule without "to" goes where
	 * multidrop sends it. */
	if ((dests != NULL && (r = load_dests(ld, dests, ac)) != RES_OK) ||
	    (md != NULL && (r = load_multidrop(ld, md, ac)) != RES_OK) ||
	    (rules != NULL && (r = load_rules(ld, rules, ac)) != RES_OK))
		return r;
	return make_targets(ld, a, ac);
}

/*
 * Here, not in route.c, so that the router stays pure: freeing a routing
 * frees its destinations' endpoints, which is the config's business.
 */
static void
pattern_free(struct pattern *p)
{
	if (p->kind == MATCH_REGEX && p->text != NULL)
		regfree(&p->re);
	free(p->text);
}

/*
 * The account's endpoints one by one: its pop3 (0) and imap (1) blocks,
 * then each destination's (2 on); NULL past the last.  *side names it for
 * a message.  For what must be done to every login an account has: the
 * daemon reads each password_file before it drops root.
 */
struct endpoint *
config_account_endpoint(struct account *ac, size_t n, const char **side)
{
	struct routing	*rt = ac->routing;

	if (n < 2) {
		*side = n == 0 ? "pop3" : "imap";
		return n == 0 ? &ac->pop3 : &ac->imap;
	}
	if (rt == NULL || n - 2 >= rt->ndests)
		return NULL;
	*side = rt->dests[n - 2].name;
	return &rt->dests[n - 2].ep;
}

void
routing_free(struct routing *rt)
{
	size_t	 i;

	if (rt == NULL)
		return;
	for (i = 0; i < rt->ndests; i++) {
		free(rt->dests[i].name);
		config_endpoint_free(&rt->dests[i].ep);
	}
	free(rt->dests);
	for (i = 0; i < rt->nrules; i++) {
		free(rt->rules[i].header);
		pattern_free(&rt->rules[i].pat);
		free(rt->rules[i].mailbox);
		free(rt->rules[i].flags);
	}
	free(rt->rules);
	if (rt->md != NULL) {
		for (i = 0; i < rt->md->nheaders; i++)
			free(rt->md->headers[i]);
		free(rt->md->headers);
		for (i = 0; i < rt->md->nmap; i++) {
			pattern_free(&rt->md->map[i].pat);
			free(rt->md->map[i].mailbox);
		}
		free(rt->md->map);
		free(rt->md);
	}
	for (i = 0; i < rt->ntargets; i++)
		free(rt->targets[i].mailbox);
	free(rt->targets);
	free(rt);
}
