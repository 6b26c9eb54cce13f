/*
 * test_jsontree — the JSON reader of the statement analysis: values and lookups, string escapes
 * (\uXXXX and surrogate pairs to UTF-8), numbers and their integer accessors, the nesting limit
 * (as json-c counts it, and far beyond it without recursion), malformed texts (truncated at every
 * byte, text after the value, broken escapes) failing cleanly, reuse of one JsonTree, and a real
 * libpg_query tree. Texts are parsed from exact-size copies, so a read past the end is seen.
 */
#include "jsontree.h"
#include "unit.h"

#include <pg_query.h>
#include <stdlib.h>
#include <string.h>

static JsonTree tree;
static char *copy; /* the text of the last parse_n */

/* Parses an exact-size copy of the n bytes at s. */
static const JsonNode *parse_n(const char *s, size_t n)
{
	free(copy);
	copy = malloc(n ? n : 1);
	memcpy(copy, s, n);
	return jsontree_parse(&tree, copy, n);
}

static const JsonNode *parse(const char *s) { return parse_n(s, strlen(s)); }

TEST(values_and_lookups)
{
	const JsonNode *r = parse(" {\"a\": 1, \"b\": [true, false, null, \"x\", {}, []], \"c\": {\"d\": \"e\"}, \"a\": 2}\n");
	REQUIRE(r != NULL);
	CHECK(tree.error == NULL);
	CHECK_INT(r->type, JSONTREE_OBJECT);
	CHECK_INT(jsontree_len(r), 4);
	CHECK_STR(r->members[0].key, "a");
	CHECK_STR(r->members[3].key, "a"); /* duplicates kept, in order */
	CHECK_INT(jsontree_int(jsontree_get(r, "a")), 1); /* the first one */
	const JsonNode *b = jsontree_get(r, "b");
	CHECK_INT(jsontree_len(b), 6);
	CHECK(jsontree_is(jsontree_at(b, 0), JSONTREE_TRUE));
	CHECK(jsontree_is(jsontree_at(b, 1), JSONTREE_FALSE));
	CHECK(jsontree_is(jsontree_at(b, 2), JSONTREE_NULL));
	CHECK_STR(jsontree_string(jsontree_at(b, 3)), "x");
	CHECK(jsontree_is(jsontree_at(b, 4), JSONTREE_OBJECT) && jsontree_len(jsontree_at(b, 4)) == 0);
	CHECK(jsontree_is(jsontree_at(b, 5), JSONTREE_ARRAY) && jsontree_len(jsontree_at(b, 5)) == 0);
	CHECK(jsontree_at(b, 6) == NULL);
	CHECK(jsontree_at(r, 0) == NULL); /* not an array */
	CHECK_STR(jsontree_string(jsontree_get(jsontree_get(r, "c"), "d")), "e");
	CHECK(jsontree_get(r, "z") == NULL);
	CHECK(jsontree_get(b, "a") == NULL); /* not an object */
	CHECK(jsontree_get(NULL, "a") == NULL);
	CHECK(jsontree_string(jsontree_get(r, "a")) == NULL); /* not a string */
	CHECK_INT(jsontree_len(jsontree_get(r, "a")), 0);
	CHECK_INT(jsontree_len(NULL), 0);

	/* a scalar alone is a text too */
	r = parse("\"only\"");
	REQUIRE(r != NULL);
	CHECK_STR(jsontree_string(r), "only");
	CHECK_INT(r->len, 4);
	r = parse("  -0 ");
	REQUIRE(r != NULL);
	CHECK_INT(jsontree_int(r), 0);
	CHECK(parse("null") && parse("true") && parse("false") && parse("[]") && parse("{}"));

	/* an empty container first, on a reader whose pending stack was never allocated (once an
	 * offset applied to its NULL: fuzz/corpus/jsontree/regress-empty-root) */
	JsonTree fresh;
	jsontree_init(&fresh, 4);
	r = jsontree_parse(&fresh, "{\n\n\n}", 5);
	CHECK(jsontree_is(r, JSONTREE_OBJECT) && jsontree_len(r) == 0);
	r = jsontree_parse(&fresh, "[]", 2);
	CHECK(jsontree_is(r, JSONTREE_ARRAY) && jsontree_len(r) == 0);
	jsontree_free(&fresh);
}

TEST(escapes)
{
	const JsonNode *r = parse("[\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\", \"\\ud83d\\ude00!\", "
				  "\"a\\u0000b\", \"\xc3\xa9 \xff raw\", \"\"]");
	REQUIRE(r != NULL);
	CHECK_STR(jsontree_string(jsontree_at(r, 0)), "q\" b\\ s/ \b\f\n\r\t");
	CHECK_STR(jsontree_string(jsontree_at(r, 1)), "A\xc3\xa9\xe2\x82\xac");
	CHECK_INT(jsontree_at(r, 1)->len, 6);
	CHECK_STR(jsontree_string(jsontree_at(r, 2)), "\xf0\x9f\x98\x80!"); /* U+1F600 */
	CHECK_INT(jsontree_at(r, 3)->len, 3);
	CHECK(memcmp(jsontree_at(r, 3)->str, "a\0b", 4) == 0);
	CHECK_STR(jsontree_string(jsontree_at(r, 4)), "\xc3\xa9 \xff raw"); /* other bytes as they are */
	CHECK_STR(jsontree_string(jsontree_at(r, 5)), "");
	/* escapes in keys too */
	r = parse("{\"k\\u0065y\\n\": 1}");
	REQUIRE(r != NULL);
	CHECK(jsontree_get(r, "key\n") != NULL);
	/* the highest and lowest pairs */
	r = parse("\"\\uDBFF\\uDFFF\\uD800\\uDC00\"");
	REQUIRE(r != NULL);
	CHECK_STR(jsontree_string(r), "\xf4\x8f\xbf\xbf\xf0\x90\x80\x80");

	static const char *const bad[] = {
		"\"\\x\"",         "\"\\u12G4\"",        "\"\\u123\"",          "\"\\u\"",     "\"\\ud83d\"",
		"\"\\ud83d x\"",   "\"\\ud83d\\u0041\"", "\"\\ude00\"",         "\"\\ud83d\\", "\"\\",
		"\"tab\there\"",   "\"nl\nhere\"",       "\"\\ud83d\\ud83d\"",  "\"\\'\"",     "\"\x01\"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse(bad[i]))
			UNIT_FAIL("accepted bad string %zu: %s", i, bad[i]);
		CHECK(tree.error != NULL);
	}
}

TEST(numbers)
{
	const JsonNode *r = parse("[0, -7, 42, 2147483648, -2147483649, 9223372036854775807, 9223372036854775808, "
				  "-9223372036854775808, -99999999999999999999, 12.9, -12.9, 1e3, 2.5E-1, 1e400, -1e400, 0.0]");
	REQUIRE(r != NULL);
	static const struct {
		int i;
		long long i64;
		bool integer;
		const char *text;
	} want[] = {
		{0, 0, true, "0"},
		{-7, -7, true, "-7"},
		{42, 42, true, "42"},
		{2147483647, 2147483648LL, true, "2147483648"},
		{-2147483647 - 1, -2147483649LL, true, "-2147483649"},
		{2147483647, 9223372036854775807LL, true, "9223372036854775807"},
		{2147483647, 9223372036854775807LL, true, "9223372036854775808"},
		{-2147483647 - 1, -9223372036854775807LL - 1, true, "-9223372036854775808"},
		{-2147483647 - 1, -9223372036854775807LL - 1, true, "-99999999999999999999"},
		{12, 12, false, "12.9"},
		{-12, -12, false, "-12.9"},
		{1000, 1000, false, "1e3"},
		{0, 0, false, "2.5E-1"},
		{2147483647, 9223372036854775807LL, false, "1e400"},
		{-2147483647 - 1, -9223372036854775807LL - 1, false, "-1e400"},
		{0, 0, false, "0.0"},
	};
	REQUIRE(jsontree_len(r) == sizeof want / sizeof want[0]);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		const JsonNode *n = jsontree_at(r, i);
		CHECK_INT(n->type, JSONTREE_NUMBER);
		CHECK_STR(n->str, want[i].text);
		CHECK_INT(n->len, strlen(want[i].text));
		CHECK_INT(n->integer, want[i].integer);
		CHECK_INT(jsontree_int(n), want[i].i);
		CHECK_INT(jsontree_int64(n), want[i].i64);
	}
	/* anything but a number reads as 0 */
	CHECK_INT(jsontree_int(jsontree_at(parse("[\"12\"]"), 0)), 0);
	CHECK_INT(jsontree_int64(NULL), 0);

	static const char *const bad[] = {"01", "-01", "-", "1.", ".5", "1e", "1e+", "+1", "1.e3", "0x10", "--1",
					  "NaN", "Infinity", "-Infinity", "1 2", "[1,2 3]", "00"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (parse(bad[i]))
			UNIT_FAIL("accepted bad number %zu: %s", i, bad[i]);
}

/* levels nested arrays ([[[...]]]), the innermost holding inner (or empty). */
static char *nested(size_t levels, const char *inner)
{
	size_t n = strlen(inner);
	char *s = malloc(2 * levels + n + 1);
	memset(s, '[', levels);
	memcpy(s + levels, inner, n);
	memset(s + levels + n, ']', levels);
	s[2 * levels + n] = 0;
	return s;
}

TEST(depth_limit)
{
	/* as json_tokener_new_ex(4): the root is at depth 0, a value at depth 4 is too deep (an
	 * empty container at depth 3 is not) */
	JsonTree t;
	jsontree_init(&t, 4);
	static const struct {
		const char *text;
		bool ok;
	} cases[] = {
		{"1", true},
		{"[[[[]]]]", true},
		{"[[[1]]]", true},
		{"[[[[1]]]]", false},
		{"[[[[[]]]]]", false},
		{"{\"a\":{\"b\":{\"c\":{}}}}", true},
		{"{\"a\":{\"b\":{\"c\":{\"d\":1}}}}", false},
		{"[{\"a\":[{}]}]", true},
		{"[{\"a\":[{\"b\":null}]}]", false},
		{"[1,[2,[3,[]]]]", true},
		{"[1,[2,[3,[4]]]]", false},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const JsonNode *r = jsontree_parse(&t, cases[i].text, strlen(cases[i].text));
		if ((r != NULL) != cases[i].ok)
			UNIT_FAIL("depth case %zu (%s): %s", i, cases[i].text, r ? "accepted" : t.error);
		if (!cases[i].ok)
			CHECK_CONTAINS(t.error, "nested too deeply");
	}
	jsontree_free(&t);

	/* far deeper than any stack: fails at the limit, without recursion */
	jsontree_init(&t, 4096);
	char *s = nested(1000000, "1");
	CHECK(jsontree_parse(&t, s, strlen(s)) == NULL);
	CHECK_CONTAINS(t.error, "nested too deeply");
	CHECK_INT(t.error_offset, 4096);
	free(s);
	s = nested(4095, "1"); /* 1 is at depth 4095 */
	const JsonNode *r = jsontree_parse(&t, s, strlen(s));
	REQUIRE(r != NULL);
	for (size_t i = 0; i < 4095; i++)
		r = jsontree_at(r, 0);
	CHECK_INT(jsontree_int(r), 1);
	free(s);
	s = nested(4096, "1");
	CHECK(jsontree_parse(&t, s, strlen(s)) == NULL);
	free(s);
	jsontree_free(&t);
}

TEST(malformed)
{
	static const char *const bad[] = {
		"",           " \n\t ",     "{",        "[",          "]",           "}",           "{\"a\"}",
		"{\"a\" 1}",  "{\"a\":}",   "{1:2}",    "{a:1}",      "{'a':1}",     "[1,]",        "{\"a\":1,}",
		"[,1]",       "[1 2]",      "{} x",     "[] []",      "1 1",         "tru",         "nul",
		"truex",      "True",       "NULL",     "/* c */ 1",  "[1] // c",    "\"abc",       "[\"a\":1]",
		"{\"a\":1 \"b\":2}", "\xef\xbb\xbf{}", "{\"a\":1}}", "[1]]", "{\"a\":[}]", "\v1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse(bad[i])) {
			UNIT_FAIL("accepted malformed %zu: %s", i, bad[i]);
			continue;
		}
		CHECK(tree.error != NULL);
		CHECK(tree.error_offset <= strlen(bad[i]));
	}
	CHECK(parse_n("[1]\0", 4) == NULL); /* a NUL after the value is text after it */
	CHECK_CONTAINS(tree.error, "after the value");
	CHECK_INT(tree.error_offset, 3);
	CHECK(parse("[1,2}") == NULL);
	CHECK_STR(tree.error, "expected ',' or ']'");
	CHECK_INT(tree.error_offset, 4);

	/* every proper prefix of a text is truncated, and fails */
	const char *doc = "{\"stmts\": [{\"stmt\": {\"SelectStmt\": {\"targetList\": [{\"ResTarget\": {\"val\": "
			  "{\"A_Const\": {\"ival\": {\"ival\": -12}, \"location\": 7}}}}], \"x\": [true, false, null, "
			  "1.5e3, \"\\u00e9\\ud83d\\ude00\\n\"]}}, \"stmt_len\": 8}]}";
	size_t n = strlen(doc);
	CHECK(parse_n(doc, n) != NULL);
	for (size_t k = 0; k < n; k++)
		if (parse_n(doc, k)) {
			UNIT_FAIL("accepted a prefix of %zu bytes", k);
			break;
		}
	CHECK(parse_n(doc, n) != NULL);
}

TEST(reuse)
{
	/* a large tree, then a small one, then a failure, then a tree again: each replaces the last */
	size_t n = 200000;
	char *big = malloc(n * 16 + 16), *p = big;
	*p++ = '[';
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"k\":%zu}", i ? "," : "", i);
	*p++ = ']';
	const JsonNode *r = jsontree_parse(&tree, big, (size_t)(p - big));
	REQUIRE(r != NULL);
	CHECK_INT(jsontree_len(r), n);
	CHECK_INT(jsontree_int(jsontree_get(jsontree_at(r, n - 1), "k")), (long long)(n - 1));
	free(big);
	r = parse("{\"a\":\"b\"}");
	REQUIRE(r != NULL);
	CHECK_STR(jsontree_string(jsontree_get(r, "a")), "b");
	CHECK(parse("{\"a\":") == NULL);
	CHECK(tree.error != NULL);
	r = parse("[\"c\"]");
	REQUIRE(r != NULL);
	CHECK(tree.error == NULL);
	CHECK_STR(jsontree_string(jsontree_at(r, 0)), "c");
	jsontree_clear(&tree);
}

TEST(pg_query_tree)
{
	PgQueryParseResult pr = pg_query_parse("UPDATE pgbench_accounts SET abalance = abalance + -2716 WHERE aid = "
					       "551208; SELECT 'it''s \"x\"\\', E'\\n\\u00e9'");
	REQUIRE(!pr.error);
	const JsonNode *r = parse(pr.parse_tree);
	REQUIRE(r != NULL);
	const JsonNode *stmts = jsontree_get(r, "stmts");
	REQUIRE(jsontree_len(stmts) == 2);
	const JsonNode *upd = jsontree_get(jsontree_get(jsontree_at(stmts, 0), "stmt"), "UpdateStmt");
	CHECK_STR(jsontree_string(jsontree_get(jsontree_get(upd, "relation"), "relname")), "pgbench_accounts");
	CHECK_INT(jsontree_int(jsontree_get(jsontree_at(stmts, 0), "stmt_len")), 74);
	CHECK_INT(jsontree_int(jsontree_get(jsontree_at(stmts, 1), "stmt_location")), 75);
	const JsonNode *sel = jsontree_get(jsontree_get(jsontree_at(stmts, 1), "stmt"), "SelectStmt");
	const JsonNode *targets = jsontree_get(sel, "targetList");
	REQUIRE(jsontree_len(targets) == 2);
	const char *want[] = {"it's \"x\"\\", "\n\xc3\xa9"};
	for (size_t i = 0; i < 2; i++) {
		const JsonNode *c = jsontree_get(jsontree_get(jsontree_get(jsontree_at(targets, i), "ResTarget"), "val"),
						 "A_Const");
		CHECK_STR(jsontree_string(jsontree_get(jsontree_get(c, "sval"), "sval")), want[i]);
	}
	pg_query_free_parse_result(pr);
}

int main(void)
{
	jsontree_init(&tree, 64);
	RUN(values_and_lookups);
	RUN(escapes);
	RUN(numbers);
	RUN(depth_limit);
	RUN(malformed);
	RUN(reuse);
	RUN(pg_query_tree);
	jsontree_free(&tree);
	free(copy);
	return unit_summary();
}
