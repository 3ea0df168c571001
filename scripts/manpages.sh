#!/usr/bin/env bash
# Writes the man pages spillway(1) and spillway-COMMAND(1) into OUTDIR from
# the binary's own --help output, the one source of the command-line
# reference (the help is printed from the same tables the options are
# parsed with, wrapped at 80 columns: src/core/help.h).
#   usage: scripts/manpages.sh SPILLWAY_BINARY OUTDIR
set -euo pipefail
export LC_ALL=C
bin=$1 out=$2
mkdir -p "$out"
ver=$("$bin" version | awk '{print $2}')

roff_text() { # the help text as literal roff lines
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

page() { # name section-title description
  local name=$1 desc=$2 file=$out/$1.1 upper
  upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
  {
    printf '.TH %s 1 "" "spillway %s" "Spillway Manual"\n' "$upper" "$ver"
    printf '.SH NAME\n%s \\- %s\n' "$name" "$desc"
    printf '.SH DESCRIPTION\n.nf\n'
    cat | roff_text
    printf '.fi\n.SH SEE ALSO\n'
    if [ "$name" = spillway ]; then
      printf '%s\n' "${cmds[@]}" | sed 's/^/.BR spillway-/; s/$/ (1)/'
    else
      printf '.BR spillway (1)\n'
    fi
    printf '\nThe HTTP API, the binary protocol and operations are described in the\ndocs/ directory of the source tree, installed under /usr/share/doc/spillway.\n'
  } > "$file"
}

help=$("$bin" --help)
# "  NAME   description" lines of the commands section, version excepted
mapfile -t cmds < <(printf '%s\n' "$help" | awk '/^commands:/ {on=1; next} on && /^$/ {exit} on && /^  [a-z]/ {print $1}' | grep -v '^version$')
printf '%s\n' "$help" | page spillway "a write-scaling engine: server and client in one binary"
for c in "${cmds[@]}"; do
  desc=$(printf '%s\n' "$help" | awk -v c="$c" '$1 == c { $1 = ""; sub(/^ +/, ""); print; exit }')
  "$bin" "$c" --help | page "spillway-$c" "$desc"
done
