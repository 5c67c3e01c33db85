/*
 * The Gmail API's HTTP side: the handle, its token, and running requests
 * through one libcurl multi handle.  What each request means lives in
 * gmail_import.c (messages.import) and gmail_find.c (labels, messages.list
 * and .get); replies are read in gmail_json.c.
 *
 * Requests share connections: with HTTP/2 (Google's servers) they are
 * streams of one connection (PIPEWAIT makes the second request wait for
 * the first connection instead of opening its own); with HTTP/1.1 (the
 * test fake: Python's standard library has no HTTP/2) up to `inflight`
 * kept-alive connections.  Either way at most `inflight` at once, and
 * started no faster than the per-user quota allows (a token bucket of
 * quota units), so the rate is the quota's, not the round trip's.
 *
 * Rate limits are per user, so one 429 (or 403 rateLimitExceeded,
 * userRateLimitExceeded, or a 503) holds every request of the handle:
 * for its Retry-After, else 1, 2, 4 ... 64 s (Google's advice: exponential
 * backoff).  A hold that would pass the call's max_wait ends the request
 * as END_RATE instead: the daemon's other accounts should not wait on one
 * user's quota.  A 403 dailyLimitExceeded halts the handle: nothing more
 * starts.  A 401 gets one fresh token from the command (tokens last an
 * hour; a long run outlives one), then is final.
 *
 * Secrets: the token goes to libcurl as a bearer (CURLAUTH_BEARER) and
 * nowhere else; curl's verbose output is never turned on (it prints the
 * Authorization header); the trace is one line per request, ours.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "bridge.h"
#include "gmail_int.h"

#define BACKOFF_MAX	64	/* seconds: the longest wait without a hint */
#define RETRY_AFTER_MAX	(7 * 86400)	/* a longer hint is cut to this */
#define LINK_TRIES	2	/* a request not sent gets this many goes */
#define RATE_TRIES	12	/* rate limit retries of one request */

/* ---- the handle ---- */

/* "https://host[:port]" with no path, query or user: the base URL. */
static bool
base_valid(const char *b)
{
	const char	*h;

	if (strncasecmp(b, "https://", 8) != 0)
		return false;
	h = b + 8;
	if (*h == '\0' || strlen(b) > 200)
		return false;
	for (; *h != '\0'; h++)
		if (!isalnum((unsigned char)*h) && strchr(".-:[]", *h) == NULL)
			return false;
	return true;
}

enum result
gmail_open(const struct gmail_opts *o, struct gmail **gp, char **cause)
{
	struct gmail	*g;
	const char	*base = o->base != NULL ? o->base : GMAIL_BASE_DEFAULT;
	enum result	 r;

	*gp = NULL;
	if (!base_valid(base))
		return fail(cause, RES_CONFIG, "gmail: the base URL must be "
		    "https://HOST[:PORT], nothing after");
	g = xcalloc(1, sizeof *g);
	g->ep = o->ep;
	if ((r = config_secret(o->ep, &g->token, cause)) != RES_OK) {
		free(g);
		return r;
	}
	g->base = xstrdup(base);
	g->account = xstrdup(o->account != NULL ? o->account : "gmail");
	g->timeout = o->timeout > 0 ? o->timeout : 60;
	g->inflight = o->inflight == 0 ? GMAIL_INFLIGHT :
	    o->inflight > GMAIL_INFLIGHT_MAX ? GMAIL_INFLIGHT_MAX : o->inflight;
	g->rate = o->units_per_sec == 0 ? GMAIL_UNITS_PER_SEC :
	    o->units_per_sec < 0 ? 0 : o->units_per_sec;
	g->bucket = g->rate;
	g->bucket_at = now_seconds();
	g->max_wait = o->max_wait > 0 ? o->max_wait : 120;
	g->deadline = o->deadline;
	if ((g->multi = curl_multi_init()) == NULL)
		fatal("curl_multi_init failed");
	/* HTTP/2 streams over one connection; HTTP/1.1 up to inflight. */
	curl_multi_setopt(g->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	    (long)g->inflight);
	curl_multi_setopt(g->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
	    (long)g->inflight);
	*gp = g;
	return RES_OK;
}

void
gmail_close(struct gmail *g)
{
	size_t	 i;

	if (g == NULL)
		return;
	curl_multi_cleanup(g->multi);
	secret_free(g->token);
	for (i = 0; i < g->nlabels; i++) {
		free(g->labels[i].id);
		free(g->labels[i].name);
	}
	free(g->labels);
	free(g->base);
	free(g->account);
	free(g);
}

const char *
gmail_base(const struct gmail *g)
{
	return g->base;
}

const char *
gmail_account(const struct gmail *g)
{
	return g->account;
}

char *
gmail_escape(const char *s)
{
	char	*e, *out;

	if ((e = curl_easy_escape(NULL, s, 0)) == NULL)
		fatal("out of memory");
	out = xstrdup(e);
	curl_free(e);
	return out;
}

/* ---- one request ---- */

void
gmail_req_init(struct gmail_req *rq, struct gmail *g, const char *method,
    char *url, int cost)
{
	memset(rq, 0, sizeof *rq);
	rq->g = g;
	rq->method = method;
	rq->url = url;
	rq->cost = cost;
	rq->retry_after = -1;
}

void
gmail_req_free(struct gmail_req *rq)
{
	free(rq->url);
	free(rq->ctype);
	free(rq->extra[0]);
	free(rq->extra[1]);
	free(rq->reply);
	free(rq->location);
	rq->url = rq->ctype = rq->reply = rq->location = NULL;
	rq->extra[0] = rq->extra[1] = NULL;
}

size_t
gmail_src_read(const struct gmail_src *s, uint64_t off, char *buf, size_t n)
{
	ssize_t	 k;

	if (s->sp == NULL) {
		if (off >= s->len)
			return 0;
		if (n > s->len - off)
			n = (size_t)(s->len - off);
		memcpy(buf, s->bytes + off, n);
		return n;
	}
	k = spool_pread(s->sp, buf, n, off);
	return k < 0 ? (size_t)-1 : (size_t)k;
}

uint64_t
gmail_src_size(const struct gmail_src *s)
{
	return s->sp != NULL ? s->sp->size : s->len;
}

static uint64_t
body_size(const struct gmail_body *b)
{
	return b->headlen + (b->msg != NULL ? gmail_src_size(b->msg) : 0) +
	    b->taillen;
}

/* curl asks for the next bytes of the body: head, message, tail. */
static size_t
read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct gmail_req *rq = arg;
	struct gmail_body *b = &rq->body;
	size_t		 want = size * nitems, k;
	uint64_t	 off = b->off, msz;

	msz = b->msg != NULL ? gmail_src_size(b->msg) : 0;
	if (off < b->headlen) {
		k = b->headlen - (size_t)off;
		k = k < want ? k : want;
		memcpy(buf, b->head + off, k);
	} else if (off < b->headlen + msz) {
		k = gmail_src_read(b->msg, off - b->headlen, buf, want);
		if (k == (size_t)-1 || k == 0)
			return CURL_READFUNC_ABORT;	/* the spool failed */
	} else if (off < b->headlen + msz + b->taillen) {
		k = (size_t)(b->headlen + msz + b->taillen - off);
		k = k < want ? k : want;
		memcpy(buf, b->tail + (off - b->headlen - msz), k);
	} else {
		rq->body_sent = true;
		return 0;
	}
	b->off += k;
	if (b->off == body_size(b))
		rq->body_sent = true;
	return k;
}

/*
 * A rewind (HTTP/2 refused stream, redirect): start the body again; but
 * not once all of it went out.  libcurl resends a request whose reused
 * connection died before any reply, and an import the server stored
 * before dying would then be stored twice (found by test_gmail_dest: a cut
 * after the store gave two copies).  Refused, the request fails with its
 * body sent: UNKNOWN, and settled by gmail_find.
 */
static int
seek_cb(void *arg, curl_off_t off, int origin)
{
	struct gmail_req *rq = arg;

	if (rq->body_sent)
		return CURL_SEEKFUNC_FAIL;
	if (origin != SEEK_SET || off < 0 ||
	    (uint64_t)off > body_size(&rq->body))
		return CURL_SEEKFUNC_CANTSEEK;
	rq->body.off = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

static size_t
write_cb(char *data, size_t size, size_t n, void *arg)
{
	struct gmail_req *rq = arg;
	size_t		 len = size * n;
	size_t		 max = rq->reply_max > 0 ? rq->reply_max :
			    GMAIL_REPLY_MAX;

	if (!bounded_append(&rq->reply, &rq->replylen, max, data, len)) {
		rq->too_long = true;
		return 0;
	}
	return len;
}

/* Retry-After: seconds, or an HTTP date (RFC 9110 10.2.3). */
static long
retry_after_parse(const char *v, size_t len)
{
	char	 buf[64];
	time_t	 t;
	size_t	 i;
	long	 s = 0;

	while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' ||
	    v[len - 1] == ' '))
		len--;
	while (len > 0 && *v == ' ')
		v++, len--;
	if (len == 0 || len >= sizeof buf)
		return -1;
	for (i = 0; i < len && isdigit((unsigned char)v[i]); i++)
		if ((s = s * 10 + (v[i] - '0')) > RETRY_AFTER_MAX)
			s = RETRY_AFTER_MAX;
	if (i == len)
		return s;
	memcpy(buf, v, len);
	buf[len] = '\0';
	if ((t = curl_getdate(buf, NULL)) == -1)
		return -1;
	t -= time(NULL);
	return t < 0 ? 0 : t > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : (long)t;
}

static size_t
header_cb(char *data, size_t size, size_t n, void *arg)
{
	struct gmail_req *rq = arg;
	size_t		 len = size * n, k;

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue, say). */
		rq->retry_after = -1;
		free(rq->location);
		rq->location = NULL;
	} else if (len > 12 && strncasecmp(data, "retry-after:", 12) == 0)
		rq->retry_after = retry_after_parse(data + 12, len - 12);
	else if (len > 9 && strncasecmp(data, "location:", 9) == 0) {
		for (k = 9; k < len && data[k] == ' '; k++)
			;
		while (len > k && (data[len - 1] == '\r' ||
		    data[len - 1] == '\n' || data[len - 1] == ' '))
			len--;
		if (len - k < 2048) {
			free(rq->location);
			rq->location = xstrndup(data + k, len - k);
		}
	}
	return size * n;
}

/* Clear what the last try left, for another go. */
static void
req_reset(struct gmail *g, struct gmail_req *rq)
{
	rq->tries++;
	rq->gen = g->token_gen;
	rq->status = 0;
	rq->body.off = 0;
	rq->body_sent = false;
	rq->too_long = false;
	rq->retry_after = -1;
	rq->reason[0] = '\0';
	rq->errbuf[0] = '\0';
	free(rq->reply);
	rq->reply = NULL;
	rq->replylen = 0;
	free(rq->location);
	rq->location = NULL;
}

/* HTTPS only, verified, the bearer token, and the handle's time limits. */
static void
req_transport(struct gmail *g, CURL *h)
{
	double		 left;

	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
	curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, g->token);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (g->ep->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, g->ep->ca_file);
	/* The block's proxy ("" for none), else the environment's. */
	if (g->ep->proxy != NULL)
		curl_easy_setopt(h, CURLOPT_PROXY, g->ep->proxy);
	if (g->ep->pin != NULL)
		curl_easy_setopt(h, CURLOPT_PINNEDPUBLICKEY, g->ep->pin);
	/* A proxy: libcurl's from the environment (HTTPS_PROXY ...). */
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, g->timeout);
	/* A request that moves no byte either way for `timeout` fails. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, g->timeout);
	if (g->deadline > 0) {
		left = g->deadline - now_seconds();
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, left > 0.001 ?
		    (long)(left * 1000) : 1L);
	}
}

/* The request's own headers; the list lives until req_stop. */
static struct curl_slist *
req_headers(const struct gmail_req *rq)
{
	struct curl_slist *hl = NULL;
	char		*hdr;
	size_t		 i;

	/* No "Expect: 100-continue": a round trip per import for nothing. */
	hl = curl_slist_append(hl, "Expect:");
	if (rq->ctype != NULL) {
		hdr = xprintf("Content-Type: %s", rq->ctype);
		hl = curl_slist_append(hl, hdr);
		free(hdr);
	}
	for (i = 0; i < 2; i++)
		if (rq->extra[i] != NULL)
			hl = curl_slist_append(hl, rq->extra[i]);
	return hl;
}

/* The method and, for POST and PUT, the body read from rq->body. */
static void
req_method(struct gmail_req *rq, CURL *h)
{
	if (strcmp(rq->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(rq->has_body ? body_size(&rq->body) : 0));
	} else if (strcmp(rq->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
		    (curl_off_t)(rq->has_body ? body_size(&rq->body) : 0));
	}
	if (rq->has_body) {
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, rq);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, rq);
	} else if (strcmp(rq->method, "GET") != 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
}

static void
req_start(struct gmail *g, struct gmail_req *rq)
{
	CURL		*h;

	if ((h = curl_easy_init()) == NULL)
		fatal("curl_easy_init failed");
	rq->h = h;
	req_reset(g, rq);
	curl_easy_setopt(h, CURLOPT_URL, rq->url);
	curl_easy_setopt(h, CURLOPT_PRIVATE, rq);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rq->errbuf);
	req_transport(g, h);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rq);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, rq);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "popbridge/" POPBRIDGE_VERSION);
	rq->hdrs = req_headers(rq);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, rq->hdrs);
	req_method(rq, h);
	if (curl_multi_add_handle(g->multi, h) != CURLM_OK)
		fatal("curl_multi_add_handle failed");
}

static void
req_stop(struct gmail *g, struct gmail_req *rq)
{
	curl_multi_remove_handle(g->multi, rq->h);
	curl_easy_cleanup(rq->h);
	curl_slist_free_all(rq->hdrs);
	rq->h = NULL;
	rq->hdrs = NULL;
}

/* The path of a URL, without its query, for the trace. */
static void
trace_path(const char *url, char *out, size_t outsz)
{
	const char	*p = strstr(url, "://"), *q;

	p = p != NULL ? strchr(p + 3, '/') : NULL;
	if (p == NULL)
		p = url;
	q = strchr(p, '?');
	log_clean(out, outsz, p, q != NULL ? (size_t)(q - p) : strlen(p));
}

static bool
is_rate_reason(const char *r)
{
	return strcmp(r, "rateLimitExceeded") == 0 ||
	    strcmp(r, "userRateLimitExceeded") == 0;
}

/* A rate limit: hold the handle, or give up if the wait is too long. */
static bool
rate_hold(struct gmail *g, struct gmail_req *rq, double now)
{
	double	 wait, until;

	if (rq->retry_after >= 0)
		wait = (double)rq->retry_after;
	else {
		wait = (double)(1u << (g->backoff < 6 ? g->backoff : 6));
		/* Jitter, so that accounts sharing a project spread out. */
		wait += (double)(random() % 1000) / 1000.0;
	}
	if (g->backoff < 30)
		g->backoff++;
	if (wait > BACKOFF_MAX && rq->retry_after < 0)
		wait = BACKOFF_MAX;
	until = now + wait;
	if (until <= g->hold_until) {
		rq->not_before = g->hold_until;
		return true;
	}
	if (rq->tries >= RATE_TRIES ||
	    g->waited + (until - (g->hold_until > now ? g->hold_until : now)) >
	    (double)g->max_wait || (g->deadline > 0 && until > g->deadline)) {
		rq->end = END_RATE;
		rq->retry_after = (long)(wait + 0.999);
		return false;
	}
	g->waited += until - (g->hold_until > now ? g->hold_until : now);
	g->hold_until = until;
	rq->not_before = until;
	log_debug("%s: gmail: rate limited (%ld%s); waiting %.1f s",
	    g->account, rq->status, rq->reason[0] != '\0' ? ", rate" : "",
	    wait);
	return true;
}

/* A finished request: true to send it again, false when it has ended. */
static bool
req_done(struct gmail *g, struct gmail_req *rq, CURLcode rc)
{
	char	 msg[200], path[128];
	double	 now = now_seconds();
	char	*fresh = NULL, *cause = NULL;

	curl_easy_getinfo(rq->h, CURLINFO_RESPONSE_CODE, &rq->status);
	rq->curlrc = (int)rc;
	trace_path(rq->url, path, sizeof path);
	if (rc != CURLE_OK) {
		log_trace("%s: gmail: %s %s: %s", g->account, rq->method, path,
		    curl_easy_strerror(rc));
		if (rq->too_long)
			snprintf(rq->why, sizeof rq->why, "the reply is over "
			    "%zu bytes", rq->reply_max > 0 ? rq->reply_max :
			    (size_t)GMAIL_REPLY_MAX);
		else
			log_clean(rq->why, sizeof rq->why, rq->errbuf[0] != '\0' ?
			    rq->errbuf : curl_easy_strerror(rc), strlen(
			    rq->errbuf[0] != '\0' ? rq->errbuf :
			    curl_easy_strerror(rc)));
		if (rc == CURLE_OPERATION_TIMEDOUT && g->deadline > 0 &&
		    now >= g->deadline - 0.5) {
			rq->end = END_DEADLINE;
			return false;
		}
		rq->end = END_LINK;
		/* Not sent at all (or a GET): another go cannot double it. */
		if ((!rq->has_body || !rq->body_sent) && !rq->too_long &&
		    rq->tries < LINK_TRIES && rc != CURLE_PEER_FAILED_VERIFICATION &&
		    rc != CURLE_SSL_PINNEDPUBKEYNOTMATCH) {
			rq->not_before = now + 1;
			return true;
		}
		return false;
	}
	log_trace("%s: gmail: %s %s -> %ld", g->account, rq->method, path,
	    rq->status);
	if (rq->status >= 400)
		gmail_json_error(rq->reply, rq->replylen, rq->reason,
		    sizeof rq->reason, msg, sizeof msg);
	if (rq->status == 401) {
		if (rq->gen < g->token_gen)
			return true;		/* sent with an older token */
		if (g->refreshes == 0) {
			g->refreshes++;
			if (config_secret(g->ep, &fresh, &cause) == RES_OK) {
				secret_free(g->token);
				g->token = fresh;
				g->token_gen++;
				log_debug("%s: gmail: token refused; a fresh one "
				    "from the command", g->account);
				return true;
			}
			log_clean(rq->why, sizeof rq->why, cause, strlen(cause));
			free(cause);
		} else
			log_clean(rq->why, sizeof rq->why, msg, strlen(msg));
		rq->end = END_AUTH;
		g->halted = true;
		return false;
	}
	if (rq->status == 429 || rq->status == 503 ||
	    (rq->status == 403 && is_rate_reason(rq->reason)))
		return rate_hold(g, rq, now);
	if (rq->status == 403 && strcmp(rq->reason, "dailyLimitExceeded") == 0) {
		g->halted = true;
		g->daily = true;
		g->daily_until = rq->retry_after >= 0 ? time(NULL) +
		    rq->retry_after : gmail_quota_reset(time(NULL));
	}
	if (rq->status >= 200 && rq->status < 300)
		g->backoff = 0;
	rq->end = END_REPLY;
	return false;
}

/* The token bucket: may a request of this cost start now?  Else when. */
static bool
bucket_take(struct gmail *g, int cost, double now, double *when)
{
	if (g->rate <= 0)
		return true;
	g->bucket += (now - g->bucket_at) * g->rate;
	g->bucket_at = now;
	if (g->bucket > g->rate)
		g->bucket = g->rate;
	if (g->bucket >= cost) {
		g->bucket -= cost;
		return true;
	}
	*when = now + (cost - g->bucket) / g->rate;
	return false;
}

/* The requests of one gmail_run: those waiting to start, and counts. */
struct runq {
	struct gmail_req **waiting;
	size_t		 nwait;
	size_t		 active;
	size_t		 done;
};

/* End every waiting request with `end`: none of them will start. */
static void
run_drop(struct runq *run, enum gmail_end end)
{
	size_t		 i;

	for (i = 0; i < run->nwait; i++) {
		run->waiting[i]->end = end;
		run->done++;
	}
	run->nwait = 0;
}

/* Start what may start, in order; *when: the next time one may. */
static void
run_start(struct gmail *g, struct runq *run, double now, double *when)
{
	struct gmail_req *r;
	double		 w;
	size_t		 i;

	for (i = 0; i < run->nwait && run->active < g->inflight; ) {
		r = run->waiting[i];
		if (now < g->hold_until || now < r->not_before) {
			w = g->hold_until > r->not_before ?
			    g->hold_until : r->not_before;
			if (w < *when)
				*when = w;
			i++;
			continue;
		}
		if (!bucket_take(g, r->cost, now, when))
			break;
		memmove(run->waiting + i, run->waiting + i + 1,
		    (run->nwait - i - 1) * sizeof *run->waiting);
		run->nwait--;
		req_start(g, r);
		run->active++;
	}
}

/* The finished transfers: each ends or goes back to wait for another go. */
static void
run_collect(struct gmail *g, struct runq *run)
{
	struct gmail_req *r;
	CURLMsg		*m;
	int		 left;

	while ((m = curl_multi_info_read(g->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
		    (char **)&r);
		if (req_done(g, r, m->data.result))
			run->waiting[run->nwait++] = r;
		else
			run->done++;
		req_stop(g, r);		/* m is invalid from here */
		run->active--;
	}
}

/* Wait for the sockets, curl's timers, or the next start (at `when`). */
static void
run_wait(struct gmail *g, const struct runq *run, double when)
{
	double		 now;
	long		 ms, w;

	curl_multi_timeout(g->multi, &ms);
	now = now_seconds();
	if (run->nwait > 0 && run->active < g->inflight) {
		w = when > now ? (long)((when - now) * 1000) + 1 : 0;
		if (ms < 0 || w < ms)
			ms = w;
	}
	if (ms < 0 || ms > 1000)
		ms = 1000;
	if (run->active > 0 || ms > 0)
		curl_multi_poll(g->multi, NULL, 0, (int)ms, NULL);
}

void
gmail_run(struct gmail *g, struct gmail_req **rq, size_t n)
{
	struct runq	 run = { NULL, 0, 0, 0 };
	double		 now, when;
	size_t		 i;
	int		 running;

	run.waiting = xcalloc(n + 1, sizeof *run.waiting);
	for (i = 0; i < n; i++) {
		rq[i]->tries = 0;
		rq[i]->not_before = 0;
		run.waiting[run.nwait++] = rq[i];
	}
	g->waited = 0;
	g->refreshes = 0;
	while (run.done < n) {
		now = now_seconds();
		when = now + 3600;
		/* Those in flight end with curl's timeout. */
		if (g->deadline > 0 && now >= g->deadline)
			run_drop(&run, END_DEADLINE);
		if (g->halted)
			run_drop(&run, END_HALTED);
		run_start(g, &run, now, &when);
		curl_multi_perform(g->multi, &running);
		run_collect(g, &run);
		if (run.done >= n)
			break;
		run_wait(g, &run, when);
	}
	free(run.waiting);
}

/* ---- what a request's end means to its caller ---- */

enum result
gmail_req_result(struct gmail_req *rq, const char *what, char **cause)
{
	char	 reason[64], msg[200];

	switch (rq->end) {
	case END_LINK:
		return fail(cause, RES_TEMP, "gmail: %s: %s", what, rq->why);
	case END_RATE: {
		/* A "slow down" from the destination side, for the batch's
		 * and the daemon's rest (throttle.c). */
		struct throttle	 t = { true, true, rq->retry_after };
		enum result	 r;

		if (t.retry_after < 1)
			t.retry_after = 0;
		else if (t.retry_after > THROTTLE_HINT_MAX)
			t.retry_after = THROTTLE_HINT_MAX;
		r = fail(cause, RES_TEMP, "gmail: %s: rate limited (HTTP %ld); "
		    "try again in %ld s", what, rq->status, rq->retry_after);
		throttle_note(&t, cause);
		return r;
	}
	case END_AUTH:
		return fail(cause, RES_AUTH, "gmail: %s: the token was refused "
		    "(%s)", what, rq->why[0] != '\0' ? rq->why : "401");
	case END_DEADLINE:
		return fail(cause, RES_TEMP, "gmail: %s: the account's deadline "
		    "passed", what);
	case END_HALTED:
		return fail(cause, RES_TEMP, "gmail: %s: not sent (an earlier "
		    "reply stopped the run)", what);
	case END_REPLY:
		break;
	}
	if (rq->status >= 200 && rq->status < 300)
		return RES_OK;
	gmail_json_error(rq->reply, rq->replylen, reason, sizeof reason, msg,
	    sizeof msg);
	if (rq->status == 403 && strcmp(reason, "dailyLimitExceeded") == 0)
		return fail(cause, RES_TEMP, "gmail: %s: the daily limit is "
		    "reached: %s", what, msg);
	return fail(cause, rq->status == 401 || rq->status == 403 ? RES_AUTH :
	    rq->status == 404 ? RES_CONFIG : rq->status == 400 ? RES_MSG :
	    RES_TEMP, "gmail: %s: HTTP %ld%s%s%s%s", what, rq->status,
	    reason[0] != '\0' ? " " : "", reason, msg[0] != '\0' ? ": " : "",
	    msg);
}
