/*
 * config.c — proxy.yaml → Config (see config.h for the API and every default).
 *
 * Owns: walking libyaml's document tree against the schema (the key tables below), defaults,
 * range and cross-reference checks, error collection ("file:line:column: message", sorted by
 * position, at most MAX_REPORTED_ERRORS), duration/size parsing, lookups, and freeing a Config
 * when its last reference is dropped. Error messages never quote a password.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#define MAX_REPORTED_ERRORS 20
#define MAX_KEPT_ERRORS 1000 /* bounds memory on pathological files; only 20 are shown */
#define PATH_LEN 256
#define MSG_LEN 512

#define MS_PER_DAY INT64_C(86400000)
#define MAX_DURATION_MS (365 * MS_PER_DAY)
/* PostgreSQL's statement_timeout is an int of milliseconds. */
#define MAX_STATEMENT_TIMEOUT_MS (24 * MS_PER_DAY)

#define KB ((size_t)1024)
#define MB (KB * 1024)
#define GB (MB * 1024)

/* ---- schema ---- */

static const char *const top_keys[] = {"listen",    "log",      "proxy", "users", "routes", "health",
				       "databases", "services", "cache", "admin", "access", NULL};
static const char *const cache_keys[] = {"l1",         "redis",       "ttl",           "rules",
					 "invalidate", "wal_listener", "catalog_refresh", NULL};
static const char *const cache_l1_keys[] = {"max_memory", "policy", "max_result", NULL};
static const char *const cache_policy_names[] = {"s3fifo", NULL};
static const char *const cache_redis_keys[] = {"nodes",  "cluster",     "timeout",          "user", "password",
						"password_file", "password_env",
						"prefix", "signing_key", "signing_key_file", NULL};
static const char *const cache_rule_keys[] = {"schema", "tables", "ttl", "key", NULL};
static const char *const cache_dependency_keys[] = {"table", "also", NULL};
static const char *const cache_wal_keys[] = {"service", "slot", "user", "password", "password_file", "password_env",
					     NULL};
static const char *const listen_keys[] = {"host", "port", "max_client_conn", "backlog", "tls", "upgrade_socket", NULL};
static const char *const listen_tls_keys[] = {"mode", "cert", "key", "ca", NULL};
static const char *const service_tls_keys[] = {"mode", "ca", "require_auth", NULL};
static const char *const require_auth_names[] = {"any", "scram-sha-256", NULL};
static const char *const tls_mode_names[] = {"disable", "allow", "prefer", "require", "verify-full", NULL};
static const char *const log_keys[] = {"level", "format", "slow_query", "stats_period", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const admin_keys[] = {"users", "stats_users", "http", "histograms", NULL};
static const char *const admin_http_keys[] = {"host", "port", NULL};
static const char *const proxy_keys[] = {"shutdown_timeout", "buffer_size", "max_message_size",
					 "server_reset_query", "application_name",
					 "max_prepared_statements", "max_client_prepared_memory",
					 "allow_cleartext_without_tls", NULL};
static const char *const user_keys[] = {"name", "password", "password_file", "password_env", "auth", NULL};
static const char *const database_keys[] = {"service", "pool_mode", NULL};
static const char *const service_keys[] = {"primary", "replicas", "reads", "balance", "functions", "pool", "tls", NULL};
static const char *const functions_keys[] = {"read_only", "writes", NULL};
static const char *const route_keys[] = {"schema", "tables", "service", "reads", NULL};
static const char *const health_keys[] = {"interval", "timeout", "fail_after", "recover_after", "max_lag", NULL};
static const char *const reads_names[] = {"inherit", "primary", "replicas", NULL};
static const char *const balance_names[] = {"round-robin", "least-outstanding", NULL};
static const char *const backend_keys[] = {"host", "port", "dbname", "user", "password", "password_file",
					   "password_env", NULL};
static const char *const access_keys[] = {"type", "database", "user", "address", "method", NULL};
/* Indexed by AccessType and AccessMethod (access.h). */
static const char *const access_type_names[] = {"host", "hostssl", "hostnossl", NULL};
static const char *const access_method_names[] = {"scram-sha-256", "md5", "password", "reject", NULL};
static const char *const pool_keys[] = {"max", "min", "idle_timeout", "connect_timeout",
					"statement_timeout", "query_wait_timeout", "server_lifetime",
					NULL};

/* Indexed by the enums in config.h. */
static const char *const log_level_names[] = {"debug", "info", "warning", "error", NULL};
static const char *const auth_names[] = {"scram-sha-256", "md5", "password", NULL};
static const char *const pool_mode_names[] = {"session", "transaction", NULL};

#define SCRAM_PREFIX "SCRAM-SHA-256$"

/* ---- error collection ---- */

typedef struct {
	int line, column; /* 1-based */
	size_t seq;       /* order of discovery, to keep the sort stable */
	char *msg;
} LoadError;

typedef struct {
	const char *name; /* file name used in messages */
	Config *cfg;      /* being loaded (for warnings) */
	yaml_document_t *doc;
	yaml_mark_t first_inline_secret; /* of a secret written in the file itself */
	char first_inline_secret_path[PATH_LEN];
	bool has_inline_secret;
	LoadError *errors;
	size_t n_errors, cap_errors;
	size_t seq;
	bool oom;
} Loader;

__attribute__((format(printf, 3, 0))) static void add_error_v(Loader *ld, yaml_mark_t mark,
								const char *fmt, va_list ap)
{
	char msg[MSG_LEN];

	vsnprintf(msg, sizeof msg, fmt, ap);
	/* Keep one error per line even when a quoted key or value holds control characters. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (ld->n_errors >= MAX_KEPT_ERRORS) {
		ld->seq++;
		return;
	}
	if (ld->n_errors == ld->cap_errors) {
		size_t cap = ld->cap_errors ? ld->cap_errors * 2 : 16;
		LoadError *e = realloc(ld->errors, cap * sizeof *e);
		if (!e) {
			ld->oom = true;
			return;
		}
		ld->errors = e;
		ld->cap_errors = cap;
	}
	char *copy = strdup(msg);
	if (!copy) {
		ld->oom = true;
		return;
	}
	ld->errors[ld->n_errors++] = (LoadError){
		.line = (int)mark.line + 1,
		.column = (int)mark.column + 1,
		.seq = ld->seq++,
		.msg = copy,
	};
}

__attribute__((format(printf, 3, 4))) static void error_mark(Loader *ld, yaml_mark_t mark,
							      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	add_error_v(ld, mark, fmt, ap);
	va_end(ap);
}

/* node may be NULL (an empty document): the error is then reported at 1:1. */
__attribute__((format(printf, 3, 4))) static void error_at(Loader *ld, const yaml_node_t *node,
							    const char *fmt, ...)
{
	yaml_mark_t mark = {0, 0, 0};
	va_list ap;

	if (node)
		mark = node->start_mark;
	va_start(ap, fmt);
	add_error_v(ld, mark, fmt, ap);
	va_end(ap);
}

static bool loader_failed(const Loader *ld)
{
	return ld->n_errors > 0 || ld->oom;
}

static int compare_errors(const void *a, const void *b)
{
	const LoadError *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->column != y->column)
		return x->column < y->column ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Writes the collected errors, sorted by position, one per line, into err. */
static void write_errors(Loader *ld, char *err, size_t errlen)
{
	size_t used = 0, shown = 0;

	if (!err || errlen == 0)
		return;
	err[0] = '\0';
	qsort(ld->errors, ld->n_errors, sizeof *ld->errors, compare_errors);
	for (size_t i = 0; i < ld->n_errors + (ld->oom ? 1 : 0) && shown < MAX_REPORTED_ERRORS; i++) {
		int n;
		if (i < ld->n_errors)
			n = snprintf(err + used, errlen - used, "%s%s:%d:%d: %s", shown ? "\n" : "",
				     ld->name, ld->errors[i].line, ld->errors[i].column, ld->errors[i].msg);
		else
			n = snprintf(err + used, errlen - used, "%s%s: out of memory", shown ? "\n" : "",
				     ld->name);
		shown++;
		if (n < 0 || (size_t)n >= errlen - used)
			return; /* truncated; snprintf has NUL-terminated it */
		used += (size_t)n;
	}
}

static void loader_free(Loader *ld)
{
	for (size_t i = 0; i < ld->n_errors; i++)
		free(ld->errors[i].msg);
	free(ld->errors);
}

/* ---- node helpers ---- */

static yaml_node_t *node_get(Loader *ld, int index)
{
	return yaml_document_get_node(ld->doc, index);
}

static const char *scalar_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A plain scalar YAML reads as null: "", "~", "null". */
static bool is_null(const yaml_node_t *n)
{
	if (!n || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = scalar_text(n);
	return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

/* "a mapping", "a sequence", "null" or the quoted scalar (shortened), for "got ..." messages. */
static const char *describe(const yaml_node_t *n, char *buf, size_t len)
{
	if (!n || is_null(n))
		return "nothing (null)";
	if (n->type == YAML_MAPPING_NODE)
		return "a mapping";
	if (n->type == YAML_SEQUENCE_NODE)
		return "a sequence";
	const char *s = scalar_text(n);
	if (n->data.scalar.length > 64)
		snprintf(buf, len, "\"%.60s...\"", s);
	else
		snprintf(buf, len, "\"%s\"", s);
	return buf;
}

/* "path.key" (or "key" at the top level) into buf; an overlong path is cut short with "...". */
static void join_path(char *buf, size_t len, const char *path, const char *key)
{
	int n = snprintf(buf, len, "%s%s%s", path, path[0] ? "." : "", key);
	if (n < 0 || (size_t)n >= len)
		memcpy(buf + len - 4, "...", 4);
}

static void append_list(char *buf, size_t len, const char *const *names)
{
	size_t used = strlen(buf);
	for (size_t i = 0; names[i] && used < len; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
		if (n < 0)
			return;
		used += (size_t)n;
	}
}

static bool in_list(const char *s, const char *const *names)
{
	for (size_t i = 0; names[i]; i++)
		if (!strcmp(s, names[i]))
			return true;
	return false;
}

/*
 * Checks that node is a mapping whose keys are distinct scalars and, if allowed is given, all
 * in allowed. A null node counts as an empty mapping. Returns false (after reporting) if the node
 * is something else; key problems are reported but do not make it return false.
 */
static bool check_mapping(Loader *ld, yaml_node_t *node, const char *path,
			  const char *const *allowed)
{
	char got[96];
	const char *where = path[0] ? path : "the top level";

	if (!node || is_null(node))
		return true;
	if (node->type != YAML_MAPPING_NODE) {
		if (path[0])
			error_at(ld, node, "%s must be a mapping, got %s", path,
				 describe(node, got, sizeof got));
		else
			error_at(ld, node, "the top level must be a mapping, got %s",
				 describe(node, got, sizeof got));
		return false;
	}
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *key = node_get(ld, p->key);
		if (key->type != YAML_SCALAR_NODE) {
			error_at(ld, key, "keys in %s must be strings, got %s", where,
				 describe(key, got, sizeof got));
			continue;
		}
		const char *k = scalar_text(key);
		bool dup = false;
		for (yaml_node_pair_t *q = node->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *other = node_get(ld, q->key);
			if (other->type == YAML_SCALAR_NODE && !strcmp(scalar_text(other), k)) {
				error_at(ld, key, "duplicate key \"%s\" in %s (first defined at line %d)", k,
					 where, (int)other->start_mark.line + 1);
				dup = true;
				break;
			}
		}
		if (dup || !allowed || in_list(k, allowed))
			continue;
		char expected[MSG_LEN / 2] = "";
		append_list(expected, sizeof expected, allowed);
		if (path[0])
			error_at(ld, key, "unknown key \"%s\" in %s (expected one of: %s)", k, path,
				 expected);
		else
			error_at(ld, key, "unknown key \"%s\" at the top level (expected one of: %s)", k,
				 expected);
	}
	return true;
}

static size_t mapping_size(const yaml_node_t *node)
{
	if (!node || node->type != YAML_MAPPING_NODE)
		return 0;
	return (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
}

/* The value of key in map (the first one if duplicated), or NULL. map may be NULL or null. */
static yaml_node_t *map_get(Loader *ld, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_get(ld, p->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(scalar_text(k), key))
			return node_get(ld, p->value);
	}
	return NULL;
}

static char *dup_string(Loader *ld, const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		ld->oom = true;
	return copy;
}

/* ---- typed values ---- */

enum {
	STR_REQUIRED = 1 << 0,   /* absent → "X is required" (reported at the mapping) */
	STR_NULLABLE = 1 << 1,   /* null → NULL */
	STR_NULL_EMPTY = 1 << 2, /* null → "" */
	STR_NONEMPTY = 1 << 3,   /* "" is an error */
};

/*
 * Reads string key of map into *out (replacing, and freeing, its default). Returns false if an
 * error was reported. *value_node (if given) receives the value node, or NULL if absent.
 */
static bool get_string(Loader *ld, yaml_node_t *map, const char *path, const char *key, int flags,
		       char **out, yaml_node_t **value_node)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, map, key);

	if (value_node)
		*value_node = v;
	join_path(full, sizeof full, path, key);
	if (!v) {
		if (flags & STR_REQUIRED) {
			error_at(ld, map, "%s is required", full);
			return false;
		}
		return true;
	}
	const char *text;
	if (is_null(v) && (flags & STR_NULLABLE)) {
		free(*out);
		*out = NULL;
		return true;
	} else if (is_null(v) && (flags & STR_NULL_EMPTY)) {
		text = "";
	} else if (is_null(v)) {
		error_at(ld, v, "%s must not be empty", full);
		return false;
	} else if (v->type != YAML_SCALAR_NODE) {
		error_at(ld, v, "%s must be a string, got %s", full, describe(v, got, sizeof got));
		return false;
	} else {
		text = scalar_text(v);
		if (v->data.scalar.length != strlen(text)) {
			error_at(ld, v, "%s must not contain NUL characters", full);
			return false;
		}
		if ((flags & STR_NONEMPTY) && !text[0]) {
			error_at(ld, v, "%s must not be empty", full);
			return false;
		}
	}
	char *copy = dup_string(ld, text);
	if (!copy)
		return false;
	free(*out);
	*out = copy;
	return true;
}

/* Strict decimal integer: optional '-', digits, no leading zeros, no "+", "0x", "1.0", "1e3". */
static bool parse_int(const char *s, long long *out)
{
	const char *p = s;
	bool neg = false;
	long long v = 0;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (*p < '0' || *p > '9')
		return false;
	if (*p == '0' && p[1] != '\0')
		return false;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		int d = *p - '0';
		if (v > (LLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = neg ? -v : v;
	return true;
}

static bool get_int(Loader *ld, yaml_node_t *map, const char *path, const char *key, int lo, int hi,
		    int *out, yaml_node_t **value_node)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, map, key);
	long long n;

	if (value_node)
		*value_node = v;
	if (!v)
		return true;
	join_path(full, sizeof full, path, key);
	if (v->type == YAML_SCALAR_NODE && v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		error_at(ld, v, "%s must be an integer between %d and %d, got the quoted string %s "
			 "(write numbers without quotes)",
			 full, lo, hi, describe(v, got, sizeof got));
		return false;
	}
	if (v->type != YAML_SCALAR_NODE || is_null(v) || !parse_int(scalar_text(v), &n) || n < lo ||
	    n > hi) {
		error_at(ld, v, "%s must be an integer between %d and %d, got %s", full, lo, hi,
			 describe(v, got, sizeof got));
		return false;
	}
	*out = (int)n;
	return true;
}

static bool get_enum(Loader *ld, yaml_node_t *map, const char *path, const char *key,
		     const char *const *names, int *out)
{
	char full[PATH_LEN], got[96], expected[MSG_LEN / 2] = "";
	yaml_node_t *v = map_get(ld, map, key);

	if (!v)
		return true;
	join_path(full, sizeof full, path, key);
	if (v->type == YAML_SCALAR_NODE && !is_null(v)) {
		for (int i = 0; names[i]; i++) {
			if (!strcmp(scalar_text(v), names[i])) {
				*out = i;
				return true;
			}
		}
	}
	append_list(expected, sizeof expected, names);
	error_at(ld, v, "%s must be one of: %s; got %s", full, expected, describe(v, got, sizeof got));
	return false;
}

static bool get_bool(Loader *ld, yaml_node_t *map, const char *path, const char *key, bool *out)
{
	static const char *const names[] = {"false", "true", "no", "yes", "off", "on", NULL};
	int i = -1;
	if (!map_get(ld, map, key))
		return true;
	if (!get_enum(ld, map, path, key, names, &i))
		return false;
	*out = (i % 2) == 1;
	return true;
}

/*
 * A scalar or a sequence of non-empty scalars into a malloc'd array of strings. Returns false if
 * an error was reported.
 */
static bool get_string_list(Loader *ld, yaml_node_t *map, const char *path, const char *key, char ***out,
			    size_t *n_out, yaml_node_t **value_node)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, map, key);
	if (value_node)
		*value_node = v;
	if (!v)
		return true;
	join_path(full, sizeof full, path, key);
	yaml_node_item_t *start = NULL, *top = NULL;
	if (v->type == YAML_SEQUENCE_NODE) {
		start = v->data.sequence.items.start;
		top = v->data.sequence.items.top;
	} else if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		error_at(ld, v, "%s must be a string or a list of strings, got %s", full, describe(v, got, sizeof got));
		return false;
	}
	size_t n = start ? (size_t)(top - start) : 1;
	char **list = calloc(n ? n : 1, sizeof *list);
	if (!list) {
		ld->oom = true;
		return false;
	}
	size_t k = 0;
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = start ? node_get(ld, start[i]) : v;
		if (item->type != YAML_SCALAR_NODE || is_null(item) || !scalar_text(item)[0]) {
			error_at(ld, item, "%s must contain non-empty strings, got %s", full, describe(item, got, sizeof got));
			ok = false;
			continue;
		}
		if (!(list[k] = dup_string(ld, scalar_text(item))))
			break;
		k++;
	}
	*out = list;
	*n_out = k;
	return ok;
}

/* path.tls: { mode, cert, key, ca } for listen (server role) or a service (client role). */
static void load_tls(Loader *ld, ConfigTls *tls, yaml_node_t *node, const char *path, bool listen)
{
	char sub[PATH_LEN];
	join_path(sub, sizeof sub, path, "tls");
	if (!node)
		return;
	if (!check_mapping(ld, node, sub, listen ? listen_tls_keys : service_tls_keys))
		return;
	yaml_node_t *mode_node = map_get(ld, node, "mode");
	int mode = (int)tls->mode;
	if (!get_enum(ld, node, sub, "mode", tls_mode_names, &mode))
		return;
	tls->mode = (ConfigTlsMode)mode;
	if (listen) {
		if (tls->mode == CONFIG_TLS_VERIFY_FULL) {
			error_at(ld, mode_node, "%s.mode verify-full applies to services; for clients use require "
				 "with ca to demand client certificates", sub);
			return;
		}
		get_string(ld, node, sub, "cert", STR_NULLABLE | STR_NONEMPTY, &tls->cert, NULL);
		get_string(ld, node, sub, "key", STR_NULLABLE | STR_NONEMPTY, &tls->key, NULL);
		if (tls->mode != CONFIG_TLS_DISABLE && (!tls->cert || !tls->key))
			error_at(ld, node, "%s needs cert and key when mode is %s", sub, tls_mode_names[tls->mode]);
	} else if (tls->mode == CONFIG_TLS_ALLOW) {
		error_at(ld, mode_node, "%s.mode must be one of: disable, prefer, require, verify-full; got \"allow\"", sub);
		return;
	}
	get_string(ld, node, sub, "ca", STR_NULLABLE | STR_NONEMPTY, &tls->ca, NULL);
	if (!listen) {
		int require = tls->require_scram ? 1 : 0;
		if (get_enum(ld, node, sub, "require_auth", require_auth_names, &require))
			tls->require_scram = require == 1;
	}
	if (!listen && tls->mode == CONFIG_TLS_VERIFY_FULL && !tls->ca)
		error_at(ld, node, "%s.mode verify-full needs ca (the CA file that signed the server certificates)", sub);
}

static void format_duration(char *buf, size_t len, int64_t ms)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % MS_PER_DAY == 0)
		snprintf(buf, len, "%lldd", (long long)(ms / MS_PER_DAY));
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llds", (long long)(ms / 1000));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
}

static bool get_duration(Loader *ld, yaml_node_t *map, const char *path, const char *key,
			 int64_t lo, int64_t hi, int64_t *out)
{
	char full[PATH_LEN], got[96], los[32], his[32];
	yaml_node_t *v = map_get(ld, map, key);
	int64_t ms;

	if (!v)
		return true;
	join_path(full, sizeof full, path, key);
	if (v->type != YAML_SCALAR_NODE || is_null(v) || !config_parse_duration(scalar_text(v), &ms) ||
	    ms < lo || ms > hi) {
		format_duration(los, sizeof los, lo);
		format_duration(his, sizeof his, hi);
		error_at(ld, v,
			 "%s must be a duration between %s and %s (such as 500ms, 30s, 2m, 1h or 1d; "
			 "a bare number is seconds), got %s",
			 full, los, his, describe(v, got, sizeof got));
		return false;
	}
	*out = ms;
	return true;
}

static bool get_size(Loader *ld, yaml_node_t *map, const char *path, const char *key, size_t lo,
		     size_t hi, const char *range_text, size_t *out, yaml_node_t **value_node)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, map, key);
	size_t n;

	if (value_node)
		*value_node = v;
	if (!v)
		return true;
	join_path(full, sizeof full, path, key);
	if (v->type != YAML_SCALAR_NODE || is_null(v) || !config_parse_size(scalar_text(v), &n) ||
	    n < lo || n > hi) {
		error_at(ld, v,
			 "%s must be a size between %s (such as 512B, 64kB, 16MB or 1GB; a bare "
			 "number is bytes), got %s",
			 full, range_text, describe(v, got, sizeof got));
		return false;
	}
	*out = n;
	return true;
}

/* ---- secrets: inline, from a file, from the environment ---- */

#define SECRET_FILE_MAX 65536

__attribute__((format(printf, 3, 4))) static void add_warning(Loader *ld, yaml_mark_t mark, const char *fmt, ...)
{
	char msg[MSG_LEN], line[MSG_LEN + PATH_LEN + 32];
	va_list ap;
	if (!ld->cfg)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(line, sizeof line, "%s:%d:%d: %s", ld->name, (int)mark.line + 1, (int)mark.column + 1, msg);
	char **grown = realloc(ld->cfg->warnings, (ld->cfg->n_warnings + 1) * sizeof *grown);
	char *copy = strdup(line);
	if (!grown || !copy) {
		free(copy);
		if (grown)
			ld->cfg->warnings = grown;
		ld->oom = true;
		return;
	}
	ld->cfg->warnings = grown;
	ld->cfg->warnings[ld->cfg->n_warnings++] = copy;
}

/* The first line of file path (one final "\n" or "\r\n" dropped), malloc'd; NULL with an error. */
static char *read_secret_file(Loader *ld, yaml_node_t *node, const char *full, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		error_at(ld, node, "%s: cannot open \"%s\": %s", full, path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		error_at(ld, node, "%s: \"%s\" is not a regular file", full, path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRGRP | S_IROTH))
		add_warning(ld, node->start_mark, "%s: \"%s\" is readable by group or others (mode %04o): chmod 600 it",
			    full, path, (unsigned)(st.st_mode & 07777));
	char *buf = malloc(SECRET_FILE_MAX + 1);
	size_t n = 0;
	bool failed = !buf;
	while (buf && n <= SECRET_FILE_MAX) {
		ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			failed = true;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	char *out = NULL;
	if (!buf)
		ld->oom = true;
	else if (failed)
		error_at(ld, node, "%s: cannot read \"%s\": %s", full, path, strerror(errno));
	else if (n > SECRET_FILE_MAX)
		error_at(ld, node, "%s: \"%s\" is larger than %d bytes", full, path, SECRET_FILE_MAX);
	else {
		if (n && buf[n - 1] == '\n')
			n--;
		if (n && buf[n - 1] == '\r')
			n--;
		if (n == 0)
			error_at(ld, node, "%s: \"%s\" is empty", full, path);
		else if (memchr(buf, '\0', n))
			error_at(ld, node, "%s: \"%s\" holds a NUL byte", full, path);
		else if (memchr(buf, '\n', n))
			error_at(ld, node, "%s: \"%s\" holds more than one line", full, path);
		else if (!(out = malloc(n + 1)))
			ld->oom = true;
		else {
			memcpy(out, buf, n);
			out[n] = 0;
		}
	}
	if (buf) {
		explicit_bzero(buf, SECRET_FILE_MAX + 1);
		free(buf);
	}
	return out;
}

/*
 * A secret given as `key` (in the file), `key_file` (the first line of that file) or `key_env`
 * (that environment variable), at most one of them. flags apply to `key` as in get_string;
 * STR_REQUIRED means one of the three. *value_node receives the node that gave the secret (NULL:
 * none). Returns false if an error was reported. Error messages never quote the secret.
 */
static bool get_secret(Loader *ld, yaml_node_t *map, const char *path, const char *key, int flags, char **out,
		       yaml_node_t **value_node)
{
	char file_key[64], env_key[64], full[PATH_LEN], file_full[PATH_LEN], env_full[PATH_LEN];
	snprintf(file_key, sizeof file_key, "%s_file", key);
	snprintf(env_key, sizeof env_key, "%s_env", key);
	join_path(full, sizeof full, path, key);
	join_path(file_full, sizeof file_full, path, file_key);
	join_path(env_full, sizeof env_full, path, env_key);
	yaml_node_t *inl = map_get(ld, map, key), *file = map_get(ld, map, file_key), *env = map_get(ld, map, env_key);
	if (value_node)
		*value_node = NULL;
	if ((inl != NULL) + (file != NULL) + (env != NULL) > 1) {
		yaml_node_t *second = inl && file ? file : env;
		error_at(ld, second, "%s, %s and %s exclude each other: give one", full, file_key, env_key);
		return false;
	}
	if (!file && !env) {
		int f = flags;
		if (!inl && (flags & STR_REQUIRED)) {
			error_at(ld, map, "%s is required (or %s, or %s)", full, file_key, env_key);
			return false;
		}
		if (!get_string(ld, map, path, key, f, out, value_node))
			return false;
		if (inl && *out && !ld->has_inline_secret) {
			ld->has_inline_secret = true;
			ld->first_inline_secret = inl->start_mark;
			snprintf(ld->first_inline_secret_path, sizeof ld->first_inline_secret_path, "%s", full);
		}
		return true;
	}
	char *where = NULL;
	if (!get_string(ld, map, path, file ? file_key : env_key, STR_NONEMPTY, &where, NULL))
		return false;
	char *secret = NULL;
	if (file) {
		secret = read_secret_file(ld, file, file_full, where);
	} else {
		const char *v = getenv(where);
		if (!v)
			error_at(ld, env, "%s: environment variable \"%s\" is not set", env_full, where);
		else if (!*v)
			error_at(ld, env, "%s: environment variable \"%s\" is empty", env_full, where);
		else
			secret = dup_string(ld, v);
	}
	free(where);
	if (!secret)
		return false;
	if (*out) {
		explicit_bzero(*out, strlen(*out));
		free(*out);
	}
	*out = secret;
	if (value_node)
		*value_node = file ? file : env;
	return true;
}

/* ---- passwords ---- */

static bool is_md5_hash(const char *s)
{
	if (strncmp(s, "md5", 3) != 0 || strlen(s) != 35)
		return false;
	for (const char *p = s + 3; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
			return false;
	return true;
}

static bool is_scram_verifier(const char *s)
{
	return strncmp(s, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0;
}

/* Length of the base64 run at s (padding included), stopping at the first other character. */
static size_t base64_span(const char *s)
{
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=");
}

/* "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", keys 32 bytes (44 base64). */
static bool scram_verifier_well_formed(const char *s)
{
	const char *p = s + strlen(SCRAM_PREFIX);
	size_t n = strspn(p, "0123456789");
	long long iterations;
	char digits[16];

	if (n == 0 || n >= sizeof digits)
		return false;
	memcpy(digits, p, n);
	digits[n] = '\0';
	if (!parse_int(digits, &iterations) || iterations < 1 || iterations > INT_MAX)
		return false;
	p += n;
	if (*p++ != ':' || (n = base64_span(p)) == 0)
		return false;
	p += n;
	if (*p++ != '$' || base64_span(p) != 44)
		return false;
	p += 44;
	if (*p++ != ':' || base64_span(p) != 44)
		return false;
	return p[44] == '\0';
}

static void check_password(Loader *ld, const char *path, const yaml_node_t *node,
			   const char *password, ConfigAuthMethod auth)
{
	bool md5 = is_md5_hash(password), scram = is_scram_verifier(password);

	if (scram && !scram_verifier_well_formed(password)) {
		error_at(ld, node,
			 "%s.password starts with \"" SCRAM_PREFIX "\" but is not a valid verifier "
			 "(expected " SCRAM_PREFIX "<iterations>:<salt>$<StoredKey>:<ServerKey>)",
			 path);
		return;
	}
	switch (auth) {
	case CONFIG_AUTH_SCRAM_SHA_256:
		if (md5)
			error_at(ld, node,
				 "%s.password is an md5 hash, which cannot be used for scram-sha-256 "
				 "authentication (SCRAM needs the plain password or a SCRAM-SHA-256 "
				 "verifier; set auth: md5 to keep the hash)",
				 path);
		break;
	case CONFIG_AUTH_MD5:
		if (scram)
			error_at(ld, node,
				 "%s.password is a SCRAM-SHA-256 verifier, which cannot be used for md5 "
				 "authentication: give the plain password or an md5 hash, or set auth: "
				 "scram-sha-256",
				 path);
		break;
	case CONFIG_AUTH_PASSWORD:
		if (md5 || scram)
			error_at(ld, node,
				 "%s.password is %s, but auth: password needs the plain password",
				 path, md5 ? "an md5 hash" : "a SCRAM-SHA-256 verifier");
		break;
	}
}

/* ---- sections ---- */

static void load_listen(Loader *ld, Config *cfg, yaml_node_t *node)
{
	if (!check_mapping(ld, node, "listen", listen_keys))
		return;
	get_string(ld, node, "listen", "host", STR_NONEMPTY, &cfg->listen.host, NULL);
	get_int(ld, node, "listen", "port", 1, 65535, &cfg->listen.port, NULL);
	get_int(ld, node, "listen", "max_client_conn", 1, 1000000, &cfg->listen.max_client_conn, NULL);
	get_int(ld, node, "listen", "backlog", 1, 65535, &cfg->listen.backlog, NULL);
	load_tls(ld, &cfg->listen.tls, map_get(ld, node, "tls"), "listen", true);
	yaml_node_t *us;
	if (get_string(ld, node, "listen", "upgrade_socket", STR_NULL_EMPTY, &cfg->listen.upgrade_socket, &us) &&
	    cfg->listen.upgrade_socket && strlen(cfg->listen.upgrade_socket) >= 100)
		error_at(ld, us, "listen.upgrade_socket must be shorter than 100 bytes (a Unix socket path)");
}

static void load_log(Loader *ld, Config *cfg, yaml_node_t *node)
{
	int level = (int)cfg->log.level;

	if (!check_mapping(ld, node, "log", log_keys))
		return;
	if (get_enum(ld, node, "log", "level", log_level_names, &level))
		cfg->log.level = (ConfigLogLevel)level;
	int format = cfg->log.json ? 1 : 0;
	if (get_enum(ld, node, "log", "format", log_format_names, &format))
		cfg->log.json = format == 1;
	get_duration(ld, node, "log", "slow_query", 0, MAX_DURATION_MS, &cfg->log.slow_query_ms);
	get_duration(ld, node, "log", "stats_period", 0, MAX_DURATION_MS, &cfg->log.stats_period_ms);
}

static void load_admin(Loader *ld, Config *cfg, yaml_node_t *node)
{
	if (!node || is_null(node) || !check_mapping(ld, node, "admin", admin_keys))
		return;
	get_string_list(ld, node, "admin", "users", &cfg->admin.users, &cfg->admin.n_users, NULL);
	get_string_list(ld, node, "admin", "stats_users", &cfg->admin.stats_users, &cfg->admin.n_stats_users, NULL);
	get_bool(ld, node, "admin", "histograms", &cfg->admin.histograms);
	yaml_node_t *http = map_get(ld, node, "http");
	if (http && !is_null(http) && check_mapping(ld, http, "admin.http", admin_http_keys)) {
		get_string(ld, http, "admin.http", "host", STR_NONEMPTY, &cfg->admin.http_host, NULL);
		if (!cfg->admin.http_host)
			cfg->admin.http_host = dup_string(ld, "127.0.0.1");
		if (!map_get(ld, http, "port"))
			error_at(ld, http, "admin.http.port is required");
		get_int(ld, http, "admin.http", "port", 1, 65535, &cfg->admin.http_port, NULL);
	}
}

static void load_proxy(Loader *ld, Config *cfg, yaml_node_t *node)
{
	yaml_node_t *max_node;

	if (!check_mapping(ld, node, "proxy", proxy_keys))
		return;
	get_duration(ld, node, "proxy", "shutdown_timeout", 0, MAX_DURATION_MS, &cfg->shutdown_timeout_ms);
	bool buf_ok = get_size(ld, node, "proxy", "buffer_size", 4 * KB, 16 * MB, "4kB and 16MB",
			       &cfg->buffer_size, NULL);
	bool max_ok = get_size(ld, node, "proxy", "max_message_size", 4 * KB, GB, "4kB and 1GB",
			       &cfg->max_message_size, &max_node);
	if (buf_ok && max_ok && cfg->max_message_size < cfg->buffer_size)
		error_at(ld, max_node ? max_node : node,
			 "proxy.max_message_size (%zu bytes) must be at least proxy.buffer_size (%zu "
			 "bytes)",
			 cfg->max_message_size, cfg->buffer_size);
	get_string(ld, node, "proxy", "server_reset_query", STR_NULL_EMPTY, &cfg->server_reset_query,
		   NULL);
	get_string(ld, node, "proxy", "application_name", STR_NULL_EMPTY, &cfg->application_name, NULL);
	get_int(ld, node, "proxy", "max_prepared_statements", 0, 100000, &cfg->max_prepared_statements, NULL);
	get_size(ld, node, "proxy", "max_client_prepared_memory", 64 * KB, 64 * GB, "64kB and 64GB",
		 &cfg->max_client_prepared_memory, NULL);
	get_bool(ld, node, "proxy", "allow_cleartext_without_tls", &cfg->allow_cleartext_without_tls);
}

static void load_users(Loader *ld, Config *cfg, yaml_node_t *node)
{
	char got[96];

	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "users must be a sequence (a list of {name, password, auth}), got %s",
			 describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (n == 0)
		return;
	cfg->users = calloc(n, sizeof *cfg->users);
	if (!cfg->users) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		char path[PATH_LEN];
		yaml_node_t *name_node, *password_node;

		snprintf(path, sizeof path, "users[%zu]", i);
		if (!check_mapping(ld, item, path, user_keys))
			continue;
		ConfigUser *u = &cfg->users[cfg->n_users++];
		u->auth = CONFIG_AUTH_SCRAM_SHA_256;
		bool name_ok = get_string(ld, item, path, "name", STR_REQUIRED | STR_NONEMPTY, &u->name,
					  &name_node);
		bool password_ok = get_secret(ld, item, path, "password", STR_REQUIRED | STR_NONEMPTY,
					      &u->password, &password_node);
		int auth = (int)u->auth;
		bool auth_ok = get_enum(ld, item, path, "auth", auth_names, &auth);
		u->auth = (ConfigAuthMethod)auth;

		if (name_ok && u->name) {
			for (size_t j = 0; j < i; j++) {
				yaml_node_t *earlier = map_get(
					ld, node_get(ld, node->data.sequence.items.start[j]), "name");
				if (earlier && earlier->type == YAML_SCALAR_NODE &&
				    !strcmp(scalar_text(earlier), u->name)) {
					error_at(ld, name_node,
						 "duplicate user \"%s\" in %s (already defined in users[%zu])",
						 u->name, path, j);
					break;
				}
			}
		}
		if (password_ok && auth_ok && u->password)
			check_password(ld, path, password_node, u->password, u->auth);
	}
}

static void load_backend(Loader *ld, ConfigBackend *b, yaml_node_t *node, const char *path,
			 const char *service_name)
{
	b->port = 5432;
	if (!check_mapping(ld, node, path, backend_keys))
		return;
	get_string(ld, node, path, "host", STR_REQUIRED | STR_NONEMPTY, &b->host, NULL);
	get_int(ld, node, path, "port", 1, 65535, &b->port, NULL);
	get_string(ld, node, path, "dbname", STR_NONEMPTY, &b->dbname, NULL);
	get_string(ld, node, path, "user", STR_NULLABLE | STR_NONEMPTY, &b->user, NULL);
	get_secret(ld, node, path, "password", STR_NULLABLE | STR_NONEMPTY, &b->password, NULL);
	if (!b->dbname)
		b->dbname = dup_string(ld, service_name);
}

static void load_replicas(Loader *ld, ConfigService *s, yaml_node_t *node, const char *path)
{
	char got[96];
	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "%s.replicas must be a list of {host, port}, got %s", path, describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	s->replicas = calloc(n ? n : 1, sizeof *s->replicas);
	if (!s->replicas) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char sub[PATH_LEN + 32];
		snprintf(sub, sizeof sub, "%s.replicas[%zu]", path, i);
		ConfigBackend *r = &s->replicas[s->n_replicas++];
		load_backend(ld, r, node_get(ld, node->data.sequence.items.start[i]), sub, s->name);
		/* What a replica does not say, it shares with the primary. */
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		if (item->type == YAML_MAPPING_NODE && !map_get(ld, item, "dbname") && s->primary.dbname) {
			free(r->dbname);
			r->dbname = dup_string(ld, s->primary.dbname);
		}
		if (!r->user && s->primary.user)
			r->user = dup_string(ld, s->primary.user);
		if (!r->password && s->primary.password)
			r->password = dup_string(ld, s->primary.password);
	}
}

static void load_functions(Loader *ld, ConfigService *s, yaml_node_t *node, const char *path)
{
	char sub[PATH_LEN];
	join_path(sub, sizeof sub, path, "functions");
	if (!node || !check_mapping(ld, node, sub, functions_keys))
		return;
	get_string_list(ld, node, sub, "read_only", &s->read_only_functions, &s->n_read_only_functions, NULL);
	get_string_list(ld, node, sub, "writes", &s->writing_functions, &s->n_writing_functions, NULL);
}

static void load_pool(Loader *ld, ConfigPool *pool, yaml_node_t *node, const char *path)
{
	yaml_node_t *max_node, *min_node;

	if (!check_mapping(ld, node, path, pool_keys))
		return;
	bool max_ok = get_int(ld, node, path, "max", 1, 100000, &pool->max, &max_node);
	bool min_ok = get_int(ld, node, path, "min", 0, 100000, &pool->min, &min_node);
	if (max_ok && min_ok && pool->min > pool->max)
		error_at(ld, min_node ? min_node : max_node,
			 "%s.min must be at most %s.max (%d), got %d", path, path, pool->max, pool->min);
	get_duration(ld, node, path, "idle_timeout", 0, MAX_DURATION_MS, &pool->idle_timeout_ms);
	get_duration(ld, node, path, "connect_timeout", 1, MAX_DURATION_MS, &pool->connect_timeout_ms);
	get_duration(ld, node, path, "statement_timeout", 0, MAX_STATEMENT_TIMEOUT_MS,
		     &pool->statement_timeout_ms);
	get_duration(ld, node, path, "query_wait_timeout", 0, MAX_DURATION_MS,
		     &pool->query_wait_timeout_ms);
	get_duration(ld, node, path, "server_lifetime", 0, MAX_DURATION_MS, &pool->server_lifetime_ms);
}

static void load_services(Loader *ld, Config *cfg, yaml_node_t *node)
{
	if (!check_mapping(ld, node, "services", NULL))
		return;
	size_t n = mapping_size(node);
	if (n == 0)
		return; /* reported by load_root */
	cfg->services = calloc(n, sizeof *cfg->services);
	if (!cfg->services) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
		yaml_node_t *key = node_get(ld, p->key), *value = node_get(ld, p->value);
		char path[PATH_LEN], sub[PATH_LEN];

		if (key->type != YAML_SCALAR_NODE)
			continue; /* reported by check_mapping */
		if (!scalar_text(key)[0]) {
			error_at(ld, key, "service names must not be empty");
			continue;
		}
		ConfigService *s = &cfg->services[cfg->n_services++];
		s->pool = (ConfigPool){
			.max = 20,
			.min = 0,
			.idle_timeout_ms = 600 * 1000,
			.connect_timeout_ms = 5 * 1000,
			.statement_timeout_ms = 0,
			.query_wait_timeout_ms = 120 * 1000,
			.server_lifetime_ms = 3600 * 1000,
		};
		s->primary.port = 5432;
		s->tls.mode = CONFIG_TLS_PREFER;
		s->reads = CONFIG_READS_PRIMARY;
		if (!(s->name = dup_string(ld, scalar_text(key))))
			return;
		snprintf(path, sizeof path, "services.%s", s->name);
		if (!check_mapping(ld, value, path, service_keys))
			continue;
		yaml_node_t *primary = map_get(ld, value, "primary");
		join_path(sub, sizeof sub, path, "primary");
		if (!primary)
			error_at(ld, value, "%s is required", sub);
		else
			load_backend(ld, &s->primary, primary, sub, s->name);
		join_path(sub, sizeof sub, path, "pool");
		load_pool(ld, &s->pool, map_get(ld, value, "pool"), sub);
		load_tls(ld, &s->tls, map_get(ld, value, "tls"), path, false);
		if (primary)
			load_replicas(ld, s, map_get(ld, value, "replicas"), path);
		int reads = (int)s->reads, balance = (int)s->balance;
		yaml_node_t *reads_node = map_get(ld, value, "reads");
		if (get_enum(ld, value, path, "reads", reads_names, &reads)) {
			if (reads == CONFIG_READS_INHERIT)
				error_at(ld, reads_node, "%s.reads must be primary or replicas", path);
			else
				s->reads = (ConfigReads)reads;
		}
		if (get_enum(ld, value, path, "balance", balance_names, &balance))
			s->balance = (ConfigBalance)balance;
		load_functions(ld, s, map_get(ld, value, "functions"), path);
	}
}

static void load_databases(Loader *ld, Config *cfg, yaml_node_t *node)
{
	if (!check_mapping(ld, node, "databases", NULL))
		return;
	size_t n = mapping_size(node);
	if (n == 0)
		return; /* reported by load_root */
	cfg->databases = calloc(n, sizeof *cfg->databases);
	if (!cfg->databases) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &node->data.mapping.pairs.start[i];
		yaml_node_t *key = node_get(ld, p->key), *value = node_get(ld, p->value);
		yaml_node_t *service_node;
		char path[PATH_LEN];

		if (key->type != YAML_SCALAR_NODE)
			continue;
		if (!scalar_text(key)[0]) {
			error_at(ld, key, "database names must not be empty");
			continue;
		}
		ConfigDatabase *d = &cfg->databases[cfg->n_databases++];
		d->pool_mode = CONFIG_POOL_TRANSACTION;
		if (!(d->name = dup_string(ld, scalar_text(key))))
			return;
		snprintf(path, sizeof path, "databases.%s", d->name);
		if (!check_mapping(ld, value, path, database_keys))
			continue;
		int mode = (int)d->pool_mode;
		if (get_enum(ld, value, path, "pool_mode", pool_mode_names, &mode))
			d->pool_mode = (ConfigPoolMode)mode;
		if (!get_string(ld, value, path, "service", STR_REQUIRED | STR_NONEMPTY, &d->service_name,
				&service_node))
			continue;
		d->service = config_find_service(cfg, d->service_name);
		if (!d->service) {
			char known[MSG_LEN / 2] = "";
			size_t used = 0;
			for (size_t j = 0; j < cfg->n_services && used < sizeof known; j++) {
				int w = snprintf(known + used, sizeof known - used, "%s%s", j ? ", " : "",
						 cfg->services[j].name ? cfg->services[j].name : "");
				if (w < 0)
					break;
				used += (size_t)w;
			}
			error_at(ld, service_node, "%s.service names an unknown service \"%s\" (%s%s)", path,
				 d->service_name, cfg->n_services ? "defined services: " : "no services are defined",
				 known);
		}
	}
}

static void load_routes(Loader *ld, Config *cfg, yaml_node_t *node)
{
	char got[96];
	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "routes must be a list of {schema | tables, service, reads}, got %s",
			 describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	cfg->routes = calloc(n ? n : 1, sizeof *cfg->routes);
	if (!cfg->routes) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		char path[PATH_LEN];
		snprintf(path, sizeof path, "routes[%zu]", i);
		if (!check_mapping(ld, item, path, route_keys))
			continue;
		ConfigRoute *r = &cfg->routes[cfg->n_routes++];
		r->line = (int)item->start_mark.line + 1;
		get_string_list(ld, item, path, "schema", &r->schemas, &r->n_schemas, NULL);
		get_string_list(ld, item, path, "tables", &r->tables, &r->n_tables, NULL);
		if (!map_get(ld, item, "schema") && !map_get(ld, item, "tables"))
			error_at(ld, item, "%s needs schema or tables (or both)", path);
		yaml_node_t *service_node;
		if (get_string(ld, item, path, "service", STR_REQUIRED | STR_NONEMPTY, &r->service_name, &service_node) &&
		    r->service_name) {
			r->service = config_find_service(cfg, r->service_name);
			if (!r->service)
				error_at(ld, service_node, "%s.service names an unknown service \"%s\"", path, r->service_name);
		}
		int reads = (int)CONFIG_READS_INHERIT;
		if (get_enum(ld, item, path, "reads", reads_names, &reads))
			r->reads = (ConfigReads)reads;
	}
}

static void load_health(Loader *ld, Config *cfg, yaml_node_t *node)
{
	char got[96];
	if (!node || !check_mapping(ld, node, "health", health_keys))
		return;
	get_duration(ld, node, "health", "interval", 100, MAX_DURATION_MS, &cfg->health.interval_ms);
	get_duration(ld, node, "health", "timeout", 100, MAX_DURATION_MS, &cfg->health.timeout_ms);
	get_int(ld, node, "health", "fail_after", 1, 1000, &cfg->health.fail_after, NULL);
	get_int(ld, node, "health", "recover_after", 1, 1000, &cfg->health.recover_after, NULL);
	yaml_node_t *v = map_get(ld, node, "max_lag");
	if (!v)
		return;
	const char *text = v->type == YAML_SCALAR_NODE && !is_null(v) ? scalar_text(v) : "";
	size_t len = strlen(text);
	size_t bytes;
	int64_t ms;
	bool is_bytes = len > 0 && (text[len - 1] == 'B' || (text[len - 1] >= '0' && text[len - 1] <= '9'));
	if (is_bytes && config_parse_size(text, &bytes)) {
		cfg->health.max_lag_bytes = (int64_t)bytes;
		cfg->health.max_lag_ms = 0;
	} else if (!is_bytes && len > 0 && config_parse_duration(text, &ms)) {
		cfg->health.max_lag_ms = ms;
		cfg->health.max_lag_bytes = 0;
	} else {
		error_at(ld, v, "health.max_lag must be a size (16MB: bytes of WAL not yet replayed) or a duration "
			 "(10s: replay delay), got %s", describe(v, got, sizeof got));
	}
}

/* "host:port" with a port in 1..65535. */
static bool valid_host_port(const char *s)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return false;
	long long port;
	return parse_int(colon + 1, &port) && port >= 1 && port <= 65535;
}

static void load_cache_rules(Loader *ld, ConfigCache *cache, yaml_node_t *node)
{
	char got[96];
	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "cache.rules must be a list of {schema | tables, ttl}, got %s", describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	cache->rules = calloc(n ? n : 1, sizeof *cache->rules);
	if (!cache->rules) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		char path[PATH_LEN];
		snprintf(path, sizeof path, "cache.rules[%zu]", i);
		if (!check_mapping(ld, item, path, cache_rule_keys))
			continue;
		ConfigCacheRule *r = &cache->rules[cache->n_rules++];
		r->line = (int)item->start_mark.line + 1;
		r->ttl_ms = cache->default_ttl_ms;
		get_string_list(ld, item, path, "schema", &r->schemas, &r->n_schemas, NULL);
		get_string_list(ld, item, path, "tables", &r->tables, &r->n_tables, NULL);
		if (!map_get(ld, item, "schema") && !map_get(ld, item, "tables"))
			error_at(ld, item, "%s needs schema or tables (or both)", path);
		get_duration(ld, item, path, "ttl", 0, MAX_DURATION_MS, &r->ttl_ms);
		yaml_node_t *kn = NULL;
		if (get_string(ld, item, path, "key", 0, &r->key, &kn) && r->key &&
		    (!*r->key || strlen(r->key) > 63 || strpbrk(r->key, " .,\t\"")))
			error_at(ld, kn, "%s.key must be one column name (as PostgreSQL stores it), got \"%s\"", path,
				 r->key);
	}
}

static void load_cache_dependencies(Loader *ld, ConfigCache *cache, yaml_node_t *node)
{
	char got[96];
	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "cache.invalidate must be a list of {table, also: [tables]}, got %s",
			 describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	cache->dependencies = calloc(n ? n : 1, sizeof *cache->dependencies);
	if (!cache->dependencies) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		char path[PATH_LEN];
		snprintf(path, sizeof path, "cache.invalidate[%zu]", i);
		if (!check_mapping(ld, item, path, cache_dependency_keys))
			continue;
		ConfigCacheDependency *d = &cache->dependencies[cache->n_dependencies++];
		d->line = (int)item->start_mark.line + 1;
		get_string(ld, item, path, "table", STR_REQUIRED | STR_NONEMPTY, &d->table, NULL);
		get_string_list(ld, item, path, "also", &d->also, &d->n_also, NULL);
		if (!map_get(ld, item, "also"))
			error_at(ld, item, "%s.also is required (the tables a write to %s also changes)", path,
				 d->table ? d->table : "table");
	}
}

/* cache.redis.signing_key, or the contents of signing_key_file (one trailing newline dropped). */
static void load_signing_key(Loader *ld, ConfigCache *cache, yaml_node_t *redis)
{
	yaml_node_t *key_node, *file_node;
	char *key = NULL, *path = NULL;
	get_string(ld, redis, "cache.redis", "signing_key", STR_NONEMPTY, &key, &key_node);
	get_string(ld, redis, "cache.redis", "signing_key_file", STR_NONEMPTY, &path, &file_node);
	if (key && path) {
		error_at(ld, file_node, "cache.redis.signing_key and cache.redis.signing_key_file exclude each other");
	} else if (key) {
		if (!ld->has_inline_secret) {
			ld->has_inline_secret = true;
			ld->first_inline_secret = key_node->start_mark;
			snprintf(ld->first_inline_secret_path, sizeof ld->first_inline_secret_path, "cache.redis.signing_key");
		}
		if (strlen(key) < CONFIG_SIGNING_KEY_MIN)
			error_at(ld, key_node, "cache.redis.signing_key must be at least %d bytes long (got %zu)",
				 CONFIG_SIGNING_KEY_MIN, strlen(key));
		else {
			cache->redis_signing_key_len = strlen(key);
			cache->redis_signing_key = key;
			key = NULL;
		}
	} else if (path) {
		FILE *f = fopen(path, "rb");
		char buf[CONFIG_SIGNING_KEY_MAX + 2];
		size_t n = 0;
		if (!f) {
			error_at(ld, file_node, "cache.redis.signing_key_file: cannot open \"%s\": %s", path, strerror(errno));
		} else {
			n = fread(buf, 1, sizeof buf, f);
			bool failed = ferror(f);
			fclose(f);
			if (n && buf[n - 1] == '\n')
				n--;
			if (n && buf[n - 1] == '\r')
				n--;
			if (failed)
				error_at(ld, file_node, "cache.redis.signing_key_file: cannot read \"%s\"", path);
			else if (n > CONFIG_SIGNING_KEY_MAX)
				error_at(ld, file_node, "cache.redis.signing_key_file: \"%s\" holds more than %d bytes", path,
					 CONFIG_SIGNING_KEY_MAX);
			else if (n < CONFIG_SIGNING_KEY_MIN)
				error_at(ld, file_node,
					 "cache.redis.signing_key_file: \"%s\" holds %zu bytes, a key needs at least %d", path,
					 n, CONFIG_SIGNING_KEY_MIN);
			else if (!(cache->redis_signing_key = malloc(n + 1)))
				ld->oom = true;
			else {
				memcpy(cache->redis_signing_key, buf, n);
				cache->redis_signing_key[n] = 0;
				cache->redis_signing_key_len = n;
			}
			explicit_bzero(buf, sizeof buf);
		}
	}
	if (key) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	free(path);
}

static void load_cache(Loader *ld, Config *cfg, yaml_node_t *node)
{
	ConfigCache *cache = &cfg->cache;
	if (!node || is_null(node) || !check_mapping(ld, node, "cache", cache_keys))
		return;
	cache->enabled = true;
	get_duration(ld, node, "cache", "ttl", 1, MAX_DURATION_MS, &cache->default_ttl_ms);
	if (get_duration(ld, node, "cache", "catalog_refresh", 0, 24 * 3600 * 1000, &cache->catalog_refresh_ms) &&
	    cache->catalog_refresh_ms > 0 && cache->catalog_refresh_ms < 100)
		error_at(ld, map_get(ld, node, "catalog_refresh"),
			 "cache.catalog_refresh must be 0 (no periodic refresh) or at least 100ms, got %lldms",
			 (long long)cache->catalog_refresh_ms);
	yaml_node_t *l1 = map_get(ld, node, "l1");
	if (l1 && check_mapping(ld, l1, "cache.l1", cache_l1_keys)) {
		get_size(ld, l1, "cache.l1", "max_memory", 0, 1024 * GB, "0 and 1TB", &cache->l1_max_memory, NULL);
		int policy = 0;
		get_enum(ld, l1, "cache.l1", "policy", cache_policy_names, &policy);
		get_size(ld, l1, "cache.l1", "max_result", 1, 1 * GB, "1B and 1GB", &cache->max_result, NULL);
	}
	yaml_node_t *redis = map_get(ld, node, "redis");
	if (redis && check_mapping(ld, redis, "cache.redis", cache_redis_keys)) {
		yaml_node_t *nodes;
		if (get_string_list(ld, redis, "cache.redis", "nodes", &cache->redis_nodes, &cache->n_redis_nodes, &nodes)) {
			if (!nodes)
				error_at(ld, redis, "cache.redis.nodes is required (\"host:port\" of Redis, or of some Redis Cluster nodes)");
			for (size_t i = 0; i < cache->n_redis_nodes; i++)
				if (!valid_host_port(cache->redis_nodes[i]))
					error_at(ld, nodes, "cache.redis.nodes[%zu] must be \"host:port\", got \"%s\"", i,
						 cache->redis_nodes[i]);
		}
		get_bool(ld, redis, "cache.redis", "cluster", &cache->redis_cluster);
		get_duration(ld, redis, "cache.redis", "timeout", 1, 60000, &cache->redis_timeout_ms);
		yaml_node_t *user_node;
		get_string(ld, redis, "cache.redis", "user", STR_NULLABLE | STR_NONEMPTY, &cache->redis_user, &user_node);
		get_secret(ld, redis, "cache.redis", "password", STR_NULLABLE, &cache->redis_password, NULL);
		if (cache->redis_user && !cache->redis_password)
			error_at(ld, user_node, "cache.redis.user needs cache.redis.password (AUTH user password)");
		get_string(ld, redis, "cache.redis", "prefix", STR_NONEMPTY, &cache->redis_prefix, NULL);
		load_signing_key(ld, cache, redis);
	}
	load_cache_rules(ld, cache, map_get(ld, node, "rules"));
	load_cache_dependencies(ld, cache, map_get(ld, node, "invalidate"));
	yaml_node_t *wal = map_get(ld, node, "wal_listener");
	if (wal && !is_null(wal) && check_mapping(ld, wal, "cache.wal_listener", cache_wal_keys)) {
		yaml_node_t *service_node;
		if (get_string(ld, wal, "cache.wal_listener", "service", STR_REQUIRED | STR_NONEMPTY, &cache->wal_service_name,
			       &service_node) && cache->wal_service_name) {
			cache->wal_service = config_find_service(cfg, cache->wal_service_name);
			if (!cache->wal_service)
				error_at(ld, service_node, "cache.wal_listener.service names an unknown service \"%s\"",
					 cache->wal_service_name);
		}
		get_string(ld, wal, "cache.wal_listener", "slot", STR_NONEMPTY, &cache->wal_slot, NULL);
		get_string(ld, wal, "cache.wal_listener", "user", STR_NONEMPTY, &cache->wal_user, NULL);
		get_secret(ld, wal, "cache.wal_listener", "password", STR_NULLABLE, &cache->wal_password, NULL);
	}
}

/* ---- access rules ---- */

/*
 * access[i].database or .user: a name or a list of names into *names; the keywords set *all (and,
 * for databases, *same_user), quoted or not (YAML writers quote freely; unlike pg_hba.conf, a
 * database or user named "all" cannot be named). Returns false after an error.
 */
static bool load_access_names(Loader *ld, yaml_node_t *item, const char *path, const char *key, char ***names,
			      size_t *n_names, bool *all, bool *same_user)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, item, key);
	join_path(full, sizeof full, path, key);
	if (!v) {
		*all = true; /* absent: every database / user */
		return true;
	}
	yaml_node_item_t *start = NULL, *top = NULL;
	if (v->type == YAML_SEQUENCE_NODE) {
		start = v->data.sequence.items.start;
		top = v->data.sequence.items.top;
	} else if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		error_at(ld, v, "%s must be a name or a list of names, got %s", full, describe(v, got, sizeof got));
		return false;
	}
	size_t n = start ? (size_t)(top - start) : 1;
	if (n == 0) {
		error_at(ld, v, "%s must not be an empty list (write all for every %s)", full, key);
		return false;
	}
	*names = calloc(n, sizeof **names);
	if (!*names) {
		ld->oom = true;
		return false;
	}
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *it = start ? node_get(ld, start[i]) : v;
		if (it->type != YAML_SCALAR_NODE || is_null(it) || !scalar_text(it)[0] ||
		    it->data.scalar.length != strlen(scalar_text(it))) {
			error_at(ld, it, "%s must contain non-empty names, got %s", full, describe(it, got, sizeof got));
			ok = false;
			continue;
		}
		const char *name = scalar_text(it);
		if (strcmp(name, "all") == 0) {
			*all = true;
			continue;
		}
		if (same_user && strcmp(name, "sameuser") == 0) {
			*same_user = true;
			continue;
		}
		if (name[0] == '+' || name[0] == '@') {
			error_at(ld, it, "%s: \"%s\": %s are not supported (list the names, or write all)", full, name,
				 name[0] == '+' ? "groups (+name)" : "included files (@file)");
			ok = false;
			continue;
		}
		if (!strcmp(name, "samerole") || !strcmp(name, "samegroup") || !strcmp(name, "replication")) {
			error_at(ld, it, "%s: the keyword %s is not supported by pgrelay", full, name);
			ok = false;
			continue;
		}
		if (!((*names)[(*n_names)++] = dup_string(ld, name)))
			return false;
	}
	return ok;
}

static void load_access(Loader *ld, Config *cfg, yaml_node_t *node)
{
	char got[96];
	if (!node || is_null(node))
		return;
	if (node->type != YAML_SEQUENCE_NODE) {
		error_at(ld, node, "access must be a list of {type, database, user, address, method}, got %s",
			 describe(node, got, sizeof got));
		return;
	}
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	if (n == 0) {
		error_at(ld, node, "access has no rules, so every connection would be refused (remove the section to "
				   "let every user in, or end with a reject rule)");
		return;
	}
	cfg->access_enabled = true;
	cfg->access = calloc(n, sizeof *cfg->access);
	if (!cfg->access) {
		ld->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, node->data.sequence.items.start[i]);
		char path[PATH_LEN], full[PATH_LEN];
		snprintf(path, sizeof path, "access[%zu]", i);
		if (!item || item->type != YAML_MAPPING_NODE) {
			error_at(ld, item, "%s must be a mapping {type, database, user, address, method}, got %s", path,
				 describe(item, got, sizeof got));
			continue;
		}
		if (!check_mapping(ld, item, path, access_keys))
			continue;
		AccessRule *r = &cfg->access[cfg->n_access++];
		r->line = (int)item->start_mark.line + 1;

		yaml_node_t *type_node = map_get(ld, item, "type");
		if (type_node && type_node->type == YAML_SCALAR_NODE && !strcmp(scalar_text(type_node), "local")) {
			error_at(ld, type_node, "%s.type: local (Unix-socket clients) cannot match: pgrelay listens only on "
					      "TCP; use host, hostssl or hostnossl", path);
		} else {
			int type = ACCESS_HOST;
			if (get_enum(ld, item, path, "type", access_type_names, &type))
				r->type = (AccessType)type;
		}

		if (load_access_names(ld, item, path, "database", &r->databases, &r->n_databases, &r->all_databases,
				      &r->same_user)) {
			yaml_node_t *db_node = map_get(ld, item, "database");
			for (size_t j = 0; j < r->n_databases; j++) {
				const char *name = r->databases[j];
				if (!strcmp(name, "pgrelay") || !strcmp(name, "pgbouncer"))
					r->console = true;
				else if (!config_find_database(cfg, name))
					add_warning(ld, db_node->start_mark,
						    "%s.database names \"%s\", which is not in databases: the rule never "
						    "matches it", path, name);
			}
		}
		if (load_access_names(ld, item, path, "user", &r->users, &r->n_users, &r->all_users, NULL)) {
			yaml_node_t *user_node = map_get(ld, item, "user");
			for (size_t j = 0; j < r->n_users; j++)
				if (!config_find_user(cfg, r->users[j]))
					add_warning(ld, user_node->start_mark,
						    "%s.user names \"%s\", who is not in users and cannot log in", path,
						    r->users[j]);
		}

		yaml_node_t *addr_node = map_get(ld, item, "address");
		join_path(full, sizeof full, path, "address");
		if (addr_node) {
			const char *why;
			if (addr_node->type != YAML_SCALAR_NODE || is_null(addr_node))
				error_at(ld, addr_node, "%s must be all, an IP address or a CIDR block, got %s", full,
					 describe(addr_node, got, sizeof got));
			else if (!strcmp(scalar_text(addr_node), "samehost") || !strcmp(scalar_text(addr_node), "samenet"))
				error_at(ld, addr_node, "%s: %s is not supported by pgrelay (write the CIDR block)", full,
					 scalar_text(addr_node));
			else if ((why = access_parse_address(scalar_text(addr_node), &r->address)) != NULL)
				error_at(ld, addr_node, "%s: \"%s\": %s", full, scalar_text(addr_node), why);
		}

		if (!map_get(ld, item, "method")) {
			error_at(ld, item, "%s.method is required (one of: scram-sha-256, md5, password, reject)", path);
		} else {
			int method = ACCESS_REJECT;
			if (get_enum(ld, item, path, "method", access_method_names, &method))
				r->method = (AccessMethod)method;
			for (size_t j = 0; r->method == ACCESS_SCRAM_SHA_256 && j < r->n_users; j++) {
				const ConfigUser *u = config_find_user(cfg, r->users[j]);
				if (u && u->password && is_md5_hash(u->password))
					add_warning(ld, map_get(ld, item, "method")->start_mark,
						    "%s.method is scram-sha-256, but the password of user \"%s\" is an md5 "
						    "hash: that user cannot log in through this rule", path, u->name);
			}
		}
	}
}

static void load_root(Loader *ld, Config *cfg, yaml_node_t *root)
{
	if (root && is_null(root))
		root = NULL; /* "---" alone, or a document of only comments */
	if (!check_mapping(ld, root, "", top_keys))
		return;
	load_listen(ld, cfg, map_get(ld, root, "listen"));
	load_log(ld, cfg, map_get(ld, root, "log"));
	load_proxy(ld, cfg, map_get(ld, root, "proxy"));
	load_users(ld, cfg, map_get(ld, root, "users"));

	/* Checked before the services are loaded, so an empty file says "no databases defined" first. */
	yaml_node_t *databases = map_get(ld, root, "databases");
	yaml_node_t *services = map_get(ld, root, "services");
	if (!databases || is_null(databases) ||
	    (databases->type == YAML_MAPPING_NODE && mapping_size(databases) == 0))
		error_at(ld, databases ? databases : root, "no databases defined");
	if (!services || is_null(services) ||
	    (services->type == YAML_MAPPING_NODE && mapping_size(services) == 0))
		error_at(ld, services ? services : root, "no services defined");

	load_services(ld, cfg, services);
	load_databases(ld, cfg, databases);
	load_routes(ld, cfg, map_get(ld, root, "routes"));
	load_health(ld, cfg, map_get(ld, root, "health"));
	load_cache(ld, cfg, map_get(ld, root, "cache"));
	load_admin(ld, cfg, map_get(ld, root, "admin"));
	load_access(ld, cfg, map_get(ld, root, "access")); /* after users and databases: it names them */
}

/* ---- lifecycle ---- */

static void free_string_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void config_free(Config *cfg)
{
	for (size_t i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	free(cfg->path);
	free(cfg->listen.host);
	free(cfg->listen.tls.cert);
	free(cfg->listen.tls.key);
	free(cfg->listen.tls.ca);
	free(cfg->listen.upgrade_socket);
	free(cfg->server_reset_query);
	free(cfg->application_name);
	for (size_t i = 0; i < cfg->n_users; i++) {
		free(cfg->users[i].name);
		free(cfg->users[i].password);
	}
	free(cfg->users);
	for (size_t i = 0; i < cfg->n_databases; i++) {
		free(cfg->databases[i].name);
		free(cfg->databases[i].service_name);
	}
	free(cfg->databases);
	for (size_t i = 0; i < cfg->n_services; i++) {
		ConfigService *s = &cfg->services[i];
		free(s->name);
		free(s->primary.host);
		free(s->primary.dbname);
		free(s->primary.user);
		free(s->primary.password);
		free(s->tls.ca);
		for (size_t j = 0; j < s->n_replicas; j++) {
			free(s->replicas[j].host);
			free(s->replicas[j].dbname);
			free(s->replicas[j].user);
			free(s->replicas[j].password);
		}
		free(s->replicas);
		free_string_list(s->read_only_functions, s->n_read_only_functions);
		free_string_list(s->writing_functions, s->n_writing_functions);
	}
	free(cfg->services);
	for (size_t i = 0; i < cfg->n_routes; i++) {
		free_string_list(cfg->routes[i].schemas, cfg->routes[i].n_schemas);
		free_string_list(cfg->routes[i].tables, cfg->routes[i].n_tables);
		free(cfg->routes[i].service_name);
	}
	free(cfg->routes);
	ConfigCache *cache = &cfg->cache;
	free_string_list(cache->redis_nodes, cache->n_redis_nodes);
	free(cache->redis_user);
	free(cache->redis_password);
	if (cache->redis_signing_key)
		explicit_bzero(cache->redis_signing_key, cache->redis_signing_key_len);
	free(cache->redis_signing_key);
	free(cache->redis_prefix);
	for (size_t i = 0; i < cache->n_rules; i++) {
		free_string_list(cache->rules[i].schemas, cache->rules[i].n_schemas);
		free_string_list(cache->rules[i].tables, cache->rules[i].n_tables);
		free(cache->rules[i].key);
	}
	free(cache->rules);
	for (size_t i = 0; i < cache->n_dependencies; i++) {
		free(cache->dependencies[i].table);
		free_string_list(cache->dependencies[i].also, cache->dependencies[i].n_also);
	}
	free(cache->dependencies);
	free(cache->wal_service_name);
	free(cache->wal_slot);
	free(cache->wal_user);
	free(cache->wal_password);
	free_string_list(cfg->admin.users, cfg->admin.n_users);
	free_string_list(cfg->admin.stats_users, cfg->admin.n_stats_users);
	free(cfg->admin.http_host);
	for (size_t i = 0; i < cfg->n_access; i++)
		access_rule_free(&cfg->access[i]);
	free(cfg->access);
	free(cfg);
}

static Config *config_new(Loader *ld, const char *name)
{
	Config *cfg = calloc(1, sizeof *cfg);
	if (!cfg) {
		ld->oom = true;
		return NULL;
	}
	cfg->refcount = 1;
	cfg->path = dup_string(ld, name);
	cfg->listen.host = dup_string(ld, "127.0.0.1");
	cfg->listen.port = 6432;
	cfg->listen.max_client_conn = 10000;
	cfg->listen.backlog = 1024;
	cfg->log.level = CONFIG_LOG_INFO;
	cfg->shutdown_timeout_ms = 30 * 1000;
	cfg->buffer_size = 64 * KB;
	cfg->max_message_size = 64 * MB;
	cfg->server_reset_query = dup_string(ld, "DISCARD ALL");
	cfg->application_name = dup_string(ld, "pgrelay");
	cfg->max_prepared_statements = 200;
	cfg->max_client_prepared_memory = 64 * MB;
	cfg->health = (ConfigHealth){.interval_ms = 1000, .timeout_ms = 2000, .fail_after = 3, .recover_after = 2,
				     .max_lag_bytes = 16 * MB, .max_lag_ms = 0};
	cfg->log.stats_period_ms = 60 * 1000;
	cfg->admin.histograms = true;
	cfg->cache.l1_max_memory = 256 * MB;
	cfg->cache.max_result = 1 * MB;
	cfg->cache.default_ttl_ms = 60 * 1000;
	cfg->cache.catalog_refresh_ms = 60 * 1000;
	cfg->cache.redis_timeout_ms = 20;
	cfg->cache.redis_prefix = dup_string(ld, "pgrelay");
	cfg->cache.wal_slot = dup_string(ld, "pgrelay_cache");
	return cfg;
}

/* Line and column (0-based) of byte offset in text, for reader errors, which carry no mark. */
static yaml_mark_t mark_from_offset(const char *text, size_t len, size_t offset)
{
	yaml_mark_t mark = {offset, 0, 0};
	for (size_t i = 0; i < offset && i < len; i++) {
		if (text[i] == '\n') {
			mark.line++;
			mark.column = 0;
		} else {
			mark.column++;
		}
	}
	return mark;
}

static void report_parser_error(Loader *ld, const yaml_parser_t *parser, const char *text,
				size_t len)
{
	const char *problem = parser->problem ? parser->problem : "unknown error";

	switch (parser->error) {
	case YAML_MEMORY_ERROR:
		ld->oom = true;
		break;
	case YAML_READER_ERROR:
		if (parser->problem_value != -1)
			error_mark(ld, mark_from_offset(text, len, parser->problem_offset),
				   "YAML syntax error: %s (byte 0x%02x)", problem, parser->problem_value);
		else
			error_mark(ld, mark_from_offset(text, len, parser->problem_offset),
				   "YAML syntax error: %s", problem);
		break;
	default:
		if (parser->context)
			error_mark(ld, parser->problem_mark,
				   "YAML syntax error: %s (%s at line %d, column %d)", problem,
				   parser->context, (int)parser->context_mark.line + 1,
				   (int)parser->context_mark.column + 1);
		else
			error_mark(ld, parser->problem_mark, "YAML syntax error: %s", problem);
		break;
	}
}

/* mode: the file's permission bits (0 for a string) */
static Config *load_buffer(const char *name, const char *text, size_t len, unsigned mode, char *err, size_t errlen)
{
	Loader ld = {.name = name};
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	Config *cfg = NULL;

	if (!yaml_parser_initialize(&parser)) {
		ld.oom = true;
		goto out;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		report_parser_error(&ld, &parser, text, len);
		yaml_parser_delete(&parser);
		goto out;
	}
	ld.doc = &doc;
	cfg = config_new(&ld, name);
	ld.cfg = cfg;
	if (cfg)
		load_root(&ld, cfg, yaml_document_get_root_node(&doc));
	if (cfg && ld.has_inline_secret && (mode & (S_IRGRP | S_IROTH)))
		add_warning(&ld, ld.first_inline_secret,
			    "%s is readable by group or others (mode %04o) and holds secrets (%s, ...): chmod 600 it, or "
			    "give them as password_file / password_env",
			    name, mode & 07777, ld.first_inline_secret_path);

	/* A second document would be silently ignored: refuse it. */
	if (yaml_document_get_root_node(&doc)) {
		if (!yaml_parser_load(&parser, &extra)) {
			report_parser_error(&ld, &parser, text, len);
		} else {
			yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
			if (extra_root)
				error_mark(&ld, extra.start_mark,
					   "only one YAML document is allowed, found another one here");
			yaml_document_delete(&extra);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
out:
	if (loader_failed(&ld)) {
		write_errors(&ld, err, errlen);
		if (cfg)
			config_free(cfg);
		cfg = NULL;
	} else if (err && errlen) {
		err[0] = '\0';
	}
	loader_free(&ld);
	return cfg;
}

Config *config_load_string(const char *name, const char *yaml, char *err, size_t errlen)
{
	if (!name)
		name = "<string>";
	if (!yaml) {
		if (err && errlen)
			snprintf(err, errlen, "%s: no configuration text given", name);
		return NULL;
	}
	return load_buffer(name, yaml, strlen(yaml), 0, err, errlen);
}

Config *config_load(const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;

	if (!path) {
		if (err && errlen)
			snprintf(err, errlen, "no configuration file given");
		return NULL;
	}
	f = fopen(path, "rb");
	if (!f) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open configuration file: %s", path,
				 strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nbuf = realloc(buf, ncap);
			if (!nbuf) {
				free(buf);
				fclose(f);
				if (err && errlen)
					snprintf(err, errlen, "%s: out of memory", path);
				return NULL;
			}
			buf = nbuf;
			cap = ncap;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		int e = errno;
		free(buf);
		fclose(f);
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read configuration file: %s", path,
				 strerror(e ? e : EIO));
		return NULL;
	}
	struct stat st;
	unsigned mode = fstat(fileno(f), &st) == 0 ? (unsigned)st.st_mode & 07777 : 0;
	fclose(f);
	Config *cfg = load_buffer(path, buf, len, mode, err, errlen);
	free(buf);
	return cfg;
}

Config *config_ref(Config *cfg)
{
	if (cfg)
		cfg->refcount++;
	return cfg;
}

void config_unref(Config *cfg)
{
	if (cfg && --cfg->refcount == 0)
		config_free(cfg);
}

/* ---- lookups ---- */

const ConfigUser *config_find_user(const Config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_users; i++)
		if (cfg->users[i].name && !strcmp(cfg->users[i].name, name))
			return &cfg->users[i];
	return NULL;
}

const ConfigDatabase *config_find_database(const Config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_databases; i++)
		if (cfg->databases[i].name && !strcmp(cfg->databases[i].name, name))
			return &cfg->databases[i];
	return NULL;
}

const ConfigService *config_find_service(const Config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->n_services; i++)
		if (cfg->services[i].name && !strcmp(cfg->services[i].name, name))
			return &cfg->services[i];
	return NULL;
}

/* ---- durations and sizes ---- */

/* Parses the leading decimal digits of s into *out; returns the number of digits (0: none or
 * overflow). */
static size_t parse_digits(const char *s, uint64_t limit, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = 0;

	for (; s[n] >= '0' && s[n] <= '9'; n++) {
		uint64_t d = (uint64_t)(s[n] - '0');
		if (v > (limit - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return n;
}

bool config_parse_duration(const char *text, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = {
		{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", MS_PER_DAY},
	};
	uint64_t v;

	if (!text || !out_ms)
		return false;
	size_t n = parse_digits(text, (uint64_t)INT64_MAX, &v);
	if (n == 0)
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(text + n, units[i].unit) != 0)
			continue;
		if (v > (uint64_t)(INT64_MAX / units[i].ms))
			return false;
		*out_ms = (int64_t)v * units[i].ms;
		return true;
	}
	return false;
}

bool config_parse_size(const char *text, size_t *out_bytes)
{
	static const struct {
		const char *unit;
		size_t bytes;
	} units[] = {
		{"", 1}, {"B", 1}, {"kB", KB}, {"KB", KB}, {"MB", MB}, {"GB", GB},
	};
	uint64_t v;

	if (!text || !out_bytes)
		return false;
	size_t n = parse_digits(text, (uint64_t)SIZE_MAX, &v);
	if (n == 0)
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(text + n, units[i].unit) != 0)
			continue;
		if (v > SIZE_MAX / units[i].bytes)
			return false;
		*out_bytes = (size_t)v * units[i].bytes;
		return true;
	}
	return false;
}

/* ---- names ---- */

const char *config_pool_mode_name(ConfigPoolMode mode)
{
	if ((unsigned)mode < sizeof pool_mode_names / sizeof pool_mode_names[0] - 1)
		return pool_mode_names[mode];
	return "unknown";
}

const char *config_auth_method_name(ConfigAuthMethod method)
{
	if ((unsigned)method < sizeof auth_names / sizeof auth_names[0] - 1)
		return auth_names[method];
	return "unknown";
}

const char *config_log_level_name(ConfigLogLevel level)
{
	if ((unsigned)level < sizeof log_level_names / sizeof log_level_names[0] - 1)
		return log_level_names[level];
	return "unknown";
}

const char *config_tls_mode_name(ConfigTlsMode mode)
{
	if ((unsigned)mode < sizeof tls_mode_names / sizeof tls_mode_names[0] - 1)
		return tls_mode_names[mode];
	return "unknown";
}

const char *config_reads_name(ConfigReads reads)
{
	if ((unsigned)reads < sizeof reads_names / sizeof reads_names[0] - 1)
		return reads_names[reads];
	return "unknown";
}

const ConfigBackend *config_backend(const ConfigService *svc, int replica_index)
{
	if (replica_index < 0)
		return &svc->primary;
	if ((size_t)replica_index >= svc->n_replicas)
		return NULL;
	return &svc->replicas[replica_index];
}
