//! Errors of a run, one variant per step, each mapped to an exit code.

use std::path::PathBuf;

use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    #[error(transparent)]
    Descriptor(#[from] crate::kernel::DescriptorError),
    #[error("cannot create the run directory")]
    RunDir(#[source] std::io::Error),
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] crate::kernel::FetchError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Headers(#[from] crate::kernel::headers::HeadersError),
    #[error(transparent)]
    Payload(#[from] crate::payload::PayloadError),
    #[error("module `{module}` has no parameter `{param}` (it has: {known})")]
    ModuleParam { module: String, param: String, known: String },
    #[error("the workload exited with status {status} after {secs:.1} s, before its duration was over:\n{log}")]
    Workload { status: i32, secs: f64, log: String },
    #[error("loading module `{name}` into kernel `{kernel}` failed with {status}: {stderr}")]
    ModuleLoad { name: String, kernel: String, status: i32, stderr: String },
    #[error("cannot make this run's SSH keys")]
    Keys(#[from] crate::image::KeyError),
    #[error(transparent)]
    Debian(#[from] crate::image::debian::DebianError),
    #[error("cannot write the run's seed disk")]
    Seed(#[from] crate::image::seed::SeedError),
    #[error(transparent)]
    Disk(#[from] crate::image::DiskError),
    #[error("QEMU")]
    Qemu(#[from] crate::qemu::QemuError),
    #[error("cannot query the QEMU version")]
    QemuVersion(#[source] crate::util::tool::ToolError),
    #[error("QMP")]
    Qmp(#[from] crate::qmp::QmpError),
    #[error("kernel `{kernel}`: {reason}")]
    Profile { kernel: String, reason: String },
    #[error("failed to boot kernel `{kernel}`: {reason}\n--- last console lines ---\n{console}")]
    Boot { kernel: String, reason: String, console: String },
    #[error("SSH to the guest of kernel `{kernel}`")]
    Ssh {
        kernel: String,
        #[source]
        source: crate::vm::SshError,
    },
    #[error("setup command {index} `{command}` exited with {status}: {stderr}")]
    Setup { index: usize, command: String, status: i32, stderr: String },
    #[error("preparing the guest for dumps: `{command}` exited with {status}: {stderr}")]
    DumpSetup { command: String, status: i32, stderr: String },
    #[error(transparent)]
    Dump(#[from] crate::dump::DumpError),
    #[error("no vmcore: {reason}\n--- last console lines ---\n{console}")]
    DumpFailed { reason: String, console: String },
    /// The guest went away under a step (`during`: "during the run",
    /// "while loading module `x`"): the reason, the kernel's panic line first.
    #[error("the guest died {during}: {reason}\n--- last console lines ---\n{console}")]
    GuestDied { during: String, reason: String, console: String },
    #[error("{0}")]
    Usage(String),
    #[error("interrupted by {0}")]
    Interrupted(String),
    #[error("internal task failed: {0}")]
    Join(String),
    /// Saving the fresh guest as a snapshot left it unable to go on (a
    /// save that merely failed is a warning, not this).
    #[error("saving the snapshot left the VM unusable: {0}")]
    SnapshotSave(String),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Lab(_)
            | RunError::Descriptor(_)
            | RunError::RunDir(_)
            | RunError::ModuleParam { .. }
            | RunError::Usage(_)
            | RunError::Profile { .. } => exit::USAGE,
            RunError::Interrupted(_) => exit::INTERRUPTED,
            _ => exit::INFRA,
        }
    }

    /// The message with its whole cause chain, one cause per line.
    pub fn chain(&self) -> String {
        crate::util::error_causes(self)
    }
}
