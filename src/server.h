/*
 * server — one connection from pgrelay to a PostgreSQL server: connect, log in (SCRAM-SHA-256,
 * md5, cleartext), then relay the server's replies to the linked client.
 *
 * Owns: the server-side state machine, the queue of requests awaiting ReadyForQuery (which tells
 * when a transaction-pooled connection may be released), queries pgrelay injects itself (SET for
 * session parameters, the reset query) and the swallowing of their replies, and the decision to
 * close a connection whose state is uncertain.
 */
#ifndef PGRELAY_SERVER_H
#define PGRELAY_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conn.h"
#include "list.h"
#include "params.h"
#include "pipeline.h"
#include "prepared.h"
#include "relay.h"
#include "types.h"
#include "scram.h"

/* How a server was lost (ServerEvents.lost). */
enum {
	SERVER_LOSS_MAY_RETRY = 1,   /* the read can be sent elsewhere (server_retry_request) */
	SERVER_LOSS_AFTER_FATAL = 2, /* the client was sent the server's FATAL error */
	SERVER_LOSS_MID_MESSAGE = 4, /* part of a reply message already reached the client: any
				      * message pgrelay sent it now would be read as the rest of it */
};

/* What a server does after the session's ReadyForQuery (ServerEvents.ready). */
typedef enum {
	SERVER_NEXT_KEEP,            /* stays linked: the session goes on with it */
	SERVER_NEXT_RELEASE,         /* goes back to its pool */
	SERVER_NEXT_RELEASE_AFTER_LSN, /* asks the commit's WAL position first, then goes back */
} ServerNext;

typedef struct ServerEvents ServerEvents;

/* What a server reports to the pool that owns it (given to server_launch). */
typedef struct ServerOwnerOps {
	/* logged in, reset, or released: give it to a waiter or make it idle */
	void (*available)(Pool *p, Server *s);
	/* the connection or login failed; error is for the pool's waiters */
	void (*failed)(Pool *p, Server *s, const char *sqlstate, const char *error);
	/* its state changed: move it to the pool's list for that state */
	void (*moved)(Pool *p, Server *s);
	/* it is gone */
	void (*removed)(Pool *p, Server *s);
} ServerOwnerOps;

typedef enum {
	SV_CONNECTING, /* TCP connect in progress */
	SV_LOGIN,      /* startup sent, authenticating */
	SV_IDLE,       /* in the pool, no client */
	SV_ACTIVE,     /* linked to a client */
	SV_RESETTING,  /* running the reset query before going idle */
	SV_CLOSED,
} ServerState;

/*
 * What a server reports to the session it serves (the client side registers these with
 * server_attach). server.c never reads or writes the session's state: it says what it saw and
 * asks what it needs to decide. Every callback gets the session pointer given to server_attach.
 */
typedef struct ServerEvents {
	/* A reply to one of the session's requests: CommandComplete 'C', ErrorResponse 'E',
	 * EmptyQueryResponse 'I' or PortalSuspended 's' (body without the 5-byte header). */
	void (*reply)(void *session, Server *s, uint8_t type, const uint8_t *body, size_t len);
	/* The session's request is over (ReadyForQuery with tx_status), before the client sees it:
	 * true holds the ReadyForQuery back until the session calls server_ready_resume (or the
	 * server is detached or closed first: then hold_dropped). */
	bool (*ready_hold)(void *session, Server *s, char tx_status);
	void (*hold_dropped)(void *session, Server *s);
	/* The ReadyForQuery goes to the client now; next says what the server does after it. */
	void (*ready)(void *session, Server *s, char tx_status, ServerNext next);
	/* The server reported a setting a client may change (ParameterStatus, outside a reset). */
	void (*parameter)(void *session, const char *name, const char *value);
	/* DISCARD ALL ran: the session's settings are its startup values again. */
	void (*discarded)(void *session);
	/* DISCARD ALL / DEALLOCATE ALL: no prepared statement of the session exists any more. */
	void (*statements_cleared)(void *session);
	/* The server does not have registry statement id (its Parse or PREPARE failed). */
	void (*statement_gone)(void *session, uint32_t id);
	/* pgrelay's own query applying the session's settings failed (the session cannot go on). */
	void (*setting_failed)(void *session, const char *sqlstate, const char *message);
	/* A write of the session committed on service's primary at WAL position lsn. */
	void (*committed)(void *session, const char *service, uint64_t lsn);
	/* Whether the session's transaction being over (and nothing in flight) gives the server back;
	 * and whether it then needs the reset query (session pooling). */
	bool (*may_release)(void *session);
	bool (*needs_reset)(void *session);
	/* The server went back to its pool: the session has no server. */
	void (*released)(void *session);
	/* The client's queue drained below the server's back-pressure limit. */
	void (*drained)(void *session);
	/* The server is gone; how: SERVER_LOSS_* flags. */
	void (*lost)(void *session, Server *s, unsigned how);
	/* Whether the session copies the replies of its current request (the result cache); each
	 * reply then comes to capture, whole (complete) or not. */
	bool (*capturing)(void *session, size_t *max_message);
	void (*capture)(void *session, uint8_t type, const uint8_t *msg, size_t total, bool complete);
} ServerEvents;

struct Server {
	Runtime *rt;
	uint64_t id;
	char name[24]; /* "S-12" for logs */
	ServerState state;
	Conn conn;
	Pool *pool;
	const ServerOwnerOps *owner; /* ... and what it is told */
	void *session;            /* the linked session (a client), or NULL */
	const ServerEvents *ev;   /* ... and what it is told */
	Conn *peer;               /* ... and where replies go */

	struct sockaddr_storage addr;
	socklen_t addr_len;

	ParamList params;       /* the session parameters the server reported or was set to */
	ParamList login_params; /* as reported at login: what RESET ALL / DISCARD ALL returns to */
	uint32_t be_pid, be_key;
	char tx_status;     /* from the last ReadyForQuery: 'I', 'T' or 'E' */
	Pipeline pipe;      /* requests sent and the replies still owed */
	ServerStmts stmts;  /* registry statements prepared on this connection */
	bool close_on_release;

	ScramClient scram;
	bool scram_active;
	bool scram_verified; /* the server's SCRAM signature was checked during this login */

	enum { SV_TLS_NONE, SV_TLS_ASKED, SV_TLS_HANDSHAKE } tls_phase; /* during LOGIN */
	bool tls; /* the connection is encrypted */

	bool release_pending; /* ReadyForQuery ended the client's transaction: release after forwarding */
	/* The session holds its ReadyForQuery back (the commit's invalidation reaches every cache
	 * first): ServerEvents.ready_hold, server_ready_resume. */
	bool ready_held;
	bool ready_noted;     /* the ReadyForQuery waiting to go to the client was told to the session */
	bool wrote;           /* a write went to this primary in the client's transaction (read-your-writes) */
	bool lsn_pending;     /* pgrelay asked for pg_current_wal_lsn() after that write committed */
	uint64_t commit_lsn;  /* ... and this is the answer */
	bool retry_ok;        /* a replica read whose request (retry) can still be sent elsewhere */
	Buf retry;
	Buf held;             /* ... and its replies so far, held back until ReadyForQuery */
	bool replies_flow;    /* ... unless the client asked for them (Flush): then they go at once */
	Buf fail_errors;      /* ErrorResponses pgrelay puts in place of its PIPE_FAILS requests' errors */
	bool settings_opaque; /* a client ran something that may change settings pgrelay cannot read:
			       * DISCARD ALL before the connection serves anyone else */
	bool reset_reports;   /* after RESET/DISCARD ALL: ParameterStatus reports defaults, not wishes */
	/* Fingerprint of the client parameters last applied, and the server list's generation then:
	 * a client wanting the same settings needs no comparison at all. */
	bool synced;
	uint64_t synced_fp;
	uint32_t synced_server_gen;
	bool fatal_forwarded; /* the server sent the client a FATAL error: it will close */

	int64_t created_ms, last_used_ms;
	LoopTimer timer;         /* connect/login timeout */
	struct event ev_connect; /* connect completion */
	struct event_base *base;
	int connect_errno;     /* an immediate connect failure, reported from the timer */
	List *pool_list;       /* the pool list pool_node is on */
	ListNode pool_node;    /* on one of the pool's state lists */
	LoopDeferred dead; /* freed by the reaper once closed */
};

/* Opens a new connection for pool; it reports to the pool through owner (logged in, failed, ...). */
Server *server_launch(Pool *pool, const ServerOwnerOps *owner);
/*
 * Closes the connection (never reused). If it is mid-request and cancel is set, a CancelRequest
 * is sent first so the query stops on the server too. reason is logged.
 */
void server_close(Server *s, bool cancel, const char *reason);

/*
 * Links the server with a session: ev are its callbacks, peer its client connection (replies go
 * there), params the settings it wants (an internal SET/RESET query is queued when they differ).
 * may_retry: the session's next request is a read outside a transaction, which may move to
 * another server until its first reply reaches the client (replica servers only).
 */
void server_attach(Server *s, void *session, const ServerEvents *ev, Conn *peer, ParamList *params,
		   bool may_retry);
/* Detaches the session (it is told nothing: it detached). */
void server_detach(Server *s);
/* The session's held ReadyForQuery (ServerEvents.ready_hold) may go to the client now. */
void server_ready_resume(Server *s);
/* The read a lost replica server was sent (to be sent again elsewhere). */
const Buf *server_retry_request(const Server *s);
/* True when nothing is in flight: no request awaiting ReadyForQuery, transaction idle. */
bool server_is_quiet(const Server *s);

/*
 * Records a request the client side is about to send (or has pgrelay answer: PIPE_SYNTHETIC,
 * whose reply goes to the client as soon as it is due). Returns false when the server will ignore
 * the request (after an error in the batch, or a Sync during COPY FROM STDIN).
 */
bool server_expect(Server *s, PipeKind kind, uint8_t flags, uint32_t tag);

/*
 * Makes sure the server has prepared st (under its pgrelay-wide name) before the client message
 * being relayed through rc: if not, sends the Parse (and a Close for the statement the LRU
 * evicts) ahead of it, with replies swallowed.
 */
void server_ensure_prepared(Server *s, RelayCtx *rc, const PreparedStmt *st);
/* Records that the server will have statement id, closing the LRU victim on the server first. */
void server_track_prepared(Server *s, RelayCtx *rc, uint32_t id);
/* Sends st's Parse under its pgrelay-wide name; the reply goes to the client if for_client. */
void server_send_parse(Server *s, RelayCtx *rc, const PreparedStmt *st, bool for_client);

/*
 * Gives a detached, quiet server back to its pool: through the reset query first when reset is
 * set (session pooling), otherwise at once.
 */
void server_release(Server *s, bool reset);

/* True when the server's settings are known to match params (a session's wishes). */
bool server_params_synced(const Server *s, ParamList *params);
/*
 * Applies params (a session's settings) with one internal SET/RESET query if they differ from
 * the server's (through rc when called while relaying the session's messages, so it goes before
 * them).
 */
void server_sync_params(Server *s, ParamList *params, RelayCtx *rc);

/*
 * An error pgrelay reports for the client while the server still owes it replies: sends the server
 * a request that fails (through rc, after what the client sent before), so that the error reaches
 * the client in order, after those replies, and the server fails the extended-protocol batch (it
 * skips to Sync) or the transaction exactly as for an error of its own. error: a whole
 * ErrorResponse message. simple: the client's message was a Query (the server answers the failing
 * request with ErrorResponse + ReadyForQuery) rather than part of an extended batch. False when
 * the server ignores it (the batch failed already, as PostgreSQL reports one error per batch).
 */
bool server_fail_request(Server *s, RelayCtx *rc, bool simple, const Buf *error);

/* Sends pgrelay's own simple query; its replies are swallowed. */
void server_send_internal_query(Server *s, const char *sql);

/* The request kept for a retry is not needed (it was too big, or the reply is complete): the
 * replies held back so far go to the client. */
void server_forget_retry(Server *s);
/* The client sent Flush: it waits for the replies so far, so none are held back from here on (a
 * read that has not had a reply byte yet can still be retried elsewhere). */
void server_client_flushed(Server *s);

/* Re-examines buffered server bytes (after a client link change). */
void server_kick(Server *s);

const char *server_state_name(ServerState st);

#endif
