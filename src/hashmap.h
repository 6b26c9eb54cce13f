/*
 * hashmap — a small open-addressing hash table of (hash, value) pairs; the caller supplies the
 * hash and the equality test, so one table type serves keys of any shape. Pure.
 */
#ifndef PGRELAY_HASHMAP_H
#define PGRELAY_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct HashMap {
	struct HashSlot {
		uint64_t hash;
		void *value; /* NULL: empty */
		bool dead;   /* deleted: probing continues past it */
	} *slots;
	size_t cap, used, live;
} HashMap;

typedef bool (*HashEq)(const void *value, const void *key);

void hashmap_init(HashMap *m);
void hashmap_free(HashMap *m);
/* Inserts value (the caller has checked the key is absent). */
void hashmap_insert(HashMap *m, uint64_t hash, void *value);
/* Slot index of the value equal to key, or -1. */
long hashmap_find(const HashMap *m, uint64_t hash, HashEq eq, const void *key);
void *hashmap_get(const HashMap *m, uint64_t hash, HashEq eq, const void *key);
void hashmap_delete_at(HashMap *m, long slot);
static inline size_t hashmap_count(const HashMap *m) { return m->live; }

uint64_t hashmap_hash_bytes(const void *data, size_t len);
uint64_t hashmap_hash_u32(uint32_t v);

#endif
