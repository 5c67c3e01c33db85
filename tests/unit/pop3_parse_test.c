// link: bridge/pop3_parse.c
/*
 * bridge/pop3_parse.c: the dot-stuffing decoder (whole, byte by byte and
 * cut at every one and two places, each call's output buffer exactly
 * n + 2 bytes so AddressSanitizer sees an overrun), and the UIDL, LIST and
 * STAT line parsers and the listing check.
 */
#include "bridge.h"
#include "unit.h"

#define S(s)	s, sizeof(s) - 1

/* ---- dot_decode ---- */

struct dcase {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*out;		/* all the output, over every call */
	size_t		 outlen;
	bool		 done;
	size_t		 used;		/* input consumed in all */
};

static const struct dcase dot_cases[] = {
	{ "message", S("abc\r\ndef\r\n.\r\n"), S("abc\r\ndef\r\n"), true, 13 },
	{ "bytes after the end stay", S("abc\r\n.\r\n+OK next\r\n"),
	    S("abc\r\n"), true, 8 },
	{ "empty message", S(".\r\n"), S(""), true, 3 },
	{ "empty message, then data", S(".\r\n+OK 2 octets\r\n"), S(""), true,
	    3 },
	{ "empty line then end", S("\r\n.\r\n"), S("\r\n"), true, 5 },
	{ "stuffed dot", S("..x\r\n.\r\n"), S(".x\r\n"), true, 8 },
	{ "stuffed dot later", S("a\r\n..x\r\n.\r\n"), S("a\r\n.x\r\n"),
	    true, 11 },
	{ "line of one dot", S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), true,
	    10 },
	{ "line of two dots", S("a\r\n...\r\n.\r\n"), S("a\r\n..\r\n"), true,
	    11 },
	{ "first line of one dot", S("..\r\nb\r\n.\r\n"), S(".\r\nb\r\n"),
	    true, 10 },
	{ "unstuffed first-line dot is data", S(".x\r\n.\r\n"),
	    S(".x\r\n"), true, 7 },
	{ "unstuffed dot space", S(". x\r\nb\r\n.\r\n"), S(". x\r\nb\r\n"),
	    true, 11 },
	{ "unstuffed dot later", S("a\r\n.b\r\n.\r\n"), S("a\r\n.b\r\n"), true,
	    10 },
	{ "dot CR x", S(".\rX\r\n.\r\n"), S(".\rX\r\n"), true, 8 },
	{ "dot CR CR LF", S("a\r\n.\r\r\n.\r\n"), S("a\r\n.\r\r\n"), true,
	    10 },
	{ "dot CR dot", S("a\r\n.\r.\r\n.\r\n"), S("a\r\n.\r.\r\n"), true,
	    11 },
	{ "dot inside a line", S("a.\r\n.\r\n"), S("a.\r\n"), true, 7 },
	{ "dot after a bare CR", S("a\r.\r\n.\r\n"), S("a\r.\r\n"), true, 8 },
	{ "two terminators", S("x\r\n.\r\n.\r\n"), S("x\r\n"), true, 6 },
	{ "bare-LF end", S("a\n.\n"), S("a\n"), true, 4 },
	{ "bare-LF end, then data", S("a\n.\nrest"), S("a\n"), true, 4 },
	{ "CRLF line, bare-LF end", S("a\r\n.\n"), S("a\r\n"), true, 5 },
	{ "bare-LF stuffed", S("..a\n.\n"), S(".a\n"), true, 6 },
	{ "NUL and 8-bit", S("a\0\xff\r\n\0.\r\n.\r\n"),
	    S("a\0\xff\r\n\0.\r\n"), true, 12 },
	{ "no end yet", S("abc\r\n"), S("abc\r\n"), false, 5 },
	{ "dot held", S("abc\r\n."), S("abc\r\n"), false, 6 },
	{ "dot CR held", S("abc\r\n.\r"), S("abc\r\n"), false, 7 },
	{ "two dots, no end", S(".."), S("."), false, 2 },
	{ "nothing", S(""), S(""), false, 0 },
};

struct dres {
	char	*out;
	size_t	 outlen;
	size_t	 used;
	bool	 done;
	bool	 sane;		/* every call kept its promises */
	char	 why[128];
};

/* Decode in, cut at cuts[], as pop3.c does: stop at done. */
static void
dot_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts,
    struct dres *r)
{
	struct dot_decoder d;
	size_t		 i, from = 0, to, used, o;
	char		*piece, *out;
	bool		 done = false;

	memset(r, 0, sizeof *r);
	r->sane = true;
	r->out = xmalloc(n + 2 * (ncuts + 1) + 1);
	dot_init(&d);
	for (i = 0; i <= ncuts && !done; i++) {
		to = i < ncuts ? cuts[i] : n;
		piece = xmalloc(to - from + 1);
		memcpy(piece, in + from, to - from);
		out = xmalloc(to - from + 2);	/* as promised: n + 2 */
		used = 12345;
		o = dot_decode(&d, piece, to - from, out, &used, &done);
		if (o > to - from + 2 || used > to - from ||
		    (!done && used != to - from)) {
			if (r->sane)
				snprintf(r->why, sizeof r->why, "piece %zu..%zu:"
				    " output %zu used %zu done %d", from, to, o,
				    used, done);
			r->sane = false;
		}
		if (o <= to - from + 2) {
			memcpy(r->out + r->outlen, out, o);
			r->outlen += o;
		}
		r->used += used <= to - from ? used : 0;
		free(out);
		free(piece);
		from = to;
	}
	r->done = done;
}

static bool
dres_match(const struct dres *r, const struct dcase *c)
{
	return r->sane && r->done == c->done && r->used == c->used &&
	    r->outlen == c->outlen && memcmp(r->out, c->out, r->outlen) == 0;
}

static void
dot_case_run(const struct dcase *c)
{
	struct dres	 r;
	size_t		 cuts[2], *bytes, i, j, n = c->inlen;
	bool		 all = true;

	dot_pieces(c->in, n, NULL, 0, &r);
	CHECK(r.sane, "%s: whole: %s", c->name, r.why);
	CHECK_MEM(r.out, r.outlen, c->out, c->outlen, c->name);
	CHECK(r.done == c->done, "%s: done %d, want %d", c->name, r.done,
	    c->done);
	CHECK(r.used == c->used, "%s: used %zu, want %zu", c->name, r.used,
	    c->used);
	free(r.out);

	bytes = xcalloc(n + 1, sizeof *bytes);
	for (i = 0; i < n; i++)
		bytes[i] = i;
	dot_pieces(c->in, n, bytes, n, &r);
	CHECK(dres_match(&r, c), "%s: byte by byte: got %s done %d used %zu "
	    "%s", c->name, unit_esc(r.out, r.outlen), r.done, r.used, r.why);
	free(r.out);
	free(bytes);

	for (i = 0; i <= n && all; i++)
		for (j = i; j <= n && all; j++) {
			cuts[0] = i;
			cuts[1] = j;
			dot_pieces(c->in, n, cuts, i == j ? 1 : 2, &r);
			if (!dres_match(&r, c)) {
				all = false;
				CHECK(false, "%s: cut at %zu,%zu: got %s done %d "
				    "used %zu %s", c->name, i, j,
				    unit_esc(r.out, r.outlen), r.done, r.used,
				    r.why);
			}
			free(r.out);
		}
	if (all)
		CHECK(true, "%s", c->name);
}

static void
test_dot_table(const void *arg)
{
	size_t	 i;

	(void)arg;
	for (i = 0; i < NELEM(dot_cases); i++)
		dot_case_run(&dot_cases[i]);
}

/* After the end, a decoder takes nothing more and stays done. */
static void
test_dot_after_done(const void *arg)
{
	struct dot_decoder d;
	char		 out[16];
	size_t		 used, o;
	bool		 done;

	(void)arg;
	dot_init(&d);
	o = dot_decode(&d, S("a\r\n.\r\n"), out, &used, &done);
	CHECK(o == 3 && used == 6 && done, "first call: %zu %zu %d", o, used,
	    done);
	o = dot_decode(&d, S("b\r\n.\r\n"), out, &used, &done);
	CHECK(o == 0 && used == 0 && done, "after done: output %zu used %zu "
	    "done %d", o, used, done);
	o = dot_decode(&d, "", 0, out, &used, &done);
	CHECK(o == 0 && used == 0 && done, "empty after done: %zu %zu %d", o,
	    used, done);

	/* dot_init starts over. */
	dot_init(&d);
	o = dot_decode(&d, S("..\r\n.\r\n"), out, &used, &done);
	CHECK(o == 3 && memcmp(out, ".\r\n", 3) == 0 && used == 7 && done,
	    "after dot_init: %zu %zu %d", o, used, done);
}

/* A long message in random pieces decodes as in one piece. */
static void
test_dot_large(const void *arg)
{
	char		*in, *want, line[80];
	size_t		 n = 0, wn = 0, cuts[4096], ncuts = 0, pos, i;
	unsigned	 seed = 7;
	struct dres	 r;
	int		 len;

	(void)arg;
	in = xmalloc(1 << 20);
	want = xmalloc(1 << 20);
	for (i = 0; i < 20000; i++) {
		len = snprintf(line, sizeof line, "%s%zu\r\n",
		    i % 5 == 0 ? "." : "", i);
		/* Stuffed on the wire, one dot fewer decoded. */
		if (i % 5 == 0) {
			memcpy(in + n, ".", 1);
			n++;
		}
		memcpy(in + n, line, (size_t)len);
		n += (size_t)len;
		memcpy(want + wn, line, (size_t)len);
		wn += (size_t)len;
	}
	memcpy(in + n, ".\r\nTRAILING", 11);
	n += 11;
	for (pos = 0; ncuts < NELEM(cuts);) {
		seed = seed * 1103515245 + 12345;
		pos += 1 + (seed >> 8) % 700;
		if (pos >= n)
			break;
		cuts[ncuts++] = pos;
	}
	dot_pieces(in, n, cuts, ncuts, &r);
	CHECK(r.sane && r.done && r.used == n - 8 && r.outlen == wn &&
	    memcmp(r.out, want, wn) == 0, "large: done %d used %zu (want %zu) "
	    "output %zu (want %zu) %s", r.done, r.used, n - 8, r.outlen, wn,
	    r.why);
	free(r.out);
	free(in);
	free(want);
}

/* ---- uidl_valid ---- */

static const char uidl70[] =
    "0123456789012345678901234567890123456789012345678901234567890123456789";

static void
test_uidl_valid(const void *arg)
{
	static const struct {
		const char	*s;
		size_t		 len;
		bool		 ok;
	} cases[] = {
		{ S("abc"), true },
		{ S("!"), true },
		{ S("~"), true },
		{ S("!~azAZ09<>"), true },
		{ uidl70, 70, true },
		{ uidl70, 69, true },
		{ S(""), false },
		{ S("a b"), false },
		{ S(" "), false },
		{ S("a\tb"), false },
		{ S("a\x7f"), false },
		{ S("\x80"), false },
		{ S("\xff"), false },
		{ S("a\r"), false },
		{ S("a\0b"), false },
		{ "abc def", 3, true },
	};
	char	 s71[72];
	size_t	 i;
	char	*copy;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		copy = xmalloc(cases[i].len + 1);
		memcpy(copy, cases[i].s, cases[i].len);
		CHECK(uidl_valid(copy, cases[i].len) == cases[i].ok,
		    "uidl_valid(%s) is %s", unit_esc(cases[i].s, cases[i].len),
		    cases[i].ok ? "false" : "true");
		free(copy);
	}
	memcpy(s71, uidl70, 70);
	s71[70] = 'x';
	s71[71] = '\0';
	CHECK(!uidl_valid(s71, 71), "uidl_valid of 71 bytes is true");
}

/* ---- pop3_parse_uidl ---- */

static void
test_parse_uidl(const void *arg)
{
	static char line70[80], line71[80], linemax[100];
	struct {
		const char	*line;
		bool		 ok;
		unsigned int	 num;
		const char	*uidl;
	} cases[] = {
		{ "1 abc", true, 1, "abc" },
		{ "23 whqtswO00WBw418f9t5JxYwZ", true, 23,
		    "whqtswO00WBw418f9t5JxYwZ" },
		{ "1  abc", true, 1, "abc" },
		{ "1 abc ", true, 1, "abc" },
		{ "1 abc   ", true, 1, "abc" },
		{ "7 !~", true, 7, "!~" },
		{ "4294967295 a", true, 4294967295u, "a" },
		{ line70, true, 1, uidl70 },
		{ line71, false, 0, NULL },
		{ linemax, false, 0, NULL },
		{ "1 ab c", false, 0, NULL },
		{ "1 abc x", false, 0, NULL },
		{ "1 a\tb", false, 0, NULL },
		{ "1 abc\r", false, 0, NULL },
		{ "1 a\x7f", false, 0, NULL },
		{ "1 \x80" "abc", false, 0, NULL },
		{ "1 caf\xc3\xa9", false, 0, NULL },
		{ "0 abc", false, 0, NULL },
		{ "4294967296 a", false, 0, NULL },
		{ "99999999999999999999999 a", false, 0, NULL },
		{ "abc", false, 0, NULL },
		{ "1abc", false, 0, NULL },
		{ "1\tabc", false, 0, NULL },
		{ "1", false, 0, NULL },
		{ "1 ", false, 0, NULL },
		{ "1   ", false, 0, NULL },
		{ "", false, 0, NULL },
		{ " 1 abc", false, 0, NULL },
		{ "-1 abc", false, 0, NULL },
		{ "+1 abc", false, 0, NULL },
		{ "x1 abc", false, 0, NULL },
		{ ". abc", false, 0, NULL },
	};
	unsigned int	 num;
	char		*uidl;
	size_t		 i;
	bool		 ok;

	(void)arg;
	snprintf(line70, sizeof line70, "1 %s", uidl70);
	snprintf(line71, sizeof line71, "1 %sx", uidl70);
	snprintf(linemax, sizeof linemax, "1 %s%s", uidl70, "0123456789");
	for (i = 0; i < NELEM(cases); i++) {
		/* Exactly UIDL_MAX + 1 bytes, as the caller promises. */
		uidl = xmalloc(UIDL_MAX + 1);
		memset(uidl, '#', UIDL_MAX + 1);
		num = 424242;
		ok = pop3_parse_uidl(cases[i].line, &num, uidl);
		CHECK(ok == cases[i].ok, "pop3_parse_uidl(%s) returned %d",
		    unit_sesc(cases[i].line), ok);
		if (ok && cases[i].ok) {
			CHECK(num == cases[i].num, "pop3_parse_uidl(%s): num %u",
			    unit_sesc(cases[i].line), num);
			CHECK_STR(uidl, cases[i].uidl, cases[i].line);
		}
		free(uidl);
	}
}

/* ---- pop3_parse_list and pop3_parse_stat ---- */

static void
test_parse_list(const void *arg)
{
	static const struct {
		const char	*line;
		bool		 ok;
		unsigned int	 num;
		uint64_t	 size;
	} cases[] = {
		{ "1 100", true, 1, 100 },
		{ "2 0", true, 2, 0 },
		{ "1 100 extra", true, 1, 100 },
		{ "1 100 ", true, 1, 100 },
		{ "1  100", true, 1, 100 },
		{ "4294967295 5", true, 4294967295u, 5 },
		{ "1 1152921504606846975", true, 1, 1152921504606846975ULL },
		{ "1 1152921504606846976", false, 0, 0 },
		{ "1 18446744073709551615", false, 0, 0 },
		{ "1 99999999999999999999999", false, 0, 0 },
		{ "1 100x", false, 0, 0 },
		{ "1 -5", false, 0, 0 },
		{ "1 +5", false, 0, 0 },
		{ "1 x", false, 0, 0 },
		{ "0 100", false, 0, 0 },
		{ "4294967296 1", false, 0, 0 },
		{ "1", false, 0, 0 },
		{ "1 ", false, 0, 0 },
		{ "", false, 0, 0 },
		{ "a 1", false, 0, 0 },
		{ "1\t100", false, 0, 0 },
		{ " 1 100", false, 0, 0 },
		{ "1 100\t", false, 0, 0 },
	};
	unsigned int	 num;
	uint64_t	 size;
	size_t		 i;
	bool		 ok;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		num = 4242;
		size = 4242;
		ok = pop3_parse_list(cases[i].line, &num, &size);
		CHECK(ok == cases[i].ok, "pop3_parse_list(%s) returned %d",
		    unit_sesc(cases[i].line), ok);
		if (ok && cases[i].ok)
			CHECK(num == cases[i].num && size == cases[i].size,
			    "pop3_parse_list(%s) = %u %llu",
			    unit_sesc(cases[i].line), num,
			    (unsigned long long)size);
	}
}

static void
test_parse_stat(const void *arg)
{
	static const struct {
		const char	*line;
		bool		 ok;
		unsigned int	 count;
		uint64_t	 size;
	} cases[] = {
		{ "+OK 2 320", true, 2, 320 },
		{ "+OK 0 0", true, 0, 0 },
		{ "+OK 2 320 extra text", true, 2, 320 },
		{ "+OK  2  320", true, 2, 320 },
		{ "+OK 4294967295 1", true, 4294967295u, 1 },
		{ "+OK 1 1152921504606846975", true, 1, 1152921504606846975ULL },
		{ "+OK 1 1152921504606846976", false, 0, 0 },
		{ "+OK 4294967296 1", false, 0, 0 },
		{ "+OK", false, 0, 0 },
		{ "+OK ", false, 0, 0 },
		{ "+OK 2", false, 0, 0 },
		{ "+OK 2 ", false, 0, 0 },
		{ "+OK2 320", false, 0, 0 },
		{ "+OK 2 320x", false, 0, 0 },
		{ "+OK a b", false, 0, 0 },
		{ "+OK -2 320", false, 0, 0 },
		{ "-ERR 2 320", false, 0, 0 },
		{ "OK 2 320", false, 0, 0 },
		{ "", false, 0, 0 },
	};
	unsigned int	 count;
	uint64_t	 size;
	size_t		 i;
	bool		 ok;

	(void)arg;
	for (i = 0; i < NELEM(cases); i++) {
		count = 4242;
		size = 4242;
		ok = pop3_parse_stat(cases[i].line, &count, &size);
		CHECK(ok == cases[i].ok, "pop3_parse_stat(%s) returned %d",
		    unit_sesc(cases[i].line), ok);
		if (ok && cases[i].ok)
			CHECK(count == cases[i].count && size == cases[i].size,
			    "pop3_parse_stat(%s) = %u %llu",
			    unit_sesc(cases[i].line), count,
			    (unsigned long long)size);
	}
}

/* ---- pop3_list_check ---- */

struct lcase {
	const char	*name;
	unsigned int	 n;
	unsigned int	 nums[6];
	const char	*uidls[6];
	bool		 ok;
	const char	*cause;		/* a part of it */
};

static const struct lcase list_cases[] = {
	{ "empty listing", 0, { 0 }, { NULL }, true, NULL },
	{ "one", 1, { 1 }, { "a" }, true, NULL },
	{ "three", 3, { 1, 2, 3 }, { "c", "a", "b" }, true, NULL },
	{ "case matters", 2, { 1, 2 }, { "abc", "ABC" }, true, NULL },
	{ "prefix is not equal", 2, { 1, 2 }, { "ab", "abc" }, true, NULL },
	/* popa3d repeats UIDLs; the run tells them apart by content. */
	{ "duplicate", 3, { 1, 2, 3 }, { "a", "b", "a" }, true, NULL },
	{ "adjacent duplicate", 2, { 1, 2 }, { "x", "x" }, true, NULL },
	{ "missing number", 2, { 1, 3 }, { "a", "b" }, false,
	    "message 2 is missing" },
	{ "starts at 2", 2, { 2, 3 }, { "a", "b" }, false,
	    "message 1 is missing" },
	{ "repeated number", 3, { 1, 2, 2 }, { "a", "b", "c" }, false,
	    "message 3 is missing" },
	{ "number 0", 1, { 0 }, { "a" }, false, "message 1 is missing" },
	{ "no UIDL", 2, { 1, 2 }, { "a", "" }, false, "no UIDL" },
};

static void
test_list_check(const void *arg)
{
	const struct lcase *c;
	struct pop3_msg	*msgs;
	char		*cause;
	size_t		 i, j;
	bool		 ok;

	(void)arg;
	for (i = 0; i < NELEM(list_cases); i++) {
		c = &list_cases[i];
		msgs = xcalloc(c->n + 1, sizeof *msgs);
		for (j = 0; j < c->n; j++) {
			msgs[j].num = c->nums[j];
			msgs[j].size = 100 + j;
			snprintf(msgs[j].uidl, sizeof msgs[j].uidl, "%s",
			    c->uidls[j]);
		}
		cause = NULL;
		ok = pop3_list_check(msgs, c->n, &cause);
		CHECK(ok == c->ok, "pop3_list_check %s returned %d (%s)",
		    c->name, ok, unit_sesc(cause));
		if (!ok && !c->ok)
			CHECK(cause != NULL && strstr(cause, c->cause) != NULL,
			    "pop3_list_check %s: cause %s, want it to say "
			    "\"%s\"", c->name, unit_sesc(cause), c->cause);
		free(cause);
		free(msgs);
	}
}

int
main(void)
{
	UNIT_ISOLATED("dot_decode table", test_dot_table, NULL);
	UNIT_ISOLATED("dot_decode after done", test_dot_after_done, NULL);
	UNIT_ISOLATED("dot_decode large", test_dot_large, NULL);
	UNIT_ISOLATED("uidl_valid", test_uidl_valid, NULL);
	UNIT_ISOLATED("pop3_parse_uidl", test_parse_uidl, NULL);
	UNIT_ISOLATED("pop3_parse_list", test_parse_list, NULL);
	UNIT_ISOLATED("pop3_parse_stat", test_parse_stat, NULL);
	UNIT_ISOLATED("pop3_list_check", test_list_check, NULL);
	return UNIT_END();
}
