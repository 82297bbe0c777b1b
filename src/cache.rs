//! The content cache shared by every run on this machine, and the one place
//! that knows its layout:
//!
//! ```text
//! kernels/<package sha256>/           an unpacked kernel (kernel.json inside)
//! kernels/by-name/<name>.json         descriptor name → entry
//! kernels/local-boot/<vmlinuz sha>/   the ELF extracted from a local kernel
//! headers/<key>/                      unpacked header packages
//! headers/by-kernel/<sha>.txt         kernel package → headers key
//! debug/<kernel package sha>/vmlinux  the debug vmlinux crash reads
//! images/minimal-<sha256>.cpio        built guest images
//! modules/<key>/  programs/<key>/     built payload
//! payload/<key>/                      the lab's payload entries, built
//! snapshots/<key>/                    snapshots of booted guests
//! accel/kvm-failed-<vmlinuz sha>      kernels KVM could not boot
//! locks/<entry>.lock  tmp/            per-entry locks, scratch space
//! ```
//!
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

/// The entry a lock guards; two holders of the same one exclude each other.
#[derive(Debug, Clone, Copy)]
pub enum Lock<'a> {
    /// A kernel by descriptor name: its fetch and its vmlinux extraction.
    Kernel(&'a str),
    /// A kernel's headers, by descriptor name.
    Headers(&'a str),
    /// The debug vmlinux, by kernel package sha256.
    Debug(&'a str),
    Module(&'a str),
    Program(&'a str),
    /// A lab's payload entry built, by its key.
    Payload(&'a str),
    Snapshot(&'a str),
    /// A disk image stage (the Debian root file system, a kernel's disk), by its key.
    Image(&'a str),
    /// The private apt configuration of a foreign architecture, by its Debian name.
    Apt(&'a str),
}

impl Lock<'_> {
    /// The lock file's name (without `.lock`), as it has always been.
    fn name(self) -> String {
        let (kind, key) = match self {
            Lock::Kernel(k) => ("kernel", k),
            Lock::Headers(k) => ("headers", k),
            Lock::Debug(k) => ("debug", k),
            Lock::Module(k) => ("module", k),
            Lock::Program(k) => ("program", k),
            Lock::Payload(k) => ("payload", k),
            Lock::Snapshot(k) => ("snapshot", k),
            Lock::Image(k) => ("image", k),
            Lock::Apt(k) => ("apt", k),
        };
        format!("{kind}-{key}").chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
    }
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

    /// An unpacked kernel, by its package key.
    pub fn kernel_dir(&self, key: &str) -> PathBuf {
        self.root.join("kernels").join(key)
    }

    /// The pointers from descriptor names to kernel entries.
    pub fn kernel_pointers(&self) -> PathBuf {
        self.root.join("kernels/by-name")
    }

    pub fn kernel_pointer(&self, name: &str) -> PathBuf {
        self.kernel_pointers().join(format!("{name}.json"))
    }

    /// Where the ELF extracted from a local kernel (not the cache's to write
    /// into) lives, by the vmlinuz's hash.
    pub fn local_boot_dir(&self, vmlinuz_sha256: &str) -> PathBuf {
        self.root.join("kernels/local-boot").join(vmlinuz_sha256)
    }

    /// Unpacked header packages, by the packages' key.
    pub fn headers_dir(&self, key: &str) -> PathBuf {
        self.root.join("headers").join(key)
    }

    /// The pointer from a kernel package to its headers' key.
    pub fn headers_pointer(&self, kernel_sha256: &str) -> PathBuf {
        self.root.join("headers/by-kernel").join(format!("{kernel_sha256}.txt"))
    }

    /// The directory holding the debug `vmlinux` of a kernel package.
    pub fn debug_dir(&self, kernel_sha256: &str) -> PathBuf {
        self.root.join("debug").join(kernel_sha256)
    }

    /// A built guest image.
    pub fn image(&self, sha256: &str) -> PathBuf {
        self.root.join("images").join(format!("minimal-{sha256}.cpio"))
    }

    /// The Debian root file system (`image: debian`, stage 1), by the key
    /// of its package list, recipe and apt sources.
    pub fn debian_rootfs(&self, key: &str) -> PathBuf {
        self.root.join("images/debian").join(format!("rootfs-{key}.tar"))
    }

    /// A Debian disk for one kernel (stage 2): `root.raw`, `initrd.img`, `image.json`.
    pub fn debian_disk(&self, key: &str) -> PathBuf {
        self.root.join("images/debian").join(format!("disk-{key}"))
    }

    pub fn module_dir(&self, key: &str) -> PathBuf {
        self.root.join("modules").join(key)
    }

    pub fn program_dir(&self, key: &str) -> PathBuf {
        self.root.join("programs").join(key)
    }

    /// A lab's payload entry built from source (a C file, a directory
    /// with a Makefile), by the hash of its sources and the compiler.
    pub fn payload_dir(&self, key: &str) -> PathBuf {
        self.root.join("payload").join(key)
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn snapshot_dir(&self, key: &str) -> PathBuf {
        self.snapshots().join(key)
    }

    /// The private apt state (lists, archives, configuration) for packages
    /// of a foreign architecture (its Debian name).
    pub fn apt_dir(&self, debian_arch: &str) -> PathBuf {
        self.root.join("apt").join(debian_arch)
    }

    /// A foreign architecture's guest programs and their libraries,
    /// unpacked from its packages (see `image::sysroot`).
    pub fn sysroot_dir(&self, debian_arch: &str) -> PathBuf {
        self.root.join("sysroot").join(debian_arch)
    }

    /// The marker of a kernel KVM failed to boot.
    pub fn kvm_failed_marker(&self, vmlinuz_sha256: &str) -> PathBuf {
        self.root.join("accel").join(format!("kvm-failed-{vmlinuz_sha256}"))
    }

    /// Scratch space (same file system as the entries).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// A scratch directory inside the cache (same file system, so the final
    /// rename is atomic); removed on drop unless persisted by renaming.
    pub fn scratch(&self, prefix: &str) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(prefix).tempdir_in(self.tmp())
    }

    /// Takes the exclusive lock on `entry`, blocking until it is free. The
    /// lock is released when the guard is dropped (or the process dies).
    pub fn lock(&self, entry: Lock) -> io::Result<CacheLock> {
        let file = fsx::append_private(&self.locks().join(format!("{}.lock", entry.name())))?;
        // flock(2) belongs to the open file description, so it excludes other
        // processes and other threads of this one alike, and the kernel drops
        // it if we die.
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => return Ok(CacheLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// An exclusive cache lock; released on drop (closing the file drops the flock).
pub struct CacheLock {
    _file: File,
}

/// Publishes `staged` as `dest` unless another process published it first, in
/// which case `staged` is discarded. Callers hold the entry's lock. `dest`'s
/// parent is made (private) if missing.
pub fn publish_dir(staged: &Path, dest: &Path) -> io::Result<()> {
    if dest.exists() {
        return Ok(());
    }
    if let Some(parent) = dest.parent().filter(|p| !p.exists()) {
        fsx::private_dir(parent)?;
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
                    let _g = cache.lock(Lock::Kernel("x")).unwrap();
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

#[cfg(test)]
mod layout_tests {
    use super::*;

    /// The layout is what caches on disk already hold: these paths must not move.
    #[test]
    fn paths_are_the_existing_layout() {
        let c = Cache { root: PathBuf::from("/c") };
        let cases = [
            (c.kernel_dir("abc"), "/c/kernels/abc"),
            (c.kernel_pointer("debian-6.1"), "/c/kernels/by-name/debian-6.1.json"),
            (c.local_boot_dir("v"), "/c/kernels/local-boot/v"),
            (c.headers_dir("k"), "/c/headers/k"),
            (c.headers_pointer("p"), "/c/headers/by-kernel/p.txt"),
            (c.debug_dir("p"), "/c/debug/p"),
            (c.image("s"), "/c/images/minimal-s.cpio"),
            (c.module_dir("m"), "/c/modules/m"),
            (c.program_dir("p"), "/c/programs/p"),
            (c.payload_dir("p"), "/c/payload/p"),
            (c.snapshot_dir("s"), "/c/snapshots/s"),
            (c.kvm_failed_marker("v"), "/c/accel/kvm-failed-v"),
            (c.tmp(), "/c/tmp"),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
        let names = [
            (Lock::Kernel("debian-6.12.117+deb12-amd64"), "kernel-debian-6.12.117_deb12-amd64"),
            (Lock::Headers("k"), "headers-k"),
            (Lock::Debug("p"), "debug-p"),
            (Lock::Module("m"), "module-m"),
            (Lock::Program("p"), "program-p"),
            (Lock::Payload("p"), "payload-p"),
            (Lock::Snapshot("s"), "snapshot-s"),
        ];
        for (lock, want) in names {
            assert_eq!(lock.name(), want);
        }
    }
}
