/*
 * What the gmail*.c files share, and no other file: one HTTP request as
 * gmail.c runs it through the libcurl multi handle, and the JSON readers
 * of gmail_json.c (the only file that includes jansson.h).
 */
#ifndef GMAIL_INT_H
#define GMAIL_INT_H

#include "gmail.h"

#define GMAIL_REPLY_MAX	(1024 * 1024)	/* a JSON reply, but messages.get */

/* Quota units a request costs (Google's table for the Gmail API). */
enum gmail_cost { COST_IMPORT = 25, COST_GET = 5, COST_LIST = 5,
	COST_LABELS = 1, COST_LABEL_CREATE = 5 };

/* The handle (gmail.c), shared by the gmail files. */
struct gmail_label {
	char		*id;
	char		*name;
};
struct gmail {
	void		*multi;		/* CURLM * */
	const struct endpoint *ep;
	char		*token;		/* wiped at close */
	unsigned int	 token_gen;	/* +1 at each fresh token */
	unsigned int	 refreshes;	/* in this call */
	char		*base;
	char		*account;
	long		 timeout;
	unsigned int	 inflight;
	double		 rate;		/* units a second; 0: none */
	double		 bucket, bucket_at;
	long		 max_wait;
	double		 deadline;
	double		 hold_until;	/* rate limited: nothing starts before */
	double		 waited;	/* held in this call, seconds */
	unsigned int	 backoff;	/* rate limits in a row */
	bool		 halted;	/* daily limit or auth: start nothing */
	bool		 daily;		/* halted by the daily limit ... */
	time_t		 daily_until;	/* ... until then (wall clock) */
	struct gmail_label *labels;	/* labels.list, once read */
	size_t		 nlabels;
	bool		 labels_read;
};

/* A request body: up to three pieces sent in a row (a multipart head,
 * the message, its tail), the message from memory or a spool. */
struct gmail_body {
	const char	*head;
	size_t		 headlen;
	const struct gmail_src *msg;	/* NULL: none */
	const char	*tail;
	size_t		 taillen;
	uint64_t	 off;		/* read so far */
};

/* How a request ended, as gmail.c decided after its retries. */
enum gmail_end {
	END_REPLY,		/* an HTTP reply to classify: status, reply */
	END_LINK,		/* transport failure; body_sent says if it
				 * may have been done */
	END_RATE,		/* rate limited past max_wait: retry_after */
	END_AUTH,		/* 401 after a fresh token, or no token */
	END_DEADLINE,		/* not finished by the deadline */
	END_HALTED,		/* not started: an earlier reply halted the
				 * handle (daily limit, auth) */
};

struct gmail_req {
	struct gmail	*g;
	void		*h;		/* CURL * */
	const char	*method;	/* "GET", "POST", "PUT" */
	char		*url;
	char		*ctype;		/* Content-Type of the body, or NULL */
	char		*extra[2];	/* more headers, or NULL */
	struct gmail_body body;
	bool		 has_body;
	int		 cost;
	size_t		 reply_max;	/* 0: GMAIL_REPLY_MAX */
	/* out */
	enum gmail_end	 end;
	long		 status;
	char		*reply;		/* NUL-terminated */
	size_t		 replylen;
	long		 retry_after;	/* Retry-After, seconds; -1 none */
	char		*location;	/* Location header, malloc'd */
	bool		 body_sent;	/* the whole body went to curl */
	char		 why[256];	/* END_LINK, END_AUTH: curl's words */
	char		 reason[64];	/* the error's reason, "" none */
	/* gmail.c's bookkeeping */
	unsigned int	 tries;
	unsigned int	 gen;		/* token_gen it was sent with */
	void		*hdrs;		/* struct curl_slist * */
	char		 errbuf[256];
	double		 not_before;
	int		 curlrc;
	bool		 too_long;	/* the reply passed reply_max */
};

/* gmail.c */
uint64_t	 gmail_src_size(const struct gmail_src *);
/* Up to n bytes of the message from off; (size_t)-1 if the spool fails. */
size_t		 gmail_src_read(const struct gmail_src *, uint64_t, char *,
		     size_t);
void		 gmail_req_init(struct gmail_req *, struct gmail *,
		     const char *, char *, int);
void		 gmail_req_free(struct gmail_req *);
/* Run these requests, inflight at once, with the retries of the
 * handle's policy; each ends with an end and (END_REPLY) a status. */
void		 gmail_run(struct gmail *, struct gmail_req **, size_t);
/* The handle's base URL and account name. */
const char	*gmail_base(const struct gmail *);
const char	*gmail_account(const struct gmail *);
/* "2024-05-01 09:00 CEST" for a message (a static buffer). */
const char	*gmail_when(time_t);
/* A component of a URL query, percent-encoded (malloc'd). */
char		*gmail_escape(const char *);
/* What a finished request tells a caller: RES_OK for a 2xx reply, else
 * a result and a sentence ("gmail: labels.list: 404 Not Found: ..."). */
enum result	 gmail_req_result(struct gmail_req *, const char *, char **);

/* gmail_json.c: readers of Google's replies, all bounded and strict. */
/* {"error": {"code", "message", "errors": [{"reason"}], "status"}}:
 * the first reason ("" none) and the message, cleaned. */
void		 gmail_json_error(const char *, size_t, char *, size_t, char *,
		     size_t);
/* The "id" of a Message or Label, checked; false if none fits. */
bool		 gmail_json_id(const char *, size_t, char *, size_t);
/* users.labels.list: cb(arg, id, name) for each label; false if bad. */
bool		 gmail_json_labels(const char *, size_t,
		     void (*)(void *, const char *, const char *), void *);
/* users.messages.list: cb(arg, id) for each; *next (malloc'd) the
 * nextPageToken or NULL; false if malformed. */
bool		 gmail_json_list(const char *, size_t,
		     void (*)(void *, const char *), void *, char **);
/* users.messages.get format=raw: the decoded raw (malloc'd) in *raw,
 * sizeEstimate in *size_est (-1: absent); false if malformed. */
bool		 gmail_json_raw(const char *, size_t, char **, size_t *,
		     long long *);
/* {"labelIds": [ids...]} for an import's metadata (malloc'd). */
char		*gmail_json_import_meta(const char *const *, size_t, bool);
/* {"name": NAME, "labelListVisibility": ..., ...} (malloc'd). */
char		*gmail_json_label_new(const char *);

#endif
