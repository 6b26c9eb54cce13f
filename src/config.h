/*
 * config — proxy.yaml loaded with libyaml into an immutable, refcounted Config.
 *
 * Owns: the key table (ConfigSchema: every key's YAML path, type, default, bounds or allowed
 * values, whether a reload applies it or it needs a restart, whether a change invalidates cached
 * results, a one-line description, and the Config field it fills), the loader that the table
 * drives, error reporting as "file:line:column: message", duration/size parsing, and lookups by
 * name. Knows nothing of sockets, pools or the event loop: the runtime swaps Config pointers on
 * reload (config_keys compares two of them by the table).
 */
#ifndef PGRELAY_CONFIG_H
#define PGRELAY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "access.h"

typedef enum {
	CONFIG_AUTH_SCRAM_SHA_256 = 0, /* default */
	CONFIG_AUTH_MD5,
	CONFIG_AUTH_PASSWORD, /* cleartext password over the wire */
} ConfigAuthMethod;

typedef enum {
	CONFIG_POOL_SESSION = 0,
	CONFIG_POOL_TRANSACTION,
} ConfigPoolMode;

typedef enum {
	CONFIG_LOG_DEBUG = 0,
	CONFIG_LOG_INFO,
	CONFIG_LOG_WARNING,
	CONFIG_LOG_ERROR,
} ConfigLogLevel;

typedef enum {
	CONFIG_TLS_DISABLE = 0,
	CONFIG_TLS_ALLOW,       /* listen: accept TLS when the client asks */
	CONFIG_TLS_PREFER,      /* listen: same as allow; services: TLS if the server offers it */
	CONFIG_TLS_REQUIRE,     /* TLS or nothing; no certificate check towards servers */
	CONFIG_TLS_VERIFY_FULL, /* services: TLS, server certificate checked against ca and host */
} ConfigTlsMode;

typedef struct ConfigTls {
	ConfigTlsMode mode;
	char *cert; /* listen: certificate chain (PEM), required unless disabled */
	char *key;  /* listen: private key (PEM) */
	char *ca;   /* listen: CA for client certificates (then required); services: CA for verify-full */
	/* services only (require_auth): true = the server must prove it knows the password with
	 * SCRAM-SHA-256 (its signature checked) before pgrelay accepts its AuthenticationOk; a server
	 * that asks for md5 or cleartext, or for nothing, is refused. Default false (any). */
	bool require_scram;
} ConfigTls;

typedef struct ConfigUser {
	char *name;
	/* Plain secret, "md5" + 32 hex digits, or "SCRAM-SHA-256$<iter>:<salt>$<stored>:<server>". */
	char *password;
	ConfigAuthMethod auth;
} ConfigUser;

typedef struct ConfigPool {
	int max;                      /* 1..100000, default 20 */
	int min;                      /* 0..max, default 0 */
	int64_t idle_timeout_ms;      /* default 600s; 0 = never */
	int64_t connect_timeout_ms;   /* default 5s; > 0 */
	int64_t statement_timeout_ms; /* default 0 = not sent to the server */
	int64_t query_wait_timeout_ms;/* default 120s; 0 = wait forever */
	int64_t server_lifetime_ms;   /* default 3600s; 0 = unlimited */
} ConfigPool;

typedef struct ConfigBackend {
	char *host;     /* required */
	int port;       /* default 5432, 1..65535 */
	char *dbname;   /* default: the service name */
	char *user;     /* NULL: log in as the client's user (its password must then be plain) */
	char *password; /* NULL allowed (trust) */
} ConfigBackend;

typedef enum {
	CONFIG_READS_INHERIT = 0, /* routes only: the service's setting */
	CONFIG_READS_PRIMARY,
	CONFIG_READS_REPLICAS,
} ConfigReads;

typedef enum {
	CONFIG_BALANCE_ROUND_ROBIN = 0,
	CONFIG_BALANCE_LEAST_OUTSTANDING,
} ConfigBalance;

typedef struct ConfigService {
	char *name;
	ConfigBackend primary;
	/* Streaming replicas; dbname, user and password default to the primary's. */
	ConfigBackend *replicas;
	size_t n_replicas;
	ConfigReads reads;        /* default primary; replicas: read-only statements may use them */
	ConfigBalance balance;    /* how reads are spread over healthy replicas; default round-robin */
	/* User functions declared read-only or writing (name or schema.name, as written). */
	char **read_only_functions;
	size_t n_read_only_functions;
	char **writing_functions;
	size_t n_writing_functions;
	ConfigPool pool;
	ConfigTls tls; /* towards the servers: default prefer */
} ConfigService;

/*
 * One routing rule: a statement's relation matches when its schema matches one of schemas (glob)
 * or, with tables, when its name (or schema.name) matches one of tables (glob). First match wins.
 */
typedef struct ConfigRoute {
	char **schemas;
	size_t n_schemas;
	char **tables;
	size_t n_tables;
	char *service_name;
	const struct ConfigService *service;
	ConfigReads reads; /* default: inherit the service's */
	int line;          /* 1-based line in the file, for `pgrelay route` and logs */
} ConfigRoute;

typedef struct ConfigHealth {
	int64_t interval_ms;  /* default 1s */
	int64_t timeout_ms;   /* default 2s: a probe slower than this fails */
	int fail_after;       /* default 3 failures in a row mark a backend down */
	int recover_after;    /* default 2 successes in a row mark it up again */
	int64_t max_lag_bytes;/* default 16MB; 0 = no byte limit */
	int64_t max_lag_ms;   /* default 0 = no time limit */
} ConfigHealth;

/*
 * One cache rule: a SELECT's relation is covered when the rule's schema and table globs match it
 * (the same matching as routes). First match wins; ttl 0 means "never cache these tables".
 */
typedef struct ConfigCacheRule {
	char **schemas;
	size_t n_schemas;
	char **tables;
	size_t n_tables;
	int64_t ttl_ms; /* default cache.ttl */
	/* A column that identifies rows of every table the rule covers (an integer, uuid or text
	 * primary key, most often): reads and writes that say `key = value` are invalidated by row
	 * instead of by table. NULL: by table. */
	char *key;
	int line;
} ConfigCacheRule;

/* Writes to `table` (glob, as in rules) also invalidate `also` (triggers, cascades, views). */
typedef struct ConfigCacheDependency {
	char *table;
	char **also;
	size_t n_also;
	int line;
} ConfigCacheDependency;

#define CONFIG_SIGNING_KEY_MIN 32   /* bytes of cache.redis.signing_key, at least (HMAC-SHA256's size) */
#define CONFIG_SIGNING_KEY_MAX 1024

typedef struct ConfigCache {
	bool enabled;            /* a cache section with rules is present */
	size_t l1_max_memory;    /* default 256MB; 0 = no L1 */
	size_t max_result;       /* default 1MB: larger results are not stored */
	int64_t default_ttl_ms;  /* default 60s */
	/* each service's catalog is loaded again this long after the last load (DDL made around
	 * pgrelay is seen then); default 60s; 0: only at start, after DDL through pgrelay and after
	 * failures */
	int64_t catalog_refresh_ms;
	char **redis_nodes;      /* "host:port"; none = no L2 */
	size_t n_redis_nodes;
	bool redis_cluster;      /* default false */
	int64_t redis_timeout_ms;/* default 20ms */
	char *redis_user;        /* ACL user for AUTH; NULL: AUTH with the password only */
	char *redis_password;    /* NULL: no AUTH */
	/* cache.redis.signing_key (or signing_key_file's contents): the HMAC-SHA256 key of the entries
	 * kept in Redis; NULL: no entries in Redis (it still carries the shared versions) */
	char *redis_signing_key;
	size_t redis_signing_key_len;
	char *redis_prefix;      /* key prefix, default "pgrelay" */
	int l1_policy;           /* cache.l1.policy: 0 = s3fifo, the only one */
	ConfigCacheRule *rules;
	size_t n_rules;
	ConfigCacheDependency *dependencies;
	size_t n_dependencies;
	char *wal_service_name;  /* NULL: no WAL listener */
	const struct ConfigService *wal_service;
	char *wal_slot;          /* default "pgrelay_cache" */
	char *wal_user;          /* a role with REPLICATION; default the service primary's user */
	char *wal_password;
} ConfigCache;

typedef struct ConfigDatabase {
	char *name;                   /* the name clients put in their connection string */
	char *service_name;
	const struct ConfigService *service; /* resolved; never NULL in a loaded Config */
	ConfigPoolMode pool_mode;     /* default transaction */
} ConfigDatabase;

typedef struct Config {
	int refcount;
	char *path;
	/* Problems that do not stop the load, as "file:line:column: what" lines, for the log at start
	 * and at each reload: the file readable by group or others while it holds secrets inline, a
	 * password_file readable by group or others. */
	char **warnings;
	size_t n_warnings;

	struct {
		char *host;          /* default 127.0.0.1 */
		int port;            /* default 6432 */
		int max_client_conn; /* default 10000, 1..1000000 */
		int backlog;         /* default 1024 */
		ConfigTls tls;       /* towards clients: default disable */
		/* Control socket for hand-over to a new pgrelay; NULL: /tmp/.s.pgrelay.<port>.upgrade,
		 * "": no hand-over. */
		char *upgrade_socket;
	} listen;

	struct {
		ConfigLogLevel level;    /* default info */
		bool json;               /* format: json (default text) */
		int64_t slow_query_ms;   /* statements slower than this are logged; 0 = off (default) */
		int64_t stats_period_ms; /* a stats line every period; default 60s, 0 = off */
	} log;

	/* The admin console (virtual database "pgrelay", alias "pgbouncer") and the HTTP endpoint. */
	struct {
		char **users;        /* every console command */
		size_t n_users;
		char **stats_users;  /* SHOW only */
		size_t n_stats_users;
		char *http_host;     /* NULL: no HTTP endpoint */
		int http_port;
		bool histograms;     /* latency histograms on the hot path; default true */
	} admin;

	/* Keys of the top-level "proxy" section. */
	int64_t shutdown_timeout_ms; /* default 30s */
	size_t buffer_size;          /* per-connection read buffer; default 64kB, 4kB..16MB */
	size_t max_message_size;     /* largest message pgrelay holds whole; default 64MB */
	char *server_reset_query;    /* default "DISCARD ALL"; "" = none */
	char *application_name;      /* sent to servers at startup; default "pgrelay" */
	/* Named prepared statements kept per server connection in transaction pooling (LRU);
	 * default 200; 0 turns statement tracking off (drivers then need unnamed statements). */
	int max_prepared_statements;
	/* Bytes of named prepared statements (text and parameter types) one client may hold; a Parse
	 * or PREPARE beyond gets 54000. Default 64MB, 64kB..64GB. */
	size_t max_client_prepared_memory;
	/* Cleartext passwords (auth: password, or a server asking for one) over a connection that is
	 * neither TLS nor a Unix socket are refused unless this is true. Default false. */
	bool allow_cleartext_without_tls;

	ConfigUser *users;
	size_t n_users;
	ConfigDatabase *databases;
	size_t n_databases;
	ConfigService *services;
	size_t n_services;
	ConfigRoute *routes;
	size_t n_routes;
	ConfigHealth health;
	ConfigCache cache;

	/* Client access rules (the `access` section, access.h), first match wins. access_enabled:
	 * the section is present, so a connection no rule matches is refused; absent: every
	 * connection may log in with its user's auth. */
	AccessRule *access;
	size_t n_access;
	bool access_enabled;
} Config;

/* ---- the key table ---- */

typedef enum {
	CONFIG_KEY_BOOL = 0,
	CONFIG_KEY_INT,      /* int field, min..max */
	CONFIG_KEY_SIZE,     /* size_t field, bytes, min..max */
	CONFIG_KEY_DURATION, /* int64_t field, milliseconds, min..max */
	CONFIG_KEY_STRING,   /* char * field */
	CONFIG_KEY_SECRET,   /* char * field; also KEY_file and KEY_env (one of the three) */
	CONFIG_KEY_ENUM,     /* int, enum or bool field: the index in names */
	CONFIG_KEY_LIST,     /* char ** field (offset) and its size_t count (offset2): a name or a list */
	CONFIG_KEY_LAG,      /* health.max_lag: a size (int64_t at offset) or a duration (int64_t at offset2) */
	CONFIG_KEY_CUSTOM,   /* parsed by the section's check, shown by format */
	CONFIG_KEY_SECTION,  /* a mapping of the keys of sub (their offsets are from offset) */
	CONFIG_KEY_ITEMS,    /* a sequence of mappings: array of sub->item_size at offset, count at offset2 */
	CONFIG_KEY_NAMED,    /* a mapping name -> mapping of sub's keys: array and count as ITEMS */
} ConfigKeyType;

enum {
	CONFIG_KEY_RELOAD = 1 << 0,   /* a reload applies a change */
	CONFIG_KEY_RESTART = 1 << 1,  /* a reload logs that it needs a restart and keeps the running value */
	CONFIG_KEY_CACHE = 1 << 2,    /* a change drops cached results: its service's, or every service's */
	CONFIG_KEY_REQUIRED = 1 << 3, /* absent: "X is required" */
	CONFIG_KEY_NULLABLE = 1 << 4, /* null: NULL */
	CONFIG_KEY_NULL_EMPTY = 1 << 5, /* null: "" */
	CONFIG_KEY_NONEMPTY = 1 << 6, /* "" is an error */
	CONFIG_KEY_NO_ENV = 1 << 7,   /* secret: KEY and KEY_file only */
	CONFIG_KEY_BY_CHECK = 1 << 8, /* read by the section's check (the default too), not by the table walk */
	CONFIG_KEY_LATE = 1 << 9,     /* loaded after the other keys of its section (it names them) */
};

typedef struct ConfigSchema ConfigSchema;
struct ConfigLoader;
struct yaml_node_s;

typedef struct ConfigKey {
	const char *name;
	ConfigKeyType type;
	unsigned flags;
	size_t offset;  /* of the field, from the start of the section's struct */
	size_t size;    /* of the field */
	size_t offset2; /* LIST, ITEMS, NAMED: the count; LAG: the duration; SECRET: its length (or 0) */
	const char *def; /* the default as written in proxy.yaml; NULL: none (or described in doc) */
	int64_t min, max;         /* INT, SIZE, DURATION */
	const char *const *names; /* ENUM: the values, NULL-terminated */
	const ConfigSchema *sub;  /* SECTION, ITEMS, NAMED */
	/* CUSTOM: the value as text (obj: the section's struct) */
	void (*format)(const void *obj, char *buf, size_t len);
	const char *doc;          /* one line */
} ConfigKey;

struct ConfigSchema {
	const ConfigKey *keys;
	size_t n_keys;
	size_t item_size;     /* ITEMS and NAMED: the struct of one */
	size_t name_offset;   /* NAMED: the char * that receives the name */
	const char *name_what; /* NAMED: "service" for "service names must not be empty" */
	const char *list_what; /* ITEMS: "must be a list of {host, port}" */
	const char *item_what; /* ITEMS: items must be mappings: "{type, ...}" for "X must be a mapping {...}" */
	/* Cross-key checks and the BY_CHECK keys, after the table's keys (obj: the section's struct, node: its
	 * mapping, present and not null). */
	void (*check)(struct ConfigLoader *ld, void *obj, struct yaml_node_s *node, const char *path);
	void (*free_item)(void *item); /* ITEMS: frees what an item owns (default: by its keys) */
};

/* The table: the keys of the top level. */
const ConfigSchema *config_schema(void);

/*
 * Loads and validates FILE. On success returns a Config with refcount 1. On failure returns NULL
 * and writes every problem found (one per line, at most 20) as "file:line:column: message" into
 * err (always NUL-terminated).
 */
Config *config_load(const char *path, char *err, size_t errlen);
/* Same, from a string; name is used in error messages in place of the file name. */
Config *config_load_string(const char *name, const char *yaml, char *err, size_t errlen);

Config *config_ref(Config *cfg);
void config_unref(Config *cfg);

const ConfigUser *config_find_user(const Config *cfg, const char *name);
const ConfigDatabase *config_find_database(const Config *cfg, const char *name);
const ConfigService *config_find_service(const Config *cfg, const char *name);

/* "30s", "500ms", "2m", "1h", "1d", or a bare integer (seconds). Returns false if malformed. */
bool config_parse_duration(const char *text, int64_t *out_ms);
/* "64kB", "16MB", "1GB", "512B" or a bare integer (bytes). Returns false if malformed. */
bool config_parse_size(const char *text, size_t *out_bytes);

const char *config_pool_mode_name(ConfigPoolMode mode);
const char *config_auth_method_name(ConfigAuthMethod method);
const char *config_log_level_name(ConfigLogLevel level);
const char *config_tls_mode_name(ConfigTlsMode mode);
const char *config_reads_name(ConfigReads reads);
/* A size as proxy.yaml writes it: "64kB", "16MB", "512B", "0". */
void config_format_size(char *buf, size_t len, uint64_t bytes);
/* A duration as proxy.yaml writes it: "500ms", "30s", "1d", "0". */
void config_format_duration(char *buf, size_t len, int64_t ms);
/* "service:primary" / "service:replica N" style label for a backend (index -1: primary). */
const ConfigBackend *config_backend(const ConfigService *svc, int replica_index);

#endif
