/*
 * loop — what every module on the event loop shares and nothing else: the monotonic clock,
 * one-shot timers in milliseconds, and the reaper, which frees objects closed inside a callback
 * once the loop has left that callback (a client or server may be closed while a function up the
 * stack still holds it).
 *
 * Owns: the timers' events and the reaper's event and its list of objects to free. Does not know
 * what they are: each object embeds a LoopTimer or a LoopDeferred with the function to call.
 */
#ifndef PGRELAY_LOOP_H
#define PGRELAY_LOOP_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

#include "list.h"

/* Milliseconds on the monotonic clock. */
int64_t loop_now_ms(void);
/* Microseconds on the monotonic clock. */
int64_t loop_now_us(void);

/*
 * A one-shot timer embedded in its owner: fire(arg) runs once, ms after loop_timer_start (0: in
 * the next loop pass). Starting it again moves it; stopping a timer that is not pending is fine.
 */
typedef struct LoopTimer {
	struct event ev;
	void (*fire)(void *arg);
	void *arg;
	bool ready; /* loop_timer_init ran (and loop_timer_release did not) */
} LoopTimer;

void loop_timer_init(LoopTimer *t, struct event_base *base, void (*fire)(void *arg), void *arg);
void loop_timer_start(LoopTimer *t, int64_t ms);
/* Starts it only when it is not pending already (a deadline that must not move). */
void loop_timer_start_unless_pending(LoopTimer *t, int64_t ms);
/* fire runs from the loop as soon as the current callback has returned. */
void loop_timer_fire_soon(LoopTimer *t);
void loop_timer_stop(LoopTimer *t);
bool loop_timer_pending(const LoopTimer *t);
/* Stops it for good (before its owner is freed). */
void loop_timer_release(LoopTimer *t);

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
