#!/usr/bin/env bash
# The statistics campaign behind docs/method.md's error-rate tables: the
# false-LEAK rate of one series' test and of a whole verdict (20 caches
# plus the metric, every look), for each noise family × n, with the
# AR(1)-only fit of before issue 24 and the method now, Monte Carlo SE
# beside each rate. Release mode: the debug tests run smaller versions.
#
#   scripts/stats-campaign.sh                 # 4,000 series pairs, 400 verdicts per cell
#   KERNLAB_CAMPAIGN_RUNS=1000 KERNLAB_CAMPAIGN_VERDICTS=200 scripts/stats-campaign.sh
set -euo pipefail
cd "$(dirname "$0")/.."
run() {
    cargo test --release --lib "$1" -- --ignored --nocapture --test-threads 1 2>/dev/null | grep -o '|.*'
}
echo "## One series' test (α 1 %, A/A pairs, noise scale 20 objects)"
run stats::sim::tests::campaign_one_series_false_leak
echo
echo "## Whole verdict (20 caches + the metric, every look, floors 0, α 1 %)"
run analysis::leak::tests::campaign_whole_verdict_false_leak
