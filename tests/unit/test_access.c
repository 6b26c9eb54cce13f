/*
 * test_access — client access rules: address and CIDR parsing (IPv4, IPv6, IPv4-mapped peers),
 * first match wins, connection types, database and user keywords, the defaults of a rule, and the
 * loader's "file:line:column: message" for bad rules.
 */
#include "access.h"
#include "config.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static char err[8192];

#define TAIL                                                                                   \
	"users:\n"                                                                             \
	"  - { name: app, password: secret }\n"                                                \
	"  - { name: admin, password: secret }\n"                                              \
	"  - { name: appdb, password: secret }\n"                                              \
	"databases:\n"                                                                         \
	"  appdb: { service: main }\n"                                                         \
	"  other: { service: main }\n"                                                         \
	"services:\n"                                                                          \
	"  main:\n"                                                                            \
	"    primary: { host: db1 }\n"

static Config *load(const char *yaml)
{
	return config_load_string("t.yaml", yaml, err, sizeof err);
}

/* A peer address for requests: "10.1.2.3" or "::1". */
static struct sockaddr_storage peer(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (strchr(text, ':')) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, text, &in6->sin6_addr);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		inet_pton(AF_INET, text, &in->sin_addr);
	}
	return ss;
}

static int match(const Config *cfg, const char *db, const char *user, const char *addr, bool tls)
{
	struct sockaddr_storage ss = peer(addr);
	AccessRequest req = {.database = db, .user = user, .console = !strcmp(db, "pgrelay") || !strcmp(db, "pgbouncer"),
			     .peer = (const struct sockaddr *)&ss, .tls = tls};
	return access_match(cfg->access, cfg->n_access, &req);
}

static bool addr_in(const char *cidr, const char *addr)
{
	AccessRule r = {.all_databases = true, .all_users = true};
	if (access_parse_address(cidr, &r.address) != NULL)
		return false;
	struct sockaddr_storage ss = peer(addr);
	AccessRequest req = {.database = "d", .user = "u", .peer = (const struct sockaddr *)&ss};
	return access_match(&r, 1, &req) == 0;
}

TEST(cidr_ipv4)
{
	CHECK(addr_in("10.0.0.0/8", "10.255.1.2"));
	CHECK(!addr_in("10.0.0.0/8", "11.0.0.1"));
	CHECK(addr_in("192.168.1.0/24", "192.168.1.77"));
	CHECK(!addr_in("192.168.1.0/24", "192.168.2.1"));
	CHECK(addr_in("172.16.0.0/12", "172.31.255.255"));
	CHECK(!addr_in("172.16.0.0/12", "172.32.0.0"));
	CHECK(addr_in("127.0.0.1", "127.0.0.1")); /* no mask: /32 */
	CHECK(!addr_in("127.0.0.1", "127.0.0.2"));
	CHECK(addr_in("0.0.0.0/0", "203.0.113.9"));
	CHECK(!addr_in("0.0.0.0/0", "::1")); /* an IPv4 block never matches an IPv6 peer */
	CHECK(addr_in("all", "::1"));
	CHECK(addr_in("all", "10.0.0.1"));
}

TEST(cidr_ipv6)
{
	CHECK(addr_in("::1", "::1")); /* no mask: /128 */
	CHECK(!addr_in("::1", "::2"));
	CHECK(addr_in("fe80::/10", "fe80::1"));
	CHECK(addr_in("fe80::/10", "febf::1"));
	CHECK(!addr_in("fe80::/10", "fec0::1"));
	CHECK(addr_in("2001:db8::/32", "2001:db8:ffff::1"));
	CHECK(!addr_in("2001:db8::/32", "2001:db9::1"));
	CHECK(addr_in("::/0", "2001:db8::1"));
	CHECK(!addr_in("::/0", "10.0.0.1")); /* an IPv6 block never matches an IPv4 peer */
}

TEST(ipv4_mapped_peer_is_ipv4)
{
	CHECK(addr_in("10.0.0.0/8", "::ffff:10.1.2.3"));
	CHECK(addr_in("127.0.0.1", "::ffff:127.0.0.1"));
	CHECK(!addr_in("10.0.0.0/8", "::ffff:11.1.2.3"));
	CHECK(!addr_in("::ffff:0:0/96", "::ffff:10.1.2.3")); /* matched as IPv4, not IPv6 */
}

TEST(parse_errors)
{
	AccessAddress a;
	CHECK(access_parse_address("10.0.0.0/33", &a) != NULL);
	CHECK(access_parse_address("::/129", &a) != NULL);
	CHECK(access_parse_address("10.0.0.1/8", &a) != NULL); /* host bits set */
	CHECK(access_parse_address("10.0.0.0/", &a) != NULL);
	CHECK(access_parse_address("10.0.0.0/08", &a) != NULL);
	CHECK(access_parse_address("10.0.0.0/x", &a) != NULL);
	CHECK(access_parse_address("10.0.0", &a) != NULL);
	CHECK(access_parse_address("db.example.com", &a) != NULL);
	CHECK(access_parse_address("", &a) != NULL);
	CHECK(access_parse_address("10.0.0.0/8", &a) == NULL);
	CHECK_INT(a.family, 4);
	CHECK_INT(a.prefix, 8);
	CHECK(access_parse_address("::1", &a) == NULL);
	CHECK_INT(a.family, 6);
	CHECK_INT(a.prefix, 128);
	char buf[64];
	access_parse_address("fe80::/10", &a);
	access_format_address(&a, buf, sizeof buf);
	CHECK_STR(buf, "fe80::/10");
	access_parse_address("all", &a);
	access_format_address(&a, buf, sizeof buf);
	CHECK_STR(buf, "all");
}

TEST(first_match_wins)
{
	Config *cfg = load("access:\n"
			   "  - { database: appdb, user: app, address: 10.0.0.0/8, method: reject }\n"
			   "  - { database: appdb, user: app, address: 10.0.0.0/8, method: md5 }\n"
			   "  - { database: all, user: app, address: 0.0.0.0/0, method: scram-sha-256 }\n"
			   "  - { database: all, user: all, address: all, method: password }\n" TAIL);
	if (!cfg)
		UNIT_FAIL("load: %s", err);
	REQUIRE(cfg);
	CHECK(cfg->access_enabled);
	REQUIRE(cfg->n_access == 4);
	CHECK_INT(cfg->access[0].line, 2);
	CHECK_INT(cfg->access[3].line, 5);
	CHECK_INT(match(cfg, "appdb", "app", "10.1.1.1", false), 0);
	CHECK_INT(cfg->access[0].method, ACCESS_REJECT);
	CHECK_INT(match(cfg, "other", "app", "10.1.1.1", false), 2);
	CHECK_INT(match(cfg, "appdb", "app", "192.168.0.1", false), 2);
	CHECK_INT(match(cfg, "appdb", "app", "::1", false), 3);
	CHECK_INT(match(cfg, "appdb", "admin", "10.1.1.1", false), 3);
	CHECK_INT(cfg->access[3].method, ACCESS_PASSWORD);
	config_unref(cfg);
}

TEST(no_match_refused)
{
	Config *cfg = load("access:\n"
			   "  - { database: appdb, user: app, address: 10.0.0.0/8, method: md5 }\n" TAIL);
	REQUIRE(cfg);
	CHECK_INT(match(cfg, "appdb", "app", "127.0.0.1", false), -1);
	CHECK_INT(match(cfg, "appdb", "admin", "10.0.0.1", false), -1);
	CHECK_INT(match(cfg, "other", "app", "10.0.0.1", false), -1);
	config_unref(cfg);
}

TEST(types)
{
	Config *cfg = load("access:\n"
			   "  - { type: hostssl, user: app, method: scram-sha-256 }\n"
			   "  - { type: hostnossl, user: app, method: reject }\n"
			   "  - { type: host, user: admin, method: md5 }\n"
			   "  - { type: hostnossl, user: appdb, method: md5 }\n" TAIL);
	REQUIRE(cfg);
	CHECK_INT(cfg->access[0].type, ACCESS_HOSTSSL);
	CHECK_INT(match(cfg, "appdb", "app", "10.0.0.1", true), 0);
	CHECK_INT(match(cfg, "appdb", "app", "10.0.0.1", false), 1);
	CHECK_INT(match(cfg, "appdb", "admin", "10.0.0.1", true), 2);
	CHECK_INT(match(cfg, "appdb", "admin", "10.0.0.1", false), 2);
	CHECK_INT(match(cfg, "appdb", "appdb", "10.0.0.1", false), 3);
	CHECK_INT(match(cfg, "appdb", "appdb", "10.0.0.1", true), -1);
	config_unref(cfg);
}

TEST(defaults)
{
	/* type host, every database, every user, every address. */
	Config *cfg = load("access:\n  - { method: md5 }\n" TAIL);
	REQUIRE(cfg);
	const AccessRule *r = &cfg->access[0];
	CHECK_INT(r->type, ACCESS_HOST);
	CHECK(r->all_databases);
	CHECK(r->all_users);
	CHECK_INT(r->address.family, 0);
	CHECK_INT(match(cfg, "x", "y", "2001:db8::1", true), 0);
	config_unref(cfg);

	/* No access section: no rules, nothing enforced. */
	cfg = load(TAIL);
	REQUIRE(cfg);
	CHECK(!cfg->access_enabled);
	CHECK_INT(cfg->n_access, 0);
	config_unref(cfg);
}

TEST(database_and_user_keywords)
{
	Config *cfg = load("access:\n"
			   "  - { database: pgrelay, user: admin, method: md5 }\n"
			   "  - { database: sameuser, user: all, method: password }\n"
			   "  - { database: [\"all\", other], user: [app, \"all\"], method: scram-sha-256 }\n"
			   "  - { database: [\"sameuser\"], user: \"app\", method: md5 }\n"
			   "  - { database: all, user: all, method: reject }\n" TAIL);
	if (!cfg)
		UNIT_FAIL("load: %s", err);
	REQUIRE(cfg);
	/* The admin console under either name. */
	CHECK_INT(match(cfg, "pgrelay", "admin", "127.0.0.1", false), 0);
	CHECK_INT(match(cfg, "pgbouncer", "admin", "127.0.0.1", false), 0);
	CHECK_INT(match(cfg, "pgrelay", "app", "127.0.0.1", false), 2);
	CHECK(cfg->access[3].same_user);
	/* sameuser: the database named like the user. */
	CHECK_INT(match(cfg, "appdb", "appdb", "127.0.0.1", false), 1);
	/* Names and keywords, quoted or not (YAML writers quote freely). */
	CHECK(cfg->access[2].all_databases);
	CHECK(cfg->access[2].all_users);
	CHECK_INT(match(cfg, "other", "app", "127.0.0.1", false), 2);
	CHECK_INT(match(cfg, "appdb", "app", "127.0.0.1", false), 2);
	config_unref(cfg);
}

TEST(loader_errors)
{
	struct {
		const char *yaml, *expected;
	} cases[] = {
		{"access:\n  - { address: 10.0.0.1/8, method: md5 }\n",
		 "t.yaml:2:16: access[0].address: \"10.0.0.1/8\": the address has bits set past its prefix length"},
		{"access:\n  - { address: 10.0.0.0/40, method: md5 }\n",
		 "t.yaml:2:16: access[0].address: \"10.0.0.0/40\": an IPv4 prefix length is at most 32"},
		{"access:\n  - { address: db.example.com, method: md5 }\n",
		 "t.yaml:2:16: access[0].address: \"db.example.com\": not an IPv4 or IPv6 address (host names"},
		{"access:\n  - { method: trust }\n",
		 "t.yaml:2:15: access[0].method must be one of: scram-sha-256, md5, password, reject; got \"trust\""},
		{"access:\n  - { type: hostgssenc, method: md5 }\n",
		 "t.yaml:2:13: access[0].type must be one of: host, hostssl, hostnossl; got \"hostgssenc\""},
		{"access:\n  - { type: local, method: md5 }\n", "t.yaml:2:13: access[0].type: local (Unix-socket clients)"},
		{"access:\n  - { method: md5, netmask: 255.0.0.0 }\n", "t.yaml:2:20: unknown key \"netmask\" in access[0]"},
		{"access:\n  - { user: app }\n", "t.yaml:2:5: access[0].method is required"},
		{"access:\n  - { user: \"+admins\", method: md5 }\n", "t.yaml:2:13: access[0].user: \"+admins\": groups"},
		{"access: []\n", "t.yaml:1:9: access has no rules"},
		{"access: { method: md5 }\n", "t.yaml:1:9: access must be a list"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char yaml[2048];
		snprintf(yaml, sizeof yaml, "%s%s", cases[i].yaml, TAIL);
		Config *cfg = load(yaml);
		CHECK(cfg == NULL);
		config_unref(cfg);
		if (strncmp(err, cases[i].expected, strlen(cases[i].expected)) != 0)
			UNIT_FAIL("case %zu: got \"%s\", expected it to start with \"%s\"", i, err, cases[i].expected);
	}
}

TEST(unknown_names_warn)
{
	Config *cfg = load("access:\n  - { database: nosuchdb, user: nobody, method: md5 }\n" TAIL);
	REQUIRE(cfg);
	REQUIRE(cfg->n_warnings == 2);
	CHECK_CONTAINS(cfg->warnings[0], "t.yaml:2:17: access[0].database names \"nosuchdb\"");
	CHECK_CONTAINS(cfg->warnings[1], "access[0].user names \"nobody\"");
	config_unref(cfg);
}

TEST(scram_rule_for_md5_hash_warns)
{
	Config *cfg = load("access:\n  - { user: md5u, method: scram-sha-256 }\n"
			   "users:\n  - { name: md5u, password: md555913cace0c7f6db6a991ca2e344d5e8, auth: md5 }\n"
			   "databases:\n  appdb: { service: main }\nservices:\n  main:\n    primary: { host: db1 }\n");
	if (!cfg)
		UNIT_FAIL("load: %s", err);
	REQUIRE(cfg);
	REQUIRE(cfg->n_warnings == 1);
	CHECK_CONTAINS(cfg->warnings[0], "t.yaml:2:27: access[0].method is scram-sha-256, but the password of user \"md5u\"");
	config_unref(cfg);
}

int main(void)
{
	RUN(cidr_ipv4);
	RUN(cidr_ipv6);
	RUN(ipv4_mapped_peer_is_ipv4);
	RUN(parse_errors);
	RUN(first_match_wins);
	RUN(no_match_refused);
	RUN(types);
	RUN(defaults);
	RUN(database_and_user_keywords);
	RUN(loader_errors);
	RUN(unknown_names_warn);
	RUN(scram_rule_for_md5_hash_warns);
	return unit_summary();
}
