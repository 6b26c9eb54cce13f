#!/usr/bin/env bash
# demo.sh — the one command that installs what is missing, builds pgrelay and starts a demo:
#
#   scripts/demo.sh            # (re)start: three PostgreSQL 15 servers, pgrelay on 6432
#   scripts/demo.sh stop       # stop pgrelay and PostgreSQL
#   scripts/demo.sh status     # what is running
#   scripts/demo.sh reset      # stop, delete the demo's data, start afresh
#
# What it starts (as root, on a Debian 12 machine; PostgreSQL runs as the postgres OS user, as it
# refuses root):
#   - server A: a PostgreSQL 15 primary on 127.0.0.1:55432 with the databases users and products;
#   - a streaming replica of A on 127.0.0.1:55433, made with pg_basebackup -R;
#   - server B: a PostgreSQL 15 primary on 127.0.0.1:55434 with the databases orders, analytics
#     and notifications;
#   - on A and B the role app (password "app", SCRAM) owning those databases. Each database is
#     migrated by `build/pgrelay migrate -c .demo/proxy.yaml`, which applies
#     migrations/<service>/NNNN_name.sql (the schema, then the sample data) once each and records
#     them in public.pgrelay_migrations of the service's database; the replica gets them by
#     streaming;
#   - pgrelay in the background on 127.0.0.1:6432, configured by the generated .demo/proxy.yaml:
#     services users and products (primary A + the replica), orders, analytics and notifications
#     (server B); routes from each schema to its service; one client-facing database "app" whose
#     default service is users, through which every service's tables are to be reached (each
#     service is also exposed as a database of its own name); transaction pooling everywhere.
# It ends by querying users.users, products.products (Bengali names) and orders.orders with psql
# through the single database "app", then prints the psql line to connect. Those queries need
# pgrelay's statement routing: if they fail, the demo prints a warning and still runs.
#
# Everything lives in the project folder .demo/: proxy.yaml, pgrelay.log, pgrelay.pid, and under
# .demo/pg/ the PostgreSQL data directories a/, a-replica/, b/ and their logs a.log, ... PostgreSQL
# runs as the postgres user, which must be able to reach that folder. When the repository sits
# where postgres cannot enter (for example under /root, which is 0700), the data go to
# /var/tmp/pgrelay-demo instead and .demo is a symbolic link to it, so the paths above stay the same.
#
# Environment: DEMO_PORT (pgrelay, default 6432), DEMO_PG_PORT (server A, default 55432; the
# replica listens on DEMO_PG_PORT+1 and server B on DEMO_PG_PORT+2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$PATH:/usr/sbin:/sbin"

PORT=${DEMO_PORT:-6432}
PG_PORT=${DEMO_PG_PORT:-55432}
REDIS_PORT=${DEMO_REDIS_PORT:-$((PG_PORT + 3))}
METRICS_PORT=${DEMO_METRICS_PORT:-$((PORT + 1))}
PGBIN=/usr/lib/postgresql/15/bin
DEMO="$ROOT/.demo"
FALLBACK=/var/tmp/pgrelay-demo
BIN="$ROOT/build/pgrelay"

# The PostgreSQL servers ("nodes"); a-replica streams from a.
NODES=(a a-replica b)
node_port() {
	case $1 in
	a) echo "$PG_PORT" ;;
	a-replica) echo $((PG_PORT + 1)) ;;
	b) echo $((PG_PORT + 2)) ;;
	esac
}
# The services, in the order they are configured and migrated, and the primary of each.
SERVICES=(users products orders analytics notifications)
service_node() {
	case $1 in
	users | products) echo a ;;
	*) echo b ;;
	esac
}

log() { echo "demo.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts PostgreSQL as the postgres user)"

# ---------------------------------------------------------------- helpers

as_pg() { (cd / && runuser -u postgres -- "$@"); }   # cwd readable by postgres

# The demo folder with symbolic links resolved: PostgreSQL gets only such paths, as postgres may
# not be allowed to pass through the repository to follow the .demo link.
real_demo() { readlink -f "$DEMO" 2>/dev/null || echo "$DEMO"; }
node_data() { echo "$(real_demo)/pg/$1"; }
node_log() { echo "$(real_demo)/pg/$1.log"; }
# Before the three servers, the demo ran one server with its data in .demo/pg/data.
legacy_data() { echo "$(real_demo)/pg/data"; }

# Socket directory: inside .demo/pg when the path is short enough for a Unix socket (107 bytes),
# else a private folder under /tmp.
pg_sockdir() {
	local d
	d=$(real_demo)/pg
	if [ $((${#d} + 20)) -lt 100 ]; then echo "$d"; else echo "/tmp/pgrelay-demo-sock"; fi
}

psql_super() { # NODE DB psql-args... (as the superuser postgres over the socket; notices hidden)
	local node=$1 db=$2
	shift 2
	PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_sockdir)" \
		-p "$(node_port "$node")" -U postgres -d "$db" "$@"
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

pg_running() { # DATADIR
	[ -f "$1/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

stop_datadir() { # DATADIR LABEL
	if [ -f "$1/postmaster.pid" ]; then
		log "stopping PostgreSQL $2"
		as_pg "$PGBIN/pg_ctl" -D "$1" -m fast -w -t 30 stop >/dev/null 2>&1 || true
	fi
}

stop_postgres() {
	# The replica first: stopped after its primary it would only retry connecting meanwhile.
	stop_datadir "$(node_data a-replica)" "a-replica (port $(node_port a-replica))"
	stop_datadir "$(node_data a)" "a (port $(node_port a))"
	stop_datadir "$(node_data b)" "b (port $(node_port b))"
	stop_datadir "$(legacy_data)" "(old single-server demo in $(legacy_data))"
}

redis_pidfile() { echo "$(real_demo)/redis/redis.pid"; }

start_redis() {
	mkdir -p "$(real_demo)/redis"
	if live_pid "$(redis_pidfile)" >/dev/null; then return; fi
	log "starting Redis on 127.0.0.1:$REDIS_PORT (the result cache's L2)"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
		--dir "$(real_demo)/redis" --pidfile "$(redis_pidfile)" --logfile "$(real_demo)/redis/redis.log" >/dev/null ||
		die "Redis did not start; see $(real_demo)/redis/redis.log"
	for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return; sleep 0.1; done
	die "Redis does not answer on $REDIS_PORT"
}

stop_redis() {
	local pid
	if pid=$(live_pid "$(redis_pidfile)"); then
		log "stopping Redis (pid $pid)"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do live_pid "$(redis_pidfile)" >/dev/null || break; sleep 0.1; done
	fi
}

stop_all() {
	stop_pgrelay
	stop_redis
	stop_postgres
}

status() {
	local pid node role
	if pid=$(live_pid "$DEMO/pgrelay.pid"); then echo "pgrelay: running (pid $pid) on 127.0.0.1:$PORT"; else echo "pgrelay: stopped"; fi
	if pid=$(live_pid "$(redis_pidfile)"); then echo "Redis: running (pid $pid) on 127.0.0.1:$REDIS_PORT"; else echo "Redis: stopped"; fi
	for node in "${NODES[@]}"; do
		if pg_running "$(node_data "$node")"; then
			role=primary
			if [ -f "$(node_data "$node")/standby.signal" ]; then role="streaming replica of a"; fi
			echo "PostgreSQL $node: running on 127.0.0.1:$(node_port "$node") ($role, data $(node_data "$node"))"
		else
			echo "PostgreSQL $node: stopped"
		fi
	done
}

system_id() { # DATADIR: the cluster's system identifier (a replica has its primary's)
	as_pg "$PGBIN/pg_controldata" -D "$1" 2>/dev/null | sed -n 's/^Database system identifier: *//p'
}

# The settings of one node, rewritten each run (postgresql.conf includes the file at its end; the
# replica's copy of the primary's file is overwritten with its own).
write_node_conf() { # NODE
	local node=$1
	as_pg tee "$(node_data "$node")/pgrelay-demo.conf" >/dev/null <<EOF
# written by scripts/demo.sh
listen_addresses = '127.0.0.1'
port = $(node_port "$node")
unix_socket_directories = '$(pg_sockdir)'
cluster_name = 'pgrelay-demo-$node'
# pgrelay's pools in .demo/proxy.yaml allow up to 100 + 150 (A and the replica) and 200 + 20 + 20
# (B) server connections. A hot standby needs max_connections >= its primary's.
max_connections = 600
password_encryption = 'scram-sha-256'
wal_level = replica
max_wal_senders = 10
hot_standby = on
EOF
}

start_node() { # NODE
	local node=$1
	log "starting PostgreSQL 15 $node on 127.0.0.1:$(node_port "$node")"
	as_pg "$PGBIN/pg_ctl" -D "$(node_data "$node")" -l "$(node_log "$node")" -w -t 60 start >/dev/null ||
		die "PostgreSQL $node did not start; see $(node_log "$node")"
}

init_primary() { # NODE
	local node=$1 data
	data=$(node_data "$node")
	if [ ! -f "$data/PG_VERSION" ]; then
		log "initdb $data"
		as_pg "$PGBIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
			--auth-local=trust --auth-host=scram-sha-256 >/dev/null
		echo "include_if_exists = 'pgrelay-demo.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
	fi
	write_node_conf "$node"
	start_node "$node"
}

init_replica() { # the streaming replica of a
	local data primary_id
	data=$(node_data a-replica)
	primary_id=$(system_id "$(node_data a)")
	if [ -f "$data/PG_VERSION" ] && [ "$(system_id "$data")" != "$primary_id" ]; then
		log "the replica in $data is not a copy of server a (which was made afresh): making it again"
		rm -rf "$data"
	fi
	if [ ! -f "$data/PG_VERSION" ]; then
		log "pg_basebackup of a into $data (streaming replica, -R)"
		# Over a's Unix socket as postgres: initdb's pg_hba.conf trusts local replication.
		as_pg "$PGBIN/pg_basebackup" -h "$(pg_sockdir)" -p "$(node_port a)" -U postgres -D "$data" \
			-R -X stream --checkpoint=fast ||
			die "pg_basebackup from a failed; see $(node_log a)"
	fi
	write_node_conf a-replica
	start_node a-replica
	local n=0
	for _ in $(seq 300); do
		n=$(psql_super a postgres -At -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgrelay-demo-a-replica' AND state = 'streaming'")
		[ "$n" -ge 1 ] && break
		sleep 0.1
	done
	[ "$n" -ge 1 ] || die "the replica does not stream from a; see $(node_log a-replica)"
	log "a-replica is streaming from a"
}

pgrelay_psql() { # DB psql-args... (as app, through pgrelay)
	local db=$1
	shift
	PGPASSWORD=app "$PGBIN/psql" -X -v ON_ERROR_STOP=1 \
		"host=127.0.0.1 port=$PORT dbname=$db user=app sslmode=disable connect_timeout=10" "$@"
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
SOCK=$(pg_sockdir)
if [ "$SOCK" != "$REAL/pg" ]; then
	mkdir -p "$SOCK" && chown postgres: "$SOCK" && chmod 700 "$SOCK"
fi
if [ -d "$(legacy_data)" ]; then
	log "note: $(legacy_data) holds the old single-server demo, no longer used (scripts/demo.sh reset deletes it)"
fi

for p in "$PORT" "$(node_port a)" "$(node_port a-replica)" "$(node_port b)"; do
	if port_busy "$p"; then
		die "port $p is already in use (by: $(ss -Hltnp "sport = :$p" | sed -n 's/.*users:((\("[^"]*"\).*/\1/p' | head -n1)); set DEMO_PORT / DEMO_PG_PORT"
	fi
done

# 4. PostgreSQL 15: primaries a and b, then the replica of a
init_primary a
init_primary b
init_replica

# 5. the role app on each primary, and each service's database on its primary
for node in a b; do
	psql_super "$node" postgres <<'EOF'
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE app LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') \gexec
ALTER ROLE app PASSWORD 'app';
EOF
done
for svc in "${SERVICES[@]}"; do
	psql_super "$(service_node "$svc")" postgres -v db="$svc" <<'EOF'
SELECT format('CREATE DATABASE %I OWNER app', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I SET search_path = %I, public', :'db', :'db') \gexec
EOF
done

# 6. .demo/proxy.yaml
pool_of() {
	case $1 in
	users) echo "max: 100, min: 10, idle_timeout: 30s, connect_timeout: 2s, statement_timeout: 5s" ;;
	products) echo "max: 150, min: 20, idle_timeout: 30s, connect_timeout: 2s" ;;
	orders) echo "max: 200, min: 30, idle_timeout: 20s, connect_timeout: 1s" ;;
	*) echo "max: 20, min: 0, idle_timeout: 30s, connect_timeout: 2s" ;;
	esac
}
{
	echo "# Generated by scripts/demo.sh (rewritten on each run). See proxy.yaml.example for every key."
	echo "#   server a  127.0.0.1:$(node_port a)  databases users, products"
	echo "#   a-replica 127.0.0.1:$(node_port a-replica)  streaming replica of a"
	echo "#   server b  127.0.0.1:$(node_port b)  databases orders, analytics, notifications"
	echo "# Applications use the one database \"app\": each statement goes to the service owning its"
	echo "# schema (routes below), anything else to users. Pool sizes: the plan's per-service table."
	echo "listen: { host: 127.0.0.1, port: $PORT, max_client_conn: 1000 }"
	echo "log: { level: info }"
	echo "users:"
	echo "  - { name: app, password: app, auth: scram-sha-256 }"
	echo "databases:"
	echo "  app: { service: users, pool_mode: transaction }"
	echo "  # Each service directly as well (no routing needed to reach its own tables)."
	for svc in "${SERVICES[@]}"; do
		echo "  $svc: { service: $svc, pool_mode: transaction }"
	done
	echo "services:"
	for svc in "${SERVICES[@]}"; do
		echo "  $svc:"
		echo "    primary: { host: 127.0.0.1, port: $(node_port "$(service_node "$svc")"), dbname: $svc, user: app, password: app }"
		if [ "$(service_node "$svc")" = a ]; then
			echo "    replicas:"
			echo "      - { host: 127.0.0.1, port: $(node_port a-replica) }"
		fi
		if [ "$svc" = users ]; then
			echo "    reads: replicas"
		fi
		echo "    pool: { $(pool_of "$svc") }"
	done
	echo "routes:                  # first match wins"
	echo "  - { schema: users, service: users }"
	echo "  - { schema: products, service: products, reads: replicas }"
	echo "  - { schema: orders, service: orders }"
	echo "  - { schema: analytics, service: analytics }"
	echo "  - { schema: notifications, service: notifications }"
	echo "health: { interval: 1s, timeout: 2s, fail_after: 3, recover_after: 2, max_lag: 16MB }"
	echo "cache:                   # SELECTs on these schemas are answered from memory / Redis"
	echo "  l1: { max_memory: 64MB, max_result: 1MB }"
	# the key that signs the results kept in Redis (a demo's own: made once, kept with its data)
	[ -s "$DEMO/l2.key" ] || (umask 077 && openssl rand -hex 32 >"$DEMO/l2.key")
	echo "  redis: { nodes: [\"127.0.0.1:$REDIS_PORT\"], timeout: 50ms, signing_key_file: \"$DEMO/l2.key\" }"
	echo "  rules:"
	echo "    - { schema: products, ttl: 5m, key: id }      # key: a write of a row invalidates that row's reads"
	echo "    - { schema: users, tables: [user_auth, user_profiles], ttl: 30s, key: user_id }"
	echo "    - { schema: users, ttl: 30s, key: id }"
	echo "    - { schema: orders, ttl: 30s }"
	echo "admin:                   # psql ... dbname=pgrelay: SHOW POOLS, SHOW CACHE, ..."
	echo "  users: [app]"
	echo "  http: { host: 127.0.0.1, port: $METRICS_PORT }   # /metrics, /health"
} >"$DEMO/proxy.yaml"
"$BIN" --check -c "$DEMO/proxy.yaml" >/dev/null || die "generated $DEMO/proxy.yaml is invalid"

# 7. migrations: migrations/<service>/NNNN_name.sql on each service's primary (a run that finds
# everything applied changes nothing)
log "build/pgrelay migrate -c .demo/proxy.yaml"
# (pipefail: the status is pgrelay's if it fails)
"$BIN" migrate -c "$DEMO/proxy.yaml" | sed 's/^/  /' >&2 || die "pgrelay migrate failed (see above)"
# Wait until the replica has replayed them.
lsn=$(psql_super a postgres -At -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 100); do
	caught_up=$(psql_super a-replica postgres -At -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")
	[ "$caught_up" = t ] && break
	sleep 0.1
done
[ "$caught_up" = t ] || log "warning: the replica has not replayed the migrations yet"

# 8. Redis and pgrelay
start_redis
log "starting pgrelay on 127.0.0.1:$PORT (log: .demo/pgrelay.log)"
setsid nohup "$BIN" -c "$DEMO/proxy.yaml" >>"$DEMO/pgrelay.log" 2>&1 </dev/null &
echo $! >"$DEMO/pgrelay.pid"
for _ in $(seq 100); do
	port_busy "$PORT" && break
	live_pid "$DEMO/pgrelay.pid" >/dev/null || die "pgrelay exited; see $DEMO/pgrelay.log: $(tail -n 5 "$DEMO/pgrelay.log")"
	sleep 0.1
done
port_busy "$PORT" || die "pgrelay does not listen on $PORT; see $DEMO/pgrelay.log"

# 9. each service through pgrelay, as a database of its own name (no routing involved)
for svc in "${SERVICES[@]}"; do
	n=$(pgrelay_psql "$svc" -At -c "SELECT count(*) FILTER (WHERE NOT c.relispartition) || ' tables (+ '
		|| count(*) FILTER (WHERE c.relispartition) || ' partitions)'
		FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
		WHERE s.nspname = '$svc' AND c.relkind IN ('r', 'p')") ||
		die "query through pgrelay to $svc failed; see $DEMO/pgrelay.log"
	log "$svc: $n in schema $svc (database $svc on server $(service_node "$svc"))"
done

# 10. the showcase: the tables of three services through the one database "app"
showcase=(
	"SELECT count(*) AS users, inet_server_port() AS answered_by_port FROM users.users"
	"SELECT count(*) AS products, inet_server_port() AS answered_by_port FROM products.products"
	"SELECT count(*) AS orders, inet_server_port() AS answered_by_port FROM orders.orders"
	"SELECT sku, name->>'en' AS name_en, name->>'bn' AS name_bn FROM products.products ORDER BY sku"
	"SELECT order_date, total_orders, revenue FROM orders.daily_order_summary ORDER BY order_date"
)
failed=0
for sql in "${showcase[@]}"; do
	echo "app=> $sql"
	if ! out=$(pgrelay_psql app -c "$sql" 2>&1); then
		failed=$((failed + 1))
		log "WARNING: this query failed through pgrelay's database app: $(echo "$out" | head -n 1)"
	else
		echo "$out"
	fi
done
if [ "$failed" -gt 0 ]; then
	log "WARNING: $failed of ${#showcase[@]} queries through the database \"app\" failed. They need pgrelay's"
	log "  statement routing (routes in .demo/proxy.yaml: schema users/products/orders/... -> service);"
	log "  without it every statement goes to the default service, users. Meanwhile each service is"
	log "  reachable as its own database: dbname=users, products, orders, analytics, notifications."
fi

# the cache: the same SELECT three times (the first creates the service's epoch in Redis, the
# second is stored, the third is answered without PostgreSQL)
for _ in 1 2 3; do
	pgrelay_psql app -At -c "SELECT count(*) FROM orders.orders" >/dev/null 2>&1 || true
done
echo "app=> (admin console, dbname=pgrelay) SHOW CACHE -- after the same SELECT on orders three times"
pgrelay_psql pgrelay -c "SHOW CACHE" || log "WARNING: the admin console did not answer"
echo "pgrelay demo running (stop it with: scripts/demo.sh stop). Metrics: http://127.0.0.1:$METRICS_PORT/metrics"
echo "Connect with: psql \"host=127.0.0.1 port=$PORT dbname=app user=app password=app\""
