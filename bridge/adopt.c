/*
 * The first contact with a destination: mail may be there already.  The
 * ledger was lost or is new, the user moved over from fetchmail or from
 * Gmail's fetcher, or `migrate` ran with another state directory.  Before
 * anything is appended there for the first time, one FETCH learns the
 * size and Message-ID of every message in the mailbox (no bodies); a
 * message about to be appended whose size and Message-ID match one that
 * no ledger row owns has that copy's body hashed, and if the content is
 * the same, the copy is adopted (recorded as this message's) instead of
 * appended again.  So the cost is one FETCH of the headers' Message-IDs,
 * plus one body for each likely match.
 *
 * The scan counts as done (ledger_set_adopted) once a run has gone
 * through every message to import; until then each run does it again.
 */
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "run.h"

struct adopt_entry {
	uint64_t	 size;
	uint64_t	 idh;		/* of the Message-ID */
	uint32_t	 uid;
	bool		 taken;
};

struct adopt {
	struct adopt_entry *e;
	size_t		 n, cap;
};

static uint64_t
id_hash(const char *msgid)
{
	char		 hex[65];
	uint64_t	 h = 0;
	int		 i;

	hash_hex(msgid, strlen(msgid), hex);
	for (i = 0; i < 16; i++)
		h = h << 4 | (uint64_t)(hex[i] <= '9' ? hex[i] - '0' :
		    hex[i] - 'a' + 10);
	return h;
}

static int
cmp_entry(const void *a, const void *b)
{
	const struct adopt_entry *x = a, *y = b;

	if (x->size != y->size)
		return x->size < y->size ? -1 : 1;
	if (x->idh != y->idh)
		return x->idh < y->idh ? -1 : 1;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static void
on_msgid(void *arg, uint32_t uid, uint64_t size, const char *body,
    size_t len)
{
	struct adopt	*a = arg;
	char		 id[MSGID_MAX];

	if (a->n == a->cap) {
		a->cap = a->cap == 0 ? 256 : a->cap * 2;
		a->e = xrealloc(a->e, a->cap * sizeof *a->e);
	}
	msg_message_id(body != NULL ? body : "", len, id, sizeof id);
	a->e[a->n].size = size;
	a->e[a->n].idh = id_hash(id);
	a->e[a->n].uid = uid;
	a->e[a->n++].taken = false;
}

enum result
adopt_load(struct run *rn, char **cause)
{
	struct adopt	*a;
	bool		 done;
	enum result	 r;

	if (rn->leg->adopt != NULL)
		return RES_OK;
	if ((r = ledger_adopted(rn->l, &done, cause)) != RES_OK || done)
		return r;
	/* An empty mailbox (STATUS says so) has nothing to adopt: no SELECT. */
	if ((r = run_imap(rn, false, cause)) != RES_OK)
		return r;
	a = xcalloc(1, sizeof *a);
	if (rn->leg->mb.messages > 0 && ((r = run_imap(rn, true, cause)) !=
	    RES_OK || (r = imap_list_msgids(run_im(rn), on_msgid, a, cause)) !=
	    RES_OK)) {
		adopt_free(a);
		return r;
	}
	if (a->n > 0)		/* qsort wants an array, even of none */
		qsort(a->e, a->n, sizeof *a->e, cmp_entry);
	log_debug("%s: first contact with %s: %zu message%s there already",
	    rn->ac->name, rn->leg->mailbox, a->n, a->n == 1 ? "" : "s");
	rn->leg->adopt = a;
	return RES_OK;
}

/* The entries with this size and Message-ID: [*lo, *hi). */
static void
adopt_range(struct adopt *a, uint64_t size, uint64_t idh, size_t *lo,
    size_t *hi)
{
	struct adopt_entry key = { size, idh, 0, false };
	size_t		 l = 0, h = a->n, mid;

	while (l < h) {			/* the first entry >= key */
		mid = l + (h - l) / 2;
		if (cmp_entry(&a->e[mid], &key) < 0)
			l = mid + 1;
		else
			h = mid;
	}
	*lo = l;
	for (h = l; h < a->n && a->e[h].size == size && a->e[h].idh == idh;
	    h++)
		;
	*hi = h;
}

/*
 * For a batch of messages about to be appended: a copy of each (same size,
 * Message-ID and content) that no ledger row owns and no other message
 * took, into q[i].uid (0: none).  The candidates' bodies are hashed in one
 * FETCH for the whole batch, so a distant server costs one round trip per
 * batch, not per message.
 */
enum result
adopt_batch(struct run *rn, struct adopt_query *q, size_t n, char **cause)
{
	struct adopt	*a = rn->leg->adopt;
	struct uid_hash	*uh = NULL;
	size_t		 i, k, lo, hi, nu = 0;
	int64_t		 owner;
	enum result	 r = RES_OK;

	for (i = 0; i < n; i++)
		q[i].uid = 0;
	if (a == NULL || a->n == 0 || n == 0)
		return RES_OK;
	for (i = 0; i < n && r == RES_OK; i++) {
		adopt_range(a, q[i].size, id_hash(q[i].msgid), &lo, &hi);
		for (k = lo; k < hi && r == RES_OK; k++) {
			if (a->e[k].taken)
				continue;
			r = ledger_uid_owner(rn->l, rn->leg->mb.uidvalidity,
			    a->e[k].uid, &owner, cause);
			if (owner != 0) {
				a->e[k].taken = true;
				continue;
			}
			uh = xrealloc(uh, (nu + 1) * sizeof *uh);
			memset(&uh[nu], 0, sizeof uh[nu]);
			uh[nu++].uid = a->e[k].uid;
		}
	}
	if (r == RES_OK && nu > 0)
		r = imap_hash_uids(run_im(rn), uh, nu, cause);
	for (i = 0; i < n && r == RES_OK && nu > 0; i++) {
		adopt_range(a, q[i].size, id_hash(q[i].msgid), &lo, &hi);
		for (k = lo; k < hi && q[i].uid == 0; k++) {
			size_t j;

			if (a->e[k].taken)
				continue;
			for (j = 0; j < nu && uh[j].uid != a->e[k].uid; j++)
				;
			if (j < nu && uh[j].found && uh[j].size == q[i].size &&
			    strcmp(uh[j].hex, q[i].hex) == 0) {
				a->e[k].taken = true;
				q[i].uid = a->e[k].uid;
			}
		}
	}
	free(uh);
	return r;
}

void
adopt_free(struct adopt *a)
{
	if (a == NULL)
		return;
	free(a->e);
	free(a);
}
