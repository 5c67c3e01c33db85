/*
 * The daemon's side of its web page (listen = "ADDRESS:PORT"): the
 * listening socket, the token, the process that serves the page, and the
 * "Check now" requests that come back from it.
 *
 * The page is served by a process of its own, forked from the daemon and
 * running libmicrohttpd's thread (http.c), not by a thread in the daemon.
 * The daemon forks a child for every poll; a fork while another thread
 * holds a lock (SQLite's, reading a ledger for the page; syslog's) leaves
 * that lock held forever in the child, which would then hang on its own
 * ledger; and a crash on the HTTP side would end the polling with it.  As
 * a process it shares no lock with the polls, holds no password (they are
 * wiped from its copy of the config), and when it dies the daemon says so
 * and starts it again, with a growing wait if it keeps dying.
 *
 * The daemon owns the listening socket, bound before it drops root (so a
 * port below 1024 is possible) and kept across restarts of the process
 * and reloads of the config, and the token, read once at the start.  The
 * page's process asks for a poll with a line "check NAME\n" (NAME empty:
 * every account) on a socket that the poll loop watches beside its
 * signals: it never touches the schedule itself.
 */
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

#define TOKEN_MIN	16	/* bytes: `openssl rand -hex 16` makes 32 */
#define RESTART_FIRST	2	/* seconds before a dead process is started */
#define RESTART_MAX	300	/* ... at most, when it keeps dying */
#define LIVED		60	/* seconds of life that reset the wait */

static time_t	started_at;

/* The token from the file or command, as a password is read. */
static enum result
token_read(struct web *w, char *file, char *command, char **cause)
{
	struct endpoint	 ep;
	char		*why = NULL;
	enum result	 r;

	memset(&ep, 0, sizeof ep);
	ep.password_file = file;
	ep.password_command = command;
	if ((r = config_secret(&ep, &w->token, &why)) != RES_OK) {
		fail(cause, r, "the web page's token: %s", why);
		free(why);
		return r;
	}
	if (strlen(w->token) < TOKEN_MIN) {
		secret_free(w->token);
		w->token = NULL;
		return fail(cause, RES_CONFIG, "the web page's token is "
		    "shorter than %d characters: anyone could guess it (make "
		    "one with: openssl rand -hex 16)", TOKEN_MIN);
	}
	return RES_OK;
}

static enum result
bind_listen(struct web *w, const char *addr, char **cause)
{
	struct addrinfo	 hints, *ai = NULL;
	char		 host[64], port[8];
	const char	*why;
	int		 p, on = 1, rc, fd;

	if ((why = config_listen_parse(addr, host, sizeof host, &p,
	    &w->loopback)) != NULL)
		return fail(cause, RES_CONFIG, "listen = \"%s\": %s", addr,
		    why);
	snprintf(port, sizeof port, "%d", p);
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0)
		return fail(cause, RES_CONFIG, "listen = \"%s\": %s", addr,
		    gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd != -1) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
		/* [::]:8025 is IPv6 only, as written; 0.0.0.0 takes IPv4. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on,
			    sizeof on);
	}
	if (fd == -1 || bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(fd, 16) == -1) {
		rc = errno;
		if (fd != -1)
			close(fd);
		freeaddrinfo(ai);
		return fail(cause, RES_TEMP, "listen = \"%s\": cannot listen "
		    "there: %s", addr, strerror(rc));
	}
	freeaddrinfo(ai);
	w->listen_fd = fd;
	return RES_OK;
}

enum result
web_open(struct web *w, const struct config *cf, char **cause)
{
	enum result	 r;

	memset(w, 0, sizeof *w);
	w->listen_fd = w->chan = -1;
	if (cf->listen == NULL)
		return RES_OK;
	if (getrandom(w->key, sizeof w->key, 0) != (ssize_t)sizeof w->key)
		return fail(cause, RES_TEMP, "getrandom: %s", strerror(errno));
	if (cf->listen_token_file != NULL &&
	    (r = token_read(w, cf->listen_token_file, NULL, cause)) != RES_OK)
		return r;
	return bind_listen(w, cf->listen, cause);
}

enum result
web_token_command(struct web *w, const struct config *cf, char **cause)
{
	if (w->listen_fd == -1 || cf->listen_token_command == NULL)
		return RES_OK;
	return token_read(w, NULL, cf->listen_token_command, cause);
}

/* The page's process: no password, none of the daemon's signals. */
static void NORETURN
web_child(struct web *w, struct config *cf, int chan, pid_t daemon)
{
	struct http_setup su;
	size_t		 i;

	signal(SIGHUP, SIG_IGN);	/* the daemon restarts it instead */
	signal(SIGINT, SIG_IGN);	/* Ctrl-C of daemon -f: the daemon */
	signal(SIGUSR1, SIG_IGN);	/* "systemctl kill -s USR1" */
	signal(SIGTERM, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != daemon)
		_exit(0);
	for (i = 0; i < cf->naccounts; i++) {
		secret_free(cf->accounts[i].pop3.password);
		secret_free(cf->accounts[i].imap.password);
		cf->accounts[i].pop3.password = NULL;
		cf->accounts[i].imap.password = NULL;
	}
	memset(&su, 0, sizeof su);
	su.cf = cf;
	su.listen_fd = w->listen_fd;
	su.chan = chan;
	su.token = w->token;
	su.key = w->key;
	su.loopback = w->loopback;
	http_serve(&su);
}

void
web_start(struct web *w, struct config *cf, const int *close_fds, size_t n)
{
	pid_t	 pid, daemon = getpid();
	size_t	 i;
	int	 sv[2];

	if (w->listen_fd == -1 || w->pid != 0)
		return;
	w->restart_at = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("web page: socketpair: %s", strerror(errno));
		w->restart_at = time(NULL) + RESTART_MAX;
		return;
	}
	fflush(NULL);
	if ((pid = fork()) == -1) {
		log_warn("web page: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		w->restart_at = time(NULL) + RESTART_MAX;
		return;
	}
	if (pid == 0) {
		close(sv[0]);
		for (i = 0; i < n; i++)
			close(close_fds[i]);
		web_child(w, cf, sv[1], daemon);
	}
	close(sv[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) == -1)
		log_debug("web page: O_NONBLOCK: %s", strerror(errno));
	w->chan = sv[0];
	w->pid = pid;
	w->linelen = 0;
	w->overlong = false;
	started_at = time(NULL);
	log_debug("web page: serving (pid %ld)", (long)pid);
}

bool
web_reaped(struct web *w, pid_t pid, int status)
{
	long	 wait;

	if (w->pid == 0 || pid != w->pid)
		return false;
	w->pid = 0;
	if (w->chan != -1) {
		close(w->chan);
		w->chan = -1;
	}
	if (time(NULL) - started_at >= LIVED)
		w->crashes = 0;
	wait = (long)RESTART_FIRST << (w->crashes < 8 ? w->crashes : 8);
	if (wait > RESTART_MAX)
		wait = RESTART_MAX;
	w->crashes++;
	w->restart_at = time(NULL) + wait;
	log_warn("web page: its process ended (%s %d); starting it again in "
	    "%ld s", WIFSIGNALED(status) ? "signal" : "exit",
	    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), wait);
	return true;
}

long
web_due(struct web *w, struct config *cf, const int *close_fds, size_t n,
    long wait)
{
	time_t	 now = time(NULL);

	if (w->listen_fd == -1 || w->pid != 0 || w->restart_at == 0)
		return wait;
	if (w->restart_at <= now) {
		web_start(w, cf, close_fds, n);
		return wait;
	}
	return w->restart_at - now < wait ? w->restart_at - now : wait;
}

/* One line from the page's process. */
static void
web_line(struct web *w, void (*check)(void *, const char *), void *arg)
{
	w->line[w->linelen] = '\0';
	if (!w->overlong && strncmp(w->line, "check ", 6) == 0)
		check(arg, w->line + 6);
	w->linelen = 0;
	w->overlong = false;
}

void
web_read(struct web *w, void (*check)(void *, const char *), void *arg)
{
	char	 buf[512];
	ssize_t	 n, i;

	while (w->chan != -1) {
		if ((n = read(w->chan, buf, sizeof buf)) == -1 &&
		    errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return;
		if (n <= 0) {
			/* It is ending: reaped (and restarted) soon. */
			close(w->chan);
			w->chan = -1;
			return;
		}
		for (i = 0; i < n; i++) {
			if (buf[i] == '\n')
				web_line(w, check, arg);
			else if (w->linelen + 1 < sizeof w->line)
				w->line[w->linelen++] = buf[i];
			else
				w->overlong = true;
		}
	}
}

void
web_restart(struct web *w, struct config *cf, const int *close_fds,
    size_t n)
{
	if (w->listen_fd == -1)
		return;
	if (w->pid != 0) {
		/* Reaped by the loop as a pid it does not know. */
		kill(w->pid, SIGTERM);
		w->pid = 0;
	}
	if (w->chan != -1) {
		close(w->chan);
		w->chan = -1;
	}
	web_start(w, cf, close_fds, n);
}

void
web_close(struct web *w)
{
	if (w->chan != -1)
		close(w->chan);
	if (w->pid != 0) {
		kill(w->pid, SIGTERM);
		waitpid(w->pid, NULL, 0);
	}
	if (w->listen_fd != -1)
		close(w->listen_fd);
	secret_free(w->token);
	explicit_bzero(w->key, sizeof w->key);
	memset(w, 0, sizeof *w);
	w->listen_fd = w->chan = -1;
}

size_t
web_fds(const struct web *w, int *fds)
{
	size_t	 n = 0;

	if (w->listen_fd != -1)
		fds[n++] = w->listen_fd;
	if (w->chan != -1)
		fds[n++] = w->chan;
	return n;
}
