/*
 * client — the application side of pgrelay (see client.h for what it owns).
 *
 * State machine:
 *   STARTUP --StartupMessage--> AUTH --proof ok--> WAIT_LOGIN --pool params--> IDLE
 *   IDLE --first message of a transaction--> WAITING --pool lends a server--> ACTIVE
 *   ACTIVE --server released (ReadyForQuery 'I', transaction pooling)--> IDLE
 *   any --error/EOF/Terminate--> CLOSED
 */
#include "client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "access.h"
#include "cancel.h"
#include "statement.h"
#include "statement_cache.h"
#include "statement_tx.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "relay.h"
#include "server.h"
#include "settings.h"
#include "stats.h"
#include "xalloc.h"

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

static void client_on_timer(void *arg);
static const PoolWaiterOps client_pool_waiter_ops;

/* ms > 0: the client's timer fires in ms; 0: stopped. */
static void client_set_timer(Client *c, int64_t ms)
{
	if (ms > 0)
		loop_timer_start(&c->timer, ms);
	else
		loop_timer_stop(&c->timer);
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
	c->connect_ms = loop_now_ms();
	params_init(&c->params);
	params_init(&c->startup_params);
	params_init(&c->undo_params);
	params_init(&c->undo_server_params);
	c->tx_local = 'I';
	prepared_client_init(&c->stmts);
	conn_init(&c->conn, rt->base, fd, rt->config->buffer_size, rt->config->max_message_size,
		  &client_handlers, c);
	conn_use_spares(&c->conn, &rt->read_buffers);
	loop_timer_init(&c->timer, rt->base, client_on_timer, c);
	list_push_back(&rt->clients, &c->node);
	list_node_init(&c->wait.node);
	c->wait.ops = &client_pool_waiter_ops;
	c->wait.name = c->name;
	txtrack_init(&c->tx);
	rt->n_clients++;
	conn_start_reading(&c->conn);
	client_set_timer(c, CLIENT_LOGIN_TIMEOUT_MS);
	log_debug(c->name, "connection from %s", addr);
	return c;
}

/* ---- closing ---- */

/* The SCRAM exchange's state exists only while one runs (10,000 logged-in clients keep none). */
static void client_scram_end(Client *c)
{
	if (c->scram) {
		scram_server_free(c->scram); /* wipes it */
		free(c->scram);
		c->scram = NULL;
	}
}

static void client_release_server(Client *c)
{
	Server *s = c->server;
	if (!s)
		return;
	bool quiet = server_is_quiet(s) && c->conn.fwd_left == 0;
	server_detach(s);
	c->server = NULL;
	if (quiet)
		server_release(s, c->pool_mode == CONFIG_POOL_SESSION || c->pinned);
	else
		server_close(s, true, "client left in the middle of a request or transaction");
}

static void client_free_deferred(LoopDeferred *d);

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
	if (c->admin)
		rt->console->gone(c);
	else
		pool_cancel_wait(&c->wait);
	if (rt->cache && c->cache) {
		cache_wait_cancel(rt->cache, c->cache);
		cache_fill_abort(rt->cache, c->cache);
		cache_waiter_gone(rt->cache, c->cache);
	}
	stats_client_closed(c);
	client_release_server(c);
	statement_tx_client_gone(c);
	c->state = CL_CLOSED;
	loop_timer_release(&c->timer);
	conn_close(&c->conn);
	client_scram_end(c);
	list_remove(&rt->clients, &c->node);
	rt->n_clients--;
	loop_defer_free(&rt->reaper, &c->dead, client_free_deferred);
	rt->client_gone(rt);
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
	/* Not in the middle of a server's message being forwarded: the client would read the error as
	 * the rest of it. */
	if (!(c->server && c->server->conn.fwd_left))
		client_send_error(c, "FATAL", sqlstate, msg, NULL);
	client_close(c, msg);
}

static void client_free_memory(Client *c)
{
	params_free(&c->params);
	params_free(&c->startup_params);
	free(c->held_begin);
	free(c->local_sql);
	free(c->search_path);
	free(c->undo_search_path);
	settings_free(c);
	params_free(&c->undo_params);
	params_free(&c->undo_server_params);
	for (size_t i = 0; c->ryw && i < CLIENT_RYW_SLOTS; i++)
		free(c->ryw[i].service);
	free(c->ryw);
	free(c->tx_service);
	free(c->admin_pause_db);
	prepared_client_free(&c->stmts, &c->rt->stmts);
	cache_waiter_free(c->cache);
	txtrack_free(&c->tx);
	free(c->user);
	free(c->database);
	if (c->auth_secret) {
		memset(c->auth_secret, 0, strlen(c->auth_secret));
		free(c->auth_secret);
	}
	free(c);
}

static void client_free_deferred(LoopDeferred *d) { client_free_memory(list_entry(d, Client, dead)); }

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
		if (c->ssl_asked) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "SSLRequest sent twice on one connection");
			return;
		}
		c->ssl_asked = true;
		client_ssl_request(c);
		return;
	case PROTO_CODE_GSSENC:
		if (c->gss_asked) {
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "GSSENCRequest sent twice on one connection");
			return;
		}
		c->gss_asked = true;
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
	return scram_cache_verifier_for(&c->rt->scram, c->user, c->auth_secret);
}

/* An unknown user, or a known one whose secret is unusable: the same SCRAM exchange as a real
 * user's (salt and iteration count included), ending in the same 28P01 as a wrong password, so a
 * client cannot probe which user names exist. */
static void client_begin_mock_auth(Client *c, const char *why)
{
	ScramVerifier v;
	c->auth_method = CONFIG_AUTH_SCRAM_SHA_256;
	c->auth_mock_why = why;
	c->state = CL_AUTH;
	client_scram_end(c);
	c->scram = xmalloc(sizeof *c->scram);
	if (!scram_mock_verifier(c->rt->scram.secret, c->user, &v))
		scram_server_init(c->scram, NULL); /* random salt: still a mock exchange */
	else
		scram_server_init_mock(c->scram, &v);
	OPENSSL_cleanse(&v, sizeof v);
	Buf b;
	buf_init(&b);
	proto_build_auth_sasl(&b, "SCRAM-SHA-256");
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
}

/*
 * The access rules (proxy.yaml's access section) for this connection: false after refusing it
 * (28000, as PostgreSQL's pg_hba.conf). Otherwise *rule is the index of the rule that matched, or
 * -1 when the configuration has no access section.
 */
static bool client_check_access(Client *c, int *rule)
{
	Runtime *rt = c->rt;
	const Config *cfg = rt->config;
	*rule = -1;
	if (!cfg->access_enabled)
		return true;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	bool have_peer = getpeername(c->conn.fd, (struct sockaddr *)&ss, &sl) == 0;
	char host[INET6_ADDRSTRLEN] = "?";
	if (have_peer && ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
	else if (have_peer && ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
	AccessRequest req = {
		.database = c->database,
		.user = c->user,
		.console = c->rt->console->is_console(cfg, c->database),
		.peer = have_peer ? (const struct sockaddr *)&ss : NULL,
		.tls = c->tls,
	};
	const char *enc = c->tls ? "TLS encryption" : "no encryption";
	int i = access_match(cfg->access, cfg->n_access, &req);
	if (i < 0) {
		rt->stats.access_refused++;
		log_warning(c->name, "refused: no access rule matches %s@%s from %s (%s)", c->user, c->database, c->addr,
			    enc);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
			     "no pgrelay access rule for host \"%s\", user \"%s\", database \"%s\", %s", host, c->user,
			     c->database, enc);
		return false;
	}
	const AccessRule *r = &cfg->access[i];
	if ((size_t)i < rt->n_access_hits)
		rt->access_hits[i]++;
	if (r->method == ACCESS_REJECT) {
		rt->stats.access_refused++;
		log_info(c->name, "refused: access rule %d (line %d) rejects %s@%s from %s (%s)", i, r->line, c->user,
			 c->database, c->addr, enc);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
			     "pgrelay access rules reject connection for host \"%s\", user \"%s\", database \"%s\", %s",
			     host, c->user, c->database, enc);
		return false;
	}
	log_info(c->name, "access rule %d (line %d) matches %s@%s from %s (%s): %s", i, r->line, c->user, c->database,
		 c->addr, enc, access_method_name(r->method));
	*rule = i;
	return true;
}

/* Cleartext passwords over plain TCP are refused unless proxy.allow_cleartext_without_tls. */
static bool client_cleartext_allowed(Client *c)
{
	if (c->tls || c->rt->config->allow_cleartext_without_tls)
		return true;
	log_warning(c->name, "refusing cleartext password authentication of \"%s\" from %s without TLS", c->user,
		    c->addr);
	client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
		     "user \"%s\" authenticates with a cleartext password, which pgrelay accepts only over TLS "
		     "(or with proxy.allow_cleartext_without_tls)", c->user);
	return false;
}

static void client_begin_auth(Client *c)
{
	int rule;
	if (!client_check_access(c, &rule))
		return;
	const ConfigUser *u = config_find_user(c->rt->config, c->user);
	/* An access rule's method replaces the user's auth for this connection. */
	ConfigAuthMethod method = rule >= 0 ? (ConfigAuthMethod)c->rt->config->access[rule].method
					    : u ? u->auth : CONFIG_AUTH_SCRAM_SHA_256;
	if (!u) {
		if (method == CONFIG_AUTH_PASSWORD) {
			/* As PostgreSQL: the password is asked for whether or not the user exists. */
			if (!client_cleartext_allowed(c))
				return;
			c->auth_method = CONFIG_AUTH_PASSWORD;
			c->auth_mock_why = "no such user in pgrelay's users";
			c->state = CL_AUTH;
			Buf b;
			buf_init(&b);
			proto_build_auth(&b, PROTO_AUTH_CLEARTEXT, NULL, 0);
			conn_send_buf(&c->conn, &b);
			buf_free(&b);
			return;
		}
		client_begin_mock_auth(c, "no such user in pgrelay's users");
		return;
	}
	/* As PostgreSQL: md5 with a SCRAM secret runs SCRAM; SCRAM with an md5 hash cannot succeed. */
	if (method == CONFIG_AUTH_MD5 && scram_is_verifier(u->password))
		method = CONFIG_AUTH_SCRAM_SHA_256;
	if (method == CONFIG_AUTH_SCRAM_SHA_256 && scram_is_md5_hash(u->password)) {
		log_warning(c->name, "user \"%s\" has an md5 hash as password, which cannot be used for SCRAM (access rule %d)",
			    c->user, rule);
		client_begin_mock_auth(c, "md5 hash as password, but SCRAM asked for");
		return;
	}
	c->auth_method = method;
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
			client_begin_mock_auth(c, "unusable SCRAM secret in the configuration");
			return;
		}
		client_scram_end(c);
		c->scram = xmalloc(sizeof *c->scram);
		scram_server_init(c->scram, v);
		proto_build_auth_sasl(&b, "SCRAM-SHA-256");
		break;
	}
	case CONFIG_AUTH_MD5:
		RAND_bytes(c->md5_salt, sizeof(c->md5_salt));
		proto_build_auth(&b, PROTO_AUTH_MD5, c->md5_salt, sizeof(c->md5_salt));
		break;
	case CONFIG_AUTH_PASSWORD:
		if (!client_cleartext_allowed(c)) {
			buf_free(&b);
			return;
		}
		proto_build_auth(&b, PROTO_AUTH_CLEARTEXT, NULL, 0);
		break;
	}
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
}

/* A cleartext password against the user's secret: plain, an md5 hash or a SCRAM verifier (an
 * access rule may ask for a cleartext password from a user whose secret is hashed). */
static bool client_cleartext_matches(Client *c, const char *pw)
{
	const char *secret = c->auth_secret;
	if (!secret)
		return false;
	if (scram_is_md5_hash(secret)) {
		char hash[36], stored[36];
		scram_md5_password_hash(c->user, pw, hash);
		for (size_t i = 0; i < 35; i++)
			stored[i] = (char)tolower((unsigned char)secret[i]);
		stored[35] = '\0';
		bool ok = scram_secure_equal(hash, stored, 35);
		OPENSSL_cleanse(hash, sizeof hash);
		return ok;
	}
	if (scram_is_verifier(secret)) {
		ScramVerifier stored, derived;
		bool ok = scram_parse_verifier(secret, &stored) &&
			  scram_verifier_from_password_salt(pw, stored.iterations, stored.salt, stored.salt_len, &derived) &&
			  scram_secure_equal(stored.stored_key, derived.stored_key, SCRAM_KEY_LEN) &&
			  scram_secure_equal(stored.server_key, derived.server_key, SCRAM_KEY_LEN);
		OPENSSL_cleanse(&derived, sizeof derived);
		return ok;
	}
	size_t n = strlen(secret);
	return strlen(pw) == n && scram_secure_equal(pw, secret, n);
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
		if (!c->scram) { /* cannot happen: SCRAM is the method only once the exchange began */
			buf_free(&b);
			client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "no SCRAM exchange in progress");
			return;
		}
		if (c->scram->state == SCRAM_SERVER_INIT) {
			const char *mech = proto_read_str(&r);
			uint32_t dlen = proto_read_u32(&r);
			const uint8_t *data = r.error || dlen == 0xffffffffu ? NULL : proto_read_bytes(&r, dlen);
			if (r.error || strcmp(mech, "SCRAM-SHA-256") != 0) {
				buf_free(&b);
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
					     "client selected an invalid SASL authentication mechanism");
				return;
			}
			if (!data || !scram_server_handle_first(c->scram, (const char *)data, dlen, &reply, &err)) {
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
		if (!scram_server_handle_final(c->scram, (const char *)body, len, &reply, &err)) {
			buf_free(&b);
			if (err == SCRAM_ERR_WRONG_PASSWORD)
				client_auth_failed(c, c->auth_mock_why ? c->auth_mock_why : "wrong password (SCRAM proof mismatch)");
			else
				client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed SCRAM message: %s", err);
			return;
		}
		proto_build_auth(&b, PROTO_AUTH_SASL_FINAL, reply, strlen(reply));
		free(reply);
		conn_send_buf(&c->conn, &b);
		buf_free(&b);
		client_scram_end(c);
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
		if (r.error || c->auth_mock_why || !client_cleartext_matches(c, pw)) {
			client_auth_failed(c, c->auth_mock_why ? c->auth_mock_why : "wrong password (cleartext)");
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
	if (rt->console->is_console(rt->config, c->database)) {
		c->admin = rt->console->role(rt->config, c->user);
		if (c->admin == 0) { /* no console role */
			log_warning(c->name, "\"%s\" from %s may not use the admin console", c->user, c->addr);
			client_fatal(c, "42501", "user \"%s\" may not use pgrelay's admin console (admin.users, admin.stats_users)",
				     c->user);
			return;
		}
		rt->console->login(c);
		return;
	}
	if (rt->console->database_disabled(rt, c->database)) {
		client_fatal(c, SQLSTATE_ADMIN_SHUTDOWN, "database \"%s\" is disabled (DISABLE in pgrelay's admin console)",
			     c->database);
		return;
	}
	const ConfigDatabase *db = config_find_database(rt->config, c->database);
	if (!db) {
		log_warning(c->name, "login for unknown database \"%s\" by \"%s\" from %s", c->database, c->user, c->addr);
		client_fatal(c, SQLSTATE_INVALID_CATALOG_NAME, "database \"%s\" does not exist", c->database);
		return;
	}
	c->pool_mode = db->pool_mode;
	c->pool = pool_get(rt, db->service, -1, c->user, c->auth_secret);
	if (!c->pool) {
		log_error(c->name, "service \"%s\" has no primary.user and the password of \"%s\" is not plain text",
			  db->service->name, c->user);
		client_fatal(c, SQLSTATE_INVALID_AUTHORIZATION,
			     "pgrelay has no credentials to log in to service \"%s\" as \"%s\"", db->service->name, c->user);
		return;
	}
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
		pool_wait_login(c->pool, &c->wait);
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
	/* As PostgreSQL (PG_MAX_AUTH_TOKEN_LENGTH): refused before the read buffer grows for it. */
	if (total - PROTO_HEADER_LEN > PROTO_AUTH_MAX_LEN) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "password message of %zu bytes is above the limit of %u",
			     total - PROTO_HEADER_LEN, (unsigned)PROTO_AUTH_MAX_LEN);
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

static const RelayOps client_auth_ops = {.message = client_auth_msg};
/* Limit of bytes queued towards a peer before we stop reading from this side. */
static size_t backpressure_limit(const Runtime *rt) { return rt->config->buffer_size; }

static RelayAction client_relay_msg(void *owner, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				    size_t avail)
{
	Client *c = owner;
	/* Messages streamed through (never held whole) are bounded too. */
	if (total > c->conn.in_max) {
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION,
			     "message of type \"%c\" with %zu bytes is above proxy.max_message_size (%zu)",
			     isprint(type) ? type : '?', total, c->conn.in_max);
		return RELAY_CLOSED;
	}
	/*
	 * A client that does not read its replies is not read either, as PostgreSQL does: replies
	 * pgrelay writes itself (cache hits, local answers, the admin console) and forwarded ones
	 * wait in its queue, which may pass the limit by one message's reply at most. The next
	 * message is left in the buffer until client_on_drained.
	 */
	if (conn_queued(&c->conn) > backpressure_limit(c->rt)) {
		c->out_full = true;
		return RELAY_STOP;
	}
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
	if (c->admin)
		return c->rt->console->message(c, rc, type, msg, total, avail);
	RelayAction a = statement_client_message(owner, rc, type, msg, total, avail);
	if (c->end_message) {
		/* the statement layer found that the session cannot go on */
		char *m = c->end_message;
		c->end_message = NULL;
		client_fatal(c, c->end_sqlstate, "%s", m);
		free(m);
		return RELAY_CLOSED;
	}
	return a;
}

static const RelayOps client_relay_ops = {.message = client_relay_msg};

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
		ClientState before = c->state;
		Server *server_before = c->server;
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
		/* A server was linked at once, or let go, or login finished: look again. A stop with
		 * nothing changed waits for the server to become quiet (reroute). */
		if (r == RELAY_STOPPED && (c->state == CL_ACTIVE || c->state == CL_IDLE) &&
		    (c->state != before || c->server != server_before))
			continue;
		break;
	}
	if (c->state == CL_WAITING)
		conn_shrink(&c->conn); /* it may wait long, and so may thousands of others */
	else
		conn_compact(&c->conn);
	if (c->out_full || (c->state == CL_ACTIVE && c->server &&
			    conn_queued(&c->server->conn) > backpressure_limit(c->rt)))
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
	if (c->out_full) {
		c->out_full = false;
		client_resume(c);
	}
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

/* The cache answered the lookup the client waited for (or the identical query it waited for
 * finished): look at the message again. */

/* ---- what the linked server reports (ServerEvents) ---- */

static void client_on_reply(void *session, Server *s, uint8_t type, const uint8_t *body, size_t len)
{
	statement_tx_reply(session, s, type, body, len);
}

/* Redis has the commit's invalidation: the ReadyForQuery held back may go to the client. */
static void client_cache_bump_done(void *owner)
{
	Client *c = owner;
	c->cache_bump = NULL;
	if (c->server)
		server_ready_resume(c->server);
}

static bool client_on_ready_hold(void *session, Server *s, char tx_status)
{
	Client *c = session;
	c->cache_bump = statement_tx_ready(c, s, tx_status, client_cache_bump_done, c);
	return c->cache_bump != NULL;
}

static void client_on_hold_dropped(void *session, Server *s)
{
	(void)s;
	Client *c = session;
	if (c->cache_bump)
		cache_bump_forget(c->cache_bump);
	c->cache_bump = NULL;
}

static void client_on_ready(void *session, Server *s, char tx_status, ServerNext next)
{
	Client *c = session;
	stats_ready_for_query(c, s, tx_status);
	if (c->rt->cache)
		statement_cache_ready(c, s);
	if (next == SERVER_NEXT_RELEASE_AFTER_LSN) {
		c->reroute = false;
	} else if (next == SERVER_NEXT_KEEP && c->reroute && pipeline_idle(&s->pipe)) {
		/* The client's next statement waits to be looked at again (it cannot have this server). */
		c->reroute = false;
		conn_kick_pending(&c->conn);
	}
}

static void client_on_parameter(void *session, const char *name, const char *value)
{
	Client *c = session;
	params_set(&c->params, name, value);
}

static void client_on_discarded(void *session)
{
	Client *c = session;
	params_copy(&c->params, &c->startup_params);
}

static void client_on_statements_cleared(void *session)
{
	Client *c = session;
	prepared_client_clear(&c->stmts, &c->rt->stmts);
}

static void client_on_statement_gone(void *session, uint32_t id)
{
	Client *c = session;
	prepared_client_forget_id(&c->stmts, &c->rt->stmts, id);
}

static void client_on_setting_failed(void *session, const char *sqlstate, const char *message)
{
	client_fatal(session, sqlstate, "pgrelay could not apply a session parameter on the server: %s", message);
}

static void client_on_committed(void *session, const char *service, uint64_t lsn)
{
	statement_note_commit(session, service, lsn);
}

static bool client_on_may_release(void *session)
{
	const Client *c = session;
	return (c->pool_mode == CONFIG_POOL_TRANSACTION && !c->pinned) || c->close_at_idle;
}

static bool client_on_needs_reset(void *session)
{
	const Client *c = session;
	return c->pool_mode == CONFIG_POOL_SESSION || c->pinned;
}

static void client_on_released(void *session) { client_unlinked(session); }

static void client_on_server_drained(void *session) { client_resume(session); }

static void client_on_lost(void *session, Server *s, unsigned how)
{
	Client *c = session;
	if ((how & SERVER_LOSS_MAY_RETRY) && c->state == CL_ACTIVE) {
		if (!statement_retry(c, s))
			client_server_lost(c, "server connection lost");
		return;
	}
	c->server = NULL;
	if (how & SERVER_LOSS_AFTER_FATAL)
		client_close(c, "server closed the connection after a FATAL error");
	else if (how & SERVER_LOSS_MID_MESSAGE)
		client_close(c, "server connection lost in the middle of a message to the client: closed "
				"without an error message, which the client would read as the rest of that message");
	else
		client_server_lost(c, "server connection lost; the current transaction, if any, was not committed");
}

static bool client_on_capturing(void *session, size_t *max_message)
{
	Client *c = session;
	*max_message = c->rt->config->cache.max_result;
	return c->cache && c->cache->fill.active;
}

static void client_on_capture(void *session, uint8_t type, const uint8_t *msg, size_t total, bool complete)
{
	Client *c = session;
	if (c->state == CL_CLOSED)
		return;
	if (!complete)
		c->cache->fill.failed = true;
	else
		cache_fill_message(c->rt->cache, c->cache, type, msg, total);
}

static const ServerEvents client_server_events = {
	.reply = client_on_reply,
	.ready_hold = client_on_ready_hold,
	.hold_dropped = client_on_hold_dropped,
	.ready = client_on_ready,
	.parameter = client_on_parameter,
	.discarded = client_on_discarded,
	.statements_cleared = client_on_statements_cleared,
	.statement_gone = client_on_statement_gone,
	.setting_failed = client_on_setting_failed,
	.committed = client_on_committed,
	.may_release = client_on_may_release,
	.needs_reset = client_on_needs_reset,
	.released = client_on_released,
	.drained = client_on_server_drained,
	.lost = client_on_lost,
	.capturing = client_on_capturing,
	.capture = client_on_capture,
};

/* ---- links with the pool ---- */

static void client_on_granted(PoolWaiter *w, Server *s) { client_linked(list_entry(w, Client, wait), s); }

static void client_on_queued(PoolWaiter *w, int64_t timeout_ms)
{
	Client *c = list_entry(w, Client, wait);
	conn_stop_reading(&c->conn);
	if (timeout_ms > 0)
		client_set_timer(c, timeout_ms);
}

static void client_on_login_ready(PoolWaiter *w) { client_login_ready(list_entry(w, Client, wait)); }

static void client_on_wait_failed(PoolWaiter *w, const char *sqlstate, const char *message)
{
	client_wait_failed(list_entry(w, Client, wait), sqlstate, message);
}

static void client_on_rerouted(PoolWaiter *w) { statement_reroute_waiter(list_entry(w, Client, wait)); }

static const PoolWaiterOps client_pool_waiter_ops = {
	.granted = client_on_granted,
	.queued = client_on_queued,
	.login_ready = client_on_login_ready,
	.failed = client_on_wait_failed,
	.rerouted = client_on_rerouted,
};

void client_linked(Client *c, Server *s)
{
	c->ever_linked = true;
	stats_client_linked(c, s);
	client_set_timer(c, 0);
	c->server = s;
	c->state = CL_ACTIVE;
	server_attach(s, c, &client_server_events, &c->conn, &c->params, c->tx_local == 'I' && !c->held_begin);
	conn_start_reading(&c->conn);
	if (!c->processing) /* otherwise client_process goes on with the new server itself */
		conn_kick_pending(&c->conn);
}

void client_unlinked(Client *c)
{
	c->server = NULL;
	if (c->state == CL_ACTIVE)
		c->state = CL_IDLE;
	if (c->close_after_first_tx)
		c->close_at_idle = true;
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
	switch (c->state) {
	case CL_STARTUP:
	case CL_AUTH:
	case CL_WAIT_LOGIN:
		/* A client logging in as the shutdown (or a hand-over to a new pgrelay) begins came for a
		 * transaction: it gets one, and is closed after it (or at shutdown_timeout). So does one
		 * that logged in and has not sent its first request yet. */
		c->close_after_first_tx = true;
		return;
	case CL_IDLE:
		if (!c->ever_linked && !c->admin) {
			c->close_after_first_tx = true;
			return;
		}
		break;
	default:
		break;
	}
	c->close_at_idle = true;
	switch (c->state) {
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

static void client_on_timer(void *arg)
{
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

