/*
 * prepared — named prepared statements across pooled server connections.
 *
 * Owns three maps. The registry gives every distinct statement (query text + parameter types) one
 * pgrelay-wide server-side name, "pgrelay_<id>", and a ready-made Parse message under that name.
 * A client map holds the client's own names (from Parse, dropped by Close/DEALLOCATE). A server
 * set remembers which registry statements one server connection has prepared, in LRU order with a
 * size limit. Pure data structures: no sockets, no protocol state.
 */
#ifndef PGRELAY_PREPARED_H
#define PGRELAY_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashmap.h"
#include "list.h"

typedef struct PreparedStmt {
	uint32_t id;
	char server_name[24];  /* "pgrelay_<id>" */
	uint8_t *key;          /* query\0 int16 nparams int32[nparams]: the Parse body after the name */
	size_t key_len;
	uint64_t hash;
	uint8_t *create_msg;   /* the message that creates it under server_name: a Parse, or for a
				* SQL-level PREPARE a Query "PREPARE pgrelay_<id> ..." */
	size_t create_len;
	bool sql_level;        /* from PREPARE (never shared between clients) */
	int refcount;          /* client map entries */
	bool validated;        /* a server accepted this Parse once: it is valid SQL */
} PreparedStmt;

typedef struct StmtRegistry {
	HashMap by_key;
	HashMap by_id;
	uint32_t next_id;
	size_t unused;       /* registered statements no client names */
	size_t unused_bytes; /* their keys and messages */
	uint64_t parses_sent, parses_avoided, evictions; /* statistics */
} StmtRegistry;

void prepared_registry_init(StmtRegistry *r);
void prepared_registry_free(StmtRegistry *r);
size_t prepared_registry_count(const StmtRegistry *r);
/* The registry statement for a Parse body (after the statement name), created if new; refcount +1. */
PreparedStmt *prepared_intern(StmtRegistry *r, const uint8_t *key, size_t key_len);
/* A statement for SQL-level "PREPARE name <rest>": a new id every time; refcount 1. */
PreparedStmt *prepared_new_sql(StmtRegistry *r, const char *rest, size_t rest_len);
void prepared_release(StmtRegistry *r, PreparedStmt *s);
PreparedStmt *prepared_find_id(const StmtRegistry *r, uint32_t id);
/* A server answered ParseComplete for this statement. */
void prepared_mark_validated(StmtRegistry *r, uint32_t id);
/* Allocates an id (and server name) outside the registry, for SQL-level PREPARE. */
uint32_t prepared_new_id(StmtRegistry *r);
void prepared_server_name(uint32_t id, char out[24]);

/* ---- a client's names ---- */
typedef struct ClientStmts {
	HashMap by_name; /* value: struct ClientStmt */
	size_t bytes;    /* prepared_stmt_bytes of every statement named */
} ClientStmts;

void prepared_client_init(ClientStmts *m);
/* Drops every name (releasing registry statements). */
void prepared_client_clear(ClientStmts *m, StmtRegistry *r);
void prepared_client_free(ClientStmts *m, StmtRegistry *r);
/* Binds name to stmt (taking the caller's reference); an existing binding is replaced. */
void prepared_client_set(ClientStmts *m, StmtRegistry *r, const char *name, PreparedStmt *stmt);
PreparedStmt *prepared_client_get(const ClientStmts *m, const char *name);
bool prepared_client_remove(ClientStmts *m, StmtRegistry *r, const char *name);
/* Drops every name bound to the statement with this id (its Parse failed). */
void prepared_client_forget_id(ClientStmts *m, StmtRegistry *r, uint32_t id);
size_t prepared_client_count(const ClientStmts *m);
static inline size_t prepared_client_bytes(const ClientStmts *m) { return m->bytes; }
/* Memory a statement holds (key, creating message, names), for the byte budgets. */
size_t prepared_stmt_bytes(const PreparedStmt *s);

/* ---- what one server connection has prepared ---- */
typedef struct ServerStmts {
	HashMap by_id; /* value: struct ServerStmt, also on lru */
	List lru;      /* most recently used first */
} ServerStmts;

void prepared_server_init(ServerStmts *s);
void prepared_server_free(ServerStmts *s);
void prepared_server_clear(ServerStmts *s);
/* True (and marks it most recently used) if the server has the statement. */
bool prepared_server_has(ServerStmts *s, uint32_t id);
/*
 * Records that the server now has id. If that exceeds limit, returns the least recently used id
 * (removed from the set) in *evicted so the caller can close it on the server.
 */
bool prepared_server_add(ServerStmts *s, uint32_t id, size_t limit, uint32_t *evicted);
void prepared_server_remove(ServerStmts *s, uint32_t id);
size_t prepared_server_count(const ServerStmts *s);

#endif
