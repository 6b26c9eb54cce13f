/*
 * migrate — `pgrelay migrate`: applies migrations to each service primary. (Being written.)
 */
#include <stdio.h>

#include "commands.h"

int migrate_command(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "pgrelay migrate: not available in this build yet\n");
	return 2;
}
