/*
 * statement — the handling of a logged-in client's messages (see statement.c).
 */
#ifndef PGRELAY_STATEMENT_H
#define PGRELAY_STATEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "relay.h"

/* The relay callback for a logged-in client (state IDLE or ACTIVE). */
RelayAction statement_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail);

/* The replica serving a read died before answering: send the read (server_retry_request) elsewhere.
 * False when it cannot be sent again (the client's read buffer has no room for it). */
bool statement_retry(Client *c, Server *s);
/* The replica a client waits for refused connections: choose again. */
void statement_reroute_waiter(Client *c);
/* Lets go of the client's server between transactions (it goes back to its pool). */
void statement_release(Client *c);
/* Read-your-writes: the WAL position of the client's last write commit on service (0: none). */
uint64_t statement_ryw_lsn(const Client *c, const char *service);
void statement_note_commit(Client *c, const char *service, uint64_t lsn);

#endif
