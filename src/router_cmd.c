/*
 * router_cmd — `pgrelay route -c FILE [--database DB] [--user U] [--search-path P] [--catalog] 'SQL'`:
 * where a statement would go and why, without running it (for a DBA checking routes).
 *
 * Offline by default: cacheability and dependencies are computed from the names in the text, as
 * if each relation were a plain table (the running pgrelay follows views, partitions, policies,
 * foreign keys and triggers in the service's catalog); the output says so. With --catalog it reads
 * the service's catalog from its primary (blocking libpq, as the primary's user) and answers as
 * the running pgrelay would.
 *
 * Prints the service and primary/replica, the rule that decided (or the database default),
 * every relation with how its schema was resolved, every statement with its kind, every
 * function with whether it is read-safe; for a cross-service text the error clients get.
 * Exit status: 0 routed (also for text that does not parse: it goes to the default primary),
 * 1 cross-service or invalid configuration, 2 usage error.
 */
#include <ctype.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "cachepolicy.h"
#include "router.h"
#include "sqlclass.h"

static void usage(FILE *out)
{
	fprintf(out, "Usage: pgrelay route -c FILE [--database DB] [--user U] [--search-path P] [--catalog] 'SQL'\n"
		     "  -c, --config FILE     proxy.yaml\n"
		     "  -d, --database DB     the database the client connects to (default: the first in FILE)\n"
		     "  -U, --user U          the client's user, for \"$user\" in the search_path\n"
		     "  -s, --search-path P   the client's search_path (default: \"$user\", public)\n"
		     "      --catalog         read the service's catalog from its primary (as its user) for the\n"
		     "                        cache's dependencies; without it they are the names as written\n");
}

static void print_rule(const Config *cfg, const ConfigRoute *r)
{
	printf("routes[%d] at line %d: {", router_rule_index(cfg, r), r->line);
	if (r->n_schemas) {
		printf(" schema: [");
		for (size_t i = 0; i < r->n_schemas; i++)
			printf("%s%s", i ? ", " : "", r->schemas[i]);
		printf("]%s", r->n_tables ? "," : "");
	}
	if (r->n_tables) {
		printf(" tables: [");
		for (size_t i = 0; i < r->n_tables; i++)
			printf("%s%s", i ? ", " : "", r->tables[i]);
		printf("]");
	}
	printf(", service: %s, reads: %s }", r->service_name, config_reads_name(r->reads));
}

static void print_relation(const Config *cfg, const ConfigDatabase *db, const char *search_path,
			   const SqlRelation *rel, const RouterRelation *rr)
{
	char name[300];
	snprintf(name, sizeof name, "%s%s%s", rel->schema ? rel->schema : "", rel->schema ? "." : "", rel->name);
	printf("  %-28s ", name);
	int ri = router_rule_index(cfg, rr->rule);
	switch (rr->how) {
	case ROUTER_REL_CATALOG:
		printf("system catalog: present in every service, goes with the rest (alone: %s)\n", db->service->name);
		return;
	case ROUTER_REL_QUALIFIED:
		printf("schema-qualified");
		break;
	case ROUTER_REL_SEARCH_PATH:
		if (rr->by_name)
			printf("unqualified; routes[%d] matches the name (first search_path schema tried: %s)", ri,
			       rr->schema);
		else
			printf("unqualified; search_path %s -> schema %s", search_path ? search_path : "\"$user\", public",
			       rr->schema);
		break;
	case ROUTER_REL_BARE_NAME:
		printf("unqualified; no rule for any search_path schema, routes[%d] matches the bare name", ri);
		break;
	case ROUTER_REL_DEFAULT:
		printf("unqualified; no rule matches it in search_path %s",
		       search_path ? search_path : "\"$user\", public");
		break;
	}
	if (rr->how == ROUTER_REL_SEARCH_PATH || rr->how == ROUTER_REL_BARE_NAME)
		printf(" -> service %s\n", rr->service->name);
	else if (ri >= 0)
		printf("; routes[%d] -> service %s\n", ri, rr->service->name);
	else
		printf("; no rule -> database default %s\n", rr->service->name);
}

static void print_statement(const char *sql, size_t i, const SqlStatement *st)
{
	int n = st->end - st->start;
	printf("  %zu. [%d,%d) %s: %s", i + 1, st->start, st->end, st->tag, sqlclass_kind_name(st->kind));
	if (st->locking)
		printf(", locking clause");
	if (st->kind == SQL_KIND_TX) {
		printf(" (%s", sqlclass_tx_name(st->tx));
		if (st->tx == SQL_TX_BEGIN) {
			printf(st->tx_read_only ? " READ ONLY" : " read write");
			if (st->tx_isolation)
				printf(", isolation %s", sqlclass_isolation_name(st->tx_isolation));
			if (st->tx_deferrable)
				printf(", deferrable");
		}
		if (st->tx_chain)
			printf(" AND CHAIN");
		if (st->tx_name)
			printf(" %s", st->tx_name);
		printf(")");
	}
	if (st->set != SQL_SET_NONE)
		printf(" (%s%s%s)", sqlclass_set_name(st->set), st->set_name ? " " : "", st->set_name ? st->set_name : "");
	if (st->prepared_name)
		printf(" (prepared statement %s%s%s)", st->prepared_name, st->inner_kind ? ": " : "",
		       st->inner_kind ? sqlclass_kind_name(st->inner_kind) : "");
	printf("\n     %.*s%s\n", n > 200 ? 200 : n, sql + st->start, n > 200 ? " ..." : "");
}

static bool has_upper(const char *s)
{
	for (; *s; s++)
		if (isupper((unsigned char)*s))
			return true;
	return false;
}

/* Patterns with upper case never match unquoted names (PostgreSQL folds those to lower case). */
static void warn_upper_case(const Config *cfg, const ConfigService *svc)
{
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const ConfigRoute *r = &cfg->routes[i];
		for (size_t k = 0; k < r->n_schemas; k++)
			if (has_upper(r->schemas[k]))
				printf("note: routes[%zu] schema \"%s\" has upper case: it only matches quoted names\n", i,
				       r->schemas[k]);
		for (size_t k = 0; k < r->n_tables; k++)
			if (has_upper(r->tables[k]))
				printf("note: routes[%zu] table \"%s\" has upper case: it only matches quoted names\n", i,
				       r->tables[k]);
	}
	for (size_t k = 0; k < svc->n_read_only_functions; k++)
		if (has_upper(svc->read_only_functions[k]))
			printf("note: services.%s.functions.read_only \"%s\" has upper case: it only matches quoted "
			       "names\n", svc->name, svc->read_only_functions[k]);
	for (size_t k = 0; k < svc->n_writing_functions; k++)
		if (has_upper(svc->writing_functions[k]))
			printf("note: services.%s.functions.writes \"%s\" has upper case: it only matches quoted names\n",
			       svc->name, svc->writing_functions[k]);
}

/* The statement says `column = $n` (or a value made with parameters). */
static bool key_is_parameter(const SqlStatement *st, const char *column)
{
	for (size_t i = 0; i < st->n_key_eqs; i++)
		for (size_t p = 0; strcmp(st->key_eqs[i].column, column) == 0 && p < st->key_eqs[i].n_parts; p++)
			if (st->key_eqs[i].parts[p].param)
				return true;
	return false;
}

/* The catalog of svc, read from its primary with blocking libpq (--catalog). NULL: err says why. */
static Catalog *load_catalog(const ConfigService *svc, char *err, size_t errlen)
{
	const ConfigBackend *b = &svc->primary;
	if (!b->user) {
		snprintf(err, errlen, "service %s has no primary user to read its catalog as", svc->name);
		return NULL;
	}
	char port[16];
	snprintf(port, sizeof port, "%d", b->port);
	const char *keys[12], *vals[12];
	int k = 0;
	keys[k] = "host", vals[k++] = b->host;
	keys[k] = "port", vals[k++] = port;
	keys[k] = "dbname", vals[k++] = b->dbname ? b->dbname : svc->name;
	keys[k] = "user", vals[k++] = b->user;
	if (b->password)
		keys[k] = "password", vals[k++] = b->password;
	keys[k] = "sslmode", vals[k++] = config_tls_mode_name(svc->tls.mode);
	if (svc->tls.mode == CONFIG_TLS_VERIFY_FULL && svc->tls.ca)
		keys[k] = "sslrootcert", vals[k++] = svc->tls.ca;
	keys[k] = "connect_timeout", vals[k++] = "10";
	keys[k] = "application_name", vals[k++] = "pgrelay-route";
	keys[k] = NULL, vals[k] = NULL;
	PGconn *conn = PQconnectdbParams(keys, vals, 0);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to %s:%d as %s: %s", b->host, b->port, b->user,
			 conn ? PQerrorMessage(conn) : "out of memory");
		PQfinish(conn);
		return NULL;
	}
	char sql[CATALOG_SQL_CAP];
	CatalogBuilder *cb = catalog_builder_new();
	bool ok = catalog_sql(sql, sizeof sql, 30000) && PQsendQuery(conn, sql);
	if (!ok)
		snprintf(err, errlen, "cannot send the catalog query: %s", PQerrorMessage(conn));
	PGresult *res;
	while ((res = PQgetResult(conn))) {
		ExecStatusType st = PQresultStatus(res);
		if (ok && st == PGRES_TUPLES_OK) {
			const char *cols[16];
			int nf = PQnfields(res) < 16 ? PQnfields(res) : 16;
			for (int r = 0; ok && r < PQntuples(res); r++) {
				for (int f = 0; f < nf; f++)
					cols[f] = PQgetisnull(res, r, f) ? NULL : PQgetvalue(res, r, f);
				ok = catalog_builder_row(cb, cols, (size_t)nf, err, errlen);
			}
		} else if (ok && st != PGRES_COMMAND_OK) {
			snprintf(err, errlen, "the catalog query failed: %s", PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	PQfinish(conn);
	if (!ok) {
		catalog_builder_free(cb);
		return NULL;
	}
	return catalog_builder_finish(cb, err, errlen);
}

static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = 0;
}

/* The catalog the cache would use for service svc: loaded with --catalog, else NULL (offline). */
typedef struct RouteCatalog {
	bool wanted;     /* --catalog */
	Catalog *cat;    /* NULL: offline, or the load failed (error) */
	char error[512];
} RouteCatalog;

static void print_catalog(const ConfigService *svc, const RouteCatalog *rc)
{
	if (!rc->wanted)
		printf("catalog:     not read (offline): the dependencies and invalidations below are the relations as "
		       "named; the running pgrelay resolves them in service %s's catalog (views, partitions, row "
		       "security policies, foreign keys, triggers; a relation it does not hold is not cacheable, a write "
		       "to one invalidates everything). --catalog reads it\n",
		       svc->name);
	else if (rc->cat)
		printf("catalog:     read from service %s's primary (%zu relations)\n", svc->name, catalog_count(rc->cat));
	else
		printf("catalog:     cannot read service %s's: %s\n", svc->name, rc->error);
}

static void print_cache(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			const RouteResult *r, const RouteCatalog *rc)
{
	CacheDecision d;
	if (rc->wanted)
		cachepolicy_decide(cfg, rc->cat, search_path, user, a, NULL, r, &d);
	else
		cachepolicy_decide_offline(cfg, search_path, user, a, NULL, r, &d);
	if (!d.cacheable) {
		printf("cacheable:   no: %s\n", d.why_not);
		return;
	}
	char ttl[32], label[200];
	snprintf(ttl, sizeof ttl, "%lld.%03llds", (long long)(d.ttl_ms / 1000), (long long)(d.ttl_ms % 1000));
	if (d.hinted)
		printf("cacheable:   yes, ttl %s from the statement's pgrelay:cache hint\n", ttl);
	else
		printf("cacheable:   yes, ttl %s (cache.rules[%d] at line %d covers %s)\n", ttl,
		       cachepolicy_rule_index(cfg, d.rule), d.rule->line,
		       d.n_deps ? cachepolicy_version_label(&d.deps[0], label, sizeof label) : "its tables");
	if (d.rule && d.rule->key) {
		printf("row keys:    cache.rules[%d] says rows are identified by column %s\n", cachepolicy_rule_index(cfg, d.rule),
		       d.rule->key);
		if (key_is_parameter(&a->statements[0], d.rule->key))
			printf("             (its value is a parameter: each execution depends on its own row's versions)\n");
	}
	printf("depends on:  ");
	for (size_t i = 0; i < d.n_deps; i++)
		printf("%s%s", i ? ", " : "", cachepolicy_version_label(&d.deps[i], label, sizeof label));
	printf(" (and the service's DDL epoch)\n");
}

static void print_writes(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			 const RouteCatalog *rc)
{
	if (!cfg->cache.enabled)
		return;
	CacheWrites w;
	memset(&w, 0, sizeof w);
	cachepolicy_writes(cfg, search_path, user, a, NULL, false, &w);
	if (rc->wanted)
		cachepolicy_writes_expand(cfg, rc->cat, &w, &w);
	const SqlStatement *st = a->n_statements == 1 ? &a->statements[0] : NULL;
	const ConfigCacheRule *rule = st && st->key_target && st->key_target->schema
					      ? cachepolicy_rule_for(cfg, st->key_target->schema, st->key_target->name)
					      : NULL;
	if (rule && rule->key && key_is_parameter(st, rule->key))
		printf("row keys:    the written rows' key is a parameter: at each execution only those rows are "
		       "invalidated (below: without values)\n");
	if (w.all) {
		printf("invalidates: everything cached for the service at commit (%s%s%s)\n", w.all_why,
		       w.detail[0] ? ": " : "", w.detail);
	} else if (w.n) {
		char label[200];
		printf("invalidates: ");
		for (size_t i = 0; i < w.n; i++)
			printf("%s%s", i ? ", " : "", cachepolicy_version_label(&w.tables[i], label, sizeof label));
		printf(" at commit\n");
	}
	if (w.ddl)
		printf("relearns:    the service's catalog, once this commits (DDL)\n");
}

/* Prints the "relations:" section (each relation named and where it resolves), if any is named. */
static void print_relations(const Config *cfg, const ConfigDatabase *db, const char *search_path, const char *user,
			    const SqlAnalysis *a)
{
	bool any_rel = false;
	for (size_t s = 0; s < a->n_statements; s++)
		any_rel |= a->statements[s].n_relations > 0;
	if (!any_rel)
		return;
	printf("relations:\n");
	for (size_t s = 0; s < a->n_statements; s++)
		for (size_t i = 0; i < a->statements[s].n_relations; i++) {
			RouterRelation rr;
			router_resolve_relation(cfg, db, search_path, user, &a->statements[s].relations[i], &rr);
			print_relation(cfg, db, search_path, &a->statements[s].relations[i], &rr);
		}
}

/* Prints the "schemas named:" section (each schema and the rule it matches), if any is named. */
static void print_schemas(const Config *cfg, const SqlAnalysis *a)
{
	bool any_schema = false;
	for (size_t s = 0; s < a->n_statements; s++)
		any_schema |= a->statements[s].n_schemas > 0;
	if (!any_schema)
		return;
	printf("schemas named:\n");
	for (size_t s = 0; s < a->n_statements; s++)
		for (size_t i = 0; i < a->statements[s].n_schemas; i++) {
			RouterRelation rr;
			router_resolve_schema(cfg, a->statements[s].schemas[i], &rr);
			printf("  %-28s ", a->statements[s].schemas[i]);
			if (rr.service)
				printf("routes[%d] -> service %s\n", router_rule_index(cfg, rr.rule), rr.service->name);
			else
				printf("no rule with schemas only matches: does not decide the service\n");
		}
}

/* Prints the "functions" section (each function called and whether it is read-safe on svc), if
 * any is called. */
static void print_functions(const ConfigService *svc, const SqlAnalysis *a)
{
	bool any_fn = false;
	for (size_t s = 0; s < a->n_statements; s++)
		any_fn |= a->statements[s].n_functions > 0;
	if (!any_fn)
		return;
	printf("functions (on service %s):\n", svc->name);
	for (size_t s = 0; s < a->n_statements; s++)
		for (size_t i = 0; i < a->statements[s].n_functions; i++) {
			const char *why;
			RouterFnSafety f = router_function_safety(svc, a->statements[s].functions[i], &why);
			char fn[300];
			snprintf(fn, sizeof fn, "%s()", a->statements[s].functions[i]);
			printf("  %-28s %s: %s\n", fn, f == ROUTER_FN_READ_SAFE ? "read-safe" : "writes", why);
		}
}

/* Prints the routing decision r: its rule, service, target server(s), read-only and why. */
static void print_route(const Config *cfg, const ConfigDatabase *db, const RouteResult *r)
{
	char text[1024];
	printf("rule:        ");
	if (r->rule) {
		print_rule(cfg, r->rule);
		printf("\n");
	} else {
		printf("no rule: database default (%s -> service %s)\n", db->name, db->service->name);
	}
	const ConfigService *svc = r->service;
	const ConfigBackend *p = &svc->primary;
	printf("service:     %s\n", svc->name);
	if (r->use_replica) {
		printf("target:      replica (%zu configured:", svc->n_replicas);
		for (size_t i = 0; i < svc->n_replicas; i++)
			printf(" %s:%d", svc->replicas[i].host, svc->replicas[i].port);
		printf("; a healthy one, else the primary %s:%d)\n", p->host, p->port);
	} else {
		printf("target:      primary %s:%d dbname %s\n", p->host, p->port, p->dbname ? p->dbname : svc->name);
	}
	printf("read-only:   %s\n", r->read_only ? "yes" : "no");
	router_explain(cfg, r, text, sizeof text);
	printf("why:         %s\n", text);
}

static int report(const Config *cfg, const ConfigDatabase *db, const char *search_path, const char *user,
		  const char *sql, const SqlAnalysis *a, bool want_catalog)
{
	RouteResult r;
	router_route(cfg, db, search_path, user, a, &r);

	printf("database:    %s (default service %s), user %s, search_path %s\n", db->name, db->service->name,
	       user ? user : "(none)", search_path ? search_path : "\"$user\", public");
	if (a->parse_error) {
		printf("parse error: %s", a->parse_error_message ? a->parse_error_message : "syntax error");
		if (a->parse_error_position >= 0)
			printf(" at position %d", a->parse_error_position);
		printf("\n");
	}

	if (a->n_statements) {
		printf("statements:\n");
		for (size_t i = 0; i < a->n_statements; i++)
			print_statement(sql, i, &a->statements[i]);
	}
	print_relations(cfg, db, search_path, user, a);
	print_schemas(cfg, a);
	if (r.status == ROUTE_CROSS_SERVICE) {
		char text[1024];
		router_error_message(&r, text, sizeof text);
		printf("ERROR:  %s\nSQLSTATE: 0A000 (nothing is sent to any server)\n", text);
		return 1;
	}
	print_functions(r.service, a);
	print_route(cfg, db, &r);

	const ConfigService *svc = r.service;
	RouteCatalog rc = {.wanted = want_catalog};
	if (cfg->cache.enabled) {
		if (want_catalog)
			rc.cat = load_catalog(svc, rc.error, sizeof rc.error);
		chomp(rc.error);
		print_catalog(svc, &rc);
	}
	print_cache(cfg, search_path, user, a, &r, &rc);
	print_writes(cfg, search_path, user, a, &rc);
	catalog_unref(rc.cat);
	warn_upper_case(cfg, svc);
	return 0;
}

int route_command(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"database", required_argument, NULL, 'd'},
		{"user", required_argument, NULL, 'U'},
		{"search-path", required_argument, NULL, 's'},
		{"catalog", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL, *dbname = NULL, *user = NULL, *search_path = NULL;
	bool want_catalog = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:d:U:s:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'd': dbname = optarg; break;
		case 'U': user = optarg; break;
		case 's': search_path = optarg; break;
		case 'C': want_catalog = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "pgrelay route: no configuration file given (use -c FILE)\n");
		usage(stderr);
		return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "pgrelay route: give exactly one SQL text (quote it)\n");
		usage(stderr);
		return 2;
	}
	const char *sql = argv[optind];
	char err[8192];
	Config *cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	const ConfigDatabase *db = dbname ? config_find_database(cfg, dbname) : &cfg->databases[0];
	if (!db) {
		fprintf(stderr, "pgrelay route: %s has no database \"%s\" (databases:", path, dbname);
		for (size_t i = 0; i < cfg->n_databases; i++)
			fprintf(stderr, "%s %s", i ? "," : "", cfg->databases[i].name);
		fprintf(stderr, ")\n");
		config_unref(cfg);
		return 2;
	}
	SqlCache cache;
	sqlclass_cache_init(&cache, 0);
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	int rc = report(cfg, db, search_path, user, sql, a, want_catalog);
	sqlclass_release(a);
	sqlclass_cache_free(&cache);
	config_unref(cfg);
	return rc;
}
