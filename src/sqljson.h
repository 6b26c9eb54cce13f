/*
 * sqljson — small readers of libpg_query's JSON parse trees (jsontree), shared by the statement
 * analysis files (sqlclass.c, sqlkey.c). Header only.
 */
#ifndef PGRELAY_SQLJSON_H
#define PGRELAY_SQLJSON_H

#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>

#include "jsontree.h"

static inline const JsonNode *jget(const JsonNode *obj, const char *key) { return jsontree_get(obj, key); }

/* The string member key of obj, or NULL (absent, or not a string). */
static inline const char *jstr(const JsonNode *obj, const char *key) { return jsontree_string(jsontree_get(obj, key)); }

/* Whether member key of obj is true (libpg_query leaves false booleans out). */
static inline bool jbool(const JsonNode *obj, const char *key) { return jsontree_is(jsontree_get(obj, key), JSONTREE_TRUE); }

/* The length of an array; 0 for anything else (NULL included). */
static inline size_t jlen(const JsonNode *arr) { return jsontree_is(arr, JSONTREE_ARRAY) ? arr->len : 0; }

/* The sval of a {"String": {"sval": ...}} node, or NULL. */
static inline const char *string_node(const JsonNode *node)
{
	const JsonNode *s = jget(node, "String");
	return s ? jstr(s, "sval") : NULL;
}

/* A node {"Type": {...}}: its type name and body. False for a plain struct or anything else. */
static inline bool node_head(const JsonNode *obj, const char **type, const JsonNode **body)
{
	if (!jsontree_is(obj, JSONTREE_OBJECT) || obj->len != 1 || !isupper((unsigned char)obj->members[0].key[0]))
		return false;
	*type = obj->members[0].key;
	*body = &obj->members[0].value;
	return true;
}

#endif
