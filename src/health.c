/*
 * health — backend health checks on the event loop (see health.h for what it owns).
 *
 * Each backend runs one probe at a time: every health.interval a tick starts a probe on every
 * backend that has none in flight. A probe reuses the kept-open connection, or (re)connects first,
 * then sends one query; the connection is a pgasync handle (pgasync.c drives libpq on the loop).
 * A probe that has not finished within health.timeout (one deadline for connect and query, kept
 * here) fails; any failure closes the connection and the next probe reconnects.
 */
#include "health.h"

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns.h"
#include "log.h"
#include "loop.h"
#include "pgasync.h"
#include "xalloc.h"

#define WHO "health"

static const char PROBE_SQL[] =
	"SELECT pg_is_in_recovery(), "
	"CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
	"CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() "
	"THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) ELSE 0 END";

typedef struct Backend Backend;

struct Backend {
	BackendHealth pub; /* first: health_backend returns &b->pub */
	HealthChecker *h;
	Backend *primary; /* replicas: their service's primary (current configuration) */

	/* Copied from the configuration. */
	char *service;
	char *host;
	int port;
	char *dbname;
	char *user;
	char *password;
	ConfigTlsMode tls_mode;
	char *ca;

	PgAsync *pa;
	bool probing; /* a probe is in flight (its deadline armed) */
	LoopTimer ev_timeout;
	bool reused;  /* this probe runs on the kept-open connection (not one it opened itself) */
	bool retried; /* this probe already replaced a broken kept-open connection */

	/* Result collected while the query's results arrive. */
	bool got_row;
	bool row_in_recovery;
	uint64_t row_lsn;
	double row_lag_seconds;
	char row_error[256];
};

struct HealthChecker {
	struct event_base *base;
	struct evdns_base *dns; /* shared by the backends' connections; made for the first host name */
	ConfigHealth cfg;
	bool allow_cleartext; /* proxy.allow_cleartext_without_tls */
	Backend **cur;
	size_t n_cur;
	Backend **retired; /* removed from the configuration: kept until health_stop */
	size_t n_retired;
	struct event *ev_tick;
};

static void probe_start(Backend *b);

/* ---- pure helpers ---- */

static bool parse_hex32(const char *s, size_t len, uint32_t *out)
{
	if (len == 0 || len > 8)
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		v = (v << 4) | d;
	}
	*out = v;
	return true;
}

bool health_parse_lsn(const char *text, uint64_t *out)
{
	if (!text)
		return false;
	const char *slash = strchr(text, '/');
	if (!slash)
		return false;
	uint32_t hi, lo;
	if (!parse_hex32(text, (size_t)(slash - text), &hi) || !parse_hex32(slash + 1, strlen(slash + 1), &lo))
		return false;
	*out = ((uint64_t)hi << 32) | lo;
	return true;
}

static bool str_eq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static void free_secret(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

/* Stops whatever is in flight without counting it as a result. */
static void probe_abandon(Backend *b)
{
	loop_timer_stop(&b->ev_timeout);
	pgasync_close(b->pa);
	b->probing = false;
}

/* ---- results and transitions ---- */

static void fmt_lsn(char *buf, size_t len, uint64_t lsn)
{
	snprintf(buf, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

static void describe_state(const Backend *b, char *buf, size_t len)
{
	char lsn[32];
	fmt_lsn(lsn, sizeof lsn, b->pub.lsn);
	if (b->pub.replica_index < 0)
		snprintf(buf, len, "%s, WAL LSN %s", b->pub.in_recovery ? "IN RECOVERY" : "primary", lsn);
	else if (!b->pub.in_recovery)
		snprintf(buf, len, "NOT in recovery, WAL LSN %s", lsn);
	else
		snprintf(buf, len, "in recovery, replay LSN %s, %llu bytes and %.1f s behind", lsn,
			 (unsigned long long)b->pub.lag_bytes, b->pub.lag_seconds);
}

static void update_lag(Backend *b)
{
	BackendHealth *p = &b->pub;
	const ConfigHealth *c = &b->h->cfg;
	/* The primary's last known LSN: when it is stale (primary down) the lag is a lower bound. */
	const Backend *pr = b->primary;
	if (pr && pr->pub.have_result && !pr->pub.unchecked)
		p->lag_bytes = pr->pub.lsn > p->lsn ? pr->pub.lsn - p->lsn : 0;
	else
		p->lag_bytes = 0;
	bool over_bytes = c->max_lag_bytes > 0 && p->lag_bytes > (uint64_t)c->max_lag_bytes;
	bool over_time = c->max_lag_ms > 0 && p->lag_seconds * 1000.0 > (double)c->max_lag_ms;
	bool lagging = p->in_recovery && (over_bytes || over_time);
	if (lagging == p->lagging)
		return;
	p->lagging = lagging;
	if (lagging) {
		if (over_bytes)
			log_warning(WHO, "%s is lagging: %llu bytes of WAL behind its primary (max_lag %lld bytes); no reads until it catches up",
				    p->label, (unsigned long long)p->lag_bytes, (long long)c->max_lag_bytes);
		else
			log_warning(WHO, "%s is lagging: replay %.1f s behind (max_lag %lld ms); no reads until it catches up",
				    p->label, p->lag_seconds, (long long)c->max_lag_ms);
	} else {
		log_info(WHO, "%s has caught up (%llu bytes, %.1f s behind)", p->label, (unsigned long long)p->lag_bytes,
			 p->lag_seconds);
	}
}

static void record_success(Backend *b, bool in_recovery, uint64_t lsn, double lag_seconds)
{
	BackendHealth *p = &b->pub;
	bool first = !p->have_result;
	bool was_in_recovery = p->in_recovery;
	p->checks++;
	p->last_check_ms = loop_now_ms();
	p->consecutive_failures = 0;
	p->consecutive_successes++;
	p->in_recovery = in_recovery;
	p->lsn = lsn;
	p->lag_seconds = lag_seconds < 0 ? 0 : lag_seconds;
	p->have_result = true;

	bool replica = p->replica_index >= 0;
	if (replica != in_recovery && (first || was_in_recovery != in_recovery)) {
		if (replica)
			log_warning(WHO, "%s is NOT in recovery (promoted?): configured as a replica, it gets no reads while it is not a standby",
				    p->label);
		else
			log_warning(WHO, "%s IS IN RECOVERY (a standby?): configured as the primary, writes to it will fail",
				    p->label);
	} else if (!first && replica == in_recovery && was_in_recovery != in_recovery) {
		log_info(WHO, "%s is %s again, as configured", p->label, replica ? "in recovery" : "out of recovery");
	}
	if (replica) {
		update_lag(b);
	} else {
		p->lag_bytes = 0;
		/* Replicas that answered before their primary's first answer had no LSN to compare with. */
		if (first)
			for (size_t i = 0; i < b->h->n_cur; i++)
				if (b->h->cur[i]->primary == b && b->h->cur[i]->pub.have_result)
					update_lag(b->h->cur[i]);
	}

	char state[160];
	describe_state(b, state, sizeof state);
	if (!p->up && p->consecutive_successes >= b->h->cfg.recover_after) {
		p->up = true;
		log_info(WHO, "%s is up again after %d successful check%s (%s)", p->label, p->consecutive_successes,
			 p->consecutive_successes == 1 ? "" : "s", state);
	} else if (first && p->up) {
		log_info(WHO, "%s is up (first check: %s)", p->label, state);
	} else {
		log_debug(WHO, "%s checked: %s", p->label, state);
	}
}

static void record_failure(Backend *b, const char *message)
{
	BackendHealth *p = &b->pub;
	p->checks++;
	p->errors++;
	p->last_check_ms = loop_now_ms();
	p->consecutive_successes = 0;
	p->consecutive_failures++;
	snprintf(p->last_error, sizeof p->last_error, "%s", message);
	int fail_after = b->h->cfg.fail_after;
	if (p->up && p->consecutive_failures >= fail_after) {
		p->up = false;
		log_warning(WHO, "%s is down after %d failed check%s: %s", p->label, p->consecutive_failures,
			    p->consecutive_failures == 1 ? "" : "s", p->last_error);
	} else if (p->up && p->consecutive_failures == 1) {
		log_info(WHO, "%s check failed (%d more in a row mark it down): %s", p->label, fail_after - 1, p->last_error);
	} else {
		log_debug(WHO, "%s check failed (%d in a row): %s", p->label, p->consecutive_failures, p->last_error);
	}
}

static void connect_begin(Backend *b);

/* Ends the probe as a failure. */
static void probe_failed_final(Backend *b, const char *message)
{
	char copy[sizeof b->pub.last_error];
	log_one_line(copy, sizeof copy, message); /* message may live in the PGconn about to be freed */
	probe_abandon(b);
	record_failure(b, copy);
}

/* A kept-open connection that broke since the last probe (server closed idle connections,
 * pg_terminate_backend, a restart) is not the backend failing: the probe reconnects once at once,
 * within the same deadline, and only a failure of that fresh connection counts. querying: the
 * failure came while the probe query ran. */
static void probe_failed(Backend *b, const char *message, bool querying)
{
	if (b->reused && !b->retried && querying) {
		char copy[sizeof b->pub.last_error];
		log_one_line(copy, sizeof copy, message);
		log_debug(WHO, "%s: kept-open connection broke (%s): reconnecting", b->pub.label, copy);
		b->retried = true;
		b->reused = false;
		connect_begin(b);
		return;
	}
	probe_failed_final(b, message);
}

/* ---- the probe ---- */

static void on_timeout(void *arg)
{
	Backend *b = arg;
	if (!b->probing)
		return;
	PgAsyncPhase ph = pgasync_phase(b->pa);
	char msg[128];
	snprintf(msg, sizeof msg, "no answer within %lld ms (%s)", (long long)b->h->cfg.timeout_ms,
		 ph == PGASYNC_RESOLVING ? "resolving the host name" :
		 ph == PGASYNC_QUERYING ? "waiting for the probe query" : "connecting");
	probe_failed_final(b, msg);
}

static void query_send(Backend *b)
{
	b->got_row = false;
	b->row_error[0] = '\0';
	if (!pgasync_query(b->pa, PROBE_SQL, 0)) /* the probe's own deadline counts */
		probe_failed(b, "cannot send the probe query", true);
}

/* ---- pgasync callbacks ---- */

static void on_connected(void *arg) { query_send(arg); }

static bool on_result(void *arg, PGresult *res)
{
	Backend *b = arg;
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 3 && !b->row_error[0]) {
		const char *rec = PQgetvalue(res, 0, 0);
		const char *lsn = PQgetvalue(res, 0, 1);
		const char *lag = PQgetvalue(res, 0, 2);
		b->row_in_recovery = rec[0] == 't';
		b->row_lsn = 0;
		if (!PQgetisnull(res, 0, 1) && !health_parse_lsn(lsn, &b->row_lsn))
			snprintf(b->row_error, sizeof b->row_error, "unexpected LSN \"%.40s\" in the probe's answer", lsn);
		b->row_lag_seconds = PQgetisnull(res, 0, 2) ? 0 : strtod(lag, NULL);
		b->got_row = true;
	} else if (!b->row_error[0]) {
		const char *m = PQresultErrorMessage(res);
		snprintf(b->row_error, sizeof b->row_error, "probe query failed: %s", m && *m ? m : PQresStatus(st));
	}
	return true;
}

/* Every result of the probe query has been read. */
static void on_done(void *arg)
{
	Backend *b = arg;
	if (b->row_error[0] || !b->got_row) {
		char msg[300];
		snprintf(msg, sizeof msg, "%s", b->row_error[0] ? b->row_error : "the probe query returned no row");
		probe_failed(b, msg, true);
		return;
	}
	loop_timer_stop(&b->ev_timeout);
	b->probing = false;
	record_success(b, b->row_in_recovery, b->row_lsn, b->row_lag_seconds);
}

static void on_failed(void *arg, PgAsyncPhase phase, const char *message)
{
	probe_failed(arg, message, phase == PGASYNC_QUERYING);
}

/* Server notices (e.g. "terminating connection due to immediate shutdown command") go to the log
 * instead of libpq's default, stderr. */
static void on_notice(void *arg, const char *message)
{
	Backend *b = arg;
	log_info(WHO, "%s says: %s", b->pub.label, message);
}

/* Opens the connection (closing what was open); the probe query follows once connected. */
static void connect_begin(Backend *b)
{
	const char *keys[16], *vals[16];
	size_t n = 0;
	char port[16], timeout[24];
	snprintf(port, sizeof port, "%d", b->port);
	/* libpq's connect_timeout is whole seconds (and only enforced by blocking calls): the probe's
	 * own timer is what counts. */
	snprintf(timeout, sizeof timeout, "%lld", (long long)((b->h->cfg.timeout_ms + 999) / 1000));
	keys[n] = "host", vals[n++] = b->host; /* a name is resolved with evdns by pgasync */
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = b->dbname;
	keys[n] = "user", vals[n++] = b->user;
	if (b->password)
		keys[n] = "password", vals[n++] = b->password;
	keys[n] = "sslmode", vals[n++] = config_tls_mode_name(b->tls_mode);
	if (b->tls_mode == CONFIG_TLS_VERIFY_FULL && b->ca)
		keys[n] = "sslrootcert", vals[n++] = b->ca;
	keys[n] = "connect_timeout", vals[n++] = timeout;
	keys[n] = "application_name", vals[n++] = "pgrelay-health";
	/* Like the pool (proxy.allow_cleartext_without_tls), never send a cleartext password over a
	 * connection that may be plain TCP. libpq learned require_auth in 16; with older ones (Debian
	 * 12 has 15) a server that asks for one gets it: see health.h. */
	if (!b->h->allow_cleartext && b->host[0] != '/' && b->tls_mode != CONFIG_TLS_REQUIRE &&
	    b->tls_mode != CONFIG_TLS_VERIFY_FULL && PQlibVersion() >= 160000)
		keys[n] = "require_auth", vals[n++] = "!password";
	keys[n] = NULL, vals[n] = NULL;
	pgasync_connect(b->pa, keys, vals, 0); /* the probe's own deadline counts */
}

static void probe_start(Backend *b)
{
	if (b->pub.unchecked || b->pub.removed || b->probing)
		return;
	loop_timer_start(&b->ev_timeout, b->h->cfg.timeout_ms);
	b->probing = true;
	b->retried = false;
	PGconn *conn = pgasync_conn(b->pa);
	b->reused = pgasync_phase(b->pa) == PGASYNC_IDLE && PQstatus(conn) == CONNECTION_OK;
	if (b->reused)
		query_send(b);
	else
		connect_begin(b);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	HealthChecker *h = arg;
	for (size_t i = 0; i < h->n_cur; i++)
		probe_start(h->cur[i]);
}

/* ---- backends and configuration ---- */

static void backend_set_credentials(Backend *b, const ConfigService *svc, const ConfigBackend *be)
{
	free(b->user);
	free_secret(b->password);
	free(b->ca);
	b->user = xstrdup(be->user);
	b->password = xstrdup(be->password);
	b->tls_mode = svc->tls.mode;
	b->ca = xstrdup(svc->tls.ca);
}

static Backend *backend_new(HealthChecker *h, const ConfigService *svc, int index)
{
	const ConfigBackend *be = config_backend(svc, index);
	Backend *b = xcalloc(1, sizeof *b);
	b->h = h;
	b->service = xstrdup(svc->name);
	b->host = xstrdup(be->host);
	b->port = be->port;
	b->dbname = xstrdup(be->dbname);
	backend_set_credentials(b, svc, be);
	loop_timer_init(&b->ev_timeout, h->base, on_timeout, b);
	/* One resolver for every backend's lookups, made for the first host name. */
	if (!h->dns && b->host[0] != '/' && !dns_is_numeric(b->host))
		h->dns = dns_base_new(h->base);

	BackendHealth *p = &b->pub;
	if (index < 0)
		snprintf(p->label, sizeof p->label, "%s primary %s:%d", svc->name, be->host, be->port);
	else
		snprintf(p->label, sizeof p->label, "%s replica %d %s:%d", svc->name, index + 1, be->host, be->port);
	p->service = b->service;
	p->replica_index = index;
	p->up = true;
	p->in_recovery = index >= 0; /* what the role says, until the first answer */
	p->unchecked = !b->user;
	PgAsyncHandler ph = {.connected = on_connected, .result = on_result, .done = on_done, .failed = on_failed,
			     .notice = on_notice};
	char who[sizeof p->label + 8];
	snprintf(who, sizeof who, "health %s", p->label);
	b->pa = pgasync_new(h->base, h->dns, who, &ph, b);
	if (p->unchecked)
		log_info(WHO, "%s has no user configured: not checked, treated as up", p->label);
	else
		log_info(WHO, "checking %s every %lld ms", p->label, (long long)h->cfg.interval_ms);
	return b;
}

static void backend_free(Backend *b)
{
	probe_abandon(b);
	pgasync_free(b->pa);
	free(b->service);
	free(b->host);
	free(b->dbname);
	free(b->user);
	free_secret(b->password);
	free(b->ca);
	free(b);
}

static void retire(HealthChecker *h, Backend *b)
{
	probe_abandon(b);
	b->pub.removed = true;
	b->pub.up = false;
	b->primary = NULL;
	log_info(WHO, "%s is no longer in the configuration: checks stopped", b->pub.label);
	h->retired = xalloc_check(realloc(h->retired, (h->n_retired + 1) * sizeof *h->retired));
	h->retired[h->n_retired++] = b;
}

static void tick_schedule(HealthChecker *h)
{
	int64_t ms = h->cfg.interval_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	event_del(h->ev_tick);
	event_add(h->ev_tick, &tv);
}

static void apply(HealthChecker *h, const Config *cfg, bool initial)
{
	bool interval_changed = h->cfg.interval_ms != cfg->health.interval_ms;
	h->cfg = cfg->health;
	h->allow_cleartext = cfg->allow_cleartext_without_tls;

	size_t total = 0;
	for (size_t s = 0; s < cfg->n_services; s++)
		total += 1 + cfg->services[s].n_replicas;
	Backend **next = xcalloc(total, sizeof *next);
	Backend **fresh = xcalloc(total, sizeof *fresh);
	size_t n = 0, n_fresh = 0;

	for (size_t s = 0; s < cfg->n_services; s++) {
		const ConfigService *svc = &cfg->services[s];
		Backend *primary = NULL;
		for (int idx = -1; idx < (int)svc->n_replicas; idx++) {
			const ConfigBackend *be = config_backend(svc, idx);
			Backend *b = NULL;
			for (size_t i = 0; i < h->n_cur; i++) {
				Backend *o = h->cur[i];
				if (o && o->pub.replica_index == idx && strcmp(o->service, svc->name) == 0 &&
				    strcmp(o->host, be->host) == 0 && o->port == be->port && str_eq(o->dbname, be->dbname)) {
					b = o;
					h->cur[i] = NULL; /* taken */
					break;
				}
			}
			if (b) {
				bool creds = !str_eq(b->user, be->user) || !str_eq(b->password, be->password) ||
					     b->tls_mode != svc->tls.mode || !str_eq(b->ca, svc->tls.ca);
				if (creds) {
					probe_abandon(b); /* reconnect with the new settings at the next probe */
					backend_set_credentials(b, svc, be);
					bool unchecked = !b->user;
					if (unchecked != b->pub.unchecked) {
						b->pub.unchecked = unchecked;
						if (unchecked) {
							b->pub.up = true;
							b->pub.lagging = false;
							b->pub.in_recovery = idx >= 0;
							log_info(WHO, "%s has no user configured any more: not checked, treated as up",
								 b->pub.label);
						} else {
							log_info(WHO, "checking %s every %lld ms", b->pub.label,
								 (long long)h->cfg.interval_ms);
							fresh[n_fresh++] = b;
						}
					} else {
						log_info(WHO, "%s: credentials or TLS settings changed: reconnecting", b->pub.label);
						fresh[n_fresh++] = b;
					}
				}
			} else {
				b = backend_new(h, svc, idx);
				fresh[n_fresh++] = b;
			}
			if (idx < 0)
				primary = b;
			b->primary = idx < 0 ? NULL : primary;
			next[n++] = b;
		}
	}
	for (size_t i = 0; i < h->n_cur; i++)
		if (h->cur[i])
			retire(h, h->cur[i]);
	free(h->cur);
	h->cur = next;
	h->n_cur = n;

	if (initial || interval_changed)
		tick_schedule(h);
	/* New backends (and reconnecting ones) get their first probe now, not an interval later. */
	for (size_t i = 0; i < n_fresh; i++)
		probe_start(fresh[i]);
	free(fresh);
}

HealthChecker *health_start(struct event_base *base, const Config *cfg)
{
	HealthChecker *h = xcalloc(1, sizeof *h);
	h->base = base;
	h->ev_tick = xalloc_check(event_new(base, -1, EV_PERSIST, on_tick, h));
	apply(h, cfg, true);
	return h;
}

void health_reconfigure(HealthChecker *h, const Config *cfg)
{
	if (h)
		apply(h, cfg, false);
}

void health_stop(HealthChecker *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n_cur; i++)
		backend_free(h->cur[i]);
	for (size_t i = 0; i < h->n_retired; i++)
		backend_free(h->retired[i]);
	free(h->cur);
	free(h->retired);
	event_free(h->ev_tick);
	if (h->dns)
		evdns_base_free(h->dns, 1);
	free(h);
}

BackendHealth *health_backend(HealthChecker *h, const char *service, int replica_index)
{
	if (!h || !service)
		return NULL;
	for (size_t i = 0; i < h->n_cur; i++) {
		Backend *b = h->cur[i];
		if (b->pub.replica_index == replica_index && strcmp(b->service, service) == 0)
			return &b->pub;
	}
	return NULL;
}

bool health_replica_usable(const BackendHealth *b)
{
	return b && !b->removed && b->up && !b->lagging && b->in_recovery;
}

size_t health_count(const HealthChecker *h) { return h ? h->n_cur : 0; }

BackendHealth *health_at(HealthChecker *h, size_t i)
{
	if (!h || i >= h->n_cur)
		return NULL;
	return &h->cur[i]->pub;
}
