// link: bridge/msg.c bridge/date.c
/*
 * bridge/msg.c: normalisation (fed whole, byte by byte and cut at every
 * one and every two places: the output must not depend on the chunking),
 * msg_header_end, msg_header_each and msg_date.
 */
#include <time.h>

#include "bridge.h"
#include "unit.h"

/* A string literal with its length, NUL bytes included. */
#define S(s)	s, sizeof(s) - 1

/* ---- normalisation ---- */

struct buf {
	char	*p;
	size_t	 n, cap;
	int	 calls;
	int	 fail_after;	/* sink fails on this call (1-based), 0: never */
};

static enum result
buf_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct buf	*b = arg;

	b->calls++;
	if (b->fail_after != 0 && b->calls >= b->fail_after)
		return fail(cause, RES_TEMP, "sink refused");
	if (n == 0)
		return RES_OK;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	return RES_OK;
}

/*
 * Normalise in[0..n) fed in pieces cut at cuts[0..ncuts) (ascending);
 * the output goes to out (freed by the caller).  false if a call failed.
 */
static bool
norm_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts,
    struct buf *out, uint64_t *nuls)
{
	struct msg_norm	 m;
	char		*cause = NULL, *piece;
	size_t		 i, from = 0, to;
	bool		 ok = true;

	memset(out, 0, sizeof *out);
	msg_norm_init(&m);
	for (i = 0; i <= ncuts && ok; i++) {
		to = i < ncuts ? cuts[i] : n;
		/* An exact-size copy: ASan sees any read past the piece. */
		piece = xmalloc(to - from + 1);
		memcpy(piece, in + from, to - from);
		ok = msg_norm_feed(&m, piece, to - from, buf_sink, out,
		    &cause) == RES_OK;
		free(piece);
		from = to;
	}
	if (ok)
		ok = msg_norm_finish(&m, buf_sink, out, &cause) == RES_OK;
	free(cause);
	*nuls = m.nuls;
	return ok;
}

struct norm_case {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*want;
	size_t		 wantlen;
	uint64_t	 nuls;
};

static const struct norm_case norm_cases[] = {
	{ "empty", S(""), S("\r\n"), 0 },
	{ "one byte", S("a"), S("a\r\n"), 0 },
	{ "LF", S("a\n"), S("a\r\n"), 0 },
	{ "CRLF kept", S("a\r\n"), S("a\r\n"), 0 },
	{ "LF lines", S("a\nb\n"), S("a\r\nb\r\n"), 0 },
	{ "no final line end", S("a\r\nb"), S("a\r\nb\r\n"), 0 },
	{ "mixed endings", S("H: v\nX: y\r\n\nbody\r\nend\n"),
	    S("H: v\r\nX: y\r\n\r\nbody\r\nend\r\n"), 0 },
	{ "bare CR kept", S("a\rb\r\n"), S("a\rb\r\n"), 0 },
	{ "bare CRs kept", S("a\r\rb\n"), S("a\r\rb\r\n"), 0 },
	{ "CR before CRLF", S("\r\r\n"), S("\r\r\n"), 0 },
	{ "trailing CR", S("a\r"), S("a\r\n"), 0 },
	{ "only CR", S("\r"), S("\r\n"), 0 },
	{ "two trailing CRs", S("a\r\r"), S("a\r\r\n"), 0 },
	{ "only LF", S("\n"), S("\r\n"), 0 },
	{ "blank lines", S("\n\n"), S("\r\n\r\n"), 0 },
	{ "LF then CRLF", S("a\n\r\n"), S("a\r\n\r\n"), 0 },
	{ "CRLF CRLF", S("\r\n\r\n"), S("\r\n\r\n"), 0 },
	{ "LF CR", S("a\n\rb"), S("a\r\n\rb\r\n"), 0 },
	{ "mbox From line", S("From a@b Mon Jan  1 00:00:00 2024\n"
	    "Subject: x\n\nbody\n"), S("Subject: x\r\n\r\nbody\r\n"), 0 },
	{ "mbox From line CRLF", S("From a@b Mon Jan  1 00:00:00 2024\r\n"
	    "Subject: x\r\n\r\nbody\r\n"), S("Subject: x\r\n\r\nbody\r\n"), 0 },
	{ "only a From line", S("From a@b\n"), S("\r\n"), 0 },
	{ "From line without end", S("From a@b"), S("\r\n"), 0 },
	{ "bare \"From \"", S("From "), S("\r\n"), 0 },
	{ "\"From \" and LF", S("From \nX: y\n"), S("X: y\r\n"), 0 },
	{ "From: header kept", S("From: a@b\nTo: c\n"),
	    S("From: a@b\r\nTo: c\r\n"), 0 },
	{ "From:x header kept", S("From:a@b\n"), S("From:a@b\r\n"), 0 },
	{ "from lower case kept", S("from a@b\n"), S("from a@b\r\n"), 0 },
	{ ">From kept", S(">From a@b\n"), S(">From a@b\r\n"), 0 },
	{ "space From kept", S(" From a@b\n"), S(" From a@b\r\n"), 0 },
	{ "From TAB kept", S("From\ta@b\n"), S("From\ta@b\r\n"), 0 },
	{ "Fromx kept", S("Fromx\n"), S("Fromx\r\n"), 0 },
	{ "From alone kept", S("From"), S("From\r\n"), 0 },
	{ "Fro alone kept", S("Fro"), S("Fro\r\n"), 0 },
	{ "F LF", S("F\n"), S("F\r\n"), 0 },
	{ "From CRLF kept", S("From\r\n"), S("From\r\n"), 0 },
	{ "From line in header kept", S("Subject: a\nFrom x\n"),
	    S("Subject: a\r\nFrom x\r\n"), 0 },
	{ "From line in body kept", S("A: b\n\nFrom x\n"),
	    S("A: b\r\n\r\nFrom x\r\n"), 0 },
	{ "only the first From line goes", S("From x\nFrom y\n"),
	    S("From y\r\n"), 0 },
	{ "From line with CR inside", S("From x\ry\nA: b\n"), S("A: b\r\n"),
	    0 },
	{ "NUL kept and counted", S("a\0b\n"), S("a\0b\r\n"), 1 },
	{ "only NUL", S("\0"), S("\0\r\n"), 1 },
	{ "NUL in the From prefix", S("F\0"), S("F\0\r\n"), 1 },
	{ "NUL after From prefix", S("From\0 x\n"), S("From\0 x\r\n"), 1 },
	{ "NULs after From line", S("From x\nA\0\0\n"), S("A\0\0\r\n"), 2 },
	{ "NUL around CR", S("\0\r\0\n"), S("\0\r\0\r\n"), 2 },
	{ "8-bit kept", S("\xff\xfe\x80\n"), S("\xff\xfe\x80\r\n"), 0 },
	{ "dot lines kept", S(".\n..\n"), S(".\r\n..\r\n"), 0 },
};

/* Every way of feeding one case gives the same bytes and count. */
static void
norm_case_run(const struct norm_case *c)
{
	struct buf	 out;
	uint64_t	 nuls;
	size_t		 cuts[2], *bytes, i, j, n = c->inlen;
	bool		 ok, all = true;
	char		 where[64] = "";

	/* Whole. */
	ok = norm_pieces(c->in, n, NULL, 0, &out, &nuls);
	CHECK(ok, "%s: whole: a call failed", c->name);
	CHECK_MEM(out.p, out.n, c->want, c->wantlen, c->name);
	CHECK(nuls == c->nuls, "%s: nuls %llu, want %llu", c->name,
	    (unsigned long long)nuls, (unsigned long long)c->nuls);
	free(out.p);

	/* Byte by byte. */
	bytes = xcalloc(n + 1, sizeof *bytes);
	for (i = 0; i < n; i++)
		bytes[i] = i;
	ok = norm_pieces(c->in, n, bytes, n, &out, &nuls);
	CHECK(ok && out.n == c->wantlen && memcmp(out.p, c->want, out.n) ==
	    0 && nuls == c->nuls, "%s: byte by byte: got %s nuls %llu",
	    c->name, unit_esc(out.p, out.n), (unsigned long long)nuls);
	free(out.p);
	free(bytes);

	/* Cut at every place, and at every two places. */
	for (i = 0; i <= n && all; i++)
		for (j = i; j <= n && all; j++) {
			cuts[0] = i;
			cuts[1] = j;
			ok = norm_pieces(c->in, n, cuts, i == j ? 1 : 2, &out,
			    &nuls);
			if (!ok || out.n != c->wantlen || (out.n > 0 &&
			    memcmp(out.p, c->want, out.n) != 0) ||
			    nuls != c->nuls) {
				all = false;
				snprintf(where, sizeof where, "cut at %zu,%zu",
				    i, j);
				CHECK(false, "%s: %s: got %s nuls %llu", c->name,
				    where, unit_esc(out.p, out.n),
				    (unsigned long long)nuls);
			}
			free(out.p);
		}
	if (all)
		CHECK(true, "%s", c->name);
}

static void
test_norm_table(const void *arg)
{
	size_t	 i;

	(void)arg;
	for (i = 0; i < NELEM(norm_cases); i++)
		norm_case_run(&norm_cases[i]);
}

/* A message far larger than the output buffer, fed in odd chunk sizes. */
static void
test_norm_large(const void *arg)
{
	struct buf	 in = { 0 }, want = { 0 }, out;
	char		 line[64];
	size_t		 i, *cuts, ncuts = 0, pos;
	uint64_t	 nuls;
	unsigned	 seed = 12345;
	int		 len;

	(void)arg;
	buf_sink(&in, S("From MAILER-DAEMON Thu Jan  1 00:00:00 2024\n"),
	    NULL);
	for (i = 0; i < 20000; i++) {
		len = snprintf(line, sizeof line, "line %zu%s", i,
		    i % 3 == 0 ? "\r\n" : i % 3 == 1 ? "\n" : "\rx\n");
		buf_sink(&in, line, (size_t)len, NULL);
		len = snprintf(line, sizeof line, "line %zu%s", i,
		    i % 3 == 2 ? "\rx\r\n" : "\r\n");
		buf_sink(&want, line, (size_t)len, NULL);
	}
	buf_sink(&in, S("no end"), NULL);
	buf_sink(&want, S("no end\r\n"), NULL);

	cuts = xcalloc(in.n, sizeof *cuts);
	for (pos = 0;;) {
		seed = seed * 1103515245 + 12345;
		pos += 1 + (seed >> 8) % 9000;
		if (pos >= in.n)
			break;
		cuts[ncuts++] = pos;
	}
	CHECK(norm_pieces(in.p, in.n, NULL, 0, &out, &nuls), "large: whole");
	CHECK_MEM(out.p, out.n, want.p, want.n, "large: whole");
	CHECK(out.calls >= 2, "large: %d sink calls, want several", out.calls);
	free(out.p);
	CHECK(norm_pieces(in.p, in.n, cuts, ncuts, &out, &nuls),
	    "large: chunked");
	CHECK(out.n == want.n && memcmp(out.p, want.p, out.n) == 0,
	    "large: chunked output differs (%zu bytes, want %zu)", out.n,
	    want.n);
	free(out.p);
	free(cuts);
	free(in.p);
	free(want.p);
}

/* A sink's failure comes back from feed and finish with its cause. */
static void
test_norm_sink_error(const void *arg)
{
	struct msg_norm	 m;
	struct buf	 out;
	char		*cause = NULL, big[80000];
	enum result	 r;

	(void)arg;
	memset(&out, 0, sizeof out);
	out.fail_after = 1;
	msg_norm_init(&m);
	r = msg_norm_feed(&m, S("abc\n"), buf_sink, &out, &cause);
	CHECK(r == RES_TEMP, "sink error from feed: got %d", r);
	CHECK_STR(cause, "sink refused", "sink error cause");
	free(cause);
	cause = NULL;

	/* Failing in the middle of a call (after the first 32 KiB flush). */
	memset(&out, 0, sizeof out);
	out.fail_after = 2;
	memset(big, 'x', sizeof big);
	msg_norm_init(&m);
	r = msg_norm_feed(&m, big, sizeof big, buf_sink, &out, &cause);
	CHECK(r == RES_TEMP, "sink error mid-feed: got %d", r);
	free(cause);
	cause = NULL;
	free(out.p);

	/* From finish: the bytes it adds go through the sink too. */
	memset(&out, 0, sizeof out);
	msg_norm_init(&m);
	r = msg_norm_feed(&m, S("abc"), buf_sink, &out, &cause);
	CHECK(r == RES_OK, "feed before failing finish: got %d", r);
	out.fail_after = out.calls + 1;
	r = msg_norm_finish(&m, buf_sink, &out, &cause);
	CHECK(r == RES_TEMP, "sink error from finish: got %d", r);
	free(cause);
	free(out.p);
}

/* ---- msg_header_end ---- */

static const struct {
	const char	*in;
	size_t		 len;
	size_t		 want;
} hend_cases[] = {
	{ S("A: b\r\n\r\nbody"), 8 },
	{ S("A: b\r\n\r\n"), 8 },
	{ S("A: b\r\n c\r\n\r\nbody\r\n\r\n"), 12 },
	{ S("\r\nbody"), 2 },
	{ S("\r\n"), 2 },
	{ S("\r\n\r\n"), 2 },
	{ S("A\r\n\r\nB\r\n\r\n"), 5 },
	{ S("A: b\r\n"), 0 },
	{ S("A: b\r\n\r"), 0 },
	{ S("A: b"), 0 },
	{ S("\r"), 0 },
	{ S(""), 0 },
};

static void
test_header_end(const void *arg)
{
	size_t	 i, got;
	char	*copy;

	(void)arg;
	for (i = 0; i < NELEM(hend_cases); i++) {
		copy = xmalloc(hend_cases[i].len + 1);
		memcpy(copy, hend_cases[i].in, hend_cases[i].len);
		got = msg_header_end(copy, hend_cases[i].len);
		CHECK(got == hend_cases[i].want, "msg_header_end(%s) = %zu, "
		    "want %zu", unit_esc(hend_cases[i].in, hend_cases[i].len),
		    got, hend_cases[i].want);
		free(copy);
	}
}

/* ---- msg_header_each ---- */

/*
 * Values are compared unfolded (CRLF before white space removed) with the
 * white space and line end around them trimmed, so both a raw and an
 * unfolded value passed to the callback are right.
 */
struct values {
	struct buf	 b;
	int		 count;
};

static void
collect_value(void *arg, const char *v, size_t len)
{
	struct values	*vs = arg;
	char		*u = xmalloc(len + 1);
	size_t		 i, n = 0, start, end;

	for (i = 0; i < len; i++) {
		if (v[i] == '\r' && i + 2 < len && v[i + 1] == '\n' &&
		    (v[i + 2] == ' ' || v[i + 2] == '\t')) {
			i++;		/* drop CRLF, keep the white space */
			continue;
		}
		if (v[i] == '\n' && i + 1 < len &&
		    (v[i + 1] == ' ' || v[i + 1] == '\t'))
			continue;
		u[n++] = v[i];
	}
	for (start = 0; start < n && strchr(" \t\r\n", u[start]) != NULL;
	    start++)
		;
	for (end = n; end > start && strchr(" \t\r\n", u[end - 1]) != NULL;
	    end--)
		;
	if (vs->count++ > 0)
		buf_sink(&vs->b, "|", 1, NULL);
	buf_sink(&vs->b, u + start, end - start, NULL);
	free(u);
}

static const struct {
	const char	*hdr;
	size_t		 len;
	const char	*name;
	int		 count;
	const char	*want;		/* values joined with "|" */
} each_cases[] = {
	{ S("Date: x\r\nDate-Foo: y\r\n\r\n"), "Date", 1, "x" },
	{ S("Date-Foo: y\r\nDate: x\r\n\r\n"), "Date", 1, "x" },
	{ S("Date: x\r\nDate-Foo: y\r\n\r\n"), "Date-Foo", 1, "y" },
	{ S("Dates: y\r\nDat: z\r\n"), "Date", 0, "" },
	{ S("X-Date: x\r\n"), "Date", 0, "" },
	{ S("DATE: x\r\ndate: y\r\nDaTe: z\r\n"), "Date", 3, "x|y|z" },
	{ S("Subject: a\r\n b\r\n\tc\r\nTo: z\r\n"), "Subject", 1,
	    "a b\tc" },
	{ S("Subject: a\r\n b\r\n\tc\r\nTo: z\r\n"), "To", 1, "z" },
	{ S("To: z\r\nSubject: a\r\n  b\r\n"), "subject", 1, "a  b" },
	{ S("Subject: a\r\n Date: no\r\n"), "Date", 0, "" },
	{ S("Date: 10:00:00\r\n"), "Date", 1, "10:00:00" },
	{ S("Date: x"), "Date", 1, "x" },
	{ S("Date:"), "Date", 1, "" },
	{ S("Date:\r\n"), "Date", 1, "" },
	{ S("Date"), "Date", 0, "" },
	{ S("Dat"), "Date", 0, "" },
	{ S(""), "Date", 0, "" },
	{ S("Date: x\nTo: y\n"), "To", 1, "y" },
	{ S("A: 1\r\nB: 2\r\nA: 3\r\n"), "A", 2, "1|3" },
	{ S("Received: a\r\n\tb;\r\n\tc\r\nReceived: d; e\r\n"), "Received",
	    2, "a\tb;\tc|d; e" },
};

static void
test_header_each(const void *arg)
{
	struct values	 vs;
	size_t		 i;
	char		*copy;

	(void)arg;
	for (i = 0; i < NELEM(each_cases); i++) {
		memset(&vs, 0, sizeof vs);
		copy = xmalloc(each_cases[i].len + 1);
		memcpy(copy, each_cases[i].hdr, each_cases[i].len);
		msg_header_each(copy, each_cases[i].len, each_cases[i].name,
		    collect_value, &vs);
		CHECK(vs.count == each_cases[i].count, "msg_header_each(%s, "
		    "\"%s\"): %d values, want %d", unit_esc(each_cases[i].hdr,
		    each_cases[i].len), each_cases[i].name, vs.count,
		    each_cases[i].count);
		CHECK_MEM(vs.b.p, vs.b.n, each_cases[i].want,
		    strlen(each_cases[i].want), each_cases[i].name);
		free(vs.b.p);
		free(copy);
	}
}

/* ---- msg_date ---- */

/* 2024-01-01T00:00:00Z */
#define JAN1	1704067200LL

static const struct {
	const char	*name;
	const char	*msg;
	bool		 ok;
	long long	 t;
	int		 tz;
} date_cases[] = {
	{ "Date", "Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n\r\nbody\r\n",
	    true, JAN1 + 9 * 3600, 60 },
	{ "Date over Received",
	    "Received: from a by b; Wed, 3 Jan 2024 10:00:00 +0000\r\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 -0500\r\n\r\n",
	    true, JAN1 + 15 * 3600, -300 },
	{ "folded Date", "Subject: x\r\nDate: Mon, 1 Jan 2024\r\n"
	    " 10:00:00 +0000\r\n\r\n", true, JAN1 + 10 * 3600, 0 },
	{ "lower-case date", "date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
	    true, JAN1 + 10 * 3600, 0 },
	{ "first valid Date", "Date: nonsense\r\n"
	    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
	    true, JAN1 + 10 * 3600, 0 },
	{ "Date invalid: newest Received",
	    "Received: from c by d; Tue, 2 Jan 2024 12:00:00 +0000\r\n"
	    "Received: from a by b; Tue, 2 Jan 2024 10:00:00 +0000\r\n"
	    "Date: garbage\r\n\r\n", true, JAN1 + 86400 + 12 * 3600, 0 },
	{ "newest Received last",
	    "Received: from a by b; Tue, 2 Jan 2024 10:00:00 +0000\r\n"
	    "Received: from c by d; Tue, 2 Jan 2024 12:00:00 +0000\r\n"
	    "\r\n", true, JAN1 + 86400 + 12 * 3600, 0 },
	{ "newest Received by instant, not by clock",
	    "Received: from a by b; Tue, 2 Jan 2024 13:00:00 +0200\r\n"
	    "Received: from c by d; Tue, 2 Jan 2024 12:00:00 +0000\r\n"
	    "\r\n", true, JAN1 + 86400 + 12 * 3600, 0 },
	{ "Received date after the last ';'",
	    "Received: from a (x;y) by b with ESMTP id 1;\r\n"
	    "\tTue, 2 Jan 2024 10:00:00 -0800 (PST)\r\n\r\n",
	    true, JAN1 + 86400 + 18 * 3600, -480 },
	{ "Received without ';' ignored",
	    "Received: from a by b Tue, 2 Jan 2024 10:00:00 +0000\r\n"
	    "Received: from c by d; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	    "\r\n", true, JAN1 + 10 * 3600, 0 },
	{ "Received with a bad date ignored",
	    "Received: from a by b; Tue, 32 Jan 2024 10:00:00 +0000\r\n"
	    "Received: from c by d; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	    "\r\n", true, JAN1 + 10 * 3600, 0 },
	{ "no Date, no Received", "Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n",
	    false, 0, 0 },
	{ "Received without date", "Received: from a by b\r\n\r\n", false,
	    0, 0 },
	{ "only invalid Date", "Date: yesterday\r\n\r\n", false, 0, 0 },
	{ "Date-Foo is not Date",
	    "Date-Foo: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n", false, 0, 0 },
	{ "Date in the body ignored",
	    "Subject: x\r\n\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n",
	    false, 0, 0 },
	{ "empty message", "", false, 0, 0 },
	{ "no blank line", "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n",
	    true, JAN1 + 10 * 3600, 0 },
};

static void
test_msg_date(const void *arg)
{
	size_t		 i, len, hlen;
	time_t		 t = 0;
	int		 tz = 0;
	bool		 ok;
	char		*copy;

	(void)arg;
	for (i = 0; i < NELEM(date_cases); i++) {
		len = strlen(date_cases[i].msg);
		copy = xmalloc(len + 1);
		memcpy(copy, date_cases[i].msg, len);
		/* As account.c does: the header, or all if it never ends. */
		if ((hlen = msg_header_end(copy, len)) == 0)
			hlen = len;
		t = 0;
		tz = 12345;
		ok = msg_date(copy, hlen, &t, &tz);
		CHECK(ok == date_cases[i].ok, "msg_date %s: returned %d",
		    date_cases[i].name, ok);
		if (ok && date_cases[i].ok)
			CHECK((long long)t == date_cases[i].t &&
			    tz == date_cases[i].tz, "msg_date %s: got %lld %d, "
			    "want %lld %d", date_cases[i].name, (long long)t, tz,
			    date_cases[i].t, date_cases[i].tz);
		free(copy);
	}
}

int
main(void)
{
	UNIT_ISOLATED("normalisation table", test_norm_table, NULL);
	UNIT_ISOLATED("normalisation of a large message", test_norm_large,
	    NULL);
	UNIT_ISOLATED("normalisation sink errors", test_norm_sink_error,
	    NULL);
	UNIT_ISOLATED("msg_header_end", test_header_end, NULL);
	UNIT_ISOLATED("msg_header_each", test_header_each, NULL);
	UNIT_ISOLATED("msg_date", test_msg_date, NULL);
	return UNIT_END();
}
