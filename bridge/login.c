/*
 * Logging in as an account: where the config's secrets meet a connection.
 * The password or token is resolved (config_secret: the config's
 * password, a password_file, a password_command, an oauth2_token_command)
 * right before each login, so a token command's token is fresh for every
 * connection as a provider's short-lived tokens need, and wiped as soon as
 * the login is over.  The connection layer (net.c, pop3.c, imap.c) is
 * handed the secret and never reads the config for it.
 */
#include "bridge.h"

enum result
login_pop3(const struct endpoint *ep, const char *account, long timeout,
    struct pop3 **pp, char **cause)
{
	char		*secret = NULL;
	enum result	 r;

	*pp = NULL;
	if ((r = config_secret(ep, &secret, cause)) != RES_OK)
		return r;
	r = pop3_open(ep, secret, account, timeout, pp, cause);
	secret_free(secret);
	return r;
}

enum result
login_imap(const struct endpoint *ep, const char *account, long timeout,
    struct imap **imp, char **cause)
{
	char		*secret = NULL;
	enum result	 r;

	*imp = NULL;
	if ((r = config_secret(ep, &secret, cause)) != RES_OK)
		return r;
	r = imap_open(ep, secret, account, timeout, imp, cause);
	secret_free(secret);
	return r;
}
