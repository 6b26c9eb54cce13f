/*
 * cache — the result cache at run time: L1 store (cache_l1), table versions, entries, lookups,
 * single-flight, filling from a server's reply, and invalidation when writes commit.
 *
 * Owns: the cache key (SHA-256 of service, database, role, search_path, the session parameters
 * that change results, the statement text and, for the extended protocol, parameters and format
 * codes), the entry format (versions read before the query was sent, then the reply bytes), the
 * version counters per (service, schema, table) plus one per service for "everything", and the
 * counters the console and metrics publish.
 *
 * An entry is served only while every version it recorded is still current, so a result that raced
 * a commit (its query ran before the commit, it was stored after) is refused, and a write
 * invalidates by bumping versions, never by finding entries. Knows nothing of sockets: statement.c
 * and server.c call it with bytes.
 */
#ifndef PGRELAY_CACHE_H
#define PGRELAY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cache_l1.h"
#include "cachepolicy.h"
#include "hashmap.h"
#include "list.h"

typedef struct Runtime Runtime;
typedef struct Client Client;

typedef struct CacheStats {
	uint64_t lookups, hits, misses, stores, store_refused, stale_refused, waits, invalidations,
		bumps_all, replica_not_stored, bypassed, wal_invalidations;
} CacheStats;

struct WalListener;

typedef struct Cache {
	Runtime *rt;
	CacheL1 *l1;
	HashMap versions;  /* TableVersion by (service, schema, table); "" "" = the whole service */
	HashMap flights;   /* CacheFlight by key: misses being filled */
	struct WalListener *wal; /* cache.wal_listener: writes that bypass pgrelay */
	char *wal_service;
	CacheStats stats;
} Cache;

/* A miss being filled: the first client runs the query, the others wait for its result. */
typedef struct CacheFlight {
	CacheKey key;
	Client *leader;
	List waiters; /* Client.cache_wait_node */
} CacheFlight;

/* What a client filling the cache keeps while its query runs (Client.cache_fill). */
typedef struct CacheFill {
	bool active;
	bool failed;         /* a reply that cannot be stored (error, notice, too big) */
	CacheKey key;
	int64_t ttl_ms;
	size_t n_versions;
	uint64_t versions[CACHE_MAX_TABLES + 1]; /* the service's, then each dependency's */
	Buf reply;
	CacheFlight *flight;
} CacheFill;

typedef enum {
	CACHE_MISS = 0, /* run the query (a fill was started when the client may fill) */
	CACHE_HIT,      /* reply and len hold the bytes to send */
	CACHE_WAIT,     /* an identical query is running: wait for it (statement_cache_wake) */
} CacheLookup;

Cache *cache_new(Runtime *rt);
void cache_free(Cache *cache);

/* The key of a statement for client c on service: protocol 'Q' (part = the query text) or 'E'
 * (part = the Parse body after the name, part2 = the Bind body after the portal and statement
 * names: parameter formats and values, result formats; describe: a Describe of the portal). */
void cache_key_build(const Client *c, const char *service, const char *search_path, char protocol,
		     const void *part, size_t part_len, const void *part2, size_t part2_len, bool describe,
		     CacheKey *key);

/*
 * Looks a key up for client c. On HIT, *reply and *len are the stored reply (valid until the next
 * cache call). On MISS with fill non-NULL, fill is started (versions recorded now, before the
 * query is sent). On WAIT, the client is queued on the flight.
 */
CacheLookup cache_lookup(Cache *cache, Client *c, const char *service, const CacheDecision *d, const CacheKey *key,
			 const uint8_t **reply, size_t *len);

/* A reply message forwarded to a filling client (whole message). */
void cache_fill_message(Cache *cache, Client *c, uint8_t type, const uint8_t *msg, size_t total);
/* ReadyForQuery reached the filling client: store (unless failed) and wake the waiters. */
void cache_fill_finish(Cache *cache, Client *c, const char *service, bool from_replica);
/* The fill cannot finish (server lost, client gone): wake the waiters, store nothing. */
void cache_fill_abort(Cache *cache, Client *c);
/* A waiting client goes away. */
void cache_wait_cancel(Cache *cache, Client *c);

/* Writes committed on service: bump the versions (local). */
void cache_invalidate(Cache *cache, const char *service, const CacheWrites *w);

#endif
