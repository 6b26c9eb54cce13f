/*
 * balance — replica choice for reads (see balance.h).
 */
#include "balance.h"

#include <string.h>

#include "health.h"
#include "xalloc.h"

typedef struct BalanceService {
	char *service;
	uint32_t next;         /* round-robin position */
	size_t n;
	int64_t *avoid_until;  /* per replica, monotonic ms */
} BalanceService;

struct BalanceState {
	BalanceService *services;
	size_t n;
};

static BalanceService *state_for(Runtime *rt, const ConfigService *svc)
{
	if (!rt->balance)
		rt->balance = xcalloc(1, sizeof(*rt->balance));
	struct BalanceState *st = rt->balance;
	for (size_t i = 0; i < st->n; i++) {
		BalanceService *b = &st->services[i];
		if (strcmp(b->service, svc->name) == 0) {
			if (b->n < svc->n_replicas) {
				b->avoid_until = realloc(b->avoid_until, svc->n_replicas * sizeof(int64_t));
				xalloc_check(b->avoid_until);
				memset(b->avoid_until + b->n, 0, (svc->n_replicas - b->n) * sizeof(int64_t));
				b->n = svc->n_replicas;
			}
			return b;
		}
	}
	st->services = xalloc_check(realloc(st->services, (st->n + 1) * sizeof(*st->services)));
	BalanceService *b = &st->services[st->n++];
	b->service = xstrdup(svc->name);
	b->next = 0;
	b->n = svc->n_replicas;
	b->avoid_until = xcalloc(b->n ? b->n : 1, sizeof(int64_t));
	return b;
}

int balance_choose_replica(Runtime *rt, const ConfigService *svc, uint64_t min_lsn)
{
	if (svc->n_replicas == 0 || !rt->health)
		return -1;
	BalanceService *b = state_for(rt, svc);
	int64_t now = loop_now_ms();
	int best = -1, best_load = 0;
	for (size_t k = 0; k < svc->n_replicas; k++) {
		size_t i = (b->next + k) % svc->n_replicas;
		BackendHealth *h = health_backend(rt->health, svc->name, (int)i);
		if (!h || !health_replica_usable(h) || b->avoid_until[i] > now)
			continue;
		if (min_lsn && h->lsn < min_lsn)
			continue; /* has not replayed the client's own last commit yet */
		if (svc->balance == CONFIG_BALANCE_ROUND_ROBIN) {
			best = (int)i;
			break;
		}
		if (best < 0 || h->outstanding < best_load) {
			best = (int)i;
			best_load = h->outstanding;
		}
	}
	if (best >= 0)
		b->next = (uint32_t)(best + 1) % (uint32_t)svc->n_replicas;
	return best;
}

void balance_avoid(Runtime *rt, const ConfigService *svc, int replica, int64_t ms)
{
	if (replica < 0 || (size_t)replica >= svc->n_replicas)
		return;
	BalanceService *b = state_for(rt, svc);
	b->avoid_until[replica] = loop_now_ms() + ms;
}

void balance_track(Runtime *rt, const ConfigService *svc, int replica, int delta)
{
	if (replica < 0 || !rt->health)
		return;
	BackendHealth *h = health_backend(rt->health, svc->name, replica);
	if (!h)
		return;
	h->outstanding += delta;
	if (delta > 0)
		h->reads_served++;
}

void balance_free(Runtime *rt)
{
	struct BalanceState *st = rt->balance;
	if (!st)
		return;
	for (size_t i = 0; i < st->n; i++) {
		free(st->services[i].service);
		free(st->services[i].avoid_until);
	}
	free(st->services);
	free(st);
	rt->balance = NULL;
}
