/*
 * Routing (issue 16): where each message of an account goes.
 *
 * An account without "destinations", "rules" or "multidrop" has no
 * routing (account.routing is NULL) and every message goes to its imap
 * block's mailbox, as before; such an account pays nothing for routing.
 *
 * With routing, every place a message can go is known when the config is
 * loaded: a target is a destination (the account's own imap block, or one
 * of its named "destinations", each an IMAP account with its own login)
 * and a mailbox there.  targets[0] is always the account's imap and its
 * mailbox.  The engine (transfer.c) keeps a ledger destination per target,
 * so "exactly once" holds per (message, target).
 *
 * route_decide() looks at a message's header section (as normalised and
 * spooled, in memory) and its size, and names the targets it goes to (one
 * or more, each with its flags) or says it stays on the POP3 server:
 *
 *   1. the rules, in order; the first that matches decides:
 *        keep    -> stays on the POP3 server;
 *        to      -> that destination (its mailbox, or the rule's);
 *        no "to" -> the destinations step 2 would pick (the account's imap
 *                   without multidrop), with the rule's mailbox and flags;
 *   2. multidrop, if configured: the envelope recipients, mapped;
 *   3. else the account's imap and mailbox.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <regex.h>

#define ROUTE_PICKS_MAX	32	/* targets one message can go to */
#define ROUTE_TARGETS_MAX 256	/* targets an account can have */

/* Another IMAP account a rule or the multidrop map can name. */
struct destination {
	char		*name;		/* letters, digits, ._-+@; not "imap" */
	struct endpoint	 ep;		/* ep.mailbox: its default mailbox */
};

enum match_kind { MATCH_EXACT, MATCH_GLOB, MATCH_REGEX };

struct pattern {
	enum match_kind	 kind;
	char		*text;		/* as configured */
	bool		 case_sensitive; /* default false */
	regex_t		 re;		/* MATCH_REGEX: compiled */
};

enum rule_test {
	TEST_HEADER,		/* a header's value (any instance) */
	TEST_RECIPIENT,		/* any address in To, Cc or the envelope */
	TEST_SIZE_OVER,		/* the message is larger than size */
	TEST_SIZE_UNDER,	/* the message is smaller than size */
	TEST_ALWAYS,		/* no test: matches every message */
};

struct rule {
	enum rule_test	 test;
	char		*header;	/* TEST_HEADER: its name */
	struct pattern	 pat;		/* TEST_HEADER, TEST_RECIPIENT */
	uint64_t	 size;		/* TEST_SIZE_* */
	bool		 keep;		/* action "keep": stays on POP3 */
	bool		 has_dest;	/* "to" given; else step 2's picks */
	size_t		 dest;		/* "to": 0 the account's imap ("imap"),
					 * else 1 + index into routing.dests */
	char		*mailbox;	/* NULL: the destination's */
	char		*flags;		/* NULL: the account's; "" none */
	int		 line;
};

/* An envelope recipient (an address, a glob or a regex) to a place. */
struct recipient_map {
	struct pattern	 pat;
	size_t		 dest;		/* 0: the account's imap, else
					 * 1 + index into routing.dests */
	char		*mailbox;	/* NULL: the destination's */
	int		 line;
};

struct multidrop {
	char		**headers;	/* envelope headers, in order */
	size_t		  nheaders;
	bool		  to_cc;	/* fall back to To and Cc */
	struct recipient_map *map;
	size_t		  nmap;
	size_t		  default_dest;	/* unmatched: 0 the account's imap,
					 * else 1 + index into dests */
	bool		  default_keep;	/* unmatched stay on POP3 */
	int		  line;
};

/* A place a message can go: a destination and a mailbox there. */
struct target {
	size_t		 dest;		/* 0: the account's imap, else
					 * 1 + index into routing.dests */
	char		*mailbox;	/* as configured (UTF-8) */
};

struct routing {
	struct destination *dests;
	size_t		 ndests;
	struct rule	*rules;
	size_t		 nrules;
	struct multidrop *md;		/* NULL: no multidrop */
	struct target	*targets;	/* [0]: the account's imap, mailbox */
	size_t		 ntargets;
};

/* What route_decide found for one message. */
struct route_pick {
	size_t		 target;	/* index into routing.targets */
	const char	*flags;		/* NULL: the account's flags */
};
struct route_out {
	bool		 keep;		/* stays on the POP3 server */
	size_t		 n;		/* picks (0 if keep) */
	struct route_pick picks[ROUTE_PICKS_MAX];
	int		 rule;		/* the rule that matched, from 0; -1 */
	/* For check, dry runs and the log: "rule 2 (line 14): X-Spam-Flag
	 * is \"YES\"", "multidrop: Delivered-To anna@family.example", "no
	 * rule matched" ... no secrets, bounded. */
	char		 why[256];
};

/* route.c */
/* Where the message goes.  hdr: its header section (may be cut short
 * or lack the blank line); size: its size in bytes.  Never fails: a
 * header that cannot be parsed simply does not match. */
void		 route_decide(const struct account *, const char *, size_t,
		     uint64_t, struct route_out *);
/* The IMAP endpoint of a target (the account's imap or a destination's). */
const struct endpoint *route_endpoint(const struct account *, size_t);
/* "imap" or the destination's name, for messages; the argument is a
 * destination (0, or 1 + index into routing.dests), as in target.dest. */
const char	*route_dest_name(const struct account *, size_t);
void		 routing_free(struct routing *);	/* config_route.c */

/* route_show.c: for check and dry runs, where the messages waiting
 * (todo_of[i], or all if NULL) would go, the first `limit` one by one,
 * then a count per target; their headers read with TOP n 0. */
enum result	 route_show(const struct account *, struct pop3 *,
		     const struct pop3_msg *, unsigned int, const bool *,
		     unsigned int, char **);

/* What one message can make route_decide do, at most. */
#define ROUTE_LINES_MAX	1000	/* header lines looked at */
#define ROUTE_VALUE_MAX	16384	/* bytes of a value, unfolded (cut there) */
#define ROUTE_INSTANCES_MAX 64	/* instances of one header a test tries */
#define ROUTE_ADDRS_MAX	256	/* addresses a test looks at (a recipient
				 * rule; a multidrop header; To and Cc) */
#define ROUTE_ADDR_MAX	320	/* bytes of an address (a longer one: none) */
/* What a config may hold (config_route.c). */
#define ROUTE_DESTS_MAX	64	/* destinations of an account */
#define ROUTE_RULES_MAX	500	/* rules of an account */
#define ROUTE_MAP_MAX	500	/* multidrop map entries */
#define ROUTE_HEADERS_MAX 16	/* multidrop envelope headers */
#define ROUTE_NONE	((size_t)-1)

/* The mailbox a destination (0: the account's imap) delivers to when a
 * rule or map entry names none. */
const char	*route_dest_mailbox(const struct account *, size_t);
/* The index of the target (dest, mailbox) in routing.targets, or
 * ROUTE_NONE.  Mailbox names compare as written, but INBOX in any case
 * is one mailbox (RFC 3501 5.1). */
size_t		 routing_target(const struct routing *, size_t, const char *);
/* Are these two the same mailbox, as routing_target compares them? */
bool		 route_same_mailbox(const char *, const char *);

/* The text of a header value, for route.c (route_text.c; pure, bounded). */
/* The encoded-words of in[0, n) decoded (RFC 2047) into out, a C string
 * of at most outsz - 1 bytes; its length. */
size_t		 route_decode_words(const char *, size_t, char *, size_t);
/* Each address of the address list in v[0, n) to cb while *left
 * (counted down) allows; true if cb asked to stop. */
bool		 route_addr_each(const char *, size_t, size_t *,
		     bool (*)(void *, const char *), void *);

#endif
