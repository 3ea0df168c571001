#!/usr/bin/env bash
# The main job: installs what is missing, builds, and demonstrates the durable
# partition log on this machine by running the log benchmark briefly (the
# raw write+fdatasync limit of this disk, then the log at every ack level).
# Pass --full for the full-length benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
if [ "${1:-}" = "--full" ]; then
  exec bench/run.sh log
fi
exec bench/run.sh log --seconds 1
