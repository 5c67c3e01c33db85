/*
 * `add`: who will run popbridge, and so must be able to read the config
 * and the secret files it writes (add_owner): --owner, the config's
 * owner or `user`, the systemd unit's User=, or whoever runs `add`.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "add_int.h"

/* ---- who runs popbridge: the files must be readable by that user ---- */

/* The User= of a systemd unit's [Service] section, into user; false if
 * the file cannot be read or says none. */
static bool
unit_user_of(const char *path, char *user, size_t sz)
{
	char		*text = NULL, *why = NULL, *line, *save = NULL, *v;
	size_t		 len, n;
	bool		 service = false, found = false;

	if (file_read(path, UNIT_MAX, &text, &len, NULL, &why) != RES_OK) {
		free(why);
		return false;
	}
	for (line = strtok_r(text, "\n", &save); line != NULL && !found;
	    line = strtok_r(NULL, "\n", &save)) {
		line += strspn(line, " \t");
		if (line[0] == '[')
			service = strncmp(line, "[Service]", 9) == 0;
		else if (service && strncmp(line, "User=", 5) == 0) {
			v = line + 5;
			n = strcspn(v, " \t\r#;");
			if (n > 0 && n < sz) {
				memcpy(user, v, n);
				user[n] = '\0';
				found = name_ok(user);
			}
		}
	}
	free(text);
	return found;
}

/*
 * The systemd unit that will run the daemon: $POPBRIDGE_UNIT (""
 * switches this off), the one systemd loads (/etc/systemd/system, then
 * the packaged place), else the one shipped beside the program
 * (PREFIX/share/popbridge/, or config/ in the source tree), as for the
 * presets.  Its User= into user, its path into *where (malloc'd).
 */
static bool
unit_user(char *user, size_t sz, char **where)
{
	static const char *const sys[] = { "/etc/systemd/system/" UNIT_NAME,
		"/usr/local/lib/systemd/system/" UNIT_NAME,
		"/lib/systemd/system/" UNIT_NAME };
	const char	*env = getenv("POPBRIDGE_UNIT");
	char		 exe[PATH_MAX], *p, *dir;
	ssize_t		 n;
	size_t		 i;

	*where = NULL;
	if (env != NULL) {
		if (env[0] == '\0' || !unit_user_of(env, user, sz))
			return false;
		*where = xstrdup(env);
		return true;
	}
	for (i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (unit_user_of(sys[i], user, sz)) {
			*where = xstrdup(sys[i]);
			return true;
		}
	if ((n = readlink("/proc/self/exe", exe, sizeof exe - 1)) <= 0)
		return false;
	exe[n] = '\0';
	dir = dirname(exe);
	for (i = 0; i < 2; i++) {
		p = xprintf("%s/%s/%s", dir, i == 0 ? "../share/popbridge" :
		    "../config", UNIT_NAME);
		if (unit_user_of(p, user, sz)) {
			*where = p;
			return true;
		}
		free(p);
	}
	return false;
}

static bool
owner_set(struct add *a, const char *name, const char *why)
{
	struct passwd	*pw;

	if ((pw = getpwnam(name)) == NULL)
		return false;
	snprintf(a->owner, sizeof a->owner, "%s", pw->pw_name);
	a->owner_uid = pw->pw_uid;
	a->owner_gid = pw->pw_gid;
	a->owner_why = why;
	return true;
}

/*
 * Who will run popbridge, and so must be able to read the config and the
 * secret files: the systemd unit runs the daemon as its User= (shipped:
 * popbridge), which cannot read root's 0600 files.  In this order:
 *
 *   - --owner USER (it must agree with an existing config's `user`); an
 *     existing config goes to USER too, who must read it;
 *   - the existing config's owner, unless root;
 *   - the existing config's `user` (a daemon started as root becomes it);
 *   - for a new config, the unit's User=, if that user exists;
 *   - else whoever runs `add`.
 *
 * What add writes then passes config.c's check of the password files
 * (runner_lookup: who can read the config).  A new config of someone
 * else's says `user` too.  Only root can give files away; anyone else
 * writes their own.
 */
enum result
add_owner(struct add *a, char **cause)
{
	struct passwd	*pw;
	char		 unit[64], *where = NULL;
	bool		 fresh = !a->exists || a->textlen == 0;

	if ((pw = getpwuid(geteuid())) == NULL)
		return fail(cause, RES_CONFIG, "who am I? (uid %lu has no "
		    "name)", (unsigned long)geteuid());
	snprintf(a->owner, sizeof a->owner, "%s", pw->pw_name);
	a->owner_uid = pw->pw_uid;
	a->owner_gid = pw->pw_gid;
	a->owner_why = "you";
	if (a->owner_opt != NULL && getpwnam(a->owner_opt) == NULL)
		return ufail(a, cause, "--owner %s: no such user", a->owner_opt);
	if (geteuid() != 0) {
		if (a->owner_opt != NULL && strcmp(a->owner_opt, a->owner) != 0)
			return ufail(a, cause, "--owner %s: only root can give "
			    "files to another user", a->owner_opt);
		return RES_OK;
	}
	if (a->owner_opt != NULL) {
		if (a->cf != NULL && a->cf->user != NULL &&
		    strcmp(a->owner_opt, a->cf->user) != 0)
			return ufail(a, cause, "--owner %s, but %s says user = "
			    "\"%s\": that user runs popbridge and must read "
			    "the files", a->owner_opt, a->config, a->cf->user);
		(void)owner_set(a, a->owner_opt, "--owner");
		/* It runs popbridge: it must read the config as well. */
		a->chown_config = !fresh && a->st.st_uid != a->owner_uid;
		a->user_key = fresh && a->owner_uid != 0;
		return RES_OK;
	}
	if (!fresh) {
		if (a->st.st_uid != 0 && (pw = getpwuid(a->st.st_uid)) != NULL)
			(void)owner_set(a, pw->pw_name, "the config's owner");
		else if (a->cf != NULL && a->cf->user != NULL &&
		    !owner_set(a, a->cf->user, "the config's \"user\""))
			return fail(cause, RES_CONFIG, "%s: user \"%s\": no "
			    "such user", a->config, a->cf->user);
		return RES_OK;
	}
	if (unit_user(unit, sizeof unit, &where)) {
		if (owner_set(a, unit, "the systemd unit's User="))
			a->user_key = a->owner_uid != 0;
		else
			a->unit_note = xprintf("note: %s runs popbridge as %s, "
			    "who does not exist here: the files go to root, "
			    "which the unit cannot read.  Create the user first "
			    "(useradd --system --home-dir /var/lib/popbridge "
			    "--shell /usr/sbin/nologin %s) and add again, or "
			    "give --owner", where, unit, unit);
	}
	free(where);
	return RES_OK;
}
