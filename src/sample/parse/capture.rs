//! The combined capture: one SSH command prints every sampled file, each
//! section after a marker line; split here and parsed by the file parsers.

use std::fmt;

use serde::Serialize;

use super::{
    parse_dentry_state, parse_meminfo, parse_ops, parse_slabinfo, parse_uptime, quote, DentryState, Meminfo, ParseError, SlabCache, CAPTURE, DENTRY_STATE, MEMINFO,
    SLABINFO, UPTIME,
};

/// Prefix of the marker line that starts each section of a combined capture;
/// the section name follows it.
pub const SECTION_MARKER: &str = "@@kernlab-section ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Section {
    Uptime,
    Slabinfo,
    Meminfo,
    DentryState,
    /// The workload's cumulative operation count, which the churn, the
    /// commands' `kernlab-ops N` lines or the lab's own program
    /// (`workload.ops`) keep in a file; 0 before it is written.
    Ops,
}

/// Where the churn workload, and the commands' `kernlab-ops N` lines, keep
/// the cumulative operation count when the lab names no `workload.ops`.
pub const OPS_FILE: &str = "/run/kernlab-ops";

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Uptime,
        Section::Slabinfo,
        Section::Meminfo,
        Section::DentryState,
        Section::Ops,
    ];

    /// The guest file the section's body is read from.
    pub fn path(&self) -> &'static str {
        match self {
            Section::Uptime => UPTIME,
            Section::Slabinfo => SLABINFO,
            Section::Meminfo => MEMINFO,
            Section::DentryState => DENTRY_STATE,
            Section::Ops => OPS_FILE,
        }
    }

    /// The name used in marker lines.
    pub fn name(&self) -> &'static str {
        match self {
            Section::Uptime => "uptime",
            Section::Slabinfo => "slabinfo",
            Section::Meminfo => "meminfo",
            Section::DentryState => "dentry-state",
            Section::Ops => "ops",
        }
    }

    pub fn from_name(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The guest shell snippet that prints a combined capture of `sections`.
/// Uptime always comes first so every sample carries the guest's own clock;
/// repeated sections are emitted once. Marker lines are single-quoted and
/// paths are fixed, so nothing here needs escaping. A failing `cat` leaves
/// its section empty, which `parse_capture` reports against that section.
pub fn capture_command(sections: &[Section]) -> String {
    capture_command_with(sections, "", OPS_FILE)
}

/// [`capture_command`], with `before_slabinfo` run right before the slab
/// section, which is then read by the shell itself (no `cat`): a process
/// started between a per-CPU slab flush and the read would allocate small
/// kmalloc objects and count a fresh slab whole again. The ops section
/// reads `ops_file` (a lab's `workload.ops`, else [`OPS_FILE`]), which lab
/// validation keeps to plain path characters.
pub fn capture_command_with(sections: &[Section], before_slabinfo: &str, ops_file: &str) -> String {
    let mut order = vec![Section::Uptime];
    for &s in sections {
        if !order.contains(&s) {
            order.push(s);
        }
    }
    order
        .iter()
        .map(|s| match s {
            // The count file appears only once the workload runs.
            Section::Ops => format!("echo '{SECTION_MARKER}{}'; cat {} 2>/dev/null || echo 0", s.name(), crate::util::tool::shell_quote(ops_file)),
            Section::Slabinfo if !before_slabinfo.is_empty() => {
                format!("echo '{SECTION_MARKER}{}'; {before_slabinfo}while IFS= read -r l; do echo \"$l\"; done < {}", s.name(), s.path())
            }
            _ => format!("echo '{SECTION_MARKER}{}'; cat {}", s.name(), s.path()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Splits a combined capture into `(section, body)` pairs in capture order.
/// Each body runs from the line after its marker up to (not including) the
/// next marker line. Blank lines before the first marker are tolerated;
/// anything else there (an ssh banner, a shell error) is an error because it
/// means the output is not what `capture_command` produces.
pub fn split_capture(text: &str) -> Result<Vec<(Section, &str)>, ParseError> {
    split_capture_with_lines(text).map(|v| v.into_iter().map(|(s, _, b)| (s, b)).collect())
}

/// Like `split_capture`, also returning each marker's 1-based line number.
fn split_capture_with_lines(text: &str) -> Result<Vec<(Section, usize, &str)>, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty { file: CAPTURE });
    }
    // (section, marker line, body start offset)
    let mut open: Option<(Section, usize, usize)> = None;
    let mut out: Vec<(Section, usize, &str)> = Vec::new();
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        // Match the marker without its trailing space so a bare or mangled
        // marker is reported as an unknown section rather than body text.
        if let Some(rest) = line.strip_prefix(SECTION_MARKER.trim_end()) {
            let name = rest.trim();
            let section = Section::from_name(name)
                .filter(|_| rest.starts_with(' '))
                .ok_or_else(|| ParseError::UnknownSection {
                    line: n,
                    name: quote(name),
                })?;
            if let Some((prev, prev_line, body_start)) = open.take() {
                out.push((prev, prev_line, &text[body_start..start]));
            }
            if out.iter().any(|&(s, _, _)| s == section) {
                return Err(ParseError::DuplicateSection {
                    line: n,
                    name: name.to_string(),
                });
            }
            open = Some((section, n, offset));
        } else if open.is_none() && !line.trim().is_empty() {
            return Err(ParseError::TextBeforeMarker {
                line: n,
                text: quote(line),
            });
        }
    }
    if let Some((section, line, body_start)) = open {
        out.push((section, line, &text[body_start..]));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    pub uptime_s: Option<f64>,
    pub slabinfo: Option<Vec<SlabCache>>,
    pub meminfo: Option<Meminfo>,
    pub dentry: Option<DentryState>,
    pub ops: Option<u64>,
}

/// Splits and parses a combined capture. Sections absent from the capture
/// are `None`; a present but unparsable section is an error naming it.
pub fn parse_capture(text: &str) -> Result<Capture, ParseError> {
    let mut capture = Capture {
        uptime_s: None,
        slabinfo: None,
        meminfo: None,
        dentry: None,
        ops: None,
    };
    for (section, line, body) in split_capture_with_lines(text)? {
        let wrap = |e: ParseError| ParseError::InSection {
            section,
            line,
            inner: Box::new(e),
        };
        match section {
            Section::Uptime => capture.uptime_s = Some(parse_uptime(body).map_err(wrap)?),
            Section::Slabinfo => capture.slabinfo = Some(parse_slabinfo(body).map_err(wrap)?),
            Section::Meminfo => capture.meminfo = Some(parse_meminfo(body).map_err(wrap)?),
            Section::DentryState => capture.dentry = Some(parse_dentry_state(body).map_err(wrap)?),
            Section::Ops => capture.ops = Some(parse_ops(body).map_err(wrap)?),
        }
    }
    Ok(capture)
}

/// The line that ends each record of the guest sampler's stream, followed
/// by the request's sequence number (see `labs/guest/sampler.c`).
pub const RECORD_END: &str = "@@kernlab-end ";

/// The line the guest sampler prints once it has opened its files.
pub const SAMPLER_READY: &str = "@@kernlab-ready";

/// The request for the record numbered `seq`.
pub fn record_request(seq: u64) -> String {
    format!("s {seq}\n")
}

/// One record taken off the sampler's stream: the capture text (as
/// [`parse_capture`] reads it) and the sequence number of its end line
/// (`None` when that number is not one).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: Option<u64>,
    pub text: String,
}

/// Takes the first complete record off the front of `buf`: everything up
/// to a line that starts with [`RECORD_END`], that line included. `None`
/// while no such line has arrived whole (the rest stays in `buf` for the
/// next read). Section bodies are `/proc` text, whose lines never start
/// with `@@`, so the end line cannot be mistaken inside one.
pub fn take_record(buf: &mut Vec<u8>) -> Option<Record> {
    let marker = RECORD_END.as_bytes();
    let mut line_start = 0;
    while line_start < buf.len() {
        let line_end = buf[line_start..].iter().position(|&b| b == b'\n').map(|i| line_start + i)?;
        if buf[line_start..line_end].starts_with(marker) {
            let seq = std::str::from_utf8(&buf[line_start + marker.len()..line_end]).ok().and_then(|s| s.trim().parse().ok());
            let text = String::from_utf8_lossy(&buf[..line_start]).into_owned();
            buf.drain(..=line_end);
            return Some(Record { seq, text });
        }
        line_start = line_end + 1;
    }
    None
}

/// Takes everything up to and including the sampler's ready line off the
/// front of `buf`; `None` until that line has arrived whole.
pub fn take_ready(buf: &mut Vec<u8>) -> Option<String> {
    let marker = SAMPLER_READY.as_bytes();
    let mut line_start = 0;
    while line_start < buf.len() {
        let line_end = buf[line_start..].iter().position(|&b| b == b'\n').map(|i| line_start + i)?;
        if buf[line_start..line_end].starts_with(marker) {
            let line = String::from_utf8_lossy(&buf[line_start..line_end]).into_owned();
            buf.drain(..=line_end);
            return Some(line);
        }
        line_start = line_end + 1;
    }
    None
}
