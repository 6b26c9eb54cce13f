/*
 * cancel_conn — the short-lived connections that carry a CancelRequest to a server (see
 * cancel_conn.h).
 */
#include "cancel_conn.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "loop.h"
#include "proto.h"

#define CANCEL_TIMEOUT_MS 5000

typedef struct CancelConn {
	Runtime *rt;
	int fd;
	uint8_t packet[16];
	size_t sent;
	struct event ev;
	LoopTimer ev_timeout;
	ListNode node;
	char who[24];
} CancelConn;

static void cancel_conn_close(CancelConn *cc)
{
	event_del(&cc->ev);
	loop_timer_stop(&cc->ev_timeout);
	close(cc->fd);
	list_remove(&cc->rt->cancels, &cc->node);
	free(cc);
}

static void cancel_on_timeout(void *arg)
{
	CancelConn *cc = arg;
	log_warning(cc->who, "cancel request to the server timed out");
	cancel_conn_close(cc);
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
			cancel_conn_close(cc);
			return;
		}
		ssize_t w = send(fd, cc->packet + cc->sent, sizeof(cc->packet) - cc->sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			log_warning(cc->who, "cancel request could not be sent: %s", strerror(errno));
			cancel_conn_close(cc);
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
	cancel_conn_close(cc);
}

void cancel_conn_send(Runtime *rt, const struct sockaddr *addr, socklen_t addr_len, uint32_t pid,
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
	loop_timer_init(&cc->ev_timeout, rt->base, cancel_on_timeout, cc);
	event_add(&cc->ev, NULL);
	loop_timer_start(&cc->ev_timeout, CANCEL_TIMEOUT_MS);
	list_push_back(&rt->cancels, &cc->node);
	rt->stats.cancels_forwarded++;
}

void cancel_conn_free_all(Runtime *rt)
{
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->cancels)
		cancel_conn_close(list_entry(n, CancelConn, node));
}
