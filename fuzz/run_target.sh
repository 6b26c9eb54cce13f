#!/bin/sh
# run_target.sh EXE NAME CORPUS BUILD_DIR — one fuzz target as a meson test: FUZZ_SECONDS
# (default 5) of fuzzing from its committed corpus (CORPUS is read, never written: new inputs go
# to BUILD_DIR/fuzz-work/NAME), crashes saved under BUILD_DIR/crashes/NAME/. Fails when the
# fuzzer finds a crash, leak, timeout or UB, or cannot run at all.
set -eu
exe=$1 name=$2 corpus=$3 build=$4
seconds=${FUZZ_SECONDS:-5}
work="$build/fuzz-work/$name"
crashes="$build/crashes/$name"
mkdir -p "$work" "$crashes"
[ -d "$corpus" ] || { echo "run_target.sh: no corpus at $corpus" >&2; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"
exec "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	-print_final_stats=1 -artifact_prefix="$crashes/" "$work" "$corpus"
