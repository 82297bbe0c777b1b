//! The reporters that write files and summaries from the event stream:
//! each run directory's `events.jsonl`, its `report.html`, the terminal
//! summary of `kernlab run`, and a matrix's JUnit, KTAP, page and table.
//! A run announces its directory in `run-started` and has written its
//! records (`report.json`, `manifest.json`) when it emits `run-finished`;
//! these reporters read them back as types then.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{detect, summary, write_ab, write_matrix, write_or_warn, write_run, DirKind};
use crate::outcome::event::{Event, Reporter, Stamped};
use crate::outcome::matrix::MatrixReport;
use crate::outcome::{self, AnyRecord};
use crate::util::fsx;

/// The runs of the stream by (cell, arm): the directory each announced.
#[derive(Default)]
struct Runs(HashMap<(Option<String>, Option<String>), PathBuf>);

impl Runs {
    fn key(s: &Stamped) -> (Option<String>, Option<String>) {
        (s.cell.clone(), s.arm.clone())
    }

    /// Remembers a run's directory at its start; at its end, returns it
    /// (and forgets it).
    fn track(&mut self, s: &Stamped) -> Option<PathBuf> {
        match &s.event {
            Event::RunStarted { run_dir, .. } => {
                self.0.insert(Self::key(s), PathBuf::from(run_dir));
                None
            }
            Event::RunFinished { .. } => self.0.remove(&Self::key(s)),
            _ => None,
        }
    }
}

/// Each run's events as JSON lines in its own directory's `events.jsonl`,
/// flushed per event, so a killed run keeps every event up to that moment;
/// an event that does not fit (a full disk) is dropped whole.
/// An A/B lab's own events (its verdict) go to the lab's top directory,
/// each arm's to the arm's.
#[derive(Default)]
pub struct RunLogs {
    files: HashMap<(Option<String>, Option<String>), File>,
}

impl Reporter for RunLogs {
    fn report(&mut self, s: &Stamped) {
        let key = Runs::key(s);
        if let Event::RunStarted { run_dir, .. } = &s.event {
            let path = crate::outcome::layout::events_jsonl(Path::new(run_dir));
            match fsx::append_private(&path) {
                Ok(f) => {
                    self.files.insert(key.clone(), f);
                }
                Err(e) => crate::ui::eprintln(&format!("kernlab: cannot write `{}`: {e}; the run goes on without its event log", path.display())),
            }
        }
        let Some(f) = self.files.get_mut(&key) else { return };
        if let Ok(mut line) = serde_json::to_string(s) {
            // One write of the whole line; on a full disk what did get in is
            // cut off again, so the log never holds a partial line (that
            // event is lost, the ones after it are whole).
            line.push('\n');
            let before = f.metadata().map(|m| m.len());
            if f.write_all(line.as_bytes()).and_then(|_| f.flush()).is_err() {
                if let Ok(len) = before {
                    let _ = f.set_len(len);
                }
            }
        }
        if let Event::RunFinished { .. } = s.event {
            self.files.remove(&key);
        }
    }
}

/// Each run directory's `report.html`, written when the run finishes (an
/// A/B lab's after its arms').
#[derive(Default)]
pub struct Pages {
    runs: Runs,
}

impl Reporter for Pages {
    fn report(&mut self, s: &Stamped) {
        let Some(dir) = self.runs.track(s) else { return };
        write_or_warn(&dir, || match outcome::read_any(&crate::outcome::layout::report_json(&dir)) {
            Ok(AnyRecord::Leak(r)) => write_ab(&dir, &r),
            // An A/B lab without its record has no verdict to show.
            Err(e) if detect(&dir).ok() == Some(DirKind::Ab) => Err(e.into()),
            _ => write_run(&dir),
        });
    }
}

/// The terminal summary of `kernlab run`: the lab's own run (not its arms,
/// not a matrix cell), printed when it finishes.
#[derive(Default)]
pub struct Summaries {
    runs: Runs,
}

impl Reporter for Summaries {
    fn report(&mut self, s: &Stamped) {
        if s.cell.is_some() || s.arm.is_some() {
            return;
        }
        let Some(dir) = self.runs.track(s) else { return };
        match outcome::read_any(&crate::outcome::layout::report_json(&dir)) {
            Ok(AnyRecord::Leak(r)) => crate::ui::human(&summary::leak_summary(&r, &dir)),
            Ok(AnyRecord::Run(r)) => crate::ui::human(&summary::run_summary(&r, Some(&dir))),
            Ok(AnyRecord::Matrix(_)) => {}
            Err(e) => crate::ui::eprintln(&format!("kernlab: no summary: {}", crate::util::error_chain(&e))),
        }
    }
}

/// A matrix's `junit.xml`, `ktap.txt`, `report.html` and the kernels ×
/// labs table on the terminal, from its `report.json` when it finishes.
pub struct MatrixOutputs;

impl Reporter for MatrixOutputs {
    fn report(&mut self, s: &Stamped) {
        let Event::MatrixFinished { report, .. } = &s.event else { return };
        let path = Path::new(report);
        let dir = path.parent().unwrap_or(Path::new("."));
        let r: MatrixReport = match outcome::read(path) {
            Ok(r) => r,
            Err(e) => return crate::ui::eprintln(&format!("kernlab: no JUnit, KTAP or page: {}", crate::util::error_chain(&e))),
        };
        write_matrix_files(dir, &r);
        crate::ui::human(&super::matrix::table(&r.cells));
    }
}

/// Writes a matrix directory's `junit.xml`, `ktap.txt` and `report.html`.
pub fn write_matrix_files(dir: &Path, r: &MatrixReport) {
    // A cell's `dir` in the report is relative to the matrix directory
    // (`cells/<id>`): the JUnit's console tails are read from there, not
    // from the working directory.
    let mut cells = r.cells.clone();
    for c in &mut cells {
        c.dir = outcome::resolve(dir, &c.dir);
    }
    let writes = [("junit.xml", super::matrix::junit(&r.name, &cells).into_bytes()), ("ktap.txt", super::matrix::ktap(&cells).into_bytes())];
    for (file, bytes) in writes {
        if let Err(e) = fsx::write_atomic(&dir.join(file), &bytes) {
            crate::ui::eprintln(&format!("kernlab: cannot write `{}`: {e}", dir.join(file).display()));
        }
    }
    write_or_warn(dir, || write_matrix(dir, r));
}
