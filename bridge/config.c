/*
 * The configuration file (libconfig syntax), validated strictly against a
 * table of keys: unknown keys, wrong types, missing required keys and bad
 * values are errors reported as "file:line: message", the file being the
 * one that holds the error (the main file or one it @includes:
 * config_read.c).
 *
 * Secrets are read only when a connection needs them (config_secret.c),
 * never at load time; but what can be known about them without reading
 * them is checked at load (config_secfile.c), so that `check -n` says
 * what `run` would meet.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "bridge.h"
#include "config_int.h"
#include "config_gmail.h"
#include "route.h"

static const struct config_key top_keys[] = {
	{ "state_dir", CK_STR, NULL, false },
	{ "timeout", CK_INT, NULL, false },
	{ "deadline", CK_INT, NULL, false },
	{ "interval", CK_INT, NULL, false },
	{ "jobs", CK_INT, NULL, false },
	{ "max_backoff", CK_INT, NULL, false },
	{ "user", CK_STR, NULL, false },
	{ "pid_file", CK_STR, NULL, false },
	{ "notify_command", CK_STR, NULL, false },
	{ "listen", CK_STR, NULL, false },	/* the web page (web.c) */
	{ "listen_token_file", CK_STR, NULL, false },
	{ "listen_token_command", CK_STR, NULL, false },
	{ "accounts", CK_LIST, NULL, true },
	{ NULL, 0, NULL, false }
};
static const struct config_key account_keys[] = {
	{ "name", CK_STR, NULL, true },
	{ "pop3", CK_GROUP, NULL, true },
	{ "imap", CK_GROUP, NULL, true },
	{ "keep", CK_BOOL, NULL, false },
	{ "flags", CK_ARRAY, NULL, false },
	{ "interval", CK_INT, NULL, false },
	{ "deadline", CK_INT, NULL, false },
	{ "delete_after", CK_INT, NULL, false },
	{ "max_size", CK_INT, NULL, false },
	{ "notify_command", CK_STR, NULL, false },
	{ "destinations", CK_LIST, NULL, false },	/* config_route.c */
	{ "rules", CK_LIST, NULL, false },
	{ "multidrop", CK_GROUP, NULL, false },
	{ NULL, 0, NULL, false }
};
/* An optional integer member within [lo, hi]; *v keeps its default. */
static enum result
get_bounded(struct loader *ld, const config_setting_t *group,
    const char *name, long lo, long hi, const char *where, long *v)
{
	config_setting_t	*s = config_setting_get_member(group, name);
	long long		 n;

	if (s == NULL)
		return RES_OK;
	n = config_setting_get_int64(s);
	if (n < lo || n > hi)
		return cfail(ld, s, "%s\"%s\" must be %ld to %ld", where, name,
		    lo, hi);
	*v = (long)n;
	return RES_OK;
}

/* max_size: bytes, at least 1 KiB (a smaller limit is a typo). */
static enum result
get_max_size(struct loader *ld, const config_setting_t *group,
    const char *where, long long *v)
{
	config_setting_t	*s = config_setting_get_member(group,
				    "max_size");
	long long		 n;

	if (s == NULL)
		return RES_OK;
	n = config_setting_get_int64(s);
	if (n < 1024)
		return cfail(ld, s, "%s\"max_size\" must be at least 1024 "
		    "(bytes)", where);
	*v = n;
	return RES_OK;
}

/* An account's pop3 or imap block. */
static enum result
load_endpoint(struct loader *ld, const config_setting_t *g,
    struct endpoint *ep, bool imap, const char *acct)
{
	char	 where[160];

	snprintf(where, sizeof where, "account \"%s\": %s: ", acct,
	    imap ? "imap" : "pop3");
	return load_endpoint_at(ld, g, ep, imap, false, where);
}

static bool
name_valid(const char *n)
{
	if (*n == '\0' || strlen(n) > 64)
		return false;
	for (; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && strchr("._-+@", *n) == NULL)
			return false;
	return true;
}

static enum result
load_account(struct loader *ld, struct config *cf, const config_setting_t *a,
    struct account *ac)
{
	config_setting_t *flags, *f;
	char		 where[100];
	int		 keep, i, n;
	size_t		 j;
	enum result	 r;

	ac->line = config_setting_source_line(a);
	if (config_setting_type(a) != CONFIG_TYPE_GROUP)
		return cfail(ld, a, "each account must be a group { ... }");
	if ((r = config_check_keys(ld, a, account_keys, "account: ")) != RES_OK)
		return r;
	ac->name = config_get_string(a, "name");
	if (!name_valid(ac->name))
		return cfail(ld, config_setting_get_member(a, "name"),
		    "account name \"%s\" may have only letters, digits and "
		    "._-+@ (at most 64)", ac->name);
	/* ac is the last of the cf->naccounts loaded so far. */
	for (j = 0; j + 1 < cf->naccounts; j++)
		if (strcmp(cf->accounts[j].name, ac->name) == 0)
			return cfail(ld, a, "account \"%s\" is defined twice",
			    ac->name);
	snprintf(where, sizeof where, "account \"%s\": ", ac->name);
	if ((r = load_endpoint(ld, config_setting_get_member(a, "pop3"),
	    &ac->pop3, false, ac->name)) != RES_OK ||
	    (r = load_endpoint(ld, config_setting_get_member(a, "imap"),
	    &ac->imap, true, ac->name)) != RES_OK)
		return r;
	ac->interval = cf->interval;
	ac->deadline = cf->deadline;
	/* The account's own, else the top-level one; "" for none. */
	if ((ac->notify_command = config_get_string(a,
	    "notify_command")) == NULL &&
	    cf->notify_command != NULL)
		ac->notify_command = xstrdup(cf->notify_command);
	if (ac->notify_command != NULL && ac->notify_command[0] == '\0') {
		free(ac->notify_command);
		ac->notify_command = NULL;
	}
	if ((r = get_bounded(ld, a, "interval", 60, 7 * 86400, where,
	    &ac->interval)) != RES_OK ||
	    (r = get_bounded(ld, a, "deadline", 10, 7 * 86400, where,
	    &ac->deadline)) != RES_OK ||
	    (r = get_bounded(ld, a, "delete_after", 1, 3650, where,
	    &ac->delete_after)) != RES_OK ||
	    (r = get_max_size(ld, a, where, &ac->max_size)) != RES_OK)
		return r;
	ac->keep = true;
	if (config_setting_lookup_bool(a, "keep", &keep) == CONFIG_TRUE)
		ac->keep = keep != 0;
	if (ac->delete_after > 0 && !ac->keep)
		return cfail(ld, config_setting_get_member(a, "delete_after"),
		    "%s\"delete_after\" keeps mail on the POP3 server for a "
		    "while: it needs keep = true (keep = false deletes at once)",
		    where);
	ac->flags = xstrdup("");
	if ((flags = config_setting_get_member(a, "flags")) != NULL) {
		n = config_setting_length(flags);
		for (i = 0; i < n; i++) {
			f = config_setting_get_elem(flags, (unsigned int)i);
			if (config_setting_type(f) != CONFIG_TYPE_STRING ||
			    !config_flags_add(&ac->flags,
			    config_setting_get_string(f)))
				return cfail(ld, flags, "%s\"flags\" must be "
				    "IMAP flags such as \"\\\\Seen\" or "
				    "keywords", where);
		}
	}
	/* Last: destinations, rules and multidrop use the imap block. */
	return config_route_load(ld, a, ac);
}

/* An error at an account's line (the file that holds the account). */
static enum result
lfail_at(struct loader *ld, size_t acct, int line, const char *fmt, ...)
    PRINTFLIKE(4, 5);

static enum result
lfail_at(struct loader *ld, size_t acct, int line, const char *fmt, ...)
{
	va_list		 ap;
	enum result	 r;

	va_start(ap, fmt);
	r = vcfail(ld, RES_CONFIG, ld->acct_files[acct], line, fmt, ap);
	va_end(ap);
	return r;
}

/* "line 7", or "line 7 of FILE" when the account is in another file. */
static char *
acct_where(const struct loader *ld, size_t acct, int line)
{
	if (strcmp(ld->acct_files[acct], ld->file) == 0)
		return xprintf("line %d", line);
	return xprintf("line %d of %s", line, ld->acct_files[acct]);
}

/*
 * Accounts that read one POP3 mailbox (ident.c's spelling) into different
 * destinations work together: a message goes from the server only once
 * every one of them has it.  That needs one answer to "keep": one account
 * keeping the mail and another deleting it would take it from under the
 * first.  (The same mailbox into the same destination twice is harmless:
 * they share one ledger row per message, and the second finds it done.)
 */
static enum result
check_shared(struct loader *ld, const struct config *cf)
{
	const struct account *a, *b;
	char		*sa, *sb;
	size_t		 i, j;
	enum result	 r = RES_OK;

	for (i = 0; i < cf->naccounts && r == RES_OK; i++) {
		a = &cf->accounts[i];
		sa = ident_source(&a->pop3);
		for (j = 0; j < i && r == RES_OK; j++) {
			b = &cf->accounts[j];
			sb = ident_source(&b->pop3);
			if (strcmp(sa, sb) == 0 && (a->keep != b->keep ||
			    a->delete_after != b->delete_after)) {
				char *wa = acct_where(ld, i, a->line);
				char *wb = acct_where(ld, j, b->line);

				r = lfail_at(ld, i, a->line, "accounts \"%s\" (%s) "
				    "and \"%s\" (%s) read the same POP3 "
				    "mailbox %s, but keep or delete_after differ: "
				    "one would delete what the other still needs; "
				    "give both the same", b->name, wb,
				    a->name, wa, sa);
				free(wa);
				free(wb);
			}
			free(sb);
		}
		free(sa);
	}
	return r;
}

static void
loader_free(struct loader *ld)
{
	size_t	 i;

	for (i = 0; i < ld->npw_files; i++)
		free(ld->pw_files[i]);
	free(ld->pw_files);
	for (i = 0; i < ld->naccts; i++)
		free(ld->acct_files[i]);
	free(ld->acct_files);
	free(ld->read_base);
	free(ld->dir);
}

/*
 * The config at path, or its copy open as fd (-1: none).  check_secrets:
 * check the password files as `run` will read them (check_password_file).
 */
/* The top-level keys: state_dir, the numbers, user, notify, listen, pid. */
static enum result
load_top(struct loader *ld, config_t *cfg, config_setting_t *root,
    struct config *cf)
{
	const char	*sd;
	enum result	 r;

	cf->timeout = 120;
	if ((r = config_check_keys(ld, root, top_keys, "")) != RES_OK)
		return r;
	if (config_lookup_string(cfg, "state_dir", &sd) == CONFIG_TRUE) {
		if (sd[0] != '/')
			return cfail(ld, config_lookup(cfg, "state_dir"),
			    "\"state_dir\" must be an absolute path");
		cf->state_dir = xstrdup(sd);
	} else
		cf->state_dir = config_default_state_dir();
	cf->interval = 300;
	cf->jobs = 4;
	cf->max_backoff = 3600;
	if ((r = get_bounded(ld, root, "timeout", 5, 3600, "",
	    &cf->timeout)) != RES_OK ||
	    (r = get_bounded(ld, root, "deadline", 10, 7 * 86400, "",
	    &cf->deadline)) != RES_OK ||
	    (r = get_bounded(ld, root, "interval", 60, 7 * 86400, "",
	    &cf->interval)) != RES_OK ||
	    (r = get_bounded(ld, root, "jobs", 1, 64, "", &cf->jobs)) !=
	    RES_OK ||
	    (r = get_bounded(ld, root, "max_backoff", 60, 7 * 86400, "",
	    &cf->max_backoff)) != RES_OK)
		return r;
	cf->user = config_get_string(root, "user");
	cf->notify_command = config_get_string(root, "notify_command");
	if ((r = config_listen_load(ld, root, ld->dir, cf)) != RES_OK)
		return r;
	if ((cf->pid_file = config_get_string(root, "pid_file")) == NULL)
		cf->pid_file = xprintf("%s/popbridge.pid", cf->state_dir);
	else if (cf->pid_file[0] != '/')
		return cfail(ld, config_lookup(cfg, "pid_file"),
		    "\"pid_file\" must be an absolute path");
	return RES_OK;
}

static enum result
load(const char *path, int fd, bool check_secrets, struct config **cfp,
    char **cause)
{
	config_t	 cfg;
	struct loader	 ld;
	struct config	*cf;
	config_setting_t *root, *accts, *a;
	struct stat	 st;
	char		*tmp;
	int		 i, n;
	enum result	 r = RES_OK;

	*cfp = NULL;
	memset(&ld, 0, sizeof ld);
	ld.file = path;
	ld.check_secrets = check_secrets;
	tmp = xstrdup(path);
	ld.dir = xstrdup(dirname(tmp));
	free(tmp);
	config_init(&cfg);
	if ((r = read_config(&cfg, &ld, fd, cause)) != RES_OK) {
		config_destroy(&cfg);
		loader_free(&ld);
		return r;
	}
	cf = xcalloc(1, sizeof *cf);
	cf->path = xstrdup(path);
	root = config_root_setting(&cfg);
	if ((r = load_top(&ld, &cfg, root, cf)) != RES_OK)
		goto out;
	/* Who will read the password files (runner_lookup). */
	ld.user_key = config_lookup(&cfg, "user");
	if (stat(path, &st) == 0) {
		ld.owner = st.st_uid;
		ld.cmode = st.st_mode;
	} else
		ld.owner = geteuid();
	accts = config_lookup(&cfg, "accounts");
	n = config_setting_length(accts);
	cf->accounts = xcalloc((size_t)n + 1, sizeof *cf->accounts);
	ld.acct_files = xcalloc((size_t)n + 1, sizeof *ld.acct_files);
	for (i = 0; i < n; i++) {
		a = config_setting_get_elem(accts, (unsigned int)i);
		ld.acct_files[ld.naccts++] = setting_file(&ld, a);
		cf->naccounts++;
		r = load_account(&ld, cf, a, &cf->accounts[i]);
		if (r != RES_OK)
			goto out;
	}
	if ((r = check_shared(&ld, cf)) != RES_OK)
		goto out;
	r = secfile_check_inline(&ld);
out:
	config_destroy(&cfg);
	if (r != RES_OK) {
		free(*cause);
		*cause = ld.cause;
		ld.cause = NULL;
		config_free(cf);
	} else
		*cfp = cf;
	free(ld.cause);
	loader_free(&ld);
	return r;
}

enum result
config_load(const char *path, struct config **cfp, char **cause)
{
	return load(path, -1, true, cfp, cause);
}

enum result
config_load_fd(int fd, const char *path, struct config **cfp, char **cause)
{
	return load(path, fd, false, cfp, cause);
}

void
config_free(struct config *cf)
{
	size_t	 i;

	if (cf == NULL)
		return;
	for (i = 0; i < cf->naccounts; i++) {
		config_endpoint_free(&cf->accounts[i].pop3);
		config_endpoint_free(&cf->accounts[i].imap);
		free(cf->accounts[i].name);
		free(cf->accounts[i].flags);
		free(cf->accounts[i].notify_command);
		routing_free(cf->accounts[i].routing);
	}
	free(cf->accounts);
	free(cf->state_dir);
	free(cf->user);
	free(cf->pid_file);
	free(cf->notify_command);
	free(cf->listen);
	free(cf->listen_token_file);
	free(cf->listen_token_command);
	free(cf->path);
	free(cf);
}

const struct account *
config_find(const struct config *cf, const char *name)
{
	size_t	 i;

	for (i = 0; i < cf->naccounts; i++)
		if (strcmp(cf->accounts[i].name, name) == 0)
			return &cf->accounts[i];
	return NULL;
}

char *
config_default_state_dir(void)
{
	const char	*xdg = getenv("XDG_STATE_HOME"), *home;

	if (xdg != NULL && xdg[0] == '/')
		return xprintf("%s/popbridge", xdg);
	if (geteuid() == 0)
		return xstrdup("/var/lib/popbridge");
	if ((home = getenv("HOME")) == NULL || home[0] != '/')
		return xstrdup("/var/lib/popbridge");
	return xprintf("%s/.local/state/popbridge", home);
}

/*
 * One place for what all commands know: `migrate` and `batch` keep their
 * ledgers where `run` and the daemon do, so that a mailbox migrated first
 * and then polled (or the other way round) is not imported twice.
 */
enum result
config_state_dir(const struct globals *g, char **dir, char **cause)
{
	struct config	*cf;
	char		*why = NULL;
	enum result	 r;

	*dir = NULL;
	if (!g->config_given && access(g->config, R_OK) == -1) {
		*dir = config_default_state_dir();
		return RES_OK;
	}
	/* Only state_dir is wanted: a password file another command would
	 * refuse is no reason to keep ledgers elsewhere. */
	if ((r = load(g->config, -1, false, &cf, &why)) != RES_OK) {
		if (g->config_given) {
			free(*cause);
			*cause = why;
			return r;
		}
		log_warn("%s (its state_dir is not used; give -c or "
		    "--state-dir)", why);
		free(why);
		*dir = config_default_state_dir();
		return RES_OK;
	}
	*dir = xstrdup(cf->state_dir);
	config_free(cf);
	return RES_OK;
}
