//! Lab files: the YAML that says what one kernel lab run does.
//!
//! This module owns the lab schema, reading it from YAML (syntax, unknown
//! keys, types), checking it (ranges, names, cross-field rules) and writing
//! the resolved lab back out with every default filled in. It does not check
//! that the named kernel descriptor exists or run anything: the orchestrator
//! does that with the `Lab` it gets back. Errors name the file, the line and
//! column and the field path, e.g.
//! `labs/x.yaml:7:11: vm.memory: must be at least 128 MiB, got 0`.
//! The file format is documented in `docs/lab-format.md`.

mod exhaustion;
pub mod scaffold;
mod leak;
mod sections;
mod source;
mod units;
mod validate;

pub use exhaustion::*;
pub use leak::*;
pub use sections::*;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use source::SourceMap;
pub use units::{format_size, parse_size};

use units::{human_duration, human_size};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

const MIN_MEMORY: u64 = 128 * MIB;
const MAX_MEMORY: u64 = 64 * GIB;
const MAX_CPUS: u32 = 64;
const MIN_BOOT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BOOT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MIN_WORKLOAD: Duration = Duration::from_secs(1);
const MAX_WORKLOAD: Duration = Duration::from_secs(7 * 24 * 3600);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_NAME: usize = 64;
// A kernel name becomes a file name (kernels/NAME.yaml); keep it within
// what every filesystem accepts.
const MAX_KERNEL_NAME: usize = 200;

pub use crate::kernel::DEFAULT_KERNEL;

/// Command-line parameters that kernlab sets itself (the console carries the
/// guest agent's channel, init is kernlab's own); a lab overriding them would
/// break the run in confusing ways.
const RESERVED_CMDLINE: [&str; 3] = ["console=", "init=", "rdinit="];

/// Why a lab file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The file could not be read.
    #[error("cannot read lab file `{}`", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid YAML, or valid YAML that does not fit the schema: unknown
    /// keys, wrong types, unknown enum values, unparsable sizes/durations.
    /// `line`/`column` are 1-based, 0 when unknown. When the position could
    /// be tied to a field, `message` starts with its path (`vm.memroy: ...`).
    #[error("{}", located(file, *line, *column, None, message))]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// Well-formed but rejected by `Lab::validate` (out of range, bad name,
    /// inconsistent fields). `field` is the path, e.g. `vm.cmdline[1]`.
    #[error("{}", located(file, *line, *column, Some(field), message))]
    Invalid {
        file: PathBuf,
        line: u64,
        column: u64,
        field: String,
        message: String,
    },
}

fn located(file: &Path, line: u64, column: u64, field: Option<&str>, message: &str) -> String {
    let mut s = file.display().to_string();
    if line > 0 {
        s.push_str(&format!(":{line}:{column}"));
    }
    s.push_str(": ");
    if let Some(f) = field.filter(|f| !f.is_empty()) {
        s.push_str(f);
        s.push_str(": ");
    }
    s.push_str(message);
    s
}

/// One lab run: which kernel to boot, how, what to do in the guest and what
/// to sample while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Lab name, used in run directories and reports. Required;
    /// `[a-z0-9][a-z0-9._-]{0,63}`.
    pub name: String,
    /// Free text for humans. Default: `""`.
    #[serde(default)]
    pub description: String,
    /// Kernel descriptor name (`kernels/NAME.yaml`); only its syntax is
    /// checked here (`[A-Za-z0-9][A-Za-z0-9._+-]*`), the caller checks that it
    /// exists. Default: `debian-6.1.0-54-cloud-amd64`.
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// Guest root filesystem image. Default: `minimal`.
    #[serde(default)]
    pub image: Image,
    /// Virtual machine shape. Default: see `Vm`.
    #[serde(default)]
    pub vm: Vm,
    /// Files and programs put into the guest before `setup`, on a cold
    /// and a restored guest alike. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<PayloadItem>,
    /// Guest shell commands run once after boot, in order; each non-empty.
    /// Default: none.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Kernel modules built from source against the run's kernel and loaded
    /// (in order) after `setup`, before the workload. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
    /// The workload phase. Default: none (boot, setup, monitor, stop).
    #[serde(
        default,
        deserialize_with = "non_null_workload",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload: Option<Workload>,
    /// What to sample and how often. Default: see `Monitor`.
    #[serde(default)]
    pub monitor: Monitor,
    /// The leak policy. When present, the run is an A/B comparison: the lab
    /// as written (A) against its baseline (B: the lab with what
    /// `leak.baseline` overrides, by default without the modules), on the
    /// same kernel and schedule, ending in a LEAK / NO-LEAK / INCONCLUSIVE
    /// verdict. Default: none (a plain run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak: Option<LeakPolicy>,
    /// What to do when the guest runs out of memory, panics or hangs: take
    /// a kernel dump (in-guest kdump or from the host) and triage it.
    /// Default: none (a panic ends the run as an infrastructure failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<Exhaustion>,
    /// How a vmcore is triaged (`engine: crash|drgn|auto`). Default: auto.
    #[serde(default)]
    pub triage: Triage,
    /// Where each field was written, for error messages; empty for labs
    /// built in code. Not serialized and ignored by `==`.
    #[serde(skip)]
    pub locations: SourceMap,
}

/// Reads, parses and validates the lab file at `path`.
pub fn load(path: &Path) -> Result<Lab, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates lab YAML; `file` is used only in error messages.
pub fn parse(text: &str, file: &Path) -> Result<Lab, LabError> {
    // Built first and independently of the schema, so that even a lab that
    // fails to deserialize can have its error tied to a field path.
    // The parser would say "unexpected end of file", which reads like a
    // truncated file rather than an empty one.
    let blank = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    };
    if text.lines().all(blank) {
        return Err(LabError::Syntax {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: "lab file is empty: it needs at least `name: ...`".to_string(),
        });
    }
    // The schema-free read fails only on YAML itself (syntax, duplicate
    // keys, several documents), so its error is the one to report then: the
    // typed read may trip over a type first and hide the real problem.
    let locations = source::SourceMap::build(text).map_err(|e| syntax_error(&e, text, file, None))?;
    let mut lab: Lab =
        serde_saphyr::from_str(text).map_err(|e| syntax_error(&e, text, file, Some(&locations)))?;
    lab.locations = locations;
    // The resolved form names every default: `max` when the lab runs until
    // exhaustion (without `until` it must stay unset, see validate).
    if let Some(x) = lab.exhaustion.as_mut().filter(|x| x.until) {
        x.max.get_or_insert(DEFAULT_EXHAUSTION_MAX);
    }
    lab.validate(file)?;
    Ok(lab)
}

/// The scalar written at a 1-based line and column of `text`, up to the
/// end of its line or a comment, for messages about a value the parser
/// names only by its type ("invalid boolean").
fn scalar_at(text: &str, line: u64, column: u64) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)? as usize)?;
    let rest: String = l.chars().skip(column.checked_sub(1)? as usize).collect();
    let rest = rest.split(" #").next().unwrap_or("").trim();
    let rest = rest.trim_end_matches([',', ']', '}']).trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// The field path of the key on a 1-based line, read from the text's
/// indentation alone: for text that is not YAML, where the schema-free
/// read has no tree. `None` inside list items (their index is not known
/// this way) and on lines with no key.
fn path_from_text(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let at = (line as usize).checked_sub(1)?.min(lines.len().checked_sub(1)?);
    // (indent, key, whether the line is a list item)
    let key_of = |l: &str| -> Option<(usize, String, bool)> {
        let t = l.trim_start_matches([' ', '\t']);
        if t.trim().is_empty() || t.starts_with('#') {
            return None;
        }
        let indent = l.len() - t.len();
        let (t, item) = match t.strip_prefix("- ") {
            Some(r) => (r.trim_start(), true),
            None => (t, false),
        };
        let k = t.split_once(':')?.0.trim();
        let plain = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        plain.then(|| (indent, k.to_string(), item))
    };
    let (mut indent, key, item) = key_of(lines[at])?;
    if item {
        return None;
    }
    let mut parts = vec![key];
    for l in lines[..at].iter().rev() {
        if indent == 0 {
            break;
        }
        let Some((i, k, item)) = key_of(l) else {
            // A list item without a key, or a scalar line, above: give up
            // rather than name the wrong field.
            let t = l.trim_start_matches([' ', '\t']);
            if t.starts_with('-') && l.len() - t.len() < indent {
                return None;
            }
            continue;
        };
        if i < indent {
            if item {
                return None;
            }
            parts.push(k);
            indent = i;
        }
    }
    (indent == 0).then(|| {
        parts.reverse();
        parts.join(".")
    })
}

/// The parser's wording for a scalar of the wrong kind, with what was
/// written and what is expected instead.
fn scalar_message(message: &str, written: Option<String>) -> Option<String> {
    let got = written.map(|w| format!(" `{w}`")).unwrap_or_default();
    let expected = match message {
        "invalid boolean" | "invalid boolean (true or false expected)" | "invalid boolean (strict mode expects true/false)" => "true or false",
        "invalid floating point" => "a number, e.g. 0.01",
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => "a whole number, 0 or more",
        "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" | "invalid isize" => "a whole number",
        "expected string scalar" => return Some("expected a string (one value), not a list or a mapping".into()),
        _ => return None,
    };
    Some(format!("invalid value{got}: expected {expected}"))
}

fn syntax_error(e: &serde_saphyr::Error, text: &str, file: &Path, map: Option<&SourceMap>) -> LabError {
    use serde_saphyr::MessageFormatter;

    let (mut line, mut column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    // Format the innermost error ourselves: the crate's renderings append
    // "at line L, column C" (plus alias sites) and its default wording
    // addresses developers ("set DuplicateKeyPolicy in Options"); the user
    // formatter does not, and the position goes in front in our format.
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    let raw = serde_saphyr::UserMessageFormatter.format_message(inner);
    // The formatter's text is unsanitized (it may quote a key with control
    // characters in it); keep the message on one line.
    let message: String = raw
        .chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect();
    // The parser's event names mean nothing to someone writing a lab.
    let message = match message.as_str() {
        "expected mapping start" => "expected a mapping (`key: value` entries)".to_string(),
        "expected sequence start" => "expected a list".to_string(),
        m => scalar_message(m, scalar_at(text, line, column)).unwrap_or(message),
    };
    let missing = message.starts_with("missing field");
    let message = match message.strip_prefix("missing field ") {
        Some(rest) => format!("missing required field {rest}"),
        None => message,
    };
    let message = match map {
        // The text is not even YAML (the schema-free read failed).
        None => match path_from_text(text, line).filter(|_| line > 0) {
            Some(path) => format!("{path}: invalid YAML: {message}"),
            None => format!("invalid YAML: {message}"),
        },
        Some(map) if line > 0 => {
            match map.path_at((line, column), missing) {
                Some(path) => format!("{path}: {message}"),
                None if missing => {
                    // A field missing at the top: the parser points at
                    // wherever the document ended; the lab starts at its
                    // first key.
                    (line, column) = map.first_key().unwrap_or((line, column));
                    message
                }
                None => message,
            }
        }
        Some(_) => message,
    };
    LabError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

fn default_kernel() -> String {
    DEFAULT_KERNEL.to_string()
}

/// `workload:` with nothing after it is more likely a forgotten command list
/// than a wish for no workload, so only an absent key means "no workload".
fn non_null_workload<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Workload>, D::Error> {
    match Option::<Workload>::deserialize(d)? {
        Some(w) => Ok(Some(w)),
        None => Err(serde::de::Error::custom(
            "section is empty: list the workload commands, or remove the section for no workload",
        )),
    }
}

fn default_workload_duration() -> Duration {
    Duration::from_secs(30)
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests;
