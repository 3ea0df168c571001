#!/usr/bin/env bash
# The link-direction check (docs/architecture.md "The dependency rule"):
# each layer is a static library (CMakeLists.txt); a symbol one layer's
# library leaves undefined may be defined only in its own library or in
# those of the layers scripts/layers.conf lets it include. A call against
# the direction that slips past the include check (a hand-written extern
# declaration) fails here. Prints LIBRARY: SYMBOL (defined in LIBRARY) for
# each breach and exits 1. Usage: scripts/layers_link.sh BUILD_DIR [REPO_ROOT]
set -euo pipefail
build=${1:?usage: layers_link.sh BUILD_DIR [REPO_ROOT]}
root=${2:-"$(dirname "$0")/.."}
conf="$root/scripts/layers.conf"
# A unit is what one library holds: core, os and log share spw_core; the
# library spw_wire holds the wire codec and the core files the client
# library needs too (allocation, clocks, the ring), counted as core.
unit_of() {
  case $1 in
    core|os|log) echo core ;;
    *) echo "$1" ;;
  esac
}
lib_of() {
  case $1 in
    core) echo libspw_core.a ;;
    wire) echo libspw_wire.a ;;
    client) echo libspillway_client.a ;;
    cli) echo libspw.a ;;
    *) echo "libspw_$1.a" ;;
  esac
}
# defs UNIT: the global symbols the unit defines
defs() {
  case $1 in
    core) { nm --defined-only -g "$build/libspw_core.a"
            nm -A --defined-only -g "$build/libspw_wire.a" | grep -v '/frame\.c\.o:\|:frame\.c\.o:' | sed 's/^[^ ]*: *//'; } ;;
    wire) nm -A --defined-only -g "$build/libspw_wire.a" | grep '/frame\.c\.o:\|:frame\.c\.o:' | sed 's/^[^ ]*: *//' ;;
    *) nm --defined-only -g "$build/$(lib_of "$1")" ;;
  esac 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u
}
# undefs UNIT: the symbols its library leaves undefined
undefs() {
  case $1 in
    wire) nm -A -u "$build/libspw_wire.a" | grep '/frame\.c\.o:\|:frame\.c\.o:' | sed 's/^[^ ]*: *//' ;;
    *) nm -u "$build/$(lib_of "$1")" ;;
  esac 2>/dev/null | awk '{ print $NF }' | sort -u
}
units=$(awk '/^layer / { sub(":", "", $2); print $2 }' "$conf" | while read -r l; do unit_of "$l"; done | awk '!seen[$0]++')
fails=0
for u in $units; do
  [ -f "$build/$(lib_of "$u")" ] || { echo "layers_link.sh: $build/$(lib_of "$u") missing (build first)" >&2; exit 2; }
  ok=" $u "
  for d in $(awk '$1 == "layer" { n = $2; sub(":", "", n); print n, $0 }' "$conf" | while read -r n _ _ deps; do
               [ "$(unit_of "$n")" = "$u" ] && echo "$deps"; done); do
    ok="$ok$(unit_of "$d") "
  done
  for m in $units; do
    case "$ok" in *" $m "*) continue ;; esac
    while read -r sym; do
      [ -n "$sym" ] || continue
      echo "$(lib_of "$u") ($u): $sym is defined in $(lib_of "$m") ($m), a layer $u may not use"
      fails=$((fails + 1))
    done < <(comm -12 <(undefs "$u") <(defs "$m"))
  done
done
if [ "$fails" -gt 0 ]; then echo "layers_link.sh: $fails symbol(s) used against the layer direction"; exit 1; fi
echo "layers_link.sh: every layer library uses only its own and lower layers' symbols"
