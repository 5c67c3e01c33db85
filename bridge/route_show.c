/*
 * Where waiting messages would go, for `check` and dry runs (issue 16):
 * a user tries rules before mail moves.  The headers come from TOP n 0,
 * pipelined, so nothing is downloaded whole and nothing changes on the
 * server; route_decide() is the one the engine uses on the spooled
 * message, so the preview and the run cannot disagree on the same header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bridge.h"
#include "route.h"

struct show {
	const struct account *ac;
	const struct pop3_msg *msgs;
	const unsigned int *idx;	/* the messages asked about */
	unsigned int	*per_target;	/* messages per target */
	unsigned int	 kept, shown, limit;
};

/* A header's value, unfolded and cleaned for one log line. */
static void
header_value(const char *hdr, size_t len, const char *name, char *out,
    size_t outsz)
{
	size_t	 n = strlen(name), i = 0, end;

	out[0] = '\0';
	while (i < len) {
		for (end = i; end < len && hdr[end] != '\n'; end++)
			;
		if (end - i > n && strncasecmp(hdr + i, name, n) == 0 &&
		    hdr[i + n] == ':') {
			size_t v = i + n + 1;

			/* Folded lines belong to the value. */
			while (end + 1 < len && (hdr[end + 1] == ' ' ||
			    hdr[end + 1] == '\t'))
				for (end++; end < len && hdr[end] != '\n'; end++)
					;
			while (v < end && (hdr[v] == ' ' || hdr[v] == '\t'))
				v++;
			log_clean(out, outsz, hdr + v, end - v);
			return;
		}
		i = end + 1;
	}
}

static const char *
target_mailbox(const struct target *t)
{
	return t->mailbox != NULL ? t->mailbox : "INBOX";
}

static void
on_header(void *arg, size_t i, const char *hdr, size_t len)
{
	struct show	*sh = arg;
	const struct pop3_msg *m = &sh->msgs[sh->idx[i]];
	const struct routing *rt = sh->ac->routing;
	struct route_out out;
	char		 subj[80], from[80], places[512], sz[32];
	size_t		 k, o = 0;

	route_decide(sh->ac, hdr, len, m->size, &out);
	places[0] = '\0';
	if (out.keep)
		sh->kept++;
	for (k = 0; k < out.n; k++) {
		const struct target *t = &rt->targets[out.picks[k].target];

		sh->per_target[out.picks[k].target]++;
		if (o < sizeof places)
			o += (size_t)snprintf(places + o, sizeof places - o,
			    "%s%s:%s", k > 0 ? ", " : "",
			    route_dest_name(sh->ac, t->dest), target_mailbox(t));
	}
	if (sh->shown >= sh->limit)
		return;
	sh->shown++;
	if (len == 0) {
		printf("%s:   message %u (UIDL %s, %s): to %s (the server "
		    "gave no header: it has no TOP; the run reads the "
		    "message itself)\n", sh->ac->name, m->num, m->uidl,
		    log_size(m->size, sz, sizeof sz), places);
		return;
	}
	header_value(hdr, len, "Subject", subj, sizeof subj);
	header_value(hdr, len, "From", from, sizeof from);
	printf("%s:   message %u (UIDL %s, %s) from \"%s\", \"%s\": %s%s "
	    "(%s)\n", sh->ac->name, m->num, m->uidl,
	    log_size(m->size, sz, sizeof sz), from, subj,
	    out.keep ? "stays on the POP3 server" : "to ",
	    out.keep ? "" : places, out.why);
}

enum result
route_show(const struct account *ac, struct pop3 *p,
    const struct pop3_msg *msgs, unsigned int n, const bool *todo_of,
    unsigned int limit, char **cause)
{
	const struct routing *rt = ac->routing;
	struct show	 sh = { ac, msgs, NULL, NULL, 0, 0, limit };
	unsigned int	*nums, *idx, i;
	size_t		 k, nask = 0;
	enum result	 r;

	if (rt == NULL)
		return RES_OK;
	idx = xcalloc(n + 1, sizeof *idx);
	nums = xcalloc(n + 1, sizeof *nums);
	for (i = 0; i < n; i++)
		if (todo_of == NULL || todo_of[i]) {
			idx[nask] = i;
			nums[nask++] = msgs[i].num;
		}
	sh.idx = idx;
	sh.per_target = xcalloc(rt->ntargets + 1, sizeof *sh.per_target);
	if (nask > 0)
		printf("%s: where the %zu waiting message%s would go, rule by "
		    "rule:\n", ac->name, nask, nask == 1 ? "" : "s");
	r = pop3_headers(p, nums, nask, on_header, &sh, cause);
	if (r == RES_OK && sh.shown < nask)
		printf("%s:   ... and %zu more\n", ac->name,
		    nask - sh.shown);
	for (k = 0; r == RES_OK && k < rt->ntargets; k++)
		if (sh.per_target[k] > 0)
			printf("%s: would go to %s:%s: %u\n", ac->name,
			    route_dest_name(ac, rt->targets[k].dest),
			    target_mailbox(&rt->targets[k]), sh.per_target[k]);
	if (r == RES_OK && sh.kept > 0)
		printf("%s: would stay on the POP3 server: %u\n", ac->name,
		    sh.kept);
	free(sh.per_target);
	free(nums);
	free(idx);
	return r;
}
