/*
 * The daemon as other commands see it: whether one runs (it holds a lock
 * on its pid file) and where its state file is.  `status`, the web page
 * and the daemon itself read these; in a file of their own so that
 * status.c does not depend on daemon.c (which starts the web page, which
 * shows status: a cycle).
 */
#include <sys/file.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include "bridge.h"

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
