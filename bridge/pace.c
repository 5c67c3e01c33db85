/*
 * A bandwidth cap for `migrate --limit-rate` on a shared line: the mail
 * fetched from POP3 is paced to at most a rate, averaged from the start
 * (the upload to IMAP follows at the same pace, since it is the same
 * bytes).  When the bytes so far are ahead of the rate, the reader sleeps
 * until they are not.  One per process: a migration is one account.
 */
#include <time.h>

#include "bridge.h"

static double	 rate;		/* bytes a second; 0: no cap */
static double	 started;
static double	 taken;

void
pace_set(double bytes_per_second)
{
	rate = bytes_per_second;
	started = now_seconds();
	taken = 0;
}

void
pace_take(size_t n)
{
	struct timespec	 ts;
	double		 ahead;

	if (rate <= 0)
		return;
	taken += (double)n;
	ahead = started + taken / rate - now_seconds();
	if (ahead <= 0)
		return;
	ts.tv_sec = (time_t)ahead;
	ts.tv_nsec = (long)((ahead - (double)ts.tv_sec) * 1e9);
	/* A signal (a stop asked for) cuts the sleep short; the next
	 * chunk's sleep makes the average good again. */
	(void)nanosleep(&ts, NULL);
}

double
pace_rate(void)
{
	return rate;
}
