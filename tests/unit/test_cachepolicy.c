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
	"    - { tables: [carts, cart_items], key: id }\n"      /* 4: rows by id */
	"  invalidate:\n"
	"    - { table: orders, also: [order_totals, \"audit.log\"] }\n";

static CacheDecision decide_path(const char *search_path, const char *sql)
{
	CacheDecision d;
	RouteResult r;
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	const ConfigDatabase *db = config_find_database(cfg, "app");
	router_route(cfg, db, search_path, "alice", a, &r);
	cachepolicy_decide(cfg, search_path, "alice", a, NULL, &r, &d);
	sqlclass_release(a);
	return d;
}

static CacheDecision decide(const char *sql) { return decide_path(NULL, sql); }

/* A decision with Bind values: text (binary false) or binary values of the given types. */
static CacheDecision decide_params(const char *sql, size_t n, const char *const *values, const uint32_t *lens,
				   const bool *binary, const uint32_t *types)
{
	CacheDecision d;
	RouteResult r;
	ProtoBindValues p = {.n = n};
	for (size_t i = 0; i < n; i++) {
		p.values[i] = (const uint8_t *)values[i];
		p.lens[i] = values[i] ? (lens ? lens[i] : (uint32_t)strlen(values[i])) : 0;
		p.binary[i] = binary && binary[i];
		p.types[i] = types ? types[i] : 0;
	}
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	router_route(cfg, config_find_database(cfg, "app"), NULL, "alice", a, &r);
	cachepolicy_decide(cfg, NULL, "alice", a, &p, &r, &d);
	sqlclass_release(a);
	return d;
}

/* The bucket "/=B" of schema.table among deps, or "" when the table is not read by key. */
static const char *bucket_of(const CacheTable *t, size_t n, const char *schema, const char *table)
{
	static char buf[8][80];
	static int next;
	char *out = buf[next++ % 8];
	out[0] = 0;
	size_t tl = strlen(table);
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].schema, schema) == 0 && strncmp(t[i].name, table, tl) == 0 &&
		    strncmp(t[i].name + tl, "/=", 2) == 0)
			snprintf(out, 80, "%s", t[i].name + tl);
	return out;
}

static CacheWrites writes_path(const char *search_path, const char *sql)
{
	CacheWrites w;
	memset(&w, 0, sizeof w);
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	cachepolicy_writes(cfg, search_path, "alice", a, NULL, false, &w);
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
	/* tables without a key: no row versions */
	w = writes("UPDATE shop.items SET x = 1 WHERE id = 2");
	CHECK_INT(w.n, 1);
}

TEST(row_keys)
{
	/* a read by key depends on its bucket and on unkeyed writes, not on the table */
	CacheDecision d = decide("SELECT * FROM shop.carts WHERE id = 5");
	CHECK(d.cacheable);
	CHECK_INT(d.n_deps, 2);
	char b5[80], b5_name[96];
	snprintf(b5, sizeof b5, "%s", bucket_of(d.deps, d.n_deps, "shop", "carts"));
	snprintf(b5_name, sizeof b5_name, "carts%s", b5);
	CHECK(*b5);
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts/#"));
	CHECK(!has_dep(d.deps, d.n_deps, "shop", "carts"));
	/* spellings PostgreSQL reads as one key are one bucket */
	const char *same[] = {"SELECT * FROM shop.carts WHERE id = '05'", "SELECT * FROM shop.carts WHERE id = ' +5 '::int8",
			      "SELECT * FROM shop.carts c WHERE c.id = ('0' || 5)::int4", "SELECT * FROM shop.carts WHERE id = $1"};
	for (size_t i = 0; i < 3; i++) {
		d = decide(same[i]);
		CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), b5);
	}
	const char *five = "5", *bin4 = "\0\0\0\5", *bin8 = "\0\0\0\0\0\0\0\5";
	d = decide_params(same[3], 1, &five, NULL, NULL, NULL);
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), b5);
	d = decide_params(same[3], 1, &bin4, (uint32_t[]){4}, (bool[]){true}, (uint32_t[]){23});
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), b5);
	d = decide_params(same[3], 1, &bin8, (uint32_t[]){8}, (bool[]){true}, (uint32_t[]){20});
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), b5);
	/* uuids in any spelling */
	d = decide("SELECT * FROM shop.carts WHERE id = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'");
	char bu[80];
	snprintf(bu, sizeof bu, "%s", bucket_of(d.deps, d.n_deps, "shop", "carts"));
	CHECK(*bu);
	d = decide("SELECT * FROM shop.carts WHERE id = '{a0eebc999c0b4ef8bb6d6bb9bd380a11}'::uuid");
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), bu);
	const char *uuid_bin = "\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11";
	d = decide_params(same[3], 1, &uuid_bin, (uint32_t[]){16}, (bool[]){true}, (uint32_t[]){2950});
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), bu);
	/* values that could be spelled otherwise, unknown or NULL parameters: by table */
	const char *dec = "5.0", *date = "\0\0\0\5";
	d = decide_params(same[3], 1, &dec, NULL, NULL, NULL);
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts"));
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "carts"), "");
	d = decide_params(same[3], 1, &date, (uint32_t[]){4}, (bool[]){true}, (uint32_t[]){1082});
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts"));
	d = decide(same[3]); /* no values */
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts"));
	const char *null = NULL;
	d = decide_params(same[3], 1, &null, NULL, NULL, NULL);
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts"));
	d = decide("SELECT * FROM shop.carts WHERE sku = 'x'"); /* not the key column */
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts"));
	/* unqualified: per schema of the path */
	d = decide_path("shop, public", "SELECT * FROM carts WHERE id = 5");
	CHECK_INT(d.n_deps, 4);
	CHECK_STR(bucket_of(d.deps, d.n_deps, "public", "carts"), b5);
	CHECK(has_dep(d.deps, d.n_deps, "public", "carts/#"));
	/* a join: each table by its own key */
	d = decide("SELECT * FROM shop.carts c JOIN shop.cart_items i ON i.id = c.id WHERE c.id = 5");
	CHECK_STR(bucket_of(d.deps, d.n_deps, "shop", "cart_items"), b5);

	/* writes by key bump the table and the bucket */
	CacheWrites w = writes("UPDATE shop.carts SET total = 1 WHERE id = 5");
	CHECK_INT(w.n, 2);
	CHECK(has_dep(w.tables, w.n, "shop", "carts"));
	CHECK(has_dep(w.tables, w.n, "shop", b5_name));
	w = writes("DELETE FROM shop.carts WHERE id = '0005'");
	CHECK(has_dep(w.tables, w.n, "shop", b5_name));
	w = writes("INSERT INTO shop.carts (id, total) VALUES (5, 1), (6, 2)");
	CHECK_INT(w.n, 3);
	CHECK(has_dep(w.tables, w.n, "shop", b5_name));
	/* other writes: all rows */
	const char *unkeyed[] = {"UPDATE shop.carts SET id = 6 WHERE id = 5", "UPDATE shop.carts SET total = 0",
				 "INSERT INTO shop.carts (total) VALUES (1)", "UPDATE shop.carts SET x = 1 WHERE id = 5.0",
				 "INSERT INTO shop.carts (id) VALUES (5) ON CONFLICT (id) DO UPDATE SET x = 1"};
	for (size_t i = 0; i < sizeof unkeyed / sizeof unkeyed[0]; i++) {
		w = writes(unkeyed[i]);
		if (!has_dep(w.tables, w.n, "shop", "carts/#") || w.n != 2)
			UNIT_FAIL("%s: expected shop.carts and shop.carts/# (%zu tables)", unkeyed[i], w.n);
	}
	/* many rows in one transaction: all rows of the table, not everything of the service */
	memset(&w, 0, sizeof w);
	for (int i = 0; i < 40; i++) {
		char sql[80];
		snprintf(sql, sizeof sql, "UPDATE shop.carts SET total = 1 WHERE id = %d", i + 1);
		SqlAnalysis *x = sqlclass_analyze(&cache, sql, strlen(sql));
		cachepolicy_writes(cfg, NULL, "alice", x, NULL, false, &w);
		sqlclass_release(x);
	}
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "shop", "carts/#"));
	w = writes("INSERT INTO shop.carts (id) VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9)");
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "shop", "carts/#"));
	/* a Parse of a write by parameter leaves it for the Binds */
	const char *upd = "UPDATE shop.carts SET total = $2 WHERE id = $1";
	SqlAnalysis *a = sqlclass_analyze(&cache, upd, strlen(upd));
	memset(&w, 0, sizeof w);
	CHECK(cachepolicy_writes(cfg, NULL, "alice", a, NULL, true, &w));
	CHECK_INT(w.n, 0);
	ProtoBindValues p = {.n = 2, .values = {(const uint8_t *)"5", (const uint8_t *)"1"}, .lens = {1, 1}};
	CHECK(!cachepolicy_writes(cfg, NULL, "alice", a, &p, false, &w));
	CHECK_INT(w.n, 2);
	CHECK(has_dep(w.tables, w.n, "shop", b5_name));
	memset(&w, 0, sizeof w);
	CHECK(!cachepolicy_writes(cfg, NULL, "alice", a, NULL, false, &w)); /* values unknown: all rows */
	CHECK(has_dep(w.tables, w.n, "shop", "carts/#"));
	sqlclass_release(a);
}

int main(void)
{
	cfg = unit_config(yaml);
	sqlclass_cache_init(&cache, 1000);
	RUN(rules_and_ttl);
	RUN(search_path_dependencies);
	RUN(not_cacheable_statements);
	RUN(hints);
	RUN(write_invalidation);
	RUN(row_keys);
	sqlclass_cache_free(&cache);
	config_unref(cfg);
	return unit_summary();
}
