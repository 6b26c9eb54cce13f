/*
 * cancel_conn — a CancelRequest sent to a PostgreSQL server on a connection of its own (fire and
 * forget: connect, send the 16 bytes, wait for the server to close, or give up after 5 s).
 *
 * Owns: those connections (Runtime.cancels) and the count of cancels forwarded.
 */
#ifndef PGRELAY_CANCEL_CONN_H
#define PGRELAY_CANCEL_CONN_H

#include <stdint.h>
#include <sys/socket.h>

#include "types.h"

/* Sends a CancelRequest for (pid, key) to the server at addr; who names it in the log. */
void cancel_conn_send(Runtime *rt, const struct sockaddr *addr, socklen_t addr_len, uint32_t pid, uint32_t key,
		      const char *who);
/* Drops cancel connections still in flight (at exit). */
void cancel_conn_free_all(Runtime *rt);

#endif
