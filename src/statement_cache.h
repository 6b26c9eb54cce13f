/*
 * statement_cache — the result cache seen from a client's messages: answers a cached Query or
 * extended-protocol batch (from L1 without parsing when it can), waits for an identical query
 * already running or for Redis, or starts filling the cache with the client's query; the fill
 * ends at its ReadyForQuery.
 *
 * Owns: Client.cache (with cache.c).
 */
#ifndef PGRELAY_STATEMENT_CACHE_H
#define PGRELAY_STATEMENT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "relay.h"

/*
 * Before a message is routed: answers it from the cache, or waits (RELAY_STOP), or starts a fill.
 * Returns 0 to go on as usual.
 */
RelayAction statement_cache_message(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail);
/* The server's ReadyForQuery for the client's own request: a fill of the cache ends here. */
void statement_cache_ready(Client *c, Server *s);

#endif
