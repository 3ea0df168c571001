#!/usr/bin/env bash
# The Grafana dashboard (packaging/grafana/spillway.json) is built on what
# /metrics has: a server with all three listeners, a stream, a consumer
# group, a sink, a view, a rejection and fsyncs is scraped, and
# tests/package/check_grafana.py finds every metric name and every grouping
# or matched label the dashboard's expressions use in that scrape, and the
# panels well formed. The checker
# is shown to catch a mistake: the dashboard with one metric misspelled,
# and with a label no family has, must fail.
#   usage: test_grafana.sh SPILLWAY_BINARY SOURCE_DIR
set -euo pipefail
export LC_ALL=C
bin=$1
src=$2
command -v python3 >/dev/null || { echo "test_grafana: skipped: no python3"; exit 77; }
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "test_grafana: FAIL: $*" >&2; exit 1; }
dash=$src/packaging/grafana/spillway.json
check=$src/tests/package/check_grafana.py
[ -f "$dash" ] || fail "no $dash"

"$bin" serve --data "$tmp/data" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 --listen-kafka 127.0.0.1:0 \
  --ready-fd 3 3>"$tmp/ready" \
  2>"$tmp/server.log" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
[ -s "$tmp/ready" ] || fail "server did not start: $(cat "$tmp/server.log")"
read -r hport bport _ < "$tmp/ready"
u="http://127.0.0.1:$hport"
j=(-H 'Content-Type: application/json')
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

[ "$(code -X PUT "${j[@]}" -d '{"partitions":2,"key":"/k"}' "$u/v1/streams/a")" = 201 ] || fail "create a"
[ "$(code -X PUT "${j[@]}" -d '{"partitions":1}' "$u/v1/streams/b")" = 201 ] || fail "create b"
[ "$(code "${j[@]}" -d '{"k":"x","v":1}' "$u/v1/streams/a/events")" = 202 ] || fail "produce"
[ "$(code "${j[@]}" -d '{not json' "$u/v1/streams/a/events")" = 400 ] || fail "an invalid event is 400"
[ "$(code -X POST -d '' "$u/v1/streams/a/groups/g/poll?max=10&member=m")" = 200 ] || fail "group poll"
[ "$(code -X PUT "${j[@]}" -d "{\"stream\":\"a\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:$bport\",\"stream\":\"b\"}}" \
  "$u/v1/sinks/s")" = 201 ] || fail "create sink"
[ "$(code -X PUT "${j[@]}" -d '{"stream":"a","kind":"latest"}' "$u/v1/views/v")" = 201 ] || fail "create view"
curl -fsS "$u/metrics" > "$tmp/metrics" || fail "scrape"
kill "$pid"
wait "$pid" || fail "server exited $? at SIGTERM"
pid=""

python3 "$check" "$dash" "$tmp/metrics" || fail "the dashboard uses what /metrics does not have (above)"

# the checker catches a misspelled metric and a label no family has
sed 's/spillway_sink_lag{/spillway_sink_lags{/' "$dash" > "$tmp/bad1.json"
! cmp -s "$dash" "$tmp/bad1.json" || fail "the negative control did not change the dashboard"
out=$(python3 "$check" "$tmp/bad1.json" "$tmp/metrics") && fail "a misspelled metric passed"
grep -q 'spillway_sink_lags is not in the scrape' <<<"$out" || fail "misspelled metric: $out"
sed 's/sum by (sink) (spillway_sink_lag/sum by (sinks) (spillway_sink_lag/' "$dash" > "$tmp/bad2.json"
! cmp -s "$dash" "$tmp/bad2.json" || fail "the second negative control did not change the dashboard"
out=$(python3 "$check" "$tmp/bad2.json" "$tmp/metrics") && fail "a label no family has passed"
grep -q 'groups by sinks' <<<"$out" || fail "unknown label: $out"
echo "test_grafana: ok"
