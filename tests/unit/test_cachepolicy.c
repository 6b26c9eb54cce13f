/*
 * test_cachepolicy — what the result cache may cache (rules, globs, search_path, hints, functions,
 * clock values, catalogs, locking, multi-statement texts), the table versions a result depends on,
 * and what a write invalidates (DML, dependents from cache.invalidate, DDL, TRUNCATE, functions);
 * with hand-built service catalogs: views (nested, over the clock or user functions), partitions
 * both ways, row security policy tables, foreign-key actions, triggers, relations the catalog does
 * not hold, no catalog at all, the WAL listener's changes.
 */
#include "cachepolicy.h"
#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>

static Config *cfg;
static SqlCache cache;
static Catalog *base_cat; /* every table the older tests name, in every schema they use */

/* ---- hand-built catalogs ---- */

static bool row(CatalogBuilder *b, const char *kind, ...)
{
	const char *cols[8];
	size_t n = 0;
	cols[n++] = kind;
	va_list ap;
	va_start(ap, kind);
	const char *c;
	while (n < 8 && (c = va_arg(ap, const char *)) != NULL)
		cols[n++] = strcmp(c, "<null>") == 0 ? NULL : c;
	va_end(ap);
	char err[256];
	bool ok = catalog_builder_row(b, cols, n, err, sizeof err);
	if (!ok)
		fprintf(stderr, "    (row refused: %s)\n", err);
	return ok;
}

static const char *num(unsigned v)
{
	static char buf[64][16];
	static int i;
	char *p = buf[i++ % 64];
	snprintf(p, 16, "%u", v);
	return p;
}

static void rel(CatalogBuilder *b, unsigned oid, const char *schema, const char *name, const char *kind)
{
	CHECK(row(b, "rel", num(oid), schema, name, kind, "f", NULL));
}

static Catalog *finish(CatalogBuilder *b)
{
	char err[256] = "";
	Catalog *c = catalog_builder_finish(b, err, sizeof err);
	if (!c)
		fprintf(stderr, "    (finish failed: %s)\n", err);
	return c;
}

static Catalog *make_base_catalog(void)
{
	static const char *const schemas[] = {"public", "alice", "users", "shop"};
	static const char *const tables[] = {"products", "categories", "orders", "secrets", "items", "carts",
					     "cart_items", "profiles", "order_totals", "log", "t"};
	CatalogBuilder *b = catalog_builder_new();
	unsigned oid = 20000;
	for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++)
		for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
			rel(b, oid++, schemas[s], tables[t], "r");
	rel(b, oid++, "audit", "log", "r");
	return finish(b);
}

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

/* The decision with catalog cat (NULL: none loaded). */
static CacheDecision decide_cat(const Catalog *cat, const char *search_path, const char *sql)
{
	CacheDecision d;
	RouteResult r;
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	const ConfigDatabase *db = config_find_database(cfg, "app");
	router_route(cfg, db, search_path, "alice", a, &r);
	cachepolicy_decide(cfg, cat, search_path, "alice", a, NULL, &r, &d);
	sqlclass_release(a);
	return d;
}

static CacheDecision decide_path(const char *search_path, const char *sql)
{
	return decide_cat(base_cat, search_path, sql);
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
	cachepolicy_decide(cfg, base_cat, NULL, "alice", a, &p, &r, &d);
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
	CHECK(!has_dep(w.tables, w.n, "staging", "items")); /* only read */
	CHECK_INT(w.n, 1);
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
	CHECK(writes("ALTER TABLE products ADD COLUMN x int").ddl);
	CHECK(!writes("SELECT bump(1)").ddl);
	w = writes("TRUNCATE products"); /* what it cascades to: the catalog's effects, at commit */
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "public", "products"));
	CHECK(writes("CALL p()").all);
	CHECK(writes("EXECUTE s(1)").all);
	CHECK(writes("SELEKT").all);
	CHECK(writes("COMMIT PREPARED 'tx1'").all);
	CHECK(writes("DO $$BEGIN NULL; END$$").ddl); /* DO blocks run migrations */
	CHECK(!writes("CALL p()").ddl);
	w = writes("SELECT * INTO shop.copy FROM shop.items");
	CHECK(w.all && w.ddl);
	w = writes("LOCK TABLE shop.items");
	CHECK(!w.all);
	CHECK_INT(w.n, 0);
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


/* ---- with a service catalog ---- */

static Catalog *shapes; /* see make_shapes */

static Catalog *make_shapes(void)
{
	CatalogBuilder *b = catalog_builder_new();
	/* views: v2 reads v1 (which reads base) and other */
	rel(b, 100, "users", "base", "r");
	rel(b, 101, "users", "v1", "v");
	rel(b, 102, "users", "v2", "v");
	rel(b, 103, "users", "other", "r");
	CHECK(row(b, "vrel", "101", "100", "<null>", NULL));
	CHECK(row(b, "vrel", "102", "101", "<null>", NULL));
	CHECK(row(b, "vrel", "102", "103", "<null>", NULL));
	/* views a result of which is never cached */
	rel(b, 104, "users", "vnow", "v");
	CHECK(row(b, "vrel", "104", "100", "<null>", NULL));
	CHECK(row(b, "vfn", "104", "1299", "s", "pg_catalog.now", NULL));
	rel(b, 105, "users", "vuser", "v");
	CHECK(row(b, "vfn", "105", "16400", "i", "users.f", NULL));
	rel(b, 106, "users", "vclock", "v");
	CHECK(row(b, "vfn", "106", "0", "s", "CURRENT_DATE", NULL));
	/* a partitioned table */
	rel(b, 110, "users", "p", "p");
	rel(b, 111, "users", "p1", "r");
	rel(b, 112, "users", "p2", "r");
	CHECK(row(b, "inh", "111", "110", NULL));
	CHECK(row(b, "inh", "112", "110", NULL));
	/* foreign keys: child ON DELETE CASCADE, child_null ON DELETE SET NULL, child_upd ON UPDATE CASCADE */
	rel(b, 120, "users", "parent", "r");
	rel(b, 121, "users", "child", "r");
	rel(b, 122, "users", "child_null", "r");
	rel(b, 123, "users", "child_upd", "r");
	CHECK(row(b, "fk", "121", "120", "c", "a", "child_fk", NULL));
	CHECK(row(b, "fk", "122", "120", "n", "a", "child_null_fk", NULL));
	CHECK(row(b, "fk", "123", "120", "a", "c", "child_upd_fk", NULL));
	/* a trigger on INSERT (AFTER ROW) */
	rel(b, 130, "users", "trg_t", "r");
	CHECK(row(b, "trg", "130", "5", "O", "count_rows", NULL));
	/* row security: secure's SELECT policy reads acl */
	CHECK(row(b, "rel", "140", "users", "secure", "r", "t", NULL));
	rel(b, 141, "users", "acl", "r");
	CHECK(row(b, "prel", "140", "141", "<null>", NULL));
	/* a foreign table, and a view over it */
	rel(b, 150, "users", "ft", "f");
	rel(b, 151, "users", "vft", "v");
	CHECK(row(b, "vrel", "151", "150", "<null>", NULL));
	/* rows by key: shop.carts (key id), a view over it, a partition of it */
	rel(b, 160, "shop", "carts", "p");
	rel(b, 161, "users", "vcarts", "v");
	CHECK(row(b, "vrel", "161", "160", "<null>", NULL));
	rel(b, 163, "shop", "cart_items", "r");
	CHECK(row(b, "inh", "163", "160", NULL));
	/* a materialized view */
	rel(b, 170, "users", "mv", "m");
	return finish(b);
}

static const char *deps_of(const CacheDecision *d)
{
	static char buf[2048];
	size_t n = 0;
	buf[0] = 0;
	if (!d->cacheable)
		return d->why_not;
	for (size_t i = 0; i < d->n_deps; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s.%s", i ? " " : "", d->deps[i].schema, d->deps[i].name);
	return buf;
}

/* The versions a text's writes bump at commit on a service whose catalog is cat, as
 * "s.t s.u ..." in order, or "all: <why>". */
static const char *bumps(const Catalog *cat, const char *search_path, const char *sql)
{
	static char buf[2048];
	CacheWrites w = writes_path(search_path, sql), x;
	cachepolicy_writes_expand(cfg, cat, &w, &x);
	if (x.all) {
		snprintf(buf, sizeof buf, "all: %s%s%s", x.all_why, x.detail[0] ? ": " : "", x.detail);
		return buf;
	}
	size_t n = 0;
	buf[0] = 0;
	for (size_t i = 0; i < x.n; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s.%s", i ? " " : "", x.tables[i].schema, x.tables[i].name);
	return buf;
}

TEST(catalog_views_and_policies)
{
	CacheDecision d = decide_cat(shapes, NULL, "SELECT * FROM users.v2");
	CHECK_STR(deps_of(&d), "users.v2 users.v1 users.other users.base");
	d = decide_cat(shapes, "users", "SELECT * FROM v1 JOIN other ON true");
	CHECK_STR(deps_of(&d), "users.v1 users.base users.other");
	/* the policy's table */
	d = decide_cat(shapes, NULL, "SELECT * FROM users.secure");
	CHECK_STR(deps_of(&d), "users.secure users.acl");
	/* a materialized view is itself only */
	d = decide_cat(shapes, NULL, "SELECT * FROM users.mv");
	CHECK_STR(deps_of(&d), "users.mv");
	/* a keyed read through a view: the base table by table, not by bucket */
	d = decide_cat(shapes, NULL, "SELECT * FROM users.vcarts WHERE id = 5");
	CHECK_STR(deps_of(&d), "users.vcarts shop.carts");
	d = decide_cat(shapes, NULL, "SELECT * FROM shop.carts c JOIN users.vcarts v ON v.id = c.id WHERE c.id = 5");
	CHECK(d.cacheable);
	CHECK(*bucket_of(d.deps, d.n_deps, "shop", "carts"));
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts/#"));
	CHECK(has_dep(d.deps, d.n_deps, "shop", "carts")); /* through the view */
	/* a partitioned table: the parent only (every write to a partition bumps it) */
	d = decide_cat(shapes, NULL, "SELECT * FROM users.p");
	CHECK_STR(deps_of(&d), "users.p");
	d = decide_cat(shapes, NULL, "SELECT * FROM users.p1");
	CHECK_STR(deps_of(&d), "users.p1");
}

TEST(catalog_not_cacheable)
{
	struct {
		const char *path, *sql, *why;
	} cases[] = {
		{NULL, "SELECT * FROM users.vnow", "reading users.vnow is not cacheable: the view of users.vnow calls pg_catalog.now (stable)"},
		{NULL, "SELECT * FROM users.vuser", "not built-in"},
		{NULL, "SELECT * FROM users.vclock", "reads CURRENT_DATE"},
		{NULL, "SELECT * FROM users.nosuch", "pgrelay cannot resolve relation users.nosuch in service main's catalog"},
		{"nope, users", "SELECT * FROM nosuch", "pgrelay cannot resolve relation nosuch in service main's catalog"},
		{NULL, "SELECT * FROM users.ft", "users.ft, a foreign table"},
		{NULL, "SELECT * FROM users.vft", "reads users.ft, a foreign table"},
		{NULL, "SELECT * FROM users.base JOIN users.nosuch ON true", "cannot resolve relation users.nosuch"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CacheDecision d = decide_cat(shapes, cases[i].path, cases[i].sql);
		if (d.cacheable)
			UNIT_FAIL("cacheable: %s", cases[i].sql);
		CHECK_CONTAINS(d.why_not, cases[i].why);
		CHECK_INT(d.n_deps, 0);
	}
	/* a candidate of the search_path the catalog does not hold is skipped */
	CacheDecision d = decide_cat(shapes, "nope, users", "SELECT * FROM base");
	CHECK_STR(deps_of(&d), "users.base");
	/* no catalog loaded for the service */
	d = decide_cat(NULL, NULL, "SELECT * FROM users.base");
	CHECK(!d.cacheable);
	CHECK_CONTAINS(d.why_not, "no current catalog of service main");
	/* offline (pgrelay route): the names as written, every candidate */
	SqlAnalysis *a = sqlclass_analyze(&cache, "SELECT * FROM v1", 16);
	RouteResult r;
	router_route(cfg, config_find_database(cfg, "app"), "nope, users", "alice", a, &r);
	cachepolicy_decide_offline(cfg, "nope, users", "alice", a, NULL, &r, &d);
	sqlclass_release(a);
	CHECK_STR(deps_of(&d), "nope.v1 users.v1");
}

TEST(catalog_writes)
{
	/* partitions both ways */
	CHECK_STR(bumps(shapes, NULL, "UPDATE users.p1 SET x = 1"), "users.p1 users.p");
	CHECK_STR(bumps(shapes, NULL, "DELETE FROM users.p"), "users.p users.p1 users.p2");
	CHECK_STR(bumps(shapes, NULL, "INSERT INTO users.p VALUES (1)"), "users.p users.p1 users.p2");
	/* foreign keys by kind */
	CHECK_STR(bumps(shapes, NULL, "INSERT INTO users.parent VALUES (1)"), "users.parent");
	CHECK_STR(bumps(shapes, NULL, "DELETE FROM users.parent WHERE id = 1"), "users.parent users.child users.child_null");
	CHECK_STR(bumps(shapes, NULL, "UPDATE users.parent SET id = 2 WHERE id = 1"), "users.parent users.child_upd");
	CHECK_STR(bumps(shapes, NULL, "INSERT INTO users.parent VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 3"),
		  "users.parent users.child_upd");
	CHECK_STR(bumps(shapes, NULL, "MERGE INTO users.parent p USING users.base b ON p.id = b.id WHEN MATCHED THEN DELETE"),
		  "users.parent users.child users.child_null");
	CHECK_STR(bumps(shapes, NULL, "TRUNCATE users.parent CASCADE"),
		  "users.parent users.child users.child_null users.child_upd");
	CHECK_STR(bumps(shapes, NULL, "WITH d AS (DELETE FROM users.parent RETURNING id) INSERT INTO users.other SELECT id FROM d"),
		  "users.parent users.other users.child users.child_null");
	/* through a view: its base relations */
	CHECK_STR(bumps(shapes, NULL, "UPDATE users.v1 SET x = 1"), "users.v1 users.base");
	CHECK_STR(bumps(shapes, NULL, "REFRESH MATERIALIZED VIEW users.mv"), "users.mv");
	/* a trigger on INSERT: everything (the why is the catalog's); UPDATE fires none */
	CHECK_STR(bumps(shapes, NULL, "INSERT INTO users.trg_t VALUES (1)"),
		  "all: a write whose effects pgrelay cannot know (trigger, rule): INSERT of users.trg_t: trigger "
		  "count_rows on users.trg_t (AFTER ROW) fires on INSERT");
	CHECK_STR(bumps(shapes, NULL, "UPDATE users.trg_t SET x = 1"), "users.trg_t");
	/* relations the catalog does not hold */
	CHECK_STR(bumps(shapes, NULL, "INSERT INTO users.nosuch VALUES (1)"),
		  "all: a write to a relation the catalog does not hold: users.nosuch is not in the catalog");
	CHECK_STR(bumps(shapes, "nope, users", "UPDATE base SET x = 1"), "nope.base users.base");
	CHECK_STR(bumps(shapes, "nope, users", "UPDATE nosuch SET x = 1"),
		  "all: a write to a relation the catalog does not hold: nope.nosuch is not in the catalog");
	/* no catalog: a write invalidates everything; a read-only text nothing */
	CHECK_CONTAINS(bumps(NULL, NULL, "UPDATE users.base SET x = 1"), "all: a write before the service's catalog was loaded");
	CHECK_STR(bumps(NULL, NULL, "SELECT * FROM users.base"), "");
	/* keyed: the table written keeps its rows; what it also changes is bumped for rows not known */
	CacheWrites w = writes("UPDATE shop.cart_items SET total = 1 WHERE id = 5"), x;
	cachepolicy_writes_expand(cfg, shapes, &w, &x);
	CHECK(!x.all);
	CHECK(*bucket_of(x.tables, x.n, "shop", "cart_items"));
	CHECK(!has_dep(x.tables, x.n, "shop", "cart_items/#"));
	CHECK(has_dep(x.tables, x.n, "shop", "carts"));
	CHECK(has_dep(x.tables, x.n, "shop", "carts/#"));
	/* the kinds survive a merge (a transaction's statements) and expanding in place */
	CacheWrites t;
	memset(&t, 0, sizeof t);
	w = writes("DELETE FROM users.parent WHERE id = 1");
	cachepolicy_writes_merge(&t, &w);
	w = writes("UPDATE users.p1 SET x = 1");
	cachepolicy_writes_merge(&t, &w);
	cachepolicy_writes_expand(cfg, shapes, &t, &t);
	CHECK(!t.all);
	CHECK(has_dep(t.tables, t.n, "users", "child"));
	CHECK(has_dep(t.tables, t.n, "users", "p"));
	/* the override still adds what it names */
	w = writes("DELETE FROM shop.orders WHERE id = 1");
	cachepolicy_writes_expand(cfg, base_cat, &w, &x);
	CHECK(!x.all);
	CHECK(has_dep(x.tables, x.n, "shop", "order_totals"));
	CHECK(has_dep(x.tables, x.n, "audit", "log"));
}

TEST(catalog_wal_changes)
{
	CacheWrites w;
	memset(&w, 0, sizeof w);
	CHECK(!cachepolicy_add_write(cfg, shapes, "users", "p1", NULL, 0, &w));
	CHECK(!w.all);
	CHECK(has_dep(w.tables, w.n, "users", "p1"));
	CHECK(has_dep(w.tables, w.n, "users", "p"));
	/* a trigger's and a cascade's writes come as changes of their own: no "all" for them */
	memset(&w, 0, sizeof w);
	cachepolicy_add_write(cfg, shapes, "users", "trg_t", NULL, 0, &w);
	cachepolicy_add_write(cfg, shapes, "users", "parent", NULL, 0, &w);
	CHECK(!w.all);
	CHECK_INT(w.n, 2);
	/* keyed: the leaf by its rows, the parent for rows not known */
	const char *five = "5";
	memset(&w, 0, sizeof w);
	cachepolicy_add_write(cfg, shapes, "shop", "cart_items", &five, 1, &w);
	CHECK(*bucket_of(w.tables, w.n, "shop", "cart_items"));
	CHECK(has_dep(w.tables, w.n, "shop", "carts/#"));
	/* a table the catalog does not hold, or no catalog: everything */
	memset(&w, 0, sizeof w);
	CHECK(cachepolicy_add_write(cfg, shapes, "users", "new_table", NULL, 0, &w)); /* the catalog is out of date */
	CHECK(w.all);
	CHECK_CONTAINS(w.detail, "users.new_table is not in the catalog");
	memset(&w, 0, sizeof w);
	CHECK(!cachepolicy_add_write(cfg, NULL, "users", "base", NULL, 0, &w));
	CHECK(w.all);
}

int main(void)
{
	cfg = unit_config(yaml);
	sqlclass_cache_init(&cache, 1000);
	base_cat = make_base_catalog();
	shapes = make_shapes();
	RUN(rules_and_ttl);
	RUN(search_path_dependencies);
	RUN(not_cacheable_statements);
	RUN(hints);
	RUN(write_invalidation);
	RUN(row_keys);
	RUN(catalog_views_and_policies);
	RUN(catalog_not_cacheable);
	RUN(catalog_writes);
	RUN(catalog_wal_changes);
	sqlclass_cache_free(&cache);
	catalog_unref(base_cat);
	catalog_unref(shapes);
	config_unref(cfg);
	return unit_summary();
}
