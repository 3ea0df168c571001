#!/usr/bin/env bash
# Conditional appends, in one run (docs/api.md "Event sourcing"):
#
#   spillway-bin     single-event appends expecting the version, from C
#                    connections over the binary protocol (PRODUCE, flag
#                    VERSIONED), to random aggregates of N, at ack=fsync
#                    (bench/es_bench.c); each connection keeps I appends in
#                    flight (I different aggregates: the binary protocol is
#                    pipelined, and appends in flight share the group
#                    commit), and once with I = 1 (one at a time: C appends
#                    per fsync round). Each row says its inflight=. The
#                    client runs beside the server, so it is frugal: the
#                    appends that one read of answers starts go out in one
#                    send.
#   spillway-http    the same over HTTP (keep-alive, Spillway-Expected-Version;
#                    I requests pipelined per connection, answered in order)
#   spillway-bin-unconditional   the same appends expecting "any" (no check):
#                    what the check costs (I in flight)
#   postgresql       PostgreSQL as the event-store texts build it: a table
#                    events(aggregate_id, version, data) with a unique key on
#                    (aggregate_id, version); per append BEGIN; SELECT
#                    max(version) ...; INSERT ... version + 1; COMMIT, from
#                    C pgbench clients, synchronous_commit = on (an INSERT
#                    that loses a race hits the unique key: ON CONFLICT DO
#                    NOTHING, counted by pgbench as a transaction)
#
# Prints `BENCH es system=... appends_per_s=... p99_us=... inflight=...` per
# system and the ratios spillway-bin / postgresql (target 20), spillway-http
# / postgresql (target 5), spillway-bin / spillway-bin-unconditional (0.8),
# for I in flight and for 1.
#
# --history: instead, the history proof: load 10,000,000 events of 100,000
# other keys (binary batches of 1,000) plus one aggregate of 1,000 events
# spread among them (one partition), wait until the version store indexed
# them, then time reading the aggregate's 1,000 events
# (GET /v1/streams/S/keys/K/events; the best and the median of 20 reads):
# `BENCH es history_ms=... median_ms=... events=... partition_records=...`
# (target: at most 10 ms). --history-events changes the 10,000,000.
#
# usage: bench/es.sh [--conns C (50)] [--inflight I (32)] [--aggregates N (100000)] [--seconds S (5)]
#                    [--history [--history-events E]] [--dir DIR]
# Installs what is missing (postgresql), builds build/ (SPW_BUILD_DIR
# overrides), runs both servers on 127.0.0.1 on free ports, stops them by
# PID / pg_ctl, removes its temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"
conns=50
inflight=32
aggs=100000
seconds=5
history=""
hevents=10000000
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns=${2:?}; shift 2 ;;
    --inflight) inflight=${2:?}; shift 2 ;;
    --history) history=1; shift ;;
    --history-events) hevents=${2:?}; shift 2 ;;
    --aggregates) aggs=${2:?}; shift 2 ;;
    --seconds) seconds=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/es.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$conns" "$inflight" "$aggs" "$seconds" "$hevents"; do
  [[ "$v" =~ ^[1-9][0-9]{0,8}$ ]] || { echo "bench/es.sh: not a positive number: $v" >&2; exit 2; }
done
[ "$inflight" -le 64 ] || { echo "bench/es.sh: --inflight is at most 64 (the server's max-pipelined)" >&2; exit 2; }

"$root/scripts/deps.sh" postgresql curl
bench_build spw_es_bench

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || { echo "bench/es.sh: PostgreSQL's initdb is missing" >&2; exit 1; }
runas=()
[ "$(id -u)" -eq 0 ] && runas=(/usr/sbin/runuser -u postgres --)

work="$(mktemp -d "$parent/spillway-es.XXXXXX")"
chmod 711 "$work"
pgdir="$work/pg"
pg_up=""
pid=""
cleanup() {
  trap '' PIPE INT TERM
  [ -n "$pid" ] && stop_pid "$pid"
  [ -n "$pg_up" ] && "${runas[@]}" "$pgbin/pg_ctl" -D "$pgdir" -m fast -w -t 60 stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
declare -A rate p99

# ---- Spillway ----
spw_serve "$work/spw"
hp=$http_port
bp=$bin_port
run_spw() { # NAME STREAM INFLIGHT ARGS...
  local name=$1 st=$2 inf=$3
  shift 3
  curl -sf -XPUT "http://127.0.0.1:$hp/v1/streams/$st" -d '{"versioned":true,"key":"/id","partitions":4}' >/dev/null
  local line
  line=$("$build/spw_es_bench" --http "127.0.0.1:$hp" --bin "127.0.0.1:$bp" --stream "$st" --conns "$conns" \
    --inflight "$inf" --aggregates "$aggs" --seconds "$seconds" "$@")
  echo "$line"
  rate[$name]=$(sed -n 's/.*appends_per_s=\([0-9]*\).*/\1/p' <<<"$line")
  p99[$name]=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
}

# ---- the history proof (--history) ----
if [ -n "$history" ]; then
  curl -sf -XPUT "http://127.0.0.1:$hp/v1/streams/hist" -d '{"versioned":true,"format":"bytes","partitions":1}' >/dev/null
  echo "== history: loading $hevents events of 100000 keys and 1000 of one aggregate"
  "$build/spw_es_bench" --bin "127.0.0.1:$bp" --http "127.0.0.1:$hp" --stream hist --history-load "$hevents" ||
    { cat "$work/spw/log" >&2; exit 1; }
  for _ in $(seq 6000); do # the indexer catches up (bounded: 10 minutes)
    lag=$(curl -sf "http://127.0.0.1:$hp/metrics" | sed -n 's/^spillway_es_unindexed_records{stream="hist"} \([0-9]*\)$/\1/p')
    [ "$lag" = 0 ] && break
    sleep 0.1
  done
  [ "$lag" = 0 ] || { echo "bench/es.sh: the version store did not catch up ($lag records behind)" >&2; exit 1; }
  end=$(curl -sf "http://127.0.0.1:$hp/v1/streams/hist" | sed -n 's/.*"end_offset":\([0-9]*\).*/\1/p' | head -1)
  url="http://127.0.0.1:$hp/v1/streams/hist/keys/the-aggregate/events?from_version=1&limit=1000"
  n=$(curl -sf "$url" | grep -c '"version":')
  [ "$n" = 1000 ] || { echo "bench/es.sh: the aggregate's history has $n events, not 1000" >&2; exit 1; }
  times=$(for _ in $(seq 20); do curl -sf -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n)
  best=$(head -1 <<<"$times" | awk '{printf "%.2f", $1 * 1000}')
  median=$(sed -n 10p <<<"$times" | awk '{printf "%.2f", $1 * 1000}')
  echo "BENCH es history_ms=$best median_ms=$median events=$n partition_records=$end target_ms=10"
  exit 0
fi

echo "== spillway ($conns connections, $aggs aggregates, ${seconds}s each, ack=fsync)"
run_spw spillway-bin es1 "$inflight" --protocol bin
run_spw spillway-http es2 "$inflight" --protocol http
run_spw spillway-bin-unconditional es3 "$inflight" --protocol bin --unconditional
run_spw spillway-bin/1 es4 1 --protocol bin
run_spw spillway-http/1 es5 1 --protocol http
run_spw spillway-bin-unconditional/1 es6 1 --protocol bin --unconditional
stop_pid "$pid"; pid=""

# ---- PostgreSQL ----
mkdir "$pgdir"
[ ${#runas[@]} -gt 0 ] && chown postgres:postgres "$pgdir"
"${runas[@]}" "$pgbin/initdb" -D "$pgdir" -U postgres -A trust --encoding=UTF8 --locale=C >"$work/initdb.log" 2>&1 ||
  { cat "$work/initdb.log" >&2; exit 1; }
pgport=$(free_port)
"${runas[@]}" "$pgbin/pg_ctl" -D "$pgdir" -l "$pgdir/log" -w -t 60 \
  -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=$((conns + 10))" start >/dev/null ||
  { cat "$pgdir/log" >&2; exit 1; }
pg_up=1
psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c \
  "CREATE TABLE events (aggregate_id bigint, version bigint, data jsonb, PRIMARY KEY (aggregate_id, version))"
cat >"$work/append.sql" <<SQL
\set aid random(1, $aggs)
BEGIN;
SELECT coalesce(max(version), 0) AS v FROM events WHERE aggregate_id = :aid \gset
INSERT INTO events VALUES (:aid, :v + 1, '{"t":"deposited","amount":1}') ON CONFLICT DO NOTHING;
COMMIT;
SQL
chmod 644 "$work/append.sql"
echo "== postgresql $("$pgbin/postgres" --version | awk '{print $3}') (synchronous_commit = on, $conns clients)"
(cd "$work" && "$pgbin/pgbench" -n -h 127.0.0.1 -p "$pgport" -U postgres -c "$conns" -j 2 -T "$seconds" -M prepared \
  -f "$work/append.sql" -l --log-prefix="$work/pgl" postgres >"$work/pgbench.out" 2>&1) ||
  { cat "$work/pgbench.out" >&2; exit 1; }
pgtps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench.out" | head -1)
pgp99=$(cat "$work"/pgl* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR-1)*0.99)+1]}')
rate[postgresql]=${pgtps%.*}
p99[postgresql]=$pgp99
echo "BENCH es system=postgresql appends_per_s=${rate[postgresql]} p99_us=${p99[postgresql]} conns=$conns aggregates=$aggs"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "== ratios"
for sfx in "" /1; do
  inf=$inflight
  [ "$sfx" = /1 ] && inf=1
  echo "BENCH es ratio=bin/postgresql inflight=$inf value=$(ratio "${rate[spillway-bin$sfx]}" "${rate[postgresql]}") target=20"
  echo "BENCH es ratio=http/postgresql inflight=$inf value=$(ratio "${rate[spillway-http$sfx]}" "${rate[postgresql]}") target=5"
  echo "BENCH es ratio=bin/unconditional inflight=$inf value=$(ratio "${rate[spillway-bin$sfx]}" "${rate[spillway-bin-unconditional$sfx]}") target=0.8"
done
