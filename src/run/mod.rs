//! One run: one lab on one kernel, end to end. Resolve the kernel, build the
//! image, boot QEMU, wait for SSH, run the setup, then the workload while
//! sampling, tear the VM down, and write the report. Everything collected is
//! on disk as it arrives; teardown and the report happen on every path out,
//! errors and Ctrl-C included.

pub mod ab;
mod boot;
pub mod error;
mod exhaust;
pub mod record;
pub mod rundir;
mod sampler;
pub mod snapshot;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use error::RunError;
use crate::outcome::event::{self as events, Event, Events};
pub use crate::outcome::run::{BootManifest, Manifest, RunOutcome};
use rundir::RunDir;
use snapshot::{SnapshotManifest, SnapshotMode};
use boot::{boot_cold, connector, give_up_restore, kernel_image_id, restore, set_snapshot, upload, Cold, Ready, RestoreFailure};
pub use sampler::Backoff;
pub(crate) use sampler::SamplerEnd;
use sampler::Sampler;

use crate::cache::Cache;
use crate::guest::{wait_for_banner, GuestSession};
use crate::image::{self, tree::Tree, RunKeys};
use crate::payload;
use crate::kernel::{self, Kernel, Registry};
use crate::lab::{self, Lab};
use crate::kernel::vmlinux::{self, BootImages, ImageFormat};
use crate::qemu::machine::{self as qmachine, Driver, KernelFacts, LabNeeds};
use crate::qemu::{self, accel, Accel, AccelChoice, Device, HostTsc, Machine, MachineChoice, Qemu, VmSpec};
use crate::qmp::{Qmp, QmpEvent};
use crate::sample::parse::{self as sparse, Section};
use crate::sample::store::SampleStore;
use crate::snapshot::{KeyInputs, Lookup};
use crate::util::{fsx, tool};

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
}

/// How a run ended, for the exit code and the caller's own use; what it
/// found is in its run directory's records (see `crate::outcome`).
#[derive(Debug)]
pub struct RunEnd {
    pub dir: Option<PathBuf>,
    pub exit_code: i32,
    pub error: Option<String>,
    /// A plain run's `report.json`, as written (None for an A/B lab, whose
    /// record is its `LeakReport`, and for a run that never started).
    pub outcome: Option<RunOutcome>,
}

/// The devices every VM of the minimal image gets.
const DEVICES: [Device; 3] = [Device::Net, Device::Balloon, Device::Pvpanic];
const CONSOLE: &str = "console.log";
const QMP_SOCKET: &str = "qmp.sock";
const SSH_TIMEOUT: Duration = Duration::from_secs(20);
/// A boot that hangs or dies once is tried again once, with the reason logged.
const BOOT_ATTEMPTS: u32 = 2;
const PORT_ATTEMPTS: u32 = 5;

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
    qemu: Option<Qemu>,
    qmp: Option<Arc<Qmp>>,
    /// Set by the QMP event router when the guest panics or QEMU shuts down.
    fatal: watch::Receiver<Option<String>>,
    fatal_tx: watch::Sender<Option<String>>,
    /// Names of the QMP events seen so far, in order.
    qmp_seen: Arc<Mutex<Vec<String>>>,
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
}

/// Runs one lab: a plain lab as one arm, an A/B leak lab as two. Its events
/// go to `events` (whose clock is the run's); what it found is on disk in
/// its run directory when this returns, on every path out.
pub async fn run(opts: RunOptions, events: &Events, cancel: CancellationToken) -> RunEnd {
    let start = Instant::now();
    let events = &events.restarted(start);
    // Nothing started, no run directory: the caller says the error.
    let fail_early = |e: RunError| RunEnd { dir: None, exit_code: e.exit_code(), error: Some(e.chain()), outcome: None };
    let mut lab = match lab::load(&opts.lab_file) {
        Ok(l) => l,
        Err(e) => return fail_early(e.into()),
    };
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
    let arm = Arm { lab, lab_file: opts.lab_file.clone(), desc, cache, dir, events: events.clone(), decided: CancellationToken::new() };
    if arm.lab.leak.is_some() {
        return ab::run_ab(arm, cancel, start).await;
    }
    run_arm(arm, cancel, start).await
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
}

pub(crate) async fn run_arm(arm: Arm, cancel: CancellationToken, start: Instant) -> RunEnd {
    let Arm { lab, lab_file, desc, cache, dir, events, decided } = arm;
    events.emit(Event::RunStarted { lab: lab.name.clone(), kernel: lab.kernel.clone(), run_dir: dir.path.display().to_string() });

    let (fatal_tx, fatal) = watch::channel(None);
    let lab_text = std::fs::read(&lab_file).unwrap_or_default();
    let mut ctx = Ctx {
        manifest: Manifest {
            kernlab_version: env!("CARGO_PKG_VERSION").to_string(),
            lab_name: lab.name.clone(),
            lab_file: lab_file.display().to_string(),
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
        qemu: None,
        qmp: None,
        fatal,
        fatal_tx,
        qmp_seen: Arc::new(Mutex::new(Vec::new())),
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
    };

    let result = tokio::select! {
        r = execute(&mut ctx, &desc) => r,
        _ = cancel.cancelled() => Err(RunError::Interrupted("signal".into())),
    };
    if let Err(RunError::Interrupted(_)) = &result {
        ctx.events.emit(Event::Interrupted { signal: "SIGINT/SIGTERM".into() });
    }
    teardown(&mut ctx).await;
    finish(ctx, result, start)
}

/// The phases up to the end of the workload. Returns at the first error;
/// the caller tears down.
async fn execute(ctx: &mut Ctx, desc: &kernel::Descriptor) -> Result<(), RunError> {
    let lab_yaml = ctx.lab.to_yaml();
    write(&ctx.dir.join("lab.yaml"), lab_yaml.as_bytes())?;

    // Kernel.
    let t = Instant::now();
    let (cache, d) = (ctx.cache.clone(), desc.clone());
    let kernel = blocking(move || kernel::fetch(&cache, &d)).await??;
    ctx.timings.kernel = t.elapsed().as_secs_f64();
    ctx.events.emit(Event::KernelReady {
        name: kernel.name.clone(),
        release: kernel.release.clone(),
        package_sha256: kernel.package_sha256.clone(),
        secs: ctx.timings.kernel,
    });
    ctx.manifest.kernel = Some(kernel.clone());

    // The lab's payload, built against this kernel: modules, workload programs.
    let mut payload = Tree::new();
    let mut modules = Vec::new();
    if !ctx.lab.modules.is_empty() {
        let (cache, d, k) = (ctx.cache.clone(), desc.clone(), kernel.clone());
        let build_dir = blocking(move || kernel::headers::build_dir(&cache, &d, &k)).await??;
        let base = ctx.lab_file.parent().map(Path::to_path_buf).unwrap_or_default();
        for m in ctx.lab.modules.clone() {
            let t = Instant::now();
            let (cache, k, b, src) = (ctx.cache.clone(), kernel.clone(), build_dir.clone(), base.join(&m.source));
            let built = blocking(move || payload::build_module(&cache, &k.name, &k.package_sha256, &b, &src)).await??;
            ctx.events.emit(Event::ModuleBuilt {
                name: built.name.clone(),
                sha256: built.sha256.clone(),
                cached: built.cached,
                secs: t.elapsed().as_secs_f64(),
            });
            // insmod ignores parameters a module does not have (with a
            // warning in dmesg); a typo in a lab must not pass silently.
            let known = payload::module_params(&built.ko)?;
            if let Some(p) = m.params.keys().find(|p| !known.contains(p)) {
                return Err(RunError::ModuleParam { module: built.name.clone(), param: p.clone(), known: known.join(", ") });
            }
            let data = std::fs::read(&built.ko).map_err(|source| RunError::Write { path: built.ko.clone(), source })?;
            payload.file(&format!("{GUEST_MODULES}/{}.ko", built.name), 0o644, data);
            modules.push((built, m.params));
        }
    }
    if ctx.lab.workload.as_ref().is_some_and(|w| w.churn.is_some()) {
        let cache = ctx.cache.clone();
        let churn = blocking(move || payload::build_program(&cache, "churn", CHURN_C.as_bytes())).await??;
        let data = std::fs::read(&churn).map_err(|source| RunError::Write { path: churn.clone(), source })?;
        payload.file("/usr/bin/churn", 0o755, data);
    }

    // Accelerator, kernel image and machine profile.
    let host = qemu::HostAccel::detect();
    let requested = match ctx.lab.vm.accel {
        lab::Accel::Auto => accel::Requested::Auto,
        lab::Accel::Kvm => accel::Requested::Kvm,
        lab::Accel::Tcg => accel::Requested::Tcg,
    };
    let marker = accel::kvm_failed_marker(&ctx.cache, &kernel.vmlinuz_sha256);
    let kvm_failed = std::fs::read_to_string(&marker).ok();
    let mut choice = accel::choose_for_kernel(requested, &host, kvm_failed.as_deref());
    ctx.manifest.host_accel = Some(host);
    let images = if ctx.lab.vm.kernel_format == lab::KernelFormat::Bzimage {
        BootImages {
            bzimage: kernel.vmlinuz(),
            vmlinux: None,
            compression: None,
            pvh: None,
            note: "the lab asks for the bzImage (vm.kernel_format)".into(),
        }
    } else {
        let (cache, k) = (ctx.cache.clone(), kernel.clone());
        blocking(move || vmlinux::boot_images(&cache, &k)).await?
    };
    let profile = boot_profile(&ctx.lab, &kernel, images, choice.accel).map_err(|reason| RunError::Profile { kernel: kernel.name.clone(), reason })?;
    ctx.events.emit(Event::BootProfile {
        machine: profile.machine.machine.to_string(),
        kernel_image: profile.image.to_string(),
        reason: format!("{}; {}", profile.machine.reason, profile.image_reason),
    });
    let machine = profile.machine.machine;

    // Image (the SSH keys go on top of it when the guest boots).
    let t = Instant::now();
    let (cache, k) = (ctx.cache.clone(), kernel.clone());
    let devices = devices(&ctx.lab, machine);
    let early: Vec<&'static str> = Device::Net.driver_modules(machine).to_vec();
    let late: Vec<&'static str> = devices.iter().flat_map(|d| d.driver_modules(machine).iter().copied()).collect();
    let kdump = exhaust::kdump_wanted(&ctx.lab);
    let extra: Vec<&'static str> = if kdump { vec!["/usr/sbin/kexec"] } else { vec![] };
    let image = blocking(move || image::build_minimal(&cache, &k, &early, &late, &extra)).await??;
    let dump_disk = if kdump { Some(exhaust::prepare_disk(ctx, &kernel).await?) } else { None };
    let churn_disk = match ctx.lab.workload.as_ref().and_then(|w| w.churn.as_ref()) {
        Some(c) if c.fs == lab::ChurnFs::Ext4 => {
            let path = ctx.dir.join("churn.img");
            let (p, size) = (path.clone(), c.disk);
            blocking(move || crate::dump::make_ext4(&p, size, CHURN_LABEL)).await??;
            Some(path)
        }
        _ => None,
    };
    ctx.timings.image = t.elapsed().as_secs_f64();
    ctx.events.emit(Event::ImageReady {
        sha256: image.sha256.clone(),
        bytes: image.size,
        modules: image.modules.len(),
        secs: ctx.timings.image,
    });
    ctx.manifest.image_sha256 = Some(image.sha256.clone());
    ctx.manifest.image_bytes = Some(image.size);
    ctx.manifest.image_modules = image.modules.clone();

    // QEMU.
    let qemu_bin = qemu::binary();
    let qemu_version = qemu::qemu_version(&qemu_bin).map_err(RunError::QemuVersion)?;
    ctx.manifest.qemu_version = Some(qemu_version.clone());

    let mut spec = VmSpec {
        qemu: qemu_bin,
        name: format!("kernlab-{}", ctx.lab.name),
        accel: choice.accel,
        machine,
        memory_mib: ctx.lab.vm.memory / (1024 * 1024),
        cpus: ctx.lab.vm.cpus,
        kernel: profile.path.clone(),
        initrd: "initrd.cpio".into(),
        cmdline: qemu::argv::cmdline(
            &qemu::CmdlineOpts { fast_boot: ctx.lab.vm.fast_boot, machine, tsc_khz: profile.host_tsc.as_ref().map(|t| t.khz) },
            &extra_cmdline(&ctx.lab),
        ),
        qmp_socket: QMP_SOCKET.into(),
        console_log: CONSOLE.into(),
        ssh_port: 0,
        devices,
        dump_disk,
        churn_disk: churn_disk.clone(),
        pause_on_panic: ctx.lab.exhaustion.as_ref().is_some_and(|x| x.action != lab::DumpAction::None),
        snapshot: false,
        incoming: None,
    };
    ctx.manifest.boot = Some(BootManifest {
        machine,
        machine_reason: profile.machine.reason.clone(),
        kernel_image: profile.image,
        kernel_image_path: profile.path.display().to_string(),
        kernel_image_reason: profile.image_reason.clone(),
        images: profile.images.clone(),
        fast_boot: ctx.lab.vm.fast_boot,
        fast_boot_flags: if ctx.lab.vm.fast_boot { qemu::argv::FAST_BOOT_FLAGS.iter().map(|s| s.to_string()).collect() } else { vec![] },
        host_tsc: profile.host_tsc.clone(),
        attempts: 0,
        retries: vec![],
        snapshot: None,
    });

    // The guest: restored from the cached snapshot of this kernel, image and
    // VM shape, or booted cold (and saved as that snapshot when the lab
    // allows one). A restore that fails falls back to a cold boot.
    let snapshot_key = match snapshot::allowed(&ctx.lab, &spec) {
        Ok(()) => {
            // A bad cap is the user's error, said before anything is booted.
            crate::snapshot::max_bytes_from_env().map_err(RunError::Usage)?;
            spec.snapshot = true;
            Some(KeyInputs::new(&spec, kernel_image_id(profile.image, &kernel), &image.sha256, &qemu_version).key())
        }
        Err(reason) => {
            set_snapshot(ctx, SnapshotManifest { mode: SnapshotMode::Cold, reason, key: None, entry: None, state_bytes: None, secs: None, fallback: None });
            None
        }
    };
    let mut ready = None;
    let mut fallback = None;
    if let Some(key) = &snapshot_key {
        let (cache, k) = (ctx.cache.clone(), key.clone());
        match blocking(move || crate::snapshot::lookup(&cache, &k)).await? {
            Lookup::Missing => {}
            Lookup::Unusable(reason) => fallback = Some(give_up_restore(ctx, key, None, reason).await),
            Lookup::Found(entry) => match restore(ctx, &mut spec, &kernel, &image, &entry, &choice).await {
                Ok(r) => ready = Some(r),
                Err(RestoreFailure::Run(e)) => return Err(e),
                Err(RestoreFailure::Failed(reason)) => fallback = Some(give_up_restore(ctx, key, Some(&entry.meta), reason).await),
            },
        }
    }
    let ready = match ready {
        Some(r) => r,
        None => {
            let cold = Cold {
                kernel: &kernel,
                kernel_image: kernel_image_id(profile.image, &kernel),
                image: &image,
                qemu_version: &qemu_version,
                payload: &payload,
                requested,
                save: snapshot_key.as_deref(),
                fallback,
            };
            boot_cold(ctx, &mut spec, &mut choice, cold).await?
        }
    };
    let Ready { booted: boot, keys, control, upload_payload } = ready;
    ctx.timings.init = boot.init;
    ctx.timings.qemu_start = boot.started.duration_since(ctx.run_start).as_secs_f64();
    let addr: SocketAddr = ([127, 0, 0, 1], spec.ssh_port).into();
    let connect = connector(addr, keys, kernel.name.clone(), SSH_TIMEOUT);
    if upload_payload && !payload.is_empty() {
        // A snapshot's guest has only the base image: the lab's modules and
        // programs go in now, where the initrd would have put them.
        let (c, p) = (control.clone(), payload.clone());
        blocking(move || upload(&c, &p)).await?.map_err(|source| RunError::Ssh { kernel: kernel.name.clone(), source })?;
    }

    // Setup commands, in order; the first failure stops the run.
    for (index, command) in ctx.lab.setup.clone().into_iter().enumerate() {
        let t = Instant::now();
        let (s, c) = (control.clone(), command.clone());
        let out = blocking(move || s.exec(&c, Duration::from_secs(300)))
            .await?
            .map_err(|source| RunError::Ssh { kernel: kernel.name.clone(), source })?;
        ctx.events.emit(Event::SetupCommand { index, command: command.clone(), status: out.status, secs: t.elapsed().as_secs_f64() });
        if !out.success() {
            return Err(RunError::Setup { index, command, status: out.status, stderr: out.stderr.trim().to_string() });
        }
    }

    // Panics become dumps: sysctls, and the capture kernel for kdump.
    let kdump_loaded = exhaust::arm(ctx, &control).await?;

    // The modules under test, in order, after setup.
    for (built, params) in &modules {
        let t = Instant::now();
        let cmd = insmod_command(&built.name, params);
        let c = control.clone();
        let out = blocking(move || c.exec(&format!("{cmd}; s=$?; [ $s = 0 ] || dmesg | tail -n 20 >&2; exit $s"), Duration::from_secs(60)))
            .await?
            .map_err(|source| RunError::Ssh { kernel: kernel.name.clone(), source })?;
        if !out.success() {
            return Err(RunError::ModuleLoad {
                name: built.name.clone(),
                kernel: kernel.name.clone(),
                status: out.status,
                stderr: out.stderr.trim().to_string(),
            });
        }
        let c = control.clone();
        let taint = blocking(move || c.exec("cat /proc/sys/kernel/tainted", Duration::from_secs(10)))
            .await?
            .ok()
            .and_then(|o| o.stdout.trim().parse::<u64>().ok());
        ctx.events.emit(Event::ModuleLoaded {
            name: built.name.clone(),
            params: params.clone(),
            tainted: taint,
            secs: t.elapsed().as_secs_f64(),
        });
    }

    // Sampling, alongside the workload when there is one.
    let sections = sections(&ctx.lab);
    let balloon = ctx.lab.monitor.sources.contains(&lab::Source::Balloon);
    let store = SampleStore::open(&ctx.dir.join("samples"), &sections, balloon)
        .map_err(|source| RunError::Write { path: ctx.dir.join("samples"), source })?;
    let store = Arc::new(Mutex::new(store));
    ctx.store = Some(store.clone());
    if balloon {
        if let Some(q) = &ctx.qmp {
            let secs = ctx.lab.monitor.interval.as_secs().max(1);
            if let Err(e) = q.enable_balloon_stats(secs).await {
                tracing::warn!("balloon statistics unavailable: {e}");
            }
        }
    }
    let sampler = Sampler {
        events: ctx.events.clone(),
        store,
        qmp: if balloon { ctx.qmp.clone() } else { None },
        command: capture_command(&ctx.lab, &sections),
        session: Some(control.clone()),
        connect: Box::new(connect.clone()),
        gaps: ctx.gaps.clone(),
        headroom: ctx.lab.exhaustion.as_ref().map(|x| x.headroom).filter(|h| *h > 0),
        hang_intervals: ctx.lab.exhaustion.as_ref().filter(|x| x.action != lab::DumpAction::None).map(|x| x.hang_intervals),
        backoff: Backoff::default(),
        gap_since: None,
        decided: ctx.decided.clone(),
    };
    // The workload phase's limit: its duration, or for a lab that runs until
    // exhaustion the most it may take to get there (`exhaustion.max`).
    let limit = ctx.lab.phase_limit();
    let until = ctx.lab.exhaustion.as_ref().is_some_and(|x| x.until);
    let mut workload_done: Option<tokio::sync::oneshot::Receiver<(Option<i32>, f64)>> = None;
    let workload = match &ctx.lab.workload {
        Some(w) => {
            let session = Arc::new(blocking(connect.clone()).await??);
            ctx.events.emit(Event::WorkloadStarted { commands: w.commands.len(), duration_secs: limit.as_secs_f64(), until_exhaustion: until });
            let body = workload_file(&workload_commands(w, limit));
            let s = session.clone();
            blocking(move || s.upload(Path::new(WORKLOAD_SCRIPT), body.as_bytes(), 0o700, Duration::from_secs(30)))
                .await?
                .map_err(|source| RunError::Ssh { kernel: kernel.name.clone(), source })?;
            let script = workload_command();
            let log = ctx.dir.join("workload.log");
            let events = ctx.events.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            workload_done = Some(done_rx);
            Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let res = session.exec(&script, limit + Duration::from_secs(60));
                let status = match &res {
                    Ok(out) => {
                        let text = session
                            .exec(&format!("tail -c 1048576 {WORKLOAD_LOG}"), Duration::from_secs(30))
                            .map(|o| o.stdout)
                            .unwrap_or_else(|e| format!("cannot fetch the workload log: {e}\n"));
                        let _ = fsx::write_atomic(&log, text.as_bytes());
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
    let mut fatal = ctx.fatal.clone();
    let interval = ctx.lab.monitor.interval;
    let phase_start = Instant::now();
    let sampling = sampler.run(interval, limit);
    tokio::pin!(sampling);
    let sampled = loop {
        tokio::select! {
            r = &mut sampling => break r,
            r = fatal.wait_for(|f| f.is_some()) => break Err(r.map(|f| f.clone().unwrap_or_default()).unwrap_or_default()),
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
    if let Ok(SamplerEnd::WorkloadFailed { status, secs }) = sampled {
        if let Some(w) = workload {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        let log = fsx::tail_lines(&ctx.dir.join("workload.log"), 20);
        return Err(RunError::Workload { status, secs, log });
    }
    let dumps = ctx.lab.exhaustion.as_ref().is_some_and(|x| x.action != lab::DumpAction::None);
    let trigger = match (&sampled, dumps) {
        (Ok(SamplerEnd::Done), _) => None,
        (Ok(end), true) => Some(exhaust::Trigger::from_sampler(end)),
        (Err(reason), true) => Some(exhaust::Trigger::Panicked(reason.clone())),
        (Ok(end), false) => Some(exhaust::Trigger::from_sampler(end)),
        (Err(_), false) => None,
    };
    // A guest that died without a dump to take fails the run below; every
    // other end of a watched phase says whether the guest ran out of memory.
    let watched = ctx.lab.exhaustion.as_ref().is_some_and(lab::Exhaustion::watched);
    if watched && ctx.lab.workload.is_some() && (sampled.is_ok() || dumps) {
        if trigger.is_none() {
            ctx.events.emit(Event::NoExhaustion { within_secs: limit.as_secs_f64(), until_exhaustion: until });
        }
        ctx.exhaustion = Some(crate::outcome::run::ExhaustionOutcome {
            until,
            reached: trigger.is_some(),
            within_secs: limit.as_secs_f64(),
            after_secs: trigger.as_ref().map(|_| events::round3(phase_start.elapsed().as_secs_f64())),
            trigger: trigger.as_ref().map(exhaust::Trigger::describe),
        });
    }
    if let (Some(t), true) = (&trigger, dumps) {
        exhaust::collect(ctx, &control, t.clone(), kdump_loaded).await?;
    }
    if let Some(w) = workload {
        // The duration is over: end the workload's process group, then give
        // its SSH exec a bounded grace to return.
        if matches!(sampled, Ok(SamplerEnd::Done)) {
            let c = control.clone();
            let _ = blocking(move || c.exec(&workload_stop(), Duration::from_secs(10))).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(if trigger.is_some() { 3 } else { 30 }), w).await;
    }
    if !dumps {
        if let Err(reason) = sampled {
            let console = fsx::tail_lines(&ctx.dir.join(CONSOLE), 30);
            return Err(RunError::GuestDied { reason, console });
        }
    }
    Ok(())
}

/// Which `/proc` sections a lab samples (uptime always, to place samples in guest time).
fn sections(lab: &Lab) -> Vec<Section> {
    let mut s = vec![Section::Uptime];
    for src in &lab.monitor.sources {
        match src {
            lab::Source::Slabinfo => s.push(Section::Slabinfo),
            lab::Source::Meminfo => s.push(Section::Meminfo),
            lab::Source::DentryState => s.push(Section::DentryState),
            lab::Source::Balloon => {}
        }
    }
    if lab.workload.as_ref().is_some_and(|w| w.churn.is_some()) {
        s.push(Section::Ops);
    }
    s
}

/// The guest directory for the lab's modules.
const GUEST_MODULES: &str = "/opt/kernlab/modules";

/// The churn workload's source, built into a static binary for the guest.
const CHURN_C: &str = include_str!("../../labs/workloads/churn.c");

/// The devices a lab's VM gets on `machine`: the base set that the machine
/// has, plus the dump disk for kdump and the churn disk.
fn devices(lab: &Lab, machine: Machine) -> Vec<Device> {
    let mut d: Vec<Device> = DEVICES.iter().copied().filter(|d| d.available_on(machine)).collect();
    if exhaust::kdump_wanted(lab) {
        d.push(Device::DumpDisk);
    }
    if lab.workload.as_ref().and_then(|w| w.churn.as_ref()).is_some_and(|c| c.fs == lab::ChurnFs::Ext4) {
        d.push(Device::ChurnDisk);
    }
    d
}

/// A run's kernel image and machine, each with its reason.
struct BootProfile {
    machine: MachineChoice,
    image: ImageFormat,
    path: PathBuf,
    image_reason: String,
    images: BootImages,
    host_tsc: Option<HostTsc>,
}

/// Puts the kernel facts, the lab's needs and the host's TSC into the pure
/// machine choice, then picks the image that machine boots.
fn boot_profile(lab: &Lab, kernel: &Kernel, images: BootImages, accel: Accel) -> Result<BootProfile, String> {
    let config = std::fs::read_to_string(kernel.config()).unwrap_or_default();
    let virtio_mmio = match vmlinux::config_enabled(&config, "CONFIG_VIRTIO_MMIO") {
        Some('y') => Driver::BuiltIn,
        Some(_) => Driver::Module,
        None => Driver::Absent,
    };
    let facts = KernelFacts { vmlinux: images.vmlinux.as_ref().map(|_| ()).ok_or_else(|| images.note.clone()), virtio_mmio };
    let needs = LabNeeds {
        requested: match lab.vm.machine {
            lab::MachineProfile::Auto => qmachine::Requested::Auto,
            lab::MachineProfile::Pc => qmachine::Requested::Pc,
            lab::MachineProfile::Microvm => qmachine::Requested::Microvm,
        },
        panic_devices: lab.exhaustion.as_ref().is_some_and(|x| x.action != lab::DumpAction::None),
        accel,
    };
    let host_tsc = HostTsc::detect();
    let machine = qmachine::choose(&facts, &needs, host_tsc.as_ref().map(|t| t.khz)).map_err(|e| e.to_string())?;
    let (image, image_reason) = match (&images.vmlinux, lab.vm.kernel_format) {
        (_, lab::KernelFormat::Bzimage) => (ImageFormat::Bzimage, "the lab asks for the bzImage (vm.kernel_format)".to_string()),
        (Some(_), _) => (ImageFormat::Vmlinux, images.note.clone()),
        (None, lab::KernelFormat::Vmlinux) => return Err(format!("vm.kernel_format: vmlinux is not possible here: {}", images.note)),
        (None, _) => (ImageFormat::Bzimage, images.note.clone()),
    };
    let path = match image {
        ImageFormat::Vmlinux => images.vmlinux.clone().expect("matched above"),
        ImageFormat::Bzimage => images.bzimage.clone(),
    };
    Ok(BootProfile { machine, image, path, image_reason, images, host_tsc })
}

/// The ext4 label of the churn disk; the guest finds it with `findfs`.
const CHURN_LABEL: &str = "kernlab-churn";

/// Kernel command-line words from the lab, plus `slub_nomerge` for leak labs
/// (so each slab cache is counted on its own) and the crash kernel
/// reservation for kdump labs.
fn extra_cmdline(lab: &Lab) -> Vec<String> {
    let mut words = exhaust::cmdline(lab);
    words.extend(lab.vm.cmdline.iter().cloned());
    if lab.leak.as_ref().is_some_and(|l| l.slub_nomerge) && !words.iter().any(|w| w == "slub_nomerge") {
        words.push("slub_nomerge".into());
    }
    words
}

/// The sampling command: optionally drop reclaimable caches first, so what
/// the sample sees is what is held.
fn capture_command(lab: &Lab, sections: &[Section]) -> String {
    let mut cmd = String::new();
    // The workload is paused while the slabs are flushed and read: an
    // allocation between the flush and the read would take a fresh CPU
    // slab and count it whole again.
    let quiesce = lab.workload.is_some() && (lab.monitor.shrink || !lab.monitor.quiesce.is_zero());
    if quiesce {
        cmd.push_str(&format!("w=$(cat {WORKLOAD_PID} 2>/dev/null); [ -n \"$w\" ] && kill -STOP -- -$w 2>/dev/null; "));
        if !lab.monitor.quiesce.is_zero() {
            cmd.push_str(&format!("sleep {:.3}; ", lab.monitor.quiesce.as_secs_f64()));
        }
    }
    if lab.monitor.reclaim {
        cmd.push_str("sync; echo 2 > /proc/sys/vm/drop_caches; ");
    }
    // After the reclaim, so that what it freed is flushed too, and right
    // before the slab section.
    let shrink = if lab.monitor.shrink { "for f in /sys/kernel/slab/*/shrink; do echo 1 > $f; done 2>/dev/null; " } else { "" };
    cmd.push_str(&sparse::capture_command_with(sections, shrink));
    if quiesce {
        // Resume whatever the capture did; its status is the command's.
        cmd = format!("{{ {cmd}; }}; rc=$?; [ -n \"$w\" ] && kill -CONT -- -$w 2>/dev/null; exit $rc");
    }
    cmd
}

/// The kernel's panic line in console text (`Kernel panic - not syncing: …`),
/// without the printk timestamp.
/// Whether a boot whose guest died is worth one more try, from its console:
/// it printed (the kernel ran) and did not panic.
fn worth_a_retry(console: &[u8]) -> bool {
    !console.is_empty() && console_panic(&String::from_utf8_lossy(console)).is_none()
}

pub fn console_panic(console: &str) -> Option<String> {
    let line = console.lines().find(|l| l.contains("Kernel panic - not syncing"))?;
    let at = line.find("Kernel panic")?;
    Some(line[at..].trim().to_string())
}

/// `insmod` of a lab module with its parameters, each `name=value` one quoted word.
/// The guest shell sees data only: each `name=value` is one single-quoted
/// word. The kernel then splits the joined arguments at blanks unless a
/// value is in double quotes, so a value with blanks is wrapped in them
/// (lab validation refuses values that contain a double quote).
pub fn insmod_command(name: &str, params: &std::collections::BTreeMap<String, String>) -> String {
    let mut cmd = format!("insmod {GUEST_MODULES}/{name}.ko");
    for (k, v) in params {
        let v = if v.chars().any(char::is_whitespace) { format!("\"{v}\"") } else { v.clone() };
        cmd.push(' ');
        cmd.push_str(&tool::shell_quote(format!("{k}={v}")));
    }
    cmd
}

/// The workload's guest commands: the churn program (in the background when
/// there are commands too) on a fresh tmpfs, then the lab's commands. The
/// churn stops by itself after `limit` (the phase's, see
/// [`Lab::phase_limit`]), in case kernlab's stop at that moment is lost.
pub fn workload_commands(w: &lab::Workload, limit: Duration) -> Vec<String> {
    let mut cmds = Vec::new();
    if let Some(c) = &w.churn {
        cmds.push(match c.fs {
            lab::ChurnFs::Tmpfs => "mkdir -p /mnt/churn && mount -t tmpfs -o nr_inodes=0,mode=1777 kernlab-churn /mnt/churn || exit 90".to_string(),
            lab::ChurnFs::Ext4 => {
                format!("mkdir -p /mnt/churn && mount -t ext4 \"$(findfs LABEL={CHURN_LABEL})\" /mnt/churn || exit 90")
            }
        });
        // The churn outlives the sampling by a margin (the run ends it when
        // sampling is over): its exit (the last closes, a hook module's
        // deferred work) must not land in the last samples as a step.
        let mut churn = format!("churn -d /mnt/churn -c {} -t {}", sparse::OPS_FILE, limit.as_secs().max(1) + CHURN_MARGIN_SECS);
        if c.rate > 0 {
            churn.push_str(&format!(" -r {}", c.rate));
        }
        if c.count > 0 {
            churn.push_str(&format!(" -n {}", c.count));
        }
        if c.write > 0 {
            churn.push_str(&format!(" -w {}", c.write));
        }
        if w.commands.is_empty() {
            cmds.push(churn);
        } else {
            cmds.push(format!("{churn} &"));
        }
    }
    cmds.extend(w.commands.iter().cloned());
    if w.churn.is_some() && !w.commands.is_empty() {
        cmds.push("wait".into());
    }
    cmds
}

/// The workload as a guest shell script: the lab's commands, one per line.
/// It is uploaded as a file, so the lab's text reaches the guest as data and
/// is never pasted into a command line of kernlab's own.
/// Seconds the churn runs past the sampling.
const CHURN_MARGIN_SECS: u64 = 15;

pub fn workload_file(commands: &[String]) -> String {
    format!("# written by kernlab: the lab's workload commands\n{}\n", commands.join("\n"))
}

/// The guest command that runs the uploaded workload script. It runs in its
/// own session (`setsid`), so at the end of the duration [`workload_stop`]
/// can end it and everything it started; the shell that waits for it exits
/// normally with the workload's status. Output goes to a guest file rather
/// than the SSH channel, so nothing left behind can hold the channel open;
/// the file is fetched afterwards.
pub fn workload_command() -> String {
    format!("setsid sh {WORKLOAD_SCRIPT} > {WORKLOAD_LOG} 2>&1 < /dev/null & echo $! > {WORKLOAD_PID}; wait $!")
}

/// The guest command that ends the workload's whole process group.
pub fn workload_stop() -> String {
    // CONT after TERM: a workload a broken sample left paused would keep
    // the TERM pending.
    format!("[ -s {WORKLOAD_PID} ] && {{ w=$(cat {WORKLOAD_PID}); kill -TERM -- -$w; kill -CONT -- -$w; }} 2>/dev/null; true")
}

/// Where the workload's output and process id go in the guest.
const WORKLOAD_LOG: &str = "/tmp/kernlab-workload.log";
const WORKLOAD_PID: &str = "/run/kernlab-workload.pid";
const WORKLOAD_SCRIPT: &str = "/run/kernlab-workload.sh";

/// QMP `quit`, a grace period, SIGKILL to the process group, reap.
async fn teardown(ctx: &mut Ctx) {
    let Some(mut q) = ctx.qemu.take() else { return };
    let t = Instant::now();
    let how = if q.try_exited().is_some() {
        "exit"
    } else {
        let asked = match &ctx.qmp {
            Some(qmp) => tokio::time::timeout(Duration::from_secs(2), qmp.quit()).await.is_ok(),
            None => false,
        };
        if asked && q.wait_exit(Duration::from_secs(3)).await.is_some() {
            "qmp-quit"
        } else {
            q.kill().await;
            "sigkill"
        }
    };
    ctx.qmp = None;
    // The churn disk is scratch space, possibly gigabytes once written.
    let _ = std::fs::remove_file(ctx.dir.join("churn.img"));
    ctx.events.emit(Event::Teardown { how: how.into(), secs: t.elapsed().as_secs_f64() });
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
    let _ = fsx::write_atomic(&ctx.dir.join("manifest.json"), &serde_json::to_vec_pretty(&ctx.manifest).unwrap_or_default());
    let mut rep = record::build(&ctx.dir.path, &ctx.lab, &ctx.manifest, outcome, exit_code, error.clone(), samples, gaps, timings);
    rep.dump = ctx.dump.clone();
    rep.triage = ctx.triage.clone();
    rep.triage_skipped = ctx.triage_skipped.clone();
    rep.exhaustion = ctx.exhaustion.clone();
    if let Err(e) = fsx::write_atomic(&ctx.dir.join("report.json"), &serde_json::to_vec_pretty(&rep).unwrap_or_default()) {
        tracing::error!("cannot write report.json: {e}");
    }
    // Last: the reporters (the page, the summary) read the records now complete.
    ctx.events.emit(Event::RunFinished { outcome: outcome.into(), exit_code });
    RunEnd { dir: Some(ctx.dir.path.clone()), exit_code, error, outcome: Some(rep) }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_text_is_a_file_not_a_command_line() {
        let cmds = ["echo $(id); rm -rf /x".to_string(), "echo 'a'".to_string()];
        assert_eq!(workload_file(&cmds), "# written by kernlab: the lab's workload commands\necho $(id); rm -rf /x\necho 'a'\n");
        assert_eq!(
            workload_command(),
            "setsid sh /run/kernlab-workload.sh > /tmp/kernlab-workload.log 2>&1 < /dev/null & echo $! > /run/kernlab-workload.pid; wait $!"
        );
    }

    #[test]
    fn the_panic_line_is_found_in_the_console() {
        let c = "[    0.78] Node 0 DMA32: 0*4kB\n[    0.79] Kernel panic - not syncing: Out of memory and no killable processes...\n[    0.80] CPU: 0 PID: 1\n";
        assert_eq!(console_panic(c).as_deref(), Some("Kernel panic - not syncing: Out of memory and no killable processes..."));
        assert_eq!(console_panic("kernlab: init running\n"), None);
    }

    #[test]
    fn only_a_guest_that_ran_and_did_not_panic_is_booted_again() {
        assert!(!worth_a_retry(b""), "QEMU refused the kernel: the same again");
        assert!(worth_a_retry(b"[    0.30] PCI: System does not support PCI\n"));
        assert!(!worth_a_retry(b"[    1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n"));
    }

    #[test]
    fn insmod_parameters_are_quoted_words() {
        let mut p = std::collections::BTreeMap::new();
        p.insert("leak".to_string(), "1".to_string());
        p.insert("symbol".to_string(), "x; reboot".to_string());
        assert_eq!(insmod_command("khm", &p), "insmod /opt/kernlab/modules/khm.ko leak=1 'symbol=\"x; reboot\"'");
        p.insert("symbol".to_string(), "it's$(x)`y`;z".to_string());
        assert_eq!(insmod_command("khm", &p), "insmod /opt/kernlab/modules/khm.ko leak=1 'symbol=it'\\''s$(x)`y`;z'");
    }
}
