//! Kernels: descriptors (`kernels/*.yaml`, plus the ones built into the
//! binary) and their resolution into a cached, unpacked kernel: `vmlinuz`,
//! its module tree with a `modules.dep`, its config. Debian kernels are
//! fetched with `apt-get download`, so they come from the machine's own
//! configured and verified apt sources; kernlab names no mirror. RPM kernels
//! (SUSE's `kernel-default` and its `-devel`) are local files, unpacked with
//! the `rpm` crate; a local directory is used in place.

mod descriptor;
mod fetch;
pub mod headers;
mod rpm;
pub mod tree;
pub mod vmlinux;

pub use descriptor::{default_dirs as descriptor_dirs, DebianSource, Descriptor, LocalSource, DescriptorError, Registry, RpmSource, Source, DEFAULT_KERNEL};
pub use fetch::{fetch, FetchError, Kernel};
