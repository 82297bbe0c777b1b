#!/usr/bin/env bash
# The sampler's own footprint: A/A runs of the clean lab
# (labs/no-leak-lab.yaml, its baseline in both arms: no module, the tmpfs
# churn at 1,000 ops/s, 1 s sampling), and per cache the SD of the first
# differences of active_objs between samples, per arm; the table gives the
# range over all arms (RUNS pairs = 2 × RUNS arms) for each sampler
# (`monitor.sampler`) and `monitor.reclaim`. The first sample of each arm
# (taken as the workload starts) is left out. `stream` is the guest
# sampler on the VM's virtio-serial port (its transport, checked in every
# arm's manifest); `stream-ssh` is the same sampler with its records on
# its SSH channel, as on a guest without the port: the lab's setup unloads
# virtio_console first.
#
#   scripts/sampler-noise.sh [KERNLAB] [OUT]
#
# KERNLAB defaults to $CARGO_TARGET_DIR (or target)/release/kernlab; OUT to
# runs/sampler-noise/<UTC timestamp>. RUNS (3), DURATION (30s), SAMPLERS
# ("exec stream stream-ssh") and RECLAIMS ("true false") from the environment; with
# TABLE_ONLY=1 no run, only the table of what OUT holds. Runs one
# calibration at a time. Needs python3 to read the samples.
set -euo pipefail
cd "$(dirname "$0")/.."
kl=${1:-${CARGO_TARGET_DIR:-target}/release/kernlab}
out=${2:-runs/sampler-noise/$(date -u +%Y%m%dT%H%M%SZ)}
runs=${RUNS:-3}
duration=${DURATION:-30s}
mkdir -p "$out"
out=$(cd "$out" && pwd)
[ "${TABLE_ONLY:-0}" = 1 ] || for s in ${SAMPLERS:-exec stream stream-ssh}; do
  for r in ${RECLAIMS:-true false}; do
    lab="$out/lab-$s-$r.yaml"
    # The lab as written, with the sampler and reclaim set, its module
    # tree named by absolute path (the copy lives elsewhere).
    setup='' kind=$s
    if [ "$s" = stream-ssh ]; then kind=stream; setup='setup:\n  - rmmod virtio_console\n'; fi
    sed -e "s|^  reclaim: .*|  reclaim: $r\n  sampler: $kind|" -e "s|source: khm|source: $PWD/labs/khm|" -e "s|^workload:|${setup}workload:|" labs/no-leak-lab.yaml > "$lab"
    echo "== sampler $s, reclaim $r: $kl calibrate $lab --arms baseline --runs $runs --duration $duration" >&2
    "$kl" calibrate "$lab" --arms baseline --runs "$runs" --duration "$duration" --out "$out/$s-$r" >&2 || true
  done
done
python3 - "$out" <<'PY'
import csv, os, statistics, sys
out = sys.argv[1]
caches = ["dentry", "lsm_inode_cache", "proc_inode_cache", "filp", "kmalloc-96", "kmalloc-64", "kmalloc-512", "skbuff_head_cache"]
def fmt(xs):
    if not xs:
        return "—"
    lo, hi = min(xs), max(xs)
    f = lambda x: f"{x:.0f}" if x >= 10 or x == 0 else f"{x:.1f}"
    return f(lo) if f(lo) == f(hi) else f"{f(lo)}–{f(hi)}"
import json
print(f"SD of first differences of active_objs per sample, range over arms ({out})\n")
print("| sampler | transport | reclaim | arms | " + " | ".join(caches) + " |")
print("|---|---|---|---|" + "---|" * len(caches))
for row in sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))):
    sds = {c: [] for c in caches}
    arms = 0
    transports = set()
    for root, _, files in os.walk(os.path.join(out, row)):
        if "manifest.json" in files:
            transports.add(json.load(open(os.path.join(root, "manifest.json"))).get("sampler_transport") or "—")
        if "slabinfo.csv" not in files:
            continue
        series = {}
        for r in csv.DictReader(open(os.path.join(root, "slabinfo.csv"))):
            series.setdefault(r["cache"], []).append(int(r["active_objs"]))
        arms += 1
        for c in caches:
            v = series.get(c, [])[1:]
            if len(v) > 2:
                sds[c].append(statistics.pstdev([b - a for a, b in zip(v, v[1:])]))
    s, r = row.rsplit("-", 1)
    t = ", ".join(sorted(transports)) or "—"
    print(f"| `{s}` | {t} | `{r}` | {arms} | " + " | ".join(fmt(sds[c]) for c in caches) + " |")
PY
