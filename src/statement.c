/*
 * statement — what pgrelay does with each message a logged-in client sends: which server gets it
 * (asking the pool at the start of each transaction), what is answered without one, and the
 * rewriting of prepared-statement names so they work on whichever server connection the client
 * holds (transaction pooling). Session-needing statements pin the client.
 */
#include "statement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "sqlclass.h"

static bool statement_tracking(const Client *c)
{
	return c->pool_mode == CONFIG_POOL_TRANSACTION && c->rt->config->max_prepared_statements > 0;
}

/*
 * SQL text the client sends (a simple Query, or the query of a Parse), in transaction pooling:
 * statements that need a session pin the client to its server; PREPARE / EXECUTE / DEALLOCATE
 * names become pgrelay-wide ones (the statement re-created first on a server that lacks it).
 * Returns true and the rewritten text in out when something was rewritten; *prepared_id is the
 * last PREPARE's statement id (0 if none).
 */
static bool client_rewrite_sql(Client *c, RelayCtx *rc, const char *text, size_t len, Buf *out,
			       uint32_t *prepared_id)
{
	Server *s = c->server;
	*prepared_id = 0;
	if (!sqlclass_might_matter(text, len))
		return false;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, text, len);
	if (a->needs_session && !c->pinned) {
		c->pinned = a->needs_session;
		log_info(c->name, "keeps %s until it disconnects: %s needs a session (transaction pooling)",
			 s->name, a->needs_session);
	}
	if (a->n_refs == 0 || !statement_tracking(c) || s->pipe.skipping) {
		sqlclass_release(a);
		return false;
	}
	StmtRegistry *reg = &c->rt->stmts;
	int pos = 0;
	for (size_t i = 0; i < a->n_refs; i++) {
		const SqlNameRef *ref = &a->refs[i];
		buf_append(out, text + pos, (size_t)(ref->start - pos));
		pos = ref->end;
		PreparedStmt *st;
		if (ref->kind == SQL_REF_PREPARE) {
			st = prepared_new_sql(reg, text + ref->end, (size_t)(ref->stmt_end - ref->end));
			prepared_client_set(&c->stmts, reg, ref->name, st);
			server_track_prepared(s, rc, st->id);
			*prepared_id = st->id;
		} else {
			st = prepared_client_get(&c->stmts, ref->name);
			if (!st) {
				buf_append(out, text + ref->start, (size_t)(ref->end - ref->start));
				continue; /* unknown: the server reports it */
			}
			server_ensure_prepared(s, rc, st);
		}
		buf_append(out, st->server_name, strlen(st->server_name));
		if (ref->kind == SQL_REF_DEALLOCATE) {
			prepared_server_remove(&s->stmts, st->id);
			prepared_client_remove(&c->stmts, reg, ref->name);
		}
	}
	buf_append(out, text + pos, len - (size_t)pos);
	sqlclass_release(a);
	return true;
}

/* The two names at the start of a Bind body (portal, statement), or false if not all buffered. */
static bool bind_names(const uint8_t *body, size_t have, const char **portal, const char **stmt, size_t *names_len)
{
	const uint8_t *z1 = memchr(body, 0, have);
	if (!z1)
		return false;
	const uint8_t *z2 = memchr(z1 + 1, 0, have - (size_t)(z1 + 1 - body));
	if (!z2)
		return false;
	*portal = (const char *)body;
	*stmt = (const char *)z1 + 1;
	*names_len = (size_t)(z2 + 1 - body);
	return true;
}

/*
 * Extended-protocol messages naming a prepared statement, in transaction pooling: the client's
 * names become pgrelay-wide ones that exist on whichever server connection the client holds.
 */
static RelayAction client_statement_msg(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
					size_t avail)
{
	Server *s = c->server;
	StmtRegistry *reg = &c->rt->stmts;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t have = avail - PROTO_HEADER_LEN, len = total - PROTO_HEADER_LEN;
	Buf b;
	switch (type) {
	case 'P': {
		if (avail < total)
			return RELAY_NEED_BODY;
		const uint8_t *z = memchr(body, 0, len);
		const uint8_t *zq = z ? memchr(z + 1, 0, len - (size_t)(z + 1 - body)) : NULL;
		if (!zq)
			return RELAY_ERROR;
		const char *name = (const char *)body;
		size_t name_len = (size_t)(z - body) + 1;
		const char *query = (const char *)z + 1;
		const uint8_t *types = zq + 1;
		size_t types_len = len - (size_t)(types - body);
		/* The statement key: query + parameter types, the query possibly rewritten. */
		Buf key;
		buf_init(&key);
		uint32_t prepared_id;
		bool rewritten = client_rewrite_sql(c, rc, query, (size_t)(zq - (const uint8_t *)query), &key, &prepared_id);
		if (rewritten) {
			buf_append(&key, "", 1);
			buf_append(&key, types, types_len);
		}
		if (!*name || s->pipe.skipping) {
			if (rewritten) {
				buf_init(&b);
				size_t off = proto_begin(&b, 'P');
				proto_put_bytes(&b, name, name_len);
				proto_put_bytes(&b, buf_head(&key), buf_used(&key));
				proto_end(&b, off);
				relay_send(rc, buf_head(&b), buf_used(&b));
				buf_free(&b);
			}
			buf_free(&key);
			server_expect(s, PIPE_PARSE, 0, 0);
			return rewritten ? RELAY_DROP : RELAY_FORWARD;
		}
		PreparedStmt *st = rewritten ? prepared_intern(reg, buf_head(&key), buf_used(&key))
					     : prepared_intern(reg, body + name_len, len - name_len);
		buf_free(&key);
		prepared_client_set(&c->stmts, reg, name, st);
		if (prepared_server_has(&s->stmts, st->id)) {
			server_expect(s, PIPE_PARSE, PIPE_SYNTHETIC, st->id);
			return RELAY_DROP;
		}
		server_send_parse(s, rc, st, true);
		return RELAY_DROP;
	}
	case 'B': {
		const char *portal, *name;
		size_t names_len;
		if (!bind_names(body, have, &portal, &name, &names_len))
			return avail < total ? RELAY_NEED_BODY : RELAY_ERROR;
		PreparedStmt *st = *name && !s->pipe.skipping ? prepared_client_get(&c->stmts, name) : NULL;
		if (!st) {
			server_expect(s, PIPE_BIND, 0, 0);
			return RELAY_FORWARD; /* unnamed, unknown (the server reports it) or ignored */
		}
		server_ensure_prepared(s, rc, st);
		buf_init(&b);
		proto_put_u8(&b, 'B');
		size_t portal_len = strlen(portal) + 1, new_name_len = strlen(st->server_name) + 1;
		proto_put_u32(&b, (uint32_t)(4 + len - names_len + portal_len + new_name_len));
		proto_put_bytes(&b, portal, portal_len);
		proto_put_bytes(&b, st->server_name, new_name_len);
		relay_send(rc, buf_head(&b), buf_used(&b));
		buf_free(&b);
		rc->skip_prefix = PROTO_HEADER_LEN + names_len;
		server_expect(s, PIPE_BIND, 0, 0);
		return RELAY_FORWARD;
	}
	case 'D':
	case 'C': {
		if (avail < total)
			return RELAY_NEED_BODY;
		if (len < 2 || body[len - 1] != 0)
			return RELAY_ERROR;
		char what = (char)body[0];
		const char *name = (const char *)body + 1;
		PipeKind kind = type == 'C' ? PIPE_CLOSE : what == 'S' ? PIPE_DESCRIBE_STMT : PIPE_DESCRIBE_PORTAL;
		if (what != 'S' || !*name || s->pipe.skipping) {
			server_expect(s, kind, 0, 0);
			return RELAY_FORWARD;
		}
		if (type == 'C') {
			/* The server copy stays for other clients; the client's name goes. */
			prepared_client_remove(&c->stmts, reg, name);
			server_expect(s, PIPE_CLOSE, PIPE_SYNTHETIC, 0);
			return RELAY_DROP;
		}
		PreparedStmt *st = prepared_client_get(&c->stmts, name);
		if (!st) {
			server_expect(s, kind, 0, 0);
			return RELAY_FORWARD;
		}
		server_ensure_prepared(s, rc, st);
		buf_init(&b);
		size_t off = proto_begin(&b, 'D');
		proto_put_u8(&b, 'S');
		proto_put_str(&b, st->server_name);
		proto_end(&b, off);
		relay_send(rc, buf_head(&b), buf_used(&b));
		buf_free(&b);
		server_expect(s, kind, 0, 0);
		return RELAY_DROP;
	}
	default:
		return RELAY_ERROR;
	}
}

static void client_send_simple(Client *c, char type, int status)
{
	uint8_t m[6] = {(uint8_t)type, 0, 0, 0, status ? 5 : 4, (uint8_t)status};
	conn_send(&c->conn, m, status ? 6 : 5);
}

/*
 * Between transactions (no server held, transaction pooling) some messages need no server:
 * Parse of a named statement some server already accepted, Close of a statement name, Flush and
 * Sync. Answering them here keeps drivers that prepare synchronously (pgbench -M prepared,
 * PQprepare) from needing a server, and from deadlocking a pool smaller than the client count.
 * Returns 0 when the message needs a server.
 */
static RelayAction client_answer_without_server(Client *c, uint8_t type, const uint8_t *msg, size_t total,
						 size_t avail)
{
	if (!statement_tracking(c))
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
		client_send_simple(c, '1', 0);
		return RELAY_DROP;
	}
	case 'C':
		if (avail < total)
			return RELAY_NEED_BODY;
		if (len < 3 || body[0] != 'S' || body[len - 1] != 0)
			return 0;
		prepared_client_remove(&c->stmts, &c->rt->stmts, (const char *)body + 1);
		client_send_simple(c, '3', 0);
		return RELAY_DROP;
	case 'S':
		client_send_simple(c, 'Z', 'I');
		return RELAY_DROP;
	case 'H':
		return RELAY_DROP;
	default:
		return 0;
	}
}

static RelayAction client_query_msg(Client *c, RelayCtx *rc, const uint8_t *msg, size_t total, size_t avail)
{
	Server *s = c->server;
	if (avail < total) {
		if (total > c->rt->config->buffer_size)
			goto plain; /* very large statements stream through unexamined */
		return RELAY_NEED_BODY;
	}
	const char *text = (const char *)msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	if (len == 0 || text[len - 1] != 0)
		return RELAY_ERROR;
	Buf out;
	buf_init(&out);
	size_t off = proto_begin(&out, 'Q');
	uint32_t prepared_id;
	if (!client_rewrite_sql(c, rc, text, len - 1, &out, &prepared_id)) {
		buf_free(&out);
		goto plain;
	}
	proto_put_u8(&out, 0);
	proto_end(&out, off);
	relay_send(rc, buf_head(&out), buf_used(&out));
	buf_free(&out);
	server_expect(s, PIPE_QUERY, 0, prepared_id);
	return RELAY_DROP;
plain:
	server_expect(s, PIPE_QUERY, 0, 0);
	return RELAY_FORWARD;
}

RelayAction statement_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail)
{
	switch (type) {
	case 'Q': case 'P': case 'B': case 'D': case 'E': case 'C': case 'H': case 'S': case 'F':
	case 'd': case 'c': case 'f':
		break;
	case 'X':
		client_close(c, "client sent Terminate");
		return RELAY_CLOSED;
	default:
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d", type);
		return RELAY_CLOSED;
	}
	if (!c->server) {
		RelayAction local = client_answer_without_server(c, type, msg, total, avail);
		if (local)
			return local;
		/* First message of a transaction: get a server, then look at this message again. */
		c->state = CL_WAITING;
		c->wait_start_ms = runtime_now_ms();
		pool_request_server(c->pool, c);
		return c->state == CL_CLOSED ? RELAY_CLOSED : RELAY_STOP;
	}
	Server *s = c->server;
	/* Settings lost to RESET / DISCARD ALL come back before the next request. */
	if (!server_params_synced(s, c) && s->tx_status == 'I' && pipeline_idle(&s->pipe))
		server_sync_params(s, c, rc);
	switch (type) {
	case 'P':
	case 'B':
	case 'D':
	case 'C':
		if (statement_tracking(c))
			return client_statement_msg(c, rc, type, msg, total, avail);
		if (type == 'D' || type == 'C') {
			if (avail < total)
				return RELAY_NEED_BODY;
			bool stmt = total > PROTO_HEADER_LEN && msg[PROTO_HEADER_LEN] == 'S';
			server_expect(s, type == 'C' ? PIPE_CLOSE : stmt ? PIPE_DESCRIBE_STMT : PIPE_DESCRIBE_PORTAL, 0, 0);
		} else {
			server_expect(s, type == 'P' ? PIPE_PARSE : PIPE_BIND, 0, 0);
		}
		return RELAY_FORWARD;
	case 'E': server_expect(s, PIPE_EXECUTE, 0, 0); break;
	case 'S': server_expect(s, PIPE_SYNC, 0, 0); break;
	case 'Q':
		if (c->pool_mode == CONFIG_POOL_TRANSACTION)
			return client_query_msg(c, rc, msg, total, avail);
		server_expect(s, PIPE_QUERY, 0, 0);
		break;
	case 'F': server_expect(s, PIPE_FUNCTION, 0, 0); break;
	case 'c': case 'f': server_expect(s, PIPE_COPY_END, 0, 0); break;
	case 'H':
		s->pipe.batch_open = true;
		break;
	default: /* 'd' */
		break;
	}
	return RELAY_FORWARD;
}

