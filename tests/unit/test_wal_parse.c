/*
 * test_wal_parse — the test_decoding line parser of the WAL listener: line kinds, plain and quoted
 * names (spaces, quotes, dots, commas, colons, keywords, non-ASCII), TRUNCATE of several tables,
 * non-table and malformed lines, buffer limits; slot names and LSN text.
 */
#include "wal.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

/* Parses every name of line into "schema|name;..." ("!" appended on -1). */
static const char *names(const char *line, size_t len)
{
	static char out[1024];
	char schema[64], name[64];
	size_t pos = 0, n = 0;
	int r;
	out[0] = '\0';
	while ((r = wal_parse_table_line(line, len, &pos, schema, sizeof schema, name, sizeof name)) == 1)
		n += (size_t)snprintf(out + n, sizeof out - n, "%s|%s;", schema, name);
	if (r < 0)
		snprintf(out + n, sizeof out - n, "!");
	return out;
}

TEST(kinds)
{
	CHECK_INT(wal_line_kind(S("BEGIN")), WAL_LINE_BEGIN);
	CHECK_INT(wal_line_kind(S("BEGIN 1234")), WAL_LINE_BEGIN);
	CHECK_INT(wal_line_kind(S("COMMIT")), WAL_LINE_COMMIT);
	CHECK_INT(wal_line_kind(S("COMMIT 1234 (at 2024-01-01 00:00:00+00)")), WAL_LINE_COMMIT);
	CHECK_INT(wal_line_kind(S("table public.t: INSERT: id[integer]:1")), WAL_LINE_TABLE);
	CHECK_INT(wal_line_kind(S("BEGINNING")), WAL_LINE_OTHER);
	CHECK_INT(wal_line_kind(S("COMMITTED")), WAL_LINE_OTHER);
	CHECK_INT(wal_line_kind(S("message: transactional: 1 prefix: p, sz: 1 content:x")), WAL_LINE_OTHER);
	CHECK_INT(wal_line_kind(S("tables")), WAL_LINE_OTHER);
	CHECK_INT(wal_line_kind("", 0), WAL_LINE_OTHER);
	CHECK_INT(wal_line_kind(NULL, 0), WAL_LINE_OTHER);
	/* not NUL-terminated: only len counts */
	CHECK_INT(wal_line_kind("BEGINxyz", 5), WAL_LINE_BEGIN);
}

TEST(plain)
{
	CHECK_STR(names(S("table public.t1: INSERT: id[integer]:1 v[text]:'a'")), "public|t1;");
	CHECK_STR(names(S("table s2.t_2: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2")), "s2|t_2;");
	CHECK_STR(names(S("table public.t: DELETE: (no-tuple-data)")), "public|t;");
	CHECK_STR(names(S("table public.t: TRUNCATE: (no-flags)")), "public|t;");
	CHECK_STR(names(S("table public.t: TRUNCATE: restart_seqs cascade")), "public|t;");
	/* values that look like another change line do not matter */
	CHECK_STR(names(S("table public.t: INSERT: v[text]:'x, table evil.y: DELETE: \"q\".z'")), "public|t;");
	/* the result is NUL-terminated and not longer than the name */
	char schema[8] = "zzzzzzz", name[8] = "zzzzzzz";
	size_t pos = 0;
	CHECK_INT(wal_parse_table_line(S("table a.b: INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), 1);
	CHECK_STR(schema, "a");
	CHECK_STR(name, "b");
	CHECK_INT(pos, 9);
	CHECK_INT(wal_parse_table_line(S("table a.b: INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), 0);
}

TEST(quoted)
{
	CHECK_STR(names(S("table \"My Schema\".\"T\": INSERT: id[integer]:1")), "My Schema|T;");
	CHECK_STR(names(S("table public.\"user\": DELETE: id[integer]:1")), "public|user;");
	CHECK_STR(names(S("table \"a\"\"b\".\"c\"\"\": INSERT: x")), "a\"b|c\";");
	CHECK_STR(names(S("table \"dots.in.schema\".\"t.1\": UPDATE: x")), "dots.in.schema|t.1;");
	CHECK_STR(names(S("table \"x, y\".\"t: INSERT: z\": INSERT: v")), "x, y|t: INSERT: z;");
	CHECK_STR(names(S("table s.\"\"\"\": INSERT: v")), "s|\";");
	CHECK_STR(names(S("table \"таблицы\".\"Ünïcode\": INSERT: v")), "таблицы|Ünïcode;");
	CHECK_STR(names(S("table \"$x\".plain: INSERT: v")), "$x|plain;");
	CHECK_STR(names(S("table plain.\"Mixed\": INSERT: v")), "plain|Mixed;");
}

TEST(truncate_many)
{
	CHECK_STR(names(S("table public.a, s.\"B, c\", \"x.y\".z: TRUNCATE: (no-flags)")), "public|a;s|B, c;x.y|z;");
	CHECK_STR(names(S("table public.a, public.b: TRUNCATE: cascade")), "public|a;public|b;");
}

TEST(not_table_lines)
{
	CHECK_STR(names(S("BEGIN")), "!");
	CHECK_STR(names(S("COMMIT")), "!");
	CHECK_STR(names(S("message: transactional: 0 prefix: table a.b: INSERT:, sz: 0 content:")), "!");
	CHECK_STR(names(S("")), "!");
	size_t pos = 0;
	char s[8], n[8];
	CHECK_INT(wal_parse_table_line(NULL, 0, &pos, s, sizeof s, n, sizeof n), -1);
	CHECK_INT(wal_parse_table_line(S("table a.b: INSERT: x"), NULL, s, sizeof s, n, sizeof n), -1);
}

TEST(malformed)
{
	CHECK_STR(names(S("table t: INSERT: x")), "!");                /* unqualified */
	CHECK_STR(names(S("table .t: INSERT: x")), "!");               /* empty schema */
	CHECK_STR(names(S("table s.: INSERT: x")), "!");               /* empty name */
	CHECK_STR(names(S("table \"\".t: INSERT: x")), "!");           /* empty quoted */
	CHECK_STR(names(S("table \"s.t: INSERT: x")), "!");            /* unterminated quote */
	CHECK_STR(names(S("table s.t")), "!");                         /* no operation */
	CHECK_STR(names(S("table s.t:")), "!");
	CHECK_STR(names(S("table s.t: MERGE: x")), "!");               /* unknown operation */
	CHECK_STR(names(S("table s.t INSERT: x")), "!");
	CHECK_STR(names(S("table s.t.u: INSERT: x")), "!");
	CHECK_STR(names(S("table s.t,s.u: TRUNCATE: x")), "!");        /* list needs ", " */
	CHECK_STR(names(S("table s.t, : TRUNCATE: x")), "s|t;!");      /* first name read, then -1 */
	CHECK_STR(names(S("table s.\"a\"b: INSERT: x")), "!");         /* junk after a quoted name */
	CHECK_STR(names(S("table s.t: INSERT: x") - 2), "s|t;");      /* len stops after "INSERT:" */
	CHECK_STR(names(S("table s.t: INSERT: x") - 3), "!");          /* ... but not before */
	static const char nul[] = "table s.t\0x: INSERT: x";
	CHECK_STR(names(nul, sizeof nul - 1), "!");
	static const char qnul[] = "table s.\"t\0x\": INSERT: x";
	CHECK_STR(names(qnul, sizeof qnul - 1), "!");
}

TEST(limits)
{
	char schema[4], name[4];
	size_t pos = 0;
	CHECK_INT(wal_parse_table_line(S("table abc.def: INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), 1);
	CHECK_STR(schema, "abc");
	CHECK_STR(name, "def");
	pos = 0;
	CHECK_INT(wal_parse_table_line(S("table abcd.d: INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), -1);
	pos = 0;
	CHECK_INT(wal_parse_table_line(S("table a.\"defg\": INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), -1);
	pos = 0;
	CHECK_INT(wal_parse_table_line(S("table a.\"d\"\"e\": INSERT: x"), &pos, schema, sizeof schema, name, sizeof name), 1);
	CHECK_STR(name, "d\"e");
	/* 63-byte names (NAMEDATALEN - 1) fit the listener's buffers */
	char line[256], big_s[256], big_n[256];
	snprintf(line, sizeof line, "table \"%s\".%s: INSERT: x", "S23456789012345678901234567890123456789012345678901234567890123",
		 "n23456789012345678901234567890123456789012345678901234567890123");
	pos = 0;
	CHECK_INT(wal_parse_table_line(line, strlen(line), &pos, big_s, sizeof big_s, big_n, sizeof big_n), 1);
	CHECK_INT(strlen(big_s), 63);
	CHECK_INT(strlen(big_n), 63);
}

TEST(slot_names)
{
	CHECK(wal_slot_name_valid("pgrelay_main"));
	CHECK(wal_slot_name_valid("a1"));
	CHECK(wal_slot_name_valid("x23456789012345678901234567890123456789012345678901234567890123"));
	CHECK(!wal_slot_name_valid("x234567890123456789012345678901234567890123456789012345678901234"));
	CHECK(!wal_slot_name_valid(""));
	CHECK(!wal_slot_name_valid(NULL));
	CHECK(!wal_slot_name_valid("Upper"));
	CHECK(!wal_slot_name_valid("a-b"));
	CHECK(!wal_slot_name_valid("a b"));
	CHECK(!wal_slot_name_valid("a;DROP"));
}

TEST(lsn_text)
{
	char buf[32];
	wal_format_lsn(buf, sizeof buf, 0);
	CHECK_STR(buf, "0/0");
	wal_format_lsn(buf, sizeof buf, 0x1A2B3C);
	CHECK_STR(buf, "0/1A2B3C");
	wal_format_lsn(buf, sizeof buf, ((uint64_t)0xFFFFFFFF << 32) | 0x10);
	CHECK_STR(buf, "FFFFFFFF/10");
}

/* The values of column in a change line, "a,b" ("?" when not known, with what was found). */
static const char *keys(const char *line, const char *column)
{
	static char out[2 * WAL_KEY_MAX + 8];
	char schema[64], name[64];
	size_t pos = 0, len = strlen(line);
	int r;
	while ((r = wal_parse_table_line(line, len, &pos, schema, sizeof schema, name, sizeof name)) == 1)
		;
	if (r < 0)
		return "!";
	WalKeyValues v;
	wal_parse_key_values(line, len, pos, column, &v);
	if (v.unknown)
		return "?";
	snprintf(out, sizeof out, "%s%s%s", v.n > 0 ? v.values[0] : "", v.n > 1 ? "," : "", v.n > 1 ? v.values[1] : "");
	return out;
}

TEST(key_values)
{
	/* INSERT: the new row */
	CHECK_STR(keys("table public.p: INSERT: id[integer]:42 name[text]:'it''s' price[numeric]:1.50", "id"), "42");
	CHECK_STR(keys("table public.p: INSERT: id[integer]:42 name[text]:'it''s'", "name"), "it's");
	CHECK_STR(keys("table public.p: INSERT: id[integer]:-7", "id"), "-7");
	/* UPDATE: without old-key the old value is not known; with it, both (once when equal) */
	CHECK_STR(keys("table public.t: UPDATE: id[integer]:42 v[text]:'x'", "id"), "?");
	CHECK_STR(keys("table public.t: UPDATE: old-key: id[integer]:41 v[text]:'y' new-tuple: id[integer]:42 v[text]:'x'",
		       "id"), "41,42");
	CHECK_STR(keys("table public.t: UPDATE: old-key: id[integer]:42 v[text]:'y' new-tuple: id[integer]:42 v[text]:'x'",
		       "id"), "42");
	/* old-key with the identity columns only (the key column is not among them) */
	CHECK_STR(keys("table public.t: UPDATE: old-key: sku[text]:'a' new-tuple: id[integer]:1 sku[text]:'b'", "id"), "?");
	CHECK_STR(keys("table public.t: UPDATE: old-key: k[text]:'a' new-tuple: k[text]:unchanged-toast-datum", "k"), "?");
	/* DELETE: the old row's identity (or every column) */
	CHECK_STR(keys("table public.t: DELETE: id[integer]:42", "id"), "42");
	CHECK_STR(keys("table public.t: DELETE: sku[text]:'a'", "id"), "?");
	CHECK_STR(keys("table public.t: DELETE: (no-tuple-data)", "id"), "?");
	/* quoted names, types with brackets and spaces, uuids, values that look like markers */
	CHECK_STR(keys("table s.\"My T\": INSERT: \"my key\"[uuid]:'0f0e0d0c-0b0a-4908-8706-050403020100' "
		       "tags[text[]]:'{a,b}' \"odd]name\"[character varying(10)]:'v'",
		       "my key"), "0f0e0d0c-0b0a-4908-8706-050403020100");
	CHECK_STR(keys("table s.t: INSERT: tags[text[]]:'{a,b}' \"odd]name\"[\"My\"\"Type\"]:'v' id[bigint]:5", "odd]name"),
		  "v");
	CHECK_STR(keys("table s.t: INSERT: tags[text[]]:'{a,b}' \"odd]name\"[\"My\"\"Type\"]:'v' id[bigint]:5", "id"), "5");
	CHECK_STR(keys("table s.t: INSERT: v[text]:'x new-tuple: id[integer]:9' id[integer]:1", "id"), "1");
	CHECK_STR(keys("table s.t: INSERT: k[text]:'null'", "k"), "null");
	/* not known: NULL, TOAST, no such column, TRUNCATE, unreadable, too long */
	CHECK_STR(keys("table s.t: INSERT: id[integer]:null", "id"), "?");
	CHECK_STR(keys("table s.t: INSERT: id[integer]:1", "other"), "?");
	CHECK_STR(keys("table s.a, s.b: TRUNCATE: (no-flags)", "id"), "?");
	CHECK_STR(keys("table s.t: INSERT: id[integer]:1 v[text]:'unterminated", "id"), "?");
	CHECK_STR(keys("table s.t: INSERT: id[integer:1", "id"), "?");
	char line[400];
	snprintf(line, sizeof line, "table s.t: INSERT: k[text]:'%0200d'", 7);
	CHECK_STR(keys(line, "k"), "?");
	snprintf(line, sizeof line, "table s.t: INSERT: k[text]:'%0120d'", 7);
	CHECK_INT(strlen(keys(line, "k")), 120);
	WalKeyValues v;
	wal_parse_key_values("table s.t: INSERT: id[integer]:1", 31, 9, NULL, &v);
	CHECK(v.unknown && v.n == 0);
}

int main(void)
{
	RUN(kinds);
	RUN(plain);
	RUN(quoted);
	RUN(truncate_many);
	RUN(not_table_lines);
	RUN(malformed);
	RUN(limits);
	RUN(slot_names);
	RUN(lsn_text);
	RUN(key_values);
	return unit_summary();
}
