//! The run's one event stream. Every phase emits [`Event`]s; each reporter
//! (the JSON-lines file in the run directory, the terminal and its progress
//! line, the JSON lines on stdout of `--message-format json`) consumes the
//! same stamped events, and none re-derives state. The JSON-lines log is
//! flushed per event, so a killed run keeps every event up to that moment.
//! Every line has the schema [`SCHEMA`], documented in `docs/events.md`.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::Serialize;

use crate::ui::{self, Bar};

/// The schema of an event line, in `events.jsonl` and on stdout. A new
/// event or a new field keeps the version; a renamed or removed one, or a
/// changed meaning, bumps it.
pub const SCHEMA: &str = "kernlab.event/1";

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted { lab: String, kernel: String, run_dir: String },
    KernelReady { name: String, release: String, package_sha256: String, secs: f64 },
    ImageReady { sha256: String, bytes: u64, modules: usize, secs: f64 },
    ModuleBuilt { name: String, sha256: String, cached: bool, secs: f64 },
    AccelChosen { accel: String, reason: String },
    BootProfile { machine: String, kernel_image: String, reason: String },
    BootRetry { attempt: u32, reason: String },
    QemuStarted { pid: i32, ssh_port: u16, attempt: u32 },
    SshReady { secs_since_qemu_start: f64 },
    /// The VM was restored from the cached snapshot `key` (`secs`: QEMU
    /// start → the VM running).
    SnapshotRestored { key: String, bytes: u64, secs: f64 },
    /// A restore failed or the entry was unusable: the entry is removed and
    /// the run boots cold.
    SnapshotFallback { key: String, reason: String },
    /// The freshly booted guest's state was saved (`secs`: the guest was
    /// paused this long) and published as `key` (`published` is false when
    /// another run published the same key first).
    SnapshotSaved { key: String, bytes: u64, secs: f64, published: bool },
    /// Saving failed; the run goes on without a snapshot.
    SnapshotSaveFailed { key: String, reason: String },
    /// A least recently used snapshot was removed to keep all of them under
    /// the cache's cap (`KERNLAB_SNAPSHOTS_MAX_MIB`).
    SnapshotEvicted { key: String, bytes: u64 },
    SetupCommand { index: usize, command: String, status: i32, secs: f64 },
    ModuleLoaded { name: String, params: std::collections::BTreeMap<String, String>, tainted: Option<u64>, secs: f64 },
    KdumpLoaded { crashkernel: u64 },
    KdumpUnavailable { reason: String },
    /// `duration_secs`: how long the phase lasts; with `until_exhaustion`,
    /// the most it lasts (`exhaustion.max`) unless the guest runs out first.
    WorkloadStarted { commands: usize, duration_secs: f64, until_exhaustion: bool },
    Sample { index: u64, t: f64, uptime: Option<f64>, mem_available: Option<u64>, slab: Option<u64>, s_unreclaim: Option<u64>, nr_dentry: Option<u64>, caches: Option<usize> },
    SampleFailed { t: f64, reason: String },
    /// Samples arrive again after `gaps` failed ones spanning `secs`.
    SamplingResumed { gaps: u64, secs: f64 },
    WorkloadFinished { status: Option<i32>, secs: f64 },
    Qmp { name: String, data: serde_json::Value },
    Exhaustion { trigger: String },
    /// The phase reached its limit (`within_secs`) and nothing triggered:
    /// the guest did not run out of memory. `until_exhaustion`: the lab ran
    /// until exhaustion, so its `exhaustion.max` was reached.
    NoExhaustion { within_secs: f64, until_exhaustion: bool },
    PanicTriggered { how: String },
    DumpWritten { via: String, path: String, bytes: u64, secs: f64 },
    Triage { secs: f64, top_cache: Option<String>, panic: Option<String> },
    TriageSkipped { reason: String },
    Interrupted { signal: String },
    Teardown { how: String, secs: f64 },
    Error { message: String },
    RunFinished { outcome: String, exit_code: i32 },
    /// An A/B lab's verdict was decided at a look before its duration: both
    /// arms take one last sample and end their workloads.
    LeakDecided { look: usize, looks: usize, samples: usize, verdict: String },
    /// An A/B lab's verdict, after both arms finished.
    LeakVerdict {
        verdict: Option<String>,
        expect: String,
        expectation_held: Option<bool>,
        delta_bytes_per_hour: Option<f64>,
        bytes_per_op: Option<f64>,
        report: String,
    },
    MatrixStarted { name: String, cells: usize, slots: usize, dir: String },
    CellStarted { lab: String, kernel: String },
    CellFinished { verdict: String, exit_code: i32, secs: f64, error: Option<String>, dir: String },
    MatrixFinished { exit_code: i32, report: String },
}

/// An event with its time since the run (or matrix) started, its
/// wall-clock time, and where it comes from: the matrix cell and the arm of
/// an A/B lab, when it comes from one.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    pub schema: &'static str,
    pub t: f64,
    pub wall: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

pub trait Reporter: Send {
    fn report(&mut self, e: &Stamped);
}

/// Appends each event as one JSON line and flushes.
pub struct JsonLines<W: Write + Send>(pub W);

/// `--message-format json`: each event as one JSON line on stdout.
pub struct JsonStdout;

impl Reporter for JsonStdout {
    fn report(&mut self, e: &Stamped) {
        if let Ok(line) = serde_json::to_string(e) {
            ui::json_line(&line);
        }
    }
}

impl<W: Write + Send> Reporter for JsonLines<W> {
    fn report(&mut self, e: &Stamped) {
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// Short human lines on stderr, and on a terminal one progress line for
/// the run that says what it is doing now (kernel, image, boot, workload
/// with its samples, dump).
pub struct Terminal {
    pub quiet: bool,
    /// Put before every line, e.g. `baseline: ` when arms run side by side.
    pub prefix: String,
    /// Every sample, not every tenth (`-v`).
    pub verbose: bool,
    bar: Bar,
    workload_t: Option<f64>,
}

impl Terminal {
    pub fn new(quiet: bool, label: Option<&str>) -> Terminal {
        Terminal {
            quiet,
            prefix: label.map(|l| format!("{l}: ")).unwrap_or_default(),
            verbose: ui::get().verbose > 0,
            bar: Bar::default(),
            workload_t: None,
        }
    }

    /// The plain line for an event, if it has one.
    pub fn line(&self, e: &Event) -> Option<String> {
        Some(match e {
            Event::RunStarted { lab, kernel, run_dir } => format!("lab {lab} on {kernel} → {run_dir}"),
            Event::KernelReady { release, secs, .. } => format!("kernel {release} ready ({secs:.2} s)"),
            Event::ImageReady { bytes, modules, secs, .. } => {
                format!("image ready: {:.1} MiB, {modules} modules ({secs:.2} s)", *bytes as f64 / 1048576.0)
            }
            Event::AccelChosen { accel, reason } => format!("accel {accel}: {reason}"),
            Event::BootProfile { machine, kernel_image, reason } => format!("machine {machine}, kernel {kernel_image}: {reason}"),
            Event::BootRetry { attempt, reason } => format!("boot attempt {attempt} failed ({reason}); booting once more"),
            Event::ModuleBuilt { name, cached, secs, .. } => {
                format!("module {name} {} ({secs:.2} s)", if *cached { "from the cache" } else { "built" })
            }
            Event::ModuleLoaded { name, params, tainted, .. } => {
                format!("module {name} loaded {params:?}, taint {}", tainted.map(|t| t.to_string()).unwrap_or("-".into()))
            }
            Event::QemuStarted { pid, ssh_port, .. } => format!("QEMU pid {pid}, ssh on 127.0.0.1:{ssh_port}"),
            Event::SshReady { secs_since_qemu_start } => format!("guest ready over SSH {secs_since_qemu_start:.2} s after QEMU start"),
            Event::SnapshotRestored { key, bytes, secs } => {
                format!("restored snapshot {} ({:.1} MiB) in {secs:.2} s", short(key), *bytes as f64 / 1048576.0)
            }
            Event::SnapshotFallback { key, reason } => format!("warning: snapshot {} not restored ({reason}); booting cold", short(key)),
            Event::SnapshotSaved { key, bytes, secs, published } => format!(
                "saved snapshot {} ({:.1} MiB, guest paused {secs:.2} s){}",
                short(key),
                *bytes as f64 / 1048576.0,
                if *published { "" } else { "; another run saved it first" }
            ),
            Event::SnapshotSaveFailed { key, reason } => format!("warning: snapshot {} not saved: {reason}", short(key)),
            Event::SnapshotEvicted { key, bytes } => {
                format!("evicted snapshot {} ({:.1} MiB, least recently used) to stay under the cap", short(key), *bytes as f64 / 1048576.0)
            }
            Event::SetupCommand { index, status, command, .. } => format!("setup[{index}] exit {status}: {command}"),
            Event::WorkloadStarted { duration_secs, until_exhaustion: false, .. } => format!("workload started for {duration_secs:.0} s"),
            Event::WorkloadStarted { duration_secs, until_exhaustion: true, .. } => {
                format!("workload started: until exhaustion, at most {duration_secs:.0} s")
            }
            Event::Sample { index, .. } if !self.verbose && index % 10 != 0 => return None,
            Event::Sample { index, mem_available, s_unreclaim, nr_dentry, .. } => format!(
                "sample {index}: MemAvailable {} KiB, SUnreclaim {} KiB, dentries {}",
                mem_available.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                s_unreclaim.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                nr_dentry.map(|n| n.to_string()).unwrap_or("-".into()),
            ),
            Event::SampleFailed { reason, .. } => format!("sample failed: {reason}"),
            Event::SamplingResumed { gaps, secs } => format!("sampling resumed after {gaps} missed samples ({secs:.1} s)"),
            Event::WorkloadFinished { status, secs } => {
                format!("workload finished after {secs:.1} s, exit {}", status.map(|s| s.to_string()).unwrap_or("unknown (SSH lost)".into()))
            }
            Event::Qmp { name, .. } => format!("QMP event {name}"),
            Event::KdumpLoaded { crashkernel } => format!("kdump loaded ({} MiB reserved)", crashkernel >> 20),
            Event::KdumpUnavailable { reason } => format!("warning: {reason}"),
            Event::Exhaustion { trigger } => format!("exhaustion: {trigger}"),
            Event::NoExhaustion { within_secs, until_exhaustion } => {
                format!("{}: the guest did not run out of memory", super::report::no_exhaustion(*within_secs, *until_exhaustion))
            }
            Event::PanicTriggered { how } => format!("panicking the guest: {how}"),
            Event::DumpWritten { via, path, bytes, secs } => {
                format!("vmcore by {via}: {path} ({:.1} MiB, {secs:.1} s after the trigger)", *bytes as f64 / 1048576.0)
            }
            Event::Triage { secs, top_cache, .. } => {
                format!("crash triage done in {secs:.1} s; largest slab cache: {}", top_cache.as_deref().unwrap_or("-"))
            }
            Event::TriageSkipped { reason } => format!("crash triage skipped: {reason}"),
            Event::Interrupted { signal } => format!("interrupted by {signal}; tearing down (again to force)"),
            Event::Teardown { how, secs } => format!("VM stopped by {how} in {secs:.2} s"),
            Event::Error { message } => format!("error: {message}"),
            Event::LeakDecided { look, looks, samples, verdict } => {
                format!("verdict {verdict} decided at look {look} of {looks} ({samples} samples per arm): ending both workloads")
            }
            Event::CellStarted { .. } => "started".into(),
            Event::CellFinished { verdict, exit_code, error, .. } => {
                let why = error.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
                format!("finished: {verdict} (exit {exit_code}){why}")
            }
            Event::RunFinished { .. } | Event::LeakVerdict { .. } | Event::MatrixStarted { .. } | Event::MatrixFinished { .. } => {
                return None
            }
        })
    }

    /// What the run is doing after this event, for its progress line.
    fn progress(&mut self, s: &Stamped) {
        let phase = match &s.event {
            Event::RunStarted { lab, kernel, .. } => {
                let arm = self.prefix.trim_end_matches(": ");
                let name = if arm.is_empty() { format!("{lab}@{kernel}") } else { format!("{lab}@{kernel} {arm}") };
                self.bar = Bar::spinner(&name, "kernel: from the cache or apt-get download");
                return;
            }
            Event::KernelReady { .. } => "building modules, workload and image",
            Event::ModuleBuilt { .. } => "building the image",
            Event::ImageReady { .. } => "starting QEMU",
            Event::AccelChosen { accel, .. } => {
                self.bar.message(format!("starting QEMU ({accel})"));
                return;
            }
            Event::BootProfile { .. } => "building the image",
            Event::BootRetry { .. } => "booting once more",
            Event::QemuStarted { .. } => "booting",
            Event::SshReady { .. } | Event::SetupCommand { .. } => "setup",
            Event::SnapshotRestored { .. } => "restored: connecting",
            Event::SnapshotFallback { .. } => "restore failed: booting cold",
            Event::SnapshotSaved { .. } | Event::SnapshotSaveFailed { .. } | Event::SnapshotEvicted { .. } => "setup",
            Event::KdumpLoaded { .. } | Event::KdumpUnavailable { .. } => "setup",
            Event::ModuleLoaded { name, .. } => {
                self.bar.message(format!("module {name} loaded"));
                return;
            }
            Event::WorkloadStarted { duration_secs, .. } => {
                self.workload_t = Some(s.t);
                self.bar.steps(duration_secs.ceil() as u64, "s");
                self.bar.message("workload");
                return;
            }
            Event::Sample { t, mem_available, slab, .. } => {
                if let Some(w) = self.workload_t {
                    self.bar.position((t - w).max(0.0) as u64);
                }
                let mib = |b: &Option<u64>| b.map(|b| format!("{:.0}", b as f64 / 1048576.0)).unwrap_or("-".into());
                self.bar.message(format!("MemAvailable {} MiB, Slab {} MiB", mib(mem_available), mib(slab)));
                return;
            }
            Event::WorkloadFinished { .. } => "workload done; stopping",
            Event::Exhaustion { .. } | Event::PanicTriggered { .. } => "out of memory: taking the dump",
            Event::NoExhaustion { .. } => "no exhaustion: stopping",
            Event::DumpWritten { .. } => "crash triage (debug vmlinux, crash)",
            Event::Triage { .. } | Event::TriageSkipped { .. } => "stopping the VM",
            Event::Interrupted { .. } => "interrupted: tearing down",
            Event::Teardown { .. } => "writing the report",
            Event::RunFinished { .. } => {
                self.bar = Bar::default();
                return;
            }
            _ => return,
        };
        self.bar.spin();
        self.bar.message(phase);
    }
}

impl Reporter for Terminal {
    fn report(&mut self, s: &Stamped) {
        self.progress(s);
        let Some(line) = self.line(&s.event) else { return };
        // Errors, and the warnings that say a run went a slower way than asked.
        let loud = matches!(
            s.event,
            Event::Error { .. } | Event::Interrupted { .. } | Event::CellFinished { .. } | Event::SnapshotFallback { .. } | Event::SnapshotSaveFailed { .. }
        );
        if self.quiet && !loud {
            return;
        }
        let line = match &s.event {
            Event::Error { .. } => console::style(line).red().for_stderr().to_string(),
            Event::KdumpUnavailable { .. }
            | Event::SampleFailed { .. }
            | Event::SnapshotFallback { .. }
            | Event::SnapshotSaveFailed { .. }
            | Event::NoExhaustion { until_exhaustion: true, .. } => {
                console::style(line).yellow().for_stderr().to_string()
            }
            _ => line,
        };
        let cell = s.cell.as_deref().map(|c| format!("cell {c} ")).unwrap_or_default();
        let t = console::style(format!("[{:7.2}]", s.t)).dim().for_stderr();
        if s.cell.is_some() && matches!(s.event, Event::CellStarted { .. } | Event::CellFinished { .. }) {
            // The matrix's own lines, as before: `cell <id> started`.
            ui::eprintln(&format!("{cell}{line}"));
        } else {
            ui::eprintln(&format!("{t} {cell}{}{line}", self.prefix));
        }
    }
}

/// The fan-out to reporters, shared by every task of the run.
#[derive(Clone)]
pub struct Events {
    start: Instant,
    cell: Option<String>,
    arm: Option<String>,
    reporters: Arc<Mutex<Vec<Box<dyn Reporter>>>>,
}

impl Events {
    pub fn new(start: Instant) -> Self {
        Events { start, cell: None, arm: None, reporters: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The same stream, its events marked as the matrix cell's and the arm's.
    pub fn within(&self, cell: Option<&str>, arm: Option<&str>) -> Events {
        Events { cell: cell.map(str::to_string), arm: arm.map(str::to_string), ..self.clone() }
    }

    pub fn add(&self, r: Box<dyn Reporter>) {
        self.reporters.lock().unwrap().push(r);
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn emit(&self, event: Event) {
        let stamped =
            Stamped { schema: SCHEMA, t: round3(self.now()), wall: wall_clock(), cell: self.cell.clone(), arm: self.arm.clone(), event };
        for r in self.reporters.lock().unwrap().iter_mut() {
            r.report(&stamped);
        }
    }
}

/// The process's own stream, for what belongs to no one run directory (a
/// matrix and its cells): the terminal, and JSON lines on stdout in JSON
/// mode. Its clock starts at the first use.
pub fn top() -> &'static Events {
    static TOP: OnceLock<Events> = OnceLock::new();
    TOP.get_or_init(|| {
        let e = Events::new(Instant::now());
        if ui::get().json {
            e.add(Box::new(JsonStdout));
        }
        e.add(Box::new(Terminal::new(ui::get().quiet, None)));
        e
    })
}

/// The first 12 hex digits of a cache key, for terminal lines.
fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// RFC 3339 UTC with milliseconds.
pub fn wall_clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
