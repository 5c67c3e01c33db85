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
#include <strings.h>
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


/* An answer without the blanks around it (a pasted name, a stray space). */
static void
trim(char *s)
{
	size_t	 n = strlen(s), k = strspn(s, " \t");

	while (n > k && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	memmove(s, s + k, n - k);
	s[n - k] = '\0';
}

/*
 * A question with its default in brackets ("IMAP user name [max@gmx.net]:
 * "); Enter takes the default.  With no default (NULL or ""), Enter is an
 * empty answer.
 */
enum result
tty_ask_default(const char *question, const char *dflt, char **answer,
    char **cause)
{
	char		*prompt;
	enum result	 r;

	if (dflt != NULL && dflt[0] != '\0')
		prompt = xprintf("%s [%s]: ", question, dflt);
	else
		prompt = xprintf("%s: ", question);
	r = tty_ask(prompt, true, answer, cause);
	free(prompt);
	if (r != RES_OK)
		return r;
	trim(*answer);
	if ((*answer)[0] == '\0' && dflt != NULL) {
		free(*answer);
		*answer = xstrdup(dflt);
	}
	return RES_OK;
}

/* A yes/no question: "[Y/n]" or "[y/N]" after it, Enter takes the capital
 * one; anything but y, yes, n, no is asked again (three times at most). */
enum result
tty_yes_no(const char *question, bool dflt, bool *yes, char **cause)
{
	char		*prompt, *a;
	enum result	 r;
	int		 tries;

	prompt = xprintf("%s [%s] ", question, dflt ? "Y/n" : "y/N");
	for (tries = 0; tries < 3; tries++) {
		if ((r = tty_ask(prompt, true, &a, cause)) != RES_OK) {
			free(prompt);
			return r;
		}
		trim(a);
		if (a[0] == '\0')
			*yes = dflt;
		else if (strcasecmp(a, "y") == 0 || strcasecmp(a, "yes") == 0)
			*yes = true;
		else if (strcasecmp(a, "n") == 0 || strcasecmp(a, "no") == 0)
			*yes = false;
		else {
			free(a);
			continue;
		}
		free(a);
		free(prompt);
		return RES_OK;
	}
	free(prompt);
	return fail(cause, RES_CONFIG, "no yes or no to \"%s\"", question);
}
