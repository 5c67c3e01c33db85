// link: bridge/config.c bridge/account_valid.c bridge/config_keys.c bridge/config_endpoint.c bridge/config_gmail.c bridge/config_url.c bridge/config_proxy.c bridge/config_secfile.c bridge/config_read.c bridge/config_secret.c bridge/config_listen.c bridge/config_route.c bridge/route.c bridge/route_text.c bridge/codec.c bridge/ident.c bridge/imap_parse.c
// pkg: libconfig
/*
 * bridge/config.c: config_load on files written to a temporary folder
 * (valid ones with every field checked, and a table of broken ones with
 * the result class, the "FILE:LINE:" at the start of the cause and a part
 * of the message), file permissions, and config_secret from each source.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>

#include "bridge.h"
#define TESTLIB_CONFIG
#include "testlib.h"

/*
 * The account block; lines 1-5 are fixed, the extra lines start on line
 * 6, and top-level keys come after the list (line 8 with no extra lines).
 */
#define ACCT(pop, imap, extra)						\
	"accounts = (\n"						\
	" {\n"								\
	"  name = \"alice\";\n"						\
	"  pop3 = { " pop " };\n"					\
	"  imap = { " imap " };\n"					\
	extra								\
	" }\n"								\
	");\n"
#define CONF(pop, imap, extra, top)	ACCT(pop, imap, extra) top

#define P_URL	"url = \"pop3s://pop.example.org\"; "
#define P_OK	P_URL "user = \"alice\"; password = \"pw\";"
#define I_URL	"url = \"imaps://imap.example.org\"; "
#define I_OK	I_URL "user = \"alice@example.org\"; password = \"pw2\";"
#define WITH_PURL(u)	"url = \"" u "\"; user = \"alice\"; password = \"pw\";"
#define WITH_IURL(u)	"url = \"" u "\"; user = \"a\"; password = \"pw\";"

/* ---- valid files ---- */

static struct config *
load_ok(const char *what, const char *text, mode_t mode)
{
	return load_config(what, "popbridge.conf", text, mode);
}

static void
test_minimal(const void *arg)
{
	struct config	*cf;
	const struct account *ac;
	char		*want;

	(void)arg;
	/* A password_file must be there (and private) for the config to
	 * load: `check -n` says what `run` would meet. */
	free(write_file("imap.pass", "pw2\n", 0600));
	cf = load_ok("minimal", ACCT(P_OK, I_URL "user = \"alice@example.org\";"
	    " password_file = \"imap.pass\";", ""), 0600);
	if (cf == NULL)
		return;
	want = xprintf("%s/popbridge.conf", tmpdir);
	CHECK_STR(cf->path, want, "path");
	free(want);
	CHECK_STR(cf->state_dir, "/var/lib/popbridge", "default state_dir");
	CHECK(cf->timeout == 120, "default timeout %ld", cf->timeout);
	CHECK(cf->naccounts == 1, "naccounts %zu", cf->naccounts);
	if (cf->naccounts != 1) {
		config_free(cf);
		return;
	}
	ac = &cf->accounts[0];
	CHECK_STR(ac->name, "alice", "name");
	CHECK(ac->line == 2, "account line %d, want 2", ac->line);
	CHECK(ac->keep, "keep defaults to true");
	CHECK_STR(ac->flags, "", "default flags");

	CHECK(!ac->pop3.imap, "pop3 block marked imap");
	CHECK_STR(ac->pop3.url, "pop3s://pop.example.org", "pop3 url");
	CHECK_STR(ac->pop3.host, "pop.example.org", "pop3 host");
	CHECK(ac->pop3.port == 995, "pop3s port %d", ac->pop3.port);
	CHECK(ac->pop3.tls == TLS_IMPLICIT, "pop3s tls %d", ac->pop3.tls);
	CHECK_STR(ac->pop3.user, "alice", "pop3 user");
	CHECK_STR(ac->pop3.password, "pw", "pop3 password");
	CHECK(ac->pop3.password_file == NULL && ac->pop3.password_command ==
	    NULL, "pop3: only the password is set");
	CHECK(ac->pop3.ca_file == NULL && ac->pop3.auth == NULL,
	    "pop3: ca_file and auth default to NULL");
	CHECK(ac->pop3.line == 4, "pop3 line %d, want 4", ac->pop3.line);

	CHECK(ac->imap.imap, "imap block not marked imap");
	CHECK_STR(ac->imap.host, "imap.example.org", "imap host");
	CHECK(ac->imap.port == 993, "imaps port %d", ac->imap.port);
	CHECK(ac->imap.tls == TLS_IMPLICIT, "imaps tls %d", ac->imap.tls);
	CHECK_STR(ac->imap.mailbox, "INBOX", "default mailbox");
	CHECK(ac->imap.password == NULL, "imap password set");
	want = xprintf("%s/imap.pass", tmpdir);
	CHECK_STR(ac->imap.password_file, want, "relative password_file");
	free(want);
	CHECK(ac->imap.line == 5, "imap line %d, want 5", ac->imap.line);

	CHECK(config_find(cf, "alice") == ac, "config_find alice");
	CHECK(config_find(cf, "bob") == NULL, "config_find bob");
	CHECK(config_find(cf, "Alice") == NULL, "config_find is exact");
	config_free(cf);
}

static void
test_full(const void *arg)
{
	struct config	*cf;
	const struct account *ac;
	char		*want, *pass, *text;

	(void)arg;
	/* An absolute password_file, which must exist: one in tmpdir. */
	pass = write_file("bob.pass", "pw\n", 0600);
	text = xprintf(
	    "# a comment\n"
	    "state_dir = \"/var/tmp/popbridge-state\";\n"
	    "timeout = 30;\n"
	    "accounts = (\n"
	    " {\n"
	    "  name = \"bob.smith+x@example-1_2\";\n"
	    "  keep = false;\n"
	    "  flags = [ \"\\\\Seen\", \"\\\\flagged\", \"$Label1\", "
	    "\"Imported\" ];\n"
	    "  pop3 = {\n"
	    "    url = \"pop3://mail.example.org:1110/\";\n"
	    "    tls = \"none\";\n"
	    "    user = \"bob\";\n"
	    "    password_command = \"pass show mail/bob\";\n"
	    "    auth = \"plain\";\n"
	    "  };\n"
	    "  imap = {\n"
	    "    url = \"imap://[::1]:1143\";\n"
	    "    user = \"bob\";\n"
	    "    password_file = \"%s\";\n"
	    "    ca_file = \"certs/ca.pem\";\n"
	    "    mailbox = \"Archive/2024 &AOQ-\";\n"
	    "    auth = \"any\";\n"
	    "  };\n"
	    " },\n"
	    " {\n"
	    "  name = \"carol\";\n"
	    "  flags = [];\n"
	    "  pop3 = { url = \"pop3s://p:1\"; user = \"c\"; "
	    "password = \"x\"; };\n"
	    "  imap = { url = \"imaps://i:65535\"; user = \"c\"; "
	    "password = \"y\"; };\n"
	    " }\n"
	    ");\n", pass);
	cf = load_ok("full", text, 0600);
	free(text);
	if (cf == NULL) {
		free(pass);
		return;
	}
	CHECK_STR(cf->state_dir, "/var/tmp/popbridge-state", "state_dir");
	CHECK(cf->timeout == 30, "timeout %ld", cf->timeout);
	CHECK(cf->naccounts == 2, "naccounts %zu", cf->naccounts);
	if (cf->naccounts != 2) {
		config_free(cf);
		return;
	}
	ac = &cf->accounts[0];
	CHECK_STR(ac->name, "bob.smith+x@example-1_2", "name");
	CHECK(!ac->keep, "keep = false");
	CHECK_STR(ac->flags, "\\Seen \\flagged $Label1 Imported", "flags");
	CHECK_STR(ac->pop3.host, "mail.example.org", "pop3 host");
	CHECK(ac->pop3.port == 1110, "pop3 port %d", ac->pop3.port);
	CHECK(ac->pop3.tls == TLS_NONE, "tls none: %d", ac->pop3.tls);
	CHECK_STR(ac->pop3.password_command, "pass show mail/bob",
	    "password_command");
	CHECK_STR(ac->pop3.auth, "plain", "pop3 auth");
	CHECK_STR(ac->imap.host, "::1", "IPv6 host");
	CHECK(ac->imap.port == 1143, "imap port %d", ac->imap.port);
	CHECK(ac->imap.tls == TLS_STARTTLS, "imap:// is STARTTLS: %d",
	    ac->imap.tls);
	CHECK_STR(ac->imap.password_file, pass, "absolute password_file");
	free(pass);
	want = xprintf("%s/certs/ca.pem", tmpdir);
	CHECK_STR(ac->imap.ca_file, want, "relative ca_file");
	free(want);
	CHECK_STR(ac->imap.mailbox, "Archive/2024 &AOQ-", "mailbox");

	ac = &cf->accounts[1];
	CHECK_STR(ac->name, "carol", "second name");
	CHECK(ac->keep, "second keep");
	CHECK_STR(ac->flags, "", "empty flags");
	CHECK(ac->pop3.port == 1 && ac->imap.port == 65535, "ports %d %d",
	    ac->pop3.port, ac->imap.port);
	CHECK(config_find(cf, "carol") == ac, "config_find carol");
	config_free(cf);

	/* Plain pop3:// and imap:// take the STARTTLS ports. */
	cf = load_ok("starttls", ACCT(WITH_PURL("pop3://pop.example.org"),
	    WITH_IURL("imap://imap.example.org/"), ""), 0600);
	if (cf != NULL && cf->naccounts == 1) {
		CHECK(cf->accounts[0].pop3.port == 110 &&
		    cf->accounts[0].pop3.tls == TLS_STARTTLS, "pop3://: port %d "
		    "tls %d", cf->accounts[0].pop3.port,
		    cf->accounts[0].pop3.tls);
		CHECK(cf->accounts[0].imap.port == 143 &&
		    cf->accounts[0].imap.tls == TLS_STARTTLS, "imap://: port %d "
		    "tls %d", cf->accounts[0].imap.port,
		    cf->accounts[0].imap.tls);
	}
	config_free(cf);

	/* An empty list of accounts is a valid (idle) file. */
	cf = load_ok("no accounts", "accounts = ();\n", 0600);
	if (cf != NULL)
		CHECK(cf->naccounts == 0, "naccounts %zu", cf->naccounts);
	config_free(cf);
}

/* Without an inline password, others may read the file. */
/*
 * A mailbox in UTF-8 loads (before the fix: "write names with non-ASCII
 * letters in modified UTF-7") and keeps its spelling: the ledger's name
 * for the destination is the configured one; only the wire form is
 * modified UTF-7.  One in modified UTF-7 loads as before.
 */
static void
test_mailbox_names(const void *arg)
{
	static const char *const names[] = { "Entw\xc3\xbcrfe", "Entw&APw-rfe",
		"R&-D", "\xe6\x97\xa5\xe6\x9c\xac & Co", "INBOX.Sent" };
	struct config	*cf;
	char		*text;
	size_t		 i;

	(void)arg;
	for (i = 0; i < NELEM(names); i++) {
		text = xprintf(ACCT(P_OK, I_OK " mailbox = \"%s\";", ""),
		    names[i]);
		cf = load_ok(names[i], text, 0600);
		if (cf != NULL)
			CHECK_STR(cf->accounts[0].imap.mailbox, names[i],
			    "mailbox as configured");
		config_free(cf);
		free(text);
	}
}

static void
test_permissions_ok(const void *arg)
{
	struct config	*cf;

	(void)arg;
	free(write_file("p", "pw\n", 0600));
	cf = load_ok("0644 without password", ACCT(P_URL "user = \"a\"; "
	    "password_file = \"p\";", I_URL "user = \"a\"; "
	    "password_command = \"echo x\";", ""), 0644);
	config_free(cf);
}

/* ---- broken files ---- */

struct ecase {
	const char	*name;
	const char	*text;
	mode_t		 mode;
	enum result	 want;
	int		 line;		/* in "FILE:LINE:", -1: no prefix */
	const char	*has;		/* a part of the cause */
	const char	*hasnot;	/* must not appear in the cause */
};

static const struct ecase error_cases[] = {
	/* Keys and types. */
	{ "unknown top-level key", CONF(P_OK, I_OK, "", "bogus = 1;\n"), 0600,
	    RES_CONFIG, 8, "unknown key \"bogus\"", NULL },
	{ "unknown account key", CONF(P_OK, I_OK, "  colour = \"red\";\n", ""),
	    0600, RES_CONFIG, 6, "unknown key \"colour\"", NULL },
	{ "unknown key on a later line", CONF(P_OK, I_OK,
	    "  keep = true;\n\n  # x\n  colour = \"red\";\n", ""), 0600,
	    RES_CONFIG, 9, "unknown key \"colour\"", NULL },
	{ "imap-only key in pop3", CONF(P_OK " mailbox = \"x\";", I_OK, "",
	    ""), 0600, RES_CONFIG, 4, "unknown key \"mailbox\"", NULL },
	{ "unknown key in imap", CONF(P_OK, I_OK " port = 993;", "", ""),
	    0600, RES_CONFIG, 5, "unknown key \"port\"", NULL },
	{ "key names are case-sensitive", CONF(P_OK, I_OK, "  Keep = true;\n",
	    ""), 0600, RES_CONFIG, 6, "unknown key \"Keep\"", NULL },
	{ "timeout as a string", CONF(P_OK, I_OK, "", "timeout = \"10\";\n"),
	    0600, RES_CONFIG, 8, "\"timeout\" must be an integer", NULL },
	{ "keep as a string", CONF(P_OK, I_OK, "  keep = \"yes\";\n", ""),
	    0600, RES_CONFIG, 6, "\"keep\" must be true or false", NULL },
	{ "keep as a number", CONF(P_OK, I_OK, "  keep = 1;\n", ""),
	    0600, RES_CONFIG, 6, "\"keep\" must be true or false", NULL },
	{ "flags as a string", CONF(P_OK, I_OK, "  flags = \"\\\\Seen\";\n",
	    ""), 0600, RES_CONFIG, 6, "\"flags\" must be an array", NULL },
	{ "user as a number", CONF(P_URL "user = 5; password = \"pw\";", I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "\"user\" must be a string", NULL },
	{ "name as a number", "accounts = (\n {\n  name = 7;\n"
	    "  pop3 = { " P_OK " };\n  imap = { " I_OK " };\n }\n);\n", 0600,
	    RES_CONFIG, 3, "\"name\" must be a string", NULL },
	{ "pop3 as a string", "accounts = (\n {\n  name = \"a\";\n"
	    "  pop3 = \"pop3s://x\";\n  imap = { " I_OK " };\n }\n);\n", 0600,
	    RES_CONFIG, 4, "\"pop3\" must be a group", NULL },
	{ "accounts as a string", "accounts = \"alice\";\n", 0600, RES_CONFIG,
	    1, "\"accounts\" must be a list", NULL },
	{ "account not a group", "accounts = ( \"alice\" );\n", 0600,
	    RES_CONFIG, 1, "must be a group", NULL },
	{ "state_dir as a number", CONF(P_OK, I_OK, "", "state_dir = 1;\n"),
	    0600, RES_CONFIG, 8, "\"state_dir\" must be a string", NULL },

	/* Required keys. */
	{ "no accounts", "timeout = 10;\n", 0600, RES_CONFIG, -1,
	    "missing \"accounts\"", NULL },
	{ "empty file", "", 0600, RES_CONFIG, -1, "missing \"accounts\"",
	    NULL },
	{ "no imap block", "accounts = (\n {\n  name = \"alice\";\n"
	    "  pop3 = { " P_OK " };\n }\n);\n", 0600, RES_CONFIG, 2,
	    "missing \"imap\"", NULL },
	{ "no name", "accounts = (\n {\n  pop3 = { " P_OK " };\n"
	    "  imap = { " I_OK " };\n }\n);\n", 0600, RES_CONFIG, 2,
	    "missing \"name\"", NULL },
	{ "no pop3 url", CONF("user = \"alice\"; password = \"pw\";", I_OK, "",
	    ""), 0600, RES_CONFIG, 4, "missing \"url\"", NULL },
	{ "no imap user", CONF(P_OK, I_URL "password = \"pw\";", "", ""),
	    0600, RES_CONFIG, 5, "missing \"user\"", NULL },

	/* Secrets: exactly one. */
	{ "password and password_file", CONF(P_OK " password_file = \"f\";",
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "exactly one", NULL },
	{ "password_file and password_command", CONF(P_OK, I_URL
	    "user = \"a\"; password_file = \"f\"; password_command = \"c\";",
	    "", ""), 0600, RES_CONFIG, 5, "exactly one", NULL },
	{ "all three secrets", CONF(P_OK " password_file = \"f\"; "
	    "password_command = \"c\";", I_OK, "", ""), 0600, RES_CONFIG, 4,
	    "exactly one", NULL },
	{ "no secret", CONF(P_URL "user = \"alice\";", I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "exactly one", NULL },

	/* URLs. */
	{ "http url", CONF(WITH_PURL("http://pop.example.org"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "must start with pop3:// or pop3s://", NULL },
	{ "imap url in the pop3 block", CONF(WITH_PURL("imaps://x.org"), I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "pop3://", NULL },
	{ "pop3 url in the imap block", CONF(P_OK, WITH_IURL("pop3s://x.org"),
	    "", ""), 0600, RES_CONFIG, 5, "must start with imap:// or imaps://",
	    NULL },
	{ "pop3 plain url in the imap block", CONF(P_OK,
	    WITH_IURL("pop3://x.org"), "", ""), 0600, RES_CONFIG, 5,
	    "imap://", NULL },
	{ "no scheme", CONF(WITH_PURL("pop.example.org"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "must start with", NULL },
	{ "one slash", CONF(WITH_PURL("pop3s:/pop.example.org"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "must start with", NULL },
	{ "pop3ss", CONF(WITH_PURL("pop3ss://pop.example.org"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "must start with", NULL },
	{ "no host", CONF(WITH_PURL("pop3s://"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "no host", NULL },
	{ "no host, port", CONF(WITH_PURL("pop3s://:995"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "no host", NULL },
	{ "user in the url", CONF(WITH_PURL("pop3s://alice@pop.example.org"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "user name in \"user\"", NULL },
	{ "user and password in the url", CONF(
	    WITH_PURL("pop3s://alice:hunter2@pop.example.org"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "user name in \"user\"", "hunter2" },
	{ "user and password before an IPv6 host", CONF(
	    WITH_PURL("pop3s://alice:hunter2@[::1]:995"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "user name in \"user\"", "hunter2" },
	{ "user and password in an imap url", CONF(P_OK,
	    WITH_IURL("imaps://alice:hunter2@imap.example.org"), "", ""),
	    0600, RES_CONFIG, 5, "user name in \"user\"", "hunter2" },
	{ "user and password with a wrong scheme", CONF(
	    WITH_PURL("http://alice:hunter2@pop.example.org"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, NULL, "hunter2" },
	/* Before the fix each of these was echoed whole ("bad port", "must
	 * start with"): the '@' was looked for only before the first '/',
	 * '?' or '#', and not at all without "://". */
	{ "password with / # ? and a bad port", CONF(
	    WITH_PURL("pop3s://max:Pa/ss#w0rd?x@pop.example.net:99999"), I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "user name in \"user\"", "w0rd" },
	{ "password with / before the host", CONF(
	    WITH_PURL("pop3s://max:w0rd/x@pop.example.net"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "pop3s://***@pop.example.net", "w0rd" },
	{ "user and password without a scheme", CONF(
	    WITH_PURL("max:hunter2@pop.example.net"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, NULL, "hunter2" },
	{ "password holding ://, no scheme", CONF(
	    WITH_PURL("max:hun://ter2@pop.example.net"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, NULL, "hun" },
	{ "@ in a path", CONF(
	    WITH_PURL("pop3s://pop.example.org/a@b"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "user name in \"user\"", NULL },
	{ "port 0", CONF(WITH_PURL("pop3s://pop.example.org:0"), I_OK, "", ""),
	    0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port 65536", CONF(WITH_PURL("pop3s://pop.example.org:65536"), I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port huge", CONF(WITH_PURL("pop3s://p.org:99999999999999999999"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port negative", CONF(WITH_PURL("pop3s://pop.example.org:-1"), I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port letters", CONF(WITH_PURL("pop3s://pop.example.org:pop"), I_OK,
	    "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port empty", CONF(WITH_PURL("pop3s://pop.example.org:"), I_OK, "",
	    ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	/* Before the fix: strtol skipped the blank and the sign, and both
	 * loaded as port 995. */
	{ "port with a plus", CONF(WITH_PURL("pop3s://pop.example.org:+995"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port after a blank", CONF(WITH_PURL("pop3s://pop.example.org: 995"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "bad port", NULL },
	{ "port with junk", CONF(WITH_PURL("pop3s://pop.example.org:995x"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "nothing may follow", NULL },
	{ "imap url with a folder", CONF(P_OK,
	    WITH_IURL("imaps://imap.example.org/INBOX"), "", ""), 0600,
	    RES_CONFIG, 5, "\"mailbox\"", NULL },
	{ "url with a query", CONF(WITH_PURL("pop3s://pop.example.org?x=1"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "nothing may follow", NULL },
	{ "url with a fragment", CONF(WITH_PURL("pop3s://pop.example.org#x"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "nothing may follow", NULL },
	{ "space in the host", CONF(WITH_PURL("pop3s://pop example.org"),
	    I_OK, "", ""), 0600, RES_CONFIG, 4, "bad character", NULL },
	{ "bang in the host", CONF(WITH_PURL("pop3s://pop!.org"), I_OK, "",
	    ""), 0600, RES_CONFIG, 4, "bad character", NULL },
	{ "unclosed IPv6", CONF(WITH_PURL("pop3s://[::1"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "unclosed", NULL },
	{ "empty IPv6", CONF(WITH_PURL("pop3s://[]:995"), I_OK, "", ""), 0600,
	    RES_CONFIG, 4, "no host", NULL },

	/* tls and auth. */
	{ "tls none with pop3s", CONF(P_OK " tls = \"none\";", I_OK, "", ""),
	    0600, RES_CONFIG, 4, "contradicts", NULL },
	{ "tls none with imaps", CONF(P_OK, I_OK " tls = \"none\";", "", ""),
	    0600, RES_CONFIG, 5, "contradicts", NULL },
	{ "tls starttls", CONF(WITH_PURL("pop3://pop.example.org")
	    " tls = \"starttls\";", I_OK, "", ""), 0600, RES_CONFIG, 4,
	    "may only be \"none\"", NULL },
	{ "tls NONE", CONF(WITH_PURL("pop3://pop.example.org")
	    " tls = \"NONE\";", I_OK, "", ""), 0600, RES_CONFIG, 4,
	    "may only be \"none\"", NULL },
	{ "auth cram-md5", CONF(P_OK " auth = \"cram-md5\";", I_OK, "", ""),
	    0600, RES_CONFIG, 4, "\"auth\" must be", NULL },

	/* Values. */
	{ "empty user", CONF(P_URL "user = \"\"; password = \"pw\";", I_OK, "",
	    ""), 0600, RES_CONFIG, 4, "\"user\" is empty", NULL },
	{ "empty mailbox", CONF(P_OK, I_OK " mailbox = \"\";", "", ""), 0600,
	    RES_CONFIG, 5, "\"mailbox\" is empty", NULL },
	{ "Latin-1 mailbox", CONF(P_OK, I_OK " mailbox = \"Entw\xfcrfe\";",
	    "", ""), 0600, RES_CONFIG, 5, "\"mailbox\" is not valid UTF-8",
	    NULL },
	{ "control character in mailbox", CONF(P_OK, I_OK
	    " mailbox = \"a\\tb\";", "", ""), 0600, RES_CONFIG, 5,
	    "\"mailbox\" holds a control character", NULL },
	/* Before the fix these loaded, and every run ended with exit 75
	 * (Dovecot: "not valid mUTF-7", INBOX. taken as INBOX, then STATUS
	 * refused; "~" and a long name: CANNOT, with a hint about the
	 * hierarchy separator). */
	{ "invalid modified UTF-7", CONF(P_OK, I_OK
	    " mailbox = \"bad&utf7\";", "", ""), 0600, RES_CONFIG, 5,
	    "\"mailbox\" is not valid modified UTF-7", NULL },
	{ "CR LF in the mailbox", CONF(P_OK, I_OK
	    " mailbox = \"a\\r\\nb\";", "", ""), 0600, RES_CONFIG, 5,
	    "control character", NULL },
	{ "mailbox with a trailing separator", CONF(P_OK, I_OK
	    " mailbox = \"INBOX.\";", "", ""), 0600, RES_CONFIG, 5,
	    "hierarchy separator", NULL },
	{ "mailbox with a leading ~", CONF(P_OK, I_OK
	    " mailbox = \"~tilde\";", "", ""), 0600, RES_CONFIG, 5,
	    "\"~\"", NULL },
	{ "300-byte mailbox", CONF(P_OK, I_OK " mailbox = \""
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxx\";", "", ""), 0600, RES_CONFIG, 5,
	    "longer than 255 bytes", NULL },
	/* Before the fix these loaded, and the CR LF reached the server:
	 * over USER/PASS "DELE 1" arrived as a command of its own. */
	{ "CR LF in the pop3 user", CONF(P_URL "user = \"alice\\r\\nDELE 1\"; "
	    "password = \"pw\";", I_OK, "", ""), 0600, RES_CONFIG, 4,
	    "\"user\" holds a line break", "DELE" },
	{ "LF in the imap user", CONF(P_OK, I_URL "user = \"a\\nb\"; "
	    "password = \"pw\";", "", ""), 0600, RES_CONFIG, 5,
	    "imap: \"user\" holds a line break", NULL },
	{ "CR in the password", CONF(P_URL "user = \"alice\"; "
	    "password = \"pw\\rDELE 1\";", I_OK, "", ""), 0600, RES_CONFIG, 4,
	    "\"password\" holds a line break", "DELE" },
	{ "relative state_dir", CONF(P_OK, I_OK, "", "state_dir = \"state\";\n"),
	    0600, RES_CONFIG, 8, "absolute", NULL },
	{ "timeout 4", CONF(P_OK, I_OK, "", "timeout = 4;\n"), 0600,
	    RES_CONFIG, 8, "5 to 3600", NULL },
	{ "timeout 3601", CONF(P_OK, I_OK, "", "timeout = 3601;\n"), 0600,
	    RES_CONFIG, 8, "5 to 3600", NULL },
	{ "timeout negative", CONF(P_OK, I_OK, "", "timeout = -1;\n"), 0600,
	    RES_CONFIG, 8, "5 to 3600", NULL },
	{ "account name with a space", "accounts = (\n {\n  name = \"a b\";\n"
	    "  pop3 = { " P_OK " };\n  imap = { " I_OK " };\n }\n);\n", 0600,
	    RES_CONFIG, 3, "account name", NULL },
	{ "account name with a slash", "accounts = (\n {\n"
	    "  name = \"../etc\";\n  pop3 = { " P_OK " };\n  imap = { " I_OK
	    " };\n }\n);\n", 0600, RES_CONFIG, 3, "account name", NULL },
	{ "empty account name", "accounts = (\n {\n  name = \"\";\n"
	    "  pop3 = { " P_OK " };\n  imap = { " I_OK " };\n }\n);\n", 0600,
	    RES_CONFIG, 3, "account name", NULL },
	{ "duplicate account names", "accounts = (\n {\n  name = \"alice\";\n"
	    "  pop3 = { " P_OK " };\n  imap = { " I_OK " };\n },\n"
	    " {\n  name = \"bob\";\n  pop3 = { " P_OK " };\n  imap = { " I_OK
	    " };\n },\n"
	    " {\n  name = \"alice\";\n  pop3 = { " P_OK " };\n  imap = { " I_OK
	    " };\n }\n);\n", 0600, RES_CONFIG, 12, "defined twice", NULL },
	{ "flag \\Recent", CONF(P_OK, I_OK,
	    "  flags = [ \"\\\\Seen\", \"\\\\Recent\" ];\n", ""), 0600,
	    RES_CONFIG, 6, "\"flags\" must be", NULL },
	{ "flag with a space", CONF(P_OK, I_OK, "  flags = [ \"a b\" ];\n",
	    ""), 0600, RES_CONFIG, 6, "\"flags\" must be", NULL },
	{ "empty flag", CONF(P_OK, I_OK, "  flags = [ \"\" ];\n", ""), 0600,
	    RES_CONFIG, 6, "\"flags\" must be", NULL },
	{ "flag with a paren", CONF(P_OK, I_OK, "  flags = [ \"a(\" ];\n",
	    ""), 0600, RES_CONFIG, 6, "\"flags\" must be", NULL },
	{ "numeric flags", CONF(P_OK, I_OK, "  flags = [ 1, 2 ];\n", ""),
	    0600, RES_CONFIG, 6, "\"flags\" must be", NULL },

	/* Syntax and the file itself. */
	{ "syntax error", "accounts = (\n {\n  name = \"alice\";\n"
	    "  pop3 = { url = ; };\n }\n);\n", 0600, RES_CONFIG, 4, "", NULL },
	{ "unterminated string", "accounts = (\n {\n  name = \"alice;\n",
	    0600, RES_CONFIG, -1, NULL, NULL },

	/* An inline password in a file others can read. */
	{ "password in a 0644 file", CONF(P_OK, I_OK, "", ""), 0644, RES_AUTH,
	    -1, "chmod 600", NULL },
	{ "password in a 0640 file", CONF(P_OK, I_OK, "", ""), 0640, RES_AUTH,
	    -1, "chmod 600", NULL },
	{ "password in a 0604 file", CONF(P_OK, I_OK, "", ""), 0604, RES_AUTH,
	    -1, "chmod 600", NULL },
};

static void
test_errors(const void *arg)
{
	const struct ecase *c;
	struct config	*cf;
	char		*path, *cause, *prefix;
	enum result	 r;
	size_t		 i;

	(void)arg;
	for (i = 0; i < NELEM(error_cases); i++) {
		c = &error_cases[i];
		path = write_file("broken.conf", c->text, c->mode);
		cause = NULL;
		cf = (struct config *)&cause;	/* must be set to NULL */
		r = config_load(path, &cf, &cause);
		CHECK(r == c->want, "%s: config_load = %d, want %d (cause %s)",
		    c->name, r, c->want, unit_sesc(cause));
		CHECK(cf == NULL, "%s: *cfp not NULL on failure", c->name);
		if (r == RES_OK) {
			config_free(cf);
			free(path);
			continue;
		}
		CHECK(cause != NULL, "%s: no cause", c->name);
		if (cause == NULL) {
			free(path);
			continue;
		}
		if (c->line >= 0) {
			prefix = xprintf("%s:%d: ", path, c->line);
			CHECK(strncmp(cause, prefix, strlen(prefix)) == 0,
			    "%s: cause %s does not start with \"%s\"", c->name,
			    unit_sesc(cause), prefix);
			free(prefix);
		}
		if (c->has != NULL)
			CHECK(strstr(cause, c->has) != NULL, "%s: cause %s does "
			    "not say \"%s\"", c->name, unit_sesc(cause),
			    c->has);
		if (c->hasnot != NULL) {
			/* Past the file name: the temp path is random. */
			const char *p = strncmp(cause, path, strlen(path)) ==
			    0 ? cause + strlen(path) : cause;

			CHECK(strstr(p, c->hasnot) == NULL, "%s: cause %s "
			    "shows \"%s\"", c->name, unit_sesc(cause),
			    c->hasnot);
		}
		free(cause);
		free(path);
	}
}

static void
test_missing_file(const void *arg)
{
	struct config	*cf;
	char		*path = xprintf("%s/does-not-exist.conf", tmpdir);
	char		*cause = NULL;
	enum result	 r;

	(void)arg;
	r = config_load(path, &cf, &cause);
	CHECK(r == RES_CONFIG && cf == NULL, "missing file: %d", r);
	CHECK(cause != NULL && strstr(cause, path) != NULL &&
	    strstr(cause, "cannot read") != NULL, "missing file: cause %s",
	    unit_sesc(cause));
	free(cause);
	free(path);
}

/*
 * config_load_fd: a copy of the config in a descriptor whose offset is at
 * its end (as the root helper's memfd arrives): relative paths and a
 * relative @include start at the real config's folder, not the
 * descriptor's (/proc/PID/fd), and errors name the real file.
 */
static void
test_load_fd(const void *arg)
{
	static const char good[] = "@include \"extra.conf\"\n"
	    ACCT(P_URL "user = \"alice\"; password_file = \"sub/pw\";",
	    I_OK, "");
	static const char bad[] = "timeout = 30;\njobs = ;\n";
	struct config	*cf = NULL;
	char		*path, *want, *cause = NULL, *inc;
	enum result	 r;
	int		 fd;

	(void)arg;
	inc = write_file("extra.conf", "timeout = 33;\n", 0600);
	/* No such file: only the copy holds it (its mode is not checked). */
	path = xprintf("%s/copy.conf", tmpdir);
	want = xprintf("%s/sub/pw", tmpdir);
	fd = memfd_create("copy", 0);
	CHECK(fd != -1 && write(fd, good, strlen(good)) ==
	    (ssize_t)strlen(good), "memfd: %s", strerror(errno));
	r = config_load_fd(fd, path, &cf, &cause);
	CHECK(r == RES_OK && cf != NULL, "copy: %d, cause %s", r,
	    unit_sesc(cause));
	if (cf != NULL) {
		CHECK_STR(cf->accounts[0].pop3.password_file, want,
		    "relative password_file of a copy");
		CHECK_STR(cf->path, path, "the copy's path");
		CHECK(cf->timeout == 33, "the copy's @include: timeout %ld",
		    (long)cf->timeout);
		config_free(cf);
		cf = NULL;
	}
	free(cause);
	cause = NULL;
	CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0 &&
	    write(fd, bad, strlen(bad)) == (ssize_t)strlen(bad), "memfd");
	r = config_load_fd(fd, path, &cf, &cause);
	CHECK(r == RES_CONFIG && cf == NULL && cause != NULL &&
	    strncmp(cause, path, strlen(path)) == 0 &&
	    strncmp(cause + strlen(path), ":2:", 3) == 0,
	    "a broken copy: %d, cause %s", r, unit_sesc(cause));
	free(cause);
	close(fd);
	unlink(inc);
	free(inc);
	free(want);
	free(path);
}

/* ---- config_url_redact ---- */

static void
test_url_redact(const void *arg)
{
	static const struct {
		const char	*in, *want;
	} cases[] = {
		{ "pop3s://pop.example.net", "pop3s://pop.example.net" },
		{ "pop3s://pop.example.net:995/", "pop3s://pop.example.net:995/" },
		{ "", "" },
		{ "pop3s://max@pop.example.net", "pop3s://***@pop.example.net" },
		{ "pop3s://max:pw@pop.example.net", "pop3s://***@pop.example.net" },
		/* Whatever the password holds, up to the last '@'. */
		{ "pop3s://max:Pa/ss#w0rd?x@pop.example.net",
		    "pop3s://***@pop.example.net" },
		{ "imaps://max:p@ss@w0rd@imap.example.net:993",
		    "imaps://***@imap.example.net:993" },
		{ "imaps://host/a@b", "imaps://***@b" },
		{ "pop3s://@host", "pop3s://***@host" },
		/* No scheme, or none before the '@': from the start. */
		{ "max:pw@pop.example.net", "***@pop.example.net" },
		{ "max:p://w@host", "***@host" },
		{ "x y://max:pw@host", "***@host" },
		{ "@", "***@" },
		{ "pop3s://", "pop3s://" },
		/* Nor does it forge a log line. */
		{ "pop3s://h\r\nx\x7f\xc3\xa4", "pop3s://h??x???" },
		{ "pop3s://a\nb@h", "pop3s://***@h" },
	};
	size_t	 i;
	char	*got;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		got = config_url_redact(cases[i].in);
		CHECK_STR(got, cases[i].want, cases[i].in);
		free(got);
	}
}

/* ---- config_secret ---- */

static void
secret_case(const char *what, struct endpoint *ep, enum result want,
    const char *want_secret, const char *cause_has)
{
	char		*secret = (char *)"junk", *cause = NULL;
	enum result	 r;

	r = config_secret(ep, &secret, &cause);
	CHECK(r == want, "%s: config_secret = %d, want %d (cause %s)", what, r,
	    want, unit_sesc(cause));
	if (r == RES_OK && want == RES_OK)
		CHECK_STR(secret, want_secret, what);
	if (r != RES_OK) {
		CHECK(secret == NULL, "%s: secret not NULL on failure", what);
		if (cause_has != NULL)
			CHECK(cause != NULL && strstr(cause, cause_has) != NULL,
			    "%s: cause %s does not say \"%s\"", what,
			    unit_sesc(cause), cause_has);
	}
	if (r == RES_OK || secret != (char *)"junk")
		secret_free(secret);
	free(cause);
}

/* A secret file of exactly these bytes (NUL bytes too). */
static char *
write_bytes(const char *name, const char *data, size_t len, mode_t mode)
{
	char	*path = write_file(name, "", mode);
	FILE	*f = fopen(path, "w");

	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		printf("cannot write %s: %s\n", path, strerror(errno));
		exit(2);
	}
	return path;
}

static void
file_secret_n(const char *what, const char *content, size_t len,
    mode_t mode, enum result want, const char *want_secret,
    const char *cause_has)
{
	struct endpoint	 ep;
	char		*path = write_bytes("secret.pass", content, len, mode);

	memset(&ep, 0, sizeof ep);
	ep.password_file = path;
	secret_case(what, &ep, want, want_secret, cause_has);
	free(path);
}

static void
file_secret(const char *what, const char *content, mode_t mode,
    enum result want, const char *want_secret, const char *cause_has)
{
	struct endpoint	 ep;
	char		*path = write_file("secret.pass", content, mode);

	memset(&ep, 0, sizeof ep);
	ep.password_file = path;
	secret_case(what, &ep, want, want_secret, cause_has);
	free(path);
}

static void
command_secret(const char *what, const char *cmd, enum result want,
    const char *want_secret, const char *cause_has)
{
	struct endpoint	 ep;

	memset(&ep, 0, sizeof ep);
	ep.password_command = (char *)cmd;
	secret_case(what, &ep, want, want_secret, cause_has);
}

static void
test_secret(const void *arg)
{
	struct endpoint	 ep;
	struct config	*cf;
	char		*missing, *cwd;

	(void)arg;
	memset(&ep, 0, sizeof ep);
	ep.password = (char *)"inline pw";
	secret_case("password", &ep, RES_OK, "inline pw", NULL);

	file_secret("file, first line", "line1\nline2\n", 0600, RES_OK,
	    "line1", NULL);
	file_secret("file, CRLF", "pw\r\nnext\r\n", 0600, RES_OK, "pw", NULL);
	file_secret("file, no line end", "pw", 0600, RES_OK, "pw", NULL);
	file_secret("file, spaces kept", " p w \n", 0600, RES_OK, " p w ",
	    NULL);
	file_secret("file, 0400", "pw\n", 0400, RES_OK, "pw", NULL);
	file_secret("file, 0644", "pw\n", 0644, RES_AUTH, NULL, "chmod 600");
	file_secret("file, 0640", "pw\n", 0640, RES_AUTH, NULL, "chmod 600");
	file_secret("file, 0606", "pw\n", 0606, RES_AUTH, NULL, "chmod 600");
	file_secret("file, empty", "", 0600, RES_CONFIG, NULL, "empty");
	file_secret("file, empty first line", "\npw\n", 0600, RES_CONFIG, NULL,
	    "empty");

	memset(&ep, 0, sizeof ep);
	missing = xprintf("%s/no-such.pass", tmpdir);
	ep.password_file = missing;
	secret_case("file, missing", &ep, RES_CONFIG, NULL, "no-such.pass");
	free(missing);

	command_secret("command", "echo cmdpw", RES_OK, "cmdpw", NULL);
	command_secret("command, first line", "printf 'abc\\ndef\\n'", RES_OK,
	    "abc", NULL);
	command_secret("command, no line end", "printf xyz", RES_OK, "xyz",
	    NULL);
	command_secret("command, much output", "yes | head -n 200000",
	    RES_OK, "y", NULL);
	command_secret("command, exit 3", "exit 3", RES_TEMP, NULL, "exit 3");
	command_secret("command, false", "false", RES_TEMP, NULL, "exit 1");
	command_secret("command, output then failure", "echo pw; exit 1",
	    RES_TEMP, NULL, "exit 1");
	command_secret("command, no output", "true", RES_TEMP, NULL,
	    "no password");
	command_secret("command, empty line", "echo", RES_TEMP, NULL,
	    "no password");
	command_secret("command, not found",
	    "/nonexistent/popbridge-no-such-command 2>/dev/null", RES_TEMP,
	    NULL, NULL);

	/*
	 * A secret is sent whole or not at all.  Before the fix a CR or NUL
	 * cut it short unseen ("pw\rDELE 1" was "pw"), and so did the 4096th
	 * byte of a longer line; the inline password went out as it was.
	 */
	file_secret("file, CR inside", "pw\rDELE 1\n", 0600, RES_CONFIG, NULL,
	    "holds a CR");
	file_secret("file, CR CR LF", "pw\r\r\n", 0600, RES_CONFIG, NULL,
	    "holds a CR");
	file_secret_n("file, NUL inside", "p\0w\n", 4, 0600, RES_CONFIG, NULL,
	    "NUL");
	file_secret_n("file, NUL on line 2 only", "pw\nx\0y\n", 7, 0600, RES_OK,
	    "pw", NULL);
	{
		char big[5002], want[4097];

		memset(big, 'a', 5000);
		big[5000] = '\n';
		big[5001] = '\0';
		file_secret("file, 5000-byte line", big, 0600, RES_CONFIG, NULL,
		    "longer than 4096");
		big[4095] = 'z';
		memcpy(want, big, 4096);
		want[4096] = '\0';
		memcpy(big + 4096, "\r\n", 3);
		file_secret("file, 4096-byte line and CR LF", big, 0600, RES_OK,
		    want, NULL);
		memcpy(big + 4096, "z\n", 3);
		file_secret("file, 4097-byte line", big, 0600, RES_CONFIG, NULL,
		    "longer than 4096");
	}
	command_secret("command, CR inside", "printf 'pw\\rDELE 1\\n'",
	    RES_CONFIG, NULL, "password_command printed a password that "
	    "cannot be sent");
	command_secret("command, NUL inside", "printf 'p\\000w\\n'", RES_CONFIG,
	    NULL, "NUL");
	command_secret("command, CRLF", "printf 'pw\\r\\n'", RES_OK, "pw", NULL);
	memset(&ep, 0, sizeof ep);
	ep.oauth2_token_command = (char *)"printf 'tok\\rQUIT\\n'";
	secret_case("token command, CR inside", &ep, RES_CONFIG, NULL,
	    "oauth2_token_command printed a token");
	memset(&ep, 0, sizeof ep);
	ep.password = (char *)"pw\r\nDELE 1";
	secret_case("password with CR LF", &ep, RES_CONFIG, NULL,
	    "line break");

	/*
	 * A relative password_file is found beside the config file, from
	 * wherever the program runs.
	 */
	free(write_file("rel.pass", "relpw\nx\n", 0600));
	cf = load_ok("relative password_file", ACCT(P_URL "user = \"a\"; "
	    "password_file = \"rel.pass\";", I_OK, ""), 0600);
	cwd = getcwd(NULL, 0);
	if (cf != NULL && cf->naccounts == 1 && chdir("/") == 0) {
		secret_case("relative password_file from /",
		    &cf->accounts[0].pop3, RES_OK, "relpw", NULL);
		secret_case("inline password from a loaded file",
		    &cf->accounts[0].imap, RES_OK, "pw2", NULL);
	}
	if (cwd != NULL && chdir(cwd) != 0)
		CHECK(false, "cannot go back to %s", cwd);
	free(cwd);
	config_free(cf);
}

int
main(void)
{
	tmp_make("config");
	UNIT_ISOLATED("minimal config", test_minimal, NULL);
	UNIT_ISOLATED("full config", test_full, NULL);
	UNIT_ISOLATED("0644 without a password", test_permissions_ok, NULL);
	UNIT_ISOLATED("mailbox names", test_mailbox_names, NULL);
	UNIT_ISOLATED("broken configs", test_errors, NULL);
	UNIT_ISOLATED("missing config", test_missing_file, NULL);
	UNIT_ISOLATED("config_load_fd", test_load_fd, NULL);
	UNIT_ISOLATED("config_url_redact", test_url_redact, NULL);
	UNIT_ISOLATED("config_secret", test_secret, NULL);
	return tmp_end();
}
