/*
 * Reading an account's ledger from outside a run (ledger_read.c), for
 * `status` (ledger_status.c) and the metrics (ledger_metrics.c): the
 * database handle and its destination's id.  Private to those files.
 */
#ifndef LEDGER_READ_H
#define LEDGER_READ_H

#include <sqlite3.h>

/* Reads what it wants of destination `dest`: an SQLite result code. */
typedef int	(*ledger_reader)(sqlite3 *, sqlite3_int64,
		    const struct account *, void *);
/* The account's pair in state_dir, read by fn; a ledger never polled, or
 * without its tables yet, reads as nothing and is no error. */
enum result	 ledger_read_pair(const char *, const struct account *,
		     ledger_reader, void *, char **);
/* sql prepared, ?1 bound to the destination's id: an SQLite result. */
int		 ledger_prepare_dest(sqlite3 *, const char *, sqlite3_int64,
		     sqlite3_stmt **);
/* The id of a destination, or 0 if the ledger does not know it; *rc the
 * SQLite result. */
sqlite3_int64	 ledger_find_dest(sqlite3 *, const char *, int *);

#endif
