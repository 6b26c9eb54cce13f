/*
 * cache — keys, versions, entries, single-flight and invalidation of the result cache (see
 * cache.h). The L1 store itself is cache_l1.
 */
#include "cache.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "log.h"
#include "proto.h"
#include "runtime.h"
#include "statement.h"
#include "wal.h"

#define ENTRY_MAGIC 0x70677263u /* "pgrc" */

typedef struct TableVersion {
	uint64_t hash;
	size_t key_len;
	uint64_t version;
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

/* The WAL listener saw a commit (made through pgrelay or not): bump its tables. */
static void cache_on_wal_commit(void *arg, const WalTable *tables, size_t n, uint64_t lsn)
{
	Cache *cache = arg;
	(void)lsn;
	CacheWrites w;
	memset(&w, 0, sizeof w);
	if (n == 0) {
		w.all = true;
		w.all_why = "the WAL listener may have missed changes";
	}
	for (size_t i = 0; i < n; i++)
		cachepolicy_add_write(cache->rt->config, tables[i].schema, tables[i].name, &w);
	cache->stats.wal_invalidations++;
	cache_invalidate(cache, cache->wal_service, &w);
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
	if (!cache->wal)
		log_error("cache", "cannot start the WAL listener for service %s (slot %s)", cache->wal_service, cc->wal_slot);
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

Cache *cache_new(Runtime *rt)
{
	const ConfigCache *cc = &rt->config->cache;
	Cache *cache = calloc(1, sizeof *cache);
	if (!cache)
		return NULL;
	cache->rt = rt;
	hashmap_init(&cache->versions);
	hashmap_init(&cache->flights);
	if (cc->l1_max_memory) {
		cache->l1 = cache_l1_new(cc->l1_max_memory, cc->max_result + 64 + 8 * (CACHE_MAX_TABLES + 1));
		if (!cache->l1) {
			free(cache);
			return NULL;
		}
	}
	if (cc->wal_service)
		cache_start_wal(cache);
	return cache;
}

void cache_free(Cache *cache)
{
	if (!cache)
		return;
	if (cache->wal)
		wal_listener_free(cache->wal);
	free(cache->wal_service);
	for (size_t i = 0; i < cache->versions.cap; i++)
		if (cache->versions.slots[i].value)
			free(cache->versions.slots[i].value);
	hashmap_free(&cache->versions);
	hashmap_free(&cache->flights); /* flights belong to clients, which are gone */
	if (cache->l1)
		cache_l1_free(cache->l1);
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

void cache_invalidate(Cache *cache, const char *service, const CacheWrites *w)
{
	if (w->all) {
		TableVersion *t = version_find(cache, service, "", "", true);
		if (t)
			t->version++;
		cache->stats.bumps_all++;
		log_debug("cache", "invalidating everything of service %s: %s", service, w->all_why);
	}
	for (size_t i = 0; i < w->n; i++) {
		TableVersion *t = version_find(cache, service, w->tables[i].schema, w->tables[i].name, true);
		if (t)
			t->version++;
		else /* a name too long to key: everything */
			cache_invalidate(cache, service, &(CacheWrites){.all = true, .all_why = "a very long name"});
	}
	cache->stats.invalidations += (w->all ? 1 : 0) + w->n;
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

void cache_key_build(const Client *c, const char *service, const char *search_path, char protocol,
		     const void *part, size_t part_len, const void *part2, size_t part2_len, bool describe,
		     CacheKey *key)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	char head[4] = {'p', 'g', protocol, describe ? 'D' : '-'};
	EVP_DigestUpdate(ctx, head, sizeof head);
	digest_str(ctx, service);
	digest_str(ctx, c->database);
	digest_str(ctx, c->user);
	digest_str(ctx, search_path ? search_path : "\001default");
	/* every other session parameter, in name order */
	const Param *sorted[64];
	size_t n = 0;
	for (size_t i = 0; i < c->params.n && n < 64; i++)
		if (!param_ignored(c->params.items[i].name))
			sorted[n++] = &c->params.items[i];
	qsort(sorted, n, sizeof sorted[0], param_cmp);
	for (size_t i = 0; i < n; i++) {
		digest_str(ctx, sorted[i]->name);
		digest_str(ctx, sorted[i]->value);
	}
	uint64_t l1 = part_len, l2 = part2_len;
	EVP_DigestUpdate(ctx, &l1, sizeof l1);
	EVP_DigestUpdate(ctx, part, part_len);
	EVP_DigestUpdate(ctx, &l2, sizeof l2);
	if (part2_len)
		EVP_DigestUpdate(ctx, part2, part2_len);
	unsigned int md_len = 0;
	EVP_DigestFinal_ex(ctx, key->b, &md_len);
	EVP_MD_CTX_free(ctx);
}

/* ---- entries: magic, n, versions[n], expiry is the L1's; then the reply ---- */

static size_t entry_header_len(size_t n) { return 8 + 8 * n; }

static bool entry_current(const uint8_t *blob, size_t len, const uint64_t *now, size_t n)
{
	uint32_t magic, count;
	if (len < 8)
		return false;
	memcpy(&magic, blob, 4);
	memcpy(&count, blob + 4, 4);
	if (magic != ENTRY_MAGIC || count != n || len < entry_header_len(n))
		return false;
	return memcmp(blob + 8, now, 8 * n) == 0;
}

/* ---- lookups and fills ---- */

CacheLookup cache_lookup(Cache *cache, Client *c, const char *service, const CacheDecision *d, const CacheKey *key,
			 const uint8_t **reply, size_t *len)
{
	cache->stats.lookups++;
	if (!cache_trusted(cache)) {
		cache->stats.bypassed++;
		return CACHE_MISS; /* no fill either */
	}
	uint64_t now_versions[CACHE_MAX_TABLES + 1];
	size_t n = current_versions(cache, service, d, now_versions);
	if (cache->l1) {
		size_t blen;
		const uint8_t *blob = cache_l1_get(cache->l1, key, (uint64_t)runtime_now_ms(), &blen);
		if (blob && entry_current(blob, blen, now_versions, n)) {
			cache->stats.hits++;
			*reply = blob + entry_header_len(n);
			*len = blen - entry_header_len(n);
			return CACHE_HIT;
		}
		if (blob) {
			cache->stats.stale_refused++;
			cache_l1_remove(cache->l1, key);
		}
	}
	cache->stats.misses++;
	uint64_t h = key_hash(key);
	CacheFlight *f = hashmap_get(&cache->flights, h, flight_eq, key);
	if (f && f->leader != c) {
		cache->stats.waits++;
		c->cache_wait = f;
		list_push_back(&f->waiters, &c->cache_wait_node);
		return CACHE_WAIT;
	}
	CacheFill *fill = &c->cache_fill;
	if (fill->active)
		cache_fill_abort(cache, c);
	fill->active = true;
	fill->failed = false;
	fill->key = *key;
	fill->ttl_ms = d->ttl_ms;
	fill->n_versions = n;
	memcpy(fill->versions, now_versions, 8 * n);
	buf_reset(&fill->reply);
	if (!f) {
		f = calloc(1, sizeof *f);
		if (f) {
			f->key = *key;
			list_init(&f->waiters);
			hashmap_insert(&cache->flights, h, f);
		}
	}
	if (f)
		f->leader = c;
	fill->flight = f;
	return CACHE_MISS;
}

void cache_fill_message(Cache *cache, Client *c, uint8_t type, const uint8_t *msg, size_t total)
{
	CacheFill *fill = &c->cache_fill;
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
		Client *w = list_entry(n, Client, cache_wait_node);
		w->cache_wait = NULL;
		statement_cache_wake(w);
	}
	free(f);
}

void cache_fill_finish(Cache *cache, Client *c, const char *service, bool from_replica)
{
	CacheFill *fill = &c->cache_fill;
	if (!fill->active)
		return;
	fill->active = false;
	const ConfigCache *cc = &cache->rt->config->cache;
	bool ok = !fill->failed && buf_used(&fill->reply) > 0 && cache->l1;
	if (ok && from_replica) {
		/* A replica may not have replayed the last invalidating commit yet. */
		cache->stats.replica_not_stored++;
		ok = false;
	}
	if (ok) {
		Buf blob;
		buf_init(&blob);
		uint32_t magic = ENTRY_MAGIC, count = (uint32_t)fill->n_versions;
		buf_append(&blob, &magic, 4);
		buf_append(&blob, &count, 4);
		buf_append(&blob, fill->versions, 8 * fill->n_versions);
		buf_append(&blob, buf_head(&fill->reply), buf_used(&fill->reply));
		uint64_t now = (uint64_t)runtime_now_ms();
		if (cache_l1_put(cache->l1, &fill->key, buf_head(&blob), buf_used(&blob), now + (uint64_t)fill->ttl_ms, now))
			cache->stats.stores++;
		else
			cache->stats.store_refused++;
		buf_free(&blob);
	} else {
		cache->stats.store_refused += !fill->failed ? 0 : 1;
	}
	(void)service;
	(void)cc;
	buf_reset(&fill->reply);
	CacheFlight *f = fill->flight;
	fill->flight = NULL;
	if (f && f->leader == c)
		flight_end(cache, f);
}

void cache_fill_abort(Cache *cache, Client *c)
{
	CacheFill *fill = &c->cache_fill;
	fill->active = false;
	buf_reset(&fill->reply);
	CacheFlight *f = fill->flight;
	fill->flight = NULL;
	if (f && f->leader == c)
		flight_end(cache, f);
}

void cache_wait_cancel(Cache *cache, Client *c)
{
	(void)cache;
	if (c->cache_wait) {
		list_remove(&c->cache_wait->waiters, &c->cache_wait_node);
		c->cache_wait = NULL;
	}
}
