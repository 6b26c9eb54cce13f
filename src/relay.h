/*
 * relay — walks the messages in one connection's read buffer and moves each to its fate: forward to
 * the peer (batched into one send per contiguous run), drop, wait for more bytes, or stop.
 *
 * Owns: framing across reads (messages larger than the buffer stream through, only messages an
 * owner must inspect are held whole), batching of forwarded spans. The owner (client or server)
 * decides per message through a callback; relay knows no protocol semantics.
 */
#ifndef PGRELAY_RELAY_H
#define PGRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef enum {
	RELAY_FORWARD = 1,      /* send the whole message to the peer */
	RELAY_DROP = 2,         /* consume it, send nothing */
	RELAY_NEED_BODY = 3,    /* call again when the whole message is buffered */
	RELAY_STOP = 4,         /* leave it unconsumed; return RELAY_STOPPED */
	RELAY_CLOSED = 5,       /* the owner has closed; touch nothing */
	RELAY_ERROR = 6,        /* framing error / message too large: the owner must close */
	RELAY_AFTER_STOP = 0x10,/* flag on FORWARD/DROP: consume, then return RELAY_STOPPED */
} RelayAction;

typedef enum {
	RELAY_DRAINED,  /* every complete message was handled; waiting for more bytes */
	RELAY_STOPPED,  /* the callback asked to stop */
	RELAY_CLOSED_OWNER,
	RELAY_BAD_INPUT,   /* invalid frame or a message above the size limit */
} RelayResult;

/*
 * Called once per message. msg points to the type byte; avail bytes of its total are buffered;
 * whole says whether avail == total.
 */
typedef RelayAction (*RelayMessageFn)(void *owner, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail);

/*
 * Processes src's buffered bytes. Forwarded bytes go to dst (NULL: dropped). Returns why it
 * stopped. On RELAY_BAD_INPUT, *why describes the problem.
 */
RelayResult relay_process(Conn *src, Conn *dst, RelayMessageFn fn, void *owner, const char **why);

#endif
