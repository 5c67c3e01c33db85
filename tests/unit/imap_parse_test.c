// link: bridge/imap_parse.c
/*
 * bridge/imap_parse.c: status responses with response codes, APPENDUID,
 * capabilities, numbers, mailbox quoting and FETCH responses.  FETCH
 * responses are parsed from exact-size copies that are not NUL-terminated
 * (the parser takes a length), so AddressSanitizer sees any read past it.
 */
#include "bridge.h"
#include "unit.h"

#define S(s)	s, sizeof(s) - 1

/* ---- imap_parse_status ---- */

struct scase {
	const char	*in;
	bool		 ok;
	enum imap_status status;
	const char	*code;
	const char	*arg;
	const char	*text;
};

static const struct scase status_cases[] = {
	{ "OK done", true, IMAP_OK, "", "", "done" },
	{ "ok done", true, IMAP_OK, "", "", "done" },
	{ "Ok done", true, IMAP_OK, "", "", "done" },
	{ "OK", true, IMAP_OK, "", "", "" },
	{ "NO", true, IMAP_NO, "", "", "" },
	{ "OK  two spaces", true, IMAP_OK, "", "", "two spaces" },
	{ "NO [TRYCREATE] Mailbox doesn't exist: Foo", true, IMAP_NO,
	    "TRYCREATE", "", "Mailbox doesn't exist: Foo" },
	{ "no [trycreate] lower", true, IMAP_NO, "TRYCREATE", "", "lower" },
	{ "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)", true,
	    IMAP_NO, "OVERQUOTA", "",
	    "Quota exceeded (mailbox for user is full)" },
	{ "BAD [PARSE] Invalid arguments.", true, IMAP_BAD, "PARSE", "",
	    "Invalid arguments." },
	{ "BAD Error in IMAP command", true, IMAP_BAD, "", "",
	    "Error in IMAP command" },
	{ "bad x", true, IMAP_BAD, "", "", "x" },
	{ "BYE Logging out", true, IMAP_BYE, "", "", "Logging out" },
	{ "BYE [UNAVAILABLE] Server shutting down", true, IMAP_BYE,
	    "UNAVAILABLE", "", "Server shutting down" },
	{ "bye", true, IMAP_BYE, "", "", "" },
	{ "PREAUTH [CAPABILITY IMAP4rev1] Logged in as x", true,
	    IMAP_PREAUTH, "CAPABILITY", "IMAP4rev1", "Logged in as x" },
	{ "OK [APPENDUID 38505 3955] APPEND completed", true, IMAP_OK,
	    "APPENDUID", "38505 3955", "APPEND completed" },
	{ "OK [appenduid 1 2:4] Append", true, IMAP_OK, "APPENDUID", "1 2:4",
	    "Append" },
	{ "OK [READ-WRITE] Select completed", true, IMAP_OK, "READ-WRITE",
	    "", "Select completed" },
	{ "OK [UIDVALIDITY 3857529045] UIDs valid", true, IMAP_OK,
	    "UIDVALIDITY", "3857529045", "UIDs valid" },
	{ "OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited", true, IMAP_OK,
	    "PERMANENTFLAGS", "(\\Deleted \\Seen \\*)", "Limited" },
	{ "OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS] ready", true, IMAP_OK,
	    "CAPABILITY", "IMAP4rev1 LITERAL+ UIDPLUS", "ready" },
	{ "OK [ALERT] System shutdown in 10 minutes", true, IMAP_OK, "ALERT",
	    "", "System shutdown in 10 minutes" },
	{ "OK [ALERT]", true, IMAP_OK, "ALERT", "", "" },
	{ "OK [ALERT]text", true, IMAP_OK, "ALERT", "", "text" },
	{ "OK [HIGHESTMODSEQ 1]  x", true, IMAP_OK, "HIGHESTMODSEQ", "1",
	    "x" },
	{ "OK [ALERT text", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OK [", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OK []", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OK [ ALERT] x", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OK[ALERT] x", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OKAY done", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "OK\tdone", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "O", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "NOPE", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "FOO bar", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ " OK", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "* OK", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "a1 OK done", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "1 EXISTS", false, IMAP_UNKNOWN, NULL, NULL, NULL },
	{ "CAPABILITY IMAP4rev1", false, IMAP_UNKNOWN, NULL, NULL, NULL },
};

static void
test_status(const void *arg)
{
	const struct scase *c;
	struct imap_reply r;
	size_t		 i;
	bool		 ok;

	(void)arg;
	for (i = 0; i < NELEM(status_cases); i++) {
		c = &status_cases[i];
		ok = imap_parse_status(c->in, &r);
		CHECK(ok == c->ok, "imap_parse_status(%s) returned %d",
		    unit_sesc(c->in), ok);
		if (!ok || !c->ok)
			continue;
		CHECK(r.status == c->status, "imap_parse_status(%s): status "
		    "%d, want %d", unit_sesc(c->in), r.status, c->status);
		CHECK_STR(r.code, c->code, c->in);
		CHECK(r.code_arglen == strlen(c->arg) &&
		    strncmp(r.code_arg, c->arg, r.code_arglen) == 0,
		    "imap_parse_status(%s): code argument %.*s, want %s",
		    unit_sesc(c->in), (int)r.code_arglen, r.code_arg, c->arg);
		CHECK_STR(r.text, c->text, c->in);
	}
}

/* Response codes fill at most 63 bytes; arguments are never cut. */
static void
test_status_bounds(const void *arg)
{
	struct imap_reply r;
	char		 code[80], line[600];
	bool		 ok;

	(void)arg;
	memset(code, 'C', sizeof code);
	code[63] = '\0';
	snprintf(line, sizeof line, "OK [%s] x", code);
	ok = imap_parse_status(line, &r);
	CHECK(ok && strcmp(r.code, code) == 0 && strcmp(r.text, "x") == 0,
	    "63-byte response code: returned %d, code %zu bytes", ok,
	    strlen(r.code));

	code[63] = 'C';
	code[64] = '\0';
	snprintf(line, sizeof line, "OK [%s] x", code);
	CHECK(!imap_parse_status(line, &r), "64-byte response code accepted");

	memset(line, 'a', sizeof line);
	memcpy(line, "NO [X ", 6);
	memcpy(line + 500, "] y", 4);
	ok = imap_parse_status(line, &r);
	/* A long uid-set in APPENDUID once came out cut, and a wrong UID
	 * was recorded: the argument is whole. */
	CHECK(ok && r.status == IMAP_NO && strcmp(r.code, "X") == 0 &&
	    r.code_arglen == 494 && r.code_arg == line + 6 &&
	    strcmp(r.text, "y") == 0, "494-byte code argument: returned %d, "
	    "argument %zu bytes (want 494), text %s", ok, r.code_arglen,
	    unit_sesc(r.text));
}

/* ---- imap_parse_appenduid ---- */

static void
test_appenduid(const void *arg)
{
	static const struct {
		const char	*in;
		bool		 ok;
		uint32_t	 uidvalidity, uid;
	} cases[] = {
		{ "1 5", true, 1, 5 },
		{ "38505 3955", true, 38505, 3955 },
		{ "1 4:5", true, 1, 4 },
		{ "1 4,6", true, 1, 4 },
		{ "4294967295 4294967295", true, 4294967295u, 4294967295u },
		{ "0 5", false, 0, 0 },
		{ "1 0", false, 0, 0 },
		{ "4294967296 5", false, 0, 0 },
		{ "1 4294967296", false, 0, 0 },
		{ "1", false, 0, 0 },
		{ "1 ", false, 0, 0 },
		{ " 1 5", false, 0, 0 },
		{ "1  5", false, 0, 0 },
		{ "1 5 ", false, 0, 0 },
		{ "1 5x", false, 0, 0 },
		{ "1 :5", false, 0, 0 },
		{ "a 5", false, 0, 0 },
		{ "1 b", false, 0, 0 },
		{ "-1 5", false, 0, 0 },
		{ "1 -5", false, 0, 0 },
		{ "1 *", false, 0, 0 },
		{ "", false, 0, 0 },
		{ "99999999999999999999 1", false, 0, 0 },
	};
	uint32_t	 v, u;
	size_t		 i;
	bool		 ok;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		v = u = 4242;
		ok = imap_parse_appenduid(cases[i].in, &v, &u);
		CHECK(ok == cases[i].ok, "imap_parse_appenduid(%s) returned %d",
		    unit_sesc(cases[i].in), ok);
		if (ok && cases[i].ok)
			CHECK(v == cases[i].uidvalidity && u == cases[i].uid,
			    "imap_parse_appenduid(%s) = %u %u",
			    unit_sesc(cases[i].in), v, u);
	}
}

/* ---- imap_has_cap ---- */

static void
test_has_cap(const void *arg)
{
	static const char caps[] = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
	    "ENABLE IDLE LITERAL+ AUTH=PLAIN UIDPLUS APPENDLIMIT=10240000";
	static const struct {
		const char	*caps;
		const char	*name;
		bool		 want;
	} cases[] = {
		{ caps, "IMAP4rev1", true },
		{ caps, "imap4rev1", true },
		{ caps, "LITERAL+", true },
		{ caps, "literal+", true },
		{ caps, "UIDPLUS", true },
		{ caps, "ID", true },
		{ caps, "AUTH=PLAIN", true },
		{ caps, "APPENDLIMIT=10240000", true },
		{ caps, "LITERAL", false },
		{ caps, "LITERAL-", false },
		{ caps, "SASL", false },
		{ caps, "IMAP4", false },
		{ caps, "PLAIN", false },
		{ caps, "AUTH", false },
		{ caps, "APPENDLIMIT", false },
		{ caps, "MULTIAPPEND", false },
		{ caps, "UIDPLUSX", false },
		{ caps, "IDLE ENABLE", false },
		{ "[CAPABILITY IMAP4rev1 UIDPLUS] Ready", "UIDPLUS", true },
		{ "[CAPABILITY IMAP4rev1 UIDPLUS] Ready", "IMAP4rev1", true },
		{ "[CAPABILITY IMAP4rev1 UIDPLUS] Ready", "Ready", true },
		{ "  BINARY  ", "BINARY", true },
		{ "BINARY", "BINARY", true },
		{ "BINARYX BINAR", "BINARY", false },
		{ "", "BINARY", false },
		{ "MULTI APPEND", "MULTIAPPEND", false },
	};
	size_t	 i;
	bool	 got;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		got = imap_has_cap(cases[i].caps, cases[i].name);
		CHECK(got == cases[i].want, "imap_has_cap(%s, \"%s\") = %d",
		    unit_sesc(cases[i].caps), cases[i].name, got);
	}
}

/* ---- imap_parse_number ---- */

static void
test_number(const void *arg)
{
	static const struct {
		const char	*in;
		size_t		 len;
		bool		 ok;
		uint64_t	 v;
	} cases[] = {
		{ S("0"), true, 0 },
		{ S("7"), true, 7 },
		{ S("007"), true, 7 },
		{ S("4294967296"), true, 4294967296ULL },
		{ S("9999999999999999999"), true, 9999999999999999999ULL },
		{ "12345", 3, true, 123 },
		{ S("18446744073709551615"), false, 0 },
		{ S("99999999999999999999"), false, 0 },
		{ S(""), false, 0 },
		{ S("-1"), false, 0 },
		{ S("+1"), false, 0 },
		{ S(" 1"), false, 0 },
		{ S("1 "), false, 0 },
		{ S("12a"), false, 0 },
		{ S("0x10"), false, 0 },
	};
	uint64_t v;
	size_t	 i;
	bool	 ok;
	char	*copy;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		copy = xmalloc(cases[i].len + 1);
		memcpy(copy, cases[i].in, cases[i].len);
		v = 4242;
		ok = imap_parse_number(copy, cases[i].len, &v);
		CHECK(ok == cases[i].ok, "imap_parse_number(%s) returned %d",
		    unit_esc(cases[i].in, cases[i].len), ok);
		if (ok && cases[i].ok)
			CHECK(v == cases[i].v, "imap_parse_number(%s) = %llu",
			    unit_esc(cases[i].in, cases[i].len),
			    (unsigned long long)v);
		free(copy);
	}
}

/* ---- imap_quote ---- */

static void
test_quote(const void *arg)
{
	static const struct {
		const char	*in;
		const char	*want;	/* NULL: cannot be quoted */
	} cases[] = {
		{ "INBOX", "\"INBOX\"" },
		{ "", "\"\"" },
		{ "Archive/2024", "\"Archive/2024\"" },
		{ "Sent Items", "\"Sent Items\"" },
		{ "a\"b", "\"a\\\"b\"" },
		{ "a\\b", "\"a\\\\b\"" },
		{ "\"\\", "\"\\\"\\\\\"" },
		{ "Entw&APw-rfe", "\"Entw&APw-rfe\"" },
		{ "(){%*]", "\"(){%*]\"" },
		{ "~", "\"~\"" },
		{ "Entw\xc3\xbcrfe", NULL },
		{ "\x80", NULL },
		{ "a\x7f", NULL },
		{ "a\tb", NULL },
		{ "a\r\nb", NULL },
		{ "\x1f", NULL },
	};
	size_t	 i;
	char	*q;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		q = imap_quote(cases[i].in);
		CHECK_STR(q, cases[i].want, unit_sesc(cases[i].in));
		free(q);
	}
}

/* ---- imap_mailbox_encode, imap_quote_mailbox ---- */

/*
 * Before the fix there was no encoder: a UTF-8 name was refused at load
 * ("write it in modified UTF-7"), and an ASCII name went to the server as
 * written, valid or not ("bad&utf7", "INBOX.", "~tilde": exit 75 at every
 * run instead of a config error).
 */
static void
test_mailbox_encode(const void *arg)
{
	static const struct {
		const char	*in;
		const char	*wire;	/* NULL: refused */
		const char	*why;	/* a part of the refusal */
	} cases[] = {
		{ "INBOX", "INBOX", NULL },
		{ "Archive/2024", "Archive/2024", NULL },
		{ "INBOX.Sent", "INBOX.Sent", NULL },
		{ "Sent Items", "Sent Items", NULL },
		{ "a\"b\\c", "a\"b\\c", NULL },
		{ "a~b", "a~b", NULL },
		/* UTF-8 is encoded; "&" in it is the letter. */
		{ "Entw\xc3\xbcrfe", "Entw&APw-rfe", NULL },
		{ "\xc3\xa4\xc3\xa4", "&AOQA5A-", NULL },
		{ "\xe5\x8f\xb0\xe5\x8c\x97", "&U,BTFw-", NULL },	/* RFC 3501 */
		{ "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "&ZeVnLIqe-", NULL },
		{ "\xf0\x9f\x98\x80", "&2D3eAA-", NULL },	/* a surrogate pair */
		{ "Entw\xc3\xbcrfe & Co", "Entw&APw-rfe &- Co", NULL },
		{ "\xc3\xbc&APw-", "&APw-&-APw-", NULL },
		{ "caf\xc3\xa9/\xc3\xa9t\xc3\xa9", "caf&AOk-/&AOk-t&AOk-", NULL },
		/* ASCII is modified UTF-7 already: passed through if valid. */
		{ "Entw&APw-rfe", "Entw&APw-rfe", NULL },
		{ "&AOQA5A-", "&AOQA5A-", NULL },
		{ "&U,BTFw-/&ZeVnLIqe-", "&U,BTFw-/&ZeVnLIqe-", NULL },
		{ "&2D3eAA-", "&2D3eAA-", NULL },
		{ "R&-D", "R&-D", NULL },
		{ "&-", "&-", NULL },
		{ "bad&utf7", NULL, "modified UTF-7" },
		{ "R&D", NULL, "\"&-\"" },
		{ "Tom & Jerry", NULL, "modified UTF-7" },
		{ "&", NULL, "modified UTF-7" },
		{ "a&", NULL, "modified UTF-7" },
		{ "&AOQ", NULL, "modified UTF-7" },		/* no "-" */
		{ "&AOQ-&AOQ-", NULL, "modified UTF-7" },	/* two shifts */
		{ "&AEE-", NULL, "modified UTF-7" },		/* "A" encoded */
		{ "&ACY-", NULL, "modified UTF-7" },		/* "&" encoded */
		{ "&AOR-", NULL, "modified UTF-7" },		/* bits left set */
		{ "&AOQA-", NULL, "modified UTF-7" },		/* a char too many */
		{ "&2D0-", NULL, "modified UTF-7" },		/* lone high half */
		{ "&3gA-", NULL, "modified UTF-7" },		/* lone low half */
		{ "&AOQ=-", NULL, "modified UTF-7" },		/* not base64 */
		{ "&AOQ/-", NULL, "modified UTF-7" },		/* "/" is not "," */
		{ "&AAk-", NULL, "control" },			/* a TAB */
		/* Not UTF-8. */
		{ "\xc3", NULL, "UTF-8" },
		{ "Entw\xfcrfe", NULL, "UTF-8" },		/* Latin-1 */
		{ "\xc0\xaf", NULL, "UTF-8" },			/* overlong */
		{ "\xe0\x80\xaf", NULL, "UTF-8" },		/* overlong */
		{ "\xed\xa0\x80", NULL, "UTF-8" },		/* a surrogate */
		{ "\xf4\x90\x80\x80", NULL, "UTF-8" },		/* above U+10FFFF */
		{ "\xff", NULL, "UTF-8" },
		{ "\xc3\xbc\x80", NULL, "UTF-8" },
		/* Control characters, empty, separators, "~". */
		{ "", NULL, "empty" },
		{ "a\tb", NULL, "control" },
		{ "a\r\nb", NULL, "control" },
		{ "a\x7f", NULL, "control" },
		{ "\xc2\x85", NULL, "control" },			/* C1 NEL */
		{ "\xc3\xbc\t", NULL, "control" },
		{ "INBOX.", NULL, "separator" },
		{ "Archive/", NULL, "separator" },
		{ "\xc3\xbc.", NULL, "separator" },
		{ "~tilde", NULL, "\"~\"" },
	};
	const char	*why;
	char		*wire, *again;
	size_t		 i;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		why = imap_mailbox_encode(cases[i].in, &wire);
		CHECK_STR(wire, cases[i].wire, unit_sesc(cases[i].in));
		if (cases[i].wire == NULL)
			CHECK(why != NULL && strstr(why, cases[i].why) != NULL,
			    "%s: refused with %s, want \"%s\"",
			    unit_sesc(cases[i].in), unit_sesc(why), cases[i].why);
		else
			CHECK(why == NULL, "%s: %s", unit_sesc(cases[i].in), why);
		/* The wire form, written in the config, is the same mailbox. */
		if (wire != NULL) {
			CHECK(imap_mailbox_encode(wire, &again) == NULL &&
			    again != NULL && strcmp(again, wire) == 0,
			    "%s: its wire form %s is not sent as it is",
			    unit_sesc(cases[i].in), wire);
			free(again);
		}
		free(wire);
	}
}

/* At most IMAP_MAILBOX_MAX bytes as sent, whatever the bytes configured. */
static void
test_mailbox_length(const void *arg)
{
	char		 name[1024], *wire;
	const char	*why;
	size_t		 i;

	(void)arg;
	memset(name, 'x', 255);
	name[255] = '\0';
	why = imap_mailbox_encode(name, &wire);
	CHECK(why == NULL && wire != NULL && strlen(wire) == 255,
	    "255 ASCII bytes: %s", unit_sesc(why));
	free(wire);
	name[255] = 'x';
	name[256] = '\0';
	why = imap_mailbox_encode(name, &wire);
	CHECK(wire == NULL && why != NULL && strstr(why, "255") != NULL,
	    "256 ASCII bytes: %s", unit_sesc(why));
	memset(name, 'x', 300);
	name[300] = '\0';
	why = imap_mailbox_encode(name, &wire);
	CHECK(wire == NULL && why != NULL, "300 bytes (Dovecot: too long)");
	/* 80 "ü": 160 bytes, "&" + 214 + "-" = 216 sent; 100: 269 sent. */
	for (i = 0; i < 100; i++)
		memcpy(name + 2 * i, "\xc3\xbc", 2);
	name[160] = '\0';
	why = imap_mailbox_encode(name, &wire);
	CHECK(why == NULL && wire != NULL && strlen(wire) == 216,
	    "80 u-umlauts: %s, %zu bytes", unit_sesc(why),
	    wire != NULL ? strlen(wire) : 0);
	free(wire);
	name[160] = '\xc3';
	name[200] = '\0';
	why = imap_mailbox_encode(name, &wire);
	CHECK(wire == NULL && why != NULL && strstr(why, "255") != NULL,
	    "100 u-umlauts (200 bytes, 269 sent): %s", unit_sesc(why));
}

static void
test_quote_mailbox(const void *arg)
{
	static const struct {
		const char	*in, *want;
	} cases[] = {
		{ "INBOX", "\"INBOX\"" },
		{ "Entw\xc3\xbcrfe", "\"Entw&APw-rfe\"" },
		{ "Entw&APw-rfe", "\"Entw&APw-rfe\"" },
		{ "a\"b \xc3\xa4", "\"a\\\"b &AOQ-\"" },
		{ "bad&utf7", NULL },
		{ "", NULL },
	};
	const char	*why;
	char		*q;
	size_t		 i;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		why = NULL;
		q = imap_quote_mailbox(cases[i].in, &why);
		CHECK_STR(q, cases[i].want, unit_sesc(cases[i].in));
		CHECK((q == NULL) == (why != NULL), "%s: why %s",
		    unit_sesc(cases[i].in), unit_sesc(why));
		free(q);
	}
}

/* ---- imap_parse_fetch ---- */

struct fcase {
	const char	*name;
	const char	*resp;
	size_t		 len;
	bool		 ok;
	uint32_t	 uid;
	bool		 have_size;
	uint64_t	 size;
	bool		 have_body;
	const char	*body;
	size_t		 bodylen;
};

#define NOBODY	false, NULL, 0
#define BODY(s)	true, s, sizeof(s) - 1
#define FBAD	false, 0, false, 0, NOBODY

static const struct fcase fetch_cases[] = {
	{ "usual", S("* 1 FETCH (UID 5 RFC822.SIZE 10 BODY[]<0> {3}\r\nabc)"),
	    true, 5, true, 10, BODY("abc") },
	{ "body first", S("* 1 FETCH (BODY[]<0> {3}\r\nabc UID 5 "
	    "RFC822.SIZE 10)"), true, 5, true, 10, BODY("abc") },
	{ "size first", S("* 12 FETCH (RFC822.SIZE 10 BODY[]<0> {3}\r\nabc "
	    "UID 5)"), true, 5, true, 10, BODY("abc") },
	{ "lower case", S("* 1 fetch (uid 5 rfc822.size 10 body[]<0> "
	    "{3}\r\nabc)"), true, 5, true, 10, BODY("abc") },
	{ "BODY[] without origin", S("* 1 FETCH (UID 5 BODY[] {3}\r\nabc)"),
	    true, 5, false, 0, BODY("abc") },
	{ "empty literal", S("* 1 FETCH (UID 5 BODY[]<0> {0}\r\n)"), true, 5,
	    false, 0, BODY("") },
	{ "literal with IMAP syntax inside", S("* 1 FETCH (UID 5 BODY[]<0> "
	    "{19}\r\na) UID 6 {9}\r\n\"(\r\n[)"), true, 5, false, 0,
	    BODY("a) UID 6 {9}\r\n\"(\r\n[") },
	{ "literal with NUL", S("* 1 FETCH (BODY[]<0> {3}\r\na\0b UID 5)"),
	    true, 5, false, 0, BODY("a\0b") },
	{ "NIL body", S("* 1 FETCH (UID 5 RFC822.SIZE 0 BODY[]<0> NIL)"),
	    true, 5, true, 0, NOBODY },
	{ "quoted body", S("* 1 FETCH (UID 5 RFC822.SIZE 3 BODY[]<0> "
	    "\"abc\")"), true, 5, true, 3, BODY("abc") },
	{ "quoted empty body", S("* 1 FETCH (UID 5 RFC822.SIZE 0 BODY[]<0> "
	    "\"\")"), true, 5, true, 0, BODY("") },
	{ "quoted body with specials", S("* 1 FETCH (BODY[]<0> \"a (b) {1}\" "
	    "UID 5)"), true, 5, false, 0, BODY("a (b) {1}") },
	{ "only UID", S("* 3 FETCH (UID 5)"), true, 5, false, 0, NOBODY },
	{ "no items", S("* 3 FETCH ()"), true, 0, false, 0, NOBODY },
	{ "FLAGS skipped", S("* 1 FETCH (FLAGS (\\Seen \\Recent) UID 5)"),
	    true, 5, false, 0, NOBODY },
	{ "empty FLAGS skipped", S("* 1 FETCH (FLAGS () UID 5)"), true, 5,
	    false, 0, NOBODY },
	{ "INTERNALDATE skipped", S("* 1 FETCH (INTERNALDATE "
	    "\"17-Jul-1996 02:44:25 -0700\" UID 5)"), true, 5, false, 0,
	    NOBODY },
	{ "MODSEQ skipped", S("* 1 FETCH (MODSEQ (12345) UID 5)"), true, 5,
	    false, 0, NOBODY },
	{ "nested lists and literal skipped", S("* 1 FETCH (X-THING ((a "
	    "\"b)\" {4}\r\n))((\r\n NIL) (c)) UID 5 RFC822.SIZE 7)"), true, 5,
	    true, 7, NOBODY },
	{ "ENVELOPE skipped", S("* 1 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 "
	    "10:00:00 +0000\" \"subj (x\" ((NIL NIL \"a\" \"b.c\")) NIL NIL "
	    "NIL NIL NIL NIL \"<id@x>\") UID 5)"), true, 5, false, 0,
	    NOBODY },
	{ "escaped quote skipped", S("* 1 FETCH (X \"a\\\"b) (\" UID 5)"),
	    true, 5, false, 0, NOBODY },
	/* The Message-ID scan of first contact (adopt.c) asks for it. */
	{ "BODY[HEADER.FIELDS] is the body", S("* 1 FETCH (BODY[HEADER.FIELDS "
	    "(DATE FROM)] {6}\r\nDate:) UID 5)"), true, 5, false, 0,
	    BODY("Date:)") },
	{ "BODY[TEXT] is not BODY[]", S("* 1 FETCH (BODY[TEXT] {3}\r\nxyz "
	    "UID 5)"), true, 5, false, 0, NOBODY },
	{ "data after the list", S("* 1 FETCH (UID 5) trailing"), true, 5,
	    false, 0, NOBODY },

	{ "no star", S("1 FETCH (UID 5)"), FBAD },
	{ "no space after star", S("*1 FETCH (UID 5)"), FBAD },
	{ "sequence number 0", S("* 0 FETCH (UID 5)"), FBAD },
	{ "no sequence number", S("* FETCH (UID 5)"), FBAD },
	{ "not FETCH", S("* 1 FETCHES (UID 5)"), FBAD },
	{ "EXISTS", S("* 1 EXISTS"), FBAD },
	{ "no paren", S("* 1 FETCH UID 5"), FBAD },
	{ "unclosed list", S("* 1 FETCH (UID 5"), FBAD },
	{ "unclosed list after space", S("* 1 FETCH (UID 5 "), FBAD },
	{ "UID 0", S("* 1 FETCH (UID 0)"), FBAD },
	{ "UID too big", S("* 1 FETCH (UID 4294967296)"), FBAD },
	{ "UID not a number", S("* 1 FETCH (UID x)"), FBAD },
	{ "UID without value", S("* 1 FETCH (UID)"), FBAD },
	{ "size not a number", S("* 1 FETCH (RFC822.SIZE NIL)"), FBAD },
	{ "literal longer than the data", S("* 1 FETCH (UID 5 BODY[]<0> "
	    "{10}\r\nabc)"), FBAD },
	{ "huge literal", S("* 1 FETCH (UID 5 BODY[]<0> "
	    "{18446744073709551615}\r\nabc)"), FBAD },
	{ "literal cut short", S("* 1 FETCH (UID 5 BODY[]<0> {3}\r\nab"),
	    FBAD },
	{ "literal shorter than claimed data", S("* 1 FETCH (UID 5 "
	    "BODY[]<0> {2}\r\nabc)"), FBAD },
	{ "literal without CRLF", S("* 1 FETCH (UID 5 BODY[]<0> {3}abc)"),
	    FBAD },
	{ "literal with LF only", S("* 1 FETCH (UID 5 BODY[]<0> {3}\nabc)"),
	    FBAD },
	{ "literal without digits", S("* 1 FETCH (UID 5 BODY[]<0> {}\r\n)"),
	    FBAD },
	{ "literal not closed", S("* 1 FETCH (UID 5 BODY[]<0> {3"), FBAD },
	{ "literal at the very end", S("* 1 FETCH (UID 5 BODY[]<0> {"),
	    FBAD },
	{ "quoted body unterminated", S("* 1 FETCH (UID 5 BODY[]<0> "
	    "\"abc)"), FBAD },
	{ "quoted body with CRLF", S("* 1 FETCH (UID 5 BODY[]<0> "
	    "\"a\r\nb\")"), FBAD },
	{ "quoted body at the very end", S("* 1 FETCH (UID 5 BODY[]<0> \""),
	    FBAD },
	{ "no body value", S("* 1 FETCH (UID 5 BODY[]<0> )"), FBAD },
	{ "BODY[] at the very end", S("* 1 FETCH (UID 5 BODY[]<0> "), FBAD },
	{ "unknown item literal lies", S("* 1 FETCH (X {9}\r\nab UID 5)"),
	    FBAD },
	{ "unknown item literal cut", S("* 1 FETCH (X {3}\r\n"), FBAD },
	{ "unknown item unclosed list", S("* 1 FETCH (X (a (b) UID 5)"),
	    FBAD },
	{ "unknown item unclosed quote", S("* 1 FETCH (X \"abc UID 5)"),
	    FBAD },
	{ "quote ends in backslash", S("* 1 FETCH (X \"abc\\"), FBAD },
	{ "item name at the end", S("* 1 FETCH (UID"), FBAD },
	{ "bracket not closed", S("* 1 FETCH (BODY[HEADER UID 5)"), FBAD },
	{ "empty", S(""), FBAD },
	{ "star only", S("*"), FBAD },
};

static void
fetch_one(const void *arg)
{
	const struct fcase *c = arg;
	struct imap_fetch f;
	char		*copy;
	bool		 ok;

	/* Exactly len bytes: no NUL after them to hide an overread. */
	copy = xmalloc(c->len == 0 ? 1 : c->len);
	memcpy(copy, c->resp, c->len);
	ok = imap_parse_fetch(copy, c->len, &f);
	CHECK(ok == c->ok, "imap_parse_fetch %s: returned %d", c->name, ok);
	if (ok && c->ok) {
		CHECK(f.uid == c->uid, "%s: uid %u, want %u", c->name, f.uid,
		    c->uid);
		CHECK(f.have_size == c->have_size && (!c->have_size ||
		    f.size == c->size), "%s: have_size %d size %llu, want %d "
		    "%llu", c->name, f.have_size, (unsigned long long)f.size,
		    c->have_size, (unsigned long long)c->size);
		CHECK(f.have_body == c->have_body, "%s: have_body %d, want %d",
		    c->name, f.have_body, c->have_body);
		if (f.have_body && c->have_body) {
			CHECK_MEM(f.body, f.bodylen, c->body, c->bodylen,
			    c->name);
			CHECK(f.body >= copy && f.body + f.bodylen <= copy +
			    c->len, "%s: body does not point into the response",
			    c->name);
		}
	}
	free(copy);
}

static void
test_fetch(const void *arg)
{
	size_t	 i;
	char	 name[96];

	(void)arg;
	/* One child each: an overread is that case's failure only. */
	for (i = 0; i < NELEM(fetch_cases); i++) {
		snprintf(name, sizeof name, "imap_parse_fetch %s",
		    fetch_cases[i].name);
		UNIT_ISOLATED(name, fetch_one, &fetch_cases[i]);
	}
}

/*
 * A quoted body with an escape cannot point into the response as it is:
 * it must be either refused or decoded, never turned into an empty body.
 */
static void
test_fetch_quoted_escape(const void *arg)
{
	static const char resp[] = "* 1 FETCH (UID 5 RFC822.SIZE 3 BODY[]<0> "
	    "\"a\\\"b\")";
	struct imap_fetch f;
	bool		 ok;

	(void)arg;
	ok = imap_parse_fetch(resp, sizeof resp - 1, &f);
	CHECK(!ok || (f.have_body && f.bodylen == 3 &&
	    memcmp(f.body, "a\"b", 3) == 0), "quoted body with an escape: "
	    "returned %d have_body %d body %s", ok, f.have_body,
	    f.have_body ? unit_esc(f.body, f.bodylen) : "-");
}

int
main(void)
{
	UNIT_ISOLATED("imap_parse_status", test_status, NULL);
	UNIT_ISOLATED("imap_parse_status bounds", test_status_bounds, NULL);
	UNIT_ISOLATED("imap_parse_appenduid", test_appenduid, NULL);
	UNIT_ISOLATED("imap_has_cap", test_has_cap, NULL);
	UNIT_ISOLATED("imap_parse_number", test_number, NULL);
	UNIT_ISOLATED("imap_quote", test_quote, NULL);
	UNIT_ISOLATED("imap_mailbox_encode", test_mailbox_encode, NULL);
	UNIT_ISOLATED("imap_mailbox_encode length", test_mailbox_length, NULL);
	UNIT_ISOLATED("imap_quote_mailbox", test_quote_mailbox, NULL);
	test_fetch(NULL);
	UNIT_ISOLATED("imap_parse_fetch quoted escape",
	    test_fetch_quoted_escape, NULL);
	return UNIT_END();
}
