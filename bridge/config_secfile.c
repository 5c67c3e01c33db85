/*
 * The files that hold secrets, checked at load so that `check -n` says
 * what `run` would meet: a file that holds a password (the main file or
 * an included one) must not be readable by others, and every
 * password_file must exist, be readable by its owner only, and be
 * readable by the user that runs popbridge (runner_lookup: the systemd
 * unit's user cannot read root's files).  The secrets themselves are read
 * only when a connection needs them (config_secret.c).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge.h"
#include "config_int.h"

/*
 * Who runs popbridge with this config, and so reads its password files:
 * someone who can read the config.
 *
 *   - A config of another user's is that user's to run: the systemd
 *     unit's User= (installed with -o popbridge, or written by `add`).
 *   - One of root's that only root can read is run by root: a daemon
 *     started as root reads the password files before it becomes `user`
 *     (and its reloads go through a helper that stayed root).
 *   - One of root's that others can read may be run by the unit as well:
 *     by its `user`, if it names one, else by root.
 *
 * RES_CONFIG if `user` names no one.
 */
static enum result
runner_lookup(struct loader *ld)
{
	struct passwd	*pw = NULL;
	const char	*name;
	int		 n = GROUPS_MAX;

	if (ld->runner_known)
		return RES_OK;
	if (ld->owner != 0) {
		ld->runner_why = "the config file's owner";
		if ((pw = getpwuid(ld->owner)) == NULL) {
			/* An owner with no name: only its uid counts. */
			ld->runner.pw_uid = ld->owner;
			ld->runner.pw_gid = (gid_t)-1;
			snprintf(ld->runner_name, sizeof ld->runner_name,
			    "uid %lu", (unsigned long)ld->owner);
			ld->runner.pw_name = ld->runner_name;
			ld->ngroups = 0;
			ld->runner_known = true;
			return RES_OK;
		}
	} else if ((ld->cmode & 044) != 0 && ld->user_key != NULL) {
		name = config_setting_get_string(ld->user_key);
		if ((pw = getpwnam(name)) == NULL)
			return cfail(ld, ld->user_key, "\"user\" \"%s\": no "
			    "such user (it reads the password files and runs "
			    "the daemon)", name);
		ld->runner_why = "the config's \"user\"; the config can be "
		    "read by others";
	} else {
		ld->runner.pw_uid = 0;
		ld->runner_why = "root, the only one who can read the config";
		snprintf(ld->runner_name, sizeof ld->runner_name, "root");
		ld->runner.pw_name = ld->runner_name;
		ld->runner_known = true;
		return RES_OK;
	}
	snprintf(ld->runner_name, sizeof ld->runner_name, "%s", pw->pw_name);
	ld->runner.pw_name = ld->runner_name;
	ld->runner.pw_uid = pw->pw_uid;
	ld->runner.pw_gid = pw->pw_gid;
	if (pw->pw_uid != 0 && getgrouplist(ld->runner_name, pw->pw_gid,
	    ld->groups, &n) == -1)
		n = GROUPS_MAX;		/* more than that: the first ones */
	ld->ngroups = pw->pw_uid != 0 ? n : 0;
	ld->runner_known = true;
	return RES_OK;
}

/* May the runner do `bit` (S_IXUSR: search, S_IRUSR: read) on st? */
static bool
runner_may(const struct loader *ld, const struct stat *st, mode_t bit)
{
	int	 i;

	if (ld->runner.pw_uid == 0)
		return true;
	if (st->st_uid == ld->runner.pw_uid)
		return (st->st_mode & bit) != 0;
	for (i = 0; i < ld->ngroups; i++)
		if (st->st_gid == ld->groups[i])
			return (st->st_mode & (bit >> 3)) != 0;
	if (st->st_gid == ld->runner.pw_gid)
		return (st->st_mode & (bit >> 3)) != 0;
	return (st->st_mode & (bit >> 6)) != 0;
}

static const char *
owner_name(uid_t uid, char *buf, size_t sz)
{
	struct passwd	*pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, sz, "%s", pw->pw_name);
	else
		snprintf(buf, sz, "uid %lu", (unsigned long)uid);
	return buf;
}

/*
 * Can the runner reach and read the file at real (symbolic links
 * resolved): search every folder from / down, then read it?  Mode bits
 * only (no ACLs).  A folder we cannot look at ourselves (EACCES: we are
 * neither root nor the runner) is taken as fine: we cannot tell.
 */
static enum result
runner_reads(struct loader *ld, const config_setting_t *s, const char *where,
    const char *path, const char *real)
{
	struct stat	 st;
	char		*dir, *slash, who[64];
	enum result	 r = RES_OK;

	/* The file first: its owner is the usual mistake (root's, from a
	 * root shell), then every folder above it. */
	if (stat(real, &st) == 0 && !runner_may(ld, &st, S_IRUSR))
		return cfail_as(ld, RES_AUTH, s, "%spassword_file %s cannot be "
		    "read by %s (%s, who runs popbridge): it belongs to %s "
		    "(mode %04o); fix: chown %s %s", where, path,
		    ld->runner_name, ld->runner_why, owner_name(st.st_uid, who,
		    sizeof who), (unsigned int)(st.st_mode & 07777),
		    ld->runner_name, path);
	dir = xstrdup(real);
	for (slash = dir; r == RES_OK && (slash = strchr(slash + 1, '/')) !=
	    NULL; ) {
		*slash = '\0';
		if (stat(dir, &st) == 0 && !runner_may(ld, &st, S_IXUSR))
			r = cfail_as(ld, RES_AUTH, s, "%spassword_file %s cannot "
			    "be read by %s (%s, who runs popbridge): the "
			    "folder %s (owner %s, mode %04o) is closed to them; "
			    "fix: chown %s %s", where, path, ld->runner_name,
			    ld->runner_why, dir, owner_name(st.st_uid, who,
			    sizeof who), (unsigned int)(st.st_mode & 07777),
			    ld->runner_name, dir);
		*slash = '/';
	}
	free(dir);
	return r;
}

/*
 * A password_file as `run` will open it: it exists, is a regular file
 * that only its owner can read (as secret_from_file insists), and the
 * user that runs popbridge can read it.  When we cannot look (not root,
 * not the runner, a folder closed to us), we say nothing: the runner
 * will see for itself.
 */
enum result
secfile_check(struct loader *ld, const config_setting_t *s,
    const char *where, const char *path)
{
	struct stat	 st;
	char		 real[PATH_MAX];
	enum result	 r;

	if (stat(path, &st) == -1) {
		if (errno == EACCES && geteuid() != 0)
			return RES_OK;
		return cfail(ld, s, "%spassword_file %s: %s", where, path,
		    strerror(errno));
	}
	if (!S_ISREG(st.st_mode))
		return cfail(ld, s, "%spassword_file %s is not a regular file",
		    where, path);
	if ((st.st_mode & 077) != 0)
		return cfail_as(ld, RES_AUTH, s, "%spassword_file %s can be read "
		    "by others (mode %04o); refusing to use it (fix: chmod 600 "
		    "%s)", where, path, (unsigned int)(st.st_mode & 07777),
		    path);
	if ((r = runner_lookup(ld)) != RES_OK)
		return r;
	if (ld->runner.pw_uid == 0)
		return RES_OK;
	if (ld->runner.pw_uid == geteuid() && geteuid() != 0) {
		/* The runner is us: ask the kernel (ACLs included). */
		if (faccessat(AT_FDCWD, path, R_OK, AT_EACCESS) == -1)
			return cfail_as(ld, RES_AUTH, s, "%spassword_file %s: %s",
			    where, path, strerror(errno));
		return RES_OK;
	}
	if (realpath(path, real) == NULL)
		return RES_OK;		/* stat worked: a race; run will see */
	return runner_reads(ld, s, where, path, real);
}

/* Remember the file that holds an inline password (once). */
void
secfile_note(struct loader *ld, const config_setting_t *s)
{
	char	*f = setting_file(ld, s);
	size_t	 i;

	for (i = 0; i < ld->npw_files; i++)
		if (strcmp(ld->pw_files[i], f) == 0) {
			free(f);
			return;
		}
	ld->pw_files = xrealloc(ld->pw_files, (ld->npw_files + 1) *
	    sizeof *ld->pw_files);
	ld->pw_files[ld->npw_files++] = f;
}

/*
 * Every file that holds a password (the main file, or one it @includes)
 * must be readable by its owner only: the same rule wherever the
 * password is written.
 */
enum result
secfile_check_inline(struct loader *ld)
{
	struct stat	 st;
	size_t		 i;

	for (i = 0; i < ld->npw_files; i++) {
		if (stat(ld->pw_files[i], &st) == -1 || (st.st_mode & 077) == 0)
			continue;
		free(ld->cause);
		ld->cause = xprintf("%s holds a password and others can read "
		    "it (mode %04o); refusing to use it (fix: chmod 600 %s)",
		    ld->pw_files[i], (unsigned int)(st.st_mode & 07777),
		    ld->pw_files[i]);
		return RES_AUTH;
	}
	return RES_OK;
}
