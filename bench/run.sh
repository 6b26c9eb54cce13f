#!/bin/bash
# bench/run.sh — pgrelay vs Debian's pgbouncer vs PostgreSQL directly, with pgbench.
# Usage: bench/run.sh [--quick] [--duration S] [--pool N] [--pgrelay PATH]   (as root; see README.md)
#        bench/run.sh cache [OPTIONS]   the result-cache benchmark (cache_bench.py; bench/cache.sh runs this)
#        bench/run.sh scale [OPTIONS]   10,000 idle / active clients, connections per second (scale.py; bench/scale.sh)
#        bench/run.sh soak [OPTIONS]    the mixed soak, RSS and descriptors sampled (soak.py; bench/soak.sh)
#
# The work is done by bench.py, or cache_bench.py / scale.py / soak.py (with Debian's /usr/bin/python3, not
# whatever python3 is first on PATH). Either cleans up after itself on exit, failure, SIGINT,
# SIGTERM and SIGHUP; the trap below forwards those signals to it and, should it die without
# cleaning up (e.g. SIGKILL), stops what it started from the temporary directory it recorded.
set -u

here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: must run as root (PostgreSQL and pgbouncer are started as postgres via runuser)" >&2
	exit 2
fi
if [ ! -x "$PY" ]; then
	echo "bench: $PY not found: install the Debian package python3 (apt-get install python3)" >&2
	exit 2
fi

state=$(mktemp /tmp/pgrelay-bench-state.XXXXXX)
child=

leftovers() {
	# Only if bench.py did not clean up: its temporary directory still exists.
	local base
	base=$(head -n1 "$state" 2>/dev/null)
	rm -f "$state"
	case "$base" in /tmp/pgrb.*) ;; *) return ;; esac
	[ -d "$base" ] || return
	echo "bench: cleaning up after bench.py in $base" >&2
	local f pid
	for f in "$base"/pgrelay*.pid "$base"/pgbouncer*.pid "$base"/redis*.pid; do
		[ -f "$f" ] || continue
		pid=$(tr -dc 0-9 <"$f")
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	done
	if [ -f "$base/pg/postmaster.pid" ]; then
		(cd /tmp && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$base/pg" -m immediate \
			-w -t 30 stop >/dev/null 2>&1)
	fi
	rm -rf "$base"
}

forward() {
	[ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}

trap leftovers EXIT
trap forward INT TERM HUP

py=bench.py
cmd="bench/run.sh"
case "${1:-}" in
cache | scale | soak)
	case "$1" in
	cache) py=cache_bench.py ;;
	*) py=$1.py ;;
	esac
	cmd="bench/$1.sh"
	shift
	;;
esac
for a in "$@"; do cmd+=" $(printf '%q' "$a")"; done

# In the background so that this shell can forward signals while waiting; bench.py re-enables
# SIGINT itself (a non-interactive shell starts background jobs with SIGINT ignored).
BENCH_STATE="$state" BENCH_CMD="$cmd" "$PY" "$here/$py" "$@" &
child=$!
while :; do
	wait "$child"
	status=$?
	# wait returns > 128 when a trapped signal arrived; keep waiting until bench.py has exited.
	kill -0 "$child" 2>/dev/null || break
done
exit "$status"
