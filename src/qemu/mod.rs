//! QEMU on the host: the argv (a pure function of a [`VmSpec`]), the choice
//! of accelerator, the child process in its own process group, and picking a
//! loopback port for SSH.

pub mod accel;
pub mod argv;
pub mod machine;
pub mod process;

pub use accel::{Accel, AccelChoice, AccelRequest, HostAccel};
pub use argv::{argv, CmdlineOpts, Device, VmSpec};
pub use machine::{HostTsc, Machine, MachineChoice, MachineRequest};
pub use process::{free_port, qemu_version, Qemu, QemuError};

/// The QEMU binary for a guest of `arch`: `$KERNLAB_QEMU` or the
/// architecture's system emulator on PATH.
pub fn binary(arch: crate::arch::Arch) -> std::path::PathBuf {
    std::env::var_os("KERNLAB_QEMU").filter(|v| !v.is_empty()).map(Into::into).unwrap_or_else(|| arch.qemu_binary().into())
}
