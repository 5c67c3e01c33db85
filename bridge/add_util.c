/*
 * What every step of `popbridge add` calls (add.c, add_ask.c, add_owner.c,
 * add_gmail.c, add_login.c): its usage failure, the checks of names and
 * text it is given, and the DNS test before a login.  The base of add's
 * files, so that they call down to it and never back up to one another.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "add_int.h"

/* A failure of the command line (exit 64), with its cause. */
enum result
ufail(struct add *a, char **cause, const char *fmt, ...)
{
	va_list	 ap;

	a->usage = true;
	free(*cause);
	va_start(ap, fmt);
	*cause = xvprintf(fmt, ap);
	va_end(ap);
	return RES_CONFIG;
}

/* Text that can go into a config string and a log line. */
bool
text_ok(const char *s, size_t max)
{
	size_t	 n = strlen(s), i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* The same rule as config.c's account names. */
bool
name_ok(const char *n)
{
	if (*n == '\0' || strlen(n) > 64)
		return false;
	for (; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && *n != '.' && *n != '_' &&
		    *n != '-' && *n != '+' && *n != '@')
			return false;
	return true;
}

/* The login methods of config.c's "auth". */
bool
auth_ok(const char *m)
{
	static const char *const ok[] = { "auto", "plain", "login", "any",
		"xoauth2", "oauthbearer" };
	size_t	 i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(m, ok[i]) == 0)
			return true;
	return false;
}

bool
auth_is_oauth2(const char *m)
{
	return m != NULL && (strcmp(m, "xoauth2") == 0 ||
	    strcmp(m, "oauthbearer") == 0);
}

/* ---- for the logins (add_login.c, add_gmail.c) ---- */

/* "pop3", "imap" or "gmail-api", for the lines of the login tests. */
const char *
add_side_name(const struct add *a, const struct endpoint *ep)
{
	return !ep->imap ? "pop3" : a->gmail ? "gmail-api" : "imap";
}

/*
 * Can the server's name be found?  Asked before the login, so that a
 * name that does not exist, or a resolver that does not answer (no
 * network), is called that instead of a failed login.  Not through a
 * proxy from the environment: that one looks the name up itself.
 */
bool
add_try_dns(struct add *a, const struct endpoint *ep, struct side *sd,
    char **cause)
{
	char		 scheme[8], *why = NULL;
	const char	*var;

	snprintf(scheme, sizeof scheme, "%s%s", !ep->imap ? "pop3" : a->gmail ?
	    "http" : "imap", ep->tls == TLS_IMPLICIT ? "s" : "");
	/* An address needs no lookup; a proxy looks names up itself. */
	if (ep->host[0] == '[' || strchr(ep->host, ':') != NULL ||
	    config_env_proxy(scheme, &var) != NULL)
		return true;
	if ((sd->dns = discover_host_check(ep->host, &why)) == DNS_OK)
		return true;
	printf("%s: %s %s:%d: FAILED: %s\n", a->name, add_side_name(a, ep),
	    ep->host, ep->port, why);
	free(*cause);
	*cause = why;
	sd->r = RES_TEMP;
	return false;
}
