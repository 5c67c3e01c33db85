// link: bridge/net.c bridge/net_io.c bridge/imap.c bridge/imap_append.c bridge/imap_fetch.c bridge/imap_parse.c bridge/spool.c bridge/date.c bridge/hash.c bridge/throttle.c
// pkg: libcurl openssl
// max_len: 81920
/*
 * An IMAP session against a scripted server: imap.c, imap_append.c,
 * imap_fetch.c and net.c's reader run as in production, over a
 * conn_memory connection.  Input: byte 0 and the chunk sizes (fuzz.h;
 * byte 0's upper bits are flags), two flag bytes, two bytes (big-endian)
 * for the length of the login transcript, the transcript (greeting,
 * CAPABILITY, the login's tagged OK, as libcurl saw them), then the
 * server's bytes after login.
 *
 *	byte 0:	0x08 writes in chunks too; 0x10 a write budget (byte 2);
 *		0x20 mailbox "Archive" (NAMESPACE asked), 0x40 "Entwürfe"
 *		(modified UTF-7 on the wire), else INBOX; 0x80 a second
 *		batch of APPENDs on the wire before the first is read
 *	byte 1:	bits 0-1 and 2-3: messages in batch one and two, less
 *		one; 0x10 a 5000-byte message in batch one (LITERAL- takes
 *		4096 at most); 0x20 one with NUL bytes (literal8); 0x40 the
 *		finding and removing of settle.c afterwards; 0x80 imap_append_many
 *		for batch one
 *	byte 2:	the write budget b: b * b * 4 + 1 bytes, then the link fails
 *
 * The program: conn_memory (a first line that is no greeting must fail),
 * imap_open_conn (capabilities from the login's last line, else
 * CAPABILITY), imap_place (NAMESPACE), imap_status, imap_create if the
 * mailbox is missing, the APPENDs (MULTIAPPEND, pipelined LITERAL+ or
 * LITERAL-, synchronising literals with sync_pipelined: whatever the
 * capabilities say), then with 0x40: imap_select, imap_list_sizes,
 * imap_list_msgids, imap_hash_uids (the streaming literal sink),
 * imap_uid_exists, imap_remove_uids; imap_logout.  After a temporary
 * failure only imap_logout follows, as in a run.
 *
 * Invariants: result classes and printable, bounded causes; a capability
 * only if the server named it; the reply reader's ceilings and its stash
 * (only replies to batches on the wire, each tag once); what the client
 * sends: commands with rising tags, printable but for literals, every
 * literal exactly a message's bytes, a synchronising literal only after
 * the server's "+"; each APPEND outcome from a tagged reply to a command
 * that carried that message, and a stored UID one its APPENDUID named;
 * every FETCH result found in a response of the stream, framed here
 * independently; a streamed hash the SHA-256 (NUL as 0x80) of the literal
 * bytes of the FETCH response that named the UID; the UID STORE set
 * exactly the UIDs given.
 */
#include <openssl/evp.h>
#include <sanitizer/common_interface_defs.h>

#include <ctype.h>
#include <fcntl.h>
#include <strings.h>
#include <unistd.h>

#include "bridge.h"
#include "imap_int.h"
#include "fuzz.h"

#define LOGIN_MAX	16383		/* net.c's login_lines, less the NUL */
#define NMSG		6

int	LLVMFuzzerInitialize(int *, char ***);

/* The messages to APPEND: distinct sizes, so a size names one. */
static struct spool	 spools[NMSG];
static char		*bodies[NMSG];
static size_t		 sizes[NMSG];
static int		 devnull = -1, errfd = -1;

/* ---- the server's bytes, framed as imap_read frames them ---- */

struct fresp {
	size_t		 start, end;	/* in the stream */
	char		*full;		/* lines and literals, as im->resp */
	size_t		 fulllen;
	char		*text;		/* the same without the literals */
	size_t		 textlen;
	char		 hex[65];	/* of the literals, NUL as 0x80 */
	uint64_t	 litlen;
	bool		 lit;
};

struct frame {
	struct fresp	*r;
	size_t		 n;
};

static void
buf_add(char **b, size_t *n, const char *p, size_t k)
{
	*b = realloc(*b, *n + k + 1);
	memcpy(*b + *n, p, k);
	*n += k;
	(*b)[*n] = '\0';
}

static void
hash_hex_msg(EVP_MD_CTX *md, char *hex)
{
	unsigned char	 d[32];
	unsigned int	 dl = 0;
	int		 i;

	if (EVP_DigestFinal_ex(md, d, &dl) != 1 || dl != 32)
		abort();
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* Every complete response of the stream, in order. */
static void
frame_stream(const char *s, size_t n, struct frame *f)
{
	size_t		 pos = 0, len, i;
	const char	*nl, *line;
	uint64_t	 lit;

	memset(f, 0, sizeof *f);
	while (pos < n) {
		struct fresp	 r;
		EVP_MD_CTX	*md = EVP_MD_CTX_new();
		bool		 complete = false;

		memset(&r, 0, sizeof r);
		r.start = pos;
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		for (;;) {
			if ((nl = memchr(s + pos, '\n', n - pos)) == NULL)
				break;
			len = (size_t)(nl - (s + pos));
			if (len > IMAP_LINE_MAX)
				break;
			if (len > 0 && s[pos + len - 1] == '\r')
				len--;
			line = s + pos;
			buf_add(&r.full, &r.fulllen, line, len);
			buf_add(&r.text, &r.textlen, line, len);
			pos = (size_t)(nl - s) + 1;
			/* A literal: "{digits}" ends the line (line_literal). */
			i = 0;
			if (len >= 3 && line[len - 1] == '}')
				for (i = len - 1; i > 0 && line[i - 1] != '{'; i--)
					;
			if (i == 0 || !imap_parse_number(line + i, len - 1 - i,
			    &lit) || lit > IMAP_RESP_MAX) {
				complete = true;
				break;
			}
			buf_add(&r.full, &r.fulllen, "\r\n", 2);
			buf_add(&r.text, &r.textlen, "\r\n", 2);
			if (lit > n - pos)
				break;
			buf_add(&r.full, &r.fulllen, s + pos, (size_t)lit);
			for (i = 0; i < lit; i++) {
				unsigned char c = s[pos + i] == '\0' ? 0x80 :
				    (unsigned char)s[pos + i];

				EVP_DigestUpdate(md, &c, 1);
			}
			r.litlen += lit;
			r.lit = true;
			pos += (size_t)lit;
		}
		hash_hex_msg(md, r.hex);
		EVP_MD_CTX_free(md);
		if (!complete || r.fulllen > IMAP_RESP_MAX) {
			free(r.full);
			free(r.text);
			break;
		}
		r.end = pos;
		f->r = realloc(f->r, (f->n + 1) * sizeof *f->r);
		f->r[f->n++] = r;
	}
}

static void
frame_free(struct frame *f)
{
	size_t	 i;

	for (i = 0; i < f->n; i++) {
		free(f->r[i].full);
		free(f->r[i].text);
	}
	free(f->r);
}

/*
 * A tagged reply to pT in the stream that says st, or NULL.  The tag is
 * read as a number, as imap_resp_tag does ("p01" answers p1).
 */
static const struct fresp *
tagged(const struct frame *f, unsigned int tag, enum imap_status st,
    struct imap_reply *rep)
{
	const char	*s;
	size_t		 i, k;

	for (i = 0; i < f->n; i++) {
		s = f->r[i].full;
		if (f->r[i].fulllen < 3)
			continue;
		k = strspn(s + 1, "0123456789");
		if (s[0] == 'p' && k > 0 && k < 11 && s[1 + k] == ' ' &&
		    strtoull(s + 1, NULL, 10) == tag &&
		    imap_parse_status(s + 2 + k, rep) && rep->status == st)
			return &f->r[i];
	}
	return NULL;
}

/* ---- what the client sent ---- */

struct lit {
	size_t		 off, len;
	bool		 sync, complete;
	int		 msg;		/* the message it carries, or -1 */
};

struct cmd {
	unsigned int	 tag;
	char		 verb[24];
	size_t		 off, end;	/* in out */
	struct lit	 lits[8];
	size_t		 nlits;
	size_t		 announced[8];	/* sizes of the {n} in it */
	size_t		 nannounced;
};

static int
msg_of_size(size_t n)
{
	int	 i;

	for (i = 0; i < NMSG; i++)
		if (sizes[i] == n)
			return i;
	return -1;
}

/*
 * The commands in out.  One cut off by the budget counts if its first line
 * went out; a literal cut off is not complete.
 */
static size_t
parse_sent(const char *out, size_t len, struct cmd **cp)
{
	struct cmd	*cmds = NULL, c;
	size_t		 n = 0, pos = 0, e, k;
	const char	*crlf, *lb;
	uint64_t	 v;
	bool		 cut = false, first;

	while (pos < len && !cut) {
		memset(&c, 0, sizeof c);
		c.off = pos;
		k = strspn(out + pos + 1, "0123456789");
		if (pos + 1 + k >= len)
			break;
		FUZZ_CHECK(out[pos] == 'p' && k > 0 && k < 11 &&
		    out[pos + 1 + k] == ' ', "a command without a tag at %zu: "
		    "%.40s", pos, out + pos);
		c.tag = (unsigned int)strtoul(out + pos + 1, NULL, 10);
		e = strcspn(out + pos + 2 + k, " \r");
		snprintf(c.verb, sizeof c.verb, "%.*s", (int)e, out + pos + 2 + k);
		for (first = true;; first = false) {
			if ((crlf = memmem(out + pos, len - pos, "\r\n", 2)) ==
			    NULL) {
				cut = true;
				break;
			}
			FUZZ_CHECK(fuzz_printable(out + pos,
			    (size_t)(crlf - (out + pos))), "unprintable command "
			    "text: %.*s", (int)(crlf - (out + pos)), out + pos);
			e = (size_t)(crlf - out);
			if (e == pos || out[e - 1] != '}') {
				pos = e + 2;
				break;
			}
			pos = e + 2;
			for (lb = out + e - 1; lb > out && *lb != '{'; lb--)
				;
			FUZZ_CHECK(*lb == '{', "a } without {");
			if (!imap_parse_number(lb + 1, (size_t)(out + e - 1 -
			    (lb + 1)) - (out[e - 2] == '+'), &v))
				FUZZ_CHECK(0, "a bad literal size");
			if (c.nannounced < 8)
				c.announced[c.nannounced++] = (size_t)v;
			if (c.nlits == 8)
				break;
			c.lits[c.nlits].off = pos;
			c.lits[c.nlits].sync = out[e - 2] != '+';
			c.lits[c.nlits].msg = msg_of_size((size_t)v);
			/*
			 * A synchronising literal the server refused before
			 * its "+" is not sent: the next command follows.
			 */
			if (c.lits[c.nlits].sync && (c.lits[c.nlits].msg < 0 ||
			    pos == len || memcmp(out + pos,
			    bodies[c.lits[c.nlits].msg], len - pos < v ?
			    len - pos : v) != 0))
				break;
			c.lits[c.nlits].len = len - pos < v ? len - pos : v;
			c.lits[c.nlits].complete = len - pos >= v;
			pos += c.lits[c.nlits++].len;
			if (pos == len && !c.lits[c.nlits - 1].complete) {
				cut = true;
				break;
			}
		}
		(void)first;
		c.end = pos;
		if (c.nannounced > 0 || !cut) {
			cmds = realloc(cmds, (n + 1) * sizeof *cmds);
			cmds[n++] = c;
		}
	}
	*cp = cmds;
	return n;
}

/* How many server bytes the client had when byte off went out. */
static size_t
handed_at(const struct fuzz_wire *w, size_t off)
{
	size_t	 i, h = 0;

	for (i = 0; i + 1 < w->nat && w->at[i] <= off; i += 2)
		h = w->at[i + 1];
	return h;
}

static void
check_sent(const struct fuzz_wire *w, const struct frame *f,
    struct cmd *cmds, size_t n)
{
	size_t		 i, j, k, plus, nsync = 0;
	unsigned int	 last = 0;

	for (i = 0; i < n; i++) {
		FUZZ_CHECK(cmds[i].tag > last, "tag p%u after p%u", cmds[i].tag,
		    last);
		last = cmds[i].tag;
		for (j = 0; j < cmds[i].nlits; j++) {
			struct lit *l = &cmds[i].lits[j];

			FUZZ_CHECK(l->msg >= 0 && memcmp(w->out + l->off,
			    bodies[l->msg], l->len) == 0, "p%u: literal %zu is "
			    "no message's bytes", cmds[i].tag, j);
			if (!l->sync)
				continue;
			/* As many "+" handed over as literals waited for. */
			nsync++;
			for (k = 0, plus = 0; k < f->n && f->r[k].end <=
			    handed_at(w, l->off); k++)
				plus += f->r[k].full[0] == '+';
			FUZZ_CHECK(plus >= nsync, "p%u: synchronising literal "
			    "%zu sent after %zu \"+\"", cmds[i].tag, nsync,
			    plus);
		}
	}
}

/* ---- checks on the session ---- */

static void
check_cause(enum result r, char **cause, const char *what)
{
	if (getenv("FUZZ_SESSION_VERBOSE") != NULL)
		fprintf(stderr, "%s: %d (%s)\n", what, (int)r,
		    *cause != NULL ? *cause : "ok");
	FUZZ_CHECK(r == RES_OK || r == RES_TEMP || r == RES_CONFIG,
	    "%s: result %d", what, (int)r);
	if (r == RES_OK) {
		FUZZ_CHECK(*cause == NULL, "%s: OK with a cause (%s)", what,
		    *cause);
		return;
	}
	FUZZ_CHECK(*cause != NULL && (*cause)[0] != '\0' &&
	    strlen(*cause) < 1024 && fuzz_printable(*cause, strlen(*cause)),
	    "%s: cause \"%s\"", what, *cause != NULL ? *cause : "NULL");
	free(*cause);
	*cause = NULL;
}

static const struct fuzz_wire *verbose_w;

/* The reader's ceilings; the stash holds one reply per tag on the wire. */
static void
check_imap(const struct imap *im)
{
	size_t	 i, j, pending = 0;

	if (verbose_w != NULL)
		fuzz_dump("sent so far", verbose_w->out, verbose_w->outlen);

	FUZZ_CHECK(im->npend <= IMAP_PEND_MAX, "%zu batches", im->npend);
	FUZZ_CHECK(im->respcap <= IMAP_RESP_MAX && (im->resp == NULL ||
	    im->resplen < im->respcap), "resp %zu of %zu", im->resplen,
	    im->respcap);
	/* After a failure the session only ends: what is set aside then
	 * is freed by imap_logout. */
	if (im->dead)
		return;
	for (i = 0; i < im->npend; i++)
		pending += im->pend[i].hi - im->pend[i].lo + 1;
	FUZZ_CHECK(im->nstash <= pending, "%zu replies stashed for %zu tags "
	    "on the wire (the first p%u)", im->nstash, pending,
	    im->nstash > 0 ? im->stash[0].tag : 0);
	for (i = 0; i < im->nstash; i++) {
		for (j = 0; j < im->npend; j++)
			if (im->stash[i].tag >= im->pend[j].lo &&
			    im->stash[i].tag <= im->pend[j].hi)
				break;
		FUZZ_CHECK(j < im->npend, "stashed p%u is on the wire no more",
		    im->stash[i].tag);
		for (j = i + 1; j < im->nstash; j++)
			FUZZ_CHECK(im->stash[i].tag != im->stash[j].tag,
			    "p%u stashed twice", im->stash[i].tag);
	}
}

/* A word (upper case; found in any case) in the login lines or stream. */
static bool
named(const char *lines, const char *s, size_t n, const char *word)
{
	char	*t;
	size_t	 i;
	bool	 ok;

	if (strcasestr(lines, word) != NULL)
		return true;
	t = fuzz_dup(s, n);
	for (i = 0; i < n; i++)
		t[i] = (char)toupper((unsigned char)t[i]);
	ok = n > 0 && memmem(t, n, word, strlen(word)) != NULL;
	free(t);
	return ok;
}

static void
check_caps(const struct imap_caps *c, const char *lines, const char *s,
    size_t n)
{
	FUZZ_CHECK(!c->literal_plus || named(lines, s, n, "LITERAL+"), "L+");
	FUZZ_CHECK(!c->literal_minus || named(lines, s, n, "LITERAL-"), "L-");
	FUZZ_CHECK(!c->multiappend || named(lines, s, n, "MULTIAPPEND"), "MA");
	FUZZ_CHECK(!c->uidplus || named(lines, s, n, "UIDPLUS"), "UIDPLUS");
	FUZZ_CHECK(!c->binary || named(lines, s, n, "BINARY"), "BINARY");
	FUZZ_CHECK(!c->namespace || named(lines, s, n, "NAMESPACE"), "NS");
	FUZZ_CHECK(c->appendlimit < UINT32_MAX && (c->appendlimit == 0 ||
	    named(lines, s, n, "APPENDLIMIT=")), "APPENDLIMIT=%llu",
	    (unsigned long long)c->appendlimit);
}

/* A number of a STATUS or SELECT: 0 or one the stream holds. */
static void
check_number(uint32_t v, const char *s, size_t n, const char *what)
{
	char	 t[16];

	if (v == 0)
		return;
	snprintf(t, sizeof t, "%u", v);
	FUZZ_CHECK(memmem(s, n, t, strlen(t)) != NULL, "%s %u", what, v);
}

/* Is uid in the uid-set of "uidvalidity set" (an APPENDUID's argument)? */
static bool
appenduid_has(const char *arg, size_t n, uint32_t v, uint32_t uid)
{
	char	*a = fuzz_str(arg, n), *p, *e;
	unsigned long long x, y, t;
	bool	 found = false;

	x = strtoull(a, &p, 10);
	if (x != v || *p != ' ') {
		free(a);
		return false;
	}
	for (p++; *p != '\0' && !found; p = *e == ',' ? e + 1 : e) {
		x = strtoull(p, &e, 10);
		y = x;
		if (*e == ':')
			y = strtoull(e + 1, &e, 10);
		if (x > y) {
			t = x;
			x = y;
			y = t;
		}
		found = uid >= x && uid <= y;
		if (e == p || (*e != ',' && *e != '\0'))
			break;
	}
	free(a);
	return found;
}

/* Each outcome from a tagged reply to a command that carried the item. */
static const char *cmds_out;
static size_t cmds_outlen;

static void
check_outcomes(const struct frame *f, const struct cmd *cmds, size_t n,
    const struct append_item *it, size_t nit)
{
	struct imap_reply rep;
	const struct fresp *t;
	size_t		 i, j, k;
	bool		 ok;
	int		 m;

	if (getenv("FUZZ_SESSION_VERBOSE") != NULL)
		fuzz_dump("sent", cmds_out, cmds_outlen);
	if (getenv("FUZZ_SESSION_VERBOSE") != NULL)
		for (j = 0; j < n; j++)
			fprintf(stderr, "sent p%u %s, %zu literals, %zu "
			    "announced\n", cmds[j].tag, cmds[j].verb,
			    cmds[j].nlits, cmds[j].nannounced);
	for (i = 0; i < nit; i++) {
		const struct append_result *ar = &it[i].res;

		m = msg_of_size(it[i].sp->size);
		ok = false;
		for (j = 0; j < n && !ok; j++) {
			if (strcmp(cmds[j].verb, "APPEND") != 0)
				continue;
			for (k = 0; k < cmds[j].nannounced; k++)
				if (cmds[j].announced[k] == sizes[m])
					break;
			if (k == cmds[j].nannounced)
				continue;
			switch (ar->outcome) {
			case APPEND_STORED:
				/* Stored: its bytes went out, and the server said
				 * OK to the command that carried them. */
				for (k = 0; k < cmds[j].nlits; k++)
					if (cmds[j].lits[k].msg == m &&
					    cmds[j].lits[k].complete)
						break;
				if (k == cmds[j].nlits)
					break;
				if ((t = tagged(f, cmds[j].tag, IMAP_OK, &rep)) ==
				    NULL)
					break;
				ok = ar->uid == 0 || (strcmp(rep.code,
				    "APPENDUID") == 0 && appenduid_has(
				    rep.code_arg, rep.code_arglen,
				    ar->uidvalidity, ar->uid));
				break;
			default:
				ok = tagged(f, cmds[j].tag, IMAP_NO, &rep) != NULL ||
				    tagged(f, cmds[j].tag, IMAP_BAD, &rep) != NULL;
				break;
			}
		}
		FUZZ_CHECK(ok, "item %zu (%zu bytes): outcome %d, uid %u/%u, "
		    "from no reply to its APPEND", i, sizes[m],
		    (int)ar->outcome, ar->uidvalidity, ar->uid);
		FUZZ_CHECK((ar->outcome == APPEND_STORED) == (it[i].why ==
		    NULL) && (it[i].why == NULL || fuzz_printable(it[i].why,
		    strlen(it[i].why))), "item %zu: why \"%s\"", i,
		    it[i].why != NULL ? it[i].why : "NULL");
	}
}

/* ---- FETCH results against the framed stream ---- */

struct listed {
	const struct frame *f;
	uint32_t	 lo;
	uint32_t	 uids[16];
	size_t		 nuids;
	bool		 bodies;
};

static void
on_listed(void *arg, uint32_t uid, uint64_t size, const char *body,
    size_t len)
{
	struct listed	*l = arg;
	struct imap_fetch fe;
	size_t		 i;
	bool		 ok = false;

	FUZZ_CHECK(uid != 0 && uid >= l->lo, "uid %u below %u", uid, l->lo);
	for (i = 0; i < l->f->n && !ok; i++)
		ok = imap_parse_fetch(l->f->r[i].full, l->f->r[i].fulllen, &fe) &&
		    fe.uid == uid && fe.have_size && fe.size == size &&
		    (body == NULL ? !l->bodies || !fe.have_body :
		    fe.have_body && fe.bodylen == len &&
		    memcmp(fe.body, body, len) == 0);
	FUZZ_CHECK(ok, "uid %u size %llu: no such FETCH response", uid,
	    (unsigned long long)size);
	if (l->nuids < 16)
		l->uids[l->nuids++] = uid;
}

/* Does the response name this UID?  By value: "UID 012" names 12 (the
 * parser is lenient about leading zeros; found by a 30-minute run). */
static bool
names_uid(const struct fresp *r, uint32_t uid)
{
	const char	*p, *d;
	uint64_t	 v;

	for (p = r->text; (p = strcasestr(p, "UID ")) != NULL; p++) {
		for (d = p + 4, v = 0; isdigit((unsigned char)*d) &&
		    v <= UINT32_MAX; d++)
			v = v * 10 + (uint64_t)(*d - '0');
		if (d > p + 4 && v == uid)
			return true;
	}
	return false;
}

static void
check_hashes(const struct frame *f, const struct uid_hash *uh, size_t n)
{
	size_t	 i, j;
	bool	 ok;

	for (i = 0; i < n; i++) {
		if (!uh[i].found)
			continue;
		for (j = 0, ok = false; j < f->n && !ok; j++)
			ok = f->r[j].lit && f->r[j].litlen == uh[i].size &&
			    strcmp(f->r[j].hex, uh[i].hex) == 0 &&
			    strncmp(f->r[j].text, "* ", 2) == 0 &&
			    strcasestr(f->r[j].text, " FETCH (") != NULL &&
			    names_uid(&f->r[j], uh[i].uid);
		FUZZ_CHECK(ok, "uid %u: hash %s of %llu bytes is no FETCH "
		    "response's literal", uh[i].uid, uh[i].hex,
		    (unsigned long long)uh[i].size);
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The UID STORE sent names exactly these UIDs. */
static void
check_store(const struct cmd *cmds, size_t n, const char *out,
    const uint32_t *uids, size_t nu)
{
	uint32_t	 got[64];
	char		*set;
	size_t		 i, k;

	for (i = 0; i < n; i++) {
		const char *l = out + cmds[i].off, *s;

		if (strcmp(cmds[i].verb, "UID") != 0 ||
		    (s = strstr(l, " UID STORE ")) == NULL || s > out +
		    cmds[i].end)
			continue;
		s += 11;
		set = fuzz_str(s, strcspn(s, " "));
		k = imap_parse_uidset(set, got, 64);
		FUZZ_CHECK(k == nu && memcmp(got, uids, nu * sizeof *uids) == 0,
		    "UID STORE %s for %zu UIDs", set, nu);
		free(set);
	}
}

/* ---- the program ---- */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char	*cause = NULL, *m;
	int	 i;

	(void)argc;
	(void)argv;
	for (i = 0; i < NMSG; i++) {
		if (i == 4) {
			/* Over LITERAL-'s 4096 bytes. */
			m = xprintf("Subject: big\r\n\r\n%s\r\n", "");
			m = realloc(m, 5000 + 1);
			memset(m + strlen(m), 'b', 5000 - strlen(m));
			memcpy(m + 4998, "\r\n", 2);
			m[5000] = '\0';
		} else if (i == 5)
			m = xstrdup("Subject: nul\r\n\r\nbin?ary\r\n");
		else
			m = xprintf("From: Anna <anna@example.org>\r\n"
			    "Subject: message %d\r\nMessage-ID: <%d@example."
			    "org>\r\n\r\n%*s\r\n", i, i, 40 * (i + 1), "x");
		sizes[i] = strlen(m);
		if (i == 5)
			m[strlen("Subject: nul\r\n\r\nbin")] = '\0';
		bodies[i] = m;
		spool_init(&spools[i], 1 << 20, NULL);
		if (spool_write(&spools[i], m, sizes[i], &cause) != RES_OK)
			abort();
	}
	/* imap_create's log_info line goes to /dev/null (below), sanitizer
	 * reports to stderr as always. */
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	errfd = dup(2);
	__sanitizer_set_report_fd((void *)(intptr_t)errfd);
	return 0;
}

static void
item_set(struct append_item *it, int m, bool dated)
{
	memset(it, 0, sizeof *it);
	it->sp = &spools[m];
	it->date = dated ? 1764063630 : -1;
	it->tz = 60;
	it->binary = m == 5;
}

/* The finding and removing that settle.c and adopt.c do. */
static enum result
run_settle(struct imap *im, const char *mailbox, const struct frame *f,
    const struct fuzz_wire *w, const char *stream, size_t slen,
    char **cause)
{
	struct imap_mbox mb;
	struct listed	 l;
	struct uid_hash	 uh[4];
	uint32_t	 uids[18];
	size_t		 nu, i, k;
	bool		 yes, expunged;
	enum result	 r;
	struct cmd	*cmds;
	size_t		 ncmds;

	r = imap_select(im, mailbox, &mb, cause);
	check_cause(r, cause, "imap_select");
	check_imap(im);
	if (r != RES_OK)
		return r;
	FUZZ_CHECK(mb.exists, "selected, not there");
	check_number(mb.uidnext, stream, slen, "UIDNEXT");
	check_number(mb.uidvalidity, stream, slen, "UIDVALIDITY");
	check_number(mb.messages, stream, slen, "EXISTS");
	memset(&l, 0, sizeof l);
	l.f = f;
	l.lo = mb.uidnext > 3 ? mb.uidnext - 3 : 1;
	r = imap_list_sizes(im, l.lo, on_listed, &l, cause);
	check_cause(r, cause, "imap_list_sizes");
	check_imap(im);
	if (r != RES_OK)
		return r;
	l.lo = 1;
	l.bodies = true;
	r = imap_list_msgids(im, on_listed, &l, cause);
	check_cause(r, cause, "imap_list_msgids");
	check_imap(im);
	if (r != RES_OK)
		return r;
	/* The UIDs listed (or two made up), twice one of them. */
	memset(uh, 0, sizeof uh);
	for (i = 0; i < 4; i++)
		uh[i].uid = i < l.nuids ? l.uids[i] : (uint32_t)(i + 1);
	uh[3].uid = uh[0].uid;
	r = imap_hash_uids(im, uh, 4, cause);
	check_cause(r, cause, "imap_hash_uids");
	check_imap(im);
	if (r != RES_OK)
		return r;
	FUZZ_CHECK(im->lit_sink == NULL, "the literal sink stays set");
	check_hashes(f, uh, 4);
	r = imap_uid_exists(im, uh[0].uid, &yes, cause);
	check_cause(r, cause, "imap_uid_exists");
	check_imap(im);
	if (r != RES_OK)
		return r;
	/* Sorted, once each, as settle.c passes them. */
	for (i = 0, nu = 0; i < l.nuids; i++)
		uids[nu++] = l.uids[i];
	uids[nu++] = 7;
	uids[nu++] = 8;
	qsort(uids, nu, sizeof *uids, cmp_u32);
	for (i = 0, k = 0; i < nu; i++)
		if (k == 0 || uids[i] != uids[k - 1])
			uids[k++] = uids[i];
	r = imap_remove_uids(im, uids, k, &expunged, cause);
	check_cause(r, cause, "imap_remove_uids");
	check_imap(im);
	FUZZ_CHECK(!expunged || (r == RES_OK && im->caps.uidplus),
	    "expunged without UIDPLUS");
	ncmds = parse_sent(w->out, w->outlen, &cmds);
	if (r == RES_OK)
		check_store(cmds, ncmds, w->out, uids, k);
	free(cmds);
	return r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const char *const boxes[] = { "INBOX", "Archive",
		"Entw\xc3\xbcrfe", "INBOX" };
	struct fuzz_wire w;
	struct conn_memory_io io = { fuzz_wire_step, fuzz_wire_sent, &w };
	struct append_item items[8];
	struct append_batch *ab[2] = { NULL, NULL };
	struct imap_mbox mb;
	struct frame	 f;
	struct conn	*c;
	struct imap	*im;
	struct cmd	*cmds;
	unsigned	 ctl, f1, f2;
	char		*cause = NULL, *stream, *lines, *placed = NULL;
	char		*wire = NULL;		/* placed, quoted for APPEND */
	const char	*why;
	const char	*login, *mailbox;
	size_t		 loginlen, slen, na, nb, i, ncmds;
	bool		 two, greets;
	enum result	 r;

	memset(&w, 0, sizeof w);
	ctl = fuzz_chunks_init(&w.rd, &data, &len);
	if (len < 4)
		return 0;
	w.wr = w.rd;
	w.wr_chunked = (ctl & 0x08) != 0;
	f1 = data[0];
	f2 = data[1];
	loginlen = (size_t)data[2] << 8 | data[3];
	data += 4;
	len -= 4;
	if (loginlen > len)
		loginlen = len;
	login = (const char *)data;
	slen = len - loginlen;
	stream = fuzz_dup(data + loginlen, slen);
	w.inlen = slen;
	if (getenv("FUZZ_SESSION_VERBOSE") != NULL)
		verbose_w = &w;
	w.budget = ctl & 0x10 ? (size_t)f2 * f2 * 4 + 1 : SIZE_MAX;
	mailbox = boxes[(ctl >> 5) & 3];
	two = (ctl & 0x80) != 0;

	r = conn_memory("imap", login, loginlen, stream, slen, &io, &c,
	    &cause);
	greets = loginlen == 0 || (loginlen >= 4 && strncasecmp(login,
	    "* OK", 4) == 0) || (loginlen >= 9 && strncasecmp(login,
	    "* PREAUTH", 9) == 0) || (loginlen >= 5 && strncasecmp(login,
	    "* BYE", 5) == 0);
	FUZZ_CHECK((r == RES_OK) == greets, "greeting: %d", (int)r);
	check_cause(r, &cause, "conn_memory");
	if (r != RES_OK) {
		free(stream);
		return 0;
	}
	lines = fuzz_str(login, loginlen < LOGIN_MAX ? loginlen : LOGIN_MAX);
	FUZZ_CHECK(strcmp(conn_login_lines(c), lines) == 0, "login lines");
	frame_stream(stream, slen, &f);

	r = imap_open_conn(c, "fuzz", "memory", &im, &cause);
	check_cause(r, &cause, "imap_open_conn");
	if (r != RES_OK) {
		FUZZ_CHECK(im == NULL, "a failed open gave a session");
		goto sent;
	}
	check_imap(im);
	check_caps(imap_caps(im), lines, stream, slen);

	r = imap_place(im, mailbox, &placed, &cause);
	check_cause(r, &cause, "imap_place");
	check_imap(im);
	if (r != RES_OK)
		goto logout;
	FUZZ_CHECK(strcmp(placed, mailbox) == 0 || (strcmp(mailbox, "INBOX") !=
	    0 && strlen(placed) > strlen(mailbox) && strlen(placed) <
	    strlen(mailbox) + 128 && strcmp(placed + strlen(placed) -
	    strlen(mailbox), mailbox) == 0 && imap_caps(im)->namespace),
	    "placed \"%s\" for %s", placed, mailbox);

	r = imap_status(im, placed, &mb, &cause);
	check_cause(r, &cause, "imap_status");
	check_imap(im);
	if (r != RES_OK)
		goto logout;
	check_number(mb.uidnext, stream, slen, "UIDNEXT");
	check_number(mb.uidvalidity, stream, slen, "UIDVALIDITY");
	check_number(mb.messages, stream, slen, "MESSAGES");
	if (!mb.exists) {
		/* Its log_info line would flood the fuzzer's log. */
		fflush(stderr);
		dup2(devnull, 2);
		r = imap_create(im, placed, &cause);
		dup2(errfd, 2);
		check_cause(r, &cause, "imap_create");
		check_imap(im);
		if (r != RES_OK)
			goto logout;
	}

	/* The APPENDs: one batch, or two on the wire at once, into the
	 * mailbox quoted once as the run's legs do (session.c). */
	if ((wire = imap_quote_mailbox(placed, &why)) == NULL)
		goto logout;
	na = (f1 & 3) + 1;
	nb = two ? ((f1 >> 2) & 3) + 1 : 0;
	for (i = 0; i < na + nb; i++)
		item_set(&items[i], (int)(i % 4), i != 1);
	if (f1 & 0x10)
		item_set(&items[0], 4, true);
	if (f1 & 0x20)
		item_set(&items[na - 1], 5, true);
	if ((f1 & 0x80) && !two) {
		r = imap_append_many(im, wire, "\\Seen", items, na, &cause);
		check_cause(r, &cause, "imap_append_many");
	} else {
		r = imap_append_send(im, wire, "\\Seen", items, na, &ab[0],
		    &cause);
		check_cause(r, &cause, "imap_append_send 1");
		check_imap(im);
		if (r == RES_OK && two) {
			r = imap_append_send(im, wire, "", items + na, nb,
			    &ab[1], &cause);
			check_cause(r, &cause, "imap_append_send 2");
			check_imap(im);
		}
		if (r == RES_OK) {
			r = imap_append_recv(im, ab[0], &cause);
			ab[0] = NULL;
			check_cause(r, &cause, "imap_append_recv 1");
			check_imap(im);
		}
		if (r == RES_OK && two) {
			r = imap_append_recv(im, ab[1], &cause);
			ab[1] = NULL;
			check_cause(r, &cause, "imap_append_recv 2");
			check_imap(im);
		}
		imap_append_abandon(ab[0]);
		imap_append_abandon(ab[1]);
	}
	if (r == RES_OK) {
		ncmds = parse_sent(w.out, w.outlen, &cmds);
		cmds_out = w.out;
		cmds_outlen = w.outlen;
		check_outcomes(&f, cmds, ncmds, items, na + nb);
		free(cmds);
	}
	for (i = 0; i < na + nb; i++)
		free(items[i].why);
	if (r != RES_OK || !(f1 & 0x40))
		goto logout;
	(void)run_settle(im, placed, &f, &w, stream, slen, &cause);

logout:
	imap_logout(im);
sent:
	ncmds = parse_sent(w.out, w.outlen, &cmds);
	check_sent(&w, &f, cmds, ncmds);
	free(cmds);
	frame_free(&f);
	free(placed);
	free(wire);
	free(lines);
	free(stream);
	free(w.out);
	free(w.at);
	return 0;
}
