/*
 * cachepolicy — the result cache's rules applied to one analyzed SQL text: cacheable or why not,
 * TTL, the table versions a result depends on, the tables a write invalidates. See cachepolicy.h.
 */
#include "cachepolicy.h"

#include <ctype.h>
#include <stdarg.h>
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

/* The entry of schema.name among tables, added if missing; NULL when there is no room. */
static CacheTable *table_entry(CacheTable *tables, size_t *n, const char *schema, const char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(tables[i].schema, schema) == 0 && strcmp(tables[i].name, name) == 0)
			return &tables[i];
	if (*n >= CACHE_MAX_TABLES || strlen(schema) >= sizeof tables[0].schema ||
	    strlen(name) >= sizeof tables[0].name)
		return NULL;
	CacheTable *t = &tables[*n];
	memset(t, 0, sizeof *t);
	snprintf(t->schema, sizeof t->schema, "%s", schema);
	snprintf(t->name, sizeof t->name, "%s", name);
	(*n)++;
	return t;
}

static bool add_table(CacheTable *tables, size_t *n, const char *schema, const char *name)
{
	return table_entry(tables, n, schema, name) != NULL;
}

/* Notes on an entry that a statement wrote the relation in the ways `writes` says. */
static void mark_written(CacheTable *t, unsigned writes, bool unqualified)
{
	if (!writes)
		return;
	t->unqualified = t->writes ? t->unqualified && unqualified : unqualified;
	t->writes |= (uint8_t)writes;
}

/* ---- row keys ---- */

#define UNKEYED (-2) /* "table/#": writes of rows not known */

const ConfigCacheRule *cachepolicy_rule_for(const Config *cfg, const char *schema, const char *name)
{
	const ConfigCache *c = &cfg->cache;
	for (size_t i = 0; i < c->n_rules; i++)
		if (router_match_names(c->rules[i].schemas, c->rules[i].n_schemas, c->rules[i].tables, c->rules[i].n_tables,
				       schema, name))
			return &c->rules[i];
	return NULL;
}

static bool append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	if (*len + n >= cap || memchr(s, 0, n))
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	return true;
}

/* A parameter's value as text: text format as sent; binary only for integer, uuid and text types. */
static bool append_param(const ProtoBindValues *params, int p, char *buf, size_t cap, size_t *len)
{
	if (!params || p < 1 || (size_t)p > params->n || !params->values[p - 1])
		return false;
	const uint8_t *v = params->values[p - 1];
	uint32_t n = params->lens[p - 1];
	if (!params->binary[p - 1])
		return append(buf, cap, len, (const char *)v, n);
	char tmp[48];
	int64_t x = 0;
	switch (params->types[p - 1]) {
	case 21: /* int2 */
	case 23: /* int4 */
	case 20: /* int8 */
		if (n != 2 && n != 4 && n != 8)
			return false;
		for (uint32_t i = 0; i < n; i++)
			x = (int64_t)((uint64_t)x << 8 | v[i]);
		if (n == 2)
			x = (int16_t)x;
		else if (n == 4)
			x = (int32_t)x;
		snprintf(tmp, sizeof tmp, "%lld", (long long)x);
		return append(buf, cap, len, tmp, strlen(tmp));
	case 2950: /* uuid */
		if (n != 16)
			return false;
		for (int i = 0; i < 16; i++)
			snprintf(tmp + 2 * i, 3, "%02x", v[i]);
		return append(buf, cap, len, tmp, 32);
	case 25:   /* text */
	case 1043: /* varchar */
	case 1042: /* bpchar */
		return append(buf, cap, len, (const char *)v, n);
	default:
		return false;
	}
}

/* Rewrites buf (len bytes) in the canonical spelling of a key; false when the value could be
 * spelled in ways this cannot tell apart (numbers other than integers). */
static bool canonical(char *buf, size_t *len)
{
	size_t s = 0, e = *len;
	while (s < e && isspace((unsigned char)buf[s]))
		s++;
	while (e > s && isspace((unsigned char)buf[e - 1]))
		e--;
	size_t n = 0;
	for (size_t i = s; i < e; i++)
		buf[n++] = (char)tolower((unsigned char)buf[i]);
	buf[n] = 0;
	/* a uuid: optional braces, hyphens anywhere, 32 hex digits */
	char hex[33];
	size_t h = 0, i = buf[0] == '{' && n > 1 && buf[n - 1] == '}' ? 1 : 0, end = i ? n - 1 : n;
	bool is_uuid = true;
	for (; i < end && is_uuid; i++) {
		if (buf[i] == '-')
			continue;
		if (h == 32 || !isxdigit((unsigned char)buf[i]))
			is_uuid = false;
		else
			hex[h++] = buf[i];
	}
	if (is_uuid && h == 32) {
		memcpy(buf, hex, 32);
		buf[*len = 32] = 0;
		return true;
	}
	if (n && (isdigit((unsigned char)buf[0]) || buf[0] == '+' || buf[0] == '-')) {
		size_t j = buf[0] == '+' || buf[0] == '-' ? 1 : 0;
		bool negative = buf[0] == '-';
		if (j == n)
			return false;
		for (size_t k = j; k < n; k++)
			if (!isdigit((unsigned char)buf[k]))
				return false;
		while (j + 1 < n && buf[j] == '0')
			j++;
		if (strcmp(buf + j, "0") == 0)
			negative = false;
		size_t m = 0;
		if (negative)
			buf[m++] = '-';
		memmove(buf + m, buf + j, n - j);
		n = m + n - j;
		buf[n] = 0;
	}
	*len = n;
	return true;
}

/* The bucket of a key value (buf: len bytes and room for a NUL, rewritten in place), or -1 when
 * its spelling cannot be made canonical. */
static int bucket_of(char *buf, size_t len)
{
	if (!canonical(buf, &len))
		return -1;
	uint64_t hash = 14695981039346656037ULL; /* FNV-1a: the same in every pgrelay sharing Redis */
	for (size_t k = 0; k < len; k++)
		hash = (hash ^ (uint8_t)buf[k]) * 1099511628211ULL;
	return (int)(hash % CACHE_KEY_BUCKETS);
}

/* The key bucket of relation r's column `column` in `row` of statement st, or -1 when the
 * statement does not say it (or says it with a value that cannot be known). */
static int key_bucket(const SqlStatement *st, const SqlRelation *r, const char *column, int row,
		      const ProtoBindValues *params)
{
	for (size_t i = 0; i < st->n_key_eqs; i++) {
		const SqlKeyEq *eq = &st->key_eqs[i];
		if (eq->relation != r || eq->row != row || strcmp(eq->column, column) != 0)
			continue;
		char buf[512];
		size_t len = 0;
		for (size_t p = 0; p < eq->n_parts; p++)
			if (eq->parts[p].param ? !append_param(params, eq->parts[p].param, buf, sizeof buf, &len)
					       : !append(buf, sizeof buf, &len, eq->parts[p].text, strlen(eq->parts[p].text)))
				return -1;
		buf[len] = 0;
		return bucket_of(buf, len);
	}
	return -1;
}

static bool key_uses_params(const SqlStatement *st, const SqlRelation *r)
{
	for (size_t i = 0; i < st->n_key_eqs; i++)
		for (size_t p = 0; st->key_eqs[i].relation == r && p < st->key_eqs[i].n_parts; p++)
			if (st->key_eqs[i].parts[p].param)
				return true;
	return false;
}

bool cachepolicy_writes_need_values(const SqlAnalysis *a)
{
	for (size_t i = 0; i < a->n_statements; i++)
		if (a->statements[i].key_target && key_uses_params(&a->statements[i], a->statements[i].key_target))
			return true;
	return false;
}

/* The version name of a table, of one of its key buckets (bucket >= 0), or of its unkeyed writes. */
static bool add_version(CacheTable *tables, size_t *n, const char *schema, const char *name, int bucket)
{
	char part[sizeof tables[0].name];
	if (bucket == -1)
		return add_table(tables, n, schema, name);
	int len = bucket >= 0 ? snprintf(part, sizeof part, "%s/=%d", name, bucket) : snprintf(part, sizeof part, "%s/#", name);
	return len > 0 && (size_t)len < sizeof part && add_table(tables, n, schema, part);
}

/* What a read of relation r in schema depends on (r itself): its key bucket's and unkeyed writes'
 * versions when the statement says its key, else the table's version. */
static bool add_read_one(const Config *cfg, const SqlStatement *st, const SqlRelation *r, const char *schema,
			 const ProtoBindValues *params, CacheTable *deps, size_t *n)
{
	const ConfigCacheRule *rule = cachepolicy_rule_for(cfg, schema, r->name);
	int b = rule && rule->key ? key_bucket(st, r, rule->key, 0, params) : -1;
	return b >= 0 ? add_version(deps, n, schema, r->name, b) && add_version(deps, n, schema, r->name, UNKEYED)
		      : add_table(deps, n, schema, r->name);
}

/* Without a catalog: per table it may be (every schema of the path for an unqualified name). */
static bool add_read(const Config *cfg, const SqlStatement *st, const SqlRelation *r, const ProtoBindValues *params,
		     CacheTable *deps, size_t *n, char (*path)[128], size_t n_path)
{
	size_t candidates = r->schema ? 1 : n_path;
	if (candidates == 0)
		return false;
	for (size_t i = 0; i < candidates; i++)
		if (!add_read_one(cfg, st, r, r->schema ? r->schema : path[i], params, deps, n))
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

/* With the catalog: what a read of r depends on, or why it cannot be cached (why set, false). */
static bool add_read_catalog(const Config *cfg, const Catalog *cat, const char *service, const SqlStatement *st,
			     const SqlRelation *r, const ProtoBindValues *params, CacheTable *deps, size_t *n,
			     char (*path)[128], size_t n_path, char *why, size_t why_cap)
{
	size_t candidates = r->schema ? 1 : n_path, found = 0;
	for (size_t i = 0; i < candidates; i++) {
		const char *schema = r->schema ? r->schema : path[i];
		const CatalogRel *cr = catalog_find(cat, schema, r->name);
		if (!cr)
			continue; /* PostgreSQL cannot be reading it (or it is newer than the catalog) */
		found++;
		const CatalogSet *rd = catalog_read_deps(cr);
		if (rd->unknown) {
			snprintf(why, why_cap, "reading %s.%s is not cacheable: %s", schema, r->name, rd->why);
			return false;
		}
		if (rd->too_many) {
			snprintf(why, why_cap, "reading %s.%s depends on %zu relations (more than %d)", schema, r->name,
				 rd->total, CATALOG_MAX_RELS);
			return false;
		}
		for (size_t j = 0; j < rd->n; j++)
			if (rd->rels[j]->relkind == 'f') {
				snprintf(why, why_cap, "reading %s.%s reads %s.%s, a foreign table (its rows change on "
					 "another server)", schema, r->name, rd->rels[j]->schema, rd->rels[j]->name);
				return false;
			}
		/* itself (by row when the statement names its key), then what it reads through views
		 * and row security policies, by table */
		bool ok = add_read_one(cfg, st, r, schema, params, deps, n);
		for (size_t j = 1; ok && j < rd->n; j++)
			ok = add_table(deps, n, rd->rels[j]->schema, rd->rels[j]->name);
		if (!ok) {
			snprintf(why, why_cap, "it depends on more than %d tables", CACHE_MAX_TABLES);
			return false;
		}
	}
	if (!found) {
		if (r->schema)
			snprintf(why, why_cap, "pgrelay cannot resolve relation %s.%s in service %s's catalog", r->schema,
				 r->name, service);
		else
			snprintf(why, why_cap, "pgrelay cannot resolve relation %s in service %s's catalog (search_path: "
				 "%zu schema%s)", r->name, service, n_path, n_path == 1 ? "" : "s");
		return false;
	}
	return true;
}

static void decide(const Config *cfg, const Catalog *cat, bool offline, const char *search_path, const char *user,
		   const SqlAnalysis *a, const ProtoBindValues *params, const RouteResult *route, CacheDecision *out)
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
	int hint = a->hints ? parse_hint(a->hints, strlen(a->hints), &hint_ttl) : 0;
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
	}
	if (!offline && !cat)
		NOT_CACHEABLE("pgrelay has no current catalog of service %s (not loaded yet, failing, being reloaded "
			      "after DDL, or no primary user)", route->service->name);
	for (size_t i = 0; i < st->n_relations; i++) {
		const SqlRelation *r = &st->relations[i];
		if (offline) {
			if (!add_read(cfg, st, r, params, out->deps, &out->n_deps, path, n_path))
				NOT_CACHEABLE("it depends on more than %d tables (or on an unqualified name with an empty "
					      "search_path)", CACHE_MAX_TABLES);
		} else if (!add_read_catalog(cfg, cat, route->service->name, st, r, params, out->deps, &out->n_deps, path,
					     n_path, out->why_not, sizeof out->why_not)) {
			out->n_deps = 0;
			return;
		}
	}
	if (hint > 0) {
		ttl = hint_ttl;
		out->hinted = true;
	}
	out->ttl_ms = ttl;
	out->cacheable = true;
}

void cachepolicy_decide(const Config *cfg, const Catalog *cat, const char *search_path, const char *user,
			const SqlAnalysis *a, const ProtoBindValues *params, const RouteResult *route,
			CacheDecision *out)
{
	decide(cfg, cat, false, search_path, user, a, params, route, out);
}

void cachepolicy_decide_offline(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
				const ProtoBindValues *params, const RouteResult *route, CacheDecision *out)
{
	decide(cfg, NULL, true, search_path, user, a, params, route, out);
}

static void writes_all(CacheWrites *w, const char *why)
{
	if (!w->all) {
		w->all = true;
		w->all_why = why;
	}
}

/* "all" because of what the catalog says (detail: its reason, copied). */
static void writes_all_detail(CacheWrites *w, const char *why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void writes_all_detail(CacheWrites *w, const char *why, const char *fmt, ...)
{
	if (w->all)
		return;
	writes_all(w, why);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->detail, sizeof w->detail, fmt, ap);
	va_end(ap);
}

void cachepolicy_writes_merge(CacheWrites *dst, const CacheWrites *src)
{
	if (src->all && !dst->all) {
		writes_all(dst, src->all_why);
		memcpy(dst->detail, src->detail, sizeof dst->detail);
	}
	dst->ddl |= src->ddl;
	for (size_t i = 0; i < src->n; i++) {
		const CacheTable *t = &src->tables[i];
		CacheTable *e = table_entry(dst->tables, &dst->n, t->schema, t->name);
		if (e)
			mark_written(e, t->writes, t->unqualified);
		else
			writes_all(dst, "too many tables");
	}
}

/* A write of schema.name: its version, and its rows' when its rule has a key: their buckets, or all
 * rows when n_buckets is 0 or one of them is not known (-1). The relation's entry, or NULL. */
static CacheTable *add_write_rows(const Config *cfg, const char *schema, const char *name, const int *buckets,
				  size_t n_buckets, CacheWrites *w)
{
	CacheTable *e = table_entry(w->tables, &w->n, schema, name);
	if (!e)
		writes_all(w, "too many tables");
	const ConfigCacheRule *rule = cachepolicy_rule_for(cfg, schema, name);
	if (!rule || !rule->key)
		return e;
	size_t at = e ? (size_t)(e - w->tables) : 0;
	for (size_t i = 0; i < n_buckets; i++)
		if (buckets[i] < 0)
			n_buckets = 0;
	if (w->n + n_buckets + 2 > CACHE_MAX_TABLES)
		n_buckets = 0; /* a transaction of many rows: all rows, rather than everything of the service */
	for (size_t i = 0; i < (n_buckets ? n_buckets : 1); i++)
		if (!add_version(w->tables, &w->n, schema, name, n_buckets ? buckets[i] : UNKEYED))
			writes_all(w, "too many tables");
	return e ? &w->tables[at] : NULL;
}

/* The tables `cache.invalidate` names for schema.name (the override): all their rows, as named. */
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
				add_write_rows(cfg, s, dot + 1, NULL, 0, w);
			} else {
				add_write_rows(cfg, schema, also, NULL, 0, w);
			}
		}
	}
}

/* Adds the relations of effect set s (but the first: the relation written itself, whose rows are
 * already noted) as writes of rows not known; false (w all) when s cannot be used. */
static bool add_effects(const Config *cfg, const CatalogSet *s, const char *schema, const char *name,
			const char *what, CacheWrites *w)
{
	if (s->unknown || s->too_many) {
		writes_all_detail(w, s->unknown ? "a write whose effects pgrelay cannot know (trigger, rule)"
						: "a write that changes too many relations",
				  "%s of %s.%s: %s", what, schema, name, s->why);
		return false;
	}
	for (size_t i = 1; i < s->n; i++)
		add_write_rows(cfg, s->rels[i]->schema, s->rels[i]->name, NULL, 0, w);
	return true;
}

bool cachepolicy_add_write(const Config *cfg, const Catalog *cat, const char *schema, const char *name,
			   const char *const *key_values, size_t n_values, CacheWrites *w)
{
	int buckets[CACHE_ROW_WRITES_MAX];
	size_t n = n_values <= CACHE_ROW_WRITES_MAX ? n_values : 0;
	for (size_t i = 0; i < n; i++) {
		char buf[512];
		size_t len = strlen(key_values[i]);
		buckets[i] = len < sizeof buf ? bucket_of(memcpy(buf, key_values[i], len + 1), len) : -1;
	}
	add_write_rows(cfg, schema, name, buckets, n, w);
	add_dependents(cfg, schema, name, w);
	const CatalogRel *r = catalog_find(cat, schema, name);
	if (!cat)
		writes_all(w, "a change seen before the service's catalog was loaded (or while it is reloaded after DDL)");
	else if (!r)
		writes_all_detail(w, "a change of a relation the catalog does not hold", "%s.%s is not in the catalog",
				  schema, name);
	else if (!w->all)
		add_effects(cfg, catalog_ancestors(r), schema, name, "a change", w);
	return cat && !r;
}

static const CatalogWrite write_kinds[CATALOG_WRITE_KINDS] = {CATALOG_INSERT, CATALOG_UPDATE, CATALOG_DELETE,
							      CATALOG_TRUNCATE};
static const unsigned write_bits[CATALOG_WRITE_KINDS] = {SQL_WRITES_INSERT, SQL_WRITES_UPDATE, SQL_WRITES_DELETE,
							 SQL_WRITES_TRUNCATE};

/* An unqualified name's schema cat does not hold: fine when another schema of the path does. */
static bool other_candidate_known(const Catalog *cat, const CacheWrites *w, size_t n, const CacheTable *t)
{
	for (size_t i = 0; i < n; i++)
		if (w->tables[i].writes && &w->tables[i] != t && strcmp(w->tables[i].name, t->name) == 0 &&
		    catalog_find(cat, w->tables[i].schema, w->tables[i].name))
			return true;
	return false;
}

void cachepolicy_writes_expand(const Config *cfg, const Catalog *cat, const CacheWrites *w, CacheWrites *out)
{
	if (out != w)
		*out = *w;
	size_t n = out->n; /* effects are appended after the relations written */
	for (size_t i = 0; i < n && !out->all; i++) {
		CacheTable t = out->tables[i];
		if (!t.writes)
			continue;
		if (!cat) {
			writes_all(out, "a write before the service's catalog was loaded (or while it is reloaded after DDL)");
			break;
		}
		const CatalogRel *r = catalog_find(cat, t.schema, t.name);
		if (!r) {
			if (t.unqualified && other_candidate_known(cat, out, n, &out->tables[i]))
				continue; /* not where PostgreSQL found it (or newer than the catalog) */
			writes_all_detail(out, "a write to a relation the catalog does not hold",
					  "%s.%s is not in the catalog", t.schema, t.name);
			break;
		}
		for (int k = 0; k < CATALOG_WRITE_KINDS && !out->all; k++)
			if (t.writes & write_bits[k])
				add_effects(cfg, catalog_write_effects(r, write_kinds[k]), t.schema, t.name,
					    catalog_write_name(write_kinds[k]), out);
	}
}

/* A relation a write statement writes (kinds: SQL_WRITES_*): the rows it changes when it is the
 * target and says its key in every row, else all rows; the tables cache.invalidate names for it. */
static void add_written(const Config *cfg, const SqlStatement *st, const SqlRelation *rel, const char *schema,
			unsigned kinds, bool unqualified, const ProtoBindValues *params, CacheWrites *w)
{
	int buckets[CACHE_ROW_WRITES_MAX];
	size_t n = 0;
	const ConfigCacheRule *rule = rel == st->key_target ? cachepolicy_rule_for(cfg, schema, rel->name) : NULL;
	if (rule && rule->key && st->key_rows > 0 && st->key_rows <= CACHE_ROW_WRITES_MAX)
		for (; n < (size_t)st->key_rows; n++)
			buckets[n] = key_bucket(st, rel, rule->key, (int)n, params);
	CacheTable *e = add_write_rows(cfg, schema, rel->name, buckets, n, w);
	if (e)
		mark_written(e, kinds, unqualified);
	add_dependents(cfg, schema, rel->name, w);
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

/*
 * Notes in w what a statement of st's kind does that is not a write of named tables (everything
 * cached, DDL). Returns true when the statement writes tables its relations name.
 */
static bool statement_writes_tables(const SqlStatement *st, CacheWrites *w)
{
	bool tables = false;
	switch (st->kind) {
	case SQL_KIND_TX:
		/* The prepared transaction's writes become visible now; which tables they touched
		 * is not known here (nor whether it ran DDL). */
		if (st->tx == SQL_TX_COMMIT_PREPARED) {
			writes_all(w, "COMMIT PREPARED");
			w->ddl = true;
		}
		break;
	case SQL_KIND_READ:
	case SQL_KIND_SESSION:
		break;
	case SQL_KIND_WRITE:
		if (st->prepared_name || strcmp(st->tag, "CALL") == 0 || strcmp(st->tag, "DO") == 0) {
			writes_all(w, "a procedure, DO block or EXECUTE");
			w->ddl |= strcmp(st->tag, "DO") == 0; /* DO blocks run migrations */
		} else if (st->select_into) {
			writes_all(w, "SELECT INTO (it creates a table)");
			w->ddl = true;
		} else if (strcmp(st->tag, "LOCK") != 0 && strcmp(st->tag, "NOTIFY") != 0) {
			tables = true;
		}
		break;
	case SQL_KIND_DDL:
		writes_all(w, "DDL");
		w->ddl = true;
		break;
	default:
		writes_all(w, "a statement of unknown effect");
		break;
	}
	return tables;
}

/* Adds to w each relation st writes: a qualified one in its schema, an unqualified one in every
 * schema of the search path (path[0..n_path)). */
static void add_written_relations(const Config *cfg, const SqlStatement *st, char path[][128], size_t n_path,
				  const ProtoBindValues *params, CacheWrites *w)
{
	for (size_t r = 0; r < st->n_relations; r++) {
		const SqlRelation *rel = &st->relations[r];
		if (!rel->writes)
			continue; /* only read (a source, USING, FROM) */
		if (rel->schema) {
			add_written(cfg, st, rel, rel->schema, rel->writes, false, params, w);
			continue;
		}
		if (n_path == 0)
			writes_all(w, "an unqualified table with an empty search_path");
		for (size_t p = 0; p < n_path; p++)
			add_written(cfg, st, rel, path[p], rel->writes, true, params, w);
	}
}

bool cachepolicy_writes(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			const ProtoBindValues *params, bool at_parse, CacheWrites *w)
{
	bool deferred = false;
	if (a->parse_error) {
		writes_all(w, "a statement pgrelay cannot parse");
		return false;
	}
	char path[MAX_PATH][128];
	size_t n_path = 0;
	bool path_done = false;
	for (size_t i = 0; i < a->n_statements; i++) {
		const SqlStatement *st = &a->statements[i];
		if (at_parse && st->key_target && key_uses_params(st, st->key_target)) {
			deferred = true; /* its rows are known at Bind */
			continue;
		}
		bool tables = statement_writes_tables(st, w);
		for (size_t f = 0; f < st->n_functions; f++)
			if (function_changes_tables(st->functions[f]))
				writes_all(w, "a call of a function that may write");
		if (!tables || w->all)
			continue;
		bool any = false;
		for (size_t r = 0; r < st->n_relations; r++)
			any |= st->relations[r].writes != 0;
		if (!any) {
			writes_all(w, "a write pgrelay cannot attribute to a table");
			continue;
		}
		if (!path_done) {
			n_path = router_search_path(search_path, user, path, MAX_PATH);
			path_done = true;
		}
		add_written_relations(cfg, st, path, n_path, params, w);
	}
	return deferred;
}

int cachepolicy_rule_index(const Config *cfg, const ConfigCacheRule *rule)
{
	if (!rule || rule < cfg->cache.rules || rule >= cfg->cache.rules + cfg->cache.n_rules)
		return -1;
	return (int)(rule - cfg->cache.rules);
}

const char *cachepolicy_version_label(const CacheTable *t, char *buf, size_t cap)
{
	const char *slash = strrchr(t->name, '/');
	int len = slash ? (int)(slash - t->name) : (int)strlen(t->name);
	if (slash && slash[1] == '=')
		snprintf(buf, cap, "%s.%.*s (rows whose key is in bucket %s)", t->schema, len, t->name, slash + 2);
	else if (slash && slash[1] == '#' && !slash[2])
		snprintf(buf, cap, "%s.%.*s (writes of rows not known)", t->schema, len, t->name);
	else
		snprintf(buf, cap, "%s.%s", t->schema, t->name);
	return buf;
}
