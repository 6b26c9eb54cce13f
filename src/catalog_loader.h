/*
 * catalog_loader — keeps a current Catalog (catalog.h) of each service's primary database, loaded
 * on the event loop through pgasync.
 *
 * Owns: per service with a primary user, one load at a time: connect (application_name
 * pgrelay-catalog, the primary's user/password, sslmode from services.X.tls like the health
 * checks), the catalog query (catalog_sql: one round trip, READ ONLY), the builder, and the
 * connection's close right after (nothing is kept open between loads); when loads happen: at
 * start, on catalog_loader_refresh (a call while a load runs makes one more load after it, however
 * many calls came), every refresh_ms after the last attempt, and after a failure with backoff
 * (1 s doubling to 60 s, never later than refresh_ms); the last good catalog while a load runs or
 * fails (a warning once per failure streak, an info line when it loads again); the callback for
 * every catalog that differs from the current one (same rows: no callback); the load counters.
 *
 * Does not own: what the catalogs are used for (the cache policy), when DDL happened (the caller
 * calls catalog_loader_refresh after a DDL statement's transaction committed).
 *
 * Services without a primary user (the pool logs in as each client) get no catalog: get returns
 * NULL for them, as for a service whose first load has not succeeded yet.
 */
#ifndef PGRELAY_CATALOG_LOADER_H
#define PGRELAY_CATALOG_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"

struct event_base;

typedef struct CatalogLoaderOptions {
	int64_t refresh_ms; /* reload this long after each attempt; 0: only at start, on demand, after failures */
	int64_t timeout_ms; /* one load (connect + query); 0: 30 s. Also the query's statement_timeout */
} CatalogLoaderOptions;

/* A new catalog for service (borrowed: catalog_ref it to keep it past the call), or NULL when the
 * service's catalog was dropped (service removed, or its host/port/dbname changed). The callback
 * runs from the loop; it may call catalog_loader_get/_refresh/_stats, not _reconfigure or _free. */
typedef void (*CatalogLoadedFn)(void *arg, const char *service, Catalog *catalog);

typedef struct CatalogLoadStats {
	uint64_t loads;         /* successful loads (unchanged ones included) */
	uint64_t unchanged;     /* successful loads that found the same rows as the current catalog */
	uint64_t failures;      /* failed loads */
	bool loading;           /* a load is under way */
	bool refresh_pending;   /* another load follows the current one */
	bool stale;             /* a refresh was asked and no load started after it has succeeded yet */
	int64_t last_load_ms;   /* monotonic ms of the last successful load's end; 0: none */
	int64_t last_query_ms;  /* the last successful load: query sent to last result (ms) */
	int64_t last_build_ms;  /* the last successful load: building the model (ms) */
	int64_t last_total_ms;  /* the last successful load: from its start (connect) to its end (ms) */
	size_t rows;            /* rows of the last successful load */
	size_t relations;       /* relations in the current catalog */
	char last_error[256];   /* the last failure, one line, no secrets; "" when none yet */
} CatalogLoadStats;

typedef struct CatalogLoader CatalogLoader;

/* Starts loading every service of cfg with a primary user (the first loads begin from the loop,
 * not inside this call). Copies what it needs from cfg. fn may be NULL. Never NULL. */
CatalogLoader *catalog_loader_new(struct event_base *base, const Config *cfg, const CatalogLoaderOptions *opt,
				  CatalogLoadedFn fn, void *arg);
/* A reloaded configuration: services that stay with the same host/port/dbname keep their catalog
 * (reloading at once if user, password or TLS settings changed); the others' catalogs are dropped
 * (callback with NULL) and new services start loading. */
void catalog_loader_reconfigure(CatalogLoader *l, const Config *cfg);
/* Relearn service's catalog (NULL: every service's), e.g. after DDL; coalesced as described above. */
void catalog_loader_refresh(CatalogLoader *l, const char *service);
/* The current catalog of service (borrowed: valid until control returns to the loop; catalog_ref
 * to keep it), or NULL when none is loaded (then do not cache reads of that service). */
Catalog *catalog_loader_get(const CatalogLoader *l, const char *service);
/* True when a refresh was asked for service and no load started after it has succeeded yet (the
 * current catalog may predate DDL that committed): the cache uses no catalog meanwhile. */
bool catalog_loader_stale(const CatalogLoader *l, const char *service);
/* A new refresh_ms (a reload): the next periodic load of each service comes refresh_ms from now
 * (none when 0); a load under way or a failure's backoff keep their schedule. */
void catalog_loader_set_refresh(CatalogLoader *l, int64_t refresh_ms);
/* False when the loader has no such service (no primary user, or not configured). */
bool catalog_loader_stats(const CatalogLoader *l, const char *service, CatalogLoadStats *out);
/* Closes every connection, drops every catalog (no callbacks), frees. NULL is fine. */
void catalog_loader_free(CatalogLoader *l);

#endif
