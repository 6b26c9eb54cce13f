#!/usr/bin/env bash
# deps.sh — install, with apt-get, the Debian 12 packages pgrelay needs to build, test, demo and
# benchmark; only what is missing. Idempotent: a second run installs nothing and prints one line.
#
# Node.js: Debian's nodejs and npm unless the machine already has a node / npm (e.g. NodeSource's
# nodejs, which bundles npm and conflicts with Debian's npm). The node-postgres driver is Debian's
# node-pg: installed with apt-get where it can be; where it cannot (Debian's node-pg depends on
# node-libpq and libnode108, which conflict with a non-Debian nodejs), its .deb and those of its two
# pure-JavaScript dependencies the tests load (node-split2, node-xtend) are fetched with
# apt-get download and unpacked into $NODE_PG_DIR (tests/integration/test_drivers.py adds it to
# NODE_PATH). postgres.js is not in Debian: the tests install it with npm ci from
# tests/drivers/node/package-lock.json.
#
#   scripts/deps.sh            # as root (or through sudo)
#
# Debian's postgresql, pgbouncer, redis and prometheus packages start system services when they are
# installed (they would hold ports 5432, 6432, 6379 and 9090). While installing, a temporary
# /usr/sbin/policy-rc.d forbids starting services; afterwards, the services of packages this run
# installed are stopped (if something started them anyway) and disabled. pgrelay's scripts never
# use those system services: they start their own PostgreSQL under /tmp or the project folder.
set -euo pipefail

PACKAGES=(
	# build
	build-essential meson ninja-build pkg-config
	libevent-dev libssl-dev libyaml-dev libpq-dev
	# later features and the benchmark (installed now so the commands stay the same)
	libhiredis-dev libpg-query-dev libprotobuf-c-dev libsystemd-dev
	# servers and clients used by the tests, the demo and the benchmark
	postgresql-15 postgresql-client-15 pgbouncer redis-server
	# test harness (Debian's python3, /usr/bin/python3; no pip)
	python3 python3-pytest python3-pytest-xdist python3-psycopg python3-asyncpg
	# tools the scripts call
	procps iproute2 openssl
	# tests/faults/run.sh: packet loss and resets inside its network namespace (nft); setpriv
	nftables util-linux
	# tests/integration/test_metrics.py: promtool check metrics, and a Prometheus server scraping /metrics
	prometheus
	# tests/integration/test_drivers.py: JDBC (a Java program compiled with javac at test time)
	default-jdk-headless libpostgresql-jdbc-java
	# fuzz/ (the build-fuzz step of scripts/test.sh, bench/fuzz.sh): Debian's clang and its
	# compiler-rt, which holds libFuzzer (-fsanitize=fuzzer) and clang's ASan/UBSan runtimes
	clang libclang-rt-14-dev
)
# tests/integration/test_drivers.py: node-postgres and postgres.js run on the machine's node
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

# Where node-pg is unpacked when apt-get cannot install it (see above).
NODE_PG_DIR=/usr/local/lib/pgrelay/node-pg
NODE_PG_DEBS=(node-pg node-split2 node-xtend)

log() { echo "deps.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo -E "$0" "$@"
	fi
	log "must run as root"
	exit 1
fi

installed() {
	# "install ok installed" only: a removed package whose config files remain is not installed.
	[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)" = "ii " ]
}

missing=()
for p in "${PACKAGES[@]}"; do
	installed "$p" || missing+=("$p")
done

node_pg_present() {
	installed node-pg || [ -f "$NODE_PG_DIR/pg/package.json" ]
}

if [ ${#missing[@]} -eq 0 ] && node_pg_present; then
	log "all ${#PACKAGES[@]} packages already installed"
	exit 0
fi

[ ${#missing[@]} -eq 0 ] || log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Forbid service starts during the install, unless the machine already has its own policy.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\n# temporary, from pgrelay scripts/deps.sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	made_policy=1
fi
cleanup() { if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

# Refresh the package lists only when needed: they are empty (fresh image), or a package is
# unknown to them.
need_update=0
if ! ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; then
	need_update=1
else
	for p in "${missing[@]}"; do
		if ! apt-cache show "$p" >/dev/null 2>&1; then
			need_update=1
			break
		fi
	done
fi
# Even with lists present, a stale list can point at files the mirror no longer has: on failure,
# update once and try again.
apt_install() {
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
if [ ${#missing[@]} -eq 0 ]; then
	:
elif [ $need_update = 1 ]; then
	apt-get update -q
	apt_install "${missing[@]}"
elif ! apt_install "${missing[@]}"; then
	log "install failed with the present package lists: updating them and retrying"
	apt-get update -q
	apt_install "${missing[@]}"
fi

# node-pg: apt-get install where the machine's nodejs allows it, else the unpacked .debs.
if ! node_pg_present; then
	if ! apt-cache show node-pg >/dev/null 2>&1; then
		apt-get update -q
	fi
	if apt-get install -s -q --no-install-recommends node-pg >/dev/null 2>&1; then
		log "installing: node-pg"
		apt_install node-pg
		missing+=(node-pg)
	else
		log "node-pg cannot be installed next to this machine's nodejs ($(dpkg-query -W -f='${Version}' nodejs 2>/dev/null || echo 'not from a package')):" \
			"unpacking ${NODE_PG_DEBS[*]} into $NODE_PG_DIR"
		tmp=$(mktemp -d)
		# as root: the _apt sandbox user cannot write into this folder
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "${NODE_PG_DEBS[@]}") || { rm -rf "$tmp"; log "apt-get download ${NODE_PG_DEBS[*]} failed"; exit 1; }
		mkdir -p "$tmp/root"
		for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
		rm -rf "$NODE_PG_DIR"
		mkdir -p "$(dirname "$NODE_PG_DIR")"
		mv "$tmp/root/usr/share/nodejs" "$NODE_PG_DIR"
		(cd "$tmp" && ls ./*.deb) >"$NODE_PG_DIR/FROM-DEBIAN-PACKAGES"
		rm -rf "$tmp"
		missing+=(node-pg)
	fi
fi

# Stop and disable the system services of the packages this run installed.
newly() { local p; for p in "${missing[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }
disable_service() {
	local svc=$1
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl stop "$svc" >/dev/null 2>&1 || true
		systemctl disable "$svc" >/dev/null 2>&1 || true
	else
		if [ -x "/etc/init.d/$svc" ]; then
			/etc/init.d/"$svc" stop >/dev/null 2>&1 || true
		fi
		update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
}
if newly postgresql-15; then
	if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql/15/main ]; then
		pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
		# "manual": the init scripts leave this cluster alone from now on.
		echo manual >/etc/postgresql/15/main/start.conf
	fi
	disable_service postgresql
fi
if newly redis-server; then
	disable_service redis-server
	pid=$(cat /run/redis/redis-server.pid 2>/dev/null || true)
	if [ -n "$pid" ] && [ "$(readlink -f /proc/"$pid"/exe 2>/dev/null)" = "$(readlink -f /usr/bin/redis-server)" ]; then
		kill "$pid" 2>/dev/null || true
	fi
fi
if newly pgbouncer; then
	disable_service pgbouncer
fi
if newly prometheus; then
	disable_service prometheus # the tests start their own, on a free port with a temporary folder
fi

# A final check, so a broken install is reported here and not as a confusing build error.
still=()
for p in "${PACKAGES[@]}"; do
	installed "$p" || still+=("$p")
done
node_pg_present || still+=(node-pg)
if [ ${#still[@]} -ne 0 ]; then
	log "still missing after apt-get: ${still[*]}"
	exit 1
fi
log "installed ${#missing[@]} package(s)"
