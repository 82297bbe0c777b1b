//! Sizes, durations and counts as they are written in lab files.
//!
//! Lab files are written by people, so memory is `512M` rather than
//! `536870912` and timeouts are `60s` rather than `60`. This module owns the
//! text forms and the serde helpers that read and write them; range checks
//! belong to `validate` so that they can report a line and a field path.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// Binary units, largest first, so `format_size` picks the shortest exact form.
const UNITS: [(&str, u64); 4] = [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)];

/// Parses a byte size: a plain integer (bytes) or an integer followed by a
/// binary unit `K`, `M`, `G` or `T` (powers of 1024) with an optional `iB`
/// or `B` suffix, e.g. `512M`, `512MiB`, `1G`, `65536K`, `4096B`.
///
/// Units are case-insensitive and may be separated from the number by
/// spaces (`512 MiB`). Fractions, signs and decimal (1000-based) units are
/// not accepted: a lab that says `1.5G` should say `1536M`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(if t.starts_with('-') {
            format!("invalid size {s:?}: must not be negative")
        } else {
            format!("invalid size {s:?}: expected a number of bytes, optionally followed by K, M, G or T")
        });
    }
    let unit = unit.trim_start();
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err(format!(
            "invalid size {s:?}: fractions are not supported, use a smaller unit (e.g. 1536M)"
        ));
    }
    let multiplier = size_unit(unit).ok_or_else(|| {
        format!("invalid size {s:?}: unknown unit {unit:?} (expected K, M, G or T, optionally followed by iB or B)")
    })?;
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: number is too large"))?;
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {s:?}: does not fit in 64 bits"))
}

fn size_unit(unit: &str) -> Option<u64> {
    let lower = unit.to_ascii_lowercase();
    // Strip the optional "ib"/"b" so "M", "MB" and "MiB" are one unit.
    let prefix = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    match prefix {
        // "" covers both a bare integer and a lone "B".
        "" => Some(1),
        "k" => Some(KIB),
        "m" => Some(MIB),
        "g" => Some(GIB),
        "t" => Some(TIB),
        _ => None,
    }
}

/// The canonical form of a size: the largest binary unit that divides it
/// exactly (`512MiB`, `1GiB`), or plain bytes (`1000`) when none does.
pub fn format_size(bytes: u64) -> String {
    for (unit, mult) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(mult) {
            return format!("{}{unit}iB", bytes / mult);
        }
    }
    bytes.to_string()
}

/// Like `format_size` but spaced for prose in error messages (`128 MiB`).
pub(crate) fn human_size(bytes: u64) -> String {
    for (unit, mult) in UNITS {
        if bytes != 0 && bytes.is_multiple_of(mult) {
            return format!("{} {unit}iB", bytes / mult);
        }
    }
    if bytes == 0 {
        "0".to_string()
    } else {
        format!("{bytes} bytes")
    }
}

pub(crate) fn human_duration(d: Duration) -> String {
    if d.is_zero() {
        "0s".to_string()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// Serde helper for byte sizes stored as `u64`: reads a size string or an
/// integer number of bytes, writes `format_size`'s string when a unit fits.
pub mod size {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &u64, s: S) -> Result<S::Ok, S::Error> {
        let text = format_size(*bytes);
        if text.bytes().all(|b| b.is_ascii_digit()) {
            s.serialize_u64(*bytes)
        } else {
            s.serialize_str(&text)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        d.deserialize_any(SizeVisitor)
    }

    struct SizeVisitor;

    impl Visitor<'_> for SizeVisitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a size such as \"512M\", \"1GiB\" or an integer number of bytes")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("size must not be negative, got {v}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(E::custom)
        }
    }
}

/// Serde helper for `Duration`: reads a humantime string (`500ms`, `30s`,
/// `2m`, `1h30m`) or an integer number of seconds, writes a humantime string.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&human_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"500ms\", \"30s\", \"2m\", \"1h30m\" or an integer number of seconds")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("duration must not be negative, got {v}")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            let t = v.trim();
            if t.starts_with('-') {
                return Err(E::custom(format!(
                    "duration must not be negative, got {v:?}"
                )));
            }
            humantime::parse_duration(t).map_err(|e| {
                E::custom(format!(
                    "invalid duration {v:?}: {e} (expected e.g. \"500ms\", \"30s\", \"2m\", \"1h30m\")"
                ))
            })
        }
    }
}

/// Serde helper for an optional `Duration` field (`#[serde(default)]` makes
/// an absent key `None`); the same forms as [`duration`].
pub mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&human_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        duration::deserialize(d).map(Some)
    }
}

/// Serde helper for small counts (`u32`), so that `-1` or `"two"` get a
/// message about the count rather than the parser's bare "invalid u32".
pub mod count {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        d.deserialize_any(CountVisitor)
    }

    struct CountVisitor;

    impl Visitor<'_> for CountVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::custom(format!("number is too large, got {v}")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| {
                if v < 0 {
                    E::custom(format!("must not be negative, got {v}"))
                } else {
                    E::custom(format!("number is too large, got {v}"))
                }
            })
        }
    }
}
