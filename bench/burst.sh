#!/usr/bin/env bash
# The burst benchmark of admission control: how one server bends when the
# load offered to it steps from 1x to 5x what it can make durable.
#
#   1. capacity: closed loop at ack=fsync, priority 0 (`spillway bench
#      --duration S --clients C --priorities 0`): accepted events/s, for
#      the event size and request shape of the steps.
#   2. steps: open loop (`spillway bench --rate R --duration S --inflight N`)
#      at K x capacity for K in --steps: requests leave on schedule whether
#      or not earlier ones were answered, with priorities round robin over
#      --priorities (a quarter each of 0..3 by default, so the order in
#      which priorities are shed shows).
# Prints a table, one `BENCH burst step=...` line per step, and writes a PNG
# (gnuplot): per step, accepted and rejected events/s by reason stacked up
# to the offered rate, and the p99 latency of accepted requests on the
# right axis. The results directory it prints holds the picture, the
# gnuplot script, steps.tsv, each run's output and the server's log.
#
# usage: bench/burst.sh [options]
#   --step-seconds S       duration of the capacity run and of each step (default 6)
#   --steps LIST           multiples of the capacity, e.g. 1,2,3,4,5 (default)
#   --size B               bytes per event, JSON included (default 1000)
#   --batch N              events per request (default 1: one event per POST)
#   --priorities LIST      Spillway-Priority round robin (default 0,1,2,3)
#   --fsync-delay-us U     the disk: U > 0 (default 50000) runs build/spillway_test
#                          and slows every fdatasync of its data directory by U us
#                          through the test-only fault hook (POST /debug/faults), so
#                          capacity is small and steady and 5x of it can be offered
#                          from the same 2 cores; 0 runs build/spillway on the real
#                          disk (capacity is then what the CPUs allow, and the steps
#                          above 1x mostly measure the load generator)
#   --max-pending-bytes B  the server's pending budget (default 128KiB)
#   --capacity-clients C   connections of the capacity run (default 256)
#   --capacity R           skip the capacity run and use R events/s
#   --inflight N           open loop: at most N requests in flight (default 4096)
#   --dir DIR              parent of the temporary data directory (default
#                          $TMPDIR or /var/tmp: a real disk, not tmpfs)
#   --out DIR              results directory (default bench/results/burst-DATE)
#
# Installs gnuplot-nox and curl from Debian if missing (scripts/deps.sh),
# builds build/spillway and build/spillway_test (RelWithDebInfo;
# SPW_BUILD_DIR overrides the directory), runs the server on 127.0.0.1 on a
# free port with a temporary data directory, and stops it by its PID. Every
# wait is bounded; the data directory is removed at exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

secs=6
steps=1,2,3,4,5
size=1000
batch=1
prios=0,1,2,3
delay=50000
budget=128KiB
cap_clients=256
capacity=""
inflight=4096
parent="${TMPDIR:-/var/tmp}"
out=""
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --step-seconds) secs=${2:?}; shift 2 ;;
    --steps) steps=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --priorities) prios=${2:?}; shift 2 ;;
    --fsync-delay-us) delay=${2:?}; shift 2 ;;
    --max-pending-bytes) budget=${2:?}; shift 2 ;;
    --capacity-clients) cap_clients=${2:?}; shift 2 ;;
    --capacity) capacity=${2:?}; shift 2 ;;
    --inflight) inflight=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/burst.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
bad() { echo "bench/burst.sh: $*" >&2; exit 2; }
for v in "$secs" "$size" "$batch" "$cap_clients" "$inflight" ${capacity:+"$capacity"}; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || bad "not a positive number: $v"
done
[[ "$delay" =~ ^[0-9]+$ ]] || bad "--fsync-delay-us takes a number of microseconds, not '$delay'"
[[ "$steps" =~ ^[0-9]+(\.[0-9]+)?(,[0-9]+(\.[0-9]+)?)*$ ]] || bad "--steps takes multiples like 1,2,3,4,5, not '$steps'"
[[ "$prios" =~ ^[0-3](,[0-3])*$ ]] || bad "--priorities takes a list of 0..3 like 0,1,2,3, not '$prios'"
[[ "$budget" =~ ^[0-9]+(B|KiB|MiB|GiB)?$ ]] || bad "--max-pending-bytes takes a size like 128KiB, not '$budget'"
[ "$secs" -le 600 ] || bad "--step-seconds is at most 600"
IFS=, read -r -a multiples <<<"$steps"
for m in "${multiples[@]}"; do
  awk -v m="$m" 'BEGIN { exit !(m > 0) }' || bad "--steps: a multiple must be above 0, not '$m'"
done

"$root/scripts/deps.sh" gnuplot-nox curl
bench_build spillway_test
server_bin="$spw"
[ "$delay" -gt 0 ] && server_bin="$build/spillway_test"

[ -n "$out" ] || out="$root/bench/results/burst-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d "$parent/spillway-burst.XXXXXX")"
pid=""
cleanup() {
  [ -n "$pid" ] && stop_pid "$pid"
  [ -f "$work/log" ] && cp "$work/log" "$out/server.log" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the server ----

spw_serve "$work" --listen-bin off --max-pending-bytes "$budget"
port=$http_port
url="http://127.0.0.1:$port"
if [ "$delay" -gt 0 ]; then
  curl -sf -m 10 -X POST -d '' "$url/debug/faults?fsync_delay_us=$delay" >/dev/null ||
    { echo "bench/burst.sh: POST /debug/faults failed" >&2; exit 1; }
  disk="every fdatasync slowed by $delay us (spillway_test fault hook)"
  disk_short="fdatasync + $delay us (test fault hook)"
else
  disk="the real disk under $parent"
  disk_short="real disk"
fi

metric() { # NAME{LABELS}: its value in /metrics (0 if absent)
  curl -sf -m 10 "$url/metrics" | awk -v k="$1" '$1 == k { v = $2 } END { printf "%.0f\n", v + 0 }'
}
# Waits (at most 30 s) until nothing is pending, then 1 s more, so a step
# does not start with the last one's backlog.
settle() {
  local i
  for i in $(seq 300); do
    [ "$(metric spillway_pending_bytes)" = 0 ] && break
    sleep 0.1
  done
  sleep 1
}
field() { # KEY LINE: the value of KEY=... in a BENCH line
  echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1
}
common=(--server "127.0.0.1:$port" --stream burst --size "$size" --batch "$batch" --keys 1000 --ack fsync
  --refusals-ok)

# spw_bench NAME ARGS...: one `spillway bench` run, its output in $out/NAME.txt;
# sets line to its BENCH bench_responses line.
spw_bench() {
  local name=$1; shift
  local rc=0
  "$spw" bench "${common[@]}" "$@" >"$out/$name.txt" 2>&1 || rc=$?
  line=$(grep '^BENCH bench_responses ' "$out/$name.txt" | tail -1) || true
  if [ -z "$line" ]; then
    cat "$out/$name.txt" >&2
    echo "bench/burst.sh: $name: spillway bench failed (exit $rc)" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    # Refusals are expected; anything else (other statuses, failed
    # connections) is reported and counted under rejected_other.
    echo "  note: $name: $(grep '^last error:' "$out/$name.txt" | tail -1)" >&2
  fi
}

echo "== burst: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
echo "   server: $(basename "$server_bin") on $url, max-pending-bytes $budget, $disk"
echo "   events of $size B, $batch per request, ack=fsync; results in $out"

# ---- capacity ----

if [ -z "$capacity" ]; then
  echo "== capacity: closed loop, $cap_clients connections, priority 0, $secs s"
  spw_bench capacity --duration "$secs" --clients "$cap_clients" --priorities 0
  capacity=$(field accepted_per_s "$line")
  [ "${capacity:-0}" -gt 0 ] || { cat "$out/capacity.txt" >&2; echo "bench/burst.sh: nothing accepted" >&2; exit 1; }
  cap_line="$line"
  printf '   capacity %s events/s accepted (p50 %s ms, p99 %s ms; %s/s refused at the budget meanwhile)\n' \
    "$capacity" "$(awk -v u="$(field accepted_p50_us "$line")" 'BEGIN { printf "%.1f", u / 1000 }')" \
    "$(awk -v u="$(field accepted_p99_us "$line")" 'BEGIN { printf "%.1f", u / 1000 }')" \
    "$(field rejected_per_s "$line")"
  echo "BENCH burst capacity_per_s=$capacity loop=closed clients=$cap_clients priority=0 seconds=$secs" \
    "size=$size batch=$batch rejected_per_s=$(field rejected_per_s "$cap_line")" \
    "p50_ms=$(awk -v u="$(field accepted_p50_us "$cap_line")" 'BEGIN { printf "%.1f", u / 1000 }')" \
    "p99_ms=$(awk -v u="$(field accepted_p99_us "$cap_line")" 'BEGIN { printf "%.1f", u / 1000 }')"
else
  echo "== capacity: $capacity events/s (given)"
fi

# ---- steps ----

ms() { awk -v u="$1" 'BEGIN { printf "%.1f", u / 1000 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else printf "-" }'; }
shed0=$(metric 'spillway_rejected_total{reason="shed"}')
bp0=$(metric 'spillway_rejected_total{reason="backpressure"}')
client_shed=0
client_bp=0
tsv="$out/steps.tsv"
printf '# step\tlabel\toffered\taccepted\trejected\tshed\tbackpressure\trate_limit\tother\tp50_ms\tp99_ms\tp0_pct\tp1_pct\tp2_pct\tp3_pct\tlate_pct\n' >"$tsv"
rows=()
bench_lines=()
n=0
for m in "${multiples[@]}"; do
  n=$((n + 1))
  rate=$(awk -v c="$capacity" -v m="$m" 'BEGIN { r = c * m; printf "%d", r < 1 ? 1 : r + 0.5 }')
  settle
  echo "== step $n: ${m}x capacity = $rate events/s offered for $secs s (open loop, at most $inflight in flight)"
  spw_bench "step-$n" --rate "$rate" --duration "$secs" --inflight "$inflight" --clients 64 --priorities "$prios"
  offered=$(field offered_per_s "$line")
  accepted=$(field accepted_per_s "$line")
  rejected=$(field rejected_per_s "$line")
  shed=$(field rejected_shed_per_s "$line")
  bp=$(field rejected_backpressure_per_s "$line")
  rl=$(field rejected_rate_limit_per_s "$line")
  # 507s, other statuses and requests without an answer.
  other=$(awk -v a="$(field rejected_disk_per_s "$line")" -v b="$(field rejected_other_per_s "$line")" \
    -v c="$(field failed_per_s "$line")" 'BEGIN { printf "%d", a + b + c }')
  p50=$(ms "$(field accepted_p50_us "$line")")
  p99=$(ms "$(field accepted_p99_us "$line")")
  pp=()
  for p in 0 1 2 3; do pp+=("$(pct "$(field "p${p}_accepted" "$line")" "$(field "p${p}_offered" "$line")")"); done
  reqs=$(grep -E '^(accepted|shed|backpressure|rate_limit|disk|other|failed) ' "$out/step-$n.txt" | awk '{ s += $2 } END { print s + 0 }')
  late=$(pct "$(field late "$line")" "$reqs")
  client_shed=$((client_shed + $(grep '^shed ' "$out/step-$n.txt" | awk '{ print $2 }')))
  client_bp=$((client_bp + $(grep '^backpressure ' "$out/step-$n.txt" | awk '{ print $2 }')))
  printf '%d\t%sx\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$m" "$offered" "$accepted" \
    "$rejected" "$shed" "$bp" "$rl" "$other" "$p50" "$p99" "${pp[@]}" "$late" >>"$tsv"
  rows+=("$(printf '%-5s %5s %9s %9s %9s %8s %8s %8s %8s %8s %8s  %5s %5s %5s %5s %6s' "$n" "${m}x" "$offered" \
    "$accepted" "$rejected" "$shed" "$bp" "$rl" "$other" "$p50" "$p99" "${pp[@]}" "$late")")
  bench_lines+=("BENCH burst step=$n multiple=$m offered_per_s=$offered accepted_per_s=$accepted rejected_per_s=$rejected rejected_shed_per_s=$shed rejected_backpressure_per_s=$bp rejected_rate_limit_per_s=$rl rejected_other_per_s=$other p50_ms=$p50 p99_ms=$p99 accepted_p0_pct=${pp[0]} accepted_p1_pct=${pp[1]} accepted_p2_pct=${pp[2]} accepted_p3_pct=${pp[3]} late_pct=$late capacity_per_s=$capacity seconds=$secs size=$size batch=$batch priorities=$prios")
  echo "${rows[-1]}" | sed 's/^/   /'
done
shed1=$(metric 'spillway_rejected_total{reason="shed"}')
bp1=$(metric 'spillway_rejected_total{reason="backpressure"}')

# ---- report ----

echo
echo "== burst: capacity $capacity events/s; open loop, $secs s per step; events/s; latency of accepted requests"
printf '%-5s %5s %9s %9s %9s %8s %8s %8s %8s %8s %8s  %5s %5s %5s %5s %6s\n' step load offered accepted rejected \
  shed backpr. rate_lim other p50_ms p99_ms 'p0%' 'p1%' 'p2%' 'p3%' 'late%'
for r in "${rows[@]}"; do echo "$r"; done
echo "(pN%: share of priority-N events accepted; late%: requests the load generator sent 10 ms or more"
echo " after their time; other: 507, other statuses and requests without an answer)"
echo "server's spillway_rejected_total over the steps: shed $((shed1 - shed0)), backpressure $((bp1 - bp0))" \
  "(the clients counted $client_shed and $client_bp)"
echo
for l in "${bench_lines[@]}"; do echo "$l"; done

# ---- picture ----

png="$out/burst.png"
cat >"$out/burst.gp" <<GP
# gnuplot $out/burst.gp (from bench/burst.sh): steps.tsv -> burst.png
set terminal pngcairo size 1100,900 font ",10"
set output "$png"
set datafile separator "\t"
set multiplot title "Spillway burst: open-loop offered load in steps of the measured capacity ($capacity events/s at ack=fsync)\n$size B events, $batch per request, priorities $prios round robin, max-pending-bytes $budget, $disk_short" noenhanced
# Top: where the offered events went, and the p99 of accepted requests.
set origin 0, 0.34
set size 1, 0.60
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set xlabel "offered load (multiple of capacity)"
set ylabel "events/s"
set y2label "p99 latency of accepted requests (ms)"
set yrange [0:*]
set y2range [0:*]
set ytics nomirror
set y2tics
set grid ytics
set key outside right top vertical
set lmargin 10
set rmargin 40
set xrange [-0.6:$n - 0.4]
plot "steps.tsv" using 4:xtic(2) title "accepted" lc rgb "#2e7d32", \\
     "" using 6 title "rejected: shed (503)" lc rgb "#f9a825", \\
     "" using 7 title "rejected: backpressure (503)" lc rgb "#e65100", \\
     "" using 8 title "rejected: rate limit (429)" lc rgb "#6a1b9a", \\
     "" using 9 title "rejected: other" lc rgb "#757575", \\
     "" using (\$0):3 with linespoints lw 2 pt 7 lc rgb "#1565c0" title "offered", \\
     "" using (\$0):11 axes x1y2 with linespoints lw 2 dt 2 pt 5 lc rgb "#c62828" title "p99 latency (right axis)"
# Bottom: the share of each priority's events accepted.
set origin 0, 0
set size 1, 0.34
unset y2label
unset y2tics
set ytics mirror
set ylabel "accepted (% of offered)"
set yrange [0:105]
set style data linespoints
plot for [p=0:3] "steps.tsv" using (\$0):(strcol(12 + p) eq "-" ? NaN : column(12 + p)):xtic(2) \\
     lw 2 pt 7 title sprintf("priority %d", p)
unset multiplot
GP
if (cd "$out" && gnuplot burst.gp) 2>"$out/gnuplot.err"; then
  echo
  echo "picture: $png"
else
  cat "$out/gnuplot.err" >&2
  echo "bench/burst.sh: gnuplot failed; the numbers are in $tsv" >&2
fi
echo "results: $out"
