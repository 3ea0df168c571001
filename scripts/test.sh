#!/usr/bin/env bash
# The test command: installs what is missing, checks the include direction
# (scripts/layers.sh), builds, runs the whole default suite (unit, crash and
# integration tests, the layers check), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, the unit and integration
# tests under ThreadSanitizer (but those labelled slow: scripts/test-slow.sh),
# the sink-kind test in a build with the optional sink kinds left out, then
# each libFuzzer target for 20 s (scripts/fuzz.sh). ctest runs as many tests
# at once as there are cores: every test takes free loopback ports and its
# own temp dirs, and most of their time is spent waiting, not computing. Exits non-zero on any
# failure; prints each part's duration and ends with one summary line.
# SPW_CRASH_CYCLES raises the number of kill cycles of the crash test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
t0=$(date +%s)
times=()
lap() { local now; now=$(date +%s); times+=("$1 $((now - t0))s"); t0=$now; }

echo "== include direction"
scripts/layers.sh

echo "== build (release with debug info, assertions on)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
lap build

echo "== tests"
(cd build && ctest -j"$jobs" --output-on-failure --timeout 900) | tee "$logs/main"
lap tests

echo "== unit tests (and integration tests labelled asan) under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPW_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -j"$jobs" -L 'unit|asan' --output-on-failure --timeout 900) | tee "$logs/asan"
lap asan

scripts/tsan.sh -LE slow -j"$jobs" | tee "$logs/tsan"
lap tsan

echo "== the sink kinds with libpq and librdkafka left out"
cmake -S . -B build-lite -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPW_WITH_POSTGRES=OFF -DSPW_WITH_KAFKA=OFF >/dev/null
cmake --build build-lite -j"$jobs" --target spillway spillway_test test_sink_kinds
(cd build-lite && ctest -R 'test_sink_kinds|test_pg|test_kafka_sink' --output-on-failure --timeout 300) | tee "$logs/lite"
lap lite

scripts/fuzz.sh 20 | tee "$logs/fuzz"
lap fuzz

# Every step above stops the script on failure, so reaching here means all passed.
count() { sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' "$1" | tail -1; }
n_main=$(count "$logs/main")
n_asan=$(count "$logs/asan")
n_tsan=$(count "$logs/tsan")
n_lite=$(count "$logs/lite")
n_fuzz=$(grep -c '^fuzz .*: ok' "$logs/fuzz" || true)
echo "== durations: ${times[*]}"
echo "== summary: ctest ${n_main}, ctest under ASan+UBSan ${n_asan}, ctest under TSan ${n_tsan}, without the optional sinks ${n_lite}, fuzz targets ${n_fuzz}"
echo "test.sh: $((n_main + n_asan + n_tsan + n_lite + n_fuzz)) passed, 0 failed"
