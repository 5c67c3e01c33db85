// link: bridge/csv.c
// max_len: 12000
/*
 * csv_next over the whole input (an exact-size buffer, no NUL after it)
 * until it says 0, at most one call per input byte and a few more: each
 * call must take at least one byte, rows start on non-decreasing lines,
 * a row has 1-64 fields of at most 4096 bytes, an error leaves an empty
 * row and a reason, the end stays the end.  Then the rows read are
 * written out again as CSV (every field quoted) and must read back the
 * same, with no error (inputs without NUL bytes: a field is a C string).
 */
#include "bridge.h"
#include "fuzz.h"

struct rows {
	char	**f;		/* every field of every row, in order */
	size_t	 *nf;		/* fields per row */
	size_t	  nrows, nfields;
};

static void
rows_add(struct rows *rs, const struct csv_row *row)
{
	size_t	 i;

	rs->nf = xrealloc(rs->nf, (rs->nrows + 1) * sizeof *rs->nf);
	rs->nf[rs->nrows++] = row->n;
	rs->f = xrealloc(rs->f, (rs->nfields + row->n) * sizeof *rs->f);
	for (i = 0; i < row->n; i++)
		rs->f[rs->nfields++] = xstrdup(row->f[i]);
}

static void
rows_free(struct rows *rs)
{
	size_t	 i;

	for (i = 0; i < rs->nfields; i++)
		free(rs->f[i]);
	free(rs->f);
	free(rs->nf);
	memset(rs, 0, sizeof *rs);
}

/* Read all of buf[0..len); rows into rs; returns the number of errors. */
static size_t
read_all(const char *buf, size_t len, struct rows *rs)
{
	struct csv	 c;
	struct csv_row	 row;
	const char	*why, *before;
	size_t		 calls = 0, errors = 0, i;
	int		 r, last_line = 0;

	csv_init(&c, buf, len);
	for (;;) {
		FUZZ_CHECK(calls++ <= len + 1, "csv_next called %zu times on "
		    "%zu bytes", calls, len);
		before = c.p;
		why = NULL;
		r = csv_next(&c, &row, &why);
		FUZZ_CHECK(r >= -1 && r <= 1, "csv_next returned %d", r);
		FUZZ_CHECK(c.p >= buf && c.p <= buf + len, "position %td of %zu",
		    c.p - buf, len);
		if (r == 0) {
			FUZZ_CHECK(c.p == buf + len, "0 before the end");
			break;
		}
		FUZZ_CHECK(c.p > before, "csv_next took no byte");
		FUZZ_CHECK(row.line >= last_line && row.line >= 1,
		    "row at line %d after line %d", row.line, last_line);
		last_line = row.line;
		if (r == -1) {
			FUZZ_CHECK(why != NULL && why[0] != '\0' &&
			    row.n == 0 && row.f == NULL, "error row: why %s, "
			    "%zu fields", why != NULL ? why : "NULL", row.n);
			errors++;
			continue;
		}
		FUZZ_CHECK(row.n >= 1 && row.n <= 64, "%zu fields", row.n);
		for (i = 0; i < row.n; i++)
			FUZZ_CHECK(row.f[i] != NULL && strlen(row.f[i]) <= 4096,
			    "field %zu", i);
		rows_add(rs, &row);
		csv_row_free(&row);
		FUZZ_CHECK(row.n == 0 && row.f == NULL, "row not cleared");
	}
	/* The end stays the end. */
	FUZZ_CHECK(csv_next(&c, &row, &why) == 0, "read past the end");
	return errors;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct rows	 rs = { 0 }, again = { 0 };
	char		*buf = fuzz_dup(data, len), *out, *o;
	size_t		 i, j, k, cap;

	read_all(buf, len, &rs);
	free(buf);
	if (memchr(data, '\0', len) != NULL) {
		rows_free(&rs);
		return 0;
	}

	/* Every field quoted, quotes doubled; LF or CRLF between rows. */
	cap = 2;
	for (i = 0; i < rs.nfields; i++)
		cap += 2 * strlen(rs.f[i]) + 4;
	cap += 2 * rs.nrows;
	o = out = xmalloc(cap);
	for (i = 0, k = 0; i < rs.nrows; i++) {
		for (j = 0; j < rs.nf[i]; j++, k++) {
			const char *f = rs.f[k];

			if (j > 0)
				*o++ = ',';
			*o++ = '"';
			for (; *f != '\0'; f++) {
				if (*f == '"')
					*o++ = '"';
				*o++ = *f;
			}
			*o++ = '"';
		}
		if (i & 1)
			*o++ = '\r';
		*o++ = '\n';
	}
	buf = fuzz_dup(out, (size_t)(o - out));
	FUZZ_CHECK(read_all(buf, (size_t)(o - out), &again) == 0,
	    "rewritten CSV has errors");
	FUZZ_CHECK(again.nrows == rs.nrows && again.nfields == rs.nfields,
	    "rewritten CSV: %zu rows, %zu fields; first %zu, %zu",
	    again.nrows, again.nfields, rs.nrows, rs.nfields);
	for (i = 0; i < rs.nrows; i++)
		FUZZ_CHECK(again.nf[i] == rs.nf[i], "row %zu", i);
	for (i = 0; i < rs.nfields; i++)
		FUZZ_CHECK(strcmp(again.f[i], rs.f[i]) == 0, "field %zu: "
		    "\"%s\" read back as \"%s\"", i, rs.f[i], again.f[i]);
	free(buf);
	free(out);
	rows_free(&again);
	rows_free(&rs);
	return 0;
}
