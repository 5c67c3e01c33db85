/*
 * The IMAP login done beside the POP3 one (prelogin.c).
 */
#ifndef PRELOGIN_H
#define PRELOGIN_H

struct prelogin;

/* Start logging in to ep in a thread; NULL if no thread could start (the
 * run then logs in when it needs IMAP). */
struct prelogin	*prelogin_start(const struct endpoint *, const char *, long);
/* Is this the endpoint it logs in to (and not taken yet)? */
bool		 prelogin_for(const struct prelogin *, const struct endpoint *);
/* Wait for it and take its session (*imp) or its failure (returned, with
 * *cause), as imap_open would give them. */
enum result	 prelogin_take(struct prelogin *, const struct endpoint *,
		     struct imap **, char **);
/* Wait for it if still running; log out of a session nobody took. */
void		 prelogin_free(struct prelogin *);

#endif
