/*
 * runtime — the event loop and everything hanging off it (see runtime.h): start-up, signals
 * (SIGHUP reload, SIGTERM graceful shutdown, SIGINT immediate exit), the once-a-second janitor,
 * and the hooks (Runtime.reload, begin_shutdown, client_gone) the modules call instead of it.
 */
#include "runtime.h"
#include "dns.h"

#include <errno.h>
#include <event2/dns.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "admin.h"
#include "balance.h"
#include "cache.h"
#include "cancel.h"
#include "cancel_conn.h"
#include "client.h"
#include "config_keys.h"
#include "http.h"
#include "listener.h"
#include "pool.h"
#include "scram.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "statement_tx.h"
#include "upgrade.h"
#include "xalloc.h"

/* Read buffers kept for reuse (conn.h): enough for the connections that are busy at once on a
 * loop (each is buffer_size, 64 kB by default: at most 4 MB kept). */
#define RUNTIME_SPARE_READ_BUFFERS 64

/* ---- shutdown ---- */

static void runtime_check_shutdown_done(Runtime *rt)
{
	if (rt->shutting_down && rt->n_clients == 0) {
		log_info(NULL, "all clients gone: exiting");
		event_base_loopbreak(rt->base);
	}
}

static void runtime_client_gone(Runtime *rt) { runtime_check_shutdown_done(rt); }

static void runtime_begin_shutdown(Runtime *rt)
{
	if (rt->shutting_down)
		return;
	rt->shutting_down = true;
	rt->shutdown_deadline_ms = loop_now_ms() + rt->config->shutdown_timeout_ms;
	upgrade_notify_stopping();
	log_info(NULL, "SIGTERM: no longer accepting connections; waiting up to %lld ms for %zu client(s) to finish their transactions",
		 (long long)rt->config->shutdown_timeout_ms, rt->n_clients);
	listener_stop(rt);
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->clients)
		client_shutdown(list_entry(n, Client, node));
	runtime_check_shutdown_done(rt);
}

/* ---- signals and janitor ---- */

/* Builds the client-facing TLS context for cfg; false (error logged) if it cannot be. */
static bool runtime_tls_for(Runtime *rt, const Config *cfg, SSL_CTX **out)
{
	(void)rt;
	*out = NULL;
	if (cfg->listen.tls.mode == CONFIG_TLS_DISABLE)
		return true;
	char err[512];
	*out = tls_server_context(&cfg->listen.tls, err, sizeof err);
	if (!*out)
		log_error(NULL, "%s", err);
	return *out != NULL;
}

/* The configuration's warnings (secrets readable by others, ...), at start and at each reload. */
static void runtime_log_config_warnings(const Config *cfg)
{
	for (size_t i = 0; i < cfg->n_warnings; i++)
		log_warning(NULL, "%s", cfg->warnings[i]);
}

/* What a reload found changed (config_keys_diff), and what it means for the cache. */
typedef struct ReloadDiff {
	Config *cfg;
	bool cache_fresh;   /* no cache runs before or after: its keys apply as they are */
	bool cache_all;     /* a change drops every service's cached results */
	const char *services[64]; /* the services whose cached results a change drops */
	size_t n_services;
} ReloadDiff;

static void reload_change(void *arg, const ConfigChange *ch)
{
	ReloadDiff *d = arg;
	const char *was = ch->old_value ? ch->old_value : "(none)", *now = ch->new_value ? ch->new_value : "(none)";
	if ((ch->key->flags & CONFIG_KEY_RESTART) && !(d->cache_fresh && !strncmp(ch->path, "cache.", 6))) {
		log_warning(NULL, "%s changed (%s -> %s): this needs a restart; keeping %s until then", ch->path, was, now,
			    was);
		config_keys_keep(d->cfg, ch);
		return;
	}
	log_info(NULL, "%s: %s -> %s", ch->path, was, now);
	if (!(ch->key->flags & CONFIG_KEY_CACHE))
		return;
	bool known = false;
	for (size_t i = 0; i < d->n_services && !known; i++)
		known = ch->service && !strcmp(d->services[i], ch->service);
	if (!ch->service || d->n_services == sizeof d->services / sizeof d->services[0])
		d->cache_all = true;
	else if (!known)
		d->services[d->n_services++] = ch->service;
}

/* The cache after a reload: started, stopped, or told what changed. */
static void runtime_reload_cache(Runtime *rt, const Config *old, const ReloadDiff *d)
{
	const Config *cfg = rt->config;
	if (cfg->cache.enabled && !rt->cache) {
		rt->cache = cache_new(rt);
		log_info(NULL, "cache: on");
		/* writes made while it was off bumped nothing: no result stored before (in Redis) is trusted */
		for (size_t i = 0; rt->cache && i < cfg->n_services; i++)
			cache_drop_service(rt->cache, cfg->services[i].name);
		/* nor did transactions open now note what they wrote: they invalidate all at their end */
		ListNode *n;
		list_for_each(n, &rt->clients)
			statement_tx_cache_started(list_entry(n, Client, node));
		return;
	}
	if (!rt->cache)
		return;
	if (!cfg->cache.enabled) {
		Cache *cache = rt->cache;
		ListNode *n;
		list_for_each(n, &rt->clients) {
			Client *c = list_entry(n, Client, node);
			if (c->cache)
				cache_release_waiter(cache, c->cache);
		}
		rt->cache = NULL; /* what cache_free's callbacks run sees no cache */
		cache_free(cache);
		log_info(NULL, "cache: off (every cached result dropped)");
		return;
	}
	cache_reconfigure(rt->cache, cfg);
	const Config *both[2] = {old, cfg};
	for (size_t c = 0; d->cache_all && c < 2; c++) /* services that went too: their entries named them */
		for (size_t i = 0; i < both[c]->n_services; i++)
			cache_drop_service(rt->cache, both[c]->services[i].name);
	for (size_t i = 0; !d->cache_all && i < d->n_services; i++)
		cache_drop_service(rt->cache, d->services[i]);
}

static void runtime_reload(Runtime *rt)
{
	char err[4096];
	Config *cfg = config_load(rt->config_path, err, sizeof(err));
	if (!cfg) {
		log_error(NULL, "reload failed, keeping the running configuration:\n%s", err);
		return;
	}
	SSL_CTX *tls;
	if (!runtime_tls_for(rt, cfg, &tls)) {
		log_error(NULL, "reload failed (listen.tls), keeping the running configuration");
		config_unref(cfg);
		return;
	}
	if (rt->tls_listen)
		SSL_CTX_free(rt->tls_listen); /* connections keep their own reference */
	rt->tls_listen = tls;
	Config *old = rt->config;
	ReloadDiff d = {.cfg = cfg, .cache_fresh = !rt->cache || !cfg->cache.enabled};
	size_t changes = config_keys_diff(old, cfg, reload_change, &d);
	rt->config = cfg;
	rt->log.level = cfg->log.level;
	rt->log.json = cfg->log.json;
	scram_cache_clear(&rt->scram);
	pool_apply_config(rt, cfg);
	health_reconfigure(rt->health, cfg);
	stats_reconfigure(rt);
	http_reconfigure(rt);
	runtime_reload_cache(rt, old, &d);
	free(rt->route_matches); /* the rules may have changed: counting starts over */
	rt->n_route_matches = cfg->n_routes;
	rt->route_matches = xcalloc(cfg->n_routes ? cfg->n_routes : 1, sizeof *rt->route_matches);
	free(rt->access_hits); /* new rules: counting starts over (connections already in keep going) */
	rt->n_access_hits = cfg->n_access;
	rt->access_hits = xcalloc(cfg->n_access ? cfg->n_access : 1, sizeof *rt->access_hits);
	config_unref(old);
	runtime_log_config_warnings(cfg);
	log_info(NULL, "configuration reloaded from %s (%zu change%s)", rt->config_path, changes, changes == 1 ? "" : "s");
}

static void runtime_on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	Runtime *rt = arg;
	switch (sig) {
	case SIGHUP:
		log_info(NULL, "SIGHUP: reloading %s", rt->config_path);
		runtime_reload(rt);
		break;
	case SIGTERM:
		runtime_begin_shutdown(rt);
		break;
	case SIGINT:
		log_info(NULL, "SIGINT: exiting now");
		event_base_loopbreak(rt->base);
		break;
	default:
		break;
	}
}

static void runtime_on_janitor(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Runtime *rt = arg;
	pool_janitor(rt);
	if (rt->shutting_down && loop_now_ms() >= rt->shutdown_deadline_ms) {
		log_warning(NULL, "shutdown_timeout reached with %zu client(s) still connected: exiting", rt->n_clients);
		event_base_loopbreak(rt->base);
	}
}

bool runtime_init(Runtime *rt, Config *cfg, const char *config_path)
{
	memset(rt, 0, sizeof(*rt));
	rt->config = cfg;
	rt->config_path = strdup(config_path);
	rt->log.level = cfg->log.level;
	rt->log.json = cfg->log.json;
	log_configure(&rt->log);
	list_init(&rt->clients);
	list_init(&rt->pools);
	list_init(&rt->cancels);
	prepared_registry_init(&rt->stmts);
	sqlclass_cache_init(&rt->sql, 50000);
	signal(SIGPIPE, SIG_IGN);
	runtime_log_config_warnings(cfg);
	if (RAND_bytes(rt->scram.secret, sizeof rt->scram.secret) != 1) {
		log_error(NULL, "cannot draw random bytes (OpenSSL RAND_bytes)");
		return false;
	}

	rt->base = event_base_new();
	if (!rt->base) {
		log_error(NULL, "cannot create the event loop");
		return false;
	}
	rt->dns = dns_base_new(rt->base);
	if (!runtime_tls_for(rt, cfg, &rt->tls_listen))
		return false;
	rt->reload = runtime_reload;
	rt->begin_shutdown = runtime_begin_shutdown;
	rt->client_gone = runtime_client_gone;
	rt->console = admin_console_ops();
	bool reaper_ok = loop_reaper_init(&rt->reaper, rt->base);
	conn_spares_init(&rt->read_buffers, RUNTIME_SPARE_READ_BUFFERS);
	rt->ev_sighup = evsignal_new(rt->base, SIGHUP, runtime_on_signal, rt);
	rt->ev_sigterm = evsignal_new(rt->base, SIGTERM, runtime_on_signal, rt);
	rt->ev_sigint = evsignal_new(rt->base, SIGINT, runtime_on_signal, rt);
	rt->ev_janitor = event_new(rt->base, -1, EV_PERSIST, runtime_on_janitor, rt);
	struct timeval second = {1, 0};
	if (!reaper_ok || !rt->ev_sighup || !rt->ev_sigterm || !rt->ev_sigint || !rt->ev_janitor ||
	    event_add(rt->ev_sighup, NULL) || event_add(rt->ev_sigterm, NULL) || event_add(rt->ev_sigint, NULL) ||
	    event_add(rt->ev_janitor, &second)) {
		log_error(NULL, "cannot set up signal handling");
		return false;
	}
	stats_start(rt);
	/* Before the listener: once clients can connect, /metrics and /health answer too. */
	if (cfg->admin.http_host && !(rt->http = http_start(rt)))
		return false;
	listener_raise_fd_limit(cfg);
	if (upgrade_take_over(rt))
		listener_watch(rt);
	else if (!listener_start(rt))
		return false;
	rt->health = health_start(rt->base, cfg);
	rt->n_route_matches = cfg->n_routes;
	rt->route_matches = xcalloc(cfg->n_routes ? cfg->n_routes : 1, sizeof *rt->route_matches);
	rt->n_access_hits = cfg->n_access;
	rt->access_hits = xcalloc(cfg->n_access ? cfg->n_access : 1, sizeof *rt->access_hits);
	if (cfg->cache.enabled && !(rt->cache = cache_new(rt))) {
		log_error(NULL, "cannot set up the result cache");
		return false;
	}
	return true;
}

int runtime_run(Runtime *rt)
{
	upgrade_start(rt);
	log_info(NULL, "pgrelay %s listening on %s:%d", PGRELAY_VERSION, rt->config->listen.host, rt->config->listen.port);
	upgrade_notify_ready(rt);
	event_base_dispatch(rt->base);
	return 0;
}

void runtime_free(Runtime *rt)
{
	listener_stop(rt);
	http_stop(rt);
	ListNode *n, *t;
	list_for_each_safe(n, t, &rt->clients)
		client_close(list_entry(n, Client, node), "pgrelay exiting");
	list_for_each_safe(n, t, &rt->pools)
		pool_free(list_entry(n, Pool, node));
	cancel_conn_free_all(rt);
	health_stop(rt->health);
	rt->health = NULL;
	balance_free(rt);
	loop_reaper_run(&rt->reaper); /* what closing the clients left */
	cache_free(rt->cache);
	rt->cache = NULL;
	admin_free(rt);
	upgrade_stop(rt);
	free(rt->route_matches);
	rt->route_matches = NULL;
	free(rt->access_hits);
	rt->access_hits = NULL;
	stats_stop(rt);
	cancel_map_free(&rt->cancel_map);
	prepared_registry_free(&rt->stmts);
	sqlclass_cache_free(&rt->sql);
	scram_cache_clear(&rt->scram);
	loop_reaper_free(&rt->reaper);
	conn_spares_free(&rt->read_buffers); /* after the last connection */
	if (rt->ev_sighup)
		event_free(rt->ev_sighup);
	if (rt->ev_sigterm)
		event_free(rt->ev_sigterm);
	if (rt->ev_sigint)
		event_free(rt->ev_sigint);
	if (rt->ev_janitor)
		event_free(rt->ev_janitor);
	if (rt->dns)
		evdns_base_free(rt->dns, 0);
	if (rt->base)
		event_base_free(rt->base);
	if (rt->tls_listen)
		SSL_CTX_free(rt->tls_listen);
	config_unref(rt->config);
	free(rt->config_path);
	log_configure(NULL);
}
