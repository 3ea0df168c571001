#!/bin/sh
# Starts BINARY (spillway) on a temp data dir and private ports, applies a
# fixed small load over HTTP and the binary protocol, and prints /metrics
# normalized for comparison between two builds: one line per sample, with
# the values of timing-dependent series (histogram buckets and sums, the
# buffer peak) masked, plus every # HELP / # TYPE line; sorted.
# Usage: scripts/metrics_snapshot.sh path/to/spillway > out.txt
set -eu
BIN=$1
HP=${2:-17781}
BP=$((HP + 1))
D=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$D"' EXIT
"$BIN" serve --data "$D/data" --listen 127.0.0.1:$HP --listen-bin 127.0.0.1:$BP --io-threads 1 \
  --fsync-interval 10ms >"$D/log" 2>&1 &
PID=$!
for i in $(seq 1 200); do curl -sf 127.0.0.1:$HP/healthz >/dev/null 2>&1 && break; sleep 0.05; done
U=http://127.0.0.1:$HP
c() { curl -s -o /dev/null -H "Content-Type: application/json" "$@"; }
c -X PUT $U/v1/streams/k -d '{"partitions":2,"key":"/k"}'
c -X PUT $U/v1/streams/co -d '{"partitions":1,"key":"/k","coalesce":true}'
c -X PUT $U/v1/streams/by -d '{"partitions":1,"format":"bytes"}'
c -X POST $U/v1/streams/k/events -H 'Content-Type: application/json' -d '[{"k":"a","n":1},{"k":"b","n":2}]'
c -X POST $U/v1/streams/k/events -H 'Idempotency-Key: x1' -d '{"k":"a","n":3}'
c -X POST $U/v1/streams/k/events -H 'Idempotency-Key: x1' -d '{"k":"a","n":3}'
c -X POST $U/v1/streams/k/events -d '{"n":4}'
c -X POST $U/v1/streams/k/events -d '{"k":'
c -X POST $U/v1/streams/k/events?ack=bogus -d '{"k":"a"}'
c -X POST $U/v1/streams/co/events -d '{"k":"a","n":1}'
c -X POST $U/v1/streams/by/events -H 'Content-Type: application/octet-stream' --data-binary 'hello'
c "$U/v1/streams/k/events?partition=0&offset=0"
"$BIN" bench --protocol bin --server 127.0.0.1:$BP --http 127.0.0.1:$HP --stream k --events 50 \
  --clients 1 --batch 10 --keys 5 --size 20 >/dev/null 2>&1
sleep 0.3
curl -s $U/metrics | awk '
  /^#/ { print; next }
  { name = $1; sub(/\{.*/, "", name)
    if (name ~ /_bucket$|_sum$/ || name == "spillway_buffer_peak_bytes" || name ~ /^spillway_log_/ || name == "spillway_http_requests_total") $2 = "X"
    print }' | sort
