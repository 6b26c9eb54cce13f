/* Unit tests for params: tracked session parameters, options parsing, SET generation. */
#include "params.h"
#include "unit.h"

TEST(set_get_case_insensitive)
{
	ParamList l;
	params_init(&l);
	CHECK(params_set(&l, "DateStyle", "ISO"));
	CHECK_STR(params_get(&l, "datestyle"), "ISO");
	CHECK(!params_set(&l, "DATESTYLE", "ISO"));
	CHECK(params_set(&l, "datestyle", "German"));
	CHECK_INT(l.n, 1);
	CHECK_STR(params_get(&l, "DateStyle"), "German");
	CHECK(params_get(&l, "TimeZone") == NULL);
	params_free(&l);
}

TEST(options_parsing)
{
	ParamList l;
	params_init(&l);
	CHECK(params_parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB", &l) == NULL);
	CHECK_STR(params_get(&l, "search_path"), "a,b");
	CHECK_STR(params_get(&l, "statement_timeout"), "5s");
	CHECK_STR(params_get(&l, "work_mem"), "64MB");
	CHECK(params_parse_options("-c x.y=with\\ space", &l) == NULL);
	CHECK_STR(params_get(&l, "x.y"), "with space");
	CHECK(params_parse_options("-D /tmp", &l) != NULL);
	CHECK(params_parse_options("-c", &l) != NULL);
	CHECK(params_parse_options("-c =x", &l) != NULL);
	CHECK(params_parse_options("-c bad;name=x", &l) != NULL);
	params_free(&l);
}

TEST(sync_sql_only_differences_and_quoting)
{
	ParamList want, have;
	params_init(&want);
	params_init(&have);
	params_set(&want, "application_name", "it's \\ me");
	params_set(&want, "TimeZone", "UTC");
	params_set(&have, "timezone", "UTC");
	ParamList base;
	params_init(&base);
	params_set(&base, "TimeZone", "UTC");
	params_set(&base, "work_mem", "4MB");
	params_set(&have, "work_mem", "64MB");    /* a previous client's */
	params_set(&have, "search_path", "a, b"); /* not a server default at all */
	params_set(&have, "server_version", "15.1");
	params_set(&base, "server_version", "15.1");
	Buf sql;
	buf_init(&sql);
	uint32_t gen = have.gen;
	CHECK_INT(params_sync(&want, &have, &base, &sql), 3);
	buf_append(&sql, "", 1);
	CHECK_STR((const char *)buf_head(&sql),
		  "SELECT pg_catalog.set_config(E'application_name', E'it''s \\\\ me', false);"
		  "RESET work_mem;RESET search_path;");
	CHECK(have.gen != gen);
	CHECK_STR(params_get(&have, "application_name"), "it's \\ me");
	CHECK_STR(params_get(&have, "work_mem"), "4MB");
	CHECK(params_get(&have, "search_path") == NULL);
	CHECK_STR(params_get(&have, "server_version"), "15.1");
	buf_reset(&sql);
	CHECK_INT(params_sync(&want, &have, &base, &sql), 0);
	buf_free(&sql);
	params_free(&base);
	params_free(&want);
	params_free(&have);
}

TEST(settable_reports)
{
	CHECK(params_is_settable_report("client_encoding"));
	CHECK(params_is_settable_report("timezone"));
	CHECK(!params_is_settable_report("server_version"));
	CHECK(!params_is_settable_report("is_superuser"));
	CHECK(params_name_valid("myapp.setting"));
	CHECK(!params_name_valid("1abc"));
	CHECK(!params_name_valid("a b"));
}

int main(void)
{
	RUN(set_get_case_insensitive);
	RUN(options_parsing);
	RUN(sync_sql_only_differences_and_quoting);
	RUN(settable_reports);
	return unit_summary();
}
