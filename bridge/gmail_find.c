/*
 * Labels by name, and finding a message a killed run may have imported.
 *
 * Labels: users.labels.list once per handle, kept; a name that is missing
 * is created with users.labels.create, its parents first ("A", then
 * "A/B"), because Gmail nests by the slash in the name and shows a child
 * whose parent does not exist as a flat "A/B".  A 409 (made meanwhile by
 * another run, or by the user) reads the list again.
 *
 * Finding: messages.list with q = rfc822msgid:ID and after:/before: in
 * epoch seconds (Gmail reads a bare date as midnight in California; the
 * seconds are exact), spam and trash included (an import may have been
 * classified as spam, and the user may have binned it since).  Each
 * candidate's raw bytes (messages.get format=raw) are compared with the
 * message: a Message-ID is no proof (mailing lists deliver one message
 * twice; some senders reuse ids).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "gmail_int.h"

#define LABELS_PATH	"/gmail/v1/users/me/labels"
#define MESSAGES_PATH	"/gmail/v1/users/me/messages"
#define FIND_WINDOW	86400	/* seconds either side of the Date */
#define LABELS_READ_MAX	10000	/* labels a mailbox may have, for us */

/* System labels an import may carry: their names are their ids. */
static const char *const system_labels[] = { "INBOX", "UNREAD", "STARRED",
	"IMPORTANT", "SPAM", "TRASH", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL",
	"CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS", NULL };

static void
label_add(void *arg, const char *id, const char *name)
{
	struct gmail	*g = arg;

	if (g->nlabels >= LABELS_READ_MAX)
		return;
	g->labels = xrealloc(g->labels, (g->nlabels + 1) * sizeof *g->labels);
	g->labels[g->nlabels].id = xstrdup(id);
	g->labels[g->nlabels].name = xstrdup(name);
	g->nlabels++;
}

static void
labels_forget(struct gmail *g)
{
	size_t	 i;

	for (i = 0; i < g->nlabels; i++) {
		free(g->labels[i].id);
		free(g->labels[i].name);
	}
	free(g->labels);
	g->labels = NULL;
	g->nlabels = 0;
	g->labels_read = false;
}

static enum result
labels_read(struct gmail *g, char **cause)
{
	struct gmail_req rq, *p = &rq;
	enum result	 r;

	labels_forget(g);
	gmail_req_init(&rq, g, "GET", xprintf("%s" LABELS_PATH,
	    gmail_base(g)), COST_LABELS);
	gmail_run(g, &p, 1);
	if ((r = gmail_req_result(&rq, "labels.list", cause)) == RES_OK) {
		if (gmail_json_labels(rq.reply, rq.replylen, label_add, g))
			g->labels_read = true;
		else {
			labels_forget(g);
			r = fail(cause, RES_TEMP, "gmail: labels.list: the reply "
			    "is not a list of labels");
		}
	}
	gmail_req_free(&rq);
	return r;
}

/* Gmail compares label names without regard to (ASCII) case. */
static const char *
label_lookup(struct gmail *g, const char *name, size_t len)
{
	size_t	 i;

	for (i = 0; system_labels[i] != NULL; i++)
		if (strlen(system_labels[i]) == len &&
		    strncasecmp(system_labels[i], name, len) == 0)
			return system_labels[i];
	for (i = 0; i < g->nlabels; i++)
		if (strlen(g->labels[i].name) == len &&
		    strncasecmp(g->labels[i].name, name, len) == 0)
			return g->labels[i].id;
	return NULL;
}

static enum result
label_create(struct gmail *g, const char *name, size_t len, char **cause)
{
	struct gmail_req rq, *p = &rq;
	char		*n = xstrndup(name, len), *body;
	char		 id[GMAIL_ID_MAX * 2];
	enum result	 r;

	if ((body = gmail_json_label_new(n)) == NULL) {
		r = fail(cause, RES_CONFIG, "gmail: label names must be UTF-8");
		free(n);
		return r;
	}
	gmail_req_init(&rq, g, "POST", xprintf("%s" LABELS_PATH,
	    gmail_base(g)), COST_LABEL_CREATE);
	rq.ctype = xstrdup("application/json; charset=UTF-8");
	rq.has_body = true;
	rq.body.head = body;
	rq.body.headlen = strlen(body);
	gmail_run(g, &p, 1);
	if (rq.end == END_REPLY && rq.status == 409) {
		/* Made meanwhile (another run, the user): read it back. */
		if ((r = labels_read(g, cause)) == RES_OK &&
		    label_lookup(g, name, len) == NULL)
			r = fail(cause, RES_CONFIG, "gmail: the label \"%s\" "
			    "conflicts with one Gmail has (409)", n);
	} else if ((r = gmail_req_result(&rq, "labels.create", cause)) ==
	    RES_OK) {
		if (gmail_json_id(rq.reply, rq.replylen, id, sizeof id)) {
			label_add(g, id, n);
			log_info("%s: gmail: created the label \"%s\"",
			    gmail_account(g), n);
		} else
			r = fail(cause, RES_TEMP, "gmail: labels.create: the "
			    "reply has no label id");
	}
	if (r == RES_MSG)
		r = RES_CONFIG;		/* 400: a name Gmail will not take */
	gmail_req_free(&rq);
	free(body);
	free(n);
	return r;
}

enum result
gmail_labels(struct gmail *g, const char *const *names, size_t n, char **ids,
    char **cause)
{
	const char	*name, *why, *slash, *id;
	size_t		 i, len;
	enum result	 r;

	for (i = 0; i < n; i++)
		ids[i] = NULL;
	for (i = 0; i < n; i++) {
		name = names[i];
		if ((why = config_gmail_label_check(name)) != NULL) {
			r = fail(cause, RES_CONFIG, "gmail: the label \"%.100s\" "
			    "%s", name, why);
			goto bad;
		}
		if (label_lookup(g, name, strlen(name)) == NULL &&
		    !g->labels_read && (r = labels_read(g, cause)) != RES_OK)
			goto bad;
		/* Each level that is missing, parents first. */
		for (slash = name; slash != NULL; ) {
			slash = strchr(slash, '/');
			len = slash != NULL ? (size_t)(slash - name) :
			    strlen(name);
			if (label_lookup(g, name, len) == NULL &&
			    (r = label_create(g, name, len, cause)) != RES_OK)
				goto bad;
			if (slash != NULL)
				slash++;
		}
		if ((id = label_lookup(g, name, strlen(name))) == NULL) {
			r = fail(cause, RES_TEMP, "gmail: the label \"%s\" was "
			    "created but is not listed", name);
			goto bad;
		}
		ids[i] = xstrdup(id);
	}
	return RES_OK;
bad:
	for (i = 0; i < n; i++) {
		free(ids[i]);
		ids[i] = NULL;
	}
	return r;
}

/* ---- finding a message ---- */

struct cands {
	char		**ids;
	size_t		 n;
};

static void
cand_add(void *arg, const char *id)
{
	struct cands	*c = arg;
	size_t		 i;

	if (c->n >= GMAIL_FIND_MAX)
		return;
	for (i = 0; i < c->n; i++)
		if (strcmp(c->ids[i], id) == 0)
			return;
	c->ids = xrealloc(c->ids, (c->n + 1) * sizeof *c->ids);
	c->ids[c->n++] = xstrdup(id);
}

void
gmail_ids_free(char **ids, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

/* The id inside "<...>", if Gmail's search can take it as one word. */
static bool
msgid_word(const char *mid, char *out, size_t outsz)
{
	size_t	 n = strlen(mid), i;

	if (n >= 2 && mid[0] == '<' && mid[n - 1] == '>') {
		mid++;
		n -= 2;
	}
	if (n == 0 || n >= outsz)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)mid[i] <= ' ' || (unsigned char)mid[i] >= 0x7f ||
		    strchr("\"()<>,;\\{}", mid[i]) != NULL)
			return false;
	memcpy(out, mid, n);
	out[n] = '\0';
	return true;
}

static enum result
list_candidates(struct gmail *g, const char *q, struct cands *c, char **cause)
{
	struct gmail_req rq, *p = &rq;
	char		*eq = gmail_escape(q), *next = NULL, *tok;
	enum result	 r = RES_OK;
	int		 pages;

	for (pages = 0; pages < 5 && c->n < GMAIL_FIND_MAX; pages++) {
		tok = next != NULL ? gmail_escape(next) : NULL;
		gmail_req_init(&rq, g, "GET", xprintf("%s" MESSAGES_PATH
		    "?q=%s&includeSpamTrash=true&maxResults=%d%s%s",
		    gmail_base(g), eq, GMAIL_FIND_MAX, tok != NULL ?
		    "&pageToken=" : "", tok != NULL ? tok : ""), COST_LIST);
		free(tok);
		free(next);
		next = NULL;
		gmail_run(g, &p, 1);
		if ((r = gmail_req_result(&rq, "messages.list", cause)) ==
		    RES_OK && !gmail_json_list(rq.reply, rq.replylen, cand_add,
		    c, &next))
			r = fail(cause, RES_TEMP, "gmail: messages.list: the "
			    "reply is not a list of messages");
		gmail_req_free(&rq);
		if (r != RES_OK || next == NULL)
			break;
	}
	free(next);
	free(eq);
	return r;
}

/* Do the bytes of the probe's message equal raw[off, off + size)? */
static bool
same_bytes(const struct gmail_probe *pr, const char *raw, size_t off)
{
	char		 buf[16384];
	uint64_t	 pos = 0;
	size_t		 k;

	while (pos < pr->size) {
		k = pr->size - pos < sizeof buf ? (size_t)(pr->size - pos) :
		    sizeof buf;
		if (gmail_src_read(&pr->src, pos, buf, k) != k ||
		    memcmp(buf, raw + off + pos, k) != 0)
			return false;
		pos += k;
	}
	return true;
}

/*
 * Is this copy the message?  Its bytes equal, or end with the message
 * after a line end (a header line put on top); else their SHA-256 as the
 * ledger recorded it; where no raw came, Gmail's size estimate.
 */
static bool
is_copy(const struct gmail_probe *pr, const char *raw, size_t rawlen,
    long long size_est)
{
	struct hash	*h;
	char		 hex[65];
	bool		 have_src = pr->src.bytes != NULL || pr->src.sp != NULL;

	if (raw == NULL)
		return size_est >= 0 && (uint64_t)size_est == pr->size;
	if (have_src && rawlen == pr->size && same_bytes(pr, raw, 0))
		return true;
	if (have_src && rawlen > pr->size && raw[rawlen - pr->size - 1] ==
	    '\n' && same_bytes(pr, raw, rawlen - (size_t)pr->size))
		return true;
	if (pr->sha256 == NULL || rawlen != pr->size)
		return false;
	h = hash_new();
	hash_update_message(h, raw, rawlen);
	hash_final(h, hex);
	return strcasecmp(hex, pr->sha256) == 0;
}

enum result
gmail_find(struct gmail *g, const struct gmail_probe *pr, char ***ids,
    size_t *nids, char **cause)
{
	struct cands	 c = { NULL, 0 };
	struct gmail_req *rqs = NULL, **p = NULL;
	char		 word[256], *q, *raw;
	size_t		 i, rawlen;
	long long	 size_est;
	enum result	 r = RES_OK;

	*ids = NULL;
	*nids = 0;
	if (msgid_word(pr->message_id, word, sizeof word)) {
		if (pr->date > 0)
			q = xprintf("rfc822msgid:%s after:%lld before:%lld", word,
			    (long long)pr->date - FIND_WINDOW,
			    (long long)pr->date + FIND_WINDOW);
		else
			q = xprintf("rfc822msgid:%s", word);
	} else if (pr->date > 0)
		q = xprintf("after:%lld before:%lld", (long long)pr->date -
		    FIND_WINDOW, (long long)pr->date + FIND_WINDOW);
	else
		return fail(cause, RES_MSG, "gmail: a message with neither a "
		    "usable Message-ID nor a date cannot be searched for");
	r = list_candidates(g, q, &c, cause);
	free(q);
	if (r != RES_OK || c.n == 0)
		goto out;

	/* Every candidate's bytes at once (inflight bounds them). */
	rqs = xcalloc(c.n, sizeof *rqs);
	p = xcalloc(c.n, sizeof *p);
	for (i = 0; i < c.n; i++) {
		gmail_req_init(&rqs[i], g, "GET", xprintf("%s" MESSAGES_PATH
		    "/%s?format=raw", gmail_base(g), c.ids[i]), COST_GET);
		/* base64 of a larger copy is not this message: cut short. */
		rqs[i].reply_max = (size_t)(pr->size / 3 * 4 + 64 * 1024 +
		    pr->size / 8);
		p[i] = &rqs[i];
	}
	gmail_run(g, p, c.n);
	for (i = 0; i < c.n && r == RES_OK; i++) {
		if (rqs[i].end == END_LINK && rqs[i].too_long)
			continue;		/* larger than the message */
		if (rqs[i].end == END_REPLY && rqs[i].status == 404)
			continue;		/* deleted since the list */
		if ((r = gmail_req_result(&rqs[i], "messages.get", cause)) !=
		    RES_OK)
			break;
		if (!gmail_json_raw(rqs[i].reply, rqs[i].replylen, &raw,
		    &rawlen, &size_est)) {
			r = fail(cause, RES_TEMP, "gmail: messages.get: the reply "
			    "is not a message");
			break;
		}
		if (is_copy(pr, raw, rawlen, size_est)) {
			*ids = xrealloc(*ids, (*nids + 1) * sizeof **ids);
			(*ids)[(*nids)++] = xstrdup(c.ids[i]);
		}
		free(raw);
	}
	for (i = 0; i < c.n; i++)
		gmail_req_free(&rqs[i]);
out:
	if (r != RES_OK) {
		gmail_ids_free(*ids, *nids);
		*ids = NULL;
		*nids = 0;
	}
	log_clean(word, sizeof word, pr->message_id, strlen(pr->message_id));
	log_debug("%s: gmail: find %s: %zu candidate(s), %zu copy(ies)",
	    gmail_account(g), word, c.n, *nids);
	gmail_ids_free(c.ids, c.n);
	free(rqs);
	free(p);
	return r;
}
