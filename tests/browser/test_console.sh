#!/usr/bin/env bash
# The web console in a real browser (docs/operations.md "Console"): a
# server with a tokens file, a steady load (spillway bench at a fixed rate
# and a trickle of invalid events), a consumer group, a view and a sink;
# headless Chromium (Debian's chromium) driven over the DevTools protocol
# (tests/browser/cdp.py) opens the console:
#   - without a token the page asks for one (body data-state "login"); a
#     wrong token typed in is refused with a sentence, the right one opens it;
#   - with the token in the link's fragment it goes live, takes the token
#     out of the address, and Chart.js's own data (Chart.getChart on each
#     canvas) shows what the server did: events/s of all streams and of the
#     stream, the pending budget, invalid rejections, fsync latency, group
#     commit sizes, the group's, the sink's and the view's lag; the streams
#     table lists the stream, the sinks table the sink;
#   - the stream's page shows its partitions and a tail of its events;
#   - a reload starts with the charts the tab had (sessionStorage).
# Screenshots: BUILD/console.png (overview) and BUILD/console-stream.png.
# Skipped (77) when chromium or python3 is not installed (scripts/deps.sh).
#   usage: test_console.sh SPILLWAY_BINARY BUILD_DIR
set -euo pipefail
export LC_ALL=C
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
chromium=$(command -v chromium || true)
[ -n "$chromium" ] || { echo "test_console: skipped: no chromium (apt-get install chromium)"; exit 77; }
command -v python3 >/dev/null || { echo "test_console: skipped: no python3"; exit 77; }
tmp=$(mktemp -d)
pid=""
bench=""
trickle=""
cleanup() {
  for p in $trickle $bench; do kill "$p" 2>/dev/null || true; done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "test_console: FAIL: $*" >&2
  [ -f "$tmp/chromium.log" ] && tail -20 "$tmp/chromium.log" >&2
  exit 1
}

token=console-test-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
cat > "$tmp/tokens.json" <<EOF
{"tokens":[{"token":"$token","tenant":"ops","streams":["*"],"permissions":["produce","consume","admin"]}]}
EOF
"$bin" serve --data "$tmp/data" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 --tokens-file "$tmp/tokens.json" \
  --ready-fd 3 3>"$tmp/ready" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
[ -s "$tmp/ready" ] || fail "server did not start: $(cat "$tmp/server.log")"
read -r hport bport < "$tmp/ready"
u="http://127.0.0.1:$hport"
auth=(-H "Authorization: Bearer $token")
j=(-H 'Content-Type: application/json')
code() { curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$@"; }

# the console's files need no token; the API does
[ "$(curl -s -o /dev/null -w '%{http_code}' "$u/")" = 200 ] || fail "GET / without a token"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$u/v1/streams")" = 401 ] || fail "the API without a token is not 401"

[ "$(code -X PUT "${j[@]}" -d '{"partitions":3,"key":"/k","hot_keys":{"split":2,"keys":["first"]}}' \
  "$u/v1/streams/orders")" = 201 ] || fail "create orders"
[ "$(code -X PUT "${j[@]}" -d '{"partitions":1}' "$u/v1/streams/copy")" = 201 ] || fail "create copy"
[ "$(code "${j[@]}" -d '{"k":"first","v":1}' "$u/v1/streams/orders/events")" = 202 ] || fail "produce"
[ "$(code -X POST -d '' "$u/v1/streams/orders/groups/billing/poll?max=1&member=m")" = 200 ] || fail "group poll"
[ "$(code -X PUT "${j[@]}" -d '{"stream":"orders","kind":"latest"}' \
  "$u/v1/views/per_key")" = 201 ] || fail "create view"
[ "$(code -X PUT "${j[@]}" -d "{\"stream\":\"orders\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:$bport\",\"stream\":\"copy\",\"token\":\"$token\"}}" \
  "$u/v1/sinks/to_copy")" = 201 ] || fail "create sink"

"$bin" bench --server "127.0.0.1:$hport" --token "$token" --stream orders --rate 400 --duration 60 --clients 1 \
  --batch 10 --keys 20 >"$tmp/bench.log" 2>&1 &
bench=$!
( while :; do curl -s -o /dev/null "${auth[@]}" "${j[@]}" -d '{not json' "$u/v1/streams/orders/events"; sleep 0.3; done ) &
trickle=$!

# What the charts hold, read from Chart.js itself: per canvas, per dataset,
# how many values it has and the largest.
charts_js='(() => { const o = {}; for (const c of document.querySelectorAll("canvas")) { const ch = Chart.getChart(c);
  if (!ch) continue; o[c.id] = ch.data.datasets.map(d => ({label: d.label,
  n: d.data.filter(v => v !== null).length, max: Math.max(0, ...d.data.filter(v => v !== null))})); }
  return {charts: o, state: document.body.dataset.state, hash: location.hash,
  stored: !!sessionStorage.getItem("spillway.token"),
  streams: [...document.querySelectorAll("#t-streams tbody tr")].map(r => r.cells[0].textContent),
  sinks: [...document.querySelectorAll("#t-sinks tbody tr")].map(r => [r.cells[0].textContent, r.cells[3].textContent]),
  groups: [...document.querySelectorAll("#t-groups tbody tr")].map(r => r.cells[1].textContent)}; })()'
tail_js='({parts: document.querySelectorAll("#t-parts tbody tr").length,
  hot: [...document.querySelectorAll("#t-hot tbody tr")].map(r => [r.cells[0].textContent, r.cells[1].textContent,
    r.cells[4] ? r.cells[4].textContent : ""]),
  keys: [...document.querySelectorAll("#t-tail tbody tr")].map(r => r.cells[3].textContent),
  title: document.getElementById("s-title").textContent})'
reload_js='(() => { const d = Chart.getChart(document.getElementById("c-events")).data.datasets
  .find(d => d.label === "all streams"); return {polls: +document.body.dataset.polls,
  n: d ? d.data.filter(v => v !== null).length : 0}; })()'
python3 - "$u" "$token" "$tmp" "$out" "$charts_js" "$tail_js" "$reload_js" > "$tmp/steps.json" <<'EOF'
import json, sys, urllib.parse
u, token, tmp, out, charts_js, tail_js, reload_js = sys.argv[1:8]
print(json.dumps([
    {"open": u + "/"},
    {"wait": "document.body.dataset.state === 'login'", "timeout": 20},
    {"eval": "document.getElementById('login').hidden", "out": tmp + "/login_hidden.json"},
    # a wrong token typed into the form: asked again, with a sentence
    {"eval": "document.getElementById('token').value = 'wrong-token'; "
             "document.getElementById('login-form').requestSubmit(); true", "out": tmp + "/submit1.json"},
    {"wait": "document.getElementById('login-error').textContent !== '' && document.body.dataset.state === 'login'",
     "timeout": 20},
    # the right one: live
    {"eval": "document.getElementById('token').value = '" + token + "'; "
             "document.getElementById('login-form').requestSubmit(); true", "out": tmp + "/submit2.json"},
    {"wait": "document.body.dataset.state === 'live'", "timeout": 20},
    # forget it: asked again; then the link with the token in its fragment
    {"eval": "sessionStorage.clear(); true", "out": tmp + "/cleared.json"},
    {"open": "about:blank"},  # a new document: the page reads #token= as it loads
    {"open": u + "/#token=" + urllib.parse.quote(token)},
    # five scrapes: four points of every rate; the group-commit and fsync
    # charts need fsyncs in those intervals, the rejections chart a refusal
    {"wait": "+(document.body.dataset.polls || 0) >= 5 && document.body.dataset.state === 'live'", "timeout": 40},
    {"eval": charts_js, "out": tmp + "/charts.json"},
    {"screenshot": out + "/console.png"},
    {"open": u + "/#/stream/orders"},
    {"wait": "document.querySelectorAll('#t-tail tbody tr td.mono').length > 0", "timeout": 20},
    {"eval": tail_js, "out": tmp + "/tail.json"},
    {"screenshot": out + "/console-stream.png"},
    # back to the overview in a new document: the charts start with what
    # the tab saw before (more values than this document's own scrapes)
    {"open": "about:blank"},
    {"open": u + "/"},
    {"wait": "+(document.body.dataset.polls || 0) >= 1", "timeout": 20},
    {"eval": reload_js, "out": tmp + "/reload.json"},
]))
EOF
timeout 150 python3 "$here/cdp.py" "$chromium" "$tmp" "$tmp/steps.json" || fail "the browser run failed"

python3 - "$tmp" <<'EOF' || fail "what the page showed (above)"
import json, sys
tmp = sys.argv[1]
errors = []
def check(ok, what):
    if not ok:
        errors.append(what)
check(json.load(open(tmp + "/login_hidden.json")) is False, "without a token the page did not ask for one")
r = json.load(open(tmp + "/charts.json"))
check(r["state"] == "live", "the page is %s, not live" % r["state"])
check("token" not in r["hash"], "the token stayed in the address: %s" % r["hash"])
check(r["stored"], "the token is not in sessionStorage")
ch = r["charts"]
def series(chart, label):
    for d in ch.get(chart, []):
        if d["label"] == label:
            return d
    return {"n": 0, "max": 0}
def drawn(chart, label, at_least=3):
    d = series(chart, label)
    check(d["n"] >= at_least and d["max"] > 0, "chart %s, %s: %d values, max %s" % (chart, label, d["n"], d["max"]))
drawn("c-events", "all streams")
drawn("c-events", "orders")
drawn("c-pending", "budget")
drawn("c-pending", "high watermark")
drawn("c-rejected", "invalid", 1)
drawn("c-fsync", "mean", 1)
drawn("c-gc", "appends per round", 1)
drawn("c-lag", "group orders/billing")
check(series("c-lag", "sink to_copy")["n"] >= 3, "chart c-lag has no sink to_copy series: %s" % ch.get("c-lag"))
check(series("c-lag", "view per_key")["n"] >= 3, "chart c-lag has no view per_key series: %s" % ch.get("c-lag"))
check("orders" in r["streams"] and "copy" in r["streams"], "the streams table lists %s" % r["streams"])
check(["to_copy", "running"] in r["sinks"], "the sinks table lists %s" % r["sinks"])
check("billing" in r["groups"], "the groups table lists %s" % r["groups"])
t = json.load(open(tmp + "/tail.json"))
check(t["title"] == "Stream orders", "the stream page's title is %r" % t["title"])
check(t["parts"] == 3, "the stream page lists %d partitions, not 3" % t["parts"])
check(len(t["keys"]) > 0 and all(k.startswith("k") or k == "first" for k in t["keys"]),
      "the tail's keys: %s" % t["keys"][:10])
# hot keys: the listed split, and the bench's keys among the hottest of the last window, with their rate
check(["first", "listed"] == t["hot"][0][:2] if t["hot"] else False, "the hot keys table: %s" % t["hot"])
check(any(h[0].startswith("key-") and h[1] == "not split" and float(h[2] or 0) > 0 for h in t["hot"]),
      "the hot keys table has no hottest key with a rate: %s" % t["hot"])
r = json.load(open(tmp + "/reload.json"))
check(r["n"] >= r["polls"] + 3, "after a reload the events chart has %d values after %d scrapes: the tab's history was not kept" % (r["n"], r["polls"]))
for e in errors:
    print("test_console: " + e)
print(json.dumps(ch, indent=None)[:3000])
sys.exit(1 if errors else 0)
EOF
[ -s "$out/console.png" ] && [ -s "$out/console-stream.png" ] || fail "no screenshots"
kill "$pid"
wait "$pid" || fail "server exited $? at SIGTERM"
pid=""
echo "test_console: ok (screenshots: $out/console.png, $out/console-stream.png)"
