/*
 * admin — the admin console: the virtual database "pgrelay" (alias "pgbouncer") that users named
 * in admin.users (every command) or admin.stats_users (SHOW only) reach with psql over the normal
 * listener, simple query protocol.
 *
 * Owns: the console's commands — PgBouncer's (SHOW POOLS / CLIENTS / SERVERS / STATS /
 * STATS_TOTALS / STATS_AVERAGES / DATABASES / USERS / CONFIG / LISTS / MEM / VERSION / HELP,
 * PAUSE, RESUME, RELOAD, RECONNECT, KILL, DISABLE, ENABLE, SHUTDOWN, SET) with PgBouncer 1.18's
 * column names, order and types, and pgrelay's own (SHOW ROUTES / BACKENDS / CACHE / PREPARED) —
 * and their result sets. Reads the runtime's state; never blocks the loop (PAUSE answers when the
 * pools are quiet, from a timer).
 */
#ifndef PGRELAY_ADMIN_H
#define PGRELAY_ADMIN_H

#include <stdbool.h>

#include "client.h"
#include "relay.h"

typedef enum {
	ADMIN_NONE = 0,
	ADMIN_STATS, /* admin.stats_users: SHOW commands */
	ADMIN_FULL,  /* admin.users: everything */
} AdminRole;

/* Whether a database name is the console's ("pgrelay", "pgbouncer") and not a configured one. */
bool admin_is_console(const Config *cfg, const char *database);
/* What user may do in the console. */
AdminRole admin_role(const Config *cfg, const char *user);
/* Finishes the login of a console client (authenticated). */
void admin_login(Client *c);
/* The relay callback for a logged-in console client. */
RelayAction admin_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				 size_t avail);
/* The console client goes away (a PAUSE it waits for stops waiting). */
void admin_client_gone(Client *c);
/* Frees the console's state (runtime exit). */
void admin_free(Runtime *rt);
/* Whether client databases of service svc are disabled (DISABLE db): new logins refused. */
bool admin_database_disabled(const Runtime *rt, const char *database);
/* The console as the client module reaches it (Runtime.console). */
const ConsoleOps *admin_console_ops(void);

#endif
