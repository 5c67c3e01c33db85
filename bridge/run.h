/*
 * The state of one account run, shared by account.c (the order of the
 * steps: ledger, settling, QUIT) and transfer.c (moving the messages).
 * Private to those two files.
 */
#ifndef RUN_H
#define RUN_H

#define PREFIX_LEN	8192	/* bytes hashed to recognise a message */

struct popq;
struct slot;

struct run {
	const struct config	*cf;
	const struct account	*ac;
	struct ledger		*l;
	struct pop3		*p;
	struct imap		*im;
	struct imap_mbox	 mb;
	struct run_stats	*st;
	uint32_t		 lo_uid;	/* next APPEND gets a UID >= */
	bool			 hold_deletes;	/* end without QUIT */
	bool			 created;	/* this run made the mailbox */
	unsigned int		*dele;		/* DELE answered, awaiting QUIT */
	size_t			 ndele;
	struct pop3_msg		*msgs;
	unsigned int		 nmsgs;
	struct popq		*q;		/* POP3 replies still to read */
	struct slot		*slots;
};

/* Import every new message and DELE the imported ones (keep = false). */
enum result	 transfer_all(struct run *, char **);
/* Read the POP3 replies still due, so that QUIT can follow. */
enum result	 transfer_drain(struct run *, char **);
void		 transfer_free(struct run *);

#endif
