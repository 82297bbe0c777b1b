//! `kernlab calibrate LAB --runs N`: measures the A/A noise of a leak lab
//! on the real guest. Each run is the lab with both arms the same (the
//! lab's baseline, its module arm, or the lab as written), analysed as any
//! A/B run; the report is what the floors are set from: per cache, how far
//! module − baseline strays and with what standard error, how often a run
//! said LEAK (each one false, with its exact binomial bound), and the
//! smallest leak each run could have detected.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::leak::{num, LeakAnalysis};
use crate::lab::{self, Lab};
use crate::outcome::leak::LeakReport;
use crate::outcome::RecordError;
use crate::ui::columns::{self, Column};
use crate::stats::Verdict;
use crate::util::fsx;

/// Which configuration both arms of a calibration run get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Arms {
    /// The lab's baseline in both arms (e.g. no module against no module).
    Baseline,
    /// The lab's module arm in both arms (e.g. khm leak=0 against itself).
    Module,
    /// The lab as written: an A/B lab whose module is known not to leak.
    Lab,
}

impl Arms {
    pub fn parse(s: &str) -> Option<Arms> {
        match s {
            "baseline" => Some(Arms::Baseline),
            "module" => Some(Arms::Module),
            "lab" => Some(Arms::Lab),
            _ => None,
        }
    }
}

/// The lab a calibration runs: both arms alike (module and payload
/// sources made absolute, since the file is written elsewhere), expecting
/// no leak. Both arms alike means alike in everything an arm may override:
/// modules with their parameters, payload and setup.
pub fn aa_lab(lab: &Lab, lab_file: &Path, arms: Arms) -> Lab {
    let mut l = lab.clone();
    let base = lab_file.parent().unwrap_or(Path::new("."));
    let absolute = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = std::fs::canonicalize(base.join(&*p)).unwrap_or_else(|_| base.join(&*p));
        }
    };
    l.modules.iter_mut().for_each(|m| m.absolute(base));
    l.payload.iter_mut().for_each(|p| absolute(&mut p.src));
    if let Some(p) = l.leak.as_mut() {
        p.baseline.modules.iter_mut().for_each(|m| m.absolute(base));
        p.baseline.payload.iter_mut().flatten().for_each(|p| absolute(&mut p.src));
    }
    let arm = match arms {
        Arms::Baseline => Some(lab::baseline_lab(&l)),
        Arms::Module => Some(l.clone()),
        Arms::Lab => None,
    };
    if let Some(p) = l.leak.as_mut() {
        p.expect = lab::Expect::NoLeak;
        if let Some(arm) = arm {
            // Both arms: the module arm's fields, and a baseline that
            // overrides every one of them with the same.
            (l.modules, l.payload, l.setup) = (arm.modules.clone(), arm.payload.clone(), arm.setup.clone());
            p.baseline = lab::Baseline { modules: arm.modules, params: Default::default(), payload: Some(arm.payload), setup: Some(arm.setup) };
        }
    }
    l.name = format!("{}-aa", lab.name);
    l
}

/// One calibration run, as its report.json left it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunResult {
    /// The run's directory; in `calibration.json`, relative to the
    /// calibration's directory.
    pub dir: String,
    pub exit_code: i32,
    pub verdict: Option<Verdict>,
    pub secs: f64,
    pub samples: Option<usize>,
    /// The noisiest cache's smallest detectable leak, objects per op.
    pub detectable_objects: Option<f64>,
    pub detectable_cache: Option<String>,
    /// The caches a false LEAK named.
    pub false_culprits: Vec<String>,
}

/// Per cache, over the runs that tested it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CacheNoise {
    pub cache: String,
    pub runs: usize,
    /// Median |module − baseline| and median standard error, objects per op.
    pub median_abs_delta: f64,
    pub median_se: f64,
    /// The largest upper bound seen (objects per op).
    pub max_upper: f64,
    /// Median smallest detectable leak (80 % power), objects per op.
    pub median_detectable: f64,
}

/// `calibration.json`'s schema.
pub const SCHEMA: &str = "kernlab.calibration/1";

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Calibration {
    pub schema: &'static str,
    pub lab: String,
    pub arms: Arms,
    pub runs: Vec<RunResult>,
    /// LEAK, NO-LEAK, INCONCLUSIVE (BOUNDED included), failed.
    pub verdicts: [usize; 4],
    /// Runs whose verdict was BOUNDED (growth that stopped within the run).
    pub bounded: usize,
    /// False LEAKs, and the exact (Clopper–Pearson) one-sided 95 % upper
    /// bound of the false-LEAK rate they allow.
    pub false_leaks: usize,
    pub false_leak_rate_upper95: f64,
    pub caches: Vec<CacheNoise>,
    /// Median and 90th percentile over runs of the noisiest cache's
    /// detectable leak: what a floor must be above for this lab to reach
    /// NO-LEAK in half (or 90 %) of clean runs.
    pub detectable_median: Option<f64>,
    pub detectable_p90: Option<f64>,
    pub secs: f64,
}

/// Exact one-sided 95 % upper bound for a rate with `k` events in `n` trials
/// (Clopper–Pearson), by bisection on the binomial tail.
pub fn clopper_pearson_upper(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    // P(X ≤ k | p) = 0.05.
    let cdf = |p: f64| {
        let mut term = (1.0 - p).powi(n as i32);
        let mut sum = term;
        for i in 0..k {
            term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
            sum += term;
        }
        sum
    };
    let (mut lo, mut hi) = (0.0, 1.0);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One calibration run as it returned (its A/B record, typed), or read
/// back from its directory when it returned none.
pub fn run_result(dir: &Path, end: &crate::run::RunEnd, secs: f64) -> (RunResult, Option<LeakAnalysis>) {
    match &end.leak {
        Some(r) => result_of(dir, end.exit_code, secs, r.analysis.clone()),
        None => read_run(dir, end.exit_code, secs),
    }
}

/// Reads one finished calibration run.
pub fn read_run(dir: &Path, exit_code: i32, secs: f64) -> (RunResult, Option<LeakAnalysis>) {
    // A run that failed before its report has none; a report that cannot
    // be read is said, and the run counts as failed.
    let an: Option<LeakAnalysis> = match crate::outcome::read::<LeakReport>(&crate::outcome::layout::report_json(dir)) {
        Ok(r) => r.analysis,
        Err(RecordError::Missing(_)) => None,
        Err(e) => {
            tracing::warn!("calibration run {}: {}", dir.display(), crate::util::error_chain(&e));
            None
        }
    };
    result_of(dir, exit_code, secs, an)
}

fn result_of(dir: &Path, exit_code: i32, secs: f64, an: Option<LeakAnalysis>) -> (RunResult, Option<LeakAnalysis>) {
    let r = RunResult {
        dir: dir.display().to_string(),
        exit_code,
        verdict: an.as_ref().map(|a| a.verdict),
        secs,
        samples: an.as_ref().map(|a| a.samples[0]),
        detectable_objects: an.as_ref().and_then(|a| a.detectable.as_ref()).and_then(|d| d.objects),
        detectable_cache: an.as_ref().and_then(|a| a.detectable.as_ref()).map(|d| d.name.clone()),
        false_culprits: an.as_ref().map(|a| a.culprits().map(|c| c.name.clone()).collect()).unwrap_or_default(),
    };
    (r, an)
}

/// Summarises the runs.
pub fn summarise(lab: &str, arms: Arms, runs: Vec<(RunResult, Option<LeakAnalysis>)>, secs: f64) -> Calibration {
    use std::collections::BTreeMap;
    // Per cache: |Δ|s, SEs, the largest upper bound, detectable leaks.
    type Seen = (Vec<f64>, Vec<f64>, f64, Vec<f64>);
    let mut per: BTreeMap<String, Seen> = BTreeMap::new();
    let mut verdicts = [0usize; 4];
    let mut bounded = 0usize;
    let mut det = Vec::new();
    for (r, an) in &runs {
        let i = match r.verdict {
            Some(Verdict::Leak) => 0,
            Some(Verdict::NoLeak) => 1,
            // A bounded cache is not a false LEAK: it is counted with the
            // undecided here and named in `bounded`.
            Some(Verdict::Inconclusive) | Some(Verdict::Bounded) => 2,
            None => 3,
        };
        verdicts[i] += 1;
        bounded += usize::from(r.verdict == Some(Verdict::Bounded));
        if let Some(d) = r.detectable_objects {
            det.push(d);
        }
        let Some(a) = an else { continue };
        for c in &a.caches {
            let e = per.entry(c.name.clone()).or_insert_with(|| (Vec::new(), Vec::new(), f64::NEG_INFINITY, Vec::new()));
            e.0.push(c.delta.abs());
            e.1.push(c.se);
            e.2 = e.2.max(c.upper);
            e.3.push(c.detectable);
        }
    }
    let mut caches: Vec<CacheNoise> = per
        .into_iter()
        .map(|(cache, (d, s, up, m))| CacheNoise {
            cache,
            runs: d.len(),
            median_abs_delta: crate::stats::median(&d),
            median_se: crate::stats::median(&s),
            max_upper: up,
            median_detectable: crate::stats::median(&m),
        })
        .collect();
    caches.sort_by(|a, b| b.median_detectable.total_cmp(&a.median_detectable));
    let n = runs.iter().filter(|(r, _)| r.verdict.is_some()).count();
    Calibration {
        schema: SCHEMA,
        lab: lab.into(),
        arms,
        false_leaks: verdicts[0],
        false_leak_rate_upper95: clopper_pearson_upper(verdicts[0], n),
        verdicts,
        bounded,
        caches,
        detectable_median: (!det.is_empty()).then(|| crate::stats::median(&det)),
        detectable_p90: (!det.is_empty()).then(|| quantile(&mut det, 0.9)),
        runs: runs.into_iter().map(|(r, _)| r).collect(),
        secs,
    }
}

/// The terminal report of a calibration.
pub fn render(c: &Calibration) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let n: usize = c.verdicts.iter().sum();
    // The lab as written compares two different arms: its LEAKs are false
    // only when its module is known to be clean, which kernlab cannot know.
    let (what, leaks) = match c.arms {
        Arms::Lab => ("the lab as written (its module arm against its baseline)".to_string(), "LEAKs (false if the module is clean)"),
        arms => (format!("{arms:?} in both arms"), "false LEAKs"),
    };
    let runs = if c.arms == Arms::Lab { "runs" } else { "A/A runs" };
    let _ = writeln!(
        s,
        "calibration of {} ({what}): {n} {runs} in {:.0} s: {} LEAK, {} NO-LEAK, {} INCONCLUSIVE, {} failed",
        c.lab, c.secs, c.verdicts[0], c.verdicts[1], c.verdicts[2], c.verdicts[3]
    );
    let _ = writeln!(
        s,
        "  {leaks}: {} of {} (rate ≤ {:.1} % at 95 %, Clopper–Pearson)",
        c.false_leaks,
        n - c.verdicts[3],
        c.false_leak_rate_upper95 * 100.0
    );
    // Where each verdict was reached: what a gate waits for.
    for v in [Verdict::NoLeak, Verdict::Leak] {
        let mut at: std::collections::BTreeMap<usize, usize> = std::collections::BTreeMap::new();
        for r in c.runs.iter().filter(|r| r.verdict == Some(v)) {
            *at.entry(r.samples.unwrap_or(0)).or_insert(0) += 1;
        }
        if !at.is_empty() {
            let list: Vec<String> = at.iter().map(|(n, k)| format!("{n} ×{k}")).collect();
            let _ = writeln!(s, "  {} decided at (samples per arm after the warm-up): {}", v.word().to_uppercase(), list.join(", "));
        }
    }
    if let (Some(m), Some(p)) = (c.detectable_median, c.detectable_p90) {
        let _ = writeln!(s, "  smallest detectable leak in the noisiest cache (80 % power): median {} objects/op, 90th percentile {}", num(m), num(p));
    }
    let columns = [
        Column::left("CACHE", 24),
        Column::right("RUNS", 5),
        Column::right("MEDIAN |Δ|", 14),
        Column::right("MEDIAN SE", 12),
        Column::right("MAX UPPER", 12),
        Column::right("MEDIAN MDE", 14),
    ];
    let rows: Vec<Vec<String>> = c
        .caches
        .iter()
        .take(12)
        .map(|x| vec![x.cache.clone(), x.runs.to_string(), num(x.median_abs_delta), num(x.median_se), num(x.max_upper), num(x.median_detectable)])
        .collect();
    for line in columns::lines(&columns, &rows, 1) {
        let _ = writeln!(s, "  {line}");
    }
    for r in &c.runs {
        let _ = writeln!(
            s,
            "  run {}: {} in {:.0} s, {} samples{}",
            r.dir,
            r.verdict.map(|v| format!("{v:?}")).unwrap_or_else(|| format!("failed (exit {})", r.exit_code)),
            r.secs,
            r.samples.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            if r.false_culprits.is_empty() {
                String::new()
            } else {
                format!(", {} in {}", if c.arms == Arms::Lab { "LEAK" } else { "false LEAK" }, r.false_culprits.join(", "))
            }
        );
    }
    s
}

/// Writes `calibration.json` into `out`, each run's `dir` relative to `out`.
pub fn write(out: &Path, c: &Calibration) -> std::io::Result<PathBuf> {
    let p = crate::outcome::layout::calibration_json(out);
    let mut c = c.clone();
    for r in &mut c.runs {
        r.dir = crate::outcome::recorded(out, Path::new(&r.dir)).display().to_string();
    }
    fsx::write_atomic(&p, &serde_json::to_vec_pretty(&c).unwrap_or_default())?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_the_rule_of_three_and_a_table_value() {
        // 0 of n: 1 − 0.05^{1/n} (≈ 3/n, the rule of three).
        assert!((clopper_pearson_upper(0, 20) - (1.0 - 0.05f64.powf(1.0 / 20.0))).abs() < 1e-9);
        // 1 of 20: the one-sided 95 % upper bound is 0.2161 (R binom.test, conf 0.90 two-sided).
        assert!((clopper_pearson_upper(1, 20) - 0.2161).abs() < 1e-3, "{}", clopper_pearson_upper(1, 20));
        assert_eq!(clopper_pearson_upper(3, 3), 1.0);
    }

    #[test]
    fn an_aa_lab_has_the_same_modules_in_both_arms_and_expects_no_leak() {
        let mut l = Lab::new("x");
        l.modules = vec![lab::Module { params: [("leak".to_string(), "1".to_string())].into(), ..lab::Module::tree("khm") }];
        l.leak = Some(serde_saphyr::from_str("expect: leak\nbaseline:\n  modules:\n    - source: khm\n      params: {leak: 0}\n").unwrap());
        let f = Path::new("/labs/x.yaml");
        let b = aa_lab(&l, f, Arms::Baseline);
        let p = b.leak.as_ref().unwrap();
        assert_eq!(p.expect, lab::Expect::NoLeak);
        assert_eq!(b.modules, p.baseline.modules);
        assert_eq!(b.modules[0].params["leak"], "0");
        assert!(b.modules[0].source.as_ref().unwrap().is_absolute());
        let m = aa_lab(&l, f, Arms::Module);
        assert_eq!(m.modules, m.leak.as_ref().unwrap().baseline.modules);
        assert_eq!(m.modules[0].params["leak"], "1");
        let a = aa_lab(&l, f, Arms::Lab);
        assert_ne!(a.modules, a.leak.as_ref().unwrap().baseline.modules);
    }

    #[test]
    fn an_aa_lab_of_a_baseline_with_its_own_params_and_setup_runs_it_in_both_arms() {
        let mut l = Lab::new("x");
        l.modules = vec![lab::Module { params: [("leak".to_string(), "1".to_string())].into(), ..lab::Module::tree("khm") }];
        l.setup = vec!["echo module".into()];
        l.leak = Some(serde_saphyr::from_str("expect: leak\nbaseline:\n  params: {leak: 0}\n  setup: [echo baseline]\n").unwrap());
        let f = Path::new("/labs/x.yaml");
        for (arms, leak, setup) in [(Arms::Baseline, "0", "echo baseline"), (Arms::Module, "1", "echo module")] {
            let aa = aa_lab(&l, f, arms);
            let b = lab::baseline_lab(&aa);
            assert_eq!((aa.modules[0].params["leak"].as_str(), aa.setup[0].as_str()), (leak, setup), "{arms:?}");
            assert_eq!((&b.modules, &b.payload, &b.setup), (&aa.modules, &aa.payload, &aa.setup), "{arms:?}: both arms alike");
        }
    }

    /// The calibration output in docs/method.md is laid out as `render`
    /// lays out the same numbers.
    #[test]
    fn the_docs_calibration_block_is_what_render_prints() {
        let doc = include_str!("../docs/method.md");
        let block = doc.split("```").find(|b| b.trim_start().starts_with("calibration of ") && b.contains("  CACHE ")).expect("a calibration block with its table in docs/method.md");
        let table: Vec<&str> = block.lines().skip_while(|l| !l.starts_with("  CACHE ")).filter(|l| !l.trim().is_empty()).collect();
        let caches: Vec<CacheNoise> = table[1..]
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let v: Vec<f64> = w[2..6].iter().map(|x| x.parse().unwrap()).collect();
                assert_eq!(w[2..6].to_vec(), v.iter().map(|x| num(*x)).collect::<Vec<_>>(), "numbers as num() prints them");
                CacheNoise { cache: w[0].into(), runs: w[1].parse().unwrap(), median_abs_delta: v[0], median_se: v[1], max_upper: v[2], median_detectable: v[3] }
            })
            .collect();
        let c = Calibration {
            schema: SCHEMA,
            lab: "l".into(),
            arms: Arms::Baseline,
            runs: Vec::new(),
            verdicts: [0, 0, 7, 0],
            bounded: 0,
            false_leaks: 0,
            false_leak_rate_upper95: 0.348,
            caches,
            detectable_median: None,
            detectable_p90: None,
            secs: 1.0,
        };
        let printed: Vec<String> = render(&c).lines().skip_while(|l| !l.starts_with("  CACHE ")).map(str::to_string).collect();
        assert_eq!(table, printed);
    }
}
