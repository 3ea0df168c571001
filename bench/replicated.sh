#!/usr/bin/env bash
# ack=replicated against a replicated PostgreSQL, in one run (docs/api.md
# "Replicated acknowledgement", docs/operations.md "Replication"):
#
#   pg-rtt        PostgreSQL's synchronous commit round trip: pgbench, one
#                 client, one single-row INSERT per transaction (autocommit)
#                 on the primary, whose commits wait for the standby; p50
#                 and p99 from pgbench's per-transaction log
#   pg-rtt-C      the same from --clients pgbench clients at once (as many
#                 as the single-event HTTP runs' connections): what that
#                 many clients committing straight into the replicated
#                 primary see; not a target, beside it
#   copy          psql `\copy` of --rows 100-byte rows into the primary (one
#                 COPY, one transaction): the rate any loader of this
#                 replicated PostgreSQL can reach
#   bin-fsync     `spillway bench --protocol bin`, 1000 events per frame,
#                 --clients clients, ack=fsync (no replication): Spillway alone
#   bin-replicated the same at ack=replicated into a stream whose
#                 replicate_to postgres sink writes the primary: every frame
#                 answered once its rows are committed on primary and standby
#   http-fsync, http-replicated
#                 single-event HTTP requests from --clients connections, the
#                 same two ack levels
#
# PostgreSQL: a primary and a streaming standby (initdb, pg_basebackup -R,
# synchronous_standby_names '*'), both with their defaults (fsync on,
# synchronous_commit on), on 127.0.0.1 on free ports, stopped by pg_ctl at
# exit; Spillway on free ports, stopped by its PID. Prints a table,
# `BENCH replicated system=... events_per_s=... p50_us=... p99_us=...` lines
#   BENCH replicated sink_transactions=T rows=R (the sink's COMMITs on the primary, by xmin)
#   BENCH replicated phase=SYSTEM sink_transactions=T rows=R pg_cpu_ns_per_row=C
#     durable_to_replicated_p50_us=A durable_to_replicated_p99_us=B (the same, of one replicated
#     run; PostgreSQL's CPU per row: primary and standby, every process; the part of the
#     requests' latency from durable here to committed by the replica, by the server's
#     histogram: the rest is before, the append and its fsync)
#   BENCH replicated phase=copy rows=R pg_cpu_ns_per_row=C
# and, per run, how busy the machine's cores were (a run bound by the cores
# or by waiting shows here, not in its latency).
# and the two target lines:
#   BENCH replicated ratio=bin-replicated/copy value=X target=0.8 result=PASS|MISS
#   BENCH replicated ratio=http-replicated-p99/pg-rtt-p99 value=X target=3 result=PASS|MISS
#
# usage: bench/replicated.sh [--seconds S] [--rows N] [--clients C] [--partitions P] [--connections K] [--dir DIR]
#   --seconds S    each Spillway run (default 10)
#   --rows N       rows of the COPY run (default 1000000)
#   --clients C    spillway bench clients (default 50)
#   --partitions P partitions of the streams (default 4)
#   --connections K the sink's options.connections (default 2)
#   --dir DIR      parent of the temporary directory (default $TMPDIR or
#                  /var/tmp: a real disk, not tmpfs)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

seconds=10
rows=1000000
clients=50
partitions=4
connections=2
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=${2:?}; shift 2 ;;
    --rows) rows=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    --partitions) partitions=${2:?}; shift 2 ;;
    --connections) connections=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/replicated.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$seconds" "$rows" "$clients" "$partitions" "$connections"; do
  [[ "$v" =~ ^[1-9][0-9]{0,8}$ ]] || { echo "bench/replicated.sh: not a positive number: $v" >&2; exit 2; }
done
[ "$seconds" -le 3600 ] && [ "$clients" -le 1024 ] && [ "$partitions" -le 1024 ] && [ "$connections" -le 16 ] ||
  { echo "bench/replicated.sh: --seconds <= 3600, --clients <= 1024, --partitions <= 1024, --connections <= 16" >&2; exit 2; }

"$root/scripts/deps.sh" curl
bench_build

pg_find

work="$(mktemp -d "$parent/spillway-repl.XXXXXX")"
chmod 711 "$work"
pri="$work/pri"
stb="$work/stb"
pid=""
cleanup() {
  trap '' PIPE INT TERM
  [ -n "$pid" ] && stop_pid "$pid"
  pg_stop_all
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- PostgreSQL: a primary and a synchronous standby ----

pg_init "$pri"
mkdir -m 700 "$stb" # pg_basebackup's target: empty, the postgres user's
[ ${#runas[@]} -gt 0 ] && chown postgres:postgres "$stb"
pport=$(free_port)
pg_start "$pri" "$pport"
"${runas[@]}" "$pgbin/pg_basebackup" -h 127.0.0.1 -p "$pport" -U postgres -D "$stb" -R -X stream >/dev/null 2>&1 ||
  { echo "bench/replicated.sh: pg_basebackup failed" >&2; exit 1; }
sport=$(free_port)
pg_start "$stb" "$sport"
psqlc=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pport" -U postgres -d postgres)
sql() { "${psqlc[@]}" -Atc "$1"; }
sql "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
sql "SELECT pg_reload_conf()" >/dev/null
for i in $(seq 600); do
  [ "$(sql "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
  [ "$i" -lt 600 ] || { echo "bench/replicated.sh: the standby never became synchronous" >&2; exit 1; }
  sleep 0.05
done
sql "CREATE TABLE rtt (x int); CREATE TABLE bench (id bigint, k text, v jsonb); CREATE TABLE copied (id bigint, k text, v jsonb)"
pgver=$(sql "SHOW server_version" | cut -d" " -f1)
echo "== replicated: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "   PostgreSQL $pgver primary 127.0.0.1:$pport, synchronous standby 127.0.0.1:$sport" \
  "(fsync=$(sql 'SHOW fsync'), synchronous_commit=$(sql 'SHOW synchronous_commit'))"

declare -A eps p50 p99
# The machine's busy and total clock ticks so far (/proc/stat's cpu line:
# everything but idle and iowait is busy): whether a phase was bound by
# the cores, which a latency figure alone does not tell.
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat; }
busy_since() { # BUSY0 TOTAL0: the busy share since then
  local b1 t1
  read -r b1 t1 < <(machine_ticks)
  awk -v b=$((b1 - $1)) -v t=$((t1 - $2)) 'BEGIN { printf "%.0f%%", (t > 0 ? 100 * b / t : 0) }'
}
pct() { # FILE Q: the Q-quantile (0..1) of the numbers in FILE, one per line
  sort -n "$1" | awk -v q="$2" '{ a[NR] = $1 } END { i = int(NR * q + 0.5); if (i < 1) i = 1; print a[i] }'
}

# ---- 1. PostgreSQL's synchronous commit round trip ----

echo "== pg-rtt: pgbench, 1 client, INSERT INTO rtt per transaction, 5 s"
echo "INSERT INTO rtt VALUES (1);" >"$work/rtt.sql"
chmod 644 "$work/rtt.sql"
(cd "$work" && "$pgbin/pgbench" -n -h 127.0.0.1 -p "$pport" -U postgres -c 1 -T 5 -f rtt.sql -l --log-prefix=rtt \
  postgres >"$work/pgbench.out" 2>&1) || { cat "$work/pgbench.out" >&2; echo "bench/replicated.sh: pgbench failed" >&2; exit 1; }
cat "$work"/rtt.[0-9]* | awk '{ print $3 }' >"$work/rtt.us"
n_rtt=$(wc -l <"$work/rtt.us")
eps[pg-rtt]=$((n_rtt / 5))
p50[pg-rtt]=$(pct "$work/rtt.us" 0.5)
p99[pg-rtt]=$(pct "$work/rtt.us" 0.99)
rm -f "$work"/rtt.[0-9]*

echo "== pg-rtt-$clients: pgbench, $clients clients, INSERT INTO rtt per transaction, 5 s"
(cd "$work" && "$pgbin/pgbench" -n -h 127.0.0.1 -p "$pport" -U postgres -c "$clients" -j 1 -T 5 -f rtt.sql -l \
  --log-prefix=rttc postgres >"$work/pgbench.out" 2>&1) || { cat "$work/pgbench.out" >&2; echo "bench/replicated.sh: pgbench failed" >&2; exit 1; }
cat "$work"/rttc.[0-9]* | awk '{ print $3 }' >"$work/rttc.us"
rm -f "$work"/rttc.[0-9]*
eps[pg-rtt-c]=$(($(wc -l <"$work/rttc.us") / 5))
p50[pg-rtt-c]=$(pct "$work/rttc.us" 0.5)
p99[pg-rtt-c]=$(pct "$work/rttc.us" 0.99)

# ---- 2. COPY into the replicated primary ----

echo "== copy: psql \\copy of $rows rows into the primary"
pad=$(printf 'x%.0s' $(seq 64))
awk -v n="$rows" -v pad="$pad" 'BEGIN { for (i = 0; i < n; i++)
  printf "%d\tkey-%012d\t{\"c\":\"%04d\",\"s\":\"%010d\",\"v\":\"%s\"}\n", i, (i * 2654435761) % 1000, i % 4, i, pad }' \
  >"$work/rows.tsv"
sql "CHECKPOINT" >/dev/null
read -r mb0 mt0 < <(machine_ticks)
pg0=$(pg_ticks "$pri" "$stb")
t0=$(date +%s.%N)
"${psqlc[@]}" -c "\\copy copied (id, k, v) FROM '$work/rows.tsv'" >/dev/null
t1=$(date +%s.%N)
pg1=$(pg_ticks "$pri" "$stb")
echo "   machine busy: $(busy_since "$mb0" "$mt0") of $(nproc) cores; PostgreSQL CPU $(ns_per $((pg1 - pg0)) "$rows") ns per row"
echo "BENCH replicated phase=copy rows=$rows pg_cpu_ns_per_row=$(ns_per $((pg1 - pg0)) "$rows")"
eps[copy]=$(awk -v n="$rows" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", n / (b - a) + 0.5 }')
p50[copy]=-
p99[copy]=-
rm -f "$work/rows.tsv"

# ---- 3. Spillway ----

spw_serve "$work/spw"
url="http://127.0.0.1:$http_port"
put /v1/streams/plain "{\"partitions\":$partitions,\"key\":\"/k\"}"
put /v1/streams/repl "{\"partitions\":$partitions,\"key\":\"/k\",\"replicate_to\":\"pgr\",\"replication_timeout_ms\":30000}"
put /v1/sinks/pgr "{\"stream\":\"repl\",\"kind\":\"postgres\",
  \"options\":{\"connections\":$connections,\"shards\":[\"host=127.0.0.1 port=$pport user=postgres dbname=postgres\"],\"table\":\"bench\",
  \"columns\":{\"id\":\"\$id\",\"k\":\"\$key\",\"v\":\"\$value\"}}}"
echo "   sink pgr: postgres into bench on the primary, options.connections $connections"
# until the sink has attached (replicated requests are 503 before)
for i in $(seq 400); do
  code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$url/v1/streams/repl/events?ack=replicated" \
    -H 'Content-Type: application/json' -d '{"k":"warm"}') || true
  [ "$code" = 202 ] && break
  [ "$i" -lt 400 ] || { echo "bench/replicated.sh: the sink never attached (HTTP $code)" >&2; exit 1; }
  sleep 0.05
done

declare -A cpu
# The server's histogram of replicated requests' wait from durable here to
# committed by the replica (spillway_replicated_wait_seconds), cumulative
# counts per bucket: "le count" lines.
repl_hist() {
  curl -s -m 10 "$url/metrics" | awk '/^spillway_replicated_wait_seconds_bucket/ {
    match($0, /le="[^"]*"/); print substr($0, RSTART + 4, RLENGTH - 5), $NF }'
}
# FILE0 FILE1: "p50_us p99_us" of the requests counted between the two
# (a bucket's upper bound: the histogram's resolution).
hist_q() {
  paste -d' ' "$1" "$2" | awk '{ le[NR] = $1; d[NR] = $4 - $2 } END { n = d[NR]
    for (q = 1; q <= 2; q++) { want = (q == 1 ? 0.5 : 0.99) * n
      for (i = 1; i <= NR; i++) if (d[i] >= want && n > 0) break
      v = (i <= NR && le[i] != "+Inf" ? sprintf("%d", le[i] * 1e6) : "-"); printf "%s%s", v, (q == 1 ? " " : "\n") } }'
}
# The sink's transactions and rows on the primary so far.
sink_txns() { sql 'SELECT count(DISTINCT xmin::text), count(*) FROM bench' | tr '|' ' '; }
run() { # SYSTEM PROTOCOL STREAM ACK BATCH
  local out="$work/spw/$1.out" c0 c1 ev b0 t0 x0 r0 x1 r1 pg0 pg1
  echo "== $1: spillway bench --protocol $2 --stream $3 --ack $4 --batch $5 --clients $clients --duration $seconds"
  [ "$3" = repl ] && read -r x0 r0 < <(sink_txns) && repl_hist >"$work/hist0"
  read -r b0 t0 < <(machine_ticks)
  pg0=$(pg_ticks "$pri" "$stb")
  c0=$(cpu_ticks)
  local where=(--server "127.0.0.1:$http_port")
  [ "$2" = bin ] && where=(--server "127.0.0.1:$bin_port" --http "127.0.0.1:$http_port")
  "$spw" bench --protocol "$2" "${where[@]}" --stream "$3" --ack "$4" --batch "$5" --clients "$clients" --size 100 \
    --keys 1000 --duration "$seconds" >"$out" 2>&1 || { cat "$out" >&2; echo "bench/replicated.sh: $1 failed" >&2; exit 1; }
  c1=$(cpu_ticks)
  pg1=$(pg_ticks "$pri" "$stb")
  echo "   machine busy: $(busy_since "$b0" "$t0") of $(nproc) cores"
  if [ "$3" = repl ]; then
    read -r x1 r1 < <(sink_txns)
    local w50 w99
    repl_hist >"$work/hist1"
    read -r w50 w99 < <(hist_q "$work/hist0" "$work/hist1")
    echo "   $1: from durable here to committed by the replica (the server's histogram, buckets of powers of 2): p50 <= ${w50} us, p99 <= ${w99} us"
    echo "   $1: sink transactions $((x1 - x0)), rows $((r1 - r0)), rows per transaction" \
      "$(awk -v r=$((r1 - r0)) -v t=$((x1 - x0)) 'BEGIN { printf "%.1f", (t > 0 ? r / t : 0) }');" \
      "PostgreSQL CPU $(ns_per $((pg1 - pg0)) $((r1 - r0))) ns per row"
    echo "BENCH replicated phase=$1 sink_transactions=$((x1 - x0)) rows=$((r1 - r0))" \
      "pg_cpu_ns_per_row=$(ns_per $((pg1 - pg0)) $((r1 - r0))) durable_to_replicated_p50_us=$w50" \
      "durable_to_replicated_p99_us=$w99"
  fi
  local line
  line=$(grep '^BENCH bench ' "$out" | tail -1)
  eps[$1]=$(sed -n 's/.* events_per_s=\([0-9]*\).*/\1/p' <<<"$line")
  p50[$1]=$(sed -n 's/.* p50_us=\([0-9]*\).*/\1/p' <<<"$line")
  p99[$1]=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  ev=$(awk -v e="${eps[$1]}" -v s="$seconds" 'BEGIN { printf "%d", e * s }')
  cpu[$1]=$(ns_per $((c1 - c0)) "$ev")
}
# The ack=fsync runs' stream goes after each of them (and is made again):
# with the gigabytes the binary run writes kept in the page cache, the
# next run's PostgreSQL spent 2-5 times the kernel time per row on the
# benchmark's machine (its replicated rate fell by about half; deleting
# the stream gave it back). The cause is the virtual machine's: memory
# the guest has left free for a few seconds goes back to its host, and
# the first touch of such a page costs several microseconds more
# (docs/performance.md "The machine's memory"); PostgreSQL's new pages
# then came from there, and after the delete they come from the pages
# just freed. Every replicated run then starts, as COPY did, without an
# earlier run's data in memory.
fresh_plain() {
  local code
  code=$(curl -s -m 30 -o /dev/null -w '%{http_code}' -X DELETE "$url/v1/streams/plain") || true
  [ "$code" = 200 ] || [ "$code" = 204 ] || { echo "bench/replicated.sh: DELETE plain: HTTP $code" >&2; exit 1; }
  put /v1/streams/plain "{\"partitions\":$partitions,\"key\":\"/k\"}"
}
run bin-fsync bin plain fsync 1000
fresh_plain
run bin-replicated bin repl replicated 1000
run http-fsync http plain fsync 1
fresh_plain
run http-replicated http repl replicated 1

# Every replicated event was committed in PostgreSQL (the warm-up events too).
acked=$(curl -s -m 10 "$url/metrics" | awk '$1 == "spillway_replicated_acked_total" { print $2 }')
echo "   replicated requests acknowledged: ${acked:-?}; rows on the primary: $(sql 'SELECT count(*) FROM bench')"
# The sink's transactions (rows written together share their xmin): rows
# per COMMIT, each of which waited for the standby.
txns=$(sql 'SELECT count(DISTINCT xmin::text) FROM bench')
rows_all=$(sql 'SELECT count(*) FROM bench')
echo "   sink transactions: $txns, rows per transaction: $(awk -v r="$rows_all" -v t="$txns" 'BEGIN { printf "%.1f", (t > 0 ? r / t : 0) }')"
echo "BENCH replicated sink_transactions=$txns rows=$rows_all"

echo
printf '%-16s %14s %10s %10s %16s\n' system events/s p50_us p99_us server_ns/event
for s in pg-rtt pg-rtt-c copy bin-fsync bin-replicated http-fsync http-replicated; do
  name=$s
  [ "$s" = pg-rtt-c ] && name=pg-rtt-$clients
  printf '%-16s %14s %10s %10s %16s\n' "$name" "${eps[$s]}" "${p50[$s]}" "${p99[$s]}" "${cpu[$s]:--}"
  echo "BENCH replicated system=$name events_per_s=${eps[$s]} p50_us=${p50[$s]} p99_us=${p99[$s]} cpu_ns_per_event=${cpu[$s]:--}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
r1=$(ratio "${eps[bin-replicated]}" "${eps[copy]}")
r2=$(ratio "${p99[http-replicated]}" "${p99[pg-rtt]}")
res1=$(awk -v r="$r1" 'BEGIN { print (r >= 0.8 ? "PASS" : "MISS") }')
res2=$(awk -v r="$r2" 'BEGIN { print (r <= 3 ? "PASS" : "MISS") }')
echo "BENCH replicated ratio=bin-replicated/copy value=$r1 target=0.8 result=$res1"
echo "BENCH replicated ratio=http-replicated-p99/pg-rtt-p99 value=$r2 target=3 result=$res2"
echo "BENCH replicated ratio=http-replicated-p99/pg-rtt-$clients-p99 value=$(ratio "${p99[http-replicated]}" "${p99[pg-rtt-c]}") (not a target)"
