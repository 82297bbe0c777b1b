//! The leak analysis of an A/B lab. The primary endpoint (meminfo `Slab`,
//! `SUnreclaim`, or one cache's active bytes) is fitted against time in each
//! arm with Theil–Sen and Sen's interval; the difference of slopes decides
//! the verdict against the lab's practical floor. Per-cache slopes of the
//! module arm, per operation and per hour, are ranked diagnostics; the time
//! to exhaustion comes from the interval of the module arm's slope.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::{self, Comparison, Fit, Verdict};

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

    /// The (t, bytes) series of a metric: `slab`, `sunreclaim`, `cache:NAME`.
    pub fn metric(&self, metric: &str) -> Vec<(f64, f64)> {
        match metric {
            "slab" => self.meminfo.get("Slab").cloned().unwrap_or_default(),
            "sunreclaim" => self.meminfo.get("SUnreclaim").cloned().unwrap_or_default(),
            m => m.strip_prefix("cache:").and_then(|c| self.caches.get(c)).map(|rows| cache_bytes(rows)).unwrap_or_default(),
        }
    }

    /// The cumulative op count at time `t`, if sampled then.
    fn ops_at(&self, t: f64) -> Option<f64> {
        self.ops.iter().find(|(u, _)| (u - t).abs() < 1e-9).map(|&(_, n)| n)
    }

    /// The series up to (and including) the `n`-th sample time.
    pub fn truncated(&self, n: usize) -> ArmSeries {
        let mut times: Vec<f64> = self.meminfo.values().flat_map(|v| v.iter().map(|p| p.0)).collect();
        times.extend(self.caches.values().flat_map(|v| v.iter().map(|p| p.0)));
        times.sort_by(|a, b| a.total_cmp(b));
        times.dedup();
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
        (b.0 > a.0).then(|| (b.1 - a.1) / (b.0 - a.0))
    }
}

/// A cache's (t, active bytes) series from its (t, active_objs, objsize) rows.
fn cache_bytes(rows: &[(f64, f64, f64)]) -> Vec<(f64, f64)> {
    rows.iter().map(|&(t, a, sz)| (t, a * sz)).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmFit {
    pub samples: usize,
    /// Slope against time, bytes/s, with Sen's interval.
    pub fit: Option<Fit>,
    pub per_hour: Option<[f64; 3]>,
    /// Slope against cumulative operations, bytes/op, with its interval.
    pub per_op: Option<Fit>,
    pub ops_per_s: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheFinding {
    pub cache: String,
    pub objsize: f64,
    /// Active objects in the first and the last sample of the module arm.
    pub objects_first: f64,
    pub objects_last: f64,
    /// Module arm: bytes/s with interval.
    pub bytes_per_s: [f64; 3],
    pub bytes_per_hour: f64,
    pub objects_per_op: Option<f64>,
    pub bytes_per_op: Option<f64>,
    /// Baseline arm's slope of the same cache, bytes/s.
    pub baseline_bytes_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exhaustion {
    /// What memory the projection is for, e.g. `guest MemAvailable (402 MiB)` or `4 GiB`.
    pub memory: String,
    pub headroom_bytes: f64,
    /// Fastest and slowest time to exhaustion from the interval, seconds
    /// (slowest is infinite when the interval reaches zero).
    pub fastest_s: f64,
    pub slowest_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeakAnalysis {
    pub metric: String,
    pub module: ArmFit,
    pub baseline: ArmFit,
    pub comparison: Option<Comparison>,
    pub verdict: Verdict,
    pub reason: String,
    pub top_caches: Vec<CacheFinding>,
    pub exhaustion: Vec<Exhaustion>,
}

fn fit_arm(series: &[(f64, f64)], arm: &ArmSeries, alpha: f64) -> ArmFit {
    let (t, y): (Vec<f64>, Vec<f64>) = series.iter().copied().unzip();
    let fit = stats::fit(&t, &y, alpha);
    let per_op = {
        let pairs: Vec<(f64, f64)> = series.iter().filter_map(|&(t, y)| arm.ops_at(t).map(|n| (n, y))).collect();
        let (n, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        stats::fit_per_op(&n, &y, alpha).ok()
    };
    let (fit, error) = match fit {
        Ok(f) => (Some(f), None),
        Err(e) => (None, Some(e.to_string())),
    };
    ArmFit {
        samples: series.len(),
        per_hour: fit.as_ref().map(|f| [stats::per_hour(f.slope), stats::per_hour(f.lower), stats::per_hour(f.upper)]),
        fit,
        per_op,
        ops_per_s: arm.ops_rate(),
        error,
    }
}

/// Named machine sizes for the time-to-exhaustion projection.
const MACHINES: [(&str, f64); 2] = [("a 4 GiB server", 4.0 * 1073741824.0), ("a 64 GiB server", 64.0 * 1073741824.0)];

/// Analyses the two arms. `floor_per_hour` in bytes/hour; `alpha` one-sided.
pub fn analyze(module: &ArmSeries, baseline: &ArmSeries, metric: &str, floor_per_hour: f64, alpha: f64) -> LeakAnalysis {
    // Sen's interval for each arm is two-sided at 2α, so each one-sided
    // bound has level α, matching the one-sided comparison.
    let fit_alpha = (2.0 * alpha).min(0.5);
    let m = fit_arm(&module.metric(metric), module, fit_alpha);
    let b = fit_arm(&baseline.metric(metric), baseline, fit_alpha);
    let floor = floor_per_hour / 3600.0;
    let (comparison, verdict, reason) = match (&m.fit, &b.fit) {
        (Some(mf), Some(bf)) => {
            let c = stats::compare(mf, bf, floor, alpha);
            let (v, r) = (c.verdict, c.reason.clone());
            (Some(c), v, r)
        }
        _ => (
            None,
            Verdict::Inconclusive,
            format!(
                "too little data: module arm {}, baseline arm {}",
                m.error.as_deref().unwrap_or("ok"),
                b.error.as_deref().unwrap_or("ok")
            ),
        ),
    };

    // Ranked diagnostics: the module arm's fastest-growing caches.
    let mut top: Vec<CacheFinding> = Vec::new();
    for (name, rows) in &module.caches {
        let (t, y): (Vec<f64>, Vec<f64>) = cache_bytes(rows).into_iter().unzip();
        let Ok(f) = stats::fit(&t, &y, fit_alpha) else { continue };
        if f.slope <= 0.0 {
            continue;
        }
        let objs: Vec<(f64, f64)> = rows.iter().filter_map(|&(t, a, _)| module.ops_at(t).map(|n| (n, a))).collect();
        let (n, a): (Vec<f64>, Vec<f64>) = objs.into_iter().unzip();
        let objects_per_op = stats::fit_per_op(&n, &a, fit_alpha).ok().map(|f| f.slope);
        let objsize = rows.last().map(|r| r.2).unwrap_or(0.0);
        let (bt, by): (Vec<f64>, Vec<f64>) = baseline.metric(&format!("cache:{name}")).into_iter().unzip();
        let baseline_bytes_per_s = stats::fit(&bt, &by, fit_alpha).ok().map(|f| f.slope);
        top.push(CacheFinding {
            cache: name.clone(),
            objsize,
            objects_first: rows.first().map(|r| r.1).unwrap_or(0.0),
            objects_last: rows.last().map(|r| r.1).unwrap_or(0.0),
            bytes_per_s: [f.slope, f.lower, f.upper],
            bytes_per_hour: stats::per_hour(f.slope),
            objects_per_op,
            bytes_per_op: objects_per_op.map(|o| o * objsize),
            baseline_bytes_per_s,
        });
    }
    top.sort_by(|a, b| b.bytes_per_s[0].total_cmp(&a.bytes_per_s[0]));
    top.truncate(8);

    // Time to exhaustion from the module arm's interval.
    let mut exhaustion = Vec::new();
    if let (Some(f), Some(avail)) = (&m.fit, module.meminfo.get("MemAvailable").and_then(|v| v.last())) {
        let mut sizes = vec![(format!("guest MemAvailable ({:.0} MiB)", avail.1 / 1048576.0), avail.1)];
        sizes.extend(MACHINES.iter().map(|(n, b)| (n.to_string(), *b)));
        for (memory, headroom) in sizes {
            if let Some((fastest_s, slowest_s)) = stats::time_to_exhaustion(headroom, f.lower, f.upper) {
                exhaustion.push(Exhaustion { memory, headroom_bytes: headroom, fastest_s, slowest_s });
            }
        }
    }
    LeakAnalysis { metric: metric.into(), module: m, baseline: b, comparison, verdict, reason, top_caches: top, exhaustion }
}

/// The smallest number of samples (per arm) after which the analysis
/// reaches the verdict `want`, replaying the recorded series; None if it
/// never does. Answers "how long must this lab run".
pub fn samples_to_verdict(module: &ArmSeries, baseline: &ArmSeries, metric: &str, floor_per_hour: f64, alpha: f64, want: Verdict) -> Option<usize> {
    let n = module.metric(metric).len().max(baseline.metric(metric).len());
    (stats::MIN_POINTS..=n).find(|&k| analyze(&module.truncated(k), &baseline.truncated(k), metric, floor_per_hour, alpha).verdict == want)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two synthetic arms in the CSV layout the sampler writes: the module
    /// arm's Slab grows 1,000 bytes per op at 100 ops/s, the baseline's is
    /// flat with the same noise.
    fn arms() -> (ArmSeries, ArmSeries) {
        let mut mem_a = String::from("t,uptime,key,bytes\n");
        let mut mem_b = mem_a.clone();
        let mut slab_a = String::from("t,uptime,cache,active_objs,num_objs,objsize\n");
        let mut ops = String::from("t,uptime,ops\n");
        for i in 0..30u64 {
            let t = i as f64;
            let noise = ((i * 7919) % 13) as f64 * 100.0;
            mem_a.push_str(&format!("{t},0,Slab,{}\n", 50_000_000 + i * 100_000 + noise as u64));
            mem_a.push_str(&format!("{t},0,MemAvailable,{}\n", 400_000_000 - i * 100_000));
            mem_b.push_str(&format!("{t},0,Slab,{}\n", 50_000_000 + noise as u64));
            slab_a.push_str(&format!("{t},0,dentry,{},{},192\n", 1000 + i * 100, 1000 + i * 100));
            slab_a.push_str(&format!("{t},0,kmalloc-64,500,500,64\n"));
            ops.push_str(&format!("{t},0,{}\n", i * 100));
        }
        (ArmSeries::parse(&mem_a, &slab_a, &ops), ArmSeries::parse(&mem_b, "", &ops))
    }

    #[test]
    fn clear_leak_is_found_with_rates_and_culprit() {
        let (a, b) = arms();
        let r = analyze(&a, &b, "slab", 1048576.0, 0.01);
        assert_eq!(r.verdict, Verdict::Leak, "{}", r.reason);
        let f = r.module.fit.as_ref().unwrap();
        assert!((f.slope - 100_000.0).abs() < 1_000.0, "slope {}", f.slope);
        let per_op = r.module.per_op.as_ref().unwrap().slope;
        assert!((per_op - 1000.0).abs() < 10.0, "bytes/op {per_op}");
        assert_eq!(r.top_caches[0].cache, "dentry");
        assert!((r.top_caches[0].objects_per_op.unwrap() - 1.0).abs() < 1e-9);
        assert!(r.exhaustion.iter().any(|e| e.memory == "a 4 GiB server"));
    }

    #[test]
    fn replaying_prefixes_finds_the_samples_needed() {
        let (a, b) = arms();
        assert_eq!(a.truncated(7).metric("slab").len(), 7);
        let k = samples_to_verdict(&a, &b, "slab", 1048576.0, 0.01, Verdict::Leak).unwrap();
        assert!((5..=30).contains(&k), "{k}");
        assert_eq!(analyze(&a.truncated(k), &b.truncated(k), "slab", 1048576.0, 0.01).verdict, Verdict::Leak);
        assert_ne!(analyze(&a.truncated(k - 1), &b.truncated(k - 1), "slab", 1048576.0, 0.01).verdict, Verdict::Leak);
    }

    #[test]
    fn identical_arms_are_no_leak() {
        let (_, b) = arms();
        let r = analyze(&b, &b, "slab", 1048576.0, 0.01);
        assert_eq!(r.verdict, Verdict::NoLeak, "{}", r.reason);
    }

    #[test]
    fn too_few_samples_is_inconclusive_not_a_crash() {
        let a = ArmSeries::parse("t,uptime,key,bytes\n0,0,Slab,1\n1,0,Slab,2\n", "", "");
        let r = analyze(&a, &a, "slab", 1.0, 0.01);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(r.reason.contains("too little data"), "{}", r.reason);
    }
}

/// A verdict needs most of an arm's samples: when more than a third of the
/// sampling attempts failed (SSH lost, a hung guest), the arm's series is
/// too holey to trust and the reason says which arm and how many.
pub fn gaps_overrule(arm: &str, samples: usize, gaps: u64) -> Option<String> {
    let attempts = samples as u64 + gaps;
    (gaps * 3 > attempts).then(|| format!("the {arm} arm missed {gaps} of {attempts} samples (more than a third): too many gaps for a verdict"))
}

#[cfg(test)]
mod gap_tests {
    #[test]
    fn a_third_of_the_samples_missing_overrules_the_verdict() {
        assert_eq!(super::gaps_overrule("module", 30, 0), None);
        assert_eq!(super::gaps_overrule("module", 20, 10), None);
        assert!(super::gaps_overrule("baseline", 19, 11).unwrap().contains("baseline arm missed 11 of 30"));
    }
}
