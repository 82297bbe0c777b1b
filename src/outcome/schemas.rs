//! One JSON Schema per record kind, generated from the record types
//! (`schemars`) and committed under `docs/schemas/`: `kernlab schemas
//! --out docs/schemas` writes them again, and a unit test fails when the
//! committed files differ from what the types generate.
//!
//! A record's schema identifier `kernlab.NAME/N` is the file
//! `kernlab.NAME-N.schema.json` (the `/` becomes `-`); the schema's `$id`
//! is `urn:kernlab:schema:kernlab.NAME/N`, its `title` the identifier, and
//! its `schema` property must equal the identifier.

use std::path::{Path, PathBuf};

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

/// One record kind: its schema identifier, the file(s) that hold it, and
/// its type's schema.
pub struct RecordKind {
    pub id: &'static str,
    /// Where the record is found.
    pub found_in: &'static str,
    schema: fn(&mut schemars::SchemaGenerator) -> Schema,
}

fn of<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> Schema {
    g.clone().into_root_schema_for::<T>()
}

/// Every record kind kernlab writes.
pub fn kinds() -> Vec<RecordKind> {
    vec![
        RecordKind { id: super::run::SCHEMA, found_in: "a run directory's report.json", schema: of::<super::run::RunOutcome> },
        RecordKind { id: super::run::MANIFEST_SCHEMA, found_in: "a run directory's manifest.json", schema: of::<super::run::Manifest> },
        RecordKind { id: super::leak::SCHEMA, found_in: "an A/B lab's top-level report.json", schema: of::<super::leak::LeakReport> },
        RecordKind { id: super::matrix::SCHEMA, found_in: "a matrix directory's report.json", schema: of::<super::matrix::MatrixReport> },
        RecordKind { id: super::event::SCHEMA, found_in: "each line of events.jsonl, and of `--message-format json` on stdout", schema: of::<super::event::Stamped> },
        RecordKind { id: crate::bisect::SCHEMA, found_in: "a bisection's bisect.json", schema: of::<crate::bisect::BisectReport> },
        RecordKind { id: crate::calibrate::SCHEMA, found_in: "a calibration's calibration.json", schema: of::<crate::calibrate::Calibration> },
        RecordKind { id: crate::doctor::SCHEMA, found_in: "`kernlab doctor --message-format json` on stdout", schema: of::<crate::doctor::DoctorReport> },
        RecordKind { id: crate::triage::SCHEMA, found_in: "`kernlab triage`'s triage.json", schema: of::<crate::triage::TriageRecord> },
    ]
}

/// `kernlab.leak-report/2` → `kernlab.leak-report-2.schema.json`.
pub fn file_name(id: &str) -> String {
    format!("{}.schema.json", id.replace('/', "-"))
}

impl RecordKind {
    /// The schema of the record as kernlab writes it (the serialized form:
    /// a field skipped when empty is optional, every other one required).
    pub fn schema(&self) -> serde_json::Value {
        let mut g = SchemaSettings::draft2020_12().for_serialize().into_generator();
        let mut v = (self.schema)(&mut g).to_value();
        if let Some(o) = v.as_object_mut() {
            let described = o.get("description").and_then(|d| d.as_str()).map(|d| format!("{d}\n\n")).unwrap_or_default();
            o.insert("$id".into(), format!("urn:kernlab:schema:{}", self.id).into());
            o.insert("title".into(), self.id.into());
            o.insert("description".into(), format!("{described}Schema `{}`: {}. Generated from kernlab's types (`kernlab schemas`).", self.id, self.found_in).into());
            if let Some(s) = o.get_mut("properties").and_then(|p| p.get_mut("schema")).and_then(|s| s.as_object_mut()) {
                s.remove("type");
                s.insert("const".into(), self.id.into());
            }
        }
        v
    }

    /// The schema file's text: pretty JSON and a final newline.
    pub fn text(&self) -> String {
        serde_json::to_string_pretty(&self.schema()).expect("a schema serializes") + "\n"
    }
}

/// Writes every record kind's schema into `dir` (created if missing).
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    for k in kinds() {
        let path = dir.join(file_name(k.id));
        std::fs::write(&path, k.text()).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_file_is_named_after_its_identifier() {
        assert_eq!(file_name("kernlab.leak-report/2"), "kernlab.leak-report-2.schema.json");
        let ids: Vec<&str> = kinds().iter().map(|k| k.id).collect();
        let mut uniq = ids.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(ids.len(), uniq.len(), "{ids:?}");
        for k in kinds() {
            let v = k.schema();
            assert_eq!(v["title"], k.id);
            assert_eq!(v["$id"], format!("urn:kernlab:schema:{}", k.id));
            assert_eq!(v["properties"]["schema"]["const"], k.id, "{}: the `schema` property is pinned", k.id);
        }
    }

    /// The committed `docs/schemas/` are what the types generate.
    /// `KERNLAB_BLESS=1 cargo test --lib committed_schemas` (or `kernlab
    /// schemas --out docs/schemas`) writes them again.
    #[test]
    fn committed_schemas_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
        if std::env::var_os("KERNLAB_BLESS").is_some_and(|v| v == "1") {
            write_all(&dir).unwrap();
        }
        let mut stale = Vec::new();
        for k in kinds() {
            let path = dir.join(file_name(k.id));
            match std::fs::read_to_string(&path) {
                Ok(t) if t == k.text() => {}
                Ok(_) => stale.push(format!("{} differs from what the types generate", path.display())),
                Err(e) => stale.push(format!("{}: {e}", path.display())),
            }
        }
        let known: Vec<String> = kinds().iter().map(|k| file_name(k.id)).collect();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".schema.json") && !known.contains(&name) {
                stale.push(format!("{}: no record kind has this schema (a renamed or removed one? delete it)", e.path().display()));
            }
        }
        assert!(stale.is_empty(), "{}\nregenerate with `KERNLAB_BLESS=1 cargo test --lib committed_schemas` or `cargo run -- schemas --out docs/schemas`, and review the diff", stale.join("\n"));
    }
}
