/*
 * `popbridge daemon`: poll every account on its own schedule until
 * stopped.
 *
 * Each poll runs in a child process (fork, account_run, exit), up to `jobs`
 * at once: a slow or dead server delays only its own account, and whatever
 * a run allocates is gone when it ends, so the daemon stays flat over
 * thousands of polls.  The child reports its result through a pipe; the
 * parent keeps the schedule: the next poll after `interval` (a little
 * earlier, by a random jitter), exponential backoff after failures up to
 * `max_backoff`, reset by the first success.
 *
 * Signals reach the loop through a self-pipe: SIGUSR1 polls everything now,
 * SIGHUP reloads the config (a broken one is refused and the old one kept),
 * SIGTERM and SIGINT ask the children to finish the message in flight (they
 * then QUIT, committing what is durable) and exit.
 *
 * Started as root with `user`, the daemon leaves a helper behind that
 * keeps root to reread the config for SIGHUP (reload.c).
 *
 * With `listen`, a process of its own serves the web page (web.c); its
 * "Check now" requests come to the loop on a socket, beside the signals,
 * and do what SIGUSR1 does, for one account or all.
 */
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "bridge.h"

#define FIRST_POLL_JITTER	5	/* seconds: spread the first polls */
#define STOP_GRACE		20	/* seconds before children are killed */
#define CLOSE_MAX		6	/* descriptors a child closes */

struct sched {
	char		*name;
	time_t		 next;		/* when to poll next */
	unsigned int	 failures;	/* in a row */
	struct worker	 w;		/* a running poll: w.pid != 0 */
	char		*last_error;	/* to log an auth failure once */
	bool		 present;	/* still in the config */
	bool		 again;		/* SIGUSR1 came while it polled */
};

struct daemon {
	char		*config;	/* the config's path from "/" */
	struct config	*cf;
	struct sched	*s;
	size_t		 ns;
	int		 sigpipe[2];
	int		 pidfd;
	int		 helper;	/* to the root helper; -1: none */
	struct web	 web;		/* the web page, if listen is set */
	bool		 foreground;	/* -f */
	bool		 stopping;
};

/* Random in [0, n], good enough to spread polls. */
static long
jitter(long n)
{
	return n <= 0 ? 0 : random() % (n + 1);
}

static long
next_delay(const struct daemon *d, const struct account *ac,
    const struct sched *s)
{
	long	 delay, backoff;

	if (s->failures == 0)
		return ac->interval - jitter(ac->interval / 20);
	/* 2, 4, 8 ... minutes, never sooner than the interval. */
	backoff = s->failures >= 12 ? d->cf->max_backoff :
	    60L << s->failures;
	delay = backoff > ac->interval ? backoff : ac->interval;
	return delay > d->cf->max_backoff ? d->cf->max_backoff : delay;
}

static struct sched *
sched_find(struct daemon *d, const char *name)
{
	size_t	 i;

	for (i = 0; i < d->ns; i++)
		if (strcmp(d->s[i].name, name) == 0)
			return &d->s[i];
	return NULL;
}

/* Match the schedule to the config's accounts, keeping known state. */
static void
sched_sync(struct daemon *d)
{
	struct sched	*s;
	size_t		 i, j;
	time_t		 now = time(NULL);

	for (i = 0; i < d->ns; i++)
		d->s[i].present = false;
	for (i = 0; i < d->cf->naccounts; i++) {
		if ((s = sched_find(d, d->cf->accounts[i].name)) == NULL) {
			d->s = xrealloc(d->s, (d->ns + 1) * sizeof *d->s);
			s = &d->s[d->ns++];
			memset(s, 0, sizeof *s);
			s->name = xstrdup(d->cf->accounts[i].name);
			s->w.fd = -1;
			s->next = now + jitter(FIRST_POLL_JITTER);
		}
		s->present = true;
	}
	/* Forget removed accounts once their poll is over. */
	for (i = j = 0; i < d->ns; i++) {
		if (!d->s[i].present && d->s[i].w.pid == 0) {
			free(d->s[i].name);
			free(d->s[i].last_error);
			continue;
		}
		d->s[j++] = d->s[i];
	}
	d->ns = j;
}

/*
 * The state file `status` reads: name, next poll, failures in a row.
 * Replaced whole through a fresh temporary file (file.c): a link planted
 * at any name in state_dir is never written through.
 */
static void
write_state(struct daemon *d)
{
	char	*path = daemon_state_path(d->cf), *text = NULL, *cause = NULL;
	size_t	 i, len = 0;
	FILE	*f;

	if ((f = open_memstream(&text, &len)) == NULL)
		fatal("out of memory writing the daemon's state");
	for (i = 0; i < d->ns; i++)
		fprintf(f, "%s\t%lld\t%u\t%d\n", d->s[i].name,
		    (long long)d->s[i].next, d->s[i].failures,
		    d->s[i].w.pid != 0);
	if (fclose(f) != 0)
		fatal("out of memory writing the daemon's state");
	if (file_replace(path, text, len, 0600, &cause) != RES_OK) {
		log_debug("%s", cause);
		free(cause);
	}
	free(text);
	free(path);
}

/*
 * What a child (a poll, the web page's process) closes: it must not hold
 * the pid file's lock past the daemon, keep the helper waiting for the
 * end of its socket, or (a poll) accept the page's connections.
 */
static size_t
child_fds(const struct daemon *d, int *fds, bool web)
{
	size_t	 n = 0;

	fds[n++] = d->sigpipe[0];
	fds[n++] = d->sigpipe[1];
	fds[n++] = d->pidfd;
	if (d->helper != -1)
		fds[n++] = d->helper;
	return n + (web ? web_fds(&d->web, fds + n) : 0);
}

static void
start_poll(struct daemon *d, const struct account *ac, struct sched *s)
{
	int	 fds[CLOSE_MAX];
	char	*cause = NULL;

	if (worker_start(d->cf, ac, fds, child_fds(d, fds, true), &s->w,
	    &cause) != RES_OK) {
		log_warn("%s: cannot poll: %s", ac->name, cause);
		free(cause);
		s->next = time(NULL) + 60;
		return;
	}
	log_debug("%s: polling (pid %ld)", ac->name, (long)s->w.pid);
}

/* Read what a finished child reported, log it, schedule the next poll. */
static void
finish_poll(struct daemon *d, struct sched *s, int status)
{
	const struct account *ac = config_find(d->cf, s->name);
	struct worker_report rep;
	unsigned int	 fresh, imported, failed, deleted;
	double		 secs, bytes;
	char		*cause;
	enum result	 r;
	long		 delay, hint = 0;
	bool		 quiet, asked;

	worker_finish(&s->w, status, &rep);
	r = rep.r;
	cause = rep.cause;
	fresh = rep.st.fresh;
	imported = rep.st.imported;
	failed = rep.st.failed;
	deleted = rep.st.deleted;
	bytes = (double)rep.st.bytes;
	secs = rep.st.seconds;
	if (r == RES_OK || r == RES_MSG) {
		s->failures = 0;
		free(s->last_error);
		s->last_error = NULL;
	} else
		s->failures++;
	quiet = r == RES_AUTH && s->last_error != NULL &&
	    strcmp(s->last_error, cause) == 0;
	if (r != RES_OK && cause[0] != '\0') {
		/* The same refused login at every poll is said once. */
		if (quiet)
			log_debug("%s: %s (unchanged)", s->name, cause);
		else
			log_warn("%s: %s", s->name, cause);
		if (r != RES_MSG) {
			free(s->last_error);
			s->last_error = xstrdup(cause);
		}
	}
	if (fresh > 0)
		log_info("%s: %u new, %u imported, %u failed, %u deleted, "
		    "%.1f MB in %.1f s", s->name, fresh, imported, failed,
		    deleted, bytes / 1e6, secs);
	else
		log_debug("%s: nothing new (%.1f s)", s->name, secs);
	/* "Try again in 10 minutes": a server that says so gets as long. */
	hint = rep.thr.retry_after;
	asked = hint > 0;
	free(cause);
	if (ac != NULL) {
		delay = next_delay(d, ac, s);
		if (asked && hint > delay)
			delay = hint;
		s->next = time(NULL) + (s->again ? 0 : delay);
		s->again = false;
		if (s->failures > 0 && s->next > time(NULL))
			(quiet ? log_debug : log_info)("%s: next poll in %ld s "
			    "(failure %u in a row%s)", s->name, delay,
			    s->failures, asked && hint >= delay ?
			    ", as the server asked" : "");
	}
}

static void
reap(struct daemon *d)
{
	pid_t	 pid;
	int	 status;
	size_t	 i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (web_reaped(&d->web, pid, status))
			continue;
		for (i = 0; i < d->ns; i++)
			if (d->s[i].w.pid == pid) {
				finish_poll(d, &d->s[i], status);
				break;
			}
	}
}


/* SIGHUP: the config reread (reload.c), the schedule and page to it. */
static void
reload(struct daemon *d)
{
	struct config	*cf;
	int		 fds[CLOSE_MAX];

	if ((cf = reload_config(d->cf, d->config, &d->helper)) == NULL)
		return;
	config_free(d->cf);
	d->cf = cf;
	sched_sync(d);
	web_restart(&d->web, d->cf, fds, child_fds(d, fds, false));
	log_info("config reloaded: %zu account%s", cf->naccounts,
	    cf->naccounts == 1 ? "" : "s");
}

/*
 * Poll an account now (name), or every one (""): SIGUSR1, and the web
 * page's "Check now".  A poll under way may have listed the mailbox
 * before the mail the user is waiting for came: it polls again as soon
 * as it ends.
 */
static void
check_now(void *arg, const char *name)
{
	struct daemon	*d = arg;
	size_t		 i;

	for (i = 0; i < d->ns; i++) {
		if (name[0] != '\0' && strcmp(d->s[i].name, name) != 0)
			continue;
		d->s[i].next = 0;
		d->s[i].again = d->s[i].w.pid != 0;
		if (name[0] != '\0')
			log_info("%s: polling now, as the web page asked",
			    d->s[i].name);
	}
}

static size_t
running(const struct daemon *d)
{
	size_t	 i, n = 0;

	for (i = 0; i < d->ns; i++)
		n += d->s[i].w.pid != 0;
	return n;
}

/* Start every due poll within the jobs limit; return seconds to wait. */
static int
start_due(struct daemon *d)
{
	time_t		 now = time(NULL);
	long		 wait = 60;
	size_t		 i;

	for (i = 0; i < d->ns; i++) {
		struct sched *s = &d->s[i];
		const struct account *ac;

		if (s->w.pid != 0 || !s->present ||
		    (ac = config_find(d->cf, s->name)) == NULL)
			continue;
		if (s->next <= now && running(d) < (size_t)d->cf->jobs)
			start_poll(d, ac, s);
		else if (s->next > now && s->next - now < wait)
			wait = s->next - now;
		else if (s->next <= now)
			wait = 1;	/* waiting for a free job slot */
	}
	return (int)wait;
}

static void
handle_signals(struct daemon *d)
{
	unsigned char	 c;

	while (read(d->sigpipe[0], &c, 1) == 1) {
		switch (c) {
		case SIGTERM:
		case SIGINT:
			if (!d->stopping)
				log_info("stopping: finishing the messages in "
				    "flight");
			d->stopping = true;
			break;
		case SIGHUP:
			reload(d);
			break;
		case SIGUSR1:
			log_info("polling every account now");
			check_now(d, "");
			break;
		default:
			break;		/* SIGCHLD: reaped below */
		}
	}
}

static void
stop_children(struct daemon *d)
{
	time_t	 deadline = time(NULL) + STOP_GRACE;
	size_t	 i;

	for (i = 0; i < d->ns; i++)
		if (d->s[i].w.pid != 0)
			kill(d->s[i].w.pid, SIGTERM);
	while (running(d) > 0 && time(NULL) < deadline) {
		usleep(50000);
		reap(d);
	}
	for (i = 0; i < d->ns; i++)
		if (d->s[i].w.pid != 0) {
			/* Safe at any instant: the ledger settles it. */
			log_warn("%s: poll did not stop in %d s; killed",
			    d->s[i].name, STOP_GRACE);
			kill(d->s[i].w.pid, SIGKILL);
		}
	while (running(d) > 0 && waitpid(-1, NULL, 0) > 0)
		reap(d);
}

/* A "Check now" from the page, logged as the page's for all. */
static void
page_check(void *arg, const char *name)
{
	if (name[0] == '\0')
		log_info("polling every account now, as the web page asked");
	check_now(arg, name);
}

static void
loop(struct daemon *d)
{
	struct pollfd	 pfd[2];
	int		 fds[CLOSE_MAX];
	long		 wait;

	while (!d->stopping) {
		reap(d);
		wait = start_due(d);
		wait = web_due(&d->web, d->cf, fds, child_fds(d, fds, false),
		    wait);
		write_state(d);
		pfd[0].fd = d->sigpipe[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = d->web.chan;	/* -1: ignored */
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		if (poll(pfd, 2, (int)wait * 1000) > 0) {
			if (pfd[0].revents != 0)
				handle_signals(d);
			if (pfd[1].revents != 0)
				web_read(&d->web, page_check, d);
		}
	}
	web_close(&d->web);	/* first: it ends at once */
	stop_children(d);
}

/*
 * The pid file, locked for as long as the daemon lives.  Root opens it,
 * perhaps in a folder that the daemon's user owns, so never through a link
 * and never a hard link to a file elsewhere (file.c): either would have
 * root truncate someone else's file.
 */
static enum result
lock_pid_file(const char *path, int *fdp, char **cause)
{
	char		 buf[32];
	ssize_t		 n;
	enum result	 r;

	if ((r = file_open(path, O_RDWR | O_CREAT, 0644, fdp, cause)) !=
	    RES_OK)
		return r;
	if (flock(*fdp, LOCK_EX | LOCK_NB) == -1) {
		n = read(*fdp, buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		close(*fdp);
		*fdp = -1;
		return fail(cause, RES_TEMP, "a popbridge daemon is already "
		    "running (pid %s, %s)", buf[0] != '\0' ? buf : "?", path);
	}
	return RES_OK;
}

/*
 * state_dir and the pid file's folder must be ours (or root's, or the
 * config's `user`'s) and writable by nobody else: anyone else who can
 * write there can plant a link for root to write through.  state_dir is
 * made if missing, as before.
 */
static enum result
check_dirs(const struct config *cf, char **cause)
{
	char		*tmp, real[PATH_MAX];
	enum result	 r;

	file_trust_user(cf->user);
	if (mkdir(cf->state_dir, 0700) == -1 && errno != EEXIST)
		return fail(cause, RES_TEMP, "cannot make state_dir %s: %s",
		    cf->state_dir, strerror(errno));
	if ((r = file_dir_safe(cf->state_dir, "state_dir", cause)) != RES_OK)
		return r;
	/* Links above the pid file are fine (/var/run -> /run). */
	tmp = xstrdup(cf->pid_file);
	if (realpath(dirname(tmp), real) == NULL)
		r = fail(cause, RES_TEMP, "cannot open %s: %s", cf->pid_file,
		    strerror(errno));
	else
		r = file_dir_safe(real, "the pid file's folder", cause);
	free(tmp);
	return r;
}

static void
write_pid(int fd)
{
	char	 buf[32];
	int	 n;

	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		log_warn("cannot write the pid file: %s", strerror(errno));
}

/* Hand state_dir and the ledgers in it (made by root runs) to the user. */
static int
chown_state_dir(const char *dir, const struct passwd *pw)
{
	DIR		*dp;
	struct dirent	*de;
	int		 fd, rc = 0;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1)
		return -1;
	if (fchown(fd, pw->pw_uid, pw->pw_gid) == -1 ||
	    (dp = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		/* Not following links: a link here is not ours to hand. */
		if (fchownat(fd, de->d_name, pw->pw_uid, pw->pw_gid,
		    AT_SYMLINK_NOFOLLOW) == -1)
			rc = -1;
	}
	closedir(dp);
	return rc;
}

/*
 * Drop root for `user`, after the config and any password files have been
 * read (the secrets stay in memory; password_command runs as the user).
 */
static enum result
drop_privileges(struct config *cf, char **cause)
{
	struct passwd	*pw;
	size_t		 i;
	enum result	 r;

	if (cf->user == NULL || geteuid() != 0)
		return RES_OK;
	if ((pw = getpwnam(cf->user)) == NULL)
		return fail(cause, RES_CONFIG, "%s: no such user \"%s\"",
		    cf->path, cf->user);
	/* Every login's: a routing destination's password_file too. */
	for (i = 0; i < cf->naccounts; i++) {
		struct endpoint *ep;
		const char	*side;
		size_t		 j;

		for (j = 0; (ep = config_account_endpoint(&cf->accounts[i], j,
		    &side)) != NULL; j++) {
			if (ep->password_file == NULL)
				continue;
			if ((r = config_secret(ep, &ep->password, cause)) !=
			    RES_OK)
				return r;
			free(ep->password_file);
			ep->password_file = NULL;
		}
	}
	if (chown_state_dir(cf->state_dir, pw) == -1)
		return fail(cause, RES_TEMP, "cannot hand %s to %s: %s",
		    cf->state_dir, cf->user, strerror(errno));
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		return fail(cause, RES_TEMP, "cannot become %s: %s", cf->user,
		    strerror(errno));
	/*
	 * The change of uid set "dumpable" to fs.suid_dumpable, which may
	 * be 1: not dumpable again (main.c), or a core of the daemon, or a
	 * ptrace by any process of `user`, would show the passwords.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		return fail(cause, RES_TEMP, "cannot turn core dumps off: %s",
		    strerror(errno));
	return RES_OK;
}

/*
 * The config's path from "/": a detached daemon works in "/", where a
 * relative -c names nothing, and SIGHUP must reread the file the daemon
 * started with.  Joined to the working folder, not resolved with
 * realpath(3): a config that is a symbolic link stays one (a link moved to
 * another file is followed at the next reload), and a relative
 * password_file starts from the folder it starts from for `run`.
 */
static char *
absolute_path(const char *path)
{
	char	 cwd[PATH_MAX];

	if (path[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
		return xstrdup(path);
	if (strncmp(path, "./", 2) == 0)
		path += 2;
	return xprintf("%s/%s", cwd, path);
}

static bool
detach(void)
{
	pid_t	 pid;
	int	 fd;

	if ((pid = fork()) == -1)
		return false;
	if (pid > 0)
		_exit(0);
	if (setsid() == -1)
		return false;
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return chdir("/") == 0;
}

/* -f, or nothing: true with *foreground, or false after the usage. */
static bool
daemon_args(int argc, char **argv, bool *foreground)
{
	int	 ch;

	*foreground = false;
	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f')
			break;
		*foreground = true;
	}
	if (ch != -1 || argc != optind) {
		fprintf(stderr, "usage: popbridge [-c FILE] daemon [-f]\n");
		return false;
	}
	return true;
}

/*
 * What root (if root) does before it is `user`: the config and its
 * folders, the pid lock, the page's port and token file, the reload
 * helper, the password files; then the privileges dropped.  On failure
 * the cause is logged and all of it undone.
 */
static enum result
daemon_setup(struct daemon *d, const char *config)
{
	char		*cause = NULL;
	enum result	 r;
	int		 fds[CLOSE_MAX];

	d->helper = -1;
	d->pidfd = -1;
	d->web.listen_fd = d->web.chan = -1;
	d->config = absolute_path(config);
	if ((r = config_load(d->config, &d->cf, &cause)) != RES_OK)
		goto failed;
	if ((r = check_dirs(d->cf, &cause)) != RES_OK ||
	    (r = lock_pid_file(d->cf->pid_file, &d->pidfd, &cause)) != RES_OK)
		goto failed;
	/* The page's port and token file are opened as root, if root. */
	fds[0] = d->pidfd;
	if ((r = web_open(&d->web, d->cf, &cause)) != RES_OK ||
	    (r = reload_helper_start(d->cf, d->config, d->foreground, fds,
	    1 + web_fds(&d->web, fds + 1), &d->helper, &cause)) != RES_OK ||
	    (r = drop_privileges(d->cf, &cause)) != RES_OK ||
	    (r = web_token_command(&d->web, d->cf, &cause)) != RES_OK) {
		web_close(&d->web);
		goto failed;
	}
	return RES_OK;
failed:
	log_warn("%s", cause);
	free(cause);
	config_free(d->cf);
	free(d->config);
	return r;
}

/* The pid and state files gone, everything freed. */
static void
daemon_end(struct daemon *d)
{
	char	*state;
	size_t	 i;

	state = daemon_state_path(d->cf);
	unlink(state);
	free(state);
	unlink(d->cf->pid_file);
	close(d->pidfd);
	log_info("daemon stopped");
	for (i = 0; i < d->ns; i++) {
		free(d->s[i].name);
		free(d->s[i].last_error);
	}
	free(d->s);
	config_free(d->cf);
	if (d->helper != -1)
		close(d->helper);
	free(d->config);
}

int
cmd_daemon(struct globals *g, int argc, char **argv)
{
	struct daemon	 d;
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD };
	int		 fds[CLOSE_MAX];
	enum result	 r;

	memset(&d, 0, sizeof d);
	if (!daemon_args(argc, argv, &d.foreground))
		return EX_USAGE;
	if ((r = daemon_setup(&d, g->config)) != RES_OK)
		return result_exit_code(r);
	if (!d.foreground) {
		if (!detach()) {
			log_warn("cannot detach: %s", strerror(errno));
			return EX_OSERR;
		}
		/* After detaching: stderr is /dev/null now, not a journal. */
		log_open(false, g->verbose);
	} else
		log_open(true, g->verbose);
	write_pid(d.pidfd);
	srandom((unsigned int)(getpid() ^ time(NULL)));

	sigpipe_open(d.sigpipe, sigs, sizeof sigs / sizeof sigs[0]);

	sched_sync(&d);
	log_info("daemon started: %zu account%s, pid %ld", d.cf->naccounts,
	    d.cf->naccounts == 1 ? "" : "s", (long)getpid());
	if (d.web.listen_fd != -1) {
		web_start(&d.web, d.cf, fds, child_fds(&d, fds, false));
		log_info("web page: http://%s/", d.cf->listen);
	}
	loop(&d);
	daemon_end(&d);
	return EX_OK;
}
