/*
 * cache — keys, versions, entries, single-flight and invalidation of the result cache (see
 * cache.h). The L1 store itself is cache_l1; the entry format, its checks and the L2 signatures
 * are cache_entry.
 */
#include "cache.h"

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "catalog_loader.h"
#include "health.h"
#include "log.h"
#include "proto.h"
#include "redis.h"
#include "types.h"
#include "wal.h"
#include "xalloc.h"

#define WAL_PENDING_MAX 65536 /* WAL commits whose Redis bump is under way; more are noted as failed */
#define OUTAGE_RETRY_MS 250   /* a bump that failed while Redis is up: the new epoch is tried again */
#define REFUSED_LOG_MS 1000   /* at most one log line per second about refused L2 entries */

enum { WAL_BUMP_PENDING = 0, WAL_BUMP_DONE, WAL_BUMP_FAILED };

typedef struct TableVersion {
	uint64_t hash;
	size_t key_len;
	uint64_t version;    /* local: this instance's commits, other instances' messages, the WAL */
	uint64_t redis_seen; /* the value Redis had at the last lookup (to notice others' commits) */
	int64_t bumped_ms; /* the service's entry: when it last saw an invalidation of any table */
	char key[]; /* service \0 schema \0 table */
} TableVersion;

typedef struct VersionKey {
	const char *data;
	size_t len;
} VersionKey;

static bool version_eq(const void *value, const void *key)
{
	const TableVersion *t = value;
	const VersionKey *k = key;
	return t->key_len == k->len && memcmp(t->key, k->data, k->len) == 0;
}

static bool flight_eq(const void *value, const void *key)
{
	return memcmp(((const CacheFlight *)value)->key.b, ((const CacheKey *)key)->b, sizeof(CacheKey)) == 0;
}

static uint64_t key_hash(const CacheKey *k)
{
	uint64_t h;
	memcpy(&h, k->b, sizeof h);
	return h;
}

/* A libpq conninfo value, quoted. */
static void conninfo_add(Buf *b, const char *key, const char *value)
{
	if (!value)
		return;
	buf_append(b, key, strlen(key));
	buf_append(b, "='", 2);
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '\'')
			buf_append(b, "\\", 1);
		buf_append(b, p, 1);
	}
	buf_append(b, "' ", 2);
}

static CacheBump *bump_send(Cache *cache, const char *service, const CacheWrites *w);
static void bump_local(Cache *cache, const char *service, const CacheWrites *w);
static void outage_note(Cache *cache, const char *service);
static void wal_pending_advance(Cache *cache);

/* A WAL commit's bump reached Redis (ok), or not: then it waits for the service's new epoch. */
static void wal_bump_finished(Cache *cache, uint64_t seq, bool ok)
{
	if (seq < cache->wal_first_seq || seq - cache->wal_first_seq >= cache->n_wal_pending)
		return;
	CacheWalPending *p = &cache->wal_pending[seq - cache->wal_first_seq];
	if (p->state == WAL_BUMP_PENDING) /* a failed one stays failed (it may stand for later commits) */
		p->state = ok ? WAL_BUMP_DONE : WAL_BUMP_FAILED;
	wal_pending_advance(cache);
}

/* Confirms to the WAL listener every commit up to the first whose bump is not done. */
static void wal_pending_advance(Cache *cache)
{
	size_t n = 0;
	while (n < cache->n_wal_pending && cache->wal_pending[n].state == WAL_BUMP_DONE)
		n++;
	if (!n)
		return;
	if (cache->wal)
		wal_listener_confirm(cache->wal, cache->wal_pending[n - 1].lsn);
	memmove(cache->wal_pending, cache->wal_pending + n, (cache->n_wal_pending - n) * sizeof *cache->wal_pending);
	cache->n_wal_pending -= n;
	cache->wal_first_seq += n;
}

/* A new epoch of service reached Redis, covering every failed bump noted before it was sent. */
static void wal_outage_resolved(Cache *cache, const char *service)
{
	if (!cache->wal_service || strcmp(service, cache->wal_service) != 0)
		return;
	for (size_t i = 0; i < cache->n_wal_pending; i++)
		if (cache->wal_pending[i].state == WAL_BUMP_FAILED)
			cache->wal_pending[i].state = WAL_BUMP_DONE;
	wal_pending_advance(cache);
}

/*
 * The WAL listener saw a commit (made through pgrelay or not): bump its tables, locally and, with
 * Redis, in Redis (INCR + PUBLISH, as a commit through pgrelay), where every instance's lookups read
 * the versions. The slot is confirmed past the commit only once Redis has the bump (or a new epoch
 * of the service that covers it), so a restart gets the commit again rather than losing it.
 */
static void cache_on_wal_commit(void *arg, const WalTable *tables, size_t n, uint64_t lsn)
{
	Cache *cache = arg;
	CacheWrites w;
	memset(&w, 0, sizeof w);
	if (n == 0) {
		w.all = true;
		w.all_why = "the WAL listener may have missed changes";
	}
	const Catalog *cat = cache_catalog(cache, cache->wal_service);
	bool outdated = false;
	for (size_t i = 0; i < n; i++)
		outdated |= cachepolicy_add_write(cache->rt->config, cat, tables[i].schema, tables[i].name,
						  tables[i].key_values, tables[i].n_key_values, &w);
	if (outdated && cache->catalogs) {
		/* a table created around pgrelay since the catalog was loaded (the change invalidates
		 * everything): learn it now rather than at the next periodic load */
		log_debug("cache", "the WAL names a relation service %s's catalog does not hold (%s): reloading it",
			  cache->wal_service, w.detail);
		catalog_loader_refresh(cache->catalogs, cache->wal_service);
		cache->catalog_refreshes++;
	}
	cache->stats.wal_invalidations++;
	bump_local(cache, cache->wal_service, &w);
	CacheWalPending *tail = cache->n_wal_pending ? &cache->wal_pending[cache->n_wal_pending - 1] : NULL;
	if (!cache->redis || (!w.all && w.n == 0)) {
		/* nothing for Redis: confirmed now, or with the last commit still on its way there */
		if (tail)
			tail->lsn = lsn;
		else
			wal_listener_confirm(cache->wal, lsn);
		return;
	}
	CacheBump *b = NULL;
	if (cache->n_wal_pending < WAL_PENDING_MAX && cache->redis_live)
		b = bump_send(cache, cache->wal_service, &w);
	if (!b) {
		/* not sent (Redis down, or too many under way): the service gets a new epoch when Redis
		 * answers; until then the slot stays before this commit */
		outage_note(cache, cache->wal_service);
		if (tail && (tail->state == WAL_BUMP_FAILED || cache->n_wal_pending >= WAL_PENDING_MAX)) {
			tail->state = WAL_BUMP_FAILED; /* stands for this commit too */
			tail->lsn = lsn;
			return;
		}
	}
	if (cache->n_wal_pending == cache->cap_wal_pending) {
		cache->cap_wal_pending = cache->cap_wal_pending ? 2 * cache->cap_wal_pending : 16;
		cache->wal_pending =
			xalloc_check(realloc(cache->wal_pending, cache->cap_wal_pending * sizeof *cache->wal_pending));
	}
	uint64_t seq = cache->wal_first_seq + cache->n_wal_pending;
	cache->wal_pending[cache->n_wal_pending++] = (CacheWalPending){lsn, b ? WAL_BUMP_PENDING : WAL_BUMP_FAILED};
	if (b) {
		b->finished = wal_bump_finished;
		b->finished_arg = seq;
	}
}

/* The WAL listener asks which column's values name a table's rows: its cache rule's key. */
static const char *cache_wal_key_column(void *arg, const char *schema, const char *name)
{
	Cache *cache = arg;
	const ConfigCacheRule *rule = cachepolicy_rule_for(cache->rt->config, schema, name);
	return rule ? rule->key : NULL;
}

static void cache_start_wal(Cache *cache)
{
	const ConfigCache *cc = &cache->rt->config->cache;
	const ConfigBackend *p = &cc->wal_service->primary;
	char port[16];
	snprintf(port, sizeof port, "%d", p->port);
	Buf ci;
	buf_init(&ci);
	conninfo_add(&ci, "host", p->host);
	conninfo_add(&ci, "port", port);
	conninfo_add(&ci, "dbname", p->dbname ? p->dbname : cc->wal_service->name);
	conninfo_add(&ci, "user", cc->wal_user ? cc->wal_user : p->user);
	conninfo_add(&ci, "password", cc->wal_user ? cc->wal_password : p->password);
	buf_append(&ci, "", 1);
	cache->wal_service = strdup(cc->wal_service->name);
	cache->wal = wal_listener_new(cache->rt->base, cache->wal_service, (const char *)buf_head(&ci), cc->wal_slot,
				      cache_on_wal_commit, cache);
	if (!cache->wal) {
		log_error("cache", "cannot start the WAL listener for service %s (slot %s)", cache->wal_service, cc->wal_slot);
	} else {
		wal_listener_want_keys(cache->wal, cache_wal_key_column);
		if (cc->n_redis_nodes) /* commits are confirmed once Redis has their bumps */
			wal_listener_hold_progress(cache->wal);
	}
	buf_free(&ci);
}

/* With a WAL listener, results are served only while it streams (else writes made around pgrelay
 * could be missed). */
static bool cache_trusted(const Cache *cache)
{
	if (!cache->wal_service)
		return true;
	if (!cache->wal)
		return false;
	WalStats st;
	wal_listener_stats(cache->wal, &st);
	return st.connected;
}

static bool cache_start_redis(Cache *cache);

/* ---- catalogs ---- */

/* A service's catalog came, changed or went (the loader's callback; it may be inside
 * catalog_loader_reconfigure, so the loader is not asked anything here). Keys hold every
 * catalog's fingerprint: an entry made under other dependencies is never looked up again. */
static void cache_on_catalog(void *arg, const char *service, Catalog *catalog)
{
	(void)service;
	(void)catalog;
	Cache *cache = arg;
	cache->catalog_gen_dirty = true;
}

static uint64_t catalog_gen_now(Cache *cache)
{
	if (cache->catalog_gen_dirty) {
		cache->catalog_gen_dirty = false;
		const Config *cfg = cache->rt->config;
		uint64_t gen = 0x9e3779b97f4a7c15ull;
		for (size_t i = 0; i < cfg->n_services; i++) {
			const char *name = cfg->services[i].name;
			const Catalog *c = catalog_loader_get(cache->catalogs, name);
			if (c) /* a sum: the services' order does not matter */
				gen += (hashmap_hash_bytes(name, strlen(name)) ^ catalog_fingerprint(c)) * 0xff51afd7ed558ccdull;
		}
		cache->catalog_gen = gen;
	}
	return cache->catalog_gen;
}

const Catalog *cache_catalog(Cache *cache, const char *service)
{
	if (!cache || !cache->catalogs || catalog_loader_stale(cache->catalogs, service))
		return NULL;
	return catalog_loader_get(cache->catalogs, service);
}

static void cache_start_catalogs(Cache *cache)
{
	CatalogLoaderOptions opt = {.refresh_ms = cache->rt->config->cache.catalog_refresh_ms};
	cache->catalogs = catalog_loader_new(cache->rt->base, cache->rt->config, &opt, cache_on_catalog, cache);
	cache->catalog_gen_dirty = true;
}

void cache_reconfigure(Cache *cache, const Config *cfg)
{
	if (cache->l1 && !cfg->cache.l1_max_memory) {
		cache_l1_free(cache->l1);
		cache->l1 = NULL;
	} else if (cache->l1) {
		cache_l1_set_max_bytes(cache->l1, cfg->cache.l1_max_memory);
	} else if (cfg->cache.l1_max_memory) {
		cache->l1 = cache_l1_new(cfg->cache.l1_max_memory, cfg->cache.max_result + CACHE_ENTRY_MAX_OVERHEAD);
	}
	if (!cfg->cache.enabled) { /* the cache is off (nothing is cacheable): no catalogs to keep */
		catalog_loader_free(cache->catalogs);
		cache->catalogs = NULL;
	} else if (cache->catalogs) {
		catalog_loader_set_refresh(cache->catalogs, cfg->cache.catalog_refresh_ms);
		catalog_loader_reconfigure(cache->catalogs, cfg);
	} else {
		cache_start_catalogs(cache);
	}
	cache->catalog_gen_dirty = true;
}

Cache *cache_new(Runtime *rt)
{
	const ConfigCache *cc = &rt->config->cache;
	Cache *cache = calloc(1, sizeof *cache);
	if (!cache)
		return NULL;
	cache->rt = rt;
	if (RAND_bytes((unsigned char *)&cache->instance_id, sizeof cache->instance_id) != 1)
		cache->instance_id = (uint64_t)loop_now_ms() ^ (uint64_t)getpid() << 32;
	hashmap_init(&cache->versions);
	hashmap_init(&cache->flights);
	/* one digest context and a fetched SHA-256, reused for every key (no allocation per lookup) */
	cache->md = EVP_MD_CTX_new();
	cache->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!cache->md || !cache->sha256) {
		EVP_MD_CTX_free(cache->md);
		EVP_MD_free(cache->sha256);
		free(cache);
		return NULL;
	}
	if (cc->l1_max_memory) {
		cache->l1 = cache_l1_new(cc->l1_max_memory, cc->max_result + CACHE_ENTRY_MAX_OVERHEAD);
		if (!cache->l1) {
			cache_free(cache);
			return NULL;
		}
	}
	cache_start_catalogs(cache);
	if (cc->wal_service)
		cache_start_wal(cache);
	if (cc->n_redis_nodes && !cache_start_redis(cache))
		log_error("cache", "cannot set up the Redis client: the cache works without L2");
	return cache;
}

static void outage_free(Cache *cache)
{
	for (size_t i = 0; i < cache->n_outages; i++)
		free(cache->outages[i].service);
	free(cache->outages);
	cache->outages = NULL;
	cache->n_outages = 0;
}

void cache_free(Cache *cache)
{
	if (!cache)
		return;
	cache->closing = true; /* the callbacks redis_client_free runs start nothing new */
	catalog_loader_free(cache->catalogs);
	cache->catalogs = NULL;
	if (cache->wal)
		wal_listener_free(cache->wal);
	cache->wal = NULL;
	if (cache->redis)
		redis_client_free(cache->redis);
	cache->redis = NULL;
	loop_timer_release(&cache->outage_timer);
	outage_free(cache);
	cache_signer_free(cache->signer);
	free(cache->wal_pending);
	free(cache->wal_service);
	for (size_t i = 0; i < cache->versions.cap; i++)
		if (cache->versions.slots[i].value)
			free(cache->versions.slots[i].value);
	hashmap_free(&cache->versions);
	hashmap_free(&cache->flights); /* flights belong to clients, which are gone */
	if (cache->l1)
		cache_l1_free(cache->l1);
	EVP_MD_CTX_free(cache->md);
	EVP_MD_free(cache->sha256);
	free(cache);
}

/* ---- versions ---- */

static size_t version_key(char *buf, size_t cap, const char *service, const char *schema, const char *table)
{
	size_t a = strlen(service), b = strlen(schema), c = strlen(table);
	if (a + b + c + 3 > cap)
		return 0;
	memcpy(buf, service, a + 1);
	memcpy(buf + a + 1, schema, b + 1);
	memcpy(buf + a + b + 2, table, c + 1);
	return a + b + c + 3;
}

static TableVersion *version_find(Cache *cache, const char *service, const char *schema, const char *table,
				  bool create)
{
	char buf[512];
	size_t len = version_key(buf, sizeof buf, service, schema, table);
	if (!len)
		return NULL;
	VersionKey k = {buf, len};
	uint64_t h = hashmap_hash_bytes(buf, len);
	TableVersion *t = hashmap_get(&cache->versions, h, version_eq, &k);
	if (t || !create)
		return t;
	t = malloc(sizeof *t + len);
	if (!t)
		return NULL;
	t->hash = h;
	t->key_len = len;
	t->version = 0;
	t->bumped_ms = 0;
	memcpy(t->key, buf, len);
	hashmap_insert(&cache->versions, h, t);
	return t;
}

static uint64_t version_of(Cache *cache, const char *service, const char *schema, const char *table)
{
	TableVersion *t = version_find(cache, service, schema, table, false);
	return t ? t->version : 0;
}

/* The versions an entry for decision d depends on, now: the service's, then each table's. */
static size_t current_versions(Cache *cache, const char *service, const CacheDecision *d, uint64_t *out)
{
	out[0] = version_of(cache, service, "", "");
	for (size_t i = 0; i < d->n_deps; i++)
		out[i + 1] = version_of(cache, service, d->deps[i].schema, d->deps[i].name);
	return d->n_deps + 1;
}

/* An invalidation of service was seen now: replicas must show they replayed past it. */
static void note_bumped(Cache *cache, const char *service)
{
	TableVersion *t = version_find(cache, service, "", "", true);
	if (t)
		t->bumped_ms = loop_now_ms();
}

/* Bumps the versions w names (already expanded: as they are), locally. */
static void bump_local(Cache *cache, const char *service, const CacheWrites *w)
{
	note_bumped(cache, service);
	if (w->all) {
		TableVersion *t = version_find(cache, service, "", "", true);
		if (t)
			t->version++;
		cache->stats.bumps_all++;
		log_debug("cache", "invalidating everything of service %s: %s%s%s", service, w->all_why,
			  w->detail[0] ? ": " : "", w->detail);
	}
	for (size_t i = 0; i < w->n; i++) {
		TableVersion *t = version_find(cache, service, w->tables[i].schema, w->tables[i].name, true);
		if (t)
			t->version++;
		else /* a name too long to key: everything */
			bump_local(cache, service, &(CacheWrites){.all = true, .all_why = "a very long name"});
	}
	cache->stats.invalidations += (w->all ? 1 : 0) + w->n;
}

void cache_drop_service(Cache *cache, const char *service)
{
	CacheWrites w = {.all = true, .all_why = "the configuration changed what its results depend on"};
	cache_invalidate_shared(cache, service, &w, NULL, NULL);
}

void cache_release_waiter(Cache *cache, CacheWaiter *w)
{
	bool waiting = w->wait || w->req;
	cache_wait_cancel(cache, w);
	cache_fill_abort(cache, w);
	cache_waiter_gone(cache, w);
	if (waiting) /* looks at its message again, without the cache */
		w->wake(w);
}

CacheWaiter *cache_waiter_new(void (*wake)(CacheWaiter *w), void *owner)
{
	CacheWaiter *w = xcalloc(1, sizeof *w);
	buf_init(&w->fill.reply);
	buf_init(&w->fill.names);
	buf_init(&w->answer.reply);
	list_node_init(&w->wait_node);
	w->wake = wake;
	w->owner = owner;
	return w;
}

void cache_waiter_free(CacheWaiter *w)
{
	if (!w)
		return;
	buf_free(&w->fill.reply);
	buf_free(&w->fill.names);
	buf_free(&w->answer.reply);
	free(w);
}

void cache_invalidate(Cache *cache, const char *service, const CacheWrites *w)
{
	CacheWrites x;
	cachepolicy_writes_expand(cache->rt->config, cache_catalog(cache, service), w, &x);
	bump_local(cache, service, &x);
}

/* ---- keys ---- */

static int param_cmp(const void *a, const void *b)
{
	return strcasecmp((*(const Param *const *)a)->name, (*(const Param *const *)b)->name);
}

/* Session parameters that cannot change a result (or that the key holds otherwise). */
static bool param_ignored(const char *name)
{
	return strcasecmp(name, "application_name") == 0 || strcasecmp(name, "search_path") == 0;
}

static void digest_str(EVP_MD_CTX *ctx, const char *s)
{
	EVP_DigestUpdate(ctx, s ? s : "", s ? strlen(s) + 1 : 1);
}

void cache_key_build(Cache *cache, const CacheSession *who, char protocol, const void *part, size_t part_len,
		     const void *part2, size_t part2_len, bool describe, CacheKey *key)
{
	const char *search_path = who->search_path;
	const ParamList *params = who->params;
	EVP_MD_CTX *ctx = cache->md;
	EVP_DigestInit_ex(ctx, cache->sha256, NULL);
	char head[4] = {'p', 'g', protocol, describe ? 'D' : '-'};
	EVP_DigestUpdate(ctx, head, sizeof head);
	uint64_t gen = catalog_gen_now(cache);
	EVP_DigestUpdate(ctx, &gen, sizeof gen);
	digest_str(ctx, who->database);
	digest_str(ctx, who->user);
	digest_str(ctx, search_path ? search_path : "\001default");
	/* every other session parameter, in name order (all of them: any may change a result, e.g.
	 * through a row-level security policy that reads current_setting()) */
	const Param *on_stack[64], **sorted = on_stack;
	if (params->n > 64)
		sorted = xmalloc(params->n * sizeof *sorted);
	size_t n = 0;
	for (size_t i = 0; i < params->n; i++)
		if (!param_ignored(params->items[i].name))
			sorted[n++] = &params->items[i];
	qsort(sorted, n, sizeof sorted[0], param_cmp);
	for (size_t i = 0; i < n; i++) {
		digest_str(ctx, sorted[i]->name);
		digest_str(ctx, sorted[i]->value);
	}
	if (sorted != on_stack)
		free(sorted);
	uint64_t l1 = part_len, l2 = part2_len;
	EVP_DigestUpdate(ctx, &l1, sizeof l1);
	EVP_DigestUpdate(ctx, part, part_len);
	EVP_DigestUpdate(ctx, &l2, sizeof l2);
	if (part2_len)
		EVP_DigestUpdate(ctx, part2, part2_len);
	unsigned int md_len = 0;
	EVP_DigestFinal_ex(ctx, key->b, &md_len);
	/* remembered for the lookup of this key that follows: what an L2 entry's reply must look like */
	cache->shape_key = *key;
	cache->shape = protocol == 'Q' ? CACHE_SHAPE_QUERY : describe ? CACHE_SHAPE_DESCRIBED : CACHE_SHAPE_EXECUTE;
}

/* ---- entries (cache_entry: versions, names, reply; the expiry is the L1's) ---- */

bool cache_fast_hit(Cache *cache, CacheWaiter *w, const CacheKey *key, const uint8_t **reply, size_t *len,
		    const char **service_out)
{
	(void)w;
	/* L1 alone decides only without Redis: with Redis, its versions decide (and while it cannot
	 * be asked, nothing is served: see cache_lookup) */
	if (!cache->l1 || cache->redis || !cache_trusted(cache))
		return false;
	size_t blen;
	const uint8_t *blob = cache_l1_get(cache->l1, key, (uint64_t)loop_now_ms(), &blen);
	CacheEntryView e;
	if (!blob || !cache_entry_parse(blob, blen, &e))
		return false;
	/* walk the names: the service, then (schema, table) per dependency */
	const char *p = e.names, *end = e.names + e.names_len;
	const char *service = p;
	if (!memchr(p, 0, e.names_len))
		return false;
	p += strlen(p) + 1;
	for (uint32_t i = 0; i < e.count; i++) {
		uint64_t v;
		if (i == 0) {
			v = version_of(cache, service, "", "");
		} else {
			const char *schema = p, *table;
			if (p >= end || !(table = memchr(p, 0, (size_t)(end - p))) || ++table >= end ||
			    !memchr(table, 0, (size_t)(end - table)))
				return false;
			p = table + strlen(table) + 1;
			v = version_of(cache, service, schema, table);
		}
		if (v != cache_entry_version(&e, i))
			return false; /* the full lookup refuses and removes it */
	}
	cache->stats.lookups++;
	cache->stats.hits++;
	cache->stats.fast_hits++;
	*service_out = service;
	*reply = e.reply;
	*len = e.reply_len;
	return true;
}

/* Another client runs the identical query (flight f): c waits for it. */
static bool wait_for_flight(Cache *cache, CacheWaiter *w, CacheFlight *f)
{
	if (!f || f->leader == w)
		return false;
	cache->stats.waits++;
	w->wait = f;
	list_push_back(&f->waiters, &w->wait_node);
	return true;
}

/* An entry's names for decision d: service\0, then schema\0table\0 per dependency. */
static void names_build(Buf *b, const char *service, const CacheDecision *d)
{
	buf_append(b, service, strlen(service) + 1);
	for (size_t i = 0; i < d->n_deps; i++) {
		buf_append(b, d->deps[i].schema, strlen(d->deps[i].schema) + 1);
		buf_append(b, d->deps[i].name, strlen(d->deps[i].name) + 1);
	}
}

/* Whether entry e was filled from service (the key does not say: the same text may go elsewhere
 * under another configuration, or another instance's). */
static bool entry_of(const CacheEntryView *e, const char *service)
{
	size_t n = strlen(service);
	return e->names_len > n && !memcmp(e->names, service, n + 1);
}

/* With versions known (local, or as Redis has them), decides: L1 hit, L2 hit, wait, or fill. */
static CacheLookup lookup_with_versions(Cache *cache, CacheWaiter *w, const char *service, const CacheDecision *d,
					const CacheKey *key, const uint64_t *now_versions, size_t n, const uint8_t *l2, size_t l2_len, bool shared,
					const uint8_t **reply, size_t *len)
{
	uint64_t now = (uint64_t)loop_now_ms();
	if (cache->l1) {
		size_t blen;
		const uint8_t *blob = cache_l1_get(cache->l1, key, now, &blen);
		CacheEntryView e;
		if (blob && cache_entry_parse(blob, blen, &e) && entry_of(&e, service) &&
		    cache_entry_versions_equal(&e, now_versions, n)) {
			cache->stats.hits++;
			*reply = e.reply;
			*len = e.reply_len;
			return CACHE_HIT;
		}
		if (blob) {
			cache->stats.stale_refused++;
			cache_l1_remove(cache->l1, key);
		}
	}
	CacheEntryView e;
	if (l2 && cache_entry_parse(l2, l2_len, &e) && entry_of(&e, service) && cache_entry_versions_equal(&e, now_versions, n)) {
		cache->stats.l2_hits++;
		cache->stats.hits++;
		if (cache->l1)
			cache_l1_put(cache->l1, key, l2, l2_len, now + (uint64_t)d->ttl_ms, now);
		*reply = e.reply; /* in the caller's l2 */
		*len = e.reply_len;
		return CACHE_HIT;
	}
	if (l2)
		cache->stats.stale_refused++;
	cache->stats.misses++;
	uint64_t h = key_hash(key);
	CacheFlight *f = hashmap_get(&cache->flights, h, flight_eq, key);
	if (wait_for_flight(cache, w, f))
		return CACHE_WAIT;
	CacheFill *fill = &w->fill;
	if (fill->active)
		cache_fill_abort(cache, w);
	fill->active = true;
	fill->failed = false;
	fill->shared = shared;
	fill->gen = cache->redis_gen;
	fill->key = *key;
	fill->ttl_ms = d->ttl_ms;
	fill->n_versions = n;
	memcpy(fill->versions, now_versions, 8 * n);
	buf_reset(&fill->reply);
	buf_reset(&fill->names);
	names_build(&fill->names, service, d);
	if (!f) {
		f = calloc(1, sizeof *f);
		if (f) {
			f->key = *key;
			list_init(&f->waiters);
			hashmap_insert(&cache->flights, h, f);
		}
	}
	if (f)
		f->leader = w;
	fill->flight = f;
	return CACHE_MISS;
}

/* ---- Redis (L2 and shared versions) ---- */

/* "<prefix>:{<service>}:v:<schema>.<table>", or the service's "...:epoch" (schema NULL): one hash
 * slot per service, so one MGET reads every version a result depends on. */
static size_t redis_version_key(const Cache *cache, char *buf, size_t cap, const char *service, const char *schema,
				const char *table)
{
	const char *prefix = cache->rt->config->cache.redis_prefix;
	int n = schema ? snprintf(buf, cap, "%s:{%s}:v:%s.%s", prefix, service, schema, table)
		       : snprintf(buf, cap, "%s:{%s}:epoch", prefix, service);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t redis_entry_key(const Cache *cache, char *buf, size_t cap, const CacheKey *key)
{
	static const char hex[] = "0123456789abcdef";
	int n = snprintf(buf, cap, "%s:e:", cache->rt->config->cache.redis_prefix);
	if (n < 0 || (size_t)n + 65 > cap)
		return 0;
	for (size_t i = 0; i < sizeof key->b; i++) {
		buf[n + 2 * i] = hex[key->b[i] >> 4];
		buf[n + 2 * i + 1] = hex[key->b[i] & 15];
	}
	buf[n + 64] = 0;
	return (size_t)n + 64;
}

typedef struct CacheRequest {
	Cache *cache;
	CacheWaiter *w;  /* NULL once its owner is gone */
	int pending;     /* replies still to come */
	bool failed;
	bool no_epoch;   /* the service has no epoch in Redis yet */
	uint64_t gen;    /* Cache.redis_gen when it was sent */
	CacheKey key;
	CacheShape shape;
	CacheDecision d;
	char service[64];
	size_t n;
	uint64_t versions[CACHE_MAX_TABLES + 1];
	Buf l2;
	bool l2_found;
	char ekey[128];
	size_t eklen;
} CacheRequest;

static void request_done(CacheRequest *rq);

static void request_on_versions(void *arg, redisReply *reply, const char *error)
{
	CacheRequest *rq = arg;
	if (!reply || error || reply->type != REDIS_REPLY_ARRAY || reply->elements != rq->n) {
		rq->failed = true;
	} else {
		for (size_t i = 0; i < rq->n; i++) {
			redisReply *e = reply->element[i];
			if (e->type == REDIS_REPLY_STRING)
				rq->versions[i] = strtoull(e->str, NULL, 10);
			else if (e->type == REDIS_REPLY_NIL)
				rq->versions[i] = 0;
			else
				rq->failed = true;
		}
		rq->no_epoch = reply->element[0]->type == REDIS_REPLY_NIL;
	}
	request_done(rq);
}

/* An entry read from Redis that is not served: counted, logged at most once a second. */
static void l2_refused(Cache *cache, const char *why)
{
	cache->stats.l2_refused++;
	int64_t now = loop_now_ms();
	if (cache->refused_log_ms && now - cache->refused_log_ms < REFUSED_LOG_MS) {
		cache->refused_unlogged++;
		return;
	}
	if (cache->refused_unlogged)
		log_warning("cache", "refused an entry read from Redis (%s), and %llu more since the last such line: "
			    "treated as a miss", why, (unsigned long long)cache->refused_unlogged);
	else
		log_warning("cache", "refused an entry read from Redis (%s): treated as a miss", why);
	cache->refused_log_ms = now;
	cache->refused_unlogged = 0;
}

static void request_on_entry(void *arg, redisReply *reply, const char *error)
{
	CacheRequest *rq = arg;
	if (!reply || error) {
		rq->failed = true;
	} else if (reply->type == REDIS_REPLY_STRING && reply->len > 0) { /* GETRANGE of no key: "" */
		rq->l2_found = true;
		buf_append(&rq->l2, reply->str, reply->len);
	} else if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL) {
		l2_refused(rq->cache, "not a string"); /* e.g. WRONGTYPE: the fill's SET replaces it */
	}
	request_done(rq);
}

static void ignore_reply(void *arg, redisReply *reply, const char *error)
{
	Cache *cache = arg;
	if (!reply || error || reply->type == REDIS_REPLY_ERROR)
		cache->stats.redis_errors++;
}

/* A service without an epoch in Redis (new, or Redis lost its data): give it a random one, so
 * that versions counted before cannot match again. */
static void redis_init_epoch(Cache *cache, const char *service)
{
	char key[256], value[32];
	size_t klen = redis_version_key(cache, key, sizeof key, service, NULL, NULL);
	uint64_t r = 0;
	if (!klen || RAND_bytes((unsigned char *)&r, sizeof r) != 1)
		return;
	snprintf(value, sizeof value, "%llu", (unsigned long long)(r >> 2));
	const char *argv[] = {"SET", key, value, "NX"};
	size_t lens[] = {3, klen, strlen(value), 2};
	redis_client_command(cache->redis, key, klen, ignore_reply, cache, 4, argv, lens);
}

/* The entry read from Redis for rq, authenticated and checked, or NULL (refused, or none). */
static const uint8_t *request_entry(CacheRequest *rq, size_t *len)
{
	Cache *cache = rq->cache;
	if (!rq->l2_found || !cache->signer)
		return NULL;
	const uint8_t *entry;
	size_t entry_len;
	if (!cache_signer_unwrap(cache->signer, rq->ekey, rq->eklen, buf_head(&rq->l2), buf_used(&rq->l2), &entry,
				 &entry_len)) {
		l2_refused(cache, "bad signature");
		return NULL;
	}
	Buf names;
	buf_init(&names);
	names_build(&names, rq->service, &rq->d);
	const char *why = cache_entry_check(entry, entry_len, rq->n, buf_head(&names), buf_used(&names), rq->shape);
	buf_free(&names);
	if (why) {
		l2_refused(cache, why);
		return NULL;
	}
	*len = entry_len;
	return entry;
}

static void request_done(CacheRequest *rq)
{
	if (--rq->pending > 0)
		return;
	Cache *cache = rq->cache;
	CacheWaiter *w = rq->w;
	if (w) {
		w->req = NULL;
		CacheAnswer *ans = &w->answer;
		ans->ready = true;
		ans->key = rq->key;
		buf_reset(&ans->reply);
		if (rq->failed || rq->no_epoch || rq->gen != cache->redis_gen) {
			if (rq->failed)
				cache->stats.redis_errors++;
			else if (rq->no_epoch)
				redis_init_epoch(cache, rq->service);
			cache->stats.bypassed++;
			ans->kind = CACHE_MISS_BYPASS;
		} else {
			/* Redis's versions decide (the local ones are this instance's own count, for outages) */
			bool unseen = false;
			TableVersion *t;
			for (size_t i = 0; i < rq->n; i++)
				if ((t = i ? version_find(cache, rq->service, rq->d.deps[i - 1].schema, rq->d.deps[i - 1].name,
							  true)
					   : version_find(cache, rq->service, "", "", true))) {
					unseen |= t->redis_seen != rq->versions[i];
					t->redis_seen = rq->versions[i];
				}
			if (unseen) /* another instance's commit, or the WAL's */
				note_bumped(cache, rq->service);
			size_t l2_len = 0;
			const uint8_t *l2 = request_entry(rq, &l2_len);
			const uint8_t *reply;
			size_t len;
			CacheLookup r = lookup_with_versions(cache, w, rq->service, &rq->d, &rq->key, rq->versions, rq->n, l2,
							     l2_len, true, &reply, &len);
			if (r == CACHE_HIT)
				buf_append(&ans->reply, reply, len);
			ans->kind = r == CACHE_HIT ? CACHE_HIT : r == CACHE_WAIT ? CACHE_WAIT : CACHE_MISS;
		}
		if (ans->kind != CACHE_WAIT)
			w->wake(w);
		/* A wait is woken by the flight's end, then looked up again; a miss started the fill, and the
		 * message goes to the server as it is (a filling client is not looked up): neither answer is
		 * for later (it would make the next identical read a pass-through). */
		if (ans->kind == CACHE_WAIT || (ans->kind == CACHE_MISS && w->fill.active))
			ans->ready = false;
	}
	buf_free(&rq->l2);
	free(rq);
}

/* Asks Redis for the versions (and, with a signing key and unless L1 has the entry, the entry). */
static bool redis_lookup(Cache *cache, CacheWaiter *w, const char *service, const CacheDecision *d, const CacheKey *key)
{
	CacheRequest *rq = calloc(1, sizeof *rq);
	if (!rq || strlen(service) >= sizeof rq->service) {
		free(rq);
		return false;
	}
	rq->cache = cache;
	rq->w = w;
	rq->key = *key;
	rq->shape = memcmp(cache->shape_key.b, key->b, sizeof key->b) == 0 ? cache->shape : CACHE_SHAPE_UNKNOWN;
	rq->gen = cache->redis_gen;
	rq->d = *d;
	rq->n = d->n_deps + 1;
	snprintf(rq->service, sizeof rq->service, "%s", service);
	buf_init(&rq->l2);
	char keys[CACHE_MAX_TABLES + 1][256];
	const char *argv[CACHE_MAX_TABLES + 2];
	size_t lens[CACHE_MAX_TABLES + 2];
	argv[0] = "MGET";
	lens[0] = 4;
	for (size_t i = 0; i < rq->n; i++) {
		size_t kl = i == 0 ? redis_version_key(cache, keys[i], sizeof keys[i], service, NULL, NULL)
				   : redis_version_key(cache, keys[i], sizeof keys[i], service, d->deps[i - 1].schema,
						       d->deps[i - 1].name);
		if (!kl) {
			free(rq);
			return false;
		}
		argv[i + 1] = keys[i];
		lens[i + 1] = kl;
	}
	bool in_l1 = false;
	if (cache->l1) {
		size_t blen;
		in_l1 = cache_l1_get(cache->l1, key, (uint64_t)loop_now_ms(), &blen) != NULL;
	}
	if (!in_l1 && cache->signer)
		rq->eklen = redis_entry_key(cache, rq->ekey, sizeof rq->ekey, key);
	rq->pending = rq->eklen ? 2 : 1;
	w->req = rq;
	cache->stats.redis_lookups++;
	redis_client_command(cache->redis, keys[0], lens[1], request_on_versions, rq, (int)rq->n + 1, argv, lens);
	if (rq->eklen) {
		/* GETRANGE, not GET: what Redis can make pgrelay read is bounded (a longer value is refused) */
		char last[32];
		snprintf(last, sizeof last, "%zu",
			 CACHE_ENTRY_MAC_LEN + CACHE_ENTRY_MAX_OVERHEAD + cache->rt->config->cache.max_result - 1);
		const char *gargv[] = {"GETRANGE", rq->ekey, "0", last};
		size_t glens[] = {8, rq->eklen, 1, strlen(last)};
		redis_client_command(cache->redis, rq->ekey, rq->eklen, request_on_entry, rq, 4, gargv, glens);
	}
	return true;
}

/* The entry goes to Redis too, signed under its key (with a signing key only). */
static void redis_store(Cache *cache, const CacheKey *key, const Buf *entry, int64_t ttl_ms)
{
	char ekey[128], ttl[32];
	size_t eklen = cache->signer ? redis_entry_key(cache, ekey, sizeof ekey, key) : 0;
	if (!eklen)
		return;
	Buf value;
	buf_init(&value);
	if (cache_signer_wrap(cache->signer, ekey, eklen, buf_head(entry), buf_used(entry), &value)) {
		snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
		const char *argv[] = {"SET", ekey, (const char *)buf_head(&value), "PX", ttl};
		size_t lens[] = {3, eklen, buf_used(&value), 2, strlen(ttl)};
		cache->stats.l2_stores++;
		redis_client_command(cache->redis, ekey, eklen, ignore_reply, cache, 5, argv, lens);
	}
	buf_free(&value);
}

void cache_waiter_gone(Cache *cache, CacheWaiter *w)
{
	(void)cache;
	if (w->req) {
		w->req->w = NULL;
		w->req = NULL;
	}
	w->answer.ready = false;
}

/* ---- bumps in Redis, and what could not reach it ---- */

static void outage_retry(Cache *cache);

static void on_outage_timer(void *arg) { outage_retry(arg); }

static void outage_arm(Cache *cache)
{
	if (cache->closing || !cache->n_outages)
		return;
	if (!cache->outage_timer.ready)
		loop_timer_init(&cache->outage_timer, cache->rt->base, on_outage_timer, cache);
	loop_timer_start_unless_pending(&cache->outage_timer, OUTAGE_RETRY_MS);
}

/* Whether a bump of service did not reach Redis (its new epoch there is not sent or not
 * acknowledged yet). */
static bool outage_pending(const Cache *cache, const char *service)
{
	for (size_t i = 0; i < cache->n_outages; i++)
		if (strcmp(cache->outages[i].service, service) == 0)
			return true;
	return false;
}

/* A bump of service could not reach Redis (or may not have). */
static void outage_note(Cache *cache, const char *service)
{
	CacheOutage *o = NULL;
	for (size_t i = 0; i < cache->n_outages && !o; i++)
		if (strcmp(cache->outages[i].service, service) == 0)
			o = &cache->outages[i];
	if (!o) {
		cache->outages = xalloc_check(realloc(cache->outages, (cache->n_outages + 1) * sizeof *cache->outages));
		o = &cache->outages[cache->n_outages++];
		*o = (CacheOutage){.service = xstrdup(service), .id = ++cache->outage_ids};
	}
	o->failures++;
	outage_arm(cache);
}

static void bump_on_reply(void *arg, redisReply *reply, const char *error)
{
	CacheBump *b = arg;
	if (!reply || error || reply->type != REDIS_REPLY_INTEGER) {
		b->cache->stats.redis_errors++;
		b->failed = true;
		outage_note(b->cache, b->service);
	}
	if (--b->pending > 0)
		return;
	if (b->owner)
		b->done(b->owner);
	if (b->finished)
		b->finished(b->cache, b->finished_arg, !b->failed);
	free(b);
}

/* Sends INCR of each version w bumps (the epoch for w->all) and PUBLISH. NULL (and the service
 * noted) when no INCR could be sent. */
static CacheBump *bump_send(Cache *cache, const char *service, const CacheWrites *w)
{
	CacheBump *b = calloc(1, sizeof *b);
	if (!b || strlen(service) >= sizeof b->service) {
		free(b);
		outage_note(cache, service);
		return NULL;
	}
	b->cache = cache;
	memcpy(b->service, service, strlen(service) + 1); /* its length was checked */
	b->pending = 1; /* held until every command is sent */
	Buf msg;
	buf_init(&msg);
	buf_append(&msg, service, strlen(service));
	if (w->ddl) { /* the other instances read the service's catalog again too (older ones read "all") */
		char line[40];
		int n = snprintf(line, sizeof line, "\n@catalog %016llx", (unsigned long long)cache->instance_id);
		buf_append(&msg, line, (size_t)n);
	}
	bool missed = false;
	for (size_t i = 0; i <= w->n; i++) {
		char key[256];
		size_t klen;
		if (i == w->n) {
			if (!w->all)
				break;
			klen = redis_version_key(cache, key, sizeof key, service, NULL, NULL);
			buf_append(&msg, "\n*", 2);
		} else {
			klen = redis_version_key(cache, key, sizeof key, service, w->tables[i].schema, w->tables[i].name);
			buf_append(&msg, "\n", 1);
			buf_append(&msg, w->tables[i].schema, strlen(w->tables[i].schema));
			buf_append(&msg, "\t", 1);
			buf_append(&msg, w->tables[i].name, strlen(w->tables[i].name));
		}
		if (!klen) {
			missed = true;
			continue;
		}
		b->pending++;
		const char *argv[] = {"INCR", key};
		size_t lens[] = {4, klen};
		redis_client_command(cache->redis, key, klen, bump_on_reply, b, 2, argv, lens);
	}
	cache->stats.redis_bumps++;
	char channel[160];
	snprintf(channel, sizeof channel, "%s:invalidate", cache->rt->config->cache.redis_prefix);
	const char *pargv[] = {"PUBLISH", channel, (const char *)buf_head(&msg)};
	size_t plens[] = {7, strlen(channel), buf_used(&msg)};
	redis_client_command(cache->redis, channel, strlen(channel), ignore_reply, cache, 3, pargv, plens);
	buf_free(&msg);
	if (missed) { /* a name too long for a key: the service gets a new epoch */
		b->failed = true;
		outage_note(cache, service);
	}
	if (--b->pending == 0) { /* nothing was sent */
		free(b);
		return NULL;
	}
	return b;
}

CacheBump *cache_invalidate_shared(Cache *cache, const char *service, const CacheWrites *w, void (*done)(void *owner),
				   void *owner)
{
	CacheWrites x;
	cachepolicy_writes_expand(cache->rt->config, cache_catalog(cache, service), w, &x);
	if (w->ddl && cache->catalogs) {
		/* what the DDL changed is learned anew; until then the service's catalog is not used */
		catalog_loader_refresh(cache->catalogs, service);
		cache->catalog_refreshes++;
	}
	bump_local(cache, service, &x);
	if (!cache->redis)
		return NULL;
	if (!cache->redis_live) {
		outage_note(cache, service);
		return NULL;
	}
	CacheBump *b = bump_send(cache, service, &x);
	if (b) {
		b->done = done;
		b->owner = owner;
	}
	return b;
}

/* The new epoch of an outage's service reached Redis, or not. */
static void outage_bump_finished(Cache *cache, uint64_t id, bool ok)
{
	for (size_t i = 0; i < cache->n_outages; i++) {
		CacheOutage *o = &cache->outages[i];
		if (o->id != id)
			continue;
		o->in_flight = false;
		if (ok && o->failures == o->failures_sent) {
			char *service = o->service;
			cache->outages[i] = cache->outages[--cache->n_outages];
			log_info("cache", "service %s has a new epoch in Redis: what its writes changed while Redis "
				 "could not be told is no longer served", service);
			wal_outage_resolved(cache, service);
			free(service);
		}
		break;
	}
	outage_arm(cache);
}

/* Services whose bumps did not reach Redis get a new epoch there (INCR), so that nobody serves what
 * those writes changed, as soon as Redis answers. */
static void outage_retry(Cache *cache)
{
	if (cache->closing || !cache->redis_live) {
		outage_arm(cache);
		return;
	}
	for (size_t i = 0; i < cache->n_outages; i++) {
		CacheOutage *o = &cache->outages[i];
		if (o->in_flight)
			continue;
		CacheWrites w;
		memset(&w, 0, sizeof w);
		w.all = true;
		w.all_why = "writes Redis was not told of";
		o->failures_sent = o->failures;
		char service[64];
		snprintf(service, sizeof service, "%s", o->service);
		CacheBump *b = bump_send(cache, service, &w); /* may note (and move) outages */
		if (b) {
			b->finished = outage_bump_finished;
			for (size_t j = 0; j < cache->n_outages; j++)
				if (strcmp(cache->outages[j].service, service) == 0) {
					cache->outages[j].in_flight = true;
					b->finished_arg = cache->outages[j].id;
				}
		}
	}
	outage_arm(cache);
}

/* Another instance's invalidation ("service\nschema\ttable\n..." or "\n*"; "\n@catalog <instance>" after DDL):
 * bump locally, so L1 entries stop being served at once, also if Redis goes away next. */
static void cache_on_message(void *arg, const char *msg, size_t len)
{
	Cache *cache = arg;
	char buf[8192];
	if (len >= sizeof buf)
		len = sizeof buf - 1;
	memcpy(buf, msg, len);
	buf[len] = 0;
	char *save = NULL, *line = strtok_r(buf, "\n", &save);
	if (!line)
		return;
	const char *service = line;
	CacheWrites w;
	memset(&w, 0, sizeof w);
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *tab = strchr(line, '\t');
		if (strncmp(line, "@catalog ", 9) == 0) {
			/* DDL committed through another instance: relearn the catalog, caching nothing of the
			 * service until it is loaded (this instance's own message: done at its commit) */
			if (cache->catalogs && strtoull(line + 9, NULL, 16) != cache->instance_id) {
				catalog_loader_refresh(cache->catalogs, service);
				cache->catalog_refreshes++;
			}
			continue;
		}
		if (strcmp(line, "*") == 0 || !tab) {
			w.all = true;
			w.all_why = "another pgrelay instance";
			continue;
		}
		*tab = 0;
		if (w.n < CACHE_MAX_TABLES) {
			snprintf(w.tables[w.n].schema, sizeof w.tables[0].schema, "%s", line);
			snprintf(w.tables[w.n].name, sizeof w.tables[0].name, "%s", tab + 1);
			w.n++;
		} else {
			w.all = true;
		}
	}
	cache->stats.remote_invalidations++;
	bump_local(cache, service, &w);
}

/*
 * Redis became usable, or stopped being. While it is, lookups compare entries with its versions;
 * while it is not, with the local ones. The two counts differ, so L1 starts empty at each change
 * (and fills started before it store nothing): an entry is only ever compared with the kind of
 * versions it was read under. Up again: other instances' invalidations may have been missed (L1
 * is empty), and services whose bumps did not reach Redis get a new epoch.
 */
static void cache_on_redis_state(void *arg, bool up)
{
	Cache *cache = arg;
	if (up == cache->redis_live)
		return;
	cache->redis_live = up;
	cache->redis_gen++;
	if (cache->l1)
		cache_l1_clear(cache->l1);
	if (!up) {
		/*
		 * Redis (or a node of the Cluster) may come back without the last bumps it acknowledged
		 * (a failover to a replica that had not received them, a restart): every service gets a
		 * new epoch before anything is served from the cache again.
		 */
		const Config *cfg = cache->rt->config;
		for (size_t i = 0; i < cfg->n_services; i++)
			outage_note(cache, cfg->services[i].name);
	}
	if (up)
		outage_retry(cache);
}

static bool cache_start_redis(Cache *cache)
{
	const ConfigCache *cc = &cache->rt->config->cache;
	RedisOptions opt = {
		.nodes = (const char *const *)cc->redis_nodes,
		.n_nodes = cc->n_redis_nodes,
		.cluster = cc->redis_cluster,
		.timeout_ms = (int)cc->redis_timeout_ms,
		.username = cc->redis_user,
		.password = cc->redis_password,
		.dns = cache->rt->dns,
	};
	if (cc->redis_signing_key) {
		cache->signer = cache_signer_new(cc->redis_signing_key, cc->redis_signing_key_len);
		if (!cache->signer)
			log_error("cache", "cannot set up HMAC-SHA256 with cache.redis.signing_key: no entries in Redis");
	} else {
		log_warning("cache", "cache.redis has no signing_key: results are neither stored in Redis nor read from "
			    "it (Redis still carries the versions shared by pgrelay instances)");
	}
	cache->redis = redis_client_new(cache->rt->base, &opt, cache_on_redis_state, cache);
	if (!cache->redis)
		return false;
	char channel[160];
	snprintf(channel, sizeof channel, "%s:invalidate", cc->redis_prefix);
	redis_client_subscribe(cache->redis, channel, cache_on_message, cache);
	return true;
}

CacheLookup cache_lookup(Cache *cache, CacheWaiter *w, const char *service, const CacheDecision *d, const CacheKey *key,
			 const uint8_t **reply, size_t *len)
{
	CacheAnswer *ans = &w->answer;
	if (ans->ready) {
		/* the answer of an earlier asynchronous lookup of this same message */
		ans->ready = false;
		if (memcmp(ans->key.b, key->b, sizeof key->b) == 0) {
			if (ans->kind == CACHE_HIT) {
				*reply = buf_head(&ans->reply);
				*len = buf_used(&ans->reply);
				return CACHE_HIT;
			}
			return CACHE_MISS; /* the fill (if any) was started then */
		}
	}
	cache->stats.lookups++;
	if (!cache_trusted(cache)) {
		cache->stats.bypassed++;
		return CACHE_MISS; /* no fill either */
	}
	if (cache->redis && (!cache->redis_live || outage_pending(cache, service))) {
		/*
		 * Another instance may have committed a write Redis could not record or this instance
		 * cannot read now: a result kept here may be stale for its clients. Nothing is served
		 * from the cache (nor stored) until Redis answers again and the service's versions
		 * there are known to be current.
		 */
		cache->stats.bypassed++;
		cache->stats.outage_bypassed++;
		return CACHE_MISS;
	}
	if (cache->redis_live) {
		/* before asking Redis: an identical query may be running already */
		if (wait_for_flight(cache, w, hashmap_get(&cache->flights, key_hash(key), flight_eq, key)))
			return CACHE_WAIT;
		if (redis_lookup(cache, w, service, d, key))
			return CACHE_PENDING;
		cache->stats.bypassed++;
		return CACHE_MISS; /* the local versions are not the ones L1's entries hold now */
	}
	uint64_t now_versions[CACHE_MAX_TABLES + 1];
	size_t n = current_versions(cache, service, d, now_versions);
	return lookup_with_versions(cache, w, service, d, key, now_versions, n, NULL, 0, false, reply, len);
}

void cache_fill_message(Cache *cache, CacheWaiter *w, uint8_t type, const uint8_t *msg, size_t total)
{
	CacheFill *fill = &w->fill;
	if (!fill->active || fill->failed)
		return;
	if (type == '1' || type == '2')
		return; /* ParseComplete / BindComplete: pgrelay makes them when it replays */
	/* Only a plain result is replayed: RowDescription, DataRows, CommandComplete. */
	if ((type != 'T' && type != 'D' && type != 'C') ||
	    buf_used(&fill->reply) + total > cache->rt->config->cache.max_result) {
		fill->failed = true;
		buf_reset(&fill->reply);
		return;
	}
	buf_append(&fill->reply, msg, total);
}

static void flight_end(Cache *cache, CacheFlight *f)
{
	if (!f)
		return;
	long slot = hashmap_find(&cache->flights, key_hash(&f->key), flight_eq, &f->key);
	if (slot >= 0)
		hashmap_delete_at(&cache->flights, slot);
	ListNode *n;
	while ((n = list_pop_front(&f->waiters))) {
		CacheWaiter *w = list_entry(n, CacheWaiter, wait_node);
		w->wait = NULL;
		w->wake(w);
	}
	free(f);
}

/*
 * Whether a result just read from a replica may be stored: the replica must have replayed every
 * commit that invalidated anything of the service (seen by this instance: its own, other
 * instances' through Redis, the WAL listener's). The health checker's last probe of the replica
 * found it at or past the primary's LSN of the probe before, and that primary probe began after
 * the last invalidation; the query ran after the replica's probe, so it saw at least as much.
 */
static bool replica_caught_up(Cache *cache, const char *service, int replica)
{
	Runtime *rt = cache->rt;
	if (!rt->health)
		return false;
	const BackendHealth *p = health_backend(rt->health, service, -1);
	const BackendHealth *r = health_backend(rt->health, service, replica);
	if (!p || !r || !p->have_result || !r->have_result || !r->up || r->lagging || r->lag_bytes != 0)
		return false;
	if (p->last_check_ms > r->last_check_ms)
		return false; /* the replica's lag was measured against an older primary LSN */
	TableVersion *t = version_find(cache, service, "", "", false);
	int64_t bumped = t ? t->bumped_ms : 0;
	/* the primary's LSN was read at most health.timeout before its probe finished */
	return p->last_check_ms - rt->config->health.timeout_ms > bumped;
}

void cache_fill_finish(Cache *cache, CacheWaiter *w, const char *service, int replica)
{
	CacheFill *fill = &w->fill;
	if (!fill->active)
		return;
	fill->active = false;
	bool ok = !fill->failed && buf_used(&fill->reply) > 0;
	if (ok && replica >= 0 && !replica_caught_up(cache, service, replica)) {
		cache->stats.replica_not_stored++;
		ok = false;
	}
	if (ok && (fill->gen != cache->redis_gen || buf_used(&fill->names) > UINT16_MAX)) {
		/* Redis came or went meanwhile: the versions it holds are not the kind lookups use now */
		cache->stats.store_refused++;
		ok = false;
	}
	if (ok) {
		Buf blob;
		buf_init(&blob);
		cache_entry_build(&blob, fill->versions, fill->n_versions, buf_head(&fill->names), buf_used(&fill->names),
				  buf_head(&fill->reply), buf_used(&fill->reply));
		uint64_t now = (uint64_t)loop_now_ms();
		if (!cache->l1)
			; /* L2 only */
		else if (cache_l1_put(cache->l1, &fill->key, buf_head(&blob), buf_used(&blob), now + (uint64_t)fill->ttl_ms, now))
			cache->stats.stores++;
		else
			cache->stats.store_refused++;
		if (fill->shared && cache->redis_live)
			redis_store(cache, &fill->key, &blob, fill->ttl_ms);
		buf_free(&blob);
	} else {
		cache->stats.store_refused += !fill->failed ? 0 : 1;
	}
	buf_reset(&fill->reply);
	CacheFlight *f = fill->flight;
	fill->flight = NULL;
	if (f && f->leader == w)
		flight_end(cache, f);
}

void cache_fill_abort(Cache *cache, CacheWaiter *w)
{
	CacheFill *fill = &w->fill;
	fill->active = false;
	buf_reset(&fill->reply);
	CacheFlight *f = fill->flight;
	fill->flight = NULL;
	if (f && f->leader == w)
		flight_end(cache, f);
}

void cache_wait_cancel(Cache *cache, CacheWaiter *w)
{
	(void)cache;
	if (w->wait) {
		list_remove(&w->wait->waiters, &w->wait_node);
		w->wait = NULL;
	}
}
