/*
 * router — which service a SQL text goes to, and whether it may use a replica. Pure: no sockets,
 * no libevent, no state of its own; it reads the Config and an SqlAnalysis (sqlclass) and runs
 * for every statement, so it only loops over the statement's names and the rules.
 *
 * Relations. Each relation of each statement maps to one service:
 *   - pg_catalog.x, information_schema.x, and unqualified names starting with "pg_" (the system
 *     catalogs and views, which PostgreSQL finds in pg_catalog before the search_path) are
 *     CATALOG relations: every database has them, so they go wherever the rest of the text goes
 *     and never make a text cross-service; alone, they go to the database's default service.
 *   - schema.name: the first rule (Config.routes, in order) that matches (schema, name);
 *     none: the database's default service.
 *   - name: each schema of the search_path in order ("$user" is the user name; pg_catalog and
 *     pg_temp are skipped), the first schema for which some rule matches (schema, name) wins,
 *     with the first rule that matches there; if no schema gives a match, rules with tables and
 *     no schemas are tried on the bare name; else the database's default service.
 * A rule matches (schema, name) when every list it has matches: `schemas` — schema matches one
 * of the globs; `tables` — one of the globs matches name, or, for a pattern "s.t", s matches the
 * schema and t the name. Globs are fnmatch(3) patterns compared with names as PostgreSQL
 * resolves them (unquoted identifiers are lower case).
 *
 * Schemas named without a relation (SqlStatement.schemas: CREATE/DROP SCHEMA, GRANT ... IN
 * SCHEMA, qualified function calls, ...) go to the first rule with `schemas` and no `tables`
 * whose globs match; one that no such rule matches is neutral (like a catalog relation), so a
 * call to extensions.uuid_generate_v4() never makes a statement cross-service.
 *
 * All relations and schemas of the whole text (every statement of a multi-statement string) must
 * map to one service, else ROUTE_CROSS_SERVICE: nothing may be sent; the client gets an
 * ErrorResponse with SQLSTATE 0A000 and router_error_message(). A text that names nothing goes
 * to the default service. A text that does not parse: ROUTE_PARSE_ERROR, default service,
 * primary (the server reports the real error).
 *
 * Read-only. The text is read-only when every statement is:
 *   - READ, without a locking clause (FOR UPDATE/SHARE...), calling only read-safe functions;
 *   - SESSION and harmless (SET, RESET, SHOW, DISCARD, DEALLOCATE, FETCH, CLOSE, ...; not LISTEN
 *     or UNLISTEN); a PREPARE only when the statement it prepares is such a read;
 *   - TX: COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, and BEGIN ... READ ONLY. A BEGIN
 *     that is not READ ONLY makes the text not read-only (its transaction may write later), as
 *     do two-phase commands.
 * WRITE, DDL and OTHER statements (and EXECUTE, whose statement sqlclass does not know) are not.
 * Functions: a call is read-safe or writing by the first of
 *   1. the routed service's `functions.writes`, then `functions.read_only` (a declared "f"
 *      matches calls of f in any schema; a declared "s.f" matches calls written s.f, and for
 *      writes also calls of plain f, which may resolve to it);
 *   2. for calls unqualified or qualified with pg_catalog, pgrelay's lists of built-ins: some
 *      are known to write or to have effects outside the statement (nextval, setval, currval,
 *      lastval, advisory locks, large objects, set_config, txid_current, pg_current_xact_id,
 *      pg_notify, pg_terminate_backend, WAL and replication control, ...), many are known
 *      read-safe (now() and the other clock functions, random(), aggregates, string, math,
 *      date/time, JSON, array, range and text-search functions, generate_series, formatting,
 *      catalog introspection such as current_setting, version, pg_backend_pid,
 *      pg_is_in_recovery, has_*_privilege, pg_get_*def, pg_*_size);
 *   3. anything else is a write.
 *
 * Replicas. use_replica when the text is read-only and every rule that matched (for names no
 * rule matched: the service) says reads: replicas (a rule with reads inherit takes its
 * service's), and the service has replicas. Whether one is healthy is the proxy's business.
 *
 * What the router cannot know (the caller's business): a text of transaction control only
 * (COMMIT, ROLLBACK, SAVEPOINT ...) names nothing and routes to the default service, but belongs
 * to whichever server holds the client's transaction; EXECUTE names nothing and counts as a
 * write, a caller that kept the route of the PREPARE (SqlStatement.prepared_name) should use it.
 */
#ifndef PGRELAY_ROUTER_H
#define PGRELAY_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "sqlclass.h"

typedef enum {
	ROUTE_OK = 0,
	ROUTE_CROSS_SERVICE, /* relations of two services: send nothing, answer 0A000 */
	ROUTE_PARSE_ERROR,   /* send to the default service's primary */
} RouteStatus;

typedef enum {
	ROUTER_REL_CATALOG = 0,   /* pg_catalog / information_schema / unqualified pg_*: neutral */
	ROUTER_REL_QUALIFIED,     /* schema as written; rule or default */
	ROUTER_REL_SEARCH_PATH,   /* unqualified: a rule matched it in search_path schema `schema` */
	ROUTER_REL_BARE_NAME,     /* unqualified: a tables-only rule matched the bare name */
	ROUTER_REL_DEFAULT,       /* unqualified, no rule matched: the database's service */
} RouterRelHow;

/* How one relation (or schema) resolved. */
typedef struct RouterRelation {
	RouterRelHow how;
	const ConfigService *service; /* NULL: neutral (catalog, or a schema no rule claims) */
	const ConfigRoute *rule;      /* NULL: no rule (database default or neutral) */
	/* SEARCH_PATH: the schema of the search_path that gave the match (truncated to 127 bytes);
	 * by_name: the rule matched on the name alone, so the schema did not decide. */
	char schema[128];
	bool by_name;
} RouterRelation;

typedef struct RouteResult {
	RouteStatus status;
	/* OK / PARSE_ERROR: where the text goes. CROSS_SERVICE: the first of the two services. */
	const ConfigService *service;
	/* The rule that decided the service (that of the first relation or schema a rule matched);
	 * NULL: the database's default service. */
	const ConfigRoute *rule;
	bool read_only;    /* see above */
	bool use_replica;  /* read_only, reads: replicas everywhere it matters, service has replicas */
	bool names_tables; /* some relation or schema counted (catalog relations do not): a held
			    * BEGIN can go with this text */

	/* Why, for router_explain and router_error_message: pointers into the analysis, the config
	 * and static text, valid while the analysis and the config are (no formatting is done
	 * while routing). */
	const SqlStatement *decided_by_stmt; /* the statement and the relation (or schema) that */
	const SqlRelation *decided_by;       /* decided the service; both NULL: nothing named */
	const char *decided_by_schema;
	const SqlStatement *not_read_only_stmt; /* the first statement that is not read-only */
	const char *not_read_only_why;          /* "writes", "has a locking clause", ... */
	const char *not_read_only_function;     /* the function that made it a write, or NULL */
	/* Read-only but kept on the primary by reads: primary of this rule (or, NULL, of the service). */
	bool reads_primary;
	const ConfigRoute *reads_primary_rule;
	/* CROSS_SERVICE: the two services, each with the relation (or schema) that named it. */
	const ConfigService *cross_service[2];
	const SqlRelation *cross_relation[2];
	const char *cross_schema[2];
} RouteResult;

typedef enum {
	ROUTER_FN_READ_SAFE = 0,
	ROUTER_FN_WRITES,
} RouterFnSafety;

/*
 * Routes an analyzed text for a client of database db (its service is the default) whose user
 * is user (for "$user"; may be NULL) and whose search_path is search_path (PostgreSQL's text
 * form, e.g. "\"$user\", public"; NULL: that default).
 */
void router_route(const Config *cfg, const ConfigDatabase *db, const char *search_path, const char *user,
		  const SqlAnalysis *a, RouteResult *out);

/* How one relation resolves (what router_route does for each relation). */
void router_resolve_relation(const Config *cfg, const ConfigDatabase *db, const char *search_path,
			     const char *user, const SqlRelation *rel, RouterRelation *out);
/* How a schema named without a relation resolves (service NULL: neutral). */
void router_resolve_schema(const Config *cfg, const char *schema, RouterRelation *out);

/* The built-in lists (sorted), for tests and `pgrelay route`. */
const char *const *router_builtin_functions(bool writes, size_t *n);

/* Whether a call of name ("f" or "schema.f") is read-safe on service svc; *why says why. */
RouterFnSafety router_function_safety(const ConfigService *svc, const char *name, const char **why);
/* Whether pgrelay knows what the function is: declared under the service's functions (either
 * list; svc may be NULL), or a built-in of its lists (unqualified or pg_catalog). */
bool router_function_known(const ConfigService *svc, const char *name);

/* Rule matching (the same for routes and cache rules): whether (schema, name) matches the globs;
 * schema NULL: a bare name. MATCH_SCHEMA: the schema took part in the match. */
enum { ROUTER_NO_MATCH = 0, ROUTER_MATCH_SCHEMA, ROUTER_MATCH_NAME };
int router_match_names(char *const *schemas, size_t n_schemas, char *const *tables, size_t n_tables,
		       const char *schema, const char *name);

/* The schemas of a search_path text in order ("$user" resolved, pg_catalog and pg_temp left
 * out; NULL: the default), at most max. */
size_t router_search_path(const char *search_path, const char *user, char (*out)[128], size_t max);

/* "routes[2]" etc.: the index of a rule in cfg->routes, or -1. */
int router_rule_index(const Config *cfg, const ConfigRoute *rule);

/* The message of the 0A000 ErrorResponse for a CROSS_SERVICE result. */
void router_error_message(const RouteResult *r, char *buf, size_t len);
/* One or two lines for people: service, primary or replica, and why. */
void router_explain(const Config *cfg, const RouteResult *r, char *buf, size_t len);

#endif
