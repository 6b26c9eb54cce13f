/* Unit tests for params: tracked session parameters, options parsing, SET generation. */
#include <stdio.h>

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

TEST(copy_shares_until_a_change)
{
	/* params_copy shares the storage (a client's startup_params costs nothing at login); a change
	 * to either list is made on a private copy, the other keeps what it had. */
	ParamList a, b, c;
	params_init(&a);
	params_init(&b);
	params_init(&c);
	params_set(&a, "DateStyle", "ISO, MDY");
	params_set(&a, "TimeZone", "UTC");
	params_copy(&b, &a);
	CHECK(b.items == a.items);
	CHECK_INT(b.n, 2);
	CHECK(params_fingerprint(&a) == params_fingerprint(&b));
	/* a value of the shared storage given to a set of a list holding it */
	const char *utc = params_get(&b, "TimeZone");
	CHECK(params_set(&a, "timezone", "Asia/Dhaka"));
	CHECK(b.items != a.items);
	CHECK_STR(params_get(&a, "TimeZone"), "Asia/Dhaka");
	CHECK_STR(params_get(&b, "TimeZone"), "UTC");
	CHECK_STR(utc, "UTC");
	CHECK(params_fingerprint(&a) != params_fingerprint(&b));
	/* three holders; one removes, one clears, one is overwritten by a copy */
	params_copy(&a, &b);
	params_copy(&c, &b);
	CHECK(a.items == b.items && c.items == b.items);
	CHECK(params_remove(&c, "datestyle"));
	CHECK_INT(c.n, 1);
	CHECK_INT(b.n, 2);
	CHECK_STR(params_get(&a, "DateStyle"), "ISO, MDY");
	params_clear(&b);
	CHECK_INT(b.n, 0);
	CHECK_STR(params_get(&a, "DateStyle"), "ISO, MDY");
	CHECK(params_set(&b, "application_name", "x"));
	params_copy(&a, &a);
	CHECK_INT(a.n, 2);
	params_copy(&a, &c);
	CHECK_INT(a.n, 1);
	CHECK_STR(params_get(&a, "TimeZone"), "UTC");
	/* growth past the first capacity of a list that shared */
	params_copy(&b, &a);
	char name[16];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof name, "x.p%d", i);
		CHECK(params_set(&b, name, "v"));
	}
	CHECK_INT(b.n, 21);
	CHECK_INT(a.n, 1);
	/* a sync whose have shares base's storage (a server reset to its login values) */
	ParamList want, have, base;
	params_init(&want);
	params_init(&have);
	params_init(&base);
	params_set(&base, "DateStyle", "ISO, MDY");
	params_set(&base, "x.a", "1");
	params_copy(&have, &base);
	params_set(&want, "DateStyle", "German");
	Buf sql;
	buf_init(&sql);
	CHECK_INT(params_sync(&want, &have, &base, &sql), 1);
	CHECK_STR(params_get(&have, "DateStyle"), "German");
	CHECK_STR(params_get(&base, "DateStyle"), "ISO, MDY");
	buf_free(&sql);
	params_free(&want);
	params_free(&have);
	params_free(&base);
	params_free(&a);
	params_free(&b);
	params_free(&c);
}

int main(void)
{
	RUN(set_get_case_insensitive);
	RUN(options_parsing);
	RUN(sync_sql_only_differences_and_quoting);
	RUN(settable_reports);
	RUN(copy_shares_until_a_change);
	return unit_summary();
}
