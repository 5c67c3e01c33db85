// link: bridge/net.c bridge/net_io.c bridge/pop3.c bridge/pop3_parse.c bridge/pace.c bridge/hash.c bridge/imap_parse.c bridge/throttle.c
// pkg: libcurl openssl
// max_len: 81920
/*
 * A POP3 session against a scripted server: pop3.c and net.c's reader run
 * as in production, over a conn_memory connection.  Input: byte 0 and the
 * chunk sizes (fuzz.h; byte 0's upper bits are flags, below), one more
 * flag byte, two bytes (big-endian) for the length of the login
 * transcript, the transcript (what libcurl saw: greeting, CAPA), then the
 * server's bytes after login.
 *
 *	byte 0:	0x08 writes in chunks too; 0x10 RETRs and DELEs pipelined
 *		(when CAPA says PIPELINING); 0x20 DELE each message read;
 *		0x40 RETR with the size unknown (0); 0x80 a write budget
 *	byte 1:	low 4 bits: messages to RETR (at most); high 4 bits: the
 *		write budget b, b * b * 3 + 1 bytes: then the link fails
 *
 * The program: conn_memory (a first line that is no greeting must fail),
 * pop3_open_conn (CAPA among the login lines; UTF8 if offered), pop3_scan
 * (STAT, LIST, UIDL, pipelined with PIPELINING; TOP and RETR stand-ins
 * without UIDL), RETR of the first messages with the body reader, DELE,
 * pop3_headers (TOP n 0 of as many, the last first, in a window of 64
 * with PIPELINING: migrate --since), QUIT.  A reference client written here walks the same bytes step by
 * step, and each step must agree with it: the result class, the listing
 * (count, sizes, UIDLs or stand-in ids), each body byte for byte, whether
 * the link is dead, and at the end every byte the client sent.  Every
 * cause is printable ASCII and bounded.  STAT counts above 65536 are not
 * scanned (below).
 */
#include <openssl/evp.h>

#include "bridge.h"
#include "fuzz.h"

#define LINE_MAX_POP3	4096		/* pop3.c's POP3_LINE_MAX */
#define LOGIN_MAX	16383		/* net.c's login_lines, less the NUL */
/*
 * pop3_scan allocates the listing for what STAT claims, up to its cap of
 * ten million messages (about 900 MB).  An input cannot list more than a
 * few thousand, so such a scan can only fail at LIST; above this count it
 * is skipped to keep the fuzzer fast and small.
 */
#define COUNT_SKIP	65536

enum rr { RR_OK, RR_ERR, RR_BAD, RR_EOF };

/* The reference client: where it is in the server's bytes, what it sent. */
struct ref {
	const char	*s;
	size_t		 n, pos;
	bool		 dead;		/* a read ran out or a write failed */
	bool		 lost;		/* the position depends on chunking */
	char		*cmds;		/* what the client must have sent */
	size_t		 cmdlen, cmdcap, budget;
	struct pop3_caps caps;
	char		 line[LINE_MAX_POP3 + 1];
	size_t		 linelen;	/* NUL bytes in it count */
};

static enum result
rr_result(enum rr x)
{
	return x == RR_OK ? RES_OK : x == RR_ERR ? RES_MSG : RES_TEMP;
}

/* A line as conn_getline reads it, into r->line (CR cut, NUL after). */
static enum rr
ref_line(struct ref *r)
{
	const char	*p = r->s + r->pos, *nl;
	size_t		 n;

	if ((nl = memchr(p, '\n', r->n - r->pos)) == NULL &&
	    r->n - r->pos <= LINE_MAX_POP3) {
		r->pos = r->n;		/* the connection ends first */
		r->dead = true;
		return RR_EOF;
	}
	n = nl != NULL ? (size_t)(nl - p) : r->n - r->pos;
	if (n > LINE_MAX_POP3) {
		/* Too long: conn_getline stops when it has seen more than
		 * the bound, consuming the line only if its end came in the
		 * same read. */
		r->lost = true;
		return RR_BAD;
	}
	r->pos += n + 1;
	memcpy(r->line, p, n);
	if (n > 0 && r->line[n - 1] == '\r')
		n--;
	r->line[n] = '\0';
	r->linelen = n;
	return RR_OK;
}

static enum rr
ref_status(struct ref *r)
{
	enum rr	 x;

	if ((x = ref_line(r)) != RR_OK)
		return x;
	if (strncmp(r->line, "+OK", 3) == 0 && (r->line[3] == '\0' ||
	    r->line[3] == ' '))
		return RR_OK;
	return strncmp(r->line, "-ERR", 4) == 0 ? RR_ERR : RR_BAD;
}

/* A command; false if the write budget ends inside it (the link fails). */
static bool
ref_send(struct ref *r, const char *cmd)
{
	size_t	 n = strlen(cmd) + 2, take = n;
	bool	 ok = true;

	if (r->cmdlen + n > r->budget) {
		take = r->budget - r->cmdlen;
		ok = false;
		r->dead = true;
	}
	if (r->cmdlen + n + 1 > r->cmdcap) {
		r->cmdcap = (r->cmdlen + n + 1) * 2;
		r->cmds = realloc(r->cmds, r->cmdcap);
	}
	memcpy(r->cmds + r->cmdlen, cmd, take < n - 2 ? take : n - 2);
	if (take > n - 2)
		memcpy(r->cmds + r->cmdlen + n - 2, "\r\n", take - (n - 2));
	r->cmdlen += take;
	r->cmds[r->cmdlen] = '\0';
	return ok;
}

/*
 * A dot-stuffed body at pos, decoded as dot_decode does (fuzz_pop3 holds
 * dot_decode to the same rules): ".CRLF" or ".LF" at a line start ends
 * it, ".." is a dot, any other leading dot is data.  RR_EOF if it does not
 * end; RR_BAD past limit.  *out is malloc'd.
 */
static enum rr
ref_body(struct ref *r, uint64_t limit, char **out, size_t *olen)
{
	const char	*in = r->s + r->pos;
	size_t		 n = r->n - r->pos, i = 0, o = 0;
	bool		 ls = true, done = false;
	char		*b = malloc(n + 1);

	while (i < n) {
		if (ls && in[i] == '.') {
			if (i + 1 == n || (in[i + 1] == '\r' && i + 2 == n)) {
				i = n;		/* held back: no end yet */
				break;
			}
			if (in[i + 1] == '\n' || (in[i + 1] == '\r' &&
			    in[i + 2] == '\n')) {
				i += in[i + 1] == '\n' ? 2 : 3;
				done = true;
				break;
			}
			b[o++] = '.';
			i += in[i + 1] == '.' ? 2 : 1;
			ls = false;
			continue;
		}
		b[o++] = in[i];
		ls = in[i] == '\n';
		i++;
	}
	*out = b;
	*olen = o;
	if (o > limit) {
		r->lost = true;		/* pop3_body stops where it passes it */
		return RR_BAD;
	}
	if (!done) {
		r->pos = r->n;
		r->dead = true;
		return RR_EOF;
	}
	r->pos += i;
	return RR_OK;
}

static bool
ref_status_like(const char *p, size_t n)
{
	if (n >= 3 && memcmp(p, "+OK", 3) == 0)
		return n == 3 || p[3] == ' ' || p[3] == '\r';
	return n >= 4 && memcmp(p, "-ERR", 4) == 0 &&
	    (n == 4 || p[4] == ' ' || p[4] == '\r');
}

/* A body nearer its size without its first line, which is a status line. */
static bool
ref_out_of_step(const char *b, size_t total, uint64_t size)
{
	const char	*lf = memchr(b, '\n', total);
	size_t		 flen = lf != NULL ? (size_t)(lf - b) + 1 : total;
	uint64_t	 with, without;

	if (size == 0 || !ref_status_like(b, flen < 64 ? flen : 64))
		return false;
	with = total > size ? total - size : size - total;
	without = total - flen > size ? total - flen - size :
	    size - (total - flen);
	return without < with;
}

static void
sha256_hex(const char *p, size_t n, char *hex)
{
	unsigned char	 md[32];
	unsigned int	 mdlen = 0;
	int		 i;

	if (EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		abort();
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* TOP or RETR for a stand-in id: the hash of its body. */
static enum rr
ref_hash_reply(struct ref *r, const char *cmd, uint64_t limit, char *hex)
{
	char	*b;
	size_t	 n;
	enum rr	 x;

	if (!ref_send(r, cmd))
		return RR_BAD;
	if ((x = ref_status(r)) != RR_OK)
		return x == RR_ERR ? RR_BAD : x;
	x = ref_body(r, limit, &b, &n);
	if (x == RR_OK)
		sha256_hex(b, n, hex);
	free(b);
	return x;
}

/* UIDL or LIST after its command: msgs[num - 1] filled. */
static enum rr
ref_listing(struct ref *r, bool uidl, struct pop3_msg *msgs,
    unsigned int count, char *why, size_t whysz)
{
	unsigned int	 num, lines = 0;
	bool		*seen;
	enum rr		 x;

	if ((x = ref_status(r)) != RR_OK) {
		if (x == RR_ERR)
			log_clean(why, whysz, r->line + 4 + (r->line[4] == ' '),
			    r->linelen - 4 - (r->line[4] == ' '));
		return x;
	}
	seen = calloc(count + 1, sizeof *seen);
	for (;;) {
		if ((x = ref_line(r)) != RR_OK)
			break;
		if (strcmp(r->line, ".") == 0)
			break;
		if (uidl) {
			char id[UIDL_MAX + 1];

			if (!pop3_parse_uidl(r->line, &num, id)) {
				x = RR_BAD;
				break;
			}
			if (num >= 1 && num <= count)
				memcpy(msgs[num - 1].uidl, id, sizeof id);
		} else {
			uint64_t size;

			if (!pop3_parse_list(r->line, &num, &size)) {
				x = RR_BAD;
				break;
			}
			if (num >= 1 && num <= count)
				msgs[num - 1].size = size;
		}
		if (num < 1 || num > count || seen[num]) {
			x = RR_BAD;
			break;
		}
		seen[num] = true;
		lines++;
	}
	free(seen);
	if (x == RR_OK && lines != count)
		x = RR_BAD;
	return x;
}

static unsigned int
ref_count_id(const struct pop3_msg *m, unsigned int n, const char *id)
{
	unsigned int	 i, k = 0;

	for (i = 0; i < n; i++)
		k += strcmp(m[i].uidl, id) == 0;
	return k;
}

/* Header hashes (TOP n 0) and sizes; whole-message hashes for twins. */
static enum rr
ref_standins(struct ref *r, struct pop3_msg *m, unsigned int count)
{
	unsigned int	 i, j, dup;
	char		 cmd[32], hex[65];
	enum rr		 x;

	for (i = 0; i < count; i++) {
		snprintf(cmd, sizeof cmd, "TOP %u 0", i + 1);
		if ((x = ref_hash_reply(r, cmd, m[i].size + (1 << 20), hex)) !=
		    RR_OK)
			return x;
		snprintf(m[i].uidl, sizeof m[i].uidl, "~%.32s.%llu", hex,
		    (unsigned long long)m[i].size);
	}
	for (i = 0; i < count; i++) {
		if (m[i].uidl[1] == '=' || ref_count_id(m, count, m[i].uidl) < 2)
			continue;
		for (j = count; j-- > i;) {
			if (strcmp(m[j].uidl, m[i].uidl) != 0)
				continue;
			snprintf(cmd, sizeof cmd, "RETR %u", j + 1);
			if ((x = ref_hash_reply(r, cmd, m[j].size + m[j].size / 4 +
			    (1 << 20), hex)) != RR_OK)
				return x;
			snprintf(m[j].uidl, sizeof m[j].uidl, "~=%.40s", hex);
		}
	}
	for (i = 0; i < count; i++) {
		if (strncmp(m[i].uidl, "~=", 2) != 0 ||
		    strchr(m[i].uidl, '-') != NULL)
			continue;
		dup = 1;
		for (j = i + 1; j < count; j++)
			if (strcmp(m[j].uidl, m[i].uidl) == 0)
				snprintf(m[j].uidl + 42, sizeof m[j].uidl - 42,
				    "-%u", ++dup);
	}
	return RR_OK;
}

/* pop3_scan's steps; *skip when STAT claims too many to fuzz. */
static enum rr
ref_scan(struct ref *r, struct pop3_msg **msgs_r, unsigned int *count_r,
    bool *standin_r, bool *skip)
{
	struct pop3_msg	*m;
	unsigned int	 count, i;
	uint64_t	 size;
	char		 why[300], *cause;
	bool		 pipelined = r->caps.pipelining && r->caps.uidl;
	enum rr		 x;

	*msgs_r = NULL;
	*count_r = 0;
	*standin_r = false;
	*skip = false;
	if (pipelined && (!ref_send(r, "STAT") || !ref_send(r, "LIST") ||
	    !ref_send(r, "UIDL")))
		return RR_BAD;
	if (!pipelined && !ref_send(r, "STAT"))
		return RR_BAD;
	if ((x = ref_status(r)) != RR_OK)
		return x == RR_ERR ? RR_BAD : x;
	if (!pop3_parse_stat(r->line, &count, &size))
		return RR_BAD;
	if (count > 10000000)
		return RR_BAD;
	if (count > COUNT_SKIP) {
		*skip = true;
		return RR_BAD;
	}
	m = calloc(count + 1, sizeof *m);
	for (i = 0; i < count; i++)
		m[i].num = i + 1;
	x = RR_OK;
	if (count > 0 || pipelined) {
		if (!pipelined && !ref_send(r, "LIST"))
			x = RR_BAD;
		else
			x = ref_listing(r, false, m, count, why, sizeof why);
		if (x == RR_OK && !pipelined && !ref_send(r, "UIDL"))
			x = RR_BAD;
		else if (x == RR_OK) {
			x = ref_listing(r, true, m, count, why, sizeof why);
			if (x == RR_ERR) {
				cause = xprintf("UIDL refused: %s", why);
				if (r->caps.uidl ||
				    strstr(cause, "refused: [") != NULL)
					x = RR_BAD;
				else {
					*standin_r = true;
					x = ref_standins(r, m, count);
				}
				free(cause);
			}
			if (x == RR_OK && !pop3_list_check(m, count, NULL))
				x = RR_BAD;
		}
	} else if (!r->caps.uidl)
		*standin_r = true;
	if (x != RR_OK) {
		free(m);
		return x == RR_ERR ? RR_BAD : x;
	}
	*msgs_r = m;
	*count_r = count;
	return RR_OK;
}

/* A RETR's reply: status, body, the out-of-step check. */
static enum rr
ref_retr_read(struct ref *r, uint64_t size, char **body, size_t *blen)
{
	enum rr	 x;

	*body = NULL;
	*blen = 0;
	if ((x = ref_status(r)) != RR_OK)
		return x;
	x = ref_body(r, size + size / 4 + (1 << 20), body, blen);
	if (x == RR_OK && ref_out_of_step(*body, *blen, size))
		x = RR_BAD;
	return x;
}

/* ---- the real client ---- */

struct sink {
	char	*p;
	size_t	 n, cap;
};

static enum result
body_sink(void *arg, const char *p, size_t n, char **cause)
{
	struct sink	*s = arg;

	(void)cause;
	FUZZ_CHECK(n > 0 && n <= 65536, "sink given %zu bytes", n);
	if (s->n + n > s->cap) {
		s->cap = (s->n + n) * 2;
		s->p = realloc(s->p, s->cap);
	}
	memcpy(s->p + s->n, p, n);
	s->n += n;
	return RES_OK;
}

static void
check_cause(enum result got, enum result want, char **cause,
    const char *what)
{
	if (getenv("FUZZ_SESSION_VERBOSE") != NULL)
		fprintf(stderr, "%s: %d (%s)\n", what, (int)got,
		    *cause != NULL ? *cause : "ok");
	FUZZ_CHECK(got == want, "%s: result %d, reference %d (%s)", what,
	    (int)got, (int)want, *cause != NULL ? *cause : "no cause");
	if (got == RES_OK) {
		FUZZ_CHECK(*cause == NULL, "%s: OK with a cause", what);
		return;
	}
	FUZZ_CHECK(*cause != NULL && (*cause)[0] != '\0' &&
	    strlen(*cause) < 1024 && fuzz_printable(*cause, strlen(*cause)),
	    "%s: cause \"%s\"", what, *cause != NULL ? *cause : "NULL");
	free(*cause);
	*cause = NULL;
}

/* read_caps by the book, on the login lines as header_cb keeps them. */
static void
ref_caps(const char *lines, struct pop3_caps *caps)
{
	const char	*p = lines, *e, *next;
	char		 line[128];
	size_t		 n;

	memset(caps, 0, sizeof *caps);
	for (; *p != '\0'; p = next) {
		e = strchr(p, '\n');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		next = e != NULL ? e + 1 : p + n;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n >= sizeof line)
			continue;
		memcpy(line, p, n);
		line[n] = '\0';
		if (strcasecmp(line, "UIDL") == 0)
			caps->uidl = true;
		if (strcasecmp(line, "PIPELINING") == 0)
			caps->pipelining = true;
		if (strcasecmp(line, "TOP") == 0)
			caps->top = true;
		if (strncasecmp(line, "UTF8", 4) == 0 && (line[4] == '\0' ||
		    line[4] == ' '))
			caps->utf8 = true;
	}
}

static void
check_msgs(const struct pop3_msg *got, const struct pop3_msg *want,
    unsigned int n)
{
	unsigned int	 i;

	for (i = 0; i < n; i++)
		FUZZ_CHECK(got[i].num == want[i].num && got[i].size ==
		    want[i].size && strcmp(got[i].uidl, want[i].uidl) == 0 &&
		    uidl_valid(got[i].uidl, strlen(got[i].uidl)),
		    "message %u: %u %llu \"%s\", reference %u %llu \"%s\"", i,
		    got[i].num, (unsigned long long)got[i].size, got[i].uidl,
		    want[i].num, (unsigned long long)want[i].size, want[i].uidl);
}

/* RETR (and DELE) of the first k messages, one by one or pipelined. */
static bool
run_retr(struct pop3 *p, struct ref *r, const struct pop3_msg *m,
    unsigned int k, unsigned ctl)
{
	bool		 pipelined = (ctl & 0x10) && r->caps.pipelining;
	bool		 size0 = ctl & 0x40, dele = ctl & 0x20;
	unsigned int	 i, j, step;
	struct sink	 s;
	char		*cause = NULL, *want, cmd[32];
	size_t		 wlen;
	enum result	 got;
	enum rr		 x;

	step = pipelined ? k : 1;
	for (i = 0; i < k; i += step) {
		unsigned int hi = i + step < k ? i + step : k;

		for (j = i; j < hi; j++) {
			snprintf(cmd, sizeof cmd, "RETR %u", m[j].num);
			got = pop3_retr_send(p, m[j].num, &cause);
			check_cause(got, ref_send(r, cmd) ? RES_OK : RES_TEMP,
			    &cause, "RETR send");
			if (got != RES_OK)
				return false;
		}
		for (j = i; j < hi; j++) {
			memset(&s, 0, sizeof s);
			got = pop3_retr_read(p, m[j].num, size0 ? 0 : m[j].size,
			    body_sink, &s, &cause);
			x = ref_retr_read(r, size0 ? 0 : m[j].size, &want, &wlen);
			if (got == RES_OK && x == RR_OK && (s.n != wlen ||
			    (wlen > 0 && memcmp(s.p, want, wlen) != 0))) {
				fuzz_dump("body", s.p, s.n);
				fuzz_dump("reference", want, wlen);
				FUZZ_CHECK(0, "RETR %u: the body differs",
				    m[j].num);
			}
			free(s.p);
			free(want);
			check_cause(got, rr_result(x), &cause, "RETR");
			if (got == RES_TEMP)
				return false;
		}
		if (!dele)
			continue;
		for (j = i; j < hi; j++) {
			snprintf(cmd, sizeof cmd, "DELE %u", m[j].num);
			got = pop3_dele_send(p, m[j].num, &cause);
			check_cause(got, ref_send(r, cmd) ? RES_OK : RES_TEMP,
			    &cause, "DELE send");
			if (got != RES_OK)
				return false;
		}
		for (j = i; j < hi; j++) {
			got = pop3_dele_read(p, m[j].num, &cause);
			check_cause(got, rr_result(ref_status(r)), &cause,
			    "DELE");
			if (got == RES_TEMP)
				return false;
		}
	}
	return true;
}

/* pop3_headers' callback: each header, in order. */
struct heads {
	char	*h[16];
	size_t	 n[16], count;
};

static void
on_head(void *arg, size_t i, const char *h, size_t n)
{
	struct heads	*hs = arg;

	FUZZ_CHECK(i == hs->count && i < 16 && n <= 65536, "header %zu (%zu "
	    "bytes) after %zu", i, n, hs->count);
	hs->h[i] = fuzz_dup(h, n);
	hs->n[i] = n;
	hs->count++;
}

/*
 * pop3_headers (migrate --since): TOP n 0 of each, a window of 64
 * commands ahead with PIPELINING; a -ERR is an empty header, a header is
 * cut at 64 KiB.
 */
static bool
run_headers(struct pop3 *p, struct ref *r, const struct pop3_msg *m,
    unsigned int count, unsigned int k)
{
	unsigned int	 nums[16];
	struct heads	 hs;
	size_t		 i, sent = 0, win = r->caps.pipelining ? 64 : 1, blen;
	char		*cause = NULL, cmd[32], *b;
	enum result	 got;
	enum rr		 x = RR_OK;

	memset(&hs, 0, sizeof hs);
	for (i = 0; i < k; i++)
		nums[i] = m[count - 1 - i].num;	/* the last first */
	got = pop3_headers(p, nums, k, on_head, &hs, &cause);
	/* The reference, step by step as pop3_headers goes. */
	for (i = 0; i < k && x == RR_OK; i++) {
		while (sent < k && sent < i + win && x == RR_OK) {
			snprintf(cmd, sizeof cmd, "TOP %u 0", nums[sent++]);
			if (!ref_send(r, cmd))
				x = RR_BAD;
		}
		if (x != RR_OK)
			break;
		if ((x = ref_status(r)) == RR_ERR) {
			x = RR_OK;
			FUZZ_CHECK(i < hs.count && hs.n[i] == 0, "TOP %u: -ERR, "
			    "yet a header", nums[i]);
			continue;
		}
		if (x != RR_OK)
			break;
		b = NULL;
		x = ref_body(r, 1 << 24, &b, &blen);
		if (x == RR_OK) {
			if (blen > 65536)
				blen = 65536;
			FUZZ_CHECK(i < hs.count && hs.n[i] == blen &&
			    memcmp(hs.h[i], b, blen) == 0, "TOP %u: the header "
			    "differs", nums[i]);
		}
		free(b);
	}
	check_cause(got, rr_result(x), &cause, "pop3_headers");
	if (got == RES_OK)
		FUZZ_CHECK(hs.count == k, "%zu headers of %u", hs.count, k);
	for (i = 0; i < hs.count; i++)
		free(hs.h[i]);
	return got == RES_OK;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct fuzz_wire w;
	struct conn_memory_io io = { fuzz_wire_step, fuzz_wire_sent, &w };
	struct ref	 r;
	struct conn	*c;
	struct pop3	*p;
	struct pop3_msg	*msgs = NULL, *rmsgs = NULL;
	unsigned int	 count, rcount, k;
	unsigned	 ctl, f1;
	char		*cause = NULL, *stream, *lines;
	const char	*login;
	size_t		 loginlen, slen;
	bool		 standin, rstandin, skip;
	enum result	 got;
	enum rr		 x;

	memset(&w, 0, sizeof w);
	ctl = fuzz_chunks_init(&w.rd, &data, &len);
	if (len < 3)
		return 0;
	w.wr = w.rd;
	w.wr_chunked = (ctl & 0x08) != 0;
	f1 = data[0];
	loginlen = (size_t)data[1] << 8 | data[2];
	data += 3;
	len -= 3;
	if (loginlen > len)
		loginlen = len;
	login = (const char *)data;
	slen = len - loginlen;
	stream = fuzz_dup(data + loginlen, slen);
	w.budget = ctl & 0x80 ? (size_t)(f1 >> 4) * (f1 >> 4) * 3 + 1 :
	    SIZE_MAX;

	memset(&r, 0, sizeof r);
	r.s = stream;
	r.n = slen;
	r.budget = w.budget;

	got = conn_memory("pop3", login, loginlen, stream, slen, &io, &c,
	    &cause);
	{
		/* header_cb stops at a first line that is no greeting. */
		bool greets = loginlen == 0 || (loginlen >= 3 &&
		    memcmp(login, "+OK", 3) == 0) || (loginlen >= 4 &&
		    memcmp(login, "-ERR", 4) == 0);

		check_cause(got, greets ? RES_OK : RES_TEMP, &cause,
		    "conn_memory");
		if (got != RES_OK) {
			FUZZ_CHECK(c == NULL, "a failed conn_memory gave a conn");
			free(stream);
			return 0;
		}
	}
	/* The login lines: the transcript, cut at 16383 bytes, as a string. */
	lines = fuzz_str(login, loginlen < LOGIN_MAX ? loginlen : LOGIN_MAX);
	FUZZ_CHECK(strcmp(conn_login_lines(c), lines) == 0, "login lines");

	got = pop3_open_conn(c, "fuzz", "memory", &p, &cause);
	ref_caps(lines, &r.caps);
	free(lines);
	if (r.caps.utf8) {
		/* A refused UTF8 changes nothing. */
		x = ref_send(&r, "UTF8") ? ref_status(&r) : RR_BAD;
		check_cause(got, x == RR_ERR ? RES_OK : rr_result(x), &cause,
		    "pop3_open_conn");
	} else
		check_cause(got, RES_OK, &cause, "pop3_open_conn");
	if (got != RES_OK) {
		FUZZ_CHECK(p == NULL, "a failed open gave a session");
		goto sent;
	}
	FUZZ_CHECK(memcmp(pop3_caps(p), &r.caps, sizeof r.caps) == 0,
	    "CAPA: uidl %d pipelining %d top %d utf8 %d",
	    pop3_caps(p)->uidl, pop3_caps(p)->pipelining, pop3_caps(p)->top,
	    pop3_caps(p)->utf8);

	x = ref_scan(&r, &rmsgs, &rcount, &rstandin, &skip);
	if (skip) {
		pop3_free(p);
		free(rmsgs);
		free(stream);
		free(r.cmds);
		free(w.out);
		free(w.at);
		return 0;
	}
	got = pop3_scan(p, &msgs, &count, &standin, &cause);
	check_cause(got, rr_result(x), &cause, "pop3_scan");
	if (got == RES_OK) {
		FUZZ_CHECK(count == rcount && standin == rstandin && msgs !=
		    NULL, "listing: %u messages (stand-ins %d), reference %u "
		    "(%d)", count, standin, rcount, rstandin);
		check_msgs(msgs, rmsgs, count);
		k = count < (f1 & 15) ? count : f1 & 15;
		if (run_retr(p, &r, msgs, k, ctl) && k > 0)
			(void)run_headers(p, &r, msgs, count, k);
	} else
		FUZZ_CHECK(msgs == NULL && count == 0, "a failed scan's list");
	free(msgs);
	free(rmsgs);

	/* QUIT, unless the link is dead (then nothing is committed). */
	FUZZ_CHECK(conn_dead(pop3_conn(p)) == r.dead, "dead %d, reference %d",
	    conn_dead(pop3_conn(p)), r.dead);
	if (r.dead)
		x = RR_BAD;
	else if (!ref_send(&r, "QUIT"))
		x = RR_BAD;
	else
		x = r.lost ? RR_OK : ref_status(&r);
	got = pop3_quit(p, &cause);
	/* After a too long line, where QUIT's reply starts is not known. */
	check_cause(got, r.lost ? got : x == RR_ERR ? RES_TEMP : rr_result(x),
	    &cause, "QUIT");
sent:
	/* Exactly the commands the reference sent, byte for byte. */
	FUZZ_CHECK(w.outlen == r.cmdlen && (r.cmdlen == 0 ||
	    memcmp(w.out, r.cmds, r.cmdlen) == 0), "sent \"%s\", reference "
	    "\"%s\"", w.out != NULL ? w.out : "", r.cmds != NULL ? r.cmds :
	    "");
	free(stream);
	free(r.cmds);
	free(w.out);
	free(w.at);
	return 0;
}
