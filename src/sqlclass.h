/*
 * sqlclass — what a SQL string does, from the real PostgreSQL parser (libpg_query).
 *
 * Owns: parsing query text (JSON parse tree, decoded with json-c; token positions from
 * libpg_query's scanner), the facts pgrelay needs about it, and a cache of analyses by statement
 * text so a repeated statement is parsed once. Today's facts: statements that need a session of
 * their own (LISTEN, session advisory locks, temporary tables, WITH HOLD cursors) and the
 * prepared-statement names in PREPARE / EXECUTE / DEALLOCATE with their byte ranges, so they can
 * be rewritten. Knows nothing of sockets or pools.
 */
#ifndef PGRELAY_SQLCLASS_H
#define PGRELAY_SQLCLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prepared.h"

typedef enum {
	SQL_REF_PREPARE = 1, /* PREPARE name ... : stmt_start/stmt_end cover the whole statement */
	SQL_REF_EXECUTE,     /* EXECUTE name (also inside EXPLAIN / CREATE TABLE AS) */
	SQL_REF_DEALLOCATE,  /* DEALLOCATE [PREPARE] name */
} SqlRefKind;

typedef struct SqlNameRef {
	SqlRefKind kind;
	char *name;              /* as PostgreSQL resolves it (folded, unquoted) */
	int start, end;          /* byte range of the name token in the text */
	int stmt_start, stmt_end;/* byte range of the statement (PREPARE only) */
} SqlNameRef;

typedef struct SqlAnalysis {
	int refcount;
	bool parse_error;
	const char *needs_session; /* NULL, or why the statement needs a session ("LISTEN", ...) */
	size_t n_refs;
	SqlNameRef *refs;          /* in text order */
} SqlAnalysis;

typedef struct SqlCache {
	HashMap by_text;
	size_t limit;
	uint64_t hits, misses;
} SqlCache;

void sqlclass_cache_init(SqlCache *cache, size_t limit);
void sqlclass_cache_free(SqlCache *cache);

/*
 * Cheap test on raw text: false means the text cannot contain anything sqlclass reports, so it
 * need not be parsed at all.
 */
bool sqlclass_might_matter(const char *text, size_t len);

/* Analyzes text (len bytes, no NUL needed). Returns a reference; release with sqlclass_release. */
SqlAnalysis *sqlclass_analyze(SqlCache *cache, const char *text, size_t len);
void sqlclass_release(SqlAnalysis *a);

#endif
