/*
 * A tiny log: stderr in the foreground or with -v, syslog(LOG_MAIL)
 * otherwise (warnings go to stderr too).  Four levels: warnings, one info
 * line per account run, a debug line per message, and a protocol trace.
 * Nothing logged here is ever a secret: callers pass server text through
 * log_clean() and never hand a password or token to any of these
 * functions.
 *
 * A line on stderr starts with the local time ("2026-12-04 23:59:01
 * popbridge: ..."): a cron mail or a daemon's log file shows when each
 * thing happened.  Under systemd, whose journal keeps its own time, stderr
 * is the journal: every level goes there, each line with its priority as
 * sd-daemon(3) reads it ("<4>" warning, "<6>" info, "<7>" debug), and
 * nothing to syslog, which would store each line twice.
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"

static bool		log_stderr = true;
static bool		log_journal;	/* stderr is systemd's journal stream */
static bool		log_bar;	/* a progress bar ends stderr's line */
static enum log_level	log_max = LOG_LVL_INFO;

/*
 * Is stderr the journal?  systemd sets JOURNAL_STREAM to "DEVICE:INODE" of
 * the stream it connected (systemd.exec(5)); a stderr redirected since (a
 * detached daemon's /dev/null, a shell's 2>file) is another file, and the
 * variable, inherited, says nothing about it.
 */
static bool
journal_stream(void)
{
	const char		*v = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 sb;

	if (v == NULL || sscanf(v, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &sb) == -1)
		return false;
	return (unsigned long long)sb.st_dev == dev &&
	    (unsigned long long)sb.st_ino == ino;
}

void
log_open(bool to_stderr, int verbosity)
{
	log_journal = journal_stream();
	log_stderr = to_stderr || log_journal;
	if (verbosity >= 2)
		log_max = LOG_LVL_TRACE;
	else if (verbosity == 1)
		log_max = LOG_LVL_DEBUG;
	else
		log_max = LOG_LVL_INFO;
	if (!log_stderr)
		openlog("popbridge", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* A progress bar was drawn without a newline: the next line starts anew. */
void
log_bar_drawn(bool open)
{
	log_bar = open;
}

bool
log_enabled(enum log_level level)
{
	return level <= log_max;
}

/* "2026-12-04 23:59:01", local time, into buf. */
static const char *
log_stamp(char *buf, size_t len)
{
	time_t		 now = time(NULL);
	struct tm	 tm;

	if (localtime_r(&now, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(buf, len, "%lld", (long long)now);
	return buf;
}

static void
log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	/* syslog(3)'s numbers, which are also sd-daemon(3)'s prefixes. */
	static const int prio[] = { LOG_WARNING, LOG_INFO, LOG_DEBUG,
	    LOG_DEBUG };
	char	 line[2048], stamp[32];

	if (!log_enabled(level))
		return;
	vsnprintf(line, sizeof line, fmt, ap);
	if (!log_stderr)
		syslog(prio[level], "%s", line);
	/*
	 * Warnings reach stderr as well even when logging to syslog, so that
	 * cron mails them and a script sees why it failed.  A detached daemon
	 * has stderr on /dev/null.
	 */
	if (log_stderr || level == LOG_LVL_WARN) {
		if (log_bar)
			fputc('\n', stderr);
		log_bar = false;
		if (log_journal)
			fprintf(stderr, "<%d>%s\n", prio[level], line);
		else
			fprintf(stderr, "%s popbridge: %s\n", log_stamp(stamp,
			    sizeof stamp), line);
		fflush(stderr);
	}
}

#define LOG_FN(name, level)					\
void								\
name(const char *fmt, ...)					\
{								\
	va_list	 ap;						\
								\
	va_start(ap, fmt);					\
	log_vwrite(level, fmt, ap);				\
	va_end(ap);						\
}
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_debug, LOG_LVL_DEBUG)
LOG_FN(log_trace, LOG_LVL_TRACE)

char *
log_clean(char *dst, size_t dstsz, const char *src, size_t len)
{
	size_t	 i, o = 0;

	if (dstsz < 4) {
		if (dstsz > 0)
			dst[0] = '\0';
		return dst;
	}
	/* Keep room for "..." when the text is cut. */
	for (i = 0; i < len && o + 4 < dstsz; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c == '\r' || c == '\n')
			break;
		dst[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	if (i < len && src[i] != '\r' && src[i] != '\n') {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

/* Out of memory or a state that cannot happen: nothing a server or a
 * config can cause. */
void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LVL_WARN, fmt, ap);
	va_end(ap);
	exit(70);	/* EX_SOFTWARE */
}

/* A byte count for people: "512 B", "4.1 kB", "3.2 MB", "1.50 GB". */
char *
log_size(uint64_t n, char *buf, size_t bufsz)
{
	if (n < 1000)
		snprintf(buf, bufsz, "%llu B", (unsigned long long)n);
	else if (n < 1000 * 1000)
		snprintf(buf, bufsz, "%.1f kB", (double)n / 1e3);
	else if (n < 1000ULL * 1000 * 1000)
		snprintf(buf, bufsz, "%.1f MB", (double)n / 1e6);
	else
		snprintf(buf, bufsz, "%.2f GB", (double)n / 1e9);
	return buf;
}

/* Seconds on the monotonic clock, for durations and rates. */
double
now_seconds(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The account being run, for the word a signal handler writes (SIGBUS in
 * main.c): a fixed buffer, since the handler may read it at any time. */
static char	 current_account[72];

void
log_set_account(const char *name)
{
	snprintf(current_account, sizeof current_account, "%s", name);
}

const char *
log_account(void)
{
	return current_account;
}
