/*
 * The state of one account run, shared by the files that make it up:
 * account.c (the order of the steps), plan.c (what each listed message
 * needs), settle.c (what interrupted runs left in the mailbox), adopt.c
 * (what was there before popbridge) and transfer.c (moving the messages).
 * Private to those files.
 */
#ifndef RUN_H
#define RUN_H

struct popq;
struct slot;
struct adopt;

/* What a listed message needs in this run. */
enum plan_act {
	PA_SKIP,	/* imported, and kept on the server */
	PA_DELE,	/* imported; delete it from the server now */
	PA_HELD,	/* failed too often lately: set aside for now */
	PA_BIG,		/* over the account's max_size: left on the server */
	PA_OLD,		/* dated before migrate --since: left on the server */
	PA_KEPT,	/* a routing rule keeps it on the server */
	PA_IMPORT,	/* fetch and APPEND (row: the one it is known by) */
	PA_VERIFY,	/* fetch, then tell by content which row it is */
};

struct plan {
	enum plan_act	 act;
	bool		 unique;	/* the only message with its UIDL */
	int64_t		 row;		/* ledger row, 0 if none yet */
	bool		 orphan;	/* routed where no leg goes now */
};

/*
 * One login to one IMAP destination, shared by the legs that go there
 * (INBOX and Junk of one account need one connection, not two).  Only one
 * mailbox is selected at a time: settling selects each leg's in turn
 * before the transfer, and a leg that needs its mailbox selected during
 * the transfer (first contact, adopt.c) gets a session of its own.
 */
struct session {
	const struct endpoint	*ep;
	size_t			 dest;		/* route target's dest index */
	bool			 own;		/* one leg's alone */
	struct imap		*im;
	struct leg		*selected;	/* whose mailbox, or NULL */
};

/*
 * One place the account's messages go (a route target: a destination and
 * a mailbox there), with its own ledger destination, so that "exactly
 * once" holds per message and leg.  An account without routing has one
 * leg: its imap block's mailbox.
 */
struct leg {
	size_t			 target;	/* index into routing targets */
	const struct endpoint	*ep;		/* its server and login */
	const char		*want;		/* mailbox as configured */
	char			*label;		/* "bob:INBOX" (routed), for people */
	char			*dest;		/* ident_dest spelling */
	int64_t			 dest_id;	/* in the ledger */
	struct session		*ss;		/* NULL until opened */
	char			*mailbox;	/* on the server: under the
						 * personal namespace */
	char			*wire;		/* mailbox quoted for APPEND,
						 * once it is opened */
	struct imap_mbox	 mb;
	uint32_t		 lo_uid;	/* next APPEND gets a UID >= */
	bool			 opened;	/* STATUS (and CREATE) done */
	bool			 created;	/* this run made the mailbox */
	bool			 settled;	/* intents of killed runs found */
	bool			 ghosts;	/* attempts or removals to settle */
	bool			 first;		/* first contact: scan it */
	bool			 full;		/* over quota in this run */
	enum result		 down;		/* its server failed: why */
	char			*down_why;
	struct adopt		*adopt;		/* first contact only */
	struct plan		*plan;		/* one per message, this leg's */
	/* A Gmail API leg (ep->gmail, issue 17): no session, a handle. */
	struct gmail		*gm;
	char			**label_ids;	/* its labels' ids */
	size_t			 nlabel_ids;
};

/*
 * A row marked DEL_SENT in this run.  After QUIT succeeds, the answered
 * ones are DEL_DONE and the rest DEL_NO; without QUIT (never sent), all
 * are DEL_NO; a QUIT that got no answer leaves them DEL_SENT: the next run
 * cannot know, and lets their content decide.  A message routed to several
 * legs has a row in each: they all change together.
 */
struct dele {
	unsigned int	 msg;		/* index into run.msgs */
	int64_t		*rows;
	size_t		 nrows;
	bool		 answered;	/* +OK to its DELE */
};

/* Another account of the config reading this POP3 mailbox: its legs. */
struct sibling {
	char		**dests;	/* ident_dest of each */
	size_t		  n;
};

struct run {
	const struct config	*cf;
	const struct account	*ac;
	const struct run_opts	*opts;
	struct ledger		*l;
	struct pop3		*p;
	struct run_stats	*st;
	struct leg		*legs;		/* [0]: the account's imap */
	size_t			 nlegs;
	struct leg		*leg;		/* the one the ledger is on */
	struct session		**ss;
	size_t			 nss;
	struct prelogin		*pre;		/* IMAP login beside POP3's */
	/* Other accounts that import this POP3 mailbox: a message is
	 * deleted only once each of them has it too. */
	struct sibling		*siblings;
	size_t			 nsiblings;
	bool			 hold_deletes;	/* end without QUIT */
	bool			 pop3_dead;	/* the POP3 link broke */
	double			 started;	/* now_seconds() at the start */
	time_t			 began;		/* the same, wall clock */
	struct dele		*dele;		/* DEL_SENT in this run */
	size_t			 ndele;
	struct pop3_msg		*msgs;
	unsigned int		 nmsgs;
	struct plan		*plan;		/* one per msgs[i], all legs' */
	int64_t			*claimed;	/* rows that answer for a */
	size_t			 nclaimed, claimcap; /* message of this run */
	struct popq		*q;		/* POP3 replies still to read */
	struct slot		*slots;
};

/* The ledger on this leg's destination, and the leg the current one. */
static inline struct ledger *
leg_enter(struct run *rn, struct leg *g)
{
	rn->leg = g;
	ledger_use(rn->l, g->dest_id);
	return rn->l;
}

/* Has the caller asked the run to stop after the batch in flight? */
static inline bool
run_stopping(const struct run *rn)
{
	return rn->opts->stop != NULL && *rn->opts->stop != 0;
}

/* plan.c: what each listed message needs; *need_imap if any IMAP work. */
enum result	 plan_make(struct run *, bool *, char **);
/* migrate --since: messages to import dated before it are left alone. */
enum result	 plan_since(struct run *, char **);
/* The ledger destinations of the legs and the siblings (borrowed). */
char		**plan_known_dests(const struct run *, size_t *);
/* check, dry run: messages not known to be imported (todo_of[i] each). */
enum result	 plan_count(struct ledger *, const struct pop3_msg *,
		     unsigned int, unsigned int *, uint64_t *, bool *, char **);
/* May this imported message go from the server (keep, siblings)? */
enum result	 plan_may_delete(struct run *, const struct ledger_msg *,
		     bool *, char **);

/* settle.c: interrupted runs' APPENDs, late copies, removals. */
enum result	 settle_needed(struct run *, bool *, char **);
enum result	 settle(struct run *, char **);
/* After the transfer: look once more if a killed run's APPEND may still
 * be on its way. */
enum result	 settle_again(struct run *, char **);

/* adopt.c: a message already in the mailbox before the first contact. */
enum result	 adopt_load(struct run *, char **);
/* A message about to be appended; uid out: a copy already there, or 0. */
struct adopt_query {
	uint64_t	 size;
	char		 msgid[MSGID_MAX];
	const char	*hex;
	uint32_t	 uid;
};
/* For a batch: copies that no row owns, with the same size, Message-ID
 * and content (their bodies hashed in one FETCH). */
enum result	 adopt_batch(struct run *, struct adopt_query *, size_t,
		     char **);
void		 adopt_free(struct adopt *);

/* transfer.c: import the messages the plan names, DELE what may go. */
enum result	 transfer_all(struct run *, char **);
/* Read the POP3 replies still due, so that QUIT can follow. */
enum result	 transfer_drain(struct run *, char **);
void		 transfer_free(struct run *);
/* A Gmail leg's handle and label ids (transfer_gmail.c). */
void		 gmail_leg_free(struct leg *);

/* session.c: open a leg's IMAP mailbox (log in, STATUS, CREATE) once a
 * run needs it; select it where asked.  run_imap and run_im: the current
 * leg's. */
enum result	 leg_imap(struct run *, struct leg *, bool, char **);
enum result	 run_imap(struct run *, bool, char **);
struct imap	*run_im(const struct run *);
void		 sessions_close(struct run *);

#endif
