/*
 * config.c — proxy.yaml → Config (see config.h for the API, the key table's types and every
 * default).
 *
 * Owns: the key table (below: every key of every section, with the Config field it fills) and the
 * walk of libyaml's document tree that it drives, the checks across keys that the table cannot
 * say (one function per section), error collection ("file:line:column: message", sorted by
 * position, at most MAX_REPORTED_ERRORS), duration/size parsing and formatting, lookups, and
 * freeing a Config (by the table) when its last reference is dropped. Error messages never quote
 * a password.
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

/* A key's path for messages ("services.users.pool.max", "routes[2]"); cut at PATH_LEN. */
static void path_format(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void path_format(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, cap, fmt, ap);
	va_end(ap);
}
#define MSG_LEN 512

#define MS_PER_DAY INT64_C(86400000)
#define MAX_DURATION_MS (365 * MS_PER_DAY)
/* PostgreSQL's statement_timeout is an int of milliseconds. */
#define MAX_STATEMENT_TIMEOUT_MS (24 * MS_PER_DAY)

#define KB ((size_t)1024)
#define MB (KB * 1024)
#define GB (MB * 1024)

/* ---- values of enumerated keys (indexed by the enums in config.h and access.h) ---- */

static const char *const cache_policy_names[] = {"s3fifo", NULL};
static const char *const require_auth_names[] = {"any", "scram-sha-256", NULL};
static const char *const tls_mode_names[] = {"disable", "allow", "prefer", "require", "verify-full", NULL};
static const char *const log_format_names[] = {"text", "json", NULL};
static const char *const reads_names[] = {"inherit", "primary", "replicas", NULL};
static const char *const balance_names[] = {"round-robin", "least-outstanding", NULL};
static const char *const access_type_names[] = {"host", "hostssl", "hostnossl", NULL};
static const char *const access_method_names[] = {"scram-sha-256", "md5", "password", "reject", NULL};
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

typedef struct ConfigLoader {
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

/* Whether schema has key k (a secret's k_file and k_env too). */
static bool schema_has(const ConfigSchema *schema, const char *k)
{
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *key = &schema->keys[i];
		size_t n = strlen(key->name);
		if (!strcmp(k, key->name))
			return true;
		if (key->type == CONFIG_KEY_SECRET && !strncmp(k, key->name, n) &&
		    (!strcmp(k + n, "_file") || (!strcmp(k + n, "_env") && !(key->flags & CONFIG_KEY_NO_ENV))))
			return true;
	}
	return false;
}

/* "a, b, c": the keys of schema, as they may be written. */
static void schema_key_list(char *buf, size_t len, const ConfigSchema *schema)
{
	size_t used = 0;
	buf[0] = 0;
	for (size_t i = 0; i < schema->n_keys && used < len; i++) {
		const ConfigKey *k = &schema->keys[i];
		bool secret = k->type == CONFIG_KEY_SECRET, env = secret && !(k->flags & CONFIG_KEY_NO_ENV);
		int n = snprintf(buf + used, len - used, "%s%s%s%s%s%s%s%s", i ? ", " : "", k->name, secret ? ", " : "",
				 secret ? k->name : "", secret ? "_file" : "", env ? ", " : "", env ? k->name : "",
				 env ? "_env" : "");
		if (n < 0)
			return;
		used += (size_t)n;
	}
}

/*
 * Checks that node is a mapping whose keys are distinct scalars and, if schema is given, all
 * keys of schema. A null node counts as an empty mapping. Returns false (after reporting) if the
 * node is something else; key problems are reported but do not make it return false.
 */
static bool check_mapping(Loader *ld, yaml_node_t *node, const char *path, const ConfigSchema *schema)
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
		if (dup || !schema || schema_has(schema, k))
			continue;
		char expected[MSG_LEN / 2];
		schema_key_list(expected, sizeof expected, schema);
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

void config_format_duration(char *buf, size_t len, int64_t ms)
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
		config_format_duration(los, sizeof los, lo);
		config_format_duration(his, sizeof his, hi);
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

/* ---- the table walk ---- */

static void *field_at(void *obj, size_t offset)
{
	return (char *)obj + offset;
}

static int index_get(const void *f, size_t size)
{
	return size == sizeof(bool) ? *(const bool *)f : *(const int *)f;
}

static void index_set(void *f, size_t size, int v)
{
	if (size == sizeof(bool))
		*(bool *)f = v != 0;
	else
		*(int *)f = v;
}

static int name_index(const char *const *names, const char *s)
{
	for (int i = 0; names[i]; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

/* health.max_lag: "16MB" (ends in B or a digit: bytes of WAL) or "10s" (replay delay). */
static bool lag_parse(const char *text, int64_t *bytes_out, int64_t *ms_out)
{
	size_t len = strlen(text), bytes;
	int64_t ms;
	bool is_bytes = len > 0 && (text[len - 1] == 'B' || (text[len - 1] >= '0' && text[len - 1] <= '9'));
	if (is_bytes && config_parse_size(text, &bytes)) {
		*bytes_out = (int64_t)bytes;
		*ms_out = 0;
		return true;
	}
	if (!is_bytes && len > 0 && config_parse_duration(text, &ms)) {
		*ms_out = ms;
		*bytes_out = 0;
		return true;
	}
	return false;
}

static void get_lag(Loader *ld, yaml_node_t *map, const char *path, const ConfigKey *k, void *obj)
{
	char full[PATH_LEN], got[96];
	yaml_node_t *v = map_get(ld, map, k->name);
	if (!v)
		return;
	join_path(full, sizeof full, path, k->name);
	if (v->type != YAML_SCALAR_NODE || is_null(v) ||
	    !lag_parse(scalar_text(v), field_at(obj, k->offset), field_at(obj, k->offset2)))
		error_at(ld, v, "%s must be a size (16MB: bytes of WAL not yet replayed) or a duration "
			 "(10s: replay delay), got %s", full, describe(v, got, sizeof got));
}

/* Whether an error was reported at node (NULL: no). */
static bool error_reported_at(const Loader *ld, const yaml_node_t *node)
{
	if (!node)
		return false;
	for (size_t i = 0; i < ld->n_errors; i++)
		if (ld->errors[i].line == (int)node->start_mark.line + 1 &&
		    ld->errors[i].column == (int)node->start_mark.column + 1)
			return true;
	return false;
}

/* Sets the table's defaults in obj (a struct of schema's section). */
static void apply_defaults(Loader *ld, const ConfigSchema *schema, void *obj)
{
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *k = &schema->keys[i];
		void *f = field_at(obj, k->offset);
		if (k->type == CONFIG_KEY_SECTION)
			apply_defaults(ld, k->sub, f);
		if (!k->def || (k->flags & CONFIG_KEY_BY_CHECK))
			continue;
		bool ok = true;
		long long n = 0;
		int e;
		switch (k->type) {
		case CONFIG_KEY_BOOL:
			*(bool *)f = !strcmp(k->def, "true");
			break;
		case CONFIG_KEY_INT:
			ok = parse_int(k->def, &n);
			*(int *)f = (int)n;
			break;
		case CONFIG_KEY_SIZE:
			ok = config_parse_size(k->def, f);
			break;
		case CONFIG_KEY_DURATION:
			ok = config_parse_duration(k->def, f);
			break;
		case CONFIG_KEY_STRING:
		case CONFIG_KEY_SECRET:
			free(*(char **)f);
			ok = (*(char **)f = dup_string(ld, k->def)) != NULL;
			break;
		case CONFIG_KEY_ENUM:
			e = name_index(k->names, k->def);
			ok = e >= 0;
			index_set(f, k->size, e);
			break;
		case CONFIG_KEY_LAG:
			ok = lag_parse(k->def, f, field_at(obj, k->offset2));
			break;
		default:
			break;
		}
		if (!ok && !ld->oom)
			error_at(ld, NULL, "internal error: the default of %s (%s) does not parse", k->name, k->def);
	}
}

static void walk_section(Loader *ld, const ConfigSchema *schema, void *obj, yaml_node_t *node, const char *path);

/* key k of a sequence of mappings (ITEMS) */
static void load_items(Loader *ld, const ConfigKey *k, void *obj, yaml_node_t *v, const char *full)
{
	char got[96];
	const ConfigSchema *sub = k->sub;
	if (!v || is_null(v))
		return;
	if (v->type != YAML_SEQUENCE_NODE) {
		error_at(ld, v, "%s %s, got %s", full, sub->list_what, describe(v, got, sizeof got));
		return;
	}
	size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return;
	char *items = calloc(n, sub->item_size);
	if (!items) {
		ld->oom = true;
		return;
	}
	*(void **)field_at(obj, k->offset) = items;
	size_t *count = field_at(obj, k->offset2);
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *item = node_get(ld, v->data.sequence.items.start[i]);
		char path[PATH_LEN];
		path_format(path, sizeof path, "%s[%zu]", full, i);
		if (sub->item_what && (!item || item->type != YAML_MAPPING_NODE)) {
			error_at(ld, item, "%s must be a mapping %s, got %s", path, sub->item_what,
				 describe(item, got, sizeof got));
			continue;
		}
		if (!check_mapping(ld, item, path, sub))
			continue;
		void *it = items + (*count)++ * sub->item_size;
		apply_defaults(ld, sub, it);
		walk_section(ld, sub, it, item, path);
	}
}

/* key k of a mapping of named sections (NAMED: services, databases) */
static void load_named(Loader *ld, const ConfigKey *k, void *obj, yaml_node_t *v, const char *full)
{
	const ConfigSchema *sub = k->sub;
	if (!check_mapping(ld, v, full, NULL))
		return;
	size_t n = mapping_size(v);
	if (n == 0)
		return; /* reported by the top level's check */
	char *items = calloc(n, sub->item_size);
	if (!items) {
		ld->oom = true;
		return;
	}
	*(void **)field_at(obj, k->offset) = items;
	size_t *count = field_at(obj, k->offset2);
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &v->data.mapping.pairs.start[i];
		yaml_node_t *key = node_get(ld, p->key), *value = node_get(ld, p->value);
		char path[PATH_LEN];
		if (key->type != YAML_SCALAR_NODE)
			continue; /* reported by check_mapping */
		if (!scalar_text(key)[0]) {
			error_at(ld, key, "%s names must not be empty", sub->name_what);
			continue;
		}
		void *it = items + (*count)++ * sub->item_size;
		apply_defaults(ld, sub, it);
		char **name = field_at(it, sub->name_offset);
		if (!(*name = dup_string(ld, scalar_text(key))))
			return;
		path_format(path, sizeof path, "%s.%s", full, *name);
		if (check_mapping(ld, value, path, sub))
			walk_section(ld, sub, it, value, path);
	}
}

static void load_key(Loader *ld, const ConfigKey *k, void *obj, yaml_node_t *map, const char *path)
{
	char full[PATH_LEN], lo[32], hi[32], range[80];
	void *f = field_at(obj, k->offset);
	yaml_node_t *v = map_get(ld, map, k->name);
	int sflags = (k->flags & CONFIG_KEY_REQUIRED ? STR_REQUIRED : 0) | (k->flags & CONFIG_KEY_NULLABLE ? STR_NULLABLE : 0) |
		     (k->flags & CONFIG_KEY_NULL_EMPTY ? STR_NULL_EMPTY : 0) | (k->flags & CONFIG_KEY_NONEMPTY ? STR_NONEMPTY : 0);
	join_path(full, sizeof full, path, k->name);
	if (!v && (k->flags & CONFIG_KEY_REQUIRED) && k->type != CONFIG_KEY_STRING && k->type != CONFIG_KEY_SECRET) {
		error_at(ld, map, "%s is required", full);
		return;
	}
	switch (k->type) {
	case CONFIG_KEY_BOOL:
		get_bool(ld, map, path, k->name, f);
		break;
	case CONFIG_KEY_INT:
		get_int(ld, map, path, k->name, (int)k->min, (int)k->max, f, NULL);
		break;
	case CONFIG_KEY_SIZE:
		config_format_size(lo, sizeof lo, (uint64_t)k->min);
		config_format_size(hi, sizeof hi, (uint64_t)k->max);
		snprintf(range, sizeof range, "%s and %s", lo, hi);
		get_size(ld, map, path, k->name, (size_t)k->min, (size_t)k->max, range, f, NULL);
		break;
	case CONFIG_KEY_DURATION:
		get_duration(ld, map, path, k->name, k->min, k->max, f);
		break;
	case CONFIG_KEY_STRING:
		get_string(ld, map, path, k->name, sflags, f, NULL);
		break;
	case CONFIG_KEY_SECRET:
		get_secret(ld, map, path, k->name, sflags, f, NULL);
		break;
	case CONFIG_KEY_ENUM: {
		int e = index_get(f, k->size);
		if (get_enum(ld, map, path, k->name, k->names, &e))
			index_set(f, k->size, e);
		break;
	}
	case CONFIG_KEY_LIST:
		get_string_list(ld, map, path, k->name, f, field_at(obj, k->offset2), NULL);
		break;
	case CONFIG_KEY_LAG:
		get_lag(ld, map, path, k, obj);
		break;
	case CONFIG_KEY_SECTION:
		/* absent: defaults; null: absent too for a NULLABLE section, else an empty mapping */
		if (v && !(is_null(v) && (k->flags & CONFIG_KEY_NULLABLE)) && check_mapping(ld, v, full, k->sub))
			walk_section(ld, k->sub, f, v, full);
		break;
	case CONFIG_KEY_ITEMS:
		load_items(ld, k, obj, v, full);
		break;
	case CONFIG_KEY_NAMED:
		load_named(ld, k, obj, v, full);
		break;
	case CONFIG_KEY_CUSTOM:
		break;
	}
}

/* The keys of schema in node (a mapping, already checked, or null) into obj, then its check. */
static void walk_section(Loader *ld, const ConfigSchema *schema, void *obj, yaml_node_t *node, const char *path)
{
	for (int late = 0; late < 2; late++)
		for (size_t i = 0; i < schema->n_keys; i++) {
			const ConfigKey *k = &schema->keys[i];
			if (!(k->flags & CONFIG_KEY_BY_CHECK) && !(k->flags & CONFIG_KEY_LATE) == !late)
				load_key(ld, k, obj, node, path);
		}
	if (schema->check)
		schema->check(ld, obj, node, path);
}

/* ---- checks across keys ---- */

static void check_listen(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	(void)path;
	Config *cfg = obj;
	yaml_node_t *us = map_get(ld, node, "upgrade_socket");
	if (us && !error_reported_at(ld, us) && cfg->listen.upgrade_socket && strlen(cfg->listen.upgrade_socket) >= 100)
		error_at(ld, us, "listen.upgrade_socket must be shorter than 100 bytes (a Unix socket path)");
}

static void check_listen_tls(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigTls *tls = obj;
	if (error_reported_at(ld, map_get(ld, node, "mode")))
		return;
	if (tls->mode == CONFIG_TLS_VERIFY_FULL)
		error_at(ld, map_get(ld, node, "mode"), "%s.mode verify-full applies to services; for clients use require "
			 "with ca to demand client certificates", path);
	else if (tls->mode != CONFIG_TLS_DISABLE && (!tls->cert || !tls->key))
		error_at(ld, node, "%s needs cert and key when mode is %s", path, tls_mode_names[tls->mode]);
}

static void check_service_tls(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigTls *tls = obj;
	if (error_reported_at(ld, map_get(ld, node, "mode")))
		return;
	if (tls->mode == CONFIG_TLS_ALLOW)
		error_at(ld, map_get(ld, node, "mode"), "%s.mode must be one of: disable, prefer, require, verify-full; got \"allow\"",
			 path);
	else if (tls->mode == CONFIG_TLS_VERIFY_FULL && !tls->ca)
		error_at(ld, node, "%s.mode verify-full needs ca (the CA file that signed the server certificates)", path);
}

static void check_proxy(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	(void)path;
	Config *cfg = obj;
	yaml_node_t *buf_node = map_get(ld, node, "buffer_size"), *max_node = map_get(ld, node, "max_message_size");
	if (!error_reported_at(ld, buf_node) && !error_reported_at(ld, max_node) &&
	    cfg->max_message_size < cfg->buffer_size)
		error_at(ld, max_node ? max_node : node,
			 "proxy.max_message_size (%zu bytes) must be at least proxy.buffer_size (%zu bytes)",
			 cfg->max_message_size, cfg->buffer_size);
}

/* The node that gave secret key of map: key, key_file or key_env (NULL: none). */
static yaml_node_t *secret_node(Loader *ld, yaml_node_t *map, const char *key)
{
	char name[64];
	yaml_node_t *v = map_get(ld, map, key);
	snprintf(name, sizeof name, "%s_file", key);
	if (!v)
		v = map_get(ld, map, name);
	snprintf(name, sizeof name, "%s_env", key);
	if (!v)
		v = map_get(ld, map, name);
	return v;
}

static void check_user(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigUser *u = obj;
	const Config *cfg = ld->cfg;
	yaml_node_t *name_node = map_get(ld, node, "name"), *password_node = secret_node(ld, node, "password");
	for (size_t j = 0; u->name && !error_reported_at(ld, name_node) && &cfg->users[j] < u; j++)
		if (cfg->users[j].name && !strcmp(cfg->users[j].name, u->name)) {
			error_at(ld, name_node, "duplicate user \"%s\" in %s (already defined in users[%zu])", u->name,
				 path, j);
			break;
		}
	if (u->password && !error_reported_at(ld, password_node) && !error_reported_at(ld, map_get(ld, node, "auth")))
		check_password(ld, path, password_node, u->password, u->auth);
}

static void check_pool(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigPool *pool = obj;
	yaml_node_t *max_node = map_get(ld, node, "max"), *min_node = map_get(ld, node, "min");
	if (!error_reported_at(ld, max_node) && !error_reported_at(ld, min_node) && pool->min > pool->max)
		error_at(ld, min_node ? min_node : max_node, "%s.min must be at most %s.max (%d), got %d", path, path,
			 pool->max, pool->min);
}

static void check_service(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigService *s = obj;
	if (s->reads == CONFIG_READS_INHERIT && !error_reported_at(ld, map_get(ld, node, "reads")))
		error_at(ld, map_get(ld, node, "reads"), "%s.reads must be primary or replicas", path);
	if (!s->primary.dbname)
		s->primary.dbname = dup_string(ld, s->name);
	/* What a replica does not say, it shares with the primary. */
	for (size_t i = 0; i < s->n_replicas; i++) {
		ConfigBackend *r = &s->replicas[i];
		char **mine[] = {&r->dbname, &r->user, &r->password};
		char *primary[] = {s->primary.dbname, s->primary.user, s->primary.password};
		for (size_t j = 0; j < 3; j++)
			if (!*mine[j] && primary[j])
				*mine[j] = dup_string(ld, primary[j]);
	}
}

/* *name_out's service, or an error at the value of key service. */
static const ConfigService *resolve_service(Loader *ld, yaml_node_t *node, const char *path, const char *name,
					    bool list_known)
{
	const Config *cfg = ld->cfg;
	const ConfigService *s = config_find_service(cfg, name);
	if (s || !name || error_reported_at(ld, map_get(ld, node, "service")))
		return s;
	char known[MSG_LEN / 2] = "";
	size_t used = 0;
	for (size_t j = 0; list_known && j < cfg->n_services && used < sizeof known; j++) {
		int w = snprintf(known + used, sizeof known - used, "%s%s", j ? ", " : "",
				 cfg->services[j].name ? cfg->services[j].name : "");
		if (w < 0)
			break;
		used += (size_t)w;
	}
	if (list_known)
		error_at(ld, map_get(ld, node, "service"), "%s.service names an unknown service \"%s\" (%s%s)", path, name,
			 cfg->n_services ? "defined services: " : "no services are defined", known);
	else
		error_at(ld, map_get(ld, node, "service"), "%s.service names an unknown service \"%s\"", path, name);
	return NULL;
}

static void check_database(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigDatabase *d = obj;
	d->service = resolve_service(ld, node, path, d->service_name, true);
}

static void check_route(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigRoute *r = obj;
	r->line = node ? (int)node->start_mark.line + 1 : 0;
	if (!map_get(ld, node, "schema") && !map_get(ld, node, "tables"))
		error_at(ld, node, "%s needs schema or tables (or both)", path);
	r->service = resolve_service(ld, node, path, r->service_name, false);
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

static void check_cache_rule(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigCacheRule *r = obj;
	r->line = node ? (int)node->start_mark.line + 1 : 0;
	if (!map_get(ld, node, "ttl"))
		r->ttl_ms = ld->cfg->cache.default_ttl_ms;
	if (!map_get(ld, node, "schema") && !map_get(ld, node, "tables"))
		error_at(ld, node, "%s needs schema or tables (or both)", path);
	yaml_node_t *kn = map_get(ld, node, "key");
	if (r->key && !error_reported_at(ld, kn) && (!*r->key || strlen(r->key) > 63 || strpbrk(r->key, " .,\t\"")))
		error_at(ld, kn, "%s.key must be one column name (as PostgreSQL stores it), got \"%s\"", path, r->key);
}

static void check_cache_dependency(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigCacheDependency *d = obj;
	d->line = node ? (int)node->start_mark.line + 1 : 0;
	if (!map_get(ld, node, "also"))
		error_at(ld, node, "%s.also is required (the tables a write to %s also changes)", path,
			 d->table ? d->table : "table");
}

/* cache.redis.signing_key, or the contents of signing_key_file (one trailing newline dropped). */
static void check_cache_redis(Loader *ld, void *obj, yaml_node_t *redis, const char *path)
{
	(void)path;
	ConfigCache *cache = obj;
	yaml_node_t *nodes = map_get(ld, redis, "nodes");
	if (!nodes)
		error_at(ld, redis, "cache.redis.nodes is required (\"host:port\" of Redis, or of some Redis Cluster nodes)");
	for (size_t i = 0; i < cache->n_redis_nodes; i++)
		if (!valid_host_port(cache->redis_nodes[i]))
			error_at(ld, nodes, "cache.redis.nodes[%zu] must be \"host:port\", got \"%s\"", i, cache->redis_nodes[i]);
	if (cache->redis_user && !cache->redis_password)
		error_at(ld, map_get(ld, redis, "user"), "cache.redis.user needs cache.redis.password (AUTH user password)");

	yaml_node_t *key_node, *file_node;
	char *key = NULL, *file = NULL;
	get_string(ld, redis, "cache.redis", "signing_key", STR_NONEMPTY, &key, &key_node);
	get_string(ld, redis, "cache.redis", "signing_key_file", STR_NONEMPTY, &file, &file_node);
	if (key && file) {
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
	} else if (file) {
		FILE *f = fopen(file, "rb");
		char buf[CONFIG_SIGNING_KEY_MAX + 2];
		size_t n = 0;
		if (!f) {
			error_at(ld, file_node, "cache.redis.signing_key_file: cannot open \"%s\": %s", file, strerror(errno));
		} else {
			n = fread(buf, 1, sizeof buf, f);
			bool failed = ferror(f);
			fclose(f);
			if (n && buf[n - 1] == '\n')
				n--;
			if (n && buf[n - 1] == '\r')
				n--;
			if (failed)
				error_at(ld, file_node, "cache.redis.signing_key_file: cannot read \"%s\"", file);
			else if (n > CONFIG_SIGNING_KEY_MAX)
				error_at(ld, file_node, "cache.redis.signing_key_file: \"%s\" holds more than %d bytes", file,
					 CONFIG_SIGNING_KEY_MAX);
			else if (n < CONFIG_SIGNING_KEY_MIN)
				error_at(ld, file_node,
					 "cache.redis.signing_key_file: \"%s\" holds %zu bytes, a key needs at least %d", file,
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
	free(file);
}

static void check_cache_wal(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	ConfigCache *cache = obj;
	cache->wal_service = resolve_service(ld, node, path, cache->wal_service_name, false);
}

static void check_cache(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	(void)path;
	ConfigCache *cache = obj;
	cache->enabled = true;
	yaml_node_t *v = map_get(ld, node, "catalog_refresh");
	if (!error_reported_at(ld, v) && cache->catalog_refresh_ms > 0 && cache->catalog_refresh_ms < 100)
		error_at(ld, v, "cache.catalog_refresh must be 0 (no periodic refresh) or at least 100ms, got %lldms",
			 (long long)cache->catalog_refresh_ms);
}

static void check_admin_http(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	(void)node;
	(void)path;
	Config *cfg = obj;
	if (!cfg->admin.http_host)
		cfg->admin.http_host = dup_string(ld, "127.0.0.1");
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

/* access[i]: every key is read here (type local, the names and their keywords, the address, method's message) */
static void check_access(Loader *ld, void *obj, yaml_node_t *node, const char *path)
{
	char got[96], full[PATH_LEN];
	AccessRule *r = obj;
	const Config *cfg = ld->cfg;
	r->line = (int)node->start_mark.line + 1;

	yaml_node_t *type_node = map_get(ld, node, "type");
	if (type_node && type_node->type == YAML_SCALAR_NODE && !strcmp(scalar_text(type_node), "local")) {
		error_at(ld, type_node, "%s.type: local (Unix-socket clients) cannot match: pgrelay listens only on "
				      "TCP; use host, hostssl or hostnossl", path);
	} else {
		int type = ACCESS_HOST;
		if (get_enum(ld, node, path, "type", access_type_names, &type))
			r->type = (AccessType)type;
	}

	if (load_access_names(ld, node, path, "database", &r->databases, &r->n_databases, &r->all_databases,
			      &r->same_user)) {
		yaml_node_t *db_node = map_get(ld, node, "database");
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
	if (load_access_names(ld, node, path, "user", &r->users, &r->n_users, &r->all_users, NULL)) {
		yaml_node_t *user_node = map_get(ld, node, "user");
		for (size_t j = 0; j < r->n_users; j++)
			if (!config_find_user(cfg, r->users[j]))
				add_warning(ld, user_node->start_mark,
					    "%s.user names \"%s\", who is not in users and cannot log in", path,
					    r->users[j]);
	}

	yaml_node_t *addr_node = map_get(ld, node, "address");
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

	if (!map_get(ld, node, "method")) {
		error_at(ld, node, "%s.method is required (one of: scram-sha-256, md5, password, reject)", path);
	} else {
		int method = ACCESS_REJECT;
		if (get_enum(ld, node, path, "method", access_method_names, &method))
			r->method = (AccessMethod)method;
		for (size_t j = 0; r->method == ACCESS_SCRAM_SHA_256 && j < r->n_users; j++) {
			const ConfigUser *u = config_find_user(cfg, r->users[j]);
			if (u && u->password && is_md5_hash(u->password))
				add_warning(ld, map_get(ld, node, "method")->start_mark,
					    "%s.method is scram-sha-256, but the password of user \"%s\" is an md5 "
					    "hash: that user cannot log in through this rule", path, u->name);
		}
	}
}


static void format_access_names(char *buf, size_t len, char *const *names, size_t n, bool all, bool same_user)
{
	size_t used = 0;
	buf[0] = 0;
	const char *kw[2] = {all ? "all" : NULL, same_user ? "sameuser" : NULL};
	for (size_t i = 0; i < 2 + n && used < len; i++) {
		const char *s = i < 2 ? kw[i] : names[i - 2];
		int w = s ? snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s) : 0;
		if (w < 0)
			return;
		used += (size_t)w;
	}
}

static void format_access_database(const void *obj, char *buf, size_t len)
{
	const AccessRule *r = obj;
	format_access_names(buf, len, r->databases, r->n_databases, r->all_databases, r->same_user);
}

static void format_access_user(const void *obj, char *buf, size_t len)
{
	const AccessRule *r = obj;
	format_access_names(buf, len, r->users, r->n_users, r->all_users, false);
}

static void format_access_address(const void *obj, char *buf, size_t len)
{
	access_format_address(&((const AccessRule *)obj)->address, buf, len);
}

static void free_access_rule(void *item)
{
	access_rule_free(item);
}

static void check_root(Loader *ld, void *obj, yaml_node_t *root, const char *path);

/* ---- the key table ---- */

/* One key of the table: name, type, flags, the field in struct S, then designated extras. */
#define KEY(name_, type_, flags_, field_, ...)                                                                          \
	{.name = name_, .type = type_, .flags = flags_, .offset = offsetof(S, field_), .size = sizeof(((S *)0)->field_), \
	 __VA_ARGS__}
/* A list or sequence: the array and its count. */
#define KEYN(name_, type_, flags_, field_, count_, ...) KEY(name_, type_, flags_, field_, .offset2 = offsetof(S, count_), __VA_ARGS__)
/* A section whose keys are fields of the same struct. */
#define SAME(name_, flags_, sub_, ...) {.name = name_, .type = CONFIG_KEY_SECTION, .flags = flags_, .sub = &sub_, __VA_ARGS__}
#define SCHEMA(keys_, ...) {.keys = keys_, .n_keys = sizeof keys_ / sizeof keys_[0], __VA_ARGS__}
#define R CONFIG_KEY_RELOAD
#define RS CONFIG_KEY_RESTART
#define C CONFIG_KEY_CACHE
#define REQ CONFIG_KEY_REQUIRED
#define NUL CONFIG_KEY_NULLABLE
#define NE CONFIG_KEY_NONEMPTY
#define MAXD MAX_DURATION_MS

#define S ConfigTls
static const ConfigKey listen_tls_keys[] = {
	KEY("mode", CONFIG_KEY_ENUM, R, mode, .def = "disable", .names = tls_mode_names,
	    .doc = "TLS towards clients: disable, allow, prefer (TLS when the client asks) or require"),
	KEY("cert", CONFIG_KEY_STRING, R | NUL | NE, cert, .doc = "certificate chain (PEM file), required unless disabled"),
	KEY("key", CONFIG_KEY_STRING, R | NUL | NE, key, .doc = "private key (PEM file), required unless disabled"),
	KEY("ca", CONFIG_KEY_STRING, R | NUL | NE, ca, .doc = "CA file: clients must then present a certificate it signed"),
};
static const ConfigSchema listen_tls_schema = SCHEMA(listen_tls_keys, .check = check_listen_tls);

static const ConfigKey service_tls_keys[] = {
	KEY("mode", CONFIG_KEY_ENUM, R, mode, .def = "prefer", .names = tls_mode_names,
	    .doc = "TLS towards the servers: disable, prefer, require or verify-full"),
	KEY("ca", CONFIG_KEY_STRING, R | NUL | NE, ca, .doc = "CA file that signed the server certificates (verify-full)"),
	KEY("require_auth", CONFIG_KEY_ENUM, R, require_scram, .def = "any", .names = require_auth_names,
	    .doc = "scram-sha-256: the server must prove it knows the password before pgrelay accepts it"),
};
static const ConfigSchema service_tls_schema = SCHEMA(service_tls_keys, .check = check_service_tls);
#undef S

#define S ConfigUser
static const ConfigKey user_keys[] = {
	KEY("name", CONFIG_KEY_STRING, R | REQ | NE, name, .doc = "the user name clients log in with (unique)"),
	KEY("password", CONFIG_KEY_SECRET, R | REQ | NE, password,
	    .doc = "plain password, md5 hash or SCRAM verifier (or password_file, password_env)"),
	KEY("auth", CONFIG_KEY_ENUM, R, auth, .def = "scram-sha-256", .names = auth_names,
	    .doc = "how the client proves it: scram-sha-256, md5 or password"),
};
static const ConfigSchema user_schema = SCHEMA(user_keys, .item_size = sizeof(S), .check = check_user,
					       .list_what = "must be a sequence (a list of {name, password, auth})");
#undef S

#define S ConfigDatabase
static const ConfigKey database_keys[] = {
	KEY("service", CONFIG_KEY_STRING, R | C | REQ | NE, service_name,
	    .doc = "the service of the statements no route matches"),
	KEY("pool_mode", CONFIG_KEY_ENUM, R, pool_mode, .def = "transaction", .names = pool_mode_names,
	    .doc = "transaction or session pooling"),
};
static const ConfigSchema database_schema = SCHEMA(database_keys, .item_size = sizeof(S), .name_offset = offsetof(S, name),
						   .name_what = "database", .check = check_database);
#undef S

#define S ConfigBackend
static const ConfigKey backend_keys[] = {
	KEY("host", CONFIG_KEY_STRING, R | C | REQ | NE, host, .doc = "host name, address or Unix socket directory"),
	KEY("port", CONFIG_KEY_INT, R | C, port, .def = "5432", .min = 1, .max = 65535, .doc = "TCP port"),
	KEY("dbname", CONFIG_KEY_STRING, R | C | NE, dbname,
	    .doc = "database name (default: the service name; replicas: the primary's)"),
	KEY("user", CONFIG_KEY_STRING, R | C | NUL | NE, user,
	    .doc = "role pgrelay logs in as (default: the client's user; replicas: the primary's)"),
	KEY("password", CONFIG_KEY_SECRET, R | NUL | NE, password,
	    .doc = "password of user (or password_file, password_env; replicas: the primary's)"),
};
static const ConfigSchema backend_schema = SCHEMA(backend_keys);
static const ConfigSchema replica_schema =
	SCHEMA(backend_keys, .item_size = sizeof(S), .list_what = "must be a list of {host, port}");
#undef S

#define S ConfigPool
static const ConfigKey pool_keys[] = {
	KEY("max", CONFIG_KEY_INT, R, max, .def = "20", .min = 1, .max = 100000, .doc = "server connections at most"),
	KEY("min", CONFIG_KEY_INT, R, min, .def = "0", .min = 0, .max = 100000, .doc = "server connections kept open, at most max"),
	KEY("idle_timeout", CONFIG_KEY_DURATION, R, idle_timeout_ms, .def = "600s", .max = MAXD,
	    .doc = "idle server connections above min close after this (0: never)"),
	KEY("connect_timeout", CONFIG_KEY_DURATION, R, connect_timeout_ms, .def = "5s", .min = 1, .max = MAXD,
	    .doc = "a server connection and its login must finish within this"),
	KEY("statement_timeout", CONFIG_KEY_DURATION, R, statement_timeout_ms, .def = "0", .max = MAX_STATEMENT_TIMEOUT_MS,
	    .doc = "sent to the server at startup (0: not sent)"),
	KEY("query_wait_timeout", CONFIG_KEY_DURATION, R, query_wait_timeout_ms, .def = "120s", .max = MAXD,
	    .doc = "how long a client waits for a server connection (0: forever)"),
	KEY("server_lifetime", CONFIG_KEY_DURATION, R, server_lifetime_ms, .def = "3600s", .max = MAXD,
	    .doc = "server connections older than this close once free (0: unlimited)"),
};
static const ConfigSchema pool_schema = SCHEMA(pool_keys, .check = check_pool);
#undef S

#define S ConfigService
static const ConfigKey functions_keys[] = {
	KEYN("read_only", CONFIG_KEY_LIST, R | C, read_only_functions, n_read_only_functions,
	     .doc = "user functions that only read (f or schema.f)"),
	KEYN("writes", CONFIG_KEY_LIST, R | C, writing_functions, n_writing_functions,
	     .doc = "user functions that write (f or schema.f)"),
};
static const ConfigSchema functions_schema = SCHEMA(functions_keys);

static const ConfigKey service_keys[] = {
	KEY("primary", CONFIG_KEY_SECTION, R | REQ, primary, .sub = &backend_schema, .doc = "the primary server"),
	KEYN("replicas", CONFIG_KEY_ITEMS, R | C, replicas, n_replicas, .sub = &replica_schema,
	     .doc = "streaming replicas of the primary"),
	KEY("reads", CONFIG_KEY_ENUM, R, reads, .def = "primary", .names = reads_names,
	    .doc = "replicas: read-only statements may go to a healthy replica"),
	KEY("balance", CONFIG_KEY_ENUM, R, balance, .def = "round-robin", .names = balance_names,
	    .doc = "how reads are spread over replicas: round-robin or least-outstanding"),
	SAME("functions", R, functions_schema, .doc = "user functions, read-only or writing"),
	KEY("pool", CONFIG_KEY_SECTION, R, pool, .sub = &pool_schema, .doc = "server connections per (service, user)"),
	KEY("tls", CONFIG_KEY_SECTION, R, tls, .sub = &service_tls_schema, .doc = "TLS towards the servers"),
};
static const ConfigSchema service_schema = SCHEMA(service_keys, .item_size = sizeof(S), .name_offset = offsetof(S, name),
						  .name_what = "service", .check = check_service);
#undef S

#define S ConfigRoute
static const ConfigKey route_keys[] = {
	KEYN("schema", CONFIG_KEY_LIST, R | C, schemas, n_schemas, .doc = "schema globs the rule matches"),
	KEYN("tables", CONFIG_KEY_LIST, R | C, tables, n_tables, .doc = "table globs (or schema.table) the rule matches"),
	KEY("service", CONFIG_KEY_STRING, R | C | REQ | NE, service_name, .doc = "where matching statements go"),
	KEY("reads", CONFIG_KEY_ENUM, R, reads, .names = reads_names,
	    .doc = "primary or replicas (default: the service's reads)"),
};
static const ConfigSchema route_schema = SCHEMA(route_keys, .item_size = sizeof(S), .check = check_route,
						.list_what = "must be a list of {schema | tables, service, reads}");
#undef S

#define S ConfigCacheRule
static const ConfigKey cache_rule_keys[] = {
	KEYN("schema", CONFIG_KEY_LIST, R | C, schemas, n_schemas, .doc = "schema globs the rule covers"),
	KEYN("tables", CONFIG_KEY_LIST, R | C, tables, n_tables, .doc = "table globs (or schema.table) the rule covers"),
	KEY("ttl", CONFIG_KEY_DURATION, R | C, ttl_ms, .max = MAXD, .doc = "how long results stay (default cache.ttl; 0: never cached)"),
	KEY("key", CONFIG_KEY_STRING, R | C, key, .doc = "a column naming rows: key = value reads and writes invalidate by row"),
};
static const ConfigSchema cache_rule_schema = SCHEMA(cache_rule_keys, .item_size = sizeof(S), .check = check_cache_rule,
						     .list_what = "must be a list of {schema | tables, ttl}");
#undef S

#define S ConfigCacheDependency
static const ConfigKey cache_dependency_keys[] = {
	KEY("table", CONFIG_KEY_STRING, R | C | REQ | NE, table, .doc = "writes to this table (glob) ..."),
	KEYN("also", CONFIG_KEY_LIST, R | C, also, n_also, .doc = "... also invalidate these tables"),
};
static const ConfigSchema cache_dependency_schema =
	SCHEMA(cache_dependency_keys, .item_size = sizeof(S), .check = check_cache_dependency,
	       .list_what = "must be a list of {table, also: [tables]}");
#undef S

#define S ConfigCache
static const ConfigKey cache_l1_keys[] = {
	KEY("max_memory", CONFIG_KEY_SIZE, R, l1_max_memory, .def = "256MB", .max = (int64_t)(1024 * GB),
	    .doc = "bytes of results kept in memory (0: no L1)"),
	KEY("policy", CONFIG_KEY_ENUM, R, l1_policy, .def = "s3fifo", .names = cache_policy_names, .doc = "eviction: s3fifo"),
	KEY("max_result", CONFIG_KEY_SIZE, RS, max_result, .def = "1MB", .min = 1, .max = (int64_t)GB,
	    .doc = "larger results are not stored"),
};
static const ConfigSchema cache_l1_schema = SCHEMA(cache_l1_keys);

static const ConfigKey cache_redis_keys[] = {
	KEYN("nodes", CONFIG_KEY_LIST, RS, redis_nodes, n_redis_nodes, .doc = "\"host:port\" of Redis (or of some Cluster nodes)"),
	KEY("cluster", CONFIG_KEY_BOOL, RS, redis_cluster, .def = "false", .doc = "Redis Cluster"),
	KEY("timeout", CONFIG_KEY_DURATION, RS, redis_timeout_ms, .def = "20ms", .min = 1, .max = 60000,
	    .doc = "per command; Redis slower than that is treated as down"),
	KEY("user", CONFIG_KEY_STRING, RS | NUL | NE, redis_user, .doc = "ACL user (AUTH user password)"),
	KEY("password", CONFIG_KEY_SECRET, RS | NUL, redis_password, .doc = "AUTH password (or password_file, password_env)"),
	KEY("prefix", CONFIG_KEY_STRING, RS | NE, redis_prefix, .def = "pgrelay", .doc = "of every key and of the channel"),
	KEY("signing_key", CONFIG_KEY_SECRET, RS | CONFIG_KEY_BY_CHECK | CONFIG_KEY_NO_ENV, redis_signing_key,
	    .offset2 = offsetof(S, redis_signing_key_len),
	    .doc = "HMAC-SHA256 key (32 bytes at least) of results kept in Redis (or signing_key_file)"),
};
static const ConfigSchema cache_redis_schema = SCHEMA(cache_redis_keys, .check = check_cache_redis);

static const ConfigKey cache_wal_keys[] = {
	KEY("service", CONFIG_KEY_STRING, RS | REQ | NE, wal_service_name, .doc = "the service whose primary streams its changes"),
	KEY("slot", CONFIG_KEY_STRING, RS | NE, wal_slot, .def = "pgrelay_cache", .doc = "logical replication slot"),
	KEY("user", CONFIG_KEY_STRING, RS | NE, wal_user, .doc = "a role with REPLICATION (default: the primary's user)"),
	KEY("password", CONFIG_KEY_SECRET, RS | NUL, wal_password, .doc = "its password (or password_file, password_env)"),
};
static const ConfigSchema cache_wal_schema = SCHEMA(cache_wal_keys, .check = check_cache_wal);

static const ConfigKey cache_keys[] = {
	SAME("l1", R, cache_l1_schema, .doc = "the in-memory store"),
	SAME("redis", RS, cache_redis_schema, .doc = "shared versions between instances, and L2"),
	KEY("ttl", CONFIG_KEY_DURATION, R | C, default_ttl_ms, .def = "60s", .min = 1, .max = MAXD, .doc = "TTL of a rule that gives none"),
	KEYN("rules", CONFIG_KEY_ITEMS, R | C, rules, n_rules, .sub = &cache_rule_schema,
	     .doc = "which tables are cached; first match wins"),
	KEYN("invalidate", CONFIG_KEY_ITEMS, R | C, dependencies, n_dependencies, .sub = &cache_dependency_schema,
	     .doc = "writes to a table also invalidate others"),
	SAME("wal_listener", RS | NUL, cache_wal_schema, .doc = "invalidation from the WAL: writes made around pgrelay"),
	KEY("catalog_refresh", CONFIG_KEY_DURATION, R, catalog_refresh_ms, .def = "60s", .max = 24 * 3600 * 1000,
	    .doc = "each service's catalog is read again this often (0: at start and after DDL only)"),
};
static const ConfigSchema cache_schema = SCHEMA(cache_keys, .check = check_cache);
#undef S

#define S AccessRule
static const ConfigKey access_keys[] = {
	KEY("type", CONFIG_KEY_ENUM, R | CONFIG_KEY_BY_CHECK, type, .def = "host", .names = access_type_names,
	    .doc = "host (TLS or not), hostssl or hostnossl"),
	{.name = "database", .type = CONFIG_KEY_CUSTOM, .flags = R | CONFIG_KEY_BY_CHECK, .def = "all",
	 .format = format_access_database, .doc = "names, all, sameuser (pgrelay or pgbouncer: the console)"},
	{.name = "user", .type = CONFIG_KEY_CUSTOM, .flags = R | CONFIG_KEY_BY_CHECK, .def = "all",
	 .format = format_access_user, .doc = "names or all"},
	{.name = "address", .type = CONFIG_KEY_CUSTOM, .flags = R | CONFIG_KEY_BY_CHECK, .def = "all",
	 .format = format_access_address, .doc = "all, an IP address or a CIDR block"},
	KEY("method", CONFIG_KEY_ENUM, R | CONFIG_KEY_BY_CHECK, method, .names = access_method_names,
	    .doc = "scram-sha-256, md5, password or reject (required)"),
};
static const ConfigSchema access_schema = SCHEMA(access_keys, .item_size = sizeof(S), .check = check_access,
						 .free_item = free_access_rule,
						 .list_what = "must be a list of {type, database, user, address, method}",
						 .item_what = "{type, database, user, address, method}");
#undef S

#define S ConfigHealth
static const ConfigKey health_keys[] = {
	KEY("interval", CONFIG_KEY_DURATION, R, interval_ms, .def = "1s", .min = 100, .max = MAXD,
	    .doc = "how often each backend is probed"),
	KEY("timeout", CONFIG_KEY_DURATION, R, timeout_ms, .def = "2s", .min = 100, .max = MAXD,
	    .doc = "a probe slower than this fails"),
	KEY("fail_after", CONFIG_KEY_INT, R, fail_after, .def = "3", .min = 1, .max = 1000,
	    .doc = "failures in a row that mark a backend down"),
	KEY("recover_after", CONFIG_KEY_INT, R, recover_after, .def = "2", .min = 1, .max = 1000,
	    .doc = "successes in a row that mark it up again"),
	KEY("max_lag", CONFIG_KEY_LAG, R, max_lag_bytes, .offset2 = offsetof(S, max_lag_ms), .def = "16MB",
	    .doc = "a replica further behind gets no reads: WAL bytes (16MB) or replay delay (10s)"),
};
static const ConfigSchema health_schema = SCHEMA(health_keys);
#undef S

#define S Config
static const ConfigKey listen_keys[] = {
	KEY("host", CONFIG_KEY_STRING, RS | NE, listen.host, .def = "127.0.0.1", .doc = "address clients connect to"),
	KEY("port", CONFIG_KEY_INT, RS, listen.port, .def = "6432", .min = 1, .max = 65535, .doc = "TCP port"),
	KEY("max_client_conn", CONFIG_KEY_INT, R, listen.max_client_conn, .def = "10000", .min = 1, .max = 1000000,
	    .doc = "client connections at once"),
	KEY("backlog", CONFIG_KEY_INT, RS, listen.backlog, .def = "1024", .min = 1, .max = 65535,
	    .doc = "the listen(2) queue length"),
	KEY("tls", CONFIG_KEY_SECTION, R, listen.tls, .sub = &listen_tls_schema, .doc = "TLS towards clients"),
	KEY("upgrade_socket", CONFIG_KEY_STRING, RS | CONFIG_KEY_NULL_EMPTY, listen.upgrade_socket,
	    .doc = "control socket of the hand-over to a new pgrelay (default by uid, host and port; \"\": none)"),
};
static const ConfigSchema listen_schema = SCHEMA(listen_keys, .check = check_listen);

static const ConfigKey log_keys[] = {
	KEY("level", CONFIG_KEY_ENUM, R, log.level, .def = "info", .names = log_level_names,
	    .doc = "debug, info, warning or error"),
	KEY("format", CONFIG_KEY_ENUM, R, log.json, .def = "text", .names = log_format_names,
	    .doc = "text, or json: one JSON object per line"),
	KEY("slow_query", CONFIG_KEY_DURATION, R, log.slow_query_ms, .def = "0", .max = MAXD,
	    .doc = "statements slower than this are logged, normalized (0: off)"),
	KEY("stats_period", CONFIG_KEY_DURATION, R, log.stats_period_ms, .def = "60s", .max = MAXD,
	    .doc = "a stats line every period (0: none)"),
};
static const ConfigSchema log_schema = SCHEMA(log_keys);

static const ConfigKey proxy_keys[] = {
	KEY("shutdown_timeout", CONFIG_KEY_DURATION, R, shutdown_timeout_ms, .def = "30s", .max = MAXD,
	    .doc = "how long a graceful shutdown waits for clients"),
	KEY("buffer_size", CONFIG_KEY_SIZE, R, buffer_size, .def = "64kB", .min = (int64_t)(4 * KB), .max = (int64_t)(16 * MB),
	    .doc = "read buffer of each new connection"),
	KEY("max_message_size", CONFIG_KEY_SIZE, R, max_message_size, .def = "64MB", .min = (int64_t)(4 * KB),
	    .max = (int64_t)GB, .doc = "largest protocol message of a new connection"),
	KEY("server_reset_query", CONFIG_KEY_STRING, R | CONFIG_KEY_NULL_EMPTY, server_reset_query, .def = "DISCARD ALL",
	    .doc = "run when a server connection returns to the pool (\"\": none)"),
	KEY("application_name", CONFIG_KEY_STRING, R | CONFIG_KEY_NULL_EMPTY, application_name, .def = "pgrelay",
	    .doc = "sent to new server connections"),
	KEY("max_prepared_statements", CONFIG_KEY_INT, R, max_prepared_statements, .def = "200", .min = 0, .max = 100000,
	    .doc = "named prepared statements each server connection keeps (0: off)"),
	KEY("max_client_prepared_memory", CONFIG_KEY_SIZE, R, max_client_prepared_memory, .def = "64MB",
	    .min = (int64_t)(64 * KB), .max = (int64_t)(64 * GB), .doc = "bytes of named prepared statements one client may hold"),
	KEY("allow_cleartext_without_tls", CONFIG_KEY_BOOL, R, allow_cleartext_without_tls, .def = "false",
	    .doc = "cleartext passwords over plain TCP"),
};
static const ConfigSchema proxy_schema = SCHEMA(proxy_keys, .check = check_proxy);

static const ConfigKey admin_http_keys[] = {
	KEY("host", CONFIG_KEY_STRING, R | NE, admin.http_host, .doc = "address of GET /metrics and /health (default 127.0.0.1)"),
	KEY("port", CONFIG_KEY_INT, R | REQ, admin.http_port, .min = 1, .max = 65535, .doc = "its TCP port"),
};
static const ConfigSchema admin_http_schema = SCHEMA(admin_http_keys, .check = check_admin_http);

static const ConfigKey admin_keys[] = {
	KEYN("users", CONFIG_KEY_LIST, R, admin.users, admin.n_users, .doc = "users who may run every console command"),
	KEYN("stats_users", CONFIG_KEY_LIST, R, admin.stats_users, admin.n_stats_users, .doc = "users who may run SHOW"),
	SAME("http", R | NUL, admin_http_schema, .doc = "the HTTP endpoint"),
	KEY("histograms", CONFIG_KEY_BOOL, R, admin.histograms, .def = "true", .doc = "latency histograms"),
};
static const ConfigSchema admin_schema = SCHEMA(admin_keys);

static const ConfigKey top_keys[] = {
	SAME("listen", R, listen_schema, .doc = "where clients connect"),
	SAME("log", R, log_schema, .doc = "the log"),
	SAME("proxy", R, proxy_schema, .doc = "connections and statements"),
	KEYN("users", CONFIG_KEY_ITEMS, R, users, n_users, .sub = &user_schema, .doc = "who may connect to pgrelay"),
	KEYN("routes", CONFIG_KEY_ITEMS, R | C | CONFIG_KEY_LATE, routes, n_routes, .sub = &route_schema,
	     .doc = "which service a statement goes to; first match wins"),
	KEY("health", CONFIG_KEY_SECTION, R, health, .sub = &health_schema, .doc = "health checks of every backend"),
	KEYN("databases", CONFIG_KEY_NAMED, R | C | CONFIG_KEY_LATE, databases, n_databases, .sub = &database_schema,
	     .doc = "the database names clients connect to"),
	KEYN("services", CONFIG_KEY_NAMED, R, services, n_services, .sub = &service_schema,
	     .doc = "the PostgreSQL servers behind pgrelay"),
	KEY("cache", CONFIG_KEY_SECTION, R | NUL | CONFIG_KEY_LATE, cache, .sub = &cache_schema, .doc = "the result cache"),
	SAME("admin", R | NUL, admin_schema, .doc = "the console, the HTTP endpoint, histograms"),
	KEYN("access", CONFIG_KEY_ITEMS, R | CONFIG_KEY_LATE, access, n_access, .sub = &access_schema,
	     .doc = "client access rules, as pg_hba.conf; first match wins"),
};
static const ConfigSchema top_schema = SCHEMA(top_keys, .check = check_root);
#undef S

const ConfigSchema *config_schema(void)
{
	return &top_schema;
}

#undef KEY
#undef KEYN
#undef SAME
#undef SCHEMA
#undef R
#undef RS
#undef C
#undef REQ
#undef NUL
#undef NE
#undef MAXD

static void check_root(Loader *ld, void *obj, yaml_node_t *root, const char *path)
{
	(void)path;
	Config *cfg = obj;
	yaml_node_t *databases = map_get(ld, root, "databases"), *services = map_get(ld, root, "services");
	if (!databases || is_null(databases) || (databases->type == YAML_MAPPING_NODE && mapping_size(databases) == 0))
		error_at(ld, databases ? databases : root, "no databases defined");
	if (!services || is_null(services) || (services->type == YAML_MAPPING_NODE && mapping_size(services) == 0))
		error_at(ld, services ? services : root, "no services defined");
	yaml_node_t *access = map_get(ld, root, "access");
	if (access && access->type == YAML_SEQUENCE_NODE && access->data.sequence.items.top == access->data.sequence.items.start)
		error_at(ld, access, "access has no rules, so every connection would be refused (remove the section to "
				     "let every user in, or end with a reject rule)");
	cfg->access_enabled = cfg->n_access > 0;
}

static void load_root(Loader *ld, Config *cfg, yaml_node_t *root)
{
	if (root && is_null(root))
		root = NULL; /* "---" alone, or a document of only comments */
	if (check_mapping(ld, root, "", &top_schema))
		walk_section(ld, &top_schema, cfg, root, "");
}

/* ---- lifecycle ---- */

static void free_string_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* What obj (a struct of schema's section) owns, by the table. */
static void free_section(const ConfigSchema *schema, void *obj)
{
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *k = &schema->keys[i];
		void *f = field_at(obj, k->offset);
		switch (k->type) {
		case CONFIG_KEY_SECRET:
			if (*(char **)f)
				explicit_bzero(*(char **)f, k->offset2 ? *(size_t *)field_at(obj, k->offset2) : strlen(*(char **)f));
			/* fall through */
		case CONFIG_KEY_STRING:
			free(*(char **)f);
			break;
		case CONFIG_KEY_LIST:
			free_string_list(*(char ***)f, *(size_t *)field_at(obj, k->offset2));
			break;
		case CONFIG_KEY_SECTION:
			free_section(k->sub, f);
			break;
		case CONFIG_KEY_ITEMS:
		case CONFIG_KEY_NAMED: {
			char *items = *(char **)f;
			for (size_t j = 0; j < *(size_t *)field_at(obj, k->offset2); j++) {
				void *it = items + j * k->sub->item_size;
				if (k->sub->free_item)
					k->sub->free_item(it);
				else
					free_section(k->sub, it);
				if (k->type == CONFIG_KEY_NAMED)
					free(*(char **)field_at(it, k->sub->name_offset));
			}
			free(items);
			break;
		}
		default:
			break;
		}
	}
}

static void config_free(Config *cfg)
{
	for (size_t i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	free(cfg->path);
	free_section(&top_schema, cfg);
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
	apply_defaults(ld, &top_schema, cfg);
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

void config_format_size(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
	size_t u = 0;
	if (bytes == 0) {
		snprintf(buf, len, "0");
		return;
	}
	while (u + 1 < sizeof units / sizeof units[0] && bytes % 1024 == 0) {
		bytes /= 1024;
		u++;
	}
	snprintf(buf, len, "%llu%s", (unsigned long long)bytes, units[u]);
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
