#!/usr/bin/env bash
# A cluster of nodes on this machine (docs/operations.md "Growing a
# deployment: adding a node"): `spillway bench --protocol bin --server
# A[,B[,C]]` through the client library's ring to 1, 2 and 3 fresh
# `spillway serve` nodes on loopback (ack=fsync, 1000 records per frame,
# 100-byte events over --keys keys). For each: events/s, errors, and the
# server CPU per acknowledged event summed over the nodes (each node's
# /proc/PID/stat over the run: user + system). On one machine the nodes
# share its cores, so events/s does not grow with nodes; the server CPU per
# event is the figure that predicts how far nodes on their own machines
# scale (N machines ~ N x cores / CPU per event).
#
# Then the keys a fourth node takes: one event for each of --keys keys
# through `spillway produce --server A,B,C,D` (HTTP, the same ring) into a
# new stream; the keys that move from 3 to 4 nodes are exactly those the
# fourth node gets (consistent hashing moves keys only to the new node,
# tests/unit/test_ring.c), so its share is the fraction moved (ideal 1/4).
#
# Prints a table and `BENCH cluster nodes=N events_per_s=... errors=...
# server_cpu_ns_per_event=...` lines, and `BENCH cluster_move from=3 to=4
# keys=K moved=M fraction=F`.
#
# usage: bench/cluster.sh [--events N] [--clients C] [--keys K] [--dir DIR]
#   --events N   events of each run (default 1000000)
#   --clients C  clients (default 8; each one producer over every node)
#   --keys K     distinct keys (default 100000)
#   --dir DIR    parent of the temporary data directories (default $TMPDIR
#                or /var/tmp: a real disk, not tmpfs)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

events=1000000
clients=8
keys=100000
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    --keys) keys=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/cluster.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$events" "$clients" "$keys"; do
  [[ "$v" =~ ^[1-9][0-9]{0,9}$ ]] || { echo "bench/cluster.sh: not a positive number: $v" >&2; exit 2; }
done
[ "$clients" -le 1024 ] || { echo "bench/cluster.sh: --clients is at most 1024" >&2; exit 2; }

"$root/scripts/deps.sh" curl
bench_build

work="$(mktemp -d "$parent/spillway-cluster.XXXXXX")"
pids=()
cleanup() {
  trap '' PIPE INT TERM
  local p
  for p in ${pids[@]+"${pids[@]}"}; do stop_pid "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts node I (fresh data): appends to pids, https, bins.
https=() bins=()
start_node() {
  spw_serve "$work/run$1/n$2"
  pids+=("$pid")
  https+=("127.0.0.1:$http_port")
  bins+=("127.0.0.1:$bin_port")
}
stop_all() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  pids=() https=() bins=()
}
join() { local IFS=,; echo "$*"; }
ticks() { local p t=0; for p in "${pids[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

echo "== cluster: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
declare -A eps errs cpu
for n in 1 2 3; do
  for i in $(seq "$n"); do start_node "$n" "$i"; done
  out="$work/run$n.out"
  echo "== $n node(s): spillway bench --protocol bin --server $(join "${bins[@]}") --events $events --clients $clients"
  t0=$(ticks)
  "$spw" bench --protocol bin --server "$(join "${bins[@]}")" --http "$(join "${https[@]}")" --stream c \
    --ack fsync --batch 1000 --events "$events" --clients "$clients" --size 100 --keys "$keys" >"$out" 2>&1 ||
    { cat "$out" >&2; echo "bench/cluster.sh: the run over $n node(s) failed" >&2; exit 1; }
  t1=$(ticks)
  sed -n '/^node /,/^total /p' "$out"
  if [ "$n" = 1 ]; then
    line=$(grep '^BENCH bench ' "$out" | tail -1)
  else
    line=$(grep '^BENCH bench_cluster ' "$out" | tail -1)
  fi
  eps[$n]=$(sed -n 's/.* events_per_s=\([0-9]*\).*/\1/p' <<<"$line")
  errs[$n]=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$line")
  cpu[$n]=$(ns_per $((t1 - t0)) "$events")
  stop_all
done

# The keys a fourth node takes.
for i in 1 2 3 4; do start_node move "$i"; done
for h in "${https[@]}"; do
  curl -fsS -o /dev/null -X PUT "http://$h/v1/streams/m" -d '{"key":"/k","partitions":1}' ||
    { echo "bench/cluster.sh: cannot create stream m on $h" >&2; exit 1; }
done
awk -v k="$keys" 'BEGIN { for (i = 0; i < k; i++) printf "{\"k\":\"user-%d\"}\n", i }' >"$work/keys.ndjson"
"$spw" produce m "$work/keys.ndjson" --server "$(join "${https[@]}")" --ack written 2>"$work/move.out" ||
  { cat "$work/move.out" >&2; echo "bench/cluster.sh: producing the keys failed" >&2; exit 1; }
moved=$(curl -fsS "http://${https[3]}/v1/streams/m" | sed -n 's/.*"end_offset":\([0-9]*\).*/\1/p')
[[ "$moved" =~ ^[0-9]+$ ]] || { echo "bench/cluster.sh: no end_offset from ${https[3]}" >&2; exit 1; }
stop_all

echo
printf '%-6s %12s %8s %22s\n' nodes events/s errors server_cpu_ns/event
for n in 1 2 3; do
  printf '%-6s %12s %8s %22s\n' "$n" "${eps[$n]}" "${errs[$n]}" "${cpu[$n]}"
  echo "BENCH cluster nodes=$n events_per_s=${eps[$n]} errors=${errs[$n]} server_cpu_ns_per_event=${cpu[$n]}"
done
frac=$(awk -v m="$moved" -v k="$keys" 'BEGIN { printf "%.4f", m / k }')
echo "adding a 4th node to 3: $moved of $keys keys move to it ($frac; ideal 0.25)"
echo "BENCH cluster_move from=3 to=4 keys=$keys moved=$moved fraction=$frac"
