//! What ends a wait on the guest. Three watchers feed one signal: QEMU's
//! process exiting (its pidfd turns readable), the QMP events that end the
//! guest (`GUEST_PANICKED`, `GUEST_CRASHLOADED`, `SHUTDOWN`, and the QMP
//! socket closing), and the kernel's panic line on the console (see
//! [`super::console`]). [`super::Guest::wait`] races every operation on the
//! guest against that signal; when it fires, what the watchers saw becomes
//! a [`GuestLost`]: the panic line, the QMP event, QEMU's exit status.

use std::fmt;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::qmp::QmpEvent;

/// What the watchers have seen so far. Each field is set once, by its
/// watcher; the first one set ends every wait.
#[derive(Debug, Clone, Default)]
pub(crate) struct Signals {
    /// The first QMP event that ends the guest: its name and why.
    pub event: Option<(String, String)>,
    /// QMP's event stream ended: its socket closed.
    pub qmp_closed: bool,
    /// QEMU's process exited (or was stopped by kernlab).
    pub exited: bool,
    /// The kernel's panic line on the console.
    pub panic: Option<String>,
}

impl Signals {
    pub fn fired(&self) -> bool {
        self.event.is_some() || self.qmp_closed || self.exited || self.panic.is_some()
    }
}

/// Sends `reason` on the QMP event that ends the guest, if `name` is one.
/// A panic is reported by pvpanic (`GUEST_PANICKED`, or
/// `GUEST_CRASHLOADED` when kdump took over); `SHUTDOWN` is QEMU going
/// away, which with `-no-reboot` includes the reset after `panic=-1`.
pub(crate) fn fatal_event(ev: &QmpEvent) -> Option<String> {
    match ev.name.as_str() {
        "GUEST_PANICKED" => Some("the guest kernel panicked (QMP GUEST_PANICKED)".to_string()),
        "GUEST_CRASHLOADED" => Some("the guest kernel panicked into kdump (QMP GUEST_CRASHLOADED)".to_string()),
        "SHUTDOWN" => Some(format!("QEMU shut down (QMP SHUTDOWN {})", ev.data)),
        _ => None,
    }
}

/// Why the guest can no longer be driven, for the caller to act on: an
/// error for most phases, the expected start of the dump path for labs
/// whose panics become vmcores.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestLost {
    /// The kernel's panic line (`Kernel panic - not syncing: …`), when it
    /// printed one.
    pub panic: Option<String>,
    /// The QMP event that ended the guest (`GUEST_PANICKED`, `SHUTDOWN`, …)
    /// and its reason.
    pub event: Option<(String, String)>,
    /// QEMU's exit status, when it has exited.
    pub exit: Option<String>,
    /// QMP's socket closed without an event saying why.
    pub qmp_closed: bool,
}

impl GuestLost {
    /// What QEMU said or did, without the panic line.
    pub fn cause(&self) -> String {
        let mut parts = Vec::new();
        if let Some((_, reason)) = &self.event {
            parts.push(reason.clone());
        }
        match &self.exit {
            Some(st) => parts.push(format!("QEMU exited ({st})")),
            None if self.qmp_closed && self.event.is_none() => {
                parts.push("QEMU's QMP connection closed: QEMU exited or was killed".to_string())
            }
            None => {}
        }
        parts.join("; ")
    }

    /// The name of the QMP event that ended the guest, if one did.
    pub fn event_name(&self) -> Option<&str> {
        self.event.as_ref().map(|(n, _)| n.as_str())
    }
}

impl fmt::Display for GuestLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = self.cause();
        match &self.panic {
            // pvpanic's own words say it panicked (and whether into kdump).
            Some(line) if matches!(self.event_name(), Some("GUEST_PANICKED" | "GUEST_CRASHLOADED")) => write!(f, "{cause}: {line}"),
            Some(line) if cause.is_empty() => write!(f, "the guest kernel panicked: {line}"),
            Some(line) => write!(f, "the guest kernel panicked: {line} (then: {cause})"),
            None if cause.is_empty() => f.write_str("the guest was lost"),
            None => f.write_str(&cause),
        }
    }
}

impl std::error::Error for GuestLost {}

/// What to do with each QMP event besides watching it (the run logs it).
pub(crate) type OnEvent = Box<dyn Fn(QmpEvent) + Send + Sync>;

/// Passes QMP events on, remembers their names, and raises the signal on
/// an event that ends the guest, and when the stream ends (QEMU's QMP
/// socket closed: QEMU exited or was killed).
pub(crate) fn spawn_router(
    mut rx: mpsc::UnboundedReceiver<QmpEvent>,
    on_event: OnEvent,
    signals: watch::Sender<Signals>,
    seen: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            seen.lock().unwrap().push(ev.name.clone());
            let fatal = fatal_event(&ev).map(|reason| (ev.name.clone(), reason));
            on_event(ev);
            if let Some(f) = fatal {
                signals.send_if_modified(|s| s.event.is_none() && s.event.replace(f).is_none());
            }
        }
        signals.send_if_modified(|s| !std::mem::replace(&mut s.qmp_closed, true));
    })
}

/// Raises the signal when QEMU's process `pid` exits. The pidfd turns
/// readable at the exit without reaping the child, so the owner of the
/// `Qemu` still reaps it and reads its status.
pub(crate) fn spawn_exit_watch(pid: i32, signals: watch::Sender<Signals>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        exited(pid).await;
        signals.send_if_modified(|s| !std::mem::replace(&mut s.exited, true));
    })
}

async fn exited(pid: i32) {
    // SAFETY: the AsyncFd owns the pidfd, which stays open and the same
    // until it is dropped.
    let registered = pidfd(pid).and_then(|fd| unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(Into::into));
    match registered {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(e) => {
            // A kernel without pidfd_open (before 5.3): look at the process
            // ten times a second instead.
            tracing::debug!("no pidfd for QEMU {pid} ({e}); polling its state");
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (or -1), which is owned by nothing else.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(panic: Option<&str>, event: Option<(&str, &str)>, exit: Option<&str>) -> GuestLost {
        GuestLost {
            panic: panic.map(str::to_string),
            event: event.map(|(n, r)| (n.to_string(), r.to_string())),
            exit: exit.map(str::to_string),
            qmp_closed: exit.is_some(),
        }
    }

    #[test]
    fn the_reason_names_the_panic_line_first_and_what_qemu_did() {
        let line = "Kernel panic - not syncing: kernlab test: panic at insmod";
        let shutdown = ("SHUTDOWN", "QEMU shut down (QMP SHUTDOWN {\"guest\":true,\"reason\":\"guest-reset\"})");
        assert_eq!(
            lost(Some(line), Some(shutdown), Some("exit status: 0")).to_string(),
            format!("the guest kernel panicked: {line} (then: {}; QEMU exited (exit status: 0))", shutdown.1)
        );
        // pvpanic's event says how; the line says why.
        let kdump = ("GUEST_CRASHLOADED", "the guest kernel panicked into kdump (QMP GUEST_CRASHLOADED)");
        assert_eq!(lost(Some("Kernel panic - not syncing: Out of memory"), Some(kdump), None).to_string(), format!("{}: Kernel panic - not syncing: Out of memory", kdump.1));
        assert_eq!(lost(Some(line), None, None).to_string(), format!("the guest kernel panicked: {line}"));
        assert_eq!(lost(None, None, Some("signal: 9 (SIGKILL)")).to_string(), "QEMU exited (signal: 9 (SIGKILL))");
        let closed = GuestLost { panic: None, event: None, exit: None, qmp_closed: true };
        assert!(closed.to_string().contains("QMP connection closed"));
    }

    #[test]
    fn only_events_that_end_the_guest_are_fatal() {
        let ev = |name: &str| QmpEvent { name: name.into(), data: serde_json::json!({}) };
        assert!(fatal_event(&ev("GUEST_PANICKED")).unwrap().contains("panicked"));
        assert!(fatal_event(&ev("GUEST_CRASHLOADED")).unwrap().contains("kdump"));
        assert!(fatal_event(&ev("SHUTDOWN")).unwrap().contains("shut down"));
        for name in ["STOP", "RESUME", "BALLOON_CHANGE", "MIGRATION"] {
            assert_eq!(fatal_event(&ev(name)), None, "{name}");
        }
    }

    #[tokio::test]
    async fn the_exit_of_a_child_is_seen_without_reaping_it() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let (tx, mut rx) = watch::channel(Signals::default());
        let _w = spawn_exit_watch(child.id() as i32, tx);
        let t = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.exited)).await.unwrap().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        // Still ours to reap, with its status.
        assert!(child.try_wait().unwrap().unwrap().success());
    }
}
