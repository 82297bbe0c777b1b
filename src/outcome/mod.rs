//! What runs produce, as types: the event stream ([`event`]), a run's
//! `report.json` and `manifest.json` ([`run`]), an A/B lab's verdict
//! ([`leak`]) and a matrix's cells ([`matrix`]). Everything that reads a
//! run directory back (`kernlab report`, the matrix, the pages) reads these
//! types with [`read`]; nothing indexes the JSON by key. This layer sits
//! below the run, the matrix and the reporters, and imports none of them.

pub mod event;
pub mod leak;
pub mod layout;
pub mod matrix;
pub mod run;
pub mod schemas;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A record file with a versioned schema.
pub trait Record: DeserializeOwned {
    /// The schema this kernlab writes and reads (`kernlab.report/1`).
    const SCHEMA: &'static str;
}

impl Record for run::RunOutcome {
    const SCHEMA: &'static str = run::SCHEMA;
}
impl Record for leak::LeakReport {
    const SCHEMA: &'static str = leak::SCHEMA;
}
impl Record for matrix::MatrixReport {
    const SCHEMA: &'static str = matrix::SCHEMA;
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("`{}` does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot read `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("`{}` has schema `{found}`, and this kernlab reads `{wanted}`: it was written by another kernlab version; run the lab again (or use the kernlab that wrote it)", path.display())]
    Schema { path: PathBuf, found: String, wanted: &'static str },
}

/// Only the `schema` field of a record, to check it before the rest.
#[derive(Deserialize)]
struct SchemaOnly {
    #[serde(default)]
    schema: Option<String>,
}

/// A record file's bytes; a missing file is [`RecordError::Missing`].
fn bytes(path: &Path) -> Result<Vec<u8>, RecordError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RecordError::Missing(path.into()),
        _ => RecordError::Io { path: path.into(), source },
    })
}

fn parse_error(path: &Path) -> impl Fn(serde_json::Error) -> RecordError + '_ {
    move |e| RecordError::Parse { path: path.into(), message: e.to_string() }
}

/// The schema named in a record file, if it has one (`Ok(None)`: no file).
pub fn schema_of(path: &Path) -> Result<Option<String>, RecordError> {
    match bytes(path) {
        Ok(b) => Ok(serde_json::from_slice::<SchemaOnly>(&b).map_err(parse_error(path))?.schema),
        Err(RecordError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Any run directory's `report.json`, whichever of the three records it is.
#[derive(Debug, Clone)]
pub enum AnyRecord {
    Run(Box<run::RunOutcome>),
    Leak(Box<leak::LeakReport>),
    Matrix(Box<matrix::MatrixReport>),
}

/// Reads whichever record `path` holds, by its schema, in one read.
pub fn read_any(path: &Path) -> Result<AnyRecord, RecordError> {
    let b = bytes(path)?;
    let found = serde_json::from_slice::<SchemaOnly>(&b).map_err(parse_error(path))?.schema.unwrap_or_default();
    let parse = parse_error(path);
    match found.as_str() {
        run::SCHEMA => serde_json::from_slice(&b).map(|r| AnyRecord::Run(Box::new(r))).map_err(parse),
        leak::SCHEMA => serde_json::from_slice(&b).map(|r| AnyRecord::Leak(Box::new(r))).map_err(parse),
        matrix::SCHEMA => serde_json::from_slice(&b).map(|r| AnyRecord::Matrix(Box::new(r))).map_err(parse),
        _ => Err(RecordError::Schema { path: path.into(), found, wanted: "a kernlab record" }),
    }
}

/// Reads a record, checking its schema first: a file of another schema
/// version is a clear error, not a half-read value.
pub fn read<T: Record>(path: &Path) -> Result<T, RecordError> {
    let b = bytes(path)?;
    let found = serde_json::from_slice::<SchemaOnly>(&b).map_err(parse_error(path))?.schema.unwrap_or_default();
    if found != T::SCHEMA {
        return Err(RecordError::Schema { path: path.into(), found, wanted: T::SCHEMA });
    }
    serde_json::from_slice(&b).map_err(parse_error(path))
}

/// Reads a manifest (it has no schema field of its own; its fields default).
pub fn read_manifest(path: &Path) -> Result<run::Manifest, RecordError> {
    serde_json::from_slice(&bytes(path)?).map_err(parse_error(path))
}

/// The events of an `events.jsonl`; a line that is not an event of this
/// schema (a torn last line of a killed run) is skipped.
/// A path as a record in `record_dir` holds it: relative to that
/// directory when it is inside it (`module`, `crash/<stamp>/vmcore`), so
/// that a moved or copied run directory still holds good paths; a path
/// outside it (an input of the lab) as it is.
pub fn recorded(record_dir: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(record_dir) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

/// The file a path in a record of `record_dir` names: a relative one
/// against that directory, an absolute one (an input, or a record of an
/// older kernlab) as it is.
pub fn resolve(record_dir: &Path, recorded: &Path) -> PathBuf {
    record_dir.join(recorded)
}

/// A unit enum as it is in the JSON (`no-leak`, `reference`).
pub fn kebab<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub fn read_events(text: &str) -> Vec<event::Stamped> {
    text.lines().filter_map(|l| serde_json::from_str::<event::Stamped>(l).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_another_schema_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("report.json");
        std::fs::write(&p, r#"{"schema": "kernlab.leak-report/1", "lab": "x"}"#).unwrap();
        let e = read::<leak::LeakReport>(&p).unwrap_err().to_string();
        assert!(e.contains("kernlab.leak-report/1") && e.contains("kernlab.leak-report/2") && e.contains("report.json"), "{e}");
        assert!(matches!(read::<leak::LeakReport>(&dir.path().join("none.json")), Err(RecordError::Missing(_))));
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(read::<leak::LeakReport>(&p), Err(RecordError::Parse { .. })));
    }

    #[test]
    fn paths_inside_the_record_directory_are_recorded_relative_and_resolve_back() {
        let top = Path::new("/runs/x/20260101T000000Z-k");
        assert_eq!(recorded(top, &top.join("module")), Path::new("module"));
        assert_eq!(recorded(top, &top.join("crash/a/vmcore")), Path::new("crash/a/vmcore"));
        assert_eq!(recorded(top, top), Path::new("."));
        assert_eq!(recorded(top, Path::new("/src/labs/leaky")), Path::new("/src/labs/leaky"), "an input outside stays absolute");
        assert_eq!(recorded(Path::new("runs/x"), Path::new("runs/x/baseline")), Path::new("baseline"));
        let moved = Path::new("/elsewhere/run");
        assert_eq!(resolve(moved, Path::new("module")), Path::new("/elsewhere/run/module"));
        assert_eq!(resolve(moved, Path::new(".")), Path::new("/elsewhere/run/."));
        assert_eq!(resolve(moved, Path::new("/runs/x/module")), Path::new("/runs/x/module"), "an older record's absolute path as it is");
    }
}
