/*
 * sqlclass — statement analysis with libpg_query (see sqlclass.h).
 *
 * The parse tree comes as JSON (pg_query_parse, a few microseconds for a short statement), read
 * by jsontree into a tree in one reused arena (json-c's reader, a hash table per object, cost
 * four times the parser) and walked once per statement, collecting relations (with CTE scopes),
 * functions, schemas, locking clauses and DML nodes; the statement's top node gives its kind and
 * its transaction or SET detail. Byte positions of prepared-statement names come from
 * libpg_query's scanner (pg_query_scan, protobuf decoded with the pg_query.pb-c.h that
 * libpg-query-dev ships), used only when the tree shows a PREPARE, EXECUTE or DEALLOCATE, or
 * when the text holds a comment (then statement ranges are trimmed by tokens rather than by
 * blanks).
 *
 * Every string and array of an analysis lives in one arena, freed with the analysis; the JSON
 * tree is only read during the analysis (what an analysis keeps is copied out of it).
 */
#include "sqlclass.h"
#include "jsontree.h"
#include "sqljson.h"
#include "sqlkey.h"
#include "xalloc.h"

#include <ctype.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CURSOR_OPT_HOLD 0x0020 /* PostgreSQL's parsenodes.h */

/* ---- arena ---- */

struct SqlArena {
	struct SqlArena *next;
	size_t used, cap;
	_Alignas(max_align_t) char data[];
};

static void *arena_alloc(SqlArena **head, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	SqlArena *a = *head;
	if (!a || a->cap - a->used < n) {
		size_t cap = n > 2048 ? n : 2048;
		SqlArena *c = xmalloc(sizeof(*c) + cap);
		c->used = 0;
		c->cap = cap;
		if (a && n > 2048) { /* a big one-off: keep filling the current chunk afterwards */
			c->next = a->next;
			a->next = c;
			c->used = n;
			return c->data;
		}
		c->next = a;
		*head = a = c;
	}
	void *p = a->data + a->used;
	a->used += n;
	return p;
}

static char *arena_strndup(SqlArena **head, const char *s, size_t n)
{
	char *p = arena_alloc(head, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

static char *arena_strdup(SqlArena **head, const char *s) { return arena_strndup(head, s, strlen(s)); }

static char *arena_lower(SqlArena **head, const char *s)
{
	char *p = arena_strdup(head, s);
	for (char *q = p; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return p;
}

static void arena_free(SqlArena *a)
{
	while (a) {
		SqlArena *next = a->next;
		free(a);
		a = next;
	}
}

/* ---- growable arrays used while walking ---- */

#define VEC_PUSH(arr, n, cap, value)                                                                  \
	do {                                                                                          \
		if ((n) == (cap)) {                                                                   \
			(cap) = (cap) ? (cap) * 2 : 8;                                                \
			(arr) = xalloc_check(realloc((arr), (cap) * sizeof(*(arr))));                 \
		}                                                                                     \
		(arr)[(n)++] = (value);                                                               \
	} while (0)

typedef struct PendingName {
	SqlRefKind kind;
	const char *name; /* inside the JSON tree */
	int stmt_start, stmt_end;
	bool found;
} PendingName;

typedef struct Walk {
	SqlAnalysis *a;
	PendingName *pending;
	size_t n_pending, cap_pending;
	int stmt_start, stmt_end;

	/* Per statement; reset between statements. Strings already in the arena. */
	SqlRelation *rels;
	size_t n_rels, cap_rels;
	const char **funcs;
	size_t n_funcs, cap_funcs;
	const char **schemas;
	size_t n_schemas, cap_schemas;
	const char **ctes; /* CTE names in scope (inside the JSON tree) */
	size_t n_ctes, cap_ctes;
	const char *default_schema; /* CREATE SCHEMA x CREATE TABLE t ...: t is x.t */
	bool locking, has_dml, select_into, time_value;
	SqlSetConfig *set_configs;
	size_t n_set_configs, cap_set_configs;
} Walk;

static void add_pending(Walk *w, SqlRefKind kind, const char *name)
{
	if (!name || !*name)
		return;
	VEC_PUSH(w->pending, w->n_pending, w->cap_pending,
		 ((PendingName){kind, name, w->stmt_start, w->stmt_end, false}));
}

/* ---- JSON helpers ---- */

/* A DefElem argument as a boolean: absent means true (EXPLAIN (ANALYZE)). */
static bool defelem_bool(const JsonNode *defelem)
{
	const JsonNode *arg = jget(defelem, "arg"), *v;
	if (!arg)
		return true;
	const char *s = string_node(arg);
	if (s)
		return !(strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0 ||
			 strcmp(s, "0") == 0);
	if ((v = jget(arg, "Integer")))
		return jget(v, "ival") && jsontree_int(jget(v, "ival")) != 0;
	if ((v = jget(arg, "Boolean")))
		return jbool(v, "boolval");
	if ((v = jget(arg, "A_Const"))) {
		const JsonNode *iv = jget(v, "ival"), *b = jget(v, "boolval");
		if (iv)
			return jget(iv, "ival") && jsontree_int(jget(iv, "ival")) != 0;
		if (b)
			return jbool(b, "boolval");
		const JsonNode *sv = jget(v, "sval");
		const char *t = sv ? jstr(sv, "sval") : NULL;
		return t && (strcasecmp(t, "true") == 0 || strcasecmp(t, "on") == 0);
	}
	return true;
}

/* The sval of a DefElem's A_Const string argument (transaction_isolation), or NULL. */
static const char *defelem_string(const JsonNode *defelem)
{
	const JsonNode *arg = jget(defelem, "arg"), *c, *sv;
	if (!arg)
		return NULL;
	const char *s = string_node(arg);
	if (s)
		return s;
	if ((c = jget(arg, "A_Const")) && (sv = jget(c, "sval")))
		return jstr(sv, "sval");
	return NULL;
}

static bool is_catalog_schema(const char *s)
{
	return strcmp(s, "pg_catalog") == 0 || strcmp(s, "information_schema") == 0;
}

/* ---- collecting facts ---- */

/* writes: SQL_WRITES_* bits the statement applies to it (added to those of an earlier mention). */
static void add_relation_writes(Walk *w, const char *schema, const char *name, unsigned writes)
{
	if (!name || !*name)
		return;
	for (size_t i = 0; i < w->n_rels; i++) {
		SqlRelation *r = &w->rels[i];
		if (strcmp(r->name, name) == 0 &&
		    (r->schema == schema || (r->schema && schema && strcmp(r->schema, schema) == 0))) {
			r->writes |= writes;
			return;
		}
	}
	SqlArena **ar = &w->a->arena;
	SqlRelation r = {schema ? arena_strdup(ar, schema) : NULL, arena_strdup(ar, name), writes};
	VEC_PUSH(w->rels, w->n_rels, w->cap_rels, r);
}

static void add_relation(Walk *w, const char *schema, const char *name) { add_relation_writes(w, schema, name, 0); }

static void add_schema(Walk *w, const char *schema)
{
	if (!schema || !*schema || is_catalog_schema(schema))
		return;
	for (size_t i = 0; i < w->n_schemas; i++)
		if (strcmp(w->schemas[i], schema) == 0)
			return;
	const char *s = arena_strdup(&w->a->arena, schema);
	VEC_PUSH(w->schemas, w->n_schemas, w->cap_schemas, s);
}

/* A name list ([catalog.][schema.]name as String nodes): the schema part, or NULL. */
static const char *list_schema(const JsonNode *items)
{
	size_t n = jlen(items);
	return n >= 2 ? string_node(jsontree_at(items, n - 2)) : NULL;
}

static const char *list_name(const JsonNode *items)
{
	size_t n = jlen(items);
	return n >= 1 ? string_node(jsontree_at(items, n - 1)) : NULL;
}

/* A relation named by a String list: [schema.]name, or for a column [schema.]table.column. */
static void add_relation_list(Walk *w, const JsonNode *items, bool column)
{
	size_t n = jlen(items);
	if (column) {
		if (n < 2)
			return;
		n--;
	}
	if (n == 0)
		return;
	const char *name = string_node(jsontree_at(items, n - 1));
	const char *schema = n >= 2 ? string_node(jsontree_at(items, n - 2)) : NULL;
	add_relation(w, schema, name);
}

static bool cte_in_scope(const Walk *w, const char *name)
{
	for (size_t i = w->n_ctes; i-- > 0;)
		if (strcmp(w->ctes[i], name) == 0)
			return true;
	return false;
}

/* writes: non-zero for the target of INSERT / UPDATE / DELETE / MERGE (what it does to the
 * target's rows), which is never a CTE. */
static void range_var(Walk *w, const JsonNode *rv, unsigned writes)
{
	bool target = writes != 0;
	const char *p = jstr(rv, "relpersistence");
	if (p && strcmp(p, "t") == 0)
		w->a->needs_session = "a temporary table";
	const char *name = jstr(rv, "relname"), *schema = jstr(rv, "schemaname");
	if (!name)
		return;
	if (!schema && !target && cte_in_scope(w, name))
		return;
	add_relation_writes(w, schema ? schema : w->default_schema, name, writes);
}

static bool is_session_advisory_lock(const char *f)
{
	static const char *const locks[] = {"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
					    "pg_try_advisory_lock_shared"};
	for (size_t i = 0; i < sizeof(locks) / sizeof(locks[0]); i++)
		if (strcmp(f, locks[i]) == 0)
			return true;
	return false;
}

/* A constant argument as text (strings, integers, floats, booleans as PostgreSQL spells them),
 * or NULL for anything computed (a NULL constant included). */
static const char *const_text(SqlArena **ar, const JsonNode *arg)
{
	const JsonNode *c = jget(arg, "A_Const"), *v;
	if (!c || jbool(c, "isnull"))
		return NULL;
	if ((v = jget(c, "sval")))
		return jstr(v, "sval") ? jstr(v, "sval") : "";
	if ((v = jget(c, "fval")))
		return jstr(v, "fval");
	if ((v = jget(c, "boolval")))
		return jbool(v, "boolval") ? "true" : "false";
	if ((v = jget(c, "ival"))) {
		char buf[32];
		const JsonNode *iv = jget(v, "ival");
		snprintf(buf, sizeof buf, "%d", iv ? jsontree_int(iv) : 0);
		return arena_strdup(ar, buf);
	}
	return NULL;
}

static void note_set_config(Walk *w, const JsonNode *args)
{
	SqlArena **ar = &w->a->arena;
	SqlSetConfig sc = {NULL, NULL, -1};
	if (jlen(args) == 3) {
		const char *name = const_text(ar, jsontree_at(args, 0));
		const char *value = const_text(ar, jsontree_at(args, 1));
		const char *local = const_text(ar, jsontree_at(args, 2));
		if (name && value) {
			sc.name = arena_lower(ar, name);
			sc.value = arena_strdup(ar, value);
		}
		if (local && (strcmp(local, "true") == 0 || strcmp(local, "false") == 0))
			sc.is_local = strcmp(local, "true") == 0;
	}
	VEC_PUSH(w->set_configs, w->n_set_configs, w->cap_set_configs, sc);
}

static void func_call(Walk *w, const JsonNode *fc)
{
	const JsonNode *names = jget(fc, "funcname");
	size_t n = jlen(names);
	if (n == 0)
		return;
	const char *last = list_name(names), *schema = list_schema(names);
	if (!last)
		return;
	if (is_session_advisory_lock(last))
		w->a->needs_session = "a session advisory lock";
	if (strcmp(last, "set_config") == 0 && (!schema || strcmp(schema, "pg_catalog") == 0))
		note_set_config(w, jget(fc, "args"));
	char buf[256];
	if (schema)
		snprintf(buf, sizeof buf, "%s.%s", schema, last);
	else
		snprintf(buf, sizeof buf, "%s", last);
	for (size_t i = 0; i < w->n_funcs; i++)
		if (strcmp(w->funcs[i], buf) == 0)
			goto schema_ref;
	const char *f = arena_strdup(&w->a->arena, buf);
	VEC_PUSH(w->funcs, w->n_funcs, w->cap_funcs, f);
schema_ref:
	if (schema)
		add_schema(w, schema);
}

/* ---- node types the walk looks at ---- */

enum {
	N_OTHER = 0,
	N_ALTER_DEFAULT_PRIVILEGES,
	N_ALTER_OBJECT_SCHEMA,
	N_COMMENT,
	N_COMMON_TABLE_EXPR,
	N_CREATE_DOMAIN,
	N_CREATE_ENUM,
	N_CREATE_FUNCTION,
	N_CREATE_RANGE,
	N_CREATE_SCHEMA,
	N_DEALLOCATE,
	N_DECLARE_CURSOR,
	N_DEFINE,
	N_DELETE,
	N_DROP,
	N_EXECUTE,
	N_FUNC_CALL,
	N_SQL_VALUE_FUNCTION,
	N_GRANT,
	N_INSERT,
	N_LEAF, /* nodes that hold no relation, function or statement: not descended */
	N_LISTEN,
	N_MERGE,
	N_PREPARE,
	N_RANGE_VAR,
	N_RENAME,
	N_SELECT,
	N_UPDATE,
};

static const struct NodeType {
	const char *name;
	int id;
} node_types[] = {
	/* sorted by name (strcmp) for bsearch */
	{"A_Const", N_LEAF},
	{"A_Star", N_LEAF},
	{"AlterDefaultPrivilegesStmt", N_ALTER_DEFAULT_PRIVILEGES},
	{"AlterObjectSchemaStmt", N_ALTER_OBJECT_SCHEMA},
	{"Boolean", N_LEAF},
	{"ColumnRef", N_LEAF},
	{"CommentStmt", N_COMMENT},
	{"CommonTableExpr", N_COMMON_TABLE_EXPR},
	{"CreateDomainStmt", N_CREATE_DOMAIN},
	{"CreateEnumStmt", N_CREATE_ENUM},
	{"CreateFunctionStmt", N_CREATE_FUNCTION},
	{"CreateRangeStmt", N_CREATE_RANGE},
	{"CreateSchemaStmt", N_CREATE_SCHEMA},
	{"DeallocateStmt", N_DEALLOCATE},
	{"DeclareCursorStmt", N_DECLARE_CURSOR},
	{"DefineStmt", N_DEFINE},
	{"DeleteStmt", N_DELETE},
	{"DropStmt", N_DROP},
	{"ExecuteStmt", N_EXECUTE},
	{"Float", N_LEAF},
	{"FuncCall", N_FUNC_CALL},
	{"GrantStmt", N_GRANT},
	{"InsertStmt", N_INSERT},
	{"Integer", N_LEAF},
	{"ListenStmt", N_LISTEN},
	{"MergeStmt", N_MERGE},
	{"ParamRef", N_LEAF},
	{"PrepareStmt", N_PREPARE},
	{"RangeVar", N_RANGE_VAR},
	{"RenameStmt", N_RENAME},
	{"SQLValueFunction", N_SQL_VALUE_FUNCTION},
	{"SelectStmt", N_SELECT},
	{"SetToDefault", N_LEAF},
	{"String", N_LEAF},
	{"TypeName", N_LEAF},
	{"UpdateStmt", N_UPDATE},
};

static int node_type_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct NodeType *)elem)->name);
}

static int node_type(const char *name)
{
	const struct NodeType *t =
		bsearch(name, node_types, sizeof node_types / sizeof node_types[0], sizeof node_types[0], node_type_cmp);
	return t ? t->id : N_OTHER;
}

static bool is_dml(int id) { return id == N_INSERT || id == N_UPDATE || id == N_DELETE || id == N_MERGE; }

/* What a DML statement (body of type id) does to its target's rows. */
static unsigned dml_writes(int id, const JsonNode *body)
{
	switch (id) {
	case N_INSERT: {
		const JsonNode *oc = jget(body, "onConflictClause");
		const char *action = oc ? jstr(oc, "action") : NULL;
		return SQL_WRITES_INSERT | (action && strcmp(action, "ONCONFLICT_UPDATE") == 0 ? SQL_WRITES_UPDATE : 0);
	}
	case N_UPDATE:
		return SQL_WRITES_UPDATE;
	case N_DELETE:
		return SQL_WRITES_DELETE;
	case N_MERGE: {
		unsigned bits = 0;
		const JsonNode *whens = jget(body, "mergeWhenClauses");
		for (size_t i = 0; i < jlen(whens); i++) {
			const JsonNode *wc = jget(jsontree_at(whens, i), "MergeWhenClause");
			const char *cmd = wc ? jstr(wc, "commandType") : NULL;
			if (!cmd)
				bits |= SQL_WRITES_INSERT | SQL_WRITES_UPDATE | SQL_WRITES_DELETE;
			else if (strcmp(cmd, "CMD_INSERT") == 0)
				bits |= SQL_WRITES_INSERT;
			else if (strcmp(cmd, "CMD_UPDATE") == 0)
				bits |= SQL_WRITES_UPDATE;
			else if (strcmp(cmd, "CMD_DELETE") == 0)
				bits |= SQL_WRITES_DELETE;
			else if (strcmp(cmd, "CMD_NOTHING") != 0)
				bits |= SQL_WRITES_INSERT | SQL_WRITES_UPDATE | SQL_WRITES_DELETE;
		}
		return bits ? bits : SQL_WRITES_INSERT | SQL_WRITES_UPDATE | SQL_WRITES_DELETE;
	}
	default:
		return 0;
	}
}

/* ---- the walk ---- */

static void walk_any(Walk *w, const JsonNode *v);
static void walk_fields(Walk *w, int type, const JsonNode *body);

static void walk_node(Walk *w, const char *type_name, const JsonNode *body)
{
	if (!jsontree_is(body, JSONTREE_OBJECT))
		return;
	int type = node_type(type_name);
	const JsonNode *v;
	switch (type) {
	case N_LEAF:
		return;
	case N_RANGE_VAR:
		range_var(w, body, 0);
		return;
	case N_FUNC_CALL:
		func_call(w, body);
		break;
	case N_SQL_VALUE_FUNCTION: {
		/* CURRENT_DATE, CURRENT_TIME[STAMP], LOCALTIME[STAMP]: the clock (the user and schema
		 * forms depend on the session's role and search_path) */
		const char *op = jstr(body, "op");
		if (op && (strstr(op, "_DATE") || strstr(op, "_TIME") || strstr(op, "LOCALTIME")))
			w->time_value = true;
		return;
	}
	case N_INSERT:
	case N_UPDATE:
	case N_DELETE:
	case N_MERGE:
		w->has_dml = true;
		break;
	case N_SELECT:
		if (jget(body, "intoClause"))
			w->select_into = true;
		break;
	case N_PREPARE:
		add_pending(w, SQL_REF_PREPARE, jstr(body, "name"));
		break;
	case N_EXECUTE:
		add_pending(w, SQL_REF_EXECUTE, jstr(body, "name"));
		break;
	case N_DEALLOCATE:
		add_pending(w, SQL_REF_DEALLOCATE, jstr(body, "name"));
		break;
	case N_LISTEN:
		w->a->needs_session = "LISTEN";
		break;
	case N_DECLARE_CURSOR:
		if ((v = jget(body, "options")) && (jsontree_int(v) & CURSOR_OPT_HOLD))
			w->a->needs_session = "a WITH HOLD cursor";
		break;
	case N_DROP: {
		const char *rt = jstr(body, "removeType");
		const JsonNode *objs = jget(body, "objects");
		size_t n = jlen(objs);
		bool rel = rt && (strcmp(rt, "OBJECT_TABLE") == 0 || strcmp(rt, "OBJECT_VIEW") == 0 ||
				  strcmp(rt, "OBJECT_MATVIEW") == 0 || strcmp(rt, "OBJECT_INDEX") == 0 ||
				  strcmp(rt, "OBJECT_SEQUENCE") == 0 || strcmp(rt, "OBJECT_FOREIGN_TABLE") == 0);
		bool schema = rt && strcmp(rt, "OBJECT_SCHEMA") == 0;
		for (size_t i = 0; i < n; i++) {
			const JsonNode *o = jsontree_at(objs, i), *x;
			if (schema)
				add_schema(w, string_node(o));
			else if (rel && (x = jget(o, "List")))
				add_relation_list(w, jget(x, "items"), false);
			else if ((x = jget(o, "ObjectWithArgs")))
				add_schema(w, list_schema(jget(x, "objname")));
			else if ((x = jget(o, "TypeName")))
				add_schema(w, list_schema(jget(x, "names")));
			else if ((x = jget(o, "List")))
				add_schema(w, list_schema(jget(x, "items")));
		}
		return;
	}
	case N_COMMENT: {
		const char *ot = jstr(body, "objtype");
		const JsonNode *o = jget(body, "object"), *x;
		if (!ot || !o || !(x = jget(o, "List")))
			return;
		if (strcmp(ot, "OBJECT_COLUMN") == 0)
			add_relation_list(w, jget(x, "items"), true);
		else if (strcmp(ot, "OBJECT_TABLE") == 0 || strcmp(ot, "OBJECT_VIEW") == 0 ||
			 strcmp(ot, "OBJECT_MATVIEW") == 0 || strcmp(ot, "OBJECT_INDEX") == 0 ||
			 strcmp(ot, "OBJECT_SEQUENCE") == 0 || strcmp(ot, "OBJECT_FOREIGN_TABLE") == 0)
			add_relation_list(w, jget(x, "items"), false);
		return;
	}
	case N_CREATE_SCHEMA: {
		const char *s = jstr(body, "schemaname");
		add_schema(w, s);
		const char *saved = w->default_schema;
		w->default_schema = s;
		walk_fields(w, type, body);
		w->default_schema = saved;
		return;
	}
	case N_GRANT: {
		const char *tt = jstr(body, "targtype");
		if (tt && strcmp(tt, "ACL_TARGET_ALL_IN_SCHEMA") == 0) {
			const JsonNode *objs = jget(body, "objects");
			for (size_t i = 0; i < jlen(objs); i++)
				add_schema(w, string_node(jsontree_at(objs, i)));
			return;
		}
		break;
	}
	case N_ALTER_DEFAULT_PRIVILEGES: {
		const JsonNode *opts = jget(body, "options");
		for (size_t i = 0; i < jlen(opts); i++) {
			const JsonNode *d = jget(jsontree_at(opts, i), "DefElem"), *arg, *l;
			const char *dn = d ? jstr(d, "defname") : NULL;
			if (!dn || strcmp(dn, "schemas") != 0 || !(arg = jget(d, "arg")) || !(l = jget(arg, "List")))
				continue;
			const JsonNode *items = jget(l, "items");
			for (size_t k = 0; k < jlen(items); k++)
				add_schema(w, string_node(jsontree_at(items, k)));
		}
		return;
	}
	case N_ALTER_OBJECT_SCHEMA:
		add_schema(w, jstr(body, "newschema"));
		break;
	case N_RENAME: {
		const char *rt = jstr(body, "renameType");
		if (rt && strcmp(rt, "OBJECT_SCHEMA") == 0) {
			add_schema(w, jstr(body, "subname"));
			add_schema(w, jstr(body, "newname"));
		}
		break;
	}
	case N_CREATE_FUNCTION:
		add_schema(w, list_schema(jget(body, "funcname")));
		break;
	case N_DEFINE:
		add_schema(w, list_schema(jget(body, "defnames")));
		break;
	case N_CREATE_ENUM:
	case N_CREATE_RANGE:
		add_schema(w, list_schema(jget(body, "typeName")));
		break;
	case N_CREATE_DOMAIN:
		add_schema(w, list_schema(jget(body, "domainname")));
		break;
	default:
		break;
	}
	walk_fields(w, type, body);
}

/* WITH: walks the CTE bodies with the right names in scope and leaves every name in scope. */
static void walk_with(Walk *w, const JsonNode *with)
{
	const JsonNode *ctes = jget(with, "ctes");
	size_t n = jlen(ctes);
	bool recursive = jbool(with, "recursive");
	if (recursive)
		for (size_t i = 0; i < n; i++) {
			const JsonNode *c = jget(jsontree_at(ctes, i), "CommonTableExpr");
			const char *name = c ? jstr(c, "ctename") : NULL;
			if (name)
				VEC_PUSH(w->ctes, w->n_ctes, w->cap_ctes, name);
		}
	for (size_t i = 0; i < n; i++) {
		const JsonNode *c = jget(jsontree_at(ctes, i), "CommonTableExpr");
		if (!c)
			continue;
		const JsonNode *q = jget(c, "ctequery");
		if (q)
			walk_any(w, q);
		const char *name = jstr(c, "ctename");
		if (!recursive && name)
			VEC_PUSH(w->ctes, w->n_ctes, w->cap_ctes, name);
	}
}

static void walk_fields(Walk *w, int type, const JsonNode *body)
{
	size_t saved_ctes = w->n_ctes;
	const JsonNode *with = jget(body, "withClause");
	if (with)
		walk_with(w, with);
	size_t n = jsontree_is(body, JSONTREE_OBJECT) ? body->len : 0;
	for (size_t i = 0; i < n; i++) {
		const char *key = body->members[i].key;
		const JsonNode *val = &body->members[i].value;
		if (!jsontree_is(val, JSONTREE_OBJECT) && !jsontree_is(val, JSONTREE_ARRAY))
			continue;
		if (val == with)
			continue;
		if (strcmp(key, "lockingClause") == 0) {
			/* lockedRels (FOR UPDATE OF x) name range-table entries, not relations */
			if (jlen(val) > 0)
				w->locking = true;
			continue;
		}
		if (type == N_OTHER && strcmp(key, "funccall") == 0) { /* CallStmt's, not a node */
			func_call(w, val);
			walk_fields(w, N_FUNC_CALL, val);
			continue;
		}
		if (jsontree_is(val, JSONTREE_OBJECT) && jget(val, "relname") && jget(val, "relpersistence")) {
			range_var(w, val, is_dml(type) && strcmp(key, "relation") == 0 ? dml_writes(type, body) : 0);
			continue;
		}
		walk_any(w, val);
	}
	w->n_ctes = saved_ctes;
}

static void walk_any(Walk *w, const JsonNode *v)
{
	if (jsontree_is(v, JSONTREE_ARRAY)) {
		size_t n = jsontree_len(v);
		for (size_t i = 0; i < n; i++)
			walk_any(w, jsontree_at(v, i));
		return;
	}
	if (!jsontree_is(v, JSONTREE_OBJECT))
		return;
	/* Either a node {"Type": {...}} (type names start upper case) or a plain struct. */
	const char *type;
	const JsonNode *body;
	if (node_head(v, &type, &body))
		walk_node(w, type, body);
	else
		walk_fields(w, N_OTHER, v);
}

/* ---- statement kinds ---- */

typedef struct Classified {
	SqlKind kind;
	const char *tag;
	bool harmless;
	bool explain_only; /* EXPLAIN without ANALYZE: nothing inside is executed */
} Classified;

static const struct KindRule {
	const char *type;
	SqlKind kind;
	const char *tag;
} kind_rules[] = {
	/* sorted by type (strcmp) for bsearch; types not listed: see classify() */
	{"AlterDefaultPrivilegesStmt", SQL_KIND_DDL, "ALTER DEFAULT PRIVILEGES"},
	{"AlterObjectSchemaStmt", SQL_KIND_DDL, "ALTER ... SET SCHEMA"},
	{"AlterOwnerStmt", SQL_KIND_DDL, "ALTER ... OWNER TO"},
	{"AlterSeqStmt", SQL_KIND_DDL, "ALTER SEQUENCE"},
	{"AlterSystemStmt", SQL_KIND_OTHER, "ALTER SYSTEM"},
	{"AlterTableStmt", SQL_KIND_DDL, "ALTER TABLE"},
	{"CallStmt", SQL_KIND_WRITE, "CALL"},
	{"CheckPointStmt", SQL_KIND_OTHER, "CHECKPOINT"},
	{"ClosePortalStmt", SQL_KIND_SESSION, "CLOSE"},
	{"ClusterStmt", SQL_KIND_OTHER, "CLUSTER"},
	{"CommentStmt", SQL_KIND_DDL, "COMMENT"},
	{"CompositeTypeStmt", SQL_KIND_DDL, "CREATE TYPE"},
	{"ConstraintsSetStmt", SQL_KIND_SESSION, "SET CONSTRAINTS"},
	{"CopyStmt", SQL_KIND_READ, "COPY"},
	{"CreateDomainStmt", SQL_KIND_DDL, "CREATE DOMAIN"},
	{"CreateEnumStmt", SQL_KIND_DDL, "CREATE TYPE"},
	{"CreateExtensionStmt", SQL_KIND_DDL, "CREATE EXTENSION"},
	{"CreateFunctionStmt", SQL_KIND_DDL, "CREATE FUNCTION"},
	{"CreateRangeStmt", SQL_KIND_DDL, "CREATE TYPE"},
	{"CreateRoleStmt", SQL_KIND_DDL, "CREATE ROLE"},
	{"CreateSchemaStmt", SQL_KIND_DDL, "CREATE SCHEMA"},
	{"CreateSeqStmt", SQL_KIND_DDL, "CREATE SEQUENCE"},
	{"CreateStmt", SQL_KIND_DDL, "CREATE TABLE"},
	{"CreateTableAsStmt", SQL_KIND_DDL, "CREATE TABLE AS"},
	{"CreateTrigStmt", SQL_KIND_DDL, "CREATE TRIGGER"},
	{"CreatedbStmt", SQL_KIND_DDL, "CREATE DATABASE"},
	{"DeallocateStmt", SQL_KIND_SESSION, "DEALLOCATE"},
	{"DeclareCursorStmt", SQL_KIND_READ, "DECLARE CURSOR"},
	{"DefineStmt", SQL_KIND_DDL, "CREATE"},
	{"DeleteStmt", SQL_KIND_WRITE, "DELETE"},
	{"DiscardStmt", SQL_KIND_SESSION, "DISCARD"},
	{"DoStmt", SQL_KIND_WRITE, "DO"},
	{"DropOwnedStmt", SQL_KIND_DDL, "DROP OWNED"},
	{"DropRoleStmt", SQL_KIND_DDL, "DROP ROLE"},
	{"DropStmt", SQL_KIND_DDL, "DROP"},
	{"DropdbStmt", SQL_KIND_DDL, "DROP DATABASE"},
	{"ExecuteStmt", SQL_KIND_WRITE, "EXECUTE"},
	{"ExplainStmt", SQL_KIND_READ, "EXPLAIN"},
	{"FetchStmt", SQL_KIND_SESSION, "FETCH"},
	{"GrantRoleStmt", SQL_KIND_DDL, "GRANT ROLE"},
	{"GrantStmt", SQL_KIND_DDL, "GRANT"},
	{"ImportForeignSchemaStmt", SQL_KIND_DDL, "IMPORT FOREIGN SCHEMA"},
	{"IndexStmt", SQL_KIND_DDL, "CREATE INDEX"},
	{"InsertStmt", SQL_KIND_WRITE, "INSERT"},
	{"ListenStmt", SQL_KIND_SESSION, "LISTEN"},
	{"LoadStmt", SQL_KIND_SESSION, "LOAD"},
	{"LockStmt", SQL_KIND_WRITE, "LOCK"},
	{"MergeStmt", SQL_KIND_WRITE, "MERGE"},
	{"NotifyStmt", SQL_KIND_WRITE, "NOTIFY"},
	{"PrepareStmt", SQL_KIND_SESSION, "PREPARE"},
	{"ReassignOwnedStmt", SQL_KIND_DDL, "REASSIGN OWNED"},
	{"RefreshMatViewStmt", SQL_KIND_WRITE, "REFRESH MATERIALIZED VIEW"},
	{"ReindexStmt", SQL_KIND_OTHER, "REINDEX"},
	{"RenameStmt", SQL_KIND_DDL, "ALTER ... RENAME"},
	{"RuleStmt", SQL_KIND_DDL, "CREATE RULE"},
	{"SecLabelStmt", SQL_KIND_DDL, "SECURITY LABEL"},
	{"SelectStmt", SQL_KIND_READ, "SELECT"},
	{"TransactionStmt", SQL_KIND_TX, "BEGIN"},
	{"TruncateStmt", SQL_KIND_WRITE, "TRUNCATE"},
	{"UnlistenStmt", SQL_KIND_SESSION, "UNLISTEN"},
	{"UpdateStmt", SQL_KIND_WRITE, "UPDATE"},
	{"VacuumStmt", SQL_KIND_OTHER, "VACUUM"},
	{"VariableSetStmt", SQL_KIND_SESSION, "SET"},
	{"VariableShowStmt", SQL_KIND_SESSION, "SHOW"},
	{"ViewStmt", SQL_KIND_DDL, "CREATE VIEW"},
};

static int kind_rule_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct KindRule *)elem)->type);
}

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* "AlterFooBarStmt" -> "ALTER FOO BAR" (in the arena), for types without a rule. */
static const char *derived_tag(SqlArena **ar, const char *type)
{
	size_t n = strlen(type);
	if (n > 4 && strcmp(type + n - 4, "Stmt") == 0)
		n -= 4;
	char *out = arena_alloc(ar, n * 2 + 1), *o = out;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && isupper((unsigned char)type[i]) && !isupper((unsigned char)type[i - 1]))
			*o++ = ' ';
		*o++ = (char)toupper((unsigned char)type[i]);
	}
	*o = 0;
	return out;
}

/* The kind of a statement node {"Type": {...}} (before DML found inside is accounted for). */
static Classified classify(SqlArena **ar, const JsonNode *node)
{
	Classified c = {SQL_KIND_OTHER, "UNKNOWN", false, false};
	const char *type;
	const JsonNode *body;
	if (!node_head(node, &type, &body))
		return c;
	const struct KindRule *r =
		bsearch(type, kind_rules, sizeof kind_rules / sizeof kind_rules[0], sizeof kind_rules[0], kind_rule_cmp);
	if (!r) {
		c.tag = derived_tag(ar, type);
		if (has_prefix(type, "Create") || has_prefix(type, "Alter") || has_prefix(type, "Drop") ||
		    has_prefix(type, "Define"))
			c.kind = SQL_KIND_DDL;
		return c;
	}
	c.kind = r->kind;
	c.tag = r->tag;
	c.harmless = r->kind == SQL_KIND_SESSION && strcmp(type, "ListenStmt") != 0 && strcmp(type, "UnlistenStmt") != 0;
	if (strcmp(type, "CopyStmt") == 0) {
		if (jbool(body, "is_from"))
			c.kind = SQL_KIND_WRITE;
	} else if (strcmp(type, "ExplainStmt") == 0) {
		const JsonNode *opts = jget(body, "options"), *q = jget(body, "query");
		bool analyze = false;
		for (size_t i = 0; i < jlen(opts); i++) {
			const JsonNode *d = jget(jsontree_at(opts, i), "DefElem");
			const char *dn = d ? jstr(d, "defname") : NULL;
			if (dn && strcmp(dn, "analyze") == 0)
				analyze = defelem_bool(d);
		}
		if (analyze && q)
			c.kind = classify(ar, q).kind; /* it runs: EXPLAIN ANALYZE INSERT writes */
		else
			c.explain_only = true;
	} else if (strcmp(type, "DeclareCursorStmt") == 0) {
		const JsonNode *q = jget(body, "query");
		if (q)
			c.kind = classify(ar, q).kind;
	} else if (strcmp(type, "CreateTableAsStmt") == 0) {
		const char *ot = jstr(body, "objtype");
		if (ot && strcmp(ot, "OBJECT_MATVIEW") == 0)
			c.tag = "CREATE MATERIALIZED VIEW";
	} else if (strcmp(type, "GrantStmt") == 0) {
		if (!jbool(body, "is_grant"))
			c.tag = "REVOKE";
	} else if (strcmp(type, "GrantRoleStmt") == 0) {
		if (!jbool(body, "is_grant"))
			c.tag = "REVOKE ROLE";
	} else if (strcmp(type, "CreateFunctionStmt") == 0) {
		if (jbool(body, "is_procedure"))
			c.tag = "CREATE PROCEDURE";
	} else if (strcmp(type, "VacuumStmt") == 0) {
		if (!jbool(body, "is_vacuumcmd"))
			c.tag = "ANALYZE";
	} else if (strcmp(type, "FetchStmt") == 0) {
		if (jbool(body, "ismove"))
			c.tag = "MOVE";
	} else if (strcmp(type, "VariableSetStmt") == 0) {
		const char *k = jstr(body, "kind");
		if (k && has_prefix(k, "VAR_RESET"))
			c.tag = "RESET";
	}
	return c;
}

static void tx_detail(SqlArena **ar, SqlStatement *st, const JsonNode *body)
{
	static const struct {
		const char *name;
		SqlTxKind tx;
		const char *tag;
	} kinds[] = {
		{"TRANS_STMT_BEGIN", SQL_TX_BEGIN, "BEGIN"},
		{"TRANS_STMT_START", SQL_TX_BEGIN, "START TRANSACTION"},
		{"TRANS_STMT_COMMIT", SQL_TX_COMMIT, "COMMIT"},
		{"TRANS_STMT_ROLLBACK", SQL_TX_ROLLBACK, "ROLLBACK"},
		{"TRANS_STMT_SAVEPOINT", SQL_TX_SAVEPOINT, "SAVEPOINT"},
		{"TRANS_STMT_RELEASE", SQL_TX_RELEASE, "RELEASE"},
		{"TRANS_STMT_ROLLBACK_TO", SQL_TX_ROLLBACK_TO, "ROLLBACK TO"},
		{"TRANS_STMT_PREPARE", SQL_TX_PREPARE, "PREPARE TRANSACTION"},
		{"TRANS_STMT_COMMIT_PREPARED", SQL_TX_COMMIT_PREPARED, "COMMIT PREPARED"},
		{"TRANS_STMT_ROLLBACK_PREPARED", SQL_TX_ROLLBACK_PREPARED, "ROLLBACK PREPARED"},
	};
	const char *k = jstr(body, "kind");
	for (size_t i = 0; k && i < sizeof kinds / sizeof kinds[0]; i++)
		if (strcmp(k, kinds[i].name) == 0) {
			st->tx = kinds[i].tx;
			st->tag = kinds[i].tag;
		}
	st->tx_chain = jbool(body, "chain");
	const char *name = jstr(body, "savepoint_name");
	if (!name)
		name = jstr(body, "gid");
	if (name)
		st->tx_name = arena_strdup(ar, name);
	const JsonNode *opts = jget(body, "options");
	for (size_t i = 0; i < jlen(opts); i++) {
		const JsonNode *d = jget(jsontree_at(opts, i), "DefElem");
		const char *dn = d ? jstr(d, "defname") : NULL;
		if (!dn)
			continue;
		if (strcmp(dn, "transaction_read_only") == 0) {
			st->tx_read_only = defelem_bool(d);
		} else if (strcmp(dn, "transaction_deferrable") == 0) {
			st->tx_deferrable = defelem_bool(d);
		} else if (strcmp(dn, "transaction_isolation") == 0) {
			const char *iso = defelem_string(d);
			if (!iso)
				continue;
			if (strcmp(iso, "serializable") == 0)
				st->tx_isolation = SQL_ISOLATION_SERIALIZABLE;
			else if (strcmp(iso, "repeatable read") == 0)
				st->tx_isolation = SQL_ISOLATION_REPEATABLE_READ;
			else if (strcmp(iso, "read committed") == 0)
				st->tx_isolation = SQL_ISOLATION_READ_COMMITTED;
			else if (strcmp(iso, "read uncommitted") == 0)
				st->tx_isolation = SQL_ISOLATION_READ_UNCOMMITTED;
		}
	}
}

/* SET's value list rendered so that PostgreSQL's list parsing reads it back the same: string
 * constants as double-quoted identifiers (as flatten_set_variable_args quotes list elements),
 * numbers as written. NULL if an element is not a constant. */
static const char *set_value_text(SqlArena **ar, const JsonNode *args)
{
	size_t n = jlen(args), cap = 1, k = 0;
	if (n == 0)
		return NULL;
	const char *parts[64];
	if (n > sizeof parts / sizeof parts[0])
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const JsonNode *arg = jsontree_at(args, i), *c = jget(arg, "A_Const");
		parts[i] = c && !jget(c, "boolval") ? const_text(ar, arg) : NULL;
		if (!parts[i])
			return NULL;
		cap += 2 * strlen(parts[i]) + 4;
	}
	char *out = arena_alloc(ar, cap);
	for (size_t i = 0; i < n; i++) {
		const JsonNode *c = jget(jsontree_at(args, i), "A_Const");
		bool str = jget(c, "sval") != NULL;
		if (i)
			out[k++] = ',', out[k++] = ' ';
		if (str)
			out[k++] = '"';
		for (const char *q = parts[i]; *q; q++) {
			if (str && *q == '"')
				out[k++] = '"';
			out[k++] = *q;
		}
		if (str)
			out[k++] = '"';
	}
	out[k] = 0;
	return out;
}

static void set_detail(SqlArena **ar, SqlStatement *st, const char *type, const JsonNode *body)
{
	if (strcmp(type, "VariableSetStmt") == 0) {
		const char *k = jstr(body, "kind"), *name = jstr(body, "name");
		if (!k)
			return;
		if (strcmp(k, "VAR_RESET_ALL") == 0) {
			st->set = SQL_RESET_ALL;
			return;
		}
		bool local = jbool(body, "is_local");
		if (strcmp(k, "VAR_RESET") == 0 || (strcmp(k, "VAR_SET_DEFAULT") == 0 && !local))
			st->set = SQL_RESET; /* SET x TO DEFAULT is RESET x */
		else if (strcmp(k, "VAR_SET_MULTI") == 0 && name && strcmp(name, "TRANSACTION") == 0)
			st->set = SQL_SET_LOCAL; /* SET TRANSACTION ...: this transaction only */
		else
			st->set = local ? SQL_SET_LOCAL : SQL_SET;
		if (name)
			st->set_name = arena_lower(ar, name);
		if (strcmp(k, "VAR_SET_VALUE") == 0)
			st->set_value = set_value_text(ar, jget(body, "args"));
	} else if (strcmp(type, "VariableShowStmt") == 0) {
		const char *name = jstr(body, "name");
		if (name)
			st->set_name = arena_lower(ar, name);
	} else if (strcmp(type, "DiscardStmt") == 0) {
		const char *t = jstr(body, "target");
		if (t && strcmp(t, "DISCARD_ALL") == 0)
			st->set = SQL_DISCARD_ALL;
	}
}

/* ---- scanner: name positions and exact statement ranges ---- */

/* The identifier a name token stands for: unquoted names fold to lower case. */
static char *token_name(SqlArena **ar, const char *text, int start, int end)
{
	size_t n = (size_t)(end - start);
	char *out = arena_alloc(ar, n + 1);
	size_t k = 0;
	if (n >= 2 && text[start] == '"') {
		for (int i = start + 1; i < end - 1; i++) {
			if (text[i] == '"' && i + 1 < end - 1 && text[i + 1] == '"')
				i++;
			out[k++] = text[i];
		}
	} else {
		for (int i = start; i < end; i++)
			out[k++] = (char)tolower((unsigned char)text[i]);
	}
	out[k] = 0;
	return out;
}

static bool name_like(const PgQuery__ScanToken *t)
{
	return t->token == PG_QUERY__TOKEN__IDENT || t->keyword_kind == PG_QUERY__KEYWORD_KIND__UNRESERVED_KEYWORD ||
	       t->keyword_kind == PG_QUERY__KEYWORD_KIND__COL_NAME_KEYWORD;
}

static PgQuery__ScanResult *scan_text(const char *text)
{
	PgQueryScanResult sr = pg_query_scan(text);
	if (sr.error) {
		pg_query_free_scan_result(sr);
		return NULL;
	}
	PgQuery__ScanResult *scan = pg_query__scan_result__unpack(NULL, sr.pbuf.len, (const uint8_t *)sr.pbuf.data);
	pg_query_free_scan_result(sr);
	return scan;
}

/* Finds the byte range of every pending name with the scanner. */
static void locate_names(Walk *w, const char *text, const PgQuery__ScanResult *scan)
{
	SqlArena **ar = &w->a->arena;
	for (size_t i = 0; i + 1 < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		SqlRefKind kind;
		if (t->token == PG_QUERY__TOKEN__PREPARE)
			kind = SQL_REF_PREPARE;
		else if (t->token == PG_QUERY__TOKEN__EXECUTE)
			kind = SQL_REF_EXECUTE;
		else if (t->token == PG_QUERY__TOKEN__DEALLOCATE)
			kind = SQL_REF_DEALLOCATE;
		else
			continue;
		size_t j = i + 1;
		if (kind == SQL_REF_DEALLOCATE && scan->tokens[j]->token == PG_QUERY__TOKEN__PREPARE && j + 1 < scan->n_tokens)
			j++;
		const PgQuery__ScanToken *nt = scan->tokens[j];
		if (!name_like(nt))
			continue;
		char *name = token_name(ar, text, nt->start, nt->end);
		for (size_t k = 0; k < w->n_pending; k++) {
			PendingName *p = &w->pending[k];
			if (p->found || p->kind != kind || strcmp(p->name, name) != 0 || t->start < p->stmt_start ||
			    (p->stmt_end > 0 && t->start >= p->stmt_end))
				continue;
			p->found = true;
			SqlAnalysis *a = w->a;
			a->refs = xalloc_check(realloc(a->refs, (a->n_refs + 1) * sizeof(*a->refs)));
			a->refs[a->n_refs++] = (SqlNameRef){p->kind, name, nt->start, nt->end, p->stmt_start, p->stmt_end};
			break;
		}
		i = j;
	}
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* The statement's own text inside the parser's range [*s, *e): no blanks, comments or ';'. */
static void trim_range(const char *text, const PgQuery__ScanResult *scan, int *s, int *e)
{
	int rs = *s, re = *e;
	if (!scan) { /* no comment in the text: blanks only */
		while (rs < re && is_blank(text[rs]))
			rs++;
		while (re > rs && (is_blank(text[re - 1]) || text[re - 1] == ';'))
			re--;
		*s = rs;
		*e = re;
		return;
	}
	int first = -1, last = -1;
	for (size_t i = 0; i < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		if (t->start < rs)
			continue;
		if (t->end > re)
			break;
		if (t->token == PG_QUERY__TOKEN__SQL_COMMENT || t->token == PG_QUERY__TOKEN__C_COMMENT ||
		    t->token == PG_QUERY__TOKEN__ASCII_59)
			continue;
		if (first < 0)
			first = t->start;
		last = t->end;
	}
	if (first < 0)
		first = last = rs;
	*s = first;
	*e = last;
}

/* The comments that mention "pgrelay:", joined by newlines: hints count only there, never in a
 * string literal or identifier. */
static void collect_hints(SqlAnalysis *a, const char *text, const PgQuery__ScanResult *scan)
{
	size_t cap = 0, k = 0;
	for (size_t i = 0; i < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		if (t->token == PG_QUERY__TOKEN__SQL_COMMENT || t->token == PG_QUERY__TOKEN__C_COMMENT)
			cap += (size_t)(t->end - t->start) + 1;
	}
	if (!cap)
		return;
	char *out = arena_alloc(&a->arena, cap + 1);
	for (size_t i = 0; i < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		if (t->token != PG_QUERY__TOKEN__SQL_COMMENT && t->token != PG_QUERY__TOKEN__C_COMMENT)
			continue;
		size_t n = (size_t)(t->end - t->start);
		if (!memmem(text + t->start, n, "pgrelay:", 8))
			continue;
		memcpy(out + k, text + t->start, n);
		k += n;
		out[k++] = '\n';
	}
	out[k] = 0;
	a->hints = k ? out : NULL;
}

/* ---- analysis ---- */

static void finish_statement(Walk *w, SqlStatement *st)
{
	SqlArena **ar = &w->a->arena;
	st->locking = w->locking;
	st->time_dependent = w->time_value;
	st->n_relations = w->n_rels;
	if (w->n_rels) {
		SqlRelation *r = arena_alloc(ar, w->n_rels * sizeof(*r));
		memcpy(r, w->rels, w->n_rels * sizeof(*r));
		st->relations = r;
	}
	st->n_functions = w->n_funcs;
	if (w->n_funcs) {
		const char **f = arena_alloc(ar, w->n_funcs * sizeof(*f));
		memcpy(f, w->funcs, w->n_funcs * sizeof(*f));
		st->functions = f;
	}
	st->n_set_configs = w->n_set_configs;
	if (w->n_set_configs) {
		SqlSetConfig *sc = arena_alloc(ar, w->n_set_configs * sizeof(*sc));
		memcpy(sc, w->set_configs, w->n_set_configs * sizeof(*sc));
		st->set_configs = sc;
	}
	st->n_schemas = w->n_schemas;
	if (w->n_schemas) {
		const char **s = arena_alloc(ar, w->n_schemas * sizeof(*s));
		memcpy(s, w->schemas, w->n_schemas * sizeof(*s));
		st->schemas = s;
	}
}

static void *key_alloc(void *ctx, size_t n) { return arena_alloc(ctx, n); }

static void analyze_statement(Walk *w, SqlStatement *st, const JsonNode *stmt)
{
	SqlArena **ar = &w->a->arena;
	w->n_rels = w->n_funcs = w->n_schemas = w->n_ctes = w->n_set_configs = 0;
	w->default_schema = NULL;
	w->locking = w->has_dml = w->select_into = w->time_value = false;

	const char *type;
	const JsonNode *body;
	if (!node_head(stmt, &type, &body))
		return;
	Classified c = classify(ar, stmt);
	st->kind = c.kind;
	st->tag = c.tag;
	st->harmless = c.harmless;

	walk_any(w, stmt);

	if (strcmp(type, "TransactionStmt") == 0) {
		tx_detail(ar, st, body);
	} else if (st->kind == SQL_KIND_SESSION) {
		set_detail(ar, st, type, body);
		if (strcmp(type, "PrepareStmt") == 0 || strcmp(type, "DeallocateStmt") == 0) {
			const char *name = jstr(body, "name");
			if (name)
				st->prepared_name = arena_strdup(ar, name);
		}
		if (strcmp(type, "PrepareStmt") == 0) {
			const JsonNode *q = jget(body, "query");
			st->inner_kind = q ? classify(ar, q).kind : SQL_KIND_OTHER;
			if (st->inner_kind == SQL_KIND_READ && (w->has_dml || w->select_into))
				st->inner_kind = SQL_KIND_WRITE;
		}
	} else if (strcmp(type, "ExecuteStmt") == 0) {
		const char *name = jstr(body, "name");
		if (name)
			st->prepared_name = arena_strdup(ar, name);
	}
	/* A read holding a DML node (writable CTE, COPY (INSERT ... RETURNING)) or SELECT INTO writes;
	 * EXPLAIN without ANALYZE executes nothing. */
	if (st->kind == SQL_KIND_READ && !c.explain_only && (w->has_dml || w->select_into))
		st->kind = SQL_KIND_WRITE;
	st->select_into = st->kind == SQL_KIND_WRITE && w->select_into;
	/* Statements that write every relation they name. */
	unsigned all_writes = 0;
	if (strcmp(type, "TruncateStmt") == 0)
		all_writes = SQL_WRITES_TRUNCATE;
	else if (strcmp(type, "CopyStmt") == 0 && st->kind == SQL_KIND_WRITE && !w->has_dml)
		all_writes = SQL_WRITES_INSERT; /* COPY ... FROM: its table */
	else if (strcmp(type, "RefreshMatViewStmt") == 0)
		all_writes = SQL_WRITES_UPDATE;
	for (size_t i = 0; all_writes && i < w->n_rels; i++)
		w->rels[i].writes |= all_writes;
	if (c.explain_only) /* nothing inside runs */
		for (size_t i = 0; i < w->n_rels; i++)
			w->rels[i].writes = 0;
	finish_statement(w, st);
	sqlkey_collect(stmt, st, key_alloc, &w->a->arena);
}

static SqlAnalysis *analyze(SqlCache *cache, const char *text, size_t len)
{
	SqlAnalysis *a = xcalloc(1, sizeof(*a));
	a->refcount = 1;
	a->parse_error_position = -1;
	char *str = xmalloc(len + 1);
	memcpy(str, text, len);
	str[len] = 0;
	PgQueryParseResult pr = pg_query_parse(str);
	if (pr.error) {
		a->parse_error = true;
		a->parse_error_message = arena_strdup(&a->arena, pr.error->message ? pr.error->message : "syntax error");
		if (pr.error->cursorpos > 0)
			a->parse_error_position = pr.error->cursorpos - 1;
		pg_query_free_parse_result(pr);
		free(str);
		return a;
	}
	if (!cache->json) {
		cache->json = xmalloc(sizeof(*cache->json));
		jsontree_init(cache->json, SQL_MAX_DEPTH);
	}
	const JsonNode *tree = jsontree_parse(cache->json, pr.parse_tree, strlen(pr.parse_tree));
	pg_query_free_parse_result(pr);
	const JsonNode *stmts = jget(tree, "stmts");
	if (!jsontree_is(stmts, JSONTREE_ARRAY)) {
		/* Never report "no statements" for a text we could not read. */
		a->parse_error = true;
		a->parse_error_message = "statement too deeply nested for pgrelay's analysis";
		jsontree_clear(cache->json);
		free(str);
		return a;
	}
	size_t n = jlen(stmts);
	Walk w = {.a = a};
	SqlStatement *out = n ? arena_alloc(&a->arena, n * sizeof(*out)) : NULL;
	if (n)
		memset(out, 0, n * sizeof(*out));
	int *ranges = n ? xmalloc(2 * n * sizeof(int)) : NULL;
	for (size_t i = 0; i < n; i++) {
		const JsonNode *raw = jsontree_at(stmts, i), *v;
		w.stmt_start = (v = jget(raw, "stmt_location")) ? jsontree_int(v) : 0;
		int slen = (v = jget(raw, "stmt_len")) ? jsontree_int(v) : 0;
		w.stmt_end = slen > 0 ? w.stmt_start + slen : (int)len;
		ranges[2 * i] = w.stmt_start;
		ranges[2 * i + 1] = w.stmt_end;
		const JsonNode *stmt = jget(raw, "stmt");
		if (stmt)
			analyze_statement(&w, &out[i], stmt);
	}
	bool comments = memmem(str, len, "--", 2) || memmem(str, len, "/*", 2);
	PgQuery__ScanResult *scan = (w.n_pending || (comments && n)) ? scan_text(str) : NULL;
	if (w.n_pending && scan)
		locate_names(&w, str, scan);
	for (size_t i = 0; i < n; i++) {
		out[i].start = ranges[2 * i];
		out[i].end = ranges[2 * i + 1];
		trim_range(str, comments ? scan : NULL, &out[i].start, &out[i].end);
	}
	a->n_statements = n;
	a->statements = out;
	if (scan && memmem(str, len, "pgrelay:", 8))
		collect_hints(a, str, scan);
	if (scan)
		pg_query__scan_result__free_unpacked(scan, NULL);
	free(ranges);
	free(w.pending);
	free(w.rels);
	free(w.funcs);
	free(w.set_configs);
	free(w.schemas);
	free(w.ctes);
	jsontree_clear(cache->json); /* the names of w.pending point into the tree: only now */
	free(str);
	return a;
}

void sqlclass_release(SqlAnalysis *a)
{
	if (!a || --a->refcount > 0)
		return;
	free(a->refs);
	arena_free(a->arena);
	free(a);
}

/* ---- cache by text ---- */

typedef struct CacheEntry {
	char *text;
	size_t len;
	SqlAnalysis *a;
} CacheEntry;

struct TextKey {
	const char *text;
	size_t len;
};

static bool entry_eq(const void *value, const void *key)
{
	const CacheEntry *e = value;
	const struct TextKey *k = key;
	return e->len == k->len && memcmp(e->text, k->text, k->len) == 0;
}

void sqlclass_cache_init(SqlCache *cache, size_t limit)
{
	memset(cache, 0, sizeof(*cache));
	hashmap_init(&cache->by_text);
	cache->limit = limit;
}

static void cache_clear(SqlCache *cache)
{
	for (size_t i = 0; i < cache->by_text.cap; i++) {
		CacheEntry *e = cache->by_text.slots[i].value;
		if (!e)
			continue;
		sqlclass_release(e->a);
		free(e->text);
		free(e);
	}
	hashmap_free(&cache->by_text);
	cache->bytes = 0;
}

/* What an analysis holds in memory (its arena blocks), for the byte budget. */
static size_t analysis_bytes(const SqlAnalysis *a)
{
	size_t n = sizeof(*a);
	for (const SqlArena *b = a->arena; b; b = b->next)
		n += sizeof(*b) + b->cap;
	return n;
}

void sqlclass_cache_free(SqlCache *cache)
{
	cache_clear(cache);
	if (cache->json) {
		jsontree_free(cache->json);
		free(cache->json);
	}
	cache->json = NULL;
}

SqlAnalysis *sqlclass_analyze(SqlCache *cache, const char *text, size_t len)
{
	if (cache->limit == 0 || len > SQL_CACHE_MAX_TEXT) {
		cache->misses++;
		return analyze(cache, text, len);
	}
	struct TextKey k = {text, len};
	uint64_t h = hashmap_hash_bytes(text, len);
	CacheEntry *e = hashmap_get(&cache->by_text, h, entry_eq, &k);
	if (e) {
		cache->hits++;
		e->a->refcount++;
		return e->a;
	}
	cache->misses++;
	SqlAnalysis *a = analyze(cache, text, len);
	size_t bytes = sizeof(*e) + len + analysis_bytes(a);
	if (hashmap_count(&cache->by_text) >= cache->limit || cache->bytes + bytes > SQL_CACHE_MAX_BYTES)
		cache_clear(cache); /* bounded: start over rather than grow */
	cache->bytes += bytes;
	e = xmalloc(sizeof(*e));
	e->text = xmalloc(len);
	memcpy(e->text, text, len);
	e->len = len;
	e->a = a;
	a->refcount++;
	hashmap_insert(&cache->by_text, h, e);
	return a;
}

bool sqlclass_might_matter(const char *text, size_t len)
{
	/* Each word has its own first letter: the table gives, for either case, 1 + the word's index. */
#define WORD(s) {s, sizeof(s) - 1}
	static const struct {
		const char *text;
		size_t len;
	} words[] = {WORD("prepare"), WORD("execute"), WORD("deallocate"), WORD("listen"), WORD("advisory"),
		     WORD("temp"), WORD("hold")};
#undef WORD
	static const uint8_t first[256] = {['p'] = 1, ['e'] = 2, ['d'] = 3, ['l'] = 4, ['a'] = 5, ['t'] = 6, ['h'] = 7,
					   ['P'] = 1, ['E'] = 2, ['D'] = 3, ['L'] = 4, ['A'] = 5, ['T'] = 6, ['H'] = 7};
	for (size_t i = 0; i + 4 <= len; i++) {
		uint8_t w = first[(uint8_t)text[i]];
		if (!w)
			continue;
		const char *word = words[w - 1].text;
		size_t n = words[w - 1].len;
		/* Most letters of SQL are candidates: the second letter rules out nearly all of them. */
		if ((text[i + 1] | 0x20) != word[1] || len - i < n)
			continue;
		size_t k = 2;
		while (k < n && (text[i + k] | 0x20) == word[k])
			k++;
		if (k == n)
			return true;
	}
	return false;
}

/* ---- names ---- */

const char *sqlclass_kind_name(SqlKind kind)
{
	switch (kind) {
	case SQL_KIND_READ: return "read";
	case SQL_KIND_WRITE: return "write";
	case SQL_KIND_DDL: return "ddl";
	case SQL_KIND_TX: return "transaction control";
	case SQL_KIND_SESSION: return "session";
	case SQL_KIND_OTHER: break;
	}
	return "other";
}

const char *sqlclass_tx_name(SqlTxKind tx)
{
	switch (tx) {
	case SQL_TX_BEGIN: return "BEGIN";
	case SQL_TX_COMMIT: return "COMMIT";
	case SQL_TX_ROLLBACK: return "ROLLBACK";
	case SQL_TX_SAVEPOINT: return "SAVEPOINT";
	case SQL_TX_RELEASE: return "RELEASE";
	case SQL_TX_ROLLBACK_TO: return "ROLLBACK TO";
	case SQL_TX_PREPARE: return "PREPARE TRANSACTION";
	case SQL_TX_COMMIT_PREPARED: return "COMMIT PREPARED";
	case SQL_TX_ROLLBACK_PREPARED: return "ROLLBACK PREPARED";
	case SQL_TX_NONE: break;
	}
	return "none";
}

const char *sqlclass_set_name(SqlSetKind set)
{
	switch (set) {
	case SQL_SET: return "SET";
	case SQL_SET_LOCAL: return "SET LOCAL";
	case SQL_RESET: return "RESET";
	case SQL_RESET_ALL: return "RESET ALL";
	case SQL_DISCARD_ALL: return "DISCARD ALL";
	case SQL_SET_NONE: break;
	}
	return "none";
}

const char *sqlclass_isolation_name(SqlIsolation iso)
{
	switch (iso) {
	case SQL_ISOLATION_READ_UNCOMMITTED: return "read uncommitted";
	case SQL_ISOLATION_READ_COMMITTED: return "read committed";
	case SQL_ISOLATION_REPEATABLE_READ: return "repeatable read";
	case SQL_ISOLATION_SERIALIZABLE: return "serializable";
	case SQL_ISOLATION_DEFAULT: break;
	}
	return "default";
}
