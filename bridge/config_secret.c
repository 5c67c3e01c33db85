/*
 * An endpoint's secret, read when a connection needs it (config_secret):
 * the password in the config, the first line of a password_file (which
 * only its owner may read), or the first line a password_command or an
 * oauth2_token_command prints.  A command that fails has its stderr
 * shown, never its stdout.  Secrets are wiped with secret_free.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

#define SECRET_MAX	4096
#define ERR_KEEP	4096		/* bytes of a command's stderr kept */
#define ERR_LINES	3		/* lines of it shown */
#define ERR_LINE_MAX	200		/* bytes of each shown */

/*
 * The first line of a stream without its LF or CR LF: *secret, malloc'd
 * ("" if the line is empty or there is none), or NULL and *bad saying why
 * it cannot be sent as it is (a NUL or a lone CR in it, or too long).  A
 * secret is sent whole or not at all: cut at the NUL, or the CR ending
 * the protocol line early, it would fail the login at best.
 */
static void
first_line(FILE *f, char **secret, const char **bad)
{
	char	*buf = xcalloc(1, SECRET_MAX + 2);
	size_t	 n = 0;
	int	 c;

	*bad = NULL;
	while ((c = getc(f)) != EOF && c != '\n') {
		if (n == SECRET_MAX + 1) {
			*bad = "its first line is longer than 4096 bytes";
			break;
		}
		buf[n++] = (char)c;
	}
	if (*bad == NULL && n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (*bad == NULL && n > SECRET_MAX)
		*bad = "its first line is longer than 4096 bytes";
	else if (*bad == NULL && memchr(buf, '\0', n) != NULL)
		*bad = "its first line holds a NUL byte";
	else if (*bad == NULL && memchr(buf, '\r', n) != NULL)
		*bad = "its first line holds a CR";
	if (*bad != NULL) {
		explicit_bzero(buf, SECRET_MAX + 2);
		free(buf);
		buf = NULL;
	}
	*secret = buf;
}

static enum result
secret_from_file(const struct endpoint *ep, char **secret, char **cause)
{
	struct stat	 st;
	const char	*bad;
	FILE		*f;
	int		 fd;

	if ((fd = open(ep->password_file, O_RDONLY | O_CLOEXEC)) == -1)
		return fail(cause, RES_CONFIG, "password_file %s: %s",
		    ep->password_file, strerror(errno));
	if (fstat(fd, &st) == -1 || (st.st_mode & 077) != 0) {
		close(fd);
		return fail(cause, RES_AUTH, "password_file %s can be read by "
		    "others; refusing to use it (fix: chmod 600 %s)",
		    ep->password_file, ep->password_file);
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		close(fd);
		return fail(cause, RES_TEMP, "password_file %s: %s",
		    ep->password_file, strerror(errno));
	}
	first_line(f, secret, &bad);
	fclose(f);
	if (bad != NULL)
		return fail(cause, RES_CONFIG, "password_file %s: %s; refusing "
		    "to send it", ep->password_file, bad);
	if (**secret == '\0') {
		secret_free(*secret);
		*secret = NULL;
		return fail(cause, RES_CONFIG, "password_file %s is empty",
		    ep->password_file);
	}
	return RES_OK;
}

/* What a command printed: its stdout's first line (the secret, up to
 * the bound) and the start of its stderr (for a failure's message). */
struct cmd_out {
	char		 line[SECRET_MAX + 2];
	size_t		 nline;
	bool		 line_done;	/* its LF seen, or the bound reached */
	char		 err[ERR_KEEP + 1];
	size_t		 nerr;
};

/* The command's fd onto the child's target fd, close-on-exec cleared. */
static void
child_fd(int fd, int target)
{
	if (fd == target)
		(void)fcntl(fd, F_SETFD, 0);
	else if (dup2(fd, target) == -1)
		_exit(127);
}

/*
 * Take what arrives on the two pipes until both are closed: the first
 * line of stdout and the first ERR_KEEP bytes of stderr are kept, the rest
 * read and dropped (a command must not die of SIGPIPE, nor block on a
 * full pipe while we wait for the other one).
 */
static void
cmd_read(int ofd, int efd, struct cmd_out *o)
{
	struct pollfd	 pfd[2];
	char		 buf[4096];
	ssize_t		 n;
	size_t		 take, i;
	int		 open_fds = 2, k;

	pfd[0].fd = ofd;
	pfd[1].fd = efd;
	pfd[0].events = pfd[1].events = POLLIN;
	while (open_fds > 0) {
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (k = 0; k < 2; k++) {
			if (pfd[k].fd == -1 || pfd[k].revents == 0)
				continue;
			n = read(pfd[k].fd, buf, sizeof buf);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0) {
				pfd[k].fd = -1;
				open_fds--;
				continue;
			}
			if (k == 1) {
				take = (size_t)n < ERR_KEEP - o->nerr ?
				    (size_t)n : ERR_KEEP - o->nerr;
				memcpy(o->err + o->nerr, buf, take);
				o->nerr += take;
				continue;
			}
			for (i = 0; i < (size_t)n && !o->line_done; i++) {
				o->line[o->nline++] = buf[i];
				if (buf[i] == '\n' || o->nline == sizeof o->line)
					o->line_done = true;
			}
		}
		explicit_bzero(buf, sizeof buf);
	}
	o->err[o->nerr] = '\0';
}

/*
 * The command's stderr, fit for a message: its first ERR_LINES lines,
 * each cut to ERR_LINE_MAX and cleaned of control bytes, joined by " | ".
 * The secret is its stdout: never shown; should stderr hold it as well
 * (a "set -x" trace, a helper that echoes), it is shown as "***".
 */
static char *
cmd_stderr(struct cmd_out *o, const char *secret)
{
	char		 clean[ERR_LINE_MAX + 1], *out = xstrdup(""), *next;
	char		*p, *e, *hit;
	size_t		 slen = secret != NULL ? strlen(secret) : 0, n;
	int		 lines = 0, more = 0;

	if (slen > 0)
		while ((hit = memmem(o->err, o->nerr, secret, slen)) != NULL) {
			memmove(hit + 3, hit + slen, o->nerr - (size_t)(hit -
			    o->err) - slen + 1);
			memcpy(hit, "***", 3);
			o->nerr -= slen - 3;
		}
	for (p = o->err; p < o->err + o->nerr; p = e + (*e != '\0')) {
		e = p + strcspn(p, "\n");
		n = (size_t)(e - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		if (lines == ERR_LINES) {
			more++;
			continue;
		}
		log_clean(clean, sizeof clean, p, n);
		next = xprintf("%s%s%s", out, lines > 0 ? " | " : "", clean);
		free(out);
		out = next;
		lines++;
	}
	if (more > 0) {
		next = xprintf("%s | (%d more line%s)", out, more, more == 1 ?
		    "" : "s");
		free(out);
		out = next;
	}
	explicit_bzero(o->err, sizeof o->err);
	return out;
}

/*
 * Run cmd with sh -c, as popen would, but with its stderr captured too:
 * a helper that fails says why there ("gpg: decryption failed"), and that
 * belongs in the failure's message.  *status as from waitpid, -1 if the
 * command could not be run.
 */
static enum result
cmd_run(const char *cmd, const char *what, struct cmd_out *o, int *status,
    char **cause)
{
	int	 out[2] = { -1, -1 }, err[2] = { -1, -1 }, e;
	pid_t	 pid;

	memset(o, 0, sizeof *o);
	*status = -1;
	fflush(NULL);
	if (pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1 ||
	    (pid = fork()) == -1) {
		e = errno;
		if (out[0] != -1) {
			close(out[0]);
			close(out[1]);
		}
		if (err[0] != -1) {
			close(err[0]);
			close(err[1]);
		}
		return fail(cause, RES_TEMP, "%s: %s", what, strerror(e));
	}
	if (pid == 0) {
		child_fd(out[1], STDOUT_FILENO);
		child_fd(err[1], STDERR_FILENO);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	cmd_read(out[0], err[0], o);
	close(out[0]);
	close(err[0]);
	while (waitpid(pid, status, 0) == -1)
		if (errno != EINTR) {
			*status = -1;
			break;
		}
	return RES_OK;
}

static enum result
secret_from_command(const char *cmd, const char *what, char **secret,
    char **cause)
{
	const char	*bad, *kind = strncmp(what, "oauth2", 6) == 0 ? "token" :
			    "password";
	struct cmd_out	*o = xcalloc(1, sizeof *o);
	char		*raw, *why;
	FILE		*f;
	int		 status;
	enum result	 r;

	*secret = NULL;
	if ((r = cmd_run(cmd, what, o, &status, cause)) != RES_OK) {
		free(o);
		return r;
	}
	/* The first line's checks are those of a password_file's. */
	bad = "it printed nothing";
	if (o->nline == 0)
		*secret = xstrdup("");
	else if ((f = fmemopen(o->line, o->nline, "r")) != NULL) {
		first_line(f, secret, &bad);
		fclose(f);
	}
	/* Its raw first line, to keep it out of what stderr shows. */
	raw = xstrndup(o->line, strcspn(o->line, "\r\n"));
	explicit_bzero(o->line, sizeof o->line);
	if (*secret == NULL) {
		r = fail(cause, RES_CONFIG, "%s printed a %s that cannot be "
		    "sent: %s", what, kind, bad);
		goto out;
	}
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    **secret != '\0') {
		r = RES_OK;
		goto out;
	}
	secret_free(*secret);
	*secret = NULL;
	why = cmd_stderr(o, raw);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 0)
		r = fail(cause, RES_TEMP, "%s failed (exit %d)%s%s", what,
		    WEXITSTATUS(status), why[0] != '\0' ? ": " : "", why);
	else if (status != -1 && WIFSIGNALED(status))
		r = fail(cause, RES_TEMP, "%s was killed by signal %d%s%s", what,
		    WTERMSIG(status), why[0] != '\0' ? ": " : "", why);
	else
		r = fail(cause, RES_TEMP, "%s printed no %s%s%s", what, kind,
		    why[0] != '\0' ? ": " : "", why);
	free(why);
out:
	secret_free(raw);
	explicit_bzero(o, sizeof *o);
	free(o);
	return r;
}

enum result
config_secret(const struct endpoint *ep, char **secret, char **cause)
{
	*secret = NULL;
	/* Checked at load as well; migrate and batch fill it themselves. */
	if (ep->password != NULL) {
		if (!config_value_ok(ep->password))
			return fail(cause, RES_CONFIG, "the password holds a "
			    "line break (CR or LF); refusing to send it");
		*secret = xstrdup(ep->password);
		return RES_OK;
	}
	if (ep->password_file != NULL)
		return secret_from_file(ep, secret, cause);
	if (ep->oauth2_token_command != NULL)
		return secret_from_command(ep->oauth2_token_command,
		    "oauth2_token_command", secret, cause);
	return secret_from_command(ep->password_command, "password_command",
	    secret, cause);
}
