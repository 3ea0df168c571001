#!/usr/bin/env bash
# /metrics is clean Prometheus text (docs/operations.md "Metrics"): with
# streams, a consumer group, two sinks and rejections of every kind that is
# easy to cause present, `promtool check metrics` reports nothing — every
# family has # HELP and # TYPE, and each family's samples are together —
# and the families every exporter has are there: spillway_build_info with
# the version and commit, process_cpu_seconds_total,
# process_resident_memory_bytes, process_open_fds, process_max_fds,
# process_start_time_seconds; spillway_sink_state has one 0/1 series per
# state. Skipped (77) without promtool (Debian package prometheus).
#   usage: test_metrics.sh SPILLWAY_BINARY
set -euo pipefail
export LC_ALL=C
bin=$1
command -v promtool >/dev/null || { echo "test_metrics: skipped: no promtool (apt-get install prometheus)"; exit 77; }
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "test_metrics: FAIL: $*" >&2; exit 1; }

"$bin" serve --data "$tmp/data" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 --ready-fd 3 3>"$tmp/ready" \
  2>"$tmp/server.log" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
[ -s "$tmp/ready" ] || fail "server did not start: $(cat "$tmp/server.log")"
read -r hport bport < "$tmp/ready"
u="http://127.0.0.1:$hport"
j=(-H 'Content-Type: application/json')
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

[ "$(code -X PUT "${j[@]}" -d '{"partitions":2,"key":"/k"}' "$u/v1/streams/a")" = 201 ] || fail "create a"
[ "$(code -X PUT "${j[@]}" -d '{"partitions":1}' "$u/v1/streams/b")" = 201 ] || fail "create b"
[ "$(code "${j[@]}" -d '{"k":"x","v":1}' "$u/v1/streams/a/events")" = 202 ] || fail "produce"
[ "$(code "${j[@]}" -d '{"v":2}' "$u/v1/streams/b/events")" = 202 ] || fail "produce"
[ "$(code "${j[@]}" -d '{not json' "$u/v1/streams/a/events")" = 400 ] || fail "an invalid event is 400"
[ "$(code "${j[@]}" -d '{"v":1}' "$u/v1/streams/a/events?ack=sometimes")" = 400 ] || fail "a bad ack is 400"
[ "$(code -X POST -d '' "$u/v1/streams/a/groups/g/poll?max=10&member=m")" = 200 ] || fail "group poll"
for s in one two; do
  [ "$(code -X PUT "${j[@]}" -d "{\"stream\":\"a\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:$bport\",\"stream\":\"b\"}}" \
    "$u/v1/sinks/$s")" = 201 ] || fail "create sink $s"
done

curl -fsS "$u/metrics" > "$tmp/metrics" || fail "scrape"
out=$(promtool check metrics < "$tmp/metrics" 2>&1) || true
[ -z "$out" ] || fail "promtool check metrics:
$out"

has() { grep -q "$1" "$tmp/metrics" || fail "no $1 in /metrics"; }
ver=$("$bin" version | awk '{print $2}')
has "^spillway_build_info{version=\"$ver\",commit=\"[0-9a-z-]*\"} 1$"
for f in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes process_open_fds \
         process_max_fds process_start_time_seconds; do
  has "^$f [0-9]"
done
rss=$(awk '$1 == "process_resident_memory_bytes" {print $2}' "$tmp/metrics")
[ "$rss" -gt 1000000 ] || fail "process_resident_memory_bytes $rss is not the server's"
for s in one two; do
  n=$(grep -c "^spillway_sink_state{sink=\"$s\",state=" "$tmp/metrics")
  [ "$n" -eq 4 ] || fail "spillway_sink_state has $n series for sink $s, not one per state"
  on=$(grep "^spillway_sink_state{sink=\"$s\"," "$tmp/metrics" | awk '{s += $2} END {print s}')
  [ "$on" -eq 1 ] || fail "sink $s is in $on states at once"
done
has '^spillway_rejected_total{reason="invalid"} [1-9]'
kill "$pid"
wait "$pid" || fail "server exited $? at SIGTERM"
pid=""
echo "test_metrics: ok"
