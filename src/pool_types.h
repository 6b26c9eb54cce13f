/*
 * pool_types — a pool's state (Pool: its service, backend, credentials, server lists, waiters,
 * counters) and the PoolWaiter a session embeds to wait for a server: what pool.c owns and
 * servers and sessions read. Header only (pool.h has the functions).
 */
#ifndef PGRELAY_POOL_TYPES_H
#define PGRELAY_POOL_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"
#include "list.h"
#include "params.h"
#include "types.h"
#include "stats_types.h"

struct Pool {
	Runtime *rt;
	char *service_name;
	int replica;                  /* -1: the primary; else the index in service->replicas */
	char *user;
	char name[160]; /* "user@service" or "user@service/replica0" for logs */
	Config *config;               /* holds the service below alive */
	const ConfigService *service;
	const ConfigBackend *backend; /* service->primary or service->replicas[replica] */
	const char *server_user;      /* service primary user, or the client's user */
	const char *server_password;
	SSL_CTX *tls_ctx;             /* towards the servers; NULL: tls disabled */

	List idle, active, opening, resetting; /* servers by state */
	List waiting;                 /* PoolWaiters waiting for a server, FIFO */
	List login_waiting;           /* PoolWaiters waiting for server parameters */

	ParamList server_params;      /* ParameterStatus set of a logged-in server */
	bool have_params;
	int64_t last_connect_error_ms;
	char last_error[256];

	bool removed;  /* no longer in the config: drains, then is freed */
	bool paused;   /* PAUSE from the admin console: no server is handed out */
	ListNode node;

	PoolStats stats; /* SHOW STATS counters, averages, histograms (stats.h) */
};

/*
 * One who waits for a server of a pool (a client session embeds it). The pool never looks inside
 * the session: it says what happened through ops.
 */
typedef struct PoolWaiter PoolWaiter;
typedef struct PoolWaiterOps {
	/* s is the waiter's now (idle, logged in, parameters applied by the waiter's attach) */
	void (*granted)(PoolWaiter *w, Server *s);
	/* no server is free: it waits (timeout_ms: the service's query_wait_timeout, 0 for none) */
	void (*queued)(PoolWaiter *w, int64_t timeout_ms);
	/* the pool's server parameters are known (pool_wait_login) */
	void (*login_ready)(PoolWaiter *w);
	/* the pool cannot serve it (the service is unreachable) */
	void (*failed)(PoolWaiter *w, const char *sqlstate, const char *message);
	/* a replica's pool could not connect: it chooses a server again */
	void (*rerouted)(PoolWaiter *w);
} PoolWaiterOps;

struct PoolWaiter {
	ListNode node;            /* on list (or, outside pools, on its owner's own list) */
	List *list;               /* the pool list it waits on, or NULL */
	const PoolWaiterOps *ops;
	const char *name;         /* for logs */
};

#endif
