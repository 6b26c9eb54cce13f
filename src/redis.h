/*
 * redis — an asynchronous Redis client on pgrelay's libevent loop, for one node or a Redis
 * Cluster, built on hiredis's async API (Debian's hiredis 0.14, which has no cluster client).
 * Meant as the L2 of the result cache: Redis slow or down must never hurt pgrelay's clients, so
 * every command has a short deadline and a node that is down costs an immediate error, not a wait.
 *
 * Owns: one hiredis async connection per node (opened on first use, host names resolved with evdns),
 * the cluster slot map (CLUSTER SLOTS from any reachable node, patched by -MOVED, refreshed in the
 * background), redirects (-MOVED: map updated and command resent; -ASK: ASKING then the command on
 * the other node, for that command only), per-command timeouts, node health (connect timeout,
 * handshake AUTH + PING, stall detection, idle PINGs, reconnection with exponential backoff from
 * 100 ms to 5 s, one log line when a node goes down and one when it comes back), one extra
 * connection for pub/sub (re-subscribed on another node after a failure) and the counters below.
 *
 * Does not own: the event loop, the configuration, what the commands mean (the cache).
 *
 * Callbacks: each command's callback runs exactly once, always from the event loop (never from
 * inside redis_client_command), with the reply (which hiredis frees when the callback returns; error
 * replies such as "-WRONGTYPE" are replies, type REDIS_REPLY_ERROR) or with reply NULL and an error
 * text (timeout, node down, connection lost, too many redirects, "shutting down"). A reply arriving
 * after the timeout is dropped. Callbacks may issue new commands and may free the client.
 */
#ifndef PGRELAY_REDIS_H
#define PGRELAY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct redisReply;

typedef struct RedisOptions {
	/* "host:port", "host" (port 6379), "[v6addr]:port". Single-node mode uses only nodes[0]; in
	 * cluster mode every entry is a seed for CLUSTER SLOTS. */
	const char *const *nodes;
	size_t n_nodes;
	bool cluster;
	int timeout_ms;          /* per command, redirects included; <= 0: 20 */
	int connect_timeout_ms;  /* TCP connect + AUTH + PING; <= 0: 10 x timeout_ms within [200, 2000] */
	const char *username;    /* ACL user for AUTH; NULL: AUTH with the password only */
	const char *password;    /* NULL: no AUTH */
	struct evdns_base *dns;  /* resolves host names; NULL: the client makes its own when needed */
} RedisOptions;

typedef struct RedisStats {
	uint64_t commands;       /* redis_client_command calls */
	uint64_t replies;        /* callbacks with a reply (error replies included) */
	uint64_t errors;         /* callbacks with an error, timeouts excluded */
	uint64_t timeouts;       /* callbacks with a timeout error */
	uint64_t moved, ask;     /* redirects followed */
	uint64_t reconnects;     /* connections opened after a node had been marked down */
	uint64_t slot_refreshes; /* CLUSTER SLOTS requests sent */
	bool up;                 /* as redis_client_up */
} RedisStats;

typedef struct RedisClient RedisClient;

/* reply: NULL on error (then error says why); freed by hiredis after the callback returns. */
typedef void (*RedisReplyFn)(void *arg, struct redisReply *reply, const char *error);
typedef void (*RedisMessageFn)(void *arg, const char *msg, size_t len);
typedef void (*RedisStateFn)(void *arg, bool up);

/* Starts connecting at once (single node: the node; cluster: a seed, for the slot map). on_state
 * (may be NULL) is called from the loop each time redis_client_up changes, first with true when
 * the client becomes usable. Copies opt's strings. Returns NULL only if opt has no valid node
 * (then it logs why). */
RedisClient *redis_client_new(struct event_base *base, const RedisOptions *opt, RedisStateFn on_state,
			      void *state_arg);

/* Sends argv (as redisAsyncCommandArgv: argvlen may be NULL for C strings) to the node serving the
 * slot of key/keylen (the command's first key; key NULL: any node). Copies everything it needs. */
void redis_client_command(RedisClient *r, const char *key, size_t keylen, RedisReplyFn fn, void *arg, int argc,
			  const char **argv, const size_t *argvlen);

/* Subscribes to channel on the pub/sub connection (one node; in a cluster PUBLISH reaches every
 * node) and calls fn for each message, until redis_client_free. While a subscription exists the
 * client is up only when the subscription is active: a down→up transition means messages may
 * have been missed. */
void redis_client_subscribe(RedisClient *r, const char *channel, RedisMessageFn fn, void *arg);

/* Usable: (single) the node answered its handshake and is not down; (cluster) the slot map is
 * loaded and no node serving slots is down; and, with subscriptions, they are active. */
bool redis_client_up(const RedisClient *r);
void redis_client_stats(const RedisClient *r, RedisStats *out);

/* Calls every pending callback with reply NULL and error "shutting down", closes every connection
 * and frees everything; no callback runs afterwards. NULL is fine. */
void redis_client_free(RedisClient *r);

/* The cluster hash slot of a key: CRC16 (XMODEM) of the key, or of its {hash tag} when it has a
 * non-empty one, modulo 16384. Pure. */
uint16_t redis_key_slot(const char *key, size_t len);

#endif
