//! The commands behind `kernlab`'s command line (`src/main.rs` parses it):
//! each builds its inputs, runs with the process's one event stream
//! ([`outputs`]) and returns the exit code (`crate::exit`,
//! docs/exit-codes.md).

mod bench;
mod bisect;
mod calibrate;
mod doctor;
mod image;
mod kernels;
mod matrix;
mod new;
mod shell;
mod triage;

pub use bench::{bench_boot, bench_samples, BootArgs};
pub use bisect::{bisect, BisectArgs};
pub use calibrate::{calibrate, CalibrateArgs};
pub use doctor::doctor;
pub use image::image_debian;
pub use kernels::{kernel_fetch, kernel_list};
pub use matrix::{matrix, merge};
pub use new::{new, NewArgs};
pub use shell::{shell, ShellArgs};
pub use triage::triage;

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::outcome::event::Events;
use crate::exit;

pub fn fail(e: &dyn std::error::Error) -> i32 {
    eprintln!("kernlab: {}", crate::util::error_causes(e));
    exit::USAGE
}

pub fn registry(dirs: &[PathBuf]) -> Result<crate::kernel::Registry, crate::kernel::DescriptorError> {
    let mut all = dirs.to_vec();
    all.extend(crate::kernel::descriptor_dirs(None));
    crate::kernel::Registry::load(&all)
}

/// A failure of infrastructure (cache, fetch, tools): said, exit 101.
pub fn infra(e: &dyn std::error::Error) -> i32 {
    fail(e);
    exit::INFRA
}

/// The cache and a descriptor's kernel fetched into it, for the commands
/// that work on one kernel outside a lab; `Err` is the exit code, said.
pub fn cached_kernel(desc: &crate::kernel::Descriptor) -> Result<(crate::cache::Cache, crate::kernel::Kernel), i32> {
    let cache = crate::cache::Cache::from_env().map_err(|e| infra(&e))?;
    let kernel = crate::kernel::fetch(&cache, desc).map_err(|e| infra(&e))?;
    Ok((cache, kernel))
}

pub fn report(dir: &std::path::Path, out: Option<&std::path::Path>, json: bool) -> i32 {
    if let Some(out) = out {
        let same = |a: &std::path::Path, b: &std::path::Path| std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b);
        if same(dir, out) {
            eprintln!("kernlab: --out {}: the run directory itself; leave --out out to rebuild in place", out.display());
            return exit::USAGE;
        }
    }
    let rebuilt = match out {
        Some(out) => crate::report::rebuild_into(dir, out),
        None => crate::report::rebuild(dir),
    };
    match rebuilt {
        Ok(r) if json => {
            crate::ui::human(&r.summary);
            let kind = match r.kind {
                crate::report::DirKind::Run => "run",
                crate::report::DirKind::Ab => "ab",
                crate::report::DirKind::Matrix => "matrix",
            };
            let v = serde_json::json!({"dir": dir, "kind": kind, "html": r.html, "summary": r.summary});
            crate::ui::json_line(&v.to_string());
            exit::OK
        }
        Ok(r) => {
            print!("{}", r.summary);
            println!("  report: {}", r.html.display());
            exit::OK
        }
        Err(e @ (crate::report::ReportError::Write { .. } | crate::report::ReportError::Read { .. })) => {
            fail(&e);
            exit::INFRA
        }
        Err(e) => fail(&e),
    }
}

/// The process's one event stream and every output on it: the terminal
/// (quiet: errors and warnings only), JSON lines on stdout in JSON mode
/// for the commands whose JSON is the stream (`run`, `matrix`),
/// each run directory's `events.jsonl` and page, `kernlab run`'s summary,
/// a matrix's JUnit, KTAP, page and table.
pub fn outputs(quiet: bool, summaries: bool, json_events: bool) -> Events {
    use crate::report::{outputs, terminal};
    let events = Events::new(std::time::Instant::now());
    events.add(Box::new(outputs::RunLogs::default()));
    if crate::ui::get().json && json_events {
        events.add(Box::new(terminal::JsonStdout));
    }
    events.add(Box::new(terminal::Terminal::new(quiet)));
    events.add(Box::new(outputs::Pages::default()));
    if summaries {
        events.add(Box::new(outputs::Summaries::default()));
    }
    events.add(Box::new(outputs::MatrixOutputs));
    events
}

#[allow(clippy::too_many_arguments)]
pub fn run_lab(lab: PathBuf, out: Option<PathBuf>, kernel: Option<String>, duration: Option<std::time::Duration>, attribute: Option<crate::lab::Attribute>, kernel_dirs: Vec<PathBuf>, events: &Events) -> i32 {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone());
        let end = crate::run::run(crate::run::RunOptions { lab_file: lab, out, kernel_dirs, kernel, duration, attribute }, events, cancel).await;
        if let Some(e) = &end.error {
            crate::ui::eprintln(&format!("kernlab: {e}"));
        }
        end.exit_code
    })
}

/// First SIGINT/SIGTERM: cancel the run, which tears down and keeps what it
/// has. Second: kill every QEMU now and exit.
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            seen += 1;
            if seen == 1 {
                cancel.cancel();
            } else {
                eprintln!("kernlab: second signal: killing every VM now");
                crate::qemu::process::kill_all();
                std::process::exit(exit::INTERRUPTED);
            }
        }
    });
}
