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

/// The events of an `events.jsonl` (or of `--message-format json`), of
/// schema `kernlab.event/2` or of an older run's `kernlab.event/1`; a line
/// that is not an event of either (a torn last line of a killed run, a
/// line of another version) is skipped.
///
/// A `/1` `sample`, `sample-failed` or `sampler-fallback` line has the key
/// `t` twice: kernlab wrote the stamp's first and the sample's second, so
/// the line is read with its keys in order, the second `t` as the
/// sample's `sample_t`. Such a line read by a parser that keeps one value
/// per key has lost one of the two.
pub fn read_events(text: &str) -> Vec<event::Stamped> {
    text.lines().filter_map(read_event).collect()
}

fn read_event(line: &str) -> Option<event::Stamped> {
    let pairs = serde_json::from_str::<OrderedPairs>(line).ok()?.0;
    let schema = pairs.iter().find(|(k, _)| k == "schema").and_then(|(_, v)| v.as_str())?;
    let mut map = serde_json::Map::new();
    match schema {
        event::SCHEMA => {
            for (k, v) in pairs {
                // A repeated key is not a line kernlab wrote.
                if map.insert(k, v).is_some() {
                    return None;
                }
            }
        }
        event::SCHEMA_V1 => {
            let mut seen_t = false;
            for (k, v) in pairs {
                let k = match k.as_str() {
                    "t" if seen_t => "sample_t".to_string(),
                    "t" => {
                        seen_t = true;
                        k
                    }
                    _ => k,
                };
                if map.insert(k, v).is_some() {
                    return None;
                }
            }
        }
        _ => return None,
    }
    serde_json::from_value(serde_json::Value::Object(map)).ok()
}

/// A JSON object's members in their order, repeated keys kept.
struct OrderedPairs(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for OrderedPairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<OrderedPairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(kv) = m.next_entry::<String, serde_json::Value>()? {
                    pairs.push(kv);
                }
                Ok(OrderedPairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
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

    /// An old run's `/1` lines read, the sample lines with both times (the
    /// stamp's `t` first, the sample's second); a `/2` line has one `t`
    /// and its `sample_t`, and reads; a `/2` line with a repeated key, or a
    /// line of another version, is skipped.
    #[test]
    fn events_of_both_versions_read_with_both_times() {
        use event::Event;
        let v1 = concat!(
            r#"{"schema":"kernlab.event/1","t":0.032,"wall":"w","arm":"module","event":"run-started","lab":"l","kernel":"k","run_dir":"r"}"#, "\n",
            r#"{"schema":"kernlab.event/1","t":3.212,"wall":"w","arm":"module","event":"sample","index":0,"t":2.449,"uptime":3.81,"mem_available":440848384,"slab":27721728,"s_unreclaim":17920000,"nr_dentry":11497,"caches":211}"#, "\n",
            r#"{"schema":"kernlab.event/1","t":5.5,"wall":"w","event":"sample-failed","t":4.449,"reason":"ssh: timed out"}"#, "\n",
            r#"{"schema":"kernlab.event/1","t":6.1,"wall":"w","event":"sampler-fallback","t":5.449,"reason":"broke"}"#, "\n",
        );
        let ev = read_events(v1);
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert_eq!((ev[1].t, ev[1].schema.as_str()), (3.212, event::SCHEMA_V1));
        assert!(matches!(ev[1].event, Event::Sample { index: 0, sample_t: 2.449, mem_available: Some(440848384), .. }), "{:?}", ev[1].event);
        assert_eq!((ev[2].t, &ev[2].event), (5.5, &Event::SampleFailed { sample_t: 4.449, reason: "ssh: timed out".into() }));
        assert_eq!((ev[3].t, &ev[3].event), (6.1, &Event::SamplerFallback { sample_t: 5.449, reason: "broke".into() }));

        let s = event::Stamped {
            schema: event::SCHEMA.into(),
            t: 3.2,
            wall: "w".into(),
            cell: None,
            arm: Some("module".into()),
            event: Event::Sample { index: 0, sample_t: 2.4, uptime: None, mem_available: Some(1), slab: None, s_unreclaim: None, nr_dentry: None, caches: None },
        };
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(line.matches("\"t\":").count(), 1, "{line}");
        assert!(line.contains("\"sample_t\":2.4"), "{line}");
        let back = read_events(&format!("{line}\n"));
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].t, &back[0].event), (3.2, &s.event));

        let doubled = line.replacen("\"sample_t\"", "\"t\"", 1);
        let other = line.replacen(event::SCHEMA, "kernlab.event/9", 1);
        assert!(read_events(&format!("{doubled}\n{other}\nnot json\n")).is_empty());
    }
}
