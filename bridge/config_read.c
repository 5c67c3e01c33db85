/*
 * Reading the config file and what it @includes with libconfig, and the
 * file each setting comes from, so that an error names the file that
 * holds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "config_int.h"

/*
 * The file a setting comes from, fit to print (malloc'd).  libconfig 1.5
 * records an included file's name as written in the @include; it opened
 * it from the main file's folder (read_config), so that is where a
 * relative one is.
 */
static char *
source_file(const struct loader *ld, const char *f)
{
	if (f == NULL || strcmp(f, ld->read_as) == 0)
		return xstrdup(ld->file);
	if (f[0] == '/')
		return xstrdup(f);
	return xprintf("%s/%s", ld->dir, f);
}

char *
setting_file(const struct loader *ld, const config_setting_t *s)
{
	return source_file(ld, s != NULL ? config_setting_source_file(s) :
	    NULL);
}

/*
 * The name an "@include" names, from the line that holds it (libconfig
 * 1.5 says only "cannot open include file"); "" if it cannot be found.
 */
static void
include_name(const char *file, int line, char *out, size_t outsz)
{
	char	 buf[1024], *q, *e;
	size_t	 n = 0;
	FILE	*f;
	int	 c, at = 1;

	out[0] = '\0';
	if ((f = fopen(file, "re")) == NULL)
		return;
	while (at < line && (c = getc(f)) != EOF)
		if (c == '\n')
			at++;
	while (n < sizeof buf - 1 && (c = getc(f)) != EOF && c != '\n')
		buf[n++] = (char)c;
	buf[n] = '\0';
	fclose(f);
	if ((q = strstr(buf, "@include")) != NULL &&
	    (q = strchr(q, '"')) != NULL && (e = strchr(q + 1, '"')) != NULL)
		log_clean(out, outsz, q + 1, (size_t)(e - q - 1));
}

/*
 * Read the file (or the copy of it open as fd, if not -1) and what it
 * @includes.  libconfig 1.5 (Debian 12) opens an included file by the
 * name as written, from the working folder; config_set_include_dir would
 * prefix every name with a folder, absolute ones too, which breaks them.
 * So the file is read from its own folder: a relative @include (in an
 * included file as well) starts at the folder of the main file, as
 * relative paths of settings do, wherever popbridge was started.  Its
 * errors name the file that holds them.
 */
enum result
read_config(config_t *cfg, struct loader *ld, int fd, char **cause)
{
	char		*tmp, *base, *file, inc[200];
	FILE		*f = NULL;
	int		 here, rc, e, copy = -1;
	enum result	 r;

	tmp = xstrdup(ld->file);
	base = xstrdup(basename(tmp));
	free(tmp);
	/* A copy is read from its start: the descriptor may be shared with
	 * the one who wrote it, its offset at the end. */
	if (fd != -1 && ((copy = dup(fd)) == -1 || (f = fdopen(copy, "re")) ==
	    NULL || fseeko(f, 0, SEEK_SET) == -1)) {
		e = errno;
		if (f != NULL)
			fclose(f);
		else if (copy != -1)
			close(copy);
		free(base);
		return fail(cause, RES_CONFIG, "%s: cannot read: %s", ld->file,
		    strerror(e));
	}
	here = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (here != -1 && chdir(ld->dir) == 0) {
		ld->read_as = base;
		rc = f != NULL ? config_read(cfg, f) : config_read_file(cfg,
		    base);
		e = errno;
		if (fchdir(here) == -1)
			fatal("cannot return to the working folder: %s",
			    strerror(errno));
	} else {
		ld->read_as = ld->file;
		rc = f != NULL ? config_read(cfg, f) : config_read_file(cfg,
		    ld->file);
		e = errno;
	}
	if (f != NULL)
		fclose(f);
	if (here != -1)
		close(here);
	if (rc == CONFIG_TRUE) {
		/* read_as must live as long as the settings' file names are
		 * compared with it: until config_load returns. */
		ld->read_base = base;
		return RES_OK;
	}
	if (config_error_type(cfg) == CONFIG_ERR_FILE_IO)
		r = fail(cause, RES_CONFIG, "%s: cannot read: %s", ld->file,
		    strerror(e));
	else {
		file = source_file(ld, config_error_file(cfg));
		inc[0] = '\0';
		if (strcmp(config_error_text(cfg), "cannot open include file") ==
		    0)
			include_name(file, config_error_line(cfg), inc,
			    sizeof inc);
		if (inc[0] != '\0')
			r = fail(cause, RES_CONFIG, "%s:%d: cannot open include "
			    "file %s%s%s", file, config_error_line(cfg),
			    inc[0] == '/' ? "" : ld->dir, inc[0] == '/' ? "" :
			    "/", inc);
		else
			r = fail(cause, RES_CONFIG, "%s:%d: %s", file,
			    config_error_line(cfg), config_error_text(cfg));
		free(file);
	}
	free(base);
	ld->read_as = NULL;
	return r;
}
