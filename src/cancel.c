/*
 * cancel — BackendKeyData map and CancelRequest forwarding (see cancel.h).
 */
#include "cancel.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "proto.h"
#include "server.h"

#define TOMBSTONE ((Client *)1)
#define CANCEL_TIMEOUT_MS 5000

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

/* ---- forwarding ---- */

typedef struct CancelConn {
	Runtime *rt;
	int fd;
	uint8_t packet[16];
	size_t sent;
	struct event ev;
	struct event ev_timeout;
	ListNode node;
	char who[24];
} CancelConn;

static void cancel_conn_free(CancelConn *cc)
{
	event_del(&cc->ev);
	event_del(&cc->ev_timeout);
	close(cc->fd);
	list_remove(&cc->rt->cancels, &cc->node);
	free(cc);
}

static void cancel_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	CancelConn *cc = arg;
	log_warning(cc->who, "cancel request to the server timed out");
	cancel_conn_free(cc);
}

static void cancel_on_io(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	CancelConn *cc = arg;
	if (cc->sent < sizeof(cc->packet)) {
		int err = 0;
		socklen_t elen = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err) {
			log_warning(cc->who, "cancel request could not reach the server: %s", strerror(err));
			cancel_conn_free(cc);
			return;
		}
		ssize_t w = send(fd, cc->packet + cc->sent, sizeof(cc->packet) - cc->sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			log_warning(cc->who, "cancel request could not be sent: %s", strerror(errno));
			cancel_conn_free(cc);
			return;
		}
		cc->sent += (size_t)w;
		if (cc->sent < sizeof(cc->packet))
			return;
		/* Sent: wait for the server to close its end (it answers nothing). */
		event_del(&cc->ev);
		event_assign(&cc->ev, cc->rt->base, fd, EV_READ | EV_PERSIST, cancel_on_io, cc);
		event_add(&cc->ev, NULL);
		return;
	}
	char sink[64];
	ssize_t r = recv(fd, sink, sizeof(sink), 0);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	cancel_conn_free(cc);
}

void cancel_send_to_server(Runtime *rt, const struct sockaddr *addr, socklen_t addr_len, uint32_t pid,
			   uint32_t key, const char *who)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warning(who, "cannot create a socket for a cancel request: %s", strerror(errno));
		return;
	}
	if (connect(fd, addr, addr_len) < 0 && errno != EINPROGRESS) {
		log_warning(who, "cancel request could not reach the server: %s", strerror(errno));
		close(fd);
		return;
	}
	CancelConn *cc = calloc(1, sizeof(*cc));
	if (!cc)
		abort();
	cc->rt = rt;
	cc->fd = fd;
	snprintf(cc->who, sizeof(cc->who), "%s", who);
	Buf b;
	buf_init(&b);
	proto_build_cancel_request(&b, pid, key);
	memcpy(cc->packet, buf_head(&b), sizeof(cc->packet));
	buf_free(&b);
	event_assign(&cc->ev, rt->base, fd, EV_WRITE | EV_PERSIST, cancel_on_io, cc);
	evtimer_assign(&cc->ev_timeout, rt->base, cancel_on_timeout, cc);
	struct timeval tv = {.tv_sec = CANCEL_TIMEOUT_MS / 1000, .tv_usec = 0};
	event_add(&cc->ev, NULL);
	event_add(&cc->ev_timeout, &tv);
	list_push_back(&rt->cancels, &cc->node);
	rt->stats.cancels_forwarded++;
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
	cancel_send_to_server(rt, (const struct sockaddr *)&s->addr, s->addr_len, s->be_pid, s->be_key, s->name);
}

void cancel_free_all(Runtime *rt)
{
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->cancels)
		cancel_conn_free(list_entry(n, CancelConn, node));
}
