/*
 * stats — per-pool statistics like PgBouncer's SHOW STATS, latency histograms by service and
 * role, the periodic averages and stats log line, and the slow-query log.
 *
 * Owns: what counts as a query, a transaction and a wait, and the moment each is recorded:
 *   - query: a client request — a Query, or an extended-protocol batch up to its Sync — from the
 *     moment pgrelay takes it up for a server (or the cache) to the ReadyForQuery the client gets;
 *     waiting for a server is included (as in PgBouncer). A request answered from the result
 *     cache counts as a query too (and as a cached query); requests pgrelay answers itself
 *     (a held BEGIN, a lone Sync) do not count.
 *   - transaction: transaction pooling, a server linked to the client until the ReadyForQuery 'I'
 *     that releases it; session pooling (and pinned clients), from a request to each ReadyForQuery
 *     'I' that ends a transaction.
 *   - wait: a client queued in a pool until a server is linked to it (0 when one was idle); one
 *     server assignment per link.
 *   - bytes: received from / sent to clients (the client socket's counters), charged to the pool
 *     that served the request at its ReadyForQuery.
 * Times are microseconds on CLOCK_MONOTONIC (loop_now_us). Counters live in the Pool
 * (PoolStats, freed with it); histograms live in the runtime (Metrics) by (service, role) and
 * last for the process. admin.histograms: false skips the histograms only.
 *
 * Does not own: exposing them (http.c for /metrics, the admin console for SHOW STATS).
 */
#ifndef PGRELAY_STATS_H
#define PGRELAY_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stats_types.h"

typedef struct Runtime Runtime;
typedef struct Client Client;
typedef struct Server Server;
typedef struct Pool Pool;

/* Starts the period timer (after the Config is set); stats_reconfigure after a reload. */
void stats_start(Runtime *rt);
void stats_reconfigure(Runtime *rt);
void stats_stop(Runtime *rt);

/* ---- hooks ---- */

/* The client's message (type, msg, total, avail as in relay callbacks) is taken up for a server or
 * the cache: a request starts unless one is under way. */
void stats_request_begin(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail);
/* ... and the client is about to wait in a pool for a server. */
void stats_wait_begin(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail);
/* The pool links server s to the client (before its state changes). */
void stats_client_linked(Client *c, Server *s);
/* A ReadyForQuery of the client's request reaches the client (tx: its status byte). */
void stats_ready_for_query(Client *c, Server *s, char tx);
/* The client's request was answered from the result cache (service: the one it routed to). */
void stats_cache_hit(Client *c, const char *service);
/* The client goes away. */
void stats_client_closed(Client *c);

/* ---- readers ---- */

/* Every (service, role) seen so far. */
const StatsHistograms *stats_histograms(const Runtime *rt);
/* The histograms of (service, role), created on first use (the object the pools record into). */
StatsHistograms *stats_histograms_for(Runtime *rt, const char *service, bool replica);

#endif
