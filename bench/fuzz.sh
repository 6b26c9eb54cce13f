#!/usr/bin/env bash
# fuzz.sh — builds build-fuzz (clang, libFuzzer, ASan+UBSan) and runs each fuzz target for N
# minutes, one after the other (one fuzzer process at a time), from its committed corpus
# (fuzz/corpus/<target>/, read only; new inputs go to build-fuzz/fuzz-work/<target>/).
#
#   bench/fuzz.sh [minutes] [target ...]    # default: 1 minute, every target
#   FUZZ_RUNS=10000000 bench/fuzz.sh 0       # each target until it has run that many inputs
#   FUZZ_TIMEOUT=60                          # seconds one input may take (default 10; a loaded machine)
#                                            # (minutes 0 = no time limit)
#
# Prints a table: target, executions, exec/s, corpus entries, coverage (cov) and features (ft),
# and whether it crashed. Crashes, leaks and timeouts are saved under build-fuzz/crashes/<target>/;
# the full log of each run is build-fuzz/fuzz-logs/<target>.log. Exit status 1 if any target
# failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
MINUTES=${1:-1}
shift || true
B=build-fuzz
if ! command -v clang >/dev/null; then
	echo "fuzz.sh: clang is missing (scripts/deps.sh installs clang and libclang-rt-14-dev)" >&2
	exit 1
fi
if [ ! -f "$B/meson-private/coredata.dat" ]; then
	CC=clang meson setup "$B" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null || exit 1
fi
ninja -C "$B" >/dev/null || { echo "fuzz.sh: build of $B failed" >&2; exit 1; }
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
	for f in fuzz/fuzz_*.c; do t=$(basename "$f" .c); TARGETS+=("${t#fuzz_}"); done
fi
mkdir -p "$B/fuzz-logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"
seconds=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 }')
failed=0
printf '%-14s %14s %10s %8s %8s %8s  %s\n' target executions exec/s corpus cov ft result
for t in "${TARGETS[@]}"; do
	exe="$B/fuzz/fuzz_$t"
	[ -x "$exe" ] || { echo "fuzz.sh: no target $t" >&2; failed=1; continue; }
	mkdir -p "$B/fuzz-work/$t" "$B/crashes/$t"
	log="$B/fuzz-logs/$t.log"
	runs=()
	[ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
	started=$(date +%s)
	"$exe" -max_total_time="$seconds" "${runs[@]}" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
		-artifact_prefix="$B/crashes/$t/" "$B/fuzz-work/$t" "fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	elapsed=$(($(date +%s) - started))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
	corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
	result=ok
	if [ $rc -ne 0 ]; then result="FAILED (exit $rc; see $log)"; failed=1; fi
	execs=${execs:-0}
	printf '%-14s %14s %10s %8s %8s %8s  %s\n' "$t" "$execs" "$((execs / (elapsed > 0 ? elapsed : 1)))" \
		"${corp:--}" "${cov:--}" "${ft:--}" "$result"
done
exit $failed
