/*
 * Result classes (bridge.h) and what they become at the edge: the one
 * place where they turn into sysexits(3) exit codes, which of two is the
 * worse, and their words for a person.
 */
#include <sysexits.h>

#include "bridge.h"

int
result_exit_code(enum result r)
{
	switch (r) {
	case RES_OK:
		return EX_OK;
	case RES_MSG:
		return EX_DATAERR;
	case RES_TEMP:
		return EX_TEMPFAIL;
	case RES_AUTH:
		return EX_NOPERM;
	case RES_CONFIG:
		return EX_CONFIG;
	}
	return EX_SOFTWARE;
}

/* The more serious of two results; it decides the exit code. */
enum result
result_worst(enum result a, enum result b)
{
	static const int rank[] = { [RES_OK] = 0, [RES_MSG] = 1, [RES_TEMP] = 2,
		[RES_AUTH] = 3, [RES_CONFIG] = 4 };

	return rank[a] >= rank[b] ? a : b;
}

/* For `status`: what a result class means. */
const char *
result_words(int r)
{
	switch (r) {
	case RES_OK:
		return "ok";
	case RES_MSG:
		return "failed messages";
	case RES_TEMP:
		return "temporary failure";
	case RES_AUTH:
		return "authentication failure";
	case RES_CONFIG:
		return "configuration error";
	}
	return "unknown";
}
