/*
 * fuzz_sqlclass — feeds: a SQL text as a client sends it in a Query or Parse (any bytes, not
 * NUL-terminated), to the statement analysis: sqlclass_might_matter (the prefilter) and
 * sqlclass_analyze (libpg_query, the JSON walk, the row facts of sqlkey), once through a small
 * cache and again for a cache hit.
 * Checks: no memory error, leak or undefined behaviour; each statement's range lies inside the
 * text and in order; the refs' ranges too; a cache hit returns the same analysis.
 */
#include "fuzz.h"
#include "sqlclass.h"

static SqlCache cache;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	sqlclass_cache_init(&cache, 64);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	const char *text = (const char *)data;
	(void)sqlclass_might_matter(text, size);
	SqlAnalysis *a = sqlclass_analyze(&cache, text, size);
	FUZZ_ASSERT(a != NULL);
	if (!a->parse_error) {
		int prev_end = 0;
		for (size_t i = 0; i < a->n_statements; i++) {
			const SqlStatement *st = &a->statements[i];
			FUZZ_ASSERT(st->start >= prev_end && st->start <= st->end && (size_t)st->end <= size);
			prev_end = st->end;
			FUZZ_ASSERT(st->tag != NULL);
			for (size_t k = 0; k < st->n_key_eqs; k++)
				FUZZ_ASSERT(st->key_eqs[k].column != NULL && st->key_eqs[k].relation != NULL);
		}
	}
	for (size_t i = 0; i < a->n_refs; i++) {
		const SqlNameRef *r = &a->refs[i];
		FUZZ_ASSERT(r->name != NULL);
		FUZZ_ASSERT(r->start >= 0 && r->start <= r->end && (size_t)r->end <= size);
	}
	SqlAnalysis *b = sqlclass_analyze(&cache, text, size);
	FUZZ_ASSERT(b == a);
	sqlclass_release(b);
	sqlclass_release(a);
	return 0;
}
