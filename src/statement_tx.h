/*
 * statement_tx — the client's transaction as its server runs it: what each request writes (for the
 * result cache's invalidation) and does to the transaction (savepoints, commit, rollback), told to
 * txtrack and to the session settings in the order the server runs the requests; at ReadyForQuery,
 * what committed is invalidated before the client hears of the commit.
 *
 * Owns: Client.tx, tx_service, unnamed_parse, unnamed_unread, portal.
 */
#ifndef PGRELAY_STATEMENT_TX_H
#define PGRELAY_STATEMENT_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

/* A request the client sends to s (in order): what it writes and does to the transaction.
 * forwarded_sync: a Sync that reaches the server (ends an extended-protocol batch). */
void statement_tx_note_request(Client *c, Server *s, bool forwarded_sync, uint8_t type, const uint8_t *msg,
			       size_t total, size_t avail);
/* A reply of the server to the client's own request: CommandComplete, EmptyQueryResponse,
 * PortalSuspended, ErrorResponse. */
void statement_tx_reply(Client *c, Server *s, uint8_t type, const uint8_t *body, size_t len);
/* ReadyForQuery of the client's own request is about to reach it (status tx_status): the request
 * is over; what committed is invalidated first. Returns a handle to wait for (done(owner) follows)
 * when Redis must answer before the client may see it, else NULL. */
struct CacheBump *statement_tx_ready(Client *c, Server *s, char tx_status, void (*done)(void *owner), void *owner);
/* The client goes away: what its requests in flight and open transaction may have written is
 * invalidated (a COMMIT may have reached the server). */
void statement_tx_client_gone(Client *c);
/* The cache was just turned on (reload): an open transaction of the client, whose writes were not
 * analyzed, invalidates its whole service when it ends. */
void statement_tx_cache_started(Client *c);

#endif
