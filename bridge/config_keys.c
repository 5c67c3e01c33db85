/*
 * The config loader's base (config_int.h): its error message, "file:line:
 * message" with the file and line of the setting at fault, and its check
 * of a group's keys against a table.  Every config_*.c file reports
 * through these; they call nothing of the loader's but config_read.c's
 * setting_file, so the loader's files call down to here, never back.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libconfig.h>

#include "bridge.h"
#include "config_int.h"

enum result
vcfail(struct loader *ld, enum result r, const char *file, int line,
    const char *fmt, va_list ap)
{
	char	*msg = xvprintf(fmt, ap);

	free(ld->cause);
	ld->cause = xprintf("%s:%d: %s", file, line, msg);
	free(msg);
	return r;
}

enum result
cfail(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	va_list		 ap;
	char		*file = setting_file(ld, s);
	enum result	 r;

	va_start(ap, fmt);
	r = vcfail(ld, RES_CONFIG, file, s != NULL ?
	    config_setting_source_line(s) : 0, fmt, ap);
	va_end(ap);
	free(file);
	return r;
}

enum result
cfail_as(struct loader *ld, enum result r, const config_setting_t *s,
    const char *fmt, ...)
{
	va_list		 ap;
	char		*file = setting_file(ld, s);

	va_start(ap, fmt);
	r = vcfail(ld, r, file, s != NULL ? config_setting_source_line(s) : 0,
	    fmt, ap);
	va_end(ap);
	free(file);
	return r;
}

/* The types setting s is, as CK_ bits (none for a float, which no key
 * takes).  An empty list "( )" and an array "[ ]" are alike. */
static int
type_bits(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_STRING:
		return CK_STR;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return CK_INT;
	case CONFIG_TYPE_BOOL:
		return CK_BOOL;
	case CONFIG_TYPE_GROUP:
		return CK_GROUP;
	case CONFIG_TYPE_LIST:
		return CK_LIST;
	case CONFIG_TYPE_ARRAY:
		return CK_ARRAY | CK_LIST;
	default:
		return 0;
	}
}

/* A key's types in words, when its table gives none: its first type's. */
static const char *
type_words(int types)
{
	static const char *const words[] = { "a string", "an integer",
		"true or false", "a group { ... }", "a list ( ... )",
		"an array [ ... ]" };
	size_t	 i;

	for (i = 0; i < sizeof words / sizeof words[0]; i++)
		if (types & (1 << i))
			return words[i];
	return "of no type";
}

enum result
config_check_keys(struct loader *ld, const config_setting_t *group,
    const struct config_key *keys, const char *where)
{
	const config_setting_t	*s;
	const struct config_key	*k;
	int			 i, n = config_setting_length(group);

	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(group, (unsigned int)i);
		for (k = keys; k->name != NULL; k++)
			if (strcmp(k->name, config_setting_name(s)) == 0)
				break;
		if (k->name == NULL)
			return cfail(ld, s, "%sunknown key \"%s\"", where,
			    config_setting_name(s));
		if ((type_bits(s) & k->types) == 0)
			return cfail(ld, s, "%s\"%s\" must be %s", where,
			    k->name, k->want != NULL ? k->want : type_words(k->types));
	}
	for (k = keys; k->name != NULL; k++)
		if (k->required && config_setting_get_member(group, k->name) ==
		    NULL)
			return cfail(ld, group, "%smissing \"%s\"", where,
			    k->name);
	return RES_OK;
}

/* A string member, malloc'd; NULL if there is none. */
char *
config_get_string(const config_setting_t *group, const char *name)
{
	const char	*v;

	if (config_setting_lookup_string(group, name, &v) == CONFIG_TRUE)
		return xstrdup(v);
	return NULL;
}
