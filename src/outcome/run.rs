//! A run's records: `report.json` ([`RunOutcome`]) and `manifest.json`
//! ([`Manifest`]), written when the run ends and read back as these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::analysis::growth::{CacheGrowth, FirstLast};
use crate::kernel::vmlinux::{BootImages, ImageFormat};
use crate::kernel::Kernel;
use crate::qemu::{self, AccelChoice, HostTsc, Machine};

pub const SCHEMA: &str = "kernlab.report/1";
/// `manifest.json`'s schema (a manifest written before it had one has no
/// `schema` field, and reads the same).
pub const MANIFEST_SCHEMA: &str = "kernlab.manifest/1";

#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(default)]
pub struct Timings {
    /// Kernel resolved (fetched or found in the cache), seconds.
    pub kernel: f64,
    /// Image built or found, keys made, initrd written.
    pub image: f64,
    /// Run start → QEMU spawned (lab, kernel, image, keys: the warm-cache overhead).
    pub qemu_start: f64,
    /// QEMU start → the guest's /init running: the boot floor.
    pub init: Option<f64>,
    /// QEMU start → SSH banner.
    pub boot_to_ssh: f64,
    /// QEMU start → first SSH command done.
    pub first_command: f64,
    /// The whole run.
    pub total: f64,
    /// Boots started: 1, or 2 when the first hung or died.
    pub boot_attempts: u32,
}

/// A run's `report.json`: how it ended and what it saw. Read back (by
/// `kernlab report`, the matrix, an A/B lab) with every field that a
/// report of an older kernlab of the same schema may lack defaulted.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunOutcome {
    pub schema: String,
    pub lab: String,
    pub kernel: String,
    pub kernel_release: Option<String>,
    pub accel: Option<String>,
    /// `completed`, `failed` or `interrupted`.
    pub outcome: String,
    pub exit_code: i32,
    pub error: Option<String>,
    #[serde(default)]
    pub samples: u64,
    /// Samples that failed (SSH lost, unparsable output): gaps in the series.
    #[serde(default)]
    pub sample_gaps: u64,
    #[serde(default)]
    pub timings: Timings,
    /// How the VM came up: `restored` (from a snapshot), `saved` (booted
    /// cold and saved as one) or `cold`; absent when it never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// First and last value of the headline meminfo fields, bytes.
    #[serde(default)]
    pub meminfo: BTreeMap<String, FirstLast>,
    /// Caches whose active bytes grew most between the first and last sample.
    #[serde(default)]
    pub top_slab_growth: Vec<CacheGrowth>,
    /// The vmcore, when the run took one: which path made it and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<crate::dump::DumpRecord>,
    /// `crash`'s view of the vmcore: memory summary and top caches at crash time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<crate::triage::CrashReport>,
    /// Why there is a vmcore but no triage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage_skipped: Option<String>,
    /// Whether the guest ran out of memory, for a lab with an `exhaustion`
    /// section that can end a run (a dump action or a headroom); absent
    /// when the run ended before its workload phase did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhaustion: Option<ExhaustionOutcome>,
    /// The workload's operations over the sampled run (`samples/ops.csv`);
    /// absent without a workload. A total of 0: it reports none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Operations>,
}

/// The workload's operation count between the first and the last sample.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Operations {
    pub total: u64,
    /// Operations per second over the same span (0 without a count).
    pub per_s: f64,
}

impl Operations {
    /// From the sampled counts, (run time, cumulative count) in order.
    pub fn from_samples(rows: impl IntoIterator<Item = (f64, u64)>) -> Option<Operations> {
        let mut it = rows.into_iter();
        let first = it.next()?;
        let last = it.last().unwrap_or(first);
        let total = last.1.saturating_sub(first.1);
        let secs = last.0 - first.0;
        Some(Operations { total, per_s: if secs > 0.0 { total as f64 / secs } else { 0.0 } })
    }

    /// `4012 operations (1003 ops/s)`, or that there are none and where the
    /// docs say how to report them.
    pub fn words(&self) -> String {
        if self.total == 0 {
            format!("none: this workload reports no operations; see {}", crate::analysis::leak::OPS_DOC)
        } else {
            format!("{} ({:.0} ops/s)", self.total, self.per_s)
        }
    }
}

/// How a run watching for exhaustion ended its workload phase.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ExhaustionOutcome {
    /// The run was to go on until exhaustion (`exhaustion.until`).
    pub until: bool,
    /// The guest ran out of memory, panicked or hung: the trigger fired.
    pub reached: bool,
    /// The phase's limit, seconds: `exhaustion.max` with `until`, else
    /// `workload.duration`. Unreached: "no exhaustion within N s".
    pub within_secs: f64,
    /// Workload start → the trigger, seconds, when reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_secs: Option<f64>,
    /// What fired, when reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl ExhaustionOutcome {
    /// `no exhaustion within 600 s (exhaustion.max)` when unreached.
    pub fn not_reached(&self) -> Option<String> {
        (!self.reached).then(|| no_exhaustion(self.within_secs, self.until))
    }
}

/// `no exhaustion within 600 s (exhaustion.max)`: the phase's limit and
/// which field set it. One wording for the event line and the summaries.
pub fn no_exhaustion(within_secs: f64, until: bool) -> String {
    let limit = if until { "exhaustion.max" } else { "workload.duration" };
    format!("no exhaustion within {within_secs:.0} s ({limit})")
}

/// A run's `manifest.json`: what ran, with which inputs, and how it booted.
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(default)]
pub struct Manifest {
    /// `kernlab.manifest/1`.
    pub schema: String,
    pub kernlab_version: String,
    pub lab_name: String,
    /// The lab file that ran, absolute (an input, outside the run directory).
    pub lab_file: String,
    pub lab_sha256: String,
    pub kernel: Option<Kernel>,
    /// `minimal`, `debian` or `disk`.
    pub image: Option<String>,
    /// The image's identity: the minimal image's sha256, a Debian disk's
    /// key (its recipe, apt sources and kernel), a user disk's path.
    pub image_sha256: Option<String>,
    pub image_bytes: Option<u64>,
    /// A Debian image's packages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_packages: Vec<String>,
    pub image_modules: Vec<String>,
    pub qemu_version: Option<String>,
    pub qemu_argv: Vec<String>,
    pub accel: Option<AccelChoice>,
    pub host_accel: Option<qemu::HostAccel>,
    pub host_kernel: String,
    pub ssh_port: Option<u16>,
    pub started: String,
    /// How the VM booted: machine profile, kernel image, and why.
    pub boot: Option<BootManifest>,
    /// The lab's `payload` entries as installed in the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub payload: Vec<PayloadEntry>,
    /// The lab's modules as built (the `.ko` in the module cache).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleEntry>,
    /// How the guest sampler's records came (`monitor.sampler: stream`):
    /// `port` (the virtio-serial port), `ssh` (its SSH channel), or
    /// `port+ssh` when the run used both (the port broke or was lost);
    /// absent when no guest sampler answered (`exec`, or it never started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_transport: Option<String>,
}

/// One module of the lab, as built (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModuleEntry {
    pub name: String,
    /// The built `.ko`, in the module cache (a prebuilt one: the vendor's file).
    pub ko: String,
    pub sha256: String,
    /// Where the object was in the lab's tree (or the vendor's path as the
    /// lab wrote it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// How it was made: `kbuild`, `commands`, `dkms` (with the package) or
    /// `prebuilt`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub built_by: String,
    /// Its `vermagic`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vermagic: String,
    /// The parameters it was loaded with.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
}

/// One `payload` entry of the lab, as installed (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PayloadEntry {
    /// As the lab wrote it (relative to the lab file).
    pub src: String,
    /// The guest path.
    pub dst: String,
    /// What was installed: a file's sha256; for a directory, the sha256 of
    /// its listing (`path mode sha256` per file, sorted).
    pub sha256: String,
    /// Built on the host (a C file, a directory with a Makefile) rather
    /// than copied.
    pub built: bool,
}

/// The boot profile of a run, with the reason for each choice.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootManifest {
    pub machine: Machine,
    pub machine_reason: String,
    /// `vmlinux` (the extracted PVH ELF) or `bzimage`.
    pub kernel_image: ImageFormat,
    pub kernel_image_path: String,
    pub kernel_image_reason: String,
    /// What kernlab found out about the kernel's images (PVH, compression).
    pub images: BootImages,
    /// `vm.fast_boot`, and the flags it put on the command line.
    pub fast_boot: bool,
    pub fast_boot_flags: Vec<String>,
    /// The host TSC rate given to a microvm guest as `tsc_early_khz`.
    pub host_tsc: Option<HostTsc>,
    /// Boots started (at most 2: one retry), and why each retry happened.
    pub attempts: u32,
    pub retries: Vec<String>,
    /// Restored from a snapshot, booted cold and saved as one, or cold; why.
    pub snapshot: Option<SnapshotManifest>,
}


/// How the run's VM came up, for `manifest.json` (`boot.snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// From a snapshot in the cache.
    Restored,
    /// Booted cold, and its state saved as the snapshot for later runs.
    Saved,
    /// Booted cold, nothing saved.
    Cold,
}

impl SnapshotMode {
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMode::Restored => "restored",
            SnapshotMode::Saved => "saved",
            SnapshotMode::Cold => "cold",
        }
    }
}

/// How the run's VM came up and why (`boot.snapshot` of the manifest).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotManifest {
    pub mode: SnapshotMode,
    /// Why this mode: the lab's choice, what kept the VM from a snapshot,
    /// a failed restore.
    pub reason: String,
    /// The cache entry's key and directory, when a snapshot was looked up.
    pub key: Option<String>,
    pub entry: Option<String>,
    /// Size of the saved state, bytes.
    pub state_bytes: Option<u64>,
    /// Restored: QEMU start → the VM running. Saved: `stop` → `cont`.
    pub secs: Option<f64>,
    /// Why a restore was given up before this cold boot, if one was.
    pub fallback: Option<String>,
}


#[cfg(test)]
mod operations_tests {
    use super::Operations;

    #[test]
    fn operations_over_the_samples_and_none_said_plainly() {
        let o = Operations::from_samples([(1.0, 0), (2.0, 400), (5.0, 4000)]).unwrap();
        assert_eq!(o, Operations { total: 4000, per_s: 1000.0 });
        assert_eq!(o.words(), "4000 (1000 ops/s)");
        let none = Operations::from_samples([(1.0, 0), (9.0, 0)]).unwrap();
        assert_eq!(none.words(), "none: this workload reports no operations; see docs/lab-format.md#counting-operations");
        assert_eq!(Operations::from_samples([(1.0, 7)]), Some(Operations { total: 0, per_s: 0.0 }));
        assert_eq!(Operations::from_samples(std::iter::empty()), None);
    }
}
