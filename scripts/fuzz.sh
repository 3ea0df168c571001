#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz/fuzz_*.c) for SECONDS each
# (default 20): installs clang if missing, builds build-fuzz with
# -DSPW_FUZZ=ON (coverage + ASan + UBSan), seeds each target's corpus in
# build-fuzz/corpus/<target>/ from tests/fuzz/corpus/<target>/, runs it, and
# prints one summary line per target. Exits 1 if any target crashed, leaked,
# hung or failed an invariant (the reproducer is left in build-fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
# libFuzzer and the sanitizer runtimes are only "Recommends" of clang in Debian.
scripts/deps.sh clang libclang-rt-14-dev
jobs=$(nproc 2>/dev/null || echo 2)
out=build-fuzz

echo "== fuzzing (${secs}s per target)"
CC=clang cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Debug -DSPW_FUZZ=ON >/dev/null
cmake --build "$out" -j"$jobs" --target spw_fuzz_all

mkdir -p "$out/tmp" "$out/artifacts"
# One target per core at a time: each still gets SECONDS of a whole core.
fuzz_one() {
  local bin=$1 name
  name=$(basename "$bin")
  corpus="$out/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  log="$out/$name.log"
  rc=0
  TMPDIR="$PWD/$out/tmp" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" \
      "$corpus" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  units=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $name: ok, ${execs:-?} execs in ${secs}s, coverage ${cov:-?}, corpus $units"
  else
    echo "fuzz $name: FAILED (exit $rc) after ${execs:-?} execs; log $log; reproducer:"
    ls "$out/artifacts/$name-"* 2>/dev/null | sed 's/^/  /' || true
    grep -m1 -E 'ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer|libFuzzer)|runtime error|invariant|fuzz_http:' "$log" | sed 's/^/  /' || true
  fi
  return "$rc"
}
fail=0
pids=()
for bin in "$out"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || fail=1
    pids=("${pids[@]:1}")
  fi
  fuzz_one "$bin" &
  pids+=("$!")
done
for p in "${pids[@]}"; do
  wait "$p" || fail=1
done
rm -rf "$out/tmp"
exit $fail
