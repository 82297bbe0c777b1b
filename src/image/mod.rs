//! Guest images. `minimal` is an initramfs kernlab builds itself from host
//! binaries (busybox, dropbear and the libraries `ldd` names), the kernel's
//! driver modules for the devices kernlab attaches, and the guest init in
//! `images/minimal/`. The build is deterministic (sorted entries, fixed
//! mtimes, owners and inode numbers), so the same inputs give the same
//! sha256, and it is cached under that hash. Per-run secrets (SSH keys) never
//! enter the cached image: they go into a small second archive that is
//! concatenated onto it for each run, which the kernel unpacks on top.
//!
//! `debian` is a Debian 12 disk built from packages (`debian.rs`); a run
//! boots an overlay of it, with its SSH keys on a cloud-init NoCloud seed
//! disk (`seed.rs`).

pub mod build;
pub mod debian;
pub mod keys;
pub mod modules;
pub mod seed;
pub mod tree;

pub use build::{bare_cpio, build_minimal, capture_cpio, BuiltImage, ImageError};
pub use keys::{RunKeys, KeyError};
