/*
 * What imap.c (the reply reader and the verbs), imap_append.c (the APPEND
 * engine) and imap_fetch.c (finding messages again) share: the session
 * and the reader's entry points.  Private to those three files.
 */
#ifndef IMAP_INT_H
#define IMAP_INT_H

#define IMAP_LINE_MAX	(64 * 1024 - 1)
#define IMAP_RESP_MAX	(1024 * 1024)
#define IMAP_PEND_MAX	8	/* batches of APPENDs on the wire at once
				 * (transfer_int.h NGROUPS at most) */

/* The tags of a batch of APPENDs sent and not yet answered. */
struct pend {
	unsigned int	 lo, hi;
};

/* A tagged reply that came before the one being waited for. */
struct stashed {
	unsigned int	 tag;
	char		*resp;
};

struct imap {
	struct conn	*c;
	char		*account;
	char		*host;
	unsigned int	 tag;
	struct imap_caps caps;
	char		*resp;		/* the current response */
	size_t		 resplen, respcap;
	char		 bye[256];	/* the server's BYE text, if any */
	char		 sep;		/* hierarchy separator, from NAMESPACE;
					 * '\0' not known */
	bool		 dead;		/* the link failed: no LOGOUT */
	struct pend	 pend[IMAP_PEND_MAX];
	size_t		 npend;
	struct stashed	*stash;
	size_t		 nstash;
	/* If set, literals go here instead of into resp (imap_fetch.c). */
	void		(*lit_sink)(void *, const char *, size_t);
	void		*lit_arg;
};

typedef void	(*untagged_fn)(struct imap *, void *);

/* Read one response (a line and its literals) into im->resp. */
enum result	 imap_read(struct imap *, char **);
/* Send "tag cmd"; the tag is made here. */
enum result	 imap_send(struct imap *, const char *, char *, size_t, char **);
/* The number of tag "pN" at the start of a response. */
bool		 imap_resp_tag(const char *, unsigned int *);
/* Is this tag a batch's, sent and not yet answered? */
bool		 imap_tag_pending(const struct imap *, unsigned int);
/* Set the current response aside for the batch that tag belongs to. */
void		 imap_stash(struct imap *, unsigned int);
/* The next tagged reply to one of lo..hi, its status in *rep. */
enum result	 imap_take_status(struct imap *, unsigned int, unsigned int,
		     untagged_fn, void *, unsigned int *, struct imap_reply *,
		     char **);
/* Read until the reply to tag, untagged responses to fn. */
enum result	 imap_wait(struct imap *, const char *, untagged_fn, void *,
		     struct imap_reply *, char **);
/* Send a command and wait for its tagged reply (whatever its status). */
enum result	 imap_command(struct imap *, const char *, untagged_fn, void *,
		     struct imap_reply *, char **);
/* A reply that is not OK, as a sentence for *cause. */
enum result	 imap_refused(struct imap *, const char *, struct imap_reply *,
		     enum result, char **);

#endif
