//! Real records kept in the repository (`tests/data/records/`, the files of
//! a short A/B leak run on the real 6.1 kernel) against the committed
//! schemas (`docs/schemas/`) and this kernlab's readers: fast, no VM. A
//! record type that changes so that an existing record no longer fits or
//! reads fails here; the integration tests check their own runs' records
//! with the same helper (`common::assert_valid_records`).

mod common;
use common::*;

use kernlab::outcome::{self, event::Event, leak::LeakReport, run::RunOutcome};

#[test]
fn the_recorded_records_fit_their_schemas_and_read_back() {
    let top = repo("tests/data/records/leak-ab");
    // 1 leak report, 2 arm reports, 2 manifests, and every event line.
    let lines: usize = ["", "module", "baseline"].iter().map(|a| events(&top.join(a)).len()).sum();
    assert!(lines > 40, "{lines} event lines");
    assert_eq!(assert_valid_records(&top), 5 + lines);

    // The same files through kernlab's own readers.
    let r: LeakReport = outcome::read(&top.join("report.json")).unwrap();
    assert_eq!(r.verdict.map(|v| v.word()), Some("leak"));
    let (m, b) = r.arm_dirs(&top);
    assert_eq!((m, b), (top.join("module"), top.join("baseline")), "the arms resolve against the record's directory");
    for arm in ["module", "baseline"] {
        let d = top.join(arm);
        let rep: RunOutcome = outcome::read(&d.join("report.json")).unwrap();
        assert_eq!(rep.outcome, "completed");
        let man = outcome::read_manifest(&d.join("manifest.json")).unwrap();
        assert_eq!(man.schema, outcome::run::MANIFEST_SCHEMA);
        let text = std::fs::read_to_string(d.join("events.jsonl")).unwrap();
        // Every line reads back as an event, the samples included: each
        // has one `t` (the stamp's) and its own `sample_t`, taken before
        // the sample was recorded.
        let read = outcome::read_events(&text);
        assert_eq!(read.len(), text.lines().count(), "{arm}: every line is an event of this schema");
        let samples: Vec<_> = read.iter().filter_map(|e| match e.event { Event::Sample { sample_t, .. } => Some((e.t, sample_t)), _ => None }).collect();
        assert!(samples.len() > 5, "{arm}: {} samples", samples.len());
        assert!(samples.iter().all(|&(t, sample_t)| sample_t <= t && t - sample_t < 1.0), "{arm}: {samples:?}");
        assert!(text.lines().all(|l| l.matches("\"t\":").count() == 1), "{arm}: one `t` a line");
    }
}

/// An events.jsonl of an older kernlab (`kernlab.event/1`, a copy of this
/// A/B run's module arm as it was recorded before version 2), whose
/// `sample` lines carry the key `t` twice: every line still reads, each
/// sample with both times (the stamp's first, the sample's second).
#[test]
fn an_old_event_1_run_still_reads_its_samples_included() {
    let text = std::fs::read_to_string(repo("tests/data/records/event-1/module.events.jsonl")).unwrap();
    assert!(text.lines().all(|l| l.contains("\"schema\":\"kernlab.event/1\"")));
    let sample_lines: Vec<&str> = text.lines().filter(|l| l.contains("\"event\":\"sample\"")).collect();
    assert!(sample_lines.len() > 5 && sample_lines.iter().all(|l| l.matches("\"t\":").count() == 2), "the /1 defect is in this file");
    let read = outcome::read_events(&text);
    assert_eq!(read.len(), text.lines().count(), "every /1 line reads");
    assert!(read.iter().all(|e| e.schema == kernlab::outcome::event::SCHEMA_V1));
    let samples: Vec<_> = read.iter().filter_map(|e| match e.event { Event::Sample { sample_t, .. } => Some((e.t, sample_t)), _ => None }).collect();
    assert_eq!(samples.len(), sample_lines.len());
    // The first line's two times, as written: `"t":3.212` then `"t":2.449`.
    assert_eq!(samples[0], (3.212, 2.449));
    assert!(samples.iter().all(|&(t, sample_t)| sample_t <= t), "{samples:?}");
    // An old run directory holding it loads for its pages with every event.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("events.jsonl"), &text).unwrap();
    let run = kernlab::report::RunData::load(d.path()).unwrap();
    assert_eq!(run.events.len(), text.lines().count());
}

#[test]
fn a_record_that_breaks_its_schema_is_caught_with_where() {
    let top = repo("tests/data/records/leak-ab");
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(top.join("module/report.json")).unwrap()).unwrap();
    let v = schema_validator("kernlab.report/1");
    assert!(v.is_valid(&good));
    let mut bad = good.clone();
    bad["exit_code"] = "0".into();
    let errors: Vec<String> = v.iter_errors(&bad).map(|e| e.instance_path().to_string()).collect();
    assert_eq!(errors, ["/exit_code"]);
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("outcome");
    assert!(!v.is_valid(&missing), "a required field");
    let mut other = good;
    other["schema"] = "kernlab.report/2".into();
    assert!(!v.is_valid(&other), "another version's identifier");
    let e = std::panic::catch_unwind(|| assert_valid_record("x.json", &bad)).unwrap_err();
    let msg = e.downcast_ref::<String>().unwrap();
    assert!(msg.contains("x.json") && msg.contains("/exit_code") && msg.contains("kernlab.report/1"), "{msg}");
}

#[test]
fn every_schema_file_is_a_valid_schema_named_after_its_identifier() {
    let mut n = 0;
    for e in std::fs::read_dir(repo("docs/schemas")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".schema.json") else { continue };
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        let id = s["title"].as_str().unwrap();
        assert_eq!(id.replace('/', "-"), stem, "{name}");
        assert_eq!(s["$id"], format!("urn:kernlab:schema:{id}"));
        let _ = schema_validator(id);
        n += 1;
    }
    assert_eq!(n, 9);
}
