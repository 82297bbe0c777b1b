//! Kernel dumps. The dump disk for in-guest kdump is made on the host: a
//! sparse raw file formatted ext4 and pre-filled with the capture kernel and
//! its initramfs (`mkfs.ext4 -d`), so neither needs to live in the guest's
//! RAM-backed image. After the capture kernel powers off, the vmcore and the
//! kernel log are read back with `debugfs`, without mounting anything. The
//! crash directory follows the layout SUSE and Debian kdump use:
//! `crash/<YYYY-MM-DD-HH:MM>/{vmcore,dmesg.txt}`, private.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::fsx;
use crate::util::tool::{self, Tool};

/// `mkfs.ext4` of a sparse disk, or `debugfs` copying a vmcore out of one
/// (a guest's memory, up to a few GiB).
const DISK_DEADLINE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("dump disk `{}`", path.display())]
    Disk {
        path: PathBuf,
        #[source]
        source: tool::ToolError,
    },
    #[error("dump I/O on `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the dump disk holds no `{name}`: the capture kernel did not finish writing it")]
    Missing { name: String },
}

/// Which path produced a vmcore, and why.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DumpRecord {
    /// `kdump` (in-guest, makedumpfile) or `host-dump` (QMP dump-guest-memory).
    pub via: String,
    /// Why this path: what triggered the panic, and why a fallback was taken.
    pub reason: String,
    pub vmcore: PathBuf,
    pub bytes: u64,
    pub dmesg: Option<PathBuf>,
    /// Panic (or trigger) → vmcore on the host, seconds.
    pub secs: f64,
}

impl DumpRecord {
    /// With its files as a record in `dir` names them (relative to it).
    pub fn recorded_in(mut self, dir: &Path) -> DumpRecord {
        self.vmcore = crate::outcome::recorded(dir, &self.vmcore);
        self.dmesg = self.dmesg.map(|d| crate::outcome::recorded(dir, &d));
        self
    }

    /// With its relative files seen from `sub`'s parent (an arm's record
    /// copied into its lab's top-level one: `module/crash/…/vmcore`).
    pub fn under(mut self, sub: &str) -> DumpRecord {
        fn join(sub: &str, p: PathBuf) -> PathBuf {
            if p.is_absolute() {
                p
            } else {
                Path::new(sub).join(p)
            }
        }
        self.vmcore = join(sub, self.vmcore);
        self.dmesg = self.dmesg.map(|d| join(sub, d));
        self
    }
}

/// Creates the dump disk at `path` (`size` bytes, sparse) holding `files`
/// (guest path relative to the disk root → content).
pub fn make_disk(path: &Path, size: u64, files: &[(&str, &[u8])]) -> Result<(), DumpError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| DumpError::Io { path: p, source }
    };
    let staging = tempfile::tempdir_in(path.parent().unwrap_or(Path::new("."))).map_err(io(path))?;
    for (rel, data) in files {
        let dest = staging.path().join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&dest, data).map_err(io(&dest))?;
    }
    let f = fsx::create_private(path).map_err(io(path))?;
    f.set_len(size).map_err(io(path))?;
    drop(f);
    Tool::new("mkfs.ext4", DISK_DEADLINE)
        .args(["-F", "-q", "-L", "kernlab-dump", "-E", "root_owner=0:0", "-d"])
        .arg(staging.path())
        .arg(path)
        .run()
        .map_err(|source| DumpError::Disk { path: path.to_path_buf(), source })?;
    Ok(())
}

/// Creates an empty ext4 disk at `path` (`size` bytes, sparse) labelled
/// `label`, with one 128-byte inode per 2 KiB: a churn of leaked files pins
/// unlinked inodes, which must not run out before memory does.
pub fn make_ext4(path: &Path, size: u64, label: &str) -> Result<(), DumpError> {
    let f = fsx::create_private(path).map_err(|source| DumpError::Io { path: path.to_path_buf(), source })?;
    f.set_len(size).map_err(|source| DumpError::Io { path: path.to_path_buf(), source })?;
    drop(f);
    Tool::new("mkfs.ext4", DISK_DEADLINE)
        .args(["-F", "-q", "-L", label, "-i", "2048", "-I", "128"])
        .arg(path)
        .run()
        .map_err(|source| DumpError::Disk { path: path.to_path_buf(), source })?;
    Ok(())
}

/// Copies `/<name>` from the ext4 disk image to `out` (0600).
pub fn extract(disk: &Path, name: &str, out: &Path) -> Result<u64, DumpError> {
    Tool::new("debugfs", DISK_DEADLINE)
        .arg("-R")
        .arg(format!("dump /{name} {}", out.display()))
        .arg(disk)
        .run()
        .map_err(|source| DumpError::Disk { path: disk.to_path_buf(), source })?;
    // debugfs reports a missing file on stderr and exits 0.
    match std::fs::metadata(out) {
        Ok(m) if m.len() > 0 => {
            let _ = fsx::set_private(out);
            Ok(m.len())
        }
        _ => {
            let _ = std::fs::remove_file(out);
            Err(DumpError::Missing { name: name.to_string() })
        }
    }
}

/// The dump kdump-tools left on a disk it used as /var/crash: its
/// `<YYYYMMDDHHMM>/` directory (the newest, if there are several) with
/// `dump.<stamp>` and, when it saved one, `dmesg.<stamp>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroDump {
    pub dir: String,
    pub vmcore: String,
    pub dmesg: Option<String>,
}

/// Finds kdump-tools' dump on `disk` (read with `debugfs`, no mount).
pub fn find_distro_dump(disk: &Path) -> Result<Option<DistroDump>, DumpError> {
    let root = list(disk, "/")?;
    let mut dirs: Vec<&String> = root.iter().filter(|(n, dir)| *dir && n.len() == 12 && n.chars().all(|c| c.is_ascii_digit())).map(|(n, _)| n).collect();
    dirs.sort();
    let Some(dir) = dirs.last() else { return Ok(None) };
    let files = list(disk, dir)?;
    let has = |name: &str| files.iter().any(|(n, d)| !d && n == name);
    let vmcore = format!("dump.{dir}");
    if !has(&vmcore) {
        return Ok(None);
    }
    let dmesg = format!("dmesg.{dir}");
    Ok(Some(DistroDump { dir: dir.to_string(), dmesg: has(&dmesg).then(|| format!("{dir}/{dmesg}")), vmcore: format!("{dir}/{vmcore}") }))
}

/// Names in directory `dir` of an ext4 disk image, with whether each is a
/// directory (`debugfs ls -p`: `/inode/mode/uid/gid/name/size/`).
fn list(disk: &Path, dir: &str) -> Result<Vec<(String, bool)>, DumpError> {
    let out = Tool::new("debugfs", DISK_DEADLINE)
        .arg("-R")
        .arg(format!("ls -p {dir}"))
        .arg(disk)
        .run()
        .map_err(|source| DumpError::Disk { path: disk.to_path_buf(), source })?;
    Ok(parse_ls(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ls(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('/').collect();
            // "", inode, mode, uid, gid, name, size, ""
            (f.len() >= 7).then(|| (f[5].to_string(), f[2].starts_with("04")))
        })
        .filter(|(n, _)| n != "." && n != ".." && !n.is_empty())
        .collect()
}

/// A new `crash/<YYYY-MM-DD-HH:MM>/` directory in `run_dir` (0700).
pub fn crash_dir(run_dir: &Path) -> Result<PathBuf, DumpError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day]-[hour]:[minute]"))
        .unwrap_or_default();
    let mut dir = run_dir.join("crash").join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = run_dir.join("crash").join(format!("{stamp}-{n}"));
        n += 1;
    }
    fsx::private_dir(&dir).map_err(|source| DumpError::Io { path: dir.clone(), source })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_recorded_relative_to_its_run_and_then_to_the_lab() {
        let run = Path::new("/runs/l/20260101T000000Z-k/module");
        let d = DumpRecord { via: "kdump".into(), reason: String::new(), vmcore: run.join("crash/s/vmcore"), bytes: 1, dmesg: Some(run.join("crash/s/dmesg.txt")), secs: 0.0 };
        let rel = d.recorded_in(run);
        assert_eq!((rel.vmcore.as_path(), rel.dmesg.as_deref()), (Path::new("crash/s/vmcore"), Some(Path::new("crash/s/dmesg.txt"))));
        let top = rel.under("module");
        assert_eq!((top.vmcore.as_path(), top.dmesg.as_deref()), (Path::new("module/crash/s/vmcore"), Some(Path::new("module/crash/s/dmesg.txt"))));
        // An older record's absolute path stays as it is.
        let old = DumpRecord { vmcore: "/old/vmcore".into(), dmesg: None, ..top };
        assert_eq!(old.under("module").vmcore, Path::new("/old/vmcore"));
    }

    #[test]
    fn disk_round_trip_with_mkfs_and_debugfs() {
        if Tool::new("mkfs.ext4", Duration::from_secs(30)).arg("-V").output().is_err() {
            panic!("mkfs.ext4 is missing: scripts/setup.sh installs e2fsprogs");
        }
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("dump.img");
        make_disk(&disk, 16 << 20, &[("boot/capture.cpio", b"cpio bytes"), ("hello", b"world")]).unwrap();
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 16 << 20);
        let out = d.path().join("hello.out");
        assert_eq!(extract(&disk, "hello", &out).unwrap(), 5);
        assert_eq!(std::fs::read(&out).unwrap(), b"world");
        let missing = extract(&disk, "vmcore", &d.path().join("vmcore")).unwrap_err();
        assert!(matches!(missing, DumpError::Missing { .. }), "{missing}");
        let c = crash_dir(d.path()).unwrap();
        assert!(c.starts_with(d.path().join("crash")));
    }

    #[test]
    fn kdump_tools_layout_is_found_on_the_disk() {
        let d = tempfile::tempdir().unwrap();
        let disk = d.path().join("crash.img");
        make_disk(&disk, 16 << 20, &[("lost+found/x", b""), ("202612020401/dump.202612020401", b"old"), ("202612020459/dump.202612020459", b"core"), ("202612020459/dmesg.202612020459", b"log")]).unwrap();
        let found = find_distro_dump(&disk).unwrap().unwrap();
        assert_eq!(found, DistroDump { dir: "202612020459".into(), vmcore: "202612020459/dump.202612020459".into(), dmesg: Some("202612020459/dmesg.202612020459".into()) });
        let out = d.path().join("vmcore");
        assert_eq!(extract(&disk, &found.vmcore, &out).unwrap(), 4);
        let empty = d.path().join("empty.img");
        make_disk(&empty, 16 << 20, &[("notes", b"x")]).unwrap();
        assert_eq!(find_distro_dump(&empty).unwrap(), None);
    }

    #[test]
    fn debugfs_listing_is_parsed() {
        let text = "/2/040755/0/0/./\n/11/040700/0/0/lost+found/\n/12/040755/0/0/202612020459/\n/13/100644/0/0/notes/1/\n";
        let text = text.replace("\\n", "\n");
        assert_eq!(parse_ls(&text), [("lost+found".to_string(), true), ("202612020459".to_string(), true), ("notes".to_string(), false)]);
    }
}
