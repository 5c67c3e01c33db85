/*
 * The JSON of the Gmail API, through Jansson (libjansson, Debian's
 * libjansson-dev): the only file that includes jansson.h.  Replies are
 * untrusted: parsed whole from a bounded buffer (gmail.c caps them),
 * duplicate keys refused, every field checked for its type, ids for
 * their characters and length, and text cleaned before it is shown.
 * Requests are built with Jansson too, so a label name's quotes and
 * UTF-8 are escaped by the library, not by hand.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bridge.h"
#include "gmail_int.h"

static json_t *
parse(const char *s, size_t len)
{
	json_error_t	 err;

	if (s == NULL || len == 0)
		return NULL;
	return json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);
}

/* An id: letters, digits, - and _, 1 to outsz - 1 bytes. */
static bool
id_copy(json_t *v, char *out, size_t outsz)
{
	const char	*s;
	size_t		 n, i;

	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n >= outsz)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	memcpy(out, s, n + 1);
	return true;
}

void
gmail_json_error(const char *s, size_t len, char *reason, size_t rsz,
    char *msg, size_t msz)
{
	json_t		*root, *e, *errs, *first, *v;

	reason[0] = '\0';
	msg[0] = '\0';
	if ((root = parse(s, len)) == NULL) {
		/* Not JSON (a proxy's page, say): its first bytes, cleaned. */
		if (s != NULL && len > 0)
			log_clean(msg, msz, s, len < 120 ? len : 120);
		return;
	}
	e = json_object_get(root, "error");
	if (json_is_object(e)) {
		if (json_is_string(v = json_object_get(e, "message")))
			log_clean(msg, msz, json_string_value(v),
			    json_string_length(v));
		errs = json_object_get(e, "errors");
		first = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
		if (json_is_object(first) &&
		    json_is_string(v = json_object_get(first, "reason")))
			log_clean(reason, rsz, json_string_value(v),
			    json_string_length(v));
		/* Newer replies may give only "status" (RESOURCE_EXHAUSTED). */
		if (reason[0] == '\0' &&
		    json_is_string(v = json_object_get(e, "status")))
			log_clean(reason, rsz, json_string_value(v),
			    json_string_length(v));
	}
	json_decref(root);
}

bool
gmail_json_id(const char *s, size_t len, char *out, size_t outsz)
{
	json_t	*root;
	bool	 ok;

	if ((root = parse(s, len)) == NULL)
		return false;
	ok = json_is_object(root) &&
	    id_copy(json_object_get(root, "id"), out, outsz);
	json_decref(root);
	return ok;
}

bool
gmail_json_labels(const char *s, size_t len,
    void (*cb)(void *, const char *, const char *), void *arg)
{
	json_t		*root, *list, *l, *name;
	char		 id[GMAIL_ID_MAX * 2];
	size_t		 i;
	bool		 ok = false;

	if ((root = parse(s, len)) == NULL || !json_is_object(root))
		goto out;
	list = json_object_get(root, "labels");
	/* A mailbox with no labels at all may omit the list. */
	if (list != NULL && !json_is_array(list))
		goto out;
	json_array_foreach(list, i, l) {
		if (!json_is_object(l))
			goto out;
		name = json_object_get(l, "name");
		if (!id_copy(json_object_get(l, "id"), id, sizeof id) ||
		    !json_is_string(name) ||
		    strlen(json_string_value(name)) != json_string_length(name))
			goto out;
		cb(arg, id, json_string_value(name));
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

bool
gmail_json_list(const char *s, size_t len, void (*cb)(void *, const char *),
    void *arg, char **next)
{
	json_t		*root, *list, *m, *tok;
	char		 id[GMAIL_ID_MAX];
	size_t		 i;
	bool		 ok = false;

	*next = NULL;
	if ((root = parse(s, len)) == NULL || !json_is_object(root))
		goto out;
	list = json_object_get(root, "messages");
	/* No match: Google omits "messages". */
	if (list != NULL && !json_is_array(list))
		goto out;
	json_array_foreach(list, i, m) {
		if (!json_is_object(m) ||
		    !id_copy(json_object_get(m, "id"), id, sizeof id))
			goto out;
		cb(arg, id);
	}
	tok = json_object_get(root, "nextPageToken");
	if (tok != NULL) {
		char t[512];

		if (!json_is_string(tok) || !id_copy(tok, t, sizeof t))
			goto out;
		*next = xstrdup(t);
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

/* base64url (RFC 4648 5), padding optional, into out (room for len). */
static bool
b64url_decode(const char *s, size_t len, char *out, size_t *outlen)
{
	struct b64_end	 e;
	long		 n;

	while (len > 0 && s[len - 1] == '=')
		len--;
	if ((n = b64_decode(s, len, true, (unsigned char *)out, len, &e)) < 0 ||
	    e.used != len || e.lone)
		return false;
	*outlen = (size_t)n;
	return true;
}

bool
gmail_json_raw(const char *s, size_t len, char **raw, size_t *rawlen,
    long long *size_est)
{
	json_t		*root, *r, *se;
	bool		 ok = false;

	*raw = NULL;
	*rawlen = 0;
	*size_est = -1;
	if ((root = parse(s, len)) == NULL || !json_is_object(root))
		goto out;
	se = json_object_get(root, "sizeEstimate");
	if (json_is_integer(se) && json_integer_value(se) >= 0)
		*size_est = json_integer_value(se);
	r = json_object_get(root, "raw");
	if (r == NULL) {
		ok = true;		/* format=minimal: the size only */
		goto out;
	}
	if (!json_is_string(r))
		goto out;
	*raw = xmalloc(json_string_length(r) + 1);
	if (!b64url_decode(json_string_value(r), json_string_length(r), *raw,
	    rawlen)) {
		free(*raw);
		*raw = NULL;
		goto out;
	}
	ok = true;
out:
	json_decref(root);
	return ok;
}

static char *
dump(json_t *v)
{
	char	*s, *out;

	if (v == NULL)
		return NULL;		/* a string that is not UTF-8 */
	if ((s = json_dumps(v, JSON_COMPACT)) == NULL)
		fatal("out of memory");
	json_decref(v);
	out = xstrdup(s);
	free(s);
	return out;
}

char *
gmail_json_import_meta(const char *const *ids, size_t n, bool unread)
{
	json_t	*o = json_object(), *a = json_array();
	size_t	 i;

	for (i = 0; i < n; i++)
		if (json_array_append_new(a, json_string(ids[i])) == -1) {
			json_decref(a);
			json_decref(o);
			return NULL;
		}
	if (unread)
		json_array_append_new(a, json_string("UNREAD"));
	json_object_set_new(o, "labelIds", a);
	return dump(o);
}

char *
gmail_json_label_new(const char *name)
{
	/* Shown in the label list and in message lists, as one made in
	 * Gmail's settings is. */
	return dump(json_pack("{s:s, s:s, s:s}", "name", name,
	    "labelListVisibility", "labelShow",
	    "messageListVisibility", "show"));
}
