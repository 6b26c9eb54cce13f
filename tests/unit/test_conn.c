/*
 * test_conn — conn's sending contract on a socketpair: conn_send writes at once when nothing is
 * queued; conn_send_soon queues, and what is sent after it (either way) joins the queue, all of it
 * leaving in order in the same loop pass; bytes the socket does not take are written when it
 * drains (the socket is watched), with drained() called once the queue is empty.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "unit.h"

static int drained_calls, failed_calls;
static char failed_why[64];

static void on_readable(void *owner) { (void)owner; }
static void on_drained(void *owner)
{
	(void)owner;
	drained_calls++;
}
static void on_failed(void *owner, const char *why)
{
	(void)owner;
	snprintf(failed_why, sizeof failed_why, "%s", why);
	failed_calls++;
}

static const ConnHandlers handlers = {.readable = on_readable, .drained = on_drained, .failed = on_failed};

/* Everything the peer can read now, appended to out (NUL-terminated); returns the count. */
static size_t peer_read(int fd, char *out, size_t cap)
{
	size_t n = strlen(out);
	for (;;) {
		ssize_t r = recv(fd, out + n, cap - 1 - n, MSG_DONTWAIT);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = 0;
	return n;
}

/* A Conn on one end of a socketpair (fds[0], non-blocking); the test reads fds[1]. */
typedef struct Fixture {
	int fds[2];
	struct event_base *base;
	Conn c;
} Fixture;

static bool setup(Fixture *f)
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, f->fds) != 0 || fcntl(f->fds[0], F_SETFL, O_NONBLOCK) != 0)
		return false;
	f->base = event_base_new();
	if (!f->base)
		return false;
	conn_init(&f->c, f->base, f->fds[0], 4096, 65536, &handlers, NULL);
	return true;
}

static void teardown(Fixture *f)
{
	conn_close(&f->c);
	close(f->fds[1]);
	event_base_free(f->base);
}

TEST(send_soon_joins_what_follows)
{
	Fixture f;
	REQUIRE(setup(&f));
	char got[64] = "";
	conn_send(&f.c, "now", 3);
	CHECK_STR((peer_read(f.fds[1], got, sizeof got), got), "now"); /* nothing queued: written at once */
	got[0] = 0;
	conn_send_soon(&f.c, "ab", 2);
	conn_send(&f.c, "cd", 2);
	conn_send_soon(&f.c, "ef", 2);
	CHECK_INT(peer_read(f.fds[1], got, sizeof got), 0); /* not yet: later in the loop pass */
	CHECK_INT(conn_queued(&f.c), 6);
	drained_calls = 0;
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	peer_read(f.fds[1], got, sizeof got);
	CHECK_STR(got, "abcdef");
	CHECK_INT(conn_queued(&f.c), 0);
	CHECK_INT(drained_calls, 1);
	CHECK(!f.c.writing && !f.c.send_soon);
	teardown(&f);
}

TEST(send_soon_that_would_block_waits_for_the_socket)
{
	Fixture f;
	REQUIRE(setup(&f));
	int small = 4096;
	setsockopt(f.fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	setsockopt(f.fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	size_t total = 1 << 20;
	char *big = malloc(total), *got = malloc(total + 1);
	REQUIRE(big && got);
	for (size_t i = 0; i < total; i++)
		big[i] = (char)('a' + i % 26);
	conn_send_soon(&f.c, big, total);
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	CHECK(conn_queued(&f.c) > 0); /* the socket took only part of it */
	CHECK(f.c.writing);            /* ... so it is watched for room */
	size_t n = 0;
	for (int round = 0; round < 100000 && n < total; round++) {
		ssize_t r = recv(f.fds[1], got + n, total - n, MSG_DONTWAIT);
		if (r > 0)
			n += (size_t)r;
		else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			break;
		event_base_loop(f.base, EVLOOP_NONBLOCK);
	}
	CHECK_INT(n, total);
	CHECK(memcmp(got, big, total) == 0);
	CHECK_INT(conn_queued(&f.c), 0);
	CHECK(!f.c.writing);
	CHECK_INT(failed_calls, 0);
	teardown(&f);
	free(big);
	free(got);
}

TEST(closing_drops_what_was_queued_soon)
{
	Fixture f;
	REQUIRE(setup(&f));
	conn_send_soon(&f.c, "lost", 4);
	conn_close(&f.c); /* the active write event goes with it */
	event_base_loop(f.base, EVLOOP_NONBLOCK);
	char got[16] = "";
	CHECK_INT(peer_read(f.fds[1], got, sizeof got), 0);
	teardown(&f); /* a second close is fine */
}

TEST(waiting_bytes_shrink_and_grow_back)
{
	/* Bytes left unprocessed (the handler reads none) move to an allocation of their size; the
	 * next read grows the buffer back to buffer_size and appends after them. */
	Fixture f;
	REQUIRE(setup(&f));
	conn_start_reading(&f.c);
	CHECK(send(f.fds[1], "Q-request", 9, 0) == 9);
	event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK_INT(f.c.in_len, 9);
	CHECK_INT(f.c.in_cap, 4096);
	conn_shrink(&f.c);
	CHECK_INT(f.c.in_cap, 9);
	CHECK(memcmp(f.c.in, "Q-request", 9) == 0);
	CHECK(send(f.fds[1], "+more", 5, 0) == 5);
	event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK_INT(f.c.in_len, 14);
	CHECK_INT(f.c.in_cap, 4096);
	CHECK(memcmp(f.c.in, "Q-request+more", 14) == 0);
	/* processed: no buffer at all */
	f.c.in_pos = f.c.in_len;
	conn_shrink(&f.c);
	CHECK(f.c.in == NULL);
	teardown(&f);
}

TEST(failure_reason_reported_then_freed)
{
	Fixture f;
	REQUIRE(setup(&f));
	CHECK(f.c.fail_reason == NULL);
	conn_start_reading(&f.c);
	failed_calls = 0;
	conn_fail(&f.c, "write failed: Broken pipe");
	conn_fail(&f.c, "a second reason is ignored");
	event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK_INT(failed_calls, 1);
	CHECK_STR(failed_why, "write failed: Broken pipe");
	teardown(&f);
	CHECK(f.c.fail_reason == NULL);
	conn_fail(&f.c, "after close: nothing kept");
	CHECK(f.c.fail_reason == NULL);
}

TEST(emptied_read_buffers_are_reused_through_spares)
{
	/* A connection that processed everything gives its buffer to the spares; the next read (of
	 * this or another connection) takes it back instead of allocating; a buffer of another size,
	 * or one more than the spares keep, is freed. */
	ConnSpares sp;
	conn_spares_init(&sp, 1);
	Fixture f;
	REQUIRE(setup(&f));
	conn_use_spares(&f.c, &sp);
	conn_start_reading(&f.c);
	CHECK(send(f.fds[1], "Q-one", 5, 0) == 5);
	event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK_INT(f.c.in_len, 5);
	uint8_t *first = f.c.in;
	f.c.in_pos = f.c.in_len;
	conn_compact(&f.c);
	CHECK(f.c.in == NULL);
	CHECK_INT(sp.n, 1);
	CHECK(sp.bufs[0] == first);
	CHECK_INT(sp.size, 4096);
	CHECK(send(f.fds[1], "Q-two", 5, 0) == 5);
	event_base_loop(f.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK(f.c.in == first); /* taken back, not allocated */
	CHECK_INT(sp.n, 0);
	CHECK(memcmp(f.c.in, "Q-two", 5) == 0);
	/* emptied spares take the size of the next buffer given (buffer_size changed by reload) */
	Fixture g;
	REQUIRE(setup(&g));
	g.c.in_base = 8192;
	conn_use_spares(&g.c, &sp);
	conn_ensure_read_buffer(&g.c);
	teardown(&g);
	CHECK_INT(sp.n, 1);
	CHECK_INT(sp.size, 8192);
	/* full: f's buffer is freed at close; a connection of the old size does not take a spare */
	teardown(&f);
	CHECK_INT(sp.n, 1);
	REQUIRE(setup(&g));
	conn_use_spares(&g.c, &sp);
	conn_ensure_read_buffer(&g.c);
	CHECK_INT(g.c.in_cap, 4096);
	CHECK_INT(sp.n, 1);
	teardown(&g);
	CHECK_INT(sp.n, 1);
	conn_spares_free(&sp);
	CHECK_INT(sp.n, 0);
}

int main(void)
{
	RUN(send_soon_joins_what_follows);
	RUN(send_soon_that_would_block_waits_for_the_socket);
	RUN(closing_drops_what_was_queued_soon);
	RUN(waiting_bytes_shrink_and_grow_back);
	RUN(failure_reason_reported_then_freed);
	RUN(emptied_read_buffers_are_reused_through_spares);
	return unit_summary();
}
