/*
 * A reply read into memory a piece at a time (libcurl's write callbacks:
 * discover_http.c's documents, gmail.c's API replies), grown as it comes
 * and never past its bound, so that a server cannot make us hold more
 * than we asked for.  Kept NUL-terminated for the parsers that read it.
 */
#include <string.h>

#include "bridge.h"

bool
bounded_append(char **buf, size_t *len, size_t max, const void *p, size_t n)
{
	/* *len <= max always holds, so max - *len cannot wrap. */
	if (n > max - *len)
		return false;
	*buf = xrealloc(*buf, *len + n + 1);
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}
