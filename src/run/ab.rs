//! An A/B leak lab: the lab as written (the `module` arm) and its baseline
//! (the same lab with the baseline's modules, by default none) run side by
//! side on the same kernel and schedule, each a full run in its own
//! sub-directory; then the leak analysis decides, and the lab's expectation
//! turns the verdict into the exit code.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::events::{Event, Events, JsonStdout};
use super::rundir::RunDir;
use super::report::ExhaustionOutcome;
use super::{run_arm, Arm, RunEnd};
use crate::analysis::leak::{self, ArmSeries, Floors, LeakAnalysis, Policy};
use crate::exit;
use crate::lab::{Expect, Lab};
use crate::report::ReportError;
use crate::stats::Verdict;
use crate::util::fsx;

/// Version 2: per-cache evidence per operation, Holm over caches, looks
/// with α spending, the smallest detectable leak (version 1 had one
/// Theil–Sen slope per arm of a metric and a floor per hour).
pub const SCHEMA: &str = "kernlab.leak-report/2";

#[derive(Debug, Serialize)]
pub struct ArmOutcome {
    pub dir: String,
    pub exit_code: i32,
    pub error: Option<String>,
    /// Failed samples in the arm (its report.json's `sample_gaps`).
    pub sample_gaps: u64,
}

/// The top-level `report.json` of an A/B lab.
#[derive(Debug, Serialize)]
pub struct LeakReport {
    pub schema: &'static str,
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
    pub secs: f64,
}

#[derive(Debug, Serialize, Default)]
pub struct CrashView {
    pub dump: Option<serde_json::Value>,
    pub triage: Option<serde_json::Value>,
    pub triage_skipped: Option<serde_json::Value>,
    /// The arm's `exhaustion`: reached, or "no exhaustion within N s".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<ExhaustionOutcome>,
}

/// The dump part of an arm's report.json, if it took one.
fn crash_view(arm_dir: &Path) -> Option<CrashView> {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(arm_dir.join("report.json")).ok()?).ok()?;
    let v = CrashView {
        dump: r.get("dump").cloned(),
        triage: r.get("triage").cloned(),
        triage_skipped: r.get("triage_skipped").cloned(),
        exhaustion: r.get("exhaustion").and_then(|x| serde_json::from_value(x.clone()).ok()),
    };
    (v.dump.is_some() || v.exhaustion.is_some()).then_some(v)
}

pub(crate) async fn run_ab(arm: Arm, cancel: CancellationToken, start: Instant) -> RunEnd {
    let policy = arm.lab.leak.clone().expect("run_ab is called for leak labs");
    let top = arm.dir.clone();
    // The lab's own events, beside its arms': on stdout in JSON mode only
    // (the top directory has no events.jsonl; each arm has its own).
    let stream = Events::new(start).within(arm.cell.as_deref(), None);
    if crate::ui::get().json {
        stream.add(Box::new(JsonStdout));
    }
    stream.emit(Event::RunStarted { lab: arm.lab.name.clone(), kernel: arm.lab.kernel.clone(), run_dir: top.path.display().to_string() });
    let _ = fsx::write_atomic(&top.join("lab.yaml"), arm.lab.to_yaml().as_bytes());
    let mut base_lab = arm.lab.clone();
    base_lab.modules = policy.baseline.modules.clone();
    let decided = CancellationToken::new();
    // Only the module arm runs until exhaustion: the baseline is not
    // expected to get there, so it runs its workload.duration, not the max.
    if let Some(x) = base_lab.exhaustion.as_mut() {
        (x.until, x.max) = (false, None);
    }
    // A module arm that runs until exhaustion goes on past the verdict (its
    // dump is the point); only the baseline stops when the looks decide.
    let until = arm.lab.exhaustion.as_ref().is_some_and(|x| x.until);
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
            summary: false,
            label: Some(name.to_string()),
            cell: arm.cell.clone(),
            decided: if until && name == "module" { CancellationToken::new() } else { decided.clone() },
        })
    };
    let (a, b) = match (make("module", arm.lab.clone()), make("baseline", base_lab)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let (a_dir, b_dir) = (a.dir.path.clone(), b.dir.path.clone());
    // Under TCG each VM keeps one core busy; the two arms together use two.
    let watcher = tokio::spawn(watch_looks(arm.lab.clone(), a_dir.clone(), b_dir.clone(), decided.clone(), stream.clone()));
    let (ra, rb) = tokio::join!(run_arm(a, cancel.clone(), start), run_arm(b, cancel.clone(), start));
    watcher.abort();

    let outcome = |r: &RunEnd, dir: &Path| ArmOutcome {
        dir: dir.display().to_string(),
        exit_code: r.exit_code,
        error: r.error.clone(),
        sample_gaps: arm_gaps(dir),
    };
    let report = assemble(&arm.lab, outcome(&ra, &a_dir), outcome(&rb, &b_dir), &a_dir, &b_dir, start.elapsed().as_secs_f64());
    let exit_code = report.exit_code;
    let failed = [&ra, &rb].into_iter().any(|r| r.exit_code != exit::OK);
    let _ = fsx::write_atomic(&top.join("report.json"), &serde_json::to_vec_pretty(&report).unwrap_or_default());
    if arm.summary {
        crate::ui::human(&summary(&report, &top.path));
    }
    let an = report.analysis.as_ref();
    stream.emit(Event::LeakVerdict {
        verdict: report.verdict.map(|v| kebab(&v)),
        expect: kebab(&report.expect),
        expectation_held: report.expectation_held,
        delta_bytes_per_hour: an.and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| h[0]),
        bytes_per_op: an.and_then(|a| a.total.as_ref().filter(|_| a.basis == leak::Basis::PerOp)).map(|t| t.bytes[0]),
        report: top.join("report.json").display().to_string(),
    });
    crate::report::write_or_warn(&top.path, || crate::report::write_ab(&top.path, &report));
    let error = match (failed, &ra.error, &rb.error) {
        (true, Some(e), _) => Some(format!("module arm: {e}")),
        (true, None, Some(e)) => Some(format!("baseline arm: {e}")),
        _ => None,
    };
    let outcome = if exit_code == exit::INTERRUPTED {
        "interrupted"
    } else if failed {
        "failed"
    } else {
        "completed"
    };
    stream.emit(Event::RunFinished { outcome: outcome.into(), exit_code });
    RunEnd { dir: Some(top.path.clone()), exit_code, error, summary: None }
}

/// An arm's failed samples, from the report.json it wrote when it ended.
fn arm_gaps(dir: &Path) -> u64 {
    std::fs::read(dir.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|r| r["sample_gaps"].as_u64())
        .unwrap_or(0)
}

/// The analysis policy of a leak lab: its floors and α, and the looks
/// placed against the samples its duration plans.
pub fn policy_of(lab: &Lab) -> Policy {
    let l = lab.leak.as_ref().expect("policy_of is called for leak labs");
    let interval = lab.monitor.interval;
    let duration = lab.workload.as_ref().map(|w| w.duration).unwrap_or_default();
    Policy {
        metric: l.metric.clone(),
        floors: Floors { objects_per_op: l.floor_objects_per_op, bytes_per_op: l.floor_bytes_per_op, bytes_per_hour: l.floor_per_hour as f64 },
        alpha: l.alpha,
        planned_samples: crate::lab::planned_samples(duration, interval),
        warmup_samples: crate::lab::warmup_samples(l.warmup, interval),
        stop_early: l.stop_early,
        interval_s: interval.as_secs_f64(),
    }
}

fn read_arm(dir: &Path) -> ArmSeries {
    let f = |n: &str| std::fs::read_to_string(dir.join("samples").join(n)).unwrap_or_default();
    ArmSeries::parse(&f("meminfo.csv"), &f("slabinfo.csv"), &f("ops.csv"))
}

/// Takes the planned looks while the arms run. The arms' samples are read
/// only when enough time has passed for the next look (one sample per
/// interval), so a long lab is read about once per look, not once per
/// sample; the newest sample, which may be half written, is left out. The
/// looks are analysed as `kernlab report` will replay them; when one
/// decides, both arms are told to end.
async fn watch_looks(lab: Lab, a_dir: PathBuf, b_dir: PathBuf, decided: CancellationToken, stream: Events) {
    let policy = policy_of(&lab);
    let planned = leak::planned_looks(&policy);
    // The last planned look is the end of the run: nothing to stop early for.
    let mut pending: Vec<usize> = planned[..planned.len() - 1].iter().map(|n| n + policy.warmup_samples).collect();
    pending.reverse();
    let interval = lab.monitor.interval;
    let mut wait = interval;
    // Bounded by the planned looks; the task is aborted when the arms end.
    while let Some(&next) = pending.last() {
        tokio::time::sleep(wait.max(std::time::Duration::from_secs(1))).await;
        let (a, b) = (read_arm(&a_dir), read_arm(&b_dir));
        let n = a.times().len().min(b.times().len()).saturating_sub(1);
        if n < next {
            wait = interval * (next - n) as u32;
            continue;
        }
        while pending.last().is_some_and(|&k| k <= n) {
            pending.pop();
        }
        wait = interval;
        let (a, b) = (a.truncated(n), b.truncated(n));
        let p = policy.clone();
        let Ok(an) = tokio::task::spawn_blocking(move || leak::analyze(&a, &b, &p, false)).await else { return };
        if an.sequential.early {
            let q = &an.sequential;
            stream.emit(Event::LeakDecided {
                look: q.decided_at + 1,
                looks: q.planned.len(),
                samples: q.looks[q.decided_at].samples,
                verdict: kebab(&an.verdict),
            });
            decided.cancel();
            return;
        }
    }
}

/// The report of the two arms, from what they left on disk (the samples)
/// and how each ended: an arm that failed leaves no verdict.
fn assemble(lab: &Lab, module: ArmOutcome, baseline: ArmOutcome, a_dir: &Path, b_dir: &Path, secs: f64) -> LeakReport {
    let policy = lab.leak.clone().expect("assemble is called for leak labs");
    let failed = [module.exit_code, baseline.exit_code].into_iter().find(|c| *c != exit::OK);
    let (analysis, verdict, held, exit_code) = if let Some(code) = failed {
        let code = if code == exit::INTERRUPTED { code } else { exit::INFRA };
        (None, None, None, code)
    } else {
        let read = read_arm;
        let mut an = leak::analyze(&read(a_dir), &read(b_dir), &policy_of(lab), true);
        let holes = leak::gaps_overrule("module", an.samples[0], module.sample_gaps)
            .or_else(|| leak::gaps_overrule("baseline", an.samples[1], baseline.sample_gaps));
        if let Some(why) = holes {
            an.verdict = Verdict::Inconclusive;
            an.reason = why;
        }
        let v = an.verdict;
        let (held, code) = match (v, policy.expect) {
            (Verdict::Inconclusive, _) => (None, exit::INCONCLUSIVE),
            (Verdict::Leak, Expect::Leak) | (Verdict::NoLeak, Expect::NoLeak) => (Some(true), exit::OK),
            _ => (Some(false), exit::EXPECTATION_FAILED),
        };
        (Some(an), Some(v), held, code)
    };
    LeakReport {
        schema: SCHEMA,
        lab: lab.name.clone(),
        kernel: lab.kernel.clone(),
        expect: policy.expect,
        stopped: match analysis.as_ref().map(|a| &a.sequential) {
            Some(q) if q.early => format!("decided at look {} of {} ({} samples per arm)", q.decided_at + 1, q.planned.len(), q.looks[q.decided_at].samples),
            _ => "duration".into(),
        },
        verdict,
        expectation_held: held,
        exit_code,
        floors: policy_of(lab).floors,
        alpha: policy.alpha,
        module,
        baseline,
        analysis,
        crash: crash_view(a_dir),
        secs,
    }
}

/// Rebuilds an A/B run's report from its directory alone (`kernlab
/// report`): the lab as resolved (`lab.yaml`), how each arm ended (its
/// `report.json`; an arm without one did not finish) and the samples. The
/// analysis is this kernlab's, so an old run is re-read with the current
/// statistics.
pub fn rebuild(top: &Path) -> Result<LeakReport, ReportError> {
    let lab = crate::lab::load(&top.join("lab.yaml"))?;
    if lab.leak.is_none() {
        return Err(ReportError::NotAb(top.to_path_buf()));
    }
    let json = |p: PathBuf| -> Option<serde_json::Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    let arm = |name: &str| {
        let dir = top.join(name);
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        match json(dir.join("report.json")) {
            Some(r) => ArmOutcome {
                exit_code: r["exit_code"].as_i64().unwrap_or(exit::INFRA as i64) as i32,
                error: r["error"].as_str().map(str::to_string),
                sample_gaps: r["sample_gaps"].as_u64().unwrap_or(0),
                dir: dir.display().to_string(),
            },
            None => ArmOutcome {
                exit_code: exit::INFRA,
                error: Some(format!("the {name} arm left no report.json (it did not finish)")),
                sample_gaps: 0,
                dir: dir.display().to_string(),
            },
        }
    };
    let (module, baseline) = (arm("module"), arm("baseline"));
    let secs = json(top.join("report.json")).and_then(|r| r["secs"].as_f64()).unwrap_or(0.0);
    Ok(assemble(&lab, module, baseline, &top.join("module"), &top.join("baseline"), secs))
}

/// A unit enum as it is in the JSON (`no-leak`).
fn kebab<T: Serialize>(t: &T) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub(crate) fn mib(b: f64) -> String {
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

/// The verdict and whether it was expected, as words: (`LEAK`, `as expected`).
pub fn verdict_words(r: &LeakReport) -> (&'static str, &'static str) {
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
    (v, held)
}

/// The unit of a rate on this basis: `op` or `s`.
pub fn per(a: &LeakAnalysis) -> &'static str {
    match a.basis {
        leak::Basis::PerOp => "op",
        leak::Basis::PerSecond => "s",
    }
}

/// `12.3 MiB/h`, or `-`.
fn per_hour(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} MiB/h", v / 1048576.0)).unwrap_or_else(|| "-".into())
}

/// The analysis as terminal lines (shared by the summary and `kernlab report`):
/// how it was decided, the metric, the culprit table (module − baseline,
/// with intervals), what a NO-LEAK rules out, what an INCONCLUSIVE needs,
/// and time to exhaustion for a LEAK.
pub fn analysis_lines(a: &LeakAnalysis, stopped: &str) -> Vec<String> {
    use leak::num;
    let mut out = Vec::new();
    let u = per(a);
    let rate = a.ops_per_s[0].map(|r| format!(" at {r:.0} ops/s")).unwrap_or_default();
    out.push(format!(
        "{}: {} (α {} over {} hypotheses and {} look{}; stopped: {stopped})",
        match a.verdict {
            Verdict::Leak => "why",
            Verdict::NoLeak => "why",
            Verdict::Inconclusive => "undecided",
        },
        a.reason,
        a.alpha,
        a.family,
        a.sequential.looks.len(),
        if a.sequential.looks.len() == 1 { "" } else { "s" }
    ));
    if let Some(t) = &a.total {
        out.push(format!(
            "{} module − baseline: {} bytes/{u} [{} .. {}], {}{rate}; floor {} bytes/{u}",
            t.name,
            num(t.delta),
            num(t.lower),
            num(t.upper),
            per_hour(t.bytes_per_hour.map(|h| h[0])),
            num(t.floor)
        ));
    }
    let shown: Vec<&leak::Evidence> = a.caches.iter().filter(|c| c.leak || c.bytes[0] > 0.0).take(6).collect();
    if !shown.is_empty() {
        // Laid out like crash's `kmem -s`, with the difference beside it.
        out.push(analysis_lines_header(u));
        for c in shown {
            out.push(format!(
                "{:<22} {:>7.0} {:>15} {:>15} {:>28} {:>10} {:>12} {:>5}",
                c.name,
                c.objsize,
                format!("{:.0}→{:.0}", c.module.first, c.module.last),
                format!("{:.0}→{:.0}", c.baseline.first, c.baseline.last),
                format!("{} [{} .. {}]", num(c.delta), num(c.lower), num(c.upper)),
                num(c.bytes[0]),
                c.bytes_per_hour.map(|h| format!("{:.2}", h[0] / 1048576.0)).unwrap_or_else(|| "-".into()),
                if c.leak { "yes" } else { "no" }
            ));
        }
    }
    if a.verdict != Verdict::Leak {
        if let Some(d) = &a.detectable {
            let what = match d.objects {
                Some(o) => format!("{} objects/{u} ({} bytes/{u}, {})", num(o), num(d.bytes), per_hour(d.bytes_per_hour)),
                None => format!("{} bytes/{u} ({})", num(d.bytes), per_hour(d.bytes_per_hour)),
            };
            out.push(format!(
                "rules out (80 % power): a leak of {what} in the noisiest cache ({}), {} objects/{u} into a cache of the module's own{}",
                d.name,
                num(d.own_cache_objects),
                d.total_bytes.map(|b| format!(", {} bytes/{u} in {}", num(b), a.metric)).unwrap_or_default()
            ));
        }
    }
    if let Some(n) = &a.needs {
        out.push(format!("needs: {n}"));
    }
    for e in &a.exhaustion {
        out.push(format!("exhausts {}: in {} to {}", e.memory, duration(e.fastest_s), duration(e.slowest_s)));
    }
    out
}

/// The culprit table's header for rates per `u` (`op` or `s`).
fn analysis_lines_header(u: &str) -> String {
    format!(
        "{:<22} {:>7} {:>15} {:>15} {:>28} {:>10} {:>12} {:>5}",
        "CACHE",
        "OBJSIZE",
        "MODULE OBJS",
        "BASELINE OBJS",
        format!("Δ OBJS/{} [interval]", u.to_uppercase()),
        format!("Δ BYTES/{}", u.to_uppercase()),
        "Δ MiB/H",
        "LEAK"
    )
}

pub fn summary(r: &LeakReport, dir: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let (v, held) = verdict_words(r);
    let v = if held.is_empty() { v.to_string() } else { format!("{v} {held}") };
    let _ = writeln!(s, "lab {} on {}: {v} (expect {:?}, exit {})", r.lab, r.kernel, r.expect, r.exit_code);
    if let Some(a) = &r.analysis {
        for line in analysis_lines(a, &r.stopped) {
            let _ = writeln!(s, "  {line}");
        }
        if r.module.sample_gaps + r.baseline.sample_gaps > 0 {
            let _ = writeln!(
                s,
                "  sample gaps: module {} of {}, baseline {} of {} (the fits use the samples' own times)",
                r.module.sample_gaps,
                a.samples[0] as u64 + r.module.sample_gaps,
                r.baseline.sample_gaps,
                a.samples[1] as u64 + r.baseline.sample_gaps
            );
        }
    }
    if let Some(c) = &r.crash {
        if let Some(no) = c.exhaustion.as_ref().and_then(ExhaustionOutcome::not_reached) {
            let _ = writeln!(s, "  module arm: {no}: no vmcore");
        }
        if let Some(d) = &c.dump {
            let _ = writeln!(s, 
                "  vmcore by {}: {} ({:.1} MiB)",
                d["via"].as_str().unwrap_or("?"),
                d["vmcore"].as_str().unwrap_or("?"),
                d["bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            );
        }
        if let Some(t) = &c.triage {
            if let Some(p) = t["panic"].as_str() {
                let _ = writeln!(s, "  crash: {p}");
            }
            let caches: Vec<String> = t["top_caches"]
                .as_array()
                .map(|a| a.iter().take(4).map(|c| format!("{} {}", c["name"].as_str().unwrap_or("?"), mib(c["bytes"].as_f64().unwrap_or(0.0)))).collect())
                .unwrap_or_default();
            let _ = writeln!(s, "  crash: largest slab caches at the panic: {}", caches.join(", "));
        }
        if let Some(why) = c.triage_skipped.as_ref().and_then(|s| s.as_str()) {
            let _ = writeln!(s, "  crash triage skipped: {why}");
        }
    }
    let _ = writeln!(s, "  run directory: {}", dir.display());
    s
}

#[cfg(test)]
mod readme {
    /// The line shapes the A/B summary prints: the prefix of each kind of
    /// line, or the whole table header.
    fn shapes() -> Vec<String> {
        let mut v: Vec<String> = ["lab ", "  why: ", "  undecided: ", "  rules out (80 % power): ", "  needs: ", "  exhausts ", "  vmcore by ", "  crash: ", "  crash triage skipped: ", "  sample gaps: ", "  module arm: ", "  run directory: "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push("  slab module − baseline: ".into());
        v.push("  sunreclaim module − baseline: ".into());
        v
    }

    /// The pages that show A/B outputs: the README (the leak lab), the
    /// method (the no-leak lab, calibration) and dumps (leak-to-crash).
    const PAGES: [&str; 3] = [include_str!("../../README.md"), include_str!("../../docs/method.md"), include_str!("../../docs/dumps.md")];

    /// Every A/B output block in the README and the docs (a fenced block
    /// whose first line is `lab … : LEAK|NO-LEAK|INCONCLUSIVE …`) has only
    /// lines this code prints: a block pasted from an older kernlab fails here.
    #[test]
    fn the_readme_output_blocks_are_what_the_summary_prints() {
        let header = super::analysis_lines_header("op");
        let mut blocks = 0;
        for block in PAGES.iter().flat_map(|page| page.split("```").skip(1).step_by(2)) {
            let body = block.trim_start_matches(|c: char| c != '\n').trim_start_matches('\n');
            let first = body.lines().next().unwrap_or("");
            if !(first.starts_with("lab ") && [": LEAK", ": NO-LEAK", ": INCONCLUSIVE"].iter().any(|v| first.contains(v))) {
                continue;
            }
            blocks += 1;
            let mut in_table = false;
            for line in body.lines() {
                if line.trim().is_empty() {
                    continue;
                }
                if line == format!("  {header}") {
                    in_table = true;
                    continue;
                }
                let known = shapes().iter().any(|p| line.starts_with(p.as_str()));
                if known {
                    in_table = false;
                    continue;
                }
                // A culprit table row: the cache name, then eight columns.
                assert!(in_table && line.starts_with("  ") && line.split_whitespace().count() >= 8, "README or docs line not printed by this kernlab:\n{line}\nin block:\n{body}");
            }
        }
        assert!(blocks >= 2, "the README and docs/dumps.md show at least the leak lab's and the leak-to-crash lab's output ({blocks} found)");
    }
}
