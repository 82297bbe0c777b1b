//! Running host tools: the one way kernlab starts an external command
//! (`apt-get`, `dpkg-deb`, `depmod`, `make`, `gcc`, `crash`, `mkfs.ext4`,
//! `debugfs`, `ldd`, `dropbearkey`, `qemu --version`, QEMU in the boot
//! bench). Each [`Tool`] has a deadline; its child is owned by
//! [`super::process`] (own process group, registered for the second
//! Ctrl-C, dies with kernlab); past the deadline the whole group is killed
//! and the error names the command and the deadline. stdout and stderr are
//! captured; a failure carries the end of stderr, because "exit status 100"
//! alone tells a user nothing.
//!
//! The calls block; async callers use the `_async` forms, which run them
//! on tokio's blocking pool.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use super::process::{self, Group};

/// Lines of stderr kept in an error.
const TAIL_LINES: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run `{program}` (is it installed? {hint})")]
    Spawn {
        program: String,
        hint: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed with {status}: {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
    #[error("`{command}` did not finish within {}; killed it{}", humantime::format_duration(*deadline), tail_suffix(stderr))]
    Deadline { command: String, deadline: Duration, stderr: String },
    #[error("waiting for `{command}`")]
    Wait {
        command: String,
        #[source]
        source: io::Error,
    },
}

fn tail_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl ToolError {
    /// Whether the command was killed at its deadline.
    pub fn is_deadline(&self) -> bool {
        matches!(self, ToolError::Deadline { .. })
    }
}

/// The Debian package that provides a host tool kernlab runs, for the hint in
/// the error when it is missing.
pub fn package_hint(program: &str) -> String {
    let program = Path::new(program).file_name().and_then(|f| f.to_str()).unwrap_or(program);
    let pkg = match program {
        "apt-get" | "apt-cache" => "apt",
        "dpkg-deb" => "dpkg",
        "depmod" | "modinfo" => "kmod",
        "dropbearkey" | "dropbear" => "dropbear-bin",
        "busybox" => "busybox-static",
        p if crate::arch::ALL.iter().any(|a| a.qemu_binary() == p) => {
            return format!("`apt-get install {}` provides it", crate::arch::ALL.iter().find(|a| a.qemu_binary() == p).map_or("", |a| a.qemu_package()));
        }
        "qemu-img" | "qemu-io" => "qemu-utils",
        "ldd" => "libc-bin",
        "mkfs.ext4" | "debugfs" => "e2fsprogs",
        "crash" => "crash",
        "make" => "make",
        "gcc" => "gcc",
        _ => return "see `kernlab doctor`".to_string(),
    };
    format!("`apt-get install {pkg}` provides it")
}

/// A host command with a deadline.
#[derive(Debug)]
pub struct Tool {
    cmd: Command,
    deadline: Duration,
}

impl Tool {
    /// `program`, to be killed if it runs longer than `deadline`.
    pub fn new(program: impl AsRef<OsStr>, deadline: Duration) -> Tool {
        Tool { cmd: Command::new(program), deadline }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Tool {
        self.cmd.arg(a);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Tool {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Tool {
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Tool {
        self.cmd.current_dir(dir);
        self
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        describe(&self.cmd)
    }

    /// Runs to completion; a non-zero exit is an error with stderr's tail.
    pub fn run(self) -> Result<Output, ToolError> {
        let command = self.describe();
        let out = self.output()?;
        if !out.status.success() {
            return Err(ToolError::Failed { command, status: out.status, stderr: tail(&out.stderr) });
        }
        Ok(out)
    }

    /// Runs to completion and returns the output whatever the exit status,
    /// for callers that read a failure's output themselves. Not starting
    /// and the deadline are errors.
    pub fn output(self) -> Result<Output, ToolError> {
        let command = self.describe();
        let deadline = self.deadline;
        let mut running = self.start(false)?;
        let timed_out = !running.group.wait_exited(deadline);
        if timed_out {
            running.group.kill();
        }
        let (status, stdout, stderr) = running.finish()?;
        if timed_out {
            return Err(ToolError::Deadline { command, deadline, stderr: tail(&stderr) });
        }
        Ok(Output { status, stdout, stderr })
    }

    /// [`Tool::run`] on tokio's blocking pool.
    pub async fn run_async(self) -> Result<Output, ToolError> {
        let command = self.describe();
        tokio::task::spawn_blocking(move || self.run()).await.map_err(|e| ToolError::Wait { command, source: io::Error::other(e) })?
    }

    /// [`Tool::output`] on tokio's blocking pool.
    pub async fn output_async(self) -> Result<Output, ToolError> {
        let command = self.describe();
        tokio::task::spawn_blocking(move || self.output()).await.map_err(|e| ToolError::Wait { command, source: io::Error::other(e) })?
    }

    /// Starts the command with its stdout for the caller to read (e.g. a
    /// tar stream); a watchdog kills it at the deadline, which the caller
    /// then sees as the end of the stream. [`Streaming::finish`] says how it
    /// ended.
    pub fn stream(self) -> Result<Streaming, ToolError> {
        let command = self.describe();
        let deadline = self.deadline;
        let mut running = self.start(true)?;
        let stdout = running.child.stdout.take();
        let pidfd = running.group.pidfd().try_clone().map_err(|source| ToolError::Wait { command: command.clone(), source })?;
        let pgid = running.group.pid();
        let watchdog = std::thread::spawn(move || watch(pidfd, pgid, deadline));
        Ok(Streaming { running, stdout, watchdog: Some(watchdog), command, deadline })
    }

    fn start(mut self, stream_stdout: bool) -> Result<Running, ToolError> {
        let program = self.cmd.get_program().to_string_lossy().into_owned();
        self.cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        process::own_std(&mut self.cmd);
        let mut child = self.cmd.spawn().map_err(|source| ToolError::Spawn { hint: package_hint(&program), program, source })?;
        let command = describe(&self.cmd);
        let group = match Group::register(child.id()) {
            Ok(g) => g,
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::Wait { command, source });
            }
        };
        let stdout = if stream_stdout { None } else { child.stdout.take().map(reader) };
        let stderr = child.stderr.take().map(reader);
        Ok(Running { child, group, stdout, stderr, command, reaped: false })
    }
}

/// A started tool whose readers collect its output. Dropped unfinished (an
/// error path), it kills and reaps the tool.
struct Running {
    child: Child,
    group: Group,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    command: String,
    reaped: bool,
}

impl Running {
    /// After the leader has exited (or been killed): kill what is left of
    /// the group, leave the registry, reap, collect the output.
    fn finish(&mut self) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), ToolError> {
        self.group.release();
        let status = self.child.wait().map_err(|source| ToolError::Wait { command: self.command.clone(), source })?;
        self.reaped = true;
        let join = |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ok((status, join(self.stdout.take()), join(self.stderr.take())))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            self.group.kill();
            self.group.release();
            let _ = self.child.wait();
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The streaming watchdog: waits for the leader's exit up to `deadline`,
/// then kills the group. True if it had to. The owner reaps the leader only
/// after joining this thread, so the group id is still the leader's.
fn watch(pidfd: std::os::fd::OwnedFd, pgid: i32, deadline: Duration) -> bool {
    if process::wait_pidfd(&pidfd, deadline) {
        return false;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    true
}

/// A running tool whose stdout the caller reads.
pub struct Streaming {
    running: Running,
    stdout: Option<ChildStdout>,
    watchdog: Option<JoinHandle<bool>>,
    command: String,
    deadline: Duration,
}

impl Streaming {
    /// The tool's stdout.
    pub fn stdout(&mut self) -> &mut ChildStdout {
        self.stdout.as_mut().expect("stdout is taken only by finish")
    }

    /// Closes stdout (a tool still writing gets SIGPIPE), waits for the
    /// tool, and returns its exit status and the tail of its stderr. The
    /// deadline is an error; the exit status is the caller's to judge.
    pub fn finish(mut self) -> Result<(ExitStatus, String), ToolError> {
        drop(self.stdout.take());
        let timed_out = self.watchdog.take().is_some_and(|w| w.join().unwrap_or(false));
        let (status, _, stderr) = self.running.finish()?;
        if timed_out {
            return Err(ToolError::Deadline { command: self.command.clone(), deadline: self.deadline, stderr: tail(&stderr) });
        }
        Ok((status, tail(&stderr)))
    }
}

impl Drop for Streaming {
    /// Unfinished: stop the tool, let the watchdog see it go, then the
    /// `Running` reaps it.
    fn drop(&mut self) {
        drop(self.stdout.take());
        if let Some(w) = self.watchdog.take() {
            self.running.group.kill();
            let _ = w.join();
        }
    }
}

/// The last lines of a tool's output, lossily decoded and trimmed.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A printable form of a command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

/// Quotes a word for a POSIX shell (the guest's busybox sh included): values
/// from lab files reach the guest as data, never as shell syntax.
pub fn shell_quote(word: impl AsRef<OsStr>) -> String {
    let w = word.as_ref().to_string_lossy();
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return w.into_owned();
    }
    format!("'{}'", w.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
