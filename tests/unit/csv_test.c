// link: bridge/csv.c
/*
 * bridge/csv.c: RFC 4180 rows for `popbridge batch`.  A table of inputs,
 * each fed as an exact-size buffer with no NUL after it (so
 * AddressSanitizer sees any read past the end), and what csv_next must
 * give for it: rows with their starting line numbers and fields, or errors
 * naming a line, and after an error the next row still read.
 *
 * What csv_next returns is written down as one string per input:
 *	"LINE:[field][field];"	a row starting at LINE
 *	"LINE:!kind;"		an error (-1) at LINE; kind from *why:
 *				unclosed, after-quote, quote-in-field,
 *				too-long, too-many, nul
 * Fields longer than 40 bytes are written "{N*c}" (N bytes, all c) or
 * "{N bytes}".  The end (0) writes nothing; it must stay the end.
 */
#include "bridge.h"
#include "unit.h"

#define S(s)	s, sizeof(s) - 1

struct sbuf {
	char	*p;
	size_t	 n, cap;
};

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			abort();
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char	 tmp[256];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	sb_add(b, tmp, (size_t)n);
}

static const char *
kind_of(const char *why)
{
	if (why == NULL)
		return "NULL-why";
	if (strstr(why, "not closed") != NULL)
		return "unclosed";
	if (strstr(why, "after a closing quote") != NULL)
		return "after-quote";
	if (strstr(why, "inside an unquoted") != NULL)
		return "quote-in-field";
	if (strstr(why, "longer than") != NULL)
		return "too-long";
	if (strstr(why, "too many fields") != NULL)
		return "too-many";
	if (strstr(why, "NUL byte") != NULL)
		return "nul";
	return why;
}

static void
put_field(struct sbuf *b, const char *f)
{
	size_t	 n = strlen(f), i;

	if (n <= 40) {
		sb_add(b, "[", 1);
		sb_add(b, f, n);
		sb_add(b, "]", 1);
		return;
	}
	for (i = 1; i < n && f[i] == f[0]; i++)
		;
	if (i == n)
		sb_printf(b, "{%zu*%c}", n, f[0]);
	else
		sb_printf(b, "{%zu bytes}", n);
}

/*
 * Everything csv_next says about in[0..len), the buffer exactly len bytes
 * long.  The caller frees the result.
 */
static char *
parse_all(const char *in, size_t len)
{
	struct csv	 c;
	struct csv_row	 row;
	struct sbuf	 b = { NULL, 0, 0 };
	const char	*why;
	char		*buf;
	size_t		 i;
	int		 got, calls;

	buf = malloc(len > 0 ? len : 1);
	if (buf == NULL)
		abort();
	memcpy(buf, in, len);
	/* len 0: csv_init gets a pointer whose every byte is out of range. */
	csv_init(&c, len > 0 ? buf : buf + 1, len);
	sb_add(&b, "", 0);
	for (calls = 0; calls < 200; calls++) {
		why = NULL;
		got = csv_next(&c, &row, &why);
		if (got == 0) {
			/* The end stays the end. */
			CHECK(csv_next(&c, &row, &why) == 0 && row.n == 0,
			    "%s: csv_next after the end did not return 0",
			    unit_esc(in, len < 60 ? len : 60));
			break;
		}
		if (got == -1) {
			CHECK(row.n == 0 && row.f == NULL,
			    "%s: an error left %zu fields in the row",
			    unit_esc(in, len < 60 ? len : 60), row.n);
			sb_printf(&b, "%d:!%s;", row.line, kind_of(why));
			csv_row_free(&row);
			continue;
		}
		CHECK(got == 1, "csv_next returned %d", got);
		sb_printf(&b, "%d:", row.line);
		for (i = 0; i < row.n; i++)
			put_field(&b, row.f[i]);
		sb_add(&b, ";", 1);
		csv_row_free(&row);
	}
	CHECK(calls < 200, "%s: csv_next never reached the end",
	    unit_esc(in, len < 60 ? len : 60));
	free(buf);
	return b.p;
}

/* ---- the table ---- */

struct ccase {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*want;
};

static const struct ccase cases[] = {
	/* Plain rows, line ends. */
	{ "one row, LF", S("a,b,c\n"), "1:[a][b][c];" },
	{ "one row, no final newline", S("a,b,c"), "1:[a][b][c];" },
	{ "one row, CRLF", S("a,b,c\r\n"), "1:[a][b][c];" },
	{ "rows, LF", S("a,b\nc,d\ne,f\n"), "1:[a][b];2:[c][d];3:[e][f];" },
	{ "rows, CRLF", S("a,b\r\nc,d\r\ne,f\r\n"),
	    "1:[a][b];2:[c][d];3:[e][f];" },
	{ "rows, CRLF, no final CRLF", S("a,b\r\nc,d"), "1:[a][b];2:[c][d];" },
	{ "CRLF and LF mixed", S("a\r\nb\nc\r\nd"), "1:[a];2:[b];3:[c];4:[d];" },
	{ "spaces are data", S(" a , b \n"), "1:[ a ][ b ];" },
	{ "8-bit bytes are data", S("gr\xc3\xbc\xc3\x9f,\xff\n"),
	    "1:[gr\xc3\xbc\xc3\x9f][\xff];" },

	/* Empty fields. */
	{ "empty middle field", S("a,,b\n"), "1:[a][][b];" },
	{ "empty fields only", S(",,\n"), "1:[][][];" },
	{ "trailing comma", S("a,\n"), "1:[a][];" },
	{ "trailing comma at the end", S("a,"), "1:[a][];" },
	{ "leading comma", S(",a\n"), "1:[][a];" },
	{ "quoted empty field", S("\"\",x\n"), "1:[][x];" },
	{ "quoted empty last field", S("x,\"\"\n"), "1:[x][];" },

	/* Quoting. */
	{ "quoted comma", S("\"a,b\",c\n"), "1:[a,b][c];" },
	{ "quoted last field, no newline", S("a,\"b,c\""), "1:[a][b,c];" },
	{ "doubled quote", S("\"say \"\"hi\"\"\",x\n"), "1:[say \"hi\"][x];" },
	{ "only a doubled quote", S("\"\"\"\"\n"), "1:[\"];" },
	{ "doubled quotes at the ends", S("\"\"\"a\"\"\"\n"), "1:[\"a\"];" },
	{ "quoted CRLF row end", S("\"a\",\"b\"\r\nc\r\n"),
	    "1:[a][b];2:[c];" },

	/* Line breaks inside quotes: the next row's line number. */
	{ "embedded LF", S("\"l1\nl2\",x\nnext\n"), "1:[l1\nl2][x];3:[next];" },
	{ "embedded CRLF kept", S("\"a\r\nb\"\r\nc\r\n"),
	    "1:[a\r\nb];3:[c];" },
	{ "two embedded LFs, then rows", S("h\n\"1\n2\n3\",x\ny\nz\n"),
	    "1:[h];2:[1\n2\n3][x];5:[y];6:[z];" },
	{ "embedded blank line", S("\"a\n\nb\"\nc\n"), "1:[a\n\nb];4:[c];" },

	/* Blank lines. */
	{ "empty input", S(""), "" },
	{ "only newlines", S("\n\n\r\n"), "" },
	{ "blank lines between and around", S("\n\na\n\n\nb\n\n"),
	    "3:[a];6:[b];" },
	{ "blank CRLF lines", S("\r\n\r\na\r\n\r\nb"), "3:[a];5:[b];" },

	/* Errors, and the row after each is still read. */
	{ "unclosed quote, newline at the end", S("a,\"bc\n"),
	    "1:!unclosed;" },
	{ "unclosed quote, no newline", S("a,\"bc"), "1:!unclosed;" },
	{ "unclosed quote after good rows", S("x\ny\n\"abc,d\n"),
	    "1:[x];2:[y];3:!unclosed;" },
	{ "unclosed quote over lines", S("x\n\"a\nb\nc\n"),
	    "1:[x];2:!unclosed;" },
	{ "unclosed quote alone", S("\""), "1:!unclosed;" },
	{ "text after closing quote", S("\"a\"b,c\nnext\n"),
	    "1:!after-quote;2:[next];" },
	{ "space after closing quote", S("\"a\" ,c\nnext\n"),
	    "1:!after-quote;2:[next];" },
	{ "text after closing quote, CRLF", S("\"a\"b\r\nnext\r\n"),
	    "1:!after-quote;2:[next];" },
	{ "quote inside unquoted field", S("ab\"c,d\nnext\n"),
	    "1:!quote-in-field;2:[next];" },
	{ "quote at the end of unquoted field", S("x,ab\"\nnext\n"),
	    "1:!quote-in-field;2:[next];" },
	{ "error row between good rows", S("a\nb\"x\nc\n"),
	    "1:[a];2:!quote-in-field;3:[c];" },
	{ "two error rows in a row", S("\"a\"b\nc\"d\ne\n"),
	    "1:!after-quote;2:!quote-in-field;3:[e];" },
	{ "error on the second line of a quoted field",
	    S("\"a\nb\"x\nnext\n"), "2:!after-quote;3:[next];" },

	/*
	 * A UTF-8 byte-order mark at the very start is skipped; anywhere else
	 * it is data.  Before the fix it was part of the first field, and
	 * batch said "the header row has no column pop3_url".
	 */
	{ "BOM before the header", S("\xef\xbb\xbfpop3_url,b\nx,y\n"),
	    "1:[pop3_url][b];2:[x][y];" },
	{ "BOM before a quoted field", S("\xef\xbb\xbf\"a,b\",c\n"),
	    "1:[a,b][c];" },
	{ "BOM, CRLF", S("\xef\xbb\xbf" "a\r\nb\r\n"), "1:[a];2:[b];" },
	{ "BOM alone", S("\xef\xbb\xbf"), "" },
	{ "BOM, then a blank line", S("\xef\xbb\xbf\na\n"), "2:[a];" },
	{ "a second BOM is data", S("\xef\xbb\xbf\xef\xbb\xbf" "a\n"),
	    "1:[\xef\xbb\xbf" "a];" },
	{ "BOM on line 2 is data", S("a\n\xef\xbb\xbf" "b\n"),
	    "1:[a];2:[\xef\xbb\xbf" "b];" },
	{ "half a BOM is data", S("\xef\xbbx\n"), "1:[\xef\xbbx];" },

	/*
	 * A NUL byte is an error at its line.  Before the fix it was copied
	 * into the field, which as a C string ended there: "b\0c" read as
	 * "b" with no word.
	 */
	{ "NUL in an unquoted field", S("a,b\0c,d\nnext\n"),
	    "1:!nul;2:[next];" },
	{ "NUL in a quoted field", S("\"a\0b\",c\nnext\n"),
	    "1:!nul;2:[next];" },
	{ "NUL on line 3 of a quoted field", S("\"a\nb\n\0\"\nnext\n"),
	    "3:!nul;4:[next];" },
	{ "NUL after good rows", S("x\ny\0\nz\n"), "1:[x];2:!nul;3:[z];" },
	{ "NUL alone", S("\0"), "1:!nul;" },
	{ "NUL at the end", S("a,\0"), "1:!nul;" },
	{ "NUL as a whole field", S("a,\0,b\n"), "1:!nul;" },
};

static void
test_case(const void *arg)
{
	const struct ccase *tc = arg;
	char	*got = parse_all(tc->in, tc->inlen);

	CHECK(strcmp(got, tc->want) == 0, "%s: input %s: got %s, want %s",
	    tc->name, unit_esc(tc->in, tc->inlen), unit_sesc(got),
	    unit_sesc(tc->want));
	free(got);
}

/* ---- generated inputs: long fields, many fields ---- */

static void
expect(const char *name, struct sbuf *in, const char *want)
{
	char	*got = parse_all(in->p, in->n);

	CHECK(strcmp(got, want) == 0, "%s: got %s, want %s", name,
	    unit_sesc(got), unit_sesc(want));
	free(got);
	free(in->p);
	memset(in, 0, sizeof *in);
}

static void
add_run(struct sbuf *b, char c, size_t n)
{
	char	*t = malloc(n);

	if (t == NULL)
		abort();
	memset(t, c, n);
	sb_add(b, t, n);
	free(t);
}

static void
test_long_fields(const void *arg)
{
	struct sbuf	 in = { NULL, 0, 0 };

	(void)arg;
	add_run(&in, 'x', 4096);
	sb_add(&in, ",y\nnext\n", 8);
	expect("4096-byte field", &in, "1:{4096*x}[y];2:[next];");

	add_run(&in, 'x', 4097);
	sb_add(&in, ",y\nnext\n", 8);
	expect("4097-byte field", &in, "1:!too-long;2:[next];");

	add_run(&in, 'x', 4097);
	expect("4097-byte field at the end", &in, "1:!too-long;");

	sb_add(&in, "a,", 2);
	add_run(&in, 'x', 4097);
	sb_add(&in, "\r\nnext\r\n", 8);
	expect("4097-byte last field, CRLF", &in, "1:!too-long;2:[next];");

	sb_add(&in, "\"", 1);
	add_run(&in, 'q', 4096);
	sb_add(&in, "\",y\nnext\n", 9);
	expect("4096-byte quoted field", &in, "1:{4096*q}[y];2:[next];");

	sb_add(&in, "\"", 1);
	add_run(&in, 'q', 4097);
	sb_add(&in, "\",y\nnext\n", 9);
	expect("4097-byte quoted field", &in, "1:!too-long;2:[next];");

	/* "" counts once: 4095 bytes and a quote are 4096. */
	sb_add(&in, "\"", 1);
	add_run(&in, 'q', 4095);
	sb_add(&in, "\"\"\"\nnext\n", 9);
	expect("4096 bytes with a doubled quote", &in,
	    "1:{4096 bytes};2:[next];");
}

/* n fields "f" separated by commas, then `end`. */
static void
add_fields(struct sbuf *b, int n, const char *end)
{
	int	 i;

	for (i = 0; i < n; i++)
		sb_add(b, i == 0 ? "f" : ",f", i == 0 ? 1 : 2);
	sb_add(b, end, strlen(end));
}

static void
test_many_fields(const void *arg)
{
	struct sbuf	 in = { NULL, 0, 0 }, want = { NULL, 0, 0 };
	int		 i;

	(void)arg;
	sb_add(&want, "1:", 2);
	for (i = 0; i < 64; i++)
		sb_add(&want, "[f]", 3);
	sb_add(&want, ";2:[next];3:[last];", 19);
	add_fields(&in, 64, "\nnext\nlast\n");
	expect("64 fields, LF", &in, want.p);
	add_fields(&in, 64, "\r\nnext\r\nlast\r\n");
	expect("64 fields, CRLF", &in, want.p);
	free(want.p);

	add_fields(&in, 65, "\nnext\nlast\n");
	expect("65 fields, LF", &in, "1:!too-many;2:[next];3:[last];");
	add_fields(&in, 65, "\r\nnext\r\nlast\r\n");
	expect("65 fields, CRLF", &in, "1:!too-many;2:[next];3:[last];");
	add_fields(&in, 65, "");
	expect("65 fields at the end", &in, "1:!too-many;");
	add_fields(&in, 66, "\nnext\nlast\n");
	expect("66 fields, LF", &in, "1:!too-many;2:[next];3:[last];");
	add_fields(&in, 65, ",\nnext\n");
	expect("65 fields and an empty one", &in, "1:!too-many;2:[next];");
	sb_add(&in, "h\n", 2);
	add_fields(&in, 65, "\nnext\n");
	expect("65 fields on line 2, LF", &in, "1:[h];2:!too-many;3:[next];");
}

int
main(void)
{
	size_t	 i;
	char	 name[128];

	for (i = 0; i < NELEM(cases); i++) {
		snprintf(name, sizeof name, "csv: %s", cases[i].name);
		UNIT_ISOLATED(name, test_case, &cases[i]);
	}
	UNIT_ISOLATED("long fields", test_long_fields, NULL);
	UNIT_ISOLATED("many fields", test_many_fields, NULL);
	return UNIT_END();
}
