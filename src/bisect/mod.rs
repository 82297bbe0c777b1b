//! `kernlab bisect`: the first bad module revision or kernel, with the
//! lab's statistical verdict as the oracle. A step runs the lab through the
//! normal run path (so the snapshot and module caches serve every step) and
//! is *bad* when the verdict differs from `leak.expect` (exit 100), *good*
//! when it holds (0), and *skipped* when it gives no verdict: INCONCLUSIVE
//! (102), an infrastructure failure (101, retried once), a module that does
//! not build at that revision, a lab that cannot run there (2), or a kernel
//! without the headers or `-dbg` package the lab needs (before any run).
//!
//! `plan` checks the flags and lists the candidates, `search` picks the
//! next one (pure), `git` exports a revision without touching the user's
//! tree; this module runs the steps and writes `bisect.json`. Exit codes:
//! 0 first bad found, 102 skips hide it (the range is reported), 2 usage,
//! 101 infrastructure, 130 interrupted (docs/bisect.md).

pub mod git;
pub mod kernels;
pub mod plan;
pub mod search;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::exit;
use crate::outcome::event::Events;
pub use plan::{Axis, Candidate, Plan, PlanError};
use search::{Mark, Next};

/// `bisect.json`'s schema.
pub const SCHEMA: &str = "kernlab.bisect/1";

/// One run of the lab on one candidate (or a candidate skipped without one).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Step {
    /// The candidate's place in `candidates`.
    pub index: usize,
    /// The commit's sha or the kernel's name.
    pub rev: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subject: String,
    pub mark: Mark,
    /// The lab's verdict (`leak`, `no-leak`, `inconclusive`, `bounded`),
    /// when it gave one.
    pub verdict: Option<crate::stats::Verdict>,
    /// The run's exit code (the retry's, when it was retried); none when
    /// the step did not run the lab.
    pub exit_code: Option<i32>,
    /// The step's run directory, relative to the bisection's directory
    /// (the one holding `bisect.json`).
    pub run_dir: Option<String>,
    /// Why the step is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether an infrastructure failure was retried.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
    pub secs: f64,
}

/// How the bisection ended.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Outcome {
    /// The first bad candidate.
    Found { first_bad: Candidate },
    /// Skipped candidates hide the first bad one: it is one of `range`
    /// (in order; the last is bad, the others were skipped).
    Undecided { range: Vec<Candidate> },
    /// Stopped by a signal before the end.
    Interrupted,
}

/// A candidate and what is known of it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Known {
    #[serde(flatten)]
    pub candidate: Candidate,
    pub mark: Mark,
}

fn known(plan: &Plan, marks: &[Mark]) -> Vec<Known> {
    plan.candidates.iter().cloned().zip(marks.iter().copied()).map(|(candidate, mark)| Known { candidate, mark }).collect()
}

/// `bisect.json`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BisectReport {
    pub schema: String,
    pub lab: String,
    pub lab_file: String,
    /// `module` or `kernel`.
    pub axis: String,
    /// The module's work tree (`--source`) or the kernel pattern.
    pub over: String,
    pub expect: crate::lab::Expect,
    pub good: Candidate,
    pub bad: Candidate,
    /// After good through bad, in order, each with what is known of it.
    pub candidates: Vec<Known>,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
    pub exit_code: i32,
    pub secs: f64,
}

impl BisectReport {
    /// The terminal's account: one line per step, then the answer.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for (i, st) in self.steps.iter().enumerate() {
            let verdict = st.verdict.map(|v| v.word().to_uppercase()).unwrap_or_else(|| "-".into());
            let code = st.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            s.push_str(&format!("  step {:>2}  {:<12} {:<5} {:<13} exit {:<4} {:>6.1} s  {}\n", i + 1, short(&st.rev), mark_word(st.mark), verdict, code, st.secs, st.run_dir.as_deref().unwrap_or("")));
            if let Some(r) = &st.reason {
                s.push_str(&format!("           skipped: {r}\n"));
            }
        }
        let name = |c: &Candidate| if c.subject.is_empty() { c.rev.clone() } else { format!("{} {}", c.rev, c.subject) };
        match &self.outcome {
            Outcome::Found { first_bad } => s.push_str(&format!("first bad {}: {}\n", if self.axis == "module" { "revision" } else { "kernel" }, name(first_bad))),
            Outcome::Undecided { range } => {
                s.push_str(&format!("undecided: skipped steps hide the first bad one; it is one of these {}:\n", range.len()));
                for c in range {
                    s.push_str(&format!("  {}\n", name(c)));
                }
            }
            Outcome::Interrupted => s.push_str("interrupted before the end\n"),
        }
        s
    }
}

fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        &rev[..12]
    } else {
        rev
    }
}

fn mark_word(m: Mark) -> &'static str {
    match m {
        Mark::Untested => "-",
        Mark::Good => "good",
        Mark::Bad => "bad",
        Mark::Skip => "skip",
    }
}

/// What a finished run says about its candidate.
fn judge(exit_code: i32) -> (Mark, Option<&'static str>) {
    match exit_code {
        exit::OK => (Mark::Good, None),
        exit::EXPECTATION_FAILED => (Mark::Bad, None),
        exit::INCONCLUSIVE => (Mark::Skip, Some("inconclusive")),
        exit::INFRA => (Mark::Skip, Some("infrastructure failure")),
        exit::USAGE => (Mark::Skip, Some("the lab cannot run here")),
        _ => (Mark::Skip, Some("no verdict")),
    }
}

/// Runs the bisection `plan` with its steps' run directories under `out`
/// (created by the caller); writes `out/bisect.json` as it goes.
pub async fn execute(plan: Plan, out: &Path, events: &Events, cancel: CancellationToken) -> BisectReport {
    let start = Instant::now();
    let mut kernel_dirs = plan.kernel_dirs.clone();
    if let Axis::Kernel { made, .. } = &plan.axis {
        if !made.is_empty() {
            let kdir = out.join("kernels");
            let _ = crate::util::fsx::private_dir(&kdir);
            for (name, text) in made {
                let _ = crate::util::fsx::write_atomic(&kdir.join(format!("{name}.yaml")), text.as_bytes());
            }
            kernel_dirs.insert(0, kdir);
        }
    }
    let n = plan.candidates.len();
    let mut marks: Vec<Mark> = plan.candidates.iter().map(|c| if c.skip.is_some() { Mark::Skip } else { Mark::Untested }).collect();
    // The known-bad end is bad by the user's word; it is never run.
    marks[n - 1] = Mark::Bad;
    let (axis, over) = match &plan.axis {
        Axis::Module { source, .. } => ("module", source.display().to_string()),
        Axis::Kernel { pattern, .. } => ("kernel", pattern.clone()),
    };
    let mut report = BisectReport {
        schema: SCHEMA.into(),
        lab: plan.lab.name.clone(),
        lab_file: plan.lab_file.display().to_string(),
        axis: axis.into(),
        over,
        expect: plan.lab.leak.as_ref().map(|l| l.expect).expect("plan checks that the lab is a leak lab"),
        good: plan.good.clone(),
        bad: plan.candidates[n - 1].clone(),
        candidates: Vec::new(),
        steps: Vec::new(),
        outcome: Outcome::Interrupted,
        exit_code: exit::INTERRUPTED,
        secs: 0.0,
    };
    for c in &plan.candidates {
        if let Some(r) = &c.skip {
            crate::ui::human(&format!("bisect: skipping {} without a run: {r}\n", c.rev));
        }
    }
    crate::ui::human(&format!("bisect {}: {n} candidates after {} through {}; results in {}\n", plan.lab.name, short(&plan.good.rev), short(&report.bad.rev), out.display()));
    loop {
        let i = match search::next(&marks) {
            Next::Test(i) => i,
            Next::Found(i) => {
                report.outcome = Outcome::Found { first_bad: plan.candidates[i].clone() };
                report.exit_code = exit::OK;
                break;
            }
            Next::Undecided { first, last } => {
                report.outcome = Outcome::Undecided { range: plan.candidates[first..=last].to_vec() };
                report.exit_code = exit::INCONCLUSIVE;
                break;
            }
        };
        let number = report.steps.len() + 1;
        let step = run_step(&plan, i, number, out, &kernel_dirs, events, &cancel).await;
        let interrupted = step.exit_code == Some(exit::INTERRUPTED) || cancel.is_cancelled();
        marks[i] = if interrupted { Mark::Skip } else { step.mark };
        crate::ui::human(&format!(
            "bisect step {number}: {} {} ({}, exit {}, {:.0} s){}\n",
            short(&step.rev),
            mark_word(step.mark),
            step.verdict.map_or("no verdict", |v| v.word()),
            step.exit_code.map_or("-".into(), |c| c.to_string()),
            step.secs,
            step.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
        ));
        report.steps.push(step);
        report.candidates = known(&plan, &marks);
        write_report(out, &mut report, start);
        if interrupted {
            report.outcome = Outcome::Interrupted;
            report.exit_code = exit::INTERRUPTED;
            break;
        }
    }
    report.candidates = known(&plan, &marks);
    write_report(out, &mut report, start);
    // Each step's page again, now that bisect.json beside it has the
    // result: its diagnosis names the first bad candidate and this step.
    // (`run_dir` is relative to the bisection's directory in the record.)
    for s in &report.steps {
        if let Some(dir) = s.run_dir.as_deref().map(|d| out.join(d)).filter(|d| crate::outcome::layout::report_json(d).is_file()) {
            crate::report::write_or_warn(&dir, || crate::report::rebuild(&dir).map(|r| r.html));
        }
    }
    report
}

fn write_report(out: &Path, report: &mut BisectReport, start: Instant) {
    report.secs = start.elapsed().as_secs_f64();
    let path = crate::outcome::layout::bisect_json(out);
    if let Err(e) = crate::util::fsx::write_atomic(&path, &serde_json::to_vec_pretty(report).unwrap_or_default()) {
        tracing::error!("cannot write `{}`: {e}", path.display());
    }
}

/// One step: the candidate prepared (a module revision exported and
/// built), the lab run on it, retried once after an infrastructure failure.
async fn run_step(plan: &Plan, i: usize, number: usize, out: &Path, kernel_dirs: &[PathBuf], events: &Events, cancel: &CancellationToken) -> Step {
    let t = Instant::now();
    let c = &plan.candidates[i];
    let mut step = Step { index: i, rev: c.rev.clone(), subject: c.subject.clone(), mark: Mark::Skip, verdict: None, exit_code: None, run_dir: None, reason: None, retried: false, secs: 0.0 };
    let label = format!("{number:02}-{}", short(&c.rev));
    // A module revision lives in a scratch export for the step's runs.
    let scratch = match &plan.axis {
        Axis::Module { top, dirs, .. } => match export(plan, top, dirs, &c.rev, kernel_dirs).await {
            Ok(s) => Some(s),
            Err(reason) => {
                step.reason = Some(reason);
                step.secs = t.elapsed().as_secs_f64();
                return step;
            }
        },
        Axis::Kernel { .. } => None,
    };
    for attempt in 0..2 {
        let dir = out.join(if attempt == 0 { label.clone() } else { format!("{label}-retry") });
        let opts = crate::run::RunOptions {
            lab_file: plan.lab_file.clone(),
            out: Some(dir.clone()),
            kernel_dirs: kernel_dirs.to_vec(),
            kernel: matches!(plan.axis, Axis::Kernel { .. }).then(|| c.rev.clone()),
            duration: None,
            // A step needs the verdict only: a LEAK's attribution pass (the
            // lab run again, instrumented) is for the first bad one, after.
            attribute: Some(crate::lab::Attribute::Off),
        };
        let lab_file = plan.lab_file.clone();
        let end = crate::run::run_with(opts, events, cancel.clone(), |lab| {
            if let (Axis::Module { dirs, .. }, Some(s)) = (&plan.axis, &scratch) {
                plan::retarget(lab, &lab_file, dirs, s.path());
            }
        })
        .await;
        step.exit_code = Some(end.exit_code);
        step.run_dir = Some(crate::outcome::recorded(out, end.dir.as_ref().unwrap_or(&dir)).display().to_string());
        step.verdict = end.leak.as_ref().and_then(|r| r.verdict);
        let (mark, why) = judge(end.exit_code);
        step.mark = mark;
        step.reason = why.map(|w| match end.error.as_deref().and_then(|e| e.lines().next()) {
            Some(first) if mark == Mark::Skip => format!("{w}: {first}"),
            _ => w.to_string(),
        });
        if end.exit_code != exit::INFRA || attempt == 1 || cancel.is_cancelled() {
            break;
        }
        step.retried = true;
        crate::ui::human(&format!("bisect step {number}: infrastructure failure on {}, retrying once\n", short(&c.rev)));
    }
    step.secs = t.elapsed().as_secs_f64();
    step
}

/// Exports revision `rev`'s module directories into a scratch directory
/// and builds the lab's modules from it against the lab's kernel (the run
/// then finds them in the module cache); `Err` is why the step is skipped.
async fn export(plan: &Plan, top: &Path, dirs: &[plan::ModuleDir], rev: &str, kernel_dirs: &[PathBuf]) -> Result<tempfile::TempDir, String> {
    let scratch = tempfile::Builder::new().prefix("kernlab-bisect-").tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let (top, subs, root, rev_s) = (top.to_path_buf(), dirs.iter().map(|d| d.sub.clone()).collect::<Vec<_>>(), scratch.path().to_path_buf(), rev.to_string());
    let mut lab = plan.lab.clone();
    plan::retarget(&mut lab, &plan.lab_file, dirs, scratch.path());
    let (lab_file, kdirs) = (plan.lab_file.clone(), kernel_dirs.to_vec());
    let r = tokio::task::spawn_blocking(move || -> Result<(), String> {
        git::export(&top, &rev_s, &subs, &root).map_err(|e| format!("cannot export the revision: {}", crate::util::error_causes(&e)))?;
        match build_check(&lab, &lab_file, &kdirs) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    r.map(|()| scratch)
}

/// Builds the lab's modules (both arms, each arm's entries in order, as a
/// run would) against the lab's kernel; says why when one does not build
/// or a patch does not apply at this revision. Anything else that fails
/// here (fetching the kernel, its headers) is left to the run, which
/// reports it as usual.
fn build_check(lab: &crate::lab::Lab, lab_file: &Path, kernel_dirs: &[PathBuf]) -> Option<String> {
    use crate::payload::PayloadError;
    let mut dirs = kernel_dirs.to_vec();
    dirs.extend(crate::kernel::descriptor_dirs(Some(lab_file)));
    let desc = crate::kernel::Registry::load(&dirs).ok()?.get(&lab.kernel).ok()?.clone();
    let cache = crate::cache::Cache::from_env().ok()?;
    let k = crate::kernel::fetch(&cache, &desc).ok()?;
    let headers = crate::kernel::headers::build_dir(&cache, &desc, &k).ok()?;
    let target = crate::payload::Target::of(&k, headers);
    let base = lab_file.parent().map(Path::to_path_buf).unwrap_or_default();
    let baseline = lab.leak.as_ref().map(|l| l.baseline.modules.clone()).unwrap_or_default();
    for arm in [&lab.modules, &baseline] {
        let mut symvers = Vec::new();
        for m in arm.iter() {
            match crate::payload::build_entry(&cache, &target, &base, m, &symvers) {
                Ok(b) => symvers.extend(b.symvers),
                Err(PayloadError::ModuleBuild { output, .. }) => {
                    let last = output.lines().rev().find(|l| l.contains("error")).or_else(|| output.lines().last()).unwrap_or("").trim().to_string();
                    return Some(format!("the module does not build at this revision: {last}"));
                }
                Err(PayloadError::NoModule { .. }) => return Some("the module does not build at this revision: no .ko".into()),
                Err(e @ (PayloadError::Patch { .. } | PayloadError::PatchMissing { .. })) => {
                    let why = match &e {
                        PayloadError::Patch { patch, failed, .. } => format!("patch `{}` does not apply at this revision: {failed}", patch.display()),
                        other => other.to_string(),
                    };
                    return Some(why);
                }
                Err(e @ (PayloadError::MissingKo { .. } | PayloadError::Dkms { .. })) => return Some(format!("at this revision: {}", crate::util::error_causes(&e).replace('\n', "; "))),
                Err(_) => return None,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_exit_codes_judge_the_step() {
        assert_eq!(judge(0), (Mark::Good, None));
        assert_eq!(judge(100), (Mark::Bad, None));
        assert_eq!(judge(102).0, Mark::Skip);
        assert_eq!(judge(101), (Mark::Skip, Some("infrastructure failure")));
        assert_eq!(judge(2).0, Mark::Skip);
    }

    #[test]
    fn short_revs() {
        assert_eq!(short("0123456789abcdef0123456789abcdef01234567"), "0123456789ab");
        assert_eq!(short("debian-6.1.0-54-cloud-amd64"), "debian-6.1.0-54-cloud-amd64");
    }
}
