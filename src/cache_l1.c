/*
 * cache_l1 — the L1 result cache store (see cache_l1.h).
 *
 * Owns every entry (one allocation: header then blob), the key index (open addressing, linear
 * probing, backward-shift deletion: no tombstones, so a lookup stops at the first empty slot),
 * the two entry FIFOs (small and main: intrusive lists, head = newest) and the ghost FIFO (a ring
 * of 64-bit key hashes numbered by a running sequence, indexed by hash -> sequence). Nothing here
 * is shared; the caller serialises access.
 */
#include "cache_l1.h"

#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "xalloc.h"

enum { Q_SMALL, Q_MAIN };
#define FREQ_MAX 3
#define SMALL_PERCENT 10

typedef struct L1Entry {
	ListNode node; /* on small or main */
	CacheKey key;
	uint64_t expires_ms;
	size_t len;
	uint8_t freq;  /* 0..FREQ_MAX */
	uint8_t queue; /* Q_SMALL or Q_MAIN */
	/* the blob follows the header */
} L1Entry;

/* header + allocator (16 on average) + key index slot + ghost ring slot + ghost index slot */
_Static_assert(sizeof(L1Entry) + 16 + 43 + 16 + 43 <= CACHE_L1_ENTRY_OVERHEAD,
	       "CACHE_L1_ENTRY_OVERHEAD no longer covers the entry header");

/* One index slot: val 0 is empty. Key index: val is the L1Entry *. Ghost index: val is seq + 1. */
typedef struct Slot {
	uint64_t hash;
	uint64_t val;
} Slot;

typedef struct Index {
	Slot *slots;
	size_t mask; /* capacity - 1; capacity is a power of two */
	size_t count;
} Index;

struct CacheL1 {
	Index index;
	List queue[2];
	size_t qbytes[2];
	size_t bytes, max_bytes, max_entry_bytes, small_target;
	uint64_t now_ms; /* the latest now_ms seen: expiry during set_max_bytes */

	/* ghost: ring[seq & ring_mask] for seq in [gtail, ghead); a ring slot is live while the
	 * ghost index maps its hash to seq + 1 */
	Index ghost;
	uint64_t *ring;
	size_t ring_mask;
	uint64_t gtail, ghead;

	uint64_t hits, misses, inserts, evictions, expirations, removals, rejected_too_big;
	uint64_t promotions, ghost_hits;
};

static inline uint8_t *entry_data(L1Entry *e) { return (uint8_t *)(e + 1); }
static inline size_t entry_charge(const L1Entry *e) { return e->len + CACHE_L1_ENTRY_OVERHEAD; }

/* The key is a digest already; folding all 32 bytes in keeps arbitrary keys spread as well. */
static inline uint64_t key_hash(const CacheKey *k)
{
	uint64_t w[4];
	memcpy(w, k->b, sizeof w);
	uint64_t h = w[0] ^ ((w[1] << 16) | (w[1] >> 48)) ^ ((w[2] << 32) | (w[2] >> 32)) ^
		     ((w[3] << 48) | (w[3] >> 16));
	h *= 0x9E3779B97F4A7C15ull;
	return h ^ (h >> 32);
}

/* ---- index ---- */

static void index_init(Index *ix)
{
	ix->mask = 15;
	ix->slots = xcalloc(ix->mask + 1, sizeof(Slot));
	ix->count = 0;
}

static void index_clear(Index *ix)
{
	memset(ix->slots, 0, (ix->mask + 1) * sizeof(Slot));
	ix->count = 0;
}

static void index_put_raw(Slot *slots, size_t mask, uint64_t hash, uint64_t val)
{
	size_t i = hash & mask;
	while (slots[i].val)
		i = (i + 1) & mask;
	slots[i].hash = hash;
	slots[i].val = val;
}

/* The caller has checked that no slot holds this value. */
static void index_insert(Index *ix, uint64_t hash, uint64_t val)
{
	if ((ix->count + 1) * 4 > (ix->mask + 1) * 3) {
		size_t mask = ix->mask * 2 + 1;
		Slot *slots = xcalloc(mask + 1, sizeof(Slot));
		for (size_t i = 0; i <= ix->mask; i++)
			if (ix->slots[i].val)
				index_put_raw(slots, mask, ix->slots[i].hash, ix->slots[i].val);
		free(ix->slots);
		ix->slots = slots;
		ix->mask = mask;
	}
	index_put_raw(ix->slots, ix->mask, hash, val);
	ix->count++;
}

/* Empties slot i and shifts back the run after it, so no lookup passes an empty slot it needs. */
static void index_delete_at(Index *ix, size_t i)
{
	Slot *s = ix->slots;
	size_t mask = ix->mask;
	for (size_t j = (i + 1) & mask; s[j].val; j = (j + 1) & mask) {
		size_t home = s[j].hash & mask;
		/* slot j's entry may move to i if i lies on its probe path: home .. j */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			s[i] = s[j];
			i = j;
		}
	}
	s[i].hash = s[i].val = 0;
	ix->count--;
}

/* The entry for key (and its slot), or NULL. */
static inline L1Entry *entry_find(const CacheL1 *l1, const CacheKey *key, uint64_t hash, size_t *slot)
{
	const Slot *s = l1->index.slots;
	size_t mask = l1->index.mask;
	for (size_t i = hash & mask; s[i].val; i = (i + 1) & mask) {
		if (s[i].hash != hash)
			continue;
		L1Entry *e = (L1Entry *)(uintptr_t)s[i].val;
		if (memcmp(e->key.b, key->b, sizeof key->b) == 0) {
			*slot = i;
			return e;
		}
	}
	return NULL;
}

/* Slot of the ghost index entry for hash, or -1; with val != 0, only the one holding val. */
static long ghost_find(const CacheL1 *l1, uint64_t hash, uint64_t val)
{
	const Slot *s = l1->ghost.slots;
	size_t mask = l1->ghost.mask;
	for (size_t i = hash & mask; s[i].val; i = (i + 1) & mask)
		if (s[i].hash == hash && (!val || s[i].val == val))
			return (long)i;
	return -1;
}

/* ---- ghost ---- */

/* About as many keys as main holds, or would hold at the current mean charge. */
static size_t ghost_limit(const CacheL1 *l1)
{
	size_t avg = l1->index.count ? l1->bytes / l1->index.count : CACHE_L1_ENTRY_OVERHEAD;
	size_t limit = (l1->max_bytes - l1->small_target) / avg;
	if (limit < l1->queue[Q_MAIN].count)
		limit = l1->queue[Q_MAIN].count;
	return limit ? limit : 1;
}

static void ghost_pop(CacheL1 *l1)
{
	uint64_t seq = l1->gtail++;
	long i = ghost_find(l1, l1->ring[seq & l1->ring_mask], seq + 1);
	if (i >= 0)
		index_delete_at(&l1->ghost, (size_t)i);
}

static void ghost_trim(CacheL1 *l1, size_t limit)
{
	while (l1->ghead - l1->gtail > limit)
		ghost_pop(l1);
}

static void ghost_add(CacheL1 *l1, uint64_t hash)
{
	size_t limit = ghost_limit(l1);
	ghost_trim(l1, limit - 1);
	size_t span = (size_t)(l1->ghead - l1->gtail);
	if (span > l1->ring_mask) { /* full: grow, keeping every sequence's hash at seq & mask */
		size_t mask = l1->ring_mask * 2 + 1;
		uint64_t *ring = xmalloc((mask + 1) * sizeof(*ring));
		for (uint64_t seq = l1->gtail; seq != l1->ghead; seq++)
			ring[seq & mask] = l1->ring[seq & l1->ring_mask];
		free(l1->ring);
		l1->ring = ring;
		l1->ring_mask = mask;
	}
	uint64_t seq = l1->ghead++;
	l1->ring[seq & l1->ring_mask] = hash;
	long i = ghost_find(l1, hash, 0);
	if (i >= 0) /* a hash collision (or a key remembered twice): the newer sequence wins */
		l1->ghost.slots[i].val = seq + 1;
	else
		index_insert(&l1->ghost, hash, seq + 1);
}

/* True if the ghost remembered hash (and forgets it). */
static bool ghost_take(CacheL1 *l1, uint64_t hash)
{
	if (!l1->ghost.count)
		return false;
	long i = ghost_find(l1, hash, 0);
	if (i < 0)
		return false;
	index_delete_at(&l1->ghost, (size_t)i); /* its ring slot is dead now */
	return true;
}

/* ---- entries and eviction ---- */

static void entry_drop(CacheL1 *l1, L1Entry *e, size_t slot)
{
	index_delete_at(&l1->index, slot);
	list_remove(&l1->queue[e->queue], &e->node);
	l1->qbytes[e->queue] -= entry_charge(e);
	l1->bytes -= entry_charge(e);
	free(e);
}

/* Frees e (at a queue's tail) and, if to_ghost, remembers its key. */
static void entry_evict(CacheL1 *l1, L1Entry *e, bool to_ghost)
{
	size_t slot = 0;
	uint64_t hash = key_hash(&e->key);
	L1Entry *found = entry_find(l1, &e->key, hash, &slot);
	if (found != e)
		abort(); /* the index lost an entry: memory corruption */
	entry_drop(l1, e, slot);
	if (to_ghost)
		ghost_add(l1, hash);
}

static void entry_move(CacheL1 *l1, L1Entry *e, int to)
{
	list_remove(&l1->queue[e->queue], &e->node);
	l1->qbytes[e->queue] -= entry_charge(e);
	e->queue = (uint8_t)to;
	list_push_front(&l1->queue[to], &e->node);
	l1->qbytes[to] += entry_charge(e);
}

/* Frees one entry of small, moving read ones to main on the way; or empties small into main. */
static void evict_small(CacheL1 *l1, uint64_t now_ms)
{
	ListNode *n;
	while ((n = list_last(&l1->queue[Q_SMALL]))) {
		L1Entry *e = list_entry(n, L1Entry, node);
		if (now_ms >= e->expires_ms) {
			entry_evict(l1, e, false);
			l1->expirations++;
			return;
		}
		if (e->freq > 0) {
			e->freq = 0;
			entry_move(l1, e, Q_MAIN);
			l1->promotions++;
			continue;
		}
		entry_evict(l1, e, true);
		l1->evictions++;
		return;
	}
}

/* Frees one entry of main, giving each read one another pass (at most FREQ_MAX). */
static void evict_main(CacheL1 *l1, uint64_t now_ms)
{
	ListNode *n;
	while ((n = list_last(&l1->queue[Q_MAIN]))) {
		L1Entry *e = list_entry(n, L1Entry, node);
		if (now_ms >= e->expires_ms) {
			entry_evict(l1, e, false);
			l1->expirations++;
			return;
		}
		if (e->freq > 0) {
			e->freq--;
			entry_move(l1, e, Q_MAIN);
			continue;
		}
		entry_evict(l1, e, false);
		l1->evictions++;
		return;
	}
}

static void make_room(CacheL1 *l1, size_t need, uint64_t now_ms)
{
	while (l1->index.count && l1->bytes + need > l1->max_bytes) {
		if (!list_empty(&l1->queue[Q_SMALL]) &&
		    (l1->qbytes[Q_SMALL] >= l1->small_target || list_empty(&l1->queue[Q_MAIN])))
			evict_small(l1, now_ms);
		else
			evict_main(l1, now_ms);
	}
}

/* ---- API ---- */

static void set_bounds(CacheL1 *l1, size_t max_bytes)
{
	l1->max_bytes = max_bytes;
	l1->small_target = max_bytes / 100 * SMALL_PERCENT; /* no overflow; 1% coarse at most */
}

CacheL1 *cache_l1_new(size_t max_bytes, size_t max_entry_bytes)
{
	CacheL1 *l1 = xcalloc(1, sizeof(*l1));
	index_init(&l1->index);
	index_init(&l1->ghost);
	list_init(&l1->queue[Q_SMALL]);
	list_init(&l1->queue[Q_MAIN]);
	l1->ring_mask = 15;
	l1->ring = xmalloc((l1->ring_mask + 1) * sizeof(*l1->ring));
	set_bounds(l1, max_bytes);
	l1->max_entry_bytes = max_entry_bytes;
	return l1;
}

static void drop_all(CacheL1 *l1)
{
	for (int q = Q_SMALL; q <= Q_MAIN; q++) {
		ListNode *n, *tmp;
		list_for_each_safe(n, tmp, &l1->queue[q])
			free(list_entry(n, L1Entry, node));
		list_init(&l1->queue[q]);
		l1->qbytes[q] = 0;
	}
	l1->bytes = 0;
}

void cache_l1_free(CacheL1 *l1)
{
	if (!l1)
		return;
	drop_all(l1);
	free(l1->index.slots);
	free(l1->ghost.slots);
	free(l1->ring);
	free(l1);
}

const uint8_t *cache_l1_get(CacheL1 *l1, const CacheKey *key, uint64_t now_ms, size_t *len)
{
	uint64_t hash = key_hash(key);
	size_t slot;
	L1Entry *e = entry_find(l1, key, hash, &slot);
	if (now_ms > l1->now_ms)
		l1->now_ms = now_ms;
	if (e && now_ms >= e->expires_ms) {
		entry_drop(l1, e, slot);
		l1->expirations++;
		ghost_add(l1, hash); /* wanted again: a put of it goes to main */
		e = NULL;
	}
	if (!e) {
		l1->misses++;
		*len = 0;
		return NULL;
	}
	l1->hits++;
	if (e->freq < FREQ_MAX)
		e->freq++;
	*len = e->len;
	return entry_data(e);
}

bool cache_l1_put(CacheL1 *l1, const CacheKey *key, const void *blob, size_t len, uint64_t expires_ms,
		  uint64_t now_ms)
{
	uint64_t hash = key_hash(key);
	size_t slot;
	L1Entry *old = entry_find(l1, key, hash, &slot);
	if (now_ms > l1->now_ms)
		l1->now_ms = now_ms;
	bool too_big = (l1->max_entry_bytes && len > l1->max_entry_bytes) ||
		       l1->max_bytes < CACHE_L1_ENTRY_OVERHEAD || len > l1->max_bytes - CACHE_L1_ENTRY_OVERHEAD;
	if (too_big || expires_ms <= now_ms) {
		if (old) {
			entry_drop(l1, old, slot);
			l1->removals++;
		}
		if (too_big)
			l1->rejected_too_big++;
		return false;
	}

	int queue = Q_SMALL;
	uint8_t freq = 0;
	if (old) {
		queue = old->queue;
		freq = old->freq;
		entry_drop(l1, old, slot);
	} else if (ghost_take(l1, hash)) {
		queue = Q_MAIN;
		l1->ghost_hits++;
	}
	size_t charge = len + CACHE_L1_ENTRY_OVERHEAD;
	make_room(l1, charge, now_ms);

	L1Entry *e = xmalloc(sizeof(*e) + len);
	e->key = *key;
	e->expires_ms = expires_ms;
	e->len = len;
	e->freq = freq;
	e->queue = (uint8_t)queue;
	if (len)
		memcpy(entry_data(e), blob, len);
	list_push_front(&l1->queue[queue], &e->node);
	l1->qbytes[queue] += charge;
	l1->bytes += charge;
	index_insert(&l1->index, hash, (uint64_t)(uintptr_t)e);
	l1->inserts++;
	return true;
}

bool cache_l1_remove(CacheL1 *l1, const CacheKey *key)
{
	size_t slot;
	L1Entry *e = entry_find(l1, key, key_hash(key), &slot);
	if (!e)
		return false;
	entry_drop(l1, e, slot);
	l1->removals++;
	return true;
}

void cache_l1_clear(CacheL1 *l1)
{
	drop_all(l1);
	index_clear(&l1->index);
	index_clear(&l1->ghost);
	l1->gtail = l1->ghead;
}

void cache_l1_set_max_bytes(CacheL1 *l1, size_t max_bytes)
{
	set_bounds(l1, max_bytes);
	make_room(l1, 0, l1->now_ms);
	ghost_trim(l1, ghost_limit(l1));
}

void cache_l1_stats(const CacheL1 *l1, CacheL1Stats *out)
{
	*out = (CacheL1Stats){
		.hits = l1->hits,
		.misses = l1->misses,
		.inserts = l1->inserts,
		.evictions = l1->evictions,
		.expirations = l1->expirations,
		.removals = l1->removals,
		.rejected_too_big = l1->rejected_too_big,
		.promotions = l1->promotions,
		.ghost_hits = l1->ghost_hits,
		.entries = l1->index.count,
		.bytes = l1->bytes,
		.max_bytes = l1->max_bytes,
		.small_entries = l1->queue[Q_SMALL].count,
		.small_bytes = l1->qbytes[Q_SMALL],
		.main_entries = l1->queue[Q_MAIN].count,
		.main_bytes = l1->qbytes[Q_MAIN],
		.ghost_entries = l1->ghost.count,
	};
}

/* Every occupied slot is reachable from its home slot without crossing an empty one. */
static bool index_ok(const Index *ix)
{
	size_t n = 0;
	for (size_t i = 0; i <= ix->mask; i++) {
		if (!ix->slots[i].val)
			continue;
		n++;
		for (size_t j = ix->slots[i].hash & ix->mask; j != i; j = (j + 1) & ix->mask)
			if (!ix->slots[j].val)
				return false;
	}
	return n == ix->count && ix->count * 4 <= (ix->mask + 1) * 3;
}

bool cache_l1_check(const CacheL1 *l1)
{
	if (!index_ok(&l1->index) || !index_ok(&l1->ghost))
		return false;
	size_t total_n = 0, total_bytes = 0;
	for (int q = Q_SMALL; q <= Q_MAIN; q++) {
		size_t n = 0, bytes = 0;
		const ListNode *node;
		for (node = l1->queue[q].head.next; node != &l1->queue[q].head; node = node->next) {
			const L1Entry *e = list_entry(node, L1Entry, node);
			size_t slot;
			if (e->queue != q || e->freq > FREQ_MAX || node->next->prev != node ||
			    entry_find(l1, &e->key, key_hash(&e->key), &slot) != e)
				return false;
			n++;
			bytes += entry_charge(e);
		}
		if (n != l1->queue[q].count || bytes != l1->qbytes[q])
			return false;
		total_n += n;
		total_bytes += bytes;
	}
	if (total_n != l1->index.count || total_bytes != l1->bytes || l1->bytes > l1->max_bytes)
		return false;
	/* ghost: every indexed hash sits at its sequence in the live part of the ring */
	if (l1->ghead - l1->gtail > l1->ring_mask + 1 || l1->ghost.count > l1->ghead - l1->gtail)
		return false;
	for (size_t i = 0; i <= l1->ghost.mask; i++) {
		const Slot *s = &l1->ghost.slots[i];
		if (!s->val)
			continue;
		uint64_t seq = s->val - 1;
		if (seq < l1->gtail || seq >= l1->ghead || l1->ring[seq & l1->ring_mask] != s->hash)
			return false;
	}
	return true;
}
