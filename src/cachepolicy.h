/*
 * cachepolicy — what the result cache may do with a SQL text. Pure: reads the Config, an
 * SqlAnalysis, the route and the service's Catalog (catalog.h); no sockets, no state.
 *
 * Owns: the cacheability decision (and, when not cacheable, the reason in words), the rule and
 * TTL, the comment hints, the table versions a cached result depends on, and the tables whose
 * versions a write bumps (with what the catalog says a write of each kind also changes).
 *
 * Cacheable: exactly one statement, a READ (SELECT / VALUES / TABLE) without a locking clause,
 * no SELECT INTO, no CURRENT_DATE / CURRENT_TIMESTAMP / LOCALTIME..., calling only built-in
 * functions that are read-safe and give the same answer for the same data (not now(), random(),
 * clock_timestamp(), gen_random_uuid(), age(x), current_setting(), pg_* functions, user functions
 * of unknown volatility), naming at least one relation and no system catalog or pg_temp relation,
 * and every relation covered by a cache rule (first match wins, the same schema/table globs as
 * routes; unqualified names resolve through the search_path as for routing) whose ttl is not 0.
 * The entry's TTL is the smallest of its relations' rules. Hints in a comment of the text:
 * `pgrelay:nocache` (never), `pgrelay:cache ttl=30s` (cache for 30 s also tables no rule covers;
 * every other condition still holds).
 *
 * Catalog (reads). Each relation is looked up in the service's catalog: a qualified name as
 * written, an unqualified one in each schema of the search_path (candidates the catalog does not
 * hold are skipped: PostgreSQL cannot be reading them, or they were created after the load, which
 * changed the catalog). No candidate found: not cacheable ("cannot resolve"); read dependencies
 * unknown (a view or row security policy calling a volatile or user function, the clock, a system
 * catalog), more than CATALOG_MAX_RELS, or a foreign table among them: not cacheable, with the
 * catalog's reason. Otherwise the result depends on each relation found and on everything its read
 * dependencies name (a view's base tables, nested views', policy tables). No catalog (not loaded
 * yet, failing, being reloaded after DDL, no primary user): nothing is cacheable.
 *
 * Versions. A table's version is named (service, schema, table); the service's epoch ("" "")
 * counts writes of unknown effect. A relation reached through a view or policy is depended on by
 * its table version (whatever rows its key says: the statement's row facts are about the
 * relation it names).
 *
 * Writes. cachepolicy_writes notes, on the service it runs on, each relation a WRITE statement
 * writes (SqlRelation.writes: DML targets incl. writable CTEs, COPY FROM, TRUNCATE, REFRESH;
 * qualified ones as written, unqualified ones in every schema of the search_path) with the kinds of
 * write, and the tables `cache.invalidate` names for them (the override: bumped as written, all
 * rows); everything of the service ("all") for DDL (which also asks for a new catalog), SELECT
 * INTO, CALL, DO, EXECUTE, COMMIT PREPARED, OTHER statements, texts that do not parse, and calls
 * of functions that may write (user functions not declared read-only). Built-in writing functions
 * that change no table (nextval, setval, advisory locks, set_config, pg_notify, ...) invalidate
 * nothing. At commit, cachepolicy_writes_expand adds, per relation written, the catalog's write
 * effects of each kind (INSERT ... ON CONFLICT DO UPDATE: INSERT and UPDATE; MERGE: its actions;
 * REFRESH MATERIALIZED VIEW: UPDATE of the view): partitions and parents, a view's base tables,
 * foreign-key actions, bumped as writes of rows not known; effects unknown (an enabled trigger or
 * rule), too many, or a relation the catalog does not hold (no catalog at all, too): "all".
 *
 * Rows. A table whose rule names a `key` column is versioned by row too: "t/=B" counts the writes
 * of the rows whose key hashes to bucket B (CACHE_KEY_BUCKETS per table), "t/#" the writes whose
 * rows are not known. A read whose row facts (sqlkey.c) say key = value depends on "t/=B" and
 * "t/#" instead of "t"; a write whose facts say key = value (an UPDATE that does not assign the
 * key, a DELETE, an INSERT giving the key in every row) bumps "t" and "t/=B"; any other write of
 * the table (catalog effects included) bumps "t" and "t/#". Values are compared in a canonical
 * spelling (blanks trimmed, ASCII lower case, uuids as 32 hex digits, integers without sign or
 * leading zeros), so two spellings PostgreSQL reads as one key count as one; values that could be
 * spelled otherwise (decimals, dates, binary parameters of other types) make the statement
 * unkeyed. The key column must compare by value: an integer, uuid or text column with a
 * deterministic collation, never changed by triggers.
 */
#ifndef PGRELAY_CACHEPOLICY_H
#define PGRELAY_CACHEPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "config.h"
#include "proto.h"
#include "router.h"
#include "sqlclass.h"

#define CACHE_MAX_TABLES 32
#define CACHE_KEY_BUCKETS 4096
#define CACHE_ROW_WRITES_MAX 8 /* rows of one table a statement (or WAL transaction) names by key; more: all rows */

typedef struct CacheTable {
	char schema[64]; /* PostgreSQL names are at most 63 bytes */
	char name[80];   /* the table, or "table/=B" (a bucket of keys), "table/#" (unkeyed writes) */
	/* CacheWrites only: SQL_WRITES_* kinds a statement applied to this relation, whose catalog
	 * effects cachepolicy_writes_expand adds; 0: a version bumped as it is */
	uint8_t writes;
	bool unqualified; /* with writes: named without a schema (one schema of the search_path) */
} CacheTable;

typedef struct CacheDecision {
	bool cacheable;
	char why_not[200];            /* for people, when not cacheable */
	const ConfigCacheRule *rule;  /* the rule of the first relation (NULL: the hint decided) */
	int64_t ttl_ms;
	bool hinted;                  /* pgrelay:cache ttl=... */
	size_t n_deps;
	CacheTable deps[CACHE_MAX_TABLES];
} CacheDecision;

typedef struct CacheWrites {
	bool all;                     /* everything of the service */
	const char *all_why;          /* static text, when all */
	bool ddl;                     /* DDL (or what may run some: DO, SELECT INTO, COMMIT PREPARED):
				       * the service's catalog is to be relearned once it commits */
	char detail[200];             /* when all came from the catalog: its reason ("trigger ...") */
	size_t n;
	CacheTable tables[CACHE_MAX_TABLES];
} CacheWrites;

/* Decides for a text routed to route->service (route from router_route on the same analysis);
 * cat: route->service's current catalog (NULL: none, so not cacheable); params: the Bind's values
 * for the extended protocol, else NULL. A hash probe per relation and candidate schema. */
void cachepolicy_decide(const Config *cfg, const Catalog *cat, const char *search_path, const char *user,
			const SqlAnalysis *a, const ProtoBindValues *params, const RouteResult *route,
			CacheDecision *out);
/* The same without a catalog (`pgrelay route` offline): relations as named, as if each were a
 * table, every candidate schema of an unqualified name included. */
void cachepolicy_decide_offline(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
				const ProtoBindValues *params, const RouteResult *route, CacheDecision *out);

/*
 * Adds what the text invalidates to *w (which the caller zeroes first; it accumulates over a
 * transaction). params: the Bind's values, or NULL. at_parse: the text is being prepared (a
 * Parse) and will be noted again with the values of each Bind: statements whose rows depend on
 * parameters are left for then. Returns true when some were left.
 */
bool cachepolicy_writes(const Config *cfg, const char *search_path, const char *user, const SqlAnalysis *a,
			const ProtoBindValues *params, bool at_parse, CacheWrites *w);

/* Adds src to dst: the union (more tables than a CacheWrites holds: everything). */
void cachepolicy_writes_merge(CacheWrites *dst, const CacheWrites *src);

/*
 * What w's writes change on a service whose current catalog is cat (NULL: none; then any relation
 * written makes it "all"): *out = *w plus, for each relation written, the catalog's write effects
 * of its kinds, bumped as writes of rows not known. "all" (with out->detail) when an effect is
 * unknown (trigger, rule) or too many, or a relation written is not in the catalog (an unqualified
 * name: when no schema of the path holds it). out may be w.
 */
void cachepolicy_writes_expand(const Config *cfg, const Catalog *cat, const CacheWrites *w, CacheWrites *out);

/* True when the text writes rows named by parameters (so its writes depend on a Bind's values). */
bool cachepolicy_writes_need_values(const SqlAnalysis *a);

/* Adds one table the WAL reported changed (and what cache.invalidate names for it) to *w, with its
 * ancestors in cat (partitioned parents: the WAL names the leaf; triggers', rules' and cascades'
 * writes come as changes of their own), as writes of rows not known. Not in cat, an ancestor
 * outside it, or cat NULL: everything of the service. key_values: the values the written rows' key
 * column had before and after (as PostgreSQL prints them, at most CACHE_ROW_WRITES_MAX), when the
 * table's rule has a key and all of them are known; n_values 0: the rows are not known (all).
 * Returns true when cat does not hold the table (DDL happened since it was loaded). */
bool cachepolicy_add_write(const Config *cfg, const Catalog *cat, const char *schema, const char *name,
			   const char *const *key_values, size_t n_values, CacheWrites *w);

/* A version's name for people: "s.t", "s.t (rows whose key is in bucket B)", "s.t (writes of
 * rows not known)". */
const char *cachepolicy_version_label(const CacheTable *t, char *buf, size_t cap);

/* The first cache rule covering the table schema.name, or NULL. */
const ConfigCacheRule *cachepolicy_rule_for(const Config *cfg, const char *schema, const char *name);

/* "schema.name" of the rule index, for `pgrelay route`: cache.rules[i] or -1. */
int cachepolicy_rule_index(const Config *cfg, const ConfigCacheRule *rule);

#endif
