/*
 * Unit tests for sqlkey: the row facts ("column = value") of reads (single tables, inner joins
 * closed under equality, USING, aliases), of writes (UPDATE without assigning the column,
 * DELETE, INSERT ... VALUES), and every shape that must give no fact (outer joins, OR, a relation
 * named twice, subqueries, set operations, decimals, negative numbers, casts that change values).
 */
#include "sqlclass.h"
#include "unit.h"

#include <stdlib.h>

static SqlCache cache;

/* "s.t.col=value" per fact (value parts joined by ||, parameters as $n), ";"-separated, plus
 * " target s.t rows N" for writes. */
static const char *facts(const char *sql)
{
	static char buf[2048];
	size_t used = 0;
	buf[0] = 0;
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, strlen(sql));
	if (a->parse_error || a->n_statements != 1) {
		snprintf(buf, sizeof buf, "parse error");
		sqlclass_release(a);
		return buf;
	}
	const SqlStatement *st = &a->statements[0];
	for (size_t i = 0; i < st->n_key_eqs; i++) {
		const SqlKeyEq *eq = &st->key_eqs[i];
		used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s%s%s.%s", i ? "; " : "",
					 eq->relation->schema ? eq->relation->schema : "", eq->relation->schema ? "." : "",
					 eq->relation->name, eq->column);
		if (eq->row)
			used += (size_t)snprintf(buf + used, sizeof buf - used, "[%d]", eq->row);
		used += (size_t)snprintf(buf + used, sizeof buf - used, "=");
		for (size_t p = 0; p < eq->n_parts; p++) {
			if (eq->parts[p].param)
				used += (size_t)snprintf(buf + used, sizeof buf - used, "%s$%d", p ? "||" : "", eq->parts[p].param);
			else
				used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", p ? "||" : "", eq->parts[p].text);
		}
	}
	if (st->key_target)
		used += (size_t)snprintf(buf + used, sizeof buf - used, " target %s rows %d", st->key_target->name,
					 st->key_rows);
	sqlclass_release(a);
	return buf;
}

#define CHECK_FACTS(sql, expected) CHECK_STR(facts(sql), expected)

TEST(reads)
{
	CHECK_FACTS("SELECT * FROM products WHERE id = 5", "products.id=5");
	CHECK_FACTS("SELECT * FROM s.products p WHERE p.id = $1 AND status = 'x'", "s.products.id=$1; s.products.status=x");
	CHECK_FACTS("SELECT * FROM products WHERE 'abc' = sku", "products.sku=abc");
	CHECK_FACTS("SELECT * FROM products WHERE id = '05'::int4 AND a = 100000000017",
		    "products.id=05; products.a=100000000017");
	CHECK_FACTS("SELECT * FROM t WHERE id = ('00000000-0000-4000-8000-' || $1)::uuid",
		    "t.id=00000000-0000-4000-8000-||$1");
	CHECK_FACTS("SELECT * FROM s.t WHERE s.t.id = 7", "s.t.id=7");
	/* joins: closed under equality */
	CHECK_FACTS("SELECT u.id, p.x FROM users.users u JOIN users.user_profiles p ON p.user_id = u.id WHERE u.id = $1",
		    "users.users.id=$1; users.user_profiles.user_id=$1");
	CHECK_FACTS("SELECT * FROM a, b WHERE a.id = b.a_id AND b.a_id = 3", "b.a_id=3; a.id=3");
	CHECK_FACTS("SELECT * FROM a JOIN b USING (id) WHERE a.id = 4", "b.id=4; a.id=4");
	/* unqualified columns with two tables: cannot tell whose */
	CHECK_FACTS("SELECT * FROM a JOIN b ON a.x = b.x WHERE id = 4", "");
	/* no facts */
	CHECK_FACTS("SELECT * FROM a LEFT JOIN b ON b.id = a.id WHERE a.id = 4", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 4 OR id = 5", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = -4", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 0", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 4.0", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 'abcdef'::varchar(3)", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = '4'::numeric", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = NULL", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 4 AND EXISTS (SELECT 1 FROM t x WHERE x.id = 5)", "");
	CHECK_FACTS("SELECT * FROM t a JOIN t b ON a.id = b.id WHERE a.id = 5", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = 4 UNION SELECT * FROM t WHERE id = 5", "");
	CHECK_FACTS("SELECT * FROM (SELECT * FROM t) s WHERE s.id = 5", "");
	CHECK_FACTS("WITH t AS (SELECT 1 AS id) SELECT * FROM t WHERE id = 5", "");
	CHECK_FACTS("SELECT * FROM t WHERE id = lower('A')", "");
	CHECK_FACTS("SELECT * FROM t WHERE id IN (4)", "");
	/* a value of too many parts, and a deep chain of them: no fact, no crash */
	CHECK_FACTS("SELECT * FROM t WHERE id = 'a'||'b'||'c'||'d'||'e'||'f'||'g'||'h'||'i'", "");
	static char deep[40000];
	size_t used = (size_t)snprintf(deep, sizeof deep, "SELECT * FROM t WHERE id = 'x'");
	while (used + 8 < sizeof deep)
		used += (size_t)snprintf(deep + used, sizeof deep - used, " || 'x'");
	const char *f = facts(deep);
	CHECK(strcmp(f, "") == 0 || strcmp(f, "parse error") == 0);
}

TEST(writes)
{
	CHECK_FACTS("UPDATE products SET name = 'x' WHERE id = 5", "products.id=5 target products rows 1");
	CHECK_FACTS("UPDATE products p SET name = $2 WHERE p.id = $1 AND sku = 'a'",
		    "products.id=$1; products.sku=a target products rows 1");
	CHECK_FACTS("UPDATE products SET id = 6 WHERE id = 5", " target products rows 1");
	CHECK_FACTS("UPDATE products SET (id, x) = (6, 1) WHERE id = 5", " target products rows 1");
	CHECK_FACTS("UPDATE products SET x = 1 FROM other WHERE products.id = 5", " target products rows 1");
	CHECK_FACTS("DELETE FROM s.products WHERE id = 5", "s.products.id=5 target products rows 1");
	CHECK_FACTS("DELETE FROM products USING o WHERE products.id = 5", " target products rows 1");
	CHECK_FACTS("INSERT INTO products (id, name) VALUES (1, 'a'), ($1, $2)",
		    "products.id=1; products.name=a; products.id[1]=$1; products.name[1]=$2 target products rows 2");
	CHECK_FACTS("INSERT INTO products (id, name) VALUES (DEFAULT, 'a')", "products.name=a target products rows 1");
	CHECK_FACTS("INSERT INTO products VALUES (1, 'a')", " target products rows 1");
	CHECK_FACTS("INSERT INTO products (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1", " target products rows 1");
	CHECK_FACTS("INSERT INTO products (id) VALUES (1) ON CONFLICT DO NOTHING", "products.id=1 target products rows 1");
	CHECK_FACTS("INSERT INTO products (id) SELECT 1", " target products rows 1");
	CHECK_FACTS("WITH d AS (DELETE FROM products WHERE id = 3 RETURNING id) UPDATE products SET x = 1 WHERE id = 5",
		    " target products rows 1");
	CHECK_FACTS("UPDATE products SET x = (SELECT max(x) FROM products) WHERE id = 5", " target products rows 1");
}

int main(void)
{
	sqlclass_cache_init(&cache, 100);
	RUN(reads);
	RUN(writes);
	sqlclass_cache_free(&cache);
	return unit_summary();
}
