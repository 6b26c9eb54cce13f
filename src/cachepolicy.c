/*
 * cachepolicy — the result cache's rules applied to one analyzed SQL text: cacheable or why not,
 * TTL, the table versions a result depends on, the tables a write invalidates. See cachepolicy.h.
 */
#include "cachepolicy.h"

#include <stdio.h>
#include <string.h>

#define MAX_PATH 16

/* Built-in functions that are read-safe for routing but whose answer changes without any table
 * changing (clock, randomness, session or server state): their results are never cached. */
static const char *const not_deterministic[] = {
	"age", "clock_timestamp", "current_query", "current_setting", "gen_random_uuid", "inet_client_addr",
	"inet_client_port", "inet_server_addr", "inet_server_port", "localtimestamp", "now", "random",
	"random_normal", "statement_timestamp", "timeofday", "transaction_timestamp", "txid_current_if_assigned",
	"txid_current_snapshot", "txid_status", "txid_visible_in_snapshot", "uuid_generate_v1", "uuid_generate_v1mc",
	"uuid_generate_v4", "version",
};

static const char *base_name(const char *fn)
{
	const char *dot = strrchr(fn, '.');
	return dot ? dot + 1 : fn;
}

static bool in_array(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* Why a call keeps a result out of the cache, or NULL when it does not. */
static const char *function_not_cacheable(const ConfigService *svc, const char *fn)
{
	const char *why;
	if (router_function_safety(svc, fn, &why) != ROUTER_FN_READ_SAFE)
		return "may write";
	if (strcmp(why, "built-in, read-safe") != 0)
		return "is a user function of unknown volatility";
	const char *base = base_name(fn);
	if (strncmp(base, "pg_", 3) == 0 ||
	    in_array(base, not_deterministic, sizeof not_deterministic / sizeof not_deterministic[0]))
		return "gives a different answer without any table changing";
	return NULL;
}

static bool is_catalog(const SqlRelation *r)
{
	if (r->schema)
		return strcmp(r->schema, "pg_catalog") == 0 || strcmp(r->schema, "information_schema") == 0 ||
		       strncmp(r->schema, "pg_temp", 7) == 0 || strncmp(r->schema, "pg_toast", 8) == 0;
	return strncmp(r->name, "pg_", 3) == 0;
}

static bool add_table(CacheTable *tables, size_t *n, const char *schema, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(tables[i].schema, schema) == 0 && strcmp(tables[i].name, name) == 0)
			return true;
	if (*n >= CACHE_MAX_TABLES || strlen(schema) >= sizeof tables[0].schema ||
	    strlen(name) >= sizeof tables[0].name)
		return false;
	snprintf(tables[*n].schema, sizeof tables[0].schema, "%s", schema);
	snprintf(tables[*n].name, sizeof tables[0].name, "%s", name);
	(*n)++;
	return true;
}

/* A relation as the tables it may be: itself when qualified, else one per search_path schema. */
static bool add_relation(CacheTable *tables, size_t *n, const SqlRelation *r, char (*path)[128], size_t n_path)
{
	if (r->schema)
		return add_table(tables, n, r->schema, r->name);
	if (n_path == 0)
		return false;
	for (size_t i = 0; i < n_path; i++)
		if (!add_table(tables, n, path[i], r->name))
			return false;
	return true;
}

/* The first cache rule covering the relation (resolved through the search path like routes). */
static const ConfigCacheRule *find_rule(const Config *cfg, const SqlRelation *r, char (*path)[128], size_t n_path)
{
	const ConfigCache *c = &cfg->cache;
	if (r->schema) {
		for (size_t i = 0; i < c->n_rules; i++)
			if (router_match_names(c->rules[i].schemas, c->rules[i].n_schemas, c->rules[i].tables,
					       c->rules[i].n_tables, r->schema, r->name))
				return &c->rules[i];
		return NULL;
	}
	for (size_t p = 0; p < n_path; p++)
		for (size_t i = 0; i < c->n_rules; i++)
			if (router_match_names(c->rules[i].schemas, c->rules[i].n_schemas, c->rules[i].tables,
					       c->rules[i].n_tables, path[p], r->name) == ROUTER_MATCH_SCHEMA)
				return &c->rules[i];
	for (size_t i = 0; i < c->n_rules; i++)
		if (!c->rules[i].n_schemas &&
		    router_match_names(NULL, 0, c->rules[i].tables, c->rules[i].n_tables, NULL, r->name))
			return &c->rules[i];
	return NULL;
}

/* Comment hints: "pgrelay:nocache" or "pgrelay:cache ttl=30s". Returns -1 nocache, 1 cache, 0 none. */
static int parse_hint(const char *text, size_t len, int64_t *ttl_ms)
{
	const char *end = text + len;
	for (const char *p = text; p + 8 <= end; p++) {
		p = memchr(p, 'p', (size_t)(end - p));
		if (!p || p + 8 > end)
			break;
		if (memcmp(p, "pgrelay:", 8) != 0)
			continue;
		const char *q = p + 8;
		if (end - q >= 7 && memcmp(q, "nocache", 7) == 0)
			return -1;
		if (end - q >= 5 && memcmp(q, "cache", 5) == 0) {
			q += 5;
			while (q < end && *q == ' ')
				q++;
			if (end - q > 4 && memcmp(q, "ttl=", 4) == 0) {
				char buf[32];
				size_t k = 0;
				for (q += 4; q < end && k + 1 < sizeof buf && *q != ' ' && *q != '*'; q++)
					buf[k++] = *q;
				buf[k] = 0;
				int64_t ms;
				if (config_parse_duration(buf, &ms) && ms > 0) {
					*ttl_ms = ms;
					return 1;
				}
			}
		}
	}
	return 0;
}

#define NOT_CACHEABLE(...)                                                   \
	do {                                                                  \
		out->cacheable = false;                                       \
		snprintf(out->why_not, sizeof out->why_not, __VA_ARGS__);    \
		return;                                                       \
	} while (0)

void cachepolicy_decide(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			const RouteResult *route, const char *text, size_t len, CacheDecision *out)
{
	out->cacheable = false;
	out->why_not[0] = 0;
	out->rule = NULL;
	out->ttl_ms = 0;
	out->hinted = false;
	out->n_deps = 0;
	if (!cfg->cache.enabled)
		NOT_CACHEABLE("the cache is off (no cache section in the configuration)");
	int64_t hint_ttl = 0;
	int hint = memmem(text, len, "pgrelay:", 8) ? parse_hint(text, len, &hint_ttl) : 0;
	if (hint < 0)
		NOT_CACHEABLE("the statement says pgrelay:nocache");
	if (a->parse_error)
		NOT_CACHEABLE("pgrelay cannot parse it");
	if (a->n_statements != 1)
		NOT_CACHEABLE("%s", a->n_statements ? "it holds more than one statement" : "it is empty");
	if (route->status != ROUTE_OK)
		NOT_CACHEABLE("it cannot be routed");
	const SqlStatement *st = &a->statements[0];
	if (st->kind != SQL_KIND_READ || strcmp(st->tag, "SELECT") != 0)
		NOT_CACHEABLE("it is not a SELECT (%s)", st->tag);
	if (st->locking)
		NOT_CACHEABLE("it has a locking clause (FOR UPDATE/SHARE)");
	if (st->time_dependent)
		NOT_CACHEABLE("it reads the clock (CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME...)");
	for (size_t i = 0; i < st->n_functions; i++) {
		const char *why = function_not_cacheable(route->service, st->functions[i]);
		if (why)
			NOT_CACHEABLE("it calls %s(), which %s", st->functions[i], why);
	}
	if (st->n_relations == 0)
		NOT_CACHEABLE("it reads no table");
	char path[MAX_PATH][128];
	size_t n_path = router_search_path(search_path, user, path, MAX_PATH);
	int64_t ttl = INT64_MAX;
	for (size_t i = 0; i < st->n_relations; i++) {
		const SqlRelation *r = &st->relations[i];
		if (is_catalog(r))
			NOT_CACHEABLE("it reads %s%s%s, a system catalog or temporary relation", r->schema ? r->schema : "",
				      r->schema ? "." : "", r->name);
		const ConfigCacheRule *rule = find_rule(cfg, r, path, n_path);
		if (rule && rule->ttl_ms == 0)
			NOT_CACHEABLE("cache.rules[%d] (line %d) says ttl 0 for %s", cachepolicy_rule_index(cfg, rule),
				      rule->line, r->name);
		if (!rule && hint == 0)
			NOT_CACHEABLE("no cache rule covers %s%s%s", r->schema ? r->schema : "", r->schema ? "." : "",
				      r->name);
		if (rule && !out->rule)
			out->rule = rule;
		if (rule && rule->ttl_ms < ttl)
			ttl = rule->ttl_ms;
		if (!add_relation(out->deps, &out->n_deps, r, path, n_path))
			NOT_CACHEABLE("it depends on more than %d tables (or on an unqualified name with an empty "
				      "search_path)", CACHE_MAX_TABLES);
	}
	if (hint > 0) {
		ttl = hint_ttl;
		out->hinted = true;
	}
	out->ttl_ms = ttl;
	out->cacheable = true;
}

static void writes_all(CacheWrites *w, const char *why)
{
	if (!w->all) {
		w->all = true;
		w->all_why = why;
	}
}

static void add_dependents(const Config *cfg, const char *schema, const char *name, CacheWrites *w)
{
	const ConfigCache *c = &cfg->cache;
	for (size_t i = 0; i < c->n_dependencies; i++) {
		const ConfigCacheDependency *d = &c->dependencies[i];
		char *pat = d->table;
		if (!router_match_names(NULL, 0, &pat, 1, schema, name))
			continue;
		for (size_t j = 0; j < d->n_also; j++) {
			const char *also = d->also[j], *dot = strchr(also, '.');
			char s[64];
			if (dot && (size_t)(dot - also) < sizeof s) {
				memcpy(s, also, (size_t)(dot - also));
				s[dot - also] = 0;
				if (!add_table(w->tables, &w->n, s, dot + 1))
					writes_all(w, "too many tables");
			} else if (!add_table(w->tables, &w->n, schema, also)) {
				writes_all(w, "too many tables");
			}
		}
	}
}

void cachepolicy_add_write(const Config *cfg, const char *schema, const char *name, CacheWrites *w)
{
	if (!add_table(w->tables, &w->n, schema, name))
		writes_all(w, "too many tables");
	add_dependents(cfg, schema, name, w);
}

static bool function_changes_tables(const char *fn)
{
	const char *why;
	if (router_function_safety(NULL, fn, &why) == ROUTER_FN_READ_SAFE)
		return false;
	/* Built-ins with effects beyond the statement change no table (sequences, locks, settings,
	 * notifications), except dblink, which may write anywhere. */
	return strcmp(why, "built-in with effects beyond the statement") != 0 ||
	       strncmp(base_name(fn), "dblink", 6) == 0;
}

void cachepolicy_writes(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			CacheWrites *w)
{
	if (a->parse_error) {
		writes_all(w, "a statement pgrelay cannot parse");
		return;
	}
	char path[MAX_PATH][128];
	size_t n_path = 0;
	bool path_done = false;
	for (size_t i = 0; i < a->n_statements; i++) {
		const SqlStatement *st = &a->statements[i];
		bool tables = false;
		switch (st->kind) {
		case SQL_KIND_TX:
			/* The prepared transaction's writes become visible now; which tables they touched
			 * is not known here. */
			if (st->tx == SQL_TX_COMMIT_PREPARED)
				writes_all(w, "COMMIT PREPARED");
			break;
		case SQL_KIND_READ:
		case SQL_KIND_SESSION:
			break;
		case SQL_KIND_WRITE:
			if (strcmp(st->tag, "TRUNCATE") == 0)
				writes_all(w, "TRUNCATE (it may cascade)");
			else if (st->prepared_name || strcmp(st->tag, "CALL") == 0 || strcmp(st->tag, "DO") == 0)
				writes_all(w, "a procedure, DO block or EXECUTE");
			else
				tables = true;
			break;
		case SQL_KIND_DDL:
			writes_all(w, "DDL");
			break;
		default:
			writes_all(w, "a statement of unknown effect");
			break;
		}
		for (size_t f = 0; f < st->n_functions; f++)
			if (function_changes_tables(st->functions[f]))
				writes_all(w, "a call of a function that may write");
		if (!tables || w->all)
			continue;
		if (!path_done) {
			n_path = router_search_path(search_path, user, path, MAX_PATH);
			path_done = true;
		}
		for (size_t r = 0; r < st->n_relations; r++) {
			const SqlRelation *rel = &st->relations[r];
			if (rel->schema) {
				cachepolicy_add_write(cfg, rel->schema, rel->name, w);
				continue;
			}
			if (n_path == 0)
				writes_all(w, "an unqualified table with an empty search_path");
			for (size_t p = 0; p < n_path; p++)
				cachepolicy_add_write(cfg, path[p], rel->name, w);
		}
	}
}

int cachepolicy_rule_index(const Config *cfg, const ConfigCacheRule *rule)
{
	if (!rule || rule < cfg->cache.rules || rule >= cfg->cache.rules + cfg->cache.n_rules)
		return -1;
	return (int)(rule - cfg->cache.rules);
}
