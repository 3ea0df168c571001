#!/usr/bin/env bash
# Resharding a postgres sink (docs/api.md "Resharding a postgres sink"):
# the time and throughput cost of adding a third shard under a sink that
# loaded --rows rows (default 1,000,000) into two. Three databases on one
# fresh PostgreSQL cluster (fsync on) stand for three shards: the sink
# treats each connection string as a shard of its own.
#   1. `spillway bench` loads --rows events (1000 keys, 100 B, 4 partitions)
#      through the 2-shard sink; waited for on the progress rows.
#   2. PUT with the third shard appended (reshard_delete_moved, and
#      reshard_rows_per_s --rate, default 10000000: not the limit), and the
#      time to phase done: dual_write → backfill → verify → cutover (moved
#      rows deleted from the old shards) → done.
# Prints rows copied, seconds, copied rows/s, the rows deleted at cutover,
# and the server's CPU seconds during the reshard.
#
#   bench/run.sh reshard [--rows N] [--rate R] [--batch B]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/bench/lib.sh"
rows=1000000 rate=10000000 rbatch=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --batch) rbatch=$2; shift 2 ;;
    -h|--help) bench_usage; exit 0 ;;
    *) echo "bench/reshard.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for v in "$rows" "$rate" "$rbatch"; do
  [[ "$v" =~ ^[1-9][0-9]{0,8}$ ]] || { echo "bench/reshard.sh: not a positive number: $v" >&2; exit 2; }
done

"$root/scripts/deps.sh" curl
bench_build
pg_find

work="$(mktemp -d "${TMPDIR:-/var/tmp}/spillway-reshard.XXXXXX")"
chmod 711 "$work"
pid="" bpid=""
cleanup() {
  trap '' PIPE INT TERM
  [ -n "$bpid" ] && stop_pid "$bpid"
  [ -n "$pid" ] && stop_pid "$pid"
  pg_stop_all
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_init "$work/pg"
pgport=$(free_port)
pg_start "$work/pg" "$pgport"
sql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres -d "$1" -Atc "$2"; }
ci=()
for i in 0 1 2; do
  sql postgres "CREATE DATABASE s$i"
  sql "s$i" "CREATE TABLE ev (k text, p integer NOT NULL, o bigint NOT NULL, v jsonb); CREATE INDEX ON ev (p, o)"
  ci+=("host=127.0.0.1 port=$pgport user=postgres dbname=s$i")
done

spw_serve "$work/spw"
url="http://127.0.0.1:$http_port"
put /v1/streams/ev '{"partitions":4}'
sink() { # NSHARDS EXTRA: the sink's definition
  local sh="" i
  for ((i = 0; i < $1; i++)); do sh+="${sh:+,}\"${ci[$i]}\""; done
  echo "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[$sh],\"table\":\"ev\",
    \"columns\":{\"k\":\"\$key\",\"p\":\"\$partition\",\"o\":\"\$offset\",\"v\":\"\$value\"}$2}}"
}
put /v1/sinks/ev "$(sink 2 "")"

echo "== loading $rows rows into 2 shards"
"$spw" bench --protocol bin --server "127.0.0.1:$bin_port" --http "127.0.0.1:$http_port" --stream ev \
  --partitions 4 --events "$rows" --clients 8 --batch 1000 --size 100 --keys 1000 --ack fsync >"$work/bench.out" 2>&1 ||
  { cat "$work/bench.out" >&2; exit 1; }
loaded() { echo $(( $(sql s0 "SELECT count(*) FROM ev") + $(sql s1 "SELECT count(*) FROM ev") )); }
for i in $(seq 6000); do [ "$(loaded)" -ge "$rows" ] && break; sleep 0.2; done
[ "$(loaded)" -eq "$rows" ] || { echo "bench/reshard.sh: the sink did not load $rows rows" >&2; exit 1; }

echo "== adding a third shard (reshard_rows_per_s $rate, reshard_batch_rows $rbatch, delete_moved)"
c0=$(cpu_ticks)
t0=$(date +%s.%N)
code=$(curl -s -o "$work/put.out" -w '%{http_code}' -X PUT --data-binary \
  "$(sink 3 ",\"reshard_rows_per_s\":$rate,\"reshard_batch_rows\":$rbatch,\"reshard_delete_moved\":true")" "$url/v1/sinks/ev")
[ "$code" = 202 ] || { cat "$work/put.out" >&2; echo "bench/reshard.sh: PUT answered $code" >&2; exit 1; }
phase=""
for i in $(seq 36000); do
  st=$(curl -s "$url/v1/sinks/ev")
  phase=$(sed -n 's/.*"reshard":{"phase":"\([a-z_]*\)".*/\1/p' <<<"$st")
  [ "$phase" = done ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
c1=$(cpu_ticks)
[ "$phase" = done ] || { echo "bench/reshard.sh: the reshard did not finish: $st" >&2; exit 1; }
copied=$(sql s2 "SELECT count(*) FROM ev")
deleted=$(sed -n 's/.*"deleted":\([0-9]*\).*/\1/p' <<<"$st")
total=$(( $(loaded) + copied ))
[ "$total" -eq "$rows" ] || { echo "bench/reshard.sh: $total rows in the final placement, want $rows" >&2; exit 1; }
hz=$(getconf CLK_TCK)
awk -v r="$rows" -v c="$copied" -v d="$deleted" -v t0="$t0" -v t1="$t1" -v cpu=$((c1 - c0)) -v hz="$hz" 'BEGIN {
  s = t1 - t0
  printf "reshard of %d rows: %d copied to the new shard (%.1f%%), %d deleted from the old, %.2f s, %.0f copied rows/s, server CPU %.2f s\n",
    r, c, 100 * c / r, d, s, c / s, cpu / hz }'
echo "BENCH reshard rows=$rows copied=$copied seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"
