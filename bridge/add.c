/*
 * `popbridge add`: set up an account in one step (issue 3).  Not written
 * yet; this stub keeps the command table and the build in place.
 */
#include <stdio.h>
#include <sysexits.h>

#include "bridge.h"

int
cmd_add(struct globals *g, int argc, char **argv)
{
	(void)g;
	(void)argc;
	(void)argv;
	fprintf(stderr, "popbridge: add: not implemented yet\n");
	return EX_SOFTWARE;
}
