#!/usr/bin/env bash
# The A/A corpus (issue 24, item 2): real arm pairs recorded on the guest
# with the stream sampler, for the block bootstrap in src/stats/aa.rs and
# the tests that resample them.
#
#   scripts/aa-corpus.sh record KERNLAB [RUNS] [DURATION] [OUT]
#       kernlab calibrate labs/no-leak-lab.yaml --arms module --full-length
#       (the clean hook module, leak=0, in both arms; every arm its whole
#       duration, one look at the end): RUNS (30) pairs of DURATION (3m)
#       into OUT (runs/aa-corpus/<UTC timestamp>).
#   scripts/aa-corpus.sh convert CALIBRATION_DIR [DEST]
#       Each run-NN/ of a calibration becomes DEST/NAME-run-NN.csv.gz
#       (DEST: tests/data/aa): header `arm,t,ops,cache,objects`, arm `a`
#       the module arm and `b` the baseline, one row per sample and cache
#       that changed in either arm (active_objs), plus `meminfo:Slab` and
#       `meminfo:SUnreclaim` (bytes), ops the arm's cumulative operation
#       count at that sample. A run that failed (no samples) is skipped
#       and named.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n 2,18p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

convert_arm() { # ARM_LETTER SAMPLES_DIR
  awk -F, -v arm="$1" '
    FNR == 1 { next }
    FILENAME ~ /ops\.csv$/ { ops[$1] = $3; next }
    FILENAME ~ /meminfo\.csv$/ { if ($3 == "Slab" || $3 == "SUnreclaim") print arm "," $1 "," ops[$1] ",meminfo:" $3 "," $4; next }
    { print arm "," $1 "," ops[$1] "," $3 "," $4 }
  ' "$2/ops.csv" "$2/meminfo.csv" "$2/slabinfo.csv"
}

convert() {
  local cal=$1 dest=${2:-tests/data/aa}
  [ -d "$cal" ] || { echo "aa-corpus: $cal: not a directory" >&2; exit 2; }
  mkdir -p "$dest"
  local name written=0
  # The A/A lab's name (`no-leak-lab-aa`), from the lab calibrate wrote first.
  name=$(sed -n 's/^name: *//p' "$cal/aa.yaml" | head -1)
  [ -n "$name" ] || { echo "aa-corpus: $cal/aa.yaml: no lab name (not a calibration directory?)" >&2; exit 2; }
  for run in "$cal"/run-*/; do
    run=${run%/}
    local a="$run/module/samples" b="$run/baseline/samples"
    if [ ! -s "$a/slabinfo.csv" ] || [ ! -s "$b/slabinfo.csv" ] || [ ! -s "$a/ops.csv" ] || [ ! -s "$b/ops.csv" ]; then
      echo "aa-corpus: $run: an arm has no samples; skipped" >&2
      continue
    fi
    local out
    out="$dest/$name-$(basename "$run").csv.gz"
    { echo "arm,t,ops,cache,objects"
      { convert_arm a "$a"; convert_arm b "$b"; } | awk -F, '
        { row[NR] = $0; c = $4; v = $5 + 0
          if (!(c in lo) || v < lo[c]) lo[c] = v
          if (!(c in hi) || v > hi[c]) hi[c] = v }
        END { for (i = 1; i <= NR; i++) { split(row[i], f, ","); if (hi[f[4]] > lo[f[4]]) print row[i] } }'
    } | gzip -9n > "$out"
    written=$((written + 1))
  done
  echo "aa-corpus: $written pairs written to $dest" >&2
}

case "${1:-}" in
  record)
    [ $# -ge 2 ] || usage
    kernlab=$2 runs=${3:-30} duration=${4:-3m}
    out=${5:-runs/aa-corpus/$(date -u +%Y%m%dT%H%M%SZ)}
    "$kernlab" calibrate labs/no-leak-lab.yaml --arms module --full-length --runs "$runs" --duration "$duration" --out "$out"
    ;;
  convert)
    [ $# -ge 2 ] || usage
    convert "$2" "${3:-}"
    ;;
  *) usage ;;
esac
