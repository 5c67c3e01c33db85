/*
 * Pure parsers for what a POP3 server sends: dot-stuffed multi-line bodies,
 * UIDL, LIST and STAT lines.  A POP3 server can send anything, so each
 * parser accepts exactly the grammar of RFC 1939 (with the leniencies real
 * servers need, each named) and fails closed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

enum {
	DOT_LS,		/* at the start of a line */
	DOT_MID,	/* inside a line */
	DOT_CR,		/* after a CR inside a line */
	DOT_DOT,	/* a dot at the start of a line */
	DOT_DOTCR,	/* ".\r" at the start of a line */
	DOT_DONE,
};

void
dot_init(struct dot_decoder *d)
{
	d->state = DOT_LS;
}

size_t
dot_decode(struct dot_decoder *d, const char *buf, size_t n, char *out,
    size_t *used, bool *done)
{
	size_t	 i, o = 0;

	*done = false;
	for (i = 0; i < n && d->state != DOT_DONE; i++) {
		char c = buf[i];

		/*
		 * In the middle of a line nothing is special until the LF:
		 * copy up to it as one block.
		 */
		if (d->state == DOT_MID || d->state == DOT_CR) {
			const char *lf = memchr(buf + i, '\n', n - i);
			size_t len = lf != NULL ? (size_t)(lf - (buf + i)) + 1 :
			    n - i;

			memcpy(out + o, buf + i, len);
			o += len;
			i += len - 1;
			d->state = lf != NULL ? DOT_LS : buf[i] == '\r' ?
			    DOT_CR : DOT_MID;
			continue;
		}

		switch (d->state) {
		case DOT_DOT:
			if (c == '\r') {
				d->state = DOT_DOTCR;
				continue;
			}
			if (c == '\n') {
				/* ".LF": a server with bare LF line ends. */
				d->state = DOT_DONE;
				continue;
			}
			/*
			 * ".." is a stuffed dot.  A single dot before any
			 * other byte is not valid stuffing; Dovecot 2.3.19
			 * sends a first line beginning with "." unstuffed, so
			 * the dot is data.
			 */
			if (c != '.')
				out[o++] = '.';
			d->state = DOT_MID;
			break;
		case DOT_DOTCR:
			if (c == '\n') {
				d->state = DOT_DONE;
				continue;
			}
			out[o++] = '.';
			out[o++] = '\r';
			d->state = DOT_MID;
			break;
		case DOT_LS:
			if (c == '.') {
				d->state = DOT_DOT;
				continue;
			}
			d->state = DOT_MID;
			break;
		case DOT_CR:
			d->state = DOT_MID;
			break;
		default:
			break;
		}
		/* c is data in the middle of a line. */
		out[o++] = c;
		if (c == '\n')
			d->state = DOT_LS;
		else if (c == '\r')
			d->state = DOT_CR;
	}
	*used = i;
	*done = d->state == DOT_DONE;
	return o;
}

bool
uidl_valid(const char *s, size_t len)
{
	size_t	 i;

	if (len < 1 || len > UIDL_MAX)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* A decimal number without sign or leading junk, bounded by max. */
static const char *
parse_uint(const char *p, uint64_t max, uint64_t *v)
{
	uint64_t	 n = 0;

	if (!isdigit((unsigned char)*p))
		return NULL;
	while (isdigit((unsigned char)*p)) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > max)
			return NULL;
		p++;
	}
	*v = n;
	return p;
}

static const char *
skip_spaces(const char *p)
{
	while (*p == ' ')
		p++;
	return p;
}

/* "n uidl" as in a UIDL listing; uidl must have room for UIDL_MAX + 1. */
bool
pop3_parse_uidl(const char *line, unsigned int *num, char *uidl)
{
	const char	*p, *q;
	uint64_t	 n;

	if ((p = parse_uint(line, UINT32_MAX, &n)) == NULL || n == 0 ||
	    *p != ' ')
		return false;
	p = skip_spaces(p);
	for (q = p; *q != '\0' && *q != ' '; q++)
		;
	/* Trailing spaces are tolerated, anything else is not. */
	if (*skip_spaces(q) != '\0' || !uidl_valid(p, (size_t)(q - p)))
		return false;
	memcpy(uidl, p, (size_t)(q - p));
	uidl[q - p] = '\0';
	*num = (unsigned int)n;
	return true;
}

/* "n size", as in a LIST listing. */
bool
pop3_parse_list(const char *line, unsigned int *num, uint64_t *size)
{
	const char	*p;
	uint64_t	 n;

	if ((p = parse_uint(line, UINT32_MAX, &n)) == NULL || n == 0 ||
	    *p != ' ')
		return false;
	p = skip_spaces(p);
	/* RFC 1939 allows more after the size; ignore it. */
	if ((p = parse_uint(p, UINT64_MAX / 16, size)) == NULL ||
	    (*p != '\0' && *p != ' '))
		return false;
	*num = (unsigned int)n;
	return true;
}

/* "+OK count size" */
bool
pop3_parse_stat(const char *line, unsigned int *count, uint64_t *size)
{
	const char	*p;
	uint64_t	 n;

	if (strncmp(line, "+OK ", 4) != 0)
		return false;
	p = skip_spaces(line + 4);
	if ((p = parse_uint(p, UINT32_MAX, &n)) == NULL || *p != ' ')
		return false;
	p = skip_spaces(p);
	if ((p = parse_uint(p, UINT64_MAX / 16, size)) == NULL ||
	    (*p != '\0' && *p != ' '))
		return false;
	*count = (unsigned int)n;
	return true;
}

/*
 * A listing must name every message 1..n and give each a UIDL.  UIDLs may
 * repeat: RFC 1939 asks for unique ones, but popa3d 1.0 makes them from a
 * hash of a few headers, and 47 ordinary messages gave 19 distinct ones.
 * The run tells such messages apart by size and content (transfer.c).
 */
bool
pop3_list_check(const struct pop3_msg *msgs, unsigned int n, char **cause)
{
	unsigned int	 i;

	for (i = 0; i < n; i++) {
		if (msgs[i].num != i + 1) {
			fail(cause, RES_TEMP, "message %u is missing from the "
			    "listing", i + 1);
			return false;
		}
		if (msgs[i].uidl[0] == '\0') {
			fail(cause, RES_TEMP, "message %u has no UIDL", i + 1);
			return false;
		}
	}
	return true;
}
