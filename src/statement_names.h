/*
 * statement_names — named prepared statements in transaction pooling: a client's names become
 * pgrelay-wide ones (pgrelay_<n>) that exist on whichever server connection the client holds
 * (Parse, Bind, Describe, Close, and PREPARE / EXECUTE / DEALLOCATE in SQL), re-created first on a
 * server that lacks them; the SQL a message runs (its own, or its named statement's); the byte
 * budget of a client's statements (proxy.max_client_prepared_memory). A statement that needs a
 * session pins the client to its server.
 *
 * Owns: Client.stmts (the names, with prepared.c), Client.pinned (set).
 */
#ifndef PGRELAY_STATEMENT_NAMES_H
#define PGRELAY_STATEMENT_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "relay.h"

/* Whether the client's named statements are renamed (transaction pooling with
 * max_prepared_statements). */
bool statement_names_tracking(const Client *c);
/* A Parse, Bind, Describe or Close going to the client's server, names rewritten. */
RelayAction statement_names_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail);
/* A Query going to the client's server (transaction pooling): PREPARE / EXECUTE / DEALLOCATE
 * names rewritten, statements that need a session pin the client. */
RelayAction statement_names_query(Client *c, RelayCtx *rc, const uint8_t *msg, size_t total, size_t avail);
/*
 * The SQL that decides where a message goes: a Query's text, a Parse's query, the query of the
 * named statement a Bind or Describe refers to. *sql stays NULL for messages that belong to a batch
 * under way. Returns 0, or RELAY_NEED_BODY / RELAY_ERROR.
 */
RelayAction statement_names_sql(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail,
				const char **sql, size_t *len);
/* A Parse of a named statement or a Query that may PREPARE would pass the client's budget: the
 * client got 54000 (true). */
bool statement_names_over_budget(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				 size_t avail);

#endif
