//! `/proc/slabinfo` (version 2.1): one line per cache.

use serde::Serialize;

use super::{parse_u64, quote, ParseError, PAGE_SIZE, SLABINFO, SLABINFO_VERSION_LINE, SLABINFO_VERSION_PREFIX};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlabCache {
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u64,
    pub objperslab: u64,
    pub pagesperslab: u64,
    pub active_slabs: u64,
    pub num_slabs: u64,
}

impl SlabCache {
    /// Bytes held by live objects.
    pub fn active_bytes(&self) -> u64 {
        self.active_objs.saturating_mul(self.objsize)
    }

    /// Bytes of memory backing the cache's slabs, including free slots.
    pub fn total_bytes(&self) -> u64 {
        self.num_slabs
            .saturating_mul(self.pagesperslab)
            .saturating_mul(PAGE_SIZE)
    }
}

/// Field count of a slabinfo 2.1 data line:
/// `name a n size opp pps : tunables l b s : slabdata as ns sa`.
const SLAB_FIELDS: usize = 16;

pub fn parse_slabinfo(text: &str) -> Result<Vec<SlabCache>, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));

    let (_, first) = lines
        .next()
        .filter(|(_, l)| !l.trim().is_empty())
        .ok_or(ParseError::Empty { file: SLABINFO })?;
    let first = first.trim_end();
    if first != SLABINFO_VERSION_LINE {
        return Err(match first.strip_prefix(SLABINFO_VERSION_PREFIX) {
            Some(version) => ParseError::SlabinfoVersion {
                found: quote(version.trim()),
            },
            None => ParseError::Malformed {
                file: SLABINFO,
                line: 1,
                reason: format!("expected `{SLABINFO_VERSION_LINE}`"),
                text: quote(first),
            },
        });
    }

    // The header is what tells us the column order; a capture missing it
    // was cut or is not slabinfo at all.
    match lines.next() {
        Some((_, l)) if l.starts_with("# name") => {}
        Some((n, l)) => {
            return Err(ParseError::MissingHeader {
                line: n,
                text: quote(l),
            })
        }
        None => {
            return Err(ParseError::MissingHeader {
                line: 2,
                text: String::new(),
            })
        }
    }

    let mut caches = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        caches.push(parse_slab_line(n, line)?);
    }
    if caches.is_empty() {
        // A kernel always has caches; an empty list means the read was cut
        // right after the header.
        return Err(ParseError::NoEntries { file: SLABINFO });
    }
    Ok(caches)
}

fn parse_slab_line(n: usize, line: &str) -> Result<SlabCache, ParseError> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < SLAB_FIELDS {
        return Err(ParseError::Truncated {
            file: SLABINFO,
            line: n,
            expected: SLAB_FIELDS,
            found: f.len(),
            text: quote(line),
        });
    }
    if f.len() > SLAB_FIELDS {
        return Err(ParseError::Malformed {
            file: SLABINFO,
            line: n,
            reason: format!("expected {SLAB_FIELDS} fields, found {}", f.len()),
            text: quote(line),
        });
    }
    for (idx, want) in [(6, ":"), (7, "tunables"), (11, ":"), (12, "slabdata")] {
        if f[idx] != want {
            return Err(ParseError::Malformed {
                file: SLABINFO,
                line: n,
                reason: format!(
                    "expected `{want}` as field {}, found `{}`",
                    idx + 1,
                    quote(f[idx])
                ),
                text: quote(line),
            });
        }
    }
    let num = |idx: usize, field: &'static str| parse_u64(SLABINFO, n, line, field, f[idx]);
    let cache = SlabCache {
        name: f[0].to_string(),
        active_objs: num(1, "active_objs")?,
        num_objs: num(2, "num_objs")?,
        objsize: num(3, "objsize")?,
        objperslab: num(4, "objperslab")?,
        pagesperslab: num(5, "pagesperslab")?,
        active_slabs: num(13, "active_slabs")?,
        num_slabs: num(14, "num_slabs")?,
    };
    // Tunables and sharedavail are unused (always 0 on SLUB) but still
    // validated: a garbled number there means the line is not trustworthy.
    num(8, "limit")?;
    num(9, "batchcount")?;
    num(10, "sharedfactor")?;
    num(15, "sharedavail")?;

    for (what, active, total) in [
        ("objects", cache.active_objs, cache.num_objs),
        ("slabs", cache.active_slabs, cache.num_slabs),
    ] {
        if active > total {
            return Err(ParseError::ActiveExceedsTotal {
                line: n,
                what,
                active,
                total,
                text: quote(line),
            });
        }
    }
    Ok(cache)
}
