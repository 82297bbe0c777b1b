//! Where the records live in the directories kernlab writes: the one place
//! that names their files (`outcome::layout::tests` holds the rest of
//! `src/` to that). A run directory (docs/run-directory.md) holds
//! `manifest.json`, `events.jsonl`, `report.json` and `report.html`; an
//! A/B lab's, its own `report.json` and `report.html` over `module/` and
//! `baseline/`; a matrix's, `report.json` over its cells; a bisection's,
//! `bisect.json`; a calibration's, `calibration.json`; `kernlab triage`'s,
//! `triage.json`. Each function takes the directory and gives the path.

use std::path::{Path, PathBuf};

/// The record of a run, an A/B lab or a matrix.
pub const REPORT_JSON: &str = "report.json";
/// The run's inputs and machine (`kernlab.manifest/1`).
pub const MANIFEST_JSON: &str = "manifest.json";
/// The run's event stream (`kernlab.event/2`, one JSON line each).
pub const EVENTS_JSONL: &str = "events.jsonl";
/// The page of a run, an A/B lab or a matrix.
pub const REPORT_HTML: &str = "report.html";
/// The record of a bisection.
pub const BISECT_JSON: &str = "bisect.json";
/// The record of a calibration.
pub const CALIBRATION_JSON: &str = "calibration.json";
/// The record of `kernlab triage`.
pub const TRIAGE_JSON: &str = "triage.json";

pub fn report_json(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(REPORT_JSON)
}

pub fn manifest_json(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(MANIFEST_JSON)
}

pub fn events_jsonl(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(EVENTS_JSONL)
}

pub fn report_html(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(REPORT_HTML)
}

pub fn bisect_json(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(BISECT_JSON)
}

pub fn calibration_json(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(CALIBRATION_JSON)
}

pub fn triage_json(dir: impl AsRef<Path>) -> PathBuf {
    dir.as_ref().join(TRIAGE_JSON)
}

#[cfg(test)]
mod tests {
    /// Each non-test, non-comment line of `src/` (but this file) that
    /// spells a record's file name.
    #[test]
    fn no_other_file_names_a_record() {
        let names = [super::REPORT_JSON, super::MANIFEST_JSON, super::REPORT_HTML, super::EVENTS_JSONL, super::BISECT_JSON, super::CALIBRATION_JSON, super::TRIAGE_JSON].map(|n| format!("\"{n}\""));
        let stray: Vec<String> = crate::util::source_lines(&["src/outcome/layout.rs"])
            .into_iter()
            .filter(|(_, _, l)| names.iter().any(|w| l.contains(w.as_str())))
            .map(|(f, n, l)| format!("{f}:{n}: {l}"))
            .collect();
        assert!(stray.is_empty(), "a record's file name belongs in src/outcome/layout.rs; these lines spell one:\n{}", stray.join("\n"));
    }
}
