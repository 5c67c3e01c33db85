/*
 * What a browser sends the web page, parsed: the "Check now" form
 * (application/x-www-form-urlencoded), the token in an Authorization
 * header, the CSRF token and the session cookie (both an HMAC of their
 * time under a key of the daemon's), and the Host, Origin and Referer
 * headers.  The
 * input is whatever anyone who reaches the port sends, so every function
 * here is pure, bounded by its output's size, and fails closed
 * (tests/unit/http_form_test.c, tests/fuzz/fuzz_http_form.c).
 * libmicrohttpd has parsed the request line and the headers before any
 * of this runs.
 */
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

#define BASIC_MAX	512	/* bytes of "user:token" decoded */

/* Decode a urlencoded value ("+" a space, %XX a byte); no NUL in it. */
static bool
form_decode(const char *p, size_t n, char *out, size_t outsz)
{
	size_t	 i, o = 0;
	int	 hi, lo;
	char	 c;

	for (i = 0; i < n; i++) {
		c = p[i];
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (n - i < 3 ||
			    (hi = hex_digit((unsigned char)p[i + 1])) < 0 ||
			    (lo = hex_digit((unsigned char)p[i + 2])) < 0)
				return false;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		if (c == '\0' || o + 1 >= outsz)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return outsz > 0;
}

bool
http_form_get(const char *body, size_t len, const char *name, char *out,
    size_t outsz)
{
	const char	*p = body, *end = body + len, *amp, *eq;
	size_t		 nlen = strlen(name);

	while (p < end) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if ((eq = memchr(p, '=', (size_t)(amp - p))) == NULL)
			eq = amp;
		/* Our fields' names need no decoding: compared as sent. */
		if ((size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0)
			return form_decode(eq == amp ? eq : eq + 1,
			    (size_t)(amp - (eq == amp ? eq : eq + 1)), out,
			    outsz);
		p = amp + 1;
	}
	return false;
}

/* Base64 (RFC 4648, padding optional at the end) into out; its length,
 * or -1 if malformed or too long. */
static long
basic_decode(const char *p, size_t n, unsigned char *out, size_t outsz)
{
	struct b64_end	 e;
	long		 o;
	size_t		 pad;

	if ((o = b64_decode(p, n, false, out, outsz, &e)) < 0 || e.lone)
		return -1;
	for (pad = 0; e.used + pad < n && p[e.used + pad] == '='; pad++)
		;
	if (e.used + pad != n || pad > 2 || (pad > 0 && (n % 4) != 0))
		return -1;
	return o;
}

/* s up to its trailing blanks, copied if it fits and has no control or
 * blank byte inside. */
static bool
token_copy(const char *s, size_t n, char *out, size_t outsz)
{
	size_t	 i;

	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= outsz)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

bool
http_auth_token(const char *h, char *out, size_t outsz)
{
	unsigned char	 dec[BASIC_MAX];
	const unsigned char *colon;
	long		 n;
	size_t		 skip;

	while (*h == ' ' || *h == '\t')
		h++;
	if (strncasecmp(h, "Bearer ", 7) == 0) {
		h += 7 + strspn(h + 7, " \t");
		return token_copy(h, strlen(h), out, outsz);
	}
	if (strncasecmp(h, "Basic ", 6) != 0)
		return false;
	h += 6 + strspn(h + 6, " \t");
	for (skip = strlen(h); skip > 0 && (h[skip - 1] == ' ' ||
	    h[skip - 1] == '\t'); skip--)
		;
	if ((n = basic_decode(h, skip, dec, sizeof dec)) < 0 ||
	    (colon = memchr(dec, ':', (size_t)n)) == NULL ||
	    memchr(dec, '\0', (size_t)n) != NULL)
		return false;
	colon++;
	return token_copy((const char *)colon, (size_t)(dec + n - colon), out,
	    outsz);
}

/* Compared as SHA-256 digests: neither where they differ nor their
 * lengths show in the time it takes. */
bool
http_equal(const char *a, const char *b)
{
	char		 ha[65], hb[65];
	unsigned char	 d = 0;
	size_t		 i;

	hash_hex(a, strlen(a), ha);
	hash_hex(b, strlen(b), hb);
	for (i = 0; i < 64; i++)
		d |= (unsigned char)(ha[i] ^ hb[i]);
	return d == 0;
}

/* The MAC of "popbridge PURPOSE TIME": a CSRF token and a session are
 * different purposes, so one is never taken for the other. */
static void
token_mac(const unsigned char *key, size_t keylen, const char *purpose,
    long long t, char *mac)
{
	char	 msg[64];
	int	 n;

	n = snprintf(msg, sizeof msg, "popbridge %s %lld", purpose, t);
	hash_hmac(key, keylen, msg, (size_t)n, mac);
}

static void
token_make(const unsigned char *key, size_t keylen, const char *purpose,
    time_t now, char *out, size_t outsz)
{
	char	 mac[65];

	token_mac(key, keylen, purpose, (long long)now, mac);
	snprintf(out, outsz, "%lld.%s", (long long)now, mac);
}

/* "TIME.HMAC", made for purpose at most ttl seconds ago. */
static bool
token_check(const unsigned char *key, size_t keylen, const char *purpose,
    const char *tok, time_t now, long ttl)
{
	char		 mac[65];
	long long	 t = 0;
	size_t		 i;

	for (i = 0; tok[i] >= '0' && tok[i] <= '9'; i++) {
		if (i >= 12)
			return false;
		t = t * 10 + (tok[i] - '0');
	}
	if (i == 0 || tok[i] != '.' || strlen(tok + i + 1) != 64)
		return false;
	/* A minute ahead is a clock step. */
	if (t < (long long)now - ttl || t > (long long)now + 60)
		return false;
	token_mac(key, keylen, purpose, t, mac);
	return http_equal(mac, tok + i + 1);
}

void
http_csrf_make(const unsigned char *key, size_t keylen, time_t now, char *out,
    size_t outsz)
{
	token_make(key, keylen, "check now", now, out, outsz);
}

bool
http_csrf_check(const unsigned char *key, size_t keylen, const char *tok,
    time_t now)
{
	return token_check(key, keylen, "check now", tok, now, HTTP_CSRF_TTL);
}

void
http_session_make(const unsigned char *key, size_t keylen, time_t now,
    char *out, size_t outsz)
{
	token_make(key, keylen, "session", now, out, outsz);
}

bool
http_session_check(const unsigned char *key, size_t keylen, const char *tok,
    time_t now)
{
	return token_check(key, keylen, "session", tok, now,
	    HTTP_SESSION_TTL);
}

/* The digits of an optional ":PORT" at s, to its end. */
static bool
port_ok(const char *s)
{
	if (*s == '\0')
		return true;
	if (*s++ != ':' || *s == '\0' || strlen(s) > 5)
		return false;
	return strspn(s, "0123456789") == strlen(s);
}

bool
http_host_loopback(const char *host)
{
	struct in6_addr	 a6;
	struct in_addr	 a4;
	const char	*end;
	char		 h[64];
	size_t		 n;

	if (host[0] == '[') {
		if ((end = strchr(host, ']')) == NULL || !port_ok(end + 1) ||
		    (n = (size_t)(end - host - 1)) >= sizeof h)
			return false;
		memcpy(h, host + 1, n);
		h[n] = '\0';
		return inet_pton(AF_INET6, h, &a6) == 1 &&
		    IN6_IS_ADDR_LOOPBACK(&a6);
	}
	n = strcspn(host, ":");
	if (n >= sizeof h || !port_ok(host + n))
		return false;
	memcpy(h, host, n);
	h[n] = '\0';
	if (strcasecmp(h, "localhost") == 0)
		return true;
	return inet_pton(AF_INET, h, &a4) == 1 &&
	    (ntohl(a4.s_addr) >> 24) == 127;
}

bool
http_same_origin(const char *v, const char *host, bool referer)
{
	size_t	 n = strlen(host);

	if (n == 0 || strncmp(v, "http://", 7) != 0 ||
	    strncasecmp(v + 7, host, n) != 0)
		return false;
	return referer ? v[7 + n] == '/' : v[7 + n] == '\0';
}

bool
http_bucket_take(struct http_bucket *b, double now, double rate,
    double burst)
{
	if (b->last == 0)
		b->tokens = burst;
	else if (now > b->last && (b->tokens += (now - b->last) * rate) >
	    burst)
		b->tokens = burst;
	if (now > b->last)
		b->last = now;
	if (b->tokens < 1)
		return false;
	b->tokens -= 1;
	return true;
}
