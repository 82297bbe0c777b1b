//! One run: one lab on one kernel, end to end. Resolve the kernel, build the
//! image, boot QEMU, wait for SSH, run the setup, then the workload while
//! sampling, tear the VM down, and write the report. Everything collected is
//! on disk as it arrives; teardown and the report happen on every path out,
//! errors and Ctrl-C included.
//!
//! The phases, in order, are one straight line in [`execute`]: `prepare`
//! (kernel, payload, boot profile, image, the VM's spec), `boot` and
//! `restore` (the guest up, from a snapshot or cold), then the load
//! (setup, the dump path's preparation, modules), the workload with the
//! `sampler` and the dump path of `exhaust` (`phases`); the report is
//! written by `finish`. The guest itself, QEMU with its QMP, console and
//! SSH, is a [`crate::vm::Guest`]; after boot the phases see it only
//! through the guest seam, [`guest::GuestOps`], which the unit tests
//! implement with a scripted guest (`testing`).

pub mod ab;
mod attribution;
mod boot;
mod commands;
pub mod error;
mod exhaust;
pub(crate) mod guest;
mod vm_guest;
pub(crate) mod instruments;
mod phases;
mod prepare;
pub mod record;
mod restore;
pub mod shell;
mod start;
pub mod rundir;
mod sampler;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod engine_tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use commands::{insmod_command, workload_command, workload_commands, workload_file, workload_stop};
pub use error::RunError;
use crate::outcome::event::{self as events, Event, Events};
pub use crate::outcome::run::{BootManifest, Manifest, RunOutcome};
use crate::outcome::run::{SnapshotManifest, SnapshotMode};
use rundir::RunDir;
pub use sampler::Backoff;

use crate::cache::Cache;
use crate::kernel::{self, Registry};
use crate::lab::{self, Lab};
use crate::sample::store::SampleStore;
use crate::util::fsx;
use crate::vm::{Guest, GuestError};
use guest::GuestOps;

/// What `kernlab run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub lab_file: PathBuf,
    pub out: Option<PathBuf>,
    pub kernel_dirs: Vec<PathBuf>,
    /// Run on this kernel instead of the lab's (a matrix cell).
    pub kernel: Option<String>,
    /// Run the workload this long instead of the lab's `workload.duration`
    /// (a soak: `kernlab run LAB --duration 2h`).
    pub duration: Option<Duration>,
    /// `leak.attribute` instead of the lab's (`kernlab run --attribute`).
    pub attribute: Option<lab::Attribute>,
}

/// How a run ended, for the exit code and the caller's own use: the
/// records it wrote, typed, so that a caller in the same process (matrix,
/// bisect, calibrate) need not read them back from its run directory.
#[derive(Debug)]
pub struct RunEnd {
    pub dir: Option<PathBuf>,
    pub exit_code: i32,
    pub error: Option<String>,
    /// A plain run's `report.json`, as written (None for an A/B lab, whose
    /// record is its `LeakReport`, and for a run that never started).
    pub outcome: Option<RunOutcome>,
    /// An A/B leak lab's `report.json` as written, its verdict typed (None
    /// for a plain run, and for a lab whose arms could not be made).
    pub leak: Option<ab::LeakReport>,
}

/// The guest's console and QEMU's QMP socket, in the run directory.
const CONSOLE: &str = "console.log";
const QMP_SOCKET: &str = "qmp.sock";

/// State of a run that outlives any one phase, so teardown and the report
/// see what the phases got to.
struct Ctx {
    lab: Lab,
    lab_file: PathBuf,
    desc: kernel::Descriptor,
    dir: RunDir,
    events: Events,
    cache: Cache,
    manifest: Manifest,
    /// The running VM, once QEMU is started (the boot phases' handle).
    guest: Option<Guest>,
    /// The guest as the phases after boot see it (the VM, or a scripted
    /// guest in the unit tests); teardown shuts it down.
    ops: Option<Arc<dyn GuestOps>>,
    /// Where the guest comes from.
    source: GuestSource,
    /// The vmcore, when the run took one, and its triage.
    dump: Option<crate::dump::DumpRecord>,
    triage: Option<crate::triage::CrashReport>,
    triage_skipped: Option<String>,
    /// Whether the guest ran out of memory, once the workload phase is over.
    exhaustion: Option<crate::outcome::run::ExhaustionOutcome>,
    store: Option<Arc<Mutex<SampleStore>>>,
    timings: crate::outcome::run::Timings,
    cancel: CancellationToken,
    /// See [`Arm::decided`].
    decided: CancellationToken,
    gaps: Arc<Mutex<u64>>,
    run_start: Instant,
    /// An attribution pass's guest scripts (none in a plain run).
    instruments: instruments::Instruments,
}

/// Runs one lab: a plain lab as one arm, an A/B leak lab as two. Its events
/// go to `events` (whose clock is the run's); what it found is on disk in
/// its run directory when this returns, on every path out.
pub async fn run(opts: RunOptions, events: &Events, cancel: CancellationToken) -> RunEnd {
    run_with(opts, events, cancel, |_| {}).await
}

/// [`run`] with `edit` applied to the lab as loaded, before anything uses
/// it: a bisection points its modules at a scratch export of one revision
/// (payload paths stay relative to the lab file).
pub async fn run_with(opts: RunOptions, events: &Events, cancel: CancellationToken, edit: impl FnOnce(&mut Lab)) -> RunEnd {
    let start = Instant::now();
    let events = &events.restarted(start);
    // Nothing started, no run directory: the caller says the error.
    let fail_early = |e: RunError| RunEnd { dir: None, exit_code: e.exit_code(), error: Some(e.chain()), outcome: None, leak: None };
    let mut lab = match lab::load(&opts.lab_file) {
        Ok(l) => l,
        Err(e) => return fail_early(e.into()),
    };
    if let Err(e) = lab.check_files(&opts.lab_file) {
        return fail_early(e.into());
    }
    edit(&mut lab);
    if let Some(k) = &opts.kernel {
        lab.kernel = k.clone();
    }
    if let Some(d) = opts.duration {
        match lab.workload.as_mut() {
            Some(w) => w.duration = d,
            None => return fail_early(RunError::Usage(format!("{}: --duration needs a lab with a `workload`", opts.lab_file.display()))),
        }
        // The same limits as in the file (interval within the duration, no absurd lengths).
        if let Err(e) = lab.validate(&opts.lab_file) {
            return fail_early(RunError::Usage(format!("--duration {}: {e}", humantime::format_duration(d))));
        }
    }
    if let Some(a) = opts.attribute {
        match lab.leak.as_mut() {
            Some(l) => l.attribute = a,
            None => return fail_early(RunError::Usage(format!("{}: --attribute needs a leak lab (one with a `leak` section)", opts.lab_file.display()))),
        }
    }
    let mut dirs = opts.kernel_dirs.clone();
    dirs.extend(kernel::descriptor_dirs(Some(&opts.lab_file)));
    let desc = match Registry::load(&dirs).and_then(|r| r.get(&lab.kernel).cloned()) {
        Ok(d) => d,
        Err(e) => {
            // Name the lab file and the line of its `kernel:` field.
            let (line, column) = lab.locations.position("kernel");
            let at = if line > 0 { format!(":{line}:{column}") } else { String::new() };
            let e: RunError = e.into();
            let mut end = fail_early(e);
            end.error = end.error.map(|m| format!("{}{at}: kernel: {m}", opts.lab_file.display()));
            return end;
        }
    };
    let cache = match Cache::from_env() {
        Ok(c) => c,
        Err(e) => return fail_early(RunError::Write { path: "cache".into(), source: e }),
    };
    let dir = match RunDir::create(opts.out.as_deref(), &lab.name, &lab.kernel) {
        Ok(d) => d,
        Err(e) => return fail_early(RunError::RunDir(e)),
    };
    let root = dir.path.clone();
    let arm = Arm {
        lab,
        lab_file: opts.lab_file.clone(),
        desc,
        cache,
        dir,
        events: events.clone(),
        decided: CancellationToken::new(),
        instruments: Default::default(),
        source: GuestSource::Qemu,
    };
    let end = if arm.lab.leak.is_some() { ab::run_ab(arm, cancel, start).await } else { run_arm(arm, cancel, start).await };
    // Whatever wrote into it (QEMU's console log, instruments, guest
    // scripts' output), the finished run directory is private.
    if let Err(e) = fsx::seal_tree(&root) {
        tracing::warn!("cannot make {} private: {e}", root.display());
    }
    end
}

/// One VM's run of a lab: everything from the kernel to the report, in its
/// own run directory. A plain lab is one arm; an A/B leak lab runs two.
pub(crate) struct Arm {
    pub lab: Lab,
    pub lab_file: PathBuf,
    pub desc: kernel::Descriptor,
    pub cache: Cache,
    pub dir: RunDir,
    /// Where the arm's events go, marked with its cell and arm.
    pub events: Events,
    /// Fired when an A/B lab's verdict is decided before its duration: the
    /// sampler takes one last sample and the workload ends as at its
    /// duration.
    pub decided: CancellationToken,
    /// Guest scripts of an attribution pass (none otherwise).
    pub instruments: instruments::Instruments,
    /// Where the arm's guest comes from.
    pub source: GuestSource,
}

/// Where an arm's guest comes from: QEMU booted by the `prepare` and `boot`
/// phases, or (unit tests) a scripted guest made for the arm's directory
/// name (`module`, `baseline`, or the run's own) with what its boot would
/// have given the later phases.
#[derive(Clone, Default)]
pub(crate) enum GuestSource {
    #[default]
    Qemu,
    #[cfg(test)]
    Scripted(MakeGuest),
}

/// Makes an arm's scripted guest from the arm's directory name.
#[cfg(test)]
pub(crate) type MakeGuest = Arc<dyn Fn(&str) -> (Arc<dyn GuestOps>, phases::Booted) + Send + Sync>;

pub(crate) async fn run_arm(arm: Arm, cancel: CancellationToken, start: Instant) -> RunEnd {
    let Arm { lab, lab_file, desc, cache, dir, events, decided, instruments, source } = arm;
    events.emit(Event::RunStarted { lab: lab.name.clone(), kernel: lab.kernel.clone(), run_dir: dir.path.display().to_string() });

    let lab_text = std::fs::read(&lab_file).unwrap_or_default();
    let mut ctx = Ctx {
        manifest: Manifest {
            schema: crate::outcome::run::MANIFEST_SCHEMA.into(),
            kernlab_version: env!("CARGO_PKG_VERSION").to_string(),
            lab_name: lab.name.clone(),
            // An input outside the run directory: absolute, as provenance.
            lab_file: std::fs::canonicalize(&lab_file).unwrap_or_else(|_| lab_file.clone()).display().to_string(),
            lab_sha256: fsx::sha256_bytes(&lab_text),
            host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            started: events::wall_clock(),
            ..Default::default()
        },
        lab,
        lab_file,
        desc: desc.clone(),
        dir,
        events,
        cache,
        guest: None,
        ops: None,
        source,
        dump: None,
        triage: None,
        triage_skipped: None,
        exhaustion: None,
        store: None,
        timings: Default::default(),
        cancel: cancel.clone(),
        decided,
        gaps: Arc::new(Mutex::new(0)),
        run_start: start,
        instruments,
    };

    let result = tokio::select! {
        r = execute(&mut ctx) => r,
        _ = cancel.cancelled() => Err(RunError::Interrupted("signal".into())),
    };
    if let Err(RunError::Interrupted(_)) = &result {
        ctx.events.emit(Event::Interrupted { signal: "SIGINT/SIGTERM".into() });
    }
    teardown(&mut ctx).await;
    finish(ctx, result, start)
}

/// The phases of one arm up to the end of the workload, in order; returns
/// at the first error (the caller tears down and writes the report). An
/// A/B lab's decision and a LEAK's attribution come after both arms
/// (`ab`). From the load on, the guest is a [`GuestOps`].
async fn execute(ctx: &mut Ctx) -> Result<(), RunError> {
    // prepare + boot: the kernel, payload, image and VM spec, the guest up
    // cold or restored (or, in the unit tests, a scripted guest).
    let (shared, booted) = bring_up(ctx).await?;
    let guest = shared.as_ref();
    // load: the payload a snapshot's guest lacks, the setup, panics made
    // dumps, an attribution pass's probes, the modules under test.
    if booted.upload_payload && !booted.payload.is_empty() {
        phases::upload(guest, &booted.payload).await.map_err(|e| ctx.guest_error(e, "while uploading the lab's payload"))?;
    }
    phases::setup(ctx, guest).await?;
    let kdump_loaded = exhaust::arm(ctx, guest).await?;
    instruments::set_up(ctx, guest).await;
    phases::load_modules(ctx, guest, &booted.modules, kdump_loaded).await?;
    // workload + sample, and the dump when the phase ends in exhaustion, a
    // hang or a panic.
    phases::workload(ctx, &shared, kdump_loaded, &booted).await?;
    // An attribution pass's outputs; the modules out again.
    instruments::collect(ctx, guest).await;
    phases::unload_modules(ctx, guest, &booted.modules).await;
    Ok(())
}

/// The guest up: QEMU booted by `prepare` and `boot`, or the scripted
/// guest the arm was given.
async fn bring_up(ctx: &mut Ctx) -> Result<(Arc<dyn GuestOps>, phases::Booted), RunError> {
    let (guest, booted) = match ctx.source.clone() {
        GuestSource::Qemu => {
            let mut prepared = prepare::prepare(ctx).await?;
            let ready = boot::bring_up(ctx, &mut prepared).await?;
            ctx.timings.init = ready.booted.init;
            ctx.timings.qemu_start = ready.booted.started.duration_since(ctx.run_start).as_secs_f64();
            let guest: Arc<dyn GuestOps> = Arc::new(ctx.guest()?);
            (guest, phases::Booted::of(prepared, ready.upload_payload))
        }
        #[cfg(test)]
        GuestSource::Scripted(make) => {
            let name = ctx.dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            make(&name)
        }
    };
    ctx.ops = Some(guest.clone());
    Ok((guest, booted))
}

impl Ctx {
    /// The running guest (a handle on it).
    fn guest(&self) -> Result<Guest, RunError> {
        self.guest.clone().ok_or_else(|| RunError::Join("no guest: QEMU is not running".into()))
    }

    /// The kernel's name, for errors.
    fn kernel_name(&self) -> String {
        self.manifest.kernel.as_ref().map_or_else(|| self.lab.kernel.clone(), |k| k.name.clone())
    }

    /// A failed operation on the guest as the run's error: a lost guest
    /// with the reason (the panic line first) and the console's tail, or
    /// the SSH error of a guest that is still there.
    fn guest_error(&self, e: GuestError, during: &str) -> RunError {
        match e {
            GuestError::Lost(lost) => {
                RunError::GuestDied { during: during.to_string(), reason: lost.to_string(), console: fsx::tail_lines(&self.dir.join(CONSOLE), 30) }
            }
            GuestError::Ssh(source) => RunError::Ssh { kernel: self.kernel_name(), source },
            GuestError::Join(e) => RunError::Join(e),
        }
    }
}

/// Stops the run's guest (QMP `quit`, a grace period, SIGKILL to its
/// process group, reap), if one is running.
async fn stop_guest(ctx: &mut Ctx) {
    let vm = ctx.guest.take();
    let stopped = match (ctx.ops.take(), vm) {
        (Some(ops), _) => ops.shutdown().await,
        (None, Some(vm)) => vm.shutdown().await,
        (None, None) => return,
    };
    ctx.events.emit(Event::Teardown { how: stopped.how.into(), secs: stopped.secs });
}

/// The end of every run: the guest stopped, its scratch disk gone.
async fn teardown(ctx: &mut Ctx) {
    stop_guest(ctx).await;
    // The churn disk is scratch space, possibly gigabytes once written.
    let _ = std::fs::remove_file(ctx.dir.join("churn.img"));
}

fn finish(ctx: Ctx, result: Result<(), RunError>, start: Instant) -> RunEnd {
    let (exit_code, error, outcome) = match &result {
        Ok(()) => (crate::exit::OK, None, "completed"),
        Err(e @ RunError::Interrupted(_)) => (e.exit_code(), Some(e.chain()), "interrupted"),
        Err(e) => (e.exit_code(), Some(e.chain()), "failed"),
    };
    if let Some(e) = &error {
        ctx.events.emit(Event::Error { message: e.clone() });
    }
    let mut timings = ctx.timings.clone();
    timings.total = start.elapsed().as_secs_f64();
    let samples = ctx.store.as_ref().map(|s| s.lock().unwrap().count).unwrap_or(0);
    let gaps = *ctx.gaps.lock().unwrap();
    let _ = fsx::write_atomic(&crate::outcome::layout::manifest_json(&ctx.dir), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default());
    let mut rep = record::build(&ctx.dir.path, &ctx.lab, &ctx.manifest, outcome, exit_code, error.clone(), samples, gaps, timings);
    // Paths in the record are relative to the run directory.
    rep.dump = ctx.dump.clone().map(|d| d.recorded_in(&ctx.dir.path));
    rep.triage = ctx.triage.clone().map(|t| t.recorded_in(&ctx.dir.path));
    rep.triage_skipped = ctx.triage_skipped.clone();
    rep.exhaustion = ctx.exhaustion.clone();
    if let Err(e) = fsx::write_atomic(&crate::outcome::layout::report_json(&ctx.dir), &serde_json::to_vec_pretty(&rep).unwrap_or_default()) {
        tracing::error!("cannot write report.json: {e}");
    }
    // Last: the reporters (the page, the summary) read the records now complete.
    ctx.events.emit(Event::RunFinished { outcome: outcome.into(), exit_code });
    RunEnd { dir: Some(ctx.dir.path.clone()), exit_code, error, outcome: Some(rep), leak: None }
}

fn write(path: &Path, data: &[u8]) -> Result<(), RunError> {
    fsx::write_atomic(path, data).map_err(|source| RunError::Write { path: path.to_path_buf(), source })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, RunError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| RunError::Join(e.to_string()))
}

fn fmt_status(st: Option<std::process::ExitStatus>) -> String {
    st.map(|s| s.to_string()).unwrap_or_else(|| "still running".into())
}
