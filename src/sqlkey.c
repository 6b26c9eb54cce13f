/*
 * sqlkey — row facts of a statement: which "column = value" every row it reads or changes
 * satisfies (see sqlkey.h). They let the result cache invalidate by row instead of by table.
 *
 * Reads: a plain SELECT (no UNION / INTERSECT / EXCEPT, no VALUES). Its occurrences are the
 * table names among its top-level FROM items, joined by commas or INNER JOINs (a name inside an
 * outer or natural join gets no facts). The conjuncts (AND) of WHERE and of those inner joins' ON
 * clauses, and their USING columns, that say `column = value` or `column = column` are closed
 * under equality: every row of an occurrence that takes part in the result satisfies them, so the
 * result depends only on the rows where the column holds the value. A column must be qualified
 * by its occurrence's alias (or name), unless the FROM holds just that one table.
 * Writes: UPDATE without FROM and DELETE without USING: the conjuncts of WHERE on the target; an
 * UPDATE that assigns a column gives no fact for that column (its rows move to other values).
 * INSERT ... VALUES with a column list and without ON CONFLICT DO UPDATE (which changes a row
 * found by another constraint): one fact per row and listed column given a value.
 * A relation that the statement names more than once anywhere (a subquery, a CTE, a writable CTE,
 * a self-join) gets no facts at all.
 * Values: string constants, positive integers and unsigned integer-looking numerics (PostgreSQL's
 * JSON cannot tell a negative integer constant from 0: left out, as are decimals), parameters $n,
 * casts of values to text, varchar (no length: a length truncates), uuid, int2, int4, int8, and
 * concatenations (||) of values.
 */
#include "sqlkey.h"
#include "sqljson.h"

#include <stdio.h>
#include <string.h>

#define MAX_OCC 16
#define MAX_NODES 64
#define MAX_PARTS 8
#define MAX_EQS 64

typedef struct Occ {
	const char *schema, *name;
	const char *ref;    /* the name columns are qualified by: the alias, else the table name */
	bool keyable;
} Occ;

typedef struct UNode {
	int occ;            /* >= 0: column of occ[occ]; -1: a value */
	const char *column;
	const JsonNode *value;
	int row;
	int parent;
} UNode;

typedef struct KeyWalk {
	const JsonNode *root;
	const JsonNode *ctes;  /* the top-level WITH's ctes, or NULL */
	Occ occ[MAX_OCC];
	size_t n_occ;
	size_t n_from_items;
	UNode nodes[MAX_NODES];
	size_t n_nodes;
} KeyWalk;

/* ---- values ---- */

static bool digits_only(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static bool cast_allowed(const JsonNode *type_name)
{
	const JsonNode *names = jget(type_name, "names");
	size_t n = jlen(names);
	if (n == 0 || n > 2 || jget(type_name, "typmods") || jget(type_name, "arrayBounds") || jbool(type_name, "setof"))
		return false;
	const char *last = string_node(jsontree_at(names, n - 1));
	if (n == 2) {
		const char *first = string_node(jsontree_at(names, 0));
		if (!first || strcmp(first, "pg_catalog") != 0)
			return false;
	}
	static const char *const ok[] = {"text", "varchar", "uuid", "int2", "int4", "int8"};
	for (size_t i = 0; last && i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(last, ok[i]) == 0)
			return true;
	return false;
}

static bool is_op(const JsonNode *a_expr, const char *op)
{
	const char *kind = jstr(a_expr, "kind");
	const JsonNode *name = jget(a_expr, "name");
	const char *s = jlen(name) == 1 ? string_node(jsontree_at(name, 0)) : NULL;
	return kind && strcmp(kind, "AEXPR_OP") == 0 && s && strcmp(s, op) == 0;
}

/* Appends the parts of value expression e; false when e is not a value. Parts text points into
 * the JSON tree, or into buf for integers. */
static bool value_parts(const JsonNode *e, SqlValuePart *parts, size_t *n, char (*num)[24])
{
	const char *type;
	const JsonNode *body, *v;
	if (!node_head(e, &type, &body) || *n >= MAX_PARTS)
		return false;
	if (strcmp(type, "A_Const") == 0) {
		if ((v = jget(body, "sval"))) {
			const char *s = jstr(v, "sval");
			parts[(*n)++] = (SqlValuePart){0, s ? s : ""};
			return true;
		}
		if ((v = jget(body, "ival"))) {
			const JsonNode *iv = jget(v, "ival");
			if (!jsontree_is(iv, JSONTREE_NUMBER) || !iv->integer || jsontree_int64(iv) <= 0)
				return false; /* {} is 0 or a negative number */
			snprintf(num[*n], sizeof num[0], "%lld", (long long)jsontree_int64(iv));
			parts[*n] = (SqlValuePart){0, num[*n]};
			(*n)++;
			return true;
		}
		if ((v = jget(body, "fval"))) {
			const char *s = jstr(v, "fval");
			if (!s || !digits_only(s))
				return false;
			parts[(*n)++] = (SqlValuePart){0, s};
			return true;
		}
		return false; /* NULL, booleans, bit strings */
	}
	if (strcmp(type, "ParamRef") == 0) {
		v = jget(body, "number");
		int64_t p = v ? jsontree_int64(v) : 0;
		if (p <= 0 || p > 65535)
			return false;
		parts[(*n)++] = (SqlValuePart){(int)p, NULL};
		return true;
	}
	if (strcmp(type, "TypeCast") == 0)
		return cast_allowed(jget(body, "typeName")) && value_parts(jget(body, "arg"), parts, n, num);
	if (strcmp(type, "A_Expr") == 0 && is_op(body, "||"))
		return value_parts(jget(body, "lexpr"), parts, n, num) && value_parts(jget(body, "rexpr"), parts, n, num);
	return false;
}

static bool is_value(const JsonNode *e)
{
	SqlValuePart parts[MAX_PARTS];
	char num[MAX_PARTS][24];
	size_t n = 0;
	return value_parts(e, parts, &n, num);
}

/* ---- occurrences and columns ---- */

/* How many times the statement names relation (schema, name), anywhere. */
static int count_name(const JsonNode *v, const char *schema, const char *name)
{
	int n = 0;
	if (jsontree_is(v, JSONTREE_ARRAY)) {
		for (size_t i = 0, len = jsontree_len(v); i < len; i++)
			n += count_name(jsontree_at(v, i), schema, name);
		return n;
	}
	if (!jsontree_is(v, JSONTREE_OBJECT))
		return 0;
	const char *rel = jstr(v, "relname");
	if (rel && strcmp(rel, name) == 0) {
		const char *s = jstr(v, "schemaname");
		if ((!s && !schema) || (s && schema && strcmp(s, schema) == 0))
			n++;
	}
	for (size_t i = 0; i < v->len; i++)
		n += count_name(&v->members[i].value, schema, name);
	return n;
}

static bool is_cte(const KeyWalk *k, const char *name)
{
	for (size_t i = 0, n = jlen(k->ctes); i < n; i++) {
		const JsonNode *c = jget(jsontree_at(k->ctes, i), "CommonTableExpr");
		const char *cn = c ? jstr(c, "ctename") : NULL;
		if (cn && strcmp(cn, name) == 0)
			return true;
	}
	return false;
}

/* A RangeVar body as an occurrence; -1 when it is none (a CTE, or too many). */
static int add_occ(KeyWalk *k, const JsonNode *rv, bool keyable)
{
	const char *name = jstr(rv, "relname"), *schema = jstr(rv, "schemaname");
	if (!name || (!schema && is_cte(k, name)) || k->n_occ >= MAX_OCC)
		return -1;
	const JsonNode *alias = jget(rv, "alias");
	const char *an = alias ? jstr(alias, "aliasname") : NULL;
	k->occ[k->n_occ] = (Occ){schema, name, an ? an : name, keyable};
	return (int)k->n_occ++;
}

static int find(KeyWalk *k, int i)
{
	while (k->nodes[i].parent != i) {
		k->nodes[i].parent = k->nodes[k->nodes[i].parent].parent;
		i = k->nodes[i].parent;
	}
	return i;
}

static void unite(KeyWalk *k, int a, int b)
{
	if (a >= 0 && b >= 0)
		k->nodes[find(k, a)].parent = find(k, b);
}

static int new_node(KeyWalk *k, int occ, const char *column, const JsonNode *value, int row)
{
	if (occ >= 0 && !value)
		for (size_t i = 0; i < k->n_nodes; i++)
			if (k->nodes[i].occ == occ && k->nodes[i].row == row && strcmp(k->nodes[i].column, column) == 0)
				return (int)i;
	if (k->n_nodes >= MAX_NODES)
		return -1;
	k->nodes[k->n_nodes] = (UNode){occ, column, value, row, (int)k->n_nodes};
	return (int)k->n_nodes++;
}

/* The node of a ColumnRef, or -1 when it cannot be tied to one occurrence. */
static int column_node(KeyWalk *k, const JsonNode *colref)
{
	const JsonNode *fields = jget(colref, "fields");
	size_t n = jlen(fields);
	if (n == 0 || n > 3)
		return -1;
	const char *col = string_node(jsontree_at(fields, n - 1));
	if (!col)
		return -1; /* A_Star */
	int occ = -1;
	if (n == 1) {
		if (k->n_from_items == 1 && k->n_occ == 1)
			occ = 0;
	} else {
		const char *q = string_node(jsontree_at(fields, n - 2));
		const char *qs = n == 3 ? string_node(jsontree_at(fields, 0)) : NULL;
		for (size_t i = 0; q && i < k->n_occ; i++) {
			const Occ *o = &k->occ[i];
			bool match = n == 2 ? strcmp(o->ref, q) == 0
					    : o->ref == o->name && o->schema && qs && strcmp(o->schema, qs) == 0 &&
						      strcmp(o->name, q) == 0;
			if (match) {
				if (occ >= 0)
					return -1; /* ambiguous */
				occ = (int)i;
			}
		}
	}
	return occ < 0 ? -1 : new_node(k, occ, col, NULL, 0);
}

static int column_or_value(KeyWalk *k, const JsonNode *e)
{
	const JsonNode *cr = jget(e, "ColumnRef");
	if (cr)
		return column_node(k, cr);
	return is_value(e) ? new_node(k, -1, "", e, 0) : -1;
}

/* The conjuncts of a boolean expression that say a = b. */
static void conjuncts(KeyWalk *k, const JsonNode *e)
{
	const JsonNode *b;
	if (!e)
		return;
	if ((b = jget(e, "BoolExpr"))) {
		const char *op = jstr(b, "boolop");
		if (op && strcmp(op, "AND_EXPR") == 0)
			for (size_t i = 0, n = jlen(jget(b, "args")); i < n; i++)
				conjuncts(k, jsontree_at(jget(b, "args"), i));
		return;
	}
	if ((b = jget(e, "A_Expr")) && is_op(b, "=")) {
		const JsonNode *l = jget(b, "lexpr"), *r = jget(b, "rexpr");
		bool lcol = jget(l, "ColumnRef") != NULL, rcol = jget(r, "ColumnRef") != NULL;
		if (!lcol && !rcol)
			return;
		unite(k, column_or_value(k, l), column_or_value(k, r));
	}
}

/* A FROM item: occurrences (keyable unless inside an outer join) and inner joins' conditions. */
static void from_item(KeyWalk *k, const JsonNode *item, bool inner)
{
	const JsonNode *b;
	if ((b = jget(item, "RangeVar"))) {
		add_occ(k, b, inner);
		return;
	}
	if (!(b = jget(item, "JoinExpr")))
		return; /* subqueries, functions: their relations are named elsewhere, counted */
	const char *jt = jstr(b, "jointype");
	bool this_inner = inner && jt && strcmp(jt, "JOIN_INNER") == 0 && !jbool(b, "isNatural");
	size_t before = k->n_occ;
	const JsonNode *larg = jget(b, "larg"), *rarg = jget(b, "rarg");
	from_item(k, larg, this_inner);
	size_t mid = k->n_occ;
	from_item(k, rarg, this_inner);
	if (!this_inner)
		return;
	conjuncts(k, jget(b, "quals"));
	/* USING (c): l.c = r.c when both sides are plain tables */
	const JsonNode *using = jget(b, "usingClause");
	if (jlen(using) && mid == before + 1 && k->n_occ == mid + 1 && jget(larg, "RangeVar") && jget(rarg, "RangeVar"))
		for (size_t i = 0, n = jlen(using); i < n; i++) {
			const char *c = string_node(jsontree_at(using, i));
			if (c)
				unite(k, new_node(k, (int)before, c, NULL, 0), new_node(k, (int)mid, c, NULL, 0));
		}
}

/* ---- output ---- */

typedef struct Out {
	SqlKeyEq eqs[MAX_EQS];
	size_t n;
	SqlKeyAlloc alloc;
	void *ctx;
} Out;

static char *copy_str(Out *o, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = o->alloc(o->ctx, n);
	memcpy(p, s, n);
	return p;
}

static const SqlRelation *statement_relation(const SqlStatement *st, const char *schema, const char *name)
{
	for (size_t i = 0; i < st->n_relations; i++) {
		const SqlRelation *r = &st->relations[i];
		if (strcmp(r->name, name) == 0 &&
		    ((!r->schema && !schema) || (r->schema && schema && strcmp(r->schema, schema) == 0)))
			return r;
	}
	return NULL;
}

static void emit(Out *o, const SqlRelation *rel, const char *column, int row, const JsonNode *value)
{
	SqlValuePart parts[MAX_PARTS];
	char num[MAX_PARTS][24];
	size_t n = 0;
	if (!rel || o->n >= MAX_EQS || !value_parts(value, parts, &n, num))
		return;
	SqlValuePart *p = o->alloc(o->ctx, n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = (SqlValuePart){parts[i].param, parts[i].text ? copy_str(o, parts[i].text) : NULL};
	o->eqs[o->n++] = (SqlKeyEq){rel, copy_str(o, column), row, n, p};
}

/* Emits, for each keyable occurrence named once in the statement, the columns whose equality
 * class holds a value. */
static void emit_classes(KeyWalk *k, const SqlStatement *st, Out *o, const char *const *assigned, size_t n_assigned)
{
	int named[MAX_OCC]; /* how often the statement names each occurrence's relation; -1: not counted yet */
	for (size_t i = 0; i < MAX_OCC; i++)
		named[i] = -1;
	for (size_t i = 0; i < k->n_nodes; i++) {
		const UNode *c = &k->nodes[i];
		if (c->occ < 0 || !k->occ[c->occ].keyable)
			continue;
		const Occ *oc = &k->occ[c->occ];
		bool skip = false;
		for (size_t a = 0; a < n_assigned && !skip; a++)
			skip = strcmp(assigned[a], c->column) == 0;
		if (!skip && named[c->occ] < 0)
			named[c->occ] = count_name(k->root, oc->schema, oc->name);
		if (skip || named[c->occ] != 1)
			continue;
		int root = find(k, (int)i);
		for (size_t j = 0; j < k->n_nodes; j++)
			if (k->nodes[j].occ < 0 && find(k, (int)j) == root) {
				emit(o, statement_relation(st, oc->schema, oc->name), c->column, 0, k->nodes[j].value);
				break;
			}
	}
}

static void collect_select(KeyWalk *k, const JsonNode *body, const SqlStatement *st, Out *o)
{
	const char *op = jstr(body, "op");
	if ((op && strcmp(op, "SETOP_NONE") != 0) || jget(body, "valuesLists") || jget(body, "intoClause"))
		return;
	const JsonNode *with = jget(body, "withClause");
	k->ctes = with ? jget(with, "ctes") : NULL;
	const JsonNode *from = jget(body, "fromClause");
	k->n_from_items = jlen(from);
	for (size_t i = 0; i < k->n_from_items; i++)
		from_item(k, jsontree_at(from, i), true);
	conjuncts(k, jget(body, "whereClause"));
	emit_classes(k, st, o, NULL, 0);
}

static void collect_insert(KeyWalk *k, const JsonNode *body, SqlStatement *st, Out *o)
{
	const JsonNode *rv = jget(body, "relation"), *conflict = jget(body, "onConflictClause");
	const char *action = conflict ? jstr(conflict, "action") : NULL;
	const JsonNode *sel = jget(jget(body, "selectStmt"), "SelectStmt");
	const JsonNode *rows = sel ? jget(sel, "valuesLists") : NULL, *cols = jget(body, "cols");
	const char *name = jstr(rv, "relname"), *schema = jstr(rv, "schemaname");
	if (!name || (action && strcmp(action, "ONCONFLICT_UPDATE") == 0) || !jlen(rows) || !jlen(cols) ||
	    jget(sel, "fromClause") || count_name(k->root, schema, name) != 1)
		return;
	st->key_rows = (int)jlen(rows);
	const SqlRelation *rel = statement_relation(st, schema, name);
	for (size_t r = 0, nr = jlen(rows); r < nr; r++) {
		const JsonNode *items = jget(jget(jsontree_at(rows, r), "List"), "items");
		for (size_t c = 0, nc = jlen(cols); c < nc && c < jlen(items); c++) {
			const JsonNode *t = jget(jsontree_at(cols, c), "ResTarget");
			const char *col = t && !jget(t, "indirection") ? jstr(t, "name") : NULL;
			if (col)
				emit(o, rel, col, (int)r, jsontree_at(items, c));
		}
	}
}

/* UPDATE (assigned: its SET columns) or DELETE. */
static void collect_update_delete(KeyWalk *k, const JsonNode *body, bool update, SqlStatement *st, Out *o)
{
	const JsonNode *rv = jget(body, "relation");
	if (!rv || jlen(jget(body, update ? "fromClause" : "usingClause")))
		return;
	if (add_occ(k, rv, true) != 0)
		return;
	k->n_from_items = 1;
	conjuncts(k, jget(body, "whereClause"));
	const char *assigned[64];
	size_t n_assigned = 0;
	const JsonNode *targets = jget(body, "targetList");
	for (size_t i = 0, n = jlen(targets); i < n; i++) {
		const JsonNode *t = jget(jsontree_at(targets, i), "ResTarget");
		const char *col = t ? jstr(t, "name") : NULL;
		if (!col || n_assigned == sizeof assigned / sizeof assigned[0])
			return; /* cannot tell what it assigns */
		assigned[n_assigned++] = col;
	}
	emit_classes(k, st, o, assigned, n_assigned);
}

void sqlkey_collect(const JsonNode *stmt, SqlStatement *st, SqlKeyAlloc alloc, void *ctx)
{
	const char *type;
	const JsonNode *body;
	st->key_rows = 1;
	if (!node_head(stmt, &type, &body))
		return;
	KeyWalk k = {.root = stmt};
	Out o = {.alloc = alloc, .ctx = ctx};
	bool insert = strcmp(type, "InsertStmt") == 0, update = strcmp(type, "UpdateStmt") == 0,
	     delete = strcmp(type, "DeleteStmt") == 0;
	if (strcmp(type, "SelectStmt") == 0) {
		collect_select(&k, body, st, &o);
	} else if (insert || update || delete) {
		const JsonNode *rv = jget(body, "relation");
		const char *name = jstr(rv, "relname");
		st->key_target = name ? statement_relation(st, jstr(rv, "schemaname"), name) : NULL;
		if (insert)
			collect_insert(&k, body, st, &o);
		else
			collect_update_delete(&k, body, update, st, &o);
	}
	if (o.n) {
		SqlKeyEq *eqs = alloc(ctx, o.n * sizeof *eqs);
		memcpy(eqs, o.eqs, o.n * sizeof *eqs);
		st->key_eqs = eqs;
		st->n_key_eqs = o.n;
	}
}
