/*
 * Gmail as a destination through the Gmail API (issue 17), instead of
 * IMAP: users.messages.import takes the raw message with its own date
 * (internalDateSource=dateHeader), runs Gmail's spam filter and inbox
 * categories on it unless told not to (neverMarkSpam), and costs no round
 * trip per message: requests go over one HTTP/2 connection, several in
 * flight, paced to the per-user quota rather than to the round trip.
 *
 * A handle and a few verbs.  libcurl and the JSON library (Jansson) stay
 * in the gmail*.c files; the engine sees this header only.
 *
 * Exactly once: the engine records its intent (the ledger's attempt)
 * before gmail_import and the id it returns after.  Gmail's import is not
 * idempotent and takes no request id, so a run killed between the two
 * settles with gmail_find (messages.list with rfc822msgid: and the date
 * window, then each candidate's raw bytes compared) rather than importing
 * again.  Every outcome below says whether the message may be in Gmail:
 * only GMAIL_IMPORTED and GMAIL_UNKNOWN can be; every other status means
 * it is certainly not there and may be imported again later.
 *
 * Secrets: the token comes from the endpoint's oauth2_token_command
 * (config_secret, as for IMAP's XOAUTH2), is kept only while the handle is
 * open, reaches libcurl as a bearer and nothing else, and is wiped at
 * gmail_close.  No request or response header is ever logged.
 */
#ifndef GMAIL_H
#define GMAIL_H

#include "bridge.h"

#define GMAIL_BASE_DEFAULT	"https://gmail.googleapis.com"
/* Google documents 150 MB as the largest message import takes; larger is
 * GMAIL_TOO_BIG without a request.  Up to GMAIL_SIMPLE_MAX a message goes
 * in one multipart request; above, as a resumable upload (Google's advice
 * for uploads over 5 MB: a cut link costs a query, not the whole body). */
#define GMAIL_IMPORT_MAX	(150ULL * 1000 * 1000)
#define GMAIL_SIMPLE_MAX	(5ULL * 1000 * 1000)
#define GMAIL_INFLIGHT		4	/* requests at once, default */
#define GMAIL_INFLIGHT_MAX	32
/* Google's per-user quota: 250 units a second; an import costs 25, a
 * messages.get or .list 5, labels.list 1, labels.create 5. */
#define GMAIL_UNITS_PER_SEC	250.0
#define GMAIL_ID_MAX		64	/* Gmail's ids are 16 hex digits */
#define GMAIL_LABELS_MAX	64	/* labels on one message */
#define GMAIL_LABEL_NAME_MAX	225	/* bytes of a label name */
#define GMAIL_FIND_MAX		50	/* candidates gmail_find compares */
/* Search is not instant: a message imported a moment ago may not be found
 * yet.  An attempt younger than this that gmail_find does not find is
 * still in doubt; the engine looks again later rather than import. */
#define GMAIL_SEARCH_LAG	120

struct gmail;

struct gmail_opts {
	const struct endpoint *ep;	/* oauth2_token_command, ca_file, pin,
					 * proxy; user only in messages */
	const char	*base;		/* NULL: GMAIL_BASE_DEFAULT; tests give
					 * https://127.0.0.1:PORT */
	const char	*account;	/* for messages and the trace */
	long		 timeout;	/* seconds: connect, and a stalled
					 * request (no byte either way) */
	unsigned int	 inflight;	/* 0: GMAIL_INFLIGHT */
	double		 units_per_sec;	/* 0: GMAIL_UNITS_PER_SEC; < 0: no pacing */
	/* The longest a call waits for rate limits (429, 403 rate, 503) in
	 * all; a longer wait ends the call with GMAIL_RETRY_AFTER, so that a
	 * daemon's other accounts are not held up.  0: 120 s. */
	long		 max_wait;
	double		 deadline;	/* now_seconds() bound; 0: none */
};

/*
 * Read the token and set up the connection pool (nothing is sent yet).
 * RES_CONFIG for a bad base URL, RES_AUTH or RES_CONFIG from the token
 * command as config_secret says.
 */
enum result	 gmail_open(const struct gmail_opts *, struct gmail **,
		     char **);
/* Wipe the token, close the connections; NULL is fine. */
void		 gmail_close(struct gmail *);

/*
 * Label ids for names, creating the labels that are missing: a nested
 * "A/B" gets "A" first (Gmail nests by the slash; a child without its
 * parent shows as a flat name).  System labels (INBOX, UNREAD, STARRED,
 * IMPORTANT, CATEGORY_*) are their own ids.  Names compare as Gmail does,
 * ASCII case ignored.  ids[i] is malloc'd; the list is read once per
 * handle and kept, so a call per message costs nothing.
 */
enum result	 gmail_labels(struct gmail *, const char *const *, size_t,
		     char **, char **);

/* What became of one message. */
enum gmail_status {
	GMAIL_IMPORTED,		/* in Gmail: id */
	GMAIL_UNKNOWN,		/* the request may have been done (the link
				 * failed after the body was sent, or a
				 * 500/502/504): settle with gmail_find */
	GMAIL_RETRY_AFTER,	/* rate limited longer than max_wait allows:
				 * retry_after seconds; not imported */
	GMAIL_DAILY_LIMIT,	/* 403 dailyLimitExceeded: not imported; no
				 * more imports until `until` */
	GMAIL_TOO_BIG,		/* over the API's limit (ours or a 413):
				 * set aside, why says so */
	GMAIL_REFUSED,		/* this message refused (400 ...): why */
	GMAIL_NOT_DONE,		/* not sent, or refused for a reason that is
				 * not the message's (auth, config, the
				 * deadline): the call's result says why */
};

/* The bytes of a message: in memory, or a spool (spool.c). */
struct gmail_src {
	const char	*bytes;		/* NULL: sp */
	size_t		 len;
	struct spool	*sp;
};

struct gmail_item {
	struct gmail_src src;
	const char	*const *label_ids;	/* from gmail_labels */
	size_t		 nlabels;
	bool		 unread;	/* adds UNREAD */
	bool		 never_spam;	/* neverMarkSpam=true */
	/* out */
	enum gmail_status status;
	char		 id[GMAIL_ID_MAX];	/* GMAIL_IMPORTED */
	long		 retry_after;	/* seconds; RETRY_AFTER, UNKNOWN (0) */
	time_t		 until;		/* DAILY_LIMIT: wall clock */
	char		*why;		/* malloc'd sentence, or NULL */
	int		 http;		/* the last HTTP status, 0 none */
};

/*
 * Import n messages, up to `inflight` at once.  Each item's status says
 * what became of it, whatever the call returns.  RES_OK: the run may go
 * on (some items may still be REFUSED or TOO_BIG).  RES_TEMP: stop this
 * run (the daily limit, a rate limit beyond max_wait, the link, an
 * UNKNOWN that needs settling, the deadline); RES_AUTH: the token was
 * refused twice or lacks the scope (gmail.insert or gmail.modify);
 * RES_CONFIG: the base URL answers 404.  *cause: the first of these.
 * Rate limits are per user: one 429 holds every request of the handle
 * for its Retry-After (else 1, 2, 4 ... 64 s).
 */
enum result	 gmail_import(struct gmail *, struct gmail_item *, size_t,
		     char **);
/* Free the items' why. */
void		 gmail_items_clear(struct gmail_item *, size_t);

/* A message that may have been imported by a killed run. */
struct gmail_probe {
	const char	*message_id;	/* "<...>" or "" (msg_message_id) */
	time_t		 date;		/* its Date (msg_date); 0: unknown */
	uint64_t	 size;		/* bytes as sent */
	const char	*sha256;	/* hex of them (hash_update_message), or
					 * NULL */
	struct gmail_src src;		/* the bytes, or bytes NULL, sp NULL */
};
/*
 * Ids of the copies in Gmail of this message: messages.list (spam and
 * trash included) with rfc822msgid: and after:/before: a day either side
 * of its date, then each candidate's raw bytes (messages.get format=raw)
 * compared: equal, or ending with the message (a header line added), or
 * their SHA-256 equal; where only the API's sizeEstimate is known, equal
 * to size.  *ids (malloc'd array of malloc'd ids; NULL when none), *n.
 * RES_OK with none found means none was there *when searched*: see
 * GMAIL_SEARCH_LAG.
 */
enum result	 gmail_find(struct gmail *, const struct gmail_probe *,
		     char ***, size_t *, char **);
void		 gmail_ids_free(char **, size_t);

/* Words for a status ("imported", "daily limit" ...). */
const char	*gmail_status_name(enum gmail_status);
/*
 * When Google's daily quotas start again: the next midnight in
 * America/Los_Angeles after t (US daylight saving rules), wall clock.
 * Used when a 403 dailyLimitExceeded carries no Retry-After.
 */
time_t		 gmail_quota_reset(time_t);

/* config_gmail.c: a destination whose url is "gmail-api:" (see there). */
struct gmail_dest {
	char		*base;		/* NULL: GMAIL_BASE_DEFAULT */
	char		**labels;	/* added to every message */
	size_t		 nlabels;
	bool		 inbox;		/* INBOX too, whatever the mailbox */
	bool		 unread;
	bool		 never_mark_spam;
};
/* Is url a Gmail API destination ("gmail-api:" ...)? */
bool		 config_gmail_is(const char *);
/* "gmail-api:" or "gmail-api:https://HOST[:PORT]": NULL and the base
 * (malloc'd, NULL for the default) in *base, or why not as a phrase. */
const char	*config_gmail_url(const char *, char **);
/* A label name Gmail takes: NULL, or why not as a phrase. */
const char	*config_gmail_label_check(const char *);
/* The label names of a message to this mailbox (a target's): INBOX if
 * gd->inbox, the mailbox unless it is INBOX, then gd->labels, each once;
 * pointers into gd and mailbox, at most max of them.  So mailbox INBOX
 * with inbox = false files the message under the labels alone. */
size_t		 config_gmail_label_names(const struct gmail_dest *,
		     const char *, const char **, size_t);
void		 config_gmail_free(struct gmail_dest *);

#endif
