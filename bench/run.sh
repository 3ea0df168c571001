#!/usr/bin/env bash
# Benchmarks. With no argument, lists them; `bench/run.sh NAME [options]`
# installs what is missing (scripts/deps.sh), builds (build/, release with
# debug info, as scripts/test.sh) and runs one. Works from any directory.
#
#   bench/run.sh peers [bench/peers.sh options]
#       Spillway (binary protocol, HTTP NDJSON, single-event HTTP) against
#       Redis Streams XADD with appendonly, in one run; see bench/peers.sh.
#
#   bench/run.sh log [--seconds S] [--dir DIR] [spw_log_bench options]
#       the durable partition log (src/log) against this machine's raw
#       write+fdatasync limits; see bench/log_bench.c. Data goes to a fresh
#       directory under DIR (default $TMPDIR or /var/tmp, on a real disk —
#       not tmpfs), removed at the end.
#
#   bench/run.sh json [--events N] [--reps R]
#       our strict JSON scanner (src/core/json.c) against jansson on the
#       server's per-event job (validate, extract /device_id and /ts), on
#       ~100 B, ~1 KiB and ~10 KiB events, valid and invalid; installs
#       libjansson-dev for this benchmark only; see bench/json_bench.c.
#
#   bench/run.sh burst [bench/burst.sh options]
#       admission control under a burst: the server's capacity at
#       ack=fsync, then open-loop offered load at 1x..5x of it; accepted and
#       rejected events/s by reason and p99 latency per step, and a PNG of
#       them (gnuplot); see bench/burst.sh.
#
#   bench/run.sh es [bench/es.sh options]
#       conditional appends (expected version) from 50 connections over
#       100,000 aggregates at ack=fsync, 32 in flight per connection and 1,
#       binary and HTTP, and the same workload on PostgreSQL (SELECT
#       max(version) + INSERT per append); with --history, the time to read
#       one aggregate's 1,000 events among 10 M; see bench/es.sh.
#   bench/run.sh views [--events N] [--keys K] [--size B] [--span-ms MS] [--lag-seconds S]
#       views (src/view): RocksDB's own db_bench fillrandom and mergerandom
#       for N keys' writes of B-byte values, then the apply rate of a latest,
#       an aggregate (three windows) and a sum view over a log of N events
#       of B bytes over K keys, with key and series read latencies while
#       applying; then how far a view lags a producer at half the server's
#       ack=fsync capacity; see bench/views.sh and bench/view_bench.c.
#
#   bench/run.sh pg [bench/pg.sh options]
#       loading one fresh PostgreSQL (fsync on): single-row INSERTs,
#       1000-row INSERTs, psql COPY and the postgres sink end to end
#       (produce over the binary protocol until the rows are committed),
#       rows/s and the ratios; see bench/pg.sh.
#
#   bench/run.sh cost [bench/cost.sh options]
#       the server's CPU time, system calls and context switches per
#       durable event for binary, HTTP NDJSON, single-event HTTP and ack=none,
#       and the first-run penalty; see bench/cost.sh.
#
#   bench/run.sh replicated [bench/replicated.sh options]
#       ack=replicated against a PostgreSQL primary with a synchronous
#       standby, beside ack=fsync, psql COPY and PostgreSQL's own commit
#       round trip; see bench/replicated.sh.
#
#   bench/run.sh kafka [--events N] [--keys K] [--members LIST]
#       the Kafka listener with librdkafka (batches of 1000, linger.ms 5,
#       acks=all, 100-byte values) beside `spillway bench --protocol bin` in
#       one run, and consumer groups of 1, 2 and 3 members reading them
#       back; see bench/kafka.sh.
#
#   bench/run.sh reshard [--rows N] [--rate R] [--batch B]
#       a postgres sink's third shard added online under --rows rows (default
#       1,000,000): the time to phase done and copied rows/s; see
#       bench/reshard.sh.
#
#   bench/run.sh cluster [bench/cluster.sh options]
#       1, 2 and 3 nodes on this machine through the client library's ring
#       (spillway bench --protocol bin --server A,B,C, ack=fsync): events/s
#       and the server CPU per event summed over the nodes, then the
#       fraction of keys a fourth node takes; see bench/cluster.sh.
#
# SPW_BUILD_DIR overrides the build directory (default build/ at the repo root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

list() {
  cat <<'TXT'
benchmarks (bench/run.sh NAME [options]):
  log    durable partition log: raw disk limits, then threads {1,4,16} x records
         per append {1,100,1000} x ack {none,written,fsync}; options:
         --seconds S (default 3), --dir DIR, --partitions N, --threads, --batches,
         --acks (bench/run.sh log --help)
  peers  the server at ack=fsync (binary, HTTP NDJSON, single-event HTTP) beside
         Redis Streams XADD (appendfsync always / everysec, -P 64 and -P 1);
         options: --events N, --single-events N, --clients C, --partitions P,
         --tls (also spillway-bin-tls and spillway-http-tls, beside plaintext)
  json   JSON scanner (spw_json_scan) against jansson (json_loadb + json_object_get)
         on ~100 B / ~1 KiB / ~10 KiB events, valid and invalid; options:
         --events N (default 100000), --reps R (default 5, median reported)
  burst  admission control: capacity (closed loop, ack=fsync), then open-loop
         offered load stepping 1x..5x of it with priorities 0..3; accepted and
         rejected/s by reason (shed, backpressure, rate limit, other), p50/p99
         of accepted requests per step, and a PNG plot (gnuplot) in a results
         directory; fsync slowed by the test-only fault hook by default so the
         capacity is small and steady; options: --step-seconds S, --steps LIST,
         --fsync-delay-us U (0: real disk), ... (bench/run.sh burst --help)
  es     conditional appends (expected version, ack=fsync) over the binary protocol
         and HTTP, unconditional for comparison, and PostgreSQL's SELECT max +
         INSERT per append (pgbench); options: --conns C (50), --aggregates N
         (100000), --seconds S (5)
  views  views: db_bench fillrandom/mergerandom (WAL off) beside the apply rate of
         latest, aggregate (1s,1m,1h) and sum views over a log of N events, with
         key/series read p50/p99 while applying, then a view's lag behind a
         producer at half the ack=fsync capacity (lag_ms_p99); options: --events N
         (default 2000000), --keys K (default 100000), --size B (default 100),
         --span-ms MS (event times' spread, default 3600000), --lag-seconds S (10)
  pg     one fresh PostgreSQL (fsync on), the same rows into the same table by
         single-row INSERT, 1000-row INSERT, psql \copy and the postgres sink end
         to end (binary produce until committed); rows/s, ratios to INSERT and
         sink/copy (target 0.8); options: --rows N (default 1000000),
         --insert-rows N, --sink-batch N, ... (bench/run.sh pg --help)
  kafka  the Kafka listener: librdkafka producer (batches of 1000, linger.ms 5,
         acks=all, 100 B values, 50 partitions) beside spillway bench --protocol bin,
         ratio (target 0.70), then consumer groups of 1, 2, 3 members reading them;
         options: --events N, --keys K, --members LIST
  cost   the server's CPU ns, syscalls and context switches per event: binary and
         HTTP NDJSON (1000 per request), single-event HTTP, ack=none, and the
         first-run penalty (HTTP NDJSON x3 on a fresh server); options: --events N,
         --single-events N, --clients C
  replicated
         ack=replicated with a PostgreSQL primary + synchronous standby: the
         commit round trip (pgbench), psql \copy, then binary (1000/frame) and
         single-event HTTP at ack=fsync and ack=replicated; targets: batched
         replicated >= 0.8 x COPY, single-event p99 <= 3 x the round trip's;
         options: --seconds S, --rows N, --clients C (bench/run.sh replicated --help)
  reshard
         a postgres sink's third shard added online (three databases on one
         PostgreSQL) under --rows rows (default 1000000): time to phase done,
         copied rows/s, server CPU; options: --rows N, --rate R, --batch B
  cluster
         1, 2 and 3 nodes on this machine, keys routed by the client library's
         ring (bench --protocol bin --server A,B,C, ack=fsync): events/s, errors,
         server CPU ns per event summed over the nodes; then the fraction of
         keys a 4th node takes (ideal 1/4); options: --events N, --clients C,
         --keys K
TXT
}

if [ $# -eq 0 ]; then
  list
  exit 0
fi

name=$1
shift
case "$name" in
  log) target=spw_log_bench ;;
  json) target=spw_json_bench; extra_deps=(libjansson-dev) ;;
  peers) exec "$root/bench/peers.sh" "$@" ;;
  burst) exec "$root/bench/burst.sh" "$@" ;;
  pg) exec "$root/bench/pg.sh" "$@" ;;
  kafka) exec "$root/bench/kafka.sh" "$@" ;;
  es) exec "$root/bench/es.sh" "$@" ;;
  views) exec "$root/bench/views.sh" "$@" ;;
  replicated) exec "$root/bench/replicated.sh" "$@" ;;
  reshard) exec "$root/bench/reshard.sh" "$@" ;;
  cost) exec "$root/bench/cost.sh" "$@" ;;
  cluster) exec "$root/bench/cluster.sh" "$@" ;;
  -h|--help|help|list) list; exit 0 ;;
  *) echo "bench/run.sh: unknown benchmark '$name'" >&2; list >&2; exit 2 ;;
esac

build="${SPW_BUILD_DIR:-$root/build}"
"$root/scripts/deps.sh" ${extra_deps[@]+"${extra_deps[@]}"}
echo "== build ($build, RelWithDebInfo, target $target)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "$target" >/dev/null

echo "== $name benchmark"
exec "$build/$target" "$@"
