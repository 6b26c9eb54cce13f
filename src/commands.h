/*
 * commands — the subcommands of the pgrelay binary besides running the proxy:
 *   pgrelay route -c FILE [options] 'SQL'    where a statement would go, and why (router)
 *   pgrelay migrate -c FILE [--status] [--dir DIR]
 *                                            apply migrations/<service>/NNNN_*.sql (migrate)
 * Each returns the process exit status.
 */
#ifndef PGRELAY_COMMANDS_H
#define PGRELAY_COMMANDS_H

int route_command(int argc, char **argv);
int migrate_command(int argc, char **argv);

#endif
