//! The run directory: where a run's artifacts live, created private (0700)
//! and never reused, so a rerun cannot overwrite an earlier run.
//!
//! ```text
//! runs/<lab>/<UTC timestamp>-<kernel>/
//!   manifest.json  lab.yaml  console.log  qemu.log  events.jsonl
//!   samples/{slabinfo,meminfo,dentry-state,balloon}.csv
//!   workload.log  report.json  report.html  keys/ (per-run SSH keys, 0600)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::util::fsx;

#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `out` if given (it must not exist or be empty), else a new
    /// `runs/<lab>/<timestamp>-<kernel>` (with `-2`, `-3`… on a collision).
    pub fn create(out: Option<&Path>, lab: &str, kernel: &str) -> io::Result<Self> {
        let path = match out {
            Some(p) => {
                if p.exists() && std::fs::read_dir(p)?.next().is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("`{}` exists and is not empty; kernlab never overwrites a run", p.display()),
                    ));
                }
                p.to_path_buf()
            }
            None => {
                let stamp = time::OffsetDateTime::now_utc()
                    .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
                    .unwrap_or_default();
                let base = Path::new("runs").join(lab).join(format!("{stamp}-{kernel}"));
                let mut p = base.clone();
                let mut n = 2;
                while p.exists() {
                    p = PathBuf::from(format!("{}-{n}", base.display()));
                    n += 1;
                }
                p
            }
        };
        fsx::private_dir(&path)?;
        fsx::private_dir(&path.join("samples"))?;
        let path = std::fs::canonicalize(&path)?;
        Ok(RunDir { path })
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}
