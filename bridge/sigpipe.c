/*
 * Signals as bytes on a pipe (the self-pipe trick): the handler only
 * writes the signal's number, and the main loop, which polls the pipe's
 * read end beside everything else, does the work outside the handler.
 * Used by the daemon and by batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

static int	sig_fd = -1;

static void
on_signal(int sig)
{
	unsigned char	 c = (unsigned char)sig;
	int		 save = errno;

	if (write(sig_fd, &c, 1) == -1) {
		/* The pipe is full: the loop wakes up anyway. */
	}
	errno = save;
}

void
sigpipe_open(int fds[2], const int *sigs, size_t nsigs)
{
	struct sigaction sa;
	size_t		 i;

	if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == -1)
		fatal("pipe: %s", strerror(errno));
	sig_fd = fds[1];
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < nsigs; i++)
		sigaction(sigs[i], &sa, NULL);
}
