/*
 * http — the admin HTTP endpoint (admin.http: { host, port }) on the event loop, with libevent's
 * evhttp: GET /metrics (Prometheus text exposition format 0.0.4) and GET /health.
 *
 * Owns: the listening socket of the endpoint, the metric names, labels and HELP texts, and the
 * health verdict: 200 while pgrelay accepts connections and every service's primary is up as the
 * health checker sees it (unchecked or not yet probed: up), otherwise 503 with one line per reason.
 * A scrape reads the runtime's counters on the loop (no locks, no blocking: it only formats what
 * is in memory); requests other than GET/HEAD are refused, slow clients time out after 10 s.
 *
 * Metric families (every counter ends in _total, times in seconds, sizes in bytes):
 *   pgrelay_info{version}, pgrelay_accepting_connections, pgrelay_clients{database,user,state},
 *   pgrelay_*_total (runtime counters), per pool {service,user,backend,role}: pgrelay_pool_servers
 *   {state=active|idle|used|login}, pgrelay_pool_clients{state=active|waiting|login},
 *   pgrelay_pool_{transactions,queries,cached_queries,server_assignments}_total,
 *   pgrelay_pool_{received,sent}_bytes_total, pgrelay_pool_{transaction,query,wait}_seconds_total;
 *   per backend {service,backend,role}: pgrelay_backend_{up,lagging,in_recovery,lag_bytes,
 *   lag_seconds,outstanding_reads}, pgrelay_backend_{checks,check_errors,reads_served}_total;
 *   result cache {tier=l1|l2}; prepared statements; histograms {service,role}:
 *   pgrelay_{query,transaction,wait}_duration_seconds.
 */
#ifndef PGRELAY_HTTP_H
#define PGRELAY_HTTP_H

#include <stdbool.h>

#include "types.h"

struct evbuffer;

typedef struct HttpServer HttpServer;

/* Binds admin.http and serves it; NULL (error logged) when the socket cannot be bound. */
HttpServer *http_start(Runtime *rt);
/* After a reload: starts, stops or moves the endpoint when admin.http changed. */
void http_reconfigure(Runtime *rt);
/* Closes the endpoint (rt->http becomes NULL). */
void http_stop(Runtime *rt);

/* The /metrics text of rt. */
void http_render_metrics(Runtime *rt, struct evbuffer *out);
/* The /health verdict: true = healthy; the body (one line per reason) is appended to out. */
bool http_render_health(Runtime *rt, struct evbuffer *out);

#endif
