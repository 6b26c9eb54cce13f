/*
 * router — rule matching, search_path resolution and read-only analysis (see router.h).
 *
 * Everything is plain loops over the analysis and Config.routes; fnmatch(3) for globs; the
 * search_path is parsed at most once per call, into a stack buffer, and only when an
 * unqualified relation needs it. Nothing is allocated and nothing formatted while routing.
 */
#include "router.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- built-in functions (pg_catalog), sorted by strcmp for bsearch ---- */

/* Known to change data or state beyond the statement, or to fail on a hot standby. */
static const char *const builtin_writes[] = {
	"currval", "lastval", "nextval", "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock",
	"pg_advisory_unlock_all", "pg_advisory_unlock_shared", "pg_advisory_xact_lock",
	"pg_advisory_xact_lock_shared", "pg_backup_start", "pg_backup_stop", "pg_cancel_backend",
	"pg_copy_logical_replication_slot", "pg_copy_physical_replication_slot",
	"pg_create_logical_replication_slot", "pg_create_physical_replication_slot", "pg_create_restore_point",
	"pg_current_wal_flush_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_lsn", "pg_current_xact_id",
	"pg_drop_replication_slot", "pg_export_snapshot", "pg_import_system_collations",
	"pg_log_backend_memory_contexts", "pg_logical_emit_message", "pg_logical_slot_get_binary_changes",
	"pg_logical_slot_get_changes", "pg_logical_slot_peek_binary_changes", "pg_logical_slot_peek_changes",
	"pg_notify", "pg_promote", "pg_reload_conf", "pg_replication_slot_advance", "pg_rotate_logfile",
	"pg_start_backup", "pg_stop_backup", "pg_switch_wal", "pg_terminate_backend", "pg_try_advisory_lock",
	"pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
	"pg_wal_replay_pause", "pg_wal_replay_resume", "set_config", "setseed", "setval", "txid_current",
};
static const char *const write_prefixes[] = {"dblink", "lo_", "pg_replication_origin_", "pg_stat_reset"};

/* Known to read only: no effect outside the statement's result, fine on a hot standby. */
static const char *const builtin_read_safe[] = {
	"abs", "acos", "acosd", "acosh", "age", "array_agg", "asin", "asind", "asinh", "atan", "atan2", "atan2d",
	"atand", "atanh", "avg", "bit_and", "bit_count", "bit_length", "bit_or", "bit_xor", "bool", "bool_and",
	"bool_or", "bpchar", "btrim", "bytea", "cardinality", "cbrt", "ceil", "ceiling", "char_length",
	"character_length", "chr", "clock_timestamp", "col_description", "concat", "concat_ws", "convert",
	"convert_from", "convert_to", "corr", "cos", "cosd", "cosh", "cot", "cotd", "count", "covar_pop",
	"covar_samp", "cume_dist", "current_database", "current_query", "current_schema", "current_schemas",
	"current_setting", "date", "daterange", "decode", "degrees", "dense_rank", "div", "encode", "every", "exp",
	"extract", "factorial", "family", "first_value", "float4", "float8", "floor", "format", "format_type",
	"gcd", "gen_random_uuid", "generate_series", "generate_subscripts", "get_bit", "get_byte",
	"getdatabaseencoding", "grouping", "host", "hostmask", "inet", "inet_client_addr", "inet_client_port",
	"inet_merge", "inet_same_family", "inet_server_addr", "inet_server_port", "initcap", "int2", "int4",
	"int4range", "int8", "int8range", "interval", "is_normalized", "isempty", "isfinite", "justify_days",
	"justify_hours", "justify_interval", "lag", "last_value", "lcm", "lead", "left", "length", "like_escape",
	"ln", "localtimestamp", "log", "log10", "lower", "lower_inc", "lower_inf", "lpad", "ltrim", "masklen",
	"max", "md5", "min", "min_scale", "mod", "mode", "mxid_age", "netmask", "network", "normalize", "now",
	"nth_value", "ntile", "num_nonnulls", "num_nulls", "numeric", "numnode", "numrange", "obj_description",
	"octet_length", "overlaps", "overlay", "parse_ident", "percent_rank", "percentile_cont", "percentile_disc",
	"pg_backend_pid", "pg_blocking_pids", "pg_char_to_encoding", "pg_client_encoding", "pg_collation_for",
	"pg_column_compression", "pg_column_size", "pg_conf_load_time", "pg_current_snapshot",
	"pg_current_xact_id_if_assigned", "pg_database_size", "pg_describe_object", "pg_encoding_to_char",
	"pg_function_is_visible", "pg_has_role", "pg_identify_object", "pg_indexes_size", "pg_jit_available",
	"pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp",
	"pg_listening_channels", "pg_my_temp_schema", "pg_notification_queue_usage", "pg_opclass_is_visible",
	"pg_operator_is_visible", "pg_options_to_table", "pg_postmaster_start_time", "pg_relation_filenode",
	"pg_relation_filepath", "pg_relation_size", "pg_safe_snapshot_blocking_pids", "pg_sleep", "pg_sleep_for",
	"pg_sleep_until", "pg_snapshot_xmax", "pg_snapshot_xmin", "pg_table_is_visible", "pg_table_size",
	"pg_tablespace_location", "pg_tablespace_size", "pg_total_relation_size", "pg_trigger_depth",
	"pg_type_is_visible", "pg_typeof", "pg_wal_lsn_diff", "pg_xact_commit_timestamp", "pg_xact_status",
	"phraseto_tsquery", "pi", "plainto_tsquery", "position", "power", "querytree", "quote_ident",
	"quote_literal", "quote_nullable", "radians", "random", "range_agg", "range_intersect_agg", "range_merge",
	"rank", "regclass", "repeat", "replace", "reverse", "right", "round", "row_number", "row_security_active",
	"row_to_json", "rpad", "rtrim", "scale", "set_bit", "set_byte", "set_masklen", "setweight", "sha224",
	"sha256", "sha384", "sha512", "shobj_description", "sign", "similar_to_escape", "sin", "sind", "sinh",
	"split_part", "sqrt", "starts_with", "statement_timestamp", "stddev", "stddev_pop", "stddev_samp", "strip",
	"strpos", "substr", "substring", "sum", "tan", "tand", "tanh", "text", "textlen", "time", "timeofday",
	"timestamp", "timestamptz", "timezone", "transaction_timestamp", "translate", "trim_array", "trim_scale",
	"trunc", "tsrange", "tstzrange", "tsvector_to_array", "txid_current_if_assigned", "txid_current_snapshot",
	"txid_snapshot_xip", "txid_snapshot_xmax", "txid_snapshot_xmin", "txid_status", "txid_visible_in_snapshot",
	"unistr", "unnest", "upper", "upper_inc", "upper_inf", "uuid", "var_pop", "var_samp", "varchar", "variance",
	"version", "websearch_to_tsquery", "width_bucket", "xmlagg",
};
static const char *const read_safe_prefixes[] = {"array_", "date_", "has_",   "json_",   "jsonb_",       "make_",
						 "pg_get_", "pg_is_", "pg_size_", "pg_stat_get_", "regexp_", "regr_",
						 "string_", "to_",    "ts_"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int str_cmp(const void *key, const void *elem) { return strcmp(key, *(const char *const *)elem); }

static bool in_list(const char *name, const char *const *list, size_t n)
{
	return bsearch(name, list, n, sizeof(*list), str_cmp) != NULL;
}

static bool has_prefix_in(const char *name, const char *const *prefixes, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return true;
	return false;
}

const char *const *router_builtin_functions(bool writes, size_t *n)
{
	*n = writes ? N_OF(builtin_writes) : N_OF(builtin_read_safe);
	return writes ? builtin_writes : builtin_read_safe;
}

/* A declared function ("f" or "s.f") against a call (name, its base, qualified or not). */
static bool declared_match(const char *decl, const char *call, const char *base, bool qualified, bool for_writes)
{
	const char *dot = strrchr(decl, '.');
	if (!dot)
		return strcmp(decl, base) == 0;
	if (qualified)
		return strcmp(decl, call) == 0;
	return for_writes && strcmp(dot + 1, base) == 0;
}

bool router_function_known(const ConfigService *svc, const char *name)
{
	const char *why;
	if (router_function_safety(svc, name, &why) == ROUTER_FN_READ_SAFE)
		return true;
	const char *dot = strrchr(name, '.');
	const char *base = dot ? dot + 1 : name;
	if (svc)
		for (size_t i = 0; i < svc->n_writing_functions; i++)
			if (declared_match(svc->writing_functions[i], name, base, dot != NULL, true))
				return true;
	if (dot && !(dot - name == 10 && strncmp(name, "pg_catalog", 10) == 0))
		return false;
	return in_list(base, builtin_writes, N_OF(builtin_writes)) ||
	       has_prefix_in(base, write_prefixes, N_OF(write_prefixes));
}

RouterFnSafety router_function_safety(const ConfigService *svc, const char *name, const char **why)
{
	const char *dot = strrchr(name, '.');
	const char *base = dot ? dot + 1 : name;
	bool qualified = dot != NULL;
	if (svc) {
		for (size_t i = 0; i < svc->n_writing_functions; i++)
			if (declared_match(svc->writing_functions[i], name, base, qualified, true)) {
				*why = "declared in functions.writes";
				return ROUTER_FN_WRITES;
			}
		for (size_t i = 0; i < svc->n_read_only_functions; i++)
			if (declared_match(svc->read_only_functions[i], name, base, qualified, false)) {
				*why = "declared in functions.read_only";
				return ROUTER_FN_READ_SAFE;
			}
	}
	if (!qualified || (dot - name == 10 && strncmp(name, "pg_catalog", 10) == 0)) {
		if (in_list(base, builtin_writes, N_OF(builtin_writes)) ||
		    has_prefix_in(base, write_prefixes, N_OF(write_prefixes))) {
			*why = "built-in with effects beyond the statement";
			return ROUTER_FN_WRITES;
		}
		if (in_list(base, builtin_read_safe, N_OF(builtin_read_safe)) ||
		    has_prefix_in(base, read_safe_prefixes, N_OF(read_safe_prefixes))) {
			*why = "built-in, read-safe";
			return ROUTER_FN_READ_SAFE;
		}
	}
	*why = "not known to be read-only";
	return ROUTER_FN_WRITES;
}

/* ---- search_path ---- */

#define MAX_PATH_SCHEMAS 16

typedef struct SearchPath {
	bool parsed;
	int n;
	char names[MAX_PATH_SCHEMAS][128];
} SearchPath;

/* PostgreSQL's list syntax: identifiers separated by commas, unquoted ones folded to lower case. */
static void parse_search_path(SearchPath *sp, const char *text, const char *user)
{
	sp->parsed = true;
	sp->n = 0;
	const char *p = text ? text : "\"$user\", public";
	while (*p && sp->n < MAX_PATH_SCHEMAS) {
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		char buf[128];
		size_t k = 0;
		if (*p == '"') {
			for (p++; *p; p++) {
				if (*p == '"') {
					if (p[1] != '"') {
						p++;
						break;
					}
					p++;
				}
				if (k + 1 < sizeof buf)
					buf[k++] = *p;
			}
		} else {
			for (; *p && *p != ','; p++)
				if (k + 1 < sizeof buf)
					buf[k++] = (char)tolower((unsigned char)*p);
			while (k > 0 && isspace((unsigned char)buf[k - 1]))
				k--;
		}
		buf[k] = 0;
		while (*p && *p != ',')
			p++;
		const char *name = buf;
		if (strcmp(buf, "$user") == 0) {
			if (!user || !*user)
				continue;
			name = user;
		}
		if (!*name || strcmp(name, "pg_catalog") == 0 || strncmp(name, "pg_temp", 7) == 0)
			continue;
		snprintf(sp->names[sp->n++], sizeof sp->names[0], "%s", name);
	}
}

size_t router_search_path(const char *search_path, const char *user, char (*out)[128], size_t max)
{
	SearchPath sp;
	parse_search_path(&sp, search_path, user);
	size_t n = 0;
	for (int i = 0; i < sp.n && n < max; i++)
		memcpy(out[n++], sp.names[i], sizeof sp.names[i]);
	return n;
}

/* ---- rules ---- */

static bool glob(const char *pattern, const char *s) { return fnmatch(pattern, s, 0) == 0; }

enum { NO_MATCH = ROUTER_NO_MATCH, MATCH_SCHEMA = ROUTER_MATCH_SCHEMA, MATCH_NAME = ROUTER_MATCH_NAME };

int router_match_names(char *const *schemas, size_t n_schemas, char *const *tables, size_t n_tables,
		       const char *schema, const char *name)
{
	bool by_schema = false;
	if (n_schemas) {
		if (!schema)
			return ROUTER_NO_MATCH;
		size_t i = 0;
		while (i < n_schemas && !glob(schemas[i], schema))
			i++;
		if (i == n_schemas)
			return ROUTER_NO_MATCH;
		by_schema = true;
	}
	if (n_tables) {
		bool ok = false;
		for (size_t i = 0; i < n_tables && !ok; i++) {
			const char *pat = tables[i], *dot = strchr(pat, '.');
			if (!dot) {
				ok = glob(pat, name);
				continue;
			}
			char ps[128];
			size_t n = (size_t)(dot - pat);
			if (!schema || n >= sizeof ps)
				continue;
			memcpy(ps, pat, n);
			ps[n] = 0;
			if (glob(ps, schema) && glob(dot + 1, name)) {
				ok = true;
				by_schema = true;
			}
		}
		if (!ok)
			return ROUTER_NO_MATCH;
	}
	return by_schema ? ROUTER_MATCH_SCHEMA : ROUTER_MATCH_NAME;
}

/* Whether rule r matches (schema, name); schema NULL: a bare name (qualified patterns fail). */
static int rule_match(const ConfigRoute *r, const char *schema, const char *name)
{
	return router_match_names(r->schemas, r->n_schemas, r->tables, r->n_tables, schema, name);
}

static bool is_catalog_schema(const char *s)
{
	return strcmp(s, "pg_catalog") == 0 || strcmp(s, "information_schema") == 0;
}

static void resolve(const Config *cfg, const ConfigDatabase *db, SearchPath *sp, const char *search_path,
		    const char *user, const SqlRelation *rel, RouterRelation *out)
{
	out->service = NULL;
	out->rule = NULL;
	out->schema[0] = 0;
	out->by_name = false;
	if (rel->schema) {
		if (is_catalog_schema(rel->schema)) {
			out->how = ROUTER_REL_CATALOG;
			return;
		}
		out->how = ROUTER_REL_QUALIFIED;
		for (size_t i = 0; i < cfg->n_routes; i++) {
			int m = rule_match(&cfg->routes[i], rel->schema, rel->name);
			if (m) {
				out->rule = &cfg->routes[i];
				out->service = out->rule->service;
				out->by_name = m == MATCH_NAME;
				return;
			}
		}
		out->service = db->service;
		return;
	}
	if (strncmp(rel->name, "pg_", 3) == 0) {
		out->how = ROUTER_REL_CATALOG;
		return;
	}
	if (cfg->n_routes) {
		if (!sp->parsed)
			parse_search_path(sp, search_path, user);
		for (int k = 0; k < sp->n; k++)
			for (size_t i = 0; i < cfg->n_routes; i++) {
				int m = rule_match(&cfg->routes[i], sp->names[k], rel->name);
				if (m) {
					out->how = ROUTER_REL_SEARCH_PATH;
					out->rule = &cfg->routes[i];
					out->service = out->rule->service;
					out->by_name = m == MATCH_NAME;
					snprintf(out->schema, sizeof out->schema, "%s", sp->names[k]);
					return;
				}
			}
		for (size_t i = 0; i < cfg->n_routes; i++) {
			if (cfg->routes[i].n_schemas == 0 && rule_match(&cfg->routes[i], NULL, rel->name)) {
				out->how = ROUTER_REL_BARE_NAME;
				out->rule = &cfg->routes[i];
				out->service = out->rule->service;
				out->by_name = true;
				return;
			}
		}
	}
	out->how = ROUTER_REL_DEFAULT;
	out->service = db->service;
}

void router_resolve_relation(const Config *cfg, const ConfigDatabase *db, const char *search_path,
			     const char *user, const SqlRelation *rel, RouterRelation *out)
{
	SearchPath sp;
	sp.parsed = false;
	resolve(cfg, db, &sp, search_path, user, rel, out);
}

void router_resolve_schema(const Config *cfg, const char *schema, RouterRelation *out)
{
	out->how = ROUTER_REL_QUALIFIED;
	out->service = NULL;
	out->rule = NULL;
	out->schema[0] = 0;
	out->by_name = false;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const ConfigRoute *r = &cfg->routes[i];
		if (r->n_schemas == 0 || r->n_tables != 0)
			continue;
		for (size_t k = 0; k < r->n_schemas; k++)
			if (glob(r->schemas[k], schema)) {
				out->rule = r;
				out->service = r->service;
				return;
			}
	}
}

int router_rule_index(const Config *cfg, const ConfigRoute *rule)
{
	if (!rule || rule < cfg->routes || rule >= cfg->routes + cfg->n_routes)
		return -1;
	return (int)(rule - cfg->routes);
}

/* ---- read-only ---- */

static bool functions_read_safe(const ConfigService *svc, const SqlStatement *st, RouteResult *out)
{
	for (size_t i = 0; i < st->n_functions; i++) {
		const char *why;
		if (router_function_safety(svc, st->functions[i], &why) == ROUTER_FN_WRITES) {
			out->not_read_only_why = why;
			out->not_read_only_function = st->functions[i];
			return false;
		}
	}
	return true;
}

static bool statement_read_only(const ConfigService *svc, const SqlStatement *st, RouteResult *out)
{
	switch (st->kind) {
	case SQL_KIND_READ:
		if (st->locking) {
			out->not_read_only_why = "has a locking clause (FOR UPDATE/SHARE)";
			return false;
		}
		return functions_read_safe(svc, st, out);
	case SQL_KIND_SESSION:
		if (!st->harmless) {
			out->not_read_only_why = "needs the primary";
			return false;
		}
		if (strcmp(st->tag, "PREPARE") == 0) { /* as read-only as the statement it prepares */
			if (st->inner_kind != SQL_KIND_READ) {
				out->not_read_only_why = "prepares a statement that is not a read";
				return false;
			}
			if (st->locking) {
				out->not_read_only_why = "prepares a statement with a locking clause";
				return false;
			}
		}
		return functions_read_safe(svc, st, out);
	case SQL_KIND_TX:
		if (st->tx == SQL_TX_BEGIN && !st->tx_read_only) {
			out->not_read_only_why = "starts a transaction that may write (not READ ONLY)";
			return false;
		}
		if (st->tx == SQL_TX_PREPARE || st->tx == SQL_TX_COMMIT_PREPARED || st->tx == SQL_TX_ROLLBACK_PREPARED) {
			out->not_read_only_why = "is two-phase commit";
			return false;
		}
		return true;
	case SQL_KIND_WRITE:
		out->not_read_only_why = st->prepared_name ? "runs a prepared statement that may write" : "writes";
		return false;
	case SQL_KIND_DDL:
		out->not_read_only_why = "is DDL";
		return false;
	case SQL_KIND_OTHER:
		break;
	}
	out->not_read_only_why = "is not a read";
	return false;
}

/* ---- routing ---- */

static ConfigReads effective_reads(const RouterRelation *rr)
{
	if (rr->rule && rr->rule->reads != CONFIG_READS_INHERIT)
		return rr->rule->reads;
	return rr->service->reads;
}

/* Accounts for one resolved name; false when it makes the text cross-service. */
static bool take(RouteResult *out, const RouterRelation *rr, const SqlStatement *st, const SqlRelation *rel,
		 const char *schema)
{
	if (!rr->service)
		return true;
	out->names_tables = true;
	if (!out->service) {
		out->service = rr->service;
		out->decided_by_stmt = st;
		out->decided_by = rel;
		out->decided_by_schema = schema;
		out->rule = rr->rule;
	} else if (rr->service != out->service) {
		out->status = ROUTE_CROSS_SERVICE;
		out->cross_service[0] = out->service;
		out->cross_relation[0] = out->decided_by;
		out->cross_schema[0] = out->decided_by_schema;
		out->cross_service[1] = rr->service;
		out->cross_relation[1] = rel;
		out->cross_schema[1] = schema;
		return false;
	} else if (!out->rule && rr->rule) {
		out->rule = rr->rule;
		out->decided_by_stmt = st;
		out->decided_by = rel;
		out->decided_by_schema = schema;
	}
	if (!out->reads_primary && effective_reads(rr) != CONFIG_READS_REPLICAS) {
		out->reads_primary = true;
		out->reads_primary_rule = rr->rule && rr->rule->reads != CONFIG_READS_INHERIT ? rr->rule : NULL;
	}
	return true;
}

void router_route(const Config *cfg, const ConfigDatabase *db, const char *search_path, const char *user,
		  const SqlAnalysis *a, RouteResult *out)
{
	memset(out, 0, sizeof(*out));
	if (a->parse_error) {
		out->status = ROUTE_PARSE_ERROR;
		out->service = db->service;
		out->not_read_only_why = "does not parse";
		return;
	}
	SearchPath sp;
	sp.parsed = false;
	for (size_t s = 0; s < a->n_statements; s++) {
		const SqlStatement *st = &a->statements[s];
		for (size_t i = 0; i < st->n_relations; i++) {
			RouterRelation rr;
			resolve(cfg, db, &sp, search_path, user, &st->relations[i], &rr);
			if (!take(out, &rr, st, &st->relations[i], NULL))
				return;
		}
		for (size_t i = 0; i < st->n_schemas; i++) {
			RouterRelation rr;
			router_resolve_schema(cfg, st->schemas[i], &rr);
			if (!take(out, &rr, st, NULL, st->schemas[i]))
				return;
		}
	}
	if (!out->service) {
		out->service = db->service;
		if (out->service->reads != CONFIG_READS_REPLICAS)
			out->reads_primary = true;
	}
	out->read_only = true;
	for (size_t s = 0; s < a->n_statements && out->read_only; s++)
		if (!statement_read_only(out->service, &a->statements[s], out)) {
			out->read_only = false;
			out->not_read_only_stmt = &a->statements[s];
		}
	out->use_replica = out->read_only && !out->reads_primary && out->service->n_replicas > 0;
}

/* ---- text for people ---- */

static void rel_name(const SqlRelation *rel, const char *schema, char *buf, size_t len)
{
	if (rel && rel->schema)
		snprintf(buf, len, "relation \"%s.%s\"", rel->schema, rel->name);
	else if (rel)
		snprintf(buf, len, "relation \"%s\"", rel->name);
	else
		snprintf(buf, len, "schema \"%s\"", schema ? schema : "?");
}

void router_error_message(const RouteResult *r, char *buf, size_t len)
{
	char a[200], b[200];
	rel_name(r->cross_relation[0], r->cross_schema[0], a, sizeof a);
	rel_name(r->cross_relation[1], r->cross_schema[1], b, sizeof b);
	snprintf(buf, len,
		 "pgrelay cannot run one query on two services: %s belongs to service \"%s\", %s to service \"%s\"",
		 a, r->cross_service[0] ? r->cross_service[0]->name : "?", b,
		 r->cross_service[1] ? r->cross_service[1]->name : "?");
}

void router_explain(const Config *cfg, const RouteResult *r, char *buf, size_t len)
{
	if (r->status == ROUTE_CROSS_SERVICE) {
		router_error_message(r, buf, len);
		return;
	}
	const char *svc = r->service ? r->service->name : "?";
	if (r->status == ROUTE_PARSE_ERROR) {
		snprintf(buf, len, "service %s, primary: the text does not parse (the server reports the error)", svc);
		return;
	}
	char by[300], why[300];
	int ri = router_rule_index(cfg, r->rule);
	char what[200];
	if (r->decided_by || r->decided_by_schema)
		rel_name(r->decided_by, r->decided_by_schema, what, sizeof what);
	if (ri >= 0)
		snprintf(by, sizeof by, "%s matched routes[%d] (line %d)", what, ri, r->rule->line);
	else if (r->decided_by || r->decided_by_schema)
		snprintf(by, sizeof by, "%s matched no rule: the database's default service", what);
	else
		snprintf(by, sizeof by, "names no table: the database's default service");
	if (r->use_replica) {
		snprintf(why, sizeof why, "read-only, and reads: replicas");
	} else if (!r->read_only) {
		const SqlStatement *st = r->not_read_only_stmt;
		if (r->not_read_only_function)
			snprintf(why, sizeof why, "not read-only: %s calls %s() (%s)", st ? st->tag : "statement",
				 r->not_read_only_function, r->not_read_only_why);
		else
			snprintf(why, sizeof why, "not read-only: %s %s", st ? st->tag : "statement",
				 r->not_read_only_why ? r->not_read_only_why : "");
	} else if (r->reads_primary) {
		int pi = router_rule_index(cfg, r->reads_primary_rule);
		if (pi >= 0)
			snprintf(why, sizeof why, "read-only, but routes[%d] has reads: primary", pi);
		else
			snprintf(why, sizeof why, "read-only, but service %s has reads: primary", svc);
	} else {
		snprintf(why, sizeof why, "read-only, but service %s has no replicas", svc);
	}
	snprintf(buf, len, "service %s, %s: %s; %s", svc, r->use_replica ? "replica" : "primary", by, why);
}
