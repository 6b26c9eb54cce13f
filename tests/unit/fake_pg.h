/*
 * fake_pg.h — a fake PostgreSQL server on the test's event loop for the unit tests of the libpq
 * drivers (pgasync, health): a listening socket speaking just enough of the protocol: trust login,
 * one-row answers. Each query is answered with its own text as one column, or with `row` (ncols
 * values) when set; "SLOW" (or any query, with mute) is never answered, "CLOSE" hangs up. With
 * silent, the startup packet gets no answer either.
 */
#ifndef PGRELAY_FAKE_PG_H
#define PGRELAY_FAKE_PG_H

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct Fake {
	struct event_base *base;
	int lfd;
	int port;
	bool silent;          /* accept TCP but never answer the startup */
	bool mute;            /* log in, then never answer a query */
	const char *const *row; /* the answer to every query (ncols values), or NULL: the query's text */
	int ncols;
	int accepted;         /* connections accepted */
	struct event *ev_accept;
	int cfd;
	struct event *ev_read;
	unsigned char buf[8192];
	size_t len;
	bool started;
	int queries;
} Fake;

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
	p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void fake_send(Fake *f, const void *data, size_t n)
{
	if (write(f->cfd, data, n) != (ssize_t)n)
		fprintf(stderr, "fake server: short write\n");
}

static void fake_msg(Fake *f, char type, const void *body, size_t n)
{
	unsigned char hdr[5];
	hdr[0] = (unsigned char)type;
	put32(hdr + 1, (uint32_t)(n + 4));
	fake_send(f, hdr, 5);
	if (n)
		fake_send(f, body, n);
}

static void fake_row(Fake *f, int ncols, const char *const *values)
{
	unsigned char t[2 + 8 * 20] = {0, (unsigned char)ncols}, *p = t + 2;
	for (int i = 0; i < ncols; i++) {
		*p++ = (unsigned char)('a' + i), *p++ = 0;  /* name */
		put32(p, 0), p += 4;                         /* table oid */
		p[0] = 0, p[1] = 0, p += 2;                  /* attnum */
		put32(p, 25), p += 4;                        /* text */
		p[0] = 0xff, p[1] = 0xff, p += 2;
		put32(p, 0xffffffffu), p += 4;               /* typmod */
		p[0] = 0, p[1] = 0, p += 2;                  /* text format */
	}
	fake_msg(f, 'T', t, (size_t)(p - t));
	unsigned char d[2 + 8 * (4 + 64)] = {0, (unsigned char)ncols};
	size_t dl = 2;
	for (int i = 0; i < ncols; i++) {
		size_t vl = strlen(values[i]);
		put32(d + dl, (uint32_t)vl);
		memcpy(d + dl + 4, values[i], vl);
		dl += 4 + vl;
	}
	fake_msg(f, 'D', d, dl);
	fake_msg(f, 'C', "SELECT 1", 9);
}

static void fake_row_result(Fake *f, const char *value)
{
	if (f->row)
		fake_row(f, f->ncols, f->row);
	else
		fake_row(f, 1, &value);
}

static void fake_close_client(Fake *f)
{
	if (f->ev_read) {
		event_free(f->ev_read);
		f->ev_read = NULL;
	}
	if (f->cfd >= 0) {
		close(f->cfd);
		f->cfd = -1;
	}
	f->len = 0;
	f->started = false;
}

static void on_fake_read(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Fake *f = arg;
	ssize_t n = read(fd, f->buf + f->len, sizeof f->buf - f->len);
	if (n <= 0) {
		fake_close_client(f);
		return;
	}
	f->len += (size_t)n;
	for (;;) {
		size_t off = f->started ? 1 : 0;
		if (f->len < off + 4)
			return;
		uint32_t ml = get32(f->buf + off);
		if (f->len < off + ml)
			return;
		if (!f->started) {
			f->started = true;
			if (!f->silent) {
				unsigned char ok[4] = {0, 0, 0, 0};
				fake_msg(f, 'R', ok, 4);
				fake_msg(f, 'Z', "I", 1);
			}
		} else if (f->buf[0] == 'Q') {
			char q[256];
			snprintf(q, sizeof q, "%.*s", (int)(ml - 5), (const char *)f->buf + 5);
			f->queries++;
			if (f->mute || strcmp(q, "SLOW") == 0) {
				/* never answered */
			} else if (strcmp(q, "CLOSE") == 0) {
				fake_close_client(f);
				return;
			} else {
				fake_row_result(f, q);
				if (strcmp(q, "TWO") == 0)
					fake_row_result(f, "second");
				fake_msg(f, 'Z', "I", 1);
			}
		} else if (f->buf[0] == 'X') {
			fake_close_client(f);
			return;
		}
		memmove(f->buf, f->buf + off + ml, f->len - off - ml);
		f->len -= off + ml;
	}
}

static void on_fake_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Fake *f = arg;
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		return;
	fake_close_client(f);
	f->accepted++;
	f->cfd = c;
	evutil_make_socket_nonblocking(c);
	f->ev_read = event_new(f->base, c, EV_READ | EV_PERSIST, on_fake_read, f);
	event_add(f->ev_read, NULL);
}

static void fake_start(Fake *f, struct event_base *loop, bool accept_them)
{
	memset(f, 0, sizeof *f);
	f->base = loop;
	f->cfd = -1;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(f->lfd, (struct sockaddr *)&a, sizeof a);
	listen(f->lfd, 8);
	socklen_t al = sizeof a;
	getsockname(f->lfd, (struct sockaddr *)&a, &al);
	f->port = ntohs(a.sin_port);
	if (accept_them) {
		f->ev_accept = event_new(loop, f->lfd, EV_READ | EV_PERSIST, on_fake_accept, f);
		event_add(f->ev_accept, NULL);
	}
}

static void fake_stop(Fake *f)
{
	fake_close_client(f);
	if (f->ev_accept)
		event_free(f->ev_accept);
	close(f->lfd);
}

#endif
