/*
 * statement_local — what pgrelay answers a logged-in client itself, without a server or in place
 * of one: errors in order with the replies its server still owes (PostgreSQL's rules for batches
 * and transactions), the BEGIN it holds until the transaction's first statement picks a service,
 * COMMIT/ROLLBACK of a transaction that never reached a server, and the Parse/Close/Sync/Flush a
 * client sends between transactions (transaction pooling).
 *
 * Owns: Client.tx_local, held_begin (with statement.c, which sends it), unnamed_local,
 * portal_local, local_sql, skip_to_sync (set).
 */
#ifndef PGRELAY_STATEMENT_LOCAL_H
#define PGRELAY_STATEMENT_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "session.h"
#include "relay.h"
#include "sqlclass.h"

/* Queues bytes pgrelay writes itself for the client. */
void statement_local_send(Client *c, const Buf *b);
/* A bodyless message (or ReadyForQuery when status is not 0) to the client. */
void statement_local_simple(Client *c, char type, int status);
/*
 * An error pgrelay reports for the client's statement, as PostgreSQL would: after a simple Query
 * with ReadyForQuery; in the extended protocol the rest of the batch is dropped up to Sync. In a
 * transaction the transaction fails ('E') until the client ends it. rc: the relay of the client's
 * message (NULL outside one).
 */
void statement_local_error(Client *c, RelayCtx *rc, uint8_t type, const char *sqlstate, const char *message,
			   const char *hint);
/*
 * Between transactions (no server held, prepared statements tracked): a Parse of a named statement
 * some server already accepted, Close of a statement name, Flush and Sync are answered here.
 * Returns 0 when the message needs a server.
 */
RelayAction statement_local_without_server(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail);
/*
 * While the client holds no server (or pgrelay failed its transaction): its BEGIN (held), a
 * COMMIT/ROLLBACK that never reached a server, and errors of a failed transaction. sql/len: the
 * statement's text (NULL within a batch), a: its analysis. Returns 0 when a server is needed.
 */
RelayAction statement_local_answer(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				   const char *sql, size_t len, const SqlAnalysis *a);
/* The client's Sync ended the batch: no BEGIN/COMMIT of it is pending here. */
void statement_local_batch_end(Client *c);

#endif
