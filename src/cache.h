/*
 * cache — the result cache at run time: L1 store (cache_l1), table versions, entries, lookups,
 * single-flight, filling from a server's reply, and invalidation when writes commit.
 *
 * Owns: the cache key (SHA-256 of the services' catalogs, database, role, search_path, the session parameters
 * that change results, the statement text and, for the extended protocol, parameters and format
 * codes), what goes into an entry (versions read before the query was sent, the names, the reply
 * bytes: laid out and checked by cache_entry), the version counters per (service, schema, table)
 * plus one per service for "everything" — local ones, and with Redis the shared ones there (INCR,
 * PUBLISH, MGET), L2 entries in Redis (signed; refused unless authentic and well-formed), the
 * bookkeeping of bumps that did not reach Redis (a new epoch for the service once it answers),
 * the WAL listener's commits (bumped in Redis too; its slot confirmed once Redis has them), the
 * catalog loader of the services (catalog_loader: a Catalog per service primary, relearned after
 * DDL through pgrelay and every cache.catalog_refresh), what a write changes according to it
 * (expanded at commit), and the counters the console and metrics publish.
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
#include "cache_entry.h"
#include "cache_l1.h"
#include "cachepolicy.h"
#include "hashmap.h"
#include "list.h"
#include "loop.h"
#include "params.h"

typedef struct Runtime Runtime;

typedef struct CacheStats {
	uint64_t lookups, hits, misses, stores, store_refused, stale_refused, waits, invalidations,
		bumps_all, replica_not_stored, bypassed, wal_invalidations;
	/* L2 (Redis) */
	uint64_t fast_hits, l2_hits, l2_stores, redis_lookups, redis_errors, redis_bumps, remote_invalidations;
	uint64_t l2_refused; /* entries read from Redis that failed authentication or validation */
	uint64_t outage_bypassed; /* lookups passed through because Redis was unusable or a bump was unconfirmed */
} CacheStats;

struct RedisClient;
struct WalListener;
struct CatalogLoader;
struct CacheSigner;
struct event;

/* A service whose versions could not be bumped in Redis: it gets a new epoch there as soon as
 * Redis answers (failures counts them; a new epoch covers those before it was sent). */
typedef struct CacheOutage {
	char *service;
	uint64_t id;
	uint64_t failures;
	uint64_t failures_sent; /* failures when the epoch bump under way was sent */
	bool in_flight;
} CacheOutage;

/* A WAL commit whose bump is on its way to Redis (the slot is confirmed up to the first one not
 * done). */
typedef struct CacheWalPending {
	uint64_t lsn;
	uint8_t state; /* cache.c: pending, done, failed (until a new epoch covers it) */
} CacheWalPending;

typedef struct Cache {
	Runtime *rt;
	CacheL1 *l1;
	HashMap versions;  /* TableVersion by (service, schema, table); "" "" = the whole service */
	HashMap flights;   /* CacheFlight by key: misses being filled */
	struct evp_md_ctx_st *md; /* SHA-256 of the keys */
	struct evp_md_st *sha256;
	CacheKey shape_key;       /* the last key cache_key_build made, and the form of its statement */
	CacheShape shape;
	struct RedisClient *redis; /* shared versions (and L2 with a signing key); NULL: no cache.redis */
	bool redis_live;           /* Redis's versions count (the last state callback said up) */
	uint64_t redis_gen;        /* changes with redis_live: L1 holds entries of one kind of versions */
	struct CacheSigner *signer; /* cache.redis.signing_key; NULL: no entries in Redis */
	int64_t refused_log_ms;     /* last log line about a refused L2 entry */
	uint64_t refused_unlogged;
	CacheOutage *outages;       /* services whose versions could not be bumped in Redis */
	size_t n_outages;
	uint64_t outage_ids;
	LoopTimer outage_timer;
	bool closing;
	struct WalListener *wal; /* cache.wal_listener: writes that bypass pgrelay */
	char *wal_service;
	CacheWalPending *wal_pending; /* in commit order; wal_pending[0] has sequence wal_first_seq */
	size_t n_wal_pending, cap_wal_pending;
	uint64_t wal_first_seq;
	struct CatalogLoader *catalogs; /* every service's catalog (NULL only while the cache is off) */
	uint64_t catalog_gen;      /* the services' catalogs (fingerprints) now: in every key */
	bool catalog_gen_dirty;    /* a catalog came or went: catalog_gen is to be computed again */
	uint64_t instance_id;      /* random: tells this instance's own invalidation messages apart */
	uint64_t catalog_refreshes; /* reloads asked: DDL committed through this instance (or another one
				     * sharing Redis), or the WAL naming a relation the catalog does not hold */
	CacheStats stats;
} Cache;

/* A miss being filled: the first client runs the query, the others wait for its result. */
typedef struct CacheFlight {
	CacheKey key;
	struct CacheWaiter *leader;
	List waiters; /* CacheWaiter.wait_node */
} CacheFlight;

/* What a waiter filling the cache keeps while its query runs (CacheWaiter.fill). */
typedef struct CacheFill {
	bool active;
	bool failed;         /* a reply that cannot be stored (error, notice, too big) */
	bool shared;         /* the versions are Redis's: the entry may go to L2 too */
	uint64_t gen;        /* Cache.redis_gen when the versions were read */
	CacheKey key;
	int64_t ttl_ms;
	size_t n_versions;
	uint64_t versions[CACHE_MAX_TABLES + 1]; /* the service's, then each dependency's */
	Buf names;           /* service\0 then schema\0table\0 per dependency (the entry's header) */
	Buf reply;
	CacheFlight *flight;
} CacheFill;

typedef enum {
	CACHE_MISS = 0, /* run the query (a fill was started when the client may fill) */
	CACHE_HIT,      /* reply and len hold the bytes to send */
	CACHE_WAIT,     /* an identical query is running: wait for it (CacheWaiter.wake) */
	CACHE_PENDING,  /* Redis was asked: CacheWaiter.wake, then look the message up again */
	CACHE_MISS_BYPASS, /* (answers only) run the query, store nothing */
} CacheLookup;

/* The answer of an asynchronous lookup, kept on the client until its message is looked at again. */
typedef struct CacheAnswer {
	bool ready;
	CacheLookup kind;
	CacheKey key;
	Buf reply;
} CacheAnswer;

/*
 * One who looks results up (a client session has one from its first lookup on): what the cache keeps for it between a
 * lookup and its answer, and how it is woken (wake: look at the message again). The cache never
 * looks past it.
 */
typedef struct CacheWaiter CacheWaiter;
struct CacheWaiter {
	CacheFill fill;
	struct CacheRequest *req; /* a lookup waiting for Redis */
	CacheAnswer answer;       /* ... and its answer */
	CacheFlight *wait;        /* the identical query it waits for */
	ListNode wait_node;       /* on wait->waiters */
	void (*wake)(CacheWaiter *w);
	void *owner; /* the waiter's (its session): the cache does not look at it */
};

/* Who a key is for: a result depends on the database, the role and every session setting. */
typedef struct CacheSession {
	const char *database, *user;
	const char *search_path; /* NULL: the server's default */
	const ParamList *params;
} CacheSession;

CacheWaiter *cache_waiter_new(void (*wake)(CacheWaiter *w), void *owner);
void cache_waiter_free(CacheWaiter *w); /* NULL is fine */

/* A commit's invalidation on its way to Redis. */
typedef struct CacheBump {
	struct Cache *cache;
	int pending;
	void (*done)(void *owner);
	void *owner; /* NULL: nobody waits any more */
	/* cache.c's own: whether every INCR succeeded, and what to tell then */
	bool failed;
	char service[64];
	void (*finished)(struct Cache *cache, uint64_t arg, bool ok);
	uint64_t finished_arg;
} CacheBump;

Cache *cache_new(Runtime *rt);
void cache_free(Cache *cache);
/* A reloaded configuration (rt->config already is cfg): L1's bound (L1 made or dropped), the
 * catalogs' services and refresh interval. Cached results stay: cache_drop_service drops those a
 * change concerns. */
void cache_reconfigure(Cache *cache, const Config *cfg);
/* The configuration changed what service's results depend on (its server, routing, cache rules):
 * its epoch is bumped (locally, and in Redis as a commit's), so none of its entries is served. */
void cache_drop_service(Cache *cache, const char *service);
/* Before the cache is freed with clients still there (turned off by a reload): w lets go of it
 * (waits, fills, Redis lookups) and is woken to look at its message again. */
void cache_release_waiter(Cache *cache, CacheWaiter *w);

/*
 * The catalog the cache policy uses for service (cachepolicy_decide): the loader's current one,
 * or NULL when none is loaded yet (or ever: no primary user), or when DDL committed through this
 * instance since the last load began (until the refresh it asked for has loaded).
 */
const Catalog *cache_catalog(Cache *cache, const char *service);

/* The key of a statement for who (remembered with its form, CacheShape, for the lookup of
 * this key that follows: an L2 entry's reply must have that form): protocol 'Q' (part = the query text) or 'E' (part = the
 * Parse body after the name, part2 = the Bind body after the portal and statement names:
 * parameter formats and values, result formats; describe: a Describe of the portal). The service
 * is not in it (nor the configuration's: a reload drops what it changes, cache_drop_service); an
 * entry names its service, which a lookup checks. */
void cache_key_build(Cache *cache, const CacheSession *who, char protocol, const void *part, size_t part_len,
		     const void *part2, size_t part2_len, bool describe, CacheKey *key);

/*
 * Looks a key up for w. On HIT, *reply and *len are the stored reply (valid until the next
 * cache call). On MISS with fill non-NULL, fill is started (versions recorded now, before the
 * query is sent). On WAIT, w is queued on the flight.
 */
CacheLookup cache_lookup(Cache *cache, CacheWaiter *w, const char *service, const CacheDecision *d, const CacheKey *key,
			 const uint8_t **reply, size_t *len);

/*
 * The fast path of a hit, before any parsing: the entry under key, if L1 has it and every version
 * it names is current (local versions: only when Redis is not configured or down). The key must
 * come from cache_key_build.
 */
bool cache_fast_hit(Cache *cache, CacheWaiter *w, const CacheKey *key, const uint8_t **reply, size_t *len,
		    const char **service);

/* A reply message forwarded to a filling waiter (whole message). */
void cache_fill_message(Cache *cache, CacheWaiter *w, uint8_t type, const uint8_t *msg, size_t total);
/* ReadyForQuery reached the filling waiter: store (unless failed, or read from a replica that
 * may not have replayed the last invalidation: replica >= 0) and wake the waiters. */
void cache_fill_finish(Cache *cache, CacheWaiter *w, const char *service, int replica);
/* The fill cannot finish (server lost, waiter gone): wake the waiters, store nothing. */
void cache_fill_abort(Cache *cache, CacheWaiter *w);
/* A waiting waiter goes away. */
void cache_wait_cancel(Cache *cache, CacheWaiter *w);

/* Writes committed on service (as cachepolicy_writes noted them): with what service's catalog says
 * they also change (cachepolicy_writes_expand), bump the versions (local). */
void cache_invalidate(Cache *cache, const char *service, const CacheWrites *w);
/*
 * Writes committed on service (as cachepolicy_writes noted them): with what service's catalog says
 * they also change, bump the versions locally and, with Redis up, in Redis (INCR, then PUBLISH for
 * the other instances); DDL among them asks for service's catalog again. Returns a handle when
 * Redis must answer first: done(owner) is called once it has (or failed); NULL when nothing is to
 * wait for.
 */
CacheBump *cache_invalidate_shared(Cache *cache, const char *service, const CacheWrites *w, void (*done)(void *owner),
				   void *owner);
/* The owner of a bump goes away: done is not called. */
static inline void cache_bump_forget(CacheBump *b) { b->owner = NULL; }
/* w goes away: an asynchronous lookup's answer is dropped. */
void cache_waiter_gone(Cache *cache, CacheWaiter *w);

#endif
