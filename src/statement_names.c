/*
 * statement_names — named prepared statements in transaction pooling (see statement_names.h).
 */
#include "statement_names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pipeline.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "sqlclass.h"
#include "statement_local.h"

bool statement_names_tracking(const Client *c)
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
static bool rewrite_sql(Client *c, RelayCtx *rc, const char *text, size_t len, Buf *out,
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
	if (a->n_refs == 0 || !statement_names_tracking(c) || s->pipe.skipping) {
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

/*
 * Extended-protocol messages naming a prepared statement, in transaction pooling: the client's
 * names become pgrelay-wide ones that exist on whichever server connection the client holds.
 */
/* Parse: a named statement is interned in the registry and parsed on the server under its server
 * name (once per server connection); an unnamed one goes through, its query possibly rewritten. */
static RelayAction names_parse(Client *c, RelayCtx *rc, const uint8_t *body, size_t len)
{
	Server *s = c->server;
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
	bool rewritten = rewrite_sql(c, rc, query, (size_t)(zq - (const uint8_t *)query), &key, &prepared_id);
	if (rewritten) {
		buf_append(&key, "", 1);
		buf_append(&key, types, types_len);
	}
	if (!*name || s->pipe.skipping) {
		if (rewritten) {
			Buf b;
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
	StmtRegistry *reg = &c->rt->stmts;
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

/* Bind of a named statement: its new header (portal, the server's statement name) is sent, the rest
 * of the client's message follows unchanged (it may still be arriving). */
static RelayAction names_bind(Client *c, RelayCtx *rc, const uint8_t *body, size_t have, size_t len, bool whole)
{
	Server *s = c->server;
	const char *portal, *name;
	size_t names_len;
	if (!proto_bind_names(body, have, &portal, &name, &names_len))
		return whole ? RELAY_ERROR : RELAY_NEED_BODY;
	PreparedStmt *st = *name && !s->pipe.skipping ? prepared_client_get(&c->stmts, name) : NULL;
	if (!st) {
		server_expect(s, PIPE_BIND, 0, 0);
		return RELAY_FORWARD; /* unnamed, unknown (the server reports it) or ignored */
	}
	size_t portal_len = strlen(portal) + 1, new_name_len = strlen(st->server_name) + 1;
	size_t new_len = 4 + len - names_len + portal_len + new_name_len;
	if (new_len > PROTO_MAX_MESSAGE_LEN) {
		statement_local_error(c, rc, 'B', SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
				      "Bind message too long once its prepared statement's name is the server's", NULL);
		return RELAY_DROP;
	}
	server_ensure_prepared(s, rc, st);
	Buf b;
	buf_init(&b);
	proto_put_u8(&b, 'B');
	proto_put_u32(&b, (uint32_t)new_len);
	proto_put_bytes(&b, portal, portal_len);
	proto_put_bytes(&b, st->server_name, new_name_len);
	relay_send(rc, buf_head(&b), buf_used(&b));
	buf_free(&b);
	rc->skip_prefix = PROTO_HEADER_LEN + names_len;
	server_expect(s, PIPE_BIND, 0, 0);
	return RELAY_FORWARD;
}

/* Describe or Close of a named statement: Describe goes to the server under its server name; Close
 * forgets the client's name only (the server's copy stays for other clients). */
static RelayAction names_describe_close(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *body, size_t len)
{
	Server *s = c->server;
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
		prepared_client_remove(&c->stmts, &c->rt->stmts, name);
		server_expect(s, PIPE_CLOSE, PIPE_SYNTHETIC, 0);
		return RELAY_DROP;
	}
	PreparedStmt *st = prepared_client_get(&c->stmts, name);
	if (!st) {
		server_expect(s, kind, 0, 0);
		return RELAY_FORWARD;
	}
	server_ensure_prepared(s, rc, st);
	Buf b;
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

RelayAction statement_names_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				    size_t avail)
{
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	bool whole = avail >= total;
	switch (type) {
	case 'P':
		return whole ? names_parse(c, rc, body, len) : RELAY_NEED_BODY;
	case 'B':
		return names_bind(c, rc, body, avail - PROTO_HEADER_LEN, len, whole);
	case 'D':
	case 'C':
		return whole ? names_describe_close(c, rc, type, body, len) : RELAY_NEED_BODY;
	default:
		return RELAY_ERROR;
	}
}

RelayAction statement_names_query(Client *c, RelayCtx *rc, const uint8_t *msg, size_t total, size_t avail)
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
	if (!sqlclass_might_matter(text, len - 1))
		goto plain; /* nothing to rewrite or pin: no buffer to build */
	Buf out;
	buf_init(&out);
	size_t off = proto_begin(&out, 'Q');
	uint32_t prepared_id;
	if (!rewrite_sql(c, rc, text, len - 1, &out, &prepared_id)) {
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

/* The statement text of a PreparedStmt (its key starts with the query). */
static const char *stmt_query(const PreparedStmt *st, size_t *len)
{
	*len = strnlen((const char *)st->key, st->key_len);
	return (const char *)st->key;
}

/*
 * The SQL that decides where a message goes: a Query's text, a Parse's query, the query of the
 * named statement a Bind or Describe refers to. *sql stays NULL for messages that belong to a batch
 * under way. Returns 0, or RELAY_NEED_BODY / RELAY_ERROR.
 */
RelayAction statement_names_sql(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail,
			       const char **sql, size_t *len)
{
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t blen = total - PROTO_HEADER_LEN;
	*sql = NULL;
	*len = 0;
	switch (type) {
	case 'Q':
		if (avail < total)
			return total > c->rt->config->buffer_size ? 0 : RELAY_NEED_BODY;
		if (blen == 0 || body[blen - 1] != 0)
			return RELAY_ERROR;
		*sql = (const char *)body;
		*len = blen - 1;
		return 0;
	case 'P': {
		if (avail < total)
			return total > c->rt->config->buffer_size ? 0 : RELAY_NEED_BODY;
		const uint8_t *z = memchr(body, 0, blen);
		if (!z)
			return RELAY_ERROR;
		*sql = (const char *)z + 1;
		*len = strnlen(*sql, blen - (size_t)(z + 1 - body));
		return 0;
	}
	case 'B':
	case 'D': {
		const uint8_t *name = body;
		size_t have = avail - PROTO_HEADER_LEN;
		if (type == 'B') {
			const uint8_t *z = memchr(body, 0, have); /* skip the portal name */
			if (!z)
				return avail < total ? RELAY_NEED_BODY : RELAY_ERROR;
			name = z + 1;
		} else {
			if (avail < total)
				return RELAY_NEED_BODY;
			if (blen < 2 || body[0] != 'S')
				return 0;
			name = body + 1;
		}
		if (!memchr(name, 0, have - (size_t)(name - body)))
			return avail < total ? RELAY_NEED_BODY : RELAY_ERROR;
		if (!*name)
			return 0;
		PreparedStmt *st = prepared_client_get(&c->stmts, (const char *)name);
		if (st)
			*sql = stmt_query(st, len);
		return 0;
	}
	default:
		return 0;
	}
}

/*
 * The named prepared statements a client holds are bounded in bytes
 * (proxy.max_client_prepared_memory): a Parse of a named statement, or a Query that may PREPARE,
 * that would pass the limit gets 54000 (PostgreSQL's backend would hold them in its own memory;
 * pgrelay holds every client's in one process).
 */
bool statement_names_over_budget(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				 size_t avail)
{
	size_t limit = c->rt->config->max_client_prepared_memory;
	size_t held = prepared_client_bytes(&c->stmts);
	if (held + total <= limit)
		return false;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	if (type == 'P' && (avail == PROTO_HEADER_LEN || body[0] == 0))
		return false; /* the unnamed statement is not kept */
	if (type == 'Q' && (avail < total || !sqlclass_might_matter((const char *)body, total - PROTO_HEADER_LEN - 1)))
		return false;
	char m[240];
	snprintf(m, sizeof m,
		 "prepared statements of this connection would hold %zu bytes, above the limit of %zu bytes "
		 "(proxy.max_client_prepared_memory)", held + total, limit);
	statement_local_error(c, rc, type, SQLSTATE_PROGRAM_LIMIT_EXCEEDED, m, "DEALLOCATE the statements no longer needed.");
	return true;
}
