/*
 * test_catalog — the relation model built from hand-made catalog rows: read dependencies (nested
 * views, views over partitioned tables, row security policies, functions and the clock that make a
 * view or policy not cacheable, relations outside the model, nesting and size bounds) and write
 * effects (partitions at several levels, classic and multiple inheritance, views written through,
 * each foreign key action transitively and in cycles, triggers per event, rules, bounds), and what
 * the builder refuses.
 */
#include "catalog.h"
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>

#define MAXCOLS 8

/* One row: the kind and its columns, NULL-terminated (use NUL_ for an SQL NULL in the middle). */
static const char NUL_[] = "<null>";

static bool vrow(CatalogBuilder *b, const char *kind, va_list ap)
{
	const char *cols[MAXCOLS];
	size_t n = 0;
	cols[n++] = kind;
	const char *c;
	while (n < MAXCOLS && (c = va_arg(ap, const char *)) != NULL)
		cols[n++] = c == NUL_ ? NULL : c;
	char err[256];
	bool ok = catalog_builder_row(b, cols, n, err, sizeof err);
	if (!ok)
		fprintf(stderr, "    (row refused: %s)\n", err);
	return ok;
}

static bool row(CatalogBuilder *b, const char *kind, ...)
{
	va_list ap;
	va_start(ap, kind);
	bool ok = vrow(b, kind, ap);
	va_end(ap);
	return ok;
}

static char numbuf[64][16];
static int numi;
static const char *num(unsigned v)
{
	char *p = numbuf[numi++ % 64];
	snprintf(p, 16, "%u", v);
	return p;
}

/* A relation in schema s. */
static void rel(CatalogBuilder *b, unsigned oid, const char *name, const char *kind)
{
	CHECK(row(b, "rel", num(oid), "s", name, kind, "f", NULL));
}
static void rel_rls(CatalogBuilder *b, unsigned oid, const char *name)
{
	CHECK(row(b, "rel", num(oid), "s", name, "r", "t", NULL));
}
static void inh(CatalogBuilder *b, unsigned child, unsigned parent)
{
	CHECK(row(b, "inh", num(child), num(parent), NULL));
}
static void vrel(CatalogBuilder *b, unsigned view, unsigned reads)
{
	CHECK(row(b, "vrel", num(view), num(reads), NUL_, NULL));
}
static void fk(CatalogBuilder *b, unsigned referencing, unsigned referenced, const char *del, const char *upd)
{
	CHECK(row(b, "fk", num(referencing), num(referenced), del, upd, "fk", NULL));
}
static void trg(CatalogBuilder *b, unsigned relid, int tgtype, const char *enabled, const char *name)
{
	CHECK(row(b, "trg", num(relid), num((unsigned)tgtype), enabled, name, NULL));
}

static Catalog *finish(CatalogBuilder *b)
{
	char err[256] = "";
	Catalog *c = catalog_builder_finish(b, err, sizeof err);
	if (!c)
		fprintf(stderr, "    (finish failed: %s)\n", err);
	return c;
}

static const CatalogRel *find(const Catalog *c, const char *name)
{
	const CatalogRel *r = catalog_find(c, "s", name);
	if (!r)
		fprintf(stderr, "    (no relation s.%s)\n", name);
	return r;
}

/* The set as "a b c" (names without schema, sorted) for comparison; "!" appended when unknown,
 * "+" when too_many. */
static const char *names(const CatalogSet *s)
{
	static char buf[4096];
	const char *v[CATALOG_MAX_RELS];
	for (size_t i = 0; i < s->n; i++)
		v[i] = s->rels[i]->name;
	for (size_t i = 1; i < s->n; i++)
		for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			const char *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	size_t len = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < s->n; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", v[i]);
	if (s->unknown)
		len += (size_t)snprintf(buf + len, sizeof buf - len, " !");
	if (s->too_many)
		snprintf(buf + len, sizeof buf - len, " +");
	return buf;
}

static const char *reads(const Catalog *c, const char *name)
{
	const CatalogRel *r = find(c, name);
	if (!r)
		return "(missing)";
	if (r->read.n == 0 || r->read.rels[0] != r)
		return "(itself not first)";
	return names(catalog_read_deps(r));
}

static const char *writes(const Catalog *c, const char *name, CatalogWrite k)
{
	const CatalogRel *r = find(c, name);
	if (!r)
		return "(missing)";
	if (r->write[k].n == 0 || r->write[k].rels[0] != r)
		return "(itself not first)";
	return names(catalog_write_effects(r, k));
}

static const char *why_read(const Catalog *c, const char *name)
{
	const CatalogRel *r = find(c, name);
	return r ? r->read.why : "(missing)";
}

static const char *why_write(const Catalog *c, const char *name, CatalogWrite k)
{
	const CatalogRel *r = find(c, name);
	return r ? r->write[k].why : "(missing)";
}

/* ---- reads ---- */

TEST(nested_views)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 1, "t", "r");
	rel(b, 2, "u", "r");
	rel(b, 3, "v1", "v");
	rel(b, 4, "v2", "v");
	rel(b, 5, "v3", "v");
	rel(b, 6, "alone", "r");
	vrel(b, 3, 1);
	vrel(b, 4, 3);
	vrel(b, 5, 4);
	vrel(b, 5, 2);
	vrel(b, 5, 1); /* also directly: counted once */
	/* an immutable built-in function (lower) and operator function (int4eq) are fine */
	CHECK(row(b, "vfn", "5", "870", "i", "pg_catalog.lower", NULL));
	CHECK(row(b, "vfn", "5", "65", "i", "pg_catalog.int4eq", NULL));
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_INT(catalog_count(c), 6);
	CHECK_STR(reads(c, "v1"), "t v1");
	CHECK_STR(reads(c, "v2"), "t v1 v2");
	CHECK_STR(reads(c, "v3"), "t u v1 v2 v3");
	CHECK_STR(reads(c, "t"), "t");
	CHECK_STR(reads(c, "alone"), "alone");
	CHECK_STR(why_read(c, "v3"), "");
	/* writes to a base table name only the table: the views depend on it */
	CHECK_STR(writes(c, "t", CATALOG_UPDATE), "t");
	/* found by oid too, and names are exact (no folding, no quoting) */
	CHECK(catalog_find_oid(c, 5) == find(c, "v3"));
	CHECK(catalog_find(c, "s", "V3") == NULL);
	CHECK(catalog_find(c, "S", "v3") == NULL);
	CHECK(catalog_find(c, "public", "v3") == NULL);
	CHECK(catalog_find_oid(c, 99) == NULL);
	catalog_unref(c);
}

TEST(views_over_partitioned_table)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 10, "p", "p");
	rel(b, 11, "p1", "r");
	rel(b, 12, "p2", "r");
	rel(b, 13, "pv", "v");
	inh(b, 11, 10);
	inh(b, 12, 10);
	vrel(b, 13, 10);
	Catalog *c = finish(b);
	REQUIRE(c);
	/* the view depends on the parent; a write to a partition names the parent among its effects */
	CHECK_STR(reads(c, "pv"), "p pv");
	CHECK_STR(reads(c, "p"), "p");
	for (int k = 0; k < CATALOG_WRITE_KINDS; k++) {
		CHECK_STR(writes(c, "p1", (CatalogWrite)k), "p p1");
		CHECK_STR(writes(c, "p", (CatalogWrite)k), "p p1 p2");
	}
	catalog_unref(c);
}

TEST(multi_level_partitions)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 20, "top", "p");
	rel(b, 21, "mid", "p");
	rel(b, 22, "leaf1", "r");
	rel(b, 23, "leaf2", "r");
	rel(b, 24, "side", "r");
	inh(b, 21, 20);
	inh(b, 22, 21);
	inh(b, 23, 21);
	inh(b, 24, 20);
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "leaf1", CATALOG_INSERT), "leaf1 mid top");
	CHECK_STR(writes(c, "leaf2", CATALOG_DELETE), "leaf2 mid top");
	CHECK_STR(writes(c, "mid", CATALOG_UPDATE), "leaf1 leaf2 mid top");
	CHECK_STR(writes(c, "top", CATALOG_INSERT), "leaf1 leaf2 mid side top");
	CHECK_STR(writes(c, "side", CATALOG_TRUNCATE), "side top");
	CHECK_STR(reads(c, "leaf1"), "leaf1");
	CHECK_STR(reads(c, "top"), "top");
	/* ancestors: what a change the WAL reports for a leaf also changes */
	const CatalogSet *up = catalog_ancestors(find(c, "leaf1"));
	CHECK_STR(names(up), "leaf1 mid top");
	CHECK(up->rels[0] == find(c, "leaf1") && up->rels[1] == find(c, "mid")); /* nearest first */
	CHECK_STR(names(catalog_ancestors(find(c, "side"))), "side top");
	CHECK_STR(names(catalog_ancestors(find(c, "top"))), "top");
	catalog_unref(c);
}

TEST(classic_and_multiple_inheritance)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 30, "animal", "r");
	rel(b, 31, "pet", "r");
	rel(b, 32, "dog", "r");
	rel(b, 33, "tagged", "r");
	inh(b, 31, 30);
	inh(b, 32, 31);
	inh(b, 32, 33); /* dog inherits pet and tagged */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "dog", CATALOG_INSERT), "animal dog pet tagged");
	CHECK_STR(writes(c, "animal", CATALOG_DELETE), "animal dog pet tagged");
	/* through tagged, dog's rows change, and they are rows of pet and animal too */
	CHECK_STR(writes(c, "tagged", CATALOG_UPDATE), "animal dog pet tagged");
	CHECK_STR(writes(c, "pet", CATALOG_INSERT), "animal dog pet tagged");
	CHECK_STR(names(catalog_ancestors(find(c, "dog"))), "animal dog pet tagged");
	CHECK_STR(names(catalog_ancestors(find(c, "pet"))), "animal pet");
	catalog_unref(c);
}

TEST(row_security_policies)
{
	CatalogBuilder *b = catalog_builder_new();
	rel_rls(b, 40, "doc");
	rel(b, 41, "acl", "v");
	rel(b, 42, "members", "r");
	rel(b, 43, "docview", "v");
	rel(b, 44, "loose", "r"); /* policy rows, but row security off */
	rel_rls(b, 45, "tenant_doc");
	rel_rls(b, 46, "ping");
	rel_rls(b, 47, "pong");
	CHECK(row(b, "prel", "40", "41", NUL_, NULL));
	vrel(b, 41, 42);
	vrel(b, 43, 40);
	CHECK(row(b, "prel", "44", "42", NUL_, NULL));
	CHECK(row(b, "pfn", "45", "2077", "s", "pg_catalog.current_setting", NULL));
	/* two policies reading each other's tables: a cycle */
	CHECK(row(b, "prel", "46", "47", NUL_, NULL));
	CHECK(row(b, "prel", "47", "46", NUL_, NULL));
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(reads(c, "doc"), "acl doc members");
	CHECK_STR(reads(c, "docview"), "acl doc docview members");
	CHECK_STR(reads(c, "loose"), "loose");
	CHECK_STR(reads(c, "tenant_doc"), "tenant_doc !");
	CHECK_CONTAINS(why_read(c, "tenant_doc"), "pg_catalog.current_setting (stable)");
	CHECK_CONTAINS(why_read(c, "tenant_doc"), "policy");
	CHECK_STR(reads(c, "ping"), "ping pong");
	CHECK_STR(reads(c, "pong"), "ping pong");
	/* a policy is not a write dependency */
	CHECK_STR(writes(c, "members", CATALOG_INSERT), "members");
	CHECK(find(c, "doc") && find(c, "doc")->row_security);
	catalog_unref(c);
}

TEST(not_cacheable_views)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 50, "t", "r");
	const char *views[] = {"vrandom", "vnow", "vuserfn", "vuserimm", "vclock", "vgood", "vover", "mv", "vmv"};
	for (unsigned i = 0; i < sizeof views / sizeof views[0]; i++)
		rel(b, 51 + i, views[i], strcmp(views[i], "mv") == 0 ? "m" : "v");
	for (unsigned i = 51; i <= 59; i++)
		if (i != 58 && i != 59)
			vrel(b, i, 50);
	CHECK(row(b, "vfn", "51", "1598", "v", "pg_catalog.random", NULL));
	CHECK(row(b, "vfn", "52", "1299", "s", "pg_catalog.now", NULL));
	CHECK(row(b, "vfn", "53", "16400", "v", "s.f", NULL));
	CHECK(row(b, "vfn", "54", "16401", "i", "s.g", NULL)); /* immutable, but not built-in */
	CHECK(row(b, "vfn", "55", "0", "s", "the clock", NULL));
	CHECK(row(b, "vfn", "56", "870", "i", "pg_catalog.lower", NULL));
	vrel(b, 57, 51);  /* a view over a not cacheable view */
	vrel(b, 58, 51);  /* a materialized view over it: its own contents */
	vrel(b, 59, 58);  /* a view over the materialized view */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(reads(c, "vrandom"), "t vrandom !");
	CHECK_CONTAINS(why_read(c, "vrandom"), "the view of s.vrandom calls pg_catalog.random (volatile)");
	CHECK_STR(reads(c, "vnow"), "t vnow !");
	CHECK_CONTAINS(why_read(c, "vnow"), "(stable)");
	CHECK_STR(reads(c, "vuserfn"), "t vuserfn !");
	CHECK_CONTAINS(why_read(c, "vuserfn"), "s.f (volatile, not built-in)");
	CHECK_STR(reads(c, "vuserimm"), "t vuserimm !");
	CHECK_CONTAINS(why_read(c, "vuserimm"), "s.g (immutable, not built-in)");
	CHECK_STR(reads(c, "vclock"), "t vclock !");
	CHECK_CONTAINS(why_read(c, "vclock"), "reads the clock");
	CHECK_STR(reads(c, "vgood"), "t vgood");
	CHECK_STR(reads(c, "vover"), "t vover vrandom !");
	CHECK_CONTAINS(why_read(c, "vover"), "s.vrandom calls pg_catalog.random");
	CHECK_STR(reads(c, "mv"), "mv");
	CHECK_STR(reads(c, "vmv"), "mv vmv");
	catalog_unref(c);
}

TEST(relations_outside_the_model)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 60, "vsys", "v");
	rel(b, 61, "vgone", "v");
	rel(b, 62, "t", "r");
	CHECK(row(b, "vrel", "60", "1259", "pg_catalog.pg_class", NULL));
	vrel(b, 61, 62);
	vrel(b, 61, 777); /* no such relation in the rows: a sequence, say */
	/* rel rows the model leaves out */
	CHECK(row(b, "rel", "1259", "pg_catalog", "pg_class", "r", "f", NULL));
	CHECK(row(b, "rel", "900", "pg_temp_3", "tmp", "r", "f", NULL));
	CHECK(row(b, "rel", "901", "pg_toast_temp_3", "x", "r", "f", NULL));
	CHECK(row(b, "rel", "902", "information_schema", "tables", "v", "f", NULL));
	CHECK(row(b, "rel", "903", "s", "a_name_that_is_longer_than_sixty_three_bytes_which_postgres_truncates", "r", "f",
		  NULL));
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_INT(catalog_count(c), 3);
	CHECK(catalog_find(c, "pg_catalog", "pg_class") == NULL);
	CHECK(catalog_find(c, "pg_temp_3", "tmp") == NULL);
	CHECK(catalog_find_oid(c, 902) == NULL);
	CHECK_STR(reads(c, "vsys"), "vsys !");
	CHECK_CONTAINS(why_read(c, "vsys"), "pg_catalog.pg_class, outside the model");
	CHECK_STR(reads(c, "vgone"), "t vgone !");
	CHECK_CONTAINS(why_read(c, "vgone"), "oid 777");
	catalog_unref(c);
	/* a parent outside the model */
	b = catalog_builder_new();
	rel(b, 64, "orphan", "r");
	inh(b, 64, 778);
	c = finish(b);
	REQUIRE(c);
	CHECK_STR(names(catalog_ancestors(find(c, "orphan"))), "orphan !");
	CHECK_CONTAINS(catalog_ancestors(find(c, "orphan"))->why, "oid 778");
	catalog_unref(c);
}

TEST(view_nesting_bound)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 100, "base", "r");
	char name[32];
	for (unsigned i = 1; i <= CATALOG_MAX_DEPTH + 5; i++) {
		snprintf(name, sizeof name, "v%u", i);
		rel(b, 100 + i, name, "v");
		vrel(b, 100 + i, 100 + i - 1);
	}
	Catalog *c = finish(b);
	REQUIRE(c);
	snprintf(name, sizeof name, "v%u", CATALOG_MAX_DEPTH);
	CHECK(!find(c, name)->read.unknown);
	CHECK_INT(find(c, name)->read.total, CATALOG_MAX_DEPTH + 1);
	CHECK(find(c, name)->read.too_many); /* 33 relations: more than the cache takes */
	snprintf(name, sizeof name, "v%u", CATALOG_MAX_DEPTH + 5);
	CHECK(find(c, name)->read.unknown);
	CHECK_CONTAINS(find(c, name)->read.why, "nested deeper than");
	catalog_unref(c);
}

/* ---- writes ---- */

TEST(foreign_key_actions)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 200, "a", "r");
	rel(b, 201, "b_cascade", "r");
	rel(b, 202, "c_setnull", "r");
	rel(b, 203, "d_restrict_updcascade", "r");
	rel(b, 204, "e_noaction_upddefault", "r");
	rel(b, 205, "f_setdefault", "r");
	rel(b, 206, "g_under_b", "r");
	fk(b, 201, 200, "c", "a");
	fk(b, 202, 200, "n", "r");
	fk(b, 203, 200, "r", "c");
	fk(b, 204, 200, "a", "d");
	fk(b, 205, 200, "d", "n");
	fk(b, 206, 201, "c", "a"); /* a DELETE of a reaches g through b */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "a", CATALOG_INSERT), "a");
	CHECK_STR(writes(c, "a", CATALOG_DELETE), "a b_cascade c_setnull f_setdefault g_under_b");
	CHECK_STR(writes(c, "a", CATALOG_UPDATE), "a d_restrict_updcascade e_noaction_upddefault f_setdefault");
	CHECK_STR(writes(c, "a", CATALOG_TRUNCATE),
		  "a b_cascade c_setnull d_restrict_updcascade e_noaction_upddefault f_setdefault g_under_b");
	CHECK_STR(writes(c, "b_cascade", CATALOG_DELETE), "b_cascade g_under_b");
	CHECK_STR(writes(c, "g_under_b", CATALOG_DELETE), "g_under_b");
	catalog_unref(c);
}

TEST(foreign_key_transitive_kinds_and_cycles)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 300, "x", "r");
	rel(b, 301, "y", "r");
	rel(b, 302, "z", "r");
	rel(b, 303, "w", "r");
	fk(b, 301, 300, "n", "a"); /* DELETE x: UPDATE y (SET NULL) */
	fk(b, 302, 301, "c", "c"); /* UPDATE y: UPDATE z (ON UPDATE CASCADE) */
	fk(b, 303, 301, "c", "a"); /* but not w: its ON UPDATE does nothing, and y is not deleted */
	rel(b, 310, "m", "r");
	rel(b, 311, "n", "r");
	fk(b, 311, 310, "c", "a");
	fk(b, 310, 311, "c", "a"); /* a cycle */
	rel(b, 320, "tree", "r");
	fk(b, 320, 320, "c", "c"); /* self-reference */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "x", CATALOG_DELETE), "x y z");
	CHECK_STR(writes(c, "y", CATALOG_DELETE), "w y z");
	CHECK_STR(writes(c, "m", CATALOG_DELETE), "m n");
	CHECK_STR(writes(c, "n", CATALOG_DELETE), "m n");
	CHECK_STR(writes(c, "tree", CATALOG_DELETE), "tree");
	CHECK_STR(writes(c, "tree", CATALOG_UPDATE), "tree");
	catalog_unref(c);
}

TEST(foreign_keys_and_partitions)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 400, "orders", "r");
	rel(b, 401, "items", "p");
	rel(b, 402, "items_2024", "r");
	rel(b, 403, "items_2025", "r");
	inh(b, 402, 401);
	inh(b, 403, 401);
	/* PostgreSQL keeps the constraint on the partitioned table and a clone per partition */
	fk(b, 401, 400, "c", "a");
	fk(b, 402, 400, "c", "a");
	fk(b, 403, 400, "c", "a");
	rel(b, 410, "audit", "r");
	trg(b, 403, 1 | 8, "O", "items_2025_del"); /* AFTER DELETE ROW on one partition */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "orders", CATALOG_DELETE), "items items_2024 items_2025 orders !");
	CHECK_CONTAINS(why_write(c, "orders", CATALOG_DELETE), "trigger items_2025_del on s.items_2025 (AFTER ROW) fires on DELETE");
	CHECK_STR(writes(c, "orders", CATALOG_UPDATE), "orders");
	catalog_unref(c);
}

TEST(triggers_per_event)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 500, "ins", "r");
	rel(b, 501, "updel", "r");
	rel(b, 502, "trunc", "r");
	rel(b, 503, "off", "r");
	rel(b, 504, "parent", "p");
	rel(b, 505, "child", "r");
	rel(b, 506, "vw", "v");
	rel(b, 507, "base", "r");
	trg(b, 500, 1 | 2 | 4, "O", "ins_before");          /* BEFORE INSERT ROW */
	trg(b, 501, 1 | 8 | 16, "A", "updel_after");        /* AFTER UPDATE OR DELETE ROW, ALWAYS */
	trg(b, 502, 32, "R", "trunc_stmt");                 /* TRUNCATE statement trigger, REPLICA */
	trg(b, 503, 1 | 4 | 8 | 16, "D", "disabled");       /* disabled: ignored */
	trg(b, 505, 1 | 4, "O", "child_ins");
	inh(b, 505, 504);
	vrel(b, 506, 507);
	trg(b, 506, 1 | 64 | 16, "O", "vw_instead_upd");    /* INSTEAD OF UPDATE ROW on the view */
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "ins", CATALOG_INSERT), "ins !");
	CHECK_CONTAINS(why_write(c, "ins", CATALOG_INSERT), "trigger ins_before on s.ins (BEFORE ROW) fires on INSERT");
	CHECK_STR(writes(c, "ins", CATALOG_UPDATE), "ins");
	CHECK_STR(writes(c, "ins", CATALOG_DELETE), "ins");
	CHECK_STR(writes(c, "ins", CATALOG_TRUNCATE), "ins");
	CHECK_STR(writes(c, "updel", CATALOG_INSERT), "updel");
	CHECK_STR(writes(c, "updel", CATALOG_UPDATE), "updel !");
	CHECK_STR(writes(c, "updel", CATALOG_DELETE), "updel !");
	CHECK_STR(writes(c, "updel", CATALOG_TRUNCATE), "updel");
	CHECK_STR(writes(c, "trunc", CATALOG_TRUNCATE), "trunc !");
	CHECK_CONTAINS(why_write(c, "trunc", CATALOG_TRUNCATE), "(AFTER STATEMENT) fires on TRUNCATE");
	CHECK_STR(writes(c, "trunc", CATALOG_DELETE), "trunc");
	for (int k = 0; k < CATALOG_WRITE_KINDS; k++)
		CHECK_STR(writes(c, "off", (CatalogWrite)k), "off");
	/* an INSERT through the parent reaches the child's trigger; one into the parent's other... */
	CHECK_STR(writes(c, "parent", CATALOG_INSERT), "child parent !");
	CHECK_STR(writes(c, "parent", CATALOG_DELETE), "child parent");
	CHECK_STR(writes(c, "vw", CATALOG_UPDATE), "base vw !");
	CHECK_CONTAINS(why_write(c, "vw", CATALOG_UPDATE), "INSTEAD OF ROW");
	/* a simple view without triggers writes its base */
	CHECK_STR(writes(c, "vw", CATALOG_INSERT), "base vw");
	catalog_unref(c);
}

TEST(rules)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 600, "logged", "r");
	rel(b, 601, "quiet", "r");
	rel(b, 602, "rv", "v");
	rel(b, 603, "rbase", "r");
	CHECK(row(b, "rule", "600", "3", "O", "log_insert", NULL)); /* ON INSERT DO ALSO */
	CHECK(row(b, "rule", "601", "4", "D", "off_delete", NULL)); /* disabled */
	CHECK(row(b, "rule", "602", "2", "O", "rv_update", NULL));  /* ON UPDATE TO a view DO INSTEAD */
	vrel(b, 602, 603);
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "logged", CATALOG_INSERT), "logged !");
	CHECK_CONTAINS(why_write(c, "logged", CATALOG_INSERT), "rule log_insert on s.logged rewrites INSERT");
	CHECK_STR(writes(c, "logged", CATALOG_UPDATE), "logged");
	CHECK_STR(writes(c, "logged", CATALOG_TRUNCATE), "logged"); /* TRUNCATE fires no rule */
	CHECK_STR(writes(c, "quiet", CATALOG_DELETE), "quiet");
	CHECK_STR(writes(c, "rv", CATALOG_UPDATE), "rbase rv !");
	CHECK_STR(writes(c, "rv", CATALOG_DELETE), "rbase rv");
	catalog_unref(c);
}

TEST(views_written_through)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 700, "t", "r");
	rel(b, 701, "simple", "v");
	rel(b, 702, "onsimple", "v");
	rel(b, 703, "kid", "r");
	vrel(b, 701, 700);
	vrel(b, 702, 701);
	fk(b, 703, 700, "c", "a");
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "onsimple", CATALOG_INSERT), "onsimple simple t");
	CHECK_STR(writes(c, "onsimple", CATALOG_DELETE), "kid onsimple simple t");
	CHECK_STR(writes(c, "simple", CATALOG_TRUNCATE), "simple"); /* TRUNCATE of a view fails */
	catalog_unref(c);
}

TEST(too_many)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 1000, "big", "p");
	rel(b, 1100, "wide", "v");
	char name[32];
	for (unsigned i = 1; i <= 40; i++) {
		snprintf(name, sizeof name, "big_%02u", i);
		rel(b, 1000 + i, name, "r");
		inh(b, 1000 + i, 1000);
		vrel(b, 1100, 1000 + i);
	}
	Catalog *c = finish(b);
	REQUIRE(c);
	const CatalogSet *w = catalog_write_effects(find(c, "big"), CATALOG_UPDATE);
	CHECK(w->too_many);
	CHECK(!w->unknown);
	CHECK_INT(w->total, 41);
	CHECK_INT(w->n, CATALOG_MAX_RELS);
	CHECK(w->rels[0] == find(c, "big"));
	CHECK_STR(w->why, "41 relations, more than 32");
	CHECK_STR(writes(c, "big_07", CATALOG_INSERT), "big big_07");
	const CatalogSet *r = catalog_read_deps(find(c, "wide"));
	CHECK(r->too_many);
	CHECK_INT(r->total, 41);
	CHECK_STR(reads(c, "big"), "big");
	catalog_unref(c);
}

TEST(visit_bound)
{
	/* a chain of 5000 tables each cascading to the next */
	CatalogBuilder *b = catalog_builder_new();
	char name[32];
	for (unsigned i = 0; i < 5000; i++) {
		snprintf(name, sizeof name, "chain%u", i);
		rel(b, 20000 + i, name, "r");
		if (i)
			fk(b, 20000 + i, 20000 + i - 1, "c", "a");
	}
	Catalog *c = finish(b);
	REQUIRE(c);
	const CatalogSet *w = catalog_write_effects(find(c, "chain0"), CATALOG_DELETE);
	CHECK(w->unknown);
	CHECK(w->too_many);
	CHECK_CONTAINS(w->why, "more than 4096");
	CHECK_STR(writes(c, "chain4998", CATALOG_DELETE), "chain4998 chain4999");
	catalog_unref(c);
}

/* ---- the builder ---- */

TEST(builder_refuses_bad_rows)
{
	static const struct {
		size_t n;
		const char *c[7];
	} bad[] = {
		{0, {NULL}},                                       /* no kind */
		{1, {NULL}},
		{2, {"nope", "1"}},                                /* unknown kind */
		{5, {"rel", "1", "s", "t", "r"}},                  /* too few columns */
		{6, {"rel", "x1", "s", "t", "r", "f"}},            /* bad oid */
		{6, {"rel", "-1", "s", "t", "r", "f"}},
		{6, {"rel", "4294967296", "s", "t", "r", "f"}},    /* past 32 bits */
		{6, {"rel", "99999999999999999999", "s", "t", "r", "f"}},
		{6, {"rel", "", "s", "t", "r", "f"}},
		{6, {"rel", NULL, "s", "t", "r", "f"}},
		{6, {"rel", "1", NULL, "t", "r", "f"}},
		{6, {"rel", "1", "s", "t", "rr", "f"}},            /* relkind is one letter */
		{6, {"rel", "1", "s", "t", "r", "maybe"}},
		{3, {"inh", "1", NULL}},
		{5, {"vfn", "1", "2", "", "f"}},
		{6, {"fk", "1", "2", "c", NULL, "x"}},
		{5, {"trg", "1", "seven", "O", "t"}},
		{5, {"trg", "1", "70000", "O", "t"}},
		{5, {"trg", "1", "", "O", "t"}},
		{5, {"trg", "1", NULL, "O", "t"}},
		{5, {"rule", "1", "33", "O", "r"}},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CatalogBuilder *b = catalog_builder_new();
		char err[128] = "";
		bool ok = catalog_builder_row(b, bad[i].c, bad[i].n, err, sizeof err);
		if (ok)
			fprintf(stderr, "    (row %zu accepted)\n", i);
		CHECK(!ok);
		CHECK(err[0] != '\0');
		/* a failed builder stays failed and finishes as NULL with the error */
		const char *good[] = {"rel", "5", "s", "t", "r", "f"};
		CHECK(!catalog_builder_row(b, good, 6, NULL, 0));
		char err2[128] = "";
		CHECK(catalog_builder_finish(b, err2, sizeof err2) == NULL);
		CHECK_STR(err2, err);
	}
}

TEST(builder_duplicates_and_unknown_references)
{
	CatalogBuilder *b = catalog_builder_new();
	rel(b, 1, "t", "r");
	rel(b, 1, "t2", "r"); /* same oid */
	char err[128] = "";
	CHECK(catalog_builder_finish(b, err, sizeof err) == NULL);
	CHECK_CONTAINS(err, "two relations");

	b = catalog_builder_new();
	rel(b, 1, "t", "r");
	rel(b, 2, "t", "r"); /* same name */
	CHECK(catalog_builder_finish(b, err, sizeof err) == NULL);

	/* edges about relations the model does not hold are ignored; repeated edges are harmless */
	b = catalog_builder_new();
	rel(b, 1, "t", "r");
	inh(b, 1, 99);
	inh(b, 98, 1);
	trg(b, 97, 4, "O", "x");
	CHECK(row(b, "rule", "96", "3", "O", "r", NULL));
	fk(b, 1, 95, "c", "c"); /* t references a relation outside: nothing to do for writes to t */
	fk(b, 94, 1, "c", "c"); /* but a table outside referencing t with CASCADE: unknown */
	inh(b, 1, 1);
	/* extra trailing columns are allowed */
	CHECK(row(b, "vrel", "1", "1", NUL_, NUL_, NULL));
	Catalog *c = finish(b);
	REQUIRE(c);
	CHECK_STR(writes(c, "t", CATALOG_INSERT), "t");
	CHECK_STR(writes(c, "t", CATALOG_DELETE), "t !");
	CHECK_CONTAINS(why_write(c, "t", CATALOG_DELETE), "oid 94, not in the model");
	CHECK_STR(reads(c, "t"), "t");
	CHECK(catalog_ref(c) == c);
	catalog_unref(c);
	CHECK_STR(find(c, "t")->name, "t"); /* still referenced once */
	catalog_unref(c);
	catalog_unref(NULL);
	catalog_builder_free(NULL);
	CHECK(catalog_builder_finish(NULL, NULL, 0) == NULL);
	CHECK(catalog_find(NULL, "s", "t") == NULL);
	CHECK_INT(catalog_count(NULL), 0);
}

TEST(empty_catalog_and_fingerprint)
{
	Catalog *c = finish(catalog_builder_new());
	REQUIRE(c);
	CHECK_INT(catalog_count(c), 0);
	CHECK(catalog_find(c, "s", "t") == NULL);
	CHECK(catalog_at(c, 0) == NULL);
	catalog_unref(c);

	/* the same rows in another order: the same fingerprint; one value changed: another */
	CatalogBuilder *b1 = catalog_builder_new(), *b2 = catalog_builder_new(), *b3 = catalog_builder_new();
	rel(b1, 1, "t", "r");
	rel(b1, 2, "v", "v");
	vrel(b1, 2, 1);
	vrel(b2, 2, 1);
	rel(b2, 2, "v", "v");
	rel(b2, 1, "t", "r");
	rel(b3, 1, "t", "r");
	rel(b3, 2, "v", "v");
	vrel(b3, 2, 3);
	Catalog *c1 = finish(b1), *c2 = finish(b2), *c3 = finish(b3);
	REQUIRE(c1 && c2 && c3);
	CHECK(catalog_fingerprint(c1) == catalog_fingerprint(c2));
	CHECK(catalog_fingerprint(c1) != catalog_fingerprint(c3));
	CHECK_INT(catalog_count(c1), 2);
	CHECK(catalog_at(c1, 0) != NULL && catalog_at(c1, 2) == NULL);
	catalog_unref(c1);
	catalog_unref(c2);
	catalog_unref(c3);
}

TEST(the_query_text)
{
	char buf[CATALOG_SQL_CAP];
	const char *sql = catalog_sql(buf, sizeof buf, 15000);
	REQUIRE(sql);
	CHECK_CONTAINS(sql, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;");
	CHECK_CONTAINS(sql, "SET LOCAL statement_timeout = 15000;");
	CHECK_CONTAINS(sql, "pg_catalog.pg_inherits");
	CHECK_CONTAINS(sql, "pg_catalog.pg_policy");
	CHECK_CONTAINS(sql, "NOT tgisinternal");
	CHECK(strlen(sql) > 100 && strcmp(sql + strlen(sql) - 6, "COMMIT") == 0);
	char small[64];
	CHECK(catalog_sql(small, sizeof small, 1) == NULL);
	CHECK_STR(catalog_write_name(CATALOG_TRUNCATE), "TRUNCATE");
}

int main(void)
{
	RUN(nested_views);
	RUN(views_over_partitioned_table);
	RUN(multi_level_partitions);
	RUN(classic_and_multiple_inheritance);
	RUN(row_security_policies);
	RUN(not_cacheable_views);
	RUN(relations_outside_the_model);
	RUN(view_nesting_bound);
	RUN(foreign_key_actions);
	RUN(foreign_key_transitive_kinds_and_cycles);
	RUN(foreign_keys_and_partitions);
	RUN(triggers_per_event);
	RUN(rules);
	RUN(views_written_through);
	RUN(too_many);
	RUN(visit_bound);
	RUN(builder_refuses_bad_rows);
	RUN(builder_duplicates_and_unknown_references);
	RUN(empty_catalog_and_fingerprint);
	RUN(the_query_text);
	return unit_summary();
}
