/*
 * What the files that load the config share (config.c, config_keys.c,
 * config_endpoint.c, config_read.c, config_secfile.c, config_proxy.c,
 * config_route.c, config_listen.c),
 * and no other file: the loader's state, and libconfig's types.
 */
#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include <pwd.h>

#include <libconfig.h>

#define GROUPS_MAX	256		/* of the user that runs popbridge */

/* One load of a config file (config_load). */
struct loader {
	const char	*file;		/* the main file, as named */
	char		*dir;		/* relative paths start here */
	const char	*read_as;	/* the name libconfig was given for it */
	char		*cause;
	char		**pw_files;	/* files holding a password (malloc'd) */
	size_t		 npw_files;
	char		**acct_files;	/* the file of each account */
	size_t		 naccts;
	char		*read_base;	/* read_as, when it is ours */
	bool		 check_secrets;	/* password files, for `check -n` */
	/* Who reads the password files (runner_lookup), looked up at the
	 * first password_file. */
	const config_setting_t *user_key;
	uid_t		 owner;		/* of the config file */
	mode_t		 cmode;
	bool		 runner_known;
	struct passwd	 runner;	/* pw_name, pw_uid, pw_gid */
	char		 runner_name[64];
	const char	*runner_why;	/* "the config's user", ... */
	gid_t		 groups[GROUPS_MAX];
	int		 ngroups;
};

/* config_keys.c: the base the other files call down to. */
/* "file:line: message" (the file and line of setting s) into the
 * loader's cause; returns RES_CONFIG. */
enum result	 cfail(struct loader *, const config_setting_t *,
		     const char *, ...) PRINTFLIKE(3, 4);
/* The same with another class (RES_AUTH: a secret others can read). */
enum result	 cfail_as(struct loader *, enum result,
		     const config_setting_t *, const char *, ...)
		     PRINTFLIKE(4, 5);
/* "file:line: message" into the loader's cause, with class r. */
enum result	 vcfail(struct loader *, enum result, const char *, int,
		     const char *, va_list) PRINTFLIKE(5, 0);
/* The types a key takes: libconfig's, as bits. */
enum {
	CK_STR = 1, CK_INT = 2, CK_BOOL = 4, CK_GROUP = 8, CK_LIST = 16,
	CK_ARRAY = 32
};
/* One key of a group's table (ended by a NULL name). */
struct config_key {
	const char	*name;
	int		 types;		/* CK_ bits */
	const char	*want;		/* the types in words; NULL: the
					 * first type's ("a string") */
	bool		 required;
};
/* Every member of group is a key of keys, of a type it takes; every
 * required key is there. */
enum result	 config_check_keys(struct loader *, const config_setting_t *,
		     const struct config_key *, const char *);
/* A string member, malloc'd; NULL if there is none. */
char		*config_get_string(const config_setting_t *, const char *);

/* config_endpoint.c */
/*
 * An endpoint group, checked and loaded as the account's pop3 or imap
 * block is (url, secrets and their file permissions, tls, auth, pin,
 * proxy; mailbox for IMAP, default INBOX).  named: an IMAP group that
 * also holds a "name" (required; a destination's, read by the caller).
 * where starts every message: "account \"home\": destination \"anna\": ".
 */
enum result	 load_endpoint_at(struct loader *, const config_setting_t *,
		     struct endpoint *, bool, bool, const char *);

/* config_read.c */
/* Read ld->file (or its copy open as fd, if not -1) and its @includes
 * into cfg; a failure's "file:line: message" in *cause. */
enum result	 read_config(config_t *, struct loader *, int, char **);
/* The file setting s comes from, as a path to print (malloc'd). */
char		*setting_file(const struct loader *, const config_setting_t *);

/* config_secfile.c */
/* A password_file as `run` will open it: there, a regular file, its
 * owner's only, readable by the user that runs popbridge (s: the key). */
enum result	 secfile_check(struct loader *, const config_setting_t *,
		     const char *, const char *);
/* Remember the file that holds an inline password (setting s). */
void		 secfile_note(struct loader *, const config_setting_t *);
/* Every file remembered so must be readable by its owner only. */
enum result	 secfile_check_inline(struct loader *);

/* config_proxy.c */
/* A "proxy" value: NULL if fine, else why not (a phrase). */
const char	*config_proxy_check(const char *);

/* config_route.c */
/* The account's destinations, rules and multidrop (account group a):
 * ac->routing, NULL if it has none of them.  Called once ac's imap
 * block and flags are loaded; what it set is freed by config_free. */
enum result	 config_route_load(struct loader *, const config_setting_t *,
		     struct account *);

/* config_listen.c */
/* listen, listen_token_file (relative to dir) and listen_token_command
 * of the top level root into cf, checked; freed by config_free. */
enum result	 config_listen_load(struct loader *, const config_setting_t *,
		     const char *, struct config *);

#endif
