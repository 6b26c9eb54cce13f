/*
 * wal — the WAL listener on the event loop (see wal.h for what it owns; the line parser is in
 * wal_parse.c).
 *
 * One attempt, on a pgasync handle (pgasync.c resolves the host with evdns and drives libpq on the
 * loop): connect with replication=database → CREATE_REPLICATION_SLOT (42710 "already exists" is
 * fine) → START_REPLICATION → COPY BOTH, which this module reads and writes itself on the handle's
 * connection (pgasync_watch): PQconsumeInput + PQgetCopyData(async) on read events, PQputCopyData +
 * PQflush for the status updates (watching for writable while libpq still holds unsent bytes). Any
 * failure closes the connection, forgets the transaction being collected (the slot sends it again)
 * and schedules the next attempt (200 ms doubling to 5 s; back to 200 ms once a stream has lasted
 * 5 s).
 *
 * Progress: the LSN reported is the end of the last COMMIT passed to the callback, or a keepalive's
 * WAL end when no transaction is open (everything before it has been sent by then: it lets the
 * slot move past WAL that decodes to nothing). Only LSNs received on the current connection are
 * reported, so a new server (failover) never gets a position from another server's WAL.
 * Liveness: the 10 s status update asks for a reply when the server has been silent for 10 s; 30 s
 * of silence ends the stream.
 */
#include "wal.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hashmap.h"
#include "log.h"
#include "loop.h"
#include "pgasync.h"
#include "xalloc.h"

#define WAL_BACKOFF_MIN_MS 200
#define WAL_BACKOFF_MAX_MS 5000
#define WAL_STABLE_MS 5000          /* a stream that lasted this long resets the backoff */
#define WAL_STATUS_INTERVAL_MS 10000
#define WAL_CONFIRM_DELAY_MS 100    /* a confirmation (hold) is reported this soon */
#define WAL_SILENCE_MS 30000        /* no message from the server for this long: the stream is dead */
#define WAL_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define WAL_BATCH 1000              /* messages handled per wake-up before yielding to the loop */
#define WAL_NAME_MAX 256            /* identifiers are at most 63 bytes; room for anything sane */

/* Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
#define PG_EPOCH_OFFSET_US 946684800000000LL

typedef enum {
	WAL_WAITING = 0, /* no connection: the retry timer is pending */
	WAL_CONNECTING,  /* pgasync resolving the host and connecting */
	WAL_CREATING,    /* CREATE_REPLICATION_SLOT sent */
	WAL_STARTING,    /* START_REPLICATION sent, waiting for COPY BOTH */
	WAL_STREAMING,   /* COPY BOTH */
} WalState;

/* A table of the transaction being collected: key is "schema\0name\0". */
typedef struct TxTable {
	char *column;         /* the key column whose values are wanted (a copy: the configuration
			       * it came from may be reloaded before COMMIT), or NULL */
	bool rows_unknown;    /* a change line did not tell them (or there were too many) */
	size_t n_values;
	char (*values)[WAL_KEY_MAX]; /* WAL_TX_KEYS of them, when column */
	const char *value_ptrs[WAL_TX_KEYS];
	size_t key_len;
	char key[];
} TxTable;

typedef struct TxKey {
	const char *key;
	size_t len;
} TxKey;

struct WalListener {
	char *who; /* "wal <service>" */
	char *slot;
	WalCommitFn fn;
	WalKeyColumnFn key_column;
	void *arg;

	int64_t connect_timeout_ms; /* connect and START phases */
	WalState state;
	PgAsync *pa;
	LoopTimer ev_retry;   /* next attempt */
	struct event ev_status;  /* every WAL_STATUS_INTERVAL_MS, persistent */
	LoopTimer ev_more;    /* zero timer: more buffered messages after a full batch, or the first */
	LoopTimer ev_confirm; /* wal_listener_confirm moved the position: report it shortly */

	int64_t backoff_ms;
	int64_t stream_start_ms;
	int64_t last_rx_ms;
	bool ever_streamed;
	bool down_logged;   /* this outage has been logged */
	bool slot_created;  /* this attempt's CREATE_REPLICATION_SLOT created the slot */
	uint64_t consistent_point;
	char query_error[256];
	bool status_pending; /* a status update could not be queued: send it when writable */
	bool status_due;     /* conn_lsn moved (COMMIT, keepalive): report it at the end of the batch */
	uint64_t conn_lsn;   /* highest LSN processed on this connection (0: none) */
	bool hold;           /* wal_listener_hold_progress: report no further than the owner confirmed */
	uint64_t delivered_lsn; /* highest commit LSN passed to the callback (any connection) */
	uint64_t confirmed_lsn; /* wal_listener_confirm's highest */

	/* The transaction being collected. */
	bool in_txn;
	bool txn_unreadable; /* a change line could not be read: report "everything" at COMMIT */
	HashMap seen;
	TxTable **tables;
	size_t n_tables, cap_tables;
	WalTable *out;
	size_t cap_out;

	bool in_callback;
	bool free_requested;
	WalStats stats;
};

static void attempt_failed(WalListener *w, const char *what, const char *detail);
static void stream_progress(WalListener *w);
static void listener_destroy(WalListener *w);
static void listener_close(WalListener *w);

static int64_t pg_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - PG_EPOCH_OFFSET_US;
}

static struct timeval tv_ms(int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	return tv;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}


/* ---- the transaction being collected ---- */

static bool tx_eq(const void *value, const void *key)
{
	const TxTable *t = value;
	const TxKey *k = key;
	return t->key_len == k->len && memcmp(t->key, k->key, k->len) == 0;
}

static void tx_reset(WalListener *w)
{
	for (size_t i = 0; i < w->n_tables; i++) {
		free(w->tables[i]->column);
		free(w->tables[i]->values);
		free(w->tables[i]);
	}
	w->n_tables = 0;
	hashmap_free(&w->seen);
	w->in_txn = false;
	w->txn_unreadable = false;
}

static TxTable *tx_add(WalListener *w, const char *schema, const char *name)
{
	size_t sl = strlen(schema), nl = strlen(name);
	char key[2 * WAL_NAME_MAX + 2];
	memcpy(key, schema, sl + 1);
	memcpy(key + sl + 1, name, nl + 1);
	TxKey k = {key, sl + nl + 2};
	uint64_t h = hashmap_hash_bytes(key, k.len);
	TxTable *t = hashmap_get(&w->seen, h, tx_eq, &k);
	if (t)
		return t;
	t = xcalloc(1, sizeof *t + k.len);
	t->key_len = k.len;
	memcpy(t->key, key, k.len);
	const char *column = w->key_column ? w->key_column(w->arg, schema, name) : NULL;
	if (column) {
		t->column = xstrdup(column);
		t->values = xmalloc(WAL_TX_KEYS * sizeof *t->values);
	}
	if (w->n_tables == w->cap_tables) {
		w->cap_tables = w->cap_tables ? w->cap_tables * 2 : 8;
		w->tables = xalloc_check(realloc(w->tables, w->cap_tables * sizeof *w->tables));
	}
	w->tables[w->n_tables++] = t;
	hashmap_insert(&w->seen, h, t);
	return t;
}

/* What one change line of table t says of its key column's values (pos: just after t's name; a
 * line of several tables, a TRUNCATE, says none). */
static void tx_note_keys(TxTable *t, const char *line, size_t n, size_t pos)
{
	if (!t->column || t->rows_unknown)
		return;
	WalKeyValues v;
	wal_parse_key_values(line, n, pos, t->column, &v);
	if (v.unknown) {
		t->rows_unknown = true;
		return;
	}
	for (size_t i = 0; i < v.n; i++) {
		size_t j = 0;
		while (j < t->n_values && strcmp(t->values[j], v.values[i]) != 0)
			j++;
		if (j < t->n_values)
			continue;
		if (t->n_values == WAL_TX_KEYS) {
			t->rows_unknown = true;
			return;
		}
		memcpy(t->values[t->n_values++], v.values[i], WAL_KEY_MAX);
	}
}

/* Calls the callback; false when the listener was freed meanwhile (touch nothing then). */
static bool deliver(WalListener *w, const WalTable *tables, size_t n, uint64_t lsn)
{
	if (n == 0)
		w->stats.resets++;
	w->stats.tables += n;
	if (lsn > w->delivered_lsn)
		w->delivered_lsn = lsn;
	w->in_callback = true;
	w->fn(w->arg, n ? tables : NULL, n, lsn);
	w->in_callback = false;
	if (w->free_requested) {
		listener_close(w);
		return false;
	}
	return true;
}

/* ---- connection ---- */

static PGconn *conn(WalListener *w) { return pgasync_conn(w->pa); }

/* COPY BOTH is under way on a live connection (the handle's phase tells: a failure pgasync found
 * may still be on its way to on_failed). */
static bool streaming(const WalListener *w)
{
	return w->state == WAL_STREAMING && pgasync_phase(w->pa) == PGASYNC_OWNER;
}

static void attempt_close(WalListener *w)
{
	pgasync_close(w->pa);
	loop_timer_stop(&w->ev_more);
	loop_timer_stop(&w->ev_confirm);
	w->status_pending = w->status_due = false;
	w->conn_lsn = 0;
	tx_reset(w);
	w->stats.connected = false;
}

static void retry_schedule(WalListener *w, int64_t ms)
{
	loop_timer_start(&w->ev_retry, ms);
}

/* what: the phase ("cannot connect", "replication stream lost", ...); detail: the cause. */
static void attempt_failed(WalListener *w, const char *what, const char *detail)
{
	bool was_streaming = w->state == WAL_STREAMING;
	char cause[200];
	log_one_line(cause, sizeof cause, detail && *detail ? detail : "unknown error");
	snprintf(w->stats.last_error, sizeof w->stats.last_error, "%s: %s", what, cause);
	w->stats.failures++;
	if (was_streaming && loop_now_ms() - w->stream_start_ms >= WAL_STABLE_MS)
		w->backoff_ms = WAL_BACKOFF_MIN_MS;
	int64_t delay = w->backoff_ms;
	w->backoff_ms = w->backoff_ms * 2 > WAL_BACKOFF_MAX_MS ? WAL_BACKOFF_MAX_MS : w->backoff_ms * 2;
	if (!w->down_logged) {
		log_warning(w->who, "%s (slot %s): %s; reconnecting with backoff (the slot keeps the position)", what,
			    w->slot, cause);
		w->down_logged = true;
	} else {
		log_debug(w->who, "%s (slot %s): %s; next attempt in %lld ms", what, w->slot, cause, (long long)delay);
	}
	attempt_close(w);
	w->state = WAL_WAITING;
	retry_schedule(w, delay);
}

static void on_retry(void *arg)
{
	WalListener *w = arg;
	w->state = WAL_CONNECTING;
	pgasync_reconnect(w->pa, w->connect_timeout_ms); /* the parameters wal_listener_new gave */
}

/* ---- status updates ---- */

/* Flushes what libpq holds. -1: failed (attempt_failed done); 0: all sent; 1: more to send. */
static int stream_flush(WalListener *w)
{
	int r = PQflush(conn(w));
	if (r < 0)
		attempt_failed(w, "replication stream lost", PQerrorMessage(conn(w)));
	return r;
}

/* The LSN to report: the one processed on this connection, but with hold, while a delivered
 * commit is not confirmed, no further than the owner confirmed (the slot then sends the rest again
 * after a restart). 0 (InvalidXLogRecPtr) leaves the slot where it is. */
static uint64_t report_lsn(const WalListener *w)
{
	if (!w->hold || w->confirmed_lsn >= w->delivered_lsn)
		return w->conn_lsn;
	return w->confirmed_lsn < w->conn_lsn ? w->confirmed_lsn : w->conn_lsn;
}

/* Queues a standby status update ('r') with report_lsn; false when libpq did not take it (full
 * buffer: 0, or error: -1 in *r). */
static bool status_queue(WalListener *w, bool reply_requested, int *r)
{
	unsigned char msg[1 + 8 * 4 + 1];
	uint64_t lsn = report_lsn(w);
	msg[0] = 'r';
	put_be64(msg + 1, lsn);  /* written */
	put_be64(msg + 9, lsn);  /* flushed: the slot's confirmed_flush_lsn follows this one */
	put_be64(msg + 17, lsn); /* applied */
	put_be64(msg + 25, (uint64_t)pg_now_us());
	msg[33] = reply_requested ? 1 : 0;
	*r = PQputCopyData(conn(w), (const char *)msg, (int)sizeof msg);
	return *r == 1;
}

static bool status_send_quiet(WalListener *w)
{
	int r;
	return status_queue(w, false, &r);
}

/* Queues a status update. False when the connection failed (attempt_failed done). */
static bool status_send(WalListener *w, bool reply_requested)
{
	int r;
	status_queue(w, reply_requested, &r);
	if (r < 0) {
		attempt_failed(w, "replication stream lost", PQerrorMessage(conn(w)));
		return false;
	}
	w->status_pending = r == 0; /* libpq's buffer is full: again once it drained */
	return true;
}

static void on_stream_ready(void *arg) { stream_progress(arg); }

/* Flushes, then waits for the server (and for writable while libpq holds unsent bytes or a status
 * update waits). more: messages may already wait in libpq's buffer. */
static void stream_wait(WalListener *w, bool more)
{
	int f = stream_flush(w);
	if (f < 0)
		return;
	if (more) {
		loop_timer_start(&w->ev_more, 0);
	}
	pgasync_watch(w->pa, f == 1 || w->status_pending, on_stream_ready);
}

static void on_status_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	WalListener *w = arg;
	if (!streaming(w))
		return;
	int64_t silent = loop_now_ms() - w->last_rx_ms;
	if (silent >= WAL_SILENCE_MS) {
		char msg[96];
		snprintf(msg, sizeof msg, "no message from the server for %lld s", (long long)(silent / 1000));
		attempt_failed(w, "replication stream lost", msg);
		return;
	}
	if (status_send(w, silent >= WAL_STATUS_INTERVAL_MS))
		stream_wait(w, false);
}

/* ---- streaming ---- */

/* 'w' XLogData: dataStart, walEnd, sendTime, then one test_decoding line. False when the listener
 * was freed or the connection failed. */
static bool handle_xlogdata(WalListener *w, const unsigned char *msg, size_t len)
{
	uint64_t data_start = get_be64(msg + 1);
	const char *line = (const char *)msg + 25;
	size_t n = len - 25;
	switch (wal_line_kind(line, n)) {
	case WAL_LINE_BEGIN:
		tx_reset(w);
		w->in_txn = true;
		return true;
	case WAL_LINE_TABLE: {
		w->in_txn = true; /* a change is always inside BEGIN/COMMIT; be lenient anyway */
		char schema[WAL_NAME_MAX], name[WAL_NAME_MAX];
		size_t pos = 0;
		int r;
		while ((r = wal_parse_table_line(line, n, &pos, schema, sizeof schema, name, sizeof name)) == 1)
			tx_note_keys(tx_add(w, schema, name), line, n, pos);
		if (r < 0 && !w->txn_unreadable) {
			w->txn_unreadable = true;
			log_warning(w->who, "unreadable change line \"%.*s\": this transaction invalidates everything",
				    (int)(n > 120 ? 120 : n), line);
		}
		return true;
	}
	case WAL_LINE_COMMIT: {
		/* For a COMMIT, test_decoding's write location is the end of the commit record. */
		uint64_t lsn = data_start;
		w->stats.transactions++;
		bool ok = true;
		if (w->txn_unreadable) {
			ok = deliver(w, NULL, 0, lsn);
		} else if (w->n_tables > 0) {
			if (w->cap_out < w->n_tables) {
				w->cap_out = w->n_tables;
				w->out = xalloc_check(realloc(w->out, w->cap_out * sizeof *w->out));
			}
			for (size_t i = 0; i < w->n_tables; i++) {
				TxTable *t = w->tables[i];
				w->out[i].schema = t->key;
				w->out[i].name = t->key + strlen(t->key) + 1;
				size_t nv = t->column && !t->rows_unknown ? t->n_values : 0;
				for (size_t j = 0; j < nv; j++)
					t->value_ptrs[j] = t->values[j];
				w->out[i].key_values = t->value_ptrs;
				w->out[i].n_key_values = nv;
			}
			ok = deliver(w, w->out, w->n_tables, lsn);
		}
		if (!ok)
			return false;
		tx_reset(w);
		if (lsn > w->conn_lsn)
			w->conn_lsn = lsn;
		if (lsn > w->stats.last_lsn)
			w->stats.last_lsn = lsn;
		w->status_due = true; /* sent once the batch of messages at hand is handled */
		return true;
	}
	case WAL_LINE_OTHER:
		break;
	}
	return true;
}

/* 'k' keepalive: walEnd, sendTime, replyRequested. */
static bool handle_keepalive(WalListener *w, const unsigned char *msg)
{
	uint64_t wal_end = get_be64(msg + 1);
	bool reply = msg[17] != 0;
	if (!w->in_txn && wal_end > w->conn_lsn) {
		/* Everything decoded before wal_end has been sent already, and nothing is open: the slot
		 * may move past WAL that decoded to nothing (other databases, skipped transactions). */
		w->conn_lsn = wal_end;
		if (wal_end > w->stats.last_lsn)
			w->stats.last_lsn = wal_end;
		w->status_due = !reply;
	}
	return reply ? status_send(w, false) : true;
}

static void stream_ended(WalListener *w)
{
	/* The server ended COPY (shutdown, error): collect its message without blocking. */
	char msg[256] = "";
	while (!PQisBusy(conn(w))) {
		PGresult *res = PQgetResult(conn(w));
		if (!res)
			break;
		const char *m = PQresultErrorMessage(res);
		if (!msg[0] && m && *m)
			snprintf(msg, sizeof msg, "%s", m);
		PQclear(res);
	}
	if (!msg[0])
		snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn(w)));
	attempt_failed(w, "replication stream lost", msg[0] ? msg : "the server ended the stream");
}

static void on_more(void *arg)
{
	WalListener *w = arg;
	if (streaming(w))
		stream_progress(w);
}

static void on_confirm(void *arg)
{
	WalListener *w = arg;
	if (streaming(w) && status_send(w, false))
		stream_wait(w, false);
}

static void stream_progress(WalListener *w)
{
	if (w->status_pending && !status_send(w, false))
		return;
	if (!PQconsumeInput(conn(w))) {
		attempt_failed(w, "replication stream lost", PQerrorMessage(conn(w)));
		return;
	}
	bool more = false;
	for (int handled = 0;; handled++) {
		if (handled == WAL_BATCH) {
			more = true; /* let the loop run; on_more continues */
			break;
		}
		char *buf = NULL;
		int n = PQgetCopyData(conn(w), &buf, 1);
		if (n == 0)
			break;
		if (n == -1) {
			stream_ended(w);
			return;
		}
		if (n < 0) {
			attempt_failed(w, "replication stream lost", PQerrorMessage(conn(w)));
			return;
		}
		w->last_rx_ms = loop_now_ms();
		const unsigned char *m = (const unsigned char *)buf;
		bool ok = true;
		if (m[0] == 'w' && n >= 25) {
			ok = handle_xlogdata(w, m, (size_t)n);
		} else if (m[0] == 'k' && n >= 18) {
			ok = handle_keepalive(w, m);
		} else {
			char msg[80];
			snprintf(msg, sizeof msg, "unexpected message '%c' (%d bytes) in the stream", m[0] >= 32 && m[0] < 127 ? m[0] : '?', n);
			PQfreemem(buf);
			attempt_failed(w, "replication stream lost", msg);
			return;
		}
		PQfreemem(buf);
		if (!ok)
			return; /* freed by its callback, or the connection failed */
	}
	if (w->status_due) {
		w->status_due = false;
		if (!status_send(w, false))
			return;
	}
	stream_wait(w, more);
}

/* START_REPLICATION answered with COPY BOTH (inside pgasync's result callback: the handle becomes
 * the owner's once it returns, so the first read runs from the loop). */
static void stream_begin(WalListener *w)
{
	w->state = WAL_STREAMING;
	w->stats.connected = true;
	w->stream_start_ms = w->last_rx_ms = loop_now_ms();
	w->conn_lsn = 0;
	tx_reset(w);
	if (w->ever_streamed)
		w->stats.reconnects++;
	if (w->down_logged)
		log_info(w->who, "streaming again from slot %s", w->slot);
	else if (!w->ever_streamed)
		log_info(w->who, "streaming changes from slot %s", w->slot);
	w->ever_streamed = true;
	w->down_logged = false;
	loop_timer_start(&w->ev_more, 0); /* data may already sit in libpq's buffer */
}

/* ---- slot and START_REPLICATION ---- */

static void command_send(WalListener *w, WalState state, const char *sql, int64_t timeout_ms)
{
	w->state = state;
	w->query_error[0] = '\0';
	if (!pgasync_query(w->pa, sql, timeout_ms))
		attempt_failed(w, "cannot start replication", "the connection is not ready for a command");
}

static void replication_start(WalListener *w)
{
	char sql[256];
	snprintf(sql, sizeof sql,
		 "START_REPLICATION SLOT %s LOGICAL 0/0 (\"include-xids\" '0', \"skip-empty-xacts\" '1')", w->slot);
	command_send(w, WAL_STARTING, sql, w->connect_timeout_ms);
}

/* ---- pgasync callbacks ---- */

static void on_connected(void *arg)
{
	WalListener *w = arg;
	char sql[160];
	/* No timeout: creating a slot waits for the transactions running at that moment to end. */
	snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT %s LOGICAL test_decoding NOEXPORT_SNAPSHOT", w->slot);
	w->slot_created = false;
	w->consistent_point = 0;
	command_send(w, WAL_CREATING, sql, 0);
}

static bool on_result(void *arg, PGresult *res)
{
	WalListener *w = arg;
	ExecStatusType st = PQresultStatus(res);
	if (w->state == WAL_STARTING && st == PGRES_COPY_BOTH) {
		stream_begin(w);
		return false; /* the stream is read here */
	}
	if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
		const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (w->state == WAL_CREATING && code && strcmp(code, "42710") == 0) {
			log_debug(w->who, "replication slot %s exists", w->slot);
		} else if (!w->query_error[0]) {
			const char *m = PQresultErrorMessage(res);
			log_one_line(w->query_error, sizeof w->query_error, m && *m ? m : PQresStatus(st));
		}
	} else if (w->state == WAL_CREATING && st == PGRES_TUPLES_OK) {
		w->slot_created = true;
		if (PQntuples(res) == 1 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1)) {
			unsigned hi, lo;
			if (sscanf(PQgetvalue(res, 0, 1), "%X/%X", &hi, &lo) == 2)
				w->consistent_point = ((uint64_t)hi << 32) | lo;
		}
	}
	return true;
}

/* Every result of the command has been read. */
static void on_done(void *arg)
{
	WalListener *w = arg;
	if (w->query_error[0]) {
		attempt_failed(w, w->state == WAL_CREATING ? "cannot create the replication slot" : "cannot start replication",
			       w->query_error);
		return;
	}
	if (w->state == WAL_STARTING) {
		attempt_failed(w, "cannot start replication", "START_REPLICATION ended without streaming");
		return;
	}
	if (w->slot_created) {
		char lsn[32];
		wal_format_lsn(lsn, sizeof lsn, w->consistent_point);
		log_info(w->who, "created the logical replication slot %s (test_decoding) at %s: "
				 "changes before it are unknown, invalidating everything",
			 w->slot, lsn);
		if (!deliver(w, NULL, 0, w->consistent_point))
			return;
	}
	replication_start(w);
}

static void on_failed(void *arg, PgAsyncPhase phase, const char *message)
{
	attempt_failed(arg, phase == PGASYNC_OWNER ? "replication stream lost" :
			    phase == PGASYNC_QUERYING ? "cannot start replication" : "cannot connect",
		       message);
}

static void on_notice(void *arg, const char *message)
{
	WalListener *w = arg;
	log_info(w->who, "server says: %s", message);
}

/* ---- life cycle ---- */

/* conninfo's parameters with replication=database and the defaults, handed to pgasync (which keeps
 * them for the reconnections): the first attempt starts. False (logged) when it does not parse. */
static bool connect_first(WalListener *w, const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
	if (!opts) {
		char line[256];
		log_one_line(line, sizeof line, err ? err : "out of memory");
		log_error(w->who, "invalid connection string: %s", line);
		PQfreemem(err);
		return false;
	}
	size_t cap = 3; /* + replication + application_name + terminator */
	for (PQconninfoOption *o = opts; o->keyword; o++)
		cap++;
	const char **keys = xcalloc(cap, sizeof *keys), **vals = xcalloc(cap, sizeof *vals);
	size_t n = 0;
	bool have_app = false;
	w->connect_timeout_ms = WAL_DEFAULT_CONNECT_TIMEOUT_MS;
	for (PQconninfoOption *o = opts; o->keyword; o++) {
		if (!o->val || !o->val[0] || strcmp(o->keyword, "replication") == 0)
			continue;
		if (strcmp(o->keyword, "application_name") == 0) {
			have_app = true;
		} else if (strcmp(o->keyword, "connect_timeout") == 0) {
			long s = strtol(o->val, NULL, 10);
			if (s > 0)
				w->connect_timeout_ms = (int64_t)s * 1000;
		}
		keys[n] = o->keyword, vals[n++] = o->val;
	}
	keys[n] = "replication", vals[n++] = "database";
	if (!have_app)
		keys[n] = "application_name", vals[n++] = "pgrelay-wal";
	w->state = WAL_CONNECTING;
	pgasync_connect(w->pa, keys, vals, w->connect_timeout_ms); /* reports from the loop only */
	free(keys);
	free(vals);
	PQconninfoFree(opts);
	return true;
}

WalListener *wal_listener_new(struct event_base *base, const char *service, const char *conninfo,
			      const char *slot, WalCommitFn fn, void *arg)
{
	WalListener *w = xcalloc(1, sizeof *w);
	service = service ? service : "";
	size_t wl = strlen(service) + 5;
	w->who = xmalloc(wl);
	snprintf(w->who, wl, "wal %s", service);
	w->slot = xstrdup(slot ? slot : "");
	w->fn = fn;
	w->arg = arg;
	hashmap_init(&w->seen);
	loop_timer_init(&w->ev_retry, base, on_retry, w);
	loop_timer_init(&w->ev_more, base, on_more, w);
	loop_timer_init(&w->ev_confirm, base, on_confirm, w);
	event_assign(&w->ev_status, base, -1, EV_PERSIST, on_status_tick, w);
	PgAsyncHandler h = {.connected = on_connected, .result = on_result, .done = on_done, .failed = on_failed,
			    .notice = on_notice};
	w->pa = pgasync_new(base, NULL, w->who, &h, w); /* a resolver of its own, made for a host name */
	if (!wal_slot_name_valid(w->slot) || !fn) {
		if (!fn)
			log_error(w->who, "no callback");
		else
			log_error(w->who, "invalid replication slot name \"%.80s\": use 1 to 63 of a-z, 0-9 and _", w->slot);
		listener_destroy(w);
		return NULL;
	}
	if (!connect_first(w, conninfo)) {
		listener_destroy(w);
		return NULL;
	}
	w->backoff_ms = WAL_BACKOFF_MIN_MS;
	struct timeval every = tv_ms(WAL_STATUS_INTERVAL_MS);
	event_add(&w->ev_status, &every);
	return w;
}

void wal_listener_want_keys(WalListener *w, WalKeyColumnFn fn)
{
	if (w)
		w->key_column = fn;
}

void wal_listener_hold_progress(WalListener *w)
{
	if (w)
		w->hold = true;
}

void wal_listener_confirm(WalListener *w, uint64_t lsn)
{
	if (!w || lsn <= w->confirmed_lsn)
		return;
	w->confirmed_lsn = lsn;
	/* an asynchronous confirmation: the slot moves within WAL_CONFIRM_DELAY_MS, not at the next
	 * 10 s tick (several confirmations meanwhile make one report) */
	if (w->hold && !w->in_callback && streaming(w) && !loop_timer_pending(&w->ev_confirm)) {
		loop_timer_start(&w->ev_confirm, WAL_CONFIRM_DELAY_MS);
	}
}

void wal_listener_stats(const WalListener *w, WalStats *out)
{
	if (!out)
		return;
	if (!w) {
		memset(out, 0, sizeof *out);
		return;
	}
	*out = w->stats;
}

static void listener_destroy(WalListener *w)
{
	attempt_close(w);
	loop_timer_stop(&w->ev_retry);
	event_del(&w->ev_status);
	pgasync_free(w->pa); /* inside one of its callbacks: freed when that returns */
	tx_reset(w);
	free(w->tables);
	free(w->out);
	free(w->who);
	free(w->slot);
	free(w);
}

/* Last progress report (best effort, without waiting), then close and free. */
static void listener_close(WalListener *w)
{
	if (streaming(w) && w->conn_lsn && status_send_quiet(w))
		(void)PQflush(conn(w));
	if (w->stats.connected || w->down_logged)
		log_info(w->who, "closing the replication connection (slot %s stays)", w->slot);
	listener_destroy(w);
}

void wal_listener_free(WalListener *w)
{
	if (!w)
		return;
	if (w->in_callback) {
		w->free_requested = true; /* closed when the callback returns */
		return;
	}
	listener_close(w);
}
