//! What the analysis decides on and records: the basis, floors and policy
//! it is given, and the evidence, looks and verdict it returns (the
//! `analysis` of an A/B lab's `report.json`).

use serde::{Deserialize, Serialize};

use crate::stats::trend::Trend;
use crate::stats::Verdict;

/// What the fits are against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Against the workload's cumulative operation count: rates per op.
    PerOp,
    /// Against time (no operation count): rates per second.
    PerSecond,
}

impl Basis {
    /// The unit of a rate on this basis: `op` or `s`.
    pub fn per(self) -> &'static str {
        match self {
            Basis::PerOp => "op",
            Basis::PerSecond => "s",
        }
    }
}

/// The practical floors: a difference below them is not a leak worth the
/// name. Per operation when the workload counts operations, else per hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Floors {
    pub objects_per_op: f64,
    pub bytes_per_op: f64,
    pub bytes_per_hour: f64,
}

/// What the analysis needs of the lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub metric: crate::lab::Metric,
    pub floors: Floors,
    /// One-sided, family-wise over caches and looks.
    pub alpha: f64,
    /// Samples per arm the lab plans (duration / interval + 1): the looks
    /// are placed and α spent against it.
    pub planned_samples: usize,
    /// Samples left out at the start of each arm: the workload's own
    /// set-up (its directory, the first slabs of each cache it touches)
    /// is a step in both arms that is not a rate.
    pub warmup_samples: usize,
    /// Take the looks before the end (`leak.stop_early`); else one look at
    /// the end with all of α.
    pub stop_early: bool,
    /// The sampling interval, seconds (to say how long a run would need).
    pub interval_s: f64,
}

/// One arm's fit of one hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmFit {
    pub samples: usize,
    /// The value in the first and the last sample (objects, or bytes for
    /// the total).
    pub first: f64,
    pub last: f64,
    /// The trend per op (or per second); None when it could not be fitted.
    pub trend: Option<Trend>,
}

/// `null` (how serde_json writes a non-finite number) as +∞.
fn null_is_infinite<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// What kind of hypothesis a piece of evidence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The lab's metric, in bytes.
    Total,
    /// One slab cache, in objects.
    Cache,
}

/// The evidence on one hypothesis: module − baseline against its floor.
/// Rates are per op (basis `per-op`) or per second (`per-second`), in
/// objects for a cache and bytes for the total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Evidence {
    pub name: String,
    pub kind: Kind,
    /// Bytes per object (1 for the total).
    pub objsize: f64,
    pub module: ArmFit,
    pub baseline: ArmFit,
    /// Module − baseline, with its standard error and degrees of freedom
    /// (infinite when both arms' series are exactly straight: JSON has no
    /// infinity, so it is written `null` and read back infinite).
    pub delta: f64,
    pub se: f64,
    #[serde(deserialize_with = "null_is_infinite")]
    #[schemars(with = "Option<f64>")]
    pub df: f64,
    /// One-sided bounds at the look's level α_k each (a 1 − 2α_k interval).
    pub lower: f64,
    pub upper: f64,
    pub floor: f64,
    /// One-sided p-value of "at most the floor", and Holm-adjusted over the family.
    pub p: f64,
    pub p_holm: f64,
    /// Holm rejects "at most the floor": this is a leak.
    pub leak: bool,
    /// The smallest leak a look at this level finds with 80 % power, at
    /// this run's noise (same unit as `delta`).
    pub detectable: f64,
    /// `delta`, `lower`, `upper` and `detectable` in bytes.
    pub bytes: [f64; 4],
    /// Bytes per hour at the module arm's operation rate: delta, lower, upper.
    pub bytes_per_hour: Option<[f64; 3]>,
    /// The same test per second, when the arms' operation rates differ by
    /// more than `RATE_TOLERANCE`: a LEAK must show in both units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<PerSecond>,
    /// The growth stopped within the run: a rise well clear of the noise,
    /// then surely below the floor over the last two thirds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded: Option<Plateau>,
}

/// The per-second check of a hypothesis when the arms' operation rates
/// differ (objects or bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PerSecond {
    pub delta: f64,
    pub upper: f64,
    /// The per-op floor at the module arm's rate.
    pub floor: f64,
    pub p: f64,
}

/// Where a bounded growth levelled off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Plateau {
    /// Objects (bytes for the metric) held above the start, module −
    /// baseline, over the last two thirds of the run.
    pub held: f64,
    /// The module arm's level over the last two thirds of the run.
    pub level: f64,
    /// The late slope difference: its upper bound, below the floor.
    pub late_upper: f64,
}

/// One look at the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Look {
    /// Samples per arm the look used.
    pub samples: usize,
    /// The α this look spent against a false LEAK (the lower bounds and the
    /// Holm test).
    pub alpha: f64,
    /// The α this look spent against a false NO-LEAK (the upper bounds).
    /// 0 in reports written before the two sides were spent apart: those
    /// spent `alpha` on both.
    #[serde(default)]
    pub alpha_no_leak: f64,
    pub verdict: Verdict,
}

/// The looks taken and where the run was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sequential {
    /// The planned looks (samples per arm); the last is the lab's duration.
    pub planned: Vec<usize>,
    pub looks: Vec<Look>,
    /// The look (index into `looks`) that gave the verdict.
    pub decided_at: usize,
    /// Decided before the last planned look: the run may stop here.
    pub early: bool,
}

/// The smallest leak this run would have caught with 80 % power.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Detectable {
    /// The noisiest cache of the family (largest detectable objects per
    /// op), or the total when no cache was sampled.
    pub name: String,
    /// Objects per op (or per second) for a cache.
    pub objects: Option<f64>,
    /// Bytes per op (or per second).
    pub bytes: f64,
    /// Bytes per hour at the module arm's rate.
    pub bytes_per_hour: Option<f64>,
    /// The same for the lab's metric (the total), in bytes.
    pub total_bytes: Option<f64>,
    /// A leak into a cache that only the module has (no baseline noise).
    pub own_cache_objects: f64,
}

/// How soon a leak at the measured rate would exhaust a memory size.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExhaustionForecast {
    /// What memory the projection is for, e.g. `guest MemAvailable (402 MiB)` or `4 GiB`.
    pub memory: String,
    pub headroom_bytes: f64,
    /// Fastest and slowest time to exhaustion from the interval, seconds
    /// (slowest is infinite when the interval reaches zero).
    pub fastest_s: f64,
    pub slowest_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeakAnalysis {
    pub metric: String,
    pub basis: Basis,
    /// Why the rates are per second, when they are: the workload reports
    /// no operations, or only one arm does (see [`basis_note`](super::basis_note)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis_note: Option<String>,
    /// The arms' operation rates differ by more than `RATE_TOLERANCE`: what
    /// was done about it (every hypothesis tested per second too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_note: Option<String>,
    pub floors: Floors,
    pub alpha: f64,
    /// Samples per arm at the deciding look: module, baseline.
    pub samples: [usize; 2],
    /// Operations per second: module, baseline.
    pub ops_per_s: [Option<f64>; 2],
    pub verdict: Verdict,
    pub reason: String,
    /// The lab's metric.
    pub total: Option<Evidence>,
    /// Every cache of the family, the largest difference in bytes first.
    pub caches: Vec<Evidence>,
    /// Hypotheses tested (the total and every cache that changed in either arm).
    pub family: usize,
    pub detectable: Option<Detectable>,
    /// For an INCONCLUSIVE: what more would likely decide it.
    pub needs: Option<String>,
    pub sequential: Sequential,
    /// Time to exhaustion, for a LEAK only.
    pub exhaustion: Vec<ExhaustionForecast>,
}

impl LeakAnalysis {
    /// The caches Holm found leaking, largest first.
    pub fn culprits(&self) -> impl Iterator<Item = &Evidence> {
        self.caches.iter().filter(|c| c.leak)
    }
}

#[cfg(test)]
mod serde_tests {
    use super::*;

    /// Both arms' Slab exactly flat (the guest sampler on its port leaves a
    /// quiet guest's counts alone): df is infinite, written `null`, and the
    /// report must still read back (it did not: no summary, no report.html).
    #[test]
    fn an_infinite_df_round_trips_through_json() {
        let json = r#"{"name": "slab", "kind": "total", "objsize": 1.0, "module": {"samples": 9, "first": 27275264.0, "last": 27275264.0, "trend": {"n": 9, "slope": 0.0, "se": 0.0, "df": 7.0, "phi": 0.0, "model": "exact"}}, "baseline": {"samples": 9, "first": 27271168.0, "last": 27271168.0, "trend": {"n": 9, "slope": 0.0, "se": 0.0, "df": 7.0, "phi": 0.0, "model": "exact"}}, "delta": 0.0, "se": 0.0, "df": null, "lower": 0.0, "upper": 0.0, "floor": 4660.337777777778, "p": 1.0, "p_holm": 1.0, "leak": false, "detectable": 4660.337777777778, "bytes": [0.0, 0.0, 0.0, 4660.337777777778], "bytes_per_hour": [0.0, 0.0, 0.0]}"#;
        let e: Evidence = serde_json::from_str(json).unwrap();
        assert_eq!(e.df, f64::INFINITY);
        let again: Evidence = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(again, e);
    }
}
