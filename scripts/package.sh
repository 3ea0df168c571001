#!/usr/bin/env bash
# Builds the Debian package build/spillway_VERSION_ARCH.deb from a release
# build (docs/operations.md "Installing"): the spillway binary, the client
# library (libspillway.a, libspillway.so, spillway.pc, spillway.h), the man
# pages, the systemd unit and a commented /etc/spillway/spillway.conf.
#   usage: scripts/package.sh [BUILD_DIR]   (default build-pkg)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
src=$PWD
bdir=${1:-build-pkg}
cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$bdir" -j"$(nproc)" --target spillway spillway_lib_shared spillway_lib_static spw_man >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR="$stage/root" cmake --install "$bdir" >/dev/null
root=$stage/root
gzip -9n "$root"/usr/share/man/man1/*.1
version=$(cat VERSION)
arch=$(dpkg --print-architecture)
depends=$(for l in lz4 zstd http_parser uring rocksdb pq rdkafka; do
            f=$(ldd "$root/usr/bin/spillway" | awk -v l="lib$l.so" 'index($1, l) == 1 {print $3; exit}')
            [ -n "$f" ] && dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -1 | cut -d: -f1
          done | sort -u | paste -sd, | sed 's/,/, /g')
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CTL
Package: spillway
Version: $version
Architecture: $arch
Maintainer: Spillway developers <spillway@localhost>
Depends: libc6, $depends
Section: database
Priority: optional
Description: write-scaling engine: ingest, admit, make durable, drain
 Spillway takes writes over HTTP and a binary protocol, admits or pushes
 back, makes each write durable at the level asked (memory, page cache,
 group-committed fsync), drains the log in batches into storage and turns
 it into state users can read. Includes the C client library.
CTL
echo "/etc/spillway/spillway.conf" > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
SH
cat > "$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop spillway.service >/dev/null 2>&1 || true
fi
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"
out="$src/build/spillway_${version}_${arch}.deb"
mkdir -p "$src/build"
dpkg-deb --root-owner-group --build "$root" "$out" >/dev/null
echo "$out"
