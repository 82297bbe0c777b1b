//! Estimates from a sample of a cache's objects, and the kind of leak a
//! dump shows: a pure function over the counts.

use serde::{Deserialize, Serialize};

use super::CacheRefs;
use crate::analysis::kind::LeakKind;

/// How many of a cache's allocated objects have a property, estimated from
/// `hits` of `sample` objects drawn uniformly without replacement, scaled
/// to the cache's `allocated` objects with a 95 % Wilson score interval (a
/// census, `sample == allocated`, is exact).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Estimate {
    pub hits: u64,
    pub sample: u64,
    /// `allocated × hits / sample`, rounded.
    pub count: u64,
    pub low: u64,
    pub high: u64,
}

impl Estimate {
    pub fn new(hits: u64, sample: u64, allocated: u64) -> Estimate {
        if sample == 0 {
            return Estimate { hits: 0, sample: 0, count: 0, low: 0, high: allocated };
        }
        let n = allocated as f64;
        let point = (n * hits as f64 / sample as f64).round() as u64;
        if sample >= allocated {
            return Estimate { hits, sample, count: point, low: point, high: point };
        }
        let (lo, hi) = wilson(hits, sample);
        Estimate { hits, sample, count: point, low: (n * lo).floor() as u64, high: ((n * hi).ceil() as u64).min(allocated) }
    }

    /// The sampled fraction, 0 when nothing was sampled.
    pub fn fraction(&self) -> f64 {
        if self.sample == 0 {
            0.0
        } else {
            self.hits as f64 / self.sample as f64
        }
    }

    /// `123456 (95 % CI 122000–124900, 1987/2000 sampled)`.
    pub fn words(&self) -> String {
        if self.low == self.high {
            format!("{} ({}/{} objects read)", self.count, self.hits, self.sample)
        } else {
            format!("{} (95 % CI {}–{}; {}/{} sampled)", self.count, self.low, self.high, self.hits, self.sample)
        }
    }
}

/// The 95 % Wilson score interval of a binomial proportion.
pub fn wilson(hits: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_964_f64;
    let (k, n) = (hits as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The share of a group of caches' bytes above which it "dominates".
const DOMINANT: f64 = 0.5;

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// The kind of leak the dump shows, with the numbers that decided it.
///
/// `caches` are the largest slab caches at the crash (largest first). A
/// *reference leak*: VFS caches (dentry, inodes, files) hold most of their
/// bytes, and the objects of those that were read are mostly pinned
/// (referenced objects of deleted files, or referenced pseudo files:
/// dentries), weighted by bytes. An *allocation leak*: caches nothing in the
/// VFS references (kmalloc-*, a module's own cache) hold most of the bytes
/// and the VFS caches read are not mostly pinned. Anything else is unknown.
pub fn classify(caches: &[CacheRefs]) -> (LeakKind, Vec<String>) {
    let mut ev = Vec::new();
    let total: u64 = caches.iter().map(|c| c.bytes).sum();
    let Some(largest) = caches.iter().max_by_key(|c| c.bytes) else {
        return (LeakKind::Unknown, vec!["no slab caches were read from the dump".into()]);
    };
    if total == 0 {
        return (LeakKind::Unknown, vec!["the largest slab caches hold no objects".into()]);
    }
    let vfs: u64 = caches.iter().filter(|c| c.class.referenced()).map(|c| c.bytes).sum();
    let other = total - vfs;
    let (vfs_share, other_share) = (vfs as f64 / total as f64, other as f64 / total as f64);
    ev.push(format!(
        "largest cache at the crash: {} {} ({}); of the {} largest caches' {}, VFS caches (dentry, inodes, files) hold {}, others (kmalloc-*, modules' caches, the rest) {}",
        largest.name,
        mib(largest.bytes),
        if largest.class.referenced() { "a VFS cache" } else { "not a VFS cache" },
        caches.len(),
        mib(total),
        pct(vfs_share),
        pct(other_share)
    ));
    // Pinned share of the VFS caches that were read, weighted by bytes.
    let read: Vec<&CacheRefs> = caches.iter().filter(|c| c.class.referenced() && c.sample > 0).collect();
    let read_bytes: u64 = read.iter().map(|c| c.bytes).sum();
    let pinned_bytes: f64 = read.iter().map(|c| c.bytes as f64 * c.pinned().fraction()).sum();
    for c in &read {
        ev.push(c.evidence());
    }
    let pinned_share = (read_bytes > 0).then(|| pinned_bytes / read_bytes as f64);
    if let Some(p) = pinned_share {
        ev.push(format!("pinned (referenced deleted files, referenced pseudo files): {} of the VFS caches read, by bytes", pct(p)));
    } else if vfs > 0 {
        ev.push("no VFS cache among the largest could be read object by object".into());
    }
    let kind = if vfs_share >= DOMINANT && pinned_share.is_some_and(|p| p >= DOMINANT) {
        ev.push("reference leak: VFS caches hold most of the slab and their objects are mostly referenced yet deleted (or pseudo) — references taken and never dropped".into());
        LeakKind::Reference
    } else if !largest.class.referenced() && other_share >= DOMINANT && pinned_share.is_none_or(|p| p < DOMINANT) {
        ev.push(format!(
            "allocation leak: caches nothing in the VFS references hold most of the slab ({} the largest) and the VFS caches are not dominated by referenced deleted files",
            largest.name
        ));
        LeakKind::Allocation
    } else {
        let why = if vfs_share >= DOMINANT && pinned_share.is_none() {
            "VFS caches hold most of the slab but none could be read object by object"
        } else if vfs_share >= DOMINANT {
            "VFS caches hold most of the slab but their objects are mostly live (hashed, or of files not deleted): a large cache or references on live files, not decidable from the dump"
        } else if other_share >= DOMINANT {
            "other caches hold most of the slab but the VFS caches are also dominated by referenced deleted files"
        } else {
            "no group of caches holds most of the slab"
        };
        ev.push(format!("unknown: {why}"));
        LeakKind::Unknown
    };
    (kind, ev)
}
