//! The one event stream. Runs and matrices emit [`Event`]s into an
//! [`Events`] sink that `main` builds once with its reporters (the
//! terminal and its progress lines, `events.jsonl` in each run directory,
//! `--message-format json`, the HTML pages and summaries: see
//! `crate::report`); every reporter consumes the same stamped events and
//! none re-derives state. Every line has the schema [`SCHEMA`], documented
//! in `docs/events.md`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The schema of an event line, in `events.jsonl` and on stdout. A new
/// event or a new field keeps the version; a renamed or removed one, or a
/// changed meaning, bumps it. Version 2 renamed the sample time of
/// `sample`, `sample-failed` and `sampler-fallback` from `t` (which
/// repeated the stamp's key) to `sample_t`.
pub const SCHEMA: &str = "kernlab.event/2";

/// The schema of the event lines of older runs: a `sample`,
/// `sample-failed` or `sampler-fallback` line carries the key `t` twice,
/// the stamp's first, the sample's second (`crate::outcome::read_events`
/// reads them in that order).
pub const SCHEMA_V1: &str = "kernlab.event/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted { lab: String, kernel: String, run_dir: String },
    KernelReady { name: String, release: String, package_sha256: String, secs: f64 },
    ImageReady { sha256: String, bytes: u64, modules: usize, secs: f64 },
    /// A stage of a disk image was built now rather than found in the
    /// cache (`rootfs`: mmdebstrap; `disk`: the kernel's disk), in seconds.
    ImageBuilt { stage: String, secs: f64 },
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
    /// A lab module unloaded at the end of the run (reverse load order);
    /// `ok` false with rmmod's words when the kernel refused.
    ModuleUnloaded { name: String, ok: bool, detail: String, secs: f64 },
    KdumpLoaded { crashkernel: u64 },
    KdumpUnavailable { reason: String },
    /// `duration_secs`: how long the phase lasts; with `until_exhaustion`,
    /// the most it lasts (`exhaustion.max`) unless the guest runs out first.
    WorkloadStarted { commands: usize, duration_secs: f64, until_exhaustion: bool },
    /// A sample recorded. `sample_t`: when it was taken (the capture was
    /// asked for), in seconds since the run started on the stamp's clock,
    /// the time of its rows in `samples/`; the stamp's `t` is when it was
    /// recorded, after the capture arrived, so `sample_t` ≤ `t`.
    Sample { index: u64, sample_t: f64, uptime: Option<f64>, mem_available: Option<u64>, slab: Option<u64>, s_unreclaim: Option<u64>, nr_dentry: Option<u64>, caches: Option<usize> },
    /// A sample was not taken: `sample_t` is when it was asked for (as in
    /// `Sample`), the stamp's `t` when it was given up.
    SampleFailed { sample_t: f64, reason: String },
    /// The guest sampler (`monitor.sampler: stream`) answers: started, or
    /// restarted after it broke (`restart`), in `secs`; `shrink`: the
    /// per-CPU flush files it holds open; `transport`: `port` (requests
    /// and records over the VM's virtio-serial port) or `ssh` (over the
    /// SSH channel that started it), with `port` saying why not the port
    /// when the VM has one.
    SamplerStarted {
        restart: bool,
        shrink: Option<u64>,
        secs: f64,
        #[serde(default)]
        transport: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
    },
    /// The guest sampler did not answer (it did not start, its stream broke
    /// or timed out): this sample and the next ones are taken by a fresh
    /// SSH command each until it is restarted. `sample_t`: when this
    /// sample was asked for (as in `Sample`).
    SamplerFallback { sample_t: f64, reason: String },
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
    /// A LEAK's attribution pass starts: the lab once more, its guests
    /// instrumented (`leak.attribute`).
    AttributionStarted { kind: String, caches: Vec<String>, duration_secs: f64 },
    /// One guest instrument of an attribution pass ran (`setup` or `collect`).
    Instrument { name: String, phase: String, ok: bool, secs: f64 },
    /// The attribution pass is over: the sites it named, what it cost.
    Attributed { kind: String, sites: Vec<String>, status: String, secs: f64 },
    MatrixStarted { name: String, cells: usize, slots: usize, dir: String },
    CellStarted { lab: String, kernel: String },
    CellFinished { verdict: String, exit_code: i32, secs: f64, error: Option<String>, dir: String },
    MatrixFinished { exit_code: i32, report: String },
}

/// An event with its time since the run (or matrix) started, its
/// wall-clock time, and where it comes from: the matrix cell and the arm of
/// an A/B lab, when it comes from one.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Stamped {
    pub schema: String,
    pub t: f64,
    pub wall: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arm: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

/// One output of the stream. Reporters are called in the order they were
/// added, under the sink's lock, so each sees the events in order.
pub trait Reporter: Send {
    fn report(&mut self, e: &Stamped);
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

    /// The same reporters, with the clock restarted: a run's `t` counts
    /// from its own start, also when it is a matrix cell.
    pub fn restarted(&self, start: Instant) -> Events {
        Events { start, ..self.clone() }
    }

    /// The same stream, its events marked as the arm's (`module`,
    /// `baseline`) of the same cell.
    pub fn with_arm(&self, arm: &str) -> Events {
        Events { arm: Some(arm.to_string()), ..self.clone() }
    }

    /// Where the events go: the matrix cell and the arm, if any.
    pub fn cell(&self) -> Option<&str> {
        self.cell.as_deref()
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
        // Tokio's clock: the same as the system's, except under a test's
        // paused time, where the run's clock follows the paused one.
        tokio::time::Instant::now().saturating_duration_since(tokio::time::Instant::from_std(self.start)).as_secs_f64()
    }

    pub fn emit(&self, event: Event) {
        let stamped =
            Stamped { schema: SCHEMA.to_string(), t: round3(self.now()), wall: wall_clock(), cell: self.cell.clone(), arm: self.arm.clone(), event };
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
