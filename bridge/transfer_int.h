/*
 * The parts of a transfer (transfer.c) shared by its files: the slots a
 * batch's messages are read into, the queue of POP3 replies
 * (transfer_pop.c), where a fetched message goes in each leg
 * (transfer_route.c) and what the ledger records of it
 * (transfer_record.c).  Private to those four files.
 */
#ifndef TRANSFER_INT_H
#define TRANSFER_INT_H

#include "bridge.h"
#include "route.h"
#include "run.h"

#define BATCH_MAX	32
#define BATCH_BYTES	(8 * 1024 * 1024)
#define SLOT_MEM	(128 * 1024)
/*
 * Batches in flight at most: the one being read, those asked for ahead of
 * it and those sent and not yet answered.  How many of each is decided as
 * the run goes (transfer.c, "the window"); this only bounds the slots.
 */
#define NGROUPS		8
#define NSLOTS		(NGROUPS * BATCH_MAX)
/* Batches sent and not yet answered at most, and the memory they hold:
 * with the one being read, what a stop on request still finishes. */
#define SENT_MAX	2
#define SENT_MEM	(8 * 1024 * 1024)
/* Bytes asked for ahead of the reader at most, whatever is measured. */
#define AHEAD_MAX	((uint64_t)32 * 1024 * 1024)

enum slot_state {
	SL_FREE,
	SL_SENT,	/* RETR sent */
	SL_FETCHED,	/* whole */
	SL_FAILED,	/* not fetched whole: why says why; stays */
};

/* What a fetched message is in one leg. */
enum leg_state {
	LG_NONE,	/* not routed to this leg */
	LG_APPEND,	/* to append */
	LG_KNOWN,	/* in the mailbox already (imported or adopted) */
	LG_FAILED,	/* why says why; stays on the server */
	LG_HELD,	/* the row is set aside */
	LG_WAIT,	/* the leg cannot take it in this run (down, full) */
	LG_KEPT,	/* a rule keeps it on the POP3 server (first leg) */
};

struct slot_leg {
	enum leg_state	 st;
	struct ledger_msg row;		/* the row it is known by */
	bool		 hit;		/* a row of the ledger, found */
	bool		 forget;	/* an unrouted failure's row: drop it */
	int64_t		 attempt;	/* its APPEND's attempt row */
	uint32_t	 adopted;	/* LG_KNOWN: a copy found, its UID */
	uint32_t	 adopted_v;	/* and UIDVALIDITY, if not the leg's */
	const char	*flags;		/* a rule's, else NULL */
	char		*why;		/* LG_FAILED: the reason */
};

struct slot {
	unsigned int	 msg;		/* index into run.msgs */
	enum slot_state	 state;
	struct spool	 sp;
	struct msg_norm	 norm;
	struct hash	*h;		/* of the normalised bytes */
	char		 hex[65];
	struct slot_leg	*lg;		/* one per leg */
	bool		 dele;		/* DEL_SENT recorded: DELE it */
	bool		 marked;	/* DEL_SENT recorded (once a run) */
	size_t		 dele_ix;	/* its run.dele entry */
	char		*why;		/* SL_FAILED: the reason */
	struct msg_info	 info;
	time_t		 date;
	int		 tz;
};

enum pq_kind { PQ_RETR, PQ_DELE };

struct pq_entry {
	enum pq_kind	 kind;
	bool		 sent;		/* without PIPELINING: when it is read */
	unsigned int	 msg;
	int		 slot;		/* PQ_RETR only */
	size_t		 ix;		/* PQ_DELE only: its run.dele entry */
};

struct popq {
	struct pq_entry	*e;
	size_t		 head, tail, cap;
	int		 broke;		/* the slot whose RETR broke, or -1 */
};

/* One leg's part of a batch: its APPENDs, on its session. */
struct leg_batch {
	struct append_item items[BATCH_MAX];
	size_t		 slot[BATCH_MAX];	/* each item's, in the batch */
	size_t		 n;
	struct append_batch *ab;	/* sent, replies not yet read */
	bool		 sent;
};

/* One batch: todo[from..to) in a group of slots. */
struct batch {
	size_t		 from, to;
	uint64_t	 bytes;		/* their LIST sizes */
	struct slot	*b;
	struct leg_batch *lb;		/* one per leg */
};

/* How a run's batches ended so far. */
struct outcome {
	bool		 overquota;
	char		*quota_why;
};


/* The header section held in memory (or what arrived of it). */
static inline size_t
slot_header(const struct slot *s)
{
	size_t	 hlen = msg_header_end(s->sp.mem, s->sp.memlen);

	return hlen != 0 ? hlen : s->sp.memlen;
}

/* transfer.c: a batch's steps, and the run's start and end around them. */
enum result	 transfer_plan(struct run *, unsigned int *, size_t *, char **);
void		 transfer_init(struct run *, struct batch *);
void		 batches_free(struct run *, struct batch *);
enum result	 request_batch(struct run *, const unsigned int *, size_t,
		     size_t *, struct batch *, char **);
enum result	 read_batch(struct run *, struct batch *, char **);
void		 salvage(struct run *, struct batch *, char *, char **);
enum result	 send_batch(struct run *, struct batch *, char **);
enum result	 finish_batch(struct run *, struct batch *, struct outcome *,
		     char **);
bool		 legs_any_up(const struct run *);
enum result	 transfer_end(struct run *, struct outcome *, char *, size_t,
		     char **);

/* transfer_pop.c: the queue of POP3 replies. */
void		 slot_fail(struct slot *, char *);
size_t		 dele_marked(struct run *, unsigned int, const int64_t *,
		     size_t);
enum result	 pq_pop(struct run *, char **);
enum result	 pq_push(struct run *, enum pq_kind, unsigned int, int, size_t,
		     char **);

/* transfer_route.c: the rows of each leg, and where a message goes. */
void		 claim(struct run *, int64_t);
enum result	 classify(struct run *, struct slot *, char **);
bool		 slot_new(const struct run *, const struct slot *);

/* transfer_record.c: the intents, what is known and failed, the DELEs. */
void		 message_failed(struct run *, const struct slot *, size_t);
enum result	 mark_dele(struct run *, struct slot *, char **);
enum result	 record_intents(struct run *, struct slot *, size_t, char **);
enum result	 push_deles(struct run *, struct slot *, size_t, char **);

/* transfer_gmail.c: a leg whose destination is the Gmail API. */
bool		 leg_is_gmail(const struct leg *);
enum result	 gmail_leg_open(struct run *, struct leg *, char **);
enum result	 gmail_leg_find(struct run *, struct leg *, size_t,
		     struct slot *, size_t, char **);
void		 gmail_leg_prepare(struct slot *, struct slot_leg *);
enum result	 gmail_leg_send(struct run *, struct leg *, struct leg_batch *,
		     struct slot *, char **);

#endif
