#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs the whole default
# suite (unit + crash tests), then the unit tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer. Exits non-zero on any failure.
# SPW_CRASH_CYCLES raises the number of kill cycles of the crash test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (release with debug info)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"

echo "== tests"
(cd build && ctest --output-on-failure --timeout 900)

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPW_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest -L unit --output-on-failure --timeout 900)

scripts/fuzz.sh 20
