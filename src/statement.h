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

#endif
