/*
 * Unit tests for sqlclass: session-needing statements, prepared-statement names, and the facts
 * per statement (ranges, kinds, relations, functions, schemas, locking, transaction and SET
 * detail), the cache.
 */
#include "sqlclass.h"
#include "unit.h"

#include <stdlib.h>

static SqlCache cache;

static SqlAnalysis *an(const char *sql) { return sqlclass_analyze(&cache, sql, strlen(sql)); }

/* "a, s.b" for a statement's relations, in order. */
static const char *rels(const SqlStatement *st)
{
	static char buf[1024];
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < st->n_relations; i++)
		used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s%s%s", i ? ", " : "",
					 st->relations[i].schema ? st->relations[i].schema : "",
					 st->relations[i].schema ? "." : "", st->relations[i].name);
	return buf;
}

static const char *joined(const char *const *items, size_t n)
{
	static char buf[1024];
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s", i ? ", " : "", items[i]);
	return buf;
}

#define FUNCS(st) joined((st)->functions, (st)->n_functions)
#define SCHEMAS(st) joined((st)->schemas, (st)->n_schemas)

/* The text of a statement's range. */
static const char *range_text(const char *sql, const SqlStatement *st)
{
	static char buf[1024];
	snprintf(buf, sizeof buf, "%.*s", st->end - st->start, sql + st->start);
	return buf;
}

/* Relations of a one-statement text must be exactly `expected`. */
#define CHECK_RELS(sql, expected)                                                              \
	do {                                                                                   \
		SqlAnalysis *a_ = an(sql);                                                     \
		if (a_->parse_error || a_->n_statements != 1)                                  \
			UNIT_FAIL("%s: parse_error %d, %zu statements", sql, a_->parse_error,     \
				  a_->n_statements);                                           \
		else if (strcmp(rels(&a_->statements[0]), expected) != 0)                      \
			UNIT_FAIL("%s: relations \"%s\", expected \"%s\"", sql,                  \
				  rels(&a_->statements[0]), expected);                         \
		sqlclass_release(a_);                                                          \
	} while (0)

TEST(names_and_ranges)
{
	const char *sql = "PREPARE Foo(int) AS SELECT $1; EXECUTE foo(1); explain execute \"Bar\"(2); "
			  "DEALLOCATE PREPARE foo; deallocate all";
	SqlAnalysis *a = an(sql);
	REQUIRE(!a->parse_error);
	REQUIRE(a->n_refs == 4);
	CHECK_INT(a->refs[0].kind, SQL_REF_PREPARE);
	CHECK_STR(a->refs[0].name, "foo");
	CHECK_INT(a->refs[0].start, 8);
	CHECK_INT(a->refs[0].end, 11);
	CHECK_INT(a->refs[0].stmt_start, 0);
	CHECK_INT(a->refs[0].stmt_end, 29);
	CHECK_INT(a->refs[1].kind, SQL_REF_EXECUTE);
	CHECK_STR(a->refs[1].name, "foo");
	CHECK(strncmp(sql + a->refs[1].start, "foo", 3) == 0);
	CHECK_STR(a->refs[2].name, "Bar");
	CHECK(strncmp(sql + a->refs[2].start, "\"Bar\"", 5) == 0);
	CHECK_INT(a->refs[3].kind, SQL_REF_DEALLOCATE);
	CHECK(a->needs_session == NULL);
	sqlclass_release(a);
}

TEST(not_names)
{
	SqlAnalysis *a = an("GRANT EXECUTE ON FUNCTION f() TO app; PREPARE TRANSACTION 'x'; "
			    "SELECT 'EXECUTE foo' AS s; DO $$BEGIN EXECUTE 'select 1'; END$$");
	REQUIRE(!a->parse_error);
	CHECK_INT(a->n_refs, 0);
	sqlclass_release(a);
}

TEST(needs_session)
{
	const char *yes[] = {"LISTEN chan", "SELECT pg_advisory_lock(1)", "select pg_try_advisory_lock_shared(1, 2)",
			     "CREATE TEMP TABLE t(a int)", "create temporary table t as select 1",
			     "SELECT 1 INTO TEMP t2", "DECLARE c CURSOR WITH HOLD FOR SELECT 1"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		SqlAnalysis *a = an(yes[i]);
		if (!a->needs_session)
			UNIT_FAIL("%s should need a session", yes[i]);
		sqlclass_release(a);
	}
	const char *no[] = {"SELECT pg_advisory_xact_lock(1)", "CREATE TABLE t(a int)", "SELECT * FROM temp",
			    "DECLARE c CURSOR FOR SELECT 1", "SELECT 'listen'"};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		SqlAnalysis *a = an(no[i]);
		if (a->needs_session)
			UNIT_FAIL("%s should not need a session (%s)", no[i], a->needs_session);
		sqlclass_release(a);
	}
}

TEST(cache_and_errors)
{
	uint64_t misses = cache.misses;
	SqlAnalysis *a = an("EXECUTE cached(1)");
	SqlAnalysis *b = an("EXECUTE cached(1)");
	CHECK(a == b);
	CHECK_INT(cache.misses, misses + 1);
	sqlclass_release(a);
	sqlclass_release(b);
	SqlAnalysis *e = an("SELEC 1");
	CHECK(e->parse_error);
	sqlclass_release(e);
}

TEST(prefilter)
{
	CHECK(!sqlclass_might_matter("SELECT abalance FROM pgbench_accounts WHERE aid = $1", 52));
	CHECK(sqlclass_might_matter("execute x", 9));
	CHECK(sqlclass_might_matter("CREATE TEMP TABLE", 17));
	CHECK(sqlclass_might_matter("LiStEn x", 8));
	CHECK(sqlclass_might_matter("DECLARE c CURSOR WITH HOLD", 26)); /* the word ends the text */
	CHECK(sqlclass_might_matter("Deallocate all", 14));
	CHECK(sqlclass_might_matter("SELECT pg_advisory_lock(1)", 26));
	CHECK(!sqlclass_might_matter("deallocat", 9));
	CHECK(!sqlclass_might_matter("SELECT 1 -- hol", 15));
	CHECK(!sqlclass_might_matter("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", 66));
}

TEST(relations_through_queries)
{
	CHECK_RELS("SELECT * FROM a JOIN s.b ON true LEFT JOIN c USING (id), d", "a, s.b, c, d");
	CHECK_RELS("SELECT * FROM a WHERE x IN (SELECT y FROM b WHERE EXISTS (SELECT 1 FROM c.d))", "a, b, c.d");
	CHECK_RELS("SELECT (SELECT max(x) FROM b) FROM a, LATERAL (SELECT * FROM c WHERE c.id = a.id) z", "b, a, c");
	CHECK_RELS("SELECT * FROM a JOIN a ON true, public.a, A", "a, public.a");
	CHECK_RELS("SELECT * FROM db.s.t", "s.t");
	CHECK_RELS("SELECT * FROM \"Mixed\".\"Case\", Upper", "Mixed.Case, upper");
	CHECK_RELS("SELECT 1 UNION SELECT 2 FROM u1 INTERSECT SELECT 3 FROM u2", "u1, u2");
	CHECK_RELS("INSERT INTO a.x (id) SELECT id FROM y JOIN z ON true", "a.x, y, z");
	CHECK_RELS("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = (SELECT v FROM src)", "t, src");
	CHECK_RELS("UPDATE t SET a = u.a FROM u JOIN w ON true WHERE t.id = u.id", "t, u, w");
	CHECK_RELS("DELETE FROM t USING u WHERE t.id = u.id AND t.x IN (SELECT x FROM v)", "t, u, v");
	CHECK_RELS("MERGE INTO t USING s.src ON t.id = src.id WHEN MATCHED THEN UPDATE SET x = 1", "t, s.src");
	CHECK_RELS("COPY s.t (a, b) TO STDOUT", "s.t");
	CHECK_RELS("COPY (SELECT * FROM v JOIN w ON true) TO STDOUT", "v, w");
	CHECK_RELS("TABLE tt", "tt");
	CHECK_RELS("SELECT * FROM generate_series(1, 3) g, ROWS FROM (f1(), f2()) r", "");
	CHECK_RELS("EXPLAIN ANALYZE SELECT * FROM e JOIN f ON true", "e, f");
	CHECK_RELS("PREPARE p AS SELECT * FROM prepared_t", "prepared_t");
	CHECK_RELS("DECLARE c CURSOR FOR SELECT * FROM cursor_t", "cursor_t");
	CHECK_RELS("LOCK TABLE l1, s.l2 IN SHARE MODE", "l1, s.l2");
	CHECK_RELS("VACUUM ANALYZE vac", "vac");
}

/* "t:IU, u:-" for a statement's relations with what it writes (I, U, D, T; - for nothing). */
static const char *writes_of(const char *sql)
{
	static char buf[1024];
	SqlAnalysis *a = an(sql);
	size_t used = 0;
	buf[0] = 0;
	if (a->parse_error || a->n_statements != 1) {
		snprintf(buf, sizeof buf, "(parse error or %zu statements)", a->n_statements);
	} else {
		const SqlStatement *st = &a->statements[0];
		for (size_t i = 0; i < st->n_relations; i++) {
			unsigned w = st->relations[i].writes;
			used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s:%s%s%s%s%s", i ? ", " : "",
						 st->relations[i].name, w & SQL_WRITES_INSERT ? "I" : "",
						 w & SQL_WRITES_UPDATE ? "U" : "", w & SQL_WRITES_DELETE ? "D" : "",
						 w & SQL_WRITES_TRUNCATE ? "T" : "", w ? "" : "-");
		}
	}
	sqlclass_release(a);
	return buf;
}

TEST(written_relations)
{
	CHECK_STR(writes_of("INSERT INTO a.x (id) SELECT id FROM y JOIN z ON true"), "x:I, y:-, z:-");
	CHECK_STR(writes_of("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING"), "t:I");
	CHECK_STR(writes_of("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = (SELECT v FROM src)"),
		  "t:IU, src:-");
	CHECK_STR(writes_of("UPDATE t SET a = u.a FROM u WHERE t.id = u.id"), "t:U, u:-");
	CHECK_STR(writes_of("DELETE FROM t USING u WHERE t.id = u.id"), "t:D, u:-");
	CHECK_STR(writes_of("MERGE INTO t USING src ON t.id = src.id WHEN MATCHED THEN UPDATE SET x = 1 "
			    "WHEN NOT MATCHED THEN INSERT VALUES (1)"), "t:IU, src:-");
	CHECK_STR(writes_of("MERGE INTO t USING src ON t.id = src.id WHEN MATCHED AND x > 1 THEN DELETE "
			    "WHEN MATCHED THEN DO NOTHING"), "t:D, src:-");
	/* a relation read and written: one entry with the writes */
	CHECK_STR(writes_of("INSERT INTO t SELECT * FROM t"), "t:I");
	CHECK_STR(writes_of("UPDATE t SET x = (SELECT max(x) FROM public.t)"), "t:U, t:-");
	/* writable CTEs, at any depth; a CTE's name is not a relation */
	CHECK_STR(writes_of("WITH d AS (DELETE FROM a RETURNING *), i AS (INSERT INTO b SELECT * FROM d RETURNING *) "
			    "UPDATE c SET n = 1 FROM i"), "a:D, b:I, c:U");
	CHECK_STR(writes_of("EXPLAIN ANALYZE UPDATE t SET x = 1"), "t:U");
	CHECK_STR(writes_of("EXPLAIN UPDATE t SET x = 1"), "t:-"); /* nothing runs */
	CHECK_STR(writes_of("COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT"), "t:I");
	/* statements that write every relation they name */
	CHECK_STR(writes_of("TRUNCATE a, s.b CASCADE"), "a:T, b:T");
	CHECK_STR(writes_of("COPY t FROM STDIN"), "t:I");
	CHECK_STR(writes_of("COPY t TO STDOUT"), "t:-");
	CHECK_STR(writes_of("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"), "mv:U");
	/* named without writing */
	CHECK_STR(writes_of("LOCK TABLE l1 IN SHARE MODE"), "l1:-");
	CHECK_STR(writes_of("SELECT * INTO newt FROM src"), "newt:-, src:-");
	CHECK_STR(writes_of("CREATE TABLE c AS SELECT * FROM src"), "src:-, c:-");
	CHECK_STR(writes_of("SELECT * FROM t FOR UPDATE"), "t:-");
	SqlAnalysis *a = an("SELECT * INTO newt FROM src");
	CHECK(a->statements[0].select_into && a->statements[0].kind == SQL_KIND_WRITE);
	sqlclass_release(a);
	a = an("SELECT * FROM src");
	CHECK(!a->statements[0].select_into);
	sqlclass_release(a);
}

TEST(cte_names_are_not_relations)
{
	/* t in its own non-recursive body is the table; u sees the CTE t; main sees both */
	CHECK_RELS("WITH t AS (SELECT * FROM t), u AS (SELECT * FROM t) SELECT * FROM u JOIN t ON true", "t");
	CHECK_RELS("WITH c AS (SELECT * FROM base) SELECT * FROM c, other", "base, other");
	/* a qualified name is never a CTE */
	CHECK_RELS("WITH c AS (SELECT 1) SELECT * FROM c, public.c", "public.c");
	/* recursive: visible in its own body */
	CHECK_RELS("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, step) SELECT * FROM r",
		   "step");
	/* a WITH inside a subquery scopes to that subquery: the outer v is a table */
	CHECK_RELS("SELECT * FROM (WITH v AS (SELECT 1) SELECT * FROM v) x, v", "v");
	/* a CTE of the outer query is visible inside subqueries */
	CHECK_RELS("WITH v AS (SELECT 1) SELECT * FROM x WHERE EXISTS (SELECT 1 FROM v)", "x");
	/* DML targets are tables even when a CTE has the name */
	CHECK_RELS("WITH t AS (SELECT 1 AS id) DELETE FROM t USING t AS t2", "t");
	CHECK_RELS("WITH src AS (SELECT * FROM staging) INSERT INTO dst SELECT * FROM src", "staging, dst");
	CHECK_RELS("WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved", "a, b");
}

TEST(ddl_targets)
{
	CHECK_RELS("CREATE TABLE s.x (id int REFERENCES y (id), LIKE tmpl)", "s.x, y, tmpl");
	CHECK_RELS("CREATE TABLE child () INHERITS (parent)", "child, parent");
	CHECK_RELS("ALTER TABLE x ADD COLUMN c int", "x");
	CHECK_RELS("ALTER TABLE p ATTACH PARTITION p1 FOR VALUES FROM (1) TO (2)", "p, p1");
	CHECK_RELS("DROP TABLE a, s.b", "a, s.b");
	CHECK_RELS("DROP VIEW IF EXISTS v1, v2 CASCADE", "v1, v2");
	CHECK_RELS("CREATE INDEX ON x (c)", "x");
	CHECK_RELS("CREATE UNIQUE INDEX idx ON s.x (c) INCLUDE (d)", "s.x");
	CHECK_RELS("TRUNCATE a, b RESTART IDENTITY", "a, b");
	CHECK_RELS("CREATE VIEW v AS SELECT * FROM base", "v, base");
	CHECK_RELS("CREATE MATERIALIZED VIEW mv AS SELECT * FROM base2", "base2, mv");
	CHECK_RELS("REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv", "s.mv");
	CHECK_RELS("COMMENT ON COLUMN s.t.c IS 'x'", "s.t");
	CHECK_RELS("COMMENT ON TABLE t IS 'x'", "t");
	CHECK_RELS("GRANT SELECT ON g1, s.g2 TO someone", "g1, s.g2");
	CHECK_RELS("CREATE SEQUENCE s.seq", "s.seq");
	CHECK_RELS("CREATE SCHEMA sch CREATE TABLE inner_t (a int)", "sch.inner_t");
	CHECK_RELS("ALTER TABLE x RENAME TO y", "x");
	CHECK_RELS("CREATE TABLE t2 AS SELECT * FROM t1", "t1, t2");
	CHECK_RELS("SELECT * INTO newt FROM src", "newt, src");
	CHECK_RELS("DROP FUNCTION f(int)", "");
}

TEST(schemas_named)
{
	const char *sql = "DROP SCHEMA billing, other CASCADE; CREATE SCHEMA s1; "
			  "GRANT SELECT ON ALL TABLES IN SCHEMA s2 TO x; SELECT util.f(1), pg_catalog.lower('A'), g(); "
			  "CREATE FUNCTION s3.f() RETURNS int LANGUAGE sql AS 'select 1'; ALTER TABLE t SET SCHEMA s4; "
			  "ALTER DEFAULT PRIVILEGES IN SCHEMA s5 GRANT SELECT ON TABLES TO x; DROP FUNCTION s6.f(int); "
			  "SELECT information_schema.f()";
	SqlAnalysis *a = an(sql);
	REQUIRE(!a->parse_error);
	REQUIRE(a->n_statements == 9);
	CHECK_STR(SCHEMAS(&a->statements[0]), "billing, other");
	CHECK_STR(SCHEMAS(&a->statements[1]), "s1");
	CHECK_STR(SCHEMAS(&a->statements[2]), "s2");
	CHECK_STR(SCHEMAS(&a->statements[3]), "util");
	CHECK_STR(SCHEMAS(&a->statements[4]), "s3");
	CHECK_STR(SCHEMAS(&a->statements[5]), "s4");
	CHECK_STR(rels(&a->statements[5]), "t");
	CHECK_STR(SCHEMAS(&a->statements[6]), "s5");
	CHECK_STR(SCHEMAS(&a->statements[7]), "s6");
	CHECK_INT(a->statements[8].n_schemas, 0);
	CHECK_INT(a->statements[0].n_relations, 0);
	sqlclass_release(a);
}

TEST(locking_clauses)
{
	const char *yes[] = {"SELECT * FROM t FOR UPDATE", "SELECT * FROM t FOR NO KEY UPDATE NOWAIT",
			     "SELECT * FROM t FOR SHARE SKIP LOCKED", "SELECT * FROM t FOR KEY SHARE",
			     "SELECT * FROM a WHERE id IN (SELECT id FROM b FOR UPDATE)",
			     "WITH l AS (SELECT * FROM q FOR UPDATE) SELECT * FROM l"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		SqlAnalysis *a = an(yes[i]);
		if (a->n_statements != 1 || !a->statements[0].locking || a->statements[0].kind != SQL_KIND_READ)
			UNIT_FAIL("%s: should be a read with a locking clause", yes[i]);
		sqlclass_release(a);
	}
	const char *no[] = {"SELECT * FROM t", "SELECT 'for update'", "UPDATE t SET x = 1"};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		SqlAnalysis *a = an(no[i]);
		if (a->n_statements != 1 || a->statements[0].locking)
			UNIT_FAIL("%s: no locking clause", no[i]);
		sqlclass_release(a);
	}
	/* FOR UPDATE OF names a FROM item, not another relation */
	CHECK_RELS("SELECT * FROM orders o JOIN items i ON true FOR UPDATE OF o", "orders, items");
}

TEST(clock_values)
{
	const char *yes[] = {"SELECT current_date", "SELECT * FROM t WHERE d < CURRENT_TIMESTAMP",
			     "SELECT localtime(2)", "SELECT * FROM t WHERE x IN (SELECT localtimestamp)",
			     "SELECT current_time"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		SqlAnalysis *a = an(yes[i]);
		if (a->n_statements != 1 || !a->statements[0].time_dependent)
			UNIT_FAIL("%s: reads the clock", yes[i]);
		sqlclass_release(a);
	}
	const char *no[] = {"SELECT current_user, session_user, current_schema", "SELECT 'current_date'",
			    "SELECT * FROM t"};
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
		SqlAnalysis *a = an(no[i]);
		if (a->n_statements != 1 || a->statements[0].time_dependent)
			UNIT_FAIL("%s: does not read the clock", no[i]);
		sqlclass_release(a);
	}
}

TEST(functions_called)
{
	SqlAnalysis *a = an("SELECT count(*), COUNT(x), pg_catalog.lower(x), \"MyF\"(1), Util.F(2), now(), "
			    "extract(year FROM now()), x AT TIME ZONE 'utc', coalesce(a, b), greatest(1, 2), "
			    "current_timestamp FROM generate_series(1, 3) x WHERE nextval('s') > 0");
	REQUIRE(a->n_statements == 1);
	CHECK_STR(FUNCS(&a->statements[0]),
		  "count, pg_catalog.lower, MyF, util.f, now, pg_catalog.extract, pg_catalog.timezone, generate_series, "
		  "nextval");
	sqlclass_release(a);
	a = an("CALL s.proc(now()); INSERT INTO t VALUES (gen_random_uuid()) RETURNING upper(v); "
	       "CREATE TABLE d (id bigint DEFAULT nextval('d_seq'))");
	REQUIRE(a->n_statements == 3);
	CHECK_STR(FUNCS(&a->statements[0]), "s.proc, now");
	CHECK_STR(FUNCS(&a->statements[1]), "gen_random_uuid, upper");
	CHECK_STR(FUNCS(&a->statements[2]), "nextval");
	sqlclass_release(a);
}

TEST(kinds_table)
{
	static const struct {
		const char *sql;
		SqlKind kind;
		const char *tag;
	} cases[] = {
		{"SELECT 1", SQL_KIND_READ, "SELECT"},
		{"VALUES (1), (2)", SQL_KIND_READ, "SELECT"},
		{"TABLE t", SQL_KIND_READ, "SELECT"},
		{"COPY t TO STDOUT", SQL_KIND_READ, "COPY"},
		{"COPY (SELECT 1) TO STDOUT", SQL_KIND_READ, "COPY"},
		{"COPY t FROM STDIN", SQL_KIND_WRITE, "COPY"},
		{"COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", SQL_KIND_WRITE, "COPY"},
		{"EXPLAIN SELECT * FROM t", SQL_KIND_READ, "EXPLAIN"},
		{"EXPLAIN DELETE FROM t", SQL_KIND_READ, "EXPLAIN"},
		{"EXPLAIN (ANALYZE off) INSERT INTO t VALUES (1)", SQL_KIND_READ, "EXPLAIN"},
		{"EXPLAIN ANALYZE SELECT 1", SQL_KIND_READ, "EXPLAIN"},
		{"EXPLAIN ANALYZE DELETE FROM t", SQL_KIND_WRITE, "EXPLAIN"},
		{"EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1", SQL_KIND_WRITE, "EXPLAIN"},
		{"EXPLAIN (ANALYZE true) WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", SQL_KIND_WRITE, "EXPLAIN"},
		{"INSERT INTO t VALUES (1)", SQL_KIND_WRITE, "INSERT"},
		{"UPDATE t SET x = 1", SQL_KIND_WRITE, "UPDATE"},
		{"DELETE FROM t", SQL_KIND_WRITE, "DELETE"},
		{"MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)", SQL_KIND_WRITE, "MERGE"},
		{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", SQL_KIND_WRITE, "SELECT"},
		{"SELECT * INTO t2 FROM t", SQL_KIND_WRITE, "SELECT"},
		{"CALL p()", SQL_KIND_WRITE, "CALL"},
		{"DO $$BEGIN END$$", SQL_KIND_WRITE, "DO"},
		{"LOCK TABLE t", SQL_KIND_WRITE, "LOCK"},
		{"TRUNCATE t", SQL_KIND_WRITE, "TRUNCATE"},
		{"REFRESH MATERIALIZED VIEW mv", SQL_KIND_WRITE, "REFRESH MATERIALIZED VIEW"},
		{"NOTIFY chan, 'x'", SQL_KIND_WRITE, "NOTIFY"},
		{"EXECUTE p(1)", SQL_KIND_WRITE, "EXECUTE"},
		{"CREATE TABLE t (a int)", SQL_KIND_DDL, "CREATE TABLE"},
		{"CREATE TABLE t AS SELECT 1", SQL_KIND_DDL, "CREATE TABLE AS"},
		{"CREATE MATERIALIZED VIEW mv AS SELECT 1", SQL_KIND_DDL, "CREATE MATERIALIZED VIEW"},
		{"ALTER TABLE t ADD COLUMN b int", SQL_KIND_DDL, "ALTER TABLE"},
		{"DROP TABLE t", SQL_KIND_DDL, "DROP"},
		{"COMMENT ON TABLE t IS 'x'", SQL_KIND_DDL, "COMMENT"},
		{"GRANT SELECT ON t TO u", SQL_KIND_DDL, "GRANT"},
		{"REVOKE SELECT ON t FROM u", SQL_KIND_DDL, "REVOKE"},
		{"CREATE INDEX ON t (a)", SQL_KIND_DDL, "CREATE INDEX"},
		{"CREATE VIEW v AS SELECT 1", SQL_KIND_DDL, "CREATE VIEW"},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", SQL_KIND_DDL, "CREATE FUNCTION"},
		{"CREATE PROCEDURE p() LANGUAGE sql AS 'select 1'", SQL_KIND_DDL, "CREATE PROCEDURE"},
		{"CREATE EXTENSION pgcrypto", SQL_KIND_DDL, "CREATE EXTENSION"},
		{"CREATE ROLE r", SQL_KIND_DDL, "CREATE ROLE"},
		{"ALTER ROLE r SET work_mem = '1MB'", SQL_KIND_DDL, "ALTER ROLE SET"},
		{"CREATE POLICY p ON t USING (true)", SQL_KIND_DDL, "CREATE POLICY"},
		{"BEGIN", SQL_KIND_TX, "BEGIN"},
		{"START TRANSACTION", SQL_KIND_TX, "START TRANSACTION"},
		{"COMMIT", SQL_KIND_TX, "COMMIT"},
		{"END", SQL_KIND_TX, "COMMIT"},
		{"ROLLBACK", SQL_KIND_TX, "ROLLBACK"},
		{"ABORT", SQL_KIND_TX, "ROLLBACK"},
		{"SAVEPOINT s", SQL_KIND_TX, "SAVEPOINT"},
		{"SET x = 1", SQL_KIND_SESSION, "SET"},
		{"RESET x", SQL_KIND_SESSION, "RESET"},
		{"SHOW x", SQL_KIND_SESSION, "SHOW"},
		{"DISCARD ALL", SQL_KIND_SESSION, "DISCARD"},
		{"LISTEN c", SQL_KIND_SESSION, "LISTEN"},
		{"UNLISTEN *", SQL_KIND_SESSION, "UNLISTEN"},
		{"DEALLOCATE ALL", SQL_KIND_SESSION, "DEALLOCATE"},
		{"PREPARE p AS SELECT 1", SQL_KIND_SESSION, "PREPARE"},
		{"FETCH 10 FROM c", SQL_KIND_SESSION, "FETCH"},
		{"MOVE c", SQL_KIND_SESSION, "MOVE"},
		{"CLOSE c", SQL_KIND_SESSION, "CLOSE"},
		{"SET CONSTRAINTS ALL DEFERRED", SQL_KIND_SESSION, "SET CONSTRAINTS"},
		{"LOAD 'auto_explain'", SQL_KIND_SESSION, "LOAD"},
		{"DECLARE c CURSOR FOR SELECT 1", SQL_KIND_READ, "DECLARE CURSOR"},
		{"VACUUM t", SQL_KIND_OTHER, "VACUUM"},
		{"ANALYZE t", SQL_KIND_OTHER, "ANALYZE"},
		{"CLUSTER t", SQL_KIND_OTHER, "CLUSTER"},
		{"REINDEX TABLE t", SQL_KIND_OTHER, "REINDEX"},
		{"CHECKPOINT", SQL_KIND_OTHER, "CHECKPOINT"},
		{"ALTER SYSTEM SET work_mem = '1MB'", SQL_KIND_OTHER, "ALTER SYSTEM"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		SqlAnalysis *a = an(cases[i].sql);
		if (a->parse_error || a->n_statements != 1) {
			UNIT_FAIL("%s: parse_error %d, %zu statements", cases[i].sql, a->parse_error, a->n_statements);
		} else {
			const SqlStatement *st = &a->statements[0];
			if (st->kind != cases[i].kind)
				UNIT_FAIL("%s: kind %s, expected %s", cases[i].sql, sqlclass_kind_name(st->kind),
					  sqlclass_kind_name(cases[i].kind));
			if (strcmp(st->tag, cases[i].tag) != 0)
				UNIT_FAIL("%s: tag \"%s\", expected \"%s\"", cases[i].sql, st->tag, cases[i].tag);
			bool harmless = st->kind == SQL_KIND_SESSION && strcmp(st->tag, "LISTEN") != 0 &&
					strcmp(st->tag, "UNLISTEN") != 0;
			if (st->harmless != harmless)
				UNIT_FAIL("%s: harmless %d", cases[i].sql, st->harmless);
		}
		sqlclass_release(a);
	}
}

TEST(prepare_execute_detail)
{
	SqlAnalysis *a = an("PREPARE w(int) AS INSERT INTO t VALUES ($1); PREPARE r AS SELECT * FROM s FOR SHARE; "
			    "PREPARE c AS WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d; EXECUTE W(1); "
			    "DEALLOCATE r; DEALLOCATE ALL");
	REQUIRE(a->n_statements == 6);
	CHECK_INT(a->statements[0].kind, SQL_KIND_SESSION);
	CHECK_INT(a->statements[0].inner_kind, SQL_KIND_WRITE);
	CHECK_STR(a->statements[0].prepared_name, "w");
	CHECK_STR(rels(&a->statements[0]), "t");
	CHECK_INT(a->statements[1].inner_kind, SQL_KIND_READ);
	CHECK(a->statements[1].locking);
	CHECK_INT(a->statements[2].inner_kind, SQL_KIND_WRITE);
	CHECK_INT(a->statements[3].kind, SQL_KIND_WRITE);
	CHECK_STR(a->statements[3].prepared_name, "w");
	CHECK_STR(a->statements[4].prepared_name, "r");
	CHECK(a->statements[5].prepared_name == NULL);
	CHECK_INT(a->statements[5].inner_kind, SQL_KIND_OTHER);
	sqlclass_release(a);
}

TEST(transaction_detail)
{
	const char *sql = "BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE, DEFERRABLE; START TRANSACTION READ WRITE; "
			  "begin isolation level repeatable read; COMMIT AND CHAIN; END; ROLLBACK; ABORT AND NO CHAIN; "
			  "SAVEPOINT \"Sp\"; RELEASE SAVEPOINT sp; ROLLBACK TO sp; PREPARE TRANSACTION 'g1'; "
			  "COMMIT PREPARED 'g1'; ROLLBACK PREPARED 'g2'; START TRANSACTION ISOLATION LEVEL READ "
			  "COMMITTED READ ONLY; BEGIN TRANSACTION ISOLATION LEVEL READ UNCOMMITTED";
	static const struct {
		SqlTxKind tx;
		bool read_only, deferrable, chain;
		SqlIsolation iso;
		const char *name;
	} expect[] = {
		{SQL_TX_BEGIN, true, true, false, SQL_ISOLATION_SERIALIZABLE, NULL},
		{SQL_TX_BEGIN, false, false, false, SQL_ISOLATION_DEFAULT, NULL},
		{SQL_TX_BEGIN, false, false, false, SQL_ISOLATION_REPEATABLE_READ, NULL},
		{SQL_TX_COMMIT, false, false, true, SQL_ISOLATION_DEFAULT, NULL},
		{SQL_TX_COMMIT, false, false, false, SQL_ISOLATION_DEFAULT, NULL},
		{SQL_TX_ROLLBACK, false, false, false, SQL_ISOLATION_DEFAULT, NULL},
		{SQL_TX_ROLLBACK, false, false, false, SQL_ISOLATION_DEFAULT, NULL},
		{SQL_TX_SAVEPOINT, false, false, false, SQL_ISOLATION_DEFAULT, "Sp"},
		{SQL_TX_RELEASE, false, false, false, SQL_ISOLATION_DEFAULT, "sp"},
		{SQL_TX_ROLLBACK_TO, false, false, false, SQL_ISOLATION_DEFAULT, "sp"},
		{SQL_TX_PREPARE, false, false, false, SQL_ISOLATION_DEFAULT, "g1"},
		{SQL_TX_COMMIT_PREPARED, false, false, false, SQL_ISOLATION_DEFAULT, "g1"},
		{SQL_TX_ROLLBACK_PREPARED, false, false, false, SQL_ISOLATION_DEFAULT, "g2"},
		{SQL_TX_BEGIN, true, false, false, SQL_ISOLATION_READ_COMMITTED, NULL},
		{SQL_TX_BEGIN, false, false, false, SQL_ISOLATION_READ_UNCOMMITTED, NULL},
	};
	SqlAnalysis *a = an(sql);
	REQUIRE(!a->parse_error);
	REQUIRE(a->n_statements == sizeof expect / sizeof expect[0]);
	for (size_t i = 0; i < a->n_statements; i++) {
		const SqlStatement *st = &a->statements[i];
		if (st->kind != SQL_KIND_TX || st->tx != expect[i].tx || st->tx_read_only != expect[i].read_only ||
		    st->tx_deferrable != expect[i].deferrable || st->tx_chain != expect[i].chain ||
		    st->tx_isolation != expect[i].iso || (st->tx_name == NULL) != (expect[i].name == NULL) ||
		    (st->tx_name && strcmp(st->tx_name, expect[i].name) != 0))
			UNIT_FAIL("statement %zu (%s): tx %s ro %d def %d chain %d iso %s name %s", i,
				  range_text(sql, st), sqlclass_tx_name(st->tx), st->tx_read_only, st->tx_deferrable,
				  st->tx_chain, sqlclass_isolation_name(st->tx_isolation),
				  st->tx_name ? st->tx_name : "(null)");
	}
	CHECK_INT(a->statements[0].set, SQL_SET_NONE);
	sqlclass_release(a);
}

TEST(set_reset_detail_and_ranges)
{
	const char *sql = "SET search_path TO app, public;SET LOCAL statement_timeout = '5s' ;  SET TIME ZONE 'UTC';\n"
			  "SET NAMES 'UTF8'; RESET ALL; reset Work_Mem; SET ROLE bob; SET SESSION AUTHORIZATION bob; "
			  "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET TRANSACTION ISOLATION LEVEL "
			  "SERIALIZABLE; set session \"DateStyle\" = 'ISO'; SET x.y TO DEFAULT; RESET TIME ZONE; "
			  "SHOW TimeZone; DISCARD ALL; DISCARD PLANS;SET application_name = 'a;b'";
	static const struct {
		SqlSetKind set;
		const char *name, *text;
	} expect[] = {
		{SQL_SET, "search_path", "SET search_path TO app, public"},
		{SQL_SET_LOCAL, "statement_timeout", "SET LOCAL statement_timeout = '5s'"},
		{SQL_SET, "timezone", "SET TIME ZONE 'UTC'"},
		{SQL_SET, "client_encoding", "SET NAMES 'UTF8'"},
		{SQL_RESET_ALL, NULL, "RESET ALL"},
		{SQL_RESET, "work_mem", "reset Work_Mem"},
		{SQL_SET, "role", "SET ROLE bob"},
		{SQL_SET, "session_authorization", "SET SESSION AUTHORIZATION bob"},
		{SQL_SET, "session characteristics", "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"},
		{SQL_SET_LOCAL, "transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"},
		{SQL_SET, "datestyle", "set session \"DateStyle\" = 'ISO'"},
		{SQL_RESET, "x.y", "SET x.y TO DEFAULT"}, /* the same as RESET x.y */
		{SQL_RESET, "timezone", "RESET TIME ZONE"},
		{SQL_SET_NONE, "timezone", "SHOW TimeZone"},
		{SQL_DISCARD_ALL, NULL, "DISCARD ALL"},
		{SQL_SET_NONE, NULL, "DISCARD PLANS"},
		{SQL_SET, "application_name", "SET application_name = 'a;b'"},
	};
	SqlAnalysis *a = an(sql);
	REQUIRE(!a->parse_error);
	REQUIRE(a->n_statements == sizeof expect / sizeof expect[0]);
	for (size_t i = 0; i < a->n_statements; i++) {
		const SqlStatement *st = &a->statements[i];
		if (st->set != expect[i].set)
			UNIT_FAIL("statement %zu: set %s, expected %s", i, sqlclass_set_name(st->set),
				  sqlclass_set_name(expect[i].set));
		if ((st->set_name == NULL) != (expect[i].name == NULL) ||
		    (st->set_name && strcmp(st->set_name, expect[i].name) != 0))
			UNIT_FAIL("statement %zu: name %s, expected %s", i, st->set_name ? st->set_name : "(null)",
				  expect[i].name ? expect[i].name : "(null)");
		CHECK_STR(range_text(sql, st), expect[i].text);
		CHECK_INT(st->kind, SQL_KIND_SESSION);
	}
	sqlclass_release(a);
}

TEST(set_values_and_set_config_calls)
{
	SqlAnalysis *a = an("/* app=web */ SET search_path = MySchema, 'Two', \"Th\"\"ree\"; SET x.y TO 5; "
			    "SET search_path FROM CURRENT; SET LOCAL search_path TO DEFAULT; SET datestyle = iso, mdy");
	REQUIRE(!a->parse_error && a->n_statements == 5);
	CHECK_STR(a->statements[0].set_value, "\"myschema\", \"Two\", \"Th\"\"ree\"");
	CHECK_STR(a->statements[1].set_value, "5");
	CHECK(a->statements[2].set == SQL_SET && a->statements[2].set_value == NULL);
	CHECK(a->statements[3].set == SQL_SET_LOCAL && a->statements[3].set_value == NULL);
	CHECK_STR(a->statements[4].set_value, "\"iso\", \"mdy\"");
	sqlclass_release(a);

	a = an("SELECT set_config('Search_Path', 's2', false), pg_catalog.set_config('a.b', '1', true), "
	       "set_config('a.c', (SELECT 'x'), false), set_config('a.d', 'v', $1), myschema.set_config('n', 'v', false)");
	REQUIRE(!a->parse_error && a->n_statements == 1);
	const SqlStatement *st = &a->statements[0];
	REQUIRE(st->n_set_configs == 4);
	CHECK_STR(st->set_configs[0].name, "search_path");
	CHECK_STR(st->set_configs[0].value, "s2");
	CHECK_INT(st->set_configs[0].is_local, 0);
	CHECK_STR(st->set_configs[1].name, "a.b");
	CHECK_INT(st->set_configs[1].is_local, 1);
	CHECK(st->set_configs[2].name == NULL && st->set_configs[2].value == NULL);
	CHECK_INT(st->set_configs[3].is_local, -1);
	sqlclass_release(a);
	a = an("SELECT 1");
	CHECK_INT(a->statements[0].n_set_configs, 0);
	sqlclass_release(a);
}

TEST(ranges_skip_comments)
{
	const char *sql = "  /* lead; */ SELECT 1 -- tail; \n; -- only a comment\n ; SELECT '--', 2 /* y */ ;  "
			  "\n/* a */ SET x = '/*' -- z";
	SqlAnalysis *a = an(sql);
	REQUIRE(!a->parse_error);
	REQUIRE(a->n_statements == 3);
	CHECK_STR(range_text(sql, &a->statements[0]), "SELECT 1");
	CHECK_STR(range_text(sql, &a->statements[1]), "SELECT '--', 2");
	CHECK_STR(range_text(sql, &a->statements[2]), "SET x = '/*'");
	sqlclass_release(a);
	a = an("-- nothing\n");
	CHECK(!a->parse_error);
	CHECK_INT(a->n_statements, 0);
	sqlclass_release(a);
	a = an("");
	CHECK(!a->parse_error);
	CHECK_INT(a->n_statements, 0);
	sqlclass_release(a);
}

TEST(parse_error_detail)
{
	SqlAnalysis *a = an("SELECT 1; SELEC 2 FROM t");
	CHECK(a->parse_error);
	CHECK_INT(a->n_statements, 0);
	CHECK_CONTAINS(a->parse_error_message, "syntax error");
	CHECK_INT(a->parse_error_position, 10);
	sqlclass_release(a);
}

TEST(deep_nesting)
{
	/* deeper than 32 JSON levels (a common default limit of JSON readers) */
	CHECK_RELS("SELECT * FROM a WHERE x IN (SELECT y FROM b WHERE z IN (SELECT w FROM c WHERE q IN (SELECT 1 "
		   "FROM d WHERE r = (SELECT max(s) FROM e WHERE t IN (SELECT u FROM f)))))",
		   "a, b, c, d, e, f");
	/* beyond SQL_MAX_DEPTH: never "no statements", always parse_error */
	size_t levels = 2500, len = 0;
	char *sql = malloc(levels * 5 + 64);
	len += (size_t)sprintf(sql + len, "SELECT ");
	for (size_t i = 0; i < levels; i++)
		len += (size_t)sprintf(sql + len, "1+(");
	len += (size_t)sprintf(sql + len, "1");
	for (size_t i = 0; i < levels; i++)
		sql[len++] = ')';
	len += (size_t)sprintf(sql + len, " FROM t");
	SqlAnalysis *a = sqlclass_analyze(&cache, sql, len);
	CHECK(a->parse_error);
	CHECK_INT(a->n_statements, 0);
	CHECK_CONTAINS(a->parse_error_message, "too deeply nested");
	sqlclass_release(a);
	free(sql);
}

TEST(cache_limits)
{
	SqlCache none;
	sqlclass_cache_init(&none, 0);
	SqlAnalysis *a = sqlclass_analyze(&none, "SELECT 1", 8);
	SqlAnalysis *b = sqlclass_analyze(&none, "SELECT 1", 8);
	CHECK(a != b);
	CHECK_INT(none.misses, 2);
	CHECK_INT(hashmap_count(&none.by_text), 0);
	sqlclass_release(a);
	sqlclass_release(b);
	sqlclass_cache_free(&none);

	SqlCache two;
	sqlclass_cache_init(&two, 2);
	a = sqlclass_analyze(&two, "SELECT * FROM t1", 16);
	b = sqlclass_analyze(&two, "SELECT * FROM t2", 16);
	CHECK_INT(hashmap_count(&two.by_text), 2);
	SqlAnalysis *c = sqlclass_analyze(&two, "SELECT * FROM t3", 16); /* full: starts over */
	CHECK_INT(hashmap_count(&two.by_text), 1);
	/* analyses handed out before survive the clear, unchanged */
	CHECK_STR(rels(&a->statements[0]), "t1");
	CHECK_STR(rels(&b->statements[0]), "t2");
	SqlAnalysis *c2 = sqlclass_analyze(&two, "SELECT * FROM t3", 16);
	CHECK(c == c2);
	CHECK_INT(c->refcount, 3);
	CHECK_INT(two.hits, 1);
	sqlclass_release(a);
	sqlclass_release(b);
	sqlclass_release(c);
	sqlclass_release(c2);
	sqlclass_cache_free(&two);
}

int main(void)
{
	sqlclass_cache_init(&cache, 100);
	RUN(names_and_ranges);
	RUN(not_names);
	RUN(needs_session);
	RUN(cache_and_errors);
	RUN(prefilter);
	RUN(relations_through_queries);
	RUN(written_relations);
	RUN(cte_names_are_not_relations);
	RUN(ddl_targets);
	RUN(schemas_named);
	RUN(locking_clauses);
	RUN(clock_values);
	RUN(functions_called);
	RUN(kinds_table);
	RUN(prepare_execute_detail);
	RUN(transaction_detail);
	RUN(set_reset_detail_and_ranges);
	RUN(set_values_and_set_config_calls);
	RUN(ranges_skip_comments);
	RUN(parse_error_detail);
	RUN(deep_nesting);
	RUN(cache_limits);
	sqlclass_cache_free(&cache);
	return unit_summary();
}
