#!/usr/bin/env bash
# Spillway against a peer on this machine, in one run: the same durable
# append workload through
#   spillway-bin          binary protocol (`spillway bench --protocol bin`), ack=fsync
#   spillway-http         HTTP NDJSON, --batch events per request, ack=fsync
#   spillway-http-single  HTTP, one event per request, keep-alive, ack=fsync,
#                         into a 1-partition stream: the shape of Redis's
#                         `XADD s` (one stream, one log, one fsync per commit)
#   spillway-http-single-p4  the same into a 4-partition stream (shown, not a target)
#   redis-always          Redis Streams XADD, appendonly yes, appendfsync always, pipelined -P 64
#   redis-everysec        the same with appendfsync everysec
#   redis-always-p1       appendfsync always, unpipelined (-P 1)
# and with --tls, beside the plaintext rows:
#   spillway-bin-tls      spillway-bin over TLS (`--cacert`: the client library's TLS)
#   spillway-http-tls     spillway-http over HTTPS (`--server https://...`)
# against a server with `--tls-cert`/`--tls-key`: a CA and a certificate
# for 127.0.0.1 made with the openssl command in the temporary directory
# (RSA 2048, TLS 1.3 as negotiated by OpenSSL); `BENCH peers tls_cost=...`
# lines give each TLS row's events/s and CPU per event against its
# plaintext row.
# with 50 concurrent clients everywhere, 100-byte values and 16-byte keys
# over 1000 distinct keys. Prints a table (events/s and the server's CPU
# time per event, from /proc/PID/stat), one `BENCH peers system=...`
# line per system and `BENCH peers ratio=...` lines for the targets:
#   spillway-bin / redis-always          >= 3
#   spillway-http / redis-always         >= 1.5
#   spillway-http-single / redis-always-p1 >= 1
#
# usage: bench/peers.sh [--events N] [--single-events N] [--clients C] [--dir DIR]
#   --events N         events of each batched/pipelined run (default 4000000)
#   --single-events N  events of the single-event and -P 1 runs (default 400000)
#   --clients C        concurrent clients/connections (default 50)
#   --batch N          records per binary frame / NDJSON request (default 1000)
#   --partitions P     partitions of Spillway's stream in the batched runs
#                      (default 4, the server's default; Redis appends to one
#                      stream key); the single-event run uses 1 (see above)
#   --dir DIR          parent of the temporary data directories (default
#                      $TMPDIR or /var/tmp: a real disk, not tmpfs)
#   --tls              also the TLS rows (spillway-bin-tls, spillway-http-tls)
#
# Installs redis-server and redis-tools from Debian if missing
# (scripts/deps.sh), builds build/spillway (RelWithDebInfo; SPW_BUILD_DIR
# overrides the directory), runs every server on 127.0.0.1 on private
# ports with temporary data directories, and stops each by its PID. Both
# sides of each comparison move the same number of events. Every wait is
# bounded; temporary directories are removed at exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/bench/lib.sh"

events=4000000
single=400000
clients=50
batch=1000
partitions=4
tls=0
parent="${TMPDIR:-/var/tmp}"
usage() { bench_usage; }
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events=${2:?}; shift 2 ;;
    --single-events) single=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    --batch) batch=${2:?}; shift 2 ;;
    --partitions) partitions=${2:?}; shift 2 ;;
    --dir) parent=${2:?}; shift 2 ;;
    --tls) tls=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/peers.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$events" "$single" "$clients" "$batch" "$partitions"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench/peers.sh: not a positive number: $v" >&2; exit 2; }
done

"$root/scripts/deps.sh" redis-server redis-tools
bench_build

work="$(mktemp -d "$parent/spillway-peers.XXXXXX")"
pid=""
cleanup() {
  [ -n "$pid" ] && stop_pid "$pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

value=$(printf 'v%.0s' $(seq 100))     # 100 bytes
declare -A eps params cpu
clk=$(getconf CLK_TCK)
# ns of server CPU per event: TICKS-BEFORE TICKS-AFTER EVENTS
cpu_per_event() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$clk" 'BEGIN { printf "%.0f", (b - a) / hz * 1e9 / n }'; }

# ---- Spillway ----

# --tls: a CA and a server certificate for 127.0.0.1 it signs, in $work/tls.
tls_make() {
  local d="$work/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" -days 2 \
    -subj /CN=peers-ca >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/san.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" -subj /CN=127.0.0.1 \
    >/dev/null 2>&1
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial 1 -days 2 \
    -extfile "$d/san.ext" -out "$d/server.pem" >/dev/null 2>&1
}

# Starts `spillway serve` on free loopback ports; sets pid, http_port, bin_port.
# A system whose name ends in -tls gets the certificate of tls_make.
spw_start() {
  local tlsargs=()
  [[ $1 == *-tls ]] && tlsargs=(--tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key")
  spw_serve "$work/spw-$1" ${tlsargs[@]+"${tlsargs[@]}"}
}

# spw_run SYSTEM EVENTS PARAMS BENCH-ARGS...: one fresh server, one `spillway bench`.
spw_run() {
  local sys=$1 n=$2 desc=$3 partitions=${SPW_RUN_PARTITIONS:-$partitions}; shift 3
  spw_start "$sys"
  local args=("$@")
  args=("${args[@]//@HTTP@/127.0.0.1:$http_port}")
  args=("${args[@]//@BIN@/127.0.0.1:$bin_port}")
  args=("${args[@]//@HTTPS@/https://127.0.0.1:$http_port}")
  args=("${args[@]//@CA@/$work/tls/ca.pem}")
  echo "== $sys: spillway bench ${args[*]} --events $n --clients $clients --ack fsync --keys 1000 --partitions $partitions"
  local out t0 t1
  t0=$(cpu_ticks "$pid")
  out=$("$spw" bench "${args[@]}" --events "$n" --clients "$clients" --ack fsync --keys 1000 --stream peers \
    --partitions "$partitions" 2>&1) || true
  t1=$(cpu_ticks "$pid")
  cpu[$sys]=$(cpu_per_event "$t0" "$t1" "$n")
  echo "$out" | sed -n '/^requests/,$p'
  local line
  line=$(echo "$out" | grep '^BENCH bench ' | tail -1) || true
  if [ -z "$line" ] || ! echo "$line" | grep -qE ' errors=0( |$)'; then
    echo "$out" >&2
    echo "bench/peers.sh: $sys failed" >&2
    exit 1
  fi
  eps[$sys]=$(echo "$line" | sed 's/.* events_per_s=\([0-9]*\).*/\1/')
  params[$sys]="events=$n clients=$clients $desc ack=fsync keys=1000 partitions=$partitions"
  stop_pid "$pid"; pid=""
  rm -rf "$work/spw-$sys"
}

# Values: bin carries a 16-byte key and a 100-byte JSON value per record;
# HTTP events are one JSON object of 116 bytes (15-byte key inside it).
spw_run spillway-bin "$events" "protocol=bin batch=$batch key_bytes=16 value_bytes=100" --protocol bin --server @BIN@ --http @HTTP@ --batch "$batch" --size 100
spw_run spillway-http "$events" "protocol=http ndjson_batch=$batch event_bytes=116" --protocol http --server @HTTP@ --batch "$batch" --size 116
SPW_RUN_PARTITIONS=1 spw_run spillway-http-single "$single" "protocol=http batch=1 keepalive=yes event_bytes=116" --protocol http --server @HTTP@ --batch 1 --size 116
SPW_RUN_PARTITIONS=4 spw_run spillway-http-single-p4 "$single" "protocol=http batch=1 keepalive=yes event_bytes=116" --protocol http --server @HTTP@ --batch 1 --size 116
if [ "$tls" = 1 ]; then
  tls_make
  spw_run spillway-bin-tls "$events" "protocol=bin tls=yes batch=$batch key_bytes=16 value_bytes=100" --protocol bin --server @BIN@ --http @HTTPS@ --cacert @CA@ --batch "$batch" --size 100
  spw_run spillway-http-tls "$events" "protocol=http tls=yes ndjson_batch=$batch event_bytes=116" --protocol http --server @HTTPS@ --cacert @CA@ --batch "$batch" --size 116
fi

# ---- Redis ----

redis_run() { # SYSTEM FSYNC PIPELINE EVENTS
  local sys=$1 fs=$2 pl=$3 n=$4 dir="$work/redis-$1" port i try
  mkdir -p "$dir"
  for try in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 30000))
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync "$fs" \
      --save '' --daemonize no --protected-mode yes --logfile "$dir/log" &
    pid=$!
    for i in $(seq 100); do
      grep -q 'Ready to accept connections' "$dir/log" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    grep -q 'Ready to accept connections' "$dir/log" 2>/dev/null && break
    stop_pid "$pid"; pid=""; rm -f "$dir/log"
  done
  [ -n "$pid" ] || { echo "bench/peers.sh: redis-server did not start" >&2; exit 1; }
  echo "== $sys: redis-benchmark -p $port -c $clients -P $pl -n $n -r 1000 --csv XADD s '*' k key:__rand_int__ v <100 B>  (appendonly yes, appendfsync $fs)"
  local out t0 t1
  t0=$(cpu_ticks "$pid")
  out=$(timeout 600 redis-benchmark -h 127.0.0.1 -p "$port" -c "$clients" -P "$pl" -n "$n" -r 1000 --csv \
    XADD s '*' k 'key:__rand_int__' v "$value" 2>&1) || { echo "$out" >&2; exit 1; }
  local r len
  r=$(echo "$out" | tail -1 | cut -d, -f2 | tr -d '"')
  echo "$out" | tail -1 | awk -F, '{ gsub(/"/, ""); printf "rps=%s avg_ms=%s p50_ms=%s p99_ms=%s max_ms=%s\n", $2, $3, $5, $7, $8 }' 
  t1=$(cpu_ticks "$pid")
  cpu[$sys]=$(cpu_per_event "$t0" "$t1" "$n")
  len=$(redis-cli -h 127.0.0.1 -p "$port" XLEN s)
  [ "$len" = "$n" ] || { echo "bench/peers.sh: $sys: XLEN s = $len, expected $n" >&2; exit 1; }
  eps[$sys]=${r%.*}
  params[$sys]="events=$n clients=$clients pipeline=$pl appendonly=yes appendfsync=$fs keys=1000 key_bytes=16 value_bytes=100"
  stop_pid "$pid"; pid=""
  rm -rf "$dir"
}

redis_run redis-always always 64 "$events"
redis_run redis-everysec everysec 64 "$events"
redis_run redis-always-p1 always 1 "$single"

# ---- report ----

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
sys_all=(spillway-bin spillway-http spillway-http-single spillway-http-single-p4 redis-always redis-everysec redis-always-p1)
[ "$tls" = 1 ] && sys_all=(spillway-bin spillway-bin-tls spillway-http spillway-http-tls spillway-http-single
  spillway-http-single-p4 redis-always redis-everysec redis-always-p1)
echo
echo "== peers: $(nproc) cores, $(uname -r), data under $parent; ack=fsync / appendfsync as named"
printf '%-24s %12s %12s %14s %16s %17s\n' system events/s "cpu ns/ev" "/redis-always" "/redis-everysec" \
  "/redis-always-p1"
for s in "${sys_all[@]}"; do
  if [[ $s == spillway-* ]]; then
    printf '%-24s %12s %12s %14s %16s %17s\n' "$s" "${eps[$s]}" "${cpu[$s]}" "$(ratio "${eps[$s]}" "${eps[redis-always]}")" \
      "$(ratio "${eps[$s]}" "${eps[redis-everysec]}")" "$(ratio "${eps[$s]}" "${eps[redis-always-p1]}")"
  else
    printf '%-24s %12s %12s\n' "$s" "${eps[$s]}" "${cpu[$s]}"
  fi
done
echo "(cpu ns/ev: the server process's user + system CPU time over the run, per event)"
echo
echo "targets:"
targets=("spillway-bin redis-always 3" "spillway-http redis-always 1.5" "spillway-http-single redis-always-p1 1")
for t in "${targets[@]}"; do
  set -- $t
  r=$(ratio "${eps[$1]}" "${eps[$2]}")
  res=$(awk -v r="$r" -v g="$3" 'BEGIN { print (r + 0 >= g) ? "PASS" : "MISS" }')
  printf '  %-40s %6s  (target >= %s)  %s\n' "$1 / $2" "$r" "$3" "$res"
done
echo
echo "parameters:"
for s in "${sys_all[@]}"; do printf '  %-24s %s\n' "$s" "${params[$s]}"; done
echo
for s in "${sys_all[@]}"; do
  echo "BENCH peers system=$s events_per_s=${eps[$s]} server_cpu_ns_per_event=${cpu[$s]} ${params[$s]}"
done
for t in "${targets[@]}"; do
  set -- $t
  r=$(ratio "${eps[$1]}" "${eps[$2]}")
  res=$(awk -v r="$r" -v g="$3" 'BEGIN { print (r + 0 >= g) ? "PASS" : "MISS" }')
  echo "BENCH peers ratio=$1/$2 value=$r target=$3 result=$res"
done
if [ "$tls" = 1 ]; then
  # The cost of TLS: events/s and server CPU per event, TLS row / plaintext row.
  for s in spillway-bin spillway-http; do
    echo "BENCH peers tls_cost=$s-tls/$s events_per_s_ratio=$(ratio "${eps[$s-tls]}" "${eps[$s]}")" \
      "cpu_per_event_ratio=$(ratio "${cpu[$s-tls]}" "${cpu[$s]}")"
  done
fi
