#!/usr/bin/env bash
# Installs what building and testing Spillway needs, from Debian's packages,
# and only what is missing. Uses sudo only when not root.
set -euo pipefail

pkgs=(gcc libc6-dev make cmake curl liblz4-dev libzstd-dev libhttp-parser-dev librdkafka-dev)
# the I/O loops send a round's answers in one io_uring submission
pkgs+=(liburing-dev)
# the postgres sink: libpq, and PostgreSQL's server binaries for its tests and bench/run.sh pg
pkgs+=(libpq-dev postgresql)
# the end-to-end power-cut test (tests/fuse): lossyfs is a FUSE filesystem
pkgs+=(pkg-config libfuse3-dev fuse3)
# views and the event-sourcing index are stored in RocksDB; rocksdb-tools
# has db_bench, the peer of bench/run.sh views
pkgs+=(librocksdb-dev rocksdb-tools)
# tests/package: promtool checks /metrics; systemd-analyze verifies the unit
pkgs+=(prometheus systemd)
# the Kafka listener decompresses gzip and snappy batches; its tests run kcat
pkgs+=(zlib1g-dev libsnappy-dev kcat)
# TLS (libssl); the openssl command makes the TLS tests' certificates
pkgs+=(libssl-dev openssl)
# the web console embeds Chart.js (build); its test drives headless Chromium
# with python3 (tests/browser), which also checks the Grafana dashboard
pkgs+=(libjs-chart.js chromium python3)
# the package test in a fresh Debian root (tests/package/test_deb_root.sh)
pkgs+=(debootstrap)
pkgs+=("$@")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
