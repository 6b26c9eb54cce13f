/*
 * pipeline — what a server connection still owes its client: one entry per request message sent
 * (or pretended sent) to the server, matched in order against the server's replies.
 *
 * Owns: the reply rules of the v3 protocol (which reply completes which request, how an
 * ErrorResponse in an extended-protocol batch makes the server skip everything up to Sync, how
 * COPY FROM STDIN swallows Syncs), and the flags that let pgrelay send requests of its own whose
 * replies are swallowed (INTERNAL) or answer requests itself without the server (SYNTHETIC).
 * Pure: no sockets, no statements, no clients.
 */
#ifndef PGRELAY_PIPELINE_H
#define PGRELAY_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	PIPE_QUERY = 1,     /* simple Query: replies until ReadyForQuery */
	PIPE_FUNCTION,      /* FunctionCall: until ReadyForQuery */
	PIPE_SYNC,          /* Sync: ReadyForQuery */
	PIPE_PARSE,         /* ParseComplete */
	PIPE_BIND,          /* BindComplete */
	PIPE_DESCRIBE_STMT, /* ParameterDescription, then RowDescription or NoData */
	PIPE_DESCRIBE_PORTAL, /* RowDescription or NoData */
	PIPE_EXECUTE,       /* DataRow*, then CommandComplete / EmptyQuery / PortalSuspended */
	PIPE_CLOSE,         /* CloseComplete */
	PIPE_COPY_END,      /* marker: the client ended a COPY (CopyDone/CopyFail) */
} PipeKind;

#define PIPE_INTERNAL 0x01  /* sent by pgrelay: replies are not forwarded */
#define PIPE_SYNTHETIC 0x02 /* not sent: pgrelay produces the reply when it is due */
#define PIPE_FAILS 0x04     /* sent by pgrelay so that the server fails the batch or transaction as it
			     * would for an error of the client's: its ErrorResponse is replaced by
			     * pgrelay's own, its other replies (ReadyForQuery) go to the client */

typedef struct PipeEntry {
	uint8_t kind;
	uint8_t flags;
	uint32_t tag; /* caller's data (e.g. a statement id); 0 = none */
} PipeEntry;

typedef enum {
	PIPE_END_DONE,    /* the server answered it */
	PIPE_END_FAILED,  /* the server answered it with ErrorResponse */
	PIPE_END_SKIPPED, /* the server skipped it (error earlier in the batch) */
} PipeEnd;

typedef struct Pipeline {
	PipeEntry *ring;
	size_t cap, head, count;
	bool skipping;   /* an extended-protocol error: the server ignores messages until Sync */
	bool copy_in;    /* the server is in COPY FROM STDIN: it ignores Sync and Flush */
	bool batch_open; /* extended-protocol messages sent since the last Sync */
} Pipeline;

/* Called for each entry that leaves the pipeline. */
typedef void (*PipeEndFn)(void *ctx, const PipeEntry *e, PipeEnd how);

void pipeline_init(Pipeline *p);
void pipeline_free(Pipeline *p);
void pipeline_clear(Pipeline *p);

/*
 * Records a request about to be sent (or answered synthetically). Returns false when the server
 * will ignore it (skipping after an error, or a Sync during COPY FROM STDIN): then it must still
 * be forwarded if it is a real message, but no reply is expected.
 */
bool pipeline_push(Pipeline *p, PipeKind kind, uint8_t flags, uint32_t tag);

/* The entry the next reply belongs to, or NULL when none is expected. */
const PipeEntry *pipeline_head(const Pipeline *p);

/*
 * Takes one reply message type from the server. Returns the flags of the entry it belongs to
 * (so PIPE_INTERNAL means: swallow it), or 0 for asynchronous messages and replies nobody waited
 * for. Entries completed by this reply end through end(); a ReadyForQuery also ends whatever was
 * still open before its Sync.
 */
uint8_t pipeline_reply(Pipeline *p, uint8_t type, PipeEndFn end, void *ctx);

/* Pops a SYNTHETIC entry at the head (the caller has just produced its reply). */
bool pipeline_pop_synthetic(Pipeline *p, PipeEntry *out);

/* True when nothing is owed and no batch or COPY is open (the connection may change hands). */
bool pipeline_idle(const Pipeline *p);

#endif
