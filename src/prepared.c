/*
 * prepared — statement registry, client names and server LRU sets (see prepared.h).
 */
#include "prepared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "proto.h"
#include "xalloc.h"


/* ---- registry ---- */

struct KeyRef {
	const uint8_t *key;
	size_t len;
};

static bool stmt_eq_key(const void *value, const void *key)
{
	const PreparedStmt *s = value;
	const struct KeyRef *k = key;
	return s->key_len == k->len && memcmp(s->key, k->key, k->len) == 0;
}

static bool stmt_eq_id(const void *value, const void *key)
{
	return ((const PreparedStmt *)value)->id == *(const uint32_t *)key;
}

void prepared_registry_init(StmtRegistry *r)
{
	memset(r, 0, sizeof(*r));
	hashmap_init(&r->by_key);
	hashmap_init(&r->by_id);
}

PreparedStmt *prepared_find_id(const StmtRegistry *r, uint32_t id)
{
	long i = hashmap_find(&r->by_id, hashmap_hash_u32(id), stmt_eq_id, &id);
	return i >= 0 ? r->by_id.slots[i].value : NULL;
}

void prepared_mark_validated(StmtRegistry *r, uint32_t id)
{
	PreparedStmt *s = prepared_find_id(r, id);
	if (s)
		s->validated = true;
}

static void stmt_free(PreparedStmt *s)
{
	free(s->key);
	free(s->create_msg);
	free(s);
}

void prepared_registry_free(StmtRegistry *r)
{
	for (size_t i = 0; i < r->by_key.cap; i++)
		if (r->by_key.slots[i].value)
			stmt_free(r->by_key.slots[i].value);
	hashmap_free(&r->by_key);
	hashmap_free(&r->by_id);
}

size_t prepared_registry_count(const StmtRegistry *r) { return r->by_key.live; }

void prepared_server_name(uint32_t id, char out[24]) { snprintf(out, 24, "pgrelay_%u", id); }

uint32_t prepared_new_id(StmtRegistry *r) { return ++r->next_id; }

PreparedStmt *prepared_intern(StmtRegistry *r, const uint8_t *key, size_t key_len)
{
	struct KeyRef k = {key, key_len};
	uint64_t h = hashmap_hash_bytes(key, key_len);
	long i = hashmap_find(&r->by_key, h, stmt_eq_key, &k);
	if (i >= 0) {
		PreparedStmt *s = r->by_key.slots[i].value;
		if (s->refcount++ == 0) {
			r->unused--;
			r->unused_bytes -= prepared_stmt_bytes(s);
		}
		return s;
	}
	PreparedStmt *s = xcalloc(1, sizeof(*s));
	s->id = prepared_new_id(r);
	prepared_server_name(s->id, s->server_name);
	s->key = malloc(key_len);
	if (!s->key)
		abort();
	memcpy(s->key, key, key_len);
	s->key_len = key_len;
	s->hash = h;
	s->refcount = 1;
	Buf b;
	buf_init(&b);
	size_t off = proto_begin(&b, 'P');
	proto_put_str(&b, s->server_name);
	proto_put_bytes(&b, key, key_len);
	proto_end(&b, off);
	s->create_msg = b.data; /* take the buffer */
	s->create_len = b.len;
	hashmap_insert(&r->by_key, h, s);
	hashmap_insert(&r->by_id, hashmap_hash_u32(s->id), s);
	return s;
}

PreparedStmt *prepared_new_sql(StmtRegistry *r, const char *rest, size_t rest_len)
{
	PreparedStmt *s = xcalloc(1, sizeof(*s));
	s->id = prepared_new_id(r);
	prepared_server_name(s->id, s->server_name);
	s->sql_level = true;
	s->refcount = 1;
	Buf b;
	buf_init(&b);
	size_t off = proto_begin(&b, 'Q');
	proto_put_bytes(&b, "PREPARE ", 8);
	proto_put_bytes(&b, s->server_name, strlen(s->server_name));
	proto_put_bytes(&b, rest, rest_len);
	proto_put_u8(&b, 0);
	proto_end(&b, off);
	s->create_msg = b.data;
	s->create_len = b.len;
	hashmap_insert(&r->by_id, hashmap_hash_u32(s->id), s);
	return s;
}

static void registry_drop(StmtRegistry *r, PreparedStmt *s)
{
	struct KeyRef k = {s->key, s->key_len};
	long i = s->sql_level ? -1 : hashmap_find(&r->by_key, s->hash, stmt_eq_key, &k);
	if (i >= 0)
		hashmap_delete_at(&r->by_key, i);
	i = hashmap_find(&r->by_id, hashmap_hash_u32(s->id), stmt_eq_id, &s->id);
	if (i >= 0)
		hashmap_delete_at(&r->by_id, i);
	stmt_free(s);
}

size_t prepared_stmt_bytes(const PreparedStmt *s) { return sizeof(*s) + s->key_len + s->create_len; }

/*
 * Statements no client names any more stay registered (keeping their id, so servers that prepared
 * them need not again, and their validated mark), until there are more than REGISTRY_KEEP_UNUSED
 * or they hold more than REGISTRY_KEEP_UNUSED_BYTES: then all unused ones go.
 */
#define REGISTRY_KEEP_UNUSED 10000
#define REGISTRY_KEEP_UNUSED_BYTES ((size_t)16 << 20)

void prepared_release(StmtRegistry *r, PreparedStmt *s)
{
	if (--s->refcount > 0)
		return;
	if (s->sql_level) {
		registry_drop(r, s);
		return;
	}
	r->unused_bytes += prepared_stmt_bytes(s);
	if (++r->unused <= REGISTRY_KEEP_UNUSED && r->unused_bytes <= REGISTRY_KEEP_UNUSED_BYTES)
		return;
	for (size_t j = 0; j < r->by_key.cap; j++) {
		PreparedStmt *u = r->by_key.slots[j].value;
		if (u && u->refcount == 0)
			registry_drop(r, u);
	}
	r->unused = 0;
	r->unused_bytes = 0;
}

/* ---- client names ---- */

struct ClientStmt {
	char *name;
	PreparedStmt *stmt;
};

static bool cs_eq_name(const void *value, const void *key)
{
	return strcmp(((const struct ClientStmt *)value)->name, key) == 0;
}

void prepared_client_init(ClientStmts *m)
{
	hashmap_init(&m->by_name);
	m->bytes = 0;
}

void prepared_client_clear(ClientStmts *m, StmtRegistry *r)
{
	for (size_t i = 0; i < m->by_name.cap; i++) {
		struct ClientStmt *cs = m->by_name.slots[i].value;
		if (!cs)
			continue;
		prepared_release(r, cs->stmt);
		free(cs->name);
		free(cs);
	}
	hashmap_free(&m->by_name);
	m->bytes = 0;
}

void prepared_client_free(ClientStmts *m, StmtRegistry *r) { prepared_client_clear(m, r); }

void prepared_client_set(ClientStmts *m, StmtRegistry *r, const char *name, PreparedStmt *stmt)
{
	uint64_t h = hashmap_hash_bytes(name, strlen(name));
	long i = hashmap_find(&m->by_name, h, cs_eq_name, name);
	m->bytes += prepared_stmt_bytes(stmt);
	if (i >= 0) {
		struct ClientStmt *cs = m->by_name.slots[i].value;
		m->bytes -= prepared_stmt_bytes(cs->stmt);
		prepared_release(r, cs->stmt);
		cs->stmt = stmt;
		return;
	}
	struct ClientStmt *cs = xcalloc(1, sizeof(*cs));
	cs->name = strdup(name);
	if (!cs->name)
		abort();
	cs->stmt = stmt;
	m->bytes += strlen(name) + 1 + sizeof(*cs);
	hashmap_insert(&m->by_name, h, cs);
}

PreparedStmt *prepared_client_get(const ClientStmts *m, const char *name)
{
	long i = hashmap_find(&m->by_name, hashmap_hash_bytes(name, strlen(name)), cs_eq_name, name);
	return i >= 0 ? ((struct ClientStmt *)m->by_name.slots[i].value)->stmt : NULL;
}

static void client_remove_at(ClientStmts *m, StmtRegistry *r, long i)
{
	struct ClientStmt *cs = m->by_name.slots[i].value;
	hashmap_delete_at(&m->by_name, i);
	m->bytes -= prepared_stmt_bytes(cs->stmt) + strlen(cs->name) + 1 + sizeof(*cs);
	prepared_release(r, cs->stmt);
	free(cs->name);
	free(cs);
}

bool prepared_client_remove(ClientStmts *m, StmtRegistry *r, const char *name)
{
	long i = hashmap_find(&m->by_name, hashmap_hash_bytes(name, strlen(name)), cs_eq_name, name);
	if (i < 0)
		return false;
	client_remove_at(m, r, i);
	return true;
}

void prepared_client_forget_id(ClientStmts *m, StmtRegistry *r, uint32_t id)
{
	for (size_t i = 0; i < m->by_name.cap; i++) {
		struct ClientStmt *cs = m->by_name.slots[i].value;
		if (cs && cs->stmt->id == id)
			client_remove_at(m, r, (long)i);
	}
}

size_t prepared_client_count(const ClientStmts *m) { return m->by_name.live; }

/* ---- server sets ---- */

struct ServerStmt {
	uint32_t id;
	ListNode lru;
};

static bool ss_eq_id(const void *value, const void *key)
{
	return ((const struct ServerStmt *)value)->id == *(const uint32_t *)key;
}

void prepared_server_init(ServerStmts *s)
{
	hashmap_init(&s->by_id);
	list_init(&s->lru);
}

void prepared_server_clear(ServerStmts *s)
{
	ListNode *n;
	while ((n = list_pop_front(&s->lru)) != NULL)
		free(list_entry(n, struct ServerStmt, lru));
	hashmap_free(&s->by_id);
}

void prepared_server_free(ServerStmts *s) { prepared_server_clear(s); }

bool prepared_server_has(ServerStmts *s, uint32_t id)
{
	long i = hashmap_find(&s->by_id, hashmap_hash_u32(id), ss_eq_id, &id);
	if (i < 0)
		return false;
	struct ServerStmt *st = s->by_id.slots[i].value;
	list_remove(&s->lru, &st->lru);
	list_push_front(&s->lru, &st->lru);
	return true;
}

bool prepared_server_add(ServerStmts *s, uint32_t id, size_t limit, uint32_t *evicted)
{
	if (prepared_server_has(s, id))
		return false;
	struct ServerStmt *st = xcalloc(1, sizeof(*st));
	st->id = id;
	hashmap_insert(&s->by_id, hashmap_hash_u32(id), st);
	list_push_front(&s->lru, &st->lru);
	if (limit == 0 || s->lru.count <= limit)
		return false;
	struct ServerStmt *old = list_entry(list_last(&s->lru), struct ServerStmt, lru);
	*evicted = old->id;
	prepared_server_remove(s, old->id);
	return true;
}

void prepared_server_remove(ServerStmts *s, uint32_t id)
{
	long i = hashmap_find(&s->by_id, hashmap_hash_u32(id), ss_eq_id, &id);
	if (i < 0)
		return;
	struct ServerStmt *st = s->by_id.slots[i].value;
	hashmap_delete_at(&s->by_id, i);
	list_remove(&s->lru, &st->lru);
	free(st);
}

size_t prepared_server_count(const ServerStmts *s) { return s->lru.count; }
