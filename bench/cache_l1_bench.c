/*
 * cache_l1_bench — what the L1 result cache store (cache_l1) costs per operation.
 *
 *   ninja -C build && build/cache_l1_bench [N] [BLOB]    (N entries, default 100000; BLOB bytes, 256)
 *
 * With N random 32-byte keys and BLOB-byte blobs it times: N puts into a cache large enough for
 * all of them, once into fresh memory (page faults: slow in a VM) and once more after a clear,
 * into memory the allocator reuses; 10 N get-hits in random key order (the realistic case: the entry is not in the CPU
 * cache); 10 N get-hits of one key; 10 N get-misses; and N puts of new keys into a cache full at
 * N/2 entries (each put evicts). Prints nanoseconds per operation. Single-threaded,
 * CLOCK_MONOTONIC; run it on a quiet machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_l1.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void random_key(CacheKey *k)
{
	for (int i = 0; i < 4; i++) {
		uint64_t w = rnd();
		memcpy(k->b + 8 * i, &w, 8);
	}
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	long blob_len = argc > 2 ? atol(argv[2]) : 256;
	if (n <= 1 || blob_len < 0) {
		fprintf(stderr, "usage: cache_l1_bench [N] [BLOB]\n");
		return 2;
	}
	size_t blen = (size_t)blob_len, charge = blen + CACHE_L1_ENTRY_OVERHEAD;
	CacheKey *keys = malloc((size_t)n * 2 * sizeof(*keys));
	uint32_t *order = malloc((size_t)n * sizeof(*order));
	uint8_t *blob = malloc(blen + 1);
	if (!keys || !order || !blob)
		return 1;
	memset(blob, 'x', blen);
	for (long i = 0; i < 2 * n; i++)
		random_key(&keys[i]);
	for (long i = 0; i < n; i++)
		order[i] = (uint32_t)i;
	for (long i = n - 1; i > 0; i--) {
		long j = (long)(rnd() % (uint64_t)(i + 1));
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	volatile size_t sink = 0;
	size_t len;

	printf("cache_l1_bench: %ld entries, %zu-byte blobs (charge %zu bytes each)\n", n, blen, charge);
	CacheL1 *l1 = cache_l1_new((size_t)n * charge, 0);
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		cache_l1_put(l1, &keys[i], blob, blen, CACHE_L1_NO_EXPIRY, 0);
	double put_cold = (now_ns() - t0) / (double)n;
	/* again, into memory the allocator hands back: what a long-running proxy sees */
	cache_l1_clear(l1);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		cache_l1_put(l1, &keys[i], blob, blen, CACHE_L1_NO_EXPIRY, 0);
	double put = (now_ns() - t0) / (double)n;

	long gets = 10 * n;
	t0 = now_ns();
	for (long i = 0; i < gets; i++)
		sink += cache_l1_get(l1, &keys[order[i % n]], 0, &len) != NULL;
	double hit_random = (now_ns() - t0) / (double)gets;

	t0 = now_ns();
	for (long i = 0; i < gets; i++)
		sink += cache_l1_get(l1, &keys[7], 0, &len) != NULL;
	double hit_same = (now_ns() - t0) / (double)gets;

	t0 = now_ns();
	for (long i = 0; i < gets; i++)
		sink += cache_l1_get(l1, &keys[n + order[i % n]], 0, &len) != NULL;
	double miss = (now_ns() - t0) / (double)gets;

	CacheL1Stats s;
	cache_l1_stats(l1, &s);
	if (s.entries != (size_t)n || s.hits != 2 * (uint64_t)gets || s.evictions != 0)
		fprintf(stderr, "unexpected: %zu entries, %llu hits, %llu evictions\n", s.entries,
			(unsigned long long)s.hits, (unsigned long long)s.evictions);

	cache_l1_set_max_bytes(l1, (size_t)(n / 2) * charge);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		cache_l1_put(l1, &keys[n + i], blob, blen, CACHE_L1_NO_EXPIRY, 0);
	double put_evict = (now_ns() - t0) / (double)n;
	cache_l1_stats(l1, &s);

	printf("%-34s %8.1f ns\n", "put, first touch of the memory", put_cold);
	printf("%-34s %8.1f ns\n", "put (no eviction)", put);
	printf("%-34s %8.1f ns\n", "get hit, random key order", hit_random);
	printf("%-34s %8.1f ns\n", "get hit, same key", hit_same);
	printf("%-34s %8.1f ns\n", "get miss", miss);
	printf("%-34s %8.1f ns   (%llu evictions)\n", "put into a full cache (evicts)", put_evict,
	       (unsigned long long)s.evictions);
	cache_l1_free(l1);
	free(keys);
	free(order);
	free(blob);
	return sink == 0;
}
