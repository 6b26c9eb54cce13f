/*
 * catalog_loader — one Catalog per service primary, loaded on the loop (see catalog_loader.h).
 *
 * A load: pgasync_connect (the deadline is the load's timeout) → connected → pgasync_query(the
 * catalog query, the rest of the deadline) → each result's rows into a CatalogBuilder → done →
 * close the connection, finish the builder, swap the catalog in (or keep the old one when its
 * rows were the same), schedule the next load. A failure anywhere (connection, SQL error, a row
 * the builder refuses, the deadline) abandons the builder and keeps the current catalog.
 */
#include "catalog_loader.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "pgasync.h"
#include "xalloc.h"

#define DEFAULT_TIMEOUT_MS 30000
#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 60000

typedef struct Source Source;

struct CatalogLoader {
	struct event_base *base;
	CatalogLoaderOptions opt;
	bool allow_cleartext;
	CatalogLoadedFn fn;
	void *arg;
	Source **src;
	size_t n_src;
};

struct Source {
	CatalogLoader *l;
	char *service;
	char *who; /* "catalog <service>" */
	/* The primary, copied from the configuration. */
	char *host;
	int port;
	char *dbname;
	char *user;
	char *password;
	ConfigTlsMode tls_mode;
	char *ca;

	PgAsync *pa;
	Catalog *cat;
	CatalogBuilder *b;
	char error[256];        /* the running load's first error */
	LoopTimer ev_next;   /* next load */
	int64_t backoff_ms;
	bool failing;           /* a warning was logged for this failure streak */
	uint64_t streak;        /* failures in a row */
	uint64_t refresh_gen;   /* counts refresh requests */
	uint64_t load_gen;      /* refresh_gen when the running load started */
	uint64_t good_gen;      /* refresh_gen when the last successful load started */
	int64_t started_ms, query_started_ms;
	size_t rows;            /* rows of the running load so far */
	CatalogLoadStats st;
};

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

static int64_t timeout_of(const CatalogLoader *l)
{
	return l->opt.timeout_ms > 0 ? l->opt.timeout_ms : DEFAULT_TIMEOUT_MS;
}

static void next_schedule(Source *s, int64_t ms)
{
	loop_timer_start(&s->ev_next, ms);
}

static void load_start(Source *s);

/* Abandons the running load (if any) without counting it. */
static void load_abandon(Source *s)
{
	pgasync_close(s->pa);
	catalog_builder_free(s->b);
	s->b = NULL;
	s->st.loading = false;
}

/* The end of an attempt: the next one now (a refresh came meanwhile) or later. */
static void load_ended(Source *s, bool ok)
{
	s->st.loading = false;
	if (s->st.refresh_pending) {
		s->st.refresh_pending = false;
		next_schedule(s, 0);
		return;
	}
	int64_t every = s->l->opt.refresh_ms;
	if (ok) {
		s->backoff_ms = BACKOFF_MIN_MS;
		if (every > 0)
			next_schedule(s, every);
		return;
	}
	int64_t delay = s->backoff_ms;
	if (every > 0 && every < delay)
		delay = every;
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
	next_schedule(s, delay);
}

static void load_failed(Source *s, const char *message)
{
	char line[sizeof s->st.last_error];
	log_one_line(line, sizeof line, message);
	load_abandon(s);
	snprintf(s->st.last_error, sizeof s->st.last_error, "%s", line);
	s->st.failures++;
	s->streak++;
	if (!s->failing) {
		s->failing = true;
		if (s->cat)
			log_warning(s->who, "cannot load the catalog: %s; keeping the one loaded %lld s ago", line,
				    (long long)((loop_now_ms() - s->st.last_load_ms) / 1000));
		else
			log_warning(s->who, "cannot load the catalog: %s; none yet (retrying)", line);
	} else {
		log_debug(s->who, "cannot load the catalog: %s", line);
	}
	load_ended(s, false);
}

/* ---- pgasync callbacks ---- */

static void on_connected(void *arg)
{
	Source *s = arg;
	char sql[CATALOG_SQL_CAP];
	int64_t left = timeout_of(s->l) - (loop_now_ms() - s->started_ms);
	if (left < 1)
		left = 1;
	s->query_started_ms = loop_now_ms();
	if (!catalog_sql(sql, sizeof sql, timeout_of(s->l)) || !pgasync_query(s->pa, sql, left))
		load_failed(s, "cannot send the catalog query");
}

static bool on_result(void *arg, PGresult *res)
{
	Source *s = arg;
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK)
		return true; /* BEGIN, SET, COMMIT */
	if (st != PGRES_TUPLES_OK) {
		if (!s->error[0]) {
			const char *m = PQresultErrorMessage(res);
			log_one_line(s->error, sizeof s->error, m && *m ? m : PQresStatus(st));
		}
		return true;
	}
	if (s->error[0] || !s->b)
		return true;
	int nf = PQnfields(res), nt = PQntuples(res);
	if (nf < 1 || nf > 16) {
		snprintf(s->error, sizeof s->error, "unexpected catalog result with %d columns", nf);
		return true;
	}
	const char *cols[16];
	for (int r = 0; r < nt; r++) {
		for (int f = 0; f < nf; f++)
			cols[f] = PQgetisnull(res, r, f) ? NULL : PQgetvalue(res, r, f);
		char err[200];
		if (!catalog_builder_row(s->b, cols, (size_t)nf, err, sizeof err)) {
			snprintf(s->error, sizeof s->error, "unusable catalog row: %s", err);
			return true;
		}
	}
	s->rows += (size_t)nt;
	return true;
}

static void on_done(void *arg)
{
	Source *s = arg;
	int64_t query_ms = loop_now_ms() - s->query_started_ms;
	pgasync_close(s->pa); /* nothing kept open between loads */
	if (s->error[0]) {
		char msg[sizeof s->error];
		memcpy(msg, s->error, sizeof msg);
		load_failed(s, msg);
		return;
	}
	int64_t build_start = loop_now_ms();
	char err[256];
	CatalogBuilder *b = s->b;
	s->b = NULL;
	Catalog *cat = catalog_builder_finish(b, err, sizeof err);
	if (!cat) {
		char msg[300];
		snprintf(msg, sizeof msg, "unusable catalog: %s", err);
		load_failed(s, msg);
		return;
	}
	int64_t end = loop_now_ms();
	s->st.rows = s->rows; /* the stats tell the last successful load's */
	s->st.loads++;
	s->st.last_load_ms = end;
	s->st.last_query_ms = query_ms;
	s->st.last_build_ms = end - build_start;
	s->st.last_total_ms = end - s->started_ms;
	s->good_gen = s->load_gen;
	s->st.stale = s->good_gen != s->refresh_gen;
	if (s->failing)
		log_info(s->who, "catalog loaded again after %llu failed attempts", (unsigned long long)s->streak);
	s->failing = false;
	s->streak = 0;
	bool first = !s->cat;
	if (s->cat && catalog_fingerprint(s->cat) == catalog_fingerprint(cat) &&
	    catalog_count(s->cat) == catalog_count(cat)) {
		s->st.unchanged++;
		catalog_unref(cat);
		log_debug(s->who, "catalog unchanged (%zu rows, query %lld ms)", s->st.rows, (long long)query_ms);
		load_ended(s, true);
		return;
	}
	catalog_unref(s->cat);
	s->cat = cat;
	s->st.relations = catalog_count(cat);
	if (first)
		log_info(s->who, "catalog loaded: %zu relations (%zu rows; query %lld ms, build %lld ms)",
			 catalog_count(cat), s->st.rows, (long long)query_ms, (long long)s->st.last_build_ms);
	else
		log_info(s->who, "catalog changed: %zu relations (%zu rows; query %lld ms, build %lld ms)",
			 catalog_count(cat), s->st.rows, (long long)query_ms, (long long)s->st.last_build_ms);
	load_ended(s, true);
	if (s->l->fn)
		s->l->fn(s->l->arg, s->service, cat);
}

static void on_failed(void *arg, PgAsyncPhase phase, const char *message)
{
	Source *s = arg;
	char msg[400];
	snprintf(msg, sizeof msg, "%s: %s", phase == PGASYNC_QUERYING ? "catalog query" : "connection", message);
	load_failed(s, msg);
}

static void on_notice(void *arg, const char *message)
{
	Source *s = arg;
	log_debug(s->who, "server says: %s", message);
}

/* ---- loads ---- */

static void load_start(Source *s)
{
	loop_timer_stop(&s->ev_next);
	if (s->st.loading) {
		s->st.refresh_pending = true;
		return;
	}
	s->st.loading = true;
	s->rows = 0;
	s->error[0] = '\0';
	s->load_gen = s->refresh_gen;
	s->started_ms = loop_now_ms();
	catalog_builder_free(s->b);
	s->b = catalog_builder_new();

	const char *keys[16], *vals[16];
	size_t n = 0;
	char port[16], timeout[24];
	snprintf(port, sizeof port, "%d", s->port);
	snprintf(timeout, sizeof timeout, "%lld", (long long)((timeout_of(s->l) + 999) / 1000));
	keys[n] = "host", vals[n++] = s->host;
	keys[n] = "port", vals[n++] = port;
	keys[n] = "dbname", vals[n++] = s->dbname;
	keys[n] = "user", vals[n++] = s->user;
	if (s->password)
		keys[n] = "password", vals[n++] = s->password;
	keys[n] = "sslmode", vals[n++] = config_tls_mode_name(s->tls_mode);
	if (s->tls_mode == CONFIG_TLS_VERIFY_FULL && s->ca)
		keys[n] = "sslrootcert", vals[n++] = s->ca;
	keys[n] = "connect_timeout", vals[n++] = timeout; /* libpq's own (blocking calls only): ours counts */
	keys[n] = "application_name", vals[n++] = "pgrelay-catalog";
	/* As the health checks: no cleartext password over what may be plain TCP (libpq 16+). */
	if (!s->l->allow_cleartext && s->host[0] != '/' && s->tls_mode != CONFIG_TLS_REQUIRE &&
	    s->tls_mode != CONFIG_TLS_VERIFY_FULL && PQlibVersion() >= 160000)
		keys[n] = "require_auth", vals[n++] = "!password";
	keys[n] = NULL, vals[n] = NULL;
	pgasync_connect(s->pa, keys, vals, timeout_of(s->l));
}

static void on_next(void *arg)
{
	load_start(arg);
}

/* ---- sources and configuration ---- */

static void source_set_credentials(Source *s, const ConfigService *svc)
{
	free(s->user);
	free_secret(s->password);
	free(s->ca);
	s->user = xstrdup(svc->primary.user);
	s->password = xstrdup(svc->primary.password);
	s->tls_mode = svc->tls.mode;
	s->ca = xstrdup(svc->tls.ca);
}

static Source *source_new(CatalogLoader *l, const ConfigService *svc)
{
	Source *s = xcalloc(1, sizeof *s);
	s->l = l;
	s->service = xstrdup(svc->name);
	size_t wl = strlen(svc->name) + 9;
	s->who = xmalloc(wl);
	snprintf(s->who, wl, "catalog %s", svc->name);
	s->host = xstrdup(svc->primary.host);
	s->port = svc->primary.port;
	s->dbname = xstrdup(svc->primary.dbname);
	source_set_credentials(s, svc);
	s->backoff_ms = BACKOFF_MIN_MS;
	loop_timer_init(&s->ev_next, l->base, on_next, s);
	PgAsyncHandler h = {.connected = on_connected, .result = on_result, .done = on_done, .failed = on_failed,
			    .notice = on_notice};
	s->pa = pgasync_new(l->base, NULL, s->who, &h, s);
	next_schedule(s, 0); /* from the loop */
	return s;
}

static void source_free(Source *s)
{
	load_abandon(s);
	loop_timer_stop(&s->ev_next);
	pgasync_free(s->pa);
	catalog_unref(s->cat);
	free(s->service);
	free(s->who);
	free(s->host);
	free(s->dbname);
	free(s->user);
	free_secret(s->password);
	free(s->ca);
	free(s);
}

static Source *source_find(const CatalogLoader *l, const char *service)
{
	for (size_t i = 0; service && i < l->n_src; i++)
		if (strcmp(l->src[i]->service, service) == 0)
			return l->src[i];
	return NULL;
}

static void apply(CatalogLoader *l, const Config *cfg)
{
	l->allow_cleartext = cfg->allow_cleartext_without_tls;
	Source **next = xcalloc(cfg->n_services, sizeof *next);
	size_t n = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const ConfigService *svc = &cfg->services[i];
		Source *s = NULL;
		for (size_t j = 0; j < l->n_src; j++)
			if (l->src[j] && strcmp(l->src[j]->service, svc->name) == 0) {
				s = l->src[j];
				l->src[j] = NULL; /* taken */
				break;
			}
		if (!svc->primary.user) {
			if (s) {
				log_info(s->who, "no user configured any more: catalog dropped");
				if (s->cat && l->fn)
					l->fn(l->arg, s->service, NULL);
				source_free(s);
			} else {
				log_warning("catalog", "service %s has no primary user: pgrelay cannot read its catalog, "
						       "so none of its reads is cached", svc->name);
			}
			continue;
		}
		if (s && (strcmp(s->host, svc->primary.host) != 0 || s->port != svc->primary.port ||
			  !str_eq(s->dbname, svc->primary.dbname))) {
			log_info(s->who, "the primary's address or database changed: catalog dropped, loading anew");
			if (s->cat && l->fn)
				l->fn(l->arg, s->service, NULL);
			source_free(s);
			s = NULL;
		}
		if (!s) {
			s = source_new(l, svc);
		} else if (!str_eq(s->user, svc->primary.user) || !str_eq(s->password, svc->primary.password) ||
			   s->tls_mode != svc->tls.mode || !str_eq(s->ca, svc->tls.ca)) {
			log_info(s->who, "credentials or TLS settings changed: reloading the catalog");
			load_abandon(s);
			source_set_credentials(s, svc);
			s->st.refresh_pending = false;
			next_schedule(s, 0);
		}
		next[n++] = s;
	}
	for (size_t j = 0; j < l->n_src; j++) {
		Source *s = l->src[j];
		if (!s)
			continue;
		log_info(s->who, "service no longer configured: catalog dropped");
		if (s->cat && l->fn)
			l->fn(l->arg, s->service, NULL);
		source_free(s);
	}
	free(l->src);
	l->src = next;
	l->n_src = n;
}

CatalogLoader *catalog_loader_new(struct event_base *base, const Config *cfg, const CatalogLoaderOptions *opt,
				  CatalogLoadedFn fn, void *arg)
{
	CatalogLoader *l = xcalloc(1, sizeof *l);
	l->base = base;
	if (opt)
		l->opt = *opt;
	l->fn = fn;
	l->arg = arg;
	apply(l, cfg);
	return l;
}

void catalog_loader_reconfigure(CatalogLoader *l, const Config *cfg)
{
	if (l && cfg)
		apply(l, cfg);
}

void catalog_loader_refresh(CatalogLoader *l, const char *service)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n_src; i++) {
		Source *s = l->src[i];
		if (service && strcmp(s->service, service) != 0)
			continue;
		s->refresh_gen++;
		s->st.stale = true;
		if (s->st.loading)
			s->st.refresh_pending = true; /* the running load may have read the old catalog */
		else
			next_schedule(s, 0);
	}
}

bool catalog_loader_stale(const CatalogLoader *l, const char *service)
{
	const Source *s = l ? source_find(l, service) : NULL;
	return s && s->st.stale;
}

void catalog_loader_set_refresh(CatalogLoader *l, int64_t refresh_ms)
{
	if (!l || l->opt.refresh_ms == refresh_ms)
		return;
	l->opt.refresh_ms = refresh_ms;
	for (size_t i = 0; i < l->n_src; i++) {
		Source *s = l->src[i];
		/* a load under way (the next is scheduled when it ends), a backoff, a first load or a refresh
		 * still to come keep their schedule */
		if (s->st.loading || s->streak || !s->cat || s->st.stale)
			continue;
		if (refresh_ms > 0)
			next_schedule(s, refresh_ms);
		else
			loop_timer_stop(&s->ev_next);
	}
}

Catalog *catalog_loader_get(const CatalogLoader *l, const char *service)
{
	const Source *s = l ? source_find(l, service) : NULL;
	return s ? s->cat : NULL;
}

bool catalog_loader_stats(const CatalogLoader *l, const char *service, CatalogLoadStats *out)
{
	const Source *s = l ? source_find(l, service) : NULL;
	if (!out)
		return s != NULL;
	if (!s) {
		memset(out, 0, sizeof *out);
		return false;
	}
	*out = s->st;
	return true;
}

void catalog_loader_free(CatalogLoader *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n_src; i++)
		source_free(l->src[i]);
	free(l->src);
	free(l);
}
