/*
 * fuzz.h — what the libFuzzer targets in fuzz/ share: the entry point's prototype and a splitter
 * for inputs made of several parts.
 */
#ifndef PGRELAY_FUZZ_H
#define PGRELAY_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Aborts (a crash the fuzzer reports) when an invariant of the code under test does not hold. */
#define FUZZ_ASSERT(cond)                                                                           \
	do {                                                                                        \
		if (!(cond))                                                                        \
			__builtin_trap();                                                           \
	} while (0)

/* Inputs of several parts separated by a line "\n----\n" (the seeds use it). Returns the next
 * part and moves *data / *size past it and its separator. */
static inline const uint8_t *fuzz_next_part(const uint8_t **data, size_t *size, size_t *part_len)
{
	static const char sep[] = "\n----\n";
	const uint8_t *p = *data;
	const uint8_t *s = *size >= sizeof sep - 1 ? memmem(p, *size, sep, sizeof sep - 1) : NULL;
	if (!s) {
		*part_len = *size;
		*data += *size;
		*size = 0;
		return p;
	}
	*part_len = (size_t)(s - p);
	*size -= *part_len + sizeof sep - 1;
	*data = s + sizeof sep - 1;
	return p;
}

/* A malloc'd NUL-terminated copy (the parsers that take C strings get exact-size buffers, so
 * ASan sees any read past the end). */
static inline char *fuzz_strndup(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

/* An exact-size copy without a NUL, for parsers that take (pointer, length). */
static inline uint8_t *fuzz_memdup(const uint8_t *p, size_t n)
{
	uint8_t *s = malloc(n ? n : 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, p, n);
	return s;
}

#endif
