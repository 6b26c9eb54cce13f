/*
 * pgasync — one libpq connection driven without blocking on the event loop: every connection
 * pgrelay opens to PostgreSQL on the loop goes through it (the health checks, the WAL listener's
 * replication connection, the catalog loader).
 *
 * Owns: the PGconn and everything between a connect and a close: a single host name resolved
 * with evdns (dns.c) and handed to libpq as hostaddr (libpq would block resolving it),
 * PQconnectStartParams + PQconnectPoll and PQsendQuery + PQconsumeInput + PQgetResult driven by
 * events on PQsocket (re-assigned after every wake-up: the descriptor can change while
 * connecting), PQflush until the query is out, the timeout of each connect and query, server
 * notices (to the log unless the owner takes them), the connection's parameters (kept for
 * pgasync_reconnect), the socket events of an owner that reads and writes a COPY (BOTH) itself,
 * and the release of the connection (PQfinish on a non-blocking connection: at most a Terminate
 * message; a query still running on the server is not cancelled, PQcancel blocks).
 *
 * Does not own: what the queries are, retries, backoff, or what a failure means: the owner's
 * callbacks decide. A failure always closes the connection.
 *
 * Callbacks never run inside a pgasync_* call (a failure found there is reported from the loop,
 * and dropped if the owner closes or connects again first); they may call any pgasync_* function,
 * pgasync_free included (the handle then goes away when the callback returns, and nothing more is
 * reported).
 */
#ifndef PGRELAY_PGASYNC_H
#define PGRELAY_PGASYNC_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;

typedef enum PgAsyncPhase {
	PGASYNC_CLOSED = 0, /* no connection */
	PGASYNC_RESOLVING,  /* waiting for evdns */
	PGASYNC_CONNECTING, /* PQconnectPoll: TCP, TLS, authentication */
	PGASYNC_IDLE,       /* connected, nothing in flight: pgasync_query may be called */
	PGASYNC_QUERYING,   /* a query sent, its results being read */
	PGASYNC_OWNER,      /* the owner reads the connection itself (COPY): see result() and pgasync_watch */
} PgAsyncPhase;

typedef struct PgAsyncHandler {
	/* pgasync_connect finished: the connection is IDLE. */
	void (*connected)(void *arg);
	/* One result of the query, in order (the driver PQclears it after the call). Return true to go
	 * on reading; false to take the connection over (after a COPY result: the phase becomes
	 * PGASYNC_OWNER, nothing more is read or timed, done() is not called; use pgasync_watch).
	 * NULL: results are dropped. An SQL error is a result (PGRES_FATAL_ERROR), not a failure. */
	bool (*result)(void *arg, PGresult *res);
	/* Every result of the query has been read: the connection is IDLE again. */
	void (*done)(void *arg);
	/* The connect or query failed, timed out, or the connection broke: it is CLOSED now. phase:
	 * what was under way. message: one line, no secrets. */
	void (*failed)(void *arg, PgAsyncPhase phase, const char *message);
	/* A server notice (one line); NULL: logged at info as "<who> says: ...". Called from inside
	 * libpq: it must not close or free the handle. */
	void (*notice)(void *arg, const char *message);
} PgAsyncHandler;

typedef struct PgAsync PgAsync;

/* A closed handle. dns: a resolver to share (kept by the caller, who frees it after every handle
 * using it), or NULL for one of its own made on the first host name. who: for log lines. The
 * handler is copied. Never NULL. */
PgAsync *pgasync_new(struct event_base *base, struct evdns_base *dns, const char *who, const PgAsyncHandler *h,
		     void *arg);
/* Closes the connection (nothing more is reported) and frees the handle. NULL is fine. */
void pgasync_free(PgAsync *pa);

/*
 * Opens a connection with libpq's keywords and values (NULL-terminated arrays, copied; dbname is
 * not expanded as a connection string). A "host" that is one name (not an address, a socket
 * directory or a list, and no "hostaddr" given) is resolved with evdns first and every address
 * tried in order (at most 8); gssencmode defaults to disable (a Kerberos lookup could block).
 * Closes what was open before. timeout_ms (> 0) bounds resolving and connecting; 0: no limit.
 * False only for a call on a freed handle or NULL arrays.
 */
bool pgasync_connect(PgAsync *pa, const char *const *keys, const char *const *values, int64_t timeout_ms);
/* Connects again with the last pgasync_connect's parameters (a retry). False when there were none. */
bool pgasync_reconnect(PgAsync *pa, int64_t timeout_ms);
/* The same from a connection string (keywords or URI). False (err set) when it does not parse. */
bool pgasync_connect_conninfo(PgAsync *pa, const char *conninfo, int64_t timeout_ms, char *err, size_t errlen);

/* Sends sql (the simple protocol: several statements are one round trip, one result each).
 * timeout_ms (> 0) bounds the wait for the last result; 0: no limit. False when the connection is
 * not IDLE (nothing done). */
bool pgasync_query(PgAsync *pa, const char *sql, int64_t timeout_ms);

/* In PGASYNC_OWNER or IDLE: calls ready(arg) once the socket is readable (or writable, with
 * write); call it again to keep watching. The owner reads with PQconsumeInput / PQgetCopyData (and
 * writes with PQputCopyData / PQflush) on pgasync_conn, and ends with pgasync_close. False in any
 * other phase. */
bool pgasync_watch(PgAsync *pa, bool write, void (*ready)(void *arg));

/* Closes the connection (if any) and drops what is in flight, reporting nothing; the handle can
 * connect again. */
void pgasync_close(PgAsync *pa);

PgAsyncPhase pgasync_phase(const PgAsync *pa);
/* The connection, for PQserverVersion, PQsslInUse, PQgetCopyData...; NULL when CLOSED/RESOLVING. */
PGconn *pgasync_conn(PgAsync *pa);
const char *pgasync_phase_name(PgAsyncPhase phase);

#endif
