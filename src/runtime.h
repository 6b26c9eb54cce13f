/*
 * runtime — the one struct that holds everything the event loop owns: libevent base, the current
 * Config, the listener, every client, pool and server, the cancel-key map, signals and timers.
 * No other global state exists (log keeps a pointer to runtime.log), so the loop can later run as
 * N workers, each with its own Runtime.
 */
#ifndef PGRELAY_RUNTIME_H
#define PGRELAY_RUNTIME_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "health.h"
#include "list.h"
#include "log.h"
#include "prepared.h"
#include "scram.h"
#include "sqlclass.h"

typedef struct Client Client;
typedef struct Server Server;
typedef struct Pool Pool;

typedef struct CancelMap {
	struct CancelSlot {
		uint32_t pid;
		Client *client; /* NULL: empty; (Client *)1: deleted */
	} *slots;
	size_t cap, used, tombstones;
} CancelMap;

typedef struct Stats {
	uint64_t clients_accepted;
	uint64_t clients_refused;
	uint64_t auth_failures;
	uint64_t servers_opened;
	uint64_t servers_failed;
	uint64_t wait_timeouts;
	uint64_t cancels_forwarded;
	uint64_t accept_pauses; /* accept paused: out of descriptors or memory */
	uint64_t access_refused; /* refused by the access rules (a reject rule, or none matched) */
} Stats;

typedef struct Runtime {
	struct event_base *base;
	struct evdns_base *dns;
	Config *config;
	char *config_path;
	LogSettings log;

#define RUNTIME_MAX_LISTENERS 8
	int listen_fds[RUNTIME_MAX_LISTENERS];
	struct event *ev_accept[RUNTIME_MAX_LISTENERS];
	int n_listeners;
	struct event *ev_accept_resume; /* accepting paused (no descriptor or memory): resumes then */
	SSL_CTX *tls_listen; /* for clients; NULL when listen.tls.mode is disable */

	List clients;   /* every live client */
	List pools;
	List cancels;   /* cancel requests in flight */
	size_t n_clients;

	/* Objects closed inside callbacks wait here until the reaper runs. */
	List dead_clients, dead_servers;
	struct event *ev_reaper;

	uint64_t next_client_id, next_server_id;
	CancelMap cancel_map;

	struct event *ev_sighup, *ev_sigterm, *ev_sigint, *ev_janitor;
	bool shutting_down;
	int64_t shutdown_deadline_ms;

	/* SCRAM verifiers derived from plain-text user passwords (PBKDF2 is slow: do it once). */
	struct ScramCacheEntry {
		char *user;
		char *password;
		struct ScramVerifier *verifier;
	} *scram_cache;
	size_t n_scram_cache;
	/* Random at start, kept across reloads: derives the salt of every user whose password is plain
	 * text and of every unknown user's mock exchange (scram_user_salt), so both look alike. */
	uint8_t scram_salt_secret[SCRAM_SALT_SECRET_LEN];

	HealthChecker *health;        /* backend health checks (health.h); started after the listener */
	struct BalanceState *balance; /* replica choice state (balance.c) */

	StmtRegistry stmts; /* prepared statements, pgrelay-wide names */
	struct Cache *cache; /* result cache (cache.h); NULL when the configuration has none */
	struct AdminState *admin;  /* admin console state (admin.c); NULL until used */
	struct UpgradeState *upgrade; /* listening-socket hand-over (upgrade.c) */
	uint64_t *route_matches;   /* per rule of config->routes: statements it routed */
	size_t n_route_matches;
	uint64_t *access_hits;     /* per rule of config->access: connections it matched */
	size_t n_access_hits;
	SqlCache sql;       /* statement analyses by text */
	struct Metrics *metrics;  /* histograms and the stats period (stats.h) */
	struct HttpServer *http;  /* admin.http: /metrics and /health (http.h); NULL when not configured */

	Stats stats;
} Runtime;

/* Milliseconds on the monotonic clock. */
int64_t runtime_now_ms(void);
/* Microseconds on the monotonic clock. */
int64_t runtime_now_us(void);

bool runtime_init(Runtime *rt, Config *cfg, const char *config_path);
/* Runs the loop until shutdown; returns the exit status. */
int runtime_run(Runtime *rt);
void runtime_free(Runtime *rt);

/* Schedules the reaper (frees objects on the dead lists after the current callback). */
void runtime_schedule_reap(Runtime *rt);
/* Called when a client goes away; finishes a SIGTERM shutdown once the last one has left. */
void runtime_client_gone(Runtime *rt);

/* The SCRAM verifier for a user whose configured password is plain text (cached; its salt is
 * scram_user_salt's). */
const struct ScramVerifier *runtime_scram_verifier_for(Runtime *rt, const char *user, const char *password);
/* The verifier of a mock exchange for a user pgrelay does not know (scram_mock_verifier). */
bool runtime_scram_mock_verifier(Runtime *rt, const char *user, struct ScramVerifier *out);
/* SIGTERM (or SHUTDOWN in the console): stop accepting, close clients at their next transaction
 * boundary, exit when the last one left or shutdown_timeout passed. */
void runtime_begin_shutdown(Runtime *rt);
/* Re-reads the configuration file (SIGHUP); keeps the running one if the new one is invalid. */
void runtime_reload(Runtime *rt);

#endif
