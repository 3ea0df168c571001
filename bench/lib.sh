# Shell functions the benchmark scripts share (sourced by bench/*.sh, not
# run): usage from the script's header, the build, starting `spillway
# serve` on free loopback ports, stopping a process by its PID, a free port,
# PostgreSQL clusters (initdb, start, stop).
# Messages name the script that sourced this file.

bench_name="bench/${0##*/}"

# The comment block at the top of the script (from line 2 to `set -euo`).
bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# Builds build/spillway (RelWithDebInfo; SPW_BUILD_DIR overrides the
# directory) and any further targets given; sets build and spw.
bench_build() {
  build="${SPW_BUILD_DIR:-$root/build}"
  echo "== build ($build, RelWithDebInfo, target spillway${1:+ $*})"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target spillway "$@" >/dev/null
  spw="$build/spillway"
}

# PID: TERM, wait up to 30 s, then KILL.
stop_pid() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 30000))
}

# DIR [SERVE-ARGS...]: starts "${server_bin:-$spw}" serve with its data in
# DIR/data, HTTP and the binary protocol on free loopback ports (SERVE-ARGS
# may turn the binary listener off or add options), its log in DIR/log,
# and waits (bounded) until it is ready. Sets pid, http_port, bin_port.
spw_serve() {
  local dir=$1 i
  shift
  mkdir -p "$dir"
  "${server_bin:-$spw}" serve --data "$dir/data" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 "$@" --ready-fd 3 \
    3>"$dir/ready" 2>"$dir/log" &
  pid=$!
  for i in $(seq 200); do
    [ -s "$dir/ready" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; echo "$bench_name: spillway serve exited" >&2; exit 1; }
    sleep 0.05
  done
  http_port="" bin_port=""
  read -r http_port bin_port <"$dir/ready" || true
  [ -n "$http_port" ] || { cat "$dir/log" >&2; echo "$bench_name: spillway serve did not start" >&2; exit 1; }
}

# The server's user + system CPU time so far in clock ticks (/proc/PID/stat
# fields 14 and 15; the command name has no spaces). PID defaults to $pid.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$pid}/stat"; }

# PostgreSQL's CPU so far, in clock ticks, of the servers whose data
# directories are given: each postmaster's own time and its exited
# children's, and its live children's (/proc/PID/stat utime, stime,
# cutime, cstime). Per row loaded, beside the rate: what a row costs
# PostgreSQL, which other work on the machine does not change the way it
# changes a rate.
pg_ticks() { # DATADIR...
  local pms=" " d
  for d in "$@"; do pms="$pms$(head -1 "$d/postmaster.pid") "; done
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pms="$pms" '{ pid = $1; sub(/^.*\) /, "")
    if (index(pms, " " pid " ")) t += $12 + $13 + $14 + $15; else if (index(pms, " " $2 " ")) t += $12 + $13 }
    END { print t + 0 }'
}
# TICKS N: clock ticks per N, in ns.
ns_per() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d", (n > 0 ? t / hz * 1e9 / n : 0) }'; }

# PUT PATH BODY to the server at $url: 201 or 200, else the answer and exit 1.
put() {
  local code out
  out=$(mktemp)
  code=$(curl -s -m 10 -o "$out" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary "$2" "$url$1") || true
  if [ "$code" != 201 ] && [ "$code" != 200 ]; then
    cat "$out" >&2
    rm -f "$out"
    echo; echo "$bench_name: PUT $1: HTTP $code" >&2
    exit 1
  fi
  rm -f "$out"
}

# ---- PostgreSQL clusters for the benches ----
# pg_find sets pgbin (the newest /usr/lib/postgresql/*/bin) and runas (as
# root, runuser -u postgres by its path: PATH may lack /usr/sbin); exits 1
# without initdb. pg_init DIR makes a new cluster in DIR (created mode 700,
# the postgres user's as root; its parent must let that user through, e.g.
# chmod 711), encoding UTF8 and locale C explicit: without LANG initdb
# makes a SQL_ASCII cluster. pg_start DIR PORT starts it on 127.0.0.1:PORT
# (its socket in DIR, its log in DIR/log), or prints the log and exits 1;
# pg_stop_all (for the EXIT trap) stops every cluster pg_start started.
pg_dirs=()
pg_find() {
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pgbin" ] && [ -x "$pgbin/initdb" ] || { echo "$bench_name: PostgreSQL's initdb is missing" >&2; exit 1; }
  runas=()
  [ "$(id -u)" -eq 0 ] && runas=(/usr/sbin/runuser -u postgres --)
  return 0
}
pg_init() {
  mkdir -m 700 "$1"
  [ ${#runas[@]} -gt 0 ] && chown postgres:postgres "$1"
  "${runas[@]}" "$pgbin/initdb" -D "$1" -U postgres -A trust --encoding=UTF8 --locale=C >"$1.initdb.log" 2>&1 ||
    { cat "$1.initdb.log" >&2; echo "$bench_name: initdb failed" >&2; exit 1; }
}
pg_start() {
  "${runas[@]}" "$pgbin/pg_ctl" -D "$1" -l "$1/log" -w -t 60 -o "-p $2 -k $1 -c listen_addresses=127.0.0.1" start \
    >/dev/null || { cat "$1/log" >&2; echo "$bench_name: pg_ctl start failed" >&2; exit 1; }
  pg_dirs+=("$1")
}
pg_stop_all() {
  local d
  for d in "${pg_dirs[@]}"; do "${runas[@]}" "$pgbin/pg_ctl" -D "$d" -m fast -w -t 60 stop >/dev/null 2>&1 || true; done
  pg_dirs=()
}
