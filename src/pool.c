/*
 * pool — server connections per (service, user) (see pool.h for what it owns).
 *
 * Idle servers are reused last-in first-out (warm connections stay warm and the rest age out
 * through idle_timeout); waiting clients are served first-in first-out.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "tls.h"
#include "xalloc.h"

#define POOL_RETRY_AFTER_FAILURE_MS 5000

static void pool_server_available(Pool *p, Server *s);
static void pool_server_failed(Pool *p, Server *s, const char *sqlstate, const char *error);
static void pool_server_moved(Pool *p, Server *s);
static void pool_server_removed(Pool *p, Server *s);

/* What a server of this pool reports (server.h). */
static const ServerOwnerOps pool_server_ops = {
	.available = pool_server_available,
	.failed = pool_server_failed,
	.moved = pool_server_moved,
	.removed = pool_server_removed,
};

int pool_server_count(const Pool *p)
{
	return (int)(p->idle.count + p->active.count + p->opening.count + p->resetting.count);
}

/* Server credentials for this pool: the backend's user, or the client's own (plain or md5). */
static bool pool_set_credentials(Pool *p, const ConfigBackend *be, const char *user_password)
{
	const char *user, *password;
	if (be->user) {
		user = be->user;
		password = be->password;
	} else {
		if (user_password && scram_is_verifier(user_password))
			return false;
		user = p->user;
		password = user_password;
	}
	free((char *)p->server_user);
	if (p->server_password) {
		memset((char *)p->server_password, 0, strlen(p->server_password));
		free((char *)p->server_password);
	}
	p->server_user = xstrdup(user);
	p->server_password = xstrdup(password);
	return true;
}

/* (Re)builds the TLS context towards the service's servers; on error the old one stays. */
static void pool_load_tls(Pool *p)
{
	char err[512] = "";
	SSL_CTX *ctx = tls_client_context(&p->service->tls, err, sizeof err);
	if (!ctx && err[0]) {
		log_error(p->name, "services.%s.tls: %s%s", p->service->name, err,
			  p->tls_ctx ? " (keeping the previous TLS settings)" : "");
		return;
	}
	if (p->tls_ctx)
		SSL_CTX_free(p->tls_ctx);
	p->tls_ctx = ctx;
}

Pool *pool_get(Runtime *rt, const ConfigService *svc, int replica, const char *user, const char *user_password)
{
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (!p->removed && p->replica == replica && strcmp(p->service_name, svc->name) == 0 &&
		    strcmp(p->user, user) == 0)
			return p;
	}
	const ConfigBackend *be = config_backend(svc, replica);
	if (!be)
		return NULL;
	Pool *p = xcalloc(1, sizeof(*p));
	p->rt = rt;
	p->service_name = xstrdup(svc->name);
	p->replica = replica;
	p->user = xstrdup(user);
	if (replica < 0)
		snprintf(p->name, sizeof(p->name), "%s@%s", user, svc->name);
	else
		snprintf(p->name, sizeof(p->name), "%s@%s/replica%d", user, svc->name, replica);
	if (!pool_set_credentials(p, be, user_password)) {
		free(p->service_name);
		free(p->user);
		free(p);
		return NULL;
	}
	p->config = config_ref(rt->config);
	p->service = svc;
	p->backend = be;
	pool_load_tls(p);
	list_init(&p->idle);
	list_init(&p->active);
	list_init(&p->opening);
	list_init(&p->resetting);
	list_init(&p->waiting);
	list_init(&p->login_waiting);
	params_init(&p->server_params);
	list_push_back(&rt->pools, &p->node);
	log_info(p->name, "new pool (max %d, min %d)", svc->pool.max, svc->pool.min);
	return p;
}

static void pool_server_moved(Pool *p, Server *s)
{
	List *target;
	switch (s->state) {
	case SV_CONNECTING:
	case SV_LOGIN: target = &p->opening; break;
	case SV_IDLE: target = &p->idle; break;
	case SV_ACTIVE: target = &p->active; break;
	case SV_RESETTING: target = &p->resetting; break;
	default: target = NULL; break;
	}
	if (s->pool_list == target)
		return;
	if (s->pool_list)
		list_remove(s->pool_list, &s->pool_node);
	s->pool_list = target;
	if (target == &p->idle)
		list_push_front(target, &s->pool_node); /* LIFO */
	else if (target)
		list_push_back(target, &s->pool_node);
}

/* Opens connections while clients wait for more than are already being opened. */
static void pool_launch_if_needed(Pool *p)
{
	if (p->removed)
		return;
	size_t want = p->paused ? 0 : p->waiting.count;
	if (!p->have_params && p->login_waiting.count && want == 0)
		want = 1;
	while (p->opening.count < want && pool_server_count(p) < p->service->pool.max)
		server_launch(p, &pool_server_ops);
}

static void waiter_push(List *l, PoolWaiter *w)
{
	list_push_back(l, &w->node);
	w->list = l;
}

/* The first waiter of l, taken off it; NULL when none. */
static PoolWaiter *waiter_pop(List *l)
{
	ListNode *n = list_pop_front(l);
	if (!n)
		return NULL;
	PoolWaiter *w = list_entry(n, PoolWaiter, node);
	w->list = NULL;
	return w;
}

void pool_request_server(Pool *p, PoolWaiter *w)
{
	ListNode *n = p->paused ? NULL : list_first(&p->idle);
	if (n) {
		w->ops->granted(w, list_entry(n, Server, pool_node));
		return;
	}
	waiter_push(&p->waiting, w);
	w->ops->queued(w, p->service->pool.query_wait_timeout_ms);
	if (pool_server_count(p) >= p->service->pool.max)
		log_debug(w->name, "waiting for a server of pool %s (all %d in use)", p->name, p->service->pool.max);
	pool_launch_if_needed(p);
}

void pool_resume(Pool *p)
{
	p->paused = false;
	ListNode *n;
	while (p->waiting.count && (n = list_first(&p->idle)) != NULL) {
		PoolWaiter *w = waiter_pop(&p->waiting);
		w->ops->granted(w, list_entry(n, Server, pool_node));
	}
	pool_launch_if_needed(p);
}

void pool_cancel_wait(PoolWaiter *w)
{
	if (!w->list)
		return;
	list_remove(w->list, &w->node);
	w->list = NULL;
}

void pool_wait_login(Pool *p, PoolWaiter *w)
{
	waiter_push(&p->login_waiting, w);
	ListNode *n = list_first(&p->idle);
	if (n) {
		/* An idle server exists but its parameters were not kept (cannot happen today). */
		pool_server_available(p, list_entry(n, Server, pool_node));
		return;
	}
	pool_launch_if_needed(p);
}

static bool pool_should_retire(Pool *p, Server *s, const char **why)
{
	int64_t lifetime = p->service->pool.server_lifetime_ms;
	if (s->close_on_release)
		*why = "marked for closing (error, FATAL or configuration change)";
	else if (s->tx_status != 'I')
		*why = "not idle after release";
	else if (lifetime > 0 && loop_now_ms() - s->created_ms >= lifetime)
		*why = "server_lifetime reached";
	else if (pool_server_count(p) > p->service->pool.max)
		*why = "pool is above its max size";
	else if (p->removed && p->waiting.count == 0)
		*why = "service removed from the configuration";
	else if (p->rt->shutting_down && p->waiting.count == 0)
		*why = "shutting down";
	else
		return false;
	return true;
}

static void pool_server_available(Pool *p, Server *s)
{
	const char *why;
	if (pool_should_retire(p, s, &why)) {
		server_close(s, false, why);
		return;
	}
	if (!p->have_params) {
		params_copy(&p->server_params, &s->params);
		p->have_params = true;
		PoolWaiter *w;
		while ((w = waiter_pop(&p->login_waiting)) != NULL)
			w->ops->login_ready(w);
	}
	PoolWaiter *w = p->paused ? NULL : waiter_pop(&p->waiting);
	if (w) {
		w->ops->granted(w, s);
		return;
	}
	s->state = SV_IDLE;
	s->last_used_ms = loop_now_ms();
	pool_server_moved(p, s);
}

static void pool_server_failed(Pool *p, Server *s, const char *sqlstate, const char *error)
{
	(void)s;
	p->last_connect_error_ms = loop_now_ms();
	snprintf(p->last_error, sizeof(p->last_error), "%s", error);
	if (p->replica >= 0) {
		/* Reads waiting for this replica choose again (another replica, or the primary). */
		PoolWaiter *w;
		while ((w = waiter_pop(&p->waiting)) != NULL)
			w->ops->rerouted(w);
		return;
	}
	/* Other connections may still serve the waiters; with none left, fail them now. */
	if (pool_server_count(p) > 1)
		return;
	char msg[400];
	snprintf(msg, sizeof(msg), "pgrelay could not connect to service \"%s\"%s: %s", p->service->name,
		 p->replica < 0 ? "" : " (replica)", error);
	PoolWaiter *w;
	while ((w = waiter_pop(&p->login_waiting)) != NULL)
		w->ops->failed(w, sqlstate, msg);
	while ((w = waiter_pop(&p->waiting)) != NULL)
		w->ops->failed(w, sqlstate, msg);
}

static void pool_server_removed(Pool *p, Server *s)
{
	if (s->pool_list) {
		list_remove(s->pool_list, &s->pool_node);
		s->pool_list = NULL;
	}
	pool_launch_if_needed(p);
}

void pool_free(Pool *p)
{
	ListNode *n;
	List *lists[] = {&p->idle, &p->active, &p->opening, &p->resetting};
	for (size_t i = 0; i < 4; i++)
		while ((n = list_first(lists[i])) != NULL)
			server_close(list_entry(n, Server, pool_node), false, "pool freed");
	list_remove(&p->rt->pools, &p->node);
	params_free(&p->server_params);
	free(p->service_name);
	free(p->user);
	free((char *)p->server_user);
	if (p->server_password) {
		memset((char *)p->server_password, 0, strlen(p->server_password));
		free((char *)p->server_password);
	}
	if (p->tls_ctx)
		SSL_CTX_free(p->tls_ctx);
	config_unref(p->config);
	free(p);
}

static void pool_maintain(Pool *p, int64_t now)
{
	const ConfigPool *cfg = &p->service->pool;
	ListNode *n, *t;
	/* Oldest-used idle servers are at the back (LIFO reuse at the front). */
	list_for_each_safe(n, t, &p->idle) {
		Server *s = list_entry(n, Server, pool_node);
		int total = pool_server_count(p);
		if (cfg->server_lifetime_ms > 0 && now - s->created_ms >= cfg->server_lifetime_ms)
			server_close(s, false, "server_lifetime reached");
		else if (p->removed || p->rt->shutting_down)
			server_close(s, false, p->removed ? "service removed from the configuration" : "shutting down");
		else if (cfg->idle_timeout_ms > 0 && total > cfg->min && now - s->last_used_ms >= cfg->idle_timeout_ms)
			server_close(s, false, "idle_timeout reached");
	}
	if (!p->removed && !p->rt->shutting_down && pool_server_count(p) < cfg->min &&
	    (p->last_connect_error_ms == 0 || now - p->last_connect_error_ms >= POOL_RETRY_AFTER_FAILURE_MS)) {
		int missing = cfg->min - pool_server_count(p);
		for (int i = 0; i < missing; i++)
			server_launch(p, &pool_server_ops);
	}
}

/* A replica the health checks call down gets no new reads (balance), but reads already sent to it
 * would wait as long as it does: a hung server (SIGSTOP, a stalled disk, a frozen VM) keeps its
 * connections open and answers nothing. Each read on it that can still go elsewhere (outside a
 * transaction, no byte of its answer sent to the client) is sent elsewhere, as when a replica
 * dies before answering: its server connection is closed. */
static void pool_leave_down_replica(Pool *p)
{
	if (p->replica < 0 || !p->rt->health || list_empty(&p->active))
		return;
	const BackendHealth *h = health_backend(p->rt->health, p->service->name, p->replica);
	if (!h || h->up)
		return;
	ListNode *n, *t;
	list_for_each_safe(n, t, &p->active) {
		Server *s = list_entry(n, Server, pool_node);
		if (s->session && s->retry_ok && !s->replies_flow)
			server_close(s, false, "the replica is down per its health checks: the read waiting on it goes elsewhere");
	}
}

void pool_janitor(Runtime *rt)
{
	int64_t now = loop_now_ms();
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		pool_leave_down_replica(p);
		pool_maintain(p, now);
		if (p->removed && pool_server_count(p) == 0 && list_empty(&p->waiting) && list_empty(&p->login_waiting))
			pool_free(p);
	}
}

static bool backend_same(const ConfigBackend *a, const ConfigBackend *b)
{
	#define SAME_STR(x, y) ((x) == (y) || ((x) && (y) && strcmp((x), (y)) == 0))
	return SAME_STR(a->host, b->host) && a->port == b->port && SAME_STR(a->dbname, b->dbname) &&
	       SAME_STR(a->user, b->user) && SAME_STR(a->password, b->password);
	#undef SAME_STR
}

void pool_apply_config(Runtime *rt, Config *cfg)
{
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		const ConfigService *svc = p->removed ? NULL : config_find_service(cfg, p->service_name);
		const ConfigBackend *be = svc ? config_backend(svc, p->replica) : NULL;
		if (!be) {
			if (!p->removed)
				log_info(p->name, "%s removed from the configuration: pool drains",
					 svc ? "replica" : "service");
			p->removed = true;
			continue;
		}
		bool moved = !backend_same(be, p->backend);
		if (!be->user && p->backend->user) {
			/* The pool would now need the client's password, which it does not have. */
			log_warning(p->name, "service no longer has a user: pool drains, new clients get a new pool");
			p->removed = true;
			continue;
		}
		if (be->user)
			pool_set_credentials(p, be, NULL);
		const ConfigPool *o = &p->service->pool, *nw = &svc->pool;
		if (o->max != nw->max || o->min != nw->min)
			log_info(p->name, "pool size now max %d, min %d (was %d, %d)", nw->max, nw->min, o->max, o->min);
		Config *old = p->config;
		p->config = config_ref(cfg);
		p->service = svc;
		p->backend = be;
		config_unref(old);
		pool_load_tls(p);
		if (moved) {
			log_info(p->name, "server address or credentials changed: reconnecting as connections come free");
			List *lists[] = {&p->active, &p->opening, &p->resetting};
			for (size_t i = 0; i < 3; i++) {
				ListNode *m, *u;
				list_for_each_safe(m, u, lists[i])
					list_entry(m, Server, pool_node)->close_on_release = true;
			}
			ListNode *m, *u;
			list_for_each_safe(m, u, &p->idle)
				server_close(list_entry(m, Server, pool_node), false, "server address or credentials changed");
			p->have_params = false;
			params_clear(&p->server_params);
		}
		pool_launch_if_needed(p);
	}
}
