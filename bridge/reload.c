/*
 * Rereading the config for SIGHUP (daemon.c), and the helper that keeps
 * root for it when the daemon has dropped root for `user`.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

#define CONFIG_MAX		(8 << 20)	/* bytes of config the helper copies */
#define REPLY_MAX		(16 << 20)	/* bytes of the helper's answer */
#define HELPER_TIMEOUT		30	/* seconds to wait for its answer */

/*
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
	uint32_t	 moved;		/* a setting kept till restart changed */
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
config_passwords(struct config *cf, struct secret_buf *b, char **cause)
{
	const struct endpoint *ep;
	const char	*side;
	char		*secret, *why = NULL;
	size_t		 i, j;
	enum result	 r;

	for (i = 0; i < cf->naccounts; i++)
		for (j = 0; (ep = config_account_endpoint(&cf->accounts[i], j,
		    &side)) != NULL; j++) {
			if (ep->password_file == NULL)
				continue;
			if ((r = config_secret(ep, &secret, &why)) != RES_OK) {
				fail(cause, r, "account \"%s\": %s: %s",
				    cf->accounts[i].name, side, why);
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

/* old's value of a setting into *v; true if it differed. */
static bool
keep(char **v, const char *old)
{
	bool	 moved = !same(*v, old);

	free(*v);
	*v = old != NULL ? xstrdup(old) : NULL;
	return moved;
}

/*
 * Settings a reload does not change; true if cf has others.  The web
 * page's socket and token were opened and read at the start, as root
 * perhaps (web.c): they stay too.
 */
static bool
keep_settings(const struct config *old, struct config *cf)
{
	bool	 moved = false;

	moved |= keep(&cf->state_dir, old->state_dir);
	moved |= keep(&cf->pid_file, old->pid_file);
	moved |= keep(&cf->user, old->user);
	moved |= keep(&cf->listen, old->listen);
	moved |= keep(&cf->listen_token_file, old->listen_token_file);
	moved |= keep(&cf->listen_token_command, old->listen_token_command);
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
	    (r = config_load_fd(fd, path, &cf, &cause)) == RES_OK &&
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
helper_main(int sock, struct config *cf, const char *path, bool foreground,
    const int *close_fds, size_t nfds, uid_t uid, gid_t gid)
{
	size_t		 i;
	struct config	 start;
	unsigned char	 c;
	ssize_t		 n;
	int		 fd;

	/* Not the daemon's signals: "kill -HUP" or Ctrl-C of the whole group
	 * must not end it; SIGTERM (systemd stopping the unit) may. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	for (i = 0; i < nfds; i++)
		close(close_fds[i]);
	/* It says nothing; a detaching daemon's caller (a shell's $(...),
	 * ssh) must see the end of its output when the daemon detaches. */
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (!foreground)
			dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	/* What a reload cannot change, compared; the rest (passwords) goes. */
	memset(&start, 0, sizeof start);
	keep_settings(cf, &start);
	config_free(cf);
	for (;;) {
		if ((n = read(sock, &c, 1)) == 1)
			helper_answer(sock, path, &start, uid, gid);
		else if (n == 0 || errno != EINTR)
			_exit(0);
	}
}

enum result
reload_helper_start(struct config *cf, const char *path, bool foreground,
    const int *close_fds, size_t nfds, int *sock, char **cause)
{
	const struct timeval tv = { HELPER_TIMEOUT, 0 };
	struct passwd	*pw;
	uid_t		 uid;
	gid_t		 gid;
	pid_t		 pid;
	int		 sv[2];

	*sock = -1;
	if (cf->user == NULL || geteuid() != 0 ||
	    (pw = getpwnam(cf->user)) == NULL)
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
		helper_main(sv[1], cf, path, foreground, close_fds, nfds, uid,
		    gid);
	}
	close(sv[1]);
	if (setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1)
		log_debug("SO_RCVTIMEO: %s", strerror(errno));
	*sock = sv[0];
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
	const char	*side;
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
		if (*end != ' ' || (ep = config_account_endpoint(
		    &cf->accounts[i], j, &side)) == NULL ||
		    ep->password_file == NULL)
			continue;
		secret_free(ep->password);
		ep->password = xstrdup(end + 1);
		free(ep->password_file);
		ep->password_file = NULL;
	}
}

/* The config as the helper reads it; false if it cannot be asked. */
static bool
helper_load(int sock, const char *path, struct config **cfp, bool *moved,
    enum result *r, char **cause)
{
	struct reply_head h;
	char		*data;
	int		 fd;

	if (!helper_ask(sock, &h, &fd, &data)) {
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
		    path);
	else if ((*r = config_load_fd(fd, path, cfp, cause)) == RES_OK)
		apply_passwords(*cfp, data);
	if (fd != -1)
		close(fd);
	if (data != NULL) {
		explicit_bzero(data, h.len);
		free(data);
	}
	return true;
}

struct config *
reload_config(const struct config *old, const char *path, int *sock)
{
	struct config	*cf = NULL;
	char		*cause = NULL;
	enum result	 r;
	bool		 moved = false, asked = false;

	if (*sock != -1 &&
	    !(asked = helper_load(*sock, path, &cf, &moved, &r, &cause))) {
		log_warn("config reload: the root helper does not answer; "
		    "reading %s as %s (a restart brings the helper back)",
		    path, old->user);
		close(*sock);
		*sock = -1;
	}
	if (!asked)
		r = config_load(path, &cf, &cause);
	if (r != RES_OK) {
		log_warn("config reload failed, keeping the old configuration: "
		    "%s", cause);
		free(cause);
		return NULL;
	}
	/* The helper compared them as root, whose default state_dir may not
	 * be the daemon user's; kept either way. */
	if (keep_settings(old, cf) && !asked)
		moved = true;
	if (moved)
		log_warn("config reload: state_dir, pid_file, user and the "
		    "listen settings take effect only at restart");
	return cf;
}
