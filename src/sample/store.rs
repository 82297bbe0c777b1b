//! The sample store: at each interval the sampler (`run::sampler`) captures
//! the guest's `/proc` files with one SSH command (one round trip), and QMP
//! gives the balloon's view of guest memory, which needs no working guest
//! network. Every sample is appended here to the CSV series in `samples/`
//! and flushed before the next one is taken.
//! Series are in long format, one row per (time, key), the rows of
//! [`super::rows`].

use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::path::Path;

use super::parse::{Capture, Section};
use super::rows::{self, BalloonRow, DentryRow, HostRow, MeminfoRow, OpsRow, Row, SlabRow};
use crate::util::fsx;

/// One series file open for appending: each sample's rows go out in one
/// write, flushed before the next sample is taken.
struct Series<R> {
    file: File,
    row: PhantomData<R>,
}

impl<R: Row> Series<R> {
    /// Opens `dir/R::FILE`, creating it with its header.
    fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(R::FILE);
        let fresh = !path.exists();
        let mut file = fsx::append_private(&path)?;
        if fresh {
            writeln!(file, "{}", R::HEADER)?;
        }
        Ok(Series { file, row: PhantomData })
    }

    /// Appends one sample's rows and flushes them.
    fn append<'a>(&mut self, rows: impl IntoIterator<Item = &'a R>) -> std::io::Result<()>
    where
        R: 'a,
    {
        let bytes = rows::to_csv(rows).map_err(std::io::Error::other)?;
        self.file.write_all(&bytes)?;
        self.file.flush()
    }
}

/// The open series files of a run.
pub struct SampleStore {
    slab: Option<Series<SlabRow>>,
    meminfo: Option<Series<MeminfoRow>>,
    dentry: Option<Series<DentryRow>>,
    balloon: Option<Series<BalloonRow>>,
    ops: Option<Series<OpsRow>>,
    /// kernlab's own footprint: a soak's memory and descriptors must stay flat.
    host: Option<Series<HostRow>>,
    pub count: u64,
}

impl SampleStore {
    /// Opens (creating with headers) the series for the enabled sources.
    pub fn open(dir: &Path, sections: &[Section], balloon: bool) -> std::io::Result<Self> {
        let has = |s: Section| sections.contains(&s);
        Ok(SampleStore {
            slab: has(Section::Slabinfo).then(|| Series::open(dir)).transpose()?,
            meminfo: has(Section::Meminfo).then(|| Series::open(dir)).transpose()?,
            dentry: has(Section::DentryState).then(|| Series::open(dir)).transpose()?,
            balloon: balloon.then(|| Series::open(dir)).transpose()?,
            ops: has(Section::Ops).then(|| Series::open(dir)).transpose()?,
            host: Some(Series::open(dir)?),
            count: 0,
        })
    }

    /// Appends one guest capture taken at run time `t`.
    pub fn append_capture(&mut self, t: f64, c: &Capture) -> std::io::Result<()> {
        let uptime = c.uptime_s;
        if let (Some(f), Some(caches)) = (self.slab.as_mut(), c.slabinfo.as_ref()) {
            let rows: Vec<SlabRow> = caches
                .iter()
                .map(|s| SlabRow { t, uptime, cache: s.name.clone(), active_objs: s.active_objs, num_objs: s.num_objs, objsize: s.objsize })
                .collect();
            f.append(&rows)?;
        }
        if let (Some(f), Some(m)) = (self.meminfo.as_mut(), c.meminfo.as_ref()) {
            let rows: Vec<MeminfoRow> = m.fields.iter().map(|(k, v)| MeminfoRow { t, uptime, key: k.clone(), bytes: *v }).collect();
            f.append(&rows)?;
        }
        if let (Some(f), Some(d)) = (self.dentry.as_mut(), c.dentry.as_ref()) {
            f.append(&[DentryRow {
                t,
                uptime,
                nr_dentry: d.nr_dentry,
                nr_unused: d.nr_unused,
                age_limit: d.age_limit,
                want_pages: d.want_pages,
                nr_negative: d.nr_negative,
            }])?;
        }
        if let (Some(f), Some(ops)) = (self.ops.as_mut(), c.ops) {
            f.append(&[OpsRow { t, uptime, ops }])?;
        }
        self.count += 1;
        Ok(())
    }

    /// Appends kernlab's own resident memory, open descriptors and threads
    /// (from /proc/self) at run time `t`.
    pub fn append_self(&mut self, t: f64) -> std::io::Result<()> {
        let Some(f) = self.host.as_mut() else { return Ok(()) };
        let status = std::fs::read_to_string("/proc/self/status")?;
        let (rss, threads) = self_status(&status);
        let fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
        f.append(&[HostRow { t, rss_bytes: rss.unwrap_or(0), fds, threads: threads.unwrap_or(0) }])
    }

    /// Appends the balloon's guest statistics (`stat-*` keys, bytes).
    pub fn append_balloon(&mut self, t: f64, stats: &serde_json::Value) -> std::io::Result<()> {
        let Some(f) = self.balloon.as_mut() else { return Ok(()) };
        /// `qom-get guest-stats` of the balloon: `stat-*` key → value.
        #[derive(serde::Deserialize)]
        struct GuestStats {
            stats: std::collections::BTreeMap<String, i64>,
        }
        let Ok(g) = serde_json::from_value::<GuestStats>(stats.clone()) else { return Ok(()) };
        // QEMU reports -1 for statistics the guest has not supplied yet.
        let rows: Vec<BalloonRow> = g.stats.into_iter().filter_map(|(key, v)| u64::try_from(v).ok().map(|value| BalloonRow { t, key, value })).collect();
        f.append(&rows)
    }
}

/// `VmRSS` (bytes) and `Threads` from /proc/self/status text.
pub fn self_status(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    (field("VmRSS:").map(|k| k * 1024), field("Threads:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_footprint_from_proc_self_status() {
        let text = "Name:\tkernlab\nVmPeak:\t  900000 kB\nVmRSS:\t   21504 kB\nThreads:\t7\n";
        assert_eq!(self_status(text), (Some(21504 * 1024), Some(7)));
        assert_eq!(self_status("Name: x\n"), (None, None));
        let d = tempfile::tempdir().unwrap();
        let mut store = SampleStore::open(d.path(), &[], false).unwrap();
        store.append_self(1.5).unwrap();
        let row = &rows::read::<HostRow>(d.path()).unwrap()[0];
        assert!(row.t == 1.5 && row.rss_bytes > 1 << 20 && row.fds >= 3 && row.threads >= 1, "{row:?}");
    }
    use crate::sample::parse::parse_capture;

    #[test]
    fn capture_rows_land_in_long_format() {
        let d = tempfile::tempdir().unwrap();
        let sections = [Section::Uptime, Section::Slabinfo, Section::Meminfo, Section::DentryState];
        let mut store = SampleStore::open(d.path(), &sections, true).unwrap();
        let text = format!(
            "@@kernlab-section uptime\n12.50 10.00\n@@kernlab-section slabinfo\n{}@@kernlab-section meminfo\n{}@@kernlab-section dentry-state\n{}",
            include_str!("testdata/host-6.18-slabinfo.txt"),
            include_str!("testdata/host-6.18-meminfo.txt"),
            include_str!("testdata/host-6.18-dentry-state.txt"),
        );
        let c = parse_capture(&text).unwrap();
        store.append_capture(1.0, &c).unwrap();
        store.append_balloon(1.0, &serde_json::json!({"stats": {"stat-free-memory": 1024, "stat-htlb-pgalloc": -1}})).unwrap();
        let slab = std::fs::read_to_string(d.path().join("slabinfo.csv")).unwrap();
        assert_eq!(slab.lines().count(), 1 + c.slabinfo.as_ref().unwrap().len());
        assert!(slab.lines().any(|l| l.starts_with("1.000,12.50,dentry,")), "{}", &slab[..200]);
        let mem = std::fs::read_to_string(d.path().join("meminfo.csv")).unwrap();
        assert!(mem.contains(&format!("1.000,12.50,MemTotal,{}", 24684084u64 * 1024)));
        let balloon = std::fs::read_to_string(d.path().join("balloon.csv")).unwrap();
        assert_eq!(balloon, "t,key,value\n1.000,stat-free-memory,1024\n");
    }
}
