/*
 * Asking a run to stop: `run` and `migrate` take SIGTERM, SIGINT and SIGHUP
 * as "finish the batch in flight, record it, QUIT and end", which the run
 * reads between batches through its run_opts.  A second signal ends the
 * process at once: the ledger and the next run's settling make that safe
 * too.  (The daemon and the batch turn signals into bytes on a pipe:
 * sigpipe.c.)
 */
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#include "bridge.h"

volatile sig_atomic_t	stop_requested;
static bool		second_ends;

static void
on_stop(int sig)
{
	stop_requested = 1;
	if (second_ends)
		signal(sig, SIG_DFL);
}

void
stop_on_signals(bool again_ends)
{
	struct sigaction sa;

	second_ends = again_ends;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a wait in poll() returns and the loop goes on. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}
