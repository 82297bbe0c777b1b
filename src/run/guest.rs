//! The guest seam: what the engine asks of a guest once it is up. Run a
//! command, upload a file, take a sample, run the workload on a session of
//! its own, watch for the guest's loss, dump it from the host, stop it.
//! [`GuestOps`] is implemented by [`Guest`] (QEMU, QMP, console and SSH)
//! and, in the unit tests, by a scripted in-memory guest
//! (`run::testing::Scripted`), so the phases after boot (setup, modules,
//! workload and sampling, the decision, the dump, the report) run without
//! QEMU. The boot phases (`prepare`, `boot`, `restore`, `start`) stay on
//! the concrete [`Guest`]: they are QEMU's own business.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::sampler::{SshCapture, Stream};
use crate::outcome::event::Events;
use crate::vm::{ExecOutput, Guest, GuestError, GuestLost, SshError, Stopped};

/// A command on a session of its own, for as long as it takes (the
/// workload's exec lasts the whole phase).
pub(crate) trait LongSession: Send + Sync {
    fn exec(self: Arc<Self>, command: String, timeout: Duration) -> BoxFuture<'static, Result<ExecOutput, SshError>>;
}

/// An SSH session's exec blocks: on a blocking thread of its own.
impl LongSession for crate::vm::GuestSession {
    fn exec(self: Arc<Self>, command: String, timeout: Duration) -> BoxFuture<'static, Result<ExecOutput, SshError>> {
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || crate::vm::GuestSession::exec(&self, &command, timeout)).await {
                Ok(r) => r,
                Err(e) => Err(SshError::Read { command: "(the session's thread)".into(), source: std::io::Error::other(e.to_string()) }),
            }
        })
    }
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
    pub stream: Option<Stream>,
    pub events: Events,
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

impl GuestOps for Guest {
    fn exec<'a>(&'a self, command: &'a str, timeout: Duration) -> BoxFuture<'a, Result<ExecOutput, GuestError>> {
        Box::pin(Guest::exec(self, command, timeout))
    }

    fn upload<'a>(&'a self, remote: &'a Path, data: Vec<u8>, mode: u32, timeout: Duration) -> BoxFuture<'a, Result<(), GuestError>> {
        Box::pin(Guest::upload(self, remote, data, mode, timeout))
    }

    fn lost(&self) -> BoxFuture<'static, GuestLost> {
        let g = self.clone();
        Box::pin(async move {
            match g.wait(std::future::pending::<()>()).await {
                Err(lost) => lost,
                Ok(()) => unreachable!("a pending future does not end"),
            }
        })
    }

    fn session(&self, timeout: Duration) -> BoxFuture<'_, Result<Arc<dyn LongSession>, GuestError>> {
        Box::pin(async move { self.connect(timeout).await.map(|s| s as Arc<dyn LongSession>) })
    }

    fn capture(&self, plan: CapturePlan) -> BoxFuture<'_, Result<Box<dyn Capture>, GuestError>> {
        Box::pin(async move {
            let control = self.control().await?;
            Ok(Box::new(SshCapture::new(self.clone(), plan, control)) as Box<dyn Capture>)
        })
    }

    fn enable_balloon_stats(&self, secs: u64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move { self.qmp().enable_balloon_stats(secs).await.map_err(|e| e.to_string()) })
    }

    fn balloon_stats(&self) -> BoxFuture<'_, Result<serde_json::Value, String>> {
        Box::pin(async move { self.qmp().balloon_stats().await.map_err(|e| e.to_string()) })
    }

    fn seen(&self, event: &str) -> bool {
        Guest::seen(self, event)
    }

    fn exited(&self) -> bool {
        Guest::exited(self).is_some()
    }

    fn console_read(&self) -> u64 {
        self.console().bytes_read()
    }

    fn inject_nmi(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.qmp().inject_nmi().await;
        })
    }

    fn pause(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.qmp().stop().await;
        })
    }

    fn dump_memory<'a>(&'a self, path: &'a Path, timeout: Duration) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.qmp().dump_guest_memory(path, timeout).await.map_err(|e| e.to_string()) })
    }

    fn shutdown(&self) -> BoxFuture<'_, Stopped> {
        Box::pin(self.clone().shutdown())
    }
}
