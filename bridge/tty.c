/*
 * Questions on the terminal: /dev/tty, not stdin (a script may pipe
 * something else in), with echo off for passwords.  Used by `add` and
 * `migrate`.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "bridge.h"

#define ANSWER_MAX	4096

static volatile sig_atomic_t tty_signal;

static void
tty_catch(int sig)
{
	tty_signal = sig;
}

bool
tty_available(void)
{
	int	 fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd == -1)
		return false;
	close(fd);
	return true;
}

/* Read one line from the open terminal into buf; false if interrupted. */
static bool
tty_line(int fd, char *buf, size_t bufsz, size_t *n)
{
	ssize_t		 got;
	char		 c;

	*n = 0;
	for (;;) {
		got = read(fd, &c, 1);
		if (got == -1 && errno == EINTR && tty_signal == 0)
			continue;
		if (got != 1 || c == '\n')
			break;
		if (*n + 1 < bufsz)
			buf[(*n)++] = c;
	}
	buf[*n] = '\0';
	return tty_signal == 0 && got >= 0;
}

/*
 * Ask on /dev/tty (not stdin: a script may pipe something else in), with
 * echo off for passwords.  A signal while echo is off restores the
 * terminal first, then takes its course.
 */
enum result
tty_ask(const char *prompt, bool echo, char **answer, char **cause)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP };
	struct sigaction sa, old[sizeof sigs / sizeof sigs[0]];
	struct termios	 saved, quiet;
	char		 buf[ANSWER_MAX + 2];
	size_t		 i, n;
	bool		 ok, restore = false;
	int		 fd;

	*answer = NULL;
	if ((fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)) == -1)
		return fail(cause, RES_CONFIG, "no terminal to ask on");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tty_catch;	/* no SA_RESTART: read returns */
	sigemptyset(&sa.sa_mask);
	tty_signal = 0;
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, &old[i]);
	if (!echo && tcgetattr(fd, &saved) == 0) {
		quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
		restore = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
	}
	if (write(fd, prompt, strlen(prompt)) == -1)
		(void)0;	/* the answer is still worth reading */
	ok = tty_line(fd, buf, sizeof buf, &n);
	if (restore) {
		tcsetattr(fd, TCSAFLUSH, &saved);
		if (write(fd, "\n", 1) == -1)
			(void)0;
	}
	close(fd);
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &old[i], NULL);
	if (ok && n <= ANSWER_MAX)
		*answer = xstrdup(buf);
	explicit_bzero(buf, sizeof buf);
	if (tty_signal != 0)
		raise(tty_signal);
	if (*answer == NULL)
		return fail(cause, RES_CONFIG, "%s", ok ? "answer too long" :
		    "interrupted");
	return RES_OK;
}

