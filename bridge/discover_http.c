/*
 * The HTTPS GET of discovery's autoconfig documents: bounded (DOC_MAX),
 * with short timeouts, and redirects followed only after the same check
 * as the first URL (https://, or http:// to this machine, for the tests'
 * local server), at most REDIRECTS_MAX of them.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "bridge.h"
#include "discover_int.h"

#define REDIRECTS_MAX	3
#define HTTP_CONNECT_S	10L
#define HTTP_TOTAL_S	20L

struct body {
	char		*buf;
	size_t		 len;
	bool		 over;
};

static size_t
body_write(char *p, size_t size, size_t n, void *arg)
{
	struct body	*b = arg;
	size_t		 len = size * n;

	if (!bounded_append(&b->buf, &b->len, DOC_MAX, p, len)) {
		b->over = true;
		return 0;		/* curl stops with CURLE_WRITE_ERROR */
	}
	return len;
}

static bool
host_loopback(const char *h)
{
	struct in_addr	 a4;

	if (strcasecmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0 ||
	    strcmp(h, "::1") == 0)
		return true;
	return inet_pton(AF_INET, h, &a4) == 1 &&
	    (ntohl(a4.s_addr) >> 24) == 127;
}

/* https:// anywhere; http:// only to this machine (the tests' server). */
static bool
url_allowed(const char *url)
{
	CURLU		*u;
	char		*scheme = NULL, *host = NULL;
	bool		 ok = false;

	if ((u = curl_url()) == NULL)
		fatal("curl_url failed");
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = strcasecmp(scheme, "https") == 0 ||
		    (strcasecmp(scheme, "http") == 0 && host_loopback(host));
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

/*
 * One GET without following redirects (they are checked and followed by
 * http_get).  true with the body on 200; else a short note in *why.
 */
static bool
http_once(const char *url, struct body *b, char **next, char **why)
{
	char		 err[CURL_ERROR_SIZE] = "", clean[CURL_ERROR_SIZE];
	char		*loc = NULL;
	long		 code = 0;
	CURL		*h;
	CURLcode	 rc;

	*next = NULL;
	if ((h = curl_easy_init()) == NULL)
		fatal("curl_easy_init failed");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_S);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, HTTP_TOTAL_S);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)DOC_MAX);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "popbridge/" POPBRIDGE_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK && code >= 300 && code < 400 &&
	    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK &&
	    loc != NULL)
		*next = xstrdup(loc);
	curl_easy_cleanup(h);
	if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
		*why = xprintf("larger than %d bytes", DOC_MAX);
	else if (rc != CURLE_OK)
		*why = xstrdup(log_clean(clean, sizeof clean, err[0] != '\0' ?
		    err : curl_easy_strerror(rc), strlen(err[0] != '\0' ? err :
		    curl_easy_strerror(rc))));
	else if (*next == NULL && code != 200)
		*why = xprintf("HTTP %ld", code);
	else if (*next == NULL && b->len == 0)
		/* 200 with no body: body_write was never called. */
		*why = xstrdup("an empty reply (HTTP 200, no body)");
	else
		return *next == NULL;
	return false;
}

/* GET url (following at most REDIRECTS_MAX checked redirects). */
bool
discover_http_get(const char *url, char **body, size_t *len, char **why)
{
	struct body	 b;
	char		*cur = xstrdup(url), *next;
	char		 clean[300];
	int		 hops;

	*body = NULL;
	*why = NULL;
	for (hops = 0; ; hops++) {
		if (!url_allowed(cur)) {
			*why = xprintf("refused %s (only https://, or "
			    "http:// to this machine)", log_clean(clean,
			    sizeof clean, cur, strlen(cur)));
			break;
		}
		log_debug("add: GET %s", log_clean(clean, sizeof clean, cur,
		    strlen(cur)));
		memset(&b, 0, sizeof b);
		if (http_once(cur, &b, &next, why)) {
			*body = b.buf;
			*len = b.len;
			break;
		}
		free(b.buf);
		if (next == NULL)
			break;
		free(cur);
		cur = next;
		if (hops + 1 > REDIRECTS_MAX) {
			*why = xprintf("more than %d redirects", REDIRECTS_MAX);
			break;
		}
	}
	free(cur);
	return *body != NULL;
}
