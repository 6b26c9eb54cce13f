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
/* ReadyForQuery 'I' of the client's own request is about to reach it: bump what its transaction
 * wrote. Returns a handle to wait for (done(owner) follows), or NULL when done already. */
struct CacheBump *statement_cache_commit(Client *c, Server *s, char tx_status, void (*done)(void *owner),
					 void *owner);
/* A CommandComplete of the client's transaction with tag ROLLBACK: its writes never happened. */
void statement_cache_rolled_back(Client *c);

#endif
