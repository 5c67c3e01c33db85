// link: bridge/config.c bridge/account_valid.c bridge/config_keys.c bridge/config_endpoint.c bridge/config_gmail.c bridge/config_url.c bridge/config_proxy.c bridge/config_secfile.c bridge/config_read.c bridge/config_secret.c bridge/config_listen.c bridge/config_route.c bridge/route.c bridge/route_text.c bridge/codec.c bridge/ident.c bridge/imap_parse.c
// pkg: libconfig
// max_len: 8192
/*
 * config_load on the input as a config file.  The file is an anonymous
 * in-memory file (memfd, mode 0600) rewritten for each input and named by
 * its /proc/self/fd path, so nothing touches the disk; where memfd is
 * missing, a 0600 file under /dev/shm (or $TMPDIR) instead.
 *
 * Nothing may crash or leak: a refusal is RES_CONFIG or RES_AUTH with a
 * cause and no config; an accepted config holds what the loader promises
 * (bounds, one secret source, parsed URLs, a mailbox it can send, valid
 * flags, no CR or LF in a user or password).  The
 * first line of the input also goes to config_parse_url (as migrate's
 * command line does) and to config_flag_valid.
 *
 * Leaks.  libconfig 1.5 (Debian 12) itself leaks on some files it
 * refuses: the string token a syntax error discards (`"\\Seen"` alone;
 * hyperrealm/libconfig#142, fixed in 1.7 by PR #155) and more.  Left
 * alone, those would fail every run, and would make libFuzzer give up
 * its per-input leak check after 1000 inputs with more mallocs than
 * frees, so a leak of popbridge's would only surface at exit, tied to no
 * input.  So each input is first parsed by libconfig alone, and a malloc
 * hook notes what that leaves allocated: libconfig's own leak for this
 * file.  Then config_load runs under the same watch; what it leaves must
 * be exactly as much (same count, same sizes: the parse is
 * deterministic).  If so, the leftovers are libconfig's and are freed
 * here, and the input is balanced.  If config_load left anything more,
 * nothing is freed: libFuzzer's leak check sees the input leak and
 * LeakSanitizer reports it with its stack, as for any other target.
 *
 * Inputs with "@include" are skipped: libconfig would read whatever file
 * they name, and the target must not depend on the machine.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <ctype.h>
#include <fcntl.h>
#include <unistd.h>

#include <libconfig.h>
#include <sanitizer/allocator_interface.h>

#include "bridge.h"
#include "fuzz.h"

static int	 cfd = -1;
static char	 cpath[256];

int	LLVMFuzzerInitialize(int *, char ***);

/*
 * What is allocated while watching and not yet freed: an open-addressing
 * table of pointers and sizes.  A slot is in use when its generation is
 * the current one, so starting a new watch costs nothing.
 */
#define WATCH_SLOTS	(1u << 16)
static struct {
	const volatile void *p;
	size_t		 size;
	unsigned	 gen;	/* the watch it belongs to */
	bool		 live;
} watch_tab[WATCH_SLOTS];
static unsigned		 watch_gen;
static uint32_t		 watch_used[WATCH_SLOTS / 2];	/* slots taken */
static size_t		 watch_nused;
static size_t		 watch_live;
static bool		 watch_full;
static _Thread_local bool watching;

static size_t
watch_slot(const volatile void *p)
{
	uintptr_t h = (uintptr_t)p;

	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ULL;
	return (size_t)(h >> 16) & (WATCH_SLOTS - 1);
}

static void
watch_malloc(const volatile void *p, size_t size)
{
	size_t	 i, n;

	if (!watching || p == NULL)
		return;
	if (watch_nused >= WATCH_SLOTS / 2) {
		watch_full = true;
		return;
	}
	for (i = watch_slot(p), n = 0; n < WATCH_SLOTS;
	    i = (i + 1) & (WATCH_SLOTS - 1), n++)
		if (watch_tab[i].gen != watch_gen || !watch_tab[i].live) {
			if (watch_tab[i].gen != watch_gen)
				watch_used[watch_nused++] = (uint32_t)i;
			watch_tab[i].p = p;
			watch_tab[i].size = size;
			watch_tab[i].gen = watch_gen;
			watch_tab[i].live = true;
			watch_live++;
			return;
		}
}

static void
watch_free(const volatile void *p)
{
	size_t	 i, n;

	if (!watching || p == NULL)
		return;
	/* Deleted slots stay in the probe chain as tombstones (live off). */
	for (i = watch_slot(p), n = 0; n < WATCH_SLOTS &&
	    watch_tab[i].gen == watch_gen; i = (i + 1) & (WATCH_SLOTS - 1), n++)
		if (watch_tab[i].live && watch_tab[i].p == p) {
			watch_tab[i].live = false;
			watch_live--;
			return;
		}
}

static void
watch_start(void)
{
	/* Generation 0 never starts, so a zeroed slot is never in use. */
	if (++watch_gen == 0)
		watch_gen = 1;
	if (watch_gen == 1)
		memset(watch_tab, 0, sizeof watch_tab);
	watch_nused = 0;
	watch_live = 0;
	watch_full = false;
	watching = true;
}

/* Stop; the sizes still allocated, sorted, into sizes[max]. */
static size_t
watch_stop(size_t *sizes, size_t max)
{
	size_t	 i, j, n = 0, t;

	watching = false;
	for (j = 0; j < watch_nused && n < max; j++)
		if (watch_tab[i = watch_used[j]].live)
			sizes[n++] = watch_tab[i].size;
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && sizes[j - 1] > sizes[j]; j--) {
			t = sizes[j];
			sizes[j] = sizes[j - 1];
			sizes[j - 1] = t;
		}
	return n;
}

/* Free what the last watch left allocated. */
static void
watch_release(void)
{
	size_t	 i, j;

	for (j = 0; j < watch_nused; j++)
		if (watch_tab[i = watch_used[j]].live) {
			watch_tab[i].live = false;
			free((void *)(uintptr_t)watch_tab[i].p);
		}
	watch_live = 0;
}

static void
cleanup(void)
{
	if (strncmp(cpath, "/proc/", 6) != 0 && cpath[0] != '\0')
		unlink(cpath);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp;

	(void)argc;
	(void)argv;
	if (__sanitizer_install_malloc_and_free_hooks(watch_malloc,
	    watch_free) == 0) {
		fprintf(stderr, "fuzz_config: cannot install malloc hooks\n");
		exit(1);
	}
#ifdef MFD_CLOEXEC
	if ((cfd = memfd_create("fuzz_config.conf", MFD_CLOEXEC)) != -1) {
		snprintf(cpath, sizeof cpath, "/proc/self/fd/%d", cfd);
		/* As a password-holding config must be: owner only. */
		if (fchmod(cfd, 0600) == 0 && access(cpath, R_OK) == 0)
			return 0;
		close(cfd);
		cfd = -1;
	}
#endif
	tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(cpath, sizeof cpath, "%s/fuzz_config.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if ((cfd = mkstemp(cpath)) == -1 || fchmod(cfd, 0600) == -1) {
		perror(cpath);
		exit(1);
	}
	atexit(cleanup);
	return 0;
}

static void
check_endpoint(const struct endpoint *ep, bool imap)
{
	int	 secrets = (ep->password != NULL) + (ep->password_file != NULL) +
	    (ep->password_command != NULL);
	const char *p;

	FUZZ_CHECK(ep->imap == imap && ep->url != NULL && ep->host != NULL &&
	    ep->host[0] != '\0', "endpoint url/host");
	FUZZ_CHECK(ep->port >= 1 && ep->port <= 65535, "port %d", ep->port);
	FUZZ_CHECK(ep->user != NULL && ep->user[0] != '\0', "user");
	FUZZ_CHECK(ep->oauth2 ? ep->oauth2_token_command != NULL &&
	    secrets == 0 : ep->oauth2_token_command == NULL && secrets == 1,
	    "secrets: oauth2 %d, %d sources", ep->oauth2, secrets);
	FUZZ_CHECK(ep->tls != TLS_NONE || strncmp(ep->url, imap ? "imap://" :
	    "pop3://", 7) == 0, "tls none with %s", ep->url);
	for (p = ep->host; *p != '\0'; p++)
		FUZZ_CHECK(isalnum((unsigned char)*p) || strchr(".-_:", *p) !=
		    NULL, "host \"%s\"", ep->host);
	if (ep->password_file != NULL)
		FUZZ_CHECK(ep->password_file[0] == '/', "relative path kept");
	/* Nothing that goes to the server can end a protocol line. */
	FUZZ_CHECK(config_value_ok(ep->user) && (ep->password == NULL ||
	    config_value_ok(ep->password)), "CR or LF in user or password");
	if (imap) {
		/* UTF-8 or modified UTF-7 that imap_quote_mailbox can send. */
		FUZZ_CHECK(ep->mailbox != NULL &&
		    imap_mailbox_check(ep->mailbox) == NULL, "mailbox");
	} else
		FUZZ_CHECK(ep->mailbox == NULL, "pop3 mailbox");
}

static void
check_config(const struct config *cf)
{
	size_t	 i;

	FUZZ_CHECK(cf->timeout >= 5 && cf->timeout <= 3600, "timeout");
	FUZZ_CHECK(cf->interval >= 60 && cf->interval <= 7 * 86400, "interval");
	FUZZ_CHECK(cf->jobs >= 1 && cf->jobs <= 64, "jobs");
	FUZZ_CHECK(cf->max_backoff >= 60, "max_backoff");
	FUZZ_CHECK(cf->state_dir != NULL && cf->state_dir[0] == '/' &&
	    cf->pid_file != NULL && cf->pid_file[0] == '/', "paths");
	for (i = 0; i < cf->naccounts; i++) {
		const struct account *ac = &cf->accounts[i];

		FUZZ_CHECK(ac->name != NULL && config_find(cf, ac->name) == ac,
		    "account %zu name", i);
		FUZZ_CHECK(ac->interval >= 60 && ac->interval <= 7 * 86400,
		    "account interval");
		FUZZ_CHECK(ac->flags != NULL, "flags");
		check_endpoint(&ac->pop3, false);
		check_endpoint(&ac->imap, true);
	}
}

static void
check_url(const uint8_t *data, size_t len)
{
	const uint8_t *nl = memchr(data, '\n', len);
	struct endpoint ep;
	char	*why = NULL;
	size_t	 n = nl != NULL ? (size_t)(nl - data) : len;
	int	 imap;

	for (imap = 0; imap < 2; imap++) {
		memset(&ep, 0, sizeof ep);
		ep.url = fuzz_str(data, n);
		ep.imap = imap;
		if (config_parse_url(&ep, &why) == RES_OK) {
			FUZZ_CHECK(why == NULL && ep.host != NULL &&
			    ep.host[0] != '\0' && ep.port >= 1 &&
			    ep.port <= 65535, "url \"%s\"", ep.url);
			/* A secret in the URL is never accepted. */
			FUZZ_CHECK(strchr(ep.url, '@') == NULL ||
			    strstr(ep.url, "://") == NULL ||
			    strchr(strstr(ep.url, "://"), '@') >
			    strstr(ep.url, "://") + 3 + strcspn(strstr(ep.url,
			    "://") + 3, "/?#"), "url with a user \"%s\"", ep.url);
		} else
			FUZZ_CHECK(why != NULL, "refused without a cause");
		free(why);
		why = NULL;
		config_flag_valid(ep.url);
		config_endpoint_free(&ep);
	}
}

#define MAXLEAK	4096

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static size_t	 base[MAXLEAK], left[MAXLEAK];
	struct config	*cf = (struct config *)1;
	char		*cause = NULL;
	config_t	 lc;
	size_t		 nbase, nleft;
	enum result	 r;

	check_url(data, len);
	if (memmem(data, len, "@include", 8) != NULL)
		return 0;
	if (ftruncate(cfd, 0) == -1 ||
	    (len > 0 && pwrite(cfd, data, len, 0) != (ssize_t)len)) {
		perror(cpath);
		abort();
	}
	/* libconfig alone: what it leaks on this file. */
	watch_start();
	config_init(&lc);
	(void)config_read_file(&lc, cpath);
	config_destroy(&lc);
	nbase = watch_stop(base, MAXLEAK);
	if (nbase > 0 && getenv("FUZZ_CONFIG_VERBOSE") != NULL)
		fprintf(stderr, "fuzz_config: libconfig alone leaks %zu "
		    "allocations (%zu bytes first)\n", nbase, base[0]);
	if (!watch_full && nbase < MAXLEAK)
		watch_release();

	watch_start();
	r = config_load(cpath, &cf, &cause);
	if (r == RES_OK) {
		FUZZ_CHECK(cf != NULL && cause == NULL, "accepted: config %p, "
		    "cause %s", (void *)cf, cause);
		check_config(cf);
	} else {
		FUZZ_CHECK(cf == NULL, "refused with a config");
		FUZZ_CHECK((r == RES_CONFIG || r == RES_AUTH) && cause != NULL,
		    "refused: result %d, cause %s", (int)r,
		    cause != NULL ? cause : "NULL");
	}
	config_free(cf);
	free(cause);
	nleft = watch_stop(left, MAXLEAK);
	/* Exactly libconfig's leak: free it.  Anything else: leave it to
	 * LeakSanitizer, which will name the allocation. */
	if (!watch_full && nleft == nbase && nleft < MAXLEAK &&
	    memcmp(left, base, nleft * sizeof *left) == 0)
		watch_release();
	else if (getenv("FUZZ_CONFIG_VERBOSE") != NULL)
		fprintf(stderr, "fuzz_config: config_load left %zu "
		    "allocations, libconfig alone %zu\n", nleft, nbase);
	return 0;
}
