/*
 * conn — one non-blocking socket with a read buffer, an outbound queue and libevent events.
 *
 * Owns: reading into a bounded buffer, writing (directly when nothing is queued, otherwise through
 * the queue; conn_send_soon queues for later in the same loop pass, so a run of pieces is one write),
 * read pausing for backpressure, and turning socket errors into one deferred "failed"
 * callback so no owner is re-entered from inside its own send. Knows nothing of the protocol.
 */
#ifndef PGRELAY_CONN_H
#define PGRELAY_CONN_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct ConnHandlers {
	/* New bytes arrived, or buffered bytes should be looked at again (after conn_kick). */
	void (*readable)(void *owner);
	/* The outbound queue became empty. */
	void (*drained)(void *owner);
	/* EOF or a socket error; the owner must close. why is for the log. */
	void (*failed)(void *owner, const char *why);
	/* The TLS handshake started by conn_tls_start finished (error NULL) or failed. */
	void (*tls_ready)(void *owner, const char *error);
} ConnHandlers;

/*
 * Read buffers of the configured size that connections let go of when they had nothing left to
 * process, kept for the next connection that reads (at most max of them): an idle connection holds
 * no buffer, and a busy one does not malloc and free 64 kB at every read (glibc then consolidated
 * and trimmed its heap: 20 % of pgrelay's CPU under pgbench's TPC-B).
 */
typedef struct ConnSpares {
	size_t size;    /* of every buffer kept (a connection with another size frees its own) */
	size_t n, max;
	uint8_t **bufs;
} ConnSpares;

void conn_spares_init(ConnSpares *sp, size_t max);
void conn_spares_free(ConnSpares *sp);

typedef struct Conn {
	int fd;
	void *owner;
	const ConnHandlers *handlers;
	struct event ev_read, ev_write;
	bool events_ready, reading, writing;
	bool failed;      /* a send failed; reported through the read event */
	bool send_soon;   /* conn_send_soon queued bytes: the write event is active, not watched */
	bool closed;      /* conn_close ran */
	char *fail_reason; /* why it failed (conn_fail), until reported; NULL otherwise */

	/* Inbound: bytes [pos, len) of in are not processed yet. */
	uint8_t *in;
	size_t in_len, in_pos, in_cap;
	size_t in_base; /* configured size, allocated when bytes arrive; freed whenever all are processed */
	size_t in_max;  /* growth limit for a single message */
	ConnSpares *spares; /* where an emptied read buffer goes (NULL: freed) */

	/* Streaming state of the message being processed (set by the relay loop). */
	size_t fwd_left;  /* bytes of the current message still to forward */
	size_t skip_left; /* bytes of the current message still to drop */

	Buf out; /* queued outbound bytes, in order */

	/* TLS (NULL: plain socket) */
	SSL *ssl;
	bool handshaking;
	bool read_wants_write, write_wants_read;
	uint64_t bytes_in, bytes_out;
} Conn;

void conn_init(Conn *c, struct event_base *base, int fd, size_t buf_size, size_t max_message,
	       const ConnHandlers *handlers, void *owner);
/* Emptied read buffers go to sp, and come from there (sp outlives the connection). */
void conn_use_spares(Conn *c, ConnSpares *sp);
/* Closes the socket and frees buffers; safe to call twice. */
void conn_close(Conn *c);

void conn_start_reading(Conn *c);
void conn_stop_reading(Conn *c);
/* Makes the owner's readable() run soon (from the loop) even if no new bytes arrive. */
void conn_kick(Conn *c);
/* conn_kick, only when unprocessed bytes are buffered here or in TLS (saves a read that would block). */
void conn_kick_pending(Conn *c);

/*
 * Sends bytes in order with everything sent before. Writes at once when the queue is empty and
 * queues what the socket does not take. Never calls back into the owner.
 */
void conn_send(Conn *c, const void *data, size_t n);
/*
 * conn_send, but the bytes leave later in this loop pass together with whatever else is sent to c
 * until then: one system call for a run of injected and forwarded messages.
 */
void conn_send_soon(Conn *c, const void *data, size_t n);
static inline void conn_send_buf(Conn *c, Buf *b)
{
	conn_send(c, buf_head(b), buf_used(b));
	buf_reset(b);
}
static inline size_t conn_queued(const Conn *c) { return buf_used(&c->out); }

/* After processing: drop processed bytes from the front of the read buffer. */
void conn_compact(Conn *c);
/* The read buffer exists (proxy.buffer_size bytes): allocated when bytes are about to be read,
 * freed by conn_compact once everything read was processed. */
void conn_ensure_read_buffer(Conn *c);
/*
 * Puts bytes back in front of the unprocessed input, as if they had just been read (a request
 * to send again elsewhere). False if they would exceed in_max.
 */
bool conn_unread(Conn *c, const void *data, size_t n);
/*
 * The owner leaves the unprocessed bytes for a while (a client waiting for a server): when they
 * are few (at most CONN_SHRINK_MAX), they move to an allocation of their own size and the
 * proxy.buffer_size buffer is freed, so 10,000 waiting clients hold their requests, not a touched
 * page or two of a 64 kB buffer each. The next read grows the buffer back.
 */
#define CONN_SHRINK_MAX 2048
void conn_shrink(Conn *c);
/* Grows the read buffer so a message of total bytes fits from in_pos; false if above in_max. */
bool conn_make_room(Conn *c, size_t total);

/* Marks the connection failed (as a failed send would) and schedules the failed() callback. */
void conn_fail(Conn *c, const char *why);

/*
 * Starts a TLS handshake on the socket (server role towards a client, or client role towards a
 * PostgreSQL server, checking its certificate against verify_host when the context verifies).
 * Nothing may be queued or buffered unread. Reports through handlers->tls_ready.
 */
bool conn_tls_start(Conn *c, SSL_CTX *ctx, bool server_role, const char *verify_host);

#endif
