#!/usr/bin/env bash
# bench/run.sh kafka: the Kafka listener (docs/protocol-kafka.md) beside the
# binary protocol, in one run, on fresh servers at ack=fsync:
#   1. `spillway bench --protocol bin` (N events, 100-byte values, batches
#      of 1000, K keys, 50 partitions);
#   2. spw_kafka_bench (bench/kafka_bench.c): librdkafka producing the same
#      N events (batches of 1000, linger.ms 5, acks=all) to a 50-partition
#      stream, then a consumer group of 1, 2 and 3 members (each count a new
#      group; throughput consumer settings, printed) reading them all, timed
#      from the first message to the last. Each consume line also gives the
#      server's CPU per message over that read (/proc/PID/stat).
# Prints the BENCH lines and the ratio kafka/bin (the target is >= 0.70).
# Options: --events N (default 2000000), --keys K (default 1000),
#          --members LIST (default 1,2,3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${SPW_BUILD_DIR:-$root/build}"
events=2000000
keys=1000
members=1,2,3
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --members) members=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench/kafka.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
"$root/scripts/deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target spillway spw_kafka_bench >/dev/null
spw="$build/spillway"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start() { # fresh server: sets pid, http_port, bin_port, kafka_port
  local dir="$work/$1" i
  mkdir -p "$dir"
  "$spw" serve --data "$dir/data" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 --listen-kafka 127.0.0.1:0 \
    --ready-fd 3 3>"$dir/ready" 2>"$dir/log" &
  pid=$!
  for i in $(seq 200); do [ -s "$dir/ready" ] && break; sleep 0.05; done
  read -r http_port bin_port kafka_port <"$dir/ready"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start bin
echo "== binary protocol: spillway bench --events $events --size 100 --batch 1000 --keys $keys --ack fsync"
out=$("$spw" bench --server "127.0.0.1:$bin_port" --http "127.0.0.1:$http_port" --protocol bin --stream kbench --partitions 50 \
  --events "$events" --size 100 --batch 1000 --keys "$keys" --ack fsync 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep '^BENCH' || { echo "$out" >&2; exit 1; }
bin_eps=$(echo "$out" | grep '^BENCH bench ' | sed 's/.* events_per_s=\([0-9]*\).*/\1/')
stop

start kafka
curl -fsS -X PUT "127.0.0.1:$http_port/v1/streams/kbench" -d '{"partitions":50,"format":"bytes","ack":"fsync"}' >/dev/null
echo "== Kafka protocol: librdkafka, --events $events --keys $keys"
out=$("$build/spw_kafka_bench" --broker "127.0.0.1:$kafka_port" --topic kbench --events "$events" --keys "$keys" \
  --phase produce)
echo "$out"
k_eps=$(echo "$out" | grep '^BENCH kafka ' | sed 's/.* events_per_s=\([0-9]*\).*/\1/')
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # the server's user + system CPU, in clock ticks
hz=$(getconf CLK_TCK)
for m in ${members//,/ }; do
  echo "== Kafka consumer group of $m member(s) reading the $events events"
  t0=$(ticks)
  out=$("$build/spw_kafka_bench" --broker "127.0.0.1:$kafka_port" --topic kbench --events "$events" --phase consume \
    --members "$m")
  t1=$(ticks)
  echo "$out" | grep -v '^BENCH'
  echo "$(echo "$out" | grep '^BENCH kafka-consume') server_cpu_us_per_msg=$(awk "BEGIN{printf \"%.3f\", ($t1 - $t0) * 1e6 / $hz / $events}")"
done
stop
echo "BENCH kafka-ratio kafka_events_per_s=$k_eps bin_events_per_s=$bin_eps ratio=$(awk "BEGIN{printf \"%.2f\", $k_eps/$bin_eps}")"
