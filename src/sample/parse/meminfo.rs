//! `/proc/meminfo`: `Key: value [kB]` lines.

use serde::Serialize;

use super::{parse_u64, quote, ParseError, MEMINFO, MEMINFO_REQUIRED};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meminfo {
    /// In file order. Values are bytes for `kB` fields; unitless fields
    /// (`HugePages_Total`, ...) are counts and kept as-is.
    pub fields: Vec<(String, u64)>,
}

impl Meminfo {
    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }
}

fn valid_meminfo_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '(' | ')'))
}

pub fn parse_meminfo(text: &str) -> Result<Meminfo, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty { file: MEMINFO });
    }
    let mut fields: Vec<(String, u64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| ParseError::Malformed {
            file: MEMINFO,
            line: n,
            reason,
            text: quote(line),
        };
        let (key, rest) = line
            .split_once(':')
            .ok_or_else(|| malformed("expected `Key: value`".into()))?;
        if !valid_meminfo_key(key) {
            return Err(malformed(format!("invalid key `{}`", quote(key))));
        }
        let value = match rest.split_whitespace().collect::<Vec<_>>()[..] {
            [v] => parse_u64(MEMINFO, n, line, "value", v)?,
            [v, "kB"] => parse_u64(MEMINFO, n, line, "value", v)?
                .checked_mul(1024)
                .ok_or_else(|| ParseError::Overflow {
                    file: MEMINFO,
                    line: n,
                    text: quote(line),
                })?,
            [_, unit] => return Err(malformed(format!("unknown unit `{}`", quote(unit)))),
            [] => {
                return Err(ParseError::Truncated {
                    file: MEMINFO,
                    line: n,
                    expected: 1,
                    found: 0,
                    text: quote(line),
                })
            }
            _ => return Err(malformed("expected a value and an optional `kB`".into())),
        };
        // Duplicate keys only happen when two reads got concatenated.
        if fields.iter().any(|(k, _)| k == key) {
            return Err(malformed(format!("duplicate key `{key}`")));
        }
        fields.push((key.to_string(), value));
    }
    let meminfo = Meminfo { fields };
    for field in MEMINFO_REQUIRED {
        if meminfo.get(field).is_none() {
            return Err(ParseError::MissingField {
                file: MEMINFO,
                field,
            });
        }
    }
    Ok(meminfo)
}
