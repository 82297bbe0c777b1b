//! `kernlab shell`: the lab's guest brought up as a run brings it up (its
//! kernel, image, payload and modules built, the guest booted or restored,
//! the payload uploaded, the setup run, the modules loaded) and then handed
//! to the system `ssh`: an interactive shell on the user's terminal, or one
//! command whose exit status becomes kernlab's. The guest is stopped when
//! the shell ends, on every path out (errors and Ctrl-C included). Nothing
//! of the lab's is sampled or reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::events::{self, Event, Events};
use super::rundir::RunDir;
use super::{boot, phases, prepare, stop_guest, Ctx, Manifest, RunError};
use crate::cache::Cache;
use crate::exit;
use crate::kernel::{self, Registry};
use crate::lab;
use crate::util::{fsx, tool};
use crate::vm::Connector;

/// Which arm of an A/B leak lab the shell boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellArm {
    /// The lab as written (its modules loaded).
    Module,
    /// The lab's baseline (by default without its modules).
    Baseline,
}

impl ShellArm {
    pub fn name(self) -> &'static str {
        match self {
            ShellArm::Module => "module",
            ShellArm::Baseline => "baseline",
        }
    }
}

/// What `kernlab shell` was asked to do.
#[derive(Debug, Clone)]
pub struct ShellOptions {
    pub lab_file: PathBuf,
    pub kernel_dirs: Vec<PathBuf>,
    /// Boot this kernel instead of the lab's.
    pub kernel: Option<String>,
    /// The arm of an A/B lab (default: the module arm); refused for a plain lab.
    pub arm: Option<ShellArm>,
    /// The command to run instead of an interactive shell (an argv: each
    /// word is quoted for the guest's shell).
    pub command: Vec<String>,
    /// Keep the run directory here; default: a private temporary directory,
    /// removed when the shell ends.
    pub out: Option<PathBuf>,
    /// Capture the command's output (for `--json`) instead of passing the
    /// terminal through.
    pub capture: bool,
}

/// How a shell ended.
#[derive(Debug, Default)]
pub struct ShellEnd {
    /// kernlab's exit code: the command's (or the shell's) exit status, or
    /// 2 (usage, lab), 101 (infrastructure), 130 (interrupted).
    pub exit_code: i32,
    /// What went wrong before or around the shell (not the command's own failure).
    pub error: Option<String>,
    pub lab: String,
    pub kernel: String,
    /// The arm booted, for an A/B lab.
    pub arm: Option<&'static str>,
    /// The command's exit status as `ssh` reported it, once it ran.
    pub status: Option<i32>,
    /// The command's output, when captured.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// The run directory, when it is kept (`--out`).
    pub dir: Option<PathBuf>,
}

/// Brings the lab's guest up, runs the shell or the command, stops the guest.
pub async fn shell(opts: ShellOptions, events: &Events, cancel: CancellationToken) -> ShellEnd {
    let start = Instant::now();
    let mut end = ShellEnd::default();
    let fail = |mut end: ShellEnd, e: RunError| {
        end.exit_code = e.exit_code();
        end.error = Some(e.chain());
        end
    };
    let mut lab = match lab::load(&opts.lab_file) {
        Ok(l) => l,
        Err(e) => return fail(end, e.into()),
    };
    if let Err(e) = lab.check_files(&opts.lab_file) {
        return fail(end, e.into());
    }
    if let Some(k) = &opts.kernel {
        lab.kernel = k.clone();
    }
    end.lab = lab.name.clone();
    end.kernel = lab.kernel.clone();
    let lab = match (lab.leak.is_some(), opts.arm) {
        (false, Some(ShellArm::Baseline)) => {
            return fail(end, RunError::Usage(format!("{}: --arm baseline needs an A/B leak lab (one with a `leak` section)", opts.lab_file.display())));
        }
        (false, _) => lab,
        (true, arm) => {
            let arm = arm.unwrap_or(ShellArm::Module);
            end.arm = Some(arm.name());
            let other = match arm {
                ShellArm::Module => "--arm baseline for its baseline",
                ShellArm::Baseline => "without --arm for the module arm",
            };
            tracing::info!("{}: an A/B leak lab: booting its {} arm ({other})", opts.lab_file.display(), arm.name());
            let (module, baseline) = super::ab::arm_labs(&lab);
            match arm {
                ShellArm::Module => module,
                ShellArm::Baseline => baseline,
            }
        }
    };
    let mut dirs = opts.kernel_dirs.clone();
    dirs.extend(kernel::descriptor_dirs(Some(&opts.lab_file)));
    let desc = match Registry::load(&dirs).and_then(|r| r.get(&lab.kernel).cloned()) {
        Ok(d) => d,
        Err(e) => {
            let (line, column) = lab.locations.position("kernel");
            let at = if line > 0 { format!(":{line}:{column}") } else { String::new() };
            let e: RunError = e.into();
            let mut end = fail(end, e);
            end.error = end.error.map(|m| format!("{}{at}: kernel: {m}", opts.lab_file.display()));
            return end;
        }
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return fail(end, RunError::Write { path: "cache".into(), source: e }),
    };
    // The run directory the engine boots from (keys, initrd, console, QMP
    // socket): a private temporary one unless the user keeps it.
    let scratch = match &opts.out {
        Some(_) => None,
        None => match tempfile::Builder::new().prefix("kernlab-shell-").tempdir() {
            Ok(t) => Some(t),
            Err(e) => return fail(end, RunError::Write { path: std::env::temp_dir(), source: e }),
        },
    };
    let at = opts.out.clone().unwrap_or_else(|| scratch.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
    let dir = match RunDir::create(Some(&at), &lab.name, &lab.kernel) {
        Ok(d) => d,
        Err(e) => return fail(end, RunError::RunDir(e)),
    };
    if opts.out.is_some() {
        end.dir = Some(dir.path.clone());
    }
    let lab_text = std::fs::read(&opts.lab_file).unwrap_or_default();
    let mut ctx = Ctx {
        manifest: Manifest {
            kernlab_version: env!("CARGO_PKG_VERSION").to_string(),
            lab_name: lab.name.clone(),
            lab_file: opts.lab_file.display().to_string(),
            lab_sha256: fsx::sha256_bytes(&lab_text),
            host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            started: events::wall_clock(),
            ..Default::default()
        },
        lab,
        lab_file: opts.lab_file.clone(),
        desc,
        dir,
        events: events.restarted(start),
        cache,
        guest: None,
        ops: None,
        source: Default::default(),
        dump: None,
        triage: None,
        triage_skipped: None,
        exhaustion: None,
        store: None,
        timings: Default::default(),
        cancel: cancel.clone(),
        decided: CancellationToken::new(),
        gaps: Arc::new(Mutex::new(0)),
        run_start: start,
        instruments: Default::default(),
    };
    let result = tokio::select! {
        r = bring_up(&mut ctx) => r,
        _ = cancel.cancelled() => Err(RunError::Interrupted("signal".into())),
    };
    let result = match result {
        Ok(connector) => run_ssh(&ctx, &connector, &opts, cancel.clone()).await,
        Err(e) => Err(e),
    };
    if let Err(RunError::Interrupted(_)) = &result {
        ctx.events.emit(Event::Interrupted { signal: "SIGINT/SIGTERM".into() });
    }
    stop_guest(&mut ctx).await;
    let _ = std::fs::remove_file(ctx.dir.join("churn.img"));
    if opts.out.is_some() {
        let _ = fsx::write_atomic(&crate::outcome::layout::manifest_json(&ctx.dir), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default());
        if let Err(e) = fsx::seal_tree(&ctx.dir.path) {
            tracing::warn!("cannot make {} private: {e}", ctx.dir.path.display());
        }
    }
    drop(scratch);
    match result {
        Ok(out) => {
            end.exit_code = out.status;
            end.status = Some(out.status);
            end.stdout = out.stdout;
            end.stderr = out.stderr;
            end
        }
        Err(e) => fail(end, e),
    }
}

/// The guest up as a run has it before its workload: booted or restored,
/// the payload in, the setup run, the modules loaded. Returns how to reach
/// its sshd.
async fn bring_up(ctx: &mut Ctx) -> Result<Connector, RunError> {
    let mut prepared = prepare::prepare(ctx).await?;
    let ready = boot::bring_up(ctx, &mut prepared).await?;
    let guest = ctx.guest()?;
    if ready.upload_payload && !prepared.payload.is_empty() {
        phases::upload(&guest, &prepared.payload).await.map_err(|e| ctx.guest_error(e, "while uploading the lab's payload"))?;
    }
    phases::setup(ctx, &guest).await?;
    phases::load_modules(ctx, &guest, &prepared.modules, false).await?;
    Ok(guest.connector().clone())
}

struct SshOut {
    status: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// The `ssh` command line to the guest: the run's key, its host key pinned
/// in a known_hosts file of the run directory, no user configuration.
pub(crate) fn ssh_argv(known_hosts: &Path, c: &Connector, tty: bool, command: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec!["-F".into(), "/dev/null".into(), "-i".into(), c.client_key.display().to_string(), "-p".into(), c.addr.port().to_string()];
    for o in [
        "IdentitiesOnly=yes".to_string(),
        "BatchMode=yes".into(),
        "StrictHostKeyChecking=yes".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "LogLevel=ERROR".into(),
    ] {
        argv.push("-o".into());
        argv.push(o);
    }
    argv.push(if tty { "-t" } else { "-T" }.into());
    argv.push(format!("root@{}", c.addr.ip()));
    if !command.is_empty() {
        // ssh joins its words into one line for the guest's shell: quote
        // each so the command's argv arrives as given.
        argv.push("--".into());
        argv.push(command.iter().map(tool::shell_quote).collect::<Vec<_>>().join(" "));
    }
    argv
}

/// Runs the system `ssh` into the guest until it ends, the guest dies, or
/// a signal comes (then `ssh` is killed).
async fn run_ssh(ctx: &Ctx, c: &Connector, opts: &ShellOptions, cancel: CancellationToken) -> Result<SshOut, RunError> {
    let keys = crate::image::RunKeys { client_key: c.client_key.clone(), client_public: String::new(), host_key: PathBuf::new(), host_key_blob: c.host_key_blob.clone() };
    let known_hosts = ctx.dir.join("known_hosts");
    let line = format!("[{}]:{} {}\n", c.addr.ip(), c.addr.port(), keys.host_public()?);
    super::write(&known_hosts, line.as_bytes())?;
    let interactive = opts.command.is_empty();
    // A terminal gets a pty in the guest; piped input is a script for the
    // guest's shell, read without one.
    let tty = interactive && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let argv = ssh_argv(&known_hosts, c, tty, &opts.command);
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(&argv);
    if opts.capture {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let guest = ctx.guest()?;
    let what = if interactive { "shell".to_string() } else { format!("command `{}`", opts.command.iter().map(tool::shell_quote).collect::<Vec<_>>().join(" ")) };
    tracing::info!("guest ready: the {what} over ssh to {}", c.addr);
    let mut child = cmd.spawn().map_err(|source| RunError::Write { path: "ssh (the system's OpenSSH client)".into(), source })?;
    let pid = child.id();
    let read = |pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        tokio::spawn(async move {
            let mut b = Vec::new();
            if let Some(mut p) = pipe {
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut b).await;
            }
            b
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let outcome = tokio::select! {
        r = guest.wait(child.wait()) => Some(r),
        _ = cancel.cancelled() => None,
    };
    let status = match outcome {
        Some(Ok(Ok(status))) => status,
        Some(Ok(Err(source))) => return Err(RunError::Write { path: "ssh".into(), source }),
        Some(Err(lost)) => {
            end_ssh(&mut child, pid).await;
            return Err(ctx.guest_error(crate::vm::GuestError::Lost(lost), &format!("during the {what}")));
        }
        None => {
            end_ssh(&mut child, pid).await;
            return Err(RunError::Interrupted("signal".into()));
        }
    };
    // 255 is ssh's own failure (or the command's 255); a signal, kernlab's 101.
    let status = status.code().unwrap_or(exit::INFRA);
    let text = |b: Vec<u8>| opts.capture.then(|| String::from_utf8_lossy(&b).into_owned());
    Ok(SshOut { status, stdout: text(stdout.await.unwrap_or_default()), stderr: text(stderr.await.unwrap_or_default()) })
}

/// Ends the `ssh` child: SIGTERM (it puts the terminal back), a grace
/// period, then SIGKILL; reaped.
async fn end_ssh(child: &mut tokio::process::Child, pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_command_pins_the_host_key_and_quotes_the_command() {
        let c = Connector { addr: ([127, 0, 0, 1], 2222).into(), client_key: "/r/keys/client_ed25519".into(), host_key_blob: vec![] };
        let argv = ssh_argv(Path::new("/r/known_hosts"), &c, false, &["sh".into(), "-c".into(), "exit 7".into()]);
        let line = argv.join(" ");
        assert!(line.contains("-i /r/keys/client_ed25519 -p 2222"), "{line}");
        assert!(line.contains("UserKnownHostsFile=/r/known_hosts") && line.contains("StrictHostKeyChecking=yes"), "{line}");
        assert_eq!(&argv[argv.len() - 4..], ["-T", "root@127.0.0.1", "--", "sh -c 'exit 7'"]);
        let argv = ssh_argv(Path::new("/r/known_hosts"), &c, true, &[]);
        assert_eq!(&argv[argv.len() - 2..], ["-t", "root@127.0.0.1"]);
    }
}
