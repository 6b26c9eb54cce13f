/*
 * admin — the admin console (see admin.h): command parsing, PgBouncer-compatible result sets and
 * pgrelay's own SHOW commands, PAUSE/RESUME and the other control commands.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

#include "access.h"
#include "admin_parse.h"
#include "cache.h"
#include "cache_l1.h"
#include "catalog_loader.h"
#include "config_keys.h"
#include "cancel.h"
#include "health.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "redis.h"
#include "server.h"
#include "stats.h"
#include "xalloc.h"

#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_NUMERIC 1700

typedef struct AdminCol {
	const char *name;
	uint32_t type;
} AdminCol;

/* State of the console kept on the runtime. */
typedef struct AdminState {
	char **disabled; /* DISABLE db */
	size_t n_disabled;
	List pausing;    /* console clients waiting for PAUSE to complete (Client.wait_node) */
	struct event *ev_pause;
} AdminState;

/* ---- helpers ---- */

bool admin_is_console(const Config *cfg, const char *database)
{
	return database && (strcmp(database, "pgrelay") == 0 || strcmp(database, "pgbouncer") == 0) &&
	       !config_find_database(cfg, database);
}

static bool in_names(char *const *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], name) == 0)
			return true;
	return false;
}

AdminRole admin_role(const Config *cfg, const char *user)
{
	if (in_names(cfg->admin.users, cfg->admin.n_users, user))
		return ADMIN_FULL;
	if (in_names(cfg->admin.stats_users, cfg->admin.n_stats_users, user))
		return ADMIN_STATS;
	return ADMIN_NONE;
}

static AdminState *state(Runtime *rt)
{
	if (!rt->admin) {
		AdminState *a = calloc(1, sizeof *a);
		if (!a)
			return NULL;
		list_init(&a->pausing);
		rt->admin = a;
	}
	return rt->admin;
}

void admin_free(Runtime *rt)
{
	AdminState *a = rt->admin;
	if (!a)
		return;
	for (size_t i = 0; i < a->n_disabled; i++)
		free(a->disabled[i]);
	free(a->disabled);
	if (a->ev_pause)
		event_free(a->ev_pause);
	free(a);
	rt->admin = NULL;
}

bool admin_database_disabled(const Runtime *rt, const char *database)
{
	const AdminState *a = rt->admin;
	return a && database && in_names(a->disabled, a->n_disabled, database);
}

static void send_buf(Client *c, Buf *b)
{
	conn_send_buf(&c->conn, b);
	buf_reset(b);
}

static void row_description(Buf *b, const AdminCol *cols, size_t n)
{
	size_t off = proto_begin(b, 'T');
	proto_put_u16(b, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		proto_put_str(b, cols[i].name);
		proto_put_u32(b, 0); /* table */
		proto_put_u16(b, 0); /* column */
		proto_put_u32(b, cols[i].type);
		proto_put_u16(b, cols[i].type == OID_INT4 ? 4 : cols[i].type == OID_INT8 ? 8 : 0xffff);
		proto_put_u32(b, 0xffffffffu); /* typmod */
		proto_put_u16(b, 0);           /* text */
	}
	proto_end(b, off);
}

/* A DataRow under construction: values are appended, the count is patched at the end. */
typedef struct Row {
	Buf *b;
	size_t off, count_at;
	uint16_t n;
} Row;

static Row row_begin(Buf *b)
{
	Row r = {.b = b, .off = proto_begin(b, 'D')};
	r.count_at = buf_used(b);
	proto_put_u16(b, 0);
	return r;
}

static void row_text(Row *r, const char *s)
{
	r->n++;
	if (!s) {
		proto_put_u32(r->b, 0xffffffffu);
		return;
	}
	size_t len = strlen(s);
	proto_put_u32(r->b, (uint32_t)len);
	buf_append(r->b, s, len);
}

__attribute__((format(printf, 2, 3))) static void row_fmt(Row *r, const char *fmt, ...)
{
	char v[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v, sizeof v, fmt, ap);
	va_end(ap);
	row_text(r, v);
}

static void row_int(Row *r, long long v) { row_fmt(r, "%lld", v); }
static void row_u64(Row *r, uint64_t v) { row_fmt(r, "%llu", (unsigned long long)v); }

static void row_end(Row *r)
{
	uint8_t *p = r->b->data + r->b->start + r->count_at;
	p[0] = (uint8_t)(r->n >> 8);
	p[1] = (uint8_t)r->n;
	proto_end(r->b, r->off);
}

static void complete(Buf *b, const char *tag)
{
	size_t off = proto_begin(b, 'C');
	proto_put_str(b, tag);
	proto_end(b, off);
}

static void notice(Buf *b, const char *message)
{
	size_t off = proto_begin(b, 'N');
	proto_put_u8(b, 'S');
	proto_put_str(b, "NOTICE");
	proto_put_u8(b, 'V');
	proto_put_str(b, "NOTICE");
	proto_put_u8(b, 'C');
	proto_put_str(b, "00000");
	proto_put_u8(b, 'M');
	proto_put_str(b, message);
	proto_put_u8(b, 0);
	proto_end(b, off);
}

static void error(Buf *b, const char *sqlstate, const char *message, const char *hint)
{
	proto_build_error(b, "ERROR", sqlstate, message, NULL, hint);
}

/* Wall-clock text of a monotonic ms timestamp, like PgBouncer's "2026-11-26 10:00:00 UTC". */
static void wall_time(char *buf, size_t len, int64_t mono_ms)
{
	if (mono_ms <= 0) {
		snprintf(buf, len, "%s", "");
		return;
	}
	time_t t = time(NULL) - (time_t)((loop_now_ms() - mono_ms) / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void sock_addr(int fd, bool local, char *host, size_t hlen, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	*port = 0;
	snprintf(host, hlen, "%s", "");
	if (fd < 0 || (local ? getsockname(fd, (struct sockaddr *)&ss, &sl) : getpeername(fd, (struct sockaddr *)&ss, &sl)))
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hlen);
		*port = ntohs(in->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hlen);
		*port = ntohs(in6->sin6_port);
	} else if (ss.ss_family == AF_UNIX) {
		snprintf(host, hlen, "%s", "unix");
	}
}

static const char *pool_database(const Pool *p, char *buf, size_t len)
{
	if (p->replica < 0)
		return p->service_name;
	snprintf(buf, len, "%s/replica%d", p->service_name, p->replica + 1);
	return buf;
}

/* ---- SHOW commands ---- */

static void show_pools(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {
		{"database", OID_TEXT}, {"user", OID_TEXT}, {"cl_active", OID_INT4}, {"cl_waiting", OID_INT4},
		{"cl_active_cancel_req", OID_INT4}, {"cl_waiting_cancel_req", OID_INT4}, {"sv_active", OID_INT4},
		{"sv_active_cancel", OID_INT4}, {"sv_being_canceled", OID_INT4}, {"sv_idle", OID_INT4},
		{"sv_used", OID_INT4}, {"sv_tested", OID_INT4}, {"sv_login", OID_INT4}, {"maxwait", OID_INT4},
		{"maxwait_us", OID_INT4}, {"pool_mode", OID_TEXT},
	};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	ListNode *n;
	int64_t now = loop_now_ms();
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		int64_t maxwait = 0;
		ListNode *w;
		list_for_each(w, &p->waiting) {
			Client *c = list_entry(w, Client, wait.node);
			if (now - c->wait_start_ms > maxwait)
				maxwait = now - c->wait_start_ms;
		}
		char db[96];
		Row r = row_begin(b);
		row_text(&r, pool_database(p, db, sizeof db));
		row_text(&r, p->user);
		row_int(&r, (long long)p->active.count);
		row_int(&r, (long long)p->waiting.count);
		row_int(&r, 0);
		row_int(&r, 0);
		row_int(&r, (long long)p->active.count);
		row_int(&r, 0);
		row_int(&r, 0);
		row_int(&r, (long long)p->idle.count);
		row_int(&r, (long long)p->resetting.count);
		row_int(&r, 0);
		row_int(&r, (long long)p->opening.count);
		row_int(&r, (long long)(maxwait / 1000));
		row_int(&r, (long long)(maxwait % 1000) * 1000);
		row_text(&r, p->paused ? "paused" : "transaction");
		row_end(&r);
	}
	complete(b, "SHOW");
}

static const AdminCol conn_cols[] = {
	{"type", OID_TEXT},         {"user", OID_TEXT},         {"database", OID_TEXT},   {"state", OID_TEXT},
	{"addr", OID_TEXT},         {"port", OID_INT4},         {"local_addr", OID_TEXT}, {"local_port", OID_INT4},
	{"connect_time", OID_TEXT}, {"request_time", OID_TEXT}, {"wait", OID_INT4},       {"wait_us", OID_INT4},
	{"close_needed", OID_INT4}, {"ptr", OID_TEXT},          {"link", OID_TEXT},       {"remote_pid", OID_INT4},
	{"tls", OID_TEXT},          {"application_name", OID_TEXT},
};

static const char *client_state(const Client *c)
{
	switch (c->state) {
	case CL_WAITING: return "waiting";
	case CL_ACTIVE: return "active";
	case CL_IDLE: return "idle";
	default: return "login";
	}
}

static void show_clients(Runtime *rt, Buf *b)
{
	row_description(b, conn_cols, sizeof conn_cols / sizeof conn_cols[0]);
	ListNode *n;
	int64_t now = loop_now_ms();
	list_for_each(n, &rt->clients) {
		Client *c = list_entry(n, Client, node);
		char addr[64], laddr[64], ct[40], ptr[24], link[24];
		int port, lport;
		sock_addr(c->conn.fd, false, addr, sizeof addr, &port);
		sock_addr(c->conn.fd, true, laddr, sizeof laddr, &lport);
		wall_time(ct, sizeof ct, c->connect_ms);
		snprintf(ptr, sizeof ptr, "%p", (void *)c);
		snprintf(link, sizeof link, "%p", (void *)c->server);
		int64_t wait = c->state == CL_WAITING ? now - c->wait_start_ms : 0;
		Row r = row_begin(b);
		row_text(&r, "C");
		row_text(&r, c->user);
		row_text(&r, c->database);
		row_text(&r, client_state(c));
		row_text(&r, addr);
		row_int(&r, port);
		row_text(&r, laddr);
		row_int(&r, lport);
		row_text(&r, ct);
		row_text(&r, ct);
		row_int(&r, (long long)(wait / 1000));
		row_int(&r, (long long)(wait % 1000) * 1000);
		row_int(&r, c->close_at_idle);
		row_text(&r, ptr);
		row_text(&r, c->server ? link : "");
		row_int(&r, 0);
		row_text(&r, c->tls ? "TLS" : "");
		row_text(&r, params_get(&c->params, "application_name") ? params_get(&c->params, "application_name") : "");
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void show_server_list(Buf *b, Pool *p, List *list, const char *st)
{
	ListNode *n;
	list_for_each(n, list) {
		Server *s = list_entry(n, Server, pool_node);
		char addr[64], laddr[64], ct[40], rt_[40], ptr[24], link[24], db[96];
		int port, lport;
		sock_addr(s->conn.fd, false, addr, sizeof addr, &port);
		sock_addr(s->conn.fd, true, laddr, sizeof laddr, &lport);
		wall_time(ct, sizeof ct, s->created_ms);
		wall_time(rt_, sizeof rt_, s->last_used_ms);
		snprintf(ptr, sizeof ptr, "%p", (void *)s);
		snprintf(link, sizeof link, "%p", (void *)s->session);
		Row r = row_begin(b);
		row_text(&r, "S");
		row_text(&r, p->server_user ? p->server_user : p->user);
		row_text(&r, pool_database(p, db, sizeof db));
		row_text(&r, st);
		row_text(&r, addr);
		row_int(&r, port);
		row_text(&r, laddr);
		row_int(&r, lport);
		row_text(&r, ct);
		row_text(&r, rt_);
		row_int(&r, 0);
		row_int(&r, 0);
		row_int(&r, s->close_on_release);
		row_text(&r, ptr);
		row_text(&r, s->session ? link : "");
		row_int(&r, (long long)s->be_pid);
		row_text(&r, s->tls ? "TLS" : "");
		row_text(&r, params_get(&s->params, "application_name") ? params_get(&s->params, "application_name") : "");
		row_end(&r);
	}
}

static void show_servers(Runtime *rt, Buf *b)
{
	row_description(b, conn_cols, sizeof conn_cols / sizeof conn_cols[0]);
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		show_server_list(b, p, &p->active, "active");
		show_server_list(b, p, &p->idle, "idle");
		show_server_list(b, p, &p->resetting, "used");
		show_server_list(b, p, &p->opening, "login");
	}
	complete(b, "SHOW");
}

/* SHOW STATS / STATS_TOTALS / STATS_AVERAGES: per client-facing database (the pools of its service;
 * averages summed over them, times averaged weighted by their counts). */
static void db_stats(Runtime *rt, const ConfigDatabase *db, StatsCounters *t, StatsAverages *avg)
{
	memset(t, 0, sizeof *t);
	memset(avg, 0, sizeof *avg);
	uint64_t xw = 0, qw = 0, ww = 0;
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (strcmp(p->service_name, db->service->name) != 0)
			continue;
		const StatsCounters *c = &p->stats.total;
		t->xact_count += c->xact_count;
		t->query_count += c->query_count;
		t->bytes_received += c->bytes_received;
		t->bytes_sent += c->bytes_sent;
		t->xact_time_us += c->xact_time_us;
		t->query_time_us += c->query_time_us;
		t->wait_time_us += c->wait_time_us;
		const StatsAverages *a = &p->stats.avg;
		avg->xact_count += a->xact_count;
		avg->query_count += a->query_count;
		avg->bytes_received += a->bytes_received;
		avg->bytes_sent += a->bytes_sent;
		xw += a->xact_time_us * a->xact_count;
		qw += a->query_time_us * a->query_count;
		ww += a->wait_time_us * a->server_assignment_count;
		avg->server_assignment_count += a->server_assignment_count;
	}
	avg->xact_time_us = avg->xact_count ? xw / avg->xact_count : 0;
	avg->query_time_us = avg->query_count ? qw / avg->query_count : 0;
	avg->wait_time_us = avg->server_assignment_count ? ww / avg->server_assignment_count : 0;
}

static void stats_values(Row *r, uint64_t xacts, uint64_t queries, uint64_t in, uint64_t out, uint64_t xt, uint64_t qt,
			 uint64_t wt)
{
	row_u64(r, xacts);
	row_u64(r, queries);
	row_u64(r, in);
	row_u64(r, out);
	row_u64(r, xt);
	row_u64(r, qt);
	row_u64(r, wt);
}

static void show_stats(Runtime *rt, Buf *b, int which)
{
	static const AdminCol full[] = {
		{"database", OID_TEXT},          {"total_xact_count", OID_NUMERIC}, {"total_query_count", OID_NUMERIC},
		{"total_received", OID_NUMERIC}, {"total_sent", OID_NUMERIC},       {"total_xact_time", OID_NUMERIC},
		{"total_query_time", OID_NUMERIC}, {"total_wait_time", OID_NUMERIC}, {"avg_xact_count", OID_NUMERIC},
		{"avg_query_count", OID_NUMERIC}, {"avg_recv", OID_NUMERIC},        {"avg_sent", OID_NUMERIC},
		{"avg_xact_time", OID_NUMERIC},   {"avg_query_time", OID_NUMERIC},  {"avg_wait_time", OID_NUMERIC},
	};
	static const AdminCol part[] = {
		{"database", OID_TEXT},        {"xact_count", OID_NUMERIC}, {"query_count", OID_NUMERIC},
		{"bytes_received", OID_NUMERIC}, {"bytes_sent", OID_NUMERIC}, {"xact_time", OID_NUMERIC},
		{"query_time", OID_NUMERIC},   {"wait_time", OID_NUMERIC},
	};
	if (which == 0)
		row_description(b, full, sizeof full / sizeof full[0]);
	else
		row_description(b, part, sizeof part / sizeof part[0]);
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_databases; i++) {
		StatsCounters t;
		StatsAverages a;
		db_stats(rt, &cfg->databases[i], &t, &a);
		Row r = row_begin(b);
		row_text(&r, cfg->databases[i].name);
		if (which != 2)
			stats_values(&r, t.xact_count, t.query_count, t.bytes_received, t.bytes_sent, t.xact_time_us,
				     t.query_time_us, t.wait_time_us);
		if (which != 1)
			stats_values(&r, a.xact_count, a.query_count, a.bytes_received, a.bytes_sent, a.xact_time_us,
				     a.query_time_us, a.wait_time_us);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static int db_connections(Runtime *rt, const char *name)
{
	int n = 0;
	ListNode *it;
	list_for_each(it, &rt->clients) {
		Client *c = list_entry(it, Client, node);
		n += c->database && strcmp(c->database, name) == 0;
	}
	return n;
}

static bool service_paused(Runtime *rt, const char *service)
{
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (strcmp(p->service_name, service) == 0 && p->paused)
			return true;
	}
	return false;
}

static void show_databases(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {
		{"name", OID_TEXT},        {"host", OID_TEXT},          {"port", OID_INT4},
		{"database", OID_TEXT},    {"force_user", OID_TEXT},    {"pool_size", OID_INT4},
		{"min_pool_size", OID_INT4}, {"reserve_pool", OID_INT4}, {"pool_mode", OID_TEXT},
		{"max_connections", OID_INT4}, {"current_connections", OID_INT4}, {"paused", OID_INT4},
		{"disabled", OID_INT4},
	};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_databases; i++) {
		const ConfigDatabase *db = &cfg->databases[i];
		const ConfigService *s = db->service;
		Row r = row_begin(b);
		row_text(&r, db->name);
		row_text(&r, s->primary.host);
		row_int(&r, s->primary.port);
		row_text(&r, s->primary.dbname ? s->primary.dbname : s->name);
		row_text(&r, s->primary.user);
		row_int(&r, s->pool.max);
		row_int(&r, s->pool.min);
		row_int(&r, 0);
		row_text(&r, config_pool_mode_name(db->pool_mode));
		row_int(&r, 0);
		row_int(&r, db_connections(rt, db->name));
		row_int(&r, service_paused(rt, s->name));
		row_int(&r, admin_database_disabled(rt, db->name));
		row_end(&r);
	}
	Row r = row_begin(b);
	row_text(&r, "pgrelay");
	row_text(&r, NULL);
	row_int(&r, cfg->listen.port);
	row_text(&r, "pgrelay");
	row_text(&r, "pgrelay");
	row_int(&r, 2);
	row_int(&r, 0);
	row_int(&r, 0);
	row_text(&r, "statement");
	row_int(&r, 0);
	row_int(&r, db_connections(rt, "pgrelay") + db_connections(rt, "pgbouncer"));
	row_int(&r, 0);
	row_int(&r, 0);
	row_end(&r);
	complete(b, "SHOW");
}

static void show_users(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"name", OID_TEXT}, {"pool_mode", OID_TEXT}};
	row_description(b, cols, 2);
	for (size_t i = 0; i < rt->config->n_users; i++) {
		Row r = row_begin(b);
		row_text(&r, rt->config->users[i].name);
		row_text(&r, NULL);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void config_row(void *arg, const char *path, const ConfigKey *key, const char *value)
{
	Row r = row_begin(arg);
	row_text(&r, path);
	/* log.level as it runs (SET log_level changes it until the next reload) */
	row_text(&r, strcmp(path, "log.level") ? value : config_log_level_name(log_level()));
	row_text(&r, key->def);
	row_text(&r, key->flags & CONFIG_KEY_RESTART ? "no" : "yes");
	row_text(&r, config_keys_class(key));
	row_end(&r);
}

/* Every key of the configuration (the key table's paths), its value (secrets masked), its default
 * and whether a reload applies it (PgBouncer's columns, then applies: reload or restart). */
static void show_config(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"key", OID_TEXT}, {"value", OID_TEXT}, {"default", OID_TEXT},
					{"changeable", OID_TEXT}, {"applies", OID_TEXT}};
	row_description(b, cols, 5);
	config_keys_visit(rt->config, config_row, b);
	complete(b, "SHOW");
}

static void show_lists(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"list", OID_TEXT}, {"items", OID_INT4}};
	row_description(b, cols, 2);
	int servers = 0, login = 0;
	ListNode *n;
	list_for_each(n, &rt->pools)
		servers += pool_server_count(list_entry(n, Pool, node));
	list_for_each(n, &rt->clients)
		login += list_entry(n, Client, node)->state < CL_IDLE;
	const struct {
		const char *name;
		long long items;
	} rows[] = {
		{"databases", (long long)rt->config->n_databases}, {"users", (long long)rt->config->n_users},
		{"pools", (long long)rt->pools.count}, {"free_clients", 0},
		{"used_clients", (long long)rt->n_clients}, {"login_clients", login},
		{"free_servers", 0}, {"used_servers", servers},
		{"dns_names", 0}, {"dns_zones", 0}, {"dns_queries", 0}, {"dns_pending", 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		Row r = row_begin(b);
		row_text(&r, rows[i].name);
		row_int(&r, rows[i].items);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void show_mem(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"name", OID_TEXT}, {"size", OID_INT4}, {"used", OID_INT4},
					{"free", OID_INT4}, {"memtotal", OID_INT4}};
	row_description(b, cols, 5);
	int servers = 0;
	ListNode *n;
	list_for_each(n, &rt->pools)
		servers += pool_server_count(list_entry(n, Pool, node));
	const struct {
		const char *name;
		size_t size, used;
	} rows[] = {
		{"client_cache", sizeof(Client), rt->n_clients},
		{"server_cache", sizeof(Server), (size_t)servers},
		{"pool_cache", sizeof(Pool), rt->pools.count},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		Row r = row_begin(b);
		row_text(&r, rows[i].name);
		row_int(&r, (long long)rows[i].size);
		row_int(&r, (long long)rows[i].used);
		row_int(&r, 0);
		row_int(&r, (long long)(rows[i].size * rows[i].used));
		row_end(&r);
	}
	if (rt->cache && rt->cache->l1) {
		CacheL1Stats st;
		cache_l1_stats(rt->cache->l1, &st);
		Row r = row_begin(b);
		row_text(&r, "cache_l1");
		row_int(&r, (long long)CACHE_L1_ENTRY_OVERHEAD);
		row_int(&r, (long long)st.entries);
		row_int(&r, 0);
		row_int(&r, (long long)st.bytes);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void show_version(Buf *b)
{
	static const AdminCol cols[] = {{"version", OID_TEXT}};
	row_description(b, cols, 1);
	Row r = row_begin(b);
	row_text(&r, "pgrelay " PGRELAY_VERSION);
	row_end(&r);
	complete(b, "SHOW");
}

static void show_help(Buf *b)
{
	notice(b, "Console usage");
	notice(b, "SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION");
	notice(b, "SHOW STATS|STATS_TOTALS|STATS_AVERAGES|LISTS|MEM");
	notice(b, "SHOW ROUTES|ACCESS|BACKENDS|CACHE|CATALOG|PREPARED");
	notice(b, "SET key = arg");
	notice(b, "RELOAD");
	notice(b, "PAUSE [<db>]");
	notice(b, "RESUME [<db>]");
	notice(b, "DISABLE <db>");
	notice(b, "ENABLE <db>");
	notice(b, "RECONNECT [<db>]");
	notice(b, "KILL <db>");
	notice(b, "SHUTDOWN");
	complete(b, "SHOW");
}

static void join(char *buf, size_t len, char *const *items, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%s", i ? "," : "", items[i]);
}

static void show_access(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"rule", OID_INT4},    {"line", OID_INT4},   {"type", OID_TEXT},
					{"database", OID_TEXT}, {"user", OID_TEXT},   {"address", OID_TEXT},
					{"method", OID_TEXT},  {"matches", OID_INT8}};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_access; i++) {
		const AccessRule *a = &cfg->access[i];
		char dbs[512], users[512], addr[64];
		join(dbs, sizeof dbs, a->databases, a->n_databases);
		join(users, sizeof users, a->users, a->n_users);
		if (a->all_databases)
			snprintf(dbs, sizeof dbs, "all");
		else if (a->same_user)
			snprintf(dbs + strlen(dbs), sizeof dbs - strlen(dbs), "%ssameuser", a->n_databases ? "," : "");
		if (a->all_users)
			snprintf(users, sizeof users, "all");
		access_format_address(&a->address, addr, sizeof addr);
		Row r = row_begin(b);
		row_int(&r, (long long)i);
		row_int(&r, a->line);
		row_text(&r, access_type_name(a->type));
		row_text(&r, dbs);
		row_text(&r, users);
		row_text(&r, addr);
		row_text(&r, access_method_name(a->method));
		row_u64(&r, i < rt->n_access_hits ? rt->access_hits[i] : 0);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void show_routes(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"rule", OID_INT4},    {"line", OID_INT4},    {"schema", OID_TEXT},
					{"tables", OID_TEXT},  {"service", OID_TEXT}, {"reads", OID_TEXT},
					{"matches", OID_INT8}};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const ConfigRoute *ro = &cfg->routes[i];
		char schemas[512], tables[512];
		join(schemas, sizeof schemas, ro->schemas, ro->n_schemas);
		join(tables, sizeof tables, ro->tables, ro->n_tables);
		Row r = row_begin(b);
		row_int(&r, (long long)i);
		row_int(&r, ro->line);
		row_text(&r, ro->n_schemas ? schemas : NULL);
		row_text(&r, ro->n_tables ? tables : NULL);
		row_text(&r, ro->service_name);
		row_text(&r, config_reads_name(ro->reads));
		row_u64(&r, i < rt->n_route_matches ? rt->route_matches[i] : 0);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void backend_row(Runtime *rt, Buf *b, const ConfigService *svc, int replica, const ConfigBackend *be)
{
	BackendHealth *h = rt->health ? health_backend(rt->health, svc->name, replica) : NULL;
	Row r = row_begin(b);
	row_text(&r, svc->name);
	row_text(&r, replica < 0 ? "primary" : "replica");
	row_int(&r, replica < 0 ? 0 : replica + 1);
	row_text(&r, be->host);
	row_int(&r, be->port);
	if (!h) {
		for (int k = 0; k < 11; k++)
			row_text(&r, NULL);
		row_end(&r);
		return;
	}
	row_text(&r, h->up ? "up" : "down");
	row_int(&r, h->lagging);
	row_int(&r, h->in_recovery);
	row_u64(&r, h->lag_bytes);
	row_fmt(&r, "%.3f", h->lag_seconds);
	if (h->last_check_ms)
		row_fmt(&r, "%.3f", (double)(loop_now_ms() - h->last_check_ms) / 1000.0);
	else
		row_text(&r, NULL);
	row_u64(&r, h->checks);
	row_u64(&r, h->errors);
	row_u64(&r, h->reads_served);
	row_int(&r, h->outstanding);
	row_text(&r, h->last_error);
	row_end(&r);
}

static void show_backends(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {
		{"service", OID_TEXT},      {"role", OID_TEXT},        {"replica", OID_INT4},  {"host", OID_TEXT},
		{"port", OID_INT4},         {"state", OID_TEXT},       {"lagging", OID_INT4},  {"in_recovery", OID_INT4},
		{"lag_bytes", OID_INT8},    {"lag_seconds", OID_NUMERIC}, {"last_check_ago", OID_NUMERIC},
		{"checks", OID_INT8},       {"errors", OID_INT8},      {"reads_served", OID_INT8},
		{"outstanding", OID_INT4},  {"last_error", OID_TEXT},
	};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	const Config *cfg = rt->config;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const ConfigService *s = &cfg->services[i];
		backend_row(rt, b, s, -1, &s->primary);
		for (size_t j = 0; j < s->n_replicas; j++)
			backend_row(rt, b, s, (int)j, &s->replicas[j]);
	}
	complete(b, "SHOW");
}

static void cache_row(Buf *b, const char *tier, uint64_t entries, uint64_t bytes, uint64_t hits, uint64_t misses,
		      uint64_t evictions, uint64_t invalidations, uint64_t redis_errors, uint64_t refused)
{
	Row r = row_begin(b);
	row_text(&r, tier);
	row_u64(&r, entries);
	row_u64(&r, bytes);
	row_u64(&r, hits);
	row_u64(&r, misses);
	if (hits + misses)
		row_fmt(&r, "%.4f", (double)hits / (double)(hits + misses));
	else
		row_text(&r, NULL);
	row_u64(&r, evictions);
	row_u64(&r, invalidations);
	row_u64(&r, redis_errors);
	row_u64(&r, refused);
	row_end(&r);
}

static void show_cache(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {
		{"tier", OID_TEXT},      {"entries", OID_INT8},   {"bytes", OID_INT8},
		{"hits", OID_INT8},      {"misses", OID_INT8},    {"hit_rate", OID_NUMERIC},
		{"evictions", OID_INT8}, {"invalidations", OID_INT8}, {"redis_errors", OID_INT8},
		{"refused", OID_INT8},
	};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	Cache *cache = rt->cache;
	if (cache) {
		const CacheStats *st = &cache->stats;
		CacheL1Stats l1;
		memset(&l1, 0, sizeof l1);
		if (cache->l1)
			cache_l1_stats(cache->l1, &l1);
		/* L1: lookups answered from memory; the rest went on to L2 or the server */
		uint64_t l1_hits = st->hits - st->l2_hits;
		cache_row(b, "l1", l1.entries, l1.bytes, l1_hits, st->lookups - l1_hits, l1.evictions + l1.expirations,
			  st->invalidations, 0, 0);
		if (cache->redis) {
			RedisStats rs;
			redis_client_stats(cache->redis, &rs);
			cache_row(b, "l2", 0, 0, st->l2_hits, st->redis_lookups - st->l2_hits, 0, st->redis_bumps,
				  st->redis_errors + rs.errors + rs.timeouts, st->l2_refused);
		}
		cache_row(b, "total", l1.entries, l1.bytes, st->hits, st->lookups - st->hits, l1.evictions,
			  st->invalidations + st->remote_invalidations + st->wal_invalidations, st->redis_errors,
			  st->l2_refused);
	}
	complete(b, "SHOW");
}

/* What the cache knows of each service's catalog (none while the cache is off). */
static void show_catalog(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {
		{"service", OID_TEXT},     {"state", OID_TEXT},      {"relations", OID_INT8},
		{"rows", OID_INT8},        {"loads", OID_INT8},      {"unchanged", OID_INT8},
		{"failures", OID_INT8},    {"last_load_ago", OID_NUMERIC}, {"query_ms", OID_INT8},
		{"build_ms", OID_INT8},    {"fingerprint", OID_TEXT}, {"last_error", OID_TEXT},
	};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	Cache *cache = rt->cache;
	const Config *cfg = rt->config;
	for (size_t i = 0; cache && cache->catalogs && i < cfg->n_services; i++) {
		const char *name = cfg->services[i].name;
		CatalogLoadStats st;
		bool known = catalog_loader_stats(cache->catalogs, name, &st);
		const Catalog *cat = catalog_loader_get(cache->catalogs, name);
		const char *state = !known      ? "no primary user"
				    : st.stale  ? "reloading after DDL"
				    : cat       ? "loaded"
				    : st.failures ? "failing"
						  : "loading";
		Row r = row_begin(b);
		row_text(&r, name);
		row_text(&r, state);
		if (cat)
			row_u64(&r, catalog_count(cat));
		else
			row_text(&r, NULL);
		row_u64(&r, st.rows);
		row_u64(&r, st.loads);
		row_u64(&r, st.unchanged);
		row_u64(&r, st.failures);
		if (st.last_load_ms) {
			int64_t ago = loop_now_ms() - st.last_load_ms;
			row_fmt(&r, "%lld.%03lld", (long long)(ago / 1000), (long long)(ago % 1000));
		} else {
			row_text(&r, NULL);
		}
		row_int(&r, st.last_query_ms);
		row_int(&r, st.last_build_ms);
		if (cat)
			row_fmt(&r, "%016llx", (unsigned long long)catalog_fingerprint(cat));
		else
			row_text(&r, NULL);
		row_text(&r, st.last_error[0] ? st.last_error : NULL);
		row_end(&r);
	}
	complete(b, "SHOW");
}

static void show_prepared(Runtime *rt, Buf *b)
{
	static const AdminCol cols[] = {{"statements", OID_INT8},   {"server_copies", OID_INT8},
					{"parses_sent", OID_INT8},  {"parses_avoided", OID_INT8},
					{"evictions", OID_INT8},    {"unused", OID_INT8},
					{"unused_bytes", OID_INT8}, {"analysis_cache_bytes", OID_INT8}};
	row_description(b, cols, sizeof cols / sizeof cols[0]);
	uint64_t copies = 0;
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		List *lists[] = {&p->idle, &p->active, &p->resetting};
		for (size_t i = 0; i < 3; i++) {
			ListNode *m;
			list_for_each(m, lists[i])
				copies += prepared_server_count(&list_entry(m, Server, pool_node)->stmts);
		}
	}
	Row r = row_begin(b);
	row_u64(&r, hashmap_count(&rt->stmts.by_id));
	row_u64(&r, copies);
	row_u64(&r, rt->stmts.parses_sent);
	row_u64(&r, rt->stmts.parses_avoided);
	row_u64(&r, rt->stmts.evictions);
	row_u64(&r, rt->stmts.unused);
	row_u64(&r, rt->stmts.unused_bytes);
	row_u64(&r, rt->sql.bytes);
	row_end(&r);
	complete(b, "SHOW");
}

/* ---- control commands ---- */

/* The pools of client database db (NULL: all): those of its service. */
static bool pool_of(const Runtime *rt, const Pool *p, const char *db)
{
	if (!db)
		return true;
	const ConfigDatabase *d = config_find_database(rt->config, db);
	return d && strcmp(p->service_name, d->service->name) == 0;
}

static bool pools_quiet(Runtime *rt, const char *db)
{
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (pool_of(rt, p, db) && p->active.count)
			return false;
	}
	return true;
}

static void pause_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Runtime *rt = arg;
	AdminState *a = rt->admin;
	ListNode *n, *t;
	list_for_each_safe(n, t, &a->pausing) {
		Client *c = list_entry(n, Client, wait.node);
		if (!pools_quiet(rt, c->admin_pause_db && c->admin_pause_db[0] ? c->admin_pause_db : NULL))
			continue;
		list_remove(&a->pausing, &c->wait.node);
		Buf b;
		buf_init(&b);
		complete(&b, "PAUSE");
		proto_build_ready_for_query(&b, 'I');
		send_buf(c, &b);
		buf_free(&b);
		conn_start_reading(&c->conn);
		conn_kick_pending(&c->conn);
	}
	if (a->pausing.count) {
		struct timeval tv = {0, 20000};
		event_add(a->ev_pause, &tv);
	}
}

void admin_client_gone(Client *c)
{
	AdminState *a = c->rt->admin;
	if (a && c->admin && list_node_linked(&c->wait.node))
		list_remove(&a->pausing, &c->wait.node);
}

static void set_paused(Runtime *rt, const char *db, bool paused)
{
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (pool_of(rt, p, db)) {
			if (paused)
				p->paused = true;
			else
				pool_resume(p);
		}
	}
}

static void close_servers(Runtime *rt, const char *db, bool now)
{
	ListNode *n;
	list_for_each(n, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (!pool_of(rt, p, db))
			continue;
		List *lists[] = {&p->active, &p->resetting, &p->opening};
		for (size_t i = 0; i < 3; i++) {
			ListNode *m;
			list_for_each(m, lists[i])
				list_entry(m, Server, pool_node)->close_on_release = true;
		}
		ListNode *m, *t;
		list_for_each_safe(m, t, &p->idle)
			server_close(list_entry(m, Server, pool_node), true, "RECONNECT from the admin console");
		if (now) {
			list_for_each_safe(m, t, &p->active)
				server_close(list_entry(m, Server, pool_node), true, "KILL from the admin console");
		}
	}
}

static void kill_clients(Runtime *rt, const char *db)
{
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->clients) {
		Client *c = list_entry(n, Client, node);
		if (!c->admin && c->database && strcmp(c->database, db) == 0)
			client_fatal(c, SQLSTATE_ADMIN_SHUTDOWN, "database \"%s\" was killed from pgrelay's admin console", db);
	}
}

static void set_disabled(Runtime *rt, const char *db, bool disabled)
{
	AdminState *a = state(rt);
	for (size_t i = 0; i < a->n_disabled; i++)
		if (strcmp(a->disabled[i], db) == 0) {
			if (!disabled) {
				free(a->disabled[i]);
				a->disabled[i] = a->disabled[--a->n_disabled];
			}
			return;
		}
	if (!disabled)
		return;
	char **list = realloc(a->disabled, (a->n_disabled + 1) * sizeof *list);
	if (!list)
		return;
	a->disabled = list;
	list[a->n_disabled++] = strdup(db);
}

/* ---- parsing ---- */

static bool known_db(Runtime *rt, Buf *b, const char *db)
{
	if (config_find_database(rt->config, db))
		return true;
	char m[256];
	snprintf(m, sizeof m, "database \"%s\" is not served by pgrelay", db);
	error(b, SQLSTATE_INVALID_CATALOG_NAME, m, "SHOW DATABASES lists them");
	return false;
}

/* SHOW what: puts the listing (or an error for an unknown one) into b. */
static void run_show(Runtime *rt, const char *what, Buf *b)
{
	static const struct {
		const char *name;
		void (*fn)(Runtime *, Buf *);
	} shows[] = {
		{"pools", show_pools},       {"clients", show_clients},   {"servers", show_servers},
		{"databases", show_databases}, {"users", show_users},     {"config", show_config},
		{"lists", show_lists},       {"mem", show_mem},           {"routes", show_routes},
		{"backends", show_backends}, {"cache", show_cache},       {"prepared", show_prepared},
		{"catalog", show_catalog},   {"access", show_access},
	};
	for (size_t i = 0; i < sizeof shows / sizeof shows[0]; i++)
		if (strcmp(what, shows[i].name) == 0) {
			shows[i].fn(rt, b);
			return;
		}
	if (strcmp(what, "stats") == 0)
		show_stats(rt, b, 0);
	else if (strcmp(what, "stats_totals") == 0)
		show_stats(rt, b, 1);
	else if (strcmp(what, "stats_averages") == 0)
		show_stats(rt, b, 2);
	else if (strcmp(what, "version") == 0)
		show_version(b);
	else if (strcmp(what, "help") == 0)
		show_help(b);
	else {
		char m[256];
		snprintf(m, sizeof m, "unknown SHOW command \"%s\"", what);
		error(b, "42601", m, "SHOW HELP lists the commands");
	}
}

/* PAUSE [db] (NULL: all): pauses the pools; returns false when the client must wait for them to
 * go quiet (its reading stops until pause_check completes the command). */
static bool run_pause(Client *c, const char *db, Buf *b)
{
	Runtime *rt = c->rt;
	if (db && !known_db(rt, b, db))
		return true;
	set_paused(rt, db, true);
	log_info(c->name, "PAUSE %s from the admin console", db ? db : "(all)");
	if (pools_quiet(rt, db)) {
		complete(b, "PAUSE");
		return true;
	}
	AdminState *a = state(rt);
	free(c->admin_pause_db);
	c->admin_pause_db = xstrdup(db ? db : "");
	list_push_back(&a->pausing, &c->wait.node);
	if (!a->ev_pause)
		a->ev_pause = evtimer_new(rt->base, pause_check, rt);
	struct timeval tv = {0, 20000};
	event_add(a->ev_pause, &tv);
	conn_stop_reading(&c->conn);
	return false;
}

/* KILL, DISABLE or ENABLE db (cmd is the lower-case word): does it and puts the reply into b. */
static void run_kill_disable_enable(Client *c, const char *cmd, const char *db, Buf *b)
{
	Runtime *rt = c->rt;
	if (!db) {
		error(b, "42601", "this command needs a database name", NULL);
		return;
	}
	if (!known_db(rt, b, db))
		return;
	char tag[16];
	snprintf(tag, sizeof tag, "%.15s", cmd);
	for (char *p = tag; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	if (cmd[0] == 'k') {
		kill_clients(rt, db);
		close_servers(rt, db, true);
	} else {
		set_disabled(rt, db, cmd[0] == 'd');
	}
	log_info(c->name, "%s %s from the admin console", tag, db);
	complete(b, tag);
}

/* SET key = value (only log_level): applies it and puts the reply into b. */
static void run_set(Client *c, const char *key, const char *value, Buf *b)
{
	Runtime *rt = c->rt;
	if (strcmp(key, "log_level") == 0) {
		for (int i = CONFIG_LOG_DEBUG; i <= CONFIG_LOG_ERROR; i++)
			if (strcmp(value, config_log_level_name((ConfigLogLevel)i)) == 0) {
				rt->log.level = (ConfigLogLevel)i;
				log_configure(&rt->log);
				log_info(c->name, "log_level set to %s from the admin console", value);
				complete(b, "SET");
				return;
			}
		error(b, "22023", "log_level must be one of: debug, info, warning, error", NULL);
		return;
	}
	char m[256];
	snprintf(m, sizeof m, "\"%s\" cannot be changed at run time (only log_level; others: edit proxy.yaml and RELOAD)",
		 key);
	error(b, "55P02", m, NULL);
}

/* Runs one command; returns false when the reply (ReadyForQuery) must wait (PAUSE). */
static bool run_command(Client *c, const char *sql, size_t len, Buf *b)
{
	Runtime *rt = c->rt;
	char w[4][ADMIN_WORD_MAX];
	size_t n = admin_split_words(sql, len, w, 4);
	if (n == 0) {
		size_t off = proto_begin(b, 'I'); /* EmptyQueryResponse */
		proto_end(b, off);
		return true;
	}
	if (strcmp(w[0], "show") == 0) {
		run_show(rt, n > 1 ? w[1] : "", b);
		return true;
	}
	if (c->admin != ADMIN_FULL) {
		error(b, "42501", "this console user may only use SHOW commands (admin.stats_users)",
		      "list the user in admin.users for the other commands");
		return true;
	}
	const char *db = n > 1 ? w[1] : NULL;
	if (strcmp(w[0], "pause") == 0)
		return run_pause(c, db, b);
	if (strcmp(w[0], "resume") == 0) {
		if (db && !known_db(rt, b, db))
			return true;
		set_paused(rt, db, false);
		log_info(c->name, "RESUME %s from the admin console", db ? db : "(all)");
		complete(b, "RESUME");
		return true;
	}
	if (strcmp(w[0], "reload") == 0) {
		rt->reload(rt);
		complete(b, "RELOAD");
		return true;
	}
	if (strcmp(w[0], "reconnect") == 0) {
		if (db && !known_db(rt, b, db))
			return true;
		close_servers(rt, db, false);
		complete(b, "RECONNECT");
		return true;
	}
	if (strcmp(w[0], "kill") == 0 || strcmp(w[0], "disable") == 0 || strcmp(w[0], "enable") == 0) {
		run_kill_disable_enable(c, w[0], db, b);
		return true;
	}
	if (strcmp(w[0], "shutdown") == 0) {
		log_info(c->name, "SHUTDOWN from the admin console");
		rt->begin_shutdown(rt);
		complete(b, "SHUTDOWN");
		return true;
	}
	if (strcmp(w[0], "set") == 0) {
		if (n < 3)
			error(b, "42601", "usage: SET key = value", NULL);
		else
			run_set(c, w[1], w[2], b);
		return true;
	}
	char m[256];
	snprintf(m, sizeof m, "unknown command \"%s\"", w[0]);
	error(b, "42601", m, "SHOW HELP lists the commands");
	return true;
}

/* ---- login and messages ---- */

void admin_login(Client *c)
{
	Buf b;
	buf_init(&b);
	proto_build_auth(&b, PROTO_AUTH_OK, NULL, 0);
	static const char *const params[][2] = {
		{"server_version", "15.0 (pgrelay " PGRELAY_VERSION ")"}, {"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"}, {"TimeZone", "UTC"}, {"IntervalStyle", "postgres"},
		{"is_superuser", "off"}, {"application_name", ""},
	};
	for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
		proto_build_parameter_status(&b, params[i][0], params[i][1]);
	proto_build_backend_key_data(&b, 0, 0);
	proto_build_ready_for_query(&b, 'I');
	conn_send_buf(&c->conn, &b);
	buf_free(&b);
	c->state = CL_IDLE;
	log_info(c->name, "login: %s@%s from %s (admin console, %s)", c->user, c->database, c->addr,
		 c->admin == ADMIN_FULL ? "all commands" : "SHOW only");
}

RelayAction admin_client_message(Client *c, RelayCtx *rc, uint8_t type, const uint8_t *msg, size_t total,
				 size_t avail)
{
	(void)rc;
	if (list_node_linked(&c->wait.node))
		return RELAY_STOP; /* a PAUSE is being completed */
	Buf b;
	buf_init(&b);
	RelayAction result = RELAY_DROP;
	switch (type) {
	case 'Q': {
		if (avail < total) {
			buf_free(&b);
			return RELAY_NEED_BODY;
		}
		const char *sql = (const char *)msg + PROTO_HEADER_LEN;
		size_t len = strnlen(sql, total - PROTO_HEADER_LEN);
		if (run_command(c, sql, len, &b))
			proto_build_ready_for_query(&b, 'I');
		break;
	}
	case 'S':
		proto_build_ready_for_query(&b, 'I');
		break;
	case 'P': case 'B': case 'D': case 'E': case 'C': case 'H': case 'F':
		if (!c->admin_skip) {
			error(&b, SQLSTATE_FEATURE_NOT_SUPPORTED,
			      "the admin console speaks the simple query protocol only",
			      "use psql, or a driver's simple-query mode");
			c->admin_skip = true;
		}
		if (type == 'S')
			c->admin_skip = false;
		break;
	default:
		buf_free(&b);
		client_fatal(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid frontend message type %d", type);
		return RELAY_CLOSED;
	}
	if (type == 'S')
		c->admin_skip = false;
	if (buf_used(&b))
		conn_send_buf(&c->conn, &b);
	buf_free(&b);
	return c->state == CL_CLOSED ? RELAY_CLOSED : result;
}

static int console_role(const Config *cfg, const char *user) { return (int)admin_role(cfg, user); }

const ConsoleOps *admin_console_ops(void)
{
	static const ConsoleOps ops = {
		.is_console = admin_is_console,
		.role = console_role,
		.login = admin_login,
		.message = admin_client_message,
		.gone = admin_client_gone,
		.database_disabled = admin_database_disabled,
	};
	return &ops;
}
