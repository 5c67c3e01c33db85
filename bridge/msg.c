/*
 * Message normalisation and header facts.  Pure: bytes in, bytes out, no
 * I/O.  Normalisation changes as little as a message needs to be a valid
 * IMAP APPEND literal: LF and CRLF line endings become CRLF, a leading mbox
 * "From " line is dropped and a final CRLF is ensured.  Nothing else
 * changes: no charset conversion, no header rewriting; a bare CR stays.
 */
#include <string.h>
#include <strings.h>

#include "bridge.h"

enum {
	NS_START,	/* deciding whether the first line is "From " */
	NS_SKIP,	/* dropping the mbox "From " line */
	NS_TEXT,
	NS_CR,		/* a CR was seen; is it followed by LF? */
};

struct out {
	char		 buf[32768];	/* fewer, larger writes to a spool */
	size_t		 n;
	msg_sink	 sink;
	void		*arg;
};

static enum result
out_flush(struct out *o, char **cause)
{
	enum result	 r = RES_OK;

	if (o->n > 0)
		r = o->sink(o->arg, o->buf, o->n, cause);
	o->n = 0;
	return r;
}

static enum result
out_put(struct out *o, char c, char **cause)
{
	if (o->n == sizeof o->buf) {
		enum result r = out_flush(o, cause);

		if (r != RES_OK)
			return r;
	}
	o->buf[o->n++] = c;
	return RES_OK;
}

static enum result
out_write(struct out *o, const char *p, size_t n, char **cause)
{
	enum result	 r;
	size_t		 take;

	while (n > 0) {
		if (o->n == sizeof o->buf && (r = out_flush(o, cause)) != RES_OK)
			return r;
		take = sizeof o->buf - o->n;
		if (take > n)
			take = n;
		memcpy(o->buf + o->n, p, take);
		o->n += take;
		p += take;
		n -= take;
	}
	return RES_OK;
}

/*
 * The length of the run of plain bytes at p (no CR, no LF): they pass
 * through unchanged, so they are copied as one block.  NULs in it are
 * counted (they decide how the message is sent).
 */
static size_t
plain_run(struct msg_norm *m, const char *p, size_t n)
{
	const char	*lf, *cr, *nul;
	size_t		 len;

	if ((lf = memchr(p, '\n', n)) != NULL)
		n = (size_t)(lf - p);
	if ((cr = memchr(p, '\r', n)) != NULL)
		n = (size_t)(cr - p);
	len = n;
	while ((nul = memchr(p, '\0', n)) != NULL) {
		m->nuls++;
		n -= (size_t)(nul - p) + 1;
		p = nul + 1;
	}
	return len;
}

void
msg_norm_init(struct msg_norm *m)
{
	memset(m, 0, sizeof *m);
	m->state = NS_START;
}

static enum result
norm_text(struct msg_norm *m, struct out *o, char c, char **cause)
{
	enum result	 r;

	if (m->state == NS_CR) {
		m->state = NS_TEXT;
		if (c == '\n') {
			m->last_lf = true;
			if ((r = out_put(o, '\r', cause)) != RES_OK)
				return r;
			return out_put(o, '\n', cause);
		}
		/* A bare CR is kept as it was. */
		m->last_lf = false;
		if ((r = out_put(o, '\r', cause)) != RES_OK)
			return r;
	}
	m->wrote_any = true;
	if (c == '\r') {
		m->state = NS_CR;
		return RES_OK;
	}
	if (c == '\n') {
		m->last_lf = true;
		if ((r = out_put(o, '\r', cause)) != RES_OK)
			return r;
		return out_put(o, '\n', cause);
	}
	if (c == '\0')
		m->nuls++;
	m->last_lf = false;
	return out_put(o, c, cause);
}

static enum result
norm_release_hold(struct msg_norm *m, struct out *o, char **cause)
{
	enum result	 r;
	size_t		 i;

	m->state = NS_TEXT;
	for (i = 0; i < m->nhold; i++)
		if ((r = norm_text(m, o, m->hold[i], cause)) != RES_OK)
			return r;
	m->nhold = 0;
	return RES_OK;
}

static enum result
norm_byte(struct msg_norm *m, struct out *o, char c, char **cause)
{
	static const char from[] = "From ";

	switch (m->state) {
	case NS_START:
		m->hold[m->nhold++] = c;
		if (c != from[m->nhold - 1])
			return norm_release_hold(m, o, cause);
		if (m->nhold == sizeof from - 1) {
			m->nhold = 0;
			m->state = NS_SKIP;
		}
		return RES_OK;
	case NS_SKIP:
		if (c == '\n')
			m->state = NS_TEXT;
		return RES_OK;
	default:
		return norm_text(m, o, c, cause);
	}
}

enum result
msg_norm_feed(struct msg_norm *m, const char *in, size_t n, msg_sink sink,
    void *arg, char **cause)
{
	struct out	 o;
	enum result	 r;
	size_t		 i;

	o.n = 0;
	o.sink = sink;
	o.arg = arg;
	for (i = 0; i < n; i++) {
		/* The common case, in the middle of a line, goes by blocks. */
		if (m->state == NS_TEXT) {
			size_t run = plain_run(m, in + i, n - i);

			if (run > 0) {
				m->wrote_any = true;
				m->last_lf = false;
				if ((r = out_write(&o, in + i, run, cause)) !=
				    RES_OK)
					return r;
				if ((i += run) == n)
					break;
			}
		}
		if ((r = norm_byte(m, &o, in[i], cause)) != RES_OK)
			return r;
	}
	return out_flush(&o, cause);
}

enum result
msg_norm_finish(struct msg_norm *m, msg_sink sink, void *arg, char **cause)
{
	struct out	 o;
	enum result	 r;

	o.n = 0;
	o.sink = sink;
	o.arg = arg;
	if (m->state == NS_START &&
	    (r = norm_release_hold(m, &o, cause)) != RES_OK)
		return r;
	if (m->state == NS_CR) {
		/* A CR at the very end ends the last line. */
		m->state = NS_TEXT;
		m->last_lf = true;
		if ((r = out_put(&o, '\r', cause)) != RES_OK ||
		    (r = out_put(&o, '\n', cause)) != RES_OK)
			return r;
	}
	if (!m->last_lf) {
		m->last_lf = true;
		if ((r = out_put(&o, '\r', cause)) != RES_OK ||
		    (r = out_put(&o, '\n', cause)) != RES_OK)
			return r;
	}
	return out_flush(&o, cause);
}

size_t
msg_header_end(const char *p, size_t len)
{
	size_t	 i;

	if (len >= 2 && p[0] == '\r' && p[1] == '\n')
		return 2;
	for (i = 0; i + 3 < len; i++)
		if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' &&
		    p[i + 3] == '\n')
			return i + 4;
	return 0;
}

void
msg_header_each(const char *hdr, size_t len, const char *name,
    void (*cb)(void *, const char *, size_t), void *arg)
{
	size_t	 nlen = strlen(name), pos = 0, vstart, end;

	while (pos < len) {
		/* A field starts at pos; find where it (with folds) ends. */
		end = pos;
		for (;;) {
			while (end < len && hdr[end] != '\n')
				end++;
			if (end < len)
				end++;
			if (end >= len || (hdr[end] != ' ' && hdr[end] != '\t'))
				break;
		}
		if (end - pos > nlen && hdr[pos + nlen] == ':' &&
		    strncasecmp(hdr + pos, name, nlen) == 0) {
			vstart = pos + nlen + 1;
			cb(arg, hdr + vstart, end - vstart);
		}
		pos = end;
	}
}

struct date_pick {
	bool		 found;
	time_t		 t;
	int		 tz;
};

static void
pick_first_date(void *arg, const char *v, size_t len)
{
	struct date_pick	*dp = arg;
	time_t			 t;
	int			 tz;

	if (!dp->found && date_parse(v, len, &t, &tz)) {
		dp->found = true;
		dp->t = t;
		dp->tz = tz;
	}
}

/* Received: ...; date -- the date follows the last semicolon. */
static void
pick_newest_received(void *arg, const char *v, size_t len)
{
	struct date_pick	*dp = arg;
	const char		*semi = NULL;
	size_t			 i;
	time_t			 t;
	int			 tz;

	for (i = 0; i < len; i++)
		if (v[i] == ';')
			semi = v + i;
	if (semi == NULL)
		return;
	semi++;
	if (date_parse(semi, len - (size_t)(semi - v), &t, &tz) &&
	    (!dp->found || t > dp->t)) {
		dp->found = true;
		dp->t = t;
		dp->tz = tz;
	}
}

bool
msg_date(const char *hdr, size_t len, time_t *t_r, int *tz_r)
{
	struct date_pick	 dp = { false, 0, 0 };

	msg_header_each(hdr, len, "Date", pick_first_date, &dp);
	if (!dp.found)
		msg_header_each(hdr, len, "Received", pick_newest_received,
		    &dp);
	if (dp.found) {
		*t_r = dp.t;
		*tz_r = dp.tz;
	}
	return dp.found;
}

/* A header value unfolded, trimmed and made printable, into out. */
static void
value_clean(const char *v, size_t len, char *out, size_t outsz)
{
	size_t	 i, o = 0;
	bool	 space = false;

	for (i = 0; i < len && o + 1 < outsz; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
			space = o > 0;
			continue;
		}
		if (space && o + 2 < outsz)
			out[o++] = ' ';
		space = false;
		out[o++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
	}
	out[o] = '\0';
}

struct first_value {
	char	*out;
	size_t	 outsz;
	bool	 found;
};

static void
pick_first_value(void *arg, const char *v, size_t len)
{
	struct first_value *fv = arg;

	if (!fv->found) {
		value_clean(v, len, fv->out, fv->outsz);
		fv->found = true;
	}
}

static void
header_value(const char *hdr, size_t len, const char *name, char *out,
    size_t outsz)
{
	struct first_value fv = { out, outsz, false };

	out[0] = '\0';
	msg_header_each(hdr, len, name, pick_first_value, &fv);
}

/*
 * The Message-ID of a header section: its "<...>" token, else the value as
 * it stands; "" if there is none.  The IMAP side reads it from the same
 * bytes (BODY[HEADER.FIELDS (MESSAGE-ID)]) through this function, so the
 * two compare equal exactly when the fields do.
 */
void
msg_message_id(const char *hdr, size_t len, char *out, size_t outsz)
{
	char	*lt, *gt;

	header_value(hdr, len, "Message-ID", out, outsz);
	if ((lt = strchr(out, '<')) != NULL && (gt = strchr(lt, '>')) != NULL) {
		memmove(out, lt, (size_t)(gt - lt) + 1);
		out[gt - lt + 1] = '\0';
	}
}

/* Date, From and Subject as a person finds a message in webmail. */
void
msg_info_read(const char *hdr, size_t len, struct msg_info *in)
{
	header_value(hdr, len, "Date", in->date, sizeof in->date);
	header_value(hdr, len, "From", in->from, sizeof in->from);
	header_value(hdr, len, "Subject", in->subject, sizeof in->subject);
}
