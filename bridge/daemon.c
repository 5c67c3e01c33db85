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
 * keeps root to reread the config for SIGHUP (see "Rereading the config").
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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
#define CONFIG_MAX		(8 << 20)	/* bytes of config the helper copies */
#define REPLY_MAX		(16 << 20)	/* bytes of the helper's answer */
#define HELPER_TIMEOUT		30	/* seconds to wait for its answer */

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
	bool		 foreground;	/* -f */
	bool		 stopping;
};

char *
daemon_state_path(const struct config *cf)
{
	return xprintf("%s/daemon.state", cf->state_dir);
}

bool
daemon_running(const char *pid_file)
{
	int	 fd;
	bool	 running = false;

	if (file_open(pid_file, O_RDONLY, 0, &fd, NULL) != RES_OK)
		return false;
	if (flock(fd, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK)
		running = true;
	close(fd);
	return running;
}

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

static void
start_poll(struct daemon *d, const struct account *ac, struct sched *s)
{
	/* The child must not hold the pid file's lock past the daemon, nor
	 * keep the helper waiting for the end of its socket. */
	int	 fds[4] = { d->sigpipe[0], d->sigpipe[1], d->pidfd, d->helper };
	char	*cause = NULL;

	if (worker_start(d->cf, ac, fds, d->helper != -1 ? 4 : 3, &s->w,
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
	asked = r == RES_TEMP && throttle_hint(cause, &hint);
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

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (i = 0; i < d->ns; i++)
			if (d->s[i].w.pid == pid) {
				finish_poll(d, &d->s[i], status);
				break;
			}
}

/*
 * Rereading the config after dropping root.
 *
 * The daemon's user may not be able to read what root read at the start:
 * a config owned by root with mode 600 (the mode popbridge asks of a file
 * that holds a password), password files the same.  A descriptor kept
 * open from the start would not do: an editor saving the file, and
 * `popbridge add` appending an account, write a new file and rename it
 * over the old one, so the descriptor would go on reading the config of
 * the start and a reload would silently change nothing.  Refusing root's
 * files at the start would refuse the set-up `user` was made for.  So,
 * before dropping root, the daemon forks a helper that keeps it and does
 * one thing, when the daemon writes it a byte: read the config at its
 * path, check it as config_load does, read its password files, and answer
 * with a copy of the file (a memfd the daemon's user owns, with the file's
 * mode) and those passwords, or with why not.  It opens nothing the daemon
 * names: all a subverted daemon can get from it is the configuration and
 * the passwords the daemon holds anyway.  It ends when the daemon's end of
 * the socket closes (the daemon exits; its polls do not hold it).
 */
struct reply_head {
	int32_t		 result;	/* enum result */
	uint32_t	 moved;		/* state_dir, pid_file or user changed */
	uint32_t	 len;		/* bytes that follow: cause or passwords */
};

/* A buffer for passwords: a copy left behind when it grows is wiped. */
struct secret_buf {
	char		*p;
	size_t		 len, cap;
};

static void
secret_add(struct secret_buf *b, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
secret_add(struct secret_buf *b, const char *fmt, ...)
{
	va_list	 ap;
	char	*line, *bigger;
	size_t	 n;

	va_start(ap, fmt);
	line = xvprintf(fmt, ap);
	va_end(ap);
	n = strlen(line);
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		bigger = xmalloc(b->cap);
		if (b->len > 0)
			memcpy(bigger, b->p, b->len);
		if (b->p != NULL)
			explicit_bzero(b->p, b->len);
		free(b->p);
		b->p = bigger;
	}
	memcpy(b->p + b->len, line, n + 1);
	b->len += n;
	secret_free(line);
}

static char *
replace_all(const char *s, const char *from, const char *to)
{
	const char	*at;
	char		*out = xstrdup(""), *t;
	size_t		 n = strlen(from);

	while ((at = strstr(s, from)) != NULL) {
		t = xprintf("%s%.*s%s", out, (int)(at - s), s, to);
		free(out);
		out = t;
		s = at + n;
	}
	t = xprintf("%s%s", out, s);
	free(out);
	return t;
}

/* A path config_load made from a relative one in the copy's folder: from
 * the config's folder instead. */
static void
relocate(char **path, const char *from, const char *dir)
{
	char	*p;

	if (*path == NULL || strncmp(*path, from, strlen(from)) != 0)
		return;
	p = xprintf("%s/%s", dir, *path + strlen(from));
	free(*path);
	*path = p;
}

/*
 * config_load of the copy in fd as the file at path.  The copy is read as
 * /proc/PID/fd/N, whose folder config_load takes for the config's: the
 * relative password_file and ca_file paths it made there start from the
 * config's folder again, and messages name the config, not the copy.
 */
static enum result
load_copy(int fd, const char *path, struct config **cfp, char **cause)
{
	char		 proc[96], procdir[64], *dir, *tmp;
	size_t		 i;
	enum result	 r;

	snprintf(procdir, sizeof procdir, "/proc/%ld/fd/", (long)getpid());
	snprintf(proc, sizeof proc, "%s%d", procdir, fd);
	if ((r = config_load(proc, cfp, cause)) != RES_OK) {
		tmp = replace_all(*cause, proc, path);
		free(*cause);
		*cause = tmp;
		return r;
	}
	tmp = xstrdup(path);
	dir = xstrdup(dirname(tmp));
	free(tmp);
	for (i = 0; i < (*cfp)->naccounts; i++) {
		struct account *ac = &(*cfp)->accounts[i];

		relocate(&ac->pop3.password_file, procdir, dir);
		relocate(&ac->pop3.ca_file, procdir, dir);
		relocate(&ac->imap.password_file, procdir, dir);
		relocate(&ac->imap.ca_file, procdir, dir);
	}
	free(dir);
	free((*cfp)->path);
	(*cfp)->path = xstrdup(path);
	return RES_OK;
}

/* The helper: a copy of the config file for the daemon's user. */
static enum result
config_copy(const char *path, uid_t uid, gid_t gid, int *fdp, char **cause)
{
	struct stat	 sb;
	char		*data;
	size_t		 len, off = 0;
	ssize_t		 n;
	enum result	 r;
	int		 fd;

	*fdp = -1;
	if ((r = file_read(path, CONFIG_MAX, &data, &len, &sb, cause)) !=
	    RES_OK)
		return r;
	if ((fd = memfd_create("popbridge.conf", MFD_CLOEXEC)) == -1)
		r = fail(cause, RES_TEMP, "memfd_create: %s", strerror(errno));
	while (r == RES_OK && off < len) {
		if ((n = write(fd, data + off, len - off)) == -1 &&
		    errno != EINTR)
			r = fail(cause, RES_TEMP, "memfd: %s", strerror(errno));
		off += n > 0 ? (size_t)n : 0;
	}
	if (r == RES_OK && (fchown(fd, uid, gid) == -1 ||
	    fchmod(fd, sb.st_mode & 0777) == -1))
		r = fail(cause, RES_TEMP, "memfd: %s", strerror(errno));
	explicit_bzero(data, len);
	free(data);
	if (r != RES_OK) {
		if (fd != -1)
			close(fd);
		return r;
	}
	*fdp = fd;
	return RES_OK;
}

/* The helper: "ACCOUNT SIDE PASSWORD" lines, one per password_file. */
static enum result
config_passwords(const struct config *cf, struct secret_buf *b, char **cause)
{
	const struct endpoint *ep;
	char		*secret, *why = NULL;
	size_t		 i, j;
	enum result	 r;

	for (i = 0; i < cf->naccounts; i++)
		for (j = 0; j < 2; j++) {
			ep = j == 0 ? &cf->accounts[i].pop3 :
			    &cf->accounts[i].imap;
			if (ep->password_file == NULL)
				continue;
			if ((r = config_secret(ep, &secret, &why)) != RES_OK) {
				fail(cause, r, "account \"%s\": %s: %s",
				    cf->accounts[i].name, j == 0 ? "pop3" :
				    "imap", why);
				free(why);
				return r;
			}
			secret_add(b, "%zu %zu %s\n", i, j, secret);
			secret_free(secret);
		}
	return RES_OK;
}

static bool
same(const char *a, const char *b)
{
	return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* Settings a reload does not change; true if cf has others. */
static bool
keep_settings(const struct config *old, struct config *cf)
{
	bool	 moved;

	moved = !same(old->state_dir, cf->state_dir) ||
	    !same(old->pid_file, cf->pid_file) || !same(old->user, cf->user);
	free(cf->state_dir);
	free(cf->pid_file);
	free(cf->user);
	cf->state_dir = xstrdup(old->state_dir);
	cf->pid_file = xstrdup(old->pid_file);
	cf->user = old->user != NULL ? xstrdup(old->user) : NULL;
	return moved;
}

static void
helper_send(int sock, const struct reply_head *h, int fd, const char *data)
{
	union {
		struct cmsghdr	 c;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}		 u;
	struct msghdr	 msg;
	struct iovec	 iov = { (void *)h, sizeof *h };
	size_t		 off = 0;
	ssize_t		 n;

	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd != -1) {
		memset(&u, 0, sizeof u);
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		u.c.cmsg_level = SOL_SOCKET;
		u.c.cmsg_type = SCM_RIGHTS;
		u.c.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&u.c), &fd, sizeof fd);
	}
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof *h)
		_exit(0);	/* the daemon is gone */
	while (off < h->len) {
		if ((n = send(sock, data + off, h->len - off, MSG_NOSIGNAL)) ==
		    -1 && errno != EINTR)
			_exit(0);
		off += n > 0 ? (size_t)n : 0;
	}
}

/* The helper's answer to one request: reread the config as root. */
static void
helper_answer(int sock, const char *path, const struct config *start,
    uid_t uid, gid_t gid)
{
	struct reply_head h = { RES_OK, 0, 0 };
	struct secret_buf b = { NULL, 0, 0 };
	struct config	*cf = NULL;
	char		*cause = NULL;
	enum result	 r;
	int		 fd = -1;

	if ((r = config_copy(path, uid, gid, &fd, &cause)) == RES_OK &&
	    (r = load_copy(fd, path, &cf, &cause)) == RES_OK &&
	    (r = config_passwords(cf, &b, &cause)) == RES_OK)
		h.moved = keep_settings(start, cf);
	h.result = r;
	if (r == RES_OK) {
		h.len = (uint32_t)b.len;
		helper_send(sock, &h, fd, b.p);
	} else {
		h.len = (uint32_t)strlen(cause);
		helper_send(sock, &h, -1, cause);
	}
	if (b.p != NULL)
		explicit_bzero(b.p, b.len);
	free(b.p);
	free(cause);
	config_free(cf);
	if (fd != -1)
		close(fd);
}

static void NORETURN
helper_main(int sock, struct daemon *d, uid_t uid, gid_t gid)
{
	struct config	 start;
	unsigned char	 c;
	ssize_t		 n;
	int		 fd;

	/* Not the daemon's signals: "kill -HUP" or Ctrl-C of the whole group
	 * must not end it; SIGTERM (systemd stopping the unit) may. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	close(d->pidfd);
	/* It says nothing; a detaching daemon's caller (a shell's $(...),
	 * ssh) must see the end of its output when the daemon detaches. */
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (!d->foreground)
			dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	/* What a reload cannot change, compared; the rest (passwords) goes. */
	memset(&start, 0, sizeof start);
	start.state_dir = xstrdup(d->cf->state_dir);
	start.pid_file = xstrdup(d->cf->pid_file);
	start.user = xstrdup(d->cf->user);
	config_free(d->cf);
	d->cf = NULL;
	for (;;) {
		if ((n = read(sock, &c, 1)) == 1)
			helper_answer(sock, d->config, &start, uid, gid);
		else if (n == 0 || errno != EINTR)
			_exit(0);
	}
}

/* Before dropping root for `user`: the helper (when the daemon drops). */
static enum result
helper_start(struct daemon *d, char **cause)
{
	const struct timeval tv = { HELPER_TIMEOUT, 0 };
	struct passwd	*pw;
	uid_t		 uid;
	gid_t		 gid;
	pid_t		 pid;
	int		 sv[2];

	if (d->cf->user == NULL || geteuid() != 0 ||
	    (pw = getpwnam(d->cf->user)) == NULL)
		return RES_OK;		/* nothing to drop, or it says why */
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return fail(cause, RES_TEMP, "socketpair: %s", strerror(errno));
	fflush(NULL);
	if ((pid = fork()) == -1) {
		close(sv[0]);
		close(sv[1]);
		return fail(cause, RES_TEMP, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		close(sv[0]);
		helper_main(sv[1], d, uid, gid);
	}
	close(sv[1]);
	if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1)
		log_debug("SO_RCVTIMEO: %s", strerror(errno));
	d->helper = sv[0];
	return RES_OK;
}

/* Ask the helper; its answer's head, the copy's descriptor, the rest. */
static bool
helper_ask(int sock, struct reply_head *h, int *fd, char **data)
{
	union {
		struct cmsghdr	 c;
		char		 buf[CMSG_SPACE(sizeof(int))];
	}		 u;
	struct cmsghdr	*c;
	struct msghdr	 msg;
	struct iovec	 iov = { h, sizeof *h };
	size_t		 off = 0;
	ssize_t		 n;

	*fd = -1;
	*data = NULL;
	if (send(sock, "R", 1, MSG_NOSIGNAL) != 1)
		return false;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) == -1 &&
	    errno == EINTR)
		;
	if (n != (ssize_t)sizeof *h)
		return false;
	for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof *fd);
	if (h->len > REPLY_MAX)
		return false;
	*data = xmalloc(h->len + 1);
	while (off < h->len) {
		if ((n = read(sock, *data + off, h->len - off)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			return false;
		}
		off += (size_t)n;
	}
	(*data)[h->len] = '\0';
	return true;
}

/* The passwords of the helper's answer into cf's password_file endpoints. */
static void
apply_passwords(struct config *cf, char *text)
{
	struct endpoint	*ep;
	char		*line, *next, *end;
	unsigned long	 i, j;

	for (line = text; *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) == NULL)
			break;
		*next++ = '\0';
		i = strtoul(line, &end, 10);
		if (*end != ' ' || i >= cf->naccounts)
			continue;
		j = strtoul(end + 1, &end, 10);
		if (*end != ' ' || j > 1)
			continue;
		ep = j == 0 ? &cf->accounts[i].pop3 : &cf->accounts[i].imap;
		if (ep->password_file == NULL)
			continue;
		secret_free(ep->password);
		ep->password = xstrdup(end + 1);
		free(ep->password_file);
		ep->password_file = NULL;
	}
}

/* The config as the helper reads it; false if it cannot be asked. */
static bool
helper_load(struct daemon *d, struct config **cfp, bool *moved,
    enum result *r, char **cause)
{
	struct reply_head h;
	char		*data;
	int		 fd;

	if (!helper_ask(d->helper, &h, &fd, &data)) {
		if (fd != -1)
			close(fd);
		free(data);
		return false;
	}
	*moved = h.moved != 0;
	if ((*r = (enum result)h.result) != RES_OK) {
		*cause = data;
		data = NULL;
	} else if (fd == -1)
		*r = fail(cause, RES_TEMP, "the helper sent no copy of %s",
		    d->config);
	else if ((*r = load_copy(fd, d->config, cfp, cause)) == RES_OK)
		apply_passwords(*cfp, data);
	if (fd != -1)
		close(fd);
	if (data != NULL) {
		explicit_bzero(data, h.len);
		free(data);
	}
	return true;
}

static void
reload(struct daemon *d)
{
	struct config	*cf = NULL;
	char		*cause = NULL;
	enum result	 r;
	bool		 moved = false, asked = false;

	if (d->helper != -1 &&
	    !(asked = helper_load(d, &cf, &moved, &r, &cause))) {
		log_warn("config reload: the root helper does not answer; "
		    "reading %s as %s (a restart brings the helper back)",
		    d->config, d->cf->user);
		close(d->helper);
		d->helper = -1;
	}
	if (!asked)
		r = config_load(d->config, &cf, &cause);
	if (r != RES_OK) {
		log_warn("config reload failed, keeping the old configuration: "
		    "%s", cause);
		free(cause);
		return;
	}
	/* The helper compared them as root, whose default state_dir may not
	 * be the daemon user's; kept either way. */
	if (keep_settings(d->cf, cf) && !asked)
		moved = true;
	if (moved)
		log_warn("config reload: state_dir, pid_file and user take "
		    "effect only at restart");
	config_free(d->cf);
	d->cf = cf;
	sched_sync(d);
	log_info("config reloaded: %zu account%s", cf->naccounts,
	    cf->naccounts == 1 ? "" : "s");
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
	size_t		 i;

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
			/*
			 * A poll under way may have listed the mailbox before
			 * the mail the user is waiting for came: poll it again
			 * as soon as it ends.
			 */
			for (i = 0; i < d->ns; i++) {
				d->s[i].next = 0;
				d->s[i].again = d->s[i].w.pid != 0;
			}
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

static void
loop(struct daemon *d)
{
	struct pollfd	 pfd;
	int		 wait;

	while (!d->stopping) {
		reap(d);
		wait = start_due(d);
		write_state(d);
		pfd.fd = d->sigpipe[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, wait * 1000) > 0)
			handle_signals(d);
	}
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
	for (i = 0; i < cf->naccounts; i++) {
		struct endpoint *eps[2] = { &cf->accounts[i].pop3,
			&cf->accounts[i].imap };
		size_t j;

		for (j = 0; j < 2; j++) {
			if (eps[j]->password_file == NULL)
				continue;
			if ((r = config_secret(eps[j], &eps[j]->password,
			    cause)) != RES_OK)
				return r;
			free(eps[j]->password_file);
			eps[j]->password_file = NULL;
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

int
cmd_daemon(struct globals *g, int argc, char **argv)
{
	struct daemon	 d;
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD };
	bool		 foreground = false;
	char		*cause = NULL, *state;
	enum result	 r;
	size_t		 i;
	int		 ch;

	while ((ch = getopt(argc, argv, "f")) != -1) {
		if (ch != 'f') {
			fprintf(stderr, "usage: popbridge [-c FILE] daemon "
			    "[-f]\n");
			return EX_USAGE;
		}
		foreground = true;
	}
	if (argc != optind) {
		fprintf(stderr, "usage: popbridge [-c FILE] daemon [-f]\n");
		return EX_USAGE;
	}
	memset(&d, 0, sizeof d);
	d.helper = -1;
	d.foreground = foreground;
	d.config = absolute_path(g->config);
	if ((r = config_load(d.config, &d.cf, &cause)) != RES_OK) {
		log_warn("%s", cause);
		free(cause);
		free(d.config);
		return result_exit_code(r);
	}
	if ((r = check_dirs(d.cf, &cause)) != RES_OK ||
	    (r = lock_pid_file(d.cf->pid_file, &d.pidfd, &cause)) != RES_OK) {
		log_warn("%s", cause);
		free(cause);
		config_free(d.cf);
		free(d.config);
		return result_exit_code(r);
	}
	if ((r = helper_start(&d, &cause)) != RES_OK ||
	    (r = drop_privileges(d.cf, &cause)) != RES_OK) {
		log_warn("%s", cause);
		free(cause);
		config_free(d.cf);
		free(d.config);
		return result_exit_code(r);
	}
	if (!foreground) {
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
	loop(&d);

	state = daemon_state_path(d.cf);
	unlink(state);
	free(state);
	unlink(d.cf->pid_file);
	close(d.pidfd);
	log_info("daemon stopped");
	for (i = 0; i < d.ns; i++) {
		free(d.s[i].name);
		free(d.s[i].last_error);
	}
	free(d.s);
	config_free(d.cf);
	if (d.helper != -1)
		close(d.helper);
	free(d.config);
	return EX_OK;
}
