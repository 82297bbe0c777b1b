//! One arm's sample series, as the analysis reads them.

use std::collections::BTreeMap;

use super::Basis;
use crate::sample::rows::{self, DentryRow, MeminfoRow, OpsRow, Row, SlabRow};

/// One arm's series, parsed from its `samples/*.csv`.
#[derive(Debug, Default, Clone)]
pub struct ArmSeries {
    /// meminfo key → (t, bytes).
    pub meminfo: BTreeMap<String, Vec<(f64, f64)>>,
    /// cache → (t, active_objs, objsize).
    pub caches: BTreeMap<String, Vec<(f64, f64, f64)>>,
    /// (t, cumulative ops).
    pub ops: Vec<(f64, f64)>,
    /// (t, dentries in use: `nr_dentry − nr_unused` of
    /// `/proc/sys/fs/dentry-state`); empty when the lab did not sample it.
    pub dentries_in_use: Vec<(f64, f64)>,
}

impl ArmSeries {
    /// From the text of an arm's `meminfo.csv`, `slabinfo.csv` and
    /// `ops.csv` (empty for a series the arm did not write); rows that do
    /// not parse (a torn last line) are left out.
    pub fn parse(meminfo_csv: &str, slabinfo_csv: &str, ops_csv: &str) -> Self {
        let mut s = ArmSeries::default();
        for r in rows::parse::<MeminfoRow>(meminfo_csv) {
            s.meminfo.entry(r.key).or_default().push((r.t, r.bytes as f64));
        }
        for r in rows::parse::<SlabRow>(slabinfo_csv) {
            s.caches.entry(r.cache).or_default().push((r.t, r.active_objs as f64, r.objsize as f64));
        }
        s.ops = rows::parse::<OpsRow>(ops_csv).map(|r| (r.t, r.ops as f64)).collect();
        s
    }

    /// With the dentry accounting of the arm's `dentry-state.csv`.
    pub fn with_dentry_state(mut self, dentry_csv: &str) -> Self {
        self.dentries_in_use = rows::parse::<DentryRow>(dentry_csv).map(|r| (r.t, r.nr_dentry.saturating_sub(r.nr_unused) as f64)).collect();
        self
    }

    /// An arm's series from its `samples/` directory (a file it did not
    /// write is empty).
    pub fn read(samples: &std::path::Path) -> Self {
        let f = |r: &str| std::fs::read_to_string(samples.join(r)).unwrap_or_default();
        Self::parse(&f(MeminfoRow::FILE), &f(SlabRow::FILE), &f(OpsRow::FILE)).with_dentry_state(&f(DentryRow::FILE))
    }

    /// The sample times, in order. Each sample writes every section at once,
    /// so the longest single series has them all (a meminfo key, else a
    /// cache); this keeps the cost linear in the samples.
    pub fn times(&self) -> Vec<f64> {
        let longest = |v: &mut dyn Iterator<Item = Vec<f64>>| v.max_by_key(|t| t.len());
        let mem = longest(&mut self.meminfo.values().map(|v| v.iter().map(|p| p.0).collect()));
        let mut times = match mem {
            Some(t) if !t.is_empty() => t,
            _ => longest(&mut self.caches.values().map(|v| v.iter().map(|p| p.0).collect())).unwrap_or_default(),
        };
        times.sort_by(|a, b| a.total_cmp(b));
        times.dedup();
        times
    }

    /// The (t, bytes) series of a metric: `slab`, `sunreclaim`, `objects`,
    /// `cache:NAME`. A cache this arm never had is zero at each of its
    /// sample times.
    pub fn metric(&self, metric: &crate::lab::Metric) -> Vec<(f64, f64)> {
        use crate::lab::Metric;
        match metric {
            Metric::Slab => self.meminfo.get("Slab").cloned().unwrap_or_default(),
            Metric::SUnreclaim => self.meminfo.get("SUnreclaim").cloned().unwrap_or_default(),
            Metric::Objects => {
                // Every cache's active bytes, summed at each sample time.
                let times = self.times();
                let mut sum = vec![0.0; times.len()];
                for rows in self.caches.values() {
                    for (i, v) in at_times(rows.iter().map(|&(t, a, sz)| (t, a * sz)), &times).into_iter().enumerate() {
                        sum[i] += v.unwrap_or(0.0);
                    }
                }
                times.into_iter().zip(sum).collect()
            }
            Metric::Cache(name) => {
                match self.caches.get(name) {
                    Some(rows) => rows.iter().map(|&(t, a, sz)| (t, a * sz)).collect(),
                    None => self.times().into_iter().map(|t| (t, 0.0)).collect(),
                }
            }
        }
    }


    /// The series without its first `k` sample times (the warm-up).
    pub fn skipped(&self, k: usize) -> ArmSeries {
        if k == 0 {
            return self.clone();
        }
        let times = self.times();
        let Some(&from) = times.get(k) else { return ArmSeries::default() };
        ArmSeries {
            meminfo: self.meminfo.iter().map(|(n, v)| (n.clone(), v.iter().copied().filter(|p| p.0 >= from).collect())).collect(),
            caches: self.caches.iter().map(|(n, v)| (n.clone(), v.iter().copied().filter(|p| p.0 >= from).collect())).collect(),
            ops: self.ops.iter().copied().filter(|p| p.0 >= from).collect(),
            dentries_in_use: self.dentries_in_use.iter().copied().filter(|p| p.0 >= from).collect(),
        }
    }

    /// The series up to (and including) the `n`-th sample time.
    pub fn truncated(&self, n: usize) -> ArmSeries {
        let times = self.times();
        let Some(&cut) = times.get(n.saturating_sub(1)) else { return self.clone() };
        ArmSeries {
            meminfo: self.meminfo.iter().map(|(k, v)| (k.clone(), v.iter().copied().filter(|p| p.0 <= cut).collect())).collect(),
            caches: self.caches.iter().map(|(k, v)| (k.clone(), v.iter().copied().filter(|p| p.0 <= cut).collect())).collect(),
            ops: self.ops.iter().copied().filter(|p| p.0 <= cut).collect(),
            dentries_in_use: self.dentries_in_use.iter().copied().filter(|p| p.0 <= cut).collect(),
        }
    }

    /// Operations per second over the run (first to last sample).
    pub fn ops_rate(&self) -> Option<f64> {
        let (a, b) = (self.ops.first()?, self.ops.last()?);
        (b.0 > a.0 && b.1 > a.1).then(|| (b.1 - a.1) / (b.0 - a.0))
    }

    /// Total operations over the run.
    pub fn ops_total(&self) -> Option<f64> {
        let (a, b) = (self.ops.first()?, self.ops.last()?);
        (b.1 > a.1).then_some(b.1 - a.1)
    }

    /// The regressor of every fit: the cumulative op count at each sample
    /// time (per-op basis), or the time itself. None where a sample has no
    /// op count.
    pub(super) fn x(&self, times: &[f64], basis: Basis) -> Option<Vec<f64>> {
        match basis {
            Basis::PerSecond => Some(times.to_vec()),
            Basis::PerOp => at_times(self.ops.iter().copied(), times).into_iter().collect(),
        }
    }

    /// A cache's objects at each of `times` (0 where the cache was absent).
    pub(super) fn objects(&self, cache: &str, times: &[f64]) -> Vec<f64> {
        match self.caches.get(cache) {
            Some(rows) => at_times(rows.iter().map(|r| (r.0, r.1)), times).into_iter().map(|v| v.unwrap_or(0.0)).collect(),
            None => vec![0.0; times.len()],
        }
    }

    pub fn objsize(&self, cache: &str) -> Option<f64> {
        self.caches.get(cache).and_then(|r| r.last()).map(|r| r.2)
    }
}

/// The values of a time-ordered series at each of `times` (also ordered):
/// a merge, linear in both.
pub(super) fn at_times(rows: impl Iterator<Item = (f64, f64)>, times: &[f64]) -> Vec<Option<f64>> {
    let mut out = vec![None; times.len()];
    let mut i = 0;
    for (t, v) in rows {
        while i < times.len() && times[i] < t - 1e-9 {
            i += 1;
        }
        if i < times.len() && (times[i] - t).abs() < 1e-9 {
            out[i] = Some(v);
        }
    }
    out
}
