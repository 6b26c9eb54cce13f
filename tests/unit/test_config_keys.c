/*
 * test_config_keys — the key table walked whole (every key has a class, a description, a valid
 * default; proxy.yaml.example mentions every key and nothing else), values as SHOW CONFIG shows
 * them, and the reload's diff: which keys changed, their class, kept values.
 *
 * Usage: test_config_keys [SOURCE_ROOT]; with SOURCE_ROOT, SOURCE_ROOT/proxy.yaml.example is read.
 */
#include "config.h"
#include "config_keys.h"
#include "unit.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>

static const char *source_root;
static char err[8192];

#define TAIL                                                                                   \
	"databases:\n"                                                                         \
	"  app: { service: users }\n"                                                          \
	"services:\n"                                                                          \
	"  users:\n"                                                                           \
	"    primary: { host: db1, user: u, password: secret-one }\n"

static Config *load(const char *yaml)
{
	Config *c = config_load_string("t.yaml", yaml, err, sizeof err);
	if (!c)
		UNIT_FAIL("load failed: %s", err);
	return c;
}

/* ---- the table walked whole ---- */

typedef struct Walk {
	int keys, reload, restart;
	char restart_section[256]; /* the path of the last RESTART section seen */
} Walk;

static void check_key(void *arg, const char *path, const ConfigKey *k)
{
	Walk *w = arg;
	bool reload = k->flags & CONFIG_KEY_RELOAD, restart = k->flags & CONFIG_KEY_RESTART;
	w->keys++;
	w->reload += reload;
	w->restart += restart;
	if (reload == restart)
		UNIT_FAIL("%s: a key is either applied by a reload or needs a restart (flags %#x)", path, k->flags);
	if (!k->doc || !k->doc[0])
		UNIT_FAIL("%s has no description", path);
	if (restart && (k->type == CONFIG_KEY_ITEMS || k->type == CONFIG_KEY_NAMED || k->type == CONFIG_KEY_CUSTOM))
		UNIT_FAIL("%s: a reload can keep only a value, not a list of sections", path);
	if (k->type == CONFIG_KEY_SECTION && restart)
		snprintf(w->restart_section, sizeof w->restart_section, "%s", path);
	else if (w->restart_section[0] && !strncmp(path, w->restart_section, strlen(w->restart_section)) &&
		 strchr(".[", path[strlen(w->restart_section)]) && path[strlen(w->restart_section)] && !restart)
		UNIT_FAIL("%s is in %s, which needs a restart", path, w->restart_section);
	if (k->type == CONFIG_KEY_ENUM) {
		REQUIRE(k->names != NULL);
		bool found = !k->def;
		for (size_t i = 0; k->names[i]; i++)
			found |= k->def && !strcmp(k->def, k->names[i]);
		if (!found)
			UNIT_FAIL("%s: default %s is not one of its values", path, k->def);
	}
	if ((k->type == CONFIG_KEY_SECTION || k->type == CONFIG_KEY_ITEMS || k->type == CONFIG_KEY_NAMED) != (k->sub != NULL))
		UNIT_FAIL("%s: sections and only sections have keys", path);
	char canonical[256];
	const ConfigKey *found = config_keys_find(path, canonical, sizeof canonical);
	if (found != k || strcmp(canonical, path) != 0)
		UNIT_FAIL("config_keys_find(\"%s\") does not find it (got %s)", path, found ? canonical : "nothing");
}

TEST(every_key_has_a_class_and_a_description)
{
	static Walk w;
	config_keys_each(check_key, &w);
	CHECK(w.keys > 100);
	CHECK(w.reload > 0 && w.restart > 0);
	/* The defaults parse: a minimal file loads, and shows them. */
	Config *c = load(TAIL);
	REQUIRE(c != NULL);
	CHECK_INT(c->listen.port, 6432);
	CHECK_INT(c->services[0].pool.max, 20);
	CHECK_INT(c->health.max_lag_bytes, 16 * 1024 * 1024);
	CHECK_INT(c->log.stats_period_ms, 60000);
	config_unref(c);
}

TEST(find_paths)
{
	char canon[256];
	const ConfigKey *k = config_keys_find("services.users.pool.max", canon, sizeof canon);
	REQUIRE(k != NULL);
	CHECK_STR(canon, "services.*.pool.max");
	CHECK(k->type == CONFIG_KEY_INT && k->min == 1);
	CHECK(config_keys_find("users[3].password_env", canon, sizeof canon) != NULL);
	CHECK_STR(canon, "users[].password");
	CHECK(config_keys_find("cache.redis.signing_key_file", canon, sizeof canon) != NULL);
	CHECK(config_keys_find("cache.redis.signing_key_env", NULL, 0) == NULL);
	CHECK(config_keys_find("services.users.replicas[0].dbname", canon, sizeof canon) != NULL);
	CHECK_STR(canon, "services.*.replicas[].dbname");
	CHECK(config_keys_find("listen.nope", NULL, 0) == NULL);
	CHECK(config_keys_find("listen[0]", NULL, 0) == NULL);
	CHECK(config_keys_find("default", NULL, 0) == NULL);
}

/* ---- proxy.yaml.example ---- */

#define MAX_MENTIONS 1024

typedef struct Mentions {
	char *paths[MAX_MENTIONS];
	int lines[MAX_MENTIONS];
	size_t n;
} Mentions;

static void mention(Mentions *m, const char *path, int line)
{
	if (m->n < MAX_MENTIONS) {
		m->lines[m->n] = line;
		m->paths[m->n++] = strdup(path);
	}
}

static size_t ident_len(const char *p)
{
	size_t n = 0;
	if (!(islower((unsigned char)p[0]) || p[0] == '_'))
		return 0;
	while (islower((unsigned char)p[n]) || isdigit((unsigned char)p[n]) || p[n] == '_')
		n++;
	return n;
}

/* Skips a flow scalar (quoted or plain) up to one of stop. */
static const char *skip_scalar(const char *p, const char *stop)
{
	if (*p == '"' || *p == '\'') {
		char q = *p++;
		while (*p && *p != q)
			p += *p == '\\' && p[1] ? 2 : 1;
		return *p ? p + 1 : p;
	}
	while (*p && !strchr(stop, *p))
		p++;
	return p;
}

static const char *flow_value(Mentions *m, const char *p, const char *path, int line, const char *stop);

/* "{ k: v, ... }" at p, its keys under path; returns past the closing brace. */
static const char *flow_map(Mentions *m, const char *p, const char *path, int line)
{
	char sub[512];
	p++;
	for (;;) {
		p += strspn(p, " ,");
		if (!*p || *p == '}')
			return *p ? p + 1 : p;
		size_t n = ident_len(p);
		if (!n || p[n] != ':')
			return p + strlen(p); /* not a key: leave the line */
		snprintf(sub, sizeof sub, "%s.%.*s", path, (int)n, p);
		mention(m, sub, line);
		p += n + 1;
		p += strspn(p, " ");
		p = flow_value(m, p, sub, line, ",}");
	}
}

static const char *flow_value(Mentions *m, const char *p, const char *path, int line, const char *stop)
{
	char items[512];
	if (*p == '{')
		return flow_map(m, p, path, line);
	if (*p != '[')
		return skip_scalar(p, stop);
	snprintf(items, sizeof items, "%s[]", path);
	p++;
	for (;;) {
		p += strspn(p, " ,");
		if (!*p || *p == ']')
			return *p ? p + 1 : p;
		p = flow_value(m, p, items, line, ",]");
	}
}

/*
 * The key paths proxy.yaml.example mentions, commented out or not: a line is YAML when, once the
 * leading "#" (and one space after it) are removed, it is "key:" or "- ..." at some indentation.
 */
static void example_mentions(const char *text, Mentions *m)
{
	struct {
		int indent;
		char path[512];
	} stack[32];
	int depth = 0, line_no = 0;
	const char *p = text;
	while (*p) {
		char line[1024];
		size_t n = strcspn(p, "\n");
		line_no++;
		snprintf(line, sizeof line, "%.*s", (int)n, p);
		p += n + (p[n] == '\n');
		for (;;) { /* uncomment */
			size_t i = strspn(line, " ");
			if (line[i] != '#')
				break;
			memmove(line + i, line + i + 1 + (line[i + 1] == ' '), strlen(line + i + 1 + (line[i + 1] == ' ')) + 1);
		}
		int indent = (int)strspn(line, " ");
		char *c = line + indent;
		bool item = c[0] == '-' && c[1] == ' ';
		int dash = indent;
		if (item) {
			c += 2 + strspn(c + 2, " ");
			indent = (int)(c - line);
		}
		size_t klen = ident_len(c);
		bool key = klen && c[klen] == ':' && (c[klen + 1] == ' ' || !c[klen + 1]);
		if (!key && !(item && c[0] == '{'))
			continue;
		/* the parent: the last key less indented (than the dash, for an item) */
		while (depth > 0 && stack[depth - 1].indent >= (item ? dash : indent))
			depth--;
		char parent[512];
		snprintf(parent, sizeof parent, "%s", depth ? stack[depth - 1].path : "");
		if (item) {
			strncat(parent, "[]", sizeof parent - strlen(parent) - 1);
			if (depth < 32) {
				stack[depth].indent = dash;
				snprintf(stack[depth++].path, sizeof stack[0].path, "%s", parent);
			}
		}
		if (!key) {
			flow_map(m, c, parent, line_no);
			continue;
		}
		char path[480];
		if (snprintf(path, sizeof path, "%s%s%.*s", parent, parent[0] ? "." : "", (int)klen, c) < 0)
			continue;
		mention(m, path, line_no);
		if (depth < 32) {
			stack[depth].indent = indent;
			snprintf(stack[depth++].path, sizeof stack[0].path, "%s", path);
		}
		const char *v = c + klen + 1;
		v += strspn(v, " ");
		if (*v == '{' || *v == '[')
			flow_value(m, v, path, line_no, "");
	}
}

typedef struct Coverage {
	Mentions *m;
	char (*canonical)[256];
} Coverage;

static void check_mentioned(void *arg, const char *path, const ConfigKey *k)
{
	(void)k;
	Coverage *cov = arg;
	for (size_t i = 0; i < cov->m->n; i++)
		if (!strcmp(cov->canonical[i], path))
			return;
	UNIT_FAIL("proxy.yaml.example does not mention %s", path);
}

TEST(example_mentions_every_key_and_nothing_unknown)
{
	if (!source_root) {
		printf("  skipped: no source root given as argv[1]\n");
		return;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/proxy.yaml.example", source_root);
	FILE *f = fopen(path, "rb");
	REQUIRE(f != NULL);
	static char text[1 << 17];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = 0;
	static Mentions m;
	example_mentions(text, &m);
	CHECK(m.n > 100);
	static char canonical[MAX_MENTIONS][256];
	for (size_t i = 0; i < m.n; i++)
		if (!config_keys_find(m.paths[i], canonical[i], sizeof canonical[i]))
			UNIT_FAIL("proxy.yaml.example:%d mentions %s, which is not a key", m.lines[i], m.paths[i]);
	Coverage cov = {&m, canonical};
	config_keys_each(check_mentioned, &cov);
	for (size_t i = 0; i < m.n; i++)
		free(m.paths[i]);
}

/* ---- values and the diff ---- */

typedef struct Shown {
	char text[16384];
} Shown;

static void show(void *arg, const char *path, const ConfigKey *key, const char *value)
{
	Shown *s = arg;
	size_t used = strlen(s->text);
	snprintf(s->text + used, sizeof s->text - used, "%s=%s [%s]\n", path, value ? value : "(null)",
		 config_keys_class(key));
}

TEST(values_as_shown)
{
	Config *c = load("listen: { port: 7000 }\n"
			 "health: { max_lag: 10s }\n"
			 "cache: { rules: [ { tables: [a, b], ttl: 90s } ], redis: { nodes: [\"r:1\"], password: pw } }\n"
			 TAIL);
	REQUIRE(c != NULL);
	static Shown s;
	s.text[0] = 0;
	config_keys_visit(c, show, &s);
	CHECK_CONTAINS(s.text, "listen.port=7000 [restart]\n");
	CHECK_CONTAINS(s.text, "listen.max_client_conn=10000 [reload]\n");
	CHECK_CONTAINS(s.text, "proxy.buffer_size=64kB [reload]\n");
	CHECK_CONTAINS(s.text, "health.max_lag=10s [reload]\n");
	CHECK_CONTAINS(s.text, "services.users.pool.max=20 [reload]\n");
	CHECK_CONTAINS(s.text, "services.users.primary.password=" CONFIG_KEYS_MASK " [reload]\n");
	CHECK_CONTAINS(s.text, "services.users.primary.dbname=users [reload]\n");
	CHECK_CONTAINS(s.text, "cache.rules[0].tables=a, b [reload]\n");
	CHECK_CONTAINS(s.text, "cache.rules[0].ttl=90s [reload]\n");
	CHECK_CONTAINS(s.text, "cache.redis.password=" CONFIG_KEYS_MASK " [restart]\n");
	CHECK_CONTAINS(s.text, "cache.redis.user=(null) [restart]\n");
	CHECK(strstr(s.text, "secret-one") == NULL && strstr(s.text, "=pw") == NULL);
	config_unref(c);
}

typedef struct Changes {
	char text[8192];
} Changes;

static void note_change(void *arg, const ConfigChange *ch)
{
	Changes *c = arg;
	size_t used = strlen(c->text);
	snprintf(c->text + used, sizeof c->text - used, "%s: %s -> %s [%s%s%s%s]\n", ch->path,
		 ch->old_value ? ch->old_value : "(null)", ch->new_value ? ch->new_value : "(null)",
		 config_keys_class(ch->key), ch->key->flags & CONFIG_KEY_CACHE ? ", cache" : "",
		 ch->service ? ", service " : "", ch->service ? ch->service : "");
}

static void keep_restart(void *arg, const ConfigChange *ch)
{
	if (ch->key->flags & CONFIG_KEY_RESTART)
		config_keys_keep(arg, ch);
}

TEST(diff_reports_each_changed_key_with_its_class)
{
	Config *a = load("listen: { port: 6432 }\n"
			 "users: [ { name: app, password: one } ]\n"
			 "cache: { rules: [ { tables: [a] } ], redis: { nodes: [\"r:1\"], timeout: 20ms } }\n"
			 TAIL "    pool: { max: 10 }\n"
			 "  orders: { primary: { host: db2 } }\n");
	Config *b = load("listen: { port: 7000 }\n"
			 "users: [ { name: app, password: two } ]\n"
			 "cache: { rules: [ { tables: [a, b] } ], redis: { nodes: [\"r:2\"], timeout: 20ms } }\n"
			 TAIL "    pool: { max: 11 }\n"
			 "  reports: { primary: { host: db3 } }\n");
	REQUIRE(a && b);
	static Changes ch;
	ch.text[0] = 0;
	CHECK_INT(config_keys_diff(a, b, note_change, &ch), 7);
	CHECK_STR(ch.text, "listen.port: 6432 -> 7000 [restart]\n"
			   "users[0].password: " CONFIG_KEYS_MASK " -> " CONFIG_KEYS_MASK " [reload]\n"
			   "services.users.pool.max: 10 -> 11 [reload, service users]\n"
			   "services.reports: (null) -> added [reload]\n"
			   "services.orders: removed -> (null) [reload]\n"
			   "cache.redis.nodes: r:1 -> r:2 [restart]\n"
			   "cache.rules[0].tables: a -> a, b [reload, cache]\n");
	/* Keys that need a restart keep the running value; the others take the new one. */
	config_keys_diff(a, b, keep_restart, b);
	CHECK_INT(b->listen.port, 6432);
	REQUIRE(b->cache.n_redis_nodes == 1);
	CHECK_STR(b->cache.redis_nodes[0], "r:1");
	CHECK_INT(b->services[0].pool.max, 11);
	ch.text[0] = 0;
	CHECK_INT(config_keys_diff(a, b, note_change, &ch), 5);
	CHECK(strstr(ch.text, "listen.port") == NULL && strstr(ch.text, "cache.redis") == NULL);
	/* The same file: nothing. */
	Config *a2 = load("listen: { port: 6432 }\n"
			  "users: [ { name: app, password: one } ]\n"
			  "cache: { rules: [ { tables: [a] } ], redis: { nodes: [\"r:1\"], timeout: 20ms } }\n"
			  TAIL "    pool: { max: 10 }\n"
			  "  orders: { primary: { host: db2 } }\n");
	REQUIRE(a2 != NULL);
	CHECK_INT(config_keys_diff(a, a2, note_change, &ch), 0);
	config_unref(a);
	config_unref(a2);
	config_unref(b);
}

TEST(diff_of_lists_and_services)
{
	Config *a = load("routes: [ { tables: [x], service: users } ]\n" TAIL);
	Config *b = load("routes: [ { tables: [x], service: users }, { schema: s, service: users } ]\n"
			 "access: [ { address: 10.0.0.0/8, method: md5 } ]\n" TAIL
			 "    replicas: [ { host: r1 } ]\n");
	REQUIRE(a && b);
	static Changes ch;
	ch.text[0] = 0;
	config_keys_diff(a, b, note_change, &ch);
	CHECK_STR(ch.text, "routes: 1 -> 2 [reload, cache]\n"
			   "services.users.replicas: 0 -> 1 [reload, cache, service users]\n"
			   "access: 0 -> 1 [reload]\n");
	Config *c = load("routes: [ { tables: [x], service: users }, { schema: s, service: users } ]\n"
			 "access: [ { address: 10.0.0.0/16, method: md5, user: [app, all] } ]\n" TAIL
			 "    replicas: [ { host: r1, port: 5433 } ]\n");
	REQUIRE(c != NULL);
	ch.text[0] = 0;
	config_keys_diff(b, c, note_change, &ch);
	CHECK_STR(ch.text, "services.users.replicas[0].port: 5432 -> 5433 [reload, cache, service users]\n"
			   "access[0].user: all -> all, app [reload]\n"
			   "access[0].address: 10.0.0.0/8 -> 10.0.0.0/16 [reload]\n");
	config_unref(a);
	config_unref(b);
	config_unref(c);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		source_root = argv[1];
	RUN(every_key_has_a_class_and_a_description);
	RUN(find_paths);
	RUN(example_mentions_every_key_and_nothing_unknown);
	RUN(values_as_shown);
	RUN(diff_reports_each_changed_key_with_its_class);
	RUN(diff_of_lists_and_services);
	return unit_summary();
}
