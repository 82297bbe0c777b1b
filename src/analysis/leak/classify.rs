//! The kind of a LEAK, from the run's own series: which caches leak (the
//! verdict's culprits) and whether the VFS's accounting of references
//! (dentries in use, `nr_dentry − nr_unused`) grows with them.
//!
//! - *reference leak*: the leaking bytes are mostly in caches whose objects
//!   the VFS counts references on (dentry, inodes, files; see
//!   `analysis::kind::CacheClass`). The workloads delete what they create,
//!   so inodes and dentries that keep growing are objects of deleted files
//!   kept alive; dentries in use growing beside them say so directly.
//! - *allocation leak*: the leaking bytes are in other caches (kmalloc, a
//!   module's own) while dentries in use stay flat: nothing the kernel
//!   accounts for refers to them.
//! - *unknown*: only the metric grows (no cache names the objects), or the
//!   two signs disagree (other caches leak while dentries in use grow).
//!
//! Pure, like the verdict: the evidence states the numbers that decided.

use super::{num, ArmSeries, Basis, LeakAnalysis, Policy};
use crate::analysis::kind::{CacheClass, LeakKind};
use crate::stats::trend::{difference, trend, Difference};
use crate::stats::Verdict;

/// The kind of a LEAK and the evidence that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    pub kind: LeakKind,
    pub evidence: Vec<String>,
}

/// Dentries in use, module arm minus baseline, on the analysis' basis, over
/// the samples of its deciding look; None when the lab did not sample
/// `dentry-state` or the series are too short to fit.
pub fn dentries_in_use(module: &ArmSeries, baseline: &ArmSeries, an: &LeakAnalysis, policy: &Policy) -> Option<Difference> {
    let fit = |arm: &ArmSeries, n: usize| {
        let arm = arm.skipped(policy.warmup_samples).truncated(n);
        let times: Vec<f64> = arm.dentries_in_use.iter().map(|p| p.0).collect();
        let y: Vec<f64> = arm.dentries_in_use.iter().map(|p| p.1).collect();
        let x = arm.x(&times, an.basis)?;
        trend(&x, &y).ok()
    };
    Some(difference(&fit(module, an.samples[0])?, &fit(baseline, an.samples[1])?))
}

/// Classifies a LEAK (None for any other verdict).
pub fn classify(an: &LeakAnalysis, dentries: Option<Difference>, objsize_dentry: f64) -> Option<Classification> {
    if an.verdict != Verdict::Leak {
        return None;
    }
    let unit = an.basis.per();
    let floor = match an.basis {
        Basis::PerOp => an.floors.objects_per_op,
        Basis::PerSecond => an.floors.bytes_per_hour / 3600.0 / objsize_dentry.max(1.0),
    };
    let (mut referenced, mut other) = (Vec::new(), Vec::new());
    for c in an.culprits() {
        let class = CacheClass::of(&c.name);
        let line = format!("{} {}/{unit} ({} B/{unit})", c.name, num(c.delta), num(c.bytes[0]));
        if class.referenced() {
            referenced.push((line, c.bytes[0]));
        } else {
            other.push((line, c.bytes[0]));
        }
    }
    let bytes = |v: &[(String, f64)]| v.iter().map(|x| x.1.max(0.0)).sum::<f64>();
    let names = |v: &[(String, f64)]| v.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ");
    let (ref_bytes, other_bytes) = (bytes(&referenced), bytes(&other));
    // Dentries in use: growing (above the floor at α), flat (surely below
    // it), or neither.
    let dentry = dentries.map(|d| {
        let (lo, hi) = d.bounds(an.alpha);
        let grows = d.p_above(floor) <= an.alpha;
        let flat = hi < floor;
        let text = format!("{}/{unit} [{} .. {}], floor {}", num(d.delta), num(lo), num(hi), num(floor));
        (grows, flat, text)
    });
    let mut ev = Vec::new();
    let kind = if referenced.is_empty() && other.is_empty() {
        ev.push(format!("only the {} grows beyond the baseline: no single cache names the objects, so neither their kind nor their owner can be told", an.metric));
        LeakKind::Unknown
    } else if ref_bytes >= other_bytes {
        ev.push(format!(
            "{:.0} % of the leaking bytes are objects the VFS counts references on: {}",
            100.0 * ref_bytes / (ref_bytes + other_bytes).max(f64::MIN_POSITIVE),
            names(&referenced)
        ));
        match &dentry {
            Some((true, _, t)) => ev.push(format!("dentries in use (nr_dentry − nr_unused) grow more than in the baseline, {t}: references nobody drops")),
            Some((false, _, t)) => ev.push(format!("dentries in use do not grow beyond the baseline ({t}): the objects are held without their dentries (an inode or file reference)")),
            None => ev.push("dentry-state was not sampled: the kind rests on the caches alone".into()),
        }
        ev.push("the workload deletes every file it makes, so these are objects of deleted files (or closed sockets) still referenced".into());
        if !other.is_empty() {
            ev.push(format!("also growing, likely owned by the referenced objects: {}", names(&other)));
        }
        LeakKind::Reference
    } else {
        ev.push(format!("the leaking caches hold objects nothing in the VFS accounting refers to: {}", names(&other)));
        if !referenced.is_empty() {
            ev.push(format!("smaller growth in reference-counted caches: {}", names(&referenced)));
        }
        match &dentry {
            Some((true, _, t)) => {
                ev.push(format!("yet dentries in use grow more than in the baseline, {t}: the two signs disagree"));
                return Some(Classification { kind: LeakKind::Unknown, evidence: ev });
            }
            Some((false, true, t)) => ev.push(format!("dentries in use stay flat: {t}")),
            Some((false, false, t)) => ev.push(format!("dentries in use are not seen to grow ({t})")),
            None => ev.push("dentry-state was not sampled: the kind rests on the caches alone".into()),
        }
        LeakKind::Allocation
    };
    Some(Classification { kind, evidence: ev })
}
