/*
 * relay — walks the messages in one connection's read buffer and moves each to its fate: forward to
 * the peer (batched into one send per contiguous run), drop, replace, wait for more bytes, or stop.
 *
 * Owns: framing across reads (messages larger than the buffer stream through; only messages an
 * owner must inspect are held whole), batching of forwarded spans, and keeping bytes the owner
 * injects in order with forwarded ones. The owner (client or server) decides per message through
 * a callback; relay knows no protocol semantics.
 */
#ifndef PGRELAY_RELAY_H
#define PGRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef enum {
	RELAY_FORWARD = 1,   /* send the message (minus rc->skip_prefix bytes) to the peer */
	RELAY_DROP = 2,      /* consume it, send nothing */
	RELAY_NEED_BODY = 3, /* call again when the whole message is buffered */
	RELAY_STOP = 4,      /* leave it unconsumed; relay_process returns RELAY_STOPPED */
	RELAY_CLOSED = 5,    /* the owner has closed; touch nothing */
	RELAY_ERROR = 6,     /* protocol violation: the owner must close */
	RELAY_ACTION_MASK = 0x0f,
	RELAY_AFTER_STOP = 0x10, /* flag on FORWARD/DROP: consume, then return RELAY_STOPPED */
	RELAY_AFTER_CALL = 0x20, /* flag on FORWARD/DROP: consume, then call ops->after */
} RelayAction;

typedef enum {
	RELAY_DRAINED,      /* every complete message was handled; waiting for more bytes */
	RELAY_STOPPED,      /* the callback asked to stop */
	RELAY_CLOSED_OWNER,
	RELAY_BAD_INPUT,    /* invalid frame, message above the size limit, or RELAY_ERROR */
} RelayResult;

typedef struct RelayCtx {
	Conn *src, *dst;
	size_t span;        /* start of the bytes decided "forward" but not yet sent */
	size_t skip_prefix; /* set by a callback returning FORWARD: bytes of the message not to send */
} RelayCtx;

typedef struct RelayOps {
	/* Called once per message: msg points to the type byte; avail of total bytes are buffered. */
	RelayAction (*message)(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
			       size_t avail);
	/* Called after a message returned with RELAY_AFTER_CALL; may relay_send. Returns
	 * RELAY_FORWARD to go on, RELAY_CLOSED if the owner closed, RELAY_STOP to stop. */
	RelayAction (*after)(void *owner, RelayCtx *rc);
} RelayOps;

/*
 * Sends bytes to the peer in order: everything decided "forward" before the current message goes
 * first. (Inside ops->after, the message just handled counts as before.)
 */
void relay_send(RelayCtx *rc, const void *data, size_t n);

/* Processes src's buffered bytes. On RELAY_BAD_INPUT, *why says what was wrong. */
RelayResult relay_process(Conn *src, Conn *dst, const RelayOps *ops, void *owner, const char **why);

#endif
