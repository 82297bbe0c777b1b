//! Lab files: the YAML that says what one kernel lab run does.
//!
//! This module owns the lab schema, reading it from YAML (syntax, unknown
//! keys, types), checking it (ranges, names, cross-field rules) and writing
//! the resolved lab back out with every default filled in. It does not check
//! that the named kernel descriptor exists or run anything: the orchestrator
//! does that with the `Lab` it gets back. Errors name the file, the line and
//! column and the field path, e.g.
//! `labs/x.yaml:7:11: vm.memory: must be at least 128 MiB, got 0`.
//! The file format is documented in `docs/lab-format.md`.

mod source;
mod units;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::qemu::{AccelRequest, MachineRequest};
pub use source::SourceMap;
pub use units::{format_size, parse_size};

use units::{human_duration, human_size};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

const MIN_MEMORY: u64 = 128 * MIB;
const MAX_MEMORY: u64 = 64 * GIB;
const MAX_CPUS: u32 = 64;
const MIN_BOOT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BOOT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MIN_WORKLOAD: Duration = Duration::from_secs(1);
const MAX_WORKLOAD: Duration = Duration::from_secs(7 * 24 * 3600);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_NAME: usize = 64;
// A kernel name becomes a file name (kernels/NAME.yaml); keep it within
// what every filesystem accepts.
const MAX_KERNEL_NAME: usize = 200;

pub use crate::kernel::DEFAULT_KERNEL;

/// Command-line parameters that kernlab sets itself (the console carries the
/// guest agent's channel, init is kernlab's own); a lab overriding them would
/// break the run in confusing ways.
const RESERVED_CMDLINE: [&str; 3] = ["console=", "init=", "rdinit="];

/// Why a lab file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The file could not be read.
    #[error("cannot read lab file `{}`", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not valid YAML, or valid YAML that does not fit the schema: unknown
    /// keys, wrong types, unknown enum values, unparsable sizes/durations.
    /// `line`/`column` are 1-based, 0 when unknown. When the position could
    /// be tied to a field, `message` starts with its path (`vm.memroy: ...`).
    #[error("{}", located(file, *line, *column, None, message))]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// Well-formed but rejected by `Lab::validate` (out of range, bad name,
    /// inconsistent fields). `field` is the path, e.g. `vm.cmdline[1]`.
    #[error("{}", located(file, *line, *column, Some(field), message))]
    Invalid {
        file: PathBuf,
        line: u64,
        column: u64,
        field: String,
        message: String,
    },
}

fn located(file: &Path, line: u64, column: u64, field: Option<&str>, message: &str) -> String {
    let mut s = file.display().to_string();
    if line > 0 {
        s.push_str(&format!(":{line}:{column}"));
    }
    s.push_str(": ");
    if let Some(f) = field.filter(|f| !f.is_empty()) {
        s.push_str(f);
        s.push_str(": ");
    }
    s.push_str(message);
    s
}

/// One lab run: which kernel to boot, how, what to do in the guest and what
/// to sample while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// Lab name, used in run directories and reports. Required;
    /// `[a-z0-9][a-z0-9._-]{0,63}`.
    pub name: String,
    /// Free text for humans. Default: `""`.
    #[serde(default)]
    pub description: String,
    /// Kernel descriptor name (`kernels/NAME.yaml`); only its syntax is
    /// checked here (`[A-Za-z0-9][A-Za-z0-9._+-]*`), the caller checks that it
    /// exists. Default: `debian-6.1.0-54-cloud-amd64`.
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// Guest root filesystem image. Default: `minimal`.
    #[serde(default)]
    pub image: Image,
    /// Virtual machine shape. Default: see `Vm`.
    #[serde(default)]
    pub vm: Vm,
    /// Guest shell commands run once after boot, in order; each non-empty.
    /// Default: none.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Kernel modules built from source against the run's kernel and loaded
    /// (in order) after `setup`, before the workload. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
    /// The workload phase. Default: none (boot, setup, monitor, stop).
    #[serde(
        default,
        deserialize_with = "non_null_workload",
        skip_serializing_if = "Option::is_none"
    )]
    pub workload: Option<Workload>,
    /// What to sample and how often. Default: see `Monitor`.
    #[serde(default)]
    pub monitor: Monitor,
    /// The leak policy. When present, the run is an A/B comparison: the lab
    /// as written (A) against a baseline without the modules (B), on the
    /// same kernel and schedule, ending in a LEAK / NO-LEAK / INCONCLUSIVE
    /// verdict. Default: none (a plain run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak: Option<LeakPolicy>,
    /// What to do when the guest runs out of memory, panics or hangs: take
    /// a kernel dump (in-guest kdump or from the host) and triage it.
    /// Default: none (a panic ends the run as an infrastructure failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<Exhaustion>,
    /// Where each field was written, for error messages; empty for labs
    /// built in code. Not serialized and ignored by `==`.
    #[serde(skip)]
    pub locations: SourceMap,
}

/// Virtual machine settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vm {
    /// Guest memory in bytes; written as a size (`512M`, `1GiB`) or integer
    /// bytes. Default: 512 MiB; 128 MiB..=64 GiB.
    #[serde(with = "units::size")]
    pub memory: u64,
    /// Virtual CPUs. Default: 1; 1..=64.
    #[serde(deserialize_with = "units::count::deserialize")]
    pub cpus: u32,
    /// Accelerator: `auto` (KVM when usable, else TCG), `kvm` or `tcg`.
    /// Default: `auto`.
    pub accel: AccelRequest,
    /// Extra kernel command-line words, appended after kernlab's own. Each
    /// non-empty, without whitespace or control characters, and not
    /// `console=`, `init=` or `rdinit=` (kernlab owns those). Default: none.
    pub cmdline: Vec<String>,
    /// How long to wait for the guest to come up, per attempt (a boot that
    /// misses it is tried once more). Default: 60s; 5s..=10m.
    #[serde(with = "units::duration")]
    pub boot_timeout: Duration,
    /// QEMU machine profile: `auto` (microvm where the kernel and the lab
    /// allow it, else pc), `pc` or `microvm`. Default: `auto`.
    pub machine: MachineRequest,
    /// Which kernel image to boot: `auto` (the uncompressed PVH vmlinux
    /// when the kernel has CONFIG_PVH, else the bzImage), `bzimage` or
    /// `vmlinux`. Default: `auto`.
    pub kernel_format: KernelFormat,
    /// Kernel command-line flags that shorten boots under TCG
    /// (`tsc=reliable no_timer_check cryptomgr.notests`). Default: true.
    pub fast_boot: bool,
    /// Restore a saved snapshot of the booted guest instead of booting
    /// (`auto`: when the VM can have one, saving it on the first run), or
    /// always boot cold (`off`). Default: `auto`.
    pub snapshot: SnapshotPolicy,
}

impl Default for Vm {
    fn default() -> Self {
        Vm {
            memory: 512 * MIB,
            cpus: 1,
            accel: AccelRequest::Auto,
            cmdline: Vec::new(),
            boot_timeout: Duration::from_secs(60),
            machine: MachineRequest::Auto,
            kernel_format: KernelFormat::Auto,
            fast_boot: true,
            snapshot: SnapshotPolicy::Auto,
        }
    }
}

/// Whether a run may restore (and save) a snapshot of the booted guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotPolicy {
    /// Restore the cached snapshot for this kernel, image and VM shape, or
    /// boot cold and save one, when the VM can have one.
    #[default]
    Auto,
    /// Always boot cold, with this run's own keys.
    Off,
}

/// Which kernel image a VM boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelFormat {
    /// The PVH vmlinux when the kernel has one, else the bzImage.
    #[default]
    Auto,
    Bzimage,
    Vmlinux,
}

/// The workload phase: the built-in file churn and/or commands run in order
/// in one guest shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The built-in file churn workload (`labs/workloads/churn.c`), run
    /// before and alongside the commands. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// Guest shell commands, each non-empty. At least one unless `churn` is
    /// given: a `workload` section must do something.
    #[serde(default)]
    pub commands: Vec<String>,
    /// How long the phase lasts; commands still running at the end are
    /// stopped. Default: 30s; 1s..=7d.
    #[serde(default = "default_workload_duration", with = "units::duration")]
    pub duration: Duration,
}

/// The file churn workload: each operation creates a unique file (optionally
/// writes to it), closes it and unlinks it, the pattern that exercises a
/// close hook on every file's last reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Where the files live: `tmpfs`, mounted with `nr_inodes=0` so leaked
    /// inodes cannot make it run out of inodes before memory, or `ext4` on
    /// a virtio disk kernlab attaches (one inode per 2 KiB, so leaked,
    /// unlinked-but-pinned inodes do not exhaust the disk first). Default: tmpfs.
    pub fs: ChurnFs,
    /// Size of the ext4 disk (sparse on the host). Default: 2GiB; 64MiB..=64GiB.
    #[serde(with = "units::size")]
    pub disk: u64,
    /// Operations per second; 0 = flat out. Default: 0.
    pub rate: u64,
    /// Stop after this many operations; 0 = run for the workload's duration. Default: 0.
    pub count: u64,
    /// Bytes written to each file; default 0.
    #[serde(with = "units::size")]
    pub write: u64,
}

impl Default for Churn {
    fn default() -> Self {
        Churn { fs: ChurnFs::Tmpfs, disk: 2 * GIB, rate: 0, count: 0, write: 0 }
    }
}

/// File systems the churn workload can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnFs {
    #[default]
    Tmpfs,
    Ext4,
}

/// A kernel module under test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Directory with the module's source and `Kbuild`, relative to the lab
    /// file. Built out of tree against the run kernel's headers.
    pub source: PathBuf,
    /// Module parameters for insmod, `name: value`. Names are C identifiers;
    /// values are passed as one shell word each. Default: none.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// The fewest samples per arm a leak lab may plan: the first look of the
/// analysis is taken there.
pub const MIN_LEAK_SAMPLES: usize = 8;

/// Samples per arm a workload of `duration` sampled every `interval` gives
/// (one at the start, one per interval).
pub fn planned_samples(duration: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        return 0;
    }
    (duration.as_secs_f64() / interval.as_secs_f64()).floor() as usize + 1
}

/// Samples a warm-up of `warmup` covers at `interval` (rounded up).
pub fn warmup_samples(warmup: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        return 0;
    }
    (warmup.as_secs_f64() / interval.as_secs_f64()).ceil() as usize
}

/// What a leak lab expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// A reproducer: the module leaks; NO-LEAK fails the lab.
    Leak,
    /// A regression gate: the module does not leak; LEAK fails the lab.
    NoLeak,
}

/// The leak policy of an A/B lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakPolicy {
    /// What the lab expects. Required.
    pub expect: Expect,
    /// The primary endpoint: `slab` (meminfo Slab), `sunreclaim` (meminfo
    /// SUnreclaim) or `cache:NAME` (one slab cache's active bytes).
    /// Default: `slab`.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// The practical floor per operation for one slab cache, in objects: a
    /// difference below it is not a leak worth the name. Default: 0.0005
    /// (one object per 2,000 operations), from A/A calibration on this
    /// kind of guest (`kernlab calibrate`, see docs/method.md).
    #[serde(default = "default_floor_objects")]
    pub floor_objects_per_op: f64,
    /// The practical floor per operation in bytes, for the metric and for
    /// a cache of large objects (a cache's floor is the smaller of
    /// `floor_objects_per_op` and this over its object size). Default: 4.
    #[serde(default = "default_floor_bytes")]
    pub floor_bytes_per_op: f64,
    /// The practical floor per hour, used only when the workload counts no
    /// operations (commands only): the rates are then per second. Default:
    /// 16MiB (per hour).
    #[serde(default = "default_floor", with = "units::size")]
    pub floor_per_hour: u64,
    /// Left out of the analysis at the start of the workload: its own
    /// set-up is a step in both arms, not a rate. Default: 2s; less than
    /// the workload's duration.
    #[serde(default = "default_warmup", with = "units::duration")]
    pub warmup: Duration,
    /// Look at the run as it goes and end both arms as soon as the verdict
    /// is decided (α spent over the looks). `false`: one look, at the end
    /// of `workload.duration`, with all of α. Default: true.
    #[serde(default = "default_true")]
    pub stop_early: bool,
    /// One-sided significance level of the verdict. Default: 0.01; 0 < alpha < 0.5.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Boot with `slub_nomerge` so each slab cache stands alone. Default: true.
    #[serde(default = "default_true")]
    pub slub_nomerge: bool,
    /// The B side. Default: the same lab without modules.
    #[serde(default)]
    pub baseline: Baseline,
}

/// How an exhausted, panicked or hung guest becomes a vmcore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpAction {
    /// In-guest kdump: a capture kernel loaded with `kexec -p` writes the
    /// dump with makedumpfile to a disk kernlab attached; the host dump is
    /// the fallback when kdump cannot load or does not finish.
    Kdump,
    /// QEMU's `dump-guest-memory` from the host, on the pvpanic event.
    HostDump,
    /// No dump: a panic ends the run.
    None,
}

/// Memory exhaustion and dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exhaustion {
    /// `kdump`, `host-dump` or `none`. Required.
    pub action: DumpAction,
    /// Panic the guest when MemAvailable falls below this (sysrq over SSH,
    /// or an NMI from the host when SSH is dead). 0 = only on OOM
    /// (`vm.panic_on_oom=1`). Default: 0.
    #[serde(default, with = "units::size")]
    pub headroom: u64,
    /// Memory reserved for the capture kernel (`crashkernel=`). Default: 128MiB.
    #[serde(default = "default_crashkernel", with = "units::size")]
    pub crashkernel: u64,
    /// makedumpfile's dump level (`-d`, 0..=31). Default: 31 (drop zero,
    /// cache, user and free pages).
    #[serde(default = "default_dump_level")]
    pub dump_level: u8,
    /// How long the capture kernel (or the host dump) may take before the
    /// fallback. Default: 120s.
    #[serde(default = "default_dump_deadline", with = "units::duration")]
    pub deadline: Duration,
    /// A guest that gives no sample for this many intervals in a row is
    /// treated as hung and panicked with an NMI from the host. Default: 5.
    #[serde(default = "default_hang_intervals")]
    pub hang_intervals: u32,
    /// Read the vmcore with `crash` (kmem -i, kmem -s, bt, log) using the
    /// kernel's debug vmlinux, fetched and cached. Default: true.
    #[serde(default = "default_true")]
    pub crash: bool,
    /// Run until exhaustion: the workload and the sampling go on past
    /// `workload.duration` until the guest runs out of memory (the OOM
    /// panic, MemAvailable below `headroom`, a hang), at most `max`. In an
    /// A/B lab only the module arm does; the baseline runs
    /// `workload.duration`. Default: false (the phase lasts
    /// `workload.duration`, exhausted or not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub until: bool,
    /// The most an `until` run goes on without running out of memory;
    /// reaching it ends the run with `no exhaustion within N s`. Only with
    /// `until: true`. Default: 10m; 1s..=7d and at least `workload.duration`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "units::opt_duration")]
    pub max: Option<Duration>,
}

/// How long a lab that runs until exhaustion may go on without reaching it,
/// when it does not say (`exhaustion.max`). A 512 MiB guest churning flat
/// out with the leak runs out in ~22 s on tmpfs, ~49 s on ext4 with a core
/// to itself, 38 s on tmpfs with other VMs sharing 2 cores: ten minutes leaves
/// room for a loaded host and slower leaks without letting a run that will
/// never get there go on for long.
pub const DEFAULT_EXHAUSTION_MAX: Duration = Duration::from_secs(600);

impl Exhaustion {
    /// Whether a panic becomes a vmcore (`action` other than `none`): the
    /// guest is set to panic on OOM, pauses on its panic, and a panic is
    /// the dump path rather than the end of the run.
    pub fn dumps(&self) -> bool {
        self.action != DumpAction::None
    }

    /// Whether anything can end a run by exhaustion: a dump action (the
    /// guest panics on OOM) or a headroom kernlab watches.
    pub fn watched(&self) -> bool {
        self.dumps() || self.headroom > 0
    }

    /// The limit of a run until exhaustion (`max`, else its default), or
    /// `None` when the lab does not run until exhaustion.
    pub fn until_max(&self) -> Option<Duration> {
        self.until.then(|| self.max.unwrap_or(DEFAULT_EXHAUSTION_MAX))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_crashkernel() -> u64 {
    128 * MIB
}

fn default_dump_level() -> u8 {
    31
}

fn default_dump_deadline() -> Duration {
    Duration::from_secs(120)
}

fn default_hang_intervals() -> u32 {
    5
}

/// The baseline arm of an A/B lab.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    /// The baseline's modules (e.g. the same module with `leak: 0`).
    /// Default: none.
    pub modules: Vec<Module>,
}

fn default_metric() -> String {
    "slab".to_string()
}

fn default_floor() -> u64 {
    16 * MIB
}

/// The default per-cache floor, objects per operation (see `LeakPolicy`).
pub const DEFAULT_FLOOR_OBJECTS_PER_OP: f64 = 0.0005;
/// The default floor in bytes per operation (see `LeakPolicy`).
pub const DEFAULT_FLOOR_BYTES_PER_OP: f64 = 4.0;

fn default_warmup() -> Duration {
    Duration::from_secs(2)
}

fn default_floor_objects() -> f64 {
    DEFAULT_FLOOR_OBJECTS_PER_OP
}

fn default_floor_bytes() -> f64 {
    DEFAULT_FLOOR_BYTES_PER_OP
}

fn default_alpha() -> f64 {
    0.01
}

fn default_true() -> bool {
    true
}

/// Sampling of guest memory state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    /// Sampling interval. Default: 2s; 100ms..=1h, and at most
    /// `workload.duration` when there is a workload (else it never samples).
    #[serde(with = "units::duration")]
    pub interval: Duration,
    /// What to sample; non-empty, no duplicates. Default: all four.
    pub sources: Vec<Source>,
    /// Drop reclaimable caches (`echo 2 > /proc/sys/vm/drop_caches`) before
    /// each sample, so what is left is what is held. Default: false.
    pub reclaim: bool,
    /// Flush every cache's per-CPU slabs (`/sys/kernel/slab/*/shrink`)
    /// before each sample. SLUB counts the free objects of a CPU's slab as
    /// active, so without it a cache's count moves in whole slabs (16 or
    /// 32 objects at a time) and a rare leak hides in the steps; with it
    /// the count is exact. The workload is paused (SIGSTOP to its process
    /// group) from the flush to the end of the read, else its next
    /// allocation takes a fresh CPU slab that counts whole. Default: true.
    pub shrink: bool,
    /// Wait this long with the workload paused before each sample: objects
    /// in flight and frees waiting for an RCU grace period settle. 0s = no
    /// wait (the workload is still paused for the read when `shrink` is
    /// on). Default: 0s (100ms did not measurably lower the noise of the
    /// tmpfs churn's dentry or lsm_inode_cache); at most half the interval.
    #[serde(with = "units::duration")]
    pub quiesce: Duration,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            interval: Duration::from_secs(2),
            sources: Source::ALL.to_vec(),
            reclaim: false,
            shrink: true,
            quiesce: Duration::ZERO,
        }
    }
}

/// Guest root filesystem image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Image {
    /// The small initramfs-based image kernlab builds itself.
    #[default]
    Minimal,
}

/// A monitor data source in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `/proc/slabinfo`.
    Slabinfo,
    /// `/proc/meminfo`.
    Meminfo,
    /// `/proc/sys/fs/dentry-state`.
    DentryState,
    /// virtio-balloon statistics.
    Balloon,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Slabinfo,
        Source::Meminfo,
        Source::DentryState,
        Source::Balloon,
    ];

    /// The name used in lab files.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Slabinfo => "slabinfo",
            Source::Meminfo => "meminfo",
            Source::DentryState => "dentry-state",
            Source::Balloon => "balloon",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Image::Minimal => "minimal",
        })
    }
}

/// `workload:` with nothing after it is more likely a forgotten command list
/// than a wish for no workload, so only an absent key means "no workload".
fn non_null_workload<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Workload>, D::Error> {
    match Option::<Workload>::deserialize(d)? {
        Some(w) => Ok(Some(w)),
        None => Err(serde::de::Error::custom(
            "section is empty: list the workload commands, or remove the section for no workload",
        )),
    }
}

fn default_kernel() -> String {
    DEFAULT_KERNEL.to_string()
}

fn default_workload_duration() -> Duration {
    Duration::from_secs(30)
}

/// Reads, parses and validates the lab file at `path`.
pub fn load(path: &Path) -> Result<Lab, LabError> {
    let text = std::fs::read_to_string(path).map_err(|source| LabError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates lab YAML; `file` is used only in error messages.
pub fn parse(text: &str, file: &Path) -> Result<Lab, LabError> {
    // Built first and independently of the schema, so that even a lab that
    // fails to deserialize can have its error tied to a field path.
    // The parser would say "unexpected end of file", which reads like a
    // truncated file rather than an empty one.
    let blank = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    };
    if text.lines().all(blank) {
        return Err(LabError::Syntax {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: "lab file is empty: it needs at least `name: ...`".to_string(),
        });
    }
    // The schema-free read fails only on YAML itself (syntax, duplicate
    // keys, several documents), so its error is the one to report then: the
    // typed read may trip over a type first and hide the real problem.
    let locations = source::SourceMap::build(text).map_err(|e| syntax_error(&e, file, None))?;
    let mut lab: Lab =
        serde_saphyr::from_str(text).map_err(|e| syntax_error(&e, file, Some(&locations)))?;
    lab.locations = locations;
    // The resolved form names every default: `max` when the lab runs until
    // exhaustion (without `until` it must stay unset, see validate).
    if let Some(x) = lab.exhaustion.as_mut().filter(|x| x.until) {
        x.max.get_or_insert(DEFAULT_EXHAUSTION_MAX);
    }
    lab.validate(file)?;
    Ok(lab)
}

fn syntax_error(e: &serde_saphyr::Error, file: &Path, map: Option<&SourceMap>) -> LabError {
    use serde_saphyr::MessageFormatter;

    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    // Format the innermost error ourselves: the crate's renderings append
    // "at line L, column C" (plus alias sites) and its default wording
    // addresses developers ("set DuplicateKeyPolicy in Options"); the user
    // formatter does not, and the position goes in front in our format.
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    let raw = serde_saphyr::UserMessageFormatter.format_message(inner);
    // The formatter's text is unsanitized (it may quote a key with control
    // characters in it); keep the message on one line.
    let message: String = raw
        .chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect();
    // The parser's event names mean nothing to someone writing a lab.
    let message = match message.as_str() {
        "expected mapping start" => "expected a mapping (`key: value` entries)".to_string(),
        "expected sequence start" => "expected a list".to_string(),
        _ => message,
    };
    let message = match map {
        // The text is not even YAML (the schema-free read failed).
        None => format!("invalid YAML: {message}"),
        Some(map) if line > 0 => {
            let container = message.starts_with("missing field");
            match map.path_at((line, column), container) {
                Some(path) => format!("{path}: {message}"),
                None => message,
            }
        }
        Some(_) => message,
    };
    LabError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

impl Lab {
    /// Whether a guest panic in this lab is the dump path (see
    /// [`Exhaustion::dumps`]) rather than the end of the run.
    pub fn dumps(&self) -> bool {
        self.exhaustion.as_ref().is_some_and(Exhaustion::dumps)
    }

    /// How long the workload phase may last: `exhaustion.max` for a lab that
    /// runs until exhaustion, else `workload.duration` (zero without a
    /// workload).
    pub fn phase_limit(&self) -> Duration {
        match self.exhaustion.as_ref().and_then(Exhaustion::until_max) {
            Some(max) => max,
            None => self.workload.as_ref().map(|w| w.duration).unwrap_or_default(),
        }
    }

    /// A lab with the given name and every other field at its default.
    pub fn new(name: impl Into<String>) -> Lab {
        Lab {
            name: name.into(),
            description: String::new(),
            kernel: default_kernel(),
            image: Image::default(),
            vm: Vm::default(),
            setup: Vec::new(),
            modules: Vec::new(),
            workload: None,
            monitor: Monitor::default(),
            leak: None,
            exhaustion: None,
            locations: SourceMap::default(),
        }
    }

    /// Checks ranges, names and cross-field rules; returns the first problem
    /// in file order. `file` is used only in error messages; positions come
    /// from `self.locations` (0:0, i.e. omitted, for labs built in code).
    pub fn validate(&self, file: &Path) -> Result<(), LabError> {
        let bad = |field: &str, message: String| {
            let (line, column) = self.locations.position(field);
            Err(LabError::Invalid {
                file: file.to_path_buf(),
                line,
                column,
                field: field.to_string(),
                message,
            })
        };

        if let Err(m) = check_name(&self.name) {
            return bad("name", m);
        }
        if let Err(m) = check_kernel(&self.kernel) {
            return bad("kernel", m);
        }

        let vm = &self.vm;
        if vm.memory < MIN_MEMORY {
            let m = format!(
                "must be at least {}, got {}",
                human_size(MIN_MEMORY),
                human_size(vm.memory)
            );
            return bad("vm.memory", m);
        }
        if vm.memory > MAX_MEMORY {
            let m = format!(
                "must be at most {}, got {}",
                human_size(MAX_MEMORY),
                human_size(vm.memory)
            );
            return bad("vm.memory", m);
        }
        if !(1..=MAX_CPUS).contains(&vm.cpus) {
            return bad(
                "vm.cpus",
                format!("must be between 1 and {MAX_CPUS}, got {}", vm.cpus),
            );
        }
        for (i, word) in vm.cmdline.iter().enumerate() {
            if let Err(m) = check_cmdline_word(word) {
                return bad(&format!("vm.cmdline[{i}]"), m);
            }
        }
        if let Err(m) = check_range(vm.boot_timeout, MIN_BOOT_TIMEOUT, MAX_BOOT_TIMEOUT) {
            return bad("vm.boot_timeout", m);
        }
        if vm.machine == MachineRequest::Microvm {
            if vm.kernel_format == KernelFormat::Bzimage {
                return bad("vm.machine", "microvm boots only the uncompressed vmlinux, but vm.kernel_format is `bzimage`".into());
            }
            if let Some(x) = self.exhaustion.as_ref().filter(|x| x.dumps()) {
                let action = match x.action {
                    DumpAction::Kdump => "kdump",
                    _ => "host-dump",
                };
                return bad(
                    "vm.machine",
                    format!("microvm has no pvpanic or vmcoreinfo, which exhaustion.action `{action}` needs; use `auto` or `pc`"),
                );
            }
        }

        for (i, cmd) in self.setup.iter().enumerate() {
            if cmd.trim().is_empty() {
                return bad(
                    &format!("setup[{i}]"),
                    "command must not be empty".to_string(),
                );
            }
        }

        for (list, mods) in [("modules", &self.modules)]
            .into_iter()
            .chain(self.leak.as_ref().map(|l| ("leak.baseline.modules", &l.baseline.modules)))
        {
            for (i, m) in mods.iter().enumerate() {
                if m.source.as_os_str().is_empty() {
                    return bad(&format!("{list}[{i}].source"), "must name the module's source directory".into());
                }
                for (k, v) in &m.params {
                    let ident = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !ident {
                        return bad(&format!("{list}[{i}].params.{k}"), format!("parameter name {k:?} is not a C identifier"));
                    }
                    if v.chars().any(|c| c.is_control()) {
                        return bad(&format!("{list}[{i}].params.{k}"), "value must not contain control characters".into());
                    }
                    if v.contains('"') {
                        // The kernel's argument parser has no escape for it.
                        return bad(&format!("{list}[{i}].params.{k}"), "value must not contain a double quote (the kernel cannot take one in a module parameter)".into());
                    }
                }
            }
        }

        if let Some(w) = &self.workload {
            if w.commands.is_empty() && w.churn.is_none() {
                return bad(
                    "workload.commands",
                    "at least one command (or a `churn` workload) is required when a workload section is present"
                        .to_string(),
                );
            }
            for (i, cmd) in w.commands.iter().enumerate() {
                if cmd.trim().is_empty() {
                    return bad(
                        &format!("workload.commands[{i}]"),
                        "command must not be empty".to_string(),
                    );
                }
            }
            if let Some(c) = &w.churn {
                if c.fs == ChurnFs::Ext4 && !(64 * MIB..=64 * GIB).contains(&c.disk) {
                    return bad("workload.churn.disk", format!("must be between 64 MiB and 64 GiB, got {}", human_size(c.disk)));
                }
            }
            if let Err(m) = check_range(w.duration, MIN_WORKLOAD, MAX_WORKLOAD) {
                return bad("workload.duration", m);
            }
        }

        let mon = &self.monitor;
        if let Err(m) = check_range(mon.interval, MIN_INTERVAL, MAX_INTERVAL) {
            return bad("monitor.interval", m);
        }
        if let Some(w) = &self.workload {
            if mon.interval > w.duration {
                let m = format!(
                    "must not be longer than workload.duration ({}), got {}",
                    human_duration(w.duration),
                    human_duration(mon.interval)
                );
                return bad("monitor.interval", m);
            }
        }
        if mon.quiesce * 2 > mon.interval {
            return bad("monitor.quiesce", format!("must be at most half of monitor.interval ({}), got {}", humantime::format_duration(mon.interval), humantime::format_duration(mon.quiesce)));
        }
        if mon.sources.is_empty() {
            return bad(
                "monitor.sources",
                "must list at least one source".to_string(),
            );
        }
        if let Some(l) = &self.leak {
            let m = l.metric.as_str();
            let ok = m == "slab" || m == "sunreclaim" || m.strip_prefix("cache:").is_some_and(|c| !c.is_empty() && !c.contains(char::is_whitespace));
            if !ok {
                return bad("leak.metric", format!("must be `slab`, `sunreclaim` or `cache:NAME`, got {m:?}"));
            }
            if !(l.alpha > 0.0 && l.alpha < 0.5) {
                return bad("leak.alpha", format!("must be between 0 and 0.5 (exclusive), got {}", l.alpha));
            }
            for (field, v) in [("leak.floor_objects_per_op", l.floor_objects_per_op), ("leak.floor_bytes_per_op", l.floor_bytes_per_op)] {
                if !(v.is_finite() && v > 0.0) {
                    return bad(field, format!("must be a number above 0, got {v}"));
                }
            }
            if l.floor_per_hour == 0 {
                return bad("leak.floor_per_hour", "must be above 0 (a floor of 0 calls any difference a leak)".into());
            }
            let Some(w) = &self.workload else {
                return bad("leak", "a leak lab needs a workload to measure".into());
            };
            let planned = planned_samples(w.duration, mon.interval).saturating_sub(warmup_samples(l.warmup, mon.interval));
            if planned < MIN_LEAK_SAMPLES {
                return bad(
                    "workload.duration",
                    format!(
                        "a leak lab needs at least {MIN_LEAK_SAMPLES} samples per arm after the warm-up: {} at a {} interval, less {} of warm-up, gives {planned}",
                        humantime::format_duration(w.duration),
                        humantime::format_duration(mon.interval),
                        humantime::format_duration(l.warmup)
                    ),
                );
            }
            if l.warmup >= w.duration {
                return bad("leak.warmup", format!("must be shorter than workload.duration ({})", humantime::format_duration(w.duration)));
            }
            let needs = if m == "slab" || m == "sunreclaim" { Source::Meminfo } else { Source::Slabinfo };
            if !mon.sources.contains(&needs) {
                return bad("monitor.sources", format!("leak.metric `{m}` needs the `{needs}` source"));
            }
        }
        if let Some(x) = &self.exhaustion {
            if x.dump_level > 31 {
                return bad("exhaustion.dump_level", format!("must be 0..=31, got {}", x.dump_level));
            }
            if x.action == DumpAction::Kdump {
                if x.crashkernel < 64 * MIB {
                    return bad("exhaustion.crashkernel", format!("must be at least 64 MiB, got {}", human_size(x.crashkernel)));
                }
                if x.crashkernel + MIN_MEMORY / 2 > vm.memory {
                    return bad(
                        "exhaustion.crashkernel",
                        format!("{} leaves too little of vm.memory ({}) for the kernel under test", human_size(x.crashkernel), human_size(vm.memory)),
                    );
                }
            }
            if x.headroom >= vm.memory {
                return bad("exhaustion.headroom", format!("must be below vm.memory ({}), got {}", human_size(vm.memory), human_size(x.headroom)));
            }
            if x.headroom > 0 && !mon.sources.contains(&Source::Meminfo) {
                return bad("monitor.sources", "exhaustion.headroom needs the `meminfo` source".into());
            }
            if let Err(m) = check_range(x.deadline, Duration::from_secs(10), Duration::from_secs(3600)) {
                return bad("exhaustion.deadline", m);
            }
            if x.hang_intervals < 2 {
                return bad("exhaustion.hang_intervals", format!("must be at least 2, got {}", x.hang_intervals));
            }
            if x.until {
                if self.workload.is_none() {
                    return bad("exhaustion.until", "a lab that runs until exhaustion needs a workload".into());
                }
                if !x.watched() {
                    return bad(
                        "exhaustion.until",
                        "nothing would end the run: with action `none` the guest does not panic on OOM; use `kdump` or `host-dump`, or set a `headroom`".into(),
                    );
                }
            }
            if let Some(max) = x.max {
                if !x.until {
                    return bad("exhaustion.max", "only applies with `exhaustion.until: true`; without it the run lasts workload.duration".into());
                }
                if let Err(m) = check_range(max, MIN_WORKLOAD, MAX_WORKLOAD) {
                    return bad("exhaustion.max", m);
                }
                if let Some(w) = self.workload.as_ref().filter(|w| max < w.duration) {
                    return bad(
                        "exhaustion.max",
                        format!(
                            "must be at least workload.duration ({}), which an A/B lab's baseline arm runs, got {}",
                            human_duration(w.duration),
                            human_duration(max)
                        ),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (i, s) in mon.sources.iter().enumerate() {
            if !seen.insert(*s) {
                return bad(
                    &format!("monitor.sources[{i}]"),
                    format!("duplicate source `{s}`"),
                );
            }
        }
        Ok(())
    }

    /// The resolved lab as YAML, every default filled in; `parse` of the
    /// result gives an equal `Lab`.
    pub fn to_yaml(&self) -> String {
        // Serializing plain structs, strings, integers and unit enums cannot
        // fail; a failure here is a bug in this module.
        serde_saphyr::to_string(self).expect("a lab always serializes to YAML")
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_first = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_rest = |c: char| ok_first(c) || matches!(c, '.' | '_' | '-');
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(c) => ok_first(c) && chars.all(ok_rest) && name.len() <= MAX_NAME,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid lab name {name:?}: must be 1 to {MAX_NAME} characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        ))
    }
}

fn check_kernel(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(c) => {
            c.is_ascii_alphanumeric()
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
                && name.len() <= MAX_KERNEL_NAME
        }
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid kernel name {name:?}: must be up to {MAX_KERNEL_NAME} characters of A-Z, a-z, 0-9, '.', '_', '+', '-', starting with a letter or digit"
        ))
    }
}

fn check_cmdline_word(word: &str) -> Result<(), String> {
    if word.is_empty() {
        return Err("command-line word must not be empty".to_string());
    }
    if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "command-line word {word:?} must not contain whitespace or control characters (use one list item per word)"
        ));
    }
    if let Some(p) = RESERVED_CMDLINE.iter().find(|p| word.starts_with(*p)) {
        return Err(format!(
            "`{p}` is set by kernlab and cannot be overridden, got {word:?}"
        ));
    }
    Ok(())
}

fn check_range(d: Duration, min: Duration, max: Duration) -> Result<(), String> {
    if d < min {
        Err(format!(
            "must be at least {}, got {}",
            human_duration(min),
            human_duration(d)
        ))
    } else if d > max {
        Err(format!(
            "must be at most {}, got {}",
            human_duration(max),
            human_duration(d)
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
