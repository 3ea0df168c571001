#!/usr/bin/env python3
"""Docs that run: every `curl` and `spillway` example in README.md and
docs/api.md, run against a real server, checked against the status the
docs give.

What is run (the convention is written down in docs/api.md "Examples"):
  - every fenced block tagged ```sh or ```console, in document order, one
    shell per document: a block may use what an earlier block created (a
    stream, a file, a shell variable), never what no block creates;
  - in a block with `$ ` prompts only the prompted lines (and their
    continuations) are commands, the rest is output; elsewhere every line
    that is not a comment is (part of) a command;
  - a command's trailing comment `# -> 201` gives the HTTP status its curl
    must get; a curl with none must get a 2xx. `# -> exit 1` gives the exit
    status of a `spillway` command (default 0);
  - a `spillway` command whose trailing comment says `until Ctrl-C` gets
    SIGINT after 2 s and must then exit 0;
  - a command whose trailing comment says `(needs ...)`, or every command of
    a block whose first line is such a comment, is not run: it needs what a
    single loopback server cannot give (PostgreSQL, Kafka, a second node,
    certificates); the test prints each with its reason.
localhost:7700 and 127.0.0.1:7700 become the test server's address (the
server is started on a free loopback port); `spillway` is the binary under
test with $SPILLWAY_SERVER set to that server (README's `build/spillway`
too). Each document's examples must finish within 120 s, each curl within
15 s. Besides, the command line's help is checked where the docs describe
it and no example can show it (help_checks).

  usage: test_docs.py SPILLWAY_BIN SOURCE_DIR [FILE...]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_FILES = ["README.md", "docs/api.md"]
FENCE_RUN = re.compile(r"^\s*```(sh|console)\s*$")
FENCE_END = re.compile(r"^\s*```\s*$")
EXPECT = re.compile(r"->\s*(exit\s+\d+|\d{3})")
NEEDS = re.compile(r"\((needs [^)]*)\)")
# a curl or spillway at a command position (line start, after a pipe, ;, & or $( )
CMD_WORD = re.compile(r"(^|[|;&(]\s*|\$\(\s*)(curl|(build/)?spillway)(?=\s|$)", re.M)

RUNTIME = r'''
spw_port=$1; spw_res=$2; spw_bin=$3
spw_line=0; spw_expect=""
spw_next() { spw_line=$1; spw_expect=$2; }
spw_rewrite() {
  local a=$1
  a=${a//localhost:7700/127.0.0.1:$spw_port}
  a=${a//127.0.0.1:7700/127.0.0.1:$spw_port}
  printf '%s' "$a"
}
curl() {
  local args=() a code codes want=${spw_expect:-2xx}
  for a in "$@"; do args+=("$(spw_rewrite "$a")"); done
  # the status of each URL on stderr, after what curl itself says there
  local err; err=$(mktemp)
  command curl --no-progress-meter --max-time 15 -w '%{stderr}SPWCODE%{http_code}\n' "${args[@]}" 2>"$err"
  codes=$(sed -n 's/^.*SPWCODE//p' "$err" | tr -d '\n')
  sed 's/SPWCODE[0-9]*$//' "$err" | grep -v '^$' >&2; rm -f "$err"
  code=$codes
  # one code per URL (curl URL URL ... sends several requests): each must match
  ok=ok
  [ -n "$code" ] || ok=FAIL
  while [ -n "$code" ]; do
    case $want in
      2xx) [[ ${code:0:3} == 2?? ]] ;;
      *) [[ ${code:0:3} == "$want" ]] ;;
    esac || ok=FAIL
    code=${code:3}
  done
  code=$codes
  echo "$spw_line curl $want ${code:-none} $ok" >> "$spw_res"
  [ $ok = ok ]
}
spillway() {
  local args=() a rc want=${spw_expect:-exit 0} limit=15 sig=TERM
  # "until Ctrl-C": SIGINT after 2 s, which must end it with exit 0
  [[ $want == ctrlc ]] && { want="exit 0"; limit=2; sig=INT; }
  [[ $want == exit* ]] || want="exit 0"
  for a in "$@"; do args+=("$(spw_rewrite "$a")"); done
  timeout --preserve-status -s $sig $limit "$spw_bin" "${args[@]}"; rc=$?
  [[ "exit $rc" == "$want" ]] && ok=ok || ok=FAIL
  echo "$spw_line spillway ${want// /_} exit_$rc $ok" >> "$spw_res"
  [ $ok = ok ]
}
export SPILLWAY_SERVER=http://127.0.0.1:$spw_port
'''


def quotes_open(text):
    """Whether text ends inside a single- or double-quoted string (shell rules, roughly)."""
    q = None
    i = 0
    while i < len(text):
        c = text[i]
        if q is None:
            if c == "#" and (i == 0 or text[i - 1] in " \t"):
                # a comment runs to the end of the line
                j = text.find("\n", i)
                if j < 0:
                    return False
                i = j
            elif c in "'\"":
                q = c
            elif c == "\\":
                i += 1
        elif c == q:
            q = None
        elif q == '"' and c == "\\":
            i += 1
        i += 1
    return q is not None


def trailing_comment(text):
    """The comment at the end of a command's last line, outside quotes, or ''."""
    q = None
    last = ""
    i = 0
    while i < len(text):
        c = text[i]
        if q is None:
            if c in "'\"":
                q = c
            elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
                j = text.find("\n", i)
                j = len(text) if j < 0 else j
                last = text[i:j] if j == len(text) else ""
                i = j
                continue
        elif c == q:
            q = None
        i += 1
    return last


def blocks(path):
    """(first line number, [lines]) for every runnable block of a markdown file."""
    out, cur, start = [], None, 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if cur is None:
                if FENCE_RUN.match(line):
                    cur, start = [], n + 1
            elif FENCE_END.match(line):
                out.append((start, cur))
                cur = None
            else:
                cur.append(line)
    return out


def commands(start, lines):
    """(line number, command text, trailing comment of its last line) for a block."""
    prompted = any(re.match(r"^\s*\$ ", l) for l in lines)
    cmds, cur, curline = [], None, 0
    for i, line in enumerate(lines):
        n = start + i
        if cur is None:
            s = line.strip()
            if prompted:
                if not re.match(r"^\s*\$ ", line):
                    continue
                line = re.sub(r"^\s*\$ ", "", line)
            elif not s or s.startswith("#"):
                continue
            cur, curline = line, n
        else:
            cur += "\n" + line
        last = cur.rstrip()
        if last.endswith("\\") or last.endswith("|") or last.endswith("&&") or quotes_open(cur):
            continue
        cmds.append((curline, cur, trailing_comment(cur)))
        cur = None
    if cur is not None:
        cmds.append((curline, cur, ""))
    return cmds


def help_checks(binary, ready):
    """What the docs say of the command line that the examples cannot show:
    every usage line writes --server the same way (HOST:PORT, which also
    takes a URL), and --ready-fd's help names the Kafka port the server
    writes when it has a Kafka listener (this test's server has one)."""
    bad = []
    out = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, check=True).stdout.decode()
    cmds = re.findall(r"^  ([a-z]+)  ", out.split("commands:", 1)[1].split("\n\n", 1)[0], re.M)
    if not cmds:
        bad.append("spillway --help lists no commands")
    for c in cmds:
        h = subprocess.run([binary, c, "--help"], stdout=subprocess.PIPE).stdout.decode()
        for m in re.finditer(r"--server (\S+)", h):
            if m.group(1).rstrip("],") != "HOST:PORT":
                bad.append("spillway %s --help writes '--server %s', not '--server HOST:PORT'" % (c, m.group(1)))
    serve = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE).stdout.decode()
    if len(ready) != 3:
        bad.append("--ready-fd with --listen-kafka wrote %r, not three ports" % b" ".join(ready))
    elif "KAFKA_PORT" not in serve:
        bad.append("spillway serve --help does not say --ready-fd writes the Kafka port third")
    return bad


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, src = os.path.abspath(sys.argv[1]), sys.argv[2]
    files = sys.argv[3:] or DEFAULT_FILES
    tmp = tempfile.mkdtemp(prefix="spw-docs-")
    server = None
    try:
        data, work = os.path.join(tmp, "data"), os.path.join(tmp, "work")
        os.mkdir(work)
        rfd, wfd = os.pipe()
        log = open(os.path.join(tmp, "server.log"), "w")
        server = subprocess.Popen(
            [binary, "serve", "--data", data, "--listen", "127.0.0.1:0",
             "--listen-bin", "127.0.0.1:0", "--listen-kafka", "127.0.0.1:0", "--ready-fd", str(wfd)],
            pass_fds=(wfd,), stdout=log, stderr=log)
        os.close(wfd)
        ready = b""
        deadline = time.monotonic() + 20
        while b"\n" not in ready and time.monotonic() < deadline:
            chunk = os.read(rfd, 100)
            if not chunk:
                break
            ready += chunk
        os.close(rfd)
        if not ready.split():
            print("test_docs: server did not start:\n" + open(log.name).read(), file=sys.stderr)
            return 1
        port = ready.split()[0].decode()

        ran, skipped = 0, []
        failures = help_checks(binary, ready.split())
        for rel in files:
            path = os.path.join(src, rel)
            script = [RUNTIME]
            checked = {}
            for start, lines in blocks(path):
                first = next((l for l in lines if l.strip()), "")
                block_skip = NEEDS.search(first) if first.strip().startswith("#") else None
                for n, text, comment in commands(start, lines):
                    if not CMD_WORD.search(text):
                        # setup (a variable, a file): run it, nothing to check
                        if not block_skip:
                            script.append(text)
                        continue
                    skip = block_skip or NEEDS.search(comment)
                    if skip:
                        skipped.append((rel, n, skip.group(1)))
                        continue
                    # README's build/spillway is the binary under test
                    text = re.sub(r"(^|[|;&(]\s*)build/spillway(?=\s)", r"\1spillway", text, flags=re.M)
                    m = EXPECT.search(comment)
                    want = re.sub(r"\s+", " ", m.group(1)) if m else ("ctrlc" if "until Ctrl-C" in comment else "")
                    checked[n] = want
                    script.append("spw_next %d '%s'" % (n, want))
                    script.append(text)
                    script.append("[ $? = 0 ] || true")
            res = os.path.join(tmp, "results")
            open(res, "w").close()
            sh = os.path.join(tmp, "run.sh")
            with open(sh, "w") as f:
                f.write("\n".join(script) + "\n")
            try:
                p = subprocess.run(["bash", sh, port, res, binary], cwd=work,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
                output = p.stdout.decode(errors="replace")
            except subprocess.TimeoutExpired as e:
                output = (e.stdout or b"").decode(errors="replace")
                failures.append("%s: the examples did not finish in 120 s" % rel)
            seen = set()
            for row in open(res).read().split("\n"):
                if not row:
                    continue
                f = row.split(" ")
                if len(f) != 5 or not f[0].isdigit():
                    failures.append("%s: a garbled result: %r" % (rel, row))
                    continue
                n, kind, want, got, ok = f
                seen.add(int(n))
                ran += 1
                if ok != "ok":
                    failures.append("%s:%s: %s expected %s, got %s" %
                                    (rel, n, kind, want.replace("_", " "), got.replace("_", " ")))
            for n in sorted(set(checked) - seen):
                failures.append("%s:%d: the example did not run its curl/spillway command" % (rel, n))
            if failures:
                print("---- output of %s's examples ----\n%s" % (rel, output))
        print("test_docs: %d examples ran, %d skipped" % (ran, len(skipped)))
        for rel, n, why in skipped:
            print("  skipped %s:%d (%s)" % (rel, n, why))
        for f in failures:
            print("test_docs: FAIL: " + f)
        return 1 if failures else 0
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
