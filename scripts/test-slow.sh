#!/usr/bin/env bash
# The tests too slow for scripts/test.sh's ThreadSanitizer run (ctest label
# "slow", CMakeLists.txt SPW_SLOW_TESTS), under ThreadSanitizer. test.sh
# still runs them in the plain build; run this one before a release and
# after changing threads, locks or atomics.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "== views: the model test over 200 seeds, the crash test over 50 kill cycles"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target spillway test_view_model test_view_crash test_torn
(cd build && SPW_VIEW_SEEDS=200 ./test_view_model && SPW_VIEW_CRASH_CYCLES=50 ./test_view_crash ./spillway)
echo "== torn writes and bit flips at every byte (the default suite tries every 4th payload byte)"
(cd build && SPW_TORN_STRIDE=1 ./test_torn ./spillway)
echo "== resharding a postgres sink over 300,000 events, producing 1,000 a second meanwhile (the default test: 3,000; 250)"
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target spillway spillway_test test_pg_reshard
(cd build && SPW_PG_RESHARD_EVENTS=300000 SPW_PG_RESHARD_RATE=1000 ./test_pg_reshard ./spillway ./spillway_test)
echo "== the .deb installed in a fresh Debian 12 root (debootstrap; needs the Debian mirror)"
if [ "$(id -u)" -eq 0 ]; then tests/package/test_deb_root.sh; else sudo tests/package/test_deb_root.sh; fi
exec scripts/tsan.sh -L slow
