/*
 * catalog — what one database's relations depend on and what writes to them change, learned from
 * its system catalogs. Pure: built from the rows of the catalog query (catalog_sql(), fed row by row
 * through a builder, so a test can build one by hand); no sockets, no libpq.
 *
 * Owns: an immutable, refcounted model of the relations of one database (tables, partitioned
 * tables, views, materialized views, foreign tables; schemas pg_catalog, information_schema,
 * pg_toast and pg_temp_* / pg_toast_temp_* excluded), found by (schema, name) or oid, names
 * exactly as PostgreSQL stores them (no quoting); and, computed once when the model is built, per
 * relation:
 *   - its read dependencies: the relations whose contents a read of it reflects: itself; for a
 *     view, recursively what its query reads; for every relation reached that has row-level
 *     security on, what its SELECT policies' USING clauses read (recursively too). A materialized
 *     view depends on itself only (its contents change at REFRESH). Flagged "unknown" (do not
 *     cache) when a view or policy reached calls a function that is not immutable or not built-in
 *     (oid >= 16384, operators' functions included) or reads the clock (CURRENT_DATE, ...), reads
 *     a relation outside the model (a system catalog), or nests deeper than CATALOG_MAX_DEPTH;
 *   - its write effects per kind (INSERT, UPDATE, DELETE, TRUNCATE): the relations whose contents
 *     may change: itself; partition / inheritance descendants (a write through a parent reaches
 *     them); the base relations of a view written through (auto-updatable views; every relation
 *     the view reads, which may be more than the one written); the referencing tables of foreign
 *     keys whose ON DELETE / ON UPDATE action is CASCADE (the same write), SET NULL or SET DEFAULT
 *     (an UPDATE of them), transitively; for TRUNCATE every referencing table (TRUNCATE ...
 *     CASCADE); then the ancestors of every relation written (a read of a parent sees its
 *     children's rows). Flagged "unknown" (invalidate the whole service) when a relation written
 *     has an enabled user trigger for that event (INSTEAD OF ones included) or a non-SELECT rule for
 *     it, or the closure reaches a relation outside the model or more than CATALOG_MAX_VISIT
 *     (relation, write) pairs.
 *   - its ancestors: itself, then its partition / inheritance ancestors (for changes reported relation
 *     by relation, as the WAL does: a leaf's rows are its ancestors' rows too).
 * Each set is also flagged too_many when it holds more than CATALOG_MAX_RELS relations (the
 * cache's limit per entry): then rels holds only the first CATALOG_MAX_RELS.
 *
 * Reads and writes are meant to be used together: a read of a partitioned table depends on the
 * parent only, because every write to a partition names its ancestors among its effects. A
 * statement that writes in two ways takes both sets (INSERT ... ON CONFLICT DO UPDATE: INSERT and
 * UPDATE; MERGE: all three); REFRESH MATERIALIZED VIEW is an UPDATE of the view.
 *
 * Does not own: loading (catalog_loader.c runs catalog_sql()), statement analysis, the cache.
 */
#ifndef PGRELAY_CATALOG_H
#define PGRELAY_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CATALOG_MAX_RELS 32     /* relations per result (the cache's dependencies per entry) */
#define CATALOG_MAX_DEPTH 32    /* view / policy nesting followed for a read */
#define CATALOG_MAX_VISIT 4096  /* (relation, write) pairs followed for one result */
#define CATALOG_MAX_RELATIONS 1000000 /* relations in one model */
#define CATALOG_MAX_ROWS 8000000      /* rows fed to one builder */

typedef enum CatalogWrite {
	CATALOG_INSERT = 0,
	CATALOG_UPDATE,
	CATALOG_DELETE,
	CATALOG_TRUNCATE,
} CatalogWrite;
#define CATALOG_WRITE_KINDS 4

typedef struct CatalogRel CatalogRel;

/* A set of relations: read dependencies, or write effects of one kind. */
typedef struct CatalogSet {
	const CatalogRel *const *rels; /* the relation itself first, then in the order reached */
	size_t n;                      /* <= CATALOG_MAX_RELS */
	size_t total;                  /* relations in the closure (> n when too_many) */
	bool too_many;                 /* more than CATALOG_MAX_RELS: rels is cut */
	bool unknown;                  /* reads: not cacheable; writes: effects unknown (invalidate all) */
	const char *why;               /* for logs when unknown or too_many, else "" (owned by the catalog) */
} CatalogSet;

struct CatalogRel {
	uint32_t oid;
	char relkind;       /* pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign */
	bool row_security;  /* pg_class.relrowsecurity */
	const char *schema; /* as stored (pg_namespace.nspname) */
	const char *name;   /* as stored (pg_class.relname) */
	CatalogSet read;
	CatalogSet write[CATALOG_WRITE_KINDS];
	/* itself, then its partition / inheritance ancestors (nearest first): whose rows a change of
	 * this relation's own rows also changes (what the WAL reports is the leaf written; triggers',
	 * rules' and foreign keys' writes come as changes of their own). unknown when an ancestor is
	 * outside the model. */
	CatalogSet ancestors;
};

typedef struct Catalog Catalog;
typedef struct CatalogBuilder CatalogBuilder;

/* ---- building ---- */

CatalogBuilder *catalog_builder_new(void);

/*
 * One row of the catalog query's results as text (NULL: SQL NULL), first column the row kind:
 *   rel   oid, schema, name, relkind, relrowsecurity (t/f)
 *   inh   child oid, parent oid                           (pg_inherits)
 *   vrel  view oid, relation oid, outside                 (a view's query reads the relation;
 *                                                          outside: "schema.name" when it is in an
 *                                                          excluded schema, else NULL)
 *   prel  table oid, relation oid, outside                (a SELECT policy's USING clause reads it)
 *   vfn   view oid, function oid, provolatile, name       (a view's query calls the function; oid
 *                                                          0 with volatility s: a clock value)
 *   pfn   table oid, function oid, provolatile, name      (a SELECT policy's USING clause calls it)
 *   fk    referencing oid, referenced oid, confdeltype, confupdtype, name
 *   trg   relation oid, tgtype, tgenabled, name           (user triggers)
 *   rule  relation oid, ev_type, ev_enabled, name         (rules)
 * Rows may come in any order; duplicates are harmless; rows naming relations the model does not
 * hold are kept as "outside" references (rel rows in excluded schemas or with names longer than
 * 63 bytes are skipped). False (err set, the builder unusable but still to be freed) for an
 * unknown kind, a wrong column count, a malformed number or character, or past CATALOG_MAX_ROWS /
 * CATALOG_MAX_RELATIONS.
 */
bool catalog_builder_row(CatalogBuilder *b, const char *const *cols, size_t n_cols, char *err, size_t errlen);

/* Builds the model and every result; frees the builder. NULL (err set) if a row failed or two
 * rel rows share an oid or a (schema, name). */
Catalog *catalog_builder_finish(CatalogBuilder *b, char *err, size_t errlen);
/* Abandons a builder. NULL is fine. */
void catalog_builder_free(CatalogBuilder *b);

Catalog *catalog_ref(Catalog *c);
void catalog_unref(Catalog *c); /* NULL is fine */

/* ---- reading ---- */

/* NULL: not in the model (a system schema, a sequence, another session's temporary table, or
 * created after the load): reads of it are not cacheable, writes to it have unknown effects. */
const CatalogRel *catalog_find(const Catalog *c, const char *schema, const char *name);
const CatalogRel *catalog_find_oid(const Catalog *c, uint32_t oid);
size_t catalog_count(const Catalog *c);
const CatalogRel *catalog_at(const Catalog *c, size_t i);
/* A hash of every row the model was built from (equal models: equal fingerprints). */
uint64_t catalog_fingerprint(const Catalog *c);

static inline const CatalogSet *catalog_read_deps(const CatalogRel *r) { return &r->read; }
static inline const CatalogSet *catalog_write_effects(const CatalogRel *r, CatalogWrite kind)
{
	return &r->write[kind];
}
static inline const CatalogSet *catalog_ancestors(const CatalogRel *r) { return &r->ancestors; }

/* "INSERT", "UPDATE", "DELETE", "TRUNCATE". */
const char *catalog_write_name(CatalogWrite kind);

/*
 * The catalog query (catalog.c explains each part): one simple-protocol text, so one round trip,
 * of a READ ONLY, REPEATABLE READ transaction whose SELECTs return the rows catalog_builder_row
 * takes. Written into buf with the server-side statement_timeout (ms; 0: none); returns buf, or
 * NULL if cap is too small (CATALOG_SQL_CAP is enough).
 */
char *catalog_sql(char *buf, size_t cap, long long statement_timeout_ms);
#define CATALOG_SQL_CAP 8192

#endif
