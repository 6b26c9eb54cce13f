/*
 * loop — the monotonic clock, one-shot timers and the reaper (see loop.h).
 */
#include "loop.h"

#include <time.h>

int64_t loop_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loop_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void loop_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	LoopTimer *t = arg;
	t->fire(t->arg);
}

void loop_timer_init(LoopTimer *t, struct event_base *base, void (*fire)(void *arg), void *arg)
{
	t->fire = fire;
	t->arg = arg;
	evtimer_assign(&t->ev, base, loop_on_timer, t);
	t->ready = true;
}

void loop_timer_start(LoopTimer *t, int64_t ms)
{
	if (!t->ready)
		return; /* released with its owner's close */
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	evtimer_add(&t->ev, &tv); /* a pending timer moves */
}

void loop_timer_start_unless_pending(LoopTimer *t, int64_t ms)
{
	if (!loop_timer_pending(t))
		loop_timer_start(t, ms);
}

void loop_timer_fire_soon(LoopTimer *t)
{
	if (t->ready)
		event_active(&t->ev, EV_TIMEOUT, 0);
}

void loop_timer_stop(LoopTimer *t)
{
	if (t->ready)
		evtimer_del(&t->ev);
}

bool loop_timer_pending(const LoopTimer *t) { return t->ready && evtimer_pending(&t->ev, NULL); }

void loop_timer_release(LoopTimer *t)
{
	loop_timer_stop(t);
	t->ready = false;
}

void loop_reaper_run(LoopReaper *r)
{
	ListNode *n;
	while ((n = list_pop_front(&r->dead)) != NULL) {
		LoopDeferred *d = list_entry(n, LoopDeferred, node);
		d->free_fn(d);
	}
}

static void loop_on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	loop_reaper_run(arg);
}

bool loop_reaper_init(LoopReaper *r, struct event_base *base)
{
	list_init(&r->dead);
	r->ev = event_new(base, -1, 0, loop_on_reap, r);
	return r->ev != NULL;
}

void loop_defer_free(LoopReaper *r, LoopDeferred *d, void (*free_fn)(LoopDeferred *d))
{
	d->free_fn = free_fn;
	list_push_back(&r->dead, &d->node);
	if (r->ev)
		event_active(r->ev, EV_TIMEOUT, 0);
}

void loop_reaper_free(LoopReaper *r)
{
	loop_reaper_run(r);
	if (r->ev)
		event_free(r->ev);
	r->ev = NULL;
}
