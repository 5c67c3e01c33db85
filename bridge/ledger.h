/*
 * The ledger's API: the per-POP3-mailbox SQLite ledger (ledger.c,
 * ledger_msg.c, ledger_watch.c), what `status` reads of it
 * (ledger_status.c) and the metrics' counters (ledger_metrics.c).  Its
 * internals are in ledger_int.h.  bridge.h includes this where the types
 * it uses are known: include bridge.h, not this file.
 */
#ifndef LEDGER_H
#define LEDGER_H

/* ledger.c: the per-POP3-mailbox SQLite ledger (schema in ledger.c). */
struct ledger;
enum ledger_state {
	LEDGER_TODO = 0,	/* known, to import (again) */
	LEDGER_PENDING,		/* APPEND sent, outcome not known yet */
	LEDGER_IMPORTED,	/* stored in IMAP, durable */
	LEDGER_FAILED,		/* failed in the last run; maybe set aside */
	LEDGER_KEPT,		/* a routing rule keeps it on the POP3 server */
};
enum { DEL_NO, DEL_SENT, DEL_DONE };	/* DELE: none, sent, committed */
/* One message in one destination. */
struct ledger_msg {
	int64_t		 id;		/* 0: not in the ledger yet */
	char		 uidl[UIDL_MAX + 1];
	uint64_t	 pop_size;	/* as LIST said; 0 unknown */
	uint64_t	 size;		/* as stored */
	char		 hash[65];	/* SHA-256 as stored, hex; "" unknown */
	enum ledger_state state;
	uint32_t	 uidvalidity, uid;	/* the copy it owns; uid 0 unknown */
	unsigned int	 fails;		/* failed runs in a row */
	time_t		 hold_until;	/* set aside until then */
	int		 deleted;	/* DEL_* */
	time_t		 imported_at;	/* when, for delete_after; 0 unknown */
	bool		 unrouted;	/* a failure's, before routing */
};
/* An APPEND sent whose reply was never read: the server may still commit
 * it, above lo_uid. */
struct ledger_attempt {
	int64_t		 id, msg;
	uint64_t	 size;
	char		 hash[65];
	uint32_t	 uidvalidity, lo_uid;
	time_t		 created;
};
struct ledger_removal {
	uint32_t	 uidvalidity, uid;
};
struct run_stats {
	unsigned int	 waiting;	/* messages on the server */
	unsigned int	 fresh;		/* not yet imported */
	unsigned int	 imported;
	unsigned int	 adopted;	/* found already in the mailbox */
	unsigned int	 failed;
	unsigned int	 set_aside;	/* skipped: failed too often lately */
	unsigned int	 too_big;	/* skipped: over the account's max_size */
	unsigned int	 too_old;	/* skipped: dated before --since */
	unsigned int	 kept;		/* skipped: a routing rule keeps it */
	unsigned int	 deleted;
	unsigned int	 removed;	/* duplicates a killed run left, removed */
	uint64_t	 bytes;
	double		 seconds;
	unsigned int	 todo;		/* messages to import this run */
	uint64_t	 todo_bytes;	/* their sizes as the server listed them */
	unsigned int	 done;		/* of those, imported or failed */
	uint64_t	 done_bytes;
};
/* Open (creating or upgrading) the ledger at path for POP3 mailbox source
 * (ident_source) and IMAP destination dest (ident_dest); a second holder of
 * the same ledger gets RES_TEMP. */
enum result	 ledger_open(const char *, const char *, const char *,
		     const char *, struct ledger **, char **);
/* Read-only, no lock; *lp NULL if no ledger knows this pair yet. */
enum result	 ledger_open_readonly(const char *, const char *, const char *,
		     struct ledger **, char **);
char		*ledger_path(const char *, const struct account *);
char		*ledger_source(const struct account *);
/* Every row of this UIDL (any state, gone ones too), oldest first. */
enum result	 ledger_find(struct ledger *, const char *,
		     struct ledger_msg **, size_t *, char **);
/* Every row with this content. */
enum result	 ledger_with_hash(struct ledger *, const char *,
		     struct ledger_msg **, size_t *, char **);
enum result	 ledger_pending(struct ledger *, struct ledger_msg **, size_t *,
		     char **);
enum result	 ledger_new(struct ledger *, struct ledger_msg *, char **);
/* Before an APPEND: the row pending and an attempt row (its id out). */
enum result	 ledger_intent(struct ledger *, struct ledger_msg *,
		     const struct msg_info *, uint32_t, uint32_t, int64_t *,
		     char **);
/* The server's OK: imported, in uidvalidity/uid; the attempt answered. */
enum result	 ledger_stored(struct ledger *, struct ledger_msg *, int64_t,
		     uint32_t, uint32_t, char **);
/* Failed in this run (refused, cut off, too big); set aside when often. */
enum result	 ledger_failed(struct ledger *, struct ledger_msg *, int64_t,
		     const char *, const struct msg_info *, char **);
/* Over quota: nothing stored, to import later. */
enum result	 ledger_unsent(struct ledger *, struct ledger_msg *, int64_t,
		     char **);
enum result	 ledger_set_state(struct ledger *, struct ledger_msg *,
		     enum ledger_state, uint32_t, uint32_t, char **);
enum result	 ledger_deleted(struct ledger *, struct ledger_msg *, int,
		     char **);
/* Rows whose UIDL is not listed (listed(arg, uidl) false) are gone. */
enum result	 ledger_mark_gone(struct ledger *,
		     bool (*)(void *, const char *), void *, char **);
/* The row that owns the copy uidvalidity/uid, or 0. */
enum result	 ledger_uid_owner(struct ledger *, uint32_t, uint32_t,
		     int64_t *, char **);
/* Is uidl (this hash) imported into the destination named? */
/* Switch the handle to another destination (a leg); its id, made if new. */
void		 ledger_use(struct ledger *, int64_t);
enum result	 ledger_dest(struct ledger *, const char *, int64_t *, char **);
enum result	 ledger_routed(struct ledger *, struct ledger_msg *,
		     enum ledger_state, const struct msg_info *, char **);
enum result	 ledger_forget(struct ledger *, int64_t, char **);
/* Routed and imported in every row among these destinations? */
enum result	 ledger_done_in(struct ledger *, char *const *, size_t,
		     const char *, const char *, bool *, char **);
/* Rows routing it to destinations none of these (renamed, removed). */
enum result	 ledger_orphans(struct ledger *, char *const *, size_t,
		     const char *, const char *, int64_t *, size_t, size_t *,
		     char **);
enum result	 ledger_imported_in(struct ledger *, const char *, const char *,
		     const char *, bool *, char **);
enum result	 ledger_attempts(struct ledger *, struct ledger_attempt **,
		     size_t *, char **);
enum result	 ledger_attempt_advance(struct ledger *, int64_t, uint32_t,
		     uint32_t, char **);
enum result	 ledger_attempt_retire(struct ledger *, int64_t, char **);
enum result	 ledger_removals(struct ledger *, struct ledger_removal **,
		     size_t *, char **);
enum result	 ledger_removal_add(struct ledger *, uint32_t, uint32_t,
		     char **);
enum result	 ledger_removal_done(struct ledger *, uint32_t, uint32_t,
		     char **);
/* The first contact scan of the destination (adopt.c): done yet? */
enum result	 ledger_adopted(struct ledger *, bool *, char **);
enum result	 ledger_set_adopted(struct ledger *, char **);
/* Did the account's last run find mail (or is there none yet)? */
bool		 ledger_expects_mail(struct ledger *, const char *);
/* `retry`: set-aside messages (all, or the one UIDL) go again next run. */
enum result	 ledger_release(struct ledger *, const char *, unsigned int *,
		     char **);
/* The rows of messages a routing rule kept: routed again next run. */
enum result	 ledger_unkeep(struct ledger *, const char *, unsigned int *,
		     char **);
enum result	 ledger_run_record(struct ledger *, const char *, time_t,
		     enum result, const struct run_stats *, const char *,
		     char **);
void		 ledger_close(struct ledger *);
/* A transaction: the changes in it reach the disk together, at commit. */
enum result	 ledger_begin(struct ledger *, char **);
/* Only reads until the commit (or rollback). */
enum result	 ledger_begin_read(struct ledger *, char **);
enum result	 ledger_commit(struct ledger *, char **);
void		 ledger_rollback(struct ledger *);

/* ledger_status.c: what `status` shows, read without taking the lock. */
enum ledger_change {
	LEDGER_SAME = 0,
	LEDGER_FAILING,		/* its failures in a row became lasting */
	LEDGER_RECOVERED,	/* it worked after a lasting failure */
};
struct ledger_failure {
	char		 uidl[UIDL_MAX + 1];
	char		*error;
	char		*date, *from, *subject;	/* NULL if not known */
	unsigned int	 attempts;	/* failed runs in a row */
	time_t		 hold_until;	/* set aside until, if in the future */
};
/* A routed account's target, as `status` counts it (issue 16). */
struct ledger_dest_count {
	char		*name;		/* "anna:INBOX": destination:mailbox */
	unsigned int	 imported, kept, failed;
};
struct ledger_status {
	bool		 ever_run;
	time_t		 last_poll;	/* when the last run started */
	int		 last_result;	/* enum result */
	char		*last_error;
	unsigned int	 imported_last, on_server, waiting;
	uint64_t	 imported_total;
	struct ledger_failure *failures;
	size_t		 nfailures;
	unsigned int	 set_aside;	/* of the failures */
	unsigned int	 auth_refusals;	/* the last runs' refused logins in a row */
	time_t		 last_refusal;	/* when the last of them started */
	unsigned int	 fails_in_row;	/* the last runs that failed (temporary,
					 * login, config), in a row */
	time_t		 failing_since;	/* when the first of them started */
	/* What the last run changed (a lasting failure: ledger_status.c). */
	enum ledger_change change;
	char		*change_error;	/* the failure's cause, its last run's */
	time_t		 change_since;	/* when the failures began */
	unsigned int	 change_fails;	/* how many runs failed in a row */
	struct ledger_dest_count *dests; /* routed: per target; else NULL */
	size_t		 ndests;
};
/* The account's pair (its POP3 mailbox, its destination) in state_dir. */
enum result	 ledger_read_status(const char *, const struct account *,
		     struct ledger_status *, char **);
void		 ledger_status_free(struct ledger_status *);
/* "date, from X, subject (UIDL u): why" (malloc'd). */
char		*ledger_failure_text(const struct ledger_failure *);

/* ledger_metrics.c: the counters of the metrics (metrics.c), read-only. */
#define LEDGER_BUCKETS	10	/* poll durations: <= 1, 2, 5 ... 1800 s */
extern const long ledger_bucket_le[LEDGER_BUCKETS];
struct ledger_metrics {
	uint64_t	 imported;	/* messages in the destination */
	uint64_t	 imported_bytes;	/* their sizes as stored */
	uint64_t	 imported_today;	/* since the time given */
	uint64_t	 polls[RES_CONFIG + 1];	/* runs, by their result */
	uint64_t	 messages_failed;	/* a message's failure in a run */
	time_t		 last_success;	/* a run's end, ok or some failed; 0 */
	uint64_t	 buckets[LEDGER_BUCKETS];	/* runs that took <= le */
	uint64_t	 seconds;	/* the runs' durations added up */
};
/* The account's pair in state_dir; runs and imports since `today`. */
enum result	 ledger_read_metrics(const char *, const struct account *,
		     time_t, struct ledger_metrics *, char **);

#endif
