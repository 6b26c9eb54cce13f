/*
 * wal_probe — test driver for the WAL listener (src/wal.c), used by tests/integration/test_wal.py.
 * Not installed.
 *
 *   wal_probe CONNINFO SLOT [SERVICE]
 *
 * Runs one listener on a libevent loop and prints, flushing stdout after each line:
 *   COMMIT <lsn> <schema>.<table> ...   one line per callback (names SQL-quoted when needed)
 *   RESET <lsn>                         a callback with n == 0 ("invalidate everything")
 *   STATS transactions=.. tables=.. resets=.. reconnects=.. failures=.. last_lsn=.. connected=0|1
 *                                       on SIGUSR1
 *   FREED                               after freeing the listener from inside its callback
 *                                       (WAL_PROBE_FREE_AFTER=N: at the N-th COMMIT line)
 *   KEYS <schema>.<table> <v>|<v>...    before a COMMIT line, one per table, with WAL_PROBE_KEY=column:
 *                                       that column's values in the rows written ("?": not known)
 * SIGINT/SIGTERM free the listener and exit 0. Logs go to stderr (WAL_PROBE_DEBUG=1: debug).
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wal.h"

typedef struct Probe {
	struct event_base *base;
	WalListener *w;
	long commits;
	long free_after; /* 0: never */
	const char *key; /* WAL_PROBE_KEY: the key column asked for every table, or NULL */
} Probe;

static const char *probe_key_column(void *arg, const char *schema, const char *name)
{
	(void)schema;
	(void)name;
	return ((Probe *)arg)->key;
}

static void print_ident(const char *s)
{
	bool plain = (*s >= 'a' && *s <= 'z') || *s == '_';
	for (const char *p = s; *p; p++)
		plain = plain && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
	if (plain) {
		fputs(s, stdout);
		return;
	}
	putchar('"');
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			putchar('"');
		putchar(*p);
	}
	putchar('"');
}

static void on_commit(void *arg, const WalTable *tables, size_t n, uint64_t lsn)
{
	Probe *p = arg;
	char text[32];
	wal_format_lsn(text, sizeof text, lsn);
	if (n == 0) {
		printf("RESET %s\n", text);
		fflush(stdout);
		return;
	}
	for (size_t i = 0; p->key && i < n; i++) {
		fputs("KEYS ", stdout);
		print_ident(tables[i].schema);
		putchar('.');
		print_ident(tables[i].name);
		putchar(' ');
		if (tables[i].n_key_values == 0)
			putchar('?');
		for (size_t j = 0; j < tables[i].n_key_values; j++)
			printf("%s%s", j ? "|" : "", tables[i].key_values[j]);
		putchar('\n');
	}
	printf("COMMIT %s", text);
	for (size_t i = 0; i < n; i++) {
		putchar(' ');
		print_ident(tables[i].schema);
		putchar('.');
		print_ident(tables[i].name);
	}
	putchar('\n');
	fflush(stdout);
	if (p->free_after && ++p->commits == p->free_after) {
		wal_listener_free(p->w); /* deferred until this callback returns */
		p->w = NULL;
		puts("FREED");
		fflush(stdout);
		event_base_loopbreak(p->base);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	Probe *p = arg;
	if (sig == SIGUSR1) {
		WalStats s;
		wal_listener_stats(p->w, &s);
		char lsn[32];
		wal_format_lsn(lsn, sizeof lsn, s.last_lsn);
		printf("STATS transactions=%llu tables=%llu resets=%llu reconnects=%llu failures=%llu last_lsn=%s connected=%d\n",
		       (unsigned long long)s.transactions, (unsigned long long)s.tables, (unsigned long long)s.resets,
		       (unsigned long long)s.reconnects, (unsigned long long)s.failures, lsn, s.connected ? 1 : 0);
		fflush(stdout);
		return;
	}
	event_base_loopbreak(p->base);
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: wal_probe CONNINFO SLOT [SERVICE]\n");
		return 2;
	}
	LogSettings log = {.level = getenv("WAL_PROBE_DEBUG") ? CONFIG_LOG_DEBUG : CONFIG_LOG_INFO};
	log_configure(&log);
	signal(SIGPIPE, SIG_IGN);

	Probe p = {0};
	const char *fa = getenv("WAL_PROBE_FREE_AFTER");
	p.free_after = fa ? strtol(fa, NULL, 10) : 0;
	p.key = getenv("WAL_PROBE_KEY");
	p.base = event_base_new();
	if (!p.base)
		return 1;
	int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
	struct event *evs[3];
	for (int i = 0; i < 3; i++) {
		evs[i] = evsignal_new(p.base, sigs[i], on_signal, &p);
		evsignal_add(evs[i], NULL);
	}
	p.w = wal_listener_new(p.base, argc > 3 ? argv[3] : "probe", argv[1], argv[2], on_commit, &p);
	if (p.key)
		wal_listener_want_keys(p.w, probe_key_column);
	int rc = 1;
	if (p.w) {
		event_base_dispatch(p.base);
		rc = 0;
	}
	wal_listener_free(p.w);
	for (int i = 0; i < 3; i++)
		event_free(evs[i]);
	event_base_free(p.base);
	log_configure(NULL);
	return rc;
}
