#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole default
# suite (unit, crash and integration tests), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, then each libFuzzer target
# for 20 s (scripts/fuzz.sh). Exits non-zero on any failure; ends with one
# summary line over all of it.
# SPW_CRASH_CYCLES raises the number of kill cycles of the crash test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "== build (release with debug info)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

echo "== tests"
(cd build && ctest --output-on-failure --timeout 900) | tee "$logs/main"

echo "== unit tests (and integration tests labelled asan) under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPW_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -L 'unit|asan' --output-on-failure --timeout 900) | tee "$logs/asan"

scripts/fuzz.sh 20 | tee "$logs/fuzz"

# Every step above stops the script on failure, so reaching here means all passed.
count() { sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' "$1" | tail -1; }
n_main=$(count "$logs/main")
n_asan=$(count "$logs/asan")
n_fuzz=$(grep -c '^fuzz .*: ok' "$logs/fuzz" || true)
echo "== summary: ctest ${n_main}, ctest under ASan+UBSan ${n_asan}, fuzz targets ${n_fuzz}"
echo "test.sh: $((n_main + n_asan + n_fuzz)) passed, 0 failed"
