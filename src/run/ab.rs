//! An A/B leak lab: the lab as written (the `module` arm) and its baseline
//! (the same lab with the baseline's modules, by default none) run side by
//! side on the same kernel and schedule, each a full run in its own
//! sub-directory; then the leak analysis decides, and the lab's expectation
//! turns the verdict into the exit code.

use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::rundir::RunDir;
use super::{run_arm, Arm, RunEnd};
use crate::analysis::leak::{self, ArmSeries, LeakAnalysis};
use crate::exit;
use crate::lab::Expect;
use crate::stats::Verdict;
use crate::util::fsx;

pub const SCHEMA: &str = "kernlab.leak-report/1";

#[derive(Debug, Serialize)]
struct ArmOutcome {
    dir: String,
    exit_code: i32,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LeakReport {
    schema: &'static str,
    lab: String,
    kernel: String,
    expect: Expect,
    /// `leak`, `no-leak`, `inconclusive`, or absent when an arm failed.
    verdict: Option<Verdict>,
    expectation_held: Option<bool>,
    exit_code: i32,
    floor_per_hour: u64,
    alpha: f64,
    module: ArmOutcome,
    baseline: ArmOutcome,
    analysis: Option<LeakAnalysis>,
    /// The module arm's vmcore and its triage, when it ran out of memory:
    /// the crash-time view beside the growth measured during the run.
    crash: Option<CrashView>,
    secs: f64,
}

#[derive(Debug, Serialize, Default)]
struct CrashView {
    dump: Option<serde_json::Value>,
    triage: Option<serde_json::Value>,
    triage_skipped: Option<serde_json::Value>,
}

/// The dump part of an arm's report.json, if it took one.
fn crash_view(arm_dir: &std::path::Path) -> Option<CrashView> {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(arm_dir.join("report.json")).ok()?).ok()?;
    let v = CrashView {
        dump: r.get("dump").cloned(),
        triage: r.get("triage").cloned(),
        triage_skipped: r.get("triage_skipped").cloned(),
    };
    v.dump.is_some().then_some(v)
}

pub(crate) async fn run_ab(arm: Arm, cancel: CancellationToken, start: Instant) -> RunEnd {
    let policy = arm.lab.leak.clone().expect("run_ab is called for leak labs");
    let top = arm.dir.clone();
    let quiet = arm.quiet;
    let _ = fsx::write_atomic(&top.join("lab.yaml"), arm.lab.to_yaml().as_bytes());
    let mut base_lab = arm.lab.clone();
    base_lab.modules = policy.baseline.modules.clone();
    let make = |name: &str, lab: crate::lab::Lab| -> Result<Arm, RunEnd> {
        let dir = RunDir::create(Some(&top.path.join(name)), &lab.name, &lab.kernel).map_err(|e| RunEnd {
            dir: Some(top.path.clone()),
            exit_code: exit::INFRA,
            error: Some(format!("cannot create the {name} arm's directory: {e}")),
            summary: None,
        })?;
        Ok(Arm {
            lab,
            lab_file: arm.lab_file.clone(),
            desc: arm.desc.clone(),
            cache: arm.cache.clone(),
            dir,
            quiet: arm.quiet,
            label: Some(name.to_string()),
        })
    };
    let (a, b) = match (make("module", arm.lab.clone()), make("baseline", base_lab)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let (a_dir, b_dir) = (a.dir.path.clone(), b.dir.path.clone());
    // Under TCG each VM keeps one core busy; the two arms together use two.
    let (ra, rb) = tokio::join!(run_arm(a, cancel.clone(), start), run_arm(b, cancel.clone(), start));

    let outcome = |r: &RunEnd, dir: &std::path::Path| ArmOutcome {
        dir: dir.display().to_string(),
        exit_code: r.exit_code,
        error: r.error.clone(),
    };
    let (mo, bo) = (outcome(&ra, &a_dir), outcome(&rb, &b_dir));
    let failed = [&ra, &rb].into_iter().find(|r| r.exit_code != exit::OK).map(|r| r.exit_code);

    let (analysis, verdict, held, exit_code) = if let Some(code) = failed {
        let code = if code == exit::INTERRUPTED { code } else { exit::INFRA };
        (None, None, None, code)
    } else {
        let read = |d: &std::path::Path| {
            let f = |n: &str| std::fs::read_to_string(d.join("samples").join(n)).unwrap_or_default();
            ArmSeries::parse(&f("meminfo.csv"), &f("slabinfo.csv"), &f("ops.csv"))
        };
        let an = leak::analyze(&read(&a_dir), &read(&b_dir), &policy.metric, policy.floor_per_hour as f64, policy.alpha);
        let v = an.verdict;
        let (held, code) = match (v, policy.expect) {
            (Verdict::Inconclusive, _) => (None, exit::INCONCLUSIVE),
            (Verdict::Leak, Expect::Leak) | (Verdict::NoLeak, Expect::NoLeak) => (Some(true), exit::OK),
            _ => (Some(false), exit::EXPECTATION_FAILED),
        };
        (Some(an), Some(v), held, code)
    };

    let report = LeakReport {
        schema: SCHEMA,
        lab: arm.lab.name.clone(),
        kernel: arm.lab.kernel.clone(),
        expect: policy.expect,
        verdict,
        expectation_held: held,
        exit_code,
        floor_per_hour: policy.floor_per_hour,
        alpha: policy.alpha,
        module: mo,
        baseline: bo,
        analysis,
        crash: crash_view(&a_dir),
        secs: start.elapsed().as_secs_f64(),
    };
    let _ = fsx::write_atomic(&top.join("report.json"), &serde_json::to_vec_pretty(&report).unwrap_or_default());
    // A matrix runs its cells quietly: its table speaks for them.
    if !quiet {
        print_summary(&report, &top.path);
    }
    let error = match (failed, &ra.error, &rb.error) {
        (Some(_), Some(e), _) => Some(format!("module arm: {e}")),
        (Some(_), None, Some(e)) => Some(format!("baseline arm: {e}")),
        _ => None,
    };
    RunEnd { dir: Some(top.path.clone()), exit_code, error, summary: None }
}

fn mib(b: f64) -> String {
    format!("{:.2} MiB", b / 1048576.0)
}

/// `95 s`, `6 min`, `17.6 h`, `3.2 days`, `never`.
pub(crate) fn duration(s: f64) -> String {
    if !s.is_finite() {
        "never".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

fn print_summary(r: &LeakReport, dir: &std::path::Path) {
    let v = match r.verdict {
        Some(Verdict::Leak) => "LEAK",
        Some(Verdict::NoLeak) => "NO-LEAK",
        Some(Verdict::Inconclusive) => "INCONCLUSIVE",
        None => "no verdict (an arm failed)",
    };
    let held = match r.expectation_held {
        Some(true) => "as expected",
        Some(false) => "NOT as expected",
        None => "",
    };
    println!("lab {} on {}: {v} {held} (expect {:?}, exit {})", r.lab, r.kernel, r.expect, r.exit_code);
    if let Some(a) = &r.analysis {
        if let Some(c) = &a.comparison {
            println!(
                "  {} growth, module − baseline: {:.2} MiB/h, one-sided interval [{:.2} .. {:.2}] MiB/h (floor {:.2} MiB/h, α {})",
                a.metric,
                c.delta * 3600.0 / 1048576.0,
                c.lower * 3600.0 / 1048576.0,
                c.upper * 3600.0 / 1048576.0,
                c.floor * 3600.0 / 1048576.0,
                c.alpha
            );
        } else {
            println!("  {}", a.reason);
        }
        if let (Some(p), Some(rate)) = (&a.module.per_op, a.module.ops_per_s) {
            println!("  per operation: {:.0} bytes/op [{:.0} .. {:.0}] at {rate:.0} ops/s", p.slope, p.lower, p.upper);
        }
        if !a.top_caches.is_empty() {
            // Laid out like crash's `kmem -s`, with the growth beside it.
            println!("  {:<24} {:>7} {:>9} {:>9} {:>10} {:>10} {:>13}", "CACHE", "OBJSIZE", "OBJS THEN", "OBJS NOW", "OBJS/OP", "BYTES/OP", "GROWTH/H");
            for c in a.top_caches.iter().take(6) {
                let opt = |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_else(|| "-".into());
                println!(
                    "  {:<24} {:>7.0} {:>9.0} {:>9.0} {:>10} {:>10} {:>9.1} MiB",
                    c.cache,
                    c.objsize,
                    c.objects_first,
                    c.objects_last,
                    opt(c.objects_per_op, 3),
                    opt(c.bytes_per_op, 0),
                    c.bytes_per_hour / 1048576.0
                );
            }
        }
        for e in &a.exhaustion {
            println!("  exhausts {}: in {} to {}", e.memory, duration(e.fastest_s), duration(e.slowest_s));
        }
    }
    if let Some(c) = &r.crash {
        if let Some(d) = &c.dump {
            println!(
                "  vmcore by {}: {} ({:.1} MiB)",
                d["via"].as_str().unwrap_or("?"),
                d["vmcore"].as_str().unwrap_or("?"),
                d["bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            );
        }
        if let Some(t) = &c.triage {
            if let Some(p) = t["panic"].as_str() {
                println!("  crash: {p}");
            }
            let caches: Vec<String> = t["top_caches"]
                .as_array()
                .map(|a| a.iter().take(4).map(|c| format!("{} {}", c["name"].as_str().unwrap_or("?"), mib(c["bytes"].as_f64().unwrap_or(0.0)))).collect())
                .unwrap_or_default();
            println!("  crash: largest slab caches at the panic: {}", caches.join(", "));
        }
        if let Some(s) = c.triage_skipped.as_ref().and_then(|s| s.as_str()) {
            println!("  crash triage skipped: {s}");
        }
    }
    println!("  run directory: {}", dir.display());
}
