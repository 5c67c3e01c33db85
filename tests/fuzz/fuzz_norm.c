// link: bridge/msg.c bridge/date.c
// max_len: 100000
/*
 * The message normaliser (msg_norm_*) fed in chunks, against a reference
 * normaliser written here from the README's promise; then the header facts
 * (msg_header_end, msg_header_each, msg_date) as transfer.c uses them.
 *
 * Input: byte 0 and the chunk sizes (fuzz.h); if byte 0 has its top bit
 * set, one more byte b: a second pass runs with a sink that refuses once
 * it would hold more than b * 64 bytes.  The rest is the message as the
 * POP3 server sent it (after dot-decoding).
 *
 * Invariants: the output does not depend on the chunking and equals the
 * reference; it ends with CRLF and has no LF without a CR before it; the
 * NUL count is right; a refusing sink's error comes back with its cause
 * and what it accepted is a prefix of the output; a date found in the
 * header round-trips through the IMAP date-time.
 */
#include <strings.h>
#include <time.h>

#include "bridge.h"
#include "fuzz.h"

struct buf {
	char	*p;
	size_t	 n, cap;
	size_t	 limit;		/* refuse beyond this; SIZE_MAX: never */
	int	 refusals;
};

static enum result
sink(void *arg, const char *p, size_t n, char **cause)
{
	struct buf	*b = arg;

	/* out_flush sends what its 32 KiB buffer holds, never nothing. */
	FUZZ_CHECK(n > 0 && n <= 32768, "sink called with %zu bytes", n);
	if (b->n + n > b->limit) {
		b->refusals++;
		return fail(cause, RES_TEMP, "sink full at %zu bytes", b->n);
	}
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return RES_OK;
}

/*
 * The reference, straight from the README: a leading "From " line is
 * dropped (all of it if there is no LF); CRLF and LF end lines and become
 * CRLF; a bare CR stays, except at the very end, where it ends the last
 * line; a final CRLF is ensured (so an empty message is one CRLF).
 */
static char *
ref_norm(const char *in, size_t n, size_t *outlen, uint64_t *nuls)
{
	char	*out = xmalloc(2 * n + 2);
	size_t	 i = 0, o = 0;

	*nuls = 0;
	if (n >= 5 && memcmp(in, "From ", 5) == 0) {
		const char *lf = memchr(in, '\n', n);

		i = lf == NULL ? n : (size_t)(lf - in) + 1;
	}
	for (; i < n; i++) {
		if (in[i] == '\r' && (i + 1 == n || in[i + 1] == '\n')) {
			out[o++] = '\r';
			out[o++] = '\n';
			i += i + 1 < n;		/* the LF after it */
		} else if (in[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else {
			if (in[i] == '\0')
				(*nuls)++;
			out[o++] = in[i];
		}
	}
	if (o < 2 || out[o - 2] != '\r' || out[o - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	*outlen = o;
	return out;
}

/* Feed msg in chunks; the result of the first failing call, or RES_OK. */
static enum result
normalise(const char *msg, size_t len, struct fuzz_chunks *ch,
    struct buf *out, struct msg_norm *m, char **cause)
{
	enum result	 r = RES_OK;
	size_t		 pos = 0, k, calls = 0;
	char		*piece;

	msg_norm_init(m);
	ch->i = ch->zeros = 0;
	while (pos < len || calls == 0) {
		k = fuzz_chunks_next(ch, len - pos);
		/* An exact-size copy: ASan sees a read past the chunk. */
		piece = fuzz_dup(msg + pos, k);
		r = msg_norm_feed(m, piece, k, sink, out, cause);
		free(piece);
		pos += k;
		calls++;
		if (r != RES_OK)
			return r;
	}
	return msg_norm_finish(m, sink, out, cause);
}

struct each_check {
	const char	*hdr;
	size_t		 len;
	const char	*name;
	int		 calls;
};

static void
each_cb(void *arg, const char *v, size_t n)
{
	struct each_check *e = arg;
	size_t	 nlen = strlen(e->name);

	FUZZ_CHECK(v >= e->hdr + nlen + 1 && v <= e->hdr + e->len &&
	    n <= (size_t)(e->hdr + e->len - v),
	    "value of %s outside the header", e->name);
	FUZZ_CHECK(v[-1] == ':' && strncasecmp(v - 1 - nlen, e->name,
	    nlen) == 0, "value of %s not after \"%s:\"", e->name, e->name);
	e->calls++;
}

/* msg_header_end against a plain search; msg_header_each's values lie in
 * the header; msg_date's result round-trips through date_imap. */
static void
header_facts(const char *p, size_t len)
{
	static const char *const names[] = { "Date", "Received", "From",
		"D" };
	struct each_check e;
	char		*hdr = fuzz_dup(p, len), imap[27];
	size_t		 end, i, hlen;
	time_t		 t, t2;
	int		 tz, tz2;

	end = msg_header_end(hdr, len);
	if (len >= 2 && memcmp(hdr, "\r\n", 2) == 0)
		FUZZ_CHECK(end == 2, "blank first line: end %zu", end);
	else {
		size_t want = 0;

		for (i = 0; i + 4 <= len; i++)
			if (memcmp(hdr + i, "\r\n\r\n", 4) == 0) {
				want = i + 4;
				break;
			}
		FUZZ_CHECK(end == want, "header end %zu, want %zu", end, want);
	}
	free(hdr);

	/* As transfer.c: the header, or all of it if it never ends. */
	hlen = end != 0 ? end : len;
	hdr = fuzz_dup(p, hlen);
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		e.hdr = hdr;
		e.len = hlen;
		e.name = names[i];
		e.calls = 0;
		msg_header_each(hdr, hlen, names[i], each_cb, &e);
	}
	if (msg_date(hdr, hlen, &t, &tz)) {
		FUZZ_CHECK(tz > -6000 && tz < 6000, "zone %d", tz);
		date_imap(t, tz, imap, sizeof imap);
		FUZZ_CHECK(strlen(imap) == 26, "IMAP date \"%s\"", imap);
		FUZZ_CHECK(date_parse(imap, strlen(imap), &t2, &tz2) &&
		    t2 == t && tz2 == tz, "\"%s\" does not parse back to %lld "
		    "%+d", imap, (long long)t, tz);
	}
	free(hdr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct fuzz_chunks ch;
	struct msg_norm	 m;
	struct buf	 out = { NULL, 0, 0, SIZE_MAX, 0 };
	struct buf	 part = { NULL, 0, 0, SIZE_MAX, 0 };
	unsigned	 ctl;
	enum result	 r;
	char		*cause = NULL, *want;
	size_t		 wantlen = 0, i, limit = SIZE_MAX;
	uint64_t	 nuls;

	ctl = fuzz_chunks_init(&ch, &data, &len);
	if ((ctl & 0x80) && len > 0) {
		limit = (size_t)data[0] * 64;
		data++;
		len--;
	}

	want = ref_norm((const char *)data, len, &wantlen, &nuls);
	r = normalise((const char *)data, len, &ch, &out, &m, &cause);
	FUZZ_CHECK(r == RES_OK && cause == NULL, "normalise failed: %s",
	    cause != NULL ? cause : "(no cause)");
	if (out.n != wantlen || memcmp(out.p, want, wantlen) != 0) {
		fuzz_dump("input", data, len);
		fuzz_dump("output", out.p, out.n);
		fuzz_dump("reference", want, wantlen);
		FUZZ_CHECK(0, "output differs from the reference");
	}
	FUZZ_CHECK(out.n >= 2 && out.p[out.n - 2] == '\r' &&
	    out.p[out.n - 1] == '\n', "output does not end with CRLF");
	for (i = 0; i < out.n; i++)
		FUZZ_CHECK(out.p[i] != '\n' || (i > 0 && out.p[i - 1] == '\r'),
		    "bare LF at output byte %zu", i);
	FUZZ_CHECK(m.nuls == nuls, "%llu NUL bytes counted, %llu in the "
	    "output", (unsigned long long)m.nuls, (unsigned long long)nuls);
	FUZZ_CHECK(m.last_lf, "last_lf false after finish");

	/* A sink that refuses: the error and its cause come back. */
	if (limit != SIZE_MAX) {
		part.limit = limit;
		r = normalise((const char *)data, len, &ch, &part, &m, &cause);
		if (wantlen > limit) {
			FUZZ_CHECK(r == RES_TEMP && cause != NULL &&
			    part.refusals == 1, "refusing sink: result %d, "
			    "%d refusals", (int)r, part.refusals);
		} else
			FUZZ_CHECK(r == RES_OK && cause == NULL, "sink with "
			    "room refused");
		FUZZ_CHECK(part.n <= wantlen && (part.n == 0 ||
		    memcmp(part.p, want, part.n) == 0),
		    "accepted bytes are not a prefix of the output");
		free(cause);
		cause = NULL;
		free(part.p);
	}

	header_facts(out.p, out.n);
	/* Header facts on the raw bytes too: bare LF, no final line end. */
	header_facts((const char *)data, len);

	free(want);
	free(out.p);
	return 0;
}
