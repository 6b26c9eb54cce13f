/*
 * health — health checks of every backend (each service's primary and each replica) on the event
 * loop, with libpq's non-blocking API.
 *
 * Owns: one kept-open libpq connection per backend (application_name=pgrelay-health, the backend's
 * user/password, sslmode from services.X.tls, reconnecting on the next interval when it breaks),
 * the probe timer (health.interval) and per-probe timeout (health.timeout), the state of each
 * backend (BackendHealth below: up/down with fail_after/recover_after hysteresis, in_recovery, LSN,
 * replica lag against its primary's LSN, lagging against health.max_lag) and the log lines of its
 * transitions. It never blocks the loop: each connection is a pgasync handle (pgasync.h: libpq's
 * non-blocking API on libevent, host names resolved with evdns: one resolver for all backends).
 *
 * Does not own: routing. The proxy reads BackendHealth (health_backend / health_replica_usable)
 * and maintains the two counters reads_served and outstanding itself; this module never touches
 * them except to start them at 0.
 *
 * Backends without a user (the service logs in as each client) cannot be probed: they are never
 * checked and stay up ("unchecked", in_recovery assumed to match the configured role).
 *
 * Known gap: with libpq older than 16 (Debian 12 ships 15) there is no require_auth, so a server
 * whose pg_hba asks the health check for a cleartext password over plain TCP gets it even when
 * proxy.allow_cleartext_without_tls is false (the pool refuses that); with libpq 16+ the check
 * refuses it too (except under tls mode require/verify-full and on Unix sockets).
 */
#ifndef PGRELAY_HEALTH_H
#define PGRELAY_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;

typedef struct BackendHealth {
	/* "users primary 127.0.0.1:5432", "users replica 1 127.0.0.1:5433" (replicas numbered from 1
	 * in labels: "replica 1" is replica_index 0). */
	char label[192];
	const char *service;  /* service name (owned by this module) */
	int replica_index;    /* -1: the primary; else the index in services.X.replicas */
	bool removed;         /* no longer in the configuration: never checked again, never up */
	bool unchecked;       /* no user configured: never probed, always up */

	bool up;              /* starts true; false after fail_after failures, true after recover_after successes */
	bool lagging;         /* replicas: lag beyond health.max_lag (bytes or time) at the last check */
	bool in_recovery;     /* pg_is_in_recovery() at the last successful check */
	bool have_result;     /* at least one successful check so far */
	uint64_t lsn;         /* replay LSN (in recovery) or current WAL LSN (primary) at the last check */
	uint64_t lag_bytes;   /* replicas: primary's latest LSN - this replay LSN, floor 0 (0 if unknown) */
	double lag_seconds;   /* replicas: now - last replayed transaction, when replay is behind receive */
	int64_t last_check_ms;/* monotonic ms (same clock as loop_now_ms) of the last finished probe; 0: none */
	uint64_t checks;      /* finished probes (successes + failures) */
	uint64_t errors;      /* failed probes */
	int consecutive_failures;
	int consecutive_successes;
	char last_error[256]; /* one line, no secrets; "" when none yet */

	/* Maintained by the proxy (routing), not by this module. */
	uint64_t reads_served;
	int outstanding;
} BackendHealth;

typedef struct HealthChecker HealthChecker;

/* Creates the checker and starts probing every backend of cfg (first probe at once). Copies what it
 * needs from cfg (no reference kept). Never NULL (aborts on out-of-memory). */
HealthChecker *health_start(struct event_base *base, const Config *cfg);
/* Applies a reloaded configuration: backends that stay (same service name, index and
 * host/port/dbname) keep their state and counters (their connection is reopened if user, password
 * or TLS settings changed); new ones start (up, unchecked until their first result); removed ones
 * stop and are marked removed (their BackendHealth stays valid until health_stop, so a pointer the
 * proxy still holds never dangles). Interval and thresholds apply from the next probe. */
void health_reconfigure(HealthChecker *h, const Config *cfg);
/* Closes every connection and frees everything, including every BackendHealth ever handed out.
 * NULL is fine. */
void health_stop(HealthChecker *h);

/* The backend of service at replica_index (-1: primary) in the current configuration; NULL if the
 * service or the replica does not exist. The pointer stays valid until health_stop. */
BackendHealth *health_backend(HealthChecker *h, const char *service, int replica_index);
/* up && !lagging && in_recovery && !removed (an unchecked replica counts as in recovery). */
bool health_replica_usable(const BackendHealth *b);

/* Every current backend (removed ones excluded), in configuration order: per service the primary,
 * then its replicas. Indexes change on reconfigure. */
size_t health_count(const HealthChecker *h);
BackendHealth *health_at(HealthChecker *h, size_t i);

/* Pure: parses a pg_lsn text "X/Y" (each 1..8 hex digits) into (X << 32) | Y. False when malformed. */
bool health_parse_lsn(const char *text, uint64_t *out);

#endif
