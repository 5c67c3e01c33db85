/*
 * One account run in a child process, for the daemon and the batch: the
 * parent keeps the schedule, the child does the work and reports back
 * through a pipe.  Whatever a run allocates is gone when it ends, and a
 * slow server holds up only its own child.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	char		*cause = NULL;
	enum result	 r;
	FILE		*f;

	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	r = account_run(cf, ac, &opts, &st, &cause);
	if ((f = fdopen(fd, "w")) != NULL) {
		fprintf(f, "%d %u %u %u %u %llu %.3f %u\n%s", (int)r, st.fresh,
		    st.imported, st.failed, st.deleted,
		    (unsigned long long)st.bytes, st.seconds, st.waiting,
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
	int		 r = RES_TEMP;

	memset(rep, 0, sizeof *rep);
	while (len < sizeof buf - 1 &&
	    (n = read(w->fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(w->fd);
	w->fd = -1;
	w->pid = 0;
	if (sscanf(buf, "%d %u %u %u %u %llu %lf %u", &r, &rep->st.fresh,
	    &rep->st.imported, &rep->st.failed, &rep->st.deleted, &bytes,
	    &rep->st.seconds, &rep->st.waiting) != 8 || r < RES_OK ||
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
	nl = strchr(buf, '\n');
	rep->cause = xstrdup(nl != NULL ? nl + 1 : "");
}
