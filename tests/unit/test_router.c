/*
 * test_router — routing rules (schemas, tables, globs, qualified patterns, first match wins),
 * search_path resolution with "$user", default and catalog relations, cross-service detection,
 * read-only analysis (statement kinds, locking, built-in and declared functions, transactions)
 * and when a replica may serve the text.
 */
#include "router.h"
#include "unit.h"

#include <stdlib.h>

static Config *cfg;
static SqlCache cache;

static const char *yaml =
	"databases:\n"
	"  app: { service: users }\n"
	"  shop: { service: orders }\n"
	"services:\n"
	"  users:\n"
	"    primary: { host: u1 }\n"
	"    replicas: [ { host: u2 } ]\n"
	"    reads: replicas\n"
	"    functions: { read_only: [my_lookup, \"util.f\"], writes: [bump, \"util.g\", upper] }\n"
	"  orders:\n"
	"    primary: { host: o1 }\n"
	"    replicas: [ { host: o2 } ]\n"
	"  analytics:\n"
	"    primary: { host: a1 }\n"
	"    reads: replicas\n"
	"routes:\n"
	"  - { schema: billing, service: orders, reads: primary }\n"                          /* 0 */
	"  - { tables: [orders, \"order_*\", \"archive.old_*\"], service: orders, reads: replicas }\n" /* 1 */
	"  - { tables: [\"user*\"], service: users }\n"                                         /* 2 */
	"  - { schema: \"stats*\", service: analytics }\n"                                      /* 3 */
	"  - { schema: shop, tables: [\"cart?\"], service: orders }\n"                          /* 4 */
	"  - { schema: alice, service: analytics }\n"                                           /* 5 */
	"  - { tables: [orders, \"[xy]z\"], service: users }\n";                                /* 6 */

static const ConfigService *svc(const char *name) { return config_find_service(cfg, name); }
static const ConfigDatabase *app(void) { return config_find_database(cfg, "app"); }

/* Routes sql for database db (default app), search_path and user. */
static RouteResult route_full(const char *db, const char *search_path, const char *user, const char *sql)
{
	RouteResult r;
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	router_route(cfg, config_find_database(cfg, db ? db : "app"), search_path, user, a, &r);
	/* the result's pointers stay valid: the cache holds the analysis */
	sqlclass_release(a);
	return r;
}

static RouteResult route(const char *sql) { return route_full(NULL, NULL, NULL, sql); }

/* The service and rule index (-1: none) sql routes to. */
#define CHECK_ROUTE(r, service_name, rule_index)                                               \
	do {                                                                                   \
		RouteResult r_ = (r);                                                          \
		CHECK_INT(r_.status, ROUTE_OK);                                                \
		CHECK_STR(r_.service ? r_.service->name : "(none)", service_name);            \
		CHECK_INT(router_rule_index(cfg, r_.rule), rule_index);                        \
	} while (0)

TEST(schema_rule)
{
	CHECK_ROUTE(route("SELECT * FROM billing.invoices"), "orders", 0);
	CHECK_ROUTE(route("INSERT INTO billing.invoices SELECT * FROM billing.drafts"), "orders", 0);
	CHECK_ROUTE(route("SELECT * FROM public.invoices"), "users", -1);
	CHECK_ROUTE(route("SELECT * FROM stats_2024.hits"), "analytics", 3);
	CHECK_ROUTE(route("SELECT * FROM statsx.hits"), "analytics", 3);
	CHECK_ROUTE(route("SELECT * FROM stat.hits"), "users", -1);
}

TEST(table_rules_and_globs)
{
	CHECK_ROUTE(route("SELECT * FROM orders"), "orders", 1);
	CHECK_ROUTE(route("SELECT * FROM order_items"), "orders", 1);
	CHECK_ROUTE(route("SELECT * FROM public.order_items"), "orders", 1);
	CHECK_ROUTE(route("SELECT * FROM orderx"), "users", -1);
	CHECK_ROUTE(route("SELECT * FROM users"), "users", 2);
	CHECK_ROUTE(route("SELECT * FROM user_profiles"), "users", 2);
	CHECK_ROUTE(route("SELECT * FROM xz"), "users", 6);
	CHECK_ROUTE(route("SELECT * FROM zz"), "users", -1);
	/* case matters: "Orders" (quoted) is not orders */
	CHECK_ROUTE(route("SELECT * FROM \"Orders\""), "users", -1);
	/* first match wins: rule 6 also lists orders, rule 1 comes first */
	CHECK_ROUTE(route("UPDATE orders SET x = 1"), "orders", 1);
}

TEST(qualified_table_patterns)
{
	CHECK_ROUTE(route("SELECT * FROM archive.old_orders"), "orders", 1);
	CHECK_ROUTE(route("SELECT * FROM public.old_orders"), "users", -1);
	CHECK_ROUTE(route("SELECT * FROM old_orders"), "users", -1);
	CHECK_ROUTE(route_full(NULL, "archive", NULL, "SELECT * FROM old_orders"), "orders", 1);
	CHECK_ROUTE(route_full(NULL, "public, archive", NULL, "SELECT * FROM old_orders"), "orders", 1);
}

TEST(rule_with_schema_and_tables)
{
	CHECK_ROUTE(route("SELECT * FROM shop.carts"), "orders", 4);
	CHECK_ROUTE(route("SELECT * FROM shop.cart1"), "orders", 4);
	CHECK_ROUTE(route("SELECT * FROM shop.other"), "users", -1);
	CHECK_ROUTE(route("SELECT * FROM public.carts"), "users", -1);
	CHECK_ROUTE(route_full(NULL, "shop", NULL, "SELECT * FROM carts"), "orders", 4);
	CHECK_ROUTE(route_full(NULL, "public", NULL, "SELECT * FROM carts"), "users", -1);
}

TEST(search_path_resolution)
{
	/* default "$user", public: $user is the user */
	CHECK_ROUTE(route_full(NULL, NULL, "alice", "SELECT * FROM notes"), "analytics", 5);
	CHECK_ROUTE(route_full(NULL, NULL, "bob", "SELECT * FROM notes"), "users", -1);
	CHECK_ROUTE(route_full(NULL, "\"$user\", billing", "alice", "SELECT * FROM invoices"), "analytics", 5);
	CHECK_ROUTE(route_full(NULL, "\"$user\", billing", "bob", "SELECT * FROM invoices"), "orders", 0);
	CHECK_ROUTE(route_full(NULL, "$user,billing", NULL, "SELECT * FROM invoices"), "orders", 0);
	/* the first schema for which a rule matches wins, in path order */
	CHECK_ROUTE(route_full(NULL, "public, billing, stats", NULL, "SELECT * FROM x"), "orders", 0);
	CHECK_ROUTE(route_full(NULL, "stats, billing", NULL, "SELECT * FROM x"), "analytics", 3);
	/* pg_catalog and pg_temp are skipped; unquoted names fold; quoted ones keep case */
	CHECK_ROUTE(route_full(NULL, "pg_catalog, pg_temp, BILLING", NULL, "SELECT * FROM x"), "orders", 0);
	CHECK_ROUTE(route_full(NULL, "\"BILLING\", public", NULL, "SELECT * FROM x"), "users", -1);
	CHECK_ROUTE(route_full(NULL, "\"my \"\"odd\"\" schema\", billing", NULL, "SELECT * FROM x"), "orders", 0);
	/* a schema rule claims every unqualified name when its schema comes first in the path */
	CHECK_ROUTE(route_full(NULL, "billing, public", NULL, "SELECT * FROM users"), "orders", 0);
	CHECK_ROUTE(route_full(NULL, "public, billing", NULL, "SELECT * FROM users"), "users", 2);
	/* an empty path: table rules still match the bare name */
	CHECK_ROUTE(route_full(NULL, "", NULL, "SELECT * FROM order_items"), "orders", 1);
	CHECK_ROUTE(route_full(NULL, "", NULL, "SELECT * FROM x"), "users", -1);
	/* what router_resolve_relation reports */
	RouterRelation rr;
	SqlRelation rel = {NULL, "invoices", 0};
	router_resolve_relation(cfg, app(), "public, billing", NULL, &rel, &rr);
	CHECK_INT(rr.how, ROUTER_REL_SEARCH_PATH);
	CHECK_STR(rr.schema, "billing");
	CHECK(!rr.by_name);
	CHECK(rr.service == svc("orders"));
	rel = (SqlRelation){NULL, "orders", 0};
	router_resolve_relation(cfg, app(), NULL, "bob", &rel, &rr);
	CHECK_INT(rr.how, ROUTER_REL_SEARCH_PATH);
	CHECK(rr.by_name);
	CHECK_STR(rr.schema, "bob");
	router_resolve_relation(cfg, app(), "", NULL, &rel, &rr);
	CHECK_INT(rr.how, ROUTER_REL_BARE_NAME);
	CHECK_INT(router_rule_index(cfg, rr.rule), 1);
	rel = (SqlRelation){NULL, "nothing", 0};
	router_resolve_relation(cfg, app(), NULL, NULL, &rel, &rr);
	CHECK_INT(rr.how, ROUTER_REL_DEFAULT);
	CHECK(rr.service == svc("users"));
	CHECK(rr.rule == NULL);
	rel = (SqlRelation){"billing", "nothing", 0};
	router_resolve_relation(cfg, app(), NULL, NULL, &rel, &rr);
	CHECK_INT(rr.how, ROUTER_REL_QUALIFIED);
	CHECK_INT(router_rule_index(cfg, rr.rule), 0);
}

TEST(default_service_and_catalog)
{
	CHECK_ROUTE(route("SELECT 1"), "users", -1);
	CHECK_ROUTE(route_full("shop", NULL, NULL, "SELECT 1"), "orders", -1);
	CHECK_ROUTE(route_full("shop", NULL, NULL, "SELECT * FROM somewhere"), "orders", -1);
	CHECK_ROUTE(route_full("shop", NULL, NULL, "SELECT * FROM users"), "users", 2);
	/* catalogs go with the rest, and alone to the default */
	CHECK_ROUTE(route("SELECT * FROM orders o JOIN pg_catalog.pg_class c ON true JOIN pg_namespace n ON true "
			  "JOIN information_schema.tables t ON true"),
		    "orders", 1);
	RouteResult r = route("SELECT * FROM pg_stat_activity");
	CHECK_ROUTE(r, "users", -1);
	CHECK(!r.names_tables);
	r = route_full("shop", NULL, NULL, "SELECT * FROM information_schema.columns");
	CHECK_ROUTE(r, "orders", -1);
	CHECK(!r.names_tables);
	CHECK(route("SELECT * FROM t").names_tables);
	CHECK(!route("SELECT 1").names_tables);
	CHECK(!route("BEGIN").names_tables);
	CHECK(route("DROP SCHEMA billing").names_tables);
}

TEST(cross_service)
{
	RouteResult r = route("SELECT * FROM orders JOIN users USING (id)");
	CHECK_INT(r.status, ROUTE_CROSS_SERVICE);
	CHECK(r.cross_service[0] == svc("orders"));
	CHECK(r.cross_service[1] == svc("users"));
	char msg[512];
	router_error_message(&r, msg, sizeof msg);
	CHECK_STR(msg, "pgrelay cannot run one query on two services: relation \"orders\" belongs to service "
		       "\"orders\", relation \"users\" to service \"users\"");
	/* through a subquery, a CTE, a later statement, a schema */
	CHECK_INT(route("SELECT * FROM users WHERE id IN (SELECT user_id FROM billing.invoices)").status,
		  ROUTE_CROSS_SERVICE);
	CHECK_INT(route("WITH o AS (SELECT * FROM orders) SELECT * FROM o, users").status, ROUTE_CROSS_SERVICE);
	CHECK_INT(route("INSERT INTO users SELECT * FROM order_items").status, ROUTE_CROSS_SERVICE);
	r = route("SELECT * FROM orders; SELECT * FROM stats.hits");
	CHECK_INT(r.status, ROUTE_CROSS_SERVICE);
	router_error_message(&r, msg, sizeof msg);
	CHECK_CONTAINS(msg, "relation \"stats.hits\" to service \"analytics\"");
	r = route("SELECT billing.charge(id) FROM users");
	CHECK_INT(r.status, ROUTE_CROSS_SERVICE);
	router_error_message(&r, msg, sizeof msg);
	CHECK_CONTAINS(msg, "schema \"billing\" to service \"orders\"");
	/* an unqualified relation resolved through the search_path */
	CHECK_INT(route_full(NULL, "billing", NULL, "SELECT * FROM invoices JOIN public.users USING (id)").status,
		  ROUTE_CROSS_SERVICE);
	/* one service, several rules: fine */
	CHECK_ROUTE(route("SELECT * FROM billing.invoices JOIN orders USING (id); SELECT * FROM shop.carts"),
		    "orders", 0);
	/* schemas no schema-only rule claims are neutral */
	CHECK_ROUTE(route("INSERT INTO orders VALUES (extensions.uuid_generate_v4())"), "orders", 1);
	CHECK_ROUTE(route("CREATE SCHEMA billing"), "orders", 0);
	CHECK_ROUTE(route("CREATE SCHEMA other"), "users", -1);
}

TEST(read_only_statements)
{
	static const struct {
		const char *sql;
		bool read_only;
	} cases[] = {
		{"SELECT * FROM users", true},
		{"SELECT now(), clock_timestamp(), random(), count(*), sum(x), lower(name), pg_catalog.initcap(name), "
		 "to_char(now(), 'YYYY'), jsonb_build_object('a', 1), array_agg(x), generate_series(1, 2), "
		 "date_trunc('day', now()), extract(year FROM now()), current_setting('x'), version(), "
		 "pg_backend_pid(), pg_is_in_recovery(), coalesce(a, b), string_agg(x, ',') FROM users",
		 true},
		{"SELECT nextval('s')", false},
		{"SELECT currval('s')", false},
		{"SELECT setval('s', 1)", false},
		{"SELECT pg_advisory_xact_lock(1)", false},
		{"SELECT set_config('a', 'b', false)", false},
		{"SELECT txid_current()", false},
		{"SELECT lo_unlink(1)", false},
		{"SELECT pg_notify('c', 'x')", false},
		{"SELECT my_function()", false},
		{"SELECT other.lower('A')", false},
		{"SELECT * FROM users FOR UPDATE", false},
		{"SELECT * FROM users u WHERE EXISTS (SELECT 1 FROM user_roles FOR SHARE)", false},
		{"INSERT INTO users VALUES (1)", false},
		{"WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d", false},
		{"CREATE TABLE users2 (a int)", false},
		{"VACUUM users", false},
		{"SHOW search_path", true},
		{"SET statement_timeout = 0; SELECT 1; RESET ALL; DISCARD ALL", true},
		{"LISTEN chan", false},
		{"NOTIFY chan", false},
		{"BEGIN READ ONLY; SELECT * FROM users; COMMIT", true},
		{"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY; SELECT 1", true},
		{"BEGIN; SELECT * FROM users; COMMIT", false},
		{"SAVEPOINT a; SELECT 1; ROLLBACK TO a; RELEASE a", true},
		{"COMMIT PREPARED 'x'", false},
		{"EXPLAIN SELECT * FROM users", true},
		{"EXPLAIN ANALYZE DELETE FROM users", false},
		{"PREPARE q AS SELECT * FROM users", true},
		{"PREPARE q AS SELECT * FROM users FOR UPDATE", false},
		{"PREPARE q AS UPDATE users SET x = 1", false},
		{"EXECUTE q", false},
		{"COPY users TO STDOUT", true},
		{"COPY users FROM STDIN", false},
		{"SELECT 1; SELECT nextval('s')", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		RouteResult r = route(cases[i].sql);
		if (r.status != ROUTE_OK || r.read_only != cases[i].read_only) {
			char why[512];
			router_explain(cfg, &r, why, sizeof why);
			UNIT_FAIL("%s: status %d read_only %d, expected %d (%s)", cases[i].sql, r.status, r.read_only,
				  cases[i].read_only, why);
		}
		/* users reads: replicas, with a replica: exactly the read-only texts may use it */
		if (r.use_replica != cases[i].read_only)
			UNIT_FAIL("%s: use_replica %d", cases[i].sql, r.use_replica);
	}
	RouteResult r = route("SELECT count(*) FROM users WHERE nextval('s') > 0");
	CHECK(!r.read_only);
	CHECK_STR(r.not_read_only_function, "nextval");
	CHECK_STR(r.not_read_only_why, "built-in with effects beyond the statement");
	CHECK_STR(r.not_read_only_stmt->tag, "SELECT");
	r = route("SELECT * FROM users FOR UPDATE");
	CHECK_STR(r.not_read_only_why, "has a locking clause (FOR UPDATE/SHARE)");
}

TEST(declared_functions)
{
	/* users declares read_only: my_lookup, util.f; writes: bump, util.g, upper */
	CHECK(route("SELECT my_lookup(1) FROM users").read_only);
	CHECK(route("SELECT any_schema.my_lookup(1) FROM users").read_only);
	CHECK(route("SELECT util.f(1) FROM users").read_only);
	CHECK(!route("SELECT f(1) FROM users").read_only);    /* may resolve elsewhere */
	CHECK(!route("SELECT other.f(1) FROM users").read_only);
	CHECK(!route("SELECT bump(1) FROM users").read_only);
	CHECK(!route("SELECT util.g(1) FROM users").read_only);
	CHECK(!route("SELECT upper('a') FROM users").read_only); /* declared writes beat the built-in list */
	RouteResult r = route("SELECT g(1) FROM users");          /* may resolve to util.g */
	CHECK(!r.read_only);
	CHECK_STR(r.not_read_only_why, "declared in functions.writes");
	/* declarations belong to their service: on orders, my_lookup is unknown */
	r = route("SELECT my_lookup(1) FROM orders");
	CHECK_ROUTE(r, "orders", 1);
	CHECK(!r.read_only);
	CHECK_STR(r.not_read_only_why, "not known to be read-only");
	CHECK(route("SELECT upper('a') FROM orders").read_only);

	const char *why;
	CHECK_INT(router_function_safety(svc("users"), "my_lookup", &why), ROUTER_FN_READ_SAFE);
	CHECK_STR(why, "declared in functions.read_only");
	CHECK_INT(router_function_safety(NULL, "now", &why), ROUTER_FN_READ_SAFE);
	CHECK_STR(why, "built-in, read-safe");
	CHECK_INT(router_function_safety(NULL, "pg_catalog.now", &why), ROUTER_FN_READ_SAFE);
	CHECK_INT(router_function_safety(NULL, "public.now", &why), ROUTER_FN_WRITES);
	CHECK_INT(router_function_safety(NULL, "pg_try_advisory_lock", &why), ROUTER_FN_WRITES);
	CHECK_INT(router_function_safety(NULL, "jsonb_path_query", &why), ROUTER_FN_READ_SAFE);
	CHECK_INT(router_function_safety(NULL, "lo_get", &why), ROUTER_FN_WRITES);
	CHECK_INT(router_function_safety(NULL, "pg_stat_reset", &why), ROUTER_FN_WRITES);
}

TEST(builtin_lists_sorted_and_consistent)
{
	size_t n;
	const char *const *list = router_builtin_functions(false, &n);
	CHECK(n > 200);
	for (size_t i = 0; i < n; i++) {
		const char *why;
		if (i > 0 && strcmp(list[i - 1], list[i]) >= 0)
			UNIT_FAIL("read-safe list not sorted at %s", list[i]);
		if (router_function_safety(NULL, list[i], &why) != ROUTER_FN_READ_SAFE)
			UNIT_FAIL("%s should be read-safe (%s)", list[i], why);
	}
	list = router_builtin_functions(true, &n);
	CHECK(n > 30);
	for (size_t i = 0; i < n; i++) {
		const char *why;
		char q[128];
		if (i > 0 && strcmp(list[i - 1], list[i]) >= 0)
			UNIT_FAIL("writes list not sorted at %s", list[i]);
		snprintf(q, sizeof q, "pg_catalog.%s", list[i]);
		if (router_function_safety(NULL, q, &why) != ROUTER_FN_WRITES)
			UNIT_FAIL("%s should write", q);
	}
}

TEST(replicas_only_when_allowed)
{
	/* service users: reads replicas, one replica */
	CHECK(route("SELECT * FROM users").use_replica);
	CHECK(route("SELECT 1").use_replica);
	/* rule 0 says primary */
	RouteResult r = route("SELECT * FROM billing.invoices");
	CHECK(r.read_only);
	CHECK(!r.use_replica);
	CHECK(r.reads_primary);
	CHECK_INT(router_rule_index(cfg, r.reads_primary_rule), 0);
	/* rule 1 says replicas although orders says primary */
	CHECK(route("SELECT * FROM orders").use_replica);
	/* both rules of one service: the stricter wins */
	CHECK(!route("SELECT * FROM orders JOIN billing.invoices USING (id)").use_replica);
	/* rule 4 inherits orders' primary */
	r = route("SELECT * FROM shop.carts");
	CHECK(r.read_only);
	CHECK(!r.use_replica);
	CHECK(r.reads_primary);
	CHECK(r.reads_primary_rule == NULL);
	/* database default orders: primary */
	CHECK(!route_full("shop", NULL, NULL, "SELECT 1").use_replica);
	/* analytics: reads replicas but has none */
	r = route("SELECT * FROM stats.hits");
	CHECK(r.read_only);
	CHECK(!r.reads_primary);
	CHECK(!r.use_replica);
	/* writes and locking never */
	CHECK(!route("UPDATE orders SET x = 1").use_replica);
	CHECK(!route("SELECT * FROM orders FOR UPDATE").use_replica);
	CHECK(!route("SELECT nextval('s') FROM orders").use_replica);
	CHECK(route("BEGIN READ ONLY; SELECT * FROM orders").use_replica);
	CHECK(!route("BEGIN; SELECT * FROM orders").use_replica);
}

TEST(parse_error_goes_to_default_primary)
{
	RouteResult r = route_full("shop", NULL, NULL, "SELEC * FROM users");
	CHECK_INT(r.status, ROUTE_PARSE_ERROR);
	CHECK(r.service == svc("orders"));
	CHECK(!r.read_only);
	CHECK(!r.use_replica);
	CHECK(r.rule == NULL);
}

TEST(explanations)
{
	char buf[512];
	RouteResult r = route("SELECT * FROM orders");
	router_explain(cfg, &r, buf, sizeof buf);
	CHECK_STR(buf, "service orders, replica: relation \"orders\" matched routes[1] (line 18); read-only, and "
		       "reads: replicas");
	r = route("SELECT * FROM billing.invoices");
	router_explain(cfg, &r, buf, sizeof buf);
	CHECK_STR(buf, "service orders, primary: relation \"billing.invoices\" matched routes[0] (line 17); "
		       "read-only, but routes[0] has reads: primary");
	r = route("INSERT INTO nowhere VALUES (1)");
	router_explain(cfg, &r, buf, sizeof buf);
	CHECK_STR(buf, "service users, primary: relation \"nowhere\" matched no rule: the database's default "
		       "service; not read-only: INSERT writes");
	r = route("SELECT bump(1)");
	router_explain(cfg, &r, buf, sizeof buf);
	CHECK_STR(buf, "service users, primary: names no table: the database's default service; not read-only: "
		       "SELECT calls bump() (declared in functions.writes)");
	r = route("SELECT * FROM stats.x");
	router_explain(cfg, &r, buf, sizeof buf);
	CHECK_CONTAINS(buf, "read-only, but service analytics has no replicas");
}

int main(void)
{
	cfg = unit_config(yaml);
	sqlclass_cache_init(&cache, 1000);
	RUN(schema_rule);
	RUN(table_rules_and_globs);
	RUN(qualified_table_patterns);
	RUN(rule_with_schema_and_tables);
	RUN(search_path_resolution);
	RUN(default_service_and_catalog);
	RUN(cross_service);
	RUN(read_only_statements);
	RUN(declared_functions);
	RUN(builtin_lists_sorted_and_consistent);
	RUN(replicas_only_when_allowed);
	RUN(parse_error_goes_to_default_primary);
	RUN(explanations);
	sqlclass_cache_free(&cache);
	config_unref(cfg);
	return unit_summary();
}
