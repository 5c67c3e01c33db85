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

#endif
