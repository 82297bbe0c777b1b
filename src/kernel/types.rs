//! The kernel as the rest of kernlab sees it: unpacked in the cache (or a
//! local tree used in place), ready to boot and to build modules against.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A kernel unpacked in the cache, ready to boot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Kernel {
    /// Descriptor name, e.g. `debian-6.1.0-54-cloud-amd64`.
    pub name: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-54-cloud-amd64`.
    pub release: String,
    /// Where it came from, e.g. `debian linux-image-…=6.1.190-1`.
    pub source: String,
    /// The package version that was fetched.
    pub version: String,
    /// sha256 of the fetched package: the cache key. For an RPM kernel with
    /// `-devel` packages, the sha256 of the packages' hashes (one per line,
    /// kernel package first); for a local kernel, the vmlinuz's.
    pub package_sha256: String,
    /// sha256 of the bootable image.
    pub vmlinuz_sha256: String,
    /// The unpacked package root in the cache.
    pub root: PathBuf,
    /// The architecture its descriptor names (`arch:`); absent, its
    /// release's Debian suffix says, else x86_64 (see [`Kernel::arch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<crate::arch::Arch>,
}

impl Kernel {
    /// The architecture it is built for: its descriptor's `arch:`, else its
    /// release's Debian suffix (`-amd64`, `-arm64`), else x86_64 (a local
    /// or RPM kernel's release does not say).
    pub fn arch(&self) -> crate::arch::Arch {
        self.arch.or_else(|| crate::arch::Arch::of_debian_name(&self.release)).unwrap_or_default()
    }
    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }
    pub fn config(&self) -> PathBuf {
        self.root.join(format!("boot/config-{}", self.release))
    }
    /// `lib/modules/<release>` inside the unpacked package.
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}
