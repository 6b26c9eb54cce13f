/*
 * test_cachepolicy — what the result cache may cache (rules, globs, search_path, hints, functions,
 * clock values, catalogs, locking, multi-statement texts), the table versions a result depends on,
 * and what a write invalidates (DML, dependents from cache.invalidate, DDL, TRUNCATE, functions).
 */
#include "cachepolicy.h"
#include "unit.h"

#include <stdlib.h>

static Config *cfg;
static SqlCache cache;

static const char *yaml =
	"databases:\n"
	"  app: { service: main }\n"
	"services:\n"
	"  main:\n"
	"    primary: { host: m1 }\n"
	"    functions: { read_only: [my_lookup], writes: [bump] }\n"
	"routes:\n"
	"  - { schema: users, service: main }\n"
	"cache:\n"
	"  ttl: 2m\n"
	"  rules:\n"
	"    - { tables: [products, \"categor*\"], ttl: 5m }\n" /* 0 */
	"    - { schema: users, ttl: 30s }\n"                    /* 1 */
	"    - { tables: [secrets], ttl: 0 }\n"                  /* 2 */
	"    - { tables: [\"shop.items\"] }\n"                   /* 3: default ttl */
	"  invalidate:\n"
	"    - { table: orders, also: [order_totals, \"audit.log\"] }\n";

static CacheDecision decide_path(const char *search_path, const char *sql)
{
	CacheDecision d;
	RouteResult r;
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	const ConfigDatabase *db = config_find_database(cfg, "app");
	router_route(cfg, db, search_path, "alice", a, &r);
	cachepolicy_decide(cfg, search_path, "alice", a, &r, sql, strlen(sql), &d);
	sqlclass_release(a);
	return d;
}

static CacheDecision decide(const char *sql) { return decide_path(NULL, sql); }

static CacheWrites writes_path(const char *search_path, const char *sql)
{
	CacheWrites w;
	memset(&w, 0, sizeof w);
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	cachepolicy_writes(cfg, search_path, "alice", a, &w);
	sqlclass_release(a);
	return w;
}

static CacheWrites writes(const char *sql) { return writes_path(NULL, sql); }

static bool has_dep(const CacheTable *t, size_t n, const char *schema, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].schema, schema) == 0 && strcmp(t[i].name, name) == 0)
			return true;
	return false;
}

TEST(rules_and_ttl)
{
	CacheDecision d = decide("SELECT * FROM products WHERE id = $1");
	CHECK(d.cacheable);
	CHECK_INT(d.ttl_ms, 5 * 60 * 1000);
	CHECK_INT(cachepolicy_rule_index(cfg, d.rule), 0);
	d = decide("SELECT * FROM users.profiles p JOIN categories c ON true");
	CHECK(d.cacheable);
	CHECK_INT(d.ttl_ms, 30 * 1000); /* the smallest of the rules */
	CHECK_INT(cachepolicy_rule_index(cfg, d.rule), 1);
	d = decide("SELECT * FROM shop.items");
	CHECK(d.cacheable);
	CHECK_INT(d.ttl_ms, 2 * 60 * 1000);
	d = decide("SELECT * FROM items"); /* "shop.items" needs the schema */
	CHECK(!d.cacheable);
	CHECK_CONTAINS(d.why_not, "no cache rule covers items");
	d = decide("SELECT * FROM products JOIN orders ON true");
	CHECK(!d.cacheable);
	CHECK_CONTAINS(d.why_not, "no cache rule covers orders");
	d = decide("SELECT * FROM secrets");
	CHECK(!d.cacheable);
	CHECK_CONTAINS(d.why_not, "ttl 0");
}

TEST(search_path_dependencies)
{
	CacheDecision d = decide_path("users, public", "SELECT * FROM profiles");
	CHECK(d.cacheable); /* users.profiles matches the schema rule */
	CHECK_INT(d.n_deps, 2);
	CHECK(has_dep(d.deps, d.n_deps, "users", "profiles"));
	CHECK(has_dep(d.deps, d.n_deps, "public", "profiles"));
	d = decide_path("\"$user\", public", "SELECT * FROM products");
	CHECK(d.cacheable);
	CHECK(has_dep(d.deps, d.n_deps, "alice", "products"));
	CHECK(has_dep(d.deps, d.n_deps, "public", "products"));
	d = decide("SELECT * FROM public.products");
	CHECK_INT(d.n_deps, 1);
	CHECK(has_dep(d.deps, d.n_deps, "public", "products"));
	d = decide_path("\"\"", "SELECT * FROM products");
	CHECK(!d.cacheable);
}

TEST(not_cacheable_statements)
{
	struct {
		const char *sql, *why;
	} cases[] = {
		{"SELECT * FROM products FOR UPDATE", "locking clause"},
		{"SELECT now(), * FROM products", "now()"},
		{"SELECT random() FROM products", "random()"},
		{"SELECT current_timestamp FROM products", "clock"},
		{"SELECT * FROM products WHERE d > CURRENT_DATE", "clock"},
		{"SELECT nextval('s') FROM products", "nextval()"},
		{"SELECT my_lookup(id) FROM products", "unknown volatility"},
		{"SELECT bump(id) FROM products", "may write"},
		{"SELECT pg_relation_size('products') FROM products", "pg_relation_size()"},
		{"SELECT * FROM pg_class", "system catalog"},
		{"SELECT * FROM products, pg_catalog.pg_class", "system catalog"},
		{"SELECT 1", "reads no table"},
		{"SELECT * FROM products; SELECT 1", "more than one statement"},
		{"INSERT INTO products VALUES (1)", "not a SELECT"},
		{"SELECT * INTO t2 FROM products", "not a SELECT"},
		{"SELECT * FROM products /* pgrelay:nocache */", "pgrelay:nocache"},
		{"SELEKT 1", "cannot parse"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CacheDecision d = decide(cases[i].sql);
		if (d.cacheable)
			UNIT_FAIL("cacheable: %s", cases[i].sql);
		CHECK_CONTAINS(d.why_not, cases[i].why);
	}
	/* immutable built-ins are fine */
	CHECK(decide("SELECT lower(name), count(*), coalesce(x, 1) FROM products GROUP BY 1").cacheable);
	CHECK(decide("SELECT * FROM products WHERE id IN (SELECT id FROM categories)").cacheable);
	CHECK(decide("SELECT current_user, * FROM products").cacheable); /* the role is in the key */
}

TEST(hints)
{
	CacheDecision d = decide("/* pgrelay:cache ttl=7s */ SELECT * FROM orders");
	CHECK(d.cacheable);
	CHECK(d.hinted);
	CHECK_INT(d.ttl_ms, 7000);
	d = decide("SELECT * FROM products /* pgrelay:cache ttl=1m */");
	CHECK_INT(d.ttl_ms, 60000);
	d = decide("/* pgrelay:cache ttl=7s */ SELECT now() FROM orders");
	CHECK(!d.cacheable); /* a hint does not make the clock cacheable */
}

TEST(write_invalidation)
{
	CacheWrites w = writes("UPDATE products SET price = 1 WHERE id = 2");
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "alice", "products"));
	CHECK(has_dep(w.tables, w.n, "public", "products"));
	w = writes("INSERT INTO shop.items SELECT * FROM staging.items");
	CHECK(has_dep(w.tables, w.n, "shop", "items"));
	w = writes("WITH d AS (DELETE FROM users.profiles RETURNING *) SELECT * FROM d");
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "users", "profiles"));
	w = writes("DELETE FROM shop.orders WHERE id = 1");
	CHECK(has_dep(w.tables, w.n, "shop", "orders"));
	CHECK(has_dep(w.tables, w.n, "shop", "order_totals")); /* cache.invalidate, same schema */
	CHECK(has_dep(w.tables, w.n, "audit", "log"));
	w = writes("SELECT nextval('s'), pg_advisory_lock(1)");
	CHECK(!w.all);
	CHECK_INT(w.n, 0);
	CHECK(writes("SELECT bump(1)").all);
	CHECK(writes("ALTER TABLE products ADD COLUMN x int").all);
	CHECK(writes("TRUNCATE products").all);
	CHECK(writes("CALL p()").all);
	CHECK(writes("EXECUTE s(1)").all);
	CHECK(writes("SELEKT").all);
	CHECK(writes("COMMIT PREPARED 'tx1'").all);
	CHECK(!writes("PREPARE TRANSACTION 'tx1'").all);
	w = writes("SELECT * FROM products; BEGIN; COMMIT; SET x = 1");
	CHECK(!w.all);
	CHECK_INT(w.n, 0);
	w = writes_path("\"\"", "UPDATE products SET x = 1");
	CHECK(w.all);
}

int main(void)
{
	char err[4096];
	cfg = config_load_string("t.yaml", yaml, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	sqlclass_cache_init(&cache, 1000);
	RUN(rules_and_ttl);
	RUN(search_path_dependencies);
	RUN(not_cacheable_statements);
	RUN(hints);
	RUN(write_invalidation);
	sqlclass_cache_free(&cache);
	config_unref(cfg);
	return unit_summary();
}
