/*
 * Files, opened as a careful root daemon opens them.
 *
 * popbridge runs as root often enough (the daemon until it drops to
 * `user`, `run` from cron) to be worth fooling: someone who can write in a
 * folder where root writes can plant a symbolic link there, and root then
 * truncates whatever it points to.  So:
 *
 *   - state lives only in folders that nobody else can write to: owned by
 *     root, by us, or by the config's `user` (the daemon hands state_dir to
 *     it), with no write bit for group or others, and not a link
 *     (file_dir_safe);
 *   - a file popbridge writes is opened with O_NOFOLLOW and must turn out
 *     a regular file with one link (file_open): not a link, a FIFO, or a
 *     hard link to a file elsewhere;
 *   - a file replaced as a whole is written to a fresh temporary file
 *     (O_EXCL, an unpredictable name), synced, renamed over the old one,
 *     and the folder synced (file_tmp_write, file_tmp_commit);
 *   - every descriptor is O_CLOEXEC, so no password_command inherits one.
 *
 * Inputs the user names (the config `add` edits, a CSV file, the preset
 * file) are read through links, as the user meant, but only if regular
 * and only up to a bound (file_read).
 *
 * Result classes: an unsafe folder or file is RES_AUTH, like a password
 * file others can read (exit 77); a state file that cannot be opened is
 * RES_TEMP; an input that cannot be read, or a file `add` cannot write, is
 * RES_CONFIG.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"

static uid_t	 trusted_owner = (uid_t)-1;

void
file_trust_user(const char *user)
{
	struct passwd	*pw;

	/* Only root hands state_dir over (daemon.c), so only root trusts. */
	if (user != NULL && geteuid() == 0 && (pw = getpwnam(user)) != NULL)
		trusted_owner = pw->pw_uid;
}

/* A user's name for a message, else the number; into buf. */
static const char *
user_name(uid_t uid, char *buf, size_t sz)
{
	struct passwd	*pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, sz, "%s", pw->pw_name);
	else
		snprintf(buf, sz, "%lu", (unsigned long)uid);
	return buf;
}

static bool
owner_ok(uid_t uid)
{
	return uid == 0 || uid == geteuid() || uid == trusted_owner;
}

enum result
file_dir_safe(const char *dir, const char *what, char **cause)
{
	struct stat	 st;
	char		 real[PATH_MAX], us[64], them[64];

	if (lstat(dir, &st) == -1)
		return fail(cause, RES_TEMP, "%s %s: %s", what, dir,
		    strerror(errno));
	if (S_ISLNK(st.st_mode)) {
		if (realpath(dir, real) == NULL)
			snprintf(real, sizeof real, "the folder itself");
		return fail(cause, RES_AUTH, "%s %s is a symbolic link; "
		    "refused: name %s instead", what, dir, real);
	}
	if (!S_ISDIR(st.st_mode))
		return fail(cause, RES_AUTH, "%s %s is not a folder", what,
		    dir);
	if (!owner_ok(st.st_uid))
		return fail(cause, RES_AUTH, "%s %s belongs to %s, who could "
		    "plant links in it; refused: chown %s %s", what, dir,
		    user_name(st.st_uid, them, sizeof them),
		    user_name(geteuid(), us, sizeof us), dir);
	if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) != 0)
		return fail(cause, RES_AUTH, "%s %s is shared by everyone "
		    "(mode %04o, like /tmp); refused: use a folder of its own",
		    what, dir, (unsigned int)(st.st_mode & 07777));
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return fail(cause, RES_AUTH, "%s %s can be written by %s (mode "
		    "%04o), who could plant links in it; refused: chmod 700 %s",
		    what, dir, (st.st_mode & S_IWOTH) != 0 ? "everyone" :
		    "its group", (unsigned int)(st.st_mode & 07777), dir);
	return RES_OK;
}

enum result
file_open(const char *path, int flags, mode_t mode, int *fdp, char **cause)
{
	struct stat	 st;
	int		 fd, e;

	*fdp = -1;
	/* O_NONBLOCK: a FIFO planted here must not hang the open. */
	fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
	if (fd == -1) {
		e = errno;
		if (e == ELOOP)
			return fail(cause, RES_AUTH, "%s is a symbolic link; "
			    "refused (remove it)", path);
		return fail(cause, RES_TEMP, "cannot open %s: %s", path,
		    strerror(e));
	}
	if (fstat(fd, &st) == -1) {
		e = errno;
		close(fd);
		return fail(cause, RES_TEMP, "cannot open %s: %s", path,
		    strerror(e));
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return fail(cause, RES_AUTH, "%s is %s; refused (remove it)",
		    path, !S_ISREG(st.st_mode) ? "not a regular file" :
		    "a hard link to another file");
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*fdp = fd;
	return RES_OK;
}

enum result
file_check(const char *path, const char *what, char **cause)
{
	struct stat	 st;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? RES_OK : fail(cause, RES_TEMP,
		    "%s %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(cause, RES_AUTH, "%s %s is %s; refused (remove it, "
		    "or put the file itself there)", what, path,
		    S_ISLNK(st.st_mode) ? "a symbolic link" :
		    "not a regular file");
	return RES_OK;
}

enum result
file_read(const char *path, size_t max, char **datap, size_t *lenp,
    struct stat *stp, char **cause)
{
	struct stat	 st;
	char		*buf, size[32];
	ssize_t		 n;
	size_t		 got = 0;
	int		 fd, e;

	*datap = NULL;
	*lenp = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1 ||
	    fstat(fd, &st) == -1) {
		e = errno;
		if (fd != -1)
			close(fd);
		return fail(cause, RES_CONFIG, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(cause, RES_CONFIG, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return fail(cause, RES_CONFIG, "%s: larger than %s", path,
		    log_size(max, size, sizeof size));
	}
	/* A file that grows meanwhile is read up to its size at fstat. */
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		if ((n = read(fd, buf + got, (size_t)st.st_size - got)) == -1) {
			if (errno == EINTR)
				continue;
			e = errno;
			close(fd);
			free(buf);
			return fail(cause, RES_CONFIG, "%s: %s", path,
			    strerror(e));
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	*datap = buf;
	*lenp = got;
	if (stp != NULL)
		*stp = st;
	return RES_OK;
}

void
file_sync_dir(const char *path)
{
	char	*tmp = xstrdup(path);
	int	 fd;

	if ((fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) !=
	    -1) {
		(void)fsync(fd);
		close(fd);
	}
	free(tmp);
}

enum result
file_tmp_write(const char *path, const void *data, size_t len, mode_t mode,
    const struct stat *like, char **tmpp, char **cause)
{
	char		*tmp = xprintf("%s.tmp-XXXXXX", path);
	const char	*p = data;
	ssize_t		 n;
	size_t		 off = 0;
	int		 fd, e = 0;

	*tmpp = NULL;
	/* mkostemp creates with O_CREAT | O_EXCL: never through a link. */
	if ((fd = mkostemp(tmp, O_CLOEXEC | O_NOFOLLOW)) == -1) {
		e = errno;
		free(tmp);
		return fail(cause, RES_CONFIG, "cannot create a file next to "
		    "%s: %s", path, strerror(e));
	}
	if (fchmod(fd, mode) == -1 || (like != NULL && geteuid() == 0 &&
	    fchown(fd, like->st_uid, like->st_gid) == -1))
		e = errno;
	while (e == 0 && off < len) {
		if ((n = write(fd, p + off, len - off)) == -1) {
			if (errno != EINTR)
				e = errno;
		} else
			off += (size_t)n;
	}
	if (e == 0 && fsync(fd) == -1)
		e = errno;
	if (close(fd) == -1 && e == 0)
		e = errno;
	if (e != 0) {
		unlink(tmp);
		free(tmp);
		return fail(cause, RES_CONFIG, "cannot write %s: %s", path,
		    strerror(e));
	}
	*tmpp = tmp;
	return RES_OK;
}

enum result
file_tmp_commit(char *tmp, const char *path, bool exclusive, char **cause)
{
	int	 rc, e;

	rc = exclusive ? link(tmp, path) : rename(tmp, path);
	e = errno;
	if (rc == -1 || exclusive)
		unlink(tmp);
	free(tmp);
	if (rc == -1)
		return fail(cause, RES_CONFIG, "cannot write %s: %s", path,
		    strerror(e));
	file_sync_dir(path);
	return RES_OK;
}

enum result
file_replace(const char *path, const void *data, size_t len, mode_t mode,
    char **cause)
{
	char		*tmp;
	enum result	 r;

	if ((r = file_tmp_write(path, data, len, mode, NULL, &tmp, cause)) !=
	    RES_OK)
		return r;
	return file_tmp_commit(tmp, path, false, cause);
}
