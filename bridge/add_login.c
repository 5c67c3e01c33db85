/*
 * `add`, step 4: log in to both servers with `check`'s own tests
 * (check.c), after asking DNS for their names, and decide whether the account may be saved
 * untested (a login that could not be tried, never one refused).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "add_int.h"

/* ---- step 4: log in to both, with check's tests ---- */

/*
 * The account as check sees it, for check's lines: no routing, and no
 * state_dir, since an account not yet saved has no ledger (every message
 * listed is to import).  Shallow: a's endpoints keep their secrets.
 */
static void
as_account(const struct add *a, long timeout, struct account *ac,
    struct config *cf)
{
	memset(ac, 0, sizeof *ac);
	memset(cf, 0, sizeof *cf);
	ac->name = a->name;
	ac->pop3 = a->pop3;
	ac->imap = a->imap;
	cf->timeout = timeout;
}

/* The POP3 side: check's line, after add's own steps around it (a token
 * command not yet set is not tried; the name is looked up first; a
 * refused login gets the preset's advice). */
static void
try_pop3(struct add *a, long timeout, struct side *sd, char **cause)
{
	struct account	 ac;
	struct config	 cf;
	char		 clean[400];

	if (a->placeholder[0]) {
		sd->skipped = true;
		printf("%s: pop3 %s:%d: not tested: no OAuth2 token command "
		    "yet\n", a->name, a->pop3.host, a->pop3.port);
		return;
	}
	if (!add_try_dns(a, &a->pop3, sd, cause))
		return;
	as_account(a, timeout, &ac, &cf);
	sd->r = check_pop3_line(&cf, &ac, cause);
	/* GMX, WEB.DE: POP3 off until switched on in the web mailer. */
	if (sd->r == RES_AUTH && a->hint != NULL)
		printf("%s: hint: %s\n", a->name, log_clean(clean, sizeof clean,
		    a->hint, strlen(a->hint)));
}

/* The IMAP side: check's line (a Gmail API destination has its own test,
 * add_gmail_login, which asks more of the token than check does). */
static void
try_imap(struct add *a, long timeout, struct side *sd, char **cause)
{
	struct account	 ac;
	struct config	 cf;

	if (a->placeholder[1]) {
		sd->skipped = true;
		printf("%s: imap %s:%d: not tested: no OAuth2 token command "
		    "yet\n", a->name, a->imap.host, a->imap.port);
		return;
	}
	if (!add_try_dns(a, &a->imap, sd, cause))
		return;
	as_account(a, timeout, &ac, &cf);
	sd->r = check_imap_line(&cf, &ac, "imap", &a->imap, cause);
}

/* What went wrong on one side, in a few words for the summary (the
 * side's cause for the rest: the server's or libcurl's words). */
static char *
side_words(const struct add *a, const struct side *sd, bool imap,
    const char *cause)
{
	const struct endpoint *ep = imap ? &a->imap : &a->pop3;
	const char	*proto = !imap ? "POP3" : a->gmail ? "Gmail API" :
			    "IMAP";
	char		 clean[400];

	if (sd->token_cmd)
		return xprintf("the %s token command failed (it must print a "
		    "fresh access token: %s)", proto, GMAIL_README);

	if (sd->dns == DNS_NO_SUCH_HOST)
		return xprintf("the %s server's host name %s does not resolve "
		    "(DNS: no such host)", proto, ep->host);
	if (sd->dns == DNS_NO_ANSWER)
		return xprintf("the DNS resolver gave no answer for the %s "
		    "server %s (is this machine online?)", proto, ep->host);
	switch (sd->r) {
	case RES_AUTH:
		if (!imap && a->hint != NULL)
			return xprintf("the POP3 login was refused (%s)",
			    log_clean(clean, sizeof clean, a->hint,
			    strlen(a->hint)));
		if (imap && a->gmail)
			return xstrdup("the Gmail API refused the token (not "
			    "valid, or without the scope gmail.readonly or "
			    "gmail.modify)");
		return xprintf("the %s login was refused", proto);
	case RES_CONFIG:
		return xprintf("the %s server cannot be used as set up", proto);
	default:
		return xprintf("the %s login could not be tested (%.160s)",
		    proto, cause != NULL ? log_clean(clean, sizeof clean, cause,
		    strlen(cause)) : "no reason given");
	}
}

/* May this outcome be saved untested?  Only when a login could not be
 * tried (no network, a server down), never when it was refused or the
 * name does not exist. */
static bool
side_untestable(const struct side *sd)
{
	return sd->skipped || sd->r == RES_OK || (sd->r == RES_TEMP &&
	    sd->dns != DNS_NO_SUCH_HOST);
}

/*
 * Both, so one attempt shows every problem; the worse result counts.  A
 * login that could not be tried may be saved untested, if the user says
 * so (--save-untested, or yes on the terminal).
 */
enum result
add_logins(struct add *a, char **cause)
{
	long		 timeout = a->cf != NULL ? a->cf->timeout : LOGIN_TIMEOUT;
	struct side	 sd[2];
	char		*c[2] = { NULL, NULL }, *w[2] = { NULL, NULL }, *what, *q;
	enum result	 r;
	bool		 save;
	int		 i;

	memset(sd, 0, sizeof sd);
	try_pop3(a, timeout, &sd[0], &c[0]);
	if (a->gmail)
		add_gmail_login(a, timeout, &sd[1], &c[1]);
	else
		try_imap(a, timeout, &sd[1], &c[1]);
	for (i = 0; i < 2; i++)
		if (sd[i].r != RES_OK)
			w[i] = side_words(a, &sd[i], i == 1, c[i]);
	free(c[0]);
	free(c[1]);
	r = result_worst(sd[0].r, sd[1].r);
	if (r == RES_OK)
		return RES_OK;
	what = xprintf("%s%s%s", w[0] != NULL ? w[0] : "", w[0] != NULL &&
	    w[1] != NULL ? ", and " : "", w[1] != NULL ? w[1] : "");
	free(w[0]);
	free(w[1]);
	save = false;
	if (side_untestable(&sd[0]) && side_untestable(&sd[1])) {
		if (a->save_untested)
			save = true;
		else if (a->interactive) {
			q = xprintf("%s.  Save the account anyway, untested?",
			    what);
			fflush(stdout);
			if (tty_yes_no(q, false, &save, cause) != RES_OK)
				save = false;
			free(q);
		}
		if (save) {
			a->untested = what;
			return RES_OK;
		}
		free(*cause);
		*cause = xprintf("nothing was written: %s; --save-untested "
		    "saves it all the same, untested", what);
	} else {
		free(*cause);
		*cause = xprintf("nothing was written: %s", what);
	}
	free(what);
	return r;
}
