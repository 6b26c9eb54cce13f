/*
 * access — client access rules (proxy.yaml's `access` section), in the manner of pg_hba.conf.
 *
 * Owns: the rule type (connection type, databases, users, address block, method), parsing an
 * address or CIDR block ("10.0.0.0/8", "::1", "all"), and the matching itself: the first rule
 * whose type, database, user and address all match the connection decides its method, or refuses
 * it; when no rule matches the connection is refused. Pure: no sockets, no configuration loader,
 * no event loop (the configuration loader builds the rules, the client asks once at login).
 */
#ifndef PGRELAY_ACCESS_H
#define PGRELAY_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

typedef enum {
	ACCESS_HOST = 0,   /* TCP, with or without TLS (default) */
	ACCESS_HOSTSSL,    /* TCP with TLS only */
	ACCESS_HOSTNOSSL,  /* TCP without TLS only */
} AccessType;

/* The order of the first three is ConfigAuthMethod's. */
typedef enum {
	ACCESS_SCRAM_SHA_256 = 0,
	ACCESS_MD5,
	ACCESS_PASSWORD,
	ACCESS_REJECT,
} AccessMethod;

/* An address block; family 0 matches every address. */
typedef struct AccessAddress {
	int family;        /* 0 (all), 4 or 6 */
	uint8_t addr[16];  /* network byte order; 4 bytes used for IPv4 */
	int prefix;        /* 0..32 or 0..128 */
} AccessAddress;

typedef struct AccessRule {
	AccessType type;
	/* databases: names; all_databases: the keyword all; same_user: the keyword sameuser
	 * (the database named like the user); console: a name is pgrelay or pgbouncer, which then also
	 * matches the admin console under either name. */
	char **databases;
	size_t n_databases;
	bool all_databases, same_user, console;
	char **users; /* names; all_users: the keyword all */
	size_t n_users;
	bool all_users;
	AccessAddress address;
	AccessMethod method;
	int line; /* 1-based line of the rule in the file, for logs and SHOW ACCESS */
} AccessRule;

/* What is known of a connection at login. */
typedef struct AccessRequest {
	const char *database;
	const char *user;
	bool console;        /* the database is pgrelay's admin console */
	const struct sockaddr *peer; /* AF_INET or AF_INET6 (IPv4-mapped IPv6 is matched as IPv4) */
	bool tls;
} AccessRequest;

/* The index of the first matching rule, or -1 when none matches (refused). */
int access_match(const AccessRule *rules, size_t n_rules, const AccessRequest *req);

/*
 * Parses "all", an IPv4 or IPv6 address (a single host: /32 or /128) or a CIDR block. Returns
 * NULL on success, otherwise what is wrong (a static string). Host bits set beyond the prefix are
 * an error (a typo more often than not).
 */
const char *access_parse_address(const char *text, AccessAddress *out);
/* "10.0.0.0/8", "::1/128" or "all" into buf. */
void access_format_address(const AccessAddress *a, char *buf, size_t len);

const char *access_type_name(AccessType type);
const char *access_method_name(AccessMethod method);

/* Frees what a rule owns (its name lists), not the rule itself. */
void access_rule_free(AccessRule *rule);

#endif
