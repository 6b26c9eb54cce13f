/*
 * balance — which replica of a service serves a read: one the health checker calls usable (up,
 * streaming, not lagging), that has replayed the client's own last commit on that service
 * (read-your-writes), and that did not just fail a connection or a read; spread round-robin or to
 * the one with the fewest reads in flight (services.X.balance).
 */
#ifndef PGRELAY_BALANCE_H
#define PGRELAY_BALANCE_H

#include <stdint.h>

#include "config.h"
#include "types.h"

/* A replica index for a read needing at least min_lsn replayed, or -1: use the primary. */
int balance_choose_replica(Runtime *rt, const ConfigService *svc, uint64_t min_lsn);
/* Keeps reads off a replica for ms (it refused a connection or died under a read). */
void balance_avoid(Runtime *rt, const ConfigService *svc, int replica, int64_t ms);
/* Reads in flight on a replica: +1 when a client gets one of its connections, -1 when it lets go. */
void balance_track(Runtime *rt, const ConfigService *svc, int replica, int delta);
void balance_free(Runtime *rt);

#endif
