#!/usr/bin/env bash
# What an operator and a client developer get from an install
# (docs/operations.md "Installing"), checked against this build:
#   - every command's --help is within 80 columns;
#   - packaging/spillway.conf is what `spillway serve --print-config` prints
#     (the file cannot go stale), and the server starts with it;
#   - `cmake --install` into a staging root holds the binary, the header,
#     libspillway.a/.so, spillway.pc, the man pages, the unit and the config;
#   - libspillway.so exports only spillway_* names;
#   - examples/producer.c builds with `pkg-config --cflags --libs spillway`
#     alone, shared and static, and delivers to a real server;
#   - a man page per command, and `systemd-analyze verify` accepts the unit.
# The .deb itself (scripts/package.sh) is built and installed in a fresh
# Debian root by scripts/test-slow.sh.
#   usage: test_install.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
export LC_ALL=C
src=$1 bdir=$2
bin=$bdir/spillway
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "test_install: FAIL: $*" >&2; exit 1; }

# --help within 80 columns, for every command the main help lists
cmds=$("$bin" --help | awk '/^commands:/ {on=1; next} on && /^$/ {exit} on && /^  [a-z]/ {print $1}' | grep -v '^version$')
[ -n "$cmds" ] || fail "spillway --help lists no commands"
for c in "" $cmds "stream create"; do
  # shellcheck disable=SC2086
  out=$("$bin" $c --help) || fail "spillway $c --help exited $?"
  wide=$(printf '%s\n' "$out" | awk 'length($0) > 80 {print length($0) ": " $0}')
  [ -z "$wide" ] || fail "spillway $c --help has lines over 80 columns:
$wide"
done

# the config file in the tree is the binary's own
"$bin" serve --print-config > "$tmp/conf"
diff -u "$src/packaging/spillway.conf" "$tmp/conf" >&2 ||
  fail "packaging/spillway.conf differs from 'spillway serve --print-config' (regenerate it)"

# staging install
DESTDIR="$tmp/root" cmake --install "$bdir" --prefix /usr >/dev/null
root=$tmp/root
for f in usr/bin/spillway usr/include/spillway.h usr/share/doc/spillway/LICENSE usr/share/doc/spillway/docs/api.md; do
  [ -e "$root/$f" ] || fail "install: no $f"
done
# /etc/spillway when configured for /usr (scripts/package.sh), PREFIX/etc otherwise
conf=$(find "$root" -path '*etc/spillway/spillway.conf' | head -1)
[ -n "$conf" ] || fail "install: no etc/spillway/spillway.conf"
cmp -s "$conf" "$src/packaging/spillway.conf" || fail "installed config differs from packaging/spillway.conf"
pc=$(find "$root" -name spillway.pc | head -1)
[ -n "$pc" ] || fail "install: no spillway.pc"
so=$(find "$root" -name 'libspillway.so.*.*' | head -1)
[ -n "$so" ] || fail "install: no libspillway.so"
find "$root" -name libspillway.a | grep -q . || fail "install: no libspillway.a"
unit=$(find "$root" -name spillway.service | head -1)
[ -n "$unit" ] || fail "install: no spillway.service"

# only the public names exported
exported=$(nm -D --defined-only "$so" | awk '{print $3}')
leaked=$(printf '%s\n' "$exported" | grep -v '^spillway_' || true)
[ -z "$leaked" ] || fail "libspillway.so exports non-public names: $leaked"
printf '%s\n' "$exported" | grep -qx 'spillway_producer_new' || fail "libspillway.so lacks spillway_producer_new"

# man pages: one per command, each a man page
for c in $cmds; do
  m=$(find "$root" -name "spillway-$c.1*" | head -1)
  [ -n "$m" ] || fail "no man page for spillway $c"
  head -c 200 "$m" | grep -q '^\.TH ' || fail "$m is not a man page"
done
[ -n "$(find "$root" -name 'spillway.1*')" ] || fail "no spillway(1)"

# systemd-analyze verify, with ExecStart pointing at this build's binary
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/bin/spillway|$(readlink -f "$bin")|" "$unit" > "$tmp/spillway.service"
  out=$(systemd-analyze verify --man=no "$tmp/spillway.service" 2>&1) || fail "systemd-analyze verify: $out"
  if printf '%s\n' "$out" | grep -v 'Failed to .*\(connect\|bus\)' | grep -qi 'spillway.service'; then
    fail "systemd-analyze verify: $out"
  fi
else
  echo "test_install: note: no systemd-analyze here; unit not verified"
fi

# examples/producer.c with pkg-config alone
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --define-prefix --cflags spillway) || fail "pkg-config --cflags"
libs=$(pkg-config --define-prefix --libs spillway)
slibs=$(pkg-config --define-prefix --static --libs spillway)
# shellcheck disable=SC2086
cc -o "$tmp/producer_shared" "$src/examples/producer.c" $cflags $libs || fail "build against libspillway.so"
libdir=$(dirname "$so")
# shellcheck disable=SC2086
cc -o "$tmp/producer_static" "$src/examples/producer.c" $cflags -Wl,-Bstatic $slibs -Wl,-Bdynamic -lpthread ||
  fail "build against libspillway.a"
# (whole outputs first: grep -q closing the pipe early fails the pipeline under pipefail)
deps_shared=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/producer_shared")
deps_static=$(ldd "$tmp/producer_static")
[[ $deps_shared == *libspillway.so* ]] || fail "shared build does not use libspillway.so"
[[ $deps_static == *libspillway* ]] && fail "static build needs libspillway.so"

# ... and they deliver to a real server started with the packaged config
"$bin" serve --config "$src/packaging/spillway.conf" --data "$tmp/data" --listen 127.0.0.1:0 \
  --listen-bin 127.0.0.1:0 --ready-fd 3 3>"$tmp/ready" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
[ -s "$tmp/ready" ] || fail "server did not start: $(cat "$tmp/server.log")"
read -r hport bport < "$tmp/ready"
curl -fsS -X PUT -H 'Content-Type: application/json' -d '{"partitions":2,"key":"/device"}' \
  "http://127.0.0.1:$hport/v1/streams/pkg" >/dev/null || fail "create stream"
out=$(LD_LIBRARY_PATH=$libdir "$tmp/producer_shared" "127.0.0.1:$bport" pkg 500 fsync) || fail "shared producer: $out"
printf '%s\n' "$out" | grep -q '^acknowledged 500, failed 0' || fail "shared producer: $out"
out=$("$tmp/producer_static" "127.0.0.1:$bport" pkg 500 fsync) || fail "static producer: $out"
printf '%s\n' "$out" | grep -q '^acknowledged 500, failed 0' || fail "static producer: $out"
kill "$pid"
wait "$pid" || fail "server exited $? at SIGTERM"
pid=""
echo "test_install: ok"
