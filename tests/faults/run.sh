#!/usr/bin/env bash
# tests/faults/run.sh — fault scenarios under load, with real processes and a network namespace:
# what clients see, whether any result is wrong, how long pgrelay takes to recover.
#
#   tests/faults/run.sh [--short] [--only NAME]... [--pgrelay PATH] [--report FILE] [--testlog FILE]
#
# As root (PostgreSQL runs as the postgres user). Scenarios (faults.py has the details and the
# rules of measurement; bench/RESULTS.md the figures):
#   primary-kill    every process of the primary SIGKILLed under a TPC-B write load, restarted
#   replica-stop    every process of the replica SIGSTOPped (hung, not dead) under a read load
#   latency-loss    +100 ms each way and 5 % packet loss between pgrelay and the primary
#   reset-large     TCP reset of the server connection in the middle of a large result
#   redis-failover  the Redis Cluster master holding the cache's versions SIGKILLed, replica promoted
# --short runs each with short durations (replica stopped 8 s instead of 30, ...; ~60 s in all,
# for scripts/test.sh); the default is the full durations. --only NAME runs one (repeatable).
# --report FILE writes the Markdown table and details; --testlog FILE one JSON line per scenario
# ({"name": ..., "result": "OK"|"FAIL"}, as meson's testlog.json, counted by scripts/test.sh).
# Exit status: 0 all passed; 1 a wrong result, pgrelay crashed or did not recover, or a setup
# failure; 2 usage or missing tools; 130 interrupted.
#
# The network: the primary PostgreSQL runs inside a network namespace made here (ip netns), joined
# to the host by a veth pair with a /29 of 10.213.0.0/16 (host .1, namespace .2 and .3; a block no
# other address on this machine uses), so pgrelay (on the host) reaches it over a real link. Faults
# on that link are made inside the namespace only, with nftables (installed by scripts/deps.sh):
# packet loss is `numgen random mod 100 < 5 drop` (real drops, real TCP retransmissions), the
# reset is `ct reply bytes > N reject with tcp reset`. Latency is NOT made with `tc netem`: this
# kernel has no sch_netem ("Specified qdisc kind is unknown", and no modprobe), and nftables cannot
# delay packets. It is made by tests/faults/delay_proxy.py, a userspace TCP forwarder inside the
# namespace that pgrelay reaches the primary through in that scenario: it delays every chunk by
# 100 ms in each direction (order kept, bandwidth not limited, no jitter), which is what netem's
# `delay 100ms` on both sides would do to a request/reply protocol; the loss is on the forwarder's
# side of the link, in the kernel. The replica and Redis run on the host's loopback; every port is
# a random free one in 20000-32767, so runs in parallel do not collide.
#
# Clean-up (also on Ctrl-C): faults.py stops what it started; this script then kills any process
# left whose PID faults.py recorded (checked against its start time), stops PostgreSQL, deletes the
# namespace (and with it the veth pair) and the temporary folder.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
PGRELAY=$ROOT/build/pgrelay
ARGS=()
while [ $# -gt 0 ]; do
	case $1 in
	--short) ARGS+=(--short) ;;
	--only) ARGS+=(--only "$2"); shift ;;
	--pgrelay) PGRELAY=$2; shift ;;
	--report) ARGS+=(--report "$(realpath -m "$2")"); shift ;;
	--testlog) ARGS+=(--testlog "$(realpath -m "$2")"); shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$(id -u)" != 0 ]; then
	echo "run.sh: must run as root (network namespaces; PostgreSQL is started as postgres)" >&2
	exit 2
fi
export PATH="$PATH:/usr/sbin:/sbin"
for tool in ip nft setpriv redis-server redis-cli /usr/lib/postgresql/15/bin/pgbench "$PY"; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "run.sh: $tool is missing (scripts/deps.sh installs what the tests need)" >&2
		exit 2
	fi
done
if [ ! -x "$PGRELAY" ]; then
	echo "run.sh: $PGRELAY not found: build it first (meson setup build && ninja -C build)" >&2
	exit 2
fi

NS=pgrf$$
VH=pgrfh$$ # host side of the veth pair (interface names: at most 15 characters)
VN=pgrfn$$
BASE=$(mktemp -d /tmp/pgrf.XXXXXX) # short: PostgreSQL's socket path must fit in 107 bytes
chown postgres: "$BASE"
chmod 755 "$BASE"

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	# processes faults.py recorded and did not stop (only if the PID is still the same process)
	for f in "$BASE"/pids/*; do
		[ -f "$f" ] || continue
		read -r pid start _ <"$f" || continue
		if [ -r "/proc/$pid/stat" ] && [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)" = "$start" ]; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	for d in "$BASE/replica" "$BASE/primary"; do
		if [ -f "$d/postmaster.pid" ]; then
			local pm
			pm=$(head -1 "$d/postmaster.pid")
			if [ -r "/proc/$pm/cmdline" ] && tr '\0' ' ' <"/proc/$pm/cmdline" | grep -q -- "-D $d"; then
				kill -QUIT "$pm" 2>/dev/null || true
			fi
		fi
	done
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	ip link del "$VH" 2>/dev/null || true
	rm -rf "$BASE"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# A /29 in 10.213.0.0/16 that no interface or route of this machine uses (runs in parallel too).
SUBNET=
for _ in $(seq 50); do
	cand="10.213.$((RANDOM % 256)).$(((RANDOM % 32) * 8))"
	prefix=${cand%.*}.
	if ! ip -4 -o addr show | grep -q " inet $prefix" && ! ip -4 route show | grep -q "^$prefix"; then
		SUBNET=$cand
		break
	fi
done
if [ -z "$SUBNET" ]; then
	echo "run.sh: no free 10.213.x.y/29 block" >&2
	exit 1
fi
net=${SUBNET%.*}
last=${SUBNET##*.}
HOST_ADDR=$net.$((last + 1))
ADDR_A=$net.$((last + 2))
ADDR_B=$net.$((last + 3))

ip netns add "$NS"
ip link add "$VH" type veth peer name "$VN"
ip link set "$VN" netns "$NS"
ip addr add "$HOST_ADDR/29" dev "$VH"
ip link set "$VH" up
ip -n "$NS" addr add "$ADDR_A/29" dev "$VN"
ip -n "$NS" addr add "$ADDR_B/29" dev "$VN"
ip -n "$NS" link set "$VN" up
ip -n "$NS" link set lo up
# byte counters per connection, for the reset rule (per namespace)
ip netns exec "$NS" sysctl -q -w net.netfilter.nf_conntrack_acct=1 >/dev/null 2>&1 ||
	echo "run.sh: note: could not set nf_conntrack_acct in the namespace" >&2

set +e
"$PY" "$HERE/faults.py" --base "$BASE" --netns "$NS" --addr-a "$ADDR_A" --addr-b "$ADDR_B" \
	--pgrelay "$(realpath "$PGRELAY")" "${ARGS[@]}"
rc=$?
set -e
exit $rc
