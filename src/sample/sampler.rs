//! The sampler: at each interval, one SSH command captures the guest's
//! `/proc` files (one round trip), and QMP gives the balloon's view of guest
//! memory, which needs no working guest network. Every sample is appended to
//! the CSV series in `samples/` and flushed before the next one is taken.
//! Series are in long format, one row per (time, key).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::parse::{Capture, Section};
use crate::util::fsx;

/// The open series files of a run.
pub struct SampleStore {
    slab: Option<File>,
    meminfo: Option<File>,
    dentry: Option<File>,
    balloon: Option<File>,
    ops: Option<File>,
    /// kernlab's own footprint: a soak's memory and descriptors must stay flat.
    host: Option<File>,
    pub count: u64,
}

impl SampleStore {
    /// Opens (creating with headers) the series for the enabled sources.
    pub fn open(dir: &Path, sections: &[Section], balloon: bool) -> std::io::Result<Self> {
        let open = |name: &str, header: &str| -> std::io::Result<File> {
            let path = dir.join(name);
            let fresh = !path.exists();
            let mut f = fsx::append_private(&path)?;
            if fresh {
                writeln!(f, "{header}")?;
            }
            Ok(f)
        };
        Ok(SampleStore {
            slab: sections
                .contains(&Section::Slabinfo)
                .then(|| open("slabinfo.csv", "t,uptime,cache,active_objs,num_objs,objsize"))
                .transpose()?,
            meminfo: sections.contains(&Section::Meminfo).then(|| open("meminfo.csv", "t,uptime,key,bytes")).transpose()?,
            dentry: sections
                .contains(&Section::DentryState)
                .then(|| open("dentry-state.csv", "t,uptime,nr_dentry,nr_unused,age_limit,want_pages,nr_negative"))
                .transpose()?,
            balloon: balloon.then(|| open("balloon.csv", "t,key,value")).transpose()?,
            ops: sections.contains(&Section::Ops).then(|| open("ops.csv", "t,uptime,ops")).transpose()?,
            host: Some(open("kernlab.csv", "t,rss_bytes,fds,threads")?),
            count: 0,
        })
    }

    /// Appends one guest capture taken at run time `t`.
    pub fn append_capture(&mut self, t: f64, c: &Capture) -> std::io::Result<()> {
        let up = c.uptime_s.map(|u| format!("{u:.2}")).unwrap_or_default();
        if let (Some(f), Some(caches)) = (self.slab.as_mut(), c.slabinfo.as_ref()) {
            let mut buf = String::with_capacity(caches.len() * 48);
            for s in caches {
                buf.push_str(&format!("{t:.3},{up},{},{},{},{}\n", s.name, s.active_objs, s.num_objs, s.objsize));
            }
            f.write_all(buf.as_bytes())?;
            f.flush()?;
        }
        if let (Some(f), Some(m)) = (self.meminfo.as_mut(), c.meminfo.as_ref()) {
            let mut buf = String::new();
            for (k, v) in &m.fields {
                buf.push_str(&format!("{t:.3},{up},{k},{v}\n"));
            }
            f.write_all(buf.as_bytes())?;
            f.flush()?;
        }
        if let (Some(f), Some(d)) = (self.dentry.as_mut(), c.dentry.as_ref()) {
            writeln!(f, "{t:.3},{up},{},{},{},{},{}", d.nr_dentry, d.nr_unused, d.age_limit, d.want_pages, d.nr_negative)?;
            f.flush()?;
        }
        if let (Some(f), Some(n)) = (self.ops.as_mut(), c.ops) {
            writeln!(f, "{t:.3},{up},{n}")?;
            f.flush()?;
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
        let fds = std::fs::read_dir("/proc/self/fd")?.count();
        writeln!(f, "{t:.3},{},{fds},{}", rss.unwrap_or(0), threads.unwrap_or(0))?;
        f.flush()
    }

    /// Appends the balloon's guest statistics (`stat-*` keys, bytes).
    pub fn append_balloon(&mut self, t: f64, stats: &serde_json::Value) -> std::io::Result<()> {
        let Some(f) = self.balloon.as_mut() else { return Ok(()) };
        let Some(map) = stats.get("stats").and_then(|s| s.as_object()) else { return Ok(()) };
        let mut buf = String::new();
        for (k, v) in map {
            // QEMU reports -1 for statistics the guest has not supplied yet.
            if let Some(v) = v.as_i64().filter(|v| *v >= 0) {
                buf.push_str(&format!("{t:.3},{k},{v}\n"));
            }
        }
        f.write_all(buf.as_bytes())?;
        f.flush()
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
        let csv = std::fs::read_to_string(d.path().join("kernlab.csv")).unwrap();
        let row: Vec<u64> = csv.lines().nth(1).unwrap().split(',').skip(1).map(|v| v.parse().unwrap()).collect();
        assert!(row[0] > 1 << 20 && row[1] >= 3 && row[2] >= 1, "{csv}");
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
