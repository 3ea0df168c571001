#!/usr/bin/env bash
# The main job: installs what is missing (Debian packages), builds, starts
# `spillway serve` on its embedded defaults at 127.0.0.1:7700 (data in
# ./data), sends it a short demo load with `spillway bench` over HTTP and
# prints what it measured, then keeps serving until Ctrl-C (which stops the
# server cleanly: finish requests, flush, fsync).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "== build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target spillway >/dev/null

mkdir -p data
echo "== starting spillway serve (http://127.0.0.1:7700, data in ./data)"
build/spillway serve &   # embedded defaults: --data ./data --listen 127.0.0.1:7700
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; exit 0; }
trap stop INT TERM

# bench waits up to 10 s for the server to accept connections.
echo "== demo 1: 1,000,000 events (16 B keys, 100 B values), binary protocol, 1000 per frame, 8 producers, ack=fsync"
build/spillway bench --protocol bin --stream demo --events 1000000 --batch 1000 --clients 8 --ack fsync || true
echo "== demo 2: 1,000,000 events of 100 B JSON over HTTP, 1000 per NDJSON request, 8 connections, ack=fsync"
build/spillway bench --stream demo --events 1000000 --batch 1000 --clients 8 --ack fsync || true
echo "== demo 3: 20,000 single-event HTTP requests from 50 keep-alive connections, ack=fsync"
build/spillway bench --stream demo --events 20000 --batch 1 --clients 50 --ack fsync || true
if ! kill -0 "$pid" 2>/dev/null; then
  echo "spillway serve exited (is port 7700 taken?)" >&2
  wait "$pid" || exit 1
  exit 1
fi
cat <<'TXT'

== serving on http://127.0.0.1:7700 (binary protocol on 7701) until Ctrl-C. Try:
  build/spillway stream show demo
  echo '{"k":"a","n":1}' | build/spillway produce demo
  build/spillway consume demo --max 3
  curl -s localhost:7700/v1/streams/demo
  curl -s -X POST localhost:7700/v1/streams/demo/events -H 'Content-Type: application/json' -d '{"k":"a","n":1}'
  curl -s 'localhost:7700/v1/streams/demo/events?partition=0&offset=0&limit=3'
  curl -s localhost:7700/metrics | grep spillway_
TXT
wait "$pid"
