/*
 * statement_tx — the client's transaction as its server runs it (see statement_tx.h).
 */
#include "statement_tx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cachepolicy.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "settings.h"
#include "sqlclass.h"
#include "txtrack.h"
#include "xalloc.h"

/* Everything of the service: for what pgrelay cannot read. */
static const CacheWrites *writes_all(CacheWrites *w, const char *why)
{
	memset(w, 0, sizeof *w);
	w->all = true;
	w->all_why = why;
	return w;
}

/*
 * What statement i of a writes, for the result cache (w is the storage); NULL when the cache is off
 * or it writes nothing. params: a Bind's values, or NULL.
 */
static const CacheWrites *statement_writes(Client *c, const SqlAnalysis *a, size_t i, const ProtoBindValues *params,
					   CacheWrites *w)
{
	if (!c->rt->cache)
		return NULL;
	const SqlStatement *st = &a->statements[i];
	if ((st->kind == SQL_KIND_READ || st->kind == SQL_KIND_TX || st->kind == SQL_KIND_SESSION) &&
	    st->n_functions == 0 && st->tx != SQL_TX_COMMIT_PREPARED)
		return NULL; /* the common case: nothing to note, nothing to clear */
	memset(w, 0, sizeof *w);
	SqlAnalysis one = *a; /* the statement alone */
	one.n_statements = 1;
	one.statements = st;
	cachepolicy_writes(c->rt->config, settings_search_path(c), c->user, &one, params, false, w);
	return w->all || w->n ? w : NULL;
}

/* Whether a text's statements must be told to txtrack one by one (their writes or transaction
 * effects matter): with the cache, or while settings of the transaction may be undone. */
static bool tx_detail_needed(const Client *c, const char *sql, size_t len)
{
	return c->rt->cache || c->undo_active || settings_might_change(sql, len);
}

/* A Query going to the server: its statements, then its ReadyForQuery. */
static void tx_note_query(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	CacheWrites w;
	if (avail < total) { /* streamed unread (larger than the read buffer) */
		txtrack_uncounted(&c->tx, c->rt->cache ? writes_all(&w, "a statement too large to analyze") : NULL);
		txtrack_end(&c->tx);
		return;
	}
	const char *sql = (const char *)msg + PROTO_HEADER_LEN;
	size_t len = strnlen(sql, total - PROTO_HEADER_LEN);
	if (!tx_detail_needed(c, sql, len)) {
		txtrack_uncounted(&c->tx, NULL);
		txtrack_end(&c->tx);
		return;
	}
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	if (a->parse_error) {
		txtrack_uncounted(&c->tx, c->rt->cache ? writes_all(&w, "a statement pgrelay cannot parse") : NULL);
	} else {
		for (size_t i = 0; i < a->n_statements; i++) {
			const SqlStatement *st = &a->statements[i];
			txtrack_statement(&c->tx, st->kind == SQL_KIND_TX ? st->tx : SQL_TX_NONE, st->tx_name,
					  statement_writes(c, a, i, NULL, &w));
		}
	}
	sqlclass_release(a);
	txtrack_end(&c->tx);
}

static void unnamed_forget(Client *c)
{
	free(c->unnamed_parse);
	c->unnamed_parse = NULL;
	c->unnamed_parse_len = 0;
	c->unnamed_unread = false;
}

/* A Parse going to the server: the unnamed statement's text is kept (when it matters) for its
 * Binds; a named statement's is in the client's statements. */
static void tx_note_parse(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	if (msg[PROTO_HEADER_LEN] != 0)
		return;
	unnamed_forget(c);
	if (avail < total) {
		c->unnamed_unread = true;
		return;
	}
	const uint8_t *key = msg + PROTO_HEADER_LEN + 1;
	size_t key_len = total - PROTO_HEADER_LEN - 1;
	const char *sql = (const char *)key;
	size_t len = strnlen(sql, key_len);
	if (!tx_detail_needed(c, sql, len))
		return;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	bool plain_read = !a->parse_error && a->n_statements == 1 &&
			  (a->statements[0].kind == SQL_KIND_READ || a->statements[0].kind == SQL_KIND_SESSION) &&
			  a->statements[0].n_functions == 0 && a->statements[0].set == SQL_SET_NONE;
	sqlclass_release(a);
	if (plain_read)
		return; /* nothing to write, nothing to the transaction */
	c->unnamed_parse = xmalloc(key_len);
	memcpy(c->unnamed_parse, key, key_len);
	c->unnamed_parse_len = key_len;
}

static void portal_clear(Client *c)
{
	free(c->portal.savepoint);
	free(c->portal.writes);
	memset(&c->portal, 0, sizeof c->portal);
}

/* A Bind going to the server: what executing the portal will write and do, from its statement's
 * text and the values. The unnamed portal's is kept for its Execute; a named portal's writes are
 * noted now (they count at the next ReadyForQuery and are never dropped). */
static void tx_note_bind(Client *c, const uint8_t *msg, size_t total, size_t avail)
{
	const char *portal, *name;
	size_t names_len;
	if (!proto_bind_names(msg + PROTO_HEADER_LEN, avail - PROTO_HEADER_LEN, &portal, &name, &names_len))
		return;
	CacheWrites w;
	const CacheWrites *writes = NULL;
	SqlTxKind tx = SQL_TX_NONE;
	const char *savepoint = NULL;
	const uint8_t *key = NULL;
	size_t key_len = 0;
	bool unread = false;
	if (*name) {
		PreparedStmt *st = prepared_client_get(&c->stmts, name);
		if (st) {
			key = st->key;
			key_len = st->key_len;
		}
	} else {
		key = c->unnamed_parse;
		key_len = c->unnamed_parse_len;
		unread = c->unnamed_unread;
	}
	SqlAnalysis *a = NULL;
	if (unread && c->rt->cache) {
		writes = writes_all(&w, "a statement too large to analyze");
	} else if (key) {
		const char *sql = (const char *)key;
		a = sqlclass_analyze(&c->rt->sql, sql, strnlen(sql, key_len));
		if (a->parse_error) {
			writes = c->rt->cache ? writes_all(&w, "a statement pgrelay cannot parse") : NULL;
		} else if (a->n_statements == 1) {
			const SqlStatement *st = &a->statements[0];
			ProtoBindValues params;
			bool have = avail == total && cachepolicy_writes_need_values(a) &&
				    proto_parse_bind_values(msg + PROTO_HEADER_LEN + names_len, total - PROTO_HEADER_LEN - names_len,
							    key, key_len, &params);
			writes = statement_writes(c, a, 0, have ? &params : NULL, &w);
			if (st->kind == SQL_KIND_TX) {
				tx = st->tx;
				savepoint = st->tx_name;
			}
		}
	}
	if (*portal) {
		txtrack_note(&c->tx, writes);
	} else {
		portal_clear(c);
		c->portal.tx = (uint8_t)tx;
		c->portal.savepoint = savepoint ? xstrdup(savepoint) : NULL;
		if (writes) {
			c->portal.writes = xmalloc(sizeof *c->portal.writes);
			*c->portal.writes = *writes;
		}
	}
	sqlclass_release(a);
}

/* An Execute going to the server: one statement, the portal's. */
static void tx_note_execute(Client *c, const uint8_t *msg, size_t avail)
{
	bool unnamed = avail > PROTO_HEADER_LEN && msg[PROTO_HEADER_LEN] == 0;
	if (unnamed)
		txtrack_statement(&c->tx, (SqlTxKind)c->portal.tx, c->portal.savepoint, c->portal.writes);
	else
		txtrack_statement(&c->tx, SQL_TX_NONE, NULL, NULL); /* its writes were noted at its Bind */
}

/* What a request the client sends to its server (in order) writes and does to the transaction. */
void statement_tx_note_request(Client *c, Server *s, bool forwarded_sync, uint8_t type, const uint8_t *msg,
			    size_t total, size_t avail)
{
	CacheWrites w;
	const char *service = s->pool->service->name;
	if (!c->tx_service || strcmp(c->tx_service, service) != 0) {
		free(c->tx_service);
		c->tx_service = xstrdup(service);
	}
	switch (type) {
	case 'Q':
		tx_note_query(c, msg, total, avail);
		break;
	case 'P':
		tx_note_parse(c, msg, total, avail);
		break;
	case 'B':
		tx_note_bind(c, msg, total, avail);
		break;
	case 'E':
		tx_note_execute(c, msg, avail);
		break;
	case 'S':
		if (forwarded_sync)
			txtrack_end(&c->tx);
		break;
	case 'F': /* a function by OID: it may write anything */
		txtrack_note(&c->tx, c->rt->cache ? writes_all(&w, "a FunctionCall message") : NULL);
		txtrack_end(&c->tx);
		break;
	default:
		break;
	}
}

void statement_tx_reply(Client *c, Server *s, uint8_t type, const uint8_t *body, size_t len)
{
	(void)s;
	switch (type) {
	case 'C': {
		bool rollback = len == sizeof("ROLLBACK") && memcmp(body, "ROLLBACK", sizeof("ROLLBACK")) == 0;
		settings_tx_event(c, txtrack_complete(&c->tx, rollback));
		break;
	}
	case 'I':
	case 's':
		txtrack_complete(&c->tx, false);
		break;
	case 'E':
		txtrack_error(&c->tx);
		settings_failed(c);
		break;
	default:
		break;
	}
}

CacheBump *statement_tx_ready(Client *c, Server *s, char tx_status, void (*done)(void *owner), void *owner)
{
	CacheWrites bump;
	memset(&bump, 0, sizeof bump);
	bool any = txtrack_ready(&c->tx, tx_status, &bump);
	settings_ready(c, s, tx_status);
	Cache *cache = c->rt->cache;
	if (!any || !cache)
		return NULL;
	/* Before the client sees its ReadyForQuery, nobody may get a result this commit changed. */
	return cache_invalidate_shared(cache, s->pool->service->name, &bump, done, owner);
}

void statement_tx_cache_started(Client *c)
{
	Server *s = c->server;
	if (!s || (s->tx_status == 'I' && pipeline_idle(&s->pipe)))
		return;
	/* What it wrote so far was not analyzed: at its end (and at every ReadyForQuery before), the
	 * whole service is invalidated. */
	CacheWrites w;
	txtrack_note(&c->tx, writes_all(&w, "the cache was turned on while this transaction was open"));
}

void statement_tx_client_gone(Client *c)
{
	CacheWrites bump;
	memset(&bump, 0, sizeof bump);
	/* A COMMIT in flight may have reached the server: what the client may have written counts. */
	if (txtrack_abandon(&c->tx, &bump) && c->rt->cache && c->tx_service)
		cache_invalidate_shared(c->rt->cache, c->tx_service, &bump, NULL, NULL);
	unnamed_forget(c);
	portal_clear(c);
}
