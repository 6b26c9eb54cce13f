#!/usr/bin/env bash
# test.sh — the one command that installs, builds and runs every test, from a fresh Debian 12 root:
#
#   scripts/test.sh            # as root, from any directory
#
#   1. scripts/deps.sh installs what is missing (apt-get);
#   2. builds two configurations: build/ (default options) and build-asan/ (debug, AddressSanitizer +
#      UndefinedBehaviorSanitizer);
#   3. runs the meson unit tests of both;
#   3b. builds build-fuzz/ (clang, libFuzzer, ASan+UBSan: the targets in fuzz/) and runs each fuzz
#      target for FUZZ_SECONDS (default 2) over its committed corpus, one target at a time; each
#      target counts as one test (a crash, leak or UB found fails it);
#   4. runs the pytest integration suite (tests/integration/) against build-asan/pgrelay and a real
#      PostgreSQL 15 that the suite starts itself (as the postgres user, under /tmp);
#   4b. runs the short fault scenarios (tests/faults/run.sh --short, against build/pgrelay: the
#      primary killed, a replica hung, a TCP reset in the middle of a large result; ~60 s), each
#      counted as one test;
#   5. ends with one line: "N passed, N failed" (", N skipped" when some were skipped), counting
#      every meson test, every pytest test and every fault scenario; exits non-zero if anything failed.
#
# Environment: PYTEST_ARGS adds arguments to pytest (e.g. PYTEST_ARGS="-k pgbench -x");
# PYTEST_WORKERS sets the number of pytest-xdist workers (default: the number of cores);
# PGRELAY_IT_SUITE_BUDGET the seconds the integration run may take (default 2400).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export PATH="$PATH:/usr/sbin:/sbin"
export PYTHONDONTWRITEBYTECODE=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PY=/usr/bin/python3   # Debian's interpreter: pytest/psycopg come from Debian packages, not pip
T0=$(date +%s)

steps_failed=()
note() { printf '\n==> %s\n' "$*"; }

note "dependencies"
if ! scripts/deps.sh; then
	echo "test.sh: scripts/deps.sh failed" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

# meson setup, or reconfigure an existing build directory with the same options.
configure() {
	local dir=$1
	shift
	if [ -f "$dir/meson-private/coredata.dat" ]; then
		meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 ||
			{ rm -rf "$dir" && meson setup "$dir" "$@" >"$dir.setup.log" 2>&1; }
	else
		rm -rf "$dir"
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
	fi
	local rc=$?
	if [ $rc -ne 0 ]; then cat "$dir.setup.log"; fi
	rm -f "$dir.setup.log"
	return $rc
}

build() {
	local dir=$1
	shift
	note "build $dir ($*)"
	if configure "$dir" "$@" && ninja -C "$dir"; then
		return 0
	fi
	steps_failed+=("build of $dir")
	return 1
}

unit() {
	local dir=$1
	note "unit tests ($dir)"
	rm -f "$dir/meson-logs/testlog.json"
	meson test -C "$dir" --print-errorlogs --no-rebuild || true
	if [ ! -s "$dir/meson-logs/testlog.json" ]; then
		steps_failed+=("meson test in $dir (no test log)")
	fi
}

built_release=0 built_asan=0
build build && built_release=1
build build-asan -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false && built_asan=1
[ $built_release = 1 ] && unit build
[ $built_asan = 1 ] && unit build-asan

# Fuzz targets: a short fixed-time run of each (clang is required: without it this step fails).
rm -f build-fuzz/meson-logs/testlog.json
if ! command -v clang >/dev/null 2>&1; then
	note "fuzz targets"
	echo "test.sh: clang is missing: the fuzz targets cannot be built" >&2
	steps_failed+=("fuzz targets (no clang)")
elif CC=clang build build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false; then
	note "fuzz targets (build-fuzz, ${FUZZ_SECONDS:-2} s each)"
	FUZZ_SECONDS=${FUZZ_SECONDS:-2} meson test -C build-fuzz --suite fuzz --num-processes 1 --print-errorlogs \
		--no-rebuild || true
	if [ ! -s build-fuzz/meson-logs/testlog.json ]; then
		steps_failed+=("fuzz targets (no test log)")
	fi
fi

JUNIT="$ROOT/build-asan/pytest-junit.xml"
rm -f "$JUNIT"
if [ $built_asan = 1 ]; then
	note "integration tests (tests/integration, pgrelay = build-asan/pgrelay)"
	# One pytest-xdist worker per core, each with its own PostgreSQL and Redis servers (ports split
	# between workers: tests/integration/ports.py); a file's tests stay on one worker.
	# Each test has its own time limit (conftest.py). PGRELAY_IT_SUITE_BUDGET stops the run between
	# tests once spent, keeping the summary and the JUnit file; `timeout` is the backstop.
	# shellcheck disable=SC2086
	PGRELAY_BIN="$ROOT/build-asan/pgrelay" PGRELAY_IT_SUITE_BUDGET=${PGRELAY_IT_SUITE_BUDGET:-2400} \
		timeout -k 30 2700 "$PY" -m pytest -p no:cacheprovider -n "${PYTEST_WORKERS:-$(nproc)}" \
		--dist loadfile tests/integration -q -ra --durations=15 --junitxml="$JUNIT" ${PYTEST_ARGS:-}
	rc=$?
	if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
		# 1 = some tests failed (counted below); anything else: pytest itself failed, collected no
		# test (5), which must not pass as green, was stopped by its time budget (2) or ran out
		# of time (124).
		steps_failed+=("pytest (exit status $rc)")
	fi
else
	steps_failed+=("integration tests (no build-asan/pgrelay)")
fi

# Fault scenarios under load (tests/faults/run.sh: network namespace, nftables, real processes),
# short durations; one line per scenario in faults-testlog.json, counted below.
FAULTS_LOG="$ROOT/build/faults-testlog.json"
rm -f "$FAULTS_LOG"
if [ $built_release = 1 ]; then
	note "fault scenarios (tests/faults/run.sh --short, pgrelay = build/pgrelay)"
	timeout -k 10 300 tests/faults/run.sh --short --pgrelay "$ROOT/build/pgrelay" --testlog "$FAULTS_LOG" || true
	if [ ! -s "$FAULTS_LOG" ]; then
		steps_failed+=("fault scenarios (no test log)")
	fi
else
	steps_failed+=("fault scenarios (no build/pgrelay)")
fi

note "summary"
for s in "${steps_failed[@]}"; do echo "FAILED STEP: $s"; done
echo "test.sh: took $(($(date +%s) - T0)) s"
"$PY" - "$JUNIT" "${#steps_failed[@]}" build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
	build-fuzz/meson-logs/testlog.json "$FAULTS_LOG" <<'EOF'
import json, os, sys
import xml.etree.ElementTree as ET

junit, step_failures, testlogs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
passed = failed = skipped = 0
for path in testlogs:
    if not os.path.exists(path):
        continue
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            result = json.loads(line).get("result")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
if os.path.exists(junit):
    for case in ET.parse(junit).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
failed += step_failures
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
EOF
