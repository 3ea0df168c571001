#!/usr/bin/env bash
# The include-direction check (docs/architecture.md "The dependency rule"):
# every #include "..." in src/ and include/ must go from a file's layer to
# itself or to a layer it may depend on (scripts/layers.conf), unless the
# pair is listed in scripts/layers.allow. Prints FILE:LINE and the offending
# include for each breach and exits 1; exits 0 with one summary line when
# there is none. Includes are resolved as the compiler does with -Isrc
# -Iinclude (then next to the including file); system includes (<...>) are
# not checked. Usage: scripts/layers.sh [REPO_ROOT]
set -euo pipefail
root=${1:-"$(dirname "$0")/.."}
cd "$root"
conf=scripts/layers.conf
allow=scripts/layers.allow
[ -f "$conf" ] || { echo "layers.sh: $conf missing" >&2; exit 2; }
[ -f "$allow" ] || { echo "layers.sh: $allow missing" >&2; exit 2; }

# One line per quoted include: FILE<TAB>LINE<TAB>INCLUDED<TAB>RESOLVED
list_includes() {
  find src include -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort | while read -r f; do
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r hit; do
      ln=${hit%%:*}
      inc=$(printf '%s\n' "$hit" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
      if [ -f "src/$inc" ]; then res="src/$inc"
      elif [ -f "include/$inc" ]; then res="include/$inc"
      elif [ -f "$(dirname "$f")/$inc" ]; then res="$(dirname "$f")/$inc"
      else res="?"
      fi
      printf '%s\t%s\t%s\t%s\n' "$f" "$ln" "$inc" "$res"
    done || true
  done
}

list_includes | awk -F'\t' -v conf="$conf" -v allow="$allow" '
  function layer_of(p,   pre, best, bl) {
    best = ""; bl = 0
    for (pre in where)
      if (substr(p, 1, length(pre)) == pre && length(pre) > bl) { best = where[pre]; bl = length(pre) }
    return best
  }
  BEGIN {
    while ((getline l < conf) > 0) {
      sub(/#.*/, "", l)
      n = split(l, w, /[ \t:]+/)
      if (w[1] == "layer") {
        known[w[2]] = 1
        for (i = 3; i <= n; i++) if (w[i] != "") ok[w[2] SUBSEP w[i]] = 1
      } else if (w[1] == "path") {
        if (!(w[3] in known)) { printf "%s: path %s names no declared layer %s\n", conf, w[2], w[3] > "/dev/stderr"; bad = 2 }
        where[w[2]] = w[3]
      } else if (n > 0 && w[1] != "") {
        printf "%s: cannot read line: %s\n", conf, l > "/dev/stderr"; bad = 2
      }
    }
    while ((getline l < allow) > 0) {
      sub(/#.*/, "", l)
      if (l ~ /^[ \t]*$/) continue
      split(l, w, /:[ \t]+/)
      gsub(/[ \t]/, "", w[1]); gsub(/[ \t]/, "", w[2])
      allowed[w[1] SUBSEP w[2]] = 1; order[++na] = w[1] SUBSEP w[2]
    }
    if (bad) exit bad
  }
  {
    file = $1; line = $2; inc = $3; res = $4; checked++
    from = layer_of(file)
    if (from == "") { printf "%s:%s: no layer for %s: give its directory a \"path\" line in %s\n", file, line, file, conf; fails++; next }
    if (res == "?") next  # not found here (e.g. generated): the compiler will say
    to = layer_of(res)
    if (to == "") { printf "%s:%s: #include \"%s\": no layer for %s in %s\n", file, line, inc, res, conf; fails++; next }
    if (to == from || ((from SUBSEP to) in ok)) next
    if ((file SUBSEP inc) in allowed) { used[file SUBSEP inc] = 1; next }
    printf "%s:%s: #include \"%s\": layer %s may not include layer %s (%s)\n", file, line, inc, from, to, conf
    fails++
  }
  END {
    if (bad) exit bad
    for (i = 1; i <= na; i++) if (!(order[i] in used)) {
      split(order[i], w, SUBSEP)
      printf "layers.sh: note: %s: \"%s: %s\" matches no include any more; remove the line\n", allow, w[1], w[2]
    }
    if (fails) { printf "layers.sh: %d include(s) against the layer direction\n", fails; exit 1 }
    printf "layers.sh: %d includes checked, all in the layer direction (%d known exceptions in %s)\n", checked, na, allow
  }'
