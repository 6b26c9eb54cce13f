/*
 * statement_cache — the result cache seen from a client's messages (see statement_cache.h).
 */
#include "statement_cache.h"

#include <string.h>

#include "cache.h"
#include "cachepolicy.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "router.h"
#include "server.h"
#include "settings.h"
#include "sqlclass.h"
#include "statement_local.h"
#include "statement_names.h"
#include "stats.h"

/* The query this client waited for (an identical cacheable one) finished, or Redis answered:
 * its message is looked at again. */
static void waiter_woken(CacheWaiter *w)
{
	Client *c = w->owner;
	if (c->state == CL_CLOSED)
		return;
	conn_kick(&c->conn);
}

void statement_cache_ready(Client *c, Server *s)
{
	Cache *cache = c->rt->cache;
	if (!cache)
		return;
	if (c->cache && c->cache->fill.active)
		cache_fill_finish(cache, c->cache, s->pool->service->name, s->pool->replica);
}

/*
 * An extended-protocol batch pgrelay can answer from the cache: [Parse of the unnamed statement]
 * Bind (unnamed portal) [Describe portal] Execute (all rows) Sync, all buffered.
 */
typedef struct CacheBatch {
	bool parse, describe;
	const uint8_t *parse_key; /* the Parse body after the name (PreparedStmt.key layout) */
	size_t parse_key_len;
	const uint8_t *bind_rest; /* the Bind body after the portal and statement names */
	size_t bind_rest_len;
	size_t total;             /* bytes of the whole batch */
} CacheBatch;

static bool batch_next(const uint8_t **p, const uint8_t *end, uint8_t *type, const uint8_t **body, size_t *len)
{
	if (end - *p < PROTO_HEADER_LEN)
		return false;
	uint32_t n = ((uint32_t)(*p)[1] << 24) | ((uint32_t)(*p)[2] << 16) | ((uint32_t)(*p)[3] << 8) | (*p)[4];
	if (n < 4 || (size_t)(end - *p) < (size_t)n + 1)
		return false;
	*type = (*p)[0];
	*body = *p + PROTO_HEADER_LEN;
	*len = n - 4;
	*p += n + 1;
	return true;
}

static bool cache_batch(Client *c, const uint8_t *msg, size_t avail, CacheBatch *b)
{
	const uint8_t *p = msg, *end = msg + avail, *body;
	size_t len;
	uint8_t type;
	memset(b, 0, sizeof *b);
	if (!batch_next(&p, end, &type, &body, &len))
		return false;
	if (type == 'P') {
		if (len < 2 || body[0] != 0) /* the unnamed statement only */
			return false;
		b->parse = true;
		b->parse_key = body + 1;
		b->parse_key_len = len - 1;
		if (!batch_next(&p, end, &type, &body, &len))
			return false;
	}
	if (type != 'B' || len < 2 || body[0] != 0) /* the unnamed portal */
		return false;
	const uint8_t *name = body + 1, *z = memchr(name, 0, len - 1);
	if (!z)
		return false;
	if (b->parse) {
		if (*name)
			return false;
	} else {
		PreparedStmt *st = *name ? prepared_client_get(&c->stmts, (const char *)name) : NULL;
		if (!st || st->sql_level)
			return false;
		b->parse_key = st->key;
		b->parse_key_len = st->key_len;
	}
	b->bind_rest = z + 1;
	b->bind_rest_len = len - (size_t)(z + 1 - body);
	if (!batch_next(&p, end, &type, &body, &len))
		return false;
	if (type == 'D') {
		if (len != 2 || body[0] != 'P' || body[1] != 0)
			return false;
		b->describe = true;
		if (!batch_next(&p, end, &type, &body, &len))
			return false;
	}
	if (type != 'E' || len != 5 || body[0] != 0 || memcmp(body + 1, "\0\0\0\0", 4) != 0)
		return false;
	if (!batch_next(&p, end, &type, &body, &len) || type != 'S')
		return false;
	b->total = (size_t)(p - msg);
	return true;
}

/* Answers the client's Query (or extended batch) with a cached reply. */
static RelayAction cache_serve(Client *c, uint8_t type, const CacheBatch *batch, size_t total, const uint8_t *reply,
			       size_t reply_len)
{
	Buf b;
	buf_init(&b);
	if (type != 'Q') {
		if (batch->parse) {
			proto_put_u8(&b, '1');
			proto_put_u32(&b, 4);
		}
		proto_put_u8(&b, '2');
		proto_put_u32(&b, 4);
	}
	buf_append(&b, reply, reply_len);
	proto_build_ready_for_query(&b, 'I');
	statement_local_send(c, &b);
	buf_free(&b);
	if (type != 'Q')
		c->conn.skip_left = batch->total - total; /* the rest of the batch is answered */
	return RELAY_DROP;
}

/*
 * Before a message is routed: answer a cached Query (or extended batch) at once when L1 has it
 * (no parsing at all); otherwise note what it writes, and look it up properly: answer from the
 * cache, or wait for the identical one running (or for Redis), or start filling the cache with
 * this one. Returns 0 to go on as usual.
 */
RelayAction statement_cache_message(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	Cache *cache = c->rt->cache;
	const Config *cfg = c->rt->config;
	if (type != 'Q' && type != 'P' && type != 'B')
		return 0;
	if (!c->cache) /* from the client's first look-up on */
		c->cache = cache_waiter_new(waiter_woken, c);
	if (c->cache->req)
		return RELAY_STOP; /* Redis has not answered yet */
	bool eligible = !c->server && c->tx_local == 'I' && !c->held_begin && !c->pinned && !c->settings_opaque &&
			c->pool_mode == CONFIG_POOL_TRANSACTION && !c->cache->fill.active && cfg->cache.enabled;
	CacheBatch batch;
	CacheKey key;
	bool have_key = false;
	const char *search_path = settings_search_path(c);
	const CacheSession who = {.database = c->database, .user = c->user, .search_path = search_path, .params = &c->params};
	const uint8_t *reply;
	size_t reply_len;
	if (eligible && avail == total) {
		if (type == 'Q') {
			const char *text = (const char *)msg + PROTO_HEADER_LEN;
			cache_key_build(cache, &who, 'Q', text, strnlen(text, total - PROTO_HEADER_LEN), NULL, 0, false, &key);
			have_key = true;
		} else if (cache_batch(c, msg, (size_t)(c->conn.in + c->conn.in_len - msg), &batch)) {
			/* the whole batch is buffered (looked past this message) */
			cache_key_build(cache, &who, 'E', batch.parse_key, batch.parse_key_len, batch.bind_rest,
					batch.bind_rest_len, batch.describe, &key);
			have_key = true;
		}
		const char *service;
		if (have_key && cache_fast_hit(cache, c->cache, &key, &reply, &reply_len, &service)) {
			stats_request_begin(c, type, msg, total, avail);
			stats_cache_hit(c, service);
			return cache_serve(c, type, &batch, total, reply, reply_len);
		}
	}
	if (!have_key)
		return 0;
	const char *sql;
	size_t len;
	RelayAction need = statement_names_sql(c, type, msg, total, avail, &sql, &len);
	if (need || !sql)
		return need;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	RelayAction result = 0;
	const ConfigDatabase *db = config_find_database(cfg, c->database);
	if (!db)
		goto done;
	RouteResult r;
	router_route(cfg, db, search_path, c->user, a, &r);
	CacheDecision d;
	ProtoBindValues params;
	/* the values matter only for row keys given by parameters */
	bool have_params = type != 'Q' && a->n_statements == 1 && a->statements[0].n_key_eqs &&
			   proto_parse_bind_values(batch.bind_rest, batch.bind_rest_len, batch.parse_key,
						   batch.parse_key_len, &params);
	cachepolicy_decide(cfg, cache_catalog(cache, r.service->name), search_path, c->user, a, have_params ? &params : NULL,
			   &r, &d);
	if (!d.cacheable)
		goto done;
	stats_request_begin(c, type, msg, total, avail);
	switch (cache_lookup(cache, c->cache, r.service->name, &d, &key, &reply, &reply_len)) {
	case CACHE_HIT:
		stats_cache_hit(c, r.service->name);
		result = cache_serve(c, type, &batch, total, reply, reply_len);
		break;
	case CACHE_WAIT:
	case CACHE_PENDING:
		result = RELAY_STOP; /* looked at again when the running one finishes / Redis answers */
		break;
	case CACHE_MISS:
	case CACHE_MISS_BYPASS:
		break;
	}
done:
	sqlclass_release(a);
	return result;
}
