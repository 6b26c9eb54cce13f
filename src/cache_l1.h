/*
 * cache_l1 — the in-memory L1 result cache store: opaque byte blobs keyed by a 32-byte digest,
 * bounded in bytes, with a per-entry absolute expiry time and S3-FIFO eviction. Pure: no sockets,
 * no clock of its own (the caller passes now_ms), no globals; not thread-safe.
 *
 * Size accounting: an entry is charged its blob length plus CACHE_L1_ENTRY_OVERHEAD (192), a fixed
 * figure for what the store keeps per entry besides the blob: the entry header (queue links, key,
 * expiry, length, frequency: 72 bytes), the allocator's chunk header and rounding (8..23, 16 on
 * average), its share of the key index (16-byte slots at load 3/8..3/4: up to ~43) and of the
 * ghost FIFO, which holds about one key hash per main entry (a ring slot, up to 16 with
 * power-of-two slack, and a ghost index slot, up to ~43). stats.bytes is the sum of the charges
 * and never exceeds max_bytes when a call returns. So in the steady state the store's memory stays
 * close to max_bytes; the index and the ghost ring keep their peak size until cache_l1_free.
 *
 * Eviction (S3-FIFO, Yang et al., SOSP 2023): a new key enters the small FIFO (target 10% of
 * max_bytes); a key found in the ghost FIFO (recently evicted from small without being read)
 * enters the main FIFO instead. A hit increments the entry's 2-bit frequency (saturating at 3). When
 * room is needed: if small holds at least its target (or main is empty), small's oldest entry
 * moves to main if it was read while in small (frequency reset to 0), else it is freed and its
 * key goes to the ghost; otherwise main's oldest entry is reinserted at main's head with its
 * frequency minus one if non-zero, else freed. A one-pass scan of unique keys therefore flows
 * through small and the ghost, and never displaces entries that earned their place in main.
 * The ghost holds 64-bit key hashes, at most about as many as main holds (or would hold at the
 * current mean entry size).
 *
 * Expiry: an entry is expired when now_ms >= expires_ms. An expired entry is never returned; a
 * get that finds one frees it (counted in expirations, and its key goes to the ghost: the key was
 * wanted again), and eviction frees expired entries it meets at a queue's tail without reinserting
 * them. CACHE_L1_NO_EXPIRY never expires.
 */
#ifndef PGRELAY_CACHE_L1_H
#define PGRELAY_CACHE_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_L1_ENTRY_OVERHEAD ((size_t)192)
#define CACHE_L1_NO_EXPIRY UINT64_MAX

typedef struct CacheKey {
	uint8_t b[32];
} CacheKey;

typedef struct CacheL1Stats {
	uint64_t hits, misses;     /* cache_l1_get */
	uint64_t inserts;          /* cache_l1_put that stored a blob (replacements included) */
	uint64_t evictions;        /* entries freed to make room (expired ones count as expirations) */
	uint64_t expirations;      /* expired entries freed (by get, put or eviction) */
	uint64_t removals;         /* entries freed by cache_l1_remove, or by a refused put of the key */
	uint64_t rejected_too_big; /* cache_l1_put refused: blob over max_entry_bytes or max_bytes */
	uint64_t promotions;       /* small -> main, the entry having been read while in small */
	uint64_t ghost_hits;       /* puts of a key remembered by the ghost: stored in main */
	size_t entries, bytes, max_bytes;
	size_t small_entries, small_bytes, main_entries, main_bytes, ghost_entries;
} CacheL1Stats;

typedef struct CacheL1 CacheL1;

/* max_entry_bytes: the largest blob accepted (0: only max_bytes limits). */
CacheL1 *cache_l1_new(size_t max_bytes, size_t max_entry_bytes);
void cache_l1_free(CacheL1 *l1);

/*
 * The blob stored under key and its length in *len (len is required; 0 on a miss), or NULL (a
 * miss; an expired entry is freed). The pointer stays valid until the next call that modifies l1
 * (put, remove, clear, set_max_bytes, free, or a get that misses). Counts a hit or a miss; a hit
 * bumps the entry's frequency. O(1).
 */
const uint8_t *cache_l1_get(CacheL1 *l1, const CacheKey *key, uint64_t now_ms, size_t *len);

/*
 * Copies the blob in under key, replacing an entry with the same key (a replacement keeps its
 * queue and frequency), evicting as needed. False, storing nothing, when the blob is over
 * max_entry_bytes or its charge over max_bytes (rejected_too_big), or when expires_ms <= now_ms;
 * in both cases an existing entry for key is freed, as the caller's value superseded it.
 */
bool cache_l1_put(CacheL1 *l1, const CacheKey *key, const void *blob, size_t len, uint64_t expires_ms,
		  uint64_t now_ms);

/* Frees the entry for key; false if there was none. */
bool cache_l1_remove(CacheL1 *l1, const CacheKey *key);

/* Frees every entry and forgets the ghost; counters are kept. */
void cache_l1_clear(CacheL1 *l1);

/* Sets the byte bound, evicting (S3-FIFO order) until the entries fit. */
void cache_l1_set_max_bytes(CacheL1 *l1, size_t max_bytes);

void cache_l1_stats(const CacheL1 *l1, CacheL1Stats *out);

/* For tests: walks every structure and checks the counts, sums and index agree. O(n). */
bool cache_l1_check(const CacheL1 *l1);

#endif
