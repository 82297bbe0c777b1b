//! The one-line files: `/proc/sys/fs/dentry-state`, `/proc/uptime`, and the
//! workload's operation count.

use serde::Serialize;

use super::{parse_u64, quote, ParseError, DENTRY_STATE, OPS_FILE, UPTIME};

// /proc/sys/fs/dentry-state

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DentryState {
    pub nr_dentry: u64,
    pub nr_unused: u64,
    pub age_limit: u64,
    pub want_pages: u64,
    pub nr_negative: u64,
}

const DENTRY_FIELDS: [&str; 6] = [
    "nr_dentry",
    "nr_unused",
    "age_limit",
    "want_pages",
    "nr_negative",
    "dummy",
];

pub fn parse_dentry_state(text: &str) -> Result<DentryState, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (n, line) = lines
        .next()
        .ok_or(ParseError::Empty { file: DENTRY_STATE })?;
    if let Some((extra, l)) = lines.next() {
        return Err(ParseError::Malformed {
            file: DENTRY_STATE,
            line: extra,
            reason: "expected a single line".into(),
            text: quote(l),
        });
    }
    let f: Vec<&str> = line.split_whitespace().collect();
    // Kernels before nr_negative existed (pre-5.0) still print six fields
    // with zeros in the tail, so five is the minimum that carries meaning;
    // more than six is tolerated in case a future kernel appends fields.
    if f.len() < 5 {
        return Err(ParseError::Truncated {
            file: DENTRY_STATE,
            line: n,
            expected: 6,
            found: f.len(),
            text: quote(line),
        });
    }
    let mut values = [0u64; 5];
    for (i, value) in f.iter().enumerate() {
        let field = DENTRY_FIELDS.get(i).copied().unwrap_or("extra");
        let v = parse_u64(DENTRY_STATE, n, line, field, value)?;
        if let Some(slot) = values.get_mut(i) {
            *slot = v;
        }
    }
    let [nr_dentry, nr_unused, age_limit, want_pages, nr_negative] = values;
    Ok(DentryState {
        nr_dentry,
        nr_unused,
        age_limit,
        want_pages,
        nr_negative,
    })
}

// /proc/uptime

/// `/proc/uptime` is `seconds-up seconds-idle`, both `digits.digits`.
/// Returns seconds up.
pub fn parse_uptime(text: &str) -> Result<f64, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let (n, line) = lines.next().ok_or(ParseError::Empty { file: UPTIME })?;
    if let Some((extra, l)) = lines.next() {
        return Err(ParseError::Malformed {
            file: UPTIME,
            line: extra,
            reason: "expected a single line".into(),
            text: quote(l),
        });
    }
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 2 {
        return Err(ParseError::Truncated {
            file: UPTIME,
            line: n,
            expected: 2,
            found: f.len(),
            text: quote(line),
        });
    }
    if f.len() > 2 {
        return Err(ParseError::Malformed {
            file: UPTIME,
            line: n,
            reason: format!("expected 2 fields, found {}", f.len()),
            text: quote(line),
        });
    }
    let mut secs = [0f64; 2];
    for (slot, (value, field)) in secs.iter_mut().zip(f.iter().zip(["uptime", "idle"])) {
        // f64::from_str accepts `inf`, `NaN` and exponents; procfs prints
        // none of those, so only plain decimals are allowed.
        let plain = match value.split_once('.') {
            Some((int, frac)) => {
                !int.is_empty()
                    && !frac.is_empty()
                    && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
            }
            None => !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()),
        };
        *slot = plain
            .then(|| value.parse::<f64>().ok())
            .flatten()
            .filter(|v| v.is_finite())
            .ok_or_else(|| ParseError::BadNumber {
                file: UPTIME,
                line: n,
                field,
                value: quote(value),
                text: quote(line),
            })?;
    }
    Ok(secs[0])
}

// The workload's operation count

/// The workload's operation count: one decimal integer.
pub fn parse_ops(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ParseError::Empty { file: OPS_FILE });
    }
    let bad = || ParseError::BadNumber { file: OPS_FILE, line: 1, field: "ops", value: quote(t), text: quote(t) };
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    t.parse().map_err(|_| bad())
}
