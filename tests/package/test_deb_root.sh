#!/usr/bin/env bash
# The .deb on a fresh machine (docs/operations.md "Installing"): builds the
# package (scripts/package.sh), makes a fresh Debian 12 root (debootstrap
# --variant=minbase bookworm), installs the package there with apt (which
# pulls its dependencies from the Debian mirror), then in that root:
#   - starts `spillway serve` the way the unit's ExecStart does, with the
#     packaged /etc/spillway/spillway.conf, as an unprivileged user the way
#     the unit's DynamicUser=yes does (a uid from systemd's dynamic range,
#     owner of the StateDirectory /var/lib/spillway, no other groups),
#     on private loopback ports (the root shares the host's network);
#   - creates a stream, produces an event and reads it back with curl;
#   - compiles examples/producer.c with `pkg-config --cflags --libs
#     spillway` only, and runs it against that server;
#   - stops the server by its PID (SIGTERM: it must exit 0).
# On the host, `systemd-analyze verify` checks the packaged unit (skipped
# with a message where systemd-analyze is missing).
# Needs root (debootstrap, chroot, mounts), debootstrap (scripts/deps.sh)
# and the Debian mirror ($SPW_DEB_MIRROR, default http://deb.debian.org/debian);
# takes minutes: scripts/test-slow.sh runs it, not ctest.
#   usage: tests/package/test_deb_root.sh [BUILD_DIR]   (scripts/package.sh's, default build-pkg)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
src=$PWD
bdir=${1:-build-pkg}
mirror=${SPW_DEB_MIRROR:-http://deb.debian.org/debian}
fail() { echo "test_deb_root: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || fail "no debootstrap: run scripts/deps.sh"

tmp=$(mktemp -d)
root=$tmp/root
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  for m in "$root/dev/pts" "$root/dev" "$root/proc" "$root/sys"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  # never remove through a mount that is still there (/dev is the host's)
  if grep -q " $root/" /proc/mounts; then
    echo "test_deb_root: $root still has mounts; left in place" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
# in the root, as root
inroot() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C "$@"; }

echo "== building the package"
deb=$(scripts/package.sh "$bdir" | tail -1)
[ -f "$deb" ] || fail "scripts/package.sh made no .deb"
echo "$deb"

echo "== debootstrap --variant=minbase bookworm ($mirror)"
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$tmp/debootstrap.log" 2>&1 ||
  { tail -20 "$tmp/debootstrap.log" >&2; fail "debootstrap"; }
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
debname=$(basename "$deb")

echo "== apt-get install ./$debname"
inroot apt-get update -qq > "$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; fail "apt-get update"; }
# what the test itself uses: curl, and a compiler with pkg-config for the example
inroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "/tmp/$debname" curl ca-certificates gcc libc6-dev pkg-config >> "$tmp/apt.log" 2>&1 ||
  { tail -30 "$tmp/apt.log" >&2; fail "apt-get install ./$debname"; }
inroot dpkg -s spillway | grep -q '^Status: install ok installed' || fail "spillway is not installed"
for f in usr/bin/spillway etc/spillway/spillway.conf usr/include/spillway.h; do
  [ -e "$root/$f" ] || fail "the package has no /$f"
done
unit=$(cd "$root" && find lib usr/lib -name spillway.service 2>/dev/null | head -1)
[ -n "$unit" ] || fail "the package has no spillway.service"
inroot spillway --version

echo "== systemd-analyze verify (host)"
if command -v systemd-analyze >/dev/null; then
  sed "s|/usr/bin/spillway|$root/usr/bin/spillway|g" "$root/$unit" > "$tmp/spillway.service"
  out=$(LD_LIBRARY_PATH="$root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)" \
        systemd-analyze verify --man=no "$tmp/spillway.service" 2>&1) || fail "systemd-analyze verify: $out"
  if printf '%s\n' "$out" | grep -v 'Failed to .*\(connect\|bus\)' | grep -qi 'spillway.service'; then
    fail "systemd-analyze verify: $out"
  fi
  echo "unit verified"
else
  echo "test_deb_root: note: no systemd-analyze on this host; the unit is not verified"
fi

echo "== spillway serve as the unit starts it"
exec_start=$(sed -n 's/^ExecStart=//p' "$root/$unit")
[[ $exec_start == "/usr/bin/spillway serve "* ]] || fail "unexpected ExecStart: $exec_start"
grep -q '^DynamicUser=yes' "$root/$unit" || fail "the unit no longer uses DynamicUser: update this test"
state=$(sed -n 's/^StateDirectory=//p' "$root/$unit")
[ "$state" = spillway ] || fail "unexpected StateDirectory: $state"
# DynamicUser: a uid from systemd's dynamic range (61184-65519), its own
# group, no supplementary groups; StateDirectory: /var/lib/spillway, owned by it
uid=61234
mkdir -p "$root/var/lib/spillway"
chown "$uid:$uid" "$root/var/lib/spillway"
chmod "$(sed -n 's/^StateDirectoryMode=//p' "$root/$unit")" "$root/var/lib/spillway"
read -r -a argv <<< "$exec_start"
# the unit's command line, on private ports instead of 7700/7701
chroot "$root" /usr/bin/setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
  /usr/bin/env -i PATH=/usr/bin:/bin LC_ALL=C \
  "${argv[@]}" --listen 127.0.0.1:0 --listen-bin 127.0.0.1:0 --ready-fd 3 \
  3>"$tmp/ready" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/ready" ] && break; sleep 0.05; done
[ -s "$tmp/ready" ] || fail "server did not start: $(cat "$tmp/server.log")"
read -r hport bport < "$tmp/ready"
owner=$(stat -c %u "/proc/$pid")
[ "$owner" = "$uid" ] || fail "the server runs as uid $owner, not $uid"
[ -n "$(find "$root/var/lib/spillway" -mindepth 1 -user "$uid" | head -1)" ] ||
  fail "the server wrote nothing into /var/lib/spillway"

echo "== produce and read with curl (in the root)"
h=http://127.0.0.1:$hport
inroot curl -fsS -X PUT -H 'Content-Type: application/json' -d '{"partitions":1,"key":"/id"}' "$h/v1/streams/pkg" >/dev/null ||
  fail "create stream"
inroot curl -fsS -H 'Content-Type: application/json' -d '{"id":"fresh-root","n":1}' "$h/v1/streams/pkg/events?ack=fsync" >/dev/null ||
  fail "produce"
got=$(inroot curl -fsS "$h/v1/streams/pkg/events?partition=0&offset=0") || fail "read"
[[ $got == *'"fresh-root"'* ]] || fail "read back: $got"
echo "read back: $got"

echo "== examples/producer.c with pkg-config only (in the root)"
cp "$src/examples/producer.c" "$root/tmp/producer.c"
inroot sh -c 'cc -o /tmp/producer /tmp/producer.c $(pkg-config --cflags --libs spillway)' || fail "compile examples/producer.c"
out=$(inroot /tmp/producer "127.0.0.1:$bport" pkg 100 fsync) || fail "producer: $out"
printf '%s\n' "$out" | grep -q '^acknowledged 100, failed 0' || fail "producer: $out"
echo "$out" | head -1

echo "== stop by PID"
kill "$pid"
wait "$pid" || fail "server exited $? at SIGTERM: $(tail -5 "$tmp/server.log")"
pid=""
echo "test_deb_root: ok"
