/*
 * test_cache_l1 — the L1 result cache store: get/put/replace/remove, the byte bound under random
 * operations (checked against a model), TTL expiry, too-big rejection, S3-FIFO scan resistance,
 * the ghost sending a re-inserted key to main, shrinking with set_max_bytes, clear.
 */
#include "cache_l1.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

#define OVH CACHE_L1_ENTRY_OVERHEAD

/* Keys that differ in the first 8 bytes (id) and in the last byte (tag). */
static CacheKey key_of(uint64_t id, uint8_t tag)
{
	CacheKey k;
	memset(&k, 0, sizeof k);
	memcpy(k.b, &id, sizeof id);
	k.b[31] = tag;
	return k;
}

static void fill(uint8_t *buf, size_t len, uint64_t id, uint32_t version)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(id * 31 + version * 7 + i);
}

static bool content_ok(const uint8_t *p, size_t len, uint64_t id, uint32_t version)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(id * 31 + version * 7 + i))
			return false;
	return true;
}

static CacheL1Stats stats(const CacheL1 *l1)
{
	CacheL1Stats s;
	cache_l1_stats(l1, &s);
	return s;
}

static bool put_n(CacheL1 *l1, uint64_t id, size_t len, uint64_t expires, uint64_t now)
{
	static uint8_t buf[65536];
	CacheKey k = key_of(id, 0);
	fill(buf, len, id, 0);
	return cache_l1_put(l1, &k, buf, len, expires, now);
}

static bool has(CacheL1 *l1, uint64_t id, uint64_t now)
{
	CacheKey k = key_of(id, 0);
	size_t len;
	return cache_l1_get(l1, &k, now, &len) != NULL;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

TEST(get_put_replace_remove)
{
	CacheL1 *l1 = cache_l1_new(1 << 20, 0);
	CacheKey a = key_of(1, 0), a2 = key_of(1, 1), b = key_of(2, 0);
	size_t len = 99;
	CHECK(cache_l1_get(l1, &a, 0, &len) == NULL);
	CHECK_INT(len, 0);

	CHECK(cache_l1_put(l1, &a, "hello", 5, CACHE_L1_NO_EXPIRY, 0));
	CHECK(cache_l1_put(l1, &a2, "other key", 9, CACHE_L1_NO_EXPIRY, 0)); /* differs in byte 31 */
	const uint8_t *p = cache_l1_get(l1, &a, 0, &len);
	REQUIRE(p);
	CHECK_INT(len, 5);
	CHECK(memcmp(p, "hello", 5) == 0);
	p = cache_l1_get(l1, &a2, 0, &len);
	REQUIRE(p);
	CHECK_INT(len, 9);
	CHECK(memcmp(p, "other key", 9) == 0);
	CHECK(cache_l1_get(l1, &b, 0, &len) == NULL);

	/* replace: new content and length, one entry */
	CHECK(cache_l1_put(l1, &a, "a longer value", 14, CACHE_L1_NO_EXPIRY, 0));
	p = cache_l1_get(l1, &a, 0, &len);
	REQUIRE(p);
	CHECK_INT(len, 14);
	CHECK(memcmp(p, "a longer value", 14) == 0);
	CacheL1Stats s = stats(l1);
	CHECK_INT(s.entries, 2);
	CHECK_INT(s.bytes, 14 + 9 + 2 * OVH);
	CHECK_INT(s.inserts, 3);
	CHECK_INT(s.hits, 3);
	CHECK_INT(s.misses, 2);

	/* an empty blob is a hit with length 0 */
	CHECK(cache_l1_put(l1, &b, NULL, 0, CACHE_L1_NO_EXPIRY, 0));
	len = 99;
	CHECK(cache_l1_get(l1, &b, 0, &len) != NULL);
	CHECK_INT(len, 0);

	CHECK(cache_l1_remove(l1, &a));
	CHECK(!cache_l1_remove(l1, &a));
	CHECK(cache_l1_get(l1, &a, 0, &len) == NULL);
	CHECK(cache_l1_get(l1, &a2, 0, &len) != NULL);
	s = stats(l1);
	CHECK_INT(s.removals, 1);
	CHECK_INT(s.entries, 2);
	CHECK_INT(s.bytes, 9 + 0 + 2 * OVH);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

/* Random puts, gets, removes and time steps against a model of what may be cached. */
TEST(random_ops_bound_and_model)
{
	enum { IDS = 600, OPS = 60000 };
	const size_t max = 200 * 1024;
	struct {
		uint32_t version;
		size_t len;
		uint64_t expires;
		bool present; /* put and not removed, refused or seen expired */
	} model[IDS];
	memset(model, 0, sizeof model);
	static uint8_t buf[9000];
	CacheL1 *l1 = cache_l1_new(max, 8000);
	uint64_t now = 1000, hits = 0, bad = 0, over = 0, stale = 0;
	for (int op = 0; op < OPS; op++) {
		uint64_t id = rnd() % IDS;
		CacheKey k = key_of(id, (uint8_t)(id % 3));
		unsigned r = (unsigned)(rnd() % 100);
		if (r < 55) {
			size_t len;
			const uint8_t *p = cache_l1_get(l1, &k, now, &len);
			if (p) {
				hits++;
				if (!model[id].present || now >= model[id].expires)
					stale++;
				else if (len != model[id].len || !content_ok(p, len, id, model[id].version))
					bad++;
			} else {
				model[id].present = false; /* expired or evicted: must not come back */
			}
		} else if (r < 92) {
			size_t len = rnd() % 9000; /* some over max_entry_bytes */
			uint32_t v = model[id].version + 1;
			uint64_t expires = rnd() % 4 ? now + 1 + rnd() % 5000 : CACHE_L1_NO_EXPIRY;
			fill(buf, len, id, v);
			bool ok = cache_l1_put(l1, &k, buf, len, expires, now);
			CHECK(ok == (len <= 8000));
			model[id].version = v;
			model[id].len = len;
			model[id].expires = expires;
			model[id].present = ok;
		} else if (r < 97) {
			bool was = cache_l1_remove(l1, &k);
			if (was && !model[id].present)
				stale++;
			model[id].present = false;
		} else {
			now += rnd() % 500;
		}
		if (stats(l1).bytes > max)
			over++;
		if (op % 5000 == 0)
			CHECK(cache_l1_check(l1));
	}
	CHECK_INT(over, 0);
	CHECK_INT(bad, 0);
	CHECK_INT(stale, 0);
	CacheL1Stats s = stats(l1);
	CHECK(cache_l1_check(l1));
	CHECK(hits > 1000);
	CHECK(s.evictions > 1000);
	CHECK(s.expirations > 100);
	CHECK(s.rejected_too_big > 100);
	CHECK(s.ghost_hits > 0);
	CHECK(s.promotions > 0);
	CHECK(s.bytes <= max && s.bytes > max / 2);
	CHECK_INT(s.hits, hits);
	cache_l1_free(l1);
}

TEST(ttl_expiry)
{
	CacheL1 *l1 = cache_l1_new(1 << 20, 0);
	CHECK(put_n(l1, 1, 100, 1000, 0));
	CHECK(put_n(l1, 2, 100, CACHE_L1_NO_EXPIRY, 0));
	CHECK(has(l1, 1, 999));
	CHECK(!has(l1, 1, 1000)); /* expired at expires_ms exactly */
	CacheL1Stats s = stats(l1);
	CHECK_INT(s.expirations, 1);
	CHECK_INT(s.entries, 1);
	CHECK_INT(s.bytes, 100 + OVH);
	CHECK(has(l1, 2, UINT64_MAX - 1));
	/* the expired key was wanted again: its next put goes to main */
	CHECK_INT(s.ghost_entries, 1);
	CHECK(put_n(l1, 1, 100, 5000, 1000));
	s = stats(l1);
	CHECK_INT(s.ghost_hits, 1);
	CHECK_INT(s.main_entries, 1);
	CHECK(has(l1, 1, 4999));

	/* already expired: not stored, and the older value is gone too */
	CHECK(!put_n(l1, 1, 100, 1000, 1000));
	CHECK(!has(l1, 1, 1000));
	CHECK_INT(stats(l1).rejected_too_big, 0);

	/* eviction frees expired entries it meets as expirations, not evictions */
	cache_l1_clear(l1);
	cache_l1_set_max_bytes(l1, 10 * (100 + OVH));
	for (uint64_t id = 10; id < 20; id++)
		CHECK(put_n(l1, id, 100, 2000, 1500));
	s = stats(l1);
	for (uint64_t id = 20; id < 25; id++)
		CHECK(put_n(l1, id, 100, 9000, 3000));
	CacheL1Stats s2 = stats(l1);
	CHECK_INT(s2.expirations - s.expirations, 5);
	CHECK_INT(s2.evictions - s.evictions, 0);
	CHECK_INT(s2.entries, 10);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

TEST(too_big)
{
	CacheL1 *l1 = cache_l1_new(1 << 20, 1000);
	CHECK(put_n(l1, 1, 1000, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!put_n(l1, 2, 1001, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!has(l1, 2, 0));
	CHECK_INT(stats(l1).rejected_too_big, 1);
	/* a refused replacement drops the older value */
	CHECK(!put_n(l1, 1, 5000, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!has(l1, 1, 0));
	CHECK_INT(stats(l1).rejected_too_big, 2);
	CHECK_INT(stats(l1).entries, 0);
	cache_l1_free(l1);

	/* without max_entry_bytes the byte bound limits: blob + overhead <= max_bytes */
	l1 = cache_l1_new(4096, 0);
	CHECK(put_n(l1, 1, 100, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!put_n(l1, 2, 4096 - OVH + 1, CACHE_L1_NO_EXPIRY, 0));
	CHECK(has(l1, 1, 0)); /* a refused put evicts nothing */
	CHECK(put_n(l1, 3, 4096 - OVH, CACHE_L1_NO_EXPIRY, 0));
	CacheL1Stats s = stats(l1);
	CHECK_INT(s.entries, 1);
	CHECK_INT(s.bytes, 4096);
	CHECK(has(l1, 3, 0));
	CacheKey k4 = key_of(4, 0); /* no overflow in blob + overhead */
	CHECK(!cache_l1_put(l1, &k4, "x", SIZE_MAX - 10, CACHE_L1_NO_EXPIRY, 0));
	CHECK_INT(stats(l1).rejected_too_big, 2);
	cache_l1_free(l1);

	l1 = cache_l1_new(OVH - 1, 0); /* not even an empty blob fits */
	CHECK(!put_n(l1, 1, 0, CACHE_L1_NO_EXPIRY, 0));
	cache_l1_free(l1);
}

/*
 * A hot set read round-robin while a one-pass scan of unique keys goes through, every key used
 * the way a proxy would (get; on a miss, put). Between two reads of a hot key come more unique
 * keys than the cache holds, so LRU would never hit a hot key; S3-FIFO keeps them in main.
 */
TEST(scan_resistance)
{
	enum { CAP = 1000, HOT = 100, SCAN_PER_HOT = 20, ROUNDS = 50, BLOB = 1000 };
	CacheL1 *l1 = cache_l1_new((size_t)CAP * (BLOB + OVH), 0);
	uint64_t scan_id = 1000000, hot_hits = 0, hot_reads = 0;
	/* LRU reuse distance of a hot key: the distinct keys read between two reads of it */
	CHECK(HOT * SCAN_PER_HOT + HOT - 1 > CAP);

	for (int round = 0; round < 3; round++) /* warm up: the hot set alone */
		for (uint64_t h = 0; h < HOT; h++)
			if (!has(l1, h, 0))
				put_n(l1, h, BLOB, CACHE_L1_NO_EXPIRY, 0);
	CHECK_INT(stats(l1).hits, 2 * HOT);

	for (int round = 0; round < ROUNDS; round++)
		for (uint64_t h = 0; h < HOT; h++) {
			for (int i = 0; i < SCAN_PER_HOT; i++, scan_id++)
				if (!has(l1, scan_id, 0))
					CHECK(put_n(l1, scan_id, BLOB, CACHE_L1_NO_EXPIRY, 0));
			hot_reads++;
			if (has(l1, h, 0))
				hot_hits++;
			else
				put_n(l1, h, BLOB, CACHE_L1_NO_EXPIRY, 0);
		}
	CacheL1Stats s = stats(l1);
	printf("  scan: hot hit rate %.1f%% over %llu reads, %llu unique scan keys, %llu evictions\n",
	       100.0 * (double)hot_hits / (double)hot_reads, (unsigned long long)hot_reads,
	       (unsigned long long)(scan_id - 1000000), (unsigned long long)s.evictions);
	CHECK(hot_hits * 100 > hot_reads * 90);
	CHECK(s.evictions > (uint64_t)ROUNDS * HOT * SCAN_PER_HOT - CAP - 1);
	CHECK_INT(s.main_entries, HOT); /* main holds the hot set and nothing of the scan */
	CHECK(s.bytes <= s.max_bytes);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

TEST(ghost_sends_reinserted_key_to_main)
{
	enum { CAP = 20, BLOB = 1000 };
	CacheL1 *l1 = cache_l1_new((size_t)CAP * (BLOB + OVH), 0);
	const uint64_t k = 7;
	CHECK(put_n(l1, k, BLOB, CACHE_L1_NO_EXPIRY, 0));
	uint64_t id = 100;
	while (stats(l1).evictions == 0) /* the first eviction takes the oldest unread entry: k */
		CHECK(put_n(l1, id++, BLOB, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!has(l1, k, 0));
	CacheL1Stats s = stats(l1);
	CHECK_INT(s.ghost_entries, 1);
	CHECK_INT(s.main_entries, 0);

	CHECK(put_n(l1, k, BLOB, CACHE_L1_NO_EXPIRY, 0));
	s = stats(l1);
	CHECK_INT(s.ghost_hits, 1);
	CHECK_INT(s.main_entries, 1);
	/* k left the ghost; the entry evicted to make room for it entered it */
	CHECK_INT(s.ghost_entries, 1);
	CHECK_INT(s.evictions, 2);

	/* a new key never read does not outlive a scan; k, in main, does */
	const uint64_t fresh = 8;
	CHECK(put_n(l1, fresh, BLOB, CACHE_L1_NO_EXPIRY, 0));
	for (int i = 0; i < 10 * CAP; i++)
		CHECK(put_n(l1, id++, BLOB, CACHE_L1_NO_EXPIRY, 0));
	CHECK(!has(l1, fresh, 0));
	CHECK(has(l1, k, 0));
	s = stats(l1);
	CHECK(s.ghost_entries <= CAP);
	CHECK(s.ghost_entries >= CAP / 2);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

TEST(set_max_bytes_shrinks)
{
	enum { N = 100, BLOB = 1000 };
	CacheL1 *l1 = cache_l1_new((size_t)N * (BLOB + OVH), 0);
	for (uint64_t id = 0; id < N; id++)
		CHECK(put_n(l1, id, BLOB, CACHE_L1_NO_EXPIRY, 0));
	for (uint64_t id = 0; id < N; id += 2) /* read the even ones */
		CHECK(has(l1, id, 0));
	CHECK_INT(stats(l1).entries, N);

	cache_l1_set_max_bytes(l1, 30 * (BLOB + OVH));
	CacheL1Stats s = stats(l1);
	CHECK_INT(s.max_bytes, 30 * (BLOB + OVH));
	CHECK(s.bytes <= s.max_bytes);
	CHECK_INT(s.entries, 30);
	CHECK_INT(s.evictions, 70);
	CHECK(cache_l1_check(l1));
	/* The unread ones went first, except what small keeps below its target (10%: 3 entries).
	 * FIFO or LRU would have kept ids 70..99: 15 odd. */
	int even = 0, odd = 0;
	for (uint64_t id = 0; id < N; id++)
		if (has(l1, id, 0))
			*(id % 2 ? &odd : &even) += 1;
	CHECK_INT(even + odd, 30);
	CHECK(odd <= 2);

	cache_l1_set_max_bytes(l1, 0);
	s = stats(l1);
	CHECK_INT(s.entries, 0);
	CHECK_INT(s.bytes, 0);
	CHECK(!put_n(l1, 1, 0, CACHE_L1_NO_EXPIRY, 0));

	cache_l1_set_max_bytes(l1, 5 * (BLOB + OVH)); /* grows again */
	for (uint64_t id = 0; id < 5; id++)
		CHECK(put_n(l1, id, BLOB, CACHE_L1_NO_EXPIRY, 0));
	CHECK_INT(stats(l1).entries, 5);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

TEST(clear_keeps_counters)
{
	CacheL1 *l1 = cache_l1_new(10 * (100 + OVH), 0);
	for (uint64_t id = 0; id < 30; id++)
		put_n(l1, id, 100, CACHE_L1_NO_EXPIRY, 0);
	CHECK(has(l1, 29, 0));
	CacheL1Stats s = stats(l1);
	CHECK(s.ghost_entries > 0);
	cache_l1_clear(l1);
	CacheL1Stats s2 = stats(l1);
	CHECK_INT(s2.entries, 0);
	CHECK_INT(s2.bytes, 0);
	CHECK_INT(s2.small_bytes + s2.main_bytes, 0);
	CHECK_INT(s2.ghost_entries, 0);
	CHECK_INT(s2.inserts, 30);
	CHECK_INT(s2.hits, s.hits);
	CHECK(!has(l1, 29, 0));
	CHECK(put_n(l1, 19, 100, CACHE_L1_NO_EXPIRY, 0)); /* the ghost held it; cleared: small */
	CHECK_INT(stats(l1).small_entries, 1);
	CHECK(cache_l1_check(l1));
	cache_l1_free(l1);
}

int main(void)
{
	RUN(get_put_replace_remove);
	RUN(random_ops_bound_and_model);
	RUN(ttl_expiry);
	RUN(too_big);
	RUN(scan_resistance);
	RUN(ghost_sends_reinserted_key_to_main);
	RUN(set_max_bytes_shrinks);
	RUN(clear_keeps_counters);
	return unit_summary();
}
