/*
 * stats_types — the counters and timings pools and clients carry (PoolStats in Pool, ClientStats
 * in Client) and the runtime's histograms (Metrics): the data stats.c records and the admin
 * console and /metrics read. Header only.
 */
#ifndef PGRELAY_STATS_TYPES_H
#define PGRELAY_STATS_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "histogram.h"

typedef struct StatsCounters {
	uint64_t xact_count, query_count, server_assignment_count;
	uint64_t cached_query_count;        /* queries answered from the result cache (also in query_count) */
	uint64_t bytes_received, bytes_sent; /* from / to clients */
	uint64_t xact_time_us, query_time_us, wait_time_us;
} StatsCounters;

/* Over the last complete stats period (PgBouncer's avg_* columns). */
typedef struct StatsAverages {
	uint64_t xact_count, query_count, server_assignment_count, cached_query_count; /* per second */
	uint64_t bytes_received, bytes_sent; /* bytes per second */
	uint64_t xact_time_us;  /* mean transaction duration */
	uint64_t query_time_us; /* mean query duration */
	uint64_t wait_time_us;  /* mean wait per server assignment */
} StatsAverages;

/* The latency histograms of one (service, role). */
typedef struct StatsHistograms {
	char *service;
	bool replica;
	Histogram query, xact, wait;
	struct StatsHistograms *next;
} StatsHistograms;

/* Embedded in Pool. */
typedef struct PoolStats {
	StatsCounters total;        /* since the pool was created */
	StatsCounters period_start; /* total when the current period began */
	StatsAverages avg;          /* the last complete period */
	StatsHistograms *hist;      /* the pool's (service, role); found at first use */
} PoolStats;

/* Embedded in Client. */
typedef struct ClientStats {
	int64_t query_start_us; /* 0: no request under way */
	int64_t xact_start_us;  /* 0: no transaction under way */
	int64_t wait_start_us;
	uint64_t in_mark, out_mark; /* client socket byte counts already charged to a pool */
	Buf sql;                    /* log.slow_query only: the request's statement text */
	bool sql_known;
} ClientStats;

/* Runtime.metrics. */
typedef struct Metrics {
	struct event *ev_period;
	int64_t period_ms;       /* the timer's period (log.stats_period, or 60 s when that is 0) */
	int64_t period_start_us;
	StatsHistograms *hist;
	StatsAverages avg;       /* every pool together, last period */
} Metrics;

#endif
