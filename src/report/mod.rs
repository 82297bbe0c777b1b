//! The outputs: everything kernlab shows or writes besides a run's own
//! records. Reporters on the event stream ([`terminal`]: lines, progress
//! bars, JSON lines; [`outputs`]: `events.jsonl` per run directory, the
//! pages, the summaries, a matrix's JUnit/KTAP/table), and the renderers
//! they use: `report.html` pages ([`page`], [`plot`], [`html`]), terminal
//! summaries ([`summary`]), matrix formats ([`matrix`]).
//!
//! Pages are pure functions of what a directory holds, read here as types
//! ([`RunData::load`], [`detect`]) so the page written at the end of a run
//! and the one `kernlab report` renders later from the same files are the
//! same; nothing re-runs the statistics. A page that cannot be rendered is
//! a warning, never a lost run.

pub mod dumprefs;
pub mod html;
pub mod matrix;
pub mod outputs;
pub mod page;
pub mod plot;
pub mod summary;
pub mod terminal;

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::analysis::growth::slab_growth;
use crate::analysis::leak::ArmSeries;
use crate::outcome::event::Stamped;
use crate::outcome::leak::LeakReport;
use crate::outcome::matrix::{self as matrix_record, CellResult, MatrixReport};
use crate::outcome::run::{CacheGrowth, Manifest, RunOutcome};
use crate::outcome::{self, RecordError};
use crate::sample::rows::{self, BalloonRow, DentryRow, MeminfoRow, OpsRow, Row, SlabRow};
use crate::util::fsx;

pub const FILE: &str = crate::outcome::layout::REPORT_HTML;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("`{}` does not exist or is not a directory", .0.display())]
    NoDir(PathBuf),
    #[error("`{}` is neither a run directory nor a matrix directory (it has no report.json, manifest.json or events.jsonl)", .0.display())]
    NotARun(PathBuf),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the lab of this run")]
    Lab(#[from] crate::lab::LabError),
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// One run: a plain lab, or one arm of an A/B lab.
    Run,
    /// An A/B leak lab: `module/` and `baseline/` runs and the verdict.
    Ab,
    /// A matrix: `cells/<id>/` runs and the matrix report.
    Matrix,
}

/// Everything a run directory holds that its page shows.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    /// `report.json`; None when the run did not get to write it (killed).
    pub report: Option<RunOutcome>,
    pub manifest: Option<Manifest>,
    pub events: Vec<Stamped>,
    pub series: ArmSeries,
    /// The balloon's statistics: key → (t, bytes).
    pub balloon: BTreeMap<String, Vec<(f64, f64)>>,
    /// Caches ranked by growth of active bytes, first to last sample.
    pub slab_growth: Vec<CacheGrowth>,
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ReportError::Read { path: path.into(), source }),
    }
}

/// A record that may be missing (a killed run): None then.
fn optional<T>(r: Result<T, RecordError>) -> Result<Option<T>, ReportError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(RecordError::Missing(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The balloon's statistics from `balloon.csv` text: key → (t, bytes).
pub fn parse_balloon(csv: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows::parse::<BalloonRow>(csv) {
        out.entry(r.key).or_default().push((r.t, r.value as f64));
    }
    out
}

impl RunData {
    pub fn load(dir: &Path) -> Result<RunData, ReportError> {
        let samples = dir.join("samples");
        let slab = read_text(&samples.join(SlabRow::FILE))?;
        Ok(RunData {
            dir: dir.to_path_buf(),
            report: optional(outcome::read::<RunOutcome>(&crate::outcome::layout::report_json(dir)))?,
            manifest: optional(outcome::read_manifest(&crate::outcome::layout::manifest_json(dir)))?,
            events: outcome::read_events(&read_text(&crate::outcome::layout::events_jsonl(dir))?),
            series: ArmSeries::parse(&read_text(&samples.join(MeminfoRow::FILE))?, &slab, &read_text(&samples.join(OpsRow::FILE))?)
                .with_dentry_state(&read_text(&samples.join(DentryRow::FILE))?),
            balloon: parse_balloon(&read_text(&samples.join(BalloonRow::FILE))?),
            slab_growth: slab_growth(&slab, 10),
        })
    }
}

/// What kind of directory `dir` is, from the files in it.
pub fn detect(dir: &Path) -> Result<DirKind, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::NoDir(dir.into()));
    }
    let schema = outcome::schema_of(&crate::outcome::layout::report_json(dir))?;
    match schema.as_deref() {
        Some(matrix_record::SCHEMA) => return Ok(DirKind::Matrix),
        Some(s) if s.starts_with("kernlab.leak-report/") => return Ok(DirKind::Ab),
        Some(s) if s.starts_with("kernlab.report/") => return Ok(DirKind::Run),
        _ => {}
    }
    // A run killed before its report: the files it had by then.
    if dir.join("module").is_dir() && dir.join("baseline").is_dir() && dir.join("lab.yaml").is_file() {
        return Ok(DirKind::Ab);
    }
    if crate::outcome::layout::manifest_json(dir).is_file() || crate::outcome::layout::events_jsonl(dir).is_file() {
        return Ok(DirKind::Run);
    }
    Err(ReportError::NotARun(dir.into()))
}

fn footer(dir: &Path) -> String {
    format!("written by kernlab {} at {} from {}", env!("CARGO_PKG_VERSION"), crate::outcome::event::wall_clock(), dir.display())
}

fn write_page(dir: &Path, text: &str) -> Result<PathBuf, ReportError> {
    let path = dir.join(FILE);
    fsx::write_atomic(&path, text.as_bytes()).map_err(|source| ReportError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Writes `report.html` of one run directory from its files.
pub fn write_run(dir: &Path) -> Result<PathBuf, ReportError> {
    let d = RunData::load(dir)?;
    write_page(dir, &page::run_page(&d, &footer(dir)))
}

/// Writes the top-level `report.html` of an A/B lab.
pub fn write_ab(top: &Path, r: &LeakReport) -> Result<PathBuf, ReportError> {
    let (m, b) = r.arm_dirs(top);
    let (m, b) = (RunData::load(&m)?, RunData::load(&b)?);
    write_page(top, &page::ab_page(r, top, &m, &b, &footer(top)))
}

/// An A/B lab's record: its `report.json`, or for a run killed before it
/// wrote one, the verdict from what its arms left (the only case where
/// `kernlab report` analyses samples).
fn leak_report(top: &Path) -> Result<LeakReport, ReportError> {
    match outcome::read::<LeakReport>(&crate::outcome::layout::report_json(top)) {
        Ok(r) => Ok(r),
        Err(RecordError::Missing(_)) => Ok(crate::run::ab::recover(top)?),
        Err(e) => Err(e.into()),
    }
}

/// Where a cell's run directory is, seen from the matrix directory: its
/// own `cells/<id>` when it is there, else the recorded path resolved
/// against the matrix directory (relative: inside it; absolute: a merged
/// report's cells, in the shards' directories).
fn cell_dir(matrix: &Path, c: &CellResult) -> PathBuf {
    let own = matrix.join("cells").join(&c.id);
    if own.is_dir() {
        own
    } else {
        outcome::resolve(matrix, &c.dir)
    }
}

/// The relative path from directory `from` to `to`, both absolute; None if
/// either is not.
pub fn relative(from: &Path, to: &Path) -> Option<PathBuf> {
    if !from.is_absolute() || !to.is_absolute() {
        return None;
    }
    let norm = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => v.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    v.pop();
                }
                _ => {}
            }
        }
        v
    };
    let (f, t) = (norm(from), norm(to));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for s in &t[common..] {
        rel.push(s);
    }
    Some(rel)
}

/// The link from the matrix page to a cell's report, relative, each
/// segment percent-encoded.
fn cell_href(matrix: &Path, c: &CellResult) -> String {
    let dir = cell_dir(matrix, c);
    let abs = |p: &Path| std::fs::canonicalize(p).ok();
    let rel = match (abs(matrix), abs(&dir)) {
        (Some(m), Some(d)) => relative(&m, &d),
        _ => None,
    }
    .unwrap_or_else(|| Path::new("cells").join(&c.id));
    let mut href: Vec<String> = rel.components().map(|c| html::url_segment(&c.as_os_str().to_string_lossy())).collect();
    href.push(FILE.into());
    href.join("/")
}

/// Writes the matrix directory's index page.
pub fn write_matrix(dir: &Path, r: &MatrixReport) -> Result<PathBuf, ReportError> {
    let linked: Vec<(CellResult, String)> = r.cells.iter().map(|c| (c.clone(), cell_href(dir, c))).collect();
    write_page(dir, &page::matrix_page(&r.name, r.exit_code, &linked, &footer(dir)))
}

/// Renders and writes a page at the end of a run or matrix. A failure, a
/// panic in rendering included, is logged and otherwise ignored: every
/// other result of the run is already on disk and must stay the answer.
pub fn write_or_warn(dir: &Path, f: impl FnOnce() -> Result<PathBuf, ReportError>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("{FILE} of `{}` not written: {}", dir.display(), chain(&e)),
        Err(_) => tracing::warn!("{FILE} of `{}` not written: rendering panicked", dir.display()),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    crate::util::error_chain(e)
}

/// What `kernlab report` rebuilt: the page and the terminal summary.
#[derive(Debug)]
pub struct Rebuilt {
    pub kind: DirKind,
    pub html: PathBuf,
    pub summary: String,
}

/// Renders `report.html` of a run, A/B or matrix directory again from its
/// records and samples (and those of its arms or cells), with the terminal
/// summary. The verdicts are the records': nothing is analysed again.
pub fn rebuild(dir: &Path) -> Result<Rebuilt, ReportError> {
    let kind = detect(dir)?;
    match kind {
        // A run or an A/B lab: its pages where its files are.
        DirKind::Run | DirKind::Ab => rebuild_into(dir, dir),
        DirKind::Matrix => {
            let r: MatrixReport = outcome::read(&crate::outcome::layout::report_json(dir))?;
            // Each cell's own page first, so the index's links lead somewhere;
            // a cell that cannot be rebuilt is a warning.
            for c in &r.cells {
                let d = cell_dir(dir, c);
                if let Err(e) = rebuild(&d) {
                    tracing::warn!("cell {}: {}", c.id, chain(&e));
                }
            }
            let html = write_matrix(dir, &r)?;
            let summary = format!("{}matrix {}: exit {}; {}\n", matrix::table(&r.cells), r.name, r.exit_code, dir.display());
            Ok(Rebuilt { kind, html, summary })
        }
    }
}

/// [`rebuild`] into another directory: the pages of the run, A/B lab or
/// matrix at `src` are written under `out` (the same layout: `report.html`,
/// `module/` and `baseline/`, `cells/<id>/`), and `src` is only read, so a
/// run on a read-only artifact store or shared with others can be
/// re-rendered. The pages are self-contained (plots inline, links only to
/// each other), so the copy under `out` works on its own.
pub fn rebuild_into(src: &Path, out: &Path) -> Result<Rebuilt, ReportError> {
    let kind = detect(src)?;
    // A directory that exists keeps its mode (a run rebuilt in place, or
    // one shared with --share).
    let mkdir = |d: &Path| if d.is_dir() { Ok(()) } else { fsx::private_dir(d).map_err(|source| ReportError::Write { path: d.to_path_buf(), source }) };
    mkdir(out)?;
    match kind {
        DirKind::Run => {
            let d = RunData::load(src)?;
            let html = write_page(out, &page::run_page(&d, &footer(src)))?;
            let summary = match &d.report {
                Some(r) => summary::run_summary(r, Some(src)),
                None => format!("run {}: no report.json (the run did not finish)\n", src.display()),
            };
            Ok(Rebuilt { kind, html, summary })
        }
        DirKind::Ab => {
            let r = leak_report(src)?;
            let (md, bd) = r.arm_dirs(src);
            for (arm, d) in [("module", &md), ("baseline", &bd)] {
                if detect(d).is_ok() {
                    mkdir(&out.join(arm))?;
                    write_page(&out.join(arm), &page::run_page(&RunData::load(d)?, &footer(d)))?;
                }
            }
            let (m, b) = (RunData::load(&md)?, RunData::load(&bd)?);
            let html = write_page(out, &page::ab_page(&r, src, &m, &b, &footer(src)))?;
            Ok(Rebuilt { kind, html, summary: summary::leak_summary(&r, src) })
        }
        DirKind::Matrix => {
            let r: MatrixReport = outcome::read(&crate::outcome::layout::report_json(src))?;
            let mut linked = Vec::new();
            for c in &r.cells {
                let rel = Path::new("cells").join(&c.id);
                if let Err(e) = rebuild_into(&cell_dir(src, c), &out.join(&rel)) {
                    tracing::warn!("cell {}: {}", c.id, chain(&e));
                }
                linked.push((c.clone(), format!("{}/{FILE}", rel.display())));
            }
            let html = write_page(out, &page::matrix_page(&r.name, r.exit_code, &linked, &footer(src)))?;
            let summary = format!("{}matrix {}: exit {}; {}\n", matrix::table(&r.cells), r.name, r.exit_code, src.display());
            Ok(Rebuilt { kind, html, summary })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links_between_directories() {
        assert_eq!(relative(Path::new("/m/x"), Path::new("/m/x/cells/a@k")).unwrap(), Path::new("cells/a@k"));
        assert_eq!(relative(Path::new("/m/merged"), Path::new("/m/shard1/cells/a@k")).unwrap(), Path::new("../shard1/cells/a@k"));
        assert!(relative(Path::new("m"), Path::new("/x")).is_none());
    }

    #[test]
    fn events_and_balloon_parse_from_their_files() {
        let ev = outcome::read_events("{\"schema\":\"kernlab.event/1\",\"t\":1,\"wall\":\"w\",\"cell\":\"l@k\",\"arm\":\"module\",\"event\":\"ssh-ready\",\"secs_since_qemu_start\":3.1}\nnot json\n{\"t\":2}\n");
        assert_eq!(ev.len(), 1, "a torn or foreign line is skipped");
        assert_eq!((ev[0].t, ev[0].arm.as_deref()), (1.0, Some("module")));
        assert_eq!(ev[0].event, crate::outcome::event::Event::SshReady { secs_since_qemu_start: 3.1 });
        let b = parse_balloon("t,key,value\n1.0,stat-free-memory,1024\nbad\n2.0,stat-free-memory,512\n");
        assert_eq!(b["stat-free-memory"], [(1.0, 1024.0), (2.0, 512.0)]);
    }

    #[test]
    fn directories_are_told_apart_and_others_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let err = detect(d.path()).unwrap_err().to_string();
        assert!(err.contains(&d.path().display().to_string()) && err.contains("neither a run directory nor a matrix directory"), "{err}");
        assert!(detect(&d.path().join("nope")).unwrap_err().to_string().contains("does not exist"));
        std::fs::write(d.path().join("events.jsonl"), "").unwrap();
        assert_eq!(detect(d.path()).unwrap(), DirKind::Run);
        std::fs::write(d.path().join("report.json"), format!("{{\"schema\": \"{}\", \"cells\": []}}", matrix_record::SCHEMA)).unwrap();
        assert_eq!(detect(d.path()).unwrap(), DirKind::Matrix);
        std::fs::write(d.path().join("report.json"), "{\"schema\": \"kernlab.leak-report/1\"}").unwrap();
        assert_eq!(detect(d.path()).unwrap(), DirKind::Ab);
    }

    #[test]
    fn a_killed_run_still_gets_a_page_and_a_matrix_index_links_its_cells() {
        let m = tempfile::tempdir().unwrap();
        let cell = m.path().join("cells").join("smoke@k 1");
        std::fs::create_dir_all(cell.join("samples")).unwrap();
        std::fs::write(cell.join("events.jsonl"), "{\"schema\":\"kernlab.event/2\",\"t\":0.5,\"wall\":\"w\",\"event\":\"workload-started\",\"commands\":1,\"duration_secs\":3,\"until_exhaustion\":false}\n").unwrap();
        std::fs::write(
            cell.join("samples/meminfo.csv"),
            "t,uptime,key,bytes\n1,0,MemAvailable,100000000\n2,0,MemAvailable,99000000\n3,0,MemAvailable,98000000\n",
        )
        .unwrap();
        let r = rebuild(&cell).unwrap();
        assert_eq!(r.kind, DirKind::Run);
        let page = std::fs::read_to_string(&r.html).unwrap();
        assert!(page.contains("<svg") && page.contains(&plot::svg_text("workload started")), "{page}");
        assert!(r.summary.contains("no report.json"));

        let results = serde_json::json!({"schema": matrix_record::SCHEMA, "name": "n", "exit_code": 0, "cells": [
            {"id": "smoke@k 1", "lab": "smoke", "kernel": "k 1", "exit_code": 0, "verdict": "completed", "error": null,
             "dir": "relative/elsewhere", "secs": 1.0, "delta_per_hour": null, "bytes_per_op": null}]});
        std::fs::write(m.path().join("report.json"), results.to_string()).unwrap();
        let r = rebuild(m.path()).unwrap();
        assert_eq!(r.kind, DirKind::Matrix);
        let index = std::fs::read_to_string(&r.html).unwrap();
        assert!(index.contains("href=\"cells/smoke@k%201/report.html\""), "{index}");
        assert!(r.summary.contains("completed (0)"), "{}", r.summary);
        // No temp file is left beside the page.
        assert!(std::fs::read_dir(m.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".tmp")));
    }

    #[test]
    fn a_run_directory_of_an_older_schema_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        for arm in ["module", "baseline"] {
            std::fs::create_dir_all(d.path().join(arm)).unwrap();
        }
        std::fs::write(d.path().join("report.json"), r#"{"schema": "kernlab.leak-report/1", "verdict": "leak"}"#).unwrap();
        let e = crate::util::error_chain(&rebuild(d.path()).unwrap_err());
        assert!(e.contains("kernlab.leak-report/1") && e.contains(crate::outcome::leak::SCHEMA) && e.contains("report.json"), "{e}");
    }

    #[test]
    fn a_failed_render_is_a_warning_not_a_panic() {
        write_or_warn(Path::new("/x"), || panic!("boom"));
        write_or_warn(Path::new("/x"), || Err(ReportError::NotARun("/x".into())));
    }
}
