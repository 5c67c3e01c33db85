/*
 * The IMAP login started beside the POP3 one, so that a run that has mail
 * to move pays for one login's round trips rather than two (issue 15: at
 * 100 ms a TLS login is about half a second).
 *
 * A thread of its own does imap_open and nothing else: no ledger, no
 * shared state; it hands back the session or the failure, and the run
 * uses it when it first wants IMAP, as if it had logged in then.  The
 * thread takes no signals (they stay with the run, which decides when to
 * stop), and it is always waited for, whatever happened to POP3 meanwhile.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "prelogin.h"

struct prelogin {
	pthread_t		 tid;
	const struct endpoint	*ep;
	char			*secret;	/* the thread wipes it */
	char			*account;
	long			 timeout;
	struct imap		*im;
	enum result		 r;
	char			*cause;
};

static void *
prelogin_main(void *arg)
{
	struct prelogin	*pl = arg;

	pl->r = imap_open(pl->ep, pl->secret, pl->account, pl->timeout,
	    &pl->im, &pl->cause);
	secret_free(pl->secret);
	pl->secret = NULL;
	return NULL;
}

struct prelogin *
prelogin_start(const struct endpoint *ep, const char *account, long timeout)
{
	struct prelogin	*pl;
	sigset_t	 all, old;
	char		*secret = NULL, *why = NULL;
	int		 rc;

	/*
	 * The secret is resolved here, as login_imap would (a command may
	 * run): the thread only logs in.  A failure is the run's to meet
	 * when it wants IMAP, as if no early login had been tried.
	 */
	if (config_secret(ep, &secret, &why) != RES_OK) {
		free(why);
		return NULL;
	}
	log_debug("%s: imap: logging in beside POP3 (mail is likely)",
	    account);
	pl = xcalloc(1, sizeof *pl);
	pl->secret = secret;
	pl->ep = ep;
	pl->account = xstrdup(account);
	pl->timeout = timeout;
	/* The thread inherits this mask: every signal stays with the run. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&pl->tid, NULL, prelogin_main, pl);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		/* No thread: the run logs in when it needs to, as before. */
		log_debug("%s: imap: no early login (%s)", account,
		    strerror(rc));
		secret_free(pl->secret);
		free(pl->account);
		free(pl);
		return NULL;
	}
	return pl;
}

/* Wait for the login; then pl holds its session or its failure. */
static void
prelogin_join(struct prelogin *pl)
{
	if (pl->account != NULL) {
		pthread_join(pl->tid, NULL);
		free(pl->account);
		pl->account = NULL;
	}
}

enum result
prelogin_take(struct prelogin *pl, const struct endpoint *ep,
    struct imap **imp, char **cause)
{
	enum result	 r;

	prelogin_join(pl);
	if (ep != pl->ep)
		return RES_OK;
	*imp = pl->im;
	pl->im = NULL;
	r = pl->r;
	if (r != RES_OK) {
		free(*cause);
		*cause = pl->cause;
		pl->cause = NULL;
	}
	pl->ep = NULL;		/* taken: later sessions log in themselves */
	return r;
}

bool
prelogin_for(const struct prelogin *pl, const struct endpoint *ep)
{
	return pl != NULL && ep == pl->ep;
}

void
prelogin_free(struct prelogin *pl)
{
	if (pl == NULL)
		return;
	prelogin_join(pl);
	if (pl->im != NULL)
		imap_logout(pl->im);
	free(pl->cause);
	free(pl);
}
