//! `exhaustion:`: running a guest out of memory and taking its dump.

use super::*;

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

/// `triage:`: how a vmcore the run takes is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triage {
    /// `crash`, `drgn` or `auto`: crash when it can read the dump (a guest
    /// of the host's architecture), else drgn. Default: auto.
    #[serde(default)]
    pub engine: crate::triage::EngineChoice,
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
