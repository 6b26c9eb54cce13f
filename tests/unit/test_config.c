/*
 * test_config — proxy.yaml loading: values, defaults, durations and sizes, and the exact
 * "file:line:column: message" of each kind of error.
 *
 * Usage: test_config [SOURCE_ROOT]; with SOURCE_ROOT, SOURCE_ROOT/proxy.yaml.example must load.
 */
#include "config.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *source_root;
static char err[8192];

/* A valid tail, appended to fragments under test so that only the fragment's errors show. */
#define MINIMAL_TAIL                                                                           \
	"databases:\n"                                                                         \
	"  app: { service: users }\n"                                                          \
	"services:\n"                                                                          \
	"  users:\n"                                                                           \
	"    primary: { host: db1 }\n"

static Config *load(const char *yaml)
{
	return config_load_string("t.yaml", yaml, err, sizeof err);
}

static int count_lines(const char *s)
{
	int n = s[0] ? 1 : 0;
	for (; *s; s++)
		if (*s == '\n')
			n++;
	return n;
}

/* Loading must fail with exactly this (one-line) error text. */
#define CHECK_ERROR(yaml, expected)                                                            \
	do {                                                                                   \
		Config *c_ = load(yaml);                                                       \
		CHECK(c_ == NULL);                                                             \
		config_unref(c_);                                                              \
		CHECK_STR(err, expected);                                                      \
	} while (0)

/* Loading must fail and the error text must contain this. */
#define CHECK_ERROR_CONTAINS(yaml, expected)                                                   \
	do {                                                                                   \
		Config *c_ = load(yaml);                                                       \
		CHECK(c_ == NULL);                                                             \
		config_unref(c_);                                                              \
		CHECK_CONTAINS(err, expected);                                                 \
	} while (0)

#define CHECK_LOADS(yaml)                                                                      \
	do {                                                                                   \
		Config *c_ = load(yaml);                                                       \
		if (!c_)                                                                       \
			UNIT_FAIL("expected to load, got: %s", err);                           \
		config_unref(c_);                                                              \
	} while (0)

#define SCRAM_VERIFIER                                                                         \
	"SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$fXt4G6P+RBaWScK4tF+yLdgUblcxIASvx+mtwZA7LTY=:" \
	"i+tYlxNPlt4wWNjZC5feRNaPI6CR5YZOzqVF5f0jUIg="
#define MD5_HASH "md555913cace0c7f6db6a991ca2e344d5e8"

TEST(full_config_every_key)
{
	const char *yaml =
		"listen: { host: 0.0.0.0, port: 7000, max_client_conn: 500, backlog: 64 }\n"
		"log: { level: debug }\n"
		"proxy:\n"
		"  shutdown_timeout: 2m\n"
		"  buffer_size: 8kB\n"
		"  max_message_size: 16MB\n"
		"  server_reset_query: \"\"\n"
		"  application_name: relay-test\n"
		"users:\n"
		"  - { name: app, password: \"" SCRAM_VERIFIER "\", auth: scram-sha-256 }\n"
		"  - { name: rep, password: \"" MD5_HASH "\", auth: md5 }\n"
		"  - { name: old, password: plain-secret, auth: password }\n"
		"  - { name: dflt, password: \"123456\" }\n"
		"databases:\n"
		"  app: { service: users, pool_mode: session }\n"
		"  reports: { service: orders }\n"
		"services:\n"
		"  users:\n"
		"    primary: { host: db1.internal, port: 5433, dbname: usersdb, user: svc, password: pw }\n"
		"    pool: { max: 100, min: 10, idle_timeout: 30s, connect_timeout: 2s, statement_timeout: 5s,\n"
		"            query_wait_timeout: 500ms, server_lifetime: 1h }\n"
		"  orders:\n"
		"    primary:\n"
		"      host: db2\n";
	Config *c = load(yaml);
	if (!c)
		UNIT_FAIL("load failed: %s", err);
	REQUIRE(c != NULL);
	CHECK_STR(err, "");
	CHECK_INT(c->refcount, 1);
	CHECK_STR(c->path, "t.yaml");
	CHECK_STR(c->listen.host, "0.0.0.0");
	CHECK_INT(c->listen.port, 7000);
	CHECK_INT(c->listen.max_client_conn, 500);
	CHECK_INT(c->listen.backlog, 64);
	CHECK_INT(c->log.level, CONFIG_LOG_DEBUG);
	CHECK_INT(c->shutdown_timeout_ms, 120000);
	CHECK_INT(c->buffer_size, 8192);
	CHECK_INT(c->max_message_size, 16 * 1024 * 1024);
	CHECK_STR(c->server_reset_query, "");
	CHECK_STR(c->application_name, "relay-test");

	REQUIRE(c->n_users == 4);
	CHECK_STR(c->users[0].name, "app");
	CHECK_STR(c->users[0].password, SCRAM_VERIFIER);
	CHECK_INT(c->users[0].auth, CONFIG_AUTH_SCRAM_SHA_256);
	CHECK_STR(c->users[1].name, "rep");
	CHECK_STR(c->users[1].password, MD5_HASH);
	CHECK_INT(c->users[1].auth, CONFIG_AUTH_MD5);
	CHECK_STR(c->users[2].password, "plain-secret");
	CHECK_INT(c->users[2].auth, CONFIG_AUTH_PASSWORD);
	CHECK_STR(c->users[3].password, "123456");
	CHECK_INT(c->users[3].auth, CONFIG_AUTH_SCRAM_SHA_256);

	REQUIRE(c->n_services == 2);
	const ConfigService *users = config_find_service(c, "users");
	REQUIRE(users != NULL);
	CHECK_STR(users->name, "users");
	CHECK_STR(users->primary.host, "db1.internal");
	CHECK_INT(users->primary.port, 5433);
	CHECK_STR(users->primary.dbname, "usersdb");
	CHECK_STR(users->primary.user, "svc");
	CHECK_STR(users->primary.password, "pw");
	CHECK_INT(users->pool.max, 100);
	CHECK_INT(users->pool.min, 10);
	CHECK_INT(users->pool.idle_timeout_ms, 30000);
	CHECK_INT(users->pool.connect_timeout_ms, 2000);
	CHECK_INT(users->pool.statement_timeout_ms, 5000);
	CHECK_INT(users->pool.query_wait_timeout_ms, 500);
	CHECK_INT(users->pool.server_lifetime_ms, 3600000);

	REQUIRE(c->n_databases == 2);
	const ConfigDatabase *app = config_find_database(c, "app");
	REQUIRE(app != NULL);
	CHECK_STR(app->service_name, "users");
	CHECK(app->service == users);
	CHECK_INT(app->pool_mode, CONFIG_POOL_SESSION);
	const ConfigDatabase *reports = config_find_database(c, "reports");
	REQUIRE(reports != NULL);
	CHECK(reports->service == config_find_service(c, "orders"));
	CHECK_INT(reports->pool_mode, CONFIG_POOL_TRANSACTION);
	CHECK_STR(reports->service->primary.host, "db2");
	config_unref(c);
}

TEST(defaults_for_minimal_config)
{
	Config *c = load(MINIMAL_TAIL);
	if (!c)
		UNIT_FAIL("load failed: %s", err);
	REQUIRE(c != NULL);
	CHECK_STR(c->listen.host, "127.0.0.1");
	CHECK_INT(c->listen.port, 6432);
	CHECK_INT(c->listen.max_client_conn, 10000);
	CHECK_INT(c->listen.backlog, 1024);
	CHECK_INT(c->log.level, CONFIG_LOG_INFO);
	CHECK_INT(c->shutdown_timeout_ms, 30000);
	CHECK_INT(c->buffer_size, 64 * 1024);
	CHECK_INT(c->max_message_size, 64 * 1024 * 1024);
	CHECK_STR(c->server_reset_query, "DISCARD ALL");
	CHECK_STR(c->application_name, "pgrelay");
	CHECK_INT(c->n_users, 0);
	REQUIRE(c->n_services == 1 && c->n_databases == 1);
	const ConfigService *s = &c->services[0];
	CHECK_STR(s->primary.host, "db1");
	CHECK_INT(s->primary.port, 5432);
	CHECK_STR(s->primary.dbname, "users"); /* the service name */
	CHECK(s->primary.user == NULL);
	CHECK(s->primary.password == NULL);
	CHECK_INT(s->pool.max, 20);
	CHECK_INT(s->pool.min, 0);
	CHECK_INT(s->pool.idle_timeout_ms, 600000);
	CHECK_INT(s->pool.connect_timeout_ms, 5000);
	CHECK_INT(s->pool.statement_timeout_ms, 0);
	CHECK_INT(s->pool.query_wait_timeout_ms, 120000);
	CHECK_INT(s->pool.server_lifetime_ms, 3600000);
	CHECK_INT(c->databases[0].pool_mode, CONFIG_POOL_TRANSACTION);
	CHECK(c->databases[0].service == s);
	config_unref(c);

	/* Empty sections and a null user/password mean the defaults too. */
	c = load("listen:\nlog: {}\nproxy:\nusers: []\n" MINIMAL_TAIL
		 "    pool: {}\n");
	if (!c)
		UNIT_FAIL("load failed: %s", err);
	REQUIRE(c != NULL);
	CHECK_INT(c->listen.port, 6432);
	CHECK_INT(c->services[0].pool.max, 20);
	config_unref(c);
}

TEST(durations)
{
	static const struct {
		const char *text;
		bool ok;
		int64_t ms;
	} cases[] = {
		{"500ms", true, 500},
		{"30s", true, 30000},
		{"2m", true, 120000},
		{"1h", true, 3600000},
		{"1d", true, 86400000},
		{"0", true, 0},
		{"0s", true, 0},
		{"45", true, 45000},
		{"9223372036854775807ms", true, INT64_MAX},
		{"9223372036854775808ms", false, 0},
		{"9223372036854775807s", false, 0},
		{"106751991167301d", false, 0},
		{"", false, 0},
		{"s", false, 0},
		{"-5s", false, 0},
		{"+5s", false, 0},
		{"1.5s", false, 0},
		{"30 s", false, 0},
		{" 30s", false, 0},
		{"30sec", false, 0},
		{"30S", false, 0},
		{"1w", false, 0},
		{"abc", false, 0},
		{"10ms5", false, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t ms = -1;
		bool ok = config_parse_duration(cases[i].text, &ms);
		if (ok != cases[i].ok)
			UNIT_FAIL("config_parse_duration(\"%s\") returned %d", cases[i].text, ok);
		else if (ok && ms != cases[i].ms)
			UNIT_FAIL("config_parse_duration(\"%s\") = %lld, expected %lld", cases[i].text,
				  (long long)ms, (long long)cases[i].ms);
	}
	int64_t ms;
	CHECK(!config_parse_duration(NULL, &ms));
}

TEST(sizes)
{
	static const struct {
		const char *text;
		bool ok;
		size_t bytes;
	} cases[] = {
		{"512B", true, 512},
		{"64kB", true, 65536},
		{"64KB", true, 65536},
		{"16MB", true, 16u << 20},
		{"1GB", true, 1u << 30},
		{"4096", true, 4096},
		{"0", true, 0},
		{"0B", true, 0},
		{"18446744073709551615", true, SIZE_MAX},
		{"18446744073709551616", false, 0},
		{"17179869184GB", false, 0},
		{"", false, 0},
		{"kB", false, 0},
		{"-1", false, 0},
		{"+1", false, 0},
		{"1.5MB", false, 0},
		{"64 kB", false, 0},
		{"64kb", false, 0},
		{"64K", false, 0},
		{"64mb", false, 0},
		{"1TB", false, 0},
		{"0x10", false, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t bytes = 12345;
		bool ok = config_parse_size(cases[i].text, &bytes);
		if (ok != cases[i].ok)
			UNIT_FAIL("config_parse_size(\"%s\") returned %d", cases[i].text, ok);
		else if (ok && bytes != cases[i].bytes)
			UNIT_FAIL("config_parse_size(\"%s\") = %zu, expected %zu", cases[i].text, bytes,
				  cases[i].bytes);
	}
	size_t bytes;
	CHECK(!config_parse_size(NULL, &bytes));
}

TEST(error_unknown_key)
{
	CHECK_ERROR("listen:\n"
		    "  host: 127.0.0.1\n"
		    "  max_conn: 5\n" MINIMAL_TAIL,
		    "t.yaml:3:3: unknown key \"max_conn\" in listen "
		    "(expected one of: host, port, max_client_conn, backlog, tls, upgrade_socket)");
	CHECK_ERROR(MINIMAL_TAIL "    pool: { max: 5, maxx: 6 }\n",
		    "t.yaml:6:21: unknown key \"maxx\" in services.users.pool (expected one of: max, min, "
		    "idle_timeout, connect_timeout, statement_timeout, query_wait_timeout, "
		    "server_lifetime)");
	/* Control characters in a quoted key cannot break the one-error-per-line format. */
	CHECK_ERROR("listen: { \"a\\nb\": 1 }\n" MINIMAL_TAIL,
		    "t.yaml:1:11: unknown key \"a?b\" in listen "
		    "(expected one of: host, port, max_client_conn, backlog, tls, upgrade_socket)");
	/* Sections for later features are not accepted yet. */
	CHECK_ERROR(MINIMAL_TAIL "tls: { cert: x }\n",
		    "t.yaml:6:1: unknown key \"tls\" at the top level "
		    "(expected one of: listen, log, proxy, users, routes, health, databases, services, cache, admin, access)");
}

TEST(cache_section)
{
	Config *c = load(MINIMAL_TAIL
			 "cache:\n"
			 "  ttl: 2m\n"
			 "  l1: { max_memory: 64MB, policy: s3fifo, max_result: 256kB }\n"
			 "  redis: { nodes: [\"127.0.0.1:7000\", \"127.0.0.1:7001\"], cluster: true, timeout: 50ms }\n"
			 "  rules:\n"
			 "    - { tables: [products, categories], ttl: 5m }\n"
			 "    - { schema: users }\n"
			 "  invalidate:\n"
			 "    - { table: orders, also: [daily_order_summary] }\n"
			 "  wal_listener: { service: users, slot: my_slot }\n"
			 "  catalog_refresh: 5m\n");
	REQUIRE(c != NULL);
	CHECK(c->cache.enabled);
	CHECK_INT(c->cache.catalog_refresh_ms, 300000);
	CHECK_INT(c->cache.l1_max_memory, 64 * 1024 * 1024);
	CHECK_INT(c->cache.max_result, 256 * 1024);
	CHECK_INT(c->cache.n_redis_nodes, 2);
	CHECK(c->cache.redis_cluster);
	CHECK_INT(c->cache.redis_timeout_ms, 50);
	CHECK_STR(c->cache.redis_prefix, "pgrelay");
	CHECK_INT(c->cache.n_rules, 2);
	CHECK_INT(c->cache.rules[0].ttl_ms, 300000);
	CHECK_INT(c->cache.rules[1].ttl_ms, 120000); /* cache.ttl */
	CHECK_INT(c->cache.n_dependencies, 1);
	CHECK_STR(c->cache.dependencies[0].also[0], "daily_order_summary");
	CHECK(c->cache.wal_service == config_find_service(c, "users"));
	CHECK_STR(c->cache.wal_slot, "my_slot");
	config_unref(c);
	c = load(MINIMAL_TAIL);
	REQUIRE(c != NULL);
	CHECK(!c->cache.enabled);
	CHECK_INT(c->cache.catalog_refresh_ms, 60000); /* the default */
	config_unref(c);
	c = load(MINIMAL_TAIL "cache:\n  catalog_refresh: 0\n");
	REQUIRE(c != NULL);
	CHECK_INT(c->cache.catalog_refresh_ms, 0);
	config_unref(c);
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  catalog_refresh: 50ms\n",
		    "t.yaml:7:20: cache.catalog_refresh must be 0 (no periodic refresh) or at least 100ms, got 50ms");
	CHECK_ERROR_CONTAINS(MINIMAL_TAIL "cache:\n  catalog_refresh: 2d\n",
			     "t.yaml:7:20: cache.catalog_refresh must be a duration between");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"localhost\"] }\n",
		    "t.yaml:7:19: cache.redis.nodes[0] must be \"host:port\", got \"localhost\"");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  rules: [ { ttl: 5s } ]\n",
		    "t.yaml:7:12: cache.rules[0] needs schema or tables (or both)");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  wal_listener: { service: nope }\n",
		    "t.yaml:7:28: cache.wal_listener.service names an unknown service \"nope\"");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  l1: { policy: lru }\n",
		    "t.yaml:7:17: cache.l1.policy must be one of: s3fifo; got \"lru\"");
}

/* cache.redis: AUTH (user + password) and the signing key of L2 entries, inline or from a file. */
TEST(cache_redis_auth_and_signing_key)
{
	Config *c = load(MINIMAL_TAIL "cache:\n"
				      "  redis: { nodes: [\"127.0.0.1:7000\"], user: pgrelay, password: pw,\n"
				      "           signing_key: \"0123456789abcdef0123456789abcdef\" }\n");
	REQUIRE(c != NULL);
	CHECK_STR(c->cache.redis_user, "pgrelay");
	CHECK_STR(c->cache.redis_password, "pw");
	CHECK_INT(c->cache.redis_signing_key_len, 32);
	CHECK(memcmp(c->cache.redis_signing_key, "0123456789abcdef0123456789abcdef", 32) == 0);
	config_unref(c);
	c = load(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"] }\n");
	REQUIRE(c != NULL);
	CHECK(c->cache.redis_signing_key == NULL && c->cache.redis_user == NULL && c->cache.redis_password == NULL);
	config_unref(c);

	char path[] = "/tmp/pgrelay-test-key.XXXXXX";
	int fd = mkstemp(path);
	REQUIRE(fd >= 0);
	static const char file_key[] = "a key of forty bytes, read from its file\n";
	REQUIRE(write(fd, file_key, sizeof file_key - 1) == (ssize_t)(sizeof file_key - 1));
	close(fd);
	char yaml[512];
	snprintf(yaml, sizeof yaml, MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"], signing_key_file: \"%s\" }\n",
		 path);
	c = load(yaml);
	REQUIRE(c != NULL);
	CHECK_INT(c->cache.redis_signing_key_len, 40); /* the newline dropped */
	CHECK(memcmp(c->cache.redis_signing_key, file_key, 40) == 0);
	config_unref(c);
	fd = open(path, O_WRONLY | O_TRUNC);
	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "short\n", 6) == 6);
	close(fd);
	CHECK_ERROR_CONTAINS(yaml, "holds 5 bytes, a key needs at least 32");
	CHECK_ERROR_CONTAINS(yaml, "t.yaml:7:57: cache.redis.signing_key_file: \"/tmp/pgrelay-test-key.");
	unlink(path);
	CHECK_ERROR_CONTAINS(yaml, "cache.redis.signing_key_file: cannot open \"/tmp/pgrelay-test-key.");
	CHECK_ERROR_CONTAINS(yaml, "No such file or directory");

	CHECK_ERROR(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"], signing_key: short }\n",
		    "t.yaml:7:52: cache.redis.signing_key must be at least 32 bytes long (got 5)");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"], user: pgrelay }\n",
		    "t.yaml:7:45: cache.redis.user needs cache.redis.password (AUTH user password)");
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"], signing_key: "
				 "\"0123456789abcdef0123456789abcdef\", signing_key_file: /k }\n",
		    "t.yaml:7:106: cache.redis.signing_key and cache.redis.signing_key_file exclude each other");
	/* the key is never quoted in an error */
	CHECK_ERROR(MINIMAL_TAIL "cache:\n  redis: { nodes: [\"127.0.0.1:7000\"], signing_key: s3cr3t }\n",
		    "t.yaml:7:52: cache.redis.signing_key must be at least 32 bytes long (got 6)");
}

TEST(error_wrong_type)
{
	CHECK_ERROR("listen: [1, 2]\n" MINIMAL_TAIL,
		    "t.yaml:1:9: listen must be a mapping, got a sequence");
	CHECK_ERROR("log: verbose\n" MINIMAL_TAIL,
		    "t.yaml:1:6: log must be a mapping, got \"verbose\"");
	CHECK_ERROR("users: { name: app }\n" MINIMAL_TAIL,
		    "t.yaml:1:8: users must be a sequence (a list of {name, password, auth}), got a "
		    "mapping");
	CHECK_ERROR("proxy: { application_name: [a] }\n" MINIMAL_TAIL,
		    "t.yaml:1:28: proxy.application_name must be a string, got a sequence");
	CHECK_ERROR("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping, got a sequence");
	CHECK_ERROR("log: { level: verbose }\n" MINIMAL_TAIL,
		    "t.yaml:1:15: log.level must be one of: debug, info, warning, error; got \"verbose\"");
	CHECK_ERROR("databases:\n  app: { service: users, pool_mode: statement }\n"
		    "services: { users: { primary: { host: h } } }\n",
		    "t.yaml:2:37: databases.app.pool_mode must be one of: session, transaction; got "
		    "\"statement\"");
}

TEST(error_port_out_of_range)
{
	CHECK_ERROR("listen: { port: 70000 }\n" MINIMAL_TAIL,
		    "t.yaml:1:17: listen.port must be an integer between 1 and 65535, got \"70000\"");
	CHECK_ERROR("listen: { port: 0 }\n" MINIMAL_TAIL,
		    "t.yaml:1:17: listen.port must be an integer between 1 and 65535, got \"0\"");
	CHECK_ERROR("databases: { app: { service: s } }\n"
		    "services: { s: { primary: { host: h, port: 99999 } } }\n",
		    "t.yaml:2:44: services.s.primary.port must be an integer between 1 and 65535, got "
		    "\"99999\"");
}

TEST(integers_are_strict)
{
	static const char *const bad[] = {"12abc", "0x10", "1.5", "010", "1e3", "+5", "-1", "~",
					  "null", "\"80\"", "'80'", "[80]", "99999999999999999999"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char yaml[512];
		snprintf(yaml, sizeof yaml, "listen: { backlog: %s }\n" MINIMAL_TAIL, bad[i]);
		Config *c = load(yaml);
		if (c)
			UNIT_FAIL("backlog %s was accepted", bad[i]);
		config_unref(c);
		CHECK_CONTAINS(err, "t.yaml:1:20: listen.backlog must be an integer between 1 and 65535");
		CHECK_INT(count_lines(err), 1);
	}
	CHECK_ERROR("listen: { backlog: \"80\" }\n" MINIMAL_TAIL,
		    "t.yaml:1:20: listen.backlog must be an integer between 1 and 65535, got the quoted "
		    "string \"80\" (write numbers without quotes)");
	CHECK_ERROR("listen:\n  backlog:\n" MINIMAL_TAIL,
		    "t.yaml:2:11: listen.backlog must be an integer between 1 and 65535, got nothing "
		    "(null)");
	CHECK_LOADS("listen: { backlog: 65535 }\n" MINIMAL_TAIL);
}

TEST(error_pool_min_greater_than_max)
{
	CHECK_ERROR(MINIMAL_TAIL "    pool:\n"
				 "      max: 5\n"
				 "      min: 10\n",
		    "t.yaml:8:12: services.users.pool.min must be at most services.users.pool.max (5), got "
		    "10");
	CHECK_LOADS(MINIMAL_TAIL "    pool: { max: 5, min: 5 }\n");
	/* min larger than the default max (20) */
	CHECK_ERROR_CONTAINS(MINIMAL_TAIL "    pool: { min: 21 }\n",
			     "t.yaml:6:18: services.users.pool.min must be at most");
}

TEST(error_durations_and_sizes_in_file)
{
	CHECK_ERROR(MINIMAL_TAIL "    pool: { connect_timeout: 0 }\n",
		    "t.yaml:6:30: services.users.pool.connect_timeout must be a duration between 1ms and "
		    "365d (such as 500ms, 30s, 2m, 1h or 1d; a bare number is seconds), got \"0\"");
	CHECK_ERROR_CONTAINS(MINIMAL_TAIL "    pool: { idle_timeout: -5s }\n",
			     "t.yaml:6:27: services.users.pool.idle_timeout must be a duration");
	CHECK_ERROR_CONTAINS(MINIMAL_TAIL "    pool: { statement_timeout: 30d }\n",
			     "services.users.pool.statement_timeout must be a duration between 0 and 24d");
	CHECK_ERROR("proxy: { buffer_size: 1kB }\n" MINIMAL_TAIL,
		    "t.yaml:1:23: proxy.buffer_size must be a size between 4kB and 16MB (such as 512B, "
		    "64kB, 16MB or 1GB; a bare number is bytes), got \"1kB\"");
	CHECK_ERROR_CONTAINS("proxy: { buffer_size: 32MB }\n" MINIMAL_TAIL,
			     "t.yaml:1:23: proxy.buffer_size must be a size between 4kB and 16MB");
	CHECK_ERROR_CONTAINS("proxy: { max_message_size: 2GB }\n" MINIMAL_TAIL,
			     "t.yaml:1:28: proxy.max_message_size must be a size between 4kB and 1GB");
	CHECK_ERROR("proxy: { buffer_size: 1MB, max_message_size: 512kB }\n" MINIMAL_TAIL,
		    "t.yaml:1:46: proxy.max_message_size (524288 bytes) must be at least "
		    "proxy.buffer_size (1048576 bytes)");
	CHECK_LOADS("proxy: { buffer_size: 4kB, max_message_size: 1GB, shutdown_timeout: \"0\" }\n"
		    MINIMAL_TAIL);
	CHECK_LOADS("proxy: { buffer_size: 16MB, max_message_size: 16MB }\n" MINIMAL_TAIL);
}

TEST(error_unknown_service)
{
	CHECK_ERROR("databases:\n"
		    "  app: { service: userz }\n"
		    "services:\n"
		    "  users: { primary: { host: h } }\n"
		    "  orders: { primary: { host: h } }\n",
		    "t.yaml:2:19: databases.app.service names an unknown service \"userz\" "
		    "(defined services: users, orders)");
	CHECK_ERROR("databases:\n"
		    "  app: { pool_mode: session }\n"
		    "services:\n"
		    "  users: { primary: { host: h } }\n",
		    "t.yaml:2:8: databases.app.service is required");
}

TEST(error_duplicate_key)
{
	CHECK_ERROR("listen: { port: 1, port: 2 }\n" MINIMAL_TAIL,
		    "t.yaml:1:20: duplicate key \"port\" in listen (first defined at line 1)");
	CHECK_ERROR(MINIMAL_TAIL "  users: { primary: { host: other } }\n",
		    "t.yaml:6:3: duplicate key \"users\" in services (first defined at line 4)");
	CHECK_ERROR("databases:\n"
		    "  app: { service: users }\n"
		    "  app: { service: users }\n"
		    "services: { users: { primary: { host: h } } }\n",
		    "t.yaml:3:3: duplicate key \"app\" in databases (first defined at line 2)");
	CHECK_ERROR("users:\n"
		    "  - { name: app, password: a }\n"
		    "  - { name: app, password: b }\n" MINIMAL_TAIL,
		    "t.yaml:3:13: duplicate user \"app\" in users[1] (already defined in users[0])");
	/* The index is the one in the file even when an earlier item was not a mapping. */
	CHECK_ERROR("users:\n"
		    "  - { name: app, password: a }\n"
		    "  - oops\n"
		    "  - { name: app, password: b }\n" MINIMAL_TAIL,
		    "t.yaml:3:5: users[1] must be a mapping, got \"oops\"\n"
		    "t.yaml:4:13: duplicate user \"app\" in users[2] (already defined in users[0])");
}

TEST(error_yaml_syntax)
{
	CHECK_ERROR("listen: { port: 1\n" MINIMAL_TAIL,
		    "t.yaml:2:10: YAML syntax error: did not find expected ',' or '}' (while parsing a "
		    "flow mapping at line 1, column 9)");
	CHECK_ERROR_CONTAINS("listen:\n  host: a\n bad: b\n", "t.yaml:3:");
	CHECK_ERROR_CONTAINS("listen:\n  host: a\n bad: b\n", "YAML syntax error: ");
	CHECK_INT(count_lines(err), 1);
	CHECK_ERROR_CONTAINS("listen: { port: \xff }\n", "t.yaml:1:17: YAML syntax error: invalid");
	CHECK_ERROR("listen: *nope\n",
		    "t.yaml:1:9: YAML syntax error: found undefined alias");
	CHECK_ERROR_CONTAINS(MINIMAL_TAIL "---\nlisten: {}\n",
			     "t.yaml:6:1: only one YAML document is allowed");
}

TEST(error_password_forms)
{
	CHECK_ERROR("users:\n"
		    "  - { name: app, password: \"" MD5_HASH "\" }\n" MINIMAL_TAIL,
		    "t.yaml:2:28: users[0].password is an md5 hash, which cannot be used for "
		    "scram-sha-256 authentication (SCRAM needs the plain password or a SCRAM-SHA-256 "
		    "verifier; set auth: md5 to keep the hash)");
	CHECK_ERROR_CONTAINS("users:\n"
			     "  - { name: app, password: \"" SCRAM_VERIFIER "\", auth: md5 }\n" MINIMAL_TAIL,
			     "t.yaml:2:28: users[0].password is a SCRAM-SHA-256 verifier, which cannot "
			     "be used for md5 authentication");
	CHECK_ERROR_CONTAINS("users:\n"
			     "  - { name: app, password: \"" MD5_HASH "\", auth: password }\n" MINIMAL_TAIL,
			     "users[0].password is an md5 hash, but auth: password needs the plain password");
	CHECK_ERROR_CONTAINS("users:\n"
			     "  - { name: app, password: \"" SCRAM_VERIFIER "\", auth: password }\n" MINIMAL_TAIL,
			     "users[0].password is a SCRAM-SHA-256 verifier, but auth: password");
	CHECK_ERROR_CONTAINS("users:\n"
			     "  - { name: app, password: \"SCRAM-SHA-256$4096:...\" }\n" MINIMAL_TAIL,
			     "t.yaml:2:28: users[0].password starts with \"SCRAM-SHA-256$\" but is not a "
			     "valid verifier");
	CHECK_ERROR("users:\n"
		    "  - { name: app, auth: md4 }\n" MINIMAL_TAIL,
		    "t.yaml:2:5: users[0].password is required (or password_file, or password_env)\n"
		    "t.yaml:2:24: users[0].auth must be one of: scram-sha-256, md5, password; got \"md4\"");
	CHECK_ERROR("users:\n"
		    "  - { password: x }\n"
		    "  - { name: \"\", password: x }\n" MINIMAL_TAIL,
		    "t.yaml:2:5: users[0].name is required\n"
		    "t.yaml:3:13: users[1].name must not be empty");
	/* An md5 hash that is not 32 hex digits is a plain password. */
	CHECK_LOADS("users:\n  - { name: app, password: md5notahash }\n" MINIMAL_TAIL);
	CHECK_LOADS("users:\n  - { name: app, password: \"" MD5_HASH "\", auth: md5 }\n" MINIMAL_TAIL);
	CHECK_LOADS("users:\n  - { name: app, password: plain, auth: md5 }\n" MINIMAL_TAIL);
	/* Error messages never quote a password. */
	CHECK_ERROR_CONTAINS("users:\n  - { name: app, password: \"" MD5_HASH "\" }\n" MINIMAL_TAIL,
			     "md5 hash");
	CHECK(strstr(err, MD5_HASH) == NULL);
}

TEST(error_missing_primary_host)
{
	CHECK_ERROR("databases: { app: { service: users } }\n"
		    "services:\n"
		    "  users:\n"
		    "    primary:\n"
		    "      port: 5433\n"
		    "      user: app\n",
		    "t.yaml:5:7: services.users.primary.host is required");
	CHECK_ERROR("databases: { app: { service: users } }\n"
		    "services:\n"
		    "  users: { primary: { port: 5433 } }\n",
		    "t.yaml:3:21: services.users.primary.host is required");
	CHECK_ERROR("databases: { app: { service: users } }\n"
		    "services:\n"
		    "  users: { pool: { max: 3 } }\n",
		    "t.yaml:3:10: services.users.primary is required");
}

TEST(error_no_databases)
{
	CHECK_ERROR("", "t.yaml:1:1: no databases defined\nt.yaml:1:1: no services defined");
	CHECK_ERROR("# just a comment\n",
		    "t.yaml:1:1: no databases defined\nt.yaml:1:1: no services defined");
	CHECK_ERROR("listen: { port: 6000 }\n"
		    "services: { users: { primary: { host: h } } }\n",
		    "t.yaml:1:1: no databases defined");
	CHECK_ERROR("databases: {}\n"
		    "services: { users: { primary: { host: h } } }\n",
		    "t.yaml:1:12: no databases defined");
	CHECK_ERROR("databases: { app: { service: users } }\n",
		    "t.yaml:1:1: no services defined\n"
		    "t.yaml:1:30: databases.app.service names an unknown service \"users\" (no services "
		    "are defined)");
}

TEST(multiple_errors_reported_together)
{
	Config *c = load("listen: { port: 70000, max_conn: 1 }\n"  /* 1 */
			 "log: { level: loud }\n"                    /* 2 */
			 "users:\n"                                  /* 3 */
			 "  - { name: a, password: \"" MD5_HASH "\" }\n"
			 "databases:\n"                              /* 5 */
			 "  app: { service: nope }\n"                /* 6 */
			 "services:\n"                               /* 7 */
			 "  users:\n"                                /* 8 */
			 "    primary: { port: 1 }\n"                /* 9 */
			 "    pool: { max: 1, min: 2 }\n");          /* 10 */
	CHECK(c == NULL);
	config_unref(c);
	CHECK_INT(count_lines(err), 7);
	/* Sorted by position, one per line. */
	CHECK_STR(err,
		  "t.yaml:1:17: listen.port must be an integer between 1 and 65535, got \"70000\"\n"
		  "t.yaml:1:24: unknown key \"max_conn\" in listen (expected one of: host, port, "
		  "max_client_conn, backlog, tls, upgrade_socket)\n"
		  "t.yaml:2:15: log.level must be one of: debug, info, warning, error; got \"loud\"\n"
		  "t.yaml:4:26: users[0].password is an md5 hash, which cannot be used for "
		  "scram-sha-256 authentication (SCRAM needs the plain password or a SCRAM-SHA-256 "
		  "verifier; set auth: md5 to keep the hash)\n"
		  "t.yaml:6:19: databases.app.service names an unknown service \"nope\" (defined "
		  "services: users)\n"
		  "t.yaml:9:14: services.users.primary.host is required\n"
		  "t.yaml:10:26: services.users.pool.min must be at most services.users.pool.max (1), "
		  "got 2");
}

TEST(at_most_twenty_errors)
{
	char yaml[4096] = "listen:\n";
	for (int i = 0; i < 30; i++) {
		char line[64];
		snprintf(line, sizeof line, "  bad%d: 1\n", i);
		strcat(yaml, line);
	}
	strcat(yaml, MINIMAL_TAIL);
	Config *c = load(yaml);
	CHECK(c == NULL);
	config_unref(c);
	CHECK_INT(count_lines(err), 20);
	CHECK_CONTAINS(err, "t.yaml:2:3: unknown key \"bad0\"");
	CHECK_CONTAINS(err, "t.yaml:21:3: unknown key \"bad19\"");
	CHECK(strstr(err, "bad20") == NULL);

	/* A short buffer is truncated but always terminated. */
	char small[16];
	memset(small, 'x', sizeof small);
	c = config_load_string("t.yaml", yaml, small, sizeof small);
	CHECK(c == NULL);
	config_unref(c);
	CHECK_INT(strlen(small), sizeof small - 1);
	CHECK(config_load_string("t.yaml", yaml, NULL, 0) == NULL);
}

TEST(missing_file)
{
	Config *c = config_load("/nonexistent/dir/proxy.yaml", err, sizeof err);
	CHECK(c == NULL);
	CHECK_STR(err, "/nonexistent/dir/proxy.yaml: cannot open configuration file: No such file or "
		       "directory");
}

TEST(refcount_lookups_and_names)
{
	Config *c = load("users:\n"
			 "  - { name: app, password: x }\n"
			 "  - { name: other, password: y, auth: md5 }\n" MINIMAL_TAIL);
	REQUIRE(c != NULL);
	CHECK(config_ref(c) == c);
	CHECK_INT(c->refcount, 2);
	config_unref(c);
	CHECK_INT(c->refcount, 1);

	const ConfigUser *u = config_find_user(c, "other");
	REQUIRE(u != NULL);
	CHECK_STR(u->password, "y");
	CHECK(config_find_user(c, "nobody") == NULL);
	CHECK(config_find_user(c, NULL) == NULL);
	CHECK(config_find_database(c, "app") == &c->databases[0]);
	CHECK(config_find_database(c, "users") == NULL);
	CHECK(config_find_service(c, "users") == &c->services[0]);
	CHECK(config_find_service(c, "app") == NULL);
	config_unref(c);
	config_unref(NULL);
	CHECK(config_ref(NULL) == NULL);

	CHECK_STR(config_pool_mode_name(CONFIG_POOL_SESSION), "session");
	CHECK_STR(config_pool_mode_name(CONFIG_POOL_TRANSACTION), "transaction");
	CHECK_STR(config_auth_method_name(CONFIG_AUTH_SCRAM_SHA_256), "scram-sha-256");
	CHECK_STR(config_auth_method_name(CONFIG_AUTH_MD5), "md5");
	CHECK_STR(config_auth_method_name(CONFIG_AUTH_PASSWORD), "password");
}

TEST(example_file_loads)
{
	if (!source_root) {
		printf("  skipped: no source root given as argv[1], cannot find proxy.yaml.example\n");
		return;
	}
	char path[4096];
	snprintf(path, sizeof path, "%s/proxy.yaml.example", source_root);
	Config *c = config_load(path, err, sizeof err);
	if (!c)
		UNIT_FAIL("%s", err);
	REQUIRE(c != NULL);
	CHECK_STR(c->path, path);
	/* The example shows the defaults. */
	CHECK_STR(c->listen.host, "127.0.0.1");
	CHECK_INT(c->listen.port, 6432);
	CHECK_INT(c->buffer_size, 64 * 1024);
	CHECK(c->n_users >= 1 && c->n_databases >= 1 && c->n_services >= 1);
	for (size_t i = 0; i < c->n_databases; i++)
		CHECK(c->databases[i].service != NULL);
	config_unref(c);
}

TEST(tls_settings)
{
	Config *c = load("listen: { tls: { mode: require, cert: /c.pem, key: /k.pem, ca: /ca.pem } }\n"
			 "proxy: { allow_cleartext_without_tls: yes, max_prepared_statements: 0 }\n"
			 "databases: { app: { service: users } }\n"
			 "services:\n"
			 "  users:\n"
			 "    primary: { host: db1 }\n"
			 "    tls: { mode: verify-full, ca: /root.pem }\n"
			 "  other: { primary: { host: db2 } }\n");
	REQUIRE(c != NULL);
	CHECK_INT(c->listen.tls.mode, CONFIG_TLS_REQUIRE);
	CHECK_STR(c->listen.tls.cert, "/c.pem");
	CHECK_STR(c->listen.tls.ca, "/ca.pem");
	CHECK(c->allow_cleartext_without_tls);
	CHECK_INT(c->max_prepared_statements, 0);
	CHECK_INT(config_find_service(c, "users")->tls.mode, CONFIG_TLS_VERIFY_FULL);
	CHECK_STR(config_find_service(c, "users")->tls.ca, "/root.pem");
	CHECK_INT(config_find_service(c, "other")->tls.mode, CONFIG_TLS_PREFER);
	config_unref(c);
	c = load(MINIMAL_TAIL);
	REQUIRE(c != NULL);
	CHECK_INT(c->listen.tls.mode, CONFIG_TLS_DISABLE);
	CHECK(!c->allow_cleartext_without_tls);
	CHECK_INT(c->max_prepared_statements, 200);
	config_unref(c);
	CHECK(load("listen: { tls: { mode: require } }\n" MINIMAL_TAIL) == NULL);
	CHECK_CONTAINS(err, "t.yaml:1:16: listen.tls needs cert and key when mode is require");
	CHECK(load("databases: { app: { service: users } }\n"
		   "services: { users: { primary: { host: h }, tls: { mode: verify-full } } }\n") == NULL);
	CHECK_CONTAINS(err, "services.users.tls.mode verify-full needs ca");
	CHECK(load("proxy: { allow_cleartext_without_tls: maybe }\n" MINIMAL_TAIL) == NULL);
	CHECK_CONTAINS(err, "proxy.allow_cleartext_without_tls must be one of: false, true");

	/* require_auth: the server must prove it knows the password with SCRAM */
	c = load("databases: { app: { service: users } }\n"
		 "services:\n"
		 "  users: { primary: { host: h }, tls: { require_auth: scram-sha-256 } }\n"
		 "  other: { primary: { host: h }, tls: { mode: require, require_auth: any } }\n"
		 "  third: { primary: { host: h } }\n");
	REQUIRE(c != NULL);
	CHECK(config_find_service(c, "users")->tls.require_scram);
	CHECK_INT(config_find_service(c, "users")->tls.mode, CONFIG_TLS_PREFER);
	CHECK(!config_find_service(c, "other")->tls.require_scram);
	CHECK(!config_find_service(c, "third")->tls.require_scram);
	config_unref(c);
	CHECK_ERROR("databases: { app: { service: users } }\n"
		    "services: { users: { primary: { host: h }, tls: { require_auth: md5 } } }\n",
		    "t.yaml:2:65: services.users.tls.require_auth must be one of: any, scram-sha-256; got \"md5\"");
	CHECK_ERROR_CONTAINS("listen: { tls: { mode: disable, require_auth: any } }\n" MINIMAL_TAIL,
			     "unknown key \"require_auth\" in listen.tls");
}

/* Writes text to a fresh temporary file with the given mode; returns its path (static buffer). */
static const char *temp_file(char *path, size_t len, const char *text, mode_t mode)
{
	snprintf(path, len, "/tmp/pgrelay-test-secret.XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return NULL;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	chmod(path, mode);
	return n == (ssize_t)strlen(text) ? path : NULL;
}

TEST(secrets_from_files_and_environment)
{
	char pw[64], yaml[2048];
	REQUIRE(temp_file(pw, sizeof pw, "from-a-file\n", 0600));
	setenv("PGRELAY_TEST_PW", "from-the-env", 1);
	setenv("PGRELAY_TEST_EMPTY", "", 1);
	unsetenv("PGRELAY_TEST_UNSET");
	snprintf(yaml, sizeof yaml,
		 "users:\n"
		 "  - { name: a, password_file: \"%s\" }\n"
		 "  - { name: b, password_env: PGRELAY_TEST_PW, auth: md5 }\n"
		 "databases: { app: { service: users } }\n"
		 "services:\n"
		 "  users:\n"
		 "    primary: { host: db1, user: u, password_env: PGRELAY_TEST_PW }\n"
		 "    replicas: [ { host: db2, password_file: \"%s\" }, { host: db3 } ]\n"
		 "cache:\n"
		 "  redis: { nodes: [\"127.0.0.1:7000\"], password_file: \"%s\" }\n"
		 "  wal_listener: { service: users, password_env: PGRELAY_TEST_PW }\n",
		 pw, pw, pw);
	Config *c = load(yaml);
	REQUIRE(c != NULL);
	CHECK_STR(config_find_user(c, "a")->password, "from-a-file");
	CHECK_STR(config_find_user(c, "b")->password, "from-the-env");
	const ConfigService *svc = config_find_service(c, "users");
	CHECK_STR(svc->primary.password, "from-the-env");
	CHECK_STR(svc->replicas[0].password, "from-a-file");
	CHECK_STR(svc->replicas[1].password, "from-the-env"); /* inherited from the primary */
	CHECK_STR(c->cache.redis_password, "from-a-file");
	CHECK_STR(c->cache.wal_password, "from-the-env");
	CHECK_INT(c->n_warnings, 0);
	config_unref(c);

	/* errors: file:line:column, never the secret */
	CHECK_ERROR("users:\n  - { name: a, password: x, password_env: PGRELAY_TEST_PW }\n" MINIMAL_TAIL,
		    "t.yaml:2:43: users[0].password, password_file and password_env exclude each other: give one");
	CHECK_ERROR("users:\n  - { name: a, password_file: /nonexistent/pw }\n" MINIMAL_TAIL,
		    "t.yaml:2:31: users[0].password_file: cannot open \"/nonexistent/pw\": No such file or directory");
	CHECK_ERROR("users:\n  - { name: a, password_env: PGRELAY_TEST_UNSET }\n" MINIMAL_TAIL,
		    "t.yaml:2:30: users[0].password_env: environment variable \"PGRELAY_TEST_UNSET\" is not set");
	CHECK_ERROR("users:\n  - { name: a, password_env: PGRELAY_TEST_EMPTY }\n" MINIMAL_TAIL,
		    "t.yaml:2:30: users[0].password_env: environment variable \"PGRELAY_TEST_EMPTY\" is empty");
	CHECK_ERROR("users:\n  - { name: a, password_file: /tmp }\n" MINIMAL_TAIL,
		    "t.yaml:2:31: users[0].password_file: \"/tmp\" is not a regular file");
	CHECK_ERROR("databases: { app: { service: users } }\n"
		    "services: { users: { primary: { host: h, password: x, password_file: /p } } }\n",
		    "t.yaml:2:70: services.users.primary.password, password_file and password_env exclude each other: "
		    "give one");
	char other[64];
	REQUIRE(temp_file(other, sizeof other, "\n", 0600));
	snprintf(yaml, sizeof yaml, "users:\n  - { name: a, password_file: \"%s\" }\n" MINIMAL_TAIL, other);
	CHECK_ERROR_CONTAINS(yaml, "t.yaml:2:31: users[0].password_file: \"/tmp/pgrelay-test-secret.");
	CHECK_ERROR_CONTAINS(yaml, "\" is empty");
	unlink(other);
	REQUIRE(temp_file(other, sizeof other, "one\ntwo\n", 0600));
	snprintf(yaml, sizeof yaml, "users:\n  - { name: a, password_file: \"%s\" }\n" MINIMAL_TAIL, other);
	CHECK_ERROR_CONTAINS(yaml, "\" holds more than one line");
	unlink(other);
	/* the form checks apply to what the file holds */
	REQUIRE(temp_file(other, sizeof other, "md555913cace0c7f6db6a991ca2e344d5e8\n", 0600));
	snprintf(yaml, sizeof yaml, "users:\n  - { name: a, password_file: \"%s\" }\n" MINIMAL_TAIL, other);
	CHECK_ERROR_CONTAINS(yaml, "users[0].password is an md5 hash, which cannot be used for scram-sha-256");
	unlink(other);

	/* a password file readable by others: a warning, not an error */
	REQUIRE(temp_file(other, sizeof other, "pw\n", 0644));
	snprintf(yaml, sizeof yaml, "users:\n  - { name: a, password_file: \"%s\" }\n" MINIMAL_TAIL, other);
	c = load(yaml);
	REQUIRE(c != NULL);
	REQUIRE(c->n_warnings == 1);
	CHECK_CONTAINS(c->warnings[0], "t.yaml:2:31: users[0].password_file: \"/tmp/pgrelay-test-secret.");
	CHECK_CONTAINS(c->warnings[0], "is readable by group or others (mode 0644)");
	config_unref(c);
	unlink(other);
	unlink(pw);
}

/* proxy.yaml itself readable by group or others while it holds secrets: a warning at load. */
TEST(config_file_mode_warning)
{
	char path[64];
	static const char with_secret[] = "users:\n  - { name: a, password: s3cr3t }\n" MINIMAL_TAIL;
	static const char without[] = "users:\n  - { name: a, password_env: PGRELAY_TEST_PW }\n" MINIMAL_TAIL;
	setenv("PGRELAY_TEST_PW", "from-the-env", 1);
	REQUIRE(temp_file(path, sizeof path, with_secret, 0644));
	Config *c = config_load(path, err, sizeof err);
	REQUIRE(c != NULL);
	REQUIRE(c->n_warnings == 1);
	CHECK_CONTAINS(c->warnings[0], ":2:26: ");
	CHECK_CONTAINS(c->warnings[0], "is readable by group or others (mode 0644) and holds secrets "
				       "(users[0].password, ...)");
	CHECK(strstr(c->warnings[0], "s3cr3t") == NULL);
	config_unref(c);
	chmod(path, 0640);
	c = config_load(path, err, sizeof err);
	REQUIRE(c != NULL);
	CHECK_INT(c->n_warnings, 1);
	config_unref(c);
	chmod(path, 0600);
	c = config_load(path, err, sizeof err);
	REQUIRE(c != NULL);
	CHECK_INT(c->n_warnings, 0);
	config_unref(c);
	unlink(path);
	/* secrets only from files or the environment: the file may be readable */
	REQUIRE(temp_file(path, sizeof path, without, 0644));
	c = config_load(path, err, sizeof err);
	REQUIRE(c != NULL);
	CHECK_INT(c->n_warnings, 0);
	config_unref(c);
	unlink(path);
}

TEST(routing_settings)
{
	Config *c = load("databases: { app: { service: users } }\n"
			 "services:\n"
			 "  users:\n"
			 "    primary: { host: p1, dbname: udb, user: app, password: s }\n"
			 "    replicas: [ { host: r1 }, { host: r2, port: 5433, dbname: other } ]\n"
			 "    reads: replicas\n"
			 "    balance: least-outstanding\n"
			 "    functions: { read_only: [my_lookup, \"util.f\"], writes: bump }\n"
			 "  orders: { primary: { host: p2 } }\n"
			 "routes:\n"
			 "  - { schema: billing, service: orders, reads: primary }\n"
			 "  - { tables: [orders, \"order_*\"], service: orders }\n"
			 "health: { interval: 500ms, fail_after: 2, recover_after: 1, max_lag: 10s }\n");
	REQUIRE(c != NULL);
	const ConfigService *u = config_find_service(c, "users");
	REQUIRE(u->n_replicas == 2);
	CHECK_STR(u->replicas[0].host, "r1");
	CHECK_STR(u->replicas[0].dbname, "udb");
	CHECK_STR(u->replicas[0].user, "app");
	CHECK_STR(u->replicas[0].password, "s");
	CHECK_INT(u->replicas[1].port, 5433);
	CHECK_STR(u->replicas[1].dbname, "other");
	CHECK_INT(u->reads, CONFIG_READS_REPLICAS);
	CHECK_INT(u->balance, CONFIG_BALANCE_LEAST_OUTSTANDING);
	REQUIRE(u->n_read_only_functions == 2);
	CHECK_STR(u->read_only_functions[1], "util.f");
	REQUIRE(u->n_writing_functions == 1);
	CHECK_STR(u->writing_functions[0], "bump");
	CHECK_INT(config_find_service(c, "orders")->reads, CONFIG_READS_PRIMARY);
	REQUIRE(c->n_routes == 2);
	CHECK_STR(c->routes[0].schemas[0], "billing");
	CHECK(c->routes[0].service == config_find_service(c, "orders"));
	CHECK_INT(c->routes[0].reads, CONFIG_READS_PRIMARY);
	CHECK_INT(c->routes[0].line, 11);
	CHECK_INT(c->routes[1].n_tables, 2);
	CHECK_INT(c->routes[1].reads, CONFIG_READS_INHERIT);
	CHECK_INT(c->health.interval_ms, 500);
	CHECK_INT(c->health.fail_after, 2);
	CHECK_INT(c->health.max_lag_ms, 10000);
	CHECK_INT(c->health.max_lag_bytes, 0);
	config_unref(c);
	c = load(MINIMAL_TAIL "health: { max_lag: 16MB }\n");
	REQUIRE(c != NULL);
	CHECK_INT(c->health.max_lag_bytes, 16 * 1024 * 1024);
	CHECK_INT(c->health.interval_ms, 1000);
	config_unref(c);
	CHECK(load(MINIMAL_TAIL "routes:\n  - { service: users }\n") == NULL);
	CHECK_CONTAINS(err, "routes[0] needs schema or tables");
	CHECK(load(MINIMAL_TAIL "routes:\n  - { tables: [x], service: nope }\n") == NULL);
	CHECK_CONTAINS(err, "routes[0].service names an unknown service \"nope\"");
	CHECK(load(MINIMAL_TAIL "health: { max_lag: lots }\n") == NULL);
	CHECK_CONTAINS(err, "health.max_lag must be a size");
}

int main(int argc, char **argv)
{
	if (argc > 1)
		source_root = argv[1];
	RUN(tls_settings);
	RUN(secrets_from_files_and_environment);
	RUN(config_file_mode_warning);
	RUN(routing_settings);
	RUN(full_config_every_key);
	RUN(defaults_for_minimal_config);
	RUN(durations);
	RUN(sizes);
	RUN(error_unknown_key);
	RUN(cache_section);
	RUN(cache_redis_auth_and_signing_key);
	RUN(error_wrong_type);
	RUN(error_port_out_of_range);
	RUN(integers_are_strict);
	RUN(error_pool_min_greater_than_max);
	RUN(error_durations_and_sizes_in_file);
	RUN(error_unknown_service);
	RUN(error_duplicate_key);
	RUN(error_yaml_syntax);
	RUN(error_password_forms);
	RUN(error_missing_primary_host);
	RUN(error_no_databases);
	RUN(multiple_errors_reported_together);
	RUN(at_most_twenty_errors);
	RUN(missing_file);
	RUN(refcount_lookups_and_names);
	RUN(example_file_loads);
	return unit_summary();
}
