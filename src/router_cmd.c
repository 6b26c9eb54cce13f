/*
 * router_cmd — `pgrelay route`: explains where a statement would go. (Being written.)
 */
#include <stdio.h>

#include "commands.h"

int route_command(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "pgrelay route: not available in this build yet\n");
	return 2;
}
