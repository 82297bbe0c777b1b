#!/usr/bin/env bash
# The detection-limit benchmark: the fixture module (labs/leaky) keeping one
# object every N unlinks, into its own cache or a shared kmalloc cache, at
# several object sizes, under the lab defaults (churn on tmpfs at 1,000
# ops/s, 1 s sampling). Each lab runs until its verdict is decided (at most
# its duration) and the table gives the verdict, when it was decided and
# what the culprit cache measured.
#
#   scripts/bench-sensitivity.sh [KERNLAB] [OUT]
#
# KERNLAB defaults to target/release/kernlab; OUT to
# runs/sensitivity/<UTC timestamp>. Needs python3 to read the reports.
set -euo pipefail
cd "$(dirname "$0")/.."
kl=${1:-target/release/kernlab}
out=${2:-runs/sensitivity/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
# every alloc size duration
cases=(
  "100 cache 32 60s"
  "100 cache 256 60s"
  "100 cache 1024 60s"
  "100 kmalloc 32 60s"
  "100 kmalloc 256 60s"
  "100 kmalloc 1024 60s"
  "1000 cache 64 120s"
  "1000 cache 256 120s"
  "1000 kmalloc 256 120s"
  "1500 cache 256 120s"
  "3000 cache 256 120s"
)
printf '| every | allocator | size | verdict | decided after (s of workload) | culprit | Δ objects/op [interval] | run (s) |\n|---|---|---|---|---|---|---|---|\n'
for c in "${cases[@]}"; do
  read -r every alloc size dur <<<"$c"
  name="sens-$alloc-$size-$every"
  lab="$out/$name.yaml"
  sed -e "s/^name: .*/name: $name/" \
      -e "s/every: 100, alloc: cache, size: 256/every: $every, alloc: $alloc, size: $size/" \
      -e "s/^  duration: .*/  duration: $dur/" \
      -e "s#source: leaky#source: $PWD/labs/leaky#" labs/leaky-cache.yaml > "$lab"
  grep -q "every: $every, alloc: $alloc, size: $size" "$lab" || { echo "cannot make $lab from labs/leaky-cache.yaml" >&2; exit 2; }
  start=$(date +%s.%N)
  "$kl" run "$lab" --out "$out/$name" -q > "$out/$name.log" 2>&1 || true
  secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.0f}')")
  python3 - "$out/$name/report.json" "$every" "$alloc" "$size" "$secs" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); a = r.get("analysis") or {}
q = a.get("sequential") or {}
looks = q.get("looks") or []
n = looks[q["decided_at"]]["samples"] if looks else None
warm = 2
c = next((c for c in a.get("caches", []) if c["leak"]), None)
cul = c["name"] if c else "-"
d = f'{c["delta"]:.5f} [{c["lower"]:.5f} .. {c["upper"]:.5f}]' if c else "-"
t = f"{n + warm - 1}" if n else "-"
print(f'| 1/{sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} B | {r.get("verdict")} | {t} | {cul} | {d} | {sys.argv[5]} |')
PY
done
echo "runs in $out" >&2
