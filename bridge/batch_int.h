/*
 * What batch.c (the command, its CSV file and report), batch_row.c (a row
 * to an account) and batch_run.c (running the accounts, per host) share:
 * the batch, its jobs and hosts.  Only these three include it.
 */
#ifndef BATCH_INT_H
#define BATCH_INT_H

#include "bridge.h"

enum { C_POP3_URL, C_POP3_USER, C_POP3_PW, C_IMAP_URL, C_IMAP_USER,
	C_IMAP_PW, C_MAILBOX, C_KEEP, C_POP3_CA, C_IMAP_CA, C_FLAGS,
	C_COUNT, C_REQUIRED = C_KEEP + 1 };

enum job_state { J_WAITING, J_RUNNING, J_DONE, J_SKIPPED };

struct job {
	struct account	*ac;		/* in cf.accounts */
	char		*source;	/* ident_source of its POP3 mailbox */
	int		 line;
	enum job_state	 state;
	struct worker	 w;
	unsigned int	 tries;
	double		 not_before;	/* now_seconds() */
	struct worker_report rep;
	double		 started;
};

/* A valid row of this shard, for finding rows that clash with it. */
struct row_key {
	char		*source;	/* ident_source */
	char		*dest;		/* ident_dest */
	bool		 keep;
	int		 line;
};

struct host {
	char		*name;
	unsigned int	 running;
	unsigned int	 throttles;	/* in a row */
	double		 not_before;	/* resting until (now_seconds) */
};

struct batch {
	struct config	 cf;
	const char	*file;
	long		 per_host;
	const char	*report;
	bool		 retry_failed, dry_run, tty;
	unsigned long	 shard_k, shard_n;
	char		*ca_file;
	char		**secret_dirs;	/* --secrets-dir, resolved */
	size_t		 nsecret_dirs;
	const char	**env_prefixes;	/* --secrets-env-prefix */
	size_t		 nenv_prefixes;
	bool		 trust_csv;	/* file: and env: name anything */
	struct job	*jobs;
	size_t		 njobs;
	struct host	*hosts;
	size_t		 nhosts;
	struct row_key	*keys;
	size_t		 nkeys, keycap;
	unsigned int	 invalid;
	FILE		*rep;		/* the --report file */
	double		 started, last_shown;
	int		 sigpipe[2];
	bool		 stopping;
};

/* batch_row.c */
/* The column of each name in the header row (-1: absent); NULL, or the
 * name of a required column that is missing. */
const char	*batch_header_columns(const struct csv_row *, int *);
/* A data row to *ac: NULL, or why not (in why).  The caller frees what
 * *ac holds either way. */
const char	*batch_row_account(struct batch *, const int *,
		     struct csv_row *, struct account *, char *, size_t);
/* Is the account's POP3 mailbox in this --shard? */
bool		 batch_in_shard(const struct batch *, const struct account *);
/* A valid row against the earlier ones: NULL (remembered), or why not. */
const char	*batch_row_check(struct batch *, const struct account *, char *,
		     size_t);

/* batch.c: a line of the --report file (cols: the two URLs, users and
 * the mailbox; st NULL for a row that never ran). */
/* batch_report.c: the --report CSV. */
void		 batch_report_header(struct batch *);
void		 batch_report_row(struct batch *, int, const char *const *,
		     const char *, const struct run_stats *, const char *,
		     double, const char *);

/* batch_run.c */
size_t		 batch_count_state(const struct batch *, enum job_state);
/* Run the jobs, --jobs at once and --per-host per server, until all are
 * done or a signal stops the batch. */
void		 batch_run_jobs(struct batch *);

#endif
