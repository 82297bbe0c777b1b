//! A run's `report.json` ([`RunOutcome`]), built when it ends from the
//! files in its run directory (the sample series) and what it got to.

use std::path::Path;

use crate::analysis::growth::{meminfo_first_last, slab_growth};
use crate::outcome::run::{Manifest, Operations, RunOutcome, Timings, SCHEMA};
use crate::sample::rows::{self, OpsRow};
use crate::lab::Lab;

#[allow(clippy::too_many_arguments)]
pub fn build(
    dir: &Path,
    lab: &Lab,
    manifest: &Manifest,
    outcome: &str,
    exit_code: i32,
    error: Option<String>,
    samples: u64,
    sample_gaps: u64,
    timings: Timings,
) -> RunOutcome {
    let meminfo = std::fs::read_to_string(dir.join("samples/meminfo.csv")).map(|t| meminfo_first_last(&t)).unwrap_or_default();
    let top_slab_growth =
        std::fs::read_to_string(dir.join("samples/slabinfo.csv")).map(|t| slab_growth(&t, 10)).unwrap_or_default();
    let operations = lab
        .workload
        .as_ref()
        .and_then(|_| rows::read::<OpsRow>(&dir.join("samples")).ok())
        .and_then(|r| Operations::from_samples(r.iter().map(|r| (r.t, r.ops))));
    RunOutcome {
        schema: SCHEMA.to_string(),
        lab: lab.name.clone(),
        kernel: lab.kernel.clone(),
        kernel_release: manifest.kernel.as_ref().map(|k| k.release.clone()),
        accel: manifest.accel.as_ref().map(|a| a.accel.to_string()),
        outcome: outcome.into(),
        exit_code,
        error,
        samples,
        sample_gaps,
        timings,
        snapshot: manifest.boot.as_ref().and_then(|b| b.snapshot.as_ref()).map(|s| s.mode.name().to_string()),
        meminfo,
        top_slab_growth,
        dump: None,
        triage: None,
        triage_skipped: None,
        exhaustion: None,
        operations,
    }
}

