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
//! its floor at α each (an intersection–union test, Berger 1982: the claim
//! "no hypothesis is above its floor" is false if any one is, and each
//! test alone has size α). A hypothesis above its floor over the run whose
//! growth is surely below it over the last two thirds, after a rise well
//! clear of the noise, is BOUNDED (a cache that filled and stopped), not a
//! LEAK. Arms whose operation rates differ by more than `RATE_TOLERANCE`
//! are flagged, and each hypothesis must then be above its floor per
//! second too to be a LEAK (growth driven by time differs per operation
//! between such arms).
//!
//! The run is looked at more than once: at planned sample counts (×1.5 from
//! 10) with α spent over the looks (`stats::multiple`), and the first look
//! that decides is the verdict, so a lab may stop as soon as it is decided.
//! Replaying the looks over the recorded series gives the same verdict
//! afterwards (`kernlab report`).
//!
//! Pure over the series, so a verdict can be recomputed from any run
//! directory.

mod classify;
mod evidence;
mod series;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use evidence::{ArmFit, Basis, Detectable, Evidence, ExhaustionForecast, Floors, Kind, LeakAnalysis, Look, PerSecond, Plateau, Policy, Sequential};
pub use classify::{classify, dentries_in_use, Classification};
pub use series::ArmSeries;
use series::at_times;

use crate::stats::multiple::{holm_adjusted, looks, spend, spend_no_leak};
use crate::stats::trend::{difference, trend, Difference, Trend, MIN_TREND_POINTS};
use crate::stats::{self, Verdict};

/// The first look needs this many samples per arm (after the warm-up); a
/// leak lab must plan at least this many.
pub const MIN_SAMPLES: usize = 8;

/// Power at which the smallest detectable leak is stated.
pub const POWER: f64 = 0.8;

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

/// Where the docs say how a workload reports its operations.
pub const OPS_DOC: &str = "docs/lab-format.md#counting-operations";

/// Why the arms are compared per second, said plainly in the report:
/// `None` on the per-op basis. When only one arm counts operations the
/// basis is not switched silently: the note says which arm lacks a count.
pub fn basis_note(module: &ArmSeries, baseline: &ArmSeries) -> Option<String> {
    let counts = |a: &ArmSeries| a.ops_total().is_some();
    match (counts(module), counts(baseline)) {
        _ if basis_of(module, baseline) == Basis::PerOp => None,
        (false, false) => Some(format!("per second: this workload reports no operations; see {OPS_DOC}")),
        (true, false) => Some(format!("per second: the module arm counted operations but the baseline arm did not, so the arms are compared per second; see {OPS_DOC}")),
        (false, true) => Some(format!("per second: the baseline arm counted operations but the module arm did not, so the arms are compared per second; see {OPS_DOC}")),
        (true, true) => Some(format!("per second: an arm's operation count does not cover every sample, so the arms are compared per second; see {OPS_DOC}")),
    }
}

/// Operation rates of the two arms may differ by this fraction before the
/// per-op comparison is also checked per second (see `look`).
pub const RATE_TOLERANCE: f64 = 0.10;

/// The arms' operation rates differ by more than `RATE_TOLERANCE`: the
/// note the report carries, or None.
pub fn rate_note(rates: [Option<f64>; 2]) -> Option<String> {
    let (Some(m), Some(b)) = (rates[0], rates[1]) else { return None };
    let diff = (m / b - 1.0).abs();
    (diff > RATE_TOLERANCE).then(|| {
        format!(
            "operation rates differ: module {m:.0} ops/s, baseline {b:.0} ops/s ({:.0} %, tolerance {:.0} %); growth driven by time would differ per operation, so every hypothesis must also be above its floor per second (the per-op floor at the module's rate) to be a LEAK, and below it in both units for NO-LEAK",
            100.0 * diff,
            100.0 * RATE_TOLERANCE
        )
    })
}

/// One hypothesis before the family's bookkeeping.
struct Hypothesis {
    name: String,
    kind: Kind,
    objsize: f64,
    module: ArmFit,
    baseline: ArmFit,
    d: Difference,
    floor: f64,
    per_second: Option<PerSecond>,
    bounded: Option<Plateau>,
    /// Over the last half the growth is surely still above the floor.
    late_rising: bool,
}

/// The late part of a series: its last two thirds (at least
/// `MIN_TREND_POINTS`). Two thirds rather than a half: the fit's unit-root
/// guards cost a short window its power (at 29 samples one iid series in
/// five is fitted on differences), and a plateau must be shown flat.
fn late(v: &[f64]) -> &[f64] {
    let k = (2 * v.len() / 3).max(MIN_TREND_POINTS).min(v.len());
    &v[v.len() - k..]
}

fn fit_trend(x: &[f64], y: &[f64]) -> Option<Trend> {
    if y.iter().all(|v| *v == 0.0) {
        return Some(Trend::zero(y.len()));
    }
    trend(x, y).ok()
}

/// The last half's test: (plateau if surely below the floor, surely above).
fn late_half(x: [&[f64]; 2], y: [&[f64]; 2], floor: f64, a: f64) -> (Option<Plateau>, bool) {
    let (Some(tm), Some(tb)) = (fit_trend(late(x[0]), late(y[0])), fit_trend(late(x[1]), late(y[1]))) else { return (None, false) };
    let d = difference(&tm, &tb);
    let upper = d.bounds(a).1;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt();
    let held = (mean(late(y[0])) - y[0][0]) - (mean(late(y[1])) - y[1][0]);
    // The rise must stand well clear of the noise: 5 standard deviations
    // of the last halves (a fill that the noise model took for a level
    // shift is not rejected over the run, yet it held objects).
    let clear = held > 5.0 * sd(late(y[0])).hypot(sd(late(y[1])));
    let plateau = (upper < floor).then_some(Plateau { held, level: mean(late(y[0])), late_upper: upper }).filter(|_| clear);
    (plateau, d.p_above(floor) <= a)
}

/// One look at `a` against a false LEAK and `a_no` against a false NO-LEAK
/// (each look's share of α on its side; see `stats::multiple`).
fn look(module: &ArmSeries, baseline: &ArmSeries, policy: &Policy, a: f64, a_no: f64, last: bool) -> LookResult {
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
    // Rates that differ: the per-second check's regressor and rate.
    let per_second_rate = match basis {
        Basis::PerOp => rate_note(ops_per_s).and(ops_per_s[0]),
        Basis::PerSecond => None,
    };

    // The family: the metric (in bytes) and every cache that changed in
    // either arm. A cache constant in both cannot show a leak at all.
    let mut raw: Vec<Hypothesis> = Vec::new();
    let mut hypothesis = |name: String, kind: Kind, objsize: f64, ym: &[f64], yb: &[f64], floor: f64| {
        let (fm, fb) = (arm_fit(&xm, ym), arm_fit(&xb, yb));
        let (Some(a_), Some(b_)) = (arm_trend(&fm, ym), arm_trend(&fb, yb)) else { return false };
        let d = difference(&a_, &b_);
        let per_second = per_second_rate.and_then(|rate| {
            let (Some(sm), Some(sb)) = (fit_trend(&tm, ym), fit_trend(&tb, yb)) else { return None };
            let ds = difference(&sm, &sb);
            let floor = floor * rate;
            Some(PerSecond { delta: ds.delta, upper: ds.bounds(a_no).1, floor, p: ds.p_above(floor) })
        });
        let (bounded, late_rising) = late_half([&xm, &xb], [ym, yb], floor, a);
        raw.push(Hypothesis { name, kind, objsize, module: fm, baseline: fb, d, floor, per_second, bounded, late_rising });
        true
    };
    let metric_values = |arm: &ArmSeries, times: &[f64]| -> Vec<f64> {
        at_times(arm.metric(&policy.metric).into_iter(), times).into_iter().map(|v| v.unwrap_or(0.0)).collect()
    };
    let (ym, yb) = (metric_values(module, &tm), metric_values(baseline, &tb));
    let mut errors = Vec::new();
    if !hypothesis(policy.metric.to_string(), Kind::Total, 1.0, &ym, &yb, floor_bytes) {
        errors.push(format!("the {} series could not be fitted", policy.metric));
    }
    let names: BTreeSet<&String> = module.caches.keys().chain(baseline.caches.keys()).collect();
    for name in names {
        let (om, ob) = (module.objects(name, &tm), baseline.objects(name, &tb));
        let changed = |v: &[f64]| v.iter().any(|x| *x != v[0]);
        if !changed(&om) && !changed(&ob) {
            continue;
        }
        let objsize = module.objsize(name).or_else(|| baseline.objsize(name)).unwrap_or(1.0).max(1.0);
        let floor = match basis {
            Basis::PerOp => policy.floors.objects_per_op.min(policy.floors.bytes_per_op / objsize),
            Basis::PerSecond => floor_bytes / objsize,
        };
        hypothesis(name.clone(), Kind::Cache, objsize, &om, &ob, floor);
    }
    if raw.is_empty() {
        return inconclusive(format!("too little data: {}", errors.join("; ")));
    }
    let m = raw.len();
    // A LEAK must clear the floor per op and, when the rates differ, per
    // second too: the larger p-value (an intersection–union test, Berger
    // 1982, of the two nulls).
    let p: Vec<f64> = raw.iter().map(|r| r.d.p_above(r.floor).max(r.per_second.map_or(0.0, |s| s.p))).collect();
    let adj = holm_adjusted(&p);
    let mut pending = 0usize;
    let mut ev: Vec<Evidence> = raw
        .into_iter()
        .zip(p.iter().zip(&adj))
        .map(|(h, (&p, &p_holm))| {
            let d = h.d;
            // The lower bound at the look's LEAK α, the upper at its NO-LEAK
            // α. NO-LEAK is an intersection–union test (Berger 1982): each
            // hypothesis at the look's α, no division by m.
            let (lower, upper) = (d.bounds(a).0, d.bounds(a_no).1);
            let detectable = d.detectable(h.floor, a, POWER);
            let objsize = h.objsize;
            let bytes = [d.delta * objsize, lower * objsize, upper * objsize, detectable * objsize];
            let bytes_per_hour = match (per_hour_of(bytes[0]), per_hour_of(bytes[1]), per_hour_of(bytes[2])) {
                (Some(x), Some(y), Some(z)) => Some([x, y, z]),
                _ => None,
            };
            // Above its floor over the run: a LEAK if the growth is still
            // rising over the last two thirds (or, at the last look, unless it
            // surely stopped), BOUNDED if it surely stopped; at an earlier
            // look neither keeps the run going.
            let rejected = p_holm <= a;
            // A plateau is a verdict only for growth not already ruled out
            // over the run: a rise surely below the floor is NO-LEAK,
            // whatever it held (real A/A arms: fib6_nodes steps by 7 in one
            // arm, 0.00004 objects/op at most against a floor of 0.0005).
            let ruled_out = upper < h.floor && h.per_second.as_ref().is_none_or(|s| s.upper < s.floor);
            // And only for a rise that was above the floor over the run, by
            // its estimate at least: one page of Slab held early in a clean
            // heavy-allocation arm (0.8 bytes/op [−30 .. 7.8] against a floor
            // of 4, flat after) is undecided, not BOUNDED.
            let bounded = h.bounded.filter(|_| !ruled_out && d.delta > h.floor);
            let leak = rejected && bounded.is_none() && (h.late_rising || last);
            pending += usize::from(rejected && bounded.is_none() && !leak);
            Evidence {
                name: h.name,
                kind: h.kind,
                objsize,
                module: h.module,
                baseline: h.baseline,
                delta: d.delta,
                se: d.se,
                df: d.df,
                lower,
                upper,
                floor: h.floor,
                p,
                p_holm,
                leak,
                detectable,
                bytes,
                bytes_per_hour,
                per_second: h.per_second,
                bounded,
            }
        })
        .collect();
    // NO-LEAK: every hypothesis below its floor at α (per op, and per
    // second when the rates differ).
    let below = |e: &Evidence| e.upper < e.floor && e.per_second.is_none_or(|s| s.upper < s.floor);
    let all_below = ev.iter().all(below);
    let rest_below = ev.iter().all(|e| e.bounded.is_some() || below(e));
    let total = ev.iter().position(|e| e.kind == Kind::Total).map(|i| ev.remove(i));
    ev.sort_by(|x, y| y.bytes[0].total_cmp(&x.bytes[0]));
    let unit = match basis {
        Basis::PerOp => "op",
        Basis::PerSecond => "s",
    };
    let leaking: Vec<&Evidence> = total.iter().chain(ev.iter()).filter(|e| e.leak).collect();
    let bounded: Vec<&Evidence> = total.iter().chain(ev.iter()).filter(|e| e.bounded.is_some()).collect();
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
    } else if pending == 0 && !bounded.is_empty() && rest_below {
        let first = bounded.iter().find(|e| e.kind == Kind::Cache).unwrap_or(&bounded[0]);
        let pl = first.bounded.expect("bounded");
        let what = if first.kind == Kind::Cache { "objects" } else { "bytes" };
        (
            Verdict::Bounded,
            format!(
                "{} rose above the baseline and levelled off at {} {what} held ({} in the module arm): over the run {} {what}/{unit} [{} .. {}] above its floor {}, over the last two thirds at most {} {what}/{unit}; growth that stops is not a leak; every other hypothesis is below its floor{}",
                first.name,
                num(pl.held),
                num(pl.level),
                num(first.delta),
                num(first.lower),
                num(first.upper),
                num(first.floor),
                num(pl.late_upper),
                if bounded.len() > 1 { format!("; {} hypotheses bounded", bounded.len()) } else { String::new() }
            ),
        )
    } else if all_below {
        (Verdict::NoLeak, format!("all {m} hypotheses (the {} and every cache that changed) stay below their floors at α {:.2e} each (intersection–union test)", policy.metric, a_no))
    } else {
        // The hypothesis furthest from a decision, in standard errors; when
        // every one is below its floor per op, the one the per-second check
        // holds back (arms at different rates), by its margin.
        let z = |e: &Evidence| if e.se == 0.0 { f64::NEG_INFINITY } else { (e.upper - e.floor) / e.se };
        let held_per_second = |e: &Evidence| e.per_second.filter(|s| e.upper < e.floor && s.upper >= s.floor);
        let by_second = |e: &Evidence| held_per_second(e).map_or(f64::NEG_INFINITY, |s| (s.upper - s.floor) / (s.upper - s.delta).max(f64::MIN_POSITIVE));
        let blocked_per_op = total.iter().chain(ev.iter()).any(|e| e.upper >= e.floor);
        let worst = if blocked_per_op {
            total.iter().chain(ev.iter()).max_by(|x, y| z(x).total_cmp(&z(y)))
        } else {
            total.iter().chain(ev.iter()).max_by(|x, y| by_second(x).total_cmp(&by_second(y)))
        }
        .expect("the family is not empty");
        let what = if worst.kind == Kind::Cache { "objects" } else { "bytes" };
        let reason = match held_per_second(worst) {
            Some(s) if !blocked_per_op => format!(
                "{} is below its floor per op ({} {what}/{unit}, at most {} against {}) but not yet per second, which the arms' different rates also ask for: {} {what}/s, at most {} against {} (the per-op floor at the module arm's rate)",
                worst.name,
                num(worst.delta),
                num(worst.upper),
                num(worst.floor),
                num(s.delta),
                num(s.upper),
                num(s.floor)
            ),
            _ => format!(
                "{} is {} {what}/{unit} [{} .. {}] against a floor of {}: neither surely above nor surely below",
                worst.name,
                num(worst.delta),
                num(worst.lower),
                num(worst.upper),
                num(worst.floor)
            ),
        };
        (Verdict::Inconclusive, reason)
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
    let needs = (verdict == Verdict::Inconclusive).then(|| needs(total.iter().chain(ev.iter()), samples[0].min(samples[1]), policy, a, a_no)).flatten();
    LookResult { basis, samples, ops_per_s, total, caches: ev, verdict, reason, detectable, needs }
}

/// What more would likely decide an INCONCLUSIVE: the hypothesis furthest
/// from a decision, and the samples at which its interval would clear its
/// floor if the standard error fell like 1/n (between a random walk's
/// 1/√n and independent noise's 1/n^1.5 against a growing regressor).
fn needs<'a>(ev: impl Iterator<Item = &'a Evidence>, n: usize, policy: &Policy, a: f64, a_no: f64) -> Option<String> {
    let mut worst: Option<(f64, &Evidence)> = None;
    for e in ev {
        let gap = (e.delta - e.floor).abs();
        if e.se == 0.0 {
            continue;
        }
        let side = if e.delta > e.floor { a } else { a_no };
        let t = stats::student::t_quantile(1.0 - side, e.df);
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

/// Planned look `k` (0-based) alone, at its own share of α on either side,
/// on the first `planned_looks(policy)[k]` samples after the warm-up: its
/// verdict and the reason (why a look left the run undecided).
pub fn look_at(module: &ArmSeries, baseline: &ArmSeries, policy: &Policy, k: usize) -> Option<(Verdict, String)> {
    let (module, baseline) = (&module.skipped(policy.warmup_samples), &baseline.skipped(policy.warmup_samples));
    let planned = planned_looks(policy);
    let n = *planned.get(k)?;
    let (a, a_no) = (spend(policy.alpha, &planned, k), spend_no_leak(policy.alpha, &planned, k));
    let r = look(&module.truncated(n), &baseline.truncated(n), policy, a, a_no, k + 1 == planned.len());
    Some((r.verdict, r.reason))
}

/// Analyses the two arms look by look. `finished`: the run is over, so the
/// last look uses every sample and spends what α is left; otherwise only the
/// planned looks the data reach are taken (the watcher of a running lab).
pub fn analyze(module: &ArmSeries, baseline: &ArmSeries, policy: &Policy, finished: bool) -> LeakAnalysis {
    let (module, baseline) = (&module.skipped(policy.warmup_samples), &baseline.skipped(policy.warmup_samples));
    let planned = planned_looks(policy);
    let n_avail = module.times().len().min(baseline.times().len());
    let mut taken: Vec<Look> = Vec::new();
    let (mut spent, mut spent_no) = (0.0, 0.0);
    let mut result: Option<(LookResult, f64, usize)> = None;
    for k in 0..planned.len().saturating_sub(1) {
        let n = planned[k];
        if n > n_avail || (finished && n == n_avail) {
            break;
        }
        let (a, a_no) = (spend(policy.alpha, &planned, k), spend_no_leak(policy.alpha, &planned, k));
        spent += a;
        spent_no += a_no;
        let r = look(&module.truncated(n), &baseline.truncated(n), policy, a, a_no, false);
        taken.push(Look { samples: n, alpha: a, alpha_no_leak: a_no, verdict: r.verdict });
        if r.verdict != Verdict::Inconclusive {
            result = Some((r, a, taken.len() - 1));
            break;
        }
    }
    let mut early = result.is_some();
    if result.is_none() {
        let (a, a_no) = ((policy.alpha - spent).max(0.0), (policy.alpha - spent_no).max(0.0));
        let r = look(module, baseline, policy, a, a_no, finished || n_avail >= *planned.last().unwrap_or(&0));
        if finished || n_avail >= *planned.last().unwrap_or(&0) {
            taken.push(Look { samples: n_avail, alpha: a, alpha_no_leak: a_no, verdict: r.verdict });
            early = false;
        }
        let at = taken.len().saturating_sub(1);
        result = Some((r, a, at));
    }
    let (r, _a, decided_at) = result.expect("set above");
    let exhaustion = if r.verdict == Verdict::Leak { exhaustion(module, &r) } else { Vec::new() };
    let family = r.caches.len() + usize::from(r.total.is_some());
    LeakAnalysis {
        metric: policy.metric.to_string(),
        basis: r.basis,
        basis_note: (r.basis == Basis::PerSecond).then(|| basis_note(module, baseline)).flatten(),
        rate_note: (r.basis == Basis::PerOp).then(|| rate_note(r.ops_per_s)).flatten(),
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
fn exhaustion(module: &ArmSeries, r: &LookResult) -> Vec<ExhaustionForecast> {
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
                out.push(ExhaustionForecast { memory, headroom_bytes: headroom, fastest_s, slowest_s });
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
