//! The QEMU child. It runs in its own process group, dies with kernlab
//! (`PR_SET_PDEATHSIG`, so even a `kill -9` of kernlab leaves no QEMU), is
//! registered in a process-wide table so a second Ctrl-C can kill every VM at
//! once, and is killed by process group on drop. Orderly teardown (QMP
//! `quit`, grace, SIGKILL, reap) is driven by the run; this type gives it the
//! pieces.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::util::{fsx, tool};

static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILLs every QEMU process group this process started and has not reaped.
/// Safe to call from a signal-handling task.
pub fn kill_all() {
    if let Ok(groups) = LIVE_GROUPS.lock() {
        for pgid in groups.iter() {
            unsafe { libc::killpg(*pgid, libc::SIGKILL) };
        }
    }
}

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
    pid: i32,
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
        cmd.args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        unsafe {
            cmd.pre_exec(|| {
                // Die with kernlab, whatever kills it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = PathBuf::from(&argv[0]);
        let child = cmd.spawn().map_err(|source| QemuError::Spawn {
            hint: tool::package_hint("qemu-system-x86_64"),
            program,
            source,
        })?;
        let pid = child.id().expect("a just-spawned child has a pid") as i32;
        LIVE_GROUPS.lock().unwrap().insert(pid);
        Ok(Qemu { child, pid, exit: None, log: log.into() })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// QEMU's own output so far (for errors).
    pub fn log_tail(&self, lines: usize) -> String {
        fsx::tail_lines(&self.log, lines)
    }

    /// The exit status if QEMU has exited; never blocks.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.reaped(st);
            }
        }
        self.exit
    }

    /// Waits up to `grace` for QEMU to exit by itself.
    pub async fn wait_exit(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exit.is_some() {
            return self.exit;
        }
        if let Ok(Ok(st)) = tokio::time::timeout(grace, self.child.wait()).await {
            self.reaped(st);
        }
        self.exit
    }

    /// SIGKILL to the whole process group, then reap.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
            if let Ok(st) = self.child.wait().await {
                self.reaped(st);
            }
        }
        self.exit
    }

    fn reaped(&mut self, st: ExitStatus) {
        self.exit = Some(st);
        // Anything QEMU left in its group (helpers) goes too.
        unsafe { libc::killpg(self.pid, libc::SIGKILL) };
        LIVE_GROUPS.lock().unwrap().remove(&self.pid);
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.exit.is_none() {
            unsafe { libc::killpg(self.pid, libc::SIGKILL) };
            // Reap synchronously so no zombie outlives the Qemu value.
            let mut status = 0;
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
            LIVE_GROUPS.lock().unwrap().remove(&self.pid);
        }
    }
}

/// The first line of `qemu --version`, for the manifest.
pub fn qemu_version(qemu: &Path) -> Result<String, tool::ToolError> {
    let out = tool::run(std::process::Command::new(qemu).arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

/// A free TCP port on 127.0.0.1. Another process can take it before QEMU
/// binds it; the caller detects QEMU's "could not set up host forwarding"
/// and retries with a new port.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
