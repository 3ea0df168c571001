#!/usr/bin/env bash
# The unit and integration tests under ThreadSanitizer: builds build-tsan
# (-DSPW_TSAN=ON; the kafka sink is left out there, librdkafka's threads
# crash under TSan) and runs ctest -L 'unit|integration' with any further
# ctest arguments given (scripts/test.sh: -LE slow; scripts/test-slow.sh:
# -L slow). Every process's reports go to a temp dir, so those of the
# servers the integration tests start are caught too; exits 1 if a test
# failed or any report was written, printing the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT

echo "== unit and integration tests under ThreadSanitizer $*"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPW_TSAN=ON -DSPW_WITH_KAFKA=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target spillway spillway_test spw_unit_tests spw_integration_tests
rc=0
# die_after_fork=0: tests fork children that start threads (the crash
# harness); history_size=4: enough history for the loops' long-lived reads.
# suppressions: librocksdb is not instrumented (scripts/tsan.supp says why).
supp="$PWD/scripts/tsan.supp"
(cd build-tsan && TSAN_OPTIONS="log_path=$reports/tsan die_after_fork=0 history_size=4 second_deadlock_stack=1 suppressions=$supp" \
  ctest -L 'unit|integration' "$@" --output-on-failure --timeout 900) || rc=$?
if [ -n "$(ls -A "$reports")" ]; then
  echo "tsan.sh: ThreadSanitizer reports:"
  cat "$reports"/*
  grep -h '^SUMMARY' "$reports"/* | sort | uniq -c
  exit 1
fi
exit $rc
