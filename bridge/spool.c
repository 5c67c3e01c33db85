/*
 * A message on its way from POP3 to IMAP.  The first memmax bytes stay in
 * memory (where the header facts are read from); the rest goes to an
 * unlinked temporary file, so a 100 MB message costs a bounded amount of
 * memory.  The file is made in the state directory, which only the
 * popbridge user can read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

void
spool_init(struct spool *sp, size_t memmax, const char *tmpdir)
{
	memset(sp, 0, sizeof *sp);
	sp->memmax = memmax;
	sp->fd = -1;
	sp->tmpdir = tmpdir;
}

static enum result
spool_spill(struct spool *sp, const char *p, size_t n, char **cause)
{
	char	*path;
	ssize_t	 w;

	if (sp->fd == -1) {
		path = xprintf("%s/.spool.XXXXXX", sp->tmpdir ?
		    sp->tmpdir : "/tmp");
		sp->fd = mkstemp(path);
		if (sp->fd == -1) {
			enum result r = fail(cause, RES_TEMP,
			    "cannot make a temporary file %s: %s", path,
			    strerror(errno));
			free(path);
			return r;
		}
		unlink(path);
		free(path);
	}
	while (n > 0) {
		w = write(sp->fd, p, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return fail(cause, RES_TEMP,
			    "cannot write a temporary file: %s",
			    w == 0 ? "no space" : strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return RES_OK;
}

/*
 * The memory part grows with the message (doubling, from 16 KB) up to
 * memmax: a transfer holds many slots, most of them small messages, and
 * only what they hold should count against its memory.
 */
static void
spool_grow(struct spool *sp, size_t want)
{
	size_t	 cap = sp->memcap != 0 ? sp->memcap : 16384;

	while (cap < want && cap < sp->memmax)
		cap *= 2;
	if (cap > sp->memmax)
		cap = sp->memmax;
	sp->mem = xrealloc(sp->mem, cap);
	sp->memcap = cap;
}

enum result
spool_write(struct spool *sp, const void *data, size_t n, char **cause)
{
	const char	*p = data;
	size_t		 room, take;

	if (sp->memlen < sp->memmax) {
		if (sp->memlen + n > sp->memcap && sp->memcap < sp->memmax)
			spool_grow(sp, sp->memlen + n);
		room = sp->memcap - sp->memlen;
		take = n < room ? n : room;
		memcpy(sp->mem + sp->memlen, p, take);
		sp->memlen += take;
		sp->size += take;
		p += take;
		n -= take;
	}
	if (n == 0)
		return RES_OK;
	sp->size += n;
	return spool_spill(sp, p, n, cause);
}

ssize_t
spool_pread(struct spool *sp, void *buf, size_t n, uint64_t off)
{
	size_t	 take;
	ssize_t	 r;

	if (off >= sp->size)
		return 0;
	if (off < sp->memlen) {
		take = sp->memlen - (size_t)off;
		if (take > n)
			take = n;
		memcpy(buf, sp->mem + off, take);
		return (ssize_t)take;
	}
	do
		r = pread(sp->fd, buf, n, (off_t)(off - sp->memlen));
	while (r == -1 && errno == EINTR);
	return r;
}

void
spool_reset(struct spool *sp)
{
	if (sp->fd != -1) {
		/* Truncate and rewind: write() goes on from the offset. */
		if (ftruncate(sp->fd, 0) == -1 ||
		    lseek(sp->fd, 0, SEEK_SET) == -1) {
			close(sp->fd);
			sp->fd = -1;
		}
	}
	sp->memlen = 0;
	sp->size = 0;
}

/* Emptied and its memory given back; the file (if any) stays for reuse. */
void
spool_trim(struct spool *sp)
{
	spool_reset(sp);
	free(sp->mem);
	sp->mem = NULL;
	sp->memcap = 0;
}

void
spool_free(struct spool *sp)
{
	if (sp->fd != -1)
		close(sp->fd);
	free(sp->mem);
	sp->mem = NULL;
	sp->memcap = 0;
	sp->fd = -1;
	sp->memlen = 0;
	sp->size = 0;
}
