// link: bridge/http_form.c bridge/codec.c bridge/hash.c
// pkg: openssl
/*
 * bridge/http_form.c: what a browser or a scraper sends the daemon's web
 * page, parsed.  Tables of inputs and what each function must give,
 * the hostile ones included: truncated escapes, NUL bytes in a form,
 * oversized values, base64 that is not, tokens with blanks, hosts that
 * only look like loopback, CSRF tokens of another key or too old.
 */
#include "bridge.h"
#include "unit.h"

static const struct {
	const char	*body, *name;
	size_t		 outsz;
	const char	*want;		/* NULL: false */
} form_cases[] = {
	{ "account=home&csrf=1.ab", "account", 64, "home" },
	{ "account=home&csrf=1.ab", "csrf", 64, "1.ab" },
	{ "csrf=x&account=a+b%2Fc", "account", 64, "a b/c" },
	{ "account=%41%42", "account", 64, "AB" },
	{ "account=%4", "account", 64, NULL },		/* cut escape */
	{ "account=%zz", "account", 64, NULL },
	{ "account=%00", "account", 64, NULL },		/* NUL decoded */
	{ "account=", "account", 64, "" },
	{ "account", "account", 64, "" },
	{ "accounts=x", "account", 64, NULL },
	{ "xaccount=x", "account", 64, NULL },
	{ "a=1&&account=2&", "account", 64, "2" },
	{ "account=first&account=second", "account", 64, "first" },
	{ "account=abcd", "account", 5, "abcd" },
	{ "account=abcde", "account", 5, NULL },		/* too long */
	{ "", "account", 64, NULL },
	{ "=&=&=", "account", 64, NULL },
};

static void
test_form(void)
{
	char	 out[64];
	size_t	 i;
	bool	 ok;

	for (i = 0; i < sizeof form_cases / sizeof form_cases[0]; i++) {
		memset(out, 'Z', sizeof out);
		ok = http_form_get(form_cases[i].body,
		    strlen(form_cases[i].body), form_cases[i].name, out,
		    form_cases[i].outsz);
		CHECK(ok == (form_cases[i].want != NULL), "form %s [%s]: %d",
		    form_cases[i].body, form_cases[i].name, ok);
		if (ok && form_cases[i].want != NULL)
			CHECK_STR(out, form_cases[i].want, form_cases[i].body);
	}
	/* The length given is the end: no read past it. */
	CHECK(http_form_get("account=ab&x", 9, "account", out, sizeof out) &&
	    strcmp(out, "a") == 0, "length bounds the body");
}

static const struct {
	const char	*header;
	const char	*want;		/* NULL: false */
} auth_cases[] = {
	{ "Bearer s3cr3t-token", "s3cr3t-token" },
	{ "bearer   s3cr3t  ", "s3cr3t" },
	{ "Bearer two words", NULL },
	{ "Bearer ", NULL },
	{ "Basic dTpzM2NyM3Q=", "s3cr3t" },		/* u:s3cr3t */
	{ "Basic OnMzY3IzdA==", "s3cr3t" },		/* :s3cr3t */
	{ "Basic dTpzM2NyM3Q", "s3cr3t" },		/* no padding */
	{ "Basic dXNlcg==", NULL },			/* "user": no colon */
	{ "Basic dTo=", NULL },				/* "u:": empty */
	{ "Basic dTpzM2Ny!!", NULL },
	{ "Basic dTpzM2NyM3Q=x", NULL },		/* after padding */
	{ "Basic dTphAGI=", NULL },			/* "u:a\0b" */
	{ "Basic dTphIGI=", NULL },			/* "u:a b" */
	{ "Digest username=u", NULL },
	{ "", NULL },
};

static void
test_auth(void)
{
	char	 out[32], big[2048];
	size_t	 i;
	bool	 ok;

	for (i = 0; i < sizeof auth_cases / sizeof auth_cases[0]; i++) {
		ok = http_auth_token(auth_cases[i].header, out, sizeof out);
		CHECK(ok == (auth_cases[i].want != NULL), "auth \"%s\": %d",
		    auth_cases[i].header, ok);
		if (ok && auth_cases[i].want != NULL)
			CHECK_STR(out, auth_cases[i].want, auth_cases[i].header);
	}
	/* A token longer than the room is refused, not cut. */
	snprintf(big, sizeof big, "Bearer %0*d", 40, 7);
	CHECK(!http_auth_token(big, out, sizeof out), "a long token");
	/* Base64 of more than the decoder's room. */
	memcpy(big, "Basic ", 6);
	memset(big + 6, 'A', sizeof big - 7);
	big[sizeof big - 1] = '\0';
	CHECK(!http_auth_token(big, out, sizeof out), "2 kB of base64");
}

static void
test_equal_and_csrf(void)
{
	unsigned char	 key[32], other[32];
	char		 tok[HTTP_CSRF_MAX], bad[HTTP_CSRF_MAX];
	time_t		 now = 1800000000;

	CHECK(http_equal("abc", "abc"), "equal");
	CHECK(!http_equal("abc", "abd"), "differ");
	CHECK(!http_equal("abc", "abcd"), "prefix");
	CHECK(!http_equal("", "a"), "empty");

	memset(key, 1, sizeof key);
	memset(other, 2, sizeof other);
	http_csrf_make(key, sizeof key, now, tok, sizeof tok);
	CHECK(http_csrf_check(key, sizeof key, tok, now), "fresh token");
	CHECK(http_csrf_check(key, sizeof key, tok, now + HTTP_CSRF_TTL),
	    "a token at its last second");
	CHECK(!http_csrf_check(key, sizeof key, tok, now + HTTP_CSRF_TTL + 1),
	    "a token too old");
	CHECK(!http_csrf_check(key, sizeof key, tok, now - 61),
	    "a token from the future");
	CHECK(!http_csrf_check(other, sizeof other, tok, now),
	    "another daemon's token");
	snprintf(bad, sizeof bad, "%s", tok);
	bad[strlen(bad) - 1] ^= 1;
	CHECK(!http_csrf_check(key, sizeof key, bad, now), "a changed MAC");
	snprintf(bad, sizeof bad, "%lld%s", (long long)now - 1,
	    strchr(tok, '.'));
	CHECK(!http_csrf_check(key, sizeof key, bad, now), "a changed time");
	CHECK(!http_csrf_check(key, sizeof key, "", now), "empty");
	CHECK(!http_csrf_check(key, sizeof key, ".", now), "a dot");
	CHECK(!http_csrf_check(key, sizeof key, "1234567890123.x", now),
	    "13 digits");
}

static const struct {
	const char	*host;
	bool		 loopback;
} host_cases[] = {
	{ "127.0.0.1", true }, { "127.0.0.1:8025", true },
	{ "127.9.9.9:1", true }, { "localhost", true },
	{ "LOCALHOST:8025", true }, { "[::1]", true }, { "[::1]:8025", true },
	{ "128.0.0.1", false }, { "127.0.0.1.evil.example", false },
	{ "localhost.evil.example", false }, { "evil.example", false },
	{ "127.0.0.1:", false }, { "127.0.0.1:80x", false },
	{ "127.0.0.1:123456", false }, { "[::1", false }, { "[::2]", false },
	{ "[::1]x", false }, { "", false }, { "10.0.0.1", false },
	{ "0x7f.0.0.1", false }, { "2130706433", false },
};

static void
test_hosts(void)
{
	size_t	 i;

	for (i = 0; i < sizeof host_cases / sizeof host_cases[0]; i++)
		CHECK(http_host_loopback(host_cases[i].host) ==
		    host_cases[i].loopback, "host \"%s\"", host_cases[i].host);
	CHECK(http_same_origin("http://127.0.0.1:8025", "127.0.0.1:8025",
	    false), "origin");
	CHECK(!http_same_origin("http://127.0.0.1:80251", "127.0.0.1:8025",
	    false), "origin with a longer port");
	CHECK(!http_same_origin("https://127.0.0.1:8025", "127.0.0.1:8025",
	    false), "origin of another scheme");
	CHECK(!http_same_origin("http://evil", "127.0.0.1:8025", false),
	    "another origin");
	CHECK(!http_same_origin("null", "127.0.0.1:8025", false), "null");
	CHECK(http_same_origin("http://127.0.0.1:8025/?x", "127.0.0.1:8025",
	    true), "referer");
	CHECK(!http_same_origin("http://127.0.0.1:8025.evil/",
	    "127.0.0.1:8025", true), "referer of a longer host");
	CHECK(!http_same_origin("http://x/", "", true), "empty host");
}

static void
test_bucket(void)
{
	struct http_bucket b = { 0, 0 };
	int	 i, taken = 0;

	for (i = 0; i < 100; i++)
		taken += http_bucket_take(&b, 1000.0, 1.0, 10.0);
	CHECK(taken == 10, "a burst of 10: %d taken", taken);
	CHECK(!http_bucket_take(&b, 1000.5, 1.0, 10.0), "half a second");
	CHECK(http_bucket_take(&b, 1001.0, 1.0, 10.0), "a second later");
	/* A clock that goes back gives nothing back. */
	CHECK(!http_bucket_take(&b, 900.0, 1.0, 10.0), "the past");
	for (taken = 0, i = 0; i < 100; i++)
		taken += http_bucket_take(&b, 5000.0, 1.0, 10.0);
	CHECK(taken == 10, "refilled to the burst only: %d", taken);
}

int
main(void)
{
	test_form();
	test_auth();
	test_equal_and_csrf();
	test_hosts();
	test_bucket();
	UNIT_END();
}
