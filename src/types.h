/*
 * types — the one struct that holds everything the event loop owns (Runtime: libevent base, the
 * current Config, every client, pool and server, the caches, counters, signals and timers) and
 * the names of the objects modules pass each other. No other global state exists (log keeps a
 * pointer to Runtime.log), so the loop can later run as N workers, each with its own Runtime.
 *
 * Modules read the Runtime they are given; runtime.c creates and wires it, and no module calls
 * into runtime.c (what they need from it are the hooks at the end of the struct).
 */
#ifndef PGRELAY_TYPES_H
#define PGRELAY_TYPES_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "health.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "prepared.h"
#include "relay.h"
#include "scram.h"
#include "sqlclass.h"

typedef struct Client Client;
typedef struct Runtime Runtime;
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

/*
 * The admin console (admin.c), as the client module reaches it: a client connecting to the
 * console's database is handed to these (runtime_init wires admin's), so the client module does
 * not depend on the console, which manages clients (SHOW CLIENTS, KILL).
 */
typedef struct ConsoleOps {
	/* whether database names the console ("pgrelay", "pgbouncer") and not a configured one */
	bool (*is_console)(const Config *cfg, const char *database);
	/* what user may do there: 0 nothing, else a role (admin.h's AdminRole) */
	int (*role)(const Config *cfg, const char *user);
	/* finishes the login of an authenticated console client */
	void (*login)(Client *c);
	/* a logged-in console client's message (relay callback) */
	RelayAction (*message)(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total, size_t avail);
	/* a console client goes away */
	void (*gone)(Client *c);
	/* whether logins to database are refused (DISABLE) */
	bool (*database_disabled)(const Runtime *rt, const char *database);
} ConsoleOps;

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
	LoopTimer accept_resume; /* accepting paused (no descriptor or memory): resumes then */
	SSL_CTX *tls_listen; /* for clients; NULL when listen.tls.mode is disable */

	List clients;   /* every live client */
	List pools;
	List cancels;   /* cancel requests in flight */
	size_t n_clients;

	LoopReaper reaper; /* frees clients and servers closed inside callbacks (loop.h) */
	ConnSpares read_buffers; /* read buffers clients and servers let go of, for the next read (conn.h) */

	uint64_t next_client_id, next_server_id;
	CancelMap cancel_map;

	struct event *ev_sighup, *ev_sigterm, *ev_sigint, *ev_janitor;
	bool shutting_down;
	int64_t shutdown_deadline_ms;

	/* SCRAM verifiers derived from plain-text user passwords, and the secret that salts them and
	 * every unknown user's mock exchange (kept across reloads). */
	ScramCache scram;

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

	/* What the runtime does for the modules, wired by runtime_init: the modules never call
	 * runtime.c. */
	void (*reload)(struct Runtime *rt);         /* SIGHUP, RELOAD: re-read the configuration */
	void (*begin_shutdown)(struct Runtime *rt); /* SIGTERM, SHUTDOWN: stop at transaction ends */
	void (*client_gone)(struct Runtime *rt);    /* a client left (a shutdown may be done) */
	const ConsoleOps *console;                  /* the admin console */
} Runtime;

#endif
