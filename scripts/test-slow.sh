#!/usr/bin/env bash
# The tests too slow for scripts/test.sh's ThreadSanitizer run (ctest label
# "slow", CMakeLists.txt SPW_SLOW_TESTS), under ThreadSanitizer. test.sh
# still runs them in the plain build; run this one before a release and
# after changing threads, locks or atomics.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
exec scripts/tsan.sh -L slow
