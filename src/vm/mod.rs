//! A running guest: the QEMU process, its QMP connection, its console and
//! the SSH sessions to it, owned together by one [`Guest`]. Every operation
//! on the guest goes through [`Guest::wait`], which races it against what
//! ends the guest (QEMU exiting, a fatal QMP event, the kernel's panic line
//! on the console), so a guest that dies ends the wait at once with the
//! reason instead of a timeout. ssh2 is blocking: its calls run on
//! blocking threads, never on the runtime's workers. Teardown is
//! [`Guest::shutdown`]: QMP `quit`, a grace period, SIGKILL, reap.

pub mod console;
pub mod ssh;
pub mod state;
pub mod wait;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

pub use console::{Console, ConsoleState};
pub use ssh::{wait_for_banner, Connector, ExecOutput, GuestSession, GuestStream, SshError};
pub use state::SaveError;
pub use wait::GuestLost;

use crate::qemu::Qemu;
use crate::qmp::{Qmp, QmpError, QmpEvent};
use wait::Signals;

/// An SSH session to the guest, shared with the blocking thread that uses it.
pub type Session = Arc<GuestSession>;

/// Why an operation on the guest did not give its result.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest is gone (or paused by its panic): the reason.
    #[error("{0}")]
    Lost(GuestLost),
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The blocking thread of the operation failed.
    #[error("internal task failed: {0}")]
    Join(String),
}

/// Why a just-started QEMU did not become a guest.
pub enum AttachFailure {
    /// QEMU exited before QMP answered (its status, if it was reaped, and
    /// the end of its own log, which says why).
    Exited { status: Option<ExitStatus>, log: String },
    /// QMP failed while QEMU runs on: the caller stops it.
    Qmp(QmpError, Box<Qemu>),
}

/// The files of a VM in its directory (QEMU's working directory).
pub struct Files<'a> {
    pub dir: &'a Path,
    /// The QMP socket's name in `dir`.
    pub qmp_socket: &'a str,
    pub console: PathBuf,
}

/// How the guest was stopped, for the teardown event.
#[derive(Debug, Clone, PartialEq)]
pub struct Stopped {
    /// `exit` (it had exited), `qmp-quit` or `sigkill`.
    pub how: &'static str,
    pub secs: f64,
}

/// One running guest. Clones share it: the sampler and the dump path hold
/// one while the run holds the one it shuts down.
#[derive(Clone)]
pub struct Guest {
    inner: Arc<Inner>,
}

struct Inner {
    pid: i32,
    started: Instant,
    /// Taken by [`Guest::shutdown`].
    qemu: Mutex<Option<Qemu>>,
    qmp: Qmp,
    console: Console,
    signals: watch::Sender<Signals>,
    /// Names of the QMP events seen so far, in order.
    seen: Arc<Mutex<Vec<String>>>,
    ssh: Connector,
    /// The session every one-off command uses, opened on first use.
    control: Mutex<Option<Session>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How long the signals may take to agree once one of them fired: a panic
/// line is on the console before pvpanic's event and before QEMU exits,
/// and the other side follows within milliseconds.
const SETTLE: Duration = Duration::from_millis(500);

/// How long an SSH error waits for a signal that explains it (a session
/// cut by QEMU's exit fails a moment before the exit is seen).
const EXPLAIN: Duration = Duration::from_secs(1);

impl Guest {
    /// Takes over a just-started QEMU: connects QMP while watching that
    /// QEMU is still there, then starts the watchers (QMP events, QEMU's
    /// exit, the console). `on_event` gets every QMP event as it arrives.
    pub async fn attach(
        mut qemu: Qemu,
        files: Files<'_>,
        started: Instant,
        ssh: Connector,
        on_event: impl Fn(QmpEvent) + Send + Sync + 'static,
    ) -> Result<Guest, AttachFailure> {
        let (tx, rx) = mpsc::unbounded_channel();
        let connect = Qmp::connect(files.dir, files.qmp_socket, Duration::from_secs(10), tx);
        tokio::pin!(connect);
        let qmp = loop {
            tokio::select! {
                r = &mut connect => break Some(r),
                _ = tokio::time::sleep(Duration::from_millis(25)) => {
                    if qemu.try_exited().is_some() { break None; }
                }
            }
        };
        let qmp = match qmp {
            Some(Ok(qmp)) => qmp,
            other => {
                // A QMP failure is often QEMU dying under it (a bad kernel
                // makes it exit right after opening the socket): give it a
                // moment to exit, and report the exit, which says more.
                let status = qemu.wait_exit(Duration::from_millis(1500)).await;
                if status.is_none() {
                    if let Some(Err(e)) = other {
                        return Err(AttachFailure::Qmp(e, Box::new(qemu)));
                    }
                }
                return Err(AttachFailure::Exited { status, log: qemu.log_tail(10) });
            }
        };
        tracing::debug!("QMP connected {:.3} s after QEMU start", started.elapsed().as_secs_f64());
        let pid = qemu.pid();
        let (signals, _) = watch::channel(Signals::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = vec![
            wait::spawn_router(rx, Box::new(on_event), signals.clone(), seen.clone()),
            wait::spawn_exit_watch(pid, signals.clone()),
        ];
        let console = Console::watch(&files.console, started, signals.clone());
        let inner = Inner { pid, started, qemu: Mutex::new(Some(qemu)), qmp, console, signals, seen, ssh, control: Mutex::new(None), tasks };
        Ok(Guest { inner: Arc::new(inner) })
    }

    pub fn pid(&self) -> i32 {
        self.inner.pid
    }

    /// How to reach the guest's sshd: its address and the run's keys.
    pub fn connector(&self) -> &Connector {
        &self.inner.ssh
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    pub fn qmp(&self) -> &Qmp {
        &self.inner.qmp
    }

    pub fn console(&self) -> &Console {
        &self.inner.console
    }

    /// Whether QMP has sent an event of this name.
    pub fn seen(&self, event: &str) -> bool {
        self.inner.seen.lock().unwrap().iter().any(|n| n == event)
    }

    /// QEMU's exit status if it has exited; never blocks.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.inner.qemu.lock().unwrap().as_mut().and_then(Qemu::try_exited)
    }

    /// Why the guest is gone, if it is, from what the watchers saw so far.
    pub fn lost(&self) -> Option<GuestLost> {
        self.inner.console.refresh();
        let s = self.inner.signals.borrow().clone();
        if !s.fired() {
            return None;
        }
        let exit = match self.inner.qemu.lock().unwrap().as_mut() {
            Some(q) => q.try_exited().map(|st| st.to_string()),
            None => Some("stopped by kernlab".to_string()),
        };
        Some(GuestLost { panic: s.panic, event: s.event, exit, qmp_closed: s.qmp_closed })
    }

    /// Runs `op` until it ends or the guest is lost, whichever is first.
    pub async fn wait<F: Future>(&self, op: F) -> Result<F::Output, GuestLost> {
        let mut signals = self.inner.signals.subscribe();
        // The receiver's guard is dropped before anything else is awaited.
        let fired = async move { signals.wait_for(Signals::fired).await.is_ok() };
        tokio::select! {
            biased;
            true = fired => Err(self.settled().await),
            out = op => Ok(out),
        }
    }

    /// Whether the guest is lost within `within` (the signal may trail
    /// what made an operation fail).
    pub async fn lost_within(&self, within: Duration) -> Option<GuestLost> {
        let mut signals = self.inner.signals.subscribe();
        let fired = async move { signals.wait_for(Signals::fired).await.is_ok() };
        match tokio::time::timeout(within, fired).await {
            Ok(true) => Some(self.settled().await),
            _ => None,
        }
    }

    /// The loss, once its signals agree: the kernel's panic line and what
    /// QEMU did next, each seen by its own watcher a few milliseconds
    /// apart. Once QEMU has exited its console is complete, so nothing
    /// more is waited for.
    async fn settled(&self) -> GuestLost {
        let deadline = Instant::now() + SETTLE;
        loop {
            let exited = self.exited().is_some();
            let lost = self.lost().expect("called once a signal fired");
            let qemu_side = lost.event.is_some() || lost.exit.is_some() || lost.qmp_closed;
            if exited || (lost.panic.is_some() && qemu_side) || Instant::now() >= deadline {
                return lost;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Runs a blocking SSH call on a blocking thread, raced against the
    /// guest's loss. With `explain`, an SSH error that a loss explains
    /// within [`EXPLAIN`] is the loss.
    async fn ssh<T: Send + 'static>(&self, explain: bool, call: impl FnOnce() -> Result<T, SshError> + Send + 'static) -> Result<T, GuestError> {
        let res = match self.wait(tokio::task::spawn_blocking(call)).await {
            Err(lost) => return Err(GuestError::Lost(lost)),
            Ok(Err(join)) => return Err(GuestError::Join(join.to_string())),
            Ok(Ok(r)) => r,
        };
        match res {
            Ok(v) => Ok(v),
            Err(e) if explain => match self.lost_within(EXPLAIN).await {
                Some(lost) => Err(GuestError::Lost(lost)),
                None => Err(GuestError::Ssh(e)),
            },
            Err(e) => Err(GuestError::Ssh(e)),
        }
    }

    /// A new SSH session, each step within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<Session, GuestError> {
        let c = self.inner.ssh.clone();
        self.ssh(true, move || c.connect(timeout)).await.map(Arc::new)
    }

    /// A new SSH session, for a caller inside its own [`Guest::wait`] (the
    /// sampler): a loss ends that wait, and an SSH error comes back at once
    /// (a gap in the samples) rather than after [`EXPLAIN`].
    pub async fn reconnect(&self, timeout: Duration) -> Result<Session, GuestError> {
        let c = self.inner.ssh.clone();
        self.ssh(false, move || c.connect(timeout)).await.map(Arc::new)
    }

    /// [`Guest::exec_on`], for a caller inside its own wait (see
    /// [`Guest::reconnect`]).
    pub async fn probe(&self, s: &Session, command: &str, timeout: Duration) -> Result<ExecOutput, GuestError> {
        let (s, command) = (s.clone(), command.to_string());
        self.ssh(false, move || s.exec(&command, timeout)).await
    }

    /// Starts `command` on a session of its own and reads until `ready`
    /// takes its first frame, for a caller inside its own wait (see
    /// [`Guest::reconnect`]).
    pub async fn open_stream<T: Send + 'static>(
        &self,
        command: &str,
        timeout: Duration,
        ready: impl FnMut(&mut Vec<u8>) -> Option<T> + Send + 'static,
    ) -> Result<(GuestStream, T), GuestError> {
        let (c, command) = (self.inner.ssh.clone(), command.to_string());
        self.ssh(false, move || GuestStream::start(c.connect(timeout)?, &command, timeout, ready)).await
    }

    /// One request on `stream` (see [`GuestStream::request`]), for a caller
    /// inside its own wait. The stream comes back with the frame; on an
    /// error it is dropped (on the blocking thread, as its teardown blocks).
    pub async fn stream_request<T: Send + 'static>(
        &self,
        mut stream: GuestStream,
        request: Vec<u8>,
        timeout: Duration,
        take: impl FnMut(&mut Vec<u8>) -> Option<T> + Send + 'static,
    ) -> Result<(GuestStream, T), GuestError> {
        self.ssh(false, move || stream.request(&request, timeout, take).map(|t| (stream, t))).await
    }

    /// Opens the session one-off commands use, each step within `timeout`.
    pub async fn open_control(&self, timeout: Duration) -> Result<Session, GuestError> {
        let s = self.connect(timeout).await?;
        *self.inner.control.lock().unwrap() = Some(s.clone());
        Ok(s)
    }

    /// The session one-off commands use (opened now if it is not yet).
    pub async fn control(&self) -> Result<Session, GuestError> {
        let existing = self.inner.control.lock().unwrap().clone();
        match existing {
            Some(s) => Ok(s),
            None => self.open_control(Duration::from_secs(20)).await,
        }
    }

    /// Runs `command` in the guest's shell on the control session, within
    /// `timeout`, or until the guest is lost.
    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, GuestError> {
        let s = self.control().await?;
        self.exec_on(&s, command, timeout).await
    }

    /// Runs `command` on session `s`.
    pub async fn exec_on(&self, s: &Session, command: &str, timeout: Duration) -> Result<ExecOutput, GuestError> {
        let (s, command) = (s.clone(), command.to_string());
        self.ssh(true, move || s.exec(&command, timeout)).await
    }

    /// Writes `data` to `remote` in the guest with `mode`.
    pub async fn upload(&self, remote: &Path, data: Vec<u8>, mode: u32, timeout: Duration) -> Result<(), GuestError> {
        let s = self.control().await?;
        let remote = remote.to_path_buf();
        self.ssh(true, move || s.upload(&remote, &data, mode, timeout)).await
    }

    /// Saves the running VM's state into `state` (see [`state::save`]).
    pub async fn save_state(&self, run_dir: &Path, state: &Path, disks: &[(std::path::PathBuf, std::path::PathBuf)]) -> Result<f64, SaveError> {
        state::save(&self.inner.qmp, run_dir, state, disks).await
    }

    /// Stops QEMU: at once if it has exited, else QMP `quit` and a grace
    /// period, else SIGKILL to its process group; then reaps it. Clones of
    /// this guest see it as lost from then on.
    pub async fn shutdown(self) -> Stopped {
        let t = Instant::now();
        let qemu = self.inner.qemu.lock().unwrap().take();
        let Some(mut q) = qemu else { return Stopped { how: "exit", secs: 0.0 } };
        let how = if q.try_exited().is_some() {
            "exit"
        } else {
            let asked = tokio::time::timeout(Duration::from_secs(2), self.inner.qmp.quit()).await.is_ok();
            if asked && q.wait_exit(Duration::from_secs(3)).await.is_some() {
                "qmp-quit"
            } else {
                q.kill().await;
                "sigkill"
            }
        };
        drop(q);
        self.inner.signals.send_if_modified(|s| !std::mem::replace(&mut s.exited, true));
        for task in &self.inner.tasks {
            task.abort();
        }
        self.inner.console.stop();
        Stopped { how, secs: t.elapsed().as_secs_f64() }
    }
}
