#!/usr/bin/env bash
# Mutation tests for the leak statistics (issue 24, item 6). Each mutation
# breaks one step of the method with a small exact edit, the statistics
# tests run, and the script prints
#   MUTATION <name> caught by <TEST>      (some test failed: good)
#   MUTATION <name> survived              (every test passed: a gap)
# then restores the file. Exits non-zero if any mutation survived or an
# anchor is missing (the code moved: update the anchor, do not skip it).
#
#   scripts/mutate-stats.sh              # every mutation
#   scripts/mutate-stats.sh normal-not-t # only the named ones
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

# name | file | exact text | replacement
MUTATIONS=(
  "no-bias-correction|src/stats/trend.rs|((n * phi_hat + 2.0) / (n - 4.0)).clamp(0.0, 1.0)|phi_hat.clamp(0.0, 1.0)"
  "normal-not-t|src/stats/trend.rs|super::student::t_sf((self.delta - floor) / self.se, self.df)|super::normal_sf((self.delta - floor) / self.se)"
  "no-leak-from-point-estimate|src/analysis/leak/mod.rs|let below = \|e: &Evidence\| e.upper < e.floor|let below = \|e: &Evidence\| e.delta < e.floor"
  "ar-order-forced-to-1|src/stats/trend.rs|let pmax = max_order.min(n / 8).max(1);|let pmax = 1;"
  "increments-taken-as-independent|src/stats/trend.rs|let rho = if o.diff_ar && sww > 0.0 {|let rho = if false && sww > 0.0 {"
  "no-per-second-check|src/analysis/leak/mod.rs|.max(r.per_second.map_or(0.0, \|s\| s.p))|"
  "no-local-level|src/stats/trend.rs|if o.local_level {|if false {"
  "plateau-ignored|src/analysis/leak/mod.rs|let leak = rejected && bounded.is_none() && (h.late_rising \|\| last);|let leak = rejected;"
  "no-leak-side-not-spent|src/analysis/leak/mod.rs|let (lower, upper) = (d.bounds(a).0, d.bounds(a_no).1);|let (lower, upper) = (d.bounds(a).0, d.bounds(policy.alpha).1);"
)

survived=0
backup=$(mktemp)
current=""
restore() { [ -n "$current" ] && cp "$backup" "$current"; current=""; }
trap 'restore; rm -f "$backup"' EXIT INT TERM

for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r name file anchor replacement <<<"${m//\\|/$'\x1f'}"
  anchor=${anchor//$'\x1f'/|}; replacement=${replacement//$'\x1f'/|}
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  count=$(grep -cF -- "$anchor" "$file")
  if [ "$count" != 1 ]; then
    echo "MUTATION $name: anchor found $count times in $file (want exactly 1): $anchor" >&2
    exit 2
  fi
  cp "$file" "$backup"; current="$file"
  ANCHOR="$anchor" REPL="$replacement" perl -0pi -e 's/\Q$ENV{ANCHOR}\E/$ENV{REPL}/' "$file"
  if cmp -s "$file" "$backup"; then echo "MUTATION $name: the edit changed nothing" >&2; exit 2; fi
  out=$(cargo test --lib -- stats:: analysis::leak:: 2>&1)
  restore
  failed=$(printf '%s\n' "$out" | sed -n 's/^test \(.*\) \.\.\. FAILED$/\1/p' | paste -sd, -)
  if [ -n "$failed" ]; then
    echo "MUTATION $name caught by $failed"
  elif printf '%s\n' "$out" | grep -q '^error'; then
    echo "MUTATION $name: the mutant does not compile" >&2
    printf '%s\n' "$out" | grep -A5 '^error' | head -20 >&2
    exit 2
  else
    echo "MUTATION $name survived"
    survived=$((survived + 1))
  fi
done
[ "$survived" -eq 0 ]
