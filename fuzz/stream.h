/*
 * stream.h — drives relay_process (the message reader of client and server connections) over a
 * byte stream the way conn does over a socket: a Conn without a socket whose read buffer is
 * filled in pieces (sizes taken from the input) up to its capacity, relay_process after each
 * piece, conn_compact between reads (which frees an emptied buffer: conn_ensure_read_buffer
 * before the next read, as conn does), a growth limit for single messages (max_message_size).
 * No peer: forwarded bytes go nowhere (dst NULL).
 */
#ifndef PGRELAY_FUZZ_STREAM_H
#define PGRELAY_FUZZ_STREAM_H

#include "conn.h"
#include "fuzz.h"
#include "relay.h"

typedef struct FuzzStream {
	Conn conn;
	const uint8_t *data;
	size_t size, pos;
	size_t piece; /* bytes per read */
} FuzzStream;

/* buf_size: the read buffer (proxy.buffer_size), max_message: its growth limit. */
static inline void fuzz_stream_init(FuzzStream *s, const uint8_t *data, size_t size, size_t buf_size,
				    size_t max_message, size_t piece)
{
	memset(s, 0, sizeof *s);
	s->conn.fd = -1;
	s->conn.in_cap = s->conn.in_base = buf_size;
	s->conn.in_max = max_message;
	s->conn.in = malloc(buf_size);
	if (!s->conn.in)
		abort();
	buf_init(&s->conn.out);
	s->data = data;
	s->size = size;
	s->piece = piece ? piece : 1;
}

/* One read: appends up to piece bytes (as much as fits). False at the end of the input or when
 * the buffer is full (a reader that neither consumes nor grows it would spin). */
static inline bool fuzz_stream_read(FuzzStream *s)
{
	Conn *c = &s->conn;
	conn_compact(c); /* frees the buffer once all was processed, as after a socket read */
	conn_ensure_read_buffer(c);
	size_t room = c->in_cap - c->in_len;
	size_t n = s->size - s->pos;
	if (n > s->piece)
		n = s->piece;
	if (n > room)
		n = room;
	if (n == 0)
		return false;
	memcpy(c->in + c->in_len, s->data + s->pos, n);
	c->in_len += n;
	s->pos += n;
	return true;
}

static inline void fuzz_stream_free(FuzzStream *s)
{
	free(s->conn.in);
	buf_free(&s->conn.out);
}

#endif
