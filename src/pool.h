/*
 * pool — server connections per (backend, user), a backend being a service's primary or one of its
 * replicas: idle/active/opening lists, the FIFO of clients
 * waiting for a connection, and the periodic upkeep (min connections, idle_timeout,
 * server_lifetime, query_wait_timeout).
 *
 * Owns: which server a client gets and when, how many connections exist, the server parameters
 * shown to clients at login, and applying new pool settings on reload.
 */
#ifndef PGRELAY_POOL_H
#define PGRELAY_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "pool_types.h"

/*
 * Finds or creates the pool of a service's primary (replica -1) or replica for user; NULL if the
 * service has no credentials usable for user.
 */
Pool *pool_get(Runtime *rt, const ConfigService *svc, int replica, const char *user, const char *user_password);
int pool_server_count(const Pool *p);

/* w needs a server: granted at once when one is idle, otherwise queued FIFO. */
void pool_request_server(Pool *p, PoolWaiter *w);
/* w stops waiting (it left); nothing if it was not waiting. */
void pool_cancel_wait(PoolWaiter *w);
/* w needs the pool's server parameters (to finish a client's login). */
void pool_wait_login(Pool *p, PoolWaiter *w);

/* RESUME: hand servers to the clients that waited while the pool was paused. */
void pool_resume(Pool *p);
/* Periodic upkeep of every pool; called by the janitor each second. */
void pool_janitor(Runtime *rt);
/* Applies a newly loaded Config to existing pools. */
void pool_apply_config(Runtime *rt, Config *cfg);
void pool_free(Pool *p);

#endif
