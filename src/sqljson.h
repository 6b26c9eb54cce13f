/*
 * sqljson — small readers of libpg_query's JSON parse trees (json-c), shared by the statement
 * analysis files (sqlclass.c, sqlkey.c). Header only.
 */
#ifndef PGRELAY_SQLJSON_H
#define PGRELAY_SQLJSON_H

#include <ctype.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

static inline json_object *jget(json_object *obj, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(obj, key, &v) ? v : NULL;
}

static inline const char *json_str(json_object *obj, const char *key)
{
	json_object *v = jget(obj, key);
	if (!v || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static inline bool jbool(json_object *obj, const char *key)
{
	json_object *v = jget(obj, key);
	return v && json_object_get_boolean(v);
}

static inline size_t jlen(json_object *arr)
{
	return arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
}

/* The sval of a {"String": {"sval": ...}} node, or NULL. */
static inline const char *string_node(json_object *node)
{
	json_object *s = jget(node, "String");
	return s ? json_str(s, "sval") : NULL;
}

/* A node {"Type": {...}}: its type name and body. False for a plain struct or anything else. */
static inline bool node_head(json_object *obj, const char **type, json_object **body)
{
	if (!obj || !json_object_is_type(obj, json_type_object) || json_object_object_length(obj) != 1)
		return false;
	json_object_object_foreach(obj, key, val) {
		if (!isupper((unsigned char)key[0]))
			return false;
		*type = key;
		*body = val;
		return true;
	}
	return false;
}

#endif
