/*
 * fuzz_cache_entry — feeds: a cache entry as read from Redis (after its envelope), i.e.
 * magic | count | versions | names_len | names | reply. It goes through cache_entry_parse,
 * cache_entry_check with what a lookup would expect (the entry's own count and names, so the
 * reply check is reached, and a fixed expectation), for every statement shape, and
 * cache_entry_check_reply on the bytes directly.
 * Checks: no memory error or undefined behaviour; a parsed view lies inside the blob; an entry
 * rebuilt from its parsed parts with cache_entry_build is byte for byte the same; the check
 * agrees with parse on the header.
 */
#include "buf.h"
#include "cache_entry.h"
#include "fuzz.h"

static const CacheShape shapes[] = {CACHE_SHAPE_UNKNOWN, CACHE_SHAPE_QUERY, CACHE_SHAPE_DESCRIBED,
				    CACHE_SHAPE_EXECUTE};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	CacheEntryView e;
	bool parsed = cache_entry_parse(data, size, &e);
	if (parsed) {
		FUZZ_ASSERT(e.count >= 1 && e.count <= CACHE_ENTRY_MAX_VERSIONS);
		FUZZ_ASSERT(e.versions >= data && e.versions + 8 * (size_t)e.count <= data + size);
		FUZZ_ASSERT((const uint8_t *)e.names >= data && (const uint8_t *)e.names + e.names_len <= data + size);
		FUZZ_ASSERT(e.reply >= data && e.reply + e.reply_len == data + size);
		uint64_t versions[CACHE_ENTRY_MAX_VERSIONS];
		for (size_t i = 0; i < e.count; i++)
			versions[i] = cache_entry_version(&e, i);
		FUZZ_ASSERT(cache_entry_versions_equal(&e, versions, e.count));
		Buf b;
		buf_init(&b);
		cache_entry_build(&b, versions, e.count, e.names, e.names_len, e.reply, e.reply_len);
		FUZZ_ASSERT(buf_used(&b) == size && memcmp(buf_head(&b), data, size) == 0);
		buf_free(&b);
		for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
			const char *why = cache_entry_check(data, size, e.count, e.names, e.names_len, shapes[k]);
			const char *why_reply = cache_entry_check_reply(e.reply, e.reply_len, shapes[k]);
			FUZZ_ASSERT((why == NULL) == (why_reply == NULL));
		}
	}
	static const char want[] = "app\0public\0accounts";
	for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
		const char *why = cache_entry_check(data, size, 2, want, sizeof want, shapes[k]);
		FUZZ_ASSERT(parsed || why != NULL);
		(void)cache_entry_check_reply(data, size, shapes[k]);
	}
	return 0;
}
