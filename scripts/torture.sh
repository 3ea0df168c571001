#!/usr/bin/env bash
# Randomized long runs of the durability tests (docs/operations.md,
# "Torture runs"):
#   powerloss  build/test_powerloss: the log on the simulated disk
#              (tests/sim/simdisk.h), power cut at a random point, recovery,
#              the model check (tests/sim/model.h); runs of 100 cycles, each
#              run with a fresh random seed;
#   kill9      build/test_kill9: the real server SIGKILLed and restarted on
#              the same directory while HTTP clients (Idempotency-Key) and a
#              binary producer retry until acknowledged, with a consumer
#              group, a postgres sink, media damage while the server is down
#              and a configuration drawn per cycle; checked by the shared
#              model; runs of 100 cycles on fresh directories;
#   fusecut    build/test_fusecut: the real server on lossyfs (a FUSE
#              filesystem that loses unsynced writes on a power cut) with
#              idempotent HTTP and binary producers, an ack=written
#              producer, a consumer group and a postgres sink; runs of 20
#              cuts (skipped where FUSE cannot be mounted).
# The time is split 30/50/20 between them (power-loss cycles are cheap,
# about 1000 a minute; kill -9 cycles about 200). Usage: scripts/torture.sh
# [MINUTES] (default 30; fractions allowed, e.g. 0.5). Builds first. Prints
# per run the test's own summary line, then the totals:
#   torture: powerloss cycles=N violations=V
#   torture: kill9 cycles=N lost=L duplicated=D violations=V
#   torture: fusecut cuts=N violations=V
# and exits 1 if any run found a violation or failed. The output of a
# failing run is kept in the directory it names (its seed reproduces its
# configuration: SPW_POWERLOSS_SEED / SPW_KILL9_SEED).
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
if ! [[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "usage: scripts/torture.sh [MINUTES]" >&2
    exit 2
fi
total_s=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60); if (s < 2) s = 2; print s }')
half_s=$((total_s * 3 / 10))     # power loss
kill_s=$((total_s * 5 / 10))     # kill -9; the rest: FUSE power cuts

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build build -j2 --target test_powerloss test_kill9 spillway >/dev/null || exit 1
have_fuse=0
cmake --build build -j2 --target test_fusecut spw_lossyfs >/dev/null 2>&1 && have_fuse=1

logs=$(mktemp -d "${TMPDIR:-/tmp}/spw-torture-XXXXXX")
failed=0

field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2" | tail -1; }

# ---- power loss ----
pl_cycles=0 pl_viol=0 pl_runs=0
end=$((SECONDS + half_s))
while ((SECONDS < end)); do
    seed=$(od -An -N6 -tu8 /dev/urandom | tr -d ' ')
    out="$logs/powerloss-$seed.log"
    SPW_POWERLOSS_SEED=$seed SPW_POWERLOSS_CYCLES=100 build/test_powerloss >"$out" 2>&1
    rc=$?
    line=$(grep '^powerloss: cycles=' "$out" | tail -1)
    echo "${line:-powerloss: run with seed $seed died (exit $rc), see $out}"
    c=$(field cycles "$line")
    v=$(field violations "$line")
    pl_cycles=$((pl_cycles + ${c:-0}))
    pl_viol=$((pl_viol + ${v:-0}))
    pl_runs=$((pl_runs + 1))
    if ((rc != 0)) || [[ -z $line ]]; then
        failed=1
        echo "torture: powerloss run failed (exit $rc): $out" >&2
    else
        rm -f "$out"
    fi
done

# ---- kill -9 of the server ----
k_cycles=0 k_lost=0 k_dup=0 k_viol=0 k_runs=0
end=$((SECONDS + kill_s))
while ((SECONDS < end)); do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    left=$((end - SECONDS))
    ((left < 1)) && left=1
    out="$logs/kill9-$seed.log"
    # A run stops after 100 cycles or the time left, whichever comes first.
    SPW_KILL9_SEED=$seed SPW_KILL9_CYCLES=100 SPW_KILL9_SECONDS=$left build/test_kill9 build/spillway >"$out" 2>&1
    rc=$?
    line=$(grep '^kill9: cycles=' "$out" | tail -1)
    echo "${line:-kill9: run with seed $seed died (exit $rc), see $out}"
    c=$(field cycles "$line")
    l=$(field lost "$line")
    d=$(field duplicated "$line")
    v=$(field violations "$line")
    k_viol=$((k_viol + ${v:-0}))
    k_cycles=$((k_cycles + ${c:-0}))
    k_lost=$((k_lost + ${l:-0}))
    k_dup=$((k_dup + ${d:-0}))
    k_runs=$((k_runs + 1))
    if ((rc != 0)) || [[ -z $line ]]; then
        failed=1
        echo "torture: kill9 run failed (exit $rc): $out" >&2
    else
        rm -f "$out"
    fi
done

# ---- power cuts of the whole server on lossyfs ----
f_cuts=0 f_viol=0 f_runs=0
end=$((SECONDS + total_s - half_s - kill_s))
while ((have_fuse && SECONDS < end)); do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    seed=$((seed % 2000000000))
    out="$logs/fusecut-$seed.log"
    SPW_FUSECUT_SEED=$seed SPW_FUSECUT_CYCLES=20 build/test_fusecut build/spillway build/spw_lossyfs >"$out" 2>&1
    rc=$?
    ((rc == 77)) && { echo "fusecut: skipped (FUSE cannot be mounted here)"; rm -f "$out"; break; }
    line=$(grep '^fusecut: cycles=' "$out" | tail -1)
    echo "${line:-fusecut: run with seed $seed died (exit $rc), see $out}"
    c=$(field cycles "$line")
    v=$(field violations "$line")
    f_cuts=$((f_cuts + ${c:-0}))
    f_viol=$((f_viol + ${v:-0}))
    f_runs=$((f_runs + 1))
    if ((rc != 0)) || [[ -z $line ]]; then
        failed=1
        echo "torture: fusecut run failed (exit $rc): $out" >&2
    else
        rm -f "$out"
    fi
done

echo "torture: powerloss cycles=$pl_cycles violations=$pl_viol runs=$pl_runs"
echo "torture: kill9 cycles=$k_cycles lost=$k_lost duplicated=$k_dup violations=$k_viol runs=$k_runs"
echo "torture: fusecut cuts=$f_cuts violations=$f_viol runs=$f_runs"
if ((failed)); then
    echo "torture: FAILED; logs of the failing runs in $logs" >&2
    exit 1
fi
rmdir "$logs" 2>/dev/null
exit 0
