//! `leak:`: an A/B leak lab's policy (baseline, floors, α, looks).

use super::*;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// A reproducer: the module leaks; NO-LEAK fails the lab.
    Leak,
    /// A regression gate: the module does not leak; LEAK fails the lab.
    NoLeak,
}

/// The primary endpoint of a leak verdict, `leak.metric` as a type: the
/// lab file's word is read into it once (`Metric::from_str`), and written
/// back as that word in records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Metric {
    /// Every cache's active objects × their size: the slab total without
    /// the page steps of `Slab`.
    #[default]
    Objects,
    /// meminfo `Slab`.
    Slab,
    /// meminfo `SUnreclaim`.
    SUnreclaim,
    /// One slab cache's active bytes.
    Cache(String),
}

impl Metric {
    /// Whether it is read from `/proc/meminfo` (else from `/proc/slabinfo`).
    pub fn from_meminfo(&self) -> bool {
        matches!(self, Metric::Slab | Metric::SUnreclaim)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Objects => f.write_str("objects"),
            Metric::Slab => f.write_str("slab"),
            Metric::SUnreclaim => f.write_str("sunreclaim"),
            Metric::Cache(c) => write!(f, "cache:{c}"),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(m: &str) -> Result<Metric, String> {
        match m {
            "objects" => Ok(Metric::Objects),
            "slab" => Ok(Metric::Slab),
            "sunreclaim" => Ok(Metric::SUnreclaim),
            _ => match m.strip_prefix("cache:") {
                Some(c) if !c.is_empty() && !c.contains(char::is_whitespace) => Ok(Metric::Cache(c.to_string())),
                _ => Err(format!("must be `slab`, `sunreclaim`, `objects` or `cache:NAME`, got {m:?}")),
            },
        }
    }
}

/// The leak policy of an A/B lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakPolicy {
    /// What the lab expects. Required.
    pub expect: Expect,
    /// The primary endpoint: `slab` (meminfo Slab), `sunreclaim` (meminfo
    /// SUnreclaim), `objects` (every cache's active objects × their size:
    /// the slab total at object granularity, without the page steps of
    /// `slab`) or `cache:NAME` (one slab cache's active bytes).
    /// Default: `objects` (docs/method.md#the-metric).
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
    /// After a LEAK, run the lab once more with the guest instrumented to
    /// name the code that took the memory (SLUB allocation traces of the
    /// leaking caches, reference tracing for VFS objects): `auto`, or
    /// `off` to stop at the verdict and its kind. Default: auto.
    #[serde(default)]
    pub attribute: Attribute,
}

/// Whether a LEAK gets its attribution pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attribute {
    #[default]
    Auto,
    Off,
}
/// The baseline arm of an A/B lab: the lab itself, with what the baseline
/// overrides. What it does not override it shares with the lab, except the
/// modules: a baseline that says nothing of them has none (the A/B of a
/// module against no module).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    /// The baseline's modules, in place of the lab's (e.g. another build
    /// of the product). Default: none (unless `params` is given).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<Module>,
    /// The lab's own modules in the baseline, with these parameters merged
    /// into each module entry's `params` (these win): `{leak: 0}` runs the
    /// same module with its bug switched off. Not together with `modules`;
    /// the lab must have modules. Default: none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// The baseline's payload, in place of the lab's (`[]`: none). Same
    /// rules as the lab's `payload`. Default: the lab's payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Vec<PayloadItem>>,
    /// The baseline's setup commands, in place of the lab's (`[]`: none);
    /// each non-empty. Default: the lab's setup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<Vec<String>>,
}

/// The lab the baseline arm of `lab` runs: `lab` with its baseline's
/// overrides applied (see [`Baseline`]); a lab without a `leak` section has
/// the default baseline (no modules). Only the arm's modules, payload and
/// setup differ from `lab` (the run's own changes, such as the baseline
/// not running until exhaustion, are the caller's). Field positions move
/// with the fields, so an error in the baseline's payload points at
/// `leak.baseline.payload`.
pub fn baseline_lab(lab: &Lab) -> Lab {
    let b = lab.leak.as_ref().map(|l| l.baseline.clone()).unwrap_or_default();
    let mut base = lab.clone();
    base.modules = if b.params.is_empty() { b.modules } else { with_params(&lab.modules, &b.params) };
    if let Some(p) = b.payload {
        base.payload = p;
        base.locations = base.locations.moved("leak.baseline.payload", "payload");
    }
    if let Some(s) = b.setup {
        base.setup = s;
        base.locations = base.locations.moved("leak.baseline.setup", "setup");
    }
    base
}

/// `modules` with `params` merged into each entry's parameters (`params`
/// win). Touches a module only through its `params`.
pub fn with_params(modules: &[Module], params: &BTreeMap<String, String>) -> Vec<Module> {
    modules
        .iter()
        .cloned()
        .map(|mut m| {
            m.params.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
            m
        })
        .collect()
}

fn default_metric() -> String {
    "objects".to_string()
}

fn default_floor() -> u64 {
    16 * MIB
}

/// The default per-cache floor, objects per operation (see `LeakPolicy`).
pub const DEFAULT_FLOOR_OBJECTS_PER_OP: f64 = 0.0005;
/// The default floor in bytes per operation (see `LeakPolicy`).
pub const DEFAULT_FLOOR_BYTES_PER_OP: f64 = 4.0;

/// 5 s: the sampler's first reclaim passes take 3–4 samples to settle
/// (RCU-deferred frees of the inodes and dentries the boot left cached:
/// `proc_inode_cache` 35 → 35 → 21 → 11, `dentry` 11125 → 11092 over the
/// first four samples of a clean arm, then constant), and a step that late
/// in a short fit costs a gate half a minute (docs/method.md).
fn default_warmup() -> Duration {
    Duration::from_secs(5)
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

