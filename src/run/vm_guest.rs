//! The guest seam's QEMU implementation: [`GuestOps`] for [`Guest`] (its
//! SSH sessions, its QMP, its console, its loss) and the workload's long
//! exec on an SSH session of its own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::guest::{Capture, CapturePlan, GuestOps, LongSession};
use super::sampler::SshCapture;
use crate::vm::{ExecOutput, Guest, GuestError, GuestLost, SshError, Stopped};

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
