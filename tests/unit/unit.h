/*
 * A tiny shared helper for the table-driven unit tests in tests/unit.
 *
 *	CHECK(cond, fmt, ...)	count a pass, or a failure printed as
 *				"FAIL file:line: message"
 *	CHECK_STR(got, want, what)	compare two C strings (NULL allowed)
 *	CHECK_MEM(got, glen, want, wlen, what)	compare byte strings,
 *				printing both escaped on failure
 *	UNIT_ISOLATED(name, fn, arg)	run fn(arg) in a child process, so a
 *				crash (e.g. an AddressSanitizer report) fails
 *				that case only; CHECKs in the child count
 *	UNIT_END()		print "N passed, N failed" and give main's
 *				exit status
 *
 * Everything is static and header-only: each test program is one .c file.
 */
#ifndef UNIT_H
#define UNIT_H

#include <sys/types.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

static unsigned long unit_passed, unit_failed;

static void
unit_failf(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
unit_failf(const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	unit_failed++;
	printf("FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	/* A sanitizer may end the process: never lose a FAIL line. */
	fflush(stdout);
}

#define CHECK(cond, ...) do {						\
	if (cond)							\
		unit_passed++;						\
	else								\
		unit_failf(__FILE__, __LINE__, __VA_ARGS__);		\
} while (0)

/* Escape bytes for a failure message into a static ring of buffers. */
static const char *
unit_esc(const void *p, size_t n)
{
	static char	 ring[4][1024];
	static int	 next;
	const unsigned char *s = p;
	char		*b = ring[next++ % 4];
	size_t		 i, o = 0;

	if (p == NULL)
		return "(null)";
	b[o++] = '"';
	for (i = 0; i < n && o + 8 < sizeof ring[0]; i++) {
		unsigned char c = s[i];

		if (c == '\r')
			o += (size_t)sprintf(b + o, "\\r");
		else if (c == '\n')
			o += (size_t)sprintf(b + o, "\\n");
		else if (c == '\t')
			o += (size_t)sprintf(b + o, "\\t");
		else if (c == '"' || c == '\\')
			o += (size_t)sprintf(b + o, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			o += (size_t)sprintf(b + o, "\\x%02x", c);
		else
			b[o++] = (char)c;
	}
	if (i < n)
		o += (size_t)sprintf(b + o, "...");
	b[o++] = '"';
	b[o] = '\0';
	return b;
}

static __attribute__((unused)) const char *
unit_sesc(const char *s)
{
	return s == NULL ? "(null)" : unit_esc(s, strlen(s));
}

#define CHECK_STR(got, want, what) do {					\
	const char *unit_g = (got), *unit_w = (want);			\
	CHECK((unit_g == NULL && unit_w == NULL) ||			\
	    (unit_g != NULL && unit_w != NULL &&			\
	    strcmp(unit_g, unit_w) == 0),				\
	    "%s: got %s, want %s", (what), unit_sesc(unit_g),		\
	    unit_sesc(unit_w));						\
} while (0)

#define CHECK_MEM(got, glen, want, wlen, what) do {			\
	const void *unit_g = (got), *unit_w = (want);			\
	size_t unit_gl = (glen), unit_wl = (wlen);			\
	CHECK(unit_gl == unit_wl && (unit_gl == 0 ||			\
	    (unit_g != NULL && memcmp(unit_g, unit_w, unit_gl) == 0)),	\
	    "%s: got %s (%zu bytes), want %s (%zu bytes)", (what),	\
	    unit_esc(unit_g, unit_gl), unit_gl, unit_esc(unit_w,	\
	    unit_wl), unit_wl);						\
} while (0)

/*
 * Run fn(arg) in a child.  The child sends its pass/fail counts back
 * through a pipe; a child that dies before that (signal, sanitizer report,
 * exit) is one failure, reported with the sanitizer's SUMMARY line.
 */
static __attribute__((unused)) void
unit_isolated(const char *file, int line, const char *name,
    void (*fn)(const void *), const void *arg)
{
	unsigned long	 counts[2];
	int		 fds[2], status;
	FILE		*err;
	pid_t		 pid;
	ssize_t		 got;
	char		 buf[512], summary[512] = "";
	int		 ub = 0;

	fflush(stdout);
	fflush(stderr);
	if (pipe(fds) == -1 || (err = tmpfile()) == NULL) {
		unit_failf(file, line, "%s: cannot set up a child", name);
		return;
	}
	if ((pid = fork()) == -1) {
		unit_failf(file, line, "%s: fork failed", name);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		dup2(fileno(err), 2);
		unit_passed = unit_failed = 0;
		fn(arg);
#ifdef __SANITIZE_ADDRESS__
		/* The child ends with _exit: look for leaks now. */
		if (__lsan_do_recoverable_leak_check() != 0)
			unit_failf(file, line, "%s: memory leaked", name);
#endif
		fflush(stdout);
		counts[0] = unit_passed;
		counts[1] = unit_failed;
		if (write(fds[1], counts, sizeof counts) != sizeof counts)
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	got = read(fds[0], counts, sizeof counts);
	close(fds[0]);
	waitpid(pid, &status, 0);
	rewind(err);
	while (fgets(buf, sizeof buf, err) != NULL) {
		if (strstr(buf, "runtime error") != NULL)
			ub = 1;
		if (strstr(buf, "SUMMARY:") != NULL || (summary[0] == '\0' &&
		    strstr(buf, "runtime error") != NULL)) {
			buf[strcspn(buf, "\n")] = '\0';
			snprintf(summary, sizeof summary, "%s", buf);
		}
	}
	if (got == (ssize_t)sizeof counts) {
		unit_passed += counts[0];
		unit_failed += counts[1];
	}
	if (WIFSIGNALED(status))
		unit_failf(file, line, "%s: crashed (signal %d) %s", name,
		    WTERMSIG(status), summary);
	else if (got != (ssize_t)sizeof counts || WEXITSTATUS(status) != 0)
		unit_failf(file, line, "%s: child exited %d %s", name,
		    WEXITSTATUS(status), summary);
	else if (ub)
		unit_failf(file, line, "%s: %s", name, summary);
	/* On any trouble show what the child said on stderr. */
	if (WIFSIGNALED(status) || got != (ssize_t)sizeof counts ||
	    WEXITSTATUS(status) != 0 || ub || counts[1] != 0) {
		rewind(err);
		while (fgets(buf, sizeof buf, err) != NULL)
			fputs(buf, stderr);
		fflush(stderr);
	}
	fclose(err);
}

#define UNIT_ISOLATED(name, fn, arg)					\
	unit_isolated(__FILE__, __LINE__, (name), (fn), (arg))

static int
unit_end(void)
{
	printf("%lu passed, %lu failed\n", unit_passed, unit_failed);
	/* LeakSanitizer runs after main and may _exit without flushing. */
	fflush(stdout);
	return unit_failed == 0 ? 0 : 1;
}

#define UNIT_END()	unit_end()

#define NELEM(a)	(sizeof (a) / sizeof (a)[0])

#endif
