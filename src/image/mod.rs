//! Guest images. `minimal` is an initramfs kernlab builds itself from host
//! binaries (busybox, dropbear and the libraries `ldd` names), the kernel's
//! driver modules for the devices kernlab attaches, and the guest init in
//! `images/minimal/`. The build is deterministic (sorted entries, fixed
//! mtimes, owners and inode numbers), so the same inputs give the same
//! sha256, and it is cached under that hash. Per-run secrets (SSH keys) never
//! enter the cached image: they go into a small second archive that is
//! concatenated onto it for each run, which the kernel unpacks on top.
//!
//! `debian` is a Debian 12 disk built from packages (`debian.rs`). A
//! guest on a disk gets its per-run secrets on a second, tiny disk instead:
//! `seed` writes the cloud-init NoCloud seed (vfat, label `cidata`), which
//! also carries plain files for kernlab's own Debian image. `disk` checks a
//! user's own disk image (qcow2 or raw) and makes the qcow2 overlay a run
//! writes to, so the image itself is never written.

pub mod build;
pub mod debian;
pub mod disk;
pub mod keys;
pub mod modules;
pub mod seed;
pub mod sysroot;
pub mod tree;

pub use build::{bare_cpio, build_minimal, capture_cpio, BuiltImage, ImageError};
pub use disk::{DiskError, DiskFormat, DiskInfo};
pub use keys::{RunKeys, KeyError};
pub use seed::{write_seed, Seed, SeedError};
