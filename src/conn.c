/*
 * conn — buffered non-blocking socket I/O (see conn.h).
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);

void conn_init(Conn *c, struct event_base *base, int fd, size_t buf_size, size_t max_message,
	       const ConnHandlers *handlers, void *owner)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->owner = owner;
	c->handlers = handlers;
	c->in_cap = c->in_base = buf_size;
	c->in_max = max_message;
	c->in = malloc(buf_size);
	if (!c->in)
		abort();
	buf_init(&c->out);
	event_assign(&c->ev_read, base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	event_assign(&c->ev_write, base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->events_ready = true;
}

void conn_close(Conn *c)
{
	if (c->events_ready) {
		event_del(&c->ev_read);
		event_del(&c->ev_write);
		c->events_ready = false;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	free(c->in);
	c->in = NULL;
	c->in_len = c->in_pos = c->in_cap = 0;
	buf_free(&c->out);
	c->reading = c->writing = false;
}

void conn_start_reading(Conn *c)
{
	if (!c->reading && c->events_ready) {
		event_add(&c->ev_read, NULL);
		c->reading = true;
	}
}

void conn_stop_reading(Conn *c)
{
	if (c->reading) {
		event_del(&c->ev_read);
		c->reading = false;
	}
}

void conn_kick(Conn *c)
{
	if (c->events_ready)
		event_active(&c->ev_read, EV_READ, 0);
}

void conn_fail(Conn *c, const char *why)
{
	if (c->failed)
		return;
	c->failed = true;
	snprintf(c->fail_reason, sizeof(c->fail_reason), "%s", why);
	conn_kick(c);
}

static void set_writing(Conn *c, bool on)
{
	if (on == c->writing || !c->events_ready)
		return;
	if (on)
		event_add(&c->ev_write, NULL);
	else
		event_del(&c->ev_write);
	c->writing = on;
}

void conn_send(Conn *c, const void *data, size_t n)
{
	if (c->failed || c->fd < 0 || n == 0)
		return;
	const uint8_t *p = data;
	if (buf_used(&c->out) == 0) {
		ssize_t w;
		do {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
		} while (w < 0 && errno == EINTR);
		if (w < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				char why[96];
				snprintf(why, sizeof(why), "write failed: %s", strerror(errno));
				conn_fail(c, why);
				return;
			}
			w = 0;
		}
		c->bytes_out += (uint64_t)w;
		p += w;
		n -= (size_t)w;
		if (n == 0)
			return;
	}
	buf_append(&c->out, p, n);
	set_writing(c, true);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Conn *c = arg;
	while (buf_used(&c->out) > 0) {
		ssize_t w = send(fd, buf_head(&c->out), buf_used(&c->out), MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			char why[96];
			snprintf(why, sizeof(why), "write failed: %s", strerror(errno));
			set_writing(c, false);
			conn_fail(c, why);
			return;
		}
		c->bytes_out += (uint64_t)w;
		buf_consume(&c->out, (size_t)w);
	}
	set_writing(c, false);
	if (c->handlers->drained)
		c->handlers->drained(c->owner);
}

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Conn *c = arg;
	if (c->failed) {
		conn_stop_reading(c);
		c->handlers->failed(c->owner, c->fail_reason);
		return;
	}
	bool got = false;
	if (c->reading && c->in_len < c->in_cap) {
		ssize_t r;
		do {
			r = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		} while (r < 0 && errno == EINTR);
		if (r == 0) {
			conn_stop_reading(c);
			c->handlers->failed(c->owner, "connection closed by peer");
			return;
		}
		if (r < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				char why[96];
				snprintf(why, sizeof(why), "read failed: %s", strerror(errno));
				conn_stop_reading(c);
				c->handlers->failed(c->owner, why);
				return;
			}
		} else {
			c->in_len += (size_t)r;
			c->bytes_in += (uint64_t)r;
			got = true;
		}
	}
	if (got || c->in_pos < c->in_len)
		c->handlers->readable(c->owner);
	/* A full buffer the owner cannot drain now would make the level-triggered event spin. */
	if (c->in && c->reading && c->in_pos == 0 && c->in_len == c->in_cap)
		conn_stop_reading(c);
}

void conn_compact(Conn *c)
{
	if (!c->in)
		return;
	if (c->in_pos == c->in_len) {
		c->in_pos = c->in_len = 0;
		if (c->in_cap > c->in_base && c->fwd_left == 0 && c->skip_left == 0) {
			uint8_t *p = realloc(c->in, c->in_base);
			if (p) {
				c->in = p;
				c->in_cap = c->in_base;
			}
		}
	} else if (c->in_pos > 0) {
		memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
		c->in_len -= c->in_pos;
		c->in_pos = 0;
	}
}

bool conn_make_room(Conn *c, size_t total)
{
	if (total > c->in_max)
		return false;
	conn_compact(c);
	if (total <= c->in_cap)
		return true;
	uint8_t *p = realloc(c->in, total);
	if (!p)
		return false;
	c->in = p;
	c->in_cap = total;
	return true;
}
