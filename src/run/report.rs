//! `report.json`: what a run found, in a versioned schema. Built from the
//! files in the run directory (the sample series), not from in-memory state,
//! so a report can be rebuilt from any run directory later.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Manifest;
use crate::lab::Lab;

pub const SCHEMA: &str = "kernlab.report/1";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Timings {
    /// Kernel resolved (fetched or found in the cache), seconds.
    pub kernel: f64,
    /// Image built or found, keys made, initrd written.
    pub image: f64,
    /// Run start → QEMU spawned (lab, kernel, image, keys: the warm-cache overhead).
    pub qemu_start: f64,
    /// QEMU start → the guest's /init running: the boot floor.
    pub init: Option<f64>,
    /// QEMU start → SSH banner.
    pub boot_to_ssh: f64,
    /// QEMU start → first SSH command done.
    pub first_command: f64,
    /// The whole run.
    pub total: f64,
    /// Boots started: 1, or 2 when the first hung or died.
    pub boot_attempts: u32,
}

/// Read back (by `kernlab report`) with every field that a report of an
/// older kernlab may lack defaulted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    #[serde(skip_deserializing, default = "schema")]
    pub schema: &'static str,
    pub lab: String,
    pub kernel: String,
    pub kernel_release: Option<String>,
    pub accel: Option<String>,
    /// `completed`, `failed` or `interrupted`.
    pub outcome: String,
    pub exit_code: i32,
    pub error: Option<String>,
    #[serde(default)]
    pub samples: u64,
    /// Samples that failed (SSH lost, unparsable output): gaps in the series.
    #[serde(default)]
    pub sample_gaps: u64,
    #[serde(default)]
    pub timings: Timings,
    /// How the VM came up: `restored` (from a snapshot), `saved` (booted
    /// cold and saved as one) or `cold`; absent when it never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// First and last value of the headline meminfo fields, bytes.
    #[serde(default)]
    pub meminfo: BTreeMap<String, FirstLast>,
    /// Caches whose active bytes grew most between the first and last sample.
    #[serde(default)]
    pub top_slab_growth: Vec<CacheGrowth>,
    /// The vmcore, when the run took one: which path made it and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<crate::dump::DumpRecord>,
    /// `crash`'s view of the vmcore: memory summary and top caches at crash time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<crate::triage::CrashReport>,
    /// Why there is a vmcore but no triage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage_skipped: Option<String>,
    /// Whether the guest ran out of memory, for a lab with an `exhaustion`
    /// section that can end a run (a dump action or a headroom); absent
    /// when the run ended before its workload phase did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<ExhaustionOutcome>,
}

/// How a run watching for exhaustion ended its workload phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExhaustionOutcome {
    /// The run was to go on until exhaustion (`exhaustion.until`).
    pub until: bool,
    /// The guest ran out of memory, panicked or hung: the trigger fired.
    pub reached: bool,
    /// The phase's limit, seconds: `exhaustion.max` with `until`, else
    /// `workload.duration`. Unreached: "no exhaustion within N s".
    pub within_secs: f64,
    /// Workload start → the trigger, seconds, when reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_secs: Option<f64>,
    /// What fired, when reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl ExhaustionOutcome {
    /// `no exhaustion within 600 s (exhaustion.max)` when unreached.
    pub fn not_reached(&self) -> Option<String> {
        (!self.reached).then(|| no_exhaustion(self.within_secs, self.until))
    }
}

/// `no exhaustion within 600 s (exhaustion.max)`: the phase's limit and
/// which field set it. One wording for the event line and the summaries.
pub fn no_exhaustion(within_secs: f64, until: bool) -> String {
    let limit = if until { "exhaustion.max" } else { "workload.duration" };
    format!("no exhaustion within {within_secs:.0} s ({limit})")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FirstLast {
    pub first: u64,
    pub last: u64,
    pub delta: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CacheGrowth {
    pub cache: String,
    pub first_bytes: u64,
    pub last_bytes: u64,
    pub delta_bytes: i64,
    pub delta_objs: i64,
}

fn schema() -> &'static str {
    SCHEMA
}

const HEADLINE: [&str; 5] = ["MemAvailable", "MemFree", "Slab", "SReclaimable", "SUnreclaim"];

#[allow(clippy::too_many_arguments)]
pub fn build(
    dir: &Path,
    lab: &Lab,
    manifest: &Manifest,
    outcome: &str,
    exit_code: i32,
    error: Option<String>,
    samples: u64,
    sample_gaps: u64,
    timings: Timings,
) -> Report {
    let meminfo = std::fs::read_to_string(dir.join("samples/meminfo.csv")).map(|t| meminfo_first_last(&t)).unwrap_or_default();
    let top_slab_growth =
        std::fs::read_to_string(dir.join("samples/slabinfo.csv")).map(|t| slab_growth(&t, 10)).unwrap_or_default();
    Report {
        schema: SCHEMA,
        lab: lab.name.clone(),
        kernel: lab.kernel.clone(),
        kernel_release: manifest.kernel.as_ref().map(|k| k.release.clone()),
        accel: manifest.accel.as_ref().map(|a| a.accel.to_string()),
        outcome: outcome.into(),
        exit_code,
        error,
        samples,
        sample_gaps,
        timings,
        snapshot: manifest.boot.as_ref().and_then(|b| b.snapshot.as_ref()).map(|s| s.mode.name().to_string()),
        meminfo,
        top_slab_growth,
        dump: None,
        triage: None,
        triage_skipped: None,
        exhaustion: None,
    }
}

/// From `t,uptime,key,bytes` rows: first and last value of the headline keys.
pub fn meminfo_first_last(csv: &str) -> BTreeMap<String, FirstLast> {
    let mut out: BTreeMap<String, FirstLast> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 4 || !HEADLINE.contains(&f[2]) {
            continue;
        }
        let Ok(v) = f[3].parse::<u64>() else { continue };
        out.entry(f[2].to_string())
            .and_modify(|e| {
                e.last = v;
                e.delta = v as i64 - e.first as i64;
            })
            .or_insert(FirstLast { first: v, last: v, delta: 0 });
    }
    out
}

/// From `t,uptime,cache,active_objs,num_objs,objsize` rows: the `top` caches
/// by growth of active bytes between the first and the last sample time.
pub fn slab_growth(csv: &str, top: usize) -> Vec<CacheGrowth> {
    // cache -> (first (objs, bytes), last (objs, bytes)); rows come in time order.
    let mut first_t: Option<&str> = None;
    let mut per: BTreeMap<&str, ((u64, u64), (u64, u64))> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            continue;
        }
        let (Ok(objs), Ok(size)) = (f[3].parse::<u64>(), f[5].parse::<u64>()) else { continue };
        let cur = (objs, objs.saturating_mul(size));
        let t0 = *first_t.get_or_insert(f[0]);
        per.entry(f[2])
            .and_modify(|e| e.1 = cur)
            .or_insert(if f[0] == t0 { (cur, cur) } else { ((0, 0), cur) });
    }
    let mut v: Vec<CacheGrowth> = per
        .into_iter()
        .map(|(cache, (a, b))| CacheGrowth {
            cache: cache.to_string(),
            first_bytes: a.1,
            last_bytes: b.1,
            delta_bytes: b.1 as i64 - a.1 as i64,
            delta_objs: b.0 as i64 - a.0 as i64,
        })
        .collect();
    v.sort_by(|x, y| y.delta_bytes.cmp(&x.delta_bytes).then(x.cache.cmp(&y.cache)));
    v.truncate(top);
    v
}

/// The terminal summary of a run, as `kernlab run` prints it.
pub fn summary(rep: &Report, dir: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "lab {} on {} ({}): {}", rep.lab, rep.kernel, rep.accel.as_deref().unwrap_or("-"), rep.outcome);
    let _ = writeln!(
        s,
        "  samples {} (gaps {}), boot to SSH {:.2} s, total {:.1} s",
        rep.samples, rep.sample_gaps, rep.timings.boot_to_ssh, rep.timings.total
    );
    for key in ["MemAvailable", "Slab", "SUnreclaim"] {
        if let Some(v) = rep.meminfo.get(key) {
            let _ = writeln!(s, "  {key:<13} {:>10} KiB → {:>10} KiB ({:+} KiB)", v.first / 1024, v.last / 1024, v.delta / 1024);
        }
    }
    for g in rep.top_slab_growth.iter().take(3).filter(|g| g.delta_bytes > 0) {
        let _ = writeln!(s, "  slab {:<24} {:+} KiB ({:+} objects)", g.cache, g.delta_bytes / 1024, g.delta_objs);
    }
    if let Some(no) = rep.exhaustion.as_ref().and_then(ExhaustionOutcome::not_reached) {
        let _ = writeln!(s, "  {no}: the guest did not run out of memory");
    }
    if let Some(d) = &rep.dump {
        let _ = writeln!(s, "  vmcore by {}: {} ({:.1} MiB)", d.via, d.vmcore.display(), d.bytes as f64 / 1048576.0);
        let _ = writeln!(s, "    {}", d.reason);
    }
    if let Some(t) = &rep.triage {
        if let Some(p) = &t.panic {
            let _ = writeln!(s, "  crash: {p}");
        }
        let top: Vec<String> = t.top_caches.iter().take(4).map(|c| format!("{} {:.1} MiB", c.name, c.bytes as f64 / 1048576.0)).collect();
        let _ = writeln!(s, "  crash: largest slab caches: {}", top.join(", "));
    }
    if let Some(why) = &rep.triage_skipped {
        let _ = writeln!(s, "  crash triage skipped: {why}");
    }
    if let Some(d) = dir {
        let _ = writeln!(s, "  run directory: {}", d.display());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_ranks_by_bytes() {
        let csv = "t,uptime,cache,active_objs,num_objs,objsize\n\
                   0.0,1,dentry,100,100,192\n0.0,1,kmalloc-64,10,10,64\n\
                   2.0,3,dentry,1100,1100,192\n2.0,3,kmalloc-64,5,10,64\n2.0,3,newcache,4,4,1000\n";
        let g = slab_growth(csv, 10);
        assert_eq!(g[0], CacheGrowth { cache: "dentry".into(), first_bytes: 19200, last_bytes: 211200, delta_bytes: 192000, delta_objs: 1000 });
        assert_eq!(g[1].cache, "newcache");
        assert_eq!(g[1].first_bytes, 0);
        assert_eq!(g[2].delta_bytes, -320);
    }

    #[test]
    fn meminfo_headline_first_last() {
        let csv = "t,uptime,key,bytes\n0,1,MemAvailable,1000\n0,1,Cached,5\n1,2,MemAvailable,400\n";
        let m = meminfo_first_last(csv);
        assert_eq!(m["MemAvailable"], FirstLast { first: 1000, last: 400, delta: -600 });
        assert!(!m.contains_key("Cached"));
    }
}
