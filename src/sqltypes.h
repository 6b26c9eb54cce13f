/*
 * sqltypes — what the statement analysis says about one statement (SqlStatement and its parts:
 * kind, relations, row facts, transaction and SET detail, prepared-statement names). Header only:
 * sqlclass fills them, sqlkey adds the row facts, everything above reads them.
 */
#ifndef PGRELAY_SQLTYPES_H
#define PGRELAY_SQLTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
