/*
 * test_pgasync — the libpq driver on a libevent loop against a fake server on the same loop (a
 * listening socket speaking just enough of the protocol: trust login, one-row answers): connect,
 * results in order then done, a second query on the same connection, two results of one text, a
 * query timeout, a reconnect with the same parameters, a server that hangs up mid-query, a refused connection, a connect timeout,
 * failures found inside a call reported from the loop (and dropped by a close), freeing from
 * inside callbacks, calls in the wrong phase.
 */
#include "pgasync.h"
#include "unit.h"

#include <event2/event.h>

#include "log.h"

static struct event_base *base;

#include "fake_pg.h"

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
	fake_start(&f, base, true);
	Owner o = {0};
	o.pa = pgasync_new(base, NULL, "test", &handler, &o);
	CHECK(pgasync_phase(o.pa) == PGASYNC_CLOSED);
	CHECK(!pgasync_query(o.pa, "SELECT 1", 0)); /* not connected */
	CHECK(!pgasync_reconnect(o.pa, 0));         /* never connected: no parameters */
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
	fake_start(&f, base, true);
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
	/* connect again on the same handle, with the same parameters; the server hangs up during the query */
	o.in_api = true;
	CHECK(pgasync_reconnect(o.pa, 2000));
	o.in_api = false;
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
	fake_start(&closed, base, false);
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
	fake_start(&silent, base, true);
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
	fake_start(&f, base, true);
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
