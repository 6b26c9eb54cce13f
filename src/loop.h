/*
 * loop — what every module on the event loop shares and nothing else: the monotonic clock and
 * the reaper, which frees objects closed inside a callback once the loop has left that callback
 * (a client or server may be closed while a function up the stack still holds it).
 *
 * Owns: the reaper's event and its list of objects to free. Does not know what they are: each
 * object embeds a LoopDeferred with the function that frees it.
 */
#ifndef PGRELAY_LOOP_H
#define PGRELAY_LOOP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "list.h"

/* Milliseconds on the monotonic clock. */
int64_t loop_now_ms(void);
/* Microseconds on the monotonic clock. */
int64_t loop_now_us(void);

typedef struct LoopDeferred LoopDeferred;
struct LoopDeferred {
	ListNode node;
	void (*free_fn)(LoopDeferred *d); /* frees the object that embeds d */
};

typedef struct LoopReaper {
	struct event *ev;
	List dead; /* LoopDeferred.node */
} LoopReaper;

bool loop_reaper_init(LoopReaper *r, struct event_base *base);
/* Frees d's object (free_fn) once the current callback has returned. */
void loop_defer_free(LoopReaper *r, LoopDeferred *d, void (*free_fn)(LoopDeferred *d));
/* Frees everything waiting now (at exit). */
void loop_reaper_run(LoopReaper *r);
/* Frees everything waiting, then the reaper itself. */
void loop_reaper_free(LoopReaper *r);

#endif
