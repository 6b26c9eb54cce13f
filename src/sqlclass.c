/*
 * sqlclass — statement analysis with libpg_query (see sqlclass.h).
 *
 * The parse tree comes as JSON (pg_query_parse, a few microseconds for a short statement) and is
 * walked with json-c. Byte positions of prepared-statement names come from libpg_query's scanner
 * (pg_query_scan, protobuf decoded with the pg_query.pb-c.h that libpg-query-dev ships), used only
 * when the tree shows a PREPARE, EXECUTE or DEALLOCATE.
 */
#include "sqlclass.h"
#include "xalloc.h"

#include <ctype.h>
#include <json-c/json.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CURSOR_OPT_HOLD 0x0020 /* PostgreSQL's parsenodes.h */

typedef struct PendingName {
	SqlRefKind kind;
	const char *name; /* inside the JSON tree */
	int stmt_start, stmt_end;
	bool found;
} PendingName;

typedef struct Walk {
	SqlAnalysis *a;
	PendingName *pending;
	size_t n_pending, cap_pending;
	int stmt_start, stmt_end;
} Walk;

static void add_pending(Walk *w, SqlRefKind kind, const char *name)
{
	if (!name || !*name)
		return;
	if (w->n_pending == w->cap_pending) {
		w->cap_pending = w->cap_pending ? w->cap_pending * 2 : 4;
		w->pending = realloc(w->pending, w->cap_pending * sizeof(*w->pending));
		if (!w->pending)
			abort();
	}
	w->pending[w->n_pending++] = (PendingName){kind, name, w->stmt_start, w->stmt_end, false};
}

static const char *json_str(json_object *obj, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool is_session_advisory_lock(json_object *funccall)
{
	json_object *names;
	if (!json_object_object_get_ex(funccall, "funcname", &names) || !json_object_is_type(names, json_type_array))
		return false;
	size_t n = json_object_array_length(names);
	if (n == 0)
		return false;
	json_object *last = json_object_array_get_idx(names, n - 1), *str;
	if (!json_object_object_get_ex(last, "String", &str))
		return false;
	const char *f = json_str(str, "sval");
	if (!f)
		return false;
	static const char *const locks[] = {"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
					    "pg_try_advisory_lock_shared"};
	for (size_t i = 0; i < sizeof(locks) / sizeof(locks[0]); i++)
		if (strcmp(f, locks[i]) == 0)
			return true;
	return false;
}

static void walk(Walk *w, json_object *node)
{
	if (json_object_is_type(node, json_type_array)) {
		size_t n = json_object_array_length(node);
		for (size_t i = 0; i < n; i++)
			walk(w, json_object_array_get_idx(node, i));
		return;
	}
	if (!json_object_is_type(node, json_type_object))
		return;
	json_object_object_foreach(node, key, val) {
		if (!json_object_is_type(val, json_type_object) && !json_object_is_type(val, json_type_array))
			continue;
		if (strcmp(key, "PrepareStmt") == 0) {
			add_pending(w, SQL_REF_PREPARE, json_str(val, "name"));
		} else if (strcmp(key, "ExecuteStmt") == 0) {
			add_pending(w, SQL_REF_EXECUTE, json_str(val, "name"));
		} else if (strcmp(key, "DeallocateStmt") == 0) {
			add_pending(w, SQL_REF_DEALLOCATE, json_str(val, "name"));
		} else if (strcmp(key, "ListenStmt") == 0) {
			w->a->needs_session = "LISTEN";
		} else if (strcmp(key, "FuncCall") == 0 && is_session_advisory_lock(val)) {
			w->a->needs_session = "a session advisory lock";
		} else if (strcmp(key, "RangeVar") == 0 || strcmp(key, "relation") == 0 || strcmp(key, "rel") == 0) {
			const char *p = json_str(val, "relpersistence");
			if (p && strcmp(p, "t") == 0)
				w->a->needs_session = "a temporary table";
		} else if (strcmp(key, "DeclareCursorStmt") == 0) {
			json_object *opt;
			if (json_object_object_get_ex(val, "options", &opt) &&
			    (json_object_get_int(opt) & CURSOR_OPT_HOLD))
				w->a->needs_session = "a WITH HOLD cursor";
		}
		walk(w, val);
	}
}

/* The identifier a name token stands for: unquoted names fold to lower case. */
static char *token_name(const char *text, int start, int end)
{
	size_t n = (size_t)(end - start);
	char *out = xmalloc(n + 1);
	size_t k = 0;
	if (n >= 2 && text[start] == '"') {
		for (int i = start + 1; i < end - 1; i++) {
			if (text[i] == '"' && i + 1 < end - 1 && text[i + 1] == '"')
				i++;
			out[k++] = text[i];
		}
	} else {
		for (int i = start; i < end; i++)
			out[k++] = (char)tolower((unsigned char)text[i]);
	}
	out[k] = 0;
	return out;
}

static bool name_like(const PgQuery__ScanToken *t)
{
	return t->token == PG_QUERY__TOKEN__IDENT || t->keyword_kind == PG_QUERY__KEYWORD_KIND__UNRESERVED_KEYWORD ||
	       t->keyword_kind == PG_QUERY__KEYWORD_KIND__COL_NAME_KEYWORD;
}

static void add_ref(SqlAnalysis *a, const PendingName *p, char *name, int start, int end)
{
	a->refs = realloc(a->refs, (a->n_refs + 1) * sizeof(*a->refs));
	if (!a->refs)
		abort();
	a->refs[a->n_refs++] = (SqlNameRef){p->kind, name, start, end, p->stmt_start, p->stmt_end};
}

/* Finds the byte range of every pending name with the scanner. */
static void locate_names(Walk *w, const char *text)
{
	PgQueryScanResult sr = pg_query_scan(text);
	if (sr.error) {
		pg_query_free_scan_result(sr);
		return;
	}
	PgQuery__ScanResult *scan = pg_query__scan_result__unpack(NULL, sr.pbuf.len, (const uint8_t *)sr.pbuf.data);
	pg_query_free_scan_result(sr);
	if (!scan)
		return;
	for (size_t i = 0; i + 1 < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		SqlRefKind kind;
		if (t->token == PG_QUERY__TOKEN__PREPARE)
			kind = SQL_REF_PREPARE;
		else if (t->token == PG_QUERY__TOKEN__EXECUTE)
			kind = SQL_REF_EXECUTE;
		else if (t->token == PG_QUERY__TOKEN__DEALLOCATE)
			kind = SQL_REF_DEALLOCATE;
		else
			continue;
		size_t j = i + 1;
		if (kind == SQL_REF_DEALLOCATE && scan->tokens[j]->token == PG_QUERY__TOKEN__PREPARE && j + 1 < scan->n_tokens)
			j++;
		const PgQuery__ScanToken *nt = scan->tokens[j];
		if (!name_like(nt))
			continue;
		char *name = token_name(text, nt->start, nt->end);
		bool used = false;
		for (size_t k = 0; k < w->n_pending && !used; k++) {
			PendingName *p = &w->pending[k];
			if (p->found || p->kind != kind || strcmp(p->name, name) != 0 || t->start < p->stmt_start ||
			    (p->stmt_end > 0 && t->start >= p->stmt_end))
				continue;
			p->found = true;
			add_ref(w->a, p, name, nt->start, nt->end);
			used = true;
		}
		if (!used)
			free(name);
		i = j;
	}
	pg_query__scan_result__free_unpacked(scan, NULL);
}

static SqlAnalysis *analyze(const char *text, size_t len)
{
	SqlAnalysis *a = calloc(1, sizeof(*a));
	if (!a)
		abort();
	a->refcount = 1;
	char *str = xmalloc(len + 1);
	memcpy(str, text, len);
	str[len] = 0;
	PgQueryParseResult pr = pg_query_parse(str);
	if (pr.error) {
		a->parse_error = true;
		pg_query_free_parse_result(pr);
		free(str);
		return a;
	}
	json_object *tree = json_tokener_parse(pr.parse_tree);
	pg_query_free_parse_result(pr);
	json_object *stmts;
	Walk w = {.a = a};
	if (tree && json_object_object_get_ex(tree, "stmts", &stmts) && json_object_is_type(stmts, json_type_array)) {
		size_t n = json_object_array_length(stmts);
		for (size_t i = 0; i < n; i++) {
			json_object *raw = json_object_array_get_idx(stmts, i), *v;
			w.stmt_start = json_object_object_get_ex(raw, "stmt_location", &v) ? json_object_get_int(v) : 0;
			int slen = json_object_object_get_ex(raw, "stmt_len", &v) ? json_object_get_int(v) : 0;
			w.stmt_end = slen > 0 ? w.stmt_start + slen : (int)len;
			if (json_object_object_get_ex(raw, "stmt", &v))
				walk(&w, v);
		}
	}
	if (w.n_pending)
		locate_names(&w, str);
	free(w.pending);
	if (tree)
		json_object_put(tree);
	free(str);
	return a;
}

void sqlclass_release(SqlAnalysis *a)
{
	if (!a || --a->refcount > 0)
		return;
	for (size_t i = 0; i < a->n_refs; i++)
		free(a->refs[i].name);
	free(a->refs);
	free(a);
}

/* ---- cache by text ---- */

typedef struct CacheEntry {
	char *text;
	size_t len;
	SqlAnalysis *a;
} CacheEntry;

struct TextKey {
	const char *text;
	size_t len;
};

static bool entry_eq(const void *value, const void *key)
{
	const CacheEntry *e = value;
	const struct TextKey *k = key;
	return e->len == k->len && memcmp(e->text, k->text, k->len) == 0;
}

void sqlclass_cache_init(SqlCache *cache, size_t limit)
{
	memset(cache, 0, sizeof(*cache));
	hashmap_init(&cache->by_text);
	cache->limit = limit;
}

static void cache_clear(SqlCache *cache)
{
	for (size_t i = 0; i < cache->by_text.cap; i++) {
		CacheEntry *e = cache->by_text.slots[i].value;
		if (!e)
			continue;
		sqlclass_release(e->a);
		free(e->text);
		free(e);
	}
	hashmap_free(&cache->by_text);
}

void sqlclass_cache_free(SqlCache *cache) { cache_clear(cache); }

SqlAnalysis *sqlclass_analyze(SqlCache *cache, const char *text, size_t len)
{
	struct TextKey k = {text, len};
	uint64_t h = hashmap_hash_bytes(text, len);
	CacheEntry *e = hashmap_get(&cache->by_text, h, entry_eq, &k);
	if (e) {
		cache->hits++;
		e->a->refcount++;
		return e->a;
	}
	cache->misses++;
	SqlAnalysis *a = analyze(text, len);
	if (cache->limit == 0)
		return a;
	if (hashmap_count(&cache->by_text) >= cache->limit)
		cache_clear(cache); /* bounded: start over rather than grow */
	e = xmalloc(sizeof(*e));
	e->text = xmalloc(len);
	memcpy(e->text, text, len);
	e->len = len;
	e->a = a;
	a->refcount++;
	hashmap_insert(&cache->by_text, h, e);
	return a;
}

bool sqlclass_might_matter(const char *text, size_t len)
{
	static const char *const words[] = {"prepare", "execute", "deallocate", "listen", "advisory", "temp", "hold"};
	/* First letters of the words, either case: a table lookup per byte, no call. */
	static const uint8_t first[256] = {['p'] = 1, ['e'] = 1, ['d'] = 1, ['l'] = 1, ['a'] = 1, ['t'] = 1,
					   ['h'] = 1, ['P'] = 1, ['E'] = 1, ['D'] = 1, ['L'] = 1, ['A'] = 1,
					   ['T'] = 1, ['H'] = 1};
	for (size_t i = 0; i < len; i++) {
		if (!first[(uint8_t)text[i]])
			continue;
		char ch = (char)(text[i] | 0x20);
		for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
			size_t n = strlen(words[w]);
			if (words[w][0] == ch && len - i >= n && strncasecmp(text + i, words[w], n) == 0)
				return true;
		}
	}
	return false;
}
