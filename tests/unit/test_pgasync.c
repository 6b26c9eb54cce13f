/*
 * test_pgasync — the libpq driver on a libevent loop against a fake server on the same loop (a
 * listening socket speaking just enough of the protocol: trust login, one-row answers): connect,
 * results in order then done, a second query on the same connection, two results of one text, a
 * query timeout, a server that hangs up mid-query, a refused connection, a connect timeout,
 * failures found inside a call reported from the loop (and dropped by a close), freeing from
 * inside callbacks, calls in the wrong phase.
 */
#include "pgasync.h"
#include "unit.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static struct event_base *base;

/* ---- the fake server ---- */

typedef struct Fake {
	int lfd;
	int port;
	bool silent;          /* accept TCP but never answer the startup */
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

static void fake_row_result(Fake *f, const char *value)
{
	unsigned char t[2 + 2 + 18] = {0, 1, 'x', 0};
	unsigned char *p = t + 4;
	put32(p, 0), p += 4;           /* table oid */
	p[0] = 0, p[1] = 0, p += 2;    /* attnum */
	put32(p, 25), p += 4;          /* text */
	p[0] = 0xff, p[1] = 0xff, p += 2;
	put32(p, 0xffffffffu), p += 4; /* typmod */
	p[0] = 0, p[1] = 0;            /* text format */
	fake_msg(f, 'T', t, sizeof t);
	unsigned char d[2 + 4 + 64] = {0, 1};
	size_t vl = strlen(value);
	put32(d + 2, (uint32_t)vl);
	memcpy(d + 6, value, vl);
	fake_msg(f, 'D', d, 6 + vl);
	fake_msg(f, 'C', "SELECT 1", 9);
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
			if (strcmp(q, "SLOW") == 0) {
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
	f->cfd = c;
	evutil_make_socket_nonblocking(c);
	f->ev_read = event_new(base, c, EV_READ | EV_PERSIST, on_fake_read, f);
	event_add(f->ev_read, NULL);
}

static void fake_start(Fake *f, bool accept_them)
{
	memset(f, 0, sizeof *f);
	f->cfd = -1;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bind(f->lfd, (struct sockaddr *)&a, sizeof a);
	listen(f->lfd, 8);
	socklen_t al = sizeof a;
	getsockname(f->lfd, (struct sockaddr *)&a, &al);
	f->port = ntohs(a.sin_port);
	if (accept_them) {
		f->ev_accept = event_new(base, f->lfd, EV_READ | EV_PERSIST, on_fake_accept, f);
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

/* ---- the owner ---- */

typedef struct Owner {
	PgAsync *pa;
	bool in_api;       /* a pgasync_* call is running: no callback may come now */
	int connected, done, failed, results, inside_api;
	PgAsyncPhase fail_phase;
	char fail_msg[300];
	char values[8][64];
	bool free_in_result, free_in_failed, stop_in_result;
} Owner;

static void check_api(Owner *o)
{
	if (o->in_api)
		o->inside_api++;
}

static void o_connected(void *arg)
{
	Owner *o = arg;
	check_api(o);
	o->connected++;
	event_base_loopbreak(base);
}

static bool o_result(void *arg, PGresult *res)
{
	Owner *o = arg;
	check_api(o);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && o->results < 8)
		snprintf(o->values[o->results], sizeof o->values[0], "%s", PQgetvalue(res, 0, 0));
	o->results++;
	if (o->free_in_result) {
		pgasync_free(o->pa);
		o->pa = NULL;
		event_base_loopbreak(base);
	}
	return !o->stop_in_result;
}

static void o_done(void *arg)
{
	Owner *o = arg;
	check_api(o);
	o->done++;
	event_base_loopbreak(base);
}

static void o_failed(void *arg, PgAsyncPhase phase, const char *message)
{
	Owner *o = arg;
	check_api(o);
	o->failed++;
	o->fail_phase = phase;
	snprintf(o->fail_msg, sizeof o->fail_msg, "%s", message);
	if (o->free_in_failed) {
		pgasync_free(o->pa);
		o->pa = NULL;
	}
	event_base_loopbreak(base);
}

static const PgAsyncHandler handler = {o_connected, o_result, o_done, o_failed, NULL};

static void loop_for(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void owner_connect(Owner *o, int port, int64_t timeout_ms)
{
	char p[16];
	snprintf(p, sizeof p, "%d", port);
	const char *keys[] = {"host", "port", "dbname", "user", "sslmode", NULL};
	const char *vals[] = {"127.0.0.1", p, "db", "u", "disable", NULL};
	o->in_api = true;
	CHECK(pgasync_connect(o->pa, keys, vals, timeout_ms));
	o->in_api = false;
}

static bool owner_query(Owner *o, const char *sql, int64_t timeout_ms)
{
	o->in_api = true;
	bool ok = pgasync_query(o->pa, sql, timeout_ms);
	o->in_api = false;
	return ok;
}

TEST(connect_query_results_done)
{
	Fake f;
	fake_start(&f, true);
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	CHECK(pgasync_phase(o.pa) == PGASYNC_CLOSED);
	CHECK(!pgasync_query(o.pa, "SELECT 1", 0)); /* not connected */
	owner_connect(&o, f.port, 2000);
	loop_for(3000);
	CHECK_INT(o.connected, 1);
	CHECK_INT(o.failed, 0);
	CHECK(pgasync_phase(o.pa) == PGASYNC_IDLE);
	CHECK(pgasync_conn(o.pa) != NULL);
	CHECK(owner_query(&o, "hello", 2000));
	CHECK(pgasync_phase(o.pa) == PGASYNC_QUERYING);
	CHECK(!owner_query(&o, "again", 2000)); /* one at a time */
	loop_for(3000);
	CHECK_INT(o.results, 1);
	CHECK_STR(o.values[0], "hello");
	CHECK_INT(o.done, 1);
	CHECK(pgasync_phase(o.pa) == PGASYNC_IDLE);
	/* the same connection again; two results from one text, in order */
	CHECK(owner_query(&o, "TWO", 2000));
	loop_for(3000);
	CHECK_INT(o.results, 3);
	CHECK_STR(o.values[1], "TWO");
	CHECK_STR(o.values[2], "second");
	CHECK_INT(o.done, 2);
	CHECK_INT(f.queries, 2);
	CHECK_INT(o.inside_api, 0);
	pgasync_close(o.pa);
	CHECK(pgasync_phase(o.pa) == PGASYNC_CLOSED);
	CHECK(pgasync_conn(o.pa) == NULL);
	pgasync_free(o.pa);
	fake_stop(&f);
}

TEST(query_timeout_and_hang_up)
{
	Fake f;
	fake_start(&f, true);
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	owner_connect(&o, f.port, 2000);
	loop_for(3000);
	REQUIRE(o.connected == 1);
	CHECK(owner_query(&o, "SLOW", 200));
	loop_for(3000);
	CHECK_INT(o.failed, 1);
	CHECK(o.fail_phase == PGASYNC_QUERYING);
	CHECK_CONTAINS(o.fail_msg, "no answer within 200 ms");
	CHECK(pgasync_phase(o.pa) == PGASYNC_CLOSED);
	/* connect again on the same handle; the server hangs up during the query */
	owner_connect(&o, f.port, 2000);
	loop_for(3000);
	REQUIRE(o.connected == 2);
	CHECK(owner_query(&o, "CLOSE", 2000));
	loop_for(3000);
	CHECK_INT(o.failed, 2);
	CHECK(o.fail_phase == PGASYNC_QUERYING);
	CHECK(o.fail_msg[0] != '\0');
	CHECK_INT(o.done, 0);
	CHECK_INT(o.inside_api, 0);
	pgasync_free(o.pa);
	fake_stop(&f);
}

TEST(refused_and_connect_timeout)
{
	Fake closed;
	fake_start(&closed, false);
	int port = closed.port;
	fake_stop(&closed); /* nothing listens there now */
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	owner_connect(&o, port, 2000);
	loop_for(3000);
	CHECK_INT(o.failed, 1);
	CHECK(o.fail_phase == PGASYNC_CONNECTING);
	CHECK_CONTAINS(o.fail_msg, "refused");
	CHECK_INT(o.connected, 0);

	/* a server that takes the connection and never answers: the connect's timeout */
	Fake silent;
	fake_start(&silent, true);
	silent.silent = true;
	owner_connect(&o, silent.port, 150);
	loop_for(3000);
	CHECK_INT(o.failed, 2);
	CHECK(o.fail_phase == PGASYNC_CONNECTING);
	CHECK_CONTAINS(o.fail_msg, "no answer within 150 ms (connecting)");
	CHECK_INT(o.inside_api, 0);
	pgasync_free(o.pa);
	fake_stop(&silent);
}

TEST(failures_inside_calls_come_from_the_loop)
{
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	/* libpq refuses the options at once: reported from the loop, not inside pgasync_connect */
	const char *keys[] = {"host", "sslmode", NULL};
	const char *vals[] = {"127.0.0.1", "bogus", NULL};
	o.in_api = true;
	CHECK(pgasync_connect(o.pa, keys, vals, 1000));
	o.in_api = false;
	CHECK_INT(o.failed, 0);
	loop_for(1000);
	CHECK_INT(o.failed, 1);
	CHECK_CONTAINS(o.fail_msg, "sslmode");
	CHECK_INT(o.inside_api, 0);
	/* a close before the loop runs drops the report */
	CHECK(pgasync_connect(o.pa, keys, vals, 1000));
	pgasync_close(o.pa);
	loop_for(100);
	CHECK_INT(o.failed, 1);
	/* a connection string that does not parse */
	char err[200] = "";
	CHECK(!pgasync_connect_conninfo(o.pa, "host='unterminated", 1000, err, sizeof err));
	CHECK_CONTAINS(err, "invalid connection string");
	CHECK(!pgasync_watch(o.pa, false, NULL));
	pgasync_free(o.pa);
	pgasync_free(NULL);
	CHECK(pgasync_phase(NULL) == PGASYNC_CLOSED);
	CHECK_STR(pgasync_phase_name(PGASYNC_QUERYING), "waiting for the query's results");
}

TEST(free_inside_callbacks)
{
	Fake f;
	fake_start(&f, true);
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	owner_connect(&o, f.port, 2000);
	loop_for(3000);
	REQUIRE(o.connected == 1);
	o.free_in_result = true;
	CHECK(owner_query(&o, "TWO", 2000));
	loop_for(500);
	CHECK_INT(o.results, 1); /* nothing more after the free */
	CHECK_INT(o.done, 0);
	CHECK(o.pa == NULL);

	Owner p = {0};
	p.pa = pgasync_new(base, NULL, "test", &handler, &p);
	p.free_in_failed = true;
	const char *keys[] = {"host", "sslmode", NULL};
	const char *vals[] = {"127.0.0.1", "bogus", NULL};
	CHECK(pgasync_connect(p.pa, keys, vals, 1000));
	loop_for(500);
	CHECK_INT(p.failed, 1);
	CHECK(p.pa == NULL);

	/* a result callback that takes the connection over: no done, phase OWNER */
	Owner q = {0};
	q.pa = pgasync_new(base, NULL, "test", &handler, &q);
	owner_connect(&q, f.port, 2000);
	loop_for(3000);
	REQUIRE(q.connected == 1);
	q.stop_in_result = true;
	CHECK(owner_query(&q, "TWO", 2000));
	loop_for(300);
	CHECK_INT(q.results, 1);
	CHECK_INT(q.done, 0);
	CHECK(pgasync_phase(q.pa) == PGASYNC_OWNER);
	CHECK(!owner_query(&q, "again", 100));
	pgasync_free(q.pa);
	fake_stop(&f);
}

int main(void)
{
	LogSettings log = {.level = CONFIG_LOG_WARNING};
	log_configure(&log);
	base = event_base_new();
	RUN(connect_query_results_done);
	RUN(query_timeout_and_hang_up);
	RUN(refused_and_connect_timeout);
	RUN(failures_inside_calls_come_from_the_loop);
	RUN(free_inside_callbacks);
	event_base_free(base);
	log_configure(NULL);
	return unit_summary();
}
