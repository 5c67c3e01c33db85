// link: bridge/file.c
/*
 * bridge/file.c in a temporary folder: which folders are fit for state
 * (modes, links, the sticky bit), which files file_open refuses (a link,
 * a hard link, a FIFO, a folder) and what it creates, file_check,
 * file_read's bound and its refusal of anything but a regular file, and
 * the atomic replace (no temporary file left, a link at the old name
 * replaced and not written through, exclusive commit never replacing).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>

#include "bridge.h"
#include "testlib.h"

/* The file's bytes, "" if none; malloc'd. */
static char *
slurp(const char *path)
{
	char	 buf[4096];
	FILE	*f = fopen(path, "r");
	size_t	 n = 0;

	if (f != NULL) {
		n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
	return xstrdup(buf);
}

/* How many names in tmpdir/dir start with prefix. */
static int
count_names(const char *dir, const char *prefix)
{
	char	*cmd = xprintf("ls -a '%s' | grep -c '^%s'", dir, prefix);
	FILE	*p = popen(cmd, "r");
	int	 n = -1;

	if (p != NULL) {
		if (fscanf(p, "%d", &n) != 1)
			n = -1;
		pclose(p);
	}
	free(cmd);
	return n;
}

static const struct {
	mode_t		 mode;
	enum result	 want;
	const char	*says;	/* in the cause, if refused */
} dir_cases[] = {
	{ 0700, RES_OK, NULL },
	{ 0755, RES_OK, NULL },
	{ 0750, RES_OK, NULL },
	{ 0500, RES_OK, NULL },
	{ 0770, RES_AUTH, "chmod 700" },
	{ 0777, RES_AUTH, "chmod 700" },
	{ 0702, RES_AUTH, "chmod 700" },
	{ 01777, RES_AUTH, "a folder of its own" },
};

static void
test_dir_safe(const void *arg)
{
	char		*dir = tmp_path("d"), *lnk = tmp_path("dlink"), *file = tmp_path("dfile");
	char		*cause = NULL;
	enum result	 r;
	size_t		 i;

	(void)arg;
	if (mkdir(dir, 0700) == -1)
		CHECK(0, "mkdir %s: %s", dir, strerror(errno));
	for (i = 0; i < sizeof dir_cases / sizeof dir_cases[0]; i++) {
		chmod(dir, dir_cases[i].mode);
		r = file_dir_safe(dir, "state_dir", &cause);
		CHECK(r == dir_cases[i].want, "mode %04o: %d, want %d (%s)",
		    (unsigned int)dir_cases[i].mode, r, dir_cases[i].want,
		    unit_sesc(cause));
		if (dir_cases[i].says != NULL)
			CHECK(cause != NULL && strstr(cause,
			    dir_cases[i].says) != NULL && strstr(cause, dir) !=
			    NULL, "mode %04o: the cause %s does not say \"%s\" "
			    "and the folder", (unsigned int)dir_cases[i].mode,
			    unit_sesc(cause), dir_cases[i].says);
		free(cause);
		cause = NULL;
	}
	chmod(dir, 0700);

	/* A link to a good folder is refused all the same. */
	if (symlink(dir, lnk) == -1)
		CHECK(0, "symlink: %s", strerror(errno));
	r = file_dir_safe(lnk, "state_dir", &cause);
	CHECK(r == RES_AUTH && strstr(cause, "symbolic link") != NULL,
	    "a linked folder: %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	put_file(file, "x");
	r = file_dir_safe(file, "state_dir", &cause);
	CHECK(r == RES_AUTH, "a file as the folder: %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;
	free(dir);
	free(lnk);
	free(file);
}

static void
test_open(const void *arg)
{
	char		*target = tmp_path("o-target"), *lnk = tmp_path("o-link");
	char		*hard = tmp_path("o-hard"), *fifo = tmp_path("o-fifo");
	char		*fresh = tmp_path("o-fresh"), *text, *cause = NULL;
	struct stat	 st;
	enum result	 r;
	int		 fd;

	(void)arg;
	put_file(target, "precious\n");
	if (symlink(target, lnk) == -1 || link(target, hard) == -1 ||
	    mkfifo(fifo, 0600) == -1)
		CHECK(0, "set-up: %s", strerror(errno));

	r = file_open(lnk, O_RDWR | O_CREAT, 0600, &fd, &cause);
	CHECK(r == RES_AUTH && fd == -1 && strstr(cause, "symbolic link"),
	    "a link: %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	r = file_open(hard, O_RDWR | O_CREAT, 0600, &fd, &cause);
	CHECK(r == RES_AUTH && fd == -1 && strstr(cause, "hard link"),
	    "a hard link: %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	/* O_RDONLY on a FIFO would wait for a writer without O_NONBLOCK. */
	r = file_open(fifo, O_RDONLY, 0, &fd, &cause);
	CHECK(r == RES_AUTH && fd == -1, "a FIFO: %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;

	r = file_open(tmpdir, O_RDONLY, 0, &fd, &cause);
	CHECK(r == RES_AUTH && fd == -1, "a folder: %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;

	text = slurp(target);
	CHECK_STR(text, "precious\n", "the target after the refusals");
	free(text);
	unlink(hard);

	/* Now a single link: it opens, blocking, close-on-exec. */
	r = file_open(target, O_RDWR, 0, &fd, &cause);
	CHECK(r == RES_OK && fd >= 0, "a regular file: %d (%s)", r,
	    unit_sesc(cause));
	if (fd >= 0) {
		CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "no O_CLOEXEC");
		CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) == 0,
		    "O_NONBLOCK left on");
		close(fd);
	}
	free(cause);
	cause = NULL;

	r = file_open(fresh, O_RDWR | O_CREAT | O_EXCL, 0600, &fd, &cause);
	CHECK(r == RES_OK && fd >= 0 && stat(fresh, &st) == 0 &&
	    (st.st_mode & 0777) == 0600, "a new file: %d (%s)", r,
	    unit_sesc(cause));
	if (fd >= 0)
		close(fd);
	free(cause);
	cause = NULL;

	free(fresh);
	fresh = tmp_path("o-none");
	r = file_open(fresh, O_RDONLY, 0, &fd, &cause);
	CHECK(r == RES_TEMP && fd == -1, "a missing file: %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	cause = NULL;

	CHECK(file_check(lnk, "ledger", &cause) == RES_AUTH &&
	    strstr(cause, "ledger") != NULL, "file_check of a link: %s",
	    unit_sesc(cause));
	free(cause);
	cause = NULL;
	CHECK(file_check(target, "ledger", &cause) == RES_OK,
	    "file_check of a file: %s", unit_sesc(cause));
	CHECK(file_check(fifo, "ledger", &cause) == RES_AUTH,
	    "file_check of a FIFO: %s", unit_sesc(cause));
	free(cause);
	cause = NULL;
	CHECK(file_check(fresh, "ledger", &cause) == RES_OK,
	    "file_check of nothing: %s", unit_sesc(cause));
	free(target);
	free(lnk);
	free(hard);
	free(fifo);
	free(fresh);
}

static void
test_read(const void *arg)
{
	char		*p = tmp_path("r-file"), *fifo = tmp_path("r-fifo"), *data;
	char		*cause = NULL, *lnk = tmp_path("r-link");
	struct stat	 st;
	size_t		 len;
	enum result	 r;

	(void)arg;
	put_file(p, "0123456789");
	r = file_read(p, 10, &data, &len, &st, &cause);
	CHECK(r == RES_OK && st.st_size == 10, "at the bound: %d (%s)", r,
	    unit_sesc(cause));
	CHECK_MEM(data, len, "0123456789", 10, "the bytes");
	CHECK(data != NULL && data[len] == '\0', "not NUL-terminated");
	free(data);

	r = file_read(p, 9, &data, &len, NULL, &cause);
	CHECK(r == RES_CONFIG && data == NULL && strstr(cause, "larger"),
	    "over the bound: %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	/* An input the user named: read through a link. */
	if (symlink(p, lnk) == -1)
		CHECK(0, "symlink: %s", strerror(errno));
	r = file_read(lnk, 100, &data, &len, NULL, &cause);
	CHECK(r == RES_OK && len == 10, "through a link: %d (%s)", r,
	    unit_sesc(cause));
	free(data);

	if (mkfifo(fifo, 0600) == -1)
		CHECK(0, "mkfifo: %s", strerror(errno));
	r = file_read(fifo, 100, &data, &len, NULL, &cause);
	CHECK(r == RES_CONFIG && strstr(cause, "not a regular file"),
	    "a FIFO: %d (%s)", r, unit_sesc(cause));
	free(cause);
	cause = NULL;

	free(p);
	p = tmp_path("r-none");
	r = file_read(p, 100, &data, &len, NULL, &cause);
	CHECK(r == RES_CONFIG && data == NULL, "a missing file: %d (%s)", r,
	    unit_sesc(cause));
	free(cause);
	free(p);
	free(fifo);
	free(lnk);
}

static void
test_replace(const void *arg)
{
	char		*dir = tmp_path("w"), *path, *target = tmp_path("w-target");
	char		*tmp, *text, *cause = NULL, *plant;
	struct stat	 st;
	enum result	 r;

	(void)arg;
	mkdir(dir, 0700);
	path = xprintf("%s/state", dir);
	r = file_replace(path, "one\n", 4, 0600, &cause);
	CHECK(r == RES_OK, "a new file: %d (%s)", r, unit_sesc(cause));
	text = slurp(path);
	CHECK_STR(text, "one\n", "its bytes");
	free(text);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
	    "its mode");

	/* A link at the name itself is replaced, not written through; so
	 * is one at the old fixed temporary name left alone. */
	put_file(target, "precious\n");
	plant = xprintf("%s.tmp", path);
	unlink(path);
	if (symlink(target, path) == -1 || symlink(target, plant) == -1)
		CHECK(0, "symlink: %s", strerror(errno));
	r = file_replace(path, "two\n", 4, 0600, &cause);
	CHECK(r == RES_OK, "over a link: %d (%s)", r, unit_sesc(cause));
	CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode),
	    "the link is still there");
	text = slurp(target);
	CHECK_STR(text, "precious\n", "the link's target");
	free(text);
	text = slurp(path);
	CHECK_STR(text, "two\n", "the new bytes");
	free(text);
	unlink(plant);
	free(plant);
	CHECK(count_names(dir, "state.tmp") == 0, "a temporary file is left");

	/* Exclusive: a file already there is never replaced. */
	r = file_tmp_write(path, "three\n", 6, 0600, NULL, &tmp, &cause);
	CHECK(r == RES_OK, "tmp_write: %d (%s)", r, unit_sesc(cause));
	if (r == RES_OK) {
		r = file_tmp_commit(tmp, path, true, &cause);
		CHECK(r == RES_CONFIG, "exclusive over a file: %d", r);
		free(cause);
		cause = NULL;
	}
	text = slurp(path);
	CHECK_STR(text, "two\n", "after the exclusive commit");
	free(text);
	CHECK(count_names(dir, "state.tmp") == 0, "a temporary file is left");

	/* A folder we cannot write: a cause, nothing left. */
	chmod(dir, 0500);
	if (geteuid() != 0) {
		r = file_replace(path, "four\n", 5, 0600, &cause);
		CHECK(r == RES_CONFIG && cause != NULL, "read-only folder: %d",
		    r);
		free(cause);
		cause = NULL;
	}
	chmod(dir, 0700);
	free(dir);
	free(path);
	free(target);
}

int
main(void)
{
	tmp_make("file");
	UNIT_ISOLATED("file_dir_safe", test_dir_safe, NULL);
	UNIT_ISOLATED("file_open, file_check", test_open, NULL);
	UNIT_ISOLATED("file_read", test_read, NULL);
	UNIT_ISOLATED("file_replace", test_replace, NULL);
	return tmp_end();
}
