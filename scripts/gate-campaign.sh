#!/usr/bin/env bash
# The gate targets of issue 24 (docs/method.md, "Leak verdict: measured"),
# measured on the real guest with the release build:
#   clean  the clean lab as written (khm leak=0 against no module);
#   heavy  a clean module that allocates and frees 2,048 objects per
#          operation (labs/no-leak-heavy.yaml) against no module;
#   floor  a planted leak at 1.1x the default floor (labs/leaky-floor.yaml,
#          the gate's minute) against the same module that keeps nothing.
# Each is `kernlab calibrate --arms lab`: the lab as written, RUNS times;
# the summary says where each NO-LEAK and LEAK was decided. Takes about
# RUNS x (45 + 70 + 75) s on this machine (2 cores, TCG).
#
#   scripts/gate-campaign.sh [RUNS] [OUT] [clean|heavy|floor ...]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
out=${2:-runs/gate-campaign}
shift $(( $# > 2 ? 2 : $# ))
which=("$@")
[ ${#which[@]} -eq 0 ] && which=(clean heavy floor)
cargo build --release -q || exit 2
k=target/release/kernlab
declare -A lab=([clean]=labs/no-leak-lab.yaml [heavy]=labs/no-leak-heavy.yaml [floor]=labs/leaky-floor.yaml)
status=0
for w in "${which[@]}"; do
  f=${lab[$w]:?unknown campaign $w (clean, heavy or floor)}
  echo "== $w: $k calibrate $f --arms lab --runs $runs"
  "$k" calibrate "$f" --arms lab --runs "$runs" --out "$out/$w" 2>/dev/null
  rc=$?
  # calibrate exits 100 on any LEAK: expected for the planted leak.
  case "$w:$rc" in clean:0|heavy:0|floor:0|floor:100) ;; *) echo "== $w: exit $rc"; status=1 ;; esac
done
exit $status
