//! The run's one event stream. Every phase emits [`Event`]s; each reporter
//! (the JSON-lines file in the run directory, the terminal) consumes the same
//! stamped events, and none re-derives state. The JSON-lines log is flushed
//! per event, so a killed run keeps every event up to that moment.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// Lifecycle of a run, in order: `run-started`, `kernel-ready`,
/// `module-built`…, `image-ready`, `accel-chosen`, `qemu-started`,
/// `ssh-ready`, `setup-command`…, `module-loaded`…, `workload-started`, `sample`…, `workload-finished`,
/// `teardown`, `run-finished`. `qmp`, `sample-failed`, `interrupted` and
/// `error` can come at any point after they become possible. Labs with an
/// `exhaustion` section add `kdump-loaded` or `kdump-unavailable` after
/// setup, and, when the guest runs out of memory, panics or hangs:
/// `exhaustion`, `panic-triggered`, `dump-written`, `triage` or
/// `triage-skipped`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted { lab: String, kernel: String, run_dir: String },
    KernelReady { name: String, release: String, package_sha256: String, secs: f64 },
    ImageReady { sha256: String, bytes: u64, modules: usize, secs: f64 },
    ModuleBuilt { name: String, sha256: String, cached: bool, secs: f64 },
    AccelChosen { accel: String, reason: String },
    QemuStarted { pid: i32, ssh_port: u16, attempt: u32 },
    SshReady { secs_since_qemu_start: f64 },
    SetupCommand { index: usize, command: String, status: i32, secs: f64 },
    ModuleLoaded { name: String, params: std::collections::BTreeMap<String, String>, tainted: Option<u64>, secs: f64 },
    KdumpLoaded { crashkernel: u64 },
    KdumpUnavailable { reason: String },
    WorkloadStarted { commands: usize, duration_secs: f64 },
    Sample { index: u64, t: f64, uptime: Option<f64>, mem_available: Option<u64>, slab: Option<u64>, s_unreclaim: Option<u64>, nr_dentry: Option<u64>, caches: Option<usize> },
    SampleFailed { t: f64, reason: String },
    /// Samples arrive again after `gaps` failed ones spanning `secs`.
    SamplingResumed { gaps: u64, secs: f64 },
    WorkloadFinished { status: Option<i32>, secs: f64 },
    Qmp { name: String, data: serde_json::Value },
    Exhaustion { trigger: String },
    PanicTriggered { how: String },
    DumpWritten { via: String, path: String, bytes: u64, secs: f64 },
    Triage { secs: f64, top_cache: Option<String>, panic: Option<String> },
    TriageSkipped { reason: String },
    Interrupted { signal: String },
    Teardown { how: String, secs: f64 },
    Error { message: String },
    RunFinished { outcome: String, exit_code: i32 },
}

/// An event with its time since the run started and its wall-clock time.
#[derive(Debug, Clone, Serialize)]
pub struct Stamped {
    pub t: f64,
    pub wall: String,
    #[serde(flatten)]
    pub event: Event,
}

pub trait Reporter: Send {
    fn report(&mut self, e: &Stamped);
}

/// Appends each event as one JSON line and flushes.
pub struct JsonLines<W: Write + Send>(pub W);

impl<W: Write + Send> Reporter for JsonLines<W> {
    fn report(&mut self, e: &Stamped) {
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(self.0, "{line}");
            let _ = self.0.flush();
        }
    }
}

/// Short human lines on stderr.
pub struct Terminal {
    pub quiet: bool,
    /// Put before every line, e.g. `baseline: ` when arms run side by side.
    pub prefix: String,
}

impl Reporter for Terminal {
    fn report(&mut self, s: &Stamped) {
        let line = match &s.event {
            Event::RunStarted { lab, kernel, run_dir } => format!("lab {lab} on {kernel} → {run_dir}"),
            Event::KernelReady { release, secs, .. } => format!("kernel {release} ready ({secs:.2} s)"),
            Event::ImageReady { bytes, modules, secs, .. } => {
                format!("image ready: {:.1} MiB, {modules} modules ({secs:.2} s)", *bytes as f64 / 1048576.0)
            }
            Event::AccelChosen { accel, reason } => format!("accel {accel}: {reason}"),
            Event::ModuleBuilt { name, cached, secs, .. } => {
                format!("module {name} {} ({secs:.2} s)", if *cached { "from the cache" } else { "built" })
            }
            Event::ModuleLoaded { name, params, tainted, .. } => {
                format!("module {name} loaded {params:?}, taint {}", tainted.map(|t| t.to_string()).unwrap_or("-".into()))
            }
            Event::QemuStarted { pid, ssh_port, .. } => format!("QEMU pid {pid}, ssh on 127.0.0.1:{ssh_port}"),
            Event::SshReady { secs_since_qemu_start } => format!("guest ready over SSH {secs_since_qemu_start:.2} s after QEMU start"),
            Event::SetupCommand { index, status, command, .. } => format!("setup[{index}] exit {status}: {command}"),
            Event::WorkloadStarted { duration_secs, .. } => format!("workload started for {duration_secs:.0} s"),
            Event::Sample { index, mem_available, s_unreclaim, .. } if self.quiet || index % 10 != 0 => {
                let _ = (mem_available, s_unreclaim);
                return;
            }
            Event::Sample { index, mem_available, s_unreclaim, nr_dentry, .. } => format!(
                "sample {index}: MemAvailable {} KiB, SUnreclaim {} KiB, dentries {}",
                mem_available.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                s_unreclaim.map(|b| (b / 1024).to_string()).unwrap_or("-".into()),
                nr_dentry.map(|n| n.to_string()).unwrap_or("-".into()),
            ),
            Event::SampleFailed { reason, .. } => format!("sample failed: {reason}"),
            Event::SamplingResumed { gaps, secs } => format!("sampling resumed after {gaps} missed samples ({secs:.1} s)"),
            Event::WorkloadFinished { status, secs } => format!("workload finished after {secs:.1} s, exit {status:?}"),
            Event::Qmp { name, .. } => format!("QMP event {name}"),
            Event::KdumpLoaded { crashkernel } => format!("kdump loaded ({} MiB reserved)", crashkernel >> 20),
            Event::KdumpUnavailable { reason } => format!("warning: {reason}"),
            Event::Exhaustion { trigger } => format!("exhaustion: {trigger}"),
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
            Event::RunFinished { .. } => return,
        };
        if self.quiet && !matches!(s.event, Event::Error { .. } | Event::Interrupted { .. }) {
            return;
        }
        eprintln!("[{:7.2}] {}{line}", s.t, self.prefix);
    }
}

/// The fan-out to reporters, shared by every task of the run.
#[derive(Clone)]
pub struct Events {
    start: Instant,
    reporters: Arc<Mutex<Vec<Box<dyn Reporter>>>>,
}

impl Events {
    pub fn new(start: Instant) -> Self {
        Events { start, reporters: Arc::new(Mutex::new(Vec::new())) }
    }

    pub fn add(&self, r: Box<dyn Reporter>) {
        self.reporters.lock().unwrap().push(r);
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn emit(&self, event: Event) {
        let stamped = Stamped { t: round3(self.now()), wall: wall_clock(), event };
        for r in self.reporters.lock().unwrap().iter_mut() {
            r.report(&stamped);
        }
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// RFC 3339 UTC with milliseconds.
pub fn wall_clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
