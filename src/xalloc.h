/*
 * xalloc — allocation that cannot fail: pgrelay aborts on out-of-memory rather than carry a
 * half-built object (header only).
 */
#ifndef PGRELAY_XALLOC_H
#define PGRELAY_XALLOC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void *xalloc_check(void *p)
{
	if (!p) {
		fputs("pgrelay: out of memory\n", stderr);
		abort();
	}
	return p;
}

static inline void *xmalloc(size_t n) { return xalloc_check(malloc(n ? n : 1)); }
static inline void *xcalloc(size_t n, size_t size) { return xalloc_check(calloc(n ? n : 1, size ? size : 1)); }
static inline void *xrealloc(void *p, size_t n) { return xalloc_check(realloc(p, n ? n : 1)); }
/* NULL stays NULL. */
static inline char *xstrdup(const char *s) { return s ? xalloc_check(strdup(s)) : NULL; }

#endif
