//! The guest seam: what the engine asks of a guest once it is up. Run a
//! command, upload a file, take a sample, run the workload on a session of
//! its own, watch for the guest's loss, dump it from the host, stop it.
//! [`GuestOps`] is implemented by `vm::Guest` (QEMU, QMP, console and SSH;
//! in `vm_guest`)
//! and, in the unit tests, by a scripted in-memory guest
//! (`run::testing::Scripted`), so the phases after boot (setup, modules,
//! workload and sampling, the decision, the dump, the report) run without
//! QEMU. The boot phases (`prepare`, `boot`, `restore`, `start`) stay on
//! the concrete `vm::Guest`: they are QEMU's own business.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::outcome::event::Events;
use crate::vm::{ExecOutput, GuestError, GuestLost, SshError, Stopped};

/// A command on a session of its own, for as long as it takes (the
/// workload's exec lasts the whole phase).
pub(crate) trait LongSession: Send + Sync {
    fn exec(self: Arc<Self>, command: String, timeout: Duration) -> BoxFuture<'static, Result<ExecOutput, SshError>>;
}

/// How the sampler reads the guest: one capture's text per call, or why
/// there is none (a gap in the samples). The transport (the guest
/// sampler's stream, a fresh SSH command) is the implementation's.
pub(crate) trait Capture: Send {
    fn take(&mut self, t: f64, interval: Duration) -> BoxFuture<'_, Result<String, String>>;
    /// The sampling is over: release the transport.
    fn close(self: Box<Self>) {}
}

/// What the sampler is to read and how: the capture command (sampling by
/// command) and the guest sampler's stream, when the lab samples through it.
pub(crate) struct CapturePlan {
    pub command: String,
    pub stream: Option<StreamPlan>,
    pub events: Events,
}

/// The guest sampler (`labs/guest/sampler.c`): the command that starts it
/// on an SSH channel, the VM's port when it has one, and where the
/// transports that carried records are written down, in order of first use.
pub(crate) struct StreamPlan {
    pub command: String,
    pub port: Option<PortPlan>,
    pub used: Arc<Mutex<Vec<&'static str>>>,
}

/// The sampler over the VM's port: the command with `-p`, and the run
/// directory that holds the port's socket (`qemu::argv::SAMPLER_SOCKET`).
pub(crate) struct PortPlan {
    pub command: String,
    pub dir: PathBuf,
}

/// What the engine asks of a running guest after boot.
pub(crate) trait GuestOps: Send + Sync {
    /// Runs `command` in the guest's shell within `timeout`, or until the
    /// guest is lost.
    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> BoxFuture<'a, Result<ExecOutput, GuestError>>;
    /// Writes `data` to `remote` in the guest with `mode`.
    fn upload<'a>(&'a self, remote: &'a Path, data: Vec<u8>, mode: u32, timeout: Duration) -> BoxFuture<'a, Result<(), GuestError>>;
    /// Ends when the guest is lost (panicked, exited), with why; never
    /// while it runs.
    fn lost(&self) -> BoxFuture<'static, GuestLost>;
    /// A session of its own for a long command (the workload).
    fn session(&self, timeout: Duration) -> BoxFuture<'_, Result<Arc<dyn LongSession>, GuestError>>;
    /// The sampler's reader of the guest.
    fn capture(&self, plan: CapturePlan) -> BoxFuture<'_, Result<Box<dyn Capture>, GuestError>>;
    /// Turns the balloon's statistics on (every `secs`).
    fn enable_balloon_stats(&self, secs: u64) -> BoxFuture<'_, Result<(), String>>;
    /// The balloon's statistics as QMP gives them.
    fn balloon_stats(&self) -> BoxFuture<'_, Result<serde_json::Value, String>>;
    /// Whether the guest has sent this QMP event (`GUEST_PANICKED`, …).
    fn seen(&self, event: &str) -> bool;
    /// Whether QEMU has exited.
    fn exited(&self) -> bool;
    /// How far the console has been read (where a dump's reader of the
    /// capture kernel's lines starts).
    fn console_read(&self) -> u64;
    /// An NMI from the host.
    fn inject_nmi(&self) -> BoxFuture<'_, ()>;
    /// Pauses the guest's CPUs (before a host dump of a guest that did not
    /// pause by itself).
    fn pause(&self) -> BoxFuture<'_, ()>;
    /// Writes the guest's memory to `path` as an ELF vmcore (QMP
    /// `dump-guest-memory`).
    fn dump_memory<'a>(&'a self, path: &'a Path, timeout: Duration) -> BoxFuture<'a, Result<(), String>>;
    /// Stops the guest; it is lost to every holder from then on.
    fn shutdown(&self) -> BoxFuture<'_, Stopped>;
}

/// Runs `op` until it ends or the guest is lost, whichever is first (a
/// loss already seen wins).
pub(crate) async fn race<F: Future>(guest: &dyn GuestOps, op: F) -> Result<F::Output, GuestLost> {
    let lost = guest.lost();
    tokio::select! {
        biased;
        l = lost => Err(l),
        out = op => Ok(out),
    }
}
