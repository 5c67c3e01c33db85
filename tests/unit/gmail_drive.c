/*
 * gmail_drive: bridge/gmail*.c driven from the command line, for
 * tests/integ/test_gmail_api.py while the engine does not call them yet.
 * Built by `make tests/unit/build/gmail_drive` (every popbridge object
 * but main.o); not a unit test (tests/unit/run.sh builds *_test.c only).
 *
 *   gmail_drive [-v] --base URL --token-command CMD [--ca FILE]
 *       [--inflight N] [--max-wait S] [--rate UNITS] [--timeout S]
 *       [--deadline S] COMMAND ...
 *   labels NAME...                       NAME<TAB>ID per line
 *   import [--label NAME]... [--read] [--never-spam] FILE...
 *       FILE<TAB>STATUS<TAB>DETAIL<TAB>WHY per line, one call for all;
 *       DETAIL: the id, the seconds to wait, or the time (epoch) when
 *       the daily limit ends; then "result: N" (enum result)
 *   find [--sha] FILE                    the ids of its copies, or "none"
 *       (probe from the file: Message-ID, Date, size, and its bytes;
 *       with --sha only its SHA-256, not its bytes)
 *
 * The exit status is the result's sysexits code (result_exit_code).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "gmail.h"

static void
usage(void)
{
	fprintf(stderr, "usage: gmail_drive [-v] --base URL --token-command "
	    "CMD [--ca FILE] [--inflight N] [--max-wait S] [--rate U] "
	    "[--timeout S] [--deadline S] labels|import|find ...\n");
	exit(64);
}

static char *
slurp(const char *path, size_t *len)
{
	char	*data = NULL, *cause = NULL;

	if (file_read(path, 200u * 1024 * 1024, &data, len, NULL, &cause) !=
	    RES_OK) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		exit(66);
	}
	return data;
}

static int
cmd_labels(struct gmail *g, int argc, char **argv)
{
	char		**ids = xcalloc((size_t)argc + 1, sizeof *ids);
	char		*cause = NULL;
	enum result	 r;
	int		 i;

	r = gmail_labels(g, (const char *const *)argv, (size_t)argc, ids,
	    &cause);
	if (r != RES_OK) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		free(cause);
	}
	for (i = 0; i < argc && r == RES_OK; i++) {
		printf("%s\t%s\n", argv[i], ids[i]);
		free(ids[i]);
	}
	free(ids);
	return result_exit_code(r);
}

static int
cmd_import(struct gmail *g, int argc, char **argv)
{
	const char	*names[GMAIL_LABELS_MAX];
	char		*ids[GMAIL_LABELS_MAX], *cause = NULL;
	struct gmail_item *items;
	size_t		 nnames = 0, n = 0, i;
	bool		 unread = true, never_spam = false;
	enum result	 r;
	int		 a;

	for (a = 0; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "--label") == 0 && a + 1 < argc &&
		    nnames < GMAIL_LABELS_MAX)
			names[nnames++] = argv[++a];
		else if (strcmp(argv[a], "--read") == 0)
			unread = false;
		else if (strcmp(argv[a], "--never-spam") == 0)
			never_spam = true;
		else
			usage();
	}
	if ((r = gmail_labels(g, names, nnames, ids, &cause)) != RES_OK) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		free(cause);
		return result_exit_code(r);
	}
	items = xcalloc((size_t)(argc - a) + 1, sizeof *items);
	for (; a < argc; a++, n++) {
		items[n].src.bytes = slurp(argv[a], &items[n].src.len);
		items[n].label_ids = (const char *const *)ids;
		items[n].nlabels = nnames;
		items[n].unread = unread;
		items[n].never_spam = never_spam;
	}
	r = gmail_import(g, items, n, &cause);
	a = argc - (int)n;
	for (i = 0; i < n; i++) {
		printf("%s\t%s\t", argv[a + (int)i],
		    gmail_status_name(items[i].status));
		if (items[i].status == GMAIL_IMPORTED)
			printf("%s", items[i].id);
		else if (items[i].status == GMAIL_DAILY_LIMIT)
			printf("%lld", (long long)items[i].until);
		else
			printf("%ld", items[i].retry_after);
		printf("\t%s\n", items[i].why != NULL ? items[i].why : "");
		free((char *)items[i].src.bytes);
	}
	printf("result: %d\n", (int)r);
	if (cause != NULL) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		free(cause);
	}
	gmail_items_clear(items, n);
	free(items);
	for (i = 0; i < nnames; i++)
		free(ids[i]);
	return result_exit_code(r);
}

static int
cmd_find(struct gmail *g, int argc, char **argv)
{
	struct gmail_probe pr;
	struct hash	*h;
	char		 mid[MSGID_MAX], hex[65], **ids, *cause = NULL, *data;
	size_t		 len, n, i, hend;
	bool		 sha = false;
	int		 tz;
	enum result	 r;

	if (argc >= 1 && strcmp(argv[0], "--sha") == 0) {
		sha = true;
		argc--, argv++;
	}
	if (argc != 1)
		usage();
	data = slurp(argv[0], &len);
	memset(&pr, 0, sizeof pr);
	hend = msg_header_end(data, len);
	msg_message_id(data, hend > 0 ? hend : len, mid, sizeof mid);
	pr.message_id = mid;
	if (!msg_date(data, hend > 0 ? hend : len, &pr.date, &tz))
		pr.date = 0;
	pr.size = len;
	if (sha) {
		h = hash_new();
		hash_update_message(h, data, len);
		hash_final(h, hex);
		pr.sha256 = hex;
	} else {
		pr.src.bytes = data;
		pr.src.len = len;
	}
	r = gmail_find(g, &pr, &ids, &n, &cause);
	if (r != RES_OK) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		free(cause);
	} else if (n == 0)
		printf("none\n");
	for (i = 0; i < n; i++)
		printf("%s\n", ids[i]);
	gmail_ids_free(ids, n);
	free(data);
	return result_exit_code(r);
}

int
main(int argc, char **argv)
{
	struct endpoint	 ep;
	struct gmail_opts o;
	struct gmail	*g;
	char		*cause = NULL;
	int		 a, verbose = 0, rc;
	double		 deadline = 0;
	enum result	 r;

	memset(&ep, 0, sizeof ep);
	memset(&o, 0, sizeof o);
	o.ep = &ep;
	o.account = "drive";
	o.timeout = 30;
	for (a = 1; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "-v") == 0) {
			verbose++;
			continue;
		}
		if (a + 1 >= argc)
			usage();
		if (strcmp(argv[a], "--base") == 0)
			o.base = argv[++a];
		else if (strcmp(argv[a], "--token-command") == 0)
			ep.oauth2_token_command = argv[++a];
		else if (strcmp(argv[a], "--ca") == 0)
			ep.ca_file = argv[++a];
		else if (strcmp(argv[a], "--inflight") == 0)
			o.inflight = (unsigned int)atoi(argv[++a]);
		else if (strcmp(argv[a], "--max-wait") == 0)
			o.max_wait = atol(argv[++a]);
		else if (strcmp(argv[a], "--rate") == 0)
			o.units_per_sec = atof(argv[++a]);
		else if (strcmp(argv[a], "--timeout") == 0)
			o.timeout = atol(argv[++a]);
		else if (strcmp(argv[a], "--deadline") == 0)
			deadline = atof(argv[++a]);
		else
			usage();
	}
	if (a >= argc || ep.oauth2_token_command == NULL)
		usage();
	ep.oauth2 = true;
	ep.user = "me";
	log_open(true, verbose);
	net_init();
	if (deadline > 0)
		o.deadline = now_seconds() + deadline;
	if ((r = gmail_open(&o, &g, &cause)) != RES_OK) {
		fprintf(stderr, "gmail_drive: %s\n", cause);
		free(cause);
		return result_exit_code(r);
	}
	if (strcmp(argv[a], "labels") == 0)
		rc = cmd_labels(g, argc - a - 1, argv + a + 1);
	else if (strcmp(argv[a], "import") == 0)
		rc = cmd_import(g, argc - a - 1, argv + a + 1);
	else if (strcmp(argv[a], "find") == 0)
		rc = cmd_find(g, argc - a - 1, argv + a + 1);
	else
		usage();
	gmail_close(g);
	net_cleanup();
	return rc;
}
