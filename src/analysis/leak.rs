//! The leak analysis of an A/B lab, from the two arms' sample series.
//!
//! Every slab cache is a hypothesis: its active objects in each arm are
//! fitted against the workload's cumulative operation count (against time
//! when the lab has no operation count) with the autocorrelation-robust
//! trend of `stats::trend`; module − baseline is tested against the
//! practical floor, a cache missing from an arm being zero there. The lab's
//! metric (meminfo `Slab`, `SUnreclaim` or one cache's bytes) is one more
//! hypothesis, in bytes. Holm's procedure over that family keeps the chance
//! of any false LEAK at α; NO-LEAK needs every hypothesis' upper bound below
//! its floor at the Bonferroni level α/m.
//!
//! The run is looked at more than once: at planned sample counts (×1.5 from
//! 10) with α spent over the looks (`stats::multiple`), and the first look
//! that decides is the verdict, so a lab may stop as soon as it is decided.
//! Replaying the looks over the recorded series gives the same verdict
//! afterwards (`kernlab report`).
//!
//! Pure over the series, so a verdict can be recomputed from any run
//! directory.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stats::multiple::{holm_adjusted, looks, spend};
use crate::stats::trend::{difference, trend, Difference, Trend, MIN_TREND_POINTS};
use crate::stats::{self, Verdict};

/// The first look needs this many samples per arm (after the warm-up); a
/// leak lab must plan at least this many.
pub const MIN_SAMPLES: usize = 8;

/// Power at which the smallest detectable leak is stated.
pub const POWER: f64 = 0.8;

/// One arm's series, parsed from its `samples/*.csv`.
#[derive(Debug, Default, Clone)]
pub struct ArmSeries {
    /// meminfo key → (t, bytes).
    pub meminfo: BTreeMap<String, Vec<(f64, f64)>>,
    /// cache → (t, active_objs, objsize).
    pub caches: BTreeMap<String, Vec<(f64, f64, f64)>>,
    /// (t, cumulative ops).
    pub ops: Vec<(f64, f64)>,
}

impl ArmSeries {
    pub fn parse(meminfo_csv: &str, slabinfo_csv: &str, ops_csv: &str) -> Self {
        let mut s = ArmSeries::default();
        for l in meminfo_csv.lines().skip(1) {
            let f: Vec<&str> = l.split(',').collect();
            if let (4, Ok(t), Ok(v)) = (f.len(), f[0].parse(), f.get(3).unwrap_or(&"").parse()) {
                s.meminfo.entry(f[2].to_string()).or_default().push((t, v));
            }
        }
        for l in slabinfo_csv.lines().skip(1) {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() != 6 {
                continue;
            }
            if let (Ok(t), Ok(a), Ok(sz)) = (f[0].parse(), f[3].parse(), f[5].parse()) {
                s.caches.entry(f[2].to_string()).or_default().push((t, a, sz));
            }
        }
        for l in ops_csv.lines().skip(1) {
            let f: Vec<&str> = l.split(',').collect();
            if let (3, Ok(t), Ok(n)) = (f.len(), f[0].parse(), f[2].parse()) {
                s.ops.push((t, n));
            }
        }
        s
    }

    /// The sample times, in order. Each sample writes every section at once,
    /// so the longest single series has them all (a meminfo key, else a
    /// cache); this keeps the cost linear in the samples.
    pub fn times(&self) -> Vec<f64> {
        let longest = |v: &mut dyn Iterator<Item = Vec<f64>>| v.max_by_key(|t| t.len());
        let mem = longest(&mut self.meminfo.values().map(|v| v.iter().map(|p| p.0).collect()));
        let mut times = match mem {
            Some(t) if !t.is_empty() => t,
            _ => longest(&mut self.caches.values().map(|v| v.iter().map(|p| p.0).collect())).unwrap_or_default(),
        };
        times.sort_by(|a, b| a.total_cmp(b));
        times.dedup();
        times
    }

    /// The (t, bytes) series of a metric: `slab`, `sunreclaim`, `cache:NAME`.
    /// A cache this arm never had is zero at each of its sample times.
    pub fn metric(&self, metric: &str) -> Vec<(f64, f64)> {
        match metric {
            "slab" => self.meminfo.get("Slab").cloned().unwrap_or_default(),
            "sunreclaim" => self.meminfo.get("SUnreclaim").cloned().unwrap_or_default(),
            m => {
                let name = m.strip_prefix("cache:").unwrap_or(m);
                match self.caches.get(name) {
                    Some(rows) => rows.iter().map(|&(t, a, sz)| (t, a * sz)).collect(),
                    None => self.times().into_iter().map(|t| (t, 0.0)).collect(),
                }
            }
        }
    }


    /// The series without its first `k` sample times (the warm-up).
    pub fn skipped(&self, k: usize) -> ArmSeries {
        if k == 0 {
            return self.clone();
        }
        let times = self.times();
        let Some(&from) = times.get(k) else { return ArmSeries::default() };
        ArmSeries {
            meminfo: self.meminfo.iter().map(|(n, v)| (n.clone(), v.iter().copied().filter(|p| p.0 >= from).collect())).collect(),
            caches: self.caches.iter().map(|(n, v)| (n.clone(), v.iter().copied().filter(|p| p.0 >= from).collect())).collect(),
            ops: self.ops.iter().copied().filter(|p| p.0 >= from).collect(),
        }
    }

    /// The series up to (and including) the `n`-th sample time.
    pub fn truncated(&self, n: usize) -> ArmSeries {
        let times = self.times();
        let Some(&cut) = times.get(n.saturating_sub(1)) else { return self.clone() };
        ArmSeries {
            meminfo: self.meminfo.iter().map(|(k, v)| (k.clone(), v.iter().copied().filter(|p| p.0 <= cut).collect())).collect(),
            caches: self.caches.iter().map(|(k, v)| (k.clone(), v.iter().copied().filter(|p| p.0 <= cut).collect())).collect(),
            ops: self.ops.iter().copied().filter(|p| p.0 <= cut).collect(),
        }
    }

    /// Operations per second over the run (first to last sample).
    pub fn ops_rate(&self) -> Option<f64> {
        let (a, b) = (self.ops.first()?, self.ops.last()?);
        (b.0 > a.0 && b.1 > a.1).then(|| (b.1 - a.1) / (b.0 - a.0))
    }

    /// Total operations over the run.
    pub fn ops_total(&self) -> Option<f64> {
        let (a, b) = (self.ops.first()?, self.ops.last()?);
        (b.1 > a.1).then_some(b.1 - a.1)
    }

    /// The regressor of every fit: the cumulative op count at each sample
    /// time (per-op basis), or the time itself. None where a sample has no
    /// op count.
    fn x(&self, times: &[f64], basis: Basis) -> Option<Vec<f64>> {
        match basis {
            Basis::PerSecond => Some(times.to_vec()),
            Basis::PerOp => at_times(self.ops.iter().copied(), times).into_iter().collect(),
        }
    }

    /// A cache's objects at each of `times` (0 where the cache was absent).
    fn objects(&self, cache: &str, times: &[f64]) -> Vec<f64> {
        match self.caches.get(cache) {
            Some(rows) => at_times(rows.iter().map(|r| (r.0, r.1)), times).into_iter().map(|v| v.unwrap_or(0.0)).collect(),
            None => vec![0.0; times.len()],
        }
    }

    fn objsize(&self, cache: &str) -> Option<f64> {
        self.caches.get(cache).and_then(|r| r.last()).map(|r| r.2)
    }
}

/// The values of a time-ordered series at each of `times` (also ordered):
/// a merge, linear in both.
fn at_times(rows: impl Iterator<Item = (f64, f64)>, times: &[f64]) -> Vec<Option<f64>> {
    let mut out = vec![None; times.len()];
    let mut i = 0;
    for (t, v) in rows {
        while i < times.len() && times[i] < t - 1e-9 {
            i += 1;
        }
        if i < times.len() && (times[i] - t).abs() < 1e-9 {
            out[i] = Some(v);
        }
    }
    out
}

/// What the fits are against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Floors {
    pub objects_per_op: f64,
    pub bytes_per_op: f64,
    pub bytes_per_hour: f64,
}

/// What the analysis needs of the lab.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub metric: String,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmFit {
    pub samples: usize,
    /// The value in the first and the last sample (objects, or bytes for
    /// the total).
    pub first: f64,
    pub last: f64,
    /// The trend per op (or per second); None when it could not be fitted.
    pub trend: Option<Trend>,
}

/// What kind of hypothesis a piece of evidence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub name: String,
    pub kind: Kind,
    /// Bytes per object (1 for the total).
    pub objsize: f64,
    pub module: ArmFit,
    pub baseline: ArmFit,
    /// Module − baseline, with its standard error and degrees of freedom.
    pub delta: f64,
    pub se: f64,
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
}

/// One look at the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// Samples per arm the look used.
    pub samples: usize,
    /// The α this look spent.
    pub alpha: f64,
    pub verdict: Verdict,
}

/// The looks taken and where the run was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exhaustion {
    /// What memory the projection is for, e.g. `guest MemAvailable (402 MiB)` or `4 GiB`.
    pub memory: String,
    pub headroom_bytes: f64,
    /// Fastest and slowest time to exhaustion from the interval, seconds
    /// (slowest is infinite when the interval reaches zero).
    pub fastest_s: f64,
    pub slowest_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeakAnalysis {
    pub metric: String,
    pub basis: Basis,
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
    pub exhaustion: Vec<Exhaustion>,
}

impl LeakAnalysis {
    /// The caches Holm found leaking, largest first.
    pub fn culprits(&self) -> impl Iterator<Item = &Evidence> {
        self.caches.iter().filter(|c| c.leak)
    }
}

/// One look's outcome, before the sequential bookkeeping.
struct LookResult {
    basis: Basis,
    samples: [usize; 2],
    ops_per_s: [Option<f64>; 2],
    total: Option<Evidence>,
    caches: Vec<Evidence>,
    verdict: Verdict,
    reason: String,
    detectable: Option<Detectable>,
    needs: Option<String>,
}

fn arm_fit(x: &[f64], y: &[f64]) -> ArmFit {
    ArmFit {
        samples: y.len(),
        first: y.first().copied().unwrap_or(0.0),
        last: y.last().copied().unwrap_or(0.0),
        trend: trend(x, y).ok(),
    }
}

/// The trend of an arm, or exact zero when the series is all zeros (a
/// cache this arm never had).
fn arm_trend(f: &ArmFit, ys: &[f64]) -> Option<Trend> {
    if ys.iter().all(|v| *v == 0.0) {
        return Some(Trend::zero(ys.len()));
    }
    f.trend.clone()
}

/// Which basis the two arms allow: per op when both count operations at
/// every sample.
pub fn basis_of(module: &ArmSeries, baseline: &ArmSeries) -> Basis {
    let counts = |a: &ArmSeries| {
        let t = a.times();
        a.ops_total().is_some() && a.x(&t, Basis::PerOp).is_some()
    };
    if counts(module) && counts(baseline) {
        Basis::PerOp
    } else {
        Basis::PerSecond
    }
}

fn look(module: &ArmSeries, baseline: &ArmSeries, policy: &Policy, a: f64) -> LookResult {
    let basis = basis_of(module, baseline);
    let (tm, tb) = (module.times(), baseline.times());
    let samples = [tm.len(), tb.len()];
    let ops_per_s = [module.ops_rate(), baseline.ops_rate()];
    let inconclusive = |reason: String| LookResult {
        basis,
        samples,
        ops_per_s,
        total: None,
        caches: Vec::new(),
        verdict: Verdict::Inconclusive,
        reason,
        detectable: None,
        needs: None,
    };
    let (Some(xm), Some(xb)) = (module.x(&tm, basis), baseline.x(&tb, basis)) else {
        return inconclusive("the operation counts do not cover the samples".into());
    };
    if tm.len() < MIN_TREND_POINTS || tb.len() < MIN_TREND_POINTS {
        return inconclusive(format!(
            "too little data: {} module and {} baseline samples (a fit needs {MIN_TREND_POINTS})",
            tm.len(),
            tb.len()
        ));
    }
    let per_hour_of = |v: f64| match basis {
        Basis::PerOp => ops_per_s[0].map(|r| v * r * 3600.0),
        Basis::PerSecond => Some(v * 3600.0),
    };
    let floor_bytes = match basis {
        Basis::PerOp => policy.floors.bytes_per_op,
        Basis::PerSecond => policy.floors.bytes_per_hour / 3600.0,
    };

    // The family: the metric (in bytes) and every cache that changed in
    // either arm. A cache constant in both cannot show a leak at all.
    let mut raw: Vec<(String, Kind, f64, ArmFit, ArmFit, Difference, f64)> = Vec::new();
    let metric_values = |arm: &ArmSeries, times: &[f64]| -> Vec<f64> {
        at_times(arm.metric(&policy.metric).into_iter(), times).into_iter().map(|v| v.unwrap_or(0.0)).collect()
    };
    let (ym, yb) = (metric_values(module, &tm), metric_values(baseline, &tb));
    let (fm, fb) = (arm_fit(&xm, &ym), arm_fit(&xb, &yb));
    let mut errors = Vec::new();
    match (arm_trend(&fm, &ym), arm_trend(&fb, &yb)) {
        (Some(a_), Some(b_)) => raw.push((policy.metric.clone(), Kind::Total, 1.0, fm, fb, difference(&a_, &b_), floor_bytes)),
        _ => errors.push(format!("the {} series could not be fitted", policy.metric)),
    }
    let names: BTreeSet<&String> = module.caches.keys().chain(baseline.caches.keys()).collect();
    for name in names {
        let (om, ob) = (module.objects(name, &tm), baseline.objects(name, &tb));
        let changed = |v: &[f64]| v.iter().any(|x| *x != v[0]);
        if !changed(&om) && !changed(&ob) {
            continue;
        }
        let objsize = module.objsize(name).or_else(|| baseline.objsize(name)).unwrap_or(1.0).max(1.0);
        let (fm, fb) = (arm_fit(&xm, &om), arm_fit(&xb, &ob));
        let (Some(a_), Some(b_)) = (arm_trend(&fm, &om), arm_trend(&fb, &ob)) else { continue };
        let floor = match basis {
            Basis::PerOp => policy.floors.objects_per_op.min(policy.floors.bytes_per_op / objsize),
            Basis::PerSecond => floor_bytes / objsize,
        };
        raw.push((name.clone(), Kind::Cache, objsize, fm, fb, difference(&a_, &b_), floor));
    }
    if raw.is_empty() {
        return inconclusive(format!("too little data: {}", errors.join("; ")));
    }
    let m = raw.len();
    let p: Vec<f64> = raw.iter().map(|r| r.5.p_above(r.6)).collect();
    let adj = holm_adjusted(&p);
    let bonf = a / m as f64;
    let mut ev: Vec<Evidence> = raw
        .into_iter()
        .zip(p.iter().zip(&adj))
        .map(|((name, kind, objsize, module, baseline, d, floor), (&p, &p_holm))| {
            let (lower, upper) = d.bounds(a);
            let detectable = d.detectable(floor, bonf, POWER);
            let bytes = [d.delta * objsize, lower * objsize, upper * objsize, detectable * objsize];
            let bytes_per_hour = match (per_hour_of(bytes[0]), per_hour_of(bytes[1]), per_hour_of(bytes[2])) {
                (Some(x), Some(y), Some(z)) => Some([x, y, z]),
                _ => None,
            };
            Evidence {
                name,
                kind,
                objsize,
                module,
                baseline,
                delta: d.delta,
                se: d.se,
                df: d.df,
                lower,
                upper,
                floor,
                p,
                p_holm,
                leak: p_holm <= a,
                detectable,
                bytes,
                bytes_per_hour,
            }
        })
        .collect();
    // Simultaneous upper bounds for NO-LEAK: every hypothesis below its
    // floor at α/m.
    let all_below = ev.iter().all(|e| {
        let d = Difference { delta: e.delta, se: e.se, df: e.df };
        d.bounds(bonf).1 < e.floor
    });
    let total = ev.iter().position(|e| e.kind == Kind::Total).map(|i| ev.remove(i));
    ev.sort_by(|x, y| y.bytes[0].total_cmp(&x.bytes[0]));
    let unit = match basis {
        Basis::PerOp => "op",
        Basis::PerSecond => "s",
    };
    let leaking: Vec<&Evidence> = total.iter().chain(ev.iter()).filter(|e| e.leak).collect();
    let (verdict, reason) = if let Some(first) = leaking.iter().min_by(|x, y| x.p_holm.total_cmp(&y.p_holm)) {
        let what = if first.kind == Kind::Cache { "objects" } else { "bytes" };
        (
            Verdict::Leak,
            format!(
                "{} {} grows {} {what}/{unit} [{} .. {}] more than in the baseline, above its floor {} (Holm-adjusted p {:.1e} over {m} hypotheses at α {:.2e}){}",
                if first.kind == Kind::Cache { "cache" } else { "metric" },
                first.name,
                num(first.delta),
                num(first.lower),
                num(first.upper),
                num(first.floor),
                first.p_holm,
                a,
                if leaking.len() > 1 { format!("; {} hypotheses above their floors", leaking.len()) } else { String::new() }
            ),
        )
    } else if all_below {
        (Verdict::NoLeak, format!("all {m} hypotheses (the {} and every cache that changed) stay below their floors at α {:.2e} each", policy.metric, bonf))
    } else {
        // The hypothesis furthest from a decision, in standard errors.
        let z = |e: &Evidence| if e.se == 0.0 { f64::NEG_INFINITY } else { (e.upper - e.floor) / e.se };
        let worst = total
            .iter()
            .chain(ev.iter())
            .max_by(|x, y| z(x).total_cmp(&z(y)))
            .expect("the family is not empty");
        let what = if worst.kind == Kind::Cache { "objects" } else { "bytes" };
        (
            Verdict::Inconclusive,
            format!(
                "{} is {} {what}/{unit} [{} .. {}] against a floor of {}: neither surely above nor surely below",
                worst.name,
                num(worst.delta),
                num(worst.lower),
                num(worst.upper),
                num(worst.floor)
            ),
        )
    };
    let detectable = {
        let noisiest = ev.iter().max_by(|x, y| x.detectable.total_cmp(&y.detectable));
        let base = noisiest.or(total.as_ref());
        base.map(|e| Detectable {
            name: e.name.clone(),
            objects: (e.kind == Kind::Cache).then_some(e.detectable),
            bytes: e.bytes[3],
            bytes_per_hour: per_hour_of(e.bytes[3]),
            total_bytes: total.as_ref().map(|t| t.bytes[3]),
            own_cache_objects: match basis {
                Basis::PerOp => policy.floors.objects_per_op,
                Basis::PerSecond => floor_bytes,
            },
        })
    };
    let needs = (verdict == Verdict::Inconclusive).then(|| needs(total.iter().chain(ev.iter()), samples[0].min(samples[1]), policy, bonf)).flatten();
    LookResult { basis, samples, ops_per_s, total, caches: ev, verdict, reason, detectable, needs }
}

/// What more would likely decide an INCONCLUSIVE: the hypothesis furthest
/// from a decision, and the samples at which its interval would clear its
/// floor if the standard error fell like 1/n (between a random walk's
/// 1/√n and independent noise's 1/n^1.5 against a growing regressor).
fn needs<'a>(ev: impl Iterator<Item = &'a Evidence>, n: usize, policy: &Policy, a: f64) -> Option<String> {
    let mut worst: Option<(f64, &Evidence)> = None;
    for e in ev {
        let gap = (e.delta - e.floor).abs();
        if e.se == 0.0 {
            continue;
        }
        let t = stats::student::t_quantile(1.0 - a, e.df);
        let factor = if gap == 0.0 { f64::INFINITY } else { (t * e.se / gap).max(1.0) };
        let blocks = if e.delta > e.floor { !e.leak } else { e.delta + t * e.se >= e.floor };
        if blocks && worst.is_none_or(|(f, _)| factor > f) {
            worst = Some((factor, e));
        }
    }
    let (factor, e) = worst?;
    if !factor.is_finite() || factor > 1000.0 {
        return Some(format!("{} sits on its floor: no practical run length would decide it; widen leak.floor or change the workload", e.name));
    }
    let samples = (n as f64 * factor).ceil() as usize;
    let secs = samples.saturating_sub(1) as f64 * policy.interval_s;
    let side = if e.delta > e.floor { "LEAK" } else { "NO-LEAK" };
    Some(format!(
        "{}: about {samples} samples per arm ({:.1}× this run; workload.duration ≈ {}) would likely decide it ({side} by the estimate so far)",
        e.name,
        factor,
        humantime::format_duration(std::time::Duration::from_secs(secs.ceil() as u64))
    ))
}

/// Named machine sizes for the time-to-exhaustion projection.
const MACHINES: [(&str, f64); 2] = [("a 4 GiB server", 4.0 * 1073741824.0), ("a 64 GiB server", 64.0 * 1073741824.0)];

/// The planned looks, in samples per arm after the warm-up: ×1.5 from
/// `MIN_SAMPLES` up to the lab's planned samples, or that one look alone
/// without `stop_early`.
pub fn planned_looks(policy: &Policy) -> Vec<usize> {
    let n_max = policy.planned_samples.saturating_sub(policy.warmup_samples).max(MIN_SAMPLES);
    if policy.stop_early {
        looks(MIN_SAMPLES, n_max)
    } else {
        vec![n_max]
    }
}

/// Analyses the two arms look by look. `finished`: the run is over, so the
/// last look uses every sample and spends what α is left; otherwise only the
/// planned looks the data reach are taken (the watcher of a running lab).
pub fn analyze(module: &ArmSeries, baseline: &ArmSeries, policy: &Policy, finished: bool) -> LeakAnalysis {
    let (module, baseline) = (&module.skipped(policy.warmup_samples), &baseline.skipped(policy.warmup_samples));
    let planned = planned_looks(policy);
    let n_avail = module.times().len().min(baseline.times().len());
    let mut taken: Vec<Look> = Vec::new();
    let mut spent = 0.0;
    let mut result: Option<(LookResult, f64, usize)> = None;
    for k in 0..planned.len().saturating_sub(1) {
        let n = planned[k];
        if n > n_avail || (finished && n == n_avail) {
            break;
        }
        let a = spend(policy.alpha, &planned, k);
        spent += a;
        let r = look(&module.truncated(n), &baseline.truncated(n), policy, a);
        taken.push(Look { samples: n, alpha: a, verdict: r.verdict });
        if r.verdict != Verdict::Inconclusive {
            result = Some((r, a, taken.len() - 1));
            break;
        }
    }
    let mut early = result.is_some();
    if result.is_none() {
        let a = (policy.alpha - spent).max(0.0);
        let r = look(module, baseline, policy, a);
        if finished || n_avail >= *planned.last().unwrap_or(&0) {
            taken.push(Look { samples: n_avail, alpha: a, verdict: r.verdict });
            early = false;
        }
        let at = taken.len().saturating_sub(1);
        result = Some((r, a, at));
    }
    let (r, _a, decided_at) = result.expect("set above");
    let exhaustion = if r.verdict == Verdict::Leak { exhaustion(module, &r) } else { Vec::new() };
    let family = r.caches.len() + usize::from(r.total.is_some());
    LeakAnalysis {
        metric: policy.metric.clone(),
        basis: r.basis,
        floors: policy.floors,
        alpha: policy.alpha,
        samples: r.samples,
        ops_per_s: r.ops_per_s,
        verdict: r.verdict,
        reason: r.reason,
        total: r.total,
        caches: r.caches,
        family,
        detectable: r.detectable,
        needs: r.needs,
        sequential: Sequential { planned, looks: taken, decided_at, early },
        exhaustion,
    }
}

/// Time to exhaustion for a LEAK: from the metric's interval when the
/// metric itself is above its floor, else from the leaking caches' bytes
/// (their lower bounds added, as are their upper ones), per op × the
/// module arm's rate, or per second.
fn exhaustion(module: &ArmSeries, r: &LookResult) -> Vec<Exhaustion> {
    let (lo, hi) = match &r.total {
        Some(t) if t.leak => (t.lower, t.upper),
        _ => r.caches.iter().filter(|c| c.leak).fold((0.0, 0.0), |(l, u), c| (l + c.bytes[1], u + c.bytes[2])),
    };
    if hi <= 0.0 {
        return Vec::new();
    }
    let rate = match r.basis {
        Basis::PerOp => r.ops_per_s[0].unwrap_or(0.0),
        Basis::PerSecond => 1.0,
    };
    let (lo, hi) = (lo * rate, hi * rate);
    let mut out = Vec::new();
    if let Some(avail) = module.meminfo.get("MemAvailable").and_then(|v| v.last()) {
        let mut sizes = vec![(format!("guest MemAvailable ({:.0} MiB)", avail.1 / 1048576.0), avail.1)];
        sizes.extend(MACHINES.iter().map(|(n, b)| (n.to_string(), *b)));
        for (memory, headroom) in sizes {
            if let Some((fastest_s, slowest_s)) = stats::time_to_exhaustion(headroom, lo, hi) {
                out.push(Exhaustion { memory, headroom_bytes: headroom, fastest_s, slowest_s });
            }
        }
    }
    out
}

/// A number with the digits a rate needs: 3 significant figures.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-5..6).contains(&mag) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - mag).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A verdict needs most of an arm's samples: when more than a third of the
/// sampling attempts failed (SSH lost, a hung guest), the arm's series is
/// too holey to trust and the reason says which arm and how many.
pub fn gaps_overrule(arm: &str, samples: usize, gaps: u64) -> Option<String> {
    let attempts = samples as u64 + gaps;
    (gaps * 3 > attempts).then(|| format!("the {arm} arm missed {gaps} of {attempts} samples (more than a third): too many gaps for a verdict"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::sim::{Noise, Rng};

    /// A policy like the lab defaults: floors 0.0005 objects/op and 4
    /// bytes/op, α 0.01, a 30 s lab at 1 s.
    fn policy(planned: usize) -> Policy {
        Policy {
            metric: "slab".into(),
            floors: Floors { objects_per_op: 0.0005, bytes_per_op: 4.0, bytes_per_hour: 16.0 * 1048576.0 },
            alpha: 0.01,
            planned_samples: planned,
            warmup_samples: 0,
            stop_early: true,
            interval_s: 1.0,
        }
    }

    /// A simulated arm: `n` samples a second apart at ~1,000 ops/s; caches
    /// given as (name, objsize, objects per op, noise scale, noise kind);
    /// Slab is the sum of the caches' bytes plus page-sized noise.
    fn arm(n: usize, caches: &[(&str, f64, f64, f64, Noise)], rng: &mut Rng) -> ArmSeries {
        let mut s = ArmSeries::default();
        let mut ops = 0.0;
        let mut slab = vec![50e6; n];
        for k in 0..n {
            s.ops.push((k as f64, ops));
            ops += 1000.0 * (0.95 + 0.1 * rng.uniform());
        }
        for &(name, size, rate, scale, noise) in caches {
            let e = noise.series(n, rng);
            let rows: Vec<(f64, f64, f64)> = (0..n).map(|k| (k as f64, (1000.0 + rate * s.ops[k].1 + scale * e[k]).round().max(0.0), size)).collect();
            for (k, r) in rows.iter().enumerate() {
                slab[k] += r.1 * size;
            }
            s.caches.insert(name.to_string(), rows);
        }
        let e = Noise::Ar1(0.5).series(n, rng);
        s.meminfo.insert("Slab".into(), (0..n).map(|k| (k as f64, slab[k] + 4096.0 * 4.0 * e[k])).collect());
        s.meminfo.insert("MemAvailable".into(), (0..n).map(|k| (k as f64, 400e6 - slab[k] + 50e6)).collect());
        s
    }

    fn shared(noise: Noise) -> Vec<(&'static str, f64, f64, f64, Noise)> {
        vec![("dentry", 192.0, 0.0, 30.0, noise), ("kmalloc-64", 64.0, 0.0, 20.0, noise), ("filp", 256.0, 0.0, 10.0, noise)]
    }

    #[test]
    fn a_leak_into_a_cache_only_the_module_has_is_found_and_named() {
        let mut rng = Rng::new(1);
        let mut m = shared(Noise::Ar1(0.5));
        m.push(("leaky_obj", 256.0, 0.01, 0.0, Noise::Independent));
        let a = arm(31, &m, &mut rng);
        let b = arm(31, &shared(Noise::Ar1(0.5)), &mut rng);
        let r = analyze(&a, &b, &policy(31), true);
        assert_eq!(r.verdict, Verdict::Leak, "{}", r.reason);
        let c = r.culprits().next().expect("a culprit");
        assert_eq!(c.name, "leaky_obj");
        assert!((c.delta - 0.01).abs() < 0.0005, "{c:?}");
        assert_eq!((c.baseline.first, c.baseline.last), (0.0, 0.0), "absent from the baseline: zero there");
        assert!(!r.exhaustion.is_empty(), "a LEAK projects exhaustion");
        // The same cache as the lab's metric is decided too (it is empty,
        // not missing, in the baseline).
        let mut p = policy(31);
        p.metric = "cache:leaky_obj".into();
        let r = analyze(&a, &b, &p, true);
        let t = r.total.as_ref().unwrap();
        assert_eq!((t.baseline.first, t.baseline.last), (0.0, 0.0));
        assert!((t.delta - 2.56).abs() < 0.2 && t.lower > 2.0, "{t:?}");
    }

    #[test]
    fn a_cache_growing_alike_in_both_arms_is_not_a_culprit() {
        let mut rng = Rng::new(2);
        let mut caches = shared(Noise::Independent);
        caches.push(("ext4_inode_cache", 1024.0, 0.5, 5.0, Noise::Independent));
        let a = arm(31, &caches, &mut rng);
        let b = arm(31, &caches, &mut rng);
        let r = analyze(&a, &b, &policy(31), true);
        assert_ne!(r.verdict, Verdict::Leak, "{}", r.reason);
        let c = r.caches.iter().find(|c| c.name == "ext4_inode_cache").unwrap();
        assert!(c.module.trend.as_ref().unwrap().slope > 0.45, "the module arm grows: {c:?}");
        assert!(c.delta.abs() < 0.01 && !c.leak, "but not more than the baseline: {c:?}");
        assert!(r.exhaustion.is_empty(), "no exhaustion projection without a LEAK");
    }

    #[test]
    fn a_clean_long_run_is_no_leak_and_says_what_it_rules_out() {
        let mut rng = Rng::new(3);
        let quiet = vec![("dentry", 192.0, 0.0, 3.0, Noise::Independent), ("filp", 256.0, 0.0, 2.0, Noise::Independent)];
        let a = arm(121, &quiet, &mut rng);
        let b = arm(121, &quiet, &mut rng);
        let r = analyze(&a, &b, &policy(121), true);
        assert_eq!(r.verdict, Verdict::NoLeak, "{}", r.reason);
        let d = r.detectable.as_ref().unwrap();
        assert!(d.objects.unwrap() > 0.0 && d.objects.unwrap() < 0.002, "{d:?}");
        assert!(d.bytes_per_hour.unwrap() > 0.0);
        assert_eq!(d.own_cache_objects, 0.0005);
    }

    #[test]
    fn an_undecided_run_says_what_more_would_decide_it() {
        let mut rng = Rng::new(4);
        let noisy = vec![("dentry", 192.0, 0.0, 300.0, Noise::Independent)];
        let a = arm(12, &noisy, &mut rng);
        let b = arm(12, &noisy, &mut rng);
        let r = analyze(&a, &b, &policy(12), true);
        assert_eq!(r.verdict, Verdict::Inconclusive, "{}", r.reason);
        let needs = r.needs.as_deref().unwrap();
        assert!(needs.contains("samples per arm") || needs.contains("floor"), "{needs}");
    }

    #[test]
    fn looks_stop_a_clear_leak_early_and_the_replay_agrees_with_the_watcher() {
        let mut rng = Rng::new(5);
        let mut m = shared(Noise::Ar1(0.5));
        m.push(("dentry_leak", 192.0, 1.0, 5.0, Noise::Independent));
        let a = arm(61, &m, &mut rng);
        let b = arm(61, &shared(Noise::Ar1(0.5)), &mut rng);
        let p = policy(61);
        let end = analyze(&a, &b, &p, true);
        assert_eq!(end.verdict, Verdict::Leak);
        assert!(end.sequential.early && end.sequential.decided_at == 0, "{:?}", end.sequential);
        // The watcher, seeing only the first samples, decides the same.
        let n = end.sequential.looks[0].samples;
        let online = analyze(&a.truncated(n), &b.truncated(n), &p, false);
        assert!(online.sequential.early);
        assert_eq!((online.verdict, online.samples), (end.verdict, end.samples));
        // With fewer samples than the first look, the watcher does not decide.
        let none = analyze(&a.truncated(MIN_SAMPLES - 1), &b.truncated(MIN_SAMPLES - 1), &p, false);
        assert!(!none.sequential.early && none.sequential.looks.is_empty());
    }

    /// Family-wise error over caches and looks: A/A pairs of 20 caches each
    /// under AR(1) φ = 0.5 and random-walk noise, floor at zero so that only
    /// α protects, every look taken: the share of runs with any LEAK stays
    /// at α within Monte Carlo error.
    #[test]
    fn no_false_leak_beyond_alpha_over_caches_and_looks() {
        for noise in [Noise::Ar1(0.5), Noise::RandomWalk] {
            let runs = 400u64;
            let mut p = policy(31);
            p.floors = Floors { objects_per_op: 1e-12, bytes_per_op: 1e-12, bytes_per_hour: 1e-12 };
            let caches: Vec<(String, f64, f64, f64, Noise)> = (0..20).map(|i| (format!("cache-{i}"), 128.0, 0.0, 20.0, noise)).collect();
            let caches: Vec<(&str, f64, f64, f64, Noise)> = caches.iter().map(|c| (c.0.as_str(), c.1, c.2, c.3, c.4)).collect();
            let mut false_leaks = 0;
            for seed in 0..runs {
                let mut rng = Rng::new(77 + seed);
                let (a, b) = (arm(31, &caches, &mut rng), arm(31, &caches, &mut rng));
                if analyze(&a, &b, &p, true).verdict == Verdict::Leak {
                    false_leaks += 1;
                }
            }
            let rate = false_leaks as f64 / runs as f64;
            eprintln!("{noise:?}: {false_leaks} false LEAKs in {runs} A/A runs of 21 hypotheses");
            assert!(rate <= crate::stats::sim::mc_bound(0.01, runs), "{noise:?}: {rate}");
        }
    }

    #[test]
    fn a_week_of_one_second_samples_is_analysed_in_seconds() {
        let n = 7 * 24 * 3600;
        let mut rng = Rng::new(6);
        let caches = vec![("dentry", 192.0, 0.0, 20.0, Noise::Ar1(0.5)), ("kmalloc-64", 64.0, 0.0, 20.0, Noise::RandomWalk)];
        let (a, b) = (arm(n, &caches, &mut rng), arm(n, &caches, &mut rng));
        let t = std::time::Instant::now();
        let r = analyze(&a, &b, &policy(n), true);
        let secs = t.elapsed().as_secs_f64();
        eprintln!("{n} samples per arm analysed in {secs:.2} s ({} looks)", r.sequential.looks.len());
        let q = &r.sequential;
        assert_eq!(r.samples[0], q.looks[q.decided_at].samples);
        assert!(secs < 60.0, "{secs} s");
    }

    #[test]
    fn the_warm_up_is_left_out() {
        let mut rng = Rng::new(8);
        let mut a = arm(31, &shared(Noise::Independent), &mut rng);
        let b = arm(31, &shared(Noise::Independent), &mut rng);
        // A set-up step in the module arm's first two samples only.
        for row in a.caches.get_mut("dentry").unwrap().iter_mut().skip(2) {
            row.1 += 5000.0;
        }
        let mut p = policy(31);
        p.warmup_samples = 2;
        let r = analyze(&a, &b, &p, true);
        assert_eq!(r.samples, [29, 29]);
        assert!(!r.caches.iter().any(|c| c.name == "dentry" && c.leak), "{}", r.reason);
    }

    #[test]
    fn a_third_of_the_samples_missing_overrules_the_verdict() {
        assert_eq!(gaps_overrule("module", 30, 0), None);
        assert_eq!(gaps_overrule("module", 20, 10), None);
        assert!(gaps_overrule("baseline", 19, 11).unwrap().contains("baseline arm missed 11 of 30"));
    }

    #[test]
    fn numbers_keep_three_significant_figures() {
        assert_eq!(num(0.000547), "0.000547");
        assert_eq!(num(1064.3), "1064");
        assert_eq!(num(1.01), "1.01");
        assert_eq!(num(-0.0000126), "-0.0000126");
        assert_eq!(num(2.5e-7), "2.50e-7");
    }
}
