/*
 * server — the PostgreSQL side of pgrelay (see server.h for what it owns).
 *
 * State machine:
 *   CONNECTING --connected--> LOGIN --ReadyForQuery--> IDLE (pool)
 *   IDLE --pool lends it--> ACTIVE --released at ReadyForQuery 'I'--> IDLE
 *   ACTIVE --session ends--> RESETTING --ReadyForQuery of the reset query--> IDLE
 *   any --error, EOF, timeout, unknown state--> CLOSED (never reused)
 *
 * Request bookkeeping lives in the connection's Pipeline (pipeline.c): every request sent is an
 * entry matched against the replies, so pgrelay knows whose reply is arriving (its own requests'
 * replies are swallowed, requests it answered itself get their reply when due) and when nothing
 * is in flight. Named prepared statements (prepared.c) are re-created on whichever connection a
 * client lands on.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "balance.h"
#include "cancel_conn.h"
#include "health.h"
#include "log.h"
#include "pool_types.h"
#include "proto.h"
#include "relay.h"

static void server_on_readable(void *owner);
static void server_on_drained(void *owner);
static void server_on_failed(void *owner, const char *why);
static void server_on_tls_ready(void *owner, const char *error);

static const ConnHandlers server_handlers = {
	.readable = server_on_readable,
	.drained = server_on_drained,
	.failed = server_on_failed,
	.tls_ready = server_on_tls_ready,
};

const char *server_state_name(ServerState st)
{
	switch (st) {
	case SV_CONNECTING: return "connecting";
	case SV_LOGIN: return "login";
	case SV_IDLE: return "idle";
	case SV_ACTIVE: return "active";
	case SV_RESETTING: return "resetting";
	case SV_CLOSED: return "closed";
	}
	return "?";
}

void server_ready_resume(Server *s)
{
	if (!s->ready_held)
		return;
	s->ready_held = false;
	conn_kick(&s->conn);
}

/* The session no longer holds a ReadyForQuery back (the server leaves it). */
static void server_drop_hold(Server *s)
{
	if (s->ready_held && s->session)
		s->ev->hold_dropped(s->session, s);
	s->ready_held = false;
	s->ready_noted = false;
}

const Buf *server_retry_request(const Server *s) { return &s->retry; }

/* ---- requests and replies ---- */

/* The oldest error kept for a PIPE_FAILS request: appended to out (unless NULL) and forgotten. */
static void fail_error_pop(Server *s, Buf *out)
{
	if (buf_used(&s->fail_errors) < PROTO_HEADER_LEN)
		return;
	const uint8_t *m = buf_head(&s->fail_errors);
	size_t total = 1 + ((size_t)m[1] << 24 | (size_t)m[2] << 16 | (size_t)m[3] << 8 | m[4]);
	if (total > buf_used(&s->fail_errors))
		total = buf_used(&s->fail_errors);
	if (out)
		buf_append(out, m, total);
	buf_consume(&s->fail_errors, total);
}

bool server_fail_request(Server *s, RelayCtx *rc, bool simple, const Buf *error)
{
	Buf b;
	buf_init(&b);
	if (simple) {
		proto_build_query(&b, "pgrelay reports an error"); /* a syntax error, whatever the state */
	} else {
		size_t off = proto_begin(&b, 'E');
		proto_put_str(&b, "pgrelay: no such portal"); /* 34000, or skipped if the batch failed */
		proto_put_u32(&b, 0);
		proto_end(&b, off);
	}
	relay_send(rc, buf_head(&b), buf_used(&b));
	buf_free(&b);
	if (!pipeline_push(&s->pipe, simple ? PIPE_QUERY : PIPE_EXECUTE, PIPE_FAILS, 0))
		return false; /* the batch failed already: the server ignores it, as it ignores the client's */
	buf_append(&s->fail_errors, buf_head(error), buf_used(error));
	return true;
}

bool server_is_quiet(const Server *s) { return s->tx_status == 'I' && pipeline_idle(&s->pipe); }

static void build_simple_reply(Buf *b, char type)
{
	size_t off = proto_begin(b, type);
	proto_end(b, off);
}

/* Sends the replies held back for a retryable read to the client (in order with what the server
 * relay forwards when rc is given) and gives up the retry. */
static void server_flush_held(Server *s, RelayCtx *rc)
{
	if (buf_used(&s->held) && s->session) {
		if (rc)
			relay_send(rc, buf_head(&s->held), buf_used(&s->held));
		else
			conn_send(s->peer, buf_head(&s->held), buf_used(&s->held));
	}
	buf_reset(&s->held);
	s->retry_ok = false;
	s->replies_flow = false;
	buf_reset(&s->retry);
}

/* Produces the replies of SYNTHETIC entries that are now due, into the client's stream. */
static void server_emit_synthetic(Server *s, RelayCtx *rc)
{
	PipeEntry e;
	Buf b;
	buf_init(&b);
	while (pipeline_pop_synthetic(&s->pipe, &e))
		build_simple_reply(&b, e.kind == PIPE_PARSE ? '1' : '3');
	if (buf_used(&b))
		server_flush_held(s, rc); /* the client sees a reply: what came before goes first */
	if (buf_used(&b) && s->session) {
		if (rc)
			relay_send(rc, buf_head(&b), buf_used(&b));
		else
			conn_send(s->peer, buf_head(&b), buf_used(&b));
	}
	buf_free(&b);
}

static bool synthetic_due(const Server *s)
{
	const PipeEntry *h = pipeline_head(&s->pipe);
	return h && (h->flags & PIPE_SYNTHETIC);
}

bool server_expect(Server *s, PipeKind kind, uint8_t flags, uint32_t tag)
{
	if (!pipeline_push(&s->pipe, kind, flags, tag))
		return false;
	if (flags & PIPE_SYNTHETIC) {
		if (synthetic_due(s))
			server_emit_synthetic(s, NULL);
		s->rt->stmts.parses_avoided += kind == PIPE_PARSE;
	}
	return true;
}

void server_ensure_prepared(Server *s, RelayCtx *rc, const PreparedStmt *st)
{
	if (!prepared_server_has(&s->stmts, st->id))
		server_send_parse(s, rc, st, false);
}

void server_send_parse(Server *s, RelayCtx *rc, const PreparedStmt *st, bool for_client)
{
	server_track_prepared(s, rc, st->id);
	relay_send(rc, st->create_msg, st->create_len);
	pipeline_push(&s->pipe, st->sql_level ? PIPE_QUERY : PIPE_PARSE, for_client ? 0 : PIPE_INTERNAL, st->id);
	s->rt->stmts.parses_sent++;
}

void server_track_prepared(Server *s, RelayCtx *rc, uint32_t id)
{
	uint32_t evicted = 0;
	if (prepared_server_add(&s->stmts, id, (size_t)s->pool->config->max_prepared_statements, &evicted)) {
		char name[24];
		prepared_server_name(evicted, name);
		Buf b;
		buf_init(&b);
		size_t off = proto_begin(&b, 'C');
		proto_put_u8(&b, 'S');
		proto_put_str(&b, name);
		proto_end(&b, off);
		relay_send(rc, buf_head(&b), buf_used(&b));
		buf_free(&b);
		pipeline_push(&s->pipe, PIPE_CLOSE, PIPE_INTERNAL, evicted);
		s->rt->stmts.evictions++;
	}
}

/* An entry left the pipeline without taking effect: undo what pgrelay assumed. */
static void server_pipe_end(void *ctx, const PipeEntry *e, PipeEnd how)
{
	Server *s = ctx;
	if ((e->flags & PIPE_FAILS) && how == PIPE_END_SKIPPED)
		fail_error_pop(s, NULL); /* the batch had failed already: PostgreSQL reports one error */
	if (!e->tag)
		return;
	if (how == PIPE_END_DONE) {
		if (e->kind == PIPE_PARSE && !(e->flags & PIPE_SYNTHETIC))
			prepared_mark_validated(&s->rt->stmts, e->tag);
		return;
	}
	if (e->kind == PIPE_PARSE) {
		if (!(e->flags & PIPE_SYNTHETIC))
			prepared_server_remove(&s->stmts, e->tag); /* not created on the server */
		if (!(e->flags & PIPE_INTERNAL) && s->session)
			s->ev->statement_gone(s->session, e->tag);
	} else if (e->kind == PIPE_CLOSE && (e->flags & PIPE_INTERNAL) && how == PIPE_END_SKIPPED) {
		uint32_t unused;
		prepared_server_add(&s->stmts, e->tag, 0, &unused); /* still prepared there */
	}
}

/* ---- life cycle ---- */

static void server_on_timer(void *arg);
static void server_on_connected(evutil_socket_t fd, short what, void *arg);
static void server_start_connect(Server *s);

/* ms > 0: the connect/login timeout fires in ms; 0: stopped. */
static void server_set_timer(Server *s, int64_t ms)
{
	if (ms > 0)
		loop_timer_start(&s->timer, ms);
	else
		loop_timer_stop(&s->timer);
}

/* Login failed or the connection broke before login: tell the pool, then close. */
static void server_login_failed(Server *s, const char *sqlstate, const char *message)
{
	s->rt->stats.servers_failed++;
	log_warning(s->name, "login to %s:%d failed: %s", s->pool->backend->host, s->pool->backend->port, message);
	s->owner->failed(s->pool, s, sqlstate, message);
	server_close(s, false, "login failed");
}

static void server_dns_done(int err, struct evutil_addrinfo *res, void *arg)
{
	Server *s = arg;
	if (s->state == SV_CLOSED) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	if (err || !res) {
		char msg[256];
		snprintf(msg, sizeof(msg), "could not resolve host \"%s\": %s", s->pool->backend->host,
			 evutil_gai_strerror(err));
		if (res)
			evutil_freeaddrinfo(res);
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
		return;
	}
	memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
	s->addr_len = (socklen_t)res->ai_addrlen;
	evutil_freeaddrinfo(res);
	server_start_connect(s);
}

Server *server_launch(Pool *pool, const ServerOwnerOps *owner)
{
	Runtime *rt = pool->rt;
	Server *s = calloc(1, sizeof(*s));
	if (!s)
		abort();
	s->rt = rt;
	s->base = rt->base;
	s->id = ++rt->next_server_id;
	snprintf(s->name, sizeof(s->name), "S-%llu", (unsigned long long)s->id);
	s->pool = pool;
	s->owner = owner;
	s->state = SV_CONNECTING;
	s->tx_status = 'I';
	s->conn.fd = -1;
	s->created_ms = s->last_used_ms = loop_now_ms();
	params_init(&s->params);
	params_init(&s->login_params);
	pipeline_init(&s->pipe);
	prepared_server_init(&s->stmts);
	buf_init(&s->retry);
	buf_init(&s->held);
	buf_init(&s->fail_errors);
	loop_timer_init(&s->timer, rt->base, server_on_timer, s);
	list_node_init(&s->pool_node);
	s->owner->moved(pool, s);
	rt->stats.servers_opened++;
	server_set_timer(s, pool->service->pool.connect_timeout_ms);

	const ConfigBackend *be = pool->backend;
	log_debug(s->name, "connecting to %s:%d for pool %s", be->host, be->port, pool->name);
	if (be->host[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&s->addr;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", be->host, be->port);
		s->addr_len = sizeof(*un);
		server_start_connect(s);
		return s;
	}
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV};
	char port[16];
	snprintf(port, sizeof(port), "%d", be->port);
	struct evutil_addrinfo *res = NULL;
	if (evutil_getaddrinfo(be->host, port, &hints, &res) == 0 && res) {
		memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
		s->addr_len = (socklen_t)res->ai_addrlen;
		evutil_freeaddrinfo(res);
		server_start_connect(s);
		return s;
	}
	hints.ai_flags = EVUTIL_AI_NUMERICSERV | EVUTIL_AI_ADDRCONFIG;
	evdns_getaddrinfo(rt->dns, be->host, port, &hints, server_dns_done, s);
	return s;
}

static void server_start_connect(Server *s)
{
	if (s->state != SV_CONNECTING)
		return;
	int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		/* Reported from the loop, so the caller is never re-entered. */
		s->connect_errno = errno ? errno : EIO;
		loop_timer_fire_soon(&s->timer);
		return;
	}
	if (s->addr.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
	const Config *cfg = s->pool->config;
	conn_init(&s->conn, s->base, fd, cfg->buffer_size, cfg->max_message_size, &server_handlers, s);
	conn_use_spares(&s->conn, &s->rt->read_buffers);
	if (connect(fd, (struct sockaddr *)&s->addr, s->addr_len) < 0 && errno != EINPROGRESS) {
		s->connect_errno = errno;
		loop_timer_fire_soon(&s->timer);
		return;
	}
	event_assign(&s->ev_connect, s->base, fd, EV_WRITE, server_on_connected, s);
	event_add(&s->ev_connect, NULL);
}

static void server_send_startup(Server *s)
{
	Pool *p = s->pool;
	const ConfigBackend *be = p->backend;
	const char *names[5], *values[5];
	size_t n = 0;
	char timeout[32];
	names[n] = "user";
	values[n++] = p->server_user;
	names[n] = "database";
	values[n++] = be->dbname;
	if (p->config->application_name && *p->config->application_name) {
		names[n] = "application_name";
		values[n++] = p->config->application_name;
	}
	if (p->service->pool.statement_timeout_ms > 0) {
		snprintf(timeout, sizeof(timeout), "%lld", (long long)p->service->pool.statement_timeout_ms);
		names[n] = "statement_timeout";
		values[n++] = timeout;
	}
	Buf b;
	buf_init(&b);
	proto_build_startup(&b, names, values, n);
	conn_send_buf(&s->conn, &b);
	buf_free(&b);
}

static void server_on_connected(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Server *s = arg;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		char msg[160];
		snprintf(msg, sizeof(msg), "could not connect to server: %s", strerror(err));
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
		return;
	}
	s->state = SV_LOGIN;
	s->owner->moved(s->pool, s);
	conn_start_reading(&s->conn);
	if (s->pool->tls_ctx && s->addr.ss_family != AF_UNIX) {
		/* Ask for TLS first; the answer is one byte, 'S' or 'N'. */
		Buf b;
		buf_init(&b);
		size_t off = proto_begin(&b, 0);
		proto_put_u32(&b, PROTO_CODE_SSL);
		proto_end(&b, off);
		conn_send_buf(&s->conn, &b);
		buf_free(&b);
		s->tls_phase = SV_TLS_ASKED;
		return;
	}
	server_send_startup(s);
}

/* The one-byte answer to SSLRequest. Returns false if the server was closed. */
static bool server_tls_answer(Server *s)
{
	Conn *cn = &s->conn;
	if (cn->in_pos == cn->in_len)
		return true;
	uint8_t answer = cn->in[cn->in_pos++];
	ConfigTlsMode mode = s->pool->service->tls.mode;
	if (answer == 'S') {
		if (cn->in_pos < cn->in_len) {
			server_login_failed(s, SQLSTATE_PROTOCOL_VIOLATION, "server sent unencrypted data after accepting TLS");
			return false;
		}
		conn_compact(cn);
		s->tls_phase = SV_TLS_HANDSHAKE;
		const char *host = s->pool->backend->host;
		if (!conn_tls_start(cn, s->pool->tls_ctx, false, host)) {
			server_login_failed(s, SQLSTATE_CANNOT_CONNECT, "cannot start TLS towards the server");
			return false;
		}
		return true;
	}
	if (answer == 'N' && mode == CONFIG_TLS_PREFER) {
		s->tls_phase = SV_TLS_NONE;
		conn_compact(cn);
		server_send_startup(s);
		return true;
	}
	char msg[200];
	if (answer == 'N')
		snprintf(msg, sizeof msg, "server does not accept TLS, but services.%s.tls.mode is %s",
			 s->pool->service->name, config_tls_mode_name(mode));
	else
		snprintf(msg, sizeof msg, "server answered the TLS request with an unexpected byte 0x%02x", answer);
	server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
	return false;
}

static void server_on_tls_ready(void *owner, const char *error)
{
	Server *s = owner;
	if (error) {
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, error);
		return;
	}
	s->tls = true;
	s->tls_phase = SV_TLS_NONE;
	log_debug(s->name, "TLS to the server established (%s)", SSL_get_version(s->conn.ssl));
	server_send_startup(s);
}

static void server_on_timer(void *arg)
{
	Server *s = arg;
	if (s->connect_errno) {
		char msg[160];
		snprintf(msg, sizeof(msg), "could not connect to server: %s", strerror(s->connect_errno));
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
		return;
	}
	if (s->state == SV_CONNECTING || s->state == SV_LOGIN) {
		char msg[160];
		snprintf(msg, sizeof(msg), "could not connect to server within connect_timeout (%lld ms)",
			 (long long)s->pool->service->pool.connect_timeout_ms);
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
	}
}

static void server_free_deferred(LoopDeferred *d);

void server_close(Server *s, bool cancel, const char *reason)
{
	if (s->state == SV_CLOSED)
		return;
	Runtime *rt = s->rt;
	bool quiet = server_is_quiet(s);
	/* Part of a reply message already went to the client: any message pgrelay sent it now would be
	 * read as the rest of that one (a broken stream, or worse a wrong row). */
	bool mid_message = s->conn.fwd_left > 0;
	log_info(s->name, "closing server connection (%s, %s): %s", s->pool->name, server_state_name(s->state), reason);
	if (cancel && !quiet && s->be_pid && (s->state == SV_ACTIVE || s->state == SV_RESETTING))
		cancel_conn_send(rt, (struct sockaddr *)&s->addr, s->addr_len, s->be_pid, s->be_key, s->name);
	if ((s->state == SV_IDLE || s->state == SV_ACTIVE) && quiet && conn_queued(&s->conn) == 0) {
		Buf b;
		buf_init(&b);
		proto_build_terminate(&b);
		conn_send_buf(&s->conn, &b);
		buf_free(&b);
	}
	server_drop_hold(s);
	void *session = s->session;
	const ServerEvents *ev = s->ev;
	s->session = NULL;
	s->peer = NULL;
	s->state = SV_CLOSED;
	if (event_initialized(&s->ev_connect))
		event_del(&s->ev_connect);
	loop_timer_release(&s->timer);
	conn_close(&s->conn);
	s->owner->removed(s->pool, s);
	if (s->scram_active) {
		scram_client_free(&s->scram);
		s->scram_active = false;
	}
	loop_defer_free(&rt->reaper, &s->dead, server_free_deferred);
	if (session) {
		/* A read (if it was sent at all: it may still wait in the client's buffer) may go
		 * elsewhere; the replies held back never reach the client. */
		if (s->retry_ok)
			buf_reset(&s->held);
		if (s->pool->replica >= 0)
			balance_track(rt, s->pool->service, s->pool->replica, -1);
		unsigned how = (s->retry_ok ? SERVER_LOSS_MAY_RETRY : 0) | (s->fatal_forwarded ? SERVER_LOSS_AFTER_FATAL : 0) |
			       (mid_message ? SERVER_LOSS_MID_MESSAGE : 0);
		ev->lost(session, s, how);
	}
}

static void server_free_memory(Server *s)
{
	params_free(&s->params);
	params_free(&s->login_params);
	pipeline_free(&s->pipe);
	prepared_server_free(&s->stmts);
	buf_free(&s->retry);
	buf_free(&s->held);
	buf_free(&s->fail_errors);
	free(s);
}

static void server_free_deferred(LoopDeferred *d) { server_free_memory(list_entry(d, Server, dead)); }

/* ---- linking ---- */

void server_send_internal_query(Server *s, const char *sql)
{
	Buf b;
	buf_init(&b);
	proto_build_query(&b, sql);
	conn_send_buf(&s->conn, &b);
	buf_free(&b);
	pipeline_push(&s->pipe, PIPE_QUERY, PIPE_INTERNAL, 0);
}

bool server_params_synced(const Server *s, ParamList *params)
{
	return s->synced && s->synced_server_gen == s->params.gen && s->synced_fp == params_fingerprint(params);
}

void server_sync_params(Server *s, ParamList *params, RelayCtx *rc)
{
	if (server_params_synced(s, params))
		return;
	Buf b;
	buf_init(&b);
	size_t off = proto_begin(&b, 'Q');
	if (params_sync(params, &s->params, &s->login_params, &b) > 0) {
		proto_put_u8(&b, 0);
		proto_end(&b, off);
		log_debug(s->name, "applying the session parameters of the client it serves");
		if (rc)
			relay_send(rc, buf_head(&b), buf_used(&b));
		else
			conn_send(&s->conn, buf_head(&b), buf_used(&b));
		pipeline_push(&s->pipe, PIPE_QUERY, PIPE_INTERNAL, 0);
	}
	buf_free(&b);
	s->synced = true;
	s->synced_fp = params_fingerprint(params);
	s->synced_server_gen = s->params.gen;
}

void server_forget_retry(Server *s)
{
	server_flush_held(s, NULL);
}

void server_client_flushed(Server *s)
{
	if (!s->retry_ok)
		return;
	if (buf_used(&s->held))
		server_flush_held(s, NULL); /* replies arrived before the Flush: the client gets them now */
	else
		s->replies_flow = true;
}

void server_attach(Server *s, void *session, const ServerEvents *ev, Conn *peer, ParamList *params,
		   bool may_retry)
{
	s->session = session;
	s->ev = ev;
	s->peer = peer;
	s->state = SV_ACTIVE;
	s->wrote = false;
	if (s->pool->replica >= 0) {
		balance_track(s->rt, s->pool->service, s->pool->replica, +1);
		/* A read outside a transaction can move to another backend until its first reply. */
		s->retry_ok = may_retry;
		s->replies_flow = false;
		buf_reset(&s->retry);
		buf_reset(&s->held);
	}
	s->last_used_ms = loop_now_ms();
	s->owner->moved(s->pool, s);
	server_sync_params(s, params, NULL);
	/* Replies may already be buffered (they were paused while unlinked). */
	server_kick(s);
}

void server_detach(Server *s)
{
	if (s->session && s->pool->replica >= 0)
		balance_track(s->rt, s->pool->service, s->pool->replica, -1);
	server_drop_hold(s);
	s->session = NULL;
	s->peer = NULL;
	s->release_pending = false;
	s->wrote = false;
	buf_reset(&s->held); /* the client is gone or done: nothing to deliver */
	buf_reset(&s->fail_errors);
	server_forget_retry(s);
}

void server_release(Server *s, bool reset)
{
	s->last_used_ms = loop_now_ms();
	const char *q = s->pool->config->server_reset_query;
	if (s->settings_opaque) {
		/* its session may hold what a client set where pgrelay could not read it */
		q = "DISCARD ALL";
		reset = true;
		s->settings_opaque = false;
	}
	if (reset && q && *q) {
		s->state = SV_RESETTING;
		s->owner->moved(s->pool, s);
		server_send_internal_query(s, q);
		return;
	}
	s->state = SV_IDLE;
	s->owner->available(s->pool, s);
}

void server_kick(Server *s)
{
	if (s->state == SV_CLOSED)
		return;
	conn_start_reading(&s->conn);
	conn_kick_pending(&s->conn);
}

/* ---- login ---- */

static RelayAction server_login_fail_msg(Server *s, const char *msg)
{
	server_login_failed(s, SQLSTATE_CANNOT_CONNECT, msg);
	return RELAY_CLOSED;
}

/* Fails the login: the service has no password for the server user; returns RELAY_CLOSED. */
static RelayAction server_login_no_password(Server *s)
{
	char msg[200];
	snprintf(msg, sizeof(msg), "server requested a password but service \"%s\" has none for user \"%s\"",
		 s->pool->service->name, s->pool->server_user);
	return server_login_fail_msg(s, msg);
}

/* AuthenticationOk: refused when a SCRAM exchange is unfinished or required and not done;
 * returns RELAY_DROP when accepted, else RELAY_CLOSED. */
static RelayAction server_auth_ok(Server *s, bool require_scram)
{
	/* A server that ends a SCRAM exchange before its signature was checked has not proved it
	 * knows the password (a man in the middle would): refused. */
	if (s->scram_active)
		return server_login_fail_msg(s, "server sent AuthenticationOk before completing the SCRAM exchange "
						"(its signature was not verified)");
	if (require_scram && !s->scram_verified) {
		char msg[200];
		snprintf(msg, sizeof(msg), "server accepted the login without SCRAM authentication, but "
			 "services.%s.tls.require_auth is scram-sha-256", s->pool->service->name);
		return server_login_fail_msg(s, msg);
	}
	return RELAY_DROP;
}

/* AuthenticationCleartextPassword: puts the PasswordMessage into b (refused without TLS unless
 * allowed); returns RELAY_DROP, or RELAY_CLOSED when the login failed. */
static RelayAction server_auth_cleartext(Server *s, const char *password, Buf *b)
{
	if (!password)
		return server_login_no_password(s);
	if (!s->tls && s->addr.ss_family != AF_UNIX && !s->pool->config->allow_cleartext_without_tls)
		return server_login_fail_msg(s, "server asks for a cleartext password over an unencrypted connection; "
						"refused (enable tls for the service, or set proxy.allow_cleartext_without_tls)");
	proto_build_password(b, password);
	return RELAY_DROP;
}

/* AuthenticationMD5Password (salt read from r): puts the salted md5 PasswordMessage into b;
 * returns RELAY_DROP, or RELAY_CLOSED when the login failed. */
static RelayAction server_auth_md5(Server *s, ProtoReader *r, const char *password, Buf *b)
{
	const uint8_t *salt = proto_read_bytes(r, 4);
	if (!salt || !password) {
		if (!password)
			return server_login_no_password(s);
		return server_login_fail_msg(s, "malformed md5 authentication request from server");
	}
	char hash[36], salted[36];
	if (scram_is_md5_hash(password))
		memcpy(hash, password, 36);
	else
		scram_md5_password_hash(s->pool->server_user, password, hash);
	scram_md5_salted(hash, salt, salted);
	proto_build_password(b, salted);
	return RELAY_DROP;
}

/* AuthenticationSASL (mechanisms read from r): starts a SCRAM-SHA-256 exchange and puts the
 * SASLInitialResponse into b; returns RELAY_DROP, or RELAY_CLOSED when the login failed. */
static RelayAction server_auth_sasl_start(Server *s, ProtoReader *r, const char *password, Buf *b)
{
	bool has_scram = false;
	for (;;) {
		const char *mech = proto_read_str(r);
		if (r->error || !*mech)
			break;
		if (strcmp(mech, "SCRAM-SHA-256") == 0)
			has_scram = true;
	}
	if (!has_scram)
		return server_login_fail_msg(s, "server offers no SASL mechanism pgrelay supports (SCRAM-SHA-256)");
	if (!password)
		return server_login_no_password(s);
	if (scram_is_md5_hash(password) || scram_is_verifier(password))
		return server_login_fail_msg(s, "server asks for SCRAM but the configured password is a hash; "
						"pgrelay needs the plain password to log in with SCRAM");
	if (s->scram_active)
		scram_client_free(&s->scram); /* a second AuthenticationSASL: start over */
	scram_client_init(&s->scram, password);
	s->scram_active = true;
	char *first = scram_client_first(&s->scram);
	proto_build_sasl_initial(b, "SCRAM-SHA-256", first, strlen(first));
	free(first);
	return RELAY_DROP;
}

/* AuthenticationSASLContinue (server-first-message after the code in body): puts the SASLResponse
 * with the client-final-message into b; returns RELAY_DROP, or RELAY_CLOSED when the login failed. */
static RelayAction server_auth_sasl_continue(Server *s, const uint8_t *body, size_t len, Buf *b)
{
	const char *err = NULL;
	char *final = s->scram_active ? scram_client_handle_server_first(&s->scram, (const char *)body + 4, len - 4, &err)
				      : NULL;
	if (!final) {
		char msg[200];
		snprintf(msg, sizeof(msg), "SCRAM exchange with server failed: %s", err ? err : "unexpected message");
		return server_login_fail_msg(s, msg);
	}
	proto_build_sasl_response(b, final, strlen(final));
	free(final);
	return RELAY_DROP;
}

/* AuthenticationSASLFinal (server-final-message after the code in body): checks the server's
 * signature and ends the exchange; returns RELAY_DROP, or RELAY_CLOSED when the login failed. */
static RelayAction server_auth_sasl_final(Server *s, const uint8_t *body, size_t len)
{
	const char *err = NULL;
	if (!s->scram_active || !scram_client_verify_server_final(&s->scram, (const char *)body + 4, len - 4, &err)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "server's SCRAM signature is wrong: %s", err ? err : "unexpected message");
		return server_login_fail_msg(s, msg);
	}
	scram_client_free(&s->scram);
	s->scram_active = false;
	s->scram_verified = true;
	return RELAY_DROP;
}

static RelayAction server_auth_request(Server *s, const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	uint32_t code = proto_read_u32(&r);
	const char *password = s->pool->server_password;
	char msg[200];
	bool require_scram = s->pool->service->tls.require_scram;
	if (require_scram && code != PROTO_AUTH_OK && code != PROTO_AUTH_SASL && code != PROTO_AUTH_SASL_CONTINUE &&
	    code != PROTO_AUTH_SASL_FINAL) {
		/* before any password or hash is sent */
		snprintf(msg, sizeof(msg), "server asks for authentication method %u, but services.%s.tls.require_auth is "
			 "scram-sha-256", code, s->pool->service->name);
		return server_login_fail_msg(s, msg);
	}
	Buf b;
	buf_init(&b);
	RelayAction result;
	switch (code) {
	case PROTO_AUTH_OK:
		result = server_auth_ok(s, require_scram);
		break;
	case PROTO_AUTH_CLEARTEXT:
		result = server_auth_cleartext(s, password, &b);
		break;
	case PROTO_AUTH_MD5:
		result = server_auth_md5(s, &r, password, &b);
		break;
	case PROTO_AUTH_SASL:
		result = server_auth_sasl_start(s, &r, password, &b);
		break;
	case PROTO_AUTH_SASL_CONTINUE:
		result = server_auth_sasl_continue(s, body, len, &b);
		break;
	case PROTO_AUTH_SASL_FINAL:
		result = server_auth_sasl_final(s, body, len);
		break;
	default:
		snprintf(msg, sizeof(msg), "server requested authentication method %u, which pgrelay does not support", code);
		result = server_login_fail_msg(s, msg);
		break;
	}
	if (result == RELAY_DROP && buf_used(&b))
		conn_send_buf(&s->conn, &b);
	buf_free(&b);
	return result;
}

static RelayAction server_login_msg(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				    size_t avail)
{
	(void)rc;
	Server *s = owner;
	if (avail < total)
		return RELAY_NEED_BODY;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	ProtoReader r;
	proto_reader_init(&r, body, len);
	switch (type) {
	case 'R':
		return server_auth_request(s, body, len);
	case 'S': {
		const char *name = proto_read_str(&r);
		const char *value = proto_read_str(&r);
		if (!r.error)
			params_set(&s->params, name, value);
		return RELAY_DROP;
	}
	case 'K':
		s->be_pid = proto_read_u32(&r);
		s->be_key = proto_read_u32(&r);
		return RELAY_DROP;
	case 'E': {
		ProtoErrorFields f;
		proto_parse_error(body, len, &f);
		char m[400];
		snprintf(m, sizeof(m), "server rejected the login: %s", f.message);
		server_login_failed(s, *f.sqlstate ? f.sqlstate : SQLSTATE_CANNOT_CONNECT, m);
		return RELAY_CLOSED;
	}
	case 'N':
	case 'v':
		return RELAY_DROP;
	case 'Z': {
		char status = proto_parse_ready_for_query(body, len);
		if (!status)
			return server_login_fail_msg(s, "malformed ReadyForQuery from server");
		s->tx_status = status;
		s->state = SV_IDLE;
		params_copy(&s->login_params, &s->params);
		server_set_timer(s, 0);
		log_info(s->name, "new server connection to %s:%d for pool %s (backend pid %u)",
			 s->pool->backend->host, s->pool->backend->port, s->pool->name, s->be_pid);
		return RELAY_DROP | RELAY_AFTER_STOP;
	}
	default:
		return server_login_fail_msg(s, "unexpected message from server during login");
	}
}

static const RelayOps server_login_ops = {.message = server_login_msg};

/* ---- relaying replies ---- */

static void server_internal_error(Server *s, const uint8_t *body, size_t len)
{
	ProtoErrorFields f;
	proto_parse_error(body, len, &f);
	log_warning(s->name, "pgrelay's own query failed: %s (%s)", f.message, f.sqlstate);
	s->close_on_release = true;
	if (s->session && s->state == SV_ACTIVE)
		/* A session parameter of the client could not be applied: the client cannot go on. */
		s->ev->setting_failed(s->session, *f.sqlstate ? f.sqlstate : SQLSTATE_INTERNAL_ERROR, f.message);
}

static bool tag_is(const uint8_t *body, size_t len, const char *tag)
{
	size_t n = strlen(tag);
	return len == n + 1 && memcmp(body, tag, n) == 0;
}

/* The session's transaction is over and nothing is in flight: the server may go back to the pool. */
static bool server_may_release(const Server *s)
{
	return s->tx_status == 'I' && server_is_quiet(s) && s->peer->fwd_left == 0 && s->ev->may_release(s->session);
}

/* Asks the primary where its WAL ends after the client's write committed (read-your-writes): the insert position, which includes the commit record even when synchronous_commit is off and it is not written yet. */
static void server_ask_commit_lsn(Server *s)
{
	s->wrote = false;
	s->lsn_pending = true;
	s->commit_lsn = 0;
	server_send_internal_query(s, "SELECT pg_catalog.pg_current_wal_insert_lsn()");
}

/* A DataRow of pgrelay's own LSN query: one text column. */
static void server_read_lsn(Server *s, const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	if (proto_read_u16(&r) != 1)
		return;
	uint32_t n = proto_read_u32(&r);
	const uint8_t *v = n < 64 ? proto_read_bytes(&r, n) : NULL;
	char text[64];
	if (!v)
		return;
	memcpy(text, v, n);
	text[n] = 0;
	health_parse_lsn(text, &s->commit_lsn);
}

static RelayAction server_relay_reply(Server *s, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				      size_t avail);

/*
 * A read on a replica outside a transaction can be retried elsewhere until the client has seen a
 * byte of its reply: its replies are held back (up to SERVER_HOLD_MAX) until ReadyForQuery, so a
 * replica that dies mid-reply (say after ParseComplete, before the rows) costs the client nothing.
 */
#define SERVER_HOLD_MAX (64 * 1024)

static RelayAction server_relay_msg(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				    size_t avail)
{
	Server *s = owner;
	bool hold = false;
	if (type == 'Z' && s->session) {
		/* The session's request is over: it may hold the ReadyForQuery back (a commit's
		 * invalidation reaches every cache before the client hears of the commit). */
		if (s->ready_held)
			return RELAY_STOP;
		if (avail < total)
			return RELAY_NEED_BODY;
		const PipeEntry *h = pipeline_head(&s->pipe);
		if ((!h || !(h->flags & PIPE_INTERNAL)) && total == 6 && !s->ready_noted) {
			s->ready_noted = true; /* once, also when it is looked at again after the hold */
			if (s->ev->ready_hold(s->session, s, (char)msg[5])) {
				s->ready_held = true;
				return RELAY_STOP;
			}
		}
	}
	if (s->retry_ok && s->session) {
		const PipeEntry *h = pipeline_head(&s->pipe);
		if (!h || !(h->flags & PIPE_INTERNAL)) {
			if (avail < total && total <= SERVER_HOLD_MAX)
				return RELAY_NEED_BODY;
			ProtoErrorFields f;
			/* FATAL, or the WARNING a backend sends when its server shuts down at once
			 * (57P01/57P02): the replica is going away before answering, so the read is
			 * retried elsewhere and the client does not see this. */
			if ((type == 'E' || type == 'N') &&
			    proto_parse_error(msg + PROTO_HEADER_LEN, total - PROTO_HEADER_LEN, &f) &&
			    (strcmp(f.severity, "FATAL") == 0 || strncmp(f.sqlstate, "57P", 3) == 0)) {
				log_info(s->name, "replica sent %s %s (%s) before its reply was complete: the read will be retried",
					 f.severity, f.message, f.sqlstate);
				s->close_on_release = true;
				return RELAY_DROP;
			}
			if (type == 'Z' || s->replies_flow || buf_used(&s->held) + total > SERVER_HOLD_MAX)
				server_flush_held(s, rc); /* the reply reaches the client from here on */
			else
				hold = true;
		}
	}
	void *session = s->session;
	size_t capture_max = 0;
	bool capture = session && type != 'Z' && s->ev->capturing(session, &capture_max);
	if (capture) {
		const PipeEntry *h = pipeline_head(&s->pipe);
		if (h && (h->flags & PIPE_INTERNAL))
			capture = false;
		else if (avail < total && total <= capture_max)
			return RELAY_NEED_BODY;
	}
	RelayAction a = server_relay_reply(s, rc, type, msg, total, avail);
	if (capture && (a & RELAY_ACTION_MASK) == RELAY_FORWARD && s->session == session)
		s->ev->capture(session, type, msg, total, avail >= total && !rc->skip_prefix);
	if (hold && s->retry_ok && (a & RELAY_ACTION_MASK) == RELAY_FORWARD) {
		buf_append(&s->held, msg + rc->skip_prefix, total - rc->skip_prefix);
		rc->skip_prefix = 0;
		return (RelayAction)((a & ~RELAY_ACTION_MASK) | RELAY_DROP);
	}
	return a;
}

/* ReadyForQuery: the request (the client's, or pgrelay's own) is over; the session hears the
 * transaction status and whether the server is released. */
static RelayAction reply_ready(Server *s, const uint8_t *body, size_t len)
{
	void *c = s->session;
	char status = proto_parse_ready_for_query(body, len);
	if (!status)
		return RELAY_ERROR; /* an empty body (or a status PostgreSQL never sends) */
	s->tx_status = status;
	s->reset_reports = false;
	uint8_t flags = pipeline_reply(&s->pipe, 'Z', server_pipe_end, s);
	int after = synthetic_due(s) ? RELAY_AFTER_CALL : 0;
	if (flags & PIPE_INTERNAL) {
		if (s->state == SV_RESETTING && pipeline_head(&s->pipe) == NULL)
			return RELAY_DROP | RELAY_AFTER_STOP; /* reset done */
		if (s->lsn_pending) {
			s->lsn_pending = false;
			if (c && s->commit_lsn)
				s->ev->committed(c, s->pool->service->name, s->commit_lsn);
		}
		if (c && s->state == SV_ACTIVE && server_may_release(s)) {
			s->release_pending = true;
			return RELAY_DROP | RELAY_AFTER_STOP;
		}
		return RELAY_DROP | after;
	}
	if (!c)
		return RELAY_ERROR;
	s->ready_noted = false;
	ServerNext next = SERVER_NEXT_KEEP;
	if (server_may_release(s))
		/* Learn the commit's WAL position before letting go (once per write transaction). */
		next = s->wrote && s->pool->replica < 0 && s->pool->service->n_replicas > 0 ? SERVER_NEXT_RELEASE_AFTER_LSN
											      : SERVER_NEXT_RELEASE;
	s->ev->ready(c, s, s->tx_status, next);
	if (next == SERVER_NEXT_RELEASE_AFTER_LSN) {
		server_ask_commit_lsn(s);
		return RELAY_FORWARD | after;
	}
	if (next == SERVER_NEXT_RELEASE) {
		s->release_pending = true;
		return RELAY_FORWARD | RELAY_AFTER_STOP;
	}
	return RELAY_FORWARD | after;
}

/* ParameterStatus: the server's copy is kept; an active session hears the ones a client may set. */
static RelayAction reply_parameter(Server *s, const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	const char *name = proto_read_str(&r);
	const char *value = proto_read_str(&r);
	if (r.error)
		return RELAY_ERROR;
	params_set(&s->params, name, value);
	if (!s->session || s->state != SV_ACTIVE)
		return RELAY_DROP;
	if (params_is_settable_report(name) && !s->reset_reports)
		s->ev->parameter(s->session, name, value);
	return RELAY_FORWARD;
}

/* ErrorResponse: which request failed (the client's, pgrelay's own Parse or PREPARE, or a request
 * pgrelay answers with its own error), and whether the connection is still usable. */
static RelayAction reply_error(Server *s, RelayCtx *rc, const uint8_t *body, size_t len)
{
	void *c = s->session;
	const PipeEntry *h = pipeline_head(&s->pipe);
	uint8_t head_kind = h ? h->kind : 0;
	uint32_t head_tag = h ? h->tag : 0;
	uint8_t flags = pipeline_reply(&s->pipe, 'E', server_pipe_end, s);
	if (flags & PIPE_FAILS) {
		/* the request pgrelay made fail: the client gets pgrelay's error in its place */
		Buf e;
		buf_init(&e);
		fail_error_pop(s, &e);
		if (c && buf_used(&e))
			relay_send(rc, buf_head(&e), buf_used(&e));
		buf_free(&e);
		if (c)
			s->ev->reply(c, s, 'E', body, len);
		return RELAY_DROP;
	}
	if (head_kind == PIPE_QUERY && head_tag) {
		/* A PREPARE (the client's, or pgrelay re-creating it) failed: it does not exist. */
		prepared_server_remove(&s->stmts, head_tag);
		if (c && !(flags & PIPE_INTERNAL))
			s->ev->statement_gone(c, head_tag);
	} else if ((flags & PIPE_INTERNAL) && head_kind == PIPE_QUERY) {
		server_internal_error(s, body, len);
		return s->state == SV_CLOSED ? RELAY_CLOSED : RELAY_DROP;
	}
	if (c && !(flags & PIPE_INTERNAL))
		s->ev->reply(c, s, 'E', body, len);
	ProtoErrorFields f;
	if (proto_parse_error(body, len, &f) && (strcmp(f.severity, "FATAL") == 0 || strcmp(f.severity, "PANIC") == 0)) {
		log_warning(s->name, "server sent %s: %s (%s)", f.severity, f.message, f.sqlstate);
		s->fatal_forwarded = c != NULL;
		s->close_on_release = true;
	} else if (flags & PIPE_INTERNAL) {
		/* pgrelay's own Parse failed: the client's next message would fail with it. */
		log_info(s->name, "re-preparing a statement failed: %s (%s)", f.message, f.sqlstate);
	}
	return c ? RELAY_FORWARD : RELAY_DROP;
}

/* CommandComplete: DISCARD ALL, DEALLOCATE ALL and RESET change what the connection holds. */
static RelayAction reply_complete(Server *s, const uint8_t *body, size_t len)
{
	void *c = s->session;
	uint8_t flags = pipeline_reply(&s->pipe, 'C', server_pipe_end, s);
	bool clients = c && !(flags & PIPE_INTERNAL);
	bool discard = tag_is(body, len, "DISCARD ALL");
	if (discard || tag_is(body, len, "DEALLOCATE ALL")) {
		/* Every prepared statement on this connection is gone. */
		prepared_server_clear(&s->stmts);
		if (clients)
			s->ev->statements_cleared(c);
	}
	if (clients)
		s->ev->reply(c, s, 'C', body, len);
	if (discard || tag_is(body, len, "RESET")) {
		/*
		 * Settings went back to the server's defaults (pgrelay's login values), while on
		 * PostgreSQL a client's startup parameters are its session defaults: pgrelay
		 * re-applies them before the client's next request. The ParameterStatus messages
		 * that follow report the server's defaults, not the client's wishes.
		 */
		params_copy(&s->params, &s->login_params);
		if (clients) {
			s->reset_reports = true;
			if (discard)
				s->ev->discarded(c);
		}
	}
	int after = synthetic_due(s) ? RELAY_AFTER_CALL : 0;
	return ((flags & PIPE_INTERNAL) ? RELAY_DROP : c ? RELAY_FORWARD : RELAY_ERROR) | after;
}

/* Decides one reply message's fate: bookkeeping (pipeline, parameters, prepared statements,
 * read-your-writes LSN) and forward, drop or release. */
static RelayAction server_relay_reply(Server *s, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				      size_t avail)
{
	void *c = s->session;
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t len = total - PROTO_HEADER_LEN;
	bool whole = avail >= total;
	switch (type) {
	case 'Z':
		return whole ? reply_ready(s, body, len) : RELAY_NEED_BODY;
	case 'S':
		return whole ? reply_parameter(s, body, len) : RELAY_NEED_BODY;
	case 'E':
		return whole ? reply_error(s, rc, body, len) : RELAY_NEED_BODY;
	case 'C':
		return whole ? reply_complete(s, body, len) : RELAY_NEED_BODY;
	case 'N':
	case 'A': {
		uint8_t flags = pipeline_reply(&s->pipe, type, server_pipe_end, s);
		return (c && !(flags & PIPE_INTERNAL)) ? RELAY_FORWARD : RELAY_DROP;
	}
	default: {
		uint8_t flags = pipeline_reply(&s->pipe, type, server_pipe_end, s);
		int after = synthetic_due(s) ? RELAY_AFTER_CALL : 0;
		if (flags & PIPE_INTERNAL) {
			if (type == 'D' && s->lsn_pending) {
				if (!whole)
					return RELAY_NEED_BODY;
				server_read_lsn(s, body, len);
			}
			return RELAY_DROP | after;
		}
		if (c && (type == 'I' || type == 's')) /* EmptyQueryResponse, PortalSuspended */
			s->ev->reply(c, s, type, body, len);
		return (c ? RELAY_FORWARD : RELAY_ERROR) | after;
	}
	}
}

static RelayAction server_relay_after(void *owner, RelayCtx *rc)
{
	server_emit_synthetic(owner, rc);
	return RELAY_FORWARD;
}

static const RelayOps server_relay_ops = {.message = server_relay_msg, .after = server_relay_after};

/* ReadyForQuery ended the session's transaction: hand the server back, the session goes idle. */
static void server_finish_release(Server *s)
{
	void *session = s->session;
	const ServerEvents *ev = s->ev;
	bool reset = session && ev->needs_reset(session);
	server_detach(s);
	server_release(s, reset);
	if (session)
		ev->released(session);
}

static size_t backpressure_limit(const Server *s) { return s->pool->config->buffer_size; }

static void server_on_readable(void *owner)
{
	Server *s = owner;
	const char *why = NULL;
	for (;;) {
		RelayResult r;
		ServerState before = s->state;
		switch (s->state) {
		case SV_LOGIN:
			if (s->tls_phase == SV_TLS_ASKED && !server_tls_answer(s))
				return;
			if (s->tls_phase != SV_TLS_NONE)
				return;
			r = relay_process(&s->conn, NULL, &server_login_ops, s, &why);
			break;
		case SV_IDLE:
		case SV_ACTIVE:
		case SV_RESETTING:
			r = relay_process(&s->conn, s->session ? s->peer : NULL, &server_relay_ops, s, &why);
			break;
		default:
			return;
		}
		if (r == RELAY_CLOSED_OWNER || s->state == SV_CLOSED)
			return;
		if (r == RELAY_BAD_INPUT) {
			char m[160];
			snprintf(m, sizeof(m), "unexpected or invalid message from server (%s)", why);
			if (before == SV_LOGIN)
				server_login_failed(s, SQLSTATE_PROTOCOL_VIOLATION, m);
			else
				server_close(s, false, m);
			return;
		}
		if (r != RELAY_STOPPED)
			break;
		if (s->ready_held)
			return; /* looked at again when the session resumes it */
		if (before == SV_LOGIN || before == SV_RESETTING) {
			if (before == SV_RESETTING) /* the reset query put every setting back to its login value */
				params_copy(&s->params, &s->login_params);
			s->state = SV_IDLE;
			s->owner->available(s->pool, s);
		} else if (s->release_pending) {
			server_finish_release(s);
		}
		if (s->state == SV_CLOSED)
			return;
	}
	conn_compact(&s->conn);
	if (s->session && conn_queued(s->peer) > backpressure_limit(s))
		conn_stop_reading(&s->conn);
}

static void server_on_drained(void *owner)
{
	Server *s = owner;
	if (s->session)
		s->ev->drained(s->session);
}

static void server_on_failed(void *owner, const char *why)
{
	Server *s = owner;
	if (s->state == SV_LOGIN || s->state == SV_CONNECTING) {
		char m[160];
		snprintf(m, sizeof(m), "server closed the connection during login (%s)", why);
		server_login_failed(s, SQLSTATE_CANNOT_CONNECT, m);
		return;
	}
	server_close(s, false, why);
}
