//! Kernels: descriptors (`kernels/*.yaml`, plus the ones built into the
//! binary) and their resolution into a cached, unpacked kernel: `vmlinuz`,
//! its module tree with a `modules.dep`, its config. Debian kernels are
//! fetched with `apt-get download` (`apt`), so they come from the machine's
//! own configured and verified apt sources; kernlab names no mirror. RPM
//! kernels (SUSE's `kernel-default` and its `-devel`) are local files,
//! unpacked with the `rpm` crate; a local directory is used in place. Every
//! package lands in the cache through one path (`package`).

pub mod apt;
mod descriptor;
mod fetch;
pub mod headers;
pub mod package;
mod rpm;
pub mod tree;
mod types;
pub mod vmlinux;

pub use descriptor::{default_dirs as descriptor_dirs, DebianSource, Descriptor, DescriptorError, LocalSource, PackageSource, Registry, RpmSource, BENCH_KERNELS, DEFAULT_KERNEL};
pub use fetch::{fetch, FetchError};
pub use types::Kernel;
