/*
 * The keys of the daemon's web page: listen = "ADDRESS:PORT",
 * listen_token_file and listen_token_command (web.c serves it).
 *
 * The page shows who writes to the household and about what, so on an
 * address other than loopback it is served only to those who have the
 * token, and there the token is required.  The token is never in the
 * config itself (which `check` reads and bug reports quote), only in a
 * file (private, as a password file) or a command's output.  A host name
 * is not taken for the address: it could name another machine.
 */
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "config_int.h"

/* The port of "ADDRESS:PORT": digits only, 1 to 65535. */
static bool
listen_port(const char *p, int *port)
{
	long	 n = 0;

	if (*p == '\0')
		return false;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || (n = n * 10 + (*p - '0')) > 65535)
			return false;
	}
	*port = (int)n;
	return n > 0;
}

const char *
config_listen_parse(const char *v, char *host, size_t hostsz, int *port,
    bool *loopback)
{
	struct in6_addr	 a6;
	struct in_addr	 a4;
	const char	*colon, *end;
	size_t		 n;

	if (v[0] == '[') {
		if ((end = strchr(v, ']')) == NULL || end[1] != ':')
			return "an IPv6 address in brackets must be followed "
			    "by :PORT";
		v++;
		colon = end + 1;
	} else if ((colon = strrchr(v, ':')) == NULL)
		return "expected ADDRESS:PORT";
	else if ((end = colon) != strchr(v, ':'))
		return "an IPv6 address goes in brackets, [::1]:8025";
	if (!listen_port(colon + 1, port))
		return "the port must be a number from 1 to 65535";
	if ((n = (size_t)(end - v)) == 9 && strncmp(v, "localhost", 9) == 0) {
		v = "127.0.0.1";
		n = 9;
	}
	if (n == 0 || n >= hostsz)
		return "expected an IP address before the port";
	memcpy(host, v, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, &a4) == 1) {
		*loopback = (ntohl(a4.s_addr) >> 24) == 127;
		return NULL;
	}
	if (inet_pton(AF_INET6, host, &a6) == 1) {
		*loopback = IN6_IS_ADDR_LOOPBACK(&a6) ||
		    (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
		return NULL;
	}
	return "not an IP address of this machine (a host name is not "
	    "taken: it could name another)";
}

/* A string key of the top level, malloc'd; NULL if absent. */
static char *
top_string(const config_setting_t *root, const char *name)
{
	const char	*v;

	if (config_setting_lookup_string(root, name, &v) != CONFIG_TRUE)
		return NULL;
	return xstrdup(v);
}

/* The token's file, as the daemon will read it: there and private.  One
 * root reads and the daemon's user cannot is the daemon's to judge. */
static enum result
check_token_file(struct loader *ld, const config_setting_t *s,
    const char *path)
{
	struct stat	 st;

	if (stat(path, &st) == -1) {
		if (errno == EACCES && geteuid() != 0)
			return RES_OK;
		return cfail(ld, s, "listen_token_file %s: %s", path,
		    strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return cfail(ld, s, "listen_token_file %s is not a regular "
		    "file", path);
	if ((st.st_mode & 077) != 0) {
		cfail(ld, s, "listen_token_file %s can be read by others "
		    "(mode %04o); refusing to use it (fix: chmod 600 %s)",
		    path, (unsigned int)(st.st_mode & 07777), path);
		return RES_AUTH;	/* as a password file others can read */
	}
	return RES_OK;
}

enum result
config_listen_load(struct loader *ld, const config_setting_t *root,
    const char *dir, struct config *cf)
{
	const config_setting_t *s;
	char		 host[64], *p;
	const char	*why;
	int		 port;
	bool		 loopback;
	enum result	 r;

	cf->listen_token_file = top_string(root, "listen_token_file");
	if (cf->listen_token_file != NULL && cf->listen_token_file[0] != '/') {
		p = xprintf("%s/%s", dir, cf->listen_token_file);
		free(cf->listen_token_file);
		cf->listen_token_file = p;
	}
	cf->listen_token_command = top_string(root, "listen_token_command");
	if (cf->listen_token_file != NULL && cf->listen_token_command != NULL)
		return cfail(ld, config_setting_get_member(root,
		    "listen_token_command"), "set listen_token_file or "
		    "listen_token_command, not both");
	if ((s = config_setting_get_member(root, "listen")) == NULL)
		return RES_OK;
	cf->listen = xstrdup(config_setting_get_string(s));
	if ((why = config_listen_parse(cf->listen, host, sizeof host, &port,
	    &loopback)) != NULL)
		return cfail(ld, s, "\"listen\" = \"%s\": %s (for example "
		    "\"127.0.0.1:8025\" or \"[::1]:8025\")", cf->listen, why);
	if (!loopback && cf->listen_token_file == NULL &&
	    cf->listen_token_command == NULL)
		return cfail(ld, s, "\"listen\" = \"%s\" is not a loopback "
		    "address: whoever reaches it would see who writes to you "
		    "and about what; set listen_token_file (or "
		    "listen_token_command) to a token the page will ask for, "
		    "or listen on 127.0.0.1", cf->listen);
	if (cf->listen_token_file != NULL && (r = check_token_file(ld,
	    config_setting_get_member(root, "listen_token_file"),
	    cf->listen_token_file)) != RES_OK)
		return r;
	return RES_OK;
}
