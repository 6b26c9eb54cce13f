/*
 * hashmap — open addressing with linear probing and tombstones (see hashmap.h).
 */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

void hashmap_init(HashMap *m) { memset(m, 0, sizeof(*m)); }

void hashmap_free(HashMap *m)
{
	free(m->slots);
	hashmap_init(m);
}

static void insert_raw(HashMap *m, uint64_t hash, void *value)
{
	size_t i = hash & (m->cap - 1);
	while (m->slots[i].value)
		i = (i + 1) & (m->cap - 1);
	if (m->slots[i].dead)
		m->slots[i].dead = false;
	else
		m->used++;
	m->slots[i].hash = hash;
	m->slots[i].value = value;
	m->live++;
}

static void grow(HashMap *m)
{
	size_t cap = m->cap ? m->cap : 16;
	while (cap < (m->live + 1) * 2)
		cap *= 2;
	struct HashSlot *old = m->slots;
	size_t old_cap = m->cap;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots)
		abort();
	m->cap = cap;
	m->used = m->live = 0;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].value)
			insert_raw(m, old[i].hash, old[i].value);
	free(old);
}

void hashmap_insert(HashMap *m, uint64_t hash, void *value)
{
	if ((m->used + 1) * 4 > m->cap * 3)
		grow(m); /* also clears tombstones */
	insert_raw(m, hash, value);
}

long hashmap_find(const HashMap *m, uint64_t hash, HashEq eq, const void *key)
{
	if (!m->cap)
		return -1;
	for (size_t i = hash & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		const struct HashSlot *s = &m->slots[i];
		if (!s->value && !s->dead)
			return -1;
		if (s->value && s->hash == hash && eq(s->value, key))
			return (long)i;
	}
}

void *hashmap_get(const HashMap *m, uint64_t hash, HashEq eq, const void *key)
{
	long i = hashmap_find(m, hash, eq, key);
	return i >= 0 ? m->slots[i].value : NULL;
}

void hashmap_delete_at(HashMap *m, long slot)
{
	m->slots[slot].value = NULL;
	m->slots[slot].dead = true;
	m->live--;
}

uint64_t hashmap_hash_bytes(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

uint64_t hashmap_hash_u32(uint32_t v)
{
	uint64_t h = v * 0x9E3779B97F4A7C15ull;
	return h ^ (h >> 31);
}
