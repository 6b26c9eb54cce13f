/*
 * loop — the monotonic clock and the reaper (see loop.h).
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
