//! The content cache shared by every run on this machine: fetched kernels,
//! built images and modules, and snapshots of booted guests (`snapshot`).
//! Entries are published by renaming a complete temporary directory into
//! place, under a per-entry lock, so two runs fetching the same thing at
//! once neither corrupt it nor see a partial download.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::util::fsx;

/// The cache root: `$KERNLAB_CACHE`, else `$XDG_CACHE_HOME/kernlab`, else
/// `~/.cache/kernlab`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn from_env() -> io::Result<Self> {
        let root = if let Some(p) = std::env::var_os("KERNLAB_CACHE").filter(|p| !p.is_empty()) {
            PathBuf::from(p)
        } else if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
            PathBuf::from(p).join("kernlab")
        } else if let Some(home) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            PathBuf::from(home).join(".cache/kernlab")
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cache directory: set KERNLAB_CACHE, XDG_CACHE_HOME or HOME",
            ));
        };
        Self::at(root)
    }

    pub fn at(root: PathBuf) -> io::Result<Self> {
        for sub in ["kernels/by-name", "images", "snapshots", "locks", "tmp"] {
            fsx::private_dir(&root.join(sub))?;
        }
        Ok(Cache { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// A scratch directory inside the cache (same file system, so the final
    /// rename is atomic); removed on drop unless persisted by renaming.
    pub fn scratch(&self, prefix: &str) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(prefix).tempdir_in(self.root.join("tmp"))
    }

    /// Takes the exclusive lock for `key`, blocking until it is free. The
    /// lock is released when the guard is dropped (or the process dies).
    pub fn lock(&self, key: &str) -> io::Result<CacheLock> {
        let safe: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let file = fsx::append_private(&self.root.join("locks").join(format!("{safe}.lock")))?;
        // flock(2) belongs to the open file description, so it excludes other
        // processes and other threads of this one alike, and the kernel drops
        // it if we die.
        use std::os::fd::AsRawFd;
        loop {
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(CacheLock { _file: file })
    }
}

/// An exclusive cache lock; released on drop (closing the file drops the flock).
pub struct CacheLock {
    _file: File,
}

/// Publishes `staged` as `dest` unless another process published it first, in
/// which case `staged` is discarded. Callers hold the entry's lock.
pub fn publish_dir(staged: &Path, dest: &Path) -> io::Result<()> {
    if dest.exists() {
        return Ok(());
    }
    fs::rename(staged, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn lock_is_exclusive_across_threads() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::at(d.path().to_path_buf()).unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (cache, inside, max_seen) = (cache.clone(), inside.clone(), max_seen.clone());
                std::thread::spawn(move || {
                    let _g = cache.lock("kernel-x").unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(max_seen.load(Ordering::SeqCst), 1);
    }
}
