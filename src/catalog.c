/*
 * catalog — the relation model of one database and its precomputed read dependencies and write
 * effects (see catalog.h).
 *
 * The builder keeps the rows as they come (strings in an arena); finish() indexes the relations
 * (by oid and by name), turns every row into an edge between relation indexes (an oid the model
 * does not hold becomes an "outside" reference), and computes per relation one read closure and
 * four write closures (breadth-first, with per-build marks so each is linear in what it visits).
 * Sets are stored once in the arena: a relation's result usually holds only itself.
 */
#include "catalog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "xalloc.h"

#define NAME_MAX_BYTES 63 /* NAMEDATALEN - 1 */
#define FIRST_USER_OID 16384u /* FirstNormalObjectId: objects made after initdb */

/* ---- arena ---- */

typedef struct ArenaBlock {
	struct ArenaBlock *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
} ArenaBlock;

typedef struct Arena {
	ArenaBlock *head;
} Arena;

static void *arena_alloc(Arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		ArenaBlock *b = xmalloc(sizeof *b + cap);
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	void *p = a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

static const char *arena_str(Arena *a, const char *s)
{
	size_t n = strlen(s);
	char *p = arena_alloc(a, n + 1);
	memcpy(p, s, n + 1);
	return p;
}

static const char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *arena_printf(Arena *a, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return arena_str(a, buf);
}

static void arena_free(Arena *a)
{
	for (ArenaBlock *b = a->head, *next; b; b = next) {
		next = b->next;
		free(b);
	}
	a->head = NULL;
}

/* ---- rows ---- */

typedef struct RawRel {
	uint32_t oid;
	char relkind;
	bool rls;
	const char *schema, *name;
} RawRel;

/* vrel / prel, vfn / pfn, fk, trg, rule: one shape for all edges. */
typedef struct RawEdge {
	uint32_t owner;   /* the view / table with the policy / referenced table / relation of the trigger or rule */
	uint32_t other;   /* relation read / function / referencing table / - */
	char c1, c2;      /* provolatile / confdeltype, confupdtype / tgenabled / ev_type, ev_enabled */
	int num;          /* tgtype */
	const char *text; /* outside name / function name / constraint, trigger or rule name */
} RawEdge;

typedef struct EdgeVec {
	RawEdge *v;
	size_t n, cap;
} EdgeVec;

enum { E_INH, E_VREL, E_PREL, E_VFN, E_PFN, E_FK, E_TRG, E_RULE, E_KINDS };

struct CatalogBuilder {
	Arena arena;
	RawRel *rels;
	size_t n_rels, cap_rels;
	EdgeVec edges[E_KINDS];
	size_t rows;
	uint64_t fingerprint;
	bool failed;
	char error[256];
};

/* ---- the model ---- */

/* An edge resolved: idx of the other relation, or -1 when the model does not hold it. */
typedef struct Ref {
	int32_t idx;
	uint32_t oid;
	char c1, c2;
	int num;
	const char *text;
} Ref;

typedef struct Adj {
	Ref *v;
	uint32_t n;
} Adj;

typedef struct Rel {
	CatalogRel pub;
	Adj adj[E_KINDS]; /* E_INH: parents; children in `children` */
	Adj children;
} Rel;

struct Catalog {
	int refcount;
	Rel *rels;
	size_t n;
	HashMap by_name, by_oid;
	uint64_t fingerprint;
	Arena arena;
};

typedef struct NameKey {
	const char *schema, *name;
} NameKey;

static uint64_t name_hash(const char *schema, const char *name)
{
	uint64_t h = hashmap_hash_bytes(schema, strlen(schema));
	return h * 31 + hashmap_hash_bytes(name, strlen(name));
}

static bool name_eq(const void *value, const void *key)
{
	const Rel *r = value;
	const NameKey *k = key;
	return strcmp(r->pub.schema, k->schema) == 0 && strcmp(r->pub.name, k->name) == 0;
}

static bool oid_eq(const void *value, const void *key)
{
	return ((const Rel *)value)->pub.oid == *(const uint32_t *)key;
}

static bool schema_excluded(const char *s)
{
	if (strcmp(s, "pg_catalog") == 0 || strcmp(s, "information_schema") == 0 || strcmp(s, "pg_toast") == 0)
		return true;
	return strncmp(s, "pg_temp_", 8) == 0 || strncmp(s, "pg_toast_temp_", 14) == 0;
}

/* ---- builder ---- */

CatalogBuilder *catalog_builder_new(void)
{
	CatalogBuilder *b = xcalloc(1, sizeof *b);
	b->fingerprint = 0x6a09e667f3bcc908ull;
	return b;
}

void catalog_builder_free(CatalogBuilder *b)
{
	if (!b)
		return;
	arena_free(&b->arena);
	free(b->rels);
	for (int k = 0; k < E_KINDS; k++)
		free(b->edges[k].v);
	free(b);
}

static bool fail(CatalogBuilder *b, char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool fail(CatalogBuilder *b, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->error, sizeof b->error, fmt, ap);
	va_end(ap);
	b->failed = true;
	if (err && errlen)
		snprintf(err, errlen, "%s", b->error);
	return false;
}

static bool parse_oid(const char *s, uint32_t *out)
{
	if (!s || !*s)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || p - s >= 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool parse_char(const char *s, char *out)
{
	if (!s || !s[0] || s[1])
		return false;
	*out = s[0];
	return true;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void edge_push(EdgeVec *e, RawEdge edge)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->v = xalloc_check(realloc(e->v, e->cap * sizeof *e->v));
	}
	e->v[e->n++] = edge;
}

static const struct RowKind {
	const char *name;
	int kind;   /* E_* or -1 for rel */
	size_t cols; /* including the kind */
} ROW_KINDS[] = {
	{"rel", -1, 6},    {"inh", E_INH, 3}, {"vrel", E_VREL, 4}, {"prel", E_PREL, 4}, {"vfn", E_VFN, 5},
	{"pfn", E_PFN, 5}, {"fk", E_FK, 6},   {"trg", E_TRG, 5},   {"rule", E_RULE, 5},
};

/* The kind of row named name (the first column), or NULL. */
static const struct RowKind *find_row_kind(const char *name)
{
	const struct RowKind *rk = NULL;
	for (size_t i = 0; i < sizeof ROW_KINDS / sizeof ROW_KINDS[0]; i++)
		if (strcmp(name, ROW_KINDS[i].name) == 0)
			rk = &ROW_KINDS[i];
	return rk;
}

/* The hash of a row's first n columns (NULL columns included) that the fingerprint sums. */
static uint64_t row_hash(const char *const *cols, size_t n)
{
	uint64_t h = 0;
	for (size_t i = 0; i < n; i++)
		h = mix64(h ^ (cols[i] ? hashmap_hash_bytes(cols[i], strlen(cols[i])) : 0x9e3779b97f4a7c15ull) ^ i);
	return h;
}

/* Adds a "rel" row (relation owner) to b's relations, unless it is not modelled; returns false
 * (b failed) when the row is malformed or there are too many relations. */
static bool add_rel_row(CatalogBuilder *b, const char *const *cols, uint32_t owner, char *err, size_t errlen)
{
	char relkind, rls;
	if (!cols[2] || !cols[3] || !parse_char(cols[4], &relkind) || !parse_char(cols[5], &rls) ||
	    (rls != 't' && rls != 'f'))
		return fail(b, err, errlen, "malformed rel row (oid %u)", owner);
	if (schema_excluded(cols[2]) || strlen(cols[2]) > NAME_MAX_BYTES || strlen(cols[3]) > NAME_MAX_BYTES ||
	    !cols[2][0] || !cols[3][0])
		return true; /* not modelled: reads of it are not cacheable */
	if (b->n_rels == CATALOG_MAX_RELATIONS)
		return fail(b, err, errlen, "more than %d relations", CATALOG_MAX_RELATIONS);
	if (b->n_rels == b->cap_rels) {
		b->cap_rels = b->cap_rels ? b->cap_rels * 2 : 256;
		b->rels = xalloc_check(realloc(b->rels, b->cap_rels * sizeof *b->rels));
	}
	b->rels[b->n_rels++] = (RawRel){owner, relkind, rls == 't', arena_str(&b->arena, cols[2]),
					arena_str(&b->arena, cols[3])};
	return true;
}

/* Adds an edge row of kind rk (first oid owner) to b's edges of that kind; returns false (b
 * failed) when the row is malformed. */
static bool add_edge_row(CatalogBuilder *b, const struct RowKind *rk, const char *const *cols, uint32_t owner,
			 char *err, size_t errlen)
{
	uint32_t other = 0;
	bool other_is_oid = rk->kind != E_TRG && rk->kind != E_RULE;
	if (other_is_oid && !parse_oid(cols[2], &other))
		return fail(b, err, errlen, "%s row: bad oid \"%.20s\"", rk->name, cols[2] ? cols[2] : "NULL");
	RawEdge e = {.owner = owner, .other = other};
	const char *text = NULL;
	switch (rk->kind) {
	case E_INH:
		/* owner: the child; other: the parent */
		break;
	case E_VREL:
	case E_PREL:
		text = cols[3]; /* outside name or NULL */
		break;
	case E_VFN:
	case E_PFN:
		if (!parse_char(cols[3], &e.c1))
			return fail(b, err, errlen, "%s row: bad provolatile", rk->name);
		text = cols[4] ? cols[4] : "?";
		break;
	case E_FK:
		/* owner: the referencing table; other: the referenced one (swapped below) */
		if (!parse_char(cols[3], &e.c1) || !parse_char(cols[4], &e.c2))
			return fail(b, err, errlen, "fk row: bad action");
		text = cols[5] ? cols[5] : "?";
		e.owner = other;
		e.other = owner;
		break;
	case E_TRG: {
		/* other: tgtype (int2) */
		char *end = NULL;
		long t = cols[2] ? strtol(cols[2], &end, 10) : -1;
		if (!cols[2] || !cols[2][0] || *end || t < 0 || t > 32767 || !parse_char(cols[3], &e.c1))
			return fail(b, err, errlen, "trg row: bad tgtype or tgenabled");
		e.num = (int)t;
		e.other = 0;
		text = cols[4] ? cols[4] : "?";
		break;
	}
	case E_RULE:
		if (!parse_char(cols[2], &e.c1) || !parse_char(cols[3], &e.c2))
			return fail(b, err, errlen, "rule row: bad ev_type or ev_enabled");
		e.other = 0;
		text = cols[4] ? cols[4] : "?";
		break;
	default:
		break;
	}
	if (text) {
		if (strlen(text) > 2 * NAME_MAX_BYTES + 64)
			return fail(b, err, errlen, "%s row: name too long", rk->name);
		e.text = arena_str(&b->arena, text);
	}
	edge_push(&b->edges[rk->kind], e);
	return true;
}

bool catalog_builder_row(CatalogBuilder *b, const char *const *cols, size_t n_cols, char *err, size_t errlen)
{
	if (b->failed) {
		if (err && errlen)
			snprintf(err, errlen, "%s", b->error);
		return false;
	}
	if (!cols || n_cols == 0 || !cols[0])
		return fail(b, err, errlen, "a row without its kind");
	const struct RowKind *rk = find_row_kind(cols[0]);
	if (!rk)
		return fail(b, err, errlen, "unknown row kind \"%.20s\"", cols[0]);
	/* Extra trailing columns are allowed (a SELECT of several kinds pads its rows). */
	if (n_cols < rk->cols)
		return fail(b, err, errlen, "%s row with %zu columns, expected %zu", rk->name, n_cols, rk->cols);
	if (++b->rows > CATALOG_MAX_ROWS)
		return fail(b, err, errlen, "more than %d catalog rows", CATALOG_MAX_ROWS);

	/* The fingerprint: a sum of row hashes, so the rows' order does not matter. */
	b->fingerprint += row_hash(cols, rk->cols);

	uint32_t owner;
	if (!parse_oid(cols[1], &owner))
		return fail(b, err, errlen, "%s row: bad oid \"%.20s\"", rk->name, cols[1] ? cols[1] : "NULL");
	if (rk->kind < 0)
		return add_rel_row(b, cols, owner, err, errlen);
	return add_edge_row(b, rk, cols, owner, err, errlen);
}

/* ---- closures ---- */

typedef struct Work {
	uint32_t gen;
	uint32_t *mark;                       /* per relation: in the current set */
	uint32_t *mark_kind[CATALOG_WRITE_KINDS]; /* per relation and write kind: visited */
	uint32_t *list;                       /* the set being built */
	size_t n;
	uint32_t *qrel;                       /* queue: relation */
	uint8_t *qval;                        /* queue: depth (reads) or write kind */
	size_t qn;
	bool unknown;
	const char *why;
	size_t cap;
} Work;

static void work_unknown(Work *w, Catalog *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void work_unknown(Work *w, Catalog *c, const char *fmt, ...)
{
	if (w->unknown)
		return; /* the first reason is the one told */
	w->unknown = true;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	w->why = arena_str(&c->arena, buf);
}

static void set_add(Work *w, uint32_t idx)
{
	if (w->mark[idx] == w->gen)
		return;
	w->mark[idx] = w->gen;
	w->list[w->n++] = idx;
}

static void set_store(Catalog *c, Work *w, CatalogSet *out)
{
	out->total = w->n;
	out->too_many = w->n > CATALOG_MAX_RELS;
	out->n = out->too_many ? CATALOG_MAX_RELS : w->n;
	const CatalogRel **rels = arena_alloc(&c->arena, out->n * sizeof *rels);
	for (size_t i = 0; i < out->n; i++)
		rels[i] = &c->rels[w->list[i]].pub;
	out->rels = rels;
	out->unknown = w->unknown;
	if (w->unknown)
		out->why = w->why;
	else if (out->too_many)
		out->why = arena_printf(&c->arena, "%zu relations, more than %d", w->n, CATALOG_MAX_RELS);
	else
		out->why = "";
}

static const char *volatility_name(char v)
{
	return v == 'v' ? "volatile" : v == 's' ? "stable" : v == 'i' ? "immutable" : "of unknown volatility";
}

/* The functions of a view's query or of a table's SELECT policies. */
static void check_functions(Catalog *c, Work *w, const Rel *x, const Adj *fns, const char *what)
{
	for (uint32_t i = 0; i < fns->n && !w->unknown; i++) {
		const Ref *f = &fns->v[i];
		bool user = f->oid >= FIRST_USER_OID;
		if (f->c1 == 'i' && !user)
			continue;
		if (f->oid == 0)
			work_unknown(w, c, "%s of %s.%s reads %s", what, x->pub.schema, x->pub.name, f->text);
		else
			work_unknown(w, c, "%s of %s.%s calls %s (%s%s)", what, x->pub.schema, x->pub.name, f->text,
				     volatility_name(f->c1), user ? ", not built-in" : "");
	}
}

static void read_push(Catalog *c, Work *w, const Rel *x, const Ref *r, unsigned depth, const char *what)
{
	if (r->idx < 0) {
		if (r->text)
			work_unknown(w, c, "%s of %s.%s reads %s, outside the model", what, x->pub.schema, x->pub.name, r->text);
		else
			work_unknown(w, c, "%s of %s.%s reads relation oid %u, not in the model", what, x->pub.schema,
				     x->pub.name, r->oid);
		return;
	}
	if (w->mark[r->idx] == w->gen)
		return;
	if (depth > CATALOG_MAX_DEPTH) {
		work_unknown(w, c, "views or policies nested deeper than %d", CATALOG_MAX_DEPTH);
		return;
	}
	if (w->n >= CATALOG_MAX_VISIT) {
		work_unknown(w, c, "more than %d relations reached", CATALOG_MAX_VISIT);
		return;
	}
	set_add(w, (uint32_t)r->idx);
	w->qrel[w->qn] = (uint32_t)r->idx;
	w->qval[w->qn++] = (uint8_t)depth;
}

static void compute_read(Catalog *c, Work *w, uint32_t start)
{
	w->gen++;
	w->n = w->qn = 0;
	w->unknown = false;
	w->why = NULL;
	set_add(w, start);
	w->qrel[w->qn] = start;
	w->qval[w->qn++] = 0;
	for (size_t qi = 0; qi < w->qn; qi++) {
		const Rel *x = &c->rels[w->qrel[qi]];
		unsigned depth = w->qval[qi];
		/* A materialized view's contents are its own (REFRESH replaces them): not expanded. */
		if (x->pub.relkind == 'v') {
			check_functions(c, w, x, &x->adj[E_VFN], "the view");
			for (uint32_t i = 0; i < x->adj[E_VREL].n; i++)
				read_push(c, w, x, &x->adj[E_VREL].v[i], depth + 1, "the view");
		}
		if (x->pub.row_security) {
			check_functions(c, w, x, &x->adj[E_PFN], "a row security policy");
			for (uint32_t i = 0; i < x->adj[E_PREL].n; i++)
				read_push(c, w, x, &x->adj[E_PREL].v[i], depth + 1, "a row security policy");
		}
	}
	set_store(c, w, &c->rels[start].pub.read);
}

/* tgtype bits (pg_trigger.h) */
#define TG_ROW 1
#define TG_BEFORE 2
#define TG_INSERT 4
#define TG_DELETE 8
#define TG_UPDATE 16
#define TG_TRUNCATE 32
#define TG_INSTEAD 64

static const int TG_EVENT[CATALOG_WRITE_KINDS] = {TG_INSERT, TG_UPDATE, TG_DELETE, TG_TRUNCATE};
/* pg_rewrite.ev_type per write kind ('1' is SELECT; TRUNCATE fires no rule) */
static const char RULE_EVENT[CATALOG_WRITE_KINDS] = {'3', '2', '4', 0};

static void write_push(Catalog *c, Work *w, const Rel *from, const Ref *r, CatalogWrite kind, const char *how)
{
	if (r->idx < 0) {
		work_unknown(w, c, "%s of %s.%s reaches relation oid %u, not in the model%s%s", how, from->pub.schema,
			     from->pub.name, r->oid, r->text ? ": " : "", r->text ? r->text : "");
		return;
	}
	uint32_t *mk = w->mark_kind[kind];
	if (mk[r->idx] == w->gen)
		return;
	if (w->qn >= CATALOG_MAX_VISIT) {
		work_unknown(w, c, "more than %d relations and writes reached", CATALOG_MAX_VISIT);
		return;
	}
	mk[r->idx] = w->gen;
	w->qrel[w->qn] = (uint32_t)r->idx;
	w->qval[w->qn++] = (uint8_t)kind;
}

static void compute_write(Catalog *c, Work *w, uint32_t start, CatalogWrite kind0)
{
	w->gen++;
	w->n = w->qn = 0;
	w->unknown = false;
	w->why = NULL;
	Ref self = {.idx = (int32_t)start, .oid = c->rels[start].pub.oid};
	write_push(c, w, &c->rels[start], &self, kind0, "");
	for (size_t qi = 0; qi < w->qn; qi++) {
		uint32_t xi = w->qrel[qi];
		const Rel *x = &c->rels[xi];
		CatalogWrite k = (CatalogWrite)w->qval[qi];
		const char *kn = catalog_write_name(k);
		set_add(w, xi);
		const Adj *trg = &x->adj[E_TRG];
		for (uint32_t i = 0; i < trg->n && !w->unknown; i++) {
			const Ref *t = &trg->v[i];
			if (t->c1 == 'D' || !(t->num & TG_EVENT[k]))
				continue;
			work_unknown(w, c, "trigger %s on %s.%s (%s %s) fires on %s", t->text, x->pub.schema, x->pub.name,
				     t->num & TG_INSTEAD ? "INSTEAD OF" : t->num & TG_BEFORE ? "BEFORE" : "AFTER",
				     t->num & TG_ROW ? "ROW" : "STATEMENT", kn);
		}
		const Adj *rules = &x->adj[E_RULE];
		for (uint32_t i = 0; i < rules->n && !w->unknown; i++) {
			const Ref *r = &rules->v[i];
			if (r->c2 == 'D' || !RULE_EVENT[k] || r->c1 != RULE_EVENT[k])
				continue;
			work_unknown(w, c, "rule %s on %s.%s rewrites %s", r->text, x->pub.schema, x->pub.name, kn);
		}
		/* A view written through: its base relations (every relation it reads, to be safe). */
		if (x->pub.relkind == 'v' && k != CATALOG_TRUNCATE)
			for (uint32_t i = 0; i < x->adj[E_VREL].n; i++)
				write_push(c, w, x, &x->adj[E_VREL].v[i], k, "the view");
		/* Partitions and inheritance children. */
		for (uint32_t i = 0; i < x->children.n; i++)
			write_push(c, w, x, &x->children.v[i], k, "a child");
		/* Foreign keys referencing x: their actions are writes of the referencing table. */
		const Adj *fks = &x->adj[E_FK];
		for (uint32_t i = 0; i < fks->n; i++) {
			const Ref *f = &fks->v[i];
			char act = k == CATALOG_DELETE ? f->c1 : k == CATALOG_UPDATE ? f->c2 : 0;
			if (k == CATALOG_TRUNCATE)
				write_push(c, w, x, f, CATALOG_TRUNCATE, "TRUNCATE CASCADE");
			else if (act == 'c')
				write_push(c, w, x, f, k, "ON DELETE/UPDATE CASCADE");
			else if (act == 'n' || act == 'd')
				write_push(c, w, x, f, CATALOG_UPDATE, "ON DELETE/UPDATE SET NULL/DEFAULT");
		}
	}
	/* Ancestors of everything written: reads of a parent see its children's rows. */
	for (size_t i = 0; i < w->n; i++) {
		const Rel *x = &c->rels[w->list[i]];
		for (uint32_t j = 0; j < x->adj[E_INH].n; j++) {
			const Ref *p = &x->adj[E_INH].v[j];
			if (p->idx >= 0)
				set_add(w, (uint32_t)p->idx);
		}
	}
	set_store(c, w, &c->rels[start].pub.write[kind0]);
}

/* The relation and its ancestors (through pg_inherits, nearest first). */
static void compute_ancestors(Catalog *c, Work *w, uint32_t start)
{
	w->gen++;
	w->n = 0;
	w->unknown = false;
	w->why = NULL;
	set_add(w, start);
	for (size_t i = 0; i < w->n && !w->unknown; i++) {
		const Rel *x = &c->rels[w->list[i]];
		for (uint32_t j = 0; j < x->adj[E_INH].n; j++) {
			const Ref *p = &x->adj[E_INH].v[j];
			if (p->idx < 0)
				work_unknown(w, c, "%s.%s inherits from relation oid %u, not in the model", x->pub.schema,
					     x->pub.name, p->oid);
			else if (w->n < CATALOG_MAX_VISIT)
				set_add(w, (uint32_t)p->idx);
			else
				work_unknown(w, c, "more than %d ancestors", CATALOG_MAX_VISIT);
		}
	}
	set_store(c, w, &c->rels[start].pub.ancestors);
}

/* ---- finish ---- */

static int32_t idx_of(const Catalog *c, uint32_t oid)
{
	const Rel *r = hashmap_get(&c->by_oid, hashmap_hash_u32(oid), oid_eq, &oid);
	return r ? (int32_t)(r - c->rels) : -1;
}

/* Turns one kind of raw edges into per-owner adjacency lists (counting pass, then filling). */
static void adj_build(Catalog *c, const EdgeVec *e, int kind, bool resolve_other)
{
	uint32_t *owner_idx = xcalloc(e->n, sizeof *owner_idx);
	for (size_t i = 0; i < e->n; i++) {
		int32_t o = idx_of(c, e->v[i].owner);
		owner_idx[i] = o < 0 ? UINT32_MAX : (uint32_t)o;
		if (o >= 0)
			c->rels[o].adj[kind].n++;
	}
	for (size_t r = 0; r < c->n; r++) {
		Adj *a = &c->rels[r].adj[kind];
		a->v = a->n ? arena_alloc(&c->arena, a->n * sizeof *a->v) : NULL;
		a->n = 0;
	}
	for (size_t i = 0; i < e->n; i++) {
		if (owner_idx[i] == UINT32_MAX)
			continue; /* about a relation the model does not hold */
		const RawEdge *re = &e->v[i];
		Adj *a = &c->rels[owner_idx[i]].adj[kind];
		Ref *ref = &a->v[a->n++];
		*ref = (Ref){.idx = resolve_other ? idx_of(c, re->other) : -1, .oid = re->other, .c1 = re->c1,
			     .c2 = re->c2, .num = re->num, .text = re->text};
	}
	free(owner_idx);
}

/* Copies b's relations into c and indexes them by oid and by name; returns false (with err)
 * when two share an oid or a name. */
static bool index_rels(Catalog *c, const CatalogBuilder *b, char *err, size_t errlen)
{
	hashmap_init(&c->by_name);
	hashmap_init(&c->by_oid);
	for (size_t i = 0; i < c->n; i++) {
		const RawRel *rr = &b->rels[i];
		Rel *r = &c->rels[i];
		r->pub.oid = rr->oid;
		r->pub.relkind = rr->relkind;
		r->pub.row_security = rr->rls;
		r->pub.schema = rr->schema;
		r->pub.name = rr->name;
		NameKey k = {rr->schema, rr->name};
		uint64_t hn = name_hash(rr->schema, rr->name), ho = hashmap_hash_u32(rr->oid);
		if (hashmap_get(&c->by_oid, ho, oid_eq, &rr->oid) || hashmap_get(&c->by_name, hn, name_eq, &k)) {
			if (err && errlen)
				snprintf(err, errlen, "two relations with oid %u or name %s.%s", rr->oid, rr->schema, rr->name);
			return false;
		}
		hashmap_insert(&c->by_oid, ho, r);
		hashmap_insert(&c->by_name, hn, r);
	}
	return true;
}

/* Fills each relation's children (parent -> children) from the child -> parent lists. */
static void build_children(Catalog *c)
{
	for (size_t i = 0; i < c->n; i++)
		for (uint32_t j = 0; j < c->rels[i].adj[E_INH].n; j++) {
			int32_t p = c->rels[i].adj[E_INH].v[j].idx;
			if (p >= 0 && (size_t)p != i)
				c->rels[p].children.n++;
		}
	for (size_t i = 0; i < c->n; i++) {
		Adj *a = &c->rels[i].children;
		a->v = a->n ? arena_alloc(&c->arena, a->n * sizeof *a->v) : NULL;
		a->n = 0;
	}
	for (size_t i = 0; i < c->n; i++)
		for (uint32_t j = 0; j < c->rels[i].adj[E_INH].n; j++) {
			int32_t p = c->rels[i].adj[E_INH].v[j].idx;
			if (p >= 0 && (size_t)p != i) {
				Adj *a = &c->rels[p].children;
				a->v[a->n++] = (Ref){.idx = (int32_t)i, .oid = c->rels[i].pub.oid};
			}
		}
}

/* Computes every relation's read set, write sets (one per write kind) and ancestors. */
static void compute_closures(Catalog *c)
{
	Work w = {0};
	size_t n = c->n ? c->n : 1;
	w.cap = CATALOG_MAX_VISIT + 1 > n ? CATALOG_MAX_VISIT + 1 : n;
	w.mark = xcalloc(n, sizeof *w.mark);
	for (int k = 0; k < CATALOG_WRITE_KINDS; k++)
		w.mark_kind[k] = xcalloc(n, sizeof *w.mark_kind[k]);
	/* The set can hold every relation reached (ancestors added after the visit cap included). */
	w.list = xcalloc(n + CATALOG_MAX_VISIT + 1, sizeof *w.list);
	w.qrel = xcalloc(CATALOG_MAX_VISIT + 1, sizeof *w.qrel);
	w.qval = xcalloc(CATALOG_MAX_VISIT + 1, sizeof *w.qval);
	for (size_t i = 0; i < c->n; i++) {
		compute_read(c, &w, (uint32_t)i);
		for (int k = 0; k < CATALOG_WRITE_KINDS; k++)
			compute_write(c, &w, (uint32_t)i, (CatalogWrite)k);
		compute_ancestors(c, &w, (uint32_t)i);
	}
	free(w.mark);
	for (int k = 0; k < CATALOG_WRITE_KINDS; k++)
		free(w.mark_kind[k]);
	free(w.list);
	free(w.qrel);
	free(w.qval);
}

Catalog *catalog_builder_finish(CatalogBuilder *b, char *err, size_t errlen)
{
	if (!b)
		return NULL;
	if (b->failed) {
		if (err && errlen)
			snprintf(err, errlen, "%s", b->error);
		catalog_builder_free(b);
		return NULL;
	}
	Catalog *c = xcalloc(1, sizeof *c);
	c->refcount = 1;
	c->fingerprint = b->fingerprint;
	c->arena = b->arena; /* names and edge texts move over */
	b->arena.head = NULL;
	c->n = b->n_rels;
	c->rels = xcalloc(c->n, sizeof *c->rels);
	if (!index_rels(c, b, err, errlen)) {
		catalog_builder_free(b);
		catalog_unref(c);
		return NULL;
	}
	adj_build(c, &b->edges[E_INH], E_INH, true); /* child -> parents */
	adj_build(c, &b->edges[E_VREL], E_VREL, true);
	adj_build(c, &b->edges[E_PREL], E_PREL, true);
	adj_build(c, &b->edges[E_VFN], E_VFN, false);
	adj_build(c, &b->edges[E_PFN], E_PFN, false);
	adj_build(c, &b->edges[E_FK], E_FK, true); /* referenced -> referencing */
	adj_build(c, &b->edges[E_TRG], E_TRG, false);
	adj_build(c, &b->edges[E_RULE], E_RULE, false);
	build_children(c);
	catalog_builder_free(b);
	compute_closures(c);
	return c;
}

Catalog *catalog_ref(Catalog *c)
{
	if (c)
		c->refcount++;
	return c;
}

void catalog_unref(Catalog *c)
{
	if (!c || --c->refcount > 0)
		return;
	hashmap_free(&c->by_name);
	hashmap_free(&c->by_oid);
	free(c->rels);
	arena_free(&c->arena);
	free(c);
}

const CatalogRel *catalog_find(const Catalog *c, const char *schema, const char *name)
{
	if (!c || !schema || !name)
		return NULL;
	NameKey k = {schema, name};
	const Rel *r = hashmap_get(&c->by_name, name_hash(schema, name), name_eq, &k);
	return r ? &r->pub : NULL;
}

const CatalogRel *catalog_find_oid(const Catalog *c, uint32_t oid)
{
	if (!c)
		return NULL;
	const Rel *r = hashmap_get(&c->by_oid, hashmap_hash_u32(oid), oid_eq, &oid);
	return r ? &r->pub : NULL;
}

size_t catalog_count(const Catalog *c) { return c ? c->n : 0; }

const CatalogRel *catalog_at(const Catalog *c, size_t i) { return c && i < c->n ? &c->rels[i].pub : NULL; }

uint64_t catalog_fingerprint(const Catalog *c) { return c ? c->fingerprint : 0; }

const char *catalog_write_name(CatalogWrite kind)
{
	switch (kind) {
	case CATALOG_INSERT:
		return "INSERT";
	case CATALOG_UPDATE:
		return "UPDATE";
	case CATALOG_DELETE:
		return "DELETE";
	case CATALOG_TRUNCATE:
		return "TRUNCATE";
	}
	return "?";
}

/* ---- the catalog query ---- */

/*
 * One text, one round trip: BEGIN, SET LOCAL, six SELECTs, COMMIT (the simple protocol runs them
 * in order and returns one result each). REPEATABLE READ gives the six SELECTs one snapshot; READ
 * ONLY and the statement_timeout keep it harmless on a primary. Every SELECT is one pass over a
 * catalog (or a join on oids), so a database with thousands of relations answers in milliseconds;
 * only views and SELECT policies cost more (a regular expression over their stored query trees).
 *
 * (1) rel: the relations a statement can read or write (tables, partitioned tables, views,
 *     materialized views, foreign tables) outside the system schemas. Sequences, indexes and
 *     composite types are left out: a statement naming one is then "not in the model".
 * (2) inh: pg_inherits rows between tables (partitions and classic inheritance; partitioned
 *     indexes have rows there too and are left out).
 * (3) vrel / vfn / prel / pfn: what a view's query (its _RETURN rule, pg_rewrite.ev_action) and
 *     the USING clause of a SELECT (or ALL) policy of a table with row security on
 *     (pg_policy.polqual) read and call, taken from their stored query trees rather than pg_depend:
 *     pg_depend records nothing about pinned objects, i.e. built-in functions such as now() and
 *     the system catalogs. In the tree's text every relation read is a range table entry's
 *     ":relid N" (subqueries, CTEs and sublinks included); functions are ":funcid" (calls, casts),
 *     ":opfuncid" / ":opno" (operators, the latter mapped through pg_operator.oprcode),
 *     ":aggfnoid", ":winfnoid", ":tsmhandler" (TABLESAMPLE); CURRENT_DATE, CURRENT_TIMESTAMP,
 *     LOCALTIME... are SQLValueFunction nodes whose :type is not name (19: CURRENT_USER and the
 *     like, which the cache key's role and search_path cover). Those are a second, separate
 *     expression over the trees that mention them: one expression with both alternatives makes
 *     PostgreSQL's regex engine 30 times slower (2 ms per view instead of 0.06). Only functions that matter are
 *     returned: not immutable, or not built-in. The view itself (PostgreSQL 15 keeps OLD/NEW
 *     entries in a view's rule) is not returned as a relation it reads. A relation in a system
 *     schema comes back with its name ("outside"), so a log can say why a view is not cacheable.
 * (4) fk: foreign keys with their ON DELETE / ON UPDATE actions (partition-level clones included).
 * (5) trg: user triggers that are not disabled (internal ones, e.g. the foreign keys' own, left out).
 * (6) rule: rules other than views' SELECT rules, not disabled.
 */
static const char CATALOG_SQL_FORMAT[] =
	"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
	"SET LOCAL statement_timeout = %lld;\n"
	/* (1) */
	"SELECT 'rel', c.oid, n.nspname, c.relname, c.relkind, c.relrowsecurity\n"
	"  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	" WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')\n"
	"   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')\n"
	"   AND n.nspname !~ '^pg_(toast_)?temp_';\n"
	/* (2) */
	"SELECT 'inh', i.inhrelid, i.inhparent\n"
	"  FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid\n"
	" WHERE c.relkind IN ('r', 'p', 'f');\n"
	/* (3) */
	"WITH usr AS (\n"
	"  SELECT c.oid, c.relkind, c.relrowsecurity\n"
	"    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	"   WHERE c.relkind IN ('v', 'r', 'p', 'f')\n"
	"     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')\n"
	"     AND n.nspname !~ '^pg_(toast_)?temp_'\n"
	"), tree AS (\n"
	"  SELECT 'v' AS via, r.ev_class AS owner, r.ev_action::text AS t\n"
	"    FROM pg_catalog.pg_rewrite r JOIN usr ON usr.oid = r.ev_class\n"
	"   WHERE r.rulename = '_RETURN' AND usr.relkind = 'v'\n"
	"  UNION ALL\n"
	"  SELECT 'p', p.polrelid, p.polqual::text\n"
	"    FROM pg_catalog.pg_policy p JOIN usr ON usr.oid = p.polrelid\n"
	"   WHERE usr.relrowsecurity AND p.polcmd IN ('r', '*') AND p.polqual IS NOT NULL\n"
	"), ref AS (\n"
	"  SELECT DISTINCT tree.via, tree.owner, m[1] AS k, m[2]::oid AS id, NULL AS svf_type\n"
	"    FROM tree, regexp_matches(tree.t, ':(relid|funcid|opfuncid|opno|aggfnoid|winfnoid|tsmhandler) ([0-9]+)', 'g') AS m\n"
	"  UNION\n"
	"  SELECT tree.via, tree.owner, 'svf', NULL, m[1]\n"
	"    FROM tree, regexp_matches(tree.t, '\\{SQLVALUEFUNCTION :op [0-9]+ :type ([0-9]+)', 'g') AS m\n"
	"   WHERE tree.t LIKE '%%{SQLVALUEFUNCTION %%'\n"
	")\n"
	"SELECT ref.via || 'rel', ref.owner, c.oid,\n"
	"       CASE WHEN n.nspname IN ('pg_catalog', 'information_schema', 'pg_toast')\n"
	"              OR n.nspname ~ '^pg_(toast_)?temp_'\n"
	"            THEN n.nspname || '.' || c.relname END, NULL::text\n"
	"  FROM ref JOIN pg_catalog.pg_class c ON c.oid = ref.id\n"
	"       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n"
	" WHERE ref.k = 'relid' AND ref.id <> ref.owner\n"
	"UNION ALL\n"
	"SELECT DISTINCT ref.via || 'fn', ref.owner, p.oid, p.provolatile::text, n.nspname || '.' || p.proname\n"
	"  FROM ref LEFT JOIN pg_catalog.pg_operator o ON ref.k = 'opno' AND o.oid = ref.id\n"
	"       JOIN pg_catalog.pg_proc p ON p.oid = CASE WHEN ref.k = 'opno' THEN o.oprcode ELSE ref.id END\n"
	"       JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n"
	" WHERE ref.k NOT IN ('relid', 'svf') AND (p.provolatile <> 'i' OR p.oid >= 16384)\n"
	"UNION ALL\n"
	"SELECT DISTINCT ref.via || 'fn', ref.owner, 0::oid, 's', 'the clock (CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME...)'\n"
	"  FROM ref WHERE ref.svf_type IS NOT NULL AND ref.svf_type <> '19';\n"
	/* (4) */
	"SELECT 'fk', conrelid, confrelid, confdeltype, confupdtype, conname\n"
	"  FROM pg_catalog.pg_constraint WHERE contype = 'f';\n"
	/* (5) */
	"SELECT 'trg', tgrelid, tgtype, tgenabled, tgname\n"
	"  FROM pg_catalog.pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D';\n"
	/* (6) */
	"SELECT 'rule', ev_class, ev_type, ev_enabled, rulename\n"
	"  FROM pg_catalog.pg_rewrite WHERE ev_type <> '1' AND ev_enabled <> 'D';\n"
	"COMMIT";

char *catalog_sql(char *buf, size_t cap, long long statement_timeout_ms)
{
	if (statement_timeout_ms < 0)
		statement_timeout_ms = 0;
	int n = snprintf(buf, cap, CATALOG_SQL_FORMAT, statement_timeout_ms);
	return n >= 0 && (size_t)n < cap ? buf : NULL;
}
