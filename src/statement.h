/*
 * statement — the handling of a logged-in client's messages (see statement.c).
 */
#ifndef PGRELAY_STATEMENT_H
#define PGRELAY_STATEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "relay.h"

/* The relay callback for a logged-in client (state IDLE or ACTIVE). */
RelayAction statement_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail);

/* The replica serving a read died before answering: send the read (s->retry) elsewhere. */
void statement_retry(Client *c, Server *s);
/* The replica a client waits for refused connections: choose again. */
void statement_reroute_waiter(Client *c);
/* Lets go of the client's server between transactions (it goes back to its pool). */
void statement_release(Client *c);
/* Read-your-writes: the WAL position of the client's last write commit on service (0: none). */
uint64_t statement_ryw_lsn(const Client *c, const char *service);
void statement_note_commit(Client *c, const char *service, uint64_t lsn);

/* The query this client waited for (an identical cacheable one) finished: look at it again. */
void statement_cache_wake(Client *c);
/* The server's ReadyForQuery for the client's own request: a fill of the cache ends here. */
void statement_cache_ready(Client *c, Server *s);
/* A reply of the server to the client's own request: CommandComplete, EmptyQueryResponse,
 * PortalSuspended, ErrorResponse (what its statements did to the transaction, txtrack). */
void statement_server_reply(Client *c, Server *s, uint8_t type, const uint8_t *body, size_t len);
/* ReadyForQuery of the client's own request is about to reach it (status tx_status): the request
 * is over; what committed is invalidated first. Returns a handle to wait for (done(owner) follows)
 * when Redis must answer before the client may see it, else NULL. */
struct CacheBump *statement_ready(Client *c, Server *s, char tx_status, void (*done)(void *owner), void *owner);
/* The client goes away: what its requests in flight and open transaction may have written is
 * invalidated (a COMMIT may have reached the server). */
void statement_client_gone(Client *c);

#endif
