#!/usr/bin/env bash
# bench/run.sh views: RocksDB's db_bench (Debian rocksdb-tools) fillrandom
# and mergerandom with the log's key count and event count (--num K: the
# keys, --writes N: the operations) of B-byte values and WAL off — the
# store's own put and merge rates on this machine — then spw_view_bench
# (bench/view_bench.c): the apply rate of latest, aggregate (three
# windows) and sum views over a log of N events of B bytes over K keys,
# with ratio_to_fillrandom = events/s over fillrandom's puts/s.
# Then the lag: a server (spillway serve, loopback) whose ack=fsync
# capacity `spillway bench` measures first (--lag-capacity-seconds), and
# an aggregate view (1s, 1m, 1h) over a stream a producer fills at half
# that rate (spillway bench --rate) for --lag-seconds; meanwhile a probe
# produces one event (ack=fsync) every 50 ms and reads the view's key of
# it with the 202's offsets as min_offsets (docs/api.md "Views"): the time
# from the 202 to the read's answer is how far the view is behind an
# acknowledged write. Prints `BENCH views lag_ms_p50=.. lag_ms_p99=..`.
# Options: --events N (default 2000000), --keys K (default 100000),
# --size B (default 100), --span-ms MS (the events' times spread over MS,
# default 3600000), --lag-seconds S (default 10; 0: no lag part),
# --lag-capacity-seconds S (default 3). Data in fresh directories under
# $TMPDIR or /var/tmp, removed at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
events=2000000 keys=100000 size=100 span_ms=3600000 lag_s=10 cap_s=3
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --span-ms) span_ms=$2; shift 2 ;;
    --lag-seconds) lag_s=$2; shift 2 ;;
    --lag-capacity-seconds) cap_s=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench/views.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
"$root/scripts/deps.sh" rocksdb-tools
build="${SPW_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target spw_view_bench spillway >/dev/null
base="${TMPDIR:-/var/tmp}"
db=$(mktemp -d "$base/spw-dbbench-XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$db"' EXIT
echo "== db_bench fillrandom, mergerandom: $events ops over $keys keys, ${size} B values, WAL off"
out=$(db_bench --benchmarks=fillrandom,mergerandom --num="$keys" --writes="$events" --value_size="$size" --key_size=16 \
  --disable_wal=1 --merge_operator=uint64add --threads=1 --db="$db" 2>&1)
fill=$(echo "$out" | awk '/^fillrandom/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^ops\/sec/) print $i }')
merge=$(echo "$out" | awk '/^mergerandom/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^ops\/sec/) print $i }')
echo "$out" | grep -E '^(fillrandom|mergerandom)'
echo "BENCH views kind=db_bench_fillrandom ops=$events keys=$keys ops_per_s=${fill:-0}"
echo "BENCH views kind=db_bench_mergerandom ops=$events keys=$keys ops_per_s=${merge:-0}"
echo "== views over a log of $events events, $keys keys, ${size} B"
"$build/spw_view_bench" --events "$events" --keys "$keys" --size "$size" --span-ms "$span_ms" \
  --fillrandom-ops "${fill:-0}" --dir "$base"
rm -rf "$db"/*

[ "$lag_s" != 0 ] || exit 0
# ---- lag behind a producer at half the ack=fsync capacity ----
spw="$build/spillway"
"$spw" serve --data "$db/data" --listen 127.0.0.1:0 --listen-bin off --ready-fd 3 3>"$db/ready" 2>"$db/log" &
pid=$!
for _ in $(seq 200); do
  [ -s "$db/ready" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$db/log" >&2; echo "bench/views.sh: spillway serve exited" >&2; exit 1; }
  sleep 0.05
done
read -r port _ <"$db/ready" || true
[ -n "${port:-}" ] || { cat "$db/log" >&2; echo "bench/views.sh: spillway serve did not start" >&2; exit 1; }
url="http://127.0.0.1:$port"
echo "== capacity: spillway bench --ack fsync for ${cap_s} s"
out=$("$spw" bench --server "127.0.0.1:$port" --stream lagcap --ack fsync --duration "$cap_s" 2>&1)
cap=$(echo "$out" | sed -n 's/^BENCH bench .* events_per_s=\([0-9]*\).*/\1/p')
[ -n "$cap" ] && [ "$cap" -gt 0 ] || { echo "$out" >&2; echo "bench/views.sh: no capacity measured" >&2; exit 1; }
rate=$((cap / 2))
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' "$url/v1/streams/lag" \
  -d '{"key":"/k"}')
[ "$code" = 201 ] || { echo "bench/views.sh: PUT /v1/streams/lag: $code" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' "$url/v1/views/lagv" \
  -d '{"stream":"lag","kind":"aggregate","field":"/c","windows":["1s","1m","1h"]}')
[ "$code" = 201 ] || { echo "bench/views.sh: PUT /v1/views/lagv: $code" >&2; exit 1; }
echo "== lag: producer at $rate events/s (half of $cap) for ${lag_s} s, a probe every 50 ms"
"$spw" bench --server "127.0.0.1:$port" --stream lag --ack fsync --rate "$rate" --duration "$lag_s" \
  >"$db/producer" 2>&1 &
bpid=$!
: >"$db/lag"
while kill -0 "$bpid" 2>/dev/null; do
  ans=$(curl -s -X POST -H 'Content-Type: application/json' "$url/v1/streams/lag/events?ack=fsync" \
    -d '{"k":"lagprobe","c":1}')
  min=$(echo "$ans" | jq -r '.partitions[0] | "\(.partition):\(.first_offset + .count - 1)"' 2>/dev/null) || min=
  [ -n "$min" ] && [ "$min" != "null:null" ] || { echo "bench/views.sh: probe produce: $ans" >&2; continue; }
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "$url/v1/views/lagv/keys/lagprobe?min_offsets=$min&wait_ms=30000")
  case "$t" in 200\ *) echo "${t#200 }" >>"$db/lag" ;; *) echo "bench/views.sh: probe read: $t" >&2 ;; esac
  sleep 0.05
done
wait "$bpid" || { cat "$db/producer" >&2; echo "bench/views.sh: the producer failed" >&2; }
grep '^BENCH' "$db/producer" || true
n=$(wc -l <"$db/lag")
[ "$n" -gt 0 ] || { echo "bench/views.sh: no probe answered" >&2; exit 1; }
sort -g "$db/lag" | awk -v n="$n" -v rate="$rate" '
  { v[NR] = $1 * 1000 }
  END {
    p50 = v[int(0.5 * (n - 1)) + 1]; p99 = v[int(0.99 * (n - 1)) + 1]
    printf "lag behind acknowledged writes: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d probes)\n", p50, p99, v[n], n
    printf "BENCH views lag producer_events_per_s=%d probes=%d lag_ms_p50=%.1f lag_ms_p99=%.1f lag_ms_max=%.1f\n", rate, n, p50, p99, v[n]
  }'
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=
