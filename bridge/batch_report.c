/*
 * The batch's report (--report OUT): a CSV row per account, written as
 * each one ends.  Both the reading of FILE (batch.c: a row refused) and
 * the running of jobs (batch_run.c: how each account went) write here.
 */
#include <stdio.h>
#include <string.h>

#include "bridge.h"
#include "batch_int.h"

/* A CSV field, quoted when it must be. */
static void
csv_put(FILE *f, const char *s, bool last)
{
	if (s == NULL)
		s = "";
	if (strpbrk(s, ",\"\r\n") != NULL) {
		fputc('"', f);
		for (; *s != '\0'; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else
		fputs(s, f);
	fputc(last ? '\n' : ',', f);
}

void
batch_report_header(struct batch *b)
{
	if (b->rep == NULL)
		return;
	fputs("line,pop3_url,pop3_user,imap_url,imap_user,mailbox,status,"
	    "imported,bytes,skipped,skipped_reasons,seconds,error\n", b->rep);
}

void
batch_report_row(struct batch *b, int line, const char *const *cols,
    const char *status, const struct run_stats *st, const char *skipped,
    double secs, const char *error)
{
	char	 num[4][32];

	if (b->rep == NULL)
		return;
	snprintf(num[0], sizeof num[0], "%d", line);
	snprintf(num[1], sizeof num[1], "%u", st != NULL ? st->imported : 0);
	snprintf(num[2], sizeof num[2], "%llu", st != NULL ?
	    (unsigned long long)st->bytes : 0ULL);
	snprintf(num[3], sizeof num[3], "%u", st != NULL ? st->failed : 0);
	csv_put(b->rep, num[0], false);
	csv_put(b->rep, cols[0], false);
	csv_put(b->rep, cols[1], false);
	csv_put(b->rep, cols[2], false);
	csv_put(b->rep, cols[3], false);
	csv_put(b->rep, cols[4], false);
	csv_put(b->rep, status, false);
	csv_put(b->rep, num[1], false);
	csv_put(b->rep, num[2], false);
	csv_put(b->rep, num[3], false);
	csv_put(b->rep, skipped, false);
	snprintf(num[0], sizeof num[0], "%.1f", secs);
	csv_put(b->rep, num[0], false);
	csv_put(b->rep, error, true);
	fflush(b->rep);
}
