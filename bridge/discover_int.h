/*
 * What discover.c (the sources' order) and discover_util.c (address, URL
 * and template checks) share with the sources: discover_preset.c,
 * discover_autoconfig.c with discover_http.c, and discover_srv.c.  Only
 * these include it.
 */
#ifndef DISCOVER_INT_H
#define DISCOVER_INT_H

#include "bridge.h"

#define DOC_MAX		(1024 * 1024)	/* bytes of a fetched document */
#define VALUE_MAX	255		/* a host or user name from outside */

/* discover_util.c, the base the sources call down to (with what
 * bridge.h declares of it: discover_address_valid, discover_parse_url,
 * discover_free). */
/* A DNS name (or IPv4 literal) as discovery takes one. */
bool		 discover_host_valid(const char *);
/* An autoconfig template with %EMAILADDRESS% and its kin filled in; NULL
 * if it is not one discovery can use. */
char		*discover_expand(const char *, const char *);

/*
 * The four sources, in the order discover_pop3 asks them.  Each fills d
 * and sets *found (or returns true) when it knows the server; else it
 * leaves a short note of what it tried for the final message.
 */
enum result	 discover_from_presets(const char *, struct discovery *,
		     bool *, char **, char **);
enum result	 discover_from_autoconfig(const char *, const char *,
		     struct discovery *, bool *, char **, char **);
bool		 discover_from_ispdb(const char *, const char *,
		     struct discovery *, char **);
bool		 discover_from_srv(const char *, const char *,
		     struct discovery *, char **);

/* GET url over HTTPS (DOC_MAX bytes at most, checked redirects): true
 * with the body, else false with a short note in *why. */
bool		 discover_http_get(const char *, char **, size_t *, char **);

#endif
