/*
 * migrate — `pgrelay migrate -c FILE [--status] [--dir DIR]`: applies DIR/<service>/NNNN_name.sql to
 * each service's primary, in order of NNNN, each file in its own transaction together with its row
 * in public.pgrelay_migrations (service, version, name, SHA-256 checksum, applied_at). Refuses,
 * before applying anything for that service and without going on to the next, when a file already
 * applied has a different checksum now. `--status` only reports applied / pending / changed /
 * missing files. A session advisory lock per (database, service) keeps two runs from racing.
 *
 * Owns: the command line of the subcommand, scanning migration directories, checksums (OpenSSL
 * EVP), and plain synchronous libpq sessions to the primaries. Nothing of the event loop.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "commands.h"
#include "config.h"
#include "xalloc.h"

/* First key of the advisory locks taken by pgrelay migrate ("pgre"); the second is
 * hashtext(service) for the per-service lock, 0 while creating the bookkeeping table. */
#define LOCK_CLASS 1885827685
#define MAX_VERSION_DIGITS 18

typedef struct MigFile {
	char *name;    /* "0001_schema.sql" */
	char *path;    /* DIR/service/name */
	char *version; /* "0001": the digits as written */
	unsigned long long number;
	char checksum[EVP_MAX_MD_SIZE * 2 + 1];
	char *sql;
	size_t len;
} MigFile;

typedef struct Applied {
	char *version, *name, *checksum, *applied_at;
	bool seen; /* a file with this version exists */
} Applied;

typedef struct Totals {
	int applied;      /* files applied by this run */
	int up_to_date;   /* services with nothing to do */
	int skipped;      /* services without a directory */
	int pending;      /* --status */
	int changed;      /* --status */
	int problems;     /* --status: services that could not be checked */
} Totals;

static const char *g_prog = "pgrelay migrate";

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: pgrelay migrate -c FILE [--status] [--dir DIR]\n"
		"\n"
		"Applies DIR/<service>/NNNN_name.sql, in order of NNNN, to the primary of each service of FILE,\n"
		"each file in its own transaction, recorded with its SHA-256 in public.pgrelay_migrations of\n"
		"the service's database. Refuses (exit 1) when a file already applied has changed.\n"
		"\n"
		"  -c, --config FILE  the pgrelay configuration (services and their primaries)\n"
		"  --status           list applied / pending / changed files per service; apply nothing\n"
		"  --dir DIR          the migrations directory (default: \"migrations\" next to FILE if it\n"
		"                     exists, else ./migrations)\n"
		"  -h, --help         this help\n");
}

/* ---------------------------------------------------------------- small helpers */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fputs("pgrelay: out of memory\n", stderr);
		abort();
	}
	return s;
}

static bool is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1000.0 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* libpq's messages end with a newline; drop trailing whitespace. */
static char *trimmed(const char *msg)
{
	char *s = xstrdup(msg ? msg : "");
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* ---------------------------------------------------------------- migration files */

static void free_files(MigFile *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i].name);
		free(files[i].path);
		free(files[i].version);
		free(files[i].sql);
	}
	free(files);
}

/* "NNNN_name.sql": digits, '_', at least one character, ".sql". */
static bool parse_file_name(const char *name, char **version, unsigned long long *number)
{
	size_t digits = strspn(name, "0123456789");
	size_t len = strlen(name);
	if (digits == 0 || digits > MAX_VERSION_DIGITS || name[digits] != '_')
		return false;
	if (len < digits + 1 + 1 + 4 || strcmp(name + len - 4, ".sql") != 0)
		return false;
	*version = xmalloc(digits + 1);
	memcpy(*version, name, digits);
	(*version)[digits] = '\0';
	*number = strtoull(*version, NULL, 10);
	return true;
}

static int cmp_files(const void *a, const void *b)
{
	const MigFile *x = a, *y = b;
	if (x->number != y->number)
		return x->number < y->number ? -1 : 1;
	return strcmp(x->name, y->name);
}

static bool checksum_hex(const char *data, size_t len, char out[EVP_MAX_MD_SIZE * 2 + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1)
		return false;
	for (unsigned int i = 0; i < md_len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[2 * md_len] = '\0';
	return true;
}

static bool read_file(MigFile *f)
{
	FILE *fp = fopen(f->path, "rb");
	if (!fp) {
		fprintf(stderr, "%s: cannot open %s: %s\n", g_prog, f->path, strerror(errno));
		return false;
	}
	size_t cap = 8192, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			buf = xalloc_check(realloc(buf, cap));
		}
		size_t n = fread(buf + len, 1, cap - len - 1, fp);
		len += n;
		if (n == 0)
			break;
	}
	bool ok = !ferror(fp);
	fclose(fp);
	if (!ok) {
		fprintf(stderr, "%s: cannot read %s\n", g_prog, f->path);
		free(buf);
		return false;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		fprintf(stderr, "%s: %s contains a NUL byte: not an SQL file\n", g_prog, f->path);
		free(buf);
		return false;
	}
	if (!checksum_hex(buf, len, f->checksum)) {
		fprintf(stderr, "%s: SHA-256 of %s failed\n", g_prog, f->path);
		free(buf);
		return false;
	}
	f->sql = buf;
	f->len = len;
	return true;
}

typedef enum { SCAN_OK, SCAN_NO_DIR, SCAN_ERROR } ScanResult;

/* Reads every NNNN_name.sql of dir (sorted by NNNN) with its checksum. */
static ScanResult scan_service_dir(const char *dir, MigFile **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT || errno == ENOTDIR)
			return SCAN_NO_DIR;
		fprintf(stderr, "%s: cannot read directory %s: %s\n", g_prog, dir, strerror(errno));
		return SCAN_ERROR;
	}
	MigFile *files = NULL;
	size_t n = 0, cap = 0;
	bool ok = true;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *path = xasprintf("%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		size_t len = strlen(e->d_name);
		char *version = NULL;
		unsigned long long number = 0;
		if (!parse_file_name(e->d_name, &version, &number)) {
			if (len >= 4 && strcmp(e->d_name + len - 4, ".sql") == 0)
				fprintf(stderr, "%s: warning: %s ignored: not named NNNN_name.sql\n", g_prog, path);
			free(path);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			files = xalloc_check(realloc(files, cap * sizeof *files));
		}
		files[n++] = (MigFile){.name = xstrdup(e->d_name), .path = path, .version = version, .number = number};
	}
	closedir(d);
	qsort(files, n, sizeof *files, cmp_files);
	for (size_t i = 0; i + 1 < n; i++) {
		if (files[i].number == files[i + 1].number) {
			fprintf(stderr, "%s: %s and %s have the same number: rename one\n", g_prog, files[i].path,
				files[i + 1].path);
			ok = false;
		}
	}
	for (size_t i = 0; ok && i < n; i++)
		ok = read_file(&files[i]);
	if (!ok) {
		free_files(files, n);
		return SCAN_ERROR;
	}
	*out = files;
	*n_out = n;
	return SCAN_OK;
}

/* ---------------------------------------------------------------- libpq */

/* Prints WARNINGs (and anything above NOTICE) the server sends while migrating; NOTICEs such as
 * "relation ... already exists, skipping" are noise here. */
static void notice_receiver(void *arg, const PGresult *res)
{
	const char *const *current = arg;
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	if (sev && (strcmp(sev, "NOTICE") == 0 || strcmp(sev, "INFO") == 0 || strcmp(sev, "LOG") == 0 ||
		    strcmp(sev, "DEBUG") == 0))
		return;
	char *msg = trimmed(PQresultErrorMessage(res));
	fprintf(stderr, "%s: %s: %s\n", g_prog, *current ? *current : "server", msg);
	free(msg);
}

static void add_kv(const char **keys, const char **vals, int *k, const char *key, const char *val)
{
	if (!val)
		return;
	keys[*k] = key;
	vals[*k] = val;
	(*k)++;
}

static PGconn *connect_primary(const ConfigService *svc, const char *const *current)
{
	const ConfigBackend *b = &svc->primary;
	char port[16], timeout[32];
	snprintf(port, sizeof port, "%d", b->port);
	int64_t secs = (svc->pool.connect_timeout_ms + 999) / 1000;
	snprintf(timeout, sizeof timeout, "%" PRId64, secs < 2 ? 2 : secs);
	const char *keys[16], *vals[16];
	int k = 0;
#define KV(key, val) add_kv(keys, vals, &k, (key), (val))
	KV("host", b->host);
	KV("port", port);
	KV("dbname", b->dbname ? b->dbname : svc->name);
	KV("user", b->user);
	KV("password", b->password);
	KV("sslmode", config_tls_mode_name(svc->tls.mode));
	if (svc->tls.mode == CONFIG_TLS_VERIFY_FULL)
		KV("sslrootcert", svc->tls.ca);
	KV("gssencmode", "disable");
	KV("connect_timeout", timeout);
	KV("application_name", "pgrelay-migrate");
	KV("client_encoding", "UTF8");
#undef KV
	keys[k] = NULL;
	vals[k] = NULL;
	PGconn *conn = PQconnectdbParams(keys, vals, 0);
	if (!conn) {
		fputs("pgrelay: out of memory\n", stderr);
		abort();
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		char *msg = trimmed(PQerrorMessage(conn));
		fprintf(stderr, "%s: %s: cannot connect to the primary %s:%d (database %s, user %s): %s\n", g_prog,
			svc->name, b->host, b->port, b->dbname ? b->dbname : svc->name, b->user ? b->user : "(default)",
			msg);
		free(msg);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeReceiver(conn, notice_receiver, (void *)current);
	return conn;
}

/* Runs sql and prints an error naming what (the service) if it does not return want. */
static bool run(PGconn *conn, const char *what, const char *sql, int n_params, const char *const *params,
		ExecStatusType want, PGresult **out)
{
	PGresult *res = n_params ? PQexecParams(conn, sql, n_params, NULL, params, NULL, NULL, 0) : PQexec(conn, sql);
	if (PQresultStatus(res) != want) {
		char *msg = trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		if (!*msg) {
			free(msg);
			msg = trimmed(PQerrorMessage(conn));
		}
		fprintf(stderr, "%s: %s: %s\n", g_prog, what, msg);
		free(msg);
		PQclear(res);
		return false;
	}
	if (out)
		*out = res;
	else
		PQclear(res);
	return true;
}

/* 1-based character position (as the server reports it, in a UTF-8 query) -> line and column. */
static void position_to_line(const char *sql, long pos, int *line, int *col)
{
	*line = 1;
	*col = 1;
	long chars = 1;
	for (const unsigned char *p = (const unsigned char *)sql; *p && chars < pos; p++) {
		if ((*p & 0xC0) == 0x80)
			continue; /* UTF-8 continuation byte: same character */
		chars++;
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

/* Prints a server error that happened while running file f. */
static void report_file_error(const MigFile *f, const PGresult *res, PGconn *conn)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (!primary) {
		char *msg = trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
		if (!*msg) {
			free(msg);
			msg = trimmed(PQerrorMessage(conn));
		}
		fprintf(stderr, "%s: %s: %s\n", g_prog, f->path, msg);
		free(msg);
		return;
	}
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
	if (pos) {
		int line, col;
		position_to_line(f->sql, strtol(pos, NULL, 10), &line, &col);
		fprintf(stderr, "%s:%d:%d: ", f->path, line, col);
	} else {
		fprintf(stderr, "%s: ", f->path);
	}
	fprintf(stderr, "%s: %s (SQLSTATE %s)\n", sev ? sev : "ERROR", primary, state ? state : "?????");
	static const struct { int field; const char *label; } extra[] = {
		{PG_DIAG_MESSAGE_DETAIL, "DETAIL"},
		{PG_DIAG_MESSAGE_HINT, "HINT"},
		{PG_DIAG_CONTEXT, "CONTEXT"},
	};
	for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
		const char *v = PQresultErrorField(res, extra[i].field);
		if (v)
			fprintf(stderr, "  %s: %s\n", extra[i].label, v);
	}
}

/*
 * Sends the whole file as one simple query (inside the transaction the caller opened) and reads
 * every result. Returns false on the first error, after printing it. COPY FROM STDIN is refused
 * (the file has no data to send); COPY TO STDOUT output is discarded.
 */
static bool exec_file(PGconn *conn, const MigFile *f)
{
	if (!PQsendQuery(conn, f->sql)) {
		report_file_error(f, NULL, conn);
		return false;
	}
	bool ok = true;
	PGresult *res;
	while ((res = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_COPY_IN) {
			PQputCopyEnd(conn, "COPY FROM STDIN is not supported in migration files");
		} else if (st == PGRES_COPY_OUT) {
			char *row;
			while (PQgetCopyData(conn, &row, 0) > 0)
				PQfreemem(row);
		} else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY && ok) {
			report_file_error(f, res, conn);
			ok = false;
		}
		PQclear(res);
	}
	return ok;
}

/* ---------------------------------------------------------------- one service */

static void free_applied(Applied *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].version);
		free(a[i].name);
		free(a[i].checksum);
		free(a[i].applied_at);
	}
	free(a);
}

static bool table_exists(PGconn *conn, const char *svc, bool *exists)
{
	PGresult *res;
	if (!run(conn, svc, "SELECT to_regclass('public.pgrelay_migrations') IS NOT NULL", 0, NULL, PGRES_TUPLES_OK,
		 &res))
		return false;
	*exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return true;
}

static bool ensure_table(PGconn *conn, const char *svc)
{
	bool exists;
	if (!table_exists(conn, svc, &exists))
		return false;
	if (exists)
		return true;
	/* Services may share a database: serialize the creation itself too. */
	char sql[512];
	snprintf(sql, sizeof sql,
		 "SELECT pg_advisory_xact_lock(%d, 0);\n"
		 "CREATE TABLE IF NOT EXISTS public.pgrelay_migrations (\n"
		 "    service    text NOT NULL,\n"
		 "    version    text NOT NULL,\n"
		 "    name       text NOT NULL,\n"
		 "    checksum   text NOT NULL,\n"
		 "    applied_at timestamptz NOT NULL DEFAULT now(),\n"
		 "    PRIMARY KEY (service, version))",
		 LOCK_CLASS);
	if (!run(conn, svc, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL))
		return false;
	if (!run(conn, svc, sql, 0, NULL, PGRES_COMMAND_OK, NULL)) {
		fprintf(stderr, "%s: %s: cannot create public.pgrelay_migrations (the user needs CREATE on schema "
				"public of the service's database)\n",
			g_prog, svc);
		PQclear(PQexec(conn, "ROLLBACK"));
		return false;
	}
	return run(conn, svc, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL);
}

static bool load_applied(PGconn *conn, const char *svc, Applied **out, size_t *n_out)
{
	*out = NULL;
	*n_out = 0;
	PGresult *res;
	const char *params[1] = {svc};
	if (!run(conn, svc,
		 "SELECT version, name, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' "
		 "FROM public.pgrelay_migrations WHERE service = $1 ORDER BY applied_at, version",
		 1, params, PGRES_TUPLES_OK, &res))
		return false;
	size_t n = (size_t)PQntuples(res);
	Applied *a = xcalloc(n, sizeof *a);
	for (size_t i = 0; i < n; i++) {
		a[i].version = xstrdup(PQgetvalue(res, (int)i, 0));
		a[i].name = xstrdup(PQgetvalue(res, (int)i, 1));
		a[i].checksum = xstrdup(PQgetvalue(res, (int)i, 2));
		a[i].applied_at = xstrdup(PQgetvalue(res, (int)i, 3));
	}
	PQclear(res);
	*out = a;
	*n_out = n;
	return true;
}

static Applied *find_applied(Applied *a, size_t n, const char *version)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i].version, version) == 0)
			return &a[i];
	return NULL;
}

static bool lock_service(PGconn *conn, const char *svc)
{
	const char *params[1] = {svc};
	char sql[128];
	snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%d, hashtext($1))", LOCK_CLASS);
	PGresult *res;
	if (!run(conn, svc, sql, 1, params, PGRES_TUPLES_OK, &res))
		return false;
	bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (got)
		return true;
	printf("%s: another pgrelay migrate is migrating this service: waiting for it to finish\n", svc);
	fflush(stdout);
	snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d, hashtext($1))", LOCK_CLASS);
	return run(conn, svc, sql, 1, params, PGRES_TUPLES_OK, NULL);
}

static bool apply_file(PGconn *conn, const char *svc, const MigFile *f, const char **current)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*current = f->path;
	/* Each file starts from the session's defaults whatever the previous one SET (search_path,
	 * role, ...), as if it had a connection of its own; the advisory lock stays. */
	if (!run(conn, svc, "RESET ALL", 0, NULL, PGRES_COMMAND_OK, NULL) ||
	    !run(conn, svc, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL))
		return false;
	bool ok = exec_file(conn, f);
	if (ok && PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		fprintf(stderr,
			"%s: %s ended the transaction pgrelay migrate opened for it (COMMIT or ROLLBACK in the "
			"file?): what it did up to there may be committed, and it is not recorded. Remove "
			"transaction control from the file.\n",
			g_prog, f->path);
		ok = false;
	}
	if (ok) {
		const char *params[4] = {svc, f->version, f->name, f->checksum};
		ok = run(conn, f->path,
			 "INSERT INTO public.pgrelay_migrations (service, version, name, checksum, applied_at) "
			 "VALUES ($1, $2, $3, $4, now())",
			 4, params, PGRES_COMMAND_OK, NULL);
	}
	if (ok) {
		PGresult *res = PQexec(conn, "COMMIT");
		ok = PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0;
		if (!ok) {
			char *msg = trimmed(PQresultErrorMessage(res));
			fprintf(stderr, "%s: %s: COMMIT failed%s%s\n", g_prog, f->path, *msg ? ": " : "", msg);
			free(msg);
		}
		PQclear(res);
	} else if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		PQclear(PQexec(conn, "ROLLBACK"));
	}
	*current = NULL;
	if (!ok) {
		fprintf(stderr, "%s: %s: %s failed and was rolled back; nothing after it was applied\n", g_prog, svc,
			f->path);
		return false;
	}
	printf("%s: applied %s (%.0f ms)\n", svc, f->name, ms_since(&t0));
	fflush(stdout);
	return true;
}

static const char *last_version(const Applied *a, size_t n)
{
	const char *best = NULL;
	unsigned long long best_n = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned long long v = strtoull(a[i].version, NULL, 10);
		if (!best || v >= best_n) {
			best = a[i].version;
			best_n = v;
		}
	}
	return best;
}

/*
 * Connects to the service's primary (taking the service's lock and creating the bookkeeping
 * table unless status) and loads what is recorded as applied. Returns the connection, or NULL
 * (nothing loaded) when any step failed.
 */
static PGconn *open_service(const ConfigService *svc, bool status, const char *const *current, Applied **applied,
			    size_t *n_applied)
{
	PGconn *conn = connect_primary(svc, current);
	bool ok = conn != NULL;
	bool exists = false;
	if (ok && !status)
		ok = lock_service(conn, svc->name) && ensure_table(conn, svc->name);
	if (ok)
		ok = table_exists(conn, svc->name, &exists);
	if (ok && exists)
		ok = load_applied(conn, svc->name, applied, n_applied);
	if (!ok) {
		if (conn)
			PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* How the recorded migrations compare with the files. */
typedef struct Compared {
	size_t ok;      /* applied, file unchanged */
	size_t pending; /* file not applied */
	size_t changed; /* applied, file changed since */
	size_t missing; /* applied, no such file any more */
} Compared;

/* Compares the recorded migrations with the files (marking each recorded one that has a file as
 * seen); returns the counts. */
static Compared compare_with_files(const MigFile *files, size_t n_files, Applied *applied, size_t n_applied)
{
	Compared c = {0};
	for (size_t i = 0; i < n_files; i++) {
		Applied *a = find_applied(applied, n_applied, files[i].version);
		if (!a) {
			c.pending++;
			continue;
		}
		a->seen = true;
		if (strcmp(a->checksum, files[i].checksum) == 0)
			c.ok++;
		else
			c.changed++;
	}
	for (size_t i = 0; i < n_applied; i++)
		c.missing += !applied[i].seen;
	return c;
}

/* Prints --status for one service: its counts, then one line per file and per missing file. */
static void print_status(const ConfigService *svc, const char *dir, const MigFile *files, size_t n_files,
			 Applied *applied, size_t n_applied, const Compared *c)
{
	const ConfigBackend *b = &svc->primary;
	printf("%s: %zu applied, %zu pending", svc->name, c->ok, c->pending);
	if (c->changed)
		printf(", %zu CHANGED", c->changed);
	if (c->missing)
		printf(", %zu missing", c->missing);
	printf(" (primary %s:%d, database %s, directory %s)\n", b->host, b->port, b->dbname ? b->dbname : svc->name,
	       dir);
	int w = 0;
	for (size_t i = 0; i < n_files; i++)
		if ((int)strlen(files[i].name) > w)
			w = (int)strlen(files[i].name);
	for (size_t i = 0; i < n_files; i++) {
		const MigFile *f = &files[i];
		Applied *a = find_applied(applied, n_applied, f->version);
		if (!a)
			printf("  pending  %s\n", f->name);
		else if (strcmp(a->checksum, f->checksum) == 0)
			printf("  applied  %-*s  at %s  sha256:%.12s\n", w, f->name, a->applied_at, f->checksum);
		else
			printf("  CHANGED  %s  applied at %s as %s with sha256:%s, the file now has sha256:%s\n",
			       f->name, a->applied_at, a->name, a->checksum, f->checksum);
	}
	for (size_t i = 0; i < n_applied; i++)
		if (!applied[i].seen)
			printf("  missing  %s  applied at %s, no such file in %s\n", applied[i].name,
			       applied[i].applied_at, dir);
}

/*
 * Warns about recorded migrations whose file is gone and reports each changed file. Returns
 * false when a file changed (nothing may be applied then).
 */
static bool check_recorded(const char *svc, const char *dir, const MigFile *files, size_t n_files,
			   Applied *applied, size_t n_applied, const Compared *c)
{
	for (size_t i = 0; i < n_applied; i++)
		if (!applied[i].seen)
			fprintf(stderr, "%s: warning: %s: %s (version %s) was applied at %s but is no longer in %s\n", g_prog,
				svc, applied[i].name, applied[i].version, applied[i].applied_at, dir);
	if (!c->changed)
		return true;
	for (size_t i = 0; i < n_files; i++) {
		const MigFile *f = &files[i];
		Applied *a = find_applied(applied, n_applied, f->version);
		if (a && strcmp(a->checksum, f->checksum) != 0)
			fprintf(stderr,
				"%s: %s: %s has changed since it was applied (at %s): recorded checksum "
				"sha256:%s, file now sha256:%s\n",
				g_prog, svc, f->path, a->applied_at, a->checksum, f->checksum);
	}
	fprintf(stderr,
		"%s: %s: refusing to apply anything: restore the changed file(s) and put the change in a new "
		"migration\n",
		g_prog, svc);
	return false;
}

/*
 * Applies, in order, each file that is not recorded (warning when it is older than the last one
 * applied). Returns how many were applied, or -1 when one failed (the rest are not tried).
 */
static int apply_pending(PGconn *conn, const char *svc, const MigFile *files, size_t n_files, Applied *applied,
			 size_t n_applied, const char **current)
{
	int applied_now = 0;
	const char *after = last_version(applied, n_applied);
	unsigned long long after_n = after ? strtoull(after, NULL, 10) : 0;
	for (size_t i = 0; i < n_files; i++) {
		const MigFile *f = &files[i];
		if (find_applied(applied, n_applied, f->version))
			continue;
		if (after && f->number < after_n)
			fprintf(stderr, "%s: warning: %s: %s is older than %s, already applied: applying it now\n", g_prog,
				svc, f->name, after);
		if (!apply_file(conn, svc, f, current))
			return -1;
		applied_now++;
	}
	return applied_now;
}

/* Returns false when the run must stop (migrate) or the service could not be checked (status). */
static bool do_service(const ConfigService *svc, const char *root, bool status, Totals *t)
{
	char *dir = xasprintf("%s/%s", root, svc->name);
	MigFile *files = NULL;
	size_t n_files = 0;
	ScanResult sr = scan_service_dir(dir, &files, &n_files);
	if (sr == SCAN_NO_DIR) {
		printf("%s: no migrations directory %s: skipped\n", svc->name, dir);
		t->skipped++;
		free(dir);
		return true;
	}
	if (sr == SCAN_ERROR) {
		fprintf(stderr, "%s: %s: %s not read: nothing applied\n", g_prog, svc->name, dir);
		free(dir);
		return false;
	}

	const char *current = NULL;
	Applied *applied = NULL;
	size_t n_applied = 0;
	PGconn *conn = open_service(svc, status, &current, &applied, &n_applied);
	if (!conn) {
		free_files(files, n_files);
		free(dir);
		return false;
	}

	Compared c = compare_with_files(files, n_files, applied, n_applied);
	bool ok = true;
	if (status) {
		print_status(svc, dir, files, n_files, applied, n_applied, &c);
		t->pending += (int)c.pending;
		t->changed += (int)c.changed;
	} else {
		ok = check_recorded(svc->name, dir, files, n_files, applied, n_applied, &c);
		int applied_now = ok ? apply_pending(conn, svc->name, files, n_files, applied, n_applied, &current) : -1;
		ok = applied_now >= 0;
		if (ok) {
			if (applied_now == 0) {
				printf("%s: up to date (%zu migrations applied)\n", svc->name, c.ok);
				t->up_to_date++;
			}
			t->applied += applied_now;
		}
	}
	PQfinish(conn); /* also releases the advisory lock */
	free_applied(applied, n_applied);
	free_files(files, n_files);
	free(dir);
	return ok;
}

/* Subdirectories of root that name no service, and loose .sql files: said once, never applied. */
static void note_strays(const Config *cfg, const char *root, const char *cfg_path)
{
	DIR *d = opendir(root);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *path = xasprintf("%s/%s", root, e->d_name);
		size_t len = strlen(e->d_name);
		if (is_dir(path)) {
			if (!config_find_service(cfg, e->d_name))
				printf("note: %s ignored: no service \"%s\" in %s\n", path, e->d_name, cfg_path);
		} else if (len >= 4 && strcmp(e->d_name + len - 4, ".sql") == 0) {
			fprintf(stderr, "%s: warning: %s ignored: migrations go in %s/<service>/NNNN_name.sql\n", g_prog, path,
				root);
		}
		free(path);
	}
	closedir(d);
}

/* --dir, else "migrations" next to the configuration file, else ./migrations. */
static char *find_root(const char *cfg_path, const char *given)
{
	if (given) {
		if (!is_dir(given)) {
			fprintf(stderr, "%s: %s is not a directory\n", g_prog, given);
			return NULL;
		}
		return xstrdup(given);
	}
	const char *slash = strrchr(cfg_path, '/');
	char *next_to = slash ? xasprintf("%.*s/migrations", (int)(slash - cfg_path), cfg_path) : xstrdup("migrations");
	if (is_dir(next_to))
		return next_to;
	if (is_dir("migrations")) {
		free(next_to);
		return xstrdup("migrations");
	}
	fprintf(stderr, "%s: no migrations directory: neither %s nor ./migrations exists (use --dir DIR)\n", g_prog,
		next_to);
	free(next_to);
	return NULL;
}

int migrate_command(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"status", no_argument, NULL, 'S'},
		{"dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *cfg_path = NULL, *dir = NULL;
	bool status = false;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c': cfg_path = optarg; break;
		case 'S': status = true; break;
		case 'd': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\"\n", g_prog, argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!cfg_path) {
		fprintf(stderr, "%s: no configuration file given (use -c FILE)\n", g_prog);
		usage(stderr);
		return 2;
	}
	char err[8192];
	Config *cfg = config_load(cfg_path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "%s\n%s: %s is invalid\n", err, g_prog, cfg_path);
		return 1;
	}
	char *root = find_root(cfg_path, dir);
	if (!root) {
		config_unref(cfg);
		return 1;
	}
	note_strays(cfg, root, cfg_path);

	Totals t = {0};
	bool ok = true;
	for (size_t i = 0; i < cfg->n_services; i++) {
		if (!do_service(&cfg->services[i], root, status, &t)) {
			if (!status) {
				ok = false;
				break; /* apply nothing further */
			}
			t.problems++;
		}
	}
	if (status) {
		if (t.changed)
			fprintf(stderr, "%s: %d changed file(s): `pgrelay migrate` will refuse to run until they are restored\n",
				g_prog, t.changed);
		ok = ok && t.changed == 0 && t.problems == 0;
	} else if (ok) {
		printf("pgrelay migrate: done: %d migration(s) applied; %d service(s) up to date, %d without migrations\n",
		       t.applied, t.up_to_date, t.skipped);
	} else {
		fprintf(stderr, "%s: stopped (%d migration(s) applied by this run before the failure)\n", g_prog, t.applied);
	}
	free(root);
	config_unref(cfg);
	return ok ? 0 : 1;
}
