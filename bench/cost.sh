#!/usr/bin/env bash
# What one durable event costs the server (docs/operations.md "Benchmarks"), measured
# the way that survives a noisy machine: beside events/s, the server's CPU
# time per acknowledged event (user + system, from /proc/PID/stat over the
# run), its system calls per event (perf's raw_syscalls:sys_enter counter,
# attached to the server for the run, when perf can count it) and its
# context switches per event (voluntary + involuntary, summed over the
# server's threads from /proc/PID/task/*/status).
#
# Workloads, each into a new stream of a fresh server, 50 clients, 100-byte
# events over 1000 keys:
#   bin-fsync        binary protocol, 1000 records per frame, ack=fsync
#   http-fsync       HTTP NDJSON, 1000 events per request, ack=fsync
#   single-fsync     HTTP, one event per request, 1 partition, ack=fsync
#   bin-none         binary protocol, 1000 per frame, ack=none
# then the warm-up check: http-fsync three times more on new streams of a
# freshly started server (first, second, third), the first within 15% of
# the third.
#
# Prints a table, `BENCH cost workload=... events_per_s=... cpu_ns_per_event=...
# user_ns_per_event=... sys_ns_per_event=... syscalls_per_event=...
# ctx_switches_per_event=... client_cpu_ns_per_event=...` lines (user and
# sys: the same CPU time split into user space and kernel; client: the
# `spillway bench` process's CPU, user + system, on the same cores: with
# the server's, what the events/s of 2 cores is bound by), the server's
# CPU per event by thread (docs/operations.md "Threads": loops = the
# spw-http-N and spw-bin-N I/O loops, flusher, fsync = the spw-fsync-N
# pool, other = every other thread), as a second table and
# `BENCH cost workload=... loops_ns_per_event=... flusher_ns_per_event=...
# fsync_ns_per_event=... other_ns_per_event=...` lines, and the targets
# (benchmark, not test): bin-fsync <= 150 ns, http-fsync <= 500 ns,
# single-fsync <= 5000 ns of server CPU per event; first run >= 0.85 of the
# third.
#
# usage: bench/cost.sh [--events N] [--single-events N] [--clients C] [--serve-opt OPT]... [--dir DIR]
#   --events N         events of each batched run (default 2000000)
#   --single-events N  events of the single-event run (default 200000)
#   --clients C        clients (default 50)
#   --serve-opt OPT    one more argument of both servers' `spillway serve`
#                      (repeatable): `--serve-opt --io-uring --serve-opt
#                      false` measures a setting against its default
#   --dir DIR          parent of the temporary data directory (default
#                      $TMPDIR or /var/tmp: a real disk, not tmpfs)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

events=2000000
single=200000
clients=50
serve_opts=()
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=${2:?}; shift 2 ;;
    --single-events) single=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    --serve-opt) serve_opts+=("${2:?}"); shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/cost.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$events" "$single" "$clients"; do
  [[ "$v" =~ ^[1-9][0-9]{0,9}$ ]] || { echo "bench/cost.sh: not a positive number: $v" >&2; exit 2; }
done
[ "$clients" -le 1024 ] || { echo "bench/cost.sh: --clients is at most 1024" >&2; exit 2; }

"$root/scripts/deps.sh" curl
bench_build

work="$(mktemp -d "$parent/spillway-cost.XXXXXX")"
pid=""
perf_pid=""
cleanup() {
  trap '' PIPE INT TERM
  [ -n "$perf_pid" ] && stop_pid "$perf_pid"
  [ -n "$pid" ] && stop_pid "$pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Can perf count system calls here (a kernel with the tracepoint, and the right to use it)?
perf_ok=0
if command -v perf >/dev/null 2>&1 &&
   perf stat -x, -e raw_syscalls:sys_enter true 2>&1 >/dev/null | grep -q '^[0-9]*,,raw_syscalls:sys_enter'; then
  perf_ok=1
fi

ctx_switches() {
  cat /proc/"$pid"/task/*/status 2>/dev/null |
    awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

# The server's CPU time so far in ns by its threads' roles (their names,
# docs/operations.md "Threads"; each thread's time on a CPU from
# /proc/PID/task/TID/schedstat, exact where the clock ticks of .../stat
# lose up to a tick per thread), as "LOOPS FLUSHER FSYNC OTHER". A thread
# that ended since the last reading takes its time with it (none of these
# do during a run).
role_ns() {
  local t name
  for t in /proc/"$pid"/task/*; do
    name=$(cat "$t/comm" 2>/dev/null) || continue
    echo "$name $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)"
  done | awk '{ n = $1; c = $2
    if (n ~ /^spw-(http|bin)-[0-9]+$/) l += c; else if (n == "spw-flusher") f += c
    else if (n ~ /^spw-fsync-[0-9]+$/) s += c; else o += c }
    END { printf "%.0f %.0f %.0f %.0f\n", l, f, s, o }'
}

# The server's user and system CPU time so far in clock ticks (/proc/PID/stat
# fields 14 and 15), as "USER SYS".
cpu_split() { awk '{ print $14, $15 }' "/proc/$pid/stat"; }
# This shell's waited-for children's CPU time so far in clock ticks
# (/proc/PID/stat fields 16 and 17): around a `spillway bench` run, that
# client's (the few small commands between add a tick or two at most).
child_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

declare -A eps cpu usr ker sys ctx cli roles
order=()
run() { # NAME PROTOCOL ACK BATCH EVENTS PARTITIONS STREAM
  local name=$1 out="$work/$1.out" c0 c1 x0 x1 n u0 k0 u1 k1 b0 b1 r0 r1 i
  local where=(--server "127.0.0.1:$http_port")
  [ "$2" = bin ] && where=(--server "127.0.0.1:$bin_port" --http "127.0.0.1:$http_port")
  echo "== $name: spillway bench --protocol $2 --ack $3 --batch $4 --events $5 --partitions $6 --clients $clients"
  c0=$(cpu_ticks)
  read -r u0 k0 < <(cpu_split)
  read -r -a r0 < <(role_ns)
  x0=$(ctx_switches)
  if [ "$perf_ok" = 1 ]; then
    perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$work/$name.perf" &
    perf_pid=$!
    sleep 0.2
  fi
  b0=$(child_ticks)
  "$spw" bench --protocol "$2" "${where[@]}" --stream "$7" --ack "$3" --batch "$4" --events "$5" \
    --partitions "$6" --clients "$clients" --size 100 --keys 1000 >"$out" 2>&1 ||
    { cat "$out" >&2; echo "bench/cost.sh: $name failed" >&2; exit 1; }
  b1=$(child_ticks)
  c1=$(cpu_ticks)
  read -r u1 k1 < <(cpu_split)
  read -r -a r1 < <(role_ns)
  x1=$(ctx_switches)
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=""
  fi
  eps[$name]=$(grep '^BENCH bench ' "$out" | tail -1 | sed -n 's/.* events_per_s=\([0-9]*\).*/\1/p')
  n=$5
  cpu[$name]=$(ns_per $((c1 - c0)) "$n")
  usr[$name]=$(ns_per $((u1 - u0)) "$n")
  ker[$name]=$(ns_per $((k1 - k0)) "$n")
  ctx[$name]=$(awk -v d=$((x1 - x0)) -v n="$n" 'BEGIN { printf "%.3f", d / n }')
  cli[$name]=$(ns_per $((b1 - b0)) "$n")
  roles[$name]=""
  for i in 0 1 2 3; do roles[$name]="${roles[$name]} $(awk -v d=$((r1[i] - r0[i])) -v n="$n" 'BEGIN { printf "%d", d / n }')"; done
  sys[$name]=-
  if [ -s "$work/$name.perf" ]; then
    local calls
    calls=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$work/$name.perf")
    [[ "${calls:-}" =~ ^[0-9]+$ ]] && sys[$name]=$(awk -v c="$calls" -v n="$n" 'BEGIN { printf "%.3f", c / n }')
  fi
  order+=("$name")
}

echo "== cost: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start" \
  "(syscall counts: $([ "$perf_ok" = 1 ] && echo perf || echo 'not available'))"
[ ${#serve_opts[@]} -eq 0 ] || echo "   spillway serve ${serve_opts[*]}"
spw_serve "$work/a" ${serve_opts[@]+"${serve_opts[@]}"}
run bin-fsync bin fsync 1000 "$events" 4 s-bin
run http-fsync http fsync 1000 "$events" 4 s-http
run single-fsync http fsync 1 "$single" 1 s-single
run bin-none bin none 1000 "$events" 4 s-none
stop_pid "$pid"
pid=""

# The warm-up: the same HTTP NDJSON run three times on a fresh server.
spw_serve "$work/b" ${serve_opts[@]+"${serve_opts[@]}"}
run first http fsync 1000 "$events" 4 w1
run second http fsync 1000 "$events" 4 w2
run third http fsync 1000 "$events" 4 w3

echo
printf '%-14s %12s %14s %10s %10s %14s %14s %14s\n' workload events/s cpu_ns/event user_ns sys_ns syscalls/event \
  ctx_sw/event client_ns/event
for w in "${order[@]}"; do
  printf '%-14s %12s %14s %10s %10s %14s %14s %14s\n' "$w" "${eps[$w]}" "${cpu[$w]}" "${usr[$w]}" "${ker[$w]}" \
    "${sys[$w]}" "${ctx[$w]}" "${cli[$w]}"
  echo "BENCH cost workload=$w events_per_s=${eps[$w]} cpu_ns_per_event=${cpu[$w]} user_ns_per_event=${usr[$w]}" \
    "sys_ns_per_event=${ker[$w]} syscalls_per_event=${sys[$w]} ctx_switches_per_event=${ctx[$w]}" \
    "client_cpu_ns_per_event=${cli[$w]}"
done
echo
echo "server CPU ns per event by thread (docs/operations.md \"Threads\"):"
printf '%-14s %10s %10s %10s %10s\n' workload loops flusher fsync other
for w in "${order[@]}"; do
  read -r rl rf rs ro <<<"${roles[$w]}"
  printf '%-14s %10s %10s %10s %10s\n' "$w" "$rl" "$rf" "$rs" "$ro"
  echo "BENCH cost workload=$w loops_ns_per_event=$rl flusher_ns_per_event=$rf fsync_ns_per_event=$rs" \
    "other_ns_per_event=$ro"
done
target() { # NAME VALUE OP LIMIT
  local ok
  ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { print ((op == "<=" ? v <= l : v >= l) ? "PASS" : "MISS") }')
  echo "BENCH cost target=$1 value=$2 limit=$3$4 result=$ok"
}
target bin-fsync-cpu-ns "${cpu[bin-fsync]}" "<=" 150
target http-fsync-cpu-ns "${cpu[http-fsync]}" "<=" 500
target single-fsync-cpu-ns "${cpu[single-fsync]}" "<=" 5000
target first-over-third "$(awk -v a="${eps[first]}" -v b="${eps[third]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" ">=" 0.85
