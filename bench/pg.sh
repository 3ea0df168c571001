#!/usr/bin/env bash
# Loading rows into PostgreSQL, in one run against the same fresh server:
#
#   insert        single-row INSERTs, each its own transaction (autocommit),
#                 one psql session: the classic 1x baseline. It commits (and
#                 so fsyncs the WAL) once per row, so it runs on fewer rows
#                 (--insert-rows) and its rate is rows/s over those.
#   insert-1000   multi-value INSERTs of 1000 rows each, autocommit, one
#                 psql session
#   copy          psql `\copy ... FROM 'file'` of a prepared text file: one
#                 COPY FROM STDIN, one transaction, sent on one psql session
#                 kept open for the whole bench (as the sink keeps its
#                 connections)
#   sink          Spillway end to end: a server with a postgres sink into
#                 the same table; N events produced over the binary protocol
#                 (`spillway bench --protocol bin`, ack=fsync), timed from
#                 just before the first produce until all N are committed
#                 in PostgreSQL (polled every 50 ms; count(*) = N checked).
#                 One sink, made before the first run and kept, as a sink
#                 runs in production: its connections' backends have warmed
#                 up (below)
#   sink-first    not a target: the first --warmup loads of N events of
#                 that sink, the first of them timed as the sink runs are:
#                 a new PostgreSQL backend faults in each page of shared
#                 memory the first time it touches it, and a sink writing
#                 one transaction after another touches every buffer of
#                 shared_buffers (each COPY takes its own ring of buffers),
#                 where one COPY keeps reusing its 16 MiB ring
#                 (docs/performance.md "The postgres sink: PostgreSQL's
#                 warm-up")
#   sink-drain    not a target: a new sink created after N events were
#                 produced into another stream, timed from its creation until
#                 all are committed: the sink alone, without producing on the
#                 same cores at the same time (its backends new, as in
#                 sink-first)
#
# Every method loads the same rows into the same table
#   bench (id bigint, k text, v jsonb)
# truncated (and CHECKPOINTed) before each method: k is the 16-byte key
# `key-NNNNNNNNNNNN` over 1000 keys and v the 100-byte JSON object that
# `spillway bench --size 100` sends ({"c":"0000","s":"SEQ","v":"xx..."}).
# The sink maps id <- $id (Snowflake id), k <- $key, v <- $value.
#
# Prints a table of rows/s with the ratio of each to single-row INSERT and
# of the sink to COPY, `BENCH pg method=...` lines (for each sink run also
# `BENCH pg method=sink sink_transactions=T`: its COMMITs, by xmin), per
# copy and sink run the CPU each row cost, steadier than the rates:
#   BENCH pg method=copy.R|sink-first|sink-warmup.W|sink.R|sink-drain server_cpu_ns_per_row=S pg_cpu_ns_per_row=P
# (S: Spillway's server, its ingest and the sink, "-" for copy; P: every
# process of the PostgreSQL server), and
#   BENCH pg ratio=sink/copy value=X target=0.9 result=PASS|MISS
#
# usage: bench/pg.sh [options]
#   --rows N          rows of insert-1000, copy and the sink runs (default
#                     1000000: at 200000 COPY takes 0.3 s and the ratios move
#                     by 10% from run to run)
#   --insert-rows N   rows of the single-row INSERT run (default 10000)
#   --clients C       `spillway bench` producers (default 4)
#   --partitions P    partitions of Spillway's stream (default 4)
#   --connections K   the sink's options.connections: connections to
#                     PostgreSQL, each loading its own partitions (default 2)
#   --sink-batch N    the sink's batch.max_events (default: none given, so
#                     the postgres sink's own default, 50000 events or 8 MiB)
#   --warmup W        loads of N events into the sink before its timed runs
#                     (default 2: with PostgreSQL's default 128 MiB of
#                     shared_buffers, about what it takes two backends to
#                     have touched every buffer); the first is timed and
#                     reported as sink-first
#   --repeat R        copy and sink are run R times each, alternately
#                     (copy, sink, copy, sink, ...), and the median of each
#                     is reported and compared (default 3: this machine's
#                     speed drifts by 30% over a minute, and alternating
#                     gives both the same drift)
#   --dir DIR         parent of the temporary directory (default $TMPDIR or
#                     /var/tmp: a real disk, not tmpfs)
#
# PostgreSQL runs with its defaults (fsync on, synchronous_commit on), on
# 127.0.0.1 on a free port, its socket in the temporary directory, as the
# postgres user when run as root (runuser), and is stopped by pg_ctl at
# exit; Spillway runs on 127.0.0.1 on free ports and is stopped by its PID.
# Installs what is missing (scripts/deps.sh: postgresql, libpq-dev, curl),
# builds build/spillway (RelWithDebInfo; SPW_BUILD_DIR overrides the
# directory). Every wait is bounded; the temporary directory is removed at
# exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

rows=1000000
insert_rows=10000
clients=4
partitions=4
connections=2
sink_batch=
repeat=3
warmup=2
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows=${2:?}; shift 2 ;;
    --insert-rows) insert_rows=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    --partitions) partitions=${2:?}; shift 2 ;;
    --connections) connections=${2:?}; shift 2 ;;
    --sink-batch) sink_batch=${2:?}; shift 2 ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --warmup) warmup=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/pg.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bad() { echo "bench/pg.sh: $*" >&2; exit 2; }
for v in "$rows" "$insert_rows" "$clients" "$partitions" "$connections" ${sink_batch:+"$sink_batch"} "$repeat" "$warmup"; do
  [[ "$v" =~ ^[1-9][0-9]{0,9}$ ]] || bad "not a positive number: $v"
done
[ "$rows" -le 100000000 ] || bad "--rows is at most 100000000"
[ "$insert_rows" -le "$rows" ] || bad "--insert-rows is at most --rows ($rows)"
[ "$clients" -le 1024 ] || bad "--clients is at most 1024"
[ "$partitions" -le 1024 ] || bad "--partitions is at most 1024"
[ "$connections" -le 16 ] || bad "--connections is at most 16"
[ -z "$sink_batch" ] || [ "$sink_batch" -le 1000000 ] || bad "--sink-batch is at most 1000000"
[ "$repeat" -le 20 ] || bad "--repeat is at most 20"
[ "$warmup" -le 20 ] || bad "--warmup is at most 20"

"$root/scripts/deps.sh" curl
bench_build

pg_find

work="$(mktemp -d "$parent/spillway-pg.XXXXXX")"
chmod 711 "$work"      # the postgres user reaches its directory inside
pgdir="$work/pg"
pid=""
bpid=""
cleanup() {
  # finish even if the output is a closed pipe (| head) or a second signal comes
  trap '' PIPE INT TERM
  [ -n "${POLL_PID:-}" ] && stop_pid "$POLL_PID"
  [ -n "$bpid" ] && stop_pid "$bpid"
  [ -n "$pid" ] && stop_pid "$pid"
  pg_stop_all
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# ---- PostgreSQL ----

pg_init "$pgdir"
pgport=$(free_port)
pg_start "$pgdir" "$pgport"
psqlc=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres -d postgres)
sql() { "${psqlc[@]}" -Atc "$1"; }
sql "CREATE TABLE bench (id bigint, k text, v jsonb)"
# One psql session kept for polling while the sink runs and for the copy
# runs (a psql started every 50 ms, and the backend forked for it, would
# take CPU from the run).
coproc POLL { psql -X -q -At -v VERBOSITY=terse -h 127.0.0.1 -p "$pgport" -U postgres -d postgres 2>&1; }
poll() { # SQL [SECONDS]: its one-line answer from the kept session (10 s at most unless SECONDS)
  local ans
  echo "$1;" >&"${POLL[1]}"
  read -r -t "${2:-10}" ans <&"${POLL[0]}" || { echo "bench/pg.sh: no answer from psql to: $1" >&2; exit 1; }
  echo "$ans"
}
pgver=$(sql "SHOW server_version" | cut -d" " -f1)
pgfsync=$(sql "SHOW fsync")
pgsync=$(sql "SHOW synchronous_commit")

# ---- the rows ----

# Row i: id i, key key-%012u of (i * 2654435761) % 1000, value the 100-byte
# JSON object of `spillway bench --size 100` with SEQ i.
echo "== preparing $rows rows (COPY text file, INSERT scripts)"
pad=$(printf 'x%.0s' $(seq 64))
gen() { # MODE N: rows 0..N-1 as tsv | insert | multi
  awk -v mode="$1" -v n="$2" -v pad="$pad" 'BEGIN {
    for (i = 0; i < n; i++) {
      k = sprintf("key-%012d", (i * 2654435761) % 1000)
      v = sprintf("{\"c\":\"%04d\",\"s\":\"%010d\",\"v\":\"%s\"}", i % 4, i, pad)
      if (mode == "tsv") print i "\t" k "\t" v
      else if (mode == "insert") print "INSERT INTO bench VALUES (" i ",'\''" k "'\'','\''" v "'\'');"
      else {
        sep = (i % 1000 == 0) ? "INSERT INTO bench VALUES\n" : ",\n"
        end = (i % 1000 == 999 || i == n - 1) ? ";" : ""
        printf "%s(%d,'\''%s'\'','\''%s'\'')%s", sep, i, k, v, end
        if (end != "") printf "\n"
      }
    }
  }'
}
gen tsv "$rows" >"$work/rows.tsv"
gen insert "$insert_rows" >"$work/insert.sql"
gen multi "$rows" >"$work/multi.sql"
vlen=$(head -1 "$work/rows.tsv" | cut -f3 | tr -d '\n' | wc -c)
[ "$vlen" -eq 100 ] || { echo "bench/pg.sh: internal: value of $vlen bytes, not 100" >&2; exit 1; }

now() { date +%s.%N; }
declare -A rps secs nrows
count() { sql "SELECT count(*) FROM bench"; }
fresh() { sql "TRUNCATE bench"; sql "CHECKPOINT"; }
record() { # METHOD ROWS T0 T1
  local m=$1 n=$2
  secs[$m]=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.3f", b - a }')
  rps[$m]=$(awk -v n="$n" -v s="${secs[$m]}" 'BEGIN { printf "%d", (s > 0 ? n / s + 0.5 : 0) }')
  nrows[$m]=$n
  local got
  got=$(count)
  [ "$got" -eq "$n" ] || { echo "bench/pg.sh: $m: $got rows in the table, not $n" >&2; exit 1; }
  printf '   %s: %s rows in %s s = %s rows/s\n' "$m" "$n" "${secs[$m]}" "${rps[$m]}"
  case $m in
    sink*) # the sink's transactions: rows written together share their xmin
      local tx
      tx=$(sql "SELECT count(DISTINCT xmin::text) FROM bench")
      printf '   %s: %s transactions, %s rows per transaction\n' "$m" "$tx" \
        "$(awk -v n="$n" -v t="$tx" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }')"
      echo "BENCH pg method=$m sink_transactions=$tx" ;;
  esac
}

echo "== pg: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "   PostgreSQL $pgver on 127.0.0.1:$pgport, fsync=$pgfsync synchronous_commit=$pgsync, data in $pgdir"

# ---- 1. single-row INSERTs ----

fresh
echo "== insert: $insert_rows single-row INSERTs, autocommit, one psql session"
t0=$(now)
"${psqlc[@]}" -f "$work/insert.sql" >/dev/null
t1=$(now)
record insert "$insert_rows" "$t0" "$t1"

# ---- 2. 1000-row INSERTs ----

fresh
echo "== insert-1000: $rows rows as INSERTs of 1000 rows each, autocommit, one psql session"
t0=$(now)
"${psqlc[@]}" -f "$work/multi.sql" >/dev/null
t1=$(now)
record insert-1000 "$rows" "$t0" "$t1"

# ---- 3. COPY and 4. the Spillway sink, alternately ----

spw_serve "$work/spw"
url="http://127.0.0.1:$http_port"
batch_json=""
[ -n "$sink_batch" ] && batch_json="\"batch\":{\"max_events\":$sink_batch},"
put_sink() { # NAME: a postgres sink from stream NAME into bench
  put "/v1/sinks/$1" "{\"stream\":\"$1\",\"kind\":\"postgres\",$batch_json
    \"options\":{\"connections\":$connections,\"shards\":[\"host=127.0.0.1 port=$pgport user=postgres dbname=postgres\"],\"table\":\"bench\",
    \"columns\":{\"id\":\"\$id\",\"k\":\"\$key\",\"v\":\"\$value\"}}}"
}
produce() { # STREAM: `spillway bench` of $rows events into STREAM, in the background (sets bpid)
  "$spw" bench --protocol bin --server "127.0.0.1:$bin_port" --http "127.0.0.1:$http_port" --stream "$1" \
    --partitions "$partitions" --events "$rows" --clients "$clients" --batch 1000 --size 100 --keys 1000 \
    --ack fsync >"$work/spw/bench-$1.out" 2>&1 &
  bpid=$!
}
produced() { # STREAM: waits for the `spillway bench` started by produce; sets produce_eps
  local rc=0
  wait "$bpid" || rc=$?
  bpid=""
  [ "$rc" -eq 0 ] ||
    { cat "$work/spw/bench-$1.out" >&2; echo "bench/pg.sh: spillway bench failed (exit $rc)" >&2; exit 1; }
  produce_eps=$(grep '^BENCH bench ' "$work/spw/bench-$1.out" | tail -1 | sed -n 's/.* events_per_s=\([0-9]*\).*/\1/p')
}
# Waits (bounded) until the sink NAME has committed all $rows rows (the sum
# of its progress rows' next offsets reached WANT); sets
# t1 and, if the producer was still running, produce_end (seconds since
# t0) and at_produce_end (rows committed then). Polled on the sink's
# progress rows (committed in the same transaction as the rows they count;
# the stream's offsets start at 0), cheaper than count(*) on a growing
# table; count(*) is checked by record.
drained() { # SINK WANT: WANT is the sum of its progress rows' next offsets when done
  local got deadline table=""
  deadline=$(awk -v t="$t0" -v n="$rows" 'BEGIN { printf "%d", t + 120 + n / 1000 }')
  while :; do
    got=0
    # the sink creates its progress table when it first connects
    [ -n "$table" ] ||
      table=$(poll "SELECT 1 WHERE to_regclass('spillway_sink_progress') IS NOT NULL UNION ALL SELECT NULL LIMIT 1")
    if [ -n "$table" ]; then
      got=$(poll "SELECT coalesce(sum(next_offset), 0) FROM spillway_sink_progress WHERE sink = '$1'")
      [[ "$got" =~ ^[0-9]+$ ]] || { echo "bench/pg.sh: polling the sink's progress: $got" >&2; exit 1; }
    fi
    [ "$got" -ge "$2" ] && break
    if [ -n "$bpid" ] && [ -z "$produce_end" ] && ! kill -0 "$bpid" 2>/dev/null; then
      produce_end=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
      at_produce_end=$((got - $2 + rows))
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      curl -s -m 10 "$url/v1/sinks/$1" >&2 || true
      echo >&2
      echo "bench/pg.sh: sink $1: its offsets reached $got of $2 in PostgreSQL after $((deadline - ${t0%.*})) s" >&2
      exit 1
    fi
    sleep 0.05
  done
  t1=$(now)
}

# METHOD SERVER_TICKS PG_TICKS: CPU per row of Spillway's server (its
# ingest and the sink; empty for copy) and of PostgreSQL (every process
# of its server), printed and as a BENCH line: steadier than the rates.
cpu_per() {
  local srv="-" pgc
  [ -n "$2" ] && srv=$(ns_per "$2" "$rows")
  pgc=$(ns_per "$3" "$rows")
  echo "   $1: CPU per row: Spillway's server $srv ns, PostgreSQL $pgc ns"
  echo "BENCH pg method=$1 server_cpu_ns_per_row=$srv pg_cpu_ns_per_row=$pgc"
}
copy_run() { # R
  fresh
  echo "== copy ($1/$repeat): psql \\copy bench FROM '$work/rows.tsv' ($rows rows, one COPY FROM STDIN) on the kept session"
  local g0 g1 ans
  g0=$(pg_ticks "$pgdir")
  t0=$(now)
  echo "\\copy bench (id, k, v) FROM '$work/rows.tsv'" >&"${POLL[1]}"
  ans=$(poll "SELECT 'copied'" $((120 + rows / 1000)))
  t1=$(now)
  g1=$(pg_ticks "$pgdir")
  [ "$ans" = copied ] || { echo "bench/pg.sh: copy: $ans" >&2; exit 1; }
  record "copy.$1" "$rows" "$t0" "$t1"
  cpu_per "copy.$1" "" "$((g1 - g0))"
}
# The one sink of the sink runs, on stream pg, made before the first.
put "/v1/streams/pg" "{\"partitions\":$partitions}"
put_sink pg
loads=0
sink_run() { # METHOD: a load of $rows events through the kept sink, timed and recorded as METHOD
  fresh
  loads=$((loads + 1))
  echo "== $1: spillway bench --protocol bin --events $rows --clients $clients --batch 1000" \
    "--size 100 --keys 1000 --ack fsync into a $partitions-partition stream; postgres sink" \
    "(batch.max_events ${sink_batch:-default}, connections $connections, load $loads of the sink) into bench;" \
    "timed until all $rows are committed"
  produce_end=""
  at_produce_end=""
  local c0 c1 g0 g1
  c0=$(cpu_ticks)
  g0=$(pg_ticks "$pgdir")
  t0=$(now)
  produce pg
  drained pg $((loads * rows))
  c1=$(cpu_ticks)
  g1=$(pg_ticks "$pgdir")
  produced pg
  record "$1" "$rows" "$t0" "$t1"
  cpu_per "$1" "$((c1 - c0))" "$((g1 - g0))"
  if [ -n "$produce_end" ]; then
    echo "   produce ended after $produce_end s (${produce_eps:-?} events/s acked at fsync); $at_produce_end rows" \
      "were committed in PostgreSQL then"
  else
    echo "   produce: ${produce_eps:-?} events/s acked at fsync (it ended after the last row was committed)"
  fi
}
median() { # METHOD: sets rps/secs/nrows[METHOD] to the run of median rate among METHOD.1..R; runs[METHOD] lists all
  local m=$1 r pick list=""
  for r in $(seq "$repeat"); do list="$list ${rps[$m.$r]}:$r"; done
  pick=$(echo $list | tr ' ' '\n' | sort -t: -k1,1n | sed -n "$(((repeat + 1) / 2))p" | cut -d: -f2)
  rps[$m]=${rps[$m.$pick]}
  secs[$m]=${secs[$m.$pick]}
  nrows[$m]=${nrows[$m.$pick]}
  runs[$m]=$(for r in $(seq "$repeat"); do printf '%s ' "${rps[$m.$r]}"; done)
}
declare -A runs
sink_run sink-first
for r in $(seq 2 "$warmup"); do sink_run "sink-warmup.$r"; done
for r in $(seq "$repeat"); do
  copy_run "$r"
  sink_run "sink.$r"
done
median copy
median sink

# Not a target: the same sink draining N events already stored (sink
# created after the produce), to tell the sink's own rate from the
# contention of producing on the same 2 cores.
fresh
put /v1/streams/pg-drain "{\"partitions\":$partitions}"
echo "== sink-drain: $rows events produced first into stream pg-drain, then a new postgres sink created on it;" \
  "timed from its PUT until all are committed"
produce pg-drain
produced pg-drain
sleep 1
sql "CHECKPOINT"
produce_end=""
c0=$(cpu_ticks)
g0=$(pg_ticks "$pgdir")
t0=$(now)
put_sink pg-drain
drained pg-drain "$rows"
c1=$(cpu_ticks)
g1=$(pg_ticks "$pgdir")
record sink-drain "$rows" "$t0" "$t1"
cpu_per sink-drain "$((c1 - c0))" "$((g1 - g0))"
stop_pid "$pid"; pid=""

# ---- report ----

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
echo
echo "== pg: rows/s into one PostgreSQL $pgver (fsync on), same table and rows; ratio to single-row INSERT"
printf '%-12s %10s %9s %11s %10s\n' method rows seconds rows_per_s x_insert
for m in insert insert-1000 copy sink sink-first sink-drain; do
  printf '%-12s %10s %9s %11s %9sx\n' "$m" "${nrows[$m]}" "${secs[$m]}" "${rps[$m]}" "$(ratio "${rps[$m]}" "${rps[insert]}")"
done
echo "copy and sink: the median of $repeat alternate runs each (rows/s of every run: copy ${runs[copy]}; sink ${runs[sink]})"
sc=$(ratio "${rps[sink]}" "${rps[copy]}")
echo "sink / copy = $sc (target 0.9); sink-first / copy = $(ratio "${rps[sink-first]}" "${rps[copy]}")," \
  "sink-drain / copy = $(ratio "${rps[sink-drain]}" "${rps[copy]}") (not targets)"
echo
for m in insert insert-1000 copy sink sink-first sink-drain; do
  echo "BENCH pg method=$m rows=${nrows[$m]} seconds=${secs[$m]} rows_per_s=${rps[$m]}" \
    "ratio_to_insert=$(ratio "${rps[$m]}" "${rps[insert]}")"
done
res=$(awk -v r="$sc" 'BEGIN { print (r >= 0.9) ? "PASS" : "MISS" }')
echo "BENCH pg ratio=sink/copy value=$sc target=0.9 result=$res"
