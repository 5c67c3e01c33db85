// link: bridge/pop3_parse.c
// max_len: 8192
/*
 * The POP3 reply parsers.  Input: byte 0 and the chunk sizes (fuzz.h),
 * then bytes as a server sends them after a +OK.
 *
 *  - dot_decode fed in chunks (each an exact-size copy, its output buffer
 *    exactly n + 2 bytes as the API allows) gives the same bytes, the same
 *    "done" and consumes the same input as one call on everything, and
 *    both agree with a reference decoder written here;
 *  - the same bytes cut into lines (CRLF or LF), each line a C string of
 *    its exact size: pop3_parse_uidl, pop3_parse_list, pop3_parse_stat and
 *    uidl_valid agree with reference parsers; the messages the lines
 *    describe go to pop3_list_check, whose verdict is checked.
 */
#include "bridge.h"
#include "fuzz.h"

/*
 * RFC 1939 3 with the decoder's leniencies: at a line start ".CRLF" or
 * ".LF" ends the body; ".." is one dot; any other leading dot is data.  A
 * "." or ".CR" at the very end is held back (consumed, not yet output).
 */
static size_t
ref_dot(const char *in, size_t n, char *out, size_t *used, bool *done)
{
	size_t	 i = 0, o = 0;
	bool	 ls = true;

	*done = false;
	while (i < n) {
		if (ls && in[i] == '.') {
			if (i + 1 == n || (in[i + 1] == '\r' && i + 2 == n)) {
				i = n;		/* held back */
				break;
			}
			if (in[i + 1] == '\n' || (in[i + 1] == '\r' &&
			    in[i + 2] == '\n')) {
				i += in[i + 1] == '\n' ? 2 : 3;
				*done = true;
				break;
			}
			out[o++] = '.';
			i += in[i + 1] == '.' ? 2 : 1;
			ls = false;
			continue;
		}
		out[o++] = in[i];
		ls = in[i] == '\n';
		i++;
	}
	*used = i;
	return o;
}

static void
check_dot(const char *data, size_t len, struct fuzz_chunks *ch)
{
	struct dot_decoder d;
	char	*in, *one, *ref, *all, *piece, *out;
	size_t	 n1, u1, nr, ur, nall = 0, uall = 0, pos = 0, k, n, u;
	bool	 done1, doner, done = false;

	in = fuzz_dup(data, len);
	one = malloc(len + 2);
	dot_init(&d);
	n1 = dot_decode(&d, in, len, one, &u1, &done1);
	FUZZ_CHECK(n1 <= len && u1 <= len, "one call: %zu out, %zu used of "
	    "%zu", n1, u1, len);

	ref = malloc(len + 2);
	nr = ref_dot(data, len, ref, &ur, &doner);
	if (n1 != nr || u1 != ur || done1 != doner ||
	    memcmp(one, ref, nr) != 0) {
		fuzz_dump("input", data, len);
		fuzz_dump("dot_decode", one, n1);
		fuzz_dump("reference", ref, nr);
		FUZZ_CHECK(0, "dot_decode: %zu out, %zu used, done %d; "
		    "reference: %zu, %zu, %d", n1, u1, done1, nr, ur, doner);
	}

	all = malloc(len + 2);
	dot_init(&d);
	while (!done && (pos < len || uall == 0)) {
		k = fuzz_chunks_next(ch, len - pos);
		piece = fuzz_dup(data + pos, k);
		out = malloc(k + 2);	/* exactly what the API promises */
		n = dot_decode(&d, piece, k, out, &u, &done);
		FUZZ_CHECK(u <= k && (done || u == k), "chunk of %zu: used %zu, "
		    "done %d", k, u, done);
		FUZZ_CHECK(nall + n <= len, "more output than input");
		memcpy(all + nall, out, n);
		nall += n;
		uall += u;
		pos += u;
		free(out);
		free(piece);
		if (k == 0 && pos == len)
			break;
	}
	if (nall != n1 || uall != u1 || done != done1 ||
	    memcmp(all, one, n1) != 0) {
		fuzz_dump("input", data, len);
		fuzz_dump("in one call", one, n1);
		fuzz_dump("in chunks", all, nall);
		FUZZ_CHECK(0, "chunked: %zu out, %zu used, done %d; one call: "
		    "%zu, %zu, %d", nall, uall, done, n1, u1, done1);
	}
	/* After the end nothing more is taken. */
	if (done && len > 0) {
		n = dot_decode(&d, in, len, one, &u, &done);
		FUZZ_CHECK(n == 0 && u == 0 && done, "decoder went on after "
		    "the end");
	}
	free(all);
	free(ref);
	free(one);
	free(in);
}

/* Digits at *p, at least one, their value at most max (else false). */
static bool
ref_num(const char **p, uint64_t max, uint64_t *v)
{
	size_t	 n = strspn(*p, "0123456789"), i;
	uint64_t x = 0;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (x > (max - (uint64_t)((*p)[i] - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)((*p)[i] - '0');
	}
	*p += n;
	*v = x;
	return true;
}

static bool
ref_uidl(const char *s, unsigned *num, char *uidl)
{
	uint64_t n;
	size_t	 k, i;

	if (!ref_num(&s, UINT32_MAX, &n) || n == 0 || *s != ' ')
		return false;
	s += strspn(s, " ");
	k = strcspn(s, " ");
	if (k == 0 || k > UIDL_MAX || s[k + strspn(s + k, " ")] != '\0')
		return false;
	for (i = 0; i < k; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return false;
	memcpy(uidl, s, k);
	uidl[k] = '\0';
	*num = (unsigned)n;
	return true;
}

static bool
ref_list(const char *s, bool stat, unsigned *num, uint64_t *size)
{
	uint64_t n;

	if (stat) {
		if (strncmp(s, "+OK ", 4) != 0)
			return false;
		s += 4;
		s += strspn(s, " ");
	}
	if (!ref_num(&s, UINT32_MAX, &n) || (!stat && n == 0) || *s != ' ')
		return false;
	s += strspn(s, " ");
	if (!ref_num(&s, UINT64_MAX / 16, size) || (*s != '\0' && *s != ' '))
		return false;
	*num = (unsigned)n;
	return true;
}

#define MAXMSGS	512

static void
check_lines(const char *data, size_t len)
{
	static struct pop3_msg msgs[MAXMSGS];
	char		*line, uidl[UIDL_MAX + 1], ruidl[UIDL_MAX + 1];
	char		*cause = NULL;
	const char	*p = data, *end = data + len, *lf;
	unsigned	 num, rnum, nmsgs = 0, i;
	uint64_t	 size, rsize;
	size_t		 n;
	bool		 ok, want;

	while (p < end) {
		lf = memchr(p, '\n', (size_t)(end - p));
		n = (lf != NULL ? (size_t)(lf - p) : (size_t)(end - p));
		line = fuzz_str(p, n - (n > 0 && p[n - 1] == '\r'));
		p += n + (lf != NULL);

		FUZZ_CHECK(uidl_valid(line, strlen(line)) ==
		    (strlen(line) > 0 && strlen(line) <= UIDL_MAX &&
		    strspn(line, "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJ"
		    "KLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~") ==
		    strlen(line)), "uidl_valid(\"%s\")", line);

		memset(uidl, 'x', sizeof uidl);
		ok = pop3_parse_uidl(line, &num, uidl);
		want = ref_uidl(line, &rnum, ruidl);
		FUZZ_CHECK(ok == want && (!ok || (num == rnum &&
		    strcmp(uidl, ruidl) == 0)), "pop3_parse_uidl(\"%s\"): %d, "
		    "reference %d", line, ok, want);
		if (ok && nmsgs < MAXMSGS) {
			msgs[nmsgs].num = num;
			memcpy(msgs[nmsgs].uidl, uidl, sizeof uidl);
			nmsgs++;
		}

		ok = pop3_parse_list(line, &num, &size);
		want = ref_list(line, false, &rnum, &rsize);
		FUZZ_CHECK(ok == want && (!ok || (num == rnum &&
		    size == rsize)), "pop3_parse_list(\"%s\"): %d, reference "
		    "%d", line, ok, want);
		if (ok && !ref_uidl(line, &rnum, ruidl) && nmsgs < MAXMSGS) {
			/* A message the UIDL listing left out. */
			msgs[nmsgs].num = num;
			msgs[nmsgs].uidl[0] = '\0';
			nmsgs++;
		}

		ok = pop3_parse_stat(line, &num, &size);
		want = ref_list(line, true, &rnum, &rsize);
		FUZZ_CHECK(ok == want && (!ok || (num == rnum &&
		    size == rsize)), "pop3_parse_stat(\"%s\"): %d, reference "
		    "%d", line, ok, want);
		free(line);
	}

	/* Numbers 1..n in order, every UIDL there (they may repeat: popa3d). */
	want = true;
	for (i = 0; i < nmsgs && want; i++)
		if (msgs[i].num != i + 1 || msgs[i].uidl[0] == '\0')
			want = false;
	ok = pop3_list_check(msgs, nmsgs, &cause);
	FUZZ_CHECK(ok == want && (ok == (cause == NULL)), "pop3_list_check "
	    "of %u messages: %d, want %d", nmsgs, ok, want);
	free(cause);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct fuzz_chunks ch;

	fuzz_chunks_init(&ch, &data, &len);
	check_dot((const char *)data, len, &ch);
	check_lines((const char *)data, len);
	return 0;
}
