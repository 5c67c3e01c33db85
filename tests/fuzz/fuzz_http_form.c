// link: bridge/http_form.c bridge/codec.c bridge/hash.c
// pkg: openssl
// max_len: 4096
/*
 * What anyone who reaches the daemon's web page can send and popbridge
 * parses itself (http_form.c; libmicrohttpd parses the rest): the
 * "Check now" form, the Authorization header, the CSRF token, the Host,
 * Origin and Referer headers.  The whole input is each of them in turn,
 * as an exact-size buffer (the form) or a C string (the headers).
 * Invariants: nothing is written past the room given (canary bytes
 * after it stay), a value given back is a C string that fits, a token
 * has no blank or control byte, a host said to be loopback names one,
 * a CSRF token not made with the key is refused.
 */
#include <ctype.h>
#include <strings.h>

#include "bridge.h"
#include "fuzz.h"

#define ROOM	48
#define CANARY	16

static void
check_out(const char *out, size_t room, const char *what)
{
	size_t	 i, n = strnlen(out, room);

	FUZZ_CHECK(n < room, "%s: no NUL within %zu bytes", what, room);
	for (i = room; i < room + CANARY; i++)
		FUZZ_CHECK(out[i] == '\x5a', "%s: byte %zu written past the "
		    "room of %zu", what, i, room);
}

static void
form(const char *body, size_t len)
{
	static const char *const names[] = { "account", "csrf", "a", "" };
	char	 out[ROOM + CANARY];
	size_t	 i, room;

	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		for (room = 1; room <= ROOM; room += ROOM - 1) {
			memset(out, '\x5a', sizeof out);
			if (http_form_get(body, len, names[i], out, room))
				check_out(out, room, "http_form_get");
		}
}

static void
auth(const char *h)
{
	char	 out[ROOM + CANARY];
	size_t	 i;

	memset(out, '\x5a', sizeof out);
	if (!http_auth_token(h, out, ROOM))
		return;
	check_out(out, ROOM, "http_auth_token");
	FUZZ_CHECK(out[0] != '\0', "an empty token");
	for (i = 0; out[i] != '\0'; i++)
		FUZZ_CHECK((unsigned char)out[i] > ' ' && out[i] != 0x7f,
		    "token byte %zu is 0x%02x", i, (unsigned char)out[i]);
}

static void
host(const char *h)
{
	if (!http_host_loopback(h))
		return;
	FUZZ_CHECK(strncmp(h, "127.", 4) == 0 || strncmp(h, "[", 1) == 0 ||
	    strncasecmp(h, "localhost", 9) == 0, "\"%s\" taken for loopback",
	    h);
	FUZZ_CHECK(strchr(h, '/') == NULL && strchr(h, '@') == NULL,
	    "\"%s\" taken for loopback", h);
}

static void
origin(const char *s)
{
	const char	*nl = strchr(s, '\n');
	char		*v;
	size_t		 n;

	if (nl == NULL)
		return;
	n = (size_t)(nl - s);
	v = fuzz_str(s, n);
	if (http_same_origin(v, nl + 1, false))
		FUZZ_CHECK(strlen(v) == 7 + strlen(nl + 1), "origin \"%s\" of "
		    "host \"%s\"", v, nl + 1);
	if (http_same_origin(v, nl + 1, true))
		FUZZ_CHECK(v[7 + strlen(nl + 1)] == '/', "referer \"%s\" of "
		    "host \"%s\"", v, nl + 1);
	free(v);
}

static void
csrf(const char *s)
{
	static const unsigned char key[32] = { 7 };
	char	 tok[HTTP_CSRF_MAX];

	/* A forgery: refused, for any time. */
	FUZZ_CHECK(!http_csrf_check(key, sizeof key, s, 1800000000),
	    "a token not made with the key was taken");
	http_csrf_make(key, sizeof key, 1800000000, tok, sizeof tok);
	FUZZ_CHECK(strcmp(s, tok) == 0 || !http_csrf_check(key, sizeof key,
	    s, 1800000000), "another token taken");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char	*buf = fuzz_dup(data, len), *s = fuzz_str(data, len);

	form(buf, len);
	auth(s);
	host(s);
	origin(s);
	csrf(s);
	free(buf);
	free(s);
	return 0;
}
