/*
 * What the unit tests that work on files share: a temporary folder of
 * their own (under $TMPDIR, else /tmp), removed at the end, and files
 * written into it.  Header-only and static, like unit.h, which it
 * includes; a test uses what it needs.
 *
 *	tmp_make("config")	make tmpdir, popbridge-config-XXXXXX; exit 2
 *				if it cannot
 *	tmp_end()		UNIT_END(), then remove tmpdir: main's status
 *	tmp_path(name)		tmpdir/name (malloc'd)
 *	put_file(path, text)	write text to path; exit 2 if it cannot
 *	write_file(name, text, mode)	a fresh tmpdir/name of that text and
 *				mode; its path (malloc'd)
 *	load_config(what, name, text, mode)	write_file, then config_load
 *				must succeed; the config, or NULL (a FAIL);
 *				with TESTLIB_CONFIG defined (config.c linked)
 */
#ifndef TESTLIB_H
#define TESTLIB_H

#include <sys/stat.h>

#include <errno.h>

#include "unit.h"

static char	 tmpdir[256];

static __attribute__((unused)) void
tmp_make(const char *what)
{
	const char	*t = getenv("TMPDIR");

	snprintf(tmpdir, sizeof tmpdir, "%s/popbridge-%s-XXXXXX",
	    t != NULL && *t != '\0' ? t : "/tmp", what);
	if (mkdtemp(tmpdir) == NULL) {
		printf("mkdtemp %s: %s\n", tmpdir, strerror(errno));
		exit(2);
	}
}

static __attribute__((unused)) int
tmp_end(void)
{
	char	*rm;
	int	 rc;

	rc = UNIT_END();
	rm = xprintf("rm -rf '%s'", tmpdir);
	if (system(rm) != 0)
		printf("cannot remove %s\n", tmpdir);
	free(rm);
	return rc;
}

static __attribute__((unused)) char *
tmp_path(const char *name)
{
	return xprintf("%s/%s", tmpdir, name);
}

static void
put_file(const char *path, const char *text)
{
	FILE	*f = fopen(path, "w");

	if (f == NULL) {
		printf("cannot write %s: %s\n", path, strerror(errno));
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static __attribute__((unused)) char *
write_file(const char *name, const char *text, mode_t mode)
{
	char	*path = tmp_path(name);

	unlink(path);
	put_file(path, text);
	chmod(path, mode);
	return path;
}

/* Only in tests that link config.c: say so with TESTLIB_CONFIG. */
#ifdef TESTLIB_CONFIG
static __attribute__((unused)) struct config *
load_config(const char *what, const char *name, const char *text,
    mode_t mode)
{
	struct config	*cf = NULL;
	char		*path = write_file(name, text, mode);
	char		*cause = NULL;
	enum result	 r;

	r = config_load(path, &cf, &cause);
	CHECK(r == RES_OK && cf != NULL, "%s: config_load = %d, cause %s",
	    what, r, unit_sesc(cause));
	free(cause);
	free(path);
	return r == RES_OK ? cf : NULL;
}
#endif

#endif
