/*
 * fuzz_jsontree — feeds: any bytes (not NUL-terminated) to jsontree, the JSON reader of the
 * statement analysis (which reads libpg_query's output with it), with a nesting limit of 64 so
 * that the limit is reached too. The seeds are libpg_query parse trees and a few hand-made texts.
 * Checks: no memory error, leak or undefined behaviour; a failure has a reason and an offset
 * inside the text; a tree has no value nested deeper than the limit, and written back as JSON it
 * reads back as the same tree.
 */
#include "fuzz.h"
#include "jsontree.h"

#include <stdio.h>

#define MAX_DEPTH 64

static JsonTree tree, again;

typedef struct Out {
	char *p;
	size_t n, cap;
} Out;

static void put(Out *o, const char *s, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2;
		o->p = realloc(o->p, o->cap);
		if (!o->p)
			abort();
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
}

static void put_string(Out *o, const char *s, size_t n)
{
	put(o, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(o, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			put(o, esc, 6);
		} else {
			put(o, (const char *)&s[i], 1);
		}
	}
	put(o, "\"", 1);
}

static void write_json(Out *o, const JsonNode *n, size_t depth)
{
	FUZZ_ASSERT(depth < MAX_DEPTH);
	switch (n->type) {
	case JSONTREE_NULL: put(o, "null", 4); break;
	case JSONTREE_FALSE: put(o, "false", 5); break;
	case JSONTREE_TRUE: put(o, "true", 4); break;
	case JSONTREE_NUMBER:
		FUZZ_ASSERT(strlen(n->str) == n->len);
		put(o, n->str, n->len);
		(void)jsontree_int(n);
		break;
	case JSONTREE_STRING: put_string(o, n->str, n->len); break;
	case JSONTREE_ARRAY:
		put(o, "[", 1);
		for (size_t i = 0; i < n->len; i++) {
			if (i)
				put(o, ",", 1);
			write_json(o, jsontree_at(n, i), depth + 1);
		}
		put(o, "]", 1);
		break;
	case JSONTREE_OBJECT:
		put(o, "{", 1);
		for (size_t i = 0; i < n->len; i++) {
			if (i)
				put(o, ",", 1);
			/* keys read as C strings (a \u0000 ends one), as the analysis reads them */
			put_string(o, n->members[i].key, strlen(n->members[i].key));
			put(o, ":", 1);
			write_json(o, &n->members[i].value, depth + 1);
		}
		put(o, "}", 1);
		break;
	default: FUZZ_ASSERT(0);
	}
}

static bool same(const JsonNode *a, const JsonNode *b)
{
	if (a->type != b->type || a->len != b->len || a->integer != b->integer)
		return false;
	switch (a->type) {
	case JSONTREE_NUMBER:
	case JSONTREE_STRING: return memcmp(a->str, b->str, a->len + 1) == 0;
	case JSONTREE_ARRAY:
		for (size_t i = 0; i < a->len; i++)
			if (!same(&a->items[i], &b->items[i]))
				return false;
		return true;
	case JSONTREE_OBJECT:
		for (size_t i = 0; i < a->len; i++)
			if (strcmp(a->members[i].key, b->members[i].key) != 0 || !jsontree_get(a, a->members[i].key) ||
			    !same(&a->members[i].value, &b->members[i].value))
				return false;
		return true;
	default: return true;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	jsontree_init(&tree, MAX_DEPTH);
	jsontree_init(&again, MAX_DEPTH);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 256 * 1024)
		return 0;
	uint8_t *text = fuzz_memdup(data, size);
	const JsonNode *root = jsontree_parse(&tree, (const char *)text, size);
	if (!root) {
		FUZZ_ASSERT(tree.error != NULL && tree.error_offset <= size);
		free(text);
		return 0;
	}
	FUZZ_ASSERT(tree.error == NULL);
	Out o = {0};
	write_json(&o, root, 0);
	const JsonNode *back = jsontree_parse(&again, o.p, o.n);
	FUZZ_ASSERT(back != NULL && same(root, back));
	free(o.p);
	free(text);
	jsontree_clear(&again);
	return 0;
}
