/*
 * What the files of `popbridge add` share (add.c, add_util.c, add_owner.c,
 * add_ask.c, add_login.c, add_write.c, add_gmail.c), and no other file:
 * the state of one run of the command and its steps.
 */
#ifndef ADD_INT_H
#define ADD_INT_H

#define SECRET_MAX	4096		/* as config.c reads them back */
#define VALUE_MAX	255		/* a user name, a mailbox */
#define CONFIG_MAX	(4 * 1024 * 1024)
#define LOGIN_TIMEOUT	60		/* seconds, when no config says */
#define DEFAULT_STATE	"/var/lib/popbridge"
#define UNIT_NAME	"popbridge.service"
#define UNIT_MAX	(64 * 1024)
#define OAUTH2_README	"README.md, section \"OAuth2 (Outlook.com, Hotmail)\""
#define GMAIL_README	"README.md on Gmail; popbridge-gmail-token prints one"

/* One side's login test, for the summary. */
struct side {
	bool		 skipped;	/* not tried: no token command yet */
	enum result	 r;
	enum dns_result	 dns;		/* DNS_OK unless the name failed */
	bool		 token_cmd;	/* the token command itself failed */
};

struct add {
	/* the command line */
	const char	*address;
	const char	*name_opt, *to, *mailbox, *imap_user, *pop3_user;
	const char	*pop3_url, *ca_opt, *pop3_pwfile, *imap_pwfile;
	const char	*state_dir, *owner_opt;
	const char	*auth_opt[2], *token_opt[2];	/* pop3, imap */
	int		 keep_opt;	/* -1 not given, 0 --delete, 1 --keep */
	bool		 allow_plain;
	bool		 save_untested;
	bool		 usage;		/* the failure is the command line's */
	bool		 interactive;	/* stdin a terminal: ask what has a
					 * default, too */

	/* Who runs popbridge and so must read the files (add_owner). */
	char		 owner[64];
	uid_t		 owner_uid;
	gid_t		 owner_gid;
	const char	*owner_why;
	bool		 chown_config;	/* the config goes to the owner too */
	bool		 user_key;	/* a new config says user = owner */
	char		*unit_note;	/* the unit's user who does not exist */

	char		*config;	/* the config file, symlinks resolved */
	bool		 exists;
	struct stat	 st;		/* of the existing config */
	struct config	*cf;		/* the existing config, or NULL */
	char		*text;		/* its bytes */
	size_t		 textlen;
	char		*secrets;	/* the folder of the secret files */
	char		*name;
	char		*ca;		/* --ca-file, absolute */
	char		*source;	/* where the POP3 server came from */
	struct endpoint	 pop3, imap;	/* for the logins, secrets inside */
	char		*files[2];	/* secret files written so far */
	bool		 made_dir;
	char		*group;		/* the account's text in the config */
	char		*hint;		/* the preset's advice on a refusal */
	const char	*auth_found;	/* POP3 takes only this (OAuth2) */
	bool		 keep;
	bool		 placeholder[2];	/* token command still to be set */
	char		*untested;	/* why it was saved untested, or NULL */

	/* --to gmail-api[:https://HOST[:PORT]]: the destination is Gmail
	 * through its API (add_gmail.c), the imap endpoint its block. */
	bool		 gmail;
	char		*gmail_base;	/* NULL: Google's */
};

/* add_util.c, the base the other add files call down to. */
/* A failure of the command line (exit 64), with its cause. */
enum result	 ufail(struct add *, char **, const char *, ...)
		     PRINTFLIKE(3, 4);
/* Text that can go into a config string and a log line. */
bool		 text_ok(const char *, size_t);
/* The same rule as config.c's account names. */
bool		 name_ok(const char *);
/* The login methods of config.c's "auth". */
bool		 auth_ok(const char *);
bool		 auth_is_oauth2(const char *);

/* Can the endpoint's host name be found (else *sd and *cause say why
 * not)? */
bool		 add_try_dns(struct add *, const struct endpoint *,
		     struct side *, char **);
/* "pop3", "imap" or "gmail-api", for the lines of the login tests. */
const char	*add_side_name(const struct add *, const struct endpoint *);

/* add_gmail.c: a Gmail API destination (--to gmail-api). */
bool		 add_gmail_is(const char *);
/* --to and --mailbox for it. */
enum result	 add_gmail_target(struct add *, char **);
/* Does the command look like a token rather than a command printing
 * one?  Then why, as a phrase. */
const char	*add_gmail_token_like(const char *);
/* Step 4 for it: run the token command, then one read-only request. */
void		 add_gmail_login(struct add *, long, struct side *, char **);

/* add_owner.c: who runs popbridge (a->owner), who must read the files. */
enum result	 add_owner(struct add *, char **);

/* add_ask.c: step 3.  Can every question be answered (pop3: the POP3
 * password's too, known once the server is found)?  Then ask them. */
enum result	 add_can_ask(struct add *, bool, char **);
enum result	 add_ask(struct add *, char **);

/* add_login.c: step 4, both logins; RES_OK also when saved untested. */
enum result	 add_logins(struct add *, char **);

/* add_write.c: step 5, the secret files (and undoing them), and step 6,
 * the account's text (add_group) into the config. */
enum result	 add_secret_files(struct add *, char **);
void		 remove_secret_files(struct add *);
void		 add_group(struct add *);
enum result	 add_to_config(struct add *, char **);

#endif
