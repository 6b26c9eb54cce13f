/*
 * http — /metrics and /health on evhttp (see http.h for what it owns and the metric names).
 */
#include "http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "catalog_loader.h"
#include "session.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "redis.h"
#include "server.h"
#include "stats.h"
#include "xalloc.h"

#define HTTP_TIMEOUT_S 10

/* Read-only walk of a list (nothing is removed while rendering). */
#define list_for_each(node, list) for ((node) = (list)->head.next; (node) != &(list)->head; (node) = (node)->next)

struct HttpServer {
	Runtime *rt;
	struct evhttp *http;
	char *host;
	int port;
};

/* ---- exposition helpers ---- */

static void family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped. */
static void label_value(struct evbuffer *b, const char *v)
{
	if (!v)
		v = "";
	const char *run = v;
	for (const char *p = v;; p++) {
		if (*p == '\\' || *p == '"' || *p == '\n' || *p == 0) {
			evbuffer_add(b, run, (size_t)(p - run));
			if (*p == 0)
				break;
			evbuffer_add(b, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n", 2);
			run = p + 1;
		}
	}
}

static void label(struct evbuffer *b, bool *first, const char *name, const char *value)
{
	evbuffer_add_printf(b, "%s%s=\"", *first ? "" : ",", name);
	label_value(b, value);
	evbuffer_add(b, "\"", 1);
	*first = false;
}

static void sample_u64(struct evbuffer *b, uint64_t v) { evbuffer_add_printf(b, "} %llu\n", (unsigned long long)v); }
static void sample_f(struct evbuffer *b, double v) { evbuffer_add_printf(b, "} %.6f\n", v); }
static void sample_us(struct evbuffer *b, uint64_t us)
{
	evbuffer_add_printf(b, "} %llu.%06llu\n", (unsigned long long)(us / 1000000), (unsigned long long)(us % 1000000));
}

static const char *role_name(int replica) { return replica < 0 ? "primary" : "replica"; }

static void backend_addr(char *out, size_t cap, const ConfigBackend *be)
{
	if (be)
		snprintf(out, cap, "%s:%d", be->host, be->port);
	else
		snprintf(out, cap, "?");
}

/* service, user, backend, role of a pool; the caller closes the braces. */
static void pool_labels(struct evbuffer *b, const char *name, const Pool *p)
{
	char addr[300];
	backend_addr(addr, sizeof addr, p->backend);
	bool first = true;
	evbuffer_add_printf(b, "%s{", name);
	label(b, &first, "service", p->service_name);
	label(b, &first, "user", p->user);
	label(b, &first, "backend", addr);
	label(b, &first, "role", role_name(p->replica));
}

/* ---- pools ---- */

static bool same_labels(const Pool *a, const Pool *b)
{
	return a->replica == b->replica && strcmp(a->service_name, b->service_name) == 0 && strcmp(a->user, b->user) == 0 &&
	       a->backend && b->backend && a->backend->port == b->backend->port &&
	       strcmp(a->backend->host, b->backend->host) == 0;
}

/*
 * A pool removed from the configuration drains while a new one with the same labels may already
 * serve (credentials changed): one series per label set, the live pool's (a scrape with two
 * samples of one series is invalid).
 */
static bool pool_shadowed(Runtime *rt, const Pool *p)
{
	if (!p->removed)
		return false; /* live pools are unique per label set (pool_get) */
	bool before = true; /* among removed ones, the first in the list is shown */
	ListNode *n;
	list_for_each(n, &rt->pools) {
		const Pool *q = list_entry(n, Pool, node);
		if (q == p) {
			before = false;
			continue;
		}
		if (same_labels(p, q) && (!q->removed || before))
			return true;
	}
	return false;
}

typedef enum { PC_U64, PC_US } PoolCounterKind;

static void pool_counter(Runtime *rt, struct evbuffer *b, const char *name, const char *help, size_t offset,
			 PoolCounterKind kind)
{
	family(b, name, "counter", help);
	ListNode *n;
	list_for_each(n, &rt->pools) {
		const Pool *p = list_entry(n, Pool, node);
		if (pool_shadowed(rt, p))
			continue;
		uint64_t v;
		memcpy(&v, (const char *)&p->stats.total + offset, sizeof v);
		pool_labels(b, name, p);
		if (kind == PC_US)
			sample_us(b, v);
		else
			sample_u64(b, v);
	}
}

static size_t active_with_client(const Pool *p)
{
	size_t n = 0;
	const ListNode *m;
	list_for_each(m, &p->active) {
		const Server *s = list_entry(m, Server, pool_node);
		if (s->session)
			n++;
	}
	return n;
}

typedef struct StateCount {
	const char *state;
	size_t count;
} StateCount;

/* One sample per state of the pool's family `name`. */
static void state_samples(struct evbuffer *b, const char *name, const Pool *p, const StateCount *st, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		pool_labels(b, name, p);
		bool first = false;
		label(b, &first, "state", st[i].state);
		sample_u64(b, st[i].count);
	}
}

static void render_pools(Runtime *rt, struct evbuffer *b)
{
	ListNode *n;
	family(b, "pgrelay_pool_servers", "gauge",
	       "Server connections of the pool by state (active: lent to a client; idle; used: running the reset query; login: connecting or logging in).");
	list_for_each(n, &rt->pools) {
		const Pool *p = list_entry(n, Pool, node);
		if (pool_shadowed(rt, p))
			continue;
		const StateCount st[] = {{"active", p->active.count}, {"idle", p->idle.count},
					 {"used", p->resetting.count}, {"login", p->opening.count}};
		state_samples(b, "pgrelay_pool_servers", p, st, sizeof st / sizeof st[0]);
	}
	family(b, "pgrelay_pool_clients", "gauge",
	       "Clients of the pool by state (active: holding one of its servers; waiting: queued for a server; login: waiting for its server parameters).");
	list_for_each(n, &rt->pools) {
		const Pool *p = list_entry(n, Pool, node);
		if (pool_shadowed(rt, p))
			continue;
		const StateCount st[] = {{"active", active_with_client(p)}, {"waiting", p->waiting.count},
					 {"login", p->login_waiting.count}};
		state_samples(b, "pgrelay_pool_clients", p, st, sizeof st / sizeof st[0]);
	}
#define PC(field) offsetof(StatsCounters, field)
	pool_counter(rt, b, "pgrelay_pool_transactions_total", "Transactions served by the pool.", PC(xact_count), PC_U64);
	pool_counter(rt, b, "pgrelay_pool_queries_total",
		     "Client requests (Query, or extended-protocol batch up to Sync) answered, cached ones included.",
		     PC(query_count), PC_U64);
	pool_counter(rt, b, "pgrelay_pool_cached_queries_total",
		     "Client requests answered from the result cache without a server.", PC(cached_query_count), PC_U64);
	pool_counter(rt, b, "pgrelay_pool_server_assignments_total", "Times a server of the pool was linked to a client.",
		     PC(server_assignment_count), PC_U64);
	pool_counter(rt, b, "pgrelay_pool_received_bytes_total", "Bytes received from the clients the pool served.",
		     PC(bytes_received), PC_U64);
	pool_counter(rt, b, "pgrelay_pool_sent_bytes_total", "Bytes sent to the clients the pool served.", PC(bytes_sent),
		     PC_U64);
	pool_counter(rt, b, "pgrelay_pool_transaction_seconds_total", "Time spent in transactions.", PC(xact_time_us), PC_US);
	pool_counter(rt, b, "pgrelay_pool_query_seconds_total",
		     "Time from a client request to its ReadyForQuery, waiting for a server included.", PC(query_time_us), PC_US);
	pool_counter(rt, b, "pgrelay_pool_wait_seconds_total", "Time clients waited in the pool's queue for a server.",
		     PC(wait_time_us), PC_US);
#undef PC
}

/* ---- clients by database, user and state ---- */

typedef struct ClientGroup {
	const char *database, *user, *state;
	uint64_t n;
} ClientGroup;

static const char *client_state(ClientState s)
{
	switch (s) {
	case CL_STARTUP:
	case CL_AUTH:
	case CL_WAIT_LOGIN: return "login";
	case CL_IDLE: return "idle";
	case CL_WAITING: return "waiting";
	case CL_ACTIVE: return "active";
	default: return NULL;
	}
}

static void render_clients(Runtime *rt, struct evbuffer *b)
{
	family(b, "pgrelay_clients", "gauge", "Client connections by database, user and state (login, idle, waiting, active).");
	ClientGroup *g = NULL;
	size_t ng = 0, cap = 0;
	ListNode *n;
	list_for_each(n, &rt->clients) {
		const Client *c = list_entry(n, Client, node);
		const char *st = client_state(c->state);
		if (!st)
			continue;
		const char *db = c->state == CL_STARTUP ? "" : c->database ? c->database : "";
		const char *user = c->state == CL_STARTUP ? "" : c->user ? c->user : "";
		size_t i;
		for (i = 0; i < ng; i++)
			if (g[i].state == st && strcmp(g[i].database, db) == 0 && strcmp(g[i].user, user) == 0)
				break;
		if (i == ng) {
			if (ng == cap) {
				cap = cap ? cap * 2 : 16;
				g = realloc(g, cap * sizeof *g);
				if (!g)
					abort();
			}
			g[ng++] = (ClientGroup){db, user, st, 0};
		}
		g[i].n++;
	}
	for (size_t i = 0; i < ng; i++) {
		bool first = true;
		evbuffer_add_printf(b, "pgrelay_clients{");
		label(b, &first, "database", g[i].database);
		label(b, &first, "user", g[i].user);
		label(b, &first, "state", g[i].state);
		sample_u64(b, g[i].n);
	}
	free(g);
}

/* ---- backends (health) ---- */

static void backend_labels(Runtime *rt, struct evbuffer *b, const char *name, const BackendHealth *h)
{
	const ConfigService *svc = config_find_service(rt->config, h->service);
	char addr[300];
	backend_addr(addr, sizeof addr, svc ? config_backend(svc, h->replica_index) : NULL);
	bool first = true;
	evbuffer_add_printf(b, "%s{", name);
	label(b, &first, "service", h->service);
	label(b, &first, "backend", addr);
	label(b, &first, "role", role_name(h->replica_index));
}

static void render_backends(Runtime *rt, struct evbuffer *b)
{
	if (!rt->health)
		return;
	size_t nb = health_count(rt->health);
	static const struct {
		const char *name, *type, *help;
		int field;
	} fams[] = {
		{"pgrelay_backend_up", "gauge", "1 when the health checker sees the backend up (unchecked backends count as up).", 0},
		{"pgrelay_backend_lagging", "gauge", "1 when a replica lags beyond health.max_lag.", 1},
		{"pgrelay_backend_in_recovery", "gauge", "pg_is_in_recovery() at the last successful check.", 2},
		{"pgrelay_backend_lag_bytes", "gauge", "Replica lag behind its primary's WAL position, in bytes.", 3},
		{"pgrelay_backend_lag_seconds", "gauge", "Replica replay delay, in seconds.", 4},
		{"pgrelay_backend_outstanding_reads", "gauge", "Reads routed to the backend and not answered yet.", 5},
		{"pgrelay_backend_checks_total", "counter", "Health probes finished (successes and failures).", 6},
		{"pgrelay_backend_check_errors_total", "counter", "Health probes that failed.", 7},
		{"pgrelay_backend_reads_served_total", "counter", "Read-only statements the router sent to the backend.", 8},
	};
	for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
		family(b, fams[f].name, fams[f].type, fams[f].help);
		for (size_t i = 0; i < nb; i++) {
			const BackendHealth *h = health_at(rt->health, i);
			backend_labels(rt, b, fams[f].name, h);
			switch (fams[f].field) {
			case 0: sample_u64(b, h->up); break;
			case 1: sample_u64(b, h->lagging); break;
			case 2: sample_u64(b, h->in_recovery); break;
			case 3: sample_u64(b, h->lag_bytes); break;
			case 4: sample_f(b, h->lag_seconds); break;
			case 5: sample_u64(b, h->outstanding > 0 ? (uint64_t)h->outstanding : 0); break;
			case 6: sample_u64(b, h->checks); break;
			case 7: sample_u64(b, h->errors); break;
			default: sample_u64(b, h->reads_served); break;
			}
		}
	}
}

/* ---- result cache ---- */

static void tier_sample(struct evbuffer *b, const char *name, const char *tier, uint64_t v)
{
	evbuffer_add_printf(b, "%s{tier=\"%s\"} %llu\n", name, tier, (unsigned long long)v);
}

static void plain_sample(struct evbuffer *b, const char *name, const char *type, const char *help, uint64_t v)
{
	family(b, name, type, help);
	evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

/* Each service's catalog, as the cache uses it. */
static void render_catalogs(Runtime *rt, struct evbuffer *b)
{
	Cache *cache = rt->cache;
	if (!cache->catalogs)
		return;
	const Config *cfg = rt->config;
	static const struct {
		const char *name, *type, *help;
	} fams[] = {
		{"pgrelay_catalog_loaded", "gauge",
		 "1 while the cache uses a catalog of the service (0: none loaded yet, no primary user, or reloading after DDL: "
		 "nothing of it is cached)."},
		{"pgrelay_catalog_relations", "gauge", "Relations in the service's current catalog."},
		{"pgrelay_catalog_last_load_age_seconds", "gauge",
		 "Seconds since the service's catalog was last loaded successfully (absent before the first load)."},
		{"pgrelay_catalog_loads_total", "counter", "Successful loads of the service's catalog (unchanged ones included)."},
		{"pgrelay_catalog_failures_total", "counter", "Failed loads of the service's catalog."},
	};
	int64_t now = loop_now_ms();
	for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
		family(b, fams[f].name, fams[f].type, fams[f].help);
		for (size_t i = 0; i < cfg->n_services; i++) {
			const char *name = cfg->services[i].name;
			CatalogLoadStats st;
			catalog_loader_stats(cache->catalogs, name, &st); /* zeros for a service without a user */
			const Catalog *cat = catalog_loader_get(cache->catalogs, name);
			if (f == 2 && !st.last_load_ms)
				continue;
			bool first = true;
			evbuffer_add_printf(b, "%s{", fams[f].name);
			label(b, &first, "service", name);
			switch (f) {
			case 0: sample_u64(b, cache_catalog(cache, name) != NULL); break;
			case 1: sample_u64(b, cat ? catalog_count(cat) : 0); break;
			case 2: sample_f(b, (double)(now - st.last_load_ms) / 1000.0); break;
			case 3: sample_u64(b, st.loads); break;
			default: sample_u64(b, st.failures); break;
			}
		}
	}
	plain_sample(b, "pgrelay_catalog_refreshes_total", "counter",
		     "Catalog reloads asked because DDL committed through this pgrelay, or the WAL listener saw a change of a "
		     "relation the catalog does not hold.", cache->catalog_refreshes);
}

static void render_cache(Runtime *rt, struct evbuffer *b)
{
	Cache *cache = rt->cache;
	if (!cache)
		return;
	const CacheStats *s = &cache->stats;
	CacheL1Stats l1 = {0};
	if (cache->l1)
		cache_l1_stats(cache->l1, &l1);
	family(b, "pgrelay_cache_hits_total", "counter", "Results served from the cache, by the tier that had them.");
	tier_sample(b, "pgrelay_cache_hits_total", "l1", s->hits - s->l2_hits);
	if (cache->redis)
		tier_sample(b, "pgrelay_cache_hits_total", "l2", s->l2_hits);
	plain_sample(b, "pgrelay_cache_misses_total", "counter", "Cacheable lookups that no tier answered (the query ran).",
		     s->misses);
	plain_sample(b, "pgrelay_cache_lookups_total", "counter", "Cacheable statements looked up.", s->lookups);
	family(b, "pgrelay_cache_stores_total", "counter", "Results stored, by tier.");
	tier_sample(b, "pgrelay_cache_stores_total", "l1", s->stores);
	if (cache->redis)
		tier_sample(b, "pgrelay_cache_stores_total", "l2", s->l2_stores);
	if (cache->l1) {
		family(b, "pgrelay_cache_entries", "gauge", "Entries held, by tier.");
		tier_sample(b, "pgrelay_cache_entries", "l1", l1.entries);
		family(b, "pgrelay_cache_bytes", "gauge", "Bytes held (entries with their overhead), by tier.");
		tier_sample(b, "pgrelay_cache_bytes", "l1", l1.bytes);
		family(b, "pgrelay_cache_max_bytes", "gauge", "The byte bound (cache.l1.max_memory), by tier.");
		tier_sample(b, "pgrelay_cache_max_bytes", "l1", l1.max_bytes);
		family(b, "pgrelay_cache_evictions_total", "counter", "Entries evicted to make room, by tier.");
		tier_sample(b, "pgrelay_cache_evictions_total", "l1", l1.evictions);
		family(b, "pgrelay_cache_expirations_total", "counter", "Entries dropped when their TTL ran out, by tier.");
		tier_sample(b, "pgrelay_cache_expirations_total", "l1", l1.expirations);
	}
	plain_sample(b, "pgrelay_cache_invalidations_total", "counter", "Table versions bumped by commits through this pgrelay.",
		     s->invalidations);
	plain_sample(b, "pgrelay_cache_remote_invalidations_total", "counter",
		     "Invalidation messages received from other pgrelay instances.", s->remote_invalidations);
	plain_sample(b, "pgrelay_cache_wal_invalidations_total", "counter",
		     "Tables invalidated by the WAL listener.", s->wal_invalidations);
	plain_sample(b, "pgrelay_cache_stale_refused_total", "counter", "Entries found but refused because a table changed.",
		     s->stale_refused);
	plain_sample(b, "pgrelay_cache_bypassed_total", "counter", "Cacheable statements passed through without the cache.",
		     s->bypassed);
	plain_sample(b, "pgrelay_cache_outage_bypassed_total", "counter",
		     "Cacheable statements passed through because Redis could not be asked or a write's bump there was unconfirmed.",
		     s->outage_bypassed);
	if (cache->redis) {
		RedisStats r;
		redis_client_stats(cache->redis, &r);
		plain_sample(b, "pgrelay_cache_redis_up", "gauge", "1 while Redis (L2 and shared versions) is usable.", r.up);
		plain_sample(b, "pgrelay_cache_redis_errors_total", "counter", "Redis commands of the cache that failed.",
			     s->redis_errors);
		plain_sample(b, "pgrelay_cache_redis_commands_total", "counter", "Redis commands sent.", r.commands);
		plain_sample(b, "pgrelay_cache_redis_timeouts_total", "counter", "Redis commands that timed out.", r.timeouts);
		plain_sample(b, "pgrelay_cache_l2_refused_total", "counter",
			     "Entries read from Redis and refused (bad signature or malformed): never served.", s->l2_refused);
	}
	render_catalogs(rt, b);
}

/* ---- histograms ---- */

static void le_value(char *out, size_t cap, unsigned i)
{
	uint64_t us = histogram_bound_us(i);
	if (us == UINT64_MAX) {
		snprintf(out, cap, "+Inf");
		return;
	}
	int n = snprintf(out, cap, "%llu.%06llu", (unsigned long long)(us / 1000000), (unsigned long long)(us % 1000000));
	while (n > 1 && out[n - 1] == '0')
		out[--n] = 0;
	if (out[n - 1] == '.')
		out[n - 1] = 0;
}

static void render_histogram(Runtime *rt, struct evbuffer *b, const char *name, const char *help, size_t offset)
{
	family(b, name, "histogram", help);
	char le[32];
	for (const StatsHistograms *g = stats_histograms(rt); g; g = g->next) {
		const Histogram *h = (const Histogram *)((const char *)g + offset);
		uint64_t cum = 0;
		for (unsigned i = 0; i < HIST_BUCKETS; i++) {
			cum += h->counts[i];
			le_value(le, sizeof le, i);
			evbuffer_add_printf(b, "%s_bucket{service=\"", name);
			label_value(b, g->service);
			evbuffer_add_printf(b, "\",role=\"%s\",le=\"%s\"} %llu\n", g->replica ? "replica" : "primary", le,
					    (unsigned long long)cum);
		}
		evbuffer_add_printf(b, "%s_sum{service=\"", name);
		label_value(b, g->service);
		evbuffer_add_printf(b, "\",role=\"%s\"} %llu.%06llu\n", g->replica ? "replica" : "primary",
				    (unsigned long long)(h->sum_us / 1000000), (unsigned long long)(h->sum_us % 1000000));
		evbuffer_add_printf(b, "%s_count{service=\"", name);
		label_value(b, g->service);
		evbuffer_add_printf(b, "\",role=\"%s\"} %llu\n", g->replica ? "replica" : "primary",
				    (unsigned long long)h->count);
	}
}

/* ---- /metrics ---- */

void http_render_metrics(Runtime *rt, struct evbuffer *b)
{
	family(b, "pgrelay_info", "gauge", "pgrelay's version (always 1).");
	evbuffer_add_printf(b, "pgrelay_info{version=\"%s\"} 1\n", PGRELAY_VERSION);
	plain_sample(b, "pgrelay_accepting_connections", "gauge", "1 while pgrelay accepts client connections.",
		     rt->n_listeners > 0 && !rt->shutting_down);
	render_clients(rt, b);
	plain_sample(b, "pgrelay_clients_accepted_total", "counter", "Client connections accepted.", rt->stats.clients_accepted);
	plain_sample(b, "pgrelay_clients_refused_total", "counter", "Client connections refused (max_client_conn).",
		     rt->stats.clients_refused);
	plain_sample(b, "pgrelay_accept_pauses_total", "counter",
		     "Times accepting clients paused for a moment: out of file descriptors or memory.",
		     rt->stats.accept_pauses);
	plain_sample(b, "pgrelay_auth_failures_total", "counter", "Client logins that failed authentication.",
		     rt->stats.auth_failures);
	plain_sample(b, "pgrelay_access_refused_total", "counter",
		     "Client logins refused by the access rules (a reject rule, or no rule matched).",
		     rt->stats.access_refused);
	plain_sample(b, "pgrelay_servers_opened_total", "counter", "Server connections opened.", rt->stats.servers_opened);
	plain_sample(b, "pgrelay_server_connect_failures_total", "counter", "Server connections that failed before login.",
		     rt->stats.servers_failed);
	plain_sample(b, "pgrelay_wait_timeouts_total", "counter", "Clients closed by query_wait_timeout.", rt->stats.wait_timeouts);
	plain_sample(b, "pgrelay_cancels_forwarded_total", "counter", "Cancel requests forwarded to servers.",
		     rt->stats.cancels_forwarded);
	render_pools(rt, b);
	render_backends(rt, b);
	render_cache(rt, b);
	plain_sample(b, "pgrelay_prepared_statements", "gauge", "Prepared statements in pgrelay's registry.",
		     prepared_registry_count(&rt->stmts));
	plain_sample(b, "pgrelay_prepared_parses_sent_total", "counter", "Parse messages pgrelay sent to servers.",
		     rt->stmts.parses_sent);
	plain_sample(b, "pgrelay_prepared_parses_avoided_total", "counter",
		     "Client Parse messages answered without a server (statement already known).", rt->stmts.parses_avoided);
	plain_sample(b, "pgrelay_prepared_unused_bytes", "gauge",
		     "Bytes of registered statements no client names (kept up to 16 MB for reuse).",
		     rt->stmts.unused_bytes);
	plain_sample(b, "pgrelay_statement_analysis_cache_bytes", "gauge",
		     "Bytes of statement texts and analyses cached (at most 64 MB).", rt->sql.bytes);
	plain_sample(b, "pgrelay_prepared_evictions_total", "counter",
		     "Statements closed on a server to keep max_prepared_statements.", rt->stmts.evictions);
	render_histogram(rt, b, "pgrelay_query_duration_seconds",
			 "Client request to ReadyForQuery (server wait included), requests that reached a server.",
			 offsetof(StatsHistograms, query));
	render_histogram(rt, b, "pgrelay_transaction_duration_seconds", "Transaction durations.",
			 offsetof(StatsHistograms, xact));
	render_histogram(rt, b, "pgrelay_wait_duration_seconds",
			 "Time a client waited for a server connection (0 when one was idle).", offsetof(StatsHistograms, wait));
}

/* ---- /health ---- */

bool http_render_health(Runtime *rt, struct evbuffer *out)
{
	bool ok = true;
	if (rt->shutting_down || rt->n_listeners == 0) {
		evbuffer_add_printf(out, "not accepting connections%s\n", rt->shutting_down ? " (shutting down)" : "");
		ok = false;
	}
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const ConfigService *svc = &cfg->services[i];
		const BackendHealth *h = rt->health ? health_backend(rt->health, svc->name, -1) : NULL;
		if (!h || h->up)
			continue;
		ok = false;
		evbuffer_add_printf(out, "down: service %s primary %s:%d%s%s\n", svc->name, svc->primary.host, svc->primary.port,
				    h->last_error[0] ? ": " : "", h->last_error);
	}
	if (ok)
		evbuffer_add_printf(out, "ok\n");
	return ok;
}

/* ---- evhttp ---- */

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_send_reply(req, code, reason, body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	HttpServer *hs = arg;
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	http_render_metrics(hs->rt, b);
	reply(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

static void on_health(struct evhttp_request *req, void *arg)
{
	HttpServer *hs = arg;
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	bool ok = http_render_health(hs->rt, b);
	reply(req, ok ? HTTP_OK : 503, ok ? "OK" : "Service Unavailable", "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void on_other(struct evhttp_request *req, void *arg)
{
	(void)arg;
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	evbuffer_add_printf(b, "not found: try /metrics or /health\n");
	reply(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

HttpServer *http_start(Runtime *rt)
{
	const Config *cfg = rt->config;
	struct evhttp *http = evhttp_new(rt->base);
	if (!http) {
		log_error(NULL, "admin.http: cannot create the HTTP server");
		return NULL;
	}
	if (!evhttp_bind_socket_with_handle(http, cfg->admin.http_host, (ev_uint16_t)cfg->admin.http_port)) {
		log_error(NULL, "admin.http: cannot listen on %s:%d", cfg->admin.http_host, cfg->admin.http_port);
		evhttp_free(http);
		return NULL;
	}
	HttpServer *hs = xcalloc(1, sizeof *hs);
	hs->rt = rt;
	hs->http = http;
	hs->host = xstrdup(cfg->admin.http_host);
	hs->port = cfg->admin.http_port;
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_cb(http, "/metrics", on_metrics, hs);
	evhttp_set_cb(http, "/health", on_health, hs);
	evhttp_set_gencb(http, on_other, hs);
	log_info(NULL, "admin HTTP endpoint on http://%s:%d/metrics and /health", hs->host, hs->port);
	return hs;
}

void http_stop(Runtime *rt)
{
	HttpServer *hs = rt->http;
	if (!hs)
		return;
	evhttp_free(hs->http);
	free(hs->host);
	free(hs);
	rt->http = NULL;
}

void http_reconfigure(Runtime *rt)
{
	const Config *cfg = rt->config;
	HttpServer *hs = rt->http;
	if (hs && cfg->admin.http_host && strcmp(hs->host, cfg->admin.http_host) == 0 && hs->port == cfg->admin.http_port)
		return;
	if (hs) {
		log_info(NULL, "admin.http changed: closing http://%s:%d", hs->host, hs->port);
		http_stop(rt);
	}
	if (cfg->admin.http_host)
		rt->http = http_start(rt);
}
