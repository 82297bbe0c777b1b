//! An A/B leak lab: the lab as written (the `module` arm) and its baseline
//! (the same lab with the baseline's overrides of modules, parameters,
//! payload and setup; by default without modules) run side by side on the same kernel and schedule, each a full run in its own
//! sub-directory; then the leak analysis decides, and the lab's expectation
//! turns the verdict into the exit code.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::outcome::event::{Event, Events};
pub use crate::outcome::leak::{ArmConfig, ArmOutcome, Attribution, CrashView, LeakReport, SCHEMA};
use super::rundir::RunDir;
use super::{run_arm, Arm, RunEnd};
use crate::analysis::leak::{self, ArmSeries, Floors, Policy};
use crate::exit;
use crate::lab::{Expect, Lab};
use crate::outcome::run::RunOutcome;
use crate::stats::Verdict;
use crate::util::fsx;

/// The dump part of the module arm's outcome, if it took one or watched
/// for exhaustion, for the lab's top-level record: its files relative to
/// the lab's directory (`module/crash/…`).
fn crash_view(r: Option<&RunOutcome>) -> Option<CrashView> {
    let r = r?.clone();
    let v = CrashView { dump: r.dump.map(|d| d.under("module")), triage: r.triage.map(|t| t.under("module")), triage_skipped: r.triage_skipped, exhaustion: r.exhaustion };
    (v.dump.is_some() || v.exhaustion.is_some()).then_some(v)
}

/// An arm of the lab `arm` in `parent/name`, with its own events.
pub(super) fn sub_arm(arm: &Arm, parent: &Path, name: &str, lab: Lab, decided: CancellationToken, instruments: super::instruments::Instruments) -> Result<Arm, Box<RunEnd>> {
    let dir = RunDir::create(Some(&parent.join(name)), &lab.name, &lab.kernel).map_err(|e| {
        Box::new(RunEnd {
            dir: Some(parent.to_path_buf()),
            exit_code: exit::INFRA,
            error: Some(format!("cannot create the {name} arm's directory: {e}")),
            outcome: None,
            leak: None,
        })
    })?;
    let events = match parent.file_name().and_then(|n| n.to_str()) {
        Some(super::attribution::DIR) => arm.events.with_arm(&format!("{}/{name}", super::attribution::DIR)),
        _ => arm.events.with_arm(name),
    };
    Ok(Arm { lab, lab_file: arm.lab_file.clone(), desc: arm.desc.clone(), cache: arm.cache.clone(), dir, events, decided, instruments, source: arm.source.clone() })
}

/// The module and baseline labs of an A/B lab: the module arm is the lab
/// as written; the baseline is the lab with its baseline's modules,
/// parameters, payload and setup ([`crate::lab::baseline_lab`]) and runs
/// its workload's duration (only the module arm runs until exhaustion).
pub(crate) fn arm_labs(lab: &Lab) -> (Lab, Lab) {
    assert!(lab.leak.is_some(), "arm_labs is called for leak labs");
    let mut base = crate::lab::baseline_lab(lab);
    if let Some(x) = base.exhaustion.as_mut() {
        (x.until, x.max) = (false, None);
    }
    (lab.clone(), base)
}

pub(crate) async fn run_ab(arm: Arm, cancel: CancellationToken, start: Instant) -> RunEnd {
    let top = arm.dir.clone();
    // The lab's own events (its verdict), beside its arms'.
    let stream = arm.events.clone();
    stream.emit(Event::RunStarted { lab: arm.lab.name.clone(), kernel: arm.lab.kernel.clone(), run_dir: top.path.display().to_string() });
    let _ = fsx::write_atomic(&top.join("lab.yaml"), arm.lab.to_yaml().as_bytes());
    let (module_lab, base_lab) = arm_labs(&arm.lab);
    let decided = CancellationToken::new();
    // A module arm that runs until exhaustion goes on past the verdict (its
    // dump is the point); only the baseline stops when the looks decide.
    let until = arm.lab.exhaustion.as_ref().is_some_and(|x| x.until);
    let make = |name: &str, lab: crate::lab::Lab| {
        let decided = if until && name == "module" { CancellationToken::new() } else { decided.clone() };
        sub_arm(&arm, &top.path, name, lab, decided, Default::default())
    };
    let (a, b) = match (make("module", module_lab), make("baseline", base_lab)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return *e,
    };
    let (a_dir, b_dir) = (a.dir.path.clone(), b.dir.path.clone());
    // Under TCG each VM keeps one core busy; the two arms together use two.
    let watcher = tokio::spawn(watch_looks(arm.lab.clone(), a_dir.clone(), b_dir.clone(), decided.clone(), stream.clone()));
    let (ra, rb) = tokio::join!(run_arm(a, cancel.clone(), start), run_arm(b, cancel.clone(), start));
    watcher.abort();

    let outcome = |r: &RunEnd, dir: &Path| ArmOutcome {
        dir: crate::outcome::recorded(&top.path, dir).display().to_string(),
        exit_code: r.exit_code,
        error: r.error.clone(),
        sample_gaps: r.outcome.as_ref().map_or(0, |o| o.sample_gaps),
        config: None,
    };
    let crash = crash_view(ra.outcome.as_ref());
    let mut report = assemble(&arm.lab, outcome(&ra, &a_dir), outcome(&rb, &b_dir), crash, &a_dir, &b_dir, start.elapsed().as_secs_f64());
    let exit_code = report.exit_code;
    let failed = [&ra, &rb].into_iter().any(|r| r.exit_code != exit::OK);
    let _ = fsx::write_atomic(&crate::outcome::layout::report_json(&top), &serde_json::to_vec_pretty(&report).unwrap_or_default());
    let an = report.analysis.as_ref();
    stream.emit(Event::LeakVerdict {
        verdict: report.verdict.map(|v| v.word().to_string()),
        expect: crate::outcome::kebab(&report.expect),
        expectation_held: report.expectation_held,
        delta_bytes_per_hour: an.and_then(|a| a.total.as_ref()).and_then(|t| t.bytes_per_hour).map(|h| h[0]),
        bytes_per_op: an.and_then(|a| a.total.as_ref().filter(|_| a.basis == leak::Basis::PerOp)).map(|t| t.bytes[0]),
        report: crate::outcome::layout::report_json(&top).display().to_string(),
    });
    if report.attribution.is_some() {
        attribute(&arm, &top.path, &mut report, cancel.is_cancelled() || exit_code == exit::INTERRUPTED, cancel.clone(), start).await;
    }
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
    RunEnd { dir: Some(top.path.clone()), exit_code, error, outcome: None, leak: Some(report) }
}

/// A LEAK's attribution pass, or why there is none, into its report (and
/// the report on disk again: the verdict was written before the pass).
async fn attribute(arm: &Arm, top: &Path, report: &mut LeakReport, interrupted: bool, cancel: CancellationToken, start: Instant) {
    let skipped = super::attribution::skipped(&arm.lab, report, interrupted);
    let pass = match skipped {
        Some(why) => Err(why),
        None => Ok(super::attribution::run(arm, top, report, cancel, start).await),
    };
    let Some(a) = report.attribution.as_mut() else { return };
    match pass {
        Err(why) => a.skipped = Some(why),
        Ok((pass, sites, evidence)) => {
            a.sites = sites;
            a.evidence.extend(evidence);
            a.pass = Some(pass);
        }
    }
    report.secs = start.elapsed().as_secs_f64();
    let _ = fsx::write_atomic(&crate::outcome::layout::report_json(top), &serde_json::to_vec_pretty(&*report).unwrap_or_default());
}

/// The analysis policy of a leak lab: its floors and α, and the looks
/// placed against the samples its duration plans.
pub fn policy_of(lab: &Lab) -> Policy {
    let l = lab.leak.as_ref().expect("policy_of is called for leak labs");
    let interval = lab.monitor.interval;
    let duration = lab.workload.as_ref().map(|w| w.duration).unwrap_or_default();
    Policy {
        metric: l.metric.parse().unwrap_or_default(),
        floors: Floors { objects_per_op: l.floor_objects_per_op, bytes_per_op: l.floor_bytes_per_op, bytes_per_hour: l.floor_per_hour as f64 },
        alpha: l.alpha,
        planned_samples: crate::lab::planned_samples(duration, interval),
        warmup_samples: crate::lab::warmup_samples(l.warmup, interval),
        stop_early: l.stop_early,
        interval_s: interval.as_secs_f64(),
    }
}

fn read_arm(dir: &Path) -> ArmSeries {
    ArmSeries::read(&dir.join("samples"))
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
                verdict: an.verdict.word().to_string(),
            });
            decided.cancel();
            return;
        }
    }
}

/// The report of the two arms, from what they left on disk (the samples)
/// and how each ended: an arm that failed leaves no verdict.
fn assemble(lab: &Lab, mut module: ArmOutcome, mut baseline: ArmOutcome, crash: Option<CrashView>, a_dir: &Path, b_dir: &Path, secs: f64) -> LeakReport {
    let policy = lab.leak.clone().expect("assemble is called for leak labs");
    let (ml, bl) = arm_labs(lab);
    (module.config, baseline.config) = (Some(ArmConfig::of(&ml)), Some(ArmConfig::of(&bl)));
    let failed = [module.exit_code, baseline.exit_code].into_iter().find(|c| *c != exit::OK);
    let (analysis, verdict, held, exit_code, kind) = if let Some(code) = failed {
        let code = if code == exit::INTERRUPTED { code } else { exit::INFRA };
        (None, None, None, code, None)
    } else {
        let (sm, sb) = (read_arm(a_dir), read_arm(b_dir));
        // A module arm that ran on until exhaustion is compared over the
        // baseline's window, as the watcher compared it: past it there is
        // nothing to compare with, and the guest filling up levels its
        // caches off, which is not a bounded leak (seen under load: the
        // watcher undecided, then the whole module series INCONCLUSIVE on
        // the plateau of a guest running out of memory).
        let until = lab.exhaustion.as_ref().is_some_and(|x| x.until);
        let sm = if until { sm.truncated(sb.times().len()) } else { sm };
        let mut an = leak::analyze(&sm, &sb, &policy_of(lab), true);
        let holes = leak::gaps_overrule("module", an.samples[0], module.sample_gaps)
            .or_else(|| leak::gaps_overrule("baseline", an.samples[1], baseline.sample_gaps));
        if let Some(why) = holes {
            an.verdict = Verdict::Inconclusive;
            an.reason = why;
        }
        let v = an.verdict;
        let (held, code) = match (v, policy.expect) {
            (Verdict::Inconclusive, _) => (None, exit::INCONCLUSIVE),
            // BOUNDED is growth that stopped: not a leak, so a lab that
            // expects NO-LEAK holds and one that expects LEAK does not.
            (Verdict::Leak, Expect::Leak) | (Verdict::NoLeak | Verdict::Bounded, Expect::NoLeak) => (Some(true), exit::OK),
            _ => (Some(false), exit::EXPECTATION_FAILED),
        };
        let dentries = leak::dentries_in_use(&sm, &sb, &an, &policy_of(lab));
        let objsize = sm.objsize("dentry").unwrap_or(192.0);
        let kind = leak::classify(&an, dentries, objsize);
        (Some(an), Some(v), held, code, kind)
    };
    let attribution = kind.map(|c| Attribution { kind: c.kind, evidence: c.evidence, sites: Vec::new(), pass: None, skipped: None });
    LeakReport {
        schema: SCHEMA.to_string(),
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
        crash,
        attribution,
        secs,
    }
}

/// The report of an A/B run that was killed before it wrote its own
/// (`kernlab report` on such a directory): the lab as resolved
/// (`lab.yaml`), how each arm ended (its `report.json`; an arm without one
/// did not finish) and the samples each left.
pub fn recover(top: &Path) -> Result<LeakReport, crate::lab::LabError> {
    let lab = crate::lab::load(&top.join("lab.yaml"))?;
    let arm = |name: &str| {
        let dir = top.join(name);
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        match crate::outcome::read::<RunOutcome>(&crate::outcome::layout::report_json(&dir)) {
            Ok(r) => (ArmOutcome { exit_code: r.exit_code, error: r.error.clone(), sample_gaps: r.sample_gaps, dir: name.into(), config: None }, Some(r)),
            Err(e) => (
                ArmOutcome {
                    exit_code: exit::INFRA,
                    error: Some(format!("the {name} arm left no report (it did not finish): {e}")),
                    sample_gaps: 0,
                    dir: name.into(),
                    config: None,
                },
                None,
            ),
        }
    };
    let ((module, m), (baseline, _)) = (arm("module"), arm("baseline"));
    let crash = crash_view(m.as_ref());
    Ok(assemble(&lab, module, baseline, crash, &top.join("module"), &top.join("baseline"), 0.0))
}


