/*
 * cancel — BackendKeyData map and the CancelRequests clients send (see cancel.h).
 */
#include "cancel.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "log.h"
#include "proto.h"
#include "server.h"
#include "cancel_conn.h"

#define TOMBSTONE ((Client *)1)

static size_t slot_of(uint32_t pid, size_t cap) { return (pid * 2654435761u) & (cap - 1); }

static void cancel_map_grow(CancelMap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	if (m->cap && m->tombstones > m->cap / 4 && m->used - m->tombstones < m->cap / 4)
		cap = m->cap; /* mostly tombstones: rehash in place */
	struct CancelSlot *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		abort();
	for (size_t i = 0; i < m->cap; i++) {
		struct CancelSlot *s = &m->slots[i];
		if (!s->client || s->client == TOMBSTONE)
			continue;
		size_t j = slot_of(s->pid, cap);
		while (slots[j].client)
			j = (j + 1) & (cap - 1);
		slots[j] = *s;
	}
	free(m->slots);
	m->slots = slots;
	m->cap = cap;
	m->used -= m->tombstones;
	m->tombstones = 0;
}

Client *cancel_map_find(const CancelMap *m, uint32_t pid)
{
	if (!m->cap)
		return NULL;
	for (size_t j = slot_of(pid, m->cap);; j = (j + 1) & (m->cap - 1)) {
		struct CancelSlot *s = &m->slots[j];
		if (!s->client)
			return NULL;
		if (s->client != TOMBSTONE && s->pid == pid)
			return s->client;
	}
}

void cancel_map_add(CancelMap *m, Client *c, uint32_t *pid, uint32_t *key)
{
	if ((m->used + 1) * 2 > m->cap)
		cancel_map_grow(m);
	do {
		RAND_bytes((unsigned char *)pid, sizeof(*pid));
	} while (*pid == 0 || cancel_map_find(m, *pid));
	RAND_bytes((unsigned char *)key, sizeof(*key));
	size_t j = slot_of(*pid, m->cap);
	while (m->slots[j].client && m->slots[j].client != TOMBSTONE)
		j = (j + 1) & (m->cap - 1);
	if (m->slots[j].client == TOMBSTONE)
		m->tombstones--;
	else
		m->used++;
	m->slots[j].pid = *pid;
	m->slots[j].client = c;
}

void cancel_map_remove(CancelMap *m, uint32_t pid, Client *c)
{
	if (!m->cap)
		return;
	for (size_t j = slot_of(pid, m->cap);; j = (j + 1) & (m->cap - 1)) {
		struct CancelSlot *s = &m->slots[j];
		if (!s->client)
			return;
		if (s->client == c && s->pid == pid) {
			s->client = TOMBSTONE;
			m->tombstones++;
			return;
		}
	}
}

void cancel_map_free(CancelMap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

void cancel_handle_request(Runtime *rt, uint32_t pid, uint32_t key, const char *from)
{
	Client *c = cancel_map_find(&rt->cancel_map, pid);
	if (!c || CRYPTO_memcmp(&c->cancel_key, &key, sizeof(key)) != 0) {
		log_info(NULL, "cancel request from %s matches no client", from);
		return;
	}
	Server *s = c->server;
	if (!s || s->state != SV_ACTIVE) {
		log_info(c->name, "cancel request from %s: client has no query running", from);
		return;
	}
	log_info(c->name, "forwarding cancel request from %s to %s", from, s->name);
	cancel_conn_send(rt, (const struct sockaddr *)&s->addr, s->addr_len, s->be_pid, s->be_key, s->name);
}
