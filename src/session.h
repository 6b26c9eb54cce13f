/*
 * session — the state of one logged-in application session (Client): what the client module
 * (connection, login), the statement layer (statement*, settings) and the server events share.
 * Each field says which of them owns it; the others only read it. Header only: the functions are
 * in the modules that own the fields.
 */
#ifndef PGRELAY_SESSION_H
#define PGRELAY_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "conn.h"
#include "list.h"
#include "params.h"
#include "pool_types.h"
#include "cache.h"
#include "prepared.h"
#include "types.h"
#include "scram.h"
#include "stats_types.h"
#include "txtrack.h"

#define CLIENT_RYW_SLOTS 8

typedef enum {
	CL_STARTUP,    /* reading the startup packet */
	CL_AUTH,       /* authentication exchange */
	CL_WAIT_LOGIN, /* authenticated; waiting for server parameters */
	CL_IDLE,       /* logged in, no server */
	CL_WAITING,    /* a request is pending, waiting for a server */
	CL_ACTIVE,     /* linked to a server */
	CL_CLOSED,
} ClientState;

struct Client {
	Runtime *rt;
	uint64_t id;
	char name[24];   /* "C-12" */
	char addr[64];   /* peer address for logs */
	ClientState state;
	Conn conn;
	bool tls;          /* the connection is encrypted */
	bool tls_pending;  /* handshake in progress after answering 'S' */
	bool ssl_asked, gss_asked; /* SSLRequest / GSSENCRequest answered (once each, as PostgreSQL) */

	char *user;
	char *database;
	ConfigPoolMode pool_mode;
	Pool *pool;
	Server *server;

	ParamList params;   /* session parameters the client expects */
	ParamList startup_params; /* as of login: its session defaults (what DISCARD ALL returns to) */
	ClientStmts stmts;  /* the client's named prepared statements (transaction pooling) */
	uint32_t cancel_pid, cancel_key;

	/* authentication */
	ConfigAuthMethod auth_method;
	char *auth_secret; /* the user's stored secret, copied at startup */
	ScramServer *scram; /* while a SCRAM exchange runs, else NULL */
	const char *auth_mock_why; /* a mock exchange (unknown user): why, for the log; static */
	uint8_t md5_salt[4];

	int64_t connect_ms, wait_start_ms;
	ClientStats stats;     /* request, transaction and wait timing (stats.h) */
	LoopTimer timer; /* login timeout and query_wait_timeout */
	ListNode node;         /* runtime->clients */
	/* Set by the statement layer when the session cannot go on: the client gets this FATAL. */
	const char *end_sqlstate;
	char *end_message;
	PoolWaiter wait;       /* on pool->waiting or pool->login_waiting (admin: on the pausing list) */
	LoopDeferred dead; /* freed by the reaper once closed */
	bool close_at_idle;    /* shutting down: close at the next transaction boundary */
	bool close_after_first_tx; /* shutting down while it logged in: close after its first transaction */
	bool ever_linked;      /* has had a server (a transaction) at least once */
	bool processing;       /* inside client_process (no kick needed to look at the buffer) */
	bool out_full;         /* its outbound queue passed proxy.buffer_size: not read until it drains */
	const char *pinned;    /* transaction pooling: why the client keeps its server (LISTEN, ...) */

	/* Transaction routing (transaction pooling; statement.c). */
	char tx_local;         /* the status pgrelay reports when it answers itself: 'I', 'T', 'E' */
	char *held_begin;      /* a BEGIN answered by pgrelay, sent with the first statement */
	bool held_read_only;   /* ... and it was BEGIN READ ONLY (replicas allowed) */
	bool skip_to_sync;     /* pgrelay answered an extended-protocol batch with an error */
	uint8_t unnamed_local; /* the unnamed statement / portal is a BEGIN/COMMIT/ROLLBACK pgrelay answers */
	uint8_t portal_local;
	char *local_sql;       /* its text (for a BEGIN to hold) */
	bool local_read_only;
	bool reroute;          /* the next statement needs another server once this one is quiet */
	char *search_path;     /* value of the client's last SET search_path (routing), or NULL */
	/* SET / RESET tracking: the state before the transaction's first one, restored if it fails. */
	bool undo_active, undo_failed;
	/* settings.c: why the session may hold settings pgrelay cannot read (no cached results, no
	 * replica reads until RESET ALL / DISCARD ALL), or NULL */
	const char *settings_opaque;
	ParamList undo_params, undo_server_params;
	char *undo_search_path;
	/* The transaction's savepoints, each with the settings as they were when it was made (see
	 * settings.c); freed at the transaction's end. */
	struct SettingsSavepoint *savepoints;
	size_t n_savepoints, cap_savepoints;
	/* Result cache (cache.c): a miss this client fills, a lookup waiting for Redis and its
	 * answer, the flight it waits for. NULL until the client's first look-up (statement_cache.c):
	 * an idle client, or one of a pgrelay without the cache, keeps none of it (~500 bytes). */
	CacheWaiter *cache;
	struct CacheBump *cache_bump; /* the commit's invalidation its held ReadyForQuery waits for */
	/* The client's transaction as its server runs it (txtrack): requests in flight with what they
	 * write and do, savepoint levels. tx_service: the service of the server they went to. */
	TxTrack tx;
	char *tx_service;
	/* The unnamed statement's Parse body (after the name) when it writes or ends / marks the
	 * transaction: its Binds need it. unnamed_unread: it was too large to read. */
	uint8_t *unnamed_parse;
	size_t unnamed_parse_len;
	bool unnamed_unread;
	/* What the unnamed portal's Execute will write and do (from its Bind). */
	struct {
		uint8_t tx; /* SqlTxKind */
		char *savepoint;
		CacheWrites *writes;
	} portal;
	/* Admin console (admin.c): the client's AdminRole (0: a normal client), the extended-protocol
	 * batch being refused, the database of a PAUSE it waits for. */
	int admin;
	bool admin_skip;
	char *admin_pause_db;
	/* Read-your-writes (statement.c): CLIENT_RYW_SLOTS services, allocated at the first commit
	 * that wrote, else NULL. */
	struct ClientRyw {
		char *service;
		uint64_t lsn;  /* WAL position of the client's last write commit on that service */
	} *ryw;
};

#endif
