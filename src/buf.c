/*
 * buf — growable byte buffers (see buf.h).
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(Buf *b)
{
	b->data = NULL;
	b->start = b->len = b->cap = 0;
}

void buf_free(Buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(Buf *b) { b->start = b->len = 0; }

void buf_reserve(Buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return;
	/* Reclaim the consumed prefix first when that makes enough room. */
	if (b->start > 0 && b->cap - buf_used(b) >= n) {
		size_t used = buf_used(b);
		memmove(b->data, b->data + b->start, used);
		b->start = 0;
		b->len = used;
		return;
	}
	size_t need = b->len + n;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p) {
		fprintf(stderr, "pgrelay: out of memory (buffer of %zu bytes)\n", cap);
		abort();
	}
	b->data = p;
	b->cap = cap;
}

void buf_append(Buf *b, const void *data, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->data + b->len, data, n);
	b->len += n;
}

void buf_consume(Buf *b, size_t n)
{
	b->start += n;
	if (b->start >= b->len)
		b->start = b->len = 0;
}
