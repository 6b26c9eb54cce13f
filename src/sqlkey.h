/*
 * sqlkey — the row facts of one statement ("column = value" that every row it reads or changes
 * satisfies; SqlKeyEq in sqltypes.h), from libpg_query's JSON parse tree. Part of the statement
 * analysis: sqlclass calls it once per statement. Pure; knows nothing of columns' types, cache
 * rules or sockets.
 */
#ifndef PGRELAY_SQLKEY_H
#define PGRELAY_SQLKEY_H

#include "jsontree.h"
#include "sqltypes.h"

typedef void *(*SqlKeyAlloc)(void *ctx, size_t n);

/* Sets st->key_eqs, n_key_eqs, key_target and key_rows for the statement node stmt ({"Type":
 * {...}}), whose relations st already holds. Memory comes from alloc(ctx, n). */
void sqlkey_collect(const JsonNode *stmt, SqlStatement *st, SqlKeyAlloc alloc, void *ctx);

#endif
