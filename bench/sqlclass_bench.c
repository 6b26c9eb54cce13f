/*
 * sqlclass_bench — what statement analysis (sqlclass) and routing (router) cost per statement.
 *
 *   ninja -C build && build/sqlclass_bench [N]      (N iterations per text, default 20000)
 *
 * For each of a few typical texts it analyzes the text N times without a cache (limit 0: parse,
 * JSON decode, walk every time), N times through a warm cache (hash + compare of the text), and
 * routes the analysis N times with a small rule set, and runs the prefilter that decides whether a
 * text needs analysis at all in transaction pooling (sqlclass_might_matter) N times. Prints
 * microseconds per text and per statement (the prefilter: per text). Single-threaded, CLOCK_MONOTONIC; run it on a quiet machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "router.h"
#include "sqlclass.h"

static const struct {
	const char *name;
	const char *sql;
} texts[] = {
	{"point SELECT", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
	{"3-way join + CTE",
	 "WITH recent AS (SELECT id, user_id FROM orders WHERE created_at > now() - interval '1 day') "
	 "SELECT u.name, r.id, count(i.*) FROM recent r JOIN users u ON u.id = r.user_id "
	 "JOIN order_items i ON i.order_id = r.id GROUP BY u.name, r.id ORDER BY 3 DESC LIMIT 10"},
	{"INSERT ... SELECT",
	 "INSERT INTO order_archive (id, user_id, total) SELECT o.id, o.user_id, o.total FROM orders o "
	 "JOIN order_items i ON i.order_id = o.id WHERE o.created_at < $1 ON CONFLICT (id) DO NOTHING"},
	{"5-statement string",
	 "BEGIN; UPDATE pgbench_accounts SET abalance = abalance + 10 WHERE aid = 1; "
	 "SELECT abalance FROM pgbench_accounts WHERE aid = 1; "
	 "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 10, CURRENT_TIMESTAMP); "
	 "COMMIT"},
};

static const char *yaml = "databases: { app: { service: main } }\n"
			  "services:\n"
			  "  main: { primary: { host: p1 }, replicas: [ { host: r1 } ], reads: replicas }\n"
			  "  orders: { primary: { host: p2 } }\n"
			  "routes:\n"
			  "  - { schema: billing, service: orders }\n"
			  "  - { tables: [orders, \"order_*\"], service: orders }\n"
			  "  - { tables: [\"user*\", \"pgbench_*\"], service: main, reads: replicas }\n";

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	if (n <= 0) {
		fprintf(stderr, "usage: sqlclass_bench [N]\n");
		return 2;
	}
	char err[2048];
	Config *cfg = config_load_string("bench.yaml", yaml, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	const ConfigDatabase *db = config_find_database(cfg, "app");

	printf("sqlclass_bench: %ld iterations per text; microseconds per text (per statement)\n\n", n);
	printf("%-20s %5s %18s %18s %18s %10s\n", "text", "stmts", "no cache", "cache hit", "router_route",
	       "prefilter");
	for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
		const char *sql = texts[t].sql;
		size_t len = strlen(sql);
		SqlCache none, warm;
		sqlclass_cache_init(&none, 0);
		sqlclass_cache_init(&warm, 1000);

		SqlAnalysis *a = sqlclass_analyze(&none, sql, len);
		size_t stmts = a->n_statements;
		if (a->parse_error) {
			fprintf(stderr, "%s does not parse\n", texts[t].name);
			return 1;
		}
		sqlclass_release(a);

		double t0 = now_us();
		for (long i = 0; i < n; i++)
			sqlclass_release(sqlclass_analyze(&none, sql, len));
		double cold = (now_us() - t0) / (double)n;

		sqlclass_release(sqlclass_analyze(&warm, sql, len)); /* the one miss */
		t0 = now_us();
		for (long i = 0; i < n; i++)
			sqlclass_release(sqlclass_analyze(&warm, sql, len));
		double hit = (now_us() - t0) / (double)n;

		a = sqlclass_analyze(&warm, sql, len);
		RouteResult r;
		volatile bool sink = false;
		t0 = now_us();
		for (long i = 0; i < n; i++) {
			router_route(cfg, db, NULL, "app", a, &r);
			sink = sink ^ r.use_replica;
		}
		double routed = (now_us() - t0) / (double)n;
		sqlclass_release(a);

		t0 = now_us();
		for (long i = 0; i < n; i++)
			sink = sink ^ sqlclass_might_matter(sql, len);
		double prefilter = (now_us() - t0) / (double)n;

		char c1[32], c2[32], c3[32];
		snprintf(c1, sizeof c1, "%.2f (%.2f)", cold, cold / (double)stmts);
		snprintf(c2, sizeof c2, "%.3f (%.3f)", hit, hit / (double)stmts);
		snprintf(c3, sizeof c3, "%.3f (%.3f)", routed, routed / (double)stmts);
		printf("%-20s %5zu %18s %18s %18s %10.3f\n", texts[t].name, stmts, c1, c2, c3, prefilter);
		if (warm.misses != 1 || warm.hits != (uint64_t)n + 1)
			fprintf(stderr, "unexpected cache counts: %llu misses, %llu hits\n",
				(unsigned long long)warm.misses, (unsigned long long)warm.hits);
		sqlclass_cache_free(&none);
		sqlclass_cache_free(&warm);
	}
	config_unref(cfg);
	return 0;
}
