//! A matrix directory's `report.json`: one [`CellResult`] per (lab,
//! kernel) cell, the kernels × labs table, and how the cells shared the
//! machine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "kernlab.matrix-report/1";

/// The matrix's `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MatrixReport {
    pub schema: String,
    pub name: String,
    pub exit_code: i32,
    /// kernel → lab → the cell's headline numbers (a view of `cells`).
    #[serde(default)]
    pub table: BTreeMap<String, BTreeMap<String, TableEntry>>,
    pub cells: Vec<CellResult>,
    /// The shard this directory ran (`--partition`), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    /// The matrix directories `kernlab merge` joined (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<Vec<PathBuf>>,
}

/// What a cell ended with: an A/B lab's verdict, else how its run ended
/// (`completed`, `failed`, `interrupted`), or `error` for a cell whose run
/// never returned. One word each in the records, as [`CellVerdict::word`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CellVerdict {
    Leak,
    NoLeak,
    Inconclusive,
    Bounded,
    Completed,
    Failed,
    Interrupted,
    Error,
}

impl CellVerdict {
    pub fn word(self) -> &'static str {
        match self {
            CellVerdict::Leak => "leak",
            CellVerdict::NoLeak => "no-leak",
            CellVerdict::Inconclusive => "inconclusive",
            CellVerdict::Bounded => "bounded",
            CellVerdict::Completed => "completed",
            CellVerdict::Failed => "failed",
            CellVerdict::Interrupted => "interrupted",
            CellVerdict::Error => "error",
        }
    }

    /// A plain run's `outcome` word; anything else is a failed run.
    pub fn of_outcome(outcome: &str) -> CellVerdict {
        match outcome {
            "completed" => CellVerdict::Completed,
            "interrupted" => CellVerdict::Interrupted,
            _ => CellVerdict::Failed,
        }
    }

    /// An A/B lab's verdict; none is a lab that failed before deciding.
    pub fn of_leak(v: Option<crate::stats::Verdict>) -> CellVerdict {
        use crate::stats::Verdict;
        match v {
            Some(Verdict::Leak) => CellVerdict::Leak,
            Some(Verdict::NoLeak) => CellVerdict::NoLeak,
            Some(Verdict::Inconclusive) => CellVerdict::Inconclusive,
            Some(Verdict::Bounded) => CellVerdict::Bounded,
            None => CellVerdict::Failed,
        }
    }
}

impl std::fmt::Display for CellVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// One cell in the kernels × labs table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TableEntry {
    pub id: String,
    pub verdict: CellVerdict,
    pub exit_code: i32,
    pub bytes_per_op: Option<f64>,
    pub rules_out: Option<String>,
    pub exhaustion_s: Option<f64>,
    pub exhaustion: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellResult {
    pub id: String,
    pub lab: String,
    pub kernel: String,
    pub exit_code: i32,
    /// An A/B lab's verdict, else the run's outcome.
    pub verdict: CellVerdict,
    pub error: Option<String>,
    /// Why the analysis decided as it did (leak labs).
    #[serde(default)]
    pub reason: Option<String>,
    /// The cell's run directory, relative to the matrix directory
    /// (`cells/<id>`); absolute for a merged report's cells, which live in
    /// the shards' directories (and in reports of an older kernlab).
    pub dir: PathBuf,
    pub secs: f64,
    /// VMs the cell ran at once.
    #[serde(default = "one")]
    pub vms: usize,
    /// Leak numbers, when the cell is a leak lab: bytes/h (module − baseline), bytes/op.
    pub delta_per_hour: Option<f64>,
    /// The one-sided interval of `delta_per_hour` (bytes/h), at the lab's α.
    #[serde(default)]
    pub delta_interval_per_hour: Option<(f64, f64)>,
    pub bytes_per_op: Option<f64>,
    /// For a NO-LEAK or INCONCLUSIVE leak cell: the smallest leak it would
    /// have caught (80 % power), e.g. `0.0004 objects/op in kmalloc-64`.
    #[serde(default)]
    pub rules_out: Option<String>,
    /// Seconds of workload until the guest runs out of memory: measured
    /// when the cell ran into exhaustion, else predicted from the leak rate
    /// and the guest's MemAvailable (the fastest end of the interval).
    #[serde(default)]
    pub exhaustion_s: Option<f64>,
    /// `measured` or `predicted`, with `exhaustion_s`.
    #[serde(default)]
    pub exhaustion: Option<String>,
    /// For a LEAK: `reference`, `allocation` or `unknown`.
    #[serde(default)]
    pub leak_kind: Option<String>,
    /// For a LEAK: the sites its attribution pass named (`function
    /// [module] cache objects`, `; `-separated).
    #[serde(default)]
    pub leak_sites: Option<String>,
}

fn one() -> usize {
    1
}

/// Wall time against the sum of the cells' own times.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timing {
    pub wall_secs: f64,
    pub cells_secs: f64,
    /// Sum over cells of their time × their VMs (an A/B cell runs 2).
    pub vm_secs: f64,
    pub slots: usize,
    /// cells_secs / wall_secs: how many cells ran at once on average.
    pub speedup: f64,
    /// speedup / slots.
    pub parallel_efficiency: f64,
    /// vm_secs / wall_secs / slots: how busy the VM slots were.
    pub slot_utilisation: f64,
}

impl Timing {
    pub fn new(wall_secs: f64, slots: usize, results: &[CellResult]) -> Timing {
        let cells_secs: f64 = results.iter().map(|r| r.secs).sum();
        let vm_secs: f64 = results.iter().map(|r| r.secs * r.vms as f64).sum();
        let per = |x: f64| if wall_secs > 0.0 { x / wall_secs } else { 0.0 };
        let speedup = per(cells_secs);
        let slots_f = slots.max(1) as f64;
        Timing { wall_secs, cells_secs, vm_secs, slots, speedup, parallel_efficiency: speedup / slots_f, slot_utilisation: per(vm_secs) / slots_f }
    }

    pub fn line(&self) -> String {
        format!(
            "wall {:.1} s for {:.1} s of cells: speedup {:.2} on {} slots (parallel efficiency {:.0} %, VM slots busy {:.0} %)",
            self.wall_secs,
            self.cells_secs,
            self.speedup,
            self.slots,
            self.parallel_efficiency * 100.0,
            self.slot_utilisation * 100.0
        )
    }
}


/// The run directory whose logs speak for a cell: `module/` of an A/B run,
/// else the run directory itself.
pub fn log_dir(dir: &std::path::Path) -> PathBuf {
    let module = dir.join("module");
    if super::layout::events_jsonl(&module).is_file() { module } else { dir.to_path_buf() }
}

/// The kernels × labs table: kernel → lab → the cell's headline numbers.
pub fn table(results: &[CellResult]) -> BTreeMap<String, BTreeMap<String, TableEntry>> {
    let mut t: BTreeMap<String, BTreeMap<String, TableEntry>> = BTreeMap::new();
    for r in results {
        t.entry(r.kernel.clone()).or_default().insert(
            r.lab.clone(),
            TableEntry {
                id: r.id.clone(),
                verdict: r.verdict,
                exit_code: r.exit_code,
                bytes_per_op: r.bytes_per_op,
                rules_out: r.rules_out.clone(),
                exhaustion_s: r.exhaustion_s,
                exhaustion: r.exhaustion.clone(),
            },
        );
    }
    t
}
