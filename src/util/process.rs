//! Every child process kernlab starts is owned the same way: it leads its
//! own process group (a kill reaches whatever it forked), dies with kernlab
//! (`PR_SET_PDEATHSIG`, so even a `kill -9` of kernlab leaves nothing
//! behind), and sits in a process-wide registry from spawn until it is
//! reaped, so a second Ctrl-C kills every one at once ([`kill_all`]). Host
//! tools run through [`super::tool`], QEMU through `qemu::process`; both
//! hold their child in a [`Group`].
//!
//! Exit is watched through a pidfd, which becomes readable when the child
//! exits but before anyone reaps it. The group is signalled only while its
//! leader is unreaped (a zombie still holds the pid), and leaves the
//! registry before it is reaped, so no kill can reach a recycled pid.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{kill_process_group, pidfd_open, Pid, PidfdFlags, Signal};

static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILLs every process group this process started and has not reaped:
/// QEMUs and host tools alike. Safe to call from a signal-handling task.
pub fn kill_all() {
    if let Ok(groups) = LIVE_GROUPS.lock() {
        for pgid in groups.iter() {
            if let Some(pid) = Pid::from_raw(*pgid) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
    }
}

/// In the child, between fork and exec: die with kernlab, whatever kills it.
fn die_with_parent() -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(io::Error::from)
}

/// Makes the child of `cmd` lead a new process group and die with kernlab.
pub fn own_std(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: the hook only makes one system call (prctl), which is
    // async-signal-safe, and touches no memory of the parent.
    unsafe { cmd.pre_exec(die_with_parent) };
}

/// [`own_std`] for a tokio command.
pub fn own_tokio(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    // SAFETY: as in `own_std`.
    unsafe { cmd.pre_exec(die_with_parent) };
}

/// A spawned child's process group: registered for [`kill_all`] and
/// watched through a pidfd until [`Group::release`], which the owner calls
/// once the leader has exited and before it reaps it.
#[derive(Debug)]
pub struct Group {
    pid: Pid,
    pidfd: OwnedFd,
    registered: bool,
}

impl Group {
    /// Registers the group of the just-spawned leader `pid`.
    pub fn register(pid: u32) -> io::Result<Group> {
        let pid = i32::try_from(pid).ok().and_then(Pid::from_raw).ok_or_else(|| io::Error::other(format!("bad child pid {pid}")))?;
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid.as_raw_nonzero().get());
        Ok(Group { pid, pidfd, registered: true })
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// The pidfd: readable once the leader has exited (for async waits).
    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    /// Whether the leader has exited; never blocks.
    pub fn exited(&self) -> bool {
        self.wait_exited(Duration::ZERO)
    }

    /// Waits up to `timeout` for the leader to exit; true if it has.
    pub fn wait_exited(&self, timeout: Duration) -> bool {
        wait_pidfd(&self.pidfd, timeout)
    }

    /// Waits up to `timeout` for the leader to exit, on tokio's blocking
    /// pool; true if it has.
    pub async fn wait_exited_async(&self, timeout: Duration) -> bool {
        if self.exited() {
            return true;
        }
        match self.pidfd.try_clone() {
            Ok(fd) => tokio::task::spawn_blocking(move || wait_pidfd(&fd, timeout)).await.unwrap_or(false),
            Err(_) => {
                tokio::time::sleep(timeout).await;
                self.exited()
            }
        }
    }

    /// SIGKILL to the whole group. Only while the leader is unreaped, which
    /// owning the `Group` (released before reaping) guarantees.
    pub fn kill(&self) {
        if self.registered {
            let _ = kill_process_group(self.pid, Signal::KILL);
        }
    }

    /// The leader has exited: kill what it left in its group, and leave the
    /// registry. The owner reaps the leader afterwards.
    pub fn release(&mut self) {
        if self.registered {
            let _ = kill_process_group(self.pid, Signal::KILL);
            LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.pid());
            self.registered = false;
        }
    }
}

impl Drop for Group {
    /// An owner that gives up its child unreaped (an error path, a dropped
    /// future) kills the group; the reaping is then the child handle's (std
    /// or tokio, whose own drop it is).
    fn drop(&mut self) {
        self.release();
    }
}

/// Waits up to `timeout` for the process behind `pidfd` to exit; true if
/// it has (it stays readable from exit on, reaped or not).
pub fn wait_pidfd(pidfd: &impl AsFd, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ts = Timespec { tv_sec: left.as_secs() as _, tv_nsec: left.subsec_nanos() as _ };
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            // A wakeup before the deadline: wait on.
            Ok(_) if Instant::now() < end => continue,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            // A pidfd that cannot be polled (never seen): not known to have
            // exited, so the caller's deadline handling applies.
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_registered_until_released_and_kill_reaches_it() {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        own_std(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut g = Group::register(child.id()).unwrap();
        assert!(LIVE_GROUPS.lock().unwrap().contains(&g.pid()));
        assert!(!g.exited());
        g.kill();
        assert!(g.wait_exited(Duration::from_secs(10)), "SIGKILL to the group ends sleep");
        g.release();
        assert!(!LIVE_GROUPS.lock().unwrap().contains(&(child.id() as i32)));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }
}
