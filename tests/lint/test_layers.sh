#!/usr/bin/env bash
# scripts/layers.sh catches what it is for: on a copy of src/, include/ and
# the layer files it passes as the tree stands, then fails naming FILE:LINE
# once an upward include is added (log including a server header), fails on
# a file no layer places, and passes again when that include is listed in
# layers.allow. Usage: tests/lint/test_layers.sh REPO_ROOT
set -euo pipefail
root=$(cd "${1:?usage: test_layers.sh REPO_ROOT}" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/scripts"
cp -r "$root/src" "$root/include" "$t/"
cp "$root/scripts/layers.sh" "$root/scripts/layers.conf" "$root/scripts/layers.allow" "$t/scripts/"
fail() { echo "test_layers: $*" >&2; exit 1; }

"$t/scripts/layers.sh" "$t" >/dev/null || fail "the tree as it stands does not pass"

# an upward include: log -> catalog (catalog/catalog.h)
f=src/log/segment.c
line=$(grep -n '^#include "' "$t/$f" | tail -1 | cut -d: -f1)
sed -i "${line}a #include \"catalog/catalog.h\"" "$t/$f"
rc=0; out=$("$t/scripts/layers.sh" "$t" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "upward include: exit $rc, want 1"
printf '%s\n' "$out" | grep -q "^$f:$((line + 1)): #include \"catalog/catalog.h\": layer log may not include layer catalog" ||
  fail "upward include not named: $out"

# listed in layers.allow: accepted
echo "$f: catalog/catalog.h" >>"$t/scripts/layers.allow"
"$t/scripts/layers.sh" "$t" >/dev/null || fail "an allowed include still fails"

# a file in a directory no layer places
mkdir -p "$t/src/newdir" && echo '#include "core/error.h"' >"$t/src/newdir/x.c"
rc=0; out=$("$t/scripts/layers.sh" "$t" 2>&1) || rc=$?
[ "$rc" -eq 1 ] || fail "unplaced file: exit $rc, want 1"
printf '%s\n' "$out" | grep -q '^src/newdir/x.c:1: no layer for src/newdir/x.c' || fail "unplaced file not named: $out"
echo "test_layers: ok"
