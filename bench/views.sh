#!/usr/bin/env bash
# bench/run.sh views: RocksDB's db_bench (Debian rocksdb-tools) fillrandom
# and mergerandom with N operations of B-byte values and WAL off — the
# store's own put and merge rates on this machine — then spw_view_bench
# (bench/view_bench.c): the apply rate of latest, aggregate (three
# windows) and sum views over a log of N events of B bytes over K keys,
# with ratio_to_fillrandom = events/s over fillrandom's puts/s.
# Options: --events N (default 2000000), --keys K (default 100000),
# --size B (default 100). Data in fresh directories under $TMPDIR or
# /var/tmp, removed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
events=2000000 keys=100000 size=100
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "bench/views.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
"$root/scripts/deps.sh" rocksdb-tools
build="${SPW_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target spw_view_bench >/dev/null
base="${TMPDIR:-/var/tmp}"
db=$(mktemp -d "$base/spw-dbbench-XXXXXX")
trap 'rm -rf "$db"' EXIT
echo "== db_bench fillrandom, mergerandom: $events ops, ${size} B values, WAL off"
out=$(db_bench --benchmarks=fillrandom,mergerandom --num="$events" --value_size="$size" --key_size=16 \
  --disable_wal=1 --merge_operator=uint64add --threads=1 --db="$db" 2>&1)
fill=$(echo "$out" | awk '/^fillrandom/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^ops\/sec/) print $i }')
merge=$(echo "$out" | awk '/^mergerandom/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^ops\/sec/) print $i }')
echo "$out" | grep -E '^(fillrandom|mergerandom)'
echo "BENCH views kind=db_bench_fillrandom ops=$events ops_per_s=${fill:-0}"
echo "BENCH views kind=db_bench_mergerandom ops=$events ops_per_s=${merge:-0}"
echo "== views over a log of $events events, $keys keys, ${size} B"
"$build/spw_view_bench" --events "$events" --keys "$keys" --size "$size" --fillrandom-ops "${fill:-0}" --dir "$base"
