//! An A/B leak lab's top-level `report.json`: the verdict, the analysis
//! that made it, and how each arm ended.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::ExhaustionOutcome;
use crate::analysis::attribution::Site;
use crate::analysis::kind::LeakKind;
use crate::analysis::leak::{Floors, LeakAnalysis};
use crate::dump::DumpRecord;
use crate::lab::Expect;
use crate::stats::Verdict;
use crate::triage::CrashReport;

/// Version 2: per-cache evidence per operation, Holm over caches, looks
/// with α spending, the smallest detectable leak (version 1 had one
/// Theil–Sen slope per arm of a metric and a floor per hour).
pub const SCHEMA: &str = "kernlab.leak-report/2";

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmOutcome {
    /// The arm's run directory, relative to the lab's directory (the one
    /// holding this report): `module` or `baseline` (an older kernlab wrote
    /// it absolute); readers resolve either with
    /// [`LeakReport::arm_dirs`].
    pub dir: String,
    pub exit_code: i32,
    pub error: Option<String>,
    /// Failed samples in the arm (its report.json's `sample_gaps`).
    pub sample_gaps: u64,
    /// What the arm ran: its modules with their parameters, its payload
    /// and its setup. Absent in reports written before arms had their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ArmConfig>,
}

/// What one arm of an A/B lab put into its guest and ran there: the arm's
/// lab's modules, payload and setup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmConfig {
    pub modules: Vec<ArmModule>,
    pub payload: Vec<ArmPayload>,
    pub setup: Vec<String>,
}

/// A module entry of an arm: its source as the lab names it, with the
/// parameters it was loaded with.
///
/// `source` is an input of the lab, outside the run directory: as the lab
/// file wrote it (relative to the lab file, whose path is the arms'
/// `manifest.json` `lab_file`), or absolute. Provenance, never opened by a
/// reader of the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmModule {
    pub source: String,
    pub params: std::collections::BTreeMap<String, String>,
}

/// A payload entry of an arm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmPayload {
    pub src: String,
    pub dst: String,
}

impl ArmConfig {
    /// The arm of `lab` (one of [`crate::run::ab::arm_labs`]'s).
    pub fn of(lab: &crate::lab::Lab) -> ArmConfig {
        ArmConfig {
            modules: lab.modules.iter().map(|m| ArmModule { source: m.source.as_ref().map(|s| s.display().to_string()).unwrap_or_else(|| m.ko.iter().map(|k| k.display().to_string()).collect::<Vec<_>>().join(" ")), params: m.params.clone() }).collect(),
            payload: lab.payload.iter().map(|p| ArmPayload { src: p.src.display().to_string(), dst: p.dst.clone() }).collect(),
            setup: lab.setup.clone(),
        }
    }
}

/// The top-level `report.json` of an A/B lab.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeakReport {
    pub schema: String,
    pub lab: String,
    pub kernel: String,
    pub expect: Expect,
    /// `leak`, `no-leak`, `inconclusive`, or absent when an arm failed.
    pub verdict: Option<Verdict>,
    pub expectation_held: Option<bool>,
    pub exit_code: i32,
    pub floors: Floors,
    pub alpha: f64,
    /// Why the workloads ended: `decided` at a look, or `duration`.
    pub stopped: String,
    pub module: ArmOutcome,
    pub baseline: ArmOutcome,
    pub analysis: Option<LeakAnalysis>,
    /// The module arm's vmcore and its triage, when it ran out of memory:
    /// the crash-time view beside the growth measured during the run; and
    /// for a lab with an `exhaustion` section, whether it ran out at all.
    pub crash: Option<CrashView>,
    /// For a LEAK: what kind of leak, and which code (`leak.attribute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    pub secs: f64,
}

impl LeakReport {
    /// The arms' run directories, module then baseline: each arm's recorded
    /// `dir` resolved against the lab's directory `top` (a relative `module`
    /// and `baseline` since records have had them relative; an older
    /// record's absolute path that no longer exists, a moved run directory:
    /// the arm's own name under `top`).
    pub fn arm_dirs(&self, top: &Path) -> (PathBuf, PathBuf) {
        let dir = |a: &ArmOutcome, name: &str| {
            let d = super::resolve(top, Path::new(&a.dir));
            if a.dir.is_empty() || !d.is_dir() {
                top.join(name)
            } else {
                d
            }
        };
        (dir(&self.module, "module"), dir(&self.baseline, "baseline"))
    }
}

/// A LEAK's diagnosis: its kind with the evidence that decided it, and the
/// code the attribution pass named.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attribution {
    pub kind: LeakKind,
    pub evidence: Vec<String>,
    /// The sites named, the most objects first: for an allocation leak the
    /// allocating functions, for a reference leak the functions holding the
    /// references (then where the held objects were allocated).
    pub sites: Vec<Site>,
    /// The attribution pass, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<AttributionPass>,
    /// Why there was no attribution pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// The second run of a LEAK lab, instrumented: how it ran and its cost.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttributionPass {
    /// Its run directory (`attribution`, with a `module` and a `baseline`
    /// arm), relative to the lab's directory.
    pub dir: String,
    /// The caches booted with allocation traces (`slub_debug=U,…`).
    pub caches: Vec<String>,
    /// Its workload's length, seconds.
    pub duration_s: f64,
    /// What it cost: wall-clock seconds, boots and teardown included.
    pub secs: f64,
    /// `done`, or what went wrong (the verdict stands either way).
    pub status: String,
    /// What each instrument saw or why it could not tell.
    pub tried: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct CrashView {
    pub dump: Option<DumpRecord>,
    pub triage: Option<CrashReport>,
    pub triage_skipped: Option<String>,
    /// The arm's `exhaustion`: reached, or "no exhaustion within N s".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<ExhaustionOutcome>,
}

