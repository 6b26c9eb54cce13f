/*
 * jsontree — a strict JSON reader (RFC 8259) that builds a read-only tree in one arena, with no
 * allocation per node. Made for libpg_query's parse trees (sqlclass, sqlkey): their objects are
 * small, so a member is found by a linear scan in document order.
 *
 * Owns: the grammar (no comments, trailing commas, single quotes, NaN or leading zeros; nothing
 * but blanks after the value), string decoding (\" \\ \/ \b \f \n \r \t, \uXXXX with surrogate
 * pairs, to UTF-8; a lone surrogate is an error; other bytes are kept as they are), numbers kept
 * as written with integer accessors, and the nesting limit, checked before a level is entered:
 * the reader keeps its own stack, so no input can overflow the C stack. A JsonTree is reused:
 * each parse starts from the memory of the previous one, so a tree lives until the next parse of
 * its JsonTree or jsontree_free. Knows nothing of SQL.
 */
#ifndef PGRELAY_JSONTREE_H
#define PGRELAY_JSONTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum JsonType {
	JSONTREE_NULL,
	JSONTREE_FALSE,
	JSONTREE_TRUE,
	JSONTREE_NUMBER,
	JSONTREE_STRING,
	JSONTREE_ARRAY,
	JSONTREE_OBJECT,
} JsonType;

typedef struct JsonMember JsonMember;

typedef struct JsonNode {
	uint8_t type;  /* JsonType */
	bool integer;  /* a number without fraction or exponent */
	uint32_t len;  /* string, number: bytes (the NUL not counted); array, object: children */
	union {
		const char *str;                 /* string (decoded), number (as written): NUL-terminated */
		const struct JsonNode *items;    /* array */
		const JsonMember *members;       /* object, in document order (duplicate keys kept) */
	};
} JsonNode;

struct JsonMember {
	const char *key; /* decoded, NUL-terminated */
	JsonNode value;
};

typedef struct JsonFrame JsonFrame;
typedef struct JsonChunk JsonChunk;

typedef struct JsonTree {
	size_t max_depth;   /* the root is at depth 0; a value at depth max_depth or more fails */
	const char *error;  /* why the last parse failed (static text); NULL after a success */
	size_t error_offset; /* where in the text it failed */
	/* private */
	JsonNode root;
	JsonChunk *chunks;  /* the arena: nodes and strings of the current tree */
	size_t next_chunk;  /* the size of the first chunk of the next parse */
	JsonMember *pending; /* children of the open containers, moved to the arena at their end */
	size_t n_pending, cap_pending;
	JsonFrame *frames;  /* the open containers */
	size_t cap_frames;
} JsonTree;

/* max_depth as json-c's json_tokener_new_ex(max_depth): the same texts are too deep. */
void jsontree_init(JsonTree *t, size_t max_depth);
void jsontree_free(JsonTree *t);

/* Forgets the tree (its nodes are no longer valid) and gives back memory beyond what a typical
 * parse needs (a parse does this first). */
void jsontree_clear(JsonTree *t);

/* The tree of text[0, len), or NULL (t->error, t->error_offset say why) if the text is not one
 * JSON value or nests deeper than t->max_depth. Replaces the previous tree of t. */
const JsonNode *jsontree_parse(JsonTree *t, const char *text, size_t len);

/* A number as an integer, saturated to the type's range (a fraction is truncated), as json-c's
 * json_object_get_int64 / json_object_get_int; 0 for anything but a number (and for NULL). */
int64_t jsontree_int64(const JsonNode *n);
int jsontree_int(const JsonNode *n);

static inline bool jsontree_is(const JsonNode *n, JsonType type) { return n && n->type == type; }

/* The first member named key of an object, or NULL (also when obj is NULL or not an object). */
static inline const JsonNode *jsontree_get(const JsonNode *obj, const char *key)
{
	if (!obj || obj->type != JSONTREE_OBJECT)
		return NULL;
	for (uint32_t i = 0; i < obj->len; i++) {
		const char *k = obj->members[i].key;
		if (k[0] == key[0] && strcmp(k, key) == 0) /* most keys differ at once: no call */
			return &obj->members[i].value;
	}
	return NULL;
}

/* Children of an array or object; 0 for anything else (and for NULL). */
static inline size_t jsontree_len(const JsonNode *n)
{
	return n && (n->type == JSONTREE_ARRAY || n->type == JSONTREE_OBJECT) ? n->len : 0;
}

/* Element i of an array, or NULL. */
static inline const JsonNode *jsontree_at(const JsonNode *arr, size_t i)
{
	return arr && arr->type == JSONTREE_ARRAY && i < arr->len ? &arr->items[i] : NULL;
}

/* A string's decoded text, or NULL for anything else. */
static inline const char *jsontree_string(const JsonNode *n)
{
	return n && n->type == JSONTREE_STRING ? n->str : NULL;
}

#endif
