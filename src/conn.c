/*
 * conn — buffered non-blocking socket I/O, plain or TLS (see conn.h).
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"
#include "xalloc.h"

static void conn_on_read(evutil_socket_t fd, short what, void *arg);
static void conn_on_write(evutil_socket_t fd, short what, void *arg);

void conn_init(Conn *c, struct event_base *base, int fd, size_t buf_size, size_t max_message,
	       const ConnHandlers *handlers, void *owner)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->owner = owner;
	c->handlers = handlers;
	c->in_base = buf_size; /* allocated when bytes arrive, freed when all are processed */
	c->in_max = max_message;
	buf_init(&c->out);
	event_assign(&c->ev_read, base, fd, EV_READ | EV_PERSIST, conn_on_read, c);
	event_assign(&c->ev_write, base, fd, EV_WRITE | EV_PERSIST, conn_on_write, c);
	c->events_ready = true;
}

void conn_spares_init(ConnSpares *sp, size_t max)
{
	sp->size = 0;
	sp->n = 0;
	sp->max = max;
	sp->bufs = max ? xcalloc(max, sizeof *sp->bufs) : NULL;
}

void conn_spares_free(ConnSpares *sp)
{
	while (sp->n)
		free(sp->bufs[--sp->n]);
	free(sp->bufs);
	sp->bufs = NULL;
	sp->max = 0;
}

void conn_use_spares(Conn *c, ConnSpares *sp) { c->spares = sp; }

/* The read buffer goes back to the spares (when it has their size and there is room) or is freed. */
static void release_read_buffer(Conn *c)
{
	ConnSpares *sp = c->spares;
	if (c->in && sp && sp->n < sp->max && c->in_cap == c->in_base) {
		if (sp->n == 0)
			sp->size = c->in_cap; /* the configured size may change by reload */
		if (sp->size == c->in_cap) {
			sp->bufs[sp->n++] = c->in;
			c->in = NULL;
		}
	}
	free(c->in);
	c->in = NULL;
	c->in_cap = 0;
}

void conn_close(Conn *c)
{
	if (c->events_ready) {
		event_del(&c->ev_read);
		event_del(&c->ev_write);
		c->events_ready = false;
	}
	if (c->ssl) {
		if (!c->handshaking && !c->failed)
			SSL_shutdown(c->ssl); /* best effort close_notify */
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	release_read_buffer(c);
	c->in_len = c->in_pos = 0;
	free(c->fail_reason);
	c->fail_reason = NULL;
	c->closed = true;
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

void conn_kick_pending(Conn *c)
{
	if (c->in_pos < c->in_len || (c->ssl && SSL_has_pending(c->ssl)))
		conn_kick(c);
}

void conn_fail(Conn *c, const char *why)
{
	if (c->failed)
		return;
	c->failed = true;
	if (!c->closed) /* conn_close frees the reason; after it nobody reads one */
		c->fail_reason = xstrdup(why ? why : "connection failed");
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

/* ---- raw I/O: > 0 bytes moved, 0 would block, -1 error (reason in why), -2 EOF ---- */

static ssize_t io_fail(char *why, size_t whylen, const char *what, int err)
{
	snprintf(why, whylen, "%s failed: %s", what, strerror(err));
	return -1;
}

static ssize_t tls_fail(Conn *c, char *why, size_t whylen, const char *what, int ret)
{
	int e = SSL_get_error(c->ssl, ret);
	char msg[200];
	if (e == SSL_ERROR_SYSCALL && errno)
		return io_fail(why, whylen, what, errno);
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
		return -2;
	snprintf(why, whylen, "TLS %s failed: %s", what, tls_error_string(msg, sizeof msg));
	return -1;
}

static ssize_t io_read(Conn *c, void *buf, size_t n, char *why, size_t whylen)
{
	if (c->ssl) {
		ERR_clear_error();
		int r = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
		if (r > 0)
			return r;
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		if (e == SSL_ERROR_WANT_WRITE) {
			c->read_wants_write = true;
			set_writing(c, true);
			return 0;
		}
		return tls_fail(c, why, whylen, "read", r);
	}
	ssize_t r;
	do {
		r = recv(c->fd, buf, n, 0);
	} while (r < 0 && errno == EINTR);
	if (r > 0)
		return r;
	if (r == 0)
		return -2;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return io_fail(why, whylen, "read", errno);
}

static ssize_t io_write(Conn *c, const void *buf, size_t n, char *why, size_t whylen)
{
	if (c->ssl) {
		ERR_clear_error();
		int w = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
		if (w > 0)
			return w;
		int e = SSL_get_error(c->ssl, w);
		if (e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_WANT_READ) {
			c->write_wants_read = true;
			return 0;
		}
		ssize_t r = tls_fail(c, why, whylen, "write", w);
		if (r == -2)
			snprintf(why, whylen, "connection closed by peer");
		return -1;
	}
	ssize_t w;
	do {
		w = send(c->fd, buf, n, MSG_NOSIGNAL);
	} while (w < 0 && errno == EINTR);
	if (w >= 0)
		return w;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return io_fail(why, whylen, "write", errno);
}

/* ---- TLS handshake ---- */

static void handshake_step(Conn *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->handshaking = false;
		set_writing(c, false);
		c->handlers->tls_ready(c->owner, NULL);
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		set_writing(c, false);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		set_writing(c, true);
		return;
	}
	char why[256], msg[200];
	if (e == SSL_ERROR_SYSCALL)
		snprintf(why, sizeof why, "TLS handshake failed: %s", errno ? strerror(errno) : "connection closed");
	else
		snprintf(why, sizeof why, "TLS handshake failed: %s", tls_error_string(msg, sizeof msg));
	c->handshaking = false;
	set_writing(c, false);
	c->handlers->tls_ready(c->owner, why);
}

bool conn_tls_start(Conn *c, SSL_CTX *ctx, bool server_role, const char *verify_host)
{
	if (!ctx || c->ssl || buf_used(&c->out) || c->in_pos < c->in_len)
		return false;
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		return false;
	if (server_role) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (verify_host) {
			struct in6_addr tmp;
			bool is_ip = inet_pton(AF_INET, verify_host, &tmp) == 1 || inet_pton(AF_INET6, verify_host, &tmp) == 1;
			if (!is_ip)
				SSL_set_tlsext_host_name(c->ssl, verify_host);
			if (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) {
				if (is_ip)
					X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), verify_host);
				else
					SSL_set1_host(c->ssl, verify_host);
			}
		}
	}
	c->handshaking = true;
	conn_start_reading(c);
	handshake_step(c);
	return true;
}

/* ---- sending ---- */

void conn_send(Conn *c, const void *data, size_t n)
{
	if (c->failed || c->fd < 0 || n == 0)
		return;
	const uint8_t *p = data;
	if (buf_used(&c->out) == 0 && !c->handshaking) {
		char why[160];
		while (n > 0) {
			ssize_t w = io_write(c, p, n, why, sizeof why);
			if (w < 0) {
				conn_fail(c, why);
				return;
			}
			if (w == 0)
				break;
			c->bytes_out += (uint64_t)w;
			p += w;
			n -= (size_t)w;
		}
		if (n == 0)
			return;
	}
	buf_append(&c->out, p, n);
	if (!c->send_soon)
		set_writing(c, true);
}

void conn_send_soon(Conn *c, const void *data, size_t n)
{
	if (c->failed || c->fd < 0 || n == 0)
		return;
	if (c->handshaking || !c->events_ready) {
		conn_send(c, data, n);
		return;
	}
	buf_append(&c->out, data, n);
	if (!c->send_soon && !c->writing) {
		c->send_soon = true;
		event_active(&c->ev_write, EV_WRITE, 0);
	}
}

static void flush_out(Conn *c)
{
	char why[160];
	while (buf_used(&c->out) > 0) {
		ssize_t w = io_write(c, buf_head(&c->out), buf_used(&c->out), why, sizeof why);
		if (w < 0) {
			set_writing(c, false);
			conn_fail(c, why);
			return;
		}
		if (w == 0) {
			/* retried from the read event, or when the socket takes more */
			set_writing(c, !c->write_wants_read);
			return;
		}
		c->bytes_out += (uint64_t)w;
		buf_consume(&c->out, (size_t)w);
	}
	set_writing(c, false);
	if (c->handlers->drained)
		c->handlers->drained(c->owner);
}

static void conn_on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Conn *c = arg;
	c->send_soon = false;
	if (c->handshaking) {
		handshake_step(c);
		return;
	}
	if (c->read_wants_write) {
		c->read_wants_write = false;
		conn_kick(c);
	}
	flush_out(c);
}

/* ---- receiving ---- */

static void conn_on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Conn *c = arg;
	if (c->failed) {
		/* A copy: the owner closes the connection, which frees the reason. */
		char why[256];
		snprintf(why, sizeof why, "%s", c->fail_reason ? c->fail_reason : "connection failed");
		conn_stop_reading(c);
		c->handlers->failed(c->owner, why);
		return;
	}
	if (c->handshaking) {
		handshake_step(c);
		return;
	}
	if (c->write_wants_read) {
		c->write_wants_read = false;
		flush_out(c);
		if (c->failed)
			return;
	}
	bool got = false, blocked = false;
	char why[160] = "";
	if (c->reading)
		conn_ensure_read_buffer(c);
	/*
	 * One read per event: the event is level-triggered, so it comes back while the socket has
	 * more. TLS reads ahead (one read(2) takes all the socket has), so OpenSSL may hold whole
	 * records the socket no longer signals: decrypt those too, without another system call.
	 */
	while (c->reading && c->in_len < c->in_cap) {
		ssize_t r = io_read(c, c->in + c->in_len, c->in_cap - c->in_len, why, sizeof why);
		if (r == -2)
			snprintf(why, sizeof why, "connection closed by peer");
		if (r < 0)
			break; /* reported after the bytes already read are processed */
		why[0] = 0;
		if (r == 0) {
			blocked = true; /* the rest of a record is still on its way: the socket signals it */
			break;
		}
		c->in_len += (size_t)r;
		c->bytes_in += (uint64_t)r;
		got = true;
		if (!c->ssl || !SSL_has_pending(c->ssl))
			break;
	}
	if (got || c->in_pos < c->in_len)
		c->handlers->readable(c->owner);
	if (c->closed)
		return; /* closed by the owner */
	if (why[0]) {
		/* EOF or an error right after data (a Terminate, say, then close_notify). */
		conn_stop_reading(c);
		c->handlers->failed(c->owner, why);
		return;
	}
	if (c->ssl && c->reading && !blocked && SSL_has_pending(c->ssl) && c->in_len < c->in_cap)
		conn_kick(c); /* records left in OpenSSL (the buffer was full): come back for them */
	/* A full buffer the owner cannot drain now would make the level-triggered event spin. */
	if (c->reading && c->in_cap && c->in_pos == 0 && c->in_len == c->in_cap)
		conn_stop_reading(c);
	if (c->in_len == 0)
		conn_compact(c); /* a wake-up without bytes: keep no buffer */
}

void conn_ensure_read_buffer(Conn *c)
{
	if (!c->in) {
		ConnSpares *sp = c->spares;
		if (sp && sp->n && sp->size == c->in_base)
			c->in = sp->bufs[--sp->n];
		else if (!(c->in = malloc(c->in_base)))
			abort();
		c->in_cap = c->in_base;
	} else if (c->in_cap < c->in_base) {
		c->in = xrealloc(c->in, c->in_base); /* conn_shrink made it small */
		c->in_cap = c->in_base;
	}
}

void conn_compact(Conn *c)
{
	if (!c->in)
		return;
	if (c->in_pos == c->in_len) {
		c->in_pos = c->in_len = 0;
		if (c->fwd_left == 0 && c->skip_left == 0 && !(c->ssl && SSL_has_pending(c->ssl))) {
			/* Nothing buffered: an idle connection holds no read buffer (10,000 idle clients
			 * would otherwise keep a touched page or two of one each). */
			release_read_buffer(c);
		}
	} else if (c->in_pos > 0) {
		memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
		c->in_len -= c->in_pos;
		c->in_pos = 0;
	}
}

void conn_shrink(Conn *c)
{
	conn_compact(c);
	size_t used = c->in_len;
	if (!c->in || used == 0 || used > CONN_SHRINK_MAX || c->in_cap <= CONN_SHRINK_MAX || c->fwd_left ||
	    c->skip_left)
		return;
	uint8_t *p = xmalloc(used);
	memcpy(p, c->in, used);
	free(c->in);
	c->in = p;
	c->in_cap = used;
}

bool conn_unread(Conn *c, const void *data, size_t n)
{
	if (c->closed || c->fwd_left || c->skip_left)
		return false;
	conn_compact(c);
	size_t used = c->in_len;
	if (used + n > c->in_cap) {
		if (used + n > c->in_max)
			return false;
		size_t cap = used + n > c->in_base ? used + n : c->in_base;
		uint8_t *p = realloc(c->in, cap);
		if (!p)
			return false;
		c->in = p;
		c->in_cap = cap;
	}
	memmove(c->in + n, c->in, used);
	memcpy(c->in, data, n);
	c->in_len = used + n;
	return true;
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
