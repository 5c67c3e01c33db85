/*
 * `popbridge batch`: running the accounts.  Each is a worker (worker.c),
 * at most --jobs at once, at most --per-host against one server, and one
 * at a time per POP3 mailbox.  A server that throttles rests (as long as
 * it asked, else 5 s doubling) while other hosts go on, and the account
 * is tried again, THROTTLE_TRIES times in all.  Progress goes to stderr.
 */
#include <sys/wait.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bridge.h"
#include "batch_int.h"

#define THROTTLE_TRIES	6		/* attempts of a throttled account */
#define SHOW_EVERY	10.0		/* seconds between lines off a tty */

static struct host *
host_of(struct batch *b, const char *name)
{
	size_t	 i;

	for (i = 0; i < b->nhosts; i++)
		if (strcasecmp(b->hosts[i].name, name) == 0)
			return &b->hosts[i];
	b->hosts = xrealloc(b->hosts, (b->nhosts + 1) * sizeof *b->hosts);
	memset(&b->hosts[b->nhosts], 0, sizeof *b->hosts);
	b->hosts[b->nhosts].name = xstrdup(name);
	return &b->hosts[b->nhosts++];
}

size_t
batch_count_state(const struct batch *b, enum job_state st)
{
	size_t	 i, n = 0;

	for (i = 0; i < b->njobs; i++)
		n += b->jobs[i].state == st;
	return n;
}

static void
show(struct batch *b, bool final)
{
	double		 now = now_seconds(), el = now - b->started, rate, eta;
	unsigned long long msgs = 0, bytes = 0;
	size_t		 i, done = 0, failed = 0, running;
	long		 left;

	if (!final && now - b->last_shown < (b->tty ? 0.5 : SHOW_EVERY))
		return;
	b->last_shown = now;
	for (i = 0; i < b->njobs; i++) {
		if (b->jobs[i].state != J_DONE)
			continue;
		done++;
		failed += b->jobs[i].rep.r != RES_OK &&
		    b->jobs[i].rep.r != RES_MSG;
		msgs += b->jobs[i].rep.st.imported;
		bytes += b->jobs[i].rep.st.bytes;
	}
	running = batch_count_state(b, J_RUNNING);
	rate = el > 0 ? msgs / el : 0;
	eta = done > 0 ? el / done * (b->njobs - done) : 0;
	left = (long)(eta + 0.5);
	if (b->tty && !final) {
		fprintf(stderr, "\rbatch: %zu/%zu done, %zu running, %zu failed; "
		    "%llu messages, %.1f MB, %.0f/s; %ld:%02ld left  ", done,
		    b->njobs, running, failed, msgs, bytes / 1e6, rate,
		    left / 60, left % 60);
		fflush(stderr);
		log_bar_drawn(true);
		return;
	}
	log_info("batch: %zu/%zu accounts done, %zu running, %zu failed; %llu "
	    "messages, %.1f MB, %.0f messages/s%s", done, b->njobs, running,
	    failed, msgs, bytes / 1e6, rate, final ? "" : "");
}

/* The reasons messages of this account were refused, joined. */
static char *
skipped_reasons(struct batch *b, const struct account *ac)
{
	struct ledger_status ls;
	char		*out, *t, *cause = NULL;
	size_t		 i;

	out = xstrdup("");
	if (ledger_read_status(b->cf.state_dir, ac, &ls, &cause) == RES_OK) {
		for (i = 0; i < ls.nfailures && i < 20; i++) {
			char *one = ledger_failure_text(&ls.failures[i]);

			t = xprintf("%s%s%s", out, i > 0 ? "; " : "", one);
			free(one);
			free(out);
			out = t;
		}
		ledger_status_free(&ls);
	}
	free(cause);
	return out;
}

static void
job_done(struct batch *b, struct job *j, int status)
{
	struct host	*hp = host_of(b, j->ac->pop3.host);
	struct host	*hi = host_of(b, j->ac->imap.host);
	const char	*cols[5], *word;
	char		*skipped, *url0, *url2;
	long		 delay = 0;
	bool		 asked;

	worker_finish(&j->w, status, &j->rep);
	hp->running--;
	if (hi != hp)
		hi->running--;
	/*
	 * A server's "slow down" (throttle.c, as the worker reported it: only
	 * ever a temporary failure, never a refused message): rest as long as
	 * it asked ("try again in 30 seconds", in a BYE, NO or -ERR), or else
	 * 5 s doubling.
	 */
	asked = j->rep.thr.retry_after > 0;
	delay = j->rep.thr.retry_after;
	if (j->rep.thr.throttled && j->tries < THROTTLE_TRIES &&
	    !b->stopping) {
		/* Slow down on the server that said it, then try again. */
		struct host *h = j->rep.thr.imap ? hi : hp;

		if (!asked)
			delay = 5L << (h->throttles < 6 ? h->throttles : 6);
		h->throttles++;
		h->not_before = now_seconds() + (double)delay;
		if (asked)
			log_info("%s: throttled by %s; again in %ld s (server "
			    "asked: %s)", j->ac->name, h->name, delay,
			    j->rep.cause);
		else
			log_info("%s: throttled by %s; again in %ld s (%s)",
			    j->ac->name, h->name, delay, j->rep.cause);
		j->state = J_WAITING;
		j->not_before = h->not_before;
		free(j->rep.cause);
		j->rep.cause = NULL;
		return;
	}
	if (j->rep.r == RES_OK) {
		hp->throttles = 0;
		hi->throttles = 0;
	}
	j->state = J_DONE;
	word = j->rep.r == RES_OK ? "ok" : j->rep.r == RES_MSG ? "partial" :
	    b->stopping ? "partial" : "failed";
	if (j->rep.r != RES_OK && j->rep.cause[0] != '\0')
		log_warn("%s: %s", j->ac->name, j->rep.cause);
	/* Every URL printed goes through config_url_redact (these loaded,
	 * so they hold no '@', but one rule is easier to keep). */
	url0 = config_url_redact(j->ac->pop3.url);
	url2 = config_url_redact(j->ac->imap.url);
	cols[0] = url0;
	cols[1] = j->ac->pop3.user;
	cols[2] = url2;
	cols[3] = j->ac->imap.user;
	cols[4] = j->ac->imap.mailbox;
	skipped = j->rep.st.failed > 0 ? skipped_reasons(b, j->ac) :
	    xstrdup("");
	batch_report_row(b, j->line, cols, word, &j->rep.st, skipped,
	    now_seconds() - j->started, j->rep.r == RES_OK ? "" :
	    j->rep.cause);
	free(skipped);
	free(url0);
	free(url2);
}

static void
reap(struct batch *b)
{
	pid_t	 pid;
	int	 status;
	size_t	 i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (i = 0; i < b->njobs; i++)
			if (b->jobs[i].state == J_RUNNING &&
			    b->jobs[i].w.pid == pid) {
				job_done(b, &b->jobs[i], status);
				break;
			}
}

/*
 * Is a run on this job's POP3 mailbox under way (another row, another
 * destination)?  Then it waits: the mailbox's ledger is locked for the whole
 * run, and starting now would only end in "another popbridge process is
 * working on this mailbox".  The end of that run wakes start_jobs again.
 */
static bool
source_busy(const struct batch *b, const struct job *j)
{
	size_t	 i;

	for (i = 0; i < b->njobs; i++)
		if (b->jobs[i].state == J_RUNNING &&
		    strcmp(b->jobs[i].source, j->source) == 0)
			return true;
	return false;
}

/*
 * Start what may start; the milliseconds until something might (at most a
 * second: a rest that ends is noticed in time, to the millisecond, so a
 * server that asked for N seconds gets no fewer).
 */
static int
start_jobs(struct batch *b)
{
	double	 now = now_seconds(), next = now + 1.0, ready;
	size_t	 i, running = batch_count_state(b, J_RUNNING);
	char	*cause = NULL;

	for (i = 0; i < b->njobs && running < (size_t)b->cf.jobs &&
	    !b->stopping; i++) {
		struct job *j = &b->jobs[i];
		struct host *hp, *hi;

		if (j->state != J_WAITING)
			continue;
		hp = host_of(b, j->ac->pop3.host);
		hi = host_of(b, j->ac->imap.host);
		ready = j->not_before;
		if (hp->not_before > ready)
			ready = hp->not_before;
		if (hi->not_before > ready)
			ready = hi->not_before;
		if (ready > now) {
			if (ready < next)
				next = ready;
			continue;
		}
		/* One account is one connection to each server it uses. */
		if (hp->running >= (unsigned long)b->per_host ||
		    hi->running + (hi != hp) > (unsigned long)b->per_host ||
		    source_busy(b, j))
			continue;
		j->tries++;
		j->started = now_seconds();
		if (worker_start(&b->cf, j->ac, b->sigpipe, 2, &j->w, &cause) !=
		    RES_OK) {
			log_warn("%s: %s", j->ac->name, cause);
			free(cause);
			cause = NULL;
			return 1000;
		}
		j->state = J_RUNNING;
		hp->running++;
		if (hi != hp)
			hi->running++;
		running++;
	}
	return (int)((next - now) * 1000.0) + 1;
}

static void
handle_signals(struct batch *b)
{
	unsigned char	 c;
	size_t		 i;

	while (read(b->sigpipe[0], &c, 1) == 1)
		if ((c == SIGINT || c == SIGTERM) && !b->stopping) {
			b->stopping = true;
			log_info("batch: stopping: the running accounts finish "
			    "their batch in flight");
			for (i = 0; i < b->njobs; i++)
				if (b->jobs[i].state == J_RUNNING)
					kill(b->jobs[i].w.pid, SIGTERM);
		}
}

void
batch_run_jobs(struct batch *b)
{
	struct pollfd	 pfd;
	int		 wait;

	for (;;) {
		reap(b);
		if (batch_count_state(b, J_RUNNING) == 0 &&
		    (b->stopping || batch_count_state(b, J_WAITING) == 0))
			break;
		wait = start_jobs(b);
		show(b, false);
		pfd.fd = b->sigpipe[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, wait) > 0)
			handle_signals(b);
	}
	show(b, true);
}
