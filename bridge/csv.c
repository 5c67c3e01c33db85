/*
 * CSV as RFC 4180 has it (the batch's account list): fields separated by
 * commas, rows by CRLF or LF, a field in double quotes may hold commas,
 * line breaks and "" for a quote.  Pure and bounded: a field longer than
 * CSV_FIELD_MAX, a row with more than CSV_FIELDS_MAX fields or a NUL byte
 * is an error naming the line, not a guess.  A UTF-8 byte-order mark at
 * the start is skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

#define CSV_FIELD_MAX	4096
#define CSV_FIELDS_MAX	64

void
csv_init(struct csv *c, const char *data, size_t len)
{
	memset(c, 0, sizeof *c);
	c->p = data;
	c->end = data + len;
	c->line = 1;
	/* A UTF-8 byte-order mark (Excel's "CSV UTF-8") is no field. */
	if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
		c->p += 3;
}

void
csv_row_free(struct csv_row *row)
{
	size_t	 i;

	for (i = 0; i < row->n; i++)
		free(row->f[i]);
	free(row->f);
	memset(row, 0, sizeof *row);
}

static bool
field_add(struct csv_row *row, char *buf, size_t len)
{
	if (row->n == CSV_FIELDS_MAX)
		return false;
	row->f = xrealloc(row->f, (row->n + 1) * sizeof *row->f);
	row->f[row->n++] = xstrndup(buf, len);
	return true;
}

/*
 * The next row into *row (line = where it starts).  Returns 1 for a row,
 * 0 at the end, -1 on an error (*why says what, row->line where).
 * A byte-level state machine (in quotes, after a closing quote, plain),
 * kept whole: each byte's meaning depends on the state, read at a glance.
 */
int
csv_next(struct csv *c, struct csv_row *row, const char **why)
{
	char	 buf[CSV_FIELD_MAX];
	size_t	 n = 0;
	bool	 quoted = false, was_quoted = false;
	int	 start;

	memset(row, 0, sizeof *row);
	/* Blank lines between rows are skipped. */
	while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) {
		if (*c->p == '\n')
			c->line++;
		c->p++;
	}
	if (c->p >= c->end)
		return 0;
	row->line = start = c->line;
	for (;;) {
		char ch;

		if (c->p >= c->end) {
			if (quoted) {
				*why = "a quoted field is not closed";
				csv_row_free(row);
				row->line = start;
				return -1;
			}
			break;
		}
		ch = *c->p++;
		/* A field is a C string: a NUL would cut it short unseen. */
		if (ch == '\0') {
			*why = "a NUL byte";
			goto bad;
		}
		if (quoted) {
			if (ch == '"') {
				if (c->p < c->end && *c->p == '"') {
					c->p++;
				} else {
					quoted = false;
					continue;
				}
			} else if (ch == '\n')
				c->line++;
		} else if (ch == '"') {
			if (n != 0 || was_quoted) {
				*why = "a quote inside an unquoted field";
				goto bad;
			}
			quoted = was_quoted = true;
			continue;
		} else if (ch == ',' || ch == '\n' || ch == '\r') {
			bool added = field_add(row, buf, n);

			n = 0;
			was_quoted = false;
			if (ch == ',') {
				if (!added) {
					*why = "too many fields";
					goto bad;
				}
				continue;
			}
			/* The row's end is read: nothing more to skip. */
			if (ch == '\r' && c->p < c->end && *c->p == '\n')
				c->p++;
			c->line++;
			if (!added) {
				*why = "too many fields";
				csv_row_free(row);
				row->line = start;
				return -1;
			}
			return 1;
		} else if (was_quoted) {
			*why = "text after a closing quote";
			goto bad;
		}
		if (n == sizeof buf) {
			*why = "a field longer than 4096 bytes";
			goto bad;
		}
		buf[n++] = ch;
	}
	if (!field_add(row, buf, n)) {
		*why = "too many fields";
		goto bad;
	}
	return 1;
bad:
	/* Skip to the end of the line so the next row can be read. */
	while (c->p < c->end && *c->p != '\n')
		c->p++;
	csv_row_free(row);
	row->line = c->line;	/* where the fault is */
	return -1;
}
