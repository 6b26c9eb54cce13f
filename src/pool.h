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

/* A server finished login, reset, or was released: give it to a waiter or make it idle. */
void pool_server_available(Pool *p, Server *s);
/* A server connection attempt failed before login; error is for waiting clients. */
void pool_server_failed(Pool *p, Server *s, const char *sqlstate, const char *error);
/* Moves a server between the pool's lists to match its new state. */
void pool_server_moved(Pool *p, Server *s);
/* A server is gone. */
void pool_server_removed(Pool *p, Server *s);

/* RESUME: hand servers to the clients that waited while the pool was paused. */
void pool_resume(Pool *p);
/* Periodic upkeep of every pool; called by the janitor each second. */
void pool_janitor(Runtime *rt);
/* Applies a newly loaded Config to existing pools. */
void pool_apply_config(Runtime *rt, Config *cfg);
void pool_free(Pool *p);

#endif
