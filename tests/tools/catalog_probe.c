/*
 * catalog_probe — test driver for the catalog loader (src/catalog_loader.c, src/pgasync.c,
 * src/catalog.c), used by tests/integration/test_catalog.py. Not installed.
 *
 *   catalog_probe [--refresh-ms N] [--timeout-ms N] [--service NAME] [--debug] CONNINFO
 *
 * Turns CONNINFO (host, port, dbname, user, password, sslmode) into a one-service configuration
 * and runs the real loader on a libevent loop, driven by lines on stdin:
 *   show REL...        one JSON line per relation (REL: schema.name, split at the first dot):
 *                      {"rel", "found", "oid", "relkind", "read", "insert", "update", "delete",
 *                       "truncate", "ancestors"}, each set {"rels": ["s.t", ...], "total", "too_many",
 *                       "unknown", "why"}; {"rel", "found": false, "loaded": bool} otherwise
 *   refresh [SERVICE]  catalog_loader_refresh
 *   stats              {"stats": {"loads", "unchanged", "failures", "loading", "pending", "stale",
 *                       "query_ms", "build_ms", "total_ms", "rows", "relations", "last_error"}}
 *   reconfigure CONNINFO   catalog_loader_reconfigure with the configuration made from CONNINFO
 *   echo TEXT          {"echo": TEXT} (a marker)
 * Output lines (stdout, flushed each): the answers above, and {"event": "catalog", "service",
 * "relations"} / {"event": "dropped", "service"} for each callback. At the end of input: frees the
 * loader, prints {"bye": true}, exits 0. Logs go to stderr.
 */
#include <event2/event.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog_loader.h"
#include "config.h"
#include "log.h"
#include "xalloc.h"

typedef struct Probe {
	struct event_base *base;
	CatalogLoader *l;
	const char *service;
	struct event *stdin_ev;
	char *buf;
	size_t len, cap;
} Probe;

static void put_json_str(const char *s)
{
	char out[2048];
	log_json_escape(out, 0, sizeof out, s ? s : "");
	printf("\"%s\"", out);
}

/* The YAML of a one-service configuration from a connection string; NULL (message on stderr) when
 * it does not parse. */
static char *yaml_from_conninfo(const char *service, const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (!opts) {
		fprintf(stderr, "catalog_probe: invalid connection string: %s", err ? err : "?");
		PQfreemem(err);
		return NULL;
	}
	const char *host = "127.0.0.1", *port = "5432", *dbname = NULL, *user = NULL, *password = NULL;
	const char *sslmode = "disable";
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0])
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
		else if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
		else if (strcmp(o->keyword, "user") == 0)
			user = o->val;
		else if (strcmp(o->keyword, "password") == 0)
			password = o->val;
		else if (strcmp(o->keyword, "sslmode") == 0)
			sslmode = o->val;
	}
	char *y = xmalloc(4096);
	char e_host[600], e_db[600], e_user[600], e_pw[600];
	log_json_escape(e_host, 0, sizeof e_host, host);
	log_json_escape(e_db, 0, sizeof e_db, dbname ? dbname : service);
	log_json_escape(e_user, 0, sizeof e_user, user ? user : "");
	log_json_escape(e_pw, 0, sizeof e_pw, password ? password : "");
	/* A JSON string is a valid YAML double-quoted scalar. */
	snprintf(y, 4096,
		 "proxy: { allow_cleartext_without_tls: true }\n"
		 "databases:\n  %s: { service: %s }\n"
		 "services:\n  %s:\n    primary: { host: \"%s\", port: %s, dbname: \"%s\"%s%s%s%s%s%s }\n"
		 "    tls: { mode: %s }\n",
		 service, service, service, e_host, port, e_db, user ? ", user: \"" : "", user ? e_user : "",
		 user ? "\"" : "", password ? ", password: \"" : "", password ? e_pw : "", password ? "\"" : "",
		 strcmp(sslmode, "require") == 0 || strcmp(sslmode, "prefer") == 0 ? sslmode : "disable");
	PQconninfoFree(opts);
	return y;
}

static Config *config_from_conninfo(const char *service, const char *conninfo)
{
	char *y = yaml_from_conninfo(service, conninfo);
	if (!y)
		return NULL;
	char err[2048];
	Config *cfg = config_load_string("probe.yaml", y, err, sizeof err);
	free(y);
	if (!cfg)
		fprintf(stderr, "catalog_probe: configuration: %s\n", err);
	return cfg;
}

static void on_loaded(void *arg, const char *service, Catalog *cat)
{
	(void)arg;
	printf("{\"event\": \"%s\", \"service\": ", cat ? "catalog" : "dropped");
	put_json_str(service);
	if (cat)
		printf(", \"relations\": %zu", catalog_count(cat));
	puts("}");
	fflush(stdout);
}

static void put_set(const CatalogSet *s)
{
	fputs("{\"rels\": [", stdout);
	for (size_t i = 0; i < s->n; i++) {
		char name[300];
		snprintf(name, sizeof name, "%s.%s", s->rels[i]->schema, s->rels[i]->name);
		if (i)
			fputs(", ", stdout);
		put_json_str(name);
	}
	printf("], \"total\": %zu, \"too_many\": %s, \"unknown\": %s, \"why\": ", s->total, s->too_many ? "true" : "false",
	       s->unknown ? "true" : "false");
	put_json_str(s->why);
	putchar('}');
}

static void show(Probe *p, const char *arg)
{
	char schema[256], name[256];
	const char *dot = strchr(arg, '.');
	if (!dot || (size_t)(dot - arg) >= sizeof schema || strlen(dot + 1) >= sizeof name) {
		fputs("{\"rel\": ", stdout);
		put_json_str(arg);
		puts(", \"error\": \"expected schema.name\"}");
		return;
	}
	memcpy(schema, arg, (size_t)(dot - arg));
	schema[dot - arg] = '\0';
	snprintf(name, sizeof name, "%s", dot + 1);
	Catalog *cat = catalog_loader_get(p->l, p->service);
	const CatalogRel *r = catalog_find(cat, schema, name);
	fputs("{\"rel\": ", stdout);
	put_json_str(arg);
	if (!r) {
		printf(", \"found\": false, \"loaded\": %s}\n", cat ? "true" : "false");
		return;
	}
	printf(", \"found\": true, \"oid\": %u, \"relkind\": \"%c\", \"read\": ", r->oid, r->relkind);
	put_set(catalog_read_deps(r));
	const char *kinds[] = {"insert", "update", "delete", "truncate"};
	for (int k = 0; k < CATALOG_WRITE_KINDS; k++) {
		printf(", \"%s\": ", kinds[k]);
		put_set(catalog_write_effects(r, (CatalogWrite)k));
	}
	printf(", \"ancestors\": ");
	put_set(catalog_ancestors(r));
	puts("}");
}

static void stats(Probe *p)
{
	CatalogLoadStats s;
	bool known = catalog_loader_stats(p->l, p->service, &s);
	printf("{\"stats\": {\"known\": %s, \"loads\": %llu, \"unchanged\": %llu, \"failures\": %llu, \"loading\": %s, "
	       "\"pending\": %s, \"stale\": %s, \"query_ms\": %lld, \"build_ms\": %lld, \"total_ms\": %lld, "
	       "\"rows\": %zu, \"relations\": %zu, \"last_error\": ",
	       known ? "true" : "false", (unsigned long long)s.loads, (unsigned long long)s.unchanged,
	       (unsigned long long)s.failures, s.loading ? "true" : "false", s.refresh_pending ? "true" : "false",
	       s.stale ? "true" : "false", (long long)s.last_query_ms, (long long)s.last_build_ms,
	       (long long)s.last_total_ms, s.rows, s.relations);
	put_json_str(s.last_error);
	puts("}}");
}

static void command(Probe *p, char *line)
{
	char *rest = strchr(line, ' ');
	if (rest)
		*rest++ = '\0';
	if (strcmp(line, "show") == 0) {
		for (char *tok = rest ? strtok(rest, " ") : NULL; tok; tok = strtok(NULL, " "))
			show(p, tok);
	} else if (strcmp(line, "refresh") == 0) {
		catalog_loader_refresh(p->l, rest && *rest ? rest : NULL);
	} else if (strcmp(line, "stats") == 0) {
		stats(p);
	} else if (strcmp(line, "reconfigure") == 0) {
		Config *cfg = config_from_conninfo(p->service, rest ? rest : "");
		if (cfg) {
			catalog_loader_reconfigure(p->l, cfg);
			config_unref(cfg);
		}
		puts(cfg ? "{\"reconfigured\": true}" : "{\"reconfigured\": false}");
	} else if (strcmp(line, "echo") == 0) {
		fputs("{\"echo\": ", stdout);
		put_json_str(rest);
		puts("}");
	} else if (line[0]) {
		fputs("{\"error\": \"unknown command\", \"line\": ", stdout);
		put_json_str(line);
		puts("}");
	}
	fflush(stdout);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Probe *p = arg;
	if (p->cap - p->len < 4096) {
		p->cap = p->cap ? p->cap * 2 : 8192;
		p->buf = xalloc_check(realloc(p->buf, p->cap));
	}
	ssize_t n = read(fd, p->buf + p->len, p->cap - p->len - 1);
	if (n <= 0) {
		event_base_loopbreak(p->base);
		return;
	}
	p->len += (size_t)n;
	char *start = p->buf, *nl;
	while ((nl = memchr(start, '\n', (size_t)(p->buf + p->len - start)))) {
		*nl = '\0';
		command(p, start);
		start = nl + 1;
	}
	p->len = (size_t)(p->buf + p->len - start);
	memmove(p->buf, start, p->len);
}

int main(int argc, char **argv)
{
	CatalogLoaderOptions opt = {0};
	const char *service = "probe";
	bool debug = false;
	int i = 1;
	for (; i < argc - 1; i++) {
		if (strcmp(argv[i], "--refresh-ms") == 0 && i + 1 < argc - 1)
			opt.refresh_ms = strtoll(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc - 1)
			opt.timeout_ms = strtoll(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--service") == 0 && i + 1 < argc - 1)
			service = argv[++i];
		else if (strcmp(argv[i], "--debug") == 0)
			debug = true;
		else
			break;
	}
	if (i != argc - 1) {
		fprintf(stderr, "usage: catalog_probe [--refresh-ms N] [--timeout-ms N] [--service NAME] [--debug] CONNINFO\n");
		return 2;
	}
	LogSettings log = {.level = debug ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO};
	log_configure(&log);
	signal(SIGPIPE, SIG_IGN);
	Config *cfg = config_from_conninfo(service, argv[i]);
	if (!cfg)
		return 2;
	Probe p = {.service = service};
	p.base = event_base_new();
	if (!p.base)
		return 1;
	p.l = catalog_loader_new(p.base, cfg, &opt, on_loaded, &p);
	config_unref(cfg);
	p.stdin_ev = event_new(p.base, 0, EV_READ | EV_PERSIST, on_stdin, &p);
	event_add(p.stdin_ev, NULL);
	event_base_dispatch(p.base);
	catalog_loader_free(p.l);
	event_free(p.stdin_ev);
	event_base_free(p.base);
	free(p.buf);
	puts("{\"bye\": true}");
	log_configure(NULL);
	return 0;
}
