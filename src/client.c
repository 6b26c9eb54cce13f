/*
 * client — the application side of pgrelay (see client.h for what it owns).
 *
 * State machine:
 *   STARTUP --StartupMessage--> AUTH --proof ok--> WAIT_LOGIN --pool params--> IDLE
 *   IDLE --first message of a transaction--> WAITING --pool lends a server--> ACTIVE
 *   ACTIVE --server released (ReadyForQuery 'I', transaction pooling)--> IDLE
 *   any --error/EOF/Terminate--> CLOSED
 */
#include "xalloc.h"
#include "client.h"

#include <ctype.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cancel.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "relay.h"
#include "server.h"

#define CLIENT_LOGIN_TIMEOUT_MS 60000

static void client_on_readable(void *owner);
static void client_on_drained(void *owner);
static void client_on_failed(void *owner, const char *why);
static void client_on_tls_ready(void *owner, const char *error);

static const ConnHandlers client_handlers = {
	.readable = client_on_readable,
	.drained = client_on_drained,
	.failed = client_on_failed,
	.tls_ready = client_on_tls_ready,
};

static void client_on_timer(evutil_socket_t fd, short what, void *arg);

static void client_set_timer(Client *c, int64_t ms)
{
	event_del(&c->ev_timer);
	if (ms > 0) {
		struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
		event_add(&c->ev_timer, &tv);
	}
}

Client *client_accept(Runtime *rt, int fd, const char *addr)
{
	Client *c = calloc(1, sizeof(*c));
	if (!c)
		abort();
	c->rt = rt;
	c->id = ++rt->next_client_id;
	snprintf(c->name, sizeof(c->name), "C-%llu", (unsigned long long)c->id);
	snprintf(c->addr, sizeof(c->addr), "%s", addr);
	c->state = CL_STARTUP;
	c->connect_ms = runtime_now_ms();
	params_init(&c->params);
	params_init(&c->startup_params);
	prepared_client_init(&c->stmts);
	conn_init(&c->conn, rt->base, fd, rt->config->buffer_size, rt->config->max_message_size,
		  &client_handlers, c);
	evtimer_assign(&c->ev_timer, rt->base, client_on_timer, c);
	list_push_back(&rt->clients, &c->node);
	list_node_init(&c->wait_node);
	rt->n_clients++;
	conn_start_reading(&c->conn);
	client_set_timer(c, CLIENT_LOGIN_TIMEOUT_MS);
	log_debug(c->name, "connection from %s", addr);
	return c;
}

/* ---- closing ---- */

static void client_release_server(Client *c)
{
	Server *s = c->server;
	if (!s)
		return;
	if (server_is_quiet(s) && c->conn.fwd_left == 0) {
		server_detach(s);
		server_release(s, c->pool_mode == CONFIG_POOL_SESSION || c->pinned);
	} else {
		server_detach(s);
		server_close(s, true, "client left in the middle of a request or transaction");
	}
}

void client_close(Client *c, const char *reason)
{
	if (c->state == CL_CLOSED)
		return;
	Runtime *rt = c->rt;
	if (c->state >= CL_IDLE || c->state == CL_WAIT_LOGIN)
		log_info(c->name, "closing: %s@%s from %s: %s", c->user ? c->user : "?",
			 c->database ? c->database : "?", c->addr, reason);
	else
		log_debug(c->name, "closing during login from %s: %s", c->addr, reason);
	if (c->cancel_pid)
		cancel_map_remove(&rt->cancel_map, c->cancel_pid, c);
	if (list_node_linked(&c->wait_node) && c->pool)
		pool_cancel_wait(c->pool, c);
	client_release_server(c);
	if (c->pool && c->counted_in_pool)
		c->pool->n_clients--;
	c->state = CL_CLOSED;
	event_del(&c->ev_timer);
	conn_close(&c->conn);
	if (c->scram_active) {
		scram_server_free(&c->scram);
		c->scram_active = false;
	}
	list_remove(&rt->clients, &c->node);
	rt->n_clients--;
	list_push_back(&rt->dead_clients, &c->dead_node);
	runtime_schedule_reap(rt);
	runtime_client_gone(rt);
}

static void client_send_error(Client *c, const char *severity, const char *sqlstate, const char *message,
			      const char *hint)
{
	Buf b;
	buf_init(&b);
	proto_build_error(&b, severity, sqlstate, message, NULL, hint);
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
}

void client_fatal(Client *c, const char *sqlstate, const char *fmt, ...)
{
	if (c->state == CL_CLOSED)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	client_send_error(c, "FATAL", sqlstate, msg, NULL);
	client_close(c, msg);
}

void client_free_memory(Client *c)
{
	params_free(&c->params);
	params_free(&c->startup_params);
	prepared_client_free(&c->stmts, &c->rt->stmts);
	free(c->user);
	free(c->database);
	if (c->auth_secret) {
		memset(c->auth_secret, 0, strlen(c->auth_secret));
		free(c->auth_secret);
	}
	free(c);
}

/* ---- startup ---- */

/* SSLRequest: 'S' and a TLS handshake when listen.tls allows it, otherwise 'N'. */
static void client_ssl_request(Client *c)
{
	SSL_CTX *ctx = c->rt->tls_listen;
	if (c->tls) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "SSLRequest received on an encrypted connection");
		return;
	}
	if (!ctx) {
		conn_send(&c->conn, "N", 1);
		return;
	}
	if (c->conn.in_pos < c->conn.in_len) {
		/* Bytes sent before the handshake would be taken as if they were encrypted. */
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "received unencrypted data after SSL request");
		return;
	}
	conn_send(&c->conn, "S", 1);
	c->tls_pending = true;
	if (!conn_tls_start(&c->conn, ctx, true, NULL))
		client_close(c, "cannot start TLS");
}

static void client_on_tls_ready(void *owner, const char *error)
{
	Client *c = owner;
	c->tls_pending = false;
	if (error) {
		log_info(c->name, "TLS handshake with %s failed: %s", c->addr, error);
		client_close(c, error);
		return;
	}
	c->tls = true;
	log_debug(c->name, "TLS established (%s, %s)", SSL_get_version(c->conn.ssl), SSL_get_cipher(c->conn.ssl));
	conn_start_reading(&c->conn);
	conn_kick(&c->conn); /* OpenSSL may already hold the startup packet */
}

static bool startup_param(Client *c, const char *name, const char *value, const char **unknown, size_t *n_unknown)
{
	if (strcmp(name, "user") == 0) {
		free(c->user);
		c->user = xstrdup(value);
	} else if (strcmp(name, "database") == 0) {
		free(c->database);
		c->database = xstrdup(value);
	} else if (strcmp(name, "replication") == 0) {
		if (strcasecmp(value, "false") != 0 && strcasecmp(value, "off") != 0 && strcmp(value, "0") != 0 &&
		    strcasecmp(value, "no") != 0) {
			client_fatal(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
				     "pgrelay does not accept replication connections; connect to the server directly");
			return false;
		}
	} else if (strcmp(name, "options") == 0) {
		const char *err = params_parse_options(value, &c->params);
		if (err) {
			client_fatal(c, SQLSTATE_FEATURE_NOT_SUPPORTED, "invalid options startup parameter: %s", err);
			return false;
		}
	} else if (strncmp(name, "_pq_.", 5) == 0) {
		unknown[(*n_unknown)++] = name;
	} else if (!params_name_valid(name)) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid startup parameter name \"%.64s\"", name);
		return false;
	} else {
		params_set(&c->params, name, value);
	}
	return true;
}

static void client_begin_auth(Client *c);

static void client_handle_startup(Client *c, const uint8_t *packet, size_t len)
{
	ProtoStartup st;
	const char *err = proto_parse_startup(packet, len, &st);
	if (err) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid startup packet: %s", err);
		return;
	}
	switch (st.code) {
	case PROTO_CODE_SSL:
		client_ssl_request(c);
		return;
	case PROTO_CODE_GSSENC:
		conn_send(&c->conn, "N", 1); /* GSSAPI encryption is not supported */
		return;
	case PROTO_CODE_CANCEL:
		cancel_handle_request(c->rt, st.cancel_pid, st.cancel_key, c->addr);
		client_close(c, "cancel request handled");
		return;
	default:
		break;
	}
	uint32_t major = st.code >> 16, minor = st.code & 0xffff;
	if (major != 3) {
		client_fatal(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
			     "unsupported frontend protocol %u.%u: pgrelay supports 3.0", major, minor);
		return;
	}
	const char *unknown[PROTO_STARTUP_MAX_PARAMS];
	size_t n_unknown = 0;
	for (size_t i = 0; i < st.n_params; i++)
		if (!startup_param(c, st.names[i], st.values[i], unknown, &n_unknown))
			return;
	if (minor > 0 || n_unknown > 0) {
		Buf b;
		buf_init(&b);
		proto_build_negotiate_version(&b, 0, unknown, n_unknown);
		conn_send_buf(&c->conn, &b);
		buf_free(&b);
	}
	if (!c->user || !*c->user) {
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION, "no PostgreSQL user name specified in startup packet");
		return;
	}
	if (!c->tls && c->rt->config->listen.tls.mode == CONFIG_TLS_REQUIRE) {
		log_warning(c->name, "refusing unencrypted connection from %s (listen.tls.mode is require)", c->addr);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
			     "pgrelay accepts only TLS connections: connect with sslmode=require or stronger");
		return;
	}
	if (!c->database || !*c->database) {
		free(c->database);
		c->database = xstrdup(c->user);
	}
	client_begin_auth(c);
}

/* ---- authentication ---- */

static const ScramVerifier *client_scram_verifier(Client *c, ScramVerifier *tmp)
{
	if (scram_is_verifier(c->auth_secret))
		return scram_parse_verifier(c->auth_secret, tmp) ? tmp : NULL;
	return runtime_scram_verifier_for(c->rt, c->user, c->auth_secret);
}

static void client_begin_auth(Client *c)
{
	const ConfigUser *u = config_find_user(c->rt->config, c->user);
	if (!u) {
		c->rt->stats.auth_failures++;
		log_warning(c->name, "login failed for unknown user \"%s\" from %s", c->user, c->addr);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION, "role \"%s\" is not known to pgrelay", c->user);
		return;
	}
	c->auth_method = u->auth;
	c->auth_secret = xstrdup(u->password);
	c->state = CL_AUTH;
	Buf b;
	buf_init(&b);
	switch (c->auth_method) {
	case CONFIG_AUTH_SCRAM_SHA_256: {
		ScramVerifier tmp;
		const ScramVerifier *v = client_scram_verifier(c, &tmp);
		if (!v) {
			buf_free(&b);
			log_error(c->name, "user \"%s\" has an unusable SCRAM secret in the configuration", c->user);
			client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION, "password authentication failed for user \"%s\"", c->user);
			return;
		}
		scram_server_init(&c->scram, v);
		c->scram_active = true;
		proto_build_auth_sasl(&b, "SCRAM-SHA-256");
		break;
	}
	case CONFIG_AUTH_MD5:
		RAND_bytes(c->md5_salt, sizeof(c->md5_salt));
		proto_build_auth(&b, PROTO_AUTH_MD5, c->md5_salt, sizeof(c->md5_salt));
		break;
	case CONFIG_AUTH_PASSWORD:
		if (!c->tls && !c->rt->config->allow_cleartext_without_tls) {
			buf_free(&b);
			log_warning(c->name, "refusing cleartext password authentication of \"%s\" from %s without TLS",
				    c->user, c->addr);
			client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
				     "user \"%s\" authenticates with a cleartext password, which pgrelay accepts only over TLS "
				     "(or with proxy.allow_cleartext_without_tls)", c->user);
			return;
		}
		proto_build_auth(&b, PROTO_AUTH_CLEARTEXT, NULL, 0);
		break;
	}
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
}

static void client_auth_failed(Client *c, const char *why)
{
	c->rt->stats.auth_failures++;
	log_warning(c->name, "password authentication failed for user \"%s\" from %s: %s", c->user, c->addr, why);
	client_fatal(c, SQLSTATE_INVALID_PASSWORD, "password authentication failed for user \"%s\"", c->user);
}

static void client_auth_ok(Client *c);

/* A PasswordMessage / SASLInitialResponse / SASLResponse body. */
static void client_handle_auth_message(Client *c, const uint8_t *body, size_t len)
{
	ProtoReader r;
	proto_reader_init(&r, body, len);
	Buf b;
	buf_init(&b);
	switch (c->auth_method) {
	case CONFIG_AUTH_SCRAM_SHA_256: {
		const char *err = NULL;
		char *reply = NULL;
		if (c->scram.state == SCRAM_SERVER_INIT) {
			const char *mech = proto_read_str(&r);
			uint32_t dlen = proto_read_u32(&r);
			const uint8_t *data = r.error || dlen == 0xffffffffu ? NULL : proto_read_bytes(&r, dlen);
			if (r.error || strcmp(mech, "SCRAM-SHA-256") != 0) {
				buf_free(&b);
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
					     "client selected an invalid SASL authentication mechanism");
				return;
			}
			if (!data || !scram_server_handle_first(&c->scram, (const char *)data, dlen, &reply, &err)) {
				buf_free(&b);
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed SCRAM message: %s",
					     err ? err : "missing data");
				return;
			}
			proto_build_auth(&b, PROTO_AUTH_SASL_CONTINUE, reply, strlen(reply));
			free(reply);
			conn_send_buf(&c->conn, &b);
			buf_free(&b);
			return;
		}
		if (!scram_server_handle_final(&c->scram, (const char *)body, len, &reply, &err)) {
			buf_free(&b);
			if (err == SCRAM_ERR_WRONG_PASSWORD)
				client_auth_failed(c, "wrong password (SCRAM proof mismatch)");
			else
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed SCRAM message: %s", err);
			return;
		}
		proto_build_auth(&b, PROTO_AUTH_SASL_FINAL, reply, strlen(reply));
		free(reply);
		conn_send_buf(&c->conn, &b);
		buf_free(&b);
		scram_server_free(&c->scram);
		c->scram_active = false;
		client_auth_ok(c);
		return;
	}
	case CONFIG_AUTH_MD5: {
		const char *resp = proto_read_str(&r);
		buf_free(&b);
		if (r.error || !scram_md5_check(c->auth_secret, c->user, c->md5_salt, resp)) {
			client_auth_failed(c, "wrong password (md5)");
			return;
		}
		client_auth_ok(c);
		return;
	}
	case CONFIG_AUTH_PASSWORD: {
		const char *pw = proto_read_str(&r);
		buf_free(&b);
		size_t n = strlen(c->auth_secret);
		if (r.error || strlen(pw) != n || !scram_secure_equal(pw, c->auth_secret, n)) {
			client_auth_failed(c, "wrong password (cleartext)");
			return;
		}
		client_auth_ok(c);
		return;
	}
	}
}

/* The value to report for name at login: the client's own wish, in the server's spelling if equal. */
static bool same_encoding_name(const char *a, const char *b)
{
	while (*a || *b) {
		while (*a && !isalnum((unsigned char)*a))
			a++;
		while (*b && !isalnum((unsigned char)*b))
			b++;
		if (toupper((unsigned char)*a) != toupper((unsigned char)*b))
			return false;
		if (*a)
			a++;
		if (*b)
			b++;
	}
	return true;
}

static void client_auth_ok(Client *c)
{
	Runtime *rt = c->rt;
	const ConfigDatabase *db = config_find_database(rt->config, c->database);
	if (!db) {
		log_warning(c->name, "login for unknown database \"%s\" by \"%s\" from %s", c->database, c->user, c->addr);
		client_fatal(c, SQLSTATE_INVALID_CATALOG_NAME, "database \"%s\" does not exist", c->database);
		return;
	}
	c->pool_mode = db->pool_mode;
	c->pool = pool_get(rt, db->service, c->user, c->auth_secret);
	if (!c->pool) {
		log_error(c->name, "service \"%s\" has no primary.user and the password of \"%s\" is not plain text",
			  db->service->name, c->user);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
			     "pgrelay has no credentials to log in to service \"%s\" as \"%s\"", db->service->name, c->user);
		return;
	}
	c->pool->n_clients++;
	c->counted_in_pool = true;
	Buf b;
	buf_init(&b);
	proto_build_auth(&b, PROTO_AUTH_OK, NULL, 0);
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
	cancel_map_add(&rt->cancel_map, c, &c->cancel_pid, &c->cancel_key);
	log_info(c->name, "login: %s@%s from %s (%s pooling, service %s)", c->user, c->database, c->addr,
		 config_pool_mode_name(c->pool_mode), db->service->name);
	if (c->pool->have_params) {
		client_login_ready(c);
	} else {
		c->state = CL_WAIT_LOGIN;
		conn_stop_reading(&c->conn);
		pool_wait_login(c->pool, c);
	}
}

void client_login_ready(Client *c)
{
	Pool *p = c->pool;
	Buf b;
	buf_init(&b);
	for (size_t i = 0; i < p->server_params.n; i++) {
		const Param *sp = &p->server_params.items[i];
		const char *want = params_get(&c->params, sp->name);
		const char *value = sp->value;
		if (params_is_settable_report(sp->name)) {
			if (!want || (strcasecmp(sp->name, "client_encoding") == 0 && same_encoding_name(want, sp->value)))
				/* the pool's default (or the server's spelling of the same encoding) */
				params_set(&c->params, sp->name, sp->value);
			else
				value = want;
		}
		proto_build_parameter_status(&b, sp->name, value);
	}
	params_copy(&c->startup_params, &c->params);
	proto_build_backend_key_data(&b, c->cancel_pid, c->cancel_key);
	proto_build_ready_for_query(&b, 'I');
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
	c->state = CL_IDLE;
	client_set_timer(c, 0);
	if (c->close_at_idle) {
		client_shutdown(c);
		return;
	}
	conn_start_reading(&c->conn);
	conn_kick_pending(&c->conn);
}

/* ---- relay ---- */

static RelayAction client_auth_msg(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				   size_t avail)
{
	(void)rc;
	Client *c = owner;
	if (type != 'p') {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "expected a password message, got message type \"%c\"",
			     isprint(type) ? type : '?');
		return RELAY_CLOSED;
	}
	if (avail < total)
		return RELAY_NEED_BODY;
	client_handle_auth_message(c, msg + PROTO_HEADER_LEN, total - PROTO_HEADER_LEN);
	if (c->state == CL_CLOSED)
		return RELAY_CLOSED;
	/* Stop after the message that completed the login so pipelined queries wait for it. */
	return c->state == CL_AUTH ? RELAY_DROP : RELAY_DROP | RELAY_AFTER_STOP;
}

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

static RelayAction client_relay_msg(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				    size_t avail)
{
	Client *c = owner;
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

static const RelayOps client_auth_ops = {.message = client_auth_msg};
static const RelayOps client_relay_ops = {.message = client_relay_msg};

/* Limit of bytes queued towards a peer before we stop reading from this side. */
static size_t backpressure_limit(const Runtime *rt) { return rt->config->buffer_size; }

static void client_process_messages(Client *c);

static void client_process(Client *c)
{
	c->processing = true;
	client_process_messages(c);
	c->processing = false;
}

static void client_process_messages(Client *c)
{
	const char *why;
	for (;;) {
		RelayResult r;
		switch (c->state) {
		case CL_AUTH:
			r = relay_process(&c->conn, NULL, &client_auth_ops, c, &why);
			break;
		case CL_IDLE:
		case CL_ACTIVE:
			r = relay_process(&c->conn, c->server ? &c->server->conn : NULL, &client_relay_ops, c, &why);
			break;
		default:
			return;
		}
		if (r == RELAY_CLOSED_OWNER || c->state == CL_CLOSED)
			return;
		if (r == RELAY_BAD_INPUT) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid message from client: %s", why);
			return;
		}
		if (r == RELAY_STOPPED && (c->state == CL_ACTIVE || c->state == CL_IDLE))
			continue; /* a server was linked at once, or login finished: go on */
		break;
	}
	conn_compact(&c->conn);
	if (c->state == CL_ACTIVE && c->server &&
	    conn_queued(&c->server->conn) > backpressure_limit(c->rt))
		conn_stop_reading(&c->conn);
}

static void client_read_startup(Client *c)
{
	Conn *cn = &c->conn;
	while (c->state == CL_STARTUP && !c->tls_pending) {
		size_t avail = cn->in_len - cn->in_pos;
		if (avail < 4)
			break;
		uint32_t len = proto_get_u32(cn->in + cn->in_pos);
		if (len < 8 || len > PROTO_STARTUP_MAX_LEN) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid length of startup packet");
			return;
		}
		if (avail < len) {
			if (!conn_make_room(cn, len)) {
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid length of startup packet");
				return;
			}
			return;
		}
		const uint8_t *packet = cn->in + cn->in_pos;
		cn->in_pos += len;
		client_handle_startup(c, packet, len);
	}
	if (c->state == CL_CLOSED)
		return;
	if (c->state == CL_AUTH)
		client_process(c);
	else
		conn_compact(cn);
}

static void client_on_readable(void *owner)
{
	Client *c = owner;
	if (c->tls_pending)
		return;
	if (c->state == CL_STARTUP)
		client_read_startup(c);
	else
		client_process(c);
}

static void client_on_drained(void *owner)
{
	Client *c = owner;
	/* The client took what the server sent: let the server go on. */
	if (c->server)
		server_kick(c->server);
}

static void client_on_failed(void *owner, const char *why)
{
	client_close(owner, why);
}

void client_resume(Client *c)
{
	if (c->state == CL_IDLE || c->state == CL_ACTIVE || c->state == CL_AUTH) {
		conn_start_reading(&c->conn);
		conn_kick_pending(&c->conn);
	}
}

/* ---- links with the pool ---- */

void client_linked(Client *c, Server *s)
{
	if (c->state == CL_WAITING) {
		int64_t waited = runtime_now_ms() - c->wait_start_ms;
		if (c->pool)
			c->pool->total_wait_ms += (uint64_t)waited;
	}
	client_set_timer(c, 0);
	c->server = s;
	c->state = CL_ACTIVE;
	server_attach(s, c);
	conn_start_reading(&c->conn);
	if (!c->processing) /* otherwise client_process goes on with the new server itself */
		conn_kick_pending(&c->conn);
}

void client_unlinked(Client *c)
{
	c->server = NULL;
	if (c->state == CL_ACTIVE)
		c->state = CL_IDLE;
	if (c->close_at_idle) {
		client_shutdown(c);
		return;
	}
	client_resume(c);
}

void client_wait_failed(Client *c, const char *sqlstate, const char *message)
{
	client_fatal(c, sqlstate, "%s", message);
}

void client_server_lost(Client *c, const char *message)
{
	c->server = NULL;
	client_fatal(c, SQLSTATE_CONNECTION_FAILURE, "%s", message);
}

void client_shutdown(Client *c)
{
	c->close_at_idle = true;
	switch (c->state) {
	case CL_STARTUP:
	case CL_AUTH:
	case CL_IDLE:
		client_send_error(c, "FATAL", SQLSTATE_ADMIN_SHUTDOWN, "pgrelay is shutting down", NULL);
		client_close(c, "shutdown");
		break;
	case CL_ACTIVE:
		if (c->server && server_is_quiet(c->server) && c->conn.fwd_left == 0 &&
		    (c->server->tx_status == 'I')) {
			client_send_error(c, "FATAL", SQLSTATE_ADMIN_SHUTDOWN, "pgrelay is shutting down", NULL);
			client_close(c, "shutdown");
		}
		break; /* otherwise at the end of the transaction */
	default:
		break; /* waiting clients finish their transaction first */
	}
}

/* ---- timers ---- */

static void client_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Client *c = arg;
	switch (c->state) {
	case CL_STARTUP:
	case CL_AUTH:
	case CL_WAIT_LOGIN:
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "client did not finish logging in within %d seconds",
			     CLIENT_LOGIN_TIMEOUT_MS / 1000);
		break;
	case CL_WAITING:
		c->rt->stats.wait_timeouts++;
		client_fatal(c, SQLSTATE_TOO_MANY_CONNECTIONS,
			     "query_wait_timeout: no server connection became free for pool %s within %lld ms",
			     c->pool ? c->pool->name : "?",
			     (long long)(c->pool ? c->pool->service->pool.query_wait_timeout_ms : 0));
		break;
	default:
		break;
	}
}

void client_start_wait_timer(Client *c, int64_t ms) { client_set_timer(c, ms); }
