//! The phases in the guest once it is up: the payload a snapshot's guest
//! lacks, the setup commands, the dump path's preparation, the modules
//! under test, then the workload while the sampler reads the guest. Each
//! step on the guest goes through the guest seam ([`GuestOps`]), whose
//! operations race the guest's loss, so a guest that dies (a module that
//! panics it at `insmod`) ends the step at once with the reason and the
//! panic line. For labs whose panics become vmcores, a
//! panic in the workload phase is the dump path, not an error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::boot::SSH_TIMEOUT;
use super::commands::{capture_command, ignored_ops_lines, insmod_command, sampler_command, sections, SAMPLER_BIN, workload_command, workload_commands, workload_file, workload_stop, WORKLOAD_LOG, WORKLOAD_SCRIPT};
use super::events::{self, Event};
use super::exhaust::{self, Trigger};
use super::prepare::Prepared;
use super::guest::{race, CapturePlan, GuestOps};
use super::guest::{PortPlan, StreamPlan};
use super::sampler::{Sampler, SamplerEnd};
use crate::qemu::argv::SAMPLER_PORT;
use super::{Ctx, RunError};
use crate::outcome::run::ExhaustionOutcome;
use crate::image::tree::Tree;
use crate::lab;
use crate::payload::BuiltModule;
use crate::sample::store::SampleStore;
use crate::util::{fsx, tool};
use crate::vm::GuestError;

/// What the phases after boot get from the boot: the lab's payload (and
/// whether it must still be uploaded: a snapshot's guest has only the base
/// image), its built modules with their parameters, and whether the VM has
/// the sampler's port.
pub(crate) struct Booted {
    pub payload: Tree,
    pub upload_payload: bool,
    pub modules: Vec<(BuiltModule, BTreeMap<String, String>)>,
    pub sampler_port: bool,
}

impl Booted {
    pub(super) fn of(p: Prepared, upload_payload: bool) -> Booted {
        let sampler_port = p.spec.devices.contains(&crate::qemu::Device::SamplerPort);
        Booted { payload: p.payload, upload_payload, modules: p.modules, sampler_port }
    }
}

/// The lab's modules unloaded in reverse load order (a later module may
/// use an earlier one's symbols), each outcome an event. A module that
/// will not go (still in use, a refcount it leaked) is reported, not an
/// error: the run's results are already collected. Skipped when the guest
/// is gone (a dump lab's guest after its panic).
pub(super) async fn unload_modules(ctx: &mut Ctx, guest: &dyn GuestOps, modules: &[(BuiltModule, BTreeMap<String, String>)]) {
    for (built, _) in modules.iter().rev() {
        let t = Instant::now();
        let cmd = format!("rmmod {}", tool::shell_quote(&built.name));
        match guest.exec(&cmd, Duration::from_secs(30)).await {
            Ok(out) => ctx.events.emit(Event::ModuleUnloaded { name: built.name.clone(), ok: out.success(), detail: out.stderr.trim().to_string(), secs: t.elapsed().as_secs_f64() }),
            Err(_) => return,
        }
    }
}

/// Puts the payload in the guest at its paths, with its modes: the
/// directories, the files, the symlinks, then the modes of directories
/// that are not 0755 (as the initrd's cpio would have set them).
pub(super) async fn upload(guest: &dyn GuestOps, payload: &Tree) -> Result<(), GuestError> {
    let q = |p: &str| tool::shell_quote(Path::new(p).as_os_str());
    let mut dirs: std::collections::BTreeSet<String> = payload.dirs().map(|(d, _)| q(&d)).collect();
    let leaves = payload.files().map(|(p, _, _)| p).chain(payload.symlinks().map(|(p, _)| p));
    dirs.extend(leaves.filter_map(|p| Path::new(&p).parent().map(|d| q(&d.to_string_lossy()))));
    let mkdir = format!("mkdir -p {}", dirs.into_iter().collect::<Vec<_>>().join(" "));
    guest_shell(guest, &mkdir).await?;
    for (path, mode, data) in payload.files() {
        guest.upload(Path::new(&path), data.to_vec(), mode, Duration::from_secs(60)).await?;
    }
    let mut after: Vec<String> = payload.symlinks().map(|(p, target)| format!("ln -sfn {} {}", q(target), q(&p))).collect();
    after.extend(payload.dirs().filter(|(_, m)| *m != 0o755).map(|(d, m)| format!("chmod {m:o} {}", q(&d))));
    if !after.is_empty() {
        guest_shell(guest, &after.join(" && ")).await?;
    }
    Ok(())
}

/// One shell command of the upload; a failure is an upload error.
async fn guest_shell(guest: &dyn GuestOps, cmd: &str) -> Result<(), GuestError> {
    let out = guest.exec(cmd, Duration::from_secs(30)).await?;
    if !out.success() {
        let e = std::io::Error::other(format!("`{cmd}` exited {}: {}", out.status, out.stderr.trim()));
        return Err(GuestError::Ssh(crate::vm::SshError::Upload { remote: "/".into(), source: e }));
    }
    Ok(())
}

/// Setup commands, in order; the first failure stops the run.
pub(super) async fn setup(ctx: &mut Ctx, guest: &dyn GuestOps) -> Result<(), RunError> {
    for (index, command) in ctx.lab.setup.clone().into_iter().enumerate() {
        let t = Instant::now();
        let out = guest
            .exec(&command, Duration::from_secs(300))
            .await
            .map_err(|e| ctx.guest_error(e, &format!("during setup command {index} `{command}`")))?;
        ctx.events.emit(Event::SetupCommand { index, command: command.clone(), status: out.status, secs: t.elapsed().as_secs_f64() });
        if !out.success() {
            return Err(RunError::Setup { index, command, status: out.status, stderr: out.stderr.trim().to_string() });
        }
    }
    Ok(())
}

/// The modules under test, in order, after setup. A module whose load
/// kills the guest fails the run with the reason; in a lab whose panics
/// become vmcores, the dump is taken first.
pub(super) async fn load_modules(ctx: &mut Ctx, guest: &dyn GuestOps, modules: &[(BuiltModule, BTreeMap<String, String>)], kdump_loaded: bool) -> Result<(), RunError> {
    for (built, params) in modules {
        let t = Instant::now();
        let during = format!("while loading module `{}`", built.name);
        let cmd = format!("{}; s=$?; [ $s = 0 ] || dmesg | tail -n 20 >&2; exit $s", insmod_command(&built.name, params));
        let out = match guest.exec(&cmd, Duration::from_secs(60)).await {
            Ok(out) => out,
            Err(GuestError::Lost(lost)) if ctx.lab.dumps() => {
                exhaust::collect(ctx, guest, Trigger::Panicked(lost.to_string()), kdump_loaded).await?;
                return Err(ctx.guest_error(GuestError::Lost(lost), &during));
            }
            Err(e) => return Err(ctx.guest_error(e, &during)),
        };
        if !out.success() {
            return Err(RunError::ModuleLoad {
                name: built.name.clone(),
                kernel: ctx.kernel_name(),
                status: out.status,
                stderr: out.stderr.trim().to_string(),
            });
        }
        let taint = guest.exec("cat /proc/sys/kernel/tainted", Duration::from_secs(10)).await.ok().and_then(|o| o.stdout.trim().parse::<u64>().ok());
        ctx.events.emit(Event::ModuleLoaded { name: built.name.clone(), params: params.clone(), tainted: taint, secs: t.elapsed().as_secs_f64() });
    }
    Ok(())
}

/// Sampling, alongside the workload when there is one, until the phase's
/// limit, the workload's failure, exhaustion, a hang, or the guest's loss;
/// then the dump when the lab takes one.
pub(super) async fn workload(ctx: &mut Ctx, shared: &Arc<dyn GuestOps>, kdump_loaded: bool, booted: &Booted) -> Result<(), RunError> {
    // The guest sampler is in the payload when it was built for the lab.
    let stream = booted.payload.files().any(|(path, _, _)| path == SAMPLER_BIN);
    let port = booted.sampler_port;
    let guest: &dyn GuestOps = shared.as_ref();
    let sections = sections(&ctx.lab);
    let balloon = ctx.lab.monitor.sources.contains(&lab::Source::Balloon);
    let store = SampleStore::open(&ctx.dir.join("samples"), &sections, balloon)
        .map_err(|source| RunError::Write { path: ctx.dir.join("samples"), source })?;
    let store = Arc::new(Mutex::new(store));
    ctx.store = Some(store.clone());
    if balloon {
        let secs = ctx.lab.monitor.interval.as_secs().max(1);
        if let Err(e) = guest.enable_balloon_stats(secs).await {
            tracing::warn!("balloon statistics unavailable: {e}");
        }
    }
    let dumps = ctx.lab.dumps();
    let stream = (stream && ctx.lab.monitor.sampler == lab::SamplerKind::Stream).then(|| {
        let port = port.then(|| PortPlan { command: sampler_command(&ctx.lab, &sections, Some(SAMPLER_PORT)), dir: ctx.dir.path.clone() });
        StreamPlan { command: sampler_command(&ctx.lab, &sections, None), port, used: Arc::default() }
    });
    let transports = stream.as_ref().map(|s| s.used.clone());
    let plan = CapturePlan { command: capture_command(&ctx.lab, &sections), stream, events: ctx.events.clone() };
    let capture = guest.capture(plan).await.map_err(|e| ctx.guest_error(e, "before sampling"))?;
    let sampler = Sampler {
        events: ctx.events.clone(),
        store,
        guest: shared.clone(),
        balloon,
        capture: Some(capture),
        gaps: ctx.gaps.clone(),
        headroom: ctx.lab.exhaustion.as_ref().map(|x| x.headroom).filter(|h| *h > 0),
        hang_intervals: ctx.lab.exhaustion.as_ref().filter(|_| dumps).map(|x| x.hang_intervals),
        gap_since: None,
        decided: ctx.decided.clone(),
    };
    // The workload phase's limit: its duration, or for a lab that runs until
    // exhaustion the most it may take to get there (`exhaustion.max`).
    let limit = ctx.lab.phase_limit();
    let until = ctx.lab.exhaustion.as_ref().is_some_and(|x| x.until);
    let mut workload_done: Option<tokio::sync::oneshot::Receiver<(Option<i32>, f64)>> = None;
    let workload = match ctx.lab.workload.clone() {
        Some(w) => {
            let session = guest.session(SSH_TIMEOUT).await.map_err(|e| ctx.guest_error(e, "while starting the workload"))?;
            ctx.events.emit(Event::WorkloadStarted { commands: w.commands.len(), duration_secs: limit.as_secs_f64(), until_exhaustion: until });
            let body = workload_file(&workload_commands(&w, limit));
            guest
                .upload(Path::new(WORKLOAD_SCRIPT), body.into_bytes(), 0o700, Duration::from_secs(30))
                .await
                .map_err(|e| ctx.guest_error(e, "while uploading the workload"))?;
            let script = workload_command();
            let log = ctx.dir.join("workload.log");
            let events = ctx.events.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            workload_done = Some(done_rx);
            // The workload's SSH exec lasts the whole phase: a session (and,
            // for SSH, a blocking thread) of its own, which ends when the
            // command or the session does.
            Some(tokio::spawn(async move {
                let t = Instant::now();
                let res = session.clone().exec(script, limit + Duration::from_secs(60)).await;
                let status = match &res {
                    Ok(out) => {
                        let text = session
                            .exec(format!("tail -c 1048576 {WORKLOAD_LOG}"), Duration::from_secs(30))
                            .await
                            .map(|o| o.stdout)
                            .unwrap_or_else(|e| format!("cannot fetch the workload log: {e}\n"));
                        let _ = fsx::write_atomic(&log, text.as_bytes());
                        if let Some(warning) = ignored_ops_lines(&w, &text) {
                            tracing::warn!("{warning}");
                        }
                        Some(out.status)
                    }
                    Err(e) => {
                        let _ = fsx::write_atomic(&log, format!("workload lost: {e}: {:?}\n", std::error::Error::source(&e)).as_bytes());
                        None
                    }
                };
                let secs = t.elapsed().as_secs_f64();
                events.emit(Event::WorkloadFinished { status, secs });
                let _ = done_tx.send((status, secs));
            }))
        }
        None => None,
    };
    let phase_start = Instant::now();
    let sampling = race(guest, sampler.run(ctx.lab.monitor.interval, limit));
    tokio::pin!(sampling);
    let sampled = loop {
        tokio::select! {
            r = &mut sampling => break r,
            r = async { workload_done.as_mut().expect("guarded").await }, if workload_done.is_some() => {
                workload_done = None;
                // A workload that fails before its duration ends the run;
                // one that succeeds early leaves the sampling to finish.
                if let Ok((Some(status), secs)) = r {
                    if status != 0 {
                        break Ok(SamplerEnd::WorkloadFailed { status, secs });
                    }
                }
            }
        }
    };
    if let Some(used) = transports {
        let used = used.lock().unwrap().join("+");
        ctx.manifest.sampler_transport = (!used.is_empty()).then_some(used);
    }
    if let Ok(SamplerEnd::WorkloadFailed { status, secs }) = sampled {
        if let Some(w) = workload {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        let log = fsx::tail_lines(&ctx.dir.join("workload.log"), 20);
        return Err(RunError::Workload { status, secs, log });
    }
    let trigger = match (&sampled, dumps) {
        (Ok(SamplerEnd::Done), _) => None,
        (Ok(end), _) => Some(Trigger::from_sampler(end)),
        (Err(lost), true) => Some(Trigger::Panicked(lost.to_string())),
        (Err(_), false) => None,
    };
    // A guest that died without a dump to take fails the run below; every
    // other end of a watched phase says whether the guest ran out of memory.
    let watched = ctx.lab.exhaustion.as_ref().is_some_and(lab::Exhaustion::watched);
    if watched && ctx.lab.workload.is_some() && (sampled.is_ok() || dumps) {
        if trigger.is_none() {
            ctx.events.emit(Event::NoExhaustion { within_secs: limit.as_secs_f64(), until_exhaustion: until });
        }
        ctx.exhaustion = Some(ExhaustionOutcome {
            until,
            reached: trigger.is_some(),
            within_secs: limit.as_secs_f64(),
            after_secs: trigger.as_ref().map(|_| events::round3(phase_start.elapsed().as_secs_f64())),
            trigger: trigger.as_ref().map(Trigger::describe),
        });
    }
    if let (Some(t), true) = (&trigger, dumps) {
        exhaust::collect(ctx, guest, t.clone(), kdump_loaded).await?;
    }
    if let Some(w) = workload {
        // The duration is over: end the workload's process group, then give
        // its SSH exec a bounded grace to return.
        if matches!(sampled, Ok(SamplerEnd::Done)) {
            let _ = guest.exec(&workload_stop(), Duration::from_secs(10)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(if trigger.is_some() { 3 } else { 30 }), w).await;
    }
    match sampled {
        Err(lost) if !dumps => Err(ctx.guest_error(GuestError::Lost(lost), "during the run")),
        _ => Ok(()),
    }
}
