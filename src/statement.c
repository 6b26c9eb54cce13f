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

#include "balance.h"
#include "cache.h"
#include "cachepolicy.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "router.h"
#include "server.h"
#include "settings.h"
#include "sqlclass.h"
#include "stats.h"
#include "txtrack.h"
#include "xalloc.h"

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

static void local_error(Client *c, RelayCtx *rc, uint8_t type, const char *sqlstate, const char *message,
			const char *hint);

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
		size_t portal_len = strlen(portal) + 1, new_name_len = strlen(st->server_name) + 1;
		size_t new_len = 4 + len - names_len + portal_len + new_name_len;
		if (new_len > PROTO_MAX_MESSAGE_LEN) {
			local_error(c, rc, type, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
				    "Bind message too long once its prepared statement's name is the server's", NULL);
			return RELAY_DROP;
		}
		server_ensure_prepared(s, rc, st);
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
	if (!statement_tracking(c) || c->tx_local == 'E')
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
		if (c->unnamed_local || c->portal_local)
			return 0; /* a local BEGIN/COMMIT batch: route_answer_locally ends it */
		client_send_simple(c, 'Z', c->tx_local);
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
	if (!sqlclass_might_matter(text, len - 1))
		goto plain; /* nothing to rewrite or pin: no buffer to build */
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

/* ---- routing (transaction pooling) ---- */

#define STATEMENT_RETRY_MAX (64 * 1024) /* a read larger than this is not kept for a retry */
#define STATEMENT_AVOID_MS 5000         /* a replica that failed gets no reads for this long */

enum { LOCAL_NONE = 0, LOCAL_BEGIN, LOCAL_COMMIT, LOCAL_ROLLBACK };

/* Routing is on when the configuration can send a client's statements to more than one place. */
static bool routing_on(const Client *c)
{
	const Config *cfg = c->rt->config;
	if (c->pool_mode != CONFIG_POOL_TRANSACTION)
		return false;
	if (cfg->n_routes > 0 || cfg->n_services > 1)
		return true;
	for (size_t i = 0; i < cfg->n_services; i++)
		if (cfg->services[i].n_replicas > 0)
			return true;
	return false;
}

static void send_local(Client *c, const Buf *b) { conn_send(&c->conn, buf_head(b), buf_used(b)); }

static void local_complete(Client *c, const char *tag, bool with_rfq)
{
	Buf b;
	buf_init(&b);
	size_t off = proto_begin(&b, 'C');
	proto_put_str(&b, tag);
	proto_end(&b, off);
	if (with_rfq)
		proto_build_ready_for_query(&b, c->tx_local);
	send_local(c, &b);
	buf_free(&b);
}

/*
 * An error pgrelay reports for the client's statement, as PostgreSQL would: after a simple Query
 * with ReadyForQuery; in the extended protocol the rest of the batch is dropped up to Sync. In a
 * transaction the transaction fails ('E') until the client ends it.
 */
static void local_error(Client *c, RelayCtx *rc, uint8_t type, const char *sqlstate, const char *message,
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
	send_local(c, &b);
	buf_free(&b);
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
static RelayAction message_sql(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail,
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

uint64_t statement_ryw_lsn(const Client *c, const char *service)
{
	for (size_t i = 0; c->ryw && i < CLIENT_RYW_SLOTS; i++)
		if (c->ryw[i].service && strcmp(c->ryw[i].service, service) == 0)
			return c->ryw[i].lsn;
	return 0;
}

void statement_note_commit(Client *c, const char *service, uint64_t lsn)
{
	size_t n = CLIENT_RYW_SLOTS, slot = n;
	if (!c->ryw)
		c->ryw = xcalloc(n, sizeof *c->ryw);
	for (size_t i = 0; i < n && slot == n; i++)
		if (c->ryw[i].service && strcmp(c->ryw[i].service, service) == 0)
			slot = i;
	for (size_t i = 0; i < n && slot == n; i++)
		if (!c->ryw[i].service)
			slot = i;
	if (slot == n) {
		slot = 0; /* more services than slots: forget one (its reads go to replicas sooner) */
		free(c->ryw[0].service);
		c->ryw[0].service = NULL;
	}
	if (!c->ryw[slot].service)
		c->ryw[slot].service = xstrdup(service);
	if (lsn > c->ryw[slot].lsn)
		c->ryw[slot].lsn = lsn;
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
static RelayAction route_answer_locally(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
					const char *sql, size_t len, const SqlAnalysis *a)
{
	int kind = local_kind(a);
	bool read_only = kind == LOCAL_BEGIN && a->statements[0].tx_read_only;
	switch (type) {
	case 'Q':
		if (kind == LOCAL_NONE && c->tx_local == 'E') {
			local_error(c, rc, type, "25P02", "current transaction is aborted, commands ignored until end of transaction block", NULL);
			return RELAY_DROP;
		}
		if (kind == LOCAL_NONE)
			return 0;
		{
			const char *tag = local_tag(c, kind);
			local_tx(c, kind, sql, len, read_only);
			local_complete(c, tag, true);
		}
		return RELAY_DROP;
	case 'P':
		if (kind == LOCAL_NONE) {
			if (c->tx_local == 'E') {
				local_error(c, rc, type, "25P02", "current transaction is aborted, commands ignored until end of transaction block", NULL);
				return RELAY_DROP;
			}
			return 0;
		}
		if (msg[PROTO_HEADER_LEN] == 0) {
			c->unnamed_local = (uint8_t)kind;
			local_remember(c, sql, len, read_only);
		} else {
			const uint8_t *body = msg + PROTO_HEADER_LEN;
			size_t name_len = strlen((const char *)body) + 1;
			PreparedStmt *st = prepared_intern(&c->rt->stmts, body + name_len, total - PROTO_HEADER_LEN - name_len);
			prepared_client_set(&c->stmts, &c->rt->stmts, (const char *)body, st);
		}
		client_send_simple(c, '1', 0);
		return RELAY_DROP;
	case 'B': {
		int k = sql ? kind : c->unnamed_local;
		if (k == LOCAL_NONE)
			return 0;
		if (sql)
			local_remember(c, sql, len, read_only);
		c->portal_local = (uint8_t)k;
		client_send_simple(c, '2', 0);
		return RELAY_DROP;
	}
	case 'D':
		if (sql && kind != LOCAL_NONE) {
			Buf b;
			buf_init(&b);
			size_t off = proto_begin(&b, 't');
			proto_put_u16(&b, 0);
			proto_end(&b, off);
			send_local(c, &b);
			buf_free(&b);
			client_send_simple(c, 'n', 0);
			return RELAY_DROP;
		}
		if (!sql && c->portal_local) {
			client_send_simple(c, 'n', 0);
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
		client_send_simple(c, 'Z', c->tx_local);
		return RELAY_DROP;
	default:
		return 0;
	}
}

/*
 * What a statement the client sends to s does to its session settings (settings.c), on every path
 * a statement runs by: a Query, the unnamed statement's Parse (its Bind follows), the Bind of a
 * named statement (each execution; its Parse executes nothing).
 */
static void track_session(Client *c, Server *s, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	if (type != 'Q' && type != 'P' && type != 'B')
		return;
	if (type == 'P' && avail > PROTO_HEADER_LEN && msg[PROTO_HEADER_LEN] != 0)
		return; /* a named statement: tracked at its Binds */
	if (type != 'B' && avail < total && total > c->rt->config->buffer_size) {
		settings_unseen(c, s, "a statement too large to read");
		return;
	}
	const char *sql;
	size_t len;
	if (message_sql(c, type, msg, total, avail, &sql, &len) != 0 || !sql)
		return; /* the unnamed statement's Bind (tracked at its Parse), or not all here yet */
	if (!settings_might_change(sql, len) && !settings_opacity_matters(c))
		return;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	settings_track(c, s, sql, a);
	sqlclass_release(a);
	/* The server now has what the client wants (if the statement works). */
	s->synced_fp = params_fingerprint(&c->params);
	s->synced_server_gen = s->params.gen;
}

/* Where a statement goes: its service, and a replica or the primary. */
typedef struct Target {
	const ConfigService *svc;
	int replica;     /* -1: primary */
	bool read_only;  /* the statement may run on a replica */
	bool names_tables; /* some relation decided the service (else it is the database default) */
	int rule;          /* index in config->routes of the rule that decided, or -1 */
	bool wait;         /* the rest of the batch must be seen first: look again when more arrives */
} Target;

/* Whether a text may run on a replica of its service (read-only, and its rule allows replicas). */
static bool sql_may_use_replica(Client *c, const ConfigDatabase *db, const char *sql, size_t len)
{
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	RouteResult r;
	router_route(c->rt->config, db, settings_search_path(c), c->user, a, &r);
	sqlclass_release(a);
	return r.status == ROUTE_OK && r.use_replica;
}

/*
 * An extended-protocol batch is one implicit transaction on one server, so the read that opens it
 * may go to a replica only if the whole batch may: looks at the client's messages buffered from msg
 * up to the batch's Sync, whose statements must all be reads a replica may serve. Without the Sync
 * buffered: when the client asked for replies (the buffered messages end with Flush), a replica
 * only while nothing executes yet (a prepare step: Parse, Describe, Flush, whose replies the client
 * waits for); otherwise the rest of the batch is on its way (a client sends Sync or Flush before it
 * waits), so the decision waits for it, unless the read buffer is full (then the primary).
 */
typedef enum { BATCH_PRIMARY, BATCH_REPLICA_OK, BATCH_WAIT } BatchVerdict;

static BatchVerdict batch_may_use_replica(Client *c, const ConfigDatabase *db, const uint8_t *msg)
{
	const uint8_t *p = msg, *end = c->conn.in + c->conn.in_len;
	bool executes = false, flushed = false;
	while (end - p >= PROTO_HEADER_LEN) {
		uint32_t n = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
		if (n < 4 || (size_t)(end - p) < (size_t)n + 1)
			break; /* not all here yet */
		const char *sql;
		size_t len;
		flushed = false;
		switch (p[0]) {
		case 'S':
			return BATCH_REPLICA_OK;
		case 'E':
			executes = true;
			break;
		case 'P':
		case 'B':
			if (message_sql(c, p[0], p, (size_t)n + 1, (size_t)n + 1, &sql, &len) != 0)
				return BATCH_PRIMARY;
			if (sql && !sql_may_use_replica(c, db, sql, len))
				return BATCH_PRIMARY;
			break;
		case 'H':
			flushed = true;
			break;
		case 'D':
		case 'C':
			break;
		default:
			return BATCH_PRIMARY; /* a Query or FunctionCall inside a batch: not a plain read */
		}
		p += (size_t)n + 1;
	}
	if (flushed)
		return executes ? BATCH_PRIMARY : BATCH_REPLICA_OK;
	if (c->conn.in_len - c->conn.in_pos >= c->conn.in_base)
		return BATCH_PRIMARY; /* the buffer is full: the rest cannot be looked at */
	return BATCH_WAIT;
}

/*
 * Routes a statement for the client (msg: its message, in the client's read buffer). On a
 * cross-service statement reports the error itself and returns false.
 */
static bool route_statement(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, const SqlAnalysis *a,
			    Target *t)
{
	Runtime *rt = c->rt;
	const ConfigDatabase *db = config_find_database(rt->config, c->database);
	if (!db) {
		local_error(c, rc, type, SQLSTATE_INVALID_CATALOG_NAME, "this database was removed from pgrelay's configuration", NULL);
		return false;
	}
	t->svc = db->service;
	t->replica = -1;
	t->read_only = false;
	t->names_tables = false;
	t->rule = -1;
	t->wait = false;
	if (!a)
		return true;
	RouteResult r;
	router_route(rt->config, db, settings_search_path(c), c->user, a, &r);
	if (r.status == ROUTE_CROSS_SERVICE) {
		char m[600];
		router_error_message(&r, m, sizeof m);
		local_error(c, rc, type, SQLSTATE_FEATURE_NOT_SUPPORTED, m,
			    "pgrelay sends each statement to one service: split it, or adjust routes in proxy.yaml");
		return false;
	}
	if (r.status != ROUTE_OK)
		return true; /* unparsable: the default primary reports the real error */
	t->svc = r.service;
	t->rule = r.rule ? router_rule_index(rt->config, r.rule) : -1;
	t->read_only = r.read_only;
	t->names_tables = r.names_tables;
	bool tx_allows = c->tx_local == 'I' || (c->tx_local == 'T' && c->held_read_only);
	if (!r.use_replica || !tx_allows || c->settings_opaque)
		return true;
	if (type != 'Q' && !(c->server && c->server->pipe.batch_open)) {
		BatchVerdict v = batch_may_use_replica(c, db, msg);
		if (v == BATCH_WAIT) {
			t->wait = true;
			return true;
		}
		if (v == BATCH_PRIMARY)
			return true;
	}
	t->replica = balance_choose_replica(rt, t->svc, statement_ryw_lsn(c, t->svc->name));
	return true;
}

/* ---- result cache ---- */

void statement_cache_wake(Client *c)
{
	if (c->state == CL_CLOSED)
		return;
	conn_kick(&c->conn);
}

void statement_cache_ready(Client *c, Server *s)
{
	Cache *cache = c->rt->cache;
	if (!cache)
		return;
	if (c->cache_state && c->cache_state->fill.active)
		cache_fill_finish(cache, c, s->pool->service->name, s->pool->replica);
}

/* ---- the client's transaction as the server runs it (txtrack): writes and savepoints ---- */

/* Everything of the service: for what pgrelay cannot read. */
static const CacheWrites *writes_all(CacheWrites *w, const char *why)
{
	memset(w, 0, sizeof *w);
	w->all = true;
	w->all_why = why;
	return w;
}

/*
 * What statement i of a writes, for the result cache (w is the storage); NULL when the cache is off
 * or it writes nothing. params: a Bind's values, or NULL.
 */
static const CacheWrites *statement_writes(Client *c, const SqlAnalysis *a, size_t i, const ProtoBindValues *params,
					   CacheWrites *w)
{
	if (!c->rt->cache)
		return NULL;
	const SqlStatement *st = &a->statements[i];
	if ((st->kind == SQL_KIND_READ || st->kind == SQL_KIND_TX || st->kind == SQL_KIND_SESSION) &&
	    st->n_functions == 0 && st->tx != SQL_TX_COMMIT_PREPARED)
		return NULL; /* the common case: nothing to note, nothing to clear */
	memset(w, 0, sizeof *w);
	SqlAnalysis one = *a; /* the statement alone */
	one.n_statements = 1;
	one.statements = st;
	cachepolicy_writes(c->rt->config, settings_search_path(c), c->user, &one, params, false, w);
	return w->all || w->n ? w : NULL;
}

/* Whether a text's statements must be told to txtrack one by one (their writes or transaction
 * effects matter): with the cache, or while settings of the transaction may be undone. */
static bool tx_detail_needed(const Client *c, const char *sql, size_t len)
{
	return c->rt->cache || c->undo_active || settings_might_change(sql, len);
}

/* A Query going to the server: its statements, then its ReadyForQuery. */
static void tx_note_query(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	CacheWrites w;
	if (avail < total) { /* streamed unread (larger than the read buffer) */
		txtrack_uncounted(&c->tx, c->rt->cache ? writes_all(&w, "a statement too large to analyze") : NULL);
		txtrack_end(&c->tx);
		return;
	}
	const char *sql = (const char *)msg + PROTO_HEADER_LEN;
	size_t len = strnlen(sql, total - PROTO_HEADER_LEN);
	if (!tx_detail_needed(c, sql, len)) {
		txtrack_uncounted(&c->tx, NULL);
		txtrack_end(&c->tx);
		return;
	}
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	if (a->parse_error) {
		txtrack_uncounted(&c->tx, c->rt->cache ? writes_all(&w, "a statement pgrelay cannot parse") : NULL);
	} else {
		for (size_t i = 0; i < a->n_statements; i++) {
			const SqlStatement *st = &a->statements[i];
			txtrack_statement(&c->tx, st->kind == SQL_KIND_TX ? st->tx : SQL_TX_NONE, st->tx_name,
					  statement_writes(c, a, i, NULL, &w));
		}
	}
	sqlclass_release(a);
	txtrack_end(&c->tx);
}

static void unnamed_forget(Client *c)
{
	free(c->unnamed_parse);
	c->unnamed_parse = NULL;
	c->unnamed_parse_len = 0;
	c->unnamed_unread = false;
}

/* A Parse going to the server: the unnamed statement's text is kept (when it matters) for its
 * Binds; a named statement's is in the client's statements. */
static void tx_note_parse(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	if (msg[PROTO_HEADER_LEN] != 0)
		return;
	unnamed_forget(c);
	if (avail < total) {
		c->unnamed_unread = true;
		return;
	}
	const uint8_t *key = msg + PROTO_HEADER_LEN + 1;
	size_t key_len = total - PROTO_HEADER_LEN - 1;
	const char *sql = (const char *)key;
	size_t len = strnlen(sql, key_len);
	if (!tx_detail_needed(c, sql, len))
		return;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	bool plain_read = !a->parse_error && a->n_statements == 1 &&
			  (a->statements[0].kind == SQL_KIND_READ || a->statements[0].kind == SQL_KIND_SESSION) &&
			  a->statements[0].n_functions == 0 && a->statements[0].set == SQL_SET_NONE;
	sqlclass_release(a);
	if (plain_read)
		return; /* nothing to write, nothing to the transaction */
	c->unnamed_parse = xmalloc(key_len);
	memcpy(c->unnamed_parse, key, key_len);
	c->unnamed_parse_len = key_len;
}

static void portal_clear(Client *c)
{
	free(c->portal.savepoint);
	free(c->portal.writes);
	memset(&c->portal, 0, sizeof c->portal);
}

/* A Bind going to the server: what executing the portal will write and do, from its statement's
 * text and the values. The unnamed portal's is kept for its Execute; a named portal's writes are
 * noted now (they count at the next ReadyForQuery and are never dropped). */
static void tx_note_bind(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	const char *portal, *name;
	size_t names_len;
	if (!bind_names(msg + PROTO_HEADER_LEN, avail - PROTO_HEADER_LEN, &portal, &name, &names_len))
		return;
	CacheWrites w;
	const CacheWrites *writes = NULL;
	SqlTxKind tx = SQL_TX_NONE;
	const char *savepoint = NULL;
	const uint8_t *key = NULL;
	size_t key_len = 0;
	bool unread = false;
	if (*name) {
		PreparedStmt *st = prepared_client_get(&c->stmts, name);
		if (st) {
			key = st->key;
			key_len = st->key_len;
		}
	} else {
		key = c->unnamed_parse;
		key_len = c->unnamed_parse_len;
		unread = c->unnamed_unread;
	}
	SqlAnalysis *a = NULL;
	if (unread && c->rt->cache) {
		writes = writes_all(&w, "a statement too large to analyze");
	} else if (key) {
		const char *sql = (const char *)key;
		a = sqlclass_analyze(&c->rt->sql, sql, strnlen(sql, key_len));
		if (a->parse_error) {
			writes = c->rt->cache ? writes_all(&w, "a statement pgrelay cannot parse") : NULL;
		} else if (a->n_statements == 1) {
			const SqlStatement *st = &a->statements[0];
			ProtoBindValues params;
			bool have = avail == total && cachepolicy_writes_need_values(a) &&
				    proto_parse_bind_values(msg + PROTO_HEADER_LEN + names_len, total - PROTO_HEADER_LEN - names_len,
							    key, key_len, &params);
			writes = statement_writes(c, a, 0, have ? &params : NULL, &w);
			if (st->kind == SQL_KIND_TX) {
				tx = st->tx;
				savepoint = st->tx_name;
			}
		}
	}
	if (*portal) {
		txtrack_note(&c->tx, writes);
	} else {
		portal_clear(c);
		c->portal.tx = (uint8_t)tx;
		c->portal.savepoint = savepoint ? xstrdup(savepoint) : NULL;
		if (writes) {
			c->portal.writes = xmalloc(sizeof *c->portal.writes);
			*c->portal.writes = *writes;
		}
	}
	sqlclass_release(a);
}

/* An Execute going to the server: one statement, the portal's. */
static void tx_note_execute(Client *c, const uint8_t *msg, size_t avail)
{
	bool unnamed = avail > PROTO_HEADER_LEN && msg[PROTO_HEADER_LEN] == 0;
	if (unnamed)
		txtrack_statement(&c->tx, (SqlTxKind)c->portal.tx, c->portal.savepoint, c->portal.writes);
	else
		txtrack_statement(&c->tx, SQL_TX_NONE, NULL, NULL); /* its writes were noted at its Bind */
}

/* What a request the client sends to its server (in order) writes and does to the transaction. */
static void tx_note_request(Client *c, Server *s, bool forwarded_sync, uint8_t type, const uint8_t *msg,
			    size_t total, size_t avail)
{
	CacheWrites w;
	const char *service = s->pool->service->name;
	if (!c->tx_service || strcmp(c->tx_service, service) != 0) {
		free(c->tx_service);
		c->tx_service = xstrdup(service);
	}
	switch (type) {
	case 'Q':
		tx_note_query(c, msg, total, avail);
		break;
	case 'P':
		tx_note_parse(c, msg, total, avail);
		break;
	case 'B':
		tx_note_bind(c, msg, total, avail);
		break;
	case 'E':
		tx_note_execute(c, msg, avail);
		break;
	case 'S':
		if (forwarded_sync)
			txtrack_end(&c->tx);
		break;
	case 'F': /* a function by OID: it may write anything */
		txtrack_note(&c->tx, c->rt->cache ? writes_all(&w, "a FunctionCall message") : NULL);
		txtrack_end(&c->tx);
		break;
	default:
		break;
	}
}

void statement_server_reply(Client *c, Server *s, uint8_t type, const uint8_t *body, size_t len)
{
	(void)s;
	switch (type) {
	case 'C': {
		bool rollback = len == sizeof("ROLLBACK") && memcmp(body, "ROLLBACK", sizeof("ROLLBACK")) == 0;
		settings_tx_event(c, txtrack_complete(&c->tx, rollback));
		break;
	}
	case 'I':
	case 's':
		txtrack_complete(&c->tx, false);
		break;
	case 'E':
		txtrack_error(&c->tx);
		settings_failed(c);
		break;
	default:
		break;
	}
}

CacheBump *statement_ready(Client *c, Server *s, char tx_status, void (*done)(void *owner), void *owner)
{
	CacheWrites bump;
	memset(&bump, 0, sizeof bump);
	bool any = txtrack_ready(&c->tx, tx_status, &bump);
	settings_ready(c, s, tx_status);
	Cache *cache = c->rt->cache;
	if (!any || !cache)
		return NULL;
	/* Before the client sees its ReadyForQuery, nobody may get a result this commit changed. */
	return cache_invalidate_shared(cache, s->pool->service->name, &bump, done, owner);
}

void statement_client_gone(Client *c)
{
	CacheWrites bump;
	memset(&bump, 0, sizeof bump);
	/* A COMMIT in flight may have reached the server: what the client may have written counts. */
	if (txtrack_abandon(&c->tx, &bump) && c->rt->cache && c->tx_service)
		cache_invalidate_shared(c->rt->cache, c->tx_service, &bump, NULL, NULL);
	unnamed_forget(c);
	portal_clear(c);
}

/*
 * An extended-protocol batch pgrelay can answer from the cache: [Parse of the unnamed statement]
 * Bind (unnamed portal) [Describe portal] Execute (all rows) Sync, all buffered.
 */
typedef struct CacheBatch {
	bool parse, describe;
	const uint8_t *parse_key; /* the Parse body after the name (PreparedStmt.key layout) */
	size_t parse_key_len;
	const uint8_t *bind_rest; /* the Bind body after the portal and statement names */
	size_t bind_rest_len;
	size_t total;             /* bytes of the whole batch */
} CacheBatch;

static bool batch_next(const uint8_t **p, const uint8_t *end, uint8_t *type, const uint8_t **body, size_t *len)
{
	if (end - *p < PROTO_HEADER_LEN)
		return false;
	uint32_t n = ((uint32_t)(*p)[1] << 24) | ((uint32_t)(*p)[2] << 16) | ((uint32_t)(*p)[3] << 8) | (*p)[4];
	if (n < 4 || (size_t)(end - *p) < (size_t)n + 1)
		return false;
	*type = (*p)[0];
	*body = *p + PROTO_HEADER_LEN;
	*len = n - 4;
	*p += n + 1;
	return true;
}

static bool cache_batch(Client *c, const uint8_t *msg, size_t avail, CacheBatch *b)
{
	const uint8_t *p = msg, *end = msg + avail, *body;
	size_t len;
	uint8_t type;
	memset(b, 0, sizeof *b);
	if (!batch_next(&p, end, &type, &body, &len))
		return false;
	if (type == 'P') {
		if (len < 2 || body[0] != 0) /* the unnamed statement only */
			return false;
		b->parse = true;
		b->parse_key = body + 1;
		b->parse_key_len = len - 1;
		if (!batch_next(&p, end, &type, &body, &len))
			return false;
	}
	if (type != 'B' || len < 2 || body[0] != 0) /* the unnamed portal */
		return false;
	const uint8_t *name = body + 1, *z = memchr(name, 0, len - 1);
	if (!z)
		return false;
	if (b->parse) {
		if (*name)
			return false;
	} else {
		PreparedStmt *st = *name ? prepared_client_get(&c->stmts, (const char *)name) : NULL;
		if (!st || st->sql_level)
			return false;
		b->parse_key = st->key;
		b->parse_key_len = st->key_len;
	}
	b->bind_rest = z + 1;
	b->bind_rest_len = len - (size_t)(z + 1 - body);
	if (!batch_next(&p, end, &type, &body, &len))
		return false;
	if (type == 'D') {
		if (len != 2 || body[0] != 'P' || body[1] != 0)
			return false;
		b->describe = true;
		if (!batch_next(&p, end, &type, &body, &len))
			return false;
	}
	if (type != 'E' || len != 5 || body[0] != 0 || memcmp(body + 1, "\0\0\0\0", 4) != 0)
		return false;
	if (!batch_next(&p, end, &type, &body, &len) || type != 'S')
		return false;
	b->total = (size_t)(p - msg);
	return true;
}

/* Answers the client's Query (or extended batch) with a cached reply. */
static RelayAction cache_serve(Client *c, uint8_t type, const CacheBatch *batch, size_t total, const uint8_t *reply,
			       size_t reply_len)
{
	Buf b;
	buf_init(&b);
	if (type != 'Q') {
		if (batch->parse) {
			proto_put_u8(&b, '1');
			proto_put_u32(&b, 4);
		}
		proto_put_u8(&b, '2');
		proto_put_u32(&b, 4);
	}
	buf_append(&b, reply, reply_len);
	proto_build_ready_for_query(&b, 'I');
	send_local(c, &b);
	buf_free(&b);
	if (type != 'Q')
		c->conn.skip_left = batch->total - total; /* the rest of the batch is answered */
	return RELAY_DROP;
}

/*
 * Before a message is routed: answer a cached Query (or extended batch) at once when L1 has it
 * (no parsing at all); otherwise note what it writes, and look it up properly: answer from the
 * cache, or wait for the identical one running (or for Redis), or start filling the cache with
 * this one. Returns 0 to go on as usual.
 */
static RelayAction cache_message(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	Cache *cache = c->rt->cache;
	const Config *cfg = c->rt->config;
	if (type != 'Q' && type != 'P' && type != 'B')
		return 0;
	if (c->cache_req)
		return RELAY_STOP; /* Redis has not answered yet */
	bool eligible = !c->server && c->tx_local == 'I' && !c->held_begin && !c->pinned && !c->settings_opaque &&
			c->pool_mode == CONFIG_POOL_TRANSACTION && !(c->cache_state && c->cache_state->fill.active) && cfg->cache.enabled;
	CacheBatch batch;
	CacheKey key;
	bool have_key = false;
	const char *search_path = settings_search_path(c);
	const uint8_t *reply;
	size_t reply_len;
	if (eligible && avail == total) {
		if (type == 'Q') {
			const char *text = (const char *)msg + PROTO_HEADER_LEN;
			cache_key_build(c, search_path, 'Q', text, strnlen(text, total - PROTO_HEADER_LEN), NULL, 0, false, &key);
			have_key = true;
		} else if (cache_batch(c, msg, (size_t)(c->conn.in + c->conn.in_len - msg), &batch)) {
			/* the whole batch is buffered (looked past this message) */
			cache_key_build(c, search_path, 'E', batch.parse_key, batch.parse_key_len, batch.bind_rest,
					batch.bind_rest_len, batch.describe, &key);
			have_key = true;
		}
		const char *service;
		if (have_key && cache_fast_hit(cache, c, &key, &reply, &reply_len, &service)) {
			stats_request_begin(c, type, msg, total, avail);
			stats_cache_hit(c, service);
			return cache_serve(c, type, &batch, total, reply, reply_len);
		}
	}
	if (!have_key)
		return 0;
	const char *sql;
	size_t len;
	RelayAction need = message_sql(c, type, msg, total, avail, &sql, &len);
	if (need || !sql)
		return need;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	RelayAction result = 0;
	const ConfigDatabase *db = config_find_database(cfg, c->database);
	if (!db)
		goto done;
	RouteResult r;
	router_route(cfg, db, search_path, c->user, a, &r);
	CacheDecision d;
	ProtoBindValues params;
	/* the values matter only for row keys given by parameters */
	bool have_params = type != 'Q' && a->n_statements == 1 && a->statements[0].n_key_eqs &&
			   proto_parse_bind_values(batch.bind_rest, batch.bind_rest_len, batch.parse_key,
						   batch.parse_key_len, &params);
	cachepolicy_decide(cfg, cache_catalog(cache, r.service->name), search_path, c->user, a, have_params ? &params : NULL,
			   &r, &d);
	if (!d.cacheable)
		goto done;
	stats_request_begin(c, type, msg, total, avail);
	switch (cache_lookup(cache, c, r.service->name, &d, &key, &reply, &reply_len)) {
	case CACHE_HIT:
		stats_cache_hit(c, r.service->name);
		result = cache_serve(c, type, &batch, total, reply, reply_len);
		break;
	case CACHE_WAIT:
	case CACHE_PENDING:
		result = RELAY_STOP; /* looked at again when the running one finishes / Redis answers */
		break;
	case CACHE_MISS:
	case CACHE_MISS_BYPASS:
		break;
	}
done:
	sqlclass_release(a);
	return result;
}

static bool target_is(const Target *t, const Server *s)
{
	/* A statement naming no table (COMMIT, SELECT 1, SET LOCAL, ...) belongs where it is. */
	if (!t->names_tables)
		return s->pool->replica < 0 || t->read_only;
	return s->pool->service == t->svc && (s->pool->replica < 0 || t->read_only) &&
	       (t->replica < 0 ? true : s->pool->replica >= 0);
}

void statement_retry(Client *c, Server *s)
{
	const ConfigService *svc = s->pool->service;
	balance_avoid(c->rt, svc, s->pool->replica, STATEMENT_AVOID_MS);
	if (!conn_unread(&c->conn, buf_head(&s->retry), buf_used(&s->retry))) {
		client_server_lost(c, "server connection lost");
		return;
	}
	log_info(c->name, "replica of service %s failed before answering: sending the read elsewhere", svc->name);
	txtrack_forget_requests(&c->tx); /* they are sent again */
	if (c->rt->cache)
		cache_fill_abort(c->rt->cache, c);
	c->server = NULL;
	c->pool = NULL;
	c->reroute = false;
	c->state = CL_IDLE;
	conn_start_reading(&c->conn);
	conn_kick(&c->conn);
}

void statement_reroute_waiter(Client *c)
{
	if (c->pool && c->pool->replica >= 0)
		balance_avoid(c->rt, c->pool->service, c->pool->replica, STATEMENT_AVOID_MS);
	c->pool = NULL;
	c->state = CL_IDLE;
	conn_start_reading(&c->conn);
	conn_kick(&c->conn);
}

void statement_release(Client *c)
{
	Server *s = c->server;
	if (!s)
		return;
	server_detach(s);
	server_release(s, c->pool_mode == CONFIG_POOL_SESSION || c->pinned);
	c->pool = NULL;
	if (c->state == CL_ACTIVE)
		c->state = CL_IDLE;
}

/* Sends the held BEGIN ahead of the statement that opened the transaction on its server. */
static void route_send_held_begin(Client *c, RelayCtx *rc)
{
	if (!c->held_begin || !c->server)
		return;
	Buf b;
	buf_init(&b);
	proto_build_query(&b, c->held_begin);
	relay_send(rc, buf_head(&b), buf_used(&b));
	buf_free(&b);
	pipeline_push(&c->server->pipe, PIPE_QUERY, PIPE_INTERNAL, 0);
	free(c->held_begin);
	c->held_begin = NULL;
	c->tx_local = 'I'; /* from here the server tracks the transaction */
}

/*
 * Transaction pooling with routing: decides, for a message that starts a statement, whether it
 * can go to the server the client holds, needs another one, or is answered here. Returns 0 to go
 * on forwarding to c->server.
 */
static RelayAction route_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				 size_t avail)
{
	const char *sql;
	size_t len;
	RelayAction need = message_sql(c, type, msg, total, avail, &sql, &len);
	if (need)
		return need;
	SqlAnalysis *a = sql ? sqlclass_analyze(&c->rt->sql, sql, len) : NULL;
	RelayAction result = 0;
	Target t;
	if (!c->server) {
		result = route_answer_locally(c, rc, type, msg, total, sql, len, a);
		if (result)
			goto done;
		if (!route_statement(c, rc, type, msg, a, &t)) {
			result = RELAY_DROP;
			goto done;
		}
		if (t.wait) {
			result = RELAY_STOP; /* looked at again when more of the batch arrives */
			goto done;
		}
		c->pool = pool_get(c->rt, t.svc, t.replica, c->user, c->auth_secret);
		if (!c->pool) {
			local_error(c, rc, type, SQLSTATE_INVALID_AUTHORIZATION, "pgrelay has no credentials for this service", NULL);
			result = RELAY_DROP;
			goto done;
		}
		c->state = CL_WAITING;
		c->wait_start_ms = runtime_now_ms();
		stats_wait_begin(c, type, msg, total, avail);
		pool_request_server(c->pool, c);
		result = c->state == CL_CLOSED ? RELAY_CLOSED : RELAY_STOP;
		goto done;
	}
	Server *s = c->server;
	if (c->tx_local == 'E') {
		/* pgrelay failed this transaction (and rolled it back on the server): answer here. */
		result = route_answer_locally(c, rc, type, msg, total, sql, len, a);
		if (!result)
			result = RELAY_DROP;
		goto done;
	}
	if (sql) {
		if (!route_statement(c, rc, type, msg, a, &t)) {
			result = RELAY_DROP;
			goto done;
		}
		if (t.wait) {
			result = RELAY_STOP;
			goto done;
		}
		bool runs_here = s->pool->service == t.svc && (s->pool->replica < 0 || t.read_only);
		if (!target_is(&t, s) && s->pipe.batch_open && !runs_here) {
			/* An extended-protocol batch is one implicit transaction on one server: a statement that
			 * cannot run where the batch began fails the batch (waiting for it to end would wait
			 * for a Sync that comes after this statement). */
			char m[300];
			if (s->pool->service != t.svc)
				snprintf(m, sizeof m, "this batch runs on service \"%s\"; a statement for service \"%s\" cannot join it",
					 s->pool->service->name, t.svc->name);
			else
				snprintf(m, sizeof m, "this batch began on a replica of service \"%s\" (its first statements only read, and "
						      "the client asked for their replies before sending the rest); a statement that "
						      "needs the primary cannot join it", t.svc->name);
			local_error(c, rc, type, SQLSTATE_FEATURE_NOT_SUPPORTED, m,
				    "send Sync before the statement, or send the whole batch up to its Sync at once");
			result = RELAY_DROP;
			goto done;
		}
		if (!target_is(&t, s) && !(s->pipe.batch_open && runs_here)) {
			bool idle = s->tx_status == 'I' && pipeline_idle(&s->pipe) && !c->held_begin;
			if (!pipeline_idle(&s->pipe)) {
				/* Let the server finish; the statement is looked at again once it is quiet. */
				c->reroute = true;
				result = RELAY_STOP;
				goto done;
			}
			if (idle && !c->pinned) {
				statement_release(c);
				result = RELAY_STOP;
				goto done;
			}
			if (s->pool->service != t.svc) {
				char m[300];
				snprintf(m, sizeof m, "this transaction runs on service \"%s\"; a statement for service \"%s\" cannot join it%s",
					 s->pool->service->name, t.svc->name, c->pinned ? " (the client is pinned to its connection)" : "");
				local_error(c, rc, type, SQLSTATE_FEATURE_NOT_SUPPORTED, m,
					    "end the transaction first: pgrelay keeps a transaction on one service");
				result = RELAY_DROP;
				goto done;
			}
			/* Same service, on a replica in a READ ONLY transaction: PostgreSQL refuses writes itself. */
		}
		if (!t.read_only && s->pool->replica < 0)
			s->wrote = true;
		/* SHOW ROUTES: counted here, where the statement goes to its server (routing may have
		 * looked at it before, while it waited for that server) */
		if (t.rule >= 0 && (size_t)t.rule < c->rt->n_route_matches)
			c->rt->route_matches[t.rule]++;
		route_send_held_begin(c, rc);
	}
done:
	sqlclass_release(a);
	return result;
}

/*
 * The named prepared statements a client holds are bounded in bytes
 * (proxy.max_client_prepared_memory): a Parse of a named statement, or a Query that may PREPARE,
 * that would pass the limit gets 54000 (PostgreSQL's backend would hold them in its own memory;
 * pgrelay holds every client's in one process).
 */
static bool prepared_over_budget(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
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
	local_error(c, rc, type, SQLSTATE_PROGRAM_LIMIT_EXCEEDED, m, "DEALLOCATE the statements no longer needed.");
	return true;
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
	if (c->pool_mode == CONFIG_POOL_TRANSACTION && avail < total) {
		/* Statements are looked at whole (one pass each), unless larger than the read buffer:
		 * those stream to the server unread. A Bind's names at least. */
		const char *portal, *name;
		size_t names_len;
		if ((type == 'Q' || type == 'P') && total <= c->rt->config->buffer_size)
			return RELAY_NEED_BODY;
		if (type == 'B' && !bind_names(msg + PROTO_HEADER_LEN, avail - PROTO_HEADER_LEN, &portal, &name, &names_len))
			return RELAY_NEED_BODY;
		if (type == 'E')
			return RELAY_NEED_BODY; /* its portal name */
	}
	if (c->skip_to_sync) {
		/* pgrelay answered this batch with an error: PostgreSQL skips to Sync, so does it. */
		if (type == 'S') {
			c->skip_to_sync = false;
			c->unnamed_local = c->portal_local = LOCAL_NONE;
			if (c->server && c->server->pipe.batch_open) {
				/* the server's part of the batch ends here too (it failed: see local_error) */
				if (server_expect(c->server, PIPE_SYNC, 0, 0))
					tx_note_request(c, c->server, true, type, msg, total, avail);
				return RELAY_FORWARD;
			}
			client_send_simple(c, 'Z', c->server && c->tx_local == 'I' ? c->server->tx_status : c->tx_local);
		}
		return RELAY_DROP;
	}
	if ((type == 'P' || type == 'Q') && statement_tracking(c) && prepared_over_budget(c, rc, type, msg, total, avail))
		return RELAY_DROP;
	if (c->rt->cache) {
		RelayAction cached = cache_message(c, type, msg, total, avail);
		if (cached)
			return cached;
	}
	if (!c->server) {
		RelayAction local = client_answer_without_server(c, type, msg, total, avail);
		if (local)
			return local;
	}
	if (routing_on(c)) {
		RelayAction routed = route_message(c, rc, type, msg, total, avail);
		if (routed)
			return routed;
	} else if (!c->server) {
		/* First message of a transaction: get a server, then look at this message again. */
		const ConfigDatabase *db = config_find_database(c->rt->config, c->database);
		c->pool = db ? pool_get(c->rt, db->service, -1, c->user, c->auth_secret) : NULL;
		if (!c->pool) {
			client_fatal(c, SQLSTATE_INVALID_CATALOG_NAME, "database \"%s\" is no longer served by pgrelay", c->database);
			return RELAY_CLOSED;
		}
		c->state = CL_WAITING;
		c->wait_start_ms = runtime_now_ms();
		stats_wait_begin(c, type, msg, total, avail);
		pool_request_server(c->pool, c);
		return c->state == CL_CLOSED ? RELAY_CLOSED : RELAY_STOP;
	}
	Server *s = c->server;
	stats_request_begin(c, type, msg, total, avail);
	if (s->retry_ok) {
		/* A read on a replica: keep the request until the first reply byte, to send it again
		 * elsewhere if the replica dies first. */
		if (avail == total && buf_used(&s->retry) + total <= STATEMENT_RETRY_MAX)
			buf_append(&s->retry, msg, total);
		else
			server_forget_retry(s);
	}
	/* Settings lost to RESET / DISCARD ALL come back before the next request. */
	if (!server_params_synced(s, c) && s->tx_status == 'I' && pipeline_idle(&s->pipe))
		server_sync_params(s, c, rc);
	if (c->pool_mode == CONFIG_POOL_TRANSACTION) {
		track_session(c, s, type, msg, total, avail);
		if (type != 'S')
			tx_note_request(c, s, false, type, msg, total, avail);
	}
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
	case 'S':
		if (server_expect(s, PIPE_SYNC, 0, 0) && c->pool_mode == CONFIG_POOL_TRANSACTION)
			tx_note_request(c, s, true, type, msg, total, avail);
		break;
	case 'Q':
		if (c->pool_mode == CONFIG_POOL_TRANSACTION)
			return client_query_msg(c, rc, msg, total, avail);
		server_expect(s, PIPE_QUERY, 0, 0);
		break;
	case 'F': server_expect(s, PIPE_FUNCTION, 0, 0); break;
	case 'c': case 'f': server_expect(s, PIPE_COPY_END, 0, 0); break;
	case 'H':
		s->pipe.batch_open = true;
		server_client_flushed(s);
		break;
	default: /* 'd' */
		break;
	}
	return RELAY_FORWARD;
}

