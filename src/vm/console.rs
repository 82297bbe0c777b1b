//! The guest's serial console as it grows. QEMU appends it to a file; a
//! task reads what is new from the last offset whenever the file changes
//! (inotify), at most once per tick (10 ms while the guest boots, 50 ms
//! once its sshd is up), and publishes what the run waits for: the lines
//! the guest's /init prints (it runs, its sshd started) and the kernel's
//! panic line, which also ends every wait on the guest (see
//! [`super::wait`]). A console that says nothing costs no wakeups but one
//! every few seconds, in case a change was not notified.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::wait::Signals;

/// Lines the guest's /init prints (images/minimal/init): first thing, and
/// after starting dropbear.
pub const INIT_MARKER: &str = "kernlab: init running";
pub const SSHD_MARKER: &str = "kernlab: sshd started";

/// What the console said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsoleState {
    /// Bytes read.
    pub bytes: u64,
    /// QEMU start → the guest's /init running (the boot floor), seconds.
    pub init: Option<f64>,
    /// The guest's sshd is started: from now on probing its port cannot
    /// hang in QEMU's user-mode network.
    pub sshd: bool,
    /// The kernel's panic line.
    pub panic: Option<String>,
}

/// The kernel's panic line in one console line (`Kernel panic - not
/// syncing: …`), without the printk timestamp.
pub fn panic_line(line: &str) -> Option<String> {
    let at = line.find("Kernel panic - not syncing")?;
    Some(line[at..].trim().to_string())
}

/// The first panic line in console text.
pub fn panic_in(console: &str) -> Option<String> {
    console.lines().find_map(panic_line)
}

/// Reads a growing file line by line from an offset: each call returns the
/// lines completed since the last one. A file that does not exist yet is
/// opened when it does.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    pub fn at(path: &Path, offset: u64) -> Tail {
        Tail { path: path.to_path_buf(), file: None, offset, partial: Vec::new() }
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The lines completed since the last call (without their line ends).
    pub fn lines(&mut self) -> Vec<String> {
        if self.file.is_none() {
            use std::io::Seek;
            let Ok(mut f) = File::open(&self.path) else { return Vec::new() };
            if f.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
                return Vec::new();
            }
            self.file = Some(f);
        }
        let Some(f) = self.file.as_mut() else { return Vec::new() };
        let before = self.partial.len();
        match f.read_to_end(&mut self.partial) {
            Ok(n) => self.offset += n as u64,
            Err(e) => tracing::debug!("reading {}: {e}", self.path.display()),
        }
        if self.partial.len() == before {
            return Vec::new();
        }
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else { return Vec::new() };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&done).lines().map(|l| l.trim_end_matches('\r').to_string()).collect()
    }
}

/// The console watcher of one guest.
pub struct Console {
    path: PathBuf,
    reader: Arc<Reader>,
    task: tokio::task::JoinHandle<()>,
}

/// The tail and what it found, shared by the watcher's task and
/// [`Console::refresh`].
struct Reader {
    tail: Mutex<Tail>,
    state: watch::Sender<ConsoleState>,
    signals: watch::Sender<Signals>,
    started: Instant,
}

impl Reader {
    fn poll(&self) {
        // Held to the end, so that two polls publish in the order they read.
        let mut tail = self.tail.lock().unwrap();
        let lines = tail.lines();
        let bytes = tail.offset();
        let at = self.started.elapsed().as_secs_f64();
        let mut panic = None;
        self.state.send_if_modified(|s| {
            let mut changed = s.bytes != bytes;
            s.bytes = bytes;
            for l in &lines {
                if s.init.is_none() && l.contains(INIT_MARKER) {
                    s.init = Some(at);
                    changed = true;
                }
                if !s.sshd && l.contains(SSHD_MARKER) {
                    s.sshd = true;
                    changed = true;
                }
                if s.panic.is_none() {
                    if let Some(p) = panic_line(l) {
                        s.panic = Some(p.clone());
                        panic = Some(p);
                        changed = true;
                    }
                }
            }
            changed
        });
        if let Some(p) = panic {
            self.signals.send_if_modified(|s| s.panic.is_none() && s.panic.replace(p).is_none());
        }
    }
}

/// The shortest time between two reads while the guest boots (its sshd
/// line decides when booting is over), and after: a guest printing fast
/// is read in batches.
const BOOTING_TICK: Duration = Duration::from_millis(10);
const RUNNING_TICK: Duration = Duration::from_millis(50);
/// The longest time between two reads when no change is notified.
const QUIET_READ: Duration = Duration::from_secs(5);

/// An inotify descriptor that turns readable when `path` is written.
fn notifier(path: &Path) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: inotify_init1 returns a new descriptor (or -1) owned by no one else.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just returned by inotify_init1, owned by this value only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), name.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the AsyncFd owns the descriptor, open and the same until dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(Into::into)
}

/// Waits until the file changed (or `QUIET_READ` passed), and consumes
/// the notifications.
async fn changed(fd: &tokio::io::unix::AsyncFd<OwnedFd>) {
    let Ok(Ok(mut ready)) = tokio::time::timeout(QUIET_READ, fd.readable()).await else { return };
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a buffer we own, of its length.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    ready.clear_ready();
}

impl Console {
    /// Starts watching the console file at `path` from its beginning;
    /// `started` is QEMU's start, for the time of the /init line.
    pub(crate) fn watch(path: &Path, started: Instant, signals: watch::Sender<Signals>) -> Console {
        let (state, _) = watch::channel(ConsoleState::default());
        let reader = Arc::new(Reader { tail: Mutex::new(Tail::at(path, 0)), state, signals, started });
        let (r, p) = (reader.clone(), path.to_path_buf());
        let task = tokio::spawn(async move {
            let mut notify = None;
            loop {
                // Armed before the read, so nothing written after it is missed.
                if notify.is_none() {
                    notify = notifier(&p).ok();
                }
                r.poll();
                let tick = if r.state.borrow().sshd { RUNNING_TICK } else { BOOTING_TICK };
                tokio::time::sleep(tick).await;
                if let Some(fd) = &notify {
                    changed(fd).await;
                }
            }
        });
        Console { path: path.to_path_buf(), reader, task }
    }

    /// What the console said so far, updated as it grows.
    pub fn state(&self) -> watch::Receiver<ConsoleState> {
        self.reader.state.subscribe()
    }

    /// Reads what is new now, without waiting for the next tick.
    pub fn refresh(&self) {
        self.reader.poll();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes read so far (where a reader of what comes next starts).
    pub fn bytes_read(&self) -> u64 {
        self.refresh();
        self.reader.state.borrow().bytes
    }

    /// Stops watching (the guest is gone; what was read stays).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_panic_line_is_found_in_the_console() {
        let c = "[    0.78] Node 0 DMA32: 0*4kB\n[    0.79] Kernel panic - not syncing: Out of memory and no killable processes...\n[    0.80] CPU: 0 PID: 1\n";
        assert_eq!(panic_in(c).as_deref(), Some("Kernel panic - not syncing: Out of memory and no killable processes..."));
        assert_eq!(panic_in("kernlab: init running\n"), None);
    }

    #[test]
    fn a_tail_returns_each_completed_line_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        let mut t = Tail::at(&p, 0);
        assert!(t.lines().is_empty(), "no file yet");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).unwrap();
        f.write_all(b"one\r\ntw").unwrap();
        assert_eq!(t.lines(), ["one"]);
        assert!(t.lines().is_empty());
        f.write_all(b"o\nthree\n").unwrap();
        assert_eq!(t.lines(), ["two", "three"]);
        assert_eq!(t.offset(), 15);
        // From an offset: only what comes after it.
        assert_eq!(Tail::at(&p, 9).lines(), ["three"]);
    }

    #[tokio::test]
    async fn the_watcher_sees_the_marks_and_the_panic_as_they_arrive() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        let (signals, mut sig) = watch::channel(Signals::default());
        let console = Console::watch(&p, Instant::now(), signals);
        let mut state = console.state();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).unwrap();
        f.write_all(b"[    1.0] kernlab: init running\n").unwrap();
        let s = tokio::time::timeout(Duration::from_secs(5), state.wait_for(|s| s.init.is_some())).await.unwrap().unwrap().clone();
        assert!(!s.sshd && s.panic.is_none());
        f.write_all(b"kernlab: sshd started\n[    9.1] Kernel panic - not syncing: kernlab test: panic at insmod\n").unwrap();
        let t = Instant::now();
        let s = tokio::time::timeout(Duration::from_secs(5), sig.wait_for(|s| s.panic.is_some())).await.unwrap().unwrap().clone();
        assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
        assert_eq!(s.panic.as_deref(), Some("Kernel panic - not syncing: kernlab test: panic at insmod"));
        assert!(console.state().borrow().sshd);
    }

    /// The watcher reads once a tick and sleeps in between: on a console
    /// that does not change it costs next to no CPU.
    #[test]
    fn the_watcher_does_not_spin() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        std::fs::write(&p, "kernlab: sshd started\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cpu = rt.block_on(async {
            let (signals, _sig) = watch::channel(Signals::default());
            let _console = Console::watch(&p, Instant::now(), signals);
            let before = thread_cpu();
            tokio::time::sleep(Duration::from_secs(2)).await;
            thread_cpu() - before
        });
        // Next to no wakeups on a console that says nothing.
        assert!(cpu < Duration::from_millis(10), "the watcher used {cpu:?} of CPU in 2 s");
        eprintln!("console watcher, quiet console: {cpu:?} of CPU in 2 s");
    }

    /// A console written to every millisecond is read in batches, one read
    /// a tick at most, and every byte is seen.
    #[test]
    fn a_busy_console_is_read_in_batches() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("console.log");
        std::fs::write(&p, "kernlab: sshd started\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (cpu, bytes, want) = rt.block_on(async {
            let (signals, _sig) = watch::channel(Signals::default());
            let console = Console::watch(&p, Instant::now(), signals);
            let writer = {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
                    for i in 0..1000 {
                        writeln!(f, "[    {i}.000] a line").unwrap();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            };
            let before = thread_cpu();
            while !writer.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let cpu = thread_cpu() - before;
            console.refresh();
            let bytes = console.state().borrow().bytes;
            (cpu, bytes, std::fs::metadata(&p).unwrap().len())
        });
        assert_eq!(bytes, want);
        assert!(cpu < Duration::from_millis(100), "the watcher used {cpu:?} of CPU");
        eprintln!("console watcher, 1000 lines in about 1 s: {cpu:?} of CPU");
    }

    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid clock id and a pointer to a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}
