/*
 * wal — a logical-replication listener that tells the cache which tables each committed transaction
 * of a service's primary wrote, including writes that did not go through pgrelay (other clients,
 * triggers, cascades).
 *
 * Owns (wal.c): one libpq replication connection (replication=database) per listener, a pgasync
 * handle (connect, the slot and START_REPLICATION commands through pgasync; the COPY BOTH stream
 * read and written here on the handle's connection); the logical slot (created with test_decoding when
 * missing; an existing one is reused and keeps the position across disconnects and restarts);
 * START_REPLICATION with include-xids off and skip-empty-xacts on; collecting the distinct tables
 * of each transaction and calling WalCommitFn at its COMMIT; progress reports (standby status
 * updates: write = flush = apply = the last LSN this connection processed, or with
 * wal_listener_hold_progress the last one its owner confirmed) after each callback, every 10 s and
 * at once when a keepalive asks; reconnecting with backoff (200 ms doubling to 5 s)
 * and logging the loss once per outage; the counters of WalStats.
 * With wal_listener_want_keys, also the values of one key column per table (for row versions).
 * Owns (wal_parse.c, pure): the test_decoding line parser (names and column values) and the slot
 * name rule.
 *
 * Does not own: the cache, its version counters, or what to do when the listener is down.
 *
 * Delivery is at least once: what committed after the slot's confirmed position is sent again
 * after a reconnect, so a transaction may reach the callback twice.
 *
 * Not seen by logical decoding (so never reported): DDL (ALTER TABLE ... ADD COLUMN changes a
 * SELECT * without a row change), UNLOGGED and TEMP tables, other databases than the
 * connection's, REFRESH MATERIALIZED VIEW (without CONCURRENTLY). Writes to a partitioned table
 * are reported under the leaf partition's name, not the parent's. An abandoned slot keeps WAL on the primary forever: drop it
 * (pg_drop_replication_slot) when a pgrelay instance is retired; each instance needs its own slot.
 */
#ifndef PGRELAY_WAL_H
#define PGRELAY_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct WalTable {
	const char *schema; /* unquoted, as in pg_namespace.nspname */
	const char *name;   /* unquoted, as in pg_class.relname */
	/* With wal_listener_want_keys, when the table has a key column and every change line of the
	 * transaction told its values (before and after): those values, distinct, at most
	 * WAL_TX_KEYS; otherwise n_key_values is 0 (the rows are not known). */
	const char *const *key_values;
	size_t n_key_values;
} WalTable;

#define WAL_TX_KEYS 8 /* a transaction that writes more rows of a table: its rows are not known */

/* The key column of schema.name whose values the callback wants, or NULL (copied at once). */
typedef const char *(*WalKeyColumnFn)(void *arg, const char *schema, const char *name);

/* One committed transaction: its distinct tables (in first-seen order) and the end LSN of its
 * commit record. The array and strings are valid during the call only.
 * n == 0 (tables NULL) means "changes may have been missed: invalidate everything": sent when the
 * slot had to be created (commit_lsn = its consistent point; nothing before it was seen) and at
 * the COMMIT of a transaction with a change line this module could not read (logged).
 * The callback may call wal_listener_stats, and wal_listener_free (the listener is then freed
 * when the callback returns). */
typedef void (*WalCommitFn)(void *arg, const WalTable *tables, size_t n, uint64_t commit_lsn);

typedef struct WalStats {
	uint64_t transactions; /* COMMITs received (with at least one change: empty ones are skipped) */
	uint64_t tables;       /* table names passed to the callback, summed over calls */
	uint64_t resets;       /* callbacks with n == 0 */
	uint64_t reconnects;   /* times streaming started again after the first time */
	uint64_t failures;     /* failed connection attempts and broken streams */
	uint64_t last_lsn;     /* highest LSN processed (and reported to the server); 0: none yet */
	bool connected;        /* streaming now */
	char last_error[256];  /* one line, no secrets; "" when none yet */
} WalStats;

typedef struct WalListener WalListener;

/* Starts a listener on base (the first connection attempt starts at once; nothing is reported
 * before the loop runs). conninfo: libpq keywords or a URI, without replication= (added here); application_name
 * defaults to pgrelay-wal, gssencmode to disable, connect_timeout (also used for the START phase)
 * to 10 s. A single host name is resolved with evdns; a comma-separated host list is left to
 * libpq, whose resolver blocks. The role needs the REPLICATION attribute and pg_hba must allow
 * it for "replication" connections, and wal_level must be logical. slot: [a-z0-9_]{1,63}.
 * service is used in log lines ("wal <service>"). NULL (logged) when conninfo cannot be parsed,
 * the slot name is invalid or fn is NULL. */
WalListener *wal_listener_new(struct event_base *base, const char *service, const char *conninfo,
			      const char *slot, WalCommitFn fn, void *arg);
void wal_listener_stats(const WalListener *w, WalStats *out);
/* From now on, asks fn (with the listener's arg) once per table and transaction for a key column,
 * and reports that column's values in WalTable.key_values. */
void wal_listener_want_keys(WalListener *w, WalKeyColumnFn fn);
/* From now on the position reported to the server (the slot's confirmed_flush_lsn) never passes
 * a commit delivered to the callback before wal_listener_confirm covers it: for an owner that
 * finishes handling commits later (asynchronously), so that a restart gets them again. Commits are
 * confirmed in order: confirming lsn says every commit delivered up to lsn is handled; a
 * confirmation made outside the callback is reported to the server within 100 ms. */
void wal_listener_hold_progress(WalListener *w);
void wal_listener_confirm(WalListener *w, uint64_t lsn);
/* Sends a last progress report (best effort, without waiting), closes the connection, frees
 * everything. The slot stays. NULL is fine. */
void wal_listener_free(WalListener *w);

/* ---- pure (wal_parse.c) ---- */

typedef enum WalLineKind {
	WAL_LINE_OTHER = 0, /* logical messages and anything unknown: ignored */
	WAL_LINE_BEGIN,     /* "BEGIN" or "BEGIN <xid>" */
	WAL_LINE_COMMIT,    /* "COMMIT" or "COMMIT <...>" */
	WAL_LINE_TABLE,     /* starts with "table " */
} WalLineKind;

WalLineKind wal_line_kind(const char *line, size_t len);

/* Reads the next table name of a test_decoding change line (line need not be NUL-terminated).
 * *pos is 0 for the first name; each success moves it past the name. Returns 1 with schema and
 * name set (unquoted, NUL-terminated), 0 when the line has no more names, -1 when the line is
 * not a change line ("table <schema>.<name>[, ...]: INSERT|UPDATE|DELETE|TRUNCATE:"), is
 * malformed, or a name does not fit its buffer. */
int wal_parse_table_line(const char *line, size_t len, size_t *pos, char *schema, size_t schema_size,
			 char *name, size_t name_size);

#define WAL_KEY_MAX 128 /* longer key values count as not known */

/* What one change line says of one column in the rows it changes: its values before and after
 * (each at most once, unquoted, as PostgreSQL prints them), and whether some are not known. */
typedef struct WalKeyValues {
	size_t n;
	char values[2][WAL_KEY_MAX];
	bool unknown;
} WalKeyValues;

/*
 * The values of `column` in a change line (line need not be NUL-terminated) whose table name
 * wal_parse_table_line has read: pos is where it stopped when it returned 0. INSERT: the new
 * row's. UPDATE: the old row's from "old-key:" (printed with every column under REPLICA IDENTITY
 * FULL, otherwise only when the identity columns change) and the new row's; with no "old-key:"
 * the old value is not known (the column may have changed). DELETE: the old row's (the identity
 * columns, or every column under FULL). NULL, an unchanged TOAST value, a column the line does
 * not print, TRUNCATE and anything unreadable: not known.
 */
void wal_parse_key_values(const char *line, size_t len, size_t pos, const char *column, WalKeyValues *out);

/* [a-z0-9_]{1,63}: what the server accepts, so the name needs no quoting in commands. */
bool wal_slot_name_valid(const char *slot);

/* "X/Y" (hex), like pg_lsn. */
void wal_format_lsn(char *buf, size_t len, uint64_t lsn);

#endif
