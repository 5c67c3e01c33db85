/*
 * The process that serves the daemon's web page (web.c forks it):
 * GNU libmicrohttpd on the listening socket the daemon opened, one
 * internal thread, and four addresses:
 *
 *   GET  /             the page (page.c)
 *   GET  /metrics      Prometheus' text format (metrics.c)
 *   GET  /status.json  what `status --json` prints (status.c)
 *   GET  /login        asks the browser for the token, then back to /
 *   POST /check        "Check now": a line "check NAME\n" to the daemon
 *
 * Who may do what:
 *   - reading, from a loopback address: anyone (the machine's users can
 *     run `popbridge status` as well); from elsewhere: the token only;
 *   - acting (POST /check): the token, always, and a CSRF token of a page
 *     this process served in the last HTTP_CSRF_TTL seconds, and an Origin
 *     or Referer (when the browser sends one) of this very host;
 *   - a daemon that listens on loopback answers only requests whose Host
 *     is a loopback address or localhost: a site that makes its own name
 *     resolve to 127.0.0.1 (DNS rebinding) gets nothing.
 * The token comes as HTTP Basic authentication (any user name, the token
 * as the password: what a browser asks a person for) or as a Bearer token
 * (Prometheus' authorization setting).  A browser that signed in at
 * /login with it gets a session cookie that stands for it (browsers do
 * not send Basic credentials unasked to a page that did not ask).
 *
 * Bounds: libmicrohttpd takes at most CONN_MAX connections, PER_IP_MAX
 * from one address, each with CONN_MEMORY bytes for the request line and
 * headers and CONN_TIMEOUT seconds of silence; a form's body is at most
 * BODY_MAX bytes; requests beyond a rate (a token bucket) get 429 before
 * any ledger is read.  What is parsed here of the request is parsed by
 * http_form.c, whose functions are fuzzed.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "bridge.h"

#define CONN_MAX	32	/* connections at once */
#define PER_IP_MAX	8	/* ... from one address */
#define CONN_MEMORY	16384	/* bytes: request line, headers, body */
#define CONN_TIMEOUT	15	/* seconds a connection may stay silent */
#define BODY_MAX	1024	/* bytes of a POSTed form */
#define TOKEN_MAX	512	/* bytes of a token sent */
#define READ_RATE	20.0	/* requests a second, sustained ... */
#define READ_BURST	60.0	/* ... and at once */
#define CHECK_RATE	0.5	/* "Check now" presses a second ... */
#define CHECK_BURST	10.0	/* ... and at once */
#define COOKIE		"popbridge_session"

static const struct http_setup *su;
static struct http_bucket read_bucket, check_bucket;

/* A POST's body, gathered over the handler's calls. */
struct upload {
	char	 body[BODY_MAX + 1];
	size_t	 len;
};

static enum MHD_Result
respond_cookie(struct MHD_Connection *c, unsigned int status,
    const char *type, char *body, size_t len, const char *cookie)
{
	struct MHD_Response *r;
	enum MHD_Result	 ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "same-origin");
	MHD_add_response_header(r, "Content-Security-Policy",
	    "default-src 'none'; style-src 'unsafe-inline'; "
	    "form-action 'self'; frame-ancestors 'none'");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, "WWW-Authenticate",
		    "Basic realm=\"popbridge\", charset=\"UTF-8\"");
	if (status == MHD_HTTP_SEE_OTHER)
		MHD_add_response_header(r, "Location", body);
	if (cookie != NULL)
		MHD_add_response_header(r, "Set-Cookie", cookie);
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
respond(struct MHD_Connection *c, unsigned int status, const char *type,
    char *body, size_t len)
{
	return respond_cookie(c, status, type, body, len, NULL);
}

/* A short plain-text answer: "403 Forbidden: why". */
static enum MHD_Result
plain(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
    PRINTFLIKE(3, 4);

static enum MHD_Result
plain(struct MHD_Connection *c, unsigned int status, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg, *body;

	va_start(ap, fmt);
	msg = xvprintf(fmt, ap);
	va_end(ap);
	body = xprintf("%s\n", msg);
	free(msg);
	return respond(c, status, "text/plain; charset=utf-8", body,
	    strlen(body));
}

static bool
peer_loopback(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	const struct sockaddr_in6 *s6;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return false;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->
		    sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	s6 = (const struct sockaddr_in6 *)(const void *)sa;
	return IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr) ||
	    (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) &&
	    s6->sin6_addr.s6_addr[12] == 127);
}

/* Did the request bring the token (in an Authorization header)? */
static bool
has_token(struct MHD_Connection *c)
{
	const char	*h;
	char		 tok[TOKEN_MAX];

	if (su->token == NULL || (h = MHD_lookup_connection_value(c,
	    MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION)) == NULL ||
	    !http_auth_token(h, tok, sizeof tok))
		return false;
	return http_equal(tok, su->token);
}

/* The token, or the cookie of a sign-in with it? */
static bool
signed_in(struct MHD_Connection *c)
{
	const char	*v;

	if (su->token == NULL)
		return false;
	if (has_token(c))
		return true;
	v = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE);
	return v != NULL && strlen(v) < HTTP_CSRF_MAX &&
	    http_session_check(su->key, 32, v, time(NULL));
}

/* /login: a browser that sent the token gets a cookie that says so
 * (HttpOnly: no script reads it; SameSite=Strict: no other site's page
 * sends it), and goes back to the page. */
static enum MHD_Result
login(struct MHD_Connection *c, bool in)
{
	char	 tok[HTTP_CSRF_MAX], *cookie;
	enum MHD_Result ret;

	if (su->token == NULL)
		return plain(c, MHD_HTTP_NOT_FOUND, "Not Found: no token is "
		    "configured");
	if (!in)
		return plain(c, MHD_HTTP_UNAUTHORIZED, "Unauthorized: any user "
		    "name, the token as password");
	http_session_make(su->key, 32, time(NULL), tok, sizeof tok);
	cookie = xprintf("%s=%s; Path=/; Max-Age=%d; HttpOnly; "
	    "SameSite=Strict", COOKIE, tok, HTTP_SESSION_TTL);
	ret = respond_cookie(c, MHD_HTTP_SEE_OTHER, "text/plain; "
	    "charset=utf-8", xstrdup("/"), 1, cookie);
	free(cookie);
	return ret;
}

/* The views of every account, with paths of secrets hidden. */
static struct account_view *
views(bool metrics, size_t *n)
{
	struct account_view *v;
	size_t		 i;

	*n = su->cf->naccounts;
	v = xcalloc(*n + 1, sizeof *v);
	for (i = 0; i < *n; i++)
		status_view(su->cf, &su->cf->accounts[i], metrics, true, &v[i]);
	return v;
}

static void
views_free(struct account_view *v, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		status_view_free(&v[i]);
	free(v);
}

enum what { PAGE, METRICS, JSON };

static enum MHD_Result
serve(struct MHD_Connection *c, enum what what, bool in)
{
	struct account_view *v;
	struct page_opts o;
	char		 csrf[HTTP_CSRF_MAX];
	const char	*asked, *type;
	char		*body = NULL;
	size_t		 n, len = 0;
	FILE		*f;

	if ((f = open_memstream(&body, &len)) == NULL)
		fatal("out of memory");
	v = views(what != JSON, &n);
	switch (what) {
	case PAGE:
		memset(&o, 0, sizeof o);
		o.now = time(NULL);
		o.token_set = su->token != NULL;
		if (in) {
			http_csrf_make(su->key, 32, o.now, csrf, sizeof csrf);
			o.csrf = csrf;
		}
		/* Only a name the config has is said back. */
		if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
		    "checked") != NULL) {
			asked = MHD_lookup_connection_value(c,
			    MHD_GET_ARGUMENT_KIND, "account");
			o.asked = asked == NULL ? "" :
			    config_find(su->cf, asked) != NULL ? asked : NULL;
		}
		page_write(f, v, n, &o);
		type = "text/html; charset=utf-8";
		break;
	case METRICS:
		metrics_write(f, v, n, true);
		type = "text/plain; version=0.0.4; charset=utf-8";
		break;
	default:
		status_json(f, v, n, true);
		type = "application/json";
		break;
	}
	views_free(v, n);
	if (fclose(f) != 0)
		fatal("out of memory");
	return respond(c, MHD_HTTP_OK, type, body, len);
}

/* "/?checked=1&account=NAME", NAME percent-encoded; malloc'd. */
static char *
checked_location(const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	char		*out, *p;
	size_t		 i;

	if (name[0] == '\0')
		return xstrdup("/?checked=1");
	out = p = xmalloc(24 + 3 * strlen(name) + 1);
	p += sprintf(p, "/?checked=1&account=");
	for (i = 0; name[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)name[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		    ch == '.')
			*p++ = (char)ch;
		else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 15];
		}
	}
	*p = '\0';
	return out;
}

/* Is the POST from a page of this host (when the browser says)? */
static bool
same_origin(struct MHD_Connection *c, const char *host)
{
	const char	*origin, *referer;

	origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_ORIGIN);
	referer = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_REFERER);
	if (origin != NULL)
		return http_same_origin(origin, host, false);
	if (referer != NULL)
		return http_same_origin(referer, host, true);
	return true;		/* curl, scripts: the CSRF token decides */
}

static enum MHD_Result
check(struct MHD_Connection *c, const struct upload *u, const char *host)
{
	const char	*type;
	char		 csrf[HTTP_CSRF_MAX], name[256], *line, *loc;
	size_t		 n;
	ssize_t		 w;

	if (su->token == NULL)
		return plain(c, MHD_HTTP_FORBIDDEN, "Forbidden: \"Check now\" "
		    "needs a token (listen_token_file in the config)");
	if (!signed_in(c))
		return plain(c, MHD_HTTP_UNAUTHORIZED, "Unauthorized: the "
		    "token is needed (any user name, the token as password)");
	type = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_TYPE);
	if (type == NULL || strncasecmp(type,
	    "application/x-www-form-urlencoded", 33) != 0)
		return plain(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "Unsupported "
		    "Media Type: a form (application/x-www-form-urlencoded)");
	if (!same_origin(c, host))
		return plain(c, MHD_HTTP_FORBIDDEN, "Forbidden: the form was "
		    "sent from another site");
	if (!http_form_get(u->body, u->len, "csrf", csrf, sizeof csrf) ||
	    !http_csrf_check(su->key, 32, csrf, time(NULL)))
		return plain(c, MHD_HTTP_FORBIDDEN, "Forbidden: the page is "
		    "too old or not this daemon's; reload it and press again");
	if (!http_form_get(u->body, u->len, "account", name, sizeof name))
		name[0] = '\0';
	else if (config_find(su->cf, name) == NULL)
		return plain(c, MHD_HTTP_NOT_FOUND, "Not Found: no such "
		    "account");
	if (!http_bucket_take(&check_bucket, now_seconds(), CHECK_RATE,
	    CHECK_BURST))
		return plain(c, MHD_HTTP_TOO_MANY_REQUESTS, "Too Many "
		    "Requests: a check was asked for a moment ago");
	line = xprintf("check %s\n", name);
	n = strlen(line);
	/* Never blocks: the daemon reads these between polls. */
	w = send(su->chan, line, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	free(line);
	if (w != (ssize_t)n)
		return plain(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Service "
		    "Unavailable: the daemon is busy; try again");
	loc = checked_location(name);
	return respond(c, MHD_HTTP_SEE_OTHER, "text/plain; charset=utf-8",
	    loc, strlen(loc));
}

/* Who may, before anything is read or parsed further. */
static enum MHD_Result
gate(struct MHD_Connection *c, const char **hostp, bool *in, bool *refused)
{
	const char	*host;

	*refused = true;
	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_HOST);
	if (host == NULL || strlen(host) > 255)
		return plain(c, MHD_HTTP_BAD_REQUEST, "Bad Request: no Host");
	if (su->loopback && !http_host_loopback(host))
		return plain(c, MHD_HTTP_MISDIRECTED_REQUEST, "Misdirected "
		    "Request: this page answers to 127.0.0.1 and localhost");
	if (!http_bucket_take(&read_bucket, now_seconds(), READ_RATE,
	    READ_BURST))
		return plain(c, MHD_HTTP_TOO_MANY_REQUESTS, "Too Many "
		    "Requests");
	*in = signed_in(c);
	if (!*in && !peer_loopback(c))
		return plain(c, MHD_HTTP_UNAUTHORIZED, "Unauthorized: the "
		    "token is needed (any user name, the token as password)");
	*hostp = host;
	*refused = false;
	return MHD_YES;
}

/* A GET (or HEAD) allowed through the gate. */
static enum MHD_Result
get(struct MHD_Connection *c, const char *url, bool in)
{
	if (strcmp(url, "/") == 0)
		return serve(c, PAGE, in);
	if (strcmp(url, "/metrics") == 0)
		return serve(c, METRICS, in);
	if (strcmp(url, "/status.json") == 0)
		return serve(c, JSON, in);
	if (strcmp(url, "/login") == 0)
		return login(c, in);
	return plain(c, MHD_HTTP_NOT_FOUND, "Not Found");
}

/*
 * libmicrohttpd calls this once with the headers (state NULL), then, for
 * a POST, with each piece of the body, then once more at its end.  The
 * gate is passed at the first call: nobody it refuses gets to send a
 * body.
 */
static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *data,
    size_t *data_size, void **state)
{
	struct upload	*u = *state;
	const char	*host = NULL, *cl;
	enum MHD_Result	 ret;
	bool		 in = false, refused;

	if (u == NULL) {
		if ((ret = gate(c, &host, &in, &refused)) != MHD_YES ||
		    refused)
			return ret;
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
			if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
			    strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
				return plain(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				    "Method Not Allowed");
			return get(c, url, in);
		}
		if (strcmp(url, "/check") != 0)
			return plain(c, MHD_HTTP_NOT_FOUND, "Not Found");
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && (strlen(cl) > 6 || strtoul(cl, NULL, 10) >
		    BODY_MAX))
			return plain(c, MHD_HTTP_CONTENT_TOO_LARGE, "Content "
			    "Too Large: a form of at most %d bytes", BODY_MAX);
		*state = xcalloc(1, sizeof *u);
		return MHD_YES;
	}
	if (*data_size > 0) {
		/* A body longer than it said, or chunked: cut off. */
		if (*data_size > BODY_MAX - u->len)
			return MHD_NO;
		memcpy(u->body + u->len, data, *data_size);
		u->len += *data_size;
		*data_size = 0;
		return MHD_YES;
	}
	u->body[u->len] = '\0';
	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_HOST);
	return check(c, u, host != NULL ? host : "");
}

static void
completed(void *cls, struct MHD_Connection *c, void **state,
    enum MHD_RequestTerminationCode why)
{
	free(*state);
	*state = NULL;
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char	*msg = xvprintf(fmt, ap);

	msg[strcspn(msg, "\n")] = '\0';
	log_debug("web page: %s", msg);
	free(msg);
}

void
http_serve(const struct http_setup *setup)
{
	struct MHD_Daemon *mhd;
	char		 c;
	ssize_t		 n;

	su = setup;
	mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
	    MHD_USE_ERROR_LOG, 0, NULL, NULL, handle, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)su->listen_fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)CONN_MAX,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)PER_IP_MAX,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)CONN_TIMEOUT,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	    MHD_OPTION_END);
	if (mhd == NULL) {
		log_warn("web page: libmicrohttpd could not start");
		_exit(1);
	}
	/* The daemon never writes here: the end of it is the daemon's. */
	while ((n = read(su->chan, &c, 1)) != 0)
		if (n == -1 && errno != EINTR)
			break;
	MHD_stop_daemon(mhd);
	_exit(0);
}
