// link: bridge/batch_row.c bridge/config.c bridge/account_valid.c bridge/config_keys.c bridge/config_endpoint.c bridge/config_gmail.c bridge/config_url.c bridge/config_proxy.c bridge/config_secfile.c bridge/config_read.c bridge/config_secret.c bridge/config_listen.c bridge/config_route.c bridge/route.c bridge/route_text.c bridge/codec.c bridge/csv.c bridge/ident.c bridge/hash.c bridge/imap_parse.c bridge/file.c bridge/throttle.c
// pkg: libconfig openssl
// max_len: 8192
/*
 * `popbridge batch`: a CSV row to an account (batch_row, as load_rows
 * maps each row), and the redacted URLs of the report.  The CSV often
 * comes from someone else, and what a row says ends up in a login, so
 * the mapping is strict.  Input: byte 0 (bit 0 --trust-csv, bit 1 a
 * --secrets-dir, bit 2 a --secrets-env-prefix, bit 3 the standard header
 * row instead of the file's first row), then the CSV file.
 *
 * For each data row: an accepted row is an account a run can use (URLs
 * parsed, hosts and ports, users and passwords without CR or LF, exactly
 * one secret, a password file under the --secrets-dir unless
 * --trust-csv, an env: password only from a variable with the prefix and
 * exactly its value, a mailbox imap_mailbox_check takes, flags
 * config_flag_valid takes, a name of letters, digits and ._-+@, the row's
 * line); a refused row has a reason that holds no password (neither the
 * row's nor the environment's) unless the row has it elsewhere too.  The
 * report's config_url_redact of both URLs holds no password that was in
 * them.  Nothing leaks.
 *
 * batch_row.c holds the mapping alone; running accounts is batch.c's and
 * batch_run.c's, not linked here.
 */
#include <ctype.h>
#include <limits.h>

#include "bridge.h"
#include "fuzz.h"

#define ENV_SECRET	"env-Secr3t-Value"

int	LLVMFuzzerInitialize(int *, char ***);

static char	 secrets_dir[PATH_MAX];
static bool	 have_dir;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("PBFUZZ_PW", ENV_SECRET, 1);
	setenv("PBFUZZ_EMPTY", "", 1);
	setenv("OTHER_PW", "other-Secr3t", 1);
	/* run.sh runs in the checkout: tests/fuzz is the --secrets-dir. */
	have_dir = realpath("tests/fuzz", secrets_dir) != NULL;
	return 0;
}

static void
check_endpoint(const struct endpoint *ep, bool imap, bool trust)
{
	FUZZ_CHECK(ep->imap == imap && ep->url != NULL && ep->host != NULL &&
	    ep->host[0] != '\0' && ep->port >= 1 && ep->port <= 65535,
	    "url, host, port");
	FUZZ_CHECK(ep->user != NULL && ep->user[0] != '\0' &&
	    config_value_ok(ep->user), "user");
	FUZZ_CHECK((ep->password != NULL) + (ep->password_file != NULL) == 1 &&
	    ep->password_command == NULL && ep->oauth2_token_command == NULL,
	    "one secret");
	if (ep->password != NULL)
		FUZZ_CHECK(ep->password[0] != '\0' &&
		    config_value_ok(ep->password), "password");
	if (ep->password_file != NULL && !trust) {
		size_t n = strlen(secrets_dir);

		FUZZ_CHECK(have_dir && strncmp(ep->password_file, secrets_dir,
		    n) == 0 && ep->password_file[n] == '/' &&
		    ep->password_file[n + 1] != '\0', "password file %s outside "
		    "%s", ep->password_file, secrets_dir);
	}
}

static void
check_account(const struct account *ac, const struct csv_row *row,
    bool trust)
{
	const char	*p;
	char		*copy, *tok, *save;

	check_endpoint(&ac->pop3, false, trust);
	check_endpoint(&ac->imap, true, trust);
	FUZZ_CHECK(ac->imap.mailbox != NULL &&
	    imap_mailbox_check(ac->imap.mailbox) == NULL, "mailbox");
	FUZZ_CHECK(ac->pop3.mailbox == NULL, "a POP3 mailbox");
	FUZZ_CHECK(ac->flags != NULL, "flags");
	copy = xstrdup(ac->flags);
	for (tok = strtok_r(copy, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save))
		FUZZ_CHECK(config_flag_valid(tok), "flag \"%s\"", tok);
	free(copy);
	FUZZ_CHECK(ac->name != NULL && ac->name[0] != '\0', "name");
	for (p = ac->name; *p != '\0'; p++)
		FUZZ_CHECK(isalnum((unsigned char)*p) || strchr("._-+@", *p) !=
		    NULL, "name \"%s\"", ac->name);
	FUZZ_CHECK(ac->line == row->line, "line %d, row %d", ac->line,
	    row->line);
}

/* The field of the header's column name (its last, as batch.c takes it). */
static const char *
field(const struct csv_row *header, const struct csv_row *row,
    const char *name)
{
	size_t	 j, at = SIZE_MAX;

	for (j = 0; j < header->n; j++)
		if (strcmp(header->f[j], name) == 0)
			at = j;
	return at < row->n ? row->f[at] : NULL;
}

/* The secret is what the field says: itself, a file, a variable's value
 * (with the prefix, or --trust-csv). */
static void
check_secret(const struct endpoint *ep, const char *v, bool trust,
    bool prefix)
{
	const char	*e;

	FUZZ_CHECK(v != NULL, "accepted without a password column");
	if (strncmp(v, "env:", 4) == 0) {
		e = getenv(v + 4);
		FUZZ_CHECK(ep->password != NULL && e != NULL &&
		    strcmp(ep->password, e) == 0 && (trust || (prefix &&
		    strncmp(v + 4, "PBFUZZ_", 7) == 0)), "%s taken", v);
	} else if (strncmp(v, "file:", 5) == 0)
		FUZZ_CHECK(ep->password_file != NULL, "%s: no file", v);
	else
		FUZZ_CHECK(ep->password != NULL && strcmp(ep->password, v) == 0,
		    "password not the field's");
}

static void
free_account(struct account *ac)
{
	config_endpoint_free(&ac->pop3);
	config_endpoint_free(&ac->imap);
	free(ac->name);
	free(ac->flags);
}

/*
 * A refused row's reason holds no password: with each password field
 * made a token found nowhere else, no reason holds the token.
 */
static void
check_no_password(const struct csv_row *header, struct csv_row *row,
    unsigned ctl)
{
	static const char tok[] = "Tq7Zx-pw-TOKEN";
	struct account	 ac;
	const char	*err;
	char		*keep, why[512];
	size_t		 j;

	/* The fuzzer learns the token from the comparisons below. */
	for (j = 0; j < row->n; j++)
		if (strstr(row->f[j], tok) != NULL)
			return;
	for (j = 0; j < header->n && j < row->n; j++) {
		if ((strcmp(header->f[j], "pop3_password") != 0 &&
		    strcmp(header->f[j], "imap_password") != 0) ||
		    strncmp(row->f[j], "file:", 5) == 0 ||
		    strncmp(row->f[j], "env:", 4) == 0)
			continue;
		keep = row->f[j];
		row->f[j] = (char *)tok;
		err = batch_row(header, row, (ctl & 2) && have_dir ?
		    secrets_dir : NULL, ctl & 4 ? "PBFUZZ_" : NULL, ctl & 1,
		    &ac, why, sizeof why);
		row->f[j] = keep;
		FUZZ_CHECK(err == NULL || strstr(err, tok) == NULL,
		    "the password in \"%s\"", err);
		free_account(&ac);
	}
}

/* The report's URL: no password that was in it. */
static void
check_redact(const char *url)
{
	char		*r = config_url_redact(url), *pw;
	const char	*s = strstr(url, "://"), *at;

	FUZZ_CHECK(r != NULL, "redact");
	if (s != NULL && (at = strrchr(s + 3, '@')) != NULL &&
	    memchr(s + 3, ':', (size_t)(at - (s + 3))) != NULL) {
		pw = xstrndup(s + 3, (size_t)(at - (s + 3)));
		/* Looked for after the scheme, which r keeps as it was: in
		 * a URL that repeats its scheme after "://" and then has a
		 * "*" before the '@', the "password" is that scheme and the
		 * star, and r's own scheme and first "*" are no leak (found
		 * by a 30-minute run; the input is in the corpus). */
		FUZZ_CHECK(strlen(pw) < 4 || strlen(r) < (size_t)(s + 3 - url) ||
		    strstr(r + (s + 3 - url), pw) == NULL ||
		    strstr(at + 1, pw) != NULL || strstr(url, pw) < s,
		    "\"%s\" redacted to \"%s\"", url, r);
		free(pw);
	}
	free(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static char *std[] = { "pop3_url", "pop3_user", "pop3_password",
		"imap_url", "imap_user", "imap_password", "mailbox", "keep",
		"pop3_ca_file", "imap_ca_file", "flags" };
	struct csv	 c;
	struct csv_row	 header, row;
	struct account	 ac;
	const char	*err, *why0;
	char		*text, why[512];
	unsigned	 ctl;
	bool		 trust;
	size_t		 i, rows = 0;
	int		 got;

	if (len == 0)
		return 0;
	ctl = data[0];
	trust = ctl & 1;
	text = fuzz_dup(data + 1, len - 1);
	csv_init(&c, text, len - 1);
	if (ctl & 8) {
		header.f = std;
		header.n = sizeof std / sizeof std[0];
		header.line = 0;
	} else if (csv_next(&c, &header, &why0) != 1) {
		free(text);
		return 0;
	}
	while ((got = csv_next(&c, &row, &why0)) != 0 && rows++ < 64) {
		if (got < 0)
			continue;
		why[0] = '\0';
		err = batch_row(&header, &row, (ctl & 2) && have_dir ?
		    secrets_dir : NULL, ctl & 4 ? "PBFUZZ_" : NULL, trust, &ac,
		    why, sizeof why);
		if (err == NULL) {
			check_account(&ac, &row, trust);
			check_secret(&ac.pop3, field(&header, &row,
			    "pop3_password"), trust, ctl & 4);
			check_secret(&ac.imap, field(&header, &row,
			    "imap_password"), trust, ctl & 4);
		}
		else {
			FUZZ_CHECK(err[0] != '\0' && strlen(err) < sizeof why,
			    "reason \"%s\"", err);
			/* Unless the row says it itself (the fuzzer learns it). */
			FUZZ_CHECK((strstr(err, ENV_SECRET) == NULL &&
			    strstr(err, "other-Secr3t") == NULL) ||
			    memmem(data, len, "Secr3t", 6) != NULL,
			    "an environment password in \"%s\"", err);
			check_no_password(&header, &row, ctl);
		}
		free_account(&ac);
		for (i = 0; i < row.n; i++)
			if (strstr(row.f[i], "://") != NULL)
				check_redact(row.f[i]);
		csv_row_free(&row);
	}
	if (got != 0)
		csv_row_free(&row);
	if (!(ctl & 8))
		csv_row_free(&header);
	free(text);
	return 0;
}
