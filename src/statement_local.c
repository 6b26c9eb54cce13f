/*
 * statement_local — what pgrelay answers a logged-in client itself (see statement_local.h).
 */
#include "statement_local.h"

#include <stdlib.h>
#include <string.h>

#include "pipeline.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "sqlclass.h"
#include "txtrack.h"
#include "xalloc.h"

enum { LOCAL_NONE = 0, LOCAL_BEGIN, LOCAL_COMMIT, LOCAL_ROLLBACK };

void statement_local_send(Client *c, const Buf *b) { conn_send(&c->conn, buf_head(b), buf_used(b)); }

void statement_local_simple(Client *c, char type, int status)
{
	uint8_t m[6] = {(uint8_t)type, 0, 0, 0, status ? 5 : 4, (uint8_t)status};
	conn_send(&c->conn, m, status ? 6 : 5);
}

static void local_complete(Client *c, const char *tag, bool with_rfq)
{
	Buf b;
	buf_init(&b);
	size_t off = proto_begin(&b, 'C');
	proto_put_str(&b, tag);
	proto_end(&b, off);
	if (with_rfq)
		proto_build_ready_for_query(&b, c->tx_local);
	statement_local_send(c, &b);
	buf_free(&b);
}

/*
 * An error pgrelay reports for the client's statement, as PostgreSQL would: after a simple Query
 * with ReadyForQuery; in the extended protocol the rest of the batch is dropped up to Sync. In a
 * transaction the transaction fails ('E') until the client ends it.
 */
void statement_local_error(Client *c, RelayCtx *rc, uint8_t type, const char *sqlstate, const char *message,
			const char *hint)
{
	Server *s = c->server;
	if (s && rc && !pipeline_idle(&s->pipe)) {
		/* The server still owes the client replies (an open batch, pipelined requests): the error
		 * goes after them, and the server fails the batch or transaction itself. */
		Buf e;
		buf_init(&e);
		proto_build_error(&e, "ERROR", sqlstate, message, NULL, hint);
		bool sent = server_fail_request(s, rc, type == 'Q', &e);
		buf_free(&e);
		if (sent && type == 'Q')
			txtrack_end(&c->tx); /* its ReadyForQuery */
		if (type != 'Q')
			c->skip_to_sync = true;
		return;
	}
	if (c->tx_local == 'T' || (s && s->tx_status != 'I'))
		c->tx_local = 'E';
	if (s && s->tx_status != 'I' && rc) {
		/* The transaction failed here: end it on the server now; the client's ROLLBACK is answered locally. */
		Buf q;
		buf_init(&q);
		proto_build_query(&q, "ROLLBACK");
		relay_send(rc, buf_head(&q), buf_used(&q));
		buf_free(&q);
		pipeline_push(&s->pipe, PIPE_QUERY, PIPE_INTERNAL, 0);
	}
	free(c->held_begin);
	c->held_begin = NULL;
	Buf b;
	buf_init(&b);
	proto_build_error(&b, "ERROR", sqlstate, message, NULL, hint);
	if (type == 'Q')
		proto_build_ready_for_query(&b, c->tx_local);
	else
		c->skip_to_sync = true;
	statement_local_send(c, &b);
	buf_free(&b);
}

/*
 * Between transactions (no server held, transaction pooling) some messages need no server:
 * Parse of a named statement some server already accepted, Close of a statement name, Flush and
 * Sync. Answering them here keeps drivers that prepare synchronously (pgbench -M prepared,
 * PQprepare) from needing a server, and from deadlocking a pool smaller than the client count.
 * Returns 0 when the message needs a server.
 */
RelayAction statement_local_without_server(Client *c, uint8_t type, const uint8_t *msg, size_t total,
						 size_t avail)
{
	if (c->tx_local == 'E')
		return 0;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	switch (type) {
	case 'P': {
		if (avail < total)
			return RELAY_NEED_BODY;
		const uint8_t *z = memchr(body, 0, len);
		if (!z || z == body)
			return 0;
		size_t name_len = (size_t)(z - body) + 1;
		if (sqlclass_might_matter((const char *)body + name_len, strnlen((const char *)body + name_len, len - name_len)))
			return 0; /* may name other statements or need a session: decide with a server */
		PreparedStmt *st = prepared_intern(&c->rt->stmts, body + name_len, len - name_len);
		if (!st->validated) {
			prepared_release(&c->rt->stmts, st);
			return 0;
		}
		prepared_client_set(&c->stmts, &c->rt->stmts, (const char *)body, st);
		c->rt->stmts.parses_avoided++;
		statement_local_simple(c, '1', 0);
		return RELAY_DROP;
	}
	case 'C':
		if (avail < total)
			return RELAY_NEED_BODY;
		if (len < 3 || body[0] != 'S' || body[len - 1] != 0)
			return 0;
		prepared_client_remove(&c->stmts, &c->rt->stmts, (const char *)body + 1);
		statement_local_simple(c, '3', 0);
		return RELAY_DROP;
	case 'S':
		if (c->unnamed_local || c->portal_local)
			return 0; /* a local BEGIN/COMMIT batch: statement_local_answer ends it */
		statement_local_simple(c, 'Z', c->tx_local);
		return RELAY_DROP;
	case 'H':
		return RELAY_DROP;
	default:
		return 0;
	}
}

static int local_kind(const SqlAnalysis *a)
{
	if (!a || a->parse_error || a->n_statements != 1 || a->statements[0].kind != SQL_KIND_TX)
		return LOCAL_NONE;
	switch (a->statements[0].tx) {
	case SQL_TX_BEGIN: return LOCAL_BEGIN;
	case SQL_TX_COMMIT: return LOCAL_COMMIT;
	case SQL_TX_ROLLBACK: return LOCAL_ROLLBACK;
	default: return LOCAL_NONE;
	}
}

/* A BEGIN, COMMIT or ROLLBACK pgrelay answers because the transaction has not reached a server. */
static void local_tx(Client *c, int kind, const char *sql, size_t len, bool read_only)
{
	if (kind == LOCAL_BEGIN) {
		if (c->tx_local == 'I') {
			free(c->held_begin);
			c->held_begin = xmalloc(len + 1);
			memcpy(c->held_begin, sql, len);
			c->held_begin[len] = 0;
			c->held_read_only = read_only;
			c->tx_local = 'T';
		}
		return;
	}
	free(c->held_begin);
	c->held_begin = NULL;
	c->tx_local = 'I';
}

/* The text of the BEGIN / COMMIT an extended-protocol batch carries, kept until its Execute. */
static void local_remember(Client *c, const char *sql, size_t len, bool read_only)
{
	free(c->local_sql);
	c->local_sql = xmalloc(len + 1);
	memcpy(c->local_sql, sql, len);
	c->local_sql[len] = 0;
	c->local_read_only = read_only;
}

static const char *local_tag(Client *c, int kind)
{
	if (kind == LOCAL_BEGIN)
		return "BEGIN";
	return kind == LOCAL_COMMIT && c->tx_local != 'E' ? "COMMIT" : "ROLLBACK";
}

/*
 * Messages pgrelay answers while the client holds no server: the client's BEGIN (held until its
 * first statement, which decides the service), COMMIT/ROLLBACK of a transaction that never
 * reached a server, and the errors of a transaction pgrelay failed. Returns 0 when a server is
 * needed.
 */
/* A statement in a transaction pgrelay failed: refused as PostgreSQL refuses it. */
static RelayAction refuse_in_failed_tx(Client *c, RelayCtx *rc, uint8_t type)
{
	statement_local_error(c, rc, type, "25P02", "current transaction is aborted, commands ignored until end of transaction block",
			      NULL);
	return RELAY_DROP;
}

RelayAction statement_local_answer(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
					const char *sql, size_t len, const SqlAnalysis *a)
{
	int kind = local_kind(a);
	bool read_only = kind == LOCAL_BEGIN && a->statements[0].tx_read_only;
	switch (type) {
	case 'Q':
		if (kind == LOCAL_NONE)
			return c->tx_local == 'E' ? refuse_in_failed_tx(c, rc, type) : 0;
		{
			const char *tag = local_tag(c, kind);
			local_tx(c, kind, sql, len, read_only);
			local_complete(c, tag, true);
		}
		return RELAY_DROP;
	case 'P':
		if (kind == LOCAL_NONE)
			return c->tx_local == 'E' ? refuse_in_failed_tx(c, rc, type) : 0;
		if (msg[PROTO_HEADER_LEN] == 0) {
			c->unnamed_local = (uint8_t)kind;
			local_remember(c, sql, len, read_only);
		} else {
			const uint8_t *body = msg + PROTO_HEADER_LEN;
			size_t name_len = strlen((const char *)body) + 1;
			PreparedStmt *st = prepared_intern(&c->rt->stmts, body + name_len, total - PROTO_HEADER_LEN - name_len);
			prepared_client_set(&c->stmts, &c->rt->stmts, (const char *)body, st);
		}
		statement_local_simple(c, '1', 0);
		return RELAY_DROP;
	case 'B': {
		int k = sql ? kind : c->unnamed_local;
		if (k == LOCAL_NONE)
			return 0;
		if (sql)
			local_remember(c, sql, len, read_only);
		c->portal_local = (uint8_t)k;
		statement_local_simple(c, '2', 0);
		return RELAY_DROP;
	}
	case 'D':
		if (sql && kind != LOCAL_NONE) {
			Buf b;
			buf_init(&b);
			size_t off = proto_begin(&b, 't');
			proto_put_u16(&b, 0);
			proto_end(&b, off);
			statement_local_send(c, &b);
			buf_free(&b);
			statement_local_simple(c, 'n', 0);
			return RELAY_DROP;
		}
		if (!sql && c->portal_local) {
			statement_local_simple(c, 'n', 0);
			return RELAY_DROP;
		}
		return 0;
	case 'E':
		if (!c->portal_local)
			return 0;
		{
			int k = c->portal_local;
			const char *tag = local_tag(c, k);
			const char *text = c->local_sql ? c->local_sql : "BEGIN";
			local_tx(c, k, text, strlen(text), c->local_read_only);
			c->portal_local = LOCAL_NONE;
			local_complete(c, tag, false);
		}
		return RELAY_DROP;
	case 'S':
		c->unnamed_local = c->portal_local = LOCAL_NONE;
		statement_local_simple(c, 'Z', c->tx_local);
		return RELAY_DROP;
	default:
		return 0;
	}
}

void statement_local_batch_end(Client *c) { c->unnamed_local = c->portal_local = LOCAL_NONE; }
