/*
 * txtrack — a client's transaction as its server executes it. Pure: no sockets, no clients.
 *
 * Owns: the client's requests in flight, each with what its statements write (CacheWrites, for
 * the result cache) and do to the transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
 * ROLLBACK TO), applied in the order the server's replies say they ran; and the savepoint levels
 * of the open transaction with the tables each level wrote.
 *
 * Send side, in the order the client's messages go to the server: a Query pushes one item per
 * statement then an end (its ReadyForQuery); an Execute one statement; a Sync an end; what pgrelay
 * cannot follow (a FunctionCall, a text it could not parse or read) a "sticky" item.
 * Reply side: CommandComplete, EmptyQueryResponse and PortalSuspended complete the next statement
 * (its writes go to the current level, then its transaction effect applies); ErrorResponse counts
 * the failed statement's writes (it may have done part of them) and drops the transaction effects
 * of the rest of its request (PostgreSQL skipped them); ReadyForQuery ends the request and says
 * what to invalidate now: what every COMMIT closed, and with status 'I' everything still open (an
 * implicit transaction committed; what rolled back costs only a needless invalidation).
 * SAVEPOINT opens a level; RELEASE merges the levels from the named savepoint up into the one below
 * it; ROLLBACK TO drops what came after the savepoint; ROLLBACK drops every level (COMMIT of a
 * failed transaction, whose tag is ROLLBACK, too); COMMIT and PREPARE TRANSACTION close them all.
 * Sticky writes are invalidated at the next ReadyForQuery and stay in the level (never dropped).
 * A savepoint name the model does not hold (PostgreSQL refuses it) changes nothing.
 */
#ifndef PGRELAY_TXTRACK_H
#define PGRELAY_TXTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cachepolicy.h"
#include "sqlclass.h"

typedef struct TxItem TxItem;
typedef struct TxLevel TxLevel;

typedef struct TxTrack {
	TxItem *items;       /* ring of requests' items in flight */
	size_t cap, head, count;
	TxLevel *levels;     /* [0] the transaction, then one per savepoint */
	size_t n_levels, cap_levels;
	CacheWrites *committed; /* closed by COMMIT, to invalidate at the next ReadyForQuery */
} TxTrack;

/* What a completed statement did to the transaction (the settings' undo needs it). */
typedef enum {
	TXTRACK_NONE = 0,
	TXTRACK_COMMITTED,
	TXTRACK_ROLLED_BACK,    /* the whole transaction */
	TXTRACK_ROLLED_BACK_TO, /* to a savepoint */
} TxEvent;

void txtrack_init(TxTrack *t);
void txtrack_free(TxTrack *t);

/* ---- send side ---- */

/* A statement about to run (a Query's statement, or an Execute). tx: its transaction effect;
 * savepoint: the name for SAVEPOINT / RELEASE / ROLLBACK TO; writes: NULL for none (copied). */
void txtrack_statement(TxTrack *t, SqlTxKind tx, const char *savepoint, const CacheWrites *writes);
/* A Query whose statements pgrelay did not count: every completion up to its end belongs to it.
 * writes as above (sticky when not NULL: invalidated at the next ReadyForQuery, never dropped). */
void txtrack_uncounted(TxTrack *t, const CacheWrites *writes);
/* Writes pgrelay cannot place (a FunctionCall): sticky; consumes no reply. */
void txtrack_note(TxTrack *t, const CacheWrites *writes);
/* The end of a request: a Query's or a Sync's ReadyForQuery. */
void txtrack_end(TxTrack *t);

/* ---- reply side ---- */

/* CommandComplete (rollback_tag: its tag is ROLLBACK), EmptyQueryResponse, PortalSuspended. */
TxEvent txtrack_complete(TxTrack *t, bool rollback_tag);
/* ErrorResponse to the client's request. */
void txtrack_error(TxTrack *t);
/*
 * ReadyForQuery with the transaction status: ends the request. Adds to *bump (zeroed by the
 * caller) what must be invalidated now; returns true when it is not empty.
 */
bool txtrack_ready(TxTrack *t, char status, CacheWrites *bump);

/* ---- other ---- */

/* The server died and the requests in flight are sent again elsewhere (replica reads): they are
 * forgotten (levels stay). */
void txtrack_forget_requests(TxTrack *t);
/* The client goes away with requests in flight: everything they and the open transaction may
 * have written (a COMMIT may have reached the server); returns true when *bump is not empty. */
bool txtrack_abandon(TxTrack *t, CacheWrites *bump);
/* Whether the open transaction or a request in flight has writes noted (nothing to lose if not). */
bool txtrack_has_writes(const TxTrack *t);

#endif
