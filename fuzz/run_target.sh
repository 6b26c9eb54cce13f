#!/bin/sh
# run_target.sh EXE NAME CORPUS BUILD_DIR — one fuzz target as a meson test: FUZZ_SECONDS
# (default 5) of fuzzing from its committed corpus (CORPUS is read, never written: new inputs go
# to BUILD_DIR/fuzz-work/NAME), crashes saved under BUILD_DIR/crashes/NAME/. Fails when the
# fuzzer finds a crash, leak, timeout or UB, cannot run at all, or covers less once its corpus is
# loaded than its floor in fuzz/min_coverage (the harness no longer reaches the code).
set -eu
exe=$1 name=$2 corpus=$3 build=$4
seconds=${FUZZ_SECONDS:-5}
work="$build/fuzz-work/$name"
crashes="$build/crashes/$name"
log="$build/fuzz-work/$name.log"
mkdir -p "$work" "$crashes"
[ -d "$corpus" ] || { echo "run_target.sh: no corpus at $corpus" >&2; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"
rc=0
"$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$corpus" >"$log" 2>&1 || rc=$?
cat "$log"
[ "$rc" -eq 0 ] || exit "$rc"
floor=$(awk -v t="$name" '$1 == t { print $2 }' "$(dirname "$0")/min_coverage")
cov=$(sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "$log" | head -n1)
if [ -n "$floor" ]; then
	if [ -z "$cov" ] || [ "$cov" -lt "$floor" ]; then
		echo "run_target.sh: $name covers ${cov:-nothing} edges once its corpus is loaded, below its floor of $floor (fuzz/min_coverage): the harness no longer reaches the code it fuzzes" >&2
		exit 1
	fi
	echo "run_target.sh: $name: corpus coverage $cov edges (floor $floor)"
fi
