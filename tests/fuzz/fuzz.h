/*
 * Shared helpers for the libFuzzer targets in tests/fuzz (header-only, so
 * each target stays one .c file linked with only the modules it fuzzes).
 *
 *	FUZZ_CHECK(cond, fmt, ...)	a broken invariant: print it and abort(),
 *					which libFuzzer reports as a crash
 *	fuzz_dup(p, n)			an exact-size malloc copy (no NUL), so
 *					AddressSanitizer sees any read past n
 *	fuzz_str(p, n)			the same with a NUL after byte n: a
 *					C string of exactly n + 1 bytes
 *	fuzz_chunks_*			chunk sizes taken from the input's first
 *					bytes, for feeding a streaming decoder
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void __attribute__((unused))
fuzz_dump(const char *what, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t	 i;

	fprintf(stderr, "  %s (%zu bytes): \"", what, n);
	for (i = 0; i < n && i < 512; i++) {
		if (s[i] == '\\' || s[i] == '"')
			fprintf(stderr, "\\%c", s[i]);
		else if (s[i] >= 0x20 && s[i] < 0x7f)
			fputc(s[i], stderr);
		else
			fprintf(stderr, "\\x%02x", s[i]);
	}
	fprintf(stderr, "\"%s\n", n > 512 ? "..." : "");
}

#define FUZZ_CHECK(cond, ...) do {					\
	if (!(cond)) {							\
		fprintf(stderr, "FUZZ CHECK FAILED %s:%d: %s: ",	\
		    __FILE__, __LINE__, #cond);				\
		fprintf(stderr, __VA_ARGS__);				\
		fputc('\n', stderr);					\
		abort();						\
	}								\
} while (0)

static char * __attribute__((unused))
fuzz_dup(const void *p, size_t n)
{
	char	*c = malloc(n);		/* malloc(0): ASan flags any access */

	if (c == NULL && n > 0)
		abort();
	if (n > 0)
		memcpy(c, p, n);
	return c;
}

static char * __attribute__((unused))
fuzz_str(const void *p, size_t n)
{
	char	*c = malloc(n + 1);

	if (c == NULL)
		abort();
	memcpy(c, p, n);
	c[n] = '\0';
	return c;
}

/*
 * Chunk sizes: byte 0's low three bits say how many size bytes follow
 * (0: the whole input in one piece); a size byte b is b bytes, or
 * (b & 0x7f) * 128 bytes when its top bit is set.  Sizes are used in turn,
 * round and round; a 0 feeds nothing (a legal call), but never twice a
 * whole round in a row.
 */
struct fuzz_chunks {
	size_t	 size[7];
	size_t	 n, i, zeros;
};

/* Consume the control bytes from *data; returns byte 0 (its upper bits
 * are for the target). */
static unsigned __attribute__((unused))
fuzz_chunks_init(struct fuzz_chunks *c, const uint8_t **data, size_t *len)
{
	unsigned ctl;
	size_t	 k;

	memset(c, 0, sizeof *c);
	if (*len == 0)
		return 0;
	ctl = (*data)[0];
	k = ctl & 7;
	if (k > *len - 1)
		k = *len - 1;
	for (c->n = 0; c->n < k; c->n++) {
		uint8_t b = (*data)[1 + c->n];

		c->size[c->n] = b & 0x80 ? (size_t)(b & 0x7f) * 128 : b;
	}
	*data += 1 + k;
	*len -= 1 + k;
	return ctl;
}

static size_t __attribute__((unused))
fuzz_chunks_next(struct fuzz_chunks *c, size_t left)
{
	size_t	 s;

	if (c->n == 0)
		return left;
	s = c->size[c->i++ % c->n];
	if (s == 0 && ++c->zeros > c->n)
		s = 1;
	if (s != 0)
		c->zeros = 0;
	return s < left ? s : left;
}

/*
 * The pace of a scripted server and what the client sends, for
 * conn_memory (fuzz_pop3_session, fuzz_imap_session): reads move the
 * chunk sizes in turn (0: a pause, the client polls and reads again);
 * writes move everything, or with wr_chunked the same sizes; once budget
 * bytes are sent the next write fails as a lost connection would.  The
 * bytes sent are kept in out (NUL after them), and for each write where
 * it began in out and how many of the server's inlen bytes the client had
 * been handed by then (at[], in pairs).
 */
struct fuzz_wire {
	struct fuzz_chunks rd, wr;
	int		 wr_chunked;
	size_t		 budget;
	char		*out;
	size_t		 outlen, outcap;
	size_t		 inlen, handed;	/* server bytes, handed over so far */
	size_t		*at;		/* per write: out offset, handed */
	size_t		 nat, atcap;
};

static size_t __attribute__((unused))
fuzz_wire_step(void *arg, bool sending, size_t n)
{
	struct fuzz_wire *w = arg;
	size_t	 k;

	if (!sending) {
		/* conn_memory hands over as much, unless the script ends. */
		k = fuzz_chunks_next(&w->rd, n);
		w->handed += k < w->inlen - w->handed ? k : w->inlen - w->handed;
		return k;
	}
	if (w->outlen >= w->budget)
		return (size_t)-1;	/* CONN_STEP_FAIL */
	k = w->wr_chunked ? fuzz_chunks_next(&w->wr, n) : n;
	return k < w->budget - w->outlen ? k : w->budget - w->outlen;
}

static void __attribute__((unused))
fuzz_wire_sent(void *arg, const void *p, size_t n)
{
	struct fuzz_wire *w = arg;

	if (w->outlen + n + 1 > w->outcap) {
		w->outcap = (w->outlen + n + 1) * 2;
		if ((w->out = realloc(w->out, w->outcap)) == NULL)
			abort();
	}
	if (w->nat + 2 > w->atcap) {
		w->atcap = (w->nat + 2) * 2;
		if ((w->at = realloc(w->at, w->atcap * sizeof *w->at)) == NULL)
			abort();
	}
	w->at[w->nat++] = w->outlen;
	w->at[w->nat++] = w->handed;
	memcpy(w->out + w->outlen, p, n);
	w->outlen += n;
	w->out[w->outlen] = '\0';
}

/* Is s (n bytes) printable ASCII, as every cause must be? */
static int __attribute__((unused))
fuzz_printable(const char *s, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return 0;
	return 1;
}

#endif
