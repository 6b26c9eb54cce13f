/*
 * statement — what pgrelay does with each message a logged-in client sends: which server gets it
 * (asking the pool at the start of each transaction; routing by the tables a statement names,
 * replicas for reads), and a read moved to another replica when its replica fails before
 * answering. The rest of a message's handling is in statement_local (answers without a server),
 * statement_names (prepared-statement names), statement_tx (the transaction's writes),
 * statement_cache (the result cache) and settings (SET / RESET).
 */
#include "statement.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "cache.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "router.h"
#include "server.h"
#include "settings.h"
#include "statement_cache.h"
#include "statement_local.h"
#include "statement_names.h"
#include "statement_tx.h"
#include "sqlclass.h"
#include "stats.h"
#include "txtrack.h"
#include "xalloc.h"

#define STATEMENT_RETRY_MAX (64 * 1024) /* a read larger than this is not kept for a retry */
#define STATEMENT_AVOID_MS 5000         /* a replica that failed gets no reads for this long */

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
			if (statement_names_sql(c, p[0], p, (size_t)n + 1, (size_t)n + 1, &sql, &len) != 0)
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
		statement_local_error(c, rc, type, SQLSTATE_INVALID_CATALOG_NAME, "this database was removed from pgrelay's configuration", NULL);
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
		statement_local_error(c, rc, type, SQLSTATE_FEATURE_NOT_SUPPORTED, m,
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

static bool target_is(const Target *t, const Server *s)
{
	/* A statement naming no table (COMMIT, SELECT 1, SET LOCAL, ...) belongs where it is. */
	if (!t->names_tables)
		return s->pool->replica < 0 || t->read_only;
	return s->pool->service == t->svc && (s->pool->replica < 0 || t->read_only) &&
	       (t->replica < 0 ? true : s->pool->replica >= 0);
}

bool statement_retry(Client *c, Server *s)
{
	const ConfigService *svc = s->pool->service;
	balance_avoid(c->rt, svc, s->pool->replica, STATEMENT_AVOID_MS);
	const Buf *retry = server_retry_request(s);
	if (!conn_unread(&c->conn, buf_head(retry), buf_used(retry)))
		return false;
	log_info(c->name, "replica of service %s failed before answering: sending the read elsewhere", svc->name);
	txtrack_forget_requests(&c->tx); /* they are sent again */
	if (c->rt->cache && c->cache)
		cache_fill_abort(c->rt->cache, c->cache);
	c->server = NULL;
	c->pool = NULL;
	c->reroute = false;
	c->state = CL_IDLE;
	conn_start_reading(&c->conn);
	conn_kick(&c->conn);
	return true;
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
	c->server = NULL;
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

/* The client waits for a server of c->pool; the message is looked at again once it has one. */
static RelayAction wait_for_server(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	c->state = CL_WAITING;
	c->wait_start_ms = loop_now_ms();
	stats_wait_begin(c, type, msg, total, avail);
	pool_request_server(c->pool, &c->wait);
	return c->state == CL_CLOSED ? RELAY_CLOSED : RELAY_STOP;
}

/* A statement of a client without a server: answered here, or the pool of its target is asked for
 * a server. */
static RelayAction route_without_server(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
					size_t avail, const char *sql, size_t len, const SqlAnalysis *a)
{
	RelayAction result = statement_local_answer(c, rc, type, msg, total, sql, len, a);
	if (result)
		return result;
	Target t;
	if (!route_statement(c, rc, type, msg, a, &t))
		return RELAY_DROP;
	if (t.wait)
		return RELAY_STOP; /* looked at again when more of the batch arrives */
	c->pool = pool_get(c->rt, t.svc, t.replica, c->user, c->auth_secret);
	if (!c->pool) {
		statement_local_error(c, rc, type, SQLSTATE_INVALID_AUTHORIZATION, "pgrelay has no credentials for this service",
				      NULL);
		return RELAY_DROP;
	}
	return wait_for_server(c, type, msg, total, avail);
}

/* A statement whose target t is not the server the client holds, inside an extended-protocol
 * batch or a transaction there: refused with a message saying why. */
static RelayAction refuse_other_target(Client *c, RelayCtx *rc, uint8_t type, const Target *t, bool batch)
{
	const Server *s = c->server;
	char m[300];
	const char *hint;
	if (batch) {
		/* An extended-protocol batch is one implicit transaction on one server: a statement that
		 * cannot run where the batch began fails the batch (waiting for it to end would wait
		 * for a Sync that comes after this statement). */
		if (s->pool->service != t->svc)
			snprintf(m, sizeof m, "this batch runs on service \"%s\"; a statement for service \"%s\" cannot join it",
				 s->pool->service->name, t->svc->name);
		else
			snprintf(m, sizeof m, "this batch began on a replica of service \"%s\" (its first statements only read, and "
					      "the client asked for their replies before sending the rest); a statement that "
					      "needs the primary cannot join it", t->svc->name);
		hint = "send Sync before the statement, or send the whole batch up to its Sync at once";
	} else {
		snprintf(m, sizeof m, "this transaction runs on service \"%s\"; a statement for service \"%s\" cannot join it%s",
			 s->pool->service->name, t->svc->name, c->pinned ? " (the client is pinned to its connection)" : "");
		hint = "end the transaction first: pgrelay keeps a transaction on one service";
	}
	statement_local_error(c, rc, type, SQLSTATE_FEATURE_NOT_SUPPORTED, m, hint);
	return RELAY_DROP;
}

/* A statement of a client that holds server s: it runs there (0), or s is let go first to route it
 * elsewhere, or it is refused. */
static RelayAction route_with_server(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, const SqlAnalysis *a)
{
	Server *s = c->server;
	Target t;
	if (!route_statement(c, rc, type, msg, a, &t))
		return RELAY_DROP;
	if (t.wait)
		return RELAY_STOP;
	bool runs_here = s->pool->service == t.svc && (s->pool->replica < 0 || t.read_only);
	if (!target_is(&t, s) && s->pipe.batch_open && !runs_here)
		return refuse_other_target(c, rc, type, &t, true);
	if (!target_is(&t, s) && !(s->pipe.batch_open && runs_here)) {
		bool idle = s->tx_status == 'I' && pipeline_idle(&s->pipe) && !c->held_begin;
		if (!pipeline_idle(&s->pipe)) {
			/* Let the server finish; the statement is looked at again once it is quiet. */
			c->reroute = true;
			return RELAY_STOP;
		}
		if (idle && !c->pinned) {
			statement_release(c);
			return RELAY_STOP;
		}
		if (s->pool->service != t.svc)
			return refuse_other_target(c, rc, type, &t, false);
		/* Same service, on a replica in a READ ONLY transaction: PostgreSQL refuses writes itself. */
	}
	if (!t.read_only && s->pool->replica < 0)
		s->wrote = true;
	/* SHOW ROUTES: counted here, where the statement goes to its server (routing may have
	 * looked at it before, while it waited for that server) */
	if (t.rule >= 0 && (size_t)t.rule < c->rt->n_route_matches)
		c->rt->route_matches[t.rule]++;
	route_send_held_begin(c, rc);
	return 0;
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
	RelayAction need = statement_names_sql(c, type, msg, total, avail, &sql, &len);
	if (need)
		return need;
	SqlAnalysis *a = sql ? sqlclass_analyze(&c->rt->sql, sql, len) : NULL;
	RelayAction result = 0;
	if (!c->server) {
		result = route_without_server(c, rc, type, msg, total, avail, sql, len, a);
	} else if (c->tx_local == 'E') {
		/* pgrelay failed this transaction (and rolled it back on the server): answer here. */
		result = statement_local_answer(c, rc, type, msg, total, sql, len, a);
		if (!result)
			result = RELAY_DROP;
	} else if (sql) {
		result = route_with_server(c, rc, type, msg, a);
	}
	sqlclass_release(a);
	return result;
}

/* pgrelay answered this batch with an error: PostgreSQL skips to Sync, so does it. */
static RelayAction skip_to_sync(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	if (type != 'S')
		return RELAY_DROP;
	c->skip_to_sync = false;
	statement_local_batch_end(c);
	if (c->server && c->server->pipe.batch_open) {
		/* the server's part of the batch ends here too (it failed: see statement_local_error) */
		if (server_expect(c->server, PIPE_SYNC, 0, 0))
			statement_tx_note_request(c, c->server, true, type, msg, total, avail);
		return RELAY_FORWARD;
	}
	statement_local_simple(c, 'Z', c->server && c->tx_local == 'I' ? c->server->tx_status : c->tx_local);
	return RELAY_DROP;
}

/* Without routing: the first message of a transaction gets a server of the database's service,
 * then is looked at again. */
static RelayAction wait_for_database_server(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	const ConfigDatabase *db = config_find_database(c->rt->config, c->database);
	c->pool = db ? pool_get(c->rt, db->service, -1, c->user, c->auth_secret) : NULL;
	if (!c->pool) {
		char m[300];
		snprintf(m, sizeof m, "database \"%s\" is no longer served by pgrelay", c->database);
		c->end_sqlstate = SQLSTATE_INVALID_CATALOG_NAME;
		c->end_message = xstrdup(m);
		return RELAY_STOP;
	}
	return wait_for_server(c, type, msg, total, avail);
}

/* What the server will answer to a message forwarded to it (the pipeline's expectations), and
 * the forwarding itself: prepared names renamed, simple queries looked into. */
static RelayAction forward_to_server(Client *c, RelayCtx *rc, Server *s, uint8_t type, const uint8_t *msg,
				     size_t total, size_t avail)
{
	switch (type) {
	case 'P':
	case 'B':
	case 'D':
	case 'C':
		if (statement_names_tracking(c))
			return statement_names_message(c, rc, type, msg, total, avail);
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
			statement_tx_note_request(c, s, true, type, msg, total, avail);
		break;
	case 'Q':
		if (c->pool_mode == CONFIG_POOL_TRANSACTION)
			return statement_names_query(c, rc, msg, total, avail);
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

RelayAction statement_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				     size_t avail)
{
	if (c->pool_mode == CONFIG_POOL_TRANSACTION && avail < total) {
		/* Statements are looked at whole (one pass each), unless larger than the read buffer:
		 * those stream to the server unread. A Bind's names at least. */
		const char *portal, *name;
		size_t names_len;
		if ((type == 'Q' || type == 'P') && total <= c->rt->config->buffer_size)
			return RELAY_NEED_BODY;
		if (type == 'B' && !proto_bind_names(msg + PROTO_HEADER_LEN, avail - PROTO_HEADER_LEN, &portal, &name, &names_len))
			return RELAY_NEED_BODY;
		if (type == 'E')
			return RELAY_NEED_BODY; /* its portal name */
	}
	if (c->skip_to_sync)
		return skip_to_sync(c, type, msg, total, avail);
	if ((type == 'P' || type == 'Q') && statement_names_tracking(c) && statement_names_over_budget(c, rc, type, msg, total, avail))
		return RELAY_DROP;
	if (c->rt->cache) {
		RelayAction cached = statement_cache_message(c, type, msg, total, avail);
		if (cached)
			return cached;
	}
	if (!c->server && statement_names_tracking(c)) {
		RelayAction local = statement_local_without_server(c, type, msg, total, avail);
		if (local)
			return local;
	}
	if (routing_on(c)) {
		RelayAction routed = route_message(c, rc, type, msg, total, avail);
		if (routed)
			return routed;
	} else if (!c->server) {
		return wait_for_database_server(c, type, msg, total, avail);
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
	if (!server_params_synced(s, &c->params) && s->tx_status == 'I' && pipeline_idle(&s->pipe))
		server_sync_params(s, &c->params, rc);
	if (c->pool_mode == CONFIG_POOL_TRANSACTION) {
		settings_track_message(c, s, type, msg, total, avail);
		if (type != 'S')
			statement_tx_note_request(c, s, false, type, msg, total, avail);
	}
	return forward_to_server(c, rc, s, type, msg, total, avail);
}
