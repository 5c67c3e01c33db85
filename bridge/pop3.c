/*
 * The POP3 side (RFC 1939, RFC 2449): after libcurl has logged in, list the
 * messages with their UIDLs and sizes, fetch them, mark them deleted and
 * QUIT.  Nothing is committed on the server unless QUIT succeeds, so a
 * crash or a dropped connection never deletes anything.
 *
 * Every reply is checked: a status line must start with +OK or -ERR, a
 * listing must account for each message exactly once, a message must end
 * with ".CRLF" and may not run far past its announced size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"

#define POP3_LINE_MAX	4096

static enum result pop3_utf8(struct pop3 *, char **);

struct pop3 {
	struct conn	*c;
	char		*account;
	char		*host;
	struct pop3_caps caps;
	double		 rtt;		/* STAT's round trip, seconds */
};

static void
read_caps(struct pop3 *p)
{
	const char	*pos = conn_login_lines(p->c), *s;
	char		 line[128];
	size_t		 n;

	/* curl sent CAPA; its reply is among the login lines, one per line. */
	while ((s = login_line_next(&pos, &n)) != NULL) {
		if (n >= sizeof line)
			continue;
		memcpy(line, s, n);
		line[n] = '\0';
		if (strcasecmp(line, "UIDL") == 0)
			p->caps.uidl = true;
		else if (strcasecmp(line, "PIPELINING") == 0)
			p->caps.pipelining = true;
		else if (strcasecmp(line, "TOP") == 0)
			p->caps.top = true;
		else if (strncasecmp(line, "UTF8", 4) == 0 &&
		    (line[4] == '\0' || line[4] == ' '))
			p->caps.utf8 = true;
	}
}

enum result
pop3_open(const struct endpoint *ep, const char *secret, const char *account,
    long timeout, struct pop3 **pp, char **cause)
{
	struct conn	*c;
	enum result	 r;

	*pp = NULL;
	if ((r = conn_open(ep, secret, account, timeout, &c, cause)) !=
	    RES_OK)
		return r;
	return pop3_open_conn(c, account, ep->host, pp, cause);
}

/* The session on a logged-in connection: conn_open's, or conn_memory's. */
enum result
pop3_open_conn(struct conn *c, const char *account, const char *host,
    struct pop3 **pp, char **cause)
{
	struct pop3	*p;
	enum result	 r;

	*pp = NULL;
	p = xcalloc(1, sizeof *p);
	p->c = c;
	p->account = xstrdup(account);
	p->host = xstrdup(host);
	read_caps(p);
	if ((r = pop3_utf8(p, cause)) != RES_OK) {
		pop3_free(p);
		return r;
	}
	*pp = p;
	return RES_OK;
}

const struct pop3_caps *
pop3_caps(struct pop3 *p)
{
	return &p->caps;
}

double
pop3_rtt(struct pop3 *p)
{
	return p->rtt;
}

struct conn *
pop3_conn(struct pop3 *p)
{
	return p->c;
}

/* Send one command line; the caller's text never holds a secret. */
static enum result
pop3_send(struct pop3 *p, const char *cmd, char **cause)
{
	char		*line;
	enum result	 r;

	log_trace("%s: pop3: C: %s", p->account, cmd);
	line = xprintf("%s\r\n", cmd);
	r = conn_write(p->c, line, strlen(line), cause);
	free(line);
	return r;
}

/*
 * Read a status line.  +OK gives RES_OK with *text after "+OK"; -ERR gives
 * RES_MSG and the server's words in *cause; anything else is a protocol
 * error.
 */
static enum result
pop3_status(struct pop3 *p, const char *cmd, char **text, char **cause)
{
	char		*line, clean[300];
	size_t		 len;
	enum result	 r;

	if ((r = conn_getline(p->c, &line, &len, POP3_LINE_MAX, cause)) !=
	    RES_OK)
		return r;
	log_trace("%s: pop3: S: %s", p->account,
	    log_clean(clean, sizeof clean, line, len));
	if (strncmp(line, "+OK", 3) == 0 &&
	    (line[3] == '\0' || line[3] == ' ')) {
		if (text != NULL)
			*text = line;
		return RES_OK;
	}
	if (strncmp(line, "-ERR", 4) == 0)
		r = fail(cause, RES_MSG, "pop3: %s: %s refused: %s", p->host,
		    cmd, log_clean(clean, sizeof clean, line + 4 +
		    (line[4] == ' '), len - 4 - (line[4] == ' ')));
	else
		r = fail(cause, RES_TEMP, "pop3: %s: unexpected reply to %s: "
		    "%s", p->host, cmd, log_clean(clean, sizeof clean, line,
		    len));
	/* "-ERR [SYS/TEMP] ..., try again in 5 minutes": for the batch. */
	throttle_heard(clean, false, cause);
	return r;
}

static enum result
pop3_simple(struct pop3 *p, const char *cmd, char **text, char **cause)
{
	enum result	 r;

	if ((r = pop3_send(p, cmd, cause)) != RES_OK)
		return r;
	return pop3_status(p, cmd, text, cause);
}

/*
 * RFC 6856 UTF8: Courier POP3 1.0 serves a message whose header holds
 * 8-bit bytes as a "Cannot display Unicode content" wrapper (989 bytes
 * for a LIST size of 255) until the client sends UTF8; then RETR gives
 * the message as it is.  Courier takes it after the login too, which is
 * when popbridge can speak (libcurl logs in).  A refusal changes nothing.
 */
static enum result
pop3_utf8(struct pop3 *p, char **cause)
{
	char		*why = NULL;
	enum result	 r;

	if (!p->caps.utf8)
		return RES_OK;
	r = pop3_simple(p, "UTF8", NULL, &why);
	if (r == RES_MSG) {
		log_debug("%s: pop3: %s: %s", p->account, p->host, why);
		r = RES_OK;
	} else if (r != RES_OK) {
		free(*cause);
		*cause = why;
		return r;
	}
	free(why);
	return RES_OK;
}

static enum result
pop3_stat_read(struct pop3 *p, unsigned int *count, uint64_t *size,
    char **cause)
{
	char		*text, clean[200];
	enum result	 r;

	if ((r = pop3_status(p, "STAT", &text, cause)) != RES_OK)
		return r;
	if (!pop3_parse_stat(text, count, size))
		return fail(cause, RES_TEMP, "pop3: %s: malformed STAT reply: %s",
		    p->host, log_clean(clean, sizeof clean, text,
		    strlen(text)));
	return RES_OK;
}

enum result
pop3_stat(struct pop3 *p, unsigned int *count, uint64_t *size, char **cause)
{
	enum result	 r;

	if ((r = pop3_send(p, "STAT", cause)) != RES_OK ||
	    (r = pop3_stat_read(p, count, size, cause)) != RES_OK)
		return r == RES_MSG ? RES_TEMP : r;
	return RES_OK;
}

/* One line of a multi-line listing; *end at the terminating ".". */
static enum result
pop3_list_line(struct pop3 *p, char **line, bool *end, char **cause)
{
	size_t		 len;
	enum result	 r;

	if ((r = conn_getline(p->c, line, &len, POP3_LINE_MAX, cause)) !=
	    RES_OK)
		return r;
	*end = strcmp(*line, ".") == 0;
	return RES_OK;
}

/* The reply to UIDL or LIST (already sent): fill msgs[num - 1]. */
static enum result
pop3_listing_read(struct pop3 *p, const char *cmd, struct pop3_msg *msgs,
    unsigned int count, char **cause)
{
	char		*line, clean[200];
	bool		 end, *seen;
	unsigned int	 num, lines = 0;
	enum result	 r;

	if ((r = pop3_status(p, cmd, NULL, cause)) != RES_OK)
		return r;
	seen = xcalloc(count + 1, sizeof *seen);
	for (;;) {
		if ((r = pop3_list_line(p, &line, &end, cause)) != RES_OK)
			break;
		if (end)
			break;
		if (strcmp(cmd, "UIDL") == 0) {
			char uidl[UIDL_MAX + 1];

			if (!pop3_parse_uidl(line, &num, uidl)) {
				r = fail(cause, RES_TEMP, "pop3: %s: malformed "
				    "UIDL line: %s", p->host, log_clean(clean,
				    sizeof clean, line, strlen(line)));
				break;
			}
			if (num >= 1 && num <= count)
				memcpy(msgs[num - 1].uidl, uidl,
				    sizeof msgs[num - 1].uidl);
		} else {
			uint64_t size;

			if (!pop3_parse_list(line, &num, &size)) {
				r = fail(cause, RES_TEMP, "pop3: %s: malformed "
				    "LIST line: %s", p->host, log_clean(clean,
				    sizeof clean, line, strlen(line)));
				break;
			}
			if (num >= 1 && num <= count)
				msgs[num - 1].size = size;
		}
		if (num < 1 || num > count || seen[num]) {
			r = fail(cause, RES_TEMP, "pop3: %s: %s lists message "
			    "%u %s (STAT said %u messages)", p->host, cmd, num,
			    num >= 1 && num <= count ? "twice" : "that does "
			    "not exist", count);
			break;
		}
		seen[num] = true;
		lines++;
	}
	free(seen);
	if (r == RES_OK && lines != count)
		r = fail(cause, RES_TEMP, "pop3: %s: %s lists %u messages, STAT "
		    "said %u", p->host, cmd, lines, count);
	if (r != RES_OK) {
		/* The rest of the listing is unread: the link is unusable. */
		return r == RES_MSG ? RES_MSG : RES_TEMP;
	}
	return RES_OK;
}

static enum result
pop3_listing(struct pop3 *p, const char *cmd, struct pop3_msg *msgs,
    unsigned int count, char **cause)
{
	enum result	 r;

	if ((r = pop3_send(p, cmd, cause)) != RES_OK)
		return r;
	return pop3_listing_read(p, cmd, msgs, count, cause);
}

struct standin {
	struct hash	*h;
};

static enum result
standin_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct standin	*s = arg;

	(void)cause;
	hash_update(s->h, p, n);
	return RES_OK;
}

/* Does a line begin like a POP3 status line? */
static bool
status_like(const char *p, size_t n)
{
	if (n >= 3 && memcmp(p, "+OK", 3) == 0)
		return n == 3 || p[3] == ' ' || p[3] == '\r';
	return n >= 4 && memcmp(p, "-ERR", 4) == 0 &&
	    (n == 4 || p[4] == ' ' || p[4] == '\r');
}

/*
 * A body that begins with a status line is a message (a bounce, a test
 * mail: the first line of a message need not be a header), unless the
 * server answered out of step and put a reply in front of it: then the
 * body is longer than LIST said by about that line.  So such a body counts
 * as out of step when it is nearer the announced size without its first
 * line than with it.  That is an error for this message (set aside if it
 * keeps happening), never for the whole mailbox.
 */
static bool
out_of_step(const char *first, size_t held, size_t flen, uint64_t total,
    uint64_t size)
{
	uint64_t	 with, without;

	if (size == 0 || !status_like(first, held) || flen > total)
		return false;
	with = total > size ? total - size : size - total;
	without = total - flen > size ? total - flen - size : size -
	    (total - flen);
	return without < with;
}

/*
 * Read a dot-stuffed multi-line body into sink, bounded by limit; size is
 * what LIST announced (0 unknown).  The body is taken as it comes; replies
 * out of step with the commands show as a body that runs past its size
 * or that begins with a status line it should not have (out_of_step).
 */
static enum result
pop3_body(struct pop3 *p, const char *what, uint64_t size, uint64_t limit,
    msg_sink sink, void *arg, char **cause)
{
	struct dot_decoder	 d;
	const char		*in, *lf;
	char			*out, first[64];
	size_t			 avail, used, n, flen = 0;
	uint64_t		 total = 0;
	bool			 done = false, have_first = false;
	enum result		 r = RES_OK;

	dot_init(&d);
	out = xmalloc(65536 + 2);
	while (!done) {
		if ((r = conn_peek(p->c, &in, &avail, cause)) != RES_OK)
			break;
		if (avail > 65536)
			avail = 65536;
		n = dot_decode(&d, in, avail, out, &used, &done);
		conn_consume(p->c, used);
		pace_take(used);	/* migrate --limit-rate */
		/* The first line (its length, its first bytes), once. */
		if (!have_first && n > 0) {
			lf = memchr(out, '\n', n);
			if (flen < sizeof first)
				memcpy(first + flen, out, (sizeof first - flen) <
				    n ? sizeof first - flen : n);
			flen += lf != NULL ? (size_t)(lf - out) + 1 : n;
			have_first = lf != NULL;
		}
		total += n;
		if (total > limit) {
			r = fail(cause, RES_TEMP, "pop3: %s: %s is larger than "
			    "the server announced", p->host, what);
			break;
		}
		if (n > 0 && (r = sink(arg, out, n, cause)) != RES_OK)
			break;
	}
	if (r == RES_OK && out_of_step(first, flen < sizeof first ? flen :
	    sizeof first, flen, total, size))
		r = fail(cause, RES_TEMP, "pop3: %s: the reply to %s holds "
		    "another reply: the server answers out of step", p->host,
		    what);
	free(out);
	return r;
}

/* Hash a multi-line reply (TOP or RETR) after its +OK. */
static enum result
pop3_hash_reply(struct pop3 *p, const char *cmd, uint64_t limit, char *hex,
    char **cause)
{
	struct standin	 s;
	enum result	 r;

	if ((r = pop3_simple(p, cmd, NULL, cause)) != RES_OK)
		return r == RES_MSG ? RES_TEMP : r;
	s.h = hash_new();
	r = pop3_body(p, cmd, 0, limit, standin_sink, &s, cause);
	hash_final(s.h, hex);
	return r;
}

static unsigned int
count_id(const struct pop3_msg *msgs, unsigned int n, const char *id)
{
	unsigned int	 i, k = 0;

	for (i = 0; i < n; i++)
		k += strcmp(msgs[i].uidl, id) == 0;
	return k;
}

/*
 * Stand-in ids for a server without UIDL (RFC 1939 makes it optional).
 * An id must not depend on the other messages on the server, or it would
 * shift when one is deleted and name an already imported message.  So:
 * a hash of the header (TOP n 0) and the size; where two messages share
 * both, a hash of the whole message.  Only byte-identical copies are left
 * alike; they are numbered in server order.
 */
static enum result
pop3_standins(struct pop3 *p, struct pop3_msg *msgs, unsigned int count,
    char **cause)
{
	unsigned int	 i, j, dup;
	char		 cmd[32], hex[65];
	enum result	 r;

	for (i = 0; i < count; i++) {
		snprintf(cmd, sizeof cmd, "TOP %u 0", i + 1);
		if ((r = pop3_hash_reply(p, cmd, msgs[i].size + (1 << 20), hex,
		    cause)) != RES_OK)
			return r;
		snprintf(msgs[i].uidl, sizeof msgs[i].uidl, "~%.32s.%llu", hex,
		    (unsigned long long)msgs[i].size);
	}
	for (i = 0; i < count; i++) {
		if (msgs[i].uidl[0] != '~' || msgs[i].uidl[1] == '=' ||
		    count_id(msgs, count, msgs[i].uidl) < 2)
			continue;
		/* Same header, same size: tell them apart by content. */
		for (j = count; j-- > i;) {
			char id[UIDL_MAX + 1];

			if (strcmp(msgs[j].uidl, msgs[i].uidl) != 0)
				continue;
			snprintf(cmd, sizeof cmd, "RETR %u", j + 1);
			if ((r = pop3_hash_reply(p, cmd, msgs[j].size +
			    msgs[j].size / 4 + (1 << 20), hex, cause)) !=
			    RES_OK)
				return r;
			snprintf(id, sizeof id, "~=%.40s", hex);
			memcpy(msgs[j].uidl, id, sizeof id);
		}
	}
	for (i = 0; i < count; i++) {
		if (strncmp(msgs[i].uidl, "~=", 2) != 0 ||
		    strchr(msgs[i].uidl, '-') != NULL)
			continue;
		dup = 1;
		for (j = i + 1; j < count; j++)
			if (strcmp(msgs[j].uidl, msgs[i].uidl) == 0)
				snprintf(msgs[j].uidl + 42, sizeof msgs[j].uidl -
				    42, "-%u", ++dup);
	}
	return RES_OK;
}

/*
 * UIDL's reply into msgs (sent already if pipelined), or header hashes
 * standing in where the server has no UIDL; then the listing checked.
 */
static enum result
pop3_scan_uidl(struct pop3 *p, struct pop3_msg *msgs, unsigned int count,
    bool pipelined, bool *standin_r, char **cause)
{
	enum result	 r;

	r = pipelined ? pop3_listing_read(p, "UIDL", msgs, count, cause) :
	    pop3_listing(p, "UIDL", msgs, count, cause);
	if (r == RES_MSG && (p->caps.uidl ||
	    strstr(*cause, "refused: [") != NULL)) {
		/*
		 * A server that lists UIDL in CAPA, or says why in a
		 * response code ([SYS/TEMP], [IN-USE]: RFC 2449, 3206), has
		 * UIDL and cannot give it now.  Header hashes instead would
		 * name the same messages differently and import them again
		 * once UIDL works.
		 */
		char *why = *cause;

		*cause = xprintf("%s (the server has UIDL, so nothing is "
		    "imported without it; tried again next run)", why);
		free(why);
		r = RES_TEMP;
	} else if (r == RES_MSG) {
		/* UIDL is optional in RFC 1939. */
		log_debug("%s: pop3: %s has no UIDL; using header hashes",
		    p->account, p->host);
		/* The refusal is no failure: an OK has no cause. */
		free(*cause);
		*cause = NULL;
		*standin_r = true;
		r = pop3_standins(p, msgs, count, cause);
	}
	if (r != RES_OK)
		return r;
	if (!pop3_list_check(msgs, count, cause)) {
		char *why = *cause;

		*cause = xprintf("pop3: %s: %s", p->host, why);
		free(why);
		return RES_TEMP;
	}
	return RES_OK;
}

enum result
pop3_scan(struct pop3 *p, struct pop3_msg **msgs_r, unsigned int *count_r,
    bool *standin_r, char **cause)
{
	struct pop3_msg	*msgs;
	unsigned int	 count, i;
	uint64_t	 size;
	bool		 pipelined;
	enum result	 r;

	*msgs_r = NULL;
	*count_r = 0;
	*standin_r = false;
	/*
	 * With PIPELINING, STAT, LIST and UIDL go out together: one round
	 * trip instead of three.  Their replies are read in order below.
	 */
	pipelined = p->caps.pipelining && p->caps.uidl;
	p->rtt = now_seconds();
	if (pipelined && ((r = pop3_send(p, "STAT", cause)) != RES_OK ||
	    (r = pop3_send(p, "LIST", cause)) != RES_OK ||
	    (r = pop3_send(p, "UIDL", cause)) != RES_OK))
		return r;
	if ((r = pipelined ? pop3_stat_read(p, &count, &size, cause) :
	    pop3_stat(p, &count, &size, cause)) != RES_OK)
		return r == RES_MSG ? RES_TEMP : r;
	p->rtt = now_seconds() - p->rtt;
	if (count > 10000000)
		return fail(cause, RES_TEMP, "pop3: %s: STAT claims %u messages",
		    p->host, count);
	msgs = xcalloc(count + 1, sizeof *msgs);
	for (i = 0; i < count; i++)
		msgs[i].num = i + 1;
	if ((count > 0 || pipelined) && (r = pipelined ?
	    pop3_listing_read(p, "LIST", msgs, count, cause) :
	    pop3_listing(p, "LIST", msgs, count, cause)) != RES_OK)
		goto out;
	if (count > 0 || pipelined)
		r = pop3_scan_uidl(p, msgs, count, pipelined, standin_r, cause);
	else if (!p->caps.uidl)
		*standin_r = true;
out:
	if (r != RES_OK) {
		free(msgs);
		return r == RES_MSG ? RES_TEMP : r;
	}
	*msgs_r = msgs;
	*count_r = count;
	return RES_OK;
}

/*
 * RETR and DELE in two halves, so that a caller on a PIPELINING server
 * (RFC 2449) can send many commands and read their replies later, in the
 * order sent.
 */
enum result
pop3_retr_send(struct pop3 *p, unsigned int num, char **cause)
{
	char	 cmd[32];

	snprintf(cmd, sizeof cmd, "RETR %u", num);
	return pop3_send(p, cmd, cause);
}

enum result
pop3_retr_read(struct pop3 *p, unsigned int num, uint64_t size,
    msg_sink sink, void *arg, char **cause)
{
	char		 cmd[32];
	enum result	 r;

	snprintf(cmd, sizeof cmd, "RETR %u", num);
	if ((r = pop3_status(p, cmd, NULL, cause)) != RES_OK)
		return r;
	/* Sizes in LIST may be off a little; far more is a lying server. */
	return pop3_body(p, cmd, size, size + size / 4 + (1 << 20), sink, arg,
	    cause);
}

enum result
pop3_dele_send(struct pop3 *p, unsigned int num, char **cause)
{
	char	 cmd[32];

	snprintf(cmd, sizeof cmd, "DELE %u", num);
	return pop3_send(p, cmd, cause);
}

enum result
pop3_dele_read(struct pop3 *p, unsigned int num, char **cause)
{
	char	 cmd[32];

	snprintf(cmd, sizeof cmd, "DELE %u", num);
	return pop3_status(p, cmd, NULL, cause);
}

enum result
pop3_quit(struct pop3 *p, char **cause)
{
	enum result	 r;

	/* After a failed read or write the link is unusable: no QUIT, so
	 * nothing is committed (and no second timeout is waited out). */
	if (conn_dead(p->c)) {
		r = fail(cause, RES_TEMP, "pop3: %s: connection lost before "
		    "QUIT", p->host);
		pop3_free(p);
		return r;
	}
	r = pop3_simple(p, "QUIT", NULL, cause);
	pop3_free(p);
	return r == RES_MSG ? RES_TEMP : r;
}

void
pop3_free(struct pop3 *p)
{
	if (p == NULL)
		return;
	conn_close(p->c);
	free(p->account);
	free(p->host);
	free(p);
}

struct head_buf {
	char		*buf;
	size_t		 len, cap;
};

static enum result
head_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct head_buf	*h = arg;

	(void)cause;
	if (n > h->cap - h->len)	/* a header past the cap is cut */
		n = h->cap - h->len;
	memcpy(h->buf + h->len, p, n);
	h->len += n;
	return RES_OK;
}

/*
 * The header of each message nums[i] (TOP n 0), to cb(arg, i, header,
 * length), at most 64 KiB of each; pipelined where the server allows.  For
 * `migrate --since`: the Date of a message is known without fetching it.
 * A -ERR (no TOP) gives cb a header of length 0.
 */
enum result
pop3_headers(struct pop3 *p, const unsigned int *nums, size_t n,
    void (*cb)(void *, size_t, const char *, size_t), void *arg,
    char **cause)
{
	struct head_buf	 h;
	char		 cmd[32];
	size_t		 i, sent = 0;
	enum result	 r = RES_OK;

	h.cap = 65536;
	h.buf = xmalloc(h.cap);
	for (i = 0; i < n && r == RES_OK; i++) {
		/* A window of commands ahead with PIPELINING, else one. */
		while (sent < n && sent < i + (p->caps.pipelining ? 64 : 1) &&
		    r == RES_OK) {
			snprintf(cmd, sizeof cmd, "TOP %u 0", nums[sent++]);
			r = pop3_send(p, cmd, cause);
		}
		if (r != RES_OK)
			break;
		snprintf(cmd, sizeof cmd, "TOP %u 0", nums[i]);
		h.len = 0;
		if ((r = pop3_status(p, cmd, NULL, cause)) == RES_MSG) {
			free(*cause);
			*cause = NULL;
			r = RES_OK;
		} else if (r == RES_OK)
			r = pop3_body(p, cmd, 0, 1 << 24, head_sink, &h, cause);
		if (r == RES_OK)
			cb(arg, i, h.buf, h.len);
	}
	free(h.buf);
	return r;
}
