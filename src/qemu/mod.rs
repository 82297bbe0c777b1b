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

/// The QEMU binary: `$KERNLAB_QEMU` or `qemu-system-x86_64` on PATH.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("KERNLAB_QEMU")
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| "qemu-system-x86_64".into())
}
