//! Parsers for the text kernlab reads from a Linux guest at each sampling
//! interval: `/proc/slabinfo`, `/proc/meminfo`, `/proc/sys/fs/dentry-state`,
//! `/proc/uptime`, and the combined capture (one ssh command, sections split by
//! marker lines) that carries them. Everything here is pure and does no I/O;
//! parsers are strict because a half-read or garbled sample must fail loudly
//! rather than become a plausible-looking data point in a leak measurement.

use thiserror::Error;

mod capture;
mod meminfo;
mod slabinfo;
mod small;
#[cfg(test)]
mod tests;

pub use capture::{capture_command, capture_command_with, parse_capture, record_request, split_capture, take_ready, take_record, Capture, Record, Section, OPS_FILE, RECORD_END, SAMPLER_READY, SECTION_MARKER};
pub use meminfo::{parse_meminfo, Meminfo};
pub use slabinfo::{parse_slabinfo, SlabCache};
pub use small::{parse_dentry_state, parse_ops, parse_uptime, DentryState};

/// Size of a guest page. Slabinfo reports slab sizes in pages; every target
/// architecture kernlab boots uses 4 KiB pages.
const PAGE_SIZE: u64 = 4096;

/// Quoted lines in error messages are cut to this many characters so a
/// garbage capture does not produce a megabyte-long error.
const QUOTE_MAX_CHARS: usize = 80;

const SLABINFO: &str = "/proc/slabinfo";
const MEMINFO: &str = "/proc/meminfo";
const DENTRY_STATE: &str = "/proc/sys/fs/dentry-state";
const UPTIME: &str = "/proc/uptime";
const CAPTURE: &str = "capture";

const SLABINFO_VERSION_PREFIX: &str = "slabinfo - version:";
const SLABINFO_VERSION_LINE: &str = "slabinfo - version: 2.1";

/// Fields that leak measurement and reporting depend on; a meminfo without
/// them is not a meminfo we can use.
const MEMINFO_REQUIRED: [&str; 6] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
];

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseError {
    #[error("{file}: empty input")]
    Empty { file: &'static str },

    #[error("/proc/slabinfo line 1: unsupported slabinfo version `{found}` (expected 2.1)")]
    SlabinfoVersion { found: String },

    #[error("/proc/slabinfo line {line}: expected `# name ...` header, found `{text}`")]
    MissingHeader { line: usize, text: String },

    #[error("{file} line {line}: truncated line, expected {expected} fields but found {found}: `{text}`")]
    Truncated {
        file: &'static str,
        line: usize,
        expected: usize,
        found: usize,
        text: String,
    },

    #[error("{file} line {line}: field `{field}` is not a valid number (`{value}`): `{text}`")]
    BadNumber {
        file: &'static str,
        line: usize,
        field: &'static str,
        value: String,
        text: String,
    },

    #[error("{file} line {line}: {reason}: `{text}`")]
    Malformed {
        file: &'static str,
        line: usize,
        reason: String,
        text: String,
    },

    #[error("/proc/slabinfo line {line}: active {what} {active} exceeds total {total}: `{text}`")]
    ActiveExceedsTotal {
        line: usize,
        what: &'static str,
        active: u64,
        total: u64,
        text: String,
    },

    #[error("{file} line {line}: value overflows u64 when converted from kB to bytes: `{text}`")]
    Overflow {
        file: &'static str,
        line: usize,
        text: String,
    },

    #[error("{file}: required field `{field}` is missing")]
    MissingField {
        file: &'static str,
        field: &'static str,
    },

    #[error("{file}: no entries after the header")]
    NoEntries { file: &'static str },

    #[error("capture line {line}: text before the first section marker: `{text}`")]
    TextBeforeMarker { line: usize, text: String },

    #[error("capture line {line}: unknown section `{name}`")]
    UnknownSection { line: usize, name: String },

    #[error("capture line {line}: section `{name}` appears more than once")]
    DuplicateSection { line: usize, name: String },

    /// A section's own parser failed; `line` is the capture line of the
    /// section marker, and the inner error's line numbers count from the
    /// first line after it. The inner error is part of the message rather
    /// than a `#[source]` so chained reporters don't print it twice.
    #[error("capture section `{section}` (marker at capture line {line}): {inner}")]
    InSection {
        section: Section,
        line: usize,
        inner: Box<ParseError>,
    },
}

/// Cuts a line for inclusion in an error message.
fn quote(line: &str) -> String {
    let line = line.trim_end();
    let mut chars = line.char_indices();
    match chars.nth(QUOTE_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// Strict unsigned parse: `str::parse::<u64>` also accepts a leading `+`,
/// which never appears in procfs output and so indicates corruption.
fn parse_u64(
    file: &'static str,
    line_no: usize,
    line: &str,
    field: &'static str,
    value: &str,
) -> Result<u64, ParseError> {
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match ok.then(|| value.parse::<u64>().ok()).flatten() {
        Some(v) => Ok(v),
        None => Err(ParseError::BadNumber {
            file,
            line: line_no,
            field,
            value: quote(value),
            text: quote(line),
        }),
    }
}
