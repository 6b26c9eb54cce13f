/*
 * pgasync — a libpq connection on the event loop (see pgasync.h).
 *
 * One event on PQsocket at a time (not persistent: re-armed after each wake-up, on the socket
 * libpq has then), one timer for the connect or query under way, and one zero timer that reports
 * a failure found inside a pgasync_* call from the loop instead. Callbacks are made through
 * invoke(): it counts nesting, so pgasync_free from a callback only marks the handle, and the
 * outermost dispatch frees it; an `epoch` that every close, connect and query bumps tells a
 * dispatch whether the owner moved the connection on while it was in a callback.
 */
#include "pgasync.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dns.h"
#include "log.h"
#include "loop.h"
#include "xalloc.h"

#define PGASYNC_MAX_ADDRS 8

typedef struct DnsTicket {
	PgAsync *pa; /* NULL once nobody wants the answer */
} DnsTicket;

struct PgAsync {
	struct event_base *base;
	struct evdns_base *dns;
	bool own_dns;
	char *who;
	PgAsyncHandler h;
	void *arg;

	PgAsyncPhase phase;
	PGconn *conn;
	struct event ev_sock;
	bool ev_sock_set;
	LoopTimer ev_timeout;
	int64_t timeout_ms;
	LoopTimer ev_fail;        /* a failure to report from the loop */
	PgAsyncPhase fail_phase;
	char fail_msg[256];
	DnsTicket *ticket;
	void (*ready)(void *arg);    /* pgasync_watch */

	/* The connection's parameters (copies, NULL-terminated; one spare slot for hostaddr). */
	char **keys, **vals;
	size_t n_opts;
	size_t host_index; /* SIZE_MAX: none */
	bool resolve;
	char hostaddr[PGASYNC_MAX_ADDRS * (INET6_ADDRSTRLEN + 1)];
	char *hosts;

	unsigned depth;  /* callbacks in progress */
	bool freed;      /* pgasync_free called inside a callback */
	uint64_t epoch;
};

static void destroy(PgAsync *pa);

/* ---- callbacks ---- */

/* Before a callback. */
static void enter(PgAsync *pa) { pa->depth++; }

/* After it: false when the handle is gone (freed now or marked) — touch nothing then. */
static bool leave(PgAsync *pa)
{
	pa->depth--;
	if (!pa->freed)
		return true;
	if (pa->depth == 0)
		destroy(pa);
	return false;
}

/* ---- connection ---- */

static void sock_unwatch(PgAsync *pa)
{
	if (pa->ev_sock_set) {
		event_del(&pa->ev_sock);
		pa->ev_sock_set = false;
	}
}

static void free_opts(PgAsync *pa)
{
	for (size_t i = 0; i < pa->n_opts; i++) {
		if (pa->vals[i] && strcmp(pa->keys[i], "password") == 0)
			memset(pa->vals[i], 0, strlen(pa->vals[i]));
		free(pa->keys[i]);
		free(pa->vals[i]);
	}
	free(pa->keys);
	free(pa->vals);
	pa->keys = pa->vals = NULL;
	pa->n_opts = 0;
	free(pa->hosts);
	pa->hosts = NULL;
}

/* Drops the connection and everything in flight; reports nothing. */
static void close_now(PgAsync *pa)
{
	sock_unwatch(pa);
	loop_timer_stop(&pa->ev_timeout);
	loop_timer_stop(&pa->ev_fail);
	if (pa->conn) {
		PQfinish(pa->conn);
		pa->conn = NULL;
	}
	if (pa->ticket) {
		pa->ticket->pa = NULL; /* freed when evdns answers */
		pa->ticket = NULL;
	}
	pa->phase = PGASYNC_CLOSED;
	pa->ready = NULL;
	pa->epoch++;
}

static void report_failure(PgAsync *pa, PgAsyncPhase phase, const char *msg)
{
	if (!pa->h.failed)
		return;
	enter(pa);
	pa->h.failed(pa->arg, phase, msg);
	leave(pa);
}

/* Closes and reports. deferred: found inside a pgasync_* call, so reported from the loop. */
static void fail(PgAsync *pa, const char *message, bool deferred)
{
	PgAsyncPhase phase = pa->phase;
	char msg[sizeof pa->fail_msg];
	log_one_line(msg, sizeof msg, message && *message ? message : "unknown error");
	close_now(pa);
	if (deferred) {
		pa->fail_phase = phase;
		memcpy(pa->fail_msg, msg, sizeof msg);
		loop_timer_start(&pa->ev_fail, 0);
		return;
	}
	report_failure(pa, phase, msg);
}

static void on_fail(void *arg)
{
	PgAsync *pa = arg;
	report_failure(pa, pa->fail_phase, pa->fail_msg);
}

static void timer_arm(PgAsync *pa, int64_t ms)
{
	loop_timer_stop(&pa->ev_timeout);
	pa->timeout_ms = ms;
	if (ms > 0)
		loop_timer_start(&pa->ev_timeout, ms);
}

static void on_sock(evutil_socket_t fd, short what, void *arg);

/* Waits for what on the connection's current socket. False when that failed (reported). */
static bool sock_watch(PgAsync *pa, short what, bool deferred)
{
	sock_unwatch(pa);
	int fd = PQsocket(pa->conn);
	if (fd < 0) {
		fail(pa, "the connection has no socket", deferred);
		return false;
	}
	event_assign(&pa->ev_sock, pa->base, fd, what, on_sock, pa);
	if (event_add(&pa->ev_sock, NULL) != 0) {
		fail(pa, "cannot watch the connection's socket", deferred);
		return false;
	}
	pa->ev_sock_set = true;
	return true;
}

static void on_timeout(void *arg)
{
	PgAsync *pa = arg;
	char msg[96];
	snprintf(msg, sizeof msg, "no answer within %lld ms (%s)", (long long)pa->timeout_ms,
		 pgasync_phase_name(pa->phase));
	fail(pa, msg, false);
}

static void on_notice(void *arg, const char *message)
{
	PgAsync *pa = arg;
	char line[300];
	log_one_line(line, sizeof line, message);
	if (pa->freed)
		return;
	if (pa->h.notice)
		pa->h.notice(pa->arg, line); /* inside libpq: the owner must not free or close here */
	else
		log_info(pa->who, "%s says: %s", pa->who, line);
}

/* ---- query ---- */

/* Reads what arrived; hands each result over; done() after the last. */
static void query_progress(PgAsync *pa)
{
	if (!PQconsumeInput(pa->conn)) {
		fail(pa, PQerrorMessage(pa->conn), false);
		return;
	}
	int flush = PQflush(pa->conn);
	if (flush < 0) {
		fail(pa, PQerrorMessage(pa->conn), false);
		return;
	}
	uint64_t epoch = pa->epoch;
	while (!PQisBusy(pa->conn)) {
		PGresult *res = PQgetResult(pa->conn);
		if (!res) {
			sock_unwatch(pa);
			loop_timer_stop(&pa->ev_timeout);
			pa->phase = PGASYNC_IDLE;
			pa->epoch++;
			if (pa->h.done) {
				enter(pa);
				pa->h.done(pa->arg);
				leave(pa);
			}
			return;
		}
		bool keep = true;
		if (pa->h.result) {
			enter(pa);
			keep = pa->h.result(pa->arg, res);
			PQclear(res);
			if (!leave(pa) || pa->epoch != epoch)
				return; /* freed, closed or moved on by the callback */
		} else {
			PQclear(res);
		}
		if (!keep) {
			sock_unwatch(pa);
			loop_timer_stop(&pa->ev_timeout);
			pa->phase = PGASYNC_OWNER;
			pa->epoch++;
			return;
		}
	}
	sock_watch(pa, (short)(EV_READ | (flush == 1 ? EV_WRITE : 0)), false);
}

bool pgasync_query(PgAsync *pa, const char *sql, int64_t timeout_ms)
{
	if (!pa || pa->freed || pa->phase != PGASYNC_IDLE || !sql)
		return false;
	pa->phase = PGASYNC_QUERYING;
	pa->epoch++;
	timer_arm(pa, timeout_ms);
	if (!PQsendQuery(pa->conn, sql)) {
		fail(pa, PQerrorMessage(pa->conn), true);
		return true;
	}
	int flush = PQflush(pa->conn);
	if (flush < 0) {
		fail(pa, PQerrorMessage(pa->conn), true);
		return true;
	}
	sock_watch(pa, (short)(EV_READ | (flush == 1 ? EV_WRITE : 0)), true);
	return true;
}

bool pgasync_watch(PgAsync *pa, bool write, void (*ready)(void *arg))
{
	if (!pa || pa->freed || !ready || (pa->phase != PGASYNC_OWNER && pa->phase != PGASYNC_IDLE))
		return false;
	pa->phase = PGASYNC_OWNER;
	pa->ready = ready;
	sock_watch(pa, (short)(EV_READ | (write ? EV_WRITE : 0)), true);
	return true;
}

/* ---- connecting ---- */

static void connect_poll(PgAsync *pa)
{
	switch (PQconnectPoll(pa->conn)) {
	case PGRES_POLLING_READING:
		sock_watch(pa, EV_READ, false);
		break;
	case PGRES_POLLING_WRITING:
		sock_watch(pa, EV_WRITE, false);
		break;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(pa->conn, 1) != 0) {
			fail(pa, PQerrorMessage(pa->conn), false);
			return;
		}
		sock_unwatch(pa);
		loop_timer_stop(&pa->ev_timeout);
		pa->phase = PGASYNC_IDLE;
		pa->epoch++;
		log_debug(pa->who, "connected (%s)", PQsslInUse(pa->conn) ? "TLS" : "no TLS");
		if (pa->h.connected) {
			enter(pa);
			pa->h.connected(pa->arg);
			leave(pa);
		}
		break;
	case PGRES_POLLING_FAILED:
	default:
		fail(pa, PQerrorMessage(pa->conn), false);
		break;
	}
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	PgAsync *pa = arg;
	pa->ev_sock_set = false; /* not persistent: no longer pending */
	switch (pa->phase) {
	case PGASYNC_CONNECTING:
		connect_poll(pa);
		break;
	case PGASYNC_QUERYING:
		query_progress(pa);
		break;
	case PGASYNC_OWNER:
		if (pa->ready) {
			void (*ready)(void *) = pa->ready;
			enter(pa);
			ready(pa->arg);
			leave(pa);
		}
		break;
	case PGASYNC_CLOSED:
	case PGASYNC_RESOLVING:
	case PGASYNC_IDLE:
		break;
	}
}

/* deferred: inside pgasync_connect (directly, or through a synchronous evdns answer). */
static void connect_start(PgAsync *pa, bool deferred)
{
	char *save_host = NULL;
	if (pa->hostaddr[0] && pa->host_index != SIZE_MAX) {
		/* The resolved addresses, the name repeated once per address for TLS and messages. */
		save_host = pa->vals[pa->host_index];
		pa->vals[pa->host_index] = pa->hosts;
		pa->keys[pa->n_opts] = (char *)"hostaddr";
		pa->vals[pa->n_opts] = pa->hostaddr;
	}
	pa->conn = PQconnectStartParams((const char *const *)pa->keys, (const char *const *)pa->vals, 0);
	if (save_host) {
		pa->vals[pa->host_index] = save_host;
		pa->keys[pa->n_opts] = NULL;
		pa->vals[pa->n_opts] = NULL;
	}
	pa->phase = PGASYNC_CONNECTING;
	if (!pa->conn) {
		fail(pa, "out of memory starting a connection", deferred);
		return;
	}
	if (PQstatus(pa->conn) == CONNECTION_BAD) {
		fail(pa, PQerrorMessage(pa->conn), deferred);
		return;
	}
	PQsetNoticeProcessor(pa->conn, on_notice, pa);
	sock_watch(pa, EV_WRITE, deferred); /* as if PQconnectPoll had said WRITING */
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	DnsTicket *t = arg;
	PgAsync *pa = t->pa;
	bool sync = false;
	free(t);
	if (!pa || err == EVUTIL_EAI_CANCEL) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	/* pgasync_connect marks the ticket while evdns_getaddrinfo runs: an answer then is synchronous. */
	sync = pa->phase == PGASYNC_RESOLVING && pa->ticket == NULL;
	pa->ticket = NULL;
	const char *host = pa->vals[pa->host_index];
	if (err || !res) {
		char msg[256];
		snprintf(msg, sizeof msg, "could not resolve host \"%s\": %s", host, evutil_gai_strerror(err));
		if (res)
			evutil_freeaddrinfo(res);
		fail(pa, msg, sync);
		return;
	}
	size_t n = dns_libpq_lists(res, host, PGASYNC_MAX_ADDRS, pa->hostaddr, sizeof pa->hostaddr, &pa->hosts);
	evutil_freeaddrinfo(res);
	if (n == 0) {
		fail(pa, "the host name resolved to no IPv4 or IPv6 address", sync);
		return;
	}
	connect_start(pa, sync);
}

static void opt_add(PgAsync *pa, const char *key, const char *val)
{
	pa->keys[pa->n_opts] = xstrdup(key);
	pa->vals[pa->n_opts] = xstrdup(val);
	pa->n_opts++;
}

bool pgasync_connect(PgAsync *pa, const char *const *keys, const char *const *values, int64_t timeout_ms)
{
	if (!pa || pa->freed || !keys || !values)
		return false;
	close_now(pa);
	free_opts(pa);
	size_t n = 0;
	while (keys[n])
		n++;
	pa->keys = xcalloc(n + 3, sizeof *pa->keys); /* + gssencmode + hostaddr + terminator */
	pa->vals = xcalloc(n + 3, sizeof *pa->vals);
	pa->host_index = SIZE_MAX;
	bool have_gss = false, have_hostaddr = false;
	const char *host = NULL, *port = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!values[i] || !values[i][0])
			continue;
		if (strcmp(keys[i], "host") == 0) {
			pa->host_index = pa->n_opts;
			host = values[i];
		} else if (strcmp(keys[i], "port") == 0) {
			port = values[i];
		} else if (strcmp(keys[i], "hostaddr") == 0) {
			have_hostaddr = true;
		} else if (strcmp(keys[i], "gssencmode") == 0) {
			have_gss = true;
		}
		opt_add(pa, keys[i], values[i]);
	}
	if (!have_gss)
		opt_add(pa, "gssencmode", "disable"); /* a Kerberos credential lookup could block */
	pa->resolve = host && !have_hostaddr && host[0] != '/' && host[0] != '@' && !strchr(host, ',') &&
		      !(port && strchr(port, ',')) && !dns_is_numeric(host);
	return pgasync_reconnect(pa, timeout_ms);
}

bool pgasync_reconnect(PgAsync *pa, int64_t timeout_ms)
{
	if (!pa || pa->freed || !pa->keys)
		return false;
	close_now(pa);
	pa->hostaddr[0] = '\0';
	pa->epoch++;
	timer_arm(pa, timeout_ms);
	if (!pa->resolve) {
		connect_start(pa, true);
		return true;
	}
	if (!pa->dns) {
		pa->dns = dns_base_new(pa->base);
		pa->own_dns = pa->dns != NULL;
		if (!pa->dns) {
			pa->phase = PGASYNC_RESOLVING;
			fail(pa, "cannot create a DNS resolver", true);
			return true;
		}
	}
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_ADDRCONFIG};
	DnsTicket *t = xcalloc(1, sizeof *t);
	t->pa = pa;
	pa->phase = PGASYNC_RESOLVING;
	/* The callback may run before this returns (hosts file, cache): it sees no ticket yet. */
	evdns_getaddrinfo(pa->dns, pa->vals[pa->host_index], NULL, &hints, on_resolved, t);
	if (pa->phase == PGASYNC_RESOLVING)
		pa->ticket = t; /* still waiting (t is freed once the answer came) */
	return true;
}

bool pgasync_connect_conninfo(PgAsync *pa, const char *conninfo, int64_t timeout_ms, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &perr);
	if (!opts) {
		if (err && errlen) {
			char line[256];
			log_one_line(line, sizeof line, perr ? perr : "out of memory");
			snprintf(err, errlen, "invalid connection string: %s", line);
		}
		PQfreemem(perr);
		return false;
	}
	size_t n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		n++;
	const char **keys = xcalloc(n + 1, sizeof *keys), **vals = xcalloc(n + 1, sizeof *vals);
	size_t k = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && o->val[0]) {
			keys[k] = o->keyword;
			vals[k++] = o->val;
		}
	bool ok = pgasync_connect(pa, keys, vals, timeout_ms);
	free(keys);
	free(vals);
	PQconninfoFree(opts);
	if (!ok && err && errlen)
		snprintf(err, errlen, "cannot connect a freed handle");
	return ok;
}

/* ---- life cycle ---- */

PgAsync *pgasync_new(struct event_base *base, struct evdns_base *dns, const char *who, const PgAsyncHandler *h,
		     void *arg)
{
	PgAsync *pa = xcalloc(1, sizeof *pa);
	pa->base = base;
	pa->dns = dns;
	pa->who = xstrdup(who ? who : "pgasync");
	if (h)
		pa->h = *h;
	pa->arg = arg;
	pa->host_index = SIZE_MAX;
	loop_timer_init(&pa->ev_timeout, base, on_timeout, pa);
	loop_timer_init(&pa->ev_fail, base, on_fail, pa);
	return pa;
}

static void destroy(PgAsync *pa)
{
	close_now(pa);
	if (pa->own_dns)
		evdns_base_free(pa->dns, 1); /* pending lookups get EVUTIL_EAI_CANCEL: tickets freed */
	free_opts(pa);
	free(pa->who);
	free(pa);
}

void pgasync_free(PgAsync *pa)
{
	if (!pa || pa->freed)
		return;
	if (pa->depth > 0) {
		close_now(pa);
		pa->freed = true; /* destroyed when the outermost callback returns */
		return;
	}
	destroy(pa);
}

void pgasync_close(PgAsync *pa)
{
	if (pa && !pa->freed)
		close_now(pa);
}

PgAsyncPhase pgasync_phase(const PgAsync *pa) { return pa ? pa->phase : PGASYNC_CLOSED; }

PGconn *pgasync_conn(PgAsync *pa) { return pa ? pa->conn : NULL; }

const char *pgasync_phase_name(PgAsyncPhase phase)
{
	switch (phase) {
	case PGASYNC_CLOSED:
		return "closed";
	case PGASYNC_RESOLVING:
		return "resolving the host name";
	case PGASYNC_CONNECTING:
		return "connecting";
	case PGASYNC_IDLE:
		return "idle";
	case PGASYNC_QUERYING:
		return "waiting for the query's results";
	case PGASYNC_OWNER:
		return "reading";
	}
	return "?";
}
