/*
 * test_cache_entry — the result cache's entry format and what an entry read from Redis must pass:
 * the header and names, the reply's structure per statement form (each rule has a case that breaks
 * it), the HMAC envelope (tampered bytes, another Redis key, another signing key, short values), and
 * every truncation and many random corruptions of a valid entry, none of which may pass or crash.
 */
#include "cache_entry.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>

static const char KEY[] = "0123456789abcdef0123456789abcdef";       /* 32 bytes */
static const char OTHER_KEY[] = "0123456789abcdef0123456789abcdeX"; /* one byte differs */
static const char NAMES[] = "main\0public\0items"; /* service, one dependency (sizeof: with the last NUL) */

static void msg(Buf *b, char type, const void *body, size_t len)
{
	uint8_t h[5] = {(uint8_t)type, (uint8_t)((len + 4) >> 24), (uint8_t)((len + 4) >> 16), (uint8_t)((len + 4) >> 8),
			(uint8_t)(len + 4)};
	buf_append(b, h, 5);
	buf_append(b, body, len);
}

static void be16(Buf *b, uint16_t v)
{
	uint8_t p[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, p, 2);
}

static void be32(Buf *b, uint32_t v)
{
	uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	buf_append(b, p, 4);
}

/* RowDescription of n text columns c0, c1, ... (format given). */
static void row_description(Buf *out, uint16_t n, uint16_t format)
{
	Buf body;
	buf_init(&body);
	be16(&body, n);
	for (uint16_t i = 0; i < n; i++) {
		char name[8];
		snprintf(name, sizeof name, "c%u", (unsigned)i);
		buf_append(&body, name, strlen(name) + 1);
		be32(&body, 16384); /* table */
		be16(&body, (uint16_t)(i + 1));
		be32(&body, 25); /* text */
		be16(&body, 0xFFFF);
		be32(&body, 0xFFFFFFFF);
		be16(&body, format);
	}
	msg(out, 'T', buf_head(&body), buf_used(&body));
	buf_free(&body);
}

/* A DataRow of n columns: "v<i>", or NULL for the second one. */
static void data_row(Buf *out, uint16_t n)
{
	Buf body;
	buf_init(&body);
	be16(&body, n);
	for (uint16_t i = 0; i < n; i++) {
		if (i == 1) {
			be32(&body, 0xFFFFFFFF);
			continue;
		}
		char v[8];
		snprintf(v, sizeof v, "v%u", (unsigned)i);
		be32(&body, (uint32_t)strlen(v));
		buf_append(&body, v, strlen(v));
	}
	msg(out, 'D', buf_head(&body), buf_used(&body));
	buf_free(&body);
}

static void complete(Buf *out, const char *tag)
{
	msg(out, 'C', tag, strlen(tag) + 1);
}

/* [RowDescription] rows x DataRow "SELECT rows", 3 columns. */
static void reply(Buf *out, bool with_description, int rows)
{
	if (with_description)
		row_description(out, 3, 0);
	for (int i = 0; i < rows; i++)
		data_row(out, 3);
	char tag[32];
	snprintf(tag, sizeof tag, "SELECT %d", rows);
	complete(out, tag);
}

static void entry(Buf *out, const Buf *r)
{
	uint64_t versions[2] = {0x1122334455667788ull, 7};
	cache_entry_build(out, versions, 2, NAMES, sizeof NAMES, buf_head(r), buf_used(r));
}

static const char *check(const Buf *e, CacheShape shape)
{
	return cache_entry_check(buf_head(e), buf_used(e), 2, NAMES, sizeof NAMES, shape);
}

static const char *check_reply(const Buf *r, CacheShape shape)
{
	return cache_entry_check_reply(buf_head(r), buf_used(r), shape);
}

TEST(build_and_parse)
{
	Buf r, e;
	buf_init(&r);
	buf_init(&e);
	reply(&r, true, 2);
	entry(&e, &r);
	CacheEntryView v;
	REQUIRE(cache_entry_parse(buf_head(&e), buf_used(&e), &v));
	CHECK_INT(v.count, 2);
	CHECK(cache_entry_version(&v, 0) == 0x1122334455667788ull);
	CHECK_INT(cache_entry_version(&v, 1), 7);
	uint64_t same[2] = {0x1122334455667788ull, 7}, other[2] = {0x1122334455667788ull, 8};
	CHECK(cache_entry_versions_equal(&v, same, 2));
	CHECK(!cache_entry_versions_equal(&v, other, 2));
	CHECK(!cache_entry_versions_equal(&v, same, 1));
	CHECK_INT(v.names_len, sizeof NAMES);
	CHECK(memcmp(v.names, NAMES, sizeof NAMES) == 0);
	CHECK_INT(v.reply_len, buf_used(&r));
	CHECK(memcmp(v.reply, buf_head(&r), buf_used(&r)) == 0);
	/* little-endian on every host: the magic's bytes spell "pgr2" */
	CHECK(memcmp(buf_head(&e), "pgr2", 4) == 0);
	CHECK(check(&e, CACHE_SHAPE_QUERY) == NULL);
	CHECK(check(&e, CACHE_SHAPE_DESCRIBED) == NULL);
	CHECK(check(&e, CACHE_SHAPE_UNKNOWN) == NULL);
	buf_free(&r);
	buf_free(&e);
}

TEST(header_and_names)
{
	Buf r, e;
	buf_init(&r);
	buf_init(&e);
	reply(&r, true, 1);
	entry(&e, &r);
	/* the lookup expects another number of versions, or other names */
	CHECK_STR(cache_entry_check(buf_head(&e), buf_used(&e), 3, NAMES, sizeof NAMES, CACHE_SHAPE_QUERY),
		  "wrong number of versions");
	static const char other[] = "main\0public\0other";
	CHECK_STR(cache_entry_check(buf_head(&e), buf_used(&e), 2, other, sizeof other, CACHE_SHAPE_QUERY),
		  "names of another service or other tables");
	static const char other_service[] = "auth\0public\0items";
	CHECK_STR(cache_entry_check(buf_head(&e), buf_used(&e), 2, other_service, sizeof other_service, CACHE_SHAPE_QUERY),
		  "names of another service or other tables");
	CHECK_STR(cache_entry_check(buf_head(&e), buf_used(&e), 2, NAMES, sizeof NAMES - 1, CACHE_SHAPE_QUERY),
		  "names of another service or other tables");
	/* magic, count 0, count over the bound, names longer than the blob */
	uint8_t *b = (uint8_t *)buf_head(&e);
	b[0] ^= 1;
	CHECK_STR(check(&e, CACHE_SHAPE_QUERY), "malformed header");
	b[0] ^= 1;
	uint8_t saved[4];
	memcpy(saved, b + 4, 4);
	memset(b + 4, 0, 4);
	CHECK_STR(check(&e, CACHE_SHAPE_QUERY), "malformed header");
	b[4] = CACHE_ENTRY_MAX_VERSIONS + 1;
	CHECK_STR(check(&e, CACHE_SHAPE_QUERY), "malformed header");
	b[4] = 0xFF, b[5] = 0xFF, b[6] = 0xFF, b[7] = 0xFF;
	CHECK_STR(check(&e, CACHE_SHAPE_QUERY), "malformed header");
	memcpy(b + 4, saved, 4);
	size_t nl = 8 + 16;
	b[nl] = 0xFF, b[nl + 1] = 0xFF;
	CHECK_STR(check(&e, CACHE_SHAPE_QUERY), "malformed header");
	CHECK(!cache_entry_parse(NULL, 0, &(CacheEntryView){0}));
	buf_free(&r);
	buf_free(&e);
}

TEST(row_description_by_shape)
{
	Buf with, without, empty;
	buf_init(&with);
	buf_init(&without);
	buf_init(&empty);
	reply(&with, true, 2);
	reply(&without, false, 2);
	reply(&empty, true, 0);
	CHECK(check_reply(&with, CACHE_SHAPE_QUERY) == NULL);
	CHECK(check_reply(&with, CACHE_SHAPE_DESCRIBED) == NULL);
	CHECK_STR(check_reply(&with, CACHE_SHAPE_EXECUTE), "RowDescription without a Describe");
	CHECK(check_reply(&with, CACHE_SHAPE_UNKNOWN) == NULL);
	CHECK_STR(check_reply(&without, CACHE_SHAPE_QUERY), "no RowDescription");
	CHECK_STR(check_reply(&without, CACHE_SHAPE_DESCRIBED), "no RowDescription");
	CHECK(check_reply(&without, CACHE_SHAPE_EXECUTE) == NULL);
	CHECK(check_reply(&without, CACHE_SHAPE_UNKNOWN) == NULL);
	CHECK(check_reply(&empty, CACHE_SHAPE_QUERY) == NULL);
	Buf only_tag;
	buf_init(&only_tag);
	complete(&only_tag, "SELECT 0");
	CHECK_STR(check_reply(&only_tag, CACHE_SHAPE_QUERY), "no RowDescription");
	CHECK(check_reply(&only_tag, CACHE_SHAPE_EXECUTE) == NULL);
	buf_free(&with);
	buf_free(&without);
	buf_free(&empty);
	buf_free(&only_tag);
}

TEST(reply_structure)
{
	Buf b;
	buf_init(&b);
#define CASE(build, shape, want)                                                                   \
	do {                                                                                       \
		buf_reset(&b);                                                                     \
		build;                                                                             \
		const char *got_ = check_reply(&b, shape), *want_ = (want);                       \
		if (want_ ? !got_ || strcmp(got_, want_) != 0 : got_ != NULL)                      \
			UNIT_FAIL("got \"%s\", expected \"%s\"", got_ ? got_ : "(pass)",            \
				  want_ ? want_ : "(pass)");                                       \
	} while (0)
	/* a DataRow with another field count than the RowDescription, or than the first DataRow */
	CASE((row_description(&b, 3, 0), data_row(&b, 2), complete(&b, "SELECT 1")), CACHE_SHAPE_QUERY,
	     "DataRow does not match the RowDescription");
	CASE((data_row(&b, 3), data_row(&b, 4), complete(&b, "SELECT 2")), CACHE_SHAPE_EXECUTE,
	     "DataRow does not match the RowDescription");
	/* the tag's count */
	CASE((row_description(&b, 3, 0), data_row(&b, 3), complete(&b, "SELECT 2")), CACHE_SHAPE_QUERY,
	     "CommandComplete is not SELECT <number of rows>");
	CASE((row_description(&b, 3, 0), data_row(&b, 3), complete(&b, "SELECT 01")), CACHE_SHAPE_QUERY,
	     "CommandComplete is not SELECT <number of rows>");
	CASE((row_description(&b, 3, 0), data_row(&b, 3), complete(&b, "UPDATE 1")), CACHE_SHAPE_QUERY,
	     "CommandComplete is not SELECT <number of rows>");
	CASE((row_description(&b, 3, 0), data_row(&b, 3), msg(&b, 'C', "SELECT 1", 8)), CACHE_SHAPE_QUERY,
	     "CommandComplete is not SELECT <number of rows>"); /* no NUL */
	CASE((row_description(&b, 3, 0), data_row(&b, 3), msg(&b, 'C', "SELECT 1\0x", 11)), CACHE_SHAPE_QUERY,
	     "CommandComplete is not SELECT <number of rows>"); /* bytes after it */
	/* exactly one CommandComplete, last; nothing else */
	CASE((row_description(&b, 3, 0), data_row(&b, 3)), CACHE_SHAPE_QUERY, "no CommandComplete");
	CASE((row_description(&b, 3, 0), complete(&b, "SELECT 0"), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY,
	     "CommandComplete not last");
	CASE((row_description(&b, 3, 0), complete(&b, "SELECT 0"), data_row(&b, 3)), CACHE_SHAPE_QUERY,
	     "CommandComplete not last");
	CASE((row_description(&b, 3, 0), msg(&b, 'N', "SWARNING\0\0", 10), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY,
	     "a message other than RowDescription, DataRow, CommandComplete");
	CASE((row_description(&b, 3, 0), msg(&b, 'E', "SERROR\0\0", 8), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY,
	     "a message other than RowDescription, DataRow, CommandComplete");
	CASE((row_description(&b, 3, 0), complete(&b, "SELECT 0"), msg(&b, 'Z', "I", 1)), CACHE_SHAPE_QUERY,
	     "CommandComplete not last");
	CASE((row_description(&b, 3, 0), row_description(&b, 3, 0), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY,
	     "RowDescription not first");
	CASE((void)0, CACHE_SHAPE_EXECUTE, "no CommandComplete");
	/* a RowDescription's format code, its field count, bytes left over */
	CASE((row_description(&b, 3, 2), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY, "malformed RowDescription");
	CASE((row_description(&b, 1665, 0), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY, "malformed RowDescription");
	CASE((msg(&b, 'T', "\0\1c0\0", 5), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY, "malformed RowDescription");
	CASE((msg(&b, 'T', "\0\0x", 3), complete(&b, "SELECT 0")), CACHE_SHAPE_QUERY, "malformed RowDescription");
	CASE((row_description(&b, 0, 0), msg(&b, 'D', "\0\0", 2), complete(&b, "SELECT 1")), CACHE_SHAPE_QUERY, NULL);
	/* column lengths that do not add up: one byte short, one byte over, a length over the row */
	CASE((row_description(&b, 1, 0), msg(&b, 'D', "\0\1\0\0\0\3ab", 8), complete(&b, "SELECT 1")), CACHE_SHAPE_QUERY,
	     "DataRow does not match the RowDescription");
	CASE((row_description(&b, 1, 0), msg(&b, 'D', "\0\1\0\0\0\1ab", 8), complete(&b, "SELECT 1")), CACHE_SHAPE_QUERY,
	     "DataRow does not match the RowDescription");
	CASE((row_description(&b, 1, 0), msg(&b, 'D', "\0\1\x7f\xff\xff\xff", 6), complete(&b, "SELECT 1")),
	     CACHE_SHAPE_QUERY, "DataRow does not match the RowDescription");
	CASE((row_description(&b, 1, 0), msg(&b, 'D', "\0\1\xff\xff\xff\xfe", 6), complete(&b, "SELECT 1")),
	     CACHE_SHAPE_QUERY, "DataRow does not match the RowDescription"); /* -2 */
	CASE((row_description(&b, 1, 0), msg(&b, 'D', "\0\1\xff\xff\xff\xff", 6), complete(&b, "SELECT 1")),
	     CACHE_SHAPE_QUERY, NULL); /* NULL */
	/* message lengths: under 4, past the end */
	CASE((row_description(&b, 1, 0), buf_append(&b, "C\0\0\0\3", 5)), CACHE_SHAPE_QUERY, "message length out of bounds");
	CASE((row_description(&b, 1, 0), buf_append(&b, "C\0\0\1\0SELECT 0", 14)), CACHE_SHAPE_QUERY,
	     "message length out of bounds");
	CASE((row_description(&b, 1, 0), complete(&b, "SELECT 0"), buf_append(&b, "C", 1)), CACHE_SHAPE_QUERY,
	     "CommandComplete not last");
#undef CASE
	buf_free(&b);
}

TEST(signatures)
{
	CacheSigner *s = cache_signer_new(KEY, strlen(KEY)), *other = cache_signer_new(OTHER_KEY, strlen(OTHER_KEY));
	REQUIRE(s && other);
	CHECK(cache_signer_new(KEY, CACHE_ENTRY_MIN_KEY - 1) == NULL);
	CHECK(cache_signer_new(NULL, 64) == NULL);
	Buf r, e, v;
	buf_init(&r);
	buf_init(&e);
	buf_init(&v);
	reply(&r, true, 1);
	entry(&e, &r);
	static const char rk[] = "pgrelay:e:00ff", rk2[] = "pgrelay:e:00fe";
	REQUIRE(cache_signer_wrap(s, rk, strlen(rk), buf_head(&e), buf_used(&e), &v));
	CHECK_INT(buf_used(&v), buf_used(&e) + CACHE_ENTRY_MAC_LEN);
	const uint8_t *got;
	size_t got_len;
	CHECK(cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), buf_used(&v), &got, &got_len));
	CHECK(got_len == buf_used(&e) && memcmp(got, buf_head(&e), got_len) == 0);
	/* verification again with the same keyed context: still right */
	CHECK(cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), buf_used(&v), &got, &got_len));
	/* another Redis key, another signing key, a shorter key name that is a prefix */
	CHECK(!cache_signer_unwrap(s, rk2, strlen(rk2), buf_head(&v), buf_used(&v), &got, &got_len));
	CHECK(!cache_signer_unwrap(other, rk, strlen(rk), buf_head(&v), buf_used(&v), &got, &got_len));
	CHECK(!cache_signer_unwrap(s, rk, strlen(rk) - 1, buf_head(&v), buf_used(&v), &got, &got_len));
	/* any one byte flipped, the tag or the entry */
	for (size_t i = 0; i < buf_used(&v); i++) {
		uint8_t *p = (uint8_t *)buf_head(&v) + i;
		*p ^= 0x20;
		if (cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), buf_used(&v), &got, &got_len))
			UNIT_FAIL("byte %zu flipped and still accepted", i);
		*p ^= 0x20;
	}
	/* truncated, extended, shorter than a tag */
	CHECK(!cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), buf_used(&v) - 1, &got, &got_len));
	buf_append(&v, "x", 1);
	CHECK(!cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), buf_used(&v), &got, &got_len));
	CHECK(!cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), CACHE_ENTRY_MAC_LEN - 1, &got, &got_len));
	CHECK(!cache_signer_unwrap(s, rk, strlen(rk), buf_head(&v), 0, &got, &got_len));
	cache_signer_free(s);
	cache_signer_free(other);
	cache_signer_free(NULL);
	buf_free(&r);
	buf_free(&e);
	buf_free(&v);
}

/* Every truncation and 20000 random corruptions of a valid entry: none crashes (ASan), and no
 * truncation passes (the CommandComplete is the last message). */
TEST(truncations_and_corruptions)
{
	Buf r, e;
	buf_init(&r);
	buf_init(&e);
	reply(&r, true, 3);
	entry(&e, &r);
	size_t len = buf_used(&e);
	for (size_t n = 0; n < len; n++) {
		uint8_t *copy = malloc(n ? n : 1); /* exactly n bytes: reads past it are ASan errors */
		memcpy(copy, buf_head(&e), n);
		if (cache_entry_check(copy, n, 2, NAMES, sizeof NAMES, CACHE_SHAPE_QUERY) == NULL)
			UNIT_FAIL("truncated to %zu of %zu bytes and accepted", n, len);
		free(copy);
	}
	srand(12345);
	size_t accepted = 0;
	for (int round = 0; round < 20000; round++) {
		uint8_t *copy = malloc(len);
		memcpy(copy, buf_head(&e), len);
		int flips = 1 + rand() % 4;
		for (int f = 0; f < flips; f++)
			copy[(size_t)rand() % len] = (uint8_t)rand();
		static const CacheShape shapes[] = {CACHE_SHAPE_QUERY, CACHE_SHAPE_DESCRIBED, CACHE_SHAPE_EXECUTE,
						    CACHE_SHAPE_UNKNOWN};
		if (cache_entry_check(copy, len, 2, NAMES, sizeof NAMES, shapes[round % 4]) == NULL)
			accepted++; /* a changed version or value byte is still well-formed */
		free(copy);
	}
	CHECK(accepted < 20000);
	buf_free(&r);
	buf_free(&e);
}

TEST(empty_buf_head)
{
	/* fuzz_server_msgs: a ReadyForQuery with no reply collected checked the empty Buf's head,
	 * NULL + 0 (undefined behaviour). The input is fuzz/corpus/server_msgs/regress-empty-reply. */
	Buf b;
	buf_init(&b);
	CHECK(buf_head(&b) != NULL);
	CHECK(cache_entry_check_reply(buf_head(&b), buf_used(&b), CACHE_SHAPE_UNKNOWN) != NULL);
	buf_free(&b);
}

int main(void)
{
	RUN(empty_buf_head);
	RUN(build_and_parse);
	RUN(header_and_names);
	RUN(row_description_by_shape);
	RUN(reply_structure);
	RUN(signatures);
	RUN(truncations_and_corruptions);
	return unit_summary();
}
