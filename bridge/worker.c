/*
 * One account run in a child process, for the daemon and the batch: the
 * parent keeps the schedule, the child does the work and reports back
 * through a pipe.  Whatever a run allocates is gone when it ends, and a
 * slow server holds up only its own child.
 *
 * After a run, the account's notify_command tells a person when it turned
 * failing or recovered (worker_notify, for the daemon's polls and `run`).
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"

/* SIGTERM from the parent: finish the batch in flight, then end. */
static volatile sig_atomic_t	stop_child;

static void
on_term(int sig)
{
	(void)sig;
	stop_child = 1;
}

static void NORETURN
worker_child(const struct config *cf, const struct account *ac, int fd)
{
	const struct run_opts opts = { &stop_child, NULL, NULL };
	struct run_stats st;
	struct throttle	 t;
	char		*cause = NULL;
	enum result	 r;
	time_t		 started;
	FILE		*f;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	started = time(NULL);
	r = account_run(cf, ac, &opts, &st, &cause);
	/* Only a temporary failure can be a server's "slow down". */
	if (!throttle_take(r == RES_TEMP ? cause : NULL, &t))
		memset(&t, 0, sizeof t);
	worker_notify(cf, ac, started);
	if ((f = fdopen(fd, "w")) != NULL) {
		fprintf(f, "%d %u %u %u %u %llu %.3f %u %d %d %ld\n%s", (int)r,
		    st.fresh, st.imported, st.failed, st.deleted,
		    (unsigned long long)st.bytes, st.seconds, st.waiting,
		    (int)t.throttled, (int)t.imap, t.retry_after,
		    cause != NULL ? cause : "");
		fclose(f);
	}
	_exit(0);
}

enum result
worker_start(const struct config *cf, const struct account *ac,
    const int *close_fds, size_t nclose, struct worker *w, char **cause)
{
	int	 p[2];
	size_t	 i;
	pid_t	 pid;

	w->pid = 0;
	w->fd = -1;
	if (pipe2(p, O_CLOEXEC) == -1)
		return fail(cause, RES_TEMP, "pipe: %s", strerror(errno));
	fflush(NULL);
	if ((pid = fork()) == -1) {
		close(p[0]);
		close(p[1]);
		return fail(cause, RES_TEMP, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(p[0]);
		for (i = 0; i < nclose; i++)
			close(close_fds[i]);
		worker_child(cf, ac, p[1]);
	}
	close(p[1]);
	w->pid = pid;
	w->fd = p[0];
	return RES_OK;
}

void
worker_finish(struct worker *w, int status, struct worker_report *rep)
{
	char		 buf[4096], *nl;
	ssize_t		 n;
	size_t		 len = 0;
	unsigned long long bytes = 0;
	int		 r = RES_TEMP, throttled = 0, imap = 0;
	long		 retry_after = 0;

	memset(rep, 0, sizeof *rep);
	while (len < sizeof buf - 1 &&
	    (n = read(w->fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(w->fd);
	w->fd = -1;
	w->pid = 0;
	if (sscanf(buf, "%d %u %u %u %u %llu %lf %u %d %d %ld", &r,
	    &rep->st.fresh, &rep->st.imported, &rep->st.failed,
	    &rep->st.deleted, &bytes, &rep->st.seconds, &rep->st.waiting,
	    &throttled, &imap, &retry_after) != 11 || r < RES_OK ||
	    r > RES_CONFIG) {
		rep->r = RES_TEMP;
		rep->cause = xprintf("the run ended without a report (%s %d)",
		    WIFSIGNALED(status) ? "signal" : "exit",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
		return;
	}
	rep->r = (enum result)r;
	rep->st.bytes = bytes;
	/* Our own child's words, yet checked as any input: a "slow down" is
	 * for a temporary failure only, its hint within THROTTLE_HINT_MAX. */
	rep->thr.throttled = throttled == 1 && rep->r == RES_TEMP;
	rep->thr.imap = imap == 1;
	rep->thr.retry_after = rep->thr.throttled && retry_after > 0 ?
	    (retry_after < THROTTLE_HINT_MAX ? retry_after :
	    THROTTLE_HINT_MAX) : 0;
	nl = strchr(buf, '\n');
	rep->cause = xstrdup(nl != NULL ? nl + 1 : "");
}

/*
 * notify_command: a person hears when an account's failures last (see
 * ledger_status.c for when they do) and when it works again, once each.
 * The command runs through /bin/sh -c with no stdin, its output on our
 * stderr, in a process group of its own so that all of it can be ended
 * after NOTIFY_TIMEOUT; what it gets is in its environment.  Nothing there
 * is a secret: the cause is the sentence the log shows, which never holds
 * one.
 */
#define NOTIFY_TIMEOUT	60	/* seconds, then SIGTERM, then SIGKILL */
#define NOTIFY_GRACE	5
#define NOTIFY_CAUSE_MAX 1024	/* bytes of the cause passed on */

static void
iso_time(time_t t, char *buf, size_t len)
{
	struct tm	 tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void NORETURN
notify_child(const struct account *ac, const struct ledger_status *ls)
{
	char		 since[32], when[32], fails[16];
	const char	*cause = ls->change_error != NULL ? ls->change_error : "";
	int		 fd;

	/*
	 * Our own group: ended whole at the timeout.  SIGPIPE as programs
	 * expect it (popbridge ignores it; exec would keep that).  SIGHUP
	 * and SIGUSR1 stay ignored as in the daemon's poll: "systemctl kill
	 * -s USR1 popbridge" reaches every process of the unit.
	 */
	setpgid(0, 0);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) != -1 && fd != STDIN_FILENO) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	dup2(STDERR_FILENO, STDOUT_FILENO);
	iso_time(ls->change_since, since, sizeof since);
	iso_time(ls->last_poll, when, sizeof when);
	snprintf(fails, sizeof fails, "%u", ls->change_fails);
	if (setenv("POPBRIDGE_ACCOUNT", ac->name, 1) == -1 ||
	    setenv("POPBRIDGE_STATE", ls->change == LEDGER_FAILING ?
	    "failing" : "recovered", 1) == -1 ||
	    setenv("POPBRIDGE_RESULT", result_words(ls->last_result), 1) ==
	    -1 ||
	    setenv("POPBRIDGE_CAUSE", strlen(cause) > NOTIFY_CAUSE_MAX ?
	    "(too long; see the log)" : cause, 1) == -1 ||
	    setenv("POPBRIDGE_SINCE", since, 1) == -1 ||
	    setenv("POPBRIDGE_TIME", when, 1) == -1 ||
	    setenv("POPBRIDGE_FAILURES", fails, 1) == -1)
		_exit(126);
	execl("/bin/sh", "sh", "-c", ac->notify_command, (char *)NULL);
	_exit(127);
}

/* Wait for pid until the monotonic time end; false if it has not ended. */
static bool
wait_until(pid_t pid, double end, int *status)
{
	struct timespec	 nap = { 0, 5 * 1000 * 1000 };
	pid_t		 r;

	for (;;) {
		if ((r = waitpid(pid, status, WNOHANG)) == pid ||
		    (r == -1 && errno != EINTR))
			return true;
		if (now_seconds() >= end)
			return false;
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 200 * 1000 * 1000)
			nap.tv_nsec *= 2;
	}
}

static void
notify_run(const struct account *ac, const struct ledger_status *ls)
{
	const char	*state = ls->change == LEDGER_FAILING ? "failing" :
	    "recovered";
	pid_t		 pid;
	int		 status = 0;

	fflush(NULL);
	if ((pid = fork()) == -1) {
		log_warn("%s: notify_command (%s): fork: %s", ac->name, state,
		    strerror(errno));
		return;
	}
	if (pid == 0)
		notify_child(ac, ls);
	setpgid(pid, pid);	/* as the child does: no race with the kill */
	if (!wait_until(pid, now_seconds() + NOTIFY_TIMEOUT, &status)) {
		kill(-pid, SIGTERM);
		if (!wait_until(pid, now_seconds() + NOTIFY_GRACE, &status)) {
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
		log_warn("%s: notify_command (%s) did not end within %d s; "
		    "ended", ac->name, state, NOTIFY_TIMEOUT);
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("%s: notify_command (%s) exited 0", ac->name, state);
	else if (WIFEXITED(status))
		log_warn("%s: notify_command (%s) exited %d", ac->name, state,
		    WEXITSTATUS(status));
	else
		log_warn("%s: notify_command (%s) ended by signal %d",
		    ac->name, state, WIFSIGNALED(status) ? WTERMSIG(status) :
		    0);
}

void
worker_notify(const struct config *cf, const struct account *ac,
    time_t started)
{
	struct ledger_status ls;
	char		*cause = NULL, since[32];

	if (ac->notify_command == NULL)
		return;
	if (ledger_read_status(cf->state_dir, ac, &ls, &cause) != RES_OK) {
		log_warn("%s: notify_command: %s", ac->name, cause);
		free(cause);
		return;
	}
	/* A run that recorded nothing (the mailbox busy, the ledger refused)
	 * changed nothing: the last row is an earlier run's, told already. */
	if (ls.ever_run && ls.last_poll >= started && ls.change != LEDGER_SAME) {
		iso_time(ls.change_since, since, sizeof since);
		log_info("%s: %s (%u failed poll%s in a row since %s); running "
		    "notify_command", ac->name, ls.change == LEDGER_FAILING ?
		    "failing" : "working again", ls.change_fails,
		    ls.change_fails == 1 ? "" : "s", since);
		notify_run(ac, &ls);
	}
	ledger_status_free(&ls);
}
