#!/usr/bin/env bash
# demo.sh — the one command that installs what is missing, builds pgrelay and starts a demo:
#
#   scripts/demo.sh            # (re)start: PostgreSQL 15 on 55432, pgrelay on 6432
#   scripts/demo.sh stop       # stop pgrelay and PostgreSQL
#   scripts/demo.sh status     # what is running
#   scripts/demo.sh reset      # stop, delete the demo's data, start afresh
#
# What it starts (as root, on a Debian 12 machine):
#   - a PostgreSQL 15 primary, run as the postgres OS user (it refuses root), on 127.0.0.1:55432;
#   - one database per service: users, products, orders, analytics, notifications, each owned by
#     the role app (password "app", SCRAM), migrated with migrations/NNN_<service>.sql (applied
#     once each, recorded in public.schema_migrations of the service's database);
#   - pgrelay in the background on 127.0.0.1:6432, configured by the generated .demo/proxy.yaml
#     to expose each service as a database of the same name, in transaction pooling.
#
# Everything lives in the project folder .demo/: proxy.yaml, pgrelay.log, pgrelay.pid, and the
# PostgreSQL data directory and log under .demo/pg/. PostgreSQL runs as the postgres user, which
# must be able to reach that folder. When the repository sits where postgres cannot enter (for
# example under /root, which is 0700), the data go to /var/tmp/pgrelay-demo instead and .demo is
# a symbolic link to it, so the paths above stay the same.
#
# Environment: DEMO_PORT (pgrelay, default 6432), DEMO_PG_PORT (PostgreSQL, default 55432).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$PATH:/usr/sbin:/sbin"

PORT=${DEMO_PORT:-6432}
PG_PORT=${DEMO_PG_PORT:-55432}
PGBIN=/usr/lib/postgresql/15/bin
DEMO="$ROOT/.demo"
FALLBACK=/var/tmp/pgrelay-demo
SERVICES=(users products orders analytics notifications)
BIN="$ROOT/build/pgrelay"

log() { echo "demo.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts PostgreSQL as the postgres user)"

# ---------------------------------------------------------------- helpers

as_pg() { (cd / && runuser -u postgres -- "$@"); }   # cwd readable by postgres

# The demo folder with symbolic links resolved: PostgreSQL gets only such paths, as postgres may
# not be allowed to pass through the repository to follow the .demo link.
real_demo() { readlink -f "$DEMO" 2>/dev/null || echo "$DEMO"; }
pg_data() { echo "$(real_demo)/pg/data"; }

# Socket directory: inside .demo/pg when the path is short enough for a Unix socket (107 bytes),
# else a private folder under /tmp.
pg_sockdir() {
	local d
	d=$(real_demo)/pg
	if [ $((${#d} + 20)) -lt 100 ]; then echo "$d"; else echo "/tmp/pgrelay-demo-sock"; fi
}

psql_super() { # DB SQL... (as the superuser postgres over the socket; notices hidden)
	local db=$1
	shift
	PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_sockdir)" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# PID from a pid file if that process is alive (and not a zombie).
live_pid() {
	local f=$1 pid state
	[ -f "$f" ] || return 1
	pid=$(head -n1 "$f" | tr -dc 0-9)
	[ -n "$pid" ] || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$state" != Z ] || return 1
	echo "$pid"
}

stop_pgrelay() {
	local pid exe
	if pid=$(live_pid "$DEMO/pgrelay.pid"); then
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
		exe=${exe% (deleted)}   # the binary may have been rebuilt since
		if [ "$exe" = "$BIN" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$DEMO/proxy.yaml"; then
			log "stopping pgrelay (pid $pid)"
			kill -INT "$pid" 2>/dev/null || true
			for _ in $(seq 50); do live_pid "$DEMO/pgrelay.pid" >/dev/null || break; sleep 0.1; done
			if live_pid "$DEMO/pgrelay.pid" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
		fi
	fi
	rm -f "$DEMO/pgrelay.pid"
}

stop_postgres() {
	if [ -f "$(pg_data)/postmaster.pid" ]; then
		log "stopping PostgreSQL"
		as_pg "$PGBIN/pg_ctl" -D "$(pg_data)" -m fast -w -t 30 stop >/dev/null 2>&1 || true
	fi
}

stop_all() {
	stop_pgrelay
	stop_postgres
}

status() {
	local pid
	if pid=$(live_pid "$DEMO/pgrelay.pid"); then echo "pgrelay: running (pid $pid) on 127.0.0.1:$PORT"; else echo "pgrelay: stopped"; fi
	if [ -f "$(pg_data)/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$(pg_data)" status >/dev/null 2>&1; then
		echo "PostgreSQL: running on 127.0.0.1:$PG_PORT (data $(pg_data))"
	else
		echo "PostgreSQL: stopped"
	fi
}

# ---------------------------------------------------------------- commands

case "${1:-start}" in
stop)
	stop_all
	exit 0
	;;
status)
	status
	exit 0
	;;
reset)
	stop_all
	log "deleting the demo data"
	rm -rf "$(real_demo)" "$DEMO"
	;;
start | restart) ;;
*)
	die "usage: scripts/demo.sh [start|stop|status|reset]"
	;;
esac

# 1. packages and build
"$ROOT/scripts/deps.sh"
if [ ! -f build/meson-private/coredata.dat ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null || die "build failed (run: ninja -C build)"

# 2. stop what an earlier run started
stop_all

# 3. the demo folder: in the project if postgres can reach it, else /var/tmp with a symlink
if [ ! -e "$DEMO" ]; then
	if runuser -u postgres -- test -x "$ROOT" 2>/dev/null && runuser -u postgres -- test -r "$ROOT" 2>/dev/null; then
		mkdir -p "$DEMO"
	else
		log "the postgres user cannot enter $ROOT: keeping the demo data in $FALLBACK (.demo links to it)"
		mkdir -p "$FALLBACK"
		ln -sfn "$FALLBACK" "$DEMO"
	fi
fi
REAL=$(real_demo)
chmod 755 "$REAL"
mkdir -p "$REAL/pg"
chown postgres: "$REAL/pg"
chmod 700 "$REAL/pg"
PGDATA_DIR="$REAL/pg/data"
SOCK=$(pg_sockdir)
if [ "$SOCK" != "$REAL/pg" ]; then
	mkdir -p "$SOCK" && chown postgres: "$SOCK" && chmod 700 "$SOCK"
fi

for p in "$PORT" "$PG_PORT"; do
	if port_busy "$p"; then
		die "port $p is already in use (by: $(ss -Hltnp "sport = :$p" | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -n1)); set DEMO_PORT / DEMO_PG_PORT"
	fi
done

# 4. PostgreSQL 15
if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
	log "initdb $PGDATA_DIR"
	as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	echo "include_if_exists = 'pgrelay-demo.conf'" | as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
fi
# The demo's settings, rewritten each run (included at the end of postgresql.conf).
as_pg tee "$PGDATA_DIR/pgrelay-demo.conf" >/dev/null <<EOF
# written by scripts/demo.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCK'
# The pools in .demo/proxy.yaml allow 100 + 150 + 200 + 20 + 20 server connections.
max_connections = 600
password_encryption = 'scram-sha-256'
EOF
log "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$REAL/pg/postgresql.log" -w -t 60 start >/dev/null ||
	die "PostgreSQL did not start; see $REAL/pg/postgresql.log"

# 5. role, databases, migrations
psql_super postgres <<'EOF'
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE app LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') \gexec
ALTER ROLE app PASSWORD 'app';
EOF
for svc in "${SERVICES[@]}"; do
	psql_super postgres -v db="$svc" <<'EOF'
SELECT format('CREATE DATABASE %I OWNER app', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I SET search_path = %I, public', :'db', :'db') \gexec
EOF
	psql_super "$svc" -c "CREATE TABLE IF NOT EXISTS public.schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())" -c "ALTER TABLE public.schema_migrations OWNER TO app"
	shopt -s nullglob
	for f in migrations/[0-9]*_"$svc".sql; do
		v=$(basename "$f" .sql)
		done_already=$(psql_super "$svc" -At -v v="$v" <<<"SELECT count(*) FROM public.schema_migrations WHERE version = :'v'")
		if [ "$done_already" = 0 ]; then
			log "migrating $svc: $v"
			# As app (local trust), in one transaction with its bookkeeping row.
			{
				echo "SET ROLE app;"
				cat "$f"
				echo ";"
				echo "INSERT INTO public.schema_migrations (version) VALUES ('$v');"
			} | psql_super "$svc" --single-transaction -f - >/dev/null ||
				die "migration $f failed"
		fi
	done
	shopt -u nullglob
done

# 6. pgrelay
{
	echo "# Generated by scripts/demo.sh: each service is a database of the same name, in"
	echo "# transaction pooling; pool sizes from the plan's per-service table. See proxy.yaml.example."
	echo "listen: { host: 127.0.0.1, port: $PORT, max_client_conn: 1000 }"
	echo "log: { level: info }"
	echo "users:"
	echo "  - { name: app, password: app, auth: scram-sha-256 }"
	echo "databases:"
	for svc in "${SERVICES[@]}"; do
		echo "  $svc: { service: $svc, pool_mode: transaction }"
	done
	echo "services:"
	for svc in "${SERVICES[@]}"; do
		case $svc in
		users) pool="max: 100, min: 10, idle_timeout: 30s, connect_timeout: 2s, statement_timeout: 5s" ;;
		products) pool="max: 150, min: 20, idle_timeout: 30s, connect_timeout: 2s" ;;
		orders) pool="max: 200, min: 30, idle_timeout: 20s, connect_timeout: 1s" ;;
		*) pool="max: 20, min: 0, idle_timeout: 30s, connect_timeout: 2s" ;;
		esac
		echo "  $svc:"
		echo "    primary: { host: 127.0.0.1, port: $PG_PORT, dbname: $svc, user: app, password: app }"
		echo "    pool: { $pool }"
	done
} >"$DEMO/proxy.yaml"
"$BIN" --check -c "$DEMO/proxy.yaml" >/dev/null || die "generated $DEMO/proxy.yaml is invalid"

log "starting pgrelay on 127.0.0.1:$PORT (log: .demo/pgrelay.log)"
setsid nohup "$BIN" -c "$DEMO/proxy.yaml" >>"$DEMO/pgrelay.log" 2>&1 </dev/null &
echo $! >"$DEMO/pgrelay.pid"
for _ in $(seq 100); do
	port_busy "$PORT" && break
	live_pid "$DEMO/pgrelay.pid" >/dev/null || die "pgrelay exited; see $DEMO/pgrelay.log: $(tail -n 5 "$DEMO/pgrelay.log")"
	sleep 0.1
done
port_busy "$PORT" || die "pgrelay does not listen on $PORT; see $DEMO/pgrelay.log"

# 7. a query through pgrelay for each service
for svc in "${SERVICES[@]}"; do
	n=$(PGPASSWORD=app "$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$PORT dbname=$svc user=app sslmode=disable" \
		-c "SELECT count(*) FROM information_schema.tables WHERE table_schema = '$svc'") ||
		die "query through pgrelay to $svc failed; see $DEMO/pgrelay.log"
	log "$svc: $n tables in schema $svc"
done
PGPASSWORD=app "$PGBIN/psql" -X -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$PORT dbname=users user=app" \
	-c "SELECT username, email, created_at FROM users.users ORDER BY created_at"

echo "pgrelay demo running (stop it with: scripts/demo.sh stop)."
echo "Connect with: psql \"host=127.0.0.1 port=$PORT dbname=users user=app password=app\""
