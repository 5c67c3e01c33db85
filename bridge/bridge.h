/*
 * popbridge: poll POP3 mailboxes and APPEND every new message, exactly once,
 * into an IMAP mailbox.
 *
 * This header holds what more than one file needs: result classes, the
 * configuration structs, and the prototypes of each module grouped by file.
 * Library types (libcurl, SQLite, libconfig, OpenSSL) stay inside the files
 * that use them; other files see opaque handles only.
 */
#ifndef BRIDGE_H
#define BRIDGE_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define POPBRIDGE_VERSION	"0.1.0"
#define DEFAULT_CONFIG		"/etc/popbridge.conf"

#define PRINTFLIKE(a, b)	__attribute__((format(printf, a, b)))
#define NORETURN		__attribute__((noreturn))

/*
 * Result classes decide what happens next (STYLE.md, 5).  Every fallible
 * function returns one of these and, when not RES_OK, sets *cause to a
 * malloc'd sentence without the account name; the caller at the account
 * boundary logs it once.
 */
enum result {
	RES_OK = 0,
	RES_MSG,		/* this message failed: keep it on the server, go on */
	RES_TEMP,		/* temporary: network, server, quota; retry later */
	RES_AUTH,		/* authentication refused or unsafe permissions */
	RES_CONFIG,	/* configuration error: stop until it changes */
};

/* main.c: what every subcommand gets. */
struct globals {
	const char	*config;	/* -c, or DEFAULT_CONFIG */
	bool		 config_given;	/* -c was given */
	int		 verbose;	/* number of -v */
};
/* result.c */
int		 result_exit_code(enum result);
enum result	 result_worst(enum result, enum result);
const char	*result_words(int);

/* stop.c: SIGTERM, SIGINT, SIGHUP ask a run to stop after its batch. */
extern volatile sig_atomic_t stop_requested;
/* Catch them; with second_ends, a second one ends the process at once. */
void		 stop_on_signals(bool);

/* xmalloc.c: allocators that die on out-of-memory, nothing else. */
void		*xmalloc(size_t);
void		*xcalloc(size_t, size_t);
void		*xrealloc(void *, size_t);
char		*xstrdup(const char *);
char		*xstrndup(const char *, size_t);
char		*xprintf(const char *, ...) PRINTFLIKE(1, 2);
char		*xvprintf(const char *, va_list) PRINTFLIKE(1, 0);
void		 fatal(const char *, ...) PRINTFLIKE(1, 2) NORETURN;
/* Overwrite a secret with zeros before freeing it; NULL is fine. */
void		 secret_free(char *);
/* Set *cause (if cause is not NULL) and return r. */
enum result	 fail(char **cause, enum result r, const char *, ...)
		     PRINTFLIKE(3, 4);

/* bounded.c: append n bytes at p to *buf (*len bytes, NUL-terminated),
 * false and nothing appended if that would pass max bytes. */
bool		 bounded_append(char **, size_t *, size_t, const void *,
		     size_t);

/* log.c */
enum log_level {
	LOG_LVL_WARN = 0,
	LOG_LVL_INFO,		/* one summary line per account run */
	LOG_LVL_DEBUG,		/* one line per message */
	LOG_LVL_TRACE,		/* protocol trace, secrets never included */
};
void		 log_open(bool to_stderr, int verbosity);
/* The account being run, for a word from a signal handler. */
void		 log_set_account(const char *);
const char	*log_account(void);
bool		 log_enabled(enum log_level);
void		 log_bar_drawn(bool);
void		 log_warn(const char *, ...) PRINTFLIKE(1, 2);
void		 log_info(const char *, ...) PRINTFLIKE(1, 2);
void		 log_debug(const char *, ...) PRINTFLIKE(1, 2);
void		 log_trace(const char *, ...) PRINTFLIKE(1, 2);
/* Copy untrusted text into dst, replacing control and 8-bit bytes. */
char		*log_clean(char *dst, size_t dstsz, const char *src, size_t len);
char		*log_size(uint64_t, char *, size_t);
double		 now_seconds(void);

/* config.c */
enum tls_mode {
	TLS_IMPLICIT,		/* pop3s://, imaps:// */
	TLS_STARTTLS,		/* pop3://, imap://: STARTTLS required */
	TLS_NONE,		/* tls = "none": plaintext, warned */
};

struct gmail_dest;
struct endpoint {
	char		*url;		/* as configured */
	bool		 imap;		/* an IMAP block, else POP3 */
	char		*host;
	int		 port;
	enum tls_mode	 tls;
	char		*user;
	char		*password;	/* exactly one of these three */
	char		*password_file;
	char		*password_command;
	char		*ca_file;
	char		*auth;		/* NULL: automatic */
	bool		 oauth2;	/* auth xoauth2 or oauthbearer */
	char		*oauth2_token_command;
	char		*pin;		/* sha256//... public key pins */
	char		*proxy;		/* NULL: the environment's; "": none */
	char		*mailbox;	/* IMAP only */
	int		 line;		/* in the config file */
	struct gmail_dest *gmail;	/* a "gmail-api:" destination; NULL */
};

struct account {
	char		*name;
	struct endpoint	 pop3;
	struct endpoint	 imap;
	bool		 keep;		/* leave messages on the POP3 server */
	char		*flags;		/* "\\Seen \\Flagged", "" for none */
	long		 interval;	/* seconds between polls (daemon) */
	long		 deadline;	/* seconds a run may take, before the
					 * mail to move adds to it; 0: default */
	long		 delete_after;	/* keep: delete this many days after
					 * the import; 0: never */
	long long	 max_size;	/* bytes; larger stays on POP3; 0: none */
	time_t		 since;		/* migrate --since: older stays; 0 */
	char		*notify_command;	/* NULL: none (worker_notify) */
	struct routing	*routing;	/* route.h; NULL: all to imap */
	int		 line;
};
/* config_route.c: the account's endpoints, n = 0, 1, ... (pop3, imap,
 * each destination's), *side their name; NULL past the last. */
struct endpoint	*config_account_endpoint(struct account *, size_t,
		     const char **);

struct config {
	char		*path;
	char		*state_dir;
	long		 timeout;	/* seconds, for every network wait */
	long		 deadline;	/* an account run's base; 0: default */
	long		 interval;	/* default seconds between polls */
	long		 jobs;		/* accounts polled at once (daemon) */
	long		 max_backoff;	/* seconds, longest wait after failures */
	char		*user;		/* drop to this user (daemon as root) */
	char		*pid_file;
	char		*notify_command;	/* accounts inherit it */
	char		*listen;	/* "127.0.0.1:8025": the web page; NULL */
	char		*listen_token_file;	/* the web page's token: one */
	char		*listen_token_command;	/* of these, or neither */
	struct account	*accounts;
	size_t		 naccounts;
};

enum result	 config_load(const char *, struct config **, char **);
/* The same for a copy of the config at path, open as fd (reload.c: the
 * root helper's copy for the daemon's user): relative paths and @include
 * start at path's folder, messages name path.  Its password files are not
 * checked (the copy's owner is not the config's): the helper reads them. */
enum result	 config_load_fd(int, const char *, struct config **, char **);
/* Where state lives when no config says: $XDG_STATE_HOME/popbridge if set,
 * else /var/lib/popbridge for root, ~/.local/state/popbridge for others. */
char		*config_default_state_dir(void);
/* The state_dir `migrate` and `batch` share with `run` and the daemon:
 * the config's (-c, else the default file if it can be read), else the
 * default. */
enum result	 config_state_dir(const struct globals *, char **, char **);
void		 config_free(struct config *);
const struct account *config_find(const struct config *, const char *);
/* Parse ep->url (ep->imap says which schemes): host, port, tls. */
enum result	 config_parse_url(struct endpoint *, char **);
/* The url fit to print: a user or password in it (all between the
 * scheme and the last '@') shown as three stars; malloc'd. */
char		*config_url_redact(const char *);
/* account_valid.c: may v be sent to a server in a protocol line (no CR,
 * no LF)? */
bool		 config_value_ok(const char *);
bool		 config_flag_valid(const char *);
bool		 config_flags_add(char **, const char *);
void		 config_endpoint_free(struct endpoint *);
/* Resolve an endpoint's secret; the caller wipes it with secret_free. */
enum result	 config_secret(const struct endpoint *, char **, char **);
/* The proxy libcurl takes from the environment for a scheme ("pop3s"),
 * as it looks for one; NULL if none, else its value and variable. */
const char	*config_env_proxy(const char *, const char **);
/* For `check`: "pop3: through the proxy ..." (credentials hidden), or
 * NULL when the connection goes direct; malloc'd. */
char		*config_proxy_note(const struct endpoint *);
/* listen's "ADDRESS:PORT" (IPv4, [IPv6] or localhost): the address as
 * text into host, the port, and whether it is loopback; NULL, or why not
 * as a phrase. */
const char	*config_listen_parse(const char *, char *, size_t, int *,
		     bool *);

/* ident.c: the canonical spelling of a POP3 mailbox and an IMAP destination. */
/* "user@host": the same for pop3:// and pop3s://, any port, any case of host. */
char		*ident_source(const struct endpoint *);
/* "user@host/mailbox", INBOX in upper case. */
char		*ident_dest(const struct endpoint *);
char		*ident_dest_in(const struct endpoint *, const char *);

/* spool.c: a message held in memory up to a bound, then in a temp file. */
struct spool {
	char		*mem;
	size_t		 memlen;
	size_t		 memmax;	/* bytes kept in memory at most */
	size_t		 memcap;	/* bytes allocated at mem */
	int		 fd;		/* overflow, unlinked; -1 if none */
	uint64_t	 size;		/* total bytes written */
	const char	*tmpdir;
};
void		 spool_init(struct spool *, size_t, const char *);
enum result	 spool_write(struct spool *, const void *, size_t, char **);
/* Read up to n bytes at offset off; returns bytes read, -1 on error. */
ssize_t		 spool_pread(struct spool *, void *, size_t, uint64_t);
void		 spool_reset(struct spool *);
void		 spool_trim(struct spool *);
void		 spool_free(struct spool *);

/* msg.c: pure message normalisation and header facts. */
struct msg_norm {
	int		 state;
	char		 hold[8];	/* bytes held while deciding "From " */
	size_t		 nhold;
	bool		 wrote_any;
	bool		 last_lf;	/* output so far ends with CRLF */
	uint64_t	 nuls;		/* NUL bytes seen */
};
typedef enum result (*msg_sink)(void *, const char *, size_t, char **);
void		 msg_norm_init(struct msg_norm *);
enum result	 msg_norm_feed(struct msg_norm *, const char *, size_t,
		     msg_sink, void *, char **);
enum result	 msg_norm_finish(struct msg_norm *, msg_sink, void *, char **);
/* Find the end of the header section (after the blank line) or 0. */
size_t		 msg_header_end(const char *, size_t);
/* Find header field name in hdr; calls cb for each unfolded value. */
void		 msg_header_each(const char *, size_t, const char *,
		     void (*)(void *, const char *, size_t), void *);
/* The date for INTERNALDATE: Date, else newest Received; false if none. */
bool		 msg_date(const char *, size_t, time_t *, int *);
/* The "<...>" of the Message-ID field, "" if none (cut to fit). */
#define MSGID_MAX	256
void		 msg_message_id(const char *, size_t, char *, size_t);
/* How a person finds a message: Date, From, Subject, cleaned and cut. */
struct msg_info {
	char		 date[48];
	char		 from[128];
	char		 subject[160];
};
void		 msg_info_read(const char *, size_t, struct msg_info *);

/* date.c: pure RFC 5322 date parsing and IMAP date-time formatting. */
bool		 date_parse(const char *, size_t, time_t *, int *);
/* "dd-Mon-yyyy hh:mm:ss +zzzz" into buf (at least 27 bytes). */
void		 date_imap(time_t, int, char *, size_t);

/* pop3_parse.c: pure parsers for POP3 replies. */
struct dot_decoder {
	int		 state;
};
void		 dot_init(struct dot_decoder *);
/*
 * Decode n dot-stuffed bytes into out, which has room for n + 2 (bytes held
 * back from an earlier call may come out now).  Returns the number of output
 * bytes; *used is set to the input bytes consumed; *done when the
 * terminating ".CRLF" was consumed (bytes after it are not consumed).
 */
size_t		 dot_decode(struct dot_decoder *, const char *, size_t, char *,
		     size_t *, bool *);
#define UIDL_MAX	70
struct pop3_msg {
	unsigned int	 num;
	uint64_t	 size;
	char		 uidl[UIDL_MAX + 1];
};
bool		 pop3_parse_uidl(const char *, unsigned int *, char *);
bool		 pop3_parse_list(const char *, unsigned int *, uint64_t *);
bool		 pop3_parse_stat(const char *, unsigned int *, uint64_t *);
bool		 uidl_valid(const char *, size_t);
/* Check a filled list: numbers 1..n each once, each with a UIDL. */
bool		 pop3_list_check(const struct pop3_msg *, unsigned int,
		     char **);

/* imap_parse.c: pure parsers for IMAP replies. */
enum imap_status { IMAP_OK, IMAP_NO, IMAP_BAD, IMAP_BYE, IMAP_PREAUTH,
	IMAP_UNKNOWN };
struct imap_reply {
	enum imap_status status;
	char		 code[64];	/* response code name, upper case */
	const char	*code_arg;	/* its arguments, raw, in the reply */
	size_t		 code_arglen;	/* (not NUL-terminated) */
	const char	*text;		/* human text after the code */
};
bool		 imap_parse_status(const char *, struct imap_reply *);
bool		 imap_parse_appenduid(const char *, uint32_t *, uint32_t *);
size_t		 imap_parse_uidset(const char *, uint32_t *, size_t);
bool		 imap_has_cap(const char *, const char *);
bool		 imap_parse_number(const char *, size_t, uint64_t *);
struct imap_fetch {
	uint32_t	 uid;
	uint64_t	 size;
	bool		 have_size, have_body;
	const char	*body;
	size_t		 bodylen;
};
bool		 imap_parse_fetch(const char *, size_t, struct imap_fetch *);
/* The first personal namespace's prefix and separator (RFC 2342). */
bool		 imap_parse_namespace(const char *, char *, size_t, char *);
/* Quote a mailbox name as an IMAP string, or NULL if it cannot be. */
char		*imap_quote(const char *);
/*
 * A configured mailbox name for the wire: NULL with *wire (malloc'd) in
 * modified UTF-7, or why not as a phrase ("is empty").  UTF-8 is encoded
 * ("&" is "&-"); plain ASCII is taken as modified UTF-7 and must be valid.
 */
#define IMAP_MAILBOX_MAX	255	/* bytes as sent */
const char	*imap_mailbox_encode(const char *, char **);
/* The same, to check a name where it is configured: NULL if it is fine. */
const char	*imap_mailbox_check(const char *);
/* The same, quoted as an IMAP string; NULL with *why if it cannot be. */
char		*imap_quote_mailbox(const char *, const char **);

/* net.c: connection, TLS and login through libcurl CONNECT_ONLY. */
struct conn;
/* Connect and log in with the secret the caller resolved (config_secret)
 * and wipes: the password, or the OAuth2 token. */
enum result	 conn_open(const struct endpoint *, const char *, const char *,
		     long, struct conn **, char **);
enum result	 conn_write(struct conn *, const void *, size_t, char **);
/* A line without its CRLF, bounded by max; valid until the next call. */
enum result	 conn_getline(struct conn *, char **, size_t *, size_t,
		     char **);
/* Buffered bytes (at least one, reading if none); conn_consume drops some. */
enum result	 conn_peek(struct conn *, const char **, size_t *, char **);
void		 conn_consume(struct conn *, size_t);
/* Would a read go on without waiting? */
bool		 conn_ready(struct conn *);
/* Has a read or write failed (or timed out)?  Then say no goodbye. */
bool		 conn_dead(struct conn *);
/* The server lines libcurl saw during login (greeting, capabilities). */
const char	*conn_login_lines(struct conn *);
/* Walk such lines: the next at *pos (its length, no CR LF, in *len). */
const char	*login_line_next(const char **, size_t *);
const char	*conn_tls_version(struct conn *);
/* Did the server offer STARTTLS during the login (for tls = "none")? */
bool		 conn_offers_starttls(struct conn *);
const char	*conn_cert_subject(struct conn *);
void		 conn_close(struct conn *);
/*
 * A connection to a scripted server (tests, fuzzing): the login lines
 * (greeting, capabilities) as libcurl would have seen them, then the
 * server's bytes after login, then "connection closed".  io (NULL: all at
 * once, writes dropped) says how many bytes each read or write moves
 * (0: not now, CONN_STEP_FAIL: the connection is lost) and gets what the
 * client sends.  The bytes must outlive the connection.
 */
#define CONN_STEP_FAIL	((size_t)-1)
struct conn_memory_io {
	size_t		(*step)(void *, bool, size_t);	/* sending?, at most */
	void		(*sent)(void *, const void *, size_t);
	void		*arg;
};
enum result	 conn_memory(const char *, const char *, size_t, const void *,
		     size_t, const struct conn_memory_io *, struct conn **,
		     char **);
/* An account run's deadline: this many seconds from now (0: none), and
 * more once the mail to move is known. */
void		 net_deadline(double);
void		 net_deadline_extend(double);
void		 net_init(void);
void		 net_cleanup(void);

/* hash.c: SHA-256 in hex, through OpenSSL. */
struct hash;
struct hash	*hash_new(void);
void		 hash_update(struct hash *, const void *, size_t);
/* The same for a message's content: a NUL byte counts as 0x80. */
void		 hash_update_message(struct hash *, const void *, size_t);
/* Finish into out (65 bytes) and free the context. */
void		 hash_final(struct hash *, char *);
void		 hash_hex(const void *, size_t, char *);
/* HMAC-SHA256 of msg under key, in hex, into out (65 bytes). */
void		 hash_hmac(const void *, size_t, const void *, size_t, char *);


/* pace.c: a cap on the bytes a second read from POP3 (0: none). */
void		 pace_set(double);
void		 pace_take(size_t);
double		 pace_rate(void);

/* pop3.c */
struct pop3;
struct pop3_caps {
	bool		 uidl, pipelining, top, utf8;
};
/* Log in with a secret as conn_open; login_pop3 resolves it first. */
enum result	 pop3_open(const struct endpoint *, const char *, const char *,
		     long, struct pop3 **, char **);
/* The same on a logged-in connection (account, host), which the session
 * owns from now on, even on failure. */
enum result	 pop3_open_conn(struct conn *, const char *, const char *,
		     struct pop3 **, char **);
const struct pop3_caps *pop3_caps(struct pop3 *);
/* Seconds the first command of the scan took to answer: the round trip. */
double		 pop3_rtt(struct pop3 *);
struct conn	*pop3_conn(struct pop3 *);
enum result	 pop3_stat(struct pop3 *, unsigned int *, uint64_t *,
		     char **);
/* List every message with its size and UIDL (or a stand-in). */
enum result	 pop3_scan(struct pop3 *, struct pop3_msg **,
		     unsigned int *, bool *, char **);
/* Fetch message n (announced size given), dot-decoded, into sink; delete
 * message n.  In two halves, for pipelining: replies come in sending
 * order. */
enum result	 pop3_retr_send(struct pop3 *, unsigned int, char **);
enum result	 pop3_retr_read(struct pop3 *, unsigned int, uint64_t, msg_sink,
		     void *, char **);
enum result	 pop3_dele_send(struct pop3 *, unsigned int, char **);
enum result	 pop3_dele_read(struct pop3 *, unsigned int, char **);
/* The headers of these messages (TOP n 0), pipelined, to a callback. */
enum result	 pop3_headers(struct pop3 *, const unsigned int *, size_t,
		     void (*)(void *, size_t, const char *, size_t), void *,
		     char **);
/* QUIT: the server commits DELEs only now. */
enum result	 pop3_quit(struct pop3 *, char **);
/* Drop the connection without QUIT: nothing is committed. */
void		 pop3_free(struct pop3 *);

/* imap.c */
struct imap;
struct imap_caps {
	bool		 literal_plus, literal_minus, multiappend, uidplus;
	bool		 binary, namespace;
	uint64_t	 appendlimit;	/* 0: none announced */
};
struct imap_mbox {
	bool		 exists;
	uint32_t	 uidvalidity;
	uint32_t	 uidnext;
	uint32_t	 messages;
};
enum append_outcome {
	APPEND_STORED,
	APPEND_REFUSED,		/* this message; reason in cause */
	APPEND_TRYCREATE,
	APPEND_OVERQUOTA,
	APPEND_UNKNOWN,		/* no reply read (the link failed) */
	APPEND_LATER,		/* not stored, not refused: a later run */
};
struct append_result {
	enum append_outcome outcome;
	uint32_t	 uidvalidity;	/* from APPENDUID, 0 if absent */
	uint32_t	 uid;
};
/* Log in with a secret as conn_open; login_imap resolves it first. */
enum result	 imap_open(const struct endpoint *, const char *, const char *,
		     long, struct imap **, char **);
/* The same on a logged-in connection (account, host), which the session
 * owns from now on, even on failure. */
enum result	 imap_open_conn(struct conn *, const char *, const char *,
		     struct imap **, char **);
const struct imap_caps *imap_caps(struct imap *);
struct conn	*imap_conn(struct imap *);
enum result	 imap_status(struct imap *, const char *, struct imap_mbox *,
		     char **);
enum result	 imap_select(struct imap *, const char *, struct imap_mbox *,
		     char **);
enum result	 imap_create(struct imap *, const char *, char **);
/* The configured mailbox as the server names it: under the personal
 * namespace's prefix (RFC 2342) if relative to it; malloc'd. */
enum result	 imap_place(struct imap *, const char *, char **, char **);
/* The hierarchy separator imap_place learnt ('\0': not known). */
char		 imap_separator(const struct imap *);
struct append_item {
	struct spool	*sp;
	time_t		 date;
	int		 tz;
	bool		 binary;	/* has NUL bytes: literal8 (RFC 3516) */
	const char	*flags;		/* NULL: the batch's */
	struct append_result res;	/* out */
	char		*why;		/* out: the refusal, malloc'd */
};
/*
 * APPEND n messages into a mailbox given as it goes on the wire (quoted
 * once by imap_quote_mailbox): one MULTIAPPEND (RFC 3502) where offered,
 * else pipelined with LITERAL+, else one at a time.  RES_OK unless the
 * link failed; each item's res says what became of it.
 */
enum result	 imap_append_many(struct imap *, const char *, const char *,
		     struct append_item *, size_t, char **);
/*
 * The same in two halves, so that the next batch can be read while the
 * server stores this one: _send writes the batch (nothing yet without
 * LITERAL+), _recv reads its replies (and does the rest) and frees it.
 * Up to eight batches may be on the wire; their replies may come in any
 * order.  The items, mailbox and flags must live until _recv.
 */
struct append_batch;
enum result	 imap_append_send(struct imap *, const char *, const char *,
		     struct append_item *, size_t, struct append_batch **,
		     char **);
enum result	 imap_append_recv(struct imap *, struct append_batch *,
		     char **);
/* Forget a batch whose replies will not be read (the run is ending). */
void		 imap_append_abandon(struct append_batch *);
bool		 imap_append_ready(struct imap *, const struct append_batch *);
/* imap_fetch.c, on the selected mailbox: cb(uid, size, body, len). */
typedef void	(*imap_list_cb)(void *, uint32_t, uint64_t, const char *,
		     size_t);
/* Every message with UID >= lo (no body). */
enum result	 imap_list_sizes(struct imap *, uint32_t, imap_list_cb, void *,
		     char **);
/* Every message, with its Message-ID header field as body. */
enum result	 imap_list_msgids(struct imap *, imap_list_cb, void *, char **);
/* The content of several messages, in one command: in uid, out the rest. */
struct uid_hash {
	uint32_t	 uid;
	char		 hex[65];	/* SHA-256, NUL counted as 0x80 */
	uint64_t	 size;
	bool		 found;		/* false: no such message (any more) */
};
enum result	 imap_hash_uids(struct imap *, struct uid_hash *, size_t,
		     char **);
/* Is message uid there? */
enum result	 imap_uid_exists(struct imap *, uint32_t, bool *, char **);
/* Flag these copies \Deleted and UID EXPUNGE exactly them (UIDPLUS);
 * *expunged false where the server has no UIDPLUS. */
enum result	 imap_remove_uids(struct imap *, const uint32_t *, size_t,
		     bool *, char **);
void		 imap_logout(struct imap *);

#include "ledger.h"

/* csv.c: RFC 4180 rows, pure and bounded. */
struct csv {
	const char	*p, *end;
	int		 line;
};
struct csv_row {
	char		**f;
	size_t		 n;
	int		 line;		/* where the row starts */
};
void		 csv_init(struct csv *, const char *, size_t);
/* 1: a row; 0: the end; -1: an error (*why), the row skipped. */
int		 csv_next(struct csv *, struct csv_row *, const char **);
void		 csv_row_free(struct csv_row *);

/* throttle.c: does a server's refusal mean "slow down"?  Pure but for the
 * notes of one run (throttle_note, throttle_take). */
#define THROTTLE_HINT_MAX	(15 * 60)	/* a longer hint is cut to this */
#define THROTTLE_HINT_ABSURD	(24 * 3600)	/* a longer one is ignored */
/* Words of "slow down, try again" (NO [LIMIT], "too many connections"). */
bool		 throttle_is(const char *);
/* A refused login's line: RES_TEMP ("not now") or RES_AUTH. */
enum result	 throttle_login(const char *);
/* "try again in 30 seconds": the seconds asked for (1 .. _MAX), or false. */
bool		 throttle_hint(const char *, long *);
/* A server's "slow down" as fields, set where its words are read. */
struct throttle {
	bool		 throttled;	/* "not now", not "failed" */
	bool		 imap;		/* the IMAP side said it (else POP3) */
	long		 retry_after;	/* seconds it asked for (1 .. _MAX);
					 * 0: it named none */
};
/* The server's words (bounded text) as fields. */
void		 throttle_read(const char *, bool, struct throttle *);
/* The sentence made of them is *cause: remember a "slow down" for the
 * run's report; throttle_heard reads the words (imap side or not), then
 * notes. */
void		 throttle_note(const struct throttle *, char **);
void		 throttle_heard(const char *, bool, char **);
/* At the run's end: the "slow down" that ended it (its sentence is part of
 * the final cause), all zero if none; the notes are forgotten. */
bool		 throttle_take(const char *, struct throttle *);

/* sigpipe.c: the given signals become their number, a byte, on fds[0]. */
void		 sigpipe_open(int [2], const int *, size_t);

/*
 * file.c: files opened as a careful root daemon opens them (O_NOFOLLOW,
 * O_CLOEXEC, O_EXCL where new) in folders nobody else can write to.
 * Unsafe is RES_AUTH (exit 77, as for a password file others can read).
 */
struct stat;
/* The config's `user` (NULL: none) may own state_dir too, for root: the
 * daemon hands state_dir to it. */
void		 file_trust_user(const char *);
/* Is dir (what: "state_dir", ...) a folder, not a link, owned by root, us
 * or the trusted user, writable by no one else?  The fix in *cause. */
enum result	 file_dir_safe(const char *, const char *, char **);
/* open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode) of a state file: a
 * link, or anything but a regular file with one link, is RES_AUTH;
 * RES_TEMP if it cannot be opened. */
enum result	 file_open(const char *, int, mode_t, int *, char **);
/* For a file a library opens (what: "ledger"): if path exists, it must be
 * a regular file, not a link (RES_AUTH). */
enum result	 file_check(const char *, const char *, char **);
/* A whole regular file of at most max bytes, NUL-terminated, into a
 * malloc'd *data (its stat into st unless NULL).  An input the user named:
 * links are followed.  RES_CONFIG if it cannot be read. */
enum result	 file_read(const char *, size_t, char **, size_t *,
		     struct stat *, char **);
/* data into a new temporary file next to path (O_EXCL), with mode and, for
 * root, the owner of *like (unless NULL), synced; *tmp names it. */
enum result	 file_tmp_write(const char *, const void *, size_t, mode_t,
		     const struct stat *, char **, char **);
/* Put tmp (freed) in place of path: rename over it, or (exclusive) link so
 * that a file that appeared meanwhile is never replaced; sync the folder. */
enum result	 file_tmp_commit(char *, const char *, bool, char **);
/* Replace path with data atomically: the two above (RES_CONFIG if not). */
enum result	 file_replace(const char *, const void *, size_t, mode_t,
		     char **);
/* fsync the folder that holds path, so that a new name in it lasts. */
void		 file_sync_dir(const char *);

/* batch.c: `popbridge batch`, many accounts from a CSV file. */
int		 cmd_batch(struct globals *, int, char **);
/* batch_row.c: a data row to an account as `batch` maps it (tests/fuzz):
 * NULL or why not. */
const char	*batch_row(const struct csv_row *, struct csv_row *, const char *,
		     const char *, bool, struct account *, char *, size_t);

/* login.c: log in as an account, its secret resolved just before (a token
 * command's token is fresh for each login) and wiped just after. */
enum result	 login_pop3(const struct endpoint *, const char *, long,
		     struct pop3 **, char **);
enum result	 login_imap(const struct endpoint *, const char *, long,
		     struct imap **, char **);

/* worker.c: one account run in a child process. */
struct worker {
	pid_t		 pid;		/* 0 when none runs */
	int		 fd;		/* the report pipe */
};
struct worker_report {
	enum result	 r;
	struct run_stats st;
	struct throttle	 thr;		/* a RES_TEMP that was "slow down" */
	char		*cause;		/* malloc'd, "" if none */
};
/* Fork a child that runs the account and reports; close_fds in the child. */
enum result	 worker_start(const struct config *, const struct account *,
		     const int *, size_t, struct worker *, char **);
/* After waitpid(): read the child's report. */
void		 worker_finish(struct worker *, int, struct worker_report *);
/* After an account's run that started at the time given (the daemon's
 * poll, `run`): run its notify_command if the run turned it failing or
 * recovered. */
void		 worker_notify(const struct config *, const struct account *,
		     time_t);

/* daemon.c, status.c: the household daemon and what it reports. */
int		 cmd_daemon(struct globals *, int, char **);
int		 cmd_status(struct globals *, int, char **);
/* The daemon's state file, next to the ledgers. */
char		*daemon_state_path(const struct config *);
/* Is a daemon holding this pid file? */
bool		 daemon_running(const char *);
/* An account as the daemon's state file has it (status.c). */
struct daemon_entry {
	time_t		 next;		/* its next poll */
	unsigned int	 failures;	/* in a row */
	bool		 found;		/* a daemon runs and knows it */
	bool		 polling;	/* a poll of it is under way */
};
/* One account as `status`, the web page and the metrics show it. */
struct account_view {
	const struct account *ac;
	struct ledger_status ls;
	char		*ledger_error;	/* NULL: the ledger was read */
	struct ledger_metrics lm;	/* with metrics only */
	bool		 have_metrics;
	struct daemon_entry de;
};
/* Read it (metrics too if asked), with the words of password and token
 * file paths hidden if asked (the JSON, the page). */
void		 status_view(const struct config *, const struct account *,
		     bool, bool, struct account_view *);
void		 status_view_free(struct account_view *);
/* `status --json`'s document of these views (daemon: one runs). */
void		 status_json(FILE *, const struct account_view *, size_t,
		     bool);
/* The worst last poll of these views, for the exit status. */
enum result	 status_worst(const struct account_view *, size_t);
/* Local midnight of today, for "imported today". */
time_t		 status_today(void);

/* metrics.c: the Prometheus text exposition (format 0.0.4) of views. */
void		 metrics_write(FILE *, const struct account_view *, size_t,
		     bool);

/* page.c: the daemon's status page, one HTML document. */
struct page_opts {
	const char	*csrf;		/* for the forms; NULL: no buttons */
	bool		 token_set;	/* a token is configured */
	const char	*asked;		/* "Check now" was asked for this
					 * account ("" all); NULL */
	time_t		 now;
};
void		 page_write(FILE *, const struct account_view *, size_t,
		     const struct page_opts *);
/* Text into f with &, <, >, " and ' as entities. */
void		 page_escape(FILE *, const char *);

/* web.c: the daemon's side of the web page: the listening socket, the
 * token, the process that serves (http.c) and its "check now" requests. */
struct web {
	int		 listen_fd;	/* -1: no page */
	int		 chan;		/* requests from the process; -1 */
	pid_t		 pid;		/* the process; 0: none */
	time_t		 restart_at;	/* start it again then (after a crash) */
	unsigned int	 crashes;	/* in a row, for the wait */
	char		*token;		/* NULL: none configured */
	unsigned char	 key[32];	/* the CSRF tokens' secret */
	bool		 loopback;
	char		 line[256];	/* a request being read */
	size_t		 linelen;
	bool		 overlong;	/* the line is too long: dropped */
};
/* Listen and read listen_token_file, before the daemon drops root. */
enum result	 web_open(struct web *, const struct config *, char **);
/* Run listen_token_command, after it has. */
enum result	 web_token_command(struct web *, const struct config *,
		     char **);
/* Start the serving process; close_fds are closed in it. */
void		 web_start(struct web *, struct config *, const int *, size_t);
/* Was this pid the serving process?  Then it is started again later. */
bool		 web_reaped(struct web *, pid_t, int);
/* Start it again if it is due; the seconds until it is, or wait. */
long		 web_due(struct web *, struct config *, const int *, size_t,
		     long);
/* Read "check now" requests: check(arg, NAME), NAME "" for all. */
void		 web_read(struct web *, void (*)(void *, const char *), void *);
/* After a reload: serve the new config (the same socket and token). */
void		 web_restart(struct web *, struct config *, const int *,
		     size_t);
/* Stop the process (wait for it) and close everything. */
void		 web_close(struct web *);
/* The descriptors a poll's child must close (up to 2); how many. */
size_t		 web_fds(const struct web *, int *);

/* reload.c: rereading the config for the daemon's SIGHUP. */
/* Before dropping root for cf's `user`, fork the helper that keeps root
 * to reread the config at path; its socket in *sock (-1: none needed).
 * close_fds are closed in it. */
enum result	 reload_helper_start(struct config *, const char *, bool,
		     const int *, size_t, int *, char **);
/* The config reread (through the helper if *sock is one), with what a
 * reload cannot change kept from old; NULL if it failed (logged). */
struct config	*reload_config(const struct config *, const char *, int *);

/* http.c: the serving process: libmicrohttpd on the listening socket. */
struct http_setup {
	const struct config *cf;
	int		 listen_fd;
	int		 chan;		/* "check NAME\n" to the daemon */
	const char	*token;		/* NULL: none */
	const unsigned char *key;	/* 32 bytes */
	bool		 loopback;
};
void		 http_serve(const struct http_setup *) NORETURN;

/* codec.c: hex digits and base64, shared by the parsers. */
/* A hex digit's value, or -1. */
int		 hex_digit(unsigned char);
/* Where b64_decode stopped: the letters read (up to the first "=" or
 * the end), and whether a lone last letter was left over. */
struct b64_end {
	size_t		 used;
	bool		 lone;
};
/* Base64 letters (url: "-" and "_" too, RFC 4648 5) into out: its
 * length, or -1 for a byte that is no letter or more than outsz bytes. */
long		 b64_decode(const char *, size_t, bool, unsigned char *,
		     size_t, struct b64_end *);

/* http_form.c: pure parsing of what a browser sends (tests/fuzz). */
/* The first field `name` of a urlencoded form, decoded into out; false if
 * absent, malformed, or longer than outsz - 1 bytes. */
bool		 http_form_get(const char *, size_t, const char *, char *,
		     size_t);
/* The token of an Authorization header: "Bearer T", or "Basic" with
 * base64 of "user:T" (any user); false if none fits outsz - 1 bytes. */
bool		 http_auth_token(const char *, char *, size_t);
/* Equal strings, in a time that does not tell where they differ. */
bool		 http_equal(const char *, const char *);
/* A CSRF token "TIME.HMAC" for now, and whether one is good now. */
#define HTTP_CSRF_MAX	96
#define HTTP_CSRF_TTL	(12 * 3600)	/* seconds a page's buttons last */
void		 http_csrf_make(const unsigned char *, size_t, time_t, char *,
		     size_t);
bool		 http_csrf_check(const unsigned char *, size_t, const char *,
		     time_t);
/* The same for the session cookie a browser gets at /login. */
#define HTTP_SESSION_TTL (30 * 86400)	/* seconds a sign-in lasts */
void		 http_session_make(const unsigned char *, size_t, time_t,
		     char *, size_t);
bool		 http_session_check(const unsigned char *, size_t,
		     const char *, time_t);
/* Is a Host header a loopback address or localhost, with a port or not? */
bool		 http_host_loopback(const char *);
/* Does an Origin ("http://h:p") or Referer ("http://h:p/...") name the
 * host of the Host header? */
bool		 http_same_origin(const char *, const char *, bool);
/* A token bucket: burst tokens, refilled rate a second. */
struct http_bucket {
	double		 tokens, last;
};
bool		 http_bucket_take(struct http_bucket *, double, double,
		     double);

/* tty.c: questions on the terminal. */
bool		 tty_available(void);
/* Ask on /dev/tty (echo off unless echo); *answer is malloc'd. */
enum result	 tty_ask(const char *, bool, char **, char **);
/* A question with its default shown in brackets: Enter takes it. */
enum result	 tty_ask_default(const char *, const char *, char **,
		     char **);
/* A yes/no question, [Y/n] or [y/N] as the default is; Enter takes it. */
enum result	 tty_yes_no(const char *, bool, bool *, char **);

/* migrate.c: `popbridge migrate`, one mailbox in one go, no config. */
int		 cmd_migrate(struct globals *, int, char **);
extern const char migrate_usage[];

/* add.c: `popbridge add`, the one-step account set-up. */
int		 cmd_add(struct globals *, int, char **);
extern const char add_usage[];

/* discover.c: where the POP3 server of an address is, for `add`. */
struct discovery {
	char		*host;
	int		 port;
	enum tls_mode	 tls;		/* TLS_NONE: only plaintext offered */
	char		*user;		/* the login, placeholders replaced */
	char		*imap;		/* the provider's IMAP URL, or NULL */
	char		*source;	/* where it was found, for the user */
	char		*auth;		/* "xoauth2": no password login; NULL */
	char		*hint;		/* the preset's advice, or NULL */
};
/* local@domain, printable ASCII, bounded, domain a DNS name? */
bool		 discover_address_valid(const char *);
/* Does a host name resolve?  DNS_NO_SUCH_HOST when a name server said
 * no, DNS_NO_ANSWER when none answered; a sentence in *why (malloc'd). */
enum dns_result { DNS_OK, DNS_NO_SUCH_HOST, DNS_NO_ANSWER };
enum dns_result	 discover_host_check(const char *, char **);
/* Presets, autoconfig, ISPDB, DNS SRV in turn; RES_TEMP if none knows
 * (RES_CONFIG for a provider the presets say offers no POP3). */
enum result	 discover_pop3(const char *, struct discovery *, char **);
void		 discover_free(struct discovery *);
/* pop3[s]:// or imap[s]://HOST[:PORT][/]; *host is malloc'd. */
bool		 discover_parse_url(const char *, bool, char **, int *,
		     enum tls_mode *);
/* Pure parsers (tests/unit/discover_test.c): the preset file (text, its
 * name, address), an autoconfig document (xml, address), a DNS answer. */
enum result	 discover_parse_presets(const char *, size_t, const char *,
		     const char *, struct discovery *, bool *, char **);
enum result	 discover_parse_autoconfig(const char *, size_t, const char *,
		     struct discovery *, char **);
/* The best SRV target and port: 1 found, 0 none, -1 malformed. */
int		 discover_parse_srv(const unsigned char *, size_t, char *,
		     size_t, int *);

/* account.c */
/* How a caller steers a run: a flag that asks it to stop after the batch
 * in flight (NULL: never), and who hears of each batch done. */
struct run_opts {
	const volatile sig_atomic_t *stop;
	void		(*progress)(void *, const struct run_stats *);
	void		*progress_arg;
};
/* The ledger destinations of an account's legs (one without routing). */
char		**account_dests(const struct account *, size_t *);
enum result	 account_run(const struct config *, const struct account *,
		     const struct run_opts *, struct run_stats *, char **);
/* The warning for tls = "none", said by run and check alike. */
void		 account_plaintext_warning(const struct account *);

/* check.c: log in, list, compare with the ledger and report; change
 * nothing (account.c's names: check and dry runs are about an account). */
enum result	 account_dry_run(const struct config *, const struct account *,
		     char **);
enum result	 account_check(const struct config *, const struct account *,
		     char **);
/* check's line for each side, which add's login test prints too: the POP3
 * server's, and one IMAP destination's (its label: "imap", "destination
 * NAME: imap").  cf: the timeout, and state_dir (NULL: no ledger yet). */
enum result	 check_pop3_line(const struct config *, const struct account *,
		     char **);
enum result	 check_imap_line(const struct config *, const struct account *,
		     const char *, const struct endpoint *, char **);

/* account_valid.c: what every source of accounts (config, add, batch,
 * migrate) checks alike; each says where in its own words. */
/* NULL, or why the mailbox is refused, as a phrase ("is empty"); gmail:
 * a Gmail API destination's label. */
const char	*account_valid_mailbox(const char *, bool);
/* A login's fault: the key ("user", "password"), why as a phrase after
 * it, and whether the value is empty. */
struct account_fault {
	const char	*key;
	const char	*why;
	bool		 empty;
};
bool		 account_valid_login(const struct endpoint *,
		     struct account_fault *);

#endif
