#!/usr/bin/env bash
# Re-decides the recorded runs of a calibration with another leak.metric,
# from their samples (the verdict is a pure function of the samples and the
# policy): each run-NN/ is copied, its lab.yaml given `leak.metric: METRIC`,
# and `kernlab bench samples` replays its looks. Prints one line per run and
# a tally of verdicts by the samples per arm they were decided at.
#
#   scripts/redecide-metric.sh KERNLAB CALIBRATION_DIR METRIC [WORK]
#
# WORK (default: a temporary directory, removed) holds the copies.
set -euo pipefail
[ $# -ge 3 ] || { sed -n 2,10p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
kernlab=$1 cal=$2 metric=$3
work=${4:-$(mktemp -d)}
[ $# -ge 4 ] || trap 'rm -rf "$work"' EXIT
[ -d "$cal" ] || { echo "redecide-metric: $cal: not a directory" >&2; exit 2; }
tally=()
for run in "$cal"/run-*; do
  [ -f "$run/lab.yaml" ] || continue
  n=$(basename "$run")
  rm -rf "${work:?}/$n"
  cp -a "$run" "$work/$n"
  if grep -q '^  metric:' "$work/$n/lab.yaml"; then
    sed -i "s/^  metric:.*/  metric: $metric/" "$work/$n/lab.yaml"
  else
    sed -i "s/^leak:$/leak:\n  metric: $metric/" "$work/$n/lab.yaml"
  fi
  line=$("$kernlab" bench samples "$work/$n" 2>&1 | grep -E ': verdict ' | tail -1 || true)
  verdict=$(sed -nE 's/.*: verdict ([A-Za-z]+) .*/\1/p' <<<"$line")
  samples=$(sed -nE 's/.*\(([0-9]+) samples per arm.*/\1/p' <<<"$line")
  echo "$n ${verdict:-none} ${samples:--}"
  tally+=("${verdict:-none} ${samples:--}")
done
echo "metric $metric over $(basename "$cal"): verdict and samples per arm at the decision:"
printf '%s\n' "${tally[@]}" | sort -k1,1 -k2,2n | uniq -c
