//! `kernlab bisect`: see `crate::bisect` and docs/bisect.md.

use std::path::PathBuf;

use super::spawn_signal_handler;
use crate::bisect::{self, plan};
use crate::exit;
use crate::outcome::event::Events;

/// `kernlab bisect`'s arguments.
pub struct BisectArgs {
    pub lab: PathBuf,
    /// A module's git work tree (module bisection).
    pub source: Option<PathBuf>,
    /// A kernel pattern (kernel bisection).
    pub kernel_pattern: Option<String>,
    pub good: String,
    pub bad: String,
    pub out: Option<PathBuf>,
    pub kernel_dirs: Vec<PathBuf>,
    pub quiet: bool,
}

/// The steps' event stream: the terminal, each run's `events.jsonl` and
/// page. In JSON mode stdout carries only the bisection's result, so the
/// events are not copied there.
fn outputs(quiet: bool) -> Events {
    use crate::report::{outputs, terminal};
    let events = Events::new(std::time::Instant::now());
    events.add(Box::new(outputs::RunLogs::default()));
    events.add(Box::new(terminal::Terminal::new(quiet)));
    events.add(Box::new(outputs::Pages::default()));
    events
}

pub fn bisect(a: BisectArgs) -> i32 {
    let plan = match (&a.source, &a.kernel_pattern) {
        (Some(src), None) => plan::module(&a.lab, src, &a.good, &a.bad, a.kernel_dirs.clone()),
        (None, Some(p)) => {
            let in_archive = |pkg: &str| crate::kernel::apt::candidate(pkg).ok().flatten().is_some();
            plan::kernel(&a.lab, p, &a.good, &a.bad, a.kernel_dirs.clone(), &in_archive)
        }
        _ => {
            eprintln!("kernlab: bisect: give either --source DIR (a module's history) or --kernel-pattern PATTERN (kernels)");
            return exit::USAGE;
        }
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kernlab: {}", crate::util::error_causes(&e));
            return e.exit_code();
        }
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_default();
        PathBuf::from("runs").join(format!("{}-bisect", plan.lab.name)).join(stamp)
    });
    if out.exists() && std::fs::read_dir(&out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        eprintln!("kernlab: --out `{}` exists and is not empty; kernlab never overwrites a run", out.display());
        return exit::USAGE;
    }
    if let Err(e) = crate::util::fsx::private_dir(&out) {
        eprintln!("kernlab: cannot create `{}`: {e}", out.display());
        return exit::INFRA;
    }
    let events = outputs(a.quiet);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let report = rt.block_on(async {
        let cancel = tokio_util::sync::CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        bisect::execute(plan, &out, &events, cancel).await
    });
    crate::ui::human(&format!("{}bisect: exit {}; {}\n", report.summary(), report.exit_code, crate::outcome::layout::bisect_json(&out).display()));
    if crate::ui::get().json {
        crate::ui::json_line(&serde_json::to_string(&report).unwrap_or_default());
    }
    report.exit_code
}
