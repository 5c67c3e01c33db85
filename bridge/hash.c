/*
 * SHA-256 as lower-case hex, for the ledger's message fingerprints and
 * the stand-in ids of servers without UIDL.  A thin layer over OpenSSL's
 * EVP interface so that other files need not include it.
 */
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string.h>

#include "bridge.h"

struct hash {
	EVP_MD_CTX	*ctx;
};

struct hash *
hash_new(void)
{
	struct hash	*h = xmalloc(sizeof *h);

	if ((h->ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		fatal("OpenSSL cannot make a SHA-256 context");
	return h;
}

void
hash_update(struct hash *h, const void *p, size_t n)
{
	if (EVP_DigestUpdate(h->ctx, p, n) != 1)
		fatal("OpenSSL SHA-256 update failed");
}

/*
 * A message's content hash: NUL bytes count as 0x80.  A message with NULs
 * travels as a literal8 (RFC 3516), but Dovecot 2.3 gives them back as
 * 0x80 in BODY[] (no NUL may be in a literal), so the hash of what was
 * sent and of what is fetched agree only this way.
 */
void
hash_update_message(struct hash *h, const void *p, size_t n)
{
	const char	*s = p, *nul;
	char		 buf[4096];
	size_t		 k;

	while (n > 0 && (nul = memchr(s, '\0', n)) != NULL) {
		hash_update(h, s, (size_t)(nul - s));
		n -= (size_t)(nul - s);
		s = nul;
		for (k = 0; k < n && k < sizeof buf && (buf[k] = s[k]) == '\0';
		    k++)
			buf[k] = (char)0x80;
		hash_update(h, buf, k);
		s += k;
		n -= k;
	}
	hash_update(h, s, n);
}

void
hash_final(struct hash *h, char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 n = 0, i;

	if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32)
		fatal("OpenSSL SHA-256 final failed");
	for (i = 0; i < n; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * n] = '\0';
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void
hash_hex(const void *p, size_t n, char *out)
{
	struct hash	*h = hash_new();

	hash_update(h, p, n);
	hash_final(h, out);
}

/*
 * HMAC-SHA256 in hex: the web page's CSRF tokens (http_form.c), signed
 * with a secret of the daemon's so that only a page it served has them.
 */
void
hash_hmac(const void *key, size_t keylen, const void *msg, size_t n,
    char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0, i;

	if (HMAC(EVP_sha256(), key, (int)keylen, msg, n, md, &mdlen) == NULL)
		fatal("OpenSSL HMAC-SHA256 failed");
	for (i = 0; i < mdlen && i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[2 * i] = '\0';
}
