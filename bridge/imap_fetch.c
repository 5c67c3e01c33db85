/*
 * Finding messages in the IMAP mailbox again, and removing popbridge's own
 * duplicates: what settle.c and adopt.c need.  The mailbox must be
 * selected (imap_select).
 *
 * Costs are kept in proportion: sizes of the UIDs above a bound, or of
 * all messages with their Message-ID only (no bodies); a body is fetched
 * only to confirm one candidate, and it is hashed as it streams in, never
 * held in memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "imap_int.h"

struct list_ctx {
	uint32_t	 lo;
	imap_list_cb	 cb;
	void		*arg;
};

static void
on_list(struct imap *im, void *arg)
{
	struct list_ctx	*lc = arg;
	struct imap_fetch f;

	if (!imap_parse_fetch(im->resp, im->resplen, &f) || f.uid == 0 ||
	    !f.have_size || f.uid < lc->lo)
		return;
	lc->cb(lc->arg, f.uid, f.size, f.have_body ? f.body : NULL,
	    f.have_body ? f.bodylen : 0);
}

static enum result
list_command(struct imap *im, const char *cmd, uint32_t lo, imap_list_cb cb,
    void *arg, char **cause)
{
	struct list_ctx	 lc = { lo, cb, arg };
	struct imap_reply rep;
	enum result	 r;

	if ((r = imap_command(im, cmd, on_list, &lc, &rep, cause)) != RES_OK)
		return r;
	if (rep.status != IMAP_OK)
		return imap_refused(im, "UID FETCH", &rep, RES_TEMP, cause);
	return RES_OK;
}

/*
 * Every message with UID >= lo: cb(uid, size, NULL, 0).  "lo:*" also
 * names the last message when lo is past it (RFC 3501 6.4.8); it is
 * dropped here.
 */
enum result
imap_list_sizes(struct imap *im, uint32_t lo, imap_list_cb cb, void *arg,
    char **cause)
{
	char		*cmd;
	enum result	 r;

	if (lo == 0)
		lo = 1;
	cmd = xprintf("UID FETCH %u:* (UID RFC822.SIZE)", lo);
	r = list_command(im, cmd, lo, cb, arg, cause);
	free(cmd);
	return r;
}

/* Every message: cb(uid, size, its Message-ID header field, length). */
enum result
imap_list_msgids(struct imap *im, imap_list_cb cb, void *arg, char **cause)
{
	return list_command(im, "UID FETCH 1:* (UID RFC822.SIZE "
	    "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", 1, cb, arg, cause);
}

/*
 * Hashing bodies as they stream in: each FETCH response's literal goes to
 * the current hash; when the response is complete, its UID says whose it
 * was (the UID may come before or after the literal).
 */
struct hash_ctx {
	struct uid_hash	*out;
	size_t		 n;
	struct hash	*h;
	uint64_t	 got;		/* literal bytes of this response */
	bool		 lit;		/* it had a literal */
};

static void
hash_sink(void *arg, const char *p, size_t n)
{
	struct hash_ctx	*hc = arg;

	hash_update_message(hc->h, p, n);
	hc->got += n;
	hc->lit = true;
}

/*
 * A FETCH response of a message being hashed: its literal went to
 * hash_sink, so the response holds "UID n BODY[] {n}" and no body bytes,
 * and cannot be matched by message text.
 */
static void
on_hash(struct imap *im, void *arg)
{
	struct hash_ctx	*hc = arg;
	const char	*p;
	uint64_t	 v;
	size_t		 n, i;
	char		 hex[65];

	if (!hc->lit)
		return;
	/* A response's literals are its own, FETCH or not: begin anew. */
	hash_final(hc->h, hex);
	hc->h = hash_new();
	if (strncmp(im->resp, "* ", 2) == 0 &&
	    strcasestr(im->resp, " FETCH (") != NULL &&
	    (p = strcasestr(im->resp, "UID ")) != NULL &&
	    (n = strspn(p + 4, "0123456789")) > 0 &&
	    imap_parse_number(p + 4, n, &v) &&
	    strcasestr(im->resp, "BODY[]") != NULL)
		for (i = 0; i < hc->n; i++)
			if (hc->out[i].uid == v) {
				memcpy(hc->out[i].hex, hex, sizeof hex);
				/* What was hashed is what counts. */
				hc->out[i].size = hc->got;
				hc->out[i].found = true;
			}
	hc->got = 0;
	hc->lit = false;
}

static int
cmp_uid32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* "1,5,7:9" for a sorted list of UIDs. */
static char *
uid_set(const uint32_t *uids, size_t n)
{
	char	*s = xstrdup(""), *t;
	size_t	 i, j;

	for (i = 0; i < n; i = j + 1) {
		for (j = i; j + 1 < n && uids[j + 1] == uids[j] + 1; j++)
			;
		if (j > i)
			t = xprintf("%s%s%u:%u", s, i > 0 ? "," : "", uids[i],
			    uids[j]);
		else
			t = xprintf("%s%s%u", s, i > 0 ? "," : "", uids[i]);
		free(s);
		s = t;
	}
	return s;
}

/*
 * The SHA-256 (hex, NUL counted as 0x80) and size of each message out[i].uid
 * as the server holds it, all in one UID FETCH, streamed; .found false for
 * a UID the mailbox no longer has.  One command for a whole set, so that a
 * link with a long round trip pays it once.
 */
enum result
imap_hash_uids(struct imap *im, struct uid_hash *out, size_t n, char **cause)
{
	struct hash_ctx	 hc;
	struct imap_reply rep;
	uint32_t	*uids;
	char		*cmd, *set, hex[65];
	size_t		 i, k = 0;
	enum result	 r;

	for (i = 0; i < n; i++)
		out[i].found = false;
	if (n == 0)
		return RES_OK;
	uids = xcalloc(n, sizeof *uids);
	for (i = 0; i < n; i++)
		uids[i] = out[i].uid;
	qsort(uids, n, sizeof *uids, cmp_uid32);
	for (i = 0; i < n; i++)		/* once each */
		if (k == 0 || uids[i] != uids[k - 1])
			uids[k++] = uids[i];
	set = uid_set(uids, k);
	free(uids);
	memset(&hc, 0, sizeof hc);
	hc.out = out;
	hc.n = n;
	hc.h = hash_new();
	im->lit_sink = hash_sink;
	im->lit_arg = &hc;
	cmd = xprintf("UID FETCH %s (UID BODY.PEEK[])", set);
	r = imap_command(im, cmd, on_hash, &hc, &rep, cause);
	free(cmd);
	free(set);
	im->lit_sink = NULL;
	im->lit_arg = NULL;
	hash_final(hc.h, hex);
	if (r != RES_OK)
		return r;
	if (rep.status != IMAP_OK)
		return imap_refused(im, "UID FETCH", &rep, RES_TEMP, cause);
	return RES_OK;
}

/*
 * Remove these copies (sorted UIDs) and no others: flag them \Deleted and,
 * with UIDPLUS, UID EXPUNGE exactly them (RFC 4315 2.1).  A plain EXPUNGE
 * or CLOSE would also take whatever the user flagged \Deleted and has not
 * expunged yet, so they are never sent; without UIDPLUS the copies stay
 * flagged \Deleted (*expunged false) for the user's client to expunge.
 */
enum result
imap_remove_uids(struct imap *im, const uint32_t *uids, size_t n,
    bool *expunged, char **cause)
{
	struct imap_reply rep;
	char		*set, *cmd;
	enum result	 r;

	*expunged = false;
	if (n == 0)
		return RES_OK;
	set = uid_set(uids, n);
	cmd = xprintf("UID STORE %s +FLAGS.SILENT (\\Deleted)", set);
	r = imap_command(im, cmd, NULL, NULL, &rep, cause);
	free(cmd);
	if (r == RES_OK && rep.status != IMAP_OK)
		r = imap_refused(im, "UID STORE", &rep, RES_TEMP, cause);
	if (r == RES_OK && im->caps.uidplus) {
		cmd = xprintf("UID EXPUNGE %s", set);
		r = imap_command(im, cmd, NULL, NULL, &rep, cause);
		free(cmd);
		if (r == RES_OK && rep.status != IMAP_OK)
			r = imap_refused(im, "UID EXPUNGE", &rep, RES_TEMP,
			    cause);
		*expunged = r == RES_OK;
	}
	free(set);
	return r;
}

static void
on_exists(void *arg, uint32_t uid, uint64_t size, const char *body,
    size_t len)
{
	(void)uid;
	(void)size;
	(void)body;
	(void)len;
	*(bool *)arg = true;
}

enum result
imap_uid_exists(struct imap *im, uint32_t uid, bool *yes, char **cause)
{
	char		*cmd;
	enum result	 r;

	*yes = false;
	/* "n" alone, not "n:*": a gone message must not name the last one. */
	cmd = xprintf("UID FETCH %u (UID RFC822.SIZE)", uid);
	r = list_command(im, cmd, uid, on_exists, yes, cause);
	free(cmd);
	return r;
}
