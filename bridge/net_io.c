/*
 * Bytes over an open connection (net.c opens it): writes, the read buffer
 * and the line reader above it, and the waits between them, each bounded
 * by the connection's timeout and by the account run's deadline.  The
 * same code serves libcurl's socket and a memory connection (conn_memory),
 * whose script stands in for the server.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "bridge.h"
#include "net_int.h"

/*
 * The deadline of the account run in progress (monotonic seconds; 0 for
 * none): every wait and every login ends by then.  One per process: a run
 * does one account at a time, and the daemon and batch run each in a
 * child of its own.
 */
static double	 deadline_at;
static double	 deadline_total;

void
net_deadline(double seconds)
{
	deadline_total = seconds;
	deadline_at = seconds > 0 ? now_seconds() + seconds : 0;
}

void
net_deadline_extend(double seconds)
{
	if (deadline_at > 0) {
		deadline_at += seconds;
		deadline_total += seconds;
	}
}

double
net_deadline_left(void)
{
	return deadline_at > 0 ? deadline_at - now_seconds() : NET_NO_DEADLINE;
}

static enum result
conn_wait(struct conn *c, short events, char **cause)
{
	struct pollfd	 pfd;
	double		 left = net_deadline_left();
	int		 n, ms = (int)(c->timeout * 1000);

	/*
	 * A server that trickles a byte at a time never lets the per-wait
	 * timeout fire: the account's deadline bounds the whole run.
	 */
	if (left <= 0) {
		c->dead = true;
		return fail(cause, RES_TEMP, "%s: %s: the account's deadline "
		    "passed (%.0f s for this run; \"deadline\" in the config)",
		    c->proto, c->host, deadline_total);
	}
	if (left * 1000 < ms)
		ms = (int)(left * 1000) + 1;
	pfd.fd = c->sock;
	pfd.events = events;
	do
		n = poll(&pfd, 1, ms);
	while (n == -1 && errno == EINTR);
	if (n != 1)
		c->dead = true;
	if (n == 0 && net_deadline_left() <= 0)
		return fail(cause, RES_TEMP, "%s: %s: the account's deadline "
		    "passed (%.0f s for this run; \"deadline\" in the config)",
		    c->proto, c->host, deadline_total);
	if (n == 0)
		return fail(cause, RES_TEMP, "%s: %s: no answer for %ld s",
		    c->proto, c->host, c->timeout);
	if (n == -1)
		return fail(cause, RES_TEMP, "%s: %s: poll: %s", c->proto,
		    c->host, strerror(errno));
	return RES_OK;
}

/*
 * The two places where bytes cross: libcurl's socket, or for a memory
 * connection (conn_memory) its script, in steps its io->step chooses.
 * Everything above them (conn_wait, the buffer, the line reader) is the
 * same for both.
 */
static CURLcode
conn_recv(struct conn *c, char *buf, size_t n, size_t *got)
{
	size_t	 k;

	if (!c->memory)
		return curl_easy_recv(c->h, buf, n, got);
	*got = 0;
	k = c->io.step != NULL ? c->io.step(c->io.arg, false, n) : n;
	if (k == CONN_STEP_FAIL)
		return CURLE_RECV_ERROR;
	if (k == 0 && c->inpos < c->inlen)
		return CURLE_AGAIN;
	if (k > n)
		k = n;
	if (k > c->inlen - c->inpos)
		k = c->inlen - c->inpos;
	memcpy(buf, c->in + c->inpos, k);	/* 0 at the end: closed */
	c->inpos += k;
	*got = k;
	return CURLE_OK;
}

static CURLcode
conn_send(struct conn *c, const char *p, size_t len, size_t *sent)
{
	size_t	 k;

	if (!c->memory)
		return curl_easy_send(c->h, p, len, sent);
	*sent = 0;
	k = c->io.step != NULL ? c->io.step(c->io.arg, true, len) : len;
	if (k == CONN_STEP_FAIL)
		return CURLE_SEND_ERROR;
	if (k == 0)
		return CURLE_AGAIN;
	if (k > len)
		k = len;
	if (c->io.sent != NULL)
		c->io.sent(c->io.arg, p, k);
	*sent = k;
	return CURLE_OK;
}

/*
 * A server that ends the session says why first ("* BYE Autologged out",
 * "-ERR ..."), and a write that fails after it leaves those words unread
 * in the socket.  Take what is there without waiting and find them, so
 * the error names the server's reason rather than a broken pipe.
 */
static bool
conn_last_words(struct conn *c, char *out, size_t outsz)
{
	const char	*prefix = strcmp(c->proto, "pop3") == 0 ? "-ERR" :
			    "* BYE";
	size_t		 n = strlen(prefix), got, i, start;
	int		 tries;

	for (tries = 0; tries < 4 && c->rend < sizeof c->rbuf; tries++) {
		if (conn_recv(c, c->rbuf + c->rend, sizeof c->rbuf - c->rend,
		    &got) != CURLE_OK || got == 0)
			break;
		c->rend += got;
	}
	for (start = c->rstart, i = c->rstart; i < c->rend; i++) {
		if (c->rbuf[i] != '\n')
			continue;
		if (i - start >= n &&
		    strncasecmp(c->rbuf + start, prefix, n) == 0) {
			log_clean(out, outsz, c->rbuf + start,
			    i - start - (c->rbuf[i - 1] == '\r'));
			return true;
		}
		start = i + 1;
	}
	return false;
}

enum result
conn_write(struct conn *c, const void *data, size_t len, char **cause)
{
	char		 words[200];
	const char	*p = data;
	size_t		 sent;
	CURLcode	 rc;
	enum result	 r;

	while (len > 0) {
		rc = conn_send(c, p, len, &sent);
		if (rc == CURLE_AGAIN) {
			if ((r = conn_wait(c, POLLOUT, cause)) != RES_OK)
				return r;
			continue;
		}
		if (rc != CURLE_OK) {
			c->dead = true;
			if (conn_last_words(c, words, sizeof words)) {
				r = fail(cause, RES_TEMP, "%s: %s: the server "
				    "ended the session while we were sending: "
				    "%s", c->proto, c->host, words);
				throttle_heard(words, strcmp(c->proto, "imap") ==
				    0, cause);
				return r;
			}
			return fail(cause, RES_TEMP, "%s: %s: connection lost "
			    "while sending: %s", c->proto, c->host,
			    curl_easy_strerror(rc));
		}
		p += sent;
		len -= sent;
	}
	return RES_OK;
}

/* Read more bytes into rbuf after rend; there must be room. */
static enum result
conn_fill(struct conn *c, char **cause)
{
	size_t		 got;
	CURLcode	 rc;
	enum result	 r;

	if (c->rstart == c->rend)
		c->rstart = c->rend = 0;
	else if (c->rend == sizeof c->rbuf && c->rstart > 0) {
		memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
		c->rend -= c->rstart;
		c->rstart = 0;
	}
	for (;;) {
		/* Only wait after CURLE_AGAIN: TLS may hold decrypted bytes. */
		rc = conn_recv(c, c->rbuf + c->rend,
		    sizeof c->rbuf - c->rend, &got);
		if (rc == CURLE_AGAIN) {
			if ((r = conn_wait(c, POLLIN, cause)) != RES_OK)
				return r;
			continue;
		}
		if (rc != CURLE_OK || got == 0)
			c->dead = true;
		if (rc != CURLE_OK)
			return fail(cause, RES_TEMP, "%s: %s: connection lost: %s",
			    c->proto, c->host, curl_easy_strerror(rc));
		if (got == 0)
			return fail(cause, RES_TEMP, "%s: %s: connection closed "
			    "by the server", c->proto, c->host);
		c->rend += got;
		/*
		 * A TLS read gives one record; take what else is there
		 * already, so that the caller works on large blocks.
		 */
		while (sizeof c->rbuf - c->rend >= 16384 &&
		    conn_recv(c, c->rbuf + c->rend,
		    sizeof c->rbuf - c->rend, &got) == CURLE_OK && got > 0)
			c->rend += got;
		return RES_OK;
	}
}

enum result
conn_getline(struct conn *c, char **line, size_t *len, size_t max,
    char **cause)
{
	char		*nl;
	size_t		 scanned = 0, n;
	enum result	 r;

	if (max > sizeof c->rbuf - 1)
		max = sizeof c->rbuf - 1;
	for (;;) {
		nl = memchr(c->rbuf + c->rstart + scanned, '\n',
		    c->rend - c->rstart - scanned);
		if (nl != NULL)
			break;
		scanned = c->rend - c->rstart;
		if (scanned > max)
			return fail(cause, RES_TEMP, "%s: %s: a reply line longer "
			    "than %zu bytes", c->proto, c->host, max);
		if (c->rend == sizeof c->rbuf) {
			memmove(c->rbuf, c->rbuf + c->rstart, scanned);
			c->rend = scanned;
			c->rstart = 0;
		}
		if ((r = conn_fill(c, cause)) != RES_OK)
			return r;
	}
	*line = c->rbuf + c->rstart;
	n = (size_t)(nl - *line);
	c->rstart += n + 1;
	if (n > max)
		return fail(cause, RES_TEMP, "%s: %s: a reply line longer than "
		    "%zu bytes", c->proto, c->host, max);
	if (n > 0 && (*line)[n - 1] == '\r')
		n--;
	(*line)[n] = '\0';
	*len = n;
	return RES_OK;
}

enum result
conn_peek(struct conn *c, const char **p, size_t *n, char **cause)
{
	enum result	 r;

	if (c->rstart == c->rend && (r = conn_fill(c, cause)) != RES_OK)
		return r;
	*p = c->rbuf + c->rstart;
	*n = c->rend - c->rstart;
	return RES_OK;
}

/*
 * Could a read go on now without waiting: bytes buffered here or in TLS,
 * or the socket readable (or closed: then the read says so)?  Lets a
 * caller read replies when they have come and do other work until then.
 */
bool
conn_ready(struct conn *c)
{
	struct pollfd	 pfd;

	if (c->dead || c->memory || c->rstart < c->rend ||
	    (c->ssl != NULL && SSL_pending(c->ssl) > 0))
		return true;
	pfd.fd = c->sock;
	pfd.events = POLLIN;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) == 1;
}

void
conn_consume(struct conn *c, size_t n)
{
	if (n > c->rend - c->rstart)
		n = c->rend - c->rstart;
	c->rstart += n;
}

bool
conn_dead(struct conn *c)
{
	return c->dead;
}
