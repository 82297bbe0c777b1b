//! The QEMU child. Like every child kernlab starts it is owned through
//! [`crate::util::process`]: its own process group, dead with kernlab
//! (`PR_SET_PDEATHSIG`, so even a `kill -9` of kernlab leaves no QEMU),
//! registered so a second Ctrl-C kills every VM at once ([`kill_all`]), and
//! killed by process group on drop. Orderly teardown (QMP `quit`, grace,
//! SIGKILL, reap) is driven by the run; this type gives it the pieces.
//!
//! tokio's `Child` is the one reaper: exit is seen on the group's pidfd
//! (before reaping), the group is released, then tokio reaps; a `Qemu`
//! dropped unreaped has its group killed and leaves the zombie to tokio's
//! background reaping.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

pub use crate::util::process::kill_all;
use crate::util::process::{self, Group};
use crate::util::{fsx, tool};

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("cannot start QEMU `{}` ({hint})", program.display())]
    Spawn {
        program: PathBuf,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create `{}`", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Qemu {
    child: tokio::process::Child,
    group: Group,
    exit: Option<ExitStatus>,
    log: PathBuf,
}

impl Qemu {
    /// Starts QEMU with `argv` (program first) in `dir`; its stdout and stderr
    /// go to `log` (QEMU's own errors, e.g. a taken port or a bad kernel).
    pub fn spawn(argv: &[OsString], dir: &Path, log: &Path) -> Result<Self, QemuError> {
        let out = fsx::append_private(log).map_err(|source| QemuError::Log { path: log.into(), source })?;
        let err = out.try_clone().map_err(|source| QemuError::Log { path: log.into(), source })?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(dir).stdin(Stdio::null()).stdout(out).stderr(err);
        process::own_tokio(&mut cmd);
        let program = PathBuf::from(&argv[0]);
        let spawn_err = |program: PathBuf| {
            let hint = tool::package_hint(&program.to_string_lossy());
            move |source| QemuError::Spawn { program, hint, source }
        };
        let mut child = cmd.spawn().map_err(spawn_err(program.clone()))?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let group = match Group::register(pid) {
            Ok(g) => g,
            Err(e) => {
                // Not watchable: do not leave it running. tokio reaps it.
                let _ = child.start_kill();
                return Err(spawn_err(program)(e));
            }
        };
        Ok(Qemu { child, group, exit: None, log: log.into() })
    }

    pub fn pid(&self) -> i32 {
        self.group.pid()
    }

    /// QEMU's own output so far (for errors).
    pub fn log_tail(&self, lines: usize) -> String {
        fsx::tail_lines(&self.log, lines)
    }

    /// The exit status if QEMU has exited; never blocks.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() && self.group.exited() {
            self.group.release();
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
            }
        }
        self.exit
    }

    /// Waits up to `grace` for QEMU to exit by itself.
    pub async fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() && self.group.wait_exited_async(grace).await {
            self.reap().await;
        }
        self.exit
    }

    /// SIGKILL to the whole process group, then reap.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.group.kill();
            // SIGKILL ends it at once unless it is stuck in the kernel;
            // the reap below waits for that either way.
            self.group.wait_exited_async(Duration::from_secs(10)).await;
            self.reap().await;
        }
        self.exit
    }

    /// The leader has exited: release its group, then reap it.
    async fn reap(&mut self) {
        self.group.release();
        if let Ok(st) = self.child.wait().await {
            self.exit = Some(st);
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SIGKILL the group and leave the registry; tokio's `Child`,
            // dropped next, reaps the zombie in the background.
            self.group.kill();
            self.group.release();
        }
    }
}

/// The first line of `qemu --version`, for the manifest.
pub fn qemu_version(qemu: &Path) -> Result<String, tool::ToolError> {
    let out = tool::Tool::new(qemu, Duration::from_secs(30)).arg("--version").run()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

/// A free TCP port on 127.0.0.1. Another process can take it before QEMU
/// binds it; the caller detects QEMU's "could not set up host forwarding"
/// and retries with a new port.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
