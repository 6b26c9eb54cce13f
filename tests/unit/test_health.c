/* Unit tests for health: the pg_lsn parser (health_parse_lsn), the API on an empty event loop, and
 * probes against a refused port, a silent listener and a fake server (tests/unit/fake_pg.h). */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "unit.h"

#include "fake_pg.h"

TEST(lsn_parse_valid)
{
	uint64_t v = 1;
	CHECK(health_parse_lsn("0/0", &v));
	CHECK(v == 0);
	CHECK(health_parse_lsn("0/3000148", &v));
	CHECK(v == 0x3000148ULL);
	CHECK(health_parse_lsn("16/B374D848", &v));
	CHECK(v == ((0x16ULL << 32) | 0xB374D848ULL));
	CHECK(health_parse_lsn("ffffffff/ffffffff", &v));
	CHECK(v == UINT64_MAX);
	CHECK(health_parse_lsn("A/b", &v));
	CHECK(v == ((0xAULL << 32) | 0xBULL));
	/* Differences in bytes, as the checker computes lag. */
	uint64_t a, b;
	CHECK(health_parse_lsn("1/0", &a) && health_parse_lsn("0/FFFF0000", &b));
	CHECK_INT(a - b, 0x10000);
}

TEST(lsn_parse_invalid)
{
	uint64_t v = 42;
	CHECK(!health_parse_lsn(NULL, &v));
	CHECK(!health_parse_lsn("", &v));
	CHECK(!health_parse_lsn("/", &v));
	CHECK(!health_parse_lsn("0/", &v));
	CHECK(!health_parse_lsn("/0", &v));
	CHECK(!health_parse_lsn("3000148", &v));
	CHECK(!health_parse_lsn("1/2/3", &v));
	CHECK(!health_parse_lsn("0x1/2", &v));
	CHECK(!health_parse_lsn("g/1", &v));
	CHECK(!health_parse_lsn(" 1/2", &v));
	CHECK(!health_parse_lsn("1/2 ", &v));
	CHECK(!health_parse_lsn("-1/2", &v));
	CHECK(!health_parse_lsn("100000000/0", &v)); /* 9 hex digits overflow 32 bits */
	CHECK(!health_parse_lsn("0/100000000", &v));
	CHECK(v == 42); /* untouched on failure */
}

/* Backends are listed in configuration order; lookups by (service, index); a backend without a
 * user is never checked and stays up. Nothing connects: no user anywhere. */
TEST(api_without_users)
{
	char err[2048];
	Config *cfg = config_load_string("t.yaml",
		"users: [{name: u, password: p}]\n"
		"databases: {d: {service: s}}\n"
		"services:\n"
		"  s:\n"
		"    primary: {host: 127.0.0.1, port: 1, dbname: x}\n"
		"    replicas: [{host: 127.0.0.1, port: 2}, {host: 127.0.0.1, port: 3}]\n",
		err, sizeof err);
	if (!cfg)
		fprintf(stderr, "%s\n", err);
	REQUIRE(cfg != NULL);
	struct event_base *base = event_base_new();
	REQUIRE(base != NULL);
	HealthChecker *h = health_start(base, cfg);
	CHECK_INT(health_count(h), 3);
	BackendHealth *p = health_backend(h, "s", -1);
	BackendHealth *r0 = health_backend(h, "s", 0);
	BackendHealth *r1 = health_backend(h, "s", 1);
	REQUIRE(p && r0 && r1);
	CHECK(health_backend(h, "s", 2) == NULL);
	CHECK(health_backend(h, "nope", -1) == NULL);
	CHECK(health_at(h, 0) == p);
	CHECK(health_at(h, 1) == r0);
	CHECK(health_at(h, 2) == r1);
	CHECK(health_at(h, 3) == NULL);
	CHECK_STR(p->label, "s primary 127.0.0.1:1");
	CHECK_STR(r0->label, "s replica 1 127.0.0.1:2");
	CHECK(p->unchecked && p->up && !p->in_recovery);
	CHECK(health_replica_usable(r0));
	CHECK(!health_replica_usable(p)); /* not in recovery */
	r0->lagging = true;
	CHECK(!health_replica_usable(r0));
	r0->lagging = false;
	r0->outstanding = 3;

	/* Reload: replica 2 removed; replica 1 stays with its state and its pointer. */
	Config *cfg2 = config_load_string("t.yaml",
		"users: [{name: u, password: p}]\n"
		"databases: {d: {service: s}}\n"
		"services:\n"
		"  s:\n"
		"    primary: {host: 127.0.0.1, port: 1, dbname: x}\n"
		"    replicas: [{host: 127.0.0.1, port: 2}]\n",
		err, sizeof err);
	REQUIRE(cfg2 != NULL);
	health_reconfigure(h, cfg2);
	CHECK_INT(health_count(h), 2);
	CHECK(health_backend(h, "s", 0) == r0);
	CHECK_INT(r0->outstanding, 3);
	CHECK(health_backend(h, "s", 1) == NULL);
	CHECK(r1->removed && !r1->up && !health_replica_usable(r1)); /* still readable memory */
	event_base_loop(base, EVLOOP_NONBLOCK);
	health_stop(h);
	health_stop(NULL);
	event_base_free(base);
	config_unref(cfg);
	config_unref(cfg2);
}

/* A socket that listens but never answers: connections complete, nothing is ever said. */
static int silent_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

static void run_loop_ms(struct event_base *base, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* Real probes without a server: a refused port goes down after fail_after failures; a server that
 * never answers fails by timeout; both keep the optimistic "up" until then. */
TEST(failures_and_timeouts)
{
	int port = 0;
	int lfd = silent_listener(&port);
	REQUIRE(lfd >= 0);
	/* A port nothing listens on: bind one, close it. */
	int closed_port = 0;
	int cfd = silent_listener(&closed_port);
	REQUIRE(cfd >= 0);
	close(cfd);
	char yaml[1024], err[2048];
	snprintf(yaml, sizeof yaml,
		 "users: [{name: u, password: p}]\n"
		 "databases: {d: {service: s}}\n"
		 "health: {interval: 100ms, timeout: 150ms, fail_after: 2, recover_after: 1}\n"
		 "services:\n"
		 "  s:\n"
		 "    primary: {host: 127.0.0.1, port: %d, dbname: x, user: u, password: hush-hush}\n"
		 "    replicas: [{host: 127.0.0.1, port: %d}]\n"
		 "    tls: {mode: disable}\n",
		 closed_port, port);
	Config *cfg = config_load_string("t.yaml", yaml, err, sizeof err);
	if (!cfg)
		fprintf(stderr, "%s\n", err);
	REQUIRE(cfg != NULL);
	struct event_base *base = event_base_new();
	REQUIRE(base != NULL);
	HealthChecker *h = health_start(base, cfg);
	BackendHealth *p = health_backend(h, "s", -1), *r = health_backend(h, "s", 0);
	REQUIRE(p && r);
	CHECK(p->up && r->up && !p->unchecked);
	/* First probe starts at once; the refused one fails at the first loop pass. */
	run_loop_ms(base, 50);
	CHECK(p->up);
	CHECK_INT(p->consecutive_failures, 1);
	CHECK_CONTAINS(p->last_error, "refused");
	CHECK(r->up);
	CHECK_INT(r->checks, 0); /* still waiting for an answer */
	run_loop_ms(base, 600);
	CHECK(!p->up);
	CHECK(p->consecutive_failures >= 2);
	CHECK(!r->up);
	CHECK(r->errors >= 2);
	CHECK_CONTAINS(r->last_error, "no answer within 150 ms");
	CHECK(r->last_check_ms > 0);
	CHECK(!health_replica_usable(r));
	health_stop(h);
	event_base_free(base);
	config_unref(cfg);
	close(lfd);
}

/* Probes against a fake server: the answer is read (up, LSN, in recovery); one connection kept open
 * across probes; a kept-open connection the server closed is replaced within the probe without a
 * failure; a server that logs in and then never answers fails by the probe's timeout. */
TEST(probes_on_a_kept_open_connection)
{
	Fake f;
	struct event_base *base = event_base_new();
	REQUIRE(base != NULL);
	fake_start(&f, base, true);
	static const char *const row[] = {"t", "16/B374D848", "0.5"};
	f.row = row;
	f.ncols = 3;
	char yaml[1024], err[2048];
	snprintf(yaml, sizeof yaml,
		 "users: [{name: u, password: p}]\n"
		 "databases: {d: {service: s}}\n"
		 "health: {interval: 100ms, timeout: 200ms, fail_after: 1, recover_after: 1}\n"
		 "services:\n"
		 "  s:\n"
		 "    primary: {host: 127.0.0.1, port: 1, dbname: x}\n"
		 "    replicas: [{host: 127.0.0.1, port: %d, user: u, password: p}]\n"
		 "    tls: {mode: disable}\n",
		 f.port);
	Config *cfg = config_load_string("t.yaml", yaml, err, sizeof err);
	if (!cfg)
		fprintf(stderr, "%s\n", err);
	REQUIRE(cfg != NULL);
	HealthChecker *h = health_start(base, cfg);
	BackendHealth *r = health_backend(h, "s", 0);
	REQUIRE(r != NULL);
	run_loop_ms(base, 450);
	CHECK(r->up && r->have_result && r->in_recovery);
	CHECK(r->lsn == ((0x16ULL << 32) | 0xB374D848ULL));
	CHECK(r->lag_seconds > 0.4 && r->lag_seconds < 0.6);
	CHECK(r->checks >= 2);
	CHECK_INT(r->errors, 0);
	CHECK_INT(f.accepted, 1); /* kept open */
	/* the server drops the connection between probes: replaced, not counted as a failure */
	fake_close_client(&f);
	uint64_t before = r->checks;
	run_loop_ms(base, 300);
	CHECK(r->checks > before);
	CHECK_INT(r->errors, 0);
	CHECK_INT(f.accepted, 2);
	/* logged in, but the probe query is never answered: the probe's deadline */
	f.mute = true;
	run_loop_ms(base, 500);
	CHECK(!r->up);
	CHECK(r->errors >= 1);
	CHECK_CONTAINS(r->last_error, "no answer within 200 ms (waiting for the probe query)");
	health_stop(h);
	fake_stop(&f);
	event_base_free(base);
	config_unref(cfg);
}

int main(void)
{
	RUN(lsn_parse_valid);
	RUN(lsn_parse_invalid);
	RUN(api_without_users);
	RUN(failures_and_timeouts);
	RUN(probes_on_a_kept_open_connection);
	return unit_summary();
}
