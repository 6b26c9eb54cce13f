/* Unit tests for sqlclass: session-needing statements and prepared-statement names. */
#include "sqlclass.h"
#include "unit.h"

static SqlCache cache;

static SqlAnalysis *an(const char *sql) { return sqlclass_analyze(&cache, sql, strlen(sql)); }

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
}

int main(void)
{
	sqlclass_cache_init(&cache, 100);
	RUN(names_and_ranges);
	RUN(not_names);
	RUN(needs_session);
	RUN(cache_and_errors);
	RUN(prefilter);
	sqlclass_cache_free(&cache);
	return unit_summary();
}
