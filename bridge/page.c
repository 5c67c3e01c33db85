/*
 * The daemon's status page: one HTML document, no script, readable on a
 * phone.  Per account what `status` says (status.c's views): the last
 * poll and its result, messages imported today and in all, waiting, set
 * aside or refused (date, sender, subject, why), the next poll, the last
 * error in plain words; a "Check now" button per account and one for all.
 * It reloads itself (a meta refresh: sooner while a poll runs).
 *
 * Everything that comes from a mailbox or the ledger is escaped here
 * (page_escape); the views have the paths of password and token files
 * hidden already.  The buttons are forms that POST to /check with the
 * CSRF token http.c gives; they are shown to a browser that sent the
 * token (after "Sign in", /login), since an action needs it (http.c);
 * without a token configured there are none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge.h"

#define FAILURES_SHOWN	50	/* per account; `status` lists them all */
#define REFRESH		30	/* seconds between reloads */
#define REFRESH_BUSY	3	/* ... while a poll runs or was asked for */

static const char style[] =
    "body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;padding:.8em;"
    "max-width:46em;background:#f4f4f1;color:#1d1d1b}"
    "h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.15em;margin:0}"
    "h3{font-size:1em;margin:.8em 0 .2em}"
    "header p,.route,.when{color:#5b5b57;font-size:.9em;margin:.2em 0}"
    ".account{background:#fff;border-radius:8px;padding:.8em 1em;"
    "margin:.8em 0;border-left:6px solid #2e8b57;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    ".account.failing{border-left-color:#c0392b}"
    ".account.partial{border-left-color:#d4a017}"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.15em .9em;"
    "margin:.6em 0}dt{color:#5b5b57}dd{margin:0}"
    ".err{color:#a93226}.note{background:#fff8dc;padding:.5em .8em;"
    "border-radius:6px}ul{padding-left:1.2em;margin:.2em 0}"
    "li{margin:.3em 0;overflow-wrap:anywhere}"
    "button{font:inherit;padding:.45em 1.1em;border-radius:6px;"
    "border:1px solid #1f618d;background:#2874a6;color:#fff}"
    "form{margin:.5em 0 0}";

void
page_escape(FILE *f, const char *s)
{
	for (; s != NULL && *s != '\0'; s++) {
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&#39;", f);
			break;
		default:
			putc(*s, f);
		}
	}
}

/* "14:05 (3 min ago)", "2 Dec 09:10 (2 days ago)", "14:10 (in 5 min)". */
static void
when(FILE *f, time_t t, time_t now)
{
	struct tm	 tm, today;
	char		 buf[32];
	long		 d = (long)(t > now ? t - now : now - t);

	localtime_r(&t, &tm);
	localtime_r(&now, &today);
	strftime(buf, sizeof buf, tm.tm_yday == today.tm_yday &&
	    tm.tm_year == today.tm_year ? "%H:%M" : "%e %b %H:%M", &tm);
	fprintf(f, "%s (", buf[0] == ' ' ? buf + 1 : buf);
	if (d < 60)
		fputs(t > now ? "in a moment" : "just now", f);
	else
		fprintf(f, "%s%ld %s%s", t > now ? "in " : "", d < 3600 ?
		    d / 60 : d < 86400 ? d / 3600 : d / 86400, d < 3600 ?
		    "min" : d < 86400 ? "h" : d < 2 * 86400 ? "day" : "days",
		    t > now ? "" : " ago");
	putc(')', f);
}

/* The result in plain words, and what happens about it. */
static const char *
advice(int result)
{
	switch (result) {
	case RES_MSG:
		return "Some messages could not be imported; they stay on the "
		    "POP3 server and are tried again.";
	case RES_TEMP:
		return "A temporary failure (the network or a server): "
		    "popbridge tries again by itself.";
	case RES_AUTH:
		return "A server refused the login: check the password.";
	case RES_CONFIG:
		return "The configuration needs fixing: `popbridge check` "
		    "says what.";
	default:
		return NULL;
	}
}

static void
csrf_field(FILE *f, const struct page_opts *o)
{
	fputs("<input type=\"hidden\" name=\"csrf\" value=\"", f);
	page_escape(f, o->csrf);
	fputs("\">", f);
}

static void
failure(FILE *f, const struct ledger_failure *fl, time_t now)
{
	fputs("<li>", f);
	if (fl->date != NULL) {
		fputs("<span class=\"date\">", f);
		page_escape(f, fl->date);
		fputs("</span>, ", f);
	}
	fputs("from <span class=\"from\">", f);
	page_escape(f, fl->from != NULL ? fl->from : "(unknown)");
	fputs("</span>, &ldquo;<span class=\"subject\">", f);
	page_escape(f, fl->subject != NULL ? fl->subject : "");
	fputs("</span>&rdquo;: <span class=\"why\">", f);
	page_escape(f, fl->error);
	fputs("</span>", f);
	if (fl->hold_until > now) {
		fputs(" <span class=\"set-aside\">set aside until ", f);
		when(f, fl->hold_until, now);
		fputs("</span>", f);
	} else
		fprintf(f, " (failed %u time%s; tried again at the next "
		    "poll)", fl->attempts, fl->attempts == 1 ? "" : "s");
	fputs("</li>\n", f);
}

static void
failures(FILE *f, const struct ledger_status *ls, time_t now)
{
	size_t	 i;

	if (ls->nfailures == 0)
		return;
	fprintf(f, "<h3>Not imported (%zu%s)</h3>\n<ul class=\"failures\">\n",
	    ls->nfailures, ls->set_aside > 0 ? ", some set aside" : "");
	for (i = 0; i < ls->nfailures && i < FAILURES_SHOWN; i++)
		failure(f, &ls->failures[i], now);
	if (ls->nfailures > FAILURES_SHOWN)
		fprintf(f, "<li>and %zu more (<code>popbridge status</code> "
		    "lists them)</li>\n", ls->nfailures - FAILURES_SHOWN);
	fputs("</ul>\n", f);
}

/* One figure: <dt>label</dt><dd class="cls" data-value="n">n</dd>. */
static void
figure(FILE *f, const char *label, const char *cls, unsigned long long n)
{
	fprintf(f, "<dt>%s</dt><dd class=\"%s\" data-value=\"%llu\">%llu</dd>\n",
	    label, cls, n, n);
}

static void
last_poll(FILE *f, const struct account_view *v, time_t now)
{
	const struct ledger_status *ls = &v->ls;
	const char	*a;

	fputs("<dt>Last poll</dt><dd class=\"last-poll\">", f);
	if (v->ledger_error != NULL)
		fputs("unknown", f);
	else if (!ls->ever_run)
		fputs("not yet", f);
	else {
		when(f, ls->last_poll, now);
		fputs(": <span class=\"result\">", f);
		page_escape(f, result_words(ls->last_result));
		fputs("</span>", f);
	}
	fputs("</dd>\n<dt>Last error</dt><dd class=\"last-error\">", f);
	if (v->ledger_error != NULL) {
		fputs("<span class=\"err\">The ledger cannot be read: ", f);
		page_escape(f, v->ledger_error);
		fputs("</span>", f);
	} else if (ls->ever_run && ls->last_result != RES_OK &&
	    (a = advice(ls->last_result)) != NULL) {
		fprintf(f, "<span class=\"err\">%s</span>", a);
		if (ls->last_error != NULL) {
			fputs(" <span class=\"cause\">(", f);
			page_escape(f, ls->last_error);
			fputs(")</span>", f);
		}
	} else
		fputs("none", f);
	fputs("</dd>\n", f);
}

static void
next_poll(FILE *f, const struct account_view *v, time_t now)
{
	fputs("<dt>Next poll</dt><dd class=\"next-poll\">", f);
	if (v->de.polling)
		fputs("<strong>checking now&hellip;</strong>", f);
	else if (v->de.found && v->de.next <= now)
		fputs("now", f);
	else if (v->de.found)
		when(f, v->de.next, now);
	else
		fputs("unknown", f);
	fputs("</dd>\n", f);
}

static void
account(FILE *f, const struct account_view *v, const struct page_opts *o)
{
	const struct ledger_status *ls = &v->ls;
	char		*src = ident_source(&v->ac->pop3);
	char		*dst = ident_dest(&v->ac->imap);
	const char	*cls = "";

	if (v->ledger_error != NULL || (ls->ever_run &&
	    ls->last_result >= RES_TEMP))
		cls = " failing";
	else if (ls->ever_run && ls->last_result == RES_MSG)
		cls = " partial";
	fprintf(f, "<section class=\"account%s\" data-account=\"", cls);
	page_escape(f, v->ac->name);
	fputs("\">\n<h2>", f);
	page_escape(f, v->ac->name);
	fputs("</h2>\n<p class=\"route\">", f);
	page_escape(f, src);
	fputs(" &rarr; ", f);
	page_escape(f, dst);
	fputs("</p>\n<dl>\n", f);
	free(src);
	free(dst);
	last_poll(f, v, o->now);
	figure(f, "Imported today", "imported-today", v->lm.imported_today);
	figure(f, "Imported in all", "imported-total", ls->imported_total);
	figure(f, "Waiting", "waiting", ls->waiting);
	figure(f, "Set aside", "set-aside", ls->set_aside);
	next_poll(f, v, o->now);
	fputs("</dl>\n", f);
	failures(f, ls, o->now);
	if (o->csrf != NULL) {
		fputs("<form method=\"post\" action=\"/check\">", f);
		csrf_field(f, o);
		fputs("<input type=\"hidden\" name=\"account\" value=\"", f);
		page_escape(f, v->ac->name);
		fputs("\"><button type=\"submit\">Check now</button></form>\n",
		    f);
	}
	fputs("</section>\n", f);
}

static void
header(FILE *f, const struct account_view *v, size_t n,
    const struct page_opts *o)
{
	char		 buf[32];
	struct tm	 tm;
	size_t		 i;
	bool		 busy = o->asked != NULL;

	for (i = 0; i < n; i++)
		busy = busy || v[i].de.polling;
	localtime_r(&o->now, &tm);
	strftime(buf, sizeof buf, "%H:%M:%S", &tm);
	fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
	    "<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
	    "content=\"width=device-width, initial-scale=1\">\n"
	    "<meta http-equiv=\"refresh\" content=\"%d; url=/\">\n"
	    "<title>popbridge: mail import</title>\n<style>%s</style>\n"
	    "</head>\n<body>\n<header>\n<h1>Mail import</h1>\n"
	    "<p>As of %s; this page reloads itself.</p>\n",
	    busy ? REFRESH_BUSY : REFRESH, style, buf);
	if (o->csrf != NULL) {
		fputs("<form method=\"post\" action=\"/check\">", f);
		csrf_field(f, o);
		fputs("<button type=\"submit\">Check all now</button></form>\n",
		    f);
	}
	fputs("</header>\n", f);
}

void
page_write(FILE *f, const struct account_view *v, size_t n,
    const struct page_opts *o)
{
	size_t	 i;

	header(f, v, n, o);
	if (o->asked != NULL) {
		fputs("<p class=\"note\" id=\"asked\">Checking ", f);
		if (o->asked[0] == '\0')
			fputs("every account", f);
		else
			page_escape(f, o->asked);
		fputs(" now.</p>\n", f);
	}
	if (!o->token_set)
		fputs("<p class=\"note\">The &ldquo;Check now&rdquo; buttons "
		    "appear once the configuration names a "
		    "<code>listen_token_file</code> (see <code>man "
		    "popbridge.conf</code>).</p>\n", f);
	else if (o->csrf == NULL)
		fputs("<p class=\"note\"><a id=\"login\" href=\"/login\">"
		    "Sign in</a> with the token (any user name, the token as "
		    "the password) for the &ldquo;Check now&rdquo; "
		    "buttons.</p>\n", f);
	if (n == 0)
		fputs("<p>No accounts are configured.</p>\n", f);
	for (i = 0; i < n; i++)
		account(f, &v[i], o);
	fputs("</body>\n</html>\n", f);
}
