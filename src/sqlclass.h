/*
 * sqlclass — what a SQL string does, from the real PostgreSQL parser (libpg_query).
 *
 * Owns: parsing query text (JSON parse tree, decoded with json-c; token positions from
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

typedef enum {
	SQL_REF_PREPARE = 1, /* PREPARE name ... : stmt_start/stmt_end cover the whole statement */
	SQL_REF_EXECUTE,     /* EXECUTE name (also inside EXPLAIN / CREATE TABLE AS) */
	SQL_REF_DEALLOCATE,  /* DEALLOCATE [PREPARE] name */
} SqlRefKind;

typedef struct SqlNameRef {
	SqlRefKind kind;
	char *name;              /* as PostgreSQL resolves it (folded, unquoted) */
	int start, end;          /* byte range of the name token in the text */
	/* Byte range of the statement as the parser reports it (PREPARE only): from just after the
	 * previous ';' (leading blanks included) to just before the next ';' (or the end). */
	int stmt_start, stmt_end;
} SqlNameRef;

typedef enum {
	SQL_KIND_OTHER = 0,
	SQL_KIND_READ,
	SQL_KIND_WRITE,
	SQL_KIND_DDL,
	SQL_KIND_TX,
	SQL_KIND_SESSION,
} SqlKind;

typedef enum {
	SQL_TX_NONE = 0,
	SQL_TX_BEGIN,             /* BEGIN / START TRANSACTION: tx_read_only, tx_isolation, ... */
	SQL_TX_COMMIT,            /* COMMIT / END (tx_chain: AND CHAIN) */
	SQL_TX_ROLLBACK,          /* ROLLBACK / ABORT (tx_chain: AND CHAIN) */
	SQL_TX_SAVEPOINT,         /* tx_name: the savepoint */
	SQL_TX_RELEASE,           /* RELEASE [SAVEPOINT] name */
	SQL_TX_ROLLBACK_TO,       /* ROLLBACK TO [SAVEPOINT] name */
	SQL_TX_PREPARE,           /* PREPARE TRANSACTION 'gid' (tx_name: the gid) */
	SQL_TX_COMMIT_PREPARED,   /* COMMIT PREPARED 'gid' */
	SQL_TX_ROLLBACK_PREPARED, /* ROLLBACK PREPARED 'gid' */
} SqlTxKind;

typedef enum {
	SQL_ISOLATION_DEFAULT = 0, /* not given */
	SQL_ISOLATION_READ_UNCOMMITTED,
	SQL_ISOLATION_READ_COMMITTED,
	SQL_ISOLATION_REPEATABLE_READ,
	SQL_ISOLATION_SERIALIZABLE,
} SqlIsolation;

typedef enum {
	SQL_SET_NONE = 0,
	SQL_SET,         /* SET [SESSION] name ..., SET name TO DEFAULT, SET ... FROM CURRENT,
			  * SET SESSION CHARACTERISTICS AS TRANSACTION ...: lasts for the session */
	SQL_SET_LOCAL,   /* SET LOCAL name ..., SET TRANSACTION ...: ends with the transaction */
	SQL_RESET,       /* RESET name */
	SQL_RESET_ALL,   /* RESET ALL */
	SQL_DISCARD_ALL, /* DISCARD ALL: resets every parameter (and drops prepared statements,
			  * temporary tables, ...); other DISCARD forms are SQL_SET_NONE */
} SqlSetKind;

/* What a statement does to a relation's rows (SqlRelation.writes). */
#define SQL_WRITES_INSERT 1u
#define SQL_WRITES_UPDATE 2u
#define SQL_WRITES_DELETE 4u
#define SQL_WRITES_TRUNCATE 8u

typedef struct SqlRelation {
	const char *schema; /* NULL when unqualified */
	const char *name;
	/* SQL_WRITES_* bits: the target of INSERT (with ON CONFLICT DO UPDATE: INSERT | UPDATE),
	 * UPDATE, DELETE, MERGE (the actions of its WHEN clauses), at any depth (writable CTEs,
	 * EXPLAIN ANALYZE); COPY ... FROM: INSERT; TRUNCATE: TRUNCATE; REFRESH MATERIALIZED VIEW:
	 * UPDATE. 0: only read, locked or otherwise named (sources, USING, FROM, SELECT INTO's new
	 * table, DDL targets). */
	unsigned writes;
} SqlRelation;

/*
 * Row facts (sqlkey.c): "column = value" that every row of a relation the statement reads or
 * changes satisfies, so that the statement can only see or change rows where the column holds
 * the value. A value is a concatenation of parts (most often one): constants as PostgreSQL reads
 * them, or parameters $n whose value comes with the Bind.
 */
typedef struct SqlValuePart {
	int param;          /* $n (1-based), or 0 for a constant */
	const char *text;   /* the constant (strings decoded, integers in decimal) */
} SqlValuePart;

typedef struct SqlKeyEq {
	const SqlRelation *relation; /* one of the statement's relations */
	const char *column;          /* as PostgreSQL resolves it (folded) */
	int row;                     /* INSERT: the VALUES row (0-based); else 0 */
	size_t n_parts;
	const SqlValuePart *parts;
} SqlKeyEq;

/* A call of set_config (or pg_catalog.set_config). name / value: the constant arguments (name
 * folded to lower case), NULL when computed (then pgrelay cannot know what it changes). */
typedef struct SqlSetConfig {
	const char *name;
	const char *value;
	int is_local; /* 1: true (the transaction only), 0: false (the session), -1: computed */
} SqlSetConfig;

typedef struct SqlStatement {
	int start, end;   /* exact byte range in the text: no surrounding blanks, comments or ';' */
	SqlKind kind;
	const char *tag;  /* the statement type for people: "SELECT", "CREATE TABLE", "SET", ... */
	bool locking;     /* FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE anywhere inside */
	bool time_dependent; /* CURRENT_DATE, CURRENT_TIME[STAMP], LOCALTIME[STAMP] anywhere inside */
	bool select_into; /* SELECT ... INTO (or inside EXPLAIN ANALYZE): it creates a table */
	bool harmless;    /* SESSION kind only: changes no data and runs on a hot standby */
	SqlKind inner_kind; /* PREPARE: the kind of the prepared statement; else SQL_KIND_OTHER */

	size_t n_relations;
	const SqlRelation *relations; /* in order of first appearance */
	size_t n_functions;
	const char *const *functions; /* "name" or "schema.name" */
	size_t n_schemas;
	const char *const *schemas;

	/* SQL_KIND_TX */
	SqlTxKind tx;
	bool tx_read_only;  /* BEGIN / START TRANSACTION ... READ ONLY */
	bool tx_deferrable; /* ... DEFERRABLE */
	bool tx_chain;      /* COMMIT / ROLLBACK AND CHAIN */
	SqlIsolation tx_isolation;
	const char *tx_name; /* savepoint name or prepared-transaction gid, else NULL */

	/* SET / RESET / SHOW / DISCARD ALL */
	SqlSetKind set;
	/* Lower case: the parameter of SET / RESET / SHOW ("timezone" for SET TIME ZONE,
	 * "client_encoding" for SET NAMES, "role", "session_authorization", "transaction" for
	 * SET TRANSACTION, "session characteristics", "all" for SHOW ALL); NULL for RESET ALL and
	 * DISCARD. */
	const char *set_name;
	/* SET name {TO|=} value[, ...]: the value as a list PostgreSQL would read the same way (string
	 * constants double-quoted as identifiers, numbers as written), e.g. "\"s1\", \"public\"" for
	 * SET search_path = s1, public; NULL for other forms (DEFAULT is SQL_RESET, FROM CURRENT
	 * changes nothing, and values of other shapes are not rendered). */
	const char *set_value;
	/* set_config(name, value, is_local) calls anywhere in the statement, in order. */
	size_t n_set_configs;
	const struct SqlSetConfig *set_configs;

	/* PREPARE / EXECUTE / DEALLOCATE name (folded); NULL otherwise and for DEALLOCATE ALL. */
	const char *prepared_name;

	/* Row facts (see SqlKeyEq). For reads: facts of the relations of a plain SELECT's top-level
	 * FROM. For INSERT / UPDATE / DELETE: facts of the target (`key_target`); an INSERT has
	 * `key_rows` VALUES rows and a fact per row and column given a value. */
	size_t n_key_eqs;
	const SqlKeyEq *key_eqs;
	const SqlRelation *key_target; /* the written relation of a plain INSERT / UPDATE / DELETE */
	int key_rows;                  /* INSERT ... VALUES: the number of rows; else 1 */
} SqlStatement;

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
	void *tokener; /* private: the JSON decoder, reused (it holds a stack of SQL_MAX_DEPTH) */
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
