/*
 * buf — a growable byte buffer with a consumed-prefix offset.
 *
 * Owns: memory for outbound queues and message building. Appends at the end, consumes from the
 * front; compacts lazily so a drained queue costs no memmove.
 */
#ifndef PGRELAY_BUF_H
#define PGRELAY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Buf {
	uint8_t *data;
	size_t start; /* first unconsumed byte */
	size_t len;   /* end of data */
	size_t cap;
} Buf;

void buf_init(Buf *b);
void buf_free(Buf *b);
/* Makes room for n more bytes at the end; aborts on allocation failure. */
void buf_reserve(Buf *b, size_t n);
void buf_append(Buf *b, const void *data, size_t n);
void buf_consume(Buf *b, size_t n);
void buf_reset(Buf *b);

static inline size_t buf_used(const Buf *b) { return b->len - b->start; }
/* Never NULL: an empty buffer that never held bytes has no data, and NULL + 0 is undefined
 * behaviour (UBSan reports it); its head is then an empty string. */
static inline const uint8_t *buf_head(const Buf *b)
{
	return b->data ? b->data + b->start : (const uint8_t *)"";
}

#endif
