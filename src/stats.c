/*
 * stats — per-pool counters, histograms, averages, the stats line and the slow-query log (see
 * stats.h for what counts as what).
 */
#include "stats.h"

#include <event2/event.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "xalloc.h"

#define STATS_DEFAULT_PERIOD_MS 60000
#define STATS_SQL_MAX (64 * 1024) /* longer statements are not kept for the slow-query log */

/* ---- histograms by (service, role) ---- */

StatsHistograms *stats_histograms_for(Runtime *rt, const char *service, bool replica)
{
	Metrics *m = rt->metrics;
	if (!m)
		return NULL;
	StatsHistograms **tail = &m->hist;
	for (StatsHistograms *h = m->hist; h; h = h->next) {
		if (h->replica == replica && strcmp(h->service, service) == 0)
			return h;
		tail = &h->next;
	}
	StatsHistograms *h = xcalloc(1, sizeof *h);
	h->service = xstrdup(service);
	h->replica = replica;
	*tail = h; /* appended: configuration order, primary before replicas as first used */
	return h;
}

const StatsHistograms *stats_histograms(const Runtime *rt) { return rt->metrics ? rt->metrics->hist : NULL; }

/* The pool's histograms, or NULL when admin.histograms is off. */
static StatsHistograms *pool_hist(Pool *p)
{
	if (!p->rt->config->admin.histograms)
		return NULL;
	if (!p->stats.hist)
		p->stats.hist = stats_histograms_for(p->rt, p->service_name, p->replica >= 0);
	return p->stats.hist;
}

/* ---- hooks ---- */

/* The statement text of a request's message, kept for the slow-query log. */
static void capture_sql(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	const uint8_t *body = msg + PROTO_HEADER_LEN;
	size_t blen = total - PROTO_HEADER_LEN;
	const char *sql = NULL;
	size_t len = 0;
	switch (type) {
	case 'Q':
		if (avail < total)
			break;
		sql = (const char *)body;
		len = strnlen(sql, blen);
		break;
	case 'P': {
		if (avail < total)
			break;
		const uint8_t *z = memchr(body, 0, blen);
		if (!z)
			break;
		sql = (const char *)z + 1;
		len = strnlen(sql, blen - (size_t)(z + 1 - body));
		break;
	}
	case 'B': {
		/* A named statement parsed in an earlier request (tracked in transaction pooling). */
		size_t have = avail - PROTO_HEADER_LEN;
		const uint8_t *z = memchr(body, 0, have);
		if (!z || !memchr(z + 1, 0, have - (size_t)(z + 1 - body)) || !z[1])
			break;
		PreparedStmt *st = prepared_client_get(&c->stmts, (const char *)z + 1);
		if (st) {
			sql = (const char *)st->key;
			len = strnlen(sql, st->key_len);
		}
		break;
	}
	default:
		break;
	}
	if (!sql)
		return;
	buf_reset(&c->stats.sql);
	if (len <= STATS_SQL_MAX) {
		buf_append(&c->stats.sql, sql, len);
		buf_append(&c->stats.sql, "", 1);
	}
	c->stats.sql_known = true;
}

void stats_request_begin(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	if (!c->stats.query_start_us) {
		int64_t now = loop_now_us();
		c->stats.query_start_us = now;
		c->stats.sql_known = false;
		if (c->server && !c->stats.xact_start_us)
			c->stats.xact_start_us = now; /* session pooling, pinned: a transaction starts */
	}
	if (!c->stats.sql_known && c->rt->config->log.slow_query_ms > 0)
		capture_sql(c, type, msg, total, avail);
}

void stats_wait_begin(Client *c, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	stats_request_begin(c, type, msg, total, avail);
	c->stats.wait_start_us = loop_now_us();
}

void stats_client_linked(Client *c, Server *s)
{
	Pool *p = s->pool;
	int64_t now = loop_now_us();
	uint64_t waited = 0;
	if (c->state == CL_WAITING && c->stats.wait_start_us && now > c->stats.wait_start_us)
		waited = (uint64_t)(now - c->stats.wait_start_us);
	c->stats.wait_start_us = 0;
	c->stats.xact_start_us = now;
	p->stats.total.server_assignment_count++;
	p->stats.total.wait_time_us += waited;
	StatsHistograms *h = pool_hist(p);
	if (h)
		histogram_record(&h->wait, waited);
}

/* Charges the client's socket bytes since the last charge to pool p. */
static void charge_bytes(Client *c, Pool *p)
{
	uint64_t in = c->conn.bytes_in, out = c->conn.bytes_out;
	p->stats.total.bytes_received += in - c->stats.in_mark;
	p->stats.total.bytes_sent += out - c->stats.out_mark;
	c->stats.in_mark = in;
	c->stats.out_mark = out;
}

/* Whitespace runs become one space (a log entry stays on one line). */
static void one_line(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	bool space = false;
	for (; *in && n + 4 < cap; in++) {
		char ch = *in;
		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\f' || ch == '\v') {
			space = n > 0;
			continue;
		}
		if (space)
			out[n++] = ' ';
		space = false;
		out[n++] = ch;
	}
	if (*in && n + 4 >= cap) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = 0;
}

static void log_slow_query(Client *c, Server *s, uint64_t us)
{
	char text[1200];
	PgQueryNormalizeResult r;
	bool normalized = false;
	if (!c->stats.sql_known)
		snprintf(text, sizeof text, "(statement text not known: a statement prepared earlier)");
	else if (buf_used(&c->stats.sql) == 0)
		snprintf(text, sizeof text, "(statement longer than %d kB: not shown)", STATS_SQL_MAX / 1024);
	else {
		/* Constants become $n: parameter values and literals never reach the log. */
		r = pg_query_normalize((const char *)buf_head(&c->stats.sql));
		normalized = true;
		if (r.error || !r.normalized_query)
			snprintf(text, sizeof text, "(statement that does not parse: not shown)");
		else
			one_line(r.normalized_query, text, sizeof text);
	}
	const Pool *p = s->pool;
	char role[32];
	if (p->replica < 0)
		snprintf(role, sizeof role, "primary");
	else
		snprintf(role, sizeof role, "replica %d", p->replica + 1);
	log_info(c->name, "slow query: %llu.%03llu ms, service %s, backend %s %s:%d, client %s %s@%s from %s: %s",
		 (unsigned long long)(us / 1000), (unsigned long long)(us % 1000), p->service_name, role,
		 p->backend->host, p->backend->port, c->name, c->user ? c->user : "?",
		 c->database ? c->database : "?", c->addr, text);
	if (normalized)
		pg_query_free_normalize_result(r);
}

void stats_ready_for_query(Client *c, Server *s, char tx)
{
	Pool *p = s->pool;
	StatsCounters *t = &p->stats.total;
	StatsHistograms *h = pool_hist(p);
	int64_t now = loop_now_us();
	/* The client already sent its next request (pipelining): it is under way from now on. */
	bool more = !pipeline_idle(&s->pipe);
	if (c->stats.query_start_us) {
		uint64_t d = now > c->stats.query_start_us ? (uint64_t)(now - c->stats.query_start_us) : 0;
		t->query_count++;
		t->query_time_us += d;
		if (h)
			histogram_record(&h->query, d);
		int64_t slow_ms = c->rt->config->log.slow_query_ms;
		if (slow_ms > 0 && d >= (uint64_t)slow_ms * 1000)
			log_slow_query(c, s, d);
		c->stats.query_start_us = more ? now : 0;
		c->stats.sql_known = false;
	}
	if (tx == 'I' && c->stats.xact_start_us) {
		uint64_t d = now > c->stats.xact_start_us ? (uint64_t)(now - c->stats.xact_start_us) : 0;
		t->xact_count++;
		t->xact_time_us += d;
		if (h)
			histogram_record(&h->xact, d);
		c->stats.xact_start_us = more ? now : 0;
	}
	charge_bytes(c, p);
}

/* The pool of the service's primary for the client's user, if it exists (never created here). */
static Pool *find_primary_pool(Runtime *rt, const char *service, const char *user)
{
	ListNode *n, *tmp;
	list_for_each_safe(n, tmp, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		if (!p->removed && p->replica < 0 && strcmp(p->service_name, service) == 0 && strcmp(p->user, user) == 0)
			return p;
	}
	return NULL;
}

void stats_cache_hit(Client *c, const char *service)
{
	int64_t now = loop_now_us();
	uint64_t d = c->stats.query_start_us && now > c->stats.query_start_us ? (uint64_t)(now - c->stats.query_start_us) : 0;
	c->stats.query_start_us = 0;
	c->stats.sql_known = false;
	Pool *p = find_primary_pool(c->rt, service, c->user);
	if (!p)
		return;
	p->stats.total.query_count++;
	p->stats.total.cached_query_count++;
	p->stats.total.query_time_us += d;
	charge_bytes(c, p);
}

void stats_client_closed(Client *c)
{
	if (c->server)
		charge_bytes(c, c->server->pool);
	buf_free(&c->stats.sql);
}

/* ---- the period: averages and the stats line ---- */

static void counters_delta(const StatsCounters *a, const StatsCounters *b, StatsCounters *d)
{
	d->xact_count = a->xact_count - b->xact_count;
	d->query_count = a->query_count - b->query_count;
	d->server_assignment_count = a->server_assignment_count - b->server_assignment_count;
	d->cached_query_count = a->cached_query_count - b->cached_query_count;
	d->bytes_received = a->bytes_received - b->bytes_received;
	d->bytes_sent = a->bytes_sent - b->bytes_sent;
	d->xact_time_us = a->xact_time_us - b->xact_time_us;
	d->query_time_us = a->query_time_us - b->query_time_us;
	d->wait_time_us = a->wait_time_us - b->wait_time_us;
}

static void counters_add(StatsCounters *a, const StatsCounters *d)
{
	a->xact_count += d->xact_count;
	a->query_count += d->query_count;
	a->server_assignment_count += d->server_assignment_count;
	a->cached_query_count += d->cached_query_count;
	a->bytes_received += d->bytes_received;
	a->bytes_sent += d->bytes_sent;
	a->xact_time_us += d->xact_time_us;
	a->query_time_us += d->query_time_us;
	a->wait_time_us += d->wait_time_us;
}

static uint64_t per_second(uint64_t n, int64_t dur_us) { return (uint64_t)((double)n * 1e6 / (double)dur_us + 0.5); }
static uint64_t mean(uint64_t total, uint64_t n) { return n ? total / n : 0; }

static void averages(StatsAverages *avg, const StatsCounters *d, int64_t dur_us)
{
	avg->xact_count = per_second(d->xact_count, dur_us);
	avg->query_count = per_second(d->query_count, dur_us);
	avg->server_assignment_count = per_second(d->server_assignment_count, dur_us);
	avg->cached_query_count = per_second(d->cached_query_count, dur_us);
	avg->bytes_received = per_second(d->bytes_received, dur_us);
	avg->bytes_sent = per_second(d->bytes_sent, dur_us);
	avg->xact_time_us = mean(d->xact_time_us, d->xact_count);
	avg->query_time_us = mean(d->query_time_us, d->query_count);
	avg->wait_time_us = mean(d->wait_time_us, d->server_assignment_count);
}

static void log_stats_line(const char *who, const StatsAverages *a)
{
	log_info(who, "stats: %llu xacts/s, %llu queries/s, in %llu B/s, out %llu B/s, xact %llu us, query %llu us, wait %llu us",
		 (unsigned long long)a->xact_count, (unsigned long long)a->query_count,
		 (unsigned long long)a->bytes_received, (unsigned long long)a->bytes_sent,
		 (unsigned long long)a->xact_time_us, (unsigned long long)a->query_time_us,
		 (unsigned long long)a->wait_time_us);
}

static void stats_on_period(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Runtime *rt = arg;
	Metrics *m = rt->metrics;
	int64_t now = loop_now_us();
	int64_t dur = now - m->period_start_us;
	if (dur <= 0)
		dur = 1;
	m->period_start_us = now;
	bool log_on = rt->config->log.stats_period_ms > 0;
	StatsCounters sum = {0};
	ListNode *n, *tmp;
	list_for_each_safe(n, tmp, &rt->pools) {
		Pool *p = list_entry(n, Pool, node);
		StatsCounters d;
		counters_delta(&p->stats.total, &p->stats.period_start, &d);
		averages(&p->stats.avg, &d, dur);
		p->stats.period_start = p->stats.total;
		counters_add(&sum, &d);
		if (log_on && rt->pools.count > 1 && (d.query_count || d.xact_count || d.server_assignment_count))
			log_stats_line(p->name, &p->stats.avg);
	}
	averages(&m->avg, &sum, dur);
	if (log_on)
		log_stats_line(NULL, &m->avg);
}

static int64_t period_of(const Config *cfg)
{
	return cfg->log.stats_period_ms > 0 ? cfg->log.stats_period_ms : STATS_DEFAULT_PERIOD_MS;
}

static void arm(Runtime *rt)
{
	Metrics *m = rt->metrics;
	m->period_ms = period_of(rt->config);
	struct timeval tv = {.tv_sec = m->period_ms / 1000, .tv_usec = (m->period_ms % 1000) * 1000};
	event_del(m->ev_period);
	event_add(m->ev_period, &tv);
}

void stats_start(Runtime *rt)
{
	Metrics *m = xcalloc(1, sizeof *m);
	rt->metrics = m;
	m->period_start_us = loop_now_us();
	m->ev_period = event_new(rt->base, -1, EV_PERSIST, stats_on_period, rt);
	if (!m->ev_period)
		abort();
	arm(rt);
}

void stats_reconfigure(Runtime *rt)
{
	if (rt->metrics && rt->metrics->period_ms != period_of(rt->config))
		arm(rt);
}

void stats_stop(Runtime *rt)
{
	Metrics *m = rt->metrics;
	if (!m)
		return;
	if (m->ev_period)
		event_free(m->ev_period);
	StatsHistograms *h = m->hist;
	while (h) {
		StatsHistograms *next = h->next;
		free(h->service);
		free(h);
		h = next;
	}
	free(m);
	rt->metrics = NULL;
}
