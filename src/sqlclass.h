/*
 * sqlclass — what a SQL string does, from the real PostgreSQL parser (libpg_query).
 *
 * Owns: parsing query text (JSON parse tree, read with jsontree; token positions from
 * libpg_query's scanner), the facts pgrelay needs about it, and a cache of analyses by statement
 * text so a repeated statement is parsed once. Knows nothing of sockets, pools or routing rules.
 *
 * Facts about the whole text: statements that need a session of their own (LISTEN, session
 * advisory locks, temporary tables, WITH HOLD cursors) and the prepared-statement names in
 * PREPARE / EXECUTE / DEALLOCATE with their byte ranges, so they can be rewritten.
 *
 * Facts per statement (SqlStatement, one per statement of a multi-statement string, in order):
 * its exact byte range, its kind, the relations and functions it names, locking clauses,
 * transaction-control and SET/RESET detail. Kinds, by statement type:
 *
 *   READ     SELECT, VALUES, TABLE, COPY ... TO (table or read query), EXPLAIN without ANALYZE
 *            (nothing executes, whatever the inner statement), EXPLAIN ANALYZE of a read,
 *            DECLARE CURSOR over a read. A SELECT ... FOR UPDATE/SHARE stays READ with
 *            `locking` set.
 *   WRITE    INSERT, UPDATE, DELETE, MERGE, a statement holding any of them (writable CTEs,
 *            COPY (INSERT ... RETURNING) TO), SELECT INTO, COPY ... FROM, CALL, DO, LOCK,
 *            TRUNCATE, REFRESH MATERIALIZED VIEW, NOTIFY (it must reach the primary's
 *            listeners), EXPLAIN ANALYZE of a write, and EXECUTE (the prepared statement is not
 *            known here: `prepared_name` says which one; a caller that remembers the PREPARE's
 *            analysis may use that instead).
 *   DDL      CREATE / ALTER / DROP of anything (CREATE TABLE AS and CREATE MATERIALIZED VIEW
 *            included), COMMENT, GRANT / REVOKE, SECURITY LABEL, REASSIGN / DROP OWNED,
 *            IMPORT FOREIGN SCHEMA, CREATE RULE / INDEX / VIEW.
 *   TX       BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE,
 *            ROLLBACK TO, PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED (`tx` detail).
 *   SESSION  SET, RESET, SHOW, DISCARD, SET CONSTRAINTS, PREPARE, DEALLOCATE, LISTEN, UNLISTEN,
 *            LOAD, FETCH, MOVE, CLOSE. `harmless` is true for all of them but LISTEN and UNLISTEN
 *            (they change no data and run on a hot standby); a PREPARE also carries the kind of
 *            the statement it prepares in `inner_kind`, and that statement's relations.
 *   OTHER    VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, ALTER SYSTEM and anything newer.
 *
 * Relations are every table, view, sequence or index the statement names, as written
 * (schema-qualified or not; a three-part name loses its database part): FROM items at any depth
 * (joins, subqueries, CTE bodies, LATERAL), DML targets and sources (INSERT ... SELECT,
 * UPDATE ... FROM, DELETE ... USING, MERGE), COPY, LOCK, TRUNCATE, VACUUM, DDL targets (CREATE
 * TABLE / VIEW / INDEX ON / SEQUENCE, ALTER, DROP TABLE a, b, COMMENT ON TABLE / COLUMN, GRANT ON
 * TABLE), foreign-key targets, LIKE and INHERITS sources, and the statements inside EXPLAIN,
 * PREPARE, DECLARE, CREATE TABLE AS / VIEW. An unqualified name that is a CTE in scope is not a
 * relation (a non-recursive CTE is in scope in later CTEs and the main query, a recursive one in
 * its own body too); FOR UPDATE OF x names no relation. Deduplicated within a statement. Each
 * carries what the statement does to its rows (`writes`: INSERT / UPDATE / DELETE / TRUNCATE of
 * DML targets, COPY FROM, TRUNCATE, REFRESH), so that a source is told from a target.
 *
 * Schemas (`schemas`) are schema names the statement uses without naming a relation in them:
 * CREATE / DROP / ALTER ... RENAME SCHEMA, GRANT ... ON ALL ... IN SCHEMA, ALTER DEFAULT
 * PRIVILEGES IN SCHEMA, ALTER ... SET SCHEMA (the new one), and the schema of qualified function
 * calls, CREATE FUNCTION / PROCEDURE and DROP of functions, types and domains — except
 * pg_catalog and information_schema.
 *
 * Functions are every FuncCall, as "name" or "schema.name" the way PostgreSQL resolves the
 * identifiers (unquoted ones folded to lower case), deduplicated. SQL syntax that PostgreSQL turns
 * into calls appears as such (EXTRACT → pg_catalog.extract, AT TIME ZONE → pg_catalog.timezone,
 * SUBSTRING ... FROM → pg_catalog.substring); CURRENT_TIMESTAMP, COALESCE, GREATEST and the like
 * are not calls.
 *
 * Everything reachable from an SqlAnalysis is immutable once returned: a cached analysis is
 * shared by every caller that analyzed the same text (refcounted; one event loop, no locking).
 */
#ifndef PGRELAY_SQLCLASS_H
#define PGRELAY_SQLCLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prepared.h" /* HashMap */

#include "sqltypes.h"


typedef struct SqlArena SqlArena;

typedef struct SqlAnalysis {
	int refcount;
	bool parse_error;
	/* "syntax error at or near ..." (parse_error only); also set, with parse_error, for a text
	 * pgrelay cannot analyze although PostgreSQL may accept it (nested beyond SQL_MAX_DEPTH). */
	const char *parse_error_message;
	int parse_error_position;        /* 0-based byte offset of the error, -1 if unknown */
	const char *needs_session; /* NULL, or why the statement needs a session ("LISTEN", ...) */
	size_t n_refs;
	SqlNameRef *refs;          /* in text order */
	/* The text's comments that mention "pgrelay:" (cache hints), joined by newlines; NULL if none.
	 * Hints count only in comments, never inside a string literal. */
	const char *hints;
	size_t n_statements;       /* 0 for an empty text (or only comments) and on parse_error */
	const SqlStatement *statements;
	SqlArena *arena;           /* private: every string and array above */
} SqlAnalysis;

typedef struct SqlCache {
	HashMap by_text;
	size_t limit; /* at most this many texts (then the cache starts over); 0 = no caching */
	size_t bytes; /* texts and analyses held; at most SQL_CACHE_MAX_BYTES (then it starts over) */
	uint64_t hits, misses;
	struct JsonTree *json; /* private: the JSON reader, reused (its arena and stacks kept between texts) */
} SqlCache;

/* Parse trees nested deeper than this (in JSON levels, about two per expression or subquery
 * level) are not analyzed: parse_error is set, with a message saying so. */
#define SQL_MAX_DEPTH 4096

/* The analysis cache's byte budget, and the longest text it keeps (longer ones are analyzed for
 * each use: a client's 8 MB statements must not stay resident after it has gone). */
#define SQL_CACHE_MAX_BYTES ((size_t)64 << 20)
#define SQL_CACHE_MAX_TEXT ((size_t)256 << 10)

void sqlclass_cache_init(SqlCache *cache, size_t limit);
void sqlclass_cache_free(SqlCache *cache);

/*
 * Cheap test on raw text: false means the text cannot contain anything of the session / prepared
 * statement facts above (needs_session, refs), so a caller that only wants those need not parse
 * it. Routing needs every statement analyzed and must not use this filter.
 */
bool sqlclass_might_matter(const char *text, size_t len);

/* Analyzes text (len bytes, no NUL needed). Returns a reference; release with sqlclass_release. */
SqlAnalysis *sqlclass_analyze(SqlCache *cache, const char *text, size_t len);
void sqlclass_release(SqlAnalysis *a);

const char *sqlclass_kind_name(SqlKind kind);          /* "read", "write", "ddl", ... */
const char *sqlclass_tx_name(SqlTxKind tx);            /* "BEGIN", "COMMIT", ... */
const char *sqlclass_set_name(SqlSetKind set);         /* "SET", "SET LOCAL", ... */
const char *sqlclass_isolation_name(SqlIsolation iso); /* "serializable", ... */

#endif
