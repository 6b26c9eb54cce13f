/*
 * cancel — query cancellation: the map from the BackendKeyData pgrelay hands each client to that
 * client, and a client's CancelRequest passed on (cancel_conn) to the PostgreSQL server serving
 * that client right now.
 */
#ifndef PGRELAY_CANCEL_H
#define PGRELAY_CANCEL_H

#include <stdint.h>
#include <sys/socket.h>

#include "types.h"

/* Gives c a fresh random (pid, key) and registers it. */
void cancel_map_add(CancelMap *m, Client *c, uint32_t *pid, uint32_t *key);
void cancel_map_remove(CancelMap *m, uint32_t pid, Client *c);
Client *cancel_map_find(const CancelMap *m, uint32_t pid);
void cancel_map_free(CancelMap *m);

/* A client's CancelRequest arrived on a new connection. */
void cancel_handle_request(Runtime *rt, uint32_t pid, uint32_t key, const char *from);

#endif
